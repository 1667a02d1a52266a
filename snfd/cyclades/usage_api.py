"""Nova's ``os-simple-tenant-usage``: what each project's servers used over
a period, from the servers' lifetimes and flavors (``cyclades_servers``:
created, and deleted at their last update).  A server counts for the
hours it existed inside ``[start, end]``; its vcpus, memory and disk are
its flavor's.  Administrators list every project (``GET
/os-simple-tenant-usage``) and show any; others show the project their
token is scoped to, or their base project.

``start`` and ``end`` are ISO 8601 times (naive means UTC), ``end``
defaulting to now and ``start`` to ``end``; a bad time, or a start after
the end, is 400."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import projects_of, query, require_admin
from snfd.cyclades.compute_views import nova_time, nova_vm_state
from snfd.cyclades.model import Server
from snfd.web.app import json_body
from snfd.web.auth import user_of

UTC = datetime.UTC
Handler = Callable[..., Awaitable[bytes]]
_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f",
            "%Y-%m-%d %H:%M:%S")


def parse_time(value: str, what: str) -> datetime.datetime:
    """A period bound as Nova takes it (UTC when naive), or 400."""
    text = value.strip()
    for fmt in _FORMATS:
        try:
            when = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return when.replace(tzinfo=UTC)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.BadRequest(f"Invalid {what} time {text[:40]!r}: ISO 8601, such as"
                                " 2026-12-03T10:00:00.") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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

    async def _servers(self, start: datetime.datetime, end: datetime.datetime,
                       project: str | None) -> list[Server]:
        found: list[Server] = await self._servers_of.during(start, end, project)
        return found

    async def list_usage(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-simple-tenant-usage:list")
        start, end, now = self._period(request)
        detailed = (query(request, "detailed") or "0").strip() == "1"
        by_project: dict[str, list[Server]] = {}
        for server in await self._servers(start, end, None):
            by_project.setdefault(server.project, []).append(server)
        return json_body(request, {"tenant_usages": [
            tenant_usage(p, found, start, end, now, detailed)
            for p, found in sorted(by_project.items())]})

    async def show_usage(self, request: Any, project_id: str) -> bytes:
        if not user_of(request).is_admin and project_id not in projects_of(request):
            raise errors.Forbidden(f"Project {project_id[:80]} is not the one of your token.")
        start, end, now = self._period(request)
        found = await self._servers(start, end, project_id)
        usage = tenant_usage(project_id, found, start, end, now, True) if found else {}
        return json_body(request, {"tenant_usage": usage})
