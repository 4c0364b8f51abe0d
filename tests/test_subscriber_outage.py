"""The subscriber table on MariaDB (issue 16 part 5): 503 + Retry-After while it is down, never a
500 or a traceback; the same connection layer as the document store (multi-host failover).

Real MariaDB only: the shared test server (``XCAP_TEST_MYSQL_URL``) and a private ``mariadbd``
(``.ci/mariadb.sh``) that the tests stop, SIGKILL and start again under ``xcap-wsgi serve``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mysql_support import (
    REPO,
    free_port,
    http_request,
    server_url,
    stop_process,
    temporary_database,
    unavailable,
    wait_for_http,
)
from webob import Request

from xcap_wsgi.cli import main as cli
from xcap_wsgi.digest import DigestAuthMiddleware
from xcap_wsgi.storage.mysql import initdb

pytestmark = pytest.mark.mysql

REALM = "example.com"
DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
        b'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="x"/></resource-lists>')


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def parse_challenge(value: str) -> dict:
    params = dict(part.strip().split("=", 1) for part in value[len("Digest "):].split(", "))
    return {k: v.strip('"') for k, v in params.items()}


def authorization(challenge: dict, method: str, path: str, username="alice", password="wonder land") -> str:
    """RFC 7616 MD5, qop=auth, computed here from the formulas."""
    ha1 = md5(f"{username}:{challenge['realm']}:{password}")
    response = md5(f"{ha1}:{challenge['nonce']}:00000001:c0ffee:auth:{md5(f'{method}:{path}')}")
    return (f'Digest username="{username}", realm="{challenge["realm"]}", nonce="{challenge["nonce"]}", '
            f'uri="{path}", algorithm=MD5, response="{response}", qop=auth, nc=00000001, cnonce="c0ffee", '
            f'opaque="{challenge["opaque"]}"')


def ok_app(environ, start_response):
    body = environ["REMOTE_USER"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def wsgi_digest(app, path="/xcap-root/x"):
    """One Digest-authenticated GET through an in-process WSGI app."""
    challenge = Request.blank(path).get_response(app)
    assert challenge.status_int == 401
    params = parse_challenge(challenge.headers.getall("WWW-Authenticate")[0])
    request = Request.blank(path, headers={"Authorization": authorization(params, "GET", path)})
    request.environ["REQUEST_URI"] = path
    return request.get_response(app)


# -- in process -------------------------------------------------------------------------------


def test_unreachable_subscriber_database_is_503_with_retry_after(caplog):
    server_url()  # MySQL tests are enabled
    url = f"mysql://xcap:xcap@127.0.0.1:{free_port()}/kamailio?connect_timeout=1&retry_after=7"
    app = DigestAuthMiddleware(ok_app, subscribers=url, realm=REALM, algorithms=("MD5",))
    with caplog.at_level(logging.INFO):
        response = wsgi_digest(app)
    assert response.status_int == 503
    assert response.headers["Retry-After"] == "7"
    assert "Traceback" not in response.text and "127.0.0.1" not in response.text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_multi_host_url_whose_first_host_is_dead_still_authenticates():
    with temporary_database(tables="initdb") as url:
        assert cli(["adduser", "alice@example.com", "--password", "wonder land", "--db", url]) == 0
        dead = f"127.0.0.1:{free_port()}"
        head, _, rest = url.partition("@")
        live, _, tail = rest.partition("/")
        multi = f"{head}@{dead},{live}/{tail}?connect_timeout=1"
        app = DigestAuthMiddleware(ok_app, subscribers=multi, realm=REALM, algorithms=("MD5",))
        response = wsgi_digest(app)
        assert (response.status_int, response.text) == (200, "alice@example.com")
        assert app.subscribers.url.count("127.0.0.1") == 2  # both hosts known to the connection layer
        app.subscribers.close()


def test_subscriber_table_uses_the_document_stores_connection_layer():
    from xcap_wsgi.storage.mysql_connection import MySQLConnections
    from xcap_wsgi.subscribers import open_subscribers

    subscribers = open_subscribers("mysql://u:p@db1,db2:3307/kamailio?wsrep_sync_wait=1&pool_size=3&table=xcap")
    assert isinstance(subscribers.connections, MySQLConnections)
    assert subscribers.connections.hosts == [("db1", 3306), ("db2", 3307)]
    assert "wsrep_sync_wait=1" in subscribers.connections.connect_args["init_command"]
    subscribers.close()


# -- xcap-wsgi serve on a private MariaDB that is stopped, SIGKILLed and restarted -------------------


@pytest.fixture
def private_mariadb(tmp_path):
    """(start, stop, kill) of a private mariadbd in tmp_path; start returns its URL."""
    server_url()
    if not shutil.which("mariadbd") and not os.path.exists("/usr/sbin/mariadbd"):
        unavailable("mariadbd is not installed")
    script, port, datadir = REPO / ".ci" / "mariadb.sh", free_port(), tmp_path / "db"

    def start() -> str:
        out = subprocess.run(["bash", str(script), "start", str(datadir), str(port)], check=True,
                             capture_output=True, text=True, timeout=120)
        return out.stdout.strip().splitlines()[-1]

    def stop(check: bool = True) -> None:
        subprocess.run(["bash", str(script), "stop", str(datadir)], check=check, timeout=60)

    def kill() -> None:
        """SIGKILL the mariadbd this fixture started (its pid file), and wait until it is gone."""
        pid = int((datadir / "mysqld.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError("mariadbd survived SIGKILL")

    yield start, stop, kill
    stop(check=False)


def serve_request(port: int, method: str, path: str, body: bytes | None = None):
    """One Digest-authenticated request to ``serve``: challenge, then the answer computed here."""
    status, headers, _ = http_request(method, port, path)
    assert status == 401, status
    headers = {"Authorization": authorization(parse_challenge(headers["www-authenticate"]), method, path)}
    if body is not None:
        headers["Content-Type"] = "application/resource-lists+xml"
    return http_request(method, port, path, body, headers)


@contextlib.contextmanager
def serve_on(url: str):
    """``serve`` with Digest against ``url`` (also its document store): yields (port, process),
    then stops it; the log it printed is checked for tracebacks and returned in ``log[0]``."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="xcapw-outage-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--db", url, "--host", "127.0.0.1", "--port", str(port),
         "--default-domain", REALM, "--digest-algorithms", "MD5"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(REPO))
    printed: list[str] = []
    try:
        wait_for_http(port, proc, path="/xcap-root/xcap-caps/global/index")
        yield port, printed
    finally:
        stop_process(proc)
        log.close()
        printed.append(Path(log.name).read_text(errors="replace"))
        os.unlink(log.name)
    assert "Traceback" not in printed[0], printed[0][-4000:]


