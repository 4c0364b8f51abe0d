"""Digest nonce-counts shared by every process of a server on one host, so a replay is refused
whichever worker it reaches.

``serve --workers N`` (or uWSGI, gunicorn) runs several processes that share the nonce secret:
a nonce one worker issued is valid in all of them. Counted per process, a captured
``Authorization`` header would be accepted once by each worker. ``HostNonceTable`` keeps the
counts in one file all those processes map into memory:

* **Where**: ``nonces-<HMAC(secret, realm)>.table`` in this user's private directory
  (hostdir.py: 0700, ours, under ``$XDG_RUNTIME_DIR``, /dev/shm or the temp dir). Only processes
  that know the secret find the file, unrelated servers on the host get tables of their own, and
  the name tells nothing about the secret.
* **Layout**: a fixed number of buckets of ``WAYS`` slots (nonce digest, issue time, highest
  nonce-count, 64-value window of counts seen) and a per-bucket *floor*. A nonce lives in the
  bucket its digest names. A full bucket evicts its oldest nonce and raises its floor to that
  nonce's issue time; a nonce not in its bucket and issued at or before the floor counts as stale.
  So the table never grows, and a forgotten nonce is never accepted twice: at worst a client
  re-authenticates (``stale=true``), as with the per-process ``NonceTracker`` below.
* **Locking**: one ``use`` takes an in-process lock and a POSIX record lock (``lockf``) on the
  bucket's lock stripe, reads and writes the bucket through the mapping, and lets go (about 20 us).
  The lock is tried without blocking and retried until ``lock_timeout``: a process stopped while
  holding it cannot hang the others; they answer "stale" (fail closed) and log it. Record locks
  belong to the process, so a forked child never holds its parent's; the kernel drops a dead
  process's locks.
* **Clean-up**: every process holding a table keeps a shared lock on its first byte; a new table
  removes the tables nobody holds whose nonces have all expired (``serve --workers`` draws a new
  secret on each start, hence a new table).

What holds across hosts: nothing is shared between hosts. Servers on several hosts configured with
one ``nonce_secret`` accept each other's nonces, so a captured header can be replayed once on each
host within the nonce lifetime; give each host a secret of its own (then a client must stay on the
host that challenged it) or keep the headers secret with TLS.
"""

from __future__ import annotations

import base64
import binascii
import collections
import errno
import fcntl
import hashlib
import hmac
import logging
import mmap
import os
import stat
import struct
import threading
import time

from .hostdir import private_directory
from .settings import DEFAULTS

log = logging.getLogger("xcap_wsgi.nonces")

WINDOW = 64  #: nonce-counts remembered below the highest one seen (as in digest.NonceTracker)
WAYS = 8  #: slots per bucket
LOCK_STRIPES = 64  #: record-lock stripes (lock bytes 1..64 of the file)

_HEADER = struct.Struct("<4sIIIQQ")  # magic, version, buckets, ways, keep-until (s), spare
_HEADER_BYTES = 128
_MAGIC, _VERSION = b"XWNT", 1
_FLOOR = struct.Struct("<Q")
_SLOT = struct.Struct("<16sQQQ")  # nonce digest, issued (us), highest nc, window bitmask
_ALIVE_BYTE = 0  # shared-locked by every process using the table
_INIT_BYTE = LOCK_STRIPES + 1  # exclusive while a table is being laid out
_PREFIX, _SUFFIX = "nonces-", ".table"


