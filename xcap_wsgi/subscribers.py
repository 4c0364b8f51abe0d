"""Kamailio's ``subscriber`` table (module auth_db): look up SIP accounts, add them.

The table is Kamailio 5.6's, column for column (``id, username, domain, password, ha1, ha1b``,
unique ``(username, domain)``, version row ``('subscriber', 7)``), so Kamailio's ``auth_db`` and
``kamctl add`` share it with xcap-wsgi. URLs are those of the document store: ``sqlite:///path``
or ``mysql://user:pass@host[:port]/db``.

* ``ha1``  = MD5(``user:domain:password``)           (Kamailio: realm = the SIP domain)
* ``ha1b`` = MD5(``user@domain:domain:password``)
* ``password``: cleartext (kamctl's default ``STORE_PLAINTEXT_PW=1``); empty when only hashes are kept.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.request import pathname2url

from .storage import StoreUnavailable, sqlite_path

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


class SubscriberError(Exception):
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


def split_account(text: str) -> tuple[str, str]:
    """``user@domain`` (or ``sip:user@domain``) as ``(user, lower-cased domain)``."""
    value = text.strip()
    if value.lower().startswith(("sip:", "sips:")):
        value = value.split(":", 1)[1]
    user, at, domain = value.rpartition("@")
    if not at or not user or not domain:
        raise ValueError(f"expected USER@DOMAIN, got {text!r}")
    return user, domain.lower()


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
        return connection

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

    def lookup(self, username: str, domain: str) -> Subscriber | None:
        try:
            rows = self._connection().execute(
                "SELECT username, domain, password, ha1, ha1b FROM subscriber WHERE username=?",
                (username,)).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite subscriber lookup: {exc}", retry_after=1) from exc
        return _pick(rows, username, domain)

    def add(self, username: str, domain: str, password: str, *, store_password: bool = True) -> None:
        ha1, ha1b = kamailio_hashes(username, domain, password)
        try:
            self._connection().execute(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)",
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

    def ping(self) -> None:
        """Readiness: the file opens by its path and the subscriber table answers (StoreUnavailable).
        A fresh connection, for the reason given in SQLiteStore.ping."""
        try:
            connection = sqlite3.connect(f"file:{pathname2url(self.path)}?mode=rw", uri=True, timeout=self.timeout)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}", retry_after=1) from exc
        try:
            connection.execute("SELECT 1 FROM subscriber LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite subscriber table {self.path}: {exc}", retry_after=1) from exc
        finally:
            connection.close()


class MySQLSubscribers:
    """The subscriber table in MySQL/MariaDB (pymysql): one connection per thread, reconnecting."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0):
        from .storage.mysql import parse_url

        parsed = parse_url(url)
        self._connect_args = dict(parsed["connect"], charset=parsed.get("charset", "utf8mb4"), autocommit=True,
                                  connect_timeout=parsed.get("connect_timeout", connect_timeout))
        where = self._connect_args.get("unix_socket") or f"{self._connect_args.get('host')}:{self._connect_args.get('port')}"
        self.url = f"mysql://{self._connect_args['user']}@{where}/{self._connect_args['database']}"
        self._local = threading.local()

    def _run(self, sql: str, params: tuple):
        import pymysql

        for attempt in (1, 2):
            connection = getattr(self._local, "connection", None)
            try:
                if connection is None:
                    connection = self._local.connection = pymysql.connect(**self._connect_args)
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchall()
            except pymysql.err.IntegrityError:
                raise
            except pymysql.err.ProgrammingError as exc:  # e.g. table does not exist
                raise SubscriberError(f"{self.url}: {exc}") from exc
            except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as exc:
                self._drop()
                if attempt == 2:
                    raise StoreUnavailable(f"{self.url}: {exc}", retry_after=1) from exc

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass

    def table_exists(self) -> bool:
        return bool(self._run("SHOW TABLES LIKE 'subscriber'", ()))

    def create_table(self) -> bool:
        """Create the table with Kamailio's MySQL DDL if absent (the ``version`` table must exist)."""
        if self.table_exists():
            return False
        if not self._run("SHOW TABLES LIKE 'version'", ()):
            raise SubscriberError(f"{self.url}: no Kamailio 'version' table; run 'xcap-wsgi initdb' "
                                  "or kamdbctl create first")
        for statement in MYSQL_DDL:
            self._run(statement, ())
        return True

    def lookup(self, username: str, domain: str) -> Subscriber | None:
        rows = self._run("SELECT username, domain, password, ha1, ha1b FROM subscriber WHERE username=%s AND domain=%s",
                         (username, domain))
        return _pick(rows, username, domain)

    def add(self, username: str, domain: str, password: str, *, store_password: bool = True) -> None:
        import pymysql

        ha1, ha1b = kamailio_hashes(username, domain, password)
        try:
            self._run("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (%s, %s, %s, %s, %s)",
                      (username, domain, password if store_password else "", ha1, ha1b))
        except pymysql.err.IntegrityError:
            raise SubscriberError(f"{username}@{domain} already exists") from None

    def close(self) -> None:
        self._drop()

    def ping(self) -> None:
        """Readiness: a trivial query on the subscriber table (StoreUnavailable)."""
        try:
            self._run("SELECT 1 FROM subscriber LIMIT 1", ())
        except SubscriberError as exc:
            raise StoreUnavailable(str(exc), retry_after=1) from exc


def open_subscribers(url: str, *, create: bool = True):
    """The subscriber table a database URL names. SQLite: created if absent (``create``)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        path = sqlite_path(url)
        if path == ":memory:":
            raise ValueError("an in-memory SQLite database cannot hold subscribers; use sqlite:///file")
        return SQLiteSubscribers(path, create=create)
    if scheme in ("mysql", "mysql+pymysql", "mariadb"):
        return MySQLSubscribers(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or mysql://user:pass@host/db")
