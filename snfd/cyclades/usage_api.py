"""Nova's ``os-simple-tenant-usage``: what each project's servers used over
a period, from the servers' lifetimes and flavors (``cyclades_servers``:
created, and deleted at their last update).  A server counts for the
hours it existed inside ``[start, end]``; its vcpus, memory and disk are
its flavor's.  Administrators list every project (``GET
/os-simple-tenant-usage``) and show any; others show the project their
token is scoped to, or their base project.

``start`` and ``end`` are ISO 8601 times (naive means UTC), ``end``
defaulting to now and ``start`` to ``end``; a bad time, or a start after
the end, is 400.  From microversion 2.40 the servers are paged (``limit``,
at most ``MAX_LIMIT``, and ``marker``, a server id; by creation): a page
holds the usage of its servers only, with a ``next`` link
(``tenant_usages_links``, ``tenant_usage_links``) when it is full.

Also here, for the admin APIs' later microversions: Nova's paging
(``paged``, ``next_links``), its ``changes-since``/``changes-before``
window (``changes_window``) and its strict query parameters
(``only_params``)."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import (
    at_least,
    next_links,
    paged,
    parse_time,
    projects_of,
    query,
    require_admin,
    views_of,
)
from snfd.cyclades.compute_views import nova_time, nova_vm_state
from snfd.cyclades.model import Server
from snfd.web.app import json_body
from snfd.web.auth import user_of

UTC = datetime.UTC
Handler = Callable[..., Awaitable[bytes]]


def _iso(when: datetime.datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).isoformat()


def server_usage(server: Server, start: datetime.datetime, end: datetime.datetime,
                 now: datetime.datetime) -> dict[str, Any]:
    created = server.created or start
    ended = server.updated if server.deleted and server.updated else None
    first, last = max(created, start), min(ended or now, end)
    hours = max(0.0, (last - first).total_seconds() / 3600)
    return {"instance_id": str(server.id), "name": server.name, "hours": hours,
            "memory_mb": server.flavor.ram, "local_gb": server.flavor.disk,
            "vcpus": server.flavor.cpu, "tenant_id": server.project,
            "flavor": server.flavor.name, "started_at": nova_time(created),
            "ended_at": nova_time(ended) if ended else None, "state": nova_vm_state(server),
            "uptime": int(max(0.0, ((ended or now) - created).total_seconds()))}


def tenant_usage(project: str, servers: list[Server], start: datetime.datetime,
                 end: datetime.datetime, now: datetime.datetime,
                 detailed: bool) -> dict[str, Any]:
    usages = [server_usage(s, start, end, now) for s in servers]
    out: dict[str, Any] = {
        "tenant_id": project, "start": _iso(start), "stop": _iso(end),
        "total_hours": sum(u["hours"] for u in usages),
        "total_vcpus_usage": sum(u["hours"] * u["vcpus"] for u in usages),
        "total_memory_mb_usage": sum(u["hours"] * u["memory_mb"] for u in usages),
        "total_local_gb_usage": sum(u["hours"] * u["local_gb"] for u in usages)}
    if detailed:
        out["server_usages"] = usages
    return out


class UsageAPI:
    """See the module docstring.

    @param servers: the ``Servers`` (their lifetimes, and the time).
    """

    def __init__(self, servers: Any):
        self._servers_of = servers

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/os-simple-tenant-usage", self.list_usage),
                ("GET", "/os-simple-tenant-usage/<project_id>", self.show_usage)]

    def _period(self, request: Any) -> tuple[datetime.datetime, datetime.datetime,
                                             datetime.datetime]:
        now: datetime.datetime = self._servers_of.now()
        end_text, start_text = query(request, "end"), query(request, "start")
        end = parse_time(end_text, "end") if end_text is not None else now
        start = parse_time(start_text, "start") if start_text is not None else end
        if start > end:
            raise errors.BadRequest("Invalid start time: the start time cannot occur after"
                                    " the end time.")
        return start, end, now

    async def _servers(self, request: Any, start: datetime.datetime,
                       end: datetime.datetime, project: str | None) -> list[Server]:
        """The servers of the period; from 2.40 one page of them, by
        creation (``paged``)."""
        found: list[Server] = await self._servers_of.during(start, end, project)
        if not _pages(request):
            return found
        found.sort(key=lambda s: (s.created or start, s.id))
        return paged(request, found, lambda s: str(s.id))

    async def list_usage(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-simple-tenant-usage:list")
        start, end, now = self._period(request)
        detailed = (query(request, "detailed") or "0").strip() == "1"
        by_project: dict[str, list[Server]] = {}
        servers = await self._servers(request, start, end, None)
        for server in servers:
            by_project.setdefault(server.project, []).append(server)
        out: dict[str, Any] = {"tenant_usages": [
            tenant_usage(p, found, start, end, now, detailed)
            for p, found in sorted(by_project.items())]}
        if _pages(request):
            links = next_links(request, len(servers), str(servers[-1].id) if servers else None,
                               "os-simple-tenant-usage")
            if links:
                out["tenant_usages_links"] = links
        return json_body(request, out)

    async def show_usage(self, request: Any, project_id: str) -> bytes:
        if not user_of(request).is_admin and project_id not in projects_of(request):
            raise errors.Forbidden(f"Project {project_id[:80]} is not the one of your token.")
        start, end, now = self._period(request)
        found = await self._servers(request, start, end, project_id)
        usage = tenant_usage(project_id, found, start, end, now, True) if found else {}
        out: dict[str, Any] = {"tenant_usage": usage}
        if _pages(request):
            links = next_links(request, len(found), str(found[-1].id) if found else None,
                               f"os-simple-tenant-usage/{project_id}")
            if links:
                out["tenant_usage_links"] = links
        return json_body(request, out)


def _pages(request: Any) -> bool:
    """Whether the usage is paged (Nova's microversion 2.40)."""
    return bool(views_of(request).negotiates and at_least(request, 40))
