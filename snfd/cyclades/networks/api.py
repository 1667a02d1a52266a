"""The network API (``/network``; Neutron v2.0, the subset reference 3.3
describes, with Synnefo's ``SNF:`` and ``type`` keys): version discovery,
``/v2.0/extensions`` (exactly what is served), networks, subnets, ports,
floating IPs and their tags, in Neutron's JSON and errors
(``{"NeutronError": ...}``).

Lists take Neutron's common query: any attribute as a filter (repeated
values: any of them), ``fields`` (repeated), ``sort_key``/``sort_dir``,
``limit``/``marker``/``page_reverse`` with ``<resource>_links``.  Ids are
the serial ids as strings.  Administrators (Keystone's admin role) may set
``shared`` and ``router:external`` and see every project's resources; a
``router:external`` network made through the API is public.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from klein import Klein
from twisted.web import resource

from snfd import errors
from snfd.cyclades.compute_http import body_of, is_admin, scope_of
from snfd.cyclades.networks import pools
from snfd.cyclades.networks.model import IP, Network, Port, Subnet
from snfd.cyclades.networks.security_api import SecurityGroupRoutes
from snfd.cyclades.networks.service import Networks, PortRequest
from snfd.web.app import json_body, json_object, make_app
from snfd.web.auth import user_of

Handler = Callable[..., Awaitable[bytes]]

#: The extensions served (alias, name, description).
EXTENSIONS = (
    ("external-net", "Neutron external network",
     "Adds external network attribute to network resource."),
    ("port-security", "Port Security", "Provides port security."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id"
     " field is enabled."),
    ("standard-attr-description", "standard-attr-description",
     "Extension to add descriptions to standard attributes"),
    ("standard-attr-revisions", "Resource revision numbers",
     "This extension will display the revision number of neutron resources."),
    ("standard-attr-timestamp", "Resource timestamps",
     "Adds created_at and updated_at fields to all Neutron resources that have Neutron"
     " standard attributes."),
    ("standard-attr-tag", "Tag support for resources with standard attribute",
     "Enables to set tag on resources with standard attribute."),
    ("tag", "Tag support", "Enables to set tag on resources."),
    ("subnet-external-network", "Subnet External Network",
     "Informs if the subnet is associated to an external network."),
    ("security-group", "security-group", "The security groups extension."),
    ("quotas", "Quota management support",
     "Expose functions for quotas management (read here: quotas are the identity"
     " service's)."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is"
     " enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
)
_PAGING = frozenset({"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir"})
_TAGGABLE = ("networks", "subnets", "ports", "floatingips")


def _time(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _common(item: Any, owner: str | None, project: str | None) -> dict[str, Any]:
    return {"id": str(item.id), "tenant_id": project or "", "project_id": project or "",
            "user_id": owner, "description": item.description, "tags": list(item.tags),
            "revision_number": item.revision, "created_at": _time(item.created),
            "updated_at": _time(item.updated)}


def network_view(n: Network) -> dict[str, Any]:
    return {**_common(n, n.userid, n.project), "name": n.name,
            "status": "ACTIVE" if n.state in ("ACTIVE", "") else n.state,
            "admin_state_up": True, "shared": n.shared, "router:external": n.external,
            "public": n.public, "type": n.flavor, "SNF:floating_ip_pool": n.floating_ip_pool,
            "subnets": [str(s) for s in n.subnets], "port_security_enabled": True,
            "mtu": 1500, "availability_zones": [], "availability_zone_hints": [],
            "ipv4_address_scope": None, "ipv6_address_scope": None, "l2_adjacency": True,
            "created": _time(n.created), "updated": _time(n.updated)}


def subnet_view(s: Subnet) -> dict[str, Any]:
    slaac = pools.is_slaac(s.cidr, s.ipversion)
    return {**_common(s, s.userid, s.project), "name": s.name, "network_id": str(s.network_id),
            "cidr": s.cidr, "ip_version": s.ipversion, "gateway_ip": s.gateway,
            "allocation_pools": [{"start": a, "end": b} for a, b in s.pools],
            "enable_dhcp": s.dhcp, "dns_nameservers": list(s.dns_nameservers),
            "host_routes": list(s.host_routes),
            "ipv6_ra_mode": "slaac" if slaac else None,
            "ipv6_address_mode": "slaac" if slaac else None,
            "subnetpool_id": None, "service_types": [], "dns_publish_fixed_ip": False}


def port_view(p: Port) -> dict[str, Any]:
    return {**_common(p, p.userid, p.project), "name": p.name, "status": p.state,
            "network_id": str(p.network_id),
            "device_id": "" if p.device_id is None else str(p.device_id),
            "device_owner": p.device_owner, "mac_address": p.mac,
            "fixed_ips": [{"subnet_id": str(ip.subnet_id), "ip_address": ip.address}
                          for ip in p.ips],
            "security_groups": list(p.security_groups), "admin_state_up": p.admin_state_up,
            "port_security_enabled": p.port_security, "allowed_address_pairs": [],
            "extra_dhcp_opts": [], "binding:vnic_type": "normal",
            "SNF:firewall_profile": p.firewall_profile or "DISABLED"}


def floating_ip_view(ip: IP) -> dict[str, Any]:
    return {**_common(ip, ip.userid, ip.project), "floating_ip_address": ip.address,
            "floating_network_id": str(ip.network_id),
            "fixed_ip_address": ip.address if ip.port_id is not None else None,
            "port_id": None if ip.port_id is None else str(ip.port_id),
            "instance_id": None if ip.device_id is None else str(ip.device_id),
            "router_id": None, "status": "ACTIVE" if ip.port_id is not None else "DOWN",
            "deleted": False, "port_details": None}


def _id(value: str, what: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise errors.NotFound(f"{what} {value[:40]} could not be found.")
    return int(value)


def _match(view: dict[str, Any], key: str, wanted: list[str]) -> bool:
    if key == "fixed_ips":
        pairs = [w.split("=", 1) for w in wanted]
        return all(any(ip.get(k) == v for ip in view.get("fixed_ips", []))
                   for k, v in (p for p in pairs if len(p) == 2))
    value = view.get(key)
    if isinstance(value, list):
        return all(w in value for w in wanted) if key == "tags" else False
    if isinstance(value, bool):
        value = "true" if value else "false"
        wanted = [w.lower() for w in wanted]
    return ("" if value is None else str(value)) in wanted


class NetworkAPI:
    """The ``/network`` Klein app (see the module docstring)."""

    def __init__(self, networks: Networks, base_url: str, max_body: int):
        self._networks = networks
        self._base = base_url.rstrip("/")
        self._max_body = max_body
        self.app: Klein = make_app()
        self._security = SecurityGroupRoutes(self, networks.security)
        v = "/v2.0"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/", self.versions),
            ("GET", v, self.resources),
            ("GET", v + "/", self.resources),
            ("GET", v + "/extensions", self.extensions),
            ("GET", v + "/extensions/<alias>", self.extension),
            ("GET", v + "/agents", self.agents),
            ("GET", v + "/quotas/<project_id>", self.quota),
            ("GET", v + "/quotas/<project_id>/details", self.quota_details),
            ("GET", v + "/quotas/<project_id>/default", self.quota),
            ("PUT", v + "/quotas/<project_id>", self.quota_update),
            ("DELETE", v + "/quotas/<project_id>", self.quota_update),
            ("GET", v + "/networks", self.list_networks),
            ("POST", v + "/networks", self.create_network),
            ("GET", v + "/networks/<item_id>", self.show_network),
            ("PUT", v + "/networks/<item_id>", self.update_network),
            ("DELETE", v + "/networks/<item_id>", self.delete_network),
            ("GET", v + "/subnets", self.list_subnets),
            ("POST", v + "/subnets", self.create_subnet),
            ("GET", v + "/subnets/<item_id>", self.show_subnet),
            ("PUT", v + "/subnets/<item_id>", self.update_subnet),
            ("DELETE", v + "/subnets/<item_id>", self.delete_subnet),
            ("GET", v + "/ports", self.list_ports),
            ("POST", v + "/ports", self.create_port),
            ("GET", v + "/ports/<item_id>", self.show_port),
            ("PUT", v + "/ports/<item_id>", self.update_port),
            ("DELETE", v + "/ports/<item_id>", self.delete_port),
            ("GET", v + "/floatingips", self.list_floating_ips),
            ("POST", v + "/floatingips", self.create_floating_ip),
            ("GET", v + "/floatingips/<item_id>", self.show_floating_ip),
            ("PUT", v + "/floatingips/<item_id>", self.update_floating_ip),
            ("DELETE", v + "/floatingips/<item_id>", self.delete_floating_ip),
        ]
        routes += self._security.routes(v)
        for kind in _TAGGABLE:
            t = f"{v}/{kind}/<item_id>/tags"
            routes += [("GET", t, self._tags_handler(kind, "list")),
                       ("PUT", t, self._tags_handler(kind, "replace")),
                       ("DELETE", t, self._tags_handler(kind, "clear")),
                       ("GET", t + "/<tag>", self._tags_handler(kind, "check")),
                       ("PUT", t + "/<tag>", self._tags_handler(kind, "add")),
                       ("DELETE", t + "/<tag>", self._tags_handler(kind, "remove"))]
        for method, path, handler in routes:
            self._route(method, path, handler)

    def resource(self) -> Any:
        """The app as a Twisted resource whose every error, unknown paths
        included, is Neutron's."""
        return _NeutronStyle(self.app.resource())

    def _route(self, method: str, path: str, handler: Handler) -> None:
        async def endpoint(request: Any, **kwargs: Any) -> bytes:
            request.fault_style = "neutron"
            return await handler(request, **kwargs)

        name = f"network:{method}:{path}"
        endpoint.__name__ = name
        self.app.route(path, methods=[method], endpoint=name)(endpoint)

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def who(request: Any) -> tuple[str, str, bool]:
        """The caller, the project it acts in, whether it is an admin."""
        p = user_of(request)
        assert p.user is not None
        return p.user, scope_of(request) or p.user, is_admin(request)

    def body_object(self, request: Any, key: str) -> dict[str, Any]:
        body = json_object(body_of(request, self._max_body))
        value = body.get(key)
        if not isinstance(value, dict):
            raise errors.BadRequest(f"Resource body required: a \"{key}\" object.")
        return value

    @staticmethod
    def show(request: Any, key: str, view: dict[str, Any], code: int = 200) -> bytes:
        fields = [f.decode() for f in (request.args or {}).get(b"fields", [])]
        if fields:
            view = {k: v for k, v in view.items() if k in fields}
        return json_body(request, {key: view}, code)

    def listing(self, request: Any, key: str, views: list[dict[str, Any]]) -> bytes:
        args = {k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()}
        known = set().union(*(v.keys() for v in views)) if views else set()
        for name, wanted in args.items():
            # Neutron without filter-validation ignores what names no attribute.
            if name not in _PAGING and name in known:
                views = [v for v in views if _match(v, name, wanted)]
        sort_keys = args.get("sort_key", [])
        dirs = args.get("sort_dir", [])
        for i in reversed(range(len(sort_keys))):
            reverse = (dirs[i] if i < len(dirs) else "asc") == "desc"
            views.sort(key=_sort_key(sort_keys[i]), reverse=reverse)
        reverse_page = args.get("page_reverse", ["false"])[0].lower() == "true"
        if reverse_page:
            views.reverse()
        marker = args.get("marker", [None])[0]
        if marker is not None:
            ids = [v["id"] for v in views]
            if marker in ids:
                views = views[ids.index(marker) + 1:]
        body: dict[str, Any] = {}
        limit = args.get("limit", [None])[0]
        if limit is not None:
            if not limit.isdigit():
                raise errors.BadRequest(f"Invalid limit {limit[:20]!r}.")
            n = int(limit)
            if n and len(views) > n:
                views = views[:n]
                query = {**{k: v for k, v in args.items() if k != "marker"},
                         "marker": [views[-1]["id"]]}
                body[f"{key}_links"] = [{"rel": "next", "href": f"{self._base}/v2.0/{key}?"
                                         + urlencode(query, doseq=True)}]
        if reverse_page:
            views.reverse()
        fields = args.get("fields", [])
        if fields:
            views = [{k: v for k, v in view.items() if k in fields} for view in views]
        body[key] = views
        return json_body(request, body)

    @staticmethod
    def text(body: dict[str, Any], key: str, limit: int = 255) -> str:
        value = body.get(key, "")
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > limit:
            raise errors.BadRequest(f"Invalid input for {key}: a string of at most {limit}"
                                    " characters is needed.")
        return value

    @staticmethod
    def _bool(body: dict[str, Any], key: str) -> bool:
        value = body[key]
        if not isinstance(value, bool):
            raise errors.BadRequest(f"Invalid input for {key}: true or false is needed.")
        return value

    def allowed(self, body: dict[str, Any], allowed: set[str], what: str) -> None:
        extra = set(body) - allowed
        if extra:
            raise errors.BadRequest(f"Unrecognized attribute(s) '{', '.join(sorted(extra))}'"
                                    f" for {what}.")

    # -- discovery ----------------------------------------------------------------------

    async def versions(self, request: Any) -> bytes:
        request.fault_style = "neutron"
        return json_body(request, {"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{self._base}/v2.0/"}]}]})

    async def resources(self, request: Any) -> bytes:
        return json_body(request, {"resources": [
            {"name": k[:-1], "collection": k,
             "links": [{"rel": "self", "href": f"{self._base}/v2.0/{k}"}]}
            for k in ("networks", "subnets", "ports", "floatingips", "security-groups",
                      "security-group-rules")]})

    async def extensions(self, request: Any) -> bytes:
        return json_body(request, {"extensions": [_extension(*e) for e in EXTENSIONS]})

    async def agents(self, request: Any) -> bytes:
        """No Neutron agents run here (no DHCP or L3 agents): an empty list."""
        return json_body(request, {"agents": []})

    async def _quota(self, request: Any, project_id: str) -> dict[str, Any]:
        """Neutron's quota of the caller in ``project_id`` (its own projects;
        any for an administrator): name -> (limit, used); -1 unlimited,
        0 for what is not served."""
        user, project, admin = self.who(request)
        if project_id not in (user, project) and not admin:
            raise errors.Forbidden(f"Project {project_id} is not the one of your token.")
        held = await self._networks.quota(user, project_id)
        private = held.get("cyclades.network.private", (0, 0))
        floating = held.get("cyclades.floating_ip", (0, 0))
        return {"network": private, "floatingip": floating, "subnet": (-1, 0),
                "port": (-1, 0), "router": (0, 0), "rbac_policy": (0, 0),
                **await self._security.quota(project_id)}

    async def quota(self, request: Any, project_id: str) -> bytes:
        """``GET /v2.0/quotas/<project>`` (and ``.../default``): the limits
        of the identity service's quota (Astakos) for the caller there."""
        values = await self._quota(request, project_id)
        return json_body(request, {"quota": {k: v[0] for k, v in values.items()}})

    async def quota_details(self, request: Any, project_id: str) -> bytes:
        values = await self._quota(request, project_id)
        return json_body(request, {"quota": {
            k: {"limit": limit, "used": used, "reserved": 0}
            for k, (limit, used) in values.items()}})

    async def quota_update(self, request: Any, project_id: str) -> bytes:
        raise errors.Forbidden("Quotas are the identity service's (Astakos projects and"
                               " holdings): change them there.")

    async def extension(self, request: Any, alias: str) -> bytes:
        for e in EXTENSIONS:
            if e[0] == alias:
                return json_body(request, {"extension": _extension(*e)})
        raise errors.NotFound(f"Extension with alias {alias[:60]} does not exist.")

    # -- networks ---------------------------------------------------------------------------

    async def list_networks(self, request: Any) -> bytes:
        user, _, admin = self.who(request)
        found = await self._networks.networks(user, admin)
        return self.listing(request, "networks", [network_view(n) for n in found])

    async def show_network(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        network = await self._networks.network(user, _id(item_id, "Network"), admin)
        return self.show(request, "network", network_view(network))

    async def create_network(self, request: Any) -> bytes:
        return await self.create(request, "network", self._new_network)

    async def _new_network(self, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        user, project, admin = self.who(request)
        self.allowed(body, {"name", "type", "project", "tenant_id", "project_id",
                             "admin_state_up", "shared", "router:external", "description",
                             "port_security_enabled", "mtu", "tags"}, "network")
        if body.get("admin_state_up", True) is not True:
            raise errors.BadRequest("admin_state_up must be true: networks are always up.")
        if body.get("port_security_enabled", True) is not True:
            raise errors.BadRequest("port_security_enabled cannot be false here.")
        project = self.project(body, user, project, admin)
        name = self.text(body, "name")
        description = self.text(body, "description")
        shared = self._bool(body, "shared") if "shared" in body else False
        external = self._bool(body, "router:external") if "router:external" in body else False
        flavor = self.text(body, "type") or ("CUSTOM" if external else "MAC_FILTERED")
        if (shared or external) and not admin:
            raise errors.Forbidden("Only administrators create shared or external networks.")
        if admin and (shared or external or flavor not in self._networks.settings.api_flavors):
            network = await self._networks.admin_create_network(
                name=name, flavor=flavor, public=external, floating_ip_pool=external,
                shared=shared, user=user, project=project, description=description)
        else:
            network = await self._networks.create_network(user, project, name=name,
                                                          flavor=flavor,
                                                          description=description)
        return network_view(network)

    async def create(self, request: Any, key: str,
                      make: Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]) -> bytes:
        """One resource (``{key: {...}}``) or several (``{keys: [...]}``,
        Neutron's bulk create, made one after the other): 201."""
        body = json_object(body_of(request, self._max_body))
        many = body.get(key + "s")
        if isinstance(many, list) and key not in body:
            if not many or len(many) > 100 or not all(isinstance(i, dict) for i in many):
                raise errors.BadRequest(f"{key}s must be a list of 1..100 objects.")
            made = [await make(request, item) for item in many]
            return json_body(request, {key + "s": made}, 201)
        one = body.get(key)
        if not isinstance(one, dict):
            raise errors.BadRequest(f"Resource body required: a \"{key}\" object.")
        return self.show(request, key, await make(request, one), 201)

    def project(self, body: dict[str, Any], user: str, project: str, admin: bool) -> str:
        given = body.get("project") or body.get("project_id") or body.get("tenant_id")
        if given is None:
            return project
        if not isinstance(given, str) or len(given) > 255:
            raise errors.BadRequest("Invalid project.")
        if not admin and given not in (user, project):
            raise errors.Forbidden(f"You may not act in project {given}.")
        return given

    async def update_network(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        body = self.body_object(request, "network")
        self.allowed(body, {"name", "description", "shared", "router:external",
                             "admin_state_up", "port_security_enabled"}, "network")
        fields: dict[str, Any] = {}
        for key in ("name", "description"):
            if key in body:
                fields[key] = self.text(body, key)
        if "shared" in body:
            fields["shared"] = self._bool(body, "shared")
        if "router:external" in body:
            fields["external"] = self._bool(body, "router:external")
        network = await self._networks.update_network(user, _id(item_id, "Network"), admin,
                                                      **fields)
        return self.show(request, "network", network_view(network))

    async def delete_network(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        await self._networks.delete_network(user, _id(item_id, "Network"), admin)
        request.setResponseCode(204)
        return b""

    # -- subnets ------------------------------------------------------------------------------

    async def list_subnets(self, request: Any) -> bytes:
        user, _, admin = self.who(request)
        found = await self._networks.subnets(user, admin)
        return self.listing(request, "subnets", [subnet_view(s) for s in found])

    async def show_subnet(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        subnet = await self._networks.subnet(user, _id(item_id, "Subnet"), admin)
        return self.show(request, "subnet", subnet_view(subnet))

    async def create_subnet(self, request: Any) -> bytes:
        return await self.create(request, "subnet", self._new_subnet)

    async def _new_subnet(self, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        user, _, admin = self.who(request)
        self.allowed(body, {"network_id", "cidr", "ip_version", "gateway_ip",
                             "allocation_pools", "enable_dhcp", "name", "description",
                             "dns_nameservers", "host_routes", "ipv6_ra_mode",
                             "ipv6_address_mode", "tenant_id", "project_id", "tags"},
                      "subnet")
        network_id = body.get("network_id")
        if not isinstance(network_id, str | int) or isinstance(network_id, bool):
            raise errors.BadRequest("A subnet needs a network_id.")
        subnet = await self._networks.create_subnet(
            user, _id(str(network_id), "Network"), body, admin)
        return subnet_view(subnet)

    async def update_subnet(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        body = self.body_object(request, "subnet")
        self.allowed(body, {"name", "description", "dns_nameservers", "host_routes",
                             "gateway_ip", "enable_dhcp"}, "subnet")
        subnet = await self._networks.subnet(user, _id(item_id, "Subnet"), admin)
        fields: dict[str, Any] = {}
        for key in ("name", "description"):
            if key in body:
                fields[key] = self.text(body, key)
        if {"dns_nameservers", "host_routes", "gateway_ip", "enable_dhcp"} & set(body):
            probe = {"cidr": subnet.cidr, "ip_version": subnet.ipversion,
                     "gateway_ip": body.get("gateway_ip", subnet.gateway),
                     "allocation_pools": [{"start": a, "end": b} for a, b in subnet.pools],
                     "dns_nameservers": body.get("dns_nameservers", subnet.dns_nameservers),
                     "host_routes": body.get("host_routes", list(subnet.host_routes)),
                     "enable_dhcp": body.get("enable_dhcp", subnet.dhcp)}
            checked = pools.subnet_request(probe, {4: 0, 6: 0}, limited=False)
            fields.update(dns_nameservers=list(checked.dns_nameservers),
                          host_routes=list(checked.host_routes), gateway=checked.gateway,
                          dhcp=checked.dhcp)
        updated = await self._networks.update_subnet(user, subnet.id, admin, **fields)
        return self.show(request, "subnet", subnet_view(updated))

    async def delete_subnet(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        await self._networks.delete_subnet(user, _id(item_id, "Subnet"), admin)
        request.setResponseCode(204)
        return b""

    # -- ports ------------------------------------------------------------------------------

    async def list_ports(self, request: Any) -> bytes:
        user, _, admin = self.who(request)
        found = await self._networks.ports(user, admin)
        return self.listing(request, "ports", [port_view(p) for p in found])

    async def show_port(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        port = await self._networks.port(user, _id(item_id, "Port"), admin)
        return self.show(request, "port", port_view(port))

    async def create_port(self, request: Any) -> bytes:
        return await self.create(request, "port", self._new_port)

    async def _new_port(self, request: Any, body: dict[str, Any]) -> dict[str, Any]:
        user, project, admin = self.who(request)
        self.allowed(body, {"network_id", "name", "description", "device_id",
                             "device_owner", "fixed_ips", "mac_address", "security_groups",
                             "admin_state_up", "port_security_enabled", "tenant_id",
                             "project_id", "binding:vnic_type", "tags"}, "port")
        network_id = body.get("network_id")
        if not isinstance(network_id, str | int) or isinstance(network_id, bool):
            raise errors.BadRequest("A port needs a network_id.")
        device = body.get("device_id")
        req = PortRequest(
            network_id=_id(str(network_id), "Network"), name=self.text(body, "name"),
            description=self.text(body, "description"),
            device_id=_device(device),
            mac=pools.check_mac(body["mac_address"]) if body.get("mac_address") else None,
            fixed_ips=_fixed_ips(body.get("fixed_ips")),
            security_groups=_strings(body.get("security_groups"), "security_groups"),
            port_security=self._bool(body, "port_security_enabled")
            if "port_security_enabled" in body else True,
            admin_state_up=self._bool(body, "admin_state_up")
            if "admin_state_up" in body else True)
        project = self.project(body, user, project, admin)
        port = await self._networks.create_port(user, project, req, admin)
        return port_view(port)

    async def update_port(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        body = self.body_object(request, "port")
        self.allowed(body, {"name", "description", "security_groups", "admin_state_up",
                             "port_security_enabled", "SNF:firewall_profile", "device_owner",
                             "fixed_ips"}, "port")
        fields: dict[str, Any] = {}
        for key in ("name", "description", "device_owner"):
            if key in body:
                fields[key] = self.text(body, key)
        if "security_groups" in body:
            fields["security_groups"] = _strings(body["security_groups"], "security_groups")
        if "port_security_enabled" in body:
            fields["port_security"] = self._bool(body, "port_security_enabled")
        if "admin_state_up" in body:
            fields["admin_state_up"] = self._bool(body, "admin_state_up")
        if "SNF:firewall_profile" in body:
            raise errors.BadRequest("A port's firewall profile is set with its server's"
                                    " firewallProfile action.")
        port_id = _id(item_id, "Port")
        if "fixed_ips" in body:
            await self._networks.set_fixed_ips(user, port_id,
                                               _fixed_ips(body["fixed_ips"]) or (), admin)
        port = await self._networks.update_port(user, port_id, admin, **fields)
        return self.show(request, "port", port_view(port))

    async def delete_port(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        await self._networks.delete_port(user, _id(item_id, "Port"), admin)
        request.setResponseCode(204)
        return b""

    # -- floating IPs ------------------------------------------------------------------------

    async def list_floating_ips(self, request: Any) -> bytes:
        user, _, admin = self.who(request)
        found = await self._networks.floating_ips(user, admin)
        return self.listing(request, "floatingips", [floating_ip_view(i) for i in found])

    async def show_floating_ip(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        ip = await self._networks.floating_ip(user, _id(item_id, "Floating IP"), admin)
        return self.show(request, "floatingip", floating_ip_view(ip))

    async def create_floating_ip(self, request: Any) -> bytes:
        user, project, admin = self.who(request)
        body = self.body_object(request, "floatingip")
        self.allowed(body, {"floating_network_id", "floating_ip_address", "project",
                             "tenant_id", "project_id", "description", "port_id",
                             "fixed_ip_address"}, "floatingip")
        network = body.get("floating_network_id")
        address = body.get("floating_ip_address")
        if address is not None:
            address = _address(address)
        project = self.project(body, user, project, admin)
        description = self.text(body, "description")
        ip = await self._networks.create_floating_ip(
            user, project, None if network is None else _id(str(network), "Network"),
            address)
        if description:
            ip = await self._networks.edit_floating_ip(user, ip.id, admin,
                                                       description=description)
        if body.get("port_id"):
            ip = await self._associate(user, admin, ip, str(body["port_id"]))
        return self.show(request, "floatingip", floating_ip_view(ip), 201)

    async def _associate(self, user: str, admin: bool, ip: IP, port_ref: str) -> IP:
        """Attach ``ip`` to the server of port ``port_ref`` (a new port on
        the floating IP's network, Synnefo's way)."""
        port = await self._networks.port(user, _id(port_ref, "Port"), admin)
        if port.device_id is None:
            raise errors.BadRequest(f"Port {port.id} is not attached to a server.")
        await self._networks.attach_floating_ip(user, ip.id, port.device_id, admin)
        return await self._networks.floating_ip(user, ip.id, admin)

    async def update_floating_ip(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        body = self.body_object(request, "floatingip")
        self.allowed(body, {"port_id", "fixed_ip_address", "description"}, "floatingip")
        ip = await self._networks.floating_ip(user, _id(item_id, "Floating IP"), admin)
        if "port_id" in body:
            if body["port_id"] is None:
                await self._networks.detach_floating_ip(user, ip.id, admin)
            else:
                ip = await self._associate(user, admin, ip, str(body["port_id"]))
        if "description" in body:
            await self._networks.edit_floating_ip(user, ip.id, admin,
                                                  description=self.text(body, "description"))
        ip = await self._networks.floating_ip(user, ip.id, admin)
        return self.show(request, "floatingip", floating_ip_view(ip))

    async def delete_floating_ip(self, request: Any, item_id: str) -> bytes:
        user, _, admin = self.who(request)
        await self._networks.delete_floating_ip(user, _id(item_id, "Floating IP"), admin)
        request.setResponseCode(204)
        return b""

    # -- tags -------------------------------------------------------------------------------

    def _tags_handler(self, kind: str, op: str) -> Handler:
        async def handler(request: Any, item_id: str, tag: str | None = None) -> bytes:
            user, _, admin = self.who(request)
            current = await self._tagged(kind, user, item_id, admin)
            tags = list(current.tags)
            if op == "list":
                return json_body(request, {"tags": tags})
            if op == "check":
                if tag not in tags:
                    raise errors.NotFound(f"Tag {tag} could not be found.")
                request.setResponseCode(204)
                return b""
            if op == "replace":
                body = json_object(body_of(request, self._max_body))
                new = _strings(body.get("tags"), "tags") or ()
            elif op == "clear":
                new = ()
            elif op == "add":
                new = tuple(dict.fromkeys([*tags, _tag(tag)]))
            else:
                if tag not in tags:
                    raise errors.NotFound(f"Tag {tag} could not be found.")
                new = tuple(t for t in tags if t != tag)
            await self._set_tags(kind, user, current, admin, new)
            if op == "replace":
                return json_body(request, {"tags": list(new)})
            request.setResponseCode(201 if op == "add" else 204)
            return b""
        return handler

    async def _tagged(self, kind: str, user: str, item_id: str, admin: bool) -> Any:
        n = self._networks
        if kind == "networks":
            return await n.network(user, _id(item_id, "Network"), admin)
        if kind == "subnets":
            return await n.subnet(user, _id(item_id, "Subnet"), admin)
        if kind == "ports":
            return await n.port(user, _id(item_id, "Port"), admin)
        return await n.floating_ip(user, _id(item_id, "Floating IP"), admin)

    async def _set_tags(self, kind: str, user: str, item: Any, admin: bool,
                        tags: tuple[str, ...]) -> None:
        n = self._networks
        if kind == "networks":
            await n.update_network(user, item.id, admin, tags=tags)
        elif kind == "subnets":
            await n.update_subnet(user, item.id, admin, tags=tags)
        elif kind == "ports":
            await n.update_port(user, item.id, admin, tags=tags)
        else:
            await n.edit_floating_ip(user, item.id, admin, tags=tags)


class _NeutronStyle(resource.Resource):
    """Marks requests for Neutron's error shape before the app routes them."""

    isLeaf = True

    def __init__(self, inner: Any):
        super().__init__()
        self._inner = inner

    def render(self, request: Any) -> Any:
        request.fault_style = "neutron"
        return self._inner.render(request)


def _extension(alias: str, name: str, description: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description,
            "updated": "2013-01-01T10:00:00-00:00", "links": []}


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    def of(view: dict[str, Any]) -> tuple[bool, Any]:
        value = view.get(key)
        return value is None, value if isinstance(value, int | float) else str(value)
    return of


def _tag(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 255 or "," in value:
        raise errors.BadRequest("A tag is a string of 1..255 characters without commas.")
    return value


def _strings(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 50:
        raise errors.BadRequest(f"Invalid input for {what}: a list is needed.")
    return tuple(_tag(v) for v in value)


def _device(value: Any) -> int | None:
    if value in (None, ""):
        return None
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not text.isdigit() or len(text) > 18:
        raise errors.NotFound(f"Server {str(value)[:40]} could not be found.")
    return int(text)


def _address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise errors.BadRequest(f"Invalid IP address {str(value)[:60]!r}.") from None


def _fixed_ips(value: Any) -> tuple[tuple[int | None, str | None], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 10:
        raise errors.BadRequest("Invalid input for fixed_ips: a list is needed.")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"subnet_id", "ip_address"}:
            raise errors.BadRequest("Each fixed IP is {subnet_id, ip_address}.")
        subnet = item.get("subnet_id")
        address = item.get("ip_address")
        out.append((None if subnet is None else _id(str(subnet), "Subnet"),
                    None if address is None else _address(address)))
    return tuple(out)
