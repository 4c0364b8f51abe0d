"""Conditional requests (RFC 7232 as applied by RFC 4825 §8.2.6, §8.5): If-Match, If-None-Match.

WebOb parses the headers (lists, weak tags, ``*``); this module adds what WebOb leaves out:
``If-Match: *`` fails when there is no document, If-Match compares strongly (weak tags never
match), If-None-Match weakly, and the outcome is 304 for GET/HEAD but 412 for writes.
"""

from __future__ import annotations

from webob import Request
from webob.etag import AnyETag, ETagMatcher
from webob.exc import HTTPNotModified, HTTPPreconditionFailed


def check_preconditions(request: Request, current_etag: str | None, *, safe_method: bool) -> None:
    """Raise 412 (or 304 for GET/HEAD) unless the request's conditions hold for ``current_etag``.

    ``current_etag`` is the unquoted ETag of the document as stored, or None if it does not exist.
    Node operations pass the ETag of the document that contains the node (RFC 4825 single-ETag model).
    """
    if_match = _header(request, "HTTP_IF_MATCH", strong=True)  # strong: W/ tags never match
    if if_match is not None and not _matches(if_match, current_etag):
        raise HTTPPreconditionFailed(detail="If-Match does not match the document's current ETag")
    if_none_match = _header(request, "HTTP_IF_NONE_MATCH", strong=False)  # weak comparison
    if if_none_match is not None and _matches(if_none_match, current_etag):
        if safe_method:
            raise HTTPNotModified(headers=[("ETag", quote_etag(current_etag))])
        raise HTTPPreconditionFailed(detail="If-None-Match matches the document's current ETag")


def quote_etag(etag: str) -> str:
    """The header form of a stored (unquoted) ETag."""
    return f'"{etag}"'


def _matches(matcher, current_etag: str | None) -> bool:
    """``*`` matches any existing document; a list matches when it holds the current ETag."""
    return current_etag is not None and (matcher is AnyETag or current_etag in matcher)


def _header(request: Request, key: str, *, strong: bool):
    """The header's ETag matcher, or None when the header is absent or empty."""
    value = (request.environ.get(key) or "").strip()
    if not value:
        return None
    return AnyETag if value == "*" else ETagMatcher.parse(value, strong=strong)
