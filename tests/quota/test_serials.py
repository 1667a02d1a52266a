"""The charging side of the commission protocol: a service's Charger issues,
settles and reconciles its commissions with the in-process quota holder,
including crashes between issuing and settling."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg2
from twisted.internet import defer, reactor
from twisted.trial import unittest

from snfd import errors
from snfd.cluster import store as cluster_store
from snfd.cluster.membership import Membership
from snfd.db import migrations
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.quota import NoCapacityError, Resource, user_and_project
from snfd.quota import serials as qs
from snfd.quota.serials import Charger
from snfd.testing.identity import identity_database
from snfd.testing.postgres import fresh_database, recorded_runs, started_pool

DISK = Resource("pithos.diskspace", "Storage", "bytes", "object-store", "pithos_object-store")


def upload(size: int):
    return user_and_project("u1", "p1", "pithos.diskspace", size)


class FlakyHolder:
    """Passes everything to the real holder, except that ``resolve`` fails
    while ``broken`` is set (the identity node is unreachable)."""

    def __init__(self, real):
        self.real = real
        self.broken = False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)  # not a ledger: zope asks for __provides__
        return getattr(self.real, name)

    async def resolve(self, clientkey, accept=(), reject=()):
        if self.broken:
            raise errors.ServiceUnavailable("identity unreachable")
        return await self.real.resolve(clientkey, accept, reject)


async def set_up_charger(testcase: Any, wrap: Any) -> None:
    """Give ``testcase`` a quota holder on a fresh database (``qh``: user
    u1 may use 100 bytes of pithos.diskspace in project p1, which has
    1000), ``holder`` = ``wrap(qh)`` and a pithos ``charger`` over it."""
    testcase.db = started_pool(testcase, identity_database(testcase))
    testcase.qh = LocalQuotaHolder(testcase.db)
    await testcase.qh.register_resources("pithos", [DISK])
    await testcase.qh.set_limit("user:u1", "project:p1", "pithos.diskspace", 100)
    await testcase.qh.set_limit("project:p1", None, "pithos.diskspace", 1000)
    testcase.holder = wrap(testcase.qh)
    testcase.charger = Charger(testcase.db, testcase.holder, "pithos")


class ChargerTests(unittest.TestCase):
    def setUp(self):
        return defer.ensureDeferred(set_up_charger(self, FlakyHolder))

    async def usage(self) -> tuple[int, int]:
        [h] = await self.qh.quotas(["user:u1"], ["project:p1"], ["pithos.diskspace"])
        return h.usage_min, h.usage_max

    async def record(self, serial: int) -> qs.SerialRecord:
        return (await self.db.run("test.records", qs.records_txn, "pithos", [serial]))[serial]

    async def test_issue_records_undecided_serial(self):
        """issue() reserves the quota at the holder and records the serial
        as undecided, attached to the resource key given."""
        serial = await self.charger.issue(upload(10), "put a", resource_key="acct/c/a")
        self.assertEqual(await self.usage(), (0, 10))
        rec = await self.record(serial)
        self.assertEqual((rec.pending, rec.resolved, rec.resource_key),
                         (True, False, "acct/c/a"))
        [found] = await self.db.run("test.for_resource", qs.for_resource_txn, "pithos",
                                    "acct/c/a")
        self.assertEqual(found.serial, serial)

    async def test_refused_issue_records_nothing(self):
        """A commission the holder refuses leaves no serial behind."""
        try:
            await self.charger.issue(upload(101))
        except NoCapacityError:
            pass
        else:
            self.fail("NoCapacityError not raised")
        self.assertEqual(await self.db.run("test.undecided", qs.undecided_txn, "pithos"), [])

    async def test_settle_accept_and_reject(self):
        """settle(accept=True) makes the usage final, settle(accept=False)
        gives the reservation back; both rows end up resolved."""
        kept = await self.charger.issue(upload(10))
        dropped = await self.charger.issue(upload(20))
        self.assertTrue(await self.charger.settle(kept, accept=True))
        self.assertFalse(await self.charger.settle(dropped, accept=False))
        self.assertEqual(await self.usage(), (10, 10))
        self.assertEqual(await self.qh.pending("pithos"), [])
        for serial, accept in ((kept, True), (dropped, False)):
            rec = await self.record(serial)
            self.assertEqual((rec.pending, rec.accept, rec.resolved), (False, accept, True))

    async def test_settle_twice_is_harmless(self):
        """A second settle, even with the other decision, changes nothing
        and reports the decision that stands."""
        serial = await self.charger.issue(upload(10))
        await self.charger.settle(serial, accept=True)
        self.assertTrue(await self.charger.settle(serial, accept=False))
        self.assertTrue(await self.charger.settle(serial, accept=True))
        self.assertEqual(await self.usage(), (10, 10))

    async def test_crash_between_issue_and_settle(self):
        """A serial issued by a process that died before deciding is
        rejected by reconcile, which returns the reservation."""
        serial = await self.charger.issue(upload(30))
        survivor = Charger(self.db, self.qh, "pithos")
        self.assertEqual(await survivor.reconcile(), ([], [serial]))
        self.assertEqual(await self.usage(), (0, 0))
        rec = await self.record(serial)
        self.assertEqual((rec.pending, rec.accept, rec.resolved), (False, False, True))
        self.assertEqual(await survivor.reconcile(), ([], []))

    async def test_decision_committed_before_crash_is_accepted(self):
        """A serial whose acceptance was recorded in the service's own
        transaction is accepted by reconcile after a crash."""
        serial = await self.charger.issue(upload(30))
        rec = await self.db.run("test.commit", qs.decide_txn, "pithos", serial, True)
        self.assertTrue(rec.accept)
        self.assertEqual(await Charger(self.db, self.qh, "pithos").reconcile(),
                         ([serial], []))
        self.assertEqual(await self.usage(), (30, 30))

    async def test_unrecorded_serial_is_rejected(self):
        """A commission issued but never recorded (the process died right
        after the holder answered) is rejected by reconcile."""
        serial = await self.qh.issue("pithos", upload(5))
        self.assertEqual(await self.charger.reconcile(), ([], [serial]))
        self.assertEqual(await self.usage(), (0, 0))
        rec = await self.record(serial)
        self.assertEqual((rec.accept, rec.resolved), (False, True))

    async def test_settle_later_batches_decided_serials(self):
        """Serials decided in the change's own transaction and handed to
        settle_later reach the holder in the background: after drain()
        the usage is final, nothing is pending and every row is resolved."""
        kept = [await self.charger.issue(upload(10), record=False) for _ in range(3)]
        dropped = await self.charger.issue(upload(5), record=False)
        for serial in kept:
            await self.db.run("test.commit", qs.decide_txn, "pithos", serial, True)
            self.charger.settle_later(serial, True)
        self.charger.settle_later(dropped, False)
        await self.charger.drain()
        self.assertEqual(await self.usage(), (30, 30))
        self.assertEqual(await self.qh.pending("pithos"), [])
        for serial in [*kept, dropped]:
            rec = await self.record(serial)
            self.assertEqual((rec.accept, rec.resolved), (serial != dropped, True))

    async def test_settle_later_failure_is_left_to_reconcile(self):
        """When the holder cannot be reached the background settle gives
        up quietly; reconcile accepts the decided serial later."""
        serial = await self.charger.issue(upload(10), record=False)
        await self.db.run("test.commit", qs.decide_txn, "pithos", serial, True)
        self.holder.broken = True
        self.charger.settle_later(serial, True)
        await self.charger.drain()
        self.flushLoggedErrors(errors.ServiceUnavailable)
        self.assertEqual(await self.usage(), (0, 10))
        self.holder.broken = False
        self.assertEqual(await self.charger.reconcile(), ([serial], []))
        self.assertEqual(await self.usage(), (10, 10))

    async def test_unreachable_holder_then_reconcile(self):
        """When the holder cannot be told, settle raises and keeps the
        decision; reconcile later accepts the serial."""
        serial = await self.charger.issue(upload(10))
        self.holder.broken = True
        try:
            await self.charger.settle(serial, accept=True)
        except errors.ServiceUnavailable:
            pass
        else:
            self.fail("ServiceUnavailable not raised")
        [rec] = await self.db.run("test.unresolved", qs.unresolved_txn, "pithos")
        self.assertEqual((rec.serial, rec.accept), (serial, True))
        self.holder.broken = False
        self.assertEqual(await self.charger.reconcile(), ([serial], []))
        self.assertEqual(await self.usage(), (10, 10))
        self.assertEqual(await self.db.run("test.unresolved", qs.unresolved_txn, "pithos"), [])

    async def test_resolved_elsewhere_is_marked(self):
        """A decided row whose serial the holder no longer lists (resolved
        before the crash, not yet marked) is marked resolved by reconcile."""
        serial = await self.charger.issue(upload(10))
        await self.db.run("test.decide", qs.decide_txn, "pithos", serial, True)
        await self.qh.resolve("pithos", accept=[serial])
        self.assertEqual(await self.charger.reconcile(), ([], []))
        self.assertTrue((await self.record(serial)).resolved)

    async def test_late_accept_after_reconcile_sees_rejection(self):
        """Once reconcile rejected an undecided serial, a late decision to
        accept it reports the rejection instead of accepting."""
        serial = await self.charger.issue(upload(10))
        await self.charger.reconcile()
        rec = await self.db.run("test.commit", qs.decide_txn, "pithos", serial, True)
        self.assertFalse(rec.accept)
        self.assertFalse(await self.charger.settle(serial, accept=True))
        self.assertEqual(await self.usage(), (0, 0))

    async def test_grace_spares_young_serials(self):
        """With a grace period, undecided serials younger than it (recorded
        or not) are left pending; without one they are rejected."""
        recorded = await self.charger.issue(upload(10))
        unrecorded = await self.qh.issue("pithos", upload(5))
        self.assertEqual(await self.charger.reconcile(grace=3600), ([], []))
        self.assertEqual(await self.qh.pending("pithos"), [recorded, unrecorded])
        self.assertEqual(await self.charger.reconcile(), ([], [recorded, unrecorded]))

    async def test_reconcile_leaves_other_components_alone(self):
        """Reconciling one component never touches another's commissions."""
        theirs = await self.qh.issue("cyclades", upload(10))
        self.assertEqual(await self.charger.reconcile(), ([], []))
        self.assertEqual(await self.qh.pending("cyclades"), [theirs])

    async def test_forget_resolved(self):
        """Old resolved rows can be deleted; undecided ones are kept."""
        done = await self.charger.issue(upload(1))
        await self.charger.settle(done, accept=True)
        open_ = await self.charger.issue(upload(1))
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
        count = await self.db.run("test.forget", qs.forget_resolved_txn, "pithos", later)
        self.assertEqual(count, 1)
        rows = await self.db.run("test.records", qs.records_txn, "pithos", [done, open_])
        self.assertEqual(sorted(rows), [open_])


