"""Other HTTP servers for ``xcap-wsgi serve`` (setting ``server``): uWSGI's router or granian.

``server = waitress`` (the default) is ``xcap_wsgi.httpcore`` (llhttp framing, ``xcap_wsgi.http11``,
on threads that take turns on one epoll; ``xcap_wsgi.httpserver``): the one that
carries serve's hardening (connection limit, idle/header/body timeouts, 401 before reading the
body, 413 from the head, 400 for a bare CR; tests/test_serve_hardening.py). The others run the
same application (``xcap_wsgi.wsgi``, built from the same settings in every worker process) on a
faster server when it is installed; measured side by side in docs/benchmarks.md:

* ``uwsgi`` (``pip install pyuwsgi``): uWSGI's asynchronous HTTP router holds the client
  connections (keep-alive) and hands each request over a private Unix socket (mode 0600, in a
  0700 temporary folder) to ``workers`` processes x ``threads`` threads: the deployment
  docs/deployment.md recommends, started by ``serve``;
* ``granian`` (``pip install granian``): granian's Rust HTTP server, ``workers`` processes with
  ``threads`` blocking threads each;
* ``auto``: serve's own core where ``epoll`` exists (Linux): in docs/benchmarks.md it costs less CPU
  per request than uWSGI on every row and than granian on 11 of 12, with the whole hardening;
  elsewhere granian when installed, else uwsgi, else waitress' own loop.

What they lack against waitress (hence opt-in). Run against them (``XCAP_SERVER=uwsgi`` /
``granian``), tests/test_serve_hardening.py, test_health.py, test_clients.py and
test_rfc_points.py fail in 12 tests (uwsgi) and 7 (granian) of 146:

* both: no 408 for a request head or body that stalls (slowloris), and no 401 before a large
  unauthenticated body is read (the whole body is read first, as by plain waitress); a bare LF
  in a request head is accepted, and uWSGI's router also takes a bare CR;
* uwsgi: a 304 answer closes the keep-alive connection (and a client's ``Connection: close``
  is not echoed on it), and a request target with raw non-ASCII bytes fails Digest (401: the
  application is handed a different request URI than the one the client signed);
* granian: 1,000-3,000 idle connections held open starve new clients in the tests' time, and
  one readiness check (subscriber table dropped) answered differently.

Each has other limits of its own instead: uWSGI's router closes silent client connections after
``idle_timeout``; granian enforces ``header_timeout`` as its head read timeout. ``max_body_size``
is still enforced by the application (``413``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

#: The environment variable that carries serve's settings to the worker processes (xcap_wsgi.wsgi).
SETTINGS_ENV = "XCAP_SERVE_SETTINGS"
SERVERS = ("waitress", "uwsgi", "granian", "auto")


def uwsgi_binary() -> str | None:
    """The ``uwsgi`` program (pyuwsgi's, beside this Python first)."""
    beside = Path(sys.executable).with_name("uwsgi")
    return str(beside) if beside.exists() else shutil.which("uwsgi")


def available(server: str) -> bool:
    if server == "uwsgi":
        return uwsgi_binary() is not None and importlib.util.find_spec("pyuwsgi") is not None
    if server == "granian":
        return importlib.util.find_spec("granian") is not None
    return server == "waitress"


def choose(server: str) -> str:
    """The server ``serve`` runs for the setting ``server`` (``auto``: the fastest installed)."""
    if server == "auto":
        if hasattr(select, "epoll"):  # serve's own core (xcap_wsgi.httpcore)
            return "waitress"
        return next(s for s in ("granian", "uwsgi", "waitress") if available(s))
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, not {server!r}")
    if not available(server):
        raise ValueError(f"server={server}: not installed (pip install {'pyuwsgi' if server == 'uwsgi' else server})")
    return server


def uwsgi_argv(values: dict, socket_path: str) -> list[str]:
    host = values["host"]
    listen = f"[{host}]:{values['port']}" if ":" in host else f"{host}:{values['port']}"
    return [
        uwsgi_binary() or "uwsgi", "--http", listen, "--http-keepalive", "--http-timeout",
        str(max(1, int(values["idle_timeout"]))), "--socket", socket_path, "--chmod-socket=600",
        "--http-to", socket_path, "--processes", str(values["workers"]), "--threads", str(values["threads"]),
        "--master", "--lazy-apps", "--need-app", "--die-on-term", "--disable-logging", "--listen", "1024",
        "--buffer-size", "65535",  # request heads up to max_uri_length and long Authorization headers
        "--module", "xcap_wsgi.wsgi:application",
    ]


def run(server: str, settings) -> int:
    """Run ``server`` (uwsgi or granian) in the foreground until SIGTERM/SIGINT; return its status.

    Every worker builds its application from ``settings`` (a ``Settings``, passed as JSON in
    ``SETTINGS_ENV``), so it is the one waitress would run.
    """
    values = settings
    env = {**os.environ, SETTINGS_ENV: json.dumps(settings.as_dict())}
    folder = tempfile.mkdtemp(prefix="xcap-wsgi-serve-")  # mode 0700
    try:
        if server == "uwsgi":
            argv = uwsgi_argv(values, os.path.join(folder, "uwsgi.sock"))
        else:
            argv = [sys.executable, "-m", "xcap_wsgi.backends", "granian"]
        # through "exec": the server dies with serve, even if serve is killed (server.die_with_parent)
        process = subprocess.Popen([sys.executable, "-m", "xcap_wsgi.backends", "exec", str(os.getpid()), *argv],
                                   env=env)

        def forward(signum, frame):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            while True:
                try:
                    return process.wait()
                except InterruptedError:  # pragma: no cover - PEP 475 retries anyway
                    continue
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _granian_main() -> int:
    """``python -m xcap_wsgi.backends granian``: granian on the settings of ``SETTINGS_ENV``."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    from .settings import Settings

    values = Settings.from_strings(json.loads(os.environ[SETTINGS_ENV]))
    Granian("xcap_wsgi.wsgi:application", address=values["host"], port=values["port"],
            interface=Interfaces.WSGI, workers=values["workers"], blocking_threads=values["threads"],
            http=HTTPModes.http1, backlog=1024, log_access=False,
            http1_settings=HTTP1Settings(header_read_timeout=int(values["header_timeout"] * 1000))).serve()
    return 0


def _exec_with_parent(parent: int, argv: list[str]) -> None:
    """``python -m xcap_wsgi.backends exec PID ARGV...``: become ``argv``, stopped (SIGTERM) when
    serve's process ``PID`` dies, even by SIGKILL (the signal survives the exec)."""
    from .server import die_with_parent

    die_with_parent(parent)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    if sys.argv[1:] == ["granian"]:
        sys.exit(_granian_main())
    if sys.argv[1:2] == ["exec"] and len(sys.argv) > 3:
        _exec_with_parent(int(sys.argv[2]), sys.argv[3:])
    sys.exit(f"usage: {sys.argv[0]} granian | exec PID PROGRAM [ARGUMENT...]")
