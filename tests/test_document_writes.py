"""Whole-document writes without a read first (``Store.write``), on real SQLite and MariaDB.

The engine writes a document PUT straight away when its conditions name the state to replace;
these tests hold it to the answers of the read-first path (a store without ``write``), and show
on MariaDB that replacing a document is one statement.
"""

from __future__ import annotations

import logging

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, call, put_doc
from mysql_support import db_url, kamailio_database, rows  # noqa: F401  (fixtures)

from xcap_wsgi import SQLiteStore, XCAPMiddleware
from xcap_wsgi.storage import ABSENT, ANY, ConcurrentModification, DocumentKey, DocumentUriTaken
from xcap_wsgi.storage.mysql import MySQLStore

KEY = DocumentKey("alice", "example.com", "/xcap-root/resource-lists/users/sip:alice@example.com/index", 4)
OTHER_ACCOUNT = DocumentKey("mallory", "example.com", KEY.doc_uri, 4)
DOC_A, DOC_B = b"<a/>", b"<b/>"
BOB_TO_ROBERT = RL_DOC.replace(b"Bob", b"Robert")
INVALID = RL_DOC.replace(b"<list ", b"<lisst ")  # well-formed, not schema-valid: 409


@pytest.fixture(params=["sqlite", "mysql"])
def any_store(request, tmp_path):
    if request.param == "sqlite":
        store = SQLiteStore(str(tmp_path / "xcap.sqlite3"))
    else:
        store = MySQLStore.from_url(request.getfixturevalue("db_url") + "?pool_size=4")
    yield store
    store.close()


class TestStoreWrite:
    def test_any_creates_then_replaces_then_keeps_identical_content(self, any_store):
        created = any_store.write(KEY, DOC_A, ANY)
        assert (created.created, created.changed) == (True, True)
        assert any_store.get(KEY).etag == created.etag

        replaced = any_store.write(KEY, DOC_B, ANY)
        assert (replaced.created, replaced.changed) == (False, True)
        assert replaced.etag != created.etag
        assert any_store.get(KEY).content == DOC_B

        same = any_store.write(KEY, DOC_B, ANY)
        assert (same.created, same.changed, same.etag) == (False, False, replaced.etag)

    def test_an_etag_replaces_only_that_version(self, any_store):
        first = any_store.write(KEY, DOC_A, ABSENT)
        second = any_store.write(KEY, DOC_B, first.etag)
        assert (second.created, second.changed) == (False, True)
        with pytest.raises(ConcurrentModification):
            any_store.write(KEY, DOC_A, first.etag)  # stale: that version is gone
        assert any_store.get(KEY).content == DOC_B
        unchanged = any_store.write(KEY, DOC_B, second.etag)  # identical content, right ETag
        assert (unchanged.changed, unchanged.etag) == (False, second.etag)
        with pytest.raises(ConcurrentModification):
            any_store.write(KEY, DOC_B, first.etag)  # identical content but a stale ETag

    def test_absent_and_a_missing_row(self, any_store):
        with pytest.raises(ConcurrentModification):
            any_store.write(KEY, DOC_A, "no-such-etag")
        assert any_store.get(KEY) is None
        any_store.write(KEY, DOC_A, ABSENT)
        with pytest.raises(ConcurrentModification):
            any_store.write(KEY, DOC_B, ABSENT)
        assert any_store.get(KEY).content == DOC_A

    def test_a_doc_uri_of_another_account_is_not_taken_over(self, any_store):
        any_store.write(OTHER_ACCOUNT, DOC_A, ANY)
        with pytest.raises(DocumentUriTaken):
            any_store.write(KEY, DOC_B, ANY)
        assert any_store.get(OTHER_ACCOUNT).content == DOC_A


class _Statements:
    """Records the SQL a MySQLStore sends, through the real cursor."""

    def __init__(self, cursor, log):
        self._cursor, self._log = cursor, log

    def execute(self, sql, args=None):
        self._log.append(sql.split()[0].upper())
        return self._cursor.execute(sql, args)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class CountingMySQLStore(MySQLStore):
    statements: list

    def _run(self, work, *, write):
        return super()._run(lambda cursor: work(_Statements(cursor, self.statements)), write=write)


