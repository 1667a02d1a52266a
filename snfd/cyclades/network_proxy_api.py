"""Nova's network proxies on the compute API, over the network service
(``snfd.cyclades.networks.service.Networks``): floating IPs
(``os-floating-ips``, ``os-floating-ip-pools`` and the ``addFloatingIp`` /
``removeFloatingIp`` server actions), a server's interfaces
(``os-interface``) and the networks a user sees (``os-tenant-networks``, and
``os-networks``' reads, as Nova with Neutron serves them up to 2.35).
They answer in Nova 2.1's shapes (tempest's ``api_schema/response/compute/
v2_1``: ids as text) under both dialects' prefixes, with Nova's codes.

``NetworkProxyAPI(servers, max_body, server_of, changing).routes()`` gives
``compute_api.ComputeAPI`` the routes; ``server_of`` and ``changing`` are
its helpers that find the server a request acts on (and its owner, 409
when it is locked), so access works as for every other server route.

Floating IPs here are Synnefo's: attaching one gives the server a new
NIC (a port on the floating IP's network holding that address), so:

- ``fixed_ip`` of a floating IP is always null: no fixed address is
  translated to it; the server holds the floating address itself.
- ``addFloatingIp`` in Nova's dialect keeps Nova's rule that a floating
  IP stands for one fixed IPv4 address of the server: 400 when the server
  has none, when ``fixed_address`` is not one of its fixed addresses, and
  when each of them already has its floating IP (as many floating IPs as
  fixed IPv4 addresses).  Synnefo's dialect attaches any number (each one
  another NIC).  A floating IP attached to another server is moved (Nova's
  behaviour): detached there, then attached here.
- ``DELETE /os-floating-ips/<id>`` of an attached floating IP detaches it
  first, then releases it (202), as Nova does.

Both rely on the network service freeing a detached floating IP at once
(the new NIC's job then waits for the old NIC's removal on that cluster).

Nova's errors for floating IPs: an unknown pool or no address left is
404; over the ``cyclades.floating_ip`` quota is 403.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import body_of, int_id, scope_of, views_of
from snfd.cyclades.compute_views import NovaViews, nic_views
from snfd.cyclades.model import Server
from snfd.cyclades.networks.model import IP, Network, Port
from snfd.cyclades.networks.service import Networks, PortRequest
from snfd.cyclades.requests import AddFloatingIp, RemoveFloatingIp, ip_address
from snfd.cyclades.servers import Servers
from snfd.web.app import json_body, json_object
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]
ServerOf = Callable[[Any, str], Awaitable[Server]]
Changing = Callable[[Any, str], Awaitable[str]]
#: Nova's answer when a server could take a NIC on more than one network.
AMBIGUOUS = "Multiple possible networks found, use a Network ID to be more specific."


def floating_ip_view(ip: IP, pool: str) -> dict[str, Any]:
    """Nova's ``floating_ip`` (see the module docstring for ``fixed_ip``)."""
    return {"id": str(ip.id), "pool": pool, "ip": ip.address, "fixed_ip": None,
            "instance_id": None if ip.device_id is None else str(ip.device_id)}


def interface_view(port: Port) -> dict[str, Any]:
    """Nova's ``interfaceAttachment`` of a server's port."""
    return {"port_state": port.state, "port_id": str(port.id),
            "net_id": str(port.network_id), "mac_addr": port.mac,
            "fixed_ips": [{"subnet_id": str(ip.subnet_id), "ip_address": ip.address}
                          for ip in port.ips]}


def _fixed_addresses(server: Server) -> list[str]:
    """The server's fixed (not floating) addresses, in NIC order."""
    _, addresses = nic_views(server)
    return [a["addr"] for entries in addresses.values() for a in entries
            if a["OS-EXT-IPS:type"] == "fixed"]


def _floating_count(server: Server) -> int:
    return sum(1 for p in server.ports for ip in p.ips if ip.floating)


