"""RFC 4826 constraints (§3.4.5 resource-lists, §4.4.3 rls-services) through the middleware."""

from __future__ import annotations

import pytest
from conftest import ALICE_DOC, call, put_doc
from lxml import etree
from test_documents import assert_xcap_error

NS = "urn:ietf:params:xml:ns:xcap-error"


def rl(inner: str) -> bytes:
    return f'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">{inner}</resource-lists>'.encode()


def rls(inner: str) -> bytes:
    return (f'<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" '
            f'xmlns:rl="urn:ietf:params:xml:ns:resource-lists">{inner}</rls-services>').encode()


RLS_DOC = "/xcap-root/rls-services/users/sip:alice@example.com/index"


def percent_encoded(field: str) -> str:
    """A positional field as RFC 4825 §11 has it in <exists field>: percent-encoded."""
    return field.replace("[", "%5B").replace("]", "%5D")


@pytest.mark.parametrize(
    "inner, fields",
    [
        pytest.param('<list name="a"/><list name="a"/>', ["resource-lists/list[2]/@name"], id="list-name"),
        pytest.param('<list name="l"><entry uri="sip:b@x"/><entry uri="sip:c@x"/><entry uri="sip:b@x"/></list>',
                     ["resource-lists/list[1]/entry[3]/@uri"], id="entry-uri"),
        pytest.param('<list><entry-ref ref="a"/><entry-ref ref="a"/></list>', ["resource-lists/list[1]/entry-ref[2]/@ref"],
                     id="entry-ref"),
        pytest.param('<list><external anchor="http://x/a"/><external anchor="http://x/a"/></list>',
                     ["resource-lists/list[1]/external[2]/@anchor"], id="external-anchor"),
        pytest.param('<list name="a"><list name="n"/><list name="n"/></list><list name="a"/>',
                     ["resource-lists/list[2]/@name", "resource-lists/list[1]/list[2]/@name"], id="two-clashes"),
    ],
)
def test_uniqueness_failures_name_each_clash(app, inner, fields):
    response = put_doc(app, body=rl(inner))
    condition = assert_xcap_error(response, "uniqueness-failure")
    # RFC 4825 §11: the field is percent-encoded ([ and ] as %5B and %5D)
    assert [e.get("field") for e in condition.findall(f"{{{NS}}}exists")] == [percent_encoded(f) for f in fields]
    assert call(app, "GET", ALICE_DOC).status_int == 404


def test_list_name_alternatives_are_really_free(app):
    response = put_doc(app, body=rl('<list name="f"/><list name="f-2"/><list name="f"/><list name="f-4"/>'))
    condition = assert_xcap_error(response, "uniqueness-failure")
    alternatives = [a.text for a in condition.iter(f"{{{NS}}}alt-value")]
    assert alternatives == ["f-3", "f-5", "f-6"]
    # and each suggestion really is accepted
    fixed = rl(f'<list name="f"/><list name="f-2"/><list name="{alternatives[0]}"/><list name="f-4"/>')
    assert put_doc(app, body=fixed).status_int == 201


def test_the_field_selects_the_clashing_attribute(app):
    body = rl('<list name="l"><entry uri="sip:b@x"/><entry uri="sip:b@x"/></list>')
    field = assert_xcap_error(put_doc(app, body=body), "uniqueness-failure").find(f"{{{NS}}}exists").get("field")
    put_doc(app, body=rl('<list name="l"><entry uri="sip:b@x"/><entry uri="sip:c@x"/></list>'))
    path = ALICE_DOC + "/~~/" + field  # already percent-encoded: usable in a URI as it is
    assert call(app, "GET", path).body == b"sip:c@x"


def test_same_values_in_different_parents_are_fine(app):
    assert put_doc(app, body=rl('<list name="a"><entry uri="sip:b@x"/></list>'
                                '<list name="b"><entry uri="sip:b@x"/></list>')).status_int == 201


