"""org.openmobilealliance.xcap-directory (OMA XDM): the list of a user's documents, computed
from the store (never stored)."""

from __future__ import annotations

from ..computed import xcap_directory
from ..validation import schema_namespaces
from .registry import ApplicationUsage

OMA_XCAP_DIRECTORY = ApplicationUsage(
    auid="org.openmobilealliance.xcap-directory",
    mime_type="application/vnd.oma.xcap-directory+xml",
    default_namespace="urn:oma:xml:xdm:xcap-directory",
    doc_type=None,  # 512 in Kamailio (storage.kamailio.OMA_XCAP_DIRECTORY), never stored
    document_names=("directory.xml",),
    writable=False,
    namespaces=schema_namespaces("xcap-directory"),
    compute=xcap_directory,
)
