"""Garbage collection of blocks: only blocks no version references and
older than the grace period go, and a collection running concurrently
with uploads never removes a block a committed version references."""

from __future__ import annotations

from twisted.internet import defer, reactor, task

from snfd import errors
from snfd.pithos import store
from snfd.pithos.backend import COLLECTION_WAIT, MissingBlocks
from snfd.pithos.blocks import every_name
from snfd.pithos.hashmap import EMPTY_HASH, hashmap_of
from tests.pithos.test_backend import ALICE, BS, BackendTestCase


def _blocks(data: bytes) -> list[bytes]:
    return [data[i:i + BS] for i in range(0, len(data), BS)]


class GarbageCollectionTests(BackendTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        # Block ages and the collection's cutoff come from the same manual
        # clock: a test ages blocks by advancing it.
        self.blocks = self.make_blocks(clock=self.clock)
        self.backend = self.make_backend()
        await self.container()
        await self.container("n", versioning="none")

    async def test_collects_only_unreferenced_old_blocks(self):
        """Blocks of current versions, of history and of fresh uploads
        stay; blocks of removed versions, deleted objects without
        versioning and old unreferenced uploads go."""
        keep = b"K" * BS + b"k" * 10
        await self.put("keep", keep)
        await self.put("hist", b"H1")
        await self.put("hist", b"H2")
        await self.put("gone", b"G1", container="n")
        await self.put("gone", b"G2", container="n")
        await self.put("del", b"D1", container="n")
        await self.backend.delete_object(ALICE, ALICE, "n", "del")
        [old_upload] = await self.blocks.put([b"U-old"])
        self.clock.advance(3600)
        [fresh_upload] = await self.blocks.put([b"U-fresh"])
        every = await every_name(self.blocks)

        scanned, removed = await self.backend.collect_garbage(60, batch=2)
        self.assertEqual((scanned, removed), (len(every), 3))
        gone = [hashmap_of(b"G1", BS)[0], hashmap_of(b"D1", BS)[0], old_upload]
        self.assertEqual(sorted(await self.blocks.missing(every)), sorted(gone))
        for name, data in (("keep", keep), ("hist", b"H2")):
            info = await self.backend.object(ALICE, ALICE, "c", name)
            self.assertEqual(info.hashes, hashmap_of(data, BS))
        self.assertEqual(await self.blocks.missing([fresh_upload, EMPTY_HASH]), [])
        self.assertEqual(await self.backend.collect_garbage(60), (len(every) - 3, 0))

    async def test_purged_history_is_collected(self):
        """Purging history makes its blocks collectable."""
        v1 = await self.put("o", b"first")
        self.tick()
        await self.put("o", b"second")
        await self.backend.delete_object(ALICE, ALICE, "c", "o", until=v1.mtime)
        self.clock.advance(3600)
        self.assertEqual((await self.backend.collect_garbage(60))[1], 1)
        self.assertEqual(await self.blocks.missing(hashmap_of(b"first", BS)),
                         hashmap_of(b"first", BS))

    async def test_blocks_being_collected_are_missing(self):
        """While a collection has marked a block for deletion, a version
        referencing it waits; when the mark goes and the block stayed (the
        collection spared it as young) the version is made, when the
        collection took it the write is refused with MissingBlocks naming
        it, and when the mark outlasts COLLECTION_WAIT it is refused too.
        A mark older than a crashed collection could hold is ignored."""
        data = b"marked"
        [name] = await self.blocks.put(_blocks(data))

        # Spared: the writer goes on once the mark is gone.
        await self.db.run("t", store.gc_mark_txn, [name])
        put = defer.ensureDeferred(self.put("o", data))
        await self._waiting(put)
        await self.db.run("t", store.gc_unmark_txn, [name])
        self.clock.advance(1)
        self.assertEqual((await put).hashes, [name])

        # Taken: the writer is told the block is missing.
        [taken] = await self.blocks.put([b"taken"])
        await self.db.run("t", store.gc_mark_txn, [taken])
        put = defer.ensureDeferred(self.backend.put_object(
            ALICE, ALICE, "c", "p", size=5, hashes=[taken], content_type="x/y"))
        await self._waiting(put)
        await self.blocks.delete([taken], self.clock.seconds() + 1)
        await self.db.run("t", store.gc_unmark_txn, [taken])
        self.clock.advance(1)
        e = await self.fails(MissingBlocks, put)
        self.assertEqual((e.hashes, e.collecting), ([taken], False))

        # A mark that stays: refused after the wait.
        [kept] = await self.blocks.put(_blocks(b"kept"))
        await self.db.run("t", store.gc_mark_txn, [kept])
        put = defer.ensureDeferred(self.put("q", b"kept"))
        await self._waiting(put)
        self.clock.pump([1.0] * int(COLLECTION_WAIT + 2))
        e = await self.fails(MissingBlocks, put)
        self.assertEqual((e.hashes, e.collecting), ([kept], True))

        await self.db.run("t", _age_marks_txn, 2 * store.GC_MARK_SECONDS)
        await self.put("q", b"kept")
        self.assertEqual(await self.db.run("t", store.gc_mark_txn, [kept]), [])

    async def _waiting(self, put: defer.Deferred) -> None:
        """Until ``put`` waits on the manual clock for a collection."""
        for _ in range(500):
            if self.clock.getDelayedCalls() or put.called:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        if put.called:
            await put
        self.assertFalse(put.called, "the write did not wait for the collection")

    async def test_copy_keeps_blocks_referenced(self):
        """A copy shares its source's map: the blocks survive the source's
        removal and are collected after the copy's."""
        await self.put("src", b"shared", container="n")
        await self.backend.copy_object(ALICE, ALICE, "n", "src", ALICE, "n", "dst")
        await self.backend.delete_object(ALICE, ALICE, "n", "src")
        self.clock.advance(3600)
        self.assertEqual((await self.backend.collect_garbage(60))[1], 0)
        await self.backend.delete_object(ALICE, ALICE, "n", "dst")
        self.assertEqual((await self.backend.collect_garbage(60))[1], 1)
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "n", "dst"))

    async def test_holders_blocks_are_spared(self):
        """Blocks a registered holder reports (a volume map's) stay when no
        version references them, and go once the holder lets them go; a
        failing holder makes the run delete nothing; the block-references
        object provides IBlockReferences."""
        from zope.interface.verify import verifyObject

        from snfd.interfaces import IBlockReferences

        refs = self.backend.references
        verifyObject(IBlockReferences, refs)
        [held, loose] = await self.blocks.put([b"held by a map", b"nobody's"])
        self.clock.advance(3600)
        holding = {held}

        async def holder() -> set[str]:
            return set(holding)

        async def broken() -> set[str]:
            raise OSError("maps unreadable")

        refs.add_holder("maps", holder)
        self.assertEqual((await self.backend.collect_garbage(60))[1], 1)
        self.assertEqual(await self.blocks.missing([held, loose]), [loose])
        refs.add_holder("broken", broken)
        holding.clear()
        self.clock.advance(3600)
        self.assertEqual(await self.backend.collect_garbage(60), (0, 0))
        self.assertEqual(await self.blocks.missing([held]), [])
        self.flushLoggedErrors(OSError)
        refs.remove_holder("broken")
        self.clock.advance(3600)
        self.assertEqual((await self.backend.collect_garbage(60))[1], 1)
        self.assertEqual(await self.blocks.missing([held]), [held])
        # The held block's mark was taken back: a version may name it again.
        self.assertEqual(await self.db.run("t", store.gc_marked_txn, [held]), [])


def _age_marks_txn(txn, seconds: float) -> None:
    txn.execute("UPDATE pithos_gc_pending SET marked_at = now() - make_interval(secs => %s)",
                (seconds,))
