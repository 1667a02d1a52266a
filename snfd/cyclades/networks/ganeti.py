"""The Ganeti side of networks (reference 3.3, 3.5): a network exists
in Ganeti (``snf-net-<id>``) on a backend from the first NIC there.

``ensure_on_backend`` submits a network add job (the network's first IPv4
subnet and gateway, its 3-octet MAC prefix, the flavor's tag) and a
connect job per node group (the flavor's mode and link) and records them
in ``cyclades_backend_networks``; instance jobs that need the network
depend on those jobs until ``network_event`` (the dispatcher's
``ganeti-network-status`` messages) sees them succeed.  A network without
an IPv4 subnet is not made in Ganeti (real Ganeti 3.0 refuses one): its
NICs get the flavor's mode and link directly (``nic_params``).
``add_nics``/``remove_nic`` change a server's NICs (instance modify jobs,
hotplugged on running KVM servers when enabled); ``remove_from_backend``
disconnects and removes a deleted network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import store as compute_store
from snfd.cyclades.allocator import rapi_target
from snfd.cyclades.model import GanetiBackend, Server
from snfd.cyclades.networks import pools, store
from snfd.cyclades.networks.model import NETWORK_PREFIX, Network, Port, Subnet
from snfd.ganeti.rapi import RapiError, RapiUnavailable

log = Logger(namespace="snfd.cyclades.networks.ganeti")


class GanetiNetworks:
    """Networks and NICs in Ganeti (see the module docstring).

    @param db: the node's ``IDatabase``.
    @param rapi_pool: a ``snfd.ganeti.rapi.RapiPool``.
    @param settings: the ``NetworkSettings`` (hotplug, RAPI timeout).
    """

    def __init__(self, db: Any, rapi_pool: Any, settings: Any):
        self._db = db
        self._rapi_pool = rapi_pool
        self.settings = settings

    @staticmethod
    def nic_params(port: Port) -> dict[str, Any]:
        """The Ganeti NIC of a port: on its Ganeti network when the network
        has an IPv4 subnet; else (real Ganeti refuses a network without
        one) with the flavor's mode and link directly."""
        nic: dict[str, Any] = {"name": port.nic_name, "mac": port.mac}
        ipv4 = port.address(4)
        if ipv4:
            nic.update(network=f"{NETWORK_PREFIX}{port.network_id}", ip=ipv4)
        elif port.network_mode:
            nic.update(mode=port.network_mode, link=port.network_link)
        return nic

    @staticmethod
    def ganeti_networks(ports: Iterable[Port]) -> list[int]:
        """The networks the NICs of ``ports`` need in Ganeti."""
        return [p.network_id for p in ports if p.address(4)]

    async def ensure_on_backend(self, backend: GanetiBackend,
                                network_ids: Iterable[int]) -> list[int]:
        """Make the networks exist on ``backend``; the jobs an instance
        job there must depend on."""
        depends: list[int] = []
        for network_id in dict.fromkeys(network_ids):
            depends += await self._ensure_one(backend, network_id)
        return depends

    async def _ensure_one(self, backend: GanetiBackend, network_id: int) -> list[int]:
        def claim(txn: Any) -> tuple[bool, list[int], Network | None, list[Subnet]]:
            network = store.network_txn(txn, network_id)
            row = store.backend_network_txn(txn, network_id, backend.id, for_update=True)
            if row is not None and row["operstate"] in ("ACTIVE", "PENDING"):
                return False, row["jobs"], network, []
            store.put_backend_network_txn(txn, network_id, backend.id, operstate="PENDING",
                                          jobs=[])
            return True, [], network, store.subnets_txn(txn, [network_id])

        mine, jobs, network, subnets = await self._db.run("cyclades.claim_network", claim)
        if not mine or network is None:
            return jobs
        rapi = self.rapi(backend)
        v4 = next((s for s in subnets if s.ipversion == 4), None)
        v6 = next((s for s in subnets if s.ipversion == 6), None)
        try:
            add = await rapi.create_network(
                network.ganeti_name, subnet=v4.cidr if v4 else None,
                gateway=v4.gateway if v4 else None,
                subnet6=v6.cidr if v6 else None, gateway6=v6.gateway if v6 else None,
                mac_prefix=pools.ganeti_mac_prefix(network.mac_prefix),
                tags=network.ganeti_tags)
            jobs = [add]
            for group in await rapi.groups():
                jobs.append(await rapi.connect_network(
                    network.ganeti_name, group, network.mode, network.link,
                    depends=[[add, ["success"]]]))
        except (RapiUnavailable, RapiError) as e:
            await self._db.run("cyclades.network_failed", store.put_backend_network_txn,
                               network_id, backend.id, operstate="ERROR",
                               backendlogmsg=str(e))
            raise errors.ServiceUnavailable(
                f"Network {network_id} could not be created on {backend.clustername}:"
                f" {e}") from None
        await self._db.run("cyclades.network_jobs", store.put_backend_network_txn,
                           network_id, backend.id, jobs=jobs, backendjobid=jobs[-1])
        return jobs

    async def remove_from_backend(self, network: Network, backend_id: int) -> None:
        backend: GanetiBackend | None = await self._db.run(
            "cyclades.backend", compute_store.backend_txn, backend_id)
        if backend is None:
            return
        rapi = self.rapi(backend)
        try:
            depends = []
            for group in await rapi.groups():
                depends.append([await rapi.disconnect_network(network.ganeti_name, group),
                                ["success", "error"]])
            job = await rapi.delete_network(network.ganeti_name, depends=depends or None)
        except (RapiUnavailable, RapiError) as e:
            log.warn("network {id}: not removed from {cluster}: {e}", id=network.id,
                     cluster=backend.clustername, e=str(e))
            return
        await self._db.run("cyclades.network_deleting", store.put_backend_network_txn,
                           network.id, backend.id, operstate="DELETING", backendjobid=job)

    async def add_nics(self, server: Server, ports: list[Port], waits: Sequence[int] = ()
                       ) -> None:
        """Add the ports' NICs to ``server`` (one modify job, after the
        jobs making their networks and those in ``waits``); on failure the
        ports are ERROR and the caller gets 503."""
        backend = await self.backend_of(server)
        try:
            depends = [*await self.ensure_on_backend(backend, self.ganeti_networks(ports)),
                       *waits]
            await self.rapi(backend).modify(
                server.instance_name,
                nics=[["add", -1, self.nic_params(p)] for p in ports],
                hotplug=self._hotplug(server, backend),
                **({"depends": [[j, ["success"]] for j in depends]} if depends else {}))
        except (RapiUnavailable, RapiError, errors.ServiceUnavailable) as e:
            for p in ports:
                await self._db.run("cyclades.port_error", store.update_port_txn, p.id,
                                   state="ERROR")
            reason = e.message if isinstance(e, errors.Fault) else str(e)
            raise errors.ServiceUnavailable(f"Could not connect server {server.id}:"
                                            f" {reason}") from None

    def _hotplug(self, server: Server, backend: GanetiBackend) -> bool:
        """Hotplug a NIC change: enabled, a running server, and a cluster
        whose hypervisor can (KVM; Ganeti refuses it on the others)."""
        return (self.settings.hotplug and server.operstate == "STARTED"
                and backend.hypervisor == "kvm")

    async def remove_nic(self, server: Server, port: Port) -> int:
        """Submit the removal of the port's NIC from ``server``; the job."""
        backend = await self.backend_of(server)
        job: int = await self.rapi(backend).modify(
            server.instance_name, nics=[["remove", port.nic_name, {}]],
            hotplug=self._hotplug(server, backend))
        return job

    async def backend_of(self, server: Server) -> GanetiBackend:
        backend: GanetiBackend | None = None
        if server.backend_id is not None:
            backend = await self._db.run("cyclades.backend", compute_store.backend_txn,
                                         server.backend_id)
        if backend is None:
            raise errors.ServiceUnavailable(f"Server {server.id} has no Ganeti backend.")
        return backend

    def rapi(self, backend: GanetiBackend) -> Any:
        """The RAPI client of ``backend``."""
        return self._rapi_pool.client(rapi_target(backend, self.settings.rapi_timeout))

    async def network_event(self, message: Mapping[str, Any]) -> str:
        """Apply a ``ganeti-network-status`` message to the network's row
        on that backend; returns what happened."""
        name = message.get("network")
        cluster = message.get("cluster")
        status = message.get("status")
        operation = message.get("operation")
        if not isinstance(name, str) or not name.startswith(NETWORK_PREFIX) \
                or not name[len(NETWORK_PREFIX):].isdigit():
            return "ignored: not our network"
        network_id = int(name[len(NETWORK_PREFIX):])
        if status not in ("success", "error", "canceled"):
            return f"ignored: {status}"

        def txn_(txn: Any) -> str:
            backend = compute_store.backend_txn(txn, clustername=str(cluster))
            if backend is None:
                return "ignored: unknown cluster"
            row = store.backend_network_txn(txn, network_id, backend.id, for_update=True)
            if row is None:
                return "ignored: not on that backend"
            if operation == "OP_NETWORK_REMOVE" and status == "success":
                store.drop_backend_network_txn(txn, network_id, backend.id)
                return "removed"
            if operation in ("OP_NETWORK_ADD", "OP_NETWORK_CONNECT"):
                if status != "success":
                    store.put_backend_network_txn(
                        txn, network_id, backend.id, operstate="ERROR", jobs=[],
                        backendjobstatus=str(status),
                        backendlogmsg=str(message.get("logmsg") or ""))
                    return "error"
                jobs = [j for j in row["jobs"] if j != message.get("jobId")]
                state = "ACTIVE" if not jobs and row["operstate"] == "PENDING" \
                    else row["operstate"]
                store.put_backend_network_txn(txn, network_id, backend.id, jobs=jobs,
                                              operstate=state)
                return state.lower()
            return "recorded"
        outcome: str = await self._db.run("cyclades.network_event", txn_)
        return outcome
