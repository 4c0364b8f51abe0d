"""Byte-preserving GET, PUT and DELETE of XCAP elements and attributes (RFC 4825 §7, §8, §10).

Bytes in, bytes out: the stored document is never re-serialised. lxml evaluates the node
selector; a small scanner maps the selected lxml element to its exact byte span, and the edit
is a splice of the stored bytes. Every byte outside the edited span survives: the XML
declaration, comments, PIs, white space, quote styles, CRLF line ends.

Choices where RFC 4825 leaves room (documented here so the middleware and tests agree):

* Attribute GET returns the attribute value exactly as stored between the quotes, i.e. the
  AttValue form with its references (``a&amp;b``), not the decoded value.
* An element PUT body may carry leading/trailing white space, a UTF-8 BOM and an XML
  declaration; they are dropped and only the element's bytes are stored. Anything else
  outside the one element (comments, PIs, text, a second element) is ``not-xml-frag``.
* A created element goes directly after the preceding sibling element (before any white
  space or comment that follows it), or directly before the following one; a "last child"
  append goes directly after the last element child, or, in a parent without element
  children, directly before the parent's end tag (``<p/>`` becomes ``<p>…</p>``). No white
  space is added (§8.2.3 examples).
* An attribute PUT keeps the attribute's quote style; if the body contains that quote
  character, the other quote style is used, and if it contains both, the clashing quote is
  written as a reference. A new attribute goes after the last attribute of the start tag.
* DELETE removes exactly the element's bytes; the white space around it stays. An attribute
  DELETE removes the attribute and the white space in front of it.
* Deleting the root element is ``cannot-delete``; a PUT whose single step does not match the
  root is ``cannot-insert`` (a document has exactly one root; use a document PUT/DELETE).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import NamedTuple, cast

from lxml import etree

from . import xmlsafe
from .errors import CannotDelete, CannotInsert, NoParent, NotWellFormed, NotXMLAttValue, NotXMLFrag
from .selector import NodeSelector, Step, decode_att_value, select, step_children

ELEMENT_MIME = "application/xcap-el+xml"
ATTRIBUTE_MIME = "application/xcap-att+xml"
NAMESPACE_MIME = "application/xcap-ns+xml"


class NodeNotFound(Exception):
    """The selector selects no node, or more than one (the middleware answers 404)."""


@dataclass(frozen=True)
class NodeBody:
    body: bytes
    mime_type: str


# -- public operations --------------------------------------------------------------------------


def get_node(document: bytes, selector: NodeSelector) -> NodeBody:
    """GET an element, attribute or namespace bindings (RFC 4825 §7.3, §7.7, §10)."""
    doc = document_of(document)
    element = _single(doc, selector)
    if selector.kind == "element":
        start, end = doc.span(element)
        return NodeBody(doc.data[start:end], ELEMENT_MIME)
    if selector.kind == "attribute":
        attribute = doc.attribute(element, selector.attribute_name)
        if attribute is None:
            raise NodeNotFound(f"the element has no attribute {selector.attribute_text[1:]!r}")
        return NodeBody(doc.data[attribute.value_start : attribute.value_end], ATTRIBUTE_MIME)
    return NodeBody(_namespace_bindings(element), NAMESPACE_MIME)


def put_node(document: bytes, selector: NodeSelector, body: bytes, document_url: str) -> tuple[bytes, bool]:
    """PUT an element or attribute (RFC 4825 §8.2); returns (new document, created)."""
    assert selector.kind in ("element", "attribute"), "PUT on namespace::* is a 405 in the middleware"
    doc = document_of(document)
    if selector.kind == "element":
        return _put_element(doc, selector, body, document_url)
    return _put_attribute(doc, selector, body, document_url)


def delete_node(document: bytes, selector: NodeSelector) -> bytes:
    """DELETE an element or attribute (RFC 4825 §8.4); returns the new document."""
    assert selector.kind in ("element", "attribute"), "DELETE on namespace::* is a 405 in the middleware"
    doc = document_of(document)
    element = _single(doc, selector)
    data = doc.data
    if selector.kind == "element":
        if element is doc.root:
            raise CannotDelete("the root element cannot be deleted: the document would not be "
                               "well-formed (DELETE the document instead)")
        start, end = doc.span(element)
        new = data[:start] + data[end:]
    else:
        attribute = doc.attribute(element, selector.attribute_name)
        if attribute is None:
            raise NodeNotFound(f"the element has no attribute {selector.attribute_text[1:]!r}")
        new = data[: attribute.space_start] + data[attribute.end :]
    # §8.4 / §7.5: the DELETE must be idempotent, so afterwards the URI must select nothing.
    after = document_of(new, NotWellFormed)
    remaining = select(after.root, selector.steps)
    if selector.kind == "element" and remaining:
        raise CannotDelete("after the delete the request URI would still select an element "
                           "(positional deletes are only allowed on the last such sibling)")
    if selector.kind == "attribute" and any(el.get(selector.attribute_name) is not None for el in remaining):
        raise CannotDelete("after the delete the request URI would still select an attribute")
    return new


# -- element PUT ----------------------------------------------------------------------------------


def _put_element(doc: _Document, selector: NodeSelector, body: bytes, document_url: str):
    steps, data = selector.steps, doc.data
    if len(steps) == 1:  # the root element: it can be replaced, never created
        parent, context = None, {}
        matches = select(doc.root, steps)
    else:  # §8.2.1: the parent must exist and be unique
        parents = select(doc.root, steps[:-1])
        if len(parents) != 1:
            raise _no_parent(doc, selector, steps[:-1], document_url, len(parents))
        parent = parents[0]
        context = parent.nsmap
        matches = step_children(parent, steps[-1])
    fragment = _strip_fragment(body)  # §8.2.2, checked after the parent as §8.2 orders it
    new_element = _parse_fragment(fragment, context)
    if len(matches) > 1:
        raise CannotInsert("the node selector selects more than one element")
    if parent is None and not matches:
        raise CannotInsert("a document has exactly one root element; the selector does not select it")

    if matches:  # §8.2.4: replace in place
        elements_before = int(_ELEMENTS_BEFORE(matches[0]))
        start, end = doc.span(matches[0], elements_before)
        new, created = data[:start] + fragment + data[end:], False
        after = _replaced_in_tree(doc, new, matches[0], new_element) if parent is not None else None
    else:  # §8.2.3: create where the URI will select it
        new, elements_before = _insert_element(doc, parent, steps[-1], new_element, fragment)
        created, after = True, None

    # Idempotency (§8.2.3/§8.2.4): GET of the URI on the result must return exactly the body.
    # The bytes before the splice are unchanged up to a tag boundary, so they hold the start tags
    # of the same ``elements_before`` elements, and the next start tag opens the body, which is
    # exactly one element (_parse_fragment): in document order it is element ``elements_before``
    # (0-based), and its bytes are the body's. So the URI must select exactly that element.
    if after is None:
        after = document_of(new, NotXMLFrag)
    selected = select(after.root, steps)
    if len(selected) != 1 or int(_ELEMENTS_BEFORE(selected[0])) != elements_before:
        raise CannotInsert("after the PUT the request URI would not select the element in the body")
    return new, created


def _replaced_in_tree(doc: _Document, new: bytes, old_element, new_element) -> _Document:
    """The parsed document of ``new``, made from ``doc``'s tree instead of a parse of ``new``:
    ``new`` is ``doc.data`` with the bytes of ``old_element`` (not the root) replaced by the body
    that ``new_element`` was parsed from, in the namespace context of the same parent, so
    replacing the one element by the other in the tree gives what parsing ``new`` would give:
    the same elements, attributes, text and in-scope namespaces (tests/test_editor.py compares
    them). What differs is no part of the document: source line numbers (a failed validation is
    repeated on a fresh parse for its message: operations._validate_edit) and redundant namespace
    declarations, which lxml drops when it moves the element in. This saves the parse of the
    result (~6 % of an element PUT's CPU). ``doc``'s tree is changed, so it leaves the cache
    first: it is cached again as the tree of ``new``."""
    _cache.document = None
    new_element.tail = old_element.tail
    parent = old_element.getparent()
    parent.replace(old_element, new_element)
    after = _Document.__new__(_Document)
    after.data, after.root = new, doc.root
    _cache.document = after
    return after


def fresh_tree(data: bytes) -> etree._ElementTree:
    """A parse of ``data`` of its own (not the cached tree, which may be an edited one)."""
    return _parse(data, NotWellFormed).getroottree()


def _insert_element(doc, parent, step: Step, new_element, fragment: bytes) -> tuple[bytes, int]:
    """Splice ``fragment`` in at the §8.2.3 insertion point; return (new bytes, how many elements
    precede the insertion point in document order)."""
    data = doc.data
    children = list(parent.iterchildren(tag=etree.Element))
    if step.position is not None:
        pool = children if step.tag is None else [c for c in children if c.tag == step.tag]
        n = step.position
        if n < 1 or n - 1 > len(pool):
            raise CannotInsert(f"no position satisfies [{n}]: only {len(pool)} such sibling element(s) exist")
        if n > 1:  # directly after the (n-1)th such sibling
            return _splice_after(doc, pool[n - 2], fragment)
        if pool:  # directly before the first such sibling
            offset = doc.span(pool[0])[0]
            return data[:offset] + fragment + data[offset:], int(_ELEMENTS_BEFORE(pool[0]))
    else:
        # By name (or by attribute): after the last sibling of the same expanded name. For '*'
        # the name comes from the body (as OpenXCAP's fix_star does).
        name = step.tag if step.tag is not None else new_element.tag
        same = [c for c in children if c.tag == name]
        if same:
            return _splice_after(doc, same[-1], fragment)
    if children:  # append: directly after the last element child
        return _splice_after(doc, children[-1], fragment)
    tag = doc.start_tag(parent)
    if tag.empty:  # <p .../> becomes <p ...>fragment</p>
        qname = _scan(_TAG_NAME, data, tag.start + 1).group(0)
        head = data[: tag.end - 2] + b">"
        return head + fragment + b"</" + qname + b">" + data[tag.end :], int(_ELEMENTS_BEFORE(parent)) + 1
    offset = doc.end_tag_start(parent)  # directly before the parent's end tag (it has no element children)
    return data[:offset] + fragment + data[offset:], int(_ELEMENTS_BEFORE(parent)) + 1


def _splice_after(doc, element, fragment: bytes) -> tuple[bytes, int]:
    """``fragment`` directly after ``element``: (new bytes, elements before the insertion point)."""
    offset = doc.span(element)[1]
    before = int(_ELEMENTS_BEFORE(element)) + 1 + int(_DESCENDANTS(element))
    return doc.data[:offset] + fragment + doc.data[offset:], before


_XML_DECL = re.compile(rb"<\?xml[ \t\r\n][^?]*\?>")
_WHITESPACE = b" \t\r\n"


def _strip_fragment(body: bytes) -> bytes:
    """The element bytes of a PUT body: no BOM, XML declaration or surrounding white space."""
    xmlsafe.check_utf8(body)  # NotUTF8 (also for a declared non-UTF-8 encoding)
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    body = body.strip(_WHITESPACE)
    declaration = _XML_DECL.match(body)
    if declaration:
        body = body[declaration.end() :].lstrip(_WHITESPACE)
    if not body:
        raise NotXMLFrag("the body is empty: it must be exactly one XML element")
    return body


def _parse_fragment(fragment: bytes, context: dict) -> etree._Element:
    """Parse the body as exactly one element, with the namespace bindings in scope at the
    insertion point (RFC 4825 §8.2.2: the body may use prefixes the document binds there)."""
    wrapped = _fragment_start(tuple(context.items())) + fragment + b"</xcap-fragment>"
    try:
        wrapper = etree.fromstring(wrapped, xmlsafe.parser())
    except etree.XMLSyntaxError as exc:
        raise NotXMLFrag(f"the body is not a well-formed XML element: {exc.msg}") from None
    children = list(wrapper)
    if len(children) != 1 or not isinstance(children[0].tag, str) or wrapper.text or children[0].tail:
        raise NotXMLFrag("the body must be exactly one XML element, with nothing around it")
    return children[0]


@lru_cache(maxsize=256)
def _fragment_start(bindings: tuple[tuple[str | None, str], ...]) -> bytes:
    """The wrapper's start tag declaring ``bindings`` (prefix, URI): the same few on every PUT."""
    declarations = "".join(
        f' xmlns="{_escape_attr(uri)}"' if prefix is None else f' xmlns:{prefix}="{_escape_attr(uri)}"'
        for prefix, uri in bindings
        if prefix is not None or uri
    )
    return b"<xcap-fragment" + declarations.encode("utf-8") + b">"


def _no_parent(doc, selector: NodeSelector, parent_steps, document_url: str, count: int) -> NoParent:
    """409 no-parent naming the closest existing ancestor as an HTTP URI (§8.2.1, §11)."""
    ancestor = document_url
    for length in range(len(parent_steps) - 1, 0, -1):
        if len(select(doc.root, parent_steps[:length])) == 1:
            ancestor = document_url + selector.uri_suffix(parent_steps[:length])
            break
    what = "does not exist" if count == 0 else "is not unique"
    return NoParent(f"the parent element {'/'.join(s.text for s in parent_steps)!r} {what}", ancestor=ancestor)


# -- attribute PUT --------------------------------------------------------------------------------


def _put_attribute(doc: _Document, selector: NodeSelector, body: bytes, document_url: str):
    steps, data = selector.steps, doc.data
    elements = select(doc.root, steps)
    if len(elements) != 1:
        raise _no_parent(doc, selector, steps, document_url, len(elements))
    element = elements[0]
    if selector.attribute == "xmlns":
        raise CannotInsert("namespace declarations are not attributes and cannot be written")
    raw = xmlsafe.check_utf8(body)
    value = decode_att_value(raw, NotXMLAttValue)  # §8.2.2: a valid AttValue, or 409

    existing = doc.attribute(element, selector.attribute_name)
    quote = chr(data[existing.value_start - 1]) if existing else '"'
    if quote in raw:
        other = "'" if quote == '"' else '"'
        if other not in raw:
            quote = other
        else:
            raw = raw.replace(quote, "&quot;" if quote == '"' else "&apos;")
    quoted = (quote + raw + quote).encode("utf-8")

    if existing:  # §8.2.4: only the value changes (and its quotes, if they had to)
        new = data[: existing.value_start - 1] + quoted + data[existing.value_end + 1 :]
    else:
        prefix_declaration, qname = _attribute_qname(element, selector)
        offset = doc.attributes_end(element)
        new = data[:offset] + prefix_declaration + b" " + qname + b"=" + quoted + data[offset:]

    # Idempotency: the URI must still select this element, and the attribute must read back.
    after = document_of(new, NotXMLAttValue)
    selected = select(after.root, steps)
    if (
        len(selected) != 1
        or after.start_tag(selected[0]).start != doc.start_tag(element).start
        or selected[0].get(selector.attribute_name) != value
    ):
        raise CannotInsert("after the PUT the request URI would not select this attribute "
                           "(did it change a value the selector tests?)")
    return new, existing is None


def _attribute_qname(element, selector: NodeSelector) -> tuple[bytes, bytes]:
    """The QName to write for a new attribute, plus a namespace declaration if one is needed."""
    name = selector.attribute_name
    namespace, _, local = name[1:].partition("}") if name.startswith("{") else ("", "", name)
    if not namespace:
        return b"", local.encode("utf-8")
    if namespace == "http://www.w3.org/XML/1998/namespace":
        return b"", f"xml:{local}".encode()
    in_scope = element.nsmap
    for prefix, uri in in_scope.items():
        if prefix is not None and uri == namespace:
            return b"", f"{prefix}:{local}".encode()
    wanted = selector.attribute_prefixes[0] if selector.attribute_prefixes else "ns"
    prefix, counter = wanted, 0
    while prefix in in_scope:
        counter += 1
        prefix = f"{wanted}{counter}"
    declaration = f' xmlns:{prefix}="{_escape_attr(namespace)}"'.encode()
    return declaration, f"{prefix}:{local}".encode()


# -- namespace bindings ---------------------------------------------------------------------------


def _namespace_bindings(element: etree._Element) -> bytes:
    """RFC 4825 §10: an empty element with the selected element's prefix and local name,
    declaring the default namespace and every prefix in scope there."""
    local = etree.QName(element).localname
    name = f"{element.prefix}:{local}" if element.prefix else local
    in_scope = element.nsmap
    declarations = []
    if in_scope.get(None):
        declarations.append(f' xmlns="{_escape_attr(in_scope[None])}"')
    for prefix in sorted(p for p in in_scope if p is not None):
        declarations.append(f' xmlns:{prefix}="{_escape_attr(in_scope[prefix])}"')
    return f"<{name}{''.join(declarations)}/>".encode()


def _escape_attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))


