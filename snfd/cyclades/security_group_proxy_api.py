"""Nova's security-group proxies on the compute API, over the network
service's security groups (``snfd.cyclades.networks.security_groups``):
``os-security-groups``, ``os-security-group-rules``, a server's
``os-security-groups`` and the ``addSecurityGroup``/``removeSecurityGroup``
actions, in Nova 2.1's shapes and codes (Nova up to 2.35 proxies these to
Neutron the same way).

What Nova shows of a Neutron group: its ingress rules only (Nova's rules
have no direction), each as ``ip_protocol``, ``from_port``/``to_port``
(the ICMP type and code for ICMP; -1 for "any" there) and either
``ip_range.cidr`` or ``group`` (the remote group's name and project).
A rule made here is an ingress rule; without ``cidr`` or ``group_id`` its
remote is ``0.0.0.0/0``.  Neutron's 409s are Nova's 400s.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import body_of, scope_of
from snfd.cyclades.model import Server
from snfd.cyclades.networks.model import Port, SecurityGroup, SecurityRule
from snfd.cyclades.networks.security import RuleRequest
from snfd.cyclades.networks.security_groups import SecurityGroups
from snfd.cyclades.requests import SecurityGroupChange
from snfd.cyclades.servers import Servers
from snfd.web.app import json_body, json_object
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]
ServerOf = Callable[[Any, str], Awaitable[Server]]


def rule_view(rule: SecurityRule, groups: dict[str, SecurityGroup]) -> dict[str, Any]:
    """Nova's ``security_group_rule``; ``groups``: the remote groups by id."""
    icmp = rule.protocol in ("icmp", "1", "ipv6-icmp", "icmpv6", "58")
    low, high = rule.port_range_min, rule.port_range_max
    if icmp:
        low = -1 if low is None else low
        high = -1 if high is None else high
    view: dict[str, Any] = {"id": rule.id, "parent_group_id": rule.group_id,
                            "ip_protocol": rule.protocol, "from_port": low, "to_port": high,
                            "group": {}, "ip_range": {}}
    if rule.remote_group_id is not None:
        remote = groups.get(rule.remote_group_id)
        view["group"] = {"name": remote.name if remote else rule.remote_group_id,
                         "tenant_id": remote.project if remote else ""}
    else:
        view["ip_range"] = {"cidr": rule.remote_ip_prefix
                            or ("0.0.0.0/0" if rule.ethertype == "IPv4" else "::/0")}
    return view


def group_view(group: SecurityGroup, groups: dict[str, SecurityGroup]) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "description": group.description,
            "tenant_id": group.project,
            "rules": [rule_view(r, groups) for r in group.rules if r.direction == "ingress"]}


def _as_bad_request(e: errors.Fault) -> errors.Fault:
    """Nova answers Neutron's conflicts as 400."""
    return errors.BadRequest(e.message) if isinstance(e, errors.Conflict) else e


