"""Neutron's ``security-groups`` and ``security-group-rules`` routes
(``/network/v2.0``), in Neutron's JSON; mounted by
:class:`snfd.cyclades.networks.api.NetworkAPI`.  What they do is
:mod:`snfd.cyclades.networks.security_groups`'s.

Ids are UUIDs.  A caller sees its token's project's groups and rules
(every project's for an administrator), and may name another project
(``project_id``/``tenant_id``) only as an administrator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from snfd import errors
from snfd.cyclades.networks import security
from snfd.cyclades.networks.model import SecurityGroup, SecurityRule
from snfd.cyclades.networks.security_groups import SecurityGroups

Handler = Callable[..., Awaitable[bytes]]


class NeutronRequests(Protocol):
    """What these routes take from the network API's request handling
    (``NetworkAPI`` provides it): the caller, bodies, Neutron's lists,
    shows and creates."""

    def who(self, request: Any) -> tuple[str, str, bool]: ...

    def body_object(self, request: Any, key: str) -> dict[str, Any]: ...

    def show(self, request: Any, key: str, view: dict[str, Any], code: int = 200) -> bytes: ...

    def listing(self, request: Any, key: str, views: list[dict[str, Any]]) -> bytes: ...

    def text(self, body: dict[str, Any], key: str, limit: int = 255) -> str: ...

    def allowed(self, body: dict[str, Any], allowed: set[str], what: str) -> None: ...

    def project(self, body: dict[str, Any], user: str, project: str, admin: bool) -> str: ...

    async def create(self, request: Any, key: str,
                     make: Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]
                     ) -> bytes: ...


def _time(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def rule_view(r: SecurityRule) -> dict[str, Any]:
    return {"id": r.id, "security_group_id": r.group_id, "direction": r.direction,
            "ethertype": r.ethertype, "protocol": r.protocol,
            "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
            "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
            "remote_address_group_id": None,
            "normalized_cidr": None if r.remote_ip_prefix is None
            else security.normalized(r.remote_ip_prefix),
            "description": r.description, "tenant_id": r.project, "project_id": r.project,
            "revision_number": r.revision, "created_at": _time(r.created),
            "updated_at": _time(r.updated)}


def group_view(g: SecurityGroup) -> dict[str, Any]:
    return {"id": g.id, "name": g.name, "description": g.description,
            "tenant_id": g.project, "project_id": g.project, "stateful": True,
            "shared": False, "security_group_rules": [rule_view(r) for r in g.rules],
            "tags": list(g.tags), "revision_number": g.revision,
            "created_at": _time(g.created), "updated_at": _time(g.updated)}


class SecurityGroupRoutes:
    """The routes and handlers (see the module docstring)."""

    def __init__(self, api: NeutronRequests, groups: SecurityGroups):
        self._api = api
        self._groups = groups

    def routes(self, v: str) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", v + "/security-groups", self.list_groups),
            ("POST", v + "/security-groups", self.create_group),
            ("GET", v + "/security-groups/<item_id>", self.show_group),
            ("PUT", v + "/security-groups/<item_id>", self.update_group),
            ("DELETE", v + "/security-groups/<item_id>", self.delete_group),
            ("GET", v + "/security-group-rules", self.list_rules),
            ("POST", v + "/security-group-rules", self.create_rule),
            ("GET", v + "/security-group-rules/<item_id>", self.show_rule),
            ("DELETE", v + "/security-group-rules/<item_id>", self.delete_rule),
        ]

    async def list_groups(self, request: Any) -> bytes:
        _, project, admin = self._api.who(request)
        found = await self._groups.groups(project, admin)
        return self._api.listing(request, "security_groups", [group_view(g) for g in found])

    async def show_group(self, request: Any, item_id: str) -> bytes:
        _, project, admin = self._api.who(request)
        group = await self._groups.group(project, item_id, admin)
        return self._api.show(request, "security_group", group_view(group))

    async def create_group(self, request: Any) -> bytes:
        return await self._api.create(request, "security_group", self._new_group)

    async def _new_group(self, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        user, project, admin = self._api.who(request)
        self._api.allowed(body, {"name", "description", "tenant_id", "project_id",
                                 "stateful", "tags"}, "security_group")
        if body.get("stateful", True) is not True:
            raise errors.BadRequest("Only stateful security groups are served here.")
        project = self._api.project(body, user, project, admin)
        group = await self._groups.create_group(user, project, self._api.text(body, "name"),
                                                self._api.text(body, "description"))
        return group_view(group)

    async def update_group(self, request: Any, item_id: str) -> bytes:
        _, project, admin = self._api.who(request)
        body = self._api.body_object(request, "security_group")
        self._api.allowed(body, {"name", "description", "stateful"}, "security_group")
        if body.get("stateful", True) is not True:
            raise errors.BadRequest("Only stateful security groups are served here.")
        fields = {k: self._api.text(body, k) for k in ("name", "description") if k in body}
        group = await self._groups.update_group(project, item_id, admin, **fields)
        return self._api.show(request, "security_group", group_view(group))

    async def delete_group(self, request: Any, item_id: str) -> bytes:
        _, project, admin = self._api.who(request)
        await self._groups.delete_group(project, item_id, admin)
        request.setResponseCode(204)
        return b""

    async def list_rules(self, request: Any) -> bytes:
        _, project, admin = self._api.who(request)
        found = await self._groups.rules(project, admin)
        return self._api.listing(request, "security_group_rules",
                                 [rule_view(r) for r in found])

    async def show_rule(self, request: Any, item_id: str) -> bytes:
        _, project, admin = self._api.who(request)
        rule = await self._groups.rule(project, item_id, admin)
        return self._api.show(request, "security_group_rule", rule_view(rule))

    async def create_rule(self, request: Any) -> bytes:
        return await self._api.create(request, "security_group_rule", self._new_rule)

    async def _new_rule(self, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        _, project, admin = self._api.who(request)
        self._api.allowed(body, {"security_group_id", "direction", "ethertype", "protocol",
                                 "port_range_min", "port_range_max", "remote_ip_prefix",
                                 "remote_group_id", "remote_address_group_id",
                                 "description", "tenant_id", "project_id"},
                          "security_group_rule")
        if body.get("remote_address_group_id") is not None:
            raise errors.BadRequest("Address groups are not served here.")
        group_id = body.get("security_group_id")
        if not isinstance(group_id, str):
            raise errors.BadRequest("A rule needs a security_group_id.")
        req = security.check_rule(body)
        rule = await self._groups.create_rule(project, group_id, req, admin)
        return rule_view(rule)

    async def delete_rule(self, request: Any, item_id: str) -> bytes:
        _, project, admin = self._api.who(request)
        await self._groups.delete_rule(project, item_id, admin)
        request.setResponseCode(204)
        return b""

    async def quota(self, project: str) -> dict[str, tuple[int, int]]:
        """Neutron's quota lines for security groups: name -> (limit, used)."""
        groups, rules = await self._groups.usage(project)
        return {"security_group": (security.MAX_GROUPS, groups),
                "security_group_rule": (security.MAX_RULES, rules)}

