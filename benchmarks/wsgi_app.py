"""A module-level WSGI ``application`` for servers that import one (uWSGI, gunicorn, mod_wsgi).

Settings come from the ``XCAP_*`` environment variables (``XCAP_DB``, ``XCAP_ANONYMOUS``, ...),
exactly as for ``xcap-wsgi serve``. Load it after the fork (uWSGI ``--lazy-apps``, gunicorn
without ``--preload``): pooled database connections must not be shared between processes.

    XCAP_DB=mysql://... XCAP_ANONYMOUS=1 uwsgi --http-socket 127.0.0.1:8080 --http-keepalive \\
        --processes 2 --threads 4 --lazy-apps --module benchmarks.wsgi_app:application
"""

from xcap_wsgi.settings import build_middleware, resolve

application = build_middleware(None, resolve())
