"""org.openmobilealliance.user-profile (OMA XDM): stored as written, without a bundled schema."""

from __future__ import annotations

from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once
from .registry import ApplicationUsage

OMA_USER_PROFILE = ApplicationUsage(
    auid="org.openmobilealliance.user-profile",
    mime_type="application/vnd.oma.user-profile+xml",
    default_namespace="urn:oma:xml:xdm:user-profile",
    doc_type=doc_types.OMA_USER_PROFILE,
    # No bundled schema for OMA user-profile: not validated, so its namespace is not advertised.
    namespaces=(),
)