class LedgerChargerTests(ChargerTests):
    """The same with the holder itself: it shares the database
    (``IQuotaLedger``), so the charger issues and records in one
    transaction, and decides, resolves and marks in one.  The tests of an
    unreachable holder do not apply."""

    def setUp(self):
        return defer.ensureDeferred(set_up_charger(self, lambda qh: qh))

    async def test_settle_later_failure_is_left_to_reconcile(self):
        pass

    async def test_unreachable_holder_then_reconcile(self):
        pass

    test_settle_later_failure_is_left_to_reconcile.skip = (  # type: ignore[attr-defined]
        "the holder is reached through the database")
    test_unreachable_holder_then_reconcile.skip = (  # type: ignore[attr-defined]
        "the holder is reached through the database")

    async def test_two_transactions_a_commission(self):
        """An issue and its settlement are one transaction each."""
        names = recorded_runs(self, self.db)
        serial = await self.charger.issue(upload(10), resource_key="acct/c/a")
        self.assertTrue(await self.charger.settle(serial, accept=True))
        self.assertEqual(names, ["quota.issue", "quota.settle"])
        self.assertEqual(await self.usage(), (10, 10))
        rec = await self.record(serial)
        self.assertEqual((rec.pending, rec.accept, rec.resolved, rec.resource_key),
                         (False, True, True, "acct/c/a"))


