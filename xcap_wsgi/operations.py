"""XCAP operations on stored documents: GET/PUT/DELETE of documents, elements and attributes.

Every write is read -> check conditions -> compute the new document -> validate ->
compare-and-swap. When the swap loses a race the whole step is redone on the fresh document
(conditions included), a bounded number of times, so no update is ever lost and a client's
If-Match is always judged against the document it would really replace. A whole-document PUT
whose conditions already name the state it replaces skips the read: the store's swap checks that
state itself (``Store.write``), and only when it refuses is the document read and judged.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from webob import Request, Response
from webob.exc import HTTPException, HTTPNotFound, HTTPServiceUnavailable, HTTPUnsupportedMediaType

from . import metrics
from .conditions import NEEDS_STORED_STATE, check_preconditions, quote_etag, write_expectation
from .editor import NodeNotFound, delete_node, fresh_tree, get_node, parsed_tree, put_node
from .errors import NoParent, XCAPError
from .events import ChangeEvent, EventDispatcher, node_patch
from .selector import NodeSelector
from .storage import ABSENT, UNKNOWN, ConcurrentModification, DocumentKey, Store, StoredDocument
from .turns import WriteTurns
from .uri import XCAPURI
from .usages import ApplicationUsage, ValidationContext
from .xmlsafe import check_limits, parse_document

#: How often a write is redone after losing a compare-and-swap race before answering 503.
CAS_ATTEMPTS = 8

#: Turns for stores without ``write_turn``: among this process's threads only (see turns.py).
_PROCESS_TURNS = WriteTurns()

#: The status lines of xcap_response's direct path.
_STATUS_LINES = {200: "200 OK", 201: "201 Created"}

XCAP_EL = "application/xcap-el+xml"
XCAP_ATT = "application/xcap-att+xml"


@dataclass
class Target:
    """Everything an operation needs to know about the addressed resource."""

    uri: XCAPURI
    usage: ApplicationUsage
    key: DocumentKey
    document_url: str  #: absolute HTTP URI of the document (for <ancestor> in no-parent)
    root_url: str  #: absolute HTTP URI of the XCAP root: the ancestor of a missing document
    selector: NodeSelector | None = None  #: parsed node selector; None addresses the document

    @property
    def node(self) -> NodeSelector:
        """``selector`` of a node operation (where it is never None)."""
        if self.selector is None:
            raise TypeError(f"{self.uri.document_selector} addresses a document, not a node")
        return self.selector


class Outcome:
    """What an operation answered, and the ETag the document had before it, for the access log:
    ``ABSENT`` (None) when there was no document, ``UNKNOWN`` when the operation did not read it."""

    __slots__ = ("response", "etag_before")

    def __init__(self, response=None, etag_before: object = UNKNOWN):
        self.response, self.etag_before = response, etag_before


def _answered(operation):
    """Run ``operation(outcome)``; its response, or the XCAP/HTTP error it raised, becomes the
    outcome's (errors that are not answers, such as ``StoreUnavailable``, propagate)."""
    outcome = Outcome()
    try:
        outcome.response = operation(outcome)
    except (XCAPError, HTTPException) as exc:
        outcome.response = exc
    return outcome


def xcap_response(status: int, body: bytes = b"", content_type: str | None = None, etag: str | None = None,
                  extra: list[tuple[str, str]] | None = None) -> Response:
    """A response with exactly the headers XCAP wants: no charset added, Content-Length always,
    ``Cache-Control: no-cache`` (RFC 4825 §9: client-written data is dynamic)."""
    if extra is None and status in (200, 201) and type(body) is bytes:
        # The common case, built directly in the order WebOb would give it (it moves
        # Content-Length last for a status with a body), without WebOb's header rewriting.
        headers = [("Content-Type", content_type)] if content_type else []
        headers.append(("Cache-Control", "no-cache"))
        if etag:
            headers.append(("ETag", quote_etag(etag)))
        headers.append(("Content-Length", str(len(body))))
        # What Response(status=status, headerlist=headers, app_iter=[body]) sets, without its
        # argument checks and status parsing (~2.5 us; test_hot_path_caches compares the two).
        response = Response.__new__(Response)
        response.__dict__.update(_status=_STATUS_LINES[status], _headers=None, _headerlist=headers,
                                 conditional_response=False, _app_iter=[body])
        return response
    headers = [("Content-Length", str(len(body))), ("Cache-Control", "no-cache")]
    if content_type:
        headers.insert(0, ("Content-Type", content_type))
    if etag:
        headers.append(("ETag", quote_etag(etag)))
    headers.extend(extra or [])
    return Response(status=status, body=body, headerlist=headers)


