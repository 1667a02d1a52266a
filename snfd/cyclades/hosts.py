"""What Nova's administrators call hosts, services and hypervisors, for a
cloud made of Ganeti clusters and snfd nodes (read by ``admin_api``).

- A **hypervisor** is a Ganeti node (``GET /2/nodes?bulk=1`` of its
  cluster over RAPI, asked on each request): its memory, disk and CPUs,
  its primary instances (the servers on it, by their instance names).
  Its id is the node's Ganeti UUID.  A cluster that cannot be asked
  contributes no hypervisors (logged).
- A **compute service and host** is a Ganeti cluster (a backend): host
  = its cluster name, binary ``nova-compute``, zone ``nova``; disabling
  it drains the backend (no new servers), maintenance mode takes it
  offline (``snf-manage backend-modify`` sets the same flags).
- Each **snfd node** of the cluster, with each of its plugins, is a
  service too (``snfd-<plugin>``, zone ``internal``, host = the node's
  id), up while its heartbeat is fresh; these cannot be disabled here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.allocator import rapi_for
from snfd.cyclades.model import GanetiBackend, Server
from snfd.ganeti.rapi import RapiError, RapiUnavailable

log = Logger(namespace="snfd.cyclades")

COMPUTE = "nova-compute"
ZONE = "nova"
INTERNAL_ZONE = "internal"


@attrs.frozen
class Hypervisor:
    """One Ganeti node of a backend, and the servers whose instance is
    primary on it."""

    backend: GanetiBackend
    node: dict[str, Any]
    servers: tuple[Server, ...]

    @property
    def id(self) -> str:
        return str(self.node.get("uuid") or f"{self.backend.clustername}:{self.hostname}")

    @property
    def hostname(self) -> str:
        return str(self.node.get("name", ""))

    @property
    def up(self) -> bool:
        return not self.node.get("offline") and not self.backend.offline

    @property
    def enabled(self) -> bool:
        return not (self.node.get("drained") or self.backend.drained)


@attrs.frozen
class Service:
    """A row of ``os-services``: a backend's compute service or a plugin
    of an snfd node."""

    id: int
    binary: str
    host: str
    zone: str
    enabled: bool
    up: bool
    updated_at: Any
    backend: GanetiBackend | None = None


class Hosts:
    """See the module docstring.

    @param db: the node's ``IDatabase``.
    @param rapi_pool: the RAPI client pool.
    @param cluster_status: returns the cluster as ``GET /_cluster`` shows
        it (``Membership.status``), or ``None``: this node alone.
    """

    def __init__(self, db: Any, rapi_pool: Any,
                 cluster_status: Callable[[], Awaitable[dict[str, Any]]] | None = None):
        self._db = db
        self._rapi_pool = rapi_pool
        self._cluster_status = cluster_status

    async def backends(self) -> list[GanetiBackend]:
        found: list[GanetiBackend] = await self._db.run("cyclades.backends",
                                                        store.backends_txn)
        return found

    async def backend(self, host: str) -> GanetiBackend:
        """The backend whose cluster name is ``host``; 404 else."""
        for backend in await self.backends():
            if backend.clustername == host:
                return backend
        raise errors.NotFound(f"Compute host {host[:80]} could not be found.")

    async def servers_on(self, backend: GanetiBackend) -> list[Server]:
        """The live servers a backend holds."""
        found: list[Server] = await self._db.run(
            "cyclades.backend_servers", store.servers_txn, backend_id=backend.id)
        return found

    # -- hypervisors ------------------------------------------------------------

    async def hypervisors(self) -> list[Hypervisor]:
        """Every node of every backend that answers, with its servers."""

        async def of(backend: GanetiBackend) -> list[Hypervisor]:
            try:
                nodes = await rapi_for(self._rapi_pool, backend).nodes()
            except (RapiUnavailable, RapiError) as e:
                log.warn("backend {cluster}: no hypervisors listed ({error})",
                         cluster=backend.clustername, error=str(e))
                return []
            by_instance = {s.instance_name: s for s in await self.servers_on(backend)}
            return [Hypervisor(backend, node, tuple(
                by_instance[i] for i in node.get("pinst_list") or () if i in by_instance))
                for node in nodes if node.get("vm_capable", True)]

        found = await defer.gatherResults(
            [defer.ensureDeferred(of(b)) for b in await self.backends()])
        return [h for group in found for h in group]

    async def hypervisor(self, hypervisor_id: str) -> Hypervisor:
        for found in await self.hypervisors():
            if found.id == hypervisor_id:
                return found
        raise errors.NotFound(f"Hypervisor with ID {hypervisor_id[:80]} could not be found.")

    async def search(self, pattern: str) -> list[Hypervisor]:
        """The hypervisors whose host name holds ``pattern``; 404 for none."""
        found = [h for h in await self.hypervisors() if pattern in h.hostname]
        if not found:
            raise errors.NotFound(f"No hypervisor matching {pattern[:80]!r} could be found.")
        return found

    # -- services ---------------------------------------------------------------

    async def services(self) -> list[Service]:
        """The compute service of each backend (ids are backend ids), then
        each plugin of each snfd node (ids after them)."""
        backends = await self.backends()
        out = [Service(b.id, COMPUTE, b.clustername, ZONE, not b.drained, not b.offline,
                       b.stats_updated, backend=b) for b in backends]
        status = await self._cluster_status() if self._cluster_status is not None else None
        next_id = max((b.id for b in backends), default=0) + 1
        for member in (status or {}).get("members", []):
            for plugin in member.get("plugins", []):
                out.append(Service(next_id, f"snfd-{plugin}", str(member.get("id")),
                                   INTERNAL_ZONE, True, bool(member.get("alive")),
                                   member.get("last_heartbeat")))
                next_id += 1
        return out

    async def set_backend(self, host: str, **flags: bool) -> GanetiBackend:
        """Set a backend's ``drained`` or ``offline`` flag by its host name."""
        backend = await self.backend(host)
        changed: GanetiBackend | None = await self._db.run(
            "cyclades.backend_flags", store.update_backend_txn, backend.id, **flags)
        assert changed is not None
        return changed
