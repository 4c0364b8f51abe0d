"""The rls-services service-URI side table: index lookups instead of scans of the ``xcap`` table.

Kamailio's ``xcap`` table has no index on ``doc_type`` alone, so "every rls-services document"
is a full table scan. xcap-wsgi keeps an optional side table, never read by Kamailio::

    xcap_rls_service_uri(service_uri, doc_uri, username, domain, etag,
                         PRIMARY KEY (service_uri, doc_uri), INDEX (doc_uri))

one row per (normalised service URI, rls-services document that declares it), with the ETag of
the ``xcap`` row it was derived from. ``service_uri`` is the URI as Kamailio's rls matches it
(``sip:user@host``, see ``xcap_wsgi.rls_index.service_key``); it is not UNIQUE on its own so that
duplicates written by other tools can be represented (and reported by ``check``).

The table is created by ``xcap-wsgi initdb`` (and with a new SQLite file); a database Kamailio
created works without it: ``available()`` is detected once per store, logged, and callers fall
back to scanning (today's behaviour). SQL lives here; the rules (which URIs a document declares,
what a clash is) live in ``xcap_wsgi.rls_index``.

The table for a store whose ``xcap`` table is called ``T`` is ``T_rls_service_uri``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator

from . import kamailio

log = logging.getLogger(__name__)

#: rls-services (RFC 4826) rows of Kamailio's xcap table.
RLS_DOC_TYPE = kamailio.RLS_SERVICES  # Kamailio's doc_type of rls-services rows

#: Rows per IN (...) list and per batch of a rebuild.
BATCH = 500

MYSQL_DDL = """CREATE TABLE IF NOT EXISTS `{side}` (
    `service_uri` VARCHAR(255) NOT NULL,
    `doc_uri` VARCHAR(255) NOT NULL,
    `username` VARCHAR(64) NOT NULL,
    `domain` VARCHAR(64) NOT NULL,
    `etag` VARCHAR(128) NOT NULL,
    PRIMARY KEY (`service_uri`, `doc_uri`),
    INDEX `{side}_doc_uri_idx` (`doc_uri`)
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""

SQLITE_DDL = (
    """CREATE TABLE IF NOT EXISTS {side} (
        service_uri VARCHAR(255) NOT NULL,
        doc_uri VARCHAR(255) NOT NULL,
        username VARCHAR(64) NOT NULL,
        domain VARCHAR(64) NOT NULL,
        etag VARCHAR(128) NOT NULL,
        PRIMARY KEY (service_uri, doc_uri))""",
    "CREATE INDEX IF NOT EXISTS {side}_doc_uri_idx ON {side} (doc_uri)",
)


class _SideTable:
    """What both backends share; subclasses run statements (``_query``/``_transaction``)."""

    placeholder = "?"

    def __init__(self, store, table: str):
        self.store = store
        self.table = table
        self.side = f"{table}_rls_service_uri"
        self._present: bool | None = None
        self._detect_lock = threading.Lock()

    # -- presence -------------------------------------------------------------------------------

    def available(self) -> bool:
        """Whether the side table exists: detected once per store (and logged), then cached."""
        if self._present is None:
            with self._detect_lock:
                if self._present is None:
                    self._present = self._exists()
                    if self._present:
                        log.info("%s: rls-services service URIs indexed in %s", self.store, self.side)
                    else:
                        log.warning("%s: no %s table: rls-services uniqueness checks and the global index "
                                    "scan the %s table (run 'xcap-wsgi initdb' to create it)",
                                    self.store, self.side, self.table)
        return self._present

    # -- reads ----------------------------------------------------------------------------------

    def owners(self, service_uris: Iterable[str]) -> list[tuple[str, str, str, str, str]]:
        """(service_uri, username, domain, doc_uri, etag) of every document claiming one of
        ``service_uris``: primary-key lookups."""
        found = []
        for batch in _batches(sorted(set(service_uris))):
            marks = ", ".join([self.placeholder] * len(batch))
            found += self._query(f"SELECT service_uri, username, domain, doc_uri, etag FROM {self._q(self.side)} "
                                 f"WHERE service_uri IN ({marks})", tuple(batch))
        return [tuple(row) for row in found]

    def indexed_documents(self) -> list[tuple[str, str, str]]:
        """(username, domain, doc_uri) of every document with at least one service: a scan of
        the side table only (as large as the number of services), never of ``xcap``."""
        return [tuple(r) for r in self._query(
            f"SELECT DISTINCT username, domain, doc_uri FROM {self._q(self.side)}", ())]

    def fetch_documents(self, doc_uris: list[str]) -> list[tuple[int, str, str, str, bytes, str]]:
        """(id, username, domain, doc_uri, doc, etag) of the rls-services rows with these
        doc_uris (unique-index lookups on ``xcap.doc_uri``), ordered by id."""
        rows = []
        for batch in _batches(doc_uris):
            marks = ", ".join([self.placeholder] * len(batch))
            rows += self._query(f"SELECT id, username, domain, doc_uri, doc, etag FROM {self._q(self.table)} "
                                f"WHERE doc_uri IN ({marks}) AND doc_type={RLS_DOC_TYPE}", tuple(batch))
        return sorted(((int(r[0]), r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows), key=lambda r: r[0])

    def entries(self) -> list[tuple[str, str, str]]:
        """Every (service_uri, doc_uri, etag) of the side table (for ``check``)."""
        return [tuple(r) for r in self._query(
            f"SELECT service_uri, doc_uri, etag FROM {self._q(self.side)} ORDER BY doc_uri, service_uri", ())]

    def scan_rls_rows(self) -> Iterator[tuple[str, str, str, bytes, str]]:
        """(username, domain, doc_uri, doc, etag) of every rls-services row, in batches by id:
        the full scan a rebuild or ``check`` needs (never on the request path)."""
        after = -1
        while True:
            rows = self._query(f"SELECT id, username, domain, doc_uri, doc, etag FROM {self._q(self.table)} "
                               f"WHERE doc_type={RLS_DOC_TYPE} AND id > {self.placeholder} ORDER BY id LIMIT {BATCH}",
                               (after,))
            if not rows:
                return
            for row in rows:
                yield row[1], row[2], row[3], bytes(row[4]), row[5]
            after = int(rows[-1][0])

    # -- writes ---------------------------------------------------------------------------------

    def replace(self, username: str, domain: str, doc_uri: str, etag: str | None, service_uris: Iterable[str]) -> None:
        """Make the side table say that ``doc_uri`` (at ``etag``) declares exactly
        ``service_uris`` (none, or ``etag=None``: the document is gone), in one transaction."""
        p = self.placeholder
        statements: list[tuple[str, tuple[str, ...]]] = [
            (f"DELETE FROM {self._q(self.side)} WHERE doc_uri={p}", (doc_uri,))]
        if etag is not None:
            statements += [(f"INSERT INTO {self._q(self.side)} (service_uri, doc_uri, username, domain, etag) "
                            f"VALUES ({p}, {p}, {p}, {p}, {p})", (uri, doc_uri, username, domain, etag))
                           for uri in sorted(set(service_uris))]
        self._transaction(statements)

    def rebuild(self, documents: Iterable[tuple[str, str, str, str, list[str]]]) -> int:
        """Replace the whole side table with ``documents`` ((username, domain, doc_uri, etag,
        service_uris), e.g. from ``scan_rls_rows``); returns the number of entries written."""
        p = self.placeholder
        statements: list[tuple[str, tuple[str, ...]]] = [(f"DELETE FROM {self._q(self.side)}", ())]
        count = 0
        for username, domain, doc_uri, etag, uris in documents:
            for uri in sorted(set(uris)):
                statements.append((f"INSERT INTO {self._q(self.side)} (service_uri, doc_uri, username, domain, "
                                   f"etag) VALUES ({p}, {p}, {p}, {p}, {p})", (uri, doc_uri, username, domain, etag)))
                count += 1
        self._transaction(statements)
        return count

    # -- EXPLAIN (benchmarks/rls_scale.py) --------------------------------------------------------

    def explain(self) -> dict[str, list[tuple]]:
        """The database's query plans for the uniqueness lookup, the index listing, and
        today's fallback scan (``documents_of_type``)."""
        p = self.placeholder
        prefix = self._explain_prefix
        return {
            "uniqueness lookup": self._query(
                f"{prefix} SELECT service_uri, username, domain, doc_uri, etag FROM {self._q(self.side)} "
                f"WHERE service_uri IN ({p})", ("sip:x@example.com",)),
            "global index: documents": self._query(
                f"{prefix} SELECT DISTINCT username, domain, doc_uri FROM {self._q(self.side)}", ()),
            "global index: rows by doc_uri": self._query(
                f"{prefix} SELECT id, username, domain, doc_uri, doc, etag FROM {self._q(self.table)} "
                f"WHERE doc_uri IN ({p}, {p}) AND doc_type={RLS_DOC_TYPE}", ("/a", "/b")),
            "fallback scan (no side table)": self._query(
                f"{prefix} SELECT username, domain, doc_uri, doc_type, doc FROM {self._q(self.table)} "
                f"WHERE doc_type={p} ORDER BY id", (RLS_DOC_TYPE,)),
        }

    # -- backend hooks --------------------------------------------------------------------------

    _explain_prefix = "EXPLAIN"

    def _q(self, name: str) -> str:
        return name

    def _exists(self) -> bool:
        raise NotImplementedError

    def create(self) -> bool:
        """Create the side table if absent; True when it was created (then ``rebuild`` it)."""
        raise NotImplementedError

    def _query(self, sql: str, params: tuple) -> list:
        raise NotImplementedError

    def _transaction(self, statements: list[tuple[str, tuple]]) -> None:
        raise NotImplementedError


class SQLiteSideTable(_SideTable):
    """The side table in the SQLite file (``storage.sqlite.SQLiteStore``)."""

    _explain_prefix = "EXPLAIN QUERY PLAN"

    def _exists(self) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self.side,)))

    def create(self) -> bool:
        existed = self._exists()
        if not existed:
            self._transaction([(ddl.format(side=self.side), ()) for ddl in SQLITE_DDL])
        self._present = True
        return not existed

    def _query(self, sql: str, params: tuple) -> list:
        return self.store._execute(sql, params).fetchall()

    def _transaction(self, statements: list[tuple[str, tuple]]) -> None:
        execute = self.store._execute
        execute("BEGIN IMMEDIATE", ())
        try:
            for sql, params in statements:
                execute(sql, params)
            execute("COMMIT", ())
        except BaseException:
            self.store._connection().rollback()
            raise


