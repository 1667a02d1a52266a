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

Nova's microversion 2.53 names hypervisors and services by UUID: a
node's is its Ganeti UUID (else one derived from its cluster and name), a
service's is derived from its binary and host, so both stay the same
across requests and restarts.  Deleting a compute service removes its
backend (refused while it holds servers).  The Ganeti job of a migration
still queued can be cancelled (``cancel_migration``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.allocator import rapi_for
from snfd.cyclades.model import GanetiBackend, Migration, Server
from snfd.ganeti.rapi import RapiError, RapiUnavailable

log = Logger(namespace="snfd.cyclades")

COMPUTE = "nova-compute"
ZONE = "nova"
INTERNAL_ZONE = "internal"
#: The namespace of the UUIDs derived for nodes and services (2.53).
_NAMESPACE = uuid.UUID("3f0c1a52-8a4e-4d3b-9b1e-6c2d7e5f9a10")


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in its usual text form."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def service_uuid(binary: str, host: str) -> str:
    """The UUID of the service ``binary`` on ``host`` (Nova 2.53's id)."""
    return str(uuid.uuid5(_NAMESPACE, f"service:{binary}@{host}"))


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
    def uuid(self) -> str:
        """Nova 2.53's id: the node's Ganeti UUID, else one derived from
        its cluster and name."""
        given = str(self.node.get("uuid") or "")
        if is_uuid(given):
            return given
        return str(uuid.uuid5(_NAMESPACE, f"node:{self.backend.clustername}/{self.hostname}"))

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

    @property
    def uuid(self) -> str:
        return service_uuid(self.binary, self.host)


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

    async def hypervisor(self, hypervisor_id: str, by_uuid: bool = False) -> Hypervisor:
        """A hypervisor by its id (``by_uuid``: its 2.53 UUID); 404 else."""
        for found in await self.hypervisors():
            if (found.uuid if by_uuid else found.id) == hypervisor_id:
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

    async def remove_backend(self, backend: GanetiBackend) -> None:
        """Remove a backend (its compute service); 409 while it holds live
        servers (``snf-manage backend-remove``)."""
        live: int = await self._db.run("cyclades.remove_backend", store.remove_backend_txn,
                                       backend.id)
        if live:
            raise errors.Conflict("Unable to delete compute service that is hosting"
                                  f" instances ({live} on {backend.clustername}). Migrate"
                                  " or delete the instances first.")

    async def cancel_migration(self, migration: Migration) -> bool:
        """Cancel the Ganeti job of a migration while it is still queued;
        whether Ganeti did (the migration then shows ``cancelled``; a job
        that has started cannot be stopped)."""
        if migration.job_id is None:
            return False
        backend = await self.backend(migration.source_compute)
        try:
            done, _ = await rapi_for(self._rapi_pool, backend).cancel_job(migration.job_id)
        except (RapiUnavailable, RapiError) as e:
            raise errors.ServiceUnavailable(f"Ganeti cluster {backend.clustername} could not"
                                            f" cancel job {migration.job_id}: {e}") from e
        if done:
            await self._db.run("cyclades.cancel_migration", store.cancel_migration_txn,
                               migration.id)
        return done

    async def set_backend(self, host: str, **flags: bool) -> GanetiBackend:
        """Set a backend's ``drained`` or ``offline`` flag by its host name."""
        backend = await self.backend(host)
        changed: GanetiBackend | None = await self._db.run(
            "cyclades.backend_flags", store.update_backend_txn, backend.id, **flags)
        assert changed is not None
        return changed
