"""Nova's administrators' views of the cloud's machinery, in both dialects
(403 for anyone else): ``os-hypervisors`` (Ganeti nodes), ``os-services``
and ``os-hosts`` (backends and snfd nodes), as microversion 2.1 answers
them; what each is here is ``snfd.cyclades.hosts``.

Ganeti's RAPI reports no node uptime and no hypervisor version: uptime
answers 501 for a node that exists, and ``hypervisor_version`` is 0
(unknown).  Host power actions (startup, shutdown, reboot) are 501 too:
Ganeti clusters are not powered from the compute API.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

from snfd import errors
from snfd.cyclades.compute_http import body_of, query, require_admin
from snfd.cyclades.compute_views import nova_time
from snfd.cyclades.hosts import COMPUTE, INTERNAL_ZONE, ZONE, Hosts, Hypervisor, Service
from snfd.web.app import json_body, json_object

Handler = Callable[..., Awaitable[bytes]]
_GIB = 1024  # Ganeti reports disk in MiB


def _gb(mib: Any) -> int:
    return int(mib or 0) // _GIB


def _time(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    return nova_time(value) if isinstance(value, datetime.datetime) else None


def hypervisor_brief(h: Hypervisor) -> dict[str, Any]:
    return {"id": h.id, "hypervisor_hostname": h.hostname,
            "state": "up" if h.up else "down",
            "status": "enabled" if h.enabled else "disabled"}


def hypervisor_detail(h: Hypervisor) -> dict[str, Any]:
    n = h.node
    mtotal, mfree = int(n.get("mtotal") or 0), int(n.get("mfree") or 0)
    dtotal, dfree = _gb(n.get("dtotal")), _gb(n.get("dfree"))
    cpu_info = {"sockets": n.get("csockets"), "cores": n.get("cnos"),
                "numa_nodes": n.get("cnodes"), "total": n.get("ctotal")}
    return {
        **hypervisor_brief(h),
        "hypervisor_type": h.backend.hypervisor, "hypervisor_version": 0,
        "host_ip": n.get("pip") or "0.0.0.0",
        "cpu_info": json.dumps({k: v for k, v in cpu_info.items() if v is not None}),
        "current_workload": 0, "running_vms": int(n.get("pinst_cnt") or len(h.servers)),
        "vcpus": int(n.get("ctotal") or 0), "vcpus_used": sum(s.flavor.cpu for s in h.servers),
        "memory_mb": mtotal, "memory_mb_used": max(0, mtotal - mfree), "free_ram_mb": mfree,
        "local_gb": dtotal, "local_gb_used": max(0, dtotal - dfree), "free_disk_gb": dfree,
        "disk_available_least": dfree,
        "service": {"host": h.backend.clustername, "id": h.backend.id,
                    "disabled_reason": None},
    }


def service_view(s: Service) -> dict[str, Any]:
    return {"id": s.id, "binary": s.binary, "host": s.host, "zone": s.zone,
            "status": "enabled" if s.enabled else "disabled",
            "state": "up" if s.up else "down", "updated_at": _time(s.updated_at),
            "disabled_reason": None}


class AdminAPI:
    """See the module docstring."""

    def __init__(self, hosts: Hosts, max_body: int):
        self._hosts = hosts
        self._max_body = max_body

    def routes(self) -> list[tuple[str, str, Handler]]:
        h = "/os-hypervisors"
        return [
            ("GET", h, self.hypervisors),
            ("GET", h + "/detail", self.hypervisors_detail),
            ("GET", h + "/statistics", self.hypervisor_statistics),
            ("GET", h + "/<hypervisor_id>", self.hypervisor),
            ("GET", h + "/<hypervisor_id>/uptime", self.hypervisor_uptime),
            ("GET", h + "/<pattern>/search", self.hypervisor_search),
            ("GET", h + "/<pattern>/servers", self.hypervisor_servers),
            ("GET", "/os-services", self.services),
            ("PUT", "/os-services/<action>", self.update_service),
            ("GET", "/os-hosts", self.hosts),
            ("GET", "/os-hosts/<host>", self.host),
            ("PUT", "/os-hosts/<host>", self.update_host),
            ("GET", "/os-hosts/<host>/<power>", self.host_power),
        ]

    # -- hypervisors -------------------------------------------------------------------

    async def hypervisors(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:list")
        return json_body(request, {"hypervisors": [
            hypervisor_brief(h) for h in await self._hosts.hypervisors()]})

    async def hypervisors_detail(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:list-detail")
        return json_body(request, {"hypervisors": [
            hypervisor_detail(h) for h in await self._hosts.hypervisors()]})

    async def hypervisor(self, request: Any, hypervisor_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:show")
        found = await self._hosts.hypervisor(hypervisor_id)
        return json_body(request, {"hypervisor": hypervisor_detail(found)})

    async def hypervisor_statistics(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:statistics")
        details = [hypervisor_detail(h) for h in await self._hosts.hypervisors()]
        keys = ("current_workload", "disk_available_least", "free_disk_gb", "free_ram_mb",
                "local_gb", "local_gb_used", "memory_mb", "memory_mb_used", "running_vms",
                "vcpus", "vcpus_used")
        stats: dict[str, Any] = {k: sum(d[k] for d in details) for k in keys}
        return json_body(request, {"hypervisor_statistics": {"count": len(details), **stats}})

    async def hypervisor_uptime(self, request: Any, hypervisor_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:uptime")
        await self._hosts.hypervisor(hypervisor_id)
        raise errors.NotImplementedFault("Ganeti does not report the uptime of its nodes.")

    async def hypervisor_search(self, request: Any, pattern: str) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:search")
        return json_body(request, {"hypervisors": [
            hypervisor_brief(h) for h in await self._hosts.search(pattern)]})

    async def hypervisor_servers(self, request: Any, pattern: str) -> bytes:
        """The matching hypervisors with the servers primary on them."""
        require_admin(request, "os_compute_api:os-hypervisors:servers")
        out = []
        for h in await self._hosts.search(pattern):
            shown = hypervisor_brief(h)
            if h.servers:
                shown["servers"] = [{"uuid": str(s.id), "name": s.instance_name}
                                    for s in h.servers]
            out.append(shown)
        return json_body(request, {"hypervisors": out})

    # -- services --------------------------------------------------------------------

    async def services(self, request: Any) -> bytes:
        """``?host=`` and ``?binary=`` filter; other parameters are ignored."""
        require_admin(request, "os_compute_api:os-services:list")
        found = await self._hosts.services()
        for key in ("host", "binary"):
            wanted = query(request, key)
            if wanted is not None:
                found = [s for s in found if getattr(s, key) == wanted]
        return json_body(request, {"services": [service_view(s) for s in found]})

    async def update_service(self, request: Any, action: str) -> bytes:
        """``enable``, ``disable``, ``disable-log-reason`` of a backend's
        compute service, named by ``host`` and ``binary``."""
        require_admin(request, "os_compute_api:os-services:update")
        if action not in ("enable", "disable", "disable-log-reason"):
            raise errors.NotFound(f"Unknown service action {action[:40]!r}.")
        body = json_object(body_of(request, self._max_body))
        host, binary = body.get("host"), body.get("binary")
        if not isinstance(host, str) or not isinstance(binary, str):
            raise errors.BadRequest("host and binary are required.")
        reason = body.get("disabled_reason")
        if action == "disable-log-reason" and (not isinstance(reason, str)
                                              or not 1 <= len(reason) <= 255):
            raise errors.BadRequest("disabled_reason (1 to 255 characters) is required.")
        if binary != COMPUTE:
            raise errors.NotFound(f"Service {binary[:40]} on host {host[:80]} not found"
                                  " (only nova-compute services can be changed).")
        await self._hosts.set_backend(host, drained=action != "enable")
        shown: dict[str, Any] = {"host": host, "binary": binary,
                                 "status": "enabled" if action == "enable" else "disabled"}
        if action == "disable-log-reason":
            shown["disabled_reason"] = reason
        return json_body(request, {"service": shown})

    # -- hosts ---------------------------------------------------------------------------

    async def hosts(self, request: Any) -> bytes:
        """Each backend (``compute``, zone ``nova``) and each snfd node
        (``snfd``, zone ``internal``); ``?zone=`` filters."""
        require_admin(request, "os_compute_api:os-hosts:list")
        found: dict[str, dict[str, str]] = {}
        for s in await self._hosts.services():
            service = "compute" if s.binary == COMPUTE else "snfd"
            found.setdefault(s.host, {"host_name": s.host, "service": service,
                                      "zone": ZONE if s.binary == COMPUTE else INTERNAL_ZONE})
        zone = query(request, "zone")
        hosts = [h for h in found.values() if not zone or h["zone"] == zone]
        return json_body(request, {"hosts": hosts})

    async def host(self, request: Any, host: str) -> bytes:
        """A backend's resources: total, in use now, and by project (the
        servers' flavors)."""
        require_admin(request, "os_compute_api:os-hosts:show")
        backend = await self._hosts.backend(host)

        def row(project: str, cpu: int, memory: int, disk: int) -> dict[str, Any]:
            return {"resource": {"host": host, "project": project, "cpu": cpu,
                                 "memory_mb": memory, "disk_gb": disk}}

        rows = [row("(total)", backend.ctotal, backend.mtotal, _gb(backend.dtotal)),
                row("(used_now)", 0, max(0, backend.mtotal - backend.mfree),
                    max(0, _gb(backend.dtotal) - _gb(backend.dfree)))]
        per_project: dict[str, list[int]] = {}
        for h in await self._hosts.hypervisors():
            if h.backend.id != backend.id:
                continue
            for s in h.servers:
                used = per_project.setdefault(s.project, [0, 0, 0])
                used[0] += s.flavor.cpu
                used[1] += s.flavor.ram
                used[2] += s.flavor.disk
        cpus = sum(u[0] for u in per_project.values())
        rows[1]["resource"]["cpu"] = cpus
        rows.append(row("(used_max)", cpus, sum(u[1] for u in per_project.values()),
                        sum(u[2] for u in per_project.values())))
        rows += [row(p, *u) for p, u in sorted(per_project.items())]
        return json_body(request, {"host": rows})

    async def update_host(self, request: Any, host: str) -> bytes:
        """``status`` enable/disable drains the backend or not;
        ``maintenance_mode`` enable/disable takes it offline or not."""
        require_admin(request, "os_compute_api:os-hosts:update")
        body = json_object(body_of(request, self._max_body))
        unknown = set(body) - {"status", "maintenance_mode"}
        if unknown or not body:
            raise errors.BadRequest("Give status and/or maintenance_mode"
                                    " (enable or disable), nothing else.")
        for key in body:
            if body[key] not in ("enable", "disable"):
                raise errors.BadRequest(f"{key} must be enable or disable.")
        flags: dict[str, bool] = {}
        if "status" in body:
            flags["drained"] = body["status"] == "disable"
        if "maintenance_mode" in body:
            flags["offline"] = body["maintenance_mode"] == "enable"
        await self._hosts.set_backend(host, **flags)
        shown = {"host": host}
        if "status" in body:
            shown["status"] = "enabled" if body["status"] == "enable" else "disabled"
        if "maintenance_mode" in body:
            shown["maintenance_mode"] = ("on_maintenance" if body["maintenance_mode"] ==
                                         "enable" else "off_maintenance")
        return json_body(request, shown)

    async def host_power(self, request: Any, host: str, power: str) -> bytes:
        require_admin(request, "os_compute_api:os-hosts:start")
        if power not in ("startup", "shutdown", "reboot"):
            raise errors.NotFound(f"Unknown host action {power[:40]!r}.")
        await self._hosts.backend(host)
        raise errors.NotImplementedFault("Ganeti clusters are not powered on or off"
                                         " through the compute API.")
