"""Operator commands: export, import, purge and check documents; the settings reference.

``xcap-wsgi export|import|purge|check`` (wired in ``cli.py`` by ``add_commands``) call the
functions here, which also work from Python:

* ``export_documents(store, destination, username=..., domain=...)`` writes a user's documents
  (or every document) to a folder or a tar file: ``manifest.json`` plus one file per document
  under ``documents/``, in a tree mirroring ``doc_uri``. Files hold the exact stored bytes; the
  manifest records ``doc_uri``, ``username``, ``domain``, ``doc_type``, ``etag``, ``size`` and
  ``sha256`` of each.
* ``import_documents(store, source)`` checks the whole export first (manifest, sizes, SHA-256,
  ETags, key lengths), then restores every document byte for byte *with its ETag*, creating or
  overwriting the row. Clients holding the exported ETags keep working (If-Match still matches).
  The overwrite is unconditional (a restore is meant to win): import while the user is idle.
* ``purge_documents(store, username, domain)`` deletes a user's documents (compare-and-swap
  deletes through the Store protocol, re-read and retried when a client writes meanwhile).
* ``check_documents(store, registry, default_domain)`` validates every stored document against
  its application usage (UTF-8, well-formed, the usage's validators: XML Schema) and the row
  against its ``doc_uri`` (``doc_type`` of the usage, ``username``/``domain`` of the XUI, ETag
  within Kamailio's limit), reports a user's second pres-rules document (Kamailio applies only
  the first), and returns the problems found.

Two things the Store protocol (``get/put/delete/list_documents``) cannot do are implemented here
per store type, with bound parameters, on the store's own connection:

* ``restore(store, key, content, etag)``: write a row with a *given* ETag (``put`` always makes
  a new one);
* ``iter_rows(store, username=None, domain=None)``: every row with its content, in batches
  ordered by ``id`` (the protocol only lists one user's documents).

Both support ``SQLiteStore`` and ``MySQLStore``; another store type raises ``TypeError``
(``iter_rows`` for one user falls back to ``list_documents`` + ``get`` on any store).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

from .build import usage_registry
from .storage import ConcurrentModification, DocumentKey, SQLiteStore, Store, StoreError
from .storage.base import MAX_ETAG_LENGTH

EXPORT_FORMAT = "xcap-wsgi-export"
EXPORT_VERSION = 1
MANIFEST = "manifest.json"
DOCUMENTS = "documents"
#: Kamailio's column limits (``xcap`` table): username/domain VARCHAR(64), doc_uri VARCHAR(255).
LIMITS = {"username": 64, "domain": 64, "doc_uri": 255}
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class AdminError(Exception):
    """An operator command cannot proceed (bad export, unsupported store, refused action)."""


@dataclass(frozen=True)
class Row:
    """One row of Kamailio's ``xcap`` table, content included."""

    username: str
    domain: str
    doc_uri: str
    doc_type: int
    etag: str
    content: bytes

    @property
    def key(self) -> DocumentKey:
        return DocumentKey(self.username, self.domain, self.doc_uri, self.doc_type)


class Progress:
    """A counter on a stream (stderr): one line every ``every`` items and a final total."""

    def __init__(self, label: str, *, every: int = 100, stream: TextIO | None = None):
        self.label, self.every, self.count = label, max(1, every), 0
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()

    def step(self, n: int = 1) -> None:
        before = self.count
        self.count += n
        if self.count // self.every > before // self.every:
            print(f"{self.label}: {self.count} documents...", file=self.stream, flush=True)

    def done(self, what: str = "") -> None:
        elapsed = time.monotonic() - self.started
        print(f"{self.label}: {self.count} documents{' ' + what if what else ''} in {elapsed:.1f}s",
              file=self.stream, flush=True)


def _no_progress(label: str) -> Progress:
    return Progress(label, every=10**12, stream=io.StringIO())


# -- store-specific helpers (see the module docstring) -----------------------------------------


