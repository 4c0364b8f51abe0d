"""Fuzzing (hypothesis): no input makes the URI parser, the node-selector parser or the whole WSGI stack
fail in an undocumented way. The middleware must never answer 500 nor let an exception reach the WSGI
server, with or without DigestAuthMiddleware in front. Real SQLite store, real subscriber table.
"""

from __future__ import annotations

import base64
import logging

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from webob import Request

from xcap_wsgi import SQLiteStore, XCAPMiddleware
from xcap_wsgi.digest import DigestAuthMiddleware, parse_auth_params
from xcap_wsgi.middleware import raw_request_target
from xcap_wsgi.subscribers import SQLiteSubscribers
from xcap_wsgi.uri import URIError, canonical_xui, match_root, parse_xcap_path, xui_account

FAST = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

AUIDS = ["resource-lists", "rls-services", "pres-rules", "org.openmobilealliance.pres-rules", "pidf-manipulation",
         "org.openmobilealliance.pres-content", "org.openmobilealliance.user-profile", "xcap-caps", "nope", "",
         "~~", "%7E%7E", "..", "%2e%2e"]
XUIS = ["sip:alice@example.com", "sip:bob@example.com", "alice", "sip%3Aalice%40EXAMPLE.com", "tel:+155",
        "sip:jo%2Fe@example.com", "%2e%2e", "..", "~~", "%7E%7E", "sip:@", "@", ""]
PIECES = ["/", "~~", "%7e%7e", "..", ".", "%2e", "%2F", "%2f", "%00", "%", "%G1", "%C3%A9", "%FF", "+", ";", "?",
          "[", "]", "@", "=", '"', "'", "*", ":", "(", ")", "^", "index", "list", "entry", "@name",
          "namespace::*", "resource-lists", "list[1]", 'list[@name="f"]', "entry[2]", "%5B", "%5D", "%22",
          "p:list", "\\", "\u00e9", "\x7f", "\t", " "]


def _text(pieces=PIECES, max_size=12):
    return st.lists(st.one_of(st.sampled_from(pieces), st.text(max_size=4)), max_size=max_size).map("".join)


_composed_paths = st.builds(
    lambda root, auid, tree, xui, rest: "/".join(p for p in (root, auid, tree, xui) if p is not None) + rest,
    st.one_of(st.just("/xcap-root"), st.sampled_from(["/xcap-root", "/xcap%2Droot", "/other", ""])),
    st.one_of(st.just("resource-lists"), st.sampled_from(AUIDS), _text(max_size=3)),
    st.one_of(st.just("users"), st.sampled_from(["users", "global", "USERS", "", None])),
    st.one_of(st.just("sip:alice@example.com"), st.none(), st.sampled_from(XUIS), _text(max_size=3)),
    st.one_of(
        st.just("/index"),
        st.just(""),
        _text().map(lambda t: "/" + t),
        st.sampled_from(["/index", "/pres-rules", "/perm-presence", "/oma_status-icon/rcs_status_icon",
                         "/index/~~/resource-lists/list%5B@name=%22friends%22%5D",
                         "/index/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B1%5D/@uri",
                         "/index/~~/resource-lists/list%5B1%5D/entry%5B@uri=%22sip:c@example.com%22%5D",
                         "/index/~~/resource-lists/list/namespace::*", "/index/~~/resource-lists/@x",
                         "/index/~~/*/*%5B2%5D", "/index/~~/p:resource-lists/p:list"]),
        _text().map(lambda t: "/index/~~/resource-lists/" + t),
    ),
)
SUFFIXES = ["/index", "/index/~~/resource-lists/list%5B@name=%22friends%22%5D",
            "/index/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B1%5D",
            "/index/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B1%5D/@uri",
            "/index/~~/resource-lists/list%5B@name=%22friends%22%5D/@name",
            "/index/~~/resource-lists/list%5B1%5D/entry%5B@uri=%22sip:c@example.com%22%5D",
            "/index/~~/resource-lists/list%5B1%5D/entry%5B2%5D/display-name",
            "/index/~~/resource-lists/list/namespace::*", "/index/~~/resource-lists"]
# Half the paths aim at alice's seeded document, so edits, conditionals and selectors really run.
raw_paths = st.one_of(
    st.builds(lambda xui, suffix: f"/xcap-root/resource-lists/users/{xui}{suffix}",
              st.sampled_from(["sip:alice@example.com", "sip%3Aalice%40example.com", "sip:bob@example.com"]),
              st.one_of(st.sampled_from(SUFFIXES), _text().map(lambda t: "/index/~~/resource-lists/" + t))),
    _composed_paths,
)
queries = st.one_of(st.just(""), st.just(""), st.just(""), st.sampled_from(["xmlns(p=urn:ietf:params:xml:ns:resource-lists)", "xmlns(",
                                                  "xmlns(p=)", "x(y)xmlns(a=b)", "^", "xmlns(a=b^)c)"]), _text())


