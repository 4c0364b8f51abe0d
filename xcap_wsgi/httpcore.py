"""serve's connection core on Linux: threads that take turns on one ``epoll`` (leader/follower).

waitress hands every request from its I/O thread to a task thread and the answer back again (a
condition variable, a trigger pipe, the interpreter lock changing hands twice): about 400 us of
CPU per request on a trivial application, more than xcap-wsgi's own work on a document GET
(docs/benchmarks.md). Here every one of ``threads`` threads waits on the same ``epoll``
instance, and connections are registered ``EPOLLONESHOT``: the thread that receives a
connection's event owns the connection alone until it re-arms it. It reads, frames the requests
(``xcap_wsgi.http11``: llhttp through ``httptools``), runs the application, sends the answer and
re-arms: one wake-up per request and no hand-over.

The limits of ``xcap_wsgi.httpserver`` hold as before: the connection limit (the listening
sockets are not re-armed while it is reached), idle/header/body timeouts with ``408`` (a
sweeper thread, once a second), bodies withheld from unauthenticated requests, 413 from the head,
400 for a bare CR or LF. An answer the client does not read at once waits in the connection
(``EPOLLOUT``) instead of holding a thread.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from typing import Any

from waitress.adjustments import Adjustments

from .http11 import Request, RequestReader, Site
from .httpserver import (
    _TIMEOUT_LINGER_BYTES,
    _TIMEOUT_LINGER_SECONDS,
    ACCEPT_BATCH,
    Limits,
    adjustments,
    create_server,
    effective_connection_limit,
    raise_open_files_limit,
)

log = logging.getLogger("xcap_wsgi.httpserver")

_IN = select.EPOLLIN | select.EPOLLONESHOT
_OUT = select.EPOLLOUT | select.EPOLLONESHOT
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Set (by a worker's SIGTERM handler, xcap_wsgi.server) to end ``Core.run`` within a second.
stop_requested = threading.Event()
#: Seconds a waiting thread sleeps at most before it looks whether the server stops.
_POLL_SECONDS = 1.0


class Connection:
    """One client connection: its requests (``http11.RequestReader``) and its answer in flight."""

    def __init__(self, core: Core, sock: socket.socket, addr: Any):
        self.core = core
        self.sock = sock
        self.fd = sock.fileno()
        self.addr = addr
        self.lock = threading.Lock()  # guards owned/closed and the re-arming
        self.owned = False
        self.closed = False
        self.reader = RequestReader(core.limits)
        self.waiting: deque[Request] = deque()  # read, not yet answered (an answer is pending)
        self.pending = b""  # answer bytes the client has not taken yet
        self.close_after_send = False
        self.last_activity = time.monotonic()
        self.discard_left = 0  # bytes of a withheld body still to read and drop
        self.lingering = False  # our side is shut: dropping what the client still sends
        self.linger_until = float("inf")

    def start_discarding(self, request: Request, already: int) -> None:
        """After a withheld ``request``'s answer: drop what is left of its body (``already`` bytes
        of it came with the head; -1: all of it)."""
        limit = self.core.limits.max_body_size
        if already < 0:
            self.discard_left = 0
            return
        left = limit if request.chunked else (request.content_length or 0) - already
        self.discard_left = left if left <= limit else 0  # too big: do not wait for it

    # -- ownership -------------------------------------------------------------------------------------

    def take(self) -> bool:
        with self.lock:
            if self.owned or self.closed:
                return False
            self.owned = True
            return True

    def release(self, events: int) -> None:
        """Give the connection back and re-arm it for ``events`` (under the lock: an event that
        fires at once waits for the lock and then finds the connection free)."""
        with self.lock:
            self.owned = False
            if not self.closed:
                try:
                    self.core.epoll.modify(self.fd, events)
                except OSError:
                    pass  # the client is gone; the sweeper or the next event closes it


class Core:
    """The listening sockets, the connections and the threads of one server process."""

    def __init__(self, application, sockets: list[socket.socket], adj: Adjustments, limits: Limits):
        self.application = application
        self.adj = adj
        self.limits = limits
        self.epoll = select.epoll()
        self.listeners = {sock.fileno(): sock for sock in sockets}
        self.connections: dict[int, Connection] = {}
        self.accept_lock = threading.Lock()
        self.accept_paused = False
        self.stopping = False
        self.effective_host, self.effective_port = sockets[0].getsockname()[:2]
        self.site = Site(application, adj.server_name, self.effective_port, adj.ident, adj.url_scheme)
        self.recv_bytes = adj.recv_bytes
        for fd, sock in self.listeners.items():
            sock.setblocking(False)
            self.epoll.register(fd, _IN)

    # -- threads -----------------------------------------------------------------------------------

    def run(self, threads: int) -> None:
        """Serve with ``threads`` threads until SystemExit/KeyboardInterrupt in this (main) thread."""
        workers = [threading.Thread(target=self._work, name=f"xcap-wsgi-{n}", daemon=True)
                   for n in range(threads)]
        for worker in workers:
            worker.start()
        try:
            while not stop_requested.is_set():
                stop_requested.wait(1.0)
                self.sweep(time.monotonic())
        except (SystemExit, KeyboardInterrupt):
            pass
        finally:
            self.stop(workers)

    def stop(self, workers: list[threading.Thread], grace: float = 5.0) -> None:
        """Stop accepting, let answers in progress finish (``grace`` seconds at most), close all."""
        self.stopping = True
        for fd, sock in self.listeners.items():
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass
            sock.close()
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for conn in list(self.connections.values()):
            self._close(conn)
        self.epoll.close()

    def _work(self) -> None:
        poll = self.epoll.poll
        listeners, connections = self.listeners, self.connections
        while not self.stopping:
            try:
                events = poll(_POLL_SECONDS, 1)
            except InterruptedError:
                continue
            except OSError:  # the epoll was closed: stopping
                return
            for fd, flags in events:
                if fd in listeners:
                    self._accept(fd)
                    continue
                conn = connections.get(fd)
                if conn is None or not conn.take():
                    continue  # closed meanwhile, or owned by the sweeper (it re-arms)
                try:
                    self._serve(conn, flags)
                except Exception:  # noqa: BLE001 - one connection's failure must not end the thread
                    log.exception("connection from %s failed", conn.addr)
                    self._close(conn)

    # -- accepting ---------------------------------------------------------------------------------

    def _accept(self, fd: int) -> None:
        listener = self.listeners[fd]
        limit = self.limits.connection_limit
        for _ in range(ACCEPT_BATCH):
            if len(self.connections) >= limit:
                with self.accept_lock:
                    self.accept_paused = True  # re-armed by _close when a connection ends
                return
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if self.stopping:
                    return
                log.warning("accept() failed: %s", exc)
                break
            try:
                sock.setblocking(False)
                for level, option, value in self.adj.socket_options:
                    sock.setsockopt(level, option, value)
            except OSError:
                sock.close()
                continue
            conn = Connection(self, sock, addr)
            self.connections[conn.fd] = conn
            try:
                self.epoll.register(conn.fd, _IN)
            except OSError:
                self.connections.pop(conn.fd, None)
                sock.close()
        self._arm_listener(fd)

    def _arm_listener(self, fd: int) -> None:
        if self.stopping:
            return
        try:
            self.epoll.modify(fd, _IN)
        except OSError:
            pass

    def _close(self, conn: Connection) -> None:
        with conn.lock:
            if conn.closed:
                return
            conn.closed = True
            try:
                self.epoll.unregister(conn.fd)
            except (OSError, ValueError):
                pass
            self.connections.pop(conn.fd, None)  # before close: the number may be reused at once
            try:
                conn.sock.close()
            except OSError:
                pass
        conn.waiting.clear()
        if self.accept_paused:
            with self.accept_lock:
                paused, self.accept_paused = self.accept_paused, False
            if paused:
                for fd in self.listeners:
                    self._arm_listener(fd)

    # -- one event of an owned connection ------------------------------------------------------------

    def _serve(self, conn: Connection, flags: int) -> None:
        if conn.pending:  # EPOLLOUT: the client takes the rest of an answer
            if not self._flush(conn):
                return conn.release(_OUT)
            if conn.close_after_send:
                return self._after_last_answer(conn)
            self._answer_waiting(conn)
        else:
            try:
                data = conn.sock.recv(self.recv_bytes)
            except (BlockingIOError, InterruptedError):
                return conn.release(_IN)
            except OSError:
                return self._close(conn)
            if not data:
                return self._close(conn)
            conn.last_activity = time.monotonic()
            if conn.lingering:
                conn.discard_left -= len(data)
                if conn.discard_left <= 0:
                    return self._close(conn)
                return conn.release(_IN)
            conn.waiting.extend(conn.reader.feed(data))
            self._answer_waiting(conn)
        if conn.pending:
            return conn.release(_OUT)
        if conn.close_after_send:
            return self._after_last_answer(conn)
        conn.release(_IN)

    def _answer_waiting(self, conn: Connection) -> None:
        """Answer the requests read, in order, while the client takes the answers; then send
        100 Continue if the request in progress asked for it."""
        waiting = conn.waiting
        while waiting and not conn.pending and not conn.close_after_send:
            self._answer(conn, waiting.popleft())
        reader = conn.reader
        if reader.continue_due and not waiting and not conn.pending and not conn.close_after_send:
            reader.continue_due = False
            self._send(conn, _CONTINUE)

    def _answer(self, conn: Connection, request: Request) -> None:
        """Run the application for ``request`` and send its answer."""
        answer, close = self.site.answer(request, conn.addr)
        if request.withheld:
            conn.start_discarding(request, conn.reader.discard_after)
        if close:
            conn.close_after_send = True
            conn.waiting.clear()
        self._send(conn, answer)

    def _send(self, conn: Connection, data: bytes) -> None:
        """Send ``data`` after what is pending; what the socket does not take now stays pending."""
        conn.pending += data
        self._flush(conn)

    def _flush(self, conn: Connection) -> bool:
        """Send pending bytes without waiting; True when none are left."""
        view = memoryview(conn.pending)
        sent = 0
        try:
            while sent < len(view):
                sent += conn.sock.send(view[sent:])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            conn.close_after_send = True
            conn.discard_left = 0
            sent = len(view)  # the client is gone: nothing more to send
        finally:
            view.release()
        if sent:
            conn.pending = conn.pending[sent:]
            conn.last_activity = time.monotonic()
        return not conn.pending

    def _after_last_answer(self, conn: Connection) -> None:
        """The connection ends after its answer: close it, or first drop a withheld body's rest
        so that the client reads the answer and not a reset."""
        if conn.discard_left > 0 and not conn.lingering:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                return self._close(conn)
            conn.lingering = True
            conn.last_activity = time.monotonic()
            return conn.release(_IN)
        self._close(conn)

    # -- timeouts ------------------------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Close or time out the connections whose time is up (about once a second)."""
        wall = time.time()
        for conn in list(self.connections.values()):
            if conn.owned or not self._expired(conn, now, wall) or not conn.take():
                continue
            if not self._expired(conn, now, wall):  # served between the two looks
                conn.release(_OUT if conn.pending else _IN)
            elif conn.lingering or conn.pending or not conn.reader.in_progress:
                self._close(conn)
            else:
                self._time_out(conn, "request body" if conn.reader.headers_finished else "request head")

    def _expired(self, conn: Connection, now: float, wall: float) -> bool:
        limits = self.limits
        silent = now - conn.last_activity
        reader = conn.reader
        if conn.lingering:
            return silent > limits.body_timeout or now > conn.linger_until
        if conn.pending or not reader.in_progress:  # an answer not read, or no request: idle
            return silent > limits.idle_timeout
        if not reader.headers_finished:
            return wall - reader.started > limits.header_timeout
        return silent > limits.body_timeout

    def _time_out(self, conn: Connection, what: str) -> None:
        log.info("closing the connection from %s: %s not complete in time", conn.addr[0] if conn.addr else "?",
                 what)
        try:
            conn.sock.send(self.site.error_answer(Request(), "408 Request Timeout", f"{what} not complete in time"))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._close(conn)
        conn.reader.broken = True
        # Closing with unread input would send a reset that can overtake the 408 in the client's
        # receive buffer: read and drop what it still sends for a moment.
        conn.lingering = True
        conn.discard_left = _TIMEOUT_LINGER_BYTES
        conn.linger_until = time.monotonic() + _TIMEOUT_LINGER_SECONDS
        conn.release(_IN)


def listening_sockets(adj: Adjustments) -> list[socket.socket]:
    """Sockets bound to every address of ``adj.listen`` (a host name may have IPv4 and IPv6 ones)."""
    sockets = []
    try:
        for family, socktype, proto, sockaddr in adj.listen:
            sock = socket.socket(family, socktype, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(adj.backlog)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def serve(app, *, limits: Limits, sockets: list[socket.socket] | None = None, **options) -> None:
    """Run ``app`` until SIGTERM/SIGINT: on ``sockets`` (listening) or on ``host``/``port`` of
    ``options`` (waitress' adjustments, e.g. ``threads``), with ``limits``."""
    open_files = raise_open_files_limit()
    limits = Limits(**{**limits.__dict__,
                       "connection_limit": effective_connection_limit(limits.connection_limit, open_files)})
    if not hasattr(select, "epoll"):  # not Linux: waitress' own loop with the same limits
        create_server(app, limits=limits, sockets=sockets, **options).run()
        return
    adj = adjustments(limits, sockets, **options)
    Core(app, sockets or listening_sockets(adj), adj, limits).run(adj.threads)