def _mysql_store_type():
    try:
        from .storage.mysql import MySQLStore
    except ImportError:  # pragma: no cover - PyMySQL is a hard dependency
        return None
    return MySQLStore


def iter_rows(store: Store, username: str | None = None, domain: str | None = None, *,
              batch: int = 200) -> Iterator[Row]:
    """Every row (or one user's rows when ``username`` and ``domain`` are given), by ``id``.

    Rows are fetched ``batch`` at a time (keyset pagination on ``id``), so memory stays bounded
    on large tables and concurrent writes do not make rows appear twice.
    """
    one_user = username is not None and domain is not None
    where = " AND username=? AND domain=?" if one_user else ""
    mysql = _mysql_store_type()
    if isinstance(store, SQLiteStore):
        sql = f"SELECT id, username, domain, doc_uri, doc_type, etag, doc FROM xcap WHERE id > ?{where} ORDER BY id LIMIT ?"

        def fetch(after: int):
            params = (after,) + ((username, domain) if one_user else ()) + (batch,)
            return store._execute(sql, params).fetchall()
    elif mysql is not None and isinstance(store, mysql):
        sql = (f"SELECT id, username, domain, doc_uri, doc_type, etag, doc FROM `{store.table}` "
               f"WHERE id > %s{where.replace('?', '%s')} ORDER BY id LIMIT %s")

        def fetch(after: int):
            params = (after,) + ((username, domain) if one_user else ()) + (batch,)

            def work(cursor):
                cursor.execute(sql, params)
                return cursor.fetchall()

            return store._run(work, write=False)
    elif one_user:
        for info in store.list_documents(username, domain):
            stored = store.get(DocumentKey(username, domain, info.doc_uri, info.doc_type))
            if stored is not None:
                yield Row(username, domain, info.doc_uri, info.doc_type, stored.etag, stored.content)
        return
    else:
        raise TypeError(f"iter_rows: cannot list every row of {store!r} (SQLiteStore and MySQLStore only)")
    after = 0
    while True:
        rows = fetch(after)
        for row in rows:
            yield Row(row[1], row[2], row[3], int(row[4]), row[5], bytes(row[6]))
        if len(rows) < batch:
            return
        after = rows[-1][0]


def restore(store: Store, key: DocumentKey, content: bytes, etag: str) -> str:
    """Write ``content`` under ``key`` with exactly ``etag``; return "created", "replaced" or "unchanged".

    An existing row of the same account and ``doc_uri`` is overwritten in place (it keeps its
    ``id``; ``doc_type`` is set from ``key``; ``source``/``port`` become 0 as Kamailio's
    xcap_server writes them). Raises ``StoreError`` when ``doc_uri`` belongs to another account
    (it is UNIQUE in Kamailio's table).
    """
    _check_etag(etag)
    content = bytes(content)
    current = store.get(key)
    if current is not None and current.etag == etag and current.content == content:
        return "unchanged"
    mysql = _mysql_store_type()
    if isinstance(store, SQLiteStore):
        import sqlite3

        params = (sqlite3.Binary(content), etag, key.doc_type, key.username, key.domain, key.doc_uri)
        cursor = store._execute("UPDATE xcap SET doc=?, etag=?, doc_type=?, source=0, port=0 "
                                "WHERE username=? AND domain=? AND doc_uri=?", params)
        if cursor.rowcount:
            return "replaced"
        try:
            store._execute("INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) "
                           "VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                           (key.username, key.domain, key.doc_type, key.doc_uri, sqlite3.Binary(content), etag))
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"{key.doc_uri} is stored for another account (doc_uri is unique): {exc}") from exc
        return "created"
    if mysql is not None and isinstance(store, mysql):
        import pymysql

        store._check_lengths(key)
        table = store.table
        update = (f"UPDATE `{table}` SET doc=%s, etag=%s, doc_type=%s, source=0, port=0 "
                  "WHERE username=%s AND domain=%s AND doc_uri=%s")
        insert = (f"INSERT INTO `{table}` (username, domain, doc_type, doc_uri, doc, etag, source, port) "
                  "VALUES (%s, %s, %s, %s, %s, %s, 0, 0)")

        def work(cursor):
            # CLIENT.FOUND_ROWS: rowcount counts matched rows, changed or not.
            cursor.execute(update, (content, etag, key.doc_type, key.username, key.domain, key.doc_uri))
            if cursor.rowcount:
                return "replaced"
            try:
                cursor.execute(insert, (key.username, key.domain, key.doc_type, key.doc_uri, content, etag))
            except pymysql.err.IntegrityError as exc:
                raise StoreError(f"{key.doc_uri} is stored for another account (doc_uri is unique): {exc}") from exc
            return "created"

        return store._run(work, write=True)
    raise TypeError(f"restore: cannot write a given ETag into {store!r} (SQLiteStore and MySQLStore only)")


