"""The quota holder's commission protocol on real PostgreSQL: limits, force,
summing, all-or-nothing, accept/reject algebra, bulk resolution, client
isolation, the provision log, resource registration and the read APIs."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd import errors
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.interfaces import IQuotaHolder, IQuotaLedger
from snfd.quota import (
    Holding,
    NoCapacityError,
    NoHoldingError,
    NoQuantityError,
    Provision,
    Resource,
    user_and_project,
)
from snfd.testing.identity import identity_database
from snfd.testing.postgres import started_pool

VM = Resource("cyclades.vm", "Virtual machines", None, "compute", "cyclades_compute")
RAM = Resource("cyclades.ram", "RAM of running VMs", "bytes", "compute", "cyclades_compute")
DISK = Resource("pithos.diskspace", "Storage space", "bytes", "object-store",
                "pithos_object-store")
HIDDEN = Resource("cyclades.total_ram", "All RAM", "bytes", "compute", "cyclades_compute",
                  ui_visible=False, api_visible=False)

USER = "user:u1"
SRC = "project:p1"
PROJ = "project:p1"


def imp(quantity: int, holder: str = USER, source: str | None = SRC,
        resource: str = "cyclades.vm") -> Provision:
    return Provision(holder, source, resource, quantity)


class QuotaHolderTests(unittest.TestCase):
    async def asyncSetUp(self) -> None:
        self.db = started_pool(self, identity_database(self))
        self.qh = LocalQuotaHolder(self.db)
        await self.qh.register_resources("cyclades", [VM, RAM, HIDDEN])
        await self.qh.register_resources("pithos", [DISK])
        await self.qh.set_limit(USER, SRC, "cyclades.vm", 5)
        await self.qh.set_limit(PROJ, None, "cyclades.vm", 8)
        await self.qh.set_limit(USER, SRC, "cyclades.ram", 100)

    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def holding(self, holder: str = USER, source: str | None = SRC,
                      resource: str = "cyclades.vm") -> tuple[int, int, int]:
        [h] = await self.qh.quotas([holder], [source], [resource])
        return h.limit, h.usage_min, h.usage_max

    async def all_holdings(self) -> list[Holding]:
        return await self.qh.quotas()

    def test_provides_interface(self):
        """LocalQuotaHolder provides IQuotaHolder fully."""
        self.assertTrue(verifyObject(IQuotaHolder, self.qh))
        self.assertTrue(verifyObject(IQuotaLedger, self.qh))

    async def test_import_within_limit(self):
        """An import up to the limit raises usage_max only and stays pending."""
        serial = await self.qh.issue("cyclades", [imp(5)], name="five vms")
        self.assertEqual(await self.holding(), (5, 0, 5))
        self.assertEqual(await self.qh.pending("cyclades"), [serial])

    async def test_import_over_limit_refused(self):
        """An import beyond the limit fails with NoCapacityError carrying the
        limit and current usage; nothing is stored."""
        await self.qh.issue("cyclades", [imp(4)])
        e = await self.assertFailure_(self.qh.issue("cyclades", [imp(2)]), NoCapacityError)
        self.assertEqual((e.code, e.name), (413, "overLimit"))
        self.assertEqual(e.data, {"provision": imp(2).as_json(), "name": "NoCapacityError",
                                  "limit": 5, "usage": 4})
        self.assertEqual(await self.holding(), (5, 0, 4))
        self.assertEqual(len(await self.qh.pending("cyclades")), 1)

    async def test_force_exceeds_limit(self):
        """A forced import may take usage_max beyond the limit."""
        await self.qh.issue("cyclades", [imp(7)], force=True)
        self.assertEqual(await self.holding(), (5, 0, 7))

    async def test_pending_imports_count_against_limit(self):
        """Pending (unaccepted) imports use up capacity like accepted ones."""
        await self.qh.issue("cyclades", [imp(3)])
        await self.assertFailure_(self.qh.issue("cyclades", [imp(3)]), NoCapacityError)

    async def test_release_below_zero_refused_even_forced(self):
        """Releasing more than the accepted usage fails with NoQuantityError,
        forced or not, and changes nothing."""
        s = await self.qh.issue("cyclades", [imp(2)])
        # Still pending: usage_min is 0, so nothing can be released yet.
        await self.assertFailure_(self.qh.issue("cyclades", [imp(-1)]), NoQuantityError)
        await self.qh.resolve("cyclades", accept=[s])
        for force in (False, True):
            e = await self.assertFailure_(
                self.qh.issue("cyclades", [imp(-3)], force=force), NoQuantityError)
            self.assertEqual(e.data["name"], "NoQuantityError")
            self.assertEqual(e.data["provision"]["quantity"], -3)
        self.assertEqual(await self.holding(), (5, 2, 2))

    async def test_release_lowers_usage_min_then_usage_max(self):
        """A pending release lowers usage_min; accepting it lowers usage_max."""
        s = await self.qh.issue("cyclades", [imp(3)], auto_accept=True)
        self.assertEqual(await self.qh.pending("cyclades"), [])
        self.assertEqual(await self.holding(), (5, 3, 3))
        r = await self.qh.issue("cyclades", [imp(-2)])
        self.assertGreater(r, s)
        self.assertEqual(await self.holding(), (5, 1, 3))
        await self.qh.resolve("cyclades", accept=[r])
        self.assertEqual(await self.holding(), (5, 1, 1))

    async def test_same_key_provisions_are_summed(self):
        """Provisions on one holding are summed: two imports of 3 exceed a
        limit of 5, an import of 4 with a release of 1 is an import of 3."""
        await self.assertFailure_(self.qh.issue("cyclades", [imp(3), imp(3)]),
                                  NoCapacityError)
        serial = await self.qh.issue("cyclades", [imp(4), imp(1, resource="cyclades.ram"),
                                                  imp(-1)])
        commission = await self.qh.commission("cyclades", serial)
        self.assertEqual(sorted(commission.provisions, key=lambda p: p.resource),
                         [imp(1, resource="cyclades.ram"), imp(3)])
        self.assertEqual(await self.holding(), (5, 0, 3))

    async def test_all_or_nothing(self):
        """When one provision fails, the others of the commission are not
        applied either: capacity, quantity and missing-holding failures."""
        before = await self.all_holdings()
        cases = [
            ([*user_and_project("u1", "p1", "cyclades.vm", 2), imp(101, resource="cyclades.ram")],
             NoCapacityError),
            ([imp(1, resource="cyclades.ram"), imp(-1)], NoQuantityError),
            ([*user_and_project("u1", "p1", "cyclades.vm", 1),
              Provision("user:nobody", SRC, "cyclades.vm", 1)], NoHoldingError),
        ]
        for provisions, error in cases:
            await self.assertFailure_(self.qh.issue("cyclades", provisions), error)
        self.assertEqual(await self.all_holdings(), before)
        self.assertEqual(await self.qh.pending("cyclades"), [])

    async def test_no_holding_error_shape(self):
        """A missing holding is NoHoldingError, 404 itemNotFound, naming the
        provision with source null for a project holding."""
        e = await self.assertFailure_(
            self.qh.issue("cyclades", [Provision("project:p9", None, "cyclades.vm", 1)]),
            NoHoldingError)
        self.assertEqual((e.code, e.name), (404, "itemNotFound"))
        self.assertEqual(e.data, {"provision": {"holder": "project:p9", "source": None,
                                                "resource": "cyclades.vm", "quantity": 1},
                                  "name": "NoHoldingError"})

    async def test_accept_and_reject_algebra(self):
        """Accepting an import raises usage_min; rejecting one lowers
        usage_max back; accepting a release lowers usage_max; rejecting one
        raises usage_min back."""
        a = await self.qh.issue("cyclades", [imp(2)])
        b = await self.qh.issue("cyclades", [imp(1)])
        self.assertEqual(await self.holding(), (5, 0, 3))
        await self.qh.resolve("cyclades", accept=[a], reject=[b])
        self.assertEqual(await self.holding(), (5, 2, 2))
        c = await self.qh.issue("cyclades", [imp(-1)])
        self.assertEqual(await self.holding(), (5, 1, 2))
        await self.qh.resolve("cyclades", reject=[c])
        self.assertEqual(await self.holding(), (5, 2, 2))
        d = await self.qh.issue("cyclades", [imp(-2)])
        await self.qh.resolve("cyclades", accept=[d])
        self.assertEqual(await self.holding(), (5, 0, 0))

    async def test_bulk_resolve(self):
        """One call accepts and rejects several serials; a serial in both
        lists fails with 400 and one that is not pending with 404, while the
        rest are resolved."""
        s1, s2, s3 = [await self.qh.issue("cyclades", [imp(1)]) for _ in range(3)]
        result = await self.qh.resolve("cyclades", accept=[s1, s3, 999], reject=[s2, s3])
        self.assertEqual(result.accepted, [s1])
        self.assertEqual(result.rejected, [s2])
        failed = {serial: fault for serial, fault in result.failed}
        self.assertEqual(sorted(failed), sorted([s3, 999]))
        self.assertIsInstance(failed[s3], errors.BadRequest)
        self.assertEqual(failed[s3].message, "cannot both accept and reject")
        self.assertIsInstance(failed[999], errors.NotFound)
        self.assertEqual(await self.qh.pending("cyclades"), [s3])
        self.assertEqual(await self.holding(), (5, 1, 2))
        again = await self.qh.resolve("cyclades", accept=[s1])
        self.assertEqual((again.accepted, [s for s, _ in again.failed]), ([], [s1]))

    async def test_clientkey_isolation(self):
        """A component neither sees nor resolves another's commissions."""
        serial = await self.qh.issue("cyclades", [imp(1)])
        self.assertEqual(await self.qh.pending("pithos"), [])
        await self.assertFailure_(self.qh.commission("pithos", serial), errors.NotFound)
        result = await self.qh.resolve("pithos", accept=[serial])
        self.assertEqual(result.accepted, [])
        self.assertIsInstance(dict(result.failed)[serial], errors.NotFound)
        self.assertEqual(await self.qh.pending("cyclades"), [serial])
        self.assertEqual(await self.holding(), (5, 0, 1))
        self.assertEqual(await self.qh.clientkeys(), ["cyclades"])

    async def test_pending_list_and_commission(self):
        """pending() lists serials ascending; commission() shows name, issue
        time and provisions (project source as None); a resolved one is 404."""
        a = await self.qh.issue("cyclades", user_and_project("u1", "p1", "cyclades.vm", 1),
                                name="create vm")
        b = await self.qh.issue("cyclades", [imp(1)], name="other")
        self.assertEqual(await self.qh.pending("cyclades"), [a, b])
        c = await self.qh.commission("cyclades", a)
        self.assertEqual((c.serial, c.clientkey, c.name), (a, "cyclades", "create vm"))
        self.assertIsNotNone(c.issue_time.tzinfo)
        self.assertEqual(set(c.provisions),
                         set(user_and_project("u1", "p1", "cyclades.vm", 1)))
        await self.qh.resolve("cyclades", accept=[a])
        await self.assertFailure_(self.qh.commission("cyclades", a), errors.NotFound)

    async def test_any_pending_commission_resolvable_later(self):
        """Commissions issued one after another can each be accepted or
        rejected in any order without violating the holding's bounds."""
        base = await self.qh.issue("cyclades", [imp(3)], auto_accept=True)
        self.assertIsInstance(base, int)
        up = await self.qh.issue("cyclades", [imp(2)])
        down = await self.qh.issue("cyclades", [imp(-3)])
        await self.assertFailure_(self.qh.issue("cyclades", [imp(-1)]), NoQuantityError)
        self.assertEqual(await self.holding(), (5, 0, 5))
        await self.qh.resolve("cyclades", reject=[up])
        self.assertEqual(await self.holding(), (5, 0, 3))
        await self.qh.resolve("cyclades", reject=[down])
        self.assertEqual(await self.holding(), (5, 3, 3))
        up = await self.qh.issue("cyclades", [imp(2)])
        down = await self.qh.issue("cyclades", [imp(-3)])
        await self.qh.resolve("cyclades", accept=[down])
        self.assertEqual(await self.holding(), (5, 0, 2))
        await self.qh.resolve("cyclades", accept=[up])
        self.assertEqual(await self.holding(), (5, 2, 2))

    async def test_holding_gone_while_pending(self):
        """A commission whose holding went meanwhile (its user deleted)
        resolves: that provision changes nothing, the others apply."""
        await self.qh.set_limit("user:gone", SRC, "cyclades.vm", 5)
        serial = await self.qh.issue("cyclades", [imp(1), imp(1, holder="user:gone")])
        await self.db.run("test.drop", lambda txn: txn.execute(
            "DELETE FROM identity_holdings WHERE holder = 'user:gone'"))
        await self.qh.resolve("cyclades", accept=[serial])
        self.assertEqual(await self.holding(), (5, 1, 1))
        self.assertEqual(await self.qh.pending("cyclades"), [])

    async def test_provision_log(self):
        """Each resolved provision leaves a log row with the reason prefix,
        the commission's name and the holding's values after the change."""
        a = await self.qh.issue("cyclades", user_and_project("u1", "p1", "cyclades.vm", 2),
                                name="make")
        b = await self.qh.issue("cyclades", [imp(1)], name="oops")
        await self.qh.resolve("cyclades", accept=[a], reject=[b])

        def logs_txn(txn):
            txn.execute("""SELECT serial, name, holder, source, resource, "limit",
                                  usage_min, usage_max, quantity, reason
                           FROM identity_provision_log ORDER BY id""")
            return txn.fetchall()

        rows = await self.db.run("test.logs", logs_txn)
        self.assertEqual(sorted(rows), sorted([
            (a, "make", PROJ, "", "cyclades.vm", 8, 2, 2, 2, "ACCEPT:make"),
            (a, "make", USER, SRC, "cyclades.vm", 5, 2, 3, 2, "ACCEPT:make"),
            (b, "oops", USER, SRC, "cyclades.vm", 5, 2, 2, 1, "REJECT:oops"),
        ]))

    async def test_charge_in_the_callers_transaction(self):
        """charge_txn moves usage_min and usage_max together inside the
        caller's transaction, logs ACCEPT rows under a new serial, leaves
        nothing pending, and goes with the transaction: a rollback undoes
        it, a refusal raises with nothing changed."""
        def charge_txn(txn, provisions, fail=False):
            serial = self.qh.charge_txn(txn, "cyclades", provisions, name="direct")
            if fail:
                raise RuntimeError("the change failed")
            txn.execute("""SELECT serial, holder, usage_min, usage_max, quantity, reason
                           FROM identity_provision_log WHERE serial = %s
                           ORDER BY holder""", (serial,))
            return serial, txn.fetchall()

        both = user_and_project("u1", "p1", "cyclades.vm", 2)
        serial, rows = await self.db.run("t", charge_txn, both)
        self.assertEqual(rows, [(serial, PROJ, 2, 2, 2, "ACCEPT:direct"),
                                (serial, USER, 2, 2, 2, "ACCEPT:direct")])
        self.assertEqual(await self.holding(), (5, 2, 2))
        self.assertEqual(await self.qh.pending("cyclades"), [])
        later = await self.qh.issue("cyclades", [imp(1)])
        self.assertGreater(later, serial)
        await self.qh.resolve("cyclades", reject=[later])
        with self.assertRaises(RuntimeError):
            await self.db.run("t", charge_txn, [imp(1)], fail=True)
        self.assertEqual(await self.holding(), (5, 2, 2))
        with self.assertRaises(NoCapacityError):
            await self.db.run("t", charge_txn, [imp(4)])
        with self.assertRaises(NoQuantityError):
            await self.db.run("t", charge_txn, [imp(-3)])
        await self.db.run("t", charge_txn, [imp(-2)])
        self.assertEqual(await self.holding(), (5, 0, 0))
        self.assertIsNone(await self.db.run(
            "t", lambda txn: self.qh.charge_txn(txn, "cyclades", [imp(1), imp(-1)])))

    async def test_register_keeps_admin_defaults(self):
        """Registering again updates what the component describes but keeps
        the defaults an administrator set."""
        await self.qh.modify_resource("cyclades.vm", base_default=2, project_default=4)
        changed = Resource("cyclades.vm", "VMs, renamed", "vm", "compute", "cyclades_compute",
                           ui_visible=False, base_default=100, project_default=100)
        await self.qh.register_resources("cyclades", [changed])
        [vm] = [r for r in await self.qh.resources() if r.name == "cyclades.vm"]
        self.assertEqual(vm, Resource("cyclades.vm", "VMs, renamed", "vm", "compute",
                                      "cyclades_compute", ui_visible=False,
                                      base_default=2, project_default=4))

    async def test_register_new_resource_takes_defaults(self):
        """A new resource starts with the defaults the component proposes."""
        await self.qh.register_resources("cyclades", [Resource(
            "cyclades.disk", "Disk", "bytes", "compute", "cyclades_compute",
            base_default=10, project_default=20)])
        [disk] = [r for r in await self.qh.resources() if r.name == "cyclades.disk"]
        self.assertEqual((disk.base_default, disk.project_default), (10, 20))

    async def test_register_refuses_foreign_resources(self):
        """A component cannot register a resource of another service origin,
        nor take over a resource another component registered."""
        await self.assertFailure_(self.qh.register_resources("pithos", [VM]),
                                  errors.BadRequest)
        stolen = Resource("cyclades.vm", "mine", None, "compute", "pithos_object-store")
        await self.assertFailure_(self.qh.register_resources("pithos", [stolen]),
                                  errors.Conflict)
        [vm] = [r for r in await self.qh.resources() if r.name == "cyclades.vm"]
        self.assertEqual(vm.service_origin, "cyclades_compute")

    async def test_modify_resource_errors(self):
        """Modifying an unknown resource is 404, a negative default 400."""
        await self.assertFailure_(self.qh.modify_resource("nope", base_default=1),
                                  errors.NotFound)
        await self.assertFailure_(self.qh.modify_resource("cyclades.vm", base_default=-1),
                                  errors.BadRequest)

    async def test_set_limit_keeps_usage(self):
        """Lowering a limit keeps usage (the holding is then over quota) and
        further non-forced imports are refused."""
        await self.qh.issue("cyclades", [imp(4)], auto_accept=True)
        h = await self.qh.set_limit(USER, SRC, "cyclades.vm", 1)
        self.assertEqual((h.limit, h.usage_min, h.usage_max), (1, 4, 4))
        await self.assertFailure_(self.qh.issue("cyclades", [imp(1)]), NoCapacityError)
        await self.qh.issue("cyclades", [imp(-4)], auto_accept=True)
        self.assertEqual(await self.holding(), (1, 0, 0))
        await self.assertFailure_(self.qh.set_limit(USER, SRC, "nope", 1), errors.NotFound)
        await self.assertFailure_(self.qh.set_limit(USER, SRC, "cyclades.vm", -1),
                                  errors.BadRequest)

    async def test_quotas_filters(self):
        """quotas() filters by holder, source (None: project holdings) and
        resource; no filter returns every holding."""
        self.assertEqual(len(await self.qh.quotas()), 3)
        self.assertEqual([(h.holder, h.source) for h in await self.qh.quotas(sources=[None])],
                         [(PROJ, None)])
        self.assertEqual([h.resource for h in await self.qh.quotas(holders=[USER])],
                         ["cyclades.ram", "cyclades.vm"])
        self.assertEqual(await self.qh.quotas(resources=["pithos.diskspace"]), [])

    async def test_quotas_for_user_shape(self):
        """The user's quotas are keyed by project uuid and resource, with
        usage = usage_max, pending = usage_max - usage_min and the project
        holding's values; API-hidden resources are left out."""
        await self.qh.set_limit(USER, SRC, "cyclades.total_ram", 10)
        await self.qh.issue("cyclades", user_and_project("u1", "p1", "cyclades.vm", 2),
                            auto_accept=True)
        await self.qh.issue("cyclades", user_and_project("u1", "p1", "cyclades.vm", 1))
        quotas = await self.qh.quotas_for_user("u1")
        self.assertEqual(quotas, {"p1": {
            "cyclades.vm": {"limit": 5, "usage": 3, "pending": 1, "project_limit": 8,
                            "project_usage": 3, "project_pending": 1},
            "cyclades.ram": {"limit": 100, "usage": 0, "pending": 0, "project_limit": 0,
                             "project_usage": 0, "project_pending": 0},
        }})
        self.assertEqual(await self.qh.quotas_for_user("u1", projects=["p2"]), {})
        self.assertEqual(await self.qh.quotas_for_user("u2"), {})

    async def test_service_quotas(self):
        """service_quotas shows every user's holdings of the component's own
        resources; an unknown user is 404."""
        await self.qh.set_limit("user:u2", SRC, "pithos.diskspace", 1000)
        await self.qh.set_limit("user:u2", SRC, "cyclades.vm", 1)
        cyclades = await self.qh.service_quotas("cyclades")
        self.assertEqual(sorted(cyclades), ["u1", "u2"])
        self.assertEqual(sorted(cyclades["u1"]["p1"]), ["cyclades.ram", "cyclades.vm"])
        pithos = await self.qh.service_quotas("pithos", user="u2")
        self.assertEqual(pithos, {"u2": {"p1": {"pithos.diskspace": {
            "limit": 1000, "usage": 0, "pending": 0, "project_limit": 0,
            "project_usage": 0, "project_pending": 0}}}})
        await self.assertFailure_(self.qh.service_quotas("pithos", user="u1"),
                                  errors.NotFound)

    async def test_service_project_quotas(self):
        """service_project_quotas shows project holdings of the component's
        resources, project_* fields only; an unknown project is 404."""
        await self.qh.issue("cyclades", [imp(2, holder=PROJ, source=None)])
        self.assertEqual(await self.qh.service_project_quotas("cyclades"), {"p1": {
            "cyclades.vm": {"project_limit": 8, "project_usage": 2, "project_pending": 2}}})
        self.assertEqual(await self.qh.service_project_quotas("cyclades", project="p1"),
                         await self.qh.service_project_quotas("cyclades"))
        await self.assertFailure_(self.qh.service_project_quotas("pithos", project="p1"),
                                  errors.NotFound)

    async def assertFailure_(self, awaitable, error):
        """Await ``awaitable`` expecting ``error``; return the exception."""
        try:
            await awaitable
        except error as e:
            return e
        self.fail(f"{error.__name__} not raised")


