"""Hostile requests against the real middleware over a real SQLite store (and MySQL when
``XCAP_TEST_MYSQL_URL`` is set): size limits, XML attacks, traversal, disguised XUIs, SQL metacharacters.
A few run over HTTP through waitress with DigestAuthMiddleware (Basic enabled) in front, so raw request
lines reach the server exactly as written.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import re
import sqlite3
import threading

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, RL_MIME, call, put_doc
from hypothesis import given, settings, strategies as st
from lxml import etree
from webob import Request

from xcap_wsgi import XCAPMiddleware, xmlsafe
from xcap_wsgi.digest import DigestAuthMiddleware
from xcap_wsgi.errors import ConstraintFailure, NotWellFormed
from xcap_wsgi.subscribers import SQLiteSubscribers

BOB = "sip:bob@example.com"
XCAP_ERROR_NS = "urn:ietf:params:xml:ns:xcap-error"
ALICE_PATH = "/xcap-root/resource-lists/users/sip:alice@example.com"


def rows(store_path):
    with contextlib.closing(sqlite3.connect(store_path)) as conn:
        return conn.execute("SELECT username, domain, doc_uri, doc FROM xcap ORDER BY id").fetchall()


@pytest.fixture
def store_path(store):
    return store.path


def assert_xcap_error(response, tag):
    assert response.status_int == 409, (response.status, response.body[:300])
    assert response.content_type == "application/xcap-error+xml"
    root = etree.fromstring(response.body)
    assert root.tag == f"{{{XCAP_ERROR_NS}}}xcap-error"
    assert root[0].tag == f"{{{XCAP_ERROR_NS}}}{tag}", response.body


# -- request size limits ---------------------------------------------------------------------------


class TestLimits:
    def test_body_limit_413_by_content_length(self, store, store_path):
        app = XCAPMiddleware(None, store=store, default_domain="example.com", max_body_size=len(RL_DOC) - 1)
        assert put_doc(app).status_int == 413
        assert rows(store_path) == []
        app = XCAPMiddleware(None, store=store, default_domain="example.com", max_body_size=len(RL_DOC))
        assert put_doc(app).status_int == 201  # exactly at the limit is fine

    def test_body_limit_413_without_content_length(self, store, store_path):
        """A chunked body (no Content-Length, wsgi.input_terminated) is read only up to the limit + 1."""
        app = XCAPMiddleware(None, store=store, default_domain="example.com", max_body_size=1000)

        class CountingInput(io.BytesIO):
            consumed = 0

            def read(self, size=-1):
                data = super().read(size)
                CountingInput.consumed += len(data)
                return data

        request = Request.blank(ALICE_DOC, method="PUT", headers={"Content-Type": RL_MIME})
        request.environ.update({"REMOTE_USER": ALICE, "wsgi.input_terminated": True,
                                "wsgi.input": CountingInput(b"<a>" + b" " * 10_000_000 + b"</a>")})
        request.environ.pop("CONTENT_LENGTH", None)
        assert request.get_response(app).status_int == 413
        assert CountingInput.consumed <= 1001
        assert rows(store_path) == []

    def test_uri_limit_414(self, store):
        app = XCAPMiddleware(None, store=store, default_domain="example.com", max_uri_length=300)
        assert call(app, "GET", ALICE_PATH + "/" + "x" * 300).status_int == 414
        long_query = ALICE_DOC + "/~~/resource-lists?" + "xmlns(a=urn:x)" * 40
        assert call(app, "GET", long_query).status_int == 414
        assert call(app, "GET", ALICE_DOC).status_int == 404  # short URIs still served

    def test_limits_apply_before_authorization(self, store):
        """Unauthenticated clients cannot make the server buffer huge bodies either."""
        app = XCAPMiddleware(None, store=store, default_domain="example.com", max_uri_length=300)
        assert call(app, "GET", ALICE_PATH + "/" + "x" * 300, user=None).status_int == 414


# -- XML attacks -----------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="&lol9;"/></resource-lists>"""