@pytest.mark.parametrize("outage", ["stop", "sigkill"])
def test_serve_answers_503_while_the_subscriber_database_is_down(private_mariadb, outage):
    start, stop, kill = private_mariadb
    url = start()
    initdb(url)
    assert cli(["adduser", "alice@example.com", "--password", "wonder land", "--db", url]) == 0
    with serve_on(url + "?connect_timeout=1&retry_after=4") as (port, printed):
        assert serve_request(port, "PUT", DOC, BODY)[0] == 201
        (stop if outage == "stop" else kill)()
        for method, body in (("GET", None), ("PUT", BODY), ("DELETE", None), ("GET", None)):
            status, headers, data = serve_request(port, method, DOC, body)
            assert status == 503, (method, status, data)
            assert headers.get("retry-after") == "4"
            assert b"Traceback" not in data and b"pymysql" not in data
        start()
        status, _, data = serve_request(port, "GET", DOC)
        assert (status, data) == (200, BODY)
    assert " 503 " in printed[0] or "unavailable" in printed[0]  # the outage was logged, one line per request


def test_serve_started_while_the_database_is_down_answers_503_then_serves(private_mariadb):
    """Like the document store, the subscriber table may be down when serve starts (or when a
    worker is replaced during an outage): 503 + Retry-After until it is back, then 200."""
    start, stop, _kill = private_mariadb
    url = start()
    initdb(url)
    assert cli(["adduser", "alice@example.com", "--password", "wonder land", "--db", url]) == 0
    stop()
    with serve_on(url + "?connect_timeout=1&retry_after=4") as (port, printed):
        status, headers, data = serve_request(port, "PUT", DOC, BODY)
        assert (status, headers.get("retry-after")) == (503, "4"), data
        start()
        assert serve_request(port, "PUT", DOC, BODY)[0] == 201
        status, _, data = serve_request(port, "GET", DOC)
        assert (status, data) == (200, BODY)
    assert "subscriber table unavailable at start-up" in printed[0], printed[0][-4000:]


def test_serve_with_a_wrong_subscriber_password_does_not_start(tmp_path):
    """Waiting does not fix a wrong URL: serve exits at once, saying why."""
    scheme, rest = server_url().split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    bad = f"{scheme}://{credentials.split(':', 1)[0]}:not-the-password@{host}"
    result = subprocess.run(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}", "--auth-db", bad,
         "--port", str(free_port()), "--workers", "2"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert result.returncode == 1, result.stderr
    assert "cannot set up Digest authentication" in result.stderr and "1045" in result.stderr, result.stderr


@pytest.mark.parametrize("username", ["b\U0001F600b", "ünïcødé", "x" * 300, "x' OR '1'='1"])
def test_names_the_latin1_table_cannot_hold_are_unknown_accounts_not_errors(username):
    with temporary_database(charset="latin1", tables="initdb") as url:
        assert cli(["adduser", "alice@example.com", "--password", "wonder land", "--db", url]) == 0
        app = DigestAuthMiddleware(ok_app, subscribers=url, realm=REALM, algorithms=("MD5",))
        path = "/xcap-root/x"
        challenge = parse_challenge(Request.blank(path).get_response(app).headers.getall("WWW-Authenticate")[0])
        header = authorization(challenge, "GET", path, username=username, password="x")
        request = Request.blank(path, headers={"Authorization": header})
        request.environ["REQUEST_URI"] = path
        assert request.get_response(app).status_int == 401
        assert wsgi_digest(app).status_int == 200  # the connection was not spoiled
        app.subscribers.close()
