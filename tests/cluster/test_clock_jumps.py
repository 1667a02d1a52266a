"""Leader election when the wall clock is set: a real PostgreSQL, with the
rounds scheduled on a manual wall clock and the lease measured on a manual
monotonic clock.  A wall clock set forward an hour does not make a healthy
leader step down; a leader frozen for the session timeout while the wall
clock was set back stops leading, by the monotonic clock."""

from __future__ import annotations

import threading

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from snfd.clock import ClockWatch
from snfd.cluster import LostLeadership
from snfd.cluster.election import LeaderElection
from snfd.metrics import Metrics
from tests.cluster.test_election import RecordingDuty, _mark_txn, node_database, wait_for

HOUR = 3600.0
INTERVAL = 0.25
SESSION_TIMEOUT = 2.0  # the lease: 3/4 of it, 1.5 s


class ClockJumpTests(unittest.TestCase):
    def setUp(self):
        self.dsn, self.db = node_database(self)
        # The wall clock (what the reactor schedules on) and the monotonic one.
        self.wall, self.steady = task.Clock(), task.Clock()
        self.wall.advance(2**30)
        self.steady.advance(1000)

    async def leader(self) -> tuple[LeaderElection, RecordingDuty]:
        """A node that has become the leader (its first round)."""
        election = LeaderElection(reactor, self.dsn, "clock-jump-node", self.db, Metrics(),
                                  interval=INTERVAL, session_timeout=SESSION_TIMEOUT,
                                  clock=self.wall, monotonic=self.steady)
        duty = RecordingDuty()
        election.add_duty(duty)
        election.startService()
        self.addCleanup(lambda: election.stopService() if election.running else None)
        await wait_for(lambda: election.is_leader, what="leadership")
        return election, duty

    async def rounds(self, election: LeaderElection, n: int = 1, *,
                     wall: float = INTERVAL, steady: float = INTERVAL) -> None:
        """Let ``n`` rounds run, each after ``wall`` seconds of the wall
        clock and ``steady`` of the monotonic one, waiting for each."""
        for _ in range(n):
            done = election.rounds + 1
            self.steady.advance(steady)
            self.wall.advance(wall)
            await wait_for(lambda done=done: election.rounds >= done,
                           what="an election round")

    @defer.inlineCallbacks
    def test_wall_clock_forward_keeps_a_healthy_leader(self):
        """The wall clock set forward an hour (one round's time passing):
        the leader goes on leading in the same term, its duty never
        stopped."""
        election, duty = yield defer.ensureDeferred(self.leader())
        epoch = election.epoch
        yield defer.ensureDeferred(self.rounds(election, wall=HOUR))
        yield defer.ensureDeferred(self.rounds(election, 4))
        self.assertTrue(election.is_leader)
        self.assertEqual(election.epoch, epoch)
        self.assertEqual(duty.events, [("start", epoch)])

    @defer.inlineCallbacks
    def test_wall_clock_forward_during_a_slow_ping(self):
        """The wall clock set forward an hour while a ping waits for the
        lock session: the reactor runs the ping's timeout at once, but the
        ping has not waited its timeout of monotonic time, so the answer
        that comes is taken and the leader goes on leading."""
        election, duty = yield defer.ensureDeferred(self.leader())
        epoch = election.epoch
        # The lock session is slow to answer: its thread is busy.
        slow = threading.Event()
        election._threads.callInThread(slow.wait)
        self.addCleanup(slow.set)
        done = election.rounds + 1
        self.steady.advance(INTERVAL)
        self.wall.advance(INTERVAL)
        self.wall.advance(HOUR)
        self.steady.advance(0.1)
        slow.set()
        yield defer.ensureDeferred(wait_for(lambda: election.rounds >= done,
                                            what="the slow round"))
        yield defer.ensureDeferred(self.rounds(election, 2))
        self.assertTrue(election.is_leader)
        self.assertEqual(duty.events, [("start", epoch)])

    @defer.inlineCallbacks
    def test_frozen_leader_steps_down_though_wall_clock_went_back(self):
        """A leader frozen for the session timeout of monotonic time, while
        the wall clock was set back an hour: it no longer says it leads at
        once, its next round comes on time (the clock watch keeps the
        round's timer to its delay) and steps down, and it wins a new
        term after."""
        election, duty = yield defer.ensureDeferred(self.leader())
        epoch = election.epoch
        watch = ClockWatch(reactor, self.steady, wall=self.wall)
        watch.check()
        self.steady.advance(SESSION_TIMEOUT)
        self.wall.advance(SESSION_TIMEOUT - HOUR)
        self.assertFalse(election.is_leader)
        self.assertEqual(watch.check(), -HOUR)
        self.wall.advance(0)
        yield defer.ensureDeferred(wait_for(lambda: ("stop", epoch) in duty.events,
                                            what="the step down"))
        for _ in range(40):
            if election.epoch > epoch:
                break
            yield defer.ensureDeferred(self.rounds(election))
        self.assertTrue(election.is_leader)
        self.assertGreater(election.epoch, epoch)
        self.assertEqual(duty.events, [("start", epoch), ("stop", epoch),
                                       ("start", election.epoch)])

    @defer.inlineCallbacks
    def test_lapsed_lease_refuses_writes_before_any_round(self):
        """Once the lease ran out by the monotonic clock (the wall clock set
        back meanwhile, no round run since), a leader-only write is refused
        without reaching the database and the node steps down."""
        election, duty = yield defer.ensureDeferred(self.leader())
        epoch = election.epoch
        term = duty.leadership
        self.steady.advance(SESSION_TIMEOUT)
        self.wall.advance(-HOUR)
        with self.assertRaises(LostLeadership):
            yield defer.ensureDeferred(term.fenced("test.mark", _mark_txn, "late"))
        yield defer.ensureDeferred(wait_for(lambda: ("stop", epoch) in duty.events,
                                            what="the step down"))
        self.assertFalse(election.is_leader)

        def marks(txn):
            txn.execute("SELECT to_regclass('marks')")
            return txn.fetchone()[0]
        self.assertIsNone((yield defer.ensureDeferred(self.db.run("test.marks", marks))))
