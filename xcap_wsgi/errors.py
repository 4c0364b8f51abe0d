"""XCAP conflict reports (RFC 4825 §11): one exception class per xcap-error condition.

Each class is a WebOb ``HTTPConflict``: code deep in the engine raises it, and the WSGI boundary
serves it as a 409 response with an ``application/xcap-error+xml`` body that is valid against the
RFC 4825 xcap-error schema (exactly one condition element, optional ``phrase`` attribute).
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from urllib.parse import quote

from lxml import etree
from webob import Response
from webob.exc import HTTPConflict

XCAP_ERROR_NS = "urn:ietf:params:xml:ns:xcap-error"
XCAP_ERROR_MIME = "application/xcap-error+xml"


class XCAPError(HTTPConflict):
    """Base class: a 409 whose body is ``<xcap-error><TAG phrase=.../></xcap-error>``."""

    tag = "extension"

    def __init__(self, phrase: str | None = None):
        super().__init__(detail=phrase)
        self.phrase = phrase

    def __str__(self, skip_body: bool = False) -> str:  # WebOb's signature; there is no body to skip
        return f"{self.tag}: {self.phrase}" if self.phrase else self.tag

    def condition_element(self) -> etree._Element:
        """The single child of <xcap-error>; subclasses add their own children."""
        element = etree.Element(f"{{{XCAP_ERROR_NS}}}{self.tag}")
        if self.phrase:
            element.set("phrase", _xml_safe(self.phrase))
        return element

    # Replaces WebOb's ``body`` property on purpose: the xcap-error document is built on demand
    # (``__call__`` serves it; tests call ``body()``), never stored in the response.
    def body(self) -> bytes:  # type: ignore[override]
        # lxml-stubs types nsmap keys as str; None (the default namespace) is what lxml documents
        root = etree.Element(f"{{{XCAP_ERROR_NS}}}xcap-error", nsmap={None: XCAP_ERROR_NS})  # type: ignore[dict-item]
        root.append(self.condition_element())
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"

    def __call__(self, environ, start_response):
        body = self.body()
        # Headers added to the exception (e.g. Cache-Control at the WSGI boundary) are kept;
        # the body's own Content-Type and Content-Length replace WebOb's text/html defaults.
        extra = [(name, value) for name, value in self.headerlist
                 if name.lower() not in ("content-type", "content-length")]
        response = Response(
            status=409,
            body=body,
            headerlist=[("Content-Type", XCAP_ERROR_MIME), ("Content-Length", str(len(body))), *extra],
        )
        return response(environ, start_response)


class NotWellFormed(XCAPError):
    """A document PUT body that is not well-formed XML."""

    tag = "not-well-formed"


class NotXMLFrag(XCAPError):
    """An element PUT body that is not exactly one well-formed element."""

    tag = "not-xml-frag"


class NotXMLAttValue(XCAPError):
    """An attribute PUT body that is not a valid XML attribute value."""

    tag = "not-xml-att-value"


class NotUTF8(XCAPError):
    """A body (or a resulting document) that is not UTF-8."""

    tag = "not-utf-8"


class SchemaValidationError(XCAPError):
    """The resulting document is not valid against the application usage's schema."""

    tag = "schema-validation-error"


class CannotInsert(XCAPError):
    """After the PUT, a GET of the request URI would not return the body (not idempotent)."""

    tag = "cannot-insert"


class CannotDelete(XCAPError):
    """After the DELETE, the request URI would still select something (not idempotent)."""

    tag = "cannot-delete"


class ConstraintFailure(XCAPError):
    """An application-usage constraint other than schema and uniqueness fails."""

    tag = "constraint-failure"


class NoParent(XCAPError):
    """The document or parent element of an insertion does not exist.

    ``ancestor`` is the absolute HTTP URI of the closest existing ancestor, when known.
    """

    tag = "no-parent"

    def __init__(self, phrase: str | None = None, ancestor: str | None = None):
        super().__init__(phrase)
        self.ancestor = ancestor

    def condition_element(self) -> etree._Element:
        element = super().condition_element()
        if self.ancestor:
            etree.SubElement(element, f"{{{XCAP_ERROR_NS}}}ancestor").text = _xml_safe(self.ancestor)
        return element


@dataclass
class Exists:
    """One clashing field of a uniqueness failure: a node selector relative to the document
    (as text: ``field_uri`` percent-encodes it in the report), and suggested values that are
    really free."""

    field: str
    alt_values: list[str] = dataclass_field(default_factory=list)


class UniquenessFailure(XCAPError):
    """A uniqueness rule of the application usage would be broken (RFC 4825 §11, RFC 4826)."""

    tag = "uniqueness-failure"

    def __init__(self, exists: list[Exists], phrase: str | None = None):
        if not exists:
            raise ValueError("uniqueness-failure needs at least one <exists> (xcap-error schema)")
        super().__init__(phrase)
        self.exists = exists

    def condition_element(self) -> etree._Element:
        element = super().condition_element()
        for clash in self.exists:
            exists = etree.SubElement(element, f"{{{XCAP_ERROR_NS}}}exists", field=field_uri(clash.field))
            for value in clash.alt_values:
                etree.SubElement(exists, f"{{{XCAP_ERROR_NS}}}alt-value").text = _xml_safe(value)
        return element


#: What stays raw in a ``field``: RFC 3986 ``pchar`` (unreserved ones ``quote`` keeps anyway),
#: plus ``/`` between steps; ``?`` is handled apart (it starts the xmlns() query).
_FIELD_SAFE = "/:@!$&'()*+,;="


def field_uri(selector: str) -> str:
    """The ``field`` attribute of ``<exists>``: the node selector percent-encoded as a relative URI.

    RFC 4825 §11 (quoted from memory, not re-read): the field "contains a relative URI
    identifying the XML element or attribute whose value needs to be unique", relative to the
    document, so it starts with the root element; "since the field node selector is a valid HTTP
    URI, it MUST be percent-encoded". So ``[``, ``]``, ``"``, spaces, ``%`` and non-ASCII
    (as UTF-8) are escaped, and a client can append the value to ``.../~~/`` as it is.
    """
    path, mark, query = _xml_safe(selector).partition("?")
    return quote(path, safe=_FIELD_SAFE) + (mark + quote(query, safe=_FIELD_SAFE + "?") if mark else "")


def _xml_safe(text: str) -> str:
    """Drop characters XML cannot carry, so a hostile phrase can never break the error body."""
    return "".join(
        ch
        for ch in text
        if ch in "\t\n\r" or ("\x20" <= ch <= "\ud7ff") or ("\ue000" <= ch <= "\ufffd") or ch > "\uffff"
    )
