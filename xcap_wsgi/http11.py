"""HTTP/1.1 for serve's connection core: requests framed by ``httptools`` (llhttp, the parser of
Node.js and uvicorn) and WSGI answers written out, with the limits of ``xcap_wsgi.httpserver``.

waitress' pure-Python parser and WSGI task cost serve about 80 us of CPU per request on this
project's 2-core machine, a fifth of an element PUT (docs/benchmarks.md); this module does the
same work in about 15. llhttp refuses what request smuggling and sloppy clients rely on (a
Content-Length beside chunked, two Content-Lengths, obsolete line folding, bare CR or LF, bad
chunk sizes, control characters); what it lets through is framed as waitress frames it:

* header names holding ``_`` are dropped (``X_Remote_User`` must not pose as ``X-Remote-User``),
  repeated headers are joined with ``", "``, and a chunked body reaches the application with its
  ``CONTENT_LENGTH`` and without ``Transfer-Encoding``;
* ``PATH_INFO`` is the target's path percent-decoded once (latin-1 code points, PEP 3333) with
  leading slashes collapsed to one; ``REQUEST_URI`` is the target as sent;
* a head above ``MAX_HEAD_BYTES`` gets 431, a body above ``max_body_size`` 413 (from the head
  when ``Content-Length`` says so), an unknown method 501, a version other than 1.0/1.1 505;
* with ``withhold_unauthenticated_bodies``, a request that announces a body without
  ``Authorization`` is handed over at once without it (the Digest middleware answers 401), and
  the connection closes after the answer; the body is never stored.
"""

from __future__ import annotations

import email.utils
import io
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import httptools

from .httpserver import Limits

log = logging.getLogger("xcap_wsgi.httpserver")

#: Bytes a request line and header fields may take together (waitress' default, 256 KiB).
MAX_HEAD_BYTES = 262144
#: Empty lines tolerated before a request line (RFC 9112 section 2.2 asks for at least one).
MAX_BLANK_BYTES = 64
#: Response headers a WSGI application may not set (PEP 3333; the server owns the connection).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                         "trailers", "transfer-encoding", "upgrade"})
_NO_BODY_STATUS = ("1", "204", "304")
#: Request headers the framing decides on (lower case).
_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding", b"authorization", b"expect"})
#: A request line of RFC 9112 section 3 (method token, target, version).
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r\n")


class Request:
    """One request as read off a connection: head, body, and what the answer must respect."""

    __slots__ = ("method", "target", "version", "headers", "body", "body_size", "chunked",
                 "content_length", "withheld", "error", "close")

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.chunked = False
        self.content_length: int | None = None
        self.withheld = False
        self.error: tuple[str, str] | None = None  # (status line, explanation): answered by the server
        self.close = False  # the connection ends after this request's answer


class _Stop(Exception):
    """Raised in a parser callback: stop parsing this connection's input."""