XXE_FILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE resource-lists [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="x"><entry uri="sip:a@b"><display-name>&xxe;</display-name></entry></list>
</resource-lists>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE r [ <!ENTITY % p SYSTEM "file:///etc/passwd"> <!ENTITY % q "<!ENTITY leak '%p;'>"> %q; ]>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="&leak;"/></resource-lists>"""

XXE_NETWORK = b"""<!-- comment first --><?xml-stylesheet href="x"?>
<!DOCTYPE resource-lists SYSTEM "http://127.0.0.1:9/evil.dtd">
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>"""

XXE_EXTERNAL_DTD_LOCAL = b"""<?xml version="1.0"?>
<!DOCTYPE resource-lists PUBLIC "-//x//y" "file:///etc/passwd">
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>"""

UNDEFINED_ENTITY = b"""<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="&xxe;"/></resource-lists>"""


class TestXMLAttacks:
    @pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE_FILE, XXE_PARAMETER, XXE_NETWORK, XXE_EXTERNAL_DTD_LOCAL,
                                      UNDEFINED_ENTITY, b"\xef\xbb\xbf" + XXE_FILE],
                             ids=["billion-laughs", "xxe-file", "xxe-parameter-entity", "external-dtd-network",
                                  "external-dtd-file", "undefined-entity", "bom-then-doctype"])
    def test_document_put_rejected_nothing_stored(self, app, store_path, body):
        response = put_doc(app, body=body)
        assert_xcap_error(response, "not-well-formed")
        assert b"root:" not in response.body
        assert rows(store_path) == []

    @pytest.mark.parametrize("body", [
        b'<!DOCTYPE entry [<!ENTITY x SYSTEM "file:///etc/passwd">]><entry uri="sip:c@example.com">&x;</entry>',
        b'<entry uri="sip:c@example.com"><display-name>&x;</display-name></entry>',
    ])
    def test_element_put_rejected_document_unchanged(self, app, store_path, body):
        assert put_doc(app).status_int == 201
        before = rows(store_path)
        response = call(app, "PUT", ALICE_DOC + '/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B2%5D', body,
                        **{"Content-Type": "application/xcap-el+xml"})
        assert response.status_int == 409, response.body
        assert b"root:" not in response.body
        assert rows(store_path) == before

    def test_xinclude_is_not_processed(self, app, store_path):
        body = (b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" '
                b'xmlns:xi="http://www.w3.org/2001/XInclude">'
                b'<xi:include href="file:///etc/passwd" parse="text"/></resource-lists>')
        response = put_doc(app, body=body)
        assert b"root:" not in response.body
        for row in rows(store_path):
            assert b"root:" not in row[3]

    def test_deep_nesting_rejected(self, app, store_path):
        depth = xmlsafe.MAX_DEPTH + 5
        body = (b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">' + b"<x>" * depth
                + b"</x>" * depth + b"</resource-lists>")
        assert put_doc(app, body=body).status_int == 409
        assert rows(store_path) == []

    def test_very_deep_nesting_does_not_crash(self, app, store_path):
        body = b"<a>" * 100_000 + b"</a>" * 100_000
        assert put_doc(app, body=body).status_int == 409
        assert rows(store_path) == []

    def test_node_count_limit_is_constraint_failure(self, app, store_path):
        entries = b"".join(b'<entry uri="sip:u%d@example.com"/>' % i for i in range(xmlsafe.MAX_NODES // 2 + 1))
        body = (b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="big">'
                + entries + b"</list></resource-lists>")
        assert_xcap_error(put_doc(app, body=body), "constraint-failure")
        assert rows(store_path) == []

    def test_node_count_just_under_the_limit_is_accepted_by_the_parser(self):
        body = b"<r>" + b"<a/>" * (xmlsafe.MAX_NODES - 1) + b"</r>"
        assert xmlsafe.parse_document(body).getroot().tag == "r"


def _nested(depth: int, leaves: int = 0) -> etree._Element:
    """``depth`` levels of elements (the root is level 1: ``depth - 1`` nested <x>, then the
    ``leaves`` empty <y/> at level ``depth``); no text, so it holds ``depth - 1 + leaves`` nodes."""
    return etree.fromstring(b"<x>" * (depth - 1) + b"<y/>" * leaves + b"</x>" * (depth - 1))


def test_limits_at_their_exact_boundaries():
    """check_limits decides both limits in one XPath and finds the failing one only when they are
    exceeded: the boundaries, and which error comes first, are those of the two separate checks."""
    xmlsafe.check_limits(_nested(xmlsafe.MAX_DEPTH, 1))
    with pytest.raises(NotWellFormed, match="deeper"):
        xmlsafe.check_limits(_nested(xmlsafe.MAX_DEPTH + 1, 1))
    at_limit = _nested(2, xmlsafe.MAX_NODES - 1)
    assert at_limit.xpath("count(//node()) + count(//@*)") == xmlsafe.MAX_NODES
    xmlsafe.check_limits(at_limit)
    with pytest.raises(ConstraintFailure):
        xmlsafe.check_limits(_nested(2, xmlsafe.MAX_NODES))
    with pytest.raises(NotWellFormed, match="deeper"):  # both exceeded: depth is reported
        xmlsafe.check_limits(_nested(xmlsafe.MAX_DEPTH + 1, xmlsafe.MAX_NODES))


def _has_doctype_by_loop(data: bytes) -> bool:
    """The prolog scan as a loop over single items (what xmlsafe.has_doctype matches in one go)."""
    item = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.S)
    position = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    while (match := item.match(data, position)) and match.end() != position:
        position = match.end()
    return data[position : position + 9].upper() == b"<!DOCTYPE"


PROLOG_PIECES = [b" ", b"\n", b"<?xml version='1.0'?>", b"<?p", b"?>", b"<!--", b"-->", b"<!-- c -->",
                 b"<!DOCTYPE r>", b"<!doctype", b"<r/>", b"\xef\xbb\xbf", b"<", b"-", b"?", b"!DOCTYPE"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(PROLOG_PIECES), max_size=8))
def test_doctype_is_found_after_any_prolog(pieces):
    data = b"".join(pieces)
    assert xmlsafe.has_doctype(data) == _has_doctype_by_loop(data)


# -- traversal and disguised XUIs --------------------------------------------------------------------

TRAVERSALS = [
    "/xcap-root/resource-lists/users/sip:bob@example.com/../sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/%2e%2e/sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/%2E%2E/%2E%2E/users/sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com%2F..%2Fsip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/index%2F..%2F..%2Fsip:alice@example.com%2Findex",
    "/xcap-root/resource-lists/users/sip:bob@example.com/./../sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/index/~~/../../sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/index/%7E%7E/../../../sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/%7e%7e/%2e%2e/sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/..%2Fsip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip%3Abob%40example.com%2F%2E%2E%2Fsip%3Aalice%40example.com/index",
    "/xcap-root/resource-lists/users/%2e%2e/users/sip:alice@example.com/index",
    "/xcap-root/resource-lists/global/../users/sip:alice@example.com/index",
    "/xcap-root/../xcap-root/resource-lists/users/sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/index%00/../../sip:alice@example.com/index",
    "/xcap-root/resource-lists/users/sip:bob@example.com/%252e%252e/sip:alice@example.com/index",
]

DISGUISES = [
    "sip%3Aalice%40EXAMPLE.com", "SIP:alice@example.com", "sip:alice@EXAMPLE.COM", "sips:alice@example.com",
    "alice@example.com", "alice", "sip:alice@example.com;transport=tcp", "sip:alice@example.com:5060",
    "%73%69%70%3a%61%6c%69%63%65%40%65%78%61%6d%70%6c%65%2e%63%6f%6d", "sip:alice:secret@example.com",
    "tel:alice", "sip:alice@example.com.", "sip:alice@[example.com]",
]


class TestTraversal:
    @pytest.fixture
    def seeded(self, app, store_path):
        assert put_doc(app).status_int == 201
        bob_doc = RL_DOC.replace(b"friends", b"bobs")
        assert put_doc(app, path="/xcap-root/resource-lists/users/sip:bob@example.com/index", body=bob_doc,
                       user=BOB).status_int == 201
        return rows(store_path)

    @pytest.mark.parametrize("path", TRAVERSALS)
    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
    def test_bob_cannot_reach_alice(self, app, store_path, seeded, path, method):
        body = RL_DOC.replace(b"friends", b"pwned") if method == "PUT" else None
        response = call(app, method, path, body, user=BOB, **({"Content-Type": RL_MIME} if body else {}))
        assert response.status_int in (400, 403, 404, 405, 409) or (
            # %252e%252e is a literal folder named "%2e%2e" in bob's own tree: his to create
            response.status_int == 201 and "%252e" in path), (response.status, path)
        assert b"friends" not in response.body
        assert rows(store_path)[:2] == seeded  # alice's and bob's rows untouched
        assert all(r[0] == "bob" and "/users/sip:bob@example.com/" in r[2] for r in rows(store_path)[2:])

    @pytest.mark.parametrize("path", TRAVERSALS)
    def test_same_through_path_info_only(self, app, store_path, seeded, path):
        """Servers that give no raw URI: the middleware re-encodes the decoded PATH_INFO."""
        request = Request.blank("/")
        request.environ["PATH_INFO"] = __import__("urllib.parse").parse.unquote(path, encoding="latin-1")
        request.environ["REMOTE_USER"] = BOB
        request.method = "DELETE"
        response = request.get_response(app)
        assert response.status_int in (400, 403, 404, 405), (response.status, path)
        assert rows(store_path)[:2] == seeded

    @pytest.mark.parametrize("xui", DISGUISES)
    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
    def test_disguised_xui_is_still_alice_or_nobody(self, app, store_path, seeded, xui, method):
        path = f"/xcap-root/resource-lists/users/{xui}/index"
        body = RL_DOC.replace(b"friends", b"pwned") if method == "PUT" else None
        response = call(app, method, path, body, user=BOB, **({"Content-Type": RL_MIME} if body else {}))
        assert response.status_int in (400, 403, 404), (response.status, xui)
        assert b"friends" not in response.body
        assert rows(store_path) == seeded
        assert b"pwned" not in b"".join(r[3] for r in rows(store_path))

    @pytest.mark.parametrize("xui", ["sip%3Aalice%40EXAMPLE.com", "SIP:alice@example.com", "sip:alice@EXAMPLE.COM"])
    def test_disguised_forms_are_the_same_document_for_alice(self, app, seeded, xui):
        response = call(app, "GET", f"/xcap-root/resource-lists/users/{xui}/index")
        assert response.status_int == 200 and response.body == RL_DOC

    def test_user_part_case_is_another_account(self, app, seeded):
        assert call(app, "GET", "/xcap-root/resource-lists/users/sip:ALICE@example.com/index").status_int == 403


# -- SQL metacharacters ----------------------------------------------------------------------------

SQL = ["'", "''", "' OR '1'='1", "'; DROP TABLE xcap; --", '" OR ""="', "\\", "\\'", "%", "_", "`", "1;DELETE FROM xcap",
       "') OR 1=1 --", "x' UNION SELECT doc FROM xcap --"]


def pct(text):
    from urllib.parse import quote

    return quote(text, safe="")


class TestSQLMetacharacters:
    def _check_inert(self, make_app, store, rows_of):
        app = make_app(None)
        assert put_doc(app).status_int == 201
        before = rows_of()
        for payload in SQL:
            enc = pct(payload)
            user = f"sip:{payload}@example.com"
            doc = f"/xcap-root/resource-lists/users/{pct(user)}/index"
            # user part of the XUI: that user writes and reads their own document
            created = call(app, "PUT", doc, RL_DOC.replace(b"friends", b"sql"), user=f"{payload}@example.com",
                           **{"Content-Type": RL_MIME})
            assert created.status_int in (201, 200), (payload, created.status, created.body)
            assert call(app, "GET", doc, user=f"{payload}@example.com").body == RL_DOC.replace(b"friends", b"sql")
            # and cannot read alice's through it
            assert call(app, "GET", ALICE_DOC, user=f"{payload}@example.com").status_int == 403
            # document name, folder, AUID, domain, node selector and query
            for path in (f"{ALICE_PATH}/{enc}", f"{ALICE_PATH}/{enc}/index", f"/xcap-root/{enc}/users/{ALICE}/index",
                         f"/xcap-root/resource-lists/users/sip:alice@{enc}/index",
                         f"{ALICE_DOC}/~~/resource-lists/list%5B@name=%22{enc}%22%5D",
                         f"{ALICE_DOC}/~~/resource-lists/{enc}",
                         f"{ALICE_DOC}/~~/p:resource-lists?xmlns(p={enc})"):
                for method in ("GET", "DELETE"):
                    response = call(app, method, path)
                    assert response.status_int in (400, 403, 404, 409), (payload, path, response.status)
            response = call(app, "PUT", f"{ALICE_PATH}/{enc}", RL_DOC, **{"Content-Type": RL_MIME})
            assert response.status_int in (201, 400), (payload, response.status)
        assert call(app, "GET", ALICE_DOC).body == RL_DOC
        after = rows_of()
        assert after[: len(before)] == before  # nothing else changed, nothing dropped
        assert len(after) == 1 + 2 * len(SQL)

    def test_sqlite(self, store, store_path):
        self._check_inert(lambda host: XCAPMiddleware(host, store=store, default_domain="example.com"), store,
                          lambda: rows(store_path))

    def test_mysql(self):
        from mysql_support import connect, temporary_database

        from xcap_wsgi.storage import open_store

        with temporary_database(tables="initdb") as url:
            store = open_store(url)
            try:
                def rows_of():
                    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
                        cur.execute("SELECT username, domain, doc_uri, doc FROM xcap ORDER BY id")
                        return [tuple(r) for r in cur.fetchall()]

                self._check_inert(lambda host: XCAPMiddleware(host, store=store, default_domain="example.com"),
                                  store, rows_of)
            finally:
                store.close()


# -- over HTTP: waitress, Basic via DigestAuthMiddleware, raw request lines ------------------------


@pytest.fixture
def http_server(tmp_path, store):
    import waitress

    subscribers = SQLiteSubscribers(str(tmp_path / "auth.sqlite3"))
    subscribers.add("alice", "example.com", "wonder land")
    subscribers.add("bob", "example.com", "builder")
    app = DigestAuthMiddleware(XCAPMiddleware(None, store=store, default_domain="example.com", max_body_size=4096),
                               subscribers=subscribers, realm="example.com", basic=True)
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server.effective_port
    server.close()
    thread.join(timeout=5)


def over_http(port, method, path, body=None, user=None, headers=None):
    headers = dict(headers or {})
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest(method, path, skip_accept_encoding=True)  # the path goes out byte for byte
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body or b"")))
    connection.endheaders(body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def test_over_http_traversal_and_disguise(http_server, store_path):
    port = http_server
    assert over_http(port, "PUT", ALICE_DOC, RL_DOC, "alice:wonder land", {"Content-Type": RL_MIME})[0] == 201
    seeded = rows(store_path)
    for path in TRAVERSALS + [f"/xcap-root/resource-lists/users/{x}/index" for x in DISGUISES]:
        status, body = over_http(port, "GET", path, user="bob:builder")
        assert status in (400, 403, 404), (path, status)
        assert b"friends" not in body
        status, _ = over_http(port, "DELETE", path, user="bob:builder")
        assert status in (400, 403, 404, 405)
    assert rows(store_path) == seeded
    assert over_http(port, "GET", ALICE_DOC)[0] == 401
    assert over_http(port, "GET", ALICE_DOC, user="alice:wrong")[0] == 401
    assert over_http(port, "GET", ALICE_DOC, user="alice:wonder land") == (200, RL_DOC)


def test_over_http_limits(http_server, store_path):
    port = http_server
    status, _ = over_http(port, "PUT", ALICE_DOC, b"<a/>" * 2000, "alice:wonder land", {"Content-Type": RL_MIME})
    assert status == 413
    status, _ = over_http(port, "GET", ALICE_PATH + "/" + "x" * 5000, user="alice:wonder land")
    assert status == 414
    status, _ = over_http(port, "PUT", ALICE_DOC, XXE_FILE, "alice:wonder land", {"Content-Type": RL_MIME})
    assert status == 409
    assert rows(store_path) == []
