"""``application``: what ``xcap-wsgi serve`` runs, for the servers of ``xcap_wsgi.backends``.

Built at import, in each worker process (uWSGI ``--lazy-apps``, granian's workers), from the
``Settings`` that ``serve`` passed in ``XCAP_SERVE_SETTINGS`` (xcap_wsgi.backends); a start-up
failure prints its reason and exits 1, as ``serve`` does.
"""

from __future__ import annotations

import json
import os

from .backends import SETTINGS_ENV
from .cli import _build_app
from .logsetup import configure as configure_logging
from .settings import STANDALONE_DEFAULTS, Settings

configure_logging()
_settings = (Settings.from_strings(json.loads(os.environ[SETTINGS_ENV])) if SETTINGS_ENV in os.environ
             else Settings.from_sources(defaults=STANDALONE_DEFAULTS))
application, _mode = _build_app(_settings)
