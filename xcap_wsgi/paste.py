"""PasteDeploy entry points, built from the one settings table (``xcap_wsgi.settings``).

An ini file names settings exactly as ``xcap-wsgi serve`` does (``default_domain``,
``max_body_size``, ...; dashes are accepted too); the values become one ``Settings`` object
(``Settings.from_sources``), turned into middleware by ``xcap_wsgi.build``, so nothing here
defines a setting a second time. Precedence: the filter's/app's own section > ``[DEFAULT]`` > ``XCAP_*`` environment
variables > the table's defaults. An unknown name in the section itself is an error (a typo must
not pass silently); unknown names in ``[DEFAULT]`` are ignored, because that section is shared
with every other app of the file.

As a filter (the host app authenticates and sets ``REMOTE_USER``)::

    [filter:xcap]
    use = egg:xcap-wsgi
    db = sqlite:///%(here)s/xcap.sqlite3
    default_domain = example.com

    [pipeline:main]
    pipeline = xcap myapp

As a standalone app (what ``xcap-wsgi serve`` runs: Digest against Kamailio's subscriber table
unless ``anonymous = true``; the access log is on unless ``log_requests = false``)::

    [app:main]
    use = egg:xcap-wsgi
    db = sqlite:///%(here)s/xcap.sqlite3
"""

from __future__ import annotations

from typing import Any, Mapping

from .build import build_middleware, standalone_app
from .settings import BY_NAME, STANDALONE_DEFAULTS, Settings

#: PasteDeploy's own keys in ``global_conf`` (never settings).
_PASTE_KEYS = ("here", "__file__")


def settings_from_conf(global_conf: dict[str, Any], local_conf: dict[str, Any], *,
                       defaults: Mapping[str, Any] | None = None) -> Settings:
    """``Settings`` from a PasteDeploy section (``local_conf``) and its ``[DEFAULT]``."""
    given = {name: value for name, value in (global_conf or {}).items()
             if name not in _PASTE_KEYS and name.replace("-", "_") in BY_NAME}
    given.update(local_conf)
    return Settings.from_sources(given, defaults=defaults)


def filter_app_factory(app, global_conf, **local_conf):
    """``paste.filter_app_factory``: ``XCAPMiddleware`` around the next app of a pipeline.

    Identity comes from ``REMOTE_USER`` as set by the host stack (or from a trusted proxy's
    header when ``identity_header``/``trusted_proxies`` are set). The access log is off unless
    ``log_requests = true``, as for the middleware in Python.
    """
    return build_middleware(app, settings_from_conf(global_conf, local_conf))


def app_factory(global_conf, **local_conf):
    """``paste.app_factory``: a standalone XCAP server, the application ``xcap-wsgi serve`` runs.

    Outside the XCAP root it answers 404. The health endpoints (``health_path``, ``ready_path``)
    and the Prometheus metrics (``metrics_path``) answer in front of authentication
    (xcap_wsgi.health, xcap_wsgi.metrics). Unless ``anonymous = true`` it
    authenticates with Digest against Kamailio's ``subscriber`` table (``auth_db``, default ``db``),
    exactly as ``serve`` does; ``xcap-wsgi adduser`` creates accounts.
    """
    return standalone_app(settings_from_conf(global_conf, local_conf, defaults=STANDALONE_DEFAULTS))
