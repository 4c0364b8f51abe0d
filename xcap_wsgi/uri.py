"""XCAP URIs (RFC 4825 §6): root, document selector, node selector and xmlns() bindings.

No WSGI here: the boundary hands over the raw (still percent-encoded) request path and query,
and this module splits the path into segments *before* decoding each one, so that ``%2F``
inside an XUI stays part of the XUI and ``+`` stays a literal plus. The node selector is
decoded exactly once, as a whole, after the ``~~`` segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

NODE_SEPARATOR = "~~"
TREES = ("users", "global")

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class URIError(Exception):
    """A request URI that is not a valid XCAP URI; ``status`` is 400 or 404."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class XCAPURI:
    """A parsed XCAP request URI. Every string here is percent-decoded."""

    root: str  #: the XCAP root path as matched, e.g. "/xcap-root"
    auid: str
    tree: str  #: "users" or "global"
    xui: str | None  #: the XUI (users tree only)
    segments: tuple[str, ...]  #: sub-folders then the document name
    node_selector: str | None = None
    namespaces: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def document_name(self) -> str:
        return self.segments[-1]

    @property
    def document_selector(self) -> str:
        """``auid/tree[/xui]/folders/name``, decoded: the part of the path that names the document."""
        head = [self.auid, self.tree] + ([self.xui] if self.xui is not None else [])
        return "/".join(head + list(self.segments))

    def doc_uri(self, root: str | None = None) -> str:
        """The value of Kamailio's ``doc_uri`` column: the decoded absolute path of the document."""
        return f"{(root if root is not None else self.root).rstrip('/')}/{self.document_selector}"


def decode_segment(raw: str, what: str = "path segment") -> str:
    """Percent-decode one raw segment as UTF-8. ``+`` is kept: it is not a form-encoded space."""
    if _BAD_PERCENT.search(raw):
        raise URIError(f"malformed percent-encoding in {what} {raw!r}")
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise URIError(f"{what} {raw!r} does not decode to UTF-8") from None
    if _CONTROL.search(text):
        raise URIError(f"control characters are not allowed in the {what}")
    return text


#: Results of the pure functions below, by their arguments; each dict is emptied when full.
#: Clients repeat the same few URIs, and decoding every segment again costs more than the lookup.
#: Errors (URIError) are never cached: they are raised afresh on every call.
_ROOT_MATCHES: dict = {}
_PARSED: dict = {}
_CACHE_MAX = 1024


def _remember(cache: dict, key, value):
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def match_root(raw_path: str, roots: tuple[str, ...]) -> tuple[str, str] | None:
    """Find the configured XCAP root that ``raw_path`` lies under.

    Returns ``(root, rest)`` where ``rest`` is the raw remainder starting with ``/`` (or empty),
    or None when the path is not under any root. Roots are compared segment-wise on decoded
    segments, so ``/xcap%2Droot`` matches ``/xcap-root`` but ``/xcap-rootx`` does not.
    """
    key = (raw_path, tuple(roots))
    try:
        return _ROOT_MATCHES[key]
    except KeyError:
        return _remember(_ROOT_MATCHES, key, _match_root(raw_path, roots))


def _match_root(raw_path: str, roots: tuple[str, ...]) -> tuple[str, str] | None:
    raw_segments = raw_path.split("/")
    for root in roots:
        root_segments = [s for s in root.strip("/").split("/") if s]
        candidate = raw_segments[1 : 1 + len(root_segments)]
        if len(candidate) < len(root_segments):
            continue
        try:
            if [decode_segment(s) for s in candidate] != root_segments:
                continue
        except URIError:
            continue
        rest = "/".join(raw_segments[1 + len(root_segments) :])
        return root, ("/" + rest if len(raw_segments) > 1 + len(root_segments) else "")
    return None


def parse_xcap_path(root: str, raw_rest: str, raw_query: str = "") -> XCAPURI:
    """Parse the raw path below the XCAP root (``/auid/tree/...``) and the raw query string.

    The result is immutable (frozen, read-only namespaces), so one instance serves every
    request for the same URI.
    """
    key = (root, raw_rest, raw_query)
    try:
        return _PARSED[key]
    except KeyError:
        return _remember(_PARSED, key, _parse_xcap_path(root, raw_rest, raw_query))


