"""Garbage collection's grace when the wall clock is set: blocks stamped
with a ``FlooredWallClock`` and cutoffs from ``AgeCutoffs`` (as
``snfd.pithos.service`` wires them) spare a fresh block whichever way the
clock jumped, and a block an upload is about to reference survives."""

from __future__ import annotations

from twisted.internet import reactor, task

from snfd.clock import AgeCutoffs, FlooredWallClock
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.hashmap import hashmap_of
from tests.pithos.test_backend import ALICE, BS, BackendTestCase

DAY = 86400.0
GRACE = 60.0


class GraceClockJumpTests(BackendTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        # self.clock is the wall clock; time passing moves both.
        self.steady = task.Clock()
        self.blocks = FileBlockStore(self.mktemp(), reactor, block_size=BS,
                                     clock=FlooredWallClock(self.clock, self.steady))
        self.backend = self.make_backend()
        self.cutoffs = AgeCutoffs(self.clock, self.steady)
        await self.container()

    def passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.steady.advance(seconds)

    async def collect(self, cutoff: float | None = None) -> int:
        cutoff = self.cutoffs.cutoff(GRACE) if cutoff is None else cutoff
        return (await self.backend.collect_garbage(GRACE, cutoff=cutoff))[1]

    async def test_wall_clock_forward_spares_an_upload_in_flight(self):
        """A block uploaded a second before the wall clock was set forward
        a day is not collected, and the object naming it is then created;
        once the grace of real time passed after the jump, unreferenced
        blocks stored before and after it go."""
        self.passes(2 * GRACE)
        [early] = await self.blocks.put([b"stored before"])
        [block] = await self.blocks.put([b"uploaded"])
        self.passes(1)
        self.clock.advance(DAY)
        self.assertEqual(await self.collect(), 0)
        await self.backend.put_object(ALICE, ALICE, "c", "o", size=8,
                                      hashes=hashmap_of(b"uploaded", BS),
                                      content_type="application/octet-stream")
        [stray] = await self.blocks.put([b"stray"])
        self.passes(GRACE / 2)
        self.assertEqual(await self.collect(), 0)
        self.passes(GRACE)
        self.assertEqual(await self.collect(), 2)
        self.assertEqual(sorted(await self.blocks.missing([early, block, stray])),
                         sorted([early, stray]))

    async def test_wall_clock_back_during_a_collection(self):
        """A collection's cutoff was taken, then the wall clock was set back
        a day and a block stored (a volume map saved mid-collection): the
        block does not look a day old, and is spared."""
        self.passes(2 * GRACE)
        cutoff = self.cutoffs.cutoff(GRACE)
        self.clock.advance(-DAY)
        self.passes(1)
        [block] = await self.blocks.put([b"map chunk"])
        self.assertEqual(await self.collect(cutoff), 0)
        self.assertEqual(await self.blocks.missing([block]), [])
