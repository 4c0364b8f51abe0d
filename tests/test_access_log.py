"""The access log (logger ``xcap_wsgi.access``): one line per XCAP request, with every field.

Fields asked for by issue 7: method, AUID, XUI, document, node selector, status, xcap-error
condition, ETag before and after the request, duration.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
from conftest import ALICE, ALICE_DOC, RL_DOC, call, put_doc

from xcap_wsgi import XCAPMiddleware

FIELD = re.compile(r'(\S+?)=("(?:[^"\\]|\\.)*"|\S+)')
LINE = re.compile(r"^(?P<method>[A-Z]+) (?P<target>\S+) (?P<fields>.*) (?P<ms>\d+\.\d)ms$")
NODE = "/~~/resource-lists/list%5B@name=%22friends%22%5D/entry%5B1%5D/@uri"


def host_page(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"host page"]


@pytest.fixture
def logged_app(store):
    return XCAPMiddleware(host_page, store=store, default_domain="example.com", log_requests=True)


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="xcap_wsgi.access")

    def parsed():
        records = [r for r in caplog.records if r.name == "xcap_wsgi.access"]
        result = []
        for record in records:
            message = record.getMessage()
            assert "\n" not in message
            match = LINE.match(message)
            assert match, message
            entry = {k: json.loads(v) if v.startswith('"') else v for k, v in FIELD.findall(match["fields"])}
            entry.update(method=match["method"], target=match["target"], ms=float(match["ms"]))
            result.append(entry)
        caplog.clear()
        return result

    return parsed


def test_one_line_per_xcap_request_and_none_for_the_host_app(logged_app, lines):
    call(logged_app, "GET", "/not-xcap")
    assert lines() == []
    put_doc(logged_app)
    call(logged_app, "GET", ALICE_DOC)
    call(logged_app, "GET", "/xcap-root/no-such-auid/users/x/index")
    assert [(e["method"], e["status"]) for e in lines()] == [("PUT", "201"), ("GET", "200"), ("GET", "404")]


def test_document_put_fields(logged_app, lines):
    response = put_doc(logged_app)
    (entry,) = lines()
    assert entry["method"] == "PUT"
    assert entry["target"] == ALICE_DOC
    assert entry["auid"] == "resource-lists"
    assert entry["xui"] == ALICE
    assert entry["doc"] == "index"
    assert entry["node"] == "-"
    assert entry["status"] == "201"
    assert entry["error"] == "-"
    assert entry["etag-in"] == "-"  # nothing before: created
    assert entry["etag-out"] == response.headers["ETag"].strip('"')  # unquoted, as stored
    assert entry["ms"] >= 0.0


def test_node_selector_and_conditional_fields(logged_app, lines):
    etag = put_doc(logged_app).headers["ETag"]
    lines()
    response = call(logged_app, "PUT", ALICE_DOC + NODE, b"sip:robert@example.com",
                    **{"Content-Type": "application/xcap-att+xml", "If-Match": etag})
    assert response.status_int == 200
    (entry,) = lines()
    assert entry["node"] == 'resource-lists/list[@name="friends"]/entry[1]/@uri'
    assert entry["etag-in"] == etag.strip('"')
    assert entry["etag-out"] == response.headers["ETag"].strip('"') != etag.strip('"')


def test_xcap_error_condition(logged_app, lines):
    put_doc(logged_app, body=b"<resource-lists")
    (entry,) = lines()
    assert (entry["status"], entry["error"]) == ("409", "not-well-formed")


def test_failed_condition_and_auth_statuses(logged_app, lines):
    put_doc(logged_app)
    lines()
    call(logged_app, "GET", ALICE_DOC, **{"If-None-Match": "*"})
    call(logged_app, "GET", ALICE_DOC, user=None)
    call(logged_app, "GET", ALICE_DOC.replace("alice", "bob"))
    assert [e["status"] for e in lines()] == ["304", "401", "403"]


def test_etag_before_is_the_stored_etag_even_without_if_match(logged_app, lines):
    first = put_doc(logged_app).headers["ETag"]
    lines()
    second = put_doc(logged_app, body=RL_DOC.replace(b"Bob", b"Robert")).headers["ETag"]
    (entry,) = lines()
    assert (entry["etag-in"], entry["etag-out"]) == (first.strip('"'), second.strip('"'))


def test_off_by_default_in_middleware_mode(store, caplog):
    caplog.set_level(logging.INFO, logger="xcap_wsgi.access")
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    assert put_doc(app).status_int == 201
    assert [r for r in caplog.records if r.name == "xcap_wsgi.access"] == []


def test_values_with_spaces_and_quotes_stay_parseable(logged_app, lines):
    put_doc(logged_app, body=RL_DOC.replace(b'name="friends"', b'name="my friends"'))
    lines()
    call(logged_app, "GET", ALICE_DOC + "/~~/resource-lists/list%5B@name=%22my%20friends%22%5D")
    (entry,) = lines()
    assert entry["node"] == 'resource-lists/list[@name="my friends"]'
    assert entry["status"] == "200" and entry["auid"] == "resource-lists"
