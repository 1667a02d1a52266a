"""``snf-manage`` commands of the network service: public and
administrators' networks, subnets, and the consistency check of the pools
(``reconcile-pools``).

They act as an administrator through the compute service's ``Networks``
(built by the daemon's own factory, under a reactor of the command's own);
``reconcile-pools`` reads the pools through the network store and judges
them with ``pool_problems`` (pure, no I/O).
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import attrs

from snfd import errors
from snfd.cli import run_with_reactor, yes_no
from snfd.cli.cyclades import CommandFailed, Context
from snfd.cyclades.networks import pools, store
from snfd.cyclades.networks.model import FLAVORS, IP, Network, Port, Subnet

Command = Callable[[argparse.Namespace, Context], Coroutine[Any, Any, int]]
COMMANDS: dict[str, Command] = {}

#: The user the commands act as: nobody in particular, with an
#: administrator's rights (a public network has no owner).
OPERATOR = ""


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn
    return register


def _pool_range(text: str) -> tuple[str, str]:
    """An argparse type: ``START,END``."""
    start, sep, end = text.partition(",")
    if not sep or not start.strip() or not end.strip():
        raise argparse.ArgumentTypeError(f"expected START,END, got {text!r}")
    return start.strip(), end.strip()


def add_parsers(sub: Any) -> None:
    """Declare the network commands on ``snf-manage``'s subparsers."""
    p = sub.add_parser(
        "network-create", help="create a network (public, or a user's), with its subnets",
        description="Create a network as an administrator and print its id.  A public"
        " network is for every backend; like every network, it is created on a Ganeti"
        " backend (network add, connect to every node group) when the first server"
        " there is connected to it.  No quota is charged.")
    p.add_argument("--name", required=True)
    p.add_argument("--flavor", required=True, choices=sorted(FLAVORS),
                   help="MAC_FILTERED and PHYSICAL_VLAN take a MAC prefix or a bridge"
                        " from their pool")
    p.add_argument("--public", action="store_true",
                   help="every user sees it and may connect servers (router:external)")
    p.add_argument("--floating-ip-pool", action="store_true",
                   help="users allocate floating IPs from it (needs --public and --subnet)")
    p.add_argument("--link", help="the bridge or routing table (default: the flavor's)")
    p.add_argument("--mac-prefix", help="5 hex digits, aa:00:0 style (default: the"
                                        " flavor's)")
    p.add_argument("--subnet", metavar="CIDR", help="its IPv4 subnet")
    p.add_argument("--gateway", help="the IPv4 subnet's gateway (default: its first host)")
    p.add_argument("--no-gateway", action="store_true", help="the IPv4 subnet has none")
    p.add_argument("--allocation-pool", type=_pool_range, action="append",
                   metavar="START,END",
                   help="an IPv4 range addresses are taken from (repeat; default: every"
                        " host but the gateway)")
    p.add_argument("--subnet6", metavar="CIDR", help="its IPv6 subnet (a /64: SLAAC)")
    p.add_argument("--gateway6", help="the IPv6 subnet's gateway")
    p.add_argument("--owner", metavar="UUID", help="the user a private network is for")
    p.add_argument("--project", help="its project (default: the owner's base project)")
    p.add_argument("--description", default="")

    p = sub.add_parser("network-list", help="list networks")
    p.add_argument("--public", action="store_true", help="only public networks")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("network-modify", help="change a network")
    p.add_argument("network", type=int)
    p.add_argument("--name")
    p.add_argument("--floating-ip-pool", type=yes_no, help="yes/no (public networks only)")
    p.add_argument("--shared", type=yes_no, help="yes/no: every user may use it")

    p = sub.add_parser("network-remove",
                       help="remove a network without ports (and from its backends)")
    p.add_argument("network", type=int)

    p = sub.add_parser("subnet-create", help="add a subnet to a network")
    p.add_argument("--network", type=int, required=True)
    p.add_argument("--cidr", required=True, help="IPv4 or IPv6 network, e.g. 10.0.0.0/24")
    gateway = p.add_mutually_exclusive_group()
    gateway.add_argument("--gateway", help="default: the first host")
    gateway.add_argument("--no-gateway", action="store_true")
    p.add_argument("--allocation-pool", type=_pool_range, action="append",
                   metavar="START,END", help="repeat; default: every host but the gateway")
    p.add_argument("--name", default="")
    p.add_argument("--dhcp", type=yes_no, default=True, help="yes/no (default yes)")

    p = sub.add_parser("subnet-list", help="list subnets")
    p.add_argument("--network", type=int, help="only this network's")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "reconcile-pools", help="check MAC-prefix, bridge and address pools",
        description="Check every address against its subnet (inside the CIDR and the"
        " allocation pools, not the gateway, not twice on a network), every port's MAC"
        " against its network's prefix (a MAC a user gave may lie outside it: that is"
        " a warning), MAC-prefix and bridge indexes against their pools.  One line per"
        " problem, then a summary; exit status 1 while problems (not warnings) remain.")
    p.add_argument("--fix", action="store_true",
                   help="remove fixed addresses that have no port (floating ones stay)")


