"""waitress as ``xcap-wsgi serve`` runs it: waitress' own server with a channel class of ours.

``serve(app, **adjustments)`` is ``waitress.serve`` with one fix:

* waitress 3.0.2 closes the connection after every response without a body (1xx, 204, 304):
  it keeps an HTTP/1.1 connection only when the response has a Content-Length, and it rightly
  never sends one on those statuses. Such a response ends at its blank line (RFC 9112 §6.3,
  rule 1), so nothing requires the close; XCAP clients that revalidate with ``If-None-Match``
  get a 304 on nearly every poll and paid a new TCP (and TLS) handshake for each. The task
  below keeps the connection unless the client asked to close it.
"""

from __future__ import annotations

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask


class KeepAliveTask(WSGITask):
    """A waitress task that keeps HTTP/1.1 connections open after bodiless responses."""

    def build_response_header(self):
        if self.has_body or self.version != "1.1" or self.close_on_finish:
            return super().build_response_header()
        client_closes = self.request.headers.get("CONNECTION", "").lower() == "close"
        # waitress closes a 1.1 response without Content-Length only when close_on_finish is not
        # already set: set it so that step is skipped, then put back what is really wanted.
        self.close_on_finish = True
        try:
            return super().build_response_header()
        finally:
            self.close_on_finish = client_closes  # if so, waitress has added "Connection: close"


class XCAPChannel(HTTPChannel):
    """waitress' HTTP channel with the tasks above."""

    task_class = KeepAliveTask


def create_server(app, **adjustments):
    """``waitress.create_server`` whose listening sockets make ``XCAPChannel`` connections."""
    listeners: dict = {}
    server = waitress.create_server(app, map=listeners, **adjustments)
    for dispatcher in list(listeners.values()):
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = XCAPChannel
    return server


def serve(app, **adjustments) -> None:
    """Serve ``app`` until stopped (what ``waitress.serve`` does, with ``create_server`` above)."""
    create_server(app, **adjustments).run()
