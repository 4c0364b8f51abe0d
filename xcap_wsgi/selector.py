"""XCAP node selectors (RFC 4825 §6.3, §6.4): parse them and evaluate them on an lxml tree.

Pure functions, no WSGI and no byte handling (that is ``editor.py``). The grammar, in short::

    node-selector = element-selector ["/" terminal-selector]
    terminal      = "@" QName  |  "namespace::*"  |  extension-selector
    step          = NameOrAny ["[" position "]"] ["[" "@" QName "=" AttValue "]"]
    NameOrAny     = QName | "*"

Names are resolved as RFC 4825 §6.4 says: a prefix only through the request's ``xmlns()``
bindings (never through declarations in the stored document), an unprefixed element name in
the application usage's default document namespace (§5.2), an unprefixed attribute name in no
namespace. The ``xml`` prefix is always bound to the XML namespace, as Namespaces in XML says.

Evaluation follows §6.3: the first step must match the root element (only position 1 can match
there), later steps select element children (text, comments and PIs are never counted), and
``[n][@a="v"]`` applies the position first, then the attribute test.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from types import MappingProxyType
from urllib.parse import quote

from lxml import etree

XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
NAMESPACE_SELECTOR = "namespace::*"

# Namespaces in XML 1.0: NCName is an XML Name without ':'.
_NAME_START = (
    "A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NAME_CHAR = _NAME_START + r"\-.0-9\u00b7\u0300-\u036f\u203f-\u2040"
_NCNAME = f"[{_NAME_START}][{_NAME_CHAR}]*"
_QNAME = re.compile(f"(?:({_NCNAME}):)?({_NCNAME})")
_NAME_OR_ANY = re.compile(f"\\*|(?:({_NCNAME}):)?({_NCNAME})")
_POSITION = re.compile(r"\[([0-9]+)\]")
_REFERENCE = re.compile(f"&(?:#([0-9]+)|#x([0-9A-Fa-f]+)|({_NCNAME}));")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_XML_CHAR = re.compile("[\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


class SelectorSyntaxError(ValueError):
    """A malformed node selector or an unbound prefix (the middleware answers 400)."""


class UnsupportedSelector(ValueError):
    """An extension selector this server does not implement (the middleware answers 404)."""


@dataclass(frozen=True)
class Step:
    """One location step, e.g. ``entry[2][@uri="sip:a@b"]``.

    Names are in lxml's Clark notation (``{uri}local``, or ``local`` for no namespace);
    ``tag`` is None for ``*``.
    """

    text: str  #: the step exactly as written in the selector
    tag: str | None
    position: int | None = None
    attr_name: str | None = None
    attr_value: str | None = None
    prefixes: tuple[str, ...] = ()  #: prefixes used in this step (for rebuilding URIs)

    def matches_name(self, element: etree._Element) -> bool:
        return self.tag is None or element.tag == self.tag

    def matches_attr(self, element: etree._Element) -> bool:
        return self.attr_name is None or element.get(self.attr_name) == self.attr_value


@dataclass(frozen=True)
class NodeSelector:
    """A parsed node selector: element steps plus an optional terminal."""

    kind: str  #: "element" | "attribute" | "namespace"
    text: str  #: the selector as given (percent-decoded once)
    steps: tuple[Step, ...]  #: the element selector
    attribute: str | None = None  #: Clark name of the terminal ``@attr`` (kind "attribute")
    attribute_text: str = ""  #: the terminal ``@attr`` as written
    attribute_prefixes: tuple[str, ...] = ()
    #: the xmlns() bindings this selector uses (prefix -> URI); unused bindings are dropped
    namespaces: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def attribute_name(self) -> str:
        """``attribute`` of an attribute selector (kind "attribute", where it is never None)."""
        if self.attribute is None:
            raise TypeError(f"{self.text!r} does not select an attribute")
        return self.attribute

    def uri_suffix(self, steps: tuple[Step, ...]) -> str:
        """``/~~/<steps>[?xmlns(...)]``, percent-encoded: how a URI names the element that
        ``steps`` (a prefix of ``self.steps``) select, e.g. for a no-parent ``<ancestor>``."""
        path = quote("/".join(step.text for step in steps), safe="/:@!$&'()*+,;=")
        used = sorted({prefix for step in steps for prefix in step.prefixes if prefix != "xml"})
        query = "".join(f"xmlns({prefix}={_xpointer_escape(self.namespaces[prefix])})" for prefix in used)
        return f"/~~/{path}" + (f"?{quote(query, safe=':@!$&()*+,;=/?')}" if query else "")


def parse_node_selector(text: str, namespaces: Mapping[str, str], default_namespace: str) -> NodeSelector:
    """Parse a percent-decoded node selector (RFC 4825 §6.3).

    Raises SelectorSyntaxError for a malformed selector or an unbound prefix, and
    UnsupportedSelector for an extension selector (anything that is not shaped like a step).
    """
    if not isinstance(text, str) or not text:
        raise SelectorSyntaxError("empty node selector")
    parser = _Parser(text, dict(namespaces), default_namespace or "")
    return parser.parse()


def select(root: etree._Element, steps: tuple[Step, ...]) -> list[etree._Element]:
    """All elements the element selector ``steps`` selects, in document order.

    One element is a match, none a no-match, several an invalid selector (§6.3); the caller
    decides what each means for its method.
    """
    first = steps[0]
    if not (first.matches_name(root) and first.position in (None, 1) and first.matches_attr(root)):
        return []
    current = [root]
    for step in steps[1:]:
        current = [child for parent in current for child in step_children(parent, step)]
        if not current:
            break
    return current


def step_children(parent: etree._Element, step: Step) -> list[etree._Element]:
    """The children of ``parent`` that ``step`` selects (a step below the root, §6.3)."""
    # C-level filtering by expanded name; comments and PIs are never counted.
    children: Iterable[etree._Element] = parent.iterchildren(tag=step.tag if step.tag is not None else etree.Element)
    if step.position is not None:  # the position first, then the attribute test
        position = step.position
        children = list(islice(children, position - 1, position)) if 1 <= position <= sys.maxsize else []
    if step.attr_name is None:
        return list(children)
    name, value = step.attr_name, step.attr_value
    return [child for child in children if child.get(name) == value]


# -- parser -------------------------------------------------------------------------------------


class _Parser:
    """A small recursive-descent parser over the decoded selector text."""

    def __init__(self, text: str, namespaces: dict[str, str], default_namespace: str):
        self.text = text
        self.pos = 0
        self.namespaces = namespaces
        self.default_namespace = default_namespace

    def parse(self) -> NodeSelector:
        text = self.text
        steps: list[Step] = []
        while True:
            start = self.pos
            if text.startswith("@", start):
                if not steps:
                    raise SelectorSyntaxError("a node selector must start with an element step, not an attribute")
                name, prefixes = self._attribute_name(start + 1, element=False)
                if self.pos != len(text):
                    raise SelectorSyntaxError("an attribute selector must be the last step")
                return self._selector("attribute", steps, name, text[start:], prefixes)
            if text.startswith(NAMESPACE_SELECTOR, start) and (
                start + len(NAMESPACE_SELECTOR) == len(text) or text[start + len(NAMESPACE_SELECTOR)] == "/"
            ):
                if not steps:
                    raise SelectorSyntaxError("a node selector must start with an element step")
                if start + len(NAMESPACE_SELECTOR) != len(text):
                    raise SelectorSyntaxError("namespace::* must be the last step")
                return self._selector("namespace", steps)
            steps.append(self._step())
            if self.pos == len(text):
                return self._selector("element", steps)
            if text[self.pos] != "/":
                raise self._step_error(start)  # pragma: no cover - _step reports first
            self.pos += 1
            if self.pos == len(text):
                raise SelectorSyntaxError("the node selector ends with '/'")

    def _selector(self, kind, steps, attribute=None, attribute_text="", attribute_prefixes=()) -> NodeSelector:
        used = {p for step in steps for p in step.prefixes} | set(attribute_prefixes)
        bindings = {p: self.namespaces[p] for p in used if p in self.namespaces}
        return NodeSelector(
            kind=kind,
            text=self.text,
            steps=tuple(steps),
            attribute=attribute,
            attribute_text=attribute_text,
            attribute_prefixes=tuple(attribute_prefixes),
            namespaces=MappingProxyType(bindings),
        )

    def _step(self) -> Step:
        text, start = self.text, self.pos
        match = _NAME_OR_ANY.match(text, start)
        if not match or (match.end() < len(text) and text[match.end()] not in "[/"):
            raise self._step_error(start)
        prefixes: list[str] = []
        if match.group(0) == "*":
            tag = None
        else:
            prefix, local = match.group(1), match.group(2)
            tag = _clark(self._resolve(prefix, element=True), local)
            if prefix:
                prefixes.append(prefix)
        self.pos = match.end()
        position = attr_name = attr_value = None
        position_match = _POSITION.match(text, self.pos)
        if position_match:
            digits = position_match.group(1).lstrip("0") or "0"
            # Longer numbers cannot be a position anyway (and int() refuses > 4300 digits).
            position = int(digits) if len(digits) <= 18 else sys.maxsize + 1
            self.pos = position_match.end()
        if text.startswith("[@", self.pos):
            attr_name, attr_prefixes = self._attribute_name(self.pos + 2, element=False)
            prefixes.extend(attr_prefixes)
            if not text.startswith("=", self.pos):
                raise SelectorSyntaxError(f"expected '=' after the attribute name in step {text[start:]!r}")
            attr_value = self._att_value(self.pos + 1)
            if not text.startswith("]", self.pos):
                raise SelectorSyntaxError(f"expected ']' after the attribute value in step {text[start:]!r}")
            self.pos += 1
        if self.pos < len(text) and text[self.pos] != "/":
            raise SelectorSyntaxError(f"malformed step {text[start:].split('/', 1)[0]!r}")
        return Step(text[start : self.pos], tag, position, attr_name, attr_value, tuple(prefixes))

    def _step_error(self, start: int) -> ValueError:
        """Tell a malformed step (400) from an extension selector (404).

        The ABNF lets an extension selector be any run of characters other than '/', so
        something is only called malformed when it is shaped like a step: a NameOrAny followed
        by '[' (or an '@'). Everything else, e.g. ``text()`` or ``comment()``, is an extension.
        """
        segment = self.text[start:].split("/", 1)[0]
        if not segment:
            return SelectorSyntaxError("empty step in the node selector ('//')")
        match = _NAME_OR_ANY.match(segment)
        if segment.startswith("@") or (match and segment[match.end() : match.end() + 1] == "["):
            return SelectorSyntaxError(f"malformed step {segment!r}")
        return UnsupportedSelector(f"unsupported (extension) selector {segment!r}")

    def _attribute_name(self, start: int, element: bool) -> tuple[str, list[str]]:
        match = _QNAME.match(self.text, start)
        if not match:
            raise SelectorSyntaxError(f"expected an attribute name at {self.text[start:]!r}")
        self.pos = match.end()
        prefix, local = match.group(1), match.group(2)
        return _clark(self._resolve(prefix, element), local), ([prefix] if prefix else [])

    def _resolve(self, prefix: str | None, element: bool) -> str:
        """Namespace URI for a prefix (§6.4: only the xmlns() bindings of the request count)."""
        if prefix is None:
            return self.default_namespace if element else ""
        if prefix == "xml":
            return XML_NAMESPACE
        if prefix == "xmlns":
            raise SelectorSyntaxError("the prefix 'xmlns' cannot be used in a node selector")
        try:
            return self.namespaces[prefix]
        except KeyError:
            raise SelectorSyntaxError(f"the prefix {prefix!r} is not bound by an xmlns() in the query") from None

    def _att_value(self, start: int) -> str:
        """Parse an XML AttValue (either quote style, entity and character references)."""
        text = self.text
        if start >= len(text) or text[start] not in "\"'":
            raise SelectorSyntaxError("an attribute value must be quoted")
        quote_char = text[start]
        end = text.find(quote_char, start + 1)
        if end < 0:
            raise SelectorSyntaxError("unterminated attribute value")
        self.pos = end + 1
        return decode_att_value(text[start + 1 : end], SelectorSyntaxError)


def decode_att_value(raw: str, error: type[Exception]) -> str:
    """The value an XML parser would report for AttValue content ``raw`` (no quotes).

    Checks the XML AttValue production: no ``<``, ``&`` only in a predefined entity or a
    character reference, only XML characters; then expands references and normalises
    literal white space to spaces (XML 1.0 §3.3.3). Raises ``error`` otherwise.
    """
    if "<" in raw:
        raise error("'<' is not allowed in an attribute value")
    if not _XML_CHAR.fullmatch(raw):
        raise error("the attribute value contains characters that XML does not allow")
    out: list[str] = []  # even indexes: literal text; odd indexes: expanded references
    position = 0
    while (amp := raw.find("&", position)) >= 0:
        out.append(raw[position:amp])
        ref = _REFERENCE.match(raw, amp)
        if not ref:
            raise error("'&' in an attribute value must start an entity or character reference")
        if ref.group(3) is not None:
            if ref.group(3) not in _PREDEFINED:
                raise error(f"unknown entity reference &{ref.group(3)};")
            out.append(_PREDEFINED[ref.group(3)])
        else:
            digits = ref.group(1) or ref.group(2)
            code = int(digits, 10 if ref.group(1) else 16) if len(digits) <= 8 else -1
            char = chr(code) if 0 <= code <= 0x10FFFF else ""
            if not char or not _XML_CHAR.fullmatch(char):
                raise error(f"character reference {ref.group(0)} is not an XML character")
            out.append(char)
        position = ref.end()
    out.append(raw[position:])
    # Literal tab/CR/LF become spaces; characters from references stay as they are.
    return "".join(part if index % 2 else _normalize_space(part) for index, part in enumerate(out))


def _normalize_space(text: str) -> str:
    return text.replace("\r\n", " ").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _clark(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}" if namespace else local


def _xpointer_escape(text: str) -> str:
    """XPointer escaping for a scheme body: ``^``, ``(`` and ``)`` get a ``^`` in front."""
    return text.replace("^", "^^").replace("(", "^(").replace(")", "^)")
