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

Nova's later microversions (each only from its version on):

- 2.22-2.24, 2.65: a server's in-progress live migrations
  (``/servers/<id>/migrations[/<id>]``, 2.23), ``force_complete`` (2.22)
  and abort (``DELETE``, 2.24): Ganeti completes a live migration on its
  own and cannot stop one that runs (409); from 2.65 one whose job is
  still queued is aborted by cancelling that job.
- 2.23: ``os-migrations`` shows ``migration_type`` and, for in-progress
  live migrations, ``links``; 2.59: ``uuid``, paging (``limit``,
  ``marker`` a uuid), ``changes-since``, ``migrations_links``, and other
  query parameters are 400; 2.66: ``changes-before``.
- 2.28: a hypervisor's ``cpu_info`` is an object; 2.33: hypervisor
  listings are paged (``hypervisors_links``); 2.53: hypervisors and
  services are named by UUID, ``hypervisor_hostname_pattern`` and
  ``with_servers`` replace ``/search`` and ``/servers`` (404),
  ``PUT /os-services/<uuid>`` changes a compute service and ``DELETE``
  removes it (its backend).
- 2.41: aggregates show their ``uuid``; 2.43: ``os-hosts`` is gone (404).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.logger import Logger

from snfd import errors
from snfd.cyclades.aggregates import Aggregates, check_metadata
from snfd.cyclades.compute_http import (
    at_least,
    body_of,
    changes_window,
    empty,
    in_window,
    int_id,
    next_links,
    object_of,
    only_params,
    paged,
    parse_time,
    query,
    require_admin,
    views_of,
)
from snfd.cyclades.compute_views import nova_time
from snfd.cyclades.flavors import parse_bool
from snfd.cyclades.hosts import (
    COMPUTE,
    INTERNAL_ZONE,
    ZONE,
    Hosts,
    Hypervisor,
    Service,
    is_uuid,
    service_uuid,
)
from snfd.cyclades.model import Aggregate, Migration, Server
from snfd.web.app import json_body, json_object

Handler = Callable[..., Awaitable[bytes]]
log = Logger(namespace="snfd.cyclades")
_GIB = 1024  # Ganeti reports disk in MiB
#: The events of ``os-server-external-events`` at microversion 2.1.
EVENT_NAMES = ("network-changed", "network-vif-plugged", "network-vif-unplugged",
               "network-vif-deleted")
EVENT_STATUSES = ("failed", "completed", "in-progress")
#: The statuses of a migration that is still going on here.
IN_PROGRESS = ("queued", "running")


def _version(request: Any) -> tuple[int, int]:
    """The request's microversion (Synnefo's dialect: 2.1)."""
    version: tuple[int, int] = getattr(request, "microversion", (2, 1))
    return version if views_of(request).negotiates else (2, 1)


def _gb(mib: Any) -> int:
    return int(mib or 0) // _GIB


