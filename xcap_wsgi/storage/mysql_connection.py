"""The MySQL/MariaDB connection layer shared by the document store and the subscriber table.

``MySQLConnections`` owns what both need from a database server (see ``storage.mysql`` for the
URL options and the Galera discussion):

* a bounded, thread-safe pool (``pool_size``, ``pool_timeout``: a request waits that long for a
  connection, then ``StoreUnavailable`` -> 503);
* several hosts (Galera nodes) tried in order from the last one that worked, skipping nodes that
  are not ``wsrep_ready``; a connection that dies moves new connections to the next node;
* session settings on every connection: ``innodb_lock_wait_timeout`` and, when given,
  ``wsrep_sync_wait`` (read-your-writes across Galera nodes);
* ``run(work)``: ``work(cursor)`` on a pooled connection, re-run once on a fresh connection (next
  node) when the connection turns out dead, re-run after a deadlock or lock-wait timeout
  (``deadlock_retries``), and ``StoreUnavailable(retry_after=...)`` when no server answers. The
  caller's statements must therefore be safe to re-run (each is one autocommitted statement or a
  compare-and-swap, see ``storage.mysql``);
* ``ping()``: one ``SELECT 1`` through all of the above (readiness checks);
* the driver (URL option ``driver``): ``mysqlclient`` (the C driver, ``pip install
  'xcap-wsgi[fast]'``) when it is installed and TLS is off, else PyMySQL (pure Python). The C
  driver spends less CPU per statement (see docs/benchmarks.md); its exceptions are re-raised as
  the PyMySQL classes of the same DB-API name (``pymysql.err.*``, same ``args``), so the storage
  code catches one set of classes whichever driver runs.

Server-side errors that are not about the connection are handed to the caller's ``translate``
(to a ``StoreError`` subclass); the connection stays in the pool.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

import pymysql
from pymysql.constants import CLIENT, ER

try:  # the C driver (mysqlclient), optional: pip install 'xcap-wsgi[fast]'
    import MySQLdb  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the installation
    MySQLdb = None

from .base import StoreError, StoreUnavailable
from .mysql_url import parse_url, safe_url

log = logging.getLogger("xcap_wsgi.storage.mysql")

__all__ = ["MySQLConnections", "Pool", "CONNECTION_ERRORS", "CONFIGURATION_ERRORS", "LOCK_ERRORS",
           "DRIVERS", "close_quietly", "error_code", "misconfigured", "node_failed_error", "driver_available"]

#: Values of the URL option ``driver``.
DRIVERS = ("auto", "pymysql", "mysqlclient")

#: Connection-level errors: the connection is gone or could not be made.
CONNECTION_ERRORS = {
    2002,  # can't connect through socket
    2003,  # can't connect to server
    2006,  # server has gone away
    2013,  # lost connection during query
    2014,  # commands out of sync
    2055,  # lost connection (system error)
    ER.SERVER_SHUTDOWN,  # 1053
    1927,  # MariaDB: connection killed
    ER.CON_COUNT_ERROR,  # 1040 too many connections
    1129,  # host blocked
    4031,  # MariaDB 10.x: disconnected by server (idle timeout)
    1047,  # Galera: WSREP has not yet prepared node for application use (joining, non-primary)
}
#: Refusals that mean the URL is wrong rather than the server down (checked at start-up only).
CONFIGURATION_ERRORS = {ER.DBACCESS_DENIED_ERROR, ER.ACCESS_DENIED_ERROR, ER.BAD_DB_ERROR}  # 1044, 1045, 1049
LOCK_ERRORS = {ER.LOCK_DEADLOCK, ER.LOCK_WAIT_TIMEOUT}  # 1213, 1205


def close_quietly(connection) -> None:
    if connection is None:
        return
    try:
        connection.close()
    except Exception:  # already closed / broken socket
        pass


def error_code(exc: BaseException | None) -> int | None:
    if exc is not None and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def misconfigured(exc: StoreUnavailable) -> bool:
    """Whether the server refused the URL itself (credentials, database name), so that waiting for
    it, as for a server that is down, would not help (start-up checks)."""
    return error_code(exc.__cause__) in CONFIGURATION_ERRORS


#: Galera refuses a commit with 1180 ("... provider status: Not connected to Primary Component")
#: when its node left the primary component while the statement ran: nothing was applied.
_COMMIT_ERROR = 1180


def node_failed_error(exc: BaseException) -> bool:
    """Whether ``exc`` means this connection's server is gone or out of the cluster, so the store
    moves to the next node and runs the statement again there (each is a compare-and-swap)."""
    code = error_code(exc)
    if code in CONNECTION_ERRORS or isinstance(exc, pymysql.err.InterfaceError):
        return True
    return code == _COMMIT_ERROR and "Primary Component" in str(exc)


def _check_encrypted(connection) -> None:
    """OperationalError (2026, as the client libraries' own SSL errors) unless ``connection``
    runs over TLS: with ``ssl=required``, a server (or a man in the middle) that does not offer
    TLS must not get the password hashes and documents in plain text."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cursor.fetchone()
    if not row or not row[1]:
        close_quietly(connection)
        raise pymysql.err.OperationalError(2026, "ssl=required, but the connection is not encrypted")


def driver_available(name: str) -> bool:
    """Whether the driver ``name`` (pymysql / mysqlclient) can be used here."""
    return name == "pymysql" or (name == "mysqlclient" and MySQLdb is not None)


def _as_pymysql_error(exc: BaseException) -> BaseException:
    """The PyMySQL exception of the same DB-API class as the C driver's ``exc`` (same args)."""
    cls = getattr(pymysql.err, type(exc).__name__, None)
    if not (isinstance(cls, type) and issubclass(cls, pymysql.err.MySQLError)):
        cls = pymysql.err.OperationalError if isinstance(exc, MySQLdb.OperationalError) else pymysql.err.MySQLError
    return cls(*exc.args)


class _CCursor:
    """A lean buffered cursor over mysqlclient's connection, raising PyMySQL's exception classes.

    It is what ``MySQLdb.cursors.Cursor`` does for the statements this package runs (one statement
    per ``execute``, results stored client-side), without its per-statement bookkeeping
    (description, field flags, warning count, insert id): about 20 us of CPU less per statement.
    Parameters are bound exactly as mysqlclient binds them: each goes through the connection's
    own ``literal`` (its escaping, ``_binary`` prefix for bytes) into the ``%s`` placeholders.
    Only what the storage code uses is here: ``execute``, ``fetchone``, ``fetchall``,
    ``rowcount``, ``close`` and the ``with`` block.
    """

    __slots__ = ("_db", "_rows", "_next", "rowcount")

    def __init__(self, connection):
        self._db = connection
        self._rows: tuple = ()
        self._next = 0
        self.rowcount = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def execute(self, query, args=None) -> int:
        db = self._db
        statement = query.encode(db.encoding) if isinstance(query, str) else query
        if args is not None:
            statement = statement % tuple(_literals(db, args))
        try:
            db.query(statement)
            result = db.store_result()
            self.rowcount = db.affected_rows()
        except MySQLdb.MySQLError as exc:
            raise _as_pymysql_error(exc) from exc
        self._rows = () if result is None else result.fetch_row(0)
        self._next = 0
        return self.rowcount

    def fetchone(self):
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> tuple:
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    def close(self) -> None:
        self._rows = ()


def _literals(db, args):
    """``db.literal`` of each argument, with its two common cases inline: a ``str`` is encoded in
    the connection's encoding and escaped, ``bytes`` escaped behind ``_binary`` (this module's
    connections set ``binary_prefix``), exactly as mysqlclient's ``literal`` does them."""
    encoding = db.encoding
    for value in args:
        kind = type(value)
        if kind is str:
            yield db.string_literal(value.encode(encoding))
        elif kind is bytes:
            yield b"_binary" + db.string_literal(value)
        else:
            yield db.literal(value)


def _connect_mysqlclient(args: dict):
    """A mysqlclient connection from PyMySQL-style ``args`` (TLS off; see ``MySQLConnections``)."""
    args = dict(args)
    args.pop("ssl_disabled", None)
    if args.get("host") == "localhost":
        # libmysqlclient reads "localhost" as its default Unix socket and ignores the port: the
        # same URL would reach another server than with PyMySQL. A URL means TCP with either
        # driver; ?unix_socket= asks for a socket.
        args["host"] = "127.0.0.1"
    for name in ("connect_timeout", "read_timeout", "write_timeout"):  # whole seconds in libmysqlclient
        if name in args:
            args[name] = max(1, int(round(args[name])))
    try:
        return MySQLdb.connect(**args, ssl_mode="DISABLED", cursorclass=_CCursor,
                               binary_prefix=True,  # bytes as _binary'..' (BLOB), as PyMySQL sends them
                               multi_statements=False)  # one statement per execute, as PyMySQL
    except MySQLdb.MySQLError as exc:
        raise _as_pymysql_error(exc) from exc


class Pool:
    """A bounded pool: at most ``size`` connections exist; checkout waits ``timeout`` seconds.

    ``size`` slot tokens in a ``queue.SimpleQueue`` bound how many connections are out (taking a
    token is one C call, ~0.2 us, where ``threading.BoundedSemaphore``, written in Python, cost
    ~1.9 us per checkout and return); the idle connections sit in a plain list, whose
    ``pop``/``append`` are atomic.
    """

    def __init__(self, factory, size: int, timeout: float):
        if size < 1:
            raise ValueError("pool_size must be at least 1")
        self._factory = factory
        self._timeout = timeout
        self.size = size
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(size):
            self._slots.put(None)
        self._idle: list = []  # most recently used last (warm connections are reused first)
        self._closed = False

    def acquire(self):
        try:
            self._slots.get(timeout=max(0.0, self._timeout))
        except queue.Empty:
            raise StoreUnavailable("all database connections are busy", retry_after=1) from None
        try:
            return self._idle.pop()
        except IndexError:
            pass
        try:
            return self._factory()
        except BaseException:
            self._slots.put(None)
            raise

    def release(self, connection, *, broken: bool = False) -> None:
        try:
            if broken or self._closed or connection is None:
                close_quietly(connection)
            else:
                self._idle.append(connection)
        finally:
            self._slots.put(None)

    def state(self) -> tuple[int, int, int]:
        """(size, connections checked out, idle connections open), for metrics (a moment's view)."""
        available = self._slots.qsize()  # free slots
        return self.size, self.size - available, len(self._idle)

    def new_connection(self):
        """A fresh connection replacing a broken one (the caller keeps its slot)."""
        return self._factory()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                close_quietly(self._idle.pop())
            except IndexError:
                return


class MySQLConnections:
    """Pooled connections to one server or Galera cluster, with failover and retries (module doc)."""

    #: The ``parse_url`` options this class takes (the others belong to its user, e.g. ``table``).
    OPTIONS = ("pool_size", "pool_timeout", "connect_timeout", "read_timeout", "write_timeout", "retry_after",
               "deadlock_retries", "lock_wait_timeout", "charset", "wsrep_sync_wait", "hosts", "ssl",
               "ssl_disabled", "driver")

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 3306,
        user: str = "",
        password: str = "",
        database: str = "kamailio",
        unix_socket: str | None = None,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        write_timeout: float = 30.0,
        retry_after: int = 5,
        deadlock_retries: int = 3,
        lock_wait_timeout: int = 10,
        charset: str = "utf8mb4",
        wsrep_sync_wait: int | None = None,
        hosts: list[tuple[str, int]] | None = None,
        ssl: dict | None = None,  # PyMySQL's TLS settings (URL option ssl=required / ssl_ca)
        ssl_disabled: bool | None = True,  # False/None: PyMySQL's default, TLS when offered (ssl=preferred)
        driver: str = "auto",
    ):
        self.retry_after = retry_after
        self.deadlock_retries = deadlock_retries
        self.connect_args: dict[str, Any] = {  # keyword arguments of pymysql.connect
            "user": user,
            "password": password,
            "database": database,
            "charset": charset,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "write_timeout": write_timeout,
            "autocommit": True,
            "client_flag": CLIENT.FOUND_ROWS,
            "init_command": f"SET SESSION innodb_lock_wait_timeout={int(lock_wait_timeout)}"
            + ("" if wsrep_sync_wait is None else f", wsrep_sync_wait={int(wsrep_sync_wait)}"),
        }
        if ssl:
            self.connect_args["ssl"] = ssl
        elif ssl_disabled:
            self.connect_args["ssl_disabled"] = True
        if unix_socket:
            self.connect_args["unix_socket"] = unix_socket
        else:
            self.connect_args["host"] = host
            self.connect_args["port"] = int(port)
        if driver not in DRIVERS:
            raise ValueError(f"driver must be one of {', '.join(DRIVERS)}, not {driver!r}")
        tls = "ssl" in self.connect_args or not ssl_disabled
        if driver == "mysqlclient" and (MySQLdb is None or tls):
            raise ValueError("driver=mysqlclient needs the mysqlclient package (pip install 'xcap-wsgi[fast]') "
                             "and ssl=disabled")
        #: The driver in use: the C driver when installed and TLS is off (module doc), else PyMySQL.
        self.driver = "mysqlclient" if driver != "pymysql" and MySQLdb is not None and not tls else "pymysql"
        #: Galera nodes (several hosts) tried in order from the last good one: ``current``.
        self.hosts = [(h, int(p)) for h, p in hosts] if hosts and not unix_socket else []
        self.current = 0
        self.url = safe_url({**self.connect_args, "unix_socket": unix_socket})
        if len(self.hosts) > 1:
            where = ",".join(f"{h}:{p}" for h, p in self.hosts)
            self.url = f"mysql://{user}@{where}/{database}"
        self.pool = Pool(self.connect, pool_size, pool_timeout)

    @classmethod
    def from_url(cls, url: str, **overrides) -> MySQLConnections:
        """Connections for ``mysql://user:pass@host[,host2...]/db?opt=..``; options of other layers
        in the URL (``table``) are ignored."""
        parsed = parse_url(url)
        arguments = dict(parsed.pop("connect"))
        arguments.update({k: v for k, v in parsed.items() if k in cls.OPTIONS})
        arguments.update(overrides)
        return cls(**arguments)

    # -- connections ------------------------------------------------------------------------

    def connect(self, *, lock_node: bool = False):
        """A new connection (not pooled), to the current node; ``StoreUnavailable`` when none answers."""
        if len(self.hosts) > 1:
            return self._connect_cluster(lock_node=lock_node)
        try:
            return self._open(self.connect_args)
        except (pymysql.err.MySQLError, OSError) as exc:
            raise StoreUnavailable(f"{self.url}: cannot connect: {exc}", retry_after=self.retry_after) from exc

    def _open(self, args: dict):
        """One connection with the driver in use; errors are PyMySQL's classes either way."""
        if self.driver == "mysqlclient":
            return _connect_mysqlclient(args)
        connection = pymysql.connect(**args)
        if "ssl" in args:  # ssl=required: PyMySQL before 1.2 went on in plain text without TLS
            _check_encrypted(connection)
        return connection

    def _connect_cluster(self, *, lock_node: bool = False):
        """A connection to the first usable node, trying them in order from the last good one.

        ``lock_node``: in one order shared by every process instead (hosts sorted), so that all
        take ``GET_LOCK`` on the same node; the current node is left as it is.
        """
        n = len(self.hosts)
        if lock_node:
            order = sorted(range(n), key=lambda i: self.hosts[i])
        else:
            order = [(self.current + step) % n for step in range(n)]
        start, failures, last = order[0], [], None
        for index in order:
            host, port = self.hosts[index]
            try:
                connection = self._open({**self.connect_args, "host": host, "port": port})
            except (pymysql.err.MySQLError, OSError) as exc:
                failures.append(f"{host}:{port}: {exc}")
                last = exc
                continue
            try:
                with connection.cursor() as cursor:  # a Galera node that is joining or non-primary?
                    cursor.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")  # none/OFF: not Galera
                    row = cursor.fetchone()
                    if row is not None and str(row[1]).upper() == "ON":
                        cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_ready'")
                        row = cursor.fetchone()
                    else:
                        row = None
            except (pymysql.err.MySQLError, OSError) as exc:
                close_quietly(connection)
                failures.append(f"{host}:{port}: {exc}")
                last = exc
                continue
            if row is not None and str(row[1]).upper() != "ON":
                close_quietly(connection)
                failures.append(f"{host}:{port}: wsrep_ready={row[1]}")
                continue
            if index != start:
                log.warning("%s: skipped %s; now using %s:%s%s", self.url, "; ".join(failures), host, port,
                            " for locks" if lock_node else "")
            if not lock_node:
                self.current = index
                # the node the connection went to, read back by getattr below (pymysql has no such field)
                connection._xcap_host = index
            return connection
        raise StoreUnavailable(f"{self.url}: cannot connect to any node: {'; '.join(failures)}",
                               retry_after=self.retry_after) from last

    def node_failed(self, connection) -> None:
        """Move new connections off the node of a connection that died or was refused."""
        index = getattr(connection, "_xcap_host", None)
        if index is not None and self.current == index:
            self.current = (index + 1) % len(self.hosts)
            log.warning("%s: node %s:%s failed; now using %s:%s", self.url, *self.hosts[index],
                        *self.hosts[self.current])

    # -- statements -------------------------------------------------------------------------

    def run(self, work, *, prepare=None, translate=None):
        """Run ``work(cursor)`` on a pooled connection with reconnect and deadlock retries.

        ``prepare(connection)``, when given, runs first on the same connection (e.g. a schema check
        deferred because the database was down at start-up). ``translate(exc)`` turns a server
        error that is not about the connection into the exception to raise (default: StoreError).
        """
        connection = self.pool.acquire()
        broken = False
        try:
            reconnected = False
            lock_retries = 0
            while True:
                try:
                    if prepare is not None:
                        prepare(connection)
                    with connection.cursor() as cursor:
                        return work(cursor)
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
                    code = error_code(exc)
                    if code in LOCK_ERRORS:
                        if lock_retries < self.deadlock_retries:
                            lock_retries += 1
                            time.sleep(0.01 * (2**lock_retries))
                            continue
                        raise StoreUnavailable(f"{self.url}: {exc}", retry_after=1) from exc
                    if code is None or node_failed_error(exc):
                        self.node_failed(connection)
                        close_quietly(connection)
                        connection = None
                        if reconnected:
                            broken = True
                            raise StoreUnavailable(
                                f"{self.url}: connection lost: {exc}", retry_after=self.retry_after
                            ) from exc
                        reconnected = True
                        try:
                            connection = self.pool.new_connection()
                        except StoreUnavailable:
                            broken = True
                            raise
                        continue
                    raise self._translate(exc, translate) from exc
                except pymysql.err.MySQLError as exc:
                    raise self._translate(exc, translate) from exc
        except StoreError:
            raise  # the connection is fine (or already dropped above)
        except BaseException:
            broken = True  # interrupted mid-protocol: never reuse that connection
            raise
        finally:
            self.pool.release(connection, broken=broken or connection is None)

    def _translate(self, exc: Exception, translate) -> Exception:
        return translate(exc) if translate is not None else StoreError(f"{self.url}: {exc}")

    def ping(self) -> None:
        """One ``SELECT 1`` through the pool; raises ``StoreUnavailable`` when no server answers."""

        def work(cursor):
            cursor.execute("SELECT 1")
            cursor.fetchall()

        self.run(work)

    def close(self) -> None:
        self.pool.close()