def _check_etag(etag: str) -> None:
    if not isinstance(etag, str) or not etag or len(etag) > MAX_ETAG_LENGTH:
        raise AdminError(f"invalid ETag {etag!r}: 1 to {MAX_ETAG_LENGTH} characters required")
    if any(c in etag for c in '"\\') or any(ord(c) < 0x21 or ord(c) == 0x7f for c in etag):
        raise AdminError(f"invalid ETag {etag!r}: no quotes, backslashes, spaces or control characters")


# -- export --------------------------------------------------------------------------------------


def _segment(part: str) -> str:
    """A doc_uri segment as a file name: '%' escaped, and '', '.', '..' made harmless."""
    part = part.replace("%", "%25").replace("\x00", "%00")
    return {"": "%", ".": "%2E", "..": "%2E%2E"}.get(part, part)


def _document_paths(rows: list[Row]) -> list[str]:
    """Relative file paths (``documents/...`` mirroring doc_uri), unique and never nested in each other."""
    files: set[str] = set()
    folders: set[str] = set()
    paths = []
    for number, row in enumerate(rows, 1):
        path = "/".join([DOCUMENTS] + [_segment(p) for p in row.doc_uri.lstrip("/").split("/")])
        parents = {"/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)}
        if path in files or path in folders or parents & files:
            path = f"{DOCUMENTS}/%conflict/{number}"  # a document where another one's folder is
            parents = {DOCUMENTS, f"{DOCUMENTS}/%conflict"}
        files.add(path)
        folders |= parents
        paths.append(path)
    return paths


def export_documents(store: Store, destination: str | os.PathLike, *, username: str | None = None,
                     domain: str | None = None, progress: Progress | None = None) -> dict:
    """Export one user's documents (or all) to a new folder, or a ``.tar``/``.tar.gz``/``.tgz`` file.

    Returns the manifest. Refuses to overwrite: the folder must not exist (or be empty), the tar
    file must not exist.
    """
    progress = progress or _no_progress("export")
    if (username is None) != (domain is None):
        raise AdminError("export: give both username and domain, or neither (everything)")
    destination = Path(destination)
    tar_mode = _tar_mode(destination, "w")
    if tar_mode and destination.exists():
        raise AdminError(f"{destination} exists; refusing to overwrite it")
    if not tar_mode and destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise AdminError(f"{destination} exists and is not an empty folder; refusing to overwrite it")

    rows: list[Row] = []
    for row in iter_rows(store, username, domain):
        rows.append(row)
        progress.step()
    paths = _document_paths(rows)
    manifest = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "account": f"{username}@{domain}" if username is not None else None,
        "documents": [
            {"file": path, "doc_uri": row.doc_uri, "username": row.username, "domain": row.domain,
             "doc_type": row.doc_type, "etag": row.etag, "size": len(row.content),
             "sha256": hashlib.sha256(row.content).hexdigest()}
            for row, path in zip(rows, paths)
        ],
    }
    manifest_bytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    if tar_mode:
        partial = destination.with_name(destination.name + ".partial")
        with tarfile.open(partial, tar_mode) as tar:
            _tar_add(tar, MANIFEST, manifest_bytes)
            for row, path in zip(rows, paths):
                _tar_add(tar, path, row.content)
        partial.replace(destination)
    else:
        destination.mkdir(parents=True, exist_ok=True)
        for row, path in zip(rows, paths):
            target = destination / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(row.content)
        (destination / MANIFEST).write_bytes(manifest_bytes)  # last: a folder with a manifest is complete
    progress.done(f"exported to {destination}")
    return manifest


