"""``xcap-wsgi purge``: delete a user's documents through the Store protocol."""

from __future__ import annotations

from ..storage import ConcurrentModification, DocumentKey, Store, StoreError
from .progress import Progress, silent


def purge_documents(store: Store, username: str, domain: str, *, progress: Progress | None = None,
                    attempts: int = 5) -> int:
    """Delete every document of ``username@domain``; return how many were deleted.

    Each delete is a compare-and-swap on the ETag just read; when a client changes the document
    in between, it is re-read and deleted again (``attempts`` times at most). Memory: one user's
    listing (no content).
    """
    progress = progress or silent("purge")
    documents = store.list_documents(username, domain)
    progress.start(len(documents))
    deleted = 0
    for info in documents:
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
