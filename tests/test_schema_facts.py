"""Facts about the official RFC/OMA schemas, one row each, as the bundled schemas must reproduce them.

Each fact has documents the official schema accepts and documents it refuses, small enough to read
beside the schema text: rls-services (RFC 4826 §4.2), OMA XDM common policy 1.0.2, OMA pres-rules,
RPID (RFC 4480 §6.2), CIPID (RFC 4482 §3), OMA pres-content 1.0, and how a lax wildcard treats an
element no schema declares (XML Schema 1.0: lax = validate only what is declared). The facts are
the list in issue 15; the RFC schemas themselves were recalled from memory, not copied.
"""

from __future__ import annotations

import pytest
from lxml import etree

from xcap_wsgi.errors import SchemaValidationError
from xcap_wsgi.validation import CIPID, CP, DM, OCP, OPR, PIDF, PR, PRC, RL, RLS, RPID, validate

X = "urn:example:vendor"  # an extension namespace no schema here knows


def _rls(packages: str) -> str:
    return (
        f'<rls-services xmlns="{RLS}" xmlns:x="{X}"><service uri="sip:alice-buddies@example.com">'
        "<resource-list>http://xcap.example.com/xcap-root/resource-lists/users/sip:alice@example.com/index</resource-list>"
        f"{packages}</service></rls-services>"
    )


def _rules(conditions: str = "", transformations: str = "") -> str:
    return (
        f'<cp:ruleset xmlns:cp="{CP}" xmlns:pr="{PR}" xmlns:ocp="{OCP}" xmlns:op="{OPR}" xmlns:x="{X}">'
        f'<cp:rule id="r1"><cp:conditions>{conditions}</cp:conditions>'
        "<cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions>"
        f"<cp:transformations>{transformations}</cp:transformations></cp:rule></cp:ruleset>"
    )


ANC = "http://xcap.example.com/xcap-root/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22oma_grantedcontacts%22%5D"


def _person(characteristics: str) -> str:
    return (
        f'<presence xmlns="{PIDF}" xmlns:dm="{DM}" xmlns:rpid="{RPID}" xmlns:cipid="{CIPID}" xmlns:x="{X}" '
        f'entity="sip:alice@example.com"><dm:person id="p1">{characteristics}</dm:person></presence>'
    )


def _content(children: str, attributes: str = "") -> str:
    return f'<content xmlns="{PRC}" xmlns:x="{X}"{attributes}>{children}</content>'


DATA = "<data>iVBORw0KGgo=</data>"

