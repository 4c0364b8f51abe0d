"""Generic schema-less application usages configured without code: the ``usage`` setting
(``--usage AUID=NAMESPACE;MIME-TYPE``, repeatable; ini/environment: comma or newline list)."""

from __future__ import annotations

import urllib.parse

import pytest
from conftest import call
from lxml import etree
from mysql_support import db_url, http_request, kamailio, kamailio_database, run_xcap_wsgi  # noqa: F401
from test_documents import assert_xcap_error

from xcap_wsgi import SQLiteStore
from xcap_wsgi.admin import check_documents
from xcap_wsgi.build import build_middleware, usage_registry
from xcap_wsgi.cli import main
from xcap_wsgi.settings import parse_usages, resolve
from xcap_wsgi.storage import DocumentKey

NOTES = "org.example.notes=urn:example:notes;application/vnd.example.notes+xml"
TODO = "org.example.todo=urn:example:todo;application/vnd.example.todo+xml"
NOTES_MIME = "application/vnd.example.notes+xml"
DOC = "/xcap-root/org.example.notes/users/sip:alice@example.com/work/today.xml"
BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<notes xmlns="urn:example:notes" xmlns:x="urn:example:other">\n'
        b'  <note id="a" x:colour="red">Buy milk</note>\n'
        b'  <anything-at-all><x:whatever/></anything-at-all>\n'
        b'</notes>\n')


# -- the setting ----------------------------------------------------------------------------------


def test_repeated_and_listed_forms_parse_to_the_same_entries():
    expected = (NOTES, TODO)
    assert parse_usages([NOTES, TODO]) == expected  # --usage A --usage B
    assert parse_usages(f"{NOTES}, {TODO}") == expected  # XCAP_USAGE=A,B
    assert parse_usages(f"\n{NOTES}\n{TODO}\n") == expected  # ini, one per line
    assert parse_usages(["a=urn:x=y;Text/XML"]) == ("a=urn:x=y;text/xml",)  # "=" in the namespace
    assert resolve({}, environ={"XCAP_USAGE": NOTES})["usage"] == (NOTES,)


@pytest.mark.parametrize("entry, words", [
    ("org.example.notes", "AUID=NAMESPACE;MIME-TYPE"),
    ("org.example.notes=urn:example:notes", "AUID=NAMESPACE;MIME-TYPE"),
    ("org/notes=urn:x;application/xml", "AUID"),
    ("notes=urn:x;xml", "MIME type"),
    ("notes=urn x;application/xml", "namespace"),
    ("resource-lists=urn:x;application/xml", "already an application usage"),
    (f"{NOTES},{NOTES}", "more than once"),
])
def test_malformed_entries_are_refused_with_the_reason(entry, words):
    with pytest.raises(ValueError, match=words):
        resolve({"usage": entry}, environ={})


def test_serve_refuses_a_bad_usage_before_starting(capsys):
    assert main(["serve", "--usage", "notes=urn:x;xml", "--db", "sqlite:///:memory:"]) == 2
    assert "not a MIME type" in capsys.readouterr().err


def test_registry_has_the_usage_with_doc_type_64_and_no_schema():
    usage = usage_registry(resolve({"usage": NOTES}, environ={})).get("org.example.notes")
    assert (usage.mime_type, usage.default_namespace, usage.doc_type) == (NOTES_MIME, "urn:example:notes", 64)
    assert usage.validators == () and usage.document_names is None and usage.global_documents == ()


# -- through the middleware, on a real SQLite store -------------------------------------------------


@pytest.fixture
def generic(tmp_path):
    store = SQLiteStore(str(tmp_path / "generic.sqlite3"))
    values = resolve({"usage": f"{NOTES},{TODO}", "default_domain": "example.com"}, environ={})
    yield build_middleware(None, values, store=store), store
    store.close()


