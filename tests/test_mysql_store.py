"""MySQLStore against a real MariaDB (XCAP_TEST_MYSQL_URL): Kamailio's layout, CAS, collation, pool."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
from mysql_support import (  # noqa: F401  (fixtures)
    KAMAILIO_SQL_DIR,
    REPO,
    connect,
    db_url,
    free_port,
    http_request,
    kamailio_database,
    mysql_store,
    rows,
    run_xcap_wsgi,
    server_url,
    sql_statements,
    temporary_database,
    unavailable,
    url_for_database,
)

from xcap_wsgi.storage import ConcurrentModification, DocumentKey, SchemaMismatch, StoreUnavailable, open_store
from xcap_wsgi.storage.mysql import (
    DocumentUriTaken,
    MySQLStore,
    UnrepresentableKey,
    initdb,
    parse_url,
)

pytestmark = pytest.mark.mysql

ALICE = DocumentKey("alice", "example.com", "/xcap-root/resource-lists/users/sip:alice@example.com/index", 4)
ALICE_RULES = DocumentKey("alice", "example.com", "/xcap-root/pres-rules/users/sip:alice@example.com/index", 2)
DOC = b'<?xml version="1.0" encoding="UTF-8"?>\r\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">' \
      b'<list name="f\xc3\xa9"/></resource-lists>\n'


def show_create(url: str, table: str) -> str:
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE `{table}`")
        return re.sub(r" AUTO_INCREMENT=\d+", "", cur.fetchone()[1])


def execute(url: str, sql: str, params: tuple = ()):
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


# -- URL parsing (no server needed) ----------------------------------------------------------


def test_parse_url_tcp_and_options():
    parsed = parse_url("mysql://kam%40x:p%3Ass@db.example:3307/kamailio?pool_size=3&connect_timeout=2.5&table=xcap")
    assert parsed["connect"] == {"user": "kam@x", "password": "p:ss", "database": "kamailio",
                                 "host": "db.example", "port": 3307, "ssl_disabled": True}
    assert parsed["pool_size"] == 3 and parsed["connect_timeout"] == 2.5 and parsed["table"] == "xcap"


def test_parse_url_unix_socket_and_errors():
    parsed = parse_url("mysql://kamailio:rw@/kamailio?unix_socket=/run/mysqld/mysqld.sock")
    assert parsed["connect"]["unix_socket"] == "/run/mysqld/mysqld.sock"
    assert "host" not in parsed["connect"]
    with pytest.raises(ValueError, match="unknown option"):
        parse_url("mysql://u:p@h/db?poolsize=3")
    with pytest.raises(ValueError, match="one database"):
        parse_url("mysql://u:p@h/")
    with pytest.raises(ValueError, match="invalid table"):
        MySQLStore(table="xcap; drop table x", check_schema=False)


@pytest.mark.parametrize("query, expected", [
    ("", {"ssl_disabled": True}),  # Kamailio's db_mysql default; PyMySQL would try TLS
    ("?ssl=disabled", {"ssl_disabled": True}),
    ("?ssl=preferred", {"ssl_disabled": False}),  # PyMySQL's own default: TLS if offered, unverified
    ("?ssl=required", {"ssl": {"check_hostname": False}}),
    ("?ssl_ca=/etc/ca.pem", {"ssl": {"ca": "/etc/ca.pem"}}),
    ("?ssl=required&ssl_ca=/etc/ca.pem", {"ssl": {"ca": "/etc/ca.pem"}}),
])
def test_parse_url_tls_modes(query, expected):
    connect = parse_url("mysql://u:p@h/db" + query)["connect"]
    assert {k: v for k, v in connect.items() if k.startswith("ssl")} == expected


@pytest.mark.parametrize("query", ["?ssl=yes", "?ssl=disabled&ssl_ca=/etc/ca.pem", "?ssl=preferred&ssl_ca=/x"])
def test_parse_url_refuses_unclear_tls_settings(query):
    with pytest.raises(ValueError, match="ssl must be"):
        parse_url("mysql://u:p@h/db" + query)


def test_required_tls_fails_cleanly_against_a_server_without_it(db_url):
    with pytest.raises(StoreUnavailable):
        MySQLStore.from_url(db_url + "?ssl=required&connect_timeout=3").get(
            DocumentKey("a", "example.com", "/xcap-root/x", 4))


# -- schema: initdb and the start-up check ---------------------------------------------------


def test_initdb_creates_kamailios_exact_tables():
    if not (KAMAILIO_SQL_DIR / "presence-create.sql").exists():
        unavailable("Kamailio's MySQL schema files are not installed")
    with temporary_database(tables=None) as ours, temporary_database(tables="kamailio") as theirs:
        message = initdb(ours)
        assert "created table 'xcap'" in message and "('xcap', 4)" in message
        assert show_create(ours, "xcap") == show_create(theirs, "xcap")
        assert show_create(ours, "version") == show_create(theirs, "version")
        assert "DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci" in show_create(ours, "xcap")
        assert execute(ours, "SELECT table_version FROM version WHERE table_name='xcap'") == ((4,),)
        assert "nothing to do" in initdb(ours)
        assert execute(ours, "SELECT COUNT(*) FROM version WHERE table_name='xcap'") == ((1,),)


def test_initdb_never_alters_an_existing_table_and_refuses_other_versions():
    with temporary_database(tables="initdb") as url:
        execute(url, "ALTER TABLE xcap ADD COLUMN extra INT NULL")
        before = show_create(url, "xcap")
        assert "nothing to do" in initdb(url)
        assert show_create(url, "xcap") == before
        execute(url, "UPDATE version SET table_version=3 WHERE table_name='xcap'")
        with pytest.raises(SchemaMismatch, match="version 3"):
            initdb(url)
        assert show_create(url, "xcap") == before
        execute(url, "DELETE FROM version WHERE table_name='xcap'")
        with pytest.raises(SchemaMismatch, match="no 'xcap' row"):
            initdb(url)


def test_initdb_adds_xcap_to_an_existing_kamailio_version_table():
    with temporary_database(tables=None) as url:
        with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
            for statement in sql_statements((KAMAILIO_SQL_DIR / "standard-create.sql").read_text()
                                            if (KAMAILIO_SQL_DIR / "standard-create.sql").exists() else
                                            "CREATE TABLE version (id INT UNSIGNED AUTO_INCREMENT PRIMARY KEY, "
                                            "table_name VARCHAR(32) NOT NULL UNIQUE, "
                                            "table_version INT UNSIGNED DEFAULT 0 NOT NULL)"):
                cur.execute(statement)
        message = initdb(url)
        assert "created table 'version'" not in message and "created table 'xcap'" in message
        store = MySQLStore.from_url(url)
        assert store.put(ALICE, DOC, None)
        store.close()


@pytest.mark.parametrize("breakage, pattern", [
    ("DROP TABLE version", "no 'version' table"),
    ("DELETE FROM version WHERE table_name='xcap'", "no row for 'xcap'"),
    ("UPDATE version SET table_version=3 WHERE table_name='xcap'", "version 3"),
    ("DROP TABLE xcap", "missing or lacks"),
    ("ALTER TABLE xcap DROP COLUMN port", "missing or lacks"),
])
def test_store_refuses_a_schema_it_cannot_share(breakage, pattern):
    with temporary_database(tables="initdb") as url:
        execute(url, breakage)
        with pytest.raises(SchemaMismatch, match=pattern):
            MySQLStore.from_url(url)


def test_open_store_dispatches_mysql_urls(db_url):
    store = open_store(db_url + "?pool_size=2")
    try:
        assert isinstance(store, MySQLStore)
        assert store.get(ALICE) is None
    finally:
        store.close()


# -- rows exactly as Kamailio's xcap_server writes them --------------------------------------


def test_put_writes_a_kamailio_row(mysql_store, db_url):
    etag = mysql_store.put(ALICE, DOC, None)
    assert 1 <= len(etag) <= 117 and '"' not in etag and "," not in etag
    [row] = rows(db_url)
    assert row["username"] == "alice" and row["domain"] == "example.com"
    assert row["doc_uri"] == ALICE.doc_uri and row["doc_type"] == 4
    assert row["etag"] == etag and row["source"] == 0 and row["port"] == 0
    assert row["doc"] == DOC
    got = mysql_store.get(ALICE)
    assert got.content == DOC and got.etag == etag


def test_replace_is_compare_and_swap_in_place(mysql_store, db_url):
    first = mysql_store.put(ALICE, DOC, None)
    [before] = rows(db_url)
    execute(db_url, "UPDATE xcap SET source=1, port=8080")  # e.g. touched by xcap_client
    second = mysql_store.put(ALICE, b"<resource-lists/>", first)
    assert second != first
    [after] = rows(db_url)
    assert after["id"] == before["id"]
    assert (after["doc"], after["etag"], after["source"], after["port"]) == (b"<resource-lists/>", second, 0, 0)
    with pytest.raises(ConcurrentModification):
        mysql_store.put(ALICE, b"<stale/>", first)
    with pytest.raises(ConcurrentModification):
        mysql_store.put(ALICE, b"<again/>", None)
    with pytest.raises(ConcurrentModification):
        mysql_store.delete(ALICE, first)
    assert mysql_store.get(ALICE).content == b"<resource-lists/>"
    mysql_store.delete(ALICE, second)
    assert mysql_store.get(ALICE) is None and rows(db_url) == []
    with pytest.raises(ConcurrentModification):
        mysql_store.put(ALICE, b"<gone/>", second)
    with pytest.raises(ConcurrentModification):
        mysql_store.delete(ALICE, second)


def test_documents_are_stored_byte_for_byte(mysql_store, db_url):
    payload = bytes(range(1, 256)) * 4096 + "\u00e9\U0001f600".encode("utf-8")  # ~1 MiB, no NUL
    etag = mysql_store.put(ALICE, payload, None)
    assert mysql_store.get(ALICE) .content == payload
    assert execute(db_url, "SELECT LENGTH(doc), etag FROM xcap") == ((len(payload), etag),)


def test_oversized_documents_are_refused_cleanly(mysql_store, db_url):
    from xcap_wsgi.storage.mysql import MAX_DOCUMENT_BYTES, DocumentTooLarge

    packet = mysql_store.max_allowed_packet
    assert packet and packet >= 1024 * 1024
    too_big = b"a" * (min(MAX_DOCUMENT_BYTES, packet) + 1)
    with pytest.raises(DocumentTooLarge):
        mysql_store.put(ALICE, too_big, None)
    with pytest.raises(DocumentTooLarge):  # escaping doubles quotes: counted too
        mysql_store.put(ALICE, b"'" * (packet // 2 + 10), None)
    assert rows(db_url) == []
    assert mysql_store.put(ALICE, DOC, None)  # the connection survived


def test_list_documents(mysql_store):
    other = DocumentKey("bob", "example.com", "/xcap-root/resource-lists/users/sip:bob@example.com/index", 4)
    e1 = mysql_store.put(ALICE, DOC, None)
    e2 = mysql_store.put(ALICE_RULES, b"<ruleset/>", None)
    mysql_store.put(other, b"<x/>", None)
    listing = mysql_store.list_documents("alice", "example.com")
    assert [(d.doc_uri, d.doc_type, d.etag, d.size) for d in listing] == [
        (ALICE_RULES.doc_uri, 2, e2, len(b"<ruleset/>")),
        (ALICE.doc_uri, 4, e1, len(DOC)),
    ]
    assert mysql_store.list_documents("carol", "example.com") == []


# -- collation and character set (Kamailio's latin1_swedish_ci database) ---------------------

ALICE_UPPER = DocumentKey("ALICE", "EXAMPLE.COM", "/xcap-root/resource-lists/users/sip:ALICE@EXAMPLE.COM/index", 4)


def test_case_variants_share_one_row_like_kamailio_on_latin1_swedish_ci(mysql_store, db_url):
    assert "latin1_swedish_ci" in show_create(db_url, "xcap").lower() or \
        execute(db_url, "SELECT @@collation_database") == (("latin1_swedish_ci",),)
    etag = mysql_store.put(ALICE, DOC, None)
    [original] = rows(db_url)
    got = mysql_store.get(ALICE_UPPER)
    assert got is not None and got.etag == etag  # SQL '=' decides, as for Kamailio
    # Creating the variant collides with the existing row: a lost race, never a loop or a 500;
    # reading again finds the row, and the replace updates it in place with its original spelling.
    with pytest.raises(ConcurrentModification):
        mysql_store.put(ALICE_UPPER, b"<upper/>", None)
    new = mysql_store.put(ALICE_UPPER, b"<upper/>", mysql_store.get(ALICE_UPPER).etag)
    [row] = rows(db_url)
    assert row["id"] == original["id"]
    assert (row["username"], row["domain"], row["doc_uri"]) == ("alice", "example.com", ALICE.doc_uri)
    assert (row["doc"], row["etag"]) == (b"<upper/>", new)
    # trailing spaces and accents compare equal too
    assert mysql_store.get(DocumentKey("alice ", "example.com", ALICE.doc_uri + " ", 4)).etag == new
    assert [d.doc_uri for d in mysql_store.list_documents("ALICE", "Example.Com")] == [ALICE.doc_uri]
    mysql_store.delete(ALICE_UPPER, new)
    assert rows(db_url) == []


def test_case_variants_are_distinct_rows_on_a_binary_collation():
    with temporary_database(charset="latin1", collation="latin1_bin", tables="initdb") as url:
        store = MySQLStore.from_url(url)
        try:
            store.put(ALICE, DOC, None)
            assert store.get(ALICE_UPPER) is None
            store.put(ALICE_UPPER, b"<upper/>", None)
            assert [r["username"] for r in rows(url)] == ["alice", "ALICE"]
        finally:
            store.close()


def test_latin1_characters_are_stored_as_kamailio_stores_them(mysql_store, db_url):
    key = DocumentKey("ren\u00e9", "example.com", "/xcap-root/pres-rules/users/sip:ren\u00e9@example.com/index", 2)
    etag = mysql_store.put(key, b"<ruleset/>", None)
    assert execute(db_url, "SELECT HEX(username), username FROM xcap") == (("72656EE9", "ren\u00e9"),)
    assert mysql_store.get(key).etag == etag
    # accent-insensitive like Kamailio: sip:rene@ finds sip:rené@
    plain = DocumentKey("rene", "example.com", "/xcap-root/pres-rules/users/sip:rene@example.com/index", 2)
    assert mysql_store.get(plain).etag == etag


@pytest.mark.parametrize("text", ["\u0436", "\U0001f600", "\u20ac\u0142"])
def test_characters_outside_the_table_charset_are_a_client_error(mysql_store, db_url, text):
    key = DocumentKey(text, "example.com", f"/xcap-root/pres-rules/users/sip:{text}@example.com/index", 2)
    assert mysql_store.get(key) is None
    with pytest.raises(UnrepresentableKey):
        mysql_store.put(key, b"<ruleset/>", None)
    with pytest.raises((UnrepresentableKey, ConcurrentModification)):
        mysql_store.delete(key, "xw-whatever")
    assert mysql_store.list_documents(text, "example.com") == []
    assert rows(db_url) == []
    # the pooled connection is still fine afterwards
    assert mysql_store.put(ALICE, DOC, None)


def test_values_longer_than_kamailios_columns_are_a_client_error(mysql_store, db_url):
    long_user = "u" * 65
    key = DocumentKey(long_user, "example.com", f"/xcap-root/pres-rules/users/sip:{long_user}@example.com/x", 2)
    with pytest.raises(UnrepresentableKey, match="username"):
        mysql_store.put(key, b"<ruleset/>", None)
    long_uri = DocumentKey("alice", "example.com", "/xcap-root/pres-rules/users/sip:alice@example.com/" + "f" * 220, 2)
    with pytest.raises(UnrepresentableKey, match="doc_uri"):
        mysql_store.put(long_uri, b"<ruleset/>", None)
    assert mysql_store.get(key) is None and rows(db_url) == []


def test_doc_uri_owned_by_another_account_is_reported_not_retried(mysql_store, db_url):
    foreign = DocumentKey("mallory", "example.net", ALICE.doc_uri, 4)
    mysql_store.put(foreign, b"<foreign/>", None)
    assert mysql_store.get(ALICE) is None  # GET keys on (username, domain, doc_uri), like Kamailio
    with pytest.raises(DocumentUriTaken):
        mysql_store.put(ALICE, DOC, None)
    assert [r["doc"] for r in rows(db_url)] == [b"<foreign/>"]


# -- pool, reconnect, lock waits, outages -----------------------------------------------------


def connection_ids(url: str, database: str) -> list[int]:
    """Ids of the server connections using ``database`` other than this one.

    SHOW PROCESSLIST, not information_schema.PROCESSLIST: polling the latter crashed MariaDB
    10.11.19 once here (signal 11 freeing its temporary Aria table).
    """
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        me = cur.fetchone()[0]
        cur.execute("SHOW PROCESSLIST")
        return [row[0] for row in cur.fetchall() if row[3] == database and row[0] != me]


def test_pool_is_bounded_and_thread_safe_under_contention(db_url):
    database = parse_url(db_url)["connect"]["database"]
    store = MySQLStore.from_url(db_url + "?pool_size=3&pool_timeout=30")
    store.put(ALICE, b"<n>0</n>", None)
    successes, conflicts, peak, errors = [], [], [0], []
    stop = time.monotonic() + 3

    def worker():
        try:
            while time.monotonic() < stop:
                current = store.get(ALICE)
                value = int(current.content[3:-4])
                try:
                    store.put(ALICE, b"<n>%d</n>" % (value + 1), current.etag)
                    successes.append(1)
                except ConcurrentModification:
                    conflicts.append(1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def watcher():
        while time.monotonic() < stop:
            peak[0] = max(peak[0], len(connection_ids(db_url, database)))
            time.sleep(0.1)

    threads = [threading.Thread(target=worker) for _ in range(12)] + [threading.Thread(target=watcher)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == []
    assert successes and conflicts, "the threads should have raced"
    final = MySQLStore.from_url(db_url).get(ALICE)
    assert final.content == b"<n>%d</n>" % len(successes)
    assert 1 <= peak[0] <= 3


def test_pool_exhaustion_is_a_503_not_a_hang(db_url):
    store = MySQLStore.from_url(db_url + "?pool_size=1&pool_timeout=0.5")
    held = store._pool.acquire()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            store.get(ALICE)
        assert time.monotonic() - started < 3 and info.value.retry_after >= 1
    finally:
        store._pool.release(held)
    assert store.get(ALICE) is None
    store.close()


def test_killed_connections_are_replaced_transparently(db_url):
    database = parse_url(db_url)["connect"]["database"]
    store = MySQLStore.from_url(db_url + "?pool_size=2")
    etag = store.put(ALICE, DOC, None)
    ids = connection_ids(db_url, database)
    assert ids
    for pid in ids:
        execute(db_url, f"KILL CONNECTION {int(pid)}")
    time.sleep(0.2)
    assert store.get(ALICE).etag == etag
    assert store.put(ALICE, b"<after-kill/>", etag)
    store.close()


def test_lock_wait_timeouts_are_retried_then_reported(db_url):
    store = MySQLStore.from_url(db_url + "?lock_wait_timeout=1&deadlock_retries=3")
    etag = store.put(ALICE, DOC, None)
    locker = connect(db_url)
    try:
        with locker.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM xcap FOR UPDATE")
        releaser = threading.Timer(1.6, locker.commit)
        releaser.start()
        new = store.put(ALICE, b"<after-lock/>", etag)  # first attempt times out after 1 s, a retry wins
        releaser.join()
        assert store.get(ALICE).etag == new
        impatient = MySQLStore.from_url(db_url + "?lock_wait_timeout=1&deadlock_retries=0")
        with locker.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM xcap FOR UPDATE")
        with pytest.raises(StoreUnavailable):
            impatient.put(ALICE, b"<never/>", new)
        locker.commit()
        assert store.get(ALICE).content == b"<after-lock/>"
        impatient.close()
    finally:
        locker.close()
        store.close()


def test_unreachable_database_is_store_unavailable_with_retry_after():
    port = free_port()  # nothing listens there
    store = MySQLStore.from_url(f"mysql://x:y@127.0.0.1:{port}/kamailio?connect_timeout=1&retry_after=7")
    with pytest.raises(StoreUnavailable) as info:
        store.get(ALICE)
    assert info.value.retry_after == 7
    with pytest.raises(StoreUnavailable):
        store.put(ALICE, DOC, None)
    store.close()


def test_wrong_credentials_or_database_fail_at_start_up(db_url):
    parts = parse_url(db_url)["connect"]
    where = f"{parts['host']}:{parts['port']}"
    with pytest.raises(StoreUnavailable, match="Access denied"):
        MySQLStore.from_url(f"mysql://{parts['user']}:wrong-password@{where}/{parts['database']}")
    with pytest.raises(StoreUnavailable, match="Unknown database"):
        MySQLStore.from_url(f"mysql://{parts['user']}:{parts['password']}@{where}/no_such_database_xcapw")


def private_mariadb(tmp_path):
    """(start, stop) of a private mariadbd in tmp_path (.ci/mariadb.sh); start returns its URL."""
    server_url()  # MySQL tests are enabled
    if not shutil.which("mariadbd") and not os.path.exists("/usr/sbin/mariadbd"):
        unavailable("mariadbd is not installed")
    script, port, datadir = REPO / ".ci" / "mariadb.sh", free_port(), tmp_path / "db"

    def start() -> str:
        out = subprocess.run(["bash", str(script), "start", str(datadir), str(port)], check=True,
                             capture_output=True, text=True, timeout=120)
        return out.stdout.strip().splitlines()[-1]

    def stop(check: bool = True) -> None:
        subprocess.run(["bash", str(script), "stop", str(datadir)], check=check, timeout=60)

    return start, stop


def test_service_resumes_after_a_real_server_restart(tmp_path):
    """A private mariadbd is stopped and started again: 503 while down, back on its own after."""
    start, stop = private_mariadb(tmp_path)

    try:
        url = start()
        initdb(url)
        store = MySQLStore.from_url(url + "?connect_timeout=1&retry_after=3&pool_size=2")
        etag = store.put(ALICE, DOC, None)
        stop()
        with pytest.raises(StoreUnavailable) as info:
            store.get(ALICE)
        assert info.value.retry_after == 3
        with pytest.raises(StoreUnavailable):
            store.put(ALICE, b"<while-down/>", etag)
        late = MySQLStore.from_url(url + "?connect_timeout=1")  # created while down: schema check deferred
        with pytest.raises(StoreUnavailable):
            late.get(ALICE)
        start()
        assert store.get(ALICE).etag == etag  # the same store object, no restart of xcap-wsgi
        assert store.put(ALICE, b"<after/>", etag)
        assert late.get(ALICE).content == b"<after/>"
        assert late._schema_checked
        store.close()
        late.close()
    finally:
        stop(check=False)


# -- no lost updates between processes ------------------------------------------------------

COUNTER_KEY = DocumentKey("alice", "example.com", "/xcap-root/resource-lists/users/sip:alice@example.com/index", 4)


def _add_entries(url: str, name: str, seconds: float, results, barrier) -> None:
    """Read-modify-write loop of one OS process: append one <entry/>, CAS, re-read on conflict."""
    store = MySQLStore.from_url(url + "?pool_size=2")
    store.get(COUNTER_KEY)
    barrier.wait(60)  # both processes loop at the same time, however slow their start-up was
    added = conflicts = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        current = store.get(COUNTER_KEY)
        n += 1
        entry = f'<entry uri="sip:{name}-{n}@example.com"/>'.encode()
        content = current.content.replace(b"</list>", entry + b"</list>")
        try:
            store.put(COUNTER_KEY, content, current.etag)
            added += 1
        except ConcurrentModification:
            conflicts += 1
    store.close()
    results.put((name, added, conflicts))


def test_two_processes_lose_no_update(db_url):
    store = MySQLStore.from_url(db_url)
    store.put(COUNTER_KEY, b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l">'
                           b"</list></resource-lists>", None)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_add_entries, args=(db_url, f"p{i}", 3.0, results, barrier)) for i in range(2)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    added = sum(o[1] for o in outcome)
    conflicts = sum(o[2] for o in outcome)
    final = store.get(COUNTER_KEY).content
    store.close()
    assert added > 0 and all(o[1] > 0 for o in outcome)
    assert conflicts > 0, "the two processes should have collided at least once"
    assert final.count(b"<entry ") == added


def test_two_xcap_wsgi_servers_lose_no_update_over_http(db_url):
    """Two `python -m xcap_wsgi serve` processes, one MariaDB; clients do GET / add / PUT If-Match."""
    import http.client

    path = COUNTER_KEY.doc_uri
    initial = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
               b'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l"></list></resource-lists>')
    ctype = {"Content-Type": "application/resource-lists+xml"}
    with run_xcap_wsgi(db_url) as one, run_xcap_wsgi(db_url) as two:
        status, _, _ = http_request("PUT", one.port, path, initial, ctype)
        assert status == 201
        added, retries, bad = [], [], []
        stop = time.monotonic() + 4

        def client(number: int, port: int):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            n = 0
            try:
                while time.monotonic() < stop:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read()
                    if response.status != 200:
                        bad.append(("GET", response.status, body[:200]))
                        return
                    etag = response.getheader("ETag")
                    n += 1
                    entry = f'<entry uri="sip:c{number}-{n}@example.com"/>'.encode()
                    conn.request("PUT", path, body.replace(b"</list>", entry + b"</list>"),
                                 {**ctype, "If-Match": etag})
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        added.append(entry)
                    elif response.status == 412:
                        retries.append(1)
                    else:
                        bad.append(("PUT", response.status))
                        return
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i, (one, two)[i % 2].port)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bad == []
        assert added and retries, "the clients should have raced"
        status, _, final = http_request("GET", two.port, path)
        assert status == 200
        assert final.count(b"<entry ") == len(added)
        assert all(entry in final for entry in added)


def test_case_variant_put_over_http_replaces_the_row_in_place(db_url):
    """Through xcap-wsgi serve on latin1_swedish_ci: sip:ALICE@... is alice's document, as in Kamailio."""
    lists = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
             b'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="%s"/></resource-lists>')
    ctype = {"Content-Type": "application/resource-lists+xml"}
    upper = "/xcap-root/resource-lists/users/sip:ALICE@EXAMPLE.COM/index"
    with run_xcap_wsgi(db_url) as server:
        assert http_request("PUT", server.port, COUNTER_KEY.doc_uri, lists % b"a", ctype)[0] == 201
        [row] = rows(db_url)
        status, headers, body = http_request("GET", server.port, upper)
        assert (status, body) == (200, lists % b"a")
        status, _, _ = http_request("PUT", server.port, upper, lists % b"b", ctype)
        assert status == 200  # a replace, not a create, and no 409/500/retry loop
        status, _, _ = http_request("PUT", server.port, upper, lists % b"c", {**ctype, "If-None-Match": "*"})
        assert status == 412
        [after] = rows(db_url)
        assert after["id"] == row["id"] and after["doc"] == lists % b"b"
        assert (after["username"], after["doc_uri"]) == ("alice", COUNTER_KEY.doc_uri)
        assert http_request("DELETE", server.port, upper)[0] == 200
        assert rows(db_url) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "xcap_wsgi", *args], capture_output=True, text=True,
                          timeout=60, cwd=str(REPO))