def count(highest: int, seen: int, nc: int) -> tuple[int, int] | None:
    """Record nonce-count ``nc`` in a nonce's window (``highest`` count seen, bit ``i`` of
    ``seen`` = ``highest - i`` seen): the new ``(highest, seen)``, or None for a replay (a count
    seen already, or fallen out of the window)."""
    if nc > highest:
        shift = nc - highest
        return nc, ((seen << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
    back = highest - nc
    if back >= WINDOW or seen & (1 << back):
        return None
    return highest, seen | 1 << back


class NonceTracker:
    """Nonce-counts seen per nonce: bounded (``capacity`` nonces), thread-safe.

    ``floor`` is the issue time of the newest nonce ever evicted: any nonce issued at or before it
    that is not tracked any more is reported stale instead of being trusted afresh.
    """

    def __init__(self, capacity: int = 10000):
        self.capacity = capacity
        self._entries: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._floor = 0
        self._lock = threading.Lock()

    def use(self, nonce: str, issued: int, nc: int) -> str:
        """Record ``nc`` for ``nonce``: ``"ok"``, ``"replay"`` or ``"stale"`` (forgotten nonce)."""
        with self._lock:
            entry = self._entries.get(nonce)
            if entry is None:
                if issued <= self._floor:
                    return "stale"
                highest, seen = nc, 1
            else:
                counted = count(*entry, nc)
                if counted is None:
                    return "replay"
                highest, seen = counted
            self._entries[nonce] = (highest, seen)
            self._entries.move_to_end(nonce)
            while len(self._entries) > self.capacity:
                old, _ = self._entries.popitem(last=False)
                self._floor = max(self._floor, _issued_of(old))
            return "ok"

    def forget_older_than(self, issued_limit: int) -> None:
        """Drop nonces issued before ``issued_limit`` (they are expired anyway)."""
        with self._lock:
            for nonce in [n for n in self._entries if _issued_of(n) < issued_limit]:
                del self._entries[nonce]

    def __len__(self) -> int:
        return len(self._entries)


def _issued_of(nonce: str) -> int:
    """The issue time (µs) a nonce carries in its first 8 bytes, 0 if it is not one of ours."""
    try:
        return struct.unpack(">Q", base64.urlsafe_b64decode(nonce)[:8])[0]
    except (binascii.Error, ValueError, struct.error):
        return 0


class LockTimeout(OSError):
    """A lock of the table was not free within the timeout."""


class HostNonceTable:
    """Nonce-counts seen per nonce, shared through ``path`` by the processes of the host.

    Same contract as ``digest.NonceTracker``: ``use(nonce, issued, nc)`` answers ``"ok"``,
    ``"replay"`` or ``"stale"``; ``forget_older_than(issued_limit)`` lets expired nonces' slots be
    reused. ``lifetime`` (seconds, the nonce lifetime) says how long the table must outlive its
    last use before a later server may remove it.
    """

    def __init__(self, path: str, capacity: int = 10000, *, lifetime: float = DEFAULTS.nonce_lifetime,
                 lock_timeout: float = 2.0):
        self.path = path
        self.lifetime = float(lifetime)
        self.lock_timeout = lock_timeout
        self._wanted_buckets = max(1, -(-int(capacity) // WAYS))
        self._expired_before = 0  # slots of nonces issued before this are free (forget_older_than)
        self._keep_until = 0
        self._pid = 0
        self._map: mmap.mmap | None = None
        self._open_lock = threading.Lock()
        self._open()

    # -- opening ---------------------------------------------------------------------------------

    def _open(self) -> None:
        """Open (or create) the table file, hold its alive lock, map it; after a fork, again."""
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                info = os.fstat(fd)
                if info.st_uid != os.getuid() or info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
                    raise PermissionError(f"{self.path} is not a private file of ours")
                _lock(fd, fcntl.LOCK_SH, _ALIVE_BYTE, self.lock_timeout)
                try:
                    same = os.stat(self.path, follow_symlinks=False).st_ino == info.st_ino
                except FileNotFoundError:
                    same = False
                if not same:  # removed by a clean-up between our open and our lock: start again
                    os.close(fd)
                    continue
                self._layout(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._map = fd, mmap.mmap(fd, 0)
            header = _HEADER.unpack_from(self._map, 0)
            self.buckets, self.ways = header[2], header[3]
            self._bucket_bytes = _FLOOR.size + self.ways * _SLOT.size
            self._locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))
            self._pid = os.getpid()
            return
        raise OSError(f"{self.path} keeps disappearing")

    def _layout(self, fd: int) -> None:
        """Give a new (empty) file its header and size; keep the layout of an existing one."""
        _lock(fd, fcntl.LOCK_EX, _INIT_BYTE, self.lock_timeout)
        try:
            head = os.pread(fd, _HEADER.size, 0)
            if len(head) == _HEADER.size and head[:4] == _MAGIC:
                magic, version, buckets, ways, _, _ = _HEADER.unpack(head)
                if version == _VERSION and ways == WAYS and buckets > 0 and os.fstat(fd).st_size >= (
                        _HEADER_BYTES + buckets * (_FLOOR.size + ways * _SLOT.size)):
                    return
                # Never reshape a table other processes may have mapped (they would fault).
                raise OSError(f"{self.path} has another layout (another version of xcap-wsgi?)")
            size = _HEADER_BYTES + self._wanted_buckets * (_FLOOR.size + WAYS * _SLOT.size)
            os.ftruncate(fd, size)
            os.pwrite(fd, _HEADER.pack(_MAGIC, _VERSION, self._wanted_buckets, WAYS, 0, 0), 0)
        finally:
            _unlock(fd, _INIT_BYTE)

    def _ensure_open(self) -> None:
        if self._pid != os.getpid():  # forked: record locks (the alive one too) stayed with the parent
            with self._open_lock:
                if self._pid != os.getpid():
                    # Close the inherited descriptor first: closing any descriptor of a file drops
                    # all of this process's record locks on it, the new ones included.
                    if self._map is not None:
                        self._map.close()
                        os.close(self._fd)
                        self._map = None
                    self._open()

    def close(self) -> None:
        """Unmap and close (the file stays for the other processes; a later clean-up removes it)."""
        with _OPEN_TABLES_LOCK:
            if _OPEN_TABLES.get(self.path) is self:
                del _OPEN_TABLES[self.path]
        if self._pid == os.getpid() and self._map is not None:
            self._map.close()
            os.close(self._fd)
            self._map, self._pid = None, 0

    # -- the contract ----------------------------------------------------------------------------

    def use(self, nonce: str, issued: int, nc: int) -> str:
        """Record ``nc`` for ``nonce``: ``"ok"``, ``"replay"`` or ``"stale"`` (forgotten nonce, or
        the table could not be locked in time)."""
        self._ensure_open()
        digest = hashlib.blake2b(nonce.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        bucket = int.from_bytes(digest[:8], "little") % self.buckets
        stripe = bucket % LOCK_STRIPES
        offset = _HEADER_BYTES + bucket * self._bucket_bytes
        local = self._locks[stripe]
        if not local.acquire(timeout=self.lock_timeout):
            return self._locked_out()
        try:
            try:
                _lock(self._fd, fcntl.LOCK_EX, 1 + stripe, self.lock_timeout)
            except LockTimeout:
                return self._locked_out()
            try:
                state = self._use_bucket(offset, digest, issued, nc)
            finally:
                _unlock(self._fd, 1 + stripe)
        finally:
            local.release()
        if state == "ok":
            self._note_use()
        return state

    def _locked_out(self) -> str:
        log.warning("nonce table %s stayed locked for %.1f s: nonce refused as stale", self.path, self.lock_timeout)
        return "stale"  # fail closed: the client asks for a new nonce

    def _mapped(self) -> mmap.mmap:
        """The table's mapping (``_ensure_open`` ran: only a closed table has none)."""
        if self._map is None:
            raise ValueError(f"nonce table {self.path} is closed")
        return self._map

    def _use_bucket(self, offset: int, digest: bytes, issued: int, nc: int) -> str:
        mapped = self._mapped()
        (floor,) = _FLOOR.unpack_from(mapped, offset)
        first = offset + _FLOOR.size
        free = oldest = None
        free_issued = oldest_issued = 0
        for way in range(self.ways):
            at = first + way * _SLOT.size
            key, slot_issued, highest, seen = _SLOT.unpack_from(mapped, at)
            if key == digest and slot_issued == issued:
                counted = count(highest, seen, nc)
                if counted is None:
                    return "replay"
                _SLOT.pack_into(mapped, at, digest, issued, *counted)
                return "ok"
            if slot_issued == 0 or slot_issued < self._expired_before:
                if free is None:
                    free, free_issued = at, slot_issued
            elif oldest is None or slot_issued < oldest_issued:
                oldest, oldest_issued = at, slot_issued
        if issued <= floor:
            return "stale"  # evicted from this bucket at some point, or older than anything it forgot
        if free is None:  # full: forget the oldest; everything issued up to it is stale from now on
            free, free_issued = oldest, oldest_issued
        assert free is not None  # no free slot means every slot is in use, and one is the oldest
        if free_issued > floor:  # an expired slot too: safe even if processes disagree on the lifetime
            _FLOOR.pack_into(mapped, offset, free_issued)
        _SLOT.pack_into(mapped, free, digest, issued, nc, 1)
        return "ok"

    def _note_use(self) -> None:
        """Keep the table from clean-ups until every nonce used so far has expired (once a second)."""
        now = int(time.time())
        if now + 1 > self._keep_until:
            self._keep_until = now + int(self.lifetime) + 60
            struct.pack_into("<Q", self._mapped(), 16, self._keep_until)  # header field keep-until

    def forget_older_than(self, issued_limit: int) -> None:
        """Slots of nonces issued before ``issued_limit`` (expired anyway) may be reused."""
        self._expired_before = max(self._expired_before, int(issued_limit))

    def __len__(self) -> int:
        """Nonces tracked and not yet expired (a full scan: for tests and diagnostics)."""
        self._ensure_open()
        count, mapped = 0, self._mapped()
        for bucket in range(self.buckets):
            first = _HEADER_BYTES + bucket * self._bucket_bytes + _FLOOR.size
            for way in range(self.ways):
                _, slot_issued, _, _ = _SLOT.unpack_from(mapped, first + way * _SLOT.size)
                count += slot_issued != 0 and slot_issued >= self._expired_before
        return count


# -- finding the table ----------------------------------------------------------------------------


def table_name(secret: bytes, realm: str) -> str:
    """The table's file name: a MAC of the realm under the nonce secret (tells nothing of it)."""
    mac = hmac.new(secret, b"xcap-wsgi nonce table\0" + realm.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{_PREFIX}{mac[:32]}{_SUFFIX}"


def open_host_table(secret: bytes, realm: str, capacity: int = 10000, *, lifetime: float = DEFAULTS.nonce_lifetime,
                    bases: tuple[str, ...] | None = None) -> HostNonceTable | None:
    """The host's table for nonces of ``secret`` and ``realm``, or None (logged) when no private
    directory or file can be had: then nonce-counts are tracked per process only."""
    directory = private_directory(bases)
    if directory is None:
        log.warning("no private runtime directory: Digest replays are refused per process only")
        return None
    name = table_name(secret, realm)
    path = os.path.join(directory, name)
    with _OPEN_TABLES_LOCK:
        # One object per file and process: record locks belong to the process, so two objects on
        # one file would not exclude each other, and closing one would drop the other's locks.
        table = _OPEN_TABLES.get(path)
        if table is not None:
            return table
        # Skip our own tables: opening and closing one would drop this process's locks on it.
        held = {os.path.basename(p) for p in _OPEN_TABLES if os.path.dirname(p) == directory}
        remove_unused_tables(directory, keep=held | {name})
        try:
            table = _OPEN_TABLES[path] = HostNonceTable(path, capacity, lifetime=lifetime)
        except OSError as exc:
            log.warning("cannot open the nonce table (%s): Digest replays are refused per process only", exc)
            return None
        return table


_OPEN_TABLES: dict[str, HostNonceTable] = {}
_OPEN_TABLES_LOCK = threading.Lock()


def remove_unused_tables(directory: str, *, keep: set[str] | frozenset[str] = frozenset(),
                         now: float | None = None) -> list[str]:
    """Remove the tables in ``directory`` that no process holds and whose nonces have all expired
    (never those named in ``keep``)."""
    now = time.time() if now is None else now
    removed = []
    for name in os.listdir(directory):
        if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)) or name in keep:
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _ALIVE_BYTE)
            head = os.pread(fd, _HEADER.size, 0)
            keep_until = _HEADER.unpack(head)[4] if len(head) == _HEADER.size and head[:4] == _MAGIC else 0
            if keep_until < now:
                os.unlink(path)  # while holding the lock: an opener re-checks the path after locking
                removed.append(name)
        except OSError:
            pass  # in use
        finally:
            os.close(fd)
    return removed


# -- record locks with a bound ----------------------------------------------------------------------


def _lock(fd: int, kind: int, byte: int, timeout: float) -> None:
    """``lockf`` one byte, retrying a busy lock until ``timeout`` (then LockTimeout)."""
    deadline = None
    pause = 0.0001
    while True:
        try:
            fcntl.lockf(fd, kind | fcntl.LOCK_NB, 1, byte)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        now = time.monotonic()
        if deadline is None:
            deadline = now + timeout
        elif now >= deadline:
            raise LockTimeout(errno.ETIMEDOUT, "lock busy")
        time.sleep(pause)
        pause = min(pause * 2, 0.005)


def _unlock(fd: int, byte: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_UN, 1, byte)


_SECRET_FILE, _SECRET_BYTES = "nonce-secret", 32


def host_secret(directory: str | None = None) -> bytes | None:
    """The nonce secret every process of this user on this host shares, made on first use.

    With no ``nonce_secret`` setting, processes that were not forked from one ``serve`` (uWSGI
    with ``lazy-apps``, gunicorn, several ``serve`` behind one address) would each draw a random
    one, and a client moved to another process would have to log in again on every request. The
    file is 32 random bytes, mode 0600, in the private directory (hostdir.py); None when there
    is no such directory or the file is not a sound one of ours (the caller then uses a
    per-process secret, as before).
    """
    directory = directory or private_directory()
    if directory is None:
        return None
    path = os.path.join(directory, _SECRET_FILE)
    if not os.path.lexists(path):
        # Written under another name, then linked: a reader never sees a short file, and of
        # processes starting together the first link wins and the others read its secret.
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}"
        try:
            with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb") as f:
                f.write(os.urandom(_SECRET_BYTES))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(temporary)
        except OSError as exc:
            log.warning("cannot create the host nonce secret %s: %s", path, exc)
            return None
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            info = os.fstat(f.fileno())
            secret = f.read(_SECRET_BYTES + 1)
    except OSError as exc:
        log.warning("cannot read the host nonce secret %s: %s", path, exc)
        return None
    if (stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
            and len(secret) == _SECRET_BYTES):
        return secret
    log.warning("ignoring the host nonce secret %s: not a private %d-byte file of ours", path, _SECRET_BYTES)
    return None
