"""Volumes on RADOS (``snfd.archip.rados_volumes``) on a real Ceph cluster
(``snfd.testing.ceph``: a mon and an OSD on 127.0.0.1, one per test
process): the volume store's tests again with pointers, owned objects and
blocks on RADOS; two stores on one pool as two nodes (compare-and-swap,
the writer fence); writers killed with SIGKILL; the layout; copying
volumes from the filesystem.  Each test works in RADOS namespaces of its
own.  Skipped, with the reason, where Ceph or the ``rados`` module is not
installed."""

from __future__ import annotations

import calendar
import os
import shutil
import sys
import tempfile
import textwrap
import time
import uuid
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.archip import mapfile
from snfd.archip.io import VolumeBusy
from snfd.archip.place import (
    Fenced,
    IVolumePlace,
    Pointer,
    PointerChanged,
    copy_volumes,
)
from snfd.archip.rados_volumes import (
    FENCE,
    FLOOR,
    VERSION,
    WRITER,
    RadosVolumePlace,
    namespaces,
    open_place,
)
from snfd.archip.volumes import VolumeStore
from snfd.pithos.rados_blocks import RadosBlockStore, open_store
from snfd.testing.ceph import ceph_unavailable, shared_cluster
from tests.archip import test_volumes

POOL = "snfd-test-volumes"
BS = test_volumes.BS


class OnRadosPlace:
    """Makes a test case's block store and volume place RADOS ones, in
    fresh namespaces of the shared cluster's test pool."""

    block_size = BS

    def _cluster(self) -> Any:
        reason = ceph_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        cluster = shared_cluster()
        if not getattr(self, "_pool_made", False):
            cluster.create_pool(POOL)
            self._pool_made = True
        return cluster

    def make_blocks(self, clock: Any = None) -> RadosBlockStore:
        cluster = self._cluster()
        self.blocks_namespace = f"t-{uuid.uuid4().hex[:12]}"
        store = open_store(cluster.conf, POOL, reactor, clock=clock,
                           namespace=self.blocks_namespace)
        store.block_size = self.block_size
        self.addCleanup(store.close)  # type: ignore[attr-defined]
        return store

    def make_place(self) -> RadosVolumePlace:
        cluster = self._cluster()
        if not hasattr(self, "volumes_namespace"):
            self.volumes_namespace = f"v-{uuid.uuid4().hex[:12]}"
        place = open_place(cluster.conf, POOL, reactor, block_size=self.block_size,
                           namespace=self.volumes_namespace)
        self.__dict__.setdefault("_places", []).append(place)
        return place

    async def tearDown(self) -> None:
        """Close the places after the test's own tearDown closed its
        volumes (trial runs cleanups before tearDown)."""
        try:
            closing = super().tearDown()  # type: ignore[misc]
            if closing is not None:
                await closing
        finally:
            for place in self.__dict__.get("_places", []):
                place.close()


# -- the volume store's tests, on RADOS ------------------------------------------


class ClonesOnRados(OnRadosPlace, test_volumes.CloneTests):
    pass


class GrowAndHashmapOnRados(OnRadosPlace, test_volumes.GrowAndHashmapTests):
    pass


class CopyOnWriteOnRados(OnRadosPlace, test_volumes.CopyOnWriteTests):
    pass


class ZerosOnRados(OnRadosPlace, test_volumes.ZeroTests):
    pass


class OpenOnRados(OnRadosPlace, test_volumes.OpenTests):
    pass


class ConcurrencyOnRados(OnRadosPlace, test_volumes.ConcurrencyTests):
    pass


