"""The commission runner: the one way a service makes a change that
charges quota.

Every such change follows one protocol (``snfd.quota.serials`` keeps the
serials it issues): issue a commission for the charge, make the change with
the serial in hand, and settle: accept the commission when the change
stands, reject it when the change failed.  ``run_charged`` is that protocol;
services describe their change and its charge, the runner does the rest::

    async def change(attempt: Attempt) -> Server:
        # One transaction (or several steps) that records attempt.serial:
        # decide_txn(txn, attempt.component, attempt.serial, True), or the
        # serial stored with the resource the change starts.
        ...

    server = await run_charged(charger, change, model.provisions(server, amounts),
                               name="cyclades: START server 7")

**Issue.**  Nothing is issued for an empty charge (``None``, ``{}``,
``[]``): the change runs with ``attempt.serial`` None.  A charge is turned
into provisions by ``provisions`` (default: it already is a list of them).
When the holder refuses:

- ``NoQuantityError`` (a release racing the acceptance of the import it
  undoes, still queued by ``Charger.settle_later``): the queue is drained
  and the commission issued once more;
- a ``guess`` the change has not confirmed yet: the change runs without a
  commission, to learn the real charge (it raises ``Recharge``);
- otherwise ``refused(error)`` says what to raise (default: the refusal
  itself); returning None instead runs the change uncharged, for a change
  that must happen anyway (the update path, following Ganeti) after the
  caller logged why.

Errors of the holder other than refusals (unreachable...) propagate, with
nothing issued.

**Change.**  ``change(attempt)`` makes the change.  When its transaction
finds a charge other than ``attempt.charge`` it raises ``Recharge(real)``
(rolling itself back): the commission is rejected and the protocol starts
again with the real charge, at most ``attempts`` times in all, after which
``exhausted`` is raised (503 by default).  A change with several steps
(a transaction, then a Ganeti job) calls ``attempt.mark_committed()`` once
the change can no longer be undone: a failure after that leaves it
standing.

**Settle.**  When the change returns, the commission is accepted (or
rejected, when ``accept(result)`` says the change found nothing to do):

- ``Settle.NOW``: decided and resolved at the holder before returning;
- ``Settle.LATER``: ``Charger.settle_later`` (batched in the background),
  for changes whose transaction recorded the decision itself
  (``record=False`` and ``decide_txn`` in the transaction);
- ``Settle.HANDED_OFF``: the change recorded the serial on what it started
  (a server's task); whoever finishes that settles it.

**Errors are surfaced, not swallowed.**  A failure of the change (before
``mark_committed``) rejects the commission, then propagates; if the reject
fails too, that is logged and noted on the change's error, and
reconciliation rejects the serial later.  A failure after
``mark_committed`` settles as a success would, then propagates.  A
commission that cannot be rejected before a retry stops the retries: the
holder's error propagates.  A settle failure after the change committed is
logged once and left to reconciliation (``Charger.reconcile``): the change
stands, so the caller gets its result.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import attrs
from twisted.logger import Logger

from snfd import errors
from snfd.quota import NoQuantityError, Provision, QuotaError
from snfd.quota.serials import Charger

log = Logger(namespace="snfd.quota")

T = TypeVar("T")


class Settle(enum.Enum):
    """How the runner settles the commission of a change that returned."""

    NOW = "now"
    LATER = "later"
    HANDED_OFF = "handed off"


class Recharge(Exception):
    """Raised by a change whose transaction found a charge other than the
    one issued (``Attempt.charge``); ``charge`` is the real one."""

    def __init__(self, charge: Any):
        super().__init__("recharge")
        self.charge = charge


@attrs.define
class Attempt:
    """One run of a change: what was issued for it.

    ``serial``: the commission's serial, None when nothing was issued
    (an empty charge, a charge still to be learnt, a refusal the caller
    accepted).  ``charge``: the charge this run is covered for (None:
    unknown, any charge the change finds is a ``Recharge``).
    ``component``: the charger's component, for ``decide_txn``.
    """

    component: str
    serial: int | None = None
    charge: Any = None
    committed: bool = False

    def mark_committed(self) -> None:
        """The change can no longer be undone (its job was submitted): a
        failure from here on leaves the commission to be settled as on
        success, not rejected."""
        self.committed = True


def _default_provisions(charge: Any) -> Iterable[Provision]:
    provisions: Iterable[Provision] = charge
    return provisions


async def run_charged(
        charger: Charger,
        change: Callable[[Attempt], Awaitable[T]],
        charge: Any = None,
        *,
        provisions: Callable[[Any], Iterable[Provision]] = _default_provisions,
        name: str = "",
        force: bool = False,
        resource_key: str = "",
        record: bool = True,
        guess: bool = False,
        attempts: int = 1,
        settle: Settle = Settle.NOW,
        accept: Callable[[T], bool] | None = None,
        refused: Callable[[QuotaError], BaseException | None] | None = None,
        exhausted: BaseException | None = None) -> T:
    """Make ``change`` under a commission for ``charge`` (see the module
    docstring) and return its result.

    ``name``, ``force``, ``resource_key`` and ``record`` go to
    ``Charger.issue``.  ``guess``: ``charge`` is only a guess until the
    change confirms it.  ``attempts``: how many times the change may run
    (``Recharge`` runs it again).  ``accept``: whether the result keeps the
    commission (default: always).  ``refused``: the error to raise for a
    refusal (None: run uncharged).  ``exhausted``: the error when the
    charge kept changing.
    """
    confirmed = not guess
    for _ in range(attempts):
        attempt = Attempt(charger.component, charge=charge)
        if charge:
            try:
                attempt.serial = await _issue(charger, provisions(charge), name, force,
                                              resource_key, record)
            except QuotaError as e:
                if not confirmed:
                    attempt.charge = None  # learn the real charge first
                else:
                    fault = e if refused is None else refused(e)
                    if fault is e:
                        raise
                    if fault is not None:
                        raise fault from e
        try:
            result = await change(attempt)
        except Recharge as e:
            if attempt.serial is not None:
                await charger.settle(attempt.serial, False)
            charge, confirmed = e.charge, True
            continue
        except BaseException as e:
            await _failed(charger, attempt, settle, e)
            raise
        if attempt.serial is not None:
            await _succeeded(charger, attempt.serial, settle,
                             True if accept is None else accept(result))
        return result
    raise exhausted or errors.ServiceUnavailable(
        "The quota charge of this change kept changing; retry.")


async def settle_after_commit(charger: Charger, serial: int, accept: bool) -> None:
    """Resolve ``serial`` (decided, or to be decided ``accept``) once the
    change it belongs to committed.  A failure is logged and left to
    reconciliation: the change stands whatever the holder says."""
    try:
        await charger.settle(serial, accept)
    except Exception:
        log.failure("{component}: commission {serial} not settled; reconciliation will",
                    component=charger.component, serial=serial)


async def _issue(charger: Charger, provisions: Iterable[Provision], name: str,
                 force: bool, resource_key: str, record: bool) -> int:
    wanted = list(provisions)
    try:
        return await charger.issue(wanted, name=name, force=force,
                                   resource_key=resource_key, record=record)
    except NoQuantityError:
        # A release racing the acceptance of the import it undoes, still in
        # the background queue: let it land, then ask once more.
        await charger.drain()
        return await charger.issue(wanted, name=name, force=force,
                                   resource_key=resource_key, record=record)


async def _succeeded(charger: Charger, serial: int, settle: Settle, accept: bool) -> None:
    if not accept:
        await settle_after_commit(charger, serial, False)
    elif settle is Settle.NOW:
        await settle_after_commit(charger, serial, True)
    elif settle is Settle.LATER:
        charger.settle_later(serial, True)


async def _failed(charger: Charger, attempt: Attempt, settle: Settle,
                  error: BaseException) -> None:
    serial = attempt.serial
    if serial is None:
        return
    if attempt.committed:
        await _succeeded(charger, serial, settle, True)
        return
    try:
        await charger.settle(serial, False)
    except Exception as e:
        log.failure("{component}: commission {serial} of a failed change not rejected;"
                    " reconciliation will", component=charger.component, serial=serial)
        error.add_note(f"quota commission {serial} not rejected ({e}); reconciliation will")
