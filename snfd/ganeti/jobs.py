"""Ganeti jobs as the messages of Cyclades' update path.

Ganeti reports everything it does as jobs.  Cyclades learns about them from
messages on the topic exchange ``ganeti`` (reference/synnefo-apis.md 3.6):

- ``ganeti.<prefix>.event.op``: ``ganeti-op-status`` of an instance opcode;
- ``ganeti.<prefix>.event.network``: ``ganeti-network-status``;
- ``ganeti.event.cluster``: ``ganeti-cluster-status`` (OP_CLUSTER_SET_PARAMS);
- ``eventd.heartbeat``: ``eventd-heartbeat`` (a dry-run cluster tag job).

``<prefix>`` is the instance (network) name up to its first ``-``, so
``snf-42`` publishes under ``ganeti.snf.event.op``.

``job_messages`` turns one job into those messages.  It reads both shapes a
job comes in: the job *file* of Ganeti's queue directory (``ops[].input``,
per-op status, result, log and timestamps) and the RAPI ``/2/jobs`` shape
(``ops`` = inputs, ``opstatus``, ``opresult``, ``oplog``, job-level
``received_ts``/``start_ts``/``end_ts``).  ``attach_instance_info`` adds the
instance's NICs, disks and hvparams (asked over RAPI) to the messages that
carry them.

Nothing here does I/O except ``attach_instance_info``; the sources that feed
these messages to the bus are ``snfd.ganeti.watcher`` (the job queue on a
Ganeti master) and ``snfd.ganeti.poller`` (RAPI), through
``snfd.ganeti.publisher``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
from twisted.logger import Logger

from snfd.ganeti.rapi import FINAL_STATUSES, RapiError, RapiUnavailable

log = Logger()

#: Every status a Ganeti opcode (and job) can have.
STATUSES = frozenset(
    {"queued", "waiting", "canceling", "running", "success", "error", "canceled"})

#: The job files of a queue directory; temporary files (``job-22-1-4.tmp``,
#: ``job-22fhy.new``) share the ``job-`` prefix and must not match.
JOB_FILE = re.compile(r"^job-([0-9]+)\Z")

HEARTBEAT_TAG = "snf:eventd:heartbeat"

# Which timestamp dates a status: index into (received, start, exec, end).
_STATUS_STAGE = {
    "queued": 0, "waiting": 1, "canceling": 1, "running": 2,
    "success": 3, "error": 3, "canceled": 3,
}

_JOB_FIELDS = ("nics", "disks", "hvparams", "beparams")
_NETWORK_FIELDS = ("gateway", "add_reserved_ips", "remove_reserved_ips", "group_name")
_ATTACH_ON_SUCCESS = frozenset({"OP_INSTANCE_CREATE", "OP_INSTANCE_STARTUP"})
_ATTACH_ON_FINAL = frozenset({"OP_INSTANCE_SET_PARAMS", "OP_INSTANCE_GROW_DISK"})


class BadJob(ValueError):
    """A document that is not a Ganeti job (file or RAPI shape)."""


@attrs.frozen
class JobEvent:
    """One message to publish, with the key that identifies its duplicates.

    ``key`` is (cluster, job id, op index, status, log length): two writes
    of a job file that differ in none of these say the same thing.
    """

    routing_key: str
    message: dict[str, Any]
    key: tuple[str, int, int, str, int]


@attrs.frozen
class _Op:
    index: int
    input: dict[str, Any]
    status: str
    result: Any
    log: list[Any]
    start: list[int] | None
    exec: list[int] | None
    end: list[int] | None


@attrs.frozen
class _Job:
    id: int
    received: list[int] | None
    ops: list[_Op]


# -- parsing -----------------------------------------------------------------

def parse_job_file(data: bytes) -> dict[str, Any]:
    """The JSON object of a job file; ``BadJob`` if it is not one."""
    try:
        job = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadJob(f"not JSON: {e}") from None
    if not isinstance(job, dict):
        raise BadJob(f"a JSON {type(job).__name__}, not an object")
    return job


def _timestamp(value: Any) -> list[int] | None:
    if (isinstance(value, list | tuple) and len(value) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool)
                    for v in value)):
        return [int(value[0]), int(value[1])]
    return None


def parse_job_id(value: Any) -> int:
    """A job id (a number, or a numeric string); ``BadJob`` if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise BadJob(f"job id {value!r} is not a number")


