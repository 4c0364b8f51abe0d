"""The request hot path's shortcuts answer exactly like the plain code they stand in for."""

from __future__ import annotations

import pytest
from webob import Response

from xcap_wsgi import uri as uri_module
from xcap_wsgi.auth import DefaultPolicy, account
from xcap_wsgi.conditions import quote_etag
from xcap_wsgi.middleware import _raw_request_target, raw_request_target
from xcap_wsgi.operations import xcap_response
from xcap_wsgi.uri import URIError, match_root, parse_xcap_path


def _webob_response(status, body=b"", content_type=None, etag=None, extra=None):
    """xcap_response as it was built before the direct header list (WebOb rewrites it)."""
    headers = [("Content-Length", str(len(body))), ("Cache-Control", "no-cache")]
    if content_type:
        headers.insert(0, ("Content-Type", content_type))
    if etag:
        headers.append(("ETag", quote_etag(etag)))
    headers.extend(extra or [])
    return Response(status=status, body=body, headerlist=headers)


@pytest.mark.parametrize("args", [
    (200, b"<doc/>", "application/resource-lists+xml", "abc"),
    (200, b"", None, "abc"),
    (201, b"", None, "xyz"),
    (200, b"", None, None),
    (200, b"x" * 5000, "application/xcap-el+xml", None),
])
def test_xcap_response_matches_webob(args):
    fast, plain = xcap_response(*args), _webob_response(*args)
    assert vars(fast) == vars(plain)


def test_parse_xcap_path_is_remembered_and_errors_are_not():
    first = parse_xcap_path("/xcap-root", "/resource-lists/users/sip:a@example.com/index/~~/resource-lists")
    again = parse_xcap_path("/xcap-root", "/resource-lists/users/sip:a@example.com/index/~~/resource-lists")
    assert first is again
    for _ in range(2):
        with pytest.raises(URIError):
            parse_xcap_path("/xcap-root", "/resource-lists/users/sip:a@example.com/%zz")


def test_caches_are_bounded(monkeypatch):
    monkeypatch.setattr(uri_module, "_CACHE_MAX", 4)
    for n in range(10):
        parse_xcap_path("/xcap-root", f"/resource-lists/users/u{n}/index")
        match_root(f"/xcap-root/resource-lists/users/u{n}/index", ("/xcap-root",))
    assert len(uri_module._PARSED) <= 4 and len(uri_module._ROOT_MATCHES) <= 4


def test_match_root_accepts_a_list_of_roots():
    assert match_root("/xcap-root/x", ["/xcap-root"]) == ("/xcap-root", "/x")


@pytest.mark.parametrize("environ", [
    {"SCRIPT_NAME": "", "PATH_INFO": "/xcap-root/a b", "QUERY_STRING": "", "REQUEST_URI": "/xcap-root/a%20b"},
    {"SCRIPT_NAME": "/app", "PATH_INFO": "/xcap-root/a/b", "QUERY_STRING": "q", "RAW_URI": "/app/xcap-root/a%2Fb?q"},
    {"SCRIPT_NAME": "", "PATH_INFO": "/x", "QUERY_STRING": ""},
])
def test_raw_request_target_remembered_equals_computed(environ):
    computed = _raw_request_target(environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""),
                                   environ.get("QUERY_STRING", ""), environ.get("RAW_URI"),
                                   environ.get("REQUEST_URI"))
    assert raw_request_target(environ) == computed
    assert raw_request_target(dict(environ)) == computed


def test_policy_account_cache_follows_the_default_domain():
    policy = DefaultPolicy(default_domain="example.com")
    assert policy.account("alice") == account("alice", "example.com") == ("alice", "example.com")
    policy.default_domain = "example.org"
    assert policy.account("alice") == ("alice", "example.org")