# -- reads ------------------------------------------------------------------------------------


def get(request: Request, store: Store, target: Target) -> Outcome:
    return _answered(lambda outcome: _get(request, store, target, outcome))


def _get(request: Request, store: Store, target: Target, outcome: Outcome) -> Response:
    stored = store.get(target.key)
    outcome.etag_before = stored.etag if stored is not None else ABSENT
    if stored is None:
        raise HTTPNotFound(detail=f"no document {target.uri.document_selector}")
    return read(request, target, stored.content, stored.etag)


def read(request: Request, target: Target, content: bytes, etag: str) -> Response:
    """GET/HEAD of a document or of a node in it; also serves computed documents (xcap-caps)."""
    check_preconditions(request, etag, safe_method=True)
    if target.selector is None:
        return xcap_response(200, content, target.usage.mime_type, etag)
    try:
        node = _get_node(content, target)
    except NodeNotFound as exc:
        raise HTTPNotFound(detail=f"no node {target.uri.node_selector!r} in the document: {exc}") from None
    return xcap_response(200, node.body, node.mime_type, etag)


#: Node GETs answered from memory: (AUID, node selector, xmlns() bindings, document bytes) -> the
#: editor's NodeBody. ``get_node`` is a pure function of the document bytes and the parsed selector
#: (which depends only on the selector text, the bindings and the AUID's default namespace), so a
#: hit answers byte for byte what the editor would. Keyed by the content itself, not the ETag: a
#: document changed by anyone (Kamailio included) can never hit a stale entry. Only documents up
#: to ``_NODE_CACHE_DOC_MAX`` bytes are kept, at most ``_NODE_CACHE_MAX`` entries (then it is
#: emptied); misses (NodeNotFound) are not cached.
_NODE_CACHE: dict = {}
_NODE_CACHE_MAX = 1024
_NODE_CACHE_DOC_MAX = 32 * 1024


def _get_node(content: bytes, target: Target):
    if len(content) > _NODE_CACHE_DOC_MAX:
        return get_node(content, target.node)
    key = (target.usage.auid, target.uri.node_selector, tuple(sorted(target.uri.namespaces.items())), content)
    node = _NODE_CACHE.get(key)
    if node is None:
        node = get_node(content, target.node)
        if len(_NODE_CACHE) >= _NODE_CACHE_MAX:
            _NODE_CACHE.clear()
        _NODE_CACHE[key] = node
    return node


# -- writes -----------------------------------------------------------------------------------


def put(request: Request, store: Store, target: Target, body: bytes,
        events: EventDispatcher | None = None) -> Outcome:
    """Create or replace a document, element or attribute (RFC 4825 §8.2)."""
    return _answered(lambda outcome: _put(request, store, target, body, events, outcome))


def _put(request: Request, store: Store, target: Target, body: bytes, events: EventDispatcher | None,
         outcome: Outcome) -> Response:
    _check_content_type(request, target)
    if target.selector is None:
        return _put_document(request, store, target, body, events, outcome)
    with _node_write_turn(store, target) as turn:
        return _put_node(request, store, target, body, events, turn, outcome)


class _Unconfirmed(Exception):
    """An edit of a recalled document ended in anything but a successful write: decide it again
    on the stored document (turns.Turn: a recalled document is a guess, never an answer)."""


def _attempts(store: Store, target: Target, turn, attempt) -> Response:
    """Run ``attempt(stored, recalled)`` until it answers: first on the document this host's last
    write of it left (if the turn recalls it), then on fresh reads, again after each lost race.

    An attempt on a recalled document is a guess: whatever it raises before its write is stored
    (412, 409, 404, a lost race, ``_Unconfirmed``) is decided again on the stored document; only
    its successful write stands (the attempt ``remember``s it on the turn).
    """
    recalled = turn.recall() if turn is not None else None
    if recalled is not None:
        try:
            return attempt(StoredDocument(content=recalled[1], etag=recalled[0]), True)
        except Exception:  # noqa: BLE001 - re-decided on a fresh read below, unless it was stored
            if turn.wrote:
                raise
    for _ in range(CAS_ATTEMPTS):
        try:
            return attempt(store.get(target.key), False)
        except ConcurrentModification:
            metrics.cas_retry(target.usage.auid)
            continue
    raise _contention()


def _put_node(request: Request, store: Store, target: Target, body: bytes, events: EventDispatcher | None, turn,
              outcome: Outcome):
    return _attempts(store, target, turn, lambda stored, recalled: _put_node_on(
        request, store, target, body, events, turn, stored, recalled, outcome))