def test_replacing_a_document_on_mysql_is_one_update(db_url, caplog):
    store = CountingMySQLStore.from_url(db_url)
    store.statements = []
    try:
        app = XCAPMiddleware(None, store=store, default_domain="example.com")
        assert put_doc(app).status_int == 201
        assert store.statements == ["UPDATE", "SELECT", "INSERT"]  # a create: found missing, inserted

        store.statements.clear()
        assert put_doc(app, body=BOB_TO_ROBERT).status_int == 200
        assert store.statements == ["UPDATE"]
        (row,) = rows(db_url)
        assert (row["doc"], row["source"], row["port"]) == (BOB_TO_ROBERT, 0, 0)

        store.statements.clear()
        etag = call(app, "GET", ALICE_DOC).headers["ETag"]
        store.statements.clear()
        assert put_doc(app, body=RL_DOC, **{"If-Match": etag}).status_int == 200
        assert store.statements == ["UPDATE"]

        # The access log does not change which SQL runs (issue 18): the replaced ETag of an
        # unconditional one-statement PUT is logged as unknown ("?") instead of read first.
        logged = XCAPMiddleware(None, store=store, default_domain="example.com", log_requests=True)
        store.statements.clear()
        caplog.set_level(logging.INFO, logger="xcap_wsgi.access")
        assert put_doc(logged, body=BOB_TO_ROBERT).status_int == 200
        assert store.statements == ["UPDATE"]
        assert " etag-in=? " in caplog.records[-1].getMessage()
    finally:
        store.close()


class ReadFirstStore:
    """The same store whose ``write`` always refuses (``ConcurrentModification``, as the Store
    protocol allows): the engine must read before every write."""

    def __init__(self, store):
        self._store = store

    def write(self, key, content, expected):
        raise ConcurrentModification(f"{key.doc_uri}: refused, read first")

    def __getattr__(self, name):
        return getattr(self._store, name)


def _script(app) -> list:
    """A sequence of document PUTs (and reads) whose every answer depends on the stored state."""
    answers = []

    def put(body, **headers):
        response = put_doc(app, body=body, **headers)
        answers.append((response.status_int, response.content_type if response.status_int >= 400 else None))
        return response.headers.get("ETag")

    first = put(RL_DOC, **{"If-Match": '"nothing-yet"'})  # 412: no document to match
    first = put(RL_DOC, **{"If-None-Match": "*"})  # 201
    put(RL_DOC, **{"If-None-Match": "*"})  # 412: it exists now
    second = put(BOB_TO_ROBERT, **{"If-Match": first})  # 200
    put(RL_DOC, **{"If-Match": first})  # 412: stale
    unchanged = put(BOB_TO_ROBERT, **{"If-Match": second})  # 200, identical: same ETag
    answers.append(unchanged == second)
    put(INVALID, **{"If-Match": '"stale"'})  # 409 before 412 (RFC 7232 §5)
    put(INVALID)  # 409
    put(RL_DOC)  # 200
    put(RL_DOC, **{"If-Match": "W/" + second})  # 412: weak tags never match a write
    put(BOB_TO_ROBERT, **{"If-Match": f'"x", {second}'})  # 412: the list misses the current ETag
    answers.append(call(app, "GET", ALICE_DOC).body)
    return answers


@pytest.mark.parametrize("log_requests", [False, True])
def test_writing_without_a_read_answers_like_reading_first(any_store, tmp_path, log_requests):
    direct = XCAPMiddleware(None, store=any_store, default_domain="example.com", log_requests=log_requests)
    answers = _script(direct)
    assert [a[0] for a in answers if isinstance(a, tuple)] == [412, 201, 412, 200, 412, 200, 409, 409, 200, 412, 412]
    assert answers[-1] == RL_DOC

    reference_store = SQLiteStore(str(tmp_path / "reference.sqlite3"))
    try:
        reading = XCAPMiddleware(None, store=ReadFirstStore(reference_store), default_domain="example.com")
        assert _script(reading) == answers
    finally:
        reference_store.close()


def test_an_invalid_document_is_409_even_when_its_condition_fails(app):
    response = put_doc(app, body=INVALID, **{"If-Match": '"stale"'})
    assert response.status_int == 409 and response.content_type == "application/xcap-error+xml"
    assert call(app, "GET", ALICE_DOC, user=ALICE).status_int == 404