class RequestReader:
    """The requests of one connection, fed its bytes as they arrive (``feed``)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.current: Request | None = None
        self.done: list[Request] = []
        self.headers_finished = False
        self.started = 0.0  # time.time() of the first byte of the request in progress
        self.continue_due = False  # the request in progress asked for 100 Continue
        self.broken = False  # no more requests on this connection
        self.head_bytes = 0  # bytes received while a head is incomplete (bounds what is buffered)
        self.head_size = 0  # the request line's target and header fields of the request in progress
        self.blank_bytes = 0
        self.discard_after = 0  # bytes of a withheld body received with its head (dropped)

    @property
    def in_progress(self) -> bool:
        return self.current is not None

    def feed(self, data: bytes) -> list[Request]:
        """Parse ``data``; return the requests it completes, in order (the last may be an error)."""
        if self.broken:
            return []
        in_head = self.current is None or not self.headers_finished
        if in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade/CONNECT: answered as a plain request (XCAP upgrades nothing), then closed;
            # llhttp reads nothing after it.
            self.broken = True
            if self.done:
                self.done[-1].close = True
        except httptools.HttpParserInvalidMethodError:
            # a well-formed request line with a method llhttp does not know is 501 (RFC 9110
            # section 9.1); anything else (one word, a bare CR, a TLS hello) is 400
            known_shape = _REQUEST_LINE.match(data.lstrip(b"\r\n")) is not None
            self._fail("501 Not Implemented" if known_shape else "400 Bad Request", "unknown request method")
        except httptools.HttpParserInvalidURLError:
            self._fail("400 Bad Request", "malformed request target")
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                raise
        except httptools.HttpParserError as exc:
            self._fail("400 Bad Request", str(exc))
        else:
            if self.current is None and not self.broken and data.strip(b"\r\n") == b"":
                self.blank_bytes += len(data)
                if self.blank_bytes > MAX_BLANK_BYTES:
                    self._fail("400 Bad Request", "empty lines instead of a request")
            elif self.current is not None and not self.headers_finished and self.head_bytes > MAX_HEAD_BYTES:
                self._fail("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
        if self.broken and self.current is not None:
            self.current = None  # the request in progress is dropped with its connection
        done, self.done = self.done, []
        return done

    def _fail(self, status: str, why: str) -> None:
        """The input cannot be read on: answer ``status`` and close."""
        request = self.current or Request()
        request.error = (status, why)
        request.close = True
        self.current = None
        self.done.append(request)
        self.broken = True
        self.continue_due = False

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.broken:
            raise _Stop
        self.current = Request()
        self.headers_finished = False
        self.started = time.time()
        self.blank_bytes = 0
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        self.current.target += url  # type: ignore[union-attr]
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name, value))  # type: ignore[union-attr]
        self.head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        request = self.current
        assert request is not None
        self.headers_finished = True
        self.head_bytes = 0
        parser = self.parser
        request.method = parser.get_method().decode("ascii")
        request.version = parser.get_http_version()
        request.close = not parser.should_keep_alive()
        if request.version not in ("1.0", "1.1"):
            self._fail("505 HTTP Version Not Supported", f"HTTP/{request.version}")
            raise _Stop
        if self.head_size > MAX_HEAD_BYTES:
            self._fail("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
            raise _Stop
        fields: dict[bytes, list[bytes]] = {}  # the framing headers, looked at in one pass
        for name, value in request.headers:
            name = name.lower()
            if name in _FRAMING:
                fields.setdefault(name, []).append(value)
        if request.version == "1.1" and len(fields.get(b"host", ())) != 1:  # RFC 9112 section 3.2: MUST be 400
            self._fail("400 Bad Request", "an HTTP/1.1 request needs exactly one Host header")
            raise _Stop
        length = fields.get(b"content-length")
        request.content_length = int(length[0]) if length else None  # llhttp checked the digits
        codings = [coding.strip(b" \t").lower() for value in fields.get(b"transfer-encoding", ())
                   for coding in value.split(b",") if coding.strip(b" \t")]
        if codings:
            if codings != [b"chunked"]:  # as waitress: chunked is the only coding taken (RFC 9112 section 6.1)
                self._fail("501 Not Implemented", "Transfer-Encoding other than chunked")
                raise _Stop
            request.chunked = True
            if request.version == "1.0":
                request.close = True  # RFC 9112 section 6.1: MUST close after a 1.0 request with it
        announced = request.chunked or bool(request.content_length)
        limits = self.limits
        credentials = fields.get(b"authorization", [b""])[0].strip()
        if announced and limits.withhold_unauthenticated_bodies and not credentials:
            request.withheld = True
            request.close = True
            self.done.append(request)
            self.broken = True  # what follows is the withheld body: never read as requests
            self.discard_after = 0
            return
        if request.content_length is not None and request.content_length > limits.max_body_size:
            self._fail("413 Request Entity Too Large", f"body over {limits.max_body_size} bytes")
            raise _Stop
        if announced and request.version == "1.1":
            expect = fields.get(b"expect")
            self.continue_due = expect is not None and expect[0].strip().lower() == b"100-continue"

    def on_body(self, body: bytes) -> None:
        request = self.current
        assert request is not None
        if request.withheld:
            self.discard_after += len(body)
            return
        request.body_size += len(body)
        if request.body_size > self.limits.max_body_size:
            self._fail("413 Request Entity Too Large", f"body over {self.limits.max_body_size} bytes")
            raise _Stop
        request.body.append(body)

    def on_message_complete(self) -> None:
        request = self.current
        assert request is not None
        self.current = None
        self.continue_due = False
        if request.withheld:
            self.discard_after = -1  # the whole body came: nothing left to drop
            raise _Stop
        self.done.append(request)
        if request.close:
            self.broken = True


# -- the WSGI side ---------------------------------------------------------------------------------

_date_cache: tuple[int, str] = (0, "")


def http_date(now: float) -> str:
    """IMF-fixdate of ``now``, computed once a second."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.formatdate(second, usegmt=True))
    return _date_cache[1]