@FAST
@given(raw_paths, queries)
def test_uri_parser_raises_only_uri_errors(raw_path, raw_query):
    matched = match_root(raw_path, ("/xcap-root",))
    rest = matched[1] if matched else raw_path
    try:
        uri = parse_xcap_path("/xcap-root", rest, raw_query)
    except URIError as exc:
        assert exc.status in (400, 404)
        return
    assert uri.tree in ("users", "global")
    assert all(s not in (".", "..") and "/" not in s for s in uri.segments)
    if uri.xui is not None:
        user, domain = xui_account(uri.xui, "example.com")
        assert isinstance(user, str) and isinstance(domain, str) and domain == domain.lower()
        assert canonical_xui(uri.xui) == uri.xui  # parsing canonicalises once; again is a no-op
    assert uri.doc_uri().startswith("/xcap-root/")


@FAST
@given(st.text(max_size=60))
def test_account_mapping_never_fails(text):
    user, domain = xui_account(text, "Example.com")
    assert domain == domain.lower()
    canonical_xui(text)


@FAST
@given(st.text(max_size=80), st.dictionaries(st.text(max_size=5), st.text(max_size=10), max_size=3))
def test_node_selector_parser_raises_only_its_errors(text, namespaces):
    selector = pytest.importorskip("xcap_wsgi.selector")
    try:
        selector.parse_node_selector(text, namespaces, "urn:ietf:params:xml:ns:resource-lists")
    except (selector.SelectorSyntaxError, selector.UnsupportedSelector):
        pass


@FAST
@given(_text(pieces=PIECES + ["resource-lists/list", "/entry", "[@uri='x']", "/@name", "[1]", "/*", "p:",
                              "xmlns", "&quot;", "&#x22;", "&lt;"], max_size=20))
def test_node_selector_parser_structured(text):
    selector = pytest.importorskip("xcap_wsgi.selector")
    try:
        selector.parse_node_selector(text, {"p": "urn:ietf:params:xml:ns:resource-lists"},
                                     "urn:ietf:params:xml:ns:resource-lists")
    except (selector.SelectorSyntaxError, selector.UnsupportedSelector):
        pass


@FAST
@given(st.text(max_size=120))
def test_auth_param_parser_raises_only_value_error(text):
    try:
        parse_auth_params(text)
    except ValueError:
        pass


@FAST
@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=40),
       st.text(alphabet=st.characters(max_codepoint=255), max_size=60), st.text(max_size=20))
def test_raw_request_target_never_fails(script_name, path_info, raw):
    raw_request_target({"SCRIPT_NAME": script_name, "PATH_INFO": path_info, "REQUEST_URI": raw, "QUERY_STRING": ""})


# -- the whole stack ---------------------------------------------------------------------------------

RL = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
      b'<list name="friends"><entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry></list>'
      b"</resource-lists>")
