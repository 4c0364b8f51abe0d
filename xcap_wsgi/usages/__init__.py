"""Application usages (RFC 4825 §5): what each AUID means to the server.

An ``ApplicationUsage`` declares its MIME type, default document namespace, Kamailio
``doc_type``, which documents it allows, and the validation hooks run on every resulting
document. ``UsageRegistry`` holds the enabled ones; ``default_registry()`` ships the usages
Kamailio's presence modules know about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from lxml import etree

from ..computed import rls_services_index, xcap_caps, xcap_directory
from ..constraints import (
    PRES_RULES_LOCK,
    RLS_SERVICE_LOCK,
    one_pres_rules_document,
    rls_service_uris_unique,
    perm_presence_entity,
    pres_content_rules,
    resource_lists_constraints,
    rls_services_constraints,
)
from ..validation import schema_namespaces, schema_validator
from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once

#: A validation hook: (resulting document tree, context) -> None, raising an XCAPError on failure.
Validator = Callable[[etree._ElementTree, "ValidationContext"], None]


@dataclass(frozen=True)
class ValidationContext:
    """What a validator may need beyond the document itself."""

    uri: object  #: the request's XCAPURI
    usage: "ApplicationUsage"
    content: bytes  #: the resulting document's bytes
    store: object = None  #: the Store, for checks that span documents
    key: object = None  #: the DocumentKey being written
    root_url: str = ""  #: absolute URI of the XCAP root clients use (for reference checks)


@dataclass(frozen=True)
class ApplicationUsage:
    auid: str
    mime_type: str
    default_namespace: str
    #: Kamailio's doc_type for rows of this usage; None for usages that are never stored.
    doc_type: int | None
    #: Document names allowed in the users tree; None allows any name (and sub-folders).
    document_names: tuple[str, ...] | None = None
    #: Documents that exist in the global tree (computed or stored); empty: no global documents.
    global_documents: tuple[str, ...] = ()
    has_users_tree: bool = True
    #: False for server-computed usages (xcap-caps, xcap-directory): PUT/DELETE get 405.
    writable: bool = True
    #: Namespaces this usage validates, advertised in xcap-caps <namespaces>.
    namespaces: tuple[str, ...] = ()
    validators: tuple[Validator, ...] = field(default=())
    #: For server-computed documents: ``compute(ComputeContext) -> bytes`` (xcap_wsgi.computed).
    #: It serves every document this usage allows that is not stored (all of them if not writable).
    compute: Callable | None = None
    #: Name of a store-wide lock held while validating and committing a write (for constraints
    #: that span documents, like rls-services service URIs); None: no lock.
    write_lock: str | None = None

    def validate(self, tree: etree._ElementTree, context: ValidationContext) -> None:
        """Run every validation hook on a resulting document (after each PUT and DELETE)."""
        for validator in self.validators:
            validator(tree, context)

    def allows_document(self, tree: str, segments: tuple[str, ...]) -> bool:
        """Whether a document path exists for this usage (otherwise the URI gets 404)."""
        if tree == "global":
            return len(segments) == 1 and segments[0] in self.global_documents
        if not self.has_users_tree:
            return False
        return self.document_names is None or (len(segments) == 1 and segments[0] in self.document_names)


class UsageRegistry:
    """The enabled application usages, by AUID (case-sensitive, as Kamailio compares them)."""

    def __init__(self, usages: list[ApplicationUsage] | tuple = ()):
        self._usages: dict[str, ApplicationUsage] = {}
        for usage in usages:
            self.register(usage)

    def register(self, usage: ApplicationUsage) -> None:
        self._usages[usage.auid] = usage

    def get(self, auid: str) -> ApplicationUsage | None:
        return self._usages.get(auid)

    def __iter__(self) -> Iterator[ApplicationUsage]:
        return iter(self._usages.values())

    def __contains__(self, auid: str) -> bool:
        return auid in self._usages


XCAP_CAPS = ApplicationUsage(
    auid="xcap-caps",
    mime_type="application/xcap-caps+xml",
    default_namespace="urn:ietf:params:xml:ns:xcap-caps",
    doc_type=None,  # doc_types.XCAP_CAPS in Kamailio, never stored
    global_documents=("index",),
    has_users_tree=False,
    writable=False,
    namespaces=("urn:ietf:params:xml:ns:xcap-caps",),
    compute=xcap_caps,
)

RESOURCE_LISTS = ApplicationUsage(
    auid="resource-lists",
    mime_type="application/resource-lists+xml",
    default_namespace="urn:ietf:params:xml:ns:resource-lists",
    doc_type=doc_types.RESOURCE_LISTS,
    namespaces=schema_namespaces("resource-lists"),
    validators=(schema_validator("resource-lists"), resource_lists_constraints),
)

RLS_SERVICES = ApplicationUsage(
    auid="rls-services",
    mime_type="application/rls-services+xml",
    default_namespace="urn:ietf:params:xml:ns:rls-services",
    doc_type=doc_types.RLS_SERVICES,
    namespaces=schema_namespaces("rls-services"),  # rls-services + resource-lists (inline <list>)
    validators=(schema_validator("rls-services"), rls_services_constraints, rls_service_uris_unique),
    write_lock=RLS_SERVICE_LOCK,
    global_documents=("index",),  # computed: the union of every user's services (RFC 4826 §4.4.7)
    compute=rls_services_index,
)

OMA_XCAP_DIRECTORY = ApplicationUsage(
    auid="org.openmobilealliance.xcap-directory",
    mime_type="application/vnd.oma.xcap-directory+xml",
    default_namespace="urn:oma:xml:xdm:xcap-directory",
    doc_type=None,  # doc_types.OMA_XCAP_DIRECTORY in Kamailio, never stored
    document_names=("directory.xml",),
    writable=False,
    namespaces=schema_namespaces("xcap-directory"),
    compute=xcap_directory,
)

PRES_RULES = ApplicationUsage(
    auid="pres-rules",
    mime_type="application/auth-policy+xml",
    default_namespace="urn:ietf:params:xml:ns:pres-rules",
    doc_type=doc_types.PRES_RULES,
    namespaces=schema_namespaces("pres-rules"),  # common-policy + pres-rules
    # One pres-rules document per user, IETF or OMA (Kamailio applies only the first row).
    validators=(schema_validator("pres-rules"), one_pres_rules_document),
    write_lock=PRES_RULES_LOCK,
)

OMA_PRES_RULES = ApplicationUsage(
    auid="org.openmobilealliance.pres-rules",
    mime_type="application/auth-policy+xml",
    # OMA clients write unprefixed ruleset/rule[...] selectors: the common-policy namespace.
    default_namespace="urn:ietf:params:xml:ns:common-policy",
    doc_type=doc_types.PRES_RULES,
    # OMA Presence XDM names the document "pres-rules"; python3-sipsimple (Blink) writes "index".
    # Both are accepted; presence reads either (any doc_type 2 row), one per user.
    document_names=("pres-rules", "index"),
    # common-policy, pres-rules, OMA common-policy and OMA pres-rules extensions
    namespaces=schema_namespaces("oma-pres-rules"),
    validators=(schema_validator("oma-pres-rules"), one_pres_rules_document),
    write_lock=PRES_RULES_LOCK,
)

PIDF_MANIPULATION = ApplicationUsage(
    auid="pidf-manipulation",
    mime_type="application/pidf+xml",
    default_namespace="urn:ietf:params:xml:ns:pidf",
    doc_type=doc_types.PIDF_MANIPULATION,
    document_names=("index", "perm-presence"),  # IETF, OMA/RCS
    namespaces=schema_namespaces("pidf-manipulation"),  # PIDF, data model, RPID, CIPID
    validators=(schema_validator("pidf-manipulation"), perm_presence_entity),
)

OMA_PRES_CONTENT = ApplicationUsage(
    auid="org.openmobilealliance.pres-content",
    mime_type="application/vnd.oma.pres-content+xml",
    default_namespace="urn:oma:xml:prs:pres-content",
    doc_type=doc_types.OMA_PRES_CONTENT,
    namespaces=schema_namespaces("pres-content"),
    validators=(schema_validator("pres-content"), pres_content_rules),
)

OMA_USER_PROFILE = ApplicationUsage(
    auid="org.openmobilealliance.user-profile",
    mime_type="application/vnd.oma.user-profile+xml",
    default_namespace="urn:oma:xml:xdm:user-profile",
    doc_type=doc_types.OMA_USER_PROFILE,
    # No bundled schema for OMA user-profile: not validated, so its namespace is not advertised.
    namespaces=(),
)

DEFAULT_USAGES = (
    XCAP_CAPS,
    RESOURCE_LISTS,
    RLS_SERVICES,
    PRES_RULES,
    OMA_PRES_RULES,
    PIDF_MANIPULATION,
    OMA_PRES_CONTENT,
    OMA_USER_PROFILE,
    OMA_XCAP_DIRECTORY,
)


#: doc_type of generic (configured) usages. It must be one Kamailio knows: its xcap-directory
#: answers 500 for the whole user on a doc_type outside its AUID list (1, 3, 1024, ...) and puts
#: a doc_type 0 row outside any <folder> (both observed on Kamailio 5.6, see
#: tests/test_generic_usage.py). Its consumers read fixed types (presence_xml 2 and 16, rls 4 and
#: 8, utils 2), so those would make a generic document be taken for pres-rules, a resource list,
#: etc. 64 (OMA user-profile) is read by no Kamailio module: such rows are inert for Kamailio (its
#: own directory lists them in the user-profile folder); xcap-wsgi tells them apart by the AUID
#: in doc_uri.
GENERIC_DOC_TYPE = doc_types.OMA_USER_PROFILE


def generic_usage(auid: str, namespace: str, mime_type: str) -> ApplicationUsage:
    """A schema-less application usage configured without code (setting ``usage``): documents of
    any name in the users tree, checked for well-formed UTF-8 only (as every document is)."""
    return ApplicationUsage(auid=auid, mime_type=mime_type, default_namespace=namespace,
                            doc_type=GENERIC_DOC_TYPE, namespaces=())


def default_registry() -> UsageRegistry:
    """A fresh registry with every usage xcap-wsgi ships."""
    return UsageRegistry(DEFAULT_USAGES)
