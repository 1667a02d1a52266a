"""Thin copy-on-write volumes over the node's block store (Archipelago).

A volume is a map (``snfd.archip.mapfile.MapV2``): one entry per 4 MiB
object, naming either a block of the content-addressed store (an image's
Pithos blocks, read-only), the zero object (no data), or an object the
volume owns (``ARCHIP``; ``WRITABLE`` until a snapshot freezes it).

Where things live, under the store's directory:

- **maps**: each version of a map is encoded (v2) and stored as blocks of
  the block store, beside the data (a map is content too, and a map
  unchanged by a write costs nothing to store again).  The block store is
  immutable, so each volume has a small mutable *pointer*,
  ``maps/<volume>``: JSON naming the blocks of its current map and their
  length.  A pointer is replaced atomically (temporary file, fsync,
  rename, fsync of the directory) and only after the blocks it names are
  durable, so a crash leaves either the old map or the new one.
- **owned objects**: mutable data cannot be content-addressed, so an
  object a volume owns is a file ``objects/<volume>_<epoch>_<index>`` (the
  reference's naming, ``mapfile.owned_name``) of ``block_size`` bytes.

Copy-on-write: the first write to an object that is not ``WRITABLE``
creates the volume's own object (a copy of the whole origin object with
the write applied; for the zero object, no copy: zeros plus the write),
makes it durable, then saves the map, and only then returns.  A map on
disk therefore never names an object that does not exist.  Writes into an
object the volume already owns go straight to its file and are durable
once ``flush`` returns.  Whole objects trimmed or zeroed become the zero
object; the file of an object only this volume referenced is removed
after the map no longer names it.

Snapshot: the volume's map is saved first with every entry no longer
writable and a new epoch (later writes copy up into new names), then the
snapshot's map, read-only (``MAP_READONLY``), with the same entries.
Clones start from a read-only map (a snapshot, or a Pithos hashmap) so no
origin ever changes under a clone.

One writer per volume per node (``VolumeBusy``); any number of readers,
which share the writer's live map and so see its writes.  Every blocking
call runs in the thread pool.

Garbage collection: ``referenced`` says which blocks of the block store
live maps need (their own map blocks and the shared objects they name);
the volume service registers it with the storage service's
``IBlockReferences``.  A clone refreshes its origin's blocks before its
map names them, and a map's blocks are stored (so refreshed) before its
pointer names them: a collection under way spares both.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import DeferredLock
from twisted.internet.threads import deferToThreadPool

from snfd.archip import mapfile
from snfd.archip.io import VolumeBusy, VolumeIO, VolumeOpener
from snfd.archip.mapfile import ARCHIP, MAP_READONLY, WRITABLE, Entry, MapV2
from snfd.interfaces import IBlockStore

__all__ = ["Counters", "OpenVolume", "OriginIncomplete", "VolumeBusy", "VolumeStore"]

T = TypeVar("T")

_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_POINTER_VERSION = 1
_DIR_MODE = 0o700
_FILE_MODE = 0o600
# Content-addressed blocks kept in memory for reads smaller than a block
# (they never change, so a cached one is never stale).
_CACHED_BLOCKS = 4


class OriginIncomplete(LookupError):
    """A clone's origin names blocks the block store no longer has."""


@dataclass
class Counters:
    """What the store did since it was made (for tests and benchmarks)."""

    copy_ups: int = 0          # objects copied from a non-writable origin
    bytes_copied: int = 0      # their bytes
    zero_fills: int = 0        # owned objects made for a zero object (no copy)
    objects_dropped: int = 0   # owned objects released by trim/zeroes/remove
    map_saves: int = 0         # map versions made durable


@dataclass
class _Volume:
    """A volume's live map, shared by its open handles."""

    name: str
    size: int
    block_size: int
    flags: int
    epoch: int
    entries: list[Entry]
    lock: DeferredLock = field(default_factory=DeferredLock)
    handles: int = 0
    writer: bool = False
    dirty: set[str] = field(default_factory=set)

    def as_map(self) -> MapV2:
        return MapV2(self.size, self.block_size, tuple(self.entries),
                     self.flags, self.epoch)


