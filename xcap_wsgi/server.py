"""A pre-forking standalone server: N processes, each serving the same port (xcap_wsgi.httpcore).

``xcap-wsgi serve --workers N`` (N > 1) reserves the port in the parent, then forks N worker
processes. Each worker builds its own application (its own database pool: pooled connections
must never cross a fork) and serves the port (``httpcore.serve(app, sockets=[sock])``).

Where the OS has ``SO_REUSEPORT`` (Linux), every worker listens on a socket of its own bound to
the port and the kernel spreads new connections evenly over them. One socket shared by all
workers (the fallback, ``reuse_port=False``) lets the worker that wakes first take the
connection, and measured on 2 cores that gave one worker anything from 8 to all 32 of 32
keep-alive connections: the other worker idled and p99 latency went up fourfold.

The parent only supervises:

* SIGTERM / SIGINT / SIGHUP to the parent is forwarded to every worker as SIGTERM; a worker
  then stops accepting, and the parent waits (``graceful_timeout``) before SIGKILL;
* each worker tells the parent (a pipe) once it listens; the start-up line (``on_ready``) comes
  with the first;
* a worker that exits with an error status before it listens, while no worker has listened yet
  (e.g. the authentication database URL is wrong), stops the whole server with that status; once
  the server has served, such a worker is started again after 1, 2, 4 ... 30 s, while the others
  serve on; a worker killed by a signal, or one that dies after listening, is replaced at once.

Python threads share one interpreter lock, so one process uses at most about one core; several
processes are how a Python WSGI server uses several cores (see README, Benchmarks).
``--workers 1`` does not go through this module at all; the default is one worker per CPU.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable

from .httpcore import serve, stop_requested
from .httpserver import Limits, raise_open_files_limit

#: Seconds before a worker that failed its start-up is started again (doubling up to the last),
#: once the server has served: a database outage must not stop it.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


def bind_socket(host: str, port: int, backlog: int = 1024, *, reuse_port: bool = False,
                listen: bool = True) -> socket.socket:
    """A TCP socket bound to host:port (IPv6 when ``host`` is an IPv6 address), listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _worker(sock: socket.socket | None, build_app: Callable[[], object], threads: int, waitress_options: dict,
            host: str, port: int, limits: Limits, ready: int) -> int:
    """Body of one worker process: build the app, listen, say so on the pipe ``ready``, serve
    until SIGTERM (xcap_wsgi.httpcore).

    ``sock`` None: listen on a socket of this worker's own (SO_REUSEPORT) once the app is built.
    """
    try:
        app = build_app()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    if sock is None:
        sock = bind_socket(host, port, reuse_port=True)
    try:
        os.write(ready, struct.pack("=i", os.getpid()))  # at most PIPE_BUF bytes: one atomic write
        os.close(ready)
    except OSError:  # the parent is gone: PR_SET_PDEATHSIG stops this worker
        pass
    serve(app, limits=limits, sockets=[sock], threads=threads, **waitress_options)
    return 0


def die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when ``parent`` dies, even by SIGKILL (PR_SET_PDEATHSIG), so no
    worker (or server run by ``serve --server``) is left holding the port; elsewhere the parent's
    forwarding is all there is."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        raise SystemExit(0)


def _stop_worker(signum, frame):
    """SIGTERM in a worker: the serving loop stops (``httpcore.stop_requested``, looked at every
    second, so a SystemExit that lands where it is swallowed still stops it) and SystemExit ends
    whatever runs now. Only the first: a second one (a process group signalled, then the parent
    forwarding it) must not cut the shutdown short with a traceback."""
    if not stop_requested.is_set():
        stop_requested.set()
        raise SystemExit(0)


