"""Thin copy-on-write volumes over the node's block store (Archipelago).

A volume is a map (``snfd.archip.mapfile.MapV2``): one entry per 4 MiB
object, naming either a block of the content-addressed store (an image's
Pithos blocks, read-only), the zero object (no data), or an object the
volume owns (``ARCHIP``; ``WRITABLE`` until a snapshot freezes it).

Where things live:

- **maps**: each version of a map is encoded (v2) and stored as blocks of
  the block store, beside the data (a map is content too, and a map
  unchanged by a write costs nothing to store again).  The block store is
  immutable, so each volume has a small mutable *pointer* naming the
  blocks of its current map and their length.  A pointer is replaced
  atomically and only after the blocks it names are durable, so a crash
  leaves either the old map or the new one.
- **owned objects**: mutable data cannot be content-addressed, so an
  object a volume owns is an object ``<volume>_<epoch>_<index>`` (the
  reference's naming, ``mapfile.owned_name``) of ``block_size`` bytes.

Pointers and owned objects are kept by a *place* (``snfd.archip.place``):
a directory of the node (``FileVolumePlace``: ``maps/<volume>`` and
``objects/<name>`` files; the default) or a RADOS pool every node shares
(``snfd.archip.rados_volumes``).

Copy-on-write: the first write to an object that is not ``WRITABLE``
creates the volume's own object (a copy of the whole origin object with
the write applied; for the zero object, no copy: zeros plus the write),
makes it durable, then saves the map, and only then returns.  A stored map
therefore never names an object that does not exist.  Writes into an
object the volume already owns go straight to it and are durable once
``flush`` returns.  Whole objects trimmed or zeroed become the zero
object; an object only this volume referenced is removed after the map no
longer names it.

Snapshot: the volume's map is saved first with every entry no longer
writable and a new epoch (later writes copy up into new names), then the
snapshot's map, read-only (``MAP_READONLY``), with the same entries.
Clones start from a read-only map (a snapshot, or a Pithos hashmap) so no
origin ever changes under a clone.

One writer per volume per node (``VolumeBusy``); any number of readers,
which share the writer's live map and so see its writes.  Every blocking
call runs in the thread pool.

Several nodes (a shared place): every pointer change is a
compare-and-swap on the pointer the change was computed from
(``PointerChanged``, a ``VolumeBusy``): management calls (snapshot, grow,
export, remove) then read the pointer again and retry, or refuse when
what they would change is no longer allowed.  A writable open takes the
volume's *writer fence* (``IVolumePointers.claim_now``): the last node to
open a volume for writing is its writer, and an earlier writer on another
node is fenced out (its writes, copy-ups and map saves fail with
``Fenced``), which is what a failover needs, since a node that died
cannot say so.  While another node holds the claim, this node's snapshot,
grow and remove of that volume are ``VolumeBusy`` (naming the holder); a
claim left by a crash is taken over by the next writable open, or
released by the start-up sweep of the node that held it.  Readers on
another node than the writer's see the map as it was when they opened
the volume.

Garbage collection: ``referenced`` says which blocks of the block store
live maps need (their own map blocks and the shared objects they name);
the volume service registers it with the storage service's
``IBlockReferences``.  A clone refreshes its origin's blocks before its
map names them, and a map's blocks are stored (so refreshed) before its
pointer names them: a collection under way spares both.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import DeferredLock
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from snfd.archip import mapfile
from snfd.archip.io import VolumeBusy, VolumeIO, VolumeOpener
from snfd.archip.mapfile import ARCHIP, MAP_READONLY, WRITABLE, Entry, MapV2
from snfd.archip.place import (
    Fenced,
    FileVolumePlace,
    FloorRaised,
    IVolumePlace,
    Pointer,
    PointerChanged,
)
from snfd.interfaces import IBlockFallback, IBlockStore

__all__ = ["Counters", "Fenced", "OpenVolume", "OriginIncomplete", "PointerChanged",
           "VolumeBusy", "VolumeStore"]

log = Logger(namespace="snfd.archip.volumes")

T = TypeVar("T")

# Content-addressed blocks kept in memory for reads smaller than a block
# (they never change, so a cached one is never stale).
_CACHED_BLOCKS = 4
# Tries of a management call that lost compare-and-swap races to other
# nodes before it gives up with VolumeBusy.
_ATTEMPTS = 8


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
    #: The pointer of ``entries`` in the place (its version and fence).
    pointer: Pointer = field(default_factory=lambda: Pointer((), 0))
    #: Why this node may not write it any more (a newer writer elsewhere).
    fenced: str = ""

    def as_map(self) -> MapV2:
        return MapV2(self.size, self.block_size, tuple(self.entries),
                     self.flags, self.epoch)

    def show(self, pointer: Pointer, m: MapV2) -> None:
        """Take the place's newer map."""
        self.size, self.flags, self.epoch = m.size, m.flags, m.epoch
        self.entries = list(m.entries)
        self.pointer = pointer


