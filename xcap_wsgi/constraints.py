"""RFC 4826 data constraints beyond the schema, with ``<alt-value>`` suggestions that are free.

resource-lists (RFC 4826 §3.4.5): among the children of one parent, ``list/@name``,
``entry/@uri``, ``entry-ref/@ref`` and ``external/@anchor`` are unique; ``entry-ref/@ref`` is a
relative path reference (relative to the XCAP root); ``external/@anchor`` is an absolute HTTP(S)
URI. rls-services (RFC 4826 §4.4.3) adds: every ``<list>`` inside a service obeys the same rules,
and a ``<resource-list>`` holds an absolute HTTP(S) URI whose AUID segment is ``resource-lists``
and, in the users tree, whose XUI is the document's own. Uniqueness failures name each clash
with a node selector relative to the document (``field``) and, for list names, suggest names
that no sibling uses.

Percent-encoded references are decoded (once) before these checks, and the stored bytes are
left as the client wrote them. python3-sipsimple (Blink) percent-encodes every URI it writes
(``anchor="http%3A//xcap.example.com/..."``, ``uri="sip%3Abob%40example.com"``), which is a
harmless deviation (it decodes them again on reading); OpenXCAP decodes before checking too,
and so does Kamailio's rls for ``<resource-list>`` (contract §7). Decoding once means a literal
``%25`` is compared as ``%``.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from lxml import etree

from .errors import ConstraintFailure, Exists, UniquenessFailure

RL = "urn:ietf:params:xml:ns:resource-lists"
RLS = "urn:ietf:params:xml:ns:rls-services"

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


def decoded(reference: str) -> str:
    """``reference`` percent-decoded once (what the checks compare; the document keeps the bytes)."""
    return unquote(reference) if "%" in reference else reference


_CONTAINERS = {f"{{{RL}}}resource-lists", f"{{{RL}}}list", f"{{{RLS}}}service", f"{{{RLS}}}list"}


def resource_lists_constraints(tree: etree._ElementTree, context) -> None:
    """The RFC 4826 §3.4.5 rules for a resource-lists document (and lists in rls-services)."""
    default_namespace = context.usage.default_namespace
    clashes: list[Exists] = []
    for parent in tree.getroot().iter(*_CONTAINERS):
        clashes.extend(_sibling_clashes(parent, default_namespace))
    if clashes:
        raise UniquenessFailure(clashes, phrase="duplicate values among sibling elements (RFC 4826 §3.4.5)")
    for element in tree.getroot().iter(f"{{{RL}}}entry-ref"):
        ref = element.get("ref", "")
        parts = urlsplit(decoded(ref))
        if parts.scheme or parts.netloc or decoded(ref).startswith("/") or not ref:
            raise ConstraintFailure(f"entry-ref ref={ref!r} must be a relative path reference "
                                    "(relative to the XCAP root)")
    for element in tree.getroot().iter(f"{{{RL}}}external"):
        anchor = element.get("anchor", "")
        parts = urlsplit(decoded(anchor))
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ConstraintFailure(f"external anchor={anchor!r} must be an absolute HTTP or HTTPS URI")


def rls_services_constraints(tree: etree._ElementTree, context) -> None:
    """RFC 4826 §4.4.3: lists inside services as resource-lists; <resource-list> URIs point at
    the document owner's resource-lists documents."""
    resource_lists_constraints(tree, context)
    uri = context.uri
    for element in tree.getroot().iter(f"{{{RLS}}}resource-list"):
        value = (element.text or "").strip()
        # Decoded once, then split (as Kamailio's rls does): sipsimple writes "http%3A//host/...".
        parts = urlsplit(decoded(value))
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ConstraintFailure(f"resource-list {value!r} must be an absolute HTTP or HTTPS URI")
        segments = parts.path.split("/")
        if "resource-lists" not in segments:
            raise ConstraintFailure(f"resource-list {value!r} must point into the resource-lists application usage")
        at = segments.index("resource-lists")
        tail = segments[at + 1 : at + 3]
        if uri.tree == "users" and (len(tail) < 2 or tail[0] != "users" or not _same_xui(tail[1], uri.xui)):
            raise ConstraintFailure(f"resource-list {value!r} must point to a resource-lists document of {uri.xui}")


def _same_xui(candidate: str, xui: str) -> bool:
    from .uri import canonical_xui

    return canonical_xui(candidate) == canonical_xui(xui)


