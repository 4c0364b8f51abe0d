"""Tell a running Kamailio that documents changed, over its JSON-RPC (``jsonrpcs`` on ``xhttp``).

Kamailio's own xcap_server does this from its routing script; an external XCAP server has to
call the RPCs (see kamailio-contract.md §7):

* pres-rules: ``presence.updateWatchers <uri> presence``, then ``presence.refreshWatchers <uri> presence 1``
* pidf-manipulation: ``presence.refreshWatchers <uri> presence 2 <doc_uri> <file>``
* resource-lists, rls-services: ``rls.update_subs <uri> presence``

Delivery never blocks or fails the XCAP request: events go into a bounded queue that one worker
thread drains, with retries and exponential backoff on transport errors. ``stats()`` counts what
was sent, failed and dropped.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import queue
import threading
import time
from urllib.parse import urlsplit

from . import metrics
from .events import ChangeEvent

log = logging.getLogger("xcap_wsgi.notify")

PRES_RULES, RESOURCE_LISTS, RLS_SERVICES, PIDF_MANIPULATION = 2, 4, 8, 16


def kamailio_calls(event: ChangeEvent, doc_type: int) -> list[tuple[str, list]]:
    """The RPC calls that make Kamailio notice ``event`` on a document of ``doc_type``."""
    uri = event.pres_uri
    if doc_type == PRES_RULES:
        if event.operation == "delete" and event.node_selector is None:
            # Kamailio 5.6's updateWatchers fails ("Processing error") once the user has no rules
            # document left; re-sending NOTIFYs is what can still be done.
            return [("presence.refreshWatchers", [uri, "presence", 1])]
        return [("presence.updateWatchers", [uri, "presence"]), ("presence.refreshWatchers", [uri, "presence", 1])]
    if doc_type == PIDF_MANIPULATION:
        return [("presence.refreshWatchers", [uri, "presence", 2, event.doc_uri, event.document_name])]
    if doc_type in (RESOURCE_LISTS, RLS_SERVICES):
        return [("rls.update_subs", [uri, "presence"])]
    return []


class RPCError(Exception):
    """Kamailio answered the call with a JSON-RPC error (not retried)."""


class KamailioNotifier:
    """A change sink (``XCAPMiddleware(on_change=[notifier])``) calling Kamailio's JSON-RPC."""

    def __init__(self, url: str = "http://127.0.0.1:5071/RPC", *, doc_types: dict[str, int] | None = None,
                 queue_size: int = 10000, retries: int = 5, backoff: float = 0.2, max_backoff: float = 10.0,
                 timeout: float = 2.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Kamailio JSON-RPC URL must be http(s)://host[:port]/path, not {url!r}")
        self.url = url
        self._parts = parts
        self._doc_types = doc_types
        self.retries, self.backoff, self.max_backoff, self.timeout = retries, backoff, max_backoff, timeout
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._ids = itertools.count(1)
        self._counts = {"sent": 0, "failed": 0, "dropped": 0, "retried": 0}
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._closed = threading.Event()
        self._worker = threading.Thread(target=self._run, name="xcap-kamailio-notifier", daemon=True)
        self._worker.start()

    # -- the sink -------------------------------------------------------------------------------

    def __call__(self, event: ChangeEvent) -> None:
        doc_type = self._doc_type(event)
        for call in kamailio_calls(event, doc_type):
            try:
                self._queue.put_nowait(call)
                metrics.notification(None, self._queue.qsize())
            except queue.Full:
                self._count("dropped")
                log.warning("notification queue full: dropped %s %s", *call)

    def _doc_type(self, event: ChangeEvent) -> int:
        if self._doc_types and event.auid in self._doc_types:
            return self._doc_types[event.auid]
        from .usages import default_registry

        usage = default_registry().get(event.auid)
        return usage.doc_type if usage and usage.doc_type else 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts, queued=self._queue.qsize())

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued call was delivered or given up; True if the queue drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self._closed.set()
        self._worker.join(timeout)

    # -- the worker -----------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1
        metrics.notification(name, self._queue.qsize())  # Prometheus (a no-op without it)

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                method, params = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._deliver(method, params)
            finally:
                self._queue.task_done()

    def _deliver(self, method: str, params: list) -> None:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                self.call(method, params)
                self._count("sent")
                return
            except RPCError as exc:
                self._count("failed")
                log.warning("Kamailio refused %s %s: %s", method, params, exc)
                return
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._drop_connection()
                if attempt == self.retries or self._closed.is_set():
                    self._count("failed")
                    log.error("giving up on %s %s after %d attempts: %s", method, params, attempt + 1, exc)
                    return
                self._count("retried")
                log.info("retrying %s in %.1fs: %s", method, delay, exc)
                self._closed.wait(delay)
                delay = min(delay * 2, self.max_backoff)

    def call(self, method: str, params: list):
        """One synchronous JSON-RPC call; returns the result or raises RPCError / OSError."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": next(self._ids)})
        connection = self._connection or self._connect()
        self._connection = connection
        connection.request("POST", self._parts.path or "/", body=body.encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        if response.status >= 300 and not payload.lstrip().startswith(b"{"):  # jsonrpcs: HTTP 500 + error body
            raise http.client.HTTPException(f"HTTP {response.status} from Kamailio")
        answer = json.loads(payload or b"{}")
        if "error" in answer:
            raise RPCError(answer["error"].get("message", answer["error"]) if isinstance(answer["error"], dict)
                           else answer["error"])
        return answer.get("result")

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        return cls(self._parts.hostname, self._parts.port, timeout=self.timeout)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
