"""Where a volume store keeps what is not content: each volume's map
*pointer* and the *owned objects* volumes write in place.

A volume's maps are blocks of the node's block store (immutable and
content-addressed; see ``snfd.archip.volumes``).  What changes lives in a
*place* (``IVolumePlace``, the two halves ``IVolumePointers`` and
``IOwnedObjects``):

- a **pointer** per volume (``Pointer``): the blocks of its current map
  and the map's length, replaced atomically; and per volume name an
  **epoch floor**, the first epoch a new volume of that name may own
  objects under (kept after the volume is removed, while snapshots keep
  objects named under its older epochs);
- the **owned objects** ``<volume>_<epoch>_<index>``
  (``mapfile.owned_name``): mutable objects of ``block_size`` bytes that
  read as zeros where nothing was written.

Two places: ``FileVolumePlace`` (a directory, one node's; the default) and
``snfd.archip.rados_volumes.RadosVolumePlace`` (a RADOS pool that every
node shares).  A place that several nodes share needs what one node's
locks cannot give, so the contract carries it for every place:

- **compare-and-swap**: every change of a pointer names the ``Pointer``
  it was computed from, and fails with ``PointerChanged`` when the place's
  pointer is no longer that one (its ``version`` moved), instead of
  overwriting what another node did meanwhile;
- **the writer fence**: ``claim_now`` makes the caller the volume's
  writer under a new, higher ``fence``; from then on every change made
  under an older fence, of the pointer or of an owned object, fails with
  ``Fenced``.  A writer that froze, or lost its network, and carries on
  later cannot undo the newer writer's work.

A place of one node has nobody to race with: ``FileVolumePlace`` keeps
``version`` and ``fence`` at 0 and takes every change as given (the
store's per-volume locks serialise them on the node).

Every method ends in ``_now``: synchronous, safe to call from any thread,
meant for a thread pool and never the reactor.  ``copy_volumes`` copies
every volume from one place to another (the filesystem to RADOS).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zope.interface import Attribute, Interface, implementer

from snfd.archip import mapfile
from snfd.archip.io import VolumeBusy
from snfd.archip.mapfile import is_volume_name

_POINTER_VERSION = 1
_DIR_MODE = 0o700
_FILE_MODE = 0o600


class PointerChanged(VolumeBusy):
    """A pointer is not the one a change was computed from: another
    change came first (or the volume was removed).  Read it again."""


class Fenced(PointerChanged):
    """A newer writer holds the volume (a higher fence): this writer may
    change nothing of it any more.  The message names the newer writer."""


class FloorRaised(Exception):
    """A volume's name got a higher epoch floor than the new map's epoch
    (it was made and removed meanwhile): compute the epoch again."""


@dataclass(frozen=True)
class Pointer:
    """A volume's pointer as a place holds it.

    ``blocks`` are the block store's blocks of the encoded map in order,
    and ``length`` its bytes (the last block holds it zero-padded).
    ``version`` moves with every change of the pointer, ``fence`` with
    every ``claim_now``; ``writer`` is the holder of the writer claim
    (``""``: nobody).  A place of one node keeps the last three at their
    defaults.
    """

    blocks: tuple[str, ...]
    length: int
    version: int = 0
    fence: int = 0
    writer: str = ""


@dataclass
class SweepPlan:
    """What ``IOwnedObjects.begin_sweep_now`` found.

    ``removed`` counts the leftovers of interrupted writes it removed,
    ``present`` the owned objects that existed.  ``guards`` belong to the
    place: for each volume, what it read then (the fence its objects must
    not exceed to be removed, or None when a writer held the volume).
    """

    removed: int
    present: list[str]
    guards: dict[str, int | None] = field(default_factory=dict)


class IVolumePointers(Interface):
    """Volume pointers and epoch floors (see the module docstring)."""

    where = Attribute("What the place is, for messages: a directory, a pool.")

    def read_pointer_now(name):
        """Volume ``name``'s ``Pointer``.  @raise KeyError: no such volume."""

    def names_now():
        """Every volume that has a pointer, sorted."""

    def create_pointer_now(name, blocks, length, epoch):
        """Make volume ``name`` with a first pointer; the new ``Pointer``.

        ``epoch`` is the new map's epoch: it must not be below the name's
        floor (None: a map that owns no object under its name, which no
        floor concerns).  A name's fence continues from the volume of that
        name removed before, if any.
        @raise FileExistsError: the volume exists.
        @raise FloorRaised: ``epoch`` is below the floor (see there).
        """

    def replace_pointer_now(name, blocks, length, expected):
        """Make ``blocks``/``length`` volume ``name``'s pointer if the
        place's pointer is still ``expected`` (version and fence); the new
        ``Pointer``.  The blocks must be durable before this is called:
        after a crash the pointer is either the old one or the new one.
        @raise PointerChanged: it is not (``Fenced``: a newer writer).
        """

    def remove_pointer_now(name, expected, floor):
        """Remove volume ``name`` if its pointer is still ``expected``, and
        raise its name's floor to ``floor`` (0: leave the floor) in the
        same change, or before it.
        @raise PointerChanged: it is not.
        """

    def first_epoch_now(name):
        """The name's floor: the first epoch under which a new volume of
        that name owns no object yet (0 when none was recorded)."""

    def raise_floor_now(name, epoch):
        """Make the name's floor at least ``epoch``."""

    def floors_now():
        """``{name: floor}`` for every name whose floor is above 0."""

    def claim_now(name, holder, expected, owned):
        """Become volume ``name``'s writer: its fence raised by one, its
        writer ``holder``, if its pointer is still ``expected``; the new
        ``Pointer``.  When ``expected`` had a writer (one that may still be
        running somewhere), the objects of ``owned`` (those the volume
        writes in place) are fenced too before this returns: the old
        writer's writes to them fail from then on.
        @raise PointerChanged: the pointer is not ``expected``.
        """

    def release_now(name, expected):
        """Give up the writer claim of ``expected`` (the fence stays); the
        new ``Pointer``.  @raise PointerChanged: no longer ours."""


