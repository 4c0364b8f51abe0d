"""Schema validation as the usages run it (RFC 4825 §8.2.5, §5.8): every namespace a usage
advertises in xcap-caps is validated, others pass through lax wildcards; validation can be
switched off per AUID; phrases say what is wrong; it is fast and thread-safe."""

from __future__ import annotations

import threading

import pytest
from lxml import etree

from xcap_wsgi.errors import SchemaValidationError
from xcap_wsgi.schemas import NAMESPACE_SCHEMAS, load_schemas, target_namespace
from xcap_wsgi.usages import ApplicationUsage, ValidationContext, default_registry
from xcap_wsgi.validation import (  # noqa: E402
    AUID_SCHEMA_SETS,
    CIPID,
    CP,
    DM,
    MAX_PHRASE,
    OCP,
    OPR,
    PIDF,
    PR,
    PRC,
    RL,
    RLS,
    RPID,
    SCHEMA_SETS,
    SchemaValidator,
    schema_namespaces,
    schema_validation_enabled,
    schema_validator,
    validate,
    with_schema_validation,
    without_schema_validation,
)

RESOURCE_LISTS = f'<resource-lists xmlns="{RL}"><list name="l"><entry uri="sip:a@example.com"/></list></resource-lists>'
RLS_SERVICES = (
    f'<rls-services xmlns="{RLS}" xmlns:rl="{RL}"><service uri="sip:l@example.com">'
    '<list><rl:entry uri="sip:a@example.com"/></list><packages><package>presence</package></packages>'
    "</service></rls-services>"
)
PRES_RULES = (
    f'<cp:ruleset xmlns:cp="{CP}" xmlns:pr="{PR}" xmlns:ocp="{OCP}" xmlns:op="{OPR}"><cp:rule id="a">'
    '<cp:conditions><cp:identity><cp:one id="sip:b@example.com"/></cp:identity>'
    '<ocp:external-list><ocp:entry anc="http://x/resource-lists/users/sip:a@x/index"/></ocp:external-list></cp:conditions>'
    "<cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions>"
    "<cp:transformations><op:provide-willingness>true</op:provide-willingness></cp:transformations>"
    "</cp:rule></cp:ruleset>"
)
PIDF_DOC = (
    f'<presence xmlns="{PIDF}" xmlns:dm="{DM}" xmlns:rpid="{RPID}" xmlns:cipid="{CIPID}" entity="sip:a@example.com">'
    '<tuple id="t"><status><basic>open</basic></status></tuple>'
    '<dm:person id="p"><rpid:activities><rpid:away/></rpid:activities>'
    "<cipid:homepage>http://a.example.com/</cipid:homepage></dm:person></presence>"
)
PRES_CONTENT = f'<content xmlns="{PRC}"><mime-type>image/png</mime-type><data>AAAA</data></content>'


def _break(document: str, old: str, new: str) -> str:
    assert old in document, old
    return document.replace(old, new, 1)


#: For every namespace a shipped usage advertises: a valid document, the same document with an
#: element of that namespace broken, and the schema set(s) that do *not* load that namespace
#: (with them the broken document passes: the wildcard is lax, so only loading the namespace's
#: schema makes the server validate it). None where the namespace is the document's own.
ADVERTISED_NAMESPACE_PROBES = {
    ("resource-lists", RL): (RESOURCE_LISTS, _break(RESOURCE_LISTS, ' uri="sip:a@example.com"', ""), None),
    ("rls-services", RLS): (RLS_SERVICES, _break(RLS_SERVICES, ' uri="sip:l@example.com"', ""), None),
    ("rls-services", RL): (RLS_SERVICES, _break(RLS_SERVICES, ' uri="sip:a@example.com"', ""), None),
    ("pres-rules", CP): (PRES_RULES, _break(PRES_RULES, ' id="a"', ""), None),
    ("pres-rules", PR): (PRES_RULES, _break(PRES_RULES, ">allow<", ">maybe<"), ("common-policy",)),
    ("org.openmobilealliance.pres-rules", CP): (PRES_RULES, _break(PRES_RULES, ' id="a"', ""), None),
    ("org.openmobilealliance.pres-rules", PR): (PRES_RULES, _break(PRES_RULES, ">allow<", ">maybe<"), ("common-policy",)),
    ("org.openmobilealliance.pres-rules", OCP): (
        PRES_RULES, _break(PRES_RULES, '<ocp:external-list>', '<ocp:external-list><ocp:entry>text</ocp:entry>'),
        ("common-policy", "pres-rules"),
    ),
    ("org.openmobilealliance.pres-rules", OPR): (
        PRES_RULES, _break(PRES_RULES, ">true<", ">perhaps<"), ("common-policy", "pres-rules", "oma-common-policy"),
    ),
    ("pidf-manipulation", PIDF): (PIDF_DOC, _break(PIDF_DOC, "<basic>open</basic>", "<basic>online</basic>"), None),
    ("pidf-manipulation", DM): (PIDF_DOC, _break(PIDF_DOC, '<dm:person id="p">', "<dm:person>"), ("pidf",)),
    ("pidf-manipulation", RPID): (PIDF_DOC, _break(PIDF_DOC, "<rpid:away/>", "<rpid:away>now</rpid:away>"), ("pidf", "data-model")),
    ("pidf-manipulation", CIPID): (
        PIDF_DOC, _break(PIDF_DOC, "http://a.example.com/</cipid:homepage>", "<a/></cipid:homepage>"),
        ("pidf", "data-model", "rpid"),
    ),
    ("org.openmobilealliance.pres-content", PRC): (PRES_CONTENT, _break(PRES_CONTENT, "<data>AAAA</data>", ""), None),
}


