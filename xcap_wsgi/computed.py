"""Documents the server computes instead of storing: xcap-caps, the OMA xcap-directory, and the
rls-services global index (RFC 4826 §4.4.7: the union of every user's services).

Each is regenerated per request from the store (so it is never stale) and carries an ETag that
is a hash of its content: it changes whenever a source document changes (every source ETag is
part of the content), and is the same in every process. Node selectors work on them like on
stored documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from lxml import etree

from .caps import xcap_caps_document
from .errors import XCAPError
from .xmlsafe import parse_document

DIRECTORY_NS = "urn:oma:xml:xdm:xcap-directory"
RLS_NS = "urn:ietf:params:xml:ns:rls-services"
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_OUR_ETAG = re.compile(r"^xw-([0-9a-f]{6,})-")


@dataclass(frozen=True)
class ComputeContext:
    """What a computed document is made from."""

    store: object  #: the Store
    uri: object  #: the request's XCAPURI
    usages: object  #: the UsageRegistry
    username: str
    domain: str
    host_url: str  #: scheme://host[:port] clients use (public_url or the request's host)


def xcap_caps(context: ComputeContext) -> bytes:
    return xcap_caps_document(context.usages)


def xcap_directory(context: ComputeContext) -> bytes:
    """``users/<xui>/directory.xml``: one ``<folder auid>`` per stored AUID, one ``<entry>`` per
    document with its absolute URI, ETag, size and (for rows xcap-wsgi wrote) last-modified."""
    root = etree.Element(f"{{{DIRECTORY_NS}}}xcap-directory", nsmap={None: DIRECTORY_NS})
    folders = {}
    for usage in context.usages:
        if usage.doc_type is not None and usage.has_users_tree:
            folders[usage.auid] = etree.SubElement(root, f"{{{DIRECTORY_NS}}}folder", auid=usage.auid)
    for info in context.store.list_documents(context.username, context.domain):
        auid = _auid_of(info.doc_uri, info.doc_type, context.usages)
        if auid not in folders:
            continue
        entry = etree.SubElement(folders[auid], f"{{{DIRECTORY_NS}}}entry",
                                 uri=context.host_url + quote(info.doc_uri, safe=_PATH_SAFE), etag=info.etag)
        modified = etag_time(info.etag)
        if modified:
            entry.set("last-modified", modified.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        entry.set("size", str(info.size))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def rls_services_index(context: ComputeContext) -> bytes:
    """``rls-services/global/index``: every ``<service>`` of every user's rls-services documents.

    The documents come from the store's service-URI side table when it has one (the work grows
    with the number of services, which is what the index lists, not with the table's rows), else
    from a scan of the table (see ``rls_index.documents``).
    """
    from .rls_index import documents

    root = etree.Element(f"{{{RLS_NS}}}rls-services", nsmap={None: RLS_NS})
    for content in documents(context.store):
        try:
            document = parse_document(content).getroot()
        except XCAPError:
            continue  # a broken row written by someone else: not ours to serve
        for service in document.iterchildren(f"{{{RLS_NS}}}service"):
            service.tail = "\n"
            root.append(service)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def etag_time(etag: str) -> datetime | None:
    """When xcap-wsgi wrote a row, read back from the ETag it gave it (``xw-<ms hex>-...``)."""
    match = _OUR_ETAG.match(etag)
    if not match:
        return None
    return datetime.fromtimestamp(int(match.group(1), 16) / 1000, tz=timezone.utc)


def _auid_of(doc_uri: str, doc_type: int, usages) -> str | None:
    """The AUID of a stored row: the path segment before ``users``; else the first usage with the
    row's doc_type (Kamailio's own rule)."""
    segments = doc_uri.split("/")
    for i, segment in enumerate(segments[:-1]):
        if segments[i + 1] == "users" and segment in usages:
            return segment
    for usage in usages:
        if usage.doc_type == doc_type:
            return usage.auid
    return None