def _single(doc: _Document, selector: NodeSelector) -> etree._Element:
    elements = select(doc.root, selector.steps)
    if not elements:
        raise NodeNotFound("the node selector selects no element")
    if len(elements) > 1:
        raise NodeNotFound(f"the node selector selects {len(elements)} elements, not one")
    return elements[0]


# -- byte spans -----------------------------------------------------------------------------------
#
# The document is well-formed (it was parsed first), so it is a sequence of text runs (no '<')
# and markup tokens: comments, CDATA sections, PIs, end tags and start tags. Start tags occur in
# document order, so the k-th start tag belongs to the k-th element of lxml's document order;
# lxml counts the elements before an element in C (XPath), and the regexes below skip whole
# runs of tokens inside the regex engine, so finding a span costs no Python loop per token.

_TEXT = rb"[^<]*+"
_OTHER = rb"(?:<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>)"
_END = rb"</[^>]*+>"
_START = rb"<[^!?/][^>\"']*+(?:(?:\"[^\"]*+\"|'[^']*+')[^>\"']*+)*+>"  # '>' may occur in quotes
_TO_NEXT_START = re.compile(rb"(?:" + _TEXT + rb"(?:" + _END + rb"|" + _OTHER + rb"))*+" + _TEXT, re.S)
_START_TAG = re.compile(_START)
_TAG_NAME = re.compile(rb"[^\s/>]+")
_ATTRIBUTE = re.compile(rb"""([ \t\r\n]+)([^\s=/>]+)[ \t\r\n]*=[ \t\r\n]*("[^"]*"|'[^']*')""")
_CHUNKS = (4096, 256, 16, 1)