def _normalise(job: Any) -> _Job:
    """One internal form for the job-file and the RAPI shapes.

    Ops whose input or status is unusable are left out; a document without a
    job id or an ops list raises ``BadJob``.
    """
    if not isinstance(job, dict):
        raise BadJob(f"a {type(job).__name__}, not a job object")
    job_id = parse_job_id(job.get("id"))
    raw_ops = job.get("ops")
    if not isinstance(raw_ops, list):
        raise BadJob(f"job {job_id}: ops is not a list")
    ops: list[_Op | None] = []
    if "opstatus" in job or "received_ts" in job:
        statuses = _list(job.get("opstatus"))
        results = _list(job.get("opresult"))
        logs = _list(job.get("oplog"))
        started = _timestamp(job.get("start_ts"))
        ended = _timestamp(job.get("end_ts"))
        for i, op_input in enumerate(raw_ops):
            status = _item(statuses, i)
            # RAPI has no per-op timestamps: the job's stand in for them,
            # a microsecond apart per op so that the update path (which
            # ignores events not newer than the last one applied) takes
            # every op of a multi-op job (a reinstall's three) in order.
            ops.append(_op(
                i, op_input, status, _item(results, i), _item(logs, i),
                started, None,
                _later(ended, i) if status in FINAL_STATUSES and ended else None))
        received = _timestamp(job.get("received_ts"))
    else:
        for i, op in enumerate(raw_ops):
            if isinstance(op, dict):
                ops.append(_op(
                    i, op.get("input"), op.get("status"), op.get("result"), op.get("log"),
                    _timestamp(op.get("start_timestamp")),
                    _timestamp(op.get("exec_timestamp")),
                    _timestamp(op.get("end_timestamp"))))
        received = _timestamp(job.get("received_timestamp"))
    return _Job(id=job_id, received=received, ops=[op for op in ops if op is not None])


