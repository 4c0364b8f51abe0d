"""RFC 4825 §8.2.1 / §11: documents and node bodies must be UTF-8; UTF-16 and UTF-32 bodies are
answered 409 <not-utf-8> with or without a byte-order mark, and ``xcap-wsgi check`` reports
stored rows that are not UTF-8 (written by another program)."""

from __future__ import annotations

import codecs

import pytest
from conftest import ALICE_DOC, RL_DOC, call, put_doc
from test_documents import assert_xcap_error

from xcap_wsgi.admin import check_documents
from xcap_wsgi.cli import main
from xcap_wsgi.storage import DocumentKey

RL = "urn:ietf:params:xml:ns:resource-lists"
EMPTY = f'<resource-lists xmlns="{RL}"/>'
DECLARED = f'<?xml version="1.0" encoding="UTF-16"?>\n{EMPTY}'
INDENTED = f"  \n{EMPTY}"

#: Every way a UTF-16/UTF-32 body comes: no BOM (with and without a declaration, starting with
#: "<" or with whitespace) and with a BOM.
WIDE_BODIES = [
    pytest.param(text.encode(encoding), id=f"{encoding}-{name}")
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
    for name, text in (("bare", EMPTY), ("declared", DECLARED), ("indented", INDENTED))
] + [
    pytest.param(bom + text.encode(encoding), id=f"{encoding}-bom")
    for encoding, bom, text in (
        ("utf-16-le", codecs.BOM_UTF16_LE, EMPTY), ("utf-16-be", codecs.BOM_UTF16_BE, EMPTY),
        ("utf-32-le", codecs.BOM_UTF32_LE, EMPTY), ("utf-32-be", codecs.BOM_UTF32_BE, EMPTY),
        ("utf-16-le", codecs.BOM_UTF16_LE, DECLARED),
    )
]


@pytest.mark.parametrize("body", WIDE_BODIES)
def test_wide_document_is_409_not_utf8_and_nothing_is_stored(app, body):
    assert_xcap_error(put_doc(app, body=body), "not-utf-8")
    assert call(app, "GET", ALICE_DOC).status_int == 404


@pytest.mark.parametrize("body", WIDE_BODIES[:4])
def test_wide_document_does_not_replace_a_stored_one(app, body):
    put_doc(app)
    assert_xcap_error(put_doc(app, body=body), "not-utf-8")
    assert call(app, "GET", ALICE_DOC).body == RL_DOC


def test_utf8_with_or_without_its_bom_is_still_stored(app):
    # The UTF-8 byte-order mark is UTF-8 (RFC 3629 §6): accepted, stored byte for byte.
    for body in (RL_DOC, codecs.BOM_UTF8 + RL_DOC):
        assert put_doc(app, body=body).status_int in (200, 201)
        assert call(app, "GET", ALICE_DOC).body == body


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_wide_element_and_attribute_bodies_are_409_not_utf8(app, encoding):
    put_doc(app)
    element = ALICE_DOC + "/~~/resource-lists/list%5B2%5D"
    response = call(app, "PUT", element, '<list name="x"/>'.encode(encoding),
                    **{"Content-Type": "application/xcap-el+xml"})
    assert_xcap_error(response, "not-utf-8")
    attribute = ALICE_DOC + "/~~/resource-lists/list%5B1%5D/@name"
    response = call(app, "PUT", attribute, "zz".encode(encoding), **{"Content-Type": "application/xcap-att+xml"})
    assert_xcap_error(response, "not-utf-8")
    assert call(app, "GET", ALICE_DOC).body == RL_DOC


def _rows(store):
    def key(user):
        return DocumentKey(user, "example.com", f"/xcap-root/resource-lists/users/sip:{user}@example.com/index", 4)

    store.put(key("ok"), RL_DOC, None)
    store.put(key("le"), EMPTY.encode("utf-16-le"), None)  # another program wrote these bytes
    store.put(key("be32"), EMPTY.encode("utf-32-be"), None)
    store.put(key("bom"), codecs.BOM_UTF16_LE + EMPTY.encode("utf-16-le"), None)


def test_check_reports_stored_wide_documents(store):
    _rows(store)
    problems = {p.username: p.message for p in check_documents(store, default_domain="example.com")}
    assert set(problems) == {"le", "be32", "bom"}
    assert all(message.startswith("not-utf-8") for message in problems.values()), problems


def test_check_command_exits_1_and_names_them(store, capsys):
    _rows(store)
    assert main(["check", "--db", f"sqlite:///{store.path}", "--default-domain", "example.com"]) == 1
    out = capsys.readouterr().out
    for user in ("le", "be32", "bom"):
        assert f"sip:{user}@example.com/index ({user}@example.com): not-utf-8" in out
    assert "sip:ok@example.com" not in out
    assert "3 problem(s)" in out
