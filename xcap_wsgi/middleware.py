"""The WSGI boundary: is this request ours? If so, turn it into an XCAP operation and answer.

``XCAPMiddleware`` wraps any WSGI app. Requests under the XCAP root (one or several alias
paths, relative to the mount point ``SCRIPT_NAME``) are served from the store; everything
else goes to the wrapped app untouched. With ``app=None`` it is a standalone XCAP server that
answers 404 outside the root. Authentication belongs to the host stack: the identity is read
from ``REMOTE_USER`` (or a callable) and checked by an authorization policy.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote, unquote_to_bytes, urlsplit

from webob import Request
from webob.exc import (
    HTTPBadRequest,
    HTTPException,
    HTTPInternalServerError,
    HTTPMethodNotAllowed,
    HTTPNotFound,
    HTTPRequestEntityTooLarge,
    HTTPRequestURITooLong,
    HTTPServiceUnavailable,
    WSGIHTTPException,
)

from . import metrics, operations
from .auth import AllowAll, DefaultPolicy, IdentityResolver, Policy, remote_user
from .caps import content_etag
from .computed import ComputeContext
from .errors import ConstraintFailure, XCAPError
from .events import EventDispatcher
from .operations import Outcome, Target, xcap_response
from .settings import DEFAULTS
from .storage import (
    ABSENT,
    UNKNOWN,
    DocumentKey,
    DocumentTooLarge,
    DocumentUriTaken,
    Store,
    StoreError,
    StoreUnavailable,
    UnrepresentableKey,
)
from .storage.kamailio import MAX_DOC_URI, MAX_DOMAIN, MAX_USERNAME
from .uri import XCAPURI, URIError, match_root, parse_xcap_path, xui_account
from .usages import UsageRegistry, default_registry
from .validation import preload as preload_schemas

log = logging.getLogger("xcap_wsgi")
access_log = logging.getLogger("xcap_wsgi.access")

DOCUMENT_METHODS = ("GET", "HEAD", "PUT", "DELETE")
READ_ONLY_METHODS = ("GET", "HEAD")
# Kamailio's xcap table: doc_uri VARCHAR(255), username/domain VARCHAR(64) (storage.kamailio).
MAX_ACCOUNT_PART = min(MAX_USERNAME, MAX_DOMAIN)
_SEGMENT_SAFE = ":@!$&'()*+,;=-._~"
#: Parsed node selectors by (selector text, xmlns() bindings, default namespace); emptied when full.
_SELECTORS: dict = {}
_SELECTORS_MAX = 1024
#: Bound of each middleware's ``_locate`` cache and of the raw request target cache.
_LOCATED_MAX = 1024
_RAW_TARGETS: dict = {}
_RAW_TARGETS_MAX = 1024


class XCAPMiddleware:
    """Serve XCAP (RFC 4825) under ``root``; pass every other request to ``app``."""

    def __init__(
        self,
        app: Callable | None,
        *,
        store: Store,
        root: str | Iterable[str] = DEFAULTS.root,  # one path or several aliases; the first is canonical
        usages: UsageRegistry | None = None,  # enabled application usages (default: all shipped ones)
        default_domain: str = DEFAULTS.default_domain,  # SIP domain for XUIs and identities without one
        identity: IdentityResolver = remote_user,  # environ -> identity string or None
        policy: Policy | None = None,  # authorization (default: RFC 4825 default policy)
        anonymous: bool = DEFAULTS.anonymous,  # development only: no identity needed, everything allowed
        admins: Iterable[str] = DEFAULTS.admins,  # identities that may write the global tree (default policy)
        max_body_size: int = DEFAULTS.max_body_size,  # larger request bodies get 413
        max_uri_length: int = DEFAULTS.max_uri_length,  # longer request URIs get 414
        public_url: str | None = DEFAULTS.public_url,  # e.g. "https://xcap.example.com" behind a proxy
        # path stored in doc_uri before the AUID (default: mount + root)
        doc_uri_root: str | None = DEFAULTS.doc_uri_root,
        log_requests: bool = DEFAULTS.log_requests,  # one access-log line per XCAP request
        on_change: Callable | Iterable[Callable] = (),  # sinks called with a ChangeEvent after each write
        challenge: str | None = None,  # WWW-Authenticate value for 401s, e.g. 'Basic realm="example.com"'
    ):
        self.app = app
        self.store = store
        roots = [root] if isinstance(root, str) else list(root)
        if not roots:
            raise ValueError("at least one XCAP root is required")
        self.roots = tuple("/" + r.strip("/") if r.strip("/") else "/" for r in roots)
        self.usages = usages if usages is not None else default_registry()
        self.default_domain = default_domain
        self.identity = identity
        self.policy = AllowAll() if anonymous else (
            policy or DefaultPolicy(default_domain=default_domain, admins=admins))
        self.anonymous = anonymous
        self.max_body_size = max_body_size
        self.max_uri_length = max_uri_length
        self.public_url = public_url.rstrip("/") if public_url else None
        self.doc_uri_root = doc_uri_root
        self.log_requests = log_requests
        self.challenge = challenge
        preload_schemas(self.usages)  # compile every usage's schemas now, not on a client's first PUT
        self.events = EventDispatcher([on_change] if callable(on_change) else list(on_change))
        self._located: dict = {}  # see _locate

    def __call__(self, environ, start_response):
        raw_path, raw_query = raw_request_target(environ)
        matched = match_root(raw_path, self.roots)
        if matched is None:
            if self.app is None:
                return HTTPNotFound(detail="not under the XCAP root")(environ, start_response)
            return self.app(environ, start_response)
        started = time.perf_counter() if self.log_requests else 0.0  # only the access log uses it
        request = Request(environ)
        outcome = self._respond(request, raw_path, raw_query, matched)
        response = outcome.response
        if request.method == "HEAD" and isinstance(response, WSGIHTTPException) and response.status_code >= 400:
            # WebOb answers HEAD errors with "Content-Length: 0" and another Content-Type; RFC 9110
            # §9.3.2 wants GET's headers: render the error for GET (the HEAD call drops the body).
            response = Request(dict(environ, REQUEST_METHOD="GET")).get_response(response)
        if self.challenge and response.status_code == 401 and "WWW-Authenticate" not in response.headers:
            response.headers["WWW-Authenticate"] = self.challenge  # RFC 7235: a 401 names its scheme
        if ("Cache-Control", "no-cache") not in response.headerlist and "Cache-Control" not in response.headers:
            # RFC 4825 §9: client-written data is dynamic, so nothing under the root is cached; this
            # covers errors and 304 too (RFC 9110 §15.4.5: a 304 repeats the 200's Cache-Control).
            response.headers["Cache-Control"] = "no-cache"
        if self.log_requests:
            self._log(request, response, outcome.etag_before, started)
        return response(environ, start_response)

    # -- request handling ---------------------------------------------------------------------

    def _respond(self, request: Request, raw_path: str, raw_query: str, matched: tuple[str, str]) -> Outcome:
        """The operation's outcome; anything answered without one had no document before it."""
        answer = self._answer(request, raw_path, raw_query, matched)
        return answer if isinstance(answer, Outcome) else Outcome(answer, ABSENT)

    def _answer(self, request: Request, raw_path: str, raw_query: str, matched: tuple[str, str]):
        """Run the operation; every failure becomes a clean HTTP response, never a traceback."""
        try:
            return self._dispatch(request, raw_path, raw_query, matched)
        except (XCAPError, HTTPException) as exc:
            return exc
        except URIError as exc:
            return (HTTPNotFound if exc.status == 404 else HTTPBadRequest)(detail=str(exc))
        except UnrepresentableKey as exc:
            if request.method in ("PUT",):
                return ConstraintFailure(f"the XUI or document path cannot be stored in the database: {exc}")
            return HTTPNotFound(detail="no such document")
        except DocumentUriTaken as exc:
            return ConstraintFailure(f"this document path belongs to another account in the database: {exc}")
        except DocumentTooLarge as exc:
            return HTTPRequestEntityTooLarge(detail=f"the resulting document is too large for the database: {exc}")
        except StoreUnavailable as exc:
            log.warning("store unavailable: %s", exc)
            metrics.unavailable("database")
            return HTTPServiceUnavailable(
                detail="the document database is unavailable; retry later",
                headers=[("Retry-After", str(exc.retry_after))],
            )
        except StoreError as exc:
            log.error("store error: %s", exc)
            metrics.unavailable("database")
            return HTTPServiceUnavailable(detail="the document database failed; retry later",
                                          headers=[("Retry-After", "5")])
        except Exception:  # a bug: log it, answer a plain 500 without details
            log.exception("unhandled error in XCAP request %s %s", request.method, raw_path)
            return HTTPInternalServerError(detail="internal error")

    def _dispatch(self, request: Request, raw_path: str, raw_query: str, matched: tuple[str, str]):
        if len(raw_path) + len(raw_query) > self.max_uri_length:
            raise HTTPRequestURITooLong(detail=f"request URI longer than {self.max_uri_length} bytes")
        try:
            uri, usage = self._resource(request, matched, raw_query)
        except (URIError, HTTPNotFound):
            if request.method not in DOCUMENT_METHODS + ("OPTIONS",):
                # POST or an unknown method on the root, a directory or an unknown AUID: 405 says
                # what is wrong (RFC 4825 §8.1, from memory: POST to an XCAP resource SHOULD get
                # 405), where 404 would send the client looking for another path. Allow names
                # the methods XCAP uses (§7).
                raise HTTPMethodNotAllowed(headers=[("Allow", ", ".join(DOCUMENT_METHODS))]) from None
            raise

        computed = usage.compute is not None and (uri.tree == "global" or not usage.writable)
        allowed = READ_ONLY_METHODS if computed or not usage.writable else DOCUMENT_METHODS
        selector = self._parse_selector(uri.node_selector, uri, usage) if uri.node_selector is not None else None
        if selector is not None and selector.kind == "namespace":
            allowed = READ_ONLY_METHODS  # RFC 4825 §10: namespace bindings are read-only
        method = request.method
        if method == "OPTIONS":
            return xcap_response(200, extra=[("Allow", ", ".join(allowed + ("OPTIONS",)))])
        if method not in allowed:
            raise HTTPMethodNotAllowed(headers=[("Allow", ", ".join(allowed))])

        write = method in ("PUT", "DELETE")
        identity = None if self.anonymous else self.identity(request.environ)
        self.policy.authorize(identity, uri, write=write)

        target = self._target(request, uri, usage, selector)
        if computed:
            return self._computed(request, target)
        if method == "PUT":
            return operations.put(request, self.store, target, self._read_body(request), self.events)
        if method == "DELETE":
            return operations.delete(request, self.store, target, self.events)
        return operations.get(request, self.store, target)

    def _resource(self, request: Request, matched: tuple[str, str], raw_query: str):
        """The parsed URI and its application usage; 404 (or URIError) when it names no document."""
        root, raw_rest = matched
        uri = parse_xcap_path(root, raw_rest, raw_query)
        request.environ["xcap.uri"] = uri
        usage = self.usages.get(uri.auid)
        if usage is None:
            raise HTTPNotFound(detail=f"unknown application usage {uri.auid!r}")
        request.environ["xcap.auid"] = usage.auid  # a known AUID: the metrics' label (metrics.py)
        if not usage.allows_document(uri.tree, uri.segments):
            raise HTTPNotFound(detail=f"{uri.document_selector} is not a document of {uri.auid}")
        return uri, usage

    def _parse_selector(self, text: str, uri: XCAPURI, usage):
        """The parsed node selector ``text`` (``uri.node_selector``)."""
        # parse_node_selector is a pure function of these three and returns a frozen NodeSelector,
        # so parsed selectors are reused (clients repeat the same few); errors are not cached.
        key = (text, tuple(sorted(uri.namespaces.items())), usage.default_namespace)
        selector = _SELECTORS.get(key)
        if selector is not None:
            return selector
        from .selector import SelectorSyntaxError, UnsupportedSelector, parse_node_selector

        try:
            selector = parse_node_selector(text, uri.namespaces, usage.default_namespace)
            if len(_SELECTORS) >= _SELECTORS_MAX:
                _SELECTORS.clear()
            _SELECTORS[key] = selector
            return selector
        except SelectorSyntaxError as exc:
            raise HTTPBadRequest(detail=f"malformed node selector: {exc}") from None
        except UnsupportedSelector as exc:
            raise HTTPNotFound(detail=f"unsupported node selector: {exc}") from None

    def _target(self, request: Request, uri: XCAPURI, usage, selector) -> Target:
        script_name = request.script_name
        username, domain, doc_uri, root_path, document_path = self._locate(uri, script_name)
        if len(username) > MAX_ACCOUNT_PART or len(domain) > MAX_ACCOUNT_PART:
            raise HTTPRequestURITooLong(
                detail=f"user and domain of the XUI are limited to {MAX_ACCOUNT_PART} characters")
        if len(doc_uri) > MAX_DOC_URI:
            raise HTTPRequestURITooLong(detail=f"document path longer than {MAX_DOC_URI} characters "
                                        "(the limit of Kamailio's xcap.doc_uri)")
        root_url = (self.public_url or request.host_url) + root_path
        document_url = root_url.rstrip("/") + "/" + document_path
        return Target(uri=uri, usage=usage, key=DocumentKey(username, domain, doc_uri, usage.doc_type or 0),
                      document_url=document_url, root_url=root_url, selector=selector)

    def _locate(self, uri: XCAPURI, script_name: str) -> tuple[str, str, str, str, str]:
        """Account, ``doc_uri`` and the percent-encoded root and document paths of ``uri``.

        A pure function of its key (the URI's parts, the mount point and the settings used),
        remembered so that repeated requests skip the XUI parsing and the quoting.
        """
        key = (uri.root, uri.auid, uri.tree, uri.xui, uri.segments, script_name,
               self.default_domain, self.doc_uri_root, self.roots[0])
        located = self._located.get(key)
        if located is None:
            username, domain = xui_account(uri.xui, self.default_domain) if uri.xui else ("", "")
            # Aliases share documents: doc_uri always uses the first (canonical) root.
            doc_uri = uri.doc_uri(self.doc_uri_root or (script_name + self.roots[0]))
            root_path = quote(script_name + uri.root, safe="/" + _SEGMENT_SAFE)
            document_path = "/".join(quote(part, safe=_SEGMENT_SAFE) for part in uri.document_selector.split("/"))
            located = (username, domain, doc_uri, root_path, document_path)
            if len(self._located) >= _LOCATED_MAX:
                self._located.clear()
            self._located[key] = located
        return located

    def _computed(self, request: Request, target: Target):
        """GET of a document the server generates (xcap-caps, xcap-directory, global indexes)."""
        context = ComputeContext(store=self.store, uri=target.uri, usages=self.usages,
                                 username=target.key.username, domain=target.key.domain,
                                 host_url=self.public_url or request.host_url)
        compute = target.usage.compute
        assert compute is not None  # only usages with a compute function get here
        content = compute(context)
        return operations.read(request, target, content, content_etag(content))

    def _read_body(self, request: Request) -> bytes:
        """The request body, read with a bound: 413 past ``max_body_size``."""
        length_header = request.environ.get("CONTENT_LENGTH") or ""
        stream = request.environ["wsgi.input"]
        if length_header.strip():
            try:
                length = int(length_header)
            except ValueError:
                raise HTTPBadRequest(detail="malformed Content-Length") from None
            if length < 0:
                raise HTTPBadRequest(detail="malformed Content-Length")
            if length > self.max_body_size:
                raise HTTPRequestEntityTooLarge(detail=f"bodies are limited to {self.max_body_size} bytes")
            return stream.read(length)
        if request.environ.get("wsgi.input_terminated"):
            body = stream.read(self.max_body_size + 1)
            if len(body) > self.max_body_size:
                raise HTTPRequestEntityTooLarge(detail=f"bodies are limited to {self.max_body_size} bytes")
            return body
        return b""

    def _log(self, request: Request, response, etag_before: object, started: float) -> None:
        """One access line: ``METHOD target key=value ... 1.2ms``; values with spaces, quotes or
        ``=`` are JSON-quoted so the line stays parseable whatever a client put in its URI."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        uri: XCAPURI | None = request.environ.get("xcap.uri")
        headers = getattr(response, "headers", None)
        values = (
            request.method,
            _log_target(request.environ),
            uri.auid if uri else None,
            uri.xui if uri else None,
            "/".join(uri.segments) if uri else None,
            uri.node_selector if uri else None,
            getattr(response, "status_code", None) or getattr(response, "code", "?"),
            response.tag if isinstance(response, XCAPError) else None,
            # ETags unquoted, as Kamailio's table stores them; "-": no document; "?": not read
            "?" if etag_before is UNKNOWN else etag_before,
            (headers.get("ETag") or "").strip('"') if headers is not None else None,
        )
        texts = ["-" if value is None or value == "" else str(value) for value in values]
        plain = "".join(texts)  # the usual line needs no quoting: one check for all values
        if _NEEDS_QUOTING.search(plain) or not plain.isprintable():
            texts = [texts[0], *(_log_value(value) for value in values[1:])]
        access_log.info(_ACCESS_LINE, *texts, (time.perf_counter() - started) * 1000)


#: The access line: method, target, the fields of issue 7, duration.
_ACCESS_LINE = "%s %s auid=%s xui=%s doc=%s node=%s status=%s error=%s etag-in=%s etag-out=%s %.1fms"


def _log_target(environ: dict) -> str:
    """The request target as the client sent it (still percent-encoded). WebOb's ``path_qs``
    decodes the path as UTF-8 and raises on bytes such as ``%C0%AE``: a log line must never
    fail whatever bytes a client put in its request target."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if not raw:
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
        raw = quote(path, safe="/" + _SEGMENT_SAFE)
        if environ.get("QUERY_STRING"):
            raw += "?" + environ["QUERY_STRING"]
    return raw


