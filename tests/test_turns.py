"""Write turns (xcap_wsgi.turns): read-modify-writes of one document wait for each other across
processes, instead of losing the compare-and-swap and redoing their work."""

from __future__ import annotations

import multiprocessing
import os
import stat

import pytest
from conftest import ALICE_DOC, RL_DOC, RL_MIME, CountingStore, call

from xcap_wsgi import XCAPMiddleware
from xcap_wsgi.storage import SQLiteStore
from xcap_wsgi.turns import WriteTurns, host_turns_path

FORK = multiprocessing.get_context("fork")
WAIT = 20  # seconds any step may take on a loaded machine before the test gives up


def _hold_other(path, name, trying, acquired):
    """Child: announce, take the turn for ``name``, say so, give it back."""
    turns = WriteTurns(path)
    trying.set()
    with turns.turn(name):
        acquired.set()


def _start_child(path, name):
    trying, acquired = FORK.Event(), FORK.Event()
    child = FORK.Process(target=_hold_other, args=(path, name, trying, acquired))
    child.start()
    assert trying.wait(WAIT)
    return child, acquired


def test_another_process_waits_for_the_turn_on_the_same_document(tmp_path):
    turns = WriteTurns(str(tmp_path / "turns.lock"))
    with turns.turn("/xcap-root/resource-lists/users/sip:alice@example.com/index"):
        assert turns.shared
        child, acquired = _start_child(turns.path, "/xcap-root/resource-lists/users/sip:alice@example.com/index")
        assert not acquired.wait(0.5), "the other process took a turn that was held"
    assert acquired.wait(WAIT), "the other process never got the turn after it was given back"
    child.join(WAIT)
    assert child.exitcode == 0


def test_a_block_that_raises_gives_the_turn_back(tmp_path):
    """Both locks of a turn (this process's and the lock file's stripe) are given back when the
    block fails, so the next writer of the document, here or in another process, gets it at once."""
    turns = WriteTurns(str(tmp_path / "turns.lock"))
    name = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    with pytest.raises(RuntimeError), turns.turn(name):
        raise RuntimeError("a failing edit")
    assert not turns._locks[turns.stripe(name)].locked()
    child, acquired = _start_child(turns.path, name)
    assert acquired.wait(WAIT), "the other process waited for a turn that was given back"
    child.join(WAIT)
    with turns.turn(name) as turn:  # and this process takes it again at once
        assert turn is not None


def test_a_turn_on_another_document_does_not_wait(tmp_path):
    turns = WriteTurns(str(tmp_path / "turns.lock"))
    alice, bob = "/xcap-root/pres-rules/users/sip:alice@example.com/index", "/xcap-root/pres-rules/users/sip:bob@x/index"
    assert turns.stripe(alice) != turns.stripe(bob)
    with turns.turn(alice):
        child, acquired = _start_child(turns.path, bob)
        assert acquired.wait(WAIT), "a turn on a different stripe waited for this one"
    child.join(WAIT)


def test_a_forked_child_does_not_share_the_parents_turns(tmp_path):
    """An OFD lock belongs to an open file: a child that kept the descriptor the parent opened
    before the fork (as pre-forking servers do) would hold the parent's turns as its own."""
    turns = WriteTurns(str(tmp_path / "turns.lock"))
    name = "/xcap-root/rls-services/users/sip:carol@example.com/index"
    with turns.turn(name):  # opens the lock file in this process
        assert turns.shared
    go, trying, acquired = FORK.Event(), FORK.Event(), FORK.Event()

    def same_object_in_child():
        assert go.wait(WAIT)
        trying.set()
        with turns.turn(name):
            acquired.set()

    child = FORK.Process(target=same_object_in_child)
    child.start()
    with turns.turn(name):
        go.set()
        assert trying.wait(WAIT)
        assert not acquired.wait(0.5), "the forked child took the parent's turn through the inherited file"
    assert acquired.wait(WAIT)
    child.join(WAIT)


def test_stripes_are_the_same_in_every_process():
    """``hash()`` of a str differs between interpreters; the stripe must not."""
    import subprocess
    import sys

    name = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    program = f"from xcap_wsgi.turns import WriteTurns; print(WriteTurns().stripe({name!r}))"
    stripes = {int(subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout)
               for seed in ("1", "2", "3")}
    assert stripes == {WriteTurns().stripe(name)}
    assert WriteTurns().stripe(name) == WriteTurns().stripe(name.upper())  # case variants reach one MySQL row


def test_without_a_lock_file_turns_are_per_process(tmp_path):
    assert not WriteTurns(None).shared
    assert not WriteTurns(str(tmp_path / "no-such-dir" / "turns.lock")).shared
    with WriteTurns(str(tmp_path / "no-such-dir" / "turns.lock")).turn("doc"):
        pass  # still usable: the compare-and-swap decides


