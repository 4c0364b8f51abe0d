"""The bundled XML Schemas: they compile offline, accept what the RFCs and real clients produce,
and reject what the RFC schemas reject."""

from __future__ import annotations

import pytest
from lxml import etree

from xcap_wsgi import errors
from xcap_wsgi.schemas import SchemaLoadError, available_schemas, load_schema, load_schemas

XCAP_ERROR_CASES = [
    pytest.param(errors.XCAPError("an extension condition"), id="extension-with-phrase"),
    pytest.param(errors.XCAPError(), id="extension-bare"),
    pytest.param(errors.NotWellFormed("unclosed tag"), id="not-well-formed"),
    pytest.param(errors.NotXMLFrag(), id="not-xml-frag"),
    pytest.param(errors.NotXMLAttValue("contains <"), id="not-xml-att-value"),
    pytest.param(errors.NotUTF8("latin-1"), id="not-utf-8"),
    pytest.param(errors.SchemaValidationError("Element 'foo': not expected"), id="schema-validation-error"),
    pytest.param(errors.CannotInsert("positional insert would not round-trip"), id="cannot-insert"),
    pytest.param(errors.CannotDelete(), id="cannot-delete"),
    pytest.param(errors.ConstraintFailure("entry-ref must be relative"), id="constraint-failure"),
    pytest.param(errors.NoParent("no such list"), id="no-parent-without-ancestor"),
    pytest.param(
        errors.NoParent("no such list", ancestor="http://xcap.example.com/resource-lists/users/sip:a@b/index"),
        id="no-parent-with-ancestor",
    ),
    pytest.param(
        errors.UniquenessFailure([errors.Exists("rls-services/service/@uri")]), id="uniqueness-failure-bare-exists"
    ),
    pytest.param(
        errors.UniquenessFailure(
            [
                errors.Exists("rls-services/service/@uri", ["sip:friends1@example.com", "sip:friends2@example.com"]),
                errors.Exists("resource-lists/list/@name", ["l2"]),
            ],
            phrase="service URI already allocated",
        ),
        id="uniqueness-failure-with-alt-values",
    ),
    pytest.param(errors.ConstraintFailure("bad \x00\x1f phrase \ud800 cleaned"), id="phrase-with-illegal-chars"),
]


@pytest.mark.parametrize("error", XCAP_ERROR_CASES)
def test_conflict_report_bodies_are_valid_xcap_error_documents(error):
    schema = load_schema("xcap-error")
    document = etree.fromstring(error.body())
    assert schema.validate(document), schema.error_log.last_error


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"/>', id="no-condition"),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><not-utf-8/><not-xml-frag/></xcap-error>',
            id="two-conditions",
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><uniqueness-failure/></xcap-error>',
            id="uniqueness-failure-without-exists",
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><uniqueness-failure>'
            b"<exists/></uniqueness-failure></xcap-error>",
            id="exists-without-field",
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><teapot/></xcap-error>', id="unknown-condition"
        ),
        pytest.param(
            b'<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><cannot-delete reason="x"/></xcap-error>',
            id="unknown-attribute",
        ),
    ],
)
def test_xcap_error_schema_rejects_malformed_reports(body):
    assert not load_schema("xcap-error").validate(etree.fromstring(body))


CAPS = b"""<?xml version="1.0" encoding="UTF-8"?>
<xcap-caps xmlns="urn:ietf:params:xml:ns:xcap-caps">
  <auids><auid>xcap-caps</auid><auid>resource-lists</auid></auids>
  <extensions/>
  <namespaces>
    <namespace>urn:ietf:params:xml:ns:xcap-caps</namespace>
    <namespace>urn:ietf:params:xml:ns:resource-lists</namespace>
  </namespaces>
  <x:vendor xmlns:x="urn:example:vendor">anything</x:vendor>
</xcap-caps>"""


def test_xcap_caps_document_from_rfc_validates():
    schema = load_schema("xcap-caps")
    assert schema.validate(etree.fromstring(CAPS)), schema.error_log.last_error


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(CAPS.replace(b"<auids><auid>xcap-caps</auid><auid>resource-lists</auid></auids>", b"<auids/>"),
                     id="empty-auids"),
        pytest.param(CAPS.replace(b"<extensions/>", b"<extensions/><extensions/>"), id="two-extensions-lists"),
        pytest.param(CAPS.replace(b'<x:vendor xmlns:x="urn:example:vendor">anything</x:vendor>', b"<vendor/>"),
                     id="unknown-element-in-caps-namespace"),
    ],
)
def test_xcap_caps_schema_rejects_invalid_documents(body):
    assert not load_schema("xcap-caps").validate(etree.fromstring(body))


@pytest.mark.parametrize("name", available_schemas())
def test_every_bundled_schema_compiles(name):
    assert isinstance(load_schema(name), etree.XMLSchema)


def test_schemas_are_compiled_once():
    assert load_schema("xcap-error") is load_schema("xcap-error.xsd")
    assert load_schemas(["xcap-error", "xcap-caps"]) is load_schemas(("xcap-error", "xcap-caps"))


