"""The export format: written and read as a stream, so memory does not grow with the documents.

An export is a folder or a ``.tar``/``.tar.gz``/``.tgz`` file holding, in this order::

    manifest.json            {"format": "xcap-wsgi-export", "version": 2, "exported_at", "account", "batch"}
    index/000001.jsonl       one JSON line per document of batch 1 (file, doc_uri, username, domain,
    documents/...              doc_type, etag, size, sha256), then those documents' files
    index/000002.jsonl       ...
    end.json                 {"documents": N, "batches": K}: written last, so an export without it
                             is incomplete

Document files mirror ``doc_uri`` under ``documents/`` (segments ``''``, ``.``, ``..`` and ``%``
escaped); in a folder, a document whose path is another one's folder goes to
``documents/%conflict/<n>``. A tar is read member after member in this order (one pass, no
``getmember``: linear time) and written as ``<name>.partial`` then renamed. Version 1 exports (one
``manifest.json`` listing every document) are still read, with the list in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..storage import DocumentKey
from ..storage.base import InvalidETag, Row, check_etag
from ..storage.kamailio import COLUMN_LIMITS

EXPORT_FORMAT = "xcap-wsgi-export"
EXPORT_VERSION = 2
MANIFEST = "manifest.json"
END = "end.json"
DOCUMENTS = "documents"
INDEX = "index/{:06d}.jsonl"
_INDEX_NAME = re.compile(r"^index/(\d{6})\.jsonl$")


class AdminError(Exception):
    """An operator command cannot proceed (bad export, refused action)."""


@dataclass(frozen=True)
class ExportedDocument:
    """One verified document of an export."""

    key: DocumentKey
    etag: str
    content: bytes


def tar_mode(path: Path, base: str) -> str | None:
    """tarfile's mode for a tar path (``w:gz``, ``w:``), or None for a folder."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return base + ":gz"
    if name.endswith(".tar"):
        return base + ":"
    return None


def _segment(part: str) -> str:
    """A doc_uri segment as a file name: '%' escaped, and '', '.', '..' made harmless."""
    part = part.replace("%", "%25").replace("\x00", "%00")
    return {"": "%", ".": "%2E", "..": "%2E%2E"}.get(part, part)


def document_path(doc_uri: str) -> str:
    """``documents/`` + doc_uri's segments, each made a safe file name."""
    return "/".join([DOCUMENTS] + [_segment(p) for p in doc_uri.lstrip("/").split("/")])


def entry_of(row: Row, file: str) -> dict:
    return {"file": file, "doc_uri": row.doc_uri, "username": row.username, "domain": row.domain,
            "doc_type": row.doc_type, "etag": row.etag, "size": len(row.content),
            "sha256": hashlib.sha256(row.content).hexdigest()}


# -- writing -------------------------------------------------------------------------------------


class ExportWriter:
    """Write an export batch by batch (``add_batch``), then ``finish``; ``abort`` on failure."""

    def __init__(self, destination: str | os.PathLike, header: dict):
        self.destination = Path(destination)
        self.mode = tar_mode(self.destination, "w")
        self.documents = self.batches = 0
        if self.mode and self.destination.exists():
            raise AdminError(f"{self.destination} exists; refusing to overwrite it")
        if not self.mode and self.destination.exists() and (
                not self.destination.is_dir() or any(self.destination.iterdir())):
            raise AdminError(f"{self.destination} exists and is not an empty folder; refusing to overwrite it")
        self.header = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, **header}
        if self.mode:
            self.partial = self.destination.with_name(self.destination.name + ".partial")
            # gzip level 6 (gzip's own default): level 9, tarfile's, is several times slower for ~2% less
            options = {"compresslevel": 6} if self.mode.endswith("gz") else {}
            # typeshed's overloads of tarfile.open want the mode as a literal, not a str variable
            self.tar = tarfile.open(str(self.partial), self.mode, **options)  # type: ignore[call-overload]
        else:
            self.destination.mkdir(parents=True, exist_ok=True)
        self._put(MANIFEST, _json(self.header))

    def add_batch(self, rows: list[Row]) -> None:
        """Write one batch: its index, then its documents' files (in a folder, where order does
        not matter, each file as soon as its free path is known, then the index)."""
        self.batches += 1
        entries, files = [], []
        for row in rows:
            self.documents += 1
            file = document_path(row.doc_uri)
            if self.mode:
                files.append((file, row.content))
            else:
                file = self._write_free(file, self.documents, row.content)
            entries.append(entry_of(row, file))
        index = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")
        self._put(INDEX.format(self.batches), index)
        for file, content in files:
            self._put(file, content)

    def finish(self) -> None:
        self._put(END, _json({"documents": self.documents, "batches": self.batches}))
        if self.mode:
            self.tar.close()
            self.partial.replace(self.destination)

    def abort(self) -> None:
        if self.mode:
            self.tar.close()
            self.partial.unlink(missing_ok=True)

    def _put(self, name: str, data: bytes) -> None:
        if self.mode:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            self.tar.addfile(info, io.BytesIO(data))
            self.tar.members.clear()  # tarfile keeps every TarInfo otherwise: memory would grow
        else:
            target = self.destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def _write_free(self, file: str, number: int, content: bytes) -> str:
        """Write ``content`` at ``file`` and return it, or at ``documents/%conflict/<number>`` when a
        document is where its folder would be, or a folder where it would be (the file system
        says so: no list of paths is kept in memory)."""
        target = self.destination / file
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:
                handle.write(content)
            return file
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            file = f"{DOCUMENTS}/%conflict/{number}"
            self._put(file, content)
            return file


def _json(value: dict) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


# -- reading -------------------------------------------------------------------------------------


