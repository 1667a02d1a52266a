"""The update path: what Ganeti's job events do to servers
(reference/synnefo-apis.md 3.6, dispatcher part, and 3.7 on this path).

``UpdatePath.op_status`` applies one ``ganeti-op-status`` message to the
server named by its instance (``snf-<id>``; other names are ignored), in
one transaction that locks the server's row.  A node applies the events
of one server one at a time, in the order they arrived (the dispatcher
hands it several messages at once); an event still waiting there that is
not final is skipped when a later one of the same job and opcode waits
behind it (Ganeti's event daemon sends one per log message of a running
op: the later event records all the skipped one would, and it keeps the
skipped one's time as the opcode's start).  Nodes consuming the same
queue meet at the row lock.  What each event does:

- deleted servers, events from another cluster than the server's backend
  and events not newer than ``backendtime`` are ignored (redeliveries and
  stale events).  ``backendtime`` only advances when a job finalizes
  successfully, when a create fails, when a remove finalizes and on
  progress messages, so the intermediate statuses of newer jobs still get
  through;
- the job id, status, opcode and log message are recorded; a job of the
  pending task whose id the API has not stored yet is adopted (below);
- a finalized job: success sets the state from ``OPER_STATE_FROM_OPCODE``
  and, for ``OP_INSTANCE_SET_PARAMS`` with new vcpus/memory, switches the
  server to the flavor of that shape (same disk and template; one is made
  hidden, ``allow_create`` false, when none exists); NICs and disks are
  replaced by what Ganeti reports (``instance_nics``/``instance_disks``,
  with stable ids); a failed or cancelled create puts the server in ERROR;
  a successful remove, or one that failed because the instance no longer
  exists (``unknown_entity``), deletes the server (state DESTROYED) and
  gives the backend's counters back;
- secrets: a finalized create (any status) or a remove that deletes the
  server drops the server's build parameters (served without a token at
  the URL in the Ganeti job); a delete also drops the cached password;
- quota: when the job is the pending task's, its serial is decided in the
  same transaction (accepted on success, rejected on error or cancel) and
  resolved at the holder after the commit, before the message counts as
  handled (so the next event's release sees settled usage; an unreachable
  holder leaves it to commission reconciliation); a successful job the API
  did not start (an administrator's ``gnt-instance stop``...), or the job of
  a task whose commission reconciliation rejected first (its node died
  between submitting the job and storing its id), is charged with
  a *forced* commission computed with ``model.charges`` from the state
  change, issued before the transaction and decided in it (rejected if the
  transaction finds that the change no longer applies).  A commission the
  holder refuses even when forced (a release below zero: the usage is
  already off, or another pending release of the same server holds it)
  is tried once more after our own queued decisions, then logged and the
  change applied without it, so the server's state still follows Ganeti;
  quota reconciliation repairs the usage.  With a quota holder that
  cannot be reached, a change that needs a forced commission raises (the
  message is dead-lettered; reconciliation replays the change later).
  The commission runner (``snfd.quota.charged``) does the issuing,
  retrying and settling;
- the task is cleared when this was its job and the event ends it
  (``task_done``: REBUILD's reinstall job has several opcodes and ends
  with its last one or its first failure);
- each opcode of a server's jobs is noted for the instance actions that
  submitted them (``store.job_event_txn``: start, end, result).

Task adoption: the effect path sets ``task`` (and ``serial``) before it
submits a job and stores ``task_job_id`` after; an event of that job may
come in between.  An event is taken as the task's job when the task is
set, ``task_job_id`` is still NULL, its opcode is the task's
(``TASK_OPCODES``) and it is not a job this server already saw finish.
RESCUE and UNRESCUE are expected as ``OP_INSTANCE_SET_PARAMS`` (the rescue
boot is a change of hypervisor parameters); their success sets ``rescue``.

Not done here (documented gaps): the resubmission of a create that failed
with ``temp_insufficient_resources`` under opportunistic locking (the
server goes to ERROR like any failed create); ``OP_INSTANCE_SNAPSHOT``
(snapshots are a later issue: ignored); Ganeti instance tags.

``progress`` applies the build-progress messages: ``image-copy-progress``
raises ``buildpercentage`` (never lowers it) while the server builds, and
``image-info``/``-warning``/``-error``/``-helper`` become diagnostics.

``simulate`` feeds the reconciler's findings through the same path as an
event of job 0 with the log message ``SIMULATED_LOGMSG``, stamped in
Ganeti's clock: the time the reconciler knows Ganeti had reached (the
latest job timestamp it saw), made newer than ``backendtime`` if need be
(it states what Ganeti showed then).  Never this node's clock: a node
whose clock runs ahead would otherwise stamp a repair in Ganeti's future,
and every real event until the master's clock caught up would be
ignored as older.  A simulated final event whose opcode is the pending task's
counts as the task's job (the job itself is gone or its event was lost).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.allocator import release_backend_txn
from snfd.cyclades.model import (
    FINAL_JOB_STATUSES,
    JOB_STATUSES,
    OPER_STATE_FROM_OPCODE,
    Flavor,
    Server,
    charges,
    provisions,
    server_id_of,
)
from snfd.cyclades.networks import store as net_store
from snfd.cyclades.networks.service import Networks
from snfd.cyclades.volumes.service import Volumes
from snfd.quota import Provision, QuotaError
from snfd.quota.charged import Attempt, Recharge, run_charged, settle_after_commit
from snfd.quota.serials import Charger, decide_txn

log = Logger(namespace="snfd.cyclades.updates")

UTC = datetime.UTC
SIMULATED_LOGMSG = "Reconciliation: simulated Ganeti event"

OP_CREATE = "OP_INSTANCE_CREATE"
OP_REMOVE = "OP_INSTANCE_REMOVE"
OP_SET_PARAMS = "OP_INSTANCE_SET_PARAMS"
OP_REINSTALL = "OP_INSTANCE_REINSTALL"
OP_SNAPSHOT = "OP_INSTANCE_SNAPSHOT"

#: The opcodes a task's job runs (task adoption, simulated task events).
TASK_OPCODES: dict[str, frozenset[str]] = {
    "BUILD": frozenset({OP_CREATE}),
    "START": frozenset({"OP_INSTANCE_STARTUP"}),
    "STOP": frozenset({"OP_INSTANCE_SHUTDOWN"}),
    "REBOOT": frozenset({"OP_INSTANCE_REBOOT"}),
    "RESIZE": frozenset({OP_SET_PARAMS}),
    "FIREWALL": frozenset({OP_SET_PARAMS}),
    "RESCUE": frozenset({OP_SET_PARAMS}),
    "UNRESCUE": frozenset({OP_SET_PARAMS}),
    "DESTROY": frozenset({OP_REMOVE}),
    "REBUILD": frozenset({"OP_INSTANCE_SHUTDOWN", OP_REINSTALL, "OP_INSTANCE_STARTUP"}),
    "MIGRATE": frozenset({"OP_INSTANCE_MIGRATE", "OP_INSTANCE_FAILOVER"}),
}


def task_done(server: Server, opcode: str, success: bool) -> bool:
    """Whether a final event of the task's job ends the task: a failure
    does; a success only on the job's last opcode.  Every task's job has
    one opcode but REBUILD's (Ganeti's reinstall: shutdown, reinstall,
    and startup when the server ran, ``action`` REBUILD_START)."""
    if server.task != "REBUILD" or not success:
        return True
    last = "OP_INSTANCE_STARTUP" if server.action == "REBUILD_START" else OP_REINSTALL
    return opcode == last

PROGRESS_TYPES = frozenset({"image-copy-progress", "image-info", "image-warning",
                            "image-error", "image-helper"})
_DIAGNOSTIC_LEVELS = {"image-info": "INFO", "image-warning": "WARNING",
                      "image-error": "ERROR"}
_HELPER_LEVELS = {"error": "ERROR", "warning": "WARNING"}
_RUNNING = frozenset({"STARTED", "BUILD", "ERROR"})
_ONE_MICROSECOND = datetime.timedelta(microseconds=1)
#: A simulated event's time when Ganeti's is unknown: just after the last one.
_LONG_AGO = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MAX_ATTEMPTS = 4


class MalformedMessage(ValueError):
    """A message without a required key or with a value of the wrong
    type; the consumer rejects it (dead letter)."""


# -- messages -----------------------------------------------------------------

@attrs.frozen
class OpEvent:
    """One ``ganeti-op-status`` message, checked."""

    server_id: int
    instance: str
    opcode: str
    status: str
    job_id: int
    event_time: datetime.datetime
    logmsg: str | None = None
    result: Any = None
    cluster: str | None = None
    job_fields: Mapping[str, Any] = attrs.Factory(dict)
    nics: list[dict[str, Any]] | None = None
    disks: list[dict[str, Any]] | None = None
    hvparams: dict[str, Any] | None = None
    simulated: bool = False
    # When the opcode began, when an earlier event of it was skipped.
    started: datetime.datetime | None = None


def supersedes(later: OpEvent, event: OpEvent) -> bool:
    """Whether ``later``, arriving after ``event``, makes applying
    ``event`` useless: ``event`` is not final and ``later`` is of the same
    job and opcode and no older."""
    return (event.status not in FINAL_JOB_STATUSES and later.job_id == event.job_id
            and later.opcode == event.opcode and later.event_time >= event.event_time)


def event_time(value: Any) -> datetime.datetime:
    """``[seconds, microseconds]`` as an aware UTC datetime."""
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(_number(v) for v in value)):
        raise MalformedMessage(f"event_time must be [seconds, microseconds], not {value!r}")
    seconds, micros = value
    if not 0 <= micros < 1_000_000 or seconds < 0:
        raise MalformedMessage(f"event_time out of range: {value!r}")
    return (datetime.datetime.fromtimestamp(int(seconds), UTC)
            + datetime.timedelta(microseconds=int(micros)))


def parse_op_status(message: Any) -> OpEvent | None:
    """Check a ``ganeti-op-status`` message; None when its instance is not
    one of ours.  Raises ``MalformedMessage``."""
    if not isinstance(message, dict):
        raise MalformedMessage("a message must be a JSON object")
    instance = _get(message, "instance", str)
    opcode = _get(message, "operation", str)
    status = _get(message, "status", str)
    if status not in JOB_STATUSES:
        raise MalformedMessage(f"unknown job status {status!r}")
    job_id = _get(message, "jobId", int)
    if job_id < 0:
        raise MalformedMessage(f"bad jobId {job_id!r}")
    etime = event_time(_get(message, "event_time", list))
    logmsg = _get(message, "logmsg", str, optional=True)
    cluster = _get(message, "cluster", str, optional=True)
    job_fields = _get(message, "job_fields", dict, optional=True) or {}
    nics = _dicts(message, "instance_nics")
    disks = _dicts(message, "instance_disks")
    hvparams = _get(message, "instance_hvparams", dict, optional=True)
    server_id = server_id_of(instance)
    if server_id is None:
        return None
    return OpEvent(server_id=server_id, instance=instance, opcode=opcode, status=status,
                   job_id=job_id, event_time=etime, logmsg=logmsg,
                   result=message.get("result"), cluster=cluster or None,
                   job_fields=job_fields, nics=nics, disks=disks, hvparams=hvparams)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _get(message: dict[str, Any], key: str, kind: type, optional: bool = False) -> Any:
    if key not in message or message[key] is None:
        if optional:
            return None
        raise MalformedMessage(f"the message has no {key!r}")
    value = message[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise MalformedMessage(f"{key!r} must be an integer, not {value!r}")
    if kind is list and not isinstance(value, list | tuple):
        raise MalformedMessage(f"{key!r} must be a list")
    if kind not in (int, list) and not isinstance(value, kind):
        raise MalformedMessage(f"{key!r} must be a {kind.__name__}, not {value!r}")
    return value


def _dicts(message: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    value = _get(message, key, list, optional=True)
    if value is None:
        return None
    if not all(isinstance(item, dict) for item in value):
        raise MalformedMessage(f"{key!r} must be a list of objects")
    return [dict(item) for item in value]


def error_code(result: Any) -> str | None:
    """The Ganeti error code of a failed op's result
    (``[error class, [message, ecode]]``), or None."""
    if (isinstance(result, list | tuple) and len(result) == 2
            and isinstance(result[1], list | tuple) and len(result[1]) >= 2
            and isinstance(result[1][1], str)):
        return result[1][1]
    return None


# -- the state machine (inside one transaction) -------------------------------

@attrs.frozen
class _Result:
    """What ``_apply_txn`` did.  ``need``: the forced commission the change
    requires; when it differs from what the caller covered, nothing was
    written (``applied`` false, ``outcome`` "needs commission")."""

    outcome: str
    applied: bool = False
    need: dict[str, int] = attrs.Factory(dict)
    server: Server | None = None
    settle: tuple[tuple[int, bool], ...] = ()
    #: volumes that went with a removed server (their maps go after the commit)
    doomed: tuple[str, ...] = ()
    #: a build (create, reinstall) ended or the server went: its image
    #: export goes after the commit
    built: str = ""


def _running(operstate: str) -> bool:
    return operstate in _RUNNING


def _forced_amounts(server: Server, new_state: str, new_flavor: Flavor | None,
                    removed: bool) -> dict[str, int]:
    """What a change Ganeti made on its own costs (``model.charges``)."""
    if removed:
        return charges(server, "DESTROY")
    out: dict[str, int] = {}
    if new_flavor is not None:
        out = dict(charges(server, "RESIZE", new_flavor))
    flavor = new_flavor or server.flavor
    before, after = _running(server.operstate), _running(new_state)
    if before and not after:
        change = charges(attrs.evolve(server, flavor=flavor), "STOP")
    elif after and not before:
        change = charges(attrs.evolve(server, flavor=flavor, operstate="STOPPED"), "START")
    else:
        change = {}
    for resource, quantity in change.items():
        out[resource] = out.get(resource, 0) + quantity
    return {k: v for k, v in out.items() if v}


def _task_amounts(server: Server, new_flavor: Flavor | None) -> dict[str, int]:
    """What the pending task's job, now done, moves (``model.charges``)."""
    if server.task == "RESIZE":
        return charges(server, "RESIZE", new_flavor) if new_flavor is not None else {}
    return charges(server, server.task)


