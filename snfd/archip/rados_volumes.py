"""Volume pointers and owned objects on a Ceph RADOS pool that every node
shares (``IVolumePlace``).

Configured by ``[archip] volume_store = rados`` (``rados_pool``,
``rados_namespace``; the connection as ``[pithos]`` has it, which must
keep its blocks on RADOS too: the maps are blocks).  Needs the ``rados``
module of Debian's ``python3-rados`` (imported when a place is opened).

Layout, in a replicated pool (an erasure-coded one has no omap), in two
RADOS namespaces made from the configured one, ``N``:

- ``N.maps``: one object per volume, named as the volume, holding its
  pointer as omap entries and no data: ``blocks`` (the names of the map's
  blocks, space-separated), ``length`` (the map's bytes), ``version``
  (moved by every change), ``fence`` (raised by every writable open),
  ``writer`` (who holds the writer claim, or empty) and ``floor`` (the
  name's epoch floor).  Numbers are 16 decimal digits, so that the OSD's
  string comparison is a comparison of numbers.  A removed volume's object
  stays without ``blocks`` and ``length`` (a few bytes): it keeps the
  name's fence and floor for the next volume of that name, so that a fence
  never goes back and an old writer or a sweep can never take a newer
  volume's objects for its own.
- ``N.objects``: the owned objects ``<volume>_<epoch>_<index>`` as today,
  each of ``block_size`` bytes (trailing zeros not stored: a read past
  them gives zeros) and the omap entry ``fence``: the fence of the writer
  that made it, or of the newer one that took it over.

Every change is one compound operation, which the OSD applies atomically
and serialises per object:

- a pointer change compares ``version`` and ``fence`` with the pointer
  it was computed from (``omap_cmp`` EQ) and sets the new entries with a
  new ``version``: a change computed from an older pointer fails with
  ``ECANCELED`` (``PointerChanged``, or ``Fenced`` when the fence moved),
  and nothing is overwritten;
- a writable open (``claim_now``) is such a change: ``fence`` + 1 and
  ``writer``.  When the pointer had a writer (one that may still run),
  the claim then raises the ``fence`` entry of every object the volume
  writes in place before the new writer starts;
- a write to an owned object is "``fence`` <= mine" (``omap_cmp`` LT
  mine + 1) then the write; making one is an exclusive create with the
  data and ``fence``, or, if the name exists (what a crash left), the same
  compare then the whole content; removing one is the compare then the
  removal.

What fences a stale writer, and why that token.  A writer that froze (a
stopped process, a lost network) may wake after its volume was opened
for writing on another node, and must then change nothing.  The token is
the volume's own *writer fence*, kept in the volume's object and raised
by compare-and-swap on each writable open.  Not a lock's duration: the
Python binding's durations are erratic (a 2 s lock taken over after
1.4 s, measured) and a lock that expired does not stop its holder's
writes anyway.  Not the cluster's leader epoch: it orders leaders, and
the nodes that write volumes are not leaders and share one epoch; a
leader change says nothing about who writes volume X.  Not the map's
epoch either: it names owned objects and moves only with snapshots, so
two writers on two nodes would hold the same one.  The writer fence is
compared by the OSDs themselves in every change the old writer could make
(its map saves by ``fence`` and ``version``, its writes and copy-ups by
each object's ``fence``), and a takeover raises each object's ``fence``
before the new writer uses it: from then on the old writer's operations
fail with ``ECANCELED`` whatever its clock or its view of the cluster.
An old writer's copy-up into a new name is refused later, at its map
save; the object it made is an orphan that the sweep removes.

``mtime`` is always passed (the binding's default is 1970).  A write is
acknowledged by the OSDs once it is on every replica's disk: durable, so
``flush_objects_now`` has nothing to do.

Threads: every ``_now`` method is synchronous and may be called from any
thread; a batch (fencing a volume's objects, removing objects, reading
every pointer) keeps up to ``window`` operations in flight with librados'
asynchronous calls.  A cluster that does not answer within ``op_timeout``
seconds fails the operation (``OSError``, ``ETIMEDOUT``), after which the
newest OSD map is fetched (librados learns of a restarted OSD lazily).
"""

from __future__ import annotations

import errno
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from twisted.logger import Logger
from zope.interface import implementer