#: (schema set, document) pairs the official schemas accept.
VALID = [
    # rls-services packagesType: a lax ##other wildcard after each <package>
    pytest.param("rls-services", _rls("<packages><package>presence</package><x:filter/></packages>"),
                 id="rls-packages:extension-element-after-package"),
    pytest.param("rls-services", _rls("<packages><package>presence</package><x:a/><package>dialog</package><x:b/></packages>"),
                 id="rls-packages:extension-after-each-package"),
    # OMA common policy anchorType: anc optional, any attribute (lax), no content
    pytest.param("oma-pres-rules", _rules("<ocp:external-list><ocp:entry/></ocp:external-list>"),
                 id="ocp-entry:anc-optional"),
    pytest.param("oma-pres-rules", _rules(f'<ocp:external-list><ocp:entry anc="{ANC}" label="friends"/></ocp:external-list>'),
                 id="ocp-entry:unqualified-extra-attribute"),
    pytest.param("oma-pres-rules", _rules(f'<ocp:external-list><ocp:entry anc="{ANC}" ocp:mark="1" x:mark="2"/></ocp:external-list>'),
                 id="ocp-entry:attributes-of-any-namespace"),
    pytest.param("oma-pres-rules", _rules(f'<ocp:external-list><ocp:entry anc="{ANC}"/><ocp:entry anc="{ANC}2"/></ocp:external-list>'),
                 id="ocp-external-list:entries"),
    # OMA pres-rules provide-geopriv: false | full
    pytest.param("oma-pres-rules", _rules(transformations="<op:provide-geopriv>full</op:provide-geopriv>"),
                 id="op-provide-geopriv:full"),
    pytest.param("oma-pres-rules", _rules(transformations="<op:provide-geopriv>false</op:provide-geopriv>"),
                 id="op-provide-geopriv:false"),
    # RPID attribute wildcards: namespace="##any"
    pytest.param("pidf-manipulation", _person('<rpid:activities source="phone"><rpid:busy/></rpid:activities>'),
                 id="rpid-attributes:unqualified-attribute-on-activities"),
    pytest.param("pidf-manipulation", _person('<rpid:mood rpid:source="me" x:level="3"><rpid:happy/></rpid:mood>'),
                 id="rpid-attributes:rpid-and-vendor-attributes-on-mood"),
    pytest.param("pidf-manipulation", _person('<rpid:status-icon size="64">http://example.com/i.png</rpid:status-icon>'),
                 id="rpid-attributes:unqualified-attribute-on-status-icon"),
    # RPID relationship and service-class (no attributes); relationship's <other> optional
    pytest.param("pidf-manipulation", _person("<rpid:relationship><rpid:family/></rpid:relationship>"),
                 id="rpid-relationship:value"),
    pytest.param("pidf-manipulation", _person("<rpid:relationship/>"), id="rpid-relationship:empty-other-optional"),
    pytest.param("pidf-manipulation", _person("<rpid:relationship><rpid:note>n</rpid:note></rpid:relationship>"),
                 id="rpid-relationship:note-only-other-optional"),
    pytest.param("pidf-manipulation", _person("<rpid:relationship><rpid:other>cousin</rpid:other></rpid:relationship>"),
                 id="rpid-relationship:other-text"),
    pytest.param("pidf-manipulation", _person("<rpid:service-class><rpid:electronic/></rpid:service-class>"),
                 id="rpid-service-class:value"),
    # RPID sphere: element-only
    pytest.param("pidf-manipulation", _person("<rpid:sphere><rpid:work/></rpid:sphere>"), id="rpid-sphere:work-element"),
    pytest.param("pidf-manipulation", _person('<rpid:sphere id="s1"><x:bowling-club/></rpid:sphere>'),
                 id="rpid-sphere:extension-element"),
    # RPID place-is: note*, audio?, video?, text?
    pytest.param("pidf-manipulation", _person(
        "<rpid:place-is><rpid:note>n</rpid:note><rpid:audio><rpid:noisy/></rpid:audio><rpid:video><rpid:dark/></rpid:video>"
        "<rpid:text><rpid:ok/></rpid:text></rpid:place-is>"), id="rpid-place-is:audio-video-text"),
    # RPID mood and activities: <unknown/> or at least one value
    pytest.param("pidf-manipulation", _person("<rpid:mood><rpid:unknown/></rpid:mood>"), id="rpid-mood:unknown"),
    pytest.param("pidf-manipulation", _person("<rpid:mood><rpid:note>n</rpid:note><rpid:sleepy/><rpid:other>meh</rpid:other></rpid:mood>"),
                 id="rpid-mood:note-and-values"),
    pytest.param("pidf-manipulation", _person("<rpid:activities><rpid:unknown/></rpid:activities>"), id="rpid-activities:unknown"),
    pytest.param("pidf-manipulation", _person("<rpid:activities><x:coding/></rpid:activities>"),
                 id="rpid-activities:extension-value"),
    # CIPID display-name: plain xs:string
    pytest.param("pidf-manipulation", _person("<cipid:display-name>Alice Example</cipid:display-name>"),
                 id="cipid-display-name:plain-string"),
    # OMA pres-content: any attribute on content, mime-type, encoding, description, data
    pytest.param("pres-content", _content(DATA, ' version="2"'), id="pres-content:unqualified-attribute-on-content"),
    pytest.param("pres-content", _content(f'<mime-type codec="png">image/png</mime-type>{DATA}'),
                 id="pres-content:attribute-on-mime-type"),
    pytest.param("pres-content", _content(f'<encoding x:strict="true">base64</encoding>{DATA}'),
                 id="pres-content:attribute-on-encoding"),
    pytest.param("pres-content", _content(f'<description xml:lang="en" source="camera">me</description>{DATA}'),
                 id="pres-content:attribute-on-description"),
    pytest.param("pres-content", _content('<data etag="3a7f">iVBORw0KGgo=</data>'), id="pres-content:attribute-on-data"),
    # lax wildcards skip undeclared names, also in the IETF namespaces
    pytest.param("pidf-manipulation", _person("<rpid:dancing/>"), id="lax:unknown-rpid-element-in-person"),
    pytest.param("pidf-manipulation", _person("<cipid:vcard>http://example.com/a.vcf</cipid:vcard>"),
                 id="lax:unknown-cipid-element-in-person"),
    pytest.param("pres-rules", _rules(transformations="<pr:provide-teleport>true</pr:provide-teleport>"),
                 id="lax:unknown-pr-element-in-transformations"),
    pytest.param("oma-pres-rules", _rules("<ocp:external-identity/>"), id="lax:unknown-ocp-element-in-conditions"),
    pytest.param("resource-lists", f'<resource-lists xmlns="{RL}" xmlns:x="{X}"><list><entry uri="sip:b@example.com">'
                 f'<x:info><r:entry-note xmlns:r="{RLS}"/></x:info></entry></list></resource-lists>',
                 id="lax:unknown-rls-element-below-vendor-element"),
]