#: Held back from the moment of a fork until the worker's own handlers are in place.
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def serve_workers(
    build_app: Callable[[], object],
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    graceful_timeout: float = 10.0,
    on_ready: Callable[[str, int], None] | None = None,
    reuse_port: bool | None = None,
    limits: Limits | None = None,
    **waitress_options,
) -> int:
    """Run ``workers`` server processes on one port; return the exit status for ``main``.

    Each worker serves with ``xcap_wsgi.httpserver`` and ``limits`` (connection limit and
    timeouts per process).

    ``build_app()`` runs in each worker after the fork; it may raise ``SystemExit(code)`` to
    report a start-up failure (already explained on stderr). ``reuse_port`` (default: where
    available) gives every worker a listening socket of its own; otherwise they share one.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    limits = limits or Limits()
    waitress_options.pop("_quiet", None)  # waitress.serve's option; httpcore.serve prints nothing
    raise_open_files_limit()  # inherited by every worker
    if reuse_port is None:
        reuse_port = hasattr(socket, "SO_REUSEPORT")
    # With SO_REUSEPORT the parent's socket only holds the port (bound, never listening: the
    # kernel gives connections to listening sockets only); each worker listens on its own.
    sock = bind_socket(host, port, reuse_port=reuse_port, listen=not reuse_port)
    bound_host, bound_port = sock.getsockname()[:2]
    worker_sock = None if reuse_port else sock
    ready_in, ready_out = os.pipe()
    os.set_blocking(ready_in, False)
    children: dict[int, bool] = {}  # pid -> has listened
    retry_at: list[float] = []  # when the workers that failed their start-up are started again
    state = {"stopping": False, "status": 0, "served": False, "failures": 0}

    def spawn() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # A stop signal that arrived between the fork and the worker's handlers ran the parent's
        # handler in the worker, anywhere (in fork hooks, where its SystemExit is swallowed):
        # signals wait, blocked, until each side is ready for them.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            raise
        if pid == 0:  # worker
            for sig in (signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # the parent decides; it forwards SIGTERM
            signal.signal(signal.SIGTERM, _stop_worker)
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                die_with_parent(parent)
                os.close(ready_in)
                if reuse_port:
                    sock.close()  # the worker's own socket is bound after the app is built
                code = _worker(worker_sock, build_app, threads, waitress_options, bound_host, bound_port, limits,
                               ready_out)
            except SystemExit as exc:  # stopped before serving
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:  # noqa: BLE001 - report and leave; never return into the parent's loop
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    parent = os.getpid()

    def forward(signum, frame):
        if os.getpid() != parent:  # a worker between fork and its own handlers
            raise SystemExit(0)
        state["stopping"] = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def listened() -> None:
        """Read what the workers wrote on the ready pipe: the first starts the server's life."""
        try:
            data = os.read(ready_in, 4096)
        except BlockingIOError:
            return
        for (pid,) in struct.iter_unpack("=i", data[: len(data) // 4 * 4]):
            if pid in children:
                children[pid] = True
                state["failures"] = 0
                if not state["served"]:
                    state["served"] = True
                    if on_ready:
                        on_ready(bound_host, bound_port)

    def exited(pid: int, status: int) -> None:
        had_listened = children.pop(pid, None)
        if had_listened is None:
            return
        from .metrics import worker_exited

        worker_exited(pid)  # its live gauges stop counting (multiprocess metrics)
        if state["stopping"]:
            return
        code = os.waitstatus_to_exitcode(status)
        if had_listened or code <= 0:  # died serving, or killed by a signal: replace it now
            print(f"xcap-wsgi: worker {pid} exited (status {code}); starting a new one", file=sys.stderr, flush=True)
            spawn()
        elif not state["served"]:  # the server's own start-up failed (reason already printed)
            print(f"xcap-wsgi: worker {pid} failed to start (status {code}); stopping", file=sys.stderr, flush=True)
            state["status"] = code
            forward(signal.SIGTERM, None)
        else:  # the others serve: try again later (e.g. the database is down)
            delay = RETRY_DELAYS[min(state["failures"], len(RETRY_DELAYS) - 1)]
            state["failures"] += 1
            print(f"xcap-wsgi: worker {pid} failed to start (status {code}); trying again in {delay:g} s",
                  file=sys.stderr, flush=True)
            retry_at.append(time.monotonic() + delay)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        for _ in range(workers):
            spawn()
        deadline = None
        while children or (retry_at and not state["stopping"]):
            if state["stopping"] and deadline is None:
                deadline = time.monotonic() + graceful_timeout
            if deadline is not None and time.monotonic() > deadline:
                for other in list(children):
                    try:
                        os.kill(other, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + graceful_timeout
            select.select([ready_in], [], [], 0.1)
            listened()
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                listened()  # a worker that said it listens, then died: it had listened
                exited(pid, status)
            now = time.monotonic()
            for due in [t for t in retry_at if t <= now]:
                retry_at.remove(due)
                if not state["stopping"]:
                    spawn()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        os.close(ready_in)
        os.close(ready_out)
    return state["status"]
