"""The volume service (Archipelago) as a node runs it: the volume store
(under ``[archip] path``, or in a RADOS pool with ``volume_store =
rados``), its ``IVolumes`` for the compute service, its NBD
server on ``[archip] nbd_listen``, and the API Ganeti's ExtStorage provider
calls (``snfd.archip.api``, mounted at ``/archip``).

Garbage collection: the store's live maps name blocks of the node's block
store that no Pithos version may reference any more (an image deleted
after servers were cloned from it, a volume's own map blocks).  The
service registers ``VolumeStore.referenced`` with the storage service's
``IBlockReferences`` while it runs, so the collection spares them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from snfd.archip import mapfile
from snfd.archip.api import ArchipAPI
from snfd.archip.nbd import NbdServerFactory
from snfd.archip.volumes import VolumeStore
from snfd.config import ConfigError
from snfd.interfaces import (
    Deps,
    IAuthenticator,
    IBlockReferences,
    IBlockStore,
    IVolumes,
    VolumeInfo,
)
from snfd.web.auth import TokenAuth

log = Logger(namespace="snfd.archip")

HOLDER = "archip"


def volume_info(name: str, m: mapfile.MapV2) -> VolumeInfo:
    # A volume's own objects carry its name (``mapfile.owned_name``); a
    # clone of a snapshot names its origin's, which it shares.
    own = len(name) + 2 * 17
    owned = sum(1 for e in m.entries
                if e.archip and len(e.name) == own and e.name.startswith(name + "_"))
    zero = sum(1 for e in m.entries if e.is_zero)
    return VolumeInfo(name=name, size=m.size, read_only=m.read_only, epoch=m.epoch,
                      owned=owned, shared=len(m.entries) - owned - zero, zero=zero)


@implementer(IVolumes)
class Volumes:
    """``IVolumes`` over a ``VolumeStore``, and the ``VolumeOpener`` the
    NBD server serves.  Every call waits until the store is ready (the
    start-up sweep of what a crash left has ended)."""

    def __init__(self, store: VolumeStore, nbd: tuple[str, int, bool] = ("127.0.0.1", 0, False)):
        self.store = store
        self.block_size = store.block_size
        self.nbd = nbd
        self._ready_now = False
        self._waiting: list[defer.Deferred[None]] = []

    def set_ready(self) -> None:
        """The store may be used from now on."""
        self._ready_now = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    async def _ready(self) -> None:
        if not self._ready_now:
            d: defer.Deferred[None] = defer.Deferred()
            self._waiting.append(d)
            await d

    async def open(self, name: str, writable: bool) -> Any:
        await self._ready()
        return await self.store.open(name, writable)

    async def names(self) -> list[str]:
        await self._ready()
        return await self.store.names()

    async def create(self, name: str, size: int) -> VolumeInfo:
        await self._ready()
        return volume_info(name, await self.store.create(name, size))

    async def clone_hashmap(self, name: str, hashes: Sequence[str], image_size: int,
                            size: int | None = None) -> VolumeInfo:
        await self._ready()
        origin = mapfile.from_hashmap(hashes, image_size, self.block_size)
        return volume_info(name, await self.store.clone(name, origin, size))

    async def export_hashmap(self, name: str, hashes: Sequence[str],
                             image_size: int) -> VolumeInfo:
        await self._ready()
        origin = mapfile.from_hashmap(hashes, image_size, self.block_size)
        return volume_info(name, await self.store.export(name, origin))

    async def clone(self, name: str, origin: str, size: int | None = None) -> VolumeInfo:
        await self._ready()
        return volume_info(name, await self.store.clone(name, origin, size))

    async def snapshot(self, name: str, snapshot: str) -> VolumeInfo:
        await self._ready()
        return volume_info(snapshot, await self.store.snapshot(name, snapshot))

    async def hashmap(self, name: str) -> tuple[int, list[str]]:
        await self._ready()
        return await self.store.hashmap(name)

    async def grow(self, name: str, size: int) -> VolumeInfo:
        await self._ready()
        return volume_info(name, await self.store.grow(name, size))

    async def remove(self, name: str) -> None:
        await self._ready()
        await self.store.remove(name)

    async def info(self, name: str) -> VolumeInfo:
        await self._ready()
        return volume_info(name, await self.store.info(name))


def nbd_address(listen: str, advertised: str) -> tuple[str, int]:
    """Where clients reach the NBD server: ``advertised`` (``host:port``)
    when set, else the interface and port of the ``tcp:`` description
    ``listen``."""
    if advertised:
        host, _, port = advertised.rpartition(":")
        return host.strip("[]"), int(port)
    parts = listen.split(":")
    host = "127.0.0.1"
    for part in parts[2:]:
        if part.startswith("interface="):
            host = part.split("=", 1)[1] or host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, int(parts[1])


class ArchipService(service.Service):
    """Holds the store and serves it (see the module docstring)."""

    name = "archip"  # type: ignore[assignment]

    def __init__(self, node: Any, store: VolumeStore, references: Any,
                 authenticator: Any, nbd_listen: str, nbd_advertised: tuple[str, int],
                 tls: Any = None):
        self.node = node
        self.store = store
        self.volumes = Volumes(store, (*nbd_advertised, tls is not None))
        self.references = references
        self.authenticator = authenticator
        self.nbd_listen = nbd_listen
        self.nbd = NbdServerFactory(self.volumes, reactor=node.reactor, tls=tls)
        self.api = ArchipAPI(self.volumes, nbd_advertised, tls=tls is not None)

    def provided(self) -> dict[Any, Any]:
        return {IVolumes: self.volumes}

    def mounts(self) -> dict[str, Any]:
        return {"archip": TokenAuth(self.api.resource(), self.authenticator)}

    def listeners(self) -> list[Any]:
        return [(self.nbd_listen, self.nbd)]

    def startService(self) -> None:
        super().startService()
        self.references.add_holder(HOLDER, self.store.referenced)
        d = defer.ensureDeferred(self._sweep())
        d.addErrback(lambda f: log.failure("archip: sweeping the volume store failed", f))

    async def _sweep(self) -> None:
        try:
            removed = await self.store.sweep()
            if removed:
                log.info("archip: removed {n} files a crash left in {path}", n=removed,
                         path=self.store.where)
        finally:
            self.volumes.set_ready()

    def stopService(self) -> Any:
        self.references.remove_holder(HOLDER)
        return super().stopService()


def from_config(node: Any, section: Any, deps: Deps) -> ArchipService:
    """The volume service from the node, its ``[archip]`` section and what
    it requires: the block store, the block references and the
    authenticator.  Pointers and owned objects are kept under ``path``
    (``volume_store = file``) or in a RADOS pool (``rados``)."""
    blocks = deps[IBlockStore]
    place: Any
    if section.volume_store == "rados":
        place = rados_place(node, section, blocks.block_size)
    else:
        place = section.path or os.path.join(str(node.state_dir), "volumes")
    store = VolumeStore(place, blocks, node.reactor, node=node.node_id)
    return ArchipService(node, store, deps[IBlockReferences], deps[IAuthenticator],
                         section.nbd_listen, nbd_address(section.nbd_listen,
                                                         section.nbd_address),
                         nbd_tls(node.config) if section.nbd_tls else None)


def rados_place(node: Any, section: Any, block_size: int) -> Any:
    """The ``RadosVolumePlace`` of ``[archip] volume_store = rados``: in
    ``rados_pool`` (default ``[pithos] rados_pool``), over the connection
    ``[pithos]`` configures, which must keep its blocks on RADOS too (the
    maps are blocks, and every node must read them).  A config error
    naming the key when it cannot be opened."""
    from snfd.archip.rados_volumes import NoSuchPool, open_place
    from snfd.pithos.rados_blocks import RadosUnavailable

    config = node.config
    pithos = config.sections.get("pithos")
    if pithos is None or pithos.block_store != "rados":
        raise ConfigError(config.source, "archip", "volume_store",
                          "rados needs [pithos] block_store = rados (the maps are blocks"
                          " of the block store, which every node must reach)")
    pool = section.rados_pool or pithos.rados_pool
    try:
        return open_place(pithos.rados_conf, pool, node.reactor, block_size=block_size,
                          user=pithos.rados_user, keyring=pithos.rados_keyring,
                          namespace=section.rados_namespace)
    except NoSuchPool as e:
        raise ConfigError(config.source, "archip", "rados_pool", str(e)) from None
    except RadosUnavailable as e:
        raise ConfigError(config.source, "archip", "volume_store", str(e)) from None


def nbd_tls(config: Any) -> Any:
    """The NBD server's TLS context: the node's certificate and key; a
    config error naming the key when they are not there."""
    from twisted.internet import ssl

    cert, key = config.node.tls_certificate, config.node.tls_key
    if not cert or not key:
        raise ConfigError(config.source, "archip", "nbd_tls",
                          "needs [node] tls_certificate and tls_key")
    try:
        with open(cert, "rb") as c, open(key, "rb") as k:
            pem = c.read() + b"\n" + k.read()
        return ssl.PrivateCertificate.loadPEM(pem).options()
    except (OSError, ValueError, ssl.SSL.Error) as e:
        raise ConfigError(config.source, "archip", "nbd_tls",
                          f"cannot load [node] tls_certificate/tls_key: {e}") from None


__all__ = ["ArchipService", "Volumes", "from_config", "nbd_address", "rados_place",
           "volume_info"]