class Site:
    """What every request's environ shares: the application, the server's name and port."""

    def __init__(self, application: Callable, server_name: str, port: int, ident: str, url_scheme: str = "http"):
        self.application = application
        self.ident = ident
        self.base: dict[str, Any] = {
            "SERVER_NAME": server_name, "SERVER_PORT": str(port), "SERVER_SOFTWARE": ident,
            "SCRIPT_NAME": "", "wsgi.url_scheme": url_scheme, "wsgi.version": (1, 0), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }

    def environ(self, request: Request, addr: Any) -> dict[str, Any]:
        """The WSGI environ of ``request`` from the client at ``addr``."""
        target = request.target
        if target[:1] == b"/":  # origin form; "//x" too is a path, not a network location (as waitress)
            path, _, query = target.partition(b"#")[0].partition(b"?")
        else:  # absolute form (http://host/path) or "*"
            parts = urlsplit(target)
            path, query = parts.path, parts.query
        path_info = unquote_to_bytes(path).decode("latin-1") if b"%" in path else path.decode("latin-1")
        if path_info.startswith("//"):
            path_info = "/" + path_info.lstrip("/")
        environ = self.base.copy()
        environ["REQUEST_METHOD"] = request.method
        environ["SERVER_PROTOCOL"] = "HTTP/" + request.version
        environ["PATH_INFO"] = path_info
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["REQUEST_URI"] = target.decode("latin-1")
        if addr:
            environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = addr[0]
            environ["REMOTE_PORT"] = str(addr[1])
        for name, value in request.headers:
            if b"_" in name:
                continue  # as waitress: an underscore spelling must not pose as a dash spelling
            key = name.decode("latin-1").upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            text = value.decode("latin-1")
            environ[key] = environ[key] + ", " + text if key in environ else text
        if request.chunked:
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = str(request.body_size)
        if request.withheld:
            environ["CONTENT_LENGTH"] = "0"
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input"] = io.BytesIO()
        else:
            body = request.body
            environ["wsgi.input"] = io.BytesIO(body[0] if len(body) == 1 else b"".join(body))
        return environ

    def answer(self, request: Request, addr: Any) -> tuple[bytes, bool]:
        """Run the application for ``request``: the answer's bytes, and whether to close after it."""
        if request.error is not None:
            return self.error_answer(request, *request.error), True
        try:
            return self._run(request, self.environ(request, addr))
        except Exception:  # noqa: BLE001 - the client gets a 500, the log the traceback
            log.exception("Exception while serving %s", request.target.decode("latin-1"))
            return self.error_answer(request, "500 Internal Server Error",
                                     "The server encountered an unexpected internal server error"), True

    def _run(self, request: Request, environ: dict[str, Any]) -> tuple[bytes, bool]:
        started: list[Any] = []  # [status, headers] once start_response is called
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            if started and not exc_info:
                raise AssertionError("start_response called a second time without exc_info")
            exc_info = None  # nothing is sent before the application returns: headers may change
            _check_status(status)
            for name, value in headers:
                _check_header(name, value)
            started[:] = [status, list(headers)]
            return written.append

        chunks = self.application(environ, start_response)
        try:
            written.extend(chunk for chunk in chunks if chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not started:
            raise AssertionError("the application returned without calling start_response")
        status, headers = started
        body = written[0] if len(written) == 1 else b"".join(written)
        return self._head(request, status, headers, body)

    def _head(self, request: Request, status: str, headers: list[tuple[str, str]], body: bytes) -> tuple[bytes, bool]:
        """The status line and header block for an answer of ``body``; (answer bytes, close)."""
        close = request.close
        has_body = not status.startswith(_NO_BODY_STATUS)
        length: str | None = None
        lines = [f"HTTP/{request.version} {status}\r\n"]
        date = server = False
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                if not has_body:
                    continue
                length = value
            elif lower == "date":
                date = True
            elif lower == "server":
                server = True
            lines.append(f"{name}: {value}\r\n")
        if not has_body:
            body = b""
        elif request.method == "HEAD":
            body = b""  # the application's Content-Length says what a GET would send
        elif length is None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif int(length) != len(body):
            # too few bytes: the client would wait for the rest; too many: they would be read as
            # the next answer. Send what was declared, at most, and end the connection.
            log.warning("application sent %d bytes for a Content-Length of %s", len(body), length)
            body = body[:int(length)]
            close = True
        if request.version == "1.0" and not close:
            if length is None and (not has_body or request.method == "HEAD"):
                close = True  # as waitress: an HTTP/1.0 answer keeps the connection only with a length
            else:
                lines.append("Connection: Keep-Alive\r\n")
        if close:
            lines.append("Connection: close\r\n")
        lines.append(f"Via: {self.ident}\r\n" if server else f"Server: {self.ident}\r\n")
        if not date:
            lines.append(f"Date: {http_date(time.time())}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + body, close

    def error_answer(self, request: Request, status: str, why: str) -> bytes:
        """A plain-text answer the server gives itself (waitress' shape), closing the connection."""
        reason = status.split(" ", 1)[1]
        body = f"{reason}\r\n\r\n{why}\r\n\r\n(generated by {self.ident})".encode("utf-8", "replace")
        version = request.version if request.version in ("1.0", "1.1") else "1.1"
        return (f"HTTP/{version} {status}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\nDate: {http_date(time.time())}\r\n"
                f"Server: {self.ident}\r\n\r\n").encode("latin-1") + body


def _check_status(status: Any) -> None:
    if not isinstance(status, str):
        raise AssertionError(f"status {status!r} is not a string")
    if "\r" in status or "\n" in status or len(status) < 3 or not status[:3].isdigit():
        raise ValueError(f"invalid status line {status!r}")


def _check_header(name: Any, value: Any) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise AssertionError(f"header {(name, value)!r} is not a pair of strings")
    if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
        raise ValueError(f"CR, LF or colon in header {(name, value)!r}")
    if name.lower() in _HOP_BY_HOP:
        raise AssertionError(f"{name} is a hop-by-hop header; a WSGI application cannot set it (PEP 3333)")
