"""SQLite store: Kamailio's ``xcap`` table layout in an embedded database file.

The table and the ``version`` row are created on first use with the DDL of Kamailio's
``db_sqlite`` schema, so the file can also be handed to a Kamailio built with db_sqlite. Each
thread gets its own connection (WAL journal, busy timeout), which makes the store safe under
waitress' thread pool; writes are single conditional statements, so compare-and-swap holds
across threads and processes sharing the file.
"""

from __future__ import annotations

import fcntl
import itertools
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from urllib.request import pathname2url

from ..turns import WriteTurns
from .base import (
    ABSENT,
    ANY,
    KAMAILIO_XCAP_TABLE_VERSION,
    ConcurrentModification,
    DocumentInfo,
    DocumentKey,
    DocumentUriTaken,
    Row,
    SchemaMismatch,
    StoredDocument,
    StoreUnavailable,
    Written,
    check_etag,
    new_etag,
)
from .rls_index import SQLiteSideTable

# Kamailio 5.6 utils/kamctl/db_sqlite: standard-create.sql (version) and presence-create.sql (xcap).
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS version (
        id INTEGER PRIMARY KEY NOT NULL,
        table_name VARCHAR(32) NOT NULL,
        table_version INTEGER DEFAULT 0 NOT NULL,
        CONSTRAINT version_table_name_idx UNIQUE (table_name))""",
    """CREATE TABLE IF NOT EXISTS xcap (
        id INTEGER PRIMARY KEY NOT NULL,
        username VARCHAR(64) NOT NULL,
        domain VARCHAR(64) NOT NULL,
        doc BLOB NOT NULL,
        doc_type INTEGER NOT NULL,
        etag VARCHAR(128) NOT NULL,
        source INTEGER NOT NULL,
        doc_uri VARCHAR(255) NOT NULL,
        port INTEGER NOT NULL,
        CONSTRAINT xcap_doc_uri_idx UNIQUE (doc_uri))""",
    "CREATE INDEX IF NOT EXISTS xcap_account_doc_type_idx ON xcap (username, domain, doc_type)",
    "CREATE INDEX IF NOT EXISTS xcap_account_doc_type_uri_idx ON xcap (username, domain, doc_type, doc_uri)",
    "CREATE INDEX IF NOT EXISTS xcap_account_doc_uri_idx ON xcap (username, domain, doc_uri)",
    "INSERT OR IGNORE INTO version (table_name, table_version) VALUES ('xcap', 4)",
)

_memory_names = itertools.count(1)


class SQLiteStore:
    """Store documents in an SQLite file (``path``), or in memory with ``path=":memory:"``."""

    def __init__(self, path: str = "xcap.sqlite3", *, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout
        if path == ":memory:":
            # One shared in-memory database for every thread of this store, kept alive by _keeper.
            self._target, self._uri = f"file:xcap-wsgi-mem-{next(_memory_names)}?mode=memory&cache=shared", True
        else:
            self._target, self._uri = path, False
        self._local = threading.local()
        self._locks: dict[str, threading.Lock] = {}
        # Turns without the recall cache: never a copy of a document outside the database file.
        self._turns = WriteTurns(None if self._uri else f"{path}.write-turns.lock")
        self._keeper = self._connect()
        #: The optional rls-services service-URI side table (storage/rls_index.py).
        self.rls_index = SQLiteSideTable(self, "xcap")
        self._create_schema(self._keeper)

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self._target, uri=self._uri, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        connection.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        if not self._uri:
            self._switch_to_wal(connection)
        return connection

    def _switch_to_wal(self, connection: sqlite3.Connection) -> None:
        """Put the file in WAL mode, waiting up to ``timeout`` for other processes doing the same.

        Switching a new file to WAL answers 'database is locked' at once, without the busy
        handler, while another connection holds the file (N workers opening one fresh file at
        start-up): retry briefly rather than fail a worker's start.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    connection.close()
                    raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
                time.sleep(0.01)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        try:
            new_file = connection.execute("SELECT 1 FROM sqlite_master WHERE name='xcap'").fetchone() is None
            for statement in SCHEMA:
                connection.execute(statement)
            row = connection.execute("SELECT table_version FROM version WHERE table_name='xcap'").fetchone()
        except sqlite3.OperationalError as exc:  # locked beyond the busy timeout, not a database, ...
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        if row is None or int(row[0]) != KAMAILIO_XCAP_TABLE_VERSION:
            raise SchemaMismatch(
                f"{self.path}: version row for table 'xcap' is {row and row[0]!r}, "
                f"Kamailio's xcap table version {KAMAILIO_XCAP_TABLE_VERSION} is required"
            )
        if new_file:  # an existing file gets the side table from 'xcap-wsgi initdb' (it needs a rebuild)
            self.rls_index.create()

    def _execute(self, sql: str, params: tuple) -> sqlite3.Cursor:
        try:
            return self._connection().execute(sql, params)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.OperationalError as exc:  # locked beyond the busy timeout, disk I/O, ...
            raise StoreUnavailable(f"SQLite: {exc}", retry_after=1) from exc

    # -- the Store interface ----------------------------------------------------------------

    def get(self, key: DocumentKey) -> StoredDocument | None:
        row = self._execute(
            "SELECT doc, etag FROM xcap WHERE username=? AND domain=? AND doc_uri=?",
            (key.username, key.domain, key.doc_uri),
        ).fetchone()
        return None if row is None else StoredDocument(content=bytes(row[0]), etag=row[1])

    def put(self, key: DocumentKey, content: bytes, expected_etag: str | None) -> str:
        etag = new_etag()
        if expected_etag is ABSENT:
            try:
                self._execute(
                    "INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) "
                    "VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                    (key.username, key.domain, key.doc_type, key.doc_uri, sqlite3.Binary(content), etag),
                )
            except sqlite3.IntegrityError as exc:
                raise ConcurrentModification(f"{key.doc_uri} was created concurrently") from exc
            return etag
        cursor = self._execute(
            "UPDATE xcap SET doc=?, etag=?, source=0, port=0 "
            "WHERE username=? AND domain=? AND doc_uri=? AND etag=?",
            (sqlite3.Binary(content), etag, key.username, key.domain, key.doc_uri, expected_etag),
        )
        if cursor.rowcount != 1:
            raise ConcurrentModification(f"{key.doc_uri} changed concurrently")
        return etag

    def write(self, key: DocumentKey, content: bytes, expected=ANY) -> Written:
        """A whole-document write without a separate read (see ``Store``): the check and the
        write are one ``BEGIN IMMEDIATE`` transaction, which SQLite runs one at a time."""
        content = bytes(content)
        self._execute("BEGIN IMMEDIATE", ())
        try:
            row = self._execute("SELECT doc, etag FROM xcap WHERE username=? AND domain=? AND doc_uri=?",
                                (key.username, key.domain, key.doc_uri)).fetchone()
            if row is None:
                if expected is not ANY and expected is not ABSENT:
                    raise ConcurrentModification(f"{key.doc_uri} does not exist")
            elif expected is ABSENT or (expected is not ANY and row[1] != expected):
                raise ConcurrentModification(f"{key.doc_uri} is not in the expected state")
            elif bytes(row[0]) == content:
                self._execute("COMMIT", ())
                return Written(row[1], created=False, changed=False, replaced=row[1])
            etag = new_etag()
            if row is None:
                try:
                    self._execute("INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) "
                                  "VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                                  (key.username, key.domain, key.doc_type, key.doc_uri, sqlite3.Binary(content), etag))
                except sqlite3.IntegrityError as exc:  # the row is missing, so doc_uri is another account's
                    raise DocumentUriTaken(f"{key.doc_uri} is already stored for another user or domain "
                                           "(doc_uri is unique in Kamailio's xcap table)") from exc
            else:
                self._execute("UPDATE xcap SET doc=?, etag=?, source=0, port=0 "
                              "WHERE username=? AND domain=? AND doc_uri=?",
                              (sqlite3.Binary(content), etag, key.username, key.domain, key.doc_uri))
            self._execute("COMMIT", ())
            return Written(etag, created=row is None, changed=True, replaced=row[1] if row is not None else ABSENT)
        except BaseException:
            self._connection().rollback()
            raise

    def delete(self, key: DocumentKey, expected_etag: str) -> None:
        cursor = self._execute(
            "DELETE FROM xcap WHERE username=? AND domain=? AND doc_uri=? AND etag=?",
            (key.username, key.domain, key.doc_uri, expected_etag),
        )
        if cursor.rowcount != 1:
            raise ConcurrentModification(f"{key.doc_uri} changed concurrently")

    def list_documents(self, username: str, domain: str) -> list[DocumentInfo]:
        rows = self._execute(
            "SELECT doc_uri, doc_type, etag, length(doc) FROM xcap "
            "WHERE username=? AND domain=? ORDER BY doc_type, doc_uri",
            (username, domain),
        ).fetchall()
        return [DocumentInfo(doc_uri=r[0], doc_type=r[1], etag=r[2], size=r[3]) for r in rows]

    def documents_of_type(self, doc_type: int):
        rows = self._execute(
            "SELECT username, domain, doc_uri, doc_type, doc FROM xcap WHERE doc_type=? ORDER BY id", (doc_type,)
        ).fetchall()
        for username, domain, doc_uri, row_type, doc in rows:
            yield DocumentKey(username, domain, doc_uri, row_type), bytes(doc)

    # -- the operator commands ---------------------------------------------------------------

    def rows_after(self, after_id: int, limit: int, username: str | None = None,
                   domain: str | None = None) -> list[Row]:
        where, params = self._account_filter(username, domain)
        rows = self._execute(
            "SELECT id, username, domain, doc_uri, doc_type, etag, doc FROM xcap "
            f"WHERE id > ?{where} ORDER BY id LIMIT ?", (after_id, *params, limit)).fetchall()
        return [Row(r[1], r[2], r[3], int(r[4]), r[5], bytes(r[6]), id=r[0]) for r in rows]

    def count_rows(self, username: str | None = None, domain: str | None = None) -> int:
        where, params = self._account_filter(username, domain)
        return int(self._execute(f"SELECT COUNT(*) FROM xcap WHERE 1=1{where}", params).fetchone()[0])

    @staticmethod
    def _account_filter(username: str | None, domain: str | None) -> tuple[str, tuple]:
        if username is None or domain is None:
            return "", ()
        return " AND username=? AND domain=?", (username, domain)

    def restore(self, key: DocumentKey, content: bytes, etag: str) -> str:
        """See ``Store.restore``."""
        return self.restore_many([(key, content, etag)])[0]

    def restore_many(self, documents: Sequence[tuple[DocumentKey, bytes, str]]) -> list[str]:
        """See ``Store.restore_many``: UPDATE by key, else INSERT, all in one ``BEGIN IMMEDIATE``."""
        for _, _, etag in documents:
            check_etag(etag)
        outcomes = []
        self._execute("BEGIN IMMEDIATE", ())
        try:
            for key, content, etag in documents:
                outcomes.append(self._restore(key, bytes(content), etag))
            self._execute("COMMIT", ())
        except BaseException:
            self._connection().rollback()
            raise
        return outcomes

    def _restore(self, key: DocumentKey, content: bytes, etag: str) -> str:
        account = (key.username, key.domain, key.doc_uri)
        row = self._execute("SELECT doc, etag, doc_type FROM xcap WHERE username=? AND domain=? AND doc_uri=?",
                            account).fetchone()
        if row is not None and (bytes(row[0]), row[1], row[2]) == (content, etag, key.doc_type):
            return "unchanged"
        if row is not None:
            self._execute("UPDATE xcap SET doc=?, etag=?, doc_type=?, source=0, port=0 "
                          "WHERE username=? AND domain=? AND doc_uri=?",
                          (sqlite3.Binary(content), etag, key.doc_type, *account))
            return "replaced"
        try:
            self._execute("INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) "
                          "VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                          (key.username, key.domain, key.doc_type, key.doc_uri, sqlite3.Binary(content), etag))
        except sqlite3.IntegrityError as exc:
            raise DocumentUriTaken(f"{key.doc_uri} is stored for another account (doc_uri is unique): "
                                   f"{exc}") from exc
        return "created"

    # -- turns and locks ---------------------------------------------------------------------

    def write_turn(self, key: DocumentKey):
        """The turn for a read-modify-write of one document, among the threads and processes
        using this database file (a lock file beside it; see turns.py)."""
        return self._turns.turn(key.doc_uri)

    def forget_recalled(self, key: DocumentKey) -> None:
        """Nothing to forget: SQLite's turns never recall a document (no copy outside the file)."""

    @contextmanager
    def lock(self, name: str):
        """A named lock across threads (an in-process lock) and processes (flock on a lock file
        beside the database)."""
        with self._locks.setdefault(name, threading.Lock()):
            if self._uri:  # in-memory database: one process only
                yield
                return
            with open(f"{self.path}.{name}.lock", "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        self._keeper.close()
        self._turns.close()

    def ping(self) -> None:
        """Readiness: the database file can be opened by its path and the xcap table read
        (StoreUnavailable otherwise).

        A fresh connection, not this thread's: an open connection keeps reading a file that was
        since removed, unmounted or replaced, which new threads and processes cannot open.
        """
        if self._uri:
            self._execute("SELECT 1 FROM xcap LIMIT 1", ())
            return
        try:
            connection = sqlite3.connect(f"file:{pathname2url(self.path)}?mode=rw", uri=True, timeout=self.timeout)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}", retry_after=1) from exc
        try:
            connection.execute("SELECT 1 FROM xcap LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite {self.path}: {exc}", retry_after=1) from exc
        finally:
            connection.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
