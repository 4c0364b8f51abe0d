"""Node-selector grammar and evaluation (RFC 4825 §6.3, §6.4).

The grammar and the match/no-match/invalid classes are marked [R] in xcap-rfc.md §1.3 (from
knowledge of the RFC, grammar corroborated by OpenXCAP's doctests); the assertions below rely
on them. "Only position 1 matches at the root" follows OpenXCAP (O-el). 400 for malformed
selectors and 404 for extension selectors are the recommendation of xcap-rfc.md §1.3.
"""

import pytest
from lxml import etree

from xcap_wsgi.selector import (
    SelectorSyntaxError,
    UnsupportedSelector,
    parse_node_selector,
    select,
)

RL = "urn:ietf:params:xml:ns:resource-lists"


def parse(text, namespaces=None, default=RL):
    return parse_node_selector(text, namespaces or {}, default)


# -- grammar ------------------------------------------------------------------------------------


def test_steps_positions_attribute_terminal():
    selector = parse('resource-lists/list[@name="friends"]/entry[2]/@uri')
    assert selector.kind == "attribute"
    assert selector.text == 'resource-lists/list[@name="friends"]/entry[2]/@uri'
    root, lst, entry = selector.steps
    assert root.tag == f"{{{RL}}}resource-lists" and root.position is None
    assert (lst.attr_name, lst.attr_value) == ("name", "friends")
    assert entry.position == 2 and entry.attr_name is None
    assert selector.attribute == "uri"  # unprefixed attribute: no namespace


def test_wildcard_and_position_then_attribute():
    (root, step) = parse("root/*[3][@att='third']").steps
    assert step.tag is None and step.position == 3
    assert (step.attr_name, step.attr_value) == ("att", "third")


def test_element_and_namespace_kinds():
    assert parse("a/b").kind == "element"
    assert parse("a/b/namespace::*").kind == "namespace"


@pytest.mark.parametrize(
    "text, value",
    [
        ('a/b[@x="sip:a@b"]', "sip:a@b"),
        ("a/b[@x='say \"hi\"']", 'say "hi"'),
        ('a/b[@x="say &quot;hi&quot;"]', 'say "hi"'),
        ('a/b[@x="&#34;&#x22;&apos;&lt;&gt;&amp;"]', "\"\"'<>&"),
        ('a/b[@x="http://example.com/x/y"]', "http://example.com/x/y"),  # '/' inside quotes
        ('a/b[@x="]["]', "]["),
        ('a/b[@x=""]', ""),
        ('a/b[@x="grüße"]', "grüße"),
    ],
    ids=["plain", "single-quotes", "quot-entity", "char-refs", "slash-in-value", "brackets-in-value",
         "empty", "non-ascii"],
)
def test_attribute_values(text, value):
    assert parse(text).steps[-1].attr_value == value


def test_prefixes_bound_only_by_xmlns_query():
    selector = parse("p:a/q:b[@q:c='1']/@p:d", {"p": "urn:p", "q": "urn:q"})
    assert [s.tag for s in selector.steps] == ["{urn:p}a", "{urn:q}b"]
    assert selector.steps[1].attr_name == "{urn:q}c"
    assert selector.attribute == "{urn:p}d"


def test_xml_prefix_is_always_bound():
    assert parse("a/@xml:lang").attribute == "{http://www.w3.org/XML/1998/namespace}lang"


def test_empty_default_namespace_means_no_namespace():
    assert parse("a/b", default="").steps[1].tag == "b"


@pytest.mark.parametrize(
    "text",
    [
        "", "/a", "a/", "a//b", "@a", "a/@b/c", "a/@", "a/@1x", "a/b[", "a/b[]", "a/b[x]", "a/b[-1]",
        "a/b[1", "a/b[@x]", "a/b[@x=1]", 'a/b[@x="1"', 'a/b[@x="1"][2]', 'a/b[@x = "1"]', "a/b[ 1 ]",
        'a/b[@x="<"]', 'a/b[@x="a&b"]', 'a/b[@x="&nbsp;"]', 'a/b[@x="&#0;"]', 'a/b[@x="&#xD800;"]',
        'a/b[@x="&#99999999999;"]', "a/b[1][2]", "a/namespace::*/b", "namespace::*", "p:a", "a/b[@p:x='1']",
        "a/@p:x", "xmlns:a", "a/b[1]x",
    ],
)
def test_syntax_errors(text):
    with pytest.raises(SelectorSyntaxError):
        parse(text)