def _tree(document: str) -> etree._ElementTree:
    return etree.fromstring(document.encode()).getroottree()


def _run(usage: ApplicationUsage, document: str) -> None:
    """Run the usage's schema validation hook(s) as the engine does (other constraints aside)."""
    data = document.encode()
    context = ValidationContext(uri=None, usage=usage, content=data)
    for validator in usage.validators:
        if isinstance(validator, SchemaValidator):
            validator(etree.fromstring(data).getroottree(), context)


# -- the default usages ------------------------------------------------------------------------


@pytest.mark.parametrize("auid", sorted(set(AUID_SCHEMA_SETS) - {"xcap-caps", "org.openmobilealliance.xcap-directory"}))
def test_writable_default_usages_validate_against_their_schema_set(auid):
    usage = default_registry().get(auid)
    validators = [v for v in usage.validators if isinstance(v, SchemaValidator)]
    assert validators == [schema_validator(AUID_SCHEMA_SETS[auid])]


@pytest.mark.parametrize("usage", list(default_registry()), ids=lambda usage: usage.auid)
def test_usages_advertise_exactly_the_namespaces_whose_schemas_they_load(usage):
    if usage.auid in AUID_SCHEMA_SETS:  # validated, or computed by the server (xcap-caps, directory)
        assert usage.namespaces == schema_namespaces(AUID_SCHEMA_SETS[usage.auid])
    else:  # user-profile: no bundled schema, so nothing is claimed
        assert usage.namespaces == ()


@pytest.mark.parametrize("name", sorted(SCHEMA_SETS))
def test_each_schema_set_namespace_is_the_target_namespace_of_its_file(name):
    schema_set = SCHEMA_SETS[name]
    assert tuple(target_namespace(file) for file in schema_set.schemas) == schema_set.namespaces
    assert all(NAMESPACE_SCHEMAS[ns] == file for ns, file in zip(schema_set.namespaces, schema_set.schemas, strict=True))


def test_every_advertised_namespace_has_a_probe():
    advertised = {(u.auid, ns) for u in default_registry() if schema_validation_enabled(u) for ns in u.namespaces}
    assert advertised == set(ADVERTISED_NAMESPACE_PROBES)


@pytest.mark.parametrize("auid, namespace", sorted(ADVERTISED_NAMESPACE_PROBES), ids=lambda v: v.rsplit(":", 1)[-1])
def test_advertised_namespace_is_validated_where_it_appears(auid, namespace):
    valid, broken, without = ADVERTISED_NAMESPACE_PROBES[(auid, namespace)]
    usage = default_registry().get(auid)
    _run(usage, valid)
    with pytest.raises(SchemaValidationError):
        _run(usage, broken)
    if without is not None:  # the same element passes a schema that does not load its namespace
        assert load_schemas(without).validate(_tree(broken))


