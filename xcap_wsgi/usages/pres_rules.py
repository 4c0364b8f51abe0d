"""pres-rules (RFC 5025) and org.openmobilealliance.pres-rules (OMA Presence XDM): who may see
a user's presence. Both share Kamailio's doc_type 2, and a user has one such document."""

from __future__ import annotations

from lxml import etree

from ..errors import ConstraintFailure
from ..storage import kamailio as doc_types  # Kamailio's doc_type numbers, stated once
from ..validation import schema_namespaces, schema_validator
from .registry import ApplicationUsage

#: The lock name under which a pres-rules write checks for and commits its document.
PRES_RULES_LOCK = "pres-rules-document"


def one_pres_rules_document(tree: etree._ElementTree, context) -> None:
    """Refuse to create a second pres-rules document for a user (409 constraint-failure naming
    the one that exists); writes to an existing document always pass.

    Kamailio's presence_xml reads ``select doc from xcap where doc_type=2 AND username=? AND
    domain=?`` and applies the first row, whatever its AUID (IETF ``pres-rules`` and OMA
    ``org.openmobilealliance.pres-rules`` share doc_type 2) or document name: on a real Kamailio
    the row with the lowest id wins and a second document is silently ignored
    (tests/test_kamailio_pres_rules.py). One document per user keeps what the user edits and
    what presence applies the same. Runs under ``PRES_RULES_LOCK`` with the write.
    """
    store, key = context.store, context.key
    if store is None or key is None or context.uri.tree != "users":
        return
    own = key.doc_uri.lower()  # Kamailio's latin1 collation: case-insensitive doc_uri
    others = []
    for info in store.list_documents(key.username, key.domain):
        if info.doc_type != key.doc_type:
            continue
        if info.doc_uri.lower() == own:
            return  # replacing or editing the user's document: always allowed
        others.append(info.doc_uri)
    if others:
        raise ConstraintFailure(f"{context.uri.xui} already has a presence rules document, {others[0]}; "
                                "presence applies only one per user: change that one, or delete it first")


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