class IOwnedObjects(Interface):
    """The objects volumes own (see the module docstring)."""

    block_size = Attribute("Bytes of every owned object.")

    def read_object_now(name, offset, length):
        """``length`` bytes of object ``name`` from ``offset``, zeros past
        what was written.  @raise FileNotFoundError: no such object."""

    def write_object_now(name, offset, data, fence):
        """Write ``data`` at ``offset`` in existing object ``name`` on
        behalf of the writer of fence ``fence``.  Durable once
        ``flush_objects_now`` returned (or at once).
        @raise FileNotFoundError: no such object.
        @raise Fenced: the object belongs to a newer writer.
        """

    def create_object_now(name, base, start, chunk, fence):
        """Make object ``name`` durable with the content ``base`` (zeros
        when None) with ``chunk`` written at ``start``, replacing what a
        crash may have left under that name, before returning.
        @raise Fenced: an object of that name belongs to a newer writer.
        """

    def flush_objects_now(names):
        """Make every write to objects ``names`` that returned durable."""

    def remove_objects_now(names, fence):
        """Remove objects ``names``, sparing those a writer newer than
        ``fence`` wrote (None: whoever wrote them); how many were
        removed."""

    def object_names_now():
        """Every owned object there is, in no order."""

    def begin_sweep_now():
        """The first half of a start-up sweep: remove the leftovers of
        interrupted writes, list the objects and read what guards them;
        a ``SweepPlan``.  The caller then reads every map."""

    def finish_sweep_now(plan, named):
        """Remove the objects of ``plan`` that no map named (``named``,
        read after ``begin_sweep_now``), but none a writer may still be
        about to name; how many were removed."""


