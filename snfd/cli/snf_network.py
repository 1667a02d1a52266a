"""``snf network``, ``subnet``, ``port``, ``ip``, ``volume`` and ``snapshot``:
networks and block storage, kamaki's command set over the cloud's Neutron
(``network``: ``/v2.0/...``) and Cinder v3 (``volumev3``) APIs, and Nova's
``os-volume_attachments`` and ``block_device_mapping_v2`` (``compute``) for
attaching volumes and booting from them.

Attaching a server to a network is a port with the server's
``device_id``; detaching it is deleting that port.  A floating IP is
attached to a server through one of the server's ports (the cloud adds a
port on the IP's public network).  ``--wait`` polls until the resource
settles, with a spinner on a terminal (none with ``-q``).  Errors are the
API's own message, with ``snfd.cli.output.exit_code``'s status.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import click

from snfd.cli.output import Column, show
from snfd.cli.snf_app import App, Failed, SnfGroup, pass_app
from snfd.client.pithos import ClientError

__all__ = ["register"]

#: Seconds between two polls of ``--wait``, and how long it waits at most.
POLL = 1.0
WAIT_TIMEOUT = 900.0

#: Exit code of a refusal the command makes itself (as the API's 409).
REFUSED = 5


# -- the APIs ------------------------------------------------------------------------


def _net(app: App, method: str, path: str, body: Any = None,
         params: Mapping[str, str | None] | None = None) -> Any:
    """A Neutron call: ``path`` under ``/v2.0`` (the v3 catalog names the
    unversioned endpoint, the v2.0 one the versioned)."""
    cloud = app.cloud
    prefix = "" if cloud.endpoint("network").endswith("/v2.0") else "/v2.0"
    return cloud.call("network", method, prefix + path, body, params=params)


def _vol(app: App, method: str, path: str, body: Any = None,
         params: Mapping[str, str | None] | None = None) -> Any:
    return app.cloud.call("volumev3", method, path, body, params=params)


def _compute(app: App, method: str, path: str, body: Any = None) -> Any:
    return app.cloud.call("compute", method, path, body)


def _example(text: str) -> str:
    """The help's example block (click keeps ``\\b`` paragraphs as written)."""
    return f"\n\n\b\nExample:\n  {text}"


def _help(summary: str, example: str, more: str = "") -> Callable[[Any], Any]:
    """Give a command its help text: ``summary``, ``more`` and an example."""
    def decorate(f: Any) -> Any:
        f.__doc__ = summary + (f"\n\n{more}" if more else "") + _example(example)
        return f
    return decorate


def _wait_option(f: Any) -> Any:
    return click.option("--wait", "-w", is_flag=True,
                        help="wait until it is done (progress on a terminal)")(f)


def _wait(app: App, what: str, probe: Callable[[], Mapping[str, Any]],
          done: Iterable[str], failed: Iterable[str] = ("error",),
          timeout: float = WAIT_TIMEOUT) -> Mapping[str, Any]:
    """Poll ``probe`` until its ``status`` is one of ``done`` (answered),
    one of ``failed`` or ``timeout`` passes (``Failed``).  A rich spinner
    with the status on stderr, unless ``-q`` or not a terminal."""
    done, failed = set(done), set(failed)
    display = app.status()
    deadline = time.monotonic() + timeout
    try:
        while True:
            item = probe()
            status = str(item.get("status", ""))
            display.update(f"{what}: {status}", item.get("progress"))
            if status in done:
                return item
            if status in failed:
                fault = item.get("fault") or {}
                why = fault.get("message") if isinstance(fault, dict) else None
                raise Failed(f"{what}: {status}" + (f" ({why})" if why else ""))
            if time.monotonic() > deadline:
                raise Failed(f"{what}: still {status} after {int(timeout)} s")
            time.sleep(POLL)
    finally:
        display.stop()


def _refuse(message: str) -> Failed:
    return Failed(message, REFUSED)