def test_the_host_lock_directory_is_private(tmp_path):
    bases = (str(tmp_path),)
    path = host_turns_path("mysql://kamailio@127.0.0.1:3306/kamailio/xcap", bases)
    assert path is not None and path != host_turns_path("mysql://kamailio@127.0.0.1:3306/other/xcap", bases)
    info = os.lstat(os.path.dirname(path))
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    assert "kamailio" not in os.path.basename(path)  # names a hash, not the database
    os.chmod(os.path.dirname(path), 0o777)  # somebody else could plant or hold the lock file
    assert host_turns_path("mysql://kamailio@127.0.0.1:3306/kamailio/xcap", bases) is None
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    assert host_turns_path("x", (str(tmp_path), str(fallback))).startswith(str(fallback))


# -- through the middleware --------------------------------------------------------------------


def _add_entries(path, worker, count, start, results):
    import time

    store = CountingStore(SQLiteStore(path), read_delay=0.02)
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    while time.time() < start:
        time.sleep(0.001)
    statuses = []
    for i in range(count):
        node = f"{ALICE_DOC}/~~/resource-lists/list/entry%5B@uri=%22sip:p{worker}-{i}@example.com%22%5D"
        body = f'<entry uri="sip:p{worker}-{i}@example.com"/>'.encode()
        statuses.append(call(app, "PUT", node, body, **{"Content-Type": "application/xcap-el+xml"}).status_int)
    results.put((statuses, store.puts))


