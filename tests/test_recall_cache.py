"""The recall cache (turns.py, the ``recall_cache`` setting) is opt-in, MySQL only, and leaves no
document text on the host after DELETE, whole-document PUT or ``purge``; write turns wait for
their locks with a bound and then go on with the plain compare-and-swap loop."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import uuid

import pytest
from conftest import ALICE_DOC, RL_DOC, RL_MIME, call
from mysql_support import db_url, kamailio_database  # noqa: F401  (fixtures)

from xcap_wsgi import turns as turns_module
from xcap_wsgi.build import build_middleware
from xcap_wsgi.settings import resolve
from xcap_wsgi.turns import WriteTurns

FORK = multiprocessing.get_context("fork")
WAIT = 30
EL_MIME = {"Content-Type": "application/xcap-el+xml"}
MARKER = "Zanzibar-" + uuid.uuid4().hex  # text that appears nowhere but in the test's documents


@pytest.fixture(autouse=True)
def runtime(tmp_path, monkeypatch):
    """The private directory of this test's stores (turns, recall file): not the host's /dev/shm."""
    base = tmp_path / "run"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    return base


def _app(db: str, store=None, **given):
    values = resolve({"db": db, "default_domain": "example.com", "anonymous": True, **given}, environ={})
    return build_middleware(None, values, **({"store": store} if store is not None else {}))


def _entry(name: str, display: str) -> bytes:
    return f'<entry uri="sip:{name}@example.com"><display-name>{display}</display-name></entry>'.encode()


def _node(name: str) -> str:
    return f"{ALICE_DOC}/~~/resource-lists/list/entry%5B@uri=%22sip:{name}@example.com%22%5D"


def _write_marked_document(app) -> None:
    """A document, then element edits that put MARKER into it (each edit is remembered)."""
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    assert call(app, "PUT", _node("carol"), _entry("carol", MARKER), **EL_MIME).status_int == 201
    assert call(app, "PUT", _node("dave"), _entry("dave", "Dave"), **EL_MIME).status_int == 201


def _files(*directories) -> list[str]:
    found = []
    for directory in directories:
        for folder, _, names in os.walk(directory):
            found += [os.path.join(folder, name) for name in names]
    return found


def _holding(text: str, *directories, besides: tuple[str, ...] = ()) -> list[str]:
    """Files under ``directories`` (the database files ``besides`` excepted) holding ``text``."""
    needle = text.encode()
    return [path for path in _files(*directories)
            if not path.startswith(besides) and needle in open(path, "rb").read()]


def _recall_files(*directories) -> list[str]:
    return [path for path in _files(*directories) if path.endswith(".last")]


# -- off by default -----------------------------------------------------------------------------


def test_the_setting_is_off_by_default():
    assert resolve({}, environ={})["recall_cache"] is False


def test_off_by_default_sqlite_keeps_no_document_outside_its_database(tmp_path, runtime):
    database = str(tmp_path / "data" / "xcap.sqlite3")
    os.mkdir(os.path.dirname(database))
    app = _app(f"sqlite:///{database}")
    _write_marked_document(app)
    assert b"Bob" in call(app, "GET", ALICE_DOC).body
    assert _recall_files(tmp_path) == []
    assert _holding(MARKER, tmp_path, besides=(database,)) == []  # the database (and -wal) only


def test_sqlite_never_recalls_even_when_asked(tmp_path, runtime):
    database = str(tmp_path / "xcap.sqlite3")
    app = _app(f"sqlite:///{database}", recall_cache="true")
    _write_marked_document(app)
    assert _recall_files(tmp_path) == []
    assert _holding(MARKER, tmp_path, besides=(database,)) == []


def test_off_by_default_mysql_keeps_no_document_on_the_host(db_url, runtime):
    app = _app(db_url)
    _write_marked_document(app)
    assert _recall_files(runtime) == []
    assert _holding(MARKER, runtime) == []


# -- on: forgets -------------------------------------------------------------------------------------


@pytest.fixture
def cached(db_url, runtime):
    """An app on MariaDB with the recall cache on, holding MARKER in its recall file."""
    app = _app(db_url, recall_cache="on")
    _write_marked_document(app)
    assert _recall_files(runtime), "the cache is on: a recall file exists"
    assert _holding(MARKER, runtime), "the cache is on: the edited document is in it"
    yield app
    app.store.close()


def test_delete_leaves_no_byte_of_the_document_in_the_cache(cached, runtime):
    assert call(cached, "DELETE", ALICE_DOC).status_int == 200
    assert _holding(MARKER, runtime) == []
    assert _holding("sip:dave@example.com", runtime) == []


def test_a_whole_document_put_forgets_the_old_text(cached, runtime):
    assert call(cached, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 200
    assert _holding(MARKER, runtime) == []


def test_a_conditional_whole_document_put_forgets_the_old_text(cached, runtime):
    etag = call(cached, "GET", ALICE_DOC).headers["ETag"]
    response = call(cached, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME, "If-Match": etag})
    assert response.status_int == 200  # the store's one-statement write (no read first)
    assert _holding(MARKER, runtime) == []


def test_an_element_delete_leaves_no_tail_of_the_longer_version(cached, runtime):
    """The shorter version written over the longer one must not leave the longer one's tail."""
    assert call(cached, "DELETE", _node("dave")).status_int == 200  # carol (MARKER) is last now
    assert _holding(MARKER, runtime)  # still in the document: remembered
    assert call(cached, "DELETE", _node("carol")).status_int == 200
    assert b"carol" not in call(cached, "GET", ALICE_DOC).body
    assert _holding(MARKER, runtime) == []