def run(args: argparse.Namespace, config: Any, installed: dict[str, Any], dsn: str) -> int:
    """Run the network command ``args.command`` against ``dsn``."""
    async def work(reactor: Any) -> int:
        from snfd.tap import assemble

        built = assemble(config, installed, reactor, dsn, ("cyclades",))
        node = built.node
        svc = built.services["cyclades"]
        try:
            return await COMMANDS[args.command](
                args, Context(config, node.db, reactor, node.http, svc))
        except errors.Fault as e:
            raise CommandFailed(e.message) from None
        finally:
            await svc.charger.drain()
            await built.close()

    return run_with_reactor(work)


# -- networks -------------------------------------------------------------------------


def _subnet_body(cidr: str, version: int, gateway: str | None, no_gateway: bool,
                 ranges: Sequence[tuple[str, str]] | None, name: str = "",
                 dhcp: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"cidr": cidr, "ip_version": version, "name": name,
                            "enable_dhcp": dhcp}
    if no_gateway:
        body["gateway_ip"] = None
    elif gateway is not None:
        body["gateway_ip"] = gateway
    if ranges:
        body["allocation_pools"] = [{"start": a, "end": b} for a, b in ranges]
    return body


def _version(cidr: str, option: str) -> int:
    try:
        return ipaddress.ip_network(cidr, strict=False).version
    except ValueError:
        raise CommandFailed(f"{option}: not a network: {cidr!r}") from None


def _network_json(n: Network, subnets: Sequence[Subnet]) -> dict[str, Any]:
    return {"id": n.id, "name": n.name, "flavor": n.flavor, "mode": n.mode, "link": n.link,
            "mac_prefix": n.mac_prefix, "public": n.public, "shared": n.shared,
            "external": n.external, "floating_ip_pool": n.floating_ip_pool,
            "owner": n.userid, "project": n.project, "state": n.state,
            "subnets": [{"id": s.id, "cidr": s.cidr} for s in subnets]}


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@command("network-create")
async def network_create(args: argparse.Namespace, ctx: Context) -> int:
    if args.public and args.owner:
        raise CommandFailed("a public network has no --owner")
    if not args.public and not args.owner:
        raise CommandFailed("a private network needs --owner (or give --public)")
    if args.project and not args.owner:
        raise CommandFailed("--project needs --owner")
    if args.floating_ip_pool and not args.public:
        raise CommandFailed("--floating-ip-pool needs --public")
    if args.floating_ip_pool and not args.subnet:
        raise CommandFailed("--floating-ip-pool needs an IPv4 --subnet to allocate from")
    if not args.subnet and (args.gateway or args.no_gateway or args.allocation_pool):
        raise CommandFailed("--gateway, --no-gateway and --allocation-pool need --subnet")
    if args.gateway and args.no_gateway:
        raise CommandFailed("give --gateway or --no-gateway, not both")
    if args.gateway6 and not args.subnet6:
        raise CommandFailed("--gateway6 needs --subnet6")
    bodies = []
    if args.subnet:
        if _version(args.subnet, "--subnet") != 4:
            raise CommandFailed(f"--subnet: not an IPv4 network: {args.subnet}"
                                " (IPv6 goes to --subnet6)")
        bodies.append(_subnet_body(args.subnet, 4, args.gateway, args.no_gateway,
                                   args.allocation_pool))
    if args.subnet6:
        if _version(args.subnet6, "--subnet6") != 6:
            raise CommandFailed(f"--subnet6: not an IPv6 network: {args.subnet6}")
        bodies.append(_subnet_body(args.subnet6, 6, args.gateway6, False, None))
    networks = ctx.service.networks
    # Every subnet is checked before anything is created.
    for body in bodies:
        pools.subnet_request(body, dict(networks.settings.max_prefix), limited=False)
    network = await networks.admin_create_network(
        name=args.name, flavor=args.flavor, public=args.public,
        floating_ip_pool=args.floating_ip_pool, link=args.link, mac_prefix=args.mac_prefix,
        user=args.owner, project=args.project or args.owner, description=args.description)
    try:
        for body in bodies:
            await networks.create_subnet(OPERATOR, network.id, body, admin=True)
    except BaseException:
        await networks.delete_network(OPERATOR, network.id, admin=True)
        raise
    print(network.id)
    return 0


