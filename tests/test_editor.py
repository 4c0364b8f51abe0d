"""Byte-preserving element/attribute GET, PUT and DELETE (RFC 4825 §7, §8, §10)."""

import re

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from xcap_wsgi.editor import (
    ATTRIBUTE_MIME,
    ELEMENT_MIME,
    NAMESPACE_MIME,
    NodeBody,
    NodeNotFound,
    _Document,
    delete_node,
    get_node,
    put_node,
)
from xcap_wsgi.errors import (
    CannotDelete,
    CannotInsert,
    NoParent,
    NotUTF8,
    NotXMLAttValue,
    NotXMLFrag,
)
from xcap_wsgi.selector import parse_node_selector

URL = "http://xcap.example.com/xcap-root/test/users/sip:joe@example.com/index"


def sel(text, namespaces=None, default=""):
    return parse_node_selector(text, namespaces or {}, default)


# -- RFC 4825 §8.2.3 insertion examples (table in xcap-rfc.md §1.6, [V] via OpenXCAP's tests) ----

RFC_DOC = b"""<?xml version="1.0" encoding="UTF-8"?>
<root>
  <el1 att="first"/>
  <el1 att="second"/>
  <!-- comment -->
  <el2 att="first"/>
</root>
"""
AFTER_LAST_EL1 = RFC_DOC.replace(b'<el1 att="second"/>', b'<el1 att="second"/><el1 att="third"/>')

INSERTIONS = [
    pytest.param('root/el1[@att="third"]', b'<el1 att="third"/>', AFTER_LAST_EL1, id="by-attr-after-last-el1"),
    pytest.param('root/el1[3][@att="third"]', b'<el1 att="third"/>', AFTER_LAST_EL1, id="by-pos-attr-after-last-el1"),
    pytest.param('root/*[3][@att="third"]', b'<el1 att="third"/>', AFTER_LAST_EL1, id="star-pos-attr-after-2nd-child"),
    pytest.param("root/el3", b'<el3 att="first"/>',
                 RFC_DOC.replace(b'<el2 att="first"/>', b'<el2 att="first"/><el3 att="first"/>'),
                 id="new-name-appended-last"),
    pytest.param('root/el2[@att="2"]', b'<el2 att="2"/>',
                 RFC_DOC.replace(b'<el2 att="first"/>', b'<el2 att="first"/><el2 att="2"/>'),
                 id="by-attr-after-existing-el2"),
    pytest.param('root/el2[2][@att="2"]', b'<el2 att="2"/>',
                 RFC_DOC.replace(b'<el2 att="first"/>', b'<el2 att="first"/><el2 att="2"/>'),
                 id="by-pos-attr-after-existing-el2"),
    pytest.param('root/*[2][@att="2"]', b'<el2 att="2"/>',
                 RFC_DOC.replace(b'<el1 att="first"/>', b'<el1 att="first"/><el2 att="2"/>'),
                 id="star-pos-2-after-first-child"),
    pytest.param('root/el2[1][@att="2"]', b'<el2 att="2"/>',
                 RFC_DOC.replace(b'<el2 att="first"/>', b'<el2 att="2"/><el2 att="first"/>'),
                 id="pos-1-before-existing-el2"),
    pytest.param('root/*[@att="2"]', b'<el1 att="2"/>',
                 RFC_DOC.replace(b'<el1 att="second"/>', b'<el1 att="second"/><el1 att="2"/>'),
                 id="star-attr-name-from-body"),
]


@pytest.mark.parametrize("selector, body, expected", INSERTIONS)
def test_rfc_insertion_examples(selector, body, expected):
    new, created = put_node(RFC_DOC, sel(selector), body, URL)
    assert created is True
    assert new == expected
    assert get_node(new, sel(selector)) == NodeBody(body, ELEMENT_MIME)  # GET(PUT(x)) == x


