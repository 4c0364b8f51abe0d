"""Node operations through the middleware: MIME types, ETags, 201/200, 405, 409, conditions, events."""

from __future__ import annotations

import pytest
from conftest import ALICE_DOC, RL_DOC, CountingStore, call, put_doc
from lxml import etree
from test_documents import assert_xcap_error

from xcap_wsgi import SQLiteStore, XCAPMiddleware

LIST = ALICE_DOC + "/~~/resource-lists/list%5B@name=%22friends%22%5D"
EL = {"Content-Type": "application/xcap-el+xml"}
ATT = {"Content-Type": "application/xcap-att+xml"}


@pytest.fixture
def events():
    return []


@pytest.fixture
def napp(tmp_path, events):
    app = XCAPMiddleware(None, store=SQLiteStore(str(tmp_path / "n.sqlite3")), anonymous=True, on_change=events.append)
    put_doc(app)
    events.clear()
    return app


def doc(app):
    return call(app, "GET", ALICE_DOC)


class TestNodeGet:
    def test_element_attribute_and_namespace_have_their_mime_types_and_the_document_etag(self, napp):
        etag = doc(napp).headers["ETag"]
        for path, mime, body in [
            (LIST + "/entry", "application/xcap-el+xml",
             b'<entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry>'),
            (LIST + "/entry/@uri", "application/xcap-att+xml", b"sip:bob@example.com"),
            (LIST + "/namespace::*", "application/xcap-ns+xml",
             b'<list xmlns="urn:ietf:params:xml:ns:resource-lists"/>'),
        ]:
            response = call(napp, "GET", path)
            assert (response.status_int, response.headers["Content-Type"], response.body) == (200, mime, body)
            assert response.headers["ETag"] == etag

    @pytest.mark.parametrize("suffix", ["/nothing", "/entry[2]", "/entry/@nothing"])
    def test_no_match_is_404(self, napp, suffix):
        assert call(napp, "GET", LIST + suffix.replace("[", "%5B").replace("]", "%5D")).status_int == 404

    def test_node_get_of_a_missing_document_is_404(self, napp):
        call(napp, "DELETE", ALICE_DOC)
        assert call(napp, "GET", LIST).status_int == 404

    @pytest.mark.parametrize("selector", ["resource-lists/list[", "resource-lists/p:list", "resource-lists//list"])
    def test_malformed_selector_or_unbound_prefix_is_400(self, napp, selector):
        response = call(napp, "GET", ALICE_DOC + "/~~/" + selector.replace("[", "%5B"))
        assert response.status_int == 400

    def test_conditional_node_get(self, napp):
        etag = doc(napp).headers["ETag"]
        assert call(napp, "GET", LIST, **{"If-None-Match": etag}).status_int == 304
        assert call(napp, "GET", LIST, **{"If-Match": '"other"'}).status_int == 412


