"""Prometheus metrics (issue 19.4), with the optional ``prometheus_client`` (extra ``metrics``).

Everything is recorded at two boundaries, so the XCAP code stays free of instrumentation:

* ``MetricsMiddleware``, the outermost WSGI layer (in front of Digest, like the health
  endpoints): one count and one latency observation per request, by AUID, operation and status,
  and the database pool's state after each request; it answers ``GET /metrics`` itself, without
  authentication (it tells request counts, never documents or identities);
* a tiny counter interface called where the events happen: ``cas_retry(auid)`` (operations'
  compare-and-swap loops), ``unavailable(reason)`` (each 503), ``notification(outcome, queued)``
  (notify.py's queue to Kamailio). Each is a no-op without ``prometheus_client``.

Metric names: ``xcap_requests_total`` and ``xcap_request_duration_seconds`` {auid, operation,
status}; ``xcap_cas_retries_total`` {auid}; ``xcap_unavailable_total`` {reason};
``xcap_db_pool_connections`` {state=size|in_use|idle}; ``xcap_kamailio_notifications_total``
{outcome=sent|failed|dropped|retried}; ``xcap_kamailio_notification_queue`` (calls waiting).

Several processes (``serve --workers N``, uWSGI): prometheus_client's multiprocess mode. Every
process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (answered by
any worker) adds them up. ``serve --workers`` creates and removes that directory itself unless the
variable is set; under uWSGI set the ``metrics_dir`` setting (or the variable, with the uwsgi binary:
pyuwsgi's ``env =`` comes too late for Python) to an empty directory that exists before the workers
start, e.g. ``/run/xcap-wsgi/metrics`` (systemd empties RuntimeDirectory at each start). Gauges are
summed over live processes (uWSGI does not report dead workers: a restarted worker's last gauge
values stay until the server restarts).

Without ``prometheus_client``, ``/metrics`` answers 501 with a hint and the server runs as usual.
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from .settings import Settings

#: Label value for requests outside any application usage (401 before routing, 404 outside the root).
NO_AUID = "-"
_METHODS = {"GET": "get", "HEAD": "head", "PUT": "put", "DELETE": "delete", "OPTIONS": "options"}
#: Seconds between two samples of the database pool's state by one process.
POOL_SAMPLE_SECONDS = 1.0
#: Latency buckets (seconds): XCAP requests take about a millisecond; Kamailio-side waits more.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HINT = b"metrics need the prometheus_client package: pip install 'xcap-wsgi[metrics]'\n"

_create_lock = threading.Lock()
#: The metric objects (created on first use), or False without the library.
_metrics: _Metrics | Literal[False] | None = None


class _Metrics:
    """This process's metric objects."""

    def __init__(self, prometheus_client):
        p = prometheus_client
        self.client = p
        self.requests = p.Counter("xcap_requests_total", "HTTP requests answered, by AUID, operation and status",
                                  ["auid", "operation", "status"])
        self.latency = p.Histogram("xcap_request_duration_seconds", "time to answer a request (until the "
                                   "status line), by AUID, operation and status", ["auid", "operation", "status"],
                                   buckets=BUCKETS)
        self.cas_retries = p.Counter("xcap_cas_retries_total", "writes redone after losing a compare-and-swap "
                                     "race (the document changed between read and write)", ["auid"])
        self.unavailable = p.Counter("xcap_unavailable_total", "503 answers by reason (database, contention, "
                                     "subscribers)", ["reason"])
        self.pool = p.Gauge("xcap_db_pool_connections", "MySQL connection pool: size, in_use and idle "
                            "connections (summed over live processes)", ["state"], multiprocess_mode="livesum")
        self.notifications = p.Counter("xcap_kamailio_notifications_total", "calls to Kamailio's JSON-RPC after "
                                       "document changes, by outcome", ["outcome"])
        self.queue = p.Gauge("xcap_kamailio_notification_queue", "notification calls waiting for delivery "
                             "(summed over live processes)", multiprocess_mode="livesum")


