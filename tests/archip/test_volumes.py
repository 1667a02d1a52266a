"""Thin copy-on-write volumes: clones of images with nothing copied,
copy-up on first write, zero objects, snapshots, and maps on disk that
always name existing objects."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from snfd.archip import mapfile
from snfd.archip.io import VolumeBusy
from snfd.archip.volumes import OpenVolume, VolumeStore
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.hashmap import EMPTY_HASH, block_hash

BS = 64 * 1024


class _CountingBlocks:
    """A block store that remembers what was put into it."""

    def __init__(self, store: FileBlockStore):
        self.store = store
        self.block_size = store.block_size
        self.put_bytes = 0
        self.put_names: list[str] = []

    async def put(self, blocks: Any) -> list[str]:
        blocks = list(blocks)
        self.put_bytes += sum(len(b) for b in blocks)
        names = await self.store.put(blocks)
        self.put_names += names
        return names

    def get(self, name: str) -> Any:
        return self.store.get(name)

    def read(self, name: str, length: int) -> Any:
        return self.store.read(name, length)

    def missing(self, names: Any) -> Any:
        return self.store.missing(names)


def _image(blocks: int, tail: int = BS // 2) -> bytes:
    """Random blocks, the second of them all zeros, the last partial."""
    parts = [os.urandom(BS) for _ in range(blocks - 1)] + [os.urandom(tail)]
    if blocks > 2:
        parts[1] = bytes(BS)
    return b"".join(parts)


class _Base(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="snfd-archip-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.file_blocks = self.make_blocks()
        self.blocks = _CountingBlocks(self.file_blocks)
        self.volumes = self.store()
        self.open: list[OpenVolume] = []

    def make_blocks(self) -> Any:
        """The block store (``test_rados_blocks`` runs these tests on RADOS)."""
        return FileBlockStore(os.path.join(self.root, "blocks"), reactor, block_size=BS)

    def make_place(self) -> Any:
        """Where the store keeps pointers and owned objects, each call a new
        handle on the same storage: the test's directory
        (``test_rados_volumes`` runs these tests on RADOS)."""
        return os.path.join(self.root, "volumes")

    def store(self) -> VolumeStore:
        """A store over the test's place (a fresh one sees only what is
        stored)."""
        return VolumeStore(self.make_place(), self.blocks, reactor)

    async def tearDown(self) -> None:
        for v in self.open:
            await v.close()

    async def upload(self, data: bytes) -> mapfile.MapV2:
        """``data`` as a Pithos file: its blocks stored, its hashmap as a map."""
        chunks = [data[i:i + BS] for i in range(0, len(data), BS)]
        names = await self.file_blocks.put(chunks)
        self.assertEqual(names, [block_hash(c) for c in chunks])
        return mapfile.from_hashmap(names, len(data), BS)

    async def opened(self, name: str, writable: bool = True,
                     store: VolumeStore | None = None) -> OpenVolume:
        v = await (store or self.volumes).open(name, writable)
        self.open.append(v)
        return v

    def owned_files(self) -> list[str]:
        return sorted(f for f in self.volumes.place.object_names_now()
                      if not f.startswith("."))

    async def assert_map_on_disk_sound(self, name: str, expected: bytes) -> None:
        """A fresh store reads back ``expected`` and its map names only
        objects that exist."""
        fresh = self.store()
        m = await fresh.info(name)
        present = set(self.owned_files())
        for e in m.entries:
            if e.archip:
                self.assertIn(e.name, present)
            elif not e.is_zero:
                self.assertEqual(await self.file_blocks.missing([e.name]), [])
        v = await fresh.open(name, False)
        try:
            self.assertEqual(await v.read(0, v.size), expected)
        finally:
            await v.close()


class CloneTests(_Base):
    async def test_clone_reads_the_image_and_copies_nothing(self) -> None:
        """A clone of an image's hashmap reads the image's bytes; only the
        map was stored, no object was copied or made."""
        image = _image(4)
        origin = await self.upload(image)
        self.blocks.put_bytes = 0
        m = await self.volumes.clone("vm-1", origin)
        self.assertEqual(m.size, len(image))
        v = await self.opened("vm-1", writable=False)
        self.assertEqual(await v.read(0, len(image)), image)
        self.assertEqual(await v.read(BS - 10, 20), image[BS - 10:BS + 10])
        self.assertEqual(self.volumes.counters.copy_ups, 0)
        self.assertEqual(self.volumes.counters.bytes_copied, 0)
        self.assertEqual(self.owned_files(), [])
        self.assertEqual(self.blocks.put_bytes, len(mapfile.encode(m)))
        self.assertTrue(m.entries[1].is_zero)

    async def test_larger_clone_ends_in_zeros(self) -> None:
        """A clone larger than its image reads zeros past the image."""
        image = _image(2)
        await self.volumes.clone("big", await self.upload(image), size=5 * BS)
        v = await self.opened("big", writable=False)
        self.assertEqual(v.size, 5 * BS)
        self.assertEqual(await v.read(0, 5 * BS), image + bytes(5 * BS - len(image)))
        self.assertEqual([e.is_zero for e in (await self.volumes.info("big")).entries],
                         [False, False, True, True, True])

    async def test_origins_refused(self) -> None:
        """A live volume, a smaller size, another object size and an unknown
        name are no origin."""
        origin = await self.upload(_image(2))
        await self.volumes.create("live", BS)
        with self.assertRaises(ValueError):
            await self.volumes.clone("c", "live")
        with self.assertRaises(ValueError):
            await self.volumes.clone("c", origin, size=BS)
        with self.assertRaises(ValueError):
            await self.volumes.clone("c", mapfile.MapV2.empty(BS, BS * 2,
                                                              flags=mapfile.MAP_READONLY))
        with self.assertRaises(KeyError):
            await self.volumes.clone("c", "nothing")
        await self.volumes.clone("c", origin)
        with self.assertRaises(FileExistsError):
            await self.volumes.clone("c", origin)
        with self.assertRaises(FileExistsError):
            await self.volumes.create("c", BS)

    async def test_names(self) -> None:
        """Volume names are checked; ``names`` lists the volumes."""
        for bad in ("", ".hidden", "a/b", "x" * 90, "sp ace"):
            with self.assertRaises(ValueError):
                await self.volumes.create(bad, BS)
        await self.volumes.create("b", BS)
        await self.volumes.create("a", BS)
        self.assertEqual(await self.volumes.names(), ["a", "b"])
        with self.assertRaises(KeyError):
            await self.volumes.open("c", False)
        with self.assertRaises(KeyError):
            await self.volumes.remove("c")

    async def test_referenced(self) -> None:
        """What live maps need: the image's blocks and the maps' own."""
        image = _image(3)
        origin = await self.upload(image)
        await self.volumes.clone("r", origin)
        needed = await self.volumes.referenced()
        for e in origin.entries:
            if not e.is_zero:
                self.assertIn(e.name, needed)
        self.assertNotIn(EMPTY_HASH, needed)
        self.assertTrue(set(self.blocks.put_names) <= needed)

    async def test_clone_of_missing_blocks_refused(self) -> None:
        """A clone whose origin names blocks the store no longer has is
        refused and makes nothing; one that succeeds has refreshed them
        (a collection under way spares them)."""
        from snfd.archip.volumes import OriginIncomplete

        image = _image(3)
        origin = await self.upload(image)
        gone = origin.entries[0].name
        self.assertEqual(await self.file_blocks.delete([gone], time.time() + 60), [gone])
        with self.assertRaises(OriginIncomplete):
            await self.volumes.clone("c", origin)
        self.assertEqual(await self.volumes.names(), [])
        fresh = await self.upload(image)
        before = time.time() - 1
        await self.volumes.clone("c", fresh)
        self.assertEqual(await self.file_blocks.delete([e.name for e in fresh.entries
                                                        if not e.is_zero], before), [])


    async def test_clone_of_blocks_in_the_fallback(self) -> None:
        """While blocks move to a new store (``FallbackBlocks``), a clone of
        an image whose blocks only the old store has brings them over
        first (checked by name), and reads the image; one whose blocks
        neither has is refused as before."""
        from snfd.archip.volumes import OriginIncomplete
        from snfd.pithos.policies import FallbackBlocks

        image = _image(3)
        origin = await self.upload(image)   # into the old store
        new = FileBlockStore(os.path.join(self.root, "new-blocks"), reactor, block_size=BS)
        moving = FallbackBlocks(new, self.file_blocks)
        volumes = VolumeStore(os.path.join(self.root, "moving"), moving, reactor)
        names = [e.name for e in origin.entries if not e.is_zero]
        self.assertEqual(await new.missing(names), names)
        await volumes.clone("c", origin)
        self.assertEqual(await new.missing(names), [])
        v = await volumes.open("c", False)
        try:
            self.assertEqual(await v.read(0, v.size), image)
        finally:
            await v.close()
        other = await self.upload(_image(2))
        gone = other.entries[0].name
        self.assertEqual(await self.file_blocks.delete([gone], time.time() + 60), [gone])
        with self.assertRaises(OriginIncomplete):
            await volumes.clone("d", other)
        self.assertEqual(await volumes.names(), ["c"])

    async def test_whole_object_write_copies_nothing(self) -> None:
        """A write that covers a whole object of a clone makes the volume's
        own object without reading the origin's (nothing copied)."""
        image = _image(3)
        await self.volumes.clone("w", await self.upload(image))
        v = await self.opened("w")
        await v.write(0, b"n" * BS)
        self.assertEqual(self.volumes.counters.bytes_copied, 0)
        self.assertEqual(await v.read(0, len(image)), b"n" * BS + image[BS:])
        await v.write(BS + 1, b"x")  # a partial write still copies up
        self.assertEqual(self.volumes.counters.bytes_copied, 0)  # object 1 was zero
        await v.write(2 * BS, b"y")
        self.assertEqual(self.volumes.counters.bytes_copied, BS)

