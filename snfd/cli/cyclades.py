"""``snf-manage`` commands of the compute service: Ganeti backends,
flavors, system images and reconciliation of servers with Ganeti.

They run the daemon's own code (store, RAPI client, image registry,
reconciler) under a reactor of the command's own, with a small pool on the
cluster database.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import attrs

from snfd.cli import run_with_reactor, yes_no
from snfd.cyclades import store

Command = Callable[[argparse.Namespace, "Context"], Coroutine[Any, Any, int]]
COMMANDS: dict[str, Command] = {}


class CommandFailed(Exception):
    """Ends the command with status 1 and this one-line message."""


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn
    return register


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def add_parsers(sub: Any) -> None:
    """Declare the compute commands on ``snf-manage``'s subparsers."""
    def backend_settings(p: argparse.ArgumentParser, adding: bool) -> None:
        p.add_argument("--url", required=adding, help="RAPI URL, https://host:5080")
        p.add_argument("--username", help="RAPI user")
        p.add_argument("--password", help="RAPI password")
        p.add_argument("--password-file", type=Path, help="read the RAPI password here")
        p.add_argument("--certificate", type=Path,
                       help="PEM file of the RAPI certificate to trust (rapi.pem)")
        p.add_argument("--hypervisor", help="kvm, xen-pvm, fake, ...")
        p.add_argument("--disk-templates", type=_names,
                       help="comma-separated (default: the cluster's enabled ones)")
        p.add_argument("--public", type=yes_no, help="any project may use it (yes/no)")
        p.add_argument("--project", action="append", dest="projects",
                       help="a project it is assigned to (repeat)")
        p.add_argument("--events", choices=("watch", "poll"),
                       help="watch: a ganeti-events plugin on its master publishes job"
                            " events; poll: the leader polls its jobs over RAPI")
        p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("backend-add", help="add a Ganeti cluster as a backend")
    p.add_argument("clustername")
    backend_settings(p, True)
    p.add_argument("--no-check", action="store_true",
                   help="do not contact the cluster (templates and statistics stay empty)")
    p = sub.add_parser("backend-modify", help="change a backend")
    p.add_argument("backend", help="id or cluster name")
    backend_settings(p, False)
    p.add_argument("--drained", type=yes_no, help="no new servers (yes/no)")
    p.add_argument("--offline", type=yes_no, help="unreachable: no calls at all (yes/no)")
    p.add_argument("--refresh", action="store_true", help="refresh statistics from RAPI")
    p = sub.add_parser("backend-list", help="list backends and their statistics")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("backend-remove", help="remove a backend that holds no server")
    p.add_argument("backend", help="id or cluster name")

    p = sub.add_parser("flavor-create",
                       help="create flavors (every combination of the values given)")
    p.add_argument("--cpu", type=int, nargs="+", required=True)
    p.add_argument("--ram", type=int, nargs="+", required=True, help="MiB")
    p.add_argument("--disk", type=int, nargs="+", required=True, help="GiB")
    p.add_argument("--disk-template", nargs="+", required=True)
    p.add_argument("--private", action="store_true", help="only for --project projects")
    p.add_argument("--project", action="append", default=[], dest="projects")
    p.add_argument("--no-create", action="store_true",
                   help="listed, but new servers may not use it")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("flavor-list", help="list flavors")
    p.add_argument("--deleted", action="store_true", help="include deleted ones")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("flavor-modify", help="change a flavor")
    p.add_argument("flavor", type=int)
    p.add_argument("--allow-create", type=yes_no)
    p.add_argument("--public", type=yes_no)
    p.add_argument("--deleted", type=yes_no)

    p = sub.add_parser("image-register",
                       help="store a local disk image in the object store and register it")
    p.add_argument("file", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--owner", help="account uuid (default: the system images owner)")
    p.add_argument("--container", default="images")
    p.add_argument("--disk-format", default="diskdump")
    p.add_argument("--private", action="store_true", help="not public")
    p.add_argument("--property", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("server-inspect",
                       help="show a server as the database and its Ganeti cluster see it")
    p.add_argument("server", type=int, help="server id")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("reconcile-servers",
                       help="compare servers with Ganeti and fix what differs")
    p.add_argument("--backend", help="id or cluster name (default: all)")
    p.add_argument("--settle", type=float, default=30.0,
                   help="seconds after a job ended during which its server is left to"
                        " the event dispatcher (default 30)")
    for fix in ("stale", "orphans", "unsynced", "pending-tasks", "all"):
        p.add_argument(f"--fix-{fix}", action="append_const", dest="fix",
                       const=fix.replace("-", "_"))
    p.add_argument("--json", action="store_true", help="print JSON")


@attrs.define
class Context:
    """What a command works with: the compute service built by the
    daemon's own factory (not started), and its shared resources."""

    config: Any
    db: Any
    reactor: Any
    http: Any
    service: Any


def run(args: argparse.Namespace, config: Any, installed: dict[str, Any], dsn: str) -> int:
    """Run the compute command ``args.command`` against ``dsn``."""
    async def work(reactor: Any) -> int:
        from snfd.tap import assemble

        built = assemble(config, installed, reactor, dsn, ("cyclades",))
        node = built.node
        try:
            return await COMMANDS[args.command](
                args, Context(config, node.db, reactor, node.http,
                              built.services["cyclades"]))
        finally:
            await built.close()

    return run_with_reactor(work)


async def _backend(ctx: Context, ref: str) -> Any:
    if ref.isdigit():
        found = await ctx.db.run("cyclades.backend", store.backend_txn, int(ref))
    else:
        found = await ctx.db.run("cyclades.backend", store.backend_txn, clustername=ref)
    if found is None:
        raise CommandFailed(f"no backend {ref!r}")
    return found


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.url:
        out["rapi_url"] = args.url
    if args.username is not None:
        out["username"] = args.username
    if args.password_file is not None:
        out["password"] = args.password_file.read_text().strip()
    elif args.password is not None:
        out["password"] = args.password
    if args.certificate is not None:
        out["certificate"] = args.certificate.read_text()
    for name in ("hypervisor", "disk_templates", "public", "projects", "events"):
        value = getattr(args, name)
        if value is not None:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


async def _check(ctx: Context, backend: Any, keep_templates: bool) -> Any:
    """Ask the cluster for its templates and statistics; store them."""
    from snfd.cyclades.allocator import rapi_target, refresh_stats
    from snfd.ganeti.rapi import RapiError, RapiUnavailable

    pool = ctx.service.rapi
    rapi = pool.client(rapi_target(backend, 30.0))
    try:
        info = await rapi.info()
    except (RapiUnavailable, RapiError) as e:
        raise CommandFailed(f"{e} (--no-check skips this)") from None
    found: dict[str, Any] = {}
    if not keep_templates:
        found["disk_templates"] = tuple(info.get("enabled_disk_templates") or ())
    hypervisors = info.get("enabled_hypervisors") or []
    if hypervisors and backend.hypervisor == "kvm" and "kvm" not in hypervisors:
        found["hypervisor"] = hypervisors[0]
    if found:
        backend = await ctx.db.run("cyclades.update_backend", store.update_backend_txn,
                                   backend.id, **found)
    await refresh_stats(ctx.db, pool, backend, 0.0)
    return await ctx.db.run("cyclades.backend", store.backend_txn, backend.id)


def _backend_json(b: Any) -> dict[str, Any]:
    return {"id": b.id, "clustername": b.clustername, "rapi_url": b.rapi_url,
            "username": b.username, "offline": b.offline, "drained": b.drained,
            "public": b.public, "projects": list(b.projects),
            "disk_templates": list(b.disk_templates), "hypervisor": b.hypervisor,
            "events": b.events, "mfree": b.mfree, "mtotal": b.mtotal, "dfree": b.dfree,
            "dtotal": b.dtotal, "pinst_cnt": b.pinst_cnt, "ctotal": b.ctotal,
            "certificate": bool(b.certificate)}


def _print_backend(args: argparse.Namespace, b: Any) -> None:
    if args.json:
        print(json.dumps(_backend_json(b), indent=2))
    else:
        print(f"backend {b.id}: {b.clustername} {b.rapi_url}"
              f" templates={','.join(b.disk_templates) or '-'} mfree={b.mfree}MiB"
              f" dfree={b.dfree}MiB instances={b.pinst_cnt}")


@command("backend-add")
async def backend_add(args: argparse.Namespace, ctx: Context) -> int:
    settings = _settings(args)
    url = settings.pop("rapi_url")
    if not url.startswith(("https://", "http://")):
        raise CommandFailed(f"--url: not an http(s) URL: {url!r}")
    existing = await ctx.db.run("cyclades.backend", store.backend_txn,
                                clustername=args.clustername)
    if existing is not None:
        raise CommandFailed(f"backend {args.clustername!r} exists (id {existing.id})")
    backend = await ctx.db.run("cyclades.add_backend", store.add_backend_txn,
                               args.clustername, url, **settings)
    if not args.no_check:
        try:
            backend = await _check(ctx, backend, "disk_templates" in settings)
        except Exception:
            await ctx.db.run("cyclades.remove_backend", store.remove_backend_txn, backend.id)
            raise
    _print_backend(args, backend)
    return 0


@command("backend-modify")
async def backend_modify(args: argparse.Namespace, ctx: Context) -> int:
    backend = await _backend(ctx, args.backend)
    settings = _settings(args)
    for name in ("drained", "offline"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    backend = await ctx.db.run("cyclades.update_backend", store.update_backend_txn,
                               backend.id, **settings)
    if args.refresh:
        backend = await _check(ctx, backend, True)
    _print_backend(args, backend)
    return 0


@command("backend-list")
async def backend_list(args: argparse.Namespace, ctx: Context) -> int:
    backends = await ctx.db.run("cyclades.backends", store.backends_txn)
    if args.json:
        print(json.dumps([_backend_json(b) for b in backends], indent=2))
    for b in [] if args.json else backends:
        flags = [f for f in ("offline", "drained") if getattr(b, f)]
        print(f"{b.id:>3} {b.clustername:<28} {b.rapi_url:<30} {b.events:<5}"
              f" instances={b.pinst_cnt} mfree={b.mfree} dfree={b.dfree}"
              f" {' '.join(flags)}")
    return 0


@command("backend-remove")
async def backend_remove(args: argparse.Namespace, ctx: Context) -> int:
    backend = await _backend(ctx, args.backend)
    live = await ctx.db.run("cyclades.remove_backend", store.remove_backend_txn, backend.id)
    if live:
        raise CommandFailed(f"backend {backend.clustername} still holds {live} servers;"
                            " delete them or mark the backend drained")
    print(f"removed backend {backend.id} ({backend.clustername})")
    return 0


def _flavor_json(f: Any) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "cpu": f.cpu, "ram": f.ram, "disk": f.disk,
            "disk_template": f.disk_template, "allow_create": f.allow_create,
            "public": f.public, "access": list(f.access), "deleted": f.deleted}


@command("flavor-create")
async def flavor_create(args: argparse.Namespace, ctx: Context) -> int:
    made = []
    for cpu in args.cpu:
        for ram in args.ram:
            for disk in args.disk:
                for template in args.disk_template:
                    if cpu <= 0 or ram <= 0 or disk < 0:
                        raise CommandFailed("--cpu and --ram must be positive, --disk >= 0")
                    flavor, _ = await ctx.db.run(
                        "cyclades.create_flavor", store.create_flavor_txn, cpu, ram, disk,
                        template, allow_create=not args.no_create, public=not args.private,
                        access=args.projects)
                    made.append(flavor)
    if args.json:
        print(json.dumps([_flavor_json(f) for f in made], indent=2))
    for f in [] if args.json else made:
        print(f"flavor {f.id}: {f.name}")
    return 0


@command("flavor-list")
async def flavor_list(args: argparse.Namespace, ctx: Context) -> int:
    flavors = await ctx.db.run("cyclades.flavors", store.flavors_txn, args.deleted)
    if args.json:
        print(json.dumps([_flavor_json(f) for f in flavors], indent=2))
    for f in [] if args.json else flavors:
        flags = [n for n, on in (("no-create", not f.allow_create), ("private", not f.public),
                                 ("deleted", f.deleted)) if on]
        print(f"{f.id:>3} {f.name:<24} {' '.join(flags)}")
    return 0


@command("flavor-modify")
async def flavor_modify(args: argparse.Namespace, ctx: Context) -> int:
    changes = {k: getattr(args, k) for k in ("allow_create", "public", "deleted")
               if getattr(args, k) is not None}
    flavor = await ctx.db.run("cyclades.update_flavor", store.update_flavor_txn, args.flavor,
                              **changes)
    if flavor is None:
        raise CommandFailed(f"no flavor {args.flavor}")
    print(f"flavor {flavor.id}: {flavor.name}")
    return 0


@command("image-register")
async def image_register(args: argparse.Namespace, ctx: Context) -> int:
    if not args.file.is_file():
        raise CommandFailed(f"{args.file}: no such file")
    properties = {}
    for item in args.property:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandFailed(f"--property {item!r}: expected KEY=VALUE")
        properties[key] = value
    registry = ctx.service.images
    owner = args.owner or registry.system_owner
    image = await registry.register_file(owner, args.file, args.container, {
        "name": args.name, "disk_format": args.disk_format, "is_public": not args.private,
        "properties": properties})
    if args.json:
        print(json.dumps({"id": image.id, "name": image.name, "size": image.size,
                          "location": image.location, "is_public": image.is_public}))
    else:
        print(f"image {image.id}: {image.name} ({image.size} bytes) at {image.location}")
    return 0


@command("reconcile-servers")
async def reconcile_servers(args: argparse.Namespace, ctx: Context) -> int:
    backend_ids = None
    if args.backend:
        backend_ids = [(await _backend(ctx, args.backend)).id]
    reconciler = ctx.service.reconciler
    # Jobs that ended a moment ago may still be on their way through the
    # bus: --settle says how long to leave them to the dispatcher.
    reconciler.settle = args.settle
    report = await reconciler.reconcile(backend_ids, fix=frozenset(args.fix or ()))
    await ctx.service.charger.drain()
    if args.json:
        print(json.dumps(report.as_json(), indent=2, default=str))
    else:
        print(report)
    return 0


@command("server-inspect")
async def server_inspect(args: argparse.Namespace, ctx: Context) -> int:
    """Synnefo's ``server-inspect``: the server's row, its ports with their
    security groups, and its Ganeti instance (state, NICs, tags)."""
    from snfd.cyclades.allocator import rapi_target
    from snfd.cyclades.networks import store as net_store
    from snfd.ganeti.rapi import RapiError, RapiUnavailable

    server = await ctx.db.run("cyclades.server", store.server_txn, args.server)
    if server is None:
        raise CommandFailed(f"no server {args.server}")
    ports = await ctx.db.run("cyclades.ports", lambda txn: net_store.ports_txn(
        txn, device_ids=[server.id]))
    backend = None if server.backend_id is None else await ctx.db.run(
        "cyclades.backend", store.backend_txn, server.backend_id)
    ganeti: dict[str, Any] | None = None
    if backend is not None:
        try:
            ganeti = await ctx.service.rapi.client(rapi_target(backend, 30.0)).instance(
                server.instance_name)
        except (RapiUnavailable, RapiError) as e:
            ganeti = {"error": str(e)}
    out = {"id": server.id, "name": server.name, "userid": server.userid,
           "project": server.project, "operstate": server.operstate, "task": server.task,
           "deleted": server.deleted, "instance": server.instance_name,
           "backend": None if backend is None else backend.clustername,
           "ports": [{"id": p.id, "nic": p.nic_name, "network_id": p.network_id,
                      "state": p.state, "mac": p.mac, "ips": [ip.address for ip in p.ips],
                      "security_groups": list(p.security_groups),
                      "port_security": p.port_security} for p in ports],
           "ganeti": None if ganeti is None else {
               k: ganeti.get(k) for k in ("status", "oper_state", "admin_state", "pnode",
                                          "snodes", "os", "nic.names", "nic.macs",
                                          "nic.ips", "tags", "error") if k in ganeti}}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    for key in ("id", "name", "userid", "project", "operstate", "task", "deleted",
                "instance", "backend"):
        print(f"{key:>10}: {out[key]}")
    for port in out["ports"]:
        print(f"      port: {port}")
    for key, value in (out["ganeti"] or {}).items():
        print(f"{'ganeti ' + key:>18}: {value}")
    return 0
