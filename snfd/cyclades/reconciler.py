"""Reconciliation of servers with what Ganeti shows
(reference/synnefo-apis.md 3.8, ``snf-manage reconcile-servers``).

Per backend: D = the live servers the database places on it, G = its
instances (``GET /2/instances?bulk=1``; STARTED when ``oper_state`` is
true, else STOPPED), J = its jobs (``GET /2/jobs?bulk=1``, a single job by
``GET /2/jobs/<id>`` when needed).  Instances and jobs are read before the
servers, so a server is never missed for an instance it owns.

A server or instance with a job in progress, or one that ended less than
``settle`` seconds before the snapshot (its event may still be on its
way), is left alone this time (``skipped``); so is a server missing from
the lists whose instance Ganeti has when asked again (``GET
/2/instances/<name>``): made since the lists were read, by a job they do
not show either (judged stale, it would be deleted, and its live
instance the next time as an orphan).  Findings, and what each fix
does (``fix`` names: stale, orphans, unsynced, pending_tasks, all):

- **stale** (in D, not in G): a BUILD server whose create job failed, was
  cancelled or is unknown (or that has no job ``build_grace`` seconds after
  it was made) -> simulated ``OP_INSTANCE_CREATE`` error (it goes to
  ERROR); an ERROR server only when its user asked to destroy it; any
  other -> simulated ``OP_INSTANCE_REMOVE`` success (deleted, quota and
  backend counters given back).
- **orphans** (in G as ``snf-<id>``, not live in D) -> ``DELETE`` of the
  instance.
- **pending_tasks**: a task whose job is final -> the job's final event
  simulated (its own id, opcode, status and result: the task's commission
  is accepted or rejected by the update path); a task whose job Ganeti
  does not know, or a task without a job for more than ``settle`` seconds
  -> the task is cleared and its commission rejected.
- **unsynced** (in both): state (a BUILD server gets a simulated create
  success first, then STARTUP or SHUTDOWN success as Ganeti shows it),
  flavor (vcpus/maxmem differ from the flavor -> simulated SET_PARAMS with
  those beparams, switching the flavor), NICs and disks (-> simulated
  SET_PARAMS carrying Ganeti's lists), the security-group tags
  (``snf:sg:``, against the ports' rules -> delivered again).

Every simulated event goes through ``UpdatePath.simulate``, so quota moves
as for a real event.  A backend whose RAPI cannot be reached is reported
in ``unavailable`` and the others continue; a fix that fails is reported in
``failed``.

``ReconcileDuty`` runs ``reconcile(fix={"all"})`` on the leader every
``interval`` seconds.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from snfd.cluster.periodic import PeriodicDuty
from snfd.cyclades import store
from snfd.cyclades.allocator import rapi_target
from snfd.cyclades.model import FINAL_JOB_STATUSES, GanetiBackend, Server, server_id_of
from snfd.cyclades.networks.security_groups import TAG_PREFIX, SecurityGroups
from snfd.cyclades.updates import OP_CREATE, OP_REMOVE, OP_SET_PARAMS, UpdatePath
from snfd.ganeti.jobs import instance_disks, instance_nics
from snfd.ganeti.rapi import RapiError, RapiUnavailable
from snfd.interfaces import ILeaderDuty

log = Logger(namespace="snfd.cyclades.reconciler")

UTC = datetime.UTC
FIXES = frozenset({"stale", "orphans", "unsynced", "pending_tasks"})


@attrs.define
class Report:
    """What one reconciliation found and did; each entry is (server id,
    what).  ``unavailable`` holds (cluster, reason) of backends that could
    not be read."""

    stale: list[tuple[int, str]] = attrs.Factory(list)
    orphans: list[tuple[int, str]] = attrs.Factory(list)
    unsynced: list[tuple[int, str]] = attrs.Factory(list)
    pending_tasks: list[tuple[int, str]] = attrs.Factory(list)
    skipped: list[tuple[int, str]] = attrs.Factory(list)
    fixed: list[tuple[int, str]] = attrs.Factory(list)
    failed: list[tuple[int, str]] = attrs.Factory(list)
    unavailable: list[tuple[str, str]] = attrs.Factory(list)

    @property
    def changed(self) -> bool:
        """Whether a fix changed something (or tried to)."""
        return bool(self.fixed or self.failed)

    @property
    def clean(self) -> bool:
        """Nothing found, every backend read."""
        return not (self.stale or self.orphans or self.unsynced or self.pending_tasks
                    or self.unavailable or self.failed)

    def summary(self) -> str:
        """One line of counts."""
        text = (f"stale {len(self.stale)}, orphans {len(self.orphans)}, unsynced"
                f" {len(self.unsynced)}, pending tasks {len(self.pending_tasks)},"
                f" skipped {len(self.skipped)}; fixed {len(self.fixed)},"
                f" failed {len(self.failed)}")
        if self.unavailable:
            text += "; unavailable: " + ", ".join(c for c, _ in self.unavailable)
        return text

    def as_json(self) -> dict[str, Any]:
        """Every list as JSON objects (``{"server", "what"}``; unavailable
        backends as ``{"backend", "reason"}``) plus the summary."""
        out: dict[str, Any] = {
            name: [{"server": sid, "what": what} for sid, what in getattr(self, name)]
            for name in ("stale", "orphans", "unsynced", "pending_tasks", "skipped",
                         "fixed", "failed")}
        out["unavailable"] = [{"backend": c, "reason": r} for c, r in self.unavailable]
        out["summary"] = self.summary()
        return out

    def lines(self) -> list[str]:
        """Every finding, one per line, as the CLI prints them."""
        out: list[str] = []
        for cluster, reason in self.unavailable:
            out.append(f"unavailable  backend {cluster}: {reason}")
        for label, entries in (("stale", self.stale), ("orphan", self.orphans),
                               ("unsynced", self.unsynced),
                               ("pending", self.pending_tasks), ("skipped", self.skipped),
                               ("fixed", self.fixed), ("failed", self.failed)):
            out.extend(f"{label:<12} server {sid}: {what}" for sid, what in entries)
        out.append(self.summary())
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def expand_fixes(fix: Iterable[str]) -> frozenset[str]:
    """The fix names, ``all`` expanded; ``ValueError`` for an unknown one."""
    names = frozenset(fix)
    unknown = names - FIXES - {"all"}
    if unknown:
        raise ValueError(f"unknown fix {', '.join(sorted(unknown))}; choose from"
                         f" {', '.join(sorted(FIXES | {'all'}))}")
    return FIXES if "all" in names else names


# -- Ganeti's view ---------------------------------------------------------------

def instance_state(instance: dict[str, Any]) -> str:
    """STARTED when Ganeti says the instance runs, else STOPPED."""
    return "STARTED" if instance.get("oper_state") else "STOPPED"


def instance_shape(instance: dict[str, Any]) -> tuple[int, int] | None:
    """(vcpus, memory MiB) from the instance's beparams, if it has them."""
    be = instance.get("beparams")
    if not isinstance(be, dict):
        return None
    cpu, ram = be.get("vcpus"), be.get("maxmem", be.get("memory"))
    if isinstance(cpu, int) and isinstance(ram, int):
        return cpu, ram
    return None


