"""Ganeti job events: the messages of Cyclades' update path, and their sources.

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
``received_ts``/``start_ts``/``end_ts``).

Two sources feed an ``EventPublisher``:

- ``JobQueueWatcher`` follows the queue directory with inotify, on the
  Ganeti master (what snf-ganeti-eventd does);
- ``RapiJobPoller`` polls ``GET /2/jobs?bulk=1`` for clusters where no snfd
  runs on the master.

Delivery is at least once: the publisher drops the duplicates it has seen
recently, and the consumer ignores stale or repeated events by their
``event_time``.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python import filepath
from twisted.python.failure import Failure
from zope.interface import implementer

from snfd.bus import BusUnavailable, UnknownExchange
from snfd.cyclades.rapi import FINAL_STATUSES, RapiError, RapiUnavailable
from snfd.interfaces import ILeaderDuty

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


def _job_id(value: Any) -> int:
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
    job_id = _job_id(job.get("id"))
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
            # RAPI has no per-op timestamps: the job's stand in for them.
            ops.append(_op(
                i, op_input, status, _item(results, i), _item(logs, i),
                started, None, ended if status in FINAL_STATUSES else None))
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


# -- publishing --------------------------------------------------------------

class EventPublisher(service.Service):
    """Publishes job events on a topic exchange of the bus.

    ``startService`` declares the exchange.  Each message is published as
    JSON and is done when the bus confirmed it.  Events seen recently (the
    last ``memory`` duplicate keys) are not published again.  A publish the
    bus cannot take (``BusUnavailable``, or the exchange gone) is retried
    with exponential backoff up to ``max_delay`` seconds, for as long as the
    publisher runs; one still pending when it stops is logged at error
    level, never dropped silently.  Events of one caller are published in
    the order given.

    ``clock`` provides ``callLater``/``seconds`` (the reactor; default the
    global one).
    """

    name = "ganeti-events-publisher"  # type: ignore[assignment]

    def __init__(self, bus: Any, exchange: str = "ganeti", *, clock: Any = None,
                 memory: int = 4096, max_delay: float = 30.0):
        if clock is None:
            from twisted.internet import reactor as clock
        self.bus = bus
        self.exchange = exchange
        self._clock = clock
        self._memory = memory
        self._max_delay = max_delay
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._pending: set[tuple[Any, ...]] = set()
        self._declared = False
        self._stopping = False
        self._sleeps: set[defer.Deferred[None]] = set()
        self._in_flight: set[defer.Deferred[Any]] = set()

    def startService(self) -> None:
        defer.ensureDeferred(self.start())

    async def start(self) -> None:
        """Start (as ``startService``), returning once the exchange is
        declared.  A bus that is unavailable now is only logged: the
        declaration is made again before the first publish."""
        if not self.running:
            service.Service.startService(self)
        self._stopping = False
        try:
            await self._declare()
        except Exception as e:
            log.warn("Could not declare exchange {exchange} yet ({error}); retried on"
                     " the first publish", exchange=self.exchange, error=e)

    def stopService(self) -> defer.Deferred[None]:
        """Stop retrying (pending events are logged as lost) and wait for
        the publishes the bus is still working on."""
        if self.running:
            service.Service.stopService(self)
        self._stopping = True
        for sleep in list(self._sleeps):
            sleep.cancel()
        return defer.DeferredList(list(self._in_flight)).addCallback(lambda _: None)

    async def stop(self) -> None:
        """``stopService`` as a coroutine."""
        await self.stopService()

    async def _declare(self) -> None:
        await self.bus.declare_exchange(self.exchange, "topic")
        self._declared = True

    def seen(self, key: tuple[Any, ...]) -> bool:
        """Whether an event with this duplicate key was published recently
        (or is being published now)."""
        return key in self._seen or key in self._pending

    def _remember(self, key: tuple[Any, ...]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)

    async def publish_job(self, job: dict[str, Any], cluster: str,
                          rapi: Any = None) -> bool:
        """Publish the events of ``job`` not seen before, in op order,
        attaching instance details through ``rapi`` when given.

        Returns False if the publisher stopped before all were published.
        @raise BadJob: ``job`` is not a job.
        """
        for event in job_events(job, cluster):
            if self.seen(event.key):
                continue
            self._pending.add(event.key)
            try:
                await attach_instance_info(event.message, rapi)
                done = await self.publish(event.routing_key, event.message)
            finally:
                self._pending.discard(event.key)
            if not done:
                return False
            self._remember(event.key)
        return True

    async def publish(self, routing_key: str, message: dict[str, Any]) -> bool:
        """Publish one message, retrying while the bus is unavailable.

        True once the bus confirmed it; False when the publisher stopped
        first (logged at error level as lost).
        """
        body = json.dumps(message, sort_keys=True).encode("utf-8")
        delay = 0.5
        while True:
            if self._stopping:
                self._lost(routing_key, message, "the publisher stopped")
                return False
            cancelled = False
            try:
                if not self._declared:
                    await self._declare()
                attempt = defer.ensureDeferred(
                    self.bus.publish(self.exchange, routing_key, body))

                def cancel(waiter: defer.Deferred[Any], attempt: Any = attempt) -> None:
                    # A cancelled bus publish may fail as BusUnavailable:
                    # remember that the caller gave up, so it is not retried.
                    nonlocal cancelled
                    cancelled = True
                    attempt.cancel()

                waiter: defer.Deferred[Any] = defer.Deferred(cancel)
                attempt.addBoth(_relay, waiter)
                self._in_flight.add(attempt)
                try:
                    await waiter
                finally:
                    self._in_flight.discard(attempt)
                return True
            except defer.CancelledError:
                raise
            except UnknownExchange:
                self._declared = False
                error: Exception | str = "the exchange does not exist"
            except BusUnavailable as e:
                if cancelled:
                    raise defer.CancelledError() from None
                error = e
            except Exception:
                log.failure("Publishing {key} failed; event dropped", key=routing_key)
                return False
            if self._stopping:
                self._lost(routing_key, message, error)
                return False
            log.warn("Publishing {key} failed ({error}); retrying in {delay}s",
                     key=routing_key, error=error, delay=delay)
            sleep = task.deferLater(self._clock, delay, lambda: None)
            self._sleeps.add(sleep)
            try:
                await sleep
            except defer.CancelledError:
                if not self._stopping:
                    raise  # the caller gave up; stopService cancels quietly
            finally:
                self._sleeps.discard(sleep)
            delay = min(delay * 2, self._max_delay)

    def _lost(self, routing_key: str, message: dict[str, Any], why: Any) -> None:
        log.error("Event lost ({why}): {key} {status} of job {job} on {cluster}",
                  why=why, key=routing_key, status=message.get("status"),
                  job=message.get("jobId"), cluster=message.get("cluster"))


def _relay(result: Any, waiter: defer.Deferred[Any]) -> None:
    """Pass ``result`` on to ``waiter`` unless it already fired (cancelled)."""
    if not waiter.called:
        if isinstance(result, Failure):
            waiter.errback(result)
        else:
            waiter.callback(result)


# -- the job queue watcher ---------------------------------------------------

def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None  # archived or replaced between the event and the read


class JobQueueWatcher(service.Service):
    """Publishes the jobs of a Ganeti job queue directory as they change.

    Watches ``queue_dir`` with inotify for files renamed into place or
    closed after writing, named exactly ``job-<id>`` (Ganeti replaces job
    files atomically through temporary files also named ``job-*``, which
    are ignored).  Each file is read and parsed in a thread; one that is not
    a job is logged and skipped.  At start every existing job file is read
    once, so jobs that changed while the watcher was down are published
    (the publisher and the consumer drop what was seen before).  Jobs are
    processed one at a time per job id; a job that changes while it is
    being processed is read again afterwards (the latest file wins).

    A missing ``queue_dir`` is logged once; it is looked for again every
    ``retry_interval`` seconds and watched once it appears.

    ``rapi`` (a ``GanetiRapi``), when given, is asked for the instance
    details some messages carry (see ``attach_instance_info``).
    """

    name = "ganeti-job-queue-watcher"  # type: ignore[assignment]

    def __init__(self, reactor: Any, queue_dir: str | Path, cluster: str,
                 publisher: EventPublisher, rapi: Any = None,
                 retry_interval: float = 5.0):
        self._reactor = reactor
        self.queue_dir = Path(queue_dir)
        self.cluster = cluster
        self._publisher = publisher
        self._rapi = rapi
        self._retry_interval = retry_interval
        self._notifier: Any = None
        self._waiting: task.LoopingCall | None = None
        self._busy: dict[int, defer.Deferred[None]] = {}
        self._dirty: set[int] = set()
        self._scan: defer.Deferred[None] | None = None

    @property
    def watching(self) -> bool:
        """Whether the directory is being watched."""
        return self._notifier is not None

    def startService(self) -> None:
        super().startService()
        if self.queue_dir.is_dir():
            self._watch()
            return
        log.warn("Ganeti job queue {dir} does not exist; no Ganeti events from this"
                 " node until it does", dir=str(self.queue_dir))
        self._waiting = task.LoopingCall(self._look_again)
        self._waiting.clock = self._reactor
        self._waiting.start(self._retry_interval, now=False)

    def _look_again(self) -> None:
        if self.queue_dir.is_dir():
            assert self._waiting is not None
            self._waiting.stop()
            self._waiting = None
            log.info("Ganeti job queue {dir} appeared", dir=str(self.queue_dir))
            self._watch()

    def _watch(self) -> None:
        from twisted.internet import inotify

        notifier = inotify.INotify(reactor=self._reactor)
        try:
            notifier.startReading()
            notifier.watch(filepath.FilePath(str(self.queue_dir)),
                           mask=inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE,
                           callbacks=[self._notified])
        except Exception:
            notifier.loseConnection()
            log.failure("Cannot watch the Ganeti job queue {dir}", dir=str(self.queue_dir))
            return
        self._notifier = notifier
        log.info("Watching the Ganeti job queue {dir} for cluster {cluster}",
                 dir=str(self.queue_dir), cluster=self.cluster)
        self._scan = defer.ensureDeferred(self._scan_existing())

    async def _scan_existing(self) -> None:
        try:
            names = await threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(),
                lambda: sorted(p.name for p in self.queue_dir.iterdir()))
        except OSError as e:
            log.error("Cannot list the Ganeti job queue {dir}: {error}",
                      dir=str(self.queue_dir), error=e)
            return
        ids = sorted(int(m.group(1)) for m in map(JOB_FILE.match, names) if m)
        for job_id in ids:
            if not self.running:
                return
            await self.process(job_id)

    def _notified(self, ignored: Any, path: filepath.FilePath[Any], mask: int) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        match = JOB_FILE.match(name)
        if match is not None and self.running:
            self.process(int(match.group(1)))

    def process(self, job_id: int) -> defer.Deferred[None]:
        """Read and publish ``job-<job_id>`` (again, if it is being done
        now); the Deferred fires when that job has no work left."""
        running = self._busy.get(job_id)
        if running is not None:
            self._dirty.add(job_id)
            return running
        d = defer.ensureDeferred(self._process(job_id))
        self._busy[job_id] = d
        return d

    async def _process(self, job_id: int) -> None:
        try:
            while True:
                self._dirty.discard(job_id)
                await self._publish_file(job_id)
                if job_id not in self._dirty or not self.running:
                    return
        finally:
            self._busy.pop(job_id, None)
            self._dirty.discard(job_id)

    async def _publish_file(self, job_id: int) -> None:
        path = self.queue_dir / f"job-{job_id}"
        try:
            data = await threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), _read, path)
            if data is None:
                return
            job = parse_job_file(data)
            await self._publisher.publish_job(job, self.cluster, self._rapi)
        except BadJob as e:
            log.warn("Skipping {path}: not a Ganeti job ({error})", path=str(path), error=e)
        except defer.CancelledError:
            raise
        except Exception:
            log.failure("Skipping {path}: processing failed", path=str(path))

    def stopService(self) -> defer.Deferred[None]:
        """Stop watching; the jobs being processed are abandoned (their
        events not yet confirmed are published at the next start) and the
        Deferred fires once that is done."""
        super().stopService()
        if self._waiting is not None:
            self._waiting.stop()
            self._waiting = None
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
        work = list(self._busy.values())
        if self._scan is not None:
            work.append(self._scan)
        if self._busy:
            # Not remembered as published, so the start-up scan of the next
            # run publishes them.
            log.info("Ganeti job queue watcher stopped with jobs {jobs} in progress",
                     jobs=sorted(self._busy))
        waits = defer.DeferredList(work, consumeErrors=True)
        for d in work:
            d.cancel()
        return waits.addCallback(lambda _: None)


# -- the RAPI poller ---------------------------------------------------------

@implementer(ILeaderDuty)
class RapiJobPoller:
    """Publishes a cluster's jobs by polling its RAPI.

    Every ``interval`` seconds it lists ``GET /2/jobs?bulk=1``; each job
    whose status or op statuses changed since the last poll is published
    (``EventPublisher.publish_job``).  A job that reached a final status is
    first read whole with ``GET /2/jobs/<id>`` for its op results and logs.
    The first poll publishes every job still in the queue.  An unreachable
    or failing cluster is logged and asked again at the next tick; a job
    that could not be published is tried again at the next tick.

    ``start()``/``stop()`` run it directly; as an ``ILeaderDuty`` it runs
    on the leader only (``start(leadership)``).
    """

    def __init__(self, reactor: Any, rapi: Any, cluster: str,
                 publisher: EventPublisher, interval: float = 2.0):
        self._reactor = reactor
        self._rapi = rapi
        self.cluster = cluster
        self.name = f"ganeti-poller-{cluster}"
        self._publisher = publisher
        self.interval = interval
        self._known: dict[int, tuple[Any, ...]] = {}
        self._loop: task.LoopingCall | None = None
        self._tick: defer.Deferred[None] | None = None
        self._failing = False

    def start(self, leadership: Any = None) -> None:
        """Poll from now on (the first poll at once)."""
        if self._loop is not None and self._loop.running:
            return
        self._known.clear()
        self._loop = task.LoopingCall(self._run_tick)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("Ganeti job poller for {cluster} stopped", f,
                                  cluster=self.cluster))

    def stop(self) -> defer.Deferred[None]:
        """Stop polling; the poll in progress is cancelled (what it had not
        published yet is published by the next poller) and the Deferred
        fires once it has ended."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        tick, self._tick = self._tick, None
        if tick is None or tick.called:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        tick.addBoth(lambda _: done.callback(None))
        tick.cancel()
        return done

    def _run_tick(self) -> defer.Deferred[None]:
        self._tick = defer.ensureDeferred(self._guarded_poll())
        return self._tick

    async def _guarded_poll(self) -> None:
        try:
            await self.poll()
        except defer.CancelledError:
            pass  # stop() ended this poll
        except Exception:
            log.failure("Polling the jobs of Ganeti cluster {cluster} failed",
                        cluster=self.cluster)

    async def poll(self) -> None:
        """One poll: list the jobs and publish those that changed."""
        try:
            jobs = await self._rapi.jobs()
        except (RapiUnavailable, RapiError) as e:
            if not self._failing:
                log.warn("Cannot list the jobs of Ganeti cluster {cluster}: {error};"
                         " retrying every {interval}s", cluster=self.cluster, error=e,
                         interval=self.interval)
            self._failing = True
            return
        if self._failing:
            log.info("Ganeti cluster {cluster} answers again", cluster=self.cluster)
            self._failing = False
        listed: set[int] = set()
        for job in jobs:
            try:
                job_id = _job_id(job.get("id"))
            except BadJob:
                continue
            listed.add(job_id)
            state = (job.get("status"), tuple(_hashable(job.get("opstatus"))))
            if self._known.get(job_id) == state:
                continue
            if not await self._publish(job_id, job):
                return
            self._known[job_id] = state
        # Archived jobs leave the listing; forget them.
        for job_id in set(self._known) - listed:
            del self._known[job_id]

    async def _publish(self, job_id: int, job: dict[str, Any]) -> bool:
        if job.get("status") in FINAL_STATUSES:
            try:
                full = await self._rapi.job(job_id)
            except (RapiUnavailable, RapiError) as e:
                log.warn("Cannot read job {job} of {cluster}: {error}", job=job_id,
                         cluster=self.cluster, error=e)
                return False
            if full is not None:
                job = full
        try:
            return await self._publisher.publish_job(job, self.cluster, self._rapi)
        except BadJob as e:
            log.warn("Skipping job {job} of {cluster}: {error}", job=job_id,
                     cluster=self.cluster, error=e)
            return True


def _hashable(values: Any) -> Iterable[Any]:
    return [v if isinstance(v, str | int | None) else repr(v) for v in _list(values)]
