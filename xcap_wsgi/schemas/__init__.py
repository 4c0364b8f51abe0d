"""The XML Schemas xcap-wsgi validates against, shipped as files next to this module.

``load_schema("resource-lists")`` compiles ``resource-lists.xsd``; ``load_schemas(names)``
compiles several into one schema (each imported by a generated driver document), which is what a
usage with extension namespaces needs: lax wildcards only validate an extension element when its
namespace's schema is part of the compiled schema.

Loading is offline and local only. Every ``xs:import``/``xs:include`` ``schemaLocation`` is mapped
to a file in this directory: by file name (``"resource-lists.xsd"``), by one of the well-known
URLs/URNs in ``KNOWN_LOCATIONS`` (the W3C ``xml.xsd``), or by namespace when the import has no
``schemaLocation``. Anything else is refused with ``SchemaLoadError``; nothing is fetched, and the
schema parser refuses DTDs and entities. Compiled schemas are cached; compilation is serialised by
a lock, so each schema is compiled once per process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from lxml import etree

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))

#: Schema file (without ``.xsd``) for each target namespace shipped here.
NAMESPACE_SCHEMAS: dict[str, str] = {
    "http://www.w3.org/XML/1998/namespace": "xml",
    "urn:ietf:params:xml:ns:xcap-error": "xcap-error",
    "urn:ietf:params:xml:ns:xcap-caps": "xcap-caps",
    "urn:ietf:params:xml:ns:resource-lists": "resource-lists",
    "urn:ietf:params:xml:ns:rls-services": "rls-services",
    "urn:ietf:params:xml:ns:common-policy": "common-policy",
    "urn:ietf:params:xml:ns:pres-rules": "pres-rules",
    "urn:oma:xml:xdm:common-policy": "oma-common-policy",
    "urn:oma:xml:prs:pres-rules": "oma-pres-rules",
    "urn:ietf:params:xml:ns:pidf": "pidf",
    "urn:ietf:params:xml:ns:pidf:data-model": "data-model",
    "urn:ietf:params:xml:ns:pidf:rpid": "rpid",
    "urn:ietf:params:xml:ns:pidf:cipid": "cipid",
    "urn:oma:xml:xdm:xcap-directory": "xcap-directory",
    "urn:oma:xml:prs:pres-content": "pres-content",
    "urn:ietf:params:xml:ns:xcap-diff": "xcap-diff",
}

#: Non-local schemaLocation values that map to a local file.
KNOWN_LOCATIONS: dict[str, str] = {
    "http://www.w3.org/2001/xml.xsd": "xml",
    "https://www.w3.org/2001/xml.xsd": "xml",
    "http://www.w3.org/2001/03/xml.xsd": "xml",
    # IANA schema URNs (RFC 3688 registrations) some copies of the RFC schemas use as locations.
    "urn:ietf:params:xml:schema:xcap-error": "xcap-error",
    "urn:ietf:params:xml:schema:xcap-caps": "xcap-caps",
    "urn:ietf:params:xml:schema:resource-lists": "resource-lists",
    "urn:ietf:params:xml:schema:rls-services": "rls-services",
    "urn:ietf:params:xml:schema:common-policy": "common-policy",
    "urn:ietf:params:xml:schema:pres-rules": "pres-rules",
    "urn:ietf:params:xml:schema:pidf": "pidf",
    "urn:ietf:params:xml:schema:pidf:data-model": "data-model",
    "urn:ietf:params:xml:schema:pidf:rpid": "rpid",
    "urn:ietf:params:xml:schema:pidf:cipid": "cipid",
    "urn:ietf:params:xml:schema:pidf:common": "common-schema",
    "urn:ietf:params:xml:schema:xcap-diff": "xcap-diff",
    "urn:ietf:params:xml:schema:patch-ops": "patch-ops",
}


class SchemaLoadError(Exception):
    """A schema could not be found locally or does not compile."""


class _LocalResolver(etree.Resolver):
    """Serve schema documents from SCHEMA_DIR only; refuse every other location."""

    # lxml-stubs omit resolve's context argument and resolve_filename, both lxml's documented API
    def resolve(self, url, pubid, context):  # type: ignore[override]
        path = _local_path(url)
        if path is None:
            raise SchemaLoadError(f"refusing to load schema {url!r}: not a bundled schema")
        return self.resolve_filename(path, context)  # type: ignore[attr-defined]


def _local_path(url: str | None) -> str | None:
    if not url:
        return None
    if url in KNOWN_LOCATIONS:
        return _file(KNOWN_LOCATIONS[url])
    if url in NAMESPACE_SCHEMAS:  # an xs:import without schemaLocation resolves by namespace
        return _file(NAMESPACE_SCHEMAS[url])
    parts = urlsplit(url)
    if parts.scheme not in ("", "file"):
        return None
    path = os.path.abspath(unquote(parts.path))
    if os.path.dirname(path) != SCHEMA_DIR:
        # A relative schemaLocation resolved against a driver/base URL: keep the bare name only.
        path = os.path.join(SCHEMA_DIR, os.path.basename(path))
    if not path.endswith(".xsd") or not os.path.isfile(path):
        return None
    return path


def _file(name: str) -> str:
    return os.path.join(SCHEMA_DIR, f"{name}.xsd")


def schema_parser() -> etree.XMLParser:
    """A parser for schema documents: no DTD, no entity expansion, no network, and imports and
    includes resolved to bundled files only (anything else fails to load)."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    parser.resolvers.add(_LocalResolver())
    return parser