BODIES = [RL, b"", b"<", b"<a/>", b'<entry uri="sip:c@example.com"/>', b'"value"', b"\xff\xfe<\x00",
          b'<?xml version="1.0" encoding="ISO-8859-1"?><a/>', b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
          b'<list name="friends"/>', b"<entry/><entry/>", b"<a>" * 80 + b"</a>" * 80,
          b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a"/><list name="a"/></resource-lists>']
CONTENT_TYPES = ["application/resource-lists+xml", "application/xcap-el+xml", "application/xcap-att+xml",
                 "application/xcap-ns+xml", "text/plain", "application/xml; charset=utf-8", "", "a/b; x=\"",
                 "application/auth-policy+xml", "application/rls-services+xml"]
ETAGS = ['"x"', "*", 'W/"x"', '"a", "b"', "", '"', "x"]
IDENTITIES = [None, "sip:alice@example.com", "alice@example.com", "bob@example.com", "", "sip:@", "\u00e9@x"]

requests = st.fixed_dictionaries({
    "method": st.one_of(st.sampled_from(["GET", "PUT", "DELETE"]),
                        st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH", "FOO", "get"])),
    "path": raw_paths,
    "query": queries,
    "body": st.one_of(st.sampled_from(BODIES), st.binary(max_size=200)),
    "content_type": st.one_of(st.sampled_from(CONTENT_TYPES[:2]), st.sampled_from(CONTENT_TYPES)),
    "if_match": st.one_of(st.none(), st.none(), st.sampled_from(ETAGS)),
    "if_none_match": st.one_of(st.none(), st.none(), st.sampled_from(ETAGS)),
    "content_length": st.one_of(st.none(), st.none(), st.sampled_from(["-1", "abc", "99999999", "0", " "])),
    "identity": st.one_of(st.just("alice@example.com"), st.sampled_from(IDENTITIES)),
    "raw_uri": st.booleans(),
})


def build_environ(r: dict) -> dict:
    """A PEP 3333 environ as a server would build it from a raw request line sent as UTF-8 bytes:
    native strings hold bytes as latin-1, PATH_INFO is percent-decoded, REQUEST_URI is not."""
    from urllib.parse import unquote_to_bytes

    request = Request.blank("/", method=r["method"])
    path, query = r["path"].encode("utf-8"), r["query"].encode("utf-8")
    request.environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
    request.environ["QUERY_STRING"] = query.decode("latin-1")
    if r["raw_uri"]:
        request.environ["REQUEST_URI"] = (path + (b"?" + query if query else b"")).decode("latin-1")
    request.body = r["body"]
    if r["content_type"]:
        request.environ["CONTENT_TYPE"] = r["content_type"]
    if r["if_match"] is not None:
        request.environ["HTTP_IF_MATCH"] = r["if_match"]
    if r["if_none_match"] is not None:
        request.environ["HTTP_IF_NONE_MATCH"] = r["if_none_match"]
    if r["content_length"] is not None:
        request.environ["CONTENT_LENGTH"] = r["content_length"]
    if r["identity"] is not None:
        request.environ["REMOTE_USER"] = r["identity"]
    return request.environ


def run_wsgi(app, environ):
    """Call the app like a WSGI server would; return the status code. Any exception fails the test."""
    calls = []

    def start_response(status, headers, exc_info=None):
        assert exc_info is None, "the app reported an exception to the server"
        assert all(isinstance(k, str) and isinstance(v, str) and "\n" not in v for k, v in headers)
        calls.append(status)

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    assert len(calls) == 1
    assert isinstance(body, bytes)
    return int(calls[0].split()[0])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    store = SQLiteStore(str(directory / "xcap.sqlite3"))
    subscribers = SQLiteSubscribers(str(directory / "auth.sqlite3"))
    subscribers.add("alice", "example.com", "wonder land")
    xcap = XCAPMiddleware(None, store=store, default_domain="example.com", max_uri_length=600)
    digest = DigestAuthMiddleware(xcap, subscribers=subscribers, realm="example.com", basic=True)
    yield xcap, digest
    store.close()
    subscribers.close()


def reseed(xcap):
    """(Re)create alice's document if a fuzzed DELETE removed it, so edits and selectors have a target."""
    seed = Request.blank("/xcap-root/resource-lists/users/sip:alice@example.com/index", method="PUT", body=RL,
                         headers={"Content-Type": "application/resource-lists+xml", "If-None-Match": "*"})
    seed.environ["REMOTE_USER"] = "alice@example.com"
    assert seed.get_response(xcap).status_int in (201, 412)


class ErrorLogGuard(logging.Handler):
    """Collects records of 'unhandled error' the middleware logs when it turns a bug into a 500."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@SLOW
@given(requests)
def test_middleware_never_500(stack, r):
    xcap, _ = stack
    reseed(xcap)
    guard = ErrorLogGuard()
    logging.getLogger("xcap_wsgi").addHandler(guard)
    try:
        status = run_wsgi(xcap, build_environ(r))
    finally:
        logging.getLogger("xcap_wsgi").removeHandler(guard)
    assert status != 500, r
    assert 200 <= status < 600
    assert not guard.records, [g.getMessage() for g in guard.records]


authorizations = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.builds(lambda t: "Digest " + t, st.text(max_size=120)),
    st.builds(lambda user, nonce, nc, uri, alg, extra:
              f'Digest username="{user}", realm="example.com", nonce="{nonce}", uri="{uri}", '
              f'response="{"0" * 32}", qop=auth, nc={nc}, cnonce="c", algorithm={alg}{extra}',
              st.sampled_from(["alice", "alice@example.com", "x\\\"y", ""]), st.text(max_size=44),
              st.sampled_from(["00000001", "ffffffff", "zz", ""]), st.sampled_from(["/", "/xcap-root/x", "", "%"]),
              st.sampled_from(["MD5", "SHA-256", "md5", "MD5-sess", "x"]),
              st.sampled_from(["", ", opaque=\"x\"", ", userhash=true", ", qop=auth-int"])),
    st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary(max_size=30)),
    st.builds(lambda t: "Basic " + t, st.text(max_size=30)),
)


@SLOW
@given(requests, authorizations)
def test_digest_stack_never_500(stack, r, authorization):
    xcap, digest = stack
    reseed(xcap)
    environ = build_environ(dict(r, identity=None))
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    status = run_wsgi(digest, environ)
    assert status != 500
    if authorization is None or not authorization.strip():
        assert status == 401


# -- regressions the fuzzer found ----------------------------------------------------------------------


@pytest.mark.parametrize("rest", ["/~~/x", "/%7E%7E/resource-lists", "/~~/"])
def test_node_separator_right_after_the_root_is_a_clean_error(rest):
    """Found by test_middleware_never_500: '~~' as the first segment gave IndexError (500)."""
    with pytest.raises(URIError):
        parse_xcap_path("/xcap-root", rest)
