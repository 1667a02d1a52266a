"""The Ganeti contract scenario: one script of RAPI calls, two drivers.

``run_scenario`` drives a cluster through the life of one instance (create,
shutdown, startup, reboot, modify beparams, a failing job, a cancelled job,
an administrator's shutdown, then ``_move_and_reinstall_steps``: the
migrate/failover refusals of a one-node cluster, a refused reinstall, an
exclusion tag refusing a create, reinstalls of a running and of a stopped
file instance; delete), then of a Synnefo-style network
(``_network_steps``: create, connect, an instance create that ``depends``
on the connect job, explicit and pool addresses, refused removals and a
refused address, NIC and instance removal, a failed dependency,
disconnect, delete) over ``snfd.ganeti.rapi.GanetiRapi``
and returns what a client could observe, normalised so that two clusters
that behave alike give EQUAL records: job ids, times, uuids, MACs, node and
cluster names are dropped or replaced by placeholders; what is kept is
status vocabulary, field names, null patterns, result shapes and values
that do not depend on the cluster.

Drivers (``ClusterDriver``): ``SimDriver`` wraps ``snfd.ganeti_sim``'s
``SimulatedCluster``; ``RealDriver`` wraps a real Ganeti 3.0 cluster in a
network namespace (``snfd.testing.ganeti.RealGanetiCluster``).

``EXPECTED`` (in ``expected.py``) is the record of a real Ganeti 3.0.2
cluster.  To re-record it on a machine where real Ganeti can run::

    .venv/bin/python -m tests.ganeti.contract > tests/ganeti/expected.py

What real Ganeti 3.0.2 did with networks (measured on the recording run
and by hand on a cluster in netns gnt17), some of it a surprise:

- ``nic.networks`` holds the network's UUID, ``nic.networks.names`` its
  name; the NIC's MAC takes the network's ``mac_prefix`` (aa:00:01:..),
  not the cluster's, and its ``custom_nicparams`` are the group
  connection's ``{mode, link, vlan}`` although the client gave none.
- A new network reserves its network and broadcast addresses besides the
  gateway: ``external_reservations`` "10.99.0.0, 10.99.0.1, 10.99.0.10,
  10.99.0.255", ``reserved_count`` 4, ``free_count`` 252; ``ip: "pool"``
  takes the lowest free address (10.99.0.2).  Address reservations, NIC
  adds and connections never change the network's ``serial_no`` or mtime.
- The create's job input keeps ``ip: "pool"``; a modify's add is rewritten
  with the chosen address and the generated MAC.  Create logs "NIC/0
  inherits netparams ['gntbr0', 'bridged', '']" (link first), a modify's
  add only "Chose IP ... from network ...".
- A taken, reserved (gateway, broadcast, add_reserved_ips) or foreign
  address fails the create with one text, "IP address X already in use or
  does not belong to network N" (resource_not_unique), after the
  iallocator ran, with conflicts_check true or false alike.
- Removing a connected network fails "Network still connected"
  (wrong_state) with a warning naming the groups; removal does not look
  at instances at all.  Disconnecting a network NICs are on fails
  "Conflicting IP addresses found;  remove/modify the corresponding
  network interfaces" (two spaces, wrong_state), the warning listing
  "inst: nic0/ip, nic1/ip".  Both fail once running (exec_timestamp set),
  while an unknown network or group fails before (waiting, no
  exec_timestamp).  Connecting twice, or disconnecting an unconnected
  network, succeeds with a warning.
- A NIC on a network that is not connected fails the create in the
  iallocator: "Can't compute nodes using iallocator 'hail-single': Request
  failed: group default is not connected to a network required by
  instance X" (insufficient_resources).
- ``depends``: a job waiting on an unfinished job stays ``queued`` (no
  start_ts); one whose dependency ended in a status not listed goes
  waiting and then fails with ``OpExecError`` "Dependency job N finished
  with status 'error', not one of 'success' as required" (no ecode, no
  exec_timestamp, its input never expanded: no debug_level); an unknown id
  gives "Dependency error: Job N not found"; ``[]`` accepts any final
  status; a relative id -1 in job 41 was stored as 40.
- RAPI answers ``POST /2/networks`` without ``network`` with a 400, and a
  connect body naming ``network_name`` with 400 "Can't overwrite static
  parameters {'network_name'}"; every network handler sets ``dry_run``
  false in the opcode.

What real Ganeti 3.0.2 did with reinstalls, migrations and exclusion tags
(the recording run, and by hand on a cluster in netns gnt150):

- ``POST .../reinstall`` is ONE job of three ops: OP_INSTANCE_SHUTDOWN,
  OP_INSTANCE_REINSTALL, OP_INSTANCE_STARTUP (``force`` false; left out
  when ``start`` is false).  The handler builds the ops itself: no
  ``dry_run`` (null once expanded), and each op's reason trail holds only
  ``gnt:opcode:<op>`` (no ``gnt:library:rlib2`` entry), all three with the
  job's received time.  ``?dry-run=1`` is read as the legacy query form
  (``os``/``nostartup``) and runs a real reinstall; a body together with
  query arguments is a 400; a non-boolean ``start`` a 400; a non-string
  ``os`` or non-object ``osparams`` a 502 from the queue daemon ("Failed
  to parse request: SubmitJob: Can't parse value for 'os_type': Unable to
  read String"); unknown body keys are ignored.
- The shutdown op succeeds on a stopped instance too (empty log), so
  running and stopped instances give the same job and the same event
  sequence: every op ``queued``; shutdown waiting, running, success;
  reinstall waiting, running, running with log 1 "Changing OS scripts to
  'noop+default'..." (only when ``os`` is given), running with log 2
  " - INFO: Running instance OS create scripts...", success; startup
  waiting, running, success.  Log serials count across the job's ops.
- The instance's OS parameters become exactly the ``osparams`` given:
  ``{img_id, img_format}`` reinstalled with ``{img_id}`` keeps only
  ``img_id``, and a reinstall without ``osparams`` leaves ``{}`` (the op's
  input then shows ``osparams: {}``).  Keys the OS does not declare fail
  the op: "OS Parameters validation failed on node N: The following
  parameters are not supported by the OS noop: bogus" (OpExecError, no
  ecode), as does an unknown OS ("Directory for OS bogus not found in
  search path").
- A diskless instance cannot be reinstalled: "Instance 'x' has no disks"
  (OpPrereqError, wrong_input, once running), AFTER the shutdown op
  stopped it; the startup op then ends ``error`` "Preceding opcode
  failed" with every timestamp null and its input never expanded (no
  ``debug_level``).  An unknown instance fails the shutdown op while
  waiting and the two others the same way.
- Migrate and failover of a file (or plain) instance: "Instance's disk
  layout 'file' does not allow migrations" ("... failovers"), wrong_state.
  Diskless counts as shared storage: without ``target_node`` the cluster's
  iallocator is asked (and written into the op's input) and on one node
  answers "Can't compute nodes using iallocator 'hail-single': Request
  failed: Can't find any good node: " (nothing after the colon;
  insufficient_resources); with its own primary as ``target_node``:
  "Cannot migrate instance X to its primary (node)", wrong_state, for a
  failover too.  These fail once running; an unknown ``target_node``
  fails while waiting ("Node 'x' not known", unknown_entity).  A mode
  other than live/non-live is a 400.  Handlers set no ``dry_run``.
- Exclusion tags: with cluster tag ``htools:iextags:snfx`` a create with
  instance tag ``snfx:web`` fails while another instance on the only node
  has it: "... No valid allocation solutions, failure reasons: FailTags:
  1" (insufficient_resources).  The prefix is a plain string prefix:
  ``snfxweb`` is an exclusion tag too (the hbal man page says ``snfx:*``);
  ``snfx:db`` does not clash with ``snfx:web``; a stopped instance's tags
  count; a create naming ``pnode`` bypasses the rule; hail reports one
  reason per node, and a node short of vCPUs counts as FailCPU, not
  FailTags.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import defer, task

from snfd.ganeti.rapi import FINAL_STATUSES, GanetiRapi, RapiError, RapiTarget, depends_on
from snfd.httpclient import HTTPClientPool, Target, TargetClient
from snfd.metrics import Metrics
from snfd.testing.ganeti import RealGanetiCluster

INSTANCE = "snf-contract-1"
NET_INSTANCE = "snf-contract-2"
NET_TAKEN = "snf-contract-3"
NETWORK = "snf-contract-net"
SUBNET = "10.99.0.0/24"
GATEWAY = "10.99.0.1"
NET_MAC_PREFIX = "aa:00:01"
NET_IP = "10.99.0.5"
MISSING = "snf-contract-missing"
UNKNOWN_JOB = 987654
FILE_INSTANCE = "snf-contract-4"
EXCL_INSTANCE = "snf-contract-5"
#: The cluster tag that makes instance tags starting with "snfx" exclusion tags.
EXCL_CLUSTER_TAG = "htools:iextags:snfx"
EXCL_TAG = "snfx:web"
OS = "noop+default"
FILE_OSPARAMS = {"img_id": "pithos://contract", "img_format": "diskdump"}
NEW_OSPARAMS = {"img_id": "pithos://contract-new"}

CREATE_BODY: dict[str, Any] = {
    "mode": "create",
    "name": INSTANCE,
    "disk_template": "diskless",
    "disks": [],
    "nics": [{}],
    "os_type": "noop+default",
    "beparams": {"vcpus": 1, "memory": 128},
    "name_check": False,
    "ip_check": False,
}

#: Order in which a job's status may change; the final ones share a rank.
STATUS_RANK = {"queued": 0, "waiting": 1, "running": 2, "canceling": 3,
               "success": 4, "error": 4, "canceled": 4}

POLL = 0.02
JOB_TIMEOUT = 60.0

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The cluster's MAC prefix, or the contract network's.
_MAC = re.compile(r"^aa:00:0[01](:[0-9a-f]{2}){3}$")
_JOB_FILE = re.compile(r"^job-\d+$")
_MAC_IN_TEXT = re.compile(r"\baa:00:0[01](:[0-9a-f]{2}){3}\b")
_JOB_IN_TEXT = re.compile(r"\b([Dd]ependency job|[Dd]ependency error: Job) \d+")

#: Fields of a bulk instance whose values are compared as they are.
INSTANCE_VALUES = (
    "name", "status", "admin_state", "oper_state", "os", "disk_template", "beparams",
    "custom_beparams", "custom_nicparams", "tags", "snodes", "network_port", "oper_ram",
    "oper_vcpus", "disk_usage", "disk.sizes", "disk.names", "disk.spindles", "disk.uuids",
    "nic.ips", "nic.modes", "nic.names", "nic.networks", "nic.networks.names",
)


class ScenarioTimeout(Exception):
    """A job or a cluster did not reach the awaited state in time."""


# -- drivers --------------------------------------------------------------------

class ClusterDriver(Protocol):
    """What the scenario needs from a cluster besides its RAPI."""

    kind: str

    @property
    def name(self) -> str: ...

    def target(self) -> RapiTarget:
        """How to reach the cluster's RAPI (url, credentials, pinned cert)."""

    @property
    def queue_dir(self) -> Path: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def hold_queue(self, rapi: GanetiRapi) -> None:
        """From now on, newly submitted jobs stay ``queued``."""

    async def release_queue(self, rapi: GanetiRapi) -> None:
        """Undo ``hold_queue``: queued jobs run again."""

    async def admin_shutdown(self, instance: str) -> int:
        """An administrator's ``gnt-instance shutdown`` (not through RAPI); its job id."""


