"""The compute service's registry of Ganeti clusters as other plugins see
it (``IComputeBackends``), and the demo content of the embedded default."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.logger import Logger
from zope.interface import implementer

from snfd.cyclades import store
from snfd.cyclades.images import ImageRegistry
from snfd.interfaces import IComputeBackends, IDatabase

log = Logger(namespace="snfd.cyclades")

# Image registrations of this account are system images unless configured.
SYSTEM_ACCOUNT = "00000000-0000-4000-8000-000000000000"

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


@implementer(IComputeBackends)
class BackendRegistry:
    """Registers clusters as compute backends and seeds a new cloud.

    @param images: the ``ImageRegistry`` the demo image is registered in.
    @param state_dir: where the demo image file is written once.
    """

    def __init__(self, db: IDatabase, images: ImageRegistry, state_dir: Path):
        self._db = db
        self._images = images
        self._state_dir = Path(state_dir)

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
        if await self._db.run("cyclades.flavors", store.flavors_txn, True):
            return
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
