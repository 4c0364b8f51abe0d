"""xcap-wsgi and a real Kamailio 5.6 (xcap_server, presence_xml) sharing one MariaDB ``xcap`` table.

Kamailio runs from tests/kamailio/xcap-presence.cfg on 127.0.0.1 (HTTP over xhttp, SIP over UDP),
its db_url pointing at the session database that Kamailio's own SQL files created.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from mysql_support import (  # noqa: F401  (fixtures)
    SipWatcher,
    connect,
    db_url,
    http_request,
    kamailio,
    kamailio_database,
    mysql_store,
    rls_kamailio,
    rows,
    run_xcap_wsgi,
    sip_subscribe,
)

from xcap_wsgi.storage import ConcurrentModification, DocumentKey

pytestmark = [pytest.mark.mysql, pytest.mark.kamailio]

PATH = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
ENCODED_PATH = "/xcap-root/resource-lists/users/sip%3Aalice%40example.com/index"
ALICE = DocumentKey("alice", "example.com", PATH, 4)
RULES_PATH = "/xcap-root/pres-rules/users/sip:alice@example.com/index"
ALICE_RULES = DocumentKey("alice", "example.com", RULES_PATH, 2)

LISTS = (b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
         b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
         b'  <list name="friends"><entry uri="sip:bob@example.com"><display-name>B\xc3\xb6b</display-name>'
         b'</entry></list>\n</resource-lists>\n')
LISTS_2 = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
           b'<list name="work"/></resource-lists>')


def pres_rules(action: str, who: str = "sip:bob@example.com") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" '
            f'xmlns:cr="urn:ietf:params:xml:ns:common-policy">\n'
            f'  <cr:rule id="r1">\n'
            f'    <cr:conditions><cr:identity><cr:one id="{who}"/></cr:identity></cr:conditions>\n'
            f'    <cr:actions><sub-handling>{action}</sub-handling></cr:actions>\n'
            f'    <cr:transformations/>\n'
            f'  </cr:rule>\n'
            f'</cr:ruleset>\n').encode()


def etag_of(headers: dict) -> str:
    value = headers["etag"]
    assert value.startswith('"') and value.endswith('"'), value
    return value[1:-1]


# -- store <-> Kamailio's xcap_server over HTTP ----------------------------------------------


def test_document_written_by_xcap_wsgi_is_served_by_kamailio(kamailio, mysql_store):
    etag = mysql_store.put(ALICE, LISTS, None)
    for path in (PATH, ENCODED_PATH, PATH + "/"):
        status, headers, body = kamailio.http("GET", path)
        assert status == 200, kamailio.log()[-2000:]
        assert body == LISTS
        assert headers["etag"] == f'"{etag}"'
        assert headers["content-type"] == "application/resource-lists+xml"
    # Kamailio's conditionals understand our ETag
    assert kamailio.http("GET", PATH, headers={"If-None-Match": f'"{etag}"'})[0] == 304
    assert kamailio.http("PUT", PATH, LISTS_2, {"If-Match": '"xw-not-it"'})[0] == 412


def test_document_put_through_kamailio_is_read_and_replaced_in_place(kamailio, mysql_store, db_url):
    status, headers, _ = kamailio.http("PUT", PATH, LISTS)
    assert status == 200, kamailio.log()[-2000:]
    kam_etag = etag_of(headers)
    assert kam_etag.startswith("sr-")
    [row] = rows(db_url)
    assert (row["username"], row["domain"], row["doc_type"], row["source"], row["port"]) == \
        ("alice", "example.com", 4, 0, 0)
    got = mysql_store.get(ALICE)
    assert got.content == LISTS and got.etag == kam_etag

    new_etag = mysql_store.put(ALICE, LISTS_2, kam_etag)
    [after] = rows(db_url)
    assert after["id"] == row["id"] and after["doc"] == LISTS_2 and after["etag"] == new_etag

    status, headers, body = kamailio.http("GET", PATH)
    assert (status, body, etag_of(headers)) == (200, LISTS_2, new_etag)
    # Kamailio's own CAS against our write: its old ETag no longer matches
    assert kamailio.http("PUT", PATH, LISTS, {"If-Match": f'"{kam_etag}"'})[0] == 412
    # ...and ours against Kamailio's write
    status, headers, _ = kamailio.http("PUT", PATH, LISTS, {"If-Match": f'"{new_etag}"'})
    assert status == 200
    with pytest.raises(ConcurrentModification):
        mysql_store.put(ALICE, LISTS_2, new_etag)
    assert mysql_store.get(ALICE).etag == etag_of(headers)
    assert rows(db_url)[0]["id"] == row["id"]


def test_deletes_are_seen_by_the_other_side(kamailio, mysql_store, db_url):
    etag = mysql_store.put(ALICE, LISTS, None)
    assert kamailio.http("GET", PATH)[0] == 200
    mysql_store.delete(ALICE, etag)
    assert kamailio.http("GET", PATH)[0] == 404
    assert kamailio.http("DELETE", PATH)[0] == 500  # Kamailio's answer for a missing document

    status, headers, _ = kamailio.http("PUT", PATH, LISTS)
    assert status == 200 and mysql_store.get(ALICE).etag == etag_of(headers)
    assert kamailio.http("DELETE", PATH)[0] == 200
    assert mysql_store.get(ALICE) is None and rows(db_url) == []
    with pytest.raises(ConcurrentModification):
        mysql_store.delete(ALICE, etag_of(headers))


def test_case_variant_from_kamailio_updates_our_row_in_place(kamailio, mysql_store, db_url):
    """latin1_swedish_ci: Kamailio treats sip:ALICE@EXAMPLE.COM as alice's row, and so do we."""
    mysql_store.put(ALICE, LISTS, None)
    [row] = rows(db_url)
    upper_path = "/xcap-root/resource-lists/users/sip:ALICE@EXAMPLE.COM/index"
    status, headers, _ = kamailio.http("PUT", upper_path, LISTS_2)
    assert status == 200
    [after] = rows(db_url)
    assert after["id"] == row["id"] and after["doc_uri"] == PATH and after["username"] == "alice"
    upper = DocumentKey("ALICE", "EXAMPLE.COM", upper_path, 4)
    assert mysql_store.get(ALICE).etag == mysql_store.get(upper).etag == etag_of(headers)


