"""The limits of ``xcap-wsgi serve`` for a server that faces phones (``Limits``), and the server
that carries them on waitress' own loop, parser and WSGI task (``create_server``) where Linux'
epoll is missing; on Linux ``xcap_wsgi.httpcore`` carries the same limits with its own framing
(``xcap_wsgi.http11``).

waitress alone keeps 100 connections per process, drops silent ones only after 120 s, has no
time limit on a request head or body, uses ``select()`` (which breaks above file descriptor
1024) and reads every request body whole before the application sees the request. Here:

* a connection limit of thousands per process, and the soft ``RLIMIT_NOFILE`` raised to the
  hard limit (the connection limit is lowered to what the descriptors allow). An idle
  connection costs about 2.6 kB of the process' memory (measured with 3,000);
* **idle timeout**: a keep-alive connection with no request in progress is closed after
  ``idle_timeout`` seconds of silence;
* **header timeout**: a request head must be complete ``header_timeout`` seconds after its first
  byte (slowloris), else ``408`` and close;
* **body timeout**: a request body that stops arriving for ``body_timeout`` seconds: ``408``
  and close;
* **size before reading**: a ``Content-Length`` above ``max_body_size`` is answered ``413``
  from the head (waitress' ``max_request_body_size``);
* **no body before authentication** (``withhold_unauthenticated_bodies``, set when Digest is
  required): a request that announces a body but carries no ``Authorization`` header is handed
  to the application at once *without* its body, and the connection is closed after the
  answer (the Digest middleware answers 401 with its challenges). Up to ``max_body_size``
  bytes of the unread body are read and dropped after the answer (never stored), so that a
  client that sends its body without waiting (urllib, requests) reads the 401 instead of a
  connection reset; a bigger announced body is not waited for;
* **bare CR or LF** in a request head (RFC 9112 §2.2) is ``400`` at once; waitress would treat
  ``\\r\\r\\r\\n\\r\\n`` as blank lines and then wait for ever;
* HTTP/1.1 connections stay open after bodiless answers (``KeepAliveTask``).

Where epoll is missing, ``create_server`` runs the same on waitress' main loop with
``XCAPChannel`` connections.
"""

from __future__ import annotations

import functools
import logging
import re
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask
from waitress.utilities import BadRequest, RequestEntityTooLarge

from .settings import DEFAULTS, Settings

log = logging.getLogger("xcap_wsgi.httpserver")

#: Connections accepted per readiness event of the listening socket.
ACCEPT_BATCH = 64
#: Descriptors kept for everything but client connections (database, log files, temp files).
FD_RESERVE = 64
#: After a 408, what a connection may still send (bytes, seconds) before it is closed anyway.
_TIMEOUT_LINGER_BYTES, _TIMEOUT_LINGER_SECONDS = 64 * 1024, 2.0
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n"
                     b"Content-Type: text/plain\r\n\r\n")
#: A CR not followed by LF, or an LF not preceded by CR.
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@dataclass(frozen=True)
class Limits:
    """The connection limits of one server process (see the module docstring)."""

    connection_limit: int = DEFAULTS.connection_limit
    idle_timeout: float = DEFAULTS.idle_timeout
    header_timeout: float = DEFAULTS.header_timeout
    body_timeout: float = DEFAULTS.body_timeout
    max_body_size: int = DEFAULTS.max_body_size
    withhold_unauthenticated_bodies: bool = False


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %s to %s: %s", soft, target, exc)
    return soft


def effective_connection_limit(wanted: int, open_files: int) -> int:
    """``wanted``, lowered to what ``open_files`` descriptors allow (with a reserve)."""
    allowed = max(open_files - FD_RESERVE, 16)
    if wanted > allowed:
        log.warning("connection_limit %d lowered to %d: the open files limit is %d (raise it with "
                    "ulimit -n or LimitNOFILE=)", wanted, allowed, open_files)
        return allowed
    return wanted


class BodyDiscarder(Protocol):
    """The connection a withheld body's rest is dropped on (``XCAPChannel``, httpcore's ``Connection``)."""

    def start_discarding(self, announced: int | None, already: int) -> None: ...


