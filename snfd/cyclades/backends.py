"""The compute service's registry of Ganeti clusters as other plugins see
it (``IComputeBackends``), and the demo content of the embedded default:
flavors, a public system image, and a public network with a floating-IP
pool, an IPv4 and an IPv6 subnet (documentation ranges)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.logger import Logger
from zope.interface import implementer

from snfd.cyclades import store
from snfd.cyclades.images import ImageRegistry
from snfd.cyclades.networks import store as network_store
from snfd.cyclades.networks.model import Network
from snfd.cyclades.networks.service import Networks
from snfd.interfaces import IComputeBackends, IDatabase

log = Logger(namespace="snfd.cyclades")

# Image registrations of this account are system images unless configured.
SYSTEM_ACCOUNT = "00000000-0000-4000-8000-000000000000"

DEMO_FLAVORS = ((1, 1024, 10), (2, 2048, 20), (4, 4096, 40))
DEMO_IMAGE_SIZE = 8 << 20
DEMO_IMAGE = "snfd-demo-linux.diskdump"
DEMO_NETWORK = "public"
THIN_TEMPLATE = "ext_archipelago"
#: The demo network's subnets: TEST-NET-1 (RFC 5737) and a /64 of the IPv6
#: documentation prefix (RFC 3849), SLAAC.
DEMO_SUBNETS = (
    {"cidr": "192.0.2.0/24", "ip_version": 4, "gateway_ip": "192.0.2.1",
     "name": "public-ipv4"},
    {"cidr": "2001:db8:100::/64", "ip_version": 6, "gateway_ip": "2001:db8:100::1",
     "name": "public-ipv6"},
)


def demo_image_bytes(size: int = DEMO_IMAGE_SIZE) -> bytes:
    """A deterministic stand-in disk image (the simulator never boots it)."""
    out = bytearray()
    seed = b"snfd demo image"
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed * 128
    return bytes(out[:size])


@implementer(IComputeBackends)
class BackendRegistry:
    """Registers clusters as compute backends and seeds a new cloud.

    @param images: the ``ImageRegistry`` the demo image is registered in.
    @param state_dir: where the demo image file is written once.
    @param networks: the network service the demo network is made with
        (none: no demo network).
    """

    def __init__(self, db: IDatabase, images: ImageRegistry, state_dir: Path,
                 networks: Networks | None = None, thin: bool = False):
        self._db = db
        self._images = images
        self._state_dir = Path(state_dir)
        self._networks = networks
        self._thin = thin

    async def register_backend(self, clustername: str, rapi_url: str, username: str,
                               password: str, certificate: str, hypervisor: str,
                               disk_templates: Any, events: str) -> None:
        settings = dict(username=username, password=password, certificate=certificate,
                        hypervisor=hypervisor, disk_templates=tuple(disk_templates),
                        events=events)
        found = await self._db.run("cyclades.backend", store.backend_txn,
                                   clustername=clustername)
        if found is None:
            await self._db.run("cyclades.add_backend", store.add_backend_txn, clustername,
                               rapi_url, **settings)
        else:
            await self._db.run("cyclades.update_backend", store.update_backend_txn, found.id,
                               rapi_url=rapi_url, **settings)

    async def seed_demo(self) -> None:
        flavors = await self._db.run("cyclades.flavors", store.flavors_txn, True)
        if not flavors:
            await self._seed_flavors_and_image()
        if self._thin and not any(f.disk_template == THIN_TEMPLATE for f in flavors):
            # The volume service runs: flavors whose disks are thin volumes.
            for cpu, ram, disk in DEMO_FLAVORS:
                await self._db.run("cyclades.create_flavor", store.create_flavor_txn, cpu,
                                   ram, disk, THIN_TEMPLATE)
        if self._networks is not None:
            await self._seed_public_network(self._networks)

    async def _seed_public_network(self, networks: Networks) -> None:
        """The demo public network, on a cloud without a public network; one
        that lacks a subnet (a start interrupted half-way) gets it."""
        public: list[Network] = await self._db.run(
            "cyclades.public_networks", network_store.networks_txn, public=True)
        network = next((n for n in public if n.name == DEMO_NETWORK), None)
        if network is None:
            if public:
                return   # an operator's public network: theirs to configure
            network = await networks.admin_create_network(
                name=DEMO_NETWORK, flavor="CUSTOM", public=True, floating_ip_pool=True,
                description="The embedded default's public network (documentation"
                            " ranges)")
            log.info("created demo public network {id}", id=network.id)
        have = {s.ipversion for s in await networks.subnets("", admin=True)
                if s.network_id == network.id}
        for body in DEMO_SUBNETS:
            if body["ip_version"] not in have:
                await networks.create_subnet("", network.id, body, admin=True)

    async def _seed_flavors_and_image(self) -> None:
        for cpu, ram, disk in DEMO_FLAVORS:
            await self._db.run("cyclades.create_flavor", store.create_flavor_txn, cpu, ram,
                               disk, "file")
        path = self._state_dir / DEMO_IMAGE
        if not path.exists():
            await threads.deferToThread(path.write_bytes, demo_image_bytes())
        image = await self._images.register_file(
            self._images.system_owner, path, "images", {
                "name": "Demo Linux", "disk_format": "diskdump", "is_public": True,
                "properties": {"OS": "linux", "OSFAMILY": "linux", "ROOT_PARTITION": "1",
                               "DESCRIPTION": "A small demo image for the simulated cluster"}})
        log.info("registered demo image {id}", id=image.id)