#: (schema set, document, phrase the 409 report carries) the official schemas refuse.
INVALID = [
    pytest.param("rls-services", _rls("<packages><package>presence</package><filter/></packages>"), "filter",
                 id="rls-packages:own-namespace-element-is-not-an-extension"),
    pytest.param("rls-services", _rls("<packages><x:filter/></packages>"), "x:filter",
                 id="rls-packages:extension-without-package"),
    pytest.param("oma-pres-rules", _rules(f'<ocp:external-list><ocp:entry anc="{ANC}"><x:label/></ocp:entry></ocp:external-list>'),
                 "ocp:entry", id="ocp-entry:no-element-content"),
    pytest.param("oma-pres-rules", _rules(f'<ocp:external-list><ocp:entry anc="{ANC}">friends</ocp:entry></ocp:external-list>'),
                 "ocp:entry", id="ocp-entry:no-text-content"),
    pytest.param("oma-pres-rules", _rules(f'<ocp:external-list x:owner="a"><ocp:entry anc="{ANC}"/></ocp:external-list>'),
                 "x:owner", id="ocp-external-list:no-attribute-wildcard"),
    pytest.param("oma-pres-rules", _rules(transformations="<op:provide-geopriv>approximate</op:provide-geopriv>"),
                 "provide-geopriv", id="op-provide-geopriv:not-false-or-full"),
    pytest.param("oma-pres-rules", _rules(transformations="<op:provide-geopriv>true</op:provide-geopriv>"),
                 "provide-geopriv", id="op-provide-geopriv:not-boolean"),
    pytest.param("pidf-manipulation", _person('<rpid:activities xml:lang="not a language"><rpid:busy/></rpid:activities>'),
                 "xml:lang", id="rpid-attributes:declared-attribute-still-validated"),
    pytest.param("pidf-manipulation", _person('<rpid:relationship id="r1"><rpid:family/></rpid:relationship>'),
                 "id", id="rpid-relationship:no-id"),
    pytest.param("pidf-manipulation", _person('<rpid:relationship from="2026-01-01T00:00:00Z"><rpid:family/></rpid:relationship>'),
                 "from", id="rpid-relationship:no-from"),
    pytest.param("pidf-manipulation", _person('<rpid:relationship x:since="2001"><rpid:family/></rpid:relationship>'),
                 "x:since", id="rpid-relationship:no-attribute-wildcard"),
    pytest.param("pidf-manipulation", _person("<rpid:relationship><rpid:family/><rpid:friend/></rpid:relationship>"),
                 "rpid:friend", id="rpid-relationship:one-value"),
    pytest.param("pidf-manipulation", _person('<rpid:service-class id="s1"><rpid:postal/></rpid:service-class>'),
                 "id", id="rpid-service-class:no-id"),
    pytest.param("pidf-manipulation", _person('<rpid:service-class until="2027-01-01T00:00:00Z"><rpid:postal/></rpid:service-class>'),
                 "until", id="rpid-service-class:no-until"),
    pytest.param("pidf-manipulation", _person("<rpid:sphere>work</rpid:sphere>"), "rpid:sphere", id="rpid-sphere:no-text"),
    pytest.param("pidf-manipulation", _person("<rpid:sphere>at <rpid:work/></rpid:sphere>"), "rpid:sphere",
                 id="rpid-sphere:not-mixed"),
    pytest.param("pidf-manipulation", _person("<rpid:place-is><rpid:audio><rpid:ok/></rpid:audio><x:lighting/></rpid:place-is>"),
                 "x:lighting", id="rpid-place-is:no-extension-wildcard"),
    pytest.param("pidf-manipulation", _person("<rpid:mood/>"), "rpid:mood", id="rpid-mood:empty"),
    pytest.param("pidf-manipulation", _person("<rpid:mood><rpid:note>n</rpid:note></rpid:mood>"), "rpid:mood",
                 id="rpid-mood:note-only"),
    pytest.param("pidf-manipulation", _person("<rpid:activities/>"), "rpid:activities", id="rpid-activities:empty"),
    pytest.param("pidf-manipulation", _person("<rpid:activities><rpid:unknown/><rpid:busy/></rpid:activities>"),
                 "rpid:busy", id="rpid-activities:unknown-and-value"),
    pytest.param("pidf-manipulation", _person('<cipid:display-name xml:lang="en">Alice</cipid:display-name>'),
                 "xml:lang", id="cipid-display-name:no-xml-lang"),
    pytest.param("pres-content", _content('<data><x:png/></data>'), "data", id="pres-content:data-is-text"),
    pytest.param("pres-content", _content(f"<description>me</description><mime-type>image/png</mime-type>{DATA}"),
                 "mime-type", id="pres-content:order-mime-type-first"),
    pytest.param("pidf-manipulation", _person("<rpid:activities><rpid:dancing/></rpid:activities>"), "rpid:dancing",
                 id="lax:no-wildcard-for-own-namespace-in-activities"),
    pytest.param("pidf-manipulation", _person("<rpid:sphere><rpid:office/></rpid:sphere>"), "rpid:office",
                 id="lax:no-wildcard-for-own-namespace-in-sphere"),
]


def _tree(document: str) -> etree._ElementTree:
    return etree.fromstring(document.encode()).getroottree()


@pytest.mark.parametrize("schema_set, document", VALID)
def test_the_official_schemas_accept(schema_set, document):
    validate(_tree(document), schema_set)


@pytest.mark.parametrize("schema_set, document, phrase", INVALID)
def test_the_official_schemas_refuse(schema_set, document, phrase):
    with pytest.raises(SchemaValidationError) as caught:
        validate(_tree(document), schema_set)
    assert phrase in caught.value.phrase
