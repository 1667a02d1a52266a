"""The shared pool: named, timed, retried interactions against real PostgreSQL."""

from __future__ import annotations

import time

import psycopg2
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from snfd.db.pool import Database, DatabaseUnavailable
from snfd.metrics import Metrics
from snfd.testing.postgres import fresh_database, throwaway_postgres
from tests.cluster.test_election import wait_for


def _setup_txn(txn):
    txn.execute("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
    txn.execute("INSERT INTO counter VALUES (1, 0)")


def _serializable_increment_txn(txn, pause):
    txn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    txn.execute("SELECT n FROM counter WHERE id = 1")
    (n,) = txn.fetchone()
    time.sleep(pause)  # widen the window so that concurrent runs conflict
    txn.execute("UPDATE counter SET n = %s WHERE id = 1", (n + 1,))


def _read_txn(txn):
    txn.execute("SELECT n FROM counter WHERE id = 1")
    return txn.fetchone()[0]


def _ping_txn(txn):
    txn.execute("SELECT 1")


def _failing_txn(txn):
    txn.execute("SELECT * FROM no_such_table")


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


class PoolTests(unittest.TestCase):
    def make_db(self, dsn: str, **kw) -> tuple[Database, Metrics]:
        metrics = Metrics()
        db = Database(dsn, reactor, metrics, min_connections=1, max_connections=5, **kw)
        db.start()
        self.addCleanup(db.close)
        return db, metrics

    @defer.inlineCallbacks
    def test_serialization_failures_are_retried(self):
        """Concurrent serializable read-modify-write interactions all succeed
        (failures are retried) and the result is exactly serial."""
        db, metrics = self.make_db(fresh_database(self))
        yield defer.ensureDeferred(db.run("test.setup", _setup_txn))
        runs = [defer.ensureDeferred(db.run("test.increment", _serializable_increment_txn, 0.05))
                for _ in range(5)]
        yield defer.gatherResults(runs, consumeErrors=True)
        n = yield defer.ensureDeferred(db.run("test.read", _read_txn))
        self.assertEqual(n, 5)
        self.assertGreater(_sample(metrics, "snfd_db_retries_total",
                                   {"name": "test.increment", "reason": "SerializationFailure"}), 0)
        self.assertEqual(_sample(metrics, "snfd_db_interaction_seconds_count",
                                 {"name": "test.increment", "outcome": "ok"}), 5)

    @defer.inlineCallbacks
    def test_sql_errors_propagate(self):
        """An error in the SQL itself is not retried and reaches the caller."""
        db, metrics = self.make_db(fresh_database(self))
        with self.assertRaises(psycopg2.errors.UndefinedTable):
            yield defer.ensureDeferred(db.run("test.fail", _failing_txn))
        self.assertEqual(_sample(metrics, "snfd_db_interaction_seconds_count",
                                 {"name": "test.fail", "outcome": "error"}), 1)

    @defer.inlineCallbacks
    def test_survives_postgres_restart(self):
        """After PostgreSQL restarts, interactions succeed again; one issued
        while it is down waits and succeeds once it is back."""
        pg = throwaway_postgres(self)
        db, metrics = self.make_db(pg.dsn, retry_window=60)
        yield defer.ensureDeferred(db.run("test.setup", _setup_txn))
        yield threads.deferToThread(pg.restart)
        n = yield defer.ensureDeferred(db.run("test.read", _read_txn))
        self.assertEqual(n, 0)
        yield threads.deferToThread(pg.stop)
        retries = {"name": "test.read", "reason": "connection"}
        before = _sample(metrics, "snfd_db_retries_total", retries)
        pending = defer.ensureDeferred(db.run("test.read", _read_txn))
        # The barrier: two failed attempts counted, so the interaction met
        # the database down and went on waiting.
        yield defer.ensureDeferred(wait_for(
            lambda: _sample(metrics, "snfd_db_retries_total", retries) >= before + 2,
            what="two retries while the database is down"))
        self.assertFalse(pending.called)
        yield threads.deferToThread(pg.start)
        n = yield pending
        self.assertEqual(n, 0)
        self.assertGreater(_sample(metrics, "snfd_db_retries_total",
                                   {"name": "test.read", "reason": "connection"}), 0)

    @defer.inlineCallbacks
    def test_unavailable_after_retry_window(self):
        """When the database stays down, the interaction fails with
        DatabaseUnavailable after the retry window, and ping reports it."""
        pg = throwaway_postgres(self)
        db, metrics = self.make_db(pg.dsn, retry_window=1.0)
        yield defer.ensureDeferred(db.ping(5))
        yield threads.deferToThread(pg.stop)
        with self.assertRaises(DatabaseUnavailable) as raised:
            yield defer.ensureDeferred(db.run("test.read", _read_txn))
        # A 503 with Retry-After for the APIs, the reason kept for the log.
        self.assertEqual((raised.exception.code, raised.exception.headers),
                         (503, {"Retry-After": "5"}))
        self.assertNotIn("connect", raised.exception.message)
        self.assertIn("unreachable", str(raised.exception))
        # The outage is known now: the next call tries once and gives up
        # without retrying through another window.
        with self.assertRaises(DatabaseUnavailable):
            yield defer.ensureDeferred(db.run("test.again", _read_txn))
        self.assertEqual(_sample(metrics, "snfd_db_retries_total",
                                 {"name": "test.again", "reason": "connection"}), 0)
        with self.assertRaises(DatabaseUnavailable):
            yield defer.ensureDeferred(db.ping(2))
        # Back up: calls succeed and the outage is over.
        yield threads.deferToThread(pg.start)
        yield defer.ensureDeferred(db.run("test.up", _ping_txn))
        self.assertIsNone(db.down_since)
