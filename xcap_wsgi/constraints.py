"""Reference checks shared by several application usages; nothing per-AUID lives here.

Each usage's own rules (RFC 4826 data constraints, OMA rules) are in its module under
``xcap_wsgi.usages``. Kept here: percent-decoding of references (``decoded``), the node selector
naming an element in a conflict report (``selector_of``), and the anti-abuse switch that keeps
every reference inside the owner's own lists (``external_references = false``). This module
imports nothing from ``xcap_wsgi.usages``, so every usage module may import it.

Percent-encoded references are decoded (once) before the checks, and the stored bytes are
left as the client wrote them. python3-sipsimple (Blink) percent-encodes every URI it writes
(``anchor="http%3A//xcap.example.com/..."``, ``uri="sip%3Abob%40example.com"``), which is a
harmless deviation (it decodes them again on reading); OpenXCAP decodes before checking too,
and so does Kamailio's rls for ``<resource-list>`` (contract §7). Decoding once means a literal
``%25`` is compared as ``%``.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import unquote

from lxml import etree

from .errors import ConstraintFailure
from .uri import canonical_xui

RL = "urn:ietf:params:xml:ns:resource-lists"
RLS = "urn:ietf:params:xml:ns:rls-services"


def decoded(reference: str) -> str:
    """``reference`` percent-decoded once (what the checks compare; the document keeps the bytes)."""
    return unquote(reference) if "%" in reference else reference


def selector_of(element: etree._Element, default_namespace: str) -> str:
    """An XCAP node selector (relative to the document) that selects exactly ``element``.

    Elements in the usage's default namespace are named (``list[2]``: the second ``list``);
    others, whose prefix a client would have to bind, are addressed as ``*[n]``.
    """
    steps = []
    node = element
    while node is not None:
        qname = etree.QName(node)
        parent = node.getparent()
        if qname.namespace == default_namespace:
            if parent is None:
                steps.append(qname.localname)
            else:
                index = 1 + sum(1 for _ in node.itersiblings(node.tag, preceding=True))
                steps.append(f"{qname.localname}[{index}]")
        else:
            index = 1 + sum(1 for _ in node.itersiblings(etree.Element, preceding=True))
            steps.append("*" if parent is None else f"*[{index}]")
        node = parent
    return "/".join(reversed(steps))


# -- policy switch: no cross-user or foreign references ----------------------------------------

OMA_COMMON_POLICY = "urn:oma:xml:xdm:common-policy"
#: AUIDs whose documents hold references to resource-lists documents.
REFERENCING_AUIDS = ("resource-lists", "rls-services", "pres-rules", "org.openmobilealliance.pres-rules")


def local_references_only(tree: etree._ElementTree, context) -> None:
    """Refuse references to other users' lists or to other servers (anti-abuse option; the RFCs
    allow both): ``entry-ref``, ``external``, rls-services ``<resource-list>`` and OMA
    ``external-list`` entries must point into the owner's own resource-lists on this server."""
    uri = context.uri
    if uri.tree != "users":
        return
    root = tree.getroot()
    for element in root.iter(f"{{{RL}}}entry-ref"):
        _require_own(element.get("ref", ""), context, relative=True)
    for element in root.iter(f"{{{RL}}}external"):
        _require_own(element.get("anchor", ""), context)
    for element in root.iter(f"{{{RLS}}}resource-list"):
        _require_own((element.text or "").strip(), context)
    for element in root.iter(f"{{{OMA_COMMON_POLICY}}}entry"):
        if element.get("anc") is not None:
            _require_own(element.get("anc"), context)


def _require_own(reference: str, context, relative: bool = False) -> None:
    root_url = unquote((getattr(context, "root_url", "") or "").rstrip("/"))
    target = decoded(reference)  # compared decoded once, like the other reference checks
    if relative:
        path = target
    elif root_url and target.startswith(root_url + "/"):
        path = target[len(root_url) + 1 :]
    else:
        raise ConstraintFailure(f"reference {reference!r} points outside this XCAP server ({root_url or 'unknown'}); "
                                "external references are switched off")
    segments = path.split("/")
    if (len(segments) < 4 or segments[:2] != ["resource-lists", "users"]
            or canonical_xui(segments[2]) != canonical_xui(context.uri.xui)):
        raise ConstraintFailure(f"reference {reference!r} does not point to {context.uri.xui}'s own resource lists; "
                                "cross-user references are switched off")


def with_local_references_only(registry):
    """A copy of ``registry`` (of the same class) whose referencing usages refuse cross-user and
    foreign references."""
    return type(registry)([
        replace(usage, validators=usage.validators + (local_references_only,))
        if usage.auid in REFERENCING_AUIDS and local_references_only not in usage.validators else usage
        for usage in registry
    ])