@pytest.mark.parametrize("filler", [0, 70], ids=["few-children", "many-children"])
def test_equal_values_of_different_kinds_are_fine(app, filler):
    """Uniqueness is per kind (RFC 4826 §3.4.5): one value as a list name, an entry URI and an
    external anchor among the same siblings is no clash, with few children (all kinds' values
    looked at together first) or many (each kind on its own)."""
    entries = "".join(f'<entry uri="sip:{n}@x"/>' for n in range(filler))
    same = '<list name="http://x/a"/><entry uri="http://x/a"/><external anchor="http://x/a"/>'
    assert put_doc(app, body=rl(f"<list>{entries}{same}</list>")).status_int == 201
    clash = rl(f'<list>{entries}{same}<entry uri="http%3A//x/a"/></list>')
    condition = assert_xcap_error(put_doc(app, body=clash), "uniqueness-failure")
    assert [e.get("field") for e in condition.findall(f"{{{NS}}}exists")] == [
        percent_encoded(f"resource-lists/list[1]/entry[{filler + 2}]/@uri")]


def test_which_failure_is_reported_first(app):
    """One walk finds all three kinds of failure; the answer is what checking them in turn gives:
    a uniqueness failure first, then the first bad entry-ref, then the first bad external."""
    bad_external, bad_ref = '<external anchor="ftp://x/a"/>', '<entry-ref ref="/abs"/>'
    clash = '<entry uri="sip:b@x"/><entry uri="sip:b@x"/>'
    assert_xcap_error(put_doc(app, body=rl(f"<list>{bad_external}{bad_ref}{clash}</list>")), "uniqueness-failure")
    response = put_doc(app, body=rl(f"<list>{bad_external}{bad_ref}</list>"))
    assert_xcap_error(response, "constraint-failure")
    assert b"entry-ref" in response.body and b"ftp" not in response.body
    response = put_doc(app, body=rl(f'<list>{bad_external}<external anchor="mailto:x"/></list>'))
    assert b"ftp://x/a" in response.body and b"mailto" not in response.body


def test_node_put_creating_a_duplicate_is_refused(app):
    put_doc(app, body=rl('<list name="a"/>'))
    response = call(app, "PUT", ALICE_DOC + "/~~/resource-lists/list%5B2%5D", b'<list name="a"/>',
                    **{"Content-Type": "application/xcap-el+xml"})
    assert_xcap_error(response, "uniqueness-failure")


@pytest.mark.parametrize(
    "inner",
    [
        pytest.param('<list><entry-ref ref="http://x/resource-lists/users/sip:a@b/index"/></list>', id="entry-ref-absolute"),
        pytest.param('<list><entry-ref ref="/xcap-root/resource-lists"/></list>', id="entry-ref-absolute-path"),
        pytest.param('<list><external anchor="resource-lists/users/x/index"/></list>', id="external-relative"),
        pytest.param('<list><external anchor="ftp://x/index"/></list>', id="external-not-http"),
    ],
)
def test_reference_forms(app, inner):
    assert_xcap_error(put_doc(app, body=rl(inner)), "constraint-failure")


def test_valid_references_are_accepted(app):
    body = rl('<list><entry-ref ref="resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5b1%5d/entry%5b1%5d"/>'
              '<external anchor="https://xcap.example.com/xcap-root/resource-lists/users/sip:bob@example.com/index"/></list>')
    assert put_doc(app, body=body).status_int == 201


class TestRlsServices:
    def put(self, app, inner):
        return put_doc(app, path=RLS_DOC, body=rls(inner), content_type="application/rls-services+xml")

    def test_resource_list_of_the_owner_is_accepted(self, app):
        inner = ('<service uri="sip:friends@example.com"><resource-list>http://xcap.example.com/xcap-root/'
                 'resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22f%22%5D'
                 '</resource-list><packages><package>presence</package></packages></service>')
        assert self.put(app, inner).status_int == 201

    @pytest.mark.parametrize("value", [
        "resource-lists/users/sip:alice@example.com/index",
        "http://xcap.example.com/xcap-root/pres-rules/users/sip:alice@example.com/index",
        "http://xcap.example.com/xcap-root/resource-lists/users/sip:bob@example.com/index",
    ], ids=["relative", "other-auid", "other-user"])
    def test_bad_resource_list_values(self, app, value):
        inner = (f'<service uri="sip:friends@example.com"><resource-list>{value}</resource-list>'
                 '<packages><package>presence</package></packages></service>')
        assert_xcap_error(self.put(app, inner), "constraint-failure")

    def test_lists_inside_services_obey_resource_lists_rules(self, app):
        inner = ('<service uri="sip:friends@example.com"><list><rl:entry uri="sip:b@x"/><rl:entry uri="sip:b@x"/>'
                 '</list><packages><package>presence</package></packages></service>')
        condition = assert_xcap_error(self.put(app, inner), "uniqueness-failure")
        assert condition.find(f"{{{NS}}}exists").get("field") == percent_encoded("rls-services/service[1]/list[1]/*[2]/@uri")


