"""The rls-services service-URI side table (issue 19.3): index lookups instead of table scans,
optional for a database Kamailio created, healed or rebuilt when other tools write rows.

Every test runs on four databases: a new SQLite file (side table created with it), an SQLite file
without it (as an older xcap-wsgi or Kamailio's db_sqlite left it), MariaDB laid out by Kamailio's
SQL files then ``xcap-wsgi initdb`` (creates it), and MariaDB as Kamailio left it (no side table).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys

import pytest
from conftest import call
from mysql_support import connect, temporary_database

from xcap_wsgi import SQLiteStore, XCAPMiddleware
from xcap_wsgi.auth import DefaultPolicy
from xcap_wsgi.storage import open_store

RLS_MIME = "application/rls-services+xml"
ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"


def rls_doc(*uris: str) -> bytes:
    services = "".join(f'<service uri="{u}"><list/><packages><package>presence</package></packages></service>'
                       for u in uris)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" '
            f'xmlns:rl="urn:ietf:params:xml:ns:resource-lists">{services}</rls-services>').encode()


def doc_path(user: str) -> str:
    return f"/xcap-root/rls-services/users/{user}/index"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xcap_wsgi", *args], capture_output=True, text=True, timeout=120)


WITH_SIDE_TABLE = ["sqlite", "mysql-initdb"]
WITHOUT_SIDE_TABLE = ["sqlite-without", "mysql-kamailio"]


@pytest.fixture(params=WITH_SIDE_TABLE + WITHOUT_SIDE_TABLE)
def db(request, tmp_path):
    """(url, has_side_table) for each kind of database."""
    kind = request.param
    if kind.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/xcap.sqlite3"
        open_store(url).close()
        if kind == "sqlite-without":
            with contextlib.closing(sqlite3.connect(f"{tmp_path}/xcap.sqlite3")) as conn:
                conn.execute("DROP TABLE xcap_rls_service_uri")
        yield url, kind == "sqlite"
        return
    with temporary_database(tables="kamailio") as url:
        if kind == "mysql-initdb":
            done = cli("initdb", "--db", url)
            assert done.returncode == 0, done.stderr
            assert "created xcap_rls_service_uri" in done.stdout
        yield url, kind == "mysql-initdb"


@pytest.fixture
def store(db):
    store = open_store(db[0])
    yield store
    store.close()


@pytest.fixture
def app(store):
    return make_app(store)


def make_app(store) -> XCAPMiddleware:
    """The middleware with rls@example.com trusted (the global index is for trusted principals)."""
    return XCAPMiddleware(None, store=store, default_domain="example.com",
                          policy=DefaultPolicy(default_domain="example.com", trusted=["rls@example.com"]))


def global_index(app):
    return call(app, "GET", "/xcap-root/rls-services/global/index", user="rls@example.com")


def put(app, user: str, *uris: str):
    return call(app, "PUT", doc_path(user), rls_doc(*uris), user=user, **{"Content-Type": RLS_MIME})


def foreign_sql(url: str, sql: str, params: tuple) -> None:
    """A write by another tool (Kamailio's xcap_server, a script): straight SQL on the xcap table."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.split("///", 1)[1])) as conn:
            conn.execute(sql.replace("%s", "?"), params)
            conn.commit()
    else:
        with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)


def test_uniqueness_and_global_index_with_or_without_the_side_table(app, store, db):
    assert store.rls_index.available() is db[1]
    assert put(app, ALICE, "sip:friends@example.com", "sip:work@example.com").status_int == 201
    clash = put(app, BOB, "sip:friends@EXAMPLE.COM")  # the host compares case-insensitively, as Kamailio's rls
    assert clash.status_int == 409 and b"uniqueness-failure" in clash.body
    assert b"sip:friends-2@EXAMPLE.COM" in clash.body  # <alt-value>: a URI nobody uses
    assert put(app, BOB, "sip:bob-list@example.com").status_int == 201
    index = global_index(app)
    assert index.status_int == 200
    for uri in (b"sip:friends@example.com", b"sip:work@example.com", b"sip:bob-list@example.com"):
        assert uri in index.body
    # Alice may rewrite her own document with the same URIs (her own row is not a clash).
    assert put(app, ALICE, "sip:friends@example.com").status_int == 200
    assert put(app, BOB, "sip:work@example.com").status_int == 200  # freed by alice's rewrite


@pytest.mark.parametrize("db", WITH_SIDE_TABLE, indirect=True)
def test_side_table_follows_document_node_and_delete_writes(app, store, db):
    assert db[1]
    assert put(app, ALICE, "sip:a@example.com").status_int == 201
    node = doc_path(ALICE) + "/~~/rls-services/service%5b@uri=%22sip:b@example.com%22%5d"
    body = b'<service uri="sip:b@example.com"><list/><packages><package>presence</package></packages></service>'
    assert call(app, "PUT", node, body, **{"Content-Type": "application/xcap-el+xml"}).status_int == 201
    assert sorted(s for s, _, _ in store.rls_index.entries()) == ["sip:a@example.com", "sip:b@example.com"]
    etag = call(app, "GET", doc_path(ALICE)).headers["ETag"].strip('"')
    assert {e for _, _, e in store.rls_index.entries()} == {etag}
    assert call(app, "DELETE", node).status_int == 200
    assert [s for s, _, _ in store.rls_index.entries()] == ["sip:a@example.com"]
    assert call(app, "DELETE", doc_path(ALICE)).status_int == 200
    assert store.rls_index.entries() == []


