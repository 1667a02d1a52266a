"""The compute API (``/compute/v2.0``): OpenStack Compute v2.1 with
Synnefo's ``SNF:`` extensions (reference/synnefo-apis.md 3.1), over
``snfd.cyclades.servers.Servers``: bodies are checked into typed requests
(``snfd.cyclades.requests``) here, and the effect path receives those.

``ComputeAPI(servers, images, base_url).app`` is one Klein app; the node
mounts it behind ``TokenAuth`` at ``/compute`` (so its routes start at
``/v2.0``).  ``base_url`` is where it is mounted as clients reach it
(``https://cloud.example.org/compute``): links are built on it.
``VmapiApp(servers, updates, clock).app`` serves builds without a token
(``GET /server-params/<key>``: snf-image fetches its build parameters
once; they are gone after that, after the build ends and after a delete;
``POST /server-progress/<key>``: its progress and diagnostics); the node
mounts it at ``/vmapi``.

Requests carry JSON only: a body with another ``Content-Type`` or not
valid JSON is 400.  Nova's dialect serves microversions 2.1 to 2.66
(``compute_http.microversion``: ``OpenStack-API-Version: compute X.Y`` or
``X-OpenStack-Nova-API-Version``, ``latest``; none is 2.1; 400 for a
malformed one, 406 outside the range), and every answer names the one it
was served at; what each version changes is in docs/cyclades.md.
Synnefo's dialect is 2.1 whatever a request names.  Below 2.37,
``openstack server create`` sends ``"networks": []`` when no network is
named, which means the default NICs here.

Server ids are integers, as in Synnefo (text in Nova's dialect); an id
that is not an integer is 404.  Flavors are named by their serial id in
Synnefo's dialect and by Nova's ``flavorid`` in Nova's (``flavor_api``,
which also serves the administrators' flavor management).
``GET /servers[/detail]?changes-since=<ISO 8601>`` lists servers
changed since then, deleted ones included, and answers 304 when there
are none; ``name`` (a regular expression, as Nova, searched by RE2 in
linear time: ``requests.parse_name_filter``) and ``status`` filter the
listing, and so does ``host`` (a Ganeti cluster) for administrators in
Nova's dialect; other query parameters are ignored.  Server lists
carry no diagnostics (``GET /servers/<id>`` and ``/diagnostics`` do).
"""

from __future__ import annotations

import datetime
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import attrs
from klein import Klein
from twisted.web.resource import IResource

from snfd import errors
from snfd.cyclades import model, server_groups
from snfd.cyclades.admin_api import AdminAPI
from snfd.cyclades.aggregates import DEFAULT_ZONE, Aggregates
from snfd.cyclades.compute_http import (
    at_least,
    body_of,
    count,
    empty,
    int_id,
    microversion,
    next_links,
    object_of,
    page,
    projects_of,
    query,
    scope_of,
    views_of,
)
from snfd.cyclades.compute_views import (
    NOVA_STATUSES,
    NovaViews,
    SynnefoViews,
    iso,
    nic_views,
    nova_time,
)
from snfd.cyclades.flavor_api import FlavorAPI
from snfd.cyclades.flavors import Flavors
from snfd.cyclades.glance import GlanceImages
from snfd.cyclades.hosts import Hosts
from snfd.cyclades.instance_actions_api import InstanceActionAPI
from snfd.cyclades.network_proxy_api import NetworkProxyAPI
from snfd.cyclades.requests import (
    DEVICE_TAGS_REFUSED,
    KEEP,
    AddFloatingIp,
    Console,
    CreateImage,
    Firewall,
    InjectNetworkInfo,
    Lock,
    Migrate,
    Reassign,
    Reboot,
    RemoveFloatingIp,
    Rescue,
    ResetState,
    Resize,
    Restore,
    SecurityGroupChange,
    Start,
    Stop,
    TriggerCrashDump,
    Unrescue,
    Unsupported,
    check_access_ip,
    check_description,
    check_metadata,
    check_name,
    check_tag,
    check_tags,
    parse_action,
    parse_counts,
    parse_create,
    parse_name_filter,
    parse_rebuild,
    ref_id,
)
from snfd.cyclades.security_group_proxy_api import SecurityGroupProxyAPI
from snfd.cyclades.server_group_api import ServerGroupAPI
from snfd.cyclades.servers import Servers
from snfd.cyclades.updates import MalformedMessage, event_time
from snfd.cyclades.usage_api import UsageAPI
from snfd.cyclades.volume_proxy_api import VolumeProxyAPI
from snfd.web.app import MAX_JSON_BODY, json_body, json_object, make_app
from snfd.web.auth import user_of

UTC = datetime.UTC
Handler = Callable[..., Awaitable[bytes]]
#: The dialects, by the prefix they answer under (``compute_views.py``).
DIALECTS = (SynnefoViews, NovaViews)
#: Nova's quota-set names for the cyclades holdings: the absolute limits
#: (``Servers.limits``) they come from, and the resource (and unit) each is.
_QUOTA_LIMITS = {"instances": ("maxTotalInstances", "totalInstancesUsed"),
                 "cores": ("maxTotalCores", "totalCoresUsed"),
                 "ram": ("maxTotalRAMSize", "totalRAMUsed"),
                 "floating_ips": ("maxTotalFloatingIps", "totalFloatingIpsUsed")}
_QUOTA_RESOURCES = {"instances": ("cyclades.vm", 1), "cores": ("cyclades.cpu", 1),
                    "ram": ("cyclades.ram", 1 << 20),
                    "floating_ips": ("cyclades.floating_ip", 1)}


def _default_image_view(image: Any) -> dict[str, Any]:
    return {"id": image.id, "name": image.name, "status": "ACTIVE", "progress": 100,
            "created": iso(getattr(image, "created_at", None)),
            "updated": iso(getattr(image, "updated_at", None)),
            "metadata": dict(getattr(image, "properties", {}) or {}),
            "user_id": getattr(image, "owner", None),
            "tenant_id": getattr(image, "owner", None)}


def _image_view(compute_url: str) -> Callable[[Any, bool], dict[str, Any]]:
    """``image_api.compute_image`` when the image service is there."""
    try:
        from snfd.cyclades.image_api import compute_image
    except ImportError:
        return lambda image, detail: _default_image_view(image)

    def view(image: Any, detail: bool) -> dict[str, Any]:
        return compute_image(image, compute_url=compute_url, detail=detail)

    return view


def parse_since(value: str) -> datetime.datetime:
    """A ``changes-since`` value (ISO 8601; naive means UTC), or 400."""
    text = value.strip().replace("Z", "+00:00")
    # An unencoded "+" of the offset arrives as a space.
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise errors.BadRequest(f"{value[:40]!r} is not an ISO 8601 time.") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


#: Nova's legacy extensions this cloud serves: (name, alias, description).
EXTENSIONS = (
    ("AdminActions", "os-admin-actions", "Administrators' server actions (os-resetState)."),
    ("AttachInterfaces", "os-attach-interfaces", "Server interfaces (ports)."),
    ("AvailabilityZone", "os-availability-zone", "Availability zones (Ganeti clusters)."),
    ("Consoles", "os-consoles", "Remote consoles of servers (VNC, the console action)."),
    ("DiskConfig", "OS-DCF", "The disk configuration of servers."),
    ("ExtendedStatus", "OS-EXT-STS", "Task, VM and power states of servers."),
    ("FlavorAccess", "os-flavor-access", "Access lists of private flavors."),
    ("FlavorDisabled", "OS-FLV-DISABLED", "Disabled flavors."),
    ("FlavorExtraData", "OS-FLV-EXT-DATA", "Ephemeral disk sizes of flavors."),
    ("FlavorExtraSpecs", "os-flavor-extra-specs", "Extra specs of flavors."),
    ("FlavorManage", "os-flavor-manage", "Flavor creation and deletion."),
    ("FloatingIpPools", "os-floating-ip-pools", "Floating IP pools (public networks)."),
    ("FloatingIps", "os-floating-ips", "Floating IPs, attached as NICs of servers."),
    ("Hosts", "os-hosts", "Compute hosts (Ganeti clusters)."),
    ("Hypervisors", "os-hypervisors", "Hypervisors (Ganeti nodes)."),
    ("InstanceUsageAuditLog", "os-instance_usage_audit_log", "Usage audits."),
    ("Keypairs", "os-keypairs", "SSH key pairs."),
    ("Migrations", "os-migrations", "Server migrations."),
    ("Quotas", "os-quota-sets", "Quotas (Astakos holdings)."),
    ("ServerDiagnostics", "os-server-diagnostics", "Server diagnostics."),
    ("ServerExternalEvents", "os-server-external-events", "Events from other services."),
    ("ServerLocking", "os-lock-server", "Server locks."),
    ("ServerUsage", "OS-SRV-USG", "Server launch and termination times."),
    ("Services", "os-services", "Compute services."),
    ("SimpleTenantUsage", "os-simple-tenant-usage", "Usage of projects' servers."),
    ("TenantNetworks", "os-tenant-networks", "The networks a project sees."),
    ("Volumes", "os-volumes", "Volumes and snapshots (the volume service's)."),
)


