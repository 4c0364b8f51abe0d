"""``xcap-wsgi serve --server uwsgi|granian`` (xcap_wsgi.backends): the same application, Digest
and health endpoints included, on a faster HTTP server; stopped cleanly by SIGTERM.

Both servers are test extras (pyuwsgi, granian), so these run in CI.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile

import pytest
from mysql_support import unavailable
from serve_support import DOC, RL_DOC, RL_MIME, DigestClient, running_serve
from test_workers import free_port, wait_until

from xcap_wsgi import backends


@pytest.mark.parametrize("server", ["uwsgi", "granian"])
def test_serve_on_another_server_answers_xcap_with_digest(tmp_path, server, monkeypatch):
    if not backends.available(server):
        unavailable(f"{server} is not installed (test extras)")
    scratch = tempfile.mkdtemp(prefix="xb-")  # short: a Unix socket path has at most 107 bytes
    monkeypatch.setenv("TMPDIR", scratch)  # where serve makes its private socket folder
    with running_serve(tmp_path, "--server", server, "--workers", "2", "--threads", "2") as served:
        client = DigestClient(served.port)
        try:
            anonymous = DigestClient(served.port)
            anonymous.challenge = None
            first = anonymous._exchange(b"GET " + DOC.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
            assert first.status == 401 and "www-authenticate" in first.headers
            anonymous.close()
            created = client.request("PUT", DOC, RL_DOC, {"Content-Type": RL_MIME})
            assert created.status == 201, created.body
            got = client.request("GET", DOC)
            assert got.status == 200 and got.body == RL_DOC
            assert got.headers["etag"] == created.headers["etag"]
            # Both worker processes share one nonce secret: a nonce from one is good in the other.
            for _ in range(6):
                assert client.request("GET", DOC).status == 200
            element = client.request("GET", DOC + "/~~/resource-lists/list%5B@name=%22friends%22%5D")
            assert element.status == 200 and element.headers["content-type"] == "application/xcap-el+xml"
            too_long = client.request("GET", "/xcap-root/" + "x" * 5000)
            assert too_long.status == 414
        finally:
            client.close()
        ready = DigestClient(served.port)._exchange(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
        assert ready.status == 200
        assert f"server={server} workers=2 threads=2" in served.log
    assert served.process.returncode is not None
    assert os.listdir(scratch) == []  # the private socket folder is removed on exit
    os.rmdir(scratch)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("server", ["uwsgi", "granian"])
def test_the_server_stops_when_serve_is_killed(tmp_path, server):
    """serve killed with SIGKILL runs no handler: its uWSGI or granian kept the port and served on."""
    if not backends.available(server):
        unavailable(f"{server} is not installed (test extras)")
    scratch = tempfile.mkdtemp(prefix="xb-")  # short: a Unix socket path has at most 107 bytes
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--server", server, "--port", str(port),
         "--workers", "2", "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, env={**os.environ, "TMPDIR": scratch},
        start_new_session=True)
    try:
        assert wait_until(lambda: _listening(port), timeout=60)
        process.kill()
        process.wait(30)
        assert wait_until(lambda: not _listening(port), timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_unknown_or_missing_server_is_refused(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "xcap_wsgi", "serve", "--server", "nginx", "--anonymous",
                          "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "server must be" in bad.stderr


def test_auto_picks_the_fastest_installed():
    # serve's own core where epoll exists (docs/benchmarks.md: less CPU per request than the others)
    expected = "waitress" if hasattr(select, "epoll") else next(
        s for s in ("granian", "uwsgi", "waitress") if backends.available(s))
    assert backends.choose("auto") == expected
    assert backends.choose("waitress") == "waitress"
