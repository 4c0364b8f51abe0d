"""``xcap-wsgi serve --workers N``: N waitress processes on one socket, supervised by the parent."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from conftest import RL_DOC, RL_MIME
from serve_support import stop_server

DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def request(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


@pytest.fixture
def workers(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--port", str(port), "--workers", "3",
         "--threads", "2", "--db", f"sqlite:///{tmp_path / 'xcap.sqlite3'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    banner = process.stdout.readline()
    output: list[str] = []  # what the server printed after its banner, for failure messages
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    assert wait_until(lambda: len(children(process.pid)) == 3), f"three workers: {''.join(output)}"

    def answers():
        if process.poll() is not None:
            raise AssertionError(f"the server stopped (status {process.returncode}): {''.join(output)}")
        try:
            request(port, "GET", "/xcap-root/xcap-caps/global/index")
            return True
        except OSError:
            return False

    assert wait_until(answers), ''.join(output)
    pids = set(children(process.pid))
    yield process, port, banner
    stop_server(process, pids | set(children(process.pid)))


def test_banner_names_workers_and_threads(workers):
    _, port, banner = workers
    assert f"http://127.0.0.1:{port}/xcap-root/" in banner
    assert "workers=3 threads=2" in banner


def test_every_worker_serves_the_same_database(workers):
    _, port, _ = workers
    response, _ = request(port, "PUT", DOC, RL_DOC, {"Content-Type": RL_MIME})
    assert response.status == 201
    etag = response.getheader("ETag")
    for _ in range(12):  # new connections land on any of the workers
        response, body = request(port, "GET", DOC)
        assert response.status == 200 and body == RL_DOC and response.getheader("ETag") == etag


def test_a_dead_worker_is_replaced(workers):
    process, port, _ = workers
    victim = children(process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: not alive(victim) and len(children(process.pid)) == 3)
    response, _ = request(port, "GET", "/xcap-root/xcap-caps/global/index")
    assert response.status == 200


def test_sigterm_stops_the_parent_and_every_worker(workers):
    process, port, _ = workers
    pids = children(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert wait_until(lambda: not any(alive(pid) for pid in pids))
    with pytest.raises(OSError):
        request(port, "GET", "/xcap-root/xcap-caps/global/index")


def test_workers_do_not_outlive_a_killed_parent(workers):
    """SIGKILL leaves the parent no chance to forward anything: the workers still stop
    (PR_SET_PDEATHSIG) instead of holding the port for ever."""
    process, port, _ = workers
    pids = children(process.pid)
    assert pids
    process.kill()
    process.wait(15)
    assert wait_until(lambda: not any(alive(pid) for pid in pids))


def test_a_worker_that_cannot_start_stops_the_server(tmp_path):
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--port", str(port), "--workers", "2",
         "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}", "--auth-db", "notascheme://nowhere"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "xcap-wsgi:" in result.stderr


def test_the_banner_comes_once_a_worker_listens(tmp_path):
    """The start-up line means "serving": a connection made right after it is accepted."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--port", str(port), "--workers", "2",
         "--db", f"sqlite:///{tmp_path / 'xcap.sqlite3'}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        assert "serving XCAP at" in process.stdout.readline()
        response, _ = request(port, "GET", "/xcap-root/xcap-caps/global/index")
        assert response.status == 200
    finally:
        process.terminate()
        process.wait(15)


def test_a_worker_that_cannot_start_once_the_server_serves_is_tried_again(tmp_path):
    """A replacement worker that fails its start-up (here: the subscriber table is gone) does not
    stop a server that already serves: the other worker serves on, and the replacement is started
    again until it works (the table is back)."""
    from xcap_wsgi.cli import main as cli

    auth = tmp_path / "auth.sqlite3"
    assert cli(["adduser", "alice@example.com", "--password", "secret", "--db", f"sqlite:///{auth}"]) == 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--port", str(port), "--workers", "2", "--threads", "2",
         "--db", f"sqlite:///{tmp_path / 'xcap.sqlite3'}", "--auth-db", f"sqlite:///{auth}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    pids: set[int] = set()
    try:
        assert wait_until(lambda: len(children(process.pid)) == 2), "".join(output)
        assert wait_until(lambda: any("serving XCAP at" in line for line in output)), "".join(output)
        with sqlite3.connect(auth) as db:
            db.execute("ALTER TABLE subscriber RENAME TO subscriber_away")
        victim = children(process.pid)[0]
        pids |= set(children(process.pid))
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: any("trying again in" in line for line in output), 30), "".join(output)
        assert process.poll() is None, "".join(output)
        response, _ = request(port, "GET", "/xcap-root/xcap-caps/global/index")  # the other worker
        assert response.status in (200, 503), response.status
        with sqlite3.connect(auth) as db:
            db.execute("ALTER TABLE subscriber_away RENAME TO subscriber")
        assert wait_until(lambda: len(children(process.pid)) == 2 and process.poll() is None, 40), "".join(output)
        started = len([line for line in output if "trying again in" in line])
        time.sleep(3)  # the replacement stays up: no new failure is reported
        assert len([line for line in output if "trying again in" in line]) == started, "".join(output)
        pids |= set(children(process.pid))
    finally:
        stop_server(process, pids)


def test_one_worker_per_cpu_is_the_default():
    from xcap_wsgi.settings import BY_NAME

    assert BY_NAME["workers"].default == 0  # 0: one per CPU (cli.usable_cpus)


def test_automatic_workers_are_one_per_usable_cpu_at_most_eight():
    from xcap_wsgi.cli import AUTO_WORKERS_MAX, usable_cpus

    expected = min(len(os.sched_getaffinity(0)), AUTO_WORKERS_MAX)
    assert usable_cpus() == expected and 1 <= expected <= 8


@pytest.mark.parametrize("db, auth_db, expected", [
    ("sqlite:///xcap.sqlite3", None, 1),
    ("mysql://u:p@127.0.0.1:3306/kamailio", None, 1),
    ("mysql://u:p@localhost/kamailio", None, 1),
    ("mysql://u:p@[::1]:3306/kamailio", None, 1),
    ("mysql://u:p@db.example.net/kamailio?unix_socket=/run/mysqld/mysqld.sock", None, 1),
    ("mysql://u:p@127.0.0.1:3306,127.0.0.2:3307/kamailio", None, 1),
    ("mysql://u:p@db.example.net/kamailio", None, 2),
    ("mysql://u:p@10.0.0.7:3306/kamailio", None, 2),
    ("mysql://u:p@127.0.0.1:3306,10.0.0.8:3306/kamailio", None, 2),  # one distant Galera node is enough
    ("sqlite:///xcap.sqlite3", "mysql://u:p@db.example.net/kamailio", 2),  # Digest reads the subscriber table
])
def test_automatic_threads_follow_where_the_databases_are(db, auth_db, expected):
    from xcap_wsgi.cli import auto_threads
    from xcap_wsgi.settings import BY_NAME, Settings

    assert BY_NAME["threads"].default == 0
    assert auto_threads(Settings(db=db, auth_db=auth_db)) == expected


def test_serve_on_its_defaults_runs_one_thread_per_process_on_sqlite(tmp_path):
    from serve_support import running_serve

    with running_serve(tmp_path, "--workers", "2") as served:
        assert "workers=2 threads=1" in served.log, served.log