def _extension(name: str, alias: str, description: str) -> dict[str, Any]:
    return {"name": name, "alias": alias, "description": description, "links": [],
            "namespace": f"http://docs.openstack.org/compute/ext/{alias}/api/v2",
            "updated": "2014-12-03T00:00:00Z"}


#: Nova's server sort keys this cloud sorts by, and what each reads.
_SORT_KEYS: dict[str, Callable[[Any], Any]] = {
    "created_at": lambda s: (s.created is None, s.created),
    "updated_at": lambda s: (s.updated is None, s.updated),
    "display_name": lambda s: s.name, "uuid": lambda s: s.id, "id": lambda s: s.id,
    "project_id": lambda s: s.project, "user_id": lambda s: s.userid,
    "vm_state": lambda s: s.operstate, "instance_type_id": lambda s: s.flavor.id,
    "image_ref": lambda s: s.image_id}


def _sorted(request: Any, found: list[Any]) -> list[Any]:
    """``found`` by Nova's first ``sort_key`` and ``sort_dir`` (asc, desc;
    desc by default), ties by id; as they are when no key is given.  400
    for a key this cloud does not sort by."""
    key = query(request, "sort_key")
    direction = (query(request, "sort_dir") or "desc").strip().lower()
    if direction not in ("asc", "desc"):
        raise errors.BadRequest(f"Invalid sort direction {direction[:20]!r}: asc or desc.")
    if key is None:
        return found
    if key not in _SORT_KEYS:
        raise errors.BadRequest(f"Invalid sort key {key[:40]!r}: one of"
                                f" {', '.join(sorted(_SORT_KEYS))}.")
    by = _SORT_KEYS[key]
    return sorted(found, key=lambda s: (by(s), s.id), reverse=direction == "desc")


@attrs.frozen
class _Placement:
    """Per backend id: its cluster name (None: not shown) and zone."""

    hosts: dict[int | None, str] | None
    zones: dict[int | None, str]
    #: Nova's ``host_status`` of each backend (administrators', 2.16):
    #: ``UP``, ``DOWN`` (offline) or ``MAINTENANCE`` (drained)
    states: dict[int | None, str] = attrs.Factory(dict)


#: Nova's proxies to other services, gone from a microversion on (404):
#: the image service's images (2.36) and their metadata (2.39), the network
#: service's networks, security groups and floating IPs (2.36), and hosts
#: (2.43), the volume service's volumes and snapshots (2.36).  Path
#: prefixes, longest first.
_REMOVED = (("/images/<image_id>/metadata", 39), ("/images", 36), ("/os-networks", 36),
            ("/os-tenant-networks", 36), ("/os-security-groups", 36),
            ("/os-security-group-rules", 36), ("/os-floating-ips", 36),
            ("/os-floating-ip-pools", 36), ("/os-volumes", 36), ("/os-snapshots", 36),
            ("/os-hosts", 43))


#: The actions Nova's dialect no longer takes from microversion 2.44 (404).
_REMOVED_ACTIONS = frozenset({"addFloatingIp", "removeFloatingIp", "addFixedIp",
                              "removeFixedIp"})


def removed_since(path: str) -> int | None:
    """The microversion 2.N from which Nova's dialect no longer serves
    ``path`` (a route of the dialect), None: it always does."""
    for prefix, minor in _REMOVED:
        if path == prefix or path.startswith(prefix + "/"):
            return minor
    return None


#: Nova's instance action names of the kinds of migration.
_MIGRATION_ACTIONS = {"live-migration": "live-migration", "migration": "migrate",
                      "evacuation": "evacuate"}


