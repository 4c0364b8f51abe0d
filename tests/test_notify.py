"""The Kamailio JSON-RPC notifier: which calls, delivered off the request path, retried, counted.

A small JSON-RPC server on 127.0.0.1 stands in for Kamailio here (it records calls and can fail
on purpose); test_kamailio_notify.py runs the same notifier against a real Kamailio.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import put_doc

from xcap_wsgi import SQLiteStore, XCAPMiddleware
from xcap_wsgi.notify import KamailioNotifier


class RPCPeer:
    def __init__(self, fail_first: int = 0, error_for: str | None = None, delay: float = 0.0):
        self.calls, self.fail_first, self.error_for, self.delay = [], fail_first, error_for, delay
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(peer.delay)
                if peer.fail_first > 0:
                    peer.fail_first -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                peer.calls.append((request["method"], request["params"]))
                if request["method"] == peer.error_for:
                    answer = {"jsonrpc": "2.0", "error": {"code": 500, "message": "no such presentity"}, "id": request["id"]}
                else:
                    answer = {"jsonrpc": "2.0", "result": {}, "id": request["id"]}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/RPC"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer():
    peer = RPCPeer()
    yield peer
    peer.close()


def app_with(notifier, tmp_path):
    return XCAPMiddleware(None, store=SQLiteStore(str(tmp_path / "x.sqlite3")), anonymous=True, on_change=[notifier])


PRES_RULES = b'<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"/>'
PIDF = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"/>'


def test_calls_per_document_type(peer, tmp_path):
    notifier = KamailioNotifier(peer.url)
    app = app_with(notifier, tmp_path)
    put_doc(app)
    put_doc(app, path="/xcap-root/pres-rules/users/sip:alice@example.com/index", body=PRES_RULES,
            content_type="application/auth-policy+xml")
    put_doc(app, path="/xcap-root/pidf-manipulation/users/sip:alice@example.com/index", body=PIDF,
            content_type="application/pidf+xml")
    assert notifier.flush(5)
    assert peer.calls == [
        ("rls.update_subs", ["sip:alice@example.com", "presence"]),
        ("presence.updateWatchers", ["sip:alice@example.com", "presence"]),
        ("presence.refreshWatchers", ["sip:alice@example.com", "presence", 1]),
        ("presence.refreshWatchers", ["sip:alice@example.com", "presence", 2,
                                      "/xcap-root/pidf-manipulation/users/sip:alice@example.com/index", "index"]),
    ]
    assert notifier.stats()["sent"] == 4
    notifier.close()


def test_transport_failures_are_retried(tmp_path):
    peer = RPCPeer(fail_first=2)
    notifier = KamailioNotifier(peer.url, backoff=0.01)
    put_doc(app_with(notifier, tmp_path))
    assert notifier.flush(5)
    stats = notifier.stats()
    assert (stats["sent"], stats["retried"], stats["failed"]) == (1, 2, 0)
    notifier.close()
    peer.close()


def test_rpc_errors_are_counted_not_retried(tmp_path):
    peer = RPCPeer(error_for="rls.update_subs")
    notifier = KamailioNotifier(peer.url, backoff=0.01)
    put_doc(app_with(notifier, tmp_path))
    assert notifier.flush(5)
    assert notifier.stats()["failed"] == 1 and len(peer.calls) == 1
    notifier.close()
    peer.close()


def test_unreachable_kamailio_never_fails_the_request(tmp_path):
    notifier = KamailioNotifier("http://127.0.0.1:9/RPC", retries=1, backoff=0.01, timeout=0.5)
    app = app_with(notifier, tmp_path)
    assert put_doc(app).status_int == 201
    assert notifier.flush(5)
    assert notifier.stats()["failed"] == 1
    notifier.close()


def test_a_full_queue_drops_and_counts(tmp_path):
    # One slot, and a peer that takes 0.5 s per call: requests outpace delivery and the queue fills.
    peer = RPCPeer(delay=0.5)
    notifier = KamailioNotifier(peer.url, queue_size=1, retries=0)
    app = app_with(notifier, tmp_path)
    for i in range(5):
        body = f'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="{i}"/></resource-lists>'
        assert put_doc(app, body=body.encode()).status_int in (200, 201)
    stats = notifier.stats()
    assert stats["dropped"] >= 2, stats  # at most one call in flight and one queued
    assert notifier.flush(5)
    assert notifier.stats()["sent"] + notifier.stats()["dropped"] == 5
    notifier.close()
    peer.close()


def test_bad_url_is_refused():
    with pytest.raises(ValueError):
        KamailioNotifier("ftp://x")


def test_deleting_the_rules_document_only_refreshes_the_watchers(peer, tmp_path):
    """Kamailio's updateWatchers fails without a rules document (seen on 5.6.3)."""
    notifier = KamailioNotifier(peer.url)
    app = app_with(notifier, tmp_path)
    path = "/xcap-root/pres-rules/users/sip:alice@example.com/index"
    put_doc(app, path=path, body=PRES_RULES, content_type="application/auth-policy+xml")
    assert notifier.flush(5)
    peer.calls.clear()
    from conftest import call

    assert call(app, "DELETE", path).status_int == 200
    assert notifier.flush(5)
    assert peer.calls == [("presence.refreshWatchers", ["sip:alice@example.com", "presence", 1])]
    notifier.close()
