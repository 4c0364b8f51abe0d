"""Both MySQL drivers behind the connection layer (storage.mysql_connection): PyMySQL and the C
driver mysqlclient (test extra; ``driver=auto`` picks it when installed). Real MariaDB.

The storage code catches PyMySQL's exception classes only; with mysqlclient these tests fail
unless its errors are re-raised as those classes (duplicate doc_uri, killed connection, missing
table). BLOB bytes that are not UTF-8 must survive a round trip with either driver.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from mysql_support import (  # noqa: F401  (fixtures)
    IN_CI,
    connect,
    db_url,
    kamailio_database,
    rows,
    unavailable,
)

from xcap_wsgi.storage import DocumentKey, StoreError
from xcap_wsgi.storage.mysql import DocumentUriTaken, MySQLStore, parse_url
from xcap_wsgi.storage.mysql_connection import MySQLConnections, _literals, driver_available

pytestmark = pytest.mark.mysql

ALICE = DocumentKey("alice", "example.com", "/xcap-root/resource-lists/users/sip:alice@example.com/index", 4)
# Not UTF-8 (a UTF-16 document is legal XML): must reach the BLOB column byte for byte.
RAW = "<?xml version='1.0' encoding='UTF-16'?><r>\u00e9</r>".encode("utf-16")


@pytest.fixture(params=["pymysql", "mysqlclient"])
def driver(request):
    if not driver_available(request.param):
        unavailable(f"{request.param} is not installed (pip install 'xcap-wsgi[fast]')")
    return request.param


def test_auto_prefers_the_c_driver_when_installed(db_url):
    connections = MySQLConnections.from_url(db_url)
    try:
        assert connections.driver == ("mysqlclient" if driver_available("mysqlclient") else "pymysql")
        if IN_CI:  # the test extras install it, so CI runs every MySQL test on the C driver
            assert connections.driver == "mysqlclient"
    finally:
        connections.close()
    tls = MySQLConnections.from_url(db_url + "?ssl=required")  # builds no connection yet
    assert tls.driver == "pymysql"  # TLS settings stay with PyMySQL (module doc)
    with pytest.raises(ValueError, match="driver"):
        MySQLConnections.from_url(db_url + "?driver=odbc")


def test_store_round_trip_and_errors(db_url, driver):
    store = MySQLStore.from_url(db_url + f"?driver={driver}&pool_size=2")
    try:
        assert store._db.driver == driver
        etag = store.put(ALICE, RAW, None)
        assert store.get(ALICE).content == RAW and rows(db_url)[0]["doc"] == RAW
        etag = store.put(ALICE, b"<r/>", etag)
        assert store.get(ALICE).etag == etag
        # A duplicate doc_uri (1062, IntegrityError) under another account: reported, not retried.
        foreign = DocumentKey("mallory", "example.net", ALICE.doc_uri, 4)
        with pytest.raises(DocumentUriTaken):
            store.put(foreign, b"<x/>", None)
        # A server error that is not about the connection: StoreError with the server's code.
        with pytest.raises(StoreError, match="1146"):
            store._db.run(lambda cursor: cursor.execute("SELECT 1 FROM no_such_table"))
        # Killed connections are replaced (2006/2013 -> reconnect), the request still answers.
        database = parse_url(db_url)["connect"]["database"]
        with contextlib.closing(connect(db_url)) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db=%s AND id <> CONNECTION_ID()",
                        (database,))
            for (pid,) in cur.fetchall():
                cur.execute(f"KILL CONNECTION {int(pid)}")
        time.sleep(0.2)
        assert store.get(ALICE).etag == etag
        store.delete(ALICE, etag)
        assert store.get(ALICE) is None
    finally:
        store.close()


def test_localhost_is_the_same_tcp_server_with_either_driver(db_url, driver):
    """libmysqlclient alone reads host "localhost" as its default Unix socket and drops the port:
    with mysqlclient installed, mysql://...@localhost:PORT/db reached another server (or none)."""
    assert "@127.0.0.1:" in db_url
    connections = MySQLConnections.from_url(db_url.replace("@127.0.0.1:", "@localhost:") + f"?driver={driver}")
    try:
        seen = []
        connections.run(lambda cursor: (cursor.execute("SELECT @@port, host FROM information_schema.processlist "
                                                       "WHERE id = CONNECTION_ID()"),
                                        seen.extend(cursor.fetchall())))
        [(port, client)] = seen
        assert int(port) == parse_url(db_url)["connect"]["port"]
        assert ":" in client  # host:port of a TCP client; a Unix socket client is plain "localhost"
    finally:
        connections.close()


