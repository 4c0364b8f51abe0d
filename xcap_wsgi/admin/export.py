"""``xcap-wsgi export``: a user's documents (or every document) to a folder or a tar file.

Rows come from the store in batches (``Store.rows_after``, keyset pagination on ``id``) and each
batch is written before the next is read, so memory is bounded by one batch whatever the number
of rows; time is linear in rows. The format is ``archive.py``'s.
"""

from __future__ import annotations

import os
import time

from ..storage import Store
from ..storage.base import iter_batches
from .archive import AdminError, ExportWriter
from .progress import Progress, silent

#: Rows per batch (one index file of the export, one SELECT).
BATCH = 500


def export_documents(store: Store, destination: str | os.PathLike, *, username: str | None = None,
                     domain: str | None = None, progress: Progress | None = None,
                     batch: int = BATCH) -> dict:
    """Export one user's documents (or all) to a new folder, or a ``.tar``/``.tar.gz``/``.tgz`` file.

    Returns the manifest header with ``documents`` (how many were exported). Refuses to
    overwrite: the folder must not exist (or be empty), the tar file must not exist.
    """
    progress = progress or silent("export")
    if (username is None) != (domain is None):
        raise AdminError("export: give both username and domain, or neither (everything)")
    writer = ExportWriter(destination, {
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "account": f"{username}@{domain}" if username is not None else None,
        "batch": batch,
    })
    progress.start(store.count_rows(username, domain))
    try:
        for rows in iter_batches(store, username, domain, batch=batch):
            writer.add_batch(rows)
            progress.step(len(rows))
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    progress.done(f"exported to {destination}")
    return {**writer.header, "documents": writer.documents}