def _new_shape(server: Server, event: OpEvent) -> tuple[int, int] | None:
    """The (cpu, ram MiB) a successful SET_PARAMS gave, when it differs."""
    beparams = event.job_fields.get("beparams") if event.job_fields else None
    if event.opcode != OP_SET_PARAMS or not isinstance(beparams, dict):
        return None
    cpu: Any = beparams.get("vcpus", server.flavor.cpu)
    ram: Any = beparams.get("maxmem", beparams.get("memory", server.flavor.ram))
    if not _number(cpu) or not _number(ram) or cpu <= 0 or ram <= 0:
        return None
    shape = (int(cpu), int(ram))
    return None if shape == (server.flavor.cpu, server.flavor.ram) else shape


def _find_flavor_txn(txn: Any, like: Flavor, cpu: int, ram: int) -> Flavor | None:
    for flavor in store.flavors_txn(txn, include_deleted=True):
        if (flavor.cpu, flavor.ram, flavor.disk, flavor.disk_template) == (
                cpu, ram, like.disk, like.disk_template):
            return flavor
    return None


def _sync(current: tuple[dict[str, Any], ...], reported: list[dict[str, Any]],
          keys: tuple[str, ...], prefix: str) -> list[dict[str, Any]]:
    """Ganeti's list, each entry keeping the id (and extra keys) of the
    stored entry with the same uuid, else the same name.  New entries get
    the id in a ``<prefix><id>`` name, else the next free one."""
    by_uuid = {c.get("uuid"): c for c in current if c.get("uuid")}
    by_name = {c.get("name"): c for c in current if c.get("name")}
    used = {c["id"] for c in current if isinstance(c.get("id"), int)}
    out: list[dict[str, Any]] = []
    taken: set[int] = set()
    for item in reported:
        old = by_uuid.get(item.get("uuid")) or by_name.get(item.get("name")) or {}
        entry = {k: v for k, v in old.items() if k != "state"}
        entry.update({k: item.get(k) for k in keys if k in item or k not in entry})
        ident = old.get("id")
        if not isinstance(ident, int) or ident in taken:
            name = item.get("name")
            rest = name[len(prefix):] if isinstance(name, str) and name.startswith(prefix) \
                else ""
            ident = int(rest) if rest.isdigit() and int(rest) not in taken | used else None
            if ident is None:
                ident = max(used | taken, default=0) + 1
        taken.add(ident)
        entry["id"] = ident
        out.append(entry)
    return out


