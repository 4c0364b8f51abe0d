"""``python -m xcap_wsgi`` is the ``xcap-wsgi`` command."""

import sys

from .cli import main

sys.exit(main())