def _get() -> _Metrics | None:
    global _metrics
    if _metrics is None:
        with _create_lock:  # the first requests of a process may arrive together (threads)
            if _metrics is None:
                try:
                    import prometheus_client
                except ImportError:
                    _metrics = False
                else:
                    _metrics = _Metrics(prometheus_client)
    return _metrics or None


def available() -> bool:
    """Whether ``prometheus_client`` is installed."""
    return _get() is not None


# -- the counter interface (no-ops without prometheus_client) ----------------------------------------


def cas_retry(auid: str) -> None:
    metrics = _get()
    if metrics is not None:
        metrics.cas_retries.labels(auid).inc()


def unavailable(reason: str) -> None:
    metrics = _get()
    if metrics is not None:
        metrics.unavailable.labels(reason).inc()


def notification(outcome: str | None, queued: int | None = None) -> None:
    """A Kamailio notification call ``outcome`` (sent, failed, dropped, retried; None: only the
    queue length changed); ``queued``: calls now waiting."""
    metrics = _get()
    if metrics is not None:
        if outcome:
            metrics.notifications.labels(outcome).inc()
        if queued is not None:
            metrics.queue.set(queued)


# -- the WSGI boundary ------------------------------------------------------------------------


class MetricsMiddleware:
    """Count and time every request to ``app``; answer ``path`` (GET/HEAD) with the metrics.

    ``pool_state()``, when given, returns the database pool's (size, in_use, idle), sampled after
    a request at most every ``POOL_SAMPLE_SECONDS`` (in_use changes on nearly every request, and each
    gauge write is a locked write to a shared file in multiprocess mode: 4 % of a document PUT).
    """

    def __init__(self, app: Callable, *, path: str = "/metrics", pool_state: Callable[[], tuple] | None = None):
        self.app = app
        self.path = path
        self.pool_state = pool_state
        # Labelled children are looked up once per label set (labels() costs more than inc()),
        # and the pool gauges are written only when the pool changed.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._pool_gauges: tuple[Any, Any, Any] | None = None
        self._pool_last: tuple | None = None
        self._pool_due = 0.0  # time.monotonic() when the pool is sampled next
        self._children_of: _Metrics | None = None  # the metrics the cached children belong to

    def __getattr__(self, name: str):
        """The wrapped app's attributes (``store``, ``subscribers``, ...): a transparent layer."""
        if name == "app":  # not set yet (copy, unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.app, name)

    def __call__(self, environ, start_response):
        if environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") == self.path:
            return self._expose(environ, start_response)
        metrics = _get()
        if metrics is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        status = []

        def capture(line, headers, exc_info=None):
            status.append(line[:3])
            return start_response(line, headers, exc_info) if exc_info else start_response(line, headers)

        try:
            return self.app(environ, capture)
        except BaseException:
            status.append("500")
            raise
        finally:
            self._record(metrics, environ, status[-1] if status else "500", time.perf_counter() - started)

    def _record(self, metrics: _Metrics, environ: dict, status: str, seconds: float) -> None:
        auid = environ.get("xcap.auid", NO_AUID)
        uri = environ.get("xcap.uri")
        method = _METHODS.get(environ.get("REQUEST_METHOD", ""), "other")
        kind = "-" if uri is None or auid == NO_AUID else ("document" if uri.node_selector is None else "node")
        operation = f"{method}_{kind}" if kind != "-" else method
        if metrics is not self._children_of:
            self._children, self._pool_gauges, self._pool_last, self._pool_due = {}, None, None, 0.0
            self._children_of = metrics
        key = (auid, operation, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (metrics.requests.labels(*key), metrics.latency.labels(*key))
        children[0].inc()
        children[1].observe(seconds)
        if self.pool_state is not None and time.monotonic() >= self._pool_due:
            self._pool_due = time.monotonic() + POOL_SAMPLE_SECONDS
            state = self.pool_state()
            if state != self._pool_last:
                if self._pool_gauges is None:
                    self._pool_gauges = (metrics.pool.labels("size"), metrics.pool.labels("in_use"),
                                         metrics.pool.labels("idle"))
                for gauge, value in zip(self._pool_gauges, state, strict=True):
                    gauge.set(value)
                self._pool_last = state

    def _expose(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        metrics = _get()
        if method not in ("GET", "HEAD"):
            status, body, headers = "405 Method Not Allowed", b"use GET or HEAD\n", [("Allow", "GET, HEAD")]
            content_type = "text/plain; charset=UTF-8"
        elif metrics is None:
            status, body, headers, content_type = "501 Not Implemented", HINT, [], "text/plain; charset=UTF-8"
        else:
            status, headers = "200 OK", []
            body, content_type = exposition(metrics.client)
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")] + headers)
        return [] if method == "HEAD" else [body]


def exposition(client) -> tuple[bytes, str]:
    """The text format of every metric: this process's, or all processes' in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = client.REGISTRY
    return client.generate_latest(registry), client.CONTENT_TYPE_LATEST


def with_metrics(app: Callable, settings: Settings, *, store=None) -> Callable:
    """``app`` behind the metrics layer of ``settings`` (``metrics_path``; empty: none)."""
    path = settings.metrics_path
    if not path:
        return app
    if settings.metrics_dir and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before prometheus_client is first imported in this process (it reads the variable then).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_dir
    pool = getattr(getattr(store, "_db", None), "pool", None)
    return MetricsMiddleware(app, path=path, pool_state=getattr(pool, "state", None))


# -- several processes ------------------------------------------------------------------------


def prepare_multiprocess(directory: str | None = None) -> str | None:
    """Before forking workers: make ``PROMETHEUS_MULTIPROC_DIR`` an empty directory: ``directory``
    (the ``metrics_dir`` setting) or the variable's if given (their old ``*.db`` files are
    removed), else a new one removed at exit (and the ones killed servers left are removed
    first). Returns it, or None without prometheus_client.
    Call before prometheus_client is first imported."""
    try:
        import importlib.util

        if importlib.util.find_spec("prometheus_client") is None:
            return None
    except (ImportError, ValueError):
        return None
    directory = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.unlink(stale)
        return directory
    _remove_orphans(tempfile.gettempdir())
    directory = tempfile.mkdtemp(prefix=_DIRECTORY_PREFIX)
    _hold_owner_lock(directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    parent = os.getpid()

    def remove() -> None:
        if os.getpid() == parent:  # forked workers run the inherited handler too: not theirs
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return directory


#: The directories ``prepare_multiprocess`` makes: ``<tempdir>/xcap-wsgi-metrics-XXXXXXXX``.
_DIRECTORY_PREFIX = "xcap-wsgi-metrics-"
#: A file in each, share-locked (flock) by the server that made it for as long as it runs.
_OWNER = ".owner"
#: An unlocked directory younger than this may be one whose server is just starting: kept.
ORPHAN_AGE_SECONDS = 60.0
_held: list[int] = []  # the owner lock's descriptor, open until the process ends


def _hold_owner_lock(directory: str) -> None:
    """Share-lock the directory's owner file until this process (and the workers it forks) end."""
    fd = os.open(os.path.join(directory, _OWNER), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held.append(fd)


def _remove_orphans(base: str) -> None:
    """Remove the metrics directories of servers that were killed before their exit handler ran
    (SIGKILL, a crash): this user's directories whose owner file nobody locks any more and is
    older than ``ORPHAN_AGE_SECONDS``. The lock, not a process id, says whether the server
    lives: it holds across process id reuse and PID namespaces sharing the directory.
    Directories without an owner file are left alone."""
    for path in glob.glob(os.path.join(glob.escape(base), _DIRECTORY_PREFIX + "*")):
        try:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            fd = os.open(os.path.join(path, _OWNER), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if time.time() - os.fstat(fd).st_mtime < ORPHAN_AGE_SECONDS:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its server still runs
        finally:
            os.close(fd)  # closing drops the lock taken above: the directory goes anyway
        shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """A worker process ended: its live gauges no longer count (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and available():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
