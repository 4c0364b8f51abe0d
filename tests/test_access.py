"""Minimal authorization (RFC 4825 §5.7 default policy) and mounting in a host WSGI stack."""

from __future__ import annotations

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, RL_MIME, call, put_doc
from webob import Request

from xcap_wsgi import XCAPMiddleware


class TestIdentity:
    def test_no_identity_is_401(self, app):
        assert call(app, "GET", ALICE_DOC, user=None).status_int == 401

    def test_header_cannot_forge_identity(self, app):
        response = call(app, "GET", ALICE_DOC, user=None, **{"Remote-User": ALICE})
        assert response.status_int == 401

    def test_someone_elses_tree_is_403_never_401(self, app):
        put_doc(app)
        for method in ("GET", "PUT", "DELETE"):
            response = call(app, method, ALICE_DOC, RL_DOC if method == "PUT" else None, user="sip:bob@example.com",
                            **({"Content-Type": RL_MIME} if method == "PUT" else {}))
            assert response.status_int == 403, method
        assert call(app, "GET", ALICE_DOC).body == RL_DOC

    @pytest.mark.parametrize("identity", ["alice@example.com", "sip:alice@example.com", "sip:alice@EXAMPLE.com", "alice"])
    def test_identity_forms_are_normalised(self, app, identity):
        # "alice" alone is in the default domain (example.com in the fixture)
        assert put_doc(app, user=identity).status_int in (200, 201)

    @pytest.mark.parametrize("identity", ["ALICE@example.com", "alice@example.org", "alicex@example.com"])
    def test_other_users_are_refused(self, app, identity):
        assert put_doc(app, user=identity).status_int == 403

    def test_encoded_xui_cannot_disguise_another_user(self, app):
        response = put_doc(app, path="/xcap-root/resource-lists/users/sip%3Aalice%40EXAMPLE.com/index",
                           user="sip:bob@example.com")
        assert response.status_int == 403

    def test_global_tree_is_readable_by_any_authenticated_user(self, app):
        assert call(app, "GET", "/xcap-root/xcap-caps/global/index", user="sip:bob@example.com").status_int == 200
        assert call(app, "GET", "/xcap-root/xcap-caps/global/index", user=None).status_int == 200  # no login needed
        assert call(app, "GET", "/xcap-root/rls-services/global/index", user=None).status_int == 401

    def test_custom_identity_callable(self, store):
        app = XCAPMiddleware(None, store=store, identity=lambda environ: environ.get("HTTP_X_TEST_USER"))
        assert put_doc(app, user=None, **{"X-Test-User": ALICE}).status_int == 201
        assert call(app, "GET", ALICE_DOC, user=ALICE).status_int == 401  # REMOTE_USER no longer counts


def host_app(environ, start_response):
    """A host application that reports what it saw."""
    body = f"host saw {environ['SCRIPT_NAME']}|{environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class TestMounting:
    def test_other_paths_reach_the_wrapped_app_untouched(self, store):
        app = XCAPMiddleware(host_app, store=store)
        for path in ("/", "/login", "/xcap-rootx/a", "/static/xcap-root/x"):
            response = Request.blank(path).get_response(app)
            assert response.status_int == 200
            assert response.text == f"host saw |{path}"

    def test_standalone_answers_404_outside_the_root(self, store):
        app = XCAPMiddleware(None, store=store)
        assert Request.blank("/index.html").get_response(app).status_int == 404

    def test_root_aliases_reach_the_same_documents(self, store):
        app = XCAPMiddleware(None, store=store, root=("/xcap-root", "/services/xcap"), anonymous=True)
        put_doc(app)
        response = call(app, "GET", "/services/xcap/resource-lists/users/sip:alice@example.com/index")
        assert response.body == RL_DOC

    def test_mounted_under_script_name(self, store):
        app = XCAPMiddleware(host_app, store=store, anonymous=True)
        request = Request.blank("/xcap-root/resource-lists/users/sip:alice@example.com/index", method="PUT",
                                base_url="http://xcap.example.com/app", body=RL_DOC,
                                headers={"Content-Type": RL_MIME})
        assert request.script_name == "/app"
        assert request.get_response(app).status_int == 201
        get = Request.blank("/xcap-root/resource-lists/users/sip:alice@example.com/index",
                            base_url="http://xcap.example.com/app")
        get.environ["REQUEST_URI"] = "/app/xcap-root/resource-lists/users/sip:alice@example.com/index"
        assert get.get_response(app).body == RL_DOC
        # doc_uri is the absolute path the clients use, mount point included (Kamailio's rls relies on it)
        assert store.list_documents("alice", "example.com")[0].doc_uri == \
            "/app/xcap-root/resource-lists/users/sip:alice@example.com/index"
        assert Request.blank("/other", base_url="http://h/app").get_response(app).text == "host saw /app|/other"

    def test_raw_uri_keeps_encoded_slash_in_xui(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        raw = "/xcap-root/resource-lists/users/sip:jo%2Fe@example.com/index"
        request = Request.blank(raw, method="PUT", body=RL_DOC, headers={"Content-Type": RL_MIME})
        request.environ["REQUEST_URI"] = raw
        assert request.get_response(app).status_int == 201
        assert store.list_documents("jo/e", "example.com")[0].doc_uri == \
            "/xcap-root/resource-lists/users/sip:jo/e@example.com/index"

    def test_without_raw_uri_path_info_is_used(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        request = Request.blank("/xcap-root/resource-lists/users/sip:alice@example.com/index", method="PUT",
                                body=RL_DOC, headers={"Content-Type": RL_MIME})
        assert "REQUEST_URI" not in request.environ and "RAW_URI" not in request.environ
        assert request.get_response(app).status_int == 201

    def test_rewritten_path_info_wins_over_a_stale_raw_uri(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True)
        request = Request.blank(ALICE_DOC, method="PUT", body=RL_DOC, headers={"Content-Type": RL_MIME})
        request.environ["REQUEST_URI"] = "/something/else/entirely"
        assert request.get_response(app).status_int == 201


class TestLimits:
    def test_body_over_the_limit_is_413(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True, max_body_size=100)
        response = put_doc(app, body=RL_DOC)
        assert response.status_int == 413
        assert call(app, "GET", ALICE_DOC).status_int == 404

    def test_uri_over_the_limit_is_414(self, store):
        app = XCAPMiddleware(None, store=store, anonymous=True, max_uri_length=200)
        assert call(app, "GET", ALICE_DOC + "x" * 200).status_int == 414

    def test_doc_uri_longer_than_kamailios_column_is_414(self, app):
        path = f"/xcap-root/resource-lists/users/{ALICE}/" + "d" * 250
        assert put_doc(app, path=path).status_int == 414


def test_401_can_name_the_hosts_scheme(store):
    """RFC 7235: a 401 carries WWW-Authenticate; the host says which scheme it speaks."""
    app = XCAPMiddleware(None, store=store, challenge='Basic realm="example.com"')
    response = call(app, "GET", ALICE_DOC, user=None)
    assert response.status_int == 401 and response.headers["WWW-Authenticate"] == 'Basic realm="example.com"'
    assert "WWW-Authenticate" not in call(app, "GET", ALICE_DOC, user="sip:bob@example.com").headers