def test_unreachable_server_is_store_unavailable(driver):
    from xcap_wsgi.storage import StoreUnavailable

    connections = MySQLConnections.from_url(f"mysql://nobody:x@127.0.0.1:1/none?driver={driver}&connect_timeout=2")
    with pytest.raises(StoreUnavailable):
        connections.ping()


#: Values whose binding differs if escaping goes wrong: quotes, backslash, '%', NUL, non-UTF-8
#: bytes, a non-ASCII character, NULL and a number.
TRICKY = ("plain", "it's \"quoted\" \\ 100%", "caf\u00e9", b"\x00\xff'\\\x1a\r\n\"", None, 42)


def test_both_drivers_bind_and_read_alike(db_url):
    """The C driver runs through a lean cursor of our own (mysql_connection._CCursor): it must bind
    parameters and read rows, row counts and NULLs exactly as PyMySQL's cursor does."""
    seen = {}
    for driver in ("pymysql", "mysqlclient"):
        if not driver_available(driver):
            unavailable(f"{driver} is not installed (pip install 'xcap-wsgi[fast]')")
        store = MySQLStore.from_url(db_url + f"?driver={driver}&pool_size=1")
        try:
            first = store.put(ALICE, RAW, None)
            bob = DocumentKey("bob", "example.com", ALICE.doc_uri.replace("alice", "bob"), 4)
            store.put(bob, b"<bob/>", None)

            def work(cursor, first=first):
                found = cursor.execute("SELECT %s, %s, %s, %s, %s, %s, 'a%%' LIKE %s", (*TRICKY, "a%"))
                row, after = cursor.fetchone(), cursor.fetchone()
                cursor.execute("SELECT username, doc FROM xcap ORDER BY id")
                everything, rest = cursor.fetchall(), cursor.fetchall()
                # CLIENT.FOUND_ROWS: an UPDATE that changes nothing still counts the matched row
                same = cursor.execute("UPDATE xcap SET etag=%s WHERE username=%s", (first, "alice"))
                missed = cursor.execute("UPDATE xcap SET etag=%s WHERE username=%s", ("x", "nobody"))
                return found, row, after, [tuple(r) for r in everything], list(rest), same, missed

            seen[driver] = store._run(work, write=True)
            if driver == "mysqlclient":  # the inline cases of _literals are mysqlclient's literal()
                connection = store._pool.acquire()
                try:
                    assert list(_literals(connection, TRICKY)) == [connection.literal(v) for v in TRICKY]
                finally:
                    store._pool.release(connection)
        finally:
            store._db.run(lambda cursor: cursor.execute("DELETE FROM xcap"))
            store.close()
    assert seen["pymysql"] == seen["mysqlclient"]
    found, row, after, everything, rest, same, missed = seen["mysqlclient"]
    assert (found, tuple(row), after) == (1, (*TRICKY, 1), None)
    assert everything == [("alice", RAW), ("bob", b"<bob/>")] and rest == []
    assert (same, missed) == (1, 0)


#: What Galera answered in CI when a node left the primary component under a commit (1180).
NOT_PRIMARY = ("Error while appending streaming replication fragment"
               "(provider status: Not connected to Primary Component)")


def _signal(code: int, message: str) -> str:
    return f"SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO={code}, MESSAGE_TEXT='{message}'"


def test_a_commit_refused_by_a_node_out_of_the_primary_component_moves_to_the_next_node(db_url, driver):
    """The server itself raises Galera's 1180 (SIGNAL): the layer treats it as a failed node, as
    it does 1047, and runs the statement again on the next host; any other 1180 is an error."""
    scheme, rest = db_url.split("://", 1)
    credentials, address = rest.rsplit("@", 1)
    hostport, database = address.split("/", 1)
    port = hostport.rsplit(":", 1)[1] if ":" in hostport else "3306"
    two_nodes = f"{scheme}://{credentials}@127.0.0.1:{port},127.0.0.1:{port}/{database}"  # one server, two "nodes"
    connections = MySQLConnections.from_url(two_nodes + f"?driver={driver}")
    calls = []

    def work(cursor):
        calls.append(connections.current)
        cursor.execute(_signal(1180, NOT_PRIMARY) if len(calls) == 1 else "SELECT 7")
        return cursor.fetchall()

    try:
        first = connections.current
        assert [tuple(row) for row in connections.run(work)] == [(7,)]
        assert calls == [first, 1 - first] and connections.current == 1 - first
        with pytest.raises(StoreError, match="1180"):
            connections.run(lambda cursor: cursor.execute(_signal(1180, "Got error 28 during COMMIT")))
        assert connections.current == 1 - first  # not a node failure: no move
    finally:
        connections.close()
