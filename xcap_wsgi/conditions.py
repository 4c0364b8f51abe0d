"""Conditional requests (RFC 7232 as applied by RFC 4825 §8.2.6, §8.5): If-Match, If-None-Match.

WebOb parses the headers (lists, weak tags, ``*``); this module adds what WebOb leaves out:
``If-Match: *`` fails when there is no document, If-Match compares strongly (weak tags never
match), If-None-Match weakly, and the outcome is 304 for GET/HEAD but 412 for writes.
"""

from __future__ import annotations

import re

from webob import Request
from webob.etag import AnyETag, ETagMatcher
from webob.exc import HTTPNotModified, HTTPPreconditionFailed

from .storage.base import ABSENT, ANY


def check_preconditions(request: Request, current_etag: str | None, *, safe_method: bool) -> None:
    """Raise 412 (or 304 for GET/HEAD) unless the request's conditions hold for ``current_etag``.

    ``current_etag`` is the unquoted ETag of the document as stored, or None if it does not exist.
    Node operations pass the ETag of the document that contains the node (RFC 4825 single-ETag model).
    """
    if_match = _header(request, "HTTP_IF_MATCH", strong=True)  # strong: W/ tags never match
    if if_match is not None and not _matches(if_match, current_etag):
        raise HTTPPreconditionFailed(detail="If-Match does not match the document's current ETag")
    if_none_match = _header(request, "HTTP_IF_NONE_MATCH", strong=False)  # weak comparison
    if if_none_match is not None and current_etag is not None and _matches(if_none_match, current_etag):
        if safe_method:
            raise HTTPNotModified(headers=[("ETag", quote_etag(current_etag))])
        raise HTTPPreconditionFailed(detail="If-None-Match matches the document's current ETag")


#: ``write_expectation``'s answer when the conditions need the stored document to be judged.
NEEDS_STORED_STATE = object()
_ONE_STRONG_ETAG = re.compile(r'"([\x21\x23-\x7e\x80-\xff]*)"')  # RFC 7232 entity-tag, not W/


def write_expectation(request: Request):
    """The state a whole-document write may demand of the store without reading it first.

    No conditions: ``ANY``. ``If-None-Match: *`` alone: ``ABSENT``. ``If-Match`` with exactly one
    strong ETag alone: that ETag. Anything else (lists, weak tags, ``If-Match: *``, both headers)
    is ``NEEDS_STORED_STATE``: the engine reads the document and applies ``check_preconditions``.
    When the store then refuses the write, the engine reads the row and judges the request as
    if it had read first, so both ways answer alike.
    """
    if_match = _header_value(request, "HTTP_IF_MATCH")
    if_none_match = _header_value(request, "HTTP_IF_NONE_MATCH")
    if not if_match and not if_none_match:
        return ANY
    if not if_match and if_none_match == "*":
        return ABSENT
    if not if_none_match:
        single = _ONE_STRONG_ETAG.fullmatch(if_match)
        if single:
            return single.group(1)
    return NEEDS_STORED_STATE


def quote_etag(etag: str) -> str:
    """The header form of a stored (unquoted) ETag."""
    return f'"{etag}"'


def _matches(matcher, current_etag: str | None) -> bool:
    """``*`` matches any existing document; a list matches when it holds the current ETag."""
    return current_etag is not None and (matcher is AnyETag or current_etag in matcher)


def _header(request: Request, key: str, *, strong: bool):
    """The header's ETag matcher, or None when the header is absent or empty."""
    value = _header_value(request, key)
    if not value:
        return None
    return AnyETag if value == "*" else ETagMatcher.parse(value, strong=strong)


#: One entity-tag of a list quoted twice: ``""xw-1""`` (or ``W/""xw-1""``).
_QUOTED_TWICE = re.compile(r'(?<![^\s,])(W/)?""([^"\s,][^",]*)""(?![^\s,])')


def _header_value(request: Request, key: str) -> str:
    """The conditional header as sent, stripped, with tags quoted twice quoted once.

    Some clients put quotes around the ETag they received, quotes included (``""xw-1""``).
    That is not an entity-tag (RFC 9110 §8.8.3), and WebOb reads it as the empty tag ``""``,
    so the condition could never hold; the meaning is plain, and no ETag this server issues
    contains a quote, so such a tag is read as ``"xw-1"`` (a harmless client deviation).
    """
    value = (request.environ.get(key) or "").strip()
    return _QUOTED_TWICE.sub(r'\1"\2"', value) if '""' in value else value
