"""``xcap-wsgi check``: validate every stored document against its application usage.

Each row is checked for UTF-8, well-formedness and the usage's validators (XML Schema), and
against its ``doc_uri`` (``doc_type`` of the usage, ``username``/``domain`` of the XUI, ETag within
Kamailio's limit); a user's second pres-rules document is reported (Kamailio applies only the
first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..storage import Store
from ..storage.base import InvalidETag, Row, check_etag, iter_rows
from ..storage.kamailio import PRES_RULES
from .progress import Progress, silent

if TYPE_CHECKING:
    from ..uri import XCAPURI
    from ..usages import ApplicationUsage


@dataclass(frozen=True)
class Problem:
    doc_uri: str
    username: str
    domain: str
    message: str

    def __str__(self) -> str:
        return f"{self.doc_uri} ({self.username}@{self.domain}): {self.message}"


def locate(doc_uri: str, registry) -> tuple[ApplicationUsage, XCAPURI] | None:
    """``(usage, XCAPURI)`` for a stored ``doc_uri`` (``<root>/<auid>/users/<xui>/...``), or None."""
    from ..uri import XCAPURI

    parts = doc_uri.split("/")
    for i, part in enumerate(parts[:-2]):
        usage = registry.get(part)
        if usage is None or parts[i + 1] not in ("users", "global"):
            continue
        root = "/".join(parts[:i]) or "/"
        if parts[i + 1] == "global":
            return usage, XCAPURI(root=root, auid=part, tree="global", xui=None, segments=tuple(parts[i + 2:]))
        if len(parts) < i + 4:
            continue
        segments: tuple[str, ...]
        if usage.document_names is not None:  # one document level: everything before it is the XUI
            xui, segments = "/".join(parts[i + 2:-1]), (parts[-1],)
        else:
            xui, segments = parts[i + 2], tuple(parts[i + 3:])
        return usage, XCAPURI(root=root, auid=part, tree="users", xui=xui, segments=segments)
    return None


def check_row(row: Row, registry, default_domain: str) -> list[str]:
    """What is wrong with one stored row (empty when nothing is)."""
    from ..errors import XCAPError
    from ..uri import xui_account
    from ..usages import ValidationContext
    from ..xmlsafe import parse_document

    problems = []
    try:
        check_etag(row.etag)
    except InvalidETag as exc:
        problems.append(str(exc))
    located = locate(row.doc_uri, registry)
    if located is None:
        return problems + ["no enabled application usage matches this doc_uri"]
    usage, uri = located
    if usage.doc_type != row.doc_type:
        problems.append(f"doc_type {row.doc_type}, but {usage.auid} documents have doc_type {usage.doc_type}")
    if not usage.allows_document(uri.tree, uri.segments):
        problems.append(f"{'/'.join(uri.segments)} is not a document name of {usage.auid}")
    if uri.xui is not None:
        user, domain = xui_account(uri.xui, default_domain)
        if (user, domain) != (row.username, row.domain.lower()):
            problems.append(f"row account {row.username}@{row.domain} does not match the XUI {uri.xui} "
                            f"({user}@{domain}): xcap-wsgi and Kamailio will not find it")
    try:
        tree = parse_document(row.content)
        usage.validate(tree, ValidationContext(uri=uri, usage=usage, content=row.content))
    except XCAPError as exc:
        problems.append(exc.tag + (f": {exc.phrase}" if exc.phrase else ""))
    except Exception as exc:  # a validator bug must not stop the check of the other rows
        problems.append(f"validation failed unexpectedly: {type(exc).__name__}: {exc}")
    return problems


def _several_pres_rules(store: Store, row: Row, first: dict[tuple[str, str], str]) -> str | None:
    """Whether the user of a pres-rules row has another one (Kamailio's presence_xml applies only
    the row with the lowest id). Rows come in id order, so the first seen of an account is it;
    ``first`` remembers it for accounts that have several only (memory stays small)."""
    others = [info.doc_uri for info in store.list_documents(row.username, row.domain)
              if info.doc_type == PRES_RULES and info.doc_uri != row.doc_uri]
    if not others:
        return None
    account = (row.username.lower(), row.domain.lower())
    applied = first.setdefault(account, row.doc_uri)
    if applied == row.doc_uri:
        return (f"the user has {len(others) + 1} pres-rules documents; Kamailio's presence applies this one "
                f"(the oldest row) and ignores {', '.join(others)}")
    return f"ignored: Kamailio's presence applies only the user's oldest pres-rules document, {applied}"


def iter_problems(store: Store, registry=None, default_domain: str = "localhost", *,
                  username: str | None = None, domain: str | None = None,
                  progress: Progress | None = None) -> Iterator[Problem]:
    """The problems of every stored document (or one user's), in row order, as they are found.

    Rows come in batches (``iter_rows``): memory is one batch plus the accounts that have several
    pres-rules documents, whatever the number of rows.
    """
    from ..usages import default_registry

    registry = registry if registry is not None else default_registry()
    progress = progress or silent("check")
    progress.start(store.count_rows(username, domain))
    found = 0
    first_pres_rules: dict[tuple[str, str], str] = {}  # accounts with several: the lowest id's doc_uri
    for row in iter_rows(store, username, domain):
        for message in check_row(row, registry, default_domain):
            found += 1
            yield Problem(row.doc_uri, row.username, row.domain, message)
        if row.doc_type == PRES_RULES:
            several = _several_pres_rules(store, row, first_pres_rules)
            if several:
                found += 1
                yield Problem(row.doc_uri, row.username, row.domain, several)
        progress.step()
    progress.done(f"checked, {found} problem(s)")


def check_documents(store: Store, registry=None, default_domain: str = "localhost", *,
                    username: str | None = None, domain: str | None = None,
                    progress: Progress | None = None) -> list[Problem]:
    """Check every stored document (or one user's); return the problems, in row order."""
    return list(iter_problems(store, registry, default_domain, username=username, domain=domain,
                              progress=progress))
