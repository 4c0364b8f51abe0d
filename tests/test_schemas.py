"""The bundled XML Schemas: they compile offline, accept what the RFCs and real clients produce,
and reject what the RFC schemas reject."""

from __future__ import annotations

import pytest
from lxml import etree

from xcap_wsgi import errors
from xcap_wsgi.schemas import SchemaLoadError, available_schemas, load_schema, load_schemas

XCAP_ERROR_CASES = [
    pytest.param(errors.XCAPError("an extension condition"), id="extension-with-phrase"),
    pytest.param(errors.XCAPError(), id="extension-bare"),
    pytest.param(errors.NotWellFormed("unclosed tag"), id="not-well-formed"),
    pytest.param(errors.NotXMLFrag(), id="not-xml-frag"),
    pytest.param(errors.NotXMLAttValue("contains <"), id="not-xml-att-value"),
    pytest.param(errors.NotUTF8("latin-1"), id="not-utf-8"),
    pytest.param(errors.SchemaValidationError("Element 'foo': not expected"), id="schema-validation-error"),
    pytest.param(errors.CannotInsert("positional insert would not round-trip"), id="cannot-insert"),
    pytest.param(errors.CannotDelete(), id="cannot-delete"),
    pytest.param(errors.ConstraintFailure("entry-ref must be relative"), id="constraint-failure"),
    pytest.param(errors.NoParent("no such list"), id="no-parent-without-ancestor"),
    pytest.param(
        errors.NoParent("no such list", ancestor="http://xcap.example.com/resource-lists/users/sip:a@b/index"),
        id="no-parent-with-ancestor",
    ),
    pytest.param(
        errors.UniquenessFailure([errors.Exists("rls-services/service/@uri")]), id="uniqueness-failure-bare-exists"
    ),
    pytest.param(
        errors.UniquenessFailure(
            [
                errors.Exists("rls-services/service/@uri", ["sip:friends1@example.com", "sip:friends2@example.com"]),
                errors.Exists("resource-lists/list/@name", ["l2"]),
            ],
            phrase="service URI already allocated",
        ),
        id="uniqueness-failure-with-alt-values",
    ),
    pytest.param(errors.ConstraintFailure("bad \x00\x1f phrase \ud800 cleaned"), id="phrase-with-illegal-chars"),
]


@pytest.mark.parametrize("error", XCAP_ERROR_CASES)
def test_conflict_report_bodies_are_valid_xcap_error_documents(error):
    schema = load_schema("xcap-error")
    document = etree.fromstring(error.body())
    assert schema.validate(document), schema.error_log.last_error


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"/>', id="no-condition"),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><not-utf-8/><not-xml-frag/></xcap-error>',
            id="two-conditions",
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><uniqueness-failure/></xcap-error>',
            id="uniqueness-failure-without-exists",
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><uniqueness-failure>'
            b"<exists/></uniqueness-failure></xcap-error>",
            id="exists-without-field",
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><teapot/></xcap-error>', id="unknown-condition"
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><cannot-delete reason="x"/></xcap-error>',
            id="unknown-attribute",
        ),
    ],
)
def test_xcap_error_schema_rejects_malformed_reports(body):
    assert not load_schema("xcap-error").validate(etree.fromstring(body))


CAPS = b"""<?xml version="1.0" encoding="UTF-8"?>
<xcap-caps xmlns="urn:ietf:params:xml:ns:xcap-caps">
  <auids><auid>xcap-caps</auid><auid>resource-lists</auid></auids>
  <extensions/>
  <namespaces>
    <namespace>urn:ietf:params:xml:ns:xcap-caps</namespace>
    <namespace>urn:ietf:params:xml:ns:resource-lists</namespace>
  </namespaces>
  <x:vendor xmlns:x="urn:example:vendor">anything</x:vendor>
</xcap-caps>"""


def test_xcap_caps_document_from_rfc_validates():
    schema = load_schema("xcap-caps")
    assert schema.validate(etree.fromstring(CAPS)), schema.error_log.last_error


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(CAPS.replace(b"<auids><auid>xcap-caps</auid><auid>resource-lists</auid></auids>", b"<auids/>"),
                     id="empty-auids"),
        pytest.param(CAPS.replace(b"<extensions/>", b"<extensions/><extensions/>"), id="two-extensions-lists"),
        pytest.param(CAPS.replace(b'<x:vendor xmlns:x="urn:example:vendor">anything</x:vendor>', b"<vendor/>"),
                     id="unknown-element-in-caps-namespace"),
    ],
)
def test_xcap_caps_schema_rejects_invalid_documents(body):
    assert not load_schema("xcap-caps").validate(etree.fromstring(body))


@pytest.mark.parametrize("name", available_schemas())
def test_every_bundled_schema_compiles(name):
    assert isinstance(load_schema(name), etree.XMLSchema)


def test_schemas_are_compiled_once():
    assert load_schema("xcap-error") is load_schema("xcap-error.xsd")
    assert load_schemas(["xcap-error", "xcap-caps"]) is load_schemas(("xcap-error", "xcap-caps"))


@pytest.mark.parametrize("name", ["no-such-schema", "../errors", "/etc/passwd"])
def test_unknown_schema_names_are_refused(name):
    with pytest.raises(SchemaLoadError):
        load_schema(name)