@pytest.mark.parametrize(
    "selector, body",
    [
        pytest.param('root/el1[4][@att="third"]', b'<el1 att="third"/>', id="position-unreachable"),
        pytest.param('root/el1[@att="third"]', b'<el1 att="fourth"/>', id="body-fails-attr-test"),
        pytest.param("root/el3", b"<el4/>", id="body-name-differs"),
        pytest.param("root/el1[0]", b"<el1/>", id="position-zero"),
        pytest.param("root/el1", b"<el1/>", id="selects-two-elements"),
        pytest.param('root/el1[1]', b'<el2 att="x"/>', id="replace-changes-name"),
        pytest.param('root/el1[@att="first"]', b'<el1 att="other"/>', id="replace-fails-attr-test"),
        pytest.param("other", b"<other/>", id="second-root"),
    ],
)
def test_rfc_cannot_insert(selector, body):
    with pytest.raises(CannotInsert):
        put_node(RFC_DOC, sel(selector), body, URL)


def test_replace_in_place_returns_created_false():
    new, created = put_node(RFC_DOC, sel("root/el1[2]"), b'<el1 att="x">  <k/>\n</el1>', URL)
    assert created is False
    assert new == RFC_DOC.replace(b'<el1 att="second"/>', b'<el1 att="x">  <k/>\n</el1>')


def test_replace_root_element():
    new, created = put_node(RFC_DOC, sel("root"), b"<root/>", URL)
    assert (new, created) == (b'<?xml version="1.0" encoding="UTF-8"?>\n<root/>\n', False)


# -- §7.5 positional DELETE (xcap-rfc.md §1.7, [V] RFC text quoted in M-rp) ---------------------


@pytest.mark.parametrize(
    "selector, removed",
    [
        pytest.param("root/el1[2]", b'<el1 att="second"/>', id="last-el1-by-position"),
        pytest.param("root/*[3]", b'<el2 att="first"/>', id="last-child-by-star-position"),
        pytest.param("root/el2", b'<el2 att="first"/>', id="by-name"),
        pytest.param('root/el1[@att="first"]', b'<el1 att="first"/>', id="by-attr"),
        pytest.param('root/el1[1][@att="first"]', b'<el1 att="first"/>', id="pos-attr-no-later-twin"),
    ],
)
def test_delete_allowed(selector, removed):
    assert delete_node(RFC_DOC, sel(selector)) == RFC_DOC.replace(removed, b"", 1)


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("root/el1[1]", id="not-the-last-el1"),
        pytest.param("root/*[1]", id="not-the-last-child"),
        pytest.param("root/*[2]", id="not-the-last-child-2"),
    ],
)
def test_delete_not_idempotent(selector):
    with pytest.raises(CannotDelete):
        delete_node(RFC_DOC, sel(selector))


def test_delete_pos_attr_with_later_twin_is_refused():
    doc = b'<r><e a="x"/><e a="x"/></r>'
    with pytest.raises(CannotDelete):
        delete_node(doc, sel('r/e[1][@a="x"]'))
    assert delete_node(doc, sel('r/e[2][@a="x"]')) == b'<r><e a="x"/></r>'


def test_delete_root_is_refused():
    with pytest.raises(CannotDelete):
        delete_node(RFC_DOC, sel("root"))


@pytest.mark.parametrize("selector", ["root/el3", "root/el1", "root/el1[3]", "other/el1", "root/el2/@nope"])
def test_delete_and_get_no_match_or_invalid(selector):
    with pytest.raises(NodeNotFound):
        delete_node(RFC_DOC, sel(selector))
    with pytest.raises(NodeNotFound):
        get_node(RFC_DOC, sel(selector))


# -- GET ------------------------------------------------------------------------------------------