class SimDriver:
    """The simulator (``snfd.ganeti_sim.SimulatedCluster``) as a contract driver."""

    kind = "sim"

    def __init__(self, reactor: Any, state_dir: Path):
        from snfd.ganeti_sim import SimulatedCluster

        self.cluster = SimulatedCluster(reactor, Path(state_dir), "sim.ganeti.test",
                                        queue_delay=0.02, exec_time=0.05)

    @property
    def name(self) -> str:
        return str(self.cluster.name)

    @property
    def queue_dir(self) -> Path:
        return Path(self.cluster.queue_dir)

    def target(self) -> RapiTarget:
        c = self.cluster
        return RapiTarget(cluster=c.name, url=c.url, username=c.username,
                          password=c.password, certificate=c.certificate)

    async def start(self) -> None:
        await self.cluster.start()

    async def stop(self) -> None:
        await self.cluster.stop()

    async def hold_queue(self, rapi: GanetiRapi) -> None:
        self.cluster.hold_queue()

    async def release_queue(self, rapi: GanetiRapi) -> None:
        self.cluster.release_queue()

    async def admin_shutdown(self, instance: str) -> int:
        return int(self.cluster.admin("OP_INSTANCE_SHUTDOWN", instance))


class RealDriver:
    """A real cluster (already up) as a contract driver.

    The queue is held the way an operator would: ``max_running_jobs`` set
    to 1 and a lock-free ``gnt-debug delay`` job occupying the one slot;
    releasing kills that job and restores the limit.
    """

    kind = "real"

    def __init__(self, reactor: Any, cluster: RealGanetiCluster):
        self.reactor = reactor
        self.cluster = cluster
        self._blocker: int | None = None
        self._max_running = 20

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def queue_dir(self) -> Path:
        return self.cluster.queue_dir

    def target(self) -> RapiTarget:
        c = self.cluster
        return RapiTarget(cluster=c.name, url=c.url, username=c.username,
                          password=c.password, certificate=c.certificate)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def hold_queue(self, rapi: GanetiRapi) -> None:
        self._max_running = int((await rapi.info()).get("max_running_jobs") or 20)
        await self.cluster.gx("gnt-cluster", "modify", "--max-running-jobs=1")
        self._blocker = await self.cluster.submit("gnt-debug", "delay", "--no-locks", "120")
        await _until(self.reactor, lambda: _job_status(rapi, self._blocker),
                     lambda s: s == "running", "the delay job to run")

    async def release_queue(self, rapi: GanetiRapi) -> None:
        blocker, self._blocker = self._blocker, None
        if blocker is not None:
            await self.cluster.gx("gnt-job", "cancel", "--kill", "--yes-do-it", str(blocker),
                                  check=False)
        await self.cluster.gx("gnt-cluster", "modify",
                              f"--max-running-jobs={self._max_running}")
        if blocker is not None:
            await _until(self.reactor, lambda: _job_status(rapi, blocker),
                         lambda s: s in FINAL_STATUSES, "the delay job to end")

    async def admin_shutdown(self, instance: str) -> int:
        return await self.cluster.submit("gnt-instance", "shutdown", instance)


