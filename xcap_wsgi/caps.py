"""The xcap-caps document (RFC 4825 §12), generated from the enabled application usages."""

from __future__ import annotations

import hashlib

from lxml import etree

XCAP_CAPS_NS = "urn:ietf:params:xml:ns:xcap-caps"


def xcap_caps_document(registry, extensions: tuple[str, ...] = ()) -> bytes:
    """``<xcap-caps>`` listing every AUID, the extensions (always present, maybe empty) and the
    namespaces whose schemas the server has."""
    ns = f"{{{XCAP_CAPS_NS}}}"
    # lxml-stubs types nsmap keys as str; None (the default namespace) is what lxml documents
    root = etree.Element(ns + "xcap-caps", nsmap={None: XCAP_CAPS_NS})  # type: ignore[dict-item]
    auids = etree.SubElement(root, ns + "auids")
    for usage in registry:
        etree.SubElement(auids, ns + "auid").text = usage.auid
    extensions_element = etree.SubElement(root, ns + "extensions")
    for extension in extensions:
        etree.SubElement(extensions_element, ns + "extension").text = extension
    namespaces = etree.SubElement(root, ns + "namespaces")
    seen = []
    for usage in registry:
        for namespace in usage.namespaces:
            if namespace not in seen:
                seen.append(namespace)
    if XCAP_CAPS_NS not in seen:
        seen.insert(0, XCAP_CAPS_NS)
    for namespace in seen:
        etree.SubElement(namespaces, ns + "namespace").text = namespace
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def content_etag(content: bytes) -> str:
    """A strong ETag derived from content, the same in every process (for computed documents)."""
    return "c-" + hashlib.sha256(content).hexdigest()[:24]