@pytest.mark.parametrize("name", ["no-such-schema", "../errors", "/etc/passwd"])
def test_unknown_schema_names_are_refused(name):
    with pytest.raises(SchemaLoadError):
        load_schema(name)


# -- Realistic documents, per schema set (the schemas a usage compiles together) -----------------
#
# Each valid document is what a spec example or a real client writes; each invalid one breaks one
# rule of the RFC/OMA schema, and the test names the phrase fragment the 409 report must carry.

from xcap_wsgi.errors import SchemaValidationError  # noqa: E402
from xcap_wsgi.validation import validate  # noqa: E402

RL_NS = 'xmlns="urn:ietf:params:xml:ns:resource-lists"'

RESOURCE_LISTS_RFC_EXAMPLE = """<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <list name="friends">
    <entry uri="sip:bill@example.com">
      <display-name>Bill Doe</display-name>
    </entry>
    <entry-ref ref="resource-lists/users/sip:bill@example.com/index/~~/resource-lists/list%5b@name=%22list1%22%5d/entry%5b@uri=%22sip:petri@example.com%22%5d"/>
    <list name="close-friends">
      <display-name xml:lang="en">Close Friends</display-name>
      <entry uri="sip:joe@example.com">
        <display-name>Joe Smith</display-name>
      </entry>
      <entry uri="sip:nancy@example.com">
        <display-name xml:lang="fr">Nancy Gross</display-name>
      </entry>
      <external anchor="http://xcap.example.org/resource-lists/users/sip:a@example.org/index/~~/resource-lists/list%5b@name=%22mkt%22%5d">
        <display-name>Marketing</display-name>
      </external>
    </list>
  </list>
</resource-lists>"""

RESOURCE_LISTS_JITSI = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="RootGroup">
    <entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry>
    <list name="Friends">
      <entry uri="sip:carol@example.com"><display-name>Carol</display-name></entry>
    </list>
  </list>
  <list name="pres-whitelist"><entry uri="sip:bob@example.com"/></list>
  <list name="pres-blacklist"/>
</resource-lists>"""

RESOURCE_LISTS_RCS = """<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="oma_buddylist">
    <entry uri="tel:+15551234567"><display-name>Alice</display-name></entry>
  </list>
  <list name="oma_grantedcontacts">
    <external anchor="http://xcap.ims.example.net/resource-lists/users/sip:%2B15550000000@ims.example.net/index/~~/resource-lists/list%5B@name=%22oma_buddylist%22%5D"/>
  </list>
  <list name="oma_blockedcontacts"/>
  <list name="rcs">
    <entry-ref ref="resource-lists/users/sip:%2B15550000000@ims.example.net/index/~~/resource-lists/list%5B@name=%22oma_buddylist%22%5D"/>
  </list>
</resource-lists>"""

RESOURCE_LISTS_VENDOR_EXTENSIONS = """<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"
    xmlns:ab="urn:ag-projects:sipsimple:xml:ns:addressbook" xmlns:v="urn:example:vendor">
  <list name="addressbook" v:color="blue">
    <display-name>Address book</display-name>
    <entry uri="sip:alice@example.com" v:favourite="true">
      <display-name>Alice</display-name>
      <ab:contact id="c1"><ab:name>Alice</ab:name></ab:contact>
      <v:note>met at IETF</v:note>
    </entry>
    <ab:group id="g1"><ab:name>Work</ab:name></ab:group>
  </list>
</resource-lists>"""

RLS_SERVICES_RFC_EXAMPLE = """<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"
    xmlns:rl="urn:ietf:params:xml:ns:resource-lists"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <service uri="sip:mybuddies@example.com">
    <resource-list>http://xcap.example.com/resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22l1%22%5d</resource-list>
    <packages>
      <package>presence</package>
    </packages>
  </service>
  <service uri="sip:marketing@example.com">
    <list name="marketing">
      <rl:display-name>Marketing</rl:display-name>
      <rl:entry uri="sip:joe@example.com"/>
      <rl:entry uri="sip:sudhir@example.com"><rl:display-name>Sudhir</rl:display-name></rl:entry>
      <rl:list name="nested"><rl:entry uri="sip:kim@example.com"/></rl:list>
    </list>
    <packages>
      <package>presence</package>
      <package>message-summary</package>
    </packages>
  </service>
</rls-services>"""

RLS_SERVICES_RCS = """<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services">
  <service uri="sip:+15550000000@ims.example.net;pres-list=rcs">
    <resource-list>http://xcap.ims.example.net/resource-lists/users/sip:%2B15550000000@ims.example.net/index/~~/resource-lists/list%5B@name=%22rcs%22%5D</resource-list>
    <packages><package>presence</package></packages>
  </service>
  <service uri="sip:nopackages@example.com">
    <resource-list>http://xcap.example.com/resource-lists/users/sip:a@example.com/index</resource-list>
  </service>
