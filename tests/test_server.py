"""End to end: the ``xcap-wsgi serve`` command under a real waitress server on a free port."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import RL_DOC, RL_MIME

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Subprocesses import the code under test, not whatever copy pip last installed.
SUBPROCESS_ENV = {**os.environ, "PYTHONUNBUFFERED": "1",
                  "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}

DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`python -m xcap_wsgi serve --anonymous` on a free port with a fresh SQLite file."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--port", str(port),
         "--db", f"sqlite:///{tmp_path / 'xcap.sqlite3'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=SUBPROCESS_ENV,
    )
    banner = process.stdout.readline()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining the access log
    yield port, banner
    process.terminate()
    process.wait(timeout=10)


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def test_startup_line_names_url_database_and_root(server):
    port, banner = server
    assert f"http://127.0.0.1:{port}/xcap-root/" in banner
    assert "database=sqlite:///" in banner and "roots=/xcap-root" in banner


def test_put_get_delete_cycle_over_http(server):
    port, _ = server
    response, _ = request(port, "PUT", DOC, RL_DOC, {"Content-Type": RL_MIME})
    assert response.status == 201
    etag = response.getheader("ETag")
    response, body = request(port, "GET", DOC)
    assert (response.status, body, response.getheader("ETag")) == (200, RL_DOC, etag)
    assert response.getheader("Content-Type") == RL_MIME
    response, _ = request(port, "PUT", DOC, RL_DOC + b"<x/>", {"Content-Type": RL_MIME})
    assert response.status == 409
    assert response.getheader("Content-Type") == "application/xcap-error+xml"
    assert response.getheader("Content-Length") is not None and response.getheader("Transfer-Encoding") is None
    response, _ = request(port, "DELETE", DOC, headers={"If-Match": etag})
    assert response.status == 200
    response, _ = request(port, "GET", DOC)
    assert response.status == 404


def test_encoded_slash_in_xui_survives_waitress(server):
    port, _ = server
    path = "/xcap-root/resource-lists/users/sip:jo%2Fe@example.com/index"
    response, _ = request(port, "PUT", path, RL_DOC, {"Content-Type": RL_MIME})
    assert response.status == 201
    response, body = request(port, "GET", path)
    assert body == RL_DOC
    response, _ = request(port, "GET", "/xcap-root/resource-lists/users/sip:jo/e@example.com/index")
    assert response.status == 404  # a real '/' splits the path: a different (invalid) document


def test_outside_the_root_is_404(server):
    port, _ = server
    assert request(port, "GET", "/")[0].status == 404


def test_read_modify_write_over_http_loses_no_update(server):
    """8 clients add entries with If-Match and retry on 412: every success is in the document."""
    port, _ = server
    empty = b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l"></list></resource-lists>'
    assert request(port, "PUT", DOC, empty, {"Content-Type": RL_MIME})[0].status == 201
    statuses, added, lock = [], [], threading.Lock()

    def client(number):
        for i in range(10):
            while True:
                response, body = request(port, "GET", DOC)
                etag = response.getheader("ETag")
                entry = f'<entry uri="sip:c{number}-{i}@example.com"/>'.encode()
                new = body.replace(b"</list>", entry + b"</list>")
                response, _ = request(port, "PUT", DOC, new, {"Content-Type": RL_MIME, "If-Match": etag})
                with lock:
                    statuses.append(response.status)
                if response.status == 200:
                    with lock:
                        added.append(entry)
                    break
                assert response.status == 412

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, final = request(port, "GET", DOC)
    assert len(added) == 80
    assert final.count(b"<entry ") == 80 and all(entry in final for entry in added)
    assert set(statuses) <= {200, 412}


def test_startup_line_never_shows_a_database_password(tmp_path):
    """A MySQL URL's password stays out of the banner (the database need not be reachable).

    The server keeps running (it retries the database per request), so the test stops it as soon
    as the banner has appeared instead of waiting for a timeout; the bound only applies when the
    banner never comes."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--port", str(port),
         "--db", "mysql://kamailio:s3cret-pw@127.0.0.1:1/kamailio?connect_timeout=1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=SUBPROCESS_ENV)
    lines: list[str] = []
    banner_seen = threading.Event()

    def read_output():
        for line in process.stdout:
            lines.append(line)
            if "kamailio@127.0.0.1:1/kamailio" in line:
                banner_seen.set()
        banner_seen.set()  # end of output: the process exited

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        banner_seen.wait(timeout=30)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=10)
    output = "".join(lines)
    assert "kamailio@127.0.0.1:1/kamailio" in output
    assert "s3cret-pw" not in output