class IVolumePlace(IVolumePointers, IOwnedObjects):
    """A place for a volume store: pointers and owned objects."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@implementer(IVolumePlace)
class FileVolumePlace:
    """A directory (created by the first write): ``maps/<volume>`` holds
    the pointer as JSON (``{"version": 1, "length": ..., "blocks": [...]}``,
    ``version`` being the format's), replaced by a temporary file, fsync,
    rename and fsync of the directory; ``epochs/<volume>`` the floor, in
    decimal, where one was recorded; ``objects/<name>`` the owned objects,
    sparse files of ``block_size`` bytes made durable by fsync.  Names
    starting ``.w.`` are temporaries a crash may leave; the sweep removes
    them.  One node only: no versions, no fences (see the module
    docstring)."""

    def __init__(self, path: str | os.PathLike[str], block_size: int):
        self.path = os.path.abspath(os.fspath(path))
        self.block_size = block_size
        self.where = self.path
        self._maps = os.path.join(self.path, "maps")
        self._objects = os.path.join(self.path, "objects")
        self._epochs = os.path.join(self.path, "epochs")
        # Made by the first write (no I/O here: a node's services are
        # built, by snf-manage too, before anything starts).
        self._made = False

    # -- pointers ------------------------------------------------------------

    def read_pointer_now(self, name: str) -> Pointer:
        try:
            with open(self._pointer(name), "rb") as f:
                pointer = json.loads(f.read())
        except FileNotFoundError:
            raise KeyError(name) from None
        if pointer.get("version") != _POINTER_VERSION:
            raise ValueError(f"volume {name}: unknown map pointer {pointer!r}")
        return Pointer(tuple(pointer["blocks"]), pointer["length"])

    def names_now(self) -> list[str]:
        return sorted(n for n in self._listdir_now(self._maps) if is_volume_name(n))

    def create_pointer_now(self, name: str, blocks: tuple[str, ...], length: int,
                           epoch: int | None) -> Pointer:
        self._write_pointer_now(name, blocks, length, exclusive=True)
        return Pointer(tuple(blocks), length)

    def replace_pointer_now(self, name: str, blocks: tuple[str, ...], length: int,
                            expected: Pointer) -> Pointer:
        self._write_pointer_now(name, blocks, length, exclusive=False)
        return Pointer(tuple(blocks), length)

    def remove_pointer_now(self, name: str, expected: Pointer, floor: int) -> None:
        if floor:
            self.raise_floor_now(name, floor)
        os.unlink(self._pointer(name))
        _fsync_dir(self._maps)

    def first_epoch_now(self, name: str) -> int:
        """One small file read, whatever the number of objects."""
        try:
            with open(os.path.join(self._epochs, name), "rb") as f:
                return int(f.read().strip() or b"0")
        except FileNotFoundError:
            return 0

    def raise_floor_now(self, name: str, epoch: int) -> None:
        if epoch <= self.first_epoch_now(name):
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

    def floors_now(self) -> dict[str, int]:
        floors = {}
        for name in self._listdir_now(self._epochs):
            if not name.startswith(".w."):
                epoch = self.first_epoch_now(name)
                if epoch > 0:
                    floors[name] = epoch
        return floors

    def claim_now(self, name: str, holder: str, expected: Pointer,
                  owned: Iterable[str]) -> Pointer:
        return expected

    def release_now(self, name: str, expected: Pointer) -> Pointer:
        return expected

    # -- owned objects -------------------------------------------------------

    def read_object_now(self, name: str, offset: int, length: int) -> bytes:
        fd = os.open(self._object(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    def write_object_now(self, name: str, offset: int, data: memoryview | bytes,
                         fence: int) -> None:
        data = memoryview(data)
        fd = os.open(self._object(name), os.O_WRONLY | os.O_CLOEXEC)
        try:
            while data:
                written = os.pwrite(fd, data, offset)
                data, offset = data[written:], offset + written
        finally:
            os.close(fd)

    def create_object_now(self, name: str, base: bytes | None, start: int,
                          chunk: memoryview | bytes, fence: int) -> None:
        self._make_dirs_now()
        path = self._object(name)
        temporary = os.path.join(self._objects, f".w.{name}.{uuid.uuid4().hex}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     _FILE_MODE)
        try:
            try:
                if base is None:
                    os.ftruncate(fd, self.block_size)
                    body = memoryview(chunk)
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

    def flush_objects_now(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                fd = os.open(self._object(name), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # dropped meanwhile
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def remove_objects_now(self, names: Iterable[str], fence: int | None) -> int:
        names = list(names)
        removed = 0
        for name in names:
            try:
                os.unlink(self._object(name))
            except FileNotFoundError:
                continue
            removed += 1
        if names:
            _fsync_dir(self._objects)
        return removed

    def object_names_now(self) -> list[str]:
        return [f for f in self._listdir_now(self._objects) if not f.startswith(".w.")]

    def begin_sweep_now(self) -> SweepPlan:
        removed = 0
        for directory in (self._maps, self._objects, self._epochs):
            if not os.path.isdir(directory):
                continue
            for f in os.listdir(directory):
                if f.startswith(".w."):
                    try:
                        os.unlink(os.path.join(directory, f))
                    except FileNotFoundError:
                        continue
                    removed += 1
            _fsync_dir(directory)
        return SweepPlan(removed, self.object_names_now())

    def finish_sweep_now(self, plan: SweepPlan, named: set[str]) -> int:
        unnamed = [f for f in plan.present if f not in named]
        return self.remove_objects_now(unnamed, 0) if unnamed else 0

    # -- helpers ---------------------------------------------------------------

    def _pointer(self, name: str) -> str:
        return os.path.join(self._maps, name)

    def _object(self, name: str) -> str:
        if "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not an object name")
        return os.path.join(self._objects, name)

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

    def _write_pointer_now(self, name: str, blocks: Iterable[str], length: int,
                           exclusive: bool) -> None:
        self._make_dirs_now()
        pointer = {"version": _POINTER_VERSION, "length": length, "blocks": list(blocks)}
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


# -- copying volumes between places --------------------------------------------


@dataclass
class CopyReport:
    """What ``copy_volumes`` did.  ``conflicts`` name what it left alone
    because the target differs and ``replace_pointers`` was not given, or
    changed under it (each with why); the copy is complete when there are
    none."""

    pointers_copied: int = 0
    pointers_present: int = 0   # already there, the same
    pointers_removed: int = 0   # volumes the source no longer has (``prune``)
    objects_copied: int = 0
    objects_present: int = 0    # already there, the same bytes
    bytes_copied: int = 0
    floors: int = 0             # floors raised on the target
    conflicts: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.conflicts


def copy_volumes(source: Any, target: Any, *, replace_pointers: bool = False,
                 prune: bool | Collection[str] = False,
                 progress: Any = None) -> CopyReport:
    """Copy every volume of place ``source`` to place ``target`` (both
    ``IVolumePlace``, of the same ``block_size``): floors, owned objects,
    then pointers, so that the target never has a pointer naming an
    object it lacks.  Resumable: what the target already has, the same,
    is verified and left (an interrupted copy is run again); what it has
    otherwise is a conflict, reported and left, except pointers when
    ``replace_pointers`` (the source's win).  Verified: each owned object
    copied is read back and compared by SHA-256, each pointer by its
    content.  Synchronous (run it in a thread).  The copy is complete only
    from a still source (its node stopped); one made while the node writes
    is a first pass, which may copy objects being written torn and
    pointers naming objects it did not copy: the next copy makes them good
    (objects by hash, pointers with ``replace_pointers``).  The map blocks
    the pointers name are the block store's: copy the blocks first
    (``snf-manage pithos-migrate-blocks``).

    With ``prune``, the volumes the target has and the source has not
    (removed since an earlier copy) are removed from the target, their
    names' floors raised to the source's; the objects they owned are left
    to the start-up sweep of the node that uses the target (no map names
    them).  Meant with ``replace_pointers``, for the last copy: the target
    then has the source's volumes and no others.  When other sources copy
    into the same target (several nodes' directories into one pool),
    ``prune`` names the volumes that may go (those earlier copies from
    this source brought), and the others' are left.

    ``progress(kind, name)``, if given, is called after each object
    (``"object"``), pointer (``"pointer"``) and pointer removed
    (``"removed"``).
    """
    if source.block_size != target.block_size:
        raise ValueError(f"objects of {source.block_size} bytes cannot move to a place"
                         f" of {target.block_size}")
    report = CopyReport()
    size = source.block_size
    floors = source.floors_now()
    for name, floor in sorted(floors.items()):
        if target.first_epoch_now(name) < floor:
            target.raise_floor_now(name, floor)
            report.floors += 1
    for name in sorted(source.object_names_now()):
        try:
            data = source.read_object_now(name, 0, size)
        except FileNotFoundError:
            continue  # removed meanwhile (a source still in use)
        digest = hashlib.sha256(data).digest()
        try:
            there = hashlib.sha256(target.read_object_now(name, 0, size)).digest()
        except FileNotFoundError:
            there = None
        if there == digest:
            report.objects_present += 1
        else:
            try:
                target.create_object_now(name, data, 0, b"", 0)
            except Fenced as e:
                report.conflicts.append(f"object {name}: {e}")
                continue
            if hashlib.sha256(target.read_object_now(name, 0, size)).digest() != digest:
                raise OSError(f"{target.where}: object {name} reads back other bytes"
                              " than were copied")
            report.objects_copied += 1
            report.bytes_copied += len(data)
        if progress is not None:
            progress("object", name)
    names = source.names_now()
    for name in names:
        try:
            pointer = source.read_pointer_now(name)
        except KeyError:
            continue  # removed meanwhile (a source still in use)
        try:
            there = target.read_pointer_now(name)
        except KeyError:
            there = None
        if there is not None and _same(there, pointer):
            report.pointers_present += 1
        elif there is not None and not replace_pointers:
            report.conflicts.append(f"volume {name}: the target's map differs")
            continue
        else:
            if there is None:
                target.create_pointer_now(name, pointer.blocks, pointer.length, None)
            else:
                target.replace_pointer_now(name, pointer.blocks, pointer.length, there)
            if not _same(target.read_pointer_now(name), pointer):
                raise OSError(f"{target.where}: volume {name}'s pointer reads back"
                              " otherwise than it was copied")
            report.pointers_copied += 1
        if progress is not None:
            progress("pointer", name)
    if prune:
        kept = set(names)
        only = None if prune is True else set(prune)
        for name in target.names_now():
            if name in kept or (only is not None and name not in only):
                continue
            try:
                there = target.read_pointer_now(name)
                target.remove_pointer_now(name, there, floors.get(name, 0))
            except KeyError:
                continue  # removed meanwhile
            except PointerChanged as e:
                report.conflicts.append(f"volume {name}: not removed: {e}")
                continue
            report.pointers_removed += 1
            if progress is not None:
                progress("removed", name)
    return report


def _same(a: Pointer, b: Pointer) -> bool:
    return tuple(a.blocks) == tuple(b.blocks) and a.length == b.length


#: How many block names one ``missing_now`` call asks about at most.
_CHECK_BATCH = 1000


def blocks_missing(place: Any, stores: Sequence[Any],
                   names: Iterable[str]) -> dict[str, list[str]]:
    """For each of the volumes ``names`` of ``place``, the blocks its map
    needs that none of the block ``stores`` has (a store and its
    ``block_fallback``): the map's own blocks, or, when those are all
    there, the content-addressed objects its entries name (the zero object
    never is; owned objects are the place's).  Only volumes that lack
    something are in the answer; a volume the place no longer has is
    skipped.  For a node about to read ``place`` through those stores
    (``archip-migrate-volumes``: the blocks are copied first).

    Synchronous (``missing_now``, ``get_now``: run it in a thread).  A
    block found has its age refreshed, as any ``missing`` does, which only
    delays its collection; a block shared by many maps (an image's) is
    asked about once.
    """
    present: set[str] = set()
    out: dict[str, list[str]] = {}

    def lacking(wanted: Iterable[str]) -> list[str]:
        absent = [n for n in dict.fromkeys(wanted) if n not in present]
        for store in stores:
            still: list[str] = []
            for i in range(0, len(absent), _CHECK_BATCH):
                still.extend(store.missing_now(absent[i:i + _CHECK_BATCH]))
            present.update(set(absent) - set(still))
            absent = still
        return absent

    def read(block: str) -> bytes:
        """The block from the first store that has it; KeyError: none."""
        for store in stores:
            try:
                data: bytes = store.get_now(block)
                return data
            except KeyError:
                continue
        raise KeyError(block)

    for name in names:
        try:
            pointer = place.read_pointer_now(name)
        except KeyError:
            continue
        absent = lacking(pointer.blocks)
        if not absent:
            try:
                data = b"".join(read(b) for b in pointer.blocks)
            except KeyError as e:   # collected since it was found
                absent = [str(e.args[0])]
            else:
                entries = mapfile.decode(data[:pointer.length]).entries
                absent = lacking(e.name for e in entries if not e.archip and not e.is_zero)
        if absent:
            out[name] = absent
    return out


__all__ = ["CopyReport", "Fenced", "FileVolumePlace", "FloorRaised", "IOwnedObjects",
           "IVolumePlace", "IVolumePointers", "Pointer", "PointerChanged", "SweepPlan",
           "blocks_missing", "copy_volumes"]
