"""The storage service's lifecycle: ``from_config`` builds the block store,
the backend, the object store other services use and the HTTP API from the
node, the ``[pithos]`` section and the identity interfaces; it registers
``pithos.diskspace`` with the quota holder, listens for changes of
container settings (its cache of them), and names its mounts and its
leader duties (garbage collection, commission reconciliation, the sweep
of expired objects)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from snfd.clock import AgeCutoffs, FlooredWallClock
from snfd.cluster.periodic import PeriodicDuty
from snfd.config import ConfigError, Section
from snfd.db.notify import Listener
from snfd.interfaces import (
    Deps,
    IAuthenticator,
    IBlockReferences,
    IBlockStore,
    IObjectStore,
    IQuotaHolder,
)
from snfd.node import Node, public_base
from snfd.pithos.api import PithosAPI
from snfd.pithos.backend import Backend
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.charges import COMPONENT, DISKSPACE
from snfd.pithos.expiry import expiry_duty
from snfd.pithos.layout import VersionMount
from snfd.pithos.objects import PithosObjects
from snfd.pithos.policies import StoragePolicies, file_places, rados_places
from snfd.pithos.requests import swift_style
from snfd.pithos.settings_cache import SettingsCache
from snfd.pithos.store import CONTAINERS_CHANNEL
from snfd.quota import Resource
from snfd.quota.serials import Charger
from snfd.web.auth import TokenAuth

log = Logger(namespace="snfd.pithos")



def resources(diskspace_default: int) -> list[Resource]:
    """The resource this service charges (Synnefo's name and service type)."""
    return [Resource(DISKSPACE, "Pithos account diskspace", "bytes", "object-store",
                     "pithos_object-store", base_default=diskspace_default,
                     project_default=0)]


class PithosService(service.MultiService):
    """The object store: provides ``IBlockStore`` (``blocks``),
    ``IObjectStore`` (``objects``) and ``IBlockReferences`` (the holders
    its garbage collection spares) to the other services."""

    name = "pithos"  # type: ignore[assignment]

    def __init__(self, node: Any, section: Any, blocks: IBlockStore, charger: Charger,
                 authenticator: IAuthenticator, public_url: str,
                 policies: StoragePolicies | None = None):
        super().__init__()
        self.node = node
        self.section = section
        self.policies = policies if policies is not None else StoragePolicies.single(blocks)
        self.blocks = self.policies.primary.blocks
        self.public_url = public_url
        self.authenticator = authenticator
        self.charger = charger
        # Container settings are kept only while their changes reach this
        # node (snfd.pithos.settings_cache).
        self.settings = SettingsCache(usable=lambda: self.listener.listening)
        self.listener = Listener(node.reactor, node.dsn, CONTAINERS_CHANNEL,
                                 self.settings.invalidate, self.settings.clear)
        self.backend = Backend(node.db, self.blocks, charger, node.clock,
                               policies=self.policies, settings=self.settings)
        self.objects = PithosObjects(self.backend)
        reads = self.policies.view() if len(self.policies) > 1 else self.blocks
        self.api = PithosAPI(self.backend, reads, node.reactor, public_url, authenticator,
                             blocks_in_flight=section.upload_blocks_in_flight)
        self.storage_path = getattr(section, "storage_url_path", "") or "object-store/v1"
        self.api.storage_path = self.storage_path

    def provided(self) -> dict[Any, Any]:
        return {IBlockStore: self.blocks, IObjectStore: self.objects,
                IBlockReferences: self.backend.references}

    def startService(self) -> None:
        super().startService()
        self.listener.start()
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addErrback(lambda f: log.failure("pithos start-up failed", f))

    async def _start(self) -> None:
        await self.charger.holder.register_resources(
            COMPONENT, resources(self.section.diskspace_default))

    def stopService(self) -> defer.Deferred[None]:
        self.listener.stop()
        super().stopService()
        return defer.ensureDeferred(self._drain())

    async def _drain(self) -> None:
        """Let background work end: MD5s of hashmap uploads, and the
        commissions waiting to reach the quota holder."""
        await self.api.drain()
        await self.charger.drain()

    def mounts(self) -> dict[str, Any]:
        from snfd.pithos.swift import AuthV1Resource, InfoResource

        api = self.api
        return {
            "object-store": TokenAuth(api.resource(), self.authenticator, allow_query=True,
                                      fault_style=swift_style),
            # Swift's own layout: the same API at /v1/<account>.
            "v1": TokenAuth(VersionMount(api.resource()), self.authenticator,
                            allow_query=True, fault_style=swift_style),
            "public": api.public_resource(),
            "info": InfoResource(api.info),
            "auth": AuthV1Resource(self.authenticator, self.public_url,
                                   storage_path=self.storage_path),
        }

    def duties(self) -> list[Any]:
        return [garbage_collection(self), commission_reconciliation(self),
                expiry_duty(self.backend, self.node.clock)]


def from_config(node: Node, section: Section, deps: Deps) -> PithosService:
    """The storage service from the node, its ``[pithos]`` section and what
    it requires: ``IAuthenticator`` and ``IQuotaHolder``.  Each storage
    policy's block store is a ``FileBlockStore`` or, with ``block_store =
    rados``, a ``RadosBlockStore`` (``snfd.pithos.policies``).

    ``block_fallback`` gives a policy's store a read-only fallback
    (``FallbackBlocks``), while its blocks move to a new store.

    Block ages are stamped with a ``FlooredWallClock``: a block stored or
    refreshed after the wall clock was set back does not look older than
    the blocks before it (see ``garbage_collection``)."""
    stamps = FlooredWallClock(node.clock, node.monotonic)

    def fallback(directory: str, place: str) -> FileBlockStore:
        return _fallback_store(node, directory, place, section.block_store, stamps)
    if section.block_store == "rados":
        policies = StoragePolicies.from_config(
            section, lambda namespace: _rados_store(node, section, namespace, stamps),
            rados_places(section), fallback)
    else:
        policies = StoragePolicies.from_config(
            section, lambda path: FileBlockStore(path, node.reactor, clock=stamps),
            file_places(section, node.state_dir), fallback)
    return PithosService(node, section, policies.primary.blocks,
                         Charger(node.db, deps[IQuotaHolder], COMPONENT, node.membership),
                         deps[IAuthenticator], public_base(node, section.public_url),
                         policies)


def _fallback_store(node: Node, directory: str, place: str, kind: str,
                    stamps: Any) -> FileBlockStore:
    """The filesystem store a ``block_fallback`` entry names (relative:
    below the state directory); it must exist, and not be the policy's
    own store."""
    path = os.path.abspath(Path(node.state_dir) / Path(directory).expanduser())
    if not os.path.isdir(path):
        raise ConfigError("config", "pithos", "block_fallback", f"no directory {path}")
    if kind == "file" and path == place:
        raise ConfigError("config", "pithos", "block_fallback",
                          f"{path} is the store itself, not the one its blocks come from")
    return FileBlockStore(path, node.reactor, clock=stamps)


def _rados_store(node: Node, section: Section, namespace: str, stamps: Any) -> Any:
    from snfd.pithos.rados_blocks import RadosUnavailable, open_store

    if not section.rados_conf:
        raise ConfigError("config", "pithos", "rados_conf",
                          "block_store = rados needs the cluster's ceph.conf")
    try:
        return open_store(section.rados_conf, section.rados_pool, node.reactor,
                          user=section.rados_user, keyring=section.rados_keyring,
                          namespace=namespace, clock=stamps)
    except RadosUnavailable as e:
        raise ConfigError("config", "pithos", "block_store", str(e)) from None


def garbage_collection(svc: PithosService) -> PeriodicDuty:
    """Removes blocks that no version references, and temporary files a
    crash left, older than ``[pithos] gc_grace``.

    The grace is what spares a block an upload or a volume map is about to
    reference, so a wall clock set forward must not age every block at once:
    the cutoff comes from ``AgeCutoffs``, which follows a jump forward only
    once the grace has passed after it (and the blocks' stamps,
    ``from_config``, do not follow a jump back).  Both hold within this
    process; nodes sharing a block store need clocks that agree to well
    within the grace."""
    cutoffs = AgeCutoffs(svc.node.clock, svc.node.monotonic)

    async def run() -> None:
        grace = svc.section.gc_grace
        cutoff = cutoffs.cutoff(grace)
        scanned, removed = await svc.backend.collect_garbage(grace, cutoff=cutoff)
        for policy in svc.policies:
            await policy.blocks.sweep_temporary(cutoff)
        log.info("pithos gc: {removed} of {scanned} blocks removed", removed=removed,
                 scanned=scanned)

    return PeriodicDuty("pithos-gc", svc.section.gc_interval or 3600.0, svc.node.clock, run)


def commission_reconciliation(svc: PithosService, interval: float = 30.0,
                              grace: float = 600.0) -> PeriodicDuty:
    """Resolves quota commissions a crash left pending (see
    ``snfd.quota.serials``), sparing those of requests still in flight."""

    async def run() -> None:
        accepted, rejected = await svc.charger.reconcile(grace=grace)
        if accepted or rejected:
            log.info("pithos commissions: accepted {a}, rejected {r}", a=accepted,
                     r=rejected)

    return PeriodicDuty("pithos-commissions", interval, svc.node.clock, run)
