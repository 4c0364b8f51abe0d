"""Kamailio's ``subscriber`` table (module auth_db) in SQLite or MySQL/MariaDB: look up SIP
accounts, add them. The account naming rules and the public facade are ``xcap_wsgi.subscribers``.

The table is Kamailio 5.6's, column for column (``id, username, domain, password, ha1, ha1b``,
unique ``(username, domain)``, version row ``('subscriber', 7)``), so Kamailio's ``auth_db`` and
``kamctl add`` share it with xcap-wsgi. URLs are those of the document store: ``sqlite:///path``
or ``mysql://user:pass@host[,host2...][:port]/db?options``.

MySQL goes through the document store's connection layer (``storage.mysql_connection``): the same
pool, multi-host Galera failover, ``wsrep_sync_wait`` and retries, and ``StoreUnavailable`` (503 +
Retry-After) when no server answers. Every statement here is a single autocommitted SELECT or
INSERT, so the layer may re-run it after a lost connection (a re-run INSERT that finds its own row
reports "already exists", which ``adduser`` shows; nothing is written twice).

* ``ha1``  = MD5(``user:domain:password``)           (Kamailio: realm = the SIP domain)
* ``ha1b`` = MD5(``user@domain:domain:password``)
* ``password``: cleartext (kamctl's default ``STORE_PLAINTEXT_PW=1``); empty when only hashes are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from .base import StoreError, StoreUnavailable, UnrepresentableKey

__all__ = ["Subscriber", "SubscriberError", "SQLiteSubscribers", "MySQLSubscribers", "open_subscribers",
           "check_table", "kamailio_hashes", "SQLITE_DDL", "MYSQL_DDL", "SUBSCRIBER_TABLE_VERSION"]

# Kamailio 5.6.3, /usr/share/kamailio/db_sqlite/auth_db-create.sql (package kamailio-sqlite-modules)
# and standard-create.sql for the version table.
SQLITE_DDL = (
    """CREATE TABLE IF NOT EXISTS version (
    id INTEGER PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
)""",
    """CREATE TABLE subscriber (
    id INTEGER PRIMARY KEY NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain)
)""",
    "CREATE INDEX subscriber_username_idx ON subscriber (username)",
    "INSERT INTO version (table_name, table_version) values ('subscriber','7')",
)

# Kamailio 5.6.3, /usr/share/kamailio/mysql/auth_db-create.sql (package kamailio), verbatim.
MYSQL_DDL = (
    """CREATE TABLE `subscriber` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `username` VARCHAR(64) DEFAULT '' NOT NULL,
    `domain` VARCHAR(64) DEFAULT '' NOT NULL,
    `password` VARCHAR(64) DEFAULT '' NOT NULL,
    `ha1` VARCHAR(128) DEFAULT '' NOT NULL,
    `ha1b` VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT account_idx UNIQUE (`username`, `domain`)
)""",
    "CREATE INDEX username_idx ON subscriber (`username`)",
    "INSERT INTO version (table_name, table_version) values ('subscriber','7')",
)

SUBSCRIBER_TABLE_VERSION = 7

#: MySQL errors meaning "this username/domain cannot be in the table" (charset, length): no row.
_KEY_ERRORS = {1267, 1270, 1271, 1300, 1366, 1406}

_COLUMNS = "username, domain, password, ha1, ha1b"

log = logging.getLogger("xcap_wsgi.subscribers")


class SubscriberError(StoreError):
    """The subscriber table is missing or unusable, or an account cannot be added."""


@dataclass(frozen=True)
class Subscriber:
    username: str
    domain: str
    password: str
    ha1: str
    ha1b: str

    @property
    def identity(self) -> str:
        """``user@domain`` as handed to the application in ``REMOTE_USER``."""
        return f"{self.username}@{self.domain.lower()}"


def kamailio_hashes(username: str, domain: str, password: str) -> tuple[str, str]:
    """``(ha1, ha1b)`` the way ``kamctl add`` computes them."""
    ha1 = hashlib.md5(f"{username}:{domain}:{password}".encode()).hexdigest()
    ha1b = hashlib.md5(f"{username}@{domain}:{domain}:{password}".encode()).hexdigest()
    return ha1, ha1b


def _pick(rows, username: str, domain: str) -> Subscriber | None:
    """The row for exactly ``username`` (case-sensitive) and ``domain`` (case-insensitive).

    MySQL compares under the table's collation (latin1_swedish_ci: case-insensitive); the
    final decision is made here so both backends behave the same.
    """
    for row in rows:
        values = [v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else (v or "") for v in row]
        if values[0] == username and values[1].lower() == domain.lower():
            return Subscriber(*values)
    return None


class SQLiteSubscribers:
    """The subscriber table in an SQLite file; one connection per thread."""

    def __init__(self, path: str, *, create: bool = True, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        if create:
            self.create_table()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                             check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
            self._local.connection = connection
            self._local.inode = _inode(self.path)
        return connection

    def _query(self, sql: str, params: tuple = ()) -> list:
        """Rows of one statement; StoreUnavailable when the file is busy or unreadable, SubscriberError
        when it is not a usable subscriber table (never an uncaught sqlite3 error: that was a 500)."""
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise SubscriberError(f"{self.path}: Kamailio's subscriber table does not exist") from exc
            raise StoreUnavailable(f"SQLite subscriber table {self.path}: {exc}", retry_after=1) from exc
        except sqlite3.Error as exc:
            raise SubscriberError(f"SQLite subscriber table {self.path}: {exc}") from exc

    def create_table(self) -> bool:
        """Create Kamailio's subscriber table (and version row) if absent; True if created."""
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            exists = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='subscriber'").fetchone()
            if exists:
                connection.execute("COMMIT")
                return False
            for statement in SQLITE_DDL:
                connection.execute(statement)
            connection.execute("COMMIT")
            return True
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise SubscriberError(f"{self.path}: cannot create the subscriber table: {exc}") from exc

    def table_exists(self) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='subscriber'"))

    def lookup(self, username: str, domain: str) -> Subscriber | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM subscriber WHERE username=?", (username,))
        return _pick(rows, username, domain)

    def ping(self) -> None:
        """Raise StoreUnavailable / SubscriberError unless the subscriber table can be read.

        A thread's open connection still reads a file that was moved or replaced: that
        connection is dropped, so each thread's answer is the one the file now at the path gives."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.inode != _inode(self.path):
            self._local.connection = None
            connection.close()
        self._query("SELECT 1 FROM subscriber LIMIT 1")

    def add(self, username: str, domain: str, password: str, *, store_password: bool = True) -> None:
        # SQLite's UNIQUE is case-sensitive. Domains are not, and a document store on Kamailio's
        # usual latin1_swedish_ci collation would give "Bob" the rows of "bob" (MySQL's own
        # subscriber table refuses such a twin by its case-insensitive UNIQUE index): refuse both.
        twin = self._query("SELECT username, domain FROM subscriber WHERE username=? COLLATE NOCASE "
                           "AND domain=? COLLATE NOCASE", (username, domain))
        if twin:
            raise SubscriberError(f"{username}@{domain} already exists"
                                  + ("" if tuple(twin[0]) == (username, domain) else f" as {twin[0][0]}@{twin[0][1]}"))
        ha1, ha1b = kamailio_hashes(username, domain, password)
        try:
            self._connection().execute(
                f"INSERT INTO subscriber ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (username, domain, password if store_password else "", ha1, ha1b))
        except sqlite3.IntegrityError:
            raise SubscriberError(f"{username}@{domain} already exists") from None
        except sqlite3.Error as exc:
            raise SubscriberError(f"cannot add {username}@{domain}: {exc}") from exc

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def check_table(subscribers) -> bool:
    """The start-up check of ``serve``: SubscriberError when the table is missing or the URL is
    wrong (waiting will not fix either). A database that is only down is logged and False: like
    the document store, requests then get 503 until it is back, so a worker that starts during an
    outage (a replacement, or the second while the first serves) serves instead of exiting."""
    if not hasattr(subscribers, "table_exists"):
        return True
    try:
        exists = subscribers.table_exists()
    except StoreUnavailable as exc:
        from .mysql_connection import misconfigured

        if misconfigured(exc):
            raise SubscriberError(str(exc)) from exc
        log.warning("subscriber table unavailable at start-up, checked again by each request: %s", exc)
        return False
    if not exists:
        raise SubscriberError("Kamailio's subscriber table does not exist (kamdbctl create, or xcap-wsgi adduser)")
    return True


class MySQLSubscribers:
    """The subscriber table in MySQL/MariaDB, through the document store's connection layer."""

    def __init__(self, url: str):
        from .mysql_connection import MySQLConnections

        #: Pool, Galera failover, session settings and retries: ``storage.mysql_connection``.
        self.connections = MySQLConnections.from_url(url)
        self.url = self.connections.url

    def _translate(self, exc: Exception) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in _KEY_ERRORS:
            return UnrepresentableKey(f"{self.url}: {exc}")
        return SubscriberError(f"{self.url}: {exc}")  # e.g. no subscriber table

    def _run(self, sql: str, params: tuple = ()) -> list:
        def work(cursor):
            cursor.execute(sql, params)
            return cursor.fetchall()

        return self.connections.run(work, translate=self._translate)

    def table_exists(self) -> bool:
        return bool(self._run("SHOW TABLES LIKE 'subscriber'"))

    def create_table(self) -> bool:
        """Create the table with Kamailio's MySQL DDL if absent (the ``version`` table must exist)."""
        if self.table_exists():
            return False
        if not self._run("SHOW TABLES LIKE 'version'"):
            raise SubscriberError(f"{self.url}: no Kamailio 'version' table; run 'xcap-wsgi initdb' "
                                  "or kamdbctl create first")
        for statement in MYSQL_DDL:
            self._run(statement)
        return True

    def lookup(self, username: str, domain: str) -> Subscriber | None:
        try:
            rows = self._run(f"SELECT {_COLUMNS} FROM subscriber WHERE username=%s AND domain=%s", (username, domain))
        except UnrepresentableKey:
            return None  # a name the table's charset or columns cannot hold: no such row
        return _pick(rows, username, domain)

    def ping(self) -> None:
        """Raise StoreUnavailable / SubscriberError unless the subscriber table can be read."""
        self._run("SELECT 1 FROM subscriber LIMIT 1")

    def add(self, username: str, domain: str, password: str, *, store_password: bool = True) -> None:
        import pymysql

        ha1, ha1b = kamailio_hashes(username, domain, password)

        def work(cursor):
            try:
                cursor.execute(f"INSERT INTO subscriber ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                               (username, domain, password if store_password else "", ha1, ha1b))
            except pymysql.err.IntegrityError:
                raise SubscriberError(f"{username}@{domain} already exists") from None

        self.connections.run(work, translate=self._translate)

    def close(self) -> None:
        self.connections.close()


def open_subscribers(url: str, *, create: bool = True):
    """The subscriber table a database URL names. SQLite: created if absent (``create``)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from . import sqlite_path

        path = sqlite_path(url)
        if path == ":memory:":
            raise ValueError("an in-memory SQLite database cannot hold subscribers; use sqlite:///file")
        return SQLiteSubscribers(path, create=create)
    if scheme in ("mysql", "mysql+pymysql", "mariadb"):
        return MySQLSubscribers(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or mysql://user:pass@host/db")


def _inode(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
