"""xcap-wsgi: an XCAP server (RFC 4825) as WSGI middleware over Kamailio's ``xcap`` table.

The public API is what ``__all__`` lists: the middleware, the stores, the authorization policies
and identity resolvers a host combines with it, the Digest middleware ``serve`` puts in front,
and the ``Settings`` object with ``build_middleware`` that turns one into the middleware.
Everything else is internal and may change between releases.
"""

from .auth import DefaultPolicy, ReadOnlyPolicy, TrustedProxyIdentity
from .build import build_middleware
from .digest import DigestAuthMiddleware
from .events import ChangeEvent
from .middleware import XCAPMiddleware
from .settings import Settings
from .storage import SQLiteStore, open_store

__all__ = [
    "ChangeEvent",
    "DefaultPolicy",
    "DigestAuthMiddleware",
    "ReadOnlyPolicy",
    "SQLiteStore",
    "Settings",
    "TrustedProxyIdentity",
    "XCAPMiddleware",
    "build_middleware",
    "open_store",
]
__version__ = "0.1.0"