@pytest.mark.parametrize(
    "auid, document",
    [
        pytest.param("resource-lists", _break(RESOURCE_LISTS, "<entry ", '<entry xmlns:x="urn:x" x:ext="1" ') .replace(
            "</entry>", "").replace('"/></list>', '"><x:rating stars="5"><x:anything/></x:rating></entry></list>'),
            id="resource-lists-vendor-element-and-attribute"),
        pytest.param("pres-rules", _break(PRES_RULES, "<op:provide-willingness>true", "<op:provide-willingness>perhaps"),
                     id="pres-rules-oma-elements-not-advertised"),
        pytest.param("pidf-manipulation", _break(PIDF_DOC, "<rpid:activities>",
                                                 '<caps:servcaps xmlns:caps="urn:ietf:params:xml:ns:pidf:caps">'
                                                 "<caps:audio>maybe</caps:audio><caps:bogus/></caps:servcaps><rpid:activities>"),
                     id="pidf-caps-not-advertised"),
        pytest.param("org.openmobilealliance.pres-content", _break(PRES_CONTENT, "</data>", '</data><v:x xmlns:v="urn:v"/>'),
                     id="pres-content-vendor-element"),
    ],
)
def test_unadvertised_namespaces_pass_where_the_schema_has_a_wildcard(auid, document):
    _run(default_registry().get(auid), document)


def test_user_profile_is_not_schema_validated():
    usage = default_registry().get("org.openmobilealliance.user-profile")
    _run(usage, '<user-profile xmlns="urn:oma:xml:xdm:user-profile"><anything/></user-profile>')


@pytest.mark.parametrize(
    "auid, document",
    [
        pytest.param("pidf-manipulation", _break(PIDF_DOC, "<rpid:activities>", "<rpid:dancing/><rpid:activities>"),
                     id="rpid-name-in-person"),
        pytest.param("pidf-manipulation", _break(PIDF_DOC, "<tuple", "<!-- xmlns='urn:x' --><tuple").replace(
            "<rpid:activities>", "<rpid:dancing/><rpid:activities>"), id="rpid-name-with-xmlns-in-a-comment"),
        pytest.param("pres-rules", _break(PRES_RULES, "<op:provide-willingness>", "<pr:provide-teleport>x</pr:provide-teleport>"
                                          "<op:provide-willingness>"), id="pr-name-in-transformations"),
    ],
)
def test_lax_wildcards_skip_undeclared_names_of_advertised_namespaces(auid, document):
    """Issue 15: XML Schema's lax skips an element no schema declares, whatever its namespace; the
    server used to refuse undeclared names of the IETF namespaces (a stricter rule of its own)."""
    _run(default_registry().get(auid), document)


def test_declared_names_inside_lax_wildcards_are_still_validated():
    document = _break(PIDF_DOC, "<rpid:activities>", "<rpid:mood/><rpid:activities>")  # empty mood: RFC 4480 says no
    with pytest.raises(SchemaValidationError, match="rpid:mood"):
        _run(default_registry().get("pidf-manipulation"), document)


# -- switching validation off per AUID -----------------------------------------------------------

BROKEN_RESOURCE_LISTS = _break(RESOURCE_LISTS, ' uri="sip:a@example.com"', "")
BROKEN_PRES_RULES = _break(PRES_RULES, ">allow<", ">maybe<")


def test_with_schema_validation_keeps_only_the_listed_auids():
    registry = with_schema_validation(default_registry(), {"resource-lists"})
    with pytest.raises(SchemaValidationError):
        _run(registry.get("resource-lists"), BROKEN_RESOURCE_LISTS)
    _run(registry.get("pres-rules"), BROKEN_PRES_RULES)
    assert [u.auid for u in registry if schema_validation_enabled(u)] == ["resource-lists"]


def test_with_no_auids_nothing_is_schema_validated_and_caps_still_advertise_namespaces():
    original = default_registry()
    registry = with_schema_validation(original, ())
    assert not any(schema_validation_enabled(u) for u in registry)
    _run(registry.get("resource-lists"), BROKEN_RESOURCE_LISTS)
    assert [u.namespaces for u in registry] == [u.namespaces for u in original]


def test_with_none_every_usage_with_a_schema_set_validates_and_original_registry_is_untouched():
    original = with_schema_validation(default_registry(), ())
    registry = with_schema_validation(original, None)
    assert {u.auid for u in registry if schema_validation_enabled(u)} == set(AUID_SCHEMA_SETS) & {u.auid for u in registry}
    assert not any(schema_validation_enabled(u) for u in original)
    with pytest.raises(SchemaValidationError):
        _run(registry.get("pres-rules"), BROKEN_PRES_RULES)


def test_other_validators_survive_switching_schema_validation():
    calls = []
    registry = default_registry()
    usage = registry.get("resource-lists")
    registry.register(ApplicationUsage(**{**usage.__dict__, "validators": usage.validators + (lambda t, c: calls.append(1),)}))
    for enabled in ((), ("resource-lists",)):
        switched = with_schema_validation(registry, enabled)
        switched.get("resource-lists").validators[-1](None, None)
    assert calls == [1, 1]
    assert with_schema_validation(registry, ("resource-lists",)).get("resource-lists").validators == (
        registry.get("resource-lists").validators
    )