class SecurityGroupProxyAPI:
    """The routes (see the module docstring)."""

    def __init__(self, servers: Servers, max_body: int, server_of: ServerOf):
        self._servers = servers
        self._max_body = max_body
        self._server_of = server_of

    def routes(self) -> list[tuple[str, str, Handler]]:
        g = "/os-security-groups"
        return [
            ("GET", g, self.list_groups),
            ("POST", g, self.create_group),
            ("GET", g + "/<group_id>", self.show_group),
            ("PUT", g + "/<group_id>", self.update_group),
            ("DELETE", g + "/<group_id>", self.delete_group),
            ("POST", "/os-security-group-rules", self.create_rule),
            ("DELETE", "/os-security-group-rules/<rule_id>", self.delete_rule),
            ("GET", "/servers/<server_id>/os-security-groups", self.server_groups),
        ]

    @property
    def _groups(self) -> SecurityGroups:
        networks = self._servers.networks
        if networks is None:
            raise errors.NotImplementedFault("This cloud serves no network API.")
        return networks.security

    @staticmethod
    def _who(request: Any) -> tuple[str, str, bool]:
        p = user_of(request)
        assert p.user is not None
        return p.user, scope_of(request) or p.user, bool(p.is_admin)

    def _body(self, request: Any, key: str) -> dict[str, Any]:
        body = json_object(body_of(request, self._max_body))
        value = body.get(key)
        if not isinstance(value, dict):
            raise errors.BadRequest(f"The request needs a \"{key}\" object.")
        return value

    async def _remotes(self, project: str, admin: bool,
                       found: list[SecurityGroup]) -> dict[str, SecurityGroup]:
        """The groups rules of ``found`` name as remote, by id."""
        known = {g.id: g for g in found}
        for group in found:
            for rule in group.rules:
                ref = rule.remote_group_id
                if ref is not None and ref not in known:
                    try:
                        known[ref] = await self._groups.group(project, ref, admin)
                    except errors.NotFound:
                        pass
        return known

    async def _shown(self, request: Any, project: str, admin: bool,
                     group: SecurityGroup) -> bytes:
        remotes = await self._remotes(project, admin, [group])
        return json_body(request, {"security_group": group_view(group, remotes)})

    @staticmethod
    def _text(body: dict[str, Any], key: str, required: bool) -> str:
        value = body.get(key, None if required else "")
        if not isinstance(value, str) or len(value) > 255 or (required and not value.strip()):
            raise errors.BadRequest(f"Security group {key} must be a string of 1..255"
                                    " characters." if required else
                                    f"Security group {key} must be a string of at most 255"
                                    " characters.")
        return value

    # -- groups ------------------------------------------------------------------------------

    async def list_groups(self, request: Any) -> bytes:
        """The project's groups; every project's for an administrator
        asking ``all_tenants``."""
        _, project, admin = self._who(request)
        every = admin and (request.args or {}).get(b"all_tenants", [b"0"])[0].lower() in (
            b"1", b"true", b"yes", b"")
        found = await self._groups.groups(project, every)
        remotes = await self._remotes(project, every, found)
        return json_body(request, {"security_groups": [group_view(g, remotes)
                                                       for g in found]})

    async def show_group(self, request: Any, group_id: str) -> bytes:
        _, project, admin = self._who(request)
        return await self._shown(request, project, admin,
                                 await self._groups.group(project, group_id, admin))

    async def create_group(self, request: Any) -> bytes:
        user, project, _ = self._who(request)
        body = self._body(request, "security_group")
        name = self._text(body, "name", True)
        description = self._text(body, "description", False)
        try:
            group = await self._groups.create_group(user, project, name, description)
        except errors.Conflict as e:
            raise _as_bad_request(e) from None
        return await self._shown(request, project, False, group)

    async def update_group(self, request: Any, group_id: str) -> bytes:
        _, project, admin = self._who(request)
        body = self._body(request, "security_group")
        fields = {k: self._text(body, k, k == "name") for k in ("name", "description")
                  if k in body}
        try:
            group = await self._groups.update_group(project, group_id, admin, **fields)
        except errors.Conflict as e:
            raise _as_bad_request(e) from None
        return await self._shown(request, project, admin, group)

    async def delete_group(self, request: Any, group_id: str) -> bytes:
        _, project, admin = self._who(request)
        group = await self._groups.group(project, group_id, admin)
        if group.is_default:
            raise errors.BadRequest("Removing the default security group is not allowed.")
        try:
            await self._groups.delete_group(project, group_id, admin)
        except errors.Conflict as e:
            raise _as_bad_request(e) from None
        request.setResponseCode(202)
        return b""

    # -- rules -------------------------------------------------------------------------------

    async def create_rule(self, request: Any) -> bytes:
        _, project, admin = self._who(request)
        body = self._body(request, "security_group_rule")
        parent = _uuid(body.get("parent_group_id"), "parent_group_id")
        remote_group = body.get("group_id")
        if remote_group is not None:
            remote_group = _uuid(remote_group, "group_id")
        req = nova_rule(body, remote_group)
        try:
            rule = await self._groups.create_rule(project, parent, req, admin)
        except errors.Conflict as e:
            raise _as_bad_request(e) from None
        group = await self._groups.group(project, parent, admin)
        remotes = await self._remotes(project, admin, [group])
        return json_body(request, {"security_group_rule": rule_view(rule, remotes)})

    async def delete_rule(self, request: Any, rule_id: str) -> bytes:
        _, project, admin = self._who(request)
        await self._groups.delete_rule(project, rule_id, admin)
        request.setResponseCode(202)
        return b""

    # -- servers -----------------------------------------------------------------------------

    async def server_groups(self, request: Any, server_id: str) -> bytes:
        _, project, admin = self._who(request)
        server = await self._server_of(request, server_id)
        ids = dict.fromkeys(g for p in await self._ports(server) for g in p.security_groups)
        found = [await self._groups.group(server.project, g, True) for g in ids]
        remotes = await self._remotes(project, admin, found)
        return json_body(request, {"security_groups": [group_view(g, remotes)
                                                       for g in found]})

    async def change(self, request: Any, server_id: str, action: SecurityGroupChange) -> None:
        """``addSecurityGroup``/``removeSecurityGroup`` on every port of
        the server (Nova's way); 404 for a group the project lacks, 400
        for a server without ports, or a group it is not in."""
        server = await self._server_of(request, server_id)
        networks = self._servers.networks
        assert networks is not None
        found = [g for g in await self._groups.groups(server.project)
                 if action.name in (g.id, g.name)]
        if not found:
            raise errors.NotFound(f"Security group {action.name[:80]} not found.")
        if len(found) > 1:
            raise errors.Conflict(f"Multiple security groups are named {action.name[:80]};"
                                  " use its id.")
        group = found[0].id
        ports = [p for p in await self._ports(server) if p.state != "DELETING"]
        if not ports:
            raise errors.BadRequest(f"Server {server_id} has no port to put in a security"
                                    " group.")
        if not action.add and not any(group in p.security_groups for p in ports):
            raise errors.BadRequest(f"Security group {action.name[:80]} not associated with"
                                    " the instance.")
        for port in ports:
            current = list(port.security_groups)
            if action.add and group not in current:
                if not port.port_security:
                    raise errors.BadRequest(f"Port {port.id} has port security disabled.")
                current.append(group)
            elif not action.add and group in current:
                current.remove(group)
            else:
                continue
            await networks.update_port(server.userid, port.id,
                                       security_groups=tuple(current))

    async def _ports(self, server: Server) -> list[Port]:
        networks = self._servers.networks
        if networks is None:
            return []
        return (await networks.server_ports([server.id])).get(server.id, [])