@pytest.mark.parametrize("text", ["a/text()", "a/comment()", "a/..", "a/b/node()", "a/namespace::p", "a/.", "a/b c"])
def test_extension_selectors_are_unsupported(text):
    with pytest.raises(UnsupportedSelector):
        parse(text)


def test_uri_suffix_percent_encodes_and_adds_bindings():
    selector = parse('p:a/b[@x="v 1%/2"]/c', {"p": "urn:x(1)"})
    assert selector.uri_suffix(selector.steps[:2]) == (
        "/~~/p:a/b%5B@x=%22v%201%25/2%22%5D?xmlns(p=urn:x%5E(1%5E))"
    )
    assert selector.uri_suffix(selector.steps[1:2]) == "/~~/b%5B@x=%22v%201%25/2%22%5D"


# -- evaluation ---------------------------------------------------------------------------------

DOC = b"""<root xmlns="urn:d" xmlns:o="urn:o">
  <a n="1"/><!-- c --><?pi x?>text<a n="2"/><o:a n="3"/><b n="1"><a n="1"/></b><b n="2"/>
</root>"""


def names(elements):
    return [(etree.QName(e).localname, e.get("n")) for e in elements]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("root", [("root", None)]),
        ("root[1]", [("root", None)]),
        ("root[2]", []),  # at the root only position 1 can match
        ("*", [("root", None)]),
        ("other", []),
        ("root/a", [("a", "1"), ("a", "2")]),  # invalid: two elements
        ("root/a[2]", [("a", "2")]),  # comments, PIs and text are not counted
        ("root/o:a", [("a", "3")]),
        ("root/*[3]", [("a", "3")]),
        ("root/*[4][@n='1']", [("b", "1")]),
        ("root/*[4][@n='2']", []),  # position first, then the attribute test
        ("root/a[@n='2']", [("a", "2")]),
        ("root/*/a", [("a", "1")]),
        ("root/b/a", [("a", "1")]),
        ("root/a[0]", []),
    ],
)
def test_select(text, expected):
    root = etree.fromstring(DOC)
    selector = parse(text, {"o": "urn:o"}, default="urn:d")
    assert names(select(root, selector.steps)) == expected


def test_document_prefixes_do_not_bind_selector_prefixes():
    # The stored document binds "o", but only the query's xmlns() counts (§6.4).
    with pytest.raises(SelectorSyntaxError):
        parse("root/o:a", {}, default="urn:d")
    # ... and a query prefix bound to another URI does not match the document's o:a.
    root = etree.fromstring(DOC)
    assert select(root, parse("root/o:a", {"o": "urn:other"}, "urn:d").steps) == []


def test_unprefixed_names_use_the_default_document_namespace():
    root = etree.fromstring(b"<root><a/></root>")  # no namespace in the document
    assert select(root, parse("root/a", default="urn:d").steps) == []
    assert len(select(root, parse("root/a", default="").steps)) == 1


def test_attribute_value_compares_with_the_normalised_value():
    root = etree.fromstring(b'<r><e v="a&#9;b"/><e v="c\td"/></r>')
    assert len(select(root, parse('r/e[@v="a&#9;b"]', default="").steps)) == 1
    assert len(select(root, parse('r/e[@v="c d"]', default="").steps)) == 1  # tab became a space


def test_huge_position_selects_nothing():
    root = etree.fromstring(DOC)
    assert select(root, parse("root/a[99999999999999999999999]", default="urn:d").steps) == []


def test_position_with_thousands_of_digits_is_not_a_crash():
    selector = parse("a/b[" + "9" * 5000 + "]")
    assert select(etree.fromstring(b"<a xmlns='%s'><b/></a>" % RL.encode()), selector.steps) == []