</rls-services>"""

PRES_RULES_JITSI = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
  <cp:rule id="presence_allow">
    <cp:conditions>
      <cp:identity>
        <cp:one id="sip:bob@example.com"/>
        <cp:one id="sip:carol@example.com"/>
      </cp:identity>
    </cp:conditions>
    <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions>
    <cp:transformations>
      <pr:provide-services><pr:all-services/></pr:provide-services>
      <pr:provide-persons><pr:all-persons/></pr:provide-persons>
      <pr:provide-devices><pr:all-devices/></pr:provide-devices>
      <pr:provide-all-attributes/>
    </cp:transformations>
  </cp:rule>
  <cp:rule id="presence_block">
    <cp:conditions><cp:identity><cp:one id="sip:spam@example.net"/></cp:identity></cp:conditions>
    <cp:actions><pr:sub-handling>block</pr:sub-handling></cp:actions>
  </cp:rule>
</cp:ruleset>"""

PRES_RULES_BLINK = """<?xml version="1.0" encoding="UTF-8"?>
<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
  <rule id="wp_prs_allow_own">
    <conditions><identity><one id="sip:alice@example.com"/></identity></conditions>
    <actions><pr:sub-handling>allow</pr:sub-handling></actions>
    <transformations>
      <pr:provide-services><pr:service-uri-scheme>sip</pr:service-uri-scheme><pr:class>business</pr:class></pr:provide-services>
      <pr:provide-persons><pr:occurrence-id>p1</pr:occurrence-id></pr:provide-persons>
      <pr:provide-devices><pr:deviceID>urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</pr:deviceID></pr:provide-devices>
      <pr:provide-activities>true</pr:provide-activities>
      <pr:provide-user-input>thresholds</pr:provide-user-input>
      <pr:provide-unknown-attribute name="willingness" ns="urn:oma:xml:prs:pidf:oma-pres">true</pr:provide-unknown-attribute>
    </transformations>
  </rule>
  <rule id="domain">
    <conditions>
      <identity><many domain="example.com"><except id="sip:boss@example.com"/></many></identity>
      <sphere value="work"/>
      <validity><from>2026-01-01T00:00:00Z</from><until>2027-01-01T00:00:00Z</until></validity>
    </conditions>
    <actions><pr:sub-handling>confirm</pr:sub-handling></actions>
  </rule>
  <rule id="default">
    <conditions/>
    <actions><pr:sub-handling>polite-block</pr:sub-handling></actions>
    <transformations/>
  </rule>
</ruleset>"""

PRES_RULES_OMA_RCS = """<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy"
    xmlns:ocp="urn:oma:xml:xdm:common-policy" xmlns:op="urn:oma:xml:prs:pres-rules">
  <cr:rule id="wp_prs_grantedcontacts">
    <cr:conditions>
      <ocp:external-list>
        <ocp:entry anc="http://xcap.ims.example.net/resource-lists/users/sip:%2B15550000000@ims.example.net/index/~~/resource-lists/list%5B@name=%22oma_grantedcontacts%22%5D"/>
      </ocp:external-list>
    </cr:conditions>
    <cr:actions><sub-handling>allow</sub-handling></cr:actions>
    <cr:transformations>
      <provide-services>
        <op:service-id>org.3gpp.urn:urn-7:3gpp-application.ims.iari.rcse.im</op:service-id>
        <service-uri-scheme>tel</service-uri-scheme>
      </provide-services>
      <provide-persons><all-persons/></provide-persons>
      <provide-devices><all-devices/></provide-devices>
      <op:provide-willingness>true</op:provide-willingness>
      <op:provide-network-availability>false</op:provide-network-availability>
      <op:provide-session-participation>true</op:provide-session-participation>
      <op:provide-registration-state>false</op:provide-registration-state>
      <op:provide-barring-state>false</op:provide-barring-state>
      <op:provide-geopriv>false</op:provide-geopriv>
      <provide-status-icon>true</provide-status-icon>
    </cr:transformations>
  </cr:rule>
  <cr:rule id="wp_prs_block_anonymous">
    <cr:conditions><ocp:anonymous-request/></cr:conditions>
    <cr:actions><sub-handling>block</sub-handling></cr:actions>
  </cr:rule>
  <cr:rule id="wp_prs_unlisted">
    <cr:conditions><ocp:other-identity/></cr:conditions>
    <cr:actions><sub-handling>confirm</sub-handling></cr:actions>
  </cr:rule>
</cr:ruleset>"""

PRES_RULES_RCS5_SERVICE_DESCRIPTION = """<?xml version="1.0" encoding="UTF-8"?>
<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules"
    xmlns:op="urn:oma:xml:prs:pres-rules" xmlns:ocp="urn:oma:xml:xdm:common-policy">
  <cp:rule id="rcs_allow_services_anonymous">
    <cp:conditions><ocp:anonymous-request/></cp:conditions>
    <cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions>
    <cp:transformations>
      <pr:provide-services>
        <op:service-description>
          <op:service-id>org.3gpp.urn:urn-7:3gpp-application.ims.iari.rcse.dp</op:service-id>
          <op:version>1.0</op:version>
        </op:service-description>
      </pr:provide-services>
      <pr:provide-persons><pr:all-persons/></pr:provide-persons>
    </cp:transformations>
  </cp:rule>
</cp:ruleset>"""

