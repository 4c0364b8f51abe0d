"""Authorization policy and identity resolution, through the real middleware and a real SQLite store."""

from __future__ import annotations

import logging

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, RL_MIME, call, put_doc
from webob.exc import HTTPForbidden, HTTPNotFound, HTTPUnauthorized

from xcap_wsgi import XCAPMiddleware
from xcap_wsgi.auth import (
    AllowAll,
    DefaultPolicy,
    ReadOnlyPolicy,
    TrustedProxyIdentity,
    parse_asserted_identity,
    remote_user,
)
from xcap_wsgi.build import build_middleware
from xcap_wsgi.settings import resolve
from xcap_wsgi.uri import parse_xcap_path
from xcap_wsgi.usages import ApplicationUsage, default_registry

BOB = "sip:bob@example.com"
BOB_DOC = f"/xcap-root/resource-lists/users/{BOB}/index"
PC_MIME = "application/vnd.oma.pres-content+xml"
PC_DOC = (b'<content xmlns="urn:oma:xml:prs:pres-content"><mime-type>image/png</mime-type>'
          b'<encoding>base64</encoding><data>iVBORw0KGgo=</data></content>')
PC_PATH = f"/xcap-root/org.openmobilealliance.pres-content/users/{ALICE}/oma_status-icon/rcs_status_icon"
CAPS = "/xcap-root/xcap-caps/global/index"


def uri(path):
    return parse_xcap_path("/xcap-root", path)


def decide(policy, identity, path, write=False):
    """'ok', 401, 403 or 404 (hidden)."""
    try:
        policy.authorize(identity, uri(path), write=write)
    except HTTPUnauthorized:
        return 401
    except HTTPForbidden:
        return 403
    except HTTPNotFound:
        return 404
    return "ok"


# -- the policy on its own -----------------------------------------------------------------------

