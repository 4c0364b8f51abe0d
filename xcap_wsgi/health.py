"""Unauthenticated liveness and readiness endpoints, in front of Digest and of XCAP routing.

* ``GET /healthz`` (``health_path``): ``200 ok`` whenever the process answers HTTP. It touches
  no database, so a load balancer or a Kubernetes liveness probe never restarts a healthy
  process because the database is down.
* ``GET /readyz`` (``ready_path``): ``200 ready`` when the document store and the subscriber
  table (when Digest is on) answer a trivial query, else ``503`` with ``Retry-After``: take the
  process out of rotation, do not restart it. The outcome is reused for one second, so probe
  floods (the endpoint needs no credentials) do not become database load.

Both answer GET and HEAD (other methods: 405), carry ``Cache-Control: no-store`` and never say
why the database failed (that goes to the log): they are open to anyone.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from .settings import DEFAULTS, Settings

log = logging.getLogger("xcap_wsgi.health")

#: How long a readiness outcome is reused (seconds).
READY_CACHE = 1.0


class HealthMiddleware:
    """Answer ``live_path`` and ``ready_path`` (exact paths); pass everything else to ``app``."""

    def __init__(self, app: Callable, *, checks: Iterable[tuple[str, Callable[[], object]]] = (),
                 live_path: str | None = DEFAULTS.health_path, ready_path: str | None = DEFAULTS.ready_path,
                 retry_after: int = 5, clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.checks = list(checks)  # (name, ping): ping() raises when the dependency is not usable
        self.live_path = live_path
        self.ready_path = ready_path
        self.retry_after = retry_after
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[str]] | None = None

    def __call__(self, environ, start_response):
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if path == self.live_path:
            return self._answer(environ, start_response, "200 OK", "ok\n")
        if path == self.ready_path:
            failed = self._failed_checks()
            if failed:
                return self._answer(environ, start_response, "503 Service Unavailable",
                                    "not ready: " + ", ".join(failed) + " unavailable\n",
                                    [("Retry-After", str(self.retry_after))])
            return self._answer(environ, start_response, "200 OK", "ready\n")
        return self.app(environ, start_response)

    def __getattr__(self, name: str):
        """Attributes of the wrapped app (``store``, ``subscribers``, ``realm``) read through: the
        health endpoints are a transparent layer."""
        if name == "app":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.app, name)

    def _failed_checks(self) -> list[str]:
        """Names of the checks that fail now (cached for ``READY_CACHE`` seconds)."""
        cached = self._cached
        if cached is not None and self.clock() - cached[0] < READY_CACHE:
            return cached[1]
        # One thread pings; the others answer with the previous outcome instead of queueing
        # behind a database that takes its connect timeout to fail.
        if not self._lock.acquire(blocking=cached is None):
            return cached[1]
        try:
            failed = []
            for name, ping in self.checks:
                try:
                    ping()
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                    log.warning("readiness: %s unavailable: %s", name, exc)
                    failed.append(name)
            self._cached = (self.clock(), failed)
            return failed
        finally:
            self._lock.release()

    @staticmethod
    def _answer(environ, start_response, status: str, text: str, extra: list | None = None):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            status, text, extra = "405 Method Not Allowed", "use GET or HEAD\n", [("Allow", "GET, HEAD")]
        body = text.encode()
        start_response(status, [("Content-Type", "text/plain; charset=UTF-8"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")] + (extra or []))
        return [] if method == "HEAD" else [body]


def with_health(app: Callable, settings: Settings, *, store=None, subscribers=None) -> Callable:
    """``app`` behind the health endpoints of ``settings``; readiness pings ``store`` and
    ``subscribers`` (either may be None: not checked)."""
    if not settings.health_path and not settings.ready_path:
        return app
    checks = []
    if store is not None and hasattr(store, "ping"):
        checks.append(("document store", store.ping))
    if subscribers is not None and hasattr(subscribers, "ping"):
        checks.append(("subscriber table", subscribers.ping))
    return HealthMiddleware(app, checks=checks, live_path=settings.health_path, ready_path=settings.ready_path)
