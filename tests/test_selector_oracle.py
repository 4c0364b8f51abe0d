"""Property tests: the selector engine agrees with an lxml XPath oracle, and hostile input
never raises anything but the documented exceptions."""

from hypothesis import HealthCheck, assume, given, settings, strategies as st
from lxml import etree

from xcap_wsgi import errors
from xcap_wsgi.editor import NodeNotFound, delete_node, get_node, put_node
from xcap_wsgi.selector import SelectorSyntaxError, UnsupportedSelector, parse_node_selector, select

NS1, NS2 = "urn:test:one", "urn:test:two"
#: The request's xmlns() bindings. The documents use other prefixes ("d", "e") or a default
#: namespace, so a match only happens through expanded names (RFC 4825 §6.4).
BINDINGS = {"p": NS1, "q": NS2}
NAMES = ["a", "b", "c"]
VALUES = ["1", "2", "a b", 'say "x"', "it's", "<&>"]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- documents ------------------------------------------------------------------------------------


@st.composite
def elements(draw, depth=0):
    namespace = draw(st.sampled_from([NS1, NS1, NS2]))
    element = etree.Element(f"{{{namespace}}}{draw(st.sampled_from(NAMES))}")
    for name in draw(st.lists(st.sampled_from(["x", "y", f"{{{NS2}}}x"]), max_size=2, unique=True)):
        element.set(name, draw(st.sampled_from(VALUES)))
    if depth < 3:
        for _ in range(draw(st.integers(0, 4 - depth))):
            kind = draw(st.sampled_from(["element", "element", "element", "comment", "text"]))
            if kind == "element":
                element.append(draw(elements(depth + 1)))
            elif kind == "comment":
                element.append(etree.Comment(" c "))
            elif len(element):
                element[-1].tail = "t"
    return element


@st.composite
def documents(draw):
    root = draw(elements())
    # Re-home the tree under document prefixes that differ from the selector's prefixes.
    default = draw(st.sampled_from([NS1, NS2, None]))
    nsmap = {None: default} if default else {}
    nsmap.update({"d": NS1, "e": NS2})
    holder = etree.Element(root.tag, nsmap=nsmap, attrib=dict(root.attrib))
    holder.extend(list(root))
    data = etree.tostring(holder, xml_declaration=draw(st.booleans()), encoding="UTF-8")
    return data


# -- selectors ------------------------------------------------------------------------------------


@st.composite
def steps(draw):
    """One step as (selector text, XPath text)."""
    prefix = draw(st.sampled_from(["", "p", "q"]))
    if draw(st.integers(0, 4)) == 0:
        text, xpath = "*", "*"
    else:
        name = draw(st.sampled_from(NAMES))
        text = f"{prefix}:{name}" if prefix else name
        xpath = f"{prefix or 'p'}:{name}"  # unprefixed: the default document namespace (NS1)
    if draw(st.booleans()):
        position = draw(st.integers(1, 3))
        text, xpath = text + f"[{position}]", xpath + f"[{position}]"
    if draw(st.booleans()):
        attribute = draw(st.sampled_from(["x", "y", "q:x"]))
        value = draw(st.sampled_from(VALUES))
        quote = draw(st.sampled_from(['"', "'"]))
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(quote, "&quot;" if quote == '"' else "&#39;")
        text += f"[@{attribute}={quote}{escaped}{quote}]"
        literal = f"'{value}'" if '"' in value else f'"{value}"'
        xpath += f"[@{attribute}={literal}]"
    return text, xpath


@st.composite
def selectors(draw):
    chosen = draw(st.lists(steps(), min_size=1, max_size=4))
    text = "/".join(t for t, _ in chosen)
    xpath = "/" + "/".join(x for _, x in chosen)
    return text, xpath


def parse(text):
    return parse_node_selector(text, BINDINGS, NS1)


# -- properties -----------------------------------------------------------------------------------


@SETTINGS
@given(documents(), selectors())
def test_engine_selects_what_xpath_selects(data, selector):
    text, xpath = selector
    tree = etree.fromstring(data).getroottree()
    expected = [tree.getpath(e) for e in tree.xpath(xpath, namespaces=BINDINGS)]
    got = [tree.getpath(e) for e in select(tree.getroot(), parse(text).steps)]
    assert got == expected


@SETTINGS
@given(documents(), selectors())
def test_get_classifies_match_no_match_invalid_like_xpath(data, selector):
    text, xpath = selector
    tree = etree.fromstring(data).getroottree()
    expected = tree.xpath(xpath, namespaces=BINDINGS)
    if len(expected) != 1:  # no-match and invalid are both 404
        try:
            get_node(data, parse(text))
        except NodeNotFound:
            return
        raise AssertionError("expected NodeNotFound")
    element = expected[0]
    body = get_node(data, parse(text)).body
    # The body is the element's exact bytes: parsed in its parent's namespace context it is
    # the same element (same names, attributes, text and children).
    context = element.getparent().nsmap if element.getparent() is not None else {}
    holder = etree.fromstring(
        b"<h" + "".join(f' xmlns{":" + k if k else ""}="{v}"' for k, v in context.items()).encode() + b">"
        + body + b"</h>"
    )
    assert shape(holder[0]) == shape(element)


