"""Shared fixtures: a real SQLite store in a temporary file and the middleware around it."""

from __future__ import annotations

import pytest
from webob import Request

from xcap_wsgi import SQLiteStore, XCAPMiddleware

RL_MIME = "application/resource-lists+xml"
ALICE = "sip:alice@example.com"
ALICE_DOC = f"/xcap-root/resource-lists/users/{ALICE}/index"
RL_DOC = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
    b'  <list name="friends">\n'
    b'    <entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry>\n'
    b"  </list>\n"
    b"</resource-lists>\n"
)


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(str(tmp_path / "xcap.sqlite3"))
    yield store
    store.close()


@pytest.fixture
def app(store):
    """Standalone middleware; the identity comes from REMOTE_USER as a host stack would set it."""
    return XCAPMiddleware(None, store=store, default_domain="example.com")


def call(app, method: str, path: str, body: bytes | None = None, user: str | None = ALICE, **headers):
    """Send one request through the WSGI app and return WebOb's response."""
    request = Request.blank(path, method=method, headers=headers)
    request.environ["REQUEST_URI"] = path
    if user is not None:
        request.environ["REMOTE_USER"] = user
    if body is not None:
        request.body = body
    return request.get_response(app)


def put_doc(app, path: str = ALICE_DOC, body: bytes = RL_DOC, content_type: str = RL_MIME, **headers):
    return call(app, "PUT", path, body, **{"Content-Type": content_type}, **headers)


class CountingStore:
    """A real store that counts reads and compare-and-swap writes; ``read_delay`` seconds per
    read widen the read -> write window, as a loaded server does."""

    def __init__(self, store, read_delay: float = 0.0):
        self._store, self.read_delay, self.gets, self.puts = store, read_delay, 0, 0

    def get(self, key):
        import time

        self.gets += 1
        if self.read_delay:
            time.sleep(self.read_delay)
        return self._store.get(key)

    def put(self, key, content, expected_etag):
        self.puts += 1
        return self._store.put(key, content, expected_etag)

    def __getattr__(self, name):
        return getattr(self._store, name)