def _parse_xcap_path(root: str, raw_rest: str, raw_query: str) -> XCAPURI:
    if not raw_rest or raw_rest == "/":
        raise URIError("the XCAP root itself is not a resource: add an application usage (AUID)", 404)
    raw_segments = raw_rest[1:].split("/")
    decoded = [decode_segment(s) for s in raw_segments]

    if NODE_SEPARATOR in decoded:
        cut = decoded.index(NODE_SEPARATOR)
        document, raw_node = decoded[:cut], "/".join(raw_segments[cut + 1 :])
        node_selector = decode_segment(raw_node, "node selector")
        if not node_selector:
            raise URIError("empty node selector after '~~'")
    else:
        document, node_selector = decoded, None

    auid = document[0] if document else ""
    if not auid:
        raise URIError("missing application usage (AUID) after the XCAP root", 404)
    if len(document) < 2 or document[1] not in TREES:
        raise URIError(f"after the AUID the path must continue with 'users/' or 'global/' ({auid!r})", 404)
    tree = document[1]
    if tree == "users":
        if len(document) < 4 or not document[2]:
            raise URIError("a users-tree URI needs an XUI and a document name: users/<xui>/<document>", 404)
        xui, segments = canonical_xui(document[2]), document[3:]
    else:
        if len(document) < 3:
            raise URIError("a global-tree URI needs a document name: global/<document>", 404)
        xui, segments = None, document[2:]
    for segment in segments:
        if segment in (".", ".."):
            raise URIError("'.' and '..' segments are not allowed in an XCAP URI")
        if "/" in segment:
            raise URIError("an encoded '/' is only allowed inside the XUI")
    if segments[-1] == "":
        raise URIError("the URI names a folder, not a document (trailing '/')", 404)
    if "" in segments:
        raise URIError("empty path segment in the document selector", 404)

    namespaces = parse_xmlns_query(raw_query) if raw_query else {}
    if namespaces and node_selector is None:
        raise URIError("xmlns() namespace bindings are only allowed with a node selector")
    if raw_query and node_selector is None:
        raise URIError("a query component is only allowed with a node selector")
    return XCAPURI(
        root=root,
        auid=auid,
        tree=tree,
        xui=xui,
        segments=tuple(segments),
        node_selector=node_selector,
        namespaces=MappingProxyType(namespaces),
    )


def parse_xmlns_query(raw_query: str) -> dict[str, str]:
    """Parse XPointer ``xmlns(prefix=uri)`` parts (RFC 4825 §6.4), honouring ``^`` escapes.

    Parts of other XPointer schemes are ignored, as the XPointer framework says.
    """
    text = decode_segment(raw_query, "query")
    bindings: dict[str, str] = {}
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        match = re.compile(r"([A-Za-z_][\w.\-:]*)\(").match(text, position)
        if not match:
            raise URIError(f"malformed XPointer scheme part at {text[position:]!r}")
        body, position = _xpointer_body(text, match.end())
        if match.group(1) != "xmlns":
            continue
        prefix, equals, uri = body.partition("=")
        prefix, uri = prefix.strip(), uri.strip()
        if not equals or not re.fullmatch(r"[A-Za-z_][\w.\-]*", prefix) or not uri:
            raise URIError(f"malformed namespace binding xmlns({body})")
        bindings[prefix] = uri
    return bindings


def _xpointer_body(text: str, start: int) -> tuple[str, int]:
    """Read an XPointer scheme body up to its balancing ')' and unescape ``^(``, ``^)``, ``^^``."""
    depth, out, i = 1, [], start
    while i < len(text):
        ch = text[i]
        if ch == "^":
            if i + 1 >= len(text) or text[i + 1] not in "()^":
                raise URIError("malformed '^' escape in the query")
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise URIError("unbalanced parentheses in the query")


# -- XUI to Kamailio account ------------------------------------------------------------------

_SIP_SCHEMES = ("sip:", "sips:")


def xui_account(xui: str, default_domain: str) -> tuple[str, str]:
    """Map an XUI to Kamailio's (username, domain) pair.

    ``sip:user@host[:port][;params]`` gives (user, host) like Kamailio's parse_uri; the host is
    lower-cased (hosts are case-insensitive, users are not). ``user@host`` works the same way.
    Anything else (``alice``, ``tel:+1555...``) is a user in ``default_domain``.
    """
    text = xui
    lowered = text.lower()
    for scheme in _SIP_SCHEMES + ("tel:",):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    user, at, hostport = text.rpartition("@")
    if at and user and hostport:
        user = user.split(":", 1)[0]  # drop a password part
        host = re.split(r"[;?]", hostport, maxsplit=1)[0]
        if host.startswith("["):
            host = host[: host.find("]") + 1] if "]" in host else host
        else:
            host = host.split(":", 1)[0]
        if user and host:
            return user, host.lower()
    user = re.split(r"[;?]", text, maxsplit=1)[0]
    return (user or xui), default_domain.lower()


def canonical_xui(xui: str) -> str:
    """The XUI as stored in ``doc_uri``: URI scheme and host lower-cased, user part untouched."""
    lowered = xui.lower()
    for scheme in _SIP_SCHEMES:
        if lowered.startswith(scheme):
            rest = xui[len(scheme) :]
            user, at, host = rest.rpartition("@")
            return scheme + (f"{user}@{host.lower()}" if at else rest)
    user, at, host = xui.rpartition("@")
    return f"{user}@{host.lower()}" if at and user else xui
