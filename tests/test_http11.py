"""serve's HTTP/1.1 framing (xcap_wsgi.http11) without sockets: requests read from bytes fed in
any split, environs as waitress builds them, answers as PEP 3333 and RFC 9112 want them.
The same behaviour over real sockets is in test_httpcore.py, test_serve_hardening.py and
test_http_wire.py."""

from __future__ import annotations

import pytest

from xcap_wsgi.http11 import MAX_HEAD_BYTES, RequestReader, Site
from xcap_wsgi.httpserver import Limits

PUT = (b"PUT /xcap-root/x/users/sip:a@b/index HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
       b"Content-Length: 5\r\n\r\nhello")
GET = b"GET /p%20q?x=%41 HTTP/1.1\r\nHost: h\r\n\r\n"


def read_all(data: bytes, *, split: int | None = None, limits: Limits | None = None):
    reader = RequestReader(limits or Limits())
    step = split or len(data)
    done = []
    for start in range(0, len(data), step):
        done += reader.feed(data[start:start + step])
    return reader, done


def echo_app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Length", environ.get("CONTENT_LENGTH", "-"))])
    return [environ["REQUEST_METHOD"].encode(), b" ", environ["PATH_INFO"].encode("latin-1"), b" ", body]


def answer(site: Site, request) -> tuple[int, dict[str, str], bytes, bool]:
    raw, close = site.answer(request, ("127.0.0.1", 5060))
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(lines[0].split()[1]), headers, body, close


@pytest.mark.parametrize("split", [None, 1, 7])
def test_pipelined_requests_come_out_whole_and_in_order_whatever_the_split(split):
    _, done = read_all(PUT + GET + PUT, split=split)
    assert [r.method for r in done] == ["PUT", "GET", "PUT"]
    assert [b"".join(r.body) for r in done] == [b"hello", b"", b"hello"]
    assert done[1].target == b"/p%20q?x=%41"


def test_the_environ_is_what_waitress_builds():
    site = Site(echo_app, "example.com", 8080, "xcap-wsgi")
    _, (request,) = read_all(b"GET //a/%2Fb%41?q=%41 HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nX-Two: 2\r\n"
                             b"X_Remote_User: alice\r\nContent-Type: text/xml\r\n\r\n")
    env = site.environ(request, ("10.0.0.1", 4000))
    assert env["PATH_INFO"] == "/a//bA"  # decoded once, leading slashes collapsed
    assert env["QUERY_STRING"] == "q=%41" and env["REQUEST_URI"] == "//a/%2Fb%41?q=%41"
    assert env["HTTP_X_TWO"] == "1, 2" and env["CONTENT_TYPE"] == "text/xml"
    assert "HTTP_X_REMOTE_USER" not in env  # underscore spellings never reach the application
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"], env["SERVER_PORT"]) == ("10.0.0.1", "4000", "8080")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["SCRIPT_NAME"] == ""


def test_an_absolute_form_target_reaches_the_application_as_its_path():
    site = Site(echo_app, "h", 80, "x")
    _, (request,) = read_all(b"GET http://h:80/xcap-root/a%40b?z HTTP/1.1\r\nHost: h\r\n\r\n")
    env = site.environ(request, None)
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/xcap-root/a@b", "z")