def _nic_key(nic: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(str(nic.get(k)) for k in ("uuid", "mac", "ip", "network"))


def _disk_key(disk: dict[str, Any]) -> tuple[Any, ...]:
    return (str(disk.get("uuid")), str(disk.get("size")))


def _job_ops(job: dict[str, Any]) -> list[dict[str, Any]]:
    ops = job.get("ops")
    return [op for op in ops if isinstance(op, dict)] if isinstance(ops, list) else []


def _op_index(job: dict[str, Any], instance: str) -> int | None:
    for i, op in enumerate(_job_ops(job)):
        if op.get("instance_name") == instance:
            return i
    return None


def _ending_op(job: dict[str, Any], instance: str) -> int:
    """The opcode of a finished job about ``instance`` that ends a task
    (``updates.task_done``): the first that did not succeed, else the
    last (a rebuild's job has several)."""
    indices = [i for i, op in enumerate(_job_ops(job)) if op.get("instance_name") == instance]
    for i in indices:
        if _nth(job, "opstatus", i) not in (None, "success"):
            return i
    return indices[-1] if indices else 0


def _seconds(ts: Any) -> float | None:
    if isinstance(ts, list | tuple) and len(ts) == 2 and all(
            isinstance(v, int | float) for v in ts):
        return float(ts[0]) + float(ts[1]) / 1e6
    return None


def _nth(job: dict[str, Any], key: str, i: int) -> Any:
    values = job.get(key)
    if isinstance(values, list) and i < len(values):
        return values[i]
    return None


# -- the reconciler ----------------------------------------------------------------

class Reconciler:
    """Compares servers with Ganeti and fixes what it is asked to (see the
    module docstring).

    @param db: the node's ``IDatabase``.
    @param rapi_pool: ``RapiPool`` (``client(RapiTarget)``).
    @param updates: the ``UpdatePath`` simulated events go through.
    @param clock: ``IReactorTime``.
    @param timeout: RAPI timeout (seconds).
    @param settle: jobs that ended less than this before the snapshot may
        still have events in flight: their servers are skipped.
    @param build_grace: a BUILD server without a create job younger than
        this is still being submitted.
    @param security: the network service's ``SecurityGroups``, whose
        instance tags are compared too (None: no network service).
    """

    def __init__(self, db: Any, rapi_pool: Any, updates: UpdatePath, clock: Any,
                 timeout: float = 30.0, settle: float = 30.0, build_grace: float = 120.0,
                 security: SecurityGroups | None = None):
        self.security = security
        self._db = db
        self._rapi_pool = rapi_pool
        self._updates = updates
        self._clock = clock
        self._timeout = timeout
        self.settle = settle
        self.build_grace = build_grace

    async def reconcile(self, backend_ids: Iterable[int] | None = None,
                        fix: Iterable[str] = frozenset()) -> Report:
        """Reconcile the given backends (default: every backend that is not
        offline) and apply the fixes named in ``fix``."""
        fixes = expand_fixes(fix)
        report = Report()
        backends: list[GanetiBackend] = await self._db.run("cyclades.reconcile_backends",
                                                     store.backends_txn)
        if backend_ids is None:
            chosen = [b for b in backends if not b.offline]
        else:
            wanted = set(backend_ids)
            chosen = [b for b in backends if b.id in wanted]
            for missing in sorted(wanted - {b.id for b in chosen}):
                report.unavailable.append((str(missing), "no such backend"))
        for backend in chosen:
            await _Run(self, backend, fixes, report).run()
        return report


class _Run:
    """One backend's reconciliation."""

    def __init__(self, reconciler: Reconciler, backend: GanetiBackend, fixes: frozenset[str],
                 report: Report):
        self.r = reconciler
        self.backend = backend
        self.fixes = fixes
        self.report = report
        self.rapi = reconciler._rapi_pool.client(rapi_target(backend, reconciler._timeout))
        self.snapshot = 0.0
        #: The latest job timestamp the snapshot holds: Ganeti's clock had
        #: reached it when the snapshot was taken.
        self.ganeti_time: datetime.datetime | None = None
        self.jobs: dict[int, dict[str, Any]] = {}
        self.jobs_of: dict[str, list[dict[str, Any]]] = {}

    @property
    def updates(self) -> UpdatePath:
        return self.r._updates

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.r._clock.seconds(), UTC)

    async def simulate(self, *args: Any, **kwargs: Any) -> str:
        """``UpdatePath.simulate`` stamped with the latest time this pass saw
        in Ganeti's clock (its jobs' timestamps), never this node's."""
        result: str = await self.updates.simulate(*args, event_time=self.ganeti_time,
                                                  **kwargs)
        return result

    async def run(self) -> None:
        self.snapshot = self.r._clock.seconds()
        try:
            instances = await self.rapi.instances()
            jobs = await self.rapi.jobs()
        except (RapiUnavailable, RapiError) as e:
            self.report.unavailable.append((self.backend.clustername, str(e)))
            log.warn("reconciliation of backend {cluster} skipped: {error}",
                     cluster=self.backend.clustername, error=e)
            return
        stamps = [t for job in jobs for key in ("received_ts", "start_ts", "end_ts")
                  if (t := _seconds(job.get(key))) is not None]
        if stamps:
            self.ganeti_time = datetime.datetime.fromtimestamp(max(stamps), UTC)
        for job in jobs:
            if isinstance(job.get("id"), int):
                self.jobs[job["id"]] = job
                for op in _job_ops(job):
                    name = op.get("instance_name")
                    if isinstance(name, str):
                        self.jobs_of.setdefault(name, []).append(job)
        found = {i["name"]: i for i in instances
                 if isinstance(i, dict) and isinstance(i.get("name"), str)}
        servers: list[Server] = await self.r._db.run(
            "cyclades.reconcile_servers", store.servers_txn, backend_id=self.backend.id)
        for server in servers:
            instance = found.get(server.instance_name)
            try:
                if instance is None:
                    await self.stale(server)
                else:
                    await self.in_both(server, instance)
            except (RapiUnavailable, RapiError) as e:
                self.report.failed.append((server.id, f"Ganeti: {e}"))
        live = {s.id for s in servers}
        for name in sorted(found):
            server_id = server_id_of(name)
            if server_id is None or server_id in live:
                continue
            if self.busy(name):
                self.report.skipped.append((server_id, f"orphan {name}: job in progress"))
                continue
            what = f"instance {name} on {self.backend.clustername} has no live server"
            self.report.orphans.append((server_id, what))
            if "orphans" in self.fixes:
                await self.fix(server_id, f"deleted instance {name}", self._delete, name)

    async def _delete(self, name: str) -> str:
        job_id = await self.rapi.delete_instance(name)
        return f"job {job_id}"

    async def fix(self, server_id: int, what: str, action: Any, *args: Any,
                  **kwargs: Any) -> None:
        try:
            outcome = await action(*args, **kwargs)
        except Exception as e:
            log.failure("reconciliation: {what} of server {id} failed", what=what,
                        id=server_id)
            self.report.failed.append((server_id, f"{what}: {e}"))
            return
        self.report.fixed.append((server_id, f"{what} ({outcome})" if outcome else what))

    def busy(self, name: str) -> str | None:
        """Why ``name``'s jobs make it unsafe to judge now, or None."""
        for job in self.jobs_of.get(name, []):
            status = job.get("status")
            if status not in FINAL_JOB_STATUSES:
                return f"job {job.get('id')} is {status}"
            ended = _seconds(job.get("end_ts"))
            if ended is not None and ended >= self.snapshot - self.r.settle:
                return f"job {job.get('id')} just ended"
        return None

    async def job(self, job_id: int, name: str) -> dict[str, Any] | None:
        """Job ``job_id`` as far as it concerns instance ``name`` (the full
        ``/2/jobs/<id>`` answer), or None when Ganeti does not know it."""
        job = await self.rapi.job(job_id)
        if job is None or _op_index(job, name) is None:
            return None
        return job

    # -- stale -------------------------------------------------------------

    async def stale(self, server: Server) -> None:
        name = server.instance_name
        busy = self.busy(name)
        if busy:
            self.report.skipped.append((server.id, f"not in Ganeti, but {busy}"))
            return
        if await self.rapi.instance(name) is not None:
            self.report.skipped.append((server.id, "made in Ganeti since it was read"))
            return
        if server.operstate == "BUILD":
            await self.stale_build(server)
            return
        if server.operstate == "ERROR" and server.action != "DESTROY":
            return
        self.report.stale.append((server.id, f"{server.operstate}, {name} not in Ganeti"))
        if "stale" in self.fixes:
            await self.fix(server.id, "simulated OP_INSTANCE_REMOVE success",
                           self.simulate, server.id, OP_REMOVE, "success")

    async def stale_build(self, server: Server) -> None:
        name = server.instance_name
        job_id = server.task_job_id if server.task == "BUILD" else None
        if job_id is None and server.backendopcode in ("", OP_CREATE):
            job_id = server.backendjobid
        result: Any = None
        if job_id is None:
            created = server.created or self._now()
            if (self._now() - created).total_seconds() < self.r.build_grace:
                self.report.skipped.append((server.id, "BUILD, create not submitted yet"))
                return
            why = "BUILD without a create job"
        else:
            job = await self.job(job_id, name)
            status = job.get("status") if job else None
            if status is not None and status not in FINAL_JOB_STATUSES:
                self.report.skipped.append((server.id, f"BUILD, create job {job_id} {status}"))
                return
            if status == "success":
                self.report.stale.append((server.id, f"BUILD, {name} not in Ganeti"))
                if "stale" in self.fixes:
                    await self.fix(server.id, "simulated OP_INSTANCE_REMOVE success",
                                   self.simulate, server.id, OP_REMOVE, "success")
                return
            if job is not None:
                index = _op_index(job, name)
                result = _nth(job, "opresult", index or 0)
            why = f"BUILD, create job {job_id} {status or 'unknown to Ganeti'}"
        self.report.stale.append((server.id, why))
        if "stale" in self.fixes:
            await self.fix(server.id, "simulated OP_INSTANCE_CREATE error",
                           self.simulate, server.id, OP_CREATE, "error",
                           result=result)

    # -- in both -------------------------------------------------------------

    async def in_both(self, server: Server, instance: dict[str, Any]) -> None:
        busy = self.busy(server.instance_name)
        if busy:
            self.report.skipped.append((server.id, busy))
            return
        if server.task:
            await self.pending_task(server, instance)
            fresh: Server | None = await self.r._db.run(
                "cyclades.reconcile_server", store.server_txn, server.id)
            if fresh is None or fresh.deleted:
                return
            server = fresh
        await self.unsynced(server, instance)

    async def pending_task(self, server: Server, instance: dict[str, Any]) -> None:
        name = server.instance_name
        if server.task_job_id is None:
            changed = server.updated or self._now()
            if (self._now() - changed).total_seconds() < max(self.r.settle, 1.0):
                self.report.skipped.append((server.id, f"task {server.task} being submitted"))
                return
            self.report.pending_tasks.append(
                (server.id, f"task {server.task} without a Ganeti job"))
            if "pending_tasks" in self.fixes:
                await self.fix(server.id, "cleared the task, commission rejected",
                               self._clear, server.id, None)
            return
        job = await self.job(server.task_job_id, name)
        if job is None:
            self.report.pending_tasks.append(
                (server.id, f"task {server.task}: job {server.task_job_id} unknown to Ganeti"))
            if "pending_tasks" in self.fixes:
                await self.fix(server.id, "cleared the task, commission rejected",
                               self._clear, server.id, server.task_job_id)
            return
        status = job.get("status")
        if status not in FINAL_JOB_STATUSES:
            self.report.skipped.append((server.id, f"task job {job.get('id')} is {status}"))
            return
        index = _ending_op(job, name)
        op = _job_ops(job)[index]
        opcode = str(op.get("OP_ID", ""))
        op_status = _nth(job, "opstatus", index) or status
        self.report.pending_tasks.append(
            (server.id, f"task {server.task}: job {server.task_job_id} {opcode} {op_status}"
                        " finished, its event was not applied"))
        if "pending_tasks" in self.fixes:
            job_fields = {k: op[k] for k in ("nics", "disks", "hvparams", "beparams")
                          if k in op}
            await self.fix(server.id, f"simulated {opcode} {op_status}",
                           self.simulate, server.id, opcode, op_status,
                           jobid=server.task_job_id, result=_nth(job, "opresult", index),
                           job_fields=job_fields, nics=instance_nics(instance),
                           disks=instance_disks(instance))

    async def _clear(self, server_id: int, job_id: int | None) -> str:
        cleared = await self.updates.clear_task(server_id, job_id)
        return "" if cleared else "the task had changed meanwhile"

    async def unsynced(self, server: Server, instance: dict[str, Any]) -> None:
        fix = "unsynced" in self.fixes
        state = instance_state(instance)
        nics, disks = instance_nics(instance), instance_disks(instance)
        if server.operstate != state:
            self.report.unsynced.append(
                (server.id, f"state {server.operstate} in the database, {state} in Ganeti"))
            if fix:
                await self.fix(server.id, f"simulated events to {state}", self._to_state,
                               server, state, nics, disks)
        job_fields: dict[str, Any] = {}
        shape = instance_shape(instance)
        if shape is not None and shape != (server.flavor.cpu, server.flavor.ram):
            self.report.unsynced.append(
                (server.id, f"flavor {server.flavor.name} in the database, {shape[0]} vcpus"
                            f" and {shape[1]} MiB in Ganeti"))
            job_fields["beparams"] = {"vcpus": shape[0], "maxmem": shape[1]}
        sync = False
        if sorted(map(_nic_key, server.nics)) != sorted(map(_nic_key, nics)):
            self.report.unsynced.append((server.id, "NICs differ from Ganeti's"))
            sync = True
        if sorted(map(_disk_key, server.disks)) != sorted(map(_disk_key, disks)):
            self.report.unsynced.append((server.id, "disks differ from Ganeti's"))
            sync = True
        if fix and (job_fields or sync):
            await self.fix(server.id, "simulated OP_INSTANCE_SET_PARAMS success",
                           self.simulate, server.id, OP_SET_PARAMS, "success",
                           job_fields=job_fields, nics=nics, disks=disks)
        await self.security_tags(server, instance)

    async def security_tags(self, server: Server, instance: dict[str, Any]) -> None:
        """The instance's security-group tags against what the database
        says its ports' rules are (a delivery that failed, or tags changed
        by hand): fixed by delivering them again."""
        groups = self.r.security
        if groups is None or not isinstance(instance.get("tags"), list):
            return
        wanted = set(await groups.server_tags(server.id))
        have = {t for t in instance["tags"] if isinstance(t, str) and t.startswith(TAG_PREFIX)}
        if wanted == have:
            return
        self.report.unsynced.append(
            (server.id, f"security-group tags differ from the database's"
                        f" ({len(have - wanted)} stale, {len(wanted - have)} missing)"))
        if "unsynced" in self.fixes:
            await self.fix(server.id, "delivered its security-group tags",
                           groups.deliver, [server.id])

    async def _to_state(self, server: Server, state: str, nics: list[dict[str, Any]],
                        disks: list[dict[str, Any]]) -> str:
        done: list[str] = []
        current = server.operstate
        if current == "BUILD":
            done.append(await self.simulate(server.id, OP_CREATE, "success",
                                                    nics=nics, disks=disks))
            current = "STARTED"
        if current != state:
            opcode = "OP_INSTANCE_STARTUP" if state == "STARTED" else "OP_INSTANCE_SHUTDOWN"
            done.append(await self.simulate(server.id, opcode, "success"))
        return "; ".join(done)


@implementer(ILeaderDuty)
class ReconcileDuty(PeriodicDuty):
    """Reconciles (fixing everything) every ``interval`` seconds on the
    leader; a failed run is logged and the next one still comes.  Each run
    first checks, through ``leadership.fenced``, that this node still
    leads.  ``last_report`` holds the latest report."""

    def __init__(self, reconciler: Reconciler, clock: Any, interval: float = 300.0,
                 fix: Iterable[str] = frozenset({"all"})):
        super().__init__("cyclades-reconcile", interval, clock, self._reconcile)
        self._reconciler = reconciler
        self._fix = frozenset(fix)
        self._leadership: Any = None
        self.last_report: Report | None = None

    def start(self, leadership: Any) -> None:
        self._leadership = leadership
        super().start(leadership)

    async def _reconcile(self) -> None:
        if self._leadership is not None:
            await self._leadership.fenced("cyclades.reconcile_term", _nothing_txn)
        report = await self._reconciler.reconcile(fix=self._fix)
        self.last_report = report
        if report.changed or report.unavailable:
            log.info("reconciliation: {summary}", summary=report.summary())


def _nothing_txn(txn: Any) -> None:
    return None