PIDF_BLINK = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:caps="urn:ietf:params:xml:ns:pidf:caps"
    xmlns:cipid="urn:ietf:params:xml:ns:pidf:cipid" xmlns:agp="urn:ag-projects:xml:ns:pidf"
    entity="sip:alice@example.com">
  <tuple id="SID-a1">
    <status><basic>open</basic><agp:extended>available</agp:extended></status>
    <caps:servcaps><caps:audio>true</caps:audio><caps:text>true</caps:text></caps:servcaps>
    <dm:deviceID>urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</dm:deviceID>
    <contact priority="0.8">sip:alice@192.0.2.10;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</contact>
    <note xml:lang="en">Blink Pro</note>
    <timestamp>2026-11-26T09:00:00Z</timestamp>
  </tuple>
  <dm:person id="PID-a1">
    <rpid:activities><rpid:busy/><rpid:on-the-phone/></rpid:activities>
    <rpid:mood><rpid:happy/></rpid:mood>
    <rpid:place-is><rpid:audio><rpid:quiet/></rpid:audio></rpid:place-is>
    <rpid:privacy><rpid:audio/></rpid:privacy>
    <rpid:sphere><rpid:work/></rpid:sphere>
    <rpid:time-offset description="CET">60</rpid:time-offset>
    <rpid:user-input idle-threshold="600" last-input="2026-11-26T08:59:00Z">active</rpid:user-input>
    <rpid:class>forwarded</rpid:class>
    <cipid:display-name>Alice Example</cipid:display-name>
    <cipid:homepage>https://alice.example.com/</cipid:homepage>
    <cipid:icon>https://alice.example.com/alice.png</cipid:icon>
    <cipid:card>https://alice.example.com/alice.vcf</cipid:card>
    <dm:note>At the office</dm:note>
    <dm:timestamp>2026-11-26T09:00:00Z</dm:timestamp>
  </dm:person>
  <dm:device id="DID-a1">
    <caps:devcaps><caps:mobility><caps:supported><caps:fixed/></caps:supported></caps:mobility></caps:devcaps>
    <rpid:user-input>idle</rpid:user-input>
    <dm:deviceID>urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</dm:deviceID>
    <dm:timestamp>2026-11-26T09:00:00Z</dm:timestamp>
  </dm:device>
</presence>"""

PIDF_RCS_PERM_PRESENCE = """<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:pdm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:ci="urn:ietf:params:xml:ns:pidf:cipid"
    xmlns:op="urn:oma:xml:prs:pidf:oma-pres" entity="tel:+15550000000">
  <pdm:person id="p1">
    <op:overriding-willingness><op:basic>open</op:basic></op:overriding-willingness>
    <rpid:status-icon op:etag="3a7f" op:fsize="1024" op:contenttype="image/png" op:resolution="64x64">http://xcap.ims.example.net/org.openmobilealliance.pres-content/users/tel:+15550000000/oma_status-icon/rcs_status_icon</rpid:status-icon>
    <ci:homepage>http://example.net/~me</ci:homepage>
    <pdm:note>Hello from RCS</pdm:note>
  </pdm:person>
</presence>"""

PIDF_MINIMAL = """<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:someone@example.com">
  <tuple id="sg89ae"><status><basic>closed</basic></status></tuple>
  <note>Out of office</note>
</presence>"""

PRES_CONTENT_RCS = """<?xml version="1.0" encoding="UTF-8"?>
<content xmlns="urn:oma:xml:prs:pres-content">
  <mime-type>image/png</mime-type>
  <encoding>base64</encoding>
  <description xml:lang="en">my avatar</description>
  <data>iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==</data>
</content>"""

PRES_CONTENT_MINIMAL = """<content xmlns="urn:oma:xml:prs:pres-content"><data>R0lGODlhAQABAAAAACw=</data></content>"""

XCAP_DIRECTORY = """<?xml version="1.0" encoding="UTF-8"?>
<xcap-directory xmlns="urn:oma:xml:xdm:xcap-directory">
  <folder auid="resource-lists">
    <entry uri="http://xcap.example.com/resource-lists/users/sip:joe@example.com/index" etag="a1b2" last-modified="2026-11-26T09:00:00Z" size="2048"/>
  </folder>
  <folder auid="pres-rules"/>
  <folder auid="rls-services"><error-code>500</error-code></folder>