def test_schema_validation_can_be_switched_off_per_auid():
    """Setting no_schema_validation: the schema is skipped for those AUIDs, RFC 4826 rules still apply."""
    from xcap_wsgi import SQLiteStore
    from xcap_wsgi.build import build_middleware
    from xcap_wsgi.settings import resolve

    values = resolve({"no_schema_validation": "resource-lists", "anonymous": "true"}, environ={})
    app = build_middleware(None, values, store=SQLiteStore(":memory:"))
    assert put_doc(app, body=rl("<bogus/>")).status_int == 201
    assert_xcap_error(put_doc(app, body=rl('<list name="a"/><list name="a"/>')), "uniqueness-failure")
    pres_rules = "/xcap-root/pres-rules/users/sip:alice@example.com/index"
    response = put_doc(app, path=pres_rules, body=b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><bogus/></ruleset>',
                       content_type="application/auth-policy+xml")
    assert_xcap_error(response, "schema-validation-error")


class TestLocalReferencesOnly:
    """Setting external_references=false: references stay inside the owner's own lists on this server."""

    @pytest.fixture
    def strict(self):
        from xcap_wsgi import SQLiteStore
        from xcap_wsgi.build import build_middleware
        from xcap_wsgi.settings import resolve

        values = resolve({"external_references": "false", "anonymous": "true"}, environ={})
        return build_middleware(None, values, store=SQLiteStore(":memory:"))

    OWN = "resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5b1%5d"

    @pytest.mark.parametrize("inner, ok", [
        pytest.param(f'<list><entry-ref ref="{OWN}"/></list>', True, id="own-entry-ref"),
        pytest.param('<list><entry-ref ref="resource-lists/users/sip:bob@example.com/index"/></list>', False,
                     id="other-users-entry-ref"),
        pytest.param(f'<list><external anchor="http://localhost/xcap-root/{OWN}"/></list>', True, id="own-external"),
        pytest.param('<list><external anchor="http://localhost/xcap-root/resource-lists/users/sip%3Abob%40example.com/index"/>'
                     '</list>', False, id="other-users-external-encoded"),
        pytest.param(f'<list><external anchor="http://evil.example.net/xcap-root/{OWN}"/></list>', False,
                     id="foreign-server"),
    ])
    def test_references(self, strict, inner, ok):
        response = put_doc(strict, body=rl(inner))
        if ok:
            assert response.status_int == 201, response.body
        else:
            assert_xcap_error(response, "constraint-failure")

    def test_default_allows_them_as_the_rfc_does(self, app):
        body = rl('<list><external anchor="http://evil.example.net/xcap-root/resource-lists/users/sip:bob@x/index"/>'
                  '<entry-ref ref="resource-lists/users/sip:bob@example.com/index"/></list>')
        assert put_doc(app, body=body).status_int == 201

    def test_oma_external_list_entries(self, strict):
        path = "/xcap-root/org.openmobilealliance.pres-rules/users/sip:alice@example.com/pres-rules"
        for target, status in (("sip:alice@example.com", 201), ("sip:bob@example.com", 409)):
            body = (f'<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:ocp="urn:oma:xml:xdm:common-policy">'
                    f'<cr:rule id="r"><cr:conditions><ocp:external-list><ocp:entry anc="http://localhost/xcap-root/'
                    f'resource-lists/users/{target}/index/~~/resource-lists/list%5B@name=%22x%22%5D"/></ocp:external-list>'
                    f'</cr:conditions><cr:actions/><cr:transformations/></cr:rule></cr:ruleset>').encode()
            response = put_doc(strict, path=path, body=body, content_type="application/auth-policy+xml")
            assert response.status_int in (status, 200), response.body


