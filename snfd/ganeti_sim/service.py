"""The embedded default's Ganeti: a ``SimulatedCluster`` in the node's
state directory, with the same job-queue watcher a ganeti-events plugin
runs on a real master; registered as a compute backend, and an empty cloud
seeded with demo content, when the compute service runs here
(``IComputeBackends``)."""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from snfd.config import Section
from snfd.ganeti.publisher import EventPublisher
from snfd.ganeti.rapi import GanetiRapi, RapiTarget
from snfd.ganeti.watcher import JobQueueWatcher
from snfd.ganeti_sim.cluster import SimulatedCluster
from snfd.interfaces import Deps, IComputeBackends
from snfd.node import Node

log = Logger(namespace="snfd.ganeti_sim")


class SimulatedClusterService(service.MultiService):
    """Runs the simulated cluster and publishes its job events.

    @param backends: the compute service's ``IComputeBackends``, or
        ``None`` when it does not run on this node.
    """

    name = "ganeti-sim"  # type: ignore[assignment]

    def __init__(self, node: Any, section: Any, cluster: SimulatedCluster,
                 backends: IComputeBackends | None = None):
        super().__init__()
        self.node = node
        self.section = section
        self.cluster = cluster
        self.backends = backends
        self.publisher = EventPublisher(node.bus)
        self.watcher: JobQueueWatcher | None = None
        self._starting: defer.Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addErrback(lambda f: log.failure("simulated Ganeti start-up failed", f))

    async def _start(self) -> None:
        await self.cluster.start()
        await self.publisher.start()
        c = self.cluster
        # As on a real master: the watcher asks RAPI for instance NICs/disks.
        rapi = GanetiRapi(self.node.http, RapiTarget(c.name, c.url, c.username, c.password,
                                                     c.certificate))
        self.watcher = JobQueueWatcher(self.node.reactor, c.queue_dir, c.name,
                                       self.publisher, rapi=rapi)
        self.watcher.startService()
        if self.backends is None:
            return
        if self.section.register:
            await self.backends.register_backend(
                c.name, c.url, c.username, c.password, c.certificate, c.hypervisor,
                tuple(c.disk_templates), "watch")
        if self.section.demo:
            await self.backends.seed_demo()
        log.info("simulated Ganeti cluster {name} at {url}", name=c.name, url=c.url)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.called:
            await self._starting
        if self.watcher is not None:
            await defer.maybeDeferred(self.watcher.stopService)
        await self.publisher.stop()
        await self.cluster.stop()


def from_config(node: Node, section: Section, deps: Deps,
                ) -> SimulatedClusterService:
    """The simulated cluster from the node and its ``[ganeti-sim]`` section;
    it uses the compute service's ``IComputeBackends`` when one runs here."""
    cluster = SimulatedCluster(
        node.reactor, node.state_dir / "ganeti-sim", section.cluster, port=section.port,
        queue_delay=section.queue_delay, exec_time=section.exec_time,
        nodes=section.nodes, node_memory=section.node_memory, node_cpus=section.node_cpus,
        hypervisor=section.hypervisor)
    return SimulatedClusterService(node, section, cluster, deps.get(IComputeBackends))
