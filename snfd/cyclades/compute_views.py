"""The two dialects of the compute API: how its answers look.

One set of handlers (``compute_api.ComputeAPI``) serves both; each request
carries the dialect of the prefix it came through:

- ``SynnefoViews`` (``/compute/v2.0``): Synnefo's shapes exactly as
  reference 3.1 documents them (integer ids, ``SNF:*`` keys, the whole
  server on create, deleted servers shown as ``DELETED``, 304 when nothing
  changed since ``changes-since``).  kamaki and the Synnefo UI speak it; the
  v2.0 catalog (Synnefo's tokens) points there.
- ``NovaViews`` (``/compute/v2.1``): Nova's API (microversions 2.1 to 2.66), as
  its response schemas demand (tempest's ``api_schema/response/compute/
  v2_1``): string ids, no keys beyond Nova's, ``id``/``links``/``adminPass``
  only on create, the server's short shape after a rename, ``SHUTOFF`` for a
  stopped server with Nova's ``OS-EXT-STS`` states, deleted servers gone
  (404), an empty list (200) when nothing changed, keypair deletion 202.
  The Keystone v3 catalog (OpenStack clients) points there.  Each request's
  views are ``at`` its microversion (``since(N)``: 2.N or later), and what
  a later version adds or drops is decided here.

The differences are data here, never a second handler.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any, ClassVar, Self
from urllib.parse import quote

from snfd import errors
from snfd.cyclades import model
from snfd.cyclades.keypairs import Keypair
from snfd.cyclades.model import Flavor, Server
from snfd.cyclades.requests import REBUILD_KEYS, check_metadata

UTC = datetime.UTC
MICROVERSION = "2.1"
#: The microversions Nova's dialect honours (``NovaViews.highest``); see
#: docs/cyclades.md for what each changes.
MAX_MICROVERSION = "2.66"
#: The most properties an image shows (Nova's ``maxImageMeta``).
MAX_IMAGE_META = 128
VERSION_UPDATED = "2013-07-23T11:33:21Z"


def iso(value: datetime.datetime | None) -> str | None:
    """ISO 8601 in UTC (``2024-01-02T03:04:05.123456+00:00``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def nova_time(value: datetime.datetime | None) -> str | None:
    """Nova's times: UTC to the second with a ``Z``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nic_views(server: Server, nova: bool = False,
              ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Synnefo's ``attachments`` and the ``addresses`` of a server: its
    ports, then any NIC Ganeti has without a port (the cluster's default
    NIC).  Nova's (``nova``) key ``addresses`` by network name and add
    ``OS-EXT-IPS-MAC:mac_addr``; Synnefo's key them by network id."""
    attachments: list[dict[str, Any]] = []
    addresses: dict[str, list[dict[str, Any]]] = {}

    def add(network: str, mac: str, entries: list[tuple[int, str, str]]) -> None:
        listed = addresses.setdefault(network, [])
        for version, addr, kind in entries:
            entry: dict[str, Any] = {"version": version, "addr": addr, "OS-EXT-IPS:type": kind}
            if mac and nova:
                entry["OS-EXT-IPS-MAC:mac_addr"] = mac
            listed.append(entry)

    names = set()
    for port in server.ports:
        names.add(port.nic_name)
        kind = "floating" if any(ip.floating for ip in port.ips) else "fixed"
        attachments.append({
            "id": str(port.id), "network_id": str(port.network_id),
            "mac_address": port.mac, "firewallProfile": port.firewall_profile or "DISABLED",
            "ipv4": port.address(4), "ipv6": port.address(6), "OS-EXT-IPS:type": kind})
        label = (port.network_name or str(port.network_id)) if nova else str(port.network_id)
        add(label, port.mac, [(ip.version, ip.address, "floating" if ip.floating else "fixed")
                              for ip in port.ips])
    for nic in server.nics:
        if nic.get("name") in names:
            continue
        network = str(nic.get("network") or nic.get("link") or "default")
        ip = nic.get("ip")
        ipv6 = nic.get("ipv6")
        mac = nic.get("mac") or ""
        attachments.append({
            "id": str(nic.get("id", "")), "network_id": network,
            "mac_address": mac,
            "firewallProfile": nic.get("firewall") or "DISABLED",
            "ipv4": ip or "", "ipv6": ipv6 or "", "OS-EXT-IPS:type": "fixed"})
        add(network, mac, [(v, a, "fixed") for v, a in ((4, ip), (6, ipv6)) if a])
    return attachments, addresses


def diagnostic_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {"level": entry["level"], "created": iso(entry["created"]),
            "source": entry["source"], "source_date": iso(entry["source_date"]),
            "message": entry["message"], "details": entry["details"]}


class SynnefoViews:
    """Synnefo's dialect (``/compute/v2.0``); see the module docstring."""

    prefix: ClassVar[str] = "/v2.0"
    #: a listing with ``changes-since`` that finds nothing answers 304
    not_modified_when_unchanged: ClassVar[bool] = True
    #: deleted servers are 404 (else shown as ``DELETED``)
    hides_deleted: ClassVar[bool] = False
    keypair_deleted_code: ClassVar[int] = 204
    # Flavors are named by their serial id (else by Nova's ``flavorid``).
    serial_flavor_ids: ClassVar[bool] = True
    #: a project-scoped token lists its project's servers (else the user's own)
    lists_project_servers: ClassVar[bool] = False
    #: ``addresses`` keyed by network name with MACs (else by network id)
    nova_addresses: ClassVar[bool] = False
    #: the status of ``POST /metadata`` and ``PUT /metadata/<key>``
    metadata_set_code: ClassVar[int] = 201
    #: the longest metadata key and value (None: ``requests``' own limits)
    max_meta_text: ClassVar[int | None] = None
    #: a create naming what does not exist (image, keypair...) is 400
    missing_on_create_is_bad_request: ClassVar[bool] = False

    #: the microversion of the request being answered (``at``)
    microversion: tuple[int, int] = (2, 1)

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def at(self, version: tuple[int, int]) -> Self:
        """These views answering a request made at ``version``."""
        views = copy.copy(self)
        views.microversion = version
        return views

    def since(self, minor: int) -> bool:
        """Whether the request is Nova's at microversion 2.``minor`` or later."""
        return self.negotiates and self.microversion >= (2, minor)

    def links(self, kind: str, ident: Any) -> list[dict[str, str]]:
        href = f"{self.base}{self.prefix}/{kind}/{quote(str(ident), safe='')}"
        return [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]

    #: the microversions served: Synnefo's dialect is 2.1 whatever a
    #: request names (its clients send none)
    lowest: ClassVar[tuple[int, int]] = (2, 1)
    highest: ClassVar[tuple[int, int]] = (2, 1)
    negotiates: ClassVar[bool] = False

    def version(self) -> dict[str, Any]:
        return {"id": self.prefix.strip("/"), "status": "CURRENT",
                "version": f"{self.highest[0]}.{self.highest[1]}",
                "min_version": MICROVERSION, "updated": VERSION_UPDATED,
                "links": [{"rel": "self", "href": f"{self.base}{self.prefix}/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2"}]}

    # -- servers --

    def status(self, server: Server) -> str:
        """The status this dialect shows (and the ``status`` filter names)."""
        return model.api_status(server)

    def check_create(self, body: dict[str, Any], max_metadata: int) -> None:
        """Dialect rules a create body must pass before the common checks."""

    def rebuild_keys(self) -> frozenset[str]:
        """What a rebuild body may hold."""
        return REBUILD_KEYS

    def update_keys(self) -> frozenset[str]:
        """What a server update (``PUT``) may change."""
        return frozenset({"name", "accessIPv4", "accessIPv6"})

    def limits(self, absolute: dict[str, Any], settings: Any) -> dict[str, Any]:
        """``/limits``' absolute part from the quota's (``Servers.limits``)."""
        return absolute

    def quota_keys(self, keys: Any, classes: bool = False) -> list[str]:
        """The quota-set (``classes``: quota-class-set) entries shown."""
        return list(keys)

    def addresses(self, server: Server) -> dict[str, list[dict[str, Any]]]:
        """The server's ``addresses`` (``ips``) in this dialect."""
        return nic_views(server, self.nova_addresses)[1]

    def server(self, server: Server, detail: bool = True,
               diagnostics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A server as reference 3.1 shows it ("Server dict")."""
        links = self.links("servers", server.id)
        if not detail:
            return {"id": server.id, "name": server.name, "links": links}
        status = model.api_status(server)
        attachments, addresses = nic_views(server)
        fqdn = next((a["ipv4"] for a in attachments if a["ipv4"]), "")
        return {
            "id": server.id,
            "name": server.name,
            "status": status,
            "SNF:task_state": model.task_state(server),
            "progress": _progress(server, status),
            "user_id": server.userid,
            "tenant_id": server.project,
            "shared_to_project": server.shared_to_project,
            "created": iso(server.created),
            "updated": iso(server.updated),
            "hostId": "",
            "flavor": {"id": server.flavor.id, "links": self.links("flavors", server.flavor.id)},
            "image": self.server_image(server),
            "metadata": dict(server.metadata),
            "tags": list(server.tags),
            "suspended": server.suspended,
            "deleted": server.deleted,
            "SNF:rescue": server.rescue,
            "attachments": attachments,
            "addresses": addresses,
            "volumes": [v.id for v in server.volumes],
            "diagnostics": [diagnostic_json(d) for d in diagnostics or ()],
            "key_name": server.key_names[0] if server.key_names else None,
            "SNF:key_names": list(server.key_names),
            "SNF:fqdn": fqdn,
            "SNF:port_forwarding": {},
            "security_groups": security_groups(server),
            "accessIPv4": server.access_ipv4,
            "accessIPv6": server.access_ipv6,
            "config_drive": "",
            "links": links,
        }

    def volumes(self, server: Server, volumes: Any) -> list[Any]:
        """The volumes of ``server`` (among ``volumes``) this dialect shows
        as attached to it: all of them in Synnefo's; in Nova's not the root
        disk of a server built from an image (the thin clone Archipelago
        made for it is its local disk in Nova's terms: Nova lists only
        the volumes a user attached or booted from)."""
        if not self.negotiates or not server.image_id:
            return list(volumes)
        return [v for v in volumes
                if v.charged or not str(getattr(v, "source", "")).startswith("image:")
                or v.server_id != server.id]

    def server_image(self, server: Server) -> Any:
        """A server's ``image``: its id and links, or ``""`` for a server
        booted from a volume (Nova's)."""
        if not server.image_id:
            return ""
        return {"id": server.image_id, "links": self.links("images", server.image_id)}

    def created(self, server: Server, password: str,
                groups: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The answer to a create: the whole server and its ``adminPass``
        (``groups``: the security groups asked for, None: the default)."""
        return {**self.server(server), "adminPass": password}

    def renamed(self, server: Server) -> dict[str, Any] | None:
        """The body after a rename (``None``: 204 without one)."""
        return None

    def rebuilt(self, server: Server, password: str) -> dict[str, Any]:
        """The answer to a rebuild: the server and its new ``adminPass``."""
        return {**self.server(server), "adminPass": password}

    #: ``/servers/<id>/diagnostics`` is for administrators (Nova's)
    diagnostics_for_admins: ClassVar[bool] = False
    #: a given ``adminPass`` must be strong (Synnefo's rule; Nova takes any)
    strong_admin_pass: ClassVar[bool] = True
    #: users' flavor listings leave out flavors that cannot make servers
    hides_disabled_flavors: ClassVar[bool] = False

    def diagnostics(self, server: Server, messages: list[dict[str, Any]]) -> Any:
        """Synnefo's diagnostics: the messages Ganeti's jobs left."""
        return [diagnostic_json(d) for d in messages]

    # -- flavors, keypairs --

    def flavor(self, flavor: Flavor, detail: bool = True) -> dict[str, Any]:
        """A flavor as reference 3.1 shows it ("Flavors")."""
        links = self.links("flavors", flavor.id)
        if not detail:
            return {"id": flavor.id, "name": flavor.name, "links": links}
        return {
            "id": flavor.id, "name": flavor.name, "ram": flavor.ram, "vcpus": flavor.cpu,
            "disk": flavor.disk, "SNF:disk_template": flavor.disk_template,
            "SNF:volume_type": None, "SNF:allow_create": flavor.allow_create,
            "os-flavor-access:is_public": flavor.public,
            "SNF:flavor-access": list(flavor.access),
            "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral, "OS-FLV-DISABLED:disabled": False,
            "swap": flavor.swap or "", "rxtx_factor": flavor.rxtx_factor, "links": links,
        }

    @staticmethod
    def flavor_ref(flavor: Flavor) -> str:
        """How this dialect names a flavor (in paths, filters, flavorRef)."""
        return str(flavor.id)

    def keypair(self, keypair: Keypair, detail: bool = False,
                created: bool = False) -> dict[str, Any]:
        """A keypair: listed (name, key, fingerprint), shown (``detail``) or
        just made (``created``: with the private key of a generated one)."""
        out: dict[str, Any] = {"name": keypair.name, "public_key": keypair.public_key,
                               "fingerprint": keypair.fingerprint}
        if detail:
            out.update(user_id=keypair.userid, created_at=iso(keypair.created), deleted=False,
                       deleted_at=None, updated_at=None)
        if keypair.private_key is not None:
            out["private_key"] = keypair.private_key
            out["user_id"] = keypair.userid
        return out

    def image(self, view: dict[str, Any], detail: bool) -> dict[str, Any]:
        """The compute view of an image from the image service's view."""
        if not detail:
            return {"id": view["id"], "name": view.get("name"), "links": view["links"]}
        return view


#: Nova's task states for snfd's tasks (``OS-EXT-STS:task_state``).  Nova
#: has no firewall profiles: that task shows under a name of the same style,
#: so a client waiting for the task to end (``snf --wait``) sees it.
_NOVA_TASK = {"BUILD": "spawning", "START": "powering-on", "STOP": "powering-off",
              "REBOOT": "rebooting", "RESIZE": "resize_prep", "DESTROY": "deleting",
              "RESCUE": "rescuing", "UNRESCUE": "unrescuing", "REBUILD": "rebuilding",
              "MIGRATE": "migrating", "FIREWALL": "setting_firewall"}
#: Nova's status, vm_state and power_state for each of snfd's API statuses.
_NOVA_STATE = {"BUILD": ("BUILD", "building", 0), "ACTIVE": ("ACTIVE", "active", 1),
               "STOPPED": ("SHUTOFF", "stopped", 4), "ERROR": ("ERROR", "error", 0),
               "DELETED": ("DELETED", "deleted", 0), "REBOOT": ("HARD_REBOOT", "active", 1),
               "RESIZE": ("RESIZE", "stopped", 4), "REBUILD": ("REBUILD", "active", 1),
               "MIGRATING": ("MIGRATING", "active", 1),
               "UNKNOWN": ("UNKNOWN", "error", 0)}


#: The statuses Nova's ``status`` filter knows (others are 400 from 2.38).
NOVA_STATUSES = frozenset({
    "ACTIVE", "BUILD", "DELETED", "ERROR", "HARD_REBOOT", "MIGRATING", "PASSWORD", "PAUSED",
    "REBOOT", "REBUILD", "RESCUE", "RESIZE", "REVERT_RESIZE", "SHELVED",
    "SHELVED_OFFLOADED", "SHUTOFF", "SOFT_DELETED", "SUSPENDED", "UNKNOWN",
    "VERIFY_RESIZE"})

#: Nova's diagnostic states (2.48) for snfd's API statuses.
_DIAGNOSTIC_STATE = {"BUILD": "pending", "ACTIVE": "running", "STOPPED": "shutdown",
                     "REBOOT": "running", "RESIZE": "shutdown", "REBUILD": "running",
                     "MIGRATING": "running"}
_NIC_COUNTERS = tuple(f"{d}_{c}" for d in ("rx", "tx")
                      for c in ("octets", "errors", "drop", "packets", "rate"))
_DISK_COUNTERS = ("read_bytes", "read_requests", "write_bytes", "write_requests",
                  "errors_count")

#: The statuses Nova shows ``progress`` in (its view builder's).
_NOVA_PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE",
                           "MIGRATING")


def nova_vm_state(server: Server) -> str:
    """Nova's ``vm_state`` of a server (``active``, ``stopped``, ...)."""
    return _NOVA_STATE.get(model.api_status(server), _NOVA_STATE["UNKNOWN"])[1]


class NovaViews(SynnefoViews):
    """Nova's dialect, microversions 2.1 to ``MAX_MICROVERSION``
    (``/compute/v2.1``); see the module docstring."""

    prefix: ClassVar[str] = "/v2.1"
    highest: ClassVar[tuple[int, int]] = (2, 66)
    negotiates: ClassVar[bool] = True
    not_modified_when_unchanged: ClassVar[bool] = False
    hides_deleted: ClassVar[bool] = True
    keypair_deleted_code: ClassVar[int] = 202
    serial_flavor_ids: ClassVar[bool] = False
    diagnostics_for_admins: ClassVar[bool] = True
    strong_admin_pass: ClassVar[bool] = False
    hides_disabled_flavors: ClassVar[bool] = True
    nova_addresses: ClassVar[bool] = True
    metadata_set_code: ClassVar[int] = 200
    max_meta_text: ClassVar[int | None] = 255
    missing_on_create_is_bad_request: ClassVar[bool] = True

    def diagnostics(self, server: Server, messages: list[dict[str, Any]]) -> Any:
        """Nova's diagnostics: before 2.48 free-form (what snfd knows of the
        instance, and how many messages its Ganeti jobs left); from 2.48
        Nova's common shape, with null for the counters RAPI does not
        report (uptime, CPU times, NIC and disk traffic) and ``driver``
        naming Ganeti (Nova's drivers are an enumeration of its own)."""
        if self.since(48):
            return {
                "state": _DIAGNOSTIC_STATE.get(model.api_status(server), "crashed"),
                "driver": "ganeti", "hypervisor": None, "hypervisor_os": None,
                "uptime": None, "config_drive": False, "num_cpus": server.flavor.cpu,
                "num_nics": len(server.nics), "num_disks": len(server.disks),
                "memory_details": {"maximum": server.flavor.ram, "used": None},
                "cpu_details": [],
                "nic_details": [dict({"mac_address": nic.get("mac") or None},
                                     **dict.fromkeys(_NIC_COUNTERS))
                                for nic in server.nics],
                "disk_details": [dict.fromkeys(_DISK_COUNTERS) for _ in server.disks]}
        return {"driver": "ganeti", "state": nova_vm_state(server),
                "instance_name": server.instance_name, "num_cpus": server.flavor.cpu,
                "memory_mb": server.flavor.ram, "disk_gb": server.flavor.disk,
                "num_nics": len(server.nics), "num_disks": len(server.disks),
                "job_messages": len(messages)}
    lists_project_servers: ClassVar[bool] = True

    def status(self, server: Server) -> str:
        return _NOVA_STATE.get(model.api_status(server), _NOVA_STATE["UNKNOWN"])[0]

    def check_create(self, body: dict[str, Any], max_metadata: int) -> None:
        """Nova's rules: keys of later microversions (``description``
        2.19, ``tags`` 2.52, ``trusted_image_certificates`` 2.63) are 400
        before them; ``personality`` is 400 from 2.57; ``networks`` is
        required from 2.37 (``"auto"``/``"none"`` only from then); too many
        metadata items are over a quota (403); a value longer than 255
        characters is 400."""
        for minor, key in ((19, "description"), (52, "tags"),
                           (63, "trusted_image_certificates")):
            if key in body and not self.since(minor):
                raise errors.BadRequest(f"{key} is accepted from microversion 2.{minor}.")
        if "personality" in body and self.since(57):
            raise errors.BadRequest("personality is not accepted from microversion 2.57"
                                    " (give user_data).")
        networks = body.get("networks")
        if self.since(37) and networks is None:
            raise errors.BadRequest('networks is required from microversion 2.37: a list,'
                                    ' "auto" or "none".')
        if isinstance(networks, str) and not self.since(37):
            raise errors.BadRequest('networks "auto" and "none" are accepted from'
                                    ' microversion 2.37.')
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and len(metadata) > max_metadata:
            raise errors.Forbidden(f"Quota exceeded for metadata_items: a server may have"
                                   f" at most {max_metadata}.")
        check_metadata(metadata, max_value=self.max_meta_text)

    def limits(self, absolute: dict[str, Any], settings: Any) -> dict[str, Any]:
        """Nova's 16 absolute limits (-1: no limit; 0: nothing of the kind
        is served, as security groups and floating IPs until the network
        service)."""
        out = {"maxTotalInstances": 0, "totalInstancesUsed": 0, "maxTotalCores": 0,
               "totalCoresUsed": 0, "maxTotalRAMSize": 0, "totalRAMUsed": 0,
               "maxTotalFloatingIps": 0, "totalFloatingIpsUsed": 0}
        out.update({k: v for k, v in absolute.items() if k in out})
        out.update({"maxServerMeta": settings.max_metadata,
                    "maxImageMeta": MAX_IMAGE_META,
                    "maxPersonality": settings.max_personality,
                    "maxPersonalitySize": settings.max_personality_size,
                    "maxTotalKeypairs": -1, "maxSecurityGroups": 0,
                    "maxSecurityGroupRules": 0, "totalSecurityGroupsUsed": 0})
        gone: tuple[str, ...] = ()
        if self.since(36):   # the network service's limits are its own
            gone += ("maxSecurityGroups", "maxSecurityGroupRules", "maxTotalFloatingIps",
                     "totalFloatingIpsUsed", "totalSecurityGroupsUsed")
        if self.since(39):   # image properties are the image service's
            gone += ("maxImageMeta",)
        if self.since(57):   # no more personality files
            gone += ("maxPersonality", "maxPersonalitySize")
        return {k: v for k, v in out.items() if k not in gone}

    def quota_keys(self, keys: Any, classes: bool = False) -> list[str]:
        """The quota-set (``classes``: quota-class-set) entries shown at
        this microversion: 2.36 drops the network service's (2.50 for
        quota classes, which then show server groups), 2.57 drops
        personality files."""
        gone: set[str] = set()
        if self.since(50 if classes else 36):
            gone |= {"floating_ips", "fixed_ips", "security_groups", "security_group_rules",
                     "networks"}
        if classes and not self.since(50):
            gone |= {"server_groups", "server_group_members"}
        if self.since(57):
            gone |= {"injected_files", "injected_file_content_bytes",
                     "injected_file_path_bytes"}
        return [k for k in keys if k not in gone]

    def addresses(self, server: Server) -> dict[str, list[dict[str, Any]]]:
        """Nova's plain addresses (``ips``, a rename's or rebuild's
        answer): version and address only; a server's detail adds the
        ``OS-EXT-IPS`` keys (``_detailed_addresses``)."""
        return {net: [{"version": a["version"], "addr": a["addr"]} for a in entries]
                for net, entries in self._detailed_addresses(server).items()}

    def _detailed_addresses(self, server: Server) -> dict[str, list[dict[str, Any]]]:
        return nic_views(server, self.nova_addresses)[1]

    def _short(self, server: Server) -> dict[str, Any]:
        """Nova's ``common_show_server``: what a rename answers."""
        status, _, _ = _NOVA_STATE.get(model.api_status(server), _NOVA_STATE["UNKNOWN"])
        out: dict[str, Any] = {
            "id": str(server.id), "name": server.name, "status": status,
            "tenant_id": server.project, "user_id": server.userid,
            "created": nova_time(server.created), "updated": nova_time(server.updated),
            "hostId": "",
            "image": self.server_image(server),
            "flavor": {"id": server.flavor.flavorid,
                       "links": self.links("flavors", server.flavor.flavorid)},
            "metadata": dict(server.metadata), "addresses": self.addresses(server),
            "accessIPv4": server.access_ipv4, "accessIPv6": server.access_ipv6,
            "OS-DCF:diskConfig": "MANUAL",
            "links": self.links("servers", server.id),
        } | ({"progress": _progress(server, model.api_status(server))}
             if status in _NOVA_PROGRESS_STATUSES else {})
        if self.since(19):
            out["description"] = server.description
        if self.since(26):
            out["tags"] = list(server.tags)
        if self.since(47):
            out["flavor"] = self.server_flavor(server.flavor)
        if self.since(63):
            # Images are not signed here: no certificates to trust.
            out["trusted_image_certificates"] = None
        return out

    @staticmethod
    def server_flavor(flavor: Flavor) -> dict[str, Any]:
        """The flavor a server shows from 2.47: its values, not a link."""
        return {"original_name": flavor.name, "vcpus": flavor.cpu, "ram": flavor.ram,
                "disk": flavor.disk, "ephemeral": flavor.ephemeral, "swap": flavor.swap or 0,
                "extra_specs": dict(flavor.extra_specs)}

    def server(self, server: Server, detail: bool = True,
               diagnostics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        if not detail:
            return {"id": str(server.id), "name": server.name,
                    "links": self.links("servers", server.id)}
        _, vm_state, power = _NOVA_STATE.get(model.api_status(server), _NOVA_STATE["UNKNOWN"])
        out = self._short(server)
        out.update({
            "addresses": self._detailed_addresses(server),
            "key_name": server.key_names[0] if server.key_names else None,
            "OS-EXT-STS:task_state": _NOVA_TASK.get(server.task) if server.task else None,
            "OS-EXT-STS:vm_state": vm_state,
            "OS-EXT-STS:power_state": power,
            "OS-EXT-AZ:availability_zone": "nova",
            "OS-SRV-USG:launched_at": (nova_time(server.created)
                                       if server.operstate != "BUILD" else None),
            "OS-SRV-USG:terminated_at": nova_time(server.updated) if server.deleted else None,
            "os-extended-volumes:volumes_attached": [{"id": v.id}
                                                     for v in self.volumes(server, server.volumes)],
            "config_drive": "",
        })
        groups = security_groups(server)
        if groups:   # Nova leaves the key out for a server in no group
            out["security_groups"] = groups
        if server.operstate == "ERROR":
            out["fault"] = {"code": 500, "created": nova_time(server.updated),
                            "message": (server.backendlogmsg or "The build failed.")[:255]}
        return out

    def created(self, server: Server, password: str,
                groups: tuple[str, ...] | None = None) -> dict[str, Any]:
        # Nova names the groups asked for (its ports are not made yet).
        return {"id": str(server.id), "links": self.links("servers", server.id),
                "adminPass": password, "OS-DCF:diskConfig": "MANUAL",
                "security_groups": [{"name": n} for n in groups or ("default",)]}

    def renamed(self, server: Server) -> dict[str, Any] | None:
        return self._short(server)

    def rebuilt(self, server: Server, password: str) -> dict[str, Any]:
        out = {**self._short(server), "adminPass": password}
        if self.since(54):
            out["key_name"] = server.key_names[0] if server.key_names else None
        if self.since(57):
            # User data is handed to the new disk once, not kept (2.3).
            out["user_data"] = None
        return out

    def rebuild_keys(self) -> frozenset[str]:
        """What a rebuild body may hold at this microversion: 2.19 adds
        ``description``, 2.54 ``key_name``, 2.57 ``user_data`` (and drops
        ``personality``), 2.63 ``trusted_image_certificates``."""
        keys = set(REBUILD_KEYS)
        for minor, key in ((19, "description"), (54, "key_name"), (57, "user_data"),
                           (63, "trusted_image_certificates")):
            if self.since(minor):
                keys.add(key)
        if self.since(57):
            keys.discard("personality")
        return frozenset(keys)

    def update_keys(self) -> frozenset[str]:
        """What a server update (``PUT``) may change: 2.19 adds ``description``."""
        keys = {"name", "accessIPv4", "accessIPv6"}
        if self.since(19):
            keys.add("description")
        return frozenset(keys)

    def flavor(self, flavor: Flavor, detail: bool = True,
               version: tuple[int, int] = (2, 1)) -> dict[str, Any]:
        """A flavor as Nova shows it at microversion ``version``: from 2.55
        with its ``description`` (null: none), from 2.61 its detail with
        its ``extra_specs``."""
        links = self.links("flavors", flavor.flavorid)
        out: dict[str, Any] = {"id": flavor.flavorid, "name": flavor.name, "links": links}
        if detail:
            out.update({"ram": flavor.ram, "vcpus": flavor.cpu, "disk": flavor.disk,
                        "swap": flavor.swap or "",
                        "os-flavor-access:is_public": flavor.public,
                        "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral,
                        "OS-FLV-DISABLED:disabled": not flavor.allow_create,
                        "rxtx_factor": flavor.rxtx_factor})
        if version >= (2, 55):
            out["description"] = flavor.description
        if detail and version >= (2, 61):
            out["extra_specs"] = dict(flavor.extra_specs)
        return out

    @staticmethod
    def flavor_ref(flavor: Flavor) -> str:
        """How this dialect names a flavor (in paths, filters, flavorRef)."""
        return flavor.flavorid

    def keypair(self, keypair: Keypair, detail: bool = False,
                created: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": keypair.name, "public_key": keypair.public_key,
                               "fingerprint": keypair.fingerprint}
        if detail:
            out.update(user_id=keypair.userid, created_at=nova_time(keypair.created),
                       deleted=False, deleted_at=None, updated_at=None, id=keypair.id)
        if created:
            out["user_id"] = keypair.userid
            if keypair.private_key is not None:
                out["private_key"] = keypair.private_key
        return out

    def image(self, view: dict[str, Any], detail: bool) -> dict[str, Any]:
        if not detail:
            return {"id": view["id"], "name": view.get("name"), "links": view["links"]}
        return {"id": view["id"], "name": view.get("name"), "links": view["links"],
                "status": view.get("status", "UNKNOWN"), "progress": view.get("progress", 0),
                "created": view.get("created"), "updated": view.get("updated"),
                "minDisk": int(view.get("minDisk") or 0), "minRam": int(view.get("minRam") or 0),
                "metadata": dict(view.get("metadata") or {})}


def _progress(server: Server, status: str) -> int:
    if status == "ACTIVE":
        return 100
    if server.operstate == "BUILD" and not server.deleted:
        return server.buildpercentage
    return 0


def security_groups(server: Server) -> list[dict[str, str]]:
    """Nova's ``security_groups`` of a server: the names of its ports'
    groups, each once."""
    names = dict.fromkeys(n for p in server.ports for n in getattr(p, "security_group_names", ()))
    return [{"name": n} for n in names]
