"""The instance action routes of the compute API (Nova's
``os-instance-actions`` at microversion 2.1), in both dialects; what is
recorded is ``snfd.cyclades.actions``.

- ``GET /servers/<id>/os-instance-actions``: the server's actions,
  newest first (whoever may see the server may see them).
- ``GET /servers/<id>/os-instance-actions/<request id>``: one action with
  its ``events``, one per opcode of the Ganeti job the request submitted
  (``event`` is the opcode's name, lowercased, ``result`` ``Success`` or
  ``Error`` once it ended); 404 for a request that did not act on it.

``ComputeAPI`` mounts ``InstanceActionAPI.routes()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.actions import InstanceActions
from snfd.cyclades.compute_views import nova_time
from snfd.cyclades.model import InstanceAction
from snfd.web.app import json_body

Handler = Callable[..., Awaitable[bytes]]


def action_view(action: InstanceAction, events: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": action.action, "instance_uuid": str(action.server_id),
        "request_id": action.request_id, "user_id": action.userid,
        "project_id": action.project, "start_time": nova_time(action.start_time),
        "message": "Error" if action.failed else None}
    if events:
        out["events"] = [{"event": e.opcode.lower(), "start_time": nova_time(e.start_time),
                          "finish_time": nova_time(e.finish_time), "result": e.result}
                         for e in action.events]
    return out


class InstanceActionAPI:
    """See the module docstring.

    @param server: the compute API's lookup of a server the caller may
        see (404 otherwise): ``await server(request, server_id)``.
    """

    def __init__(self, actions: InstanceActions,
                 server: Callable[[Any, str], Awaitable[Any]]):
        self._actions = actions
        self._server = server

    def routes(self) -> list[tuple[str, str, Handler]]:
        s = "/servers/<server_id>/os-instance-actions"
        return [("GET", s, self.list_actions),
                ("GET", s + "/<request_id>", self.show_action)]

    async def list_actions(self, request: Any, server_id: str) -> bytes:
        server = await self._server(request, server_id)
        found = await self._actions.of_server(server.id)
        return json_body(request, {"instanceActions": [action_view(a) for a in found]})

    async def show_action(self, request: Any, server_id: str, request_id: str) -> bytes:
        server = await self._server(request, server_id)
        found = await self._actions.one(server.id, request_id)
        if found is None:
            raise errors.NotFound(f"Action for request_id {request_id[:80]} on instance"
                                  f" {server_id[:40]} not found")
        return json_body(request, {"instanceAction": action_view(found, events=True)})