class SnapshotsOnRados(OnRadosPlace, test_volumes.SnapshotTests):
    """The snapshot tests; those that look at the directory's floor files
    look at the volume objects' ``floor`` entries instead."""

    def set_floor(self, name: str, floor: int) -> None:
        place = self.volumes.place
        rados = place._rados
        with rados.WriteOpCtx() as op:
            place._maps.set_omap(op, (FLOOR,), (f"{floor:016d}",))
            place._maps.operate_write_op(op, name, mtime=int(time.time()))

    async def test_sweep_restores_lost_floors(self) -> None:
        """A name whose floor was lost (a store from before floors were
        kept) gets it back from the surviving objects at the start-up
        sweep, so a recreated name still owns new objects."""
        await self.volumes.create("vol", BS)
        v = await self.opened("vol")
        await v.write(0, b"old")
        await v.close()
        await self.volumes.snapshot("vol", "snap")
        await self.volumes.remove("vol")
        self.assertEqual(self.volumes.place.floors_now(), {"vol": 2})
        self.set_floor("vol", 0)
        self.assertEqual(self.volumes.place.floors_now(), {})
        await self.volumes.sweep()
        self.assertEqual(self.volumes.place.floors_now(), {"vol": 1})
        await self.volumes.create("vol", BS)
        self.assertEqual((await self.volumes.info("vol")).epoch, 1)
        v = await self.opened("vol")
        await v.write(0, b"new")
        await v.close()
        await self.assert_map_on_disk_sound("snap", b"old" + bytes(BS - 3))

    async def test_no_floor_without_kept_objects(self) -> None:
        """A removed volume none of whose objects outlive it leaves no
        floor (its object stays, keeping the name's fence)."""
        await self.volumes.create("vol", BS)
        v = await self.opened("vol")
        await v.write(0, b"x")
        await v.close()
        await self.volumes.remove("vol")
        self.assertEqual(self.volumes.place.floors_now(), {})
        self.assertEqual(await self.volumes.names(), [])
        self.assertEqual((await self.volumes.create("vol", BS)).epoch, 0)
        self.assertEqual(self.volumes.place.read_pointer_now("vol").fence, 1)


class SweepOnRados(OnRadosPlace, test_volumes.SweepTests):
    async def test_sweep(self) -> None:
        """After a crash, owned objects no map names are removed; named
        ones stay, and so do objects that are not owned objects' names."""
        await self.volumes.create("s", 2 * BS)
        v = await self.volumes.open("s", True)
        await v.write(0, b"keep")
        with self.assertRaises(VolumeBusy):
            await self.volumes.sweep()
        await v.close()
        place = self.volumes.place
        place.create_object_now(mapfile.owned_name("s", 0, 1), None, 0, b"junk", 1)
        place.create_object_now("not-an-owned-name", None, 0, b"other", 0)
        self.assertEqual(await self.store().sweep(), 1)
        self.assertEqual(self.owned_files(), ["not-an-owned-name",
                                              mapfile.owned_name("s", 0, 0)])
        await self.assert_map_on_disk_sound("s", b"keep" + bytes(2 * BS - 4))


