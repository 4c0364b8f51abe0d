"""examples/flask_app.py through Flask's own test client: the app's login feeds XCAP's identity."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import pytest
from conftest import RL_DOC, RL_MIME

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "flask_app.py"
ALICE_DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
BOB_DOC = "/xcap-root/resource-lists/users/sip:bob@example.com/index"


def load_example():
    spec = importlib.util.spec_from_file_location("flask_app_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return load_example()


@pytest.fixture
def app(example, tmp_path):
    app = example.create_app(f"sqlite:///{tmp_path / 'xcap.sqlite3'}", secret_key="test-secret")
    app.config["TESTING"] = True
    return app


def login(client, username, password):
    return client.post("/login", data={"username": username, "password": password})


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_app_pages_still_work(app):
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"Not logged in" in page.data
    assert client.get("/login").status_code == 200
    assert client.get("/no-such-page").status_code == 404  # Flask's 404, not XCAP's


def test_session_login_put_get_cycle(app):
    client = app.test_client()
    assert login(client, "alice", "alice-secret").status_code == 302
    assert b"Logged in as alice" in client.get("/").data
    created = client.put(ALICE_DOC, data=RL_DOC, content_type=RL_MIME)
    assert created.status_code == 201
    etag = created.headers["ETag"]
    got = client.get(ALICE_DOC)
    assert got.status_code == 200
    assert got.data == RL_DOC
    assert got.headers["ETag"] == etag
    assert got.headers["Content-Type"] == RL_MIME


def test_without_login_401_with_a_challenge(app):
    client = app.test_client()
    response = client.get(ALICE_DOC)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert client.put(ALICE_DOC, data=RL_DOC, content_type=RL_MIME).status_code == 401


def test_wrong_password_gives_no_session(app):
    client = app.test_client()
    assert login(client, "alice", "wrong").status_code == 401
    assert client.get(ALICE_DOC).status_code == 401


def test_someone_elses_document_is_403(app):
    bob = app.test_client()
    login(bob, "bob", "bob-secret")
    assert bob.put(BOB_DOC, data=RL_DOC, content_type=RL_MIME).status_code == 201
    alice = app.test_client()
    login(alice, "alice", "alice-secret")
    assert alice.get(BOB_DOC).status_code == 403
    assert alice.put(BOB_DOC, data=RL_DOC, content_type=RL_MIME).status_code == 403
    assert alice.delete(BOB_DOC).status_code == 403
    assert bob.get(BOB_DOC).data == RL_DOC  # untouched


def test_forged_or_foreign_session_cookie_is_no_identity(example, app, tmp_path):
    client = app.test_client()
    login(client, "alice", "alice-secret")
    cookie = client.get_cookie("session")
    assert cookie is not None
    # the same cookie signed by another app's key is worthless here
    other = example.create_app(f"sqlite:///{tmp_path / 'other.sqlite3'}", secret_key="another-secret").test_client()
    other.set_cookie("session", cookie.value)
    assert other.get(ALICE_DOC).status_code == 401
    # a tampered cookie too
    forged = app.test_client()
    forged.set_cookie("session", cookie.value[:-2] + ("AA" if not cookie.value.endswith("AA") else "BB"))
    assert forged.get(ALICE_DOC).status_code == 401
    # and the genuine one works
    genuine = app.test_client()
    genuine.set_cookie("session", cookie.value)
    assert genuine.get(ALICE_DOC).status_code == 404  # authenticated: no document yet


def test_logout_ends_xcap_access(app):
    client = app.test_client()
    login(client, "alice", "alice-secret")
    assert client.put(ALICE_DOC, data=RL_DOC, content_type=RL_MIME).status_code == 201
    assert client.post("/logout").status_code == 302
    assert client.get(ALICE_DOC).status_code == 401


def test_sip_clients_use_basic_with_the_same_user_table(app):
    client = app.test_client()
    assert client.put(ALICE_DOC, data=RL_DOC, content_type=RL_MIME,
                      headers=basic("alice", "alice-secret")).status_code == 201
    assert client.get(ALICE_DOC, headers=basic("alice", "alice-secret")).data == RL_DOC
    assert client.get(ALICE_DOC, headers=basic("alice", "bob-secret")).status_code == 401
    assert client.get(ALICE_DOC, headers=basic("bob", "bob-secret")).status_code == 403
    assert client.get(ALICE_DOC, headers={"Authorization": "Basic !!!"}).status_code == 401
