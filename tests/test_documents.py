"""Whole-document GET/PUT/DELETE through the middleware (RFC 4825 §7.2-§7.4, §8), real SQLite."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, RL_MIME, call, put_doc
from lxml import etree

from xcap_wsgi.schemas import load_schema


def assert_xcap_error(response, condition: str):
    """A 409 whose body is a schema-valid xcap-error report with exactly this condition."""
    assert response.status_int == 409
    assert response.headers["Content-Type"] == "application/xcap-error+xml"
    assert int(response.headers["Content-Length"]) == len(response.body)
    document = etree.fromstring(response.body)
    load_schema("xcap-error").assertValid(document)
    (child,) = list(document)
    assert child.tag == "{urn:ietf:params:xml:ns:xcap-error}" + condition
    return child


class TestGet:
    def test_get_returns_stored_bytes_mime_type_and_strong_etag(self, app):
        created = put_doc(app)
        response = call(app, "GET", ALICE_DOC)
        assert response.status_int == 200
        assert response.body == RL_DOC
        assert response.headers["Content-Type"] == RL_MIME  # exactly, no charset parameter
        etag = response.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        assert etag == created.headers["ETag"]
        assert response.headers["Cache-Control"] == "no-cache"

    def test_missing_document_is_404(self, app):
        response = call(app, "GET", ALICE_DOC)
        assert response.status_int == 404
        assert b"no document" in response.body

    def test_head_is_get_without_body(self, app):
        put_doc(app)
        response = call(app, "HEAD", ALICE_DOC)
        assert response.status_int == 200
        assert response.body == b""
        assert response.headers["Content-Length"] == str(len(RL_DOC))
        assert response.headers["ETag"] == call(app, "GET", ALICE_DOC).headers["ETag"]

    @pytest.mark.parametrize(
        "document",
        [
            pytest.param(b"<?xml version='1.0' encoding='UTF-8'?>\n<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'/>", id="single-quoted-declaration"),
            pytest.param(b'<!-- first -->\r\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\r\n  <!-- inner -->\r\n</resource-lists>\r\n<!-- after -->', id="comments-and-crlf"),
            pytest.param('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="Für Zoë 好友"><entry uri="sip:rené@example.com"><display-name>René ☎</display-name></entry></list></resource-lists>'.encode(), id="non-ascii"),
            pytest.param(b'\xef\xbb\xbf<resource-lists   xmlns = "urn:ietf:params:xml:ns:resource-lists"\n\t/>', id="bom-and-odd-whitespace"),
            pytest.param(b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><display-name><![CDATA[<x>]]>&amp;&#x263A;</display-name></list><?pi data?></resource-lists>', id="cdata-refs-pi"),
        ],
    )
    def test_round_trip_is_byte_exact(self, app, document):
        assert put_doc(app, body=document).status_int == 201
        assert call(app, "GET", ALICE_DOC).body == document


class TestPut:
    def test_create_is_201_replace_is_200_with_new_etag(self, app):
        created = put_doc(app)
        assert created.status_int == 201
        assert created.body == b""
        replaced = put_doc(app, body=RL_DOC.replace(b"Bob", b"Robert"))
        assert replaced.status_int == 200
        assert replaced.headers["ETag"] != created.headers["ETag"]
        assert call(app, "GET", ALICE_DOC).body == RL_DOC.replace(b"Bob", b"Robert")

    def test_content_type_parameters_are_accepted(self, app):
        assert put_doc(app, content_type=RL_MIME + "; charset=UTF-8").status_int == 201

    @pytest.mark.parametrize("content_type", ["text/xml", "application/xml", "application/xcap-el+xml", ""])
    def test_wrong_content_type_is_415_and_nothing_is_stored(self, app, content_type):
        response = put_doc(app, content_type=content_type)
        assert response.status_int == 415
        assert int(response.headers["Content-Length"]) == len(response.body)
        assert call(app, "GET", ALICE_DOC).status_int == 404

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"<resource-lists>", id="unclosed"),
            pytest.param(b"", id="empty"),
            pytest.param(b"just text", id="text"),
            pytest.param(b"<a/><b/>", id="two-roots"),
            pytest.param(b"<a x='1' x='2'/>", id="duplicate-attribute"),
            pytest.param(b"<p:a/>", id="unbound-prefix"),
            pytest.param(b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', id="dtd"),
        ],
    )
    def test_not_well_formed_is_409_and_the_stored_document_is_unchanged(self, app, body):
        put_doc(app)
        before = call(app, "GET", ALICE_DOC)
        response = put_doc(app, body=body)
        condition = assert_xcap_error(response, "not-well-formed")
        assert condition.get("phrase")
        after = call(app, "GET", ALICE_DOC)
        assert (after.body, after.headers["ETag"]) == (before.body, before.headers["ETag"])

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="Zoë"/></resource-lists>'.encode("latin-1"), id="latin-1-bytes"),
            pytest.param('<?xml version="1.0" encoding="ISO-8859-1"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>'.encode("latin-1"), id="declared-latin-1"),
            pytest.param('<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>'.encode("utf-16"), id="utf-16"),
        ],
    )
    def test_not_utf8_is_409(self, app, body):
        put_doc(app)
        response = put_doc(app, body=body)
        assert_xcap_error(response, "not-utf-8")
        assert call(app, "GET", ALICE_DOC).body == RL_DOC

    def test_identical_body_still_evaluates_conditions(self, app):
        put_doc(app)
        assert put_doc(app, **{"If-Match": '"stale"'}).status_int == 412
        assert put_doc(app, **{"If-None-Match": "*"}).status_int == 412


class TestDelete:
    def test_delete_then_404(self, app):
        put_doc(app)
        response = call(app, "DELETE", ALICE_DOC)
        assert response.status_int == 200
        assert "ETag" not in response.headers
        assert call(app, "GET", ALICE_DOC).status_int == 404
        assert call(app, "DELETE", ALICE_DOC).status_int == 404


class TestMethods:
    @pytest.mark.parametrize("method", ["POST", "PATCH", "PROPFIND", "TRACE"])
    def test_other_methods_are_405_with_allow(self, app, method):
        response = call(app, method, ALICE_DOC)
        assert response.status_int == 405
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PUT", "DELETE"}
        assert int(response.headers["Content-Length"]) == len(response.body)

    def test_options_lists_the_methods(self, app):
        response = call(app, "OPTIONS", ALICE_DOC)
        assert response.status_int == 200
        assert "PUT" in response.headers["Allow"]


# The conditional-request matrix (RFC 7232 via RFC 4825 §7.11, §8.2.6): (method, document exists,
# header, value) -> status. "ETAG" stands for the document's current ETag.
CONDITIONS = [
    ("GET", True, "If-Match", "ETAG", 200),
    ("GET", True, "If-Match", '"other"', 412),
    ("GET", True, "If-Match", "*", 200),
    ("GET", True, "If-Match", '"other", ETAG', 200),
    ("GET", True, "If-Match", "W/ETAG", 412),  # If-Match compares strongly
    ("GET", True, "If-None-Match", "ETAG", 304),
    ("GET", True, "If-None-Match", "W/ETAG", 304),  # If-None-Match compares weakly
    ("GET", True, "If-None-Match", '"a", "b"', 200),
    ("GET", True, "If-None-Match", "*", 304),
    ("HEAD", True, "If-None-Match", "ETAG", 304),
    ("HEAD", True, "If-Match", '"other"', 412),
    ("PUT", True, "If-Match", "ETAG", 200),
    ("PUT", True, "If-Match", '"other"', 412),
    ("PUT", True, "If-Match", "*", 200),
    ("PUT", True, "If-Match", "W/ETAG", 412),
    ("PUT", True, "If-None-Match", "*", 412),
    ("PUT", True, "If-None-Match", "ETAG", 412),
    ("PUT", True, "If-None-Match", '"other"', 200),
    ("PUT", False, "If-Match", "*", 412),
    ("PUT", False, "If-Match", '"x"', 412),
    ("PUT", False, "If-None-Match", "*", 201),
    ("PUT", False, "If-None-Match", '"x"', 201),
    ("DELETE", True, "If-Match", "ETAG", 200),
    ("DELETE", True, "If-Match", '"a", "b"', 412),
    ("DELETE", True, "If-None-Match", "*", 412),
    ("DELETE", True, "If-None-Match", '"other"', 200),
    ("DELETE", False, "If-Match", "*", 404),
]


@pytest.mark.parametrize("method, exists, header, value, status", CONDITIONS,
                         ids=[f"{m}-{'exists' if e else 'absent'}-{h}:{v}" for m, e, h, v, _ in CONDITIONS])
def test_conditional_request_matrix(app, method, exists, header, value, status):
    etag = put_doc(app).headers["ETag"] if exists else '"none"'
    if not exists:
        call(app, "DELETE", ALICE_DOC)
    before = call(app, "GET", ALICE_DOC)
    body = RL_DOC.replace(b"Bob", b"Bobby") if method == "PUT" else None
    headers = {header: value.replace("ETAG", etag)}
    if method == "PUT":
        headers["Content-Type"] = RL_MIME
    response = call(app, method, ALICE_DOC, body, **headers)
    assert response.status_int == status
    if status in (304, 412):
        after = call(app, "GET", ALICE_DOC)
        assert (after.status_int, after.body) == (before.status_int, before.body)  # nothing written
    if status == 304:
        assert response.headers["ETag"] == etag and response.body == b""


class TestXcapCaps:
    def test_caps_is_valid_and_lists_every_auid(self, app):
        response = call(app, "GET", "/xcap-root/xcap-caps/global/index")
        assert response.status_int == 200
        assert response.headers["Content-Type"] == "application/xcap-caps+xml"
        document = etree.fromstring(response.body)
        load_schema("xcap-caps").assertValid(document)
        ns = {"c": "urn:ietf:params:xml:ns:xcap-caps"}
        auids = document.xpath("c:auids/c:auid/text()", namespaces=ns)
        assert {"xcap-caps", "resource-lists", "rls-services", "pres-rules", "org.openmobilealliance.pres-rules",
                "pidf-manipulation", "org.openmobilealliance.pres-content",
                "org.openmobilealliance.user-profile"} <= set(auids)
        assert document.find("c:extensions", ns) is not None
        assert "urn:ietf:params:xml:ns:xcap-caps" in document.xpath("c:namespaces/c:namespace/text()", namespaces=ns)

    def test_caps_supports_conditional_get(self, app):
        etag = call(app, "GET", "/xcap-root/xcap-caps/global/index").headers["ETag"]
        assert call(app, "GET", "/xcap-root/xcap-caps/global/index", **{"If-None-Match": etag}).status_int == 304

    @pytest.mark.parametrize("method", ["PUT", "DELETE"])
    def test_caps_is_read_only(self, app, method):
        response = call(app, method, "/xcap-root/xcap-caps/global/index", b"<x/>", **{"Content-Type": "application/xcap-caps+xml"})
        assert response.status_int == 405
        assert response.headers["Allow"].replace(" ", "") == "GET,HEAD"

    @pytest.mark.parametrize(
        "path",
        [
            "/xcap-root/xcap-caps/users/sip:alice@example.com/index",
            "/xcap-root/xcap-caps/global/other",
            "/xcap-root/resource-lists/global/index",
            "/xcap-root/no-such-auid/users/sip:alice@example.com/index",
            "/xcap-root/RESOURCE-LISTS/users/sip:alice@example.com/index",
            "/xcap-root/pidf-manipulation/users/sip:alice@example.com/not-allowed-name",
        ],
    )
    def test_unknown_resources_are_404(self, app, path):
        assert call(app, "GET", path).status_int == 404


class TestKamailioRowLayout:
    def test_row_matches_kamailio_xcap_server(self, app, store):
        etag = put_doc(app).headers["ETag"].strip('"')
        row = _rows(store)[0]
        assert row == {
            "username": "alice", "domain": "example.com", "doc": RL_DOC, "doc_type": 4, "etag": etag,
            "source": 0, "port": 0, "doc_uri": "/xcap-root/resource-lists/users/sip:alice@example.com/index",
        }
        assert 1 <= len(etag) <= 117

    @pytest.mark.parametrize("auid, name, doc_type, body", [
        ("pres-rules", "index", 2, '<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"/>'),
        ("org.openmobilealliance.pres-rules", "pres-rules", 2,
         '<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"/>'),
        ("resource-lists", "index", 4, '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>'),
        ("rls-services", "index", 8, '<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"/>'),
        ("pidf-manipulation", "index", 16, f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}"/>'),
        ("org.openmobilealliance.user-profile", "index", 64, '<user-profiles xmlns="urn:oma:xml:xdm:user-profile"/>'),
        ("org.openmobilealliance.pres-content", "index", 128,
         '<content xmlns="urn:oma:xml:prs:pres-content"><mime-type>image/png</mime-type>'
         '<encoding>base64</encoding><data>iVBORw0KGgo=</data></content>'),
    ])
    def test_doc_type_numbers(self, app, store, auid, name, doc_type, body):
        from xcap_wsgi.usages import default_registry

        path = f"/xcap-root/{auid}/users/{ALICE}/{name}"
        response = put_doc(app, path=path, body=body.encode(), content_type=default_registry().get(auid).mime_type)
        assert response.status_int == 201, response.body
        assert [(r["doc_type"], r["doc_uri"]) for r in _rows(store)] == [(doc_type, path)]

    def test_replace_keeps_the_row_id(self, app, store):
        put_doc(app)
        first = _ids(store)
        put_doc(app, body=RL_DOC.replace(b"Bob", b"B"))
        assert _ids(store) == first

    def test_encoded_and_plain_xui_are_the_same_row(self, app, store):
        put_doc(app, path="/xcap-root/resource-lists/users/sip%3Aalice%40example.com/index")
        assert call(app, "GET", ALICE_DOC).body == RL_DOC
        assert call(app, "GET", "/xcap-root/resource-lists/users/sip:alice@EXAMPLE.COM/index").body == RL_DOC
        assert len(_rows(store)) == 1


def _rows(store):
    connection = sqlite3.connect(store.path)
    connection.row_factory = sqlite3.Row
    rows = [dict(r) for r in connection.execute(
        "SELECT username, domain, doc, doc_type, etag, source, port, doc_uri FROM xcap ORDER BY id")]
    connection.close()
    return rows


def _ids(store):
    connection = sqlite3.connect(store.path)
    ids = [r[0] for r in connection.execute("SELECT id FROM xcap")]
    connection.close()
    return ids