class GrowAndHashmapTests(_Base):
    async def test_grow(self) -> None:
        """A volume grows with zero objects, also while open; it never
        shrinks; a snapshot does not grow."""
        image = _image(2)
        await self.volumes.clone("g", await self.upload(image))
        v = await self.opened("g")
        grown = await self.volumes.grow("g", 4 * BS + 5)
        self.assertEqual(grown.size, 4 * BS + 5)
        self.assertEqual(v.size, 4 * BS + 5)
        await v.write(4 * BS, b"tail!")
        expected = image + bytes(4 * BS - len(image)) + b"tail!"
        self.assertEqual(await v.read(0, v.size), expected)
        with self.assertRaises(ValueError):
            await self.volumes.grow("g", BS)
        await v.close()
        self.open.remove(v)
        await self.assert_map_on_disk_sound("g", expected)
        await self.volumes.snapshot("g", "g-snap")
        with self.assertRaises(ValueError):
            await self.volumes.grow("g-snap", 8 * BS)

    async def test_snapshot_hashmap(self) -> None:
        """A snapshot's hashmap names content-addressed blocks of its bytes:
        shared blocks as they are, owned objects stored as blocks, zero
        objects as the empty block; a live volume has none."""
        image = _image(3)
        origin = await self.upload(image)
        await self.volumes.clone("h", origin, size=4 * BS)
        v = await self.opened("h")
        await v.write(BS + 7, b"written")
        await v.close()
        self.open.remove(v)
        with self.assertRaises(ValueError):
            await self.volumes.hashmap("h")
        await self.volumes.snapshot("h", "h-snap")
        size, hashes = await self.volumes.hashmap("h-snap")
        content = bytearray(image + bytes(4 * BS - len(image)))
        content[BS + 7:BS + 14] = b"written"
        self.assertEqual(size, 4 * BS)
        chunks = [bytes(content[i:i + BS]) for i in range(0, len(content), BS)]
        self.assertEqual(hashes, [block_hash(c) for c in chunks])
        self.assertEqual(hashes[0], origin.entries[0].name)
        self.assertEqual(hashes[3], EMPTY_HASH)
        self.assertEqual(await self.file_blocks.missing(hashes), [])