#: What makes an access-log value need JSON quoting: whitespace (str.isspace, which is exactly
#: what \s matches in a str pattern), a double quote, "=" or a backslash.
_NEEDS_QUOTING = re.compile(r'[\s"=\\]')


def _log_value(value) -> str:
    if value is None or value == "":
        return "-"
    text = str(value)
    if _NEEDS_QUOTING.search(text) or not text.isprintable():
        return json.dumps(text)
    return text


def raw_request_target(environ: dict) -> tuple[str, str]:
    """The request path below ``SCRIPT_NAME``, still percent-encoded, and the raw query string.

    PEP 3333 servers decode ``PATH_INFO``, which turns ``%2F`` into ``/``. When the server also
    passes the request line (``RAW_URI``: gunicorn, werkzeug; ``REQUEST_URI``: waitress, uWSGI,
    mod_wsgi) and it decodes to ``SCRIPT_NAME + PATH_INFO``, the raw form is used; otherwise
    ``PATH_INFO`` is re-encoded. Results are remembered by the five environ values they depend on.
    """
    key = (environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
           environ.get("RAW_URI"), environ.get("REQUEST_URI"))
    target = _RAW_TARGETS.get(key)
    if target is None:
        target = _raw_request_target(*key)
        if len(_RAW_TARGETS) >= _RAW_TARGETS_MAX:
            _RAW_TARGETS.clear()
        _RAW_TARGETS[key] = target
    return target


def _raw_request_target(script_name: str, path_info: str, query: str, raw_uri: str | None,
                        request_uri: str | None) -> tuple[str, str]:
    for raw in (raw_uri, request_uri):
        if not raw:
            continue
        if "://" in raw.split("?", 1)[0]:
            parts = urlsplit(raw)
            raw = parts.path + ("?" + parts.query if parts.query else "")
        raw_path = raw.split("?", 1)[0]
        try:
            decoded = unquote_to_bytes(raw_path).decode("latin-1")
        except ValueError:
            continue
        if decoded != script_name + path_info:
            continue  # rewritten by something in front of us: trust PATH_INFO
        raw_segments = raw_path.split("/")
        mount_depth = len(script_name.split("/")) if script_name else 1
        return "/" + "/".join(raw_segments[mount_depth:]) if len(raw_segments) > mount_depth else "", query
    return quote(path_info.encode("latin-1"), safe="/" + _SEGMENT_SAFE), query