def _tar_mode(path: Path, base: str) -> str | None:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return base + ":gz"
    if name.endswith(".tar"):
        return base + ":"
    return None


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(data))


# -- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedDocument:
    key: DocumentKey
    etag: str
    content: bytes


def read_export(source: str | os.PathLike) -> list[ExportedDocument]:
    """Read and verify an export (folder or tar file) completely; raise ``AdminError`` if anything is off."""
    source = Path(source)
    if not source.exists():
        raise AdminError(f"{source} does not exist")
    if source.is_dir():
        root = source.resolve()

        def read(name: str) -> bytes:
            path = (root / name).resolve()
            if root not in path.parents or not path.is_file():
                raise AdminError(f"{name}: not a file inside {source}")
            return path.read_bytes()

        return _verify(read)
    try:
        with tarfile.open(source, "r:*") as tar:
            def read(name: str) -> bytes:
                try:
                    member = tar.getmember(name)
                except KeyError:
                    raise AdminError(f"{name}: missing from {source}") from None
                if not member.isfile():
                    raise AdminError(f"{name}: not a regular file in {source}")
                return tar.extractfile(member).read()

            return _verify(read)
    except tarfile.TarError as exc:
        raise AdminError(f"{source}: not a folder or a readable tar file: {exc}") from exc


