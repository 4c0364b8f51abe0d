"""Blink's (python3-sipsimple's) documents on a real Kamailio 5.6.

**pres-rules.** Which pres-rules document Kamailio applies when a user has several, and the rule
xcap-wsgi keeps because of it: one pres-rules document per user.

presence_xml reads ``select doc from xcap where doc_type=2 AND username=? AND domain=?`` and
takes the first row (contract §7): IETF ``pres-rules`` and OMA ``org.openmobilealliance.pres-rules``
documents share doc_type 2, and the document name is not looked at. These tests show on a real
Kamailio that the row with the lowest ``id`` wins whatever was written later, so a second
pres-rules document of a user is silently ignored; xcap-wsgi refuses to create one (409
constraint-failure naming the existing document).

**rls.** Blink's percent-encoded rls-services and resource-lists, accepted by xcap-wsgi, are
expanded by Kamailio's rls, which decodes ``<resource-list>`` and the service URI itself.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import call
from mysql_support import (  # noqa: F401  (fixtures)
    SipWatcher,
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

from xcap_wsgi.storage import DocumentKey

pytestmark = [pytest.mark.mysql, pytest.mark.kamailio]

ALICE = "sip:alice@example.com"
IETF_INDEX = "/xcap-root/pres-rules/users/sip:alice@example.com/index"
OMA_INDEX = "/xcap-root/org.openmobilealliance.pres-rules/users/sip:alice@example.com/index"
OMA_PRES_RULES = "/xcap-root/org.openmobilealliance.pres-rules/users/sip:alice@example.com/pres-rules"
MIME = {"Content-Type": "application/auth-policy+xml"}


def rules(action: str) -> bytes:
    """A ruleset giving every example.com watcher ``action`` (valid as IETF and as OMA pres-rules)."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">\n'
            f'  <cr:rule id="r1">\n'
            f'    <cr:conditions><cr:identity><cr:many domain="example.com"/></cr:identity></cr:conditions>\n'
            f'    <cr:actions><sub-handling>{action}</sub-handling></cr:actions>\n'
            f'    <cr:transformations/>\n'
            f'  </cr:rule>\n'
            f'</cr:ruleset>\n').encode()


def state_for_new_watcher(kamailio) -> str:
    """The Subscription-State Kamailio gives a watcher it has never seen (it decides on the first
    SUBSCRIBE from the rules row it reads then)."""
    watcher = f"sip:w{uuid.uuid4().hex[:8]}@example.com"
    status, state = sip_subscribe(kamailio.sip_port, ALICE, watcher)
    assert status in (200, 202), (status, state, kamailio.log()[-3000:])
    return state


def key(doc_uri: str) -> DocumentKey:
    return DocumentKey("alice", "example.com", doc_uri, 2)


STATE = {"allow": "active", "block": "terminated"}


@pytest.mark.parametrize("first_action, second_action", [("allow", "block"), ("block", "allow")])
@pytest.mark.parametrize("first, second", [
    pytest.param(IETF_INDEX, OMA_INDEX, id="ietf-then-oma"),
    pytest.param(OMA_INDEX, IETF_INDEX, id="oma-then-ietf"),
    pytest.param(OMA_PRES_RULES, OMA_INDEX, id="oma-pres-rules-then-oma-index"),
])
def test_kamailio_applies_the_lowest_id_and_ignores_the_other(kamailio, mysql_store, db_url, first, second,
                                                              first_action, second_action):
    """Observed fact behind the rule (rows written straight into the table, as another program could)."""
    first_etag = mysql_store.put(key(first), rules(first_action), None)
    mysql_store.put(key(second), rules(second_action), None)
    assert [r["doc_uri"] for r in rows(db_url)] == [first, second]
    assert state_for_new_watcher(kamailio) == STATE[first_action]  # the second document is ignored
    # Rewriting the second document (in place, same id) still changes nothing...
    mysql_store.put(key(second), rules(second_action), mysql_store.get(key(second)).etag)
    assert state_for_new_watcher(kamailio) == STATE[first_action]
    # ...and once the first is deleted the other one applies.
    mysql_store.delete(key(first), first_etag)
    assert state_for_new_watcher(kamailio) == STATE[second_action]