from snfd.archip.io import VolumeBusy
from snfd.archip.mapfile import is_volume_name, owner_of
from snfd.archip.place import (
    Fenced,
    FloorRaised,
    IVolumePlace,
    Pointer,
    PointerChanged,
    SweepPlan,
)
from snfd.pithos.rados_blocks import RadosUnavailable, connect, import_rados, write_batch

log = Logger(namespace="snfd.archip.rados_volumes")

VERSION = "version"
FENCE = "fence"
WRITER = "writer"
FLOOR = "floor"
BLOCKS = "blocks"
LENGTH = "length"
_POINTER_KEYS = (VERSION, FENCE, WRITER, FLOOR, BLOCKS, LENGTH)
# Tries of an operation that lost races (a pointer made, removed and made
# again meanwhile) before it gives up with VolumeBusy.
_ATTEMPTS = 16


F = TypeVar("F", bound=Callable[..., Any])


def _in_use(method: F) -> F:
    """Count the call as an operation under way (see ``close``)."""
    @functools.wraps(method)
    def counted(self: RadosVolumePlace, *args: Any, **kwargs: Any) -> Any:
        with self._users:
            if not self._open:
                raise OSError(errno.EBADF, f"{self.where}: closed")
            self._busy += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            with self._users:
                self._busy -= 1
                if not self._busy:
                    self._users.notify_all()
    return counted  # type: ignore[return-value]


def _n(value: int) -> str:
    """A number as the omap holds it (16 digits: ordered as strings)."""
    return f"{value:016d}"


def namespaces(namespace: str) -> tuple[str, str]:
    """The RADOS namespaces of the pointers and of the owned objects of a
    place configured with ``namespace``."""
    prefix = f"{namespace}." if namespace else ""
    return f"{prefix}maps", f"{prefix}objects"


