"""The charging side of the commission protocol: a service's own serials.

A service that charges quota (pithos for bytes, cyclades for VMs) issues a
commission before it changes anything, and resolves it once it knows
whether the change happened.  A crash between the two leaves the
commission pending at the quota holder; the table ``quota_serials`` (node
schema) remembers every serial the service issued and what it decided, so
``Charger.reconcile`` can finish the job later: serials the table marks
accepted are accepted, every other pending serial is rejected.

The protocol itself (issue, run the change with the serial, retry when
the change finds another charge, then settle or reject, errors surfaced)
is written once, in ``snfd.quota.charged.run_charged``: services call it
rather than ``issue`` and ``settle`` by hand.  Its pieces here:

``issue`` records the serial (undecided) in its own transaction right after
the holder accepted it.  ``settle`` records the decision, tells the holder
and marks the row resolved; calling it twice is harmless (the first
decision stands).  If the process dies after the change committed but
before ``settle(accept=True)`` recorded the decision, ``reconcile`` rejects
the commission and the usage stays a little too low.  A service that must
not under-charge records the decision inside the very transaction that
makes the change (``record=False`` to the runner, and
``decide_txn(txn, component, serial, True)`` in the change's transaction,
rolling back when the returned record says ``accept`` is false because
``reconcile`` rejected the serial meanwhile); ``reconcile`` then accepts
it, and the settlement after the commit completes it as usual
(``settle_later`` batches those).

When the holder keeps its tables in the service's own database
(``IQuotaLedger``, the in-process holder), ``issue`` issues and records in
one transaction, and ``settle`` (and each ``settle_later`` batch) decides,
resolves and marks in one: two transactions a commission instead of five,
with the same states in between, so reconciliation is unchanged.

Reconciliation runs on one node (a leader duty) or from ``snf-manage``.
Pass ``grace`` (seconds) to leave alone undecided serials younger than
that, which may belong to requests still in flight, unless the node
start ("boot") that issued them is over: a node's charger names its boot
in each commission, and a boot that was restarted or stopped has no
request in flight.  Silence is not enough: a frozen node wakes up and
finishes its requests, and a change made without its commission would
leave usage too low.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from snfd import errors
from snfd.db import prepared
from snfd.interfaces import IQuotaLedger
from snfd.quota import Provision

log = Logger(namespace="snfd.quota")

_COLUMNS = "component, serial, resource_key, pending, accept, resolved, created_at"


@attrs.frozen
class SerialRecord:
    """One issued serial as the service remembers it.

    ``pending``: no decision yet; ``accept``: the decision (meaningful once
    ``pending`` is false); ``resolved``: the holder has been told.
    """

    component: str
    serial: int
    resource_key: str
    pending: bool
    accept: bool
    resolved: bool
    created_at: datetime.datetime


def _record(row: Sequence[Any]) -> SerialRecord:
    return SerialRecord(*row)


def record_txn(txn: Any, component: str, serial: int, resource_key: str = "") -> None:
    """Remember a freshly issued serial as undecided (idempotent)."""
    prepared.execute(txn,
        """INSERT INTO quota_serials (component, serial, resource_key)
           VALUES (%s, %s, %s) ON CONFLICT (component, serial) DO NOTHING""",
        (component, serial, resource_key))


def decide_txn(txn: Any, component: str, serial: int, accept: bool) -> SerialRecord:
    """Record the decision for ``serial`` and return the row.

    The first decision stands: deciding again returns the earlier one
    unchanged.  A serial never recorded is recorded decided.
    """
    prepared.execute(txn,
        f"""INSERT INTO quota_serials (component, serial, pending, accept)
            VALUES (%s, %s, false, %s)
            ON CONFLICT (component, serial) DO UPDATE
                SET pending = false, accept = EXCLUDED.accept
                WHERE quota_serials.pending
            RETURNING {_COLUMNS}""", (component, serial, accept))
    row = txn.fetchone()
    if row is None:
        prepared.execute(txn,
            f"SELECT {_COLUMNS} FROM quota_serials WHERE component = %s AND serial = %s",
            (component, serial))
        row = txn.fetchone()
    return _record(row)


def decide_many_txn(txn: Any, component: str, serials: Iterable[int],
                    accept: bool) -> dict[int, SerialRecord]:
    """``decide_txn`` for several serials; returns the decisions that stand."""
    return {serial: decide_txn(txn, component, serial, accept) for serial in serials}


def records_txn(txn: Any, component: str, serials: Iterable[int]) -> dict[int, SerialRecord]:
    """The rows of these serials (those recorded), by serial."""
    txn.execute(
        f"""SELECT {_COLUMNS} FROM quota_serials
            WHERE component = %s AND serial = ANY(%s)""", (component, list(serials)))
    return {row[1]: _record(row) for row in txn.fetchall()}


def undecided_txn(txn: Any, component: str) -> list[SerialRecord]:
    """Serials issued and not yet decided, ascending."""
    txn.execute(
        f"""SELECT {_COLUMNS} FROM quota_serials
            WHERE component = %s AND pending ORDER BY serial""", (component,))
    return [_record(row) for row in txn.fetchall()]


def unresolved_txn(txn: Any, component: str) -> list[SerialRecord]:
    """Serials decided but not yet known to be resolved at the holder."""
    txn.execute(
        f"""SELECT {_COLUMNS} FROM quota_serials
            WHERE component = %s AND NOT pending AND NOT resolved ORDER BY serial""",
        (component,))
    return [_record(row) for row in txn.fetchall()]


def for_resource_txn(txn: Any, component: str, resource_key: str) -> list[SerialRecord]:
    """Unresolved serials attached to one resource (a VM, an object), so a
    new action on it can settle what the previous one left behind."""
    txn.execute(
        f"""SELECT {_COLUMNS} FROM quota_serials
            WHERE component = %s AND resource_key = %s AND NOT resolved
            ORDER BY serial""", (component, resource_key))
    return [_record(row) for row in txn.fetchall()]


def mark_resolved_txn(txn: Any, component: str, serials: Iterable[int]) -> None:
    """Mark serials resolved at the holder.  An undecided one counts as
    rejected (the holder only resolves undecided serials by rejecting)."""
    prepared.execute(txn,
        """UPDATE quota_serials SET resolved = true, pending = false
           WHERE component = %s AND serial = ANY(%s)""", (component, list(serials)))


def forget_resolved_txn(txn: Any, component: str, before: datetime.datetime) -> int:
    """Delete resolved rows created before ``before``; return how many."""
    txn.execute(
        """DELETE FROM quota_serials
           WHERE component = %s AND resolved AND created_at < %s""", (component, before))
    count: int = txn.rowcount
    return count


#: The issuer a ``Charger`` with ``boots`` writes at the end of a commission's name.
_ISSUER = re.compile(r"\[boot (?P<node>[^/\]]+)/(?P<boot>[0-9a-f]+)\]$")


def _gone(fault: errors.Fault) -> bool:
    return isinstance(fault, errors.NotFound)


def _outcome(resolution: Any) -> tuple[list[int], errors.Fault | None]:
    """The serials a holder's ``Resolution`` settled (those it no longer
    lists count), and the first fault of one it could not."""
    done = set(resolution.accepted) | set(resolution.rejected) | {
        s for s, fault in resolution.failed if _gone(fault)}
    failed = [fault for _, fault in resolution.failed if not _gone(fault)]
    return sorted(done), failed[0] if failed else None


class Charger:
    """Issues and resolves one component's commissions; charging services
    drive it through ``snfd.quota.charged.run_charged`` (see the module
    docstring).

    @param db: the node's ``IDatabase`` (holds ``quota_serials``).
    @param holder: an ``IQuotaHolder`` (in process or over HTTP).
    @param component: the service's component name, its ``clientkey``.
    @param boots: the node's membership (``node_id``, ``boot`` and
        ``boot_over``), or None (``snf-manage``).  With it, each commission's
        name ends with its issuer, ``[boot <node>/<boot>]``, and
        ``reconcile`` settles the commissions of a boot that is over (the
        node restarted after a crash, or stopped) without waiting out the
        grace: their requests cannot be in flight.  A node that is only
        silent (frozen, partitioned) may still finish them: its serials
        wait out the grace.
    """

    def __init__(self, db: Any, holder: Any, component: str, boots: Any = None):
        self._db = db
        self._holder = holder
        self._ledger = IQuotaLedger(holder, None)
        self.component = component
        self._boots = boots
        self._queue: dict[int, bool] = {}
        self._flushing = False
        self._idle: list[defer.Deferred[None]] = []

    @property
    def holder(self) -> Any:
        """The ``IQuotaHolder`` commissions go to."""
        return self._holder

    async def issue(self, provisions: Iterable[Provision], name: str = "",
                    force: bool = False, resource_key: str = "",
                    record: bool = True) -> int:
        """Issue a commission and record its serial (undecided).

        Raises what the holder raises (``NoCapacityError`` ...), with
        nothing recorded.  ``resource_key`` names what the change is about
        (``for_resource_txn`` finds it again).  ``record=False`` skips the
        record when the change's own transaction decides the serial
        (``decide_txn``): ``reconcile`` rejects an unrecorded pending
        serial once it is older than its grace, exactly as an undecided one.
        """
        if self._boots is not None:
            name = f"{name} [boot {self._boots.node_id}/{self._boots.boot}]".lstrip()
        if self._ledger is not None:
            issued: int = await self._db.run(
                "quota.issue", self._issue_txn, list(provisions), name, force,
                resource_key if record else None)
            return issued
        serial: int = await self._holder.issue(
            self.component, list(provisions), name=name, force=force)
        if record:
            await self._db.run("quota.record_serial", record_txn, self.component, serial,
                               resource_key)
        return serial

    def _issue_txn(self, txn: Any, provisions: list[Provision], name: str, force: bool,
                   resource_key: str | None) -> int:
        assert self._ledger is not None
        serial: int = self._ledger.issue_txn(txn, self.component, provisions, name, force)
        if resource_key is not None:
            record_txn(txn, self.component, serial, resource_key)
        return serial

    def settle_later(self, serial: int, accept: bool) -> None:
        """``settle`` in the background, batched with other serials.

        For serials whose decision a committed transaction already recorded
        (so the caller may answer at once): one decide, one resolve and one
        mark per batch instead of per serial.  Failures are logged and
        left to ``reconcile``.  ``drain()`` waits for the queue to empty.
        """
        self._queue[serial] = accept
        if not self._flushing:
            self._flushing = True
            defer.ensureDeferred(self._flush())

    async def drain(self) -> None:
        """Wait until every ``settle_later`` serial has been handled."""
        if self._flushing:
            idle: defer.Deferred[None] = defer.Deferred()
            self._idle.append(idle)
            await idle

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, {}
                try:
                    await self._settle_batch(batch)
                except Exception:
                    log.failure("{component}: commissions {serials} not settled;"
                                " reconciliation will", component=self.component,
                                serials=sorted(batch))
        finally:
            self._flushing = False
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    async def _settle_batch(self, batch: dict[int, bool]) -> None:
        if self._ledger is not None:
            _, fault = await self._db.run("quota.settle", self._settle_txn, batch)
            if fault is not None:
                raise fault
            return
        records: dict[int, SerialRecord] = {}
        for accept in (True, False):
            chosen = [s for s, a in batch.items() if a is accept]
            if chosen:
                records.update(await self._db.run(
                    "quota.decide_serials", decide_many_txn, self.component, chosen, accept))
        todo = [r for r in records.values() if not r.resolved]
        if not todo:
            return
        resolution = await self._holder.resolve(
            self.component, accept=[r.serial for r in todo if r.accept],
            reject=[r.serial for r in todo if not r.accept])
        done, fault = _outcome(resolution)
        await self._db.run("quota.resolved_serials", mark_resolved_txn, self.component, done)
        if fault is not None:
            raise fault

    def _settle_txn(self, txn: Any, batch: dict[int, bool]
                    ) -> tuple[dict[int, bool], errors.Fault | None]:
        """Decide, resolve and mark ``batch`` in one transaction of a
        ledger; the decisions that stand, and the first fault of a serial
        the holder could not resolve (left decided, for ``reconcile``)."""
        assert self._ledger is not None
        records = {serial: decide_txn(txn, self.component, serial, accept)
                   for serial, accept in batch.items()}
        todo = [r for r in records.values() if not r.resolved]
        fault: errors.Fault | None = None
        if todo:
            resolution = self._ledger.resolve_txn(
                txn, self.component, accept=[r.serial for r in todo if r.accept],
                reject=[r.serial for r in todo if not r.accept])
            done, fault = _outcome(resolution)
            mark_resolved_txn(txn, self.component, done)
        return {serial: r.accept for serial, r in records.items()}, fault

    async def settle(self, serial: int, accept: bool) -> bool:
        """Decide ``serial`` and resolve it at the holder; return the
        decision that stands (an earlier one wins).

        Safe to call again, also after ``reconcile``: a serial the holder
        no longer lists is simply marked resolved.  If the holder cannot
        be reached the error propagates and ``reconcile`` finishes later.
        """
        if self._ledger is not None:
            decided, fault = await self._db.run("quota.settle", self._settle_txn,
                                                {serial: accept})
            if fault is not None:
                raise fault
            return bool(decided[serial])
        record: SerialRecord = await self._db.run(
            "quota.decide_serial", decide_txn, self.component, serial, accept)
        if record.resolved:
            return record.accept
        resolution = await self._holder.resolve(
            self.component,
            accept=[serial] if record.accept else [],
            reject=[] if record.accept else [serial])
        for failed, fault in resolution.failed:
            if failed == serial and not _gone(fault):
                raise fault
        await self._db.run("quota.resolved_serials", mark_resolved_txn, self.component,
                           [serial])
        return record.accept

    async def reconcile(self, grace: float = 0.0) -> tuple[list[int], list[int]]:
        """Resolve every commission of this component still pending at the
        holder: accepted where the local table says accept, rejected
        otherwise.  Returns ``(accepted, rejected)``.

        Undecided serials recorded less than ``grace`` seconds ago, and with
        ``grace`` unrecorded ones issued less than that ago, are left alone.
        Rows decided but unresolved whose serial the holder no longer lists
        are marked resolved.
        """
        # Read the unresolved rows before the pending list: a row decided
        # before the holder answered and missing from its list is resolved.
        unresolved: list[SerialRecord] = await self._db.run(
            "quota.unresolved_serials", unresolved_txn, self.component)
        pending: list[int] = await self._holder.pending(self.component)
        records: dict[int, SerialRecord] = await self._db.run(
            "quota.serial_records", records_txn, self.component, pending)
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
            seconds=grace)
        accept: list[int] = []
        reject: list[int] = []
        undecided: list[int] = []
        for serial in pending:
            record = records.get(serial)
            if record is not None and not record.pending:
                (accept if record.accept else reject).append(serial)
            elif grace <= 0 or not await self._in_flight(serial, record, cutoff):
                undecided.append(serial)
        if undecided:
            # Decide them as rejected first: a request that later tries to
            # accept one of them learns the decision from decide_txn.
            decided: dict[int, SerialRecord] = await self._db.run(
                "quota.decide_serials", decide_many_txn, self.component, undecided, False)
            for serial in undecided:
                (accept if decided[serial].accept else reject).append(serial)
        accepted: list[int] = []
        rejected: list[int] = []
        if accept or reject:
            resolution = await self._holder.resolve(self.component, accept=accept,
                                                    reject=reject)
            accepted, rejected = list(resolution.accepted), list(resolution.rejected)
            done = accepted + rejected + [s for s, fault in resolution.failed if _gone(fault)]
            await self._db.run("quota.resolved_serials", mark_resolved_txn,
                               self.component, done)
        still = set(pending)
        gone = [r.serial for r in unresolved if r.serial not in still]
        if gone:
            await self._db.run("quota.resolved_serials", mark_resolved_txn,
                               self.component, gone)
        return accepted, rejected

    async def _in_flight(self, serial: int, record: SerialRecord | None,
                         cutoff: datetime.datetime) -> bool:
        """Whether the request that issued ``serial`` may still be running:
        issued after ``cutoff``, by a boot that is not over (or by an
        issuer this node cannot judge)."""
        if record is not None and record.created_at <= cutoff:
            return False
        try:
            commission = await self._holder.commission(self.component, serial)
        except errors.NotFound:
            return True  # resolved meanwhile; nothing to do
        issued: datetime.datetime = commission.issue_time
        if issued <= cutoff:
            return False
        issuer = _ISSUER.search(commission.name or "")
        if issuer is None or self._boots is None:
            return True
        over: bool = await self._boots.boot_over(issuer["node"], issuer["boot"], issued)
        return not over
