"""org.openmobilealliance.pres-content (OMA Presence Content XDM): a user's status icon.

An image of an allowed MIME type, base64-encoded, within the size limit; readable by every
authenticated user (the ``public_read`` setting).
"""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from ..errors import ConstraintFailure
from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once
from ..validation import schema_namespaces, schema_validator
from .registry import ApplicationUsage

PRES_CONTENT = "urn:oma:xml:prs:pres-content"
#: OMA Presence Content XDM: the image types a status icon may have, and its largest decoded size.
PRES_CONTENT_MIME_TYPES = ("image/jpeg", "image/gif", "image/png")
PRES_CONTENT_MAX_BYTES = 256 * 1024


def pres_content_rules(tree: etree._ElementTree, context) -> None:
    """OMA pres-content: an image of an allowed MIME type, base64-encoded, within the size limit."""
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


OMA_PRES_CONTENT = ApplicationUsage(
    auid="org.openmobilealliance.pres-content",
    mime_type="application/vnd.oma.pres-content+xml",
    default_namespace="urn:oma:xml:prs:pres-content",
    doc_type=doc_types.OMA_PRES_CONTENT,
    namespaces=schema_namespaces("pres-content"),
    validators=(schema_validator("pres-content"), pres_content_rules),
)
