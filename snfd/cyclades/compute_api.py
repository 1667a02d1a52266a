"""The compute API (``/compute/v2.0``): OpenStack Compute v2.1 with
Synnefo's ``SNF:`` extensions (reference/synnefo-apis.md 3.1), over
``snfd.cyclades.servers.Servers``: bodies are checked into typed requests
(``snfd.cyclades.requests``) here, and the effect path receives those.

``ComputeAPI(servers, images, base_url).app`` is one Klein app; the node
mounts it behind ``TokenAuth`` at ``/compute`` (so its routes start at
``/v2.0``).  ``base_url`` is where it is mounted as clients reach it
(``https://cloud.example.org/compute``): links are built on it.
``VmapiApp(servers).app`` serves ``GET /server-params/<key>`` without a
token (snf-image fetches its build parameters once; they are gone after
that, after the build ends and after a delete); the node mounts it at
``/vmapi``.

Requests carry JSON only: a body with another ``Content-Type`` or not
valid JSON is 400.  Every answer says microversion 2.1
(``X-OpenStack-Nova-API-Version: 2.1``, ``OpenStack-API-Version: compute
2.1``); requests naming another 2.x microversion are served as 2.1, and
the version documents (``GET /`` and ``GET /v2.0``) advertise
``min_version`` = ``version`` = 2.1, so OpenStack clients negotiate 2.1
(``openstack server create`` then sends ``"networks": []`` when no
network is named, which means the default NICs here).

Server ids, flavor ids are integers, as in Synnefo; an id that is not an
integer is 404.  ``GET /servers[/detail]?changes-since=<ISO 8601>`` lists
servers changed since then, deleted ones included, and answers 304 when
there are none; ``name`` (a regular expression, as Nova, searched by RE2 in
linear time: ``requests.parse_name_filter``) and ``status`` filter the
listing, other query parameters are ignored.  Server lists
carry no diagnostics (``GET /servers/<id>`` and ``/diagnostics`` do).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Callable
from typing import Any

from klein import Klein
from twisted.web.resource import IResource

from snfd import errors
from snfd.cyclades import model
from snfd.cyclades.keypairs import Keypair
from snfd.cyclades.model import Flavor, Server
from snfd.cyclades.requests import (
    Console,
    Firewall,
    Reassign,
    Reboot,
    Rescue,
    Resize,
    Start,
    Stop,
    Unrescue,
    Unsupported,
    check_metadata,
    check_name,
    check_tag,
    check_tags,
    parse_action,
    parse_create,
    parse_name_filter,
)
from snfd.cyclades.servers import Servers
from snfd.web.app import MAX_JSON_BODY, json_body, json_object, make_app, read_json
from snfd.web.auth import user_of

UTC = datetime.UTC
PREFIX = "/v2.0"
MICROVERSION = "2.1"
VERSION_UPDATED = "2013-07-23T11:33:21Z"
Handler = Callable[..., Awaitable[bytes]]


def iso(value: datetime.datetime | None) -> str | None:
    """ISO 8601 in UTC (``2024-01-02T03:04:05.123456+00:00``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _links(base: str, kind: str, ident: Any) -> list[dict[str, str]]:
    href = f"{base}{PREFIX}/{kind}/{ident}"
    return [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]


def _nic_views(server: Server) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    attachments: list[dict[str, Any]] = []
    addresses: dict[str, list[dict[str, Any]]] = {}
    for nic in server.nics:
        network = str(nic.get("network") or nic.get("link") or "default")
        ip = nic.get("ip")
        ipv6 = nic.get("ipv6")
        attachments.append({
            "id": str(nic.get("id", "")), "network_id": network,
            "mac_address": nic.get("mac") or "",
            "firewallProfile": nic.get("firewall") or "DISABLED",
            "ipv4": ip or "", "ipv6": ipv6 or "", "OS-EXT-IPS:type": "fixed"})
        entries = addresses.setdefault(network, [])
        if ip:
            entries.append({"version": 4, "addr": ip, "OS-EXT-IPS:type": "fixed"})
        if ipv6:
            entries.append({"version": 6, "addr": ipv6, "OS-EXT-IPS:type": "fixed"})
    return attachments, addresses


def diagnostic_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {"level": entry["level"], "created": iso(entry["created"]),
            "source": entry["source"], "source_date": iso(entry["source_date"]),
            "message": entry["message"], "details": entry["details"]}


def server_json(server: Server, base: str, detail: bool = True,
                diagnostics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A server as the API shows it (reference 3.1, "Server dict")."""
    links = _links(base, "servers", server.id)
    if not detail:
        return {"id": server.id, "name": server.name, "links": links}
    status = model.api_status(server)
    if status == "ACTIVE":
        progress = 100
    elif server.operstate == "BUILD" and not server.deleted:
        progress = server.buildpercentage
    else:
        progress = 0
    attachments, addresses = _nic_views(server)
    fqdn = next((a["ipv4"] for a in attachments if a["ipv4"]), "")
    return {
        "id": server.id,
        "name": server.name,
        "status": status,
        "SNF:task_state": model.task_state(server),
        "progress": progress,
        "user_id": server.userid,
        "tenant_id": server.project,
        "shared_to_project": server.shared_to_project,
        "created": iso(server.created),
        "updated": iso(server.updated),
        "hostId": "",
        "flavor": {"id": server.flavor.id, "links": _links(base, "flavors", server.flavor.id)},
        "image": {"id": server.image_id, "links": _links(base, "images", server.image_id)},
        "metadata": dict(server.metadata),
        "tags": list(server.tags),
        "suspended": server.suspended,
        "deleted": server.deleted,
        "SNF:rescue": server.rescue,
        "attachments": attachments,
        "addresses": addresses,
        "volumes": [],
        "diagnostics": [diagnostic_json(d) for d in diagnostics or ()],
        "key_name": server.key_names[0] if server.key_names else None,
        "SNF:key_names": list(server.key_names),
        "SNF:fqdn": fqdn,
        "SNF:port_forwarding": {},
        "security_groups": [{"name": "default"}],
        "accessIPv4": "",
        "accessIPv6": "",
        "config_drive": "",
        "links": links,
    }


def flavor_json(flavor: Flavor, base: str, detail: bool = True) -> dict[str, Any]:
    """A flavor as the API shows it (reference 3.1, "Flavors")."""
    links = _links(base, "flavors", flavor.id)
    if not detail:
        return {"id": flavor.id, "name": flavor.name, "links": links}
    return {
        "id": flavor.id, "name": flavor.name, "ram": flavor.ram, "vcpus": flavor.cpu,
        "disk": flavor.disk, "SNF:disk_template": flavor.disk_template,
        "SNF:volume_type": None, "SNF:allow_create": flavor.allow_create,
        "os-flavor-access:is_public": flavor.public,
        "SNF:flavor-access": list(flavor.access),
        "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False,
        "swap": "", "rxtx_factor": 1.0, "links": links,
    }


def keypair_json(keypair: Keypair, detail: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": keypair.name, "public_key": keypair.public_key,
                           "fingerprint": keypair.fingerprint}
    if detail:
        out.update(user_id=keypair.userid, created_at=iso(keypair.created), deleted=False,
                   deleted_at=None, updated_at=None)
    if keypair.private_key is not None:
        out["private_key"] = keypair.private_key
        out["user_id"] = keypair.userid
    return out


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
        raise errors.BadRequest(f"changes-since {value[:40]!r} is not an ISO 8601 time.") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _query(request: Any, name: str) -> str | None:
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    try:
        return str(values[0].decode("utf-8"))
    except UnicodeDecodeError:
        raise errors.BadRequest(f"The parameter {name} is not UTF-8.") from None


def _int_id(value: str, what: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise errors.NotFound(f"{what} {value[:40]} not found.")
    return int(value)


def _version(base: str) -> dict[str, Any]:
    return {"id": "v2.0", "status": "CURRENT", "version": MICROVERSION,
            "min_version": MICROVERSION, "updated": VERSION_UPDATED,
            "links": [{"rel": "self", "href": f"{base}{PREFIX}/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2"}]}


class ComputeAPI:
    """The ``/compute`` Klein app (see the module docstring)."""

    def __init__(self, servers: Servers, images: Any, base_url: str,
                 max_body: int = MAX_JSON_BODY):
        self._servers = servers
        self._images = images
        self._base = base_url.rstrip("/")
        self._max_body = max_body
        self._image_view = _image_view(self._base + PREFIX)
        self.app: Klein = make_app()
        s = "/servers/<server_id>"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/", self.versions),
            ("GET", PREFIX, self.version),
            ("GET", PREFIX + "/", self.version),
            ("GET", "/servers", self.list_servers),
            ("GET", "/servers/detail", self.list_servers_detail),
            ("POST", "/servers", self.create_server),
            ("GET", s, self.show_server),
            ("PUT", s, self.rename_server),
            ("DELETE", s, self.delete_server),
            ("POST", s + "/action", self.action),
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
            ("GET", s + "/os-volume_attachments", self.volume_attachments),
            ("POST", s + "/os-volume_attachments", self.not_yet),
            ("GET", "/flavors", self.list_flavors),
            ("GET", "/flavors/detail", self.list_flavors_detail),
            ("GET", "/flavors/<flavor_id>", self.show_flavor),
            ("GET", "/images", self.list_images),
            ("GET", "/images/detail", self.list_images_detail),
            ("GET", "/images/<image_id>", self.show_image),
            ("GET", "/images/<image_id>/metadata", self.image_metadata),
            ("GET", "/images/<image_id>/metadata/<key>", self.image_metadata_item),
            ("GET", "/os-keypairs", self.list_keypairs),
            ("POST", "/os-keypairs", self.create_keypair),
            ("GET", "/os-keypairs/<name>", self.show_keypair),
            ("DELETE", "/os-keypairs/<name>", self.delete_keypair),
            ("GET", "/extensions", self.extensions),
            ("GET", "/limits", self.limits),
            ("GET", "/os-availability-zone", self.availability_zones),
        ]
        for method, path, handler in routes:
            full = path if path == "/" or path.startswith(PREFIX) else PREFIX + path
            self._route(method, full, handler)

    def _route(self, method: str, path: str, handler: Handler) -> None:
        async def endpoint(request: Any, **kwargs: Any) -> bytes:
            request.setHeader(b"x-openstack-nova-api-version", MICROVERSION.encode())
            request.setHeader(b"openstack-api-version", f"compute {MICROVERSION}".encode())
            request.setHeader(b"vary", b"OpenStack-API-Version, X-OpenStack-Nova-API-Version")
            return await handler(request, **kwargs)

        name = f"compute:{method}:{path}"
        endpoint.__name__ = name
        self.app.route(path, methods=[method], endpoint=name)(endpoint)

    def resource(self) -> IResource:
        resource: IResource = self.app.resource()
        return resource

    # -- helpers -----------------------------------------------------------

    def _body(self, request: Any, required: bool = True) -> Any:
        kind = request.getHeader(b"content-type")
        value = read_json(request, self._max_body, required=required)
        if value is not None and kind is not None and b"json" not in kind.lower():
            raise errors.BadRequest("Only JSON requests are supported"
                                    " (Content-Type: application/json).")
        return value

    def _object(self, request: Any, key: str) -> dict[str, Any]:
        body = json_object(self._body(request))
        value = body.get(key)
        if not isinstance(value, dict):
            raise errors.BadRequest(f'The request needs a "{key}" object.')
        return value

    @staticmethod
    def _user(request: Any) -> str:
        user = user_of(request).user
        assert user is not None
        return user

    @staticmethod
    def _projects(request: Any) -> list[str]:
        p = user_of(request)
        assert p.user is not None
        return [p.user] + ([p.project] if p.project and p.project != p.user else [])

    @staticmethod
    def _empty(request: Any, code: int) -> bytes:
        request.setResponseCode(code)
        return b""

    # -- versions -----------------------------------------------------------

    async def versions(self, request: Any) -> bytes:
        """``GET /compute/``: the versions list."""
        return json_body(request, {"versions": [_version(self._base)]})

    async def version(self, request: Any) -> bytes:
        """``GET /compute/v2.0[/]``: this version, microversions 2.1..2.1."""
        return json_body(request, {"version": _version(self._base)})

    async def extensions(self, request: Any) -> bytes:
        return json_body(request, {"extensions": []})

    async def availability_zones(self, request: Any) -> bytes:
        return json_body(request, {"availabilityZoneInfo": [
            {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]})

    async def limits(self, request: Any) -> bytes:
        """Absolute limits from the caller's cyclades quota (token's
        project, else the base project)."""
        p = user_of(request)
        assert p.user is not None
        absolute = await self._servers.limits(p.user, p.project)
        return json_body(request, {"limits": {"absolute": absolute, "rate": []}})

    # -- servers ------------------------------------------------------------

    async def _listing(self, request: Any, detail: bool) -> bytes:
        user = self._user(request)
        since_value = _query(request, "changes-since")
        since = parse_since(since_value) if since_value is not None else None
        found = await self._servers.of_user(user, since)
        name = _query(request, "name")
        if name:
            pattern = parse_name_filter(name)
            found = [s for s in found if pattern.search(s.name)]
        status = _query(request, "status")
        if status:
            found = [s for s in found if model.api_status(s) == status.upper()]
        if since is not None and not found:
            raise errors.NotModified("No server changed since then.")
        return json_body(request, {"servers": [server_json(s, self._base, detail)
                                               for s in found]})

    async def list_servers(self, request: Any) -> bytes:
        return await self._listing(request, False)

    async def list_servers_detail(self, request: Any) -> bytes:
        return await self._listing(request, True)

    async def create_server(self, request: Any) -> bytes:
        """202 with the new server and its ``adminPass`` (shown only here)."""
        user = self._user(request)
        req = parse_create(self._object(request, "server"), self._servers.settings)
        server, password = await self._servers.create(user, req)
        out = server_json(server, self._base)
        out["adminPass"] = password
        return json_body(request, {"server": out}, 202)

    async def show_server(self, request: Any, server_id: str) -> bytes:
        user = self._user(request)
        server = await self._servers.get(user, _int_id(server_id, "Server"))
        diagnostics = await self._servers.diagnostics(user, server.id)
        return json_body(request, {"server": server_json(server, self._base,
                                                         diagnostics=diagnostics)})

    async def rename_server(self, request: Any, server_id: str) -> bytes:
        """``PUT`` ``{"server": {"name"}}``: 204."""
        user = self._user(request)
        sid = _int_id(server_id, "Server")
        body = self._object(request, "server")
        if "name" not in body:
            raise errors.BadRequest("Only the name of a server can be changed.")
        await self._servers.rename(user, sid, check_name(body["name"]))
        return self._empty(request, 204)

    async def delete_server(self, request: Any, server_id: str) -> bytes:
        await self._servers.destroy(self._user(request), _int_id(server_id, "Server"))
        return self._empty(request, 204)

    async def action(self, request: Any, server_id: str) -> bytes:
        """``POST /servers/<id>/action`` with one action key."""
        user = self._user(request)
        sid = _int_id(server_id, "Server")
        action = parse_action(json_object(self._body(request)))
        s = self._servers
        match action:
            case Start():
                await s.start(user, sid)
            case Stop():
                await s.stop(user, sid)
            case Reboot(hard=hard):
                await s.reboot(user, sid, hard)
            case Resize(flavor_id=flavor_id):
                await s.resize(user, sid, flavor_id)
            case Console():
                console = await s.console(user, sid)
                return json_body(request, {"console": console})
            case Firewall():
                await s.firewall(user, sid, action)
            case Reassign():
                await s.reassign(user, sid, action)
                return self._empty(request, 200)
            case Rescue(image_ref=image_ref):
                await s.rescue(user, sid, image_ref)
            case Unrescue():
                await s.unrescue(user, sid)
            case Unsupported(name=name, admin_only=admin_only):
                await s.get(user, sid)
                if admin_only:
                    raise errors.Forbidden(f"The action {name} is for administrators only.")
                raise errors.NotImplementedFault(f"The action {name} is not supported.")
        return self._empty(request, 202)

    async def ips(self, request: Any, server_id: str) -> bytes:
        server = await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        return json_body(request, {"addresses": _nic_views(server)[1]})

    async def ips_of(self, request: Any, server_id: str, network: str) -> bytes:
        server = await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        addresses = _nic_views(server)[1]
        if network not in addresses:
            raise errors.NotFound(f"Server {server.id} has no address on network {network}.")
        return json_body(request, {network: addresses[network]})

    # -- metadata and tags ---------------------------------------------------

    async def metadata(self, request: Any, server_id: str) -> bytes:
        server = await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        return json_body(request, {"metadata": dict(server.metadata)})

    async def merge_metadata(self, request: Any, server_id: str) -> bytes:
        """``POST``: merge; 201 with all the metadata."""
        items = json_object(self._body(request)).get("metadata")
        if not isinstance(items, dict):
            raise errors.BadRequest('The request needs a "metadata" object.')
        result = await self._servers.set_metadata(self._user(request),
                                                  _int_id(server_id, "Server"),
                                                  check_metadata(items))
        return json_body(request, {"metadata": result}, 201)

    async def replace_metadata(self, request: Any, server_id: str) -> bytes:
        """``PUT``: replace all; 200 with the metadata."""
        items = json_object(self._body(request)).get("metadata")
        if not isinstance(items, dict):
            raise errors.BadRequest('The request needs a "metadata" object.')
        result = await self._servers.set_metadata(
            self._user(request), _int_id(server_id, "Server"), check_metadata(items),
            replace=True)
        return json_body(request, {"metadata": result})

    async def metadata_item(self, request: Any, server_id: str, key: str) -> bytes:
        server = await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        if key not in server.metadata:
            raise errors.NotFound(f"Metadata key {key!r} not found.")
        return json_body(request, {"meta": {key: server.metadata[key]}})

    async def set_metadata_item(self, request: Any, server_id: str, key: str) -> bytes:
        """``PUT {"meta": {key: value}}``: 201."""
        meta = json_object(self._body(request)).get("meta")
        if not isinstance(meta, dict) or list(meta) != [key]:
            raise errors.BadRequest(f'The request needs "meta" with exactly the key {key!r}.')
        result = await self._servers.set_metadata(self._user(request),
                                                  _int_id(server_id, "Server"),
                                                  check_metadata(meta))
        return json_body(request, {"meta": {key: result[key]}}, 201)

    async def delete_metadata_item(self, request: Any, server_id: str, key: str) -> bytes:
        await self._servers.delete_metadata(self._user(request),
                                            _int_id(server_id, "Server"), key)
        return self._empty(request, 204)

    async def tags(self, request: Any, server_id: str) -> bytes:
        server = await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        return json_body(request, {"tags": list(server.tags)})

    async def replace_tags(self, request: Any, server_id: str) -> bytes:
        tags = check_tags(json_object(self._body(request)).get("tags"))
        result = await self._servers.set_tags(self._user(request),
                                              _int_id(server_id, "Server"), tags)
        return json_body(request, {"tags": list(result)})

    async def delete_tags(self, request: Any, server_id: str) -> bytes:
        await self._servers.delete_tag(self._user(request), _int_id(server_id, "Server"),
                                       None)
        return self._empty(request, 204)

    async def tag(self, request: Any, server_id: str, tag: str) -> bytes:
        server = await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        if tag not in server.tags:
            raise errors.NotFound(f"Tag {tag!r} not found.")
        return self._empty(request, 204)

    async def add_tag(self, request: Any, server_id: str, tag: str) -> bytes:
        """``PUT /tags/<tag>``: 201 when added, 204 when it was there."""
        check_tag(tag)
        user = self._user(request)
        sid = _int_id(server_id, "Server")
        before = await self._servers.get(user, sid)
        await self._servers.set_tags(user, sid, (tag,), add=True)
        return self._empty(request, 204 if tag in before.tags else 201)

    async def delete_tag(self, request: Any, server_id: str, tag: str) -> bytes:
        await self._servers.delete_tag(self._user(request), _int_id(server_id, "Server"), tag)
        return self._empty(request, 204)

    # -- other server reads --------------------------------------------------------

    async def stats(self, request: Any, server_id: str) -> bytes:
        await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        raise errors.NotImplementedFault("Server statistics are not available on this cloud.")

    async def diagnostics(self, request: Any, server_id: str) -> bytes:
        found = await self._servers.diagnostics(self._user(request),
                                                _int_id(server_id, "Server"))
        return json_body(request, [diagnostic_json(d) for d in found])

    async def password(self, request: Any, server_id: str) -> bytes:
        password = await self._servers.password(self._user(request),
                                                _int_id(server_id, "Server"))
        return json_body(request, {"password": password})

    async def volume_attachments(self, request: Any, server_id: str) -> bytes:
        await self._servers.get(self._user(request), _int_id(server_id, "Server"))
        return json_body(request, {"volumeAttachments": []})

    async def not_yet(self, request: Any, **kwargs: Any) -> bytes:
        self._user(request)
        raise errors.NotImplementedFault("Volumes are not supported yet.")

    # -- flavors ----------------------------------------------------------------

    async def list_flavors(self, request: Any) -> bytes:
        found = await self._servers.flavors(self._projects(request))
        return json_body(request, {"flavors": [flavor_json(f, self._base, False)
                                               for f in found]})

    async def list_flavors_detail(self, request: Any) -> bytes:
        found = await self._servers.flavors(self._projects(request))
        return json_body(request, {"flavors": [flavor_json(f, self._base) for f in found]})

    async def show_flavor(self, request: Any, flavor_id: str) -> bytes:
        flavor = await self._servers.flavor(_int_id(flavor_id, "Flavor"),
                                            self._projects(request))
        return json_body(request, {"flavor": flavor_json(flavor, self._base)})

    # -- images -------------------------------------------------------------------

    def _image(self, image: Any, detail: bool) -> dict[str, Any]:
        out = dict(self._image_view(image, detail))
        out.setdefault("links", _links(self._base, "images", image.id))
        if not detail:
            return {"id": out["id"], "name": out.get("name"), "links": out["links"]}
        return out

    async def list_images(self, request: Any) -> bytes:
        found = await self._images.list(self._user(request))
        return json_body(request, {"images": [self._image(i, False) for i in found]})

    async def list_images_detail(self, request: Any) -> bytes:
        found = await self._images.list(self._user(request))
        return json_body(request, {"images": [self._image(i, True) for i in found]})

    async def show_image(self, request: Any, image_id: str) -> bytes:
        image = await self._images.get(self._user(request), image_id)
        return json_body(request, {"image": self._image(image, True)})

    async def image_metadata(self, request: Any, image_id: str) -> bytes:
        image = await self._images.get(self._user(request), image_id)
        return json_body(request, {"metadata": dict(image.properties or {})})

    async def image_metadata_item(self, request: Any, image_id: str, key: str) -> bytes:
        image = await self._images.get(self._user(request), image_id)
        properties = dict(image.properties or {})
        if key not in properties:
            raise errors.NotFound(f"Image metadata key {key!r} not found.")
        return json_body(request, {"meta": {key: properties[key]}})

    # -- keypairs --------------------------------------------------------------------

    async def list_keypairs(self, request: Any) -> bytes:
        found = await self._servers.keypairs.of_user(self._user(request))
        return json_body(request, {"keypairs": [{"keypair": keypair_json(k)} for k in found]})

    async def create_keypair(self, request: Any) -> bytes:
        """Upload (``public_key``) or generate (the ``private_key`` is in
        this answer only); 200 as Nova 2.1, 409 if the name is taken."""
        body = self._object(request, "keypair")
        keypair = await self._servers.keypairs.create(self._user(request), body.get("name"),
                                                      body.get("public_key"))
        return json_body(request, {"keypair": keypair_json(keypair)})

    async def show_keypair(self, request: Any, name: str) -> bytes:
        keypair = await self._servers.keypairs.get(self._user(request), name)
        return json_body(request, {"keypair": keypair_json(keypair, detail=True)})

    async def delete_keypair(self, request: Any, name: str) -> bytes:
        await self._servers.keypairs.delete(self._user(request), name)
        return self._empty(request, 204)


class VmapiApp:
    """``GET /server-params/<key>``, without a token: a build's parameters,
    handed out once (404 afterwards)."""

    def __init__(self, servers: Servers):
        self._servers = servers
        self.app: Klein = make_app()
        self.app.route("/server-params/<key>", methods=["GET"],
                       endpoint="vmapi:params")(self.params)

    def resource(self) -> IResource:
        resource: IResource = self.app.resource()
        return resource

    async def params(self, request: Any, key: str) -> bytes:
        return json_body(request, await self._servers.server_params(key))
