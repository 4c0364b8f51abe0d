"""Storage backends for XCAP documents, all over Kamailio's ``xcap`` table layout.

``open_store(url)`` picks one from a database URL:

* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite://`` (in memory)
* ``mysql://user:password@host[:port]/database`` (see ``xcap_wsgi.storage.mysql``)
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .base import (
    ABSENT,
    ANY,
    UNKNOWN,
    ConcurrentModification,
    DocumentInfo,
    DocumentKey,
    DocumentTooLarge,
    DocumentUriTaken,
    InvalidETag,
    Row,
    SchemaMismatch,
    Store,
    StoredDocument,
    StoreError,
    StoreUnavailable,
    UnrepresentableKey,
    Written,
    iter_batches,
    iter_rows,
    new_etag,
)
from .sqlite import SQLiteStore

DEFAULT_DATABASE_URL = "sqlite:///xcap.sqlite3"

__all__ = [
    "ABSENT",
    "ANY",
    "UNKNOWN",
    "ConcurrentModification",
    "DEFAULT_DATABASE_URL",
    "DocumentInfo",
    "DocumentKey",
    "InvalidETag",
    "Row",
    "SQLiteStore",
    "SchemaMismatch",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredDocument",
    "DocumentTooLarge",
    "DocumentUriTaken",
    "UnrepresentableKey",
    "Written",
    "iter_batches",
    "iter_rows",
    "new_etag",
    "on_this_host",
    "open_store",
]


def open_store(url: str = DEFAULT_DATABASE_URL, **options) -> Store:
    """Open the store a database URL names; ``options`` go to the backend's constructor."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SQLiteStore(sqlite_path(url), **options)
    if scheme in ("mysql", "mysql+pymysql", "mariadb"):
        from .mysql import MySQLStore

        return MySQLStore.from_url(url, **options)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or mysql://user:pass@host/db")


#: Host names of a MySQL URL that name this machine (its loopback interface).
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain", "ip6-localhost"})


def on_this_host(url: str) -> bool:
    """Whether the database ``url`` names runs on this machine: SQLite, a MySQL Unix socket, or
    MySQL hosts that are all loopback addresses (a round trip then costs microseconds, not a
    network's milliseconds)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return True
    from .mysql_url import parse_url

    parsed = parse_url(url)
    if "unix_socket" in parsed["connect"]:
        return True
    hosts = parsed.get("hosts") or [(parsed["connect"]["host"], 0)]
    return all(host.lower() in _LOOPBACK_HOSTS or host.startswith("127.") for host, _ in hosts)


def sqlite_path(url: str) -> str:
    """The file path of an ``sqlite:`` URL, SQLAlchemy-style (``sqlite:////abs``, ``sqlite:///rel``)."""
    rest = url.split(":", 1)[1]
    if rest in ("", "//", "///:memory:", "//:memory:"):
        return ":memory:"
    if not rest.startswith("///"):
        raise ValueError(f"malformed SQLite URL {url!r}: expected sqlite:///relative or sqlite:////absolute")
    return unquote(rest[3:])