class CopyOnWriteTests(_Base):
    async def test_write_changes_only_that_clone(self) -> None:
        """Writing into one clone leaves the image and the other clone as
        they were; the rest of the written object keeps the image's bytes."""
        image = _image(4)
        origin = await self.upload(image)
        await self.volumes.clone("a", origin)
        await self.volumes.clone("b", origin)
        a = await self.opened("a")
        await a.write(BS + 100, b"hello")
        want = bytearray(image)
        want[BS + 100:BS + 105] = b"hello"
        self.assertEqual(await a.read(0, a.size), bytes(want))
        b = await self.opened("b", writable=False)
        self.assertEqual(await b.read(0, b.size), image)
        # The zero object 1 was filled, not copied.
        self.assertEqual(self.volumes.counters.copy_ups, 0)
        self.assertEqual(self.volumes.counters.zero_fills, 1)
        await a.write(10, b"first")
        await a.write(20, b"again")
        want[10:15], want[20:25] = b"first", b"again"
        self.assertEqual(self.volumes.counters.copy_ups, 1)
        self.assertEqual(self.volumes.counters.bytes_copied, BS)
        self.assertEqual(await a.read(0, a.size), bytes(want))
        await self.assert_map_on_disk_sound("a", bytes(want))
        self.assertEqual(await b.read(0, b.size), image)

    async def test_write_across_objects(self) -> None:
        """A write spanning objects copies up each once, saves the map, and
        reads back after a fresh store opens the same directories."""
        image = _image(4)
        await self.volumes.clone("a", await self.upload(image))
        a = await self.opened("a")
        data = os.urandom(2 * BS)
        await a.write(BS // 2, data)
        want = image[:BS // 2] + data + image[BS // 2 + 2 * BS:]
        self.assertEqual(await a.read(0, a.size), want)
        self.assertEqual(self.volumes.counters.copy_ups, 2)  # objects 0 and 2
        self.assertEqual(self.volumes.counters.zero_fills, 1)  # object 1
        await self.assert_map_on_disk_sound("a", want)
        # The last, partial object.
        await a.write(a.size - 3, b"end")
        want = want[:-3] + b"end"
        await self.assert_map_on_disk_sound("a", want)

    async def test_zero_volume(self) -> None:
        """A new volume reads zeros; writing it copies nothing."""
        await self.volumes.create("z", 3 * BS)
        z = await self.opened("z")
        self.assertEqual(await z.read(0, z.size), bytes(3 * BS))
        await z.write(BS + 5, b"data")
        await z.flush()
        self.assertEqual(self.volumes.counters.copy_ups, 0)
        self.assertEqual(self.volumes.counters.zero_fills, 1)
        self.assertEqual(self.volumes.counters.bytes_copied, 0)
        want = bytes(BS + 5) + b"data" + bytes(2 * BS - 9)
        self.assertEqual(await z.read(0, z.size), want)
        self.assertEqual(self.owned_files(), [mapfile.owned_name("z", 0, 1)])
        await self.assert_map_on_disk_sound("z", want)

    async def test_range_checks(self) -> None:
        """Reads and writes past the end are ValueError; writes to a volume
        opened for reading are PermissionError."""
        await self.volumes.create("r", 2 * BS + 7)
        v = await self.opened("r")
        self.assertEqual(await v.read(2 * BS, 7), bytes(7))
        for offset, length in ((2 * BS, 8), (-1, 1), (0, 2 * BS + 8), (2 * BS + 7, 1)):
            with self.assertRaises(ValueError):
                await v.read(offset, length)
        with self.assertRaises(ValueError):
            await v.write(2 * BS + 6, b"xx")
        with self.assertRaises(ValueError):
            await v.trim(0, 3 * BS)
        r = await self.opened("r", writable=False)
        self.assertTrue(r.read_only)
        with self.assertRaises(PermissionError):
            await r.write(0, b"x")
        with self.assertRaises(PermissionError):
            await r.write_zeroes(0, 1)


class ZeroTests(_Base):
    async def test_whole_objects_become_zero(self) -> None:
        """Zeroing or trimming whole objects makes them the zero object and
        drops the volume's own copies; nothing is copied up for it."""
        image = _image(4)
        await self.volumes.clone("t", await self.upload(image))
        v = await self.opened("t")
        await v.write(0, b"owned")
        self.assertEqual(len(self.owned_files()), 1)
        await v.write_zeroes(0, BS)
        await v.trim(2 * BS, v.size - 2 * BS)  # object 2 and the partial last one
        self.assertEqual(self.owned_files(), [])
        self.assertEqual(self.volumes.counters.copy_ups, 1)
        m = await self.volumes.info("t")
        self.assertEqual([e.is_zero for e in m.entries], [True, True, True, True])
        want = bytes(len(image))
        self.assertEqual(await v.read(0, v.size), want)
        await self.assert_map_on_disk_sound("t", want)

    async def test_partial_ranges(self) -> None:
        """Partial WRITE_ZEROES writes zeros (keeping the rest of the
        object); a partial TRIM leaves the data."""
        image = _image(3)
        await self.volumes.clone("p", await self.upload(image))
        v = await self.opened("p")
        await v.write_zeroes(10, 20)
        await v.trim(BS * 2 + 1, 100)
        want = image[:10] + bytes(20) + image[30:]
        self.assertEqual(await v.read(0, v.size), want)
        self.assertEqual(self.volumes.counters.copy_ups, 1)
        # Zeroes over a zero object store nothing.
        await v.write_zeroes(BS + 1, 10)
        self.assertEqual(len(self.owned_files()), 1)
        await self.assert_map_on_disk_sound("p", want)


class SnapshotTests(_Base):
    async def test_snapshot_then_write(self) -> None:
        """After a snapshot the volume's writes copy up into a new epoch;
        the snapshot still reads the old data and opens read-only."""
        image = _image(3)
        await self.volumes.clone("vol", await self.upload(image))
        v = await self.opened("vol")
        await v.write(0, b"before")
        before = b"before" + image[6:]
        snap = await self.volumes.snapshot("vol", "snap")
        self.assertTrue(snap.read_only)
        self.assertFalse(any(e.writable for e in snap.entries))
        await v.write(0, b"after!")
        after = b"after!" + image[6:]
        self.assertEqual(self.volumes.counters.copy_ups, 2)
        self.assertEqual(await v.read(0, v.size), after)
        s = await self.opened("snap", writable=True)
        self.assertTrue(s.read_only)
        with self.assertRaises(PermissionError):
            await s.write(0, b"x")
        self.assertEqual(await s.read(0, s.size), before)
        self.assertEqual(self.owned_files(), [mapfile.owned_name("vol", 0, 0),
                                              mapfile.owned_name("vol", 1, 0)])
        self.assertEqual((await self.volumes.info("vol")).epoch, 1)
        await self.assert_map_on_disk_sound("vol", after)
        await self.assert_map_on_disk_sound("snap", before)
        with self.assertRaises(FileExistsError):
            await self.volumes.snapshot("vol", "snap")

    async def test_clone_of_snapshot_and_removal(self) -> None:
        """A clone of a snapshot reads it; removing the volume keeps the
        objects the snapshot names; removing everything leaves none."""
        await self.volumes.create("vol", 2 * BS)
        v = await self.opened("vol")
        await v.write(BS, b"kept")
        await v.close()
        await self.volumes.snapshot("vol", "snap")
        await self.volumes.clone("child", "snap", size=3 * BS)
        want = bytes(BS) + b"kept" + bytes(2 * BS - 4)
        c = await self.opened("child")
        self.assertEqual(await c.read(0, c.size), want)
        await c.write(BS, b"mine")
        await c.close()
        await self.volumes.remove("vol")
        await self.assert_map_on_disk_sound("snap", want[:2 * BS])
        await self.volumes.remove("snap")
        await self.assert_map_on_disk_sound("child", bytes(BS) + b"mine" + want[BS + 4:])
        await self.volumes.remove("child")
        self.assertEqual(self.owned_files(), [])
        self.assertEqual(await self.volumes.names(), [])

    async def test_recreated_name_keeps_old_snapshot(self) -> None:
        """A volume made again under a removed one's name owns new names,
        so the old volume's snapshot keeps its data."""
        await self.volumes.create("vol", BS)
        v = await self.opened("vol")
        await v.write(0, b"old")
        await v.close()
        await self.volumes.snapshot("vol", "snap")
        await self.volumes.remove("vol")
        await self.volumes.create("vol", BS)
        v = await self.opened("vol")
        await v.write(0, b"new")
        await v.close()
        await self.assert_map_on_disk_sound("snap", b"old" + bytes(BS - 3))
        await self.assert_map_on_disk_sound("vol", b"new" + bytes(BS - 3))
        # After the removed volume's epoch (1, since its snapshot).
        self.assertEqual((await self.volumes.info("vol")).epoch, 2)

    async def test_sweep_restores_lost_floors(self) -> None:
        """A store whose epoch floors are gone (one from before they were
        kept, or a crash) gets them back from the surviving objects at the
        start-up sweep, so a recreated name still owns new objects."""
        await self.volumes.create("vol", BS)
        v = await self.opened("vol")
        await v.write(0, b"old")
        await v.close()
        await self.volumes.snapshot("vol", "snap")
        await self.volumes.remove("vol")
        epochs = os.path.join(self.root, "volumes", "epochs")
        self.assertEqual(os.listdir(epochs), ["vol"])
        os.unlink(os.path.join(epochs, "vol"))
        await self.volumes.sweep()
        await self.volumes.create("vol", BS)
        self.assertEqual((await self.volumes.info("vol")).epoch, 1)
        v = await self.opened("vol")
        await v.write(0, b"new")
        await v.close()
        await self.assert_map_on_disk_sound("snap", b"old" + bytes(BS - 3))

    async def test_no_floor_without_kept_objects(self) -> None:
        """A removed volume none of whose objects outlive it leaves no floor."""
        await self.volumes.create("vol", BS)
        v = await self.opened("vol")
        await v.write(0, b"x")
        await v.close()
        await self.volumes.remove("vol")
        self.assertFalse(os.path.exists(os.path.join(self.root, "volumes", "epochs")))
        self.assertEqual((await self.volumes.create("vol", BS)).epoch, 0)


class OpenTests(_Base):
    async def test_one_writer(self) -> None:
        """A second writer is refused while readers are not; readers see the
        writer's writes; closing lets another writer in."""
        await self.volumes.create("w", BS)
        w = await self.opened("w")
        with self.assertRaises(VolumeBusy):
            await self.volumes.open("w", True)
        with self.assertRaises(VolumeBusy):
            await self.volumes.remove("w")
        r = await self.opened("w", writable=False)
        await w.write(0, b"seen")
        self.assertEqual(await r.read(0, 4), b"seen")
        await w.close()
        w2 = await self.opened("w")
        await w2.write(4, b"!")
        self.assertEqual(await r.read(0, 5), b"seen!")
        await w2.close()
        await r.close()
        await self.volumes.remove("w")

    async def test_closed(self) -> None:
        """A closed handle refuses I/O; closing twice is harmless."""
        await self.volumes.create("c", BS)
        v = await self.volumes.open("c", True)
        await v.close()
        await v.close()
        with self.assertRaises(ValueError):
            await v.read(0, 1)


class ConcurrencyTests(_Base):
    async def test_concurrent_writes_copy_up_once(self) -> None:
        """Writes racing into one object copy it up once and all land."""
        image = _image(2)
        await self.volumes.clone("c", await self.upload(image))
        v = await self.opened("c")
        writes = [defer.ensureDeferred(v.write(i * 100, b"%03d" % i)) for i in range(20)]
        await defer.gatherResults(writes)
        want = bytearray(image)
        for i in range(20):
            want[i * 100:i * 100 + 3] = b"%03d" % i
        self.assertEqual(self.volumes.counters.copy_ups, 1)
        self.assertEqual(await v.read(0, v.size), bytes(want))
        await self.assert_map_on_disk_sound("c", bytes(want))

    async def test_snapshot_while_open(self) -> None:
        """A snapshot of an open volume freezes its live map: the next write
        through the open handle copies up."""
        await self.volumes.create("o", BS)
        v = await self.opened("o")
        await v.write(0, b"one")
        await self.volumes.snapshot("o", "o-snap")
        await v.write(0, b"two")
        s = await self.opened("o-snap", writable=False)
        self.assertEqual(await s.read(0, 3), b"one")
        self.assertEqual(await v.read(0, 3), b"two")
        self.assertEqual(self.volumes.counters.copy_ups, 1)


class SweepTests(_Base):
    async def test_sweep(self) -> None:
        """After a crash, temporary files and owned objects no map names are
        removed; named objects stay."""
        await self.volumes.create("s", 2 * BS)
        v = await self.volumes.open("s", True)
        await v.write(0, b"keep")
        with self.assertRaises(VolumeBusy):
            await self.volumes.sweep()
        await v.close()
        objects = os.path.join(self.root, "volumes", "objects")
        for junk in (mapfile.owned_name("s", 0, 1), ".w.x.123"):
            with open(os.path.join(objects, junk), "wb") as f:
                f.write(b"junk")
        with open(os.path.join(self.root, "volumes", "maps", ".w.s.1"), "wb") as f:
            f.write(b"{")
        self.assertEqual(await self.store().sweep(), 3)
        self.assertEqual(self.owned_files(), [mapfile.owned_name("s", 0, 0)])
        await self.assert_map_on_disk_sound("s", b"keep" + bytes(2 * BS - 4))


CRASH_RECORD = 3000  # not aligned: records straddle objects
CRASH_PER_ROUND = 150

_WRITER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from twisted.internet import defer, task
    from snfd.pithos.blocks import FileBlockStore
    from snfd.archip.volumes import VolumeStore
    from tests.archip.test_volumes import BS, CRASH_RECORD, CRASH_PER_ROUND, crash_record

    async def main(reactor):
        root, first = sys.argv[1], int(sys.argv[3])
        blocks = FileBlockStore(os.path.join(root, "blocks"), reactor, block_size=BS)
        store = VolumeStore(os.path.join(root, "volumes"), blocks, reactor)
        v = await store.open("crash", True)
        for i in range(first, first + CRASH_PER_ROUND):
            await v.write(i * CRASH_RECORD, crash_record(i))
            await v.flush()
            sys.stdout.write(f"{i}\\n")
            sys.stdout.flush()
        await defer.Deferred()

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
""")


def crash_record(i: int) -> bytes:
    """What the crash test's writer writes at ``i * CRASH_RECORD``."""
    return (b"%08d" % i) * (CRASH_RECORD // 8) + b"\xff" * (CRASH_RECORD % 8)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CrashTests(_Base):
    def writer(self, first: int) -> list[str]:
        """The command of a writer process over the test's store."""
        return [sys.executable, "-c", _WRITER, self.root, REPO, str(first)]

    def run_and_kill(self, first: int, acks_wanted: int) -> list[int]:
        """Run a writer process over the test's store writing records
        ``first, first + 1...``; SIGKILL it after ``acks_wanted``
        acknowledged writes; the acknowledgements it printed."""
        child = subprocess.Popen(self.writer(first), stdout=subprocess.PIPE, text=True)
        acks: list[int] = []
        watchdog = threading.Timer(60, child.kill)  # never hang the suite
        watchdog.start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                acks.append(int(line))
                if len(acks) >= acks_wanted:
                    break
            time.sleep(random.uniform(0, 0.01))  # often inside a copy-up
            child.send_signal(signal.SIGKILL)
            acks.extend(int(ln) for ln in child.stdout.read().split())
        finally:
            watchdog.cancel()
            if child.poll() is None:
                child.kill()
            child.wait()
        self.assertEqual(child.returncode, -signal.SIGKILL)
        return acks

    async def test_kill_during_copy_ups(self) -> None:
        """Writers killed with SIGKILL amid copy-ups (several rounds on one
        volume): every acknowledged write reads back, the map names only
        objects that exist, and the sweep leaves the volume intact."""
        rounds = 4
        size = rounds * CRASH_PER_ROUND * CRASH_RECORD
        image = _image(size // BS // 2)
        await self.volumes.clone("crash", await self.upload(image), size=size)
        acks: list[int] = []
        for round_ in range(rounds):
            acks += await deferToThread(self.run_and_kill, round_ * CRASH_PER_ROUND,
                                        random.randint(5, 40))
        fresh = self.store()
        await fresh.sweep()
        m = await fresh.info("crash")
        present = set(self.owned_files())
        self.assertTrue({e.name for e in m.entries if e.archip} <= present)
        v = await self.opened("crash", writable=False, store=fresh)
        for i in acks:
            self.assertEqual(await v.read(i * CRASH_RECORD, CRASH_RECORD), crash_record(i), i)
        # Where nothing was acknowledged (past each round's last ack and the
        # one write in flight), the image's bytes or zeros remain.
        last = {r: max([i for i in acks if i // CRASH_PER_ROUND == r]) for r in range(rounds)}
        for r, i in last.items():
            at = (i + 2) * CRASH_RECORD
            end = (r + 1) * CRASH_PER_ROUND * CRASH_RECORD
            want = (image + bytes(size - len(image)))[at:end]
            self.assertEqual(await v.read(at, end - at), want)
