"""The middleware over MySQLStore: database-specific refusals become clean 4xx, never 500/503."""

from __future__ import annotations

import pytest
from conftest import RL_DOC, call, put_doc
from mysql_support import db_url, kamailio_database, mysql_store  # noqa: F401  (fixtures)
from test_documents import assert_xcap_error

from xcap_wsgi import XCAPMiddleware
from xcap_wsgi.storage import DocumentKey


@pytest.fixture
def mapp(mysql_store):
    return XCAPMiddleware(None, store=mysql_store, anonymous=True)


def test_round_trip_and_rls_services_lock_on_mysql(mapp):
    assert put_doc(mapp).status_int == 201
    assert call(mapp, "GET", "/xcap-root/resource-lists/users/sip:alice@example.com/index").body == RL_DOC
    body = (b'<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"><service uri="sip:t@example.com"><list/>'
            b'<packages><package>presence</package></packages></service></rls-services>')
    for user, status in (("alice", 201), ("bob", 409)):
        response = put_doc(mapp, path=f"/xcap-root/rls-services/users/sip:{user}@example.com/index", body=body,
                           content_type="application/rls-services+xml")
        assert response.status_int == status
    assert b"sip:t@example.com" in call(mapp, "GET", "/xcap-root/rls-services/global/index").body


def test_a_key_outside_latin1_is_a_client_error(mapp):
    path = "/xcap-root/resource-lists/users/sip:%E5%90%8D%E5%89%8D@example.com/index"  # sip:名前@example.com
    assert_xcap_error(put_doc(mapp, path=path), "constraint-failure")
    assert call(mapp, "GET", path).status_int == 404
    assert call(mapp, "DELETE", path).status_int == 404


def test_a_doc_uri_held_by_another_account_is_409(mapp, mysql_store):
    path = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    mysql_store.put(DocumentKey("someone", "elsewhere.org", path, 4), RL_DOC, None)  # e.g. a hand-made row
    assert call(mapp, "GET", path).status_int == 404  # not alice's row (Kamailio keys reads on user+domain too)
    assert_xcap_error(put_doc(mapp, path=path), "constraint-failure")