class MySQLSideTable(_SideTable):
    """The side table next to Kamailio's table in MySQL/MariaDB (``storage.mysql.MySQLStore``)."""

    placeholder = "%s"

    def _q(self, name: str) -> str:
        return f"`{name}`"

    def _exists(self) -> bool:
        return bool(self._query("SHOW TABLES LIKE %s", (self.side.replace("_", "\\_"),)))

    def create(self) -> bool:
        existed = self._exists()
        if not existed:
            self._query(MYSQL_DDL.format(side=self.side), ())
        self._present = True
        return not existed

    def _query(self, sql: str, params: tuple) -> list:
        def work(cursor):
            cursor.execute(sql, params)
            return list(cursor.fetchall())

        return self.store._run(work, write=False)

    def _transaction(self, statements: list[tuple[str, tuple]]) -> None:
        def work(cursor):  # re-runnable as a whole: DELETE + INSERTs of one final state
            cursor.execute("START TRANSACTION")
            try:
                for sql, params in statements:
                    cursor.execute(sql, params)
                cursor.execute("COMMIT")
            except BaseException:
                try:
                    cursor.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - a dead connection rolls back by itself
                    pass
                raise

        self.store._run(work, write=True)


def _batches(items: list[str]) -> Iterator[list[str]]:
    items = list(items)
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]
