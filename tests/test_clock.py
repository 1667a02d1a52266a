"""The node's clocks when the wall clock is set: cutoffs that a jump
forward does not make later, stamps that do not follow a jump back, and
timers that keep their delays after a jump back."""

from __future__ import annotations

import threading

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from snfd.clock import AgeCutoffs, ClockWatch, FlooredWallClock, MonotonicClock

HOUR = 3600.0


def clocks() -> tuple[task.Clock, task.Clock]:
    """A wall clock at some epoch time and a monotonic clock, both manual."""
    wall, steady = task.Clock(), task.Clock()
    wall.advance(2**30)
    steady.advance(1000)
    return wall, steady


class MonotonicClockTests(unittest.TestCase):
    def test_never_goes_back(self):
        """Readings of the monotonic clock never decrease."""
        clock = MonotonicClock()
        readings = [clock.seconds() for _ in range(1000)]
        self.assertEqual(readings, sorted(readings))


class AgeCutoffsTests(unittest.TestCase):
    def test_jump_forward_followed_only_after_the_age(self):
        """Set forward an hour, the wall clock does not move a cutoff for
        ``age`` (60 s) by the hour: the cutoff stays what the clock read 60 s
        of monotonic time ago until 60 s have passed since the first cutoff
        asked for after the jump, when it is ``now - age`` again."""
        wall, steady = clocks()
        cutoffs = AgeCutoffs(wall, steady)
        start = wall.seconds()
        wall.advance(100)
        steady.advance(100)
        self.assertEqual(cutoffs.cutoff(60), wall.seconds() - 60)
        wall.advance(HOUR + 5)
        steady.advance(5)
        self.assertEqual(cutoffs.cutoff(60), start + 45)
        wall.advance(30)
        steady.advance(30)
        self.assertEqual(cutoffs.cutoff(60), start + 75)
        wall.advance(30)
        steady.advance(30)
        self.assertEqual(cutoffs.cutoff(60), wall.seconds() - 60)

    def test_jump_back_followed_at_once(self):
        """Set back, the wall clock takes the cutoff back at once."""
        wall, steady = clocks()
        cutoffs = AgeCutoffs(wall, steady)
        wall.advance(100)
        steady.advance(100)
        cutoffs.cutoff(60)
        wall.advance(5 - HOUR)
        steady.advance(5)
        self.assertEqual(cutoffs.cutoff(60), wall.seconds() - 60)

    def test_no_jump(self):
        """Without jumps a cutoff is ``now - age``, however young the
        process."""
        wall, steady = clocks()
        cutoffs = AgeCutoffs(wall, steady)
        for _ in range(5):
            self.assertEqual(cutoffs.cutoff(60), wall.seconds() - 60)
            wall.advance(25)
            steady.advance(25)


class FlooredWallClockTests(unittest.TestCase):
    def test_jump_back_not_followed(self):
        """Set back an hour, the wall clock does not take a floored clock
        back: it goes on by the monotonic time; set forward, it is followed."""
        wall, steady = clocks()
        floored = FlooredWallClock(wall, steady)
        start = floored.seconds()
        wall.advance(5 - HOUR)
        steady.advance(5)
        self.assertEqual(floored.seconds(), start + 5)
        wall.advance(2 * HOUR)
        steady.advance(1)
        self.assertEqual(floored.seconds(), wall.seconds())

    def test_read_from_threads(self):
        """Readings from several threads at once never go back."""
        floored = FlooredWallClock(MonotonicClock(), MonotonicClock())
        seen: list[list[float]] = [[] for _ in range(4)]

        def read(out: list[float]) -> None:
            for _ in range(2000):
                out.append(floored.seconds())

        workers = [threading.Thread(target=read, args=(out,)) for out in seen]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        for out in seen:
            self.assertEqual(out, sorted(out))


class ClockWatchTests(unittest.TestCase):
    def test_timers_keep_their_delays_after_a_jump_back(self):
        """After the wall clock is set back an hour, a pending call runs
        after the delay it was given, and a looping call ticks on time
        (without the watch both would wait the hour out)."""
        wall, steady = clocks()
        watch = ClockWatch(None, steady, wall=wall)
        watch.check()
        fired: list[str] = []
        wall.callLater(10, fired.append, "ten")
        ticks: list[float] = []
        loop = task.LoopingCall(lambda: ticks.append(steady.seconds()))
        loop.clock = wall
        loop.start(1.0, now=False)
        self.addCleanup(loop.stop)

        def run(seconds: float, step: float = 0.5) -> None:
            for _ in range(int(seconds / step)):
                wall.advance(step)
                steady.advance(step)

        run(4)
        self.assertEqual(len(ticks), 4)
        wall.advance(-HOUR)
        self.assertEqual(watch.check(), -HOUR)
        run(5.5)
        self.assertEqual(fired, [])
        self.assertEqual(len(ticks), 9)
        run(0.5)
        self.assertEqual(fired, ["ten"])

    def test_jump_forward_and_drift(self):
        """A jump forward is reported (calls due within it have run, as the
        reactor runs them); a difference under the tolerance is no jump."""
        wall, steady = clocks()
        watch = ClockWatch(None, steady, wall=wall, tolerance=1.0)
        watch.check()
        wall.advance(0.5)
        self.assertEqual(watch.check(), 0.0)
        pending = wall.callLater(2 * HOUR, lambda: None)
        wall.advance(HOUR)
        steady.advance(1)
        self.assertEqual(watch.check(), HOUR - 1)
        self.assertEqual(pending.getTime(), wall.seconds() + HOUR)
        pending.cancel()

    @defer.inlineCallbacks
    def test_thread_runs_checks_until_stopped(self):
        """Started, the watch checks the clocks from its own thread on the
        reactor thread every period; stopped, it stops."""
        reads: list[threading.Thread] = []

        class Wall:
            def seconds(self) -> float:
                reads.append(threading.current_thread())
                return float(reactor.seconds())

            def getDelayedCalls(self) -> list:
                return []

        watch = ClockWatch(reactor, MonotonicClock(), wall=Wall(), period=0.01)
        watch.startService()
        yield task.deferLater(reactor, 0.2, lambda: None)
        watch.stopService()
        count = len(reads)
        self.assertGreater(count, 3)
        self.assertEqual(set(reads), {threading.main_thread()})
        yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(reads), count)
