"""What an application usage is (RFC 4825 §5), and the registry of the enabled ones.

An ``ApplicationUsage`` declares its MIME type, default document namespace, Kamailio
``doc_type``, which documents it allows, and the validation hooks run on every resulting
document. ``UsageRegistry`` holds the enabled ones, by AUID. This module imports no usage:
each usage module (``xcap_wsgi.usages.resource_lists``, ...) imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from lxml import etree

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
    #: ``on_commit(store, key, content, etag)`` called under ``write_lock`` right after each
    #: committed write (``content=etag=None`` after a delete), e.g. to keep a side table in step.
    on_commit: Callable | None = None

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