def test_element_puts_from_several_processes_each_write_once(tmp_path):
    """With the store's turns, no process redoes an edit because another process changed the
    document in between: every element PUT writes exactly once. (With turns per process only,
    this fails: some writes lose the compare-and-swap and are redone; nothing is lost.)"""
    import time

    path = str(tmp_path / "xcap.sqlite3")
    setup = XCAPMiddleware(None, store=SQLiteStore(path), default_domain="example.com")
    assert call(setup, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    workers, count, results = 3, 6, FORK.Queue()
    start = time.time() + 1.0
    processes = [FORK.Process(target=_add_entries, args=(path, w, count, start, results)) for w in range(workers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(WAIT)
    assert all(status == 201 for statuses, _ in outcomes for status in statuses)
    document = call(setup, "GET", ALICE_DOC).body
    assert all(f"sip:p{w}-{i}@example.com".encode() in document for w in range(workers) for i in range(count))
    assert sum(puts for _, puts in outcomes) == workers * count


# -- recalling the last write of a document --------------------------------------------------

from mysql_support import db_url, kamailio_database  # noqa: E402,F401  (fixtures)

from xcap_wsgi.storage import DocumentKey  # noqa: E402
from xcap_wsgi.storage.mysql import MySQLStore  # noqa: E402
from xcap_wsgi.turns import RECALL_MAX_BYTES  # noqa: E402

ENTRY = f"{ALICE_DOC}/~~/resource-lists/list/entry%5B@uri=%22sip:carol@example.com%22%5D"
EL_MIME = {"Content-Type": "application/xcap-el+xml"}
KEY = DocumentKey("alice", "example.com", ALICE_DOC, 4)


@pytest.fixture
def stores(db_url):
    """(the app's counting store with the recall cache on, another store on the same database:
    Kamailio or another host). The recall cache is MySQL only (never for SQLite)."""
    mine, other = MySQLStore.from_url(db_url, recall_cache=True), MySQLStore.from_url(db_url)
    yield CountingStore(mine), other
    mine.close()
    other.close()


def _entry(name: str, display: str = "") -> bytes:
    return f'<entry uri="sip:{name}@example.com"><display-name>{display}</display-name></entry>'.encode()


def test_an_edit_after_an_edit_on_this_host_skips_the_read(stores):
    store, _ = stores
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    store.gets = 0
    assert call(app, "PUT", ENTRY, _entry("carol", "one"), **EL_MIME).status_int == 201
    assert store.gets == 1
    response = call(app, "PUT", ENTRY, _entry("carol", "two"), **EL_MIME)
    assert response.status_int == 200 and store.gets == 1  # the document came from the turn
    document = call(app, "GET", ALICE_DOC)
    assert b"<display-name>two</display-name>" in document.body and b"Bob" in document.body
    assert document.headers["ETag"] == response.headers["ETag"]


def test_a_document_changed_elsewhere_is_read_again_and_nothing_is_lost(stores):
    store, other = stores
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    assert call(app, "PUT", ENTRY, _entry("carol", "one"), **EL_MIME).status_int == 201
    changed = call(app, "GET", ALICE_DOC).body.replace(b"Bob", b"Robert")
    other.put(KEY, changed, other.get(KEY).etag)  # not through this host's turns
    store.gets = 0
    assert call(app, "PUT", ENTRY, _entry("carol", "two"), **EL_MIME).status_int == 200
    assert store.gets == 1
    body = call(app, "GET", ALICE_DOC).body
    assert b"Robert" in body and b"<display-name>two</display-name>" in body


def test_a_change_that_only_the_stale_copy_already_has_is_made_again(stores):
    """On the recalled copy the PUT changes nothing (200, old ETag); the stored document lacks
    the entry, so the answer must be a 201 that creates it."""
    store, other = stores
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    first = call(app, "PUT", ENTRY, _entry("carol"), **EL_MIME)
    assert first.status_int == 201
    other.put(KEY, RL_DOC, other.get(KEY).etag)  # carol is gone again
    again = call(app, "PUT", ENTRY, _entry("carol"), **EL_MIME)
    assert again.status_int == 201 and again.headers["ETag"] != first.headers["ETag"]
    assert b"sip:carol@example.com" in call(app, "GET", ALICE_DOC).body


def test_conditions_are_judged_on_the_stored_document_not_the_recalled_one(stores):
    store, other = stores
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    recalled_etag = call(app, "PUT", ENTRY, _entry("carol", "one"), **EL_MIME).headers["ETag"]
    other.put(KEY, call(app, "GET", ALICE_DOC).body.replace(b"Bob", b"Robert"), other.get(KEY).etag)
    current_etag = call(app, "GET", ALICE_DOC).headers["ETag"]
    stale = call(app, "PUT", ENTRY, _entry("carol", "two"), **EL_MIME, **{"If-Match": recalled_etag})
    assert stale.status_int == 412
    fresh = call(app, "PUT", ENTRY, _entry("carol", "two"), **EL_MIME, **{"If-Match": current_etag})
    assert fresh.status_int == 200
    assert b"Robert" in call(app, "GET", ALICE_DOC).body


def test_an_error_on_the_recalled_copy_is_judged_again(stores):
    """DELETE of an entry the recalled copy lacks would be 404 there; the stored one has it."""
    store, other = stores
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    assert call(app, "PUT", ENTRY, _entry("carol"), **EL_MIME).status_int == 201
    assert call(app, "DELETE", ENTRY).status_int == 200  # the turn now recalls a document without carol
    other.put(KEY, call(app, "GET", ALICE_DOC).body.replace(b"</list>", _entry("carol") + b"</list>"),
              other.get(KEY).etag)
    assert call(app, "DELETE", ENTRY).status_int == 200
    assert b"carol" not in call(app, "GET", ALICE_DOC).body


def test_a_recalled_slot_is_only_trusted_whole_and_for_its_own_document(tmp_path):
    turns = WriteTurns(str(tmp_path / "turns.lock"), recall=True)
    name = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    with turns.turn(name) as turn:
        assert turn.recall() is None
        turn.remember("etag-1", b"<resource-lists/>")
        assert turn.recall() == ("etag-1", b"<resource-lists/>")
    with WriteTurns(turns.path, recall=True).turn(name) as turn:  # another process's view of the same files
        assert turn.recall() == ("etag-1", b"<resource-lists/>")
    recall_file = turns.path + ".last"
    assert stat.S_IMODE(os.stat(recall_file).st_mode) == 0o600
    with open(recall_file, "r+b") as handle:
        data = bytearray(handle.read())
        end = len(data.rstrip(b"\0"))
        data[end - 3] ^= 0x20  # one flipped bit in the document
        handle.seek(0)
        handle.write(data)
    with turns.turn(name) as turn:
        assert turn.recall() is None
    twin = next(f"/xcap-root/x/users/sip:u{n}@x/index" for n in range(100000)
                if turns.stripe(f"/xcap-root/x/users/sip:u{n}@x/index") == turns.stripe(name))
    with turns.turn(twin) as turn:
        turn.remember("etag-2", b"<x/>")
    with turns.turn(name) as turn:
        assert turn.recall() is None  # the stripe's slot holds the other document
        turn.remember("etag-3", b"<resource-lists/>")
        assert turn.recall() == ("etag-3", b"<resource-lists/>")
        turn.remember("etag-4", b"x" * (RECALL_MAX_BYTES + 1))
        assert turn.recall() is None  # too large to keep, and the older version is forgotten


def test_without_a_lock_file_nothing_is_recalled(tmp_path):
    with WriteTurns(None, recall=True).turn("doc") as turn:
        turn.remember("etag", b"<a/>")
        assert turn.recall() is None


def test_a_failure_after_the_write_of_a_recalled_copy_is_not_judged_again(stores, monkeypatch):
    """Once the write of an attempt on a recalled copy is stored, that attempt is the answer:
    re-running the DELETE on a fresh read would answer 404 for a node this request removed."""
    from xcap_wsgi import operations

    store, _ = stores
    app = XCAPMiddleware(None, store=store, default_domain="example.com", on_change=lambda event: None)
    assert call(app, "PUT", ALICE_DOC, RL_DOC, **{"Content-Type": RL_MIME}).status_int == 201
    assert call(app, "PUT", ENTRY, _entry("carol"), **EL_MIME).status_int == 201  # recalled from now on

    def broken(*args, **kwargs):
        raise RuntimeError("a bug after the write")

    monkeypatch.setattr(operations, "node_patch", broken)
    assert call(app, "DELETE", ENTRY).status_int == 500  # the bug, as without a recalled copy
    assert b"carol" not in call(app, "GET", ALICE_DOC).body
