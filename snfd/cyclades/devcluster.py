"""The embedded default's Ganeti: a ``SimulatedCluster`` in the node's
state directory, registered as a compute backend, with the same job-queue
watcher a ganeti-events plugin runs on a real master, and (on an empty
cloud) demo flavors and a small system image."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger

from snfd.cyclades import store
from snfd.cyclades.events import EventPublisher, JobQueueWatcher

log = Logger(namespace="snfd.cyclades.devcluster")

DEMO_FLAVORS = ((1, 1024, 10), (2, 2048, 20), (4, 4096, 40))
DEMO_IMAGE_SIZE = 8 << 20
DEMO_IMAGE = "snfd-demo-linux.diskdump"


def demo_image_bytes(size: int = DEMO_IMAGE_SIZE) -> bytes:
    """A deterministic stand-in disk image (the simulator never boots it)."""
    out = bytearray()
    seed = b"snfd demo image"
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed * 128
    return bytes(out[:size])


class DevCluster(service.MultiService):
    name = "ganeti-sim"  # type: ignore[assignment]

    def __init__(self, node: Any, section: Any):
        from snfd.ganeti_sim import SimulatedCluster

        super().__init__()
        self.node = node
        self.section = section
        self.cluster = SimulatedCluster(
            node.reactor, node.state_dir / "ganeti-sim", section.cluster, port=section.port,
            queue_delay=section.queue_delay, exec_time=section.exec_time,
            nodes=section.nodes, node_memory=section.node_memory, node_cpus=section.node_cpus)
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
        from snfd.cyclades.rapi import GanetiRapi, RapiTarget

        c = self.cluster
        # As on a real master: the watcher asks RAPI for instance NICs/disks.
        rapi = GanetiRapi(self.node.http, RapiTarget(c.name, c.url, c.username, c.password,
                                                     c.certificate))
        self.watcher = JobQueueWatcher(self.node.reactor, c.queue_dir, c.name,
                                       self.publisher, rapi=rapi)
        self.watcher.startService()
        if "cyclades" not in self.node.plugins:
            return
        if self.section.register:
            await self._register()
        if self.section.demo:
            await self._demo()
        log.info("simulated Ganeti cluster {name} at {url}", name=self.cluster.name,
                 url=self.cluster.url)

    async def _register(self) -> None:
        c = self.cluster
        settings = dict(rapi_url=c.url, username=c.username, password=c.password,
                        certificate=c.certificate, hypervisor="fake",
                        disk_templates=tuple(c.disk_templates), events="watch")
        db = self.node.db
        found = await db.run("cyclades.backend", store.backend_txn, clustername=c.name)
        if found is None:
            await db.run("cyclades.add_backend", store.add_backend_txn, c.name,
                         settings.pop("rapi_url"), **settings)
        else:
            await db.run("cyclades.update_backend", store.update_backend_txn, found.id,
                         **settings)

    async def _demo(self) -> None:
        db = self.node.db
        if await db.run("cyclades.flavors", store.flavors_txn, True):
            return
        for cpu, ram, disk in DEMO_FLAVORS:
            await db.run("cyclades.create_flavor", store.create_flavor_txn, cpu, ram, disk,
                         "file")
        if self.node.object_backend is not None:
            await self._demo_image()

    async def _demo_image(self) -> None:
        from snfd.cyclades.images import ImageRegistry
        from snfd.cyclades.service import SYSTEM_ACCOUNT
        from snfd.pithos.backend import Backend
        from snfd.pithos.local import store_file

        node = self.node
        owner = node.config["cyclades"].system_images_owner or SYSTEM_ACCOUNT
        path = node.state_dir / DEMO_IMAGE
        if not path.exists():
            await threads.deferToThread(path.write_bytes, demo_image_bytes())
        # Operator content: stored without charging anyone's quota.
        backend = Backend(node.db, node.block_store, None, node.reactor)
        await store_file(backend, owner, "images", DEMO_IMAGE, path)
        registry = ImageRegistry(backend, node.reactor, owner)
        image = await registry.register(owner, f"pithos://{owner}/images/{DEMO_IMAGE}", {
            "name": "Demo Linux", "disk_format": "diskdump", "is_public": True,
            "properties": {"OS": "linux", "OSFAMILY": "linux", "ROOT_PARTITION": "1",
                           "DESCRIPTION": "A small demo image for the simulated cluster"}})
        log.info("registered demo image {id}", id=image.id)

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