async def _job_status(rapi: GanetiRapi, job_id: int | None) -> str | None:
    job = await rapi.job(int(job_id or 0))
    return None if job is None else job["status"]


async def _until(reactor: Any, probe: Callable[[], Awaitable[Any]],
                 done: Callable[[Any], bool], what: str, timeout: float = JOB_TIMEOUT) -> Any:
    deadline = reactor.seconds() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if reactor.seconds() > deadline:
            raise ScenarioTimeout(f"gave up waiting for {what} (last: {value!r})")
        await task.deferLater(reactor, POLL, lambda: None)


# -- normalisation --------------------------------------------------------------

class _Scrub:
    """Replaces cluster-specific strings by placeholders, recursively: node
    and cluster names, the default iallocator's name (``hail-single`` on
    the real test cluster, ``hail`` in the simulator), also inside
    messages; uuids and MACs."""

    def __init__(self, nodes: list[str], cluster: str, iallocator: str | None = None):
        self.names = {n: "<node>" for n in nodes}
        self.names[cluster] = "<cluster>"
        if iallocator:
            self.names[iallocator] = "<iallocator>"
        # Longest first: node names contain the cluster's domain.
        self._in_text = [(re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])"), label)
                         for name, label in sorted(self.names.items(),
                                                   key=lambda item: -len(item[0]))]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            if value in self.names:
                return self.names[value]
            if _UUID.match(value):
                return "<uuid>"
            if _MAC.match(value):
                return "<mac>"
            # MACs, names and job ids inside messages (a NIC add's result,
            # a dependency error, a migration refusal) differ between clusters.
            value = _MAC_IN_TEXT.sub("<mac>", value)
            for pattern, label in self._in_text:
                value = pattern.sub(label, value)
            return _JOB_IN_TEXT.sub(r"\1 <id>", value)
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in sorted(value.items())}
        return value


