"""The node's block store on a local filesystem (``IBlockStore``).

A block named ``h`` (lowercase hex) lives at ``<root>/h[0:2]/h[2:4]/h[4:6]/h``
holding the bytes exactly as they were given (reads right-pad them with
zeros to ``block_size``).  The all-zero block ``EMPTY_HASH`` is never
written: it is always present and costs no I/O.

Crash safety: a block is written to a temporary file of a unique name in
its final directory, fsynced, renamed over its name and the directory
fsynced before ``put`` reports it; a directory created on the way is made
durable (its parent fsynced) before anything relies on it.  A partial file
therefore never appears under a block name; a crash leaves at most
temporary files behind, which ``sweep_temporary`` removes.

Ages: a block's mtime is the last time it was stored or confirmed present
(``put`` of a block that exists, ``missing``), read from the store's clock
(not the filesystem's: the store sets it); ``delete`` removes only blocks
older than a given time of that clock, so garbage collection with a grace
period spares blocks an upload is about to reference.  A deletion first renames
the block aside and re-checks its age there, so a refresh racing the
deletion either lands before (and the block is put back) or finds the name
absent (and the block is written again).

Full or failing storage: a write (a new block, a directory on its way,
the age refresh of a present block) that the filesystem refuses because
it is full (``ENOSPC``, ``EDQUOT``) raises ``StorageFull``, the 507 Swift's
object server answers; one refused because the filesystem is read-only
or failing (``EROFS``, ``EIO``) raises ``StorageFailing``, a 503 with
``Retry-After``.  Both are API faults and still the ``OSError`` they were
(same ``errno``), so callers that map errno (the NBD server's
``ENOSPC``) see what they saw.  The failed block leaves no file under its
name (its temporary file is removed, or swept later).  Reads go on
meanwhile, and nothing is remembered: the next write tries the disk
again, so writes work as soon as there is room.  The node's log says so
once per streak of failures (``snfd.repeats``), and once when a block
is written with room for a whole block left (a nearly full filesystem
lets small blocks through between failures: one streak).

Failing reads: a block whose file cannot be read (``EIO``, or any other
``OSError`` but its absence) raises ``StorageUnreadable``, a 503 with
``Retry-After``, still that ``OSError``; an absent block is the
``KeyError`` of ``IBlockStore.get``, as ever (whether that is data loss
is the reader's to say: a block may be in another policy's store).  As
for writes, nothing is remembered, each read tries the disk, and the log
says so once per streak (``snfd.repeats``); the streak ends with a read
that works a minute after the last that failed (a disk with a few
unreadable blocks lets the others through between failures: one streak).

Privacy: block files are created 0600 and directories 0700 (the root is
closed to other accounts when the store opens), so only the node's
account reads tenants' data.

Every method whose name ends in ``_now`` is synchronous and may be called
from any thread (the backend calls ``missing_now`` in a database
transaction); the others run it in the thread pool and return awaitables.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.interfaces import IBlockStore
from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, is_hash
from snfd.repeats import Repeats

log = Logger(namespace="snfd.pithos.blocks")

T = TypeVar("T")

Block = bytes | bytearray | memoryview

# Temporary names start with a dot so they never sort or parse as a block.
_WRITING = ".w."   # a block being written: ".w.<name>.<unique>"
_DELETING = ".d."  # a block being deleted: ".d.<name>.<unique>"
_HEX2 = frozenset(f"{i:02x}" for i in range(256))
# Directories known durable in this process; cleared when it grows past this.
_DIR_CACHE_MAX = 1_000_000
# Direct I/O: buffers, offsets and lengths aligned to this (a page; at
# least the logical block size of every common device).
_ALIGN = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)
# Tenants' data: only the node's account reads it (the umask can only
# take more bits away).
_FILE_MODE = 0o600
_DIR_MODE = 0o700


FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The errors of a write that mean the filesystem has no room."""
FAILING = frozenset({errno.EROFS, errno.EIO})
"""The errors of a write that mean the filesystem cannot be written now."""
NO_ROOM = "There was not enough space to save the resource."
"""The message of a 507 (Swift's object server's, without its drive)."""
CANNOT_WRITE = ("The server cannot store data at the moment (its storage is read-only"
                " or failing). Please try again at a later time.")