class TestDefaultPolicy:
    policy = DefaultPolicy(default_domain="example.com", admins=["sip:admin@EXAMPLE.com"],
                           trusted=["presence@example.com"])

    @pytest.mark.parametrize("write", [False, True])
    def test_owner_reads_and_writes_own_tree(self, write):
        assert decide(self.policy, ALICE, "/resource-lists/users/sip:alice@example.com/index", write) == "ok"

    @pytest.mark.parametrize("write", [False, True])
    def test_other_user_is_403_never_401(self, write):
        assert decide(self.policy, BOB, "/resource-lists/users/sip:alice@example.com/index", write) == 403

    @pytest.mark.parametrize("path", ["/resource-lists/users/sip:alice@example.com/index", "/rls-services/global/index",
                                      "/org.openmobilealliance.pres-content/users/sip:alice@example.com/x"])
    def test_no_identity_is_401(self, path):
        assert decide(self.policy, None, path) == 401
        assert decide(self.policy, "", path) == 401

    def test_xcap_caps_is_read_without_identity_never_written(self):
        # Clients read it before they know which realm to answer (see digest._public).
        assert decide(self.policy, None, "/xcap-caps/global/index") == "ok"
        assert decide(self.policy, None, "/xcap-caps/global/index", write=True) == 401

    def test_global_tree_read_by_anyone_authenticated_written_by_admins_only(self):
        assert decide(self.policy, BOB, "/xcap-caps/global/index") == "ok"
        # the rls-services global index holds every user's services: trusted principals only;
        # to everyone else it is hidden (404, issue 15), not forbidden
        assert decide(self.policy, BOB, "/rls-services/global/index") == 404
        assert decide(self.policy, "sip:presence@example.com", "/rls-services/global/index") == "ok"
        assert decide(self.policy, BOB, "/rls-services/global/index", write=True) == 404
        assert decide(self.policy, "admin@example.com", "/rls-services/global/index", write=True) == "ok"
        assert decide(self.policy, "sips:admin@Example.Com", "/rls-services/global/index", write=True) == "ok"
        assert decide(self.policy, "Admin@example.com", "/rls-services/global/index", write=True) == 404  # not the admin
        assert decide(self.policy, "Admin@example.com", "/xcap-caps/global/index", write=True) == 403

    def test_trusted_reader_reads_everyone_but_writes_nothing(self):
        path = "/pres-rules/users/sip:alice@example.com/index"
        assert decide(self.policy, "sip:presence@example.com", path) == "ok"
        assert decide(self.policy, "sip:presence@example.com", path, write=True) == 403
        assert decide(self.policy, "sip:presence@example.com", "/rls-services/global/index", write=True) == 403

    def test_public_read_auid_is_readable_by_authenticated_users_only(self):
        path = "/org.openmobilealliance.pres-content/users/sip:alice@example.com/oma_status-icon/rcs_status_icon"
        assert decide(self.policy, BOB, path) == "ok"
        assert decide(self.policy, BOB, path, write=True) == 403
        assert decide(self.policy, None, path) == 401
        strict = DefaultPolicy(default_domain="example.com", public_read=())
        assert decide(strict, BOB, path) == 403

    @pytest.mark.parametrize("identity", [
        "sip:alice@example.com", "sips:alice@example.com", "SIP:alice@EXAMPLE.COM", "alice@Example.Com",
        "alice", "sip:alice@example.com:5061;transport=tls",
    ])
    def test_identity_normalisation_matches(self, identity):
        assert decide(self.policy, identity, "/resource-lists/users/sip:alice@example.com/index", True) == "ok"

    @pytest.mark.parametrize("identity", ["Alice@example.com", "sip:ALICE@example.com", "alice@example.org",
                                          "alice@example.com.evil", "sip:alic@example.com", "tel:alice",
                                          # not canonical (issue 16): an account " alice" is not alice
                                          " alice@example.com ", "alice:x@example.com", "alice@example.com:5060"])
    def test_identity_normalisation_does_not_overmatch(self, identity):
        expected = "ok" if identity == "tel:alice" else 403  # tel:alice is user alice of the default domain
        assert decide(self.policy, identity, "/resource-lists/users/sip:alice@example.com/index", True) == expected

    @pytest.mark.parametrize("xui", ["sip:alice@EXAMPLE.com", "sips:alice@example.com", "alice@example.com", "alice",
                                     "sip:alice@example.com;transport=tcp"])
    def test_xui_normalisation(self, xui):
        assert decide(self.policy, "alice@example.com", f"/resource-lists/users/{xui}/index", True) == "ok"
        assert decide(self.policy, "bob@example.com", f"/resource-lists/users/{xui}/index", True) == 403

    def test_per_auid_override(self):
        class AnonymousRead:
            def authorize(self, identity, uri, *, write):
                if write:
                    raise HTTPForbidden()

        policy = DefaultPolicy(default_domain="example.com",
                               overrides={"pidf-manipulation": ReadOnlyPolicy(), "resource-lists": AnonymousRead()})
        own_pidf = "/pidf-manipulation/users/sip:alice@example.com/index"
        assert decide(policy, ALICE, own_pidf) == "ok"
        assert decide(policy, ALICE, own_pidf, write=True) == 403  # read-only AUID, even for the owner
        assert decide(policy, None, own_pidf) == 401
        assert decide(policy, None, "/resource-lists/users/sip:alice@example.com/index") == "ok"
        assert decide(policy, ALICE, "/pres-rules/users/sip:bob@example.com/index") == 403  # others: default rules

    def test_allow_all(self):
        assert decide(AllowAll(), None, "/resource-lists/users/sip:alice@example.com/index", True) == "ok"


# -- through the middleware ----------------------------------------------------------------------

def test_middleware_statuses(app):
    assert put_doc(app).status_int == 201
    assert call(app, "GET", ALICE_DOC).status_int == 200
    assert call(app, "GET", ALICE_DOC, user=None).status_int == 401
    assert call(app, "GET", ALICE_DOC, user=BOB).status_int == 403
    assert call(app, "DELETE", ALICE_DOC, user=BOB).status_int == 403
    assert call(app, "PUT", ALICE_DOC, RL_DOC, user=BOB, **{"Content-Type": RL_MIME}).status_int == 403
    assert call(app, "GET", CAPS, user=BOB).status_int == 200
    assert call(app, "GET", CAPS, user=None).status_int == 200  # xcap-caps needs no login
    assert call(app, "PUT", CAPS, user=None).status_int in (401, 405)
    assert call(app, "GET", ALICE_DOC).body == RL_DOC  # bob changed nothing