def _is_ts(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))


def _ts(value: Any) -> str | None:
    """A timestamp as "ts" (a [sec, usec] pair), None, or what else it was."""
    if value is None:
        return None
    return "ts" if _is_ts(value) else f"<not a timestamp: {value!r}>"


def _log_entry_ok(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], int)
            and _is_ts(entry[1]) and isinstance(entry[2], str) and isinstance(entry[3], str))


def _result(status: str | None, result: Any, scrub: _Scrub) -> Any:
    """An op result: [class, ecode] for a failure, the scrubbed value otherwise."""
    if status == "error" and isinstance(result, list) and len(result) == 2:
        error_class, args = result
        ecode = args[1] if isinstance(args, list) and len(args) > 1 else "<no ecode>"
        return [error_class, ecode]
    return scrub(result)


def _sequence_ok(seen: list[tuple[str, ...]]) -> bool:
    """Each op's status only ever moves forward and ends final, and an op
    leaves ``queued`` only once the op before it is final.

    ``seen`` holds the ``opstatus`` lists polling saw.  The job's own
    status is not checked for order: in a job of several ops it goes back
    from ``running`` to ``waiting`` when the next op starts."""
    if not seen or not seen[-1]:
        return False
    for snapshot in seen:
        for index, status in enumerate(snapshot):
            if status not in STATUS_RANK:
                return False
            if index and status != "queued" and snapshot[index - 1] not in FINAL_STATUSES:
                return False
    for index in range(len(seen[-1])):
        ranks = [STATUS_RANK[s[index]] for s in seen if len(s) > index]
        if ranks != sorted(ranks):
            return False
    return all(status in FINAL_STATUSES for status in seen[-1])


def _job_record(job: dict[str, Any], seen: list[tuple[str, ...]],
                scrub: _Scrub) -> dict[str, Any]:
    ops = job.get("ops") or []
    statuses = job.get("opstatus") or []
    results = job.get("opresult") or []
    return {
        "fields": sorted(job),
        "status": job.get("status"),
        "sequence_ok": _sequence_ok(seen),
        "summary": job.get("summary"),
        "ops": [(op or {}).get("OP_ID") for op in ops],
        "instance_names": [(op or {}).get("instance_name") for op in ops],
        "opstatus": statuses,
        "opresult": [_result(s, r, scrub) for s, r in zip(statuses, results, strict=False)],
        "oplog": [{"entries_ok": all(_log_entry_ok(e) for e in log), "empty": not log}
                  for log in (job.get("oplog") or [])],
        "timestamps": {k: _ts(job.get(k)) for k in ("received_ts", "start_ts", "end_ts")},
    }


def _instance_state(instances: list[dict[str, Any]],
                    name: str = INSTANCE) -> dict[str, Any] | None:
    for inst in instances:
        if inst.get("name") == name:
            return {k: inst.get(k, "<missing>")
                    for k in ("status", "admin_state", "oper_state")}
    return None


def _instance_detail(inst: dict[str, Any] | None, scrub: _Scrub) -> dict[str, Any] | None:
    if inst is None:
        return None
    detail = {k: scrub(inst.get(k, "<missing>")) for k in INSTANCE_VALUES}
    detail.update({
        "pnode": scrub(inst.get("pnode")),
        "uuid_ok": bool(_UUID.match(str(inst.get("uuid")))),
        "nic.macs_ok": [bool(_MAC.match(str(m))) for m in inst.get("nic.macs") or []],
        "nic.uuids_ok": [bool(_UUID.match(str(u))) for u in inst.get("nic.uuids") or []],
        "nic.mac_prefixes": [str(m)[:8] for m in inst.get("nic.macs") or []],
        "nic.links": inst.get("nic.links"),
        "nic.networks_are_uuids": [None if n is None else bool(_UUID.match(str(n)))
                                   for n in inst.get("nic.networks") or []],
        "nic.links_count": len(inst.get("nic.links") or []),
        "nic.bridges_count": len(inst.get("nic.bridges") or []),
        "ctime_type": type(inst.get("ctime")).__name__,
        "mtime_type": type(inst.get("mtime")).__name__,
        "serial_no_type": type(inst.get("serial_no")).__name__,
    })
    return detail