def _time(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    return nova_time(value) if isinstance(value, datetime.datetime) else None


def hypervisor_brief(h: Hypervisor, version: tuple[int, int] = (2, 1)) -> dict[str, Any]:
    return {"id": h.uuid if version >= (2, 53) else h.id, "hypervisor_hostname": h.hostname,
            "state": "up" if h.up else "down",
            "status": "enabled" if h.enabled else "disabled"}


def hypervisor_detail(h: Hypervisor, version: tuple[int, int] = (2, 1)) -> dict[str, Any]:
    n = h.node
    mtotal, mfree = int(n.get("mtotal") or 0), int(n.get("mfree") or 0)
    dtotal, dfree = _gb(n.get("dtotal")), _gb(n.get("dfree"))
    cpu_info = {"sockets": n.get("csockets"), "cores": n.get("cnos"),
                "numa_nodes": n.get("cnodes"), "total": n.get("ctotal")}
    cpu = {k: v for k, v in cpu_info.items() if v is not None}
    return {
        **hypervisor_brief(h, version),
        "hypervisor_type": h.backend.hypervisor, "hypervisor_version": 0,
        "host_ip": n.get("pip") or "0.0.0.0",
        "cpu_info": cpu if version >= (2, 28) else json.dumps(cpu),
        "current_workload": 0, "running_vms": int(n.get("pinst_cnt") or len(h.servers)),
        "vcpus": int(n.get("ctotal") or 0), "vcpus_used": sum(s.flavor.cpu for s in h.servers),
        "memory_mb": mtotal, "memory_mb_used": max(0, mtotal - mfree), "free_ram_mb": mfree,
        "local_gb": dtotal, "local_gb_used": max(0, dtotal - dfree), "free_disk_gb": dfree,
        "disk_available_least": dfree,
        "service": {"host": h.backend.clustername,
                    "id": (service_uuid(COMPUTE, h.backend.clustername)
                           if version >= (2, 53) else h.backend.id),
                    "disabled_reason": None},
    }


def service_view(s: Service, version: tuple[int, int] = (2, 1)) -> dict[str, Any]:
    return {"id": s.uuid if version >= (2, 53) else s.id, "binary": s.binary, "host": s.host,
            "zone": s.zone,
            "status": "enabled" if s.enabled else "disabled",
            "state": "up" if s.up else "down", "updated_at": _time(s.updated_at),
            "disabled_reason": None}


def aggregate_view(a: Aggregate, brief: bool = False,
                   version: tuple[int, int] = (2, 1)) -> dict[str, Any]:
    """An aggregate as Nova shows it (``brief``: as its create answers);
    from 2.41 with its ``uuid``."""
    out: dict[str, Any] = {"id": a.id, "name": a.name, "availability_zone": a.availability_zone,
                           "created_at": _time(a.created), "updated_at": _time(a.updated),
                           "deleted": False, "deleted_at": None}
    if not brief:
        out.update(hosts=list(a.hosts), metadata=dict(a.metadata))
    if version >= (2, 41):
        out["uuid"] = a.uuid
    return out


def migration_view(request: Any, m: Migration) -> dict[str, Any]:
    """A row of ``os-migrations`` at the request's microversion."""
    version = _version(request)
    view: dict[str, Any] = {
        "id": m.id, "status": m.status, "instance_uuid": str(m.server_id),
        "source_node": m.source_node, "source_compute": m.source_compute,
        "dest_node": m.dest_node, "dest_compute": m.source_compute,
        "dest_host": None, "old_instance_type_id": m.flavor_id,
        "new_instance_type_id": m.flavor_id, "created_at": nova_time(m.created),
        "updated_at": nova_time(m.updated if version >= (2, 59) else m.finished)}
    if version >= (2, 23):
        view["migration_type"] = m.kind
        if m.kind == "live-migration" and m.status in IN_PROGRESS:
            view["links"] = views_of(request).links(f"servers/{m.server_id}/migrations", m.id)
    if version >= (2, 59):
        view["uuid"] = m.uuid
    return view


def server_migration_view(m: Migration, version: tuple[int, int]) -> dict[str, Any]:
    """An in-progress live migration under its server (2.23): Ganeti
    reports no progress in bytes."""
    view: dict[str, Any] = {
        "id": m.id, "status": m.status, "server_uuid": str(m.server_id),
        "source_node": m.source_node, "source_compute": m.source_compute,
        "dest_node": m.dest_node, "dest_compute": m.source_compute, "dest_host": None,
        "created_at": nova_time(m.created), "updated_at": nova_time(m.updated),
        **{f"{what}_{kind}_bytes": None for what in ("disk", "memory")
           for kind in ("processed", "remaining", "total")}}
    if version >= (2, 59):
        view["uuid"] = m.uuid
    return view


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
            ("DELETE", "/os-services/<service_id>", self.delete_service),
            ("GET", "/os-hosts", self.hosts),
            ("GET", "/os-hosts/<host>", self.host),
            ("PUT", "/os-hosts/<host>", self.update_host),
            ("GET", "/os-hosts/<host>/<power>", self.host_power),
            ("GET", "/os-migrations", self.migrations),
            ("GET", "/servers/<server_id>/migrations", self.server_migrations),
            ("GET", "/servers/<server_id>/migrations/<migration_id>", self.server_migration),
            ("POST", "/servers/<server_id>/migrations/<migration_id>/action",
             self.server_migration_action),
            ("DELETE", "/servers/<server_id>/migrations/<migration_id>",
             self.abort_server_migration),
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

    async def _hypervisor_listing(self, request: Any, detail: bool) -> bytes:
        """Every hypervisor; from 2.33 paged (``limit``, ``marker``: an id
        as that version shows it) with ``hypervisors_links``; from 2.53
        ``hypervisor_hostname_pattern`` (a part of the host name; no
        paging with it; 404 when none matches) and ``with_servers``."""
        version = _version(request)
        show = hypervisor_detail if detail else hypervisor_brief
        pattern = query(request, "hypervisor_hostname_pattern") if version >= (2, 53) else None
        with_servers = version >= (2, 53) and _with_servers(request)
        links: list[dict[str, str]] = []
        if pattern is not None:
            if query(request, "limit") is not None or query(request, "marker") is not None:
                raise errors.BadRequest("Paging over hypervisors with the"
                                        " hypervisor_hostname_pattern query parameter is"
                                        " not supported.")
            found = await self._hosts.search(pattern)
        else:
            found = await self._hosts.hypervisors()
            if version >= (2, 33):
                found = paged(request, found, lambda h: show(h, version)["id"])
                collection = "os-hypervisors/detail" if detail else "os-hypervisors"
                links = next_links(request, len(found),
                                   show(found[-1], version)["id"] if found else None,
                                   collection)
        out: dict[str, Any] = {"hypervisors": [
            _with_server_list(show(h, version), h, with_servers) for h in found]}
        if links:
            out["hypervisors_links"] = links
        return json_body(request, out)

    async def hypervisors(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:list")
        return await self._hypervisor_listing(request, False)

    async def hypervisors_detail(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:list-detail")
        return await self._hypervisor_listing(request, True)

    async def _find_hypervisor(self, request: Any, hypervisor_id: str) -> Hypervisor:
        """From 2.53 by UUID (400 for anything else), before by id."""
        if _version(request) >= (2, 53):
            if not is_uuid(hypervisor_id):
                raise errors.BadRequest(f"Invalid uuid {hypervisor_id[:80]}")
            return await self._hosts.hypervisor(hypervisor_id, by_uuid=True)
        return await self._hosts.hypervisor(hypervisor_id)

    async def hypervisor(self, request: Any, hypervisor_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-hypervisors:show")
        version = _version(request)
        found = await self._find_hypervisor(request, hypervisor_id)
        with_servers = version >= (2, 53) and _with_servers(request)
        return json_body(request, {"hypervisor": _with_server_list(
            hypervisor_detail(found, version), found, with_servers)})

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
        await self._find_hypervisor(request, hypervisor_id)
        raise errors.NotImplementedFault("Ganeti does not report the uptime of its nodes.")

    async def hypervisor_search(self, request: Any, pattern: str) -> bytes:
        _gone_at(request, 53, "GET /os-hypervisors/<pattern>/search")
        require_admin(request, "os_compute_api:os-hypervisors:search")
        return json_body(request, {"hypervisors": [
            hypervisor_brief(h) for h in await self._hosts.search(pattern)]})

    async def hypervisor_servers(self, request: Any, pattern: str) -> bytes:
        """The matching hypervisors with the servers primary on them."""
        _gone_at(request, 53, "GET /os-hypervisors/<pattern>/servers")
        require_admin(request, "os_compute_api:os-hypervisors:servers")
        return json_body(request, {"hypervisors": [
            _with_server_list(hypervisor_brief(h), h, True)
            for h in await self._hosts.search(pattern)]})

    # -- services --------------------------------------------------------------------

    async def services(self, request: Any) -> bytes:
        """``?host=`` and ``?binary=`` filter; other parameters are ignored."""
        require_admin(request, "os_compute_api:os-services:list")
        found = await self._hosts.services()
        for key in ("host", "binary"):
            wanted = query(request, key)
            if wanted is not None:
                found = [s for s in found if getattr(s, key) == wanted]
        views = [service_view(s, _version(request)) for s in found]
        if at_least(request, 11):
            for view, s in zip(views, found, strict=True):
                view["forced_down"] = s.backend is not None and s.backend.offline
        return json_body(request, {"services": views})

    async def update_service(self, request: Any, action: str) -> bytes:
        """``enable``, ``disable``, ``disable-log-reason`` of a backend's
        compute service, named by ``host`` and ``binary``."""
        require_admin(request, "os_compute_api:os-services:update")
        if _version(request) >= (2, 53):
            return await self._update_service(request, action)
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

    async def _service(self, request: Any, service_id: str) -> Service:
        """A service by its id: from 2.53 its UUID, before its number
        (400 for anything else, 404 for no such service)."""
        if _version(request) >= (2, 53):
            if not is_uuid(service_id):
                raise errors.BadRequest(f"Invalid uuid {service_id[:80]}")
            match = lambda s: s.uuid == service_id.lower()  # noqa: E731
        else:
            if not service_id.isdigit() or len(service_id) > 18:
                raise errors.BadRequest(f"Invalid ID {service_id[:80]}: an integer.")
            match = lambda s: s.id == int(service_id)  # noqa: E731
        for found in await self._hosts.services():
            if match(found):
                return found
        raise errors.NotFound(f"Service {service_id[:80]} could not be found.")

    async def _update_service(self, request: Any, service_id: str) -> bytes:
        """2.53's ``PUT /os-services/<uuid>``: ``status`` (enabled: the
        backend takes servers again; disabled: it is drained, with an
        optional ``disabled_reason``) and/or ``forced_down`` (the backend
        offline); the service as listed after."""
        body = json_object(body_of(request, self._max_body))
        unknown = set(body) - {"status", "disabled_reason", "forced_down"}
        if unknown:
            raise errors.BadRequest("Additional properties are not allowed"
                                    f" ({', '.join(sorted(unknown))[:120]} unexpected).")
        status, reason = body.get("status"), body.get("disabled_reason")
        if "status" in body and status not in ("enabled", "disabled"):
            raise errors.BadRequest("status must be enabled or disabled.")
        if "disabled_reason" in body and (not isinstance(reason, str)
                                          or not 1 <= len(reason) <= 255):
            raise errors.BadRequest("disabled_reason must be 1 to 255 characters.")
        forced = (parse_bool(body["forced_down"], "forced_down") if "forced_down" in body
                  else None)
        service = await self._service(request, service_id)
        if service.binary != COMPUTE or service.backend is None:
            raise errors.BadRequest(f"Updating a {service.binary} service is not supported."
                                    " Only nova-compute services can be updated.")
        if status == "enabled" and reason:
            raise errors.BadRequest("Specifying 'disabled_reason' with status 'enabled' is"
                                    " invalid.")
        flags: dict[str, bool] = {}
        if status is not None:
            flags["drained"] = status == "disabled"
        if forced is not None:
            flags["offline"] = forced
        if not flags:
            raise errors.BadRequest("No updates were requested. Fields 'status' or"
                                    " 'forced_down' should be specified.")
        backend = await self._hosts.set_backend(service.host, **flags)
        changed = attrs.evolve(service, enabled=not backend.drained, up=not backend.offline,
                               backend=backend)
        shown = service_view(changed, _version(request))
        shown.update(forced_down=backend.offline,
                     disabled_reason=reason if status == "disabled" else None,
                     updated_at=shown["updated_at"] or _time(backend.created))
        return json_body(request, {"service": shown})

    async def delete_service(self, request: Any, service_id: str) -> bytes:
        """``DELETE /os-services/<id>`` (a UUID from 2.53): a compute
        service is its backend, removed unless it holds servers (409);
        snfd's own services are its nodes' plugins (400)."""
        require_admin(request, "os_compute_api:os-services:delete")
        service = await self._service(request, service_id)
        if service.binary != COMPUTE or service.backend is None:
            raise errors.BadRequest(f"{service.binary} is a plugin of snfd node"
                                    f" {service.host}: it is not deleted through the API.")
        await self._hosts.remove_backend(service.backend)
        return empty(request, 204)

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
        _gone_at(request, 43, "os-hosts")
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
        _gone_at(request, 43, "os-hosts")
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
        _gone_at(request, 43, "os-hosts")
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
        _gone_at(request, 43, "os-hosts")
        require_admin(request, "os_compute_api:os-hosts:start")
        if power not in ("startup", "shutdown", "reboot"):
            raise errors.NotFound(f"Unknown host action {power[:40]!r}.")
        await self._hosts.backend(host)
        raise errors.NotImplementedFault("Ganeti clusters are not powered on or off"
                                         " through the compute API.")

    # -- migrations, usage audit, external events ------------------------------------

    async def migrations(self, request: Any) -> bytes:
        """``GET /os-migrations[?instance_uuid=&status=&source_compute=|host=
        &migration_type=]``: the moves administrators asked for, newest
        first; paged from 2.59 (see the module docstring)."""
        require_admin(request, "os_compute_api:os-migrations:index")
        version = _version(request)
        filters = ("instance_uuid", "status", "source_compute", "host", "migration_type",
                   "hidden")
        if version >= (2, 59):
            only_params(request, filters + ("limit", "marker", "changes-since")
                        + (("changes-before",) if version >= (2, 66) else ()))
        found = await self._servers.migrations()
        wanted = {"instance_uuid": query(request, "instance_uuid"),
                  "status": query(request, "status"),
                  "source_compute": query(request, "source_compute") or query(request, "host"),
                  "migration_type": query(request, "migration_type")}

        def keep(m: Migration) -> bool:
            have = {"instance_uuid": str(m.server_id), "status": m.status,
                    "source_compute": m.source_compute, "migration_type": m.kind}
            return all(value is None or have[key] == value for key, value in wanted.items())

        if version < (2, 59):
            return json_body(request, {"migrations": [
                migration_view(request, m) for m in found if keep(m)]})
        since, until = changes_window(request, before=version >= (2, 66))
        shown = paged(request, found, lambda m: m.uuid,
                      lambda m: keep(m) and in_window(m.updated, since, until))
        out: dict[str, Any] = {"migrations": [migration_view(request, m) for m in shown]}
        links = next_links(request, len(shown), shown[-1].uuid if shown else None,
                           "os-migrations")
        if links:
            out["migrations_links"] = links
        return json_body(request, out)

    # -- a server's migrations (2.22-2.24, 2.65) ---------------------------------------

    async def _migrating(self, request: Any, server_id: str, since: int,
                         ) -> tuple[Server, list[Migration]]:
        """The server (any user's, not deleted: 404 else) and its
        migrations, for administrators; 404 before microversion 2.``since``."""
        _gone_at(request, since, "", before=True)
        require_admin(request, "os_compute_api:servers:migrations")
        sid = int_id(server_id, "Server")
        owner, _ = await self._servers.owner_of(sid)
        server: Server | None = await self._servers.get(owner, sid) if owner else None
        if server is None or server.deleted:
            raise errors.NotFound(f"Instance {server_id[:40]} could not be found.")
        return server, await self._servers.migrations(sid)

    async def server_migrations(self, request: Any, server_id: str) -> bytes:
        """2.23: the server's live migrations in progress."""
        _, found = await self._migrating(request, server_id, 23)
        return json_body(request, {"migrations": [
            server_migration_view(m, _version(request)) for m in found
            if m.kind == "live-migration" and m.status in IN_PROGRESS]})

    async def server_migration(self, request: Any, server_id: str,
                               migration_id: str) -> bytes:
        """2.23: one of them; 404 for a migration that is not one."""
        _, found = await self._migrating(request, server_id, 23)
        m = _migration(found, migration_id, errors.NotFound)
        if m is None or m.kind != "live-migration" or m.status not in IN_PROGRESS:
            raise errors.NotFound(f"In-progress live migration {migration_id[:40]} is not"
                                  f" found for server {server_id[:40]}.")
        return json_body(request, {"migration": server_migration_view(m, _version(request))})

    async def server_migration_action(self, request: Any, server_id: str,
                                      migration_id: str) -> bytes:
        """2.22's ``{"force_complete": null}``: 409 unless the server is
        migrating; 400 for a migration that is not its live migration
        running; and a running one cannot be hurried here (409): Ganeti's
        live migration completes on its own, RAPI has no way to force it."""
        server, found = await self._migrating(request, server_id, 22)
        body = json_object(body_of(request, self._max_body))
        if body != {"force_complete": None}:
            raise errors.BadRequest('The only migration action is {"force_complete": null}.')
        if server.task != "MIGRATE":
            raise errors.Conflict(f"Cannot 'force_complete' instance {server_id[:40]} while"
                                  " it is not migrating.")
        m = _migration(found, migration_id, errors.BadRequest)
        if m is None or m.kind != "live-migration" or m.status != "running":
            raise errors.BadRequest(
                f"Migration {migration_id[:40]} of instance {server_id[:40]} is"
                f" {m.status if m is not None else 'not found'}: only a running live"
                " migration can be forced to complete.")
        raise errors.Conflict(f"Live migration {m.id} of server {server_id[:40]} cannot be"
                              " forced to complete: Ganeti completes it on its own (RAPI"
                              " offers no way to hurry it).")

    async def abort_server_migration(self, request: Any, server_id: str,
                                     migration_id: str) -> bytes:
        """2.24: abort a live migration: 409 unless the server is
        migrating, 404 for no such migration of it, 400 unless it is a
        live migration in an abortable state (running; from 2.65 also
        queued).  A queued one is aborted by cancelling its Ganeti job
        (202); a running one cannot be stopped through RAPI (409)."""
        server, found = await self._migrating(request, server_id, 24)
        if server.task != "MIGRATE":
            raise errors.Conflict(f"Cannot 'abort live migration' instance {server_id[:40]}"
                                  " while it is not migrating.")
        m = _migration(found, migration_id, errors.NotFound)
        if m is None:
            raise errors.NotFound(f"Migration {migration_id[:40]} not found for instance"
                                  f" {server_id[:40]}.")
        allowed = ("running", "queued") if _version(request) >= (2, 65) else ("running",)
        if m.kind != "live-migration" or m.status not in allowed:
            raise errors.BadRequest(
                f"Migration {m.id} state of instance {server_id[:40]} is {m.status}"
                f"{'' if m.kind == 'live-migration' else f' ({m.kind})'}. Cannot abort live"
                " migration while the migration is in this state.")
        if m.status == "queued" and await self._hosts.cancel_migration(m):
            return empty(request, 202)
        raise errors.Conflict(f"Live migration {m.id} of server {server_id[:40]} has started"
                              " in Ganeti, which cannot abort a running live migration.")

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

    # -- aggregates (2.41: with their uuid) ------------------------------------------------

    async def aggregates(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:index")
        return json_body(request, {"aggregates": [
            aggregate_view(a, version=_version(request))
            for a in await self._aggregates.all()]})

    async def create_aggregate(self, request: Any) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:create")
        body = object_of(request, "aggregate", self._max_body)
        if "name" not in body or set(body) - {"name", "availability_zone"}:
            raise errors.BadRequest("An aggregate needs a name (and perhaps an"
                                    " availability_zone), nothing else.")
        made = await self._aggregates.create(body["name"], body.get("availability_zone"))
        return json_body(request, {"aggregate": aggregate_view(made, brief=True,
                                                               version=_version(request))})

    async def aggregate(self, request: Any, aggregate_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:show")
        found = await self._aggregates.get(aggregate_id)
        return json_body(request, {"aggregate": aggregate_view(
            found, version=_version(request))})

    async def update_aggregate(self, request: Any, aggregate_id: str) -> bytes:
        require_admin(request, "os_compute_api:os-aggregates:update")
        body = object_of(request, "aggregate", self._max_body)
        found = await self._aggregates.get(aggregate_id)
        changed = await self._aggregates.update(found, body)
        return json_body(request, {"aggregate": aggregate_view(
            changed, version=_version(request))})

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
        return json_body(request, {"aggregate": aggregate_view(
            changed, version=_version(request))})


def _gone_at(request: Any, minor: int, what: str, before: bool = False) -> None:
    """404 from microversion 2.``minor`` on (``before``: below it), as
    Nova answers for a route a version does not serve."""
    if (_version(request) >= (2, minor)) != before:
        raise errors.NotFound(f"{what or 'This route'} is not served at microversion"
                              f" {'.'.join(map(str, _version(request)))}.")


def _with_servers(request: Any) -> bool:
    """2.53's ``with_servers`` query parameter (a strict boolean, else 400)."""
    value = query(request, "with_servers")
    return value is not None and parse_bool(value, "with_servers")


def _with_server_list(shown: dict[str, Any], h: Hypervisor, wanted: bool) -> dict[str, Any]:
    """A hypervisor's view with the servers primary on it, when ``wanted``
    and there are some (Nova leaves the key out otherwise)."""
    if wanted and h.servers:
        shown["servers"] = [{"uuid": str(s.id), "name": s.instance_name} for s in h.servers]
    return shown


def _migration(found: list[Migration], migration_id: str,
               fault: type[errors.Fault]) -> Migration | None:
    """The migration of ``found`` with id ``migration_id`` (a number:
    ``fault`` for anything else), or None."""
    if not migration_id.isdigit() or len(migration_id) > 18:
        raise fault(f"Invalid migration id {migration_id[:40]}: an integer.")
    return next((m for m in found if m.id == int(migration_id)), None)
