"""Which pres-rules document a real Kamailio 5.6 applies when a user has several, and the rule
xcap-wsgi keeps because of it: one pres-rules document per user.

presence_xml reads ``select doc from xcap where doc_type=2 AND username=? AND domain=?`` and
takes the first row (contract §7): IETF ``pres-rules`` and OMA ``org.openmobilealliance.pres-rules``
documents share doc_type 2, and the document name is not looked at. These tests show on a real
Kamailio that the row with the lowest ``id`` wins whatever was written later, so a second
pres-rules document of a user is silently ignored; xcap-wsgi refuses to create one (409
constraint-failure naming the existing document).
"""

from __future__ import annotations

import uuid

import pytest

from mysql_support import (  # noqa: F401  (fixtures)
    db_url,
    http_request,
    kamailio,
    kamailio_database,
    mysql_store,
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
