"""Leader election on a real PostgreSQL, in process: one leader, handover,
fencing, and stepping down when the lock session dies."""

from __future__ import annotations

import time

import psycopg2
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from zope.interface import implementer

from snfd.cluster import LostLeadership, store
from snfd.cluster.election import LeaderElection
from snfd.db import migrations
from snfd.db.pool import Database
from snfd.interfaces import ILeaderDuty
from snfd.metrics import Metrics
from snfd.testing.postgres import fresh_database


@implementer(ILeaderDuty)
class RecordingDuty:
    name = "recording"

    def __init__(self):
        self.events = []
        self.leadership = None

    def start(self, leadership):
        self.leadership = leadership
        self.events.append(("start", leadership.epoch))

    def stop(self):
        self.events.append(("stop", self.leadership.epoch))


def _mark_txn(txn, who):
    txn.execute("CREATE TABLE IF NOT EXISTS marks (who text)")
    txn.execute("INSERT INTO marks VALUES (%s)", (who,))


async def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


async def more_rounds(*elections: LeaderElection, rounds: int = 2) -> None:
    """Wait until each of ``elections`` has completed ``rounds`` more
    election rounds than it had at the call (``LeaderElection.rounds``)."""
    targets = [(e, e.rounds + rounds) for e in elections]
    await wait_for(lambda: all(e.rounds >= n for e, n in targets),
                   what=f"{rounds} more election rounds on each node")


def node_database(test: unittest.TestCase) -> tuple[str, Database]:
    """A fresh database with the node schema, and a started pool on it
    (closed when ``test`` ends)."""
    dsn = fresh_database(test)
    conn = psycopg2.connect(dsn)
    migrations.upgrade(conn, [migrations.NODE_SCHEMA])
    conn.close()
    db = Database(dsn, reactor, Metrics(), min_connections=1, max_connections=4)
    db.start()
    test.addCleanup(db.close)
    return dsn, db


class ElectionTests(unittest.TestCase):
    def setUp(self):
        self.dsn, self.db = node_database(self)

    def node(self, name):
        election = LeaderElection(reactor, self.dsn, name, self.db, Metrics(),
                                  interval=0.05, session_timeout=1.0)
        duty = RecordingDuty()
        election.add_duty(duty)
        election.startService()
        self.addCleanup(lambda: election.stopService() if election.running else None)
        return election, duty

    async def leadership(self):
        return await self.db.run("test.leadership", store.leadership_txn)

    @defer.inlineCallbacks
    def test_one_leader_and_handover(self):
        """Of two nodes exactly one leads and runs the duty; when it stops,
        the other takes over with a higher epoch and the database names it."""
        a, duty_a = self.node("node-a")
        b, duty_b = self.node("node-b")
        yield defer.ensureDeferred(wait_for(lambda: a.is_leader or b.is_leader, what="a leader"))
        # The barrier for "and the other did not lead too": each node
        # completes two more rounds, so each asked the database again after
        # a leader existed and acted on the answer.
        yield defer.ensureDeferred(more_rounds(a, b))
        self.assertEqual([a.is_leader, b.is_leader].count(True), 1)
        leader, follower = (a, b) if a.is_leader else (b, a)
        lduty, fduty = (duty_a, duty_b) if a.is_leader else (duty_b, duty_a)
        self.assertEqual(lduty.events, [("start", leader.epoch)])
        self.assertEqual(fduty.events, [])
        state = yield defer.ensureDeferred(self.leadership())
        self.assertEqual((state.leader, state.epoch), (leader._node_id, leader.epoch))

        first_epoch = leader.epoch
        yield leader.stopService()
        self.assertEqual(lduty.events, [("start", first_epoch), ("stop", first_epoch)])
        yield defer.ensureDeferred(wait_for(lambda: follower.is_leader, what="takeover"))
        self.assertGreater(follower.epoch, first_epoch)
        self.assertEqual(fduty.events, [("start", follower.epoch)])
        state = yield defer.ensureDeferred(self.leadership())
        self.assertEqual((state.leader, state.epoch), (follower._node_id, follower.epoch))

    @defer.inlineCallbacks
    def test_fencing_refuses_stale_term(self):
        """A write through an old term is refused once a newer term began,
        and the refusal makes that node step down."""
        a, duty_a = self.node("node-a")
        yield defer.ensureDeferred(wait_for(lambda: a.is_leader, what="leader"))
        old = duty_a.leadership
        yield defer.ensureDeferred(old.fenced("test.mark", _mark_txn, "a"))
        # Another node starts a newer term behind a's back (as after a freeze).
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            store.begin_term_txn(cur, "node-x")
        conn.close()
        with self.assertRaises(LostLeadership):
            yield defer.ensureDeferred(old.fenced("test.mark", _mark_txn, "a-stale"))
        yield defer.ensureDeferred(wait_for(lambda: ("stop", old.epoch) in duty_a.events,
                                            what="step down"))

        def marks(txn):
            txn.execute("SELECT who FROM marks ORDER BY who")
            return [r[0] for r in txn.fetchall()]
        self.assertEqual((yield defer.ensureDeferred(self.db.run("test.marks", marks))), ["a"])

    @defer.inlineCallbacks
    def test_steps_down_when_lock_session_dies(self):
        """When the server ends the leader's lock session, the leader stops its
        duties at once, and leadership is taken again (by some node)."""
        a, duty_a = self.node("node-a")
        yield defer.ensureDeferred(wait_for(lambda: a.is_leader, what="leader"))
        epoch = a.epoch
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = %s", ("snfd-leader:node-a",))
        conn.close()
        yield defer.ensureDeferred(wait_for(lambda: ("stop", epoch) in duty_a.events,
                                            what="step down"))
        yield defer.ensureDeferred(wait_for(lambda: a.epoch > epoch, what="new term"))
