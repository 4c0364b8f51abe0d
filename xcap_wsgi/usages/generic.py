"""Generic application usages, configured without code (the ``usage`` setting).

``AUID=NAMESPACE;MIME-TYPE``: documents of any name in the users tree, checked for well-formed
UTF-8 only (as every document is), stored with ``GENERIC_DOC_TYPE``.
"""

from __future__ import annotations

from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once
from .registry import ApplicationUsage

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