"""The message of the 503 of a read-only or failing store."""
RETRY_AFTER = 30
"""``Retry-After`` (seconds) of that 503: an operator has to act."""
CANNOT_READ = ("The server cannot read data at the moment (its storage is failing)."
               " Please try again at a later time.")
"""The message of the 503 of a block that cannot be read (same ``Retry-After``)."""


def _keep_cause(fault: OSError, cause: OSError) -> None:
    fault.errno, fault.strerror, fault.filename = cause.errno, cause.strerror, cause.filename


class StorageFull(errors.InsufficientStorage, OSError):
    """The block store's filesystem is full (``ENOSPC``, ``EDQUOT``): 507.
    ``errno``, ``strerror`` and ``filename`` are the cause's."""

    def __init__(self, cause: OSError):
        super().__init__(NO_ROOM)
        _keep_cause(self, cause)


class StorageFailing(errors.ServiceUnavailable, OSError):
    """The block store's filesystem is read-only or failing (``EROFS``,
    ``EIO``): 503 with ``Retry-After``.  ``errno``, ``strerror`` and
    ``filename`` are the cause's."""

    def __init__(self, cause: OSError):
        super().__init__(CANNOT_WRITE, headers={"Retry-After": str(RETRY_AFTER)})
        _keep_cause(self, cause)


class StorageUnreadable(errors.ServiceUnavailable, OSError):
    """A block's file exists but cannot be read (``EIO``, ...): 503 with
    ``Retry-After``.  ``errno``, ``strerror`` and ``filename`` are the
    cause's (the NBD server answers ``EIO``)."""

    def __init__(self, cause: OSError):
        super().__init__(CANNOT_READ, headers={"Retry-After": str(RETRY_AFTER)})
        _keep_cause(self, cause)


def storage_fault(error: OSError) -> OSError:
    """The fault a write failing with ``error`` means (``StorageFull``,
    ``StorageFailing``), or ``error`` itself when it means neither."""
    if isinstance(error, StorageFull | StorageFailing):
        return error
    if error.errno in FULL:
        return StorageFull(error)
    if error.errno in FAILING:
        return StorageFailing(error)
    return error


class _WallClock:
    """The time of a store without a clock (nor a reactor)."""

    @staticmethod
    def seconds() -> float:
        return time.time()


def name_of(block: Block) -> str:
    """``hashmap.block_hash(block)`` without copying a block that does not
    end in a zero byte (the usual case)."""
    view = memoryview(block).cast("B")
    if not view or view[-1] != 0:
        return hashlib.sha256(view).hexdigest()
    return hashlib.sha256(view.tobytes().rstrip(b"\x00")).hexdigest()


class _AlignedBuffers:
    """Page-aligned buffers for direct I/O, reused across writes (at most
    ``keep`` kept idle)."""

    def __init__(self, keep: int = 4):
        self._idle: list[mmap.mmap] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            for i, buffer in enumerate(self._idle):
                if len(buffer) >= size:
                    return self._idle.pop(i)
        return mmap.mmap(-1, max(size, _ALIGN))

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(buffer)
                return
        buffer.close()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_private(path: str) -> None:
    """Close the store's root to other accounts (a root an older node made
    0755 included: its subdirectories then need no change).  A root we may
    not chmod (another account's, a read-only filesystem) is left as it
    is."""
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            os.chmod(path, _DIR_MODE)
    except PermissionError:
        pass
    except OSError as e:
        if e.errno != errno.EROFS:  # a read-only store still serves reads
            raise


def _sorted_entries(path: str, wanted: Callable[[str], bool]) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if wanted(n))
    except FileNotFoundError:
        return []


async def every_name(store: Any, batch: int = 1000) -> list[str]:
    """Every block name of an ``IBlockStore`` (a whole scan: for tests and
    small stores; a collection streams pages instead)."""
    names: list[str] = []
    cursor: str | None = ""
    while cursor is not None:
        page, cursor = await store.scan(cursor, batch)
        names.extend(page)
    return names