def _put_node_on(request: Request, store: Store, target: Target, body: bytes, events: EventDispatcher | None,
                 turn, stored: StoredDocument | None, recalled: bool, outcome: Outcome) -> Response:
    """One attempt of a node PUT on ``stored``; ConcurrentModification if it lost the race."""
    current_etag = stored.etag if stored else ABSENT
    outcome.etag_before = current_etag
    check_preconditions(request, current_etag, safe_method=False)
    if stored is None:
        raise NoParent(phrase="the document does not exist", ancestor=target.root_url)
    new_content, created = put_node(stored.content, target.node, body, target.document_url)
    new_tree = parsed_tree(new_content)  # the editor's own parse of its result, not a second one
    check_limits(new_tree.getroot())
    if new_content == stored.content:
        if recalled:
            raise _Unconfirmed()
        return xcap_response(200, etag=stored.etag)  # nothing changes: keep the ETag, skip the write
    with _write_lock(store, target):
        _validate_edit(store, target, new_tree, new_content)
        etag = store.put(target.key, new_content, current_etag)
        _committed(store, target, new_content, etag)
    if turn is not None:
        turn.remember(etag, new_content)
    if events:
        patch = node_patch(target.selector, "put", None, new_tree.getroot(), created)
        events.emit(change_event(target, "put", current_etag, etag, patch))
    return xcap_response(201 if created else 200, etag=etag)


def _put_document(request: Request, store: Store, target: Target, body: bytes, events: EventDispatcher | None,
                  outcome: Outcome) -> Response:
    """PUT of a whole document: the body is checked first (409 before any 412, as RFC 7232 §5
    ranks a failure above a failed condition), then written with the store's compare-and-swap.

    When the conditions name the state to replace (none, ``If-None-Match: *``, one strong
    ``If-Match``) and no change listener needs the replaced ETag, the store writes without a read
    first (``Store.write``: on MySQL one statement, whose replaced ETag is then unknown unless the
    client named it). If it refuses, the read-first loop below decides, exactly as if it had run
    alone: 412, or a retry on the fresh document. The access log never changes which way is taken.
    """
    tree = parse_document(body)  # 409 not-utf-8 / not-well-formed before anything is read
    locked = target.usage.write_lock is not None  # checks across documents: validate under the lock
    if not locked:
        _validate(store, target, tree, body)
    expected = write_expectation(request)
    if not locked and not events and expected is not NEEDS_STORED_STATE:
        try:
            written = store.write(target.key, body, expected)
        except ConcurrentModification:
            pass  # not in the state the conditions name (or a race): read it and judge below
        else:
            _forget_recalled(store, target)
            outcome.etag_before = written.replaced
            return xcap_response(201 if written.created else 200, etag=written.etag)

    for _ in range(CAS_ATTEMPTS):
        stored = store.get(target.key)
        current_etag = stored.etag if stored else ABSENT
        outcome.etag_before = current_etag
        check_preconditions(request, current_etag, safe_method=False)
        if stored is not None and body == stored.content:
            return xcap_response(200, etag=stored.etag)  # nothing changes: keep the ETag, skip the write
        try:
            with _write_lock(store, target):
                if locked:
                    _validate(store, target, tree, body)
                etag = store.put(target.key, body, current_etag)
                _committed(store, target, body, etag)
        except ConcurrentModification:
            metrics.cas_retry(target.usage.auid)
            continue
        _forget_recalled(store, target)
        if events:
            events.emit(change_event(target, "put", current_etag, etag))
        return xcap_response(201 if stored is None else 200, etag=etag)
    raise _contention()


def delete(request: Request, store: Store, target: Target, events: EventDispatcher | None = None) -> Outcome:
    """Delete a document (200, no ETag) or a node (200 with the document's new ETag)."""
    return _answered(lambda outcome: _delete_in_turn(request, store, target, events, outcome))


def _delete_in_turn(request: Request, store: Store, target: Target, events: EventDispatcher | None,
                    outcome: Outcome) -> Response:
    if target.selector is None:
        return _delete(request, store, target, events, None, outcome)
    with _node_write_turn(store, target) as turn:
        return _delete(request, store, target, events, turn, outcome)


def _delete(request: Request, store: Store, target: Target, events: EventDispatcher | None, turn,
            outcome: Outcome) -> Response:
    return _attempts(store, target, turn, lambda stored, recalled: _delete_on(
        request, store, target, events, turn, stored, outcome))