def test_without_schema_validation_switches_off_only_the_listed_auids():
    registry = without_schema_validation(default_registry(), ["pres-rules"])
    _run(registry.get("pres-rules"), BROKEN_PRES_RULES)
    with pytest.raises(SchemaValidationError):
        _run(registry.get("resource-lists"), BROKEN_RESOURCE_LISTS)
    with pytest.raises(SchemaValidationError):
        _run(registry.get("org.openmobilealliance.pres-rules"), BROKEN_PRES_RULES)


def test_a_custom_usage_keeps_its_own_schema_validator():
    registry = default_registry()
    base = registry.get("resource-lists")
    registry.register(ApplicationUsage(**{**base.__dict__, "auid": "com.example.lists"}))
    assert schema_validation_enabled(with_schema_validation(registry).get("com.example.lists"))
    assert not schema_validation_enabled(without_schema_validation(registry, ["com.example.lists"]).get("com.example.lists"))


@pytest.mark.parametrize("switch", [with_schema_validation, without_schema_validation])
def test_switching_an_auid_that_is_not_registered_is_an_error(switch):
    with pytest.raises(ValueError, match="resource-list\\b"):
        switch(default_registry(), ["resource-list"])


def test_enabling_an_auid_without_schema_is_an_error():
    with pytest.raises(ValueError, match="org.openmobilealliance.user-profile"):
        with_schema_validation(default_registry(), {"org.openmobilealliance.user-profile"})


def test_unknown_schema_set_is_an_error():
    with pytest.raises(ValueError, match="no-such-usage"):
        schema_validator("no-such-usage")


# -- phrases -----------------------------------------------------------------------------------


def test_phrase_uses_document_prefixes_path_and_line():
    document = f'<rl:resource-lists xmlns:rl="{RL}">\n<rl:list name="a"/>\n<rl:list>\n<rl:entry/>\n</rl:list>\n</rl:resource-lists>'
    with pytest.raises(SchemaValidationError) as caught:
        validate(_tree(document), "resource-lists")
    phrase = caught.value.phrase
    assert "rl:entry" in phrase and "'uri' is required" in phrase
    assert "/rl:resource-lists/rl:list[2]/rl:entry" in phrase and "line 4" in phrase
    assert "{" not in phrase  # no Clark notation


def test_phrase_for_a_document_built_in_memory_has_a_path_but_no_line():
    root = etree.Element(f"{{{RL}}}resource-lists", nsmap={None: RL})
    etree.SubElement(etree.SubElement(root, f"{{{RL}}}list"), f"{{{RL}}}entry")
    with pytest.raises(SchemaValidationError) as caught:
        validate(root.getroottree(), "resource-lists")
    assert "/resource-lists/list/entry" in caught.value.phrase
    assert "line" not in caught.value.phrase


def test_phrases_are_short():
    document = _break(PIDF_DOC, "<rpid:away/>", "<rpid:asleep/>")  # libxml2 lists 25 expected names
    with pytest.raises(SchemaValidationError) as caught:
        validate(_tree(document), "pidf-manipulation")
    assert "rpid:asleep" in caught.value.phrase
    assert len(caught.value.phrase) <= MAX_PHRASE


def test_phrase_uses_prefixes_declared_below_the_root():
    document = (
        f'<presence xmlns="{PIDF}" entity="sip:a@example.com"><d:person xmlns:d="{DM}" id="p">'
        f'<r:mood xmlns:r="{RPID}"><r:glum/></r:mood></d:person></presence>'
    )
    with pytest.raises(SchemaValidationError) as caught:
        validate(_tree(document), "pidf-manipulation")
    assert "Element 'r:glum'" in caught.value.phrase
    assert "/presence/d:person/r:mood/r:glum" in caught.value.phrase
    assert "{" not in caught.value.phrase


def test_xsi_schema_location_in_a_document_is_never_followed(tmp_path):
    """A client cannot make the server load a schema (file or URL) through xsi:schemaLocation."""
    (tmp_path / "x.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x" '
        'elementFormDefault="qualified"><xs:element name="foo" type="xs:integer"/></xs:schema>'
    )
    document = _break(
        RESOURCE_LISTS, "<list ",
        f'<list xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="urn:x {tmp_path / "x.xsd"} urn:y http://127.0.0.1:9/y.xsd" ',
    ).replace("</list>", '<x:foo xmlns:x="urn:x">not an integer</x:foo></list>')
    validate(_tree(document), "resource-lists")  # urn:x stays unknown, hence lax


