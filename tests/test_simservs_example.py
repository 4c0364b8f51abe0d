"""examples/simservs_usage.py: a third-party application usage added in a few lines."""

from __future__ import annotations

import importlib.util
import pathlib

from conftest import call, put_doc

spec = importlib.util.spec_from_file_location(
    "simservs_usage", pathlib.Path(__file__).parent.parent / "examples" / "simservs_usage.py")
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)

DOC = "/xcap-root/org.etsi.ngn.simservs/users/sip:alice@example.com/simservs.xml"
BODY = (b'<simservs xmlns="http://uri.etsi.org/ngn/params/xml/simservs/xcap">'
        b'<communication-diversion active="true"/></simservs>')


def test_the_usage_serves_documents_and_node_selectors(store):
    app = example.make_app(store)
    assert put_doc(app, path=DOC, body=BODY, content_type="application/vnd.etsi.simservs+xml").status_int == 201
    assert call(app, "GET", DOC).body == BODY
    response = call(app, "GET", DOC + "/~~/simservs/communication-diversion/@active")
    assert (response.status_int, response.body) == (200, b"true")
    assert [d.doc_type for d in store.list_documents("alice", "example.com")] == [1024]


def test_its_validator_runs(store):
    app = example.make_app(store)
    response = put_doc(app, path=DOC, body=b'<other xmlns="urn:x"/>', content_type="application/vnd.etsi.simservs+xml")
    assert response.status_int == 409 and b"schema-validation-error" in response.body


def test_it_is_advertised_in_xcap_caps(store):
    body = call(example.make_app(store), "GET", "/xcap-root/xcap-caps/global/index").body
    assert b"<auid>org.etsi.ngn.simservs</auid>" in body
