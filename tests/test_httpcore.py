"""serve's connection core (xcap_wsgi.httpcore) over real sockets against a live ``serve``:
what a thread pool that owns connections one event at a time must still get right.

No timed assertions: waits are bounded by socket timeouts.
"""

from __future__ import annotations

import socket
import time

from serve_support import (
    DOC,
    RL_DOC,
    RL_MIME,
    DigestClient,
    read_response,
    request_bytes,
    running_serve,
)


def _authorized(client: DigestClient, method: str, target: str, body: bytes = b"",
                headers: dict | None = None) -> bytes:
    """A complete request with a fresh Authorization (the client holds a challenge already)."""
    extra = dict(headers or {})
    extra["Authorization"] = client.authorization(method, target.encode())
    return request_bytes(method, target.encode(), extra, body)


def test_pipelined_requests_are_answered_in_order(tmp_path):
    with running_serve(tmp_path, "--workers", "1", "--threads", "4") as served:
        client = DigestClient(served.port)
        assert client.request("PUT", DOC, RL_DOC, {"Content-Type": RL_MIME}).status == 201
        element = DOC + "/~~/resource-lists/list%5B@name=%22friends%22%5D/@name"
        batch = (_authorized(client, "GET", DOC) + _authorized(client, "GET", element)
                 + _authorized(client, "DELETE", DOC) + _authorized(client, "GET", DOC))
        sock = client._connect()
        sock.sendall(batch)  # one write: the four requests arrive in one read
        answers = _responses(sock, 4)
        assert [status for status, _ in answers] == [200, 200, 200, 404]
        assert answers[0][1] == RL_DOC and answers[1][1] == b"friends"
        client.close()


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` pipelined responses (status, body) read off one stream: they may arrive in one
    segment, so bytes past one response belong to the next (serve_support.read_response reads one)."""
    buffer, answers = b"", []
    while len(answers) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode("latin-1").split("\r\n")
            length = next((int(line.split(":", 1)[1]) for line in head[1:]
                           if line.lower().startswith("content-length:")), 0)
            end = head_end + 4 + length
            if len(buffer) >= end:
                answers.append((int(head[0].split()[1]), buffer[head_end + 4:end]))
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} answers"
        buffer += chunk
    return answers


def test_expect_100_continue_is_answered_before_the_body(tmp_path):
    with running_serve(tmp_path, "--workers", "1") as served:
        client = DigestClient(served.port)
        assert client.request("GET", DOC).status == 404  # takes the challenge
        head, _, body = _authorized(client, "PUT", DOC, RL_DOC, {"Content-Type": RL_MIME,
                                                                  "Expect": "100-continue"}).partition(b"\r\n\r\n")
        sock = client._connect()
        sock.sendall(head + b"\r\n\r\n")
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        sock.sendall(body)
        final = read_response(sock)
        assert final.status == 201
        assert client.request("GET", DOC).body == RL_DOC
        client.close()


def test_a_client_that_does_not_read_its_answer_holds_no_thread(tmp_path):
    """One thread only: a large answer left unread waits in its connection while others are served."""
    big = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
           b'<list name="friends">' + b"".join(b'<entry uri="sip:friend%d@example.com"/>' % n for n in range(40000))
           + b"</list></resource-lists>")
    assert len(big) > 1_000_000
    with running_serve(tmp_path, "--workers", "1", "--threads", "1", "--max-body-size", str(4 << 20)) as served:
        writer = DigestClient(served.port, timeout=60)
        assert writer.request("PUT", DOC, big, {"Content-Type": RL_MIME}).status == 201
        sluggish = DigestClient(served.port)
        name = DOC + "/~~/resource-lists/list%5B@name=%22friends%22%5D/@name"
        assert sluggish.request("GET", name).body == b"friends"  # takes the challenge
        sock = sluggish._connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(_authorized(sluggish, "GET", DOC))  # ~1.2 MB: far more than the socket buffers hold
        time.sleep(0.5)
        other = DigestClient(served.port)
        for _ in range(5):  # served by the one thread while the first answer waits unread
            assert other.request("GET", "/xcap-root/xcap-caps/global/index").status == 200
        answer = read_response(sock)
        assert answer.status == 200 and answer.body == big  # and the first answer arrives whole
        for client in (writer, sluggish, other):
            client.close()


def test_connection_limit_holds_new_clients_until_one_leaves(tmp_path):
    with running_serve(tmp_path, "--workers", "1", "--connection-limit", "3") as served:
        held = [socket.create_connection(("127.0.0.1", served.port), timeout=10) for _ in range(3)]
        for sock in held:  # all three are accepted and served
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).status == 200
        waiting = socket.create_connection(("127.0.0.1", served.port), timeout=10)  # in the backlog
        waiting.settimeout(1.5)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            early = waiting.recv(100)
        except TimeoutError:
            early = b""
        assert early == b""  # not accepted while the limit is reached
        held.pop().close()
        waiting.settimeout(10)
        assert read_response(waiting).status == 200  # accepted once a connection left
        for sock in held + [waiting]:
            sock.close()


def test_waitress_loop_where_epoll_is_missing_keeps_the_limits():
    """The fallback for systems without epoll (httpserver.create_server), driven here on Linux."""
    import threading

    from xcap_wsgi.httpserver import Limits, create_server

    def hello(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    server = create_server(hello, limits=Limits(header_timeout=1.0), host="127.0.0.1", port=0, threads=2)
    port = server.effective_port
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_response(sock)
            assert (answer.status, answer.body) == (200, b"hello")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
            assert read_response(slow).status == 408
        with socket.create_connection(("127.0.0.1", port), timeout=10) as bare:
            bare.sendall(b"GET / HTTP/1.1\rHost: x\r\n\r\n")
            assert read_response(bare).status == 400
    finally:
        server.close()