class XCAPRequestParser(HTTPRequestParser):
    """waitress' parser plus the bare-CR check and withholding of unauthenticated bodies."""

    body_withheld = False
    # waitress' own attributes this class reads and sets (waitress has no type information)
    completed: bool
    body_rcv: Any

    def __init__(self, adj: Adjustments, *, limits: Limits, channel: BodyDiscarder | None = None):
        super().__init__(adj)
        self.limits = limits
        self.channel = channel
        self.started = time.time()  # first byte of this request

    def received(self, data: bytes) -> int:
        if self.completed:
            return 0
        if self.body_rcv is None and not self.headers_finished and self._bare_cr_or_lf(data):
            self.parse_header(b"GET / HTTP/1.0\r\n")  # what waitress' error task needs to answer
            self.error = BadRequest("bare CR or LF in the request head (RFC 9112 section 2.2)")
            self.completed = True
            return len(data)
        in_head = not self.headers_finished
        consumed = super().received(data)
        if in_head and self.headers_finished and self._withhold():
            if self.channel is not None:
                self.channel.start_discarding(self._announced_body(), len(data) - consumed)
            return len(data)  # body bytes of this chunk are dropped, never parsed as a request
        return consumed

    def _bare_cr_or_lf(self, data: bytes) -> bool:
        """True when the head seen so far (up to its end) holds a CR or LF outside a CRLF."""
        previous = self.header_plus
        start = len(previous) - 1 if previous.endswith(b"\r") else len(previous)
        head = previous + data
        end = head.find(b"\r\n\r\n", max(0, len(previous) - 3))
        if end >= 0:
            scan = head[start:end + 4]
        else:
            scan = head[start:-1] if head.endswith(b"\r") else head[start:]  # a CR may meet its LF next
        return _BARE_CR_OR_LF.search(scan) is not None

    def _withhold(self) -> bool:
        """Hand an unauthenticated request to the app without its body (see the module docstring)."""
        too_large = isinstance(self.error, RequestEntityTooLarge)
        if not self.limits.withhold_unauthenticated_bodies or (self.error is not None and not too_large):
            return False
        if self.body_rcv is None and not too_large:
            return False  # no body announced
        if self.headers.get("AUTHORIZATION", "").strip():
            return False
        self.error = None
        if self.body_rcv is not None:
            self.body_rcv.getbuf().close()
            self.body_rcv = None
        self.body_withheld = True
        self.completed = True
        self.expect_continue = False  # no 100 Continue: the body is not wanted
        self.connection_close = True
        self.headers["CONNECTION"] = "close"  # waitress adds Connection: close and closes after the answer
        self.headers["CONTENT_LENGTH"] = "0"  # what the application receives
        self.headers.pop("TRANSFER_ENCODING", None)
        return True

    def _announced_body(self) -> int | None:
        """Bytes of the withheld body still to come; None for a chunked body (length unknown)."""
        return None if self.chunked else self.content_length


class KeepAliveTask(WSGITask):
    """A waitress task that keeps HTTP/1.1 connections open after bodiless responses.

    waitress 3.0.2 closes the connection after every response without a body (1xx, 204, 304): it
    keeps an HTTP/1.1 connection only when the response has a Content-Length, and it rightly never
    sends one on those statuses. Such a response ends at its blank line (RFC 9112 §6.3, rule 1), so
    nothing requires the close; XCAP clients that revalidate with ``If-None-Match`` get a 304 on
    nearly every poll and would pay a new TCP (and TLS) handshake for each.
    """

    close_on_finish: bool  # waitress' (waitress has no type information)

    def build_response_header(self):
        if self.has_body or self.version != "1.1" or self.close_on_finish:
            return super().build_response_header()
        client_closes = self.request.headers.get("CONNECTION", "").lower() == "close"
        # waitress closes a 1.1 response without Content-Length only when close_on_finish is not
        # already set: set it so that step is skipped, then put back what is really wanted.
        self.close_on_finish = True
        try:
            return super().build_response_header()
        finally:
            self.close_on_finish = client_closes  # if so, waitress has added "Connection: close"