NS_DOC = """<?xml version='1.0' encoding='UTF-8'?>
<!-- leading comment -->
<rl:resource-lists xmlns:rl="urn:ietf:params:xml:ns:resource-lists" xmlns:x="urn:x">\r
  <rl:list name='friends' >\r
    <rl:entry uri="sip:bob@example.com" x:tag = 'a&amp;b' ><rl:display-name>Bøb &lt;3</rl:display-name></rl:entry>\r
    <rl:entry\turi="sip:ann@example.com"\r
       /><![CDATA[ <rl:entry uri="fake"/> ]]><?pi <rl:entry>?>\r
  </rl:list>\r
</rl:resource-lists>\r
<!-- trailing -->""".encode()
RLNS = "urn:ietf:params:xml:ns:resource-lists"


def test_get_element_returns_exact_bytes_without_added_namespaces():
    got = get_node(NS_DOC, sel('resource-lists/list/entry[@uri="sip:bob@example.com"]', default=RLNS))
    assert got.mime_type == ELEMENT_MIME
    assert got.body == ("<rl:entry uri=\"sip:bob@example.com\" x:tag = 'a&amp;b' >"
                        "<rl:display-name>Bøb &lt;3</rl:display-name></rl:entry>").encode()
    got = get_node(NS_DOC, sel("resource-lists/list/entry[2]", default=RLNS))
    assert got.body == b'<rl:entry\turi="sip:ann@example.com"\r\n       />'


def test_get_attribute_returns_stored_attvalue():
    got = get_node(NS_DOC, sel("resource-lists/list/entry[1]/@y:tag", {"y": "urn:x"}, RLNS))
    assert got == NodeBody(b"a&amp;b", ATTRIBUTE_MIME)
    assert get_node(NS_DOC, sel("resource-lists/list/@name", default=RLNS)).body == b"friends"


def test_get_namespace_bindings_rfc_section_10():
    # RFC 4825 §10 selector [V]; the document is ours: <baz> is in namespace1 via a default.
    doc = b"""<foo xmlns="urn:test:default-namespace">
  <ns1:bar xmlns:ns1="urn:test:namespace1-uri" xmlns="urn:test:namespace1-uri">
    <baz/>
    <ns2:baz xmlns:ns2="urn:test:namespace2-uri"/>
  </ns1:bar>
</foo>"""
    selector = parse_node_selector(
        "df:foo/df2:bar/df2:baz/namespace::*",
        {"df": "urn:test:default-namespace", "df2": "urn:test:namespace1-uri"},
        "urn:unused",
    )
    got = get_node(doc, selector)
    assert got.mime_type == NAMESPACE_MIME
    assert got.body == b'<baz xmlns="urn:test:namespace1-uri" xmlns:ns1="urn:test:namespace1-uri"/>'
    element = etree.fromstring(got.body)  # well-formed, same prefix and local name
    assert element.prefix is None and element.tag == "{urn:test:namespace1-uri}baz"


def test_get_namespace_bindings_keeps_the_prefix():
    got = get_node(NS_DOC, sel("resource-lists/list/namespace::*", default=RLNS))
    assert got.body == b'<rl:list xmlns:rl="urn:ietf:params:xml:ns:resource-lists" xmlns:x="urn:x"/>'


# -- byte preservation ----------------------------------------------------------------------------


def assert_only_span_changed(old, new, start, old_len, inserted):
    assert new[:start] == old[:start]
    assert new[start : start + len(inserted)] == inserted
    assert new[start + len(inserted) :] == old[start + old_len :]


def test_put_element_preserves_every_other_byte():
    selector = sel('resource-lists/list/entry[@uri="sip:bob@example.com"]', default=RLNS)
    body = '<rl:entry uri="sip:bob@example.com"\t><rl:display-name>Bøbby</rl:display-name></rl:entry>'.encode()
    old = get_node(NS_DOC, selector).body
    new, created = put_node(NS_DOC, selector, body, URL)
    assert created is False
    assert_only_span_changed(NS_DOC, new, NS_DOC.index(old), len(old), body)
    assert get_node(new, selector).body == body


