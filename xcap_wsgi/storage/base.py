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
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .kamailio import MAX_ETAG_LENGTH, XCAP_TABLE_VERSION

if TYPE_CHECKING:
    from .rls_index import _SideTable

#: Expected state meaning "the document must not exist yet" (create).
ABSENT = None


class _Any:
    """The type of ``ANY``."""

    def __repr__(self) -> str:
        return "ANY"


#: Expected state of ``Store.write`` meaning "whatever is stored, or nothing" (unconditional).
ANY = _Any()


class _Unknown:
    """The type of ``UNKNOWN``."""

    def __repr__(self) -> str:
        return "?"


#: A value nobody read (e.g. the ETag a one-statement write replaced).
UNKNOWN = _Unknown()

#: The version Kamailio's modules require in the ``version`` row for table ``xcap`` (kamailio.py).
KAMAILIO_XCAP_TABLE_VERSION = XCAP_TABLE_VERSION

#: What ``Store.restore`` did to a row.
RESTORE_OUTCOMES = ("created", "replaced", "unchanged")


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
    """What ``Store.write`` did: the document's ETag now, whether the row is new, whether
    anything changed (an identical document keeps its ETag and is not rewritten), and the ETag
    it replaced (``ABSENT``: there was no row; ``UNKNOWN``: the write did not read it)."""

    etag: str
    created: bool
    changed: bool
    replaced: object = None


@dataclass(frozen=True)
class DocumentInfo:
    """One row of a user's listing (for xcap-directory, export and purge)."""

    doc_uri: str
    doc_type: int
    etag: str
    size: int


@dataclass(frozen=True)
class Row:
    """One row of Kamailio's ``xcap`` table, content included (``Store.rows_after``, export, check).

    ``id`` is the table's primary key, the cursor of keyset pagination; it is not compared (a
    restored row has the same document under another id).
    """

    username: str
    domain: str
    doc_uri: str
    doc_type: int
    etag: str
    content: bytes
    id: int = field(default=0, compare=False)

    @property
    def key(self) -> DocumentKey:
        return DocumentKey(self.username, self.domain, self.doc_uri, self.doc_type)


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


class InvalidETag(StoreError, ValueError):
    """An ETag given to ``restore`` that Kamailio could not serve (length, quotes, spaces)."""


def check_etag(etag: str) -> None:
    """Raise ``InvalidETag`` unless ``etag`` is 1..117 printable characters without quotes,
    backslashes or spaces: what Kamailio can put between the quotes of its ETag header."""
    if not isinstance(etag, str) or not etag or len(etag) > MAX_ETAG_LENGTH:
        raise InvalidETag(f"invalid ETag {etag!r}: 1 to {MAX_ETAG_LENGTH} characters required")
    if any(c in etag for c in '"\\') or any(ord(c) < 0x21 or ord(c) == 0x7f for c in etag):
        raise InvalidETag(f"invalid ETag {etag!r}: no quotes, backslashes, spaces or control characters")


def new_etag() -> str:
    """A fresh strong ETag value: opaque, unquoted, URL-safe, far below Kamailio's 117-char limit.

    It starts with the write time in milliseconds (hex), which xcap-directory reports as the
    document's last-modified: Kamailio's table has no such column.
    """
    return f"xw-{time.time_ns() // 1_000_000:x}-{secrets.token_urlsafe(12)}"