# (The casts state what the expressions return: lxml's stubs type every XPath result as a union.)
_ELEMENTS_BEFORE = cast(Callable[[etree._Element], float], etree.XPath("count(preceding::*) + count(ancestor::*)"))
_DESCENDANTS = cast(Callable[[etree._Element], float], etree.XPath("count(descendant::*)"))


@cache
def _skip_pattern(what: str, count: int) -> re.Pattern:
    """A regex that skips ``count`` start tags (or end tags) and everything before them."""
    if what == "start":
        token = rb"(?:" + _TEXT + rb"(?:" + _END + rb"|" + _OTHER + rb"))*+" + _TEXT + _START
    else:
        token = rb"(?:" + _TEXT + _OTHER + rb")*+" + _TEXT + _END
    return re.compile(rb"(?>" + token + rb"){" + str(count).encode() + rb"}", re.S)


def _skip(data: bytes, position: int, count: int, what: str) -> int:
    """Skip ``count`` tags: one match per digit of ``count`` in base 16 (``repeat`` x ``chunk``
    tags at once: at most 3 x 15 patterns per kind, compiled on first use), except for the
    multiples of 4096, matched 4096 tags at a time."""
    for chunk in _CHUNKS:
        repeat, count = divmod(count, chunk)
        if not repeat:
            continue
        if chunk == _CHUNKS[0]:
            pattern, times = _skip_pattern(what, chunk), repeat
        else:
            pattern, times = _skip_pattern(what, repeat * chunk), 1
        for _ in range(times):
            match = pattern.match(data, position)
            if match is None:
                raise NotWellFormed("the stored document could not be scanned")  # pragma: no cover
            position = match.end()
    return position


