"""``xcap-wsgi serve`` facing hostile or sloppy clients (issue 16, points 2, 3, 6; issue 15's
``\\r\\r\\r\\n\\r\\n1``), over real sockets against a live server with Digest and the access log on.

No timed assertions: every wait is bounded by a socket timeout, and "promptly" means "before
that timeout", which the waitress defaults (100 connections, no header timeout, bodies read
before authentication) miss for ever.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest
from serve_support import (
    DOC,
    RL_DOC,
    RL_MIME,
    DigestClient,
    raise_own_open_files_limit,
    read_response,
    request_bytes,
    running_serve,
)

MANY = 1000


def open_connections(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        sockets.append(s)
    return sockets


def legitimate_exchange(port: int) -> None:
    """A phone's session: authenticate, PUT, GET, over fresh connections; each answer within 10 s."""
    client = DigestClient(port, timeout=10)
    try:
        response = client.request("PUT", DOC, RL_DOC, {"Content-Type": RL_MIME})
        assert response.status in (200, 201), response.status
        response = client.request("GET", DOC)
        assert (response.status, response.body) == (200, RL_DOC)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _fds():
    raise_own_open_files_limit()


# -- 16.2: idle and slowloris connections ------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_a_client_is_served_while_1000_idle_connections_are_open(tmp_path, workers):
    with running_serve(tmp_path, "--workers", str(workers)) as server:
        idle = open_connections(server.port, MANY)
        try:
            for _ in range(3):
                legitimate_exchange(server.port)
            # The idle connections were kept (not dropped to make room): some of them still get answers.
            for s in idle[::100]:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(s).status == 200
        finally:
            for s in idle:
                s.close()
        assert "Traceback" not in server.log


def test_3000_idle_connections_in_one_process_beyond_descriptor_1024(tmp_path):
    """Past select()'s 1024 descriptors and far past waitress' 100 connections, in one process."""
    with running_serve(tmp_path) as server:
        idle = open_connections(server.port, 3000)
        try:
            legitimate_exchange(server.port)
            for s in idle[::300]:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(s).status == 200
        finally:
            for s in idle:
                s.close()
        assert "Traceback" not in server.log