def _input_subset(op_input: dict[str, Any], scrub: _Scrub, whole: bool = False,
                  ) -> dict[str, Any]:
    """What consumers read from an op's input (events' job_fields, tags);
    a network op's (or with ``whole`` any op's) whole input but its reason
    trail."""
    op_id = str(op_input.get("OP_ID"))
    if op_id.startswith("OP_NETWORK_") or whole:
        # The reason trail's times differ; its sources are recorded apart.
        subset = {k: scrub(v) for k, v in op_input.items() if k != "reason"}
    else:
        keys: tuple[str, ...] = ("beparams", "nics", "disks", "hvparams", "tags", "depends")
        if op_input.get("OP_ID") not in ("OP_INSTANCE_CREATE", "OP_INSTANCE_SET_PARAMS"):
            keys = ()
        subset = {k: scrub(op_input.get(k, "<missing>")) for k in keys}
    if isinstance(subset.get("depends"), list):
        # Job ids differ between clusters; the statuses asked for do not.
        subset["depends"] = [["<job id>", d[1]] if isinstance(d, list) and len(d) == 2
                             else d for d in subset["depends"]]
    return subset


def _log_texts(log: list[Any], scrub: _Scrub) -> list[Any]:
    """An op's log messages; the iallocator's choice (its name differs
    between clusters) as one placeholder."""
    texts = []
    for entry in log:
        text = entry[3] if isinstance(entry, list) and len(entry) == 4 else entry
        if isinstance(text, str) and "via iallocator" in text:
            text = "<iallocator selection>"
        texts.append(scrub(text))
    return texts


def _network_detail(net: dict[str, Any] | None, scrub: _Scrub) -> dict[str, Any] | None:
    """A network as RAPI shows it: values that do not depend on the
    cluster as they are, the rest by type."""
    if net is None:
        return None
    detail = {k: scrub(v) for k, v in sorted(net.items())
              if k not in ("ctime", "mtime", "uuid")}
    detail.update({"uuid_ok": bool(_UUID.match(str(net.get("uuid")))),
                   "ctime_type": type(net.get("ctime")).__name__,
                   "mtime_type": type(net.get("mtime")).__name__})
    return detail


def _job_file_record(job: dict[str, Any], scrub: _Scrub, texts: bool = False,
                     whole: bool = False) -> dict[str, Any]:
    ops = []
    for op in job.get("ops") or []:
        op_input = op.get("input") or {}
        reasons = op_input.get("reason") or []
        ops.append({})
        if texts:
            ops[-1]["log_texts"] = _log_texts(op.get("log") or [], scrub)
            result = op.get("result")
            if op.get("status") == "error" and isinstance(result, list) and len(result) == 2:
                ops[-1]["error_message"] = scrub((result[1] or ["<none>"])[0])
        ops[-1].update({
            "fields": sorted(op),
            "OP_ID": op_input.get("OP_ID"),
            "instance_name": op_input.get("instance_name"),
            "status": op.get("status"),
            "result": _result(op.get("status"), op.get("result"), scrub),
            "log": {"entries_ok": all(_log_entry_ok(e) for e in op.get("log") or []),
                    "empty": not op.get("log")},
            "timestamps": {k: _ts(op.get(k))
                           for k in ("start_timestamp", "exec_timestamp", "end_timestamp")},
            "priority": op.get("priority"),
            "reason_sources": [r[0] if isinstance(r, list) and r else r for r in reasons],
            "input": _input_subset(op_input, scrub, whole),
        })
    return {
        "fields": sorted(job),
        "job_status_field": "status" in job,
        "timestamps": {k: _ts(job.get(k))
                       for k in ("received_timestamp", "start_timestamp", "end_timestamp")},
        "ops": ops,
    }


def _read_queue(queue_dir: Path) -> tuple[dict[int, Any], bool]:
    """Every ``job-<id>`` file: {id: parsed JSON (None if it did not parse)}, and
    whether any name that is not exactly ``job-<id>`` was found besides
    ``serial``, ``version``, ``lock``, ``archive`` (a leftover temp file)."""
    jobs: dict[int, Any] = {}
    strays = False
    for path in sorted(queue_dir.iterdir()):
        if _JOB_FILE.match(path.name):
            try:
                jobs[int(path.name[4:])] = json.loads(path.read_text())
            except ValueError:
                jobs[int(path.name[4:])] = None
        elif path.name not in ("serial", "version", "lock", "archive"):
            strays = True
    return jobs, strays


# -- the scenario ---------------------------------------------------------------

