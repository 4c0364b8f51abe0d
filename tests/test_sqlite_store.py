"""The SQLite store: Kamailio's layout, compare-and-swap semantics, thread and process safety."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from xcap_wsgi.storage import ABSENT, ConcurrentModification, DocumentKey, SQLiteStore, open_store

KEY = DocumentKey("alice", "example.com", "/xcap-root/resource-lists/users/sip:alice@example.com/index", 4)


def test_create_read_replace_delete(store):
    assert store.get(KEY) is None
    etag = store.put(KEY, b"<a/>", ABSENT)
    assert store.get(KEY).content == b"<a/>" and store.get(KEY).etag == etag
    etag2 = store.put(KEY, b"<b/>", etag)
    assert etag2 != etag and store.get(KEY).content == b"<b/>"
    store.delete(KEY, etag2)
    assert store.get(KEY) is None


def test_two_writers_holding_the_same_etag_cannot_both_succeed(store):
    etag = store.put(KEY, b"<a/>", ABSENT)
    store.put(KEY, b"<first/>", etag)
    with pytest.raises(ConcurrentModification):
        store.put(KEY, b"<second/>", etag)
    with pytest.raises(ConcurrentModification):
        store.delete(KEY, etag)
    assert store.get(KEY).content == b"<first/>"


def test_create_races_are_detected(store):
    store.put(KEY, b"<a/>", ABSENT)
    with pytest.raises(ConcurrentModification):
        store.put(KEY, b"<b/>", ABSENT)


def test_concurrent_compare_and_swap_from_many_threads_loses_nothing(store):
    """16 threads each add 25 increments by read-CAS-retry: the final count is exact."""
    store.put(KEY, b"0", ABSENT)

    def worker():
        for _ in range(25):
            while True:
                current = store.get(KEY)
                try:
                    store.put(KEY, str(int(current.content) + 1).encode(), current.etag)
                    break
                except ConcurrentModification:
                    continue

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get(KEY).content == b"400"


def test_list_documents_of_one_user(store):
    store.put(KEY, b"<a/>", ABSENT)
    other = DocumentKey("alice", "example.com", "/xcap-root/pres-rules/users/sip:alice@example.com/index", 2)
    store.put(other, b"<r/>", ABSENT)
    store.put(DocumentKey("bob", "example.com", "/x/bob", 4), b"<b/>", ABSENT)
    listing = store.list_documents("alice", "example.com")
    assert [(d.doc_type, d.doc_uri, d.size) for d in listing] == [(2, other.doc_uri, 4), (4, KEY.doc_uri, 4)]


def test_schema_is_kamailios(store):
    connection = sqlite3.connect(store.path)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(xcap)")]
    assert columns == ["id", "username", "domain", "doc", "doc_type", "etag", "source", "doc_uri", "port"]
    assert connection.execute("SELECT table_version FROM version WHERE table_name='xcap'").fetchone() == (4,)
    indexes = {row[1] for row in connection.execute("PRAGMA index_list(xcap)")}
    assert {"xcap_account_doc_type_idx", "xcap_account_doc_type_uri_idx", "xcap_account_doc_uri_idx"} <= indexes
    connection.close()


def test_a_wrong_version_row_is_refused(tmp_path):
    path = tmp_path / "old.sqlite3"
    SQLiteStore(str(path)).close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE version SET table_version=3 WHERE table_name='xcap'")
    connection.commit()
    connection.close()
    from xcap_wsgi.storage import SchemaMismatch

    with pytest.raises(SchemaMismatch, match="version 4"):
        SQLiteStore(str(path))


@pytest.mark.parametrize("url, path", [("sqlite:///rel.db", "rel.db"), ("sqlite:////abs/x.db", "/abs/x.db"),
                                       ("sqlite://", ":memory:"), ("sqlite:///:memory:", ":memory:")])
def test_sqlite_urls(url, path):
    from xcap_wsgi.storage import sqlite_path

    assert sqlite_path(url) == path


def test_unknown_url_scheme_is_refused():
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_store("postgres://x/y")


def test_memory_store_is_shared_between_threads():
    store = open_store("sqlite://")
    store.put(KEY, b"<a/>", ABSENT)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(store.get(KEY)))
    thread.start()
    thread.join()
    assert seen[0].content == b"<a/>"


def _open_at(path, start, results):
    """Child process body: wait for the common start, open the store, report the outcome."""
    import time

    while time.time() < start:
        pass
    try:
        SQLiteStore(path)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the parent reports what went wrong
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path):
    """``serve --workers N`` and uWSGI start N processes on one fresh file: switching it to WAL
    is refused with 'database is locked' (without waiting for the busy timeout) while another
    process does the same, and that once stopped a worker from starting."""
    import multiprocessing
    import time

    context = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(15):
        results = context.Queue()
        start = time.time() + 0.3
        path = str(tmp_path / f"fresh{attempt}.sqlite3")
        processes = [context.Process(target=_open_at, args=(path, start, results)) for _ in range(6)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        outcomes += [results.get(timeout=10) for _ in processes]
    assert [o for o in outcomes if o != "ok"] == []