class BootTests(unittest.TestCase):
    """A node's charger names its boot in each commission; reconciliation
    settles the commissions of a boot that is over at once, grace or not."""

    def setUp(self):
        return defer.ensureDeferred(self._set_up())

    async def _set_up(self) -> None:
        await set_up_charger(self, lambda qh: qh)
        self.membership = self.boot("n1")
        await self.register(self.membership)
        self.charger = Charger(self.db, self.holder, "pithos", self.membership)

    def boot(self, node_id: str) -> Membership:
        return Membership(reactor, self.db, node_id, "http://n", ["pithos"],
                          heartbeat_interval=5.0)

    async def register(self, membership: Membership) -> None:
        await self.db.run("test.register", cluster_store.register_node_txn,
                          membership.node_id, "http://n", ["pithos"], membership.boot)

    async def test_name_names_the_boot(self):
        serial = await self.charger.issue(upload(10), name="upload")
        commission = await self.qh.commission("pithos", serial)
        self.assertEqual(commission.name, f"upload [boot n1/{self.membership.boot}]")

    async def test_live_boot_is_spared(self):
        """A boot that beats is in flight: its young serials wait out the grace."""
        serial = await self.charger.issue(upload(10))
        self.assertEqual(await self.charger.reconcile(grace=3600), ([], []))
        self.assertEqual(await self.qh.pending("pithos"), [serial])

    async def test_restarted_node(self):
        """Once the node registered a later boot, the earlier boot's serials,
        recorded or not, are settled at once."""
        recorded = await self.charger.issue(upload(10))
        unrecorded = await self.charger.issue(upload(5), record=False)
        await self.register(self.boot("n1"))
        self.assertEqual(await self.charger.reconcile(grace=3600),
                         ([], [recorded, unrecorded]))
        self.assertEqual(await self.qh.pending("pithos"), [])

    async def test_stopped_node(self):
        """A boot that stopped is over."""
        serial = await self.charger.issue(upload(10))
        await self.db.run("test.stop", cluster_store.node_stopped_txn, "n1")
        self.assertEqual(await self.charger.reconcile(grace=3600), ([], [serial]))

    async def test_silent_node_is_spared(self):
        """A boot that only missed its heartbeats (frozen, partitioned) may
        wake up and finish its requests: its serials wait out the grace."""
        serial = await self.charger.issue(upload(10))
        await self.db.run("test.stale", lambda txn: txn.execute(
            "UPDATE nodes SET last_heartbeat = now() - interval '1 hour'"))
        self.assertEqual(await self.charger.reconcile(grace=3600), ([], []))
        self.assertEqual(await self.qh.pending("pithos"), [serial])

    async def test_unregistered_boot_is_spared(self):
        """A request can come before its boot's first heartbeat: a serial of
        a boot the node has not registered yet is not taken for over."""
        later = Charger(self.db, self.holder, "pithos", self.boot("n1"))
        serial = await later.issue(upload(10))
        self.assertEqual(await self.charger.reconcile(grace=3600), ([], []))
        self.assertEqual(await self.qh.pending("pithos"), [serial])


class QuotaSerialsSchemaTests(unittest.TestCase):
    def test_node_migration_creates_quota_serials(self):
        """The node schema's quota_serials migration creates the table with
        undecided, unresolved defaults and one row per (component, serial)."""
        conn = psycopg2.connect(fresh_database(self))
        self.addCleanup(conn.close)
        applied = migrations.upgrade(conn, [migrations.NODE_SCHEMA])
        self.assertIn((2, "quota_serials"), [(m.version, m.name) for m in applied])
        with conn.cursor() as cur:
            qs.record_txn(cur, "pithos", 7, "k")
            qs.record_txn(cur, "pithos", 7, "other")  # idempotent
            qs.record_txn(cur, "cyclades", 7)
            cur.execute("""SELECT component, resource_key, pending, accept, resolved
                           FROM quota_serials ORDER BY component""")
            self.assertEqual(cur.fetchall(), [("cyclades", "", True, False, False),
                                              ("pithos", "k", True, False, False)])
            self.assertRaises(psycopg2.errors.UniqueViolation, cur.execute,
                              "INSERT INTO quota_serials (component, serial) VALUES ('pithos', 7)")
        conn.rollback()