@implementer(IVolumePlace)
class RadosVolumePlace:
    """Pointers and owned objects in a RADOS pool (see the module docstring).

    @param maps: an open ``rados.Ioctx`` on the pool, in the pointers'
        namespace; @param objects: the same in the owned objects' one.
        ``open_place`` makes both from the configuration.
    @param block_size: the bytes of an owned object.
    @param window: operations in flight at most, per batch.
    @param cluster: the ``rados.Rados`` handle, shut down by ``close``
        (when the place opened it).
    """

    def __init__(self, maps: Any, objects: Any, *, block_size: int, window: int = 8,
                 rados: Any = None, cluster: Any = None, reactor: Any = None):
        self._rados = rados or import_rados()
        self._maps = maps
        self._objects = objects
        self._cluster = cluster
        self.block_size = block_size
        self.window = window
        self.where = (f"rados pool {maps.get_pool_name()} (namespaces"
                      f" {maps.get_namespace()!r} and {objects.get_namespace()!r})")
        self._open = True
        # Operations under way: close waits for them (librados crashes on
        # an operation of a closed pool).
        self._users = threading.Condition()
        self._busy = 0
        if reactor is not None:
            reactor.addSystemEventTrigger("during", "shutdown", self.close)

    def close(self, timeout: float = 60.0) -> None:
        """Close the pool (and the cluster handle, if the place opened it)
        once the operations under way ended; later ones fail (``EBADF``)."""
        with self._users:
            if not self._open:
                return
            self._open = False
            self._users.wait_for(lambda: self._busy == 0, timeout)
        self._maps.close()
        self._objects.close()
        if self._cluster is not None:
            self._cluster.shutdown()

    # -- pointers ------------------------------------------------------------

    @_in_use
    def read_pointer_now(self, name: str) -> Pointer:
        state = self._state_now(name)
        if state is None or BLOCKS not in state:
            raise KeyError(name)
        return _pointer(state)

    @_in_use
    def names_now(self) -> list[str]:
        names = [n for n in self._list_now(self._maps) if is_volume_name(n)]
        states = self._read_batch(self._maps, names, (LENGTH,))
        return sorted(n for n, s in zip(names, states, strict=True)
                      if s is not None and LENGTH in s)

    @_in_use
    def create_pointer_now(self, name: str, blocks: Sequence[str], length: int,
                           epoch: int | None) -> Pointer:
        entries = {BLOCKS: " ".join(blocks), LENGTH: str(length), WRITER: ""}
        for _ in range(_ATTEMPTS):
            state = self._state_now(name)
            if state is None:
                def create(op: Any) -> None:
                    op.new(self._rados.LIBRADOS_CREATE_EXCLUSIVE)
                    self._set(self._maps, op, {**entries, VERSION: _n(1), FENCE: _n(0),
                                               FLOOR: _n(0)})
                rv = self._operate(self._maps, name, create)
                if rv == -errno.EEXIST:
                    continue
                self._check(rv, f"volume {name}")
                return Pointer(tuple(blocks), length, 1, 0, "")
            if BLOCKS in state:
                raise FileExistsError(f"volume {name} exists")
            floor = int(state.get(FLOOR) or 0)
            if epoch is not None and epoch < floor:
                raise FloorRaised(f"volume name {name}: epoch {epoch} is below its floor"
                                  f" {floor}")
            version, fence = int(state[VERSION]), int(state[FENCE])
            rv = self._swap(name, version, entries)
            if rv in (-errno.ECANCELED, -errno.ENOENT):
                continue
            self._check(rv, f"volume {name}")
            return Pointer(tuple(blocks), length, version + 1, fence, "")
        raise VolumeBusy(f"volume {name}: its pointer kept changing")

    @_in_use
    def replace_pointer_now(self, name: str, blocks: Sequence[str], length: int,
                            expected: Pointer) -> Pointer:
        self._change(name, expected, {BLOCKS: " ".join(blocks), LENGTH: str(length)})
        return Pointer(tuple(blocks), length, expected.version + 1, expected.fence,
                       expected.writer)

    @_in_use
    def remove_pointer_now(self, name: str, expected: Pointer, floor: int) -> None:
        state = self._state_now(name)
        if state is None or BLOCKS not in state or int(state[VERSION]) != expected.version:
            raise self._lost(name, expected, state)
        floor = max(floor, int(state.get(FLOOR) or 0))
        self._change(name, expected, {WRITER: "", FLOOR: _n(floor)}, drop=(BLOCKS, LENGTH))

    @_in_use
    def first_epoch_now(self, name: str) -> int:
        state = self._state_now(name)
        return int(state.get(FLOOR) or 0) if state is not None else 0

    @_in_use
    def raise_floor_now(self, name: str, epoch: int) -> None:
        for _ in range(_ATTEMPTS):
            state = self._state_now(name)
            if state is None:
                def create(op: Any) -> None:
                    op.new(self._rados.LIBRADOS_CREATE_EXCLUSIVE)
                    self._set(self._maps, op, {VERSION: _n(1), FENCE: _n(0), WRITER: "",
                                               FLOOR: _n(epoch)})
                rv = self._operate(self._maps, name, create)
                if rv == -errno.EEXIST:
                    continue
                self._check(rv, f"volume name {name}")
                return
            if int(state.get(FLOOR) or 0) >= epoch:
                return
            rv = self._swap(name, int(state[VERSION]), {FLOOR: _n(epoch)})
            if rv in (-errno.ECANCELED, -errno.ENOENT):
                continue
            self._check(rv, f"volume name {name}")
            return
        raise VolumeBusy(f"volume name {name}: its floor kept changing")

    @_in_use
    def floors_now(self) -> dict[str, int]:
        names = [n for n in self._list_now(self._maps) if is_volume_name(n)]
        states = self._read_batch(self._maps, names, (FLOOR,))
        floors = {}
        for name, state in zip(names, states, strict=True):
            floor = int((state or {}).get(FLOOR) or 0)
            if floor > 0:
                floors[name] = floor
        return floors

    @_in_use
    def claim_now(self, name: str, holder: str, expected: Pointer,
                  owned: Iterable[str]) -> Pointer:
        fence = expected.fence + 1
        self._change(name, expected, {FENCE: _n(fence), WRITER: holder})
        claimed = Pointer(expected.blocks, expected.length, expected.version + 1, fence,
                          holder)
        if expected.writer:
            # That writer may still be running: its objects become ours
            # before we use them, and its writes to them fail from now on.
            names = list(dict.fromkeys(owned))

            def take(op: Any, _name: str) -> None:
                op.omap_cmp(FENCE, _n(fence + 1), self._rados.LIBRADOS_CMPXATTR_OP_LT)
                self._set(self._objects, op, {FENCE: _n(fence)})
            results = self._write_batch(self._objects, names, take)
            for object_name, rv in zip(names, results, strict=True):
                if rv == -errno.ECANCELED:
                    raise Fenced(f"volume {name}: object {object_name} belongs to a writer"
                                 f" newer than fence {fence}")
                if rv not in (0, -errno.ENOENT):
                    self._check(rv, f"object {object_name}")
            log.info("volume {name}: writer claim taken over from {old} ({n} objects"
                     " fenced)", name=name, old=expected.writer, n=len(names))
        return claimed

    @_in_use
    def release_now(self, name: str, expected: Pointer) -> Pointer:
        self._change(name, expected, {WRITER: ""})
        return Pointer(expected.blocks, expected.length, expected.version + 1,
                       expected.fence, "")

    # -- owned objects -------------------------------------------------------

    @_in_use
    def read_object_now(self, name: str, offset: int, length: int) -> bytes:
        try:
            data: bytes = self._objects.read(name, length, offset)
        except self._rados.ObjectNotFound:
            raise FileNotFoundError(errno.ENOENT, f"{self.where}: no object {name}") from None
        except self._rados.Error as e:
            raise self._failure(e, f"object {name}") from None
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    @_in_use
    def write_object_now(self, name: str, offset: int, data: memoryview | bytes,
                         fence: int) -> None:
        payload = bytes(data)

        def write(op: Any) -> None:
            op.omap_cmp(FENCE, _n(fence + 1), self._rados.LIBRADOS_CMPXATTR_OP_LT)
            op.write(payload, offset)
        rv = self._operate(self._objects, name, write)
        if rv == -errno.ENOENT:
            raise FileNotFoundError(errno.ENOENT, f"{self.where}: no object {name}")
        if rv == -errno.ECANCELED:
            raise Fenced(f"object {name} belongs to a writer newer than fence {fence}")
        self._check(rv, f"object {name}")

    @_in_use
    def create_object_now(self, name: str, base: bytes | None, start: int,
                          chunk: memoryview | bytes, fence: int) -> None:
        if base is None:
            body, at = bytes(chunk), start
        else:
            patched = bytearray(base)
            patched[start:start + len(chunk)] = chunk
            # Zeros at the end are not stored: reads past the data give them.
            body, at = bytes(patched).rstrip(b"\0"), 0

        def fill(op: Any) -> None:
            if body:
                op.write(body, at)
            op.truncate(self.block_size)
            self._set(self._objects, op, {FENCE: _n(fence)})

        def create(op: Any) -> None:
            op.new(self._rados.LIBRADOS_CREATE_EXCLUSIVE)
            fill(op)

        def replace(op: Any) -> None:
            op.omap_cmp(FENCE, _n(fence + 1), self._rados.LIBRADOS_CMPXATTR_OP_LT)
            op.truncate(0)
            fill(op)
        for _ in range(_ATTEMPTS):
            rv = self._operate(self._objects, name, create)
            if rv != -errno.EEXIST:
                self._check(rv, f"object {name}")
                return
            # What a crash left under this name unnamed by any map.
            rv = self._operate(self._objects, name, replace)
            if rv == -errno.ENOENT:
                continue
            if rv == -errno.ECANCELED:
                raise Fenced(f"object {name} belongs to a writer newer than fence {fence}")
            self._check(rv, f"object {name}")
            return
        raise VolumeBusy(f"object {name} kept being made and removed")

    def flush_objects_now(self, names: Iterable[str]) -> None:
        """Nothing to do: the OSDs acknowledged each write once durable."""

    @_in_use
    def remove_objects_now(self, names: Iterable[str], fence: int | None) -> int:
        wanted = list(dict.fromkeys(names))

        def remove(op: Any, _name: str) -> None:
            if fence is not None:
                op.omap_cmp(FENCE, _n(fence + 1), self._rados.LIBRADOS_CMPXATTR_OP_LT)
            op.remove()
        results = self._write_batch(self._objects, wanted, remove)
        for name, rv in zip(wanted, results, strict=True):
            if rv not in (0, -errno.ENOENT, -errno.ECANCELED):
                self._check(rv, f"object {name}")
        return sum(1 for rv in results if rv == 0)

    @_in_use
    def object_names_now(self) -> list[str]:
        return self._list_now(self._objects)

    @_in_use
    def begin_sweep_now(self) -> SweepPlan:
        """Nothing temporary to remove (every write is one atomic
        operation); the objects listed, and per volume owning some of them
        its fence, or None while a writer holds it: it may be about to name
        an object made but not yet recorded."""
        present = self.object_names_now()
        owners = sorted({o[0] for o in map(owner_of, present) if o is not None})
        states = self._read_batch(self._maps, owners, (FENCE, WRITER))
        guards: dict[str, int | None] = {}
        for owner, state in zip(owners, states, strict=True):
            if state is None:
                guards[owner] = 0  # no volume ever: only what a copy left
            elif state.get(WRITER):
                guards[owner] = None
            else:
                guards[owner] = int(state.get(FENCE) or 0)
        return SweepPlan(0, present, guards)

    @_in_use
    def finish_sweep_now(self, plan: SweepPlan, named: set[str]) -> int:
        """Remove the unnamed objects of ``plan`` whose volume had no
        writer, unless a writer claimed it since and made them again (a
        higher fence)."""
        by_guard: dict[int, list[str]] = {}
        for name in plan.present:
            owner = owner_of(name)
            if name in named or owner is None:
                continue
            guard = plan.guards.get(owner[0])
            if guard is not None:
                by_guard.setdefault(guard, []).append(name)
        return sum(self.remove_objects_now(names, guard) for guard, names in by_guard.items())

    # -- helpers ---------------------------------------------------------------

    def _change(self, name: str, expected: Pointer, entries: dict[str, str],
                drop: Sequence[str] = ()) -> None:
        """Set ``entries`` (and remove ``drop``) of pointer ``name`` with a
        new version, if it is still ``expected``."""
        def change(op: Any) -> None:
            op.omap_cmp(VERSION, _n(expected.version), self._rados.LIBRADOS_CMPXATTR_OP_EQ)
            op.omap_cmp(FENCE, _n(expected.fence), self._rados.LIBRADOS_CMPXATTR_OP_EQ)
            if drop:
                self._maps.remove_omap_keys(op, tuple(drop))
            self._set(self._maps, op, {**entries, VERSION: _n(expected.version + 1)})
        rv = self._operate(self._maps, name, change)
        if rv in (-errno.ECANCELED, -errno.ENOENT):
            raise self._lost(name, expected, self._state_now(name))
        self._check(rv, f"volume {name}")

    def _swap(self, name: str, version: int, entries: dict[str, str]) -> int:
        """Set ``entries`` of pointer object ``name`` with version
        ``version`` + 1 if its version is ``version``; 0 or ``-errno``."""
        def swap(op: Any) -> None:
            op.omap_cmp(VERSION, _n(version), self._rados.LIBRADOS_CMPXATTR_OP_EQ)
            self._set(self._maps, op, {**entries, VERSION: _n(version + 1)})
        return self._operate(self._maps, name, swap)

    @staticmethod
    def _lost(name: str, expected: Pointer, state: dict[str, str] | None) -> PointerChanged:
        """Why a change computed from ``expected`` cannot be made."""
        if state is not None and int(state.get(FENCE) or 0) > expected.fence:
            holder = state.get(WRITER) or "a writer that has closed it since"
            return Fenced(f"volume {name} was opened for writing by {holder}"
                          f" (fence {int(state[FENCE])}, this one {expected.fence})")
        if state is None or BLOCKS not in state:
            return PointerChanged(f"volume {name} was removed meanwhile")
        return PointerChanged(f"volume {name} was changed meanwhile (version"
                              f" {int(state[VERSION])}, not {expected.version})")

    def _state_now(self, name: str) -> dict[str, str] | None:
        """The pointer object's entries; None when there is none."""
        with self._rados.ReadOpCtx() as op:
            values, _ = self._maps.get_omap_vals_by_keys(op, _POINTER_KEYS)
            try:
                self._maps.operate_read_op(op, name)
            except self._rados.ObjectNotFound:
                return None
            except self._rados.Error as e:
                raise self._failure(e, f"volume {name}") from None
            return _decoded(values)

    def _set(self, ioctx: Any, op: Any, entries: dict[str, str]) -> None:
        ioctx.set_omap(op, tuple(entries), tuple(entries.values()))

    def _operate(self, ioctx: Any, name: str, build: Callable[[Any], None]) -> int:
        """Run one compound write operation (``build`` fills it) on object
        ``name``; 0 or ``-errno``."""
        with self._rados.WriteOpCtx() as op:
            build(op)
            try:
                ioctx.operate_write_op(op, name, mtime=int(time.time()))
            except self._rados.Error as e:
                return -(getattr(e, "errno", None) or errno.EIO)
        return 0

    def _write_batch(self, ioctx: Any, names: list[str],
                     build: Callable[[Any, str], None]) -> list[int]:
        """One compound write operation per name, up to ``window`` in
        flight; their return values (0 or ``-errno``)."""
        try:
            return write_batch(ioctx, names, build, self.window, int(time.time()))
        except self._rados.Error as e:
            raise self._failure(e, "a batch of operations") from None

    def _read_batch(self, ioctx: Any, names: list[str],
                    keys: Sequence[str]) -> list[dict[str, str] | None]:
        """The omap entries ``keys`` of each object of ``names`` (None for
        an absent one), up to ``window`` reads in flight."""
        results: list[dict[str, str] | None] = []
        for start in range(0, len(names), self.window):
            ops: list[Any] = []
            comps: list[Any] = []
            values: list[Any] = []
            page = names[start:start + self.window]
            try:
                for name in page:
                    ops.append(ioctx.create_read_op())
                    values.append(ioctx.get_omap_vals_by_keys(ops[-1], tuple(keys))[0])
                    comps.append(ioctx.operate_aio_read_op(ops[-1], name))
                for name, comp, got in zip(page, comps, values, strict=True):
                    comp.wait_for_complete()
                    rv = comp.get_return_value()
                    if rv == -errno.ENOENT:
                        results.append(None)
                    else:
                        self._check(rv, f"object {name}")
                        results.append(_decoded(got))
            except self._rados.Error as e:
                raise self._failure(e, "a batch of reads") from None
            finally:
                for comp in comps:
                    comp.wait_for_complete()
                for op in ops:
                    ioctx.release_read_op(op)
        return results

    def _list_now(self, ioctx: Any) -> list[str]:
        try:
            return [obj.key for obj in ioctx.list_objects()]
        except self._rados.Error as e:
            raise self._failure(e, "listing") from None

    def _check(self, rv: int, what: str) -> None:
        if rv == 0:
            return
        if -rv == errno.ETIMEDOUT:
            self._refresh_map()
        raise OSError(-rv, f"{self.where}: {what}: {os.strerror(-rv)}")

    def _failure(self, error: Exception, what: str) -> OSError:
        code = abs(getattr(error, "errno", None) or errno.EIO)
        if code == errno.ETIMEDOUT:
            self._refresh_map()
        return OSError(code, f"{self.where}: {what}: {error}")

    def _refresh_map(self) -> None:
        """After a timeout: fetch the newest OSD map now (see
        ``snfd.pithos.rados_blocks``)."""
        if self._cluster is None:
            return
        try:
            self._cluster.wait_for_latest_osdmap()
        except self._rados.Error as e:
            log.warn("{where}: cannot fetch the OSD map: {e}", where=self.where, e=e)