@runtime_checkable
class Store(Protocol):
    """What the XCAP engine and the operator commands need from a database; both shipped stores
    (``SQLiteStore``, ``MySQLStore``) implement all of it, and nothing outside ``storage/`` runs
    SQL on the ``xcap`` table. Implementations must be thread-safe.
    """

    @property
    def rls_index(self) -> _SideTable:
        """The rls-services service-URI side table (``storage/rls_index.py``), used when its table
        exists (``available()``): the uniqueness check, the global index, ``initdb``, ``check``."""

    # -- the engine --------------------------------------------------------------------------

    def get(self, key: DocumentKey) -> StoredDocument | None:
        """The stored document, or None when there is none."""

    def put(self, key: DocumentKey, content: bytes, expected_etag: str | None) -> str:
        """Write ``content`` if the row is in the expected state and return the new ETag.

        ``expected_etag`` is the ETag the caller read (replace) or ``ABSENT`` (create). Raises
        ``ConcurrentModification`` when the row changed in between. An update keeps the row id
        and writes ``source=0, port=0`` as Kamailio's xcap_server does.
        """

    def write(self, key: DocumentKey, content: bytes, expected=ANY) -> Written:
        """A whole-document write that needs no read first: store ``content`` if the row is in the
        ``expected`` state, ``ANY`` (create or replace), ``ABSENT`` (create) or an ETag (replace
        that version). Identical content keeps its ETag and is not rewritten. In any other state
        raise ``ConcurrentModification`` (the engine then reads the row to decide between 412 and
        a retry). On MySQL one statement when the document exists."""

    def delete(self, key: DocumentKey, expected_etag: str) -> None:
        """Delete the row if it still carries ``expected_etag``; else ``ConcurrentModification``.
        Also forgets any recalled copy of the document (``write_turn``)."""

    def write_turn(self, key: DocumentKey) -> AbstractContextManager:
        """The turn the engine holds around each read-modify-write of one document (element and
        attribute PUT/DELETE), so that writers on this host wait for each other instead of losing
        the compare-and-swap. It yields None, or a ``turns.Turn`` that recalls the document this
        host's last write stored, so the next edit can skip the read (MySQL with ``recall_cache``)."""

    def forget_recalled(self, key: DocumentKey) -> None:
        """A whole-document PUT replaced the document: drop any copy ``write_turn`` recalls, so no
        replaced text stays outside the database (nothing to do without a recall cache)."""

    def list_documents(self, username: str, domain: str) -> list[DocumentInfo]:
        """Every document of one user, ordered by doc_type then doc_uri."""

    def documents_of_type(self, doc_type: int) -> Iterator[tuple[DocumentKey, bytes]]:
        """Every stored document of one doc_type, of all users (for global indexes), by id."""

    def lock(self, name: str) -> AbstractContextManager[None]:
        """Hold a named lock shared by every process using this database, for checks that span
        documents (rls-services service URIs unique across users). Raises StoreUnavailable on timeout."""

    def ping(self) -> None:
        """Return when the database answers; raise ``StoreUnavailable`` otherwise (health checks)."""

    # -- the operator commands (export, import, check, purge) ----------------------------------

    def rows_after(self, after_id: int, limit: int, username: str | None = None,
                   domain: str | None = None) -> list[Row]:
        """One page of keyset pagination: at most ``limit`` rows with ``id > after_id``, by id,
        content included; only ``username@domain``'s when both are given. ``iter_rows`` pages
        through a whole table with it, in memory bounded by one page."""

    def count_rows(self, username: str | None = None, domain: str | None = None) -> int:
        """How many rows (one user's when both are given): the total of a progress bar."""

    def restore(self, key: DocumentKey, content: bytes, etag: str) -> str:
        """Write ``content`` under ``key`` with exactly ``etag`` (import of an export); return
        "created", "replaced" or "unchanged". Idempotent: the row is found by (username,
        domain, doc_uri), overwritten in place (keeps its id; doc_type from ``key``, source and
        port 0) or inserted, so a re-run never duplicates a document. Unconditional (a restore is
        meant to win). Raises ``InvalidETag``, ``UnrepresentableKey``, or ``DocumentUriTaken``
        when ``doc_uri`` belongs to another account (it is UNIQUE in Kamailio's table)."""

    def restore_many(self, documents: Sequence[tuple[DocumentKey, bytes, str]]) -> list[str]:
        """``restore`` of each ``(key, content, etag)``, in one transaction (all or none); the
        outcome of each. Import restores a batch at a time: one commit per batch, not per row."""

    def close(self) -> None:
        """Release connections."""


def iter_batches(store: Store, username: str | None = None, domain: str | None = None, *,
                 batch: int = 500) -> Iterator[list[Row]]:
    """Every row (or one user's when ``username`` and ``domain`` are given), by id, as lists of at
    most ``batch`` rows (``Store.rows_after``): memory stays bounded by one batch whatever the
    table's size, and rows written meanwhile never appear twice (the cursor is the id)."""
    if (username is None) != (domain is None):
        raise ValueError("give both username and domain, or neither")
    after = 0
    while True:
        rows = store.rows_after(after, batch, username, domain)
        if rows:
            yield rows
        if len(rows) < batch:
            return
        after = rows[-1].id


def iter_rows(store: Store, username: str | None = None, domain: str | None = None, *,
              batch: int = 500) -> Iterator[Row]:
    """``iter_batches`` one row at a time."""
    for rows in iter_batches(store, username, domain, batch=batch):
        yield from rows