def test_xcap_wsgi_keeps_one_pres_rules_document_per_user(kamailio, db_url):
    """Over HTTP through ``xcap-wsgi serve``: Blink's OMA ``index`` is accepted, a second pres-rules
    document of the same user is refused with 409 naming the first, and Kamailio applies the one."""
    with run_xcap_wsgi(db_url) as server:
        status, _, _ = http_request("PUT", server.port, OMA_INDEX, rules("allow"), MIME)
        assert status == 201, open(server.log_path).read()[-2000:]
        assert state_for_new_watcher(kamailio) == "active"
        for other in (IETF_INDEX, OMA_PRES_RULES):
            status, headers, body = http_request("PUT", server.port, other, rules("block"), MIME)
            assert status == 409 and b"<constraint-failure" in body, body
            assert b"org.openmobilealliance.pres-rules/users/sip:alice@example.com/index" in body, body
        assert [r["doc_uri"] for r in rows(db_url)] == [OMA_INDEX]
        # the existing document is still replaced as usual, and Kamailio follows it
        status, _, _ = http_request("PUT", server.port, OMA_INDEX, rules("block"), MIME)
        assert status == 200
        assert state_for_new_watcher(kamailio) == "terminated"
        # after deleting it, the user may pick the other AUID or name
        assert http_request("DELETE", server.port, OMA_INDEX)[0] == 200
        assert http_request("PUT", server.port, IETF_INDEX, rules("allow"), MIME)[0] == 201
        assert state_for_new_watcher(kamailio) == "active"


# -- rls: Blink's percent-encoded documents -----------------------------------------------------------


BLINK_FRIENDS = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                 b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends">'
                 b'<entry uri="sip:alice@example.com"/><entry uri="sip%3Acarol%40example.com"/></list>'
                 b'</resource-lists>\n')


@pytest.mark.parametrize("encoded_service", [False, True], ids=["plain-service-uri", "encoded-service-uri"])
def test_rls_expands_blinks_encoded_rls_services(rls_kamailio, encoded_service):
    """Written through xcap-wsgi (which checks them decoded and stores the bytes as sent), Blink's
    ``<resource-list>http%3A//...`` and ``service uri="sip%3A..."`` are found by Kamailio's rls."""
    kam, url = rls_kamailio
    from xcap_wsgi.build import build_middleware
    from xcap_wsgi.settings import resolve
    from xcap_wsgi.storage.mysql import MySQLStore

    store = MySQLStore.from_url(url)
    try:
        app = build_middleware(None, resolve({"anonymous": "true"}, environ={}), store=store)
        user = f"blink{uuid.uuid4().hex[:6]}"
        service = f"sip:friends-{user}@example.com"
        attribute = service.replace(":", "%3A").replace("@", "%40") if encoded_service else service
        resource_list = (f"http%3A//127.0.0.1:{kam.http_port}/xcap-root/resource-lists/users/sip%3A{user}%40example.com"
                         f"/index/~~/resource-lists/list%5B%40name%3D%22friends%22%5D")
        services = (f'<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="urn:ietf:params:xml:ns:rls-services">'
                    f'<service uri="{attribute}"><resource-list>{resource_list}</resource-list>'
                    f'<packages><package>presence</package></packages></service></rls-services>\n').encode()
        lists_path = f"/xcap-root/resource-lists/users/sip:{user}@example.com/index"
        services_path = f"/xcap-root/rls-services/users/sip:{user}@example.com/index"
        assert call(app, "PUT", lists_path, BLINK_FRIENDS, user=None,
                    **{"Content-Type": "application/resource-lists+xml"}).status_int == 201
        response = call(app, "PUT", services_path, services, user=None,
                        **{"Content-Type": "application/rls-services+xml"})
        assert response.status_int == 201, response.body
        assert call(app, "GET", services_path).body == services  # stored as Blink wrote it

        watcher = SipWatcher(kam.sip_port, service, f"sip:{user}@example.com", eventlist=True)
        try:
            status, state = watcher.subscribe()
            assert status == 200 and state == "active", (status, state, kam.log()[-3000:])
            rlmi = watcher.notifies[0]
            assert '<resource uri="sip:alice@example.com"' in rlmi
            # Kamailio's rls does not decode entry/@uri: Blink's encoded entry is listed as written
            assert '<resource uri="sip%3Acarol%40example.com"' in rlmi
        finally:
            watcher.close()
    finally:
        store.close()