def test_cli_initdb_on_mysql():
    pytest.importorskip("xcap_wsgi.cli")
    with temporary_database(tables=None) as url:
        first = _cli("initdb", "--db", url)
        assert first.returncode == 0, first.stderr
        assert "created table 'xcap'" in first.stdout
        assert execute(url, "SELECT table_version FROM version WHERE table_name='xcap'") == ((4,),)
        second = _cli("initdb", "--db", url)
        assert second.returncode == 0 and "nothing to do" in second.stdout
        execute(url, "UPDATE version SET table_version=3 WHERE table_name='xcap'")
        third = _cli("initdb", "--db", url)
        assert third.returncode != 0 and "version 3" in third.stderr


def test_cli_serve_refuses_a_database_without_kamailios_table():
    pytest.importorskip("xcap_wsgi.cli")
    with temporary_database(tables=None) as url:
        result = _cli("serve", "--db", url, "--port", str(free_port()), "--anonymous")
        assert result.returncode != 0
        assert "initdb" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_http_503_with_retry_after_while_the_database_is_down(tmp_path):
    """xcap-wsgi serve on a private mariadbd that is stopped and restarted: 503 + Retry-After, then 200."""
    start, stop = private_mariadb(tmp_path)

    path = COUNTER_KEY.doc_uri
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
            b'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="x"/></resource-lists>')
    try:
        url = start()
        initdb(url)
        with run_xcap_wsgi(url + "?connect_timeout=1&retry_after=4") as server:
            assert http_request("PUT", server.port, path, body, {"Content-Type": "application/resource-lists+xml"})[0] \
                == 201
            stop()
            status, headers, _ = http_request("GET", server.port, path)
            assert status == 503 and headers.get("retry-after") == "4"
            status, headers, _ = http_request("PUT", server.port, path, body,
                                              {"Content-Type": "application/resource-lists+xml"})
            assert status == 503 and headers.get("retry-after") == "4"
            start()
            status, _, got = http_request("GET", server.port, path)
            assert (status, got) == (200, body)
    finally:
        stop(check=False)


