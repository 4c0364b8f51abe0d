"""Fixtures and helpers for the MySQL and Kamailio tests (real MariaDB, real Kamailio; no mocks).

* ``XCAP_TEST_MYSQL_URL`` = ``mysql://user:pass@127.0.0.1:PORT/db`` of a server where that user may
  create and drop databases (``.ci/mariadb.sh`` starts one). Unset: the MySQL tests skip, except
  with ``CI=true``, where they fail.
* Kamailio: ``/usr/sbin/kamailio`` (or ``XCAP_TEST_KAMAILIO``). Absent: the Kamailio tests skip,
  except with ``CI=true``, where they fail.

Test modules import the fixtures they use: ``from mysql_support import mysql_store, ...``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest

from xcap_wsgi.storage.mysql import MySQLStore, initdb, parse_url

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KAMAILIO_CONFIG = HERE / "kamailio" / "xcap-presence.cfg"
KAMAILIO_SQL_DIR = Path("/usr/share/kamailio/mysql")
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """Skip a test whose real dependency is missing, but fail it in CI, where everything must run."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


# -- MariaDB ---------------------------------------------------------------------------------


def server_url() -> str:
    url = os.environ.get("XCAP_TEST_MYSQL_URL", "")
    if not url:
        unavailable("XCAP_TEST_MYSQL_URL is not set (run .ci/mariadb.sh start DIR to get a server)")
    return url


def url_for_database(url: str, database: str, **options) -> str:
    parts = urlsplit(url)
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, query, ""))


def connect(url: str, database: str | None = None, **extra):
    """A plain pymysql connection (autocommit) for test set-up and for looking at rows directly."""
    args = dict(parse_url(url)["connect"])
    if database is not None:
        args["database"] = database
    return pymysql.connect(**args, charset="utf8mb4", autocommit=True, **extra)


def sql_statements(text: str) -> list[str]:
    """The statements of one of Kamailio's *-create.sql files (no procedures, plain ``;`` ends)."""
    return [s.strip() for s in text.split(";\n") if s.strip() and not s.strip().startswith("--")]


def create_database(url: str, name: str, *, charset: str = "latin1", collation: str | None = None):
    with contextlib.closing(connect(url, database="")) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        collate = f" COLLATE {collation}" if collation else ""
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET {charset}{collate}")


def drop_database(url: str, name: str) -> None:
    with contextlib.closing(connect(url, database="")) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def load_kamailio_tables(url: str, name: str) -> str:
    """Create Kamailio's tables the way ``kamdbctl create`` does: the package's SQL files.

    standard-create.sql (version) + presence-create.sql (presentity, watchers, xcap, pua, ...) +
    rls-create.sql, from the installed kamailio-mysql-modules package.
    """
    files = [KAMAILIO_SQL_DIR / "standard-create.sql", KAMAILIO_SQL_DIR / "presence-create.sql",
             KAMAILIO_SQL_DIR / "rls-create.sql"]
    if not all(f.exists() for f in files):
        unavailable(f"Kamailio's MySQL schema files are not installed ({KAMAILIO_SQL_DIR})")
    with contextlib.closing(connect(url, database=name)) as conn, conn.cursor() as cur:
        for f in files:
            for statement in sql_statements(f.read_text()):
                cur.execute(statement)
    return "kamailio-sql"


@contextlib.contextmanager
def temporary_database(*, charset: str = "latin1", collation: str | None = None, tables: str | None = "kamailio"):
    """A fresh database for one test: ``tables`` = 'kamailio' (package SQL), 'initdb', or None (empty)."""
    url = server_url()
    name = f"xcapw_t{os.getpid()}_{uuid.uuid4().hex[:8]}"
    create_database(url, name, charset=charset, collation=collation)
    db_url = url_for_database(url, name)
    try:
        if tables == "kamailio":
            load_kamailio_tables(url, name)
        elif tables == "initdb":
            initdb(db_url)
        yield db_url
    finally:
        drop_database(url, name)


@pytest.fixture(scope="session")
def kamailio_database():
    """One latin1 database for the session, laid out by Kamailio's own SQL files (as kamdbctl would)."""
    with temporary_database(charset="latin1", tables="kamailio") as url:
        yield url


def truncate(url: str, *tables: str) -> None:
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        for table in tables:
            cur.execute(f"TRUNCATE TABLE `{table}`")


@pytest.fixture
def db_url(kamailio_database):
    """The session's Kamailio database with an empty xcap table (and empty presence tables)."""
    truncate(kamailio_database, "xcap", "active_watchers", "watchers", "presentity")
    return kamailio_database


