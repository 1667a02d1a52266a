"""``SimulatedCluster``: a Ganeti 3.0 cluster in-process, seen from outside.

It serves RAPI v2 over HTTPS (basic auth, a self-signed ``rapi.pem``) and
keeps its job queue on disk in Ganeti's format, so the same client code,
event watcher and contract tests run against it and against a real
cluster.  It is the embedded default backend of ``./dev run`` and the
backend of fast tests.

State lives in ``state_dir``:

* ``rapi.pem``: key + certificate, created once and reused;
* ``state.json``: cluster identity, nodes, instances, networks and the job serial,
  replaced atomically after every change;
* ``queue/``: ``job-<id>`` files, ``serial``, ``version`` (see
  ``snfd.ganeti_sim.jobqueue``).

A new cluster starts with job 1, the finished ``OP_CLUSTER_POST_INIT`` of
``gnt-cluster init``, as a real one does.  A restarted simulator keeps its
instances and jobs; node sizes and names come from ``state.json`` when it
exists (the constructor's node arguments only shape a new cluster).  Jobs
that were running when it stopped end as errors; queued ones run (see
``jobqueue``).  Finished jobs older than six hours are archived hourly.

Networks behave as Ganeti 3.0's (``snfd.ganeti_sim.networks``): created,
connected to the one node group ``default``, disconnected and removed by
jobs; each keeps an address pool, a NIC ``{"network": n, "ip": ...}`` must
name a connected network and takes its address from it (``"pool"``: the
first free one) and the group's mode/link, and a removed NIC or instance
gives its address back.  ``state.json`` keeps the networks and the group's
connections with the instances.

Reinstalls, migrations and failovers behave as Ganeti 3.0.2's (see
``snfd.ganeti_sim.instances``): a RAPI reinstall is one job of shutdown,
reinstall and startup that replaces the instance's OS parameters; drbd
instances swap primary and secondary, diskless and ext ones move to a
target node or the iallocator's pick, file and plain ones are refused.
The iallocator honours exclusion tags (cluster tags
``htools:iextags:<prefix>``) and reports one failure reason per node, as
hail does.

What differs from a real cluster, on purpose: instance names never resolve
(``name_check`` must be false, as Cyclades sends it); there is one node
group; only ``mode: create`` is supported; the hypervisor never boots
anything, so an instance is "running" as soon as its job says so.

The cluster presents one hypervisor, ``fake`` by default or ``kvm`` as a
production Synnefo cluster: cluster info, new instances and hotplug follow
it.  ``hotplug`` (a modify's disk or NIC change on a running instance) works
on KVM with Ganeti 3.0's ``hotplug:done`` results and is refused on
``fake`` ("Hotplug is not possible: ..."); ``hotplug_if_possible`` falls
back to a change without hotplug.  The hypervisor is not kept in
``state.json``: instances keep the one they were created with.

Needs a real reactor: files are written in the reactor's thread pool.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet import defer, ssl, task
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web import server

from snfd.ganeti_sim import opcodes
from snfd.ganeti_sim.jobqueue import FileWriter, JobQueue, Latency
from snfd.ganeti_sim.model import HYPERVISORS, ClusterConfig, Instance
from snfd.ganeti_sim.opcodes import BodyError, OpError
from snfd.ganeti_sim.rapi import RapiResource
from snfd.ganeti_sim.tls import certificate_part, ensure_rapi_pem

log = Logger(namespace="snfd.ganeti_sim")

STATE_VERSION = 1
ARCHIVE_INTERVAL = 3600.0     # seconds between archiving runs
ARCHIVE_AGE = 6 * 3600.0      # finished jobs older than this are archived

# The gnt-instance command an administrator would type for each opcode.
_ADMIN_COMMANDS = {
    "OP_INSTANCE_SHUTDOWN": "stop",
    "OP_INSTANCE_STARTUP": "start",
    "OP_INSTANCE_REBOOT": "reboot",
    "OP_INSTANCE_REMOVE": "remove",
    "OP_INSTANCE_SET_PARAMS": "modify",
    "OP_INSTANCE_CREATE": "add",
    "OP_TAGS_SET": "add-tags",
    "OP_TAGS_DEL": "remove-tags",
    "OP_INSTANCE_QUERY_DATA": "info",
    "OP_INSTANCE_REINSTALL": "reinstall",
    "OP_INSTANCE_MIGRATE": "migrate",
    "OP_INSTANCE_FAILOVER": "failover",
}


class _Site(server.Site):
    """A site that remembers its open connections so ``stop`` can close them."""

    def __init__(self, root: Any):
        super().__init__(root)
        self.open: dict[Any, Any] = {}   # protocol -> its transport
        self.noisy = False

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        if proto is None:
            return None
        lost = proto.connectionLost
        made = proto.makeConnection

        def makeConnection(transport: Any) -> None:
            self.open[proto] = transport
            made(transport)

        def connectionLost(reason: Any) -> None:
            self.open.pop(proto, None)
            lost(reason)

        proto.makeConnection = makeConnection
        proto.connectionLost = connectionLost
        return proto


class SimulatedCluster:
    """A simulated Ganeti 3.0 cluster: RAPI over HTTPS plus a job queue
    on disk that behaves like a real cluster's.

    ``nodes`` nodes of ``node_memory``/``node_disk`` MiB and ``node_cpus``
    CPUs; ``queue_delay`` seconds between a job's dispatch and its start,
    ``exec_time`` seconds per step of an op's running phase (a create takes
    about six steps, a shutdown one); at most ``max_running_jobs`` run at
    once.  ``oses`` and ``disk_templates`` are what instances may use.
    ``hypervisor`` is the cluster's one enabled hypervisor: ``fake`` (no
    hotplug) or ``kvm`` (disks and NICs of running instances hot-plugged).
    """

    def __init__(self, reactor: Any, state_dir: Path, name: str = "sim.ganeti.test", *,
                 nodes: int = 1, node_memory: int = 32768, node_disk: int = 1024 * 1024,
                 node_cpus: int = 16,
                 username: str = "synnefo", password: str = "synnefopass",  # noqa: S107
                 interface: str = "127.0.0.1", port: int = 0,
                 queue_delay: float = 0.05, exec_time: float = 0.1,
                 max_running_jobs: int = 20,
                 oses: tuple[str, ...] = ("snf-image+default", "noop+default"),
                 disk_templates: tuple[str, ...] = ("diskless", "file", "plain", "drbd",
                                                    "ext"),
                 hypervisor: str = "fake"):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if hypervisor not in HYPERVISORS:
            raise ValueError(f"unknown hypervisor {hypervisor!r}; one of"
                             f" {', '.join(HYPERVISORS)}")
        self._reactor = reactor
        self.state_dir = Path(state_dir)
        self.name = name
        self.username = username
        self.password = password
        self._interface = interface
        self._port = port
        self._node_args = {"nodes": nodes, "node_memory": node_memory,
                           "node_disk": node_disk, "node_cpus": node_cpus}
        self._latency = Latency(queue_delay=queue_delay, exec_time=exec_time)
        self._max_running_jobs = max_running_jobs
        self.oses = tuple(oses)
        self.disk_templates = tuple(disk_templates)
        self.hypervisor = hypervisor
        self.queue_dir = self.state_dir / "queue"
        self.url = ""
        self.certificate = ""
        self._config: ClusterConfig | None = None
        self._queue: JobQueue | None = None
        self._writer: FileWriter | None = None
        self._listening: IListeningPort | None = None
        self._site: _Site | None = None
        self._archiver: task.LoopingCall | None = None

    # -- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        """Load or create the state, make or reuse ``rapi.pem``, listen for
        HTTPS on ``interface``:``port`` and start running jobs."""
        if self._listening is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        now = self._reactor.seconds()
        config = ClusterConfig.new(self.name, now, **self._node_args)
        config.oses = self.oses
        config.disk_templates = self.disk_templates
        config.hypervisor = self.hypervisor
        config.max_running_jobs = self._max_running_jobs
        serial = 0
        saved = self._load_state()
        if saved is not None:
            config.restore(saved)
            serial = int(saved.get("serial", 0))
        self._config = config
        self._writer = FileWriter(self._reactor)
        self._writer.start()
        self._queue = JobQueue(self._reactor, self.queue_dir, config, self._latency,
                               self._writer, self._save)
        await self._queue.load(serial)
        await self._queue.initialise()
        self._save()

        pem = ensure_rapi_pem(self.state_dir / "rapi.pem", self.name, [self._interface])
        self.certificate = certificate_part(pem)
        context = ssl.PrivateCertificate.loadPEM(pem).options()
        self._site = _Site(RapiResource(config, self._queue, self.username, self.password))
        self._listening = self._reactor.listenSSL(self._port, self._site, context,
                                                  interface=self._interface)
        host = self._interface if ":" not in self._interface else f"[{self._interface}]"
        self.url = f"https://{host}:{self._listening.getHost().port}"  # type: ignore[union-attr]
        self._queue.start()
        self._archiver = task.LoopingCall(self._archive_old)
        self._archiver.clock = self._reactor
        self._archiver.start(ARCHIVE_INTERVAL, now=False)

    async def stop(self) -> None:
        """Stop listening, close client connections, stop the jobs where
        they are and wait for pending file writes.  Idempotent."""
        if self._archiver is not None and self._archiver.running:
            self._archiver.stop()
        self._archiver = None
        listening, self._listening = self._listening, None
        if listening is not None:
            await defer.maybeDeferred(listening.stopListening)
        if self._site is not None:
            for transport in list(self._site.open.values()):
                transport.abortConnection()
            self._site = None
        if self._queue is not None:
            await self._queue.stop()
            self._queue = None
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None

    def _archive_old(self) -> defer.Deferred[int]:
        d = defer.ensureDeferred(self._running_queue().archive(ARCHIVE_AGE))
        d.addErrback(lambda f: log.failure("archiving old jobs failed", f))
        return d

    def _load_state(self) -> dict[str, Any] | None:
        path = self.state_dir / "state.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: unknown state version {data.get('version')!r}")
        return data["cluster"]

    def _save(self) -> None:
        if self._writer is None or self._config is None:
            return
        cluster = self._config.to_json()
        serial = self._queue.serial if self._queue is not None else 0
        cluster["serial"] = serial
        text = json.dumps({"version": STATE_VERSION, "cluster": cluster}, separators=(",", ":"))
        self._writer.write(self.state_dir / "state.json", text, "state.json.tmp")

    # -- views for tests ----------------------------------------------------
    @property
    def config(self) -> ClusterConfig:
        if self._config is None:
            raise RuntimeError("the simulated cluster is not started")
        return self._config

    @property
    def instances(self) -> Mapping[str, Instance]:
        """The instances by name (a read-only view of the live configuration)."""
        return types.MappingProxyType(self.config.instances)

    @property
    def nodes(self) -> list[str]:
        """The node names, master first."""
        return sorted(self.config.nodes, key=lambda n: (not self.config.nodes[n].master, n))

    def _running_queue(self) -> JobQueue:
        if self._queue is None:
            raise RuntimeError("the simulated cluster is not started")
        return self._queue

    # -- fault injection and administration ----------------------------------
    def fail_next(self, opcode: str, error_class: str = "OpExecError",
                  message: str = "simulated failure", ecode: str = "environment_error") -> None:
        """Make the next ``opcode`` (e.g. ``OP_INSTANCE_CREATE``) fail with
        ``[error_class, [message, ecode]]``.  An ``OpPrereqError`` fails the
        op while it waits (before it runs, nothing changes); any other class
        fails it once running.  Several calls queue up."""
        self._running_queue().fail_next(opcode, OpError(error_class, message, ecode))

    def hold_queue(self) -> None:
        """New and queued jobs stay ``queued`` (and cancellable) until
        ``release_queue``."""
        self._running_queue().hold()

    def release_queue(self) -> None:
        """Let held jobs run."""
        self._running_queue().release()

    def set_latency(self, queue_delay: float, exec_time: float) -> None:
        """Change the timings for jobs from now on."""
        self._latency.queue_delay = queue_delay
        self._latency.exec_time = exec_time

    def admin(self, opcode: str, instance: str, **params: Any) -> int:
        """Submit a job as an administrator would with ``gnt-instance``
        (not through RAPI): its reason trail says ``gnt:client:gnt-instance``.
        ``params`` are opcode parameters (e.g. ``timeout=0``,
        ``tags=["a"]``); returns the job id."""
        queue = self._running_queue()
        if opcode in ("OP_TAGS_SET", "OP_TAGS_DEL"):
            fields = {"kind": "instance", "name": instance, "tags": []}
        elif opcode == "OP_INSTANCE_QUERY_DATA":
            fields = {"instances": [instance]}
        else:
            fields = {"instance_name": instance}
        if opcode == "OP_INSTANCE_REBOOT":
            fields["reboot_type"] = "hard"
        dry_run = bool(params.pop("dry_run", False))
        fields.update(params)
        try:
            op = opcodes.fill(opcode, fields, dry_run=dry_run)
        except (BodyError, KeyError) as e:
            raise ValueError(f"invalid administrator opcode {opcode}: {e}") from None
        command = _ADMIN_COMMANDS.get(opcode, opcode[3:].lower())
        job_id, _ = queue.submit([op], ("gnt:client:gnt-instance", command))
        return job_id

    def set_oper_state(self, instance: str, running: bool) -> None:
        """Change whether the hypervisor runs ``instance`` behind Ganeti's
        back (a crash, or a start outside Ganeti): an instance that should
        be up but is not shows ``ERROR_down``, the reverse ``ERROR_up``."""
        inst = self.config.instances[instance]
        if running:
            inst.start()
        else:
            inst.stop()
        self._save()

    async def wait_job(self, job_id: int) -> dict[str, Any]:
        """The job as ``GET /2/jobs/<id>`` shows it, once it is final."""
        return await self._running_queue().wait(job_id)

    async def archive_jobs(self, older_than: float = 0.0) -> int:
        """Archive finished jobs that ended more than ``older_than`` seconds
        ago (see ``JobQueue.archive``); the simulator also does this hourly
        for jobs older than six hours, like ganeti-watcher.  Returns how
        many were archived."""
        return await self._running_queue().archive(older_than)

    async def flush(self) -> None:
        """Wait until every file write issued so far is on disk."""
        if self._writer is not None:
            await self._writer.drain()


__all__ = ["SimulatedCluster"]