class Slowloris:
    """``count`` connections that each send one more header byte about every second."""

    def __init__(self, port: int, count: int):
        self.sockets = open_connections(port, count)
        for s in self.sockets:
            s.setblocking(False)
            s.send(b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(1.0):
            for s in self.sockets:
                try:
                    self.sent += s.send(b"a")
                except OSError:
                    pass  # closed by the server: a real attacker would reconnect

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for s in self.sockets:
            s.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_client_is_served_while_1000_slowloris_connections_trickle(tmp_path, workers):
    with running_serve(tmp_path, "--workers", str(workers)) as server:
        attack = Slowloris(server.port, MANY)
        try:
            time.sleep(2)  # the attack is under way: every slow connection has sent more bytes
            for _ in range(3):
                legitimate_exchange(server.port)
        finally:
            attack.close()
        assert attack.sent >= MANY, "the slow connections trickled"
        assert "Traceback" not in server.log


def test_slow_request_head_gets_408_and_is_closed(tmp_path):
    with running_serve(tmp_path, "--header-timeout", "1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
            s.sendall(b"GET /xcap-root/xcap-caps/global/index HTTP/1.1\r\nHost: x\r\n")
            received = b""
            for _ in range(30):  # one header byte every 0.2 s: never a complete head
                try:
                    s.sendall(b"X")
                except OSError:
                    break
                readable, _, _ = select.select([s], [], [], 0.2)
                if readable:
                    chunk = s.recv(1000)
                    received += chunk
                    if not chunk:
                        break
            if not received.endswith(b"\r\n\r\n"):
                received += s.recv(1000)
        assert received.startswith(b"HTTP/1.1 408 "), received


def test_silent_keep_alive_connection_is_closed_after_idle_timeout(tmp_path):
    with running_serve(tmp_path, "--idle-timeout", "1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s).status == 200
            assert s.recv(100) == b""  # closed by the server well before the 15 s socket timeout


def test_stalled_request_body_gets_408_and_is_closed(tmp_path):
    with running_serve(tmp_path, "--body-timeout", "1") as server:
        client = DigestClient(server.port, timeout=15)
        client.request("GET", DOC)  # obtains the challenge
        sock = client._connect()
        head = request_bytes("PUT", DOC.encode(), {"Content-Type": RL_MIME,
                                                   "Authorization": client.authorization("PUT", DOC.encode())},
                             RL_DOC)
        sock.sendall(head[:-len(RL_DOC) + 10])  # the head and 10 bytes of the body, then nothing
        response = read_response(sock)
        assert response.status == 408
        assert sock.recv(100) == b""
        client.close()
        legitimate_exchange(server.port)  # the document was not written half
        assert "Traceback" not in server.log


# -- 16.3: bodies before authentication and before the size limit ------------------------------------


def test_unauthenticated_50mb_put_is_answered_401_before_its_body(tmp_path):
    with running_serve(tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(f"PUT {DOC} HTTP/1.1\r\nHost: x\r\nContent-Type: {RL_MIME}\r\n"
                      f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode())
            response = read_response(s)  # no body byte sent: the answer must not wait for it
            assert response.status == 401
            assert "digest" in response.headers["www-authenticate"].lower()
            assert response.headers.get("connection") == "close"


@pytest.mark.parametrize("framing", ["Transfer-Encoding: chunked", "Content-Length: 1000\r\nExpect: 100-continue"])
def test_unauthenticated_body_is_not_asked_for(tmp_path, framing):
    """A chunked body or one that waits for 100 Continue: 401 at once, never a 100."""
    with running_serve(tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(f"PUT {DOC} HTTP/1.1\r\nHost: x\r\nContent-Type: {RL_MIME}\r\n{framing}\r\n\r\n".encode())
            response = read_response(s)
            assert response.status == 401 and "www-authenticate" in response.headers


def test_unauthenticated_50mb_upload_is_cut_short(tmp_path):
    """A client that uploads without waiting: the server stops reading after its 401 instead of
    taking (and buffering to a temporary file) all 50 MB."""
    total = 50 * 1024 * 1024
    with running_serve(tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(f"PUT {DOC} HTTP/1.1\r\nHost: x\r\nContent-Type: {RL_MIME}\r\n"
                      f"Content-Length: {total}\r\n\r\n".encode())
            sent, chunk = 0, b"x" * 65536
            try:
                while sent < total:
                    sent += s.send(chunk)
            except OSError:
                pass  # reset or timed out: the server no longer reads
        assert sent < total // 2, f"{sent} of {total} bytes were taken"


def test_unauthenticated_small_put_sent_eagerly_reads_its_401(tmp_path):
    """urllib-style clients send the whole body before reading: they must read the 401 and its
    challenge (then retry with credentials), not a connection reset."""
    body = RL_DOC + b"<!--" + b"x" * (1024 * 1024) + b"-->"
    with running_serve(tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(request_bytes("PUT", DOC.encode(), {"Content-Type": RL_MIME}, body))
            response = read_response(s)
            assert response.status == 401 and "www-authenticate" in response.headers
        client = DigestClient(server.port)
        assert client.request("PUT", DOC, body, {"Content-Type": RL_MIME}).status == 201
        assert client.request("GET", DOC).body == body
        client.close()


def test_announced_100mb_body_is_413_at_once(tmp_path):
    with running_serve(tmp_path) as server:
        client = DigestClient(server.port)
        client.request("GET", DOC)  # obtains the challenge
        sock = client._connect()
        sock.sendall(f"PUT {DOC} HTTP/1.1\r\nHost: x\r\nContent-Type: {RL_MIME}\r\n"
                     f"Authorization: {client.authorization('PUT', DOC.encode())}\r\n"
                     f"Content-Length: {100 * 1024 * 1024}\r\n\r\n".encode())
        assert read_response(sock).status == 413
        client.close()


# -- issue 15: a bare CR in the request head --------------------------------------------------------


@pytest.mark.parametrize("head", [
    b"\r\r\r\n\r\n1",
    b"GET /healthz HTTP/1.1\rHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    b"GET /healthz HTTP/1.1\nHost: x\n\n",
])
def test_bare_cr_or_lf_in_the_request_head_is_400(tmp_path, head):
    with running_serve(tmp_path, "--anonymous", account=False) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head)
            assert read_response(s).status == 400
            assert s.recv(100) == b""


def test_a_crlf_split_across_packets_is_not_a_bare_cr(tmp_path):
    with running_serve(tmp_path, "--anonymous", account=False) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for piece in (b"\r\nGET /healthz HTTP/1.1\r", b"\nHost: x\r", b"\n\r", b"\n"):
                s.sendall(piece)
                time.sleep(0.05)
            assert read_response(s).status == 200


# -- 16.6: any byte in the request target --------------------------------------------------------


def targets() -> list[bytes]:
    base = b"/xcap-root/resource-lists/users/sip:alice@example.com/"
    out = []
    for bad in (b"%C0%AE", b"%C0%AF", b"%e0%80%ae", b"%C0%80", b"%ED%A0%80", b"%F8%88%80%80%80", b"%FF%FE",
                b"%80", b"%00"):
        out += [base + bad, base + b"index/~~/resource-lists/list" + bad, base + b"index" + bad,
                base.replace(b"alice", b"al" + bad + b"ice") + b"index", base + b"index?x=" + bad]
    for value in range(256):
        escaped = b"%%%02X" % value
        out.append(base + b"in" + escaped + b"dex")
        if value >= 0x80:
            out.append(base + b"in" + bytes([value]) + b"dex")  # raw, unencoded
    return out


def test_no_byte_sequence_in_the_request_target_is_a_500(tmp_path):
    with running_serve(tmp_path) as server:
        client = DigestClient(server.port)
        client.request("PUT", DOC, RL_DOC, {"Content-Type": RL_MIME})
        failures = []
        for target in targets():
            for method in ("GET", "PUT", "DELETE"):
                body = RL_DOC if method == "PUT" else b""
                response = client.request(method, target, body, {"Content-Type": RL_MIME} if body else None)
                if response.status >= 500 or response.status == 401:
                    failures.append((method, target, response.status))
        client.close()
    assert not failures, failures[:20]
    assert "Traceback" not in server.log
    assert "GET /xcap-root/resource-lists/users/sip:alice@example.com/%C0%AE " in server.log  # access log on