_lock = threading.RLock()
_cache: dict[tuple[str, ...], etree.XMLSchema] = {}


def available_schemas() -> list[str]:
    """Names of every bundled schema file (without ``.xsd``)."""
    return sorted(f[:-4] for f in os.listdir(SCHEMA_DIR) if f.endswith(".xsd"))


def schema_path(name: str) -> str:
    """Path of a bundled schema; ``name`` may carry the ``.xsd`` suffix."""
    name = name[:-4] if name.endswith(".xsd") else name
    path = _file(name)
    if os.path.basename(name) != name or not os.path.isfile(path):
        raise SchemaLoadError(f"no bundled schema named {name!r}")
    return path


def load_schema(name: str) -> etree.XMLSchema:
    """The compiled schema ``<name>.xsd`` (cached; safe to call from any thread)."""
    return load_schemas((name,))


def load_schemas(names: Iterable[str]) -> etree.XMLSchema:
    """One compiled schema made of several bundled schemas (cached per set of names).

    With a single name this is the file itself; with several, a generated driver schema imports
    each file by its target namespace, so elements of all of them are known to lax wildcards.
    """
    key = tuple(dict.fromkeys(n[:-4] if n.endswith(".xsd") else n for n in names))
    if not key:
        raise SchemaLoadError("no schema named")
    schema = _cache.get(key)
    if schema is not None:
        return schema
    with _lock:
        schema = _cache.get(key)
        if schema is None:
            schema = _cache[key] = _compile(key)
    return schema


def _compile(names: tuple[str, ...]) -> etree.XMLSchema:
    paths = [schema_path(name) for name in names]
    parser = schema_parser()
    try:
        if len(paths) == 1:
            document = etree.parse(paths[0], parser)
        else:
            document = etree.fromstring(_driver(paths), parser, base_url=os.path.join(SCHEMA_DIR, "_driver.xsd"))
            document = document.getroottree()
        return etree.XMLSchema(document)
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise SchemaLoadError(f"schema {'+'.join(names)} does not compile: {exc}") from None


def target_namespace(name: str) -> str | None:
    """The targetNamespace of a bundled schema file (None for a chameleon/no-namespace schema)."""
    return _schema_root(schema_path(name)).get("targetNamespace")


def _schema_root(path: str) -> etree._Element:
    return etree.parse(path, schema_parser()).getroot()


def _driver(paths: list[str]) -> bytes:
    """A no-namespace schema that only imports each file (one import per target namespace)."""
    imports = []
    seen = set()
    for path in paths:
        namespace = _schema_root(path).get("targetNamespace")
        if namespace is None:
            raise SchemaLoadError(f"{os.path.basename(path)} has no targetNamespace; it cannot be combined")
        if namespace in seen:
            continue
        seen.add(namespace)
        imports.append(
            f'<xs:import namespace="{_attr(namespace)}" schemaLocation="{_attr(os.path.basename(path))}"/>'
        )
    return (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">' + "".join(imports) + "</xs:schema>"
    ).encode("utf-8")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