_RADOS_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from twisted.internet import defer, task
    from snfd.archip.rados_volumes import open_place
    from snfd.archip.volumes import VolumeStore
    from snfd.pithos.rados_blocks import open_store
    from tests.archip.test_volumes import BS, CRASH_PER_ROUND, CRASH_RECORD, crash_record

    async def main(reactor):
        _, conf, pool, blocks_namespace, volumes_namespace, first = sys.argv[1:7]
        blocks = open_store(conf, pool, reactor, namespace=blocks_namespace)
        blocks.block_size = BS
        place = open_place(conf, pool, reactor, block_size=BS, namespace=volumes_namespace)
        store = VolumeStore(place, blocks, reactor, node="crash-writer")
        v = await store.open("crash", True)
        for i in range(int(first), int(first) + CRASH_PER_ROUND):
            await v.write(i * CRASH_RECORD, crash_record(i))
            await v.flush()
            sys.stdout.write(f"{i}\\n")
            sys.stdout.flush()
        await defer.Deferred()

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
""")


class CrashOnRados(OnRadosPlace, test_volumes.CrashTests):
    """Writer processes killed with SIGKILL amid copy-ups, each round's
    writer taking the volume over from the killed one: no acknowledged
    flush is lost."""

    timeout = 300

    def writer(self, first: int) -> list[str]:
        return [sys.executable, "-c", _RADOS_WRITER, test_volumes.REPO,
                self._cluster().conf, POOL, self.blocks_namespace,
                self.volumes_namespace, str(first)]


# -- RADOS only ------------------------------------------------------------------


class _TwoNodes(OnRadosPlace, unittest.TestCase):
    """Two volume stores, as on two nodes, over one block store namespace
    and one place namespace."""

    timeout = 300

    def setUp(self) -> None:
        self.blocks = self.make_blocks()
        self.a = self.node("node-a")
        self.b = self.node("node-b")
        self.handles: list[Any] = []

    def node(self, name: str) -> VolumeStore:
        return VolumeStore(self.make_place(), self.blocks, reactor, node=name)

    async def tearDown(self) -> None:
        for v in self.handles:
            await v.close()
        await super().tearDown()

    async def opened(self, store: VolumeStore, name: str, writable: bool = True) -> Any:
        v = await store.open(name, writable)
        self.handles.append(v)
        return v

    async def content(self, name: str) -> bytes:
        """What a third node reads of volume ``name``."""
        v = await self.node("node-c").open(name, False)
        try:
            return await v.read(0, v.size)
        finally:
            await v.close()


class PlaceTests(_TwoNodes):
    def test_interface(self) -> None:
        verifyObject(IVolumePlace, self.make_place())

    def test_compare_and_swap(self) -> None:
        """Two changes computed from one pointer: the first is made, the
        second fails and changes nothing, whichever node makes it; a change
        of a removed volume fails too."""
        one, two = self.make_place(), self.make_place()
        first = one.create_pointer_now("v", ("a" * 64,), 10, 0)
        self.assertEqual(first, Pointer(("a" * 64,), 10, 1, 0, ""))
        made = one.replace_pointer_now("v", ("b" * 64,), 20, first)
        with self.assertRaises(PointerChanged):
            two.replace_pointer_now("v", ("c" * 64,), 30, first)
        self.assertEqual(two.read_pointer_now("v"), made)
        with self.assertRaises(FileExistsError):
            two.create_pointer_now("v", ("c" * 64,), 30, 0)
        two.remove_pointer_now("v", made, 0)
        with self.assertRaises(PointerChanged):
            one.replace_pointer_now("v", ("c" * 64,), 30, made)
        with self.assertRaises(KeyError):
            one.read_pointer_now("v")

    def test_the_fence_refuses_an_older_writer(self) -> None:
        """After a claim, the older writer's pointer changes fail with
        ``Fenced``, and so do its writes, creations and removals of the
        objects the claim fenced; the new writer's succeed."""
        old, new = self.make_place(), self.make_place()
        name = mapfile.owned_name("v", 0, 0)
        p = old.create_pointer_now("v", ("a" * 64,), 10, 0)
        p_old = old.claim_now("v", "old 1", p, [])
        old.create_object_now(name, None, 0, b"old", p_old.fence)
        p_new = new.claim_now("v", "new 2", old.read_pointer_now("v"), [name])
        self.assertEqual((p_new.fence, p_new.writer), (2, "new 2"))
        with self.assertRaises(Fenced) as caught:
            old.replace_pointer_now("v", ("b" * 64,), 20, p_old)
        self.assertIn("new 2", str(caught.exception))
        with self.assertRaises(Fenced):
            old.write_object_now(name, 0, b"OLD", p_old.fence)
        with self.assertRaises(Fenced):
            old.create_object_now(name, None, 0, b"OLD", p_old.fence)
        self.assertEqual(old.remove_objects_now([name], p_old.fence), 0)
        with self.assertRaises(Fenced):
            old.release_now("v", p_old)
        new.write_object_now(name, 3, b"new", p_new.fence)
        self.assertEqual(new.read_object_now(name, 0, 8), b"oldnew\0\0")
        self.assertEqual(new.release_now("v", p_new).writer, "")