# [R] xcap-rfc.md §1.4: an element body may use prefixes bound in the document at the insertion point.
def test_put_element_create_uses_prefix_bound_at_insertion_point():
    selector = sel('resource-lists/list/entry[@uri="sip:cy@example.com"]', default=RLNS)
    body = b'  \r\n<rl:entry uri="sip:cy@example.com" x:k="1"/>\n'  # surrounding white space is dropped
    new, created = put_node(NS_DOC, selector, body, URL)
    assert created is True
    anchor = NS_DOC.index(b"/><![CDATA[") + 2  # directly after the last <rl:entry .../>
    assert_only_span_changed(NS_DOC, new, anchor, 0, body.strip())


def test_put_element_body_prefixes_follow_each_documents_bindings():
    """The wrapper declaring the bindings in scope is remembered per set of bindings
    (editor._fragment_start): a prefix one document binds must not leak into the next."""
    binds = b'<r xmlns:p="urn:a"><x/></r>'
    unbound = b"<r><x/></r>"
    other = b'<r xmlns:p="urn:b"><p:y/></r>'
    body = b"<p:y/>"
    assert put_node(binds, sel("r/*[2]"), body, URL) == (b'<r xmlns:p="urn:a"><x/><p:y/></r>', True)
    with pytest.raises(NotXMLFrag):  # p is not bound where the element would go
        put_node(unbound, sel("r/*[2]"), body, URL)
    assert put_node(other, sel("r/*[2]"), body, URL) == (b'<r xmlns:p="urn:b"><p:y/><p:y/></r>', True)
    assert put_node(binds, sel("r/*[2]"), body, URL)[0] == b'<r xmlns:p="urn:a"><x/><p:y/></r>'


def test_put_element_body_with_xml_declaration_and_bom():
    body = b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\n<el3/>'
    new, _ = put_node(RFC_DOC, sel("root/el3"), body, URL)
    assert get_node(new, sel("root/el3")).body == b"<el3/>"


def test_delete_element_preserves_surrounding_whitespace_and_crlf():
    selector = sel("resource-lists/list/entry[2]", default=RLNS)
    old = get_node(NS_DOC, selector).body
    new = delete_node(NS_DOC, selector)
    assert_only_span_changed(NS_DOC, new, NS_DOC.index(old), len(old), b"")


def test_put_into_empty_element_tag_and_text_only_element():
    doc = b"<r>\n <p a='1' />\n <q>text<!--c--></q>\n</r>"
    new, created = put_node(doc, sel("r/p/c"), b"<c/>", URL)
    assert (new, created) == (b"<r>\n <p a='1' ><c/></p>\n <q>text<!--c--></q>\n</r>", True)
    new, _ = put_node(doc, sel("r/q/c"), b"<c/>", URL)
    assert new == b"<r>\n <p a='1' />\n <q>text<!--c--><c/></q>\n</r>"
    new, _ = put_node(doc, sel("r/q[1]/*[1]"), b"<c/>", URL)
    assert new == b"<r>\n <p a='1' />\n <q>text<!--c--><c/></q>\n</r>"


# -- attributes -----------------------------------------------------------------------------------


def test_put_attribute_replace_keeps_quote_style():
    selector = sel("resource-lists/list/@name", default=RLNS)
    new, created = put_node(NS_DOC, selector, b"best &amp; friends", URL)
    assert created is False
    assert new == NS_DOC.replace(b"name='friends'", b"name='best &amp; friends'")
    assert get_node(new, selector).body == b"best &amp; friends"


def test_put_attribute_switches_quotes_only_when_needed():
    selector = sel("resource-lists/list/@name", default=RLNS)
    new, _ = put_node(NS_DOC, selector, b"joe's", URL)
    assert b'name="joe\'s"' in new
    new, _ = put_node(NS_DOC, selector, b"a\"b'c", URL)
    assert b"name='a\"b&apos;c'" in new
    assert etree.fromstring(new)[0].get("name") == "a\"b'c"