</xcap-directory>"""

def _edit(document: str, old: str, new: str) -> str:
    assert old in document, old
    return document.replace(old, new, 1)


VALID_DOCUMENTS = [
    pytest.param("resource-lists", RESOURCE_LISTS_RFC_EXAMPLE, id="resource-lists:rfc4826-nested-entry-ref-external-xml-lang"),
    pytest.param("resource-lists", RESOURCE_LISTS_JITSI, id="resource-lists:jitsi-groups-and-white-black-lists"),
    pytest.param("resource-lists", RESOURCE_LISTS_RCS, id="resource-lists:rcs-oma-lists"),
    pytest.param("resource-lists", RESOURCE_LISTS_VENDOR_EXTENSIONS, id="resource-lists:vendor-elements-and-attributes-lax"),
    pytest.param("resource-lists", f"<resource-lists {RL_NS}/>", id="resource-lists:empty"),
    pytest.param("rls-services", RLS_SERVICES_RFC_EXAMPLE, id="rls-services:rfc4826-resource-list-and-inline-list"),
    pytest.param("rls-services", RLS_SERVICES_RCS, id="rls-services:rcs-pres-list-and-no-packages"),
    pytest.param("pres-rules", PRES_RULES_JITSI, id="pres-rules:jitsi-cp-pr-prefixes"),
    pytest.param("pres-rules", PRES_RULES_BLINK, id="pres-rules:blink-default-ns-many-except-sphere-validity"),
    pytest.param("pres-rules", PRES_RULES_OMA_RCS, id="pres-rules:oma-elements-lax-when-not-advertised"),
    pytest.param("oma-pres-rules", PRES_RULES_OMA_RCS, id="oma-pres-rules:rcs-external-list-anonymous-other-identity"),
    pytest.param("oma-pres-rules", PRES_RULES_JITSI, id="oma-pres-rules:ietf-document"),
    pytest.param("oma-pres-rules", PRES_RULES_RCS5_SERVICE_DESCRIPTION,
                 id="oma-pres-rules:rcs5-service-description-not-in-bundled-oma-schema-is-lax"),
    pytest.param("pidf-manipulation", PIDF_BLINK, id="pidf:blink-rpid-cipid-caps-data-model"),
    pytest.param("pidf-manipulation", PIDF_RCS_PERM_PRESENCE, id="pidf:rcs-perm-presence-oma-extensions"),
    pytest.param("pidf-manipulation", PIDF_MINIMAL, id="pidf:rfc3863-minimal"),
    pytest.param("pres-content", PRES_CONTENT_RCS, id="pres-content:rcs-status-icon"),
    pytest.param("pres-content", PRES_CONTENT_MINIMAL, id="pres-content:data-only"),
    pytest.param("xcap-directory", XCAP_DIRECTORY, id="xcap-directory:entries-and-error-code"),
    pytest.param("xcap-caps", CAPS.decode(), id="xcap-caps:with-vendor-element"),
    # Issue 15: these were refused before; the official schemas accept them.
    pytest.param("pres-rules", _edit(PRES_RULES_JITSI, "<pr:provide-all-attributes/>", "<pr:provide-servces/>"),
                 id="pres-rules:pr-undeclared-name-skipped-by-lax-wildcard"),
    pytest.param("oma-pres-rules", _edit(PRES_RULES_OMA_RCS, '<ocp:entry anc="', '<ocp:entry xmlns:v="urn:example:v" v:anc="'),
                 id="oma-pres-rules:ocp-external-list-entry-without-anc"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<rpid:class>forwarded</rpid:class>", "<rpid:dancing/>"),
                 id="pidf:rpid-undeclared-name-in-person-skipped-by-lax-wildcard"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<cipid:card>", "<cipid:vcard>").replace("</cipid:card>", "</cipid:vcard>"),
                 id="pidf:cipid-undeclared-name-skipped-by-lax-wildcard"),
]


@pytest.mark.parametrize("schema_set, document", VALID_DOCUMENTS)
def test_documents_real_clients_send_are_valid(schema_set, document):
    validate(etree.fromstring(document.encode()).getroottree(), schema_set)


INVALID_DOCUMENTS = [
    # wrong root
    pytest.param("resource-lists", RLS_SERVICES_RCS, "document element must be <resource-lists>", id="resource-lists:wrong-root"),
    pytest.param("resource-lists", f"<list {RL_NS}/>", "document element must be <resource-lists>", id="resource-lists:list-as-root"),
    pytest.param("pidf-manipulation", '<rpid:activities xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"><rpid:away/></rpid:activities>',
                 "document element must be <presence>", id="pidf:extension-element-as-root"),
    pytest.param("pres-rules", '<ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"/>', "document element must be <ruleset>",
                 id="pres-rules:ruleset-in-wrong-namespace"),
    # missing required attribute
    pytest.param("resource-lists", _edit(RESOURCE_LISTS_JITSI, ' uri="sip:carol@example.com"', ""),
                 "'uri' is required", id="resource-lists:entry-without-uri"),
    pytest.param("resource-lists", _edit(RESOURCE_LISTS_RCS, "<entry-ref ref=", "<entry-ref x="),
                 "entry-ref", id="resource-lists:entry-ref-without-ref"),
    pytest.param("rls-services", _edit(RLS_SERVICES_RCS, ' uri="sip:nopackages@example.com"', ""),
                 "'uri' is required", id="rls-services:service-without-uri"),
    pytest.param("pres-rules", _edit(PRES_RULES_JITSI, ' id="presence_block"', ""), "'id' is required",
                 id="pres-rules:rule-without-id"),
    pytest.param("pres-rules", _edit(PRES_RULES_JITSI, 'id="presence_block"', 'id="presence_allow"'), "presence_allow",
                 id="pres-rules:duplicate-rule-id"),
    pytest.param("pidf-manipulation", _edit(PIDF_MINIMAL, ' entity="pres:someone@example.com"', ""), "'entity' is required",
                 id="pidf:presence-without-entity"),
    pytest.param("xcap-directory", _edit(XCAP_DIRECTORY, ' auid="pres-rules"', ""), "'auid' is required",
                 id="xcap-directory:folder-without-auid"),
    # unknown element / wrong structure in a strict place
    pytest.param("resource-lists", f'<resource-lists {RL_NS}><group name="x"/></resource-lists>', "not expected",
                 id="resource-lists:unknown-element-at-top"),
    pytest.param("resource-lists", f'<resource-lists {RL_NS} xmlns:v="urn:example:v"><v:x/></resource-lists>', "not expected",
                 id="resource-lists:no-wildcard-at-top-level"),
    pytest.param("resource-lists", _edit(RESOURCE_LISTS_VENDOR_EXTENSIONS, "<display-name>Address book</display-name>",
                                         "<display-name>Address book</display-name><v:first/>"),
                 "not expected", id="resource-lists:extension-before-list-items"),
    pytest.param("resource-lists", _edit(RESOURCE_LISTS_JITSI, "<display-name>Bob</display-name>",
                                         "<display-name>Bob</display-name><display-name>Robert</display-name>"),
                 "display-name", id="resource-lists:two-display-names"),
    pytest.param("resource-lists", "<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'>text</resource-lists>",
                 "Character content", id="resource-lists:text-in-element-only-content"),
    pytest.param("rls-services", _edit(RLS_SERVICES_RCS, "</resource-list>\n  </service>",
                                       "</resource-list><list/>\n  </service>"),
                 "not expected", id="rls-services:resource-list-and-list"),
    pytest.param("rls-services", _edit(RLS_SERVICES_RFC_EXAMPLE, '<rl:entry uri="sip:joe@example.com"/>', '<entry uri="sip:joe@example.com"/>'),
                 "not expected", id="rls-services:inline-entry-in-rls-namespace"),
    pytest.param("pres-rules", _edit(PRES_RULES_JITSI, '<cp:identity><cp:one id="sip:spam@example.net"/></cp:identity>', "<cp:identity/>"),
                 "identity", id="pres-rules:empty-identity"),
    pytest.param("pres-rules", _edit(PRES_RULES_JITSI, '<cp:one id="sip:bob@example.com"/>', "<cp:one/>"), "'id' is required",
                 id="pres-rules:one-without-id"),
    pytest.param("pidf-manipulation", _edit(PIDF_MINIMAL, "<status><basic>closed</basic></status>", ""), "Missing child element",
                 id="pidf:tuple-without-status"),
    pytest.param("pidf-manipulation", _edit(PIDF_MINIMAL, "<basic>closed</basic>", "<basic>online</basic>"), "enumeration",
                 id="pidf:basic-not-open-or-closed"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, '<contact priority="0.8">', '<contact priority="high">'), "priority",
                 id="pidf:contact-priority-not-qvalue"),
    pytest.param("pidf-manipulation", _edit(PIDF_MINIMAL, "<tuple id", "<note>first</note><tuple id"), "not expected",
                 id="pidf:presence-note-before-tuple"),
    pytest.param("pres-content", _edit(PRES_CONTENT_RCS, "<data>", "<raw>").replace("</data>", "</raw>"), "not expected",
                 id="pres-content:data-missing"),
    pytest.param("pres-content", _edit(PRES_CONTENT_RCS, "<mime-type>image/png</mime-type>",
                                       "<mime-type>image/png</mime-type><mime-type>image/gif</mime-type>"),
                 "not expected", id="pres-content:two-mime-types"),
    pytest.param("xcap-directory", _edit(XCAP_DIRECTORY, "<error-code>500</error-code>",
                                         '<entry uri="http://x/" etag="1"/><error-code>500</error-code>'),
                 "not expected", id="xcap-directory:entries-and-error-code-together"),
    # an element of an advertised extension namespace that breaks its schema (inside a lax wildcard)
    pytest.param("pres-rules", _edit(PRES_RULES_JITSI, "<pr:sub-handling>allow<", "<pr:sub-handling>maybe<"), "enumeration",
                 id="pres-rules:pr-sub-handling-value"),
    pytest.param("pres-rules", _edit(PRES_RULES_JITSI, "<pr:all-services/>", "<pr:all-services/><pr:class>x</pr:class>"),
                 "not expected", id="pres-rules:pr-all-services-with-selectors"),
    pytest.param("oma-pres-rules", _edit(PRES_RULES_OMA_RCS, "<op:provide-geopriv>false<", "<op:provide-geopriv>coarse<"),
                 "provide-geopriv", id="oma-pres-rules:op-provide-geopriv-not-false-or-full"),
    pytest.param("oma-pres-rules", _edit(PRES_RULES_OMA_RCS, "<op:provide-willingness>true", "<op:provide-willingness>perhaps"),
                 "boolean", id="oma-pres-rules:op-provide-willingness-not-boolean"),
    pytest.param("oma-pres-rules", _edit(PRES_RULES_OMA_RCS, "<ocp:anonymous-request/>", "<ocp:anonymous-request>yes</ocp:anonymous-request>"),
                 "anonymous-request", id="oma-pres-rules:ocp-anonymous-request-not-empty"),
    pytest.param("rls-services", _edit(RLS_SERVICES_RFC_EXAMPLE, '<rl:entry uri="sip:joe@example.com"/>', "<rl:entry/>"),
                 "'uri' is required", id="rls-services:rl-entry-without-uri"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, '<dm:person id="PID-a1">', "<dm:person>"), "'id' is required",
                 id="pidf:dm-person-without-id"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<dm:deviceID>urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</dm:deviceID>\n    <dm:timestamp>",
                                            "<dm:timestamp>"),
                 "deviceID", id="pidf:dm-device-without-deviceID"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<rpid:busy/>", "<rpid:dancing/>"), "rpid:dancing",
                 id="pidf:rpid-unknown-activity"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<rpid:happy/>", "<rpid:happy/><rpid:elated/>"), "rpid:elated",
                 id="pidf:rpid-unknown-mood"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<rpid:sphere><rpid:work/></rpid:sphere>", "<rpid:sphere>work</rpid:sphere>"),
                 "rpid:sphere", id="pidf:rpid-sphere-as-text"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, 'idle-threshold="600"', 'idle-threshold="-1"'), "idle-threshold",
                 id="pidf:rpid-user-input-threshold-negative"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<rpid:time-offset description=\"CET\">60<", "<rpid:time-offset>one hour<"),
                 "time-offset", id="pidf:rpid-time-offset-not-integer"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<cipid:homepage>https://alice.example.com/</cipid:homepage>",
                                            "<cipid:homepage><a href='x'/></cipid:homepage>"),
                 "homepage", id="pidf:cipid-homepage-with-element-content"),
    pytest.param("pidf-manipulation", _edit(PIDF_BLINK, "<cipid:display-name>", '<cipid:display-name xml:lang="en">'),
                 "xml:lang", id="pidf:cipid-display-name-with-xml-lang"),
]


@pytest.mark.parametrize("schema_set, document, phrase", INVALID_DOCUMENTS)
def test_documents_breaking_the_schema_get_a_schema_validation_error_naming_the_problem(schema_set, document, phrase):
    with pytest.raises(SchemaValidationError) as caught:
        validate(etree.fromstring(document.encode()).getroottree(), schema_set)
    assert phrase in caught.value.phrase
    body = etree.fromstring(caught.value.body())
    assert body[0].tag == "{urn:ietf:params:xml:ns:xcap-error}schema-validation-error"
    assert load_schema("xcap-error").validate(body)


# -- xcap-diff (RFC 5874): what the change events emit ------------------------------------------

from xcap_wsgi.events import ChangeEvent, PatchOperation  # noqa: E402

XCAP_DIFF_RFC_EXAMPLE = """<?xml version="1.0" encoding="UTF-8"?>
<xcap-diff xmlns="urn:ietf:params:xml:ns:xcap-diff" xcap-root="http://xcap.example.com/root/">
  <document new-etag="7" sel="resource-lists/users/sip:joe@example.com/index" previous-etag="6">
    <body-not-changed/>
  </document>
  <document new-etag="fgherhryt4" sel="rls-services/users/sip:joe@example.com/index" previous-etag="ffds">
    <add sel="*/*[1]" pos="after"><rl:entry xmlns:rl="urn:ietf:params:xml:ns:resource-lists" uri="sip:a@example.com"/></add>
    <replace sel="*/*[2]/@name">friends</replace>
    <remove sel="*/*[3]" ws="before"/>
    <add sel="*/*[1]" type="@name">l1</add>
  </document>
  <element sel="resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list%5b@name=%22l1%22%5d" exists="0"/>
  <attribute sel="resource-lists/users/sip:joe@example.com/index/~~/resource-lists/list/@name">l1</attribute>
