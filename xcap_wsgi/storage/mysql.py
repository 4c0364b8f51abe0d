"""MySQL / MariaDB store over Kamailio's own ``xcap`` table (shared with a live Kamailio).

The store reads and writes the table exactly as Kamailio 5.6's ``xcap_server`` does (see
``shared/spec/kamailio-contract.md`` §1, §2, §10): same columns, ``doc_type`` numbers, ``doc_uri``
(the caller's percent-decoded absolute path, XCAP root included, stored as given), ETag stored
without quotes, ``source=0`` and ``port=0``; an update rewrites the row in place so it keeps its
``id``. Kamailio's modules (xcap_server, presence_xml, rls, utils) read what this store writes.

URL forms (``MySQLStore.from_url`` / ``open_store``; schemes ``mysql``, ``mysql+pymysql``,
``mariadb``)::

    mysql://user:password@host[:port]/database[?option=value&...]
    mysql://user:password@host1[:port1],host2[:port2],.../database[?option=value&...]
    mysql://user:password@/database?unix_socket=/run/mysqld/mysqld.sock

Several comma-separated hosts (IPv6 as ``[::1]:3306``) name the nodes of one MariaDB Galera
cluster (see "Galera" below); each host's port defaults to 3306.

A Unix socket is selected with the ``unix_socket`` query option; the host part is then empty
(there is no ``mysql+unix://`` scheme). User name and password are percent-decoded, so encode
``@ : /`` in them. Query options, all optional (default in brackets):

* ``pool_size`` [10]: at most this many open connections, shared by waitress' threads;
* ``pool_timeout`` [10]: seconds a request waits for a free connection, then 503;
* ``connect_timeout`` [5], ``read_timeout`` [30], ``write_timeout`` [30]: seconds;
* ``retry_after`` [5]: the Retry-After (seconds) suggested while the database is down;
* ``deadlock_retries`` [3]: re-runs of a statement after a deadlock (1213) or lock-wait timeout (1205);
* ``lock_wait_timeout`` [10]: seconds a statement waits for a row lock (session innodb_lock_wait_timeout);
* ``table`` [xcap]: the table name (Kamailio's ``xcap_table`` modparam);
* ``charset`` [utf8mb4]: the connection character set (what Kamailio's libmariadb uses);
* ``driver`` [auto]: ``mysqlclient`` (C, ``pip install 'xcap-wsgi[fast]'``; less CPU per
  statement) when installed and ``ssl`` is disabled, else ``pymysql``; or name one
  (``storage.mysql_connection``);
* ``ssl`` [disabled]: TLS to the database, as Kamailio's db_mysql (``opt_ssl_mode``, off by
  default): ``disabled``; ``preferred`` (TLS when the server offers it, certificate unchecked);
  ``required`` (TLS or no connection; ``ssl_ca=/path/ca.pem``, which implies ``required``, also
  verifies the server certificate and host name against that CA). Off by default also because PyMySQL's opportunistic
  TLS builds an SSL context per connection, about 30 ms of CPU each;
* ``wsrep_sync_wait`` [not set: the server's]: Galera causality checks for this store's sessions
  (``SET SESSION wsrep_sync_wait=N``); 1 makes every read wait until the node has applied all that
  the cluster committed before it, so a write acknowledged by one node is read back from any other.

Concurrency. Every operation is one autocommitted conditional statement, so compare-and-swap
holds across threads, processes and Kamailio itself:

* replace: ``UPDATE xcap SET doc=?, etag=?, source=0, port=0 WHERE username=? AND domain=? AND
  doc_uri=? AND etag=?``. The connection uses ``CLIENT.FOUND_ROWS``, so rowcount counts matched
  rows (it would count *changed* rows otherwise; the ETag always changes anyway);
* create: ``INSERT`` of all columns; a duplicate ``doc_uri`` (1062) is a lost race, unless the
  colliding row is not visible under the key at all (another user's row: ``doc_uri`` is globally
  UNIQUE in Kamailio's schema), which raises ``DocumentUriTaken`` instead: retrying cannot help;
* whole-document write (``write``): ``UPDATE ... WHERE <key> [AND etag=?] AND doc <> ?``, one
  statement for an existing document; a SELECT follows only when it changed nothing (identical
  content, a missing row to INSERT, or another version);
* delete: ``DELETE ... AND etag=?``.

Collation decision (issue #4 item 4). Kamailio's databases are usually ``latin1_swedish_ci``,
where every comparison is case-, accent- and trailing-space-insensitive. This store compares
exactly like Kamailio does, with SQL ``=`` in the database, never in Python: on such a database
``sip:ALICE@example.com`` reads, replaces and deletes alice's row, and the row keeps its
original spelling (the UPDATE does not rewrite username/domain/doc_uri). Because reads use the
same ``=``, a create for a case variant is only attempted when no variant is visible; if one
appears concurrently, the INSERT fails with 1062, the caller re-reads and then finds the row, so
there is no retry loop. On a binary/case-sensitive collation the variants are separate rows,
again exactly as for Kamailio. ETags are compared with ``=`` too; ours carry 120 random bits, so
a case-folded false match is not a practical concern.

Character set. The connection uses utf8mb4 like Kamailio's libmariadb. ``doc`` is a MEDIUMBLOB,
so documents are stored byte for byte. username, domain and doc_uri are VARCHAR in the table's
charset: characters that charset cannot hold, or values longer than the column, would make
MySQL fail ("Illegal mix of collations", "Incorrect string value", "Data too long"); they raise
``UnrepresentableKey`` (a client error, not a 500). ``get`` answers None for such a key and
``list_documents`` an empty list: no such row can exist.

Availability. The connection layer (pool, failover, retries) is ``storage.mysql_connection``,
shared with the subscriber table; URL parsing is ``storage.mysql_url``. Connections come from a
bounded, thread-safe pool. A connection that turns out
to be dead (server restarted, 2006/2013/...) is dropped and the statement is re-run once on a
fresh connection; a re-run write is still a compare-and-swap, so it cannot apply twice. When no
connection can be made, ``StoreUnavailable(retry_after=...)`` is raised (503 + Retry-After);
the next request tries again, so service resumes on its own once the server is back. If the
database is down when the store is created, the schema check is deferred to the first
successful connection.

Galera (issue 10). With several hosts the connection factory tries them in order, starting from
the last one that worked, and skips a node that is not ``wsrep_ready`` (joining, donor without
service, non-primary); every process sticks to its node until that node fails (no fail-back), so
the host order of each process's URL spreads the load. A connection that dies, or a statement
refused with 1047 ("WSREP has not yet prepared node for application use") or a commit refused with
1180 because the node left the primary component, moves the store to the
next host and the statement is re-run there once; when no node answers, ``StoreUnavailable`` (503 +
Retry-After). Galera certifies optimistically: a CAS statement that conflicts with a write
committed on another node fails with 1213 (deadlock) at commit, after the server's own
``wsrep_retry_autocommit`` re-run; it is re-run here (``deadlock_retries``). Every re-run is safe
because each write names the state it replaces: ``UPDATE ... WHERE etag=<old>`` either applies
once or matches nothing (ConcurrentModification -> the operation re-reads, 412 or retried), and a
create that lost a ``doc_uri`` race across nodes re-runs into 1062 -> ConcurrentModification.
``SELECT ... FOR UPDATE`` is never relied on (it does not lock across nodes). A write whose
connection died after the statement was sent may have committed: when its re-run misses, the row
is checked for the ETag this very write generated (120 random bits), and if it is there the write
did land and is reported as done (a delete whose row is gone likewise), so a failover does not
turn one's own successful write into a spurious 412. Recommended for Galera: ``wsrep_sync_wait=1``
(read-your-writes across nodes; the rls-services uniqueness check under ``lock()`` relies on it
too). ``lock()`` uses ``GET_LOCK``, which is local to one Galera node: with several hosts every
process takes it on the first ready node in sorted host order, so the lock is cluster-wide as long
as all processes list the same nodes; a lock held on a node that dies is lost with it.

Client-side refusals (``StoreError`` subclasses in ``base``, mapped by the middleware):
``UnrepresentableKey`` (4xx: key outside the column charset/length), ``DocumentUriTaken`` (409:
doc_uri held by another account's row), ``DocumentTooLarge`` (413: beyond MEDIUMBLOB or the
server's max_allowed_packet, checked before sending so the connection is not dropped).

Schema. The start-up check and ``initdb`` are ``storage.mysql_schema`` (``initdb`` is re-exported
here); Kamailio's column limits and doc_type numbers are ``storage.kamailio``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import pymysql
from pymysql.constants import ER

from ..turns import WriteTurns, host_turns_path
from .base import (
    ABSENT,
    ANY,
    UNKNOWN,
    ConcurrentModification,
    DocumentInfo,
    DocumentKey,
    DocumentTooLarge,
    DocumentUriTaken,
    Row,
    StoredDocument,
    StoreError,
    StoreUnavailable,
    UnrepresentableKey,
    Written,
    check_etag,
    new_etag,
)
from .kamailio import COLUMN_LIMITS, MAX_DOCUMENT_BYTES
from .mysql_connection import (
    MySQLConnections,
    close_quietly as _close_quietly,
    error_code as _error_code,
    misconfigured,
    node_failed_error,
)
from .mysql_schema import check_xcap_schema, initdb
from .mysql_url import parse_url
from .rls_index import MySQLSideTable

log = logging.getLogger(__name__)

__all__ = ["MySQLStore", "UnrepresentableKey", "DocumentUriTaken", "DocumentTooLarge", "initdb", "parse_url",
           "COLUMN_LIMITS", "MAX_DOCUMENT_BYTES"]

#: Bytes pymysql doubles when it escapes a BLOB literal.
_ESCAPED_BYTES = (b"\0", b"\n", b"\r", b"\\", b"'", b'"', b"\x1a")

_KEY_ERRORS = {
    1267,  # illegal mix of collations
    1270,  # illegal mix of collations (3 operands)
    1271,  # illegal mix of collations for operation
    1300,  # invalid character string
    1366,  # incorrect string value
}
_TOO_LONG = 1406  # data too long for column
_PACKET_TOO_LARGE = 1153

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class MySQLStore:
    """Kamailio's ``xcap`` table in MySQL/MariaDB as a compare-and-swap document store."""

    def __init__(
        self,
        *,
        table: str = "xcap",
        check_schema: bool = True,
        recall_cache: bool = False,  # keep each document's last write on this host (turns.py; opt-in)
        **connection: Any,  # MySQLConnections' options (host, port, user, pool_size, driver, ...)
    ):
        if not _IDENTIFIER.match(table):
            raise ValueError(f"invalid table name {table!r}")
        self.table = table
        #: The connection layer (pool, Galera failover, retries), shared in kind with the subscriber table.
        self._db = MySQLConnections(**connection)
        self.retry_after = self._db.retry_after
        self.deadlock_retries = self._db.deadlock_retries
        self.url = self._db.url
        self._pool = self._db.pool
        self._connect_args = self._db.connect_args
        self._hosts = self._db.hosts
        self._named_locks: dict[str, threading.Lock] = {}
        self._turns = WriteTurns(host_turns_path(f"{self.url}/{table}"), recall=recall_cache)
        self._schema_checked = not check_schema
        self.max_allowed_packet: int | None = None  # the server's, read with the schema check
        self._schema_lock = threading.Lock()
        #: The optional rls-services service-URI side table (storage/rls_index.py).
        self.rls_index = MySQLSideTable(self, table)
        if check_schema:
            try:
                self.check_schema()
            except StoreUnavailable as exc:
                if misconfigured(exc):
                    raise  # wrong credentials or database name: waiting will not fix it
                log.warning("%s: database unavailable at start-up, schema check deferred: %s", self.url, exc)

    @classmethod
    def from_url(cls, url: str, **options) -> MySQLStore:
        """``MySQLStore`` for ``mysql://user:pass@host[:port]/db?opt=..`` (see the module docstring)."""
        parsed = parse_url(url)
        arguments = {**parsed.pop("connect"), **parsed}
        arguments.update(options)
        return cls(**arguments)

    # -- connections ------------------------------------------------------------------------

    @property
    def _current(self) -> int:
        """The index of the Galera node new connections go to (see ``MySQLConnections``)."""
        return self._db.current

    @_current.setter
    def _current(self, index: int) -> None:
        self._db.current = index

    def _connect(self, *, lock_node: bool = False):
        return self._db.connect(lock_node=lock_node)

    def check_schema(self) -> None:
        """Raise ``SchemaMismatch`` unless the version row is ('xcap', 4) and the columns are there."""
        connection = self._pool.acquire()
        broken = False
        try:
            self._check_schema_on(connection)
        except pymysql.err.MySQLError as exc:
            broken = node_failed_error(exc)
            if broken:
                raise StoreUnavailable(f"{self.url}: {exc}", retry_after=self.retry_after) from exc
            raise StoreError(f"{self.url}: cannot check the {self.table} table: {exc}") from exc
        finally:
            self._pool.release(connection, broken=broken)

    def _check_schema_on(self, connection) -> None:
        self.max_allowed_packet = check_xcap_schema(connection, self.table, self.url)
        self._schema_checked = True

    def _run(self, work, *, write: bool):
        """Run ``work(cursor)`` through the connection layer (pool, reconnect, deadlock retries).

        Every statement is a single autocommitted compare-and-swap, so re-running it after a lost
        connection (``write`` or not) cannot apply a change twice: a write that did land before
        the connection died makes the re-run miss (ConcurrentModification), never double-apply.
        """
        prepare = None if self._schema_checked else self._deferred_schema_check
        return self._db.run(work, prepare=prepare, translate=self._translate)

    def _deferred_schema_check(self, connection) -> None:
        """The schema check, on the first connection that works (the database was down at start-up)."""
        if not self._schema_checked:
            with self._schema_lock:
                if not self._schema_checked:
                    self._check_schema_on(connection)

    def _translate(self, exc: Exception) -> Exception:
        code = _error_code(exc)
        if code in _KEY_ERRORS:
            return UnrepresentableKey(f"the key cannot be stored in the {self.table} table's charset: {exc}")
        if code == _TOO_LONG:
            if "'doc'" in str(exc):
                return DocumentTooLarge(f"document too large for the {self.table} table: {exc}")
            return UnrepresentableKey(f"a key value is longer than its column: {exc}")
        if code == _PACKET_TOO_LARGE:
            return DocumentTooLarge(f"document larger than the server's max_allowed_packet: {exc}")
        return StoreError(f"{self.url}: {exc}")

    @staticmethod
    def _check_lengths(key: DocumentKey) -> None:
        if (len(key.username) <= COLUMN_LIMITS["username"] and len(key.domain) <= COLUMN_LIMITS["domain"]
                and len(key.doc_uri) <= COLUMN_LIMITS["doc_uri"]):
            return  # the usual case, without a loop over getattr
        for column, limit in COLUMN_LIMITS.items():
            if len(getattr(key, column)) > limit:
                raise UnrepresentableKey(f"{column} is longer than Kamailio's {limit}-character column")

    def _check_size(self, content: bytes) -> None:
        """DocumentTooLarge before sending a statement the server would refuse by dropping the link."""
        if len(content) > MAX_DOCUMENT_BYTES:
            raise DocumentTooLarge(f"{len(content)} bytes: Kamailio's doc column (MEDIUMBLOB) holds at most "
                                   f"{MAX_DOCUMENT_BYTES}")
        # Escaping at most doubles the content: only a document near the limit is worth counting.
        if self.max_allowed_packet is not None and 2 * len(content) + 4096 > self.max_allowed_packet:
            statement = len(content) + sum(content.count(b) for b in _ESCAPED_BYTES) + 4096
            if statement > self.max_allowed_packet:
                raise DocumentTooLarge(f"{len(content)} bytes: the statement would exceed the server's "
                                       f"max_allowed_packet ({self.max_allowed_packet})")

    # -- the Store interface ----------------------------------------------------------------

    def get(self, key: DocumentKey) -> StoredDocument | None:
        try:
            self._check_lengths(key)
        except UnrepresentableKey:
            return None
        sql = f"SELECT doc, etag FROM `{self.table}` WHERE username=%s AND domain=%s AND doc_uri=%s"

        def work(cursor):
            cursor.execute(sql, (key.username, key.domain, key.doc_uri))
            return cursor.fetchone()

        try:
            row = self._run(work, write=False)
        except UnrepresentableKey:
            return None
        return None if row is None else StoredDocument(content=bytes(row[0]), etag=row[1])

    def put(self, key: DocumentKey, content: bytes, expected_etag: str | None) -> str:
        self._check_lengths(key)
        content = bytes(content)
        self._check_size(content)
        etag = new_etag()
        if expected_etag is ABSENT:
            runs = []

            def create(cursor):
                runs.append(1)
                existing = self._insert(cursor, key, content, etag)
                if existing is not None and not (len(runs) > 1 and existing == etag):
                    raise ConcurrentModification(f"{key.doc_uri} was created concurrently")
                # else created (by this run, or by a first run cut off after its commit: "Galera" above)

            self._run(create, write=True)
            return etag

        update = (
            f"UPDATE `{self.table}` SET doc=%s, etag=%s, source=0, port=0 "
            "WHERE username=%s AND domain=%s AND doc_uri=%s AND etag=%s"
        )

        landed = (f"SELECT 1 FROM `{self.table}` WHERE username=%s AND domain=%s AND doc_uri=%s AND etag=%s")
        runs = []

        def work(cursor):
            runs.append(1)
            cursor.execute(update, (content, etag, key.username, key.domain, key.doc_uri, expected_etag))
            if cursor.rowcount == 0 and len(runs) > 1:  # a re-run that missed: did the first run commit?
                cursor.execute(landed, (key.username, key.domain, key.doc_uri, etag))
                return 1 if cursor.fetchone() is not None else 0
            return cursor.rowcount

        if self._run(work, write=True) != 1:
            raise ConcurrentModification(f"{key.doc_uri} changed concurrently")
        return etag

    def _insert(self, cursor, key: DocumentKey, content: bytes, etag: str) -> str | None:
        """INSERT a new row (Kamailio's columns, source and port 0); None when it was created.

        On a duplicate doc_uri, the ETag of the row now visible under the key (a concurrent
        create), or DocumentUriTaken when no row is: the doc_uri belongs to another account
        (doc_uri is UNIQUE in Kamailio's table), and retrying cannot help.
        """
        try:
            cursor.execute(f"INSERT INTO `{self.table}` (username, domain, doc_type, doc_uri, doc, etag, source, "
                           "port) VALUES (%s, %s, %s, %s, %s, %s, 0, 0)",
                           (key.username, key.domain, key.doc_type, key.doc_uri, content, etag))
            return None
        except pymysql.err.IntegrityError as exc:
            if _error_code(exc) != ER.DUP_ENTRY:
                raise
            cursor.execute(f"SELECT etag FROM `{self.table}` WHERE username=%s AND domain=%s AND doc_uri=%s",
                           (key.username, key.domain, key.doc_uri))
            row = cursor.fetchone()
            if row is None:
                raise DocumentUriTaken(f"{key.doc_uri} is already stored for another user or domain "
                                       f"(doc_uri is unique in Kamailio's {self.table} table)") from exc
            return row[0]

    def write(self, key: DocumentKey, content: bytes, expected=ANY) -> Written:
        """A whole-document write without a read first (see ``Store``).

        Replacing an existing document is one autocommitted statement, ``UPDATE ... WHERE <key>
        [AND etag=<expected>] AND doc <> <content>``: it changes the row only when it is in the
        expected state and the content differs. When it changes nothing, one SELECT tells why:
        identical content (keep the ETag), no row (``ANY`` inserts it), or another version
        (``ConcurrentModification``). Re-running after a lost connection is safe as in ``put``:
        a change that did land makes the re-run find its own ETag, never write twice.
        """
        if expected is ABSENT:
            return Written(self.put(key, content, ABSENT), created=True, changed=True, replaced=ABSENT)
        self._check_lengths(key)
        content = bytes(content)
        self._check_size(content)
        etag = new_etag()
        where = "username=%s AND domain=%s AND doc_uri=%s"
        update = (f"UPDATE `{self.table}` SET doc=%s, etag=%s, source=0, port=0 WHERE {where}"
                  + ("" if expected is ANY else " AND etag=%s") + " AND doc <> %s")
        update_args = (content, etag, key.username, key.domain, key.doc_uri,
                       *(() if expected is ANY else (expected,)), content)
        select = f"SELECT doc, etag FROM `{self.table}` WHERE {where}"
        inserted: list[int] = []  # an INSERT was sent (by this run or one cut off by a lost connection)

        def work(cursor):
            cursor.execute(update, update_args)
            if cursor.rowcount == 1:  # one statement: the replaced ETag is known only if it was named
                return Written(etag, created=False, changed=True, replaced=UNKNOWN if expected is ANY else expected)
            cursor.execute(select, (key.username, key.domain, key.doc_uri))
            row = cursor.fetchone()
            if row is not None:
                stored, stored_etag = bytes(row[0]), row[1]
                if stored_etag == etag:  # a re-run: the first run's write did land
                    return Written(etag, created=bool(inserted), changed=True,
                                   replaced=ABSENT if inserted else (UNKNOWN if expected is ANY else expected))
                if stored == content and (expected is ANY or stored_etag == expected):
                    return Written(stored_etag, created=False, changed=False, replaced=stored_etag)
                raise ConcurrentModification(f"{key.doc_uri} is not in the expected state")
            if expected is not ANY:
                raise ConcurrentModification(f"{key.doc_uri} does not exist")
            inserted.append(1)
            if self._insert(cursor, key, content, etag) is not None:
                raise ConcurrentModification(f"{key.doc_uri} was created concurrently")
            return Written(etag, created=True, changed=True, replaced=ABSENT)

        return self._run(work, write=True)

    def delete(self, key: DocumentKey, expected_etag: str) -> None:
        self._check_lengths(key)
        sql = f"DELETE FROM `{self.table}` WHERE username=%s AND domain=%s AND doc_uri=%s AND etag=%s"
        gone = f"SELECT 1 FROM `{self.table}` WHERE username=%s AND domain=%s AND doc_uri=%s"
        runs = []

        def work(cursor):
            runs.append(1)
            cursor.execute(sql, (key.username, key.domain, key.doc_uri, expected_etag))
            if cursor.rowcount == 0 and len(runs) > 1:  # a re-run that missed: the first may have deleted it
                cursor.execute(gone, (key.username, key.domain, key.doc_uri))
                return 1 if cursor.fetchone() is None else 0
            return cursor.rowcount

        if self._run(work, write=True) != 1:
            raise ConcurrentModification(f"{key.doc_uri} changed concurrently")
        self._turns.forget(key.doc_uri)  # DELETE and purge: no copy of it stays on this host

    def forget_recalled(self, key: DocumentKey) -> None:
        """The document was replaced whole: wipe this host's recalled copy of it (turns.py). Only
        with the cache on: the processes of one server share the setting (``delete`` always
        forgets, for ``purge`` from the command line)."""
        if self._turns.recall:
            self._turns.forget(key.doc_uri)

    def list_documents(self, username: str, domain: str) -> list[DocumentInfo]:
        if len(username) > COLUMN_LIMITS["username"] or len(domain) > COLUMN_LIMITS["domain"]:
            return []
        sql = (
            f"SELECT doc_uri, doc_type, etag, LENGTH(doc) FROM `{self.table}` "
            "WHERE username=%s AND domain=%s ORDER BY doc_type, doc_uri"
        )

        def work(cursor):
            cursor.execute(sql, (username, domain))
            return cursor.fetchall()

        try:
            rows = self._run(work, write=False)
        except UnrepresentableKey:
            return []
        return [DocumentInfo(doc_uri=r[0], doc_type=int(r[1]), etag=r[2], size=int(r[3])) for r in rows]

    def documents_of_type(self, doc_type: int):
        sql = (f"SELECT username, domain, doc_uri, doc_type, doc FROM `{self.table}` "
               "WHERE doc_type=%s ORDER BY id")

        def work(cursor):
            cursor.execute(sql, (doc_type,))
            return cursor.fetchall()

        for row in self._run(work, write=False):
            yield DocumentKey(row[0], row[1], row[2], int(row[3])), bytes(row[4])

    # -- the operator commands ---------------------------------------------------------------

    def rows_after(self, after_id: int, limit: int, username: str | None = None,
                   domain: str | None = None) -> list[Row]:
        where, params = self._account_filter(username, domain)
        if where is None:
            return []  # the account cannot be in the table
        sql = (f"SELECT id, username, domain, doc_uri, doc_type, etag, doc FROM `{self.table}` "
               f"WHERE id > %s{where} ORDER BY id LIMIT %s")

        def work(cursor):
            cursor.execute(sql, (after_id, *params, limit))
            return cursor.fetchall()

        return [Row(r[1], r[2], r[3], int(r[4]), r[5], bytes(r[6]), id=int(r[0]))
                for r in self._run(work, write=False)]

    def count_rows(self, username: str | None = None, domain: str | None = None) -> int:
        where, params = self._account_filter(username, domain)
        if where is None:
            return 0
        sql = f"SELECT COUNT(*) FROM `{self.table}` WHERE 1=1{where}"

        def work(cursor):
            cursor.execute(sql, params)
            return int(cursor.fetchone()[0])

        return self._run(work, write=False)

    @staticmethod
    def _account_filter(username: str | None, domain: str | None) -> tuple[str | None, tuple]:
        """The WHERE clause of one account (None when it cannot be stored), or none for all."""
        if username is None or domain is None:
            return "", ()
        if len(username) > COLUMN_LIMITS["username"] or len(domain) > COLUMN_LIMITS["domain"]:
            return None, ()
        return " AND username=%s AND domain=%s", (username, domain)

    def restore(self, key: DocumentKey, content: bytes, etag: str) -> str:
        """See ``Store.restore``."""
        return self.restore_many([(key, content, etag)])[0]

    def restore_many(self, documents: Sequence[tuple[DocumentKey, bytes, str]]) -> list[str]:
        """See ``Store.restore_many``: ``UPDATE`` by key, else ``INSERT``, one transaction.

        Unconditional and idempotent: a re-run after a lost connection or a deadlock runs the
        whole transaction again, which finds the rows it already wrote (same content and ETag:
        "unchanged") and never inserts a second one, as ``doc_uri`` is UNIQUE.
        """
        prepared = []
        for key, content, etag in documents:
            check_etag(etag)
            self._check_lengths(key)
            content = bytes(content)
            self._check_size(content)
            prepared.append((key, content, etag))
        table = self.table
        select = f"SELECT doc, etag, doc_type FROM `{table}` WHERE username=%s AND domain=%s AND doc_uri=%s"
        update = (f"UPDATE `{table}` SET doc=%s, etag=%s, doc_type=%s, source=0, port=0 "
                  "WHERE username=%s AND domain=%s AND doc_uri=%s")

        def restore_one(cursor, key: DocumentKey, content: bytes, etag: str) -> str:
            account = (key.username, key.domain, key.doc_uri)
            cursor.execute(select, account)
            row = cursor.fetchone()
            if row is not None and (bytes(row[0]), row[1], int(row[2])) == (content, etag, key.doc_type):
                return "unchanged"
            if row is not None:
                cursor.execute(update, (content, etag, key.doc_type, *account))
                return "replaced"
            if self._insert(cursor, key, content, etag) is not None:  # created meanwhile: a restore wins
                cursor.execute(update, (content, etag, key.doc_type, *account))
                return "replaced"
            return "created"

        def work(cursor):
            if len(prepared) == 1:  # autocommitted, as every other statement of this store
                return [restore_one(cursor, *prepared[0])]
            cursor.execute("START TRANSACTION")
            try:
                if not self._insert_all_if_absent(cursor, prepared):
                    outcomes = [restore_one(cursor, *document) for document in prepared]
                else:
                    outcomes = ["created"] * len(prepared)
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(pymysql.err.MySQLError, OSError):
                    cursor.execute("ROLLBACK")
                raise
            return outcomes

        return self._run(work, write=True)

    def _insert_all_if_absent(self, cursor, documents: list[tuple[DocumentKey, bytes, str]]) -> bool:
        """The fast path of an import into an empty table: when no row has any of these doc_uris
        (the database's own ``=`` decides, as everywhere in this store), INSERT them all with
        multi-row statements and return True. False (nothing written) when some row exists, or
        when two of them collide (a case variant on a ``_ci`` collation): then each is restored
        on its own."""
        marks = ", ".join(["%s"] * len(documents))
        cursor.execute(f"SELECT 1 FROM `{self.table}` WHERE doc_uri IN ({marks}) LIMIT 1",
                       [key.doc_uri for key, _, _ in documents])
        if cursor.fetchone() is not None:
            return False
        limit = min(4 << 20, (self.max_allowed_packet or 4 << 20) // 2)  # bytes of documents per statement
        chunks: list[list] = [[]]
        size = 0
        for document in documents:
            if chunks[-1] and size + len(document[1]) > limit:
                chunks.append([])
                size = 0
            chunks[-1].append(document)
            size += len(document[1])
        cursor.execute("SAVEPOINT restore_all")
        try:
            for chunk in chunks:
                values = ", ".join(["(%s, %s, %s, %s, %s, %s, 0, 0)"] * len(chunk))
                cursor.execute(f"INSERT INTO `{self.table}` (username, domain, doc_type, doc_uri, doc, etag, source, "
                               f"port) VALUES {values}",
                               [v for key, content, etag in chunk
                                for v in (key.username, key.domain, key.doc_type, key.doc_uri, content, etag)])
        except pymysql.err.IntegrityError as exc:
            if _error_code(exc) != ER.DUP_ENTRY:
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT restore_all")
            return False
        return True

    # -- turns and locks ---------------------------------------------------------------------

    def write_turn(self, key: DocumentKey):
        """The turn for a read-modify-write of one document, among the threads and processes of
        this host that use this database and table (see turns.py). Writers on other hosts still
        race, and the compare-and-swap keeps that safe."""
        return self._turns.turn(key.doc_uri)

    @contextmanager
    def lock(self, name: str, timeout: int = 10):
        """A named lock shared by every process using this MariaDB server (``GET_LOCK``).

        Threads of this process queue on an in-process lock first, so a waiting thread never holds
        a pooled connection the lock holder needs. On a Galera cluster ``GET_LOCK`` is local to one
        node, so with several hosts the lock is always taken on the first ready node in sorted
        host order, the same for every process whose URL lists the same nodes (see README,
        Deployment); a lock held on a node that dies is lost with it.
        """
        lock_name = f"xcap-wsgi:{self.table}:{name}"[:64]
        with self._named_locks.setdefault(name, threading.Lock()):
            # A connection of its own, outside the pool: the body needs pooled connections (a
            # pool_size of 1 would deadlock otherwise), and a fresh one is never a stale one left
            # over from before a server restart.
            connection = self._connect(lock_node=True)
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT GET_LOCK(%s, %s)", (lock_name, timeout))
                    if cursor.fetchone()[0] != 1:
                        raise StoreUnavailable(f"lock {lock_name} busy for {timeout}s", retry_after=1)
            except pymysql.err.MySQLError as exc:
                _close_quietly(connection)
                raise StoreUnavailable(f"{self.url}: lock {lock_name}: {exc}", retry_after=1) from exc
            except BaseException:
                _close_quietly(connection)
                raise
            try:
                yield
            finally:
                # Closing the session releases the lock too, should RELEASE_LOCK fail.
                with contextlib.suppress(pymysql.err.MySQLError, OSError):
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT RELEASE_LOCK(%s)", (lock_name,))
                _close_quietly(connection)

    def close(self) -> None:
        self._db.close()
        self._turns.close()

    def ping(self) -> None:
        """Readiness: a trivial query on the xcap table through the pool (StoreUnavailable)."""
        sql = f"SELECT 1 FROM `{self.table}` LIMIT 1"

        def work(cursor):
            cursor.execute(sql)
            return cursor.fetchall()

        try:
            self._run(work, write=False)
        except StoreUnavailable:
            raise
        except StoreError as exc:  # e.g. the table is gone: not ready either
            raise StoreUnavailable(str(exc), retry_after=self.retry_after) from exc

    def __repr__(self) -> str:
        return f"MySQLStore({self.url!r}, table={self.table!r})"

