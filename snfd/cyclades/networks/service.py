"""What requests do to networks, subnets, ports and floating IPs
(reference 3.3, 3.7), and the Ganeti side of a network.

**Ownership.**  A user sees public and shared networks and its own; it
sees and changes only its own subnets, ports and floating IPs (404 for
anyone else's).  Administrators see and change everything.

**Quota.**  A private network charges ``cyclades.network.private`` and a
floating IP ``cyclades.floating_ip`` (one each, to the project the request
names or the token's), through the commission runner: the row and the
accepted serial are written in one transaction; a refusal is 413 and
leaves nothing behind.  Deleting gives it back (a forced commission).

**Pools.**  MAC prefixes and bridges come from ``store.take_*_index``,
addresses from ``store.take_address_txn``: each under a lock and a unique
index, so concurrent requests never get the same value.  An exhausted
pool is 409 (``Conflict``), with nothing allocated.

**Ports and servers.**  A port with a ``device_id`` is a NIC of that
server: Ganeti NIC ``snf-nic-<port>`` on network ``snf-net-<network>``
with the port's MAC and IPv4 address.  Creating one adds the NIC (an
instance modify job, hotplugged on a running server); deleting one removes
it, and the port (with its addresses) goes when Ganeti reports the NIC
gone (``sync_ports_txn``, from the update path); until then it is
``DELETING`` and hidden.  A server's ports go with the server.

**Ganeti.**  What networks and NICs are in Ganeti is ``ganeti``'s
(``self.ganeti``): networks made on a backend on demand, NICs added and
removed by instance modify jobs, network job events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from twisted.logger import Logger

from snfd import errors
from snfd.cyclades import store as compute_store
from snfd.cyclades.model import Server
from snfd.cyclades.networks import pools, store
from snfd.cyclades.networks.ganeti import GanetiNetworks
from snfd.cyclades.networks.model import FLAVORS, IP, Network, Port, Subnet
from snfd.cyclades.networks.security_groups import SecurityGroups
from snfd.cyclades.requests import NicRequest
from snfd.ganeti.rapi import RapiError, RapiUnavailable
from snfd.quota import user_and_project
from snfd.quota.charged import Attempt, run_charged
from snfd.quota.serials import Charger, decide_txn

log = Logger(namespace="snfd.cyclades.networks")

PRIVATE = "cyclades.network.private"
FLOATING = "cyclades.floating_ip"
ANY_PUBLIC = "SNF:ANY_PUBLIC"
FIREWALL_PROFILES = ("ENABLED", "DISABLED", "PROTECTED")


@attrs.frozen
class NetworkSettings:
    """What an operator sets for networks (``[network]``).

    ``api_flavors``: the flavors users may create.  ``max_prefix``: per IP
    version, the largest subnet users may ask for.  ``default_server_networks``:
    what a server that names no network is connected to (network ids, or
    ``SNF:ANY_PUBLIC``: the first public network); empty: one NIC on the
    cluster's default link, without a port.  ``hotplug``: NICs are added to
    and removed from running servers.
    """

    mac_prefix_base: str = "aa:00:0"
    mac_prefix_pool_size: int = 4096
    default_bridge: str = "br0"
    filtered_bridge: str = "prv0"
    bridge_base: str = "prv"
    bridge_pool_size: int = 20
    api_flavors: tuple[str, ...] = ("MAC_FILTERED",)
    max_prefix: Mapping[int, int] = attrs.Factory(lambda: {4: 22, 6: 64})
    default_server_networks: tuple[str, ...] = ()
    hotplug: bool = True
    rapi_timeout: float = 30.0


@attrs.frozen
class PortRequest:
    """A checked ``POST /ports`` body."""

    network_id: int
    name: str = ""
    description: str = ""
    device_id: int | None = None
    mac: str | None = None
    #: ``(subnet id or None, address or None)`` per entry; None: the default
    fixed_ips: tuple[tuple[int | None, str | None], ...] | None = None
    security_groups: tuple[str, ...] | None = None
    port_security: bool = True
    admin_state_up: bool = True
    project: str | None = None


def _provisions(user: str, project: str, resource: str, quantity: int) -> list[Any]:
    return user_and_project(user, project, resource, quantity)


class Networks:
    """The network effect path (see the module docstring)."""

    def __init__(self, db: Any, rapi_pool: Any, charger: Charger, clock: Any,
                 settings: NetworkSettings | None = None):
        self._db = db
        self._rapi_pool = rapi_pool
        self._charger = charger
        self._clock = clock
        self.settings = settings or NetworkSettings()
        self.ganeti = GanetiNetworks(db, rapi_pool, self.settings)
        self.security = SecurityGroups(db, self.ganeti.rapi)

    # -- reads --------------------------------------------------------------------

    async def network(self, user: str, network_id: int, admin: bool = False) -> Network:
        """A network the user may see; 404 otherwise."""
        found: Network | None = await self._db.run("cyclades.network", store.network_txn,
                                                   network_id)
        if found is None or not found.visible_to(user, admin):
            raise errors.NotFound(f"Network {network_id} could not be found.")
        return found

    async def networks(self, user: str, admin: bool = False) -> list[Network]:
        found: list[Network] = await self._db.run(
            "cyclades.networks", store.networks_txn, user=None if admin else user)
        return found

    async def subnets(self, user: str, admin: bool = False) -> list[Subnet]:
        visible = {n.id for n in await self.networks(user, admin)}
        found: list[Subnet] = await self._db.run("cyclades.subnets", store.subnets_txn,
                                                 visible)
        return found

    async def subnet(self, user: str, subnet_id: int, admin: bool = False) -> Subnet:
        found: Subnet | None = await self._db.run("cyclades.subnet", store.subnet_txn,
                                                  subnet_id)
        if found is not None:
            try:
                await self.network(user, found.network_id, admin)
                return found
            except errors.NotFound:
                pass
        raise errors.NotFound(f"Subnet {subnet_id} could not be found.")

    async def ports(self, user: str, admin: bool = False,
                    device_id: int | None = None) -> list[Port]:
        found: list[Port] = await self._db.run(
            "cyclades.ports", store.ports_txn, user=None if admin else user,
            device_ids=None if device_id is None else [device_id])
        return [p for p in found if p.state != "DELETING"]

    async def port(self, user: str, port_id: int, admin: bool = False) -> Port:
        found: Port | None = await self._db.run("cyclades.port", store.port_txn, port_id)
        if found is None or found.state == "DELETING" or not (admin or found.userid == user):
            raise errors.NotFound(f"Port {port_id} could not be found.")
        return found

    async def server_ports(self, server_ids: Iterable[int]) -> dict[int, list[Port]]:
        """The live ports of these servers, by server id."""
        found: list[Port] = await self._db.run("cyclades.server_ports", store.ports_txn,
                                               device_ids=list(server_ids))
        out: dict[int, list[Port]] = {}
        for p in found:
            if p.device_id is not None and p.state != "DELETING":
                out.setdefault(p.device_id, []).append(p)
        return out

    async def floating_ips(self, user: str, admin: bool = False) -> list[IP]:
        found: list[IP] = await self._db.run("cyclades.floating_ips", store.ips_txn,
                                             floating=True, user=None if admin else user)
        return found

    async def floating_ip(self, user: str, ip_id: int, admin: bool = False) -> IP:
        found: IP | None = await self._db.run("cyclades.floating_ip", store.ip_txn, ip_id)
        if found is None or not found.floating or not (admin or found.userid == user):
            raise errors.NotFound(f"Floating IP {ip_id} could not be found.")
        return found

    async def quota(self, user: str, project: str) -> dict[str, tuple[int, int]]:
        """The user's holdings in ``project`` of the network resources:
        resource -> (limit, usage)."""
        holdings = await self._charger.holder.quotas(
            holders=[f"user:{user}"], sources=[f"project:{project}"],
            resources=[PRIVATE, FLOATING])
        return {h.resource: (h.limit, h.usage) for h in holdings}

    # -- networks ---------------------------------------------------------------------

    def _flavor_values(self, flavor: str) -> dict[str, Any]:
        if flavor not in FLAVORS:
            raise errors.BadRequest(f"Unknown network type {flavor!r}: one of"
                                    f" {', '.join(sorted(FLAVORS))}.")
        mode, link_kind, _, _ = FLAVORS[flavor]
        s = self.settings
        link = {"bridge": s.default_bridge, "filtered": s.filtered_bridge}.get(link_kind, "")
        return {"flavor": flavor, "mode": mode, "link": link,
                "mac_prefix": pools.mac_prefix(s.mac_prefix_base, 0)}

    def _allocate_txn(self, txn: Any, values: dict[str, Any],
                      chosen_mac: bool = False) -> dict[str, Any]:
        """Fill the pooled parts of a new network (409 when a pool is
        empty); ``chosen_mac``: an administrator chose its MAC prefix."""
        s = self.settings
        _, link_kind, pooled_mac, _ = FLAVORS[values["flavor"]]
        if pooled_mac and not chosen_mac and values.get("mac_index") is None:
            index = store.take_mac_index_txn(txn, s.mac_prefix_base, s.mac_prefix_pool_size)
            if index is None:
                raise errors.Conflict("No MAC prefix is free for a new network; ask an"
                                      " administrator.")
            values.update(mac_index=index, mac_prefix=pools.mac_prefix(s.mac_prefix_base, index))
        if link_kind == "pool" and not values.get("link"):
            index = store.take_link_index_txn(txn, s.bridge_pool_size)
            if index is None:
                raise errors.Conflict("No bridge is free for a new network; ask an"
                                      " administrator.")
            values.update(link_index=index, link=pools.bridge(s.bridge_base, index))
        return values

    async def create_network(self, user: str, project: str, *, name: str = "",
                             flavor: str = "MAC_FILTERED", description: str = "",
                             tags: Sequence[str] = ()) -> Network:
        """A private network of ``user`` charged to ``project``."""
        if flavor not in self.settings.api_flavors:
            raise errors.Forbidden(f"Networks of type {flavor} cannot be created through"
                                   f" the API; allowed: {', '.join(self.settings.api_flavors)}.")
        values = self._flavor_values(flavor)
        values.update(name=name, description=description, userid=user, project=project,
                      tags=tuple(tags))

        async def create(attempt: Attempt) -> Network:
            def txn_(txn: Any) -> Network:
                network = store.insert_network_txn(txn, **self._allocate_txn(txn, values))
                if attempt.serial is not None:
                    decide_txn(txn, attempt.component, attempt.serial, True)
                return network
            network: Network = await self._db.run("cyclades.create_network", txn_)
            return network

        return await run_charged(self._charger, create,
                                 _provisions(user, project, PRIVATE, 1),
                                 name=f"cyclades: create network {name!r} for {user}")

    async def admin_create_network(self, *, name: str, flavor: str, public: bool = False,
                                   external: bool = False, floating_ip_pool: bool = False,
                                   shared: bool = False, link: str | None = None,
                                   mac_prefix: str | None = None, user: str | None = None,
                                   project: str | None = None, description: str = "",
                                   ) -> Network:
        """An administrator's network; it is made in Ganeti on a backend
        when the first NIC there needs it.  No quota is charged."""
        values = self._flavor_values(flavor)
        if link:
            values["link"] = link
        if mac_prefix:
            try:
                values["mac_prefix"] = pools.check_mac_base(mac_prefix)
            except ValueError as e:
                raise errors.BadRequest(str(e)) from None
        if not values["link"] and FLAVORS[flavor][1] == "table":
            values["link"] = ""   # named after the network once it has an id
        values.update(name=name, public=public, external=external or public,
                      floating_ip_pool=floating_ip_pool, shared=shared, userid=user,
                      project=project, description=description)

        def txn_(txn: Any) -> Network:
            network = store.insert_network_txn(
                txn, **self._allocate_txn(txn, values, chosen_mac=bool(mac_prefix)))
            if not network.link:
                txn.execute("UPDATE cyclades_networks SET link = %s WHERE id = %s",
                            (f"snf_rt_{network.id}", network.id))
                found = store.network_txn(txn, network.id)
                assert found is not None
                network = found
            return network
        network: Network = await self._db.run("cyclades.admin_create_network", txn_)
        return network

    async def update_network(self, user: str, network_id: int, admin: bool = False,
                             **fields: Any) -> Network:
        """Change a network's name/description/tags (its owner), or
        ``shared``/``external`` (administrators)."""
        network = await self.network(user, network_id, admin)
        if not admin and network.userid != user:
            raise errors.Forbidden(f"Network {network_id} is not yours to change.")
        if not admin and set(fields) & {"shared", "external", "floating_ip_pool", "public"}:
            raise errors.Forbidden("Only administrators change shared or router:external.")
        updated: Network | None = await self._db.run(
            "cyclades.update_network", lambda txn: store.update_network_txn(
                txn, network_id, **fields))
        assert updated is not None
        return updated

    async def delete_network(self, user: str, network_id: int, admin: bool = False) -> None:
        """Delete a network without ports or floating IPs (409 otherwise);
        it is removed from the backends it exists on."""
        network = await self.network(user, network_id, admin)
        if not admin and network.userid != user:
            raise errors.Forbidden(f"Network {network_id} is not yours to delete.")
        charge = (_provisions(network.userid, network.project, PRIVATE, -1)
                  if not network.public and network.userid and network.project else [])
        # An administrator's delete releases the floating IPs nobody attached.
        released = [ip for ip in await self.floating_ips(user, True)
                    if ip.network_id == network_id] if admin else []
        if any(ip.port_id is not None for ip in released):
            raise errors.Conflict(f"Network {network_id} has attached floating IPs;"
                                  " detach them first.")
        for ip in released:
            charge += _provisions(ip.userid, ip.project, FLOATING, -1)

        async def delete(attempt: Attempt) -> list[dict[str, Any]]:
            def txn_(txn: Any) -> list[dict[str, Any]]:
                locked = store.network_txn(txn, network_id, for_update=True)
                if locked is None:
                    raise errors.NotFound(f"Network {network_id} could not be found.")
                if store.count_ports_txn(txn, network_id):
                    raise errors.Conflict(f"Unable to complete operation on network"
                                          f" {network_id}: there are one or more ports"
                                          " still in use on the network.")
                held = [ip for s in store.subnets_txn(txn, [network_id])
                        for ip in store.ips_txn(txn, subnet_id=s.id) if ip.floating]
                if {ip.id for ip in held} != {ip.id for ip in released}:
                    raise errors.Conflict(f"Network {network_id} has floating IPs;"
                                          " release them first.")
                for ip in held:
                    store.delete_ip_txn(txn, ip.id)
                store.update_network_txn(txn, network_id, deleted=True, state="DELETED")
                for s in store.subnets_txn(txn, [network_id]):
                    store.delete_subnet_txn(txn, s.id)
                if attempt.serial is not None:
                    decide_txn(txn, attempt.component, attempt.serial, True)
                return store.backend_networks_txn(txn, network_id=network_id)
            where: list[dict[str, Any]] = await self._db.run("cyclades.delete_network", txn_)
            return where

        where = await run_charged(self._charger, delete, charge or None, force=True,
                                  name=f"cyclades: delete network {network_id}")
        for row in where:
            await self.ganeti.remove_from_backend(network, row["backend_id"])

    # -- subnets ------------------------------------------------------------------------

    async def create_subnet(self, user: str, network_id: int, body: Mapping[str, Any],
                            admin: bool = False) -> Subnet:
        """A subnet on a network of the user (one per IP version)."""
        network = await self.network(user, network_id, admin)
        if not admin and network.userid != user:
            raise errors.NotFound(f"Network {network_id} could not be found.")
        req = pools.subnet_request(body, dict(self.settings.max_prefix), limited=not admin)

        def txn_(txn: Any) -> Subnet:
            locked = store.network_txn(txn, network_id, for_update=True)
            if locked is None:
                raise errors.NotFound(f"Network {network_id} could not be found.")
            mine = ipaddress.ip_network(req.cidr)
            for other in store.subnets_txn(txn, [network_id]):
                theirs = ipaddress.ip_network(other.cidr)
                if theirs.version == mine.version and theirs.overlaps(mine):  # type: ignore[arg-type]
                    raise errors.BadRequest(
                        f"Invalid input for operation: Requested subnet with cidr: {mine} for"
                        f" network: {network_id} overlaps with another subnet.")
            return store.insert_subnet_txn(txn, locked, req, network.userid or user or None,
                                           network.project)
        subnet: Subnet = await self._db.run("cyclades.create_subnet", txn_)
        return subnet

    async def update_subnet(self, user: str, subnet_id: int, admin: bool = False,
                            **fields: Any) -> Subnet:
        subnet = await self.subnet(user, subnet_id, admin)
        network = await self.network(user, subnet.network_id, admin)
        if not admin and network.userid != user:
            raise errors.Forbidden(f"Subnet {subnet_id} is not yours to change.")
        updated: Subnet | None = await self._db.run(
            "cyclades.update_subnet", lambda txn: store.update_subnet_txn(
                txn, subnet_id, **fields))
        assert updated is not None
        return updated

    async def delete_subnet(self, user: str, subnet_id: int, admin: bool = False) -> None:
        """Delete a subnet none of whose addresses is in use (409)."""
        subnet = await self.subnet(user, subnet_id, admin)
        network = await self.network(user, subnet.network_id, admin)
        if not admin and network.userid != user:
            raise errors.Forbidden(f"Subnet {subnet_id} is not yours to delete.")

        def txn_(txn: Any) -> None:
            if store.subnet_txn(txn, subnet_id, for_update=True) is None:
                raise errors.NotFound(f"Subnet {subnet_id} could not be found.")
            if store.ips_txn(txn, subnet_id=subnet_id):
                raise errors.Conflict(f"Unable to complete operation on subnet {subnet_id}:"
                                      " one or more ports have an IP allocation from it.")
            store.delete_subnet_txn(txn, subnet_id)
        await self._db.run("cyclades.delete_subnet", txn_)

    # -- ports ----------------------------------------------------------------------------

    def _port_txn(self, txn: Any, network: Network, user: str, project: str,
                  req: PortRequest, device: Server | None) -> Port:
        """Insert a port with its MAC and addresses (409 when a pool is
        exhausted or an address taken; nothing is left behind: the
        transaction rolls back)."""
        locked = store.network_txn(txn, network.id, for_update=False)
        if locked is None:
            raise errors.NotFound(f"Network {network.id} could not be found.")
        subnets = store.subnets_txn(txn, [network.id])
        port: Port | None = None
        if req.mac is not None and FLAVORS[network.flavor][2] \
                and not pools.under_prefix(req.mac, network.mac_prefix):
            raise errors.BadRequest(
                f"MAC address {req.mac} is not under network {network.id}'s prefix"
                f" {pools.ganeti_mac_prefix(network.mac_prefix)}: its traffic is filtered"
                " by it.")
        groups = self.security.port_groups_txn(txn, project, req.security_groups,
                                               req.port_security)
        if req.mac is not None:
            port = store.insert_port_txn(
                txn, network, user, project, req.mac, name=req.name,
                description=req.description, port_security=req.port_security,
                admin_state_up=req.admin_state_up, security_groups=groups)
            if port is None:
                raise errors.Conflict(f"Unable to complete operation for network"
                                      f" {network.id}. The mac address {req.mac} is in use.")
        else:
            for _ in range(8):
                port = store.insert_port_txn(
                    txn, network, user, project, pools.random_mac(network.mac_prefix),
                    name=req.name, description=req.description,
                    port_security=req.port_security, admin_state_up=req.admin_state_up,
                    security_groups=groups)
                if port is not None:
                    break
            if port is None:
                raise errors.Conflict(f"No free MAC address on network {network.id}.")
        wanted = req.fixed_ips
        if wanted is None:
            wanted = tuple((s.id, None) for s in subnets)
        by_id = {s.id: s for s in subnets}
        for subnet_id, address in wanted:
            subnet = self._subnet_for(by_id, subnets, subnet_id, address, network.id)
            # An address asked for on a public network is a floating IP.
            if address is not None and network.public and not self._floating_ok(
                    txn, subnet, address, user, port.id):
                continue
            if subnet.ipversion == 6 and pools.is_slaac(subnet.cidr, 6):
                address = address or pools.eui64(subnet.cidr, port.mac)
            if address is not None and subnet.gateway == address:
                raise errors.Conflict(f"IP address {address} is the gateway of subnet"
                                      f" {subnet.id}.")
            taken = store.take_address_txn(txn, subnet, user, project, address=address,
                                           port_id=port.id)
            if taken is None:
                if address is None:
                    raise errors.Conflict(f"No more IP addresses available on network"
                                          f" {network.id}.")
                raise errors.Conflict(f"Unable to complete operation for network"
                                      f" {network.id}. The IP address {address} is in use.")
        if device is not None:
            port = store.update_port_txn(txn, port.id, device_id=device.id,
                                         device_owner="compute:nova", state="BUILD")
            assert port is not None
        found = store.port_txn(txn, port.id)
        assert found is not None
        return found

    @staticmethod
    def _subnet_for(by_id: dict[int, Subnet], subnets: list[Subnet], subnet_id: int | None,
                    address: str | None, network_id: int) -> Subnet:
        if subnet_id is not None:
            subnet = by_id.get(subnet_id)
            if subnet is None:
                raise errors.BadRequest(f"Subnet {subnet_id} is not on network {network_id}.")
            if address is not None and ipaddress.ip_address(address) not in \
                    ipaddress.ip_network(subnet.cidr):
                raise errors.BadRequest(f"IP address {address} is not in subnet {subnet_id}.")
            return subnet
        if address is None:
            raise errors.BadRequest("A fixed IP needs a subnet_id or an ip_address.")
        for subnet in subnets:
            if ipaddress.ip_address(address) in ipaddress.ip_network(subnet.cidr):
                return subnet
        raise errors.BadRequest(f"IP address {address} is in no subnet of network"
                                f" {network_id}.")

    @staticmethod
    def _floating_ok(txn: Any, subnet: Subnet, address: str, user: str, port_id: int) -> bool:
        """An address asked for on a public network must be a floating IP
        of the user that is not attached: it is attached to the port
        (True means "allocate normally"; False: done here)."""
        for ip in store.ips_txn(txn, subnet_id=subnet.id):
            if ip.address == address:
                if not ip.floating or ip.userid != user:
                    raise errors.Conflict(f"IP address {address} is in use.")
                if ip.port_id is not None:
                    raise errors.Conflict(f"Floating IP {address} is already attached.")
                store.update_ip_txn(txn, ip.id, port_id=port_id)
                return False
        raise errors.Forbidden(f"IP address {address} on a public network must be a"
                               " floating IP of yours.")

    async def create_port(self, user: str, project: str, req: PortRequest,
                          admin: bool = False) -> Port:
        """A port on a network the user may use; with ``device_id`` the
        server's NIC is added (see the module docstring)."""
        network = await self.network(user, req.network_id, admin)
        device: Server | None = None
        if req.device_id is not None:
            device = await self._server(user, req.device_id, admin)
            user, project = device.userid, device.project
        if network.public and device is None:
            if req.fixed_ips and any(a for _, a in req.fixed_ips):
                raise errors.Conflict("An address of a public network is taken by attaching"
                                      " a floating IP to a server (a port with a device_id).")
            raise errors.Forbidden("Ports on a public network are made by attaching a"
                                   " floating IP to a server, or by creating a server.")
        port: Port = await self._db.run("cyclades.create_port", self._port_txn, network,
                                        user, project, req, device)
        if device is not None:
            # A floating IP just detached may still be on its old NIC in
            # Ganeti: the new NIC waits for that NIC's removal.
            freed = [ip.freed_from for ip in port.ips if ip.freed_from is not None]
            waits: list[int] = await self._db.run(
                "cyclades.remove_jobs", store.remove_jobs_txn, freed,
                device.backend_id) if freed and device.backend_id is not None else []
            await self.security.deliver([device.id])
            await self.ganeti.add_nics(device, [port], waits)
            await self.deliver_around(port, skip=device.id)
        return port

    async def deliver_around(self, *ports: Port, skip: int | None = None) -> None:
        """Deliver the security-group tags of the servers ``ports``' groups
        or addresses touch (``SecurityGroups.affected_txn``)."""
        servers: list[int] = await self._db.run(
            "cyclades.security_affected", self.security.affected_txn, ports)
        await self.security.deliver(s for s in servers if s != skip)

    async def update_port(self, user: str, port_id: int, admin: bool = False,
                          **fields: Any) -> Port:
        port = await self.port(user, port_id, admin)
        if "firewall_profile" in fields and fields["firewall_profile"] not in FIREWALL_PROFILES:
            raise errors.BadRequest(f"Unknown firewall profile {fields['firewall_profile']!r}.")
        grouping = {"security_groups", "port_security"} & set(fields)

        def txn_(txn: Any) -> Port | None:
            if grouping:
                locked = store.port_txn(txn, port.id, for_update=True)
                assert locked is not None
                secure = fields.get("port_security", locked.port_security)
                wanted = fields.get("security_groups", locked.security_groups)
                fields["security_groups"] = self.security.port_groups_txn(
                    txn, locked.project, wanted, secure, creating=False)
            return store.update_port_txn(txn, port.id, **fields)
        updated: Port | None = await self._db.run("cyclades.update_port", txn_)
        assert updated is not None
        if grouping:
            await self.deliver_around(port, updated)
        return updated

    async def bind_port(self, user: str, port_id: int, server_id: int,
                        admin: bool = False) -> Port:
        """Attach the user's free port to a server (Nova's interface attach
        by port): its NIC is added; detaching it later frees it again."""
        port = await self.port(user, port_id, admin)
        server = await self._server(user, server_id, admin)

        def txn_(txn: Any) -> Port:
            locked = store.port_txn(txn, port.id, for_update=True)
            if locked is None or locked.state == "DELETING":
                raise errors.NotFound(f"Port {port_id} could not be found.")
            if locked.device_id is not None:
                raise errors.Conflict(f"Port {port_id} is still in use.")
            bound = store.update_port_txn(txn, port.id, device_id=server.id,
                                          device_owner="compute:nova", state="BUILD",
                                          preserve=True)
            assert bound is not None
            return bound
        bound: Port = await self._db.run("cyclades.bind_port", txn_)
        await self.ganeti.add_nics(server, [bound])
        return bound

    async def set_fixed_ips(self, user: str, port_id: int,
                            fixed: Sequence[tuple[int | None, str | None]],
                            admin: bool = False) -> Port:
        """Replace the fixed addresses of a port that is no server's NIC
        (409 for a NIC: Ganeti's NIC would need changing too): addresses
        still asked for are kept, the others freed, new ones allocated."""
        port = await self.port(user, port_id, admin)
        if port.device_id is not None:
            raise errors.Conflict(f"Port {port_id} is a NIC of server {port.device_id}:"
                                  " its addresses change by detaching and attaching.")

        def txn_(txn: Any) -> Port:
            locked = store.port_txn(txn, port_id, for_update=True)
            if locked is None:
                raise errors.NotFound(f"Port {port_id} could not be found.")
            subnets = store.subnets_txn(txn, [locked.network_id])
            by_id = {s.id: s for s in subnets}
            kept: set[int] = set()
            wanted: list[tuple[Subnet, str | None]] = []
            for subnet_id, address in fixed:
                subnet = self._subnet_for(by_id, subnets, subnet_id, address,
                                          locked.network_id)
                match = next((ip for ip in locked.ips if ip.id not in kept and (
                    ip.address == address or (address is None and ip.subnet_id == subnet.id))),
                    None)
                if match is not None:
                    kept.add(match.id)
                else:
                    wanted.append((subnet, address))
            for ip in locked.ips:
                if ip.id not in kept and not ip.floating:
                    store.delete_ip_txn(txn, ip.id)
            for subnet, address in wanted:
                if store.take_address_txn(txn, subnet, locked.userid, locked.project,
                                          address=address, port_id=port_id) is None:
                    raise errors.Conflict(f"IP address {address or 'of subnet ' + str(subnet.id)}"
                                          " is not available.")
            updated = store.update_port_txn(txn, port_id)
            assert updated is not None
            return updated
        changed: Port = await self._db.run("cyclades.port_fixed_ips", txn_)
        return changed

    async def delete_port(self, user: str, port_id: int, admin: bool = False,
                          keep: bool = False) -> None:
        """Delete a port; a server's NIC is removed first (the port is
        DELETING meanwhile, its floating IPs free at once).  ``keep``:
        only detach it from its server (Nova's interface detach of a port
        the user made), freeing it once the NIC is gone."""
        port = await self.port(user, port_id, admin)
        if keep and port.device_id is None:
            return
        if port.device_id is None:
            await self._db.run("cyclades.delete_port", store.delete_port_txn, port.id)
            return
        server: Server | None = await self._db.run("cyclades.server",
                                                   compute_store.server_txn, port.device_id)
        if server is None or server.deleted or server.backend_id is None:
            await self._db.run("cyclades.delete_port", store.delete_port_txn, port.id)
            return
        await self._db.run("cyclades.port_deleting", store.update_port_txn, port.id,
                           state="DELETING", preserve=keep)
        try:
            job = await self.ganeti.remove_nic(server, port)
        except (RapiUnavailable, RapiError) as e:
            await self._db.run("cyclades.port_kept", store.update_port_txn, port.id,
                               state="ACTIVE")
            raise errors.ServiceUnavailable(f"Could not remove port {port_id} from server"
                                            f" {server.id}: {e}") from None

        def removing(txn: Any) -> None:
            store.update_port_txn(txn, port.id, remove_job=job)
            store.free_floating_txn(txn, port.id)
        await self._db.run("cyclades.port_removing", removing)
        await self.deliver_around(port)

    # -- floating IPs ----------------------------------------------------------------------

    async def create_floating_ip(self, user: str, project: str, network_id: int | None = None,
                                 address: str | None = None) -> IP:
        """A floating IP from ``network_id``'s pool (or any floating pool),
        charged to ``project`` (413 over quota, 409 when no address is free)."""
        if network_id is None:
            candidates: list[Network] = await self._db.run(
                "cyclades.floating_pools", store.networks_txn, floating_ip_pool=True)
        else:
            network = await self.network(user, network_id)
            if not network.floating_ip_pool:
                raise errors.BadRequest(f"Network {network_id} is not a floating IP pool.")
            candidates = [network]
        if not candidates:
            raise errors.NotFound("No floating IP pool exists; ask an administrator.")

        async def create(attempt: Attempt) -> IP:
            def txn_(txn: Any) -> IP:
                for network in candidates:
                    for subnet in store.subnets_txn(txn, [network.id]):
                        if subnet.ipversion != 4:
                            continue
                        if address is not None and ipaddress.ip_address(address) not in \
                                ipaddress.ip_network(subnet.cidr):
                            continue
                        ip = store.take_address_txn(txn, subnet, user, project,
                                                    address=address, floating=True)
                        if ip is not None:
                            if attempt.serial is not None:
                                decide_txn(txn, attempt.component, attempt.serial, True)
                            return ip
                        if address is not None:
                            raise errors.Conflict(f"IP address {address} is in use.")
                if address is not None:
                    raise errors.BadRequest(f"IP address {address} is in no floating IP pool.")
                raise errors.Conflict("No more IP addresses available on the floating IP"
                                      " pool(s).")
            ip: IP = await self._db.run("cyclades.create_floating_ip", txn_)
            return ip

        return await run_charged(self._charger, create,
                                 _provisions(user, project, FLOATING, 1),
                                 name=f"cyclades: floating IP for {user}")

    async def delete_floating_ip(self, user: str, ip_id: int, admin: bool = False) -> None:
        """Release a floating IP that is not attached (409 otherwise)."""
        ip = await self.floating_ip(user, ip_id, admin)

        async def delete(attempt: Attempt) -> None:
            def txn_(txn: Any) -> None:
                locked = store.ip_txn(txn, ip_id, for_update=True)
                if locked is None:
                    raise errors.NotFound(f"Floating IP {ip_id} could not be found.")
                if locked.port_id is not None:
                    raise errors.Conflict(f"Floating IP {ip.address} is attached to port"
                                          f" {locked.port_id}; detach it first.")
                store.delete_ip_txn(txn, ip_id)
                if attempt.serial is not None:
                    decide_txn(txn, attempt.component, attempt.serial, True)
            await self._db.run("cyclades.delete_floating_ip", txn_)

        await run_charged(self._charger, delete,
                          _provisions(ip.userid, ip.project, FLOATING, -1), force=True,
                          name=f"cyclades: release floating IP {ip_id}")

    async def attach_floating_ip(self, user: str, ip_id: int, server_id: int,
                                 admin: bool = False) -> Port:
        """Attach a floating IP to a server: a new port on its network with
        that address (Synnefo's way)."""
        ip = await self.floating_ip(user, ip_id, admin)
        if ip.port_id is not None:
            raise errors.Conflict(f"Floating IP {ip.address} is already attached.")
        return await self.create_port(
            ip.userid, ip.project,
            PortRequest(network_id=ip.network_id, device_id=server_id,
                        fixed_ips=((ip.subnet_id, ip.address),)), admin)

    async def detach_floating_ip(self, user: str, ip_id: int, admin: bool = False) -> None:
        """Detach a floating IP: its port (and so the NIC) goes."""
        ip = await self.floating_ip(user, ip_id, admin)
        if ip.port_id is None:
            return
        await self.delete_port(ip.userid, ip.port_id, True)

    async def edit_floating_ip(self, user: str, ip_id: int, admin: bool = False, *,
                               description: str | None = None,
                               tags: Sequence[str] | None = None) -> IP:
        """Change a floating IP's description and/or tags (those given)."""
        await self.floating_ip(user, ip_id, admin)
        fields: dict[str, Any] = {}
        if description is not None:
            fields["description"] = description
        if tags is not None:
            fields["tags"] = tuple(tags)
        changed: IP | None = await self._db.run(
            "cyclades.edit_floating_ip", lambda txn: store.update_ip_txn(txn, ip_id, **fields))
        assert changed is not None
        return changed

    # -- servers ------------------------------------------------------------------------

    async def _server(self, user: str, server_id: int, admin: bool) -> Server:
        server: Server | None = await self._db.run("cyclades.server",
                                                   compute_store.server_txn, server_id)
        if server is None or server.deleted or not (admin or server.userid == user):
            raise errors.NotFound(f"Server {server_id} could not be found.")
        return server

    async def plan(self, user: str, requests: Sequence[NicRequest] | None
                   ) -> list[tuple[Network, NicRequest]] | None:
        """Check a new server's ``networks`` (404 for a network or port the
        user may not use; 409 for a port in use).  None: no ports (the
        cluster's default NICs)."""
        if requests is None:
            requests = await self._defaults()
            if not requests:
                return None   # none configured (or none public yet): Ganeti's default NIC
        out = []
        for req in requests:
            if req.port_id is not None:
                port = await self.port(user, req.port_id)
                if port.device_id is not None:
                    raise errors.Conflict(f"Port {port.id} is still in use.")
                out.append((await self.network(user, port.network_id), req))
            else:
                assert req.network_id is not None
                network = await self.network(user, req.network_id)
                if req.fixed_ip is not None and network.public:
                    raise errors.Forbidden(f"IP address {req.fixed_ip} on a public network"
                                           " must be a floating IP attached later.")
                out.append((network, req))
        return out

    async def _defaults(self) -> list[NicRequest]:
        out = []
        for ref in self.settings.default_server_networks:
            if ref == ANY_PUBLIC:
                public: list[Network] = await self._db.run(
                    "cyclades.public_networks", store.networks_txn, public=True)
                if public:
                    out.append(NicRequest(network_id=public[0].id))
            elif ref.isdigit():
                out.append(NicRequest(network_id=int(ref)))
        return out

    def server_ports_txn(self, txn: Any, server: Server,
                         planned: Sequence[tuple[Network, NicRequest]],
                         security_groups: Sequence[str] | None = None) -> list[Port]:
        """The ports of a new server (in its create transaction); the new
        ones in ``security_groups`` (names or ids; None: the default)."""
        groups = None if security_groups is None else self.security.resolve_txn(
            txn, server.project, security_groups)
        ports = []
        for network, req in planned:
            if req.port_id is not None:
                locked = store.port_txn(txn, req.port_id, for_update=True)
                if locked is None or locked.device_id is not None:
                    raise errors.Conflict(f"Port {req.port_id} is still in use.")
                updated = store.update_port_txn(txn, req.port_id, device_id=server.id,
                                                device_owner="compute:nova", state="BUILD",
                                                preserve=True)
                assert updated is not None
                ports.append(updated)
                continue
            fixed: tuple[tuple[int | None, str | None], ...] | None = None
            if req.fixed_ip is not None:
                fixed = ((None, req.fixed_ip),)
                subnets = store.subnets_txn(txn, [network.id])
                fixed = fixed + tuple((s.id, None) for s in subnets if s.ipversion == 6)
            ports.append(self._port_txn(
                txn, network, server.userid, server.project,
                PortRequest(network_id=network.id, fixed_ips=fixed, security_groups=groups),
                server))
        return ports

    # -- the update path -------------------------------------------------------------------

    @staticmethod
    def _let_go_txn(txn: Any, port: Port) -> None:
        """A port whose NIC is gone: freed when the user bound it
        (``preserve``), else deleted with its addresses."""
        if port.preserve:
            store.free_floating_txn(txn, port.id)
            store.update_port_txn(txn, port.id, device_id=None, device_owner="",
                                  state="DOWN", remove_job=None, preserve=False)
        else:
            store.delete_port_txn(txn, port.id)

    @staticmethod
    def sync_ports_txn(txn: Any, server: Server, nics: Sequence[Mapping[str, Any]] | None,
                       *, removed: bool = False, failed: bool = False,
                       failed_change: bool = False) -> None:
        """Follow Ganeti's NICs of ``server`` (a finalized job): ports whose
        NIC exists become ACTIVE (DOWN on a stopped server), DELETING
        ports whose NIC is gone go, with their addresses; all of a removed
        server's ports go; a failed create leaves them in ERROR, and a
        failed change (``failed_change``: a modify job that failed) the
        BUILD ports whose NIC it did not add."""
        ports = store.ports_txn(txn, device_ids=[server.id])
        if removed:
            for p in ports:
                Networks._let_go_txn(txn, p)
            return
        if failed:
            for p in ports:
                store.update_port_txn(txn, p.id, state="ERROR")
            return
        if nics is None:
            return
        names = {n.get("name") for n in nics}
        running = server.operstate in ("STARTED", "BUILD")
        for p in ports:
            present = p.nic_name in names
            if p.state == "DELETING":
                if not present:
                    Networks._let_go_txn(txn, p)
                elif failed_change:
                    # The removal failed: the NIC (and the port) stay.
                    store.update_port_txn(txn, p.id, state="ACTIVE" if running else "DOWN",
                                          remove_job=None)
                continue
            state = ("ACTIVE" if running else "DOWN") if present else (
                "BUILD" if p.state == "BUILD" and not failed_change else "ERROR")
            if state != p.state:
                store.update_port_txn(txn, p.id, state=state)