def test_public_read_pres_content_through_middleware(app):
    assert put_doc(app, path=PC_PATH, body=PC_DOC, content_type=PC_MIME).status_int == 201
    assert call(app, "GET", PC_PATH, user=BOB).body == PC_DOC
    assert call(app, "GET", PC_PATH, user=None).status_int == 401
    assert call(app, "DELETE", PC_PATH, user=BOB).status_int == 403
    assert call(app, "GET", PC_PATH).status_int == 200


def test_trusted_reader_and_admin_through_middleware(store):
    registry = default_registry()
    registry.register(ApplicationUsage(auid="test-global", mime_type="application/resource-lists+xml",
                                       default_namespace="urn:ietf:params:xml:ns:resource-lists", doc_type=4,
                                       global_documents=("index",)))
    app = XCAPMiddleware(None, store=store, default_domain="example.com", usages=registry, admins=["admin"],
                         policy=None)
    global_doc = "/xcap-root/test-global/global/index"
    assert call(app, "PUT", global_doc, RL_DOC, user=BOB, **{"Content-Type": RL_MIME}).status_int == 403
    assert call(app, "PUT", global_doc, RL_DOC, user="sip:admin@example.com",
                **{"Content-Type": RL_MIME}).status_int == 201
    assert call(app, "GET", global_doc, user=BOB).status_int == 200

    trusted = XCAPMiddleware(None, store=store, default_domain="example.com",
                             policy=DefaultPolicy(default_domain="example.com", trusted=["presence@example.com"]))
    assert put_doc(trusted).status_int == 201
    assert call(trusted, "GET", ALICE_DOC, user="presence@example.com").body == RL_DOC
    assert call(trusted, "DELETE", ALICE_DOC, user="presence@example.com").status_int == 403
    assert call(trusted, "GET", ALICE_DOC, user=BOB).status_int == 403


def test_identity_callable(store):
    app = XCAPMiddleware(None, store=store, default_domain="example.com",
                         identity=lambda environ: environ.get("myapp.user"))
    assert call(app, "GET", ALICE_DOC).status_int == 401  # REMOTE_USER is not what this host uses
    response = call(app, "PUT", ALICE_DOC, RL_DOC, user=None, **{"Content-Type": RL_MIME})
    assert response.status_int == 401
    from webob import Request

    request = Request.blank(ALICE_DOC, method="PUT", body=RL_DOC, headers={"Content-Type": RL_MIME})
    request.environ["myapp.user"] = "alice@example.com"
    assert request.get_response(app).status_int == 201


def test_remote_user_resolver():
    assert remote_user({"REMOTE_USER": "a@b"}) == "a@b"
    assert remote_user({"REMOTE_USER": ""}) is None
    assert remote_user({}) is None


# -- trusted front proxy -------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ('"sip:alice@example.com"', "sip:alice@example.com"),
    ("<sip:alice@example.com>", "sip:alice@example.com"),
    ('"Alice" <sips:alice@example.com>', "sips:alice@example.com"),
    ("sip:alice@example.com", "sip:alice@example.com"),
    ("tel:+15551234", "tel:+15551234"),
    ("alice@example.com", "alice@example.com"),
    ('"sip:alice@example.com", "sip:bob@example.com"', "sip:alice@example.com"),
    ("", None), ("   ", None), ("<sip:alice@example.com", None), ("alice", None),
    ('"sip:alice@example.com\r\nX: y"', None), ("sip:a b@example.com", None),
])
def test_parse_asserted_identity(value, expected):
    assert parse_asserted_identity(value) == expected


HEADER = "X-3GPP-Intended-Identity"


def proxy_call(app, method, path, peer, asserted=None, user=None, body=None):
    headers = {HEADER: asserted} if asserted is not None else {}
    if body is not None:
        headers["Content-Type"] = RL_MIME
    from webob import Request

    request = Request.blank(path, method=method, headers=headers, remote_addr=peer)
    if user:
        request.environ["REMOTE_USER"] = user
    if body is not None:
        request.body = body
    return request.get_response(app)