@command("network-list")
async def network_list(args: argparse.Namespace, ctx: Context) -> int:
    networks = ctx.service.networks
    found = [n for n in await networks.networks(OPERATOR, admin=True)
             if n.public or not args.public]
    by_network: dict[int, list[Subnet]] = collections.defaultdict(list)
    for s in await networks.subnets(OPERATOR, admin=True):
        by_network[s.network_id].append(s)
    if args.json:
        print(json.dumps([_network_json(n, by_network[n.id]) for n in found], indent=2))
        return 0
    if not found:
        print("no networks")
        return 0
    rows = [("ID", "NAME", "FLAVOR", "PUBLIC", "FLOATING", "LINK", "MAC PREFIX", "SUBNETS",
             "STATE")]
    for n in found:
        rows.append((str(n.id), n.name or "-", n.flavor, "yes" if n.public else "no",
                     "yes" if n.floating_ip_pool else "no", n.link or "-", n.mac_prefix,
                     ",".join(s.cidr for s in by_network[n.id]) or "-", n.state))
    _table(rows)
    return 0


@command("network-modify")
async def network_modify(args: argparse.Namespace, ctx: Context) -> int:
    networks = ctx.service.networks
    network = await networks.network(OPERATOR, args.network, admin=True)
    fields = {k: getattr(args, k) for k in ("name", "floating_ip_pool", "shared")
              if getattr(args, k) is not None}
    if not fields:
        raise CommandFailed("nothing to change: give --name, --floating-ip-pool or --shared")
    if fields.get("floating_ip_pool") and not network.public:
        raise CommandFailed(f"network {network.id} is not public: it cannot be a floating"
                            " IP pool")
    network = await networks.update_network(OPERATOR, network.id, admin=True, **fields)
    print(f"network {network.id}: {network.name or '-'} public={_yn(network.public)}"
          f" floating_ip_pool={_yn(network.floating_ip_pool)} shared={_yn(network.shared)}")
    return 0


def _yn(value: bool) -> str:
    return "yes" if value else "no"


@command("network-remove")
async def network_remove(args: argparse.Namespace, ctx: Context) -> int:
    await ctx.service.networks.delete_network(OPERATOR, args.network, admin=True)
    print(f"removed network {args.network}")
    return 0


# -- subnets ------------------------------------------------------------------------------


def _subnet_json(s: Subnet) -> dict[str, Any]:
    return {"id": s.id, "network_id": s.network_id, "name": s.name,
            "ip_version": s.ipversion, "cidr": s.cidr, "gateway": s.gateway,
            "allocation_pools": [{"start": a, "end": b} for a, b in s.pools],
            "dhcp": s.dhcp}


@command("subnet-create")
async def subnet_create(args: argparse.Namespace, ctx: Context) -> int:
    body = _subnet_body(args.cidr, _version(args.cidr, "--cidr"), args.gateway,
                        args.no_gateway, args.allocation_pool, args.name, args.dhcp)
    subnet = await ctx.service.networks.create_subnet(OPERATOR, args.network, body,
                                                      admin=True)
    print(subnet.id)
    return 0


@command("subnet-list")
async def subnet_list(args: argparse.Namespace, ctx: Context) -> int:
    found = [s for s in await ctx.service.networks.subnets(OPERATOR, admin=True)
             if args.network is None or s.network_id == args.network]
    if args.json:
        print(json.dumps([_subnet_json(s) for s in found], indent=2))
        return 0
    if not found:
        print("no subnets")
        return 0
    rows = [("ID", "NETWORK", "NAME", "IPV", "CIDR", "GATEWAY", "POOLS", "DHCP")]
    for s in found:
        rows.append((str(s.id), str(s.network_id), s.name or "-", str(s.ipversion), s.cidr,
                     s.gateway or "-", ",".join(f"{a}-{b}" for a, b in s.pools) or "-",
                     _yn(s.dhcp)))
    _table(rows)
    return 0


# -- reconcile-pools ----------------------------------------------------------------------


