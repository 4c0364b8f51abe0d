"""Liveness (``/healthz``) and readiness (``/readyz``) of ``xcap-wsgi serve`` (issue 16, point 7):
unauthenticated in front of Digest, outside XCAP routing, readiness following the databases."""

from __future__ import annotations

import os
import socket
import time

import pytest
from serve_support import DOC, DigestClient, read_response, running_serve


def get(port: int, target: str, method: str = "GET"):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        return read_response(s, head_only=method == "HEAD")


def eventually_status(port: int, target: str, status: int, tries: int = 40):
    """The answer once it has the wanted status (the readiness outcome is cached for 1 s)."""
    response = None
    for _ in range(tries):
        response = get(port, target)
        if response.status == status:
            return response
        time.sleep(0.25)
    raise AssertionError(f"{target}: still {response.status} {response.body!r}")


@pytest.mark.parametrize("workers", [1, 2])
def test_health_endpoints_answer_without_credentials_under_digest(tmp_path, workers):
    with running_serve(tmp_path, "--workers", str(workers)) as server:
        live = get(server.port, "/healthz")
        assert (live.status, live.body) == (200, b"ok\n")
        assert live.headers["cache-control"] == "no-store"
        ready = get(server.port, "/readyz")
        assert (ready.status, ready.body) == (200, b"ready\n")
        assert get(server.port, "/readyz", "HEAD").status == 200
        refused = get(server.port, "/healthz", "POST")
        assert refused.status == 405 and refused.headers["allow"] == "GET, HEAD"
        # Only the exact paths are open; everything else still needs Digest.
        assert get(server.port, "/healthz/x").status == 401
        assert get(server.port, DOC).status == 401
        assert DigestClient(server.port).request("GET", DOC).status == 404


def test_health_paths_are_settings(tmp_path):
    with running_serve(tmp_path, "--health-path", "/live", "--ready-path", "/ready") as server:
        assert get(server.port, "/live").status == 200
        assert get(server.port, "/ready").status == 200
        assert get(server.port, "/readyz").status == 401


def test_readiness_follows_the_sqlite_document_store(tmp_path):
    with running_serve(tmp_path, "--auth-db", f"sqlite:///{tmp_path / 'accounts.sqlite3'}",
                       adduser_db=f"sqlite:///{tmp_path / 'accounts.sqlite3'}") \
            as server:
        assert get(server.port, "/readyz").status == 200
        os.rename(tmp_path / "xcap.sqlite3", tmp_path / "moved.sqlite3")  # the volume went away
        try:
            down = eventually_status(server.port, "/readyz", 503)
            assert down.headers["retry-after"].isdigit()
            assert b"document store" in down.body and b"subscriber" not in down.body
            assert get(server.port, "/healthz").status == 200  # alive: do not restart it
        finally:
            os.rename(tmp_path / "moved.sqlite3", tmp_path / "xcap.sqlite3")
        eventually_status(server.port, "/readyz", 200)


def test_readiness_follows_the_subscriber_table(tmp_path):
    accounts = tmp_path / "accounts.sqlite3"
    with running_serve(tmp_path, "--auth-db", f"sqlite:///{accounts}", adduser_db=f"sqlite:///{accounts}") as server:
        assert get(server.port, "/readyz").status == 200
        os.rename(accounts, tmp_path / "moved.sqlite3")
        try:
            down = eventually_status(server.port, "/readyz", 503)
            assert b"subscriber table" in down.body and b"document store" not in down.body
        finally:
            os.rename(tmp_path / "moved.sqlite3", accounts)
        eventually_status(server.port, "/readyz", 200)


def test_readiness_follows_a_private_mariadb_stopped_and_started(tmp_path):
    from test_mysql_store import initdb, private_mariadb

    start, stop = private_mariadb(tmp_path)
    try:
        url = start()
        initdb(url)
        with running_serve(tmp_path, db=url + "?connect_timeout=1") as server:
            assert get(server.port, "/readyz").status == 200
            client = DigestClient(server.port)
            assert client.request("GET", DOC).status == 404  # logged in through MariaDB
            client.close()
            stop()
            down = eventually_status(server.port, "/readyz", 503)
            assert down.headers["retry-after"].isdigit()
            assert get(server.port, "/healthz").status == 200
            start()
            eventually_status(server.port, "/readyz", 200)
    finally:
        stop(check=False)