class TwoNodesTests(_TwoNodes):
    async def test_concurrent_pointer_updates_both_land(self) -> None:
        """A snapshot on node b whose map save races a grow on node a:
        b's compare-and-swap fails, b reads the grown map and snapshots
        that, so neither change is lost."""
        await self.a.create("v", BS)
        place = self.b.place
        raced: list[str] = []

        class Racing:
            def __getattr__(self, name: str) -> Any:
                return getattr(place, name)

            def replace_pointer_now(self, *args: Any) -> Any:
                if not raced:
                    raced.append("grown")
                    blockingCallFromThread(reactor, lambda: defer.ensureDeferred(
                        outer.a.grow("v", 3 * BS)))
                return place.replace_pointer_now(*args)
        outer = self
        self.b.place = Racing()  # type: ignore[assignment]
        snap = await self.b.snapshot("v", "v-snap")
        self.assertEqual(raced, ["grown"])
        m = await self.node("node-c").info("v")
        self.assertEqual(m.size, 3 * BS)  # a's grow
        self.assertEqual(m.epoch, 1)  # b's freeze
        self.assertEqual(snap.size, 3 * BS)

    async def test_a_stale_writer_is_refused(self) -> None:
        """Node b opens for writing a volume node a writes (a failover: a
        froze): from then on a's writes in place, copy-ups, zeroes and
        changes fail, and b's volume holds what a wrote before and b after,
        nothing of a's late writes."""
        await self.a.create("v", 3 * BS)
        wa = await self.opened(self.a, "v")
        await wa.write(0, b"a-first")  # a copy-up
        await wa.write(10, b"a-again")  # in place
        wb = await self.opened(self.b, "v")
        await wb.write(20, b"b-wrote")
        with self.assertRaises(Fenced):
            await wa.write(0, b"A-LATE")
        with self.assertRaises(VolumeBusy):
            await self.a.snapshot("v", "v-snap")
        want = b"a-first" + bytes(3) + b"a-again" + bytes(3) + b"b-wrote"
        self.assertEqual((await self.content("v"))[:len(want)], want)
        self.assertEqual(await wb.read(0, len(want)), want)

    async def test_each_stale_change_is_refused_by_the_osd(self) -> None:
        """Each kind of change a stale writer makes is refused by the
        cluster itself (the writer was not told: it fails at its first
        try)."""
        actions = {
            "write in place": lambda v: v.write(5, b"LATE"),
            "copy-up": lambda v: v.write(BS, b"LATE"),
            "zero fill": lambda v: v.write(2 * BS, b"LATE"),
            "write zeroes": lambda v: v.write_zeroes(0, BS),
            "trim": lambda v: v.trim(0, BS),
        }
        for n, (what, action) in enumerate(actions.items()):
            name = f"v{n}"
            await self.a.clone(name, await self.image(), size=3 * BS)
            wa = await self.opened(self.a, name)
            await wa.write(0, b"a")
            before = await self.content(name)
            await self.opened(self.b, name)
            with self.assertRaises(Fenced, msg=what):
                await action(wa)
            self.assertEqual(await self.content(name), before, what)

    async def image(self) -> mapfile.MapV2:
        data = bytes(range(256)) * (2 * BS // 256)
        names = await self.blocks.put([data[:BS], data[BS:]])
        return mapfile.from_hashmap(names, len(data), BS)

    async def test_the_writers_node_alone_changes_the_volume(self) -> None:
        """While node a writes a volume, node b's snapshot, grow and remove
        are VolumeBusy naming a; once a closes, they work."""
        await self.a.create("v", BS)
        wa = await self.opened(self.a, "v")
        await wa.write(0, b"x")
        for change in (lambda: self.b.snapshot("v", "s"), lambda: self.b.grow("v", 2 * BS),
                       lambda: self.b.remove("v")):
            with self.assertRaises(VolumeBusy) as caught:
                await change()
            self.assertIn("node-a", str(caught.exception))
        await self.a.snapshot("v", "s-by-a")  # the writer's own node may
        await wa.close()
        self.handles.remove(wa)
        await self.b.snapshot("v", "s")
        await self.b.grow("v", 2 * BS)
        self.assertEqual((await self.content("v"))[:1], b"x")
        await self.b.remove("v")
        self.assertEqual(await self.a.names(), ["s", "s-by-a"])

    async def test_a_claim_left_by_a_crash(self) -> None:
        """A node that died holding a claim: the next writable open takes it
        over (another node), or the node's own start-up sweep releases it;
        either way the dead run's handle can no longer write."""
        await self.a.create("v", BS)
        dead = await self.a.open("v", True)
        await dead.write(0, b"x")
        restarted = self.node("node-a")
        await restarted.sweep()
        self.assertEqual(restarted.place.read_pointer_now("v").writer, "")
        with self.assertRaises(Fenced):
            await dead.write(0, b"y")
        await self.b.snapshot("v", "s")
        await self.a.create("w", BS)
        dead = await self.a.open("w", True)
        await dead.write(0, b"x")
        wb = await self.opened(self.b, "w")
        with self.assertRaises(Fenced):
            await dead.write(0, b"y")
        await wb.write(1, b"b")
        self.assertEqual((await self.content("w"))[:2], b"xb")

    async def test_the_sweep_spares_what_another_node_writes(self) -> None:
        """A node's start-up sweep spares the objects of a volume another
        node is writing, even one not yet named by its map (a copy-up
        between its object and its map save)."""
        await self.a.create("v", 2 * BS)
        wa = await self.opened(self.a, "v")
        await wa.write(0, b"named")
        pending = mapfile.owned_name("v", 0, 1)
        self.a.place.create_object_now(pending, None, 0, b"pending", 1)
        self.assertEqual(await self.b.sweep(), 0)
        self.assertEqual(self.b.place.read_object_now(pending, 0, 7), b"pending")


class LayoutTests(_TwoNodes):
    def entries(self, place: RadosVolumePlace, ioctx: Any, name: str) -> dict[str, str]:
        rados = place._rados
        with rados.ReadOpCtx() as op:
            values, _ = ioctx.get_omap_vals(op, "", "", 100)
            ioctx.operate_read_op(op, name)
            return {k: (v or b"").decode() for k, v in values}

    async def test_layout(self) -> None:
        """A volume is an object of the maps namespace with its pointer as
        omap entries; its owned objects are in the objects namespace, with
        their fence, and a real mtime; a removed volume leaves an object
        with its fence (and no map), which ``names`` does not list."""
        place = self.a.place
        await self.a.create("v", 2 * BS)
        v = await self.a.open("v", True)
        await v.write(BS, b"data")
        pointer = place.read_pointer_now("v")
        entries = self.entries(place, place._maps, "v")
        self.assertEqual(entries["blocks"], " ".join(pointer.blocks))
        self.assertEqual(int(entries["length"]), pointer.length)
        self.assertEqual(entries[WRITER], self.a.holder)
        self.assertEqual((entries[VERSION], entries[FENCE], entries[FLOOR]),
                         (f"{3:016d}", f"{1:016d}", f"{0:016d}"))
        self.assertEqual(place._maps.get_namespace(), namespaces(self.volumes_namespace)[0])
        owned = mapfile.owned_name("v", 0, 1)
        self.assertEqual(place.object_names_now(), [owned])
        self.assertEqual(self.entries(place, place._objects, owned), {FENCE: f"{1:016d}"})
        size, mtime = place._objects.stat(owned)
        self.assertEqual(size, BS)
        self.assertLess(abs(calendar.timegm(mtime) - time.time()), 600)
        await v.close()
        await self.a.remove("v")
        self.assertEqual(self.entries(place, place._maps, "v"),
                         {VERSION: f"{5:016d}", FENCE: f"{1:016d}", WRITER: "",
                          FLOOR: f"{0:016d}"})
        self.assertEqual(await self.a.names(), [])
        self.assertEqual(place.object_names_now(), [])
        with self.assertRaises(KeyError):
            await self.a.info("v")


class Interrupted(Exception):
    """A copy stopped part way."""


async def fill_source(source: Any, block_size: int) -> None:
    """Volumes a copy must carry whole: ``vol`` written across an object
    boundary, snapshotted (``vol-snap``) and written again, and ``gone``,
    removed, whose object only its snapshot ``gone-snap`` still names."""
    await source.create("vol", 3 * block_size)
    v = await source.open("vol", True)
    await v.write(block_size - 2, b"across" + os.urandom(100))
    await source.snapshot("vol", "vol-snap")
    await v.write(0, b"after the snapshot")
    await v.close()
    await source.create("gone", block_size)
    v = await source.open("gone", True)
    await v.write(0, b"kept by its snapshot")
    await v.close()
    await source.snapshot("gone", "gone-snap")
    await source.remove("gone")


class CopyTests(_TwoNodes):
    """``copy_volumes`` from a node's directory to RADOS."""

    async def setUp(self) -> None:  # type: ignore[override]
        super().setUp()
        self.root = tempfile.mkdtemp(prefix="snfd-archip-copy-")
        self.addCleanup(shutil.rmtree, self.root, True)
        # The maps' blocks are already where the RADOS volumes look for
        # them (what pithos-migrate-blocks does first).
        self.source = VolumeStore(os.path.join(self.root, "volumes"), self.blocks, reactor)
        self.volumes: dict[str, bytes] = {}
        await fill_source(self.source, BS)
        for name in await self.source.names():
            v = await self.source.open(name, False)
            self.volumes[name] = await v.read(0, v.size)
            await v.close()

    def copy(self, **kw: Any) -> Any:
        return deferToThread(copy_volumes, self.source.place, self.a.place, **kw)

    async def assert_copied(self) -> None:
        target = self.node("node-c")
        self.assertEqual(await target.names(), sorted(self.volumes))
        for name, data in self.volumes.items():
            v = await target.open(name, False)
            self.assertEqual(await v.read(0, v.size), data, name)
            await v.close()
        self.assertEqual(target.place.floors_now(), {"gone": 2})

    async def test_copy(self) -> None:
        """Every volume reads the same on RADOS, floors included; a second
        run finds everything there and copies nothing."""
        report = await self.copy()
        self.assertTrue(report.complete)
        self.assertEqual((report.pointers_copied, report.objects_copied, report.floors),
                         (3, 4, 1))
        await self.assert_copied()
        again = await self.copy()
        self.assertEqual((again.pointers_copied, again.objects_copied, again.floors,
                          again.pointers_present, again.objects_present), (0, 0, 0, 3, 4))
        # Copied volumes are written as any other: a new writer fences
        # the copied objects (fence 0).
        v = await self.a.open("vol", True)
        await v.write(0, b"on rados")
        await v.close()

    async def test_resumed_and_verified(self) -> None:
        """A copy interrupted part way is resumed by running it again; an
        object the target holds other bytes of is copied again; a pointer
        the target changed is a conflict, unless pointers are replaced."""
        seen: list[str] = []

        def stop_after_two(kind: str, name: str) -> None:
            seen.append(name)
            if len(seen) == 2:
                raise Interrupted()
        with self.assertRaises(Interrupted):
            await self.copy(progress=stop_after_two)
        self.assertEqual(await self.a.names(), [])  # pointers come last
        place = self.a.place
        [first, *_] = sorted(self.source.place.object_names_now())
        place._objects.write(first, b"damaged", 0)
        report = await self.copy()
        self.assertEqual((report.objects_present, report.objects_copied), (1, 3))
        await self.assert_copied()
        await self.a.grow("vol", 4 * BS)
        report = await self.copy()
        self.assertEqual(report.conflicts, ["volume vol: the target's map differs"])
        report = await self.copy(replace_pointers=True)
        self.assertTrue(report.complete)
        self.assertEqual(report.pointers_copied, 1)
        await self.assert_copied()