#: Per unique kind, the values among one parent's children, gathered in C (plain strings).
_UNIQUE_VALUES = tuple(etree.XPath(f"rl:{local}/@{attribute}", namespaces={"rl": RL}, smart_strings=False)
                       for local, attribute, _ in UNIQUE_AMONG_SIBLINGS)
_DECODE = tuple(attribute in DECODED_ATTRIBUTES for _, attribute, _ in UNIQUE_AMONG_SIBLINGS)


def _sibling_clashes(parent: etree._Element, default_namespace: str) -> list[Exists]:
    """The clashes among ``parent``'s children. Whether there are any (the usual answer is no,
    on every PUT) is decided on the values lxml collects in C; only then are they named."""
    for values_of, decode in zip(_UNIQUE_VALUES, _DECODE):
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
    suggestions, n = [], 2
    while len(suggestions) < count:
        candidate = f"{value}-{n}"
        if candidate not in taken:
            suggestions.append(candidate)
        n += 1
    return suggestions


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


# -- OMA rules --------------------------------------------------------------------------------

PIDF = "urn:ietf:params:xml:ns:pidf"
PRES_CONTENT = "urn:oma:xml:prs:pres-content"
#: OMA Presence Content XDM: the image types a status icon may have, and its largest decoded size.
PRES_CONTENT_MIME_TYPES = ("image/jpeg", "image/gif", "image/png")
PRES_CONTENT_MAX_BYTES = 256 * 1024


def perm_presence_entity(tree: etree._ElementTree, context) -> None:
    """OMA permanent presence (pidf-manipulation ``perm-presence``): ``presence/@entity`` must be
    the document owner's XUI, else 403 (OMA Presence SIMPLE XDM)."""
    uri = context.uri
    if uri.tree != "users" or uri.document_name != "perm-presence":
        return
    entity = tree.getroot().get("entity", "")
    if _presentity(decoded(entity)) != _presentity(uri.xui):
        from webob.exc import HTTPForbidden

        raise HTTPForbidden(detail=f"presence entity {entity!r} is not the document owner {uri.xui!r}")


def _presentity(uri: str) -> str:
    """``pres:``, ``sip:`` and ``sips:`` forms of one AOR compare equal; the host case-insensitively."""
    from .uri import canonical_xui

    lowered = uri.strip().lower()
    for scheme in ("pres:", "sips:", "sip:"):
        if lowered.startswith(scheme):
            return canonical_xui("sip:" + uri.strip()[len(scheme):])
    return canonical_xui(uri.strip())


def pres_content_rules(tree: etree._ElementTree, context) -> None:
    """OMA pres-content: an image of an allowed MIME type, base64-encoded, within the size limit."""
    import base64
    import binascii

    root = tree.getroot()
    mime_type = (root.findtext(f"{{{PRES_CONTENT}}}mime-type") or "").strip().lower()
    encoding = (root.findtext(f"{{{PRES_CONTENT}}}encoding") or "").strip().lower()
    data = root.findtext(f"{{{PRES_CONTENT}}}data") or ""
    if mime_type not in PRES_CONTENT_MIME_TYPES:
        raise ConstraintFailure(f"pres-content mime-type must be one of {', '.join(PRES_CONTENT_MIME_TYPES)}")
    if encoding != "base64":
        raise ConstraintFailure("pres-content encoding must be base64")
    try:
        decoded = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConstraintFailure("pres-content data is not valid base64") from None
    if len(decoded) > PRES_CONTENT_MAX_BYTES:
        raise ConstraintFailure(f"pres-content data is larger than {PRES_CONTENT_MAX_BYTES} bytes")


# -- rls-services: service URIs unique across every user's documents ---------------------------

#: The lock name under which an rls-services write checks and commits its service URIs.
RLS_SERVICE_LOCK = "rls-service-uri"


