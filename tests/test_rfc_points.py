"""Smaller RFC 4825 / RFC 9110 points found by an outside test suite (issue 15), each pinned down
through the real middleware and a real SQLite store, or through a live ``serve`` where the point
is about the wire."""

from __future__ import annotations

import http.client
from urllib.parse import unquote

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, RL_MIME, call, put_doc
from lxml import etree
from test_documents import assert_xcap_error
from test_server import DOC, server  # noqa: F401 - the live `serve` fixture
from test_workers import workers  # noqa: F401 - `serve --workers 3`

from xcap_wsgi import XCAPMiddleware
from xcap_wsgi.auth import DefaultPolicy

XE = "{urn:ietf:params:xml:ns:xcap-error}"
BOB = "sip:bob@example.com"
RLS_INDEX = "/xcap-root/rls-services/global/index"


# -- a 304 keeps the connection open and says no-cache ---------------------------------------------


def assert_304_keeps_the_connection(port: int) -> None:
    """After a 304 the next request on the same connection is answered (RFC 9112 §9.3: HTTP/1.1
    connections persist; a 304 ends at its header block, RFC 9112 §6.3)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("PUT", DOC, body=RL_DOC, headers={"Content-Type": RL_MIME})
    created = connection.getresponse()
    created.read()
    etag = created.getheader("ETag")
    sock = connection.sock
    connection.request("GET", DOC, headers={"If-None-Match": etag})
    not_modified = connection.getresponse()
    assert not_modified.read() == b""
    assert not_modified.status == 304
    assert not_modified.getheader("Connection") is None and not not_modified.will_close
    assert not_modified.getheader("ETag") == etag
    assert not_modified.getheader("Cache-Control") == "no-cache"
    connection.request("GET", DOC)
    again = connection.getresponse()
    assert (again.status, again.read()) == (200, RL_DOC)
    assert connection.sock is sock  # the same TCP connection, not a silent reconnect
    connection.close()


def test_304_keeps_the_keep_alive_connection_of_serve(server):  # noqa: F811
    assert_304_keeps_the_connection(server[0])


def test_304_keeps_the_keep_alive_connection_of_serve_workers(workers):  # noqa: F811
    assert_304_keeps_the_connection(workers[1])


def test_304_honours_connection_close_from_the_client(server):  # noqa: F811
    port, _ = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("PUT", DOC, body=RL_DOC, headers={"Content-Type": RL_MIME})
    etag = connection.getresponse().getheader("ETag")
    connection.close()
    connection.request("GET", DOC, headers={"If-None-Match": etag, "Connection": "close"})
    response = connection.getresponse()
    assert response.status == 304 and response.will_close
    connection.close()


# -- every response under the XCAP root says Cache-Control: no-cache ------------------------------


def _no_cache_cases():
    def bad_selector(app):
        return call(app, "GET", ALICE_DOC + "/~~/resource-lists/list%5B")

    return [
        pytest.param(lambda app: call(app, "GET", ALICE_DOC, **{"If-None-Match": put_doc(app).headers["ETag"]}),
                     304, id="304"),
        pytest.param(bad_selector, 400, id="400"),
        pytest.param(lambda app: call(app, "GET", ALICE_DOC, user=None), 401, id="401"),
        pytest.param(lambda app: call(app, "GET", ALICE_DOC, user=BOB), 403, id="403"),
        pytest.param(lambda app: call(app, "GET", ALICE_DOC), 404, id="404-document"),
        pytest.param(lambda app: call(app, "GET", "/xcap-root/no-such-auid/global/index"), 404, id="404-auid"),
        pytest.param(lambda app: call(app, "PUT", "/xcap-root/xcap-caps/global/index", b"<x/>"), 405, id="405"),
        pytest.param(lambda app: put_doc(app, body=b"<not-xml"), 409, id="409"),
        pytest.param(lambda app: put_doc(app, **{"If-Match": '"other"'}), 412, id="412"),
        pytest.param(lambda app: put_doc(app, content_type="text/xml"), 415, id="415"),
    ]


@pytest.mark.parametrize("send, status", _no_cache_cases())
def test_every_xcap_response_says_no_cache(app, send, status):
    """RFC 4825 §9: data written by clients is dynamic, so responses carry no-cache; that holds
    for errors and 304 as much as for 200 (RFC 9110 §15.4.5: a 304 repeats Cache-Control)."""
    response = send(app)
    assert response.status_int == status
    assert response.headers.get("Cache-Control") == "no-cache"


def test_xcap_error_body_is_unchanged_by_the_added_header(app):
    response = put_doc(app, body=b"<not-xml")
    assert_xcap_error(response, "not-well-formed")
    assert response.headers.getall("Cache-Control") == ["no-cache"]


def test_responses_outside_the_root_are_left_alone(store):
    def host(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"host"]

    app = XCAPMiddleware(host, store=store)
    response = call(app, "GET", "/elsewhere")
    assert response.body == b"host" and "Cache-Control" not in response.headers


# -- <exists field> is percent-encoded -------------------------------------------------------------


def test_exists_field_is_percent_encoded(app):
    """RFC 4825 §11: the field is a node selector in URI form, so it is percent-encoded."""
    body = RL_DOC.replace(b"</list>", b'<entry uri="sip:bob@example.com"/></list>')
    condition = assert_xcap_error(put_doc(app, body=body), "uniqueness-failure")
    field = condition.find(f"{XE}exists").get("field")
    assert field == "resource-lists/list%5B1%5D/entry%5B2%5D/@uri"
    assert unquote(field) == "resource-lists/list[1]/entry[2]/@uri"


@pytest.mark.parametrize("raw, encoded", [
    ('resource-lists/list[@name="a b"]/@name', "resource-lists/list%5B@name=%22a%20b%22%5D/@name"),
    ("r/x[1]/@a", "r/x%5B1%5D/@a"),
    ("r/*[2]/@p:a", "r/*%5B2%5D/@p:a"),
    ("r/x[@a=\"50%\"]", "r/x%5B@a=%2250%25%22%5D"),
    ("r/x[@a=\"Zoë\"]", "r/x%5B@a=%22Zo%C3%AB%22%5D"),
], ids=["quotes-and-space", "position", "wildcard-prefix", "percent", "non-ascii"])
def test_exists_field_encoding(raw, encoded):
    from xcap_wsgi.errors import Exists, UniquenessFailure

    element = UniquenessFailure([Exists(field=raw)]).condition_element()
    assert element[0].get("field") == encoded
    assert unquote(encoded) == raw


# -- POST and unknown methods get 405 with Allow ----------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH", "FROB"])
@pytest.mark.parametrize("path", [
    "/xcap-root", "/xcap-root/", "/xcap-root/resource-lists", "/xcap-root/resource-lists/users/",
    f"/xcap-root/resource-lists/users/{ALICE}/", "/xcap-root/no-such-auid/global/index",
], ids=["root", "root-slash", "auid", "tree", "home", "unknown-auid"])
def test_non_xcap_method_under_the_root_is_405(app, method, path):
    response = call(app, method, path, b"<x/>")
    assert response.status_int == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PUT", "DELETE"}
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("method", ["POST", "FROB"])
def test_non_xcap_method_on_a_resource_is_405_with_its_allow(app, method):
    put_doc(app)
    response = call(app, method, ALICE_DOC, b"<x/>")
    assert response.status_int == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PUT", "DELETE"}
    response = call(app, method, "/xcap-root/xcap-caps/global/index", b"<x/>")
    assert (response.status_int, response.headers["Allow"].replace(" ", "")) == (405, "GET,HEAD")


def test_xcap_methods_on_non_resources_stay_404(app):
    for method in ("GET", "PUT", "DELETE"):
        assert call(app, method, "/xcap-root/", b"<x/>").status_int == 404
    assert call(app, "GET", "/xcap-root/no-such-auid/global/index").status_int == 404


# -- If-Match quoted twice -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_if_match_quoted_twice_is_the_tag(app, method):
    etag = put_doc(app).headers["ETag"]
    doubled = f'"{etag}"'  # ""xw-..."" as some clients send it
    body = RL_DOC.replace(b"Bob", b"Robert") if method == "PUT" else None
    headers = {"If-Match": doubled, **({"Content-Type": RL_MIME} if method == "PUT" else {})}
    assert call(app, method, ALICE_DOC, body, **headers).status_int == 200


def test_if_match_quoted_twice_with_another_tag_still_fails(app):
    put_doc(app)
    response = put_doc(app, body=RL_DOC.replace(b"Bob", b"Robert"), **{"If-Match": '""xw-1""'})
    assert response.status_int == 412
    assert call(app, "GET", ALICE_DOC).body == RL_DOC


def test_if_none_match_quoted_twice_in_a_list(app):
    etag = put_doc(app).headers["ETag"]
    assert call(app, "GET", ALICE_DOC, **{"If-None-Match": f'"x", "{etag}"'}).status_int == 304


def test_empty_tag_is_still_an_empty_tag(app):
    put_doc(app)
    assert put_doc(app, **{"If-Match": '""'}).status_int == 412


# -- the rls-services global index is hidden, not forbidden ----------------------------------------


def test_rls_services_index_is_404_for_ordinary_users(store):
    app = XCAPMiddleware(None, store=store, default_domain="example.com",
                         policy=DefaultPolicy(default_domain="example.com", trusted=["rls@example.com"],
                                              admins=["admin@example.com"]))
    response = call(app, "GET", RLS_INDEX, user=ALICE)
    assert response.status_int == 404
    assert response.headers["Cache-Control"] == "no-cache"
    assert call(app, "GET", RLS_INDEX, user=None).status_int == 401
    assert call(app, "GET", RLS_INDEX, user="rls@example.com").status_int == 200
    assert call(app, "GET", RLS_INDEX, user="admin@example.com").status_int == 200
    index = etree.fromstring(call(app, "GET", RLS_INDEX, user="rls@example.com").body)
    assert index.tag == "{urn:ietf:params:xml:ns:rls-services}rls-services"


# -- status codes against the RFC tables (xcap-rfc.md §1.4, §1.10) ---------------------------------


@pytest.mark.parametrize("path, user, status", [
    (ALICE_DOC, ALICE, 404),
    (f"/xcap-root/resource-lists/users/{BOB}/index", ALICE, 403),
    (ALICE_DOC, None, 401),
    (ALICE_DOC + "/~~/resource-lists/list%5B", ALICE, 400),
    ("/xcap-root/no-such-auid/global/index", ALICE, 404),
], ids=["404", "403", "401", "400", "404-auid"])
def test_head_error_has_the_headers_of_get(app, path, user, status):
    """RFC 9110 §9.3.2: HEAD answers with the headers GET would send; a Content-Length, if sent,
    is the length of GET's content (§8.6), not 0."""
    get, head = call(app, "GET", path, user=user), call(app, "HEAD", path, user=user)
    assert get.status_int == head.status_int == status
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"] == str(len(get.body))
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert head.headers["Cache-Control"] == "no-cache"


def test_head_error_over_serve_keeps_the_connection(server):  # noqa: F811
    port, _ = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("HEAD", DOC)
    head = connection.getresponse()
    assert (head.status, head.read()) == (404, b"")
    sock = connection.sock
    connection.request("GET", DOC)
    get = connection.getresponse()
    assert get.status == 404 and head.getheader("Content-Length") == str(len(get.read()))
    assert connection.sock is sock
    connection.close()