def _name(item: Mapping[str, Any]) -> str:
    return str(item.get("name") or "")


# -- networks ---------------------------------------------------------------------------


def _kind(n: Mapping[str, Any]) -> str:
    if n.get("router:external") or n.get("public"):
        return "public"
    return "shared" if n.get("shared") else f"private ({n.get('type') or ''})"


NETWORK_COLUMNS = [Column("ID", "id"), Column("Name", "name"), Column("Status", "status"),
                   Column("Kind", _kind), Column("Subnets", "subnet_cidrs")]
NETWORK_FIELDS = [Column("id", "id"), Column("name", "name"), Column("status", "status"),
                  Column("kind", _kind), Column("type", "type"),
                  Column("floating IP pool", "SNF:floating_ip_pool"),
                  Column("subnets", "subnet_cidrs"), Column("project", "project_id"),
                  Column("created", "created_at")]
SUBNET_COLUMNS = [Column("ID", "id"), Column("Network", "network_id"), Column("Name", "name"),
                  Column("CIDR", "cidr"), Column("Gateway", "gateway_ip"),
                  Column("DHCP", lambda s: "yes" if s.get("enable_dhcp") else "no")]
PORT_COLUMNS = [Column("ID", "id"), Column("Network", "network_id"),
                Column("Server", "device_id"), Column("Status", "status"),
                Column("MAC", "mac_address"),
                Column("Addresses", lambda p: [i.get("ip_address") for i in
                                               p.get("fixed_ips") or []])]
IP_COLUMNS = [Column("ID", "id"), Column("Address", "floating_ip_address"),
              Column("Status", "status"), Column("Server", "instance_id"),
              Column("Port", "port_id"), Column("Network", "floating_network_id")]