async def _follow(reactor: Any, rapi: GanetiRapi, job_id: int,
                  ) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """Poll a job until it is final: the final job and the op statuses seen."""
    seen: list[tuple[str, ...]] = []

    async def probe() -> dict[str, Any] | None:
        job = await rapi.job(job_id)
        if job is not None:
            statuses = tuple(job.get("opstatus") or ())
            if not seen or seen[-1] != statuses:
                seen.append(statuses)
        return job

    job = await _until(reactor, probe, lambda j: j is not None and j["status"] in FINAL_STATUSES,
                       f"job {job_id} to finish")
    return job, seen


async def run_scenario(reactor: Any, driver: ClusterDriver) -> dict[str, Any]:
    """Drive ``driver``'s (started) cluster through the scenario; its record."""
    pool = HTTPClientPool(reactor, Metrics())
    try:
        target = driver.target()
        rapi = GanetiRapi(pool, target, reactor)
        # The unknown-job and 404 answers are recorded raw, not as the client reads them.
        raw = pool.client(Target(name=target.cluster, base_url=target.url,
                                 username=target.username, password=target.password,
                                 ca_certificate=target.certificate or None,
                                 verify_hostname=False, timeout=target.timeout))
        return await _scenario(reactor, driver, rapi, raw)
    finally:
        await pool.close()


async def _scenario(reactor: Any, driver: ClusterDriver, rapi: GanetiRapi,
                    raw: TargetClient) -> dict[str, Any]:
    nodes = [n["name"] for n in await rapi.nodes()]
    scrub = _Scrub(nodes, driver.name, (await rapi.info()).get("default_iallocator"))
    record: dict[str, Any] = {"steps": []}
    job_ids: dict[str, int] = {}

    async def step(label: str, submit: Callable[[], Awaitable[int]],
                   watch: str = INSTANCE) -> dict[str, Any]:
        """Submit, follow to the end, record the job and ``watch``'s state."""
        job_id = await submit()
        job, seen = await _follow(reactor, rapi, job_id)
        job_ids[label] = job_id
        entry = {"step": label, "job": _job_record(job, seen, scrub),
                 "instance": _instance_state(await rapi.instances(), watch)}
        record["steps"].append(entry)
        return entry

    await step("create", lambda: rapi.create_instance(CREATE_BODY))
    instances = await rapi.instances()
    record["bulk_fields"] = sorted(next((i for i in instances if i.get("name") == INSTANCE), {}))
    record["after_create"] = _instance_detail(await rapi.instance(INSTANCE), scrub)
    _, listing = await raw.json_request("GET", "/2/instances")
    record["listing"] = listing
    await step("shutdown", lambda: rapi.shutdown(INSTANCE))
    await step("startup", lambda: rapi.startup(INSTANCE))
    await step("reboot", lambda: rapi.reboot(INSTANCE))
    await step("modify", lambda: rapi.modify(INSTANCE, beparams={"vcpus": 2}))
    record["after_modify"] = _instance_detail(await rapi.instance(INSTANCE), scrub)
    await step("fail", lambda: rapi.startup(MISSING))

    # A job cancelled while queued.
    await driver.hold_queue(rapi)
    try:
        held = await rapi.reboot(INSTANCE)
        before = await _job_status(rapi, held)
        done, message = await rapi.cancel_job(held)
    finally:
        await driver.release_queue(rapi)
    await step("cancel", lambda: _value(held))
    record["cancel"] = {"status_before": before,
                        "answer": [done, message.replace(str(held), "<id>")]}
    finished = job_ids["create"]
    done, message = await rapi.cancel_job(finished)
    record["cancel_finished"] = [done, message.replace(str(finished), "<id>")]

    await step("admin-shutdown", lambda: driver.admin_shutdown(INSTANCE))
    await _move_and_reinstall_steps(reactor, rapi, raw, step, record, scrub, nodes[0])
    await step("delete", lambda: rapi.delete_instance(INSTANCE))
    await _network_steps(rapi, raw, step, record, scrub, job_ids)

    status, body = await raw.json_request("GET", f"/2/jobs/{UNKNOWN_JOB}")
    record["unknown_job"] = {
        "http": status,
        "body": ({k: ("<asked id>" if v == UNKNOWN_JOB else v) for k, v in sorted(body.items())}
                 if isinstance(body, dict) else body),
        "client": await rapi.job(UNKNOWN_JOB),
    }
    status, body = await raw.json_request("GET", f"/2/instances/{MISSING}")
    record["missing_instance"] = {
        "http": status,
        "fields": sorted(body) if isinstance(body, dict) else body,
        "code": body.get("code") if isinstance(body, dict) else None,
        "message": body.get("message") if isinstance(body, dict) else None,
    }
    try:
        found = await rapi.instance(MISSING)
        record["missing_instance"]["client"] = None if found is None else "found"
    except RapiError as e:
        record["missing_instance"]["client"] = f"RapiError {e.status}"

    files, strays = _read_queue(driver.queue_dir)
    record["queue"] = {
        "all_parse": all(isinstance(j, dict) for j in files.values()),
        "any_job_status": any(isinstance(j, dict) and "status" in j for j in files.values()),
        "stray_files": strays,
    }
    record["job_files"] = {
        label: _job_file_record(files[job_id], scrub,
                                texts=label.startswith("net-") or label in TEXT_STEPS,
                                whole=label in TEXT_STEPS)
        if isinstance(files.get(job_id), dict) else None
        for label, job_id in job_ids.items()
    }
    record["events"] = _events(files, job_ids, driver.name, scrub)
    return record


