"""The server group routes of the compute API (Nova's ``os-server-groups``
up to microversion 2.15), in both dialects; what groups are and how
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
``ComputeAPI`` mounts ``ServerGroupAPI.routes()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import (
    at_least,
    count,
    empty,
    is_admin,
    object_of,
    projects_of,
    query,
    scope_of,
    views_of,
)
from snfd.cyclades.model import GROUP_POLICIES, ServerGroup
from snfd.cyclades.server_groups import ServerGroups, check_policy
from snfd.web.app import json_body
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]
#: The policies Nova's microversion 2.1 accepts.
POLICIES_2_1 = ("affinity", "anti-affinity")


def group_view(group: ServerGroup, request: Any = None) -> dict[str, Any]:
    """A group as Nova shows it; from 2.13 with its project and user."""
    out = {"id": group.id, "name": group.name, "policies": [group.policy],
           "members": [str(m) for m in group.members], "metadata": {}}
    if request is not None and views_of(request).negotiates and at_least(request, 13):
        out.update(project_id=group.project, user_id=group.userid)
    return out


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
        unknown = set(body) - {"name", "policies"}
        if unknown:
            raise errors.BadRequest(f"Unknown server group field {sorted(unknown)[0][:40]!r}.")
        policies = body.get("policies")
        if not isinstance(policies, list) or len(policies) != 1:
            raise errors.BadRequest("policies must be a list of exactly one policy.")
        soft = views_of(request).negotiates and at_least(request, 15)
        policy = check_policy(policies[0], GROUP_POLICIES if soft else POLICIES_2_1)
        user = self._caller(request)
        group = await self._groups.create(user, scope_of(request) or user, body.get("name"),
                                          policy)
        return json_body(request, {"server_group": group_view(group, request)})

    async def list_groups(self, request: Any) -> bytes:
        all_projects = (query(request, "all_projects") or "").lower() in ("1", "true", "yes")
        found = await self._groups.visible(self._caller(request), projects_of(request),
                                           is_admin(request), all_projects)
        offset = query(request, "offset")
        if offset is not None:
            found = found[count(offset, "offset"):]
        limit = query(request, "limit")
        if limit is not None:
            found = found[:count(limit, "limit")]
        return json_body(request, {"server_groups": [group_view(g, request) for g in found]})

    async def show_group(self, request: Any, group_id: str) -> bytes:
        group = await self._groups.get(self._caller(request), projects_of(request), group_id,
                                       is_admin(request))
        return json_body(request, {"server_group": group_view(group, request)})

    async def delete_group(self, request: Any, group_id: str) -> bytes:
        await self._groups.delete(self._caller(request), projects_of(request), group_id,
                                  is_admin(request))
        return empty(request, 204)
