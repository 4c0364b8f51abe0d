"""Operator commands: export, import, purge and check documents, in Python and as ``xcap-wsgi``.

One module per job, all through the ``Store`` protocol (no SQL here):

* ``export.export_documents(store, destination, username=..., domain=...)``: a user's documents
  (or every document) to a folder or a tar file, exact bytes and ETags (format: ``archive.py``);
* ``importer.import_documents(store, source)``: verify the whole export, then restore every
  document byte for byte *with its ETag* (``Store.restore``); re-running resumes;
* ``purge.purge_documents(store, username, domain)``: compare-and-swap deletes of a user's documents;
* ``check.check_documents(store, registry, default_domain)``: validate every stored document;
* ``progress.Progress``: a bar on a terminal (tqdm), plain lines otherwise, or ``quiet``;
* ``commands.add_commands``: the command line, wired into ``xcap-wsgi`` by ``cli.py``.

export, import and check stream: rows come in batches (``Store.rows_after``) and exports are read
and written member after member, so memory is bounded whatever the number of documents.
"""

from __future__ import annotations

from ..settings import reference_markdown as settings_reference_markdown  # the former admin name
from ..storage.base import Row, iter_rows
from .archive import AdminError, ExportedDocument, iter_entries, read_export
from .check import Problem, check_documents, check_row, iter_problems, locate
from .export import export_documents
from .importer import import_documents, verify_export
from .progress import Progress
from .purge import purge_documents

__all__ = [
    "AdminError", "ExportedDocument", "Problem", "Progress", "Row",
    "check_documents", "check_row", "export_documents", "import_documents", "iter_entries", "iter_problems",
    "iter_rows", "locate", "purge_documents", "read_export", "restore", "settings_reference_markdown",
    "verify_export",
]


def restore(store, key, content: bytes, etag: str) -> str:
    """``store.restore(key, content, etag)`` (kept for callers of the former ``admin.restore``)."""
    return store.restore(key, content, etag)