# -- store-wide named locks and scans (used for rls-services service-URI uniqueness) ----------


def test_named_lock_excludes_other_stores_and_survives_pool_size_one(db_url):
    a = MySQLStore.from_url(db_url + "?pool_size=1&pool_timeout=2")
    b = MySQLStore.from_url(db_url + "?pool_size=1&pool_timeout=2")
    try:
        with a.lock("rls-services"):
            assert a.put(ALICE, DOC, None)  # the body still gets a pooled connection
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                with b.lock("rls-services", timeout=1):
                    pytest.fail("two holders of one lock")
            assert time.monotonic() - started >= 0.9
            with b.lock("something-else", timeout=1):  # other names are independent
                pass
        with b.lock("rls-services", timeout=1):
            assert b.get(ALICE).content == DOC
    finally:
        a.close()
        b.close()


def test_named_lock_is_released_when_the_body_fails(db_url):
    a = MySQLStore.from_url(db_url)
    b = MySQLStore.from_url(db_url)
    try:
        with pytest.raises(ConcurrentModification):
            with a.lock("rls-services"):
                a.put(ALICE, DOC, "xw-stale")
        with b.lock("rls-services", timeout=1):
            pass
    finally:
        a.close()
        b.close()


def test_documents_of_type_scans_every_account_in_row_order(mysql_store):
    bob = DocumentKey("bob", "example.net", "/xcap-root/resource-lists/users/sip:bob@example.net/index", 4)
    mysql_store.put(ALICE, DOC, None)
    mysql_store.put(ALICE_RULES, b"<ruleset/>", None)
    mysql_store.put(bob, b"<resource-lists/>", None)
    assert list(mysql_store.documents_of_type(4)) == [(ALICE, DOC), (bob, b"<resource-lists/>")]
    assert list(mysql_store.documents_of_type(8)) == []
