"""``xcap-wsgi import``: restore an export byte for byte with its ETags.

Two passes over the export, each a stream (constant memory, linear time; a tar is read member
after member): the first verifies everything (manifest, sizes, SHA-256, ETags, key lengths), so a
damaged export writes nothing; the second restores the documents with ``Store.restore_many``,
``BATCH`` per transaction.

Interrupted imports: each batch commits whole or not at all, and restoring is idempotent per
doc_uri (the row is found by account and doc_uri and overwritten in place, or inserted; doc_uri is
UNIQUE), so running the same import again resumes it: documents already restored count as
"unchanged" (one read, no write), the others are written; nothing is duplicated or lost.
``--resume-after N`` skips the first N documents of the restore pass (the count the interrupted
run's progress printed).
"""

from __future__ import annotations

import os

from ..storage import Store
from .archive import read_export
from .progress import Progress, silent

#: Documents restored per transaction (``Store.restore_many``); also the memory bound of the restore.
BATCH = 200


def verify_export(source: str | os.PathLike, *, progress: Progress | None = None) -> int:
    """Read and verify a whole export; return how many documents it holds (``AdminError`` if damaged)."""
    progress = progress or silent("verify")
    progress.start(None)
    count = 0
    for _ in read_export(source):
        count += 1
        progress.step()
    progress.done("verified")
    return count


def import_documents(store: Store, source: str | os.PathLike, *, username: str | None = None,
                     domain: str | None = None, progress: Progress | None = None,
                     verify: Progress | None = None, resume_after: int = 0,
                     batch_size: int = BATCH) -> dict[str, int]:
    """Restore an export byte for byte with its ETags; only ``username@domain``'s documents if given.

    The export is verified completely before the first write. Returns counts of created,
    replaced and unchanged documents (and skipped, with ``resume_after``).
    """
    progress = progress or silent("import")
    total = verify_export(source, progress=verify)
    progress.start(total)
    counts = {"created": 0, "replaced": 0, "unchanged": 0}
    batch: list = []

    def flush() -> None:
        for outcome in store.restore_many(batch):
            counts[outcome] += 1
        progress.step(len(batch))
        batch.clear()

    for number, document in enumerate(read_export(source), 1):
        if number <= resume_after or (username is not None
                                      and (document.key.username, document.key.domain) != (username, domain)):
            progress.step()
            continue
        batch.append((document.key, document.content, document.etag))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if resume_after:
        counts["skipped"] = min(resume_after, total)
    progress.done("imported ({created} created, {replaced} replaced, {unchanged} unchanged)".format(**counts))
    return counts