def test_concurrent_validations_report_their_own_errors():
    documents = {
        f"sip:user{i}@example.com": _break(RESOURCE_LISTS, "<entry ", f'<entry uri="sip:user{i}@example.com"/><entry ')
        .replace(' uri="sip:a@example.com"', "")
        for i in range(8)
    }
    failures = []

    def work(uri, document):
        tree = _tree(document)
        for _ in range(40):
            try:
                validate(tree, "resource-lists")
                failures.append((uri, "accepted"))
            except SchemaValidationError as exc:
                if "entry[2]" not in exc.phrase:
                    failures.append((uri, exc.phrase))

    threads = [threading.Thread(target=work, args=item) for item in documents.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# -- speed -------------------------------------------------------------------------------------


def _big_resource_lists(size: int = 1 << 20) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n']
    total, group = 0, 0
    while total < size:
        chunk = (
            f'  <list name="group{group}">\n    <display-name xml:lang="en">Group {group}</display-name>\n'
            + "".join(
                f'    <entry uri="sip:user{group}-{n}@example.com"><display-name>User {group}-{n}</display-name></entry>\n'
                for n in range(20)
            )
            + "  </list>\n"
        )
        parts.append(chunk)
        total += len(chunk)
        group += 1
    parts.append("</resource-lists>\n")
    return "".join(parts).encode()


def test_a_one_mebibyte_resource_lists_validates():
    """Size is no reason to refuse a valid document (timing: benchmarks/bench_validation.py)."""
    data = _big_resource_lists()
    assert len(data) >= 1 << 20
    usage = default_registry().get("resource-lists")
    tree = etree.fromstring(data).getroottree()
    usage.validate(tree, ValidationContext(uri=None, usage=usage, content=data))
    broken = etree.fromstring(data.replace(b"<entry uri=", b"<entry urx=", 1)).getroottree()
    with pytest.raises(SchemaValidationError):
        usage.validate(broken, ValidationContext(uri=None, usage=usage, content=data))


def test_validators_of_different_sets_keep_their_own_compiled_schema():
    """Each SchemaValidator remembers its compiled schema and root tags: used in turns, each
    accepts only its own documents (the root check and the schema are per set, not shared)."""
    lists, rules = schema_validator("resource-lists"), schema_validator("oma-pres-rules")
    lists_doc = etree.fromstring(RESOURCE_LISTS).getroottree()
    rules_doc = etree.fromstring(PRES_RULES).getroottree()
    for _ in range(2):
        lists(lists_doc)
        rules(rules_doc)
        with pytest.raises(SchemaValidationError, match="must be <resource-lists>"):
            lists(rules_doc)
        with pytest.raises(SchemaValidationError, match="must be <ruleset>"):
            rules(lists_doc)
    unprefixed = etree.fromstring("<resource-lists/>").getroottree()  # no namespace: not the root either
    with pytest.raises(SchemaValidationError, match="not <resource-lists>"):
        lists(unprefixed)


def test_an_invalid_element_put_names_the_line_of_the_new_document(app):
    # The editor's tree of a replaced element keeps the stored document's line numbers
    # (editor._replaced_in_tree): the error must name the lines of the bytes that would be stored.
    from conftest import ALICE_DOC, call, put_doc

    document = (f'<resource-lists xmlns="{RL}">\n<list name="a">\n<entry uri="sip:a@x"/>\n</list>\n'
                '<list name="b">\n<entry uri="sip:b@x"/>\n</list>\n</resource-lists>').encode()
    assert put_doc(app, body=document).status_int == 201
    # two lines more before list "b" (the cached tree still has the old line numbers), then list
    # "b"'s entry, now on line 8, loses its uri
    replaced = call(app, "PUT", ALICE_DOC + "/~~/resource-lists/list%5B@name=%22a%22%5D",
                    b'<list name="a">\n\n\n<entry uri="sip:a@x"/>\n</list>',
                    **{"Content-Type": "application/xcap-el+xml"})
    assert replaced.status_int == 200
    broken = call(app, "PUT", ALICE_DOC + "/~~/resource-lists/list%5B@name=%22b%22%5D/entry",
                  b'<entry>\n<display-name>b</display-name>\n</entry>',
                  **{"Content-Type": "application/xcap-el+xml"})
    assert broken.status_int == 409 and b"schema-validation-error" in broken.body
    assert b"/resource-lists/list[2]/entry, line 8)" in broken.body, broken.body
