"""Change events: what a committed write changed, as data and as an RFC 5874 xcap-diff document.

The middleware emits one ``ChangeEvent`` after every committed write (never for a failed one)
to the sinks it was given: plain callables ``on_change(event)``, or a ``KamailioNotifier``
(``xcap_wsgi.notify``). Node-level writes carry RFC 5261 patch operations (add, replace,
remove) in the xcap-diff document, built from what the server knows it did rather than by
diffing documents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field

from lxml import etree

log = logging.getLogger("xcap_wsgi.events")

XCAP_DIFF_NS = "urn:ietf:params:xml:ns:xcap-diff"
XCAP_DIFF_MIME = "application/xcap-diff+xml"


@dataclass(frozen=True)
class PatchOperation:
    """One RFC 5261 operation on the document: ``add``, ``replace`` or ``remove``."""

    op: str
    sel: str  #: XPath selector of the target (add: the parent or a sibling, see ``pos``)
    element: etree._Element | None = None  #: the added/replacing element (copied from the new document)
    value: str | None = None  #: the added/replacing attribute value
    pos: str | None = None  #: add only: "before", "after" or "prepend"; None appends as last child
    type: str | None = None  #: add only: "@name" when an attribute is added


@dataclass(frozen=True)
class ChangeEvent:
    """A committed change to one document."""

    auid: str
    xui: str | None
    username: str
    domain: str
    document_selector: str  #: "auid/users/xui/name", decoded
    doc_uri: str  #: Kamailio's doc_uri of the document
    node_selector: str | None
    operation: str  #: "put" or "delete"
    previous_etag: str | None  #: None when the document was created
    new_etag: str | None  #: None when the document was deleted
    xcap_root: str  #: absolute URI of the XCAP root, e.g. "http://xcap.example.com/xcap-root/"
    namespaces: dict[str, str] = field(default_factory=dict)  #: prefixes the patch selectors use
    patch: tuple[PatchOperation, ...] = ()

    @property
    def pres_uri(self) -> str:
        """The presentity/watcher SIP URI of the document's owner, as Kamailio's RPCs want it."""
        return f"sip:{self.username}@{self.domain}"

    @property
    def document_name(self) -> str:
        return self.document_selector.rsplit("/", 1)[-1]

    def xcap_diff(self) -> bytes:
        """The RFC 5874 xcap-diff document for this change."""
        nsmap: dict[str | None, str] = {"d": XCAP_DIFF_NS}
        for prefix, uri in self.namespaces.items():
            nsmap[prefix or None] = uri
        # lxml-stubs types nsmap keys as str; None (the default namespace) is what lxml documents
        root = etree.Element(f"{{{XCAP_DIFF_NS}}}xcap-diff", nsmap=nsmap)  # type: ignore[arg-type]
        root.set("xcap-root", self.xcap_root)
        document = etree.SubElement(root, f"{{{XCAP_DIFF_NS}}}document")
        document.set("sel", self.document_selector)
        if self.previous_etag:
            document.set("previous-etag", self.previous_etag)
        if self.new_etag:
            document.set("new-etag", self.new_etag)
        for operation in self.patch:
            element = etree.SubElement(document, f"{{{XCAP_DIFF_NS}}}{operation.op}", sel=operation.sel)
            if operation.pos:
                element.set("pos", operation.pos)
            if operation.type:
                element.set("type", operation.type)
            if operation.element is not None:
                copy = deepcopy(operation.element)  # lxml carries the namespaces it needs
                copy.tail = None
                element.append(copy)
            elif operation.value is not None:
                element.text = operation.value
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class EventDispatcher:
    """Calls every sink for an event; a failing sink is logged and never fails the request."""

    def __init__(self, sinks: list[Callable[[ChangeEvent], None]] | tuple = ()):
        self.sinks = list(sinks)

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def emit(self, event: ChangeEvent) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:
                log.exception("change sink %r failed for %s", sink, event.doc_uri)


# -- patch operations for node-level writes ---------------------------------------------------


def positional_path(element: etree._Element) -> str:
    """An XPath that selects exactly ``element`` by position: ``*/*[2]/*[5]``.

    Positional steps need no namespace bindings and cannot be ambiguous, whatever the names.
    """
    steps = []
    node, parent = element, element.getparent()
    while parent is not None:
        index = 1 + sum(1 for _ in node.itersiblings(etree.Element, preceding=True))
        steps.append(f"*[{index}]")
        node, parent = parent, parent.getparent()
    steps.append("*")
    return "/".join(reversed(steps))


def node_patch(selector, operation: str, old_root: etree._Element | None,
               new_root: etree._Element | None, created: bool) -> tuple[PatchOperation, ...]:
    """The RFC 5261 operation a node PUT/DELETE performed (``selector``: a NodeSelector)."""
    from .selector import select

    if operation == "delete":
        assert old_root is not None  # a DELETE removed a node from an existing document
        (old,) = select(old_root, selector.steps)
        path = positional_path(old)
        if selector.kind == "attribute":
            return (PatchOperation("remove", f"{path}/{selector.attribute_text}"),)
        return (PatchOperation("remove", path),)
    assert new_root is not None  # a PUT left a document holding the node
    (new,) = select(new_root, selector.steps)
    path = positional_path(new)
    if selector.kind == "attribute":
        value = new.get(selector.attribute)
        if created:
            return (PatchOperation("add", path, value=value, type=selector.attribute_text),)
        return (PatchOperation("replace", f"{path}/{selector.attribute_text}", value=value),)
    if not created:
        return (PatchOperation("replace", path, element=new),)
    previous = next(new.itersiblings(etree.Element, preceding=True), None)
    if previous is not None:
        return (PatchOperation("add", positional_path(previous), element=new, pos="after"),)
    following = next(new.itersiblings(etree.Element), None)
    if following is not None:
        return (PatchOperation("add", positional_path(following), element=new, pos="before"),)
    parent = new.getparent()
    assert parent is not None  # a created element is never the root (the root can only be replaced)
    return (PatchOperation("add", positional_path(parent), element=new),)