# -- percent-encoded URIs, as python3-sipsimple (Blink) writes every one of them -------------------

BLINK_LISTS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
    b'  <list name="friends">\n'
    b'    <entry uri="sip%3Abob%40example.com"><display-name>Bob</display-name></entry>\n'
    b'    <entry-ref ref="resource-lists/users/sip%3Aalice%40example.com/index/~~/resource-lists/'
    b'list%5B%40name%3D%22work%22%5D"/>\n'
    b'    <external anchor="http%3A//xcap.example.com/xcap-root/resource-lists/users/sip%3Abob%40example.com/'
    b'index/~~/resource-lists/list%5B%40name%3D%22friends%22%5D"/>\n'
    b'  </list>\n'
    b'  <list name="work"/>\n'
    b'</resource-lists>\n'
)


class TestPercentEncodedReferences:
    """References are checked percent-decoded (once); the stored bytes stay as the client wrote them."""

    def test_blinks_address_book_is_stored_byte_for_byte(self, app):
        assert put_doc(app, body=BLINK_LISTS).status_int == 201
        assert call(app, "GET", ALICE_DOC).body == BLINK_LISTS

    @pytest.mark.parametrize("inner, field", [
        pytest.param('<list><entry uri="sip%3Abob%40x"/><entry uri="sip:bob@x"/></list>',
                     "resource-lists/list[1]/entry[2]/@uri", id="entry-uri"),
        pytest.param('<list><entry uri="sip:bob@x"/><entry uri="sip%3abob%40x"/></list>',
                     "resource-lists/list[1]/entry[2]/@uri", id="entry-uri-lowercase-hex"),
        pytest.param('<list><external anchor="http%3A//x/a"/><external anchor="http://x/a"/></list>',
                     "resource-lists/list[1]/external[2]/@anchor", id="external-anchor"),
        pytest.param('<list><entry-ref ref="resource-lists/users/sip%3Aa%40b/index"/>'
                     '<entry-ref ref="resource-lists/users/sip:a@b/index"/></list>',
                     "resource-lists/list[1]/entry-ref[2]/@ref", id="entry-ref"),
    ])
    def test_encoded_and_plain_forms_of_one_uri_clash(self, app, inner, field):
        condition = assert_xcap_error(put_doc(app, body=rl(inner)), "uniqueness-failure")
        assert [e.get("field") for e in condition.findall(f"{{{NS}}}exists")] == [percent_encoded(field)]

    def test_list_names_are_names_not_uris(self, app):
        assert put_doc(app, body=rl('<list name="a%20b"/><list name="a b"/>')).status_int == 201

    @pytest.mark.parametrize("inner", [
        pytest.param('<list><entry-ref ref="http%3A//x/resource-lists/users/sip:a@b/index"/></list>', id="entry-ref-absolute"),
        pytest.param('<list><entry-ref ref="%2Fxcap-root/resource-lists"/></list>', id="entry-ref-absolute-path"),
        pytest.param('<list><external anchor="ftp%3A//x/index"/></list>', id="external-not-http"),
        pytest.param('<list><external anchor="http%3Aresource-lists"/></list>', id="external-no-host"),
    ])
    def test_decoded_forms_still_obey_the_reference_rules(self, app, inner):
        assert_xcap_error(put_doc(app, body=rl(inner)), "constraint-failure")

    def rls_put(self, app, inner, path=RLS_DOC, user="sip:alice@example.com"):
        return call(app, "PUT", path, rls(inner), user=user, **{"Content-Type": "application/rls-services+xml"})

    def test_rls_resource_list_of_the_owner(self, app):
        inner = ('<service uri="sip%3Afriends%40example.com"><resource-list>http%3A//xcap.example.com/xcap-root/'
                 'resource-lists/users/sip%3Aalice%40example.com/index/~~/resource-lists/list%5B%40name%3D%22f%22%5D'
                 '</resource-list><packages><package>presence</package></packages></service>')
        assert self.rls_put(app, inner).status_int == 201
        assert call(app, "GET", RLS_DOC).body == rls(inner)

    def test_rls_resource_list_of_another_user_is_refused(self, app):
        inner = ('<service uri="sip:friends@example.com"><resource-list>http%3A//xcap.example.com/xcap-root/'
                 'resource-lists/users/sip%3Abob%40example.com/index</resource-list>'
                 '<packages><package>presence</package></packages></service>')
        assert_xcap_error(self.rls_put(app, inner), "constraint-failure")

    def test_rls_service_uris_are_unique_across_users_decoded(self, app):
        plain = '<service uri="sip:buddies@example.com"><list/><packages><package>presence</package></packages></service>'
        assert self.rls_put(app, plain).status_int == 201
        encoded = plain.replace("sip:buddies@example.com", "sip%3Abuddies%40example.com")
        bob = "/xcap-root/rls-services/users/sip:bob@example.com/index"
        condition = assert_xcap_error(self.rls_put(app, encoded, path=bob, user="sip:bob@example.com"),
                                      "uniqueness-failure")
        exists = condition.find(f"{{{NS}}}exists")
        assert exists.get("field") == percent_encoded("rls-services/service[1]/@uri")
        assert [a.text for a in exists.iter(f"{{{NS}}}alt-value")][0] == "sip:buddies-2@example.com"
        # and within one document
        twice = encoded + plain
        assert_xcap_error(self.rls_put(app, twice, path=bob, user="sip:bob@example.com"), "uniqueness-failure")

    def test_local_references_only_decodes_too(self):
        from xcap_wsgi import SQLiteStore
        from xcap_wsgi.build import build_middleware
        from xcap_wsgi.settings import resolve

        values = resolve({"external_references": "false", "anonymous": "true"}, environ={})
        strict = build_middleware(None, values, store=SQLiteStore(":memory:"))
        own = ('<list><external anchor="http%3A//localhost/xcap-root/resource-lists/users/sip%3Aalice%40example.com/'
               'index/~~/resource-lists/list%5B1%5D"/></list>')
        assert put_doc(strict, body=rl(own)).status_int == 201, put_doc(strict, body=rl(own)).body
        other = own.replace("alice", "bob")
        assert_xcap_error(put_doc(strict, body=rl(other)), "constraint-failure")


