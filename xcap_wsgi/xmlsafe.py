"""Hardened XML parsing for untrusted bodies and stored documents.

No DTD is loaded, no entity is expanded, nothing is fetched from the network, and a document
that carries a DOCTYPE at all is refused: XCAP documents never need one, and refusing it closes
XXE and billion-laughs attacks. Encodings other than UTF-8 are refused as RFC 4825 requires.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import cast

from lxml import etree

from .errors import ConstraintFailure, NotUTF8, NotWellFormed

_local = threading.local()
_ENCODING_DECL = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")

#: Deepest element nesting accepted in a document (XCAP documents are shallow).
MAX_DEPTH = 64
#: Most nodes (elements, attributes, comments, processing instructions) accepted in a document:
#: beyond it a PUT gets 409 <constraint-failure> (RFC 4825 §11; checked after every edit too).
MAX_NODES = 100_000


def parser() -> etree.XMLParser:
    """This thread's hardened parser (lxml parsers must not be shared between threads)."""
    instance = getattr(_local, "parser", None)
    if instance is None:
        instance = _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_blank_text=False,
            remove_comments=False,
            remove_pis=False,
            strip_cdata=False,
            collect_ids=False,
        )
    return instance


def check_utf8(data: bytes, error=NotUTF8) -> str:
    """Return ``data`` decoded, or raise ``error`` when it is not UTF-8 (or declares otherwise)."""
    if data.startswith(_UTF16_32_BOMS):
        raise error("the body is UTF-16/UTF-32 encoded; XCAP requires UTF-8")
    if b"\x00" in data[:4]:
        # UTF-16/UTF-32 without a byte-order mark (XML 1.0 Appendix F): an XML document starts
        # with "<", whitespace or a BOM, so one of its first four bytes is NUL in those encodings;
        # in UTF-8 a NUL is never allowed. Such bytes are valid UTF-8 when every character is
        # ASCII, and libxml2 would detect and parse them as UTF-16/32: refuse them here.
        raise error("the body is UTF-16/UTF-32 encoded (no byte-order mark); XCAP requires UTF-8")
    declared = _ENCODING_DECL.match(data)
    if declared and declared.group(1).decode("ascii", "replace").strip().lower() not in ("utf-8", "utf8"):
        raise error(f"the XML declaration names encoding {declared.group(1).decode('ascii', 'replace')!r}; "
                    "XCAP requires UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"the body is not valid UTF-8 (byte {exc.start})") from None


def parse_document(data: bytes, error=NotWellFormed) -> etree._ElementTree:
    """Parse a whole UTF-8 document safely; raise NotUTF8 or ``error`` (a 409 condition)."""
    check_utf8(data)
    if not data or data.isspace():  # what strip() would leave empty, without copying the body
        raise error("the body is empty")
    if has_doctype(data):
        raise error("document type declarations (DTDs) are not allowed")
    try:
        root = etree.fromstring(data, parser())
    except etree.XMLSyntaxError as exc:
        raise error(f"not well-formed XML: {exc.msg}") from None
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype or tree.docinfo.system_url:
        raise error("document type declarations (DTDs) are not allowed")
    check_limits(root, error)
    return tree


def check_limits(root: etree._Element, error=NotWellFormed) -> None:
    """The size limits on what clients may store: nesting depth and number of nodes."""
    if _WITHIN_LIMITS(root):
        return  # both limits in one XPath call; otherwise find which one fails, below
    if _depth(root) > MAX_DEPTH:
        raise error(f"elements are nested deeper than {MAX_DEPTH} levels")
    if _too_many_nodes(root):
        raise ConstraintFailure(f"the document has more than {MAX_NODES} nodes")


#: White space, PIs (the XML declaration) and comments before the document element, skipped in
#: one match: each item is atomic, taken whole or not at all, as a loop over them would.
_PROLOG = re.compile(rb"(?:(?>\s+)|(?><\?.*?\?>)|(?><!--.*?-->))*+", re.S)


def has_doctype(data: bytes) -> bool:
    """Whether the prolog holds a DOCTYPE, found *before* libxml2 could act on it."""
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    match = _PROLOG.match(data, start)  # always matches (maybe nothing)
    position = match.end() if match is not None else start
    return data[position : position + 9].upper() == b"<!DOCTYPE"


#: Selects any element nested deeper than MAX_DEPTH: evaluated level by level in C, it stops at the
#: document's real depth, so shallow documents cost little however large they are.
#: (The casts state what the expressions return: lxml's stubs type every XPath result as a union.)
_TOO_DEEP = cast(Callable[[etree._Element], bool],
                 etree.XPath("boolean(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")"))
_NODE_COUNT = cast(Callable[[etree._Element], float],
                   etree.XPath("count(//node()) + count(//@*)"))  # a union (|) would sort: 1000x slower
#: Both limits at once (a too deep document counts as too many nodes): one evaluation, where the
#: two above cost two on every write (~4 us more on a 1 KiB document).
_WITHIN_LIMITS = cast(Callable[[etree._Element], bool], etree.XPath(
    f"count(//node()) + count(//@*) + boolean(/{'/'.join(['*'] * (MAX_DEPTH + 1))}) * {MAX_NODES + 1} <= {MAX_NODES}"))


def _depth(root: etree._Element) -> int:
    """MAX_DEPTH + 1 when some element is nested deeper than MAX_DEPTH, else at most MAX_DEPTH."""
    return MAX_DEPTH + 1 if _TOO_DEEP(root) else MAX_DEPTH


def _too_many_nodes(root: etree._Element) -> bool:
    """Whether the tree holds more than ``MAX_NODES`` nodes (elements, attributes, text, ...)."""
    return _NODE_COUNT(root) > MAX_NODES
