"""Concurrent commissions on real PostgreSQL: many clients at once never get
more than the limit, never deadlock, and never drive a holding negative."""

from __future__ import annotations

import datetime
import random
import threading

import psycopg2
from twisted.internet import defer
from twisted.trial import unittest

from snfd.identity import quota_store
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.quota import NoCapacityError, NoQuantityError, Provision, QuotaError, Resource
from snfd.testing.identity import identity_database
from snfd.testing.postgres import started_pool

LIMIT = 5
KEYS = [
    ("user:a", "project:p", "cyclades.vm"),
    ("project:p", None, "cyclades.vm"),
    ("user:a", "project:p", "cyclades.ram"),
    ("project:p", None, "cyclades.ram"),
]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _setup_txn(txn):
    quota_store.register_resources_txn(txn, [
        Resource("cyclades.vm", "", None, "compute", "cyclades_compute"),
        Resource("cyclades.ram", "", "bytes", "compute", "cyclades_compute")])
    for holder, source, resource in KEYS:
        quota_store.set_limit_txn(txn, holder, source, resource, LIMIT)


def shuffled(quantity: int, rng: random.Random) -> list[Provision]:
    """One provision per holding, in an order of the caller's choosing."""
    provisions = [Provision(h, s, r, quantity) for h, s, r in KEYS]
    rng.shuffle(provisions)
    return provisions


def run_threads(count: int, target) -> list[BaseException]:
    """Run ``target(index, barrier)`` in ``count`` threads; their errors."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index):
        try:
            target(index, barrier)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    return errors


class ParallelQuotaTests(unittest.TestCase):
    def setUp(self):
        self.dsn = identity_database(self)
        conn = psycopg2.connect(self.dsn)
        with conn.cursor() as cur:
            _setup_txn(cur)
        conn.commit()
        conn.close()

    def holdings(self) -> dict[tuple, tuple[int, int, int]]:
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                found = quota_store.holdings_txn(cur)
            conn.rollback()
        finally:
            conn.close()
        return {(h.holder, h.source, h.resource): (h.limit, h.usage_min, h.usage_max)
                for h in found}

    def test_threads_never_exceed_the_limit(self):
        """Thirty clients, each on its own connection and listing the four
        holdings in its own order, race to import one unit: exactly LIMIT
        succeed, the rest get NoCapacityError, and no deadlock escapes."""
        lock = threading.Lock()
        outcomes: list[str] = []

        def client(index, barrier):
            rng = random.Random(index)
            conn = psycopg2.connect(self.dsn)
            try:
                barrier.wait(30)
                with conn.cursor() as cur:
                    try:
                        quota_store.issue_txn(cur, "c", shuffled(1, rng), f"c{index}",
                                              False, _now())
                    except NoCapacityError:
                        conn.rollback()
                        outcome = "full"
                    else:
                        conn.commit()
                        outcome = "ok"
                with lock:
                    outcomes.append(outcome)
            finally:
                conn.close()

        errors = run_threads(30, client)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(outcomes), ["full"] * 25 + ["ok"] * LIMIT)
        for key, (limit, usage_min, usage_max) in self.holdings().items():
            self.assertEqual((limit, usage_min, usage_max), (LIMIT, 0, LIMIT), key)

    def test_mixed_issue_and_resolve_under_contention(self):
        """Clients that import, release, accept and reject concurrently over
        the same holdings in different orders never deadlock or go out of
        bounds; once every client has released what it got accepted, every
        holding is back at zero."""
        def client(index, barrier):
            rng = random.Random(1000 + index)
            conn = psycopg2.connect(self.dsn)
            held = 0  # units this client imported and got accepted
            try:
                barrier.wait(30)
                for _ in range(15):
                    quantity = -1 if held and rng.random() < 0.4 else 1
                    with conn.cursor() as cur:
                        try:
                            serial = quota_store.issue_txn(
                                cur, f"c{index}", shuffled(quantity, rng), "", False, _now())
                        except (NoCapacityError, NoQuantityError):
                            conn.rollback()
                            continue
                    conn.commit()
                    accept = rng.random() < 0.6
                    with conn.cursor() as cur:
                        result = quota_store.resolve_txn(
                            cur, f"c{index}", [serial] if accept else [],
                            [] if accept else [serial], _now())
                    conn.commit()
                    assert result.failed == [], result
                    if accept:
                        held += quantity
                # Leave nothing behind so the totals can be compared.
                if held:
                    with conn.cursor() as cur:
                        quota_store.issue_txn(cur, f"c{index}", shuffled(-held, rng), "",
                                              False, _now(), auto_accept=True)
                    conn.commit()
            finally:
                conn.close()

        errors = run_threads(12, client)
        self.assertEqual(errors, [])
        for key, value in self.holdings().items():
            self.assertEqual(value, (LIMIT, 0, 0), key)

    @defer.inlineCallbacks
    def test_pool_concurrent_issues(self):
        """Through LocalQuotaHolder and the pool, 24 concurrent issues
        against a limit of 5 yield exactly 5 serials; the rest are refused."""
        db = started_pool(self, self.dsn, max_connections=8)
        qh = LocalQuotaHolder(db)
        rng = random.Random(7)

        async def one():
            try:
                return await qh.issue("c", shuffled(1, rng))
            except QuotaError as e:
                return e

        results = yield defer.gatherResults(
            [defer.ensureDeferred(one()) for _ in range(24)], consumeErrors=True)
        serials = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, NoCapacityError)]
        self.assertEqual((len(serials), len(refused)), (LIMIT, 24 - LIMIT))
        pending = yield defer.ensureDeferred(qh.pending("c"))
        self.assertEqual(pending, sorted(serials))
        for value in self.holdings().values():
            self.assertEqual(value, (LIMIT, 0, LIMIT))