@pytest.fixture
def proxied(store):
    return XCAPMiddleware(None, store=store, default_domain="example.com",
                          identity=TrustedProxyIdentity(HEADER, ["10.0.0.0/8", "::1", "192.0.2.7"]))


def test_asserted_identity_from_trusted_proxy(proxied):
    response = proxy_call(proxied, "PUT", ALICE_DOC, "10.1.2.3", '"sip:alice@example.com"', body=RL_DOC)
    assert response.status_int == 201
    assert proxy_call(proxied, "GET", ALICE_DOC, "::1", "<sip:alice@example.com>").body == RL_DOC
    assert proxy_call(proxied, "GET", ALICE_DOC, "192.0.2.7", "sip:bob@example.com").status_int == 403
    assert proxy_call(proxied, "GET", ALICE_DOC, "::ffff:10.0.0.1", "sip:alice@example.com").status_int == 200


def test_asserted_identity_from_untrusted_peer_is_ignored_and_logged(proxied, caplog):
    assert proxy_call(proxied, "PUT", ALICE_DOC, "10.1.2.3", "sip:alice@example.com", body=RL_DOC).status_int == 201
    with caplog.at_level(logging.WARNING, logger="xcap_wsgi.auth"):
        assert proxy_call(proxied, "GET", ALICE_DOC, "192.0.2.8", "sip:alice@example.com").status_int == 401
        assert proxy_call(proxied, "DELETE", ALICE_DOC, "11.0.0.1", "sip:alice@example.com").status_int == 401
        assert proxy_call(proxied, "GET", ALICE_DOC, "not-an-ip", "sip:alice@example.com").status_int == 401
    assert sum("untrusted peer" in r.getMessage() for r in caplog.records) == 3
    # the host's own authentication still counts (fallback to REMOTE_USER), and the header cannot override it
    assert proxy_call(proxied, "GET", ALICE_DOC, "192.0.2.8", "sip:alice@example.com", user=BOB).status_int == 403
    assert proxy_call(proxied, "GET", ALICE_DOC, "192.0.2.8", None, user=ALICE).status_int == 200


def test_malformed_asserted_identity_falls_back(proxied, caplog):
    with caplog.at_level(logging.WARNING, logger="xcap_wsgi.auth"):
        assert proxy_call(proxied, "GET", ALICE_DOC, "10.0.0.1", "garbage").status_int == 401
    assert any("malformed" in r.getMessage() for r in caplog.records)


# -- settings wiring ------------------------------------------------------------------------------

def test_settings_build_policy_and_proxy_identity(store):
    values = resolve({"default_domain": "example.com", "trusted_readers": "presence@example.com",
                      "identity_header": HEADER, "trusted_proxies": "127.0.0.0/8"}, environ={})
    app = build_middleware(None, values, store=store)
    assert proxy_call(app, "PUT", ALICE_DOC, "127.0.0.1", ALICE, body=RL_DOC).status_int == 201
    assert proxy_call(app, "GET", ALICE_DOC, "127.0.0.1", "sip:presence@example.com").status_int == 200
    assert proxy_call(app, "GET", ALICE_DOC, "127.0.0.1", BOB).status_int == 403
    assert proxy_call(app, "GET", ALICE_DOC, "10.0.0.1", ALICE).status_int == 401


def test_settings_identity_header_needs_trusted_proxies(store):
    # refused when the settings are built (Settings.__post_init__), before any middleware exists
    with pytest.raises(ValueError):
        values = resolve({"identity_header": HEADER}, environ={})
        build_middleware(None, values, store=store)


def test_settings_from_environment(store):
    values = resolve(environ={"XCAP_PUBLIC_READ": "", "XCAP_DEFAULT_DOMAIN": "example.com"})
    app = build_middleware(None, values, store=store)
    assert put_doc(app, path=PC_PATH, body=PC_DOC, content_type=PC_MIME).status_int == 201
    assert call(app, "GET", PC_PATH, user=BOB).status_int == 403  # public read switched off
