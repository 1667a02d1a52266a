"""The compute service's lifecycle: builds the RAPI pool, the image
registry, the effect path (``servers``), the update path (``updates`` fed
by the ``dispatcher``) and the reconciler from the node and the
``[cyclades]`` section; registers the compute resources with the quota
holder; names its mounts and its leader duties (reconciliation, commission
reconciliation, RAPI polling of backends without an events plugin)."""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from snfd.cluster.periodic import PeriodicDuty
from snfd.config import Section
from snfd.cyclades import store
from snfd.cyclades.aggregates import Aggregates
from snfd.cyclades.allocator import rapi_target
from snfd.cyclades.backends import SYSTEM_ACCOUNT, BackendRegistry
from snfd.cyclades.compute_api import ComputeAPI, VmapiApp
from snfd.cyclades.disk_formats import DiskFormats
from snfd.cyclades.dispatcher import Dispatcher
from snfd.cyclades.flavors import Flavors
from snfd.cyclades.hosts import Hosts
from snfd.cyclades.image_api import ImageAPI, compute_image
from snfd.cyclades.images import ImageRegistry
from snfd.cyclades.networks.api import NetworkAPI
from snfd.cyclades.networks.service import FLOATING, PRIVATE, Networks, NetworkSettings
from snfd.cyclades.reconciler import ReconcileDuty, Reconciler
from snfd.cyclades.server_images import ServerImages
from snfd.cyclades.servers import ComputeSettings, Servers
from snfd.cyclades.updates import UpdatePath
from snfd.cyclades.volumes.api import VolumeAPI
from snfd.cyclades.volumes.service import Volumes
from snfd.ganeti.poller import RapiJobPoller
from snfd.ganeti.publisher import EventPublisher
from snfd.ganeti.rapi import RapiPool
from snfd.interfaces import (
    Deps,
    IAuthenticator,
    IBlockStore,
    IComputeBackends,
    ILeaderDuty,
    IObjectStore,
    IQuotaHolder,
    IVolumes,
)
from snfd.node import Node, public_base
from snfd.quota import Resource
from snfd.quota.serials import Charger
from snfd.web.app import MAX_JSON_BODY
from snfd.web.auth import TokenAuth

log = Logger(namespace="snfd.cyclades")

COMPONENT = "cyclades"
ORIGIN = "cyclades_compute"

GiB = 1 << 30


def resources() -> list[Resource]:
    """The resources this service charges (Synnefo's names)."""
    def r(name: str, desc: str, unit: str | None, base: int) -> Resource:
        return Resource(name, desc, unit, "compute", ORIGIN, base_default=base,
                        project_default=0)
    return [
        r("cyclades.vm", "Number of virtual machines", None, 4),
        r("cyclades.total_cpu", "Number of virtual machine processors", None, 8),
        r("cyclades.cpu", "Number of virtual machine processors of running machines",
          None, 8),
        r("cyclades.total_ram", "Virtual machine memory size", "bytes", 16 * GiB),
        r("cyclades.ram", "Memory size of running virtual machines", "bytes", 16 * GiB),
        r("cyclades.disk", "Virtual machine disk size", "bytes", 160 * GiB),
        r(PRIVATE, "Number of private networks", None, 5),
        r(FLOATING, "Number of public IP addresses (floating IPs)", None, 5),
    ]