class TestNodeWrites:
    def test_element_create_is_201_replace_200_and_etags_change(self, napp, events):
        before = doc(napp).headers["ETag"]
        new = b'<entry uri="sip:carol@example.com"/>'
        path = LIST + "/entry%5B@uri=%22sip:carol@example.com%22%5D"
        created = call(napp, "PUT", path, new, **EL)
        assert created.status_int == 201 and created.headers["ETag"] != before
        assert call(napp, "GET", path).body == new
        replaced = call(napp, "PUT", path, b'<entry uri="sip:carol@example.com"><display-name>C</display-name></entry>', **EL)
        assert replaced.status_int == 200
        assert doc(napp).headers["ETag"] == replaced.headers["ETag"]
        assert [e.operation for e in events] == ["put", "put"]
        assert [op.op for op in events[0].patch] == ["add"] and [op.op for op in events[1].patch] == ["replace"]

    def test_attribute_put_and_delete(self, napp):
        path = LIST + "/entry/@uri"
        assert call(napp, "PUT", path, b"sip:robert@example.com", **ATT).status_int == 200
        assert b'uri="sip:robert@example.com"' in doc(napp).body
        extension = LIST + "/@t:display?xmlns(t=urn:test:ext)"  # ##other attributes are allowed by the schema
        assert call(napp, "PUT", extension, b"yes", **ATT).status_int == 201
        assert call(napp, "GET", extension).body == b"yes"
        response = call(napp, "DELETE", extension)
        assert response.status_int == 200 and response.headers["ETag"] == doc(napp).headers["ETag"]
        assert b"display=" not in doc(napp).body
        assert_xcap_error(call(napp, "PUT", LIST + "/@display", b"yes", **ATT), "schema-validation-error")

    def test_wrong_content_type_for_the_resource_is_415(self, napp):
        assert call(napp, "PUT", LIST + "/entry", b"<entry/>", **ATT).status_int == 415
        assert call(napp, "PUT", LIST + "/entry/@uri", b"x", **EL).status_int == 415
        assert call(napp, "PUT", LIST + "/entry", b"<entry/>",
                    **{"Content-Type": "application/resource-lists+xml"}).status_int == 415

    @pytest.mark.parametrize("method", ["PUT", "DELETE"])
    def test_namespace_selector_is_read_only(self, napp, method):
        response = call(napp, method, LIST + "/namespace::*", b"<x/>" if method == "PUT" else None, **EL)
        assert response.status_int == 405 and response.headers["Allow"].replace(" ", "") == "GET,HEAD"

    def test_no_parent_names_the_closest_ancestor(self, napp):
        response = call(napp, "PUT", LIST + "/missing/entry", b"<entry/>", **EL)
        condition = assert_xcap_error(response, "no-parent")
        ancestor = condition.find("{urn:ietf:params:xml:ns:xcap-error}ancestor").text
        assert ancestor.startswith("http://localhost/xcap-root/resource-lists/users/sip:alice@example.com/index/~~/")
        assert doc(napp).body == RL_DOC

    def test_node_put_on_a_missing_document_is_no_parent(self, napp):
        call(napp, "DELETE", ALICE_DOC)
        response = call(napp, "PUT", LIST, b'<list name="friends"/>', **EL)
        assert_xcap_error(response, "no-parent")

    def test_cannot_insert(self, napp):
        response = call(napp, "PUT", LIST + "/entry%5B@uri=%22sip:x@y%22%5D", b'<entry uri="sip:other@y"/>', **EL)
        assert_xcap_error(response, "cannot-insert")
        assert doc(napp).body == RL_DOC

    def test_not_xml_frag(self, napp):
        response = call(napp, "PUT", LIST + "/entry", b"<entry/><entry/>", **EL)
        assert_xcap_error(response, "not-xml-frag")

    def test_schema_invalid_result_is_refused_and_nothing_changes(self, napp):
        response = call(napp, "PUT", LIST + "/bogus", b"<bogus/>", **EL)
        assert_xcap_error(response, "schema-validation-error")
        assert doc(napp).body == RL_DOC

    def test_node_writes_check_the_document_etag(self, napp):
        etag = doc(napp).headers["ETag"]
        assert call(napp, "DELETE", LIST + "/entry", **{"If-Match": '"stale"'}).status_int == 412
        assert call(napp, "DELETE", LIST + "/entry", **{"If-Match": etag}).status_int == 200
        assert b"<entry" not in doc(napp).body

    def test_failed_writes_emit_no_event(self, napp, events):
        call(napp, "PUT", LIST + "/entry%5B@uri=%22sip:x@y%22%5D", b'<entry uri="sip:other@y"/>', **EL)
        call(napp, "DELETE", LIST + "/entry", **{"If-Match": '"stale"'})
        call(napp, "PUT", ALICE_DOC, b"<broken", **{"Content-Type": "application/resource-lists+xml"})
        assert events == []


class TestChangeEvents:
    def test_document_events_carry_the_identity_and_etags(self, napp, events):
        old = doc(napp).headers["ETag"].strip('"')
        new = put_doc(napp, body=RL_DOC.replace(b"Bob", b"B")).headers["ETag"].strip('"')
        call(napp, "DELETE", ALICE_DOC)
        put_event, delete_event = events
        assert (put_event.auid, put_event.xui, put_event.username, put_event.domain) == \
            ("resource-lists", "sip:alice@example.com", "alice", "example.com")
        assert (put_event.previous_etag, put_event.new_etag) == (old, new)
        assert put_event.doc_uri == "/xcap-root/resource-lists/users/sip:alice@example.com/index"
        assert (delete_event.operation, delete_event.previous_etag, delete_event.new_etag) == ("delete", new, None)
        diff = etree.fromstring(delete_event.xcap_diff())
        document = diff.find("{urn:ietf:params:xml:ns:xcap-diff}document")
        assert document.get("sel") == "resource-lists/users/sip:alice@example.com/index"
        assert document.get("previous-etag") == new and document.get("new-etag") is None
        assert diff.get("xcap-root") == "http://localhost/xcap-root/"

    def test_patch_selectors_select_the_changed_node(self, napp, events):
        call(napp, "PUT", LIST + "/entry%5B@uri=%22sip:carol@example.com%22%5D", b'<entry uri="sip:carol@example.com"/>', **EL)
        call(napp, "DELETE", LIST + "/entry%5B@uri=%22sip:bob@example.com%22%5D")
        add, remove = events
        (add_op,) = add.patch
        tree = etree.fromstring(doc_after_add := RL_DOC.replace(
            b"</entry>\n  </list>", b'</entry><entry uri="sip:carol@example.com"/>\n  </list>'))
        assert tree.xpath("/" + add_op.sel)[0].get("uri") == "sip:bob@example.com" and add_op.pos == "after"
        (remove_op,) = remove.patch
        assert remove_op.op == "remove"
        assert etree.fromstring(doc_after_add).xpath("/" + remove_op.sel)[0].get("uri") == "sip:bob@example.com"
        diff = etree.fromstring(add.xcap_diff())
        added = diff.find(".//{urn:ietf:params:xml:ns:xcap-diff}add")
        assert added[0].tag == "{urn:ietf:params:xml:ns:resource-lists}entry"

    def test_a_failing_sink_does_not_fail_the_request(self, tmp_path):
        def broken(event):
            raise RuntimeError("sink down")

        app = XCAPMiddleware(None, store=SQLiteStore(str(tmp_path / "b.sqlite3")), anonymous=True, on_change=[broken])
        assert put_doc(app).status_int == 201


