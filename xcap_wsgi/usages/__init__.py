"""Application usages (RFC 4825 §5): what each AUID means to the server.

One module per usage, each carrying its declaration (MIME type, default namespace, Kamailio
``doc_type``, allowed documents, schema) and its constraints beyond the schema:
``resource_lists``, ``rls_services``, ``pres_rules`` (IETF and OMA), ``pidf_manipulation``,
``pres_content``, ``user_profile``, ``xcap_caps``, ``xcap_directory``, and ``generic`` for the
schema-less usages configured with the ``usage`` setting. ``registry`` defines
``ApplicationUsage`` and ``UsageRegistry``; ``default_registry()`` ships the usages Kamailio's
presence modules know about.
"""

from __future__ import annotations

from .generic import GENERIC_DOC_TYPE, generic_usage
from .pidf_manipulation import PIDF_MANIPULATION
from .pres_content import OMA_PRES_CONTENT
from .pres_rules import OMA_PRES_RULES, PRES_RULES
from .registry import ApplicationUsage, UsageRegistry, ValidationContext, Validator
from .resource_lists import RESOURCE_LISTS
from .rls_services import RLS_SERVICES
from .user_profile import OMA_USER_PROFILE
from .xcap_caps import XCAP_CAPS
from .xcap_directory import OMA_XCAP_DIRECTORY

__all__ = [
    "ApplicationUsage", "UsageRegistry", "ValidationContext", "Validator", "DEFAULT_USAGES",
    "default_registry", "generic_usage", "GENERIC_DOC_TYPE", "XCAP_CAPS", "RESOURCE_LISTS",
    "RLS_SERVICES", "PRES_RULES", "OMA_PRES_RULES", "PIDF_MANIPULATION", "OMA_PRES_CONTENT",
    "OMA_USER_PROFILE", "OMA_XCAP_DIRECTORY",
]

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


def default_registry() -> UsageRegistry:
    """A fresh registry with every usage xcap-wsgi ships."""
    return UsageRegistry(DEFAULT_USAGES)