# -- pres-rules: OMA "index" accepted, one pres-rules document per user -----------------------------

OMA_INDEX = "/xcap-root/org.openmobilealliance.pres-rules/users/sip:alice@example.com/index"
OMA_NAMED = "/xcap-root/org.openmobilealliance.pres-rules/users/sip:alice@example.com/pres-rules"
IETF_INDEX = "/xcap-root/pres-rules/users/sip:alice@example.com/index"
POLICY = "application/auth-policy+xml"
#: Shaped as python3-sipsimple writes OMA presence rules (common-policy prefixed, OMA extensions).
BLINK_RULES = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<cr:ruleset xmlns:pr="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy">'
    b'<cr:rule id="wp_prs_allow_own"><cr:conditions><cr:identity><cr:one id="sip:alice@example.com"/>'
    b'</cr:identity></cr:conditions><cr:actions><pr:sub-handling>allow</pr:sub-handling></cr:actions>'
    b'<cr:transformations/></cr:rule></cr:ruleset>'
)


class TestOnePresRulesDocument:
    def test_blink_puts_oma_pres_rules_at_index(self, app):
        assert put_doc(app, path=OMA_INDEX, body=BLINK_RULES, content_type=POLICY).status_int == 201
        response = call(app, "GET", OMA_INDEX)
        assert (response.body, response.content_type) == (BLINK_RULES, POLICY)
        node = OMA_INDEX + "/~~/ruleset/rule%5B@id=%22wp_prs_allow_own%22%5D/actions"
        assert call(app, "GET", node).status_int == 200
        listing = call(app, "GET", "/xcap-root/org.openmobilealliance.xcap-directory/users/sip:alice@example.com/"
                       "directory.xml").body
        folder = etree.fromstring(listing).find("{urn:oma:xml:xdm:xcap-directory}folder"
                                                "[@auid='org.openmobilealliance.pres-rules']")
        assert [e.get("uri").endswith("/org.openmobilealliance.pres-rules/users/sip:alice@example.com/index")
                for e in folder] == [True]

    @pytest.mark.parametrize("first, second", [(OMA_INDEX, IETF_INDEX), (IETF_INDEX, OMA_INDEX),
                                               (OMA_NAMED, OMA_INDEX), (OMA_INDEX, OMA_NAMED)])
    def test_a_second_document_is_refused_naming_the_first(self, app, first, second):
        assert put_doc(app, path=first, body=BLINK_RULES, content_type=POLICY).status_int == 201
        condition = assert_xcap_error(put_doc(app, path=second, body=BLINK_RULES, content_type=POLICY),
                                      "constraint-failure")
        assert first in condition.get("phrase")
        assert call(app, "GET", second).status_int == 404
        # the existing one is still written as usual, whole or node by node
        assert put_doc(app, path=first, body=BLINK_RULES + b"\n", content_type=POLICY).status_int == 200
        node = (first + "/~~/cr:ruleset/cr:rule%5B@id=%22wp_prs_allow_own%22%5D/cr:transformations"
                "?xmlns(cr=urn:ietf:params:xml:ns:common-policy)")
        assert call(app, "DELETE", node).status_int == 200
        # other users are not concerned; after a DELETE the user may choose another AUID or name
        bob = second.replace("alice", "bob")
        assert call(app, "PUT", bob, BLINK_RULES, user="sip:bob@example.com",
                    **{"Content-Type": POLICY}).status_int == 201
        assert call(app, "DELETE", first).status_int == 200
        assert put_doc(app, path=second, body=BLINK_RULES, content_type=POLICY).status_int == 201

    def test_documents_that_already_coexist_can_still_be_edited(self, app, store):
        """Rows written by another program (Kamailio's own xcap_server) are not locked."""
        from xcap_wsgi.storage import DocumentKey

        for path in (IETF_INDEX, OMA_INDEX):
            store.put(DocumentKey("alice", "example.com", path, 2), BLINK_RULES, None)
        for path in (IETF_INDEX, OMA_INDEX):
            assert put_doc(app, path=path, body=BLINK_RULES + b"\n", content_type=POLICY).status_int == 200

    def test_check_reports_a_users_second_pres_rules_document(self, store):
        from xcap_wsgi.admin import check_documents
        from xcap_wsgi.storage import DocumentKey

        store.put(DocumentKey("alice", "example.com", OMA_INDEX, 2), BLINK_RULES, None)
        store.put(DocumentKey("alice", "example.com", IETF_INDEX, 2), BLINK_RULES, None)
        bob = IETF_INDEX.replace("alice", "bob")
        store.put(DocumentKey("bob", "example.com", bob, 2), BLINK_RULES.replace(b"alice", b"bob"), None)
        problems = {p.doc_uri: p.message for p in check_documents(store, default_domain="example.com")}
        assert set(problems) == {OMA_INDEX, IETF_INDEX}
        assert "applies this one" in problems[OMA_INDEX] and IETF_INDEX in problems[OMA_INDEX]
        assert problems[IETF_INDEX].startswith("ignored") and OMA_INDEX in problems[IETF_INDEX]

    def test_concurrent_creations_of_two_documents_leave_one(self, store):
        """Two first PUTs racing (the check reads the user's documents, slowed down here so both
        read before either commits without the lock): exactly one is created."""
        import threading
        import time

        from conftest import CountingStore

        from xcap_wsgi import XCAPMiddleware

        class SlowListing(CountingStore):
            def list_documents(self, username, domain):
                listed = self._store.list_documents(username, domain)
                time.sleep(0.3)  # widens the read -> commit window; no assertion depends on timing
                return listed

        app = XCAPMiddleware(None, store=SlowListing(store), default_domain="example.com")
        statuses, start = {}, threading.Barrier(2)

        def put(path):
            start.wait()
            statuses[path] = put_doc(app, path=path, body=BLINK_RULES, content_type=POLICY).status_int

        threads = [threading.Thread(target=put, args=(path,)) for path in (OMA_INDEX, IETF_INDEX)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses.values()) == [201, 409], statuses
        assert len([i for i in store.list_documents("alice", "example.com") if i.doc_type == 2]) == 1
