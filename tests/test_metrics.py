"""Prometheus metrics (issue 19.4): GET /metrics without credentials, request counts and latency
by AUID/operation/status, compare-and-swap retries, 503s, pool state, Kamailio notifications;
summed over the processes of ``serve --workers`` and uWSGI; 501 without prometheus_client."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import RL_DOC, RL_MIME
from prometheus_client import REGISTRY
from test_workers import alive, children, free_port, request, wait_until
from webob import Request

from xcap_wsgi import metrics
from xcap_wsgi.build import build_middleware
from xcap_wsgi.metrics import MetricsMiddleware, with_metrics
from xcap_wsgi.paste import app_factory
from xcap_wsgi.settings import resolve
from xcap_wsgi.storage import DocumentKey

DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
EXAMPLE_UWSGI = Path(__file__).resolve().parent.parent / "examples" / "uwsgi.ini"


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def call(app, method: str, path: str, body: bytes | None = None, **headers):
    request_ = Request.blank(path, method=method, headers=headers)
    if body is not None:
        request_.body = body
    return request_.get_response(app)


@pytest.fixture
def standalone(tmp_path):
    return app_factory({}, db=f"sqlite:///{tmp_path}/x.sqlite3", anonymous="true", default_domain="example.com")


def test_requests_are_counted_and_timed_by_auid_operation_and_status(standalone):
    labels = {"auid": "resource-lists", "operation": "put_document", "status": "201"}
    before = value("xcap_requests_total", **labels), value("xcap_request_duration_seconds_count", **labels)
    get404 = {"auid": "resource-lists", "operation": "get_node", "status": "404"}
    missing = value("xcap_requests_total", **get404)
    assert call(standalone, "PUT", DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    assert call(standalone, "GET", DOC + "/~~/resource-lists/list%5b@name=%22nope%22%5d").status_int == 404
    assert call(standalone, "GET", "/elsewhere").status_int == 404
    assert value("xcap_requests_total", **labels) == before[0] + 1
    assert value("xcap_request_duration_seconds_count", **labels) == before[1] + 1
    assert value("xcap_requests_total", **get404) == missing + 1
    exposed = call(standalone, "GET", "/metrics")
    assert exposed.status_int == 200 and exposed.content_type == "text/plain"
    assert 'xcap_requests_total{auid="resource-lists",operation="put_document",status="201"}' in exposed.text
    assert 'xcap_requests_total{auid="-",operation="get",status="404"}' in exposed.text  # outside the root
    assert call(standalone, "POST", "/metrics").status_int == 405


def test_metrics_need_no_credentials_in_front_of_digest(tmp_path):
    app = app_factory({}, db=f"sqlite:///{tmp_path}/x.sqlite3", default_domain="example.com")
    unauthorized = {"auid": "-", "operation": "get", "status": "401"}
    before = value("xcap_requests_total", **unauthorized)
    assert call(app, "GET", DOC).status_int == 401
    response = call(app, "GET", "/metrics")
    assert response.status_int == 200 and "xcap_requests_total" in response.text
    assert value("xcap_requests_total", **unauthorized) == before + 1
    off = app_factory({}, db=f"sqlite:///{tmp_path}/x.sqlite3", default_domain="example.com", metrics_path="")
    assert not isinstance(off, MetricsMiddleware) and call(off, "GET", "/metrics").status_int == 401


class RacingStore:
    """A real store where another writer changes the document between the first read of each
    write and its compare-and-swap (as a concurrent client would)."""

    def __init__(self, store):
        self._store, self.raced = store, False

    def get(self, key: DocumentKey):
        stored = self._store.get(key)
        if stored is not None and not self.raced:
            self.raced = True
            self._store.put(key, stored.content.replace(b"Bob", b"Robert"), stored.etag)
        return stored

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_compare_and_swap_retries_are_counted(tmp_path):
    from xcap_wsgi.storage import open_store

    store = RacingStore(open_store(f"sqlite:///{tmp_path}/x.sqlite3"))
    app = with_metrics(build_middleware(None, resolve({"anonymous": True, "default_domain": "example.com"}),
                                        store=store), resolve({}))
    assert call(app, "PUT", DOC, RL_DOC, **{"Content-Type": RL_MIME}, REMOTE_USER="x").status_int == 201
    before = value("xcap_cas_retries_total", auid="resource-lists")
    entry = DOC + "/~~/resource-lists/list%5b@name=%22friends%22%5d/entry%5b@uri=%22sip:carol@example.com%22%5d"
    response = call(app, "PUT", entry, b'<entry uri="sip:carol@example.com"/>',
                    **{"Content-Type": "application/xcap-el+xml"})
    assert response.status_int == 201 and store.raced
    assert value("xcap_cas_retries_total", auid="resource-lists") == before + 1
    assert b"Robert" in call(app, "GET", DOC).body  # the other writer's change was kept


def test_database_503_and_pool_state_are_exposed():
    from mysql_support import (
        kamailio_database,  # noqa: F401 - ensures MariaDB is there (or skips/fails)
        server_url,
        temporary_database,
    )

    server_url()
    with temporary_database(tables="kamailio") as url:
        values = resolve({"anonymous": True, "default_domain": "example.com", "db": url + "?pool_size=3"})
        inner = build_middleware(None, values)
        app = with_metrics(inner, values, store=inner.store)
        assert call(app, "GET", DOC).status_int == 404
        assert value("xcap_db_pool_connections", state="size") >= 3
        assert value("xcap_db_pool_connections", state="idle") >= 1
        inner.store.close()
    port = free_port()  # nothing listens there: every request is a 503
    values = resolve({"anonymous": True, "default_domain": "example.com",
                      "db": f"mysql://x:y@127.0.0.1:{port}/kamailio?connect_timeout=1"})
    inner = build_middleware(None, values)
    app = with_metrics(inner, values, store=inner.store)
    before = value("xcap_unavailable_total", reason="database")
    response = call(app, "GET", DOC)
    assert response.status_int == 503
    assert value("xcap_unavailable_total", reason="database") == before + 1
    assert value("xcap_requests_total", auid="resource-lists", operation="get_document", status="503") >= 1


def test_kamailio_notifications_are_counted():
    from xcap_wsgi.events import ChangeEvent
    from xcap_wsgi.notify import KamailioNotifier

    port = free_port()  # no Kamailio there: every call fails after its retries
    notifier = KamailioNotifier(f"http://127.0.0.1:{port}/RPC", retries=1, backoff=0.01, timeout=1)
    before = value("xcap_kamailio_notifications_total", outcome="failed")
    retried = value("xcap_kamailio_notifications_total", outcome="retried")
    try:
        notifier(ChangeEvent(auid="pres-rules", xui="sip:alice@example.com", username="alice", domain="example.com",
                             document_selector="pres-rules/users/sip:alice@example.com/index", doc_uri="/x",
                             node_selector=None, operation="put", previous_etag=None, new_etag="e",
                             xcap_root="http://x/xcap-root/", namespaces={}, patch=()))
        assert notifier.flush(20)
    finally:
        notifier.close()
    calls = notifier.stats()["failed"]
    assert calls >= 1
    assert value("xcap_kamailio_notifications_total", outcome="failed") == before + calls
    assert value("xcap_kamailio_notifications_total", outcome="retried") == retried + calls
    assert value("xcap_kamailio_notification_queue") == 0


def test_without_prometheus_client_the_server_works_and_metrics_answer_501(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["prometheus_client"] = None  # as if the extra were not installed
        from webob import Request
        from xcap_wsgi.paste import app_factory
        app = app_factory({{}}, db="sqlite:///{tmp_path}/x.sqlite3", anonymous="true")
        print(Request.blank("/metrics").get_response(app).status_int)
        print(Request.blank("/metrics").get_response(app).text.strip())
        print(Request.blank("/xcap-root/xcap-caps/global/index").get_response(app).status_int)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["501", "metrics need the prometheus_client package: "
                                       "pip install 'xcap-wsgi[metrics]'", "200"], out.stderr


def scrape_total(port: int, status: str = "200") -> float:
    response, body = request(port, "GET", "/metrics")
    assert response.status == 200
    pattern = r'^xcap_requests_total\{auid="xcap-caps",operation="get_document",status="' + status + r'"\} (\S+)$'
    match = re.search(pattern, body.decode(), flags=re.M)
    return float(match.group(1)) if match else 0.0


def test_serve_workers_sum_every_process(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--port", str(port), "--workers", "2",
         "--threads", "2", "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"})
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    try:
        assert wait_until(lambda: len(children(process.pid)) == 2), "".join(output)
        assert wait_until(lambda: _answers(port)), "".join(output)
        start = scrape_total(port)
        for _ in range(40):  # each on a new connection: both workers answer some (SO_REUSEPORT)
            assert request(port, "GET", "/xcap-root/xcap-caps/global/index")[0].status == 200
        totals = {scrape_total(port) for _ in range(6)}  # whichever worker answers, the same sum
        assert totals == {start + 40}, (totals, start)
        directories = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("xcap-wsgi-metrics-*")
                       if any(any(p.glob(f"*_{pid}.db")) for pid in children(process.pid))]
        assert len(directories) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert not directories[0].exists()  # removed by the parent at exit


def _metrics_directory(base: Path, name: str, *, age: float, owner: bool = True) -> Path:
    directory = base / f"xcap-wsgi-metrics-{name}"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"x")
    if owner:
        (directory / ".owner").write_bytes(b"")
        then = time.time() - age
        os.utime(directory / ".owner", (then, then))
    return directory


def test_metrics_directories_that_killed_servers_left_are_removed_and_no_other(tmp_path):
    orphan = _metrics_directory(tmp_path, "orphan", age=600)
    starting = _metrics_directory(tmp_path, "starting", age=1)  # a server between mkdtemp and its lock
    legacy = _metrics_directory(tmp_path, "legacy", age=600, owner=False)  # no owner file: not ours to judge
    running = _metrics_directory(tmp_path, "running", age=600)
    other = tmp_path / "xcap-wsgi-metricsX"
    other.mkdir()
    fd = os.open(running / ".owner", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what a live server holds
        metrics._remove_orphans(str(tmp_path))
    finally:
        os.close(fd)
    assert not orphan.exists()
    assert starting.exists() and legacy.exists() and running.exists() and other.exists()


def test_serve_removes_the_metrics_directory_of_a_server_killed_with_sigkill(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")

    def start() -> tuple[subprocess.Popen, int]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--port", str(port), "--workers", "2",
             "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, env=env)
        assert wait_until(lambda: _answers(port))
        return process, port

    first, _ = start()
    try:
        [left] = tmp_path.glob("xcap-wsgi-metrics-*")
        workers = children(first.pid)
        assert len(workers) == 2
        first.kill()  # no exit handler runs; the workers follow their parent (PR_SET_PDEATHSIG)
        first.wait(30)
        assert wait_until(lambda: not any(alive(pid) for pid in workers))  # they held the lock too
    finally:
        first.kill()
    assert left.exists()
    then = time.time() - 2 * metrics.ORPHAN_AGE_SECONDS
    os.utime(left / ".owner", (then, then))  # as if the crash was some time ago
    second, _ = start()
    try:
        assert not left.exists()
        assert len(list(tmp_path.glob("xcap-wsgi-metrics-*"))) == 1  # the second server's own
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert not list(tmp_path.glob("xcap-wsgi-metrics-*"))


def _answers(port: int) -> bool:
    try:
        return request(port, "GET", "/xcap-root/xcap-caps/global/index")[0].status == 200
    except OSError:
        return False


def test_uwsgi_processes_share_metrics_with_a_multiproc_dir(tmp_path):
    from test_uwsgi_example import uwsgi_binary

    binary = uwsgi_binary()
    if binary is None:
        pytest.skip("uwsgi is not installed (pip install pyuwsgi)") if os.environ.get("CI") != "true" else \
            pytest.fail("uwsgi is required when CI=true")
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(EXAMPLE_UWSGI.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                   + f"metrics_dir = {metrics_dir}\n")  # a setting of [app:main], the ini's last section
    log = open(tmp_path / "uwsgi.log", "wb")
    process = subprocess.Popen([binary, "--ini", str(ini)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    try:
        assert wait_until(lambda: _answers(port)), (tmp_path / "uwsgi.log").read_text()[-3000:]
        start = scrape_total(port)
        statuses: list[int] = []

        def client():
            for _ in range(10):
                statuses.append(request(port, "GET", "/xcap-root/xcap-caps/global/index")[0].status)

        threads = [threading.Thread(target=client) for _ in range(6)]  # busy workers: the router spreads them
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert statuses == [200] * 60
        # Whichever process answers /metrics, it reports every process's requests (without the
        # shared directory each answered with its own count only).
        assert {scrape_total(port) for _ in range(6)} == {start + 60}
        assert list(metrics_dir.glob("counter_*.db"))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
