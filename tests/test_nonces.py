"""Digest replay protection across the processes of a host (xcap_wsgi.nonces): one captured
``Authorization`` header is accepted once in total, whichever worker of ``serve --workers N``
each replay reaches, and a proper client keeps working across workers."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import urllib.request

import pytest
from serve_support import stop_server
from test_digest import authorization
from test_workers import children, free_port, request as http, wait_until

from xcap_wsgi.digest import parse_auth_params
from xcap_wsgi.nonces import LOCK_STRIPES, HostNonceTable, open_host_table, remove_unused_tables, table_name

FORK = multiprocessing.get_context("fork")
WAIT = 20
# A computed document alice may read (xcap-caps needs no login at all).
PATH = "/xcap-root/org.openmobilealliance.xcap-directory/users/sip:alice@example.com/directory.xml"


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path, monkeypatch):
    """Tables of this test go to a runtime directory of its own, not the host's /dev/shm."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return runtime


def _table(tmp_path, capacity=10000, **options) -> HostNonceTable:
    return HostNonceTable(str(tmp_path / "nonces-test.table"), capacity, **options)


# -- the table -------------------------------------------------------------------------------------


def _use_in_child(path, nonce, issued, nc, results):
    results.put(HostNonceTable(path).use(nonce, issued, nc))


def _in_child(path, nonce, issued, nc):
    results = FORK.Queue()
    child = FORK.Process(target=_use_in_child, args=(path, nonce, issued, nc, results))
    child.start()
    state = results.get(timeout=WAIT)
    child.join(WAIT)
    return state


def test_a_count_used_in_one_process_is_a_replay_in_another(tmp_path):
    table = _table(tmp_path)
    assert _in_child(table.path, "nonce-a", 10, 1) == "ok"
    assert table.use("nonce-a", 10, 1) == "replay"
    assert table.use("nonce-a", 10, 2) == "ok"
    assert _in_child(table.path, "nonce-a", 10, 2) == "replay"
    assert _in_child(table.path, "nonce-a", 10, 3) == "ok"
    assert table.use("nonce-b", 10, 1) == "ok"  # another nonce has counts of its own


def test_a_forked_child_of_a_process_holding_the_table_shares_it(tmp_path):
    """uWSGI without lazy-apps builds the app in the master and forks the workers from it."""
    table = _table(tmp_path)
    assert table.use("nonce-f", 10, 1) == "ok"
    results = FORK.Queue()
    child = FORK.Process(target=lambda: results.put((table.use("nonce-f", 10, 1), table.use("nonce-f", 10, 2))))
    child.start()
    assert results.get(timeout=WAIT) == ("replay", "ok")
    child.join(WAIT)
    assert table.use("nonce-f", 10, 2) == "replay"


def test_window_of_counts_out_of_order(tmp_path):
    table = _table(tmp_path)
    assert table.use("n", 5, 5) == "ok"
    assert table.use("n", 5, 3) == "ok"  # concurrent requests may arrive out of order
    assert table.use("n", 5, 3) == "replay"
    assert table.use("n", 5, 200) == "ok"
    assert table.use("n", 5, 100) == "replay"  # fell out of the 64-value window: never trusted again


def test_the_table_is_bounded_and_forgotten_nonces_are_stale(tmp_path):
    table = _table(tmp_path, capacity=8)  # one bucket of 8 slots
    size = os.path.getsize(table.path)
    for issued in range(1, 21):
        assert table.use(f"n{issued}", issued, 1) == "ok"
    assert os.path.getsize(table.path) == size and len(table) == 8
    assert table.use("n1", 1, 1) == "stale"  # evicted: never accepted twice
    assert table.use("n1", 1, 2) == "stale"  # nor with a fresh count
    assert table.use("n20", 20, 2) == "ok"  # recent ones keep working
    table.forget_older_than(15)
    assert len(table) == 6
    assert table.use("n21", 21, 1) == "ok"  # took an expired slot: nothing more is forgotten
    assert table.use("n20", 20, 1) == "replay"