class ComputeAPI:
    """The ``/compute`` Klein app (see the module docstring)."""

    def __init__(self, servers: Servers, images: Any, base_url: str, flavors: Flavors,
                 hosts: Hosts, aggregates: Aggregates, max_body: int = MAX_JSON_BODY,
                 server_images: Any = None):
        self._servers = servers
        self._server_images = server_images
        self._flavors = flavors
        self._aggregates = aggregates
        self._images = images
        self._base = base_url.rstrip("/")
        self._max_body = max_body
        self._dialects = [views(self._base) for views in DIALECTS]
        self._image_views = {d.prefix: _image_view(self._base + d.prefix)
                             for d in self._dialects}
        self.app: Klein = make_app()
        self._proxies = NetworkProxyAPI(servers, max_body, self._server, self._changing)
        self._security = SecurityGroupProxyAPI(servers, max_body, self._server)
        s = "/servers/<server_id>"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "", self.version),
            ("GET", "/", self.version),
            ("GET", "/servers", self.list_servers),
            ("GET", "/servers/detail", self.list_servers_detail),
            ("POST", "/servers", self.create_server),
            ("GET", s, self.show_server),
            ("PUT", s, self.rename_server),
            ("DELETE", s, self.delete_server),
            ("POST", s + "/action", self.action),
            ("POST", s + "/remote-consoles", self.remote_console),
            ("GET", s + "/ips", self.ips),
            ("GET", s + "/ips/<network>", self.ips_of),
            ("GET", s + "/metadata", self.metadata),
            ("POST", s + "/metadata", self.merge_metadata),
            ("PUT", s + "/metadata", self.replace_metadata),
            ("GET", s + "/metadata/<key>", self.metadata_item),
            ("PUT", s + "/metadata/<key>", self.set_metadata_item),
            ("DELETE", s + "/metadata/<key>", self.delete_metadata_item),
            ("GET", s + "/tags", self.tags),
            ("PUT", s + "/tags", self.replace_tags),
            ("DELETE", s + "/tags", self.delete_tags),
            ("GET", s + "/tags/<tag>", self.tag),
            ("PUT", s + "/tags/<tag>", self.add_tag),
            ("DELETE", s + "/tags/<tag>", self.delete_tag),
            ("GET", s + "/stats", self.stats),
            ("GET", s + "/diagnostics", self.diagnostics),
            ("GET", s + "/password", self.password),
            ("GET", s + "/os-server-password", self.server_password),
            ("DELETE", s + "/os-server-password", self.clear_server_password),
            ("GET", s + "/os-volume_attachments", self.volume_attachments),
            ("POST", s + "/os-volume_attachments", self.attach_volume),
            ("GET", s + "/os-volume_attachments/<volume_id>", self.volume_attachment),
            ("DELETE", s + "/os-volume_attachments/<volume_id>", self.detach_volume),
            ("PUT", s + "/os-volume_attachments/<volume_id>", self.swap_volume),
            ("GET", "/images", self.list_images),
            ("GET", "/images/detail", self.list_images_detail),
            ("GET", "/images/<image_id>", self.show_image),
            ("DELETE", "/images/<image_id>", self.delete_image),
            ("GET", "/images/<image_id>/metadata", self.image_metadata),
            ("POST", "/images/<image_id>/metadata", self.merge_image_metadata),
            ("PUT", "/images/<image_id>/metadata", self.replace_image_metadata),
            ("GET", "/images/<image_id>/metadata/<key>", self.image_metadata_item),
            ("PUT", "/images/<image_id>/metadata/<key>", self.set_image_metadata_item),
            ("DELETE", "/images/<image_id>/metadata/<key>", self.delete_image_metadata_item),
            ("GET", "/os-keypairs", self.list_keypairs),
            ("POST", "/os-keypairs", self.create_keypair),
            ("GET", "/os-keypairs/<name>", self.show_keypair),
            ("DELETE", "/os-keypairs/<name>", self.delete_keypair),
            ("GET", "/extensions", self.extensions),
            ("GET", "/extensions/<alias>", self.extension),
            ("GET", "/limits", self.limits),
            ("GET", "/os-availability-zone", self.availability_zones),
            ("GET", "/os-availability-zone/detail", self.availability_zones_detail),
            ("GET", "/os-quota-sets/<project_id>", self.quota_set),
            ("GET", "/os-quota-sets/<project_id>/detail", self.quota_set_detail),
            ("GET", "/os-quota-sets/<project_id>/defaults", self.quota_defaults),
            ("PUT", "/os-quota-sets/<project_id>", self.quota_update),
            ("DELETE", "/os-quota-sets/<project_id>", self.quota_update),
            ("GET", "/os-quota-class-sets/<name>", self.quota_class),
            ("PUT", "/os-quota-class-sets/<name>", self.quota_update),
            *FlavorAPI(flavors, max_body).routes(),
            *AdminAPI(hosts, aggregates, servers, max_body).routes(),
            *UsageAPI(servers).routes(),
            *self._proxies.routes(),
            *self._security.routes(),
            *VolumeProxyAPI(self._volumes, max_body).routes(),
            *ServerGroupAPI(servers.groups, max_body).routes(),
            *InstanceActionAPI(servers.actions, self._server).routes(),
        ]
        self._route("GET", "/", self.versions, self._dialects[0])
        for views in self._dialects:
            for method, path, handler in routes:
                self._route(method, views.prefix + path, handler, views)

    def _route(self, method: str, path: str, handler: Handler, views: SynnefoViews) -> None:
        gone = removed_since(path[len(views.prefix):]) if views.negotiates else None

        async def endpoint(request: Any, **kwargs: Any) -> bytes:
            request.compute_views = views
            request.setHeader(b"vary", b"OpenStack-API-Version, X-OpenStack-Nova-API-Version")
            version = views.lowest
            if views.negotiates:
                version = microversion(request, views.lowest, views.highest)
            request.microversion = version
            request.compute_views = views.at(version)
            if gone is not None and version >= (2, gone):
                raise errors.NotFound(f"The resource could not be found: removed from"
                                      f" microversion 2.{gone}.")
            text = f"{version[0]}.{version[1]}"
            request.setHeader(b"x-openstack-nova-api-version", text.encode())
            request.setHeader(b"openstack-api-version", f"compute {text}".encode())
            request_id = getattr(request, "request_id", None)
            if request_id:
                # Nova's name for the request id (instance actions name it).
                request.setHeader(b"x-compute-request-id", request_id.encode("ascii"))
            return await handler(request, **kwargs)

        name = f"compute:{method}:{path}"
        endpoint.__name__ = name
        self.app.route(path, methods=[method], endpoint=name)(endpoint)

    def resource(self) -> IResource:
        resource: IResource = self.app.resource()
        return resource

    # -- helpers -----------------------------------------------------------

    def _body(self, request: Any, required: bool = True) -> Any:
        return body_of(request, self._max_body, required)

    def _object(self, request: Any, key: str) -> dict[str, Any]:
        return object_of(request, key, self._max_body)

    @staticmethod
    def _user(request: Any) -> str:
        user = user_of(request).user
        assert user is not None
        return user

    _projects = staticmethod(projects_of)
    _empty = staticmethod(empty)

    async def _get_image(self, request: Any, image_id: str) -> Any:
        """The image ``image_id`` as the caller reads it (its user, acting in
        its token's project: images are shared with projects)."""
        p = user_of(request)
        assert p.user is not None
        return await self._images.get(p.user, image_id, p.project)

    @staticmethod
    def _v(request: Any) -> SynnefoViews:
        """The dialect of the prefix the request came through."""
        views: SynnefoViews = views_of(request)
        return views

    async def _acting(self, request: Any, server_id: str, change: bool = False) -> str:
        """Whose server the request acts on (the effect path then runs, and
        charges, as its owner): the caller's own; for an administrator any
        user's; and, as in Nova, any server of the project the caller's
        token is scoped to, when it ``change``s it only with a role above
        ``reader`` there."""
        caller = user_of(request)
        assert caller.user is not None
        scope = scope_of(request)
        if caller.is_admin or scope is not None:
            owner, project = await self._servers.owner_of(int_id(server_id, "Server"))
            if owner is not None and owner != caller.user and not caller.is_admin:
                if project != scope:
                    owner = None
                elif change and not set(caller.roles) & {"member", "manager", "admin"}:
                    raise errors.Forbidden("Your role in this project only reads servers.")
            if owner is not None:
                return owner
        return caller.user

    async def _changing(self, request: Any, server_id: str) -> str:
        """``_acting`` for a request that changes the server: 409 when it is
        locked, unless the caller is an administrator."""
        user = await self._acting(request, server_id, change=True)
        server = await self._servers.get(user, int_id(server_id, "Server"))
        model.check_unlocked(server, user_of(request).is_admin)
        return user

    async def _server(self, request: Any, server_id: str) -> Any:
        """The caller's server; in a dialect that hides deleted servers,
        404 for a deleted one."""
        server = await self._servers.get(await self._acting(request, server_id),
                                         int_id(server_id, "Server"))
        if server.deleted and self._v(request).hides_deleted:
            raise errors.NotFound(f"Server {server_id} not found.")
        return server

    async def _serial_flavor_ref(self, request: Any, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` with its ``flavorRef`` as the serial id the effect path
        takes.  In Nova's dialect the reference is a ``flavorid``, and a
        flavor the caller may not use (missing, private to others,
        disabled) is a 400 there, as Nova answers."""
        if self._v(request).serial_flavor_ids or "flavorRef" not in args:
            return args
        text = ref_id(args["flavorRef"], "flavorRef")
        try:
            flavor = await self._flavors.by_flavorid(text, self._projects(request),
                                                     user_of(request).is_admin)
        except errors.NotFound:
            flavor = None
        if flavor is None or not flavor.allow_create:
            raise errors.BadRequest(f"Flavor {text[:80]} could not be found.")
        return {**args, "flavorRef": flavor.id}

    # -- versions -----------------------------------------------------------

    async def versions(self, request: Any) -> bytes:
        """``GET /compute/``: the versions list."""
        return json_body(request, {"versions": [d.version() for d in self._dialects]})

    async def version(self, request: Any) -> bytes:
        """``GET /compute/v2.0[/]``: this version, microversions 2.1..2.1."""
        return json_body(request, {"version": self._v(request).version()})

    async def extensions(self, request: Any) -> bytes:
        """The legacy extension list: what of Nova's API this cloud serves."""
        return json_body(request, {"extensions": [_extension(*e) for e in EXTENSIONS]})

    async def extension(self, request: Any, alias: str) -> bytes:
        for found in EXTENSIONS:
            if found[1] == alias:
                return json_body(request, {"extension": _extension(*found)})
        raise errors.NotFound(f"Extension {alias[:80]} not found.")

    async def _zones(self) -> tuple[dict[str, list[str]], dict[str, Any]]:
        """Zone -> its backends' cluster names (``Aggregates.zones``), and
        the backends by cluster name."""
        backends = {b.clustername: b for b in await self._servers.backends()}
        return await self._aggregates.zones(sorted(backends)), backends

    async def _zone_hosts(self, zone: Any) -> tuple[str, ...]:
        """The backends of an availability zone asked for on create; 400
        when there is no such zone."""
        zones, _ = await self._zones()
        if not isinstance(zone, str) or zone not in zones:
            raise errors.BadRequest(f"The requested availability zone {str(zone)[:80]!r} is"
                                    " not available.")
        return tuple(zones[zone])

    async def availability_zones(self, request: Any) -> bytes:
        """The zones: those of the aggregates, and ``nova`` for backends in
        none; available when one of their backends is usable."""
        zones, backends = await self._zones()
        return json_body(request, {"availabilityZoneInfo": [
            {"zoneName": name, "zoneState": {"available": any(
                not (backends[h].offline or backends[h].drained) for h in hosts
                if h in backends)}, "hosts": None} for name, hosts in sorted(zones.items())]})

    async def availability_zones_detail(self, request: Any) -> bytes:
        """Administrators: the zones and their hosts, each Ganeti cluster
        as a ``nova-compute`` service (available unless offline or
        drained)."""
        if not user_of(request).is_admin:
            raise errors.Forbidden("Availability zone details are for administrators.")
        zones, backends = await self._zones()
        out = []
        for name, names in sorted(zones.items()):
            hosts = {h: {"nova-compute": {
                "available": not (backends[h].offline or backends[h].drained),
                "active": not backends[h].offline,
                "updated_at": nova_time(backends[h].stats_updated)}}
                for h in names if h in backends}
            available = any(h["nova-compute"]["available"] for h in hosts.values())
            out.append({"zoneName": name, "zoneState": {"available": available},
                        "hosts": hosts or None})
        return json_body(request, {"availabilityZoneInfo": out})

    async def limits(self, request: Any) -> bytes:
        """Absolute limits from the caller's cyclades quota (token's
        project, else the base project)."""
        p = user_of(request)
        assert p.user is not None
        absolute = await self._servers.limits(p.user, p.project)
        absolute = self._v(request).limits(absolute, self._servers.settings)
        return json_body(request, {"limits": {"absolute": absolute, "rate": []}})

    # -- quota sets ----------------------------------------------------------

    def _quota_rules(self) -> dict[str, tuple[int, int]]:
        """The quota-set entries that are fixed rules of the compute service
        (-1: unlimited; 0: not served)."""
        settings = self._servers.settings
        return {
            "metadata_items": (settings.max_metadata, 0),
            "injected_files": (settings.max_personality, 0),
            "injected_file_content_bytes": (settings.max_personality_size, 0),
            "injected_file_path_bytes": (1024, 0), "key_pairs": (-1, 0),
            "fixed_ips": (-1, 0), "security_groups": (0, 0),
            "security_group_rules": (0, 0), "server_groups": (server_groups.MAX_GROUPS, 0),
            "server_group_members": (server_groups.MAX_MEMBERS, 0)}

    @staticmethod
    def _quota_project(request: Any, project_id: str) -> Any:
        p = user_of(request)
        assert p.user is not None
        if project_id not in (p.user, p.project) and not p.is_admin:
            raise errors.Forbidden(f"Project {project_id} is not the one of your token.")
        return p

    async def _quota_values(self, request: Any, project_id: str) -> dict[str, tuple[int, int]]:
        """``name -> (limit, in use)`` of Nova's quota set for the caller in
        ``project_id`` (its holdings there; its own projects only, any for
        an administrator)."""
        p = self._quota_project(request, project_id)
        absolute = await self._servers.limits(p.user, project_id)
        values = {name: (int(absolute.get(limit, 0)), int(absolute.get(used, 0)))
                  for name, (limit, used) in _QUOTA_LIMITS.items()}
        values.update(self._quota_rules())
        values["server_groups"] = (server_groups.MAX_GROUPS,
                                   await self._servers.groups.usage(project_id))
        return values

    async def quota_defaults(self, request: Any, project_id: str) -> bytes:
        """``GET /os-quota-sets/<project>/defaults``: what a member of a new
        project holds (a base project: what a new user holds), from the
        resources' defaults as administrators set them."""
        p = self._quota_project(request, project_id)
        body = await self._default_quotas(base=project_id == p.user)
        body = {k: body[k] for k in self._v(request).quota_keys(body)}
        return json_body(request, {"quota_set": {"id": project_id, **body}})

    async def _default_quotas(self, base: bool) -> dict[str, Any]:
        """Nova's quota set of what a new user (``base``) or a new
        project's member holds: the resources' defaults, and the rules."""
        defaults = await self._servers.quota_defaults(base=base)
        body: dict[str, Any] = {name: defaults.get(resource, 0) // scale
                                for name, (resource, scale) in _QUOTA_RESOURCES.items()}
        body.update({k: limit for k, (limit, _) in self._quota_rules().items()})
        return body

    async def quota_update(self, request: Any, **_: str) -> bytes:
        """Quota-set and quota-class updates: quotas are held by the
        identity service (Astakos), as Keystone's unified limits are: 403
        for users, 400 with where to set them for administrators."""
        if not user_of(request).is_admin:
            raise errors.Forbidden("Only administrators manage quotas.")
        raise errors.BadRequest(
            "Quotas are held by the identity service: set them with its projects"
            " (the resource policies of a project) or snf-manage quota and"
            " resource-modify commands.")

    async def quota_class(self, request: Any, name: str) -> bytes:
        """``GET /os-quota-class-sets/default``: the defaults a new
        project's member holds (the resources' project defaults)."""
        if name != "default":
            raise errors.NotFound(f"Quota class {name[:40]} not found.")
        body = await self._default_quotas(base=False)
        body = {k: body[k] for k in self._v(request).quota_keys(body, classes=True)}
        return json_body(request, {"quota_class_set": {"id": "default", **body}})

    async def quota_set(self, request: Any, project_id: str) -> bytes:
        """``GET /os-quota-sets/<project>``: Nova's quota set, mapped onto
        the caller's cyclades holdings in the project."""
        values = await self._quota_values(request, project_id)
        body: dict[str, Any] = {k: values[k][0] for k in self._v(request).quota_keys(values)}
        return json_body(request, {"quota_set": {"id": project_id, **body}})

    async def quota_set_detail(self, request: Any, project_id: str) -> bytes:
        values = await self._quota_values(request, project_id)
        body = {k: {"limit": values[k][0], "in_use": values[k][1], "reserved": 0}
                for k in self._v(request).quota_keys(values)}
        return json_body(request, {"quota_set": {"id": project_id, **body}})

    # -- servers ------------------------------------------------------------

    async def _listing(self, request: Any, detail: bool) -> bytes:
        user = self._user(request)
        v = self._v(request)
        since_value = query(request, "changes-since")
        since = parse_since(since_value) if since_value is not None else None
        before_value = query(request, "changes-before") if v.since(66) else None
        before = parse_since(before_value) if before_value is not None else None
        if since is not None and before is not None and before < since:
            raise errors.BadRequest("changes-since must not be later than changes-before.")
        scope = scope_of(request)
        all_tenants = query(request, "all_tenants")
        if all_tenants is not None and all_tenants.strip().lower() not in ("0", "false", "f",
                                                                            "off", "no"):
            if not user_of(request).is_admin:
                raise errors.Forbidden("Only administrators list every project's servers.")
            found = await self._servers.everyone(since, before)
        elif v.lists_project_servers and scope is not None:
            found = await self._servers.of_project(scope, since, before)
        else:
            found = await self._servers.of_user(user, since, before)
        for key, of in (("tenant_id", lambda s: s.project), ("project_id", lambda s: s.project),
                        ("user_id", lambda s: s.userid)):
            wanted = query(request, key)
            if wanted is not None:
                found = [s for s in found if of(s) == wanted]
        name = query(request, "name")
        if name:
            pattern = parse_name_filter(name)
            found = [s for s in found if pattern.search(s.name)]
        if v.negotiates:
            # Nova's address filters (regular expressions, as ``name``);
            # ``ip6`` is for administrators only before 2.5.
            for key, version in (("ip", 4), ("ip6", 6)):
                wanted = query(request, key)
                if not wanted or (key == "ip6" and not user_of(request).is_admin
                                  and not at_least(request, 5)):
                    continue
                pattern = parse_name_filter(wanted)
                found = [s for s in found if any(
                    pattern.search(a["addr"]) for entries in nic_views(s)[1].values()
                    for a in entries if a["version"] == version)]
        status = query(request, "status")
        if status:
            if v.since(38) and status.upper() not in NOVA_STATUSES:
                raise errors.BadRequest(f"Invalid status value {status[:40]!r}.")
            found = [s for s in found if v.status(s) == status.upper()]
        for key, of in (("flavor", lambda s: v.flavor_ref(s.flavor)),
                        ("image", lambda s: s.image_id)):
            wanted = query(request, key)
            if wanted is not None:
                found = [s for s in found if of(s) == wanted]
        where = await self._placement(request)
        host = query(request, "host")
        if where.hosts is not None and host is not None:
            found = [s for s in found if where.hosts.get(s.backend_id) == host]
        if since is not None and not found and v.not_modified_when_unchanged:
            raise errors.NotModified("No server changed since then.")
        found = _sorted(request, found)
        found = page(request, found, "Server")
        return json_body(request, {"servers": [self._shown(request, s, where, detail)
                                               for s in found]})

    async def _placement(self, request: Any) -> _Placement:
        """Where servers run, as the request's dialect shows it: each
        backend's availability zone (``OS-EXT-AZ``, Nova's dialect) and,
        for administrators there, its cluster name (Nova's host)."""
        if not isinstance(self._v(request), NovaViews):
            return _Placement(None, {})
        zones, backends = await self._zones()
        zone_of = {backends[h].id: zone for zone, names in zones.items() for h in names
                   if h in backends}
        if not user_of(request).is_admin:
            return _Placement(None, zone_of)
        hosts = {b.id: b.clustername for b in backends.values()}
        states = {b.id: "DOWN" if b.offline else "MAINTENANCE" if b.drained else "UP"
                  for b in backends.values()}
        return _Placement(hosts, zone_of, states)

    def _shown(self, request: Any, server: Any, where: _Placement,
               detail: bool = True, diagnostics: Any = None) -> dict[str, Any]:
        """A server in the request's dialect, in its backend's zone, with
        Nova's ``OS-EXT-SRV-ATTR`` attributes for administrators (the host
        is the server's Ganeti cluster; the node is not asked of RAPI on
        each read, so ``hypervisor_hostname`` is null)."""
        out = self._v(request).server(server, detail, diagnostics=diagnostics)
        if detail and where.zones:
            out["OS-EXT-AZ:availability_zone"] = where.zones.get(server.backend_id,
                                                                 DEFAULT_ZONE)
        if where.hosts is not None and detail:
            out.update({"OS-EXT-SRV-ATTR:host": where.hosts.get(server.backend_id),
                        "OS-EXT-SRV-ATTR:instance_name": server.instance_name,
                        "OS-EXT-SRV-ATTR:hypervisor_hostname": None})
            if at_least(request, 3):
                out.update(_extended_attributes(server))
            if self._v(request).since(16):
                out["host_status"] = where.states.get(server.backend_id, "")
        if detail:
            _add_locked(request, out, server)
            if "os-extended-volumes:volumes_attached" in out and at_least(request, 3):
                out["os-extended-volumes:volumes_attached"] = [
                    {"id": v.id, "delete_on_termination": v.delete_on_termination}
                    for v in self._v(request).volumes(server, server.volumes)]
        return out

    async def list_servers(self, request: Any) -> bytes:
        return await self._listing(request, False)

    async def list_servers_detail(self, request: Any) -> bytes:
        return await self._listing(request, True)

    async def create_server(self, request: Any) -> bytes:
        """202 with the new server and its ``adminPass`` (shown only here).

        Nova's dialect also takes ``min_count``/``max_count`` (multiple
        create): up to ``max_count`` servers are created one after
        another, all alike and with the same name, as many as the
        caller's instances, cores and ram quota has room for (403 when
        that is less than ``min_count``).  A failure once ``min_count``
        exist ends the run with the servers made so far; one before
        answers its fault, and the servers made stay (a server just
        queued in Ganeti cannot be deleted at once).  The
        answer is the first server, or with ``return_reservation_id`` a
        ``reservation_id`` (an id for this request only: listings are not
        filtered by it).  Synnefo's dialect creates one server per
        request."""
        user = self._user(request)
        v = self._v(request)
        group = await self._hinted_group(request)
        body = self._object(request, "server")
        low = high = 1
        reservation = False
        if isinstance(v, NovaViews):
            low, high, reservation = parse_counts(body)
            body = {k: b for k, b in body.items()
                    if k not in ("min_count", "max_count", "return_reservation_id")}
        body = await self._serial_flavor_ref(request, body)
        v.check_create(body, self._servers.settings.max_metadata)
        req = parse_create(body, self._servers.settings, v.strong_admin_pass)
        await self._check_networks(request, user, req.networks)
        zone = body.get("availability_zone")
        if zone is not None:
            req = attrs.evolve(req, hosts=await self._zone_hosts(zone))
        if group is not None:
            req = attrs.evolve(req, server_group=group)
        if high > 1:
            room = await self._room(request, user, req)
            if room < low:
                raise errors.Forbidden(f"Quota exceeded for instances, cores or ram: room"
                                       f" for {room} more, {low} asked.")
            high = min(high, room)
        made: list[tuple[Any, str]] = []
        while len(made) < high:
            try:
                made.append(await self._create_one(request, user, req))
            except errors.Fault:
                if len(made) < low:
                    raise
                break
        if reservation:
            return json_body(request, {"reservation_id": f"r-{secrets.token_hex(4)}"}, 202)
        server, password = made[0]
        return json_body(request, {"server": v.created(server, password,
                                                       req.security_groups)}, 202)

    async def _hinted_group(self, request: Any) -> str | None:
        """The server group of the create's ``group`` scheduler hint (Nova:
        ``os:scheduler_hints`` beside ``server``), None without one; 400
        for a group the caller may not see."""
        body = json_object(self._body(request))
        hints = body.get("os:scheduler_hints", body.get("OS-SCH-HNT:scheduler_hints"))
        if hints is None:
            return None
        if not isinstance(hints, dict):
            raise errors.BadRequest("os:scheduler_hints must be an object.")
        group = hints.get("group")
        if group is None:
            return None
        if not isinstance(group, str) or not group:
            raise errors.BadRequest("The group scheduler hint must be a server group id.")
        try:
            found = await self._servers.groups.get(self._user(request), self._projects(request),
                                                   group, user_of(request).is_admin)
        except errors.NotFound as e:
            raise errors.BadRequest(e.message) from None
        return found.id

    async def _record(self, request: Any, server: Any, action: str, job: bool = True) -> None:
        """Note the request in the server's instance actions."""
        await self._servers.actions.record(server, self._request_id(request), action,
                                           self._user(request), job)

    @staticmethod
    def _request_id(request: Any) -> str:
        """The request's id (``x-openstack-request-id``), for its instance
        action."""
        return getattr(request, "request_id", "") or f"req-{secrets.token_hex(16)}"

    async def _room(self, request: Any, user: str, req: Any) -> int:
        """How many servers of ``req``'s flavor the caller's quota
        (``/limits``' instances, cores and ram) has room for now."""
        flavor = await self._flavors.by_id(req.flavor_id, self._projects(request),
                                           user_of(request).is_admin)
        limits = await self._servers.limits(user, req.project or scope_of(request))
        room = 1 << 30
        for limit, used, each in (("maxTotalInstances", "totalInstancesUsed", 1),
                                  ("maxTotalCores", "totalCoresUsed", flavor.cpu),
                                  ("maxTotalRAMSize", "totalRAMUsed", flavor.ram)):
            if limit in limits and used in limits and each > 0:
                room = min(room, max(0, limits[limit] - limits[used]) // each)
        return room

    async def _create_one(self, request: Any, user: str, req: Any) -> tuple[Any, str]:
        try:
            created: tuple[Any, str] = await self._servers.create(
                user, req, scope_of(request), request_id=self._request_id(request))
        except errors.NotFound as e:
            # Nova answers 400 for a create naming an image, keypair or
            # network that is not there.
            if not self._v(request).missing_on_create_is_bad_request:
                raise
            raise errors.BadRequest(e.message) from None
        return created

    async def _check_networks(self, request: Any, user: str, nics: Any) -> None:
        """In Nova's dialect a network or port the user may not use is a
        400 on create (Nova's ``NetworkNotFound``/``PortNotFound`` there);
        Synnefo's answers 404, from the create itself."""
        networks = self._servers.networks
        if not nics or networks is None or not isinstance(self._v(request), NovaViews):
            return
        try:
            await networks.plan(user, nics)
        except errors.NotFound as e:
            raise errors.BadRequest(e.message) from None

    async def show_server(self, request: Any, server_id: str) -> bytes:
        server = await self._server(request, server_id)
        diagnostics = await self._servers.diagnostics(server.userid, server.id)
        return json_body(request, {"server": self._shown(
            request, server, await self._placement(request), diagnostics=diagnostics)})

    async def rename_server(self, request: Any, server_id: str) -> bytes:
        """``PUT`` ``{"server": {"name", "accessIPv4", "accessIPv6"}}`` (any
        of them): 204 in Synnefo's dialect, the short server in Nova's."""
        user = await self._changing(request, server_id)
        sid = int_id(server_id, "Server")
        body = self._object(request, "server")
        keys = self._v(request).update_keys()
        # Nova takes an update that changes nothing (and answers the server).
        nothing = not body and self._v(request).negotiates
        if (not keys & set(body) and not nothing) or set(body) - keys:
            raise errors.BadRequest(f"Only these of a server can be changed here:"
                                    f" {', '.join(sorted(keys))}.")
        await self._servers.rename(
            user, sid, check_name(body["name"]) if "name" in body else None,
            check_access_ip(body["accessIPv4"], 4) if "accessIPv4" in body else None,
            check_access_ip(body["accessIPv6"], 6) if "accessIPv6" in body else None,
            check_description(body["description"]) if "description" in body else KEEP)
        server = await self._server(request, server_id)
        shown = self._v(request).renamed(server)
        if shown is not None:
            _add_locked(request, shown, server)
        return self._empty(request, 204) if shown is None else json_body(request,
                                                                          {"server": shown})

    async def delete_server(self, request: Any, server_id: str) -> bytes:
        owner = await self._changing(request, server_id)
        server = await self._servers.destroy(owner, int_id(server_id, "Server"))
        await self._record(request, server, "delete")
        return self._empty(request, 204)

    async def remote_console(self, request: Any, server_id: str) -> bytes:
        """2.6's ``remote-consoles`` (2.8 adds ``mks``): the protocol and
        type are checked as Nova checks them; the answer is 501 as for
        ``os-getVNCConsole``, since no console proxy serves URLs here
        (Synnefo's ``console`` action of the v2.0 dialect gives the VNC
        endpoint itself)."""
        if not (self._v(request).negotiates and at_least(request, 6)):
            raise errors.NotFound("The resource could not be found.")
        body = self._object(request, "remote_console")
        protocols = {"vnc": ("novnc", "xvpvnc"), "spice": ("spice-html5",),
                     "rdp": ("rdp-html5",), "serial": ("serial",)}
        if at_least(request, 8):
            protocols["mks"] = ("webmks",)
        protocol, kind = body.get("protocol"), body.get("type")
        if protocol not in protocols or kind not in protocols[protocol]:
            raise errors.BadRequest(f"Unsupported remote console protocol {protocol!r} or"
                                    f" type {kind!r}.")
        await self._server(request, server_id)
        raise errors.NotImplementedFault(f"No {protocol} console proxy is served here.")

    async def action(self, request: Any, server_id: str) -> bytes:
        """``POST /servers/<id>/action`` with one action key."""
        sid = int_id(server_id, "Server")
        body = json_object(self._body(request))
        if "rebuild" in body and len(body) == 1:
            return await self._rebuild(request, server_id, body["rebuild"])
        if isinstance(body.get("resize"), dict):
            body = {**body, "resize": await self._serial_flavor_ref(request, body["resize"])}
        if isinstance(body.get("evacuate"), dict) and "onSharedStorage" in body["evacuate"] \
                and self._v(request).negotiates and at_least(request, 14):
            raise errors.BadRequest("onSharedStorage is not accepted from microversion 2.14"
                                    " (where the storage is shared is known).")
        v = self._v(request)
        if v.since(44) and set(body) & _REMOVED_ACTIONS:
            raise errors.NotFound(f"There is no such action: {next(iter(body))} (removed"
                                  " from microversion 2.44).")
        action = parse_action(body, v.microversion)
        s = self._servers
        if isinstance(action, Lock):
            locked = await s.set_lock(await self._acting(request, server_id), sid,
                                      action.locked, user_of(request).is_admin)
            await self._record(request, locked, "lock" if action.locked else "unlock", False)
            return self._empty(request, 202)
        if isinstance(action, CreateImage):
            return await self._create_image(request, server_id, action)
        user = await self._changing(request, server_id)
        match action:
            case Start():
                await self._record(request, await s.start(user, sid), "start")
            case Stop():
                await self._record(request, await s.stop(user, sid), "stop")
            case Reboot(hard=hard):
                await self._record(request, await s.reboot(user, sid, hard), "reboot")
            case Resize(flavor_id=flavor_id):
                await self._record(request, await s.resize(user, sid, flavor_id), "resize")
            case Console():
                console = await s.console(user, sid)
                return json_body(request, {"console": console})
            case Firewall():
                await s.firewall(user, sid, action)
            case Reassign():
                await s.reassign(user, sid, action)
                return self._empty(request, 200)
            case Rescue(image_ref=image_ref):
                await self._record(request, await s.rescue(user, sid, image_ref), "rescue")
            case Unrescue():
                await self._record(request, await s.unrescue(user, sid), "unrescue")
            case ResetState(state=state):
                if not user_of(request).is_admin:
                    raise errors.Forbidden("os-resetState is for administrators only.")
                await s.reset_state(user, sid, state)
            case AddFloatingIp():
                await self._proxies.add_floating_ip(request, server_id, action)
            case RemoveFloatingIp():
                await self._proxies.remove_floating_ip(request, server_id, action)
            case SecurityGroupChange():
                await self._security.change(request, server_id, action)
            case TriggerCrashDump():
                server = await self._server(request, server_id)
                if not v.since(17):
                    raise errors.BadRequest("Unknown action 'trigger_crash_dump' (it is"
                                            " accepted from microversion 2.17).")
                if v.status(server) != "ACTIVE":
                    raise errors.Conflict(f"Server {server_id} is not running.")
                raise errors.BadRequest("Triggering a crash dump is not supported: Ganeti's"
                                        " API cannot send a guest an NMI.")
            case Restore():
                await self._server(request, server_id)
                raise errors.Conflict(f"Server {server_id} is not soft-deleted: this cloud"
                                      " deletes servers at once.")
            case InjectNetworkInfo():
                if not user_of(request).is_admin:
                    raise errors.Forbidden("injectNetworkInfo is for administrators only.")
                # Nova injects network settings for nova-network only; with
                # ports (Neutron's or these) the guest gets them by DHCP and
                # the action does nothing.
                await self._server(request, server_id)
            case Migrate(kind=kind):
                if not user_of(request).is_admin:
                    raise errors.Forbidden("Moving servers between nodes is for"
                                           " administrators only.")
                moved = await s.migrate(user, sid, action)
                await self._record(request, moved, _MIGRATION_ACTIONS[kind])
                if kind == "evacuation":
                    # No new password (the disks move with the server); from
                    # 2.14 Nova's answer has no body at all.
                    if self._v(request).negotiates and at_least(request, 14):
                        return self._empty(request, 200)
                    return json_body(request, {})
            case Unsupported(name=name, admin_only=admin_only):
                await self._server(request, server_id)
                if admin_only:
                    raise errors.Forbidden(f"The action {name} is for administrators only.")
                raise errors.NotImplementedFault(f"The action {name} is not supported.")
        return self._empty(request, 202)

    async def _create_image(self, request: Any, server_id: str, action: CreateImage) -> bytes:
        """``createImage``/``createBackup`` (``snfd.cyclades.server_images``):
        202; the image's id in the body from 2.45, else its link in
        ``Location``."""
        if self._server_images is None:
            raise errors.NotImplementedFault("Server images are not made here.")
        user = await self._acting(request, server_id)
        image = await self._server_images.create(
            user, int_id(server_id, "Server"), action.name, action.metadata,
            project=user_of(request).project, backup=action.backup)
        server = await self._servers.get(user, int_id(server_id, "Server"))
        await self._record(request, server, "createBackup" if action.backup else "createImage",
                           False)
        v = self._v(request)
        if v.since(45):
            return json_body(request, {"image_id": image.id}, 202)
        request.setHeader(b"location", v.links("images", image.id)[0]["href"].encode())
        return self._empty(request, 202)

    async def _rebuild(self, request: Any, server_id: str, args: Any) -> bytes:
        """``rebuild``: 202 with the server (its new image, name and
        metadata already; Nova's dialect: the short server a rename
        answers) and its new ``adminPass``."""
        user = await self._changing(request, server_id)
        v = self._v(request)
        req = parse_rebuild(args, self._servers.settings, v.strong_admin_pass,
                            v.rebuild_keys())
        server, password = await self._servers.rebuild(user, int_id(server_id, "Server"), req)
        await self._record(request, server, "rebuild")
        shown = self._v(request).rebuilt(server, password)
        _add_locked(request, shown, server)
        return json_body(request, {"server": shown}, 202)

    async def ips(self, request: Any, server_id: str) -> bytes:
        server = await self._server(request, server_id)
        return json_body(request, {"addresses": self._v(request).addresses(server)})

    async def ips_of(self, request: Any, server_id: str, network: str) -> bytes:
        server = await self._server(request, server_id)
        addresses = self._v(request).addresses(server)
        if network not in addresses:
            raise errors.NotFound(f"Server {server.id} has no address on network {network}.")
        return json_body(request, {network: addresses[network]})

    # -- metadata and tags ---------------------------------------------------

    async def metadata(self, request: Any, server_id: str) -> bytes:
        server = await self._server(request, server_id)
        return json_body(request, {"metadata": dict(server.metadata)})

    async def _set_metadata(self, request: Any, server_id: str, items: Any,
                            replace: bool = False) -> dict[str, str]:
        """Merge (or replace with) ``items``; the server's metadata after.
        Past the item limit Nova's dialect answers 403, as Nova's quota
        does (Synnefo's 400 comes from the effect path)."""
        v = self._v(request)
        checked = check_metadata(items, max_value=v.max_meta_text)
        user = await self._changing(request, server_id)
        sid = int_id(server_id, "Server")
        limit = self._servers.settings.max_metadata
        if isinstance(v, NovaViews):
            before = {} if replace else dict((await self._servers.get(user, sid)).metadata)
            if len({**before, **checked}) > limit:
                raise errors.Forbidden(f"Quota exceeded for metadata_items: a server may"
                                       f" have at most {limit}.")
        return await self._servers.set_metadata(user, sid, checked, replace=replace)

    async def merge_metadata(self, request: Any, server_id: str) -> bytes:
        """``POST``: merge; all the metadata (201 in Synnefo's dialect, 200
        in Nova's)."""
        items = json_object(self._body(request)).get("metadata")
        if not isinstance(items, dict):
            raise errors.BadRequest('The request needs a "metadata" object.')
        result = await self._set_metadata(request, server_id, items)
        return json_body(request, {"metadata": result}, self._v(request).metadata_set_code)

    async def replace_metadata(self, request: Any, server_id: str) -> bytes:
        """``PUT``: replace all; 200 with the metadata."""
        items = json_object(self._body(request)).get("metadata")
        if not isinstance(items, dict):
            raise errors.BadRequest('The request needs a "metadata" object.')
        result = await self._set_metadata(request, server_id, items, replace=True)
        return json_body(request, {"metadata": result})

    async def metadata_item(self, request: Any, server_id: str, key: str) -> bytes:
        server = await self._server(request, server_id)
        if key not in server.metadata:
            raise errors.NotFound(f"Metadata key {key!r} not found.")
        return json_body(request, {"meta": {key: server.metadata[key]}})

    async def set_metadata_item(self, request: Any, server_id: str, key: str) -> bytes:
        """``PUT {"meta": {key: value}}``: 201 in Synnefo's dialect, 200 in
        Nova's."""
        meta = json_object(self._body(request)).get("meta")
        if not isinstance(meta, dict) or list(meta) != [key]:
            raise errors.BadRequest(f'The request needs "meta" with exactly the key {key!r}.')
        result = await self._set_metadata(request, server_id, meta)
        return json_body(request, {"meta": {key: result[key]}},
                         self._v(request).metadata_set_code)

    async def delete_metadata_item(self, request: Any, server_id: str, key: str) -> bytes:
        await self._servers.delete_metadata(await self._changing(request, server_id),
                                            int_id(server_id, "Server"), key)
        return self._empty(request, 204)

    async def tags(self, request: Any, server_id: str) -> bytes:
        server = await self._server(request, server_id)
        return json_body(request, {"tags": list(server.tags)})

    async def replace_tags(self, request: Any, server_id: str) -> bytes:
        tags = check_tags(json_object(self._body(request)).get("tags"))
        result = await self._servers.set_tags(await self._changing(request, server_id),
                                              int_id(server_id, "Server"), tags)
        return json_body(request, {"tags": list(result)})

    async def delete_tags(self, request: Any, server_id: str) -> bytes:
        await self._servers.delete_tag(await self._changing(request, server_id),
                                       int_id(server_id, "Server"), None)
        return self._empty(request, 204)

    async def tag(self, request: Any, server_id: str, tag: str) -> bytes:
        server = await self._server(request, server_id)
        if tag not in server.tags:
            raise errors.NotFound(f"Tag {tag!r} not found.")
        return self._empty(request, 204)

    async def add_tag(self, request: Any, server_id: str, tag: str) -> bytes:
        """``PUT /tags/<tag>``: 201 when added, 204 when it was there; the
        tag's URL in ``Location`` (Nova's)."""
        check_tag(tag)
        user = await self._changing(request, server_id)
        sid = int_id(server_id, "Server")
        before = await self._servers.get(user, sid)
        await self._servers.set_tags(user, sid, (tag,), add=True)
        v = self._v(request)
        request.setHeader(b"location", f"{v.links('servers', sid)[0]['href']}/tags/"
                                       f"{quote(tag, safe='')}".encode())
        return self._empty(request, 204 if tag in before.tags else 201)

    async def delete_tag(self, request: Any, server_id: str, tag: str) -> bytes:
        await self._servers.delete_tag(await self._changing(request, server_id),
                                       int_id(server_id, "Server"), tag)
        return self._empty(request, 204)

    # -- other server reads --------------------------------------------------------

    async def stats(self, request: Any, server_id: str) -> bytes:
        await self._server(request, server_id)
        raise errors.NotImplementedFault("Server statistics are not available on this cloud.")

    async def diagnostics(self, request: Any, server_id: str) -> bytes:
        v = self._v(request)
        if v.diagnostics_for_admins and not user_of(request).is_admin:
            raise errors.Forbidden("Server diagnostics are for administrators.")
        server = await self._server(request, server_id)
        found = await self._servers.diagnostics(server.userid, server.id)
        return json_body(request, v.diagnostics(server, found))

    async def password(self, request: Any, server_id: str) -> bytes:
        password = await self._servers.password(await self._acting(request, server_id),
                                                int_id(server_id, "Server"))
        return json_body(request, {"password": password})

    async def server_password(self, request: Any, server_id: str) -> bytes:
        """Nova's ``os-server-password``: the password the guest encrypted
        with its key and posted to the metadata service.  snf-image posts
        none (the admin password is ``adminPass`` at create, and
        ``/password`` while cached), so it is always empty."""
        await self._server(request, server_id)
        return json_body(request, {"password": ""})

    async def clear_server_password(self, request: Any, server_id: str) -> bytes:
        """``DELETE os-server-password``: 204; there is nothing to clear."""
        await self._server(request, server_id)
        return self._empty(request, 204)

    # -- volume attachments ------------------------------------------------------

    def _volumes(self) -> Any:
        volumes = self._servers.volumes
        if volumes is None:
            raise errors.NotImplementedFault("This cloud serves no volumes.")
        return volumes

    @staticmethod
    def _attachment(volume: Any) -> dict[str, Any]:
        return {"id": volume.id, "volumeId": volume.id, "serverId": str(volume.server_id),
                "device": volume.device or None}

    async def _attached(self, request: Any, server: Any) -> list[Any]:
        """The server's volumes the dialect shows as attached to it."""
        volumes = await self._volumes().server_volumes(server.id)
        return self._v(request).volumes(server, [
            v for v in volumes if v.status in ("in-use", "attaching", "detaching")])

    async def volume_attachments(self, request: Any, server_id: str) -> bytes:
        server = await self._server(request, server_id)
        found = await self._attached(request, server)
        return json_body(request, {"volumeAttachments": [self._attachment(v) for v in found]})

    async def volume_attachment(self, request: Any, server_id: str, volume_id: str) -> bytes:
        server = await self._server(request, server_id)
        for v in await self._attached(request, server):
            if v.id == volume_id:
                return json_body(request, {"volumeAttachment": self._attachment(v)})
        raise errors.NotFound(f"Volume {volume_id[:40]} is not attached to server"
                              f" {server_id}.")

    async def attach_volume(self, request: Any, server_id: str) -> bytes:
        """Attach a thin volume: a Ganeti disk is added (the volume is
        ``attaching`` until the job ends)."""
        user = await self._changing(request, server_id)
        body = self._object(request, "volumeAttachment")
        volume_id = body.get("volumeId")
        if not isinstance(volume_id, str) or not volume_id:
            raise errors.BadRequest("volumeAttachment needs a volumeId.")
        if "tag" in body:
            raise errors.BadRequest(DEVICE_TAGS_REFUSED)
        server = await self._servers.get(user, int_id(server_id, "Server"))
        volume = await self._volumes().attach(user, server, volume_id)
        return json_body(request, {"volumeAttachment": self._attachment(volume)})

    async def swap_volume(self, request: Any, server_id: str, volume_id: str) -> bytes:
        """Nova's volume swap (administrators): 404 unless ``volume_id`` is
        attached to the server, then 400: Ganeti cannot replace a disk's
        storage under a running instance (detach one, attach the other)."""
        if not user_of(request).is_admin:
            raise errors.Forbidden("Swapping a server's volume is for administrators.")
        server = await self._server(request, server_id)
        if not any(v.id == volume_id
                   for v in await self._attached(request, server)):
            raise errors.NotFound(f"Volume {volume_id[:40]} is not attached to server"
                                  f" {server_id}.")
        raise errors.BadRequest("Swapping a volume is not supported: detach it and attach"
                                " the other.")

    async def detach_volume(self, request: Any, server_id: str, volume_id: str) -> bytes:
        user = await self._changing(request, server_id)
        server = await self._servers.get(user, int_id(server_id, "Server"))
        await self._volumes().detach(user, server, volume_id)
        return self._empty(request, 202)

    # -- images -------------------------------------------------------------------

    def _image(self, request: Any, image: Any, detail: bool) -> dict[str, Any]:
        v = self._v(request)
        out = dict(self._image_views[v.prefix](image, detail))
        out.setdefault("links", v.links("images", image.id))
        shown = v.image(out, detail)
        if "minRam" in shown:   # Nova's: what the image needs of a flavor
            shown.update(minRam=int(getattr(image, "min_ram", 0) or 0),
                         minDisk=int(getattr(image, "min_disk", 0) or 0))
        return shown

    async def _image_listing(self, request: Any, detail: bool) -> bytes:
        """Nova's image proxy listing: the images the caller may use,
        filtered by ``name``, ``status``, ``minRam``, ``minDisk``,
        ``changes-since``, ``server`` (a link or id: the server a snapshot
        was taken of) and ``type`` (``snapshot``, ``backup``), then paged
        by ``marker`` and ``limit``."""
        found = [(i, self._image(request, i, True))
                 for i in await self._images.list(self._user(request),
                                                  project=user_of(request).project)]
        name, status = query(request, "name"), query(request, "status")
        if name is not None:
            found = [(i, v) for i, v in found if v.get("name") == name]
        if status is not None:
            found = [(i, v) for i, v in found if v.get("status") == status.upper()]
        for key, field in (("minRam", "min_ram"), ("minDisk", "min_disk")):
            least = query(request, key)
            if least is not None:
                floor = count(least, key)
                found = [(i, v) for i, v in found if int(getattr(i, field, 0) or 0) >= floor]
        since = query(request, "changes-since")
        if since is not None:
            when = parse_since(since)
            found = [(i, v) for i, v in found
                     if v.get("updated") and parse_since(v["updated"]) >= when]
        for key, prop in (("server", "instance_uuid"), ("type", "image_type")):
            wanted = query(request, key)
            if wanted is not None:
                wanted = wanted.rstrip("/").rsplit("/", 1)[-1]
                found = [(i, v) for i, v in found
                         if str((v.get("metadata") or {}).get(prop, "")) == wanted]
        found = page(request, found, "Image", key=lambda pair: pair[1]["id"])
        return json_body(request, {"images": [v if detail else self._image(request, i, False)
                                              for i, v in found]})

    async def list_images(self, request: Any) -> bytes:
        return await self._image_listing(request, False)

    async def list_images_detail(self, request: Any) -> bytes:
        return await self._image_listing(request, True)

    async def delete_image(self, request: Any, image_id: str) -> bytes:
        """Nova's image proxy delete (to 2.35): the image service's (Glance
        v2's: the image and its data go; 403 while protected)."""
        await GlanceImages(self._images).delete(self._user(request), image_id,
                                                user_of(request).is_admin)
        return self._empty(request, 204)

    async def show_image(self, request: Any, image_id: str) -> bytes:
        image = await self._get_image(request, image_id)
        return json_body(request, {"image": self._image(request, image, True)})

    async def image_metadata(self, request: Any, image_id: str) -> bytes:
        image = await self._get_image(request, image_id)
        return json_body(request, {"metadata": dict(image.properties or {})})

    async def image_metadata_item(self, request: Any, image_id: str, key: str) -> bytes:
        image = await self._get_image(request, image_id)
        properties = dict(image.properties or {})
        if key not in properties:
            raise errors.NotFound(f"Image metadata key {key!r} not found.")
        return json_body(request, {"meta": {key: properties[key]}})

    def _image_items(self, request: Any, key: str) -> dict[str, str]:
        items = json_object(self._body(request)).get(key)
        if not isinstance(items, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in items.items()):
            raise errors.BadRequest(f'The request needs a "{key}" object of non-empty'
                                    " names and string values.")
        return items

    async def _set_properties(self, request: Any, image_id: str,
                              changes: dict[str, str]) -> dict[str, str]:
        """Change the image's properties (its owner only; "" removes one);
        the properties after."""
        image = await self._images.update(self._user(request), image_id,
                                          {"properties": changes})
        return dict(image.properties or {})

    async def merge_image_metadata(self, request: Any, image_id: str) -> bytes:
        """``POST``: merge into the image's properties; 200 with them all."""
        items = self._image_items(request, "metadata")
        await self._get_image(request, image_id)
        result = await self._set_properties(request, image_id, items)
        return json_body(request, {"metadata": result})

    async def replace_image_metadata(self, request: Any, image_id: str) -> bytes:
        """``PUT``: the properties become exactly these; 200."""
        items = self._image_items(request, "metadata")
        image = await self._get_image(request, image_id)
        removed = {k: "" for k in (image.properties or {}) if k not in items}
        result = await self._set_properties(request, image_id, {**removed, **items})
        return json_body(request, {"metadata": result})

    async def set_image_metadata_item(self, request: Any, image_id: str, key: str) -> bytes:
        """``PUT {"meta": {key: value}}``: 200."""
        meta = self._image_items(request, "meta")
        if list(meta) != [key]:
            raise errors.BadRequest(f'The request needs "meta" with exactly the key {key!r}.')
        await self._get_image(request, image_id)
        result = await self._set_properties(request, image_id, meta)
        return json_body(request, {"meta": {key: result[key]}})

    async def delete_image_metadata_item(self, request: Any, image_id: str,
                                         key: str) -> bytes:
        image = await self._get_image(request, image_id)
        if key not in (image.properties or {}):
            raise errors.NotFound(f"Image metadata key {key!r} not found.")
        await self._set_properties(request, image_id, {key: ""})
        return self._empty(request, 204)

    # -- keypairs --------------------------------------------------------------------

    def _keypair_owner(self, request: Any, asked: Any = None) -> str:
        """Whose keypairs a request acts on: the caller's, or from 2.10 an
        administrator's choice (``user_id`` in the query or the create
        body; 403 for anyone else naming another user)."""
        user = self._user(request)
        if asked is None and at_least(request, 10):
            asked = query(request, "user_id")
        if asked is None or asked == user:
            return user
        if not isinstance(asked, str) or not at_least(request, 10):
            raise errors.BadRequest("user_id is not accepted at this microversion.")
        if not user_of(request).is_admin:
            raise errors.Forbidden("Only administrators manage other users' keypairs.")
        return asked

    def _keypair_view(self, request: Any, keypair: Any, **how: bool) -> dict[str, Any]:
        out: dict[str, Any] = self._v(request).keypair(keypair, **how)
        if self._v(request).negotiates and at_least(request, 2):
            out["type"] = keypair.type
        return out

    async def list_keypairs(self, request: Any) -> bytes:
        """The caller's keypairs by name; from 2.35 paged by ``limit`` and
        ``marker`` (a name), with ``keypairs_links`` to the next page when
        a full page was answered."""
        found = await self._servers.keypairs.of_user(self._keypair_owner(request))
        body: dict[str, Any] = {}
        if self._v(request).since(35):
            found = page(request, sorted(found, key=lambda k: k.name), "Keypair",
                         key=lambda k: k.name)
            if query(request, "limit") is not None:
                links = next_links(request, len(found), found[-1].name if found else None,
                                   "os-keypairs")
                if links:
                    body["keypairs_links"] = links
        return json_body(request, {"keypairs": [{"keypair": self._keypair_view(request, k)}
                                                for k in found], **body})

    async def create_keypair(self, request: Any) -> bytes:
        """Upload (``public_key``) or generate (the ``private_key`` is in
        this answer only); 200 as Nova 2.1 (201 from 2.2, which takes a
        ``type``; 2.10 an administrator's ``user_id``), 409 if the name is
        taken."""
        body = self._object(request, "keypair")
        nova = self._v(request).negotiates
        key_type = body.get("type", "ssh")
        if "type" in body and not (nova and at_least(request, 2)):
            raise errors.BadRequest("Keypair type is accepted from microversion 2.2.")
        owner = self._keypair_owner(request, body.get("user_id")) if "user_id" in body \
            else self._user(request)
        keypair = await self._servers.keypairs.create(owner, body.get("name"),
                                                      body.get("public_key"), key_type)
        code = 201 if nova and at_least(request, 2) else 200
        return json_body(request, {"keypair": self._keypair_view(request, keypair,
                                                                 created=True)}, code)

    async def show_keypair(self, request: Any, name: str) -> bytes:
        keypair = await self._servers.keypairs.get(self._keypair_owner(request), name)
        return json_body(request, {"keypair": self._keypair_view(request, keypair,
                                                                 detail=True)})

    async def delete_keypair(self, request: Any, name: str) -> bytes:
        await self._servers.keypairs.delete(self._keypair_owner(request), name)
        v = self._v(request)
        return self._empty(request, 204 if v.negotiates and at_least(request, 2)
                           else v.keypair_deleted_code)


class VmapiApp:
    """What builds ask of the node, without a token (the keys in the paths
    are the builds' secrets):

    - ``GET /server-params/<key>``: a build's parameters, handed out once
      (404 afterwards);
    - ``POST /server-progress/<key>``: one progress report or diagnostic of
      a build's OS definition (snf-image), in the shape of Synnefo's
      progress messages (``type``: ``image-copy-progress`` with
      ``progress``, ``image-info``/``-warning``/``-error``/``-helper``
      with ``messages``; ``event_time``: ``[seconds, microseconds]`` of the
      build host's clock, which Ganeti's job times share), applied by the
      update path as if it had come over the bus: build progress, and
      diagnostics the server's owner sees.  204; 400 for a malformed
      report or one whose time is not within a day of now; 404 for an
      unknown key or after ``servers.MAX_IMAGE_REPORTS`` reports.
    """

    #: The largest report body.
    MAX_REPORT = 16 * 1024

    def __init__(self, servers: Servers, updates: Any, clock: Any):
        self._servers = servers
        self._updates = updates
        self._clock = clock
        self.app: Klein = make_app()
        self.app.route("/server-params/<key>", methods=["GET"],
                       endpoint="vmapi:params")(self.params)
        self.app.route("/server-progress/<key>", methods=["POST"],
                       endpoint="vmapi:progress")(self.progress)

    def resource(self) -> IResource:
        resource: IResource = self.app.resource()
        return resource

    async def params(self, request: Any, key: str) -> bytes:
        return json_body(request, await self._servers.server_params(key))

    async def progress(self, request: Any, key: str) -> bytes:
        report = json_object(body_of(request, self.MAX_REPORT))
        server_id = await self._servers.progress_server(key)
        try:
            when = event_time(report.get("event_time"))
            now = self._clock.seconds()
            if abs(when.timestamp() - now) > REPORT_SKEW:
                raise MalformedMessage("event_time is not within a day of now")
            await self._updates.progress({**report, "instance": model.instance_name(server_id)})
        except MalformedMessage as e:
            raise errors.BadRequest(f"Malformed report: {e}") from None
        return empty(request, 204)


#: How far a build report's time may be from the node's (seconds).
REPORT_SKEW = 24 * 3600


def _add_locked(request: Any, shown: dict[str, Any], server: Any) -> None:
    """Nova's ``locked`` (from 2.9) in a server's detail, rename and
    rebuild answers."""
    if views_of(request).negotiates and at_least(request, 9):
        shown["locked"] = bool(server.locked_by)


_HOSTNAME = re.compile(r"[^a-z0-9-]+")


def _extended_attributes(server: Any) -> dict[str, Any]:
    """The ``OS-EXT-SRV-ATTR`` attributes 2.3 adds for administrators.  A
    server is one create's only server (launch index 0, no reservation
    kept); Ganeti boots it with its own kernel from its first disk; its
    user data is handed to the image once and not kept."""
    hostname = _HOSTNAME.sub("-", server.name.lower()).strip("-")[:63] or f"server-{server.id}"
    return {"OS-EXT-SRV-ATTR:reservation_id": None, "OS-EXT-SRV-ATTR:launch_index": 0,
            "OS-EXT-SRV-ATTR:hostname": hostname, "OS-EXT-SRV-ATTR:kernel_id": "",
            "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
            "OS-EXT-SRV-ATTR:user_data": None}
