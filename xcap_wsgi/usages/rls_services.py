"""rls-services (RFC 4826 §4): resource list server services, and their data constraints.

Every ``<list>`` inside a service obeys the resource-lists rules; a ``<resource-list>`` holds an
absolute HTTP(S) URI whose AUID segment is ``resource-lists`` and, in the users tree, whose XUI
is the document's own (RFC 4826 §4.4.3). ``service/@uri`` is unique across every user's
documents, checked under a store-wide lock with the write. The global ``index`` document is
computed: the union of every user's services (RFC 4826 §4.4.7).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from lxml import etree

from ..computed import rls_services_index
from ..constraints import RLS, decoded
from ..errors import ConstraintFailure, Exists, UniquenessFailure
from ..rls_index import claimed, record as rls_index_record, service_key, service_keys
from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once
from ..uri import canonical_xui
from ..validation import schema_namespaces, schema_validator
from .registry import ApplicationUsage
from .resource_lists import resource_lists_constraints


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
    return canonical_xui(candidate) == canonical_xui(xui)


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
    services = list(tree.getroot().iterchildren(f"{{{RLS}}}service"))
    if not services or context.store is None:
        return
    own_doc_uri = context.key.doc_uri if context.key else None
    own = [service_key(s.get("uri", "")) for s in services]
    taken = claimed(context.store, own, own_doc_uri)
    is_taken: Callable[[str], bool]
    if taken is None:
        taken = _scanned_service_uris(context.store, own_doc_uri)
        is_taken = taken.__contains__
    else:
        def is_taken(name: str) -> bool:
            return name in taken or bool(claimed(context.store, [name], own_doc_uri))
    clashes, seen = [], set()
    # Compared decoded (sipsimple writes uri="sip%3Abuddies%40example.com"), like Kamailio's rls
    # normalises them to sip:user@host.
    for position, (service, normal) in enumerate(zip(services, own, strict=True), start=1):
        if normal in taken or normal in seen:
            clashes.append(Exists(field=f"rls-services/service[{position}]/@uri",
                                  alt_values=_free_service_uris(decoded(service.get("uri", "")),
                                                                lambda n: n in own or is_taken(n))))
        seen.add(normal)
    if clashes:
        raise UniquenessFailure(clashes, phrase="service URI already in use (unique across all users, RFC 4826 §4.4.3)")


def _scanned_service_uris(store, own_doc_uri: str | None) -> set[str]:
    """Every service URI of the other rls-services documents, by reading them all (no side table)."""
    taken: set[str] = set()
    for key, content in store.documents_of_type(8):
        if key.doc_uri != own_doc_uri and "/global/" not in key.doc_uri:
            taken.update(service_keys(content))
    return taken


def _free_service_uris(uri: str, is_taken, count: int = 3) -> list[str]:
    scheme, _, rest = uri.partition(":")
    user, at, host = rest.rpartition("@")
    if not (at and user and host):
        return []
    suggestions: list[str] = []
    n = 2
    while len(suggestions) < count:
        candidate = f"{scheme}:{user}-{n}@{host}"
        if not is_taken(service_key(candidate)):
            suggestions.append(candidate)
        n += 1
    return suggestions


RLS_SERVICES = ApplicationUsage(
    auid="rls-services",
    mime_type="application/rls-services+xml",
    default_namespace="urn:ietf:params:xml:ns:rls-services",
    doc_type=doc_types.RLS_SERVICES,
    namespaces=schema_namespaces("rls-services"),  # rls-services + resource-lists (inline <list>)
    validators=(schema_validator("rls-services"), rls_services_constraints, rls_service_uris_unique),
    write_lock=RLS_SERVICE_LOCK,
    on_commit=rls_index_record,  # the service-URI side table (xcap_wsgi/rls_index.py)
    global_documents=("index",),  # computed: the union of every user's services (RFC 4826 §4.4.7)
    compute=rls_services_index,
)