def test_put_attribute_create_after_last_attribute():
    doc = b"<r>\n <e a='1'  /><f/></r>"
    new, created = put_node(doc, sel("r/e/@b"), b"2", URL)
    assert (new, created) == (b"<r>\n <e a='1' b=\"2\"  /><f/></r>", True)
    new, _ = put_node(doc, sel("r/f/@b"), b"2", URL)
    assert new == b"<r>\n <e a='1'  /><f b=\"2\"/></r>"


def test_put_attribute_create_namespaced():
    doc = b'<r xmlns:x="urn:x"><e/></r>'
    new, _ = put_node(doc, sel("r/e/@y:a", {"y": "urn:x"}), b"1", URL)
    assert new == b'<r xmlns:x="urn:x"><e x:a="1"/></r>'  # the document's own prefix is reused
    new, _ = put_node(doc, sel("r/e/@y:a", {"y": "urn:y"}), b"1", URL)
    assert new == b'<r xmlns:x="urn:x"><e xmlns:y="urn:y" y:a="1"/></r>'
    assert etree.fromstring(new)[0].get("{urn:y}a") == "1"


def test_put_attribute_that_the_selector_tests_is_cannot_insert():
    with pytest.raises(CannotInsert):
        put_node(RFC_DOC, sel('root/el1[@att="first"]/@att'), b"changed", URL)
    new, _ = put_node(RFC_DOC, sel('root/el1[@att="first"]/@att'), b"first", URL)
    assert new == RFC_DOC


# [R] xcap-rfc.md §1.4: an attribute body must be AttValue content, else not-xml-att-value.
@pytest.mark.parametrize("body", [b"a<b", b"a&b", b"&nbsp;", b"&#0;", b"a\x01b", b"&#x;"])
def test_put_attribute_not_xml_att_value(body):
    with pytest.raises(NotXMLAttValue):
        put_node(RFC_DOC, sel("root/el2/@att"), body, URL)


def test_delete_attribute_removes_it_with_leading_space():
    doc = b"<r><e a=\"1\"\n  b = '2'/></r>"
    assert delete_node(doc, sel("r/e/@b")) == b'<r><e a="1"/></r>'
    assert delete_node(doc, sel("r/e/@a")) == b"<r><e\n  b = '2'/></r>"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"  ", b"text", b"<a/><b/>", b"<a>", b"<!-- c --><el3/>", b"<el3/>tail", b"<el3/><?pi?>",
     b"<el3>&undefined;</el3>", b"<!DOCTYPE el3><el3/>", b"<p:el3/>", b"</root><root>"],
)
def test_put_element_not_xml_frag(body):
    with pytest.raises(NotXMLFrag):
        put_node(RFC_DOC, sel("root/el3"), body, URL)


def test_put_element_not_utf8():
    with pytest.raises(NotUTF8):
        put_node(RFC_DOC, sel("root/el3"), "<el3>é</el3>".encode("latin-1"), URL)


# [V] xcap-error.xsd: <ancestor> is the HTTP URI of the closest existing ancestor. Using the
# longest unique prefix of the parent's steps (with its xmlns() query) is our reading of it.
@pytest.mark.parametrize(
    "selector, namespaces, ancestor",
    [
        ("root/el3/x", {}, URL + "/~~/root"),
        ("root/el1/x", {}, URL + "/~~/root"),  # parent invalid (two el1)
        ('root/el1[@att="second"]/a/b', {}, URL + "/~~/root/el1%5B@att=%22second%22%5D"),
        ("other/el1/x", {}, URL),
    ],
)
def test_put_no_parent_names_closest_ancestor(selector, namespaces, ancestor):
    with pytest.raises(NoParent) as info:
        put_node(RFC_DOC, sel(selector, namespaces), b"<x/>", URL)
    assert info.value.ancestor == ancestor


def test_no_parent_ancestor_carries_xmlns_query():
    doc = b'<r xmlns="urn:r"><l xmlns="urn:l"/></r>'
    selector = sel("a:r/b:l/b:m/b:n", {"a": "urn:r", "b": "urn:l"})
    with pytest.raises(NoParent) as info:
        put_node(doc, selector, b"<n/>", URL)
    assert info.value.ancestor == URL + "/~~/a:r/b:l?xmlns(a=urn:r)xmlns(b=urn:l)"


