"""xcap-wsgi: an XCAP server (RFC 4825) as WSGI middleware over Kamailio's ``xcap`` table."""

from .middleware import XCAPMiddleware
from .storage import SQLiteStore, open_store

__all__ = ["XCAPMiddleware", "SQLiteStore", "open_store"]
__version__ = "0.1.0"
