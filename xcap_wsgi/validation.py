"""XML Schema validation of resulting documents, per application usage (RFC 4825 §8.2.5, §5.8).

``schema_validator(name)`` returns a usage ``Validator`` (``(tree, context) -> None``) that raises
``SchemaValidationError`` with a short phrase (what is wrong, where) when the document does not
match the usage's schema set. A schema set (``SCHEMA_SETS``) is the main schema of a usage plus
the schemas of every extension namespace the usage advertises in xcap-caps, compiled together.
Validation is plain XML Schema validation (libxml2), nothing more:

* an element the compiled schemas declare is validated wherever it appears, including inside
  ``processContents="lax"`` wildcards (lax validation validates what the schema knows);
* an element a lax wildcard admits but no loaded schema declares is skipped, whatever its
  namespace: an unknown ``rpid:`` element inside a lax ``##other`` slot is valid, exactly as with
  the official RFC schemas (XML Schema 1.0 Part 1, §3.10 Wildcards: lax = validate if declared);
* where a schema has no wildcard, anything not declared there is refused.

The document root must be one of the set's root elements (a PIDF document is a ``<presence>``,
not an ``<rpid:activities>`` that the combined schema happens to declare globally).

**Switching validation off per AUID.** The default usages carry a ``SchemaValidator`` in their
``validators``. ``with_schema_validation(registry, enabled_auids)`` returns a copy of a registry
where exactly the listed AUIDs validate against their schema (it adds the validator where missing
and removes it elsewhere; other validators are untouched); ``enabled_auids=None`` enables every
usage that has a schema set, ``()`` disables schema validation everywhere.
``without_schema_validation(registry, disabled_auids)`` is the same knob the other way round.
Usages keep their ``namespaces`` (what xcap-caps advertises), so switching validation off makes
the server more permissive without changing what clients are told.

``SCHEMA_SETS`` also has the documents the server itself produces (xcap-caps, xcap-directory,
xcap-error, xcap-diff), so tests and debug builds can check them with ``validate(tree, name)``.

Schemas are compiled once per process (``xcap_wsgi.schemas``); call ``preload(registry)`` at
start-up to compile them before the first request. One validation runs per schema set at a time
(lxml keeps a schema's error log on the schema object), which keeps phrases correct under threads.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

from lxml import etree

from .errors import SchemaValidationError
from .schemas import load_schemas

if TYPE_CHECKING:  # pragma: no cover
    from .usages.registry import UsageRegistry, ValidationContext

RL = "urn:ietf:params:xml:ns:resource-lists"
RLS = "urn:ietf:params:xml:ns:rls-services"
CP = "urn:ietf:params:xml:ns:common-policy"
PR = "urn:ietf:params:xml:ns:pres-rules"
OCP = "urn:oma:xml:xdm:common-policy"
OPR = "urn:oma:xml:prs:pres-rules"
PIDF = "urn:ietf:params:xml:ns:pidf"
DM = "urn:ietf:params:xml:ns:pidf:data-model"
RPID = "urn:ietf:params:xml:ns:pidf:rpid"
CIPID = "urn:ietf:params:xml:ns:pidf:cipid"
CAPS = "urn:ietf:params:xml:ns:xcap-caps"
XERR = "urn:ietf:params:xml:ns:xcap-error"
DIR = "urn:oma:xml:xdm:xcap-directory"
PRC = "urn:oma:xml:prs:pres-content"
XDIFF = "urn:ietf:params:xml:ns:xcap-diff"

#: Longest phrase put in a schema-validation-error report.
MAX_PHRASE = 300


@dataclass(frozen=True)
class SchemaSet:
    """The schemas one kind of document is validated against, compiled as one schema."""

    #: Bundled schema files (without ``.xsd``); one per namespace.
    schemas: tuple[str, ...]
    #: ``(namespace, local name)`` of the element(s) allowed as document root.
    roots: tuple[tuple[str, str], ...]
    #: The target namespace of each schema, in order: what the usage advertises in xcap-caps.
    namespaces: tuple[str, ...]
    #: ``roots`` as lxml tags (``{namespace}local``), compared with the root's tag directly.
    root_tags: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tags = frozenset(f"{{{ns}}}{local}" if ns else local for ns, local in self.roots)
        object.__setattr__(self, "root_tags", tags)  # frozen: set once, here


#: Schema sets by name. Names are the ones ``schema_validator()`` takes.
SCHEMA_SETS: dict[str, SchemaSet] = {
    "xcap-caps": SchemaSet(("xcap-caps",), ((CAPS, "xcap-caps"),), (CAPS,)),
    "xcap-error": SchemaSet(("xcap-error",), ((XERR, "xcap-error"),), (XERR,)),
    "resource-lists": SchemaSet(("resource-lists",), ((RL, "resource-lists"),), (RL,)),
    "rls-services": SchemaSet(("rls-services", "resource-lists"), ((RLS, "rls-services"),), (RLS, RL)),
    "pres-rules": SchemaSet(("common-policy", "pres-rules"), ((CP, "ruleset"),), (CP, PR)),
    "oma-pres-rules": SchemaSet(
        ("common-policy", "pres-rules", "oma-common-policy", "oma-pres-rules"),
        ((CP, "ruleset"),),
        (CP, PR, OCP, OPR),
    ),
    "pidf-manipulation": SchemaSet(
        ("pidf", "data-model", "rpid", "cipid"), ((PIDF, "presence"),), (PIDF, DM, RPID, CIPID)
    ),
    "pres-content": SchemaSet(("pres-content",), ((PRC, "content"),), (PRC,)),
    "xcap-directory": SchemaSet(("xcap-directory",), ((DIR, "xcap-directory"),), (DIR,)),
    # Not an application usage: change notifications (RFC 5874), for checking what we emit.
    "xcap-diff": SchemaSet(("xcap-diff",), ((XDIFF, "xcap-diff"),), (XDIFF,)),
}

#: The schema set each shipped AUID validates against.
AUID_SCHEMA_SETS: dict[str, str] = {
    "xcap-caps": "xcap-caps",
    "resource-lists": "resource-lists",
    "rls-services": "rls-services",
    "pres-rules": "pres-rules",
    "org.openmobilealliance.pres-rules": "oma-pres-rules",
    "pidf-manipulation": "pidf-manipulation",
    "org.openmobilealliance.pres-content": "pres-content",
    "org.openmobilealliance.xcap-directory": "xcap-directory",
}

_locks: dict[str, threading.Lock] = {name: threading.Lock() for name in SCHEMA_SETS}


def schema_namespaces(name: str) -> tuple[str, ...]:
    """The namespaces a schema set validates (what its usage advertises in xcap-caps)."""
    return _schema_set(name).namespaces


class SchemaValidator:
    """A usage ``Validator`` that checks the resulting document against a schema set.

    Compilation is lazy (first call, or ``preload``) and shared by every instance.
    """

    def __init__(self, name: str):
        self.schema_set = _schema_set(name)
        self.name = name
        self._schema: etree.XMLSchema | None = None  # compiled on first use (or by preload)

    def __call__(self, tree: etree._ElementTree, context: ValidationContext | None = None) -> None:
        schema = self._schema
        if schema is None:
            schema = self._schema = load_schemas(self.schema_set.schemas)
        _validate(tree, self.name, self.schema_set, schema)

    def preload(self) -> etree.XMLSchema:
        """Compile the schema set now (at start-up), so the first request does not pay for it."""
        self._schema = load_schemas(self.schema_set.schemas)
        return self._schema

    def __repr__(self) -> str:
        return f"SchemaValidator({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SchemaValidator) and other.name == self.name

    def __hash__(self) -> int:
        return hash((SchemaValidator, self.name))


def schema_validator(schema_name: str) -> SchemaValidator:
    """The ``Validator`` for a schema set of ``SCHEMA_SETS`` (``"resource-lists"``, ...)."""
    return SchemaValidator(schema_name)


def validate(tree: etree._ElementTree | etree._Element, schema_name: str) -> None:
    """Validate a document against a schema set; raise ``SchemaValidationError`` with a phrase."""
    schema_set = _schema_set(schema_name)
    _validate(tree, schema_name, schema_set, load_schemas(schema_set.schemas))


def _validate(tree: etree._ElementTree | etree._Element, schema_name: str, schema_set: SchemaSet,
              schema: etree.XMLSchema) -> None:
    root = tree.getroot() if isinstance(tree, etree._ElementTree) else tree
    document = root.getroottree()

    if root.tag not in schema_set.root_tags:
        expected = " or ".join(f"<{local}> in namespace {ns}" for ns, local in schema_set.roots)
        raise SchemaValidationError(f"the document element must be {expected}, not {_describe(root)}")

    with _locks[schema_name]:
        if not schema.validate(document):
            # lxml-stubs declares the error log as an empty class; lxml's is a sequence of entries
            error = schema.error_log[0] if len(schema.error_log) else None  # type: ignore[arg-type, index]
            raise SchemaValidationError(_phrase(error, document))


def with_schema_validation(registry: UsageRegistry, enabled_auids: Iterable[str] | None = None) -> UsageRegistry:
    """A copy of ``registry`` (of the same class) where exactly ``enabled_auids`` validate against
    their schema set.

    ``None`` enables every usage that has a schema set (an AUID of ``AUID_SCHEMA_SETS``, or a
    usage already carrying a ``SchemaValidator``); ``()`` disables schema validation for all.
    Usages are otherwise unchanged: other validators keep their order after the schema check,
    and ``namespaces`` (advertised in xcap-caps) stay as they are. Listing an AUID that is not in
    the registry or has no schema set raises ``ValueError`` (a configuration typo, most likely).
    """
    candidates = {usage.auid: _schema_validator_for(usage) for usage in registry}
    validatable = {auid: validator for auid, validator in candidates.items() if validator is not None}
    enabled = set(validatable if enabled_auids is None else enabled_auids)
    unknown = enabled - set(validatable)
    if unknown:
        raise ValueError(f"no schema set for AUID(s) {', '.join(sorted(unknown))} in this registry")
    usages = []
    for usage in registry:
        others = tuple(v for v in usage.validators if not isinstance(v, SchemaValidator))
        schema = (validatable[usage.auid],) if usage.auid in enabled else ()
        usages.append(replace(usage, validators=schema + others))
    return type(registry)(usages)


def without_schema_validation(registry: UsageRegistry, disabled_auids: Iterable[str]) -> UsageRegistry:
    """A copy of ``registry`` where the listed AUIDs skip schema validation and all others that
    have a schema set do it (the usual configuration knob: "don't schema-check pidf-manipulation")."""
    disabled = set(disabled_auids)
    unknown = disabled - {usage.auid for usage in registry}
    if unknown:
        raise ValueError(f"no AUID(s) {', '.join(sorted(unknown))} in this registry")
    enabled = [usage.auid for usage in registry if usage.auid not in disabled and _schema_validator_for(usage)]
    return with_schema_validation(registry, enabled)


def _schema_validator_for(usage) -> SchemaValidator | None:
    existing = [v for v in usage.validators if isinstance(v, SchemaValidator)]
    if existing:
        return existing[0]
    if usage.auid in AUID_SCHEMA_SETS:
        return schema_validator(AUID_SCHEMA_SETS[usage.auid])
    return None


def schema_validation_enabled(usage) -> bool:
    """Whether an ApplicationUsage validates against a schema set."""
    return any(isinstance(v, SchemaValidator) for v in usage.validators)


def preload(registry: UsageRegistry) -> None:
    """Compile every schema set the registry's usages use (call once at application start-up)."""
    for usage in registry:
        for validator in usage.validators:
            if isinstance(validator, SchemaValidator):
                validator.preload()