def shape(node):
    """A comparable picture of an element subtree (without its tail)."""
    if not isinstance(node.tag, str):
        return ("comment", node.text)
    return (node.tag, sorted(node.attrib.items()), node.text,
            [(shape(child), child.tail) for child in node])


@SETTINGS
@given(documents(), selectors(), st.sampled_from(["x", "y", "q:x"]))
def test_attribute_get_matches_xpath(data, selector, attribute):
    text, xpath = selector
    tree = etree.fromstring(data).getroottree()
    elements = tree.xpath(xpath, namespaces=BINDINGS)
    values = elements[0].xpath(f"@{attribute}", namespaces=BINDINGS) if len(elements) == 1 else []
    try:
        body = get_node(data, parse(f"{text}/@{attribute}")).body
    except NodeNotFound:
        assert values == []
        return
    assert values == [etree.fromstring(b'<v a="' + body + b'"/>').get("a")]


# -- hostile input --------------------------------------------------------------------------------

ALLOWED = (SelectorSyntaxError, UnsupportedSelector, NodeNotFound, errors.XCAPError)
SELECTOR_CHARS = st.sampled_from(list("abp:q*[]@=\"'/&#;0123456789x ()<>.-") + ["namespace::*", "&quot;", "é"])


@settings(max_examples=500, deadline=None)
@given(st.lists(SELECTOR_CHARS, max_size=30).map("".join))
def test_parser_only_raises_documented_errors(text):
    try:
        selector = parse(text)
    except (SelectorSyntaxError, UnsupportedSelector):
        return
    assert selector.kind in ("element", "attribute", "namespace") and selector.steps


BODY = st.one_of(
    st.sampled_from([b"<a/>", b"<p:b x='1'/>", b"<d:c>t</d:c>", b"<a x='1'><b/></a>", b"1", b"a&amp;b", b"<",
                     b"&", b"<a", b"</a>", b"<a/><a/>", b"\xff", b"<!--x--><a/>", b'<a xmlns="urn:test:two"/>']),
    st.binary(max_size=12),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), selectors(), st.sampled_from(["", "/@x", "/@q:x", "/namespace::*"]), BODY)
def test_edits_raise_only_documented_errors_and_keep_documents_well_formed(data, selector, terminal, body):
    text = selector[0] + terminal
    node = parse(text)
    for operation in ("get", "put", "delete"):
        if operation != "get" and node.kind == "namespace":
            continue
        try:
            if operation == "get":
                get_node(data, node)
            elif operation == "put":
                new, created = put_node(data, node, body, "http://h/doc")
                etree.fromstring(new)  # still well-formed
                assert get_node(new, node).body == body.strip(b" \t\r\n") or node.kind == "attribute"
            else:
                new = delete_node(data, node)
                etree.fromstring(new)
                assert len(new) < len(data)
        except ALLOWED:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), selectors())
def test_garbage_documents_raise_only_documented_errors(data, selector):
    assume(data.strip())
    node = parse(selector[0])
    for call in (lambda: get_node(data, node), lambda: put_node(data, node, b"<a/>", "http://h/d"),
                 lambda: delete_node(data, node)):
        try:
            call()
        except ALLOWED:
            pass


# -- round trips on every element of random documents ----------------------------------------------


def path_selector(element):
    """A selector that selects exactly ``element``: a positional step per ancestor."""
    parts = []
    while element is not None:
        qname = etree.QName(element)
        prefix = "p" if qname.namespace == NS1 else "q"
        parent = element.getparent()
        position = 1 if parent is None else list(parent.iterchildren(tag=element.tag)).index(element) + 1
        parts.append(f"{prefix}:{qname.localname}[{position}]")
        element = parent
    return "/".join(reversed(parts))


@SETTINGS
@given(documents(), st.data())
def test_round_trips_on_a_chosen_element(data, draw):
    tree = etree.fromstring(data).getroottree()
    everything = list(tree.getroot().iter(etree.Element))
    element = draw.draw(st.sampled_from(everything))
    text = path_selector(element)
    node = parse(text)
    body = get_node(data, node).body
    assert body.startswith(b"<") and body.endswith(b">") and body in data

    # Replacing an element with its own bytes changes nothing (and is not a creation).
    assert put_node(data, node, body, "http://h/d") == (data, False)

    # A new child goes after the last element child, or into the element; GET returns it.
    child = b'<z xmlns="urn:test:one" k="v"/>'
    new, created = put_node(data, parse(text + "/p:z"), child, "http://h/d")
    assert created and get_node(new, parse(text + "/p:z")).body == child
    assert len(new) - len(data) in (len(child), len(child) + len(f"</{element.prefix + ':' if element.prefix else ''}{etree.QName(element).localname}>") - 1)
    (parent,) = etree.fromstring(new).getroottree().xpath("/" + text, namespaces=BINDINGS)  # XPath oracle
    assert shape(parent.xpath("*[last()]")[0]) == shape(etree.fromstring(child))

    if element.getparent() is None:
        return
    # §7.5: a positional DELETE is only idempotent for the last sibling of that name.
    later = [s for s in element.itersiblings() if s.tag == element.tag]
    try:
        new = delete_node(data, node)
    except errors.CannotDelete:
        assert later
        return
    assert not later
    start = data.index(body) if data.count(body) == 1 else None
    if start is not None:
        assert new == data[:start] + data[start + len(body):]