# -- presence_xml reads the pres-rules xcap-wsgi writes --------------------------------------


def test_presence_xml_query_finds_our_pres_rules(kamailio, mysql_store, db_url):
    rules = pres_rules("allow")
    mysql_store.put(ALICE_RULES, rules, None)
    # the exact statement presence_xml issues (contract §7), on the table Kamailio is running against
    with contextlib.closing(connect(db_url)) as conn, conn.cursor() as cur:
        cur.execute("select doc from xcap where doc_type=2 AND username=%s AND domain=%s", ("alice", "example.com"))
        assert cur.fetchall() == ((rules,),)
    # Kamailio serves it through xcap_server with the pres-rules content type
    status, headers, body = kamailio.http("GET", RULES_PATH)
    assert (status, body, headers["content-type"]) == (200, rules, "application/auth-policy+xml")


def test_subscription_state_follows_pres_rules_written_by_xcap_wsgi(kamailio, mysql_store):
    """SIP-level proof: Kamailio's presence applies the pres-rules row xcap-wsgi wrote.

    presence decides a watcher's status on its first SUBSCRIBE and then keeps it in ``watchers``
    (later changes need the presence.updateWatchers RPC, contract §7), so each check uses a new watcher.
    """
    presentity = "sip:alice@example.com"
    run = uuid.uuid4().hex[:6]
    bob, carol, dave, erin = (f"sip:{name}{run}@example.com" for name in ("bob", "carol", "dave", "erin"))
    # no rules document: integrated_xcap_server=1 means "no rules" -> pending
    status, state = sip_subscribe(kamailio.sip_port, presentity, carol)
    assert status in (200, 202) and state == "pending", (status, state, kamailio.log()[-3000:])

    etag = mysql_store.put(ALICE_RULES, pres_rules("allow", bob), None)
    status, state = sip_subscribe(kamailio.sip_port, presentity, bob)
    assert status in (200, 202) and state == "active", (status, state, kamailio.log()[-3000:])
    # the rule names bob only: dave is pending
    status, state = sip_subscribe(kamailio.sip_port, presentity, dave)
    assert status in (200, 202) and state == "pending", (status, state)

    # replacing the document (CAS, in place) changes what Kamailio decides for new watchers
    mysql_store.put(ALICE_RULES, pres_rules("block", erin), etag)
    status, state = sip_subscribe(kamailio.sip_port, presentity, erin)
    assert state == "terminated", (status, state)


# -- end to end over HTTP: xcap-wsgi server process <-> Kamailio -----------------------------


def test_http_put_via_xcap_wsgi_get_via_kamailio_and_back(kamailio, db_url):
    with run_xcap_wsgi(db_url) as server:
        status, headers, _ = http_request("PUT", server.port, PATH, LISTS,
                                          {"Content-Type": "application/resource-lists+xml"})
        assert status in (200, 201), open(server.log_path).read()[-2000:]
        ours = etag_of(headers)
        status, headers, body = kamailio.http("GET", ENCODED_PATH)
        assert (status, body, etag_of(headers)) == (200, LISTS, ours)
        [row] = rows(db_url)

        status, headers, _ = kamailio.http("PUT", PATH, LISTS_2, {"If-Match": f'"{ours}"'})
        assert status == 200
        theirs = etag_of(headers)
        status, headers, body = http_request("GET", server.port, ENCODED_PATH)
        assert (status, body, etag_of(headers)) == (200, LISTS_2, theirs)
        assert headers["content-type"].startswith("application/resource-lists+xml")

        # xcap-wsgi's conditional PUT against Kamailio's ETag: in place, stale ETags refused
        assert http_request("PUT", server.port, PATH, LISTS, {"If-Match": f'"{ours}"',
                            "Content-Type": "application/resource-lists+xml"})[0] == 412
        status, headers, _ = http_request("PUT", server.port, PATH, LISTS, {"If-Match": f'"{theirs}"',
                                          "Content-Type": "application/resource-lists+xml"})
        assert status == 200
        assert rows(db_url)[0]["id"] == row["id"]
        assert kamailio.http("GET", PATH)[2] == LISTS

        assert kamailio.http("DELETE", PATH)[0] == 200
        assert http_request("GET", server.port, PATH)[0] == 404
        status, headers, _ = http_request("PUT", server.port, RULES_PATH, pres_rules("allow"),
                                          {"Content-Type": "application/auth-policy+xml"})
        assert status in (200, 201)
        assert http_request("DELETE", server.port, RULES_PATH)[0] == 200
        assert kamailio.http("GET", RULES_PATH)[0] == 404