def _verify(read: Callable[[str], bytes]) -> list[ExportedDocument]:
    try:
        manifest = json.loads(read(MANIFEST).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise AdminError(f"{MANIFEST} is not an {EXPORT_FORMAT} manifest")
    if manifest.get("version") != EXPORT_VERSION:
        raise AdminError(f"export format version {manifest.get('version')!r} is not supported (need {EXPORT_VERSION})")
    documents, seen = [], set()
    for number, entry in enumerate(manifest.get("documents") or [], 1):
        where = f"{MANIFEST} document {number}"
        try:
            file, doc_uri, etag = str(entry["file"]), str(entry["doc_uri"]), str(entry["etag"])
            key = DocumentKey(str(entry["username"]), str(entry["domain"]), doc_uri, int(entry["doc_type"]))
            size, digest = int(entry["size"]), str(entry["sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AdminError(f"{where}: missing or malformed field {exc}") from exc
        for column, limit in LIMITS.items():
            if not getattr(key, column) or len(getattr(key, column)) > limit:
                raise AdminError(f"{where}: {column} must have 1 to {limit} characters")
        try:
            _check_etag(etag)
        except AdminError as exc:
            raise AdminError(f"{where}: {exc}") from None
        if doc_uri in seen:
            raise AdminError(f"{where}: {doc_uri} appears twice")
        seen.add(doc_uri)
        content = read(file)
        if len(content) != size or hashlib.sha256(content).hexdigest() != digest:
            raise AdminError(f"{file}: content does not match the manifest (size/SHA-256): damaged export")
        documents.append(ExportedDocument(key, etag, content))
    return documents


def import_documents(store: Store, source: str | os.PathLike, *, username: str | None = None,
                     domain: str | None = None, progress: Progress | None = None) -> dict[str, int]:
    """Restore an export byte for byte with its ETags; only ``username@domain``'s documents if given.

    The export is verified completely before the first write. Returns counts of created,
    replaced and unchanged documents.
    """
    progress = progress or _no_progress("import")
    documents = read_export(source)
    if username is not None:
        documents = [d for d in documents if (d.key.username, d.key.domain) == (username, domain)]
    counts = {"created": 0, "replaced": 0, "unchanged": 0}
    for document in documents:
        counts[restore(store, document.key, document.content, document.etag)] += 1
        progress.step()
    progress.done("imported ({created} created, {replaced} replaced, {unchanged} unchanged)".format(**counts))
    return counts


# -- purge ---------------------------------------------------------------------------------------


def purge_documents(store: Store, username: str, domain: str, *, progress: Progress | None = None,
                    attempts: int = 5) -> int:
    """Delete every document of ``username@domain``; return how many were deleted.

    Each delete is a compare-and-swap on the ETag just read; when a client changes the document
    in between, it is re-read and deleted again (``attempts`` times at most).
    """
    progress = progress or _no_progress("purge")
    deleted = 0
    for info in store.list_documents(username, domain):
        key = DocumentKey(username, domain, info.doc_uri, info.doc_type)
        etag = info.etag
        for _ in range(attempts):
            try:
                store.delete(key, etag)
                deleted += 1
                break
            except ConcurrentModification:
                current = store.get(key)
                if current is None:
                    break  # someone else deleted it
                etag = current.etag
        else:
            raise StoreError(f"{info.doc_uri} kept changing; purge it again")
        progress.step()
    progress.done("deleted")
    return deleted


# -- check ---------------------------------------------------------------------------------------

#: Kamailio's doc_type of pres-rules rows (IETF and OMA): presence_xml applies one per user.
PRES_RULES_DOC_TYPE = 2


@dataclass(frozen=True)
class Problem:
    doc_uri: str
    username: str
    domain: str
    message: str

    def __str__(self) -> str:
        return f"{self.doc_uri} ({self.username}@{self.domain}): {self.message}"


def locate(doc_uri: str, registry) -> tuple[object, object] | None:
    """``(usage, XCAPURI)`` for a stored ``doc_uri`` (``<root>/<auid>/users/<xui>/...``), or None."""
    from .uri import XCAPURI

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
        if usage.document_names is not None:  # one document level: everything before it is the XUI
            xui, segments = "/".join(parts[i + 2:-1]), (parts[-1],)
        else:
            xui, segments = parts[i + 2], tuple(parts[i + 3:])
        return usage, XCAPURI(root=root, auid=part, tree="users", xui=xui, segments=segments)
    return None


def check_row(row: Row, registry, default_domain: str) -> list[str]:
    """What is wrong with one stored row (empty when nothing is)."""
    from .errors import XCAPError
    from .uri import xui_account
    from .usages import ValidationContext
    from .xmlsafe import parse_document

    problems = []
    try:
        _check_etag(row.etag)
    except AdminError as exc:
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
              if info.doc_type == PRES_RULES_DOC_TYPE and info.doc_uri != row.doc_uri]
    if not others:
        return None
    account = (row.username.lower(), row.domain.lower())
    applied = first.setdefault(account, row.doc_uri)
    if applied == row.doc_uri:
        return (f"the user has {len(others) + 1} pres-rules documents; Kamailio's presence applies this one "
                f"(the oldest row) and ignores {', '.join(others)}")
    return f"ignored: Kamailio's presence applies only the user's oldest pres-rules document, {applied}"


def check_documents(store: Store, registry=None, default_domain: str = "localhost", *,
                    username: str | None = None, domain: str | None = None,
                    progress: Progress | None = None) -> list[Problem]:
    """Check every stored document (or one user's); return the problems, in row order."""
    from .usages import default_registry

    registry = registry if registry is not None else default_registry()
    progress = progress or _no_progress("check")
    problems: list[Problem] = []
    first_pres_rules: dict[tuple[str, str], str] = {}  # accounts with several: the lowest id's doc_uri
    for row in iter_rows(store, username, domain):
        problems.extend(Problem(row.doc_uri, row.username, row.domain, m)
                        for m in check_row(row, registry, default_domain))
        if row.doc_type == PRES_RULES_DOC_TYPE:
            message = _several_pres_rules(store, row, first_pres_rules)
            if message:
                problems.append(Problem(row.doc_uri, row.username, row.domain, message))
        progress.step()
    progress.done(f"checked, {len(problems)} problem(s)")
    return problems


# -- the settings reference (README) -------------------------------------------------------------

README_START = "<!-- settings-reference:start (generated by xcap_wsgi.admin.settings_reference_markdown) -->"
README_END = "<!-- settings-reference:end -->"


def _show_default(value) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`" if value else "(none)"
    if value is None:
        return "(none)"
    return f"`{value}`"


def settings_reference_markdown() -> str:
    """The README's settings table, generated from ``xcap_wsgi.settings.SETTINGS``."""
    from .settings import SETTINGS

    lines = ["| Setting (ini / PasteDeploy) | `serve` option | Environment | Default | Used by | Meaning |",
             "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        help_text = s.help.replace("|", "\\|")
        lines.append(f"| `{s.name}` | `{s.flag}` | `{s.env}` | {_show_default(s.default)} | {s.scope} | {help_text} |")
    return "\n".join(lines) + "\n"


def update_readme(path: str | os.PathLike = "README.md") -> bool:
    """Rewrite the generated settings table between the README markers; True if it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    new = text[:start] + "\n" + settings_reference_markdown() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


# -- command line (wired into xcap-wsgi by cli.py) -----------------------------------------------


def add_commands(commands) -> None:
    """Register export, import, purge and check on the ``xcap-wsgi`` sub-command parser."""

    def common(parser, *, user: str):
        parser.add_argument("--db", default=None, help="database URL (default: $XCAP_DB, the config file or "
                            "the embedded SQLite file)")
        parser.add_argument("--config", metavar="FILE", help="ini file with an [xcap-wsgi] section (db, default_domain)")
        parser.add_argument("--default-domain", default=None, help="domain of XUIs without one (default: setting)")
        parser.add_argument("--progress-every", type=int, default=100, metavar="N",
                            help="print progress to stderr every N documents (default 100)")
        if user == "required":
            parser.add_argument("--user", required=True, metavar="XUI",
                                help="the user: sip:alice@example.com, alice@example.com or alice (default domain)")
        elif user == "optional":
            parser.add_argument("--user", metavar="XUI", help="only this user's documents (default: everyone's)")

    export = commands.add_parser("export", help="export a user's documents (exact bytes and ETags) to a folder or tar",
                                 description="Write a user's documents to DESTINATION: a new folder, or a .tar, "
                                 ".tar.gz or .tgz file, with manifest.json (doc_uri, doc_type, etag, username, "
                                 "domain, size, sha256) and one file per document under documents/.")
    export.add_argument("destination", metavar="DESTINATION")
    common(export, user="optional")
    export.add_argument("--all", action="store_true", help="export every user's documents (instead of --user)")
    export.set_defaults(handler=_cmd_export)

    restore_cmd = commands.add_parser("import", help="restore exported documents byte for byte with their ETags",
                                      description="Verify the whole export (sizes, SHA-256, ETags), then create or "
                                      "overwrite each document with its exact bytes and ETag.")
    restore_cmd.add_argument("source", metavar="SOURCE", help="export folder or tar file")
    common(restore_cmd, user="optional")
    restore_cmd.set_defaults(handler=_cmd_import)

    purge = commands.add_parser("purge", help="delete all documents of a user (needs --yes)",
                                description="Delete every document of a user. Without --yes, only lists them.")
    common(purge, user="required")
    purge.add_argument("--yes", action="store_true", help="really delete")
    purge.set_defaults(handler=_cmd_purge)

    check = commands.add_parser("check", help="validate every stored document against its usage; non-zero on problems",
                                description="Check each row: UTF-8, well-formed, the usage's validators (XML Schema), "
                                "doc_type and account matching doc_uri, ETag length. Exit 1 if any problem is found.")
    common(check, user="optional")
    check.add_argument("--usage", action="append", metavar="AUID=NAMESPACE;MIME-TYPE",
                       help="a generic application usage whose documents are stored (repeatable; default: setting)")
    check.set_defaults(handler=_cmd_check)


def _values(args) -> dict:
    from .settings import resolve

    given = {}
    if getattr(args, "config", None):
        from .settings import read_config as _read_config

        given.update(_read_config(args.config))
    if args.db:
        given["db"] = args.db
    if args.default_domain:
        given["default_domain"] = args.default_domain
    if getattr(args, "usage", None):
        given["usage"] = args.usage
    return resolve(given)


def _account(xui: str, default_domain: str) -> tuple[str, str]:
    from .uri import xui_account

    return xui_account(xui.strip(), default_domain)


def _run(args, body: Callable[[dict, Store], int]) -> int:
    from .storage import open_store

    try:
        values = _values(args)
    except ValueError as exc:
        print(f"xcap-wsgi: {exc}", file=sys.stderr)
        return 2
    try:
        store = open_store(values["db"])
    except (StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: cannot open the database {values['db']}: {exc}", file=sys.stderr)
        return 1
    try:
        return body(values, store)
    except (AdminError, StoreError, TypeError, OSError) as exc:
        print(f"xcap-wsgi {args.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _cmd_export(args) -> int:
    if bool(args.user) == bool(args.all):
        print("xcap-wsgi export: give --user XUI or --all", file=sys.stderr)
        return 2

    def body(values, store):
        account = _account(args.user, values["default_domain"]) if args.user else (None, None)
        manifest = export_documents(store, args.destination, username=account[0], domain=account[1],
                                    progress=Progress("export", every=args.progress_every))
        print(f"exported {len(manifest['documents'])} document(s) to {args.destination}")
        return 0

    return _run(args, body)


def _cmd_import(args) -> int:
    def body(values, store):
        account = _account(args.user, values["default_domain"]) if args.user else (None, None)
        counts = import_documents(store, args.source, username=account[0], domain=account[1],
                                  progress=Progress("import", every=args.progress_every))
        print("imported {created} created, {replaced} replaced, {unchanged} unchanged".format(**counts))
        from .rls_index import rebuild, side_table

        if side_table(store) is not None:  # imported rls-services rows bypass the side table
            print(f"{store.rls_index.side}: rebuilt, {rebuild(store)} service URI(s)")
        return 0

    return _run(args, body)


def _cmd_purge(args) -> int:
    def body(values, store):
        username, domain = _account(args.user, values["default_domain"])
        documents = store.list_documents(username, domain)
        if not args.yes:
            for info in documents:
                print(f"would delete {info.doc_uri} ({info.size} bytes, etag {info.etag})")
            print(f"{len(documents)} document(s) of {username}@{domain}; nothing deleted: add --yes to delete them",
                  file=sys.stderr)
            return 1
        deleted = purge_documents(store, username, domain, progress=Progress("purge", every=args.progress_every))
        print(f"deleted {deleted} document(s) of {username}@{domain}")
        return 0

    return _run(args, body)


def _cmd_check(args) -> int:
    def body(values, store):
        account = _account(args.user, values["default_domain"]) if args.user else (None, None)
        progress = Progress("check", every=args.progress_every)
        try:
            registry = usage_registry(values)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        problems = check_documents(store, registry, values["default_domain"], username=account[0],
                                   domain=account[1], progress=progress)
        if not args.user:  # the rls-services side table against the rows (xcap_wsgi/rls_index.py)
            from .rls_index import drift

            problems += [f"rls-index: {p} (xcap-wsgi rls-index --rebuild repairs it)" for p in drift(store)]
        for problem in problems:
            print(problem)
        print(f"{progress.count} document(s) checked, {len(problems)} problem(s)")
        return 1 if problems else 0

    return _run(args, body)