_NIC_KEYS = ("name", "network", "ip", "mac", "mode", "link", "uuid", "firewall")
_DISK_KEYS = ("name", "size", "uuid")


def _apply_txn(txn: Any, event: OpEvent, component: str,
               covered: dict[str, int] | None, serial: int | None) -> _Result:
    # Its ports and volumes are read once the event turns out to be final.
    server = store.server_row_txn(txn, event.server_id, for_update=True)
    if server is None:
        return _Result("ignored: no such server")
    if server.deleted:
        return _Result("ignored: server deleted", server=server)
    if event.cluster and server.backend_id is not None:
        backend = store.backend_txn(txn, server.backend_id)
        if backend is not None and backend.clustername != event.cluster:
            return _Result(f"ignored: event from cluster {event.cluster}, server on"
                           f" {backend.clustername}", server=server)
    etime = event.event_time
    if event.simulated and server.backendtime is not None and etime <= server.backendtime:
        etime = server.backendtime + _ONE_MICROSECOND
    if server.backendtime is not None and etime <= server.backendtime:
        return _Result("ignored: not newer than the last event applied", server=server)
    if event.opcode == OP_SNAPSHOT:
        return _Result("ignored: snapshots are not handled yet", server=server)

    final = event.status in FINAL_JOB_STATUSES
    store.job_event_txn(txn, server.id, event.job_id, event.opcode, etime,
                        ("Success" if event.status == "success" else "Error") if final
                        else None, started=event.started)
    fields: dict[str, Any] = {
        "backendjobid": event.job_id, "backendjobstatus": event.status,
        "backendopcode": event.opcode, "backendlogmsg": event.logmsg or ""}
    task_ops = TASK_OPCODES.get(server.task, frozenset())
    is_task = bool(server.task) and server.task_job_id is not None \
        and server.task_job_id == event.job_id
    if server.task and not is_task and event.opcode in task_ops:
        if event.simulated:
            is_task = True
        elif server.task_job_id is None:
            seen_final = (server.backendjobid == event.job_id
                          and server.backendjobstatus in FINAL_JOB_STATUSES)
            if not seen_final:
                is_task = True
                fields["task_job_id"] = event.job_id
    if not final:
        if covered:
            return _Result("ignored: job not finished", server=server)
        store.set_server_txn(txn, server.id, **fields)
        return _Result(f"recorded {event.status}", applied=True, server=server)
    server = store.with_attachments_txn(txn, [server])[0]

    success = event.status == "success"
    new_state = server.operstate
    new_flavor: Flavor | None = None
    shape: tuple[int, int] | None = None
    removed = event.opcode == OP_REMOVE and (
        success or (event.status == "error" and error_code(event.result) == "unknown_entity"))
    if success:
        new_state = OPER_STATE_FROM_OPCODE.get(event.opcode, server.operstate)
        fields["backendtime"] = etime
        shape = _new_shape(server, event)
        if shape is not None:
            new_flavor = _find_flavor_txn(txn, server.flavor, *shape) or Flavor(
                id=-1, cpu=shape[0], ram=shape[1], disk=server.flavor.disk,
                disk_template=server.flavor.disk_template)
    if event.opcode == OP_CREATE and event.status in ("error", "canceled"):
        new_state = "ERROR"
        fields["backendtime"] = etime
    if removed:
        new_state = "DESTROYED"
        fields["backendtime"] = etime

    # The task's commission is decided here, before the quota is weighed:
    # reconciliation may have rejected it first (the node that began the
    # task died before it stored the job's id, so its boot's serials were
    # settled), yet the job did the work.  That work is then charged like
    # a change Ganeti made on its own, with a forced commission.
    unpaid: dict[str, int] = {}
    ends_task = is_task and task_done(server, event.opcode, success)
    if ends_task and server.serial is not None and (success or removed):
        if not decide_txn(txn, component, server.serial, True).accept:
            unpaid = _task_amounts(server, new_flavor)

    need: dict[str, int] = {}
    # While a delete is pending, its commission (made from the state the
    # server had then) accounts for the whole server: another job ending
    # meanwhile (a stop, a rebuild's shutdown) moves no quota, or the
    # server's share would be released twice; its removal still does.
    if not is_task and (success or removed) and (server.task != "DESTROY" or removed):
        need = _forced_amounts(server, new_state, new_flavor, removed)
    elif unpaid:
        need = unpaid
    if need != (covered or {}):
        return _Result("needs commission", need=need, server=server)

    # -- from here on, writes ------------------------------------------------
    # Other serials this transaction decides, resolved after the commit
    # (the caller's own ``serial`` is the commission runner's to settle).
    settle: list[tuple[int, bool]] = []
    if serial is not None:
        decide_txn(txn, component, serial, True)
    if ends_task:
        if server.serial is not None:
            record = decide_txn(txn, component, server.serial, success or removed)
            settle.append((server.serial, record.accept))
        fields.update(task="", task_job_id=None, serial=None)
        if success and server.task in ("RESCUE", "UNRESCUE"):
            fields["rescue"] = server.task == "RESCUE"
    fields["operstate"] = new_state
    if new_flavor is not None:
        if new_flavor.id < 0:
            new_flavor, _ = store.create_flavor_txn(
                txn, new_flavor.cpu, new_flavor.ram, new_flavor.disk,
                new_flavor.disk_template, allow_create=False, public=False)
        fields["flavor_id"] = new_flavor.id
    if event.nics is not None:
        fields["nics"] = _sync(server.nics, event.nics, _NIC_KEYS, "snf-nic-")
    if event.disks is not None:
        fields["disks"] = _sync(server.disks, event.disks, _DISK_KEYS, "snf-vol-")
    if event.hvparams is not None and "boot_order" in event.hvparams:
        fields["rescue"] = event.hvparams.get("boot_order") == "cdrom"
    if new_state == "ERROR" and event.opcode == OP_CREATE:
        nics = fields.get("nics", server.nics)
        disks = fields.get("disks", server.disks)
        fields["nics"] = [{**n, "state": "ERROR"} for n in nics]
        fields["disks"] = [{**d, "state": "ERROR"} for d in disks]
    if event.opcode in (OP_CREATE, OP_REINSTALL) or removed:
        # The build ended (or the server is gone): snf-image had its one
        # chance to fetch the parameters from the URL in the job.
        store.drop_params_txn(txn, server.id)
    if event.nics is not None or removed or (new_state == "ERROR" and event.opcode == OP_CREATE):
        Networks.sync_ports_txn(txn, attrs.evolve(server, operstate=new_state),
                                fields.get("nics"), removed=removed,
                                failed=new_state == "ERROR" and event.opcode == OP_CREATE,
                                failed_change=event.opcode == OP_SET_PARAMS and not success)
    if removed:
        fields.update(deleted=True, nics=[], disks=[], task="", task_job_id=None,
                      serial=None)
        store.drop_password_txn(txn, server.id)
        if server.backend_id is not None:
            release_backend_txn(txn, server.backend_id, server.flavor)
        if server.serial is not None and not is_task:
            # A pending action's commission on a server that is gone.
            record = decide_txn(txn, component, server.serial, False)
            settle.append((server.serial, record.accept))
    doomed: list[str] = []
    failed_create = new_state == "ERROR" and event.opcode == OP_CREATE
    if event.disks is not None or removed or failed_create:
        doomed = Volumes.sync_disks_txn(txn, server, fields.get("disks"), removed=removed,
                                        failed_change=event.opcode == OP_SET_PARAMS
                                        and not success, failed_create=failed_create)
    store.set_server_txn(txn, server.id, **fields)
    outcome = f"applied {event.opcode} {event.status}"
    if removed:
        outcome += ": server deleted"
    elif new_state != server.operstate:
        outcome += f": {server.operstate} -> {new_state}"
    built = server.instance_name if (
        removed or (final and event.opcode in (OP_CREATE, OP_REINSTALL))) else ""
    return _Result(outcome, applied=True, need=need, server=server, settle=tuple(settle),
                   doomed=tuple(doomed), built=built)