def _uuid(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise errors.BadRequest(f"Security group id should be uuid ({what}).") from None


def nova_rule(body: dict[str, Any], remote_group: str | None) -> RuleRequest:
    """An ingress rule from Nova's ``security_group_rule`` body, checked
    as Nova checks it (400)."""
    protocol, low, high = body.get("ip_protocol"), body.get("from_port"), body.get("to_port")
    cidr = body.get("cidr")
    if protocol is None or low is None or high is None:
        if remote_group is None:
            raise errors.BadRequest("Not enough parameters to build a valid rule.")
        kind, pmin, pmax = None, None, None
    else:
        kind = str(protocol).lower()
        if kind not in ("tcp", "udp", "icmp"):
            raise errors.BadRequest(f"Invalid IP protocol {str(protocol)[:40]}.")
        try:
            pmin, pmax = int(low), int(high)
        except (TypeError, ValueError):
            raise errors.BadRequest("Type and Code must be integers for ICMP protocol type"
                                    if kind == "icmp" else
                                    "To and From ports must be integers") from None
        if kind in ("tcp", "udp"):
            if pmin > pmax:
                raise errors.BadRequest(f"Invalid port range {pmin}:{pmax}. Former value"
                                        " cannot be greater than the later")
            if pmin < 1 or pmax > 65535:
                raise errors.BadRequest(f"Invalid port range {pmin}:{pmax}. Valid {kind.upper()}"
                                        " ports should be between 1-65535")
        else:
            if not (-1 <= pmin <= 255 and -1 <= pmax <= 255):
                raise errors.BadRequest(f"Invalid port range {pmin}:{pmax}. For ICMP, the"
                                        " type:code must be valid")
            pmin = None if pmin == -1 else pmin
            pmax = None if pmax == -1 or pmin is None else pmax
    ethertype = "IPv4"
    prefix = None
    if remote_group is None:
        try:
            network = ipaddress.ip_network(str(cidr or "0.0.0.0/0"), strict=False)
        except ValueError:
            raise errors.BadRequest(f"Invalid CIDR {str(cidr)[:60]}.") from None
        ethertype, prefix = f"IPv{network.version}", str(cidr or "0.0.0.0/0")
    return RuleRequest(direction="ingress", ethertype=ethertype, protocol=kind,
                       port_range_min=pmin, port_range_max=pmax, remote_ip_prefix=prefix,
                       remote_group_id=remote_group)