async def _value(job_id: int) -> int:
    return job_id


#: Steps whose job files are recorded with their log texts, error
#: messages and whole op inputs.
TEXT_STEPS = frozenset({"migrate-no-node", "failover-to-primary", "reinstall-diskless",
                        "cluster-tags", "create-file", "excl-refused", "migrate-file",
                        "failover-file", "reinstall-running", "reinstall-stopped"})


async def _os_state(reactor: Any, rapi: GanetiRapi, raw: TargetClient,
                    name: str) -> dict[str, Any]:
    """The instance's OS and OS parameters, which only the info job shows
    (``GET /2/instances/<n>/info?static=1``)."""
    _, job_id = await raw.json_request("GET", f"/2/instances/{name}/info",
                                       params=[("static", "1")])
    job, _ = await _follow(reactor, rapi, int(job_id))
    info = ((job.get("opresult") or [{}])[0] or {}).get(name) or {}
    return {k: info.get(k, "<missing>") for k in ("os", "os_instance", "config_state")}


async def _move_and_reinstall_steps(reactor: Any, rapi: GanetiRapi, raw: TargetClient,
                                    step: Callable[..., Awaitable[dict[str, Any]]],
                                    record: dict[str, Any], scrub: _Scrub,
                                    node: str) -> None:
    """What one node answers to migrations and failovers (the stopped
    diskless INSTANCE: no other node for the iallocator, its own primary as
    target; a file instance: not movable at all), a reinstall of a
    diskless instance, an exclusion tag refusing a second instance with
    the same tag, and reinstalls of a running and of a stopped file
    instance with their effect on its OS parameters."""
    await step("migrate-no-node", lambda: rapi.migrate(INSTANCE))
    await step("failover-to-primary", lambda: rapi.failover(INSTANCE, target_node=node))
    await step("reinstall-diskless", lambda: rapi.reinstall(INSTANCE, OS))
    await step("cluster-tags", lambda: rapi.add_cluster_tags([EXCL_CLUSTER_TAG]))
    record["cluster_tags"] = await rapi.cluster_tags()
    await step("create-file", lambda: rapi.create_instance({
        **CREATE_BODY, "name": FILE_INSTANCE, "disk_template": "file",
        "disks": [{"size": 1024}], "osparams": FILE_OSPARAMS, "tags": [EXCL_TAG]}),
        watch=FILE_INSTANCE)
    await step("excl-refused", lambda: rapi.create_instance({
        **CREATE_BODY, "name": EXCL_INSTANCE, "tags": [EXCL_TAG]}), watch=EXCL_INSTANCE)
    await step("migrate-file", lambda: rapi.migrate(FILE_INSTANCE, mode="live"),
               watch=FILE_INSTANCE)
    await step("failover-file", lambda: rapi.failover(FILE_INSTANCE), watch=FILE_INSTANCE)
    await step("reinstall-running", lambda: rapi.reinstall(
        FILE_INSTANCE, OS, osparams=NEW_OSPARAMS, start=False), watch=FILE_INSTANCE)
    record["os_after_reinstall_running"] = await _os_state(reactor, rapi, raw, FILE_INSTANCE)
    await step("reinstall-stopped", lambda: rapi.reinstall(FILE_INSTANCE, OS),
               watch=FILE_INSTANCE)
    record["os_after_reinstall_stopped"] = await _os_state(reactor, rapi, raw, FILE_INSTANCE)
    record["file_instance"] = _instance_detail(await rapi.instance(FILE_INSTANCE), scrub)


def _net_body(name: str, nic: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**CREATE_BODY, "name": name, "nics": [nic], **extra}