# -- helpers ----------------------------------------------------------------------------------


def _schema_set(name: str) -> SchemaSet:
    try:
        return SCHEMA_SETS[name]
    except KeyError:
        raise ValueError(f"unknown schema set {name!r}; known: {', '.join(sorted(SCHEMA_SETS))}") from None


def _nodes(document: etree._ElementTree, path: str, namespaces: dict[str, str]) -> list[object]:
    """What the location path ``path`` selects: a list (lxml's stubs type every XPath result as
    the union of all result kinds)."""
    return cast("list[object]", document.xpath(path, namespaces=namespaces))


_CLARK = re.compile(r"\{([^}]*)\}([\w.\-]+)")


def _phrase(error, document: etree._ElementTree) -> str:
    if error is None:
        return "the document is not valid against the application usage schema"
    element = None
    if error.path:
        namespaces = {prefix: ns for prefix, ns in document.getroot().nsmap.items() if prefix}
        try:
            found = _nodes(document, error.path, namespaces)
        except etree.XPathError:  # a prefix declared below the root (rare): gather every prefix
            for prefix, ns in cast("list[tuple[str | None, str]]", document.xpath("//namespace::*")):
                if prefix and prefix != "xml":
                    namespaces.setdefault(prefix, ns)
            try:
                found = _nodes(document, error.path, namespaces)
            except etree.XPathError:
                found = []
        if found and isinstance(found[0], etree._Element):
            element = found[0]
    # Name elements as the document does: with the prefixes in scope where the error is.
    prefixes = _prefixes(element if element is not None else document.getroot())
    message = _CLARK.sub(lambda m: _prefixed(prefixes, m.group(1), m.group(2)), error.message.strip())
    where = []
    if element is not None:
        where.append(f"at {_path(element)}")
    elif error.path:
        where.append(f"at {error.path}")
    if error.line:
        where.append(f"line {error.line}")
    return _limit(f"{message} ({', '.join(where)})" if where else message)


