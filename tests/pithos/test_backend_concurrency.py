"""The storage backend under concurrent requests: parallel writes keep
statistics and quota usage exact, and a garbage collection running while
clients upload never removes a block of a committed version."""

from __future__ import annotations

import random

from twisted.internet import defer, reactor

from snfd import errors
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.pithos.backend import MissingBlocks
from snfd.pithos.hashmap import hashmap_of
from snfd.plugins.identity import plugin as identity_plugin
from snfd.quota.serials import Charger
from tests.pithos.test_backend import ALICE, BS, NODE_SCHEMA, PITHOS, BackendTestCase
from tests.pithos.test_backend_quota import DISK


class ConcurrencyTests(BackendTestCase):
    schemas = (NODE_SCHEMA, identity_plugin.schema, PITHOS)

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.qh = LocalQuotaHolder(self.db)
        await self.qh.register_resources("pithos", [DISK])
        await self.qh.set_limit(f"user:{ALICE}", f"project:{ALICE}", DISK.name, 10 ** 9)
        await self.qh.set_limit(f"project:{ALICE}", None, DISK.name, 10 ** 12)
        self.backend = self.make_backend(charger=Charger(self.db, self.qh, "pithos"))
        await self.container()
        await self.container("d")

    async def test_parallel_writes(self):
        """Many puts, overwrites, copies and deletes at once in two
        containers: statistics equal a recount and the quota usage equals
        the bytes stored, with no commission left pending."""
        rng = random.Random(7)

        async def one(i: int) -> None:
            name = f"o{rng.randrange(6)}"
            cont = rng.choice(["c", "d"])
            try:
                if i % 5 == 4:
                    await self.backend.delete_object(ALICE, ALICE, cont, name)
                elif i % 5 == 3:
                    await self.backend.copy_object(ALICE, ALICE, cont, name, ALICE,
                                                   "d" if cont == "c" else "c", name)
                else:
                    await self.put(name, bytes([i % 256]) * rng.randrange(1, 300),
                                   container=cont)
            except errors.NotFound:
                pass

        await defer.gatherResults([defer.ensureDeferred(one(i)) for i in range(60)],
                                  consumeErrors=True)
        total = 0
        for cont in ("c", "d"):
            listed = await self.backend.objects(ALICE, ALICE, cont)
            info = await self.backend.container(ALICE, ALICE, cont)
            self.assertEqual((info.count, info.bytes),
                             (len(listed), sum(o.size for o in listed)))
            total += info.bytes
        await self.backend.charger.drain()
        [h] = await self.qh.quotas([f"user:{ALICE}"], [f"project:{ALICE}"], [DISK.name])
        self.assertEqual((h.usage_min, h.usage_max), (total, total))
        self.assertEqual(await self.qh.pending("pithos"), [])

    async def test_collection_during_uploads(self):
        """A collector with no grace period runs again and again while
        clients upload (re-uploading what it removed before their version
        committed): every committed version's blocks are still there."""
        self.clock = reactor  # block ages are wall-clock times
        self.backend = self.make_backend(charger=self.backend.charger)
        done = False

        async def collector() -> int:
            runs = 0
            while not done:
                await self.backend.collect_garbage(0, batch=7)
                runs += 1
            return runs

        async def client(n: int) -> None:
            for i in range(8):
                data = bytes(f"{n}-{i}-", "ascii") * 40
                while True:
                    try:
                        await self.put(f"f{n}", data, container="d")
                        break
                    except MissingBlocks:
                        continue  # the collector took them; upload again

        running = defer.ensureDeferred(collector())
        await defer.gatherResults([defer.ensureDeferred(client(n)) for n in range(4)],
                                  consumeErrors=True)
        done = True
        self.assertGreater(await running, 0)
        for n in range(4):
            info = await self.backend.object(ALICE, ALICE, "d", f"f{n}")
            self.assertEqual(info.hashes, hashmap_of(bytes(f"{n}-7-", "ascii") * 40, BS))
            self.assertEqual(await self.blocks.missing(info.hashes), [])

    async def test_parallel_writes_of_one_object(self):
        """Writes of one object hold its container only share-locked and
        its path under a lock of its own: twenty PUTs at once leave one
        current version and nineteen in history, the container counting
        one object of the last size, and twenty PUTs of other objects at
        the same time all land."""
        sizes = list(range(1, 21))

        async def same(size: int) -> None:
            await self.put("one", b"s" * size)

        async def other(i: int) -> None:
            await self.put(f"other{i}", b"o" * 10)

        await defer.gatherResults(
            [defer.ensureDeferred(same(s)) for s in sizes]
            + [defer.ensureDeferred(other(i)) for i in range(20)], consumeErrors=True)
        entries = [e for e in await self.backend.history(ALICE, ALICE, "c", prefix="one")]
        self.assertEqual(len(entries), 20)
        self.assertEqual([e.latest for e in entries], [True] + [False] * 19)
        current = await self.backend.object(ALICE, ALICE, "c", "one")
        info = await self.backend.container(ALICE, ALICE, "c")
        self.assertEqual((info.count, info.bytes), (21, current.size + 20 * 10))
        await self.backend.charger.drain()
        [h] = await self.qh.quotas([f"user:{ALICE}"], [f"project:{ALICE}"], [DISK.name])
        self.assertEqual(h.usage_max, current.size + 200)