class XCAPChannel(HTTPChannel):
    """A waitress connection that enforces the idle, header and body timeouts and keeps
    HTTP/1.1 connections open after bodiless responses (``KeepAliveTask``)."""

    task_class = KeepAliveTask

    served_at = 0.0  # when the last request of this connection was answered
    discard_left = 0  # bytes of a withheld body to read and drop after the answer
    lingering = False  # the answer is sent and the write side shut: dropping the rest of a body
    linger_until = float("inf")  # a timed-out connection lingers this long at most

    def __init__(self, server, sock, addr, adj, map=None):
        self.limits: Limits = server.limits
        self.parser_class = functools.partial(XCAPRequestParser, limits=self.limits, channel=self)
        super().__init__(server, sock, addr, adj, map=map)

    # -- withheld bodies ------------------------------------------------------------------------

    def start_discarding(self, announced: int | None, already: int) -> None:
        """A withheld body of ``announced`` bytes (None: chunked) of which ``already`` were read."""
        left = self.limits.max_body_size if announced is None else announced - already
        self.discard_left = left if left <= self.limits.max_body_size else 0  # too big: do not wait

    def handle_close(self):
        if not self.lingering and self.connected and self.discard_left > 0 and not self.requests:
            # The answer to a withheld request is out: shut our side and drop the body the
            # client may still be sending, so that it reads the answer, not a reset.
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                return super().handle_close()
            self.lingering = True
            self.will_close = self.close_when_flushed = False
            self.last_activity = time.time()
            return None
        return super().handle_close()

    def readable(self):
        return True if self.lingering else super().readable()

    def writable(self):
        return self.will_close if self.lingering else super().writable()

    def handle_read(self):
        if not self.lingering:
            return super().handle_read()
        try:
            data = self.recv(self.adj.recv_bytes)  # b"" at EOF (wasyncore closes the channel)
        except OSError:
            return super().handle_close()
        if data:
            self.last_activity = time.time()
            self.discard_left -= len(data)
            if self.discard_left <= 0:
                super().handle_close()
        return None

    def received(self, data):
        if self.lingering:
            return False
        return super().received(data)

    def service(self):
        super().service()
        self.served_at = time.time()

    # -- timeouts ---------------------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Called about once a second from the server's main loop (never from a task thread)."""
        limits = self.limits
        if self.will_close:
            return
        if self.lingering:
            if now - self.last_activity > limits.body_timeout or now > self.linger_until:
                self.will_close = True
            return
        if self.requests or self.close_when_flushed:
            return  # being answered
        request = self.request
        if request is None:
            if now - self.last_activity > limits.idle_timeout:
                self.will_close = True
        elif not request.headers_finished:
            if now - max(request.started, self.served_at) > limits.header_timeout:
                self._time_out("request head")
        elif now - self.last_activity > limits.body_timeout:
            self._time_out("request body")

    def _time_out(self, what: str) -> None:
        log.info("closing the connection from %s: %s not complete in time", self.addr[0] if self.addr else "?",
                 what)
        try:
            self.socket.send(_TIMEOUT_RESPONSE)  # best effort (RFC 9110 408); the socket is non-blocking
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.will_close = True
            return
        # Closing with unread input would send a reset that can overtake the 408 in the client's
        # receive buffer: read and drop what it still sends for a moment (as for withheld bodies).
        self.lingering = True
        self.discard_left = _TIMEOUT_LINGER_BYTES
        self.linger_until = time.time() + _TIMEOUT_LINGER_SECONDS


class XCAPServer(TcpWSGIServer):
    """waitress' TCP server with ``XCAPChannel`` connections and the timeout sweep."""

    channel_class = XCAPChannel

    def __init__(self, application, map=None, *, limits: Limits, **kw):
        self.limits = limits
        super().__init__(application, map, **kw)

    def maintenance(self, now):
        for channel in list(self.active_channels.values()):
            channel.check_timeouts(now)

    def handle_accept(self):
        """Accept up to ``ACCEPT_BATCH`` waiting connections (waitress takes one per iteration)."""
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit:
                return
            try:
                accepted = self.accept()
            except OSError:
                if self.adj.log_socket_errors:
                    self.logger.warning("server accept() threw an exception", exc_info=True)
                return
            if accepted is None:
                return
            conn, addr = accepted
            try:
                self.set_socket_options(conn)
            except OSError:
                conn.close()
                continue
            self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)


def adjustments(limits: Limits, sockets: list[socket.socket] | None = None, **options) -> Adjustments:
    """waitress' ``Adjustments`` for ``options`` with ``limits`` in force."""
    options.update(
        asyncore_use_poll=True,  # select() fails above fd 1024
        connection_limit=limits.connection_limit,
        channel_timeout=limits.idle_timeout,  # unused by XCAPServer.maintenance; kept consistent
        cleanup_interval=1,  # the timeout sweep runs once a second
        max_request_body_size=limits.max_body_size + 1,  # waitress refuses at >= this value
    )
    if sockets:
        options["sockets"] = sockets
    return Adjustments(**options)


def create_server(app, *, limits: Limits, sockets: list[socket.socket] | None = None, **options):
    """A waitress server for ``app`` with ``limits`` (mirrors ``waitress.create_server`` for TCP);
    serve's loop where Linux' epoll is missing (``xcap_wsgi.httpcore`` otherwise)."""
    adj = adjustments(limits, sockets, **options)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    map: dict = {}
    servers = []
    if adj.sockets:
        for sock in adj.sockets:
            servers.append(XCAPServer(app, map, limits=limits, _sock=sock, dispatcher=dispatcher,
                                      adj=adj, bind_socket=False,
                                      sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname())))
    else:
        for sockinfo in adj.listen:
            servers.append(XCAPServer(app, map, limits=limits, dispatcher=dispatcher, adj=adj,
                                      sockinfo=sockinfo))
    if len(servers) == 1:
        return servers[0]
    listen = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(map, adj, listen, dispatcher, servers[-1].log_info)


def limits_from_settings(settings: Settings) -> Limits:
    """``Limits`` from ``settings``: Digest required (not anonymous, no trusted identity header)
    means request bodies are withheld from requests without ``Authorization``."""
    return Limits(
        connection_limit=settings.connection_limit,
        idle_timeout=settings.idle_timeout,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_body_size=settings.max_body_size,
        withhold_unauthenticated_bodies=not settings.anonymous and not settings.identity_header,
    )