def _delete_on(request: Request, store: Store, target: Target, events: EventDispatcher | None, turn,
               stored: StoredDocument | None, outcome: Outcome) -> Response:
    """One attempt of a DELETE on ``stored``; ConcurrentModification if it lost the race."""
    outcome.etag_before = stored.etag if stored is not None else ABSENT
    if stored is None:
        raise HTTPNotFound(detail=f"no document {target.uri.document_selector}")
    check_preconditions(request, stored.etag, safe_method=False)
    if target.selector is None:
        with _write_lock(store, target) if target.usage.on_commit else nullcontext():
            store.delete(target.key, stored.etag)
            _committed(store, target, None, None)
        if events:
            events.emit(change_event(target, "delete", stored.etag, None))
        return xcap_response(200)
    try:
        new_content = delete_node(stored.content, target.node)
    except NodeNotFound as exc:
        raise HTTPNotFound(detail=f"no node {target.uri.node_selector!r} in the document: {exc}") from None
    with _write_lock(store, target):
        _validate_edit(store, target, parsed_tree(new_content), new_content)
        etag = store.put(target.key, new_content, stored.etag)
        _committed(store, target, new_content, etag)
    if turn is not None:
        turn.remember(etag, new_content)
    if events:
        old_root = parse_document(stored.content).getroot()
        events.emit(change_event(target, "delete", stored.etag, etag,
                                 node_patch(target.selector, "delete", old_root, None, False)))
    return xcap_response(200, etag=etag)


# -- helpers ----------------------------------------------------------------------------------


def _check_content_type(request: Request, target: Target) -> None:
    """415 unless the body's MIME type is the one for the resource (parameters are ignored)."""
    if target.selector is None:
        expected = target.usage.mime_type
    else:
        expected = XCAP_ATT if target.selector.kind == "attribute" else XCAP_EL
    given = (request.content_type or "").strip().lower()
    if given != expected:
        raise HTTPUnsupportedMediaType(detail=f"Content-Type must be {expected}, not {given or 'absent'}")


def _validate(store: Store, target: Target, tree, content: bytes) -> None:
    target.usage.validate(tree, ValidationContext(uri=target.uri, usage=target.usage, content=content,
                                                  store=store, key=target.key, root_url=target.root_url))


def _validate_edit(store: Store, target: Target, tree, content: bytes) -> None:
    """``_validate`` of the editor's tree of an edited document (node PUT or DELETE). That tree
    may be one edited in place (editor._replaced_in_tree: the editor caches it as the tree of
    ``content``), whose line numbers are not those of ``content``: a failure is decided again on
    a parse of ``content``, so that its message names the lines a client sees. (Should that
    parse pass, the first failure stands.)"""
    try:
        _validate(store, target, tree, content)
    except XCAPError:
        _validate(store, target, fresh_tree(content), content)
        raise


def _node_write_turn(store: Store, target: Target):
    """The turn for a read-modify-write of the target's document, shared by the processes of the
    host that use the store (see turns.py)."""
    return store.write_turn(target.key)


def _forget_recalled(store: Store, target: Target) -> None:
    """A whole-document PUT replaced the document: the store's recall cache (turns.py, if it has
    one) must keep no copy of the old text. (DELETE forgets in the store's ``delete``.)"""
    store.forget_recalled(target.key)


def _committed(store: Store, target: Target, content: bytes | None, etag: str | None) -> None:
    """The usage's ``on_commit`` hook after a committed write or delete (still under its lock)."""
    if target.usage.on_commit is not None:
        target.usage.on_commit(store, target.key, content, etag)


def _write_lock(store: Store, target: Target):
    """The usage's store-wide lock around validate + commit, or nothing."""
    return store.lock(target.usage.write_lock) if target.usage.write_lock else nullcontext()


def change_event(target: Target, operation: str, previous_etag: str | None, new_etag: str | None,
                 patch: tuple = ()) -> ChangeEvent:
    uri, key = target.uri, target.key
    return ChangeEvent(
        auid=uri.auid, xui=uri.xui, username=key.username, domain=key.domain,
        document_selector=uri.document_selector, doc_uri=key.doc_uri, node_selector=uri.node_selector,
        operation=operation, previous_etag=previous_etag, new_etag=new_etag,
        xcap_root=target.root_url.rstrip("/") + "/",
        namespaces=dict(target.selector.namespaces) if target.selector is not None else {}, patch=patch,
    )


def _contention() -> HTTPServiceUnavailable:
    metrics.unavailable("contention")
    return HTTPServiceUnavailable(
        detail="the document is being changed by other requests right now; retry",
        headers=[("Retry-After", "1")],
    )
