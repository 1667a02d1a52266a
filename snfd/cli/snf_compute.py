"""``snf server``, ``snf flavor``, ``snf keypair`` and ``snf image``: the
compute and image commands of the user's command line (kamaki's set).

Servers, flavors and key pairs go to the catalog's ``compute`` endpoint
(Nova's dialect, ``/compute/v2.1``) at microversion ``MICROVERSION``
(server tags, flavors' ``extra_specs``, ``networks: "auto"``).  Images are
listed and shown through Glance v2 (``/image/v2``) and registered,
changed, shared and unregistered through Synnefo's Plankton
(``/image/v1.0``, ``X-Image-Meta-*`` headers), which makes a file of the
user's object store an image; ``snf image register`` of a local file
first uploads it by hashmap (``snfd.client.sync.upload_file``: only the
blocks the store lacks are sent).

Waiting (``--wait``, ``snf server wait``) polls the server and shows its
status and build progress on stderr (a rich spinner; nothing when quiet
or stderr is not a terminal).  Errors are the API's message with the exit
code of its status (``snfd.cli.output.exit_code``); a server that ends in
ERROR, or a wait that times out, exits 1.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from snfd.cli.output import Column, show, show_json
from snfd.cli.snf_app import App, Failed, SnfGroup, fail, pass_app
from snfd.client import sync as transfer

#: The Nova microversion every compute call names.
MICROVERSION = "2.61"
#: Statuses a server only passes through.
TRANSITIONAL = frozenset({"BUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "REBUILD", "MIGRATING",
                          "PASSWORD", "VERIFY_RESIZE", "REVERT_RESIZE"})
#: The profiles of a server NIC's firewall (the ``firewallProfile`` action).
FIREWALL_PROFILES = ("ENABLED", "DISABLED", "PROTECTED")
POLL_INTERVAL = 1.0
DEFAULT_TIMEOUT = 600.0
#: Synnefo's flavor names: C<cpu>R<ram>D<disk><disk template>.
_FLAVOR_NAME = re.compile(r"^C\d+R\d+D\d+(?P<template>[a-z_]+)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")


# -- calls -------------------------------------------------------------------------


def compute(app: App, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    """One compute call at ``MICROVERSION``."""
    headers = {"OpenStack-API-Version": f"compute {MICROVERSION}",
               "X-OpenStack-Nova-API-Version": MICROVERSION}
    return app.cloud.call("compute", method, path, body, headers=headers, **kwargs)


def _seg(value: str) -> str:
    return quote(value, safe="")


def pairs(values: Iterable[str], what: str = "K=V") -> dict[str, str]:
    """``K=V`` arguments as a dict (click's usage error otherwise)."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not {what}")
        out[key.strip()] = val
    return out


# -- servers ---------------------------------------------------------------------------


def _flavor_name(server: Mapping[str, Any]) -> str:
    flavor = server.get("flavor") or {}
    return str(flavor.get("original_name") or flavor.get("id") or "")


def _image_id(server: Mapping[str, Any]) -> str:
    image = server.get("image")
    return str(image.get("id", "")) if isinstance(image, dict) else ""


def _addresses(server: Mapping[str, Any]) -> str:
    found = []
    for net, addrs in sorted((server.get("addresses") or {}).items()):
        for a in addrs or []:
            found.append(f"{a.get('addr')} ({net})")
    return ", ".join(found)


def _task(server: Mapping[str, Any]) -> str:
    """The pending task: Nova's name for it, else Synnefo's (a firewall
    change has only the latter)."""
    return str(server.get("OS-EXT-STS:task_state") or server.get("SNF:task_state") or "")


SERVER_COLUMNS = (Column("ID", "id"), Column("Name", "name"), Column("Status", "status"))
SERVER_DETAIL_COLUMNS = (
    *SERVER_COLUMNS, Column("Task", _task), Column("Flavor", _flavor_name),
    Column("Image", _image_id), Column("Key", "key_name"), Column("Addresses", _addresses))
SERVER_INFO_COLUMNS = (
    Column("id", "id"), Column("name", "name"), Column("status", "status"),
    Column("task", _task), Column("progress", "progress"), Column("flavor", _flavor_name),
    Column("image", _image_id), Column("key", "key_name"), Column("addresses", _addresses),
    Column("metadata", "metadata"), Column("tags", "tags"), Column("locked", "locked"),
    Column("created", "created"), Column("updated", "updated"), Column("user", "user_id"),
    Column("project", "tenant_id"), Column("fault", lambda s: (s.get("fault") or {}).get(
        "message")))


def get_server(app: App, server_id: str) -> dict[str, Any]:
    found: dict[str, Any] = compute(app, "GET", f"/servers/{_seg(server_id)}")["server"]
    return found


def wait_for(app: App, server_id: str, wanted: Iterable[str] | None = None,
             timeout: float = DEFAULT_TIMEOUT, gone: bool = False) -> dict[str, Any]:
    """Poll the server until its status is one of ``wanted`` with no task
    (None: any status it may rest in), or it is gone (``gone``); a rich
    status line on stderr meanwhile.  ERROR (unless wanted) and the
    timeout end the command with exit code 1."""
    from snfd.client.pithos import ClientError

    targets = set(wanted) if wanted is not None else None
    deadline = time.monotonic() + timeout
    display = app.status()
    try:
        while True:
            try:
                server = get_server(app, server_id)
            except ClientError as e:
                if gone and e.status == 404:
                    return {}
                raise
            status = str(server.get("status", ""))
            display.update(f"server {server_id}: {status}"
                           + (f" ({_task(server)})" if _task(server) else ""),
                           server.get("progress"))
            settled = not _task(server) and status not in TRANSITIONAL
            if settled and not gone and (targets is None or status in targets):
                return server
            if status == "ERROR" and settled and not (targets and "ERROR" in targets):
                fault = (server.get("fault") or {}).get("message") or "no message"
                raise Failed(f"server {server_id} is in ERROR: {fault}")
            if time.monotonic() >= deadline:
                raise Failed(f"server {server_id} is still {status}"
                             f"{' (' + _task(server) + ')' if _task(server) else ''}"
                             f" after {timeout:g}s")
            time.sleep(POLL_INTERVAL)
    finally:
        display.stop()


def _wait_option(f: Any) -> Any:
    return click.option("--wait", "-w", is_flag=True,
                        help="wait until the server settles (progress on a terminal)")(f)


def _timeout_option(f: Any) -> Any:
    return click.option("--timeout", type=click.FloatRange(0), default=DEFAULT_TIMEOUT,
                        show_default=True, help="seconds to wait at most")(f)


def _flavors(app: App) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = compute(app, "GET", "/flavors/detail")["flavors"]
    return found


def flavor_template(flavor: Mapping[str, Any]) -> str:
    """A flavor's disk template: its ``SNF:disk_template`` extra spec, else
    the end of Synnefo's name (``C1R1024D10drbd``)."""
    spec = (flavor.get("extra_specs") or {}).get("SNF:disk_template")
    if spec:
        return str(spec)
    m = _FLAVOR_NAME.match(str(flavor.get("name", "")))
    return m.group("template") if m else ""


def pick_flavor(app: App, cpu: int, ram: int, disk: int, template: str | None) -> str:
    found = [f for f in _flavors(app)
             if (f.get("vcpus"), f.get("ram"), f.get("disk")) == (cpu, ram, disk)
             and (template is None or flavor_template(f) == template)
             and not f.get("OS-FLV-DISABLED:disabled")]
    if not found:
        shape = f"{cpu} CPU, {ram} MiB RAM, {disk} GiB disk" + (
            f", {template}" if template else "")
        raise Failed(f"no flavor has {shape} (see `snf flavor list`)", 3)
    if len(found) > 1 and template is None:
        templates = sorted({flavor_template(f) for f in found})
        if len(templates) > 1:
            fail(f"several flavors have that shape; choose a --template:"
                 f" {', '.join(templates)}")
    return str(found[0]["id"])


def find_image(app: App, ref: str) -> str:
    """An image id from an id or an exact name."""
    if _UUID.match(ref):
        return ref
    named = [i for i in list_images(app) if i.get("name") == ref]
    if len(named) == 1:
        return str(named[0]["id"])
    if not named:
        raise Failed(f"no image is called {ref!r} (see `snf image list`)", 3)
    fail(f"several images are called {ref!r}; give its id")


def _action(app: App, server_id: str, body: Mapping[str, Any]) -> Any:
    return compute(app, "POST", f"/servers/{_seg(server_id)}/action", dict(body))


def register_servers(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    def server() -> None:
        """Create, list, change and delete virtual servers.

        \b
        Example:
          snf server create --name web --flavor 1 --image "Demo Linux" --key mykey --wait
        """

    @server.command("list")
    @click.option("--detail", "-l", is_flag=True,
                  help="flavor, image, key, addresses (-o json: every field)")
    @click.option("--status", help="only servers in this status (ACTIVE, SHUTOFF ...)")
    @click.option("--name", help="only servers whose name matches this regular expression")
    @pass_app
    def server_list(app: App, detail: bool, status: str | None, name: str | None) -> None:
        """List your servers.

        \b
        Example:
          snf server list --detail
          snf -o json server list --status ACTIVE
        """
        params = {k: v for k, v in (("status", status), ("name", name)) if v}
        found = compute(app, "GET", "/servers/detail", params=params or None)["servers"]
        if app.json and not detail:
            found = [{k: s.get(k) for k in ("id", "name", "status")} for s in found]
        show(app.json, found, SERVER_DETAIL_COLUMNS if detail else SERVER_COLUMNS,
             empty="no servers")

    @server.command("info")
    @click.argument("server_id")
    @pass_app
    def server_info(app: App, server_id: str) -> None:
        """Show a server.

        \b
        Example:
          snf server info 42
        """
        found = get_server(app, server_id)
        show(app.json, found, () if app.json else SERVER_INFO_COLUMNS)

    @server.command("create")
    @click.option("--name", required=True, help="the server's name")
    @click.option("--flavor", "flavor_id", help="flavor id (see `snf flavor list`)")
    @click.option("--cpu", type=click.IntRange(1), help="or choose the flavor by CPUs ...")
    @click.option("--ram", type=click.IntRange(1), help="... RAM (MiB) ...")
    @click.option("--disk", type=click.IntRange(1), help="... disk (GiB) ...")
    @click.option("--template", help="... and disk template (file, drbd, ext_archipelago)")
    @click.option("--image", "image", required=True, help="image id (or its exact name)")
    @click.option("--key", "key_name", help="a key pair's name (see `snf keypair list`)")
    @click.option("--network", "networks", multiple=True,
                  help="a network id to connect to (repeat; default: the cloud's)")
    @click.option("--metadata", "-m", "metadata", multiple=True, metavar="K=V",
                  help="a metadata item (repeat)")
    @click.option("--project", help="the project to charge the server to")
    @_wait_option
    @_timeout_option
    @pass_app
    def server_create(app: App, name: str, flavor_id: str | None, cpu: int | None,
                      ram: int | None, disk: int | None, template: str | None, image: str,
                      key_name: str | None, networks: tuple[str, ...],
                      metadata: tuple[str, ...], project: str | None, wait: bool,
                      timeout: float) -> None:
        """Create a server; its admin password is printed once.

        \b
        Example:
          snf server create --name web --flavor 1 --image bf381995-... --key mykey \\
              --metadata purpose=test --wait
          snf server create --name db --cpu 2 --ram 2048 --disk 20 --template file \\
              --image "Demo Linux"
        """
        shape = (cpu, ram, disk)
        if flavor_id is None:
            if None in shape:
                raise click.UsageError("give --flavor, or --cpu, --ram and --disk")
            assert cpu is not None and ram is not None and disk is not None
            flavor_id = pick_flavor(app, cpu, ram, disk, template)
        elif any(v is not None for v in (*shape, template)):
            raise click.UsageError("give --flavor or --cpu/--ram/--disk/--template, not both")
        body: dict[str, Any] = {
            "name": name, "flavorRef": flavor_id, "imageRef": find_image(app, image),
            "networks": [{"uuid": n} for n in networks] if networks else "auto"}
        meta = pairs(metadata)
        if meta:
            body["metadata"] = meta
        if key_name:
            body["key_name"] = key_name
        if project:
            body["project"] = project
        made = compute(app, "POST", "/servers", {"server": body})["server"]
        password = made.get("adminPass")
        sid = str(made["id"])
        if not app.json:
            click.echo(f"server {sid} ({name}) created")
            if password:
                click.echo(f"admin password: {password}")
                click.echo("(shown only now: note it)", err=True)
        final = wait_for(app, sid, ("ACTIVE",), timeout) if wait else get_server(app, sid)
        if app.json:
            show(True, {**final, "adminPass": password})
        else:
            click.echo(f"status: {final.get('status')}")

    @server.command("rename")
    @click.argument("server_id")
    @click.argument("name")
    @pass_app
    def server_rename(app: App, server_id: str, name: str) -> None:
        """Rename a server.

        \b
        Example:
          snf server rename 42 web-2
        """
        compute(app, "PUT", f"/servers/{_seg(server_id)}", {"server": {"name": name}})

    @server.command("metadata")
    @click.argument("server_id")
    @click.argument("action", required=False, type=click.Choice(["set", "delete"]))
    @click.argument("items", nargs=-1)
    @pass_app
    def server_metadata(app: App, server_id: str, action: str | None,
                        items: tuple[str, ...]) -> None:
        """Show a server's metadata, set items (K=V ...) or delete keys.

        \b
        Example:
          snf server metadata 42
          snf server metadata 42 set purpose=web owner=ops
          snf server metadata 42 delete owner
        """
        path = f"/servers/{_seg(server_id)}/metadata"
        if action is not None and not items:
            raise click.UsageError(f"give the items to {action}")
        if action == "set":
            compute(app, "POST", path, {"metadata": pairs(items)})
        elif action == "delete":
            for key in items:
                compute(app, "DELETE", f"{path}/{_seg(key)}")
        if action is None:
            found = compute(app, "GET", path)["metadata"]
            if app.json:
                show(True, found)
            else:
                for key, value in sorted(found.items()):
                    click.echo(f"{key}={value}")

    @server.command("tag")
    @click.argument("server_id")
    @click.argument("action", required=False, type=click.Choice(["add", "delete"]))
    @click.argument("tag", required=False)
    @pass_app
    def server_tag(app: App, server_id: str, action: str | None, tag: str | None) -> None:
        """List a server's tags, add one or delete one.

        \b
        Example:
          snf server tag 42 add production
          snf server tag 42
        """
        path = f"/servers/{_seg(server_id)}/tags"
        if (action is None) != (tag is None):
            raise click.UsageError("give add TAG or delete TAG")
        if action == "add" and tag is not None:
            compute(app, "PUT", f"{path}/{_seg(tag)}")
        elif action == "delete" and tag is not None:
            compute(app, "DELETE", f"{path}/{_seg(tag)}")
        else:
            found = compute(app, "GET", path)["tags"]
            if app.json:
                show_json(found)
            else:
                for t in found:
                    click.echo(t)

    def simple_action(name: str, body: Mapping[str, Any], settled: tuple[str, ...],
                      doc: str) -> None:
        @server.command(name)
        @click.argument("server_id")
        @_wait_option
        @_timeout_option
        @pass_app
        def command(app: App, server_id: str, wait: bool, timeout: float) -> None:
            _action(app, server_id, body)
            if wait:
                done = wait_for(app, server_id, settled, timeout)
                if not app.json:
                    click.echo(f"status: {done.get('status')}")

        command.help = doc

    simple_action("start", {"os-start": None}, ("ACTIVE",),
                  "Start a stopped server.\n\n\b\nExample:\n  snf server start 42 --wait")
    simple_action("shutdown", {"os-stop": None}, ("SHUTOFF",),
                  "Shut a server down (SHUTOFF).\n\n\b\nExample:\n  snf server shutdown 42"
                  " --wait")
    simple_action("rescue", {"rescue": {}}, ("RESCUE",),
                  "Boot a server from a rescue image.\n\n\b\nExample:\n  snf server rescue 42")
    simple_action("unrescue", {"unrescue": None}, ("ACTIVE", "SHUTOFF"),
                  "Leave rescue mode.\n\n\b\nExample:\n  snf server unrescue 42")

    @server.command("reboot")
    @click.argument("server_id")
    @click.option("--hard", is_flag=True, help="a hard reboot (power cycle)")
    @_wait_option
    @_timeout_option
    @pass_app
    def server_reboot(app: App, server_id: str, hard: bool, wait: bool,
                      timeout: float) -> None:
        """Reboot a server.

        \b
        Example:
          snf server reboot 42 --hard --wait
        """
        _action(app, server_id, {"reboot": {"type": "HARD" if hard else "SOFT"}})
        if wait:
            done = wait_for(app, server_id, ("ACTIVE",), timeout)
            if not app.json:
                click.echo(f"status: {done.get('status')}")

    @server.command("resize")
    @click.argument("server_id")
    @click.argument("flavor_id")
    @_wait_option
    @_timeout_option
    @pass_app
    def server_resize(app: App, server_id: str, flavor_id: str, wait: bool,
                      timeout: float) -> None:
        """Give a (stopped) server another flavor.

        \b
        Example:
          snf server shutdown 42 --wait && snf server resize 42 2 --wait
        """
        _action(app, server_id, {"resize": {"flavorRef": flavor_id}})
        if wait:
            done = wait_for(app, server_id, None, timeout)
            if not app.json:
                click.echo(f"status: {done.get('status')}, flavor: {_flavor_name(done)}")

    @server.command("firewall")
    @click.argument("server_id")
    @click.argument("profile", type=click.Choice(FIREWALL_PROFILES, case_sensitive=False))
    @click.option("--nic", help="the port id of the interface (see `snf port list`;"
                                " default: the server's only one)")
    @_wait_option
    @_timeout_option
    @pass_app
    def server_firewall(app: App, server_id: str, profile: str, nic: str | None,
                        wait: bool, timeout: float) -> None:
        """Set the firewall profile of a server's network interface:
        ENABLED, DISABLED or PROTECTED.

        \b
        Example:
          snf server firewall 42 PROTECTED
          snf server firewall 42 ENABLED --nic 7 --wait
        """
        profile = profile.upper()
        if nic is None:
            found = compute(app, "GET", f"/servers/{_seg(server_id)}/os-interface")
            ids = [str(a["port_id"]) for a in (found or {}).get("interfaceAttachments") or []
                   if a.get("port_id")]
            if not ids:
                raise Failed(f"server {server_id} has no network interface", 5)
            if len(ids) > 1:
                fail(f"server {server_id} has {len(ids)} interfaces ({', '.join(ids)});"
                     " choose one with --nic")
            nic = ids[0]
        _action(app, server_id, {"firewallProfile": {"profile": profile, "nic": nic}})
        done = wait_for(app, server_id, None, timeout) if wait else None
        if app.json:
            show(True, {"id": server_id, "nic": nic, "firewallProfile": profile})
        else:
            click.echo(f"server {server_id}, interface {nic}: firewall {profile}")
            if done is not None:
                click.echo(f"status: {done.get('status')}")

    @server.command("delete")
    @click.argument("server_id")
    @_wait_option
    @_timeout_option
    @pass_app
    def server_delete(app: App, server_id: str, wait: bool, timeout: float) -> None:
        """Delete a server (its disks go with it).

        \b
        Example:
          snf server delete 42 --wait
        """
        compute(app, "DELETE", f"/servers/{_seg(server_id)}")
        if wait:
            wait_for(app, server_id, timeout=timeout, gone=True)

    @server.command("console")
    @click.argument("server_id")
    @pass_app
    def server_console(app: App, server_id: str) -> None:
        """Show how to reach a running server's VNC console.

        \b
        Example:
          snf server console 42
        """
        found = _action(app, server_id, {"console": {"type": "vnc"}})["console"]
        show(app.json, found)

    @server.command("wait")
    @click.argument("server_id")
    @click.option("--status", "status", default="ACTIVE", show_default=True,
                  help="the status to wait for (ACTIVE, SHUTOFF, ERROR ...)")
    @_timeout_option
    @pass_app
    def server_wait(app: App, server_id: str, status: str, timeout: float) -> None:
        """Wait until a server has a status (exit 1 on ERROR or timeout).

        \b
        Example:
          snf server wait 42 --status SHUTOFF --timeout 120
        """
        done = wait_for(app, server_id, (status.upper(),), timeout)
        if not app.json:
            click.echo(f"status: {done.get('status')}")


# -- flavors ------------------------------------------------------------------------------

FLAVOR_COLUMNS = (Column("ID", "id"), Column("Name", "name"), Column("vCPUs", "vcpus"),
                  Column("RAM (MiB)", "ram"), Column("Disk (GiB)", "disk"),
                  Column("Template", flavor_template))


def register_flavors(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    def flavor() -> None:
        """The servers' hardware shapes.

        \b
        Example:
          snf flavor list
        """

    @flavor.command("list")
    @pass_app
    def flavor_list(app: App) -> None:
        """List the flavors you may create servers with.

        \b
        Example:
          snf flavor list
          snf -o json flavor list
        """
        show(app.json, _flavors(app), FLAVOR_COLUMNS, empty="no flavors")

    @flavor.command("info")
    @click.argument("flavor_id")
    @pass_app
    def flavor_info(app: App, flavor_id: str) -> None:
        """Show a flavor.

        \b
        Example:
          snf flavor info 1
        """
        found = compute(app, "GET", f"/flavors/{_seg(flavor_id)}")["flavor"]
        if not app.json:
            found = {k: v for k, v in found.items() if k != "links"}
            found.setdefault("template", flavor_template(found))
        show(app.json, found)


# -- key pairs ------------------------------------------------------------------------------

KEYPAIR_COLUMNS = (Column("Name", "name"), Column("Fingerprint", "fingerprint"),
                   Column("Type", "type"))


def _write_private(path: Path, key: str) -> None:
    """Write a private key to a new file with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, key.encode("utf-8"))
    finally:
        os.close(fd)


def register_keypairs(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    def keypair() -> None:
        """SSH key pairs put into new servers.

        \b
        Example:
          snf keypair generate mykey --out ~/.ssh/mykey
        """

    @keypair.command("list")
    @pass_app
    def keypair_list(app: App) -> None:
        """List your key pairs.

        \b
        Example:
          snf keypair list
        """
        found = [k["keypair"] for k in compute(app, "GET", "/os-keypairs")["keypairs"]]
        show(app.json, found, KEYPAIR_COLUMNS, empty="no key pairs")

    @keypair.command("info")
    @click.argument("name")
    @pass_app
    def keypair_info(app: App, name: str) -> None:
        """Show a key pair (its public key).

        \b
        Example:
          snf keypair info mykey
        """
        show(app.json, compute(app, "GET", f"/os-keypairs/{_seg(name)}")["keypair"])

    @keypair.command("upload")
    @click.argument("name")
    @click.argument("public_key", type=click.Path(exists=True, dir_okay=False,
                                                  path_type=Path))
    @pass_app
    def keypair_upload(app: App, name: str, public_key: Path) -> None:
        """Upload an SSH public key as key pair NAME.

        \b
        Example:
          snf keypair upload laptop ~/.ssh/id_ed25519.pub
        """
        key = public_key.read_text().strip()
        made = compute(app, "POST", "/os-keypairs",
                       {"keypair": {"name": name, "public_key": key}})["keypair"]
        if app.json:
            show(True, made)
        else:
            click.echo(f"{made['name']} {made.get('fingerprint', '')}")

    @keypair.command("generate")
    @click.argument("name")
    @click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
                  help="write the private key to this new file (mode 0600)")
    @pass_app
    def keypair_generate(app: App, name: str, out: Path | None) -> None:
        """Have the cloud make key pair NAME; its private key is given once.

        \b
        Example:
          snf keypair generate mykey --out ~/.ssh/mykey
        """
        if out is not None and out.exists():
            fail(f"{out}: exists; the private key is written to a new file only")
        made = compute(app, "POST", "/os-keypairs", {"keypair": {"name": name}})["keypair"]
        private = made.get("private_key") or ""
        if out is not None:
            _write_private(out, private)
            if app.json:
                show(True, {k: v for k, v in made.items() if k != "private_key"})
            else:
                click.echo(f"{made['name']} {made.get('fingerprint', '')}")
                click.echo(f"private key written to {out}")
            return
        if app.json:
            show(True, made)
        else:
            click.echo(private, nl=not private.endswith("\n"))
            click.echo("(the private key is shown only now: keep it)", err=True)

    @keypair.command("delete")
    @click.argument("name")
    @pass_app
    def keypair_delete(app: App, name: str) -> None:
        """Delete a key pair (servers made with it keep the key).

        \b
        Example:
          snf keypair delete mykey
        """
        compute(app, "DELETE", f"/os-keypairs/{_seg(name)}")


# -- images ---------------------------------------------------------------------------------

PLANKTON = "/v1.0/images/"
IMAGE_COLUMNS = (Column("ID", "id"), Column("Name", "name"), Column("Status", "status"),
                 Column("Format", "disk_format"), Column("Size", "size"),
                 Column("Visibility", "visibility"))
_GLANCE_CORE = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "owner", "size",
    "virtual_size", "checksum", "os_hash_algo", "os_hash_value", "disk_format",
    "container_format", "min_disk", "min_ram", "tags", "created_at", "updated_at", "file",
    "self", "schema", "locations", "direct_url"})


def list_images(app: App, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every image Glance lists for the caller (all pages)."""
    out: list[dict[str, Any]] = []
    query: dict[str, str] | None = {"limit": "200", **(params or {})}
    path = "/v2/images"
    for _ in range(1000):
        page = app.cloud.call("image", "GET", path, params=query)
        out.extend(page.get("images") or [])
        nxt = page.get("next")
        if not nxt:
            break
        path, query = nxt, None
    return out


def _image_info(image: Mapping[str, Any]) -> dict[str, Any]:
    """A Glance image for a table: core fields, then ``properties``."""
    shown = {k: v for k, v in image.items() if k in _GLANCE_CORE
             and k not in ("file", "self", "schema")}
    props = {k: v for k, v in image.items() if k not in _GLANCE_CORE}
    if props:
        shown["properties"] = props
    return shown


def _meta_headers(name: str | None, properties: Mapping[str, str],
                  public: bool | None = None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if name is not None:
        headers["X-Image-Meta-Name"] = quote(name, safe="")
    if public is not None:
        headers["X-Image-Meta-Is-Public"] = "true" if public else "false"
    for key, value in properties.items():
        headers[f"X-Image-Meta-Property-{quote(key, safe='')}"] = quote(value, safe="")
    return headers


def _show_image(app: App, image_id: str) -> None:
    found = app.cloud.call("image", "GET", f"/v2/images/{_seg(image_id)}")
    show(app.json, found if app.json else _image_info(found))


def register_images(cli: click.Group) -> None:
    @cli.group(cls=SnfGroup)
    def image() -> None:
        """Images servers boot from: list, register files, share.

        \b
        Example:
          snf image register "My Debian" ./debian.diskdump --property OS=debian
        """

    @image.command("list")
    @click.option("--public", "which", flag_value="public", help="only public images")
    @click.option("--mine", "which", flag_value="mine", help="only your images")
    @click.option("--shared", "which", flag_value="shared",
                  help="only others' images shared with you")
    @pass_app
    def image_list(app: App, which: str | None) -> None:
        """List the images you may use.

        \b
        Example:
          snf image list --mine
        """
        me = app.settings.user
        if which == "public":
            found = list_images(app, {"visibility": "public"})
        elif which == "mine":
            found = list_images(app, {"owner": me})
        elif which == "shared":
            found = [i for i in list_images(app, {"visibility": "shared"})
                     if i.get("owner") != me]
        else:
            found = list_images(app)
        show(app.json, found, IMAGE_COLUMNS, empty="no images")

    @image.command("info")
    @click.argument("image_id")
    @pass_app
    def image_info(app: App, image_id: str) -> None:
        """Show an image and its properties.

        \b
        Example:
          snf image info bf381995-f5ce-4a6f-8022-fbc3a74b5d02
        """
        _show_image(app, image_id)

    @image.command("register")
    @click.argument("name")
    @click.argument("source")
    @click.option("--property", "-p", "properties", multiple=True, metavar="K=V",
                  help="an image property (OS, OSFAMILY, ROOT_PARTITION, users ...; repeat)")
    @click.option("--public", is_flag=True, help="everyone may use it")
    @click.option("--disk-format", default="diskdump", show_default=True,
                  type=click.Choice(["diskdump", "extdump", "ntfsdump", "raw", "qcow2",
                                     "vmdk", "vdi", "vhd", "iso"]))
    @click.option("--to", "to", metavar="CONTAINER/PATH",
                  help="where a local file is uploaded (default: images/<its name>)")
    @pass_app
    def image_register(app: App, name: str, source: str, properties: tuple[str, ...],
                       public: bool, disk_format: str, to: str | None) -> None:
        """Register SOURCE as image NAME: a local file (uploaded first, only
        the blocks the store lacks) or a file of your storage
        (container/path or pithos://account/container/path).

        \b
        Example:
          snf image register "My Debian" ./debian.diskdump -p OS=debian -p OSFAMILY=linux
          snf image register "Old" images/old.diskdump --public
        """
        props = pairs(properties)
        local = Path(source)
        if source.startswith("pithos://"):
            location = source
        elif local.is_file():
            client = app.client
            container, target = app.remote(to or f"images/{local.resolve().name}")
            if not target or target.endswith("/"):
                target = f"{target}{local.resolve().name}"
            client.create_container(container)
            result = transfer.upload_file(client, local, container, target,
                                          progress=app.progress())
            if not app.json:
                click.echo(f"uploaded {container}/{target} ({result.size} bytes;"
                           f" {result.uploaded_blocks} of {result.blocks} blocks"
                           " transferred)", err=True)
            location = f"pithos://{app.settings.user}/{container}/{target}"
        else:
            if to is not None:
                fail("--to is for a local file")
            container, target = app.remote(source)
            if not target:
                fail(f"{source}: neither a local file nor container/path")
            location = f"pithos://{app.settings.user}/{container}/{target}"
        headers = _meta_headers(name, props, public)
        headers.update({"X-Image-Meta-Location": location,
                        "X-Image-Meta-Disk-Format": disk_format,
                        "X-Image-Meta-Container-Format": "bare"})
        resp = app.cloud.request("image", "POST", PLANKTON, headers=headers)
        image_id = resp.headers.get("X-Image-Meta-Id", "")
        if not app.json:
            click.echo(f"registered {name}: {image_id}")
        else:
            _show_image(app, image_id)

    @image.command("modify")
    @click.argument("image_id")
    @click.option("--name", help="a new name")
    @click.option("--property", "-p", "properties", multiple=True, metavar="K=V",
                  help="set a property (K= removes it; repeat)")
    @click.option("--public/--private", "public", default=None, help="who may use it")
    @pass_app
    def image_modify(app: App, image_id: str, name: str | None, properties: tuple[str, ...],
                     public: bool | None) -> None:
        """Rename an image, change its properties or its visibility.

        \b
        Example:
          snf image modify IMAGE_ID --name "Debian 12" -p OS=debian -p obsolete=
        """
        headers = _meta_headers(name, pairs(properties), public)
        if not headers:
            raise click.UsageError("give --name, --property or --public/--private")
        app.cloud.request("image", "PUT", PLANKTON + _seg(image_id), headers=headers)

    @image.command("members")
    @click.argument("image_id")
    @click.argument("action", required=False, type=click.Choice(["add", "remove"]))
    @click.argument("member", required=False)
    @pass_app
    def image_members(app: App, image_id: str, action: str | None,
                      member: str | None) -> None:
        """List who an image is shared with, add or remove a user (uuid).

        \b
        Example:
          snf image members IMAGE_ID add 0f1c...-uuid
          snf image members IMAGE_ID
        """
        path = f"{PLANKTON}{_seg(image_id)}/members"
        if (action is None) != (member is None):
            raise click.UsageError("give add UUID or remove UUID")
        if action is not None and member is not None:
            app.cloud.call("image", "PUT" if action == "add" else "DELETE",
                           f"{path}/{_seg(member)}")
            return
        found = app.cloud.call("image", "GET", path)["members"]
        if app.json:
            show(True, found)
        else:
            for m in found:
                click.echo(m["member_id"])

    @image.command("unregister")
    @click.argument("image_id")
    @pass_app
    def image_unregister(app: App, image_id: str) -> None:
        """Stop a file being an image (the file stays in your storage).

        \b
        Example:
          snf image unregister IMAGE_ID
        """
        app.cloud.call("image", "DELETE", PLANKTON + _seg(image_id))


def register(cli: click.Group) -> None:
    """Add the server, flavor, keypair and image groups to ``snf``."""
    register_servers(cli)
    register_flavors(cli)
    register_keypairs(cli)
    register_images(cli)


__all__ = ["MICROVERSION", "compute", "list_images", "register", "wait_for"]