def _progress_txn(txn: Any, server_id: int, kind: str, etime: datetime.datetime,
                  message: dict[str, Any]) -> str:
    server = store.server_row_txn(txn, server_id, for_update=True)
    if server is None or server.deleted:
        return "ignored: no such server"
    if server.backendtime is not None and etime <= server.backendtime:
        return "ignored: not newer than the last event applied"
    fields: dict[str, Any] = {"backendtime": etime}
    if kind == "image-copy-progress":
        percent = max(0, min(100, int(message["progress"])))
        if server.operstate == "BUILD" and percent > server.buildpercentage:
            fields["buildpercentage"] = percent
    else:
        level, text, details = _diagnostic(kind, message)
        store.add_diagnostic_txn(txn, server.id, level, kind, text, details, etime)
    store.set_server_txn(txn, server.id, **fields)
    return "applied"


def _diagnostic(kind: str, message: dict[str, Any]) -> tuple[str, str, str | None]:
    """(level, message, details) of an image-* message."""
    subtype = message.get("subtype")
    if kind == "image-helper":
        level = _HELPER_LEVELS.get(subtype if isinstance(subtype, str) else "", "INFO")
    else:
        level = _DIAGNOSTIC_LEVELS.get(kind, "INFO")
    messages = message.get("messages")
    if isinstance(messages, list):
        text = "\n".join(str(m) for m in messages)
    elif messages is not None:
        text = str(messages)
    else:
        text = " ".join(str(message[k]) for k in ("subtype", "task") if message.get(k))
    stderr = message.get("stderr")
    return level, text or kind, None if stderr is None else str(stderr)