def test_rpc_after_our_pres_rules_change_updates_an_existing_watcher(kamailio, mysql_store):
    """Contract §7: after xcap-wsgi changes pres-rules, presence.updateWatchers re-reads them from
    our row and Kamailio notifies the existing (pending) watcher that it is now active."""
    presentity = "sip:alice@example.com"
    who = f"sip:frank{uuid.uuid4().hex[:6]}@example.com"
    watcher = SipWatcher(kamailio.sip_port, presentity, who)
    try:
        status, state = watcher.subscribe()
        assert state == "pending", (status, state, kamailio.log()[-3000:])
        mysql_store.put(ALICE_RULES, pres_rules("allow", who), None)
        assert watcher.next_state(timeout=1.0) is None  # Kamailio does not poll the table
        answer = kamailio.rpc("presence.updateWatchers", presentity, "presence")
        assert "error" not in answer, answer
        assert watcher.next_state() == "active", kamailio.log()[-3000:]
    finally:
        watcher.close()


@pytest.mark.parametrize("example", ["kamailio-xcap.cfg", "kamailio-presence.cfg"])
def test_example_configs_pass_kamailios_config_check(example):
    import subprocess

    from mysql_support import REPO, kamailio_binary

    result = subprocess.run([kamailio_binary(), "-c", "-f", str(REPO / "examples" / example)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "config file ok" in result.stdout + result.stderr, result.stderr[-2000:]


# -- rls reads the rls-services and resource-lists xcap-wsgi writes --------------------------

RLS_SERVICES = b'''<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
  <service uri="sip:%(service)s@example.com">
    <resource-list>/xcap-root/resource-lists/users/sip:%(user)s@example.com/index/~~/resource-lists/list%%5B@name=%%22friends%%22%%5D</resource-list>
    <packages><package>presence</package></packages>
  </service>
</rls-services>
'''
FRIENDS = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
           b'<list name="friends"><entry uri="sip:alice@example.com"/><entry uri="sip:carol@example.com"/></list>'
           b'</resource-lists>\n')


def _rls_documents(store, user: str, service: str, lists_doc_uri: str) -> None:
    store.put(DocumentKey(user, "example.com", f"/xcap-root/rls-services/users/sip:{user}@example.com/index", 8),
              RLS_SERVICES % {b"service": service.encode(), b"user": user.encode()}, None)
    store.put(DocumentKey(user, "example.com", lists_doc_uri, 4), FRIENDS, None)


def test_rls_expands_a_service_from_documents_written_by_xcap_wsgi(rls_kamailio):
    """rls finds the watcher's rls-services (doc_type 8) and the referenced resource-lists row by
    its doc_uri (decoded path, XCAP root included), and NOTIFYs the list's members in RLMI."""
    kam, url = rls_kamailio
    from xcap_wsgi.storage.mysql import MySQLStore

    store = MySQLStore.from_url(url)
    try:
        user = f"bob{uuid.uuid4().hex[:6]}"
        _rls_documents(store, user, "friends-" + user,
                       f"/xcap-root/resource-lists/users/sip:{user}@example.com/index")
        watcher = SipWatcher(kam.sip_port, f"sip:friends-{user}@example.com", f"sip:{user}@example.com",
                             eventlist=True)
        try:
            status, state = watcher.subscribe()
            assert status == 200 and state == "active", (status, state, kam.log()[-3000:])
            rlmi = watcher.notifies[0]
            assert "application/rlmi+xml" in rlmi
            assert '<resource uri="sip:alice@example.com"' in rlmi
            assert '<resource uri="sip:carol@example.com"' in rlmi
        finally:
            watcher.close()

        # control: the same list stored under a doc_uri without the XCAP root is not found by rls
        other = f"dan{uuid.uuid4().hex[:6]}"
        _rls_documents(store, other, "friends-" + other, f"/resource-lists/users/sip:{other}@example.com/index")
        watcher = SipWatcher(kam.sip_port, f"sip:friends-{other}@example.com", f"sip:{other}@example.com",
                             eventlist=True)
        try:
            status, state = watcher.subscribe(timeout=3)
            assert not any("sip:alice@example.com" in n for n in watcher.notifies), (status, state)
        finally:
            watcher.close()
    finally:
        store.close()