def test_document_element_and_attribute_operations(generic):
    app, store = generic
    put = call(app, "PUT", DOC, BODY, **{"Content-Type": NOTES_MIME})
    assert put.status_int == 201
    response = call(app, "GET", DOC)
    assert (response.status_int, response.body, response.content_type) == (200, BODY, NOTES_MIME)
    [info] = store.list_documents("alice", "example.com")
    assert (info.doc_uri, info.doc_type) == (DOC, 64)

    # element: GET, PUT (new), DELETE; unprefixed steps are in the usage's default namespace
    note = DOC + "/~~/notes/note%5B@id=%22a%22%5D"
    assert call(app, "GET", note).body == b'<note id="a" x:colour="red">Buy milk</note>'
    new = DOC + "/~~/notes/note%5B@id=%22b%22%5D"
    assert call(app, "PUT", new, b'<note id="b">Call Bob</note>',
                **{"Content-Type": "application/xcap-el+xml"}).status_int == 201
    assert call(app, "GET", new).body == b'<note id="b">Call Bob</note>'
    # attribute: GET, PUT, DELETE (other namespaces through xmlns())
    colour = note + "/@x:colour?xmlns(x=urn:example:other)"
    assert call(app, "GET", colour).body == b"red"
    assert call(app, "PUT", colour, b"blue", **{"Content-Type": "application/xcap-att+xml"}).status_int == 200
    assert call(app, "GET", colour).body == b"blue"
    assert call(app, "DELETE", colour).status_int == 200
    assert call(app, "GET", colour).status_int == 404
    assert call(app, "DELETE", new).status_int == 200
    assert call(app, "GET", DOC).body == BODY.replace(b' x:colour="red"', b"")

    # any element names (no schema), but well-formed UTF-8 of the right type only
    assert_xcap_error(call(app, "PUT", DOC, b"<notes xmlns='urn:example:notes'>", **{"Content-Type": NOTES_MIME}),
                      "not-well-formed")
    assert_xcap_error(call(app, "PUT", DOC, "<notes/>".encode("utf-16-le"), **{"Content-Type": NOTES_MIME}),
                      "not-utf-8")
    assert call(app, "PUT", DOC, BODY, **{"Content-Type": "application/xml"}).status_int == 415
    assert call(app, "DELETE", DOC).status_int == 200
    assert call(app, "GET", DOC).status_int == 404


def test_caps_and_directory_list_it_and_unknown_paths_stay_404(generic):
    app, _ = generic
    caps = etree.fromstring(call(app, "GET", "/xcap-root/xcap-caps/global/index").body)
    auids = [a.text for a in caps.iter("{urn:ietf:params:xml:ns:xcap-caps}auid")]
    assert "org.example.notes" in auids and "org.example.todo" in auids
    call(app, "PUT", DOC, BODY, **{"Content-Type": NOTES_MIME})
    listing = etree.fromstring(call(app, "GET", "/xcap-root/org.openmobilealliance.xcap-directory/users/"
                                    "sip:alice@example.com/directory.xml").body)
    folder = listing.find("{urn:oma:xml:xdm:xcap-directory}folder[@auid='org.example.notes']")
    assert [e.get("uri").endswith("/org.example.notes/users/sip:alice@example.com/work/today.xml")
            for e in folder] == [True]
    assert call(app, "GET", "/xcap-root/org.example.notes/global/index").status_int == 404
    assert call(app, "GET", "/xcap-root/org.example.unknown/users/sip:alice@example.com/x").status_int == 404


def test_check_knows_the_usage_from_the_setting(generic, tmp_path, capsys):
    app, store = generic
    call(app, "PUT", DOC, BODY, **{"Content-Type": NOTES_MIME})
    store.put(DocumentKey("alice", "example.com", DOC.replace("today", "broken"), 64), b"<notes>", None)
    registry = usage_registry(resolve({"usage": NOTES}, environ={}))
    problems = check_documents(store, registry, "example.com")
    assert [(p.doc_uri.rsplit("/", 1)[1], p.message.split(":")[0]) for p in problems] == [("broken.xml", "not-well-formed")]
    url = f"sqlite:///{store.path}"
    assert main(["check", "--db", url, "--usage", NOTES]) == 1
    out = capsys.readouterr().out
    assert "today.xml" not in out and "broken.xml" in out
    main(["check", "--db", url])  # without the setting the rows belong to no usage
    assert "today.xml" in capsys.readouterr().out