# -- the service object --------------------------------------------------------

class UpdatePath:
    """Applies Ganeti's events to servers (see the module docstring).

    @param db: the node's ``IDatabase``.
    @param charger: the compute ``Charger``.
    @param clock: ``IReactorTime`` (simulated events are stamped with it).
    """

    def __init__(self, db: Any, charger: Charger, clock: Any,
                 networks: Networks | None = None, volumes: Volumes | None = None):
        self._db = db
        self._charger = charger
        self._clock = clock
        self._networks = networks
        self._volumes = volumes
        # Server id -> its events waiting (the first one being applied).
        self._queues: dict[int, list[tuple[OpEvent, defer.Deferred[str]]]] = {}

    async def network_status(self, message: dict[str, Any]) -> None:
        """Apply one ``ganeti-network-status`` message (to the network's
        state on that backend)."""
        if not isinstance(message.get("network"), str):
            raise MalformedMessage("'network' must be a string")
        if self._networks is None:
            return
        outcome = await self._networks.ganeti.network_event(message)
        log.debug("network {network} on {cluster}: {outcome}", network=message["network"],
                  cluster=message.get("cluster"), outcome=outcome)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock.seconds(), UTC)

    async def op_status(self, message: dict[str, Any]) -> None:
        """Apply one ``ganeti-op-status`` message (idempotent: the same
        message twice changes state and quota once).  Raises
        ``MalformedMessage`` for a bad message."""
        event = parse_op_status(message)
        if event is None:
            log.debug("ignoring an event of instance {instance}",
                      instance=message.get("instance"))
            return
        await self._in_order(event)

    async def _in_order(self, event: OpEvent) -> str:
        """Apply ``event`` after the server's events that came before it
        (see the module docstring); what happened."""
        waiter: defer.Deferred[str] = defer.Deferred()
        queue = self._queues.setdefault(event.server_id, [])
        queue.append((event, waiter))
        if len(queue) == 1:
            defer.ensureDeferred(self._drain(event.server_id, queue))
        outcome: str = await waiter
        return outcome

    async def _drain(self, server_id: int, queue: list[tuple[OpEvent, Any]]) -> None:
        while queue:
            event, waiter = queue[0]
            later = next((i for i, (e, _) in enumerate(queue) if i and supersedes(e, event)),
                         None)
            outcome: Any
            try:
                if later is not None:
                    successor, its_waiter = queue[later]
                    queue[later] = (attrs.evolve(successor, started=min(
                        event.started or event.event_time,
                        successor.started or successor.event_time)), its_waiter)
                    outcome = "skipped: a later event of its job follows"
                else:
                    outcome = await self.apply(event)
            except Exception:
                outcome = Failure()
            queue.pop(0)
            if not queue:
                # Before the waiter runs: an event arriving then starts anew.
                del self._queues[server_id]
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    async def simulate(self, server_id: int, opcode: str, status: str, *, jobid: int = 0,
                       result: Any = None, job_fields: Mapping[str, Any] | None = None,
                       nics: list[dict[str, Any]] | None = None,
                       disks: list[dict[str, Any]] | None = None,
                       hvparams: dict[str, Any] | None = None,
                       logmsg: str = SIMULATED_LOGMSG,
                       event_time: datetime.datetime | None = None) -> str:
        """Apply what the reconciler found as if Ganeti had sent it (job
        ``jobid``) at ``event_time`` in Ganeti's clock, or just after the
        last event applied when that is later or unknown; returns what
        happened, for its report."""
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}")
        event = OpEvent(server_id=server_id, instance=f"snf-{server_id}", opcode=opcode,
                        status=status, job_id=jobid, event_time=event_time or _LONG_AGO,
                        logmsg=logmsg,
                        result=result, job_fields=dict(job_fields or {}), nics=nics,
                        disks=disks, hvparams=hvparams, simulated=True)
        return await self.apply(event)

    async def apply(self, event: OpEvent) -> str:
        """Apply one checked event; returns what happened.  Ports it lets
        go (the server's, or a removed NIC's) leave their security groups:
        the servers whose rules named their addresses get new rules."""
        before = await self._ports_of(event)
        result = await self._apply(event)
        outcome = result.outcome
        if result.doomed and self._volumes is not None:
            await self._volumes.finish_removed(result.doomed)
        if result.built and self._volumes is not None:
            await self._volumes.drop_image_export(result.built)
        if before:
            after = {p.id: p for p in await self._ports_of(event)}
            gone = [p for p in before if p.id not in after or after[p.id].device_id is None]
            if gone and self._networks is not None:
                await self._networks.deliver_around(*gone)
        return outcome

    async def _ports_of(self, event: OpEvent) -> list[Any]:
        if self._networks is None or (event.nics is None and event.opcode != OP_REMOVE):
            return []
        found: list[Any] = await self._db.run(
            "cyclades.event_ports", lambda txn: net_store.ports_txn(
                txn, device_ids=[event.server_id]))
        return found

    async def _apply(self, event: OpEvent) -> _Result:
        server: Server | None = None

        async def change(attempt: Attempt) -> _Result:
            nonlocal server
            result: _Result = await self._db.run(
                "cyclades.op_status", _apply_txn, event, attempt.component, attempt.charge,
                attempt.serial)
            if not result.applied and result.outcome == "needs commission":
                server = result.server
                raise Recharge(result.need)
            # Settled before the event counts as handled, so the next
            # event's commission sees settled usage (a release is refused
            # while an earlier import is only pending).
            for serial, accept in result.settle:
                await settle_after_commit(self._charger, serial, accept)
            return result

        def forced(amounts: dict[str, int]) -> Iterable[Provision]:
            assert server is not None
            return provisions(server, amounts)

        def refused(error: QuotaError) -> None:
            log.error("server {id}: the forced commission for {opcode} was refused"
                      " ({error}); applying the change without it",
                      id=event.server_id, opcode=event.opcode, error=error)

        outcome: _Result = await run_charged(
            self._charger, change, None, provisions=forced, force=True, record=False,
            name=f"cyclades: {event.opcode} {event.status} of server {event.server_id}"
                 " (not from the API)",
            resource_key=f"server:{event.server_id}", attempts=_MAX_ATTEMPTS,
            accept=lambda result: result.applied, refused=refused,
            exhausted=errors.Conflict(
                f"server {event.server_id} kept changing while its event"
                f" {event.opcode} {event.status} was applied"))
        if outcome.applied:
            log.debug("server {id}: {outcome}", id=event.server_id, outcome=outcome.outcome)
        return outcome

    async def clear_task(self, server_id: int, task_job_id: int | None) -> bool:
        """Drop a pending task whose job Ganeti does not know: its serial is
        rejected (after the commit, at the holder).  Only when the task
        still waits for ``task_job_id``; True if it was cleared."""
        result: tuple[bool, int | None, bool] = await self._db.run(
            "cyclades.clear_task", _clear_task_txn, server_id, task_job_id,
            self._charger.component)
        cleared, serial, accept = result
        if serial is not None:
            await settle_after_commit(self._charger, serial, accept)
        return cleared

    async def progress(self, message: dict[str, Any]) -> None:
        """Apply one build-progress message (``PROGRESS_TYPES``).  Raises
        ``MalformedMessage`` for a bad message."""
        if not isinstance(message, dict):
            raise MalformedMessage("a message must be a JSON object")
        kind = _get(message, "type", str)
        if kind not in PROGRESS_TYPES:
            raise MalformedMessage(f"not a progress message: {kind!r}")
        instance = _get(message, "instance", str)
        etime = event_time(_get(message, "event_time", list))
        if kind == "image-copy-progress" and not _number(_get(message, "progress", object)):
            raise MalformedMessage("'progress' must be a number")
        server_id = server_id_of(instance)
        if server_id is None:
            return
        outcome = await self._db.run("cyclades.progress", _progress_txn, server_id, kind,
                                     etime, message)
        log.debug("server {id}: {kind} {outcome}", id=server_id, kind=kind, outcome=outcome)


def _clear_task_txn(txn: Any, server_id: int, task_job_id: int | None,
                    component: str) -> tuple[bool, int | None, bool]:
    server = store.server_row_txn(txn, server_id, for_update=True)
    if server is None or not server.task or server.task_job_id != task_job_id:
        return False, None, False
    serial, accept = server.serial, False
    if serial is not None:
        accept = decide_txn(txn, component, serial, False).accept
    store.set_server_txn(txn, server.id, task="", task_job_id=None, serial=None)
    return True, serial, accept
