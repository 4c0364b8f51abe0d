"""Server-computed documents (xcap-directory, rls-services global index) and OMA rules."""

from __future__ import annotations

import base64

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, call, put_doc
from lxml import etree
from test_documents import assert_xcap_error

from xcap_wsgi import SQLiteStore, XCAPMiddleware

DIRECTORY = f"/xcap-root/org.openmobilealliance.xcap-directory/users/{ALICE}/directory.xml"
DIR_NS = {"d": "urn:oma:xml:xdm:xcap-directory"}
RLS_INDEX = "/xcap-root/rls-services/global/index"


def rls_doc(service_uri: str) -> bytes:
    return (f'<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" '
            f'xmlns:rl="urn:ietf:params:xml:ns:resource-lists"><service uri="{service_uri}"><list>'
            f'<rl:entry uri="sip:bob@example.com"/></list><packages><package>presence</package></packages>'
            f'</service></rls-services>').encode()


class TestXcapDirectory:
    def test_lists_the_users_documents_with_uri_etag_size_and_last_modified(self, app):
        etag = put_doc(app).headers["ETag"].strip('"')
        response = call(app, "GET", DIRECTORY)
        assert response.status_int == 200
        assert response.headers["Content-Type"] == "application/vnd.oma.xcap-directory+xml"
        document = etree.fromstring(response.body)
        from xcap_wsgi.schemas import load_schema
        load_schema("xcap-directory").assertValid(document)
        (entry,) = document.xpath('d:folder[@auid="resource-lists"]/d:entry', namespaces=DIR_NS)
        assert entry.get("uri") == "http://localhost" + ALICE_DOC
        assert entry.get("etag") == etag
        assert entry.get("size") == str(len(RL_DOC))
        assert entry.get("last-modified").endswith("Z")
        assert document.xpath('d:folder[@auid="pres-rules"]', namespaces=DIR_NS)  # empty folders are listed

    def test_etag_changes_whenever_a_source_document_changes(self, app):
        put_doc(app)
        first = call(app, "GET", DIRECTORY).headers["ETag"]
        assert call(app, "GET", DIRECTORY).headers["ETag"] == first
        put_doc(app, body=RL_DOC.replace(b"Bob", b"B"))
        assert call(app, "GET", DIRECTORY).headers["ETag"] != first

    def test_one_folder_by_node_selector(self, app):
        put_doc(app)
        response = call(app, "GET", DIRECTORY + "/~~/xcap-directory/folder%5B@auid=%22resource-lists%22%5D")
        assert response.status_int == 200 and response.headers["Content-Type"] == "application/xcap-el+xml"
        assert response.body.startswith(b'<folder auid="resource-lists">')

    @pytest.mark.parametrize("method", ["PUT", "DELETE"])
    def test_read_only(self, app, method):
        response = call(app, method, DIRECTORY, b"<x/>", **{"Content-Type": "application/vnd.oma.xcap-directory+xml"})
        assert response.status_int == 405 and response.headers["Allow"].replace(" ", "") == "GET,HEAD"

    def test_only_the_owner_reads_it(self, app):
        assert call(app, "GET", DIRECTORY, user="sip:bob@example.com").status_int == 403

    def test_other_names_are_404(self, app):
        assert call(app, "GET", DIRECTORY.replace("directory.xml", "dir")).status_int == 404