@attrs.frozen
class PoolProblem:
    """One inconsistency ``reconcile-pools`` reports.

    ``removable``: the address row ``--fix`` deletes (a fixed address
    without a port).  ``warning``: reported, not counted (a MAC outside its
    network's prefix may be one a user gave)."""

    text: str
    removable: int | None = None
    warning: bool = False


def _digits(mac: str) -> str:
    return mac.replace(":", "").lower()


def _mac_prefix_problem(n: Network) -> str | None:
    digits = _digits(n.mac_prefix)
    if len(digits) != 5 or any(c not in "0123456789abcdef" for c in digits):
        return f"MAC prefix {n.mac_prefix!r} is not 5 hex digits"
    if int(digits[:2], 16) & 1:
        return f"MAC prefix {n.mac_prefix} is a multicast prefix"
    return None


def _network_problems(settings: Any, networks: Sequence[Network]) -> list[PoolProblem]:
    out = []
    base, size = settings.mac_prefix_base, settings.mac_prefix_pool_size
    for index, holders in _shared(networks, lambda n: n.mac_index).items():
        out.append(PoolProblem(f"MAC prefix index {index} is held by networks"
                               f" {', '.join(str(n.id) for n in holders)}"))
    for index, holders in _shared(networks, lambda n: n.link_index).items():
        out.append(PoolProblem(f"bridge index {index} is held by networks"
                               f" {', '.join(str(n.id) for n in holders)}"))
    for n in networks:
        where = f"network {n.id}"
        bad = _mac_prefix_problem(n)
        if bad:
            out.append(PoolProblem(f"{where}: {bad}"))
        if n.mac_index is not None:
            if not 0 < n.mac_index < size:
                out.append(PoolProblem(f"{where}: MAC prefix index {n.mac_index} is outside"
                                       f" the pool (1..{size - 1})"))
            elif not pools.usable_mac_index(base, n.mac_index):
                out.append(PoolProblem(
                    f"{where}: MAC prefix index {n.mac_index}"
                    f" ({pools.mac_prefix(base, n.mac_index)}) is not a locally"
                    " administered unicast prefix"))
            elif pools.mac_prefix(base, n.mac_index) != n.mac_prefix:
                out.append(PoolProblem(
                    f"{where}: MAC prefix {n.mac_prefix} is not index {n.mac_index}'s"
                    f" ({pools.mac_prefix(base, n.mac_index)})"))
        elif FLAVORS[n.flavor][2] and n.mac_prefix == pools.mac_prefix(base, 0):
            out.append(PoolProblem(f"{where}: a {n.flavor} network on the default MAC"
                                   " prefix (no index from the pool)"))
        if n.link_index is not None:
            if not 0 < n.link_index <= settings.bridge_pool_size:
                out.append(PoolProblem(f"{where}: bridge index {n.link_index} is outside"
                                       f" the pool (1..{settings.bridge_pool_size})"))
            elif n.link != pools.bridge(settings.bridge_base, n.link_index):
                out.append(PoolProblem(
                    f"{where}: link {n.link} is not bridge index {n.link_index}'s"
                    f" ({pools.bridge(settings.bridge_base, n.link_index)})"))
    return out


def _shared(networks: Iterable[Network], key: Callable[[Network], int | None],
            ) -> dict[int, list[Network]]:
    """Pool indexes held by more than one network."""
    holders: dict[int, list[Network]] = collections.defaultdict(list)
    for n in networks:
        index = key(n)
        if index is not None:
            holders[index].append(n)
    return {i: ns for i, ns in sorted(holders.items()) if len(ns) > 1}


def _address_problems(ip: IP, subnet: Subnet | None, port: Port | None,
                      live: dict[int, Network]) -> list[PoolProblem]:
    kind = "floating IP" if ip.floating else "address"
    where = f"{kind} {ip.address} (id {ip.id})"
    removable = ip.id if not ip.floating and port is None else None
    out = []
    if ip.port_id is not None and port is None:
        out.append(PoolProblem(f"{where}: its port {ip.port_id} is gone", removable))
    elif ip.port_id is None and not ip.floating:
        out.append(PoolProblem(f"{where}: a fixed address without a port", removable))
    if ip.network_id not in live:
        out.append(PoolProblem(f"{where}: its network {ip.network_id} is deleted"))
    if subnet is None:
        out.append(PoolProblem(f"{where}: its subnet {ip.subnet_id} is gone"))
        return out
    if subnet.network_id != ip.network_id:
        out.append(PoolProblem(f"{where}: on network {ip.network_id}, but its subnet"
                               f" {subnet.id} is on network {subnet.network_id}"))
    if port is not None and port.network_id != ip.network_id:
        out.append(PoolProblem(f"{where}: its port {port.id} is on network"
                               f" {port.network_id}"))
    address = ipaddress.ip_address(ip.address)
    if address not in ipaddress.ip_network(subnet.cidr):
        out.append(PoolProblem(f"{where}: outside its subnet {subnet.id} ({subnet.cidr})"))
    elif subnet.gateway is not None and address == ipaddress.ip_address(subnet.gateway):
        out.append(PoolProblem(f"{where}: the gateway of subnet {subnet.id} is allocated"))
    elif not pools.is_slaac(subnet.cidr, subnet.ipversion) \
            and not pools.in_pools(ip.address, subnet.pools):
        # SLAAC addresses are their MAC's EUI-64, not taken from the pools.
        out.append(PoolProblem(f"{where}: outside the allocation pools of subnet"
                               f" {subnet.id} ({subnet.cidr})"))
    return out


