"""rls-services service URIs across users without scanning the ``xcap`` table (issue 19.3).

The store's optional side table (``storage/rls_index.py``) maps each normalised service URI to
the documents declaring it, with the ETag of the row it was read from. This module holds the
rules around it:

* ``record``: after each rls-services write or delete, under the ``rls-service-uri`` lock, the
  document's entries are replaced (a separate transaction right after the document's: if it
  fails the write still stands, and the entry is healed as below or by a rebuild);
* ``claimed``: the uniqueness check's lookup. A claiming entry whose row is gone or carries
  another ETag (Kamailio or another tool changed it, or ``record`` failed) is re-derived from the
  row on the spot (one index lookup), so stale entries never cause a false 409;
* ``documents``: the rls-services rows the global index is made of (only the rows with a service);
* ``drift`` / ``rebuild``: what a full scan finds that the side table does not say (a document
  written by another tool, e.g. Kamailio's xcap_server or a bulk import), and the repair.

Without the side table every function falls back to the scan it replaces (today's behaviour).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

from .constraints import RLS, decoded
from .errors import XCAPError
from .storage import DocumentKey, StoreError
from .storage.kamailio import RLS_SERVICES
from .uri import xui_account
from .xmlsafe import parse_document

log = logging.getLogger(__name__)

#: ``service_uri`` column width: longer normalised URIs are stored as ``sha256:<hex>``.
MAX_KEY = 255


def side_table(store):
    """The store's side table when it exists, else None (callers scan instead)."""
    index = getattr(store, "rls_index", None)
    return index if index is not None and index.available() else None


def service_key(uri: str) -> str:
    """The side table's key for a service URI: decoded once and normalised as Kamailio's rls
    matches it (``_normal``), hashed when longer than the column."""
    normal = _normal(decoded(uri))
    if len(normal) > MAX_KEY:
        return "sha256:" + hashlib.sha256(normal.encode("utf-8", "surrogatepass")).hexdigest()
    return normal


def service_keys(content: bytes) -> list[str]:
    """The keys of every service an rls-services document declares (none if it does not parse)."""
    return sorted({service_key(uri) for uri in _service_uris(content)})


def _service_uris(content: bytes) -> list[str]:
    try:
        root = parse_document(content).getroot()
    except XCAPError:
        return []
    return [s.get("uri", "") for s in root.iterchildren(f"{{{RLS}}}service")]


def _normal(uri: str) -> str:
    """How Kamailio's rls matches service URIs: ``sip:user@host``, host case-insensitive, no params."""
    if "@" not in uri:
        return uri.strip()
    user, host = xui_account(uri.strip(), "")
    return f"sip:{user}@{host}"


def record(store, key: DocumentKey, content: bytes | None, etag: str | None) -> None:
    """After a committed write (``content``/``etag``) or delete (None) of an rls-services
    document: make the side table say so. A failure is logged, not raised: the document write
    already stands, and a stale entry heals in ``claimed`` (a missing one: ``rebuild``)."""
    index = side_table(store)
    if index is None:
        return
    try:
        index.replace(key.username, key.domain, key.doc_uri, etag,
                      service_keys(content) if content is not None else ())
    except StoreError as exc:
        log.warning("rls-services side table not updated for %s (xcap-wsgi rls-index --rebuild repairs it): %s",
                    key.doc_uri, exc)


def claimed(store, keys: list[str], own_doc_uri: str | None) -> set[str] | None:
    """Which of ``keys`` another document (not ``own_doc_uri``, nor one under ``/global/``)
    declares, by primary-key lookups; None when the store has no side table (scan instead)."""
    index = side_table(store)
    if index is None:
        return None
    owners: dict[tuple[str, str, str], tuple[str, set[str]]] = {}
    for service_uri, username, domain, doc_uri, etag in index.owners(keys):
        if doc_uri == own_doc_uri or "/global/" in doc_uri:
            continue
        owners.setdefault((username, domain, doc_uri), (etag, set()))[1].add(service_uri)
    taken: set[str] = set()
    for (username, domain, doc_uri), (etag, uris) in owners.items():
        stored = store.get(DocumentKey(username, domain, doc_uri, RLS_SERVICES))
        if stored is not None and stored.etag == etag:
            taken |= uris
            continue
        # Stale: the row changed or went away behind our back. Re-derive it from the row itself.
        actual = service_keys(stored.content) if stored is not None else []
        index.replace(username, domain, doc_uri, stored.etag if stored is not None else None, actual)
        taken |= uris & set(actual)
    return taken


def documents(store) -> Iterator[bytes]:
    """The content of every rls-services document with a service, by row id: through the side
    table (cost grows with the number of services, not of rows) or, without it, the scan."""
    index = side_table(store)
    if index is None:
        for _, content in store.documents_of_type(RLS_SERVICES):
            yield content
        return
    for row in index.fetch_documents([doc_uri for _, _, doc_uri in index.indexed_documents()]):
        yield row[4]


def drift(store) -> list[str]:
    """What the side table gets wrong compared with a full scan of the rls-services rows (for
    ``check``); also the service URIs declared by several documents. Empty when all agree."""
    index = getattr(store, "rls_index", None)
    if index is None:
        return []
    problems = []
    if not index.available():
        return []  # optional (a database Kamailio created): nothing to drift
    expected: dict[tuple[str, str], str] = {}
    owners: dict[str, list[str]] = {}
    for _username, _domain, doc_uri, content, etag in index.scan_rls_rows():
        for service_uri in service_keys(content):
            expected[(service_uri, doc_uri)] = etag
            if "/global/" not in doc_uri:
                owners.setdefault(service_uri, []).append(doc_uri)
    actual = {(s, d): e for s, d, e in index.entries()}
    for (service_uri, doc_uri), etag in sorted(expected.items()):
        if (service_uri, doc_uri) not in actual:
            problems.append(f"{doc_uri}: service {service_uri} missing from {index.side}")
        elif actual[(service_uri, doc_uri)] != etag:
            problems.append(f"{doc_uri}: {index.side} holds an older version of the document")
    for (service_uri, doc_uri) in sorted(set(actual) - set(expected)):
        problems.append(f"{doc_uri}: {index.side} lists service {service_uri} the document does not declare")
    for service_uri, doc_uris in sorted(owners.items()):
        if len(doc_uris) > 1:
            problems.append(f"service URI {service_uri} is declared by {len(doc_uris)} documents: "
                            + ", ".join(doc_uris))
    return problems


def rebuild(store) -> int:
    """Create the side table if absent and refill it from a full scan; the number of entries."""
    index = store.rls_index
    index.create()
    return index.rebuild((username, domain, doc_uri, etag, service_keys(content))
                         for username, domain, doc_uri, content, etag in index.scan_rls_rows())