class TestRlsServicesGlobalIndex:
    def test_is_the_union_of_every_users_services(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        for user, service in [("alice", "sip:a-friends@example.com"), ("bob", "sip:b-friends@example.com")]:
            response = put_doc(app, path=f"/xcap-root/rls-services/users/sip:{user}@example.com/index",
                               body=rls_doc(service), content_type="application/rls-services+xml")
            assert response.status_int == 201, response.body
        response = call(app, "GET", RLS_INDEX)
        assert response.headers["Content-Type"] == "application/rls-services+xml"
        index = etree.fromstring(response.body)
        assert index.xpath("r:service/@uri", namespaces={"r": "urn:ietf:params:xml:ns:rls-services"}) == \
            ["sip:a-friends@example.com", "sip:b-friends@example.com"]
        etag = response.headers["ETag"]
        call(app, "DELETE", "/xcap-root/rls-services/users/sip:bob@example.com/index")
        assert call(app, "GET", RLS_INDEX).headers["ETag"] != etag

    def test_read_only(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        assert call(app, "PUT", RLS_INDEX, rls_doc("sip:x@y"), **{"Content-Type": "application/rls-services+xml"}
                    ).status_int == 405


class TestOmaRules:
    def test_perm_presence_entity_must_be_the_owner(self, app):
        path = f"/xcap-root/pidf-manipulation/users/{ALICE}/perm-presence"
        mine = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@example.com"/>'
        theirs = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.com"/>'
        assert put_doc(app, path=path, body=theirs, content_type="application/pidf+xml").status_int == 403
        assert put_doc(app, path=path, body=mine, content_type="application/pidf+xml").status_int == 201

    @pytest.mark.parametrize("mime, encoding, data, ok", [
        ("image/png", "base64", base64.b64encode(b"\x89PNG....").decode(), True),
        ("image/bmp", "base64", "AAAA", False),
        ("image/png", "binary", "AAAA", False),
        ("image/png", "base64", "not base64!", False),
        ("image/jpeg", "base64", base64.b64encode(b"x" * (256 * 1024 + 1)).decode(), False),
    ], ids=["png", "bad-mime", "bad-encoding", "bad-base64", "too-large"])
    def test_pres_content(self, app, mime, encoding, data, ok):
        body = (f'<content xmlns="urn:oma:xml:prs:pres-content"><mime-type>{mime}</mime-type>'
                f'<encoding>{encoding}</encoding><data>{data}</data></content>').encode()
        response = put_doc(app, path=f"/xcap-root/org.openmobilealliance.pres-content/users/{ALICE}/oma_status-icon/rcs_status_icon",
                           body=body, content_type="application/vnd.oma.pres-content+xml")
        if ok:
            assert response.status_int == 201
        else:
            assert_xcap_error(response, "constraint-failure")

    def test_oma_pres_rules_use_common_policy_names_and_the_pres_rules_document(self, app):
        path = f"/xcap-root/org.openmobilealliance.pres-rules/users/{ALICE}/pres-rules"
        body = (b'<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"><cr:rule id="a">'
                b'<cr:conditions/><cr:actions/><cr:transformations/></cr:rule></cr:ruleset>')
        assert put_doc(app, path=path, body=body, content_type="application/auth-policy+xml").status_int == 201
        response = call(app, "GET", path + "/~~/ruleset/rule%5B@id=%22a%22%5D")  # unprefixed, as OMA clients send
        assert response.status_int == 200 and response.body.startswith(b'<cr:rule id="a">')
        # Issue 15: "index" (what Blink writes) is a document of the usage too, but a user has one
        # pres-rules document (Kamailio applies only one): alice's second one is refused.
        index = f"/xcap-root/org.openmobilealliance.pres-rules/users/{ALICE}/index"
        assert_xcap_error(put_doc(app, path=index, body=body, content_type="application/auth-policy+xml"),
                          "constraint-failure")
        assert call(app, "GET", path + "/~~/ruleset/rule%5B@id=%22a%22%5D").status_int == 200
        assert put_doc(app, path=path.replace("/pres-rules", "/other"), body=body,
                       content_type="application/auth-policy+xml").status_int == 404


class TestServiceUriUniqueness:
    """RFC 4826 §4.4.3: a service URI is unique across every user's rls-services documents."""

    def put(self, app, user, *uris):
        services = "".join(
            f'<service uri="{u}"><list/><packages><package>presence</package></packages></service>' for u in uris)
        body = f'<rls-services xmlns="urn:ietf:params:xml:ns:rls-services">{services}</rls-services>'.encode()
        return put_doc(app, path=f"/xcap-root/rls-services/users/sip:{user}@example.com/index", body=body,
                       content_type="application/rls-services+xml")

    def test_a_uri_of_another_user_is_refused_with_free_alternatives(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        assert self.put(app, "bob", "sip:team@example.com", "sip:team-2@example.com").status_int == 201
        response = self.put(app, "alice", "sip:mine@example.com", "sip:team@EXAMPLE.COM")  # hosts compare case-insensitively
        condition = assert_xcap_error(response, "uniqueness-failure")
        (exists,) = condition.findall("{urn:ietf:params:xml:ns:xcap-error}exists")
        assert exists.get("field") == "rls-services/service%5B2%5D/@uri"  # percent-encoded (RFC 4825 §11)
        alternatives = [a.text for a in exists]
        assert alternatives and not any(a.startswith("sip:team-2@") for a in alternatives)  # bob has team-2
        assert self.put(app, "alice", "sip:mine@example.com", alternatives[0]).status_int == 201

    def test_duplicates_inside_one_document_are_refused(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        assert_xcap_error(self.put(app, "alice", "sip:a@example.com", "sip:a@example.com"), "uniqueness-failure")

    def test_replacing_ones_own_document_keeps_its_uris(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        assert self.put(app, "alice", "sip:a@example.com").status_int == 201
        assert self.put(app, "alice", "sip:a@example.com", "sip:b@example.com").status_int == 200

    def test_concurrent_claims_never_both_succeed(self, tmp_path):
        """Two users claim the same new URI at the same instant, 15 times: exactly one wins each time."""
        import threading

        app = XCAPMiddleware(None, store=SQLiteStore(str(tmp_path / "race.sqlite3")), anonymous=True)
        for round_ in range(15):
            uri = f"sip:race{round_}@example.com"
            barrier, results = threading.Barrier(2), {}

            def claim(user):
                barrier.wait()
                results[user] = self.put(app, user, uri).status_int

            threads = [threading.Thread(target=claim, args=(u,)) for u in (f"a{round_}", f"b{round_}")]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(results.values()) == [201, 409], results


def test_rls_services_global_index_is_for_trusted_principals_only(store):
    from xcap_wsgi.auth import DefaultPolicy

    app = XCAPMiddleware(None, store=store, default_domain="example.com",
                         policy=DefaultPolicy(default_domain="example.com", trusted=["rls@example.com"]))
    assert call(app, "GET", RLS_INDEX, user="sip:alice@example.com").status_int == 404  # hidden (issue 15)
    assert call(app, "GET", RLS_INDEX, user="rls@example.com").status_int == 200
    assert call(app, "GET", "/xcap-root/xcap-caps/global/index", user="sip:alice@example.com").status_int == 200