def _owner(object_name: str) -> str | None:
    owner = mapfile.owner_of(object_name)
    return owner[0] if owner is not None else None


def _check_name(name: str) -> None:
    if not mapfile.is_volume_name(name) or len(name) > mapfile.MAX_VOLUME_NAME:
        raise ValueError(f"volume name {name!r}: 1 to {mapfile.MAX_VOLUME_NAME}"
                         " letters, digits, '.', '_' or '-', not starting"
                         " with a punctuation mark")


class VolumeStore:
    """Volumes kept in ``place``, their maps and shared data in ``blocks``.

    @param place: an ``IVolumePlace``, or a directory's path (made a
        ``FileVolumePlace``; created if absent).
    @param blocks: the node's ``IBlockStore``; its block size is the
        volumes' object size (and the place's).
    @param reactor: the reactor whose thread pool runs the place's I/O.
    @param threadpool: the pool to use (default: the reactor's own).
    @param node: this node's name (default: the host's), part of the
        writer claims this store takes in a shared place: the claim's
        holder is ``"<node> <token of this store>"``.
    """

    def __init__(self, place: str | os.PathLike[str] | IVolumePlace, blocks: IBlockStore,
                 reactor: Any, threadpool: Any = None, *, node: str = ""):
        self.blocks = blocks
        self.block_size: int = blocks.block_size
        if isinstance(place, (str, os.PathLike)):
            place = FileVolumePlace(place, self.block_size)
        if place.block_size != self.block_size:
            raise ValueError(f"{place.where} keeps objects of {place.block_size} bytes,"
                             f" the block store blocks of {self.block_size}")
        self.place: IVolumePlace = place
        #: Where pointers and owned objects are, for messages.
        self.where: str = place.where
        self.node = node or socket.gethostname()
        #: Who this store's writer claims name.
        self.holder = f"{self.node} {secrets.token_hex(6)}"
        self.counters = Counters()
        self._reactor = reactor
        self._threadpool = threadpool
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
        return await self._make(name, lambda epoch: MapV2.empty(size, self.block_size,
                                                                epoch=epoch))

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
        return await self._make(name, lambda epoch: MapV2(size, self.block_size, entries,
                                                          0, epoch))

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
            for _ in range(_ATTEMPTS):
                try:
                    pointer: Pointer | None
                    pointer, old = await self._load(name)
                except KeyError:
                    pointer = old = None
                if old is not None and not old.read_only:
                    raise FileExistsError(f"volume {name} exists and is not an export")
                try:
                    await self._save(name, origin, pointer, floor=False)
                except (PointerChanged, FileExistsError):
                    continue  # changed by another node meanwhile: look again
                return origin
            raise self._restless(name)
        finally:
            lock.release()

    async def snapshot(self, name: str, snap_name: str) -> MapV2:
        """Freeze volume ``name`` as the new read-only volume ``snap_name``
        (its map, returned); later writes to ``name`` copy up into objects of
        a new epoch.  Works while ``name`` is open (here: ``VolumeBusy``
        while another node writes it)."""
        _check_name(snap_name)
        lock = self._lock(name)
        await lock.acquire()
        try:
            for _ in range(_ATTEMPTS):
                if await self._exists(snap_name):
                    raise FileExistsError(f"volume {snap_name} exists")
                live, pointer, current = await self._current(name)
                if current.read_only:
                    raise ValueError(f"volume {name} is read-only")
                if live is not None:
                    await self._flush(live)
                frozen = tuple(e.frozen() for e in current.entries)
                # The volume first: once its objects are frozen no write can
                # change what the snapshot is about to name.
                after = MapV2(current.size, current.block_size, frozen, current.flags,
                              current.epoch + 1)
                try:
                    saved = await self._save(name, after, pointer)
                except PointerChanged as e:
                    self._lost(live, e)
                    continue
                if live is not None:
                    live.show(saved, after)
                snap = MapV2(current.size, current.block_size, frozen,
                             current.flags | MAP_READONLY, current.epoch)
                await self._save(snap_name, snap, None, floor=False)
                return snap
            raise self._restless(name)
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
            for _ in range(_ATTEMPTS):
                live, pointer, current = await self._current(name)
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
                try:
                    saved = await self._save(name, grown, pointer)
                except PointerChanged as e:
                    self._lost(live, e)
                    continue
                if live is not None:
                    live.show(saved, grown)
                return grown
            raise self._restless(name)
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
                data = await self._in_thread(self.place.read_object_now, e.name, 0, length)
                [stored] = await self.blocks.put([data])
                hashes.append(stored)
        return m.size, hashes

    async def remove(self, name: str) -> None:
        """Delete volume ``name`` and the objects it owns that no other map
        names; ``KeyError`` when absent, ``VolumeBusy`` while open (here,
        or for writing on another node)."""
        _check_name(name)
        lock = self._lock(name)
        await lock.acquire()
        try:
            if name in self._live:
                raise VolumeBusy(f"volume {name} is open")
            for _ in range(_ATTEMPTS):
                pointer, m = await self._load(name)
                self._check_unclaimed(name, pointer)
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
                # Snapshots keep some of its objects: a new volume of this
                # name must own objects under later epochs (recorded before
                # the map goes, or with it, so a crash cannot lose it).
                floor = m.epoch + 1 if unnamed != owned else 0
                try:
                    await self._in_thread(self.place.remove_pointer_now, name, pointer, floor)
                except PointerChanged:
                    continue  # changed by another node meanwhile: look again
                # Its own objects are spared if a newer volume of this name
                # made them again (a higher fence); others' objects (a
                # snapshot's) are frozen, and frozen names are never reused.
                own = sorted(o for o in unnamed if _owner(o) == name)
                others = sorted(o for o in unnamed if _owner(o) != name)
                for objects, fence in ((own, pointer.fence), (others, None)):
                    if objects:
                        self.counters.objects_dropped += await self._in_thread(
                            self.place.remove_objects_now, objects, fence)
                return
            raise self._restless(name)
        finally:
            lock.release()

    async def names(self) -> list[str]:
        """Every volume and snapshot, sorted."""
        return await self._in_thread(self.place.names_now)

    async def info(self, name: str) -> MapV2:
        """Volume ``name``'s current map; ``KeyError`` when absent."""
        _check_name(name)
        live = self._live.get(name)
        if live is not None:
            return live.as_map()
        return (await self._load(name))[1]

    async def referenced(self) -> set[str]:
        """The block names live maps need: their own blocks and the
        content-addressed objects they name (what garbage collection must
        spare)."""
        out: set[str] = set()
        for name in await self.names():
            try:
                pointer, m = await self._load(name)
            except KeyError:
                continue
            out.update(pointer.blocks)
            out.update(e.name for e in m.entries if not e.archip and not e.is_zero)
        return out

    async def open(self, name: str, writable: bool) -> OpenVolume:
        """Open volume ``name`` (``VolumeOpener``).  A snapshot opens
        read-only whatever ``writable`` says.  Writable, it takes the
        volume's writer claim in the place (fencing out a writer on
        another node)."""
        _check_name(name)
        lock = self._lock(name)
        await lock.acquire()
        try:
            live = self._live.get(name)
            if live is None:
                pointer, m = await self._load(name)
                live = _Volume(name, m.size, m.block_size, m.flags, m.epoch,
                               list(m.entries), lock, pointer=pointer)
            writable = writable and not live.flags & MAP_READONLY
            if writable and live.writer:
                raise VolumeBusy(f"volume {name} is open for writing")
            if writable:
                await self._claim(live)
            self._live[name] = live
            live.handles += 1
            live.writer = live.writer or writable
            return OpenVolume(self, live, read_only=not writable)
        finally:
            lock.release()

    async def sweep(self) -> int:
        """Remove what a crash left behind: temporary files, and owned
        objects no map names (a copy-up made but never recorded), sparing
        those of volumes another node is writing; release the writer
        claims an earlier run of this node left.  Run while no volume is
        open here (at startup); returns how many objects and files it
        removed."""
        if self._live:
            raise VolumeBusy("volumes are open: " + ", ".join(sorted(self._live)))
        for name in await self.names():
            await self._release_stale_claim(name)
        plan = await self._in_thread(self.place.begin_sweep_now)
        # The maps are read after the objects were listed: an object
        # listed then is either named now or no map will name it (the
        # place's guards spare what a writer may be about to name).
        named: set[str] = set()
        maps: set[str] = set()
        for name in await self.names():
            try:
                _, m = await self._load(name)
            except KeyError:
                continue
            maps.add(name)
            named.update(e.name for e in m.entries if e.archip)
        removed: int = plan.removed + await self._in_thread(
            self.place.finish_sweep_now, plan, named)
        # The floors of names whose objects outlive their map (a crash in
        # ``remove``, or a store from before floors were recorded).
        floors: dict[str, int] = {}
        for object_name in named:
            owner = mapfile.owner_of(object_name)
            if owner is not None and owner[0] not in maps:
                floors[owner[0]] = max(floors.get(owner[0], 0), owner[1] + 1)
        for name, epoch in floors.items():
            await self._in_thread(self.place.raise_floor_now, name, epoch)
        return removed

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
                return await self._in_thread(self.place.read_object_now, e.name, start, count)
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
            await self._save_live(v)

    async def _write_piece(self, v: _Volume, index: int, start: int,
                           chunk: memoryview) -> bool:
        """Write into object ``index``; whether the map changed (then the
        caller saves it before acknowledging)."""
        e = v.entries[index]
        if e.writable:
            await self._in_thread(self.place.write_object_now, e.name, start, chunk,
                                  v.pointer.fence)
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
            base = await self._in_thread(self.place.read_object_now, e.name, 0,
                                         self.block_size)
        else:
            base = await self._block(e.name)
        if base is not None:
            self.counters.copy_ups += 1
            self.counters.bytes_copied += self.block_size
        await self._in_thread(self.place.create_object_now, new, base, start, chunk,
                              v.pointer.fence)
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
            await self._save_live(v)
        if dropped:
            v.dirty.difference_update(dropped)
            self.counters.objects_dropped += await self._in_thread(
                self.place.remove_objects_now, dropped, v.pointer.fence)

    async def _flush(self, v: _Volume) -> None:
        dirty = sorted(v.dirty)
        v.dirty.difference_update(dirty)
        await self._in_thread(self.place.flush_objects_now, dirty)

    async def _close(self, v: _Volume, writer: bool) -> None:
        await v.lock.acquire()
        try:
            if writer:
                await self._flush(v)
                v.writer = False
                if not v.fenced:
                    try:
                        v.pointer = await self._in_thread(self.place.release_now, v.name,
                                                          v.pointer)
                    except (VolumeBusy, KeyError, OSError) as e:
                        # Taken over, removed, or the place not answering:
                        # the next writable open takes the claim over.
                        log.warn("volume {name}: its writer claim was not released: {e}",
                                 name=v.name, e=e)
            v.handles -= 1
            if v.handles == 0:
                self._live.pop(v.name, None)
        finally:
            v.lock.release()

    async def _writing(self, v: _Volume, fn: Callable[..., Awaitable[None]],
                       *args: Any) -> None:
        """Run a change of the writer's (``fn(v, *args)``), under the
        volume's lock; a fenced writer changes nothing any more."""
        await v.lock.acquire()
        try:
            if v.fenced:
                raise Fenced(v.fenced)
            try:
                await fn(v, *args)
            except Fenced as e:
                v.fenced = str(e)
                raise
        finally:
            v.lock.release()

    # -- maps ----------------------------------------------------------------

    async def _make(self, name: str, build: Callable[[int], MapV2]) -> MapV2:
        """Save the new volume ``build(epoch)`` makes, under an epoch at
        or after the name's floor."""
        for _ in range(_ATTEMPTS):
            epoch = await self._in_thread(self.place.first_epoch_now, name)
            m = build(epoch)
            try:
                await self._save(name, m, None)
            except FloorRaised:
                continue  # the name was used and given up meanwhile
            return m
        raise self._restless(name)

    async def _save(self, name: str, m: MapV2, expected: Pointer | None,
                    floor: bool = True) -> Pointer:
        """Store map ``m`` and point volume ``name`` at it: a new volume when
        ``expected`` is None (its epoch checked against the name's floor
        unless ``floor`` is false), else in place of ``expected``."""
        # A large volume's map is megabytes: encode it off the reactor.
        data = await self._in_thread(mapfile.encode, m)
        chunks = [data[i:i + self.block_size]
                  for i in range(0, len(data), self.block_size)]
        names = tuple(await self.blocks.put(chunks))
        if expected is None:
            pointer = await self._in_thread(self.place.create_pointer_now, name, names,
                                            len(data), m.epoch if floor else None)
        else:
            pointer = await self._in_thread(self.place.replace_pointer_now, name, names,
                                            len(data), expected)
        self.counters.map_saves += 1
        result: Pointer = pointer
        return result

    async def _save_live(self, v: _Volume) -> None:
        """Save the writer's live map; ``Fenced`` when the place's pointer
        moved (only a newer writer can move it while this one holds the
        claim)."""
        try:
            v.pointer = await self._save(v.name, v.as_map(), v.pointer)
        except PointerChanged as e:
            raise e if isinstance(e, Fenced) else Fenced(
                f"volume {v.name} was changed by another writer: {e}") from None

    async def _load(self, name: str) -> tuple[Pointer, MapV2]:
        pointer: Pointer = await self._in_thread(self.place.read_pointer_now, name)
        parts = [await self.blocks.get(b) for b in pointer.blocks]
        data = b"".join(parts)[:pointer.length]
        return pointer, await self._in_thread(mapfile.decode, data)

    async def _exists(self, name: str) -> bool:
        try:
            await self._in_thread(self.place.read_pointer_now, name)
        except KeyError:
            return False
        return True

    async def _current(self, name: str) -> tuple[_Volume | None, Pointer, MapV2]:
        """The live volume (if open here), the pointer and the map a change
        of ``name`` starts from: the writer's live map when this node
        writes it, else the place's (another node may have changed it
        since it was opened here).  ``VolumeBusy`` while another node
        holds the writer claim."""
        live = self._live.get(name)
        if live is not None and live.writer:
            if live.fenced:
                raise Fenced(live.fenced)
            return live, live.pointer, live.as_map()
        pointer, m = await self._load(name)
        self._check_unclaimed(name, pointer)
        return live, pointer, m

    def _check_unclaimed(self, name: str, pointer: Pointer) -> None:
        if pointer.writer and pointer.writer != self.holder:
            raise VolumeBusy(f"volume {name} is open for writing on {pointer.writer}")

    def _lost(self, live: _Volume | None, error: PointerChanged) -> None:
        """A change lost a race: try again, unless this node is the
        writer, whom only a newer writer could have overtaken."""
        if live is not None and live.writer:
            live.fenced = str(error)
            raise error if isinstance(error, Fenced) else Fenced(str(error))

    def _restless(self, name: str) -> VolumeBusy:
        return VolumeBusy(f"volume {name} kept changing on other nodes; try again")

    async def _claim(self, live: _Volume) -> None:
        """Take the writer claim of ``live``'s volume (and its map as the
        claim found it)."""
        for _ in range(_ATTEMPTS):
            owned = [e.name for e in live.entries if e.writable]
            try:
                live.pointer = await self._in_thread(self.place.claim_now, live.name,
                                                     self.holder, live.pointer, owned)
            except PointerChanged:
                pointer, m = await self._load(live.name)
                live.show(pointer, m)
                continue
            live.fenced = ""
            return
        raise self._restless(live.name)

    async def _release_stale_claim(self, name: str) -> None:
        """Release the claim an earlier run of this node left on ``name``
        (taken over first: a process of that run may still be writing)."""
        try:
            pointer = await self._in_thread(self.place.read_pointer_now, name)
        except KeyError:
            return
        left = pointer.writer
        node, _, _ = left.rpartition(" ")
        if node != self.node or left == self.holder:
            return
        try:
            pointer, m = await self._load(name)
            owned = [e.name for e in m.entries if e.writable]
            pointer = await self._in_thread(self.place.claim_now, name, self.holder,
                                            pointer, owned)
            await self._in_thread(self.place.release_now, name, pointer)
        except (KeyError, VolumeBusy):
            return  # removed or taken meanwhile: not ours to release
        log.info("volume {name}: released the writer claim {writer} left",
                 name=name, writer=left)

    async def _refresh(self, m: MapV2) -> None:
        shared = list(dict.fromkeys(e.name for e in m.entries
                                    if not e.archip and not e.is_zero))
        if shared:
            gone = await self.blocks.missing(shared)
            if gone and IBlockFallback.providedBy(self.blocks):
                # Blocks being moved to a new store: an image's still in
                # the old one come over first, as a new version's do.
                gone = await self.blocks.bring(gone)
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

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> Any:
        pool = self._threadpool if self._threadpool is not None else self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, fn, *args)


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
        await self._store._writing(self._v, fn, *args)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"volume {self.name} is closed")



if TYPE_CHECKING:
    def _conforms(store: VolumeStore, volume: OpenVolume) -> tuple[VolumeOpener, VolumeIO]:
        """mypy holds the store and its volumes to the NBD server's protocols."""
        return store, volume