def pool_problems(settings: Any, networks: Sequence[Network], subnets: Sequence[Subnet],
                  ips: Sequence[IP], ports: Sequence[Port]) -> list[PoolProblem]:
    """What is wrong with the pools, given every live network (``settings``:
    the ``NetworkSettings`` the pools are drawn with), every subnet,
    address and port."""
    live = {n.id: n for n in networks}
    by_subnet = {s.id: s for s in subnets}
    by_port = {p.id: p for p in ports}
    out = _network_problems(settings, networks)
    for s in subnets:
        if s.network_id not in live:
            out.append(PoolProblem(f"subnet {s.id} ({s.cidr}): its network {s.network_id}"
                                   " is deleted"))
    holders: dict[tuple[int, str], list[IP]] = collections.defaultdict(list)
    for ip in ips:
        holders[(ip.network_id, str(ipaddress.ip_address(ip.address)))].append(ip)
        out += _address_problems(ip, by_subnet.get(ip.subnet_id),
                                 None if ip.port_id is None else by_port.get(ip.port_id),
                                 live)
    for (network_id, address), held in sorted(holders.items()):
        if len(held) > 1:
            out.append(PoolProblem(f"address {address} is allocated {len(held)} times on"
                                   f" network {network_id} (ids"
                                   f" {', '.join(str(ip.id) for ip in held)})"))
    for p in ports:
        network = live.get(p.network_id)
        if network is None:
            out.append(PoolProblem(f"port {p.id}: its network {p.network_id} is deleted"))
        elif not _digits(p.mac).startswith(_digits(network.mac_prefix)):
            out.append(PoolProblem(f"port {p.id}: MAC {p.mac} is outside network"
                                   f" {network.id}'s prefix {network.mac_prefix}"
                                   " (given by its user?)", warning=True))
    return out


def _read_pools_txn(txn: Any) -> tuple[list[Network], list[Subnet], list[IP], list[Port]]:
    return (store.networks_txn(txn), store.subnets_txn(txn), store.ips_txn(txn),
            store.ports_txn(txn))


def _remove_portless_txn(txn: Any, ip_id: int) -> bool:
    """Delete the fixed address ``ip_id`` if it still has no port."""
    ip = store.ip_txn(txn, ip_id, for_update=True)
    if ip is None or ip.floating:
        return False
    if ip.port_id is not None and store.port_txn(txn, ip.port_id) is not None:
        return False
    store.delete_ip_txn(txn, ip_id)
    return True


@command("reconcile-pools")
async def reconcile_pools(args: argparse.Namespace, ctx: Context) -> int:
    settings = ctx.service.networks.settings

    async def check() -> tuple[list[PoolProblem], str]:
        networks, subnets, ips, ports = await ctx.db.run("cyclades.read_pools",
                                                         _read_pools_txn)
        return (pool_problems(settings, networks, subnets, ips, ports),
                f"{len(networks)} networks, {len(subnets)} subnets, {len(ips)} addresses,"
                f" {len(ports)} ports")

    found, counts = await check()
    fixed = 0
    if args.fix:
        for problem in found:
            if problem.removable is not None and await ctx.db.run(
                    "cyclades.remove_portless_ip", _remove_portless_txn, problem.removable):
                fixed += 1
                print(f"fixed: {problem.text} (removed)")
        if fixed:
            found, counts = await check()
    problems = [p for p in found if not p.warning]
    for p in found:
        print(f"warning: {p.text}" if p.warning else p.text)
    print(f"{counts}: {len(problems)} problems, {fixed} fixed,"
          f" {len(found) - len(problems)} warnings")
    return 1 if problems else 0