async def _network_steps(rapi: GanetiRapi, raw: TargetClient,
                         step: Callable[..., Awaitable[dict[str, Any]]],
                         record: dict[str, Any], scrub: _Scrub,
                         job_ids: dict[str, int]) -> None:
    """A Synnefo network's life: create, connect (an instance create
    waiting on the connect job through ``depends``), an explicit address, a
    pool address by modify, a taken address, removal refused while
    connected and disconnection refused while in use, then NIC removal,
    instance delete, a job whose dependency failed, disconnect, delete."""
    record["groups"] = await rapi.groups()
    _, record["networks_before"] = await raw.json_request("GET", "/2/networks")
    await step("net-create", lambda: rapi.create_network(
        NETWORK, subnet=SUBNET, gateway=GATEWAY, mac_prefix=NET_MAC_PREFIX,
        add_reserved_ips=["10.99.0.10"], tags=["snf-contract"]))
    record["network_created"] = _network_detail(await rapi.network(NETWORK), scrub)
    _, listing = await raw.json_request("GET", "/2/networks")
    record["networks_listing"] = listing
    record["networks_bulk_names"] = [n.get("name") for n in await rapi.networks()]

    # The create is submitted before the connect job has run; it waits.
    connect = await rapi.connect_network(NETWORK, "default", "bridged", "gntbr0")
    create = await rapi.create_instance(_net_body(
        NET_INSTANCE, {"network": NETWORK, "ip": NET_IP, "name": "nic-net"},
        depends=depends_on(connect)))
    record["depending_create_before"] = await _job_status(rapi, create)
    await step("net-connect", lambda: _value(connect))
    await step("net-create-instance", lambda: _value(create))
    record["network_instance"] = _instance_detail(await rapi.instance(NET_INSTANCE), scrub)
    await step("net-add-pool-nic", lambda: rapi.modify(
        NET_INSTANCE, nics=[["add", {"network": NETWORK, "ip": "pool", "name": "nic-pool"}]]))
    record["network_instance_two_nics"] = _instance_detail(
        await rapi.instance(NET_INSTANCE), scrub)
    record["network_in_use"] = _network_detail(await rapi.network(NETWORK), scrub)
    await step("net-ip-taken", lambda: rapi.create_instance(_net_body(
        NET_TAKEN, {"network": NETWORK, "ip": NET_IP})))
    await step("net-delete-connected", lambda: rapi.delete_network(NETWORK))
    await step("net-disconnect-in-use", lambda: rapi.disconnect_network(NETWORK, "default"))
    await step("net-remove-nic", lambda: rapi.modify(
        NET_INSTANCE, nics=[["remove", "nic-pool", {}]]))
    record["network_one_nic"] = _network_detail(await rapi.network(NETWORK), scrub)
    await step("net-delete-instance", lambda: rapi.delete_instance(NET_INSTANCE))
    record["network_unused"] = _network_detail(await rapi.network(NETWORK), scrub)
    await step("net-depends-failed", lambda: rapi.disconnect_network(
        NETWORK, "default", depends=depends_on(job_ids["net-ip-taken"])))
    await step("net-disconnect", lambda: rapi.disconnect_network(NETWORK, "default"))
    await step("net-delete", lambda: rapi.delete_network(NETWORK))
    _, record["networks_after"] = await raw.json_request("GET", "/2/networks")
    status, body = await raw.json_request("GET", f"/2/networks/{NETWORK}")
    record["missing_network"] = {"http": status,
                                 "body": body if isinstance(body, dict) else repr(body),
                                 "client": await rapi.network(NETWORK)}


def _events(files: dict[int, Any], job_ids: dict[str, int], cluster: str,
            scrub: _Scrub) -> list[Any] | str:
    """The messages ``snfd.ganeti.jobs.job_messages`` builds from the final
    job files, per step, normalised (or a note when the module is missing)."""
    try:
        from snfd.ganeti.jobs import job_messages
    except ImportError:
        return "snfd.ganeti.jobs.job_messages is not available"
    out: list[Any] = []
    for label, job_id in job_ids.items():
        job = files.get(job_id)
        if not isinstance(job, dict):
            out.append([label, "<no job file>"])
            continue
        for key, message in job_messages(job, cluster):
            out.append([label, scrub(key), message.get("type"), message.get("operation"),
                        message.get("status"), message.get("instance"),
                        message.get("jobId") == job_id, message.get("cluster") == cluster,
                        _ts(message.get("event_time")),
                        _result(message.get("status"), message.get("result"), scrub),
                        message.get("network"),
                        # An instance event's job_fields hold the whole input
                        # (reason times, the iallocator's name): not compared.
                        scrub(message.get("job_fields"))
                        if message.get("type") == "ganeti-network-status" else None])
    return out


EXPECTED_HEADER = '''"""What a real Ganeti 3.0.2 cluster answers to the contract scenario
(``tests.ganeti.contract.run_scenario``), normalised.  Generated, do not edit:

    .venv/bin/python -m tests.ganeti.contract > tests/ganeti/expected.py
"""

'''


def render_expected(record: dict[str, Any]) -> str:
    """``record`` as the text of ``expected.py``."""
    import pprint

    return EXPECTED_HEADER + "EXPECTED = " + pprint.pformat(
        record, width=88, sort_dicts=False).replace("\n", "\n" + " " * 11) + "\n"


def main() -> None:
    """Bring up a real cluster, run the scenario, print it as ``expected.py``."""
    import sys

    from twisted.internet import threads

    from snfd.testing.ganeti import real_ganeti_unavailable

    async def record(reactor: Any) -> None:
        reason = real_ganeti_unavailable()
        if reason:
            sys.exit(reason)
        cluster = RealGanetiCluster(reactor)
        await threads.deferToThread(cluster.up)
        try:
            result = await run_scenario(reactor, RealDriver(reactor, cluster))
        finally:
            await threads.deferToThread(cluster.down)
        sys.stdout.write(render_expected(result))

    task.react(lambda reactor: defer.ensureDeferred(record(reactor)))


if __name__ == "__main__":
    main()
