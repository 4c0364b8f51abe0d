"""pidf-manipulation (RFC 4827): the presence a user publishes through XCAP.

Two documents per user: ``index`` (IETF) and ``perm-presence`` (OMA/RCS permanent presence),
whose ``presence/@entity`` must be the owner's own XUI (OMA Presence SIMPLE XDM).
"""

from __future__ import annotations

from lxml import etree
from webob.exc import HTTPForbidden

from ..constraints import decoded
from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once
from ..uri import canonical_xui
from ..validation import schema_namespaces, schema_validator
from .registry import ApplicationUsage


def perm_presence_entity(tree: etree._ElementTree, context) -> None:
    """OMA permanent presence (pidf-manipulation ``perm-presence``): ``presence/@entity`` must be
    the document owner's XUI, else 403 (OMA Presence SIMPLE XDM)."""
    uri = context.uri
    if uri.tree != "users" or uri.document_name != "perm-presence":
        return
    entity = tree.getroot().get("entity", "")
    if _presentity(decoded(entity)) != _presentity(uri.xui):
        raise HTTPForbidden(detail=f"presence entity {entity!r} is not the document owner {uri.xui!r}")


def _presentity(uri: str) -> str:
    """``pres:``, ``sip:`` and ``sips:`` forms of one AOR compare equal; the host case-insensitively."""
    lowered = uri.strip().lower()
    for scheme in ("pres:", "sips:", "sip:"):
        if lowered.startswith(scheme):
            return canonical_xui("sip:" + uri.strip()[len(scheme):])
    return canonical_xui(uri.strip())


PIDF_MANIPULATION = ApplicationUsage(
    auid="pidf-manipulation",
    mime_type="application/pidf+xml",
    default_namespace="urn:ietf:params:xml:ns:pidf",
    doc_type=doc_types.PIDF_MANIPULATION,
    document_names=("index", "perm-presence"),  # IETF, OMA/RCS
    namespaces=schema_namespaces("pidf-manipulation"),  # PIDF, data model, RPID, CIPID
    validators=(schema_validator("pidf-manipulation"), perm_presence_entity),
)