class _Tag(NamedTuple):  # a tuple: made twice per element span, cheaper than a frozen dataclass
    start: int  #: offset of '<'
    end: int  #: offset just after '>'
    empty: bool  #: an empty-element tag '<x/>'


@dataclass(frozen=True)
class _Attribute:
    space_start: int  #: white space before the name
    value_start: int  #: just after the opening quote
    value_end: int  #: the closing quote
    end: int  #: just after the closing quote


#: The last parsed document of each thread: an edit parses the stored document and its result,
#: then validation needs the result's tree again; a client working on a big list sends GET and
#: PUT after GET on the same document (parsing 1 MiB costs ~6 ms). The hit test is a length check
#: and a memcmp, cheaper than any parse, so documents of every size go through it.
_cache = threading.local()


def document_of(data: bytes, error=NotWellFormed) -> _Document:
    """The parsed document for ``data``: this thread's last parse when the bytes are equal
    (a length check and a memcmp), else a fresh parse. Parsed trees are never modified, and each
    thread keeps its own, so no tree is shared between threads."""
    cached = getattr(_cache, "document", None)
    if cached is not None and cached.data == data:
        return cached
    document = _Document(data, error)
    _cache.document = document
    return document


def parsed_tree(data: bytes) -> etree._ElementTree:
    """The lxml tree of a document the editor just produced or read (cached like ``document_of``)."""
    return document_of(data).root.getroottree()