def test_many_threads_accept_each_count_once(tmp_path):
    table = _table(tmp_path)
    results: list[str] = []
    lock = threading.Lock()

    def worker(nc):
        for _ in range(3):
            state = table.use("shared", 7, nc)
            with lock:
                results.append(state)

    threads = [threading.Thread(target=worker, args=(nc,)) for nc in range(1, 41)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 40 and results.count("replay") == 80


def _hold_every_stripe(path, holding, release):
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX, LOCK_STRIPES, 1)
    holding.set()
    release.wait(WAIT)


def test_a_held_lock_is_waited_for_with_a_bound_and_then_refused(tmp_path):
    """A process stopped while holding the table's lock must not hang the others: fail closed."""
    table = _table(tmp_path, lock_timeout=0.2)
    holding, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_hold_every_stripe, args=(table.path, holding, release))
    child.start()
    try:
        assert holding.wait(WAIT)
        assert table.use("locked-out", 9, 1) == "stale"
    finally:
        release.set()
        child.join(WAIT)
    assert table.use("locked-out", 9, 1) == "ok"


# -- where the table lives ----------------------------------------------------------------------------


def test_the_table_is_named_by_a_mac_of_the_secret_in_a_private_directory(private_runtime_dir):
    table = open_host_table(b"secret one", "example.com")
    assert table is not None
    directory = os.path.dirname(table.path)
    assert directory == str(private_runtime_dir / f"xcap-wsgi-{os.getuid()}")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(table.path).st_mode) == 0o600
    name = os.path.basename(table.path)
    assert "secret" not in name and "example" not in name
    assert name != table_name(b"secret two", "example.com") != table_name(b"secret one", "other.org")
    assert open_host_table(b"secret one", "example.com") is table  # one object per file and process


def test_a_directory_open_to_others_is_refused(private_runtime_dir, tmp_path):
    loose = private_runtime_dir / f"xcap-wsgi-{os.getuid()}"
    loose.mkdir()
    loose.chmod(0o777)
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    table = open_host_table(b"k", "r", bases=(str(private_runtime_dir), str(fallback)))
    assert table is not None and table.path.startswith(str(fallback))
    assert not os.listdir(loose)
    assert open_host_table(b"k", "r", bases=(str(private_runtime_dir),)) is None  # per process only then


def test_unused_expired_tables_are_removed_and_held_ones_kept(tmp_path):
    held = HostNonceTable(str(tmp_path / "nonces-held.table"), lifetime=60)
    unused = HostNonceTable(str(tmp_path / "nonces-unused.table"), lifetime=60)
    assert held.use("a", 1, 1) == "ok" and unused.use("b", 1, 1) == "ok"
    unused.close()
    results = FORK.Queue()  # another process (this one holds every table it opened)
    child = FORK.Process(target=lambda: results.put(remove_unused_tables(str(tmp_path))))
    child.start()
    assert results.get(timeout=WAIT) == []  # the unused one's nonces may still be valid
    child.join(WAIT)
    later = FORK.Process(target=lambda: results.put(remove_unused_tables(str(tmp_path), now=10 ** 12)))
    later.start()
    assert results.get(timeout=WAIT) == ["nonces-unused.table"]
    later.join(WAIT)
    assert os.path.exists(held.path)


# -- through serve --workers N ---------------------------------------------------------------------------


@pytest.fixture(params=[2, 3], ids=["2-workers", "3-workers"])
def digest_workers(request, tmp_path, private_runtime_dir):
    workers = request.param
    url = f"sqlite:///{tmp_path / 'xcap.sqlite3'}"
    added = subprocess.run([sys.executable, "-m", "xcap_wsgi", "adduser", "alice@example.com",
                            "--password", "wonder land", "--db", url], capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--port", str(port), "--workers", str(workers),
         "--threads", "2", "--db", url, "--default-domain", "example.com"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "XDG_RUNTIME_DIR": str(private_runtime_dir)},
    )
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()

    def answers():
        if process.poll() is not None:
            raise AssertionError(f"the server stopped (status {process.returncode}): {''.join(output)}")
        try:
            http(port, "GET", PATH)
            return True
        except OSError:
            return False

    assert wait_until(lambda: len(children(process.pid)) == workers), ''.join(output)
    assert wait_until(answers), ''.join(output)
    pids = set(children(process.pid))
    yield port, workers
    stop_server(process, pids | set(children(process.pid)))