#: A volume-owned object's file: ``<volume>_<epoch>_<index>`` (hex).
_OWNED_OBJECT = re.compile(r"(.+)_([0-9a-f]{16})_[0-9a-f]{16}$")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _VOLUME_NAME.match(name) \
            or len(name) > mapfile.MAX_VOLUME_NAME:
        raise ValueError(f"volume name {name!r}: 1 to {mapfile.MAX_VOLUME_NAME}"
                         " letters, digits, '.', '_' or '-', not starting"
                         " with a punctuation mark")


class VolumeStore:
    """Volumes under ``path`` (created if absent), their maps and shared
    data in ``blocks``.

    @param blocks: the node's ``IBlockStore``; its block size is the
        volumes' object size.
    @param reactor: the reactor whose thread pool runs file I/O.
    @param threadpool: the pool to use (default: the reactor's own).
    """

    def __init__(self, path: str | os.PathLike[str], blocks: IBlockStore,
                 reactor: Any, threadpool: Any = None):
        self.path = os.path.abspath(os.fspath(path))
        self.blocks = blocks
        self.block_size: int = blocks.block_size
        self.counters = Counters()
        self._reactor = reactor
        self._threadpool = threadpool
        self._maps = os.path.join(self.path, "maps")
        self._objects = os.path.join(self.path, "objects")
        self._epochs = os.path.join(self.path, "epochs")
        # The directories are made by the first write (no I/O here: a node's
        # services are built, by snf-manage too, before anything starts).
        self._made = False
        self._live: dict[str, _Volume] = {}
        self._locks: dict[str, DeferredLock] = {}
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    # -- volumes -----------------------------------------------------------

    async def create(self, name: str, size: int) -> MapV2:
        """A new volume of ``size`` bytes of zeros; ``FileExistsError`` when
        the name is taken."""
        _check_name(name)
        if size <= 0:
            raise ValueError(f"volume size {size} is not positive")
        epoch = await self._in_thread(self._first_epoch_now, name)
        m = MapV2.empty(size, self.block_size, epoch=epoch)
        await self._save(name, m, exclusive=True)
        return m

    async def clone(self, name: str, origin: str | MapV2,
                    size: int | None = None) -> MapV2:
        """A new volume whose bytes are ``origin``'s: a read-only map (a
        Pithos hashmap through ``mapfile.from_hashmap``/``decode_v0``) or the
        name of a snapshot in this store.  No data is copied; a larger
        ``size`` adds zero objects.  ``KeyError`` for an unknown origin,
        ``ValueError`` for one that is not read-only, of another object
        size, or larger than ``size``."""
        _check_name(name)
        source = await self.info(origin) if isinstance(origin, str) else origin
        await self._refresh(source)
        if not source.read_only:
            raise ValueError("a clone's origin must be read-only (a snapshot"
                             " or an image), not a live volume")
        if source.block_size != self.block_size:
            raise ValueError(f"origin's objects are {source.block_size} bytes,"
                             f" this store's {self.block_size}")
        size = source.size if size is None else size
        if size < source.size or size <= 0:
            raise ValueError(f"a clone of {source.size} bytes cannot be {size}")
        extra = mapfile.objects_in(size, self.block_size) - len(source.entries)
        entries = tuple(e.frozen() for e in source.entries) + (Entry.zero(),) * extra
        epoch = await self._in_thread(self._first_epoch_now, name)
        m = MapV2(size, self.block_size, entries, 0, epoch)
        await self._save(name, m, exclusive=True)
        return m

    async def export(self, name: str, origin: MapV2) -> MapV2:
        """Save the read-only map ``origin`` (a Pithos hashmap through
        ``mapfile.from_hashmap``) as ``name``, replacing a read-only map of
        that name: an image to read over NBD.  Its blocks are refreshed
        first (``OriginIncomplete``)."""
        _check_name(name)
        if not origin.read_only or origin.block_size != self.block_size:
            raise ValueError("an export is a read-only map of this store's object size")
        await self._refresh(origin)
        lock = self._lock(name)
        await lock.acquire()
        try:
            if name in self._live:
                raise VolumeBusy(f"volume {name} is open")
            try:
                old = await self._load(name)
            except KeyError:
                old = None
            if old is not None and not old.read_only:
                raise FileExistsError(f"volume {name} exists and is not an export")
            await self._save(name, origin)
            return origin
        finally:
            lock.release()

    async def snapshot(self, name: str, snap_name: str) -> MapV2:
        """Freeze volume ``name`` as the new read-only volume ``snap_name``
        (its map, returned); later writes to ``name`` copy up into objects of
        a new epoch.  Works while ``name`` is open."""
        _check_name(snap_name)
        lock = self._lock(name)
        await lock.acquire()
        try:
            if await self._in_thread(os.path.exists, self._pointer(snap_name)):
                raise FileExistsError(f"volume {snap_name} exists")
            live = self._live.get(name)
            current = live.as_map() if live is not None else await self._load(name)
            if current.read_only:
                raise ValueError(f"volume {name} is read-only")
            if live is not None:
                await self._flush(live)
            frozen = tuple(e.frozen() for e in current.entries)
            # The volume first: once its objects are frozen no write can
            # change what the snapshot is about to name.
            await self._save(name, MapV2(current.size, current.block_size, frozen,
                                         current.flags, current.epoch + 1))
            if live is not None:
                live.entries = list(frozen)
                live.epoch = current.epoch + 1
            snap = MapV2(current.size, current.block_size, frozen,
                         current.flags | MAP_READONLY, current.epoch)
            await self._save(snap_name, snap, exclusive=True)
            return snap
        finally:
            lock.release()

    async def grow(self, name: str, size: int) -> MapV2:
        """Make volume ``name`` ``size`` bytes, the new objects zero; its
        map, returned.  ``ValueError`` when smaller than it is, or for a
        snapshot.  Works while open: readers see the new size at once."""
        _check_name(name)
        lock = self._lock(name)
        await lock.acquire()
        try:
            live = self._live.get(name)
            current = live.as_map() if live is not None else await self._load(name)
            if current.read_only:
                raise ValueError(f"volume {name} is read-only")
            if size < current.size:
                raise ValueError(f"volume {name} is {current.size} bytes: it cannot"
                                 f" shrink to {size}")
            if size == current.size:
                return current
            extra = mapfile.objects_in(size, self.block_size) - len(current.entries)
            grown = MapV2(size, current.block_size,
                          current.entries + (Entry.zero(),) * extra,
                          current.flags, current.epoch)
            await self._save(name, grown)
            if live is not None:
                live.entries.extend([Entry.zero()] * extra)
                live.size = size
            return grown
        finally:
            lock.release()

    async def hashmap(self, name: str) -> tuple[int, list[str]]:
        """Snapshot ``name``'s bytes as a hashmap of the block store: each
        object it owns stored as a content-addressed block (trailing zeros
        stripped, as block names are), shared ones named as they are, zero
        objects as the empty block.  ``(size, hashes)``; ``ValueError`` for
        a live volume."""
        m = await self.info(name)
        if not m.read_only:
            raise ValueError(f"volume {name} is not a snapshot: its content may change")
        hashes: list[str] = []
        for index, e in enumerate(m.entries):
            if e.is_zero:
                hashes.append(mapfile.ZERO_OBJECT)
            elif not e.archip:
                hashes.append(e.name)
            else:
                length = min(self.block_size, m.size - index * self.block_size)
                data = await self._in_thread(self._pread_now, e.name, 0, length)
                [stored] = await self.blocks.put([data])
                hashes.append(stored)
        return m.size, hashes

    async def remove(self, name: str) -> None:
        """Delete volume ``name`` and the objects it owns that no other map
        names; ``KeyError`` when absent, ``VolumeBusy`` while open."""
        _check_name(name)
        lock = self._lock(name)
        await lock.acquire()
        try:
            if name in self._live:
                raise VolumeBusy(f"volume {name} is open")
            m = await self._load(name)
            owned = {e.name for e in m.entries if e.archip}
            unnamed = set(owned)
            if owned:
                for other in await self.names():
                    if other == name:
                        continue
                    try:
                        om = await self.info(other)
                    except KeyError:
                        continue
                    unnamed -= {e.name for e in om.entries if e.archip}
            if unnamed != owned:
                # Snapshots keep some of its objects: a new volume of this
                # name must own objects under later epochs (recorded before
                # the map goes, so a crash cannot lose it).
                await self._in_thread(self._raise_floor_now, name, m.epoch + 1)
            await self._in_thread(self._remove_pointer_now, name)
            await self._in_thread(self._unlink_objects_now, sorted(unnamed))
        finally:
            lock.release()

    async def names(self) -> list[str]:
        """Every volume and snapshot, sorted."""
        return await self._in_thread(self._names_now)

    async def info(self, name: str) -> MapV2:
        """Volume ``name``'s current map; ``KeyError`` when absent."""
        _check_name(name)
        live = self._live.get(name)
        if live is not None:
            return live.as_map()
        return await self._load(name)

    async def referenced(self) -> set[str]:
        """The block names live maps need: their own blocks and the
        content-addressed objects they name (what garbage collection must
        spare)."""
        out: set[str] = set()
        for name in await self.names():
            try:
                pointer = await self._in_thread(self._read_pointer_now, name)
                m = await self.info(name)
            except KeyError:
                continue
            out.update(pointer["blocks"])
            out.update(e.name for e in m.entries if not e.archip and not e.is_zero)
        return out

    async def open(self, name: str, writable: bool) -> OpenVolume:
        """Open volume ``name`` (``VolumeOpener``).  A snapshot opens
        read-only whatever ``writable`` says."""
        _check_name(name)
        lock = self._lock(name)
        await lock.acquire()
        try:
            live = self._live.get(name)
            if live is None:
                m = await self._load(name)
                live = _Volume(name, m.size, m.block_size, m.flags, m.epoch,
                               list(m.entries), lock)
            writable = writable and not live.flags & MAP_READONLY
            if writable and live.writer:
                raise VolumeBusy(f"volume {name} is open for writing")
            self._live[name] = live
            live.handles += 1
            live.writer = live.writer or writable
            return OpenVolume(self, live, read_only=not writable)
        finally:
            lock.release()

    async def sweep(self) -> int:
        """Remove what a crash left behind: temporary files, and owned
        objects no map names (a copy-up made but never recorded).  Run
        while no volume is open or being changed (at startup); returns how
        many files it removed."""
        if self._live:
            raise VolumeBusy("volumes are open: " + ", ".join(sorted(self._live)))
        named: set[str] = set()
        for name in await self.names():
            try:
                named.update(e.name for e in (await self.info(name)).entries if e.archip)
            except KeyError:
                continue
        return await self._in_thread(self._sweep_now, named)

    # -- I/O for OpenVolume --------------------------------------------------

    async def _read(self, v: _Volume, offset: int, length: int) -> bytes:
        parts = []
        for index, start, count in self._pieces(v, offset, length):
            parts.append(await self._read_piece(v, index, start, count))
        return b"".join(parts)

    async def _read_piece(self, v: _Volume, index: int, start: int, count: int) -> bytes:
        while True:
            e = v.entries[index]
            if e.is_zero:
                return bytes(count)
            if not e.archip:
                block = await self._block(e.name)
                return block[start:start + count]
            try:
                return await self._in_thread(self._pread_now, e.name, start, count)
            except FileNotFoundError:
                if v.entries[index] == e:
                    raise
                # Trimmed (or copied up) while we read: read what is there now.

    async def _write(self, v: _Volume, offset: int, data: bytes) -> None:
        view = memoryview(data)
        changed = False
        done = 0
        for index, start, count in self._pieces(v, offset, len(data)):
            changed |= await self._write_piece(v, index, start, view[done:done + count])
            done += count
        if changed:
            await self._save(v.name, v.as_map())

    async def _write_piece(self, v: _Volume, index: int, start: int,
                           chunk: memoryview) -> bool:
        """Write into object ``index``; whether the map changed (then the
        caller saves it before acknowledging)."""
        e = v.entries[index]
        if e.writable:
            await self._in_thread(self._pwrite_now, e.name, start, chunk)
            v.dirty.add(e.name)
            return False
        new = mapfile.owned_name(v.name, v.epoch, index)
        if e.is_zero:
            base = None
            self.counters.zero_fills += 1
        elif start == 0 and len(chunk) == self._object_length(v, index):
            # The write covers the whole object: nothing of the origin stays.
            base = None
        elif e.archip:
            base = await self._in_thread(self._pread_now, e.name, 0, self.block_size)
        else:
            base = await self._block(e.name)
        if base is not None:
            self.counters.copy_ups += 1
            self.counters.bytes_copied += self.block_size
        await self._in_thread(self._create_object_now, new, base, start, chunk)
        v.entries[index] = Entry(new, WRITABLE | ARCHIP)
        return True

    async def _zero(self, v: _Volume, offset: int, length: int, partial: bool) -> None:
        """Make whole objects in the range the zero object; write zeros into
        partial ones when ``partial`` (else leave them)."""
        dropped = []
        changed = False
        for index, start, count in self._pieces(v, offset, length):
            whole = start == 0 and count == self._object_length(v, index)
            e = v.entries[index]
            if whole:
                if e.is_zero:
                    continue
                v.entries[index] = Entry.zero()
                changed = True
                if e.writable:
                    dropped.append(e.name)
            elif partial and not e.is_zero:
                changed |= await self._write_piece(
                    v, index, start, memoryview(bytes(count)))
        if changed:
            await self._save(v.name, v.as_map())
        if dropped:
            v.dirty.difference_update(dropped)
            await self._in_thread(self._unlink_objects_now, dropped)

    async def _flush(self, v: _Volume) -> None:
        dirty = sorted(v.dirty)
        v.dirty.difference_update(dirty)
        await self._in_thread(self._fsync_objects_now, dirty)

    async def _close(self, v: _Volume, writer: bool) -> None:
        await v.lock.acquire()
        try:
            if writer:
                await self._flush(v)
                v.writer = False
            v.handles -= 1
            if v.handles == 0:
                self._live.pop(v.name, None)
        finally:
            v.lock.release()

    # -- maps ----------------------------------------------------------------

    async def _save(self, name: str, m: MapV2, exclusive: bool = False) -> None:
        # A large volume's map is megabytes: encode it off the reactor.
        data = await self._in_thread(mapfile.encode, m)
        chunks = [data[i:i + self.block_size]
                  for i in range(0, len(data), self.block_size)]
        names = await self.blocks.put(chunks)
        pointer = {"version": _POINTER_VERSION, "length": len(data),
                   "blocks": list(names)}
        await self._in_thread(self._write_pointer_now, name, pointer, exclusive)
        self.counters.map_saves += 1

    async def _load(self, name: str) -> MapV2:
        pointer = await self._in_thread(self._read_pointer_now, name)
        parts = [await self.blocks.get(b) for b in pointer["blocks"]]
        data = b"".join(parts)[:pointer["length"]]
        return await self._in_thread(mapfile.decode, data)

    async def _refresh(self, m: MapV2) -> None:
        shared = list(dict.fromkeys(e.name for e in m.entries
                                    if not e.archip and not e.is_zero))
        if shared:
            gone = await self.blocks.missing(shared)
            if gone:
                raise OriginIncomplete(f"{len(gone)} blocks of the origin are gone"
                                       f" from the block store (first: {gone[0]})")

    async def _block(self, name: str) -> bytes:
        block = self._cache.get(name)
        if block is None:
            block = await self.blocks.get(name)
            self._cache[name] = block
            while len(self._cache) > _CACHED_BLOCKS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(name)
        return block

    # -- helpers -------------------------------------------------------------

    def _lock(self, name: str) -> DeferredLock:
        live = self._live.get(name)
        if live is not None:
            return live.lock
        return self._locks.setdefault(name, DeferredLock())

    def _object_length(self, v: _Volume, index: int) -> int:
        return min(self.block_size, v.size - index * self.block_size)

    def _pieces(self, v: _Volume, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """``(object index, offset in it, length)`` covering the range."""
        if offset < 0 or length < 0 or offset + length > v.size:
            raise ValueError(f"range {offset}+{length} is outside volume"
                             f" {v.name} of {v.size} bytes")
        end = offset + length
        while offset < end:
            index, start = divmod(offset, self.block_size)
            count = min(self.block_size - start, end - offset)
            yield index, start, count
            offset += count

    def _pointer(self, name: str) -> str:
        return os.path.join(self._maps, name)

    def _object(self, name: str) -> str:
        if "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not an object name")
        return os.path.join(self._objects, name)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> Any:
        pool = self._threadpool if self._threadpool is not None else self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, fn, *args)

    # -- synchronous, in the thread pool ------------------------------------------

    def _first_epoch_now(self, name: str) -> int:
        """An epoch under which ``name`` owns no object yet: after any a
        removed volume of that name left to its snapshots (its floor in
        ``epochs/``, written by ``remove`` and ``sweep``; one small file
        read, whatever the number of objects)."""
        try:
            with open(os.path.join(self._epochs, name), "rb") as f:
                return int(f.read().strip() or b"0")
        except FileNotFoundError:
            return 0

    def _raise_floor_now(self, name: str, epoch: int) -> None:
        """Record that a new volume ``name`` starts at ``epoch`` or later."""
        if epoch <= self._first_epoch_now(name):
            return
        self._make_dirs_now()
        os.makedirs(self._epochs, mode=_DIR_MODE, exist_ok=True)
        temporary = os.path.join(self._epochs, f".w.{name}.{uuid.uuid4().hex}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     _FILE_MODE)
        try:
            os.write(fd, str(epoch).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, os.path.join(self._epochs, name))
        _fsync_dir(self._epochs)

    def _sweep_now(self, named: set[str]) -> int:
        removed = 0
        for directory in (self._maps, self._objects, self._epochs):
            if not os.path.isdir(directory):
                continue
            for f in os.listdir(directory):
                if f.startswith(".w.") or (directory == self._objects and f not in named):
                    try:
                        os.unlink(os.path.join(directory, f))
                    except FileNotFoundError:
                        continue
                    removed += 1
            _fsync_dir(directory)
        # The floors of names whose objects outlive their map (a crash in
        # ``remove``, or a store from before floors were recorded).
        maps = set(self._listdir_now(self._maps))
        floors: dict[str, int] = {}
        for f in named:
            m = _OWNED_OBJECT.match(f)
            if m and m.group(1) not in maps:
                floors[m.group(1)] = max(floors.get(m.group(1), 0), int(m.group(2), 16) + 1)
        for name, epoch in floors.items():
            self._raise_floor_now(name, epoch)
        return removed

    def _names_now(self) -> list[str]:
        return sorted(n for n in self._listdir_now(self._maps) if _VOLUME_NAME.match(n))

    @staticmethod
    def _listdir_now(directory: str) -> list[str]:
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return []

    def _make_dirs_now(self) -> None:
        if self._made:
            return
        for d in (self.path, self._maps, self._objects):
            if not os.path.isdir(d):
                os.makedirs(d, mode=_DIR_MODE, exist_ok=True)
                _fsync_dir(os.path.dirname(d))
        self._made = True

    def _read_pointer_now(self, name: str) -> dict[str, Any]:
        try:
            with open(self._pointer(name), "rb") as f:
                pointer = json.loads(f.read())
        except FileNotFoundError:
            raise KeyError(name) from None
        if pointer.get("version") != _POINTER_VERSION:
            raise ValueError(f"volume {name}: unknown map pointer {pointer!r}")
        return dict(pointer)

    def _write_pointer_now(self, name: str, pointer: dict[str, Any],
                           exclusive: bool) -> None:
        self._make_dirs_now()
        path = self._pointer(name)
        temporary = os.path.join(self._maps, f".w.{name}.{uuid.uuid4().hex}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     _FILE_MODE)
        try:
            try:
                os.write(fd, json.dumps(pointer).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    raise FileExistsError(f"volume {name} exists") from None
            else:
                os.rename(temporary, path)
        finally:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
        _fsync_dir(self._maps)

    def _remove_pointer_now(self, name: str) -> None:
        os.unlink(self._pointer(name))
        _fsync_dir(self._maps)

    def _pread_now(self, name: str, offset: int, length: int) -> bytes:
        fd = os.open(self._object(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    def _pwrite_now(self, name: str, offset: int, data: memoryview) -> None:
        fd = os.open(self._object(name), os.O_WRONLY | os.O_CLOEXEC)
        try:
            while data:
                written = os.pwrite(fd, data, offset)
                data, offset = data[written:], offset + written
        finally:
            os.close(fd)

    def _create_object_now(self, name: str, base: bytes | None, start: int,
                           chunk: memoryview) -> None:
        """Make owned object ``name`` durable: ``base`` (zeros when None)
        with ``chunk`` at ``start``."""
        self._make_dirs_now()
        path = self._object(name)
        temporary = os.path.join(self._objects, f".w.{name}.{uuid.uuid4().hex}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     _FILE_MODE)
        try:
            try:
                if base is None:
                    os.ftruncate(fd, self.block_size)
                    body = chunk
                    at = start
                else:
                    patched = bytearray(base)
                    patched[start:start + len(chunk)] = chunk
                    body = memoryview(patched)
                    at = 0
                while body:
                    written = os.pwrite(fd, body, at)
                    body, at = body[written:], at + written
                os.fsync(fd)
            finally:
                os.close(fd)
            # Replaces what a crash may have left under this name unnamed
            # by any map (the copy-up made but never recorded).
            os.rename(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(self._objects)

    def _fsync_objects_now(self, names: list[str]) -> None:
        for name in names:
            try:
                fd = os.open(self._object(name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # dropped meanwhile
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _unlink_objects_now(self, names: list[str]) -> None:
        for name in names:
            try:
                os.unlink(self._object(name))
            except FileNotFoundError:
                continue
            self.counters.objects_dropped += 1
        if names:
            _fsync_dir(self._objects)


class OpenVolume:
    """An open volume (``snfd.archip.io.VolumeIO``)."""

    def __init__(self, store: VolumeStore, volume: _Volume, read_only: bool):
        self._store = store
        self._v = volume
        self.block_size = store.block_size
        self.read_only = read_only
        self.name = volume.name
        self._closed = False

    @property
    def size(self) -> int:
        """Bytes now (a volume may grow while open)."""
        return self._v.size

    async def read(self, offset: int, length: int) -> bytes:
        self._check_open()
        return await self._store._read(self._v, offset, length)

    async def write(self, offset: int, data: bytes) -> None:
        await self._locked(self._store._write, offset, data)

    async def flush(self) -> None:
        self._check_open()
        if not self.read_only:
            await self._store._flush(self._v)

    async def trim(self, offset: int, length: int) -> None:
        await self._locked(self._store._zero, offset, length, False)

    async def write_zeroes(self, offset: int, length: int) -> None:
        await self._locked(self._store._zero, offset, length, True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._store._close(self._v, not self.read_only)

    async def _locked(self, fn: Callable[..., Any], *args: Any) -> None:
        self._check_open()
        if self.read_only:
            raise PermissionError(f"volume {self.name} is open read-only")
        await self._v.lock.acquire()
        try:
            await fn(self._v, *args)
        finally:
            self._v.lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"volume {self.name} is closed")



if TYPE_CHECKING:
    def _conforms(store: VolumeStore, volume: OpenVolume) -> tuple[VolumeOpener, VolumeIO]:
        """mypy holds the store and its volumes to the NBD server's protocols."""
        return store, volume
