"""HTTP/1.1 on the wire of ``xcap-wsgi serve`` (RFC 9110, RFC 9112): framing, smuggling,
connection handling and request targets, over raw sockets against live servers.

These pin what a demanding operator expects from serve's connection core, whatever parses the
bytes (llhttp through httptools, xcap_wsgi/http11.py; waitress' parser broke seven of these). Each
test sends exact bytes and asserts the status, whether the connection is closed or still usable,
and that nothing was stored where a request was refused.

Covered elsewhere, not repeated here: a bare CR or LF in the head (tests/test_serve_hardening.py
``test_bare_cr_or_lf_in_the_request_head_is_400``, which also covers an all-LF head), a CRLF split
across packets before the request line (same file), every ``%XX`` byte in the request target,
``%00`` included, never a 500 (same file, ``test_no_byte_sequence_in_the_request_target_is_a_500``),
an unauthenticated PUT with ``Expect: 100-continue`` answered 401 without a 100 first (same file,
``test_unauthenticated_body_is_not_asked_for``), ``100 Continue`` before an authenticated body
(tests/test_httpcore.py), a 304 that keeps the connection and has no body (tests/test_rfc_points.py),
``%2F`` inside an XUI (tests/test_server.py ``test_encoded_slash_in_xui_survives_waitress``).

RFC 9110/9112 rules and section numbers are cited from memory (shared/spec has no copy of them).
No timed assertions: every wait is bounded by a socket timeout.
"""

from __future__ import annotations

import re
import socket
from datetime import datetime

import pytest
from serve_support import (
    ACCOUNT,
    DOC,
    RL_DOC,
    RL_MIME,
    DigestClient,
    Response,
    running_serve,
)

#: ``--max-body-size`` of the anonymous server: small, so that a chunked body can exceed it.
LIMIT = 4096
#: waitress' ``max_request_header_size`` default (serve does not change it).
MAX_HEAD = 262144
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def doc(user: str, name: str = "index") -> bytes:
    """A resource-lists document of ``user`` (any user may write any document when anonymous)."""
    return f"/xcap-root/resource-lists/users/sip:{user}@example.com/{name}".encode()