</xcap-diff>"""


def _event(patch=(), previous="e1", new="e2", namespaces=None):
    return ChangeEvent(
        auid="resource-lists", xui="sip:joe@example.com", username="joe", domain="example.com",
        document_selector="resource-lists/users/sip:joe@example.com/index",
        doc_uri="/xcap-root/resource-lists/users/sip:joe@example.com/index", node_selector=None,
        operation="put", previous_etag=previous, new_etag=new, xcap_root="http://xcap.example.com/xcap-root/",
        namespaces=namespaces or {}, patch=tuple(patch),
    )


_ENTRY = etree.fromstring('<entry xmlns="urn:ietf:params:xml:ns:resource-lists" uri="sip:b@example.com"/>')


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(XCAP_DIFF_RFC_EXAMPLE.encode(), id="rfc5874-style-example"),
        pytest.param(_event().xcap_diff(), id="events-document-replaced"),
        pytest.param(_event(previous=None).xcap_diff(), id="events-document-created"),
        pytest.param(_event(new=None).xcap_diff(), id="events-document-deleted"),
        pytest.param(_event([PatchOperation("add", "*/*[1]", element=_ENTRY)]).xcap_diff(), id="events-add-element"),
        pytest.param(_event([PatchOperation("add", "*/*[1]/*[2]", element=_ENTRY, pos="before")]).xcap_diff(),
                     id="events-add-element-before"),
        pytest.param(_event([PatchOperation("add", "*/*[1]", value="friends", type="@name")]).xcap_diff(),
                     id="events-add-attribute"),
        pytest.param(_event([PatchOperation("replace", "*/*[1]/*[1]", element=_ENTRY)]).xcap_diff(), id="events-replace"),
        pytest.param(_event([PatchOperation("remove", "*/*[1]/@name")]).xcap_diff(), id="events-remove-attribute"),
    ],
)
def test_xcap_diff_documents_validate(document):
    validate(etree.fromstring(document).getroottree(), "xcap-diff")


@pytest.mark.parametrize(
    "document, phrase",
    [
        pytest.param(_edit(XCAP_DIFF_RFC_EXAMPLE, ' xcap-root="http://xcap.example.com/root/"', ""), "'xcap-root' is required",
                     id="no-xcap-root"),
        pytest.param(_edit(XCAP_DIFF_RFC_EXAMPLE, '<remove sel="*/*[3]" ws="before"/>', "<remove/>"), "'sel' is required",
                     id="remove-without-sel"),
        pytest.param(_edit(XCAP_DIFF_RFC_EXAMPLE, 'pos="after"', 'pos="last"'), "pos", id="add-pos-not-before-after-prepend"),
        pytest.param(_edit(XCAP_DIFF_RFC_EXAMPLE, "<body-not-changed/>", '<body-not-changed/><remove sel="*"/>'),
                     "not expected", id="body-not-changed-with-patch"),
        pytest.param(_edit(XCAP_DIFF_RFC_EXAMPLE, 'exists="0"', 'exists="maybe"'), "exists", id="element-exists-not-boolean"),
    ],
)
def test_broken_xcap_diff_documents_are_refused(document, phrase):
    with pytest.raises(SchemaValidationError) as caught:
        validate(etree.fromstring(document.encode()).getroottree(), "xcap-diff")
    assert phrase in caught.value.phrase


# -- the loader never leaves the bundled directory -----------------------------------------------

from xcap_wsgi.schemas import SCHEMA_DIR, schema_parser  # noqa: E402


def _importing(location: str) -> bytes:
    return (
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:example:t">'
        f'<xs:import namespace="urn:example:other" schemaLocation="{location}"/></xs:schema>'
    ).encode()


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("http://schemas.example.net/evil.xsd", id="remote-http"),
        pytest.param("https://www.w3.org/2001/XMLSchema.xsd", id="remote-https-unknown"),
        pytest.param("/etc/passwd", id="absolute-path-outside"),
        pytest.param("file:///etc/hostname", id="file-url-outside"),
        pytest.param("../usages/__init__.py", id="relative-escape"),
    ],
)
def test_imports_outside_the_bundled_schemas_are_refused(location):
    document = etree.fromstring(_importing(location), schema_parser(), base_url=f"{SCHEMA_DIR}/driver.xsd")
    with pytest.raises(etree.XMLSchemaParseError):
        etree.XMLSchema(document)


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("http://www.w3.org/2001/xml.xsd", id="w3c-xml-url-served-locally"),
        pytest.param("urn:ietf:params:xml:schema:resource-lists", id="iana-schema-urn"),
        pytest.param("resource-lists.xsd", id="bundled-file-name"),
    ],
)
def test_well_known_locations_resolve_to_bundled_files(location):
    document = etree.fromstring(_importing(location), schema_parser(), base_url=f"{SCHEMA_DIR}/driver.xsd")
    etree.XMLSchema(document)


def test_schema_parser_does_not_expand_entities():
    data = (
        b'<!DOCTYPE xs:schema [<!ENTITY e SYSTEM "file:///etc/hostname">]>'
        b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:annotation><xs:documentation>&e;'
        b"</xs:documentation></xs:annotation></xs:schema>"
    )
    root = etree.fromstring(data, schema_parser())
    assert b"&e;" in etree.tostring(root)