def test_a_chunked_body_is_joined_and_announced_as_a_length():
    data = (b"PUT /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    _, (request,) = read_all(data, split=3)
    status, headers, body, close = answer(Site(echo_app, "h", 80, "x"), request)
    assert (status, body, headers["x-length"], close) == (200, b"PUT /d abcde", "5", False)


@pytest.mark.parametrize("data, status", [
    (b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost h\r\n\r\n", 400),
    (b"GET /a\x00 HTTP/1.1\r\n\r\n", 400),
    (b"BREW / HTTP/1.1\r\n\r\n", 501),
    (b"get / HTTP/1.1\r\n\r\n", 501),  # methods are case-sensitive (RFC 9110 section 9.1)
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 section 3.2)
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (b"GARBAGE\r\n\r\n", 400),
])
def test_what_llhttp_refuses_is_answered_and_ends_the_connection(data, status):
    reader, done = read_all(data + GET)
    assert len(done) == 1 and done[0].error is not None  # the GET after it is never read
    code, headers, _, close = answer(Site(echo_app, "h", 80, "x"), done[0])
    assert (code, close, headers["connection"]) == (status, True, "close")
    assert reader.feed(GET) == []


def test_a_body_over_the_limit_is_413_from_the_head_or_while_chunks_arrive():
    limits = Limits(max_body_size=4)
    _, (by_length,) = read_all(PUT, limits=limits)
    assert by_length.error[0].startswith("413")
    chunked = b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
    _, (by_chunks,) = read_all(chunked, split=5, limits=limits)
    assert by_chunks.error[0].startswith("413")


def test_a_head_over_the_limit_is_431_before_it_is_complete():
    reader = RequestReader(Limits())
    assert reader.feed(b"GET / HTTP/1.1\r\nX-Big: ") == []
    done = reader.feed(b"a" * (MAX_HEAD_BYTES + 1))
    assert done[0].error[0].startswith("431")


def test_empty_lines_before_a_request_are_ignored_but_not_for_ever():
    _, (request,) = read_all(b"\r\n\r\n" + GET)
    assert request.error is None and request.method == "GET"
    reader = RequestReader(Limits())
    done = []
    for _ in range(100):
        done += reader.feed(b"\r\n")
    assert done and done[0].error[0].startswith("400")


def test_a_body_without_credentials_is_withheld_and_the_request_handed_over_at_once():
    limits = Limits(withhold_unauthenticated_bodies=True)
    reader = RequestReader(limits)
    (request,) = reader.feed(PUT[:-2])  # the head and 3 of the 5 body bytes
    assert request.withheld and request.close and reader.discard_after == 3
    env = Site(echo_app, "h", 80, "x").environ(request, None)
    assert env["CONTENT_LENGTH"] == "0" and env["wsgi.input"].read() == b""
    assert reader.feed(b"lo" + GET) == []  # the rest is never read as a request
    authorized = PUT.replace(b"Host: h", b"Host: h\r\nAuthorization: Digest x")
    (request,) = RequestReader(limits).feed(authorized)
    assert not request.withheld and request.body == [b"hello"]


def test_expect_100_continue_is_due_only_while_the_body_is_awaited():
    reader = RequestReader(Limits())
    head = PUT[:-5].replace(b"Host: h", b"Host: h\r\nExpect: 100-continue")
    assert reader.feed(head) == [] and reader.continue_due
    (request,) = reader.feed(b"hello")
    assert not reader.continue_due and request.body == [b"hello"]


def test_http_1_0_keeps_the_connection_only_when_asked():
    site = Site(echo_app, "h", 80, "x")
    _, (plain,) = read_all(b"GET / HTTP/1.0\r\n\r\n")
    assert answer(site, plain)[3] is True
    _, (kept,) = read_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, _, close = answer(site, kept)
    assert (close, headers["connection"]) == (False, "Keep-Alive")


def test_answers_carry_length_date_and_server_and_head_has_no_body():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5"), ("ETag", '"e"')])
        return [b"" if environ["REQUEST_METHOD"] == "HEAD" else b"hello"]

    site = Site(app, "h", 80, "xcap-wsgi")
    _, (get, head) = read_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nHEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body, close = answer(site, get)
    assert (status, body, headers["content-length"], close) == (200, b"hello", "5", False)
    assert headers["server"] == "xcap-wsgi"
    assert headers["date"].endswith(" GMT")
    status, headers, body, _ = answer(site, head)
    assert (status, body, headers["content-length"]) == (200, b"", "5")


def test_304_has_no_body_and_keeps_the_connection():
    def app(environ, start_response):
        start_response("304 Not Modified", [("ETag", '"e"'), ("Content-Length", "9")])
        return [b"ignored!!"]

    _, (request,) = read_all(GET)
    status, headers, body, close = answer(Site(app, "h", 80, "x"), request)
    assert (status, body, close, "content-length" in headers) == (304, b"", False, False)


@pytest.mark.parametrize("app_headers, app_body, close, sent", [
    ([("Content-Length", "10")], [b"short"], True, b"short"),  # the client would wait for 5 more
    ([("Content-Length", "2")], [b"toolong"], True, b"to"),  # the rest would be a bogus answer
    ([], [b"a", b"bc"], False, b"abc"),  # no length given: the server counts
])
def test_a_wrong_content_length_from_the_application_ends_the_connection(app_headers, app_body, close, sent):
    def app(environ, start_response):
        start_response("200 OK", list(app_headers))
        return app_body

    _, (request,) = read_all(GET)
    status, headers, body, closed = answer(Site(app, "h", 80, "x"), request)
    assert (body, closed, headers["content-length"]) == (sent, close, app_headers[0][1] if app_headers else "3")


@pytest.mark.parametrize("fault", ["raise", "hop-by-hop", "crlf", "no start_response"])
def test_an_application_fault_is_a_500_that_closes(fault):
    closed = []

    class Body(list):
        def close(self):
            closed.append(True)

    def app(environ, start_response):
        if fault == "raise":
            raise RuntimeError("boom")
        if fault == "hop-by-hop":
            start_response("200 OK", [("Connection", "keep-alive")])
        if fault == "crlf":
            start_response("200 OK", [("X-A", "a\r\nSet-Cookie: x")])
        return Body([b"x"])

    _, (request,) = read_all(GET)
    status, headers, body, close = answer(Site(app, "h", 80, "xcap-wsgi"), request)
    assert (status, close) == (500, True)
    assert b"Set-Cookie" not in body and b"boom" not in body
    assert closed == ([] if fault in ("raise", "hop-by-hop", "crlf") else [True])
