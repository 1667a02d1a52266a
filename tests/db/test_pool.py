"""The shared pool: named, timed, retried interactions against real PostgreSQL."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.errors
from twisted.internet import defer, reactor, task, threads
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from snfd.db import pool as pool_module
from snfd.db.pool import Database, DatabaseImpaired, DatabaseUnavailable, impairment
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
    def test_read_runs_outside_a_transaction(self):
        """``read`` runs its statements in autocommit: no transaction is
        open during them (so ``now()`` moves between statements), it is
        timed under its name, and the connection goes back to transactions:
        a ``run`` that fails afterwards still rolls back all it wrote."""
        db, metrics = self.make_db(fresh_database(self))
        yield defer.ensureDeferred(db.run("test.setup", _setup_txn))

        def two_instants_txn(txn):
            txn.execute("SELECT now(), pg_sleep(0.01)")
            first = txn.fetchone()[0]
            txn.execute("SELECT now(), txid_current_if_assigned()")
            second, xid = txn.fetchone()
            return first, second, xid

        first, second, xid = yield defer.ensureDeferred(db.read("test.instants", two_instants_txn))
        self.assertLess(first, second)
        self.assertIsNone(xid)
        first, second, _ = yield defer.ensureDeferred(db.run("test.instants", two_instants_txn))
        self.assertEqual(first, second)  # one transaction: one now()
        self.assertEqual(_sample(metrics, "snfd_db_interaction_seconds_count",
                                 {"name": "test.instants", "outcome": "ok"}), 2)

        def write_then_fail_txn(txn):
            txn.execute("UPDATE counter SET n = 7 WHERE id = 1")
            txn.execute("SELECT * FROM no_such_table")

        for _ in range(5):  # every connection of the pool has served a read
            yield defer.gatherResults([defer.ensureDeferred(db.read("test.read", _read_txn))
                                       for _ in range(5)])
            with self.assertRaises(psycopg2.errors.UndefinedTable):
                yield defer.ensureDeferred(db.run("test.fail", write_then_fail_txn))
        n = yield defer.ensureDeferred(db.read("test.read", _read_txn))
        self.assertEqual(n, 0)

    @defer.inlineCallbacks
    def test_read_errors_propagate(self):
        """An error in a ``read`` reaches the caller, and the connection
        serves the next interaction."""
        db, _ = self.make_db(fresh_database(self))
        with self.assertRaises(psycopg2.errors.UndefinedTable):
            yield defer.ensureDeferred(db.read("test.fail", _failing_txn))
        yield defer.ensureDeferred(db.run("test.setup", _setup_txn))
        n = yield defer.ensureDeferred(db.read("test.read", _read_txn))
        self.assertEqual(n, 0)

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

    @defer.inlineCallbacks
    def test_stalled_transaction_is_ended_and_retried(self):
        """A session left idle inside its transaction (its node frozen, as
        by SIGSTOP, while it holds a row lock) is ended by PostgreSQL after
        the pool's idle-in-transaction timeout: another interaction
        waiting for the row goes on while the stalled one still sleeps,
        and the stalled one, resumed, is run again and succeeds."""
        db, _ = self.make_db(fresh_database(self))
        yield defer.ensureDeferred(db.run("test.setup", _setup_txn))
        order: list[str] = []
        attempts: list[int] = []

        def stalled_txn(txn):
            attempts.append(1)
            txn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            if len(attempts) == 1:
                time.sleep(pool_module._IDLE_IN_TRANSACTION + 1.5)
                order.append("stalled woke")

        def waiter_txn(txn):
            txn.execute("UPDATE counter SET n = n + 10 WHERE id = 1")
            order.append("waiter done")

        stalled = defer.ensureDeferred(db.run("test.stalled", stalled_txn))
        yield wait_for(lambda: attempts, what="the stalled transaction")
        yield task.deferLater(reactor, 0.2, lambda: None)
        yield defer.ensureDeferred(db.run("test.waiter", waiter_txn))
        yield stalled
        self.assertEqual(order[:2], ["waiter done", "stalled woke"])
        self.assertEqual(len(attempts), 2)
        n = yield defer.ensureDeferred(db.run("test.read", _read_txn))
        self.assertEqual(n, 11)


def _error(cls, code: str, message: str) -> psycopg2.Error:
    """A psycopg2 error as the server sends it (SQLSTATE ``code``)."""
    return type(cls.__name__, (cls,), {"pgcode": code})(message)


class _Clock(task.Clock):
    """A clock for a pool whose threads never start."""

    def callWhenRunning(self, f, *args, **kwargs):
        return None


class _ScriptedPool:
    """Stands for the pool's connections: an interaction whose first
    argument is a key of ``failing`` fails with its value; others succeed."""

    def __init__(self):
        self.failing: dict[str, Exception] = {}

    def runInteraction(self, interaction, *args, **kwargs):
        error = self.failing.get(args[0] if args else None)
        return defer.fail(error) if error is not None else defer.succeed(None)


class ImpairedTests(unittest.TestCase):
    """A server that answers but cannot do the work (SQLSTATE class 53,
    an I/O error, a read-only filesystem) fails the interaction at once
    with ``DatabaseImpaired``, logged with ``snfd.repeats`` discipline;
    ``tests/db/test_storage_faults.py`` shows it on a real full disk."""

    def test_classified_by_sqlstate(self):
        cases = [
            (psycopg2.errors.DiskFull, "53100", "could not extend file", (
                "the database is out of disk space", 30)),
            (psycopg2.errors.OutOfMemory, "53200", "out of memory", (
                "the database is out of memory", 5)),
            (psycopg2.errors.TooManyConnections, "53300", "too many clients", (
                "the database has too many connections", 5)),
            (psycopg2.errors.InsufficientResources, "53000", "too many open files", (
                "the database is out of resources", 5)),
            (psycopg2.errors.IoError, "58030", "could not read block: Input/output error", (
                "the database's storage is failing", 30)),
            (psycopg2.errors.InsufficientPrivilege, "42501",
             'could not open file "base/5/1": Read-only file system', (
                 "the database's storage is read-only", 30)),
            (psycopg2.errors.InsufficientPrivilege, "42501", "permission denied for table t",
             None),
            (psycopg2.errors.UniqueViolation, "23505", "duplicate key", None),
            (psycopg2.OperationalError, None, "server closed the connection", None),
        ]
        for cls, code, message, expected in cases:
            error = _error(cls, code, message) if code else cls(message)
            self.assertEqual(impairment(error), expected, (code, message))
        self.assertIsNone(impairment(OSError("no")))

    def test_not_retried_and_logged_with_discipline(self):
        clock = _Clock()
        db = Database("postgresql://unused/db", clock, Metrics())
        pool = _ScriptedPool()
        db._pool = pool
        lines: list[str] = []

        def seen(event):
            if event.get("log_namespace") == "snfd.db":
                lines.append(formatEvent(event))

        globalLogPublisher.addObserver(seen)
        self.addCleanup(globalLogPublisher.removeObserver, seen)

        def run(name):
            d = defer.ensureDeferred(db.run(name, lambda txn, name: None, name))
            self.assertTrue(d.called)  # at once: no retry, no wait
            return d

        pool.failing["test.write"] = _error(psycopg2.errors.DiskFull, "53100",
                                            "could not extend file: No space left on device")
        for at in (0, 1, 2, 61):
            clock.advance(at - clock.seconds())
            failure = self.failureResultOf(run("test.write"), DatabaseImpaired)
            self.assertEqual(failure.value.headers, {"Retry-After": "30"})
            self.successResultOf(run("test.read"))  # reads do not end the streak
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("database interactions failed: the database is out of disk space"
                      " (test.write: could not extend file: No space left on device);"
                      " answering 503", lines[0])
        self.assertIn("database interactions still failing: 3 times in the last 61 s",
                      lines[1])

        del pool.failing["test.write"]
        clock.advance(9)
        self.successResultOf(run("test.write"))
        self.successResultOf(run("test.write"))
        self.assertEqual(lines[2:], ["database interactions recovered after 4 failures in 70 s"])