def test_purge_from_the_command_line_clears_the_servers_cache(cached, runtime, db_url):
    """``purge`` runs in another process, with the cache off: the server's copy goes all the same."""
    result = subprocess.run(
        [sys.executable, "-m", "xcap_wsgi", "purge", "--user", "sip:alice@example.com", "--yes", "--db", db_url],
        capture_output=True, text=True, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert result.returncode == 0, result.stderr
    assert "deleted 1 document" in result.stdout
    assert _holding(MARKER, runtime) == []


def test_another_document_of_the_same_stripe_pushes_the_older_one_out_whole(db_url, runtime):
    from xcap_wsgi.storage.mysql import MySQLStore

    store = MySQLStore.from_url(db_url, recall_cache=True)
    try:
        turns = store._turns
        name = ALICE_DOC
        twin = next(f"/xcap-root/x/users/sip:u{n}@x/index" for n in range(100000)
                    if turns.stripe(f"/xcap-root/x/users/sip:u{n}@x/index") == turns.stripe(name))
        with turns.turn(name) as turn:
            turn.remember("etag-1", f"<long>{MARKER * 20}</long>".encode())
        with turns.turn(twin) as turn:
            turn.remember("etag-2", b"<short/>")
        assert _holding(MARKER, runtime) == []
    finally:
        store.close()


def test_the_last_store_to_close_removes_the_recall_file(db_url, runtime):
    from xcap_wsgi.storage.mysql import MySQLStore

    first, second = (MySQLStore.from_url(db_url, recall_cache=True) for _ in range(2))
    app = _app(db_url, store=first)
    _write_marked_document(app)
    with second.write_turn(_key()) as turn:
        assert turn.recall() is not None  # both hold the file
    first.close()
    assert len(_recall_files(runtime)) == 1
    second.close()
    assert _recall_files(runtime) == []


def _key():
    from xcap_wsgi.storage import DocumentKey

    return DocumentKey("alice", "example.com", ALICE_DOC, 4)


def _remember_and_die(path, name):
    turns = WriteTurns(path, recall=True)
    with turns.turn(name) as turn:
        turn.remember("etag", f"<doc>{MARKER}</doc>".encode())
    os._exit(0)  # a worker that dies without closing anything


def test_a_recall_file_left_by_dead_processes_is_emptied_by_the_next_one(tmp_path):
    path = str(tmp_path / "turns.lock")
    child = FORK.Process(target=_remember_and_die, args=(path, "/xcap-root/a/users/sip:a@x/index"))
    child.start()
    child.join(WAIT)
    assert _holding(MARKER, tmp_path)
    turns = WriteTurns(path, recall=True)
    with turns.turn("/xcap-root/b/users/sip:b@x/index"):
        pass
    assert _holding(MARKER, tmp_path) == []
    turns.close()
    assert _recall_files(tmp_path) == []


# -- the wait for a turn is bounded -------------------------------------------------------------------


def _hold_turn(path, name, holding, release):
    turns = WriteTurns(path)
    with turns.turn(name):
        holding.set()
        release.wait(WAIT)


@pytest.mark.parametrize("backend", ["sqlite", "mysql-with-cache"])
def test_a_turn_held_elsewhere_is_waited_for_with_a_bound(backend, tmp_path, monkeypatch, request):
    """Another process holds the document's turn (stopped, say): an element PUT still completes
    through the plain compare-and-swap loop once the bounded wait is over."""
    monkeypatch.setattr(turns_module, "TURN_TIMEOUT", 0.3)
    if backend == "sqlite":
        app = _app(f"sqlite:///{tmp_path / 'xcap.sqlite3'}")
    else:
        app = _app(request.getfixturevalue("db_url"), recall_cache="on")
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    assert call(app, "PUT", _node("carol"), _entry("carol", "one"), **EL_MIME).status_int == 201
    store = app.store
    holding, release = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_hold_turn, args=(store._turns.path, ALICE_DOC, holding, release))
    child.start()
    statuses: list[int] = []
    try:
        assert holding.wait(WAIT)
        writer = threading.Thread(target=lambda: statuses.append(
            call(app, "PUT", _node("carol"), _entry("carol", "two"), **EL_MIME).status_int))
        writer.start()
        writer.join(WAIT)
        assert not writer.is_alive(), "the write waited for the held turn without a bound"
    finally:
        release.set()
        child.join(WAIT)
    assert statuses == [200]
    assert b"<display-name>two</display-name>" in call(app, "GET", ALICE_DOC).body
