"""The storage interface: Kamailio's ``xcap`` table seen as a compare-and-swap document store.

A document row is identified the way Kamailio identifies it: (username, domain, doc_uri), where
``doc_uri`` is the percent-decoded absolute path of the document including the XCAP root. Every
write names the state it expects to replace (an ETag, or ``ABSENT``), so the check of a
conditional request and the write are one atomic step: two writers holding the same ETag can
never both succeed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import ContextManager, Iterator, Protocol, runtime_checkable

#: Expected state meaning "the document must not exist yet" (create).
ABSENT = None


class _Any:
    """The type of ``ANY``."""

    def __repr__(self) -> str:
        return "ANY"


#: Expected state of ``Store.write`` meaning "whatever is stored, or nothing" (unconditional).
ANY = _Any()

#: Kamailio formats ``ETag: "<db etag>"\r\n`` into a 128-byte buffer: 117 characters at most.
MAX_ETAG_LENGTH = 117

#: The version Kamailio's modules require in the ``version`` row for table ``xcap``.
KAMAILIO_XCAP_TABLE_VERSION = 4


@dataclass(frozen=True)
class DocumentKey:
    """Which row a request addresses (Kamailio's row identity plus the AUID's doc_type)."""

    username: str
    domain: str
    doc_uri: str
    doc_type: int


@dataclass(frozen=True)
class StoredDocument:
    """A document as stored: its exact bytes and its ETag (unquoted, as in the table)."""

    content: bytes
    etag: str


@dataclass(frozen=True)
class Written:
    """What ``Store.write`` did: the document's ETag now, whether the row is new, and whether
    anything changed (an identical document keeps its ETag and is not rewritten)."""

    etag: str
    created: bool
    changed: bool


@dataclass(frozen=True)
class DocumentInfo:
    """One row of a user's listing (for xcap-directory, export and purge)."""

    doc_uri: str
    doc_type: int
    etag: str
    size: int


class StoreError(Exception):
    """Base class for storage failures."""


class ConcurrentModification(StoreError):
    """The row is no longer in the state the write expected (compare-and-swap lost)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; the client should retry later (503)."""

    def __init__(self, message: str = "database unavailable", retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class UnrepresentableKey(StoreError):
    """username, domain or doc_uri cannot be stored in the table (charset or column length):
    no such row can exist (reads: 404), and none can be written (writes: 409)."""


class DocumentUriTaken(StoreError):
    """The doc_uri belongs to a row of another username/domain (Kamailio's doc_uri is UNIQUE):
    retrying cannot help (409)."""


class DocumentTooLarge(StoreError):
    """The document does not fit the table's column or the server's packet limit (413)."""


class SchemaMismatch(StoreError):
    """The database holds an ``xcap`` table this version cannot share (e.g. wrong version row)."""


def new_etag() -> str:
    """A fresh strong ETag value: opaque, unquoted, URL-safe, far below Kamailio's 117-char limit.

    It starts with the write time in milliseconds (hex), which xcap-directory reports as the
    document's last-modified: Kamailio's table has no such column.
    """
    return f"xw-{time.time_ns() // 1_000_000:x}-{secrets.token_urlsafe(12)}"


@runtime_checkable
class Store(Protocol):
    """What the XCAP engine needs from a database. Implementations must be thread-safe.

    A store may also offer ``write(key, content, expected) -> Written``, a whole-document write
    that needs no read first (the engine reads, then ``put``s, without it): it stores ``content``
    if the row is in the ``expected`` state, ``ANY`` (create or replace), ``ABSENT`` (create) or
    an ETag (replace that version); identical content keeps its ETag and is not rewritten; in
    any other state it raises ``ConcurrentModification`` and the engine reads the row to decide
    between 412 and a retry. Both shipped stores have it; on MySQL it is one statement when the
    document exists.

    A store may also offer ``write_turn(key)``, a context manager the engine holds around each
    read-modify-write of one document (element and attribute PUT/DELETE), so that writers on
    this host wait for each other instead of losing the compare-and-swap. It may yield a
    ``turns.Turn``, which recalls the document this host's last write of it stored, so that the
    next edit can skip the read (MySQL with ``recall_cache`` only). Both shipped stores have it;
    without it, threads of one process take turns. A store with a recall cache also offers
    ``forget_recalled(key)``, which the engine calls after a whole-document PUT (its ``delete``
    forgets by itself), so no copy of replaced or deleted text stays outside the database.
    """

    def get(self, key: DocumentKey) -> StoredDocument | None:
        """The stored document, or None when there is none."""

    def put(self, key: DocumentKey, content: bytes, expected_etag: str | None) -> str:
        """Write ``content`` if the row is in the expected state and return the new ETag.

        ``expected_etag`` is the ETag the caller read (replace) or ``ABSENT`` (create). Raises
        ``ConcurrentModification`` when the row changed in between. An update keeps the row id
        and writes ``source=0, port=0`` as Kamailio's xcap_server does.
        """

    def delete(self, key: DocumentKey, expected_etag: str) -> None:
        """Delete the row if it still carries ``expected_etag``; else ``ConcurrentModification``."""

    def list_documents(self, username: str, domain: str) -> list[DocumentInfo]:
        """Every document of one user, ordered by doc_type then doc_uri."""

    def documents_of_type(self, doc_type: int) -> Iterator[tuple[DocumentKey, bytes]]:
        """Every stored document of one doc_type, of all users (for global indexes), by id."""

    def lock(self, name: str) -> ContextManager[None]:
        """Hold a named lock shared by every process using this database, for checks that span
        documents (rls-services service URIs unique across users). Raises StoreUnavailable on timeout."""

    def close(self) -> None:
        """Release connections."""
