"""Nova's administrators' views of the cloud's machinery, in both dialects
(403 for anyone else): ``os-hypervisors`` (Ganeti nodes), ``os-services``
and ``os-hosts`` (backends and snfd nodes), as microversion 2.1 answers
them, with 2.11's forced-down services (what each is here is
``snfd.cyclades.hosts``), and
``os-aggregates`` (groups of backends, ``snfd.cyclades.aggregates``).

Ganeti's RAPI reports no node uptime and no hypervisor version: uptime
answers 501 for a node that exists, and ``hypervisor_version`` is 0
(unknown).  Host power actions (startup, shutdown, reboot) are 501 too:
Ganeti clusters are not powered from the compute API.

Also for administrators: ``os-migrations`` (the live and cold migrations
and evacuations administrators asked for, inside a cluster:
``Servers.migrate``; resizes are not migrations here, Ganeti resizes in
place), ``os-instance_usage_audit_log`` (usage here is computed on
demand from the servers' lifetimes, ``usage_api``, so every compute host
has "done" any period; the report counts the servers that existed in
it), and ``os-server-external-events`` (Neutron's notices about a
server's ports: checked, acknowledged and logged; Ganeti needs none of
them).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.logger import Logger

from snfd import errors
from snfd.cyclades.aggregates import Aggregates, check_metadata
from snfd.cyclades.compute_http import at_least, body_of, object_of, query, require_admin
from snfd.cyclades.compute_views import nova_time
from snfd.cyclades.hosts import COMPUTE, INTERNAL_ZONE, ZONE, Hosts, Hypervisor, Service
from snfd.cyclades.model import Aggregate
from snfd.cyclades.usage_api import parse_time
from snfd.web.app import json_body, json_object

Handler = Callable[..., Awaitable[bytes]]
log = Logger(namespace="snfd.cyclades")
_GIB = 1024  # Ganeti reports disk in MiB
#: The events of ``os-server-external-events`` at microversion 2.1.
EVENT_NAMES = ("network-changed", "network-vif-plugged", "network-vif-unplugged",
               "network-vif-deleted")
EVENT_STATUSES = ("failed", "completed", "in-progress")


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


def aggregate_view(a: Aggregate, brief: bool = False) -> dict[str, Any]:
    """An aggregate as Nova shows it (``brief``: as its create answers)."""
    out: dict[str, Any] = {"id": a.id, "name": a.name, "availability_zone": a.availability_zone,
                           "created_at": _time(a.created), "updated_at": _time(a.updated),
                           "deleted": False, "deleted_at": None}
    if not brief:
        out.update(hosts=list(a.hosts), metadata=dict(a.metadata))
    return out


class AdminAPI:
    """See the module docstring."""

    def __init__(self, hosts: Hosts, aggregates: Aggregates, servers: Any, max_body: int):
        self._hosts = hosts
        self._aggregates = aggregates
        self._servers = servers
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
            ("GET", "/os-migrations", self.migrations),
            ("GET", "/os-instance_usage_audit_log", self.audit_logs),
            ("GET", "/os-instance_usage_audit_log/<before>", self.audit_log),
            ("POST", "/os-server-external-events", self.external_events),
            ("GET", "/os-aggregates", self.aggregates),
            ("POST", "/os-aggregates", self.create_aggregate),
            ("GET", "/os-aggregates/<aggregate_id>", self.aggregate),
            ("PUT", "/os-aggregates/<aggregate_id>", self.update_aggregate),
            ("DELETE", "/os-aggregates/<aggregate_id>", self.delete_aggregate),
            ("POST", "/os-aggregates/<aggregate_id>/action", self.aggregate_action),
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
        views = [service_view(s) for s in found]
        if at_least(request, 11):
            for view, s in zip(views, found, strict=True):
                view["forced_down"] = s.backend is not None and s.backend.offline
        return json_body(request, {"services": views})

    async def update_service(self, request: Any, action: str) -> bytes:
        """``enable``, ``disable``, ``disable-log-reason`` of a backend's
        compute service, named by ``host`` and ``binary``."""
        require_admin(request, "os_compute_api:os-services:update")
        if action == "force-down" and at_least(request, 11):
            return await self._force_down(request)
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

    async def _force_down(self, request: Any) -> bytes:
        """2.11's ``force-down``: a backend's compute service marked down
        (``forced_down`` true: the backend is offline, so no new server
        goes there and it shows ``down``) or back up."""
        body = json_object(body_of(request, self._max_body))
        host, binary, forced = body.get("host"), body.get("binary"), body.get("forced_down")
        if not isinstance(host, str) or not isinstance(binary, str) \
                or not isinstance(forced, bool):
            raise errors.BadRequest("host, binary and forced_down (true or false) are"
                                    " required.")
        if binary != COMPUTE:
            raise errors.NotFound(f"Service {binary[:40]} on host {host[:80]} not found"
                                  " (only nova-compute services can be forced down).")
        await self._hosts.set_backend(host, offline=forced)
        return json_body(request, {"service": {"host": host, "binary": binary,
                                               "forced_down": forced}})

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
        for s in await self._hosts.servers_on(backend):
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

    # -- migrations, usage audit, external events ------------------------------------

    async def migrations(self, request: Any) -> bytes:
        """``GET /os-migrations[?instance_uuid=&status=&source_compute=|host=]``:
        the moves administrators asked for, newest first."""
        require_admin(request, "os_compute_api:os-migrations:index")
        found = await self._servers.migrations()
        wanted = {"instance_uuid": query(request, "instance_uuid"),
                  "status": query(request, "status"),
                  "source_compute": query(request, "source_compute") or query(request, "host")}
        out = []
        for m in found:
            view = {"id": m.id, "status": m.status, "instance_uuid": str(m.server_id),
                    "source_node": m.source_node, "source_compute": m.source_compute,
                    "dest_node": m.dest_node, "dest_compute": m.source_compute,
                    "dest_host": None, "old_instance_type_id": m.flavor_id,
                    "new_instance_type_id": m.flavor_id, "created_at": nova_time(m.created),
                    "updated_at": nova_time(m.finished)}
            if all(value is None or view[key] == value for key, value in wanted.items()):
                out.append(view)
        return json_body(request, {"migrations": out})

    async def _audit(self, before: datetime.datetime) -> dict[str, Any]:
        """The audit of the last whole month before ``before``."""
        end = before.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        start = (end - datetime.timedelta(days=1)).replace(day=1)
        servers = await self._servers.during(start, end)
        log = {}
        for backend in await self._hosts.backends():
            count = sum(1 for s in servers if s.backend_id == backend.id)
            log[backend.clustername] = {"state": "DONE", "instances": count, "errors": 0,
                                        "message": f"Usage of {count} servers computed"
                                                   " from their lifetimes."}
        return {"hosts_not_run": [], "log": log, "num_hosts": len(log),
                "num_hosts_done": len(log), "num_hosts_not_run": 0, "num_hosts_running": 0,
                "overall_status": "ALL hosts done. 0 errors.",
                "period_beginning": start.replace(tzinfo=None).isoformat(sep=" "),
                "period_ending": end.replace(tzinfo=None).isoformat(sep=" "),
                "total_errors": 0, "total_instances": len(servers)}

    async def audit_logs(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-instance-usage-audit-log:list")
        audit = await self._audit(self._servers.now())
        return json_body(request, {"instance_usage_audit_logs": audit})

    async def audit_log(self, request: Any, before: str) -> bytes:
        require_admin(request, "os_compute_api:os-instance-usage-audit-log:show")
        audit = await self._audit(parse_time(before, "before"))
        return json_body(request, {"instance_usage_audit_log": audit})

    async def external_events(self, request: Any) -> bytes:
        """Each event is answered 200 (the server exists), 404, or 422 (an
        event this cloud does not know); the whole 200, 207 or 404."""
        require_admin(request, "os_compute_api:os-server-external-events:create")
        events = json_object(body_of(request, self._max_body)).get("events")
        if not isinstance(events, list) or not events:
            raise errors.BadRequest('The request needs a non-empty "events" list.')
        out = []
        for event in events:
            if not isinstance(event, dict) or event.get("name") not in EVENT_NAMES \
                    or not isinstance(event.get("server_uuid"), str) \
                    or event.get("status", "completed") not in EVENT_STATUSES \
                    or set(event) - {"name", "server_uuid", "status", "tag"}:
                raise errors.BadRequest(f"Bad event {str(event)[:120]}: name one of"
                                        f" {', '.join(EVENT_NAMES)}, a server_uuid, and"
                                        " perhaps a status and a tag.")
            shown = {"status": "completed", **event}
            owner, _ = (await self._servers.owner_of(int(event["server_uuid"]))
                        if event["server_uuid"].isdigit() and len(event["server_uuid"]) < 18
                        else (None, None))
            shown["code"] = 200 if owner is not None else 404
            if owner is not None:
                log.info("external event {name} for server {server} acknowledged",
                         name=event["name"], server=event["server_uuid"])
            out.append(shown)
        codes = {e["code"] for e in out}
        return json_body(request, {"events": out},
                         200 if codes == {200} else 404 if codes == {404} else 207)

    # -- aggregates --------------------------------------------------------------------

    async def aggregates(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:index")
        return json_body(request, {"aggregates": [
            aggregate_view(a) for a in await self._aggregates.all()]})

    async def create_aggregate(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:create")
        body = object_of(request, "aggregate", self._max_body)
        if "name" not in body or set(body) - {"name", "availability_zone"}:
            raise errors.BadRequest("An aggregate needs a name (and perhaps an"
                                    " availability_zone), nothing else.")
        made = await self._aggregates.create(body["name"], body.get("availability_zone"))
        return json_body(request, {"aggregate": aggregate_view(made, brief=True)})

    async def aggregate(self, request: Any, aggregate_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:show")
        found = await self._aggregates.get(aggregate_id)
        return json_body(request, {"aggregate": aggregate_view(found)})

    async def update_aggregate(self, request: Any, aggregate_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:update")
        body = object_of(request, "aggregate", self._max_body)
        found = await self._aggregates.get(aggregate_id)
        changed = await self._aggregates.update(found, body)
        return json_body(request, {"aggregate": aggregate_view(changed)})

    async def delete_aggregate(self, request: Any, aggregate_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:delete")
        await self._aggregates.delete(await self._aggregates.get(aggregate_id))
        request.setResponseCode(200)
        return b""

    async def aggregate_action(self, request: Any, aggregate_id: str) -> bytes:
        """``add_host`` / ``remove_host`` ``{"host": <cluster name>}``, or
        ``set_metadata`` ``{"metadata": {...}}``: the aggregate after."""
        require_admin(request, "os_compute_api:os-aggregates:add_host")
        body = json_object(body_of(request, self._max_body))
        if len(body) != 1 or not isinstance(next(iter(body.values())), dict):
            raise errors.BadRequest("An aggregate action has exactly one of add_host,"
                                    " remove_host or set_metadata.")
        action, args = next(iter(body.items()))
        found = await self._aggregates.get(aggregate_id)
        if action == "set_metadata":
            changed = await self._aggregates.set_metadata(
                found, check_metadata(args.get("metadata")))
        elif action in ("add_host", "remove_host"):
            host = args.get("host")
            if not isinstance(host, str) or not host or set(args) != {"host"}:
                raise errors.BadRequest(f"{action} needs a host, nothing else.")
            backend = await self._hosts.backend(host)
            if action == "add_host":
                changed = await self._aggregates.add_host(found, backend.id, host)
            else:
                changed = await self._aggregates.remove_host(found, backend.id, host)
        else:
            raise errors.BadRequest(f"Unknown aggregate action {action[:40]!r}.")
        return json_body(request, {"aggregate": aggregate_view(changed)})
