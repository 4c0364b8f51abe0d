"""resource-lists (RFC 4826 §3): buddy lists, and the data constraints beyond the schema.

Among the children of one parent, ``list/@name``, ``entry/@uri``, ``entry-ref/@ref`` and
``external/@anchor`` are unique (RFC 4826 §3.4.5); ``entry-ref/@ref`` is a relative path
reference (relative to the XCAP root); ``external/@anchor`` is an absolute HTTP(S) URI.
Uniqueness failures name each clash with a node selector relative to the document (``field``)
and, for list names, suggest names that no sibling uses (``<alt-value>``). References are
compared percent-decoded once (see ``xcap_wsgi.constraints``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

from lxml import etree

from ..constraints import RL, RLS, decoded, selector_of
from ..errors import ConstraintFailure, Exists, UniquenessFailure
from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once
from ..validation import schema_namespaces, schema_validator
from .registry import ApplicationUsage

#: (child element, attribute that must be unique among such siblings, suggest alternatives?)
UNIQUE_AMONG_SIBLINGS = (("list", "name", True), ("entry", "uri", False),
                         ("entry-ref", "ref", False), ("external", "anchor", False))
#: The attributes above that hold URIs, compared percent-decoded: ``entry uri="sip%3Abob%40x"``
#: and ``entry uri="sip:bob@x"`` in one list clash. Strictly (RFC 3986 §6.2.2.2) an encoded
#: reserved character is not equivalent to the character, but for these attributes the encoded
#: form only ever comes from a client that encodes everything (Blink), which means the same
#: contact; one list holding it twice is what RFC 4826 §3.4.5 forbids. ``list/@name`` is a name,
#: not a URI, and is compared as written.
DECODED_ATTRIBUTES = frozenset({"uri", "ref", "anchor"})

_CONTAINERS = {f"{{{RL}}}resource-lists", f"{{{RL}}}list", f"{{{RLS}}}service", f"{{{RLS}}}list"}


_ENTRY_REF, _EXTERNAL = f"{{{RL}}}entry-ref", f"{{{RL}}}external"


def resource_lists_constraints(tree: etree._ElementTree, context) -> None:
    """The RFC 4826 §3.4.5 rules for a resource-lists document (and lists in rls-services).

    One walk over the tree finds the containers and the references; a uniqueness failure is
    reported before a bad reference, and the first bad ``entry-ref`` before the first bad
    ``external``, as checking them in three walks in that order would."""
    default_namespace = context.usage.default_namespace
    clashes: list[Exists] = []
    bad_ref = bad_anchor = None
    for element in tree.getroot().iter(*_CONTAINERS, _ENTRY_REF, _EXTERNAL):
        tag = element.tag
        if tag in _CONTAINERS:
            clashes.extend(_sibling_clashes(element, default_namespace))
        elif tag == _ENTRY_REF:
            if bad_ref is None and not _relative_reference(element.get("ref", "")):
                bad_ref = element.get("ref", "")
        elif bad_anchor is None and not _http_anchor(element.get("anchor", "")):
            bad_anchor = element.get("anchor", "")
    if clashes:
        raise UniquenessFailure(clashes, phrase="duplicate values among sibling elements (RFC 4826 §3.4.5)")
    if bad_ref is not None:
        raise ConstraintFailure(f"entry-ref ref={bad_ref!r} must be a relative path reference "
                                "(relative to the XCAP root)")
    if bad_anchor is not None:
        raise ConstraintFailure(f"external anchor={bad_anchor!r} must be an absolute HTTP or HTTPS URI")


def _relative_reference(ref: str) -> bool:
    parts = urlsplit(decoded(ref))
    return not (parts.scheme or parts.netloc or decoded(ref).startswith("/") or not ref)


def _http_anchor(anchor: str) -> bool:
    parts = urlsplit(decoded(anchor))
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


#: Per unique kind, the values among one parent's children, gathered in C (plain strings; the cast
#: states it: lxml's stubs type every XPath result as a union).
_UNIQUE_VALUES = tuple(cast(Callable[[etree._Element], list[str]],
                            etree.XPath(f"rl:{local}/@{attribute}", namespaces={"rl": RL}, smart_strings=False))
                       for local, attribute, _ in UNIQUE_AMONG_SIBLINGS)
_DECODE = tuple(attribute in DECODED_ATTRIBUTES for _, attribute, _ in UNIQUE_AMONG_SIBLINGS)


#: The values of every unique kind among one parent's children, in one evaluation. A union sorts
#: and merges node sets (quadratic in libxml2), so it is asked only of parents with few children.
_ALL_UNIQUE_VALUES = cast(Callable[[etree._Element], list[str]], etree.XPath(
    " | ".join(f"rl:{local}/@{attribute}" for local, attribute, _ in UNIQUE_AMONG_SIBLINGS),
    namespaces={"rl": RL}, smart_strings=False))
_ALL_AT_ONCE_MAX_CHILDREN = 64


def _sibling_clashes(parent: etree._Element, default_namespace: str) -> list[Exists]:
    """The clashes among ``parent``'s children. Whether there are any (the usual answer is no,
    on every PUT) is decided on the values lxml collects in C; only then are they named.

    A parent with few children is first asked for all kinds' values at once (one XPath instead of
    one per kind): when no value occurs twice among them, percent-decoded, no kind has a clash
    (equal values, or equal decoded values, of one kind are equal decoded values of all kinds).
    Otherwise, or for a larger parent, each kind is looked at on its own, as it decides."""
    if len(parent) <= _ALL_AT_ONCE_MAX_CHILDREN:
        values = _ALL_UNIQUE_VALUES(parent)
        if len(values) < 2 or len(values) == len(set(map(decoded, values))):
            return []
    for values_of, decode in zip(_UNIQUE_VALUES, _DECODE, strict=True):
        values = values_of(parent)
        if len(values) < 2:
            continue
        if len(values) != len(set(map(decoded, values) if decode else values)):
            return _name_clashes(parent, default_namespace)
    return []


def _name_clashes(parent: etree._Element, default_namespace: str) -> list[Exists]:
    clashes = []
    for local, attribute, suggest in UNIQUE_AMONG_SIBLINGS:
        seen: dict[str, etree._Element] = {}
        siblings = list(parent.iterchildren(f"{{{RL}}}{local}"))
        for element in siblings:
            value = element.get(attribute)
            if value is None:
                continue
            if attribute in DECODED_ATTRIBUTES:
                value = decoded(value)
            if value in seen:
                taken = {s.get(attribute) for s in siblings}
                alternatives = _free_names(value, taken) if suggest else []
                clashes.append(Exists(field=f"{selector_of(element, default_namespace)}/@{attribute}",
                                      alt_values=alternatives))
            else:
                seen[value] = element
    return clashes


def _free_names(value: str, taken: set, count: int = 3) -> list[str]:
    """``count`` names derived from ``value`` that no sibling uses."""
    suggestions: list[str] = []
    n = 2
    while len(suggestions) < count:
        candidate = f"{value}-{n}"
        if candidate not in taken:
            suggestions.append(candidate)
        n += 1
    return suggestions



RESOURCE_LISTS = ApplicationUsage(
    auid="resource-lists",
    mime_type="application/resource-lists+xml",
    default_namespace="urn:ietf:params:xml:ns:resource-lists",
    doc_type=doc_types.RESOURCE_LISTS,
    namespaces=schema_namespaces("resource-lists"),
    validators=(schema_validator("resource-lists"), resource_lists_constraints),
)