def read_export(source: str | os.PathLike) -> Iterator[ExportedDocument]:
    """Every document of an export, verified (manifest, sizes, SHA-256, ETags, key lengths) as it
    is read; ``AdminError`` at the first thing that is off. A generator: one pass, constant memory
    (version 2). Folders are read by path, tars member after member."""
    source = Path(source)
    if not source.exists():
        raise AdminError(f"{source} does not exist")
    if source.is_dir():
        yield from _read_folder(source)
        return
    try:
        with tarfile.open(source, "r:*") as tar:  # read in order all the same (no getmember)
            yield from _read_tar(tar, source)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise AdminError(f"{source}: not a folder or a readable tar file: {exc}") from exc


def _read_folder(source: Path) -> Iterator[ExportedDocument]:
    root = source.resolve()

    def read(name: str) -> bytes:
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file():
            raise AdminError(f"{name}: not a file inside {source}")
        return path.read_bytes()

    header = _header(read(MANIFEST))
    if header["version"] == 1:
        for number, entry in enumerate(header.get("documents") or [], 1):
            yield _verified(entry, number, read)
        return
    if not (root / END).is_file():
        raise AdminError(f"{source}: no {END}: the export is incomplete (interrupted?)")
    end = _end(read(END))
    number = 0
    for batch in range(1, end["batches"] + 1):
        for entry in _index(read(INDEX.format(batch)), INDEX.format(batch)):
            number += 1
            yield _verified(entry, number, read)
    if number != end["documents"]:
        raise AdminError(f"{END} counts {end['documents']} documents, the index lists {number}")


def _read_tar(tar: tarfile.TarFile, source: Path) -> Iterator[ExportedDocument]:
    members = _members(tar)

    def next_member(wanted: str | None = None) -> tuple[str, bytes]:
        try:
            name, data = next(members)
        except StopIteration:
            raise AdminError(f"{source} ends before {wanted or END}: the export is incomplete") from None
        if wanted is not None and name != wanted:
            raise AdminError(f"{source}: member {name} where {wanted} was expected (members out of order)")
        return name, data

    header = _header(next_member(MANIFEST)[1])
    number = 0
    if header["version"] == 1:
        for number, entry in enumerate(header.get("documents") or [], 1):
            yield _verified(entry, number, lambda name: next_member(name)[1])
        return
    batches = 0
    while True:
        name, data = next_member()
        if name == END:
            end = _end(data)
            if (end["documents"], end["batches"]) != (number, batches):
                raise AdminError(f"{END} counts {end['documents']} documents in {end['batches']} batches, "
                                 f"the export holds {number} in {batches}")
            if next(members, None) is not None:
                raise AdminError(f"{source}: members after {END}")
            return
        if name != INDEX.format(batches + 1):
            raise AdminError(f"{source}: member {name} where {INDEX.format(batches + 1)} or {END} was expected")
        batches += 1
        for entry in _index(data, name):
            number += 1
            yield _verified(entry, number, lambda file: next_member(file)[1])


def _members(tar: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
    """Regular files of a tar in order, read as they come (``r|`` stream mode), forgetting each."""
    for member in tar:
        if not member.isfile():
            raise AdminError(f"{member.name}: not a regular file")
        handle = tar.extractfile(member)
        data = handle.read() if handle is not None else b""
        # tarfile keeps every TarInfo otherwise: memory would grow (members is not in typeshed)
        tar.members.clear()  # type: ignore[attr-defined]
        yield member.name, data


def _header(data: bytes) -> dict:
    try:
        header = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise AdminError(f"{MANIFEST} is not an {EXPORT_FORMAT} manifest")
    if header.get("version") not in (1, EXPORT_VERSION):
        raise AdminError(f"export format version {header.get('version')!r} is not supported "
                         f"(1 or {EXPORT_VERSION})")
    return header


def _end(data: bytes) -> dict:
    try:
        end = json.loads(data.decode("utf-8"))
        return {"documents": int(end["documents"]), "batches": int(end["batches"])}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise AdminError(f"{END} is not valid: {exc}") from exc


def _index(data: bytes, name: str) -> list[dict]:
    try:
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminError(f"{name} is not valid JSON lines: {exc}") from exc


def _verified(entry: dict, number: int, read: Callable[[str], bytes]) -> ExportedDocument:
    """The document ``entry`` describes, read with ``read(file)`` and checked against it."""
    where = f"document {number}"
    try:
        file, doc_uri, etag = str(entry["file"]), str(entry["doc_uri"]), str(entry["etag"])
        key = DocumentKey(str(entry["username"]), str(entry["domain"]), doc_uri, int(entry["doc_type"]))
        size, digest = int(entry["size"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AdminError(f"{where}: missing or malformed field {exc}") from exc
    for column, limit in COLUMN_LIMITS.items():
        if not getattr(key, column) or len(getattr(key, column)) > limit:
            raise AdminError(f"{where}: {column} must have 1 to {limit} characters")
    try:
        check_etag(etag)
    except InvalidETag as exc:
        raise AdminError(f"{where}: {exc}") from None
    content = read(file)
    if len(content) != size or hashlib.sha256(content).hexdigest() != digest:
        raise AdminError(f"{file}: content does not match the manifest (size/SHA-256): damaged export")
    return ExportedDocument(key, etag, content)


def iter_entries(source: str | os.PathLike) -> Iterable[dict]:
    """The manifest entries of an export folder (file, doc_uri, ..., sha256), in order."""
    source = Path(source)
    header = _header((source / MANIFEST).read_bytes())
    if header["version"] == 1:
        yield from header.get("documents") or []
        return
    batch = 1
    while (source / INDEX.format(batch)).is_file():
        yield from _index((source / INDEX.format(batch)).read_bytes(), INDEX.format(batch))
        batch += 1