class TestLargeDocuments:
    """Large documents (64 KiB and more) through the editor's per-thread parse cache."""

    @staticmethod
    def big(marker: str, entries: int = 1500) -> bytes:
        items = "".join(f'<entry uri="sip:{marker}{i}@example.com"><display-name>{marker} {i}</display-name></entry>'
                        for i in range(entries))
        body = f'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="l">{items}</list></resource-lists>'
        return body.encode()

    def test_reads_always_reflect_the_latest_write(self, napp):
        bob_doc = ALICE_DOC.replace("alice", "bob")
        alice, bob = self.big("a"), self.big("b")
        assert len(alice) >= 64 * 1024
        put_doc(napp, body=alice)
        put_doc(napp, path=bob_doc, body=bob, user="sip:bob@example.com")
        entry = "/~~/resource-lists/list/entry%5B@uri=%22sip:a7@example.com%22%5D"
        assert call(napp, "GET", ALICE_DOC + entry).body.startswith(b'<entry uri="sip:a7@example.com">')
        replaced = call(napp, "PUT", ALICE_DOC + entry, b'<entry uri="sip:a7@example.com"/>', **EL)
        assert replaced.status_int == 200
        assert call(napp, "GET", ALICE_DOC + entry).body == b'<entry uri="sip:a7@example.com"/>'
        assert call(napp, "GET", bob_doc + "/~~/resource-lists/list/entry%5B1%5D/@uri",
                    user="sip:bob@example.com").body == b"sip:b0@example.com"
        assert call(napp, "DELETE", ALICE_DOC + entry).status_int == 200
        assert call(napp, "GET", ALICE_DOC + entry).status_int == 404
        document = call(napp, "GET", ALICE_DOC).body
        assert b"sip:a7@" not in document and document.count(b"<entry ") == 1499
        # the bytes outside the edits are untouched
        assert document == alice.replace(
            b'<entry uri="sip:a7@example.com"><display-name>a 7</display-name></entry>', b"")

    def test_threads_editing_different_large_documents(self, napp):
        import threading

        users = [f"u{n}" for n in range(4)]
        for user in users:
            put_doc(napp, path=ALICE_DOC.replace("alice", user), body=self.big(user, 900), user=f"sip:{user}@example.com")
        failures = []

        def work(user):
            path = ALICE_DOC.replace("alice", user)
            for i in range(15):
                node = f"{path}/~~/resource-lists/list/entry%5B@uri=%22sip:{user}{i}@example.com%22%5D/@uri"
                got = call(napp, "GET", node, user=f"sip:{user}@example.com").body
                if got != f"sip:{user}{i}@example.com".encode():
                    failures.append((user, i, got[:60]))

        threads = [threading.Thread(target=work, args=(u,)) for u in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []


def test_node_writes_to_one_document_from_threads_of_one_process_take_turns(tmp_path):
    """No thread redoes its edit because another thread of the process changed the document in
    between: each element PUT writes once, and every entry is there."""
    import threading

    store = CountingStore(SQLiteStore(str(tmp_path / "xcap.sqlite3")), read_delay=0.005)
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    assert put_doc(app).status_int == 201
    writes_before, statuses = store.puts, []

    def add(n):
        for i in range(5):
            node = f"{ALICE_DOC}/~~/resource-lists/list/entry%5B@uri=%22sip:t{n}-{i}@example.com%22%5D"
            body = f'<entry uri="sip:t{n}-{i}@example.com"/>'.encode()
            statuses.append(call(app, "PUT", node, body, **{"Content-Type": "application/xcap-el+xml"}).status_int)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 30
    assert store.puts - writes_before == 30  # no compare-and-swap was lost and redone
    document = call(app, "GET", ALICE_DOC).body
    assert all(f"sip:t{n}-{i}@example.com".encode() in document for n in range(6) for i in range(5))