class NoSuchPool(RadosUnavailable):
    """The cluster has no pool of that name."""


def _decoded(values: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    # The binding gives None for an empty value.
    return {k: (v or b"").decode() for k, v in values}


def _pointer(state: dict[str, str]) -> Pointer:
    return Pointer(tuple(state[BLOCKS].split()), int(state[LENGTH]), int(state[VERSION]),
                   int(state[FENCE]), state.get(WRITER, ""))


def open_place(conf: str, pool: str, reactor: Any, *, block_size: int,
               user: str = "admin", keyring: str = "", namespace: str = "archip",
               op_timeout: float = 30.0, connect_timeout: float = 10.0,
               window: int = 8) -> RadosVolumePlace:
    """Connect to the cluster that ``conf`` (a ``ceph.conf``) describes as
    ``client.<user>`` and open the place on ``pool``, in the namespaces of
    ``namespace`` (``namespaces``).

    @raise RadosUnavailable: no ``rados`` module, the cluster unreachable
        or refusing the key.
    @raise NoSuchPool: no such pool (operators create pools: a replicated
        one, ``ceph osd pool create <pool>`` and ``ceph osd pool application
        enable <pool> synnefo``).
    """
    rados, cluster = connect(conf, user=user, keyring=keyring, op_timeout=op_timeout,
                             connect_timeout=connect_timeout)
    try:
        if not cluster.pool_exists(pool):
            raise NoSuchPool(f"the cluster of {conf} has no pool {pool!r}")
        maps_namespace, objects_namespace = namespaces(namespace)
        maps = cluster.open_ioctx(pool)
        maps.set_namespace(maps_namespace)
        objects = cluster.open_ioctx(pool)
        objects.set_namespace(objects_namespace)
    except BaseException:
        cluster.shutdown()
        raise
    return RadosVolumePlace(maps, objects, block_size=block_size, window=window,
                            rados=rados, cluster=cluster, reactor=reactor)


__all__ = ["NoSuchPool", "RadosVolumePlace", "namespaces", "open_place"]