def _with_cidrs(app: App, networks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tables show a network's subnets by CIDR (JSON keeps the API's ids)."""
    if app.json or not networks:
        return networks
    cidrs = {s["id"]: s.get("cidr", "") for s in _net(app, "GET", "/subnets")["subnets"]}
    return [{**n, "subnet_cidrs": [cidrs.get(s, s) for s in n.get("subnets") or []]}
            for n in networks]


def _ip_version(cidr: str) -> int:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        return 6 if ":" in cidr else 4  # the API words the refusal


def _subnet_body(network: str, cidr: str, name: str | None, gateway: str | None,
                 no_dhcp: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"network_id": network, "cidr": cidr,
                            "ip_version": _ip_version(cidr)}
    if name is not None:
        body["name"] = name
    if gateway is not None:
        body["gateway_ip"] = None if gateway.lower() == "none" else gateway
    if no_dhcp:
        body["enable_dhcp"] = False
    return {"subnet": body}


def _network_group(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    @_help("Private networks: list, create (with a subnet), rename, delete.",
           "snf network create lan --subnet 10.0.0.0/24")
    def network() -> None:
        pass

    @network.command("list")
    @_help("List the networks you can use (yours, public and shared ones).",
           "snf network list")
    @pass_app
    def network_list(app: App) -> None:
        found = _net(app, "GET", "/networks")["networks"]
        show(app.json, _with_cidrs(app, found), NETWORK_COLUMNS, empty="no networks")

    @network.command("info")
    @click.argument("network_id", metavar="ID")
    @_help("Show a network.", "snf network info 42")
    @pass_app
    def network_info(app: App, network_id: str) -> None:
        found = _net(app, "GET", f"/networks/{network_id}")["network"]
        show(app.json, _with_cidrs(app, [found])[0], NETWORK_FIELDS)

    @network.command("create")
    @click.argument("name")
    @click.option("--subnet", "cidr", help="a subnet of this CIDR (e.g. 10.0.0.0/24)")
    @click.option("--gateway", help="the subnet's gateway (default: its first address;"
                  " 'none' for no gateway)")
    @click.option("--no-dhcp", is_flag=True, help="the subnet without DHCP")
    @_help("Create a private network, optionally with a subnet.",
           "snf network create lan --subnet 10.0.0.0/24 --gateway 10.0.0.1",
           "If the subnet is refused, the new network is deleted again.")
    @pass_app
    def network_create(app: App, name: str, cidr: str | None, gateway: str | None,
                       no_dhcp: bool) -> None:
        if cidr is None and (gateway is not None or no_dhcp):
            raise click.UsageError("--gateway and --no-dhcp are the subnet's: give --subnet")
        made = _net(app, "POST", "/networks", {"network": {"name": name}})["network"]
        if cidr is not None:
            try:
                _net(app, "POST", "/subnets",
                     _subnet_body(made["id"], cidr, None, gateway, no_dhcp))
            except ClientError:
                try:
                    _net(app, "DELETE", f"/networks/{made['id']}")
                except ClientError:
                    pass
                raise
            made = _net(app, "GET", f"/networks/{made['id']}")["network"]
        show(app.json, _with_cidrs(app, [made])[0], NETWORK_FIELDS)

    @network.command("rename")
    @click.argument("network_id", metavar="ID")
    @click.argument("name")
    @_help("Rename a network.", "snf network rename 42 backend")
    @pass_app
    def network_rename(app: App, network_id: str, name: str) -> None:
        found = _net(app, "PUT", f"/networks/{network_id}",
                     {"network": {"name": name}})["network"]
        show(app.json, _with_cidrs(app, [found])[0], NETWORK_FIELDS)

    @network.command("delete")
    @click.argument("network_id", metavar="ID")
    @_help("Delete a network (refused while servers are attached to it).",
           "snf network delete 42")
    @pass_app
    def network_delete(app: App, network_id: str) -> None:
        _net(app, "DELETE", f"/networks/{network_id}")


def _subnet_group(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    @_help("Subnets of networks: list, create, delete.",
           "snf subnet create 42 10.0.1.0/24 --name second")
    def subnet() -> None:
        pass

    @subnet.command("list")
    @click.option("--network", help="only this network's")
    @_help("List the subnets of the networks you can use.", "snf subnet list --network 42")
    @pass_app
    def subnet_list(app: App, network: str | None) -> None:
        params = {"network_id": network} if network else None
        found = _net(app, "GET", "/subnets", params=params)["subnets"]
        show(app.json, found, SUBNET_COLUMNS, empty="no subnets")

    @subnet.command("info")
    @click.argument("subnet_id", metavar="ID")
    @_help("Show a subnet.", "snf subnet info 7")
    @pass_app
    def subnet_info(app: App, subnet_id: str) -> None:
        show(app.json, _net(app, "GET", f"/subnets/{subnet_id}")["subnet"])

    @subnet.command("create")
    @click.argument("network")
    @click.argument("cidr")
    @click.option("--name")
    @click.option("--gateway", help="default: the first address; 'none' for no gateway")
    @click.option("--no-dhcp", is_flag=True)
    @_help("Add a subnet to a network.",
           "snf subnet create 42 10.0.1.0/24 --gateway none --no-dhcp")
    @pass_app
    def subnet_create(app: App, network: str, cidr: str, name: str | None,
                      gateway: str | None, no_dhcp: bool) -> None:
        made = _net(app, "POST", "/subnets",
                    _subnet_body(network, cidr, name, gateway, no_dhcp))["subnet"]
        show(app.json, made)

    @subnet.command("delete")
    @click.argument("subnet_id", metavar="ID")
    @_help("Delete a subnet.", "snf subnet delete 7")
    @pass_app
    def subnet_delete(app: App, subnet_id: str) -> None:
        _net(app, "DELETE", f"/subnets/{subnet_id}")


def _port_group(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    @_help("Ports: a port of a server on a network is its NIC there (create one to"
           " attach the server, delete it to detach).",
           "snf port create 42 --server 17")
    def port() -> None:
        pass

    @port.command("list")
    @click.option("--network", help="only on this network")
    @click.option("--server", help="only this server's")
    @_help("List your ports.", "snf port list --server 17")
    @pass_app
    def port_list(app: App, network: str | None, server: str | None) -> None:
        params = {k: v for k, v in (("network_id", network), ("device_id", server)) if v}
        found = _net(app, "GET", "/ports", params=params or None)["ports"]
        show(app.json, found, PORT_COLUMNS, empty="no ports")

    @port.command("info")
    @click.argument("port_id", metavar="ID")
    @_help("Show a port.", "snf port info 99")
    @pass_app
    def port_info(app: App, port_id: str) -> None:
        show(app.json, _net(app, "GET", f"/ports/{port_id}")["port"])

    @port.command("create")
    @click.argument("network")
    @click.option("--server", required=True, help="the server to attach")
    @click.option("--ip", "address", help="this address of the network's subnets")
    @_help("Attach a server to a network: a port with the server as its device.",
           "snf port create 42 --server 17 --ip 10.0.0.10")
    @pass_app
    def port_create(app: App, network: str, server: str, address: str | None) -> None:
        body: dict[str, Any] = {"network_id": network, "device_id": server}
        if address:
            body["fixed_ips"] = [{"ip_address": address}]
        made = _net(app, "POST", "/ports", {"port": body})["port"]
        show(app.json, made)

    @port.command("delete")
    @click.argument("port_id", metavar="ID")
    @_help("Delete a port (detaches its server from the network).", "snf port delete 99")
    @pass_app
    def port_delete(app: App, port_id: str) -> None:
        _net(app, "DELETE", f"/ports/{port_id}")


def _floating_ip(app: App, ref: str) -> dict[str, Any]:
    """A floating IP by id or by address."""
    try:
        ipaddress.ip_address(ref)
    except ValueError:
        found: dict[str, Any] = _net(app, "GET", f"/floatingips/{ref}")["floatingip"]
        return found
    for ip in _net(app, "GET", "/floatingips",
                   params={"floating_ip_address": ref})["floatingips"]:
        if ip.get("floating_ip_address") == ref:
            return dict(ip)
    raise Failed(f"no floating IP {ref} of yours", 3)


def _ip_group(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    @_help("Floating IPs: addresses of a public network you hold and attach to servers.",
           "snf ip create && snf ip attach 192.0.2.10 17")
    def ip() -> None:
        pass

    @ip.command("list")
    @_help("List your floating IPs.", "snf ip list")
    @pass_app
    def ip_list(app: App) -> None:
        found = _net(app, "GET", "/floatingips")["floatingips"]
        show(app.json, found, IP_COLUMNS, empty="no floating IPs")

    @ip.command("info")
    @click.argument("ref", metavar="IP")
    @_help("Show a floating IP (by id or address).", "snf ip info 192.0.2.10")
    @pass_app
    def ip_info(app: App, ref: str) -> None:
        show(app.json, _floating_ip(app, ref))

    @ip.command("create")
    @click.option("--network", help="the public network whose pool to take it from"
                  " (default: the cloud chooses)")
    @_help("Allocate a floating IP.", "snf ip create --network 1")
    @pass_app
    def ip_create(app: App, network: str | None) -> None:
        body = {"floating_network_id": network} if network else {}
        show(app.json, _net(app, "POST", "/floatingips", {"floatingip": body})["floatingip"],
             IP_COLUMNS)

    @ip.command("attach")
    @click.argument("ref", metavar="IP")
    @click.argument("server")
    @_help("Attach a floating IP (id or address) to a server.",
           "snf ip attach 192.0.2.10 17",
           "The IP goes to the server through one of its ports: the cloud adds a port"
           " on the IP's network.")
    @pass_app
    def ip_attach(app: App, ref: str, server: str) -> None:
        found = _floating_ip(app, ref)
        ports = _net(app, "GET", "/ports", params={"device_id": server})["ports"]
        ports = [p for p in ports if str(p.get("device_id")) == server]
        if not ports:
            _compute(app, "GET", f"/servers/{server}")  # 404 for a missing server
            raise _refuse(f"server {server} has no port to attach {ref} through")
        made = _net(app, "PUT", f"/floatingips/{found['id']}",
                    {"floatingip": {"port_id": ports[0]["id"]}})["floatingip"]
        show(app.json, made, IP_COLUMNS)

    @ip.command("detach")
    @click.argument("ref", metavar="IP")
    @_help("Detach a floating IP from its server (you keep it).", "snf ip detach 192.0.2.10")
    @pass_app
    def ip_detach(app: App, ref: str) -> None:
        found = _floating_ip(app, ref)
        made = _net(app, "PUT", f"/floatingips/{found['id']}",
                    {"floatingip": {"port_id": None}})["floatingip"]
        show(app.json, made, IP_COLUMNS)

    @ip.command("release")
    @click.argument("ref", metavar="IP")
    @_help("Give a floating IP back to the pool.", "snf ip release 192.0.2.10")
    @pass_app
    def ip_release(app: App, ref: str) -> None:
        found = _floating_ip(app, ref)
        _net(app, "DELETE", f"/floatingips/{found['id']}")


# -- volumes and snapshots -------------------------------------------------------------------


def _servers_of(v: Mapping[str, Any]) -> list[str]:
    return [str(a.get("server_id")) for a in v.get("attachments") or []]


def _source(v: Mapping[str, Any]) -> str:
    if v.get("snapshot_id"):
        return f"snapshot {v['snapshot_id']}"
    image = (v.get("volume_image_metadata") or {}).get("image_id")
    return f"image {image}" if image else ""


VOLUME_COLUMNS = [Column("ID", "id"), Column("Name", "name"),
                  Column("Size", lambda v: f"{v.get('size')} GiB"),
                  Column("Status", "status"), Column("Type", "volume_type"),
                  Column("From", _source), Column("Server", _servers_of)]
VOLUME_FIELDS = [Column("id", "id"), Column("name", "name"),
                 Column("size", lambda v: f"{v.get('size')} GiB"),
                 Column("status", "status"), Column("type", "volume_type"),
                 Column("from", _source), Column("server", _servers_of),
                 Column("bootable", "bootable"), Column("created", "created_at")]
SNAPSHOT_COLUMNS = [Column("ID", "id"), Column("Name", "name"),
                    Column("Volume", "volume_id"),
                    Column("Size", lambda s: f"{s.get('size')} GiB"),
                    Column("Status", "status")]
SERVER_FIELDS = [Column("id", "id"), Column("name", "name"), Column("status", "status"),
                 Column("flavor", lambda s: (s.get("flavor") or {}).get("id")),
                 Column("volumes", lambda s: [v.get("id") for v in
                                              s.get("os-extended-volumes:volumes_attached")
                                              or []]),
                 Column("password", "adminPass")]

_VOLUME_ERRORS = ("error", "error_deleting", "error_restoring", "error_extending")


def _volume(app: App, volume_id: str) -> dict[str, Any]:
    found: dict[str, Any] = _vol(app, "GET", f"/volumes/{volume_id}")["volume"]
    return found


def _wait_volume(app: App, volume_id: str, what: str, *done: str) -> dict[str, Any]:
    return dict(_wait(app, what, lambda: _volume(app, volume_id), done, _VOLUME_ERRORS))


def _volume_group(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    @_help("Block storage volumes: list, create (empty, of an image or of a snapshot),"
           " attach to servers, boot servers from, delete.",
           "snf volume create --size 10 --image IMAGE_ID --name data --wait")
    def volume() -> None:
        pass

    @volume.command("list")
    @_help("List your volumes.", "snf volume list")
    @pass_app
    def volume_list(app: App) -> None:
        found = _vol(app, "GET", "/volumes/detail")["volumes"]
        show(app.json, found, VOLUME_COLUMNS, empty="no volumes")

    @volume.command("info")
    @click.argument("volume_id", metavar="ID")
    @_help("Show a volume.", "snf volume info 5f0c…")
    @pass_app
    def volume_info(app: App, volume_id: str) -> None:
        found = _volume(app, volume_id)
        show(app.json, found, () if app.json else VOLUME_FIELDS)

    @volume.command("create")
    @click.option("--size", type=click.IntRange(1), help="GiB (from an image or a"
                  " snapshot: default and minimum its size)")
    @click.option("--name", default="", help="a name")
    @click.option("--image", help="the image to copy")
    @click.option("--snapshot", help="the snapshot to copy")
    @click.option("--type", "volume_type", help="a volume type (see the API's /types)")
    @_wait_option
    @_help("Create a volume: empty, of an image or of a snapshot.",
           "snf volume create --size 2 --name data --image IMAGE_ID --wait",
           "Copies are thin: nothing is copied until written.")
    @pass_app
    def volume_create(app: App, size: int | None, name: str, image: str | None,
                      snapshot: str | None, volume_type: str | None, wait: bool) -> None:
        if image and snapshot:
            raise click.UsageError("give --image or --snapshot, not both")
        if size is None and not (image or snapshot):
            raise click.UsageError("an empty volume needs --size")
        body: dict[str, Any] = {"name": name}
        for key, value in (("size", size), ("imageRef", image), ("snapshot_id", snapshot),
                           ("volume_type", volume_type)):
            if value is not None:
                body[key] = value
        made = _vol(app, "POST", "/volumes", {"volume": body})["volume"]
        if wait:
            made = _wait_volume(app, made["id"], f"volume {made['id']}", "available")
        show(app.json, made, () if app.json else VOLUME_FIELDS)

    @volume.command("attach")
    @click.argument("volume_id", metavar="VOLUME")
    @click.argument("server")
    @_wait_option
    @_help("Attach an available volume to a server (it is in-use once the server has"
           " the disk).", "snf volume attach 5f0c… 17 --wait")
    @pass_app
    def volume_attach(app: App, volume_id: str, server: str, wait: bool) -> None:
        _compute(app, "POST", f"/servers/{server}/os-volume_attachments",
                 {"volumeAttachment": {"volumeId": volume_id}})
        found = (_wait_volume(app, volume_id, f"volume {volume_id}", "in-use") if wait
                 else _volume(app, volume_id))
        show(app.json, found, () if app.json else VOLUME_FIELDS)

    @volume.command("detach")
    @click.argument("volume_id", metavar="VOLUME")
    @_wait_option
    @_help("Detach a volume from its server (it keeps its data).",
           "snf volume detach 5f0c… --wait")
    @pass_app
    def volume_detach(app: App, volume_id: str, wait: bool) -> None:
        servers = _servers_of(_volume(app, volume_id))
        if not servers:
            raise _refuse(f"volume {volume_id} is not attached to a server")
        for server in servers:
            _compute(app, "DELETE", f"/servers/{server}/os-volume_attachments/{volume_id}")
        found = (_wait_volume(app, volume_id, f"volume {volume_id}", "available") if wait
                 else _volume(app, volume_id))
        show(app.json, found, () if app.json else VOLUME_FIELDS)

    @volume.command("delete")
    @click.argument("volume_id", metavar="ID")
    @_help("Delete a volume (refused while in use or while it has snapshots).",
           "snf volume delete 5f0c…")
    @pass_app
    def volume_delete(app: App, volume_id: str) -> None:
        _vol(app, "DELETE", f"/volumes/{volume_id}")

    @volume.command("boot")
    @click.argument("source", metavar="SNAPSHOT_OR_VOLUME")
    @click.option("--flavor", required=True, help="a flavor of thin volumes"
                  " (ext_archipelago)")
    @click.option("--name", required=True, help="the server's name")
    @_wait_option
    @_help("Create a server whose boot disk is a new volume of a snapshot, or an"
           " existing available volume.",
           "snf volume boot SNAPSHOT_ID --flavor 3 --name web --wait",
           "A new volume is the flavor's disk size and goes with the server; an"
           " existing volume stays when the server is deleted.")
    @pass_app
    def volume_boot(app: App, source: str, flavor: str, name: str, wait: bool) -> None:
        kind = "snapshot"
        try:
            _vol(app, "GET", f"/snapshots/{source}")
        except ClientError as e:
            if e.status != 404:
                raise
            kind = "volume"
            _volume(app, source)  # 404: neither
        bdm = {"source_type": kind, "destination_type": "volume", "uuid": source,
               "boot_index": 0, "delete_on_termination": kind == "snapshot"}
        made = _compute(app, "POST", "/servers", {"server": {
            "name": name, "flavorRef": flavor, "block_device_mapping_v2": [bdm]}})["server"]
        password = made.get("adminPass")
        server = made
        if wait:
            server = dict(_wait(app, f"server {made['id']}", lambda: _compute(
                app, "GET", f"/servers/{made['id']}")["server"], ("ACTIVE",), ("ERROR",)))
            if password:
                server["adminPass"] = password
        show(app.json, server, () if app.json else SERVER_FIELDS)


def _snapshot_group(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    @_help("Snapshots of volumes: list, create, delete (make volumes and servers of"
           " them with `snf volume create --snapshot` and `snf volume boot`).",
           "snf snapshot create 5f0c… --name before-upgrade")
    def snapshot() -> None:
        pass

    def one(app: App, snapshot_id: str) -> dict[str, Any]:
        found: dict[str, Any] = _vol(app, "GET", f"/snapshots/{snapshot_id}")["snapshot"]
        return found

    @snapshot.command("list")
    @_help("List your snapshots.", "snf snapshot list")
    @pass_app
    def snapshot_list(app: App) -> None:
        found = _vol(app, "GET", "/snapshots/detail")["snapshots"]
        show(app.json, found, SNAPSHOT_COLUMNS, empty="no snapshots")

    @snapshot.command("info")
    @click.argument("snapshot_id", metavar="ID")
    @_help("Show a snapshot.", "snf snapshot info 9a1e…")
    @pass_app
    def snapshot_info(app: App, snapshot_id: str) -> None:
        show(app.json, one(app, snapshot_id))

    @snapshot.command("create")
    @click.argument("volume_id", metavar="VOLUME")
    @click.option("--name", default="", help="a name")
    @click.option("--force", is_flag=True, help="also of a volume in use (crash-consistent)")
    @_wait_option
    @_help("Snapshot a volume.", "snf snapshot create 5f0c… --name nightly --force --wait")
    @pass_app
    def snapshot_create(app: App, volume_id: str, name: str, force: bool,
                        wait: bool) -> None:
        made = _vol(app, "POST", "/snapshots", {"snapshot": {
            "volume_id": volume_id, "name": name, "force": force}})["snapshot"]
        if wait:
            made = dict(_wait(app, f"snapshot {made['id']}", lambda: one(app, made["id"]),
                              ("available",), ("error", "error_deleting")))
        show(app.json, made)

    @snapshot.command("delete")
    @click.argument("snapshot_id", metavar="ID")
    @_help("Delete a snapshot.", "snf snapshot delete 9a1e…")
    @pass_app
    def snapshot_delete(app: App, snapshot_id: str) -> None:
        _vol(app, "DELETE", f"/snapshots/{snapshot_id}")


def register(cli: click.Group) -> None:
    """Add ``network``, ``subnet``, ``port``, ``ip``, ``volume`` and
    ``snapshot`` to ``cli``."""
    for add in (_network_group, _subnet_group, _port_group, _ip_group, _volume_group,
                _snapshot_group):
        add(cli)