def _challenge(port):
    response, _ = http(port, "GET", PATH)
    assert response.status == 401
    first = response.headers.get_all("WWW-Authenticate")[0]  # MD5, offered first
    scheme, _, params = first.partition(" ")
    assert scheme == "Digest"
    return parse_auth_params(params)


def test_a_captured_authorization_is_accepted_once_across_workers(digest_workers):
    port, workers = digest_workers
    chal = _challenge(port)
    captured = authorization(chal, "alice", "wonder land", uri=PATH)
    statuses = [http(port, "GET", PATH, headers={"Authorization": captured})[0].status
                for _ in range(12 * workers)]  # a fresh connection each: the kernel spreads them
    assert statuses.count(200) == 1, statuses
    assert set(statuses) == {200, 401}


def test_a_client_counting_up_is_served_by_every_worker(digest_workers):
    port, workers = digest_workers
    chal = _challenge(port)
    for nc in range(1, 12 * workers + 1):
        header = authorization(chal, "alice", "wonder land", uri=PATH, nc=f"{nc:08x}", cnonce=f"c{nc}")
        response, body = http(port, "GET", PATH, headers={"Authorization": header})
        assert response.status == 200, (nc, body)
    # RFC 7616 §3.4: the server may accept counts out of order (concurrent requests)
    late = authorization(chal, "alice", "wonder land", uri=PATH, nc=f"{12 * workers + 5:08x}", cnonce="late")
    early = authorization(chal, "alice", "wonder land", uri=PATH, nc=f"{12 * workers + 3:08x}", cnonce="early")
    assert http(port, "GET", PATH, headers={"Authorization": late})[0].status == 200
    assert http(port, "GET", PATH, headers={"Authorization": early})[0].status == 200
    assert http(port, "GET", PATH, headers={"Authorization": early})[0].status == 401


def test_urllibs_digest_client_works_across_workers(digest_workers):
    port, workers = digest_workers
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, f"http://127.0.0.1:{port}/", "alice", "wonder land")
    opener = urllib.request.build_opener(urllib.request.HTTPDigestAuthHandler(passwords))
    for _ in range(6 * workers):  # every request: a challenge from one worker, the answer to any
        with opener.open(f"http://127.0.0.1:{port}{PATH}", timeout=10) as response:
            assert response.status == 200


# -- the host secret: processes not forked from one serve share nonces without a setting ----------


def _whoami(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ.get("REMOTE_USER", "").encode()]


def _digest_app(db_url):
    from xcap_wsgi.digest import from_settings
    from xcap_wsgi.settings import resolve

    return from_settings(_whoami, resolve({"db": db_url, "default_domain": "example.com"}, environ={}))


def test_host_secret_is_one_private_file_shared_by_every_caller(private_runtime_dir):
    from xcap_wsgi.nonces import host_secret

    first = host_secret()
    assert first is not None and len(first) == 32
    assert host_secret() == first  # made once, read afterwards
    (path,) = [p for p in private_runtime_dir.rglob("nonce-secret")]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_loose_host_secret_file_is_not_used(private_runtime_dir):
    from xcap_wsgi.nonces import host_secret

    host_secret()
    (path,) = [p for p in private_runtime_dir.rglob("nonce-secret")]
    path.chmod(0o644)
    assert host_secret() is None


def test_without_nonce_secret_separately_built_servers_accept_each_others_nonces_once(tmp_path):
    """As uWSGI's lazy-apps workers do: each builds its own app. A nonce one issued works in the
    other (no new login per request), and a captured header is still accepted once in all."""
    from webob import Request

    subprocess.run([sys.executable, "-m", "xcap_wsgi", "adduser", "alice@example.com", "--password", "wonder land",
                    "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"], check=True, capture_output=True)
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    first, second = _digest_app(url), _digest_app(url)
    path = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    response = Request.blank(path).get_response(first)
    chal = parse_auth_params(response.headers.getall("WWW-Authenticate")[0].partition(" ")[2])
    header = authorization(chal, "alice", "wonder land", uri=path)
    statuses = [Request.blank(path, headers={"Authorization": header}).get_response(app).status_int
                for app in (second, first, second)]
    assert statuses == [200, 401, 401]