def _later(stamp: list[int], micros: int) -> list[int]:
    """A Ganeti ``[seconds, microseconds]`` timestamp ``micros`` later."""
    total = stamp[0] * 1_000_000 + stamp[1] + micros
    return [total // 1_000_000, total % 1_000_000]


def _op(index: int, op_input: Any, status: Any, result: Any, op_log: Any,
        start: list[int] | None, exec_: list[int] | None,
        end: list[int] | None) -> _Op | None:
    """An ``_Op``, or None when its input or status is unusable."""
    if not (isinstance(op_input, dict) and isinstance(op_input.get("OP_ID"), str)
            and status in STATUSES):
        return None
    return _Op(index=index, input=op_input, status=status, result=result,
               log=_list(op_log), start=start, exec=exec_, end=end)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _item(values: list[Any], i: int) -> Any:
    return values[i] if i < len(values) else None


def _event_time(job: _Job, op: _Op) -> list[int] | None:
    """The timestamp of the change to ``op.status``: the job's received time
    for queued, the op's start for waiting/canceling, exec for running, end
    for final; the latest earlier one that is set when that one is not."""
    stages = (job.received, op.start, op.exec, op.end)
    for stage in range(_STATUS_STAGE[op.status], -1, -1):
        if stages[stage] is not None:
            return stages[stage]
    return None


def _logmsg(op: _Op) -> str | None:
    if not op.log:
        return None
    entry = op.log[-1]
    if not isinstance(entry, list) or len(entry) < 4:
        return None
    text = entry[3]
    if isinstance(text, str):
        return text
    return json.dumps(text, sort_keys=True, default=str)


def _prefix(name: str) -> str:
    return name.split("-", 1)[0]


def _is_heartbeat(op_input: dict[str, Any]) -> bool:
    if op_input["OP_ID"] != "OP_TAGS_SET" or not op_input.get("dry_run"):
        return False
    return any(isinstance(t, str) and t.startswith(HEARTBEAT_TAG)
               for t in _list(op_input.get("tags")))


def _instance_name(op_input: dict[str, Any]) -> str | None:
    op_id = op_input["OP_ID"]
    if op_id.startswith("OP_INSTANCE_"):
        name = op_input.get("instance_name")
    elif op_id in ("OP_TAGS_SET", "OP_TAGS_DEL") and op_input.get("kind") == "instance":
        name = op_input.get("name")
    else:
        return None
    return name if isinstance(name, str) and name else None


def _op_event(job: _Job, op: _Op, cluster: str) -> tuple[str, dict[str, Any]] | None:
    op_input = op.input
    op_id = op_input["OP_ID"]
    if _is_heartbeat(op_input):
        return "eventd.heartbeat", {"type": "eventd-heartbeat", "cluster": cluster}
    event_time = _event_time(job, op)
    if event_time is None:
        return None
    common = {
        "operation": op_id, "status": op.status, "jobId": job.id,
        "logmsg": _logmsg(op), "event_time": event_time, "cluster": cluster,
    }
    instance = _instance_name(op_input)
    if instance is not None:
        if op_id == "OP_INSTANCE_CREATE" and op.status == "error":
            # On a failed create the consumer gets the whole request.
            job_fields = {k: v for k, v in op_input.items() if k != "OP_ID"}
            job_fields.update({k: op_input.get(k) for k in _JOB_FIELDS})
        elif op_id in ("OP_INSTANCE_CREATE", "OP_INSTANCE_SET_PARAMS"):
            job_fields = {k: op_input.get(k) for k in _JOB_FIELDS}
        else:
            job_fields = {}
        tags = [t for t in _list(op_input.get("tags")) if isinstance(t, str)]
        return f"ganeti.{_prefix(instance)}.event.op", {
            "type": "ganeti-op-status", "instance": instance, **common,
            "result": op.result, "job_fields": job_fields, "tags": tags,
        }
    if op_id.startswith("OP_NETWORK_"):
        network = op_input.get("network_name")
        if not isinstance(network, str) or not network:
            return None
        job_fields = {"subnet": op_input.get("network")}
        job_fields.update({k: op_input.get(k) for k in _NETWORK_FIELDS})
        return f"ganeti.{_prefix(network)}.event.network", {
            "type": "ganeti-network-status", "network": network, **common,
            "result": op.result, "job_fields": job_fields,
        }
    if op_id == "OP_CLUSTER_SET_PARAMS":
        return "ganeti.event.cluster", {
            "type": "ganeti-cluster-status", **common, "result": op.result,
        }
    return None


def job_events(job: dict[str, Any], cluster: str) -> list[JobEvent]:
    """The events of one job, one per op that concerns an instance, a
    network or the cluster (see ``job_messages``), with duplicate keys.

    @raise BadJob: ``job`` has no job id or no ops list.
    """
    parsed = _normalise(job)
    events = []
    for op in parsed.ops:
        built = _op_event(parsed, op, cluster)
        if built is None:
            continue
        routing_key, message = built
        events.append(JobEvent(routing_key, message,
                               (cluster, parsed.id, op.index, op.status, len(op.log))))
    return events


def job_messages(job: dict[str, Any], cluster: str) -> list[tuple[str, dict[str, Any]]]:
    """(routing key, message) for each op of ``job`` that Cyclades follows.

    ``job`` is a job file's object or a RAPI ``/2/jobs`` answer (bulk or
    single).  Instance ops (``OP_INSTANCE_*``; ``OP_TAGS_SET``/``DEL`` of
    kind instance) give ``ganeti-op-status`` with ``job_fields`` {nics,
    disks, hvparams, beparams} for CREATE and SET_PARAMS (the whole input on
    a failed CREATE); ``OP_NETWORK_*`` give ``ganeti-network-status``;
    ``OP_CLUSTER_SET_PARAMS`` gives ``ganeti-cluster-status``; a dry-run
    ``OP_TAGS_SET`` with a ``snf:eventd:heartbeat*`` tag gives
    ``eventd-heartbeat``.  Other ops, and ops with an unknown status or
    without any timestamp, give nothing.  Messages are JSON-serialisable
    new dicts (the caller may add keys to them).

    @raise BadJob: ``job`` has no job id or no ops list.
    """
    return [(e.routing_key, e.message) for e in job_events(job, cluster)]


# -- instance details --------------------------------------------------------

def needs_instance_info(message: dict[str, Any]) -> bool:
    """Whether the consumer wants the instance's NICs, disks and hvparams
    with this message: CREATE/STARTUP success, SET_PARAMS/GROW_DISK final."""
    if message.get("type") != "ganeti-op-status":
        return False
    operation, status = message.get("operation"), message.get("status")
    return ((operation in _ATTACH_ON_SUCCESS and status == "success")
            or (operation in _ATTACH_ON_FINAL and status in FINAL_STATUSES))


def _column(info: dict[str, Any], field: str, n: int) -> list[Any]:
    values = _list(info.get(field))
    return [values[i] if i < len(values) else None for i in range(n)]


def instance_nics(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The NICs of a RAPI instance (``GET /2/instances/<n>``) as
    [{name, network, ip, mac, mode, link, uuid}], in Ganeti's order;
    ``network`` is the network's name (``nic.networks.names``)."""
    n = max(len(_list(info.get("nic.macs"))), len(_list(info.get("nic.names"))))
    networks = _column(info, "nic.networks.names", n)
    if "nic.networks.names" not in info:
        networks = _column(info, "nic.networks", n)
    columns = {
        "name": _column(info, "nic.names", n), "network": networks,
        "ip": _column(info, "nic.ips", n), "mac": _column(info, "nic.macs", n),
        "mode": _column(info, "nic.modes", n), "link": _column(info, "nic.links", n),
        "uuid": _column(info, "nic.uuids", n),
    }
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def instance_disks(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The disks of a RAPI instance as [{name, size (MiB), uuid}]."""
    n = len(_list(info.get("disk.sizes")))
    columns = {"name": _column(info, "disk.names", n),
               "size": _column(info, "disk.sizes", n),
               "uuid": _column(info, "disk.uuids", n)}
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


async def attach_instance_info(message: dict[str, Any], rapi: Any) -> dict[str, Any]:
    """Add ``instance_nics``, ``instance_disks`` and ``instance_hvparams``
    from ``rapi.instance(name)`` when ``needs_instance_info(message)``.

    The message is changed in place and returned.  When Ganeti cannot be
    asked, answers an error or no longer knows the instance, the message is
    returned unchanged (the consumer then leaves NICs and disks alone and
    reconciliation catches up).
    """
    if rapi is None or not needs_instance_info(message):
        return message
    name = message["instance"]
    try:
        info = await rapi.instance(name)
    except (RapiError, RapiUnavailable) as e:
        log.warn("No instance details for {instance} (job {job}): {error}",
                 instance=name, job=message.get("jobId"), error=e)
        return message
    if not isinstance(info, dict):
        return message
    message["instance_nics"] = instance_nics(info)
    message["instance_disks"] = instance_disks(info)
    hvparams = info.get("hvparams")
    message["instance_hvparams"] = hvparams if isinstance(hvparams, dict) else {}
    return message
