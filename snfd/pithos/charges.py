"""What a storage write charges to the account quota (``pithos.diskspace``),
and how it runs under its commission.

When the quota holder shares the node's database (``IQuotaLedger``: the
identity service runs in this cloud's database), the write transaction
charges its usage itself, as its last step: one transaction, no
commission round trips, and a refusal rolls the change back.

Otherwise (the holder is across HTTP), a write that changes usage issues
its commission before the transaction (``snfd.quota.charged.run_charged``), records the
decision inside it (``snfd.quota.serials.decide_txn``) and settles after
it.  The charge is known only inside the transaction (``WriteCharge``
adds it up); the runner guesses it (a new object of the uploaded size in
the container's last known project), and when the guess is wrong the
transaction rolls back, the commission is rejected and the change runs
again with the right one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from twisted.logger import Logger

from snfd import errors
from snfd.interfaces import IQuotaLedger
from snfd.quota import NoHoldingError, Provision, QuotaError, user_and_project
from snfd.quota import serials as qs
from snfd.quota.charged import Attempt, Recharge, Settle, run_charged

log = Logger(namespace="snfd.pithos")

T = TypeVar("T")

COMPONENT = "pithos"
DISKSPACE = "pithos.diskspace"
_ATTEMPTS = 8


class WriteCharge:
    """What one write transaction charges, checked against what was issued.

    ``projects`` collects the project of each container the transaction
    touched (the runner's next guesses)."""

    def __init__(self, active: bool, expected: dict[tuple[str, str], int] | None,
                 serial: int | None, ledger: Any = None, label: str = ""):
        self.active = active
        self.expected = expected
        self.serial = serial
        self.ledger = ledger
        self.label = label
        self.charges: dict[tuple[str, str], int] = {}
        self.projects: dict[str, str] = {}

    def begin(self) -> None:
        """First step of a write transaction."""
        # The pool may run the interaction again after a conflict.
        self.charges = {}
        self.projects = {}

    def charge(self, account: str, project: str, delta: int) -> None:
        """Add ``delta`` bytes to what ``account`` uses in ``project``."""
        if delta:
            key = (account, project)
            self.charges[key] = self.charges.get(key, 0) + delta

    def finish(self, txn: Any) -> None:
        """Last step of a write transaction: roll back unless the charge is
        the one issued, then record the commission's acceptance."""
        actual = {k: v for k, v in self.charges.items() if v}
        if not self.active:
            return
        if self.ledger is not None:
            if actual:
                self.ledger.charge_txn(txn, COMPONENT, _provisions(actual), self.label)
            return
        if (self.expected is None and actual) or (
                self.expected is not None and actual != self.expected):
            raise Recharge(actual)
        if self.serial is not None:
            record = qs.decide_txn(txn, COMPONENT, self.serial, True)
            if not record.accept:
                raise errors.ServiceUnavailable(
                    "The quota commission of this change was withdrawn; retry.")


def _provisions(charges: Mapping[tuple[str, str], int]) -> list[Provision]:
    out: list[Provision] = []
    for (account, project), delta in sorted(charges.items()):
        out.extend(user_and_project(account, project, DISKSPACE, delta))
    return out


def _refused(error: QuotaError) -> BaseException:
    """What a write the quota holder refuses answers."""
    if isinstance(error, NoHoldingError):
        return errors.OverLimit(
            f"No {DISKSPACE} quota for this account in project"
            f" {error.provision.source or error.provision.holder}.")
    return error


class WriteRunner:
    """Runs write transactions under their quota commission (see the
    module docstring).

    @param db: the node's ``IDatabase``.
    @param charger: a ``snfd.quota.serials.Charger`` for component
        ``pithos`` (``None``: nothing is charged).
    """

    def __init__(self, db: Any, charger: Any):
        self.db = db
        self.charger = charger
        self._ledger = IQuotaLedger(charger.holder, None) if charger is not None else None
        # Last known project of each container path: the guess of a charge.
        self._projects: dict[str, str] = {}

    def guess(self, account: str, container: str, size: int) -> dict[tuple[str, str], int]:
        """The likely charge of ``size`` new bytes in the container."""
        project = self._projects.get(f"{account}/{container}", account)
        return {(account, project): size} if size else {}

    @property
    def ledger(self) -> Any:
        """The quota holder's ``IQuotaLedger`` when it shares the database
        (writes then charge in their own transaction), else ``None``."""
        return self._ledger

    async def run(self, name: str, fn: Callable[..., T], *args: Any,
                  expect: dict[tuple[str, str], int] | None = None,
                  label: str = "") -> T:
        """Run the transaction ``fn(txn, charge, *args)`` (named ``name``)
        with its commission: ``expect`` is the guess of the charge, which
        the transaction confirms or corrects; ``label`` names the
        commission."""
        async def change(attempt: Attempt) -> T:
            ctx = WriteCharge(self.charger is not None, attempt.charge, attempt.serial)
            result: T = await self.db.run(name, fn, ctx, *args)
            self._projects.update(ctx.projects)
            return result

        if self.charger is None:
            return await change(Attempt(COMPONENT))
        if self._ledger is not None:
            ctx = WriteCharge(True, None, None, self._ledger, label)
            try:
                result: T = await self.db.run(name, fn, ctx, *args)
            except QuotaError as e:
                raise _refused(e) from None
            self._projects.update(ctx.projects)
            return result
        # The transaction records the decision itself (record=False): the
        # holder may learn it later.
        return await run_charged(
            self.charger, change, expect, provisions=_provisions, name=label, record=False,
            guess=True, attempts=_ATTEMPTS, settle=Settle.LATER, refused=_refused,
            exhausted=errors.ServiceUnavailable(
                "The storage changed too often meanwhile; retry."))


async def quotas(charger: Any, account: str) -> dict[str, int]:
    """The account's ``pithos.diskspace`` limit in each project it draws
    from (empty without a quota holder, or when the holder fails: logged)."""
    holder = charger.holder if charger is not None else None
    if holder is None:
        return {}
    try:
        holdings = await holder.quotas([f"user:{account}"], None, [DISKSPACE])
    except Exception:
        log.failure("pithos: cannot read the quotas of {account}", account=account)
        return {}
    return {h.source.split(":", 1)[1]: h.limit for h in holdings
            if h.source and h.source.startswith("project:")}


async def diskspace_left(charger: Any, account: str, project: str) -> int | None:
    """The ``pithos.diskspace`` bytes the account may still use in
    ``project`` (``None``: no quota holder, no holding, or the holder
    fails: logged)."""
    holder = charger.holder if charger is not None else None
    if holder is None:
        return None
    try:
        found = await holder.quotas([f"user:{account}"], [f"project:{project}"],
                                    [DISKSPACE])
    except Exception:
        log.failure("pithos: cannot read the quotas of {account}", account=account)
        return None
    return _left(found)


def _left(found: list[Any]) -> int | None:
    """What the holdings ``found`` leave (the least of them), ``None``
    when there are none."""
    return max(0, min(h.limit - h.usage_max for h in found)) if found else None


def too_many_uploads(pending: int, bound: int) -> None:
    """``OverLimit`` when ``pending`` bytes of unreferenced uploads are
    past their ``bound`` (``Backend.upload_limits``)."""
    if pending > bound:
        raise errors.OverLimit(
            f"{pending} bytes of your uploads are not in any object; name them"
            " in an object (a hashmap PUT) or let them expire first.")


def diskspace_left_txn(ledger: Any, txn: Any, account: str, project: str) -> int | None:
    """``diskspace_left`` read in ``txn`` through the ``IQuotaLedger``."""
    found = ledger.quotas_txn(txn, [f"user:{account}"], [f"project:{project}"], [DISKSPACE])
    return _left(found)


async def check_project(charger: Any, account: str, project: str | None) -> None:
    """``BadRequest`` unless the account draws pithos.diskspace from
    ``project`` (checked only when a quota holder is known)."""
    if not project or project == account:
        return
    holder = charger.holder if charger is not None else None
    if holder is None:
        return
    found = await holder.quotas([f"user:{account}"], [f"project:{project}"], [DISKSPACE])
    if not found:
        raise errors.BadRequest(f"Project {project!r} gives this account no storage.")


__all__ = ["COMPONENT", "DISKSPACE", "WriteCharge", "WriteRunner", "check_project",
           "diskspace_left", "diskspace_left_txn", "quotas", "too_many_uploads"]