class CycladesService(service.MultiService):
    """Compute over Ganeti, and the image registry over the object store;
    provides ``IComputeBackends`` (``backends``) to a plugin that brings a
    cluster of its own."""

    name = "cyclades"  # type: ignore[assignment]

    def __init__(self, node: Node, section: Section, charger: Charger,
                 authenticator: IAuthenticator,
                 images: ImageRegistry, public_url: str, thin: Any = None):
        super().__init__()
        self.node = node
        self.section = section
        self.public_url = public_url
        self.authenticator = authenticator
        self.charger = charger
        self.images = images
        self.rapi = RapiPool(node.http)
        self.settings = ComputeSettings(
            os=section.os, vmapi_url=f"{self.public_url}/vmapi",
            max_metadata=section.max_metadata, password_ttl=section.password_ttl,
            stats_min_age=section.stats_min_age, rapi_timeout=section.rapi_timeout)
        self.networks = Networks(node.db, self.rapi, charger, node.clock, NetworkSettings(
            mac_prefix_base=section.mac_prefix_base, default_bridge=section.default_bridge,
            filtered_bridge=section.filtered_bridge, bridge_base=section.bridge_base,
            bridge_pool_size=section.bridge_pool_size, api_flavors=section.network_flavors,
            default_server_networks=section.default_server_networks,
            hotplug=section.nic_hotplug, rapi_timeout=section.rapi_timeout))
        self.volumes = Volumes(node.db, self.rapi, charger, thin, images, images.objects,
                               rapi_timeout=section.rapi_timeout)
        self.servers = Servers(node.db, self.rapi, images, charger, node.clock,
                               self.settings, networks=self.networks, volumes=self.volumes)
        self.server_images = ServerImages(self.servers, self.volumes, images)
        self.flavors = Flavors(node.db, section.flavor_disk_template)
        self.updates = UpdatePath(node.db, charger, node.clock, networks=self.networks,
                                  volumes=self.volumes)
        self.reconciler = Reconciler(
            node.db, self.rapi, self.updates, node.clock, timeout=section.rapi_timeout,
            security=None if self.networks is None else self.networks.security)
        self.backends = BackendRegistry(node.db, images, node.state_dir,
                                        networks=self.networks, thin=thin is not None)
        self.dispatcher: Dispatcher | None = None
        if section.dispatcher:
            self.dispatcher = Dispatcher(node.bus, self.updates, prefix=section.events_prefix)
            self.dispatcher.setServiceParent(self)
        self.publisher = EventPublisher(node.bus)

    def provided(self) -> dict[Any, Any]:
        return {IComputeBackends: self.backends}

    def startService(self) -> None:
        super().startService()
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addErrback(lambda f: log.failure("cyclades start-up failed", f))

    async def _start(self) -> None:
        await self.charger.holder.register_resources(COMPONENT, resources())

    def stopService(self) -> defer.Deferred[None]:
        d = super().stopService()
        return defer.ensureDeferred(self._drain(d))

    async def _drain(self, children: Any) -> None:
        await children
        await self.server_images.drain()
        await self.volumes.drain()
        await self.publisher.stop()
        await self.charger.drain()

    # -- plugin surface ---------------------------------------------------

    def mounts(self) -> dict[str, Any]:
        membership = getattr(self.node, "membership", None)
        hosts = Hosts(self.node.db, self.rapi,
                      membership.status if membership is not None else None)
        compute = ComputeAPI(self.servers, self.images, f"{self.public_url}/compute",
                             flavors=self.flavors, hosts=hosts,
                             aggregates=Aggregates(self.node.db),
                             server_images=self.server_images)
        return {
            "compute": TokenAuth(compute.app.resource(), self.authenticator,
                                 max_body=MAX_JSON_BODY),
            "vmapi": VmapiApp(self.servers, self.updates, self.node.clock).app.resource(),
            "network": TokenAuth(
                NetworkAPI(self.networks, f"{self.public_url}/network",
                           MAX_JSON_BODY).resource(),
                self.authenticator, max_body=MAX_JSON_BODY,
                fault_style=lambda request: "neutron"),
            "image": TokenAuth(ImageAPI(self.images, self.public_url).app.resource(),
                               self.authenticator, max_body=MAX_JSON_BODY),
            "volume": TokenAuth(VolumeAPI(self.volumes, f"{self.public_url}/volume",
                                          MAX_JSON_BODY).resource(),
                                self.authenticator, max_body=MAX_JSON_BODY),
        }

    def duties(self) -> list[Any]:
        clock = self.node.clock

        async def commissions() -> None:
            await self.charger.reconcile(grace=3600.0)

        return [ReconcileDuty(self.reconciler, clock, self.section.reconcile_interval),
                PeriodicDuty("cyclades-commissions", 30.0, clock, commissions),
                BackendPolling(self)]


def from_config(node: Node, section: Section, deps: Deps) -> CycladesService:
    """The compute service from the node, its ``[cyclades]`` section and
    what it requires: ``IAuthenticator``, ``IQuotaHolder`` and
    ``IObjectStore`` (images are files in it); ``IVolumes`` (thin
    volumes) and ``IBlockStore`` (Glance uploads write their blocks there
    before the file is made from their hashmap) when a plugin provides
    them."""
    images = ImageRegistry(deps[IObjectStore], node.clock,
                           section.system_images_owner or SYSTEM_ACCOUNT,
                           blocks=deps.get(IBlockStore), formats=DiskFormats(node.reactor))
    charger = Charger(node.db, deps[IQuotaHolder], COMPONENT, node.membership)
    return CycladesService(node, section, charger,
                           deps[IAuthenticator], images,
                           public_base(node, section.public_url), deps.get(IVolumes))


@implementer(ILeaderDuty)
class BackendPolling:
    """The leader's event source for backends whose events are 'poll': one
    ``RapiJobPoller`` per such backend, the set re-read every minute."""

    name = "cyclades-rapi-poll"

    def __init__(self, svc: CycladesService):
        self._svc = svc
        self._pollers: dict[int, tuple[Any, RapiJobPoller]] = {}
        self._duty = PeriodicDuty(self.name, 60.0, svc.node.clock, self._refresh)
        self._leadership: Any = None

    def start(self, leadership: Any) -> None:
        self._leadership = leadership
        self._duty.start(leadership)

    async def _refresh(self) -> None:
        svc = self._svc
        backends = await svc.node.db.run("cyclades.poll_backends", store.backends_txn,
                                         events="poll")
        wanted = {b.id: b for b in backends if not b.offline}
        for backend_id in list(self._pollers):
            target, poller = self._pollers[backend_id]
            backend = wanted.get(backend_id)
            if backend is None or rapi_target(backend, svc.section.rapi_timeout) != target:
                del self._pollers[backend_id]
                await defer.maybeDeferred(poller.stop)
        for backend_id, backend in wanted.items():
            if backend_id in self._pollers:
                continue
            target = rapi_target(backend, svc.section.rapi_timeout)
            poller = RapiJobPoller(svc.node.clock, svc.rapi.client(target),
                                   backend.clustername, svc.publisher,
                                   interval=svc.section.poll_interval)
            self._pollers[backend_id] = (target, poller)
            poller.start(self._leadership)

    def stop(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await defer.maybeDeferred(self._duty.stop)
        pollers, self._pollers = self._pollers, {}
        for _, poller in pollers.values():
            await defer.maybeDeferred(poller.stop)


__all__ = ["CycladesService", "compute_image", "resources"]
