"""The commission runner (``snfd.quota.charged``): a change made under a
commission with the in-process quota holder on PostgreSQL, on the paths
where everything works and on each path where something fails."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from snfd import errors
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.quota import NoCapacityError, NoQuantityError, user_and_project
from snfd.quota import serials as qs
from snfd.quota.charged import Attempt, Recharge, Settle, run_charged
from tests.quota.test_serials import set_up_charger


def upload(size: int):
    return user_and_project("u1", "p1", "pithos.diskspace", size)


class Holder:
    """The real holder, with faults on demand: ``unreachable`` makes every
    call fail as an unreachable identity node would, ``resolve_broken``
    only ``resolve``; ``gate`` (a Deferred) holds ``resolve`` back until
    it fires; ``refusals`` records the refusals ``issue`` passed on."""

    def __init__(self, real: LocalQuotaHolder):
        self.real = real
        self.unreachable = False
        self.resolve_broken = False
        self.gate: defer.Deferred[None] | None = None
        self.refusals: list[Exception] = []
        self.refused: defer.Deferred[None] = defer.Deferred()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # not a ledger: zope asks for __provides__
        return getattr(self.real, name)

    async def issue(self, *args: Any, **kwargs: Any) -> int:
        if self.unreachable:
            raise errors.ServiceUnavailable("identity unreachable")
        try:
            return await self.real.issue(*args, **kwargs)
        except Exception as e:
            self.refusals.append(e)
            if not self.refused.called:
                self.refused.callback(None)
            raise

    async def resolve(self, clientkey: str, accept: Any = (), reject: Any = ()) -> Any:
        if self.gate is not None:
            await self.gate
        if self.unreachable or self.resolve_broken:
            raise errors.ServiceUnavailable("identity unreachable")
        return await self.real.resolve(clientkey, accept, reject)


class Change:
    """A change the runner makes: records each attempt it was given, and
    on each run does what ``steps`` says next (``None``: succeed;
    an exception: raise it; ``"commit-then-fail"``: mark committed, then
    fail)."""

    def __init__(self, *steps: Any, decide: Any = None):
        self.steps = list(steps)
        self.attempts: list[tuple[int | None, Any]] = []
        self.decide = decide  # (db,): decide the serial in a transaction

    async def __call__(self, attempt: Attempt) -> str:
        self.attempts.append((attempt.serial, attempt.charge))
        step = self.steps.pop(0) if self.steps else None
        if self.decide is not None and attempt.serial is not None:
            await self.decide.run("test.change", qs.decide_txn, attempt.component,
                                  attempt.serial, True)
        if step == "commit-then-fail":
            attempt.mark_committed()
            raise errors.ServiceUnavailable("lost the answer after the change")
        if isinstance(step, BaseException):
            raise step
        return "done"

    @property
    def serials(self) -> list[int | None]:
        return [serial for serial, _ in self.attempts]

    @property
    def charges(self) -> list[Any]:
        return [charge for _, charge in self.attempts]


class RunnerTests(unittest.TestCase):
    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def asyncSetUp(self):
        await set_up_charger(self, Holder)
        self.addCleanup(lambda: defer.ensureDeferred(self.charger.drain()))

    async def usage(self) -> tuple[int, int]:
        await self.charger.drain()
        [h] = await self.qh.quotas(["user:u1"], ["project:p1"], ["pithos.diskspace"])
        return h.usage_min, h.usage_max

    async def record(self, serial: int) -> qs.SerialRecord:
        return (await self.db.run("test.records", qs.records_txn, "pithos", [serial]))[serial]

    async def charged(self, change: Any, charge: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("provisions", upload)
        return await run_charged(self.charger, change, charge, **kwargs)

    async def failure(self, kind: type[BaseException], change: Any, charge: Any,
                      **kwargs: Any) -> BaseException:
        try:
            await self.charged(change, charge, **kwargs)
        except kind as e:
            return e
        self.fail(f"{kind.__name__} not raised")

    # -- success ----------------------------------------------------------------

    async def test_change_accepted(self):
        """The change runs with the issued serial and the charge; once it
        returns, the commission is accepted and resolved (Settle.NOW)."""
        change = Change()
        self.assertEqual(await self.charged(change, 10, name="put a"), "done")
        [(serial, charge)] = change.attempts
        self.assertEqual(charge, 10)
        self.assertEqual(await self.usage(), (10, 10))
        self.assertEqual(await self.qh.pending("pithos"), [])
        assert serial is not None
        rec = await self.record(serial)
        self.assertEqual((rec.pending, rec.accept, rec.resolved), (False, True, True))

    async def test_empty_charge_issues_nothing(self):
        """An empty charge issues no commission: the change runs without a
        serial and nothing is pending anywhere."""
        change = Change()
        await run_charged(self.charger, change, [])
        await run_charged(self.charger, change, None)
        self.assertEqual(change.serials, [None, None])
        self.assertEqual(await self.qh.pending("pithos"), [])

    async def test_settle_later(self):
        """With Settle.LATER and the decision recorded in the change's own
        transaction, the holder learns it in the background."""
        change = Change(decide=self.db)
        await self.charged(change, 10, record=False, settle=Settle.LATER)
        self.assertEqual(await self.usage(), (10, 10))
        self.assertEqual(await self.qh.pending("pithos"), [])

    async def test_handed_off(self):
        """With Settle.HANDED_OFF the commission stays pending for whoever
        owns what the change started; the runner only records it."""
        change = Change()
        await self.charged(change, 10, settle=Settle.HANDED_OFF, resource_key="server:1")
        [serial] = change.serials
        self.assertEqual(await self.qh.pending("pithos"), [serial])
        [rec] = await self.db.run("test.for", qs.for_resource_txn, "pithos", "server:1")
        self.assertEqual((rec.serial, rec.pending), (serial, True))

    async def test_result_not_accepted(self):
        """A change whose result says it did nothing (``accept`` false)
        gives the reservation back."""
        await self.charged(Change(), 10, accept=lambda result: False)
        self.assertEqual(await self.usage(), (0, 0))
        self.assertEqual(await self.qh.pending("pithos"), [])

    # -- recharges ------------------------------------------------------------

    async def test_recharge(self):
        """A change that finds another charge is run again under a new
        commission for it; the first commission is rejected."""
        change = Change(Recharge(30))
        await self.charged(change, 10, attempts=2)
        self.assertEqual(change.charges, [10, 30])
        first, second = change.serials
        self.assertNotEqual(first, second)
        self.assertEqual(await self.usage(), (30, 30))
        assert first is not None
        self.assertFalse((await self.record(first)).accept)

    async def test_refused_guess_is_learnt_first(self):
        """A guess the holder refuses is not the answer: the change runs
        without a commission, finds the real charge, and that one is
        issued."""
        change = Change(Recharge(40))
        await self.charged(change, 500, guess=True, attempts=2)
        self.assertEqual(change.attempts[0], (None, None))
        self.assertEqual(change.charges[1], 40)
        self.assertEqual(await self.usage(), (40, 40))

    async def test_refused_real_charge(self):
        """A charge that is not a guess, refused, is the caller's answer:
        the refusal propagates and the change never runs."""
        change = Change()
        await self.failure(NoCapacityError, change, 500)
        self.assertEqual(change.attempts, [])
        self.assertEqual(await self.usage(), (0, 0))

    async def test_refused_after_learning(self):
        """Once the change confirmed the charge, a refusal goes through
        ``refused``: the service's own error, caused by the refusal."""
        change = Change(Recharge(500))
        error = await self.failure(
            errors.OverLimit, change, 10, guess=True, attempts=3,
            refused=lambda e: errors.OverLimit(f"no room for {e.provision.quantity}"))
        self.assertEqual(str(error), "no room for 500")
        self.assertIsInstance(error.__cause__, NoCapacityError)
        self.assertEqual(len(change.attempts), 1)
        self.assertEqual(await self.usage(), (0, 0))

    async def test_refused_may_run_uncharged(self):
        """``refused`` returning None makes the change anyway, without a
        commission, covered for the charge it had."""
        change = Change()
        await self.charged(change, 500, refused=lambda e: None)
        self.assertEqual(change.attempts, [(None, 500)])
        self.assertEqual(await self.qh.pending("pithos"), [])

    async def test_release_racing_its_import(self):
        """A release refused because the import it undoes is still queued
        for acceptance waits for the queue and is issued again."""
        imported = await self.charger.issue(upload(10), record=False)
        await self.db.run("test.decide", qs.decide_txn, "pithos", imported, True)
        self.holder.gate = defer.Deferred()
        self.charger.settle_later(imported, True)   # held back at the holder
        running = defer.ensureDeferred(self.charged(Change(), -10))
        await self.holder.refused                   # the first try was refused
        self.assertIsInstance(self.holder.refusals[0], NoQuantityError)
        self.holder.gate.callback(None)
        self.assertEqual(await running, "done")
        self.assertEqual(await self.usage(), (0, 0))
        self.assertEqual(await self.qh.pending("pithos"), [])

    async def test_attempts_exhausted(self):
        """A charge that keeps changing ends with the caller's error after
        ``attempts`` runs; every commission issued is rejected."""
        change = Change(Recharge(20), Recharge(30), Recharge(40))
        error = await self.failure(errors.Conflict, change, 10, attempts=3,
                                   exhausted=errors.Conflict("kept changing"))
        self.assertEqual(str(error), "kept changing")
        self.assertEqual(change.charges, [10, 20, 30])
        self.assertEqual(await self.usage(), (0, 0))
        self.assertEqual(await self.qh.pending("pithos"), [])

    # -- failures -------------------------------------------------------------

    async def test_failed_change_rejected(self):
        """A change that fails gives the reservation back, and its own
        error reaches the caller."""
        change = Change(errors.BadRequest("bad"))
        await self.failure(errors.BadRequest, change, 10)
        [serial] = change.serials
        self.assertEqual(await self.usage(), (0, 0))
        assert serial is not None
        rec = await self.record(serial)
        self.assertEqual((rec.accept, rec.resolved), (False, True))

    async def test_failed_change_and_failed_reject(self):
        """When the reject fails too, the change's error still reaches the
        caller, noting the commission; reconciliation rejects it later."""
        self.holder.resolve_broken = True
        change = Change(errors.BadRequest("bad"))
        error = await self.failure(errors.BadRequest, change, 10)
        [serial] = change.serials
        self.assertIn(f"quota commission {serial} not rejected",
                      " ".join(getattr(error, "__notes__", [])))
        self.assertEqual(len(self.flushLoggedErrors(errors.ServiceUnavailable)), 1)
        self.holder.resolve_broken = False
        self.assertEqual(await self.charger.reconcile(), ([], [serial]))
        self.assertEqual(await self.usage(), (0, 0))

    async def test_failure_after_commit_keeps_charge(self):
        """A failure after the change marked itself committed propagates,
        but the commission is accepted: the change stands."""
        change = Change("commit-then-fail")
        await self.failure(errors.ServiceUnavailable, change, 10)
        self.assertEqual(await self.usage(), (10, 10))

    async def test_settle_failure_after_commit(self):
        """When the holder cannot be told after the change committed, the
        caller still gets the result; the failure is logged once and
        reconciliation accepts the commission later."""
        self.holder.resolve_broken = True
        change = Change()
        self.assertEqual(await self.charged(change, 10), "done")
        self.assertEqual(len(self.flushLoggedErrors(errors.ServiceUnavailable)), 1)
        self.assertEqual(await self.usage(), (0, 10))
        self.holder.resolve_broken = False
        [serial] = change.serials
        self.assertEqual(await self.charger.reconcile(), ([serial], []))
        self.assertEqual(await self.usage(), (10, 10))

    async def test_reject_before_retry_fails(self):
        """A commission that cannot be withdrawn before a retry stops the
        retries: the holder's error propagates and no new one is issued."""
        self.holder.resolve_broken = True
        change = Change(Recharge(30))
        await self.failure(errors.ServiceUnavailable, change, 10, attempts=3)
        self.assertEqual(len(change.attempts), 1)
        self.assertEqual(len(await self.qh.pending("pithos")), 1)
        self.holder.resolve_broken = False

    async def test_unreachable_holder(self):
        """An unreachable holder at issue time is an error with nothing
        issued and no change made."""
        self.holder.unreachable = True
        change = Change()
        await self.failure(errors.ServiceUnavailable, change, 10)
        self.assertEqual(change.attempts, [])
        self.holder.unreachable = False
        self.assertEqual(await self.qh.pending("pithos"), [])