def put_head(target: bytes, *headers: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """The head of a PUT of a resource-lists document, ``headers`` being full lines without CRLF."""
    lines = [b"PUT " + target + b" " + version, b"Host: 127.0.0.1", b"Content-Type: " + RL_MIME.encode(), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def put_then_get_in_order(port: int, target: bytes, put: bytes) -> None:
    """Send the request ``put`` (a PUT of RL_DOC to ``target``, head and body) and a GET of
    ``target`` in one write: 201, then 200 with the document, in that order."""
    with Wire(port) as wire:
        wire.send(put + b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wire.response().status == 201
        answer = wire.response()
        assert (answer.status, answer.body) == (200, RL_DOC)


def chunked(body: bytes, *sizes: int, extension: bytes = b"") -> bytes:
    """``body`` in chunks of ``sizes`` (the rest in one more), ``extension`` on the first chunk."""
    out, rest = b"", body
    for size in [*sizes, len(body)]:
        if not rest:
            break
        piece, rest = rest[:size], rest[size:]
        out += b"%x" % len(piece) + extension + b"\r\n" + piece + b"\r\n"
        extension = b""
    return out + b"0\r\n\r\n"


# -- one raw connection -------------------------------------------------------------------------


class Wire:
    """A raw client connection that reads answers off one buffer: pipelined answers may arrive
    in one segment, so bytes past one answer belong to the next."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {self.buffer[:300]!r}")
        self.buffer += chunk

    def response(self, *, head_only: bool = False) -> Response:
        """The next answer; ``head_only`` for the answer to a HEAD (no content follows)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split()[1]
        raw_headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
        headers = {name.lower(): value for name, value in raw_headers}
        bodiless = head_only or int(status) < 200 or int(status) in (204, 304)
        length = 0 if bodiless else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status), headers, body, raw_headers)

    def closed(self) -> bool:
        """True when the server closed the connection and sent nothing more (a reset counts as
        closed); False when more bytes came or the socket timeout passed with the connection open."""
        if self.buffer:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        self.buffer += data  # for the failure message
        return not data

    def usable(self) -> bool:
        """True when another request on this connection is answered."""
        self.send(HEALTHZ)
        return self.response().status == 200


def exchange(port: int, data: bytes) -> Response:
    """Send ``data`` on a new connection: the first answer."""
    with Wire(port) as wire:
        wire.send(data)
        return wire.response()


def refused(port: int, data: bytes) -> tuple[int, bool]:
    """Send ``data`` on a new connection: (status of the first answer, whether the server then
    closed the connection; a server that keeps it makes this wait for the socket timeout)."""
    with Wire(port) as wire:
        wire.send(data)
        status = wire.response().status
        return status, wire.closed()


def stored(port: int, target: bytes) -> bytes | None:
    """The document at ``target`` on an anonymous server, None when there is none."""
    with Wire(port) as wire:
        wire.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        response = wire.response()
        assert response.status in (200, 404), response.status
        return response.body if response.status == 200 else None


# -- the servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anon(tmp_path_factory):
    """``serve --anonymous``: most framing tests, without Digest in the way."""
    with running_serve(tmp_path_factory.mktemp("anon"), "--anonymous", "--workers", "1", "--threads", "2",
                       "--max-body-size", str(LIMIT), account=False) as server:
        yield server
    assert "Traceback" not in server.log, server.log


@pytest.fixture(scope="module")
def digest(tmp_path_factory):
    """``serve`` with Digest (the default: bodies withheld from requests without Authorization);
    a short header timeout for the 408 test."""
    with running_serve(tmp_path_factory.mktemp("digest"), "--workers", "1", "--threads", "2",
                       "--header-timeout", "1") as server:
        yield server
    assert "Traceback" not in server.log, server.log


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """``serve`` behind a trusted proxy that asserts the user in ``X-Remote-User``
    (docs/security.md); the tests' own address 127.0.0.1 is that proxy."""
    with running_serve(tmp_path_factory.mktemp("proxied"), "--workers", "1", "--threads", "2",
                       "--identity-header", "X-Remote-User", "--trusted-proxies", "127.0.0.1") as server:
        yield server
    assert "Traceback" not in server.log, server.log


# -- 1. request smuggling: ambiguous framing ----------------------------------------------------------


def test_content_length_with_chunked_is_framed_by_chunked_or_refused(anon):
    """RFC 9112 §6.1: a request with both may be rejected, or framed by Transfer-Encoding alone;
    never by the Content-Length (here 7: the document would be cut to 7 bytes)."""
    target = doc("cl-te")
    response = exchange(anon.port, put_head(target, b"Content-Length: 7", b"Transfer-Encoding: chunked")
                        + chunked(RL_DOC, 50))
    assert response.status in (201, 400), response.status
    assert stored(anon.port, target) == (RL_DOC if response.status == 201 else None)


def test_content_length_with_chunked_gets_one_answer_then_the_connection_closes(anon):
    hidden = HEALTHZ
    body = b"0\r\n\r\n" + hidden  # by Content-Length one body; by chunked an empty body, then a request
    with Wire(anon.port) as wire:
        wire.send(put_head(doc("smuggle"), b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked")
                  + body)
        assert wire.response().status != 200
        assert wire.closed(), f"a second answer: {wire.buffer[:100]!r}"


def test_content_length_with_chunked_without_credentials_gets_one_answer(digest):
    """With Digest on, the body of a request without Authorization is never read as requests:
    401 (waitress: the body is withheld) or 400 (the framing refused), then close."""
    body = b"0\r\n\r\n" + HEALTHZ
    with Wire(digest.port) as wire:
        wire.send(put_head(DOC.encode(), b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked") + body)
        assert wire.response().status in (400, 401)
        assert wire.closed(), f"a second answer: {wire.buffer[:100]!r}"


@pytest.mark.parametrize("lines", [
    [b"Content-Length: %d" % len(RL_DOC), b"Content-Length: %d" % (len(RL_DOC) + 1)],
    [b"Content-Length: %d, %d" % (len(RL_DOC), len(RL_DOC) + 1)],
], ids=["two-lines", "one-list"])
def test_different_content_lengths_are_400(anon, lines):
    """RFC 9112 §6.3 rule 5: differing lengths are unrecoverable framing: 400, then close. (Either
    length would frame a well-formed document here, so picking one would store it.)"""
    target = doc("two-cl")
    status, closed = refused(anon.port, put_head(target, *lines) + RL_DOC + b"\n")
    assert (status, closed) == (400, True)
    assert stored(anon.port, target) is None


def test_content_length_with_leading_zeros_is_the_number(anon):
    """Content-Length = 1*DIGIT (RFC 9110 §8.6): ``000140`` is 140, not octal, not refused."""
    target = doc("zeros")
    response = exchange(anon.port, put_head(target, b"Content-Length: %06d" % len(RL_DOC)) + RL_DOC)
    assert response.status == 201
    assert stored(anon.port, target) == RL_DOC


def test_body_of_a_get_is_read_not_parsed_as_a_request(anon):
    """A GET may carry a Content-Length body (RFC 9110 §9.3.1: no meaning, but framed as any body):
    it is read and dropped; a server that ignored it would answer it as a request (here a 404)."""
    hidden = b"GET " + doc("nobody") + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with Wire(anon.port) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(hidden) + hidden
                  + HEALTHZ)
        assert [wire.response().status, wire.response().status] == [200, 200]


@pytest.mark.parametrize("value", [b"abc", b"-1", b"+%d" % len(RL_DOC), b"0x%x" % len(RL_DOC), b"1 40", b"",
                                   b"%d.0" % len(RL_DOC)],
                         ids=["word", "negative", "plus-sign", "hex", "inner-space", "empty", "decimal-point"])
def test_invalid_content_length_is_400(anon, value):
    """RFC 9112 §6.3 rule 5 (Content-Length = 1*DIGIT, RFC 9110 §8.6): 400, close, nothing stored."""
    target = doc("bad-cl")
    status, closed = refused(anon.port, put_head(target, b"Content-Length: " + value) + RL_DOC)
    assert (status, closed) == (400, True)
    assert stored(anon.port, target) is None


@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity", b"\x0bchunked"],
                         ids=["gzip", "gzip-then-chunked", "chunked-not-last", "identity", "vtab-chunked"])
def test_unsupported_transfer_coding_is_501_or_400(anon, coding):
    """RFC 9112 §6.1: an unknown transfer coding SHOULD be 501; chunked not last MUST be 400 (§6.3).
    Either way the body cannot be framed: close, nothing stored."""
    target = doc("bad-te")
    status, closed = refused(anon.port, put_head(target, b"Transfer-Encoding: " + coding) + chunked(RL_DOC))
    assert status in (400, 501) and closed, (status, closed)
    assert stored(anon.port, target) is None


@pytest.mark.parametrize("body", [
    b"zz\r\n" + RL_DOC + b"\r\n0\r\n\r\n",
    b"-%x\r\n" % len(RL_DOC) + RL_DOC + b"\r\n0\r\n\r\n",
    b"0x%x\r\n" % len(RL_DOC) + RL_DOC + b"\r\n0\r\n\r\n",
    b"%x\n" % len(RL_DOC) + RL_DOC + b"\r\n0\r\n\r\n",
    b"%x\r\n" % (len(RL_DOC) - 10) + RL_DOC + b"\r\n0\r\n\r\n",
], ids=["not-hex", "negative", "0x-prefix", "bare-LF", "data-longer-than-size"])
def test_bad_chunk_is_400(anon, body):
    """RFC 9112 §7.1: chunk = chunk-size [chunk-ext] CRLF chunk-data CRLF, chunk-size = 1*HEXDIG."""
    target = doc("bad-chunk")
    status, closed = refused(anon.port, put_head(target, b"Transfer-Encoding: chunked") + body)
    assert (status, closed) == (400, True)
    assert stored(anon.port, target) is None


def test_empty_chunk_size_line_is_400(anon):
    target = doc("empty-chunk-line")
    body = b"\r\n%x\r\n" % len(RL_DOC) + RL_DOC + b"\r\n0\r\n\r\n"
    with Wire(anon.port) as wire:
        wire.send(put_head(target, b"Transfer-Encoding: chunked") + body)
        assert wire.response().status == 400  # waitress: 201
        assert wire.closed()
    assert stored(anon.port, target) is None


def test_chunk_size_beyond_the_body_limit_is_refused_at_once(anon):
    with Wire(anon.port, timeout=3) as wire:
        wire.send(put_head(doc("huge-chunk"), b"Transfer-Encoding: chunked") + b"f" * 24 + b"\r\nabc")
        response = wire.response()  # times out (3 s, below the 10 s body timeout) while waitress waits
        assert response.status in (400, 413)
        assert wire.closed()


# -- 2. chunked request bodies --------------------------------------------------------------------


@pytest.mark.parametrize("extension", [b"", b";name=value", b';name="quoted value"', b";flag"],
                         ids=["plain", "extension", "quoted-extension", "bare-extension"])
def test_chunked_put_is_stored_byte_identical(anon, extension):
    """RFC 9112 §7.1.1: chunk extensions a recipient does not understand are ignored."""
    target = doc("chunked-" + str(len(extension)))
    with Wire(anon.port) as wire:
        wire.send(put_head(target, b"Transfer-Encoding: chunked") + chunked(RL_DOC, 50, 7, extension=extension))
        assert wire.response().status == 201
        assert wire.usable()
    assert stored(anon.port, target) == RL_DOC


def test_chunked_put_with_digest_is_stored(digest):
    client = DigestClient(digest.port)
    target = doc("alice", "chunked.xml")
    assert client.request("GET", target).status == 404  # takes the challenge
    authorization = client.authorization("PUT", target)
    with Wire(digest.port) as wire:
        wire.send(put_head(target, b"Authorization: " + authorization.encode(), b"Transfer-Encoding: chunked")
                  + chunked(RL_DOC, 64))
        assert wire.response().status == 201
    assert client.request("GET", target).body == RL_DOC
    client.close()


def test_transfer_coding_name_is_case_insensitive(anon):
    """RFC 9112 §7: transfer-coding names are case-insensitive."""
    target = doc("chunked-case")
    response = exchange(anon.port, put_head(target, b"Transfer-Encoding: Chunked") + chunked(RL_DOC, 30))
    assert response.status == 201
    assert stored(anon.port, target) == RL_DOC


def test_chunked_trailer_ends_the_body_and_the_next_request_follows(anon):
    """RFC 9112 §7.1.2: trailer fields after the last chunk; the request ends at their empty line."""
    target = doc("trailer")
    body = chunked(RL_DOC, 70)[:-2] + b"X-Checksum: 1\r\n\r\n"
    put_then_get_in_order(anon.port, target, put_head(target, b"Transfer-Encoding: chunked", b"Trailer: X-Checksum")
                          + body)


def test_chunked_body_over_the_size_limit_is_413_and_not_stored(anon):
    target = doc("chunked-big")
    big = RL_DOC + b"<!--" + b"x" * LIMIT + b"-->"
    status, closed = refused(anon.port, put_head(target, b"Transfer-Encoding: chunked")
                             + chunked(big, *[1000] * 5))
    assert (status, closed) == (413, True)
    assert stored(anon.port, target) is None


# -- 3. header names with an underscore ----------------------------------------------------------------


def test_identity_header_from_the_trusted_proxy_authenticates(proxied):
    """The other half of the next test: the dash spelling from a trusted proxy is believed."""
    target, asserted = doc("alice", "dash.xml"), f"X-Remote-User: {ACCOUNT}".encode()
    assert exchange(proxied.port, put_head(target, asserted, b"Content-Length: %d" % len(RL_DOC))
                    + RL_DOC).status == 201
    answer = exchange(proxied.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + asserted + b"\r\n\r\n")
    assert (answer.status, answer.body) == (200, RL_DOC)


@pytest.mark.parametrize("name", [b"X_Remote_User", b"X-Remote_User", b"x_remote_user"])
def test_identity_header_spelled_with_underscores_is_ignored(proxied, name):
    """A WSGI server maps ``X-Remote-User`` and ``X_Remote_User`` to the same HTTP_X_REMOTE_USER:
    a client could pose as the proxy's header. waitress drops names with an underscore."""
    target = doc("alice", "underscore.xml")
    response = exchange(proxied.port, put_head(target, name + b": " + ACCOUNT.encode(),
                                               b"Content-Length: %d" % len(RL_DOC)) + RL_DOC)
    assert response.status == 401
    answer = exchange(proxied.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nX-Remote-User: "
                      + ACCOUNT.encode() + b"\r\n\r\n")
    assert answer.status == 404  # nothing was stored


# -- 4. malformed request heads ---------------------------------------------------------------------


@pytest.mark.parametrize("fold", [b" ", b"\t"], ids=["space", "tab"])
def test_obs_fold_cannot_smuggle_a_header(proxied, fold):
    """RFC 9112 §5.2: obs-fold is rejected (400) or replaced by SP; a folded line is never a
    field of its own (here it would log the request in as alice)."""
    head = (b"GET " + doc("alice") + b" HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n" + fold
            + b"X-Remote-User: " + ACCOUNT.encode() + b"\r\n\r\n")
    assert exchange(proxied.port, head).status in (400, 401)


@pytest.mark.parametrize("fold", [b" ", b"\t"], ids=["space", "tab"])
def test_obs_fold_is_refused_or_unfolded(anon, fold):
    """RFC 9112 §5.2 allows either: 400 (what llhttp does), or the fold as SP and the request served."""
    with Wire(anon.port) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n" + fold + b"b\r\n\r\n")
        status = wire.response().status
        assert status in (200, 400)
        assert wire.closed() if status == 400 else wire.usable()


def test_whitespace_before_the_first_header_cannot_smuggle_it(proxied):
    """RFC 9112 §2.2: a whitespace-preceded line after the request line MUST be rejected or
    ignored whole; never read as a field."""
    head = (b"GET " + doc("alice") + b" HTTP/1.1\r\n X-Remote-User: " + ACCOUNT.encode()
            + b"\r\nHost: x\r\n\r\n")
    assert exchange(proxied.port, head).status in (400, 401)


@pytest.mark.parametrize("line", [b"NoColonHere", b"X-Note : a", b": a", b"X-Note: a\x00b", b"X Note: a",
                                  b"X-Note\x01: a"],
                         ids=["no-colon", "space-before-colon", "empty-name", "NUL-in-value", "space-in-name",
                              "CTL-in-name"])
def test_malformed_header_line_is_400(anon, line):
    """RFC 9112 §5 (field-name is a token; §5.1: whitespace before the colon MUST be 400) and
    RFC 9110 §5.5 (NUL in a value: reject or replace)."""
    status, closed = refused(anon.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n")
    assert (status, closed) == (400, True)


@pytest.mark.parametrize("line", [b"GARBAGE", b"GET /healthz HTTP/1.1 extra", b"GET /healthz HTTX/1.1",
                                  b"GET /healthz HTTP/1", b"GE(T /healthz HTTP/1.1", b"\x16\x03\x01\x02\x00\x01"],
                         ids=["one-word", "four-words", "not-HTTP", "no-minor-version", "bad-method-char",
                              "TLS-hello"])
def test_malformed_request_line_is_400(anon, line):
    """RFC 9112 §3: request-line = method SP request-target SP HTTP-version."""
    status, closed = refused(anon.port, line + b"\r\nHost: x\r\n\r\n")
    assert (status, closed) == (400, True)


def test_bare_lf_ending_the_head_is_400(anon):
    """serve refuses a bare LF in the head (issue 15, RFC 9112 §2.2 allows either), also as the
    last line end, where a lenient parser would take ``\\r\\n\\n`` as the end of the head."""
    status, closed = refused(anon.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\n")
    assert (status, closed) == (400, True)


# -- 5. the size of the request head ----------------------------------------------------------------


def test_request_head_over_the_limit_is_431_and_the_server_goes_on(anon):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    with Wire(anon.port) as wire:
        try:
            wire.send(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before all of it was taken: the answer is waiting
        assert wire.response().status in (400, 431)
        assert wire.closed()
    with Wire(anon.port) as wire:
        assert wire.usable()


def test_request_head_of_32_kb_is_served(anon):
    """Big heads are real (Digest with long URIs, many headers from a proxy): 32 kB in 100 fields."""
    fields = b"".join(b"X-Field-%d: %s\r\n" % (n, b"v" * 320) for n in range(100))
    with Wire(anon.port) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert wire.response().status == 200
        assert wire.usable()


# -- 6, 7. persistence: HTTP/1.0 and Connection: close ------------------------------------------------


def test_http10_without_keep_alive_is_closed_after_the_answer(anon):
    """RFC 9112 §9.3: an HTTP/1.0 connection without the keep-alive option ends after the answer."""
    with Wire(anon.port) as wire:
        wire.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert wire.response().status == 200
        assert wire.closed()


def test_http10_keep_alive_stays_open(anon):
    """RFC 9112 Appendix C.2.2: an HTTP/1.0 client asks with ``Connection: keep-alive``; the server
    that keeps the connection says so in its answer."""
    with Wire(anon.port) as wire:
        for _ in range(2):
            wire.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = wire.response()
            assert response.status == 200
            assert response.headers.get("connection", "").lower() == "keep-alive"


@pytest.mark.parametrize("option", [b"close", b"Close"])
def test_connection_close_from_the_client_ends_the_connection(anon, option):
    """RFC 9112 §9.6: the server answers with ``Connection: close`` and closes (option names are
    case-insensitive)."""
    with Wire(anon.port) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: " + option + b"\r\n\r\n" + HEALTHZ)
        response = wire.response()
        assert response.status == 200 and response.headers.get("connection", "").lower() == "close"
        assert wire.closed()  # the pipelined second request is not answered


@pytest.mark.parametrize("field", [b"Connection: keep-alive, close", b"Connection: close\r\nConnection: TE"],
                         ids=["one-list", "two-lines"])
def test_connection_close_among_other_options_ends_the_connection(anon, field):
    with Wire(anon.port) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + field + b"\r\n\r\n" + HEALTHZ)
        assert wire.response().status == 200
        assert wire.closed(), f"a second answer: {wire.buffer[:100]!r}"


def test_http10_request_with_transfer_encoding_ends_the_connection(anon):
    target = doc("http10-te")
    with Wire(anon.port) as wire:
        wire.send(put_head(target, b"Connection: keep-alive", b"Transfer-Encoding: chunked",
                           b"Content-Length: %d" % len(RL_DOC), version=b"HTTP/1.0") + RL_DOC + HEALTHZ)
        wire.response()
        assert wire.closed(), f"a second answer: {wire.buffer[:100]!r}"


# -- 8. HEAD ----------------------------------------------------------------------------------------------


def test_head_has_the_fields_of_get_and_no_body(anon):
    """RFC 9110 §9.3.2: HEAD answers with GET's fields (Content-Length included, §8.6) and no
    content: the next pipelined answer starts right after the head."""
    target = doc("head")
    assert exchange(anon.port, put_head(target, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC).status == 201
    with Wire(anon.port) as wire:
        wire.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\nHEAD " + target
                  + b" HTTP/1.1\r\nHost: x\r\n\r\n" + HEALTHZ)
        get, head = wire.response(), wire.response(head_only=True)
        assert (get.status, head.status) == (200, 200)
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(RL_DOC))
        assert head.headers["etag"] == get.headers["etag"]
        after = wire.response()
        assert (after.status, after.body) == (200, b"ok\n")


# -- 10. Date and Server on every answer ------------------------------------------------------------

IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"\d{4} \d\d:\d\d:\d\d GMT")


def assert_date_and_server(response: Response) -> None:
    """One Date in IMF-fixdate form (RFC 9110 §5.6.7) whose weekday fits the date, one Server."""
    dates = [value for name, value in response.raw_headers if name.lower() == "date"]
    assert len(dates) == 1 and IMF_FIXDATE.fullmatch(dates[0]), response.raw_headers
    assert datetime.strptime(dates[0], "%a, %d %b %Y %H:%M:%S GMT").strftime("%a, %d %b %Y %H:%M:%S GMT") == dates[0]
    servers = [value for name, value in response.raw_headers if name.lower() == "server"]
    assert servers == ["xcap-wsgi"], response.raw_headers


def _not_modified(port: int) -> Response:
    target = doc("date-304")
    etag = exchange(port, put_head(target, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC).headers["etag"]
    return exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + etag.encode() + b"\r\n\r\n")


ANSWERS = {  # name: (server fixture, how to get that answer, the statuses it may have)
    "200": ("anon", lambda port: exchange(port, HEALTHZ), {200}),
    "201": ("anon", lambda port: exchange(port, put_head(doc("date-201"), b"Content-Length: %d" % len(RL_DOC))
                                          + RL_DOC), {201}),
    "304": ("anon", _not_modified, {304}),
    "400-request-line": ("anon", lambda port: exchange(port, b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n"), {400}),
    "400-header": ("anon", lambda port: exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"), {400}),
    "401": ("digest", lambda port: exchange(port, b"GET " + DOC.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"), {401}),
    "404": ("anon", lambda port: exchange(port, b"GET " + doc("nobody") + b" HTTP/1.1\r\nHost: x\r\n\r\n"), {404}),
    "405-or-501": ("anon", lambda port: exchange(port, b"BREW " + doc("nobody") + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
                   {405, 501}),
    "409": ("anon", lambda port: exchange(port, put_head(doc("date-409"), b"Content-Length: 3") + b"<a>"), {409}),
    "413": ("anon", lambda port: exchange(port, put_head(doc("date-413"), b"Content-Length: %d" % (LIMIT + 1))),
            {413}),
    "501-or-400": ("anon", lambda port: exchange(port, put_head(doc("date-501"), b"Transfer-Encoding: gzip")),
                   {400, 501}),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_every_answer_has_date_and_server(request, name):
    """From the application and from the HTTP layer alike."""
    fixture, get_answer, statuses = ANSWERS[name]
    response = get_answer(request.getfixturevalue(fixture).port)
    assert response.status in statuses
    assert_date_and_server(response)


def test_408_has_date_and_server(digest):
    with Wire(digest.port) as wire:
        wire.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the head never ends: 408 after 1 s
        response = wire.response()
        assert response.status == 408
        assert_date_and_server(response)


# -- 11. request targets ----------------------------------------------------------------------------


def test_absolute_form_is_served_like_origin_form(anon):
    """RFC 9112 §3.2.2: a server MUST accept the absolute form (a proxy's form) of any target."""
    origin = doc("absolute")
    absolute = b"http://127.0.0.1:%d" % anon.port + origin
    assert exchange(anon.port, put_head(absolute, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC).status == 201
    by_origin = exchange(anon.port, b"GET " + origin + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    by_absolute = exchange(anon.port, b"GET " + absolute + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (by_origin.status, by_origin.body) == (by_absolute.status, by_absolute.body) == (200, RL_DOC)
    assert by_origin.headers["etag"] == by_absolute.headers["etag"]


def test_absolute_form_with_digest(digest):
    """Digest's ``uri`` is the request-target as sent (RFC 7616 §3.4), here the absolute form."""
    client = DigestClient(digest.port)
    absolute = b"http://127.0.0.1:%d" % digest.port + doc("alice", "absolute.xml")
    assert client.request("PUT", absolute, RL_DOC, {"Content-Type": RL_MIME}).status == 201
    assert client.request("GET", absolute).body == RL_DOC
    client.close()


def test_query_string_reaches_the_application(anon):
    """RFC 4825 §6: the query carries the node selector's namespace bindings."""
    target = doc("query")
    assert exchange(anon.port, put_head(target, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC).status == 201
    selected = (target + b"/~~/rl:resource-lists/rl:list%5B@name=%22friends%22%5D/@name"
                b"?xmlns(rl=urn:ietf:params:xml:ns:resource-lists)")
    answer = exchange(anon.port, b"GET " + selected + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (answer.status, answer.body) == (200, b"friends")


@pytest.mark.parametrize("prefix", [b"//evil", b"//127.0.0.1", b"//x/.."],
                         ids=["other-host", "this-host", "dot-segment"])
def test_target_starting_with_two_slashes_is_not_an_authority(anon, prefix):
    """``//host/path`` in origin form is a path whose first segment is empty (RFC 9112 §3.2.1), not
    a network-path reference: a parser that read it as one would serve ``/path`` (here the
    document) to a request a front proxy saw as outside the XCAP root. (waitress collapses the
    leading slashes, ``//xcap-root/x`` is PATH_INFO ``/xcap-root/x``: the same document; the next
    test pins that it is never another user's.)"""
    target = doc("slashes")
    assert exchange(anon.port, put_head(target, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC).status in (200, 201)
    answer = exchange(anon.port, b"GET " + prefix + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status in (400, 404), answer.status
    assert RL_DOC not in answer.body


def test_target_starting_with_two_slashes_never_reaches_another_users_document(proxied):
    bob, alice = b"X-Remote-User: bob@example.com", f"X-Remote-User: {ACCOUNT}".encode()
    assert exchange(proxied.port, put_head(doc("bob"), bob, b"Content-Length: %d" % len(RL_DOC))
                    + RL_DOC).status == 201
    for target in (b"/" + doc("bob"), b"//xcap-root" + doc("bob"), b"//evil" + doc("bob")):
        answer = exchange(proxied.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + alice + b"\r\n\r\n")
        assert answer.status in (400, 403, 404), (target, answer.status)
        assert RL_DOC not in answer.body


# -- 12. percent-decoding -----------------------------------------------------------------------------


def test_path_is_percent_decoded_exactly_once(anon):
    """``%2541`` reaches the node selector as ``%41``, not as ``A``: a list named ``a%41`` is found,
    one named ``aA`` is not (no second decoding anywhere)."""
    target = doc("decode-once")
    body = RL_DOC.replace(b'name="friends"', b'name="a%41"')
    assert exchange(anon.port, put_head(target, b"Content-Length: %d" % len(body)) + body).status == 201
    select = target + b"/~~/resource-lists/list%5B@name=%22"
    once = exchange(anon.port, b"GET " + select + b"a%2541%22%5D/@name HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (once.status, once.body) == (200, b"a%41")
    twice = exchange(anon.port, b"GET " + select + b"aA%22%5D/@name HTTP/1.1\r\nHost: x\r\n\r\n")
    assert twice.status == 404


# -- 13, 15. pipelining and empty lines ---------------------------------------------------------------


def test_pipelined_put_and_get_are_answered_in_order(anon):
    target = doc("pipelined")
    put_then_get_in_order(anon.port, target, put_head(target, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC)


def test_pipelined_chunked_put_and_get_are_answered_in_order(anon):
    target = doc("pipelined-chunked")
    put_then_get_in_order(anon.port, target, put_head(target, b"Transfer-Encoding: chunked") + chunked(RL_DOC, 40))


@pytest.mark.parametrize("before", [b"\r\n", b"\r\n\r\n"], ids=["one", "two"])
def test_empty_lines_before_the_request_line_are_ignored(anon, before):
    """RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line,
    such as the CRLF some clients send after a request body."""
    target = doc("crlf-" + str(len(before)))
    with Wire(anon.port) as wire:
        wire.send(before + put_head(target, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC + before
                  + b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wire.response().status == 201
        answer = wire.response()
        assert (answer.status, answer.body) == (200, RL_DOC)


# -- 14. Expect: 100-continue without credentials ------------------------------------------------------


def test_body_sent_after_the_401_to_an_expect_put_is_not_read_as_a_request(digest):
    """No 100 Continue for a PUT without Authorization: 401 at once (the answer to the whole
    exchange). A client that sends its body anyway (curl does after a second) must not have it
    parsed as a request, here one that would be answered 200."""
    body = HEALTHZ
    with Wire(digest.port) as wire:
        wire.send(put_head(DOC.encode(), b"Content-Length: %d" % len(body), b"Expect: 100-continue"))
        response = wire.response()
        assert response.status == 401 and response.headers.get("connection") == "close"
        try:
            wire.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert wire.closed(), f"a second answer: {wire.buffer[:100]!r}"


# -- 16. methods ----------------------------------------------------------------------------------------


def test_unknown_method_is_405_or_501(anon):
    """RFC 9110 §9.1: an unrecognized method SHOULD be 501; 405 says it is not allowed here. After
    a 405 (the application's answer) the connection goes on; after a 501 it may end."""
    with Wire(anon.port) as wire:
        wire.send(b"BREW " + doc("coffee") + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status = wire.response().status
        assert status in (405, 501)
        if status == 405:
            assert wire.usable()


def test_methods_are_case_sensitive(anon):
    """RFC 9110 §9.1: ``get`` is not GET (an unknown method: 400, 405 or 501), never the document."""
    target = doc("lowercase")
    assert exchange(anon.port, put_head(target, b"Content-Length: %d" % len(RL_DOC)) + RL_DOC).status == 201
    answer = exchange(anon.port, b"get " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status in (400, 405, 501), answer.status
    assert RL_DOC not in answer.body


# -- Host ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [b"", b"Host: a\r\nHost: b\r\n"], ids=["missing", "twice"])
def test_http11_request_without_exactly_one_host_is_400(anon, host):
    assert exchange(anon.port, b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n").status == 400
