"""xcap-caps (RFC 4825 §12): the server's capabilities, computed (never stored)."""

from __future__ import annotations

from ..computed import xcap_caps
from .registry import ApplicationUsage

XCAP_CAPS = ApplicationUsage(
    auid="xcap-caps",
    mime_type="application/xcap-caps+xml",
    default_namespace="urn:ietf:params:xml:ns:xcap-caps",
    doc_type=None,  # 32 in Kamailio (storage.kamailio.XCAP_CAPS), never stored
    global_documents=("index",),
    has_users_tree=False,
    writable=False,
    namespaces=("urn:ietf:params:xml:ns:xcap-caps",),
    compute=xcap_caps,
)