def _prefixes(element: etree._Element) -> dict[str, str]:
    """Namespace -> prefix in scope at ``element`` ("" for the default namespace)."""
    prefixes = {"http://www.w3.org/XML/1998/namespace": "xml"}  # always bound, never declared
    for prefix, namespace in element.nsmap.items():
        if prefix is None or namespace not in prefixes or prefixes[namespace] != "":
            prefixes[namespace] = prefix or ""
    return prefixes


def _prefixed(prefixes: dict[str, str], namespace: str, local: str) -> str:
    if namespace in prefixes:
        return f"{prefixes[namespace]}:{local}" if prefixes[namespace] else local
    return f"{{{namespace}}}{local}"


def _describe(element: etree._Element) -> str:
    qname = etree.QName(element)
    prefix = element.prefix
    name = f"{prefix}:{qname.localname}" if prefix else qname.localname
    return f"<{name}>" if qname.namespace is None or prefix else f"<{name}> ({qname.namespace})"


def _path(element: etree._Element) -> str:
    """A readable location: /resource-lists/list[2]/entry[1] (prefixes as in the document)."""
    steps = []
    node: etree._Element | None = element
    while node is not None:
        local = etree.QName(node).localname
        name = f"{node.prefix}:{local}" if node.prefix else local
        parent = node.getparent()
        if parent is not None:
            same = [sibling for sibling in parent if sibling.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


def _limit(phrase: str) -> str:
    return phrase if len(phrase) <= MAX_PHRASE else phrase[: MAX_PHRASE - 1] + "…"
