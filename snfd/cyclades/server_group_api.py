"""The server group routes of the compute API (Nova's ``os-server-groups``
up to microversion 2.64), in both dialects; what groups are and how
creates honour them is ``snfd.cyclades.server_groups``.

- ``POST /os-server-groups`` ``{"server_group": {"name", "policies":
  [one policy]}}``: 200 with the group.  The policy is ``affinity`` or
  ``anti-affinity``, and from 2.15 ``soft-affinity`` or
  ``soft-anti-affinity`` (400 before, as Nova answers).  From 2.13 a
  group shows its ``project_id`` and ``user_id``.
- ``GET /os-server-groups[?all_projects=1&limit=&offset=]``, ``GET`` and
  ``DELETE /os-server-groups/<id>`` (204).

A group shows ``id``, ``name``, ``policies``, ``members`` (the ids of its
live servers) and ``metadata`` (always empty: Nova 2.1 keeps none).

From 2.64 a group is made with one ``policy`` (a string, not
``policies``: 400) and, for ``anti-affinity`` only, ``rules``
``{"max_server_per_host": N}`` (N a positive integer; rules for another
policy are 400); it shows ``policy`` and ``rules`` instead of
``policies`` and ``metadata``.  The rule is kept and shown; placement is
unchanged (members of an anti-affinity group never share a Ganeti node,
``snfd.cyclades.server_groups``).
``ComputeAPI`` mounts ``ServerGroupAPI.routes()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import (
    at_least,
    empty,
    is_admin,
    object_of,
    projects_of,
    query,
    scope_of,
    views_of,
    window,
)
from snfd.cyclades.model import GROUP_POLICIES, ServerGroup
from snfd.cyclades.server_groups import ServerGroups, check_policy
from snfd.web.app import json_body
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]
#: The policies Nova's microversion 2.1 accepts.
POLICIES_2_1 = ("affinity", "anti-affinity")


def _at(request: Any, minor: int) -> bool:
    return request is not None and views_of(request).negotiates and at_least(request, minor)


def group_view(group: ServerGroup, request: Any = None) -> dict[str, Any]:
    """A group as Nova shows it; from 2.13 with its project and user, from
    2.64 with its ``policy`` and ``rules`` (no ``policies``, ``metadata``)."""
    out: dict[str, Any] = {"id": group.id, "name": group.name,
                           "members": [str(m) for m in group.members]}
    if _at(request, 64):
        out.update(policy=group.policy, rules=dict(group.rules))
    else:
        out.update(policies=[group.policy], metadata={})
    if _at(request, 13):
        out.update(project_id=group.project, user_id=group.userid)
    return out


def parse_rules(value: Any, policy: str) -> dict[str, int]:
    """2.64's ``rules``: ``max_server_per_host`` (a positive integer, or
    its digits) for an anti-affinity group only, else 400."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise errors.BadRequest("rules must be an object.")
    unknown = set(value) - {"max_server_per_host"}
    if unknown:
        raise errors.BadRequest(f"Unknown server group rule {sorted(unknown)[0][:40]!r}.")
    if policy != "anti-affinity":
        raise errors.BadRequest("Only anti-affinity policy supports rules.")
    most = value.get("max_server_per_host")
    if isinstance(most, str) and most.isdigit() and len(most) < 10:
        most = int(most)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most < 2 ** 31:
        raise errors.BadRequest("max_server_per_host must be a positive integer.")
    return {"max_server_per_host": most}


class ServerGroupAPI:
    """See the module docstring."""

    def __init__(self, groups: ServerGroups, max_body: int):
        self._groups = groups
        self._max_body = max_body

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/os-server-groups", self.list_groups),
            ("POST", "/os-server-groups", self.create_group),
            ("GET", "/os-server-groups/<group_id>", self.show_group),
            ("DELETE", "/os-server-groups/<group_id>", self.delete_group),
        ]

    @staticmethod
    def _caller(request: Any) -> str:
        user = user_of(request).user
        assert user is not None
        return user

    async def create_group(self, request: Any) -> bytes:
        body = object_of(request, "server_group", self._max_body)
        rules: dict[str, int] = {}
        if _at(request, 64):
            unknown = set(body) - {"name", "policy", "rules"}
            if unknown:
                raise errors.BadRequest(f"Unknown server group field"
                                        f" {sorted(unknown)[0][:40]!r} (from 2.64 a group"
                                        " has one policy).")
            if "policy" not in body:
                raise errors.BadRequest("'policy' is a required property.")
            policy = check_policy(body["policy"], GROUP_POLICIES)
            rules = parse_rules(body.get("rules"), policy)
        else:
            unknown = set(body) - {"name", "policies"}
            if unknown:
                raise errors.BadRequest(
                    f"Unknown server group field {sorted(unknown)[0][:40]!r}.")
            policies = body.get("policies")
            if not isinstance(policies, list) or len(policies) != 1:
                raise errors.BadRequest("policies must be a list of exactly one policy.")
            policy = check_policy(policies[0], GROUP_POLICIES if _at(request, 15)
                                  else POLICIES_2_1)
        user = self._caller(request)
        group = await self._groups.create(user, scope_of(request) or user, body.get("name"),
                                          policy, rules)
        return json_body(request, {"server_group": group_view(group, request)})

    async def list_groups(self, request: Any) -> bytes:
        all_projects = (query(request, "all_projects") or "").lower() in ("1", "true", "yes")
        found = await self._groups.visible(self._caller(request), projects_of(request),
                                           is_admin(request), all_projects)
        return json_body(request, {"server_groups": [group_view(g, request)
                                                     for g in window(request, found)]})

    async def show_group(self, request: Any, group_id: str) -> bytes:
        group = await self._groups.get(self._caller(request), projects_of(request), group_id,
                                       is_admin(request))
        return json_body(request, {"server_group": group_view(group, request)})

    async def delete_group(self, request: Any, group_id: str) -> bytes:
        await self._groups.delete(self._caller(request), projects_of(request), group_id,
                                  is_admin(request))
        return empty(request, 204)
