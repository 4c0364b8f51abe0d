"""xcap-wsgi: an XCAP server (RFC 4825) as WSGI middleware over Kamailio's ``xcap`` table.

The public API is what ``__all__`` lists: the middleware, the stores, the authorization policies
and identity resolvers a host combines with it, and the Digest middleware ``serve`` puts in front.
Everything else is internal and may change between releases.
"""

from .auth import DefaultPolicy, ReadOnlyPolicy, TrustedProxyIdentity
from .digest import DigestAuthMiddleware
from .events import ChangeEvent
from .middleware import XCAPMiddleware
from .storage import SQLiteStore, open_store

__all__ = [
    "ChangeEvent",
    "DefaultPolicy",
    "DigestAuthMiddleware",
    "ReadOnlyPolicy",
    "SQLiteStore",
    "TrustedProxyIdentity",
    "XCAPMiddleware",
    "open_store",
]
__version__ = "0.1.0"
