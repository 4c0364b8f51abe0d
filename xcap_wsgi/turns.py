"""Write turns: read-modify-writes of one document take turns among the threads and processes of a host.

An element PUT or DELETE reads the document, edits it and writes it back with a compare-and-swap
on the ETag. Correctness never depends on this module: the compare-and-swap alone guarantees that
no update is lost. But a writer that reads a document while another writer is editing it can
only lose the swap and redo its read, edit and validation. With 32 writers on 100 documents in
4 processes on 2 cores, 11% of element PUTs were redone (1.11 SELECT + 1.11 UPDATE per request);
with turns it is 1.00 + 1.00: the waiter waits until the document is free.
Throughput on that machine stayed within its noise (six alternating runs each way: 1,788 vs
1,783 requests/s on average; p99 66 vs 76 ms). What turns buy is no wasted database work, and
no writer that loses the swap again and again until it gives up with 503 (CAS_ATTEMPTS).

A turn is a striped lock (the document's name hashed to one of ``STRIPES``): an in-process lock
for the threads of one process, then an open-file-description lock (``F_OFD_SETLK``, Linux) on
the stripe's byte of a lock file for the processes of the host. Two documents that share a
stripe merely wait for each other. OFD locks belong to one open file, not to a process, so they
never mistake two threads for one owner, and the kernel drops them when a process dies. Where
they are missing, or the lock file cannot be opened, turns are per process only.

A turn is waited for at most ``TURN_TIMEOUT`` seconds (the in-process lock, then the file lock
polled with a growing pause); after that the edit goes on without a turn, and the
compare-and-swap decides as it always does.

**The recall cache** (``recall=True``; the ``recall_cache`` setting, off by default, MySQL only):
a held turn also recalls the document the host's last write of it stored (``Turn``: a region per
stripe of one sparse file, ``<lock file>.last``, in the user's private directory, hostdir.py), so
an element PUT after an element PUT skips its read. MariaDB then counted 0.05 SELECT + 1.00
UPDATE per element PUT instead of 1.00 + 1.00, its CPU per element PUT fell from ~250 to ~150 us,
and the server's own CPU in-process from ~540 to ~400 us (pread/pwrite on an open file: 8 us
each). The price is a copy of users' documents outside the database, hence opt-in and:

* ``forget(name)`` wipes a document's slot (whole-document PUT, DELETE, ``purge``), and works in a
  process without the cache too (``purge`` from the command line clears a server's copy);
* a slot is zero beyond what its header declares (a shorter write pads the older one's tail);
* the file is emptied when the first process opens it (nobody else holds it: what is there was
  left by processes that died) and removed when the last one closes it (``flock`` shared locks
  tell who holds it).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
import threading
import time
import zlib

from .hostdir import private_directory

#: Stripes per lock file: enough that unrelated busy documents rarely share one (they would wait
#: for each other; 100 busy documents on 64 stripes did), and one lock file whatever the number.
STRIPES = 1024

#: The fcntl command of open-file-description locks (Linux); 0 where there is none.
_OFD_SETLK: int = getattr(fcntl, "F_OFD_SETLK", 0)
# struct flock on 64-bit Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid.
_FLOCK = struct.Struct("hhqqi4x")
_SUPPORTED = _OFD_SETLK != 0 and struct.calcsize("P") == 8


#: Seconds a writer waits for a turn before it goes on without one (compare-and-swap only).
TURN_TIMEOUT = 5.0

#: Documents up to this size are remembered after a write. Each stripe has a region of this size
#: (plus its header) in one sparse file: only regions written take space.
RECALL_MAX_BYTES = 32 * 1024
_SLOT = struct.Struct("<4sIIII")  # magic, crc32 of the rest, len(name), len(etag), len(content)
_MAGIC = b"XWL2"
_NAME_MAX = 1024  # doc_uri is VARCHAR(255) in Kamailio's table; names longer than this are not kept
_SLOT_BYTES = _SLOT.size + _NAME_MAX + 128 + RECALL_MAX_BYTES  # etag: VARCHAR(128)


class WriteTurns:
    """Striped turns for document writes; ``path`` names the lock file shared by the processes
    (None: turns among this process's threads only). With ``recall``, the documents turns recall
    live in ``path + ".last"``; without, no such file is ever created."""

    def __init__(self, path: str | None = None, stripes: int = STRIPES, *, recall: bool = False,
                 timeout: float | None = None):
        self.path = path if _SUPPORTED else None
        self.stripes = stripes
        self.recall = recall
        self.timeout = TURN_TIMEOUT if timeout is None else timeout
        self._locks = tuple(threading.Lock() for _ in range(stripes))
        self._fds: tuple[int | None, int | None] = (None, None)  # lock file, recall file
        self._fds_pid = 0  # descriptors inherited over fork() share their locks: reopen after a fork
        self._open_lock = threading.Lock()

    def stripe(self, name: str) -> int:
        """The stripe of a document name, the same in every process (unlike ``hash``)."""
        return zlib.crc32(name.lower().encode("utf-8", "surrogatepass")) % self.stripes

    def turn(self, name: str) -> _TurnHold:
        """Hold the turn for document ``name`` (a ``doc_uri``) while the ``with`` block runs; the
        block gets a ``Turn`` (``recall``/``remember`` the last write of the document on this host).
        A turn not had within ``timeout`` yields a ``Turn`` without recall: the block runs anyway."""
        return _TurnHold(self, name)

    def forget(self, name: str) -> None:
        """Wipe what the recall file holds of document ``name`` (it was replaced or deleted), in
        the turn of its stripe. Also without ``recall``: another process's cache may hold it."""
        if self.path is None:
            return
        with self.turn(name):
            fd = self._files()[1]
            if fd is not None:
                Turn(fd, self.stripe(name) * _SLOT_BYTES, name).forget()
                return
            try:
                fd = os.open(self.path + ".last", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return  # no cache on this host
            try:
                Turn(fd, self.stripe(name) * _SLOT_BYTES, name).forget()
            finally:
                os.close(fd)

    @property
    def shared(self) -> bool:
        """Whether turns are taken across processes (the lock file is open)."""
        return self._files()[0] is not None

    def _files(self) -> tuple[int | None, int | None]:
        if self.path is None:
            return None, None
        if self._fds_pid == os.getpid():
            return self._fds
        with self._open_lock:
            if self._fds_pid != os.getpid():
                if self.recall:
                    self._fds = (_open(self.path), _open_recall(self.path + ".last"))
                else:
                    self._fds = (_open(self.path), None)
                    _remove_unheld(self.path + ".last")  # e.g. left by a version that always recalled
                self._fds_pid = os.getpid()
        return self._fds

    def close(self) -> None:
        """Close the files; the recall file is removed when no other process holds it."""
        with self._open_lock:
            if self._fds_pid != os.getpid():
                return
            fd, recall_fd = self._fds
            self._fds, self._fds_pid = (None, None), 0
            if recall_fd is not None and self.path is not None:  # a recall file implies a path
                _close_recall(self.path + ".last", recall_fd)
            if fd is not None:
                os.close(fd)


class _TurnHold:
    """The ``with`` block of ``WriteTurns.turn`` (a class: a generator-based context manager
    costs a few microseconds more on every element PUT and DELETE)."""

    __slots__ = ("_turns", "_name", "_local", "_fd", "_stripe")

    def __init__(self, turns: WriteTurns, name: str):
        self._turns, self._name = turns, name
        self._local: threading.Lock | None = None  # the in-process lock, while held
        self._fd: int | None = None  # the lock file, while its stripe is locked

    def __enter__(self) -> Turn:
        turns, name = self._turns, self._name
        stripe = self._stripe = turns.stripe(name)
        deadline = time.monotonic() + turns.timeout
        local = turns._locks[stripe]
        if not local.acquire(timeout=turns.timeout):
            return Turn(None, 0, name)  # no turn: the compare-and-swap decides
        self._local = local
        try:
            fd, recall_fd = turns._files()
            if fd is None or not _lock_until(fd, stripe, deadline):
                return Turn(None, 0, name)  # turns within this process only; the compare-and-swap decides
        except BaseException:
            self._release()
            raise
        self._fd = fd
        return Turn(recall_fd, stripe * _SLOT_BYTES, name)

    def __exit__(self, *exc_info) -> None:
        self._release()

    def _release(self) -> None:
        try:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                _lock(fd, _OFD_SETLK, fcntl.F_UNLCK, self._stripe)
        finally:
            if self._local is not None:
                local, self._local = self._local, None
                local.release()


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


def _open_recall(path: str) -> int | None:
    """Open the recall file holding a shared ``flock`` (emptied first if nobody else holds it)."""
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(fd, 0)  # the first holder: what is there was left by dead processes
            except BlockingIOError:
                pass
            fcntl.flock(fd, fcntl.LOCK_SH)  # brief: a holder of LOCK_EX only empties or removes
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except OSError:
            same = False
        if same:
            return fd
        os.close(fd)  # removed by a closing process in between: open the new one
    return None


def _remove_unheld(path: str) -> None:
    """Remove a recall file no process holds (a server with the cache on holds it)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    _close_recall(path, fd)


def _close_recall(path: str, fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only if no other process holds the file
        os.ftruncate(fd, 0)
        os.unlink(path)
    except OSError:
        pass  # still in use: the last process to close it removes it
    finally:
        os.close(fd)


class Turn:
    """A held turn on one document. ``remember`` records the document a write just stored;
    ``recall`` gives it back to the next turn holder on this host, so that an edit can skip
    reading the document: the write's compare-and-swap on the recalled ETag proves that it is
    still the stored one (ETags are unique per write, Kamailio's included). A recalled document
    is a guess, never an answer: anything but a successful write must be decided on a fresh read.
    Only the holder of the stripe's turn reads or writes its region, so no read sees half a write
    (a crash in the middle of one is caught by the checksum).
    """

    __slots__ = ("_fd", "_offset", "_name", "wrote")

    def __init__(self, fd: int | None, offset: int, name: str):
        self._fd, self._offset, self._name = fd, offset, name
        self.wrote = False  #: set by ``remember``: a write of this turn is stored

    def recall(self) -> tuple[str, bytes] | None:
        """(etag, content) of the last write of this document on this host, or None."""
        if self._fd is None:
            return None
        try:
            header = os.pread(self._fd, _SLOT.size, self._offset)
            if len(header) < _SLOT.size:
                return None
            magic, crc, name_length, etag_length, content_length = _SLOT.unpack(header)
            if magic != _MAGIC or _SLOT.size + name_length + etag_length + content_length > _SLOT_BYTES:
                return None  # never written, or another format
            rest = os.pread(self._fd, name_length + etag_length + content_length, self._offset + _SLOT.size)
        except OSError:
            return None
        if zlib.crc32(rest) != crc or len(rest) != name_length + etag_length + content_length:
            return None  # torn by a crash: ignore
        if rest[:name_length] != self._name.encode("utf-8", "surrogatepass"):
            return None  # another document of the same stripe
        return rest[name_length : name_length + etag_length].decode("utf-8"), rest[name_length + etag_length :]

    def remember(self, etag: str, content: bytes) -> None:
        """Record the document a write of this turn has just stored (forget it if too large)."""
        self.wrote = True
        if self._fd is None:
            return
        name, tag = self._name.encode("utf-8", "surrogatepass"), etag.encode("utf-8")
        try:
            if len(content) > RECALL_MAX_BYTES or len(name) > _NAME_MAX or len(tag) > 128:
                self._wipe(self._fd)  # forget the older version
                return
            rest = name + tag + content
            record = _SLOT.pack(_MAGIC, zlib.crc32(rest), len(name), len(tag), len(content)) + rest
            # Zero what an older, longer record leaves beyond this one: no stale text stays behind.
            os.pwrite(self._fd, record + bytes(max(0, self._extent(self._fd) - len(record))), self._offset)
        except OSError:
            pass  # nothing to recall next time: the next edit reads the document

    def forget(self) -> None:
        """Wipe the slot if it holds this document (another document's record stays)."""
        if self._fd is None:
            return
        try:
            header = os.pread(self._fd, _SLOT.size, self._offset)
            if len(header) == _SLOT.size and header[:4] == _MAGIC:
                name_length = _SLOT.unpack(header)[2]
                name = os.pread(self._fd, name_length, self._offset + _SLOT.size)
                if name != self._name.encode("utf-8", "surrogatepass"):
                    return
            self._wipe(self._fd)
        except OSError:
            pass

    def _extent(self, fd: int) -> int:
        """Bytes of the slot in use: its record's length (the whole slot when unreadable)."""
        header = os.pread(fd, _SLOT.size, self._offset)
        if len(header) < _SLOT.size or header == bytes(_SLOT.size):
            return 0
        magic, _, name_length, etag_length, content_length = _SLOT.unpack(header)
        if magic != _MAGIC:
            return _SLOT_BYTES
        return min(_SLOT_BYTES, _SLOT.size + name_length + etag_length + content_length)

    def _wipe(self, fd: int) -> None:
        extent = self._extent(fd)
        if extent:
            os.pwrite(fd, bytes(extent), self._offset)


def _lock(fd: int, command: int, kind: int, stripe: int) -> bool:
    try:
        fcntl.fcntl(fd, command, _FLOCK.pack(kind, os.SEEK_SET, stripe, 1, 0))
        return True
    except OSError:  # e.g. ENOLCK or busy: go on without the cross-process turn
        return False


def _lock_until(fd: int, stripe: int, deadline: float) -> bool:
    """Take the stripe's file lock, retrying while busy (pauses from 50 us up to 2 ms) until
    ``deadline`` (``time.monotonic``); False if not had by then."""
    pause = 0.00005
    while True:
        try:
            fcntl.fcntl(fd, _OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, stripe, 1, 0))
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                return False  # e.g. ENOLCK: go on without the cross-process turn
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.002)


def host_turns_path(identity: str, bases: tuple[str, ...] | None = None) -> str | None:
    """The lock file for the store named ``identity`` (e.g. its database URL without password),
    in this user's private directory (hostdir.py), so that other users can neither hold our turns
    nor read recalled documents. None if no such directory is safely ours."""
    directory = private_directory(bases)
    if directory is None:
        return None
    return os.path.join(directory, "turns-" + hashlib.sha256(identity.encode()).hexdigest()[:24])
