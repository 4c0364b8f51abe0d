"""examples/pyramid_app.py through WebTest: the app's security policy feeds XCAP's identity."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import RL_DOC, RL_MIME
from webtest import TestApp

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "pyramid_app.py"
ALICE_DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
BOB_DOC = "/xcap-root/resource-lists/users/sip:bob@example.com/index"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("pyramid_app_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Pyramid's Configurator looks up its caller's package
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def wsgi_app(example, tmp_path):
    return example.create_app(f"sqlite:///{tmp_path / 'xcap.sqlite3'}", secret="test-secret")


@pytest.fixture
def client(wsgi_app):
    return TestApp(wsgi_app)


def login(client, username, password, status=302):
    return client.post("/login", {"username": username, "password": password}, status=status)


def test_app_pages_still_work(client):
    assert "Not logged in" in client.get("/", status=200).text
    assert client.get("/account", status=302).location.endswith("/login")  # Pyramid's forbidden view
    client.get("/no-such-page", status=404)
    login(client, "alice", "alice-secret")
    assert "Logged in as alice" in client.get("/", status=200).text
    assert "sip:alice@example.com" in client.get("/account", status=200).text


def test_login_put_get_cycle(client):
    login(client, "alice", "alice-secret")
    created = client.put(ALICE_DOC, RL_DOC, headers={"Content-Type": RL_MIME}, status=201)
    got = client.get(ALICE_DOC, status=200)
    assert got.body == RL_DOC
    assert got.headers["ETag"] == created.headers["ETag"]
    assert got.headers["Content-Type"] == RL_MIME


def test_without_login_401_with_a_challenge(client):
    response = client.get(ALICE_DOC, status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    client.put(ALICE_DOC, RL_DOC, headers={"Content-Type": RL_MIME}, status=401)
    login(client, "alice", "wrong", status=401)
    client.get(ALICE_DOC, status=401)


def test_someone_elses_document_is_403(wsgi_app):
    bob = TestApp(wsgi_app)
    login(bob, "bob", "bob-secret")
    bob.put(BOB_DOC, RL_DOC, headers={"Content-Type": RL_MIME}, status=201)
    alice = TestApp(wsgi_app)
    login(alice, "alice", "alice-secret")
    alice.get(BOB_DOC, status=403)
    alice.put(BOB_DOC, RL_DOC, headers={"Content-Type": RL_MIME}, status=403)
    alice.delete(BOB_DOC, status=403)
    assert bob.get(BOB_DOC, status=200).body == RL_DOC


def test_ticket_signed_with_another_secret_is_no_identity(example, wsgi_app, tmp_path):
    alice = TestApp(wsgi_app)
    login(alice, "alice", "alice-secret")
    ticket = alice.cookies["auth_tkt"]
    other = TestApp(example.create_app(f"sqlite:///{tmp_path / 'other.sqlite3'}", secret="another-secret"))
    other.set_cookie("auth_tkt", ticket)
    other.get(ALICE_DOC, status=401)
    genuine = TestApp(wsgi_app)
    genuine.set_cookie("auth_tkt", ticket)
    genuine.get(ALICE_DOC, status=404)  # authenticated, no document yet


def test_logout_ends_xcap_access(client):
    login(client, "alice", "alice-secret")
    client.put(ALICE_DOC, RL_DOC, headers={"Content-Type": RL_MIME}, status=201)
    client.post("/logout", status=302)
    client.get(ALICE_DOC, status=401)


def test_sip_clients_use_basic_through_the_policy(client):
    client.authorization = ("Basic", ("alice", "alice-secret"))
    client.put(ALICE_DOC, RL_DOC, headers={"Content-Type": RL_MIME}, status=201)
    assert client.get(ALICE_DOC, status=200).body == RL_DOC
    client.authorization = ("Basic", ("alice", "bob-secret"))
    client.get(ALICE_DOC, status=401)
    client.authorization = ("Basic", ("bob", "bob-secret"))
    client.get(ALICE_DOC, status=403)