class UserInUseTests(unittest.TestCase):
    """What keeps a user from being deleted (``user_quota_in_use_txn``):
    settled usage and pending imports, not releases still pending (the
    service has let the resource go; the holder learns it in the
    background)."""

    async def asyncSetUp(self) -> None:
        self.db = started_pool(self, identity_database(self))
        self.qh = LocalQuotaHolder(self.db)
        await self.qh.register_resources("pithos", [DISK])
        self.user, self.project = "user:u9", "project:u9"
        await self.qh.set_limit(self.user, self.project, "pithos.diskspace", 100)

    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def in_use(self) -> bool:
        from snfd.identity import project_store
        return bool(await self.db.run("test.in_use", project_store.user_quota_in_use_txn,
                                      "u9"))

    def disk(self, quantity: int) -> Provision:
        return Provision(self.user, self.project, "pithos.diskspace", quantity)

    async def test_usage_and_pending_changes(self):
        """Nothing used: free; settled usage: in use; its release pending:
        free; a pending import beside it: in use again."""
        self.assertFalse(await self.in_use())
        serial = await self.qh.issue("pithos", [self.disk(10)])
        self.assertTrue(await self.in_use())  # a pending import
        await self.qh.resolve("pithos", accept=[serial])
        self.assertTrue(await self.in_use())  # settled usage
        await self.qh.issue("pithos", [self.disk(-10)])
        self.assertFalse(await self.in_use())  # released, the holder not yet told
        await self.qh.issue("pithos", [self.disk(5)])
        self.assertTrue(await self.in_use())