@implementer(IBlockStore)
class FileBlockStore:
    """Blocks in files under ``path`` (created if absent).

    @param reactor: the reactor whose threads run hashing and I/O.
    @param threadpool: the pool to use (default: the reactor's own).
    @param block_size: the largest block, in bytes.
    @param direct: write blocks with direct I/O (``O_DIRECT``) where the
        filesystem allows it (it falls back to buffered writes by itself).
    @param clock: what block ages are measured with (its ``seconds()``,
        epoch seconds; read from the I/O threads): a block's mtime is set to
        its time whenever the block is stored or refreshed, and ``delete``
        compares ``older_than`` with those mtimes, so the caller computes
        ``older_than`` from the same clock.  Default: ``reactor``; with
        neither (a process without a reactor), the wall clock.  Temporary
        files a crash leaves behind keep the time of their last write, so
        ``sweep_temporary`` needs a wall-clock-based ``older_than`` (which
        the node's clock, its reactor, gives).
    """

    scan_resumable = True
    """A scan's cursor is the last name given (see ``IBlockStore``)."""

    def __init__(self, path: str | os.PathLike[str], reactor: Any,
                 threadpool: Any = None, block_size: int = BLOCK_SIZE,
                 direct: bool = True, clock: Any = None):
        self.path = os.path.abspath(os.fspath(path))
        self.block_size = block_size
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._threadpool = threadpool
        self._durable_dirs: set[str] = set()
        self._direct = direct and bool(_O_DIRECT)
        self._buffers = _AlignedBuffers()
        # Writes, and reads, fail and recover in the I/O threads: one
        # streak each, one lock each.
        clock = self._clock if self._clock is not None else _WallClock()
        self._write_failures = Repeats(log, f"writing blocks to {self.path}", clock)
        self._write_failures_lock = threading.Lock()
        self._read_failures = Repeats(log, f"reading blocks from {self.path}", clock)
        self._read_failures_lock = threading.Lock()
        self._last_read_failure = 0.0
        if not os.path.isdir(self.path):
            os.makedirs(self.path, mode=_DIR_MODE, exist_ok=True)
            _fsync_dir(os.path.dirname(self.path))
        _make_private(self.path)
        self._durable_dirs.add(self.path)

    # -- IBlockStore ----------------------------------------------------------

    def put(self, blocks: Iterable[Block]) -> Any:
        """Store ``blocks``, writing only those absent (see ``IBlockStore``)."""
        blocks = list(blocks)
        return self._in_thread(lambda: [self.put_now(b) for b in blocks])

    def put_hashed(self, pairs: Iterable[tuple[str, Block]]) -> Any:
        """Like ``put`` for blocks whose names the caller already computed
        (``(name, block)`` pairs; the names are trusted, not checked)."""
        pairs = list(pairs)
        return self._in_thread(lambda: [self.store_now(n, b) for n, b in pairs])

    def get(self, name: str) -> Any:
        """The block ``name`` padded to ``block_size``; fails with
        ``KeyError`` when absent, ``StorageUnreadable`` when its file
        cannot be read."""
        return self.read(name, self.block_size)

    def read(self, name: str, length: int) -> Any:
        """The first ``length`` bytes of block ``name`` (padded with zeros
        as far as needed); fails as ``get``."""
        if name == EMPTY_HASH:
            return defer.succeed(bytes(length))
        return self._in_thread(self.get_now, name, length)

    def get_stored(self, name: str) -> Any:
        """The block ``name`` as stored, unpadded; fails as ``get``."""
        return self._in_thread(self.get_stored_now, name)

    def missing(self, names: Iterable[str]) -> Any:
        """Which of ``names`` are absent (see ``IBlockStore``)."""
        names = list(names)
        return self._in_thread(self.missing_now, names)

    def delete(self, names: Iterable[str], older_than: float) -> Any:
        """Remove the named blocks last stored or refreshed before
        ``older_than``, a time of the store's clock (see ``IBlockStore``).
        ``EMPTY_HASH`` and absent names are ignored."""
        names = list(names)
        return self._in_thread(self.delete_now, names, older_than)

    def scan(self, cursor: str, limit: int) -> Any:
        """A page of stored names (see ``IBlockStore.scan``): here in
        ascending order, the cursor being the last name given."""
        return self._in_thread(self.scan_now, cursor, limit)

    # -- other asynchronous operations ---------------------------------------

    def present(self, names: Iterable[str]) -> Any:
        """Which of ``names`` are stored (see ``present_now``)."""
        names = list(names)
        return self._in_thread(self.present_now, names)

    def sweep_temporary(self, older_than: float) -> Any:
        """Clean what a crash left behind (see ``sweep_temporary_now``)."""
        return self._in_thread(self.sweep_temporary_now, older_than)

    # -- synchronous, any thread ---------------------------------------------

    def put_now(self, block: Block) -> str:
        """Hash and store one block; its name."""
        if len(block) > self.block_size:
            raise ValueError(f"a block of {len(block)} bytes is larger than"
                             f" {self.block_size}")
        name = name_of(block)
        return self.store_now(name, block)

    def store_now(self, name: str, block: Block) -> str:
        """Store ``block`` as ``name`` unless present (then refresh its age);
        returns ``name`` once the block is durable.
        @raise StorageFull: the filesystem has no room for it.
        @raise StorageFailing: the filesystem is read-only or failing."""
        if name == EMPTY_HASH:
            return name
        path = self._path(name)
        if path is None:
            raise ValueError(f"{name!r} is not a block name")
        with self._writing():
            if self._touch(path):
                return name
            self._write_block(path, name, block)
        if self._write_failures.failing and self._writable_again():
            with self._write_failures_lock:
                self._write_failures.recovered()
        return name

    def _write_block(self, path: str, name: str, block: Block) -> None:
        """Write the absent block ``name`` at ``path`` (see the module
        docstring: a temporary file, renamed once durable)."""
        directory = os.path.dirname(path)
        pending = self._make_dirs(directory)
        temporary = os.path.join(directory, f"{_WRITING}{name}.{uuid.uuid4().hex}")
        try:
            self._write_file(temporary, block, self._now())
            # Another writer may have put the same block meanwhile: both
            # hold the same bytes, so replacing it is harmless.
            os.rename(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        _fsync_dir(directory)
        self._made_durable(pending)

    def get_now(self, name: str, length: int | None = None) -> bytes:
        """The first ``length`` bytes (default ``block_size``) of block
        ``name``, padded with zeros as far as needed.
        @raise KeyError: absent.
        @raise StorageUnreadable: its file cannot be read."""
        length = self.block_size if length is None else length
        if name == EMPTY_HASH:
            return bytes(length)
        data = self.get_stored_now(name)
        if len(data) < length:
            return data + bytes(length - len(data))
        return data[:length] if len(data) > length else data

    def get_stored_now(self, name: str) -> bytes:
        """``get_stored`` run in the calling thread."""
        if name == EMPTY_HASH:
            return b""
        path = self._path(name)
        if path is None:
            raise KeyError(name)
        try:
            data = self._read_file(path)
        except FileNotFoundError:
            raise KeyError(name) from None
        except OSError as e:
            with self._read_failures_lock:
                self._last_read_failure = self._now()
                self._read_failures.failed(
                    f"{e.strerror or e}; reads of unreadable blocks are answered 503"
                    f" (block {name})")
            raise StorageUnreadable(e) from e
        if self._read_failures.failing:
            with self._read_failures_lock:
                if self._now() - self._last_read_failure >= self._read_failures.interval:
                    self._read_failures.recovered()
        return data

    def missing_now(self, names: Iterable[str]) -> list[str]:
        """``missing`` run in the calling thread.
        @raise StorageFailing: a present block's age cannot be refreshed
            (a read-only filesystem)."""
        out: list[str] = []
        seen: set[str] = set()
        for name in names:
            if name in seen:
                continue
            seen.add(name)
            if name == EMPTY_HASH:
                continue
            path = self._path(name)
            with self._writing():
                present = path is not None and self._touch(path)
            if not present:
                out.append(name)
        return out

    def present_now(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` stored here, in the order given, once each,
        without refreshing their ages: a look that writes nothing, for a
        store being moved away from (``policies.FallbackBlocks``; it may
        be on a read-only filesystem).  ``EMPTY_HASH`` is always there."""
        out: list[str] = []
        for name in dict.fromkeys(names):
            if name == EMPTY_HASH:
                out.append(name)
                continue
            path = self._path(name)
            if path is not None and os.path.isfile(path):
                out.append(name)
        return out

    def delete_now(self, names: Iterable[str], older_than: float) -> list[str]:
        """``delete`` run in the calling thread."""
        removed: list[str] = []
        for name in dict.fromkeys(names):
            if name == EMPTY_HASH:
                continue
            path = self._path(name)
            if path is None:
                continue
            try:
                if os.stat(path).st_mtime >= older_than:
                    continue
            except FileNotFoundError:
                continue
            directory = os.path.dirname(path)
            aside = os.path.join(directory, f"{_DELETING}{name}.{uuid.uuid4().hex}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            # A refresh may have happened between the stat and the rename;
            # it changed this very inode, so look again.
            try:
                if os.stat(aside).st_mtime >= older_than:
                    self._put_back(aside, path)
                    continue
                os.unlink(aside)
            except FileNotFoundError:
                continue  # a concurrent sweep put it back
            removed.append(name)
        return removed

    def scan_now(self, cursor: str, limit: int) -> tuple[list[str], str | None]:
        """``scan`` run in the calling thread: the names after ``cursor``."""
        out: list[str] = []
        if limit <= 0:
            return out, cursor
        for name in self._walk(cursor):
            out.append(name)
            if len(out) >= limit:
                return out, name
        return out, None

    def sweep_temporary_now(self, older_than: float) -> int:
        """Remove the temporary files of writes that a crash interrupted
        and are older than ``older_than`` (epoch seconds); a block caught
        in the middle of a deletion is put back under its name (a later
        collection deletes it again if it is still garbage).  Walks the
        whole tree; returns how many files it handled."""
        handled = 0
        for directory in self._leaf_dirs(""):
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(_DELETING):
                    name = entry.name[len(_DELETING):].split(".", 1)[0]
                    self._put_back(entry.path, os.path.join(directory, name))
                    handled += 1
                elif entry.name.startswith(_WRITING):
                    try:
                        if entry.stat().st_mtime >= older_than:
                            continue
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue
                    handled += 1
        return handled

    # -- internals --------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around a write: an ``OSError`` meaning full or failing storage
        is raised as its fault (``storage_fault``) and noted in the streak
        the log reports; any other error passes unchanged."""
        try:
            yield
        except OSError as e:
            fault = storage_fault(e)
            if not isinstance(fault, StorageFull | StorageFailing):
                raise
            answer = "507" if isinstance(fault, StorageFull) else "503"
            with self._write_failures_lock:
                self._write_failures.failed(
                    f"{e.strerror or e}; uploads are answered {answer} until a block"
                    " can be written")
            if fault is e:
                raise
            raise fault from e

    def _writable_again(self) -> bool:
        """After a block was written during a streak of failures: whether
        the streak is over, the filesystem writable with room for a whole
        block (a nearly full one lets small blocks through between
        failures; that is not a recovery)."""
        try:
            fs = os.statvfs(self.path)
        except OSError:
            return False
        # The blocks reserved for root are the node's too when it is root.
        free = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail
        return not fs.f_flag & os.ST_RDONLY and free * fs.f_frsize >= self.block_size

    @staticmethod
    def _read_file(path: str) -> bytes:
        """The whole content of the file at ``path``."""
        with open(path, "rb", buffering=0) as f:
            return f.readall()

    def _write_file(self, path: str, block: Block, mtime: float) -> None:
        """Create ``path`` holding ``block`` and modified at ``mtime``, on
        stable storage."""
        view = memoryview(block).cast("B")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        if self._direct and view:
            try:
                fd = os.open(path, flags | _O_DIRECT, _FILE_MODE)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._direct = False  # the filesystem has no direct I/O
                try:
                    os.unlink(path)  # some kernels create it before refusing
                except FileNotFoundError:
                    pass
            else:
                try:
                    self._write_direct(fd, view)
                    os.utime(fd, (mtime, mtime))
                    os.fsync(fd)
                    return
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    self._direct = False
                finally:
                    os.close(fd)
                os.unlink(path)
        fd = os.open(path, flags, _FILE_MODE)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.utime(fd, (mtime, mtime))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_direct(self, fd: int, view: memoryview) -> None:
        """Write ``view`` bypassing the page cache: from an aligned copy,
        padded to the alignment, then truncated to its length.  Blocks are
        written once and seldom read soon, so caching them only costs the
        copy into the cache (the dearest part of a buffered write)."""
        size = len(view)
        padded = -(-size // _ALIGN) * _ALIGN
        buffer = self._buffers.take(padded)
        try:
            target = memoryview(buffer)
            try:
                target[:size] = view
                target[size:padded] = bytes(padded - size)
                done = 0
                while done < padded:
                    done += os.write(fd, target[done:padded])
            finally:
                target.release()
        finally:
            self._buffers.give(buffer)
        if padded != size:
            os.ftruncate(fd, size)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> Any:
        pool = self._threadpool if self._threadpool is not None else self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, fn, *args)

    def _path(self, name: str) -> str | None:
        if not isinstance(name, str) or not is_hash(name):
            return None
        return os.path.join(self.path, name[0:2], name[2:4], name[4:6], name)

    def _now(self) -> float:
        """The time of the store's clock (any thread)."""
        return float(self._clock.seconds()) if self._clock is not None else time.time()

    def _touch(self, path: str) -> bool:
        """Set the mtime of ``path`` to now; whether it exists."""
        now = self._now()
        try:
            os.utime(path, (now, now))
        except FileNotFoundError:
            return False
        return True

    def _make_dirs(self, directory: str) -> list[str]:
        """Create ``directory`` and its parents as needed; the directories
        not yet known durable, deepest first.  Each must have its parent
        fsynced (``_made_durable``) before a block in it is acknowledged:
        even one that existed may have been created by another thread or
        an earlier process that did not get that far."""
        pending: list[str] = []
        while directory not in self._durable_dirs:
            pending.append(directory)
            directory = os.path.dirname(directory)
        for d in reversed(pending):
            try:
                os.mkdir(d, _DIR_MODE)
            except FileExistsError:
                pass
        return pending

    def _made_durable(self, pending: list[str]) -> None:
        """fsync the parents of ``pending`` (from ``_make_dirs``), deepest
        first, and remember these directories as durable.  Done after the
        block's own directory was fsynced: on journalling filesystems that
        commit already carried the new entries, making these cheap."""
        for d in pending:
            _fsync_dir(os.path.dirname(d))
        if len(self._durable_dirs) > _DIR_CACHE_MAX:
            self._durable_dirs = {self.path}
        self._durable_dirs.update(pending)

    @staticmethod
    def _put_back(aside: str, path: str) -> None:
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # written again meanwhile: same content
        except FileNotFoundError:
            return
        os.unlink(aside)
        _fsync_dir(os.path.dirname(path))

    def _walk(self, after: str) -> Iterator[str]:
        """Every block name greater than ``after``, ascending."""
        for directory in self._leaf_dirs(after):
            names = _sorted_entries(directory, is_hash)
            for name in names:
                if name > after:
                    yield name

    def _leaf_dirs(self, after: str) -> Iterator[str]:
        """The leaf directories that may hold names greater than ``after``,
        in ascending order (whole subtrees before ``after`` are skipped)."""
        def below(path: str, prefix: str, depth: int) -> Iterator[str]:
            if depth == 3:
                yield path
                return
            for part in _sorted_entries(path, _HEX2.__contains__):
                deeper = prefix + part
                # Skip subtrees whose every name sorts before ``after``.
                if deeper < after[:len(deeper)]:
                    continue
                yield from below(os.path.join(path, part), deeper, depth + 1)

        yield from below(self.path, "", 0)