class NetworkProxyAPI:
    """The routes of Nova's network proxies (see the module docstring)."""

    def __init__(self, servers: Servers, max_body: int, server_of: ServerOf,
                 changing: Changing):
        self._servers = servers
        self._max_body = max_body
        self._server_of = server_of
        self._changing = changing

    def routes(self) -> list[tuple[str, str, Handler]]:
        s = "/servers/<server_id>/os-interface"
        return [
            ("GET", "/os-floating-ips", self.list_floating_ips),
            ("POST", "/os-floating-ips", self.create_floating_ip),
            ("GET", "/os-floating-ips/<ip_id>", self.show_floating_ip),
            ("DELETE", "/os-floating-ips/<ip_id>", self.delete_floating_ip),
            ("GET", "/os-floating-ip-pools", self.floating_ip_pools),
            ("GET", s, self.list_interfaces),
            ("POST", s, self.attach_interface),
            ("GET", s + "/<port_id>", self.show_interface),
            ("DELETE", s + "/<port_id>", self.detach_interface),
            ("GET", "/os-tenant-networks", self.list_tenant_networks),
            ("GET", "/os-tenant-networks/<network_id>", self.show_tenant_network),
            ("GET", "/os-networks", self.list_tenant_networks),
            ("GET", "/os-networks/<network_id>", self.show_tenant_network),
            ("POST", "/os-networks", self.nova_network_only),
            ("DELETE", "/os-networks/<network_id>", self.nova_network_only),
            ("POST", "/os-networks/<network_id>/action", self.nova_network_only),
            ("POST", "/os-networks/add", self.nova_network_only),
        ]

    # -- helpers -----------------------------------------------------------------

    @property
    def _networks(self) -> Networks:
        networks = self._servers.networks
        if networks is None:
            raise errors.NotImplementedFault("This cloud serves no network API.")
        return networks

    @staticmethod
    def _who(request: Any) -> tuple[str, str, bool]:
        """The caller, the project it acts in, whether it is an admin."""
        p = user_of(request)
        assert p.user is not None
        return p.user, scope_of(request) or p.user, bool(p.is_admin)

    @staticmethod
    def _empty(request: Any, code: int) -> bytes:
        request.setResponseCode(code)
        return b""

    async def _pool_names(self, ips: list[IP]) -> dict[int, str]:
        """The pool (network) name of each floating IP's network, by id."""
        names: dict[int, str] = {}
        for network_id in dict.fromkeys(ip.network_id for ip in ips):
            try:
                network = await self._networks.network("", network_id, True)
                names[network_id] = network.name or str(network.id)
            except errors.NotFound:
                names[network_id] = str(network_id)
        return names

    async def _shown(self, request: Any, ip: IP) -> bytes:
        names = await self._pool_names([ip])
        return json_body(request, {"floating_ip": floating_ip_view(ip, names[ip.network_id])})

    async def _by_address(self, request: Any, address: str) -> IP:
        """The caller's floating IP with that address (any, for an
        administrator); 404 otherwise."""
        user, _, admin = self._who(request)
        for ip in await self._networks.floating_ips(user, admin):
            if ip.address == address:
                return ip
        raise errors.NotFound(f"Floating IP {address} not found.")

    async def _pool(self, user: str, ref: str) -> Network:
        """A floating IP pool the user sees, by name, else by id; 404."""
        pools = [n for n in await self._networks.networks(user) if n.floating_ip_pool]
        for network in pools:
            if network.name == ref:
                return network
        for network in pools:
            if str(network.id) == ref:
                return network
        raise errors.NotFound(f"Floating IP pool {ref[:80]} not found.")

    async def _detached(self, request: Any, ip: IP) -> IP:
        """Detach ``ip`` from its server; the floating IP after (free at
        once; 409 should it still be held)."""
        user, _, admin = self._who(request)
        await self._networks.detach_floating_ip(user, ip.id, admin)
        after = await self._networks.floating_ip(user, ip.id, admin)
        if after.port_id is not None:
            raise errors.Conflict(f"Floating IP {ip.address} is being detached from server"
                                  f" {after.device_id}; try again once that is done.")
        return after

    # -- os-floating-ips ---------------------------------------------------------

    async def list_floating_ips(self, request: Any) -> bytes:
        """The caller's floating IPs."""
        user, _, _ = self._who(request)
        found = await self._networks.floating_ips(user)
        names = await self._pool_names(found)
        return json_body(request, {"floating_ips": [
            floating_ip_view(ip, names[ip.network_id]) for ip in found]})

    async def show_floating_ip(self, request: Any, ip_id: str) -> bytes:
        user, _, admin = self._who(request)
        ip = await self._networks.floating_ip(user, int_id(ip_id, "Floating IP"), admin)
        return await self._shown(request, ip)

    async def create_floating_ip(self, request: Any) -> bytes:
        """``POST {"pool": <name or id>}`` (no body or no pool: any pool);
        200 with the new floating IP, charged to the token's project."""
        user, project, _ = self._who(request)
        body = body_of(request, self._max_body, required=False)
        body = {} if body is None else json_object(body)
        pool = body.get("pool")
        if pool is not None and not isinstance(pool, str):
            raise errors.BadRequest("pool must be the name or id of a floating IP pool.")
        network_id = None if pool is None else (await self._pool(user, pool)).id
        try:
            ip = await self._networks.create_floating_ip(user, project, network_id)
        except errors.Conflict:
            raise errors.NotFound("No more floating IPs" + (
                f" in pool {pool[:80]}." if pool else " available.")) from None
        except errors.Fault as e:
            if e.code != 413:               # over quota (OverLimit, the holder's errors)
                raise
            raise errors.Forbidden(f"Quota exceeded for floating_ips: {e.message}") from None
        return await self._shown(request, ip)

    async def delete_floating_ip(self, request: Any, ip_id: str) -> bytes:
        """Release a floating IP, detaching it first if attached; 202."""
        user, _, admin = self._who(request)
        ip = await self._networks.floating_ip(user, int_id(ip_id, "Floating IP"), admin)
        if ip.port_id is not None:
            ip = await self._detached(request, ip)
        await self._networks.delete_floating_ip(user, ip.id, admin)
        return self._empty(request, 202)

    async def floating_ip_pools(self, request: Any) -> bytes:
        """The floating IP pools (public networks) the caller sees."""
        user, _, _ = self._who(request)
        found = [n for n in await self._networks.networks(user) if n.floating_ip_pool]
        return json_body(request, {"floating_ip_pools": [{"name": n.name or str(n.id)}
                                                         for n in found]})

    # -- the server actions ----------------------------------------------------------

    async def add_floating_ip(self, request: Any, server_id: str,
                              action: AddFloatingIp) -> None:
        """``addFloatingIp``: the caller's floating IP becomes a NIC of the
        server (its ``instance_id`` is the server at once)."""
        owner = await self._changing(request, server_id)
        server = await self._servers.get(owner, int_id(server_id, "Server"))
        ip = await self._by_address(request, action.address)
        fixed = _fixed_addresses(server)
        if action.fixed_address is not None and action.fixed_address not in fixed:
            raise errors.BadRequest("Specified fixed address not assigned to instance.")
        if ip.port_id is not None and ip.device_id == server.id:
            return
        if isinstance(views_of(request), NovaViews):
            v4 = [a for a in fixed if ipaddress.ip_address(a).version == 4]
            if not v4:
                raise errors.BadRequest(
                    f"Unable to associate floating IP {ip.address} to any fixed IPs for"
                    f" instance {server.id}. Instance has no fixed IPv4 addresses to"
                    " associate.")
            if _floating_count(server) >= len(v4):
                raise errors.BadRequest(
                    f"Cannot associate floating IP {ip.address} with instance {server.id}:"
                    " each of its fixed IPv4 addresses already has a floating IP.")
        if ip.port_id is not None:
            ip = await self._detached(request, ip)
        user, _, admin = self._who(request)
        await self._networks.attach_floating_ip(user, ip.id, server.id, admin)

    async def remove_floating_ip(self, request: Any, server_id: str,
                                 action: RemoveFloatingIp) -> None:
        """``removeFloatingIp``: 409 unless it is attached to this server."""
        owner = await self._changing(request, server_id)
        server = await self._servers.get(owner, int_id(server_id, "Server"))
        ip = await self._by_address(request, action.address)
        if ip.port_id is None or ip.device_id != server.id:
            raise errors.Conflict(f"Floating IP {ip.address} is not associated with instance"
                                  f" {server.id}.")
        user, _, admin = self._who(request)
        await self._networks.detach_floating_ip(user, ip.id, admin)

    # -- os-interface ------------------------------------------------------------------

    async def list_interfaces(self, request: Any, server_id: str) -> bytes:
        server = await self._server_of(request, server_id)
        return json_body(request, {"interfaceAttachments": [interface_view(p)
                                                            for p in server.ports]})

    @staticmethod
    def _port_of(server: Server, port_id: str) -> Port:
        wanted = int_id(port_id, "Port")
        for port in server.ports:
            if port.id == wanted:
                return port
        raise errors.NotFound(f"Port {wanted} is not attached to server {server.id}.")

    async def show_interface(self, request: Any, server_id: str, port_id: str) -> bytes:
        server = await self._server_of(request, server_id)
        return json_body(request, {"interfaceAttachment": interface_view(
            self._port_of(server, port_id))})

    async def attach_interface(self, request: Any, server_id: str) -> bytes:
        """``POST {"interfaceAttachment": {"net_id"[, "fixed_ips":
        [{"ip_address"}]]} | {"port_id"} | {}}``: a new port of the server
        on that network (none named: the caller's only private network);
        200 with the attachment (``port_state`` BUILD until Ganeti added
        the NIC)."""
        owner = await self._changing(request, server_id)
        server = await self._servers.get(owner, int_id(server_id, "Server"))
        body = body_of(request, self._max_body, required=False)
        body = {} if body is None else json_object(body)
        attachment = body.get("interfaceAttachment", {})
        if not isinstance(attachment, dict):
            raise errors.BadRequest('interfaceAttachment must be an object.')
        unknown = set(attachment) - {"net_id", "port_id", "fixed_ips"}
        if unknown:
            raise errors.BadRequest(f"Unknown interfaceAttachment keys:"
                                    f" {', '.join(sorted(unknown))[:80]}.")
        net_ref, port_ref = attachment.get("net_id"), attachment.get("port_id")
        address = self._requested_address(attachment.get("fixed_ips"))
        if net_ref is not None and port_ref is not None:
            raise errors.BadRequest("Must not input both network_id and port_id.")
        if address is not None and net_ref is None:
            raise errors.BadRequest("Must input network_id when request IP address.")
        if server.deleted or server.operstate not in ("STARTED", "STOPPED"):
            raise errors.Conflict(f"Cannot 'attach_interface' instance {server.id} while it"
                                  " is building or in error.")
        user, _, admin = self._who(request)
        networks = self._networks
        if port_ref is not None:
            port = await networks.port(user, self._id(port_ref, "port_id"), admin)
            if port.device_id is not None:
                raise errors.Conflict(f"Port {port.id} is still in use.")
            port = await networks.bind_port(user, port.id, server.id, admin)
            await self._record(request, server, "attach_interface")
            return json_body(request, {"interfaceAttachment": interface_view(port)})
        if net_ref is not None:
            network = await networks.network(owner, self._id(net_ref, "net_id"), admin)
        else:
            network = await self._default_network(owner)
        fixed: tuple[tuple[int | None, str | None], ...] | None = None
        if address is not None:
            # The address on its subnet; IPv6 (SLAAC) subnets as by default.
            v6 = [(s.id, None) for s in await networks.subnets(owner, admin)
                  if s.network_id == network.id and s.ipversion == 6]
            fixed = ((None, address), *v6)
        port = await networks.create_port(
            owner, server.project,
            PortRequest(network_id=network.id, device_id=server.id, fixed_ips=fixed), admin)
        await self._record(request, server, "attach_interface")
        return json_body(request, {"interfaceAttachment": interface_view(port)})

    async def _record(self, request: Any, server: Server, action: str) -> None:
        """Note a NIC change in the server's instance actions (its job is
        no task of the server's: none is named)."""
        user, _, _ = self._who(request)
        request_id = getattr(request, "request_id", "") or f"req-{secrets.token_hex(16)}"
        await self._servers.actions.record(server, request_id, action, user, job=False)

    @staticmethod
    def _id(value: Any, what: str) -> int:
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) \
            else ""
        if not text.isdigit() or len(text) > 18:
            raise errors.BadRequest(f"Invalid {what} {str(value)[:40]!r}.")
        return int(text)

    @staticmethod
    def _requested_address(value: Any) -> str | None:
        """The one ``ip_address`` of ``fixed_ips`` (Nova takes one), or None."""
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > 1 or not all(
                isinstance(f, dict) and set(f) <= {"ip_address"} for f in value):
            raise errors.BadRequest('fixed_ips must be a list of at most one'
                                    ' {"ip_address"} object.')
        if not value or "ip_address" not in value[0]:
            return None
        return ip_address(value[0]["ip_address"], "ip_address")

    async def _default_network(self, user: str) -> Network:
        """Nova's choice when no network is named: the user's own private
        network, else the one shared network; 400 when none or several."""
        found = [n for n in await self._networks.networks(user) if not n.public]
        own = [n for n in found if n.userid == user]
        candidates = own or found
        if not candidates:
            raise errors.BadRequest("No network is available to attach an interface to.")
        if len(candidates) > 1:
            raise errors.BadRequest(AMBIGUOUS)
        return candidates[0]

    async def detach_interface(self, request: Any, server_id: str, port_id: str) -> bytes:
        """Remove the port (and so the NIC) from the server; 202."""
        owner = await self._changing(request, server_id)
        server = await self._servers.get(owner, int_id(server_id, "Server"))
        port = self._port_of(server, port_id)
        _, _, admin = self._who(request)
        # A port of the server is the server's to lose, whoever made it; a
        # port the user made and bound is freed, not deleted (Nova's way).
        await self._networks.delete_port(owner, port.id, admin or port.userid != owner,
                                         keep=port.preserve)
        await self._record(request, server, "detach_interface")
        return self._empty(request, 202)

    # -- os-tenant-networks --------------------------------------------------------------

    async def _cidrs(self, user: str) -> dict[int, str]:
        """The first IPv4 subnet's CIDR of each network the user sees."""
        cidrs: dict[int, str] = {}
        for subnet in sorted(await self._networks.subnets(user), key=lambda s: s.id):
            if subnet.ipversion == 4:
                cidrs.setdefault(subnet.network_id, subnet.cidr)
        return cidrs

    @staticmethod
    def _tenant_network(network: Network, cidrs: dict[int, str]) -> dict[str, Any]:
        return {"id": str(network.id), "cidr": cidrs.get(network.id),
                "label": network.name}

    async def list_tenant_networks(self, request: Any) -> bytes:
        """The networks the caller sees: its own, shared and public ones."""
        user, _, _ = self._who(request)
        cidrs = await self._cidrs(user)
        return json_body(request, {"networks": [
            self._tenant_network(n, cidrs) for n in await self._networks.networks(user)]})

    async def nova_network_only(self, request: Any, network_id: str = "") -> bytes:
        """What only nova-network did (making, deleting, associating
        networks through os-networks): 501, as Nova with Neutron answers;
        networks are the network API's."""
        raise errors.NotImplementedFault("Networks are made and changed through the network"
                                         " API (Neutron's), not os-networks.")

    async def show_tenant_network(self, request: Any, network_id: str) -> bytes:
        user, _, _ = self._who(request)
        network = await self._networks.network(user, int_id(network_id, "Network"))
        return json_body(request, {"network": self._tenant_network(
            network, await self._cidrs(user))})