def rls_service_uris_unique(tree: etree._ElementTree, context) -> None:
    """RFC 4826 §4.4.3: ``service/@uri`` is unique among all services of all users.

    Runs under the store's ``rls-service-uri`` lock together with the write (see
    ``ApplicationUsage.write_lock``), so two concurrent PUTs can never both claim one URI.
    Suggestions (``<alt-value>``) are URIs no service anywhere uses. With the store's side table
    (``rls_index``) each URI is a primary-key lookup; without it, every rls-services row is read.
    """
    from .rls_index import claimed, service_key

    services = list(tree.getroot().iterchildren(f"{{{RLS}}}service"))
    if not services or context.store is None:
        return
    own_doc_uri = context.key.doc_uri if context.key else None
    own = [service_key(s.get("uri", "")) for s in services]
    taken = claimed(context.store, own, own_doc_uri)
    if taken is None:
        taken = _scanned_service_uris(context.store, own_doc_uri)
        is_taken = taken.__contains__
    else:
        def is_taken(name: str) -> bool:
            return name in taken or bool(claimed(context.store, [name], own_doc_uri))
    clashes, seen = [], set()
    # Compared decoded (sipsimple writes uri="sip%3Abuddies%40example.com"), like Kamailio's rls
    # normalises them to sip:user@host.
    for position, (service, normal) in enumerate(zip(services, own), start=1):
        if normal in taken or normal in seen:
            clashes.append(Exists(field=f"rls-services/service[{position}]/@uri",
                                  alt_values=_free_service_uris(decoded(service.get("uri", "")),
                                                                lambda n: n in own or is_taken(n))))
        seen.add(normal)
    if clashes:
        raise UniquenessFailure(clashes, phrase="service URI already in use (unique across all users, RFC 4826 §4.4.3)")


def _scanned_service_uris(store, own_doc_uri: str | None) -> set[str]:
    """Every service URI of the other rls-services documents, by reading them all (no side table)."""
    from .rls_index import service_keys

    taken: set[str] = set()
    for key, content in store.documents_of_type(8):
        if key.doc_uri != own_doc_uri and "/global/" not in key.doc_uri:
            taken.update(service_keys(content))
    return taken


def _service_uris(content: bytes) -> list[str]:
    from .errors import XCAPError
    from .xmlsafe import parse_document

    try:
        root = parse_document(content).getroot()
    except XCAPError:
        return []
    return [s.get("uri", "") for s in root.iterchildren(f"{{{RLS}}}service")]


def _normal(uri: str) -> str:
    """How Kamailio's rls matches service URIs: ``sip:user@host``, host case-insensitive, no params."""
    from .uri import xui_account

    if "@" not in uri:
        return uri.strip()
    user, host = xui_account(uri.strip(), "")
    return f"sip:{user}@{host}"


def _free_service_uris(uri: str, is_taken, count: int = 3) -> list[str]:
    from .rls_index import service_key

    scheme, _, rest = uri.partition(":")
    user, at, host = rest.rpartition("@")
    if not (at and user and host):
        return []
    suggestions, n = [], 2
    while len(suggestions) < count:
        candidate = f"{scheme}:{user}-{n}@{host}"
        if not is_taken(service_key(candidate)):
            suggestions.append(candidate)
        n += 1
    return suggestions


# -- pres-rules: one document per user ---------------------------------------------------------

#: The lock name under which a pres-rules write checks for and commits its document.
PRES_RULES_LOCK = "pres-rules-document"


def one_pres_rules_document(tree: etree._ElementTree, context) -> None:
    """Refuse to create a second pres-rules document for a user (409 constraint-failure naming
    the one that exists); writes to an existing document always pass.

    Kamailio's presence_xml reads ``select doc from xcap where doc_type=2 AND username=? AND
    domain=?`` and applies the first row, whatever its AUID (IETF ``pres-rules`` and OMA
    ``org.openmobilealliance.pres-rules`` share doc_type 2) or document name: on a real Kamailio
    the row with the lowest id wins and a second document is silently ignored
    (tests/test_kamailio_pres_rules.py). One document per user keeps what the user edits and
    what presence applies the same. Runs under ``PRES_RULES_LOCK`` with the write.
    """
    store, key = context.store, context.key
    if store is None or key is None or context.uri.tree != "users":
        return
    own = key.doc_uri.lower()  # Kamailio's latin1 collation: case-insensitive doc_uri
    others = []
    for info in store.list_documents(key.username, key.domain):
        if info.doc_type != key.doc_type:
            continue
        if info.doc_uri.lower() == own:
            return  # replacing or editing the user's document: always allowed
        others.append(info.doc_uri)
    if others:
        raise ConstraintFailure(f"{context.uri.xui} already has a presence rules document, {others[0]}; "
                                "presence applies only one per user: change that one, or delete it first")


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
    from .uri import canonical_xui

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
    """A copy of ``registry`` whose referencing usages refuse cross-user and foreign references."""
    from dataclasses import replace

    from .usages import UsageRegistry

    return UsageRegistry([
        replace(usage, validators=usage.validators + (local_references_only,))
        if usage.auid in REFERENCING_AUIDS and local_references_only not in usage.validators else usage
        for usage in registry
    ])
