"""A directory private to this user on this host, for state the processes of a server share.

The Digest nonce table (nonces.py) and the write turns (turns.py) keep small files that every
process of one server on the host opens. Nobody else may read them, plant them or hold their
locks, so they live in ``xcap-wsgi-<uid>`` (mode 0700, owned by us) under the first base that
works: ``$XDG_RUNTIME_DIR`` (the per-user runtime directory systemd provides), ``/dev/shm``
(memory), then the temp dir. A directory that exists but is not ours, is a symlink, or is open to
others is refused and the next base is tried.
"""

from __future__ import annotations

import os
import stat
import tempfile


def runtime_bases() -> tuple[str, ...]:
    """Where a private directory is looked for, in order."""
    bases = [os.environ.get("XDG_RUNTIME_DIR", ""), "/dev/shm", tempfile.gettempdir()]
    return tuple(base for base in bases if base)


def private_directory(bases: tuple[str, ...] | None = None) -> str | None:
    """``<base>/xcap-wsgi-<uid>`` for the first base where it is safely ours, or None."""
    uid = os.getuid()
    for base in bases or runtime_bases():
        directory = os.path.join(base, f"xcap-wsgi-{uid}")
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        try:
            info = os.lstat(directory)
        except OSError:
            continue
        if (stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077
                and os.access(directory, os.W_OK)):
            return directory
    return None
