"""The storage service's lifecycle: builds the block store (and fills the
node's ``block_store`` slot with it), the backend and the HTTP API from the
node and the ``[pithos]`` section; registers ``pithos.diskspace`` with the
quota holder; names its mounts and its leader duties (garbage collection,
commission reconciliation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.cluster.periodic import PeriodicDuty
from snfd.interfaces import IAuthenticator
from snfd.node import public_base
from snfd.pithos.api import PithosAPI
from snfd.pithos.backend import Backend
from snfd.pithos.blocks import FileBlockStore
from snfd.quota import Resource
from snfd.quota.serials import Charger
from snfd.web.auth import TokenAuth

log = Logger(namespace="snfd.pithos")

COMPONENT = "pithos"
DISKSPACE = "pithos.diskspace"


def resources(diskspace_default: int) -> list[Resource]:
    """The resource this service charges (Synnefo's name and service type)."""
    return [Resource(DISKSPACE, "Pithos account diskspace", "bytes", "object-store",
                     "pithos_object-store", base_default=diskspace_default,
                     project_default=0)]


@implementer(IAuthenticator)
class NodeAuthenticator:
    """The node's authenticator, looked up per request: the identity
    service (or the remote one) may be wired after this plugin."""

    def __init__(self, node: Any):
        self._node = node

    async def authenticate(self, token: str) -> Any:
        if self._node.authenticator is None:
            raise errors.ServiceUnavailable(
                "No identity service: enable the identity plugin on this node or"
                " set [node] identity_url.")
        return await self._node.authenticator.authenticate(token)


class PithosService(service.MultiService):
    name = "pithos"  # type: ignore[assignment]

    def __init__(self, node: Any, section: Any):
        super().__init__()
        self.node = node
        self.section = section
        path = Path(section.block_path) if section.block_path else node.state_dir / "blocks"
        self.blocks = FileBlockStore(path, node.reactor)
        node.block_store = self.blocks
        self.public_url = public_base(node, section.public_url)
        self.authenticator = NodeAuthenticator(node)
        # The charger needs the quota holder, which may be wired later.
        self.backend = Backend(node.db, self.blocks, None, node.reactor)
        node.object_backend = self.backend
        self.charger: Charger | None = None
        self.api = PithosAPI(self.backend, self.blocks, node.reactor, self.public_url,
                             self.authenticator,
                             blocks_in_flight=section.upload_blocks_in_flight)

    def startService(self) -> None:
        super().startService()
        if self.node.quota_holder is not None:
            self.charger = Charger(self.node.db, self.node.quota_holder, COMPONENT)
            self.backend.charger = self.charger
        self._starting = defer.ensureDeferred(self._start())
        self._starting.addErrback(lambda f: log.failure("pithos start-up failed", f))

    async def _start(self) -> None:
        if self.node.quota_holder is not None:
            await self.node.quota_holder.register_resources(
                COMPONENT, resources(self.section.diskspace_default))

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._drain())

    async def _drain(self) -> None:
        """Let background work end: MD5s of hashmap uploads, and the
        commissions waiting to reach the quota holder."""
        await self.api.drain()
        if self.charger is not None:
            await self.charger.drain()

    def mounts(self) -> dict[str, Any]:
        from snfd.pithos.swift import AuthV1Resource, InfoResource

        api = self.api
        return {
            "object-store": TokenAuth(api.resource(), self.authenticator, allow_query=True),
            "public": api.public_resource(),
            "info": InfoResource(),
            "auth": AuthV1Resource(self.authenticator, self.public_url),
        }

    def duties(self) -> list[Any]:
        return [garbage_collection(self), commission_reconciliation(self)]


def garbage_collection(svc: PithosService) -> PeriodicDuty:
    """Removes blocks that no version references, and temporary files a
    crash left, older than ``[pithos] gc_grace``."""

    async def run() -> None:
        grace = svc.section.gc_grace
        scanned, removed = await svc.backend.collect_garbage(grace)
        now = svc.node.reactor.seconds()
        await svc.blocks.sweep_temporary(now - grace)
        log.info("pithos gc: {removed} of {scanned} blocks removed", removed=removed,
                 scanned=scanned)

    return PeriodicDuty("pithos-gc", svc.section.gc_interval or 3600.0, svc.node.reactor, run)


def commission_reconciliation(svc: PithosService, interval: float = 300.0,
                              grace: float = 600.0) -> PeriodicDuty:
    """Resolves quota commissions a crash left pending (see
    ``snfd.quota.serials``), sparing those of requests still in flight."""

    async def run() -> None:
        charger = svc.charger
        if charger is None:
            return
        accepted, rejected = await charger.reconcile(grace=grace)
        if accepted or rejected:
            log.info("pithos commissions: accepted {a}, rejected {r}", a=accepted,
                     r=rejected)

    return PeriodicDuty("pithos-commissions", interval, svc.node.reactor, run)