def test_no_scan_of_the_xcap_table_when_the_side_table_exists(tmp_path):
    """The statements a write and a global-index GET run on SQLite: no ``doc_type=`` scan."""
    store = SQLiteStore(str(tmp_path / "x.sqlite3"))
    app = make_app(store)
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    assert put(app, ALICE, "sip:a@example.com").status_int == 201
    assert put(app, BOB, "sip:a@example.com").status_int == 409
    assert b"sip:a@example.com" in global_index(app).body
    assert statements and not [s for s in statements if "WHERE doc_type=" in s]
    plans = {name: " ".join(str(part) for row in rows for part in row)
             for name, rows in store.rls_index.explain().items()}
    assert "USING INDEX sqlite_autoindex_xcap_rls_service_uri_1 (service_uri=?)" in plans["uniqueness lookup"]
    assert "SEARCH xcap USING INDEX sqlite_autoindex_xcap_1 (doc_uri=?)" in plans["global index: rows by doc_uri"]
    assert "SCAN xcap" in plans["fallback scan (no side table)"]
    # The same store without the side table scans (and says so once in the log).
    store._connection().execute("DROP TABLE xcap_rls_service_uri")
    store.close()
    store = SQLiteStore(str(tmp_path / "x.sqlite3"))
    app = make_app(store)
    statements.clear()
    store._connection().set_trace_callback(statements.append)
    assert put(app, BOB, "sip:a@example.com").status_int == 409
    assert [s for s in statements if "WHERE doc_type=" in s]
    store.close()


def test_mysql_plans_use_indexes():
    with temporary_database(tables="kamailio") as url:
        assert cli("initdb", "--db", url).returncode == 0
        store = open_store(url)
        try:
            plans = store.rls_index.explain()
        finally:
            store.close()
    lookup = plans["uniqueness lookup"][0]  # id, select_type, table, type, possible_keys, key, ...
    assert lookup[2] == "xcap_rls_service_uri" and lookup[5] == "PRIMARY" and lookup[3] in ("range", "ref", "const")
    rows = plans["global index: rows by doc_uri"][0]
    assert rows[5] == "doc_uri_idx" and rows[3] in ("range", "const")
    assert plans["fallback scan (no side table)"][0][3] in ("ALL", "index")  # a full scan: what the side table avoids


def test_stale_entries_heal_when_another_tool_changes_or_deletes_rows(app, store, db):
    url, side = db
    assert put(app, ALICE, "sip:a@example.com").status_int == 201
    assert put(app, "sip:carol@example.com", "sip:c@example.com").status_int == 201
    # Kamailio's xcap_server (or a script) rewrites alice's document and deletes carol's.
    foreign_sql(url, "UPDATE xcap SET doc=%s, etag=%s WHERE doc_uri=%s",
                (rls_doc("sip:other@example.com"), "kamailio-etag", doc_path(ALICE)))
    foreign_sql(url, "DELETE FROM xcap WHERE doc_uri=%s", (doc_path("sip:carol@example.com"),))
    assert put(app, BOB, "sip:a@example.com").status_int == 201  # no false clash on a stale entry
    assert put(app, BOB, "sip:a@example.com", "sip:c@example.com").status_int == 200
    assert put(app, "sip:dave@example.com", "sip:other@example.com").status_int == 409  # alice's new URI
    if side:
        entries = {(s, d) for s, d, _ in store.rls_index.entries()}
        assert ("sip:a@example.com", doc_path(ALICE)) not in entries
        assert ("sip:other@example.com", doc_path(ALICE)) in entries


def test_check_reports_rows_written_by_other_tools_and_rebuild_repairs(app, store, db):
    url, side = db
    assert put(app, ALICE, "sip:a@example.com").status_int == 201
    foreign_sql(url, "INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, port) "
                "VALUES (%s, %s, %s, 8, %s, 0, %s, 0)",
                ("carol", "example.com", rls_doc("sip:z@example.com"), "k-1", doc_path("sip:carol@example.com")))
    report = cli("rls-index", "--db", url)
    checked = cli("check", "--db", url)
    if side:
        assert report.returncode == 1, report.stdout
        assert "service sip:z@example.com missing from xcap_rls_service_uri" in report.stdout
        assert checked.returncode == 1 and "rls-index:" in checked.stdout and "sip:z@example.com" in checked.stdout
    else:
        assert report.returncode == 0 and "no xcap_rls_service_uri table" in report.stdout
        assert "rls-index:" not in checked.stdout
    rebuilt = cli("rls-index", "--rebuild", "--db", url)
    assert rebuilt.returncode == 0 and "2 service URI(s)" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    assert cli("rls-index", "--db", url).returncode == 0
    fresh = open_store(url)  # the side table now exists everywhere (rebuild creates it)
    try:
        app = make_app(fresh)
        assert fresh.rls_index.available()
        assert put(app, BOB, "sip:z@example.com").status_int == 409
        assert b"sip:z@example.com" in global_index(app).body
    finally:
        fresh.close()


@pytest.mark.parametrize("db", WITHOUT_SIDE_TABLE, indirect=True)
def test_absence_is_detected_once_and_logged(db, caplog):
    url, side = db
    assert not side
    caplog.set_level(logging.INFO, logger="xcap_wsgi.storage.rls_index")
    store = open_store(url)
    try:
        app = make_app(store)
        for user in (ALICE, BOB):
            put(app, user, "sip:same@example.com")
        warnings = [r for r in caplog.records if "no xcap_rls_service_uri table" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    finally:
        store.close()