def test_put_attribute_no_parent():
    with pytest.raises(NoParent) as info:
        put_node(RFC_DOC, sel("root/el9/@att"), b"v", URL)
    assert info.value.ancestor == URL + "/~~/root"


# -- the span scanner -----------------------------------------------------------------------------


def reference_spans(data):
    """A slow, obvious tokenizer: (start, end) of every element in document order."""
    token = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|</[^>]*>|<(?:[^>\"']|\"[^\"]*\"|'[^']*')*>", re.S)
    spans, stack = [], []
    for match in token.finditer(data):
        text = match.group(0)
        if text.startswith((b"<!", b"<?")):
            continue
        if text.startswith(b"</"):
            index = stack.pop()
            spans[index] = (spans[index][0], match.end())
        else:
            spans.append((match.start(), match.end()))
            if not text.endswith(b"/>"):
                stack.append(len(spans) - 1)
    return spans


@pytest.mark.parametrize("data", [RFC_DOC, NS_DOC, b"<a><b><c/><d>x</d></b><e/></a>",
                                  b"<a x='>'><b y=\"--&gt;/>\"/><!-- <c> --><![CDATA[</a>]]><?p <b/>?></a><!--z-->"])
def test_spans_match_reference_tokenizer(data):
    doc = _Document(data)
    assert [doc.span(e) for e in doc.root.iter(etree.Element)] == reference_spans(data)


def long_document() -> bytes:
    """Over 4,096 elements, some nested 250 deep, with comments, CDATA and PIs between them: the
    scanner skips tags in runs of 4096 and base-16 digits of 256, 16 and 1 (editor._skip)."""
    parts = [b"<r>"]
    for i in range(4400):
        parts.append(b'<e i="%d">' % i + (b"<f/><!-- <g> -->" if i % 3 == 0 else b"<![CDATA[</e>]]>"))
        if i in (17, 2000):
            parts.append(b"<n>" * 250 + b"<?p?>" + b"</n>" * 250)
        parts.append(b"</e>\n")
    return b"".join(parts) + b"</r>"


def test_spans_match_reference_tokenizer_past_every_skip_size():
    data = long_document()
    doc = _Document(data)
    elements, expected = list(doc.root.iter(etree.Element)), reference_spans(data)
    near = {n + d for n in (16, 256, 4096, 4096 + 256 + 16, len(elements) - 1) for d in range(-3, 4)}
    sample = sorted(i for i in near | set(range(0, len(elements), 61)) | set(range(300)) if i < len(elements))
    assert [doc.span(elements[i]) for i in sample] == [expected[i] for i in sample]


def test_huge_position_put_is_cannot_insert():
    with pytest.raises(CannotInsert):
        put_node(RFC_DOC, sel("root/el1[99999999999999999999999]"), b"<el1/>", URL)


def test_xmlns_is_not_an_attribute():
    doc = b'<r xmlns="urn:r"/>'
    with pytest.raises(NodeNotFound):
        get_node(doc, sel("r/@xmlns", default="urn:r"))
    with pytest.raises(CannotInsert):
        put_node(doc, sel("r/@xmlns", default="urn:r"), b"urn:other", URL)


# -- the span scanner on hand-written markup (hypothesis) ------------------------------------------

SPACE = st.sampled_from([" ", "\t", "\r\n", "  \n "])
OPT_SPACE = st.sampled_from(["", " ", "\n"])
NAMES = st.sampled_from(["a", "b", "x:c", "dé"])
VALUES = st.sampled_from(["", ">", "/>", "a&amp;b", "&lt;x&gt;", "é", "--"])
MISC = st.sampled_from(["<!-- <a> -->", "<!---->", "<?p <b/>?>", "<![CDATA[</a><b>]]>", "t", "&lt;", "é", "\r\n", " "])


@st.composite
def raw_elements(draw, depth=0):
    name = draw(NAMES)
    attributes = ' xmlns:x="urn:x"' if depth == 0 else ""
    for attribute in draw(st.lists(st.sampled_from(["k", "x:k", "l"]), max_size=3, unique=True)):
        quote = draw(st.sampled_from(['"', "'"]))
        value = draw(VALUES)
        attributes += f"{draw(SPACE)}{attribute}{draw(OPT_SPACE)}={draw(OPT_SPACE)}{quote}{value}{quote}"
    if depth >= 3 or draw(st.integers(0, 3)) == 0:
        return f"<{name}{attributes}{draw(OPT_SPACE)}/>"
    content = "".join(draw(st.lists(st.one_of(MISC, raw_elements(depth + 1)), max_size=4)))
    return f"<{name}{attributes}{draw(OPT_SPACE)}>{content}</{name}{draw(OPT_SPACE)}>"


@st.composite
def raw_documents(draw):
    root = draw(raw_elements())
    prolog = draw(st.sampled_from(["", "<?xml version='1.0' encoding='UTF-8'?>\r\n", '<?xml version="1.0"?>',
                                   "<!-- c -->\n", "\ufeff"]))
    epilog = draw(st.sampled_from(["", "\n", "<!-- e --><?p?>\r\n"]))
    return (prolog + root + epilog).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(raw_documents())
def test_spans_on_generated_markup(data):
    doc = _Document(data)
    assert [doc.span(e) for e in doc.root.iter(etree.Element)] == reference_spans(data)


@settings(max_examples=300, deadline=None)
@given(raw_documents(), st.data())
def test_delete_and_replace_preserve_every_other_byte(data, draw):
    tree = etree.fromstring(data).getroottree()
    elements = list(tree.getroot().iter(etree.Element))
    element = draw.draw(st.sampled_from(elements))
    steps = []
    node = element
    while node is not None:
        qname = etree.QName(node)
        prefix = "y:" if qname.namespace else ""
        parent = node.getparent()
        position = 1 if parent is None else list(parent.iterchildren(tag=node.tag)).index(node) + 1
        steps.append(f"{prefix}{qname.localname}[{position}]")
        node = parent
    selector = sel("/".join(reversed(steps)), {"y": "urn:x"})
    start, end = reference_spans(data)[elements.index(element)]
    assert get_node(data, selector).body == data[start:end]
    qname = ("x:" if "}" in element.tag else "") + etree.QName(element).localname
    declaration = ' xmlns:x="urn:x"' if element.getparent() is None else ""  # the root has no context
    new, created = put_node(data, selector, f"<{qname}{declaration}/>".encode(), URL)
    assert created is False and new[:start] == data[:start] and new[len(new) - (len(data) - end):] == data[end:]
    if element.getparent() is not None:
        try:
            new = delete_node(data, selector)
        except CannotDelete:
            assert any(s.tag == element.tag for s in element.itersiblings())
        else:
            assert new == data[:start] + data[end:]
    for name in ("k", "y:k"):
        attribute_selector = sel("/".join(reversed(steps)) + "/@" + name, {"y": "urn:x"})
        new, created = put_node(data, attribute_selector, b"v&amp;'", URL)
        assert get_node(new, attribute_selector).body in (b"v&amp;'", b"v&amp;&apos;")
        assert new[:start] == data[:start]
        delete = delete_node(new, attribute_selector)
        if created:
            assert delete == data  # add then remove gives back the very same bytes


def test_no_parent_is_checked_before_the_body():
    with pytest.raises(NoParent):
        put_node(RFC_DOC, sel("root/el9/x"), b"not xml", URL)
    with pytest.raises(NoParent):
        put_node(RFC_DOC, sel("root/el9/@x"), b"<", URL)


# -- a replaced element's tree (editor._replaced_in_tree) ----------------------------------------

_RL = "urn:ietf:params:xml:ns:resource-lists"
_REPLACEMENTS = [
    # the same namespace bound as the default and to a prefix: which one the new element uses
    (f'<resource-lists xmlns="{_RL}" xmlns:rl="{_RL}"><list name="a"><entry uri="x"/></list></resource-lists>',
     'resource-lists/list[@name="a"]/entry[@uri="x"]', '<entry uri="x"><display-name>X</display-name></entry>'),
    (f'<rl:resource-lists xmlns:rl="{_RL}" xmlns="{_RL}"><rl:list name="a"><entry uri="x"/></rl:list>'
     '</rl:resource-lists>', 'resource-lists/list[@name="a"]/entry[@uri="x"]', '<rl:entry uri="x"/>'),
    # comments, text around the element, CDATA, a namespace of the body's own, a prefixed attribute
    (f'<resource-lists xmlns="{_RL}"><list name="a">\n  <!-- c -->\n  <entry uri="x"/>\n  tail\n</list>'
     '</resource-lists>', 'resource-lists/list[@name="a"]/entry[@uri="x"]',
     '<entry xmlns:foo="urn:foo" uri="x" foo:bar="1"><![CDATA[ <x> ]]><foo:e/></entry>'),
    # a redundant default namespace declaration and character references
    (f'<resource-lists xmlns="{_RL}"><list name="a"><entry uri="x"/>\r\n</list></resource-lists>',
     'resource-lists/list[@name="a"]/entry[1]', f'<entry xmlns="{_RL}" uri="x">&#x0D;&amp;\r\n</entry>'),
    # a whole sub-list, and a body that undeclares the default namespace below itself
    (f'<resource-lists xmlns="{_RL}"><list name="a"><list name="b"><entry uri="y"/></list>text</list>'
     '</resource-lists>', 'resource-lists/list[@name="a"]/list[@name="b"]',
     '<list name="b"><entry uri="z"/><x xmlns=""><y/></x><entry uri="w"/></list>'),
    # another namespace that binds a prefix the document uses for something else below
    (f'<resource-lists xmlns="{_RL}" xmlns:p="urn:one"><list name="a" xmlns:p="urn:two"><entry uri="x"/>'
     '</list></resource-lists>', 'resource-lists/list[@name="a"]/entry[@uri="x"]',
     '<entry uri="x" p:a="1"><p:q xmlns:p="urn:three"/></entry>'),
]


def _nodes(tree):
    return [(node.tag, node.text, node.tail, dict(node.attrib), node.nsmap) if isinstance(node.tag, str)
            else (node.tag, node.text, node.tail) for node in tree.iter()]


@pytest.mark.parametrize("document, selector, body", _REPLACEMENTS)
def test_a_replaced_elements_tree_is_what_parsing_the_result_gives(document, selector, body):
    # The editor edits the stored tree instead of parsing its result: elements, attributes, text
    # and in-scope namespaces must be exactly those a parse of the new bytes gives.
    from xcap_wsgi import editor

    data = document.encode()
    stored_root = editor.document_of(data).root
    new, created = put_node(data, sel(selector, {"rl": _RL}, _RL), body.encode(), URL)
    assert not created
    edited = editor.parsed_tree(new)
    assert edited.getroot() is stored_root  # the stored tree, edited: no second parse
    fresh = etree.fromstring(new).getroottree()
    assert _nodes(edited) == _nodes(fresh)
    assert etree.tostring(edited, method="c14n") == etree.tostring(fresh, method="c14n")
    assert editor.document_of(data).root is not stored_root  # the stored bytes are parsed again


def test_the_root_element_is_replaced_through_a_parse_of_the_result():
    from xcap_wsgi import editor

    data = f'<resource-lists xmlns="{_RL}"><list/></resource-lists>'.encode()
    stored_root = editor.document_of(data).root
    new, _ = put_node(data, sel("resource-lists", {}, _RL), f'<resource-lists xmlns="{_RL}"/>'.encode(), URL)
    assert editor.parsed_tree(new).getroot() is not stored_root
    assert new == f'<resource-lists xmlns="{_RL}"/>'.encode()
