"""examples/uwsgi.ini, uWSGI's HTTP router in front of
3 processes x 2 threads over a private Unix socket, serving real requests."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import RL_DOC, RL_MIME
from test_workers import children, free_port, request, wait_until

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "uwsgi.ini"
DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
LIST = DOC + '/~~/resource-lists/list%5B@name=%22friends%22%5D'


def uwsgi_binary() -> str | None:
    beside = Path(sys.executable).with_name("uwsgi")
    return str(beside) if beside.exists() else shutil.which("uwsgi")


@pytest.fixture
def served(tmp_path):
    binary = uwsgi_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("uwsgi (pip install pyuwsgi, in the test extras) is required when CI=true")
        pytest.skip("uwsgi is not installed (pip install pyuwsgi)")
    port = free_port()
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(EXAMPLE.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    log = open(tmp_path / "uwsgi.log", "wb")
    process = subprocess.Popen([binary, "--ini", str(ini)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)

    def answers():
        assert process.poll() is None, (tmp_path / "uwsgi.log").read_text()[-3000:]
        try:
            return request(port, "GET", "/xcap-root/xcap-caps/global/index")[0].status == 200
        except OSError:
            return False

    try:
        assert wait_until(answers), (tmp_path / "uwsgi.log").read_text()[-3000:]
        yield port, process, tmp_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        log.close()


def test_the_recommended_layout_runs_three_workers_behind_a_private_socket(served):
    port, process, folder = served
    socket_file = folder / "xcap-wsgi-uwsgi.sock"
    assert stat.S_ISSOCK(socket_file.stat().st_mode)
    assert stat.S_IMODE(socket_file.stat().st_mode) == 0o600  # no other local user speaks uwsgi to it
    # the master's children: the HTTP router and 3 workers
    assert wait_until(lambda: len(children(process.pid)) == 4), children(process.pid)


def test_concurrent_element_puts_through_the_router_lose_nothing(served):
    port, _, _ = served
    response, _ = request(port, "PUT", DOC, RL_DOC, {"Content-Type": RL_MIME})
    assert response.status == 201
    statuses: list[int] = []

    def writer(n: int) -> None:
        for i in range(8):
            uri = f"sip:w{n}-{i}@example.com"
            path = LIST + f"/entry%5B@uri=%22{uri}%22%5D"
            answer, _ = request(port, "PUT", path, f'<entry uri="{uri}"/>'.encode(),
                                {"Content-Type": "application/xcap-el+xml"})
            statuses.append(answer.status)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [201] * 48
    response, body = request(port, "GET", DOC)
    assert response.status == 200
    for n in range(6):
        for i in range(8):
            assert f'uri="sip:w{n}-{i}@example.com"'.encode() in body


def test_health_endpoints_answer_under_uwsgi(served):
    """The paste app of the example carries /healthz and /readyz too (issue 16.7)."""
    port, _, _ = served
    response, body = request(port, "GET", "/healthz")
    assert (response.status, body) == (200, b"ok\n")
    response, body = request(port, "GET", "/readyz")
    assert (response.status, body) == (200, b"ready\n")