def test_paste_deploy_section(tmp_path):
    """PasteDeploy: the same ``usage`` key, one entry per line, in the filter's section."""
    from xcap_wsgi.paste import app_factory

    app = app_factory({}, db=f"sqlite:///{tmp_path / 'paste.sqlite3'}", anonymous="true",
                      usage=f"\n{NOTES}\n{TODO}")
    assert call(app, "PUT", DOC, BODY, **{"Content-Type": NOTES_MIME}).status_int == 201
    assert call(app, "GET", DOC).body == BODY
    app.app.store.close()  # app_factory puts the health endpoints in front


# -- xcap-wsgi serve, over HTTP -------------------------------------------------------------------


def test_serve_with_repeated_option_and_ini(tmp_path):
    """``serve --usage A --usage B`` and ``serve --config`` with an ini ``usage`` list."""
    db = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    notes = "/xcap-root/org.example.notes/users/sip:alice@example.com/index"
    todo = "/xcap-root/org.example.todo/users/sip:alice@example.com/index"
    todo_body = b'<todo xmlns="urn:example:todo"><item>x</item></todo>'
    with run_xcap_wsgi(db, "--usage", NOTES, "--usage", TODO) as server:
        assert http_request("PUT", server.port, notes, BODY, {"Content-Type": NOTES_MIME})[0] == 201
        assert http_request("PUT", server.port, todo, todo_body,
                            {"Content-Type": "application/vnd.example.todo+xml"})[0] == 201
        status, headers, body = http_request("GET", server.port, urllib.parse.quote(notes + "/~~/notes/note"))
        assert (status, body) == (200, b'<note id="a" x:colour="red">Buy milk</note>')
    config = tmp_path / "xcap.ini"
    config.write_text(f"[xcap-wsgi]\nusage =\n    {NOTES}\n    {TODO}\n")
    with run_xcap_wsgi(db, "--config", str(config)) as server:
        status, headers, body = http_request("GET", server.port, todo)
        assert (status, body, headers["content-type"]) == (200, todo_body, "application/vnd.example.todo+xml")
    with run_xcap_wsgi(db) as server:  # not configured: not an application usage
        assert http_request("GET", server.port, todo)[0] == 404


# -- why doc_type 64: a real Kamailio's directory listing ---------------------------------------------


@pytest.mark.mysql
@pytest.mark.kamailio
def test_kamailios_directory_tolerates_doc_type_64_and_fails_on_others(kamailio, db_url):
    """Kamailio's xcap_server lists a user's rows by doc_type; with a generic row stored as 64 its
    listing still works (under the user-profile folder); doc_types it does not know break it."""
    from xcap_wsgi.storage.mysql import MySQLStore

    store = MySQLStore.from_url(db_url)
    try:
        values = resolve({"usage": NOTES, "anonymous": "true"}, environ={})
        app = build_middleware(None, values, store=store)
        assert call(app, "PUT", DOC, BODY, **{"Content-Type": NOTES_MIME}).status_int == 201
        directory = "/xcap-root/org.openmobilealliance.xcap-directory/users/sip:alice@example.com/directory.xml"
        status, _, body = kamailio.http("GET", directory)
        assert status == 200, kamailio.log()[-2000:]
        assert b'<folder auid="org.openmobilealliance.user-profile">' in body and DOC.encode() in body
        # doc_type 0 (observed): an <entry> outside any <folder>, invalid against the OMA schema
        store.put(DocumentKey("alice", "example.com", DOC.replace("today", "zero"), 0), BODY, None)
        status, _, body = kamailio.http("GET", directory)
        assert status == 200 and b'<xcap-directory xmlns="urn:oma:xml:xdm:xcap-directory">\r\n<entry ' in body
        # any other value outside Kamailio's AUID list (1, 3, 1024, ...): the whole listing fails
        store.put(DocumentKey("alice", "example.com", DOC.replace("today", "one"), 1), BODY, None)
        assert kamailio.http("GET", directory)[0] == 500
    finally:
        store.close()
