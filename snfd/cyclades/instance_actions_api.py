"""The instance action routes of the compute API (Nova's
``os-instance-actions``), in both dialects; what is recorded is
``snfd.cyclades.actions``.

- ``GET /servers/<id>/os-instance-actions``: the server's actions,
  newest first (whoever may see the server may see them).
- ``GET /servers/<id>/os-instance-actions/<request id>``: one action with
  its ``events``, one per opcode of the Ganeti job the request submitted
  (``event`` is the opcode's name, lowercased, ``result`` ``Success`` or
  ``Error`` once it ended); 404 for a request that did not act on it.

Nova's later microversions:

- 2.21: a deleted server's actions are listed and shown (before: 404), to
  whoever could see it (its owner, its project's members, administrators).
- 2.51: events are shown to everyone who may see the action (they always
  were here; Nova's ``traceback`` is never shown: Ganeti keeps none).
- 2.58: ``updated_at`` (the action's latest event, else its start); the
  listing is paged (``limit``, ``marker``: a request id, 400 when it is
  not one of the server's) with a ``links`` ``next`` when the page is full,
  and filtered by ``changes-since`` (``updated_at`` at or after it); other
  query parameters are 400.
- 2.62: each event shows ``hostId`` (Nova's hash of the project and the
  compute host, the server's backend) and, to administrators, ``host``.
- 2.66: ``changes-before`` (``updated_at`` at or before it; 400 when it
  is before ``changes-since``).

``ComputeAPI`` mounts ``InstanceActionAPI.routes()``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.actions import InstanceActions
from snfd.cyclades.compute_http import (
    at_least,
    changes_window,
    in_window,
    is_admin,
    next_links,
    only_params,
    paged,
    scope_of,
    views_of,
)
from snfd.cyclades.compute_views import nova_time
from snfd.cyclades.model import InstanceAction, JobEvent, Server
from snfd.web.app import json_body
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]


def host_id(project: str, host: str | None) -> str:
    """Nova's ``hostId``: a host named without naming it, per project
    ("" for none)."""
    if not host:
        return ""
    return hashlib.sha224((project + host).encode("utf-8")).hexdigest()


def _event_view(action: InstanceAction, event: JobEvent,
                version: tuple[int, int], admin: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event.opcode.lower(),
                           "start_time": nova_time(event.start_time),
                           "finish_time": nova_time(event.finish_time),
                           "result": event.result}
    if version >= (2, 62):
        if admin:
            out["host"] = action.host or ""
        out["hostId"] = host_id(action.project, action.host)
    return out


def action_view(action: InstanceAction, events: bool = False,
                version: tuple[int, int] = (2, 1), admin: bool = False) -> dict[str, Any]:
    """An action as Nova shows it at ``version``; with its ``events``."""
    out: dict[str, Any] = {
        "action": action.action, "instance_uuid": str(action.server_id),
        "request_id": action.request_id, "user_id": action.userid,
        "project_id": action.project, "start_time": nova_time(action.start_time),
        "message": "Error" if action.failed else None}
    if version >= (2, 58):
        out["updated_at"] = nova_time(action.updated)
    if events:
        out["events"] = [_event_view(action, e, version, admin) for e in action.events]
    return out


def _version(request: Any) -> tuple[int, int]:
    version: tuple[int, int] = getattr(request, "microversion", (2, 1))
    return version if views_of(request).negotiates else (2, 1)


class InstanceActionAPI:
    """See the module docstring.

    @param server: the compute API's lookup of a server the caller may
        see (404 otherwise, and for a deleted one in Nova's dialect):
        ``await server(request, server_id)``.
    """

    def __init__(self, actions: InstanceActions,
                 server: Callable[[Any, str], Awaitable[Any]]):
        self._actions = actions
        self._server = server

    def routes(self) -> list[tuple[str, str, Handler]]:
        s = "/servers/<server_id>/os-instance-actions"
        return [("GET", s, self.list_actions),
                ("GET", s + "/<request_id>", self.show_action)]

    async def _find(self, request: Any, server_id: str) -> Server:
        """The server whose actions are asked for; from 2.21 a deleted one
        too, for whoever could see it alive."""
        try:
            found: Server = await self._server(request, server_id)
            return found
        except errors.NotFound:
            if not (views_of(request).negotiates and at_least(request, 21)):
                raise
        deleted = await self._actions.server(server_id)
        caller = user_of(request)
        if deleted is None or not deleted.deleted or not (
                caller.is_admin or deleted.userid == caller.user
                or deleted.project == scope_of(request)):
            raise errors.NotFound(f"Server {server_id[:40]} not found.")
        return deleted

    async def list_actions(self, request: Any, server_id: str) -> bytes:
        version = _version(request)
        if version >= (2, 58):
            only_params(request, ("limit", "marker", "changes-since")
                        + (("changes-before",) if version >= (2, 66) else ()))
        server = await self._find(request, server_id)
        found = await self._actions.of_server(server.id)
        if version < (2, 58):
            return json_body(request, {"instanceActions": [action_view(a) for a in found]})
        since, until = changes_window(request, before=version >= (2, 66))
        shown = paged(request, found, lambda a: a.request_id,
                      lambda a: in_window(a.updated, since, until))
        out: dict[str, Any] = {"instanceActions": [action_view(a, version=version)
                                                   for a in shown]}
        links = next_links(request, len(shown), shown[-1].request_id if shown else None,
                           f"servers/{server.id}/os-instance-actions")
        if links:
            out["links"] = links
        return json_body(request, out)

    async def show_action(self, request: Any, server_id: str, request_id: str) -> bytes:
        server = await self._find(request, server_id)
        found = await self._actions.one(server.id, request_id)
        if found is None:
            raise errors.NotFound(f"Action for request_id {request_id[:80]} on instance"
                                  f" {server_id[:40]} not found")
        return json_body(request, {"instanceAction": action_view(
            found, events=True, version=_version(request), admin=is_admin(request))})