class _Document:
    """A stored document: its bytes, its lxml tree, and element byte spans on demand."""

    def __init__(self, data: bytes, error=NotWellFormed):
        self.data = data
        self.root = _parse(data, error)

    def start_tag(self, element, before: int | None = None) -> _Tag:
        """The element's start tag; ``before``: its ``_ELEMENTS_BEFORE``, when the caller has it."""
        return self._start_tag_from(0, int(_ELEMENTS_BEFORE(element)) if before is None else before)

    def _start_tag_from(self, position: int, skip: int) -> _Tag:
        data = self.data
        position = _scan(_TO_NEXT_START, data, _skip(data, position, skip, "start")).end()
        match = _START_TAG.match(data, position)
        if match is None:
            raise NotWellFormed("the stored document could not be scanned")  # pragma: no cover
        return _Tag(position, match.end(), data[match.end() - 2 : match.end()] == b"/>")

    def span(self, element, before: int | None = None) -> tuple[int, int]:
        """(start, end) byte offsets of the element, from '<' of its start tag to after '>'
        of its end tag (``before``: as for ``start_tag``)."""
        tag = self.start_tag(element, before)
        if tag.empty:
            return tag.start, tag.end
        return tag.start, self._after_end_tags(element, tag)

    def end_tag_start(self, element) -> int:
        """Offset of '<' of the end tag of a non-empty element."""
        end = self._after_end_tags(element, self.start_tag(element))
        return self.data.rindex(b"</", 0, end)

    def _after_end_tags(self, element, tag: _Tag) -> int:
        descendants = int(_DESCENDANTS(element))
        if descendants == 0:
            position, end_tags = tag.end, 1
        else:
            # Skip to the start tag of the last descendant in document order: after it come
            # no more start tags inside the element, only end tags (its own unless it is
            # empty, one per element between it and ``element``, and the element's own).
            last_tag = self._start_tag_from(tag.end, descendants - 1)
            last, between = element, 0
            while True:
                child = next(last.iterchildren(reversed=True, tag=etree.Element), None)
                if child is None:
                    break
                last, between = child, between + 1
            position = last_tag.end
            end_tags = (0 if last_tag.empty else 1) + (between - 1) + 1
        return _skip(self.data, position, end_tags, "end")

    def attributes(self, element):
        """Yield (Clark name, _Attribute) for each attribute written in the start tag."""
        data, tag = self.data, self.start_tag(element)
        position = _scan(_TAG_NAME, data, tag.start + 1).end()
        in_scope = element.nsmap
        while True:
            match = _ATTRIBUTE.match(data, position, tag.end)
            if match is None:
                return
            position = match.end()
            qname = match.group(2).decode("utf-8")
            prefix, colon, local = qname.partition(":")
            if qname == "xmlns" or prefix == "xmlns" and colon:
                continue  # namespace declarations are not attributes
            if not colon:
                name = qname
            elif prefix == "xml":
                name = "{http://www.w3.org/XML/1998/namespace}" + local
            else:
                name = "{" + in_scope.get(prefix, "") + "}" + local
            yield name, _Attribute(match.start(1), match.start(3) + 1, match.end(3) - 1, match.end(3))

    def attribute(self, element, name: str) -> _Attribute | None:
        if element.get(name) is None:
            return None
        for found, attribute in self.attributes(element):
            if found == name:
                return attribute
        return None  # pragma: no cover - lxml and the scanner disagree

    def attributes_end(self, element) -> int:
        """Where a new attribute goes: after the last attribute, or after the element name."""
        tag = self.start_tag(element)
        position = _scan(_TAG_NAME, self.data, tag.start + 1).end()
        while True:
            match = _ATTRIBUTE.match(self.data, position, tag.end)
            if match is None:
                return position
            position = match.end()


def _scan(pattern: re.Pattern[bytes], data: bytes, position: int) -> re.Match[bytes]:
    """``pattern`` matched at ``position`` of a parsed document, where it always matches."""
    match = pattern.match(data, position)
    if match is None:
        raise NotWellFormed("the stored document could not be scanned")  # pragma: no cover
    return match


def _parse(data: bytes, error) -> etree._Element:
    """Parse a stored document with the hardened parser (no DTD, no entities, no network).

    Unlike ``xmlsafe.parse_document`` it applies no size limits: those are for what clients
    send; a stored document (perhaps written by Kamailio) is read whatever its size.
    """
    if not isinstance(data, bytes):
        raise error("the document must be bytes")
    xmlsafe.check_utf8(data)
    if not data or data.isspace() or xmlsafe.has_doctype(data):  # isspace: no copy, unlike strip
        raise error("the document is empty or has a document type declaration")
    try:
        root = etree.fromstring(data, xmlsafe.parser())
    except etree.XMLSyntaxError as exc:
        raise error(f"not well-formed XML: {exc.msg}") from None
    # lxml-stubs' DocInfo lacks doctype (lxml has it)
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]
        raise error("document type declarations (DTDs) are not allowed")
    return root
