"""Documents shaped as real clients write them: each is PUT as its client does and read back byte
for byte (issue 15 part 6).

The corpus (tests/corpus/<client>/*.xml) is stored with ``-text`` in .gitattributes, so CRLF line
ends and missing final newlines survive checkouts. The shapes are written from memory of each
client's code (no client source at hand), see tests/corpus/README.md:

* blink/: python3-sipsimple (Blink's XCAP manager). lxml ``tostring(encoding="UTF-8")``: one line,
  no XML declaration; every xs:anyURI value percent-encoded (``http%3A//...``, ``sip%3Abob%40...``);
  the address book in ``urn:ag-projects:xml:ns:addressbook``; OMA pres-rules at ``index``.
* jitsi/: the JDK Transformer output of Jitsi's XCAP client (``standalone="no"``, one line);
  pres-rules at ``presrules``, pres-rules elements declared per element.
* rcs-android/: an Android RCS stack's XdmManager (string concatenation with CRLF); the XUI
  ``sip:+15550000000@ims.example.net`` written with ``%2B`` in paths and anchors.
* counterpath/: Bria's contact list, fields as ``cp:prop`` name/value elements.
* rfc/: the RFC 4826, RFC 5025 and RFC 4827 example documents.

Blink's rows need the percent-decoding of URIs before the RFC 4826 reference checks and OMA
pres-rules at ``index``: both failed (409, 404) before issue 15.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import call
from lxml import etree

from xcap_wsgi.usages import default_registry
from xcap_wsgi.validation import AUID_SCHEMA_SETS, validate

CORPUS = Path(__file__).parent / "corpus"
ROOT = "/xcap-root"

ALICE = "sip:alice@example.com"
RCS_USER = "sip:+15550000000@ims.example.net"

@dataclass(frozen=True)
class Sample:
    """One corpus document and the request its client sends for it."""

    file: str  #: relative to tests/corpus
    auid: str
    user: str  #: the authenticated identity (and the XUI of the document)
    name: str = "index"  #: document name (with folders), as the client writes it
    xui_in_path: str | None = None  #: the XUI as it appears in the client's request path

    @property
    def path(self) -> str:
        return f"{ROOT}/{self.auid}/users/{self.xui_in_path or self.user}/{self.name}"


SAMPLES = [
    Sample("blink/resource-lists.xml", "resource-lists", ALICE),
    Sample("blink/rls-services.xml", "rls-services", ALICE),
    Sample("blink/oma-pres-rules.xml", "org.openmobilealliance.pres-rules", ALICE),
    # The same bytes at the OMA document name every server accepts: schema and constraints pass.
    Sample("blink/oma-pres-rules.xml", "org.openmobilealliance.pres-rules", ALICE, name="pres-rules"),
    Sample("blink/pidf-manipulation.xml", "pidf-manipulation", ALICE),
    Sample("blink/pidf-manipulation-rpid-cipid.xml", "pidf-manipulation", ALICE),
    Sample("blink/pres-content-icon.xml", "org.openmobilealliance.pres-content", ALICE, name="oma_status-icon/index"),
    Sample("jitsi/resource-lists.xml", "resource-lists", ALICE),
    Sample("jitsi/pres-rules.xml", "pres-rules", ALICE, name="presrules"),
    Sample("rcs-android/resource-lists.xml", "resource-lists", RCS_USER, xui_in_path=quote(RCS_USER, safe=":@")),
    Sample("rcs-android/rls-services.xml", "rls-services", RCS_USER, xui_in_path=quote(RCS_USER, safe=":@")),
    Sample("rcs-android/oma-pres-rules.xml", "org.openmobilealliance.pres-rules", RCS_USER, name="pres-rules",
           xui_in_path=quote(RCS_USER, safe=":@")),
    Sample("rcs-android/pres-content-icon.xml", "org.openmobilealliance.pres-content", RCS_USER,
           name="oma_status-icon/rcs_status_icon", xui_in_path=quote(RCS_USER, safe=":@")),
    Sample("counterpath/resource-lists.xml", "resource-lists", ALICE),
    Sample("rfc/rfc4826-resource-lists.xml", "resource-lists", "sip:bill@example.com"),
    Sample("rfc/rfc4826-rls-services.xml", "rls-services", "sip:joe@example.com"),
    Sample("rfc/rfc5025-pres-rules.xml", "pres-rules", "sip:user@example.com"),
    Sample("rfc/rfc4827-pidf-manipulation.xml", "pidf-manipulation", "sip:someone@example.com"),
]


def _id(sample: Sample) -> str:
    return f"{sample.file}@{sample.name}"


def _params(samples) -> list:
    # a list: pytest 9 deprecates generators as parametrize values (removed in pytest 10)
    return [pytest.param(sample, id=_id(sample)) for sample in samples]


def _body(sample: Sample) -> bytes:
    return (CORPUS / sample.file).read_bytes()


@pytest.mark.parametrize("sample", _params(SAMPLES))
def test_client_document_is_stored_and_read_back_byte_for_byte(app, sample):
    body = _body(sample)
    mime_type = default_registry().get(sample.auid).mime_type
    put = call(app, "PUT", sample.path, body, user=sample.user, **{"Content-Type": mime_type})
    assert put.status_int == 201, put.text
    got = call(app, "GET", sample.path, user=sample.user)
    assert got.status_int == 200
    assert got.content_type == mime_type
    assert got.body == body
    assert got.headers["ETag"] == put.headers["ETag"]


@pytest.mark.parametrize("sample", _params(SAMPLES))
def test_client_document_is_valid_against_its_usage_schema(sample):
    """Independent of the reference constraints: the schema set alone accepts every corpus file."""
    validate(etree.fromstring(_body(sample)).getroottree(), AUID_SCHEMA_SETS[sample.auid])


def test_every_corpus_file_is_exercised():
    on_disk = {str(path.relative_to(CORPUS)) for path in CORPUS.rglob("*.xml")}
    assert on_disk == {sample.file for sample in SAMPLES}


@pytest.mark.parametrize("path", sorted(str(p.relative_to(CORPUS)) for p in (CORPUS / "rcs-android").glob("*.xml")))
def test_rcs_documents_keep_their_crlf_line_ends(path):
    """Guards the corpus itself: a checkout or an editor must not normalise the line ends."""
    data = (CORPUS / path).read_bytes()
    assert b"\r\n" in data and data.count(b"\n") == data.count(b"\r\n")