@pytest.fixture
def mysql_store(db_url):
    store = MySQLStore.from_url(db_url + "?pool_size=4&connect_timeout=3")
    try:
        yield store
    finally:
        store.close()


def rows(url: str, where: str = "1=1", params: tuple = ()) -> list[dict]:
    """The xcap rows as dicts (doc as bytes), straight from the database."""
    with contextlib.closing(connect(url, cursorclass=pymysql.cursors.DictCursor)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM xcap WHERE {where} ORDER BY id", params)
        return list(cur.fetchall())


# -- ports and processes ---------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(port: int, proc: subprocess.Popen, timeout: float = 20.0, path: str = "/") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} during start-up")
        try:
            status, _, _ = http_request("GET", port, path, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered HTTP on 127.0.0.1:{port} within {timeout}s")


def http_request(method: str, port: int, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 10.0):
    """One HTTP request to 127.0.0.1:port; returns (status, headers as lower-case dict, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process started with start_new_session=True, and its children (its own group)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Kamailio's children may outlive the main process for a moment; the group is ours alone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# -- Kamailio --------------------------------------------------------------------------------


def kamailio_binary() -> str:
    binary = os.environ.get("XCAP_TEST_KAMAILIO") or shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not os.path.exists(binary):
        unavailable("Kamailio is not installed (/usr/sbin/kamailio)")
    needed = ["xcap_server.so", "xhttp.so", "db_mysql.so", "presence.so", "presence_xml.so"]
    missing = [m for m in needed if not (KAMAILIO_MODULES / m).exists()]
    if missing:
        unavailable(f"Kamailio modules missing: {missing} (kamailio-mysql-modules, kamailio-presence-modules)")
    return binary


def kamailio_db_url(url: str) -> str:
    """Kamailio's db_url for our database: db_mysql wants host:port, no query."""
    parts = urlsplit(url)
    return urlunsplit(("mysql", parts.netloc, parts.path, "", ""))


class Kamailio:
    def __init__(self, proc, http_port, sip_port, rundir, log_path):
        self.proc, self.http_port, self.sip_port = proc, http_port, sip_port
        self.rundir, self.log_path = rundir, log_path

    @property
    def rpc_url(self) -> str:
        """Kamailio's JSON-RPC endpoint (jsonrpcs over xhttp), e.g. for xcap_wsgi.notify."""
        return f"http://127.0.0.1:{self.http_port}/RPC"

    def http(self, method, path, body=None, headers=None):
        return http_request(method, self.http_port, path, body, headers)

    def rpc(self, method: str, *params):
        """Call a Kamailio RPC over JSON-RPC; returns the decoded JSON answer."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).encode()
        status, _, data = self.http("POST", "/RPC", body, {"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"JSON-RPC {method}: HTTP {status}: {data[:300]!r}")
        return json.loads(data)

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")


@contextlib.contextmanager
def run_kamailio(database_url: str, *defines: str, config_file: Path | None = None, kind: type | None = None):
    """A Kamailio on 127.0.0.1 (free HTTP and SIP ports, private run dir) from ``config_file``
    (default: the xcap_server test config), stopped on exit; yields a ``kind`` (Kamailio) handle."""
    binary = kamailio_binary()
    rundir = tempfile.mkdtemp(prefix="xcapw-kamailio-")
    http_port, sip_port = free_port(), free_port(socket.SOCK_DGRAM)
    config = (
        (config_file or KAMAILIO_CONFIG).read_text()
        .replace("@HTTP_PORT@", str(http_port))
        .replace("@SIP_PORT@", str(sip_port))
        .replace("@DB_URL@", kamailio_db_url(database_url))
        .replace("@MPATH@", str(KAMAILIO_MODULES) + "/")
        .replace("@RUNDIR@", rundir)
    )
    cfg = Path(rundir) / "kamailio.cfg"
    cfg.write_text(config)
    log_path = Path(rundir) / "kamailio.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, "-f", str(cfg), "-DD", "-E", "-Y", rundir, "-w", rundir, "-m", "64", "-M", "8",
             *(arg for name in defines for arg in ("-A", name))],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=rundir,
        )
    kam = (kind or Kamailio)(proc, http_port, sip_port, rundir, log_path)
    try:
        try:
            wait_for_http(http_port, proc, path="/")
        except RuntimeError as exc:
            raise RuntimeError(f"Kamailio did not start: {exc}\n{kam.log()[-4000:]}") from None
        yield kam
    finally:
        stop_process(proc)
        shutil.rmtree(rundir, ignore_errors=True)


@pytest.fixture(scope="session")
def kamailio(kamailio_database):
    """A real Kamailio 5.6 (xhttp + xcap_server + presence + presence_xml) on the session database."""
    with run_kamailio(kamailio_database) as kam:
        yield kam


@pytest.fixture(scope="module")
def rls_kamailio():
    """Kamailio with rls + pua too (config define WITH_RLS), on its own fresh database.

    Yields (kamailio, database URL).
    """
    with temporary_database(charset="latin1", tables="kamailio") as url:
        with run_kamailio(url, "WITH_RLS") as kam:
            yield kam, url


# -- xcap-wsgi server processes -------------------------------------------------------------


def cli_available() -> bool:
    try:
        import xcap_wsgi.cli  # noqa: F401
        import xcap_wsgi.middleware  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def run_xcap_wsgi(database_url: str, *extra: str):
    """``python -m xcap_wsgi serve --db URL --port N --anonymous`` as a subprocess on 127.0.0.1."""
    if not cli_available():
        pytest.skip("the xcap_wsgi CLI/middleware is not in this tree yet")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="xcapw-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--db", database_url, "--host", "127.0.0.1",
         "--port", str(port), "--anonymous", *extra],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(REPO),
    )
    try:
        try:
            wait_for_http(port, proc, path="/xcap-root/xcap-caps/global/index")
        except RuntimeError as exc:
            raise RuntimeError(f"xcap-wsgi did not start: {exc}\n{Path(log.name).read_text()[-4000:]}") from None
        proc.log_path = log.name
        proc.port = port
        yield proc
    finally:
        stop_process(proc)
        log.close()
        os.unlink(log.name)


# -- SIP over UDP (enough for one SUBSCRIBE and its NOTIFY) ----------------------------------


class SipWatcher:
    """One presence subscription over UDP: SUBSCRIBE, then read the NOTIFYs Kamailio sends."""

    def __init__(self, kamailio_sip_port: int, presentity: str, watcher: str, *, eventlist: bool = False):
        self.kamailio = ("127.0.0.1", kamailio_sip_port)
        self.presentity, self.watcher = presentity, watcher
        self.eventlist = eventlist  # an RLS subscription (RFC 4662)
        self.notifies: list[str] = []  # every NOTIFY received, as text
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]

    def subscribe(self, timeout: float = 10.0):
        """Send the SUBSCRIBE; return (reply status, Subscription-State of the first NOTIFY)."""
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        message = (
            f"SUBSCRIBE {self.presentity} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <{self.watcher}>;tag={self.tag}\r\n"
            f"To: <{self.presentity}>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:watcher@127.0.0.1:{self.port}>\r\n"
            f"Event: presence\r\n"
            + ("Supported: eventlist\r\nAccept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n"
               if self.eventlist else "Accept: application/pidf+xml\r\n")
            + "Expires: 60\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        self.sock.sendto(message.encode(), self.kamailio)
        status = state = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (status is None or state is None):
            kind, value = self._receive()
            if kind == "reply":
                status = value
            elif kind == "notify":
                state = value
        return status, state

    def next_state(self, timeout: float = 10.0):
        """The Subscription-State of the next NOTIFY, or None when none comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kind, value = self._receive()
            if kind == "notify":
                return value
        return None

    def _receive(self):
        try:
            data, addr = self.sock.recvfrom(65535)
        except TimeoutError:
            return None, None
        text = data.decode("utf-8", "replace")
        if self.call_id not in text:
            return None, None
        first = text.split("\r\n", 1)[0]
        if first.startswith("SIP/2.0 "):
            return "reply", int(first.split()[1])
        if first.startswith("NOTIFY "):
            self.notifies.append(text)
            self.sock.sendto(sip_ok_for(text).encode(), addr)
            match = re.search(r"^Subscription-State:\s*([^\r\n;]+)", text, re.I | re.M)
            return "notify", (match.group(1).strip().lower() if match else "")
        return None, None

    def close(self):
        self.sock.close()


def sip_subscribe(kamailio_sip_port: int, presentity: str, watcher: str, timeout: float = 10.0):
    """Send a presence SUBSCRIBE and return (reply status, Subscription-State of the first NOTIFY)."""
    watcher_ = SipWatcher(kamailio_sip_port, presentity, watcher)
    try:
        return watcher_.subscribe(timeout)
    finally:
        watcher_.close()


def sip_ok_for(request: str) -> str:
    """A 200 OK for a received SIP request (copies Via/From/To/Call-ID/CSeq)."""
    headers = []
    for line in request.split("\r\n")[1:]:
        if not line:
            break
        name = line.split(":", 1)[0].strip().lower()
        if name in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"):
            headers.append(line)
    return "SIP/2.0 200 OK\r\n" + "\r\n".join(headers) + "\r\nContent-Length: 0\r\n\r\n"
