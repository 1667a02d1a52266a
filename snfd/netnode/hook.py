"""``python -m snfd.netnode ifup|ifdown [TAP]``: set up or remove one NIC.

ifup, after reading the environment (:mod:`snfd.netnode.nic`) and checking
the host (the tap exists; a bridged NIC's LINK is a bridge; a routed NIC's
LINK is a routing table and the tap forwards IPv4):

1. removes what an earlier ifup for this tap may have left (Ganeti 3.0 never
   runs an ifdown script; a tap's rules and neighbour proxies outlive it);
2. replaces the NIC's nftables tables (:mod:`snfd.netnode.rules`), so the
   filters are in place before the tap carries traffic;
3. bridged: puts the tap on bridge LINK with the bridge's MTU, up;
   routed: tap up, proxy ARP on the tap, ``ip rule iif <tap> table LINK``,
   the host route ``IP/32 dev <tap>`` in table LINK and a neighbour proxy
   entry for IP on the table's uplink (the device of its default route), so
   the router finds the VM; the same for the EUI-64 address when the
   network has an IPv6 subnet.

If any step fails, everything is removed again. ifdown removes all of it:
the tables, the rules, the routes and proxies, the bridge membership; it
succeeds, doing nothing, when there is nothing to remove.

Exit status: 0 done; 1 the host refused (one line on stderr, nothing left
applied); 2 the environment does not describe a NIC (nothing touched).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping

from snfd.netnode import rules
from snfd.netnode.host import CommandFailed, Host
from snfd.netnode.nic import BadEnvironment, Nic, Teardown, nic_from_environ, teardown_from_environ

USAGE = "usage: python -m snfd.netnode ifup|ifdown [INTERFACE]"


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ifup or ifdown as Ganeti would: the NIC described by ``environ``
    (default ``os.environ``); returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    env = os.environ if environ is None else environ
    if not args or args[0] not in ("ifup", "ifdown") or len(args) > 2:
        print(USAGE, file=sys.stderr)
        return 2
    action, tap = args[0], (args[1] if len(args) > 1 else None)
    prefix = f"snfd-netnode {action} {env.get('INTERFACE') or tap or '?'}"

    def log(line: str) -> None:
        print(f"{prefix}: {line}", file=sys.stderr, flush=True)

    host = Host(log)
    try:
        if action == "ifup":
            ifup(nic_from_environ(env, tap), host)
        else:
            teardown(teardown_from_environ(env, tap), host)
    except BadEnvironment as e:
        log(f"bad environment: {e}")
        return 2
    except CommandFailed as e:
        log(f"failed: {e}")
        return 1
    return 0


def ifup(nic: Nic, host: Host) -> None:
    """Set up ``nic``; on failure undo everything and raise
    :class:`CommandFailed`."""
    _preflight(nic, host)
    undo = Teardown(
        interface=nic.interface,
        table=nic.link if nic.mode == "routed" else None,
        ip=nic.ip,
        ip6=nic.ip6,
    )
    teardown(undo, host, keep_link=True)
    try:
        host.change(
            "nft",
            "-f",
            "-",
            stdin=rules.setup_script(nic),
            what=f"nft: tables of {nic.interface} for {_describe(nic)}",
        )
        if nic.mode == "bridged":
            _bridge(nic, host)
        else:
            _route(nic, host)
    except CommandFailed as e:
        try:
            teardown(undo, host)
        except CommandFailed as e2:
            raise CommandFailed(f"{e}; undoing also failed: {e2}") from None
        raise CommandFailed(f"{e}; undone") from None


def teardown(td: Teardown, host: Host, keep_link: bool = False) -> None:
    """Remove whatever ifup may have set up for ``td.interface``, present or
    not. With ``keep_link`` the tap itself (bridge, state) is left alone."""
    tap = td.interface
    ours = {(family, rules.table_name(tap)) for family in ("bridge", "inet")}
    if ours & host.nft_tables():
        host.change(
            "nft", "-f", "-", stdin=rules.teardown_script(tap), what=f"nft: delete tables of {tap}"
        )
    for family in ("-4", "-6"):
        for rule in host.query("ip", family, "-j", "rule", "show"):
            if rule.get("iif") == tap:
                pref = str(rule["priority"])
                host.change("ip", family, "rule", "del", "priority", pref, "iif", tap)
    link = host.link(tap)
    if link is not None and td.table is not None:
        for family in ("-4", "-6"):
            for route in host.query("ip", family, "-j", "route", "show", "table", td.table):
                if route.get("dev") == tap and _same(route.get("dst"), td.ip, td.ip6):
                    host.change(
                        "ip", family, "route", "del", route["dst"], "dev", tap, "table", td.table
                    )
    for family, address in (("-4", td.ip), ("-6", td.ip6)):
        if address is None:
            continue
        for entry in host.query("ip", family, "-j", "neigh", "show", "proxy"):
            if _same(entry.get("dst"), address):
                host.change("ip", family, "neigh", "del", "proxy", address, "dev", entry["dev"])
    if link is None or keep_link:
        return
    if link.get("master"):
        host.change("ip", "link", "set", "dev", tap, "nomaster")
    if host.read_switch(f"net/ipv4/conf/{tap}/proxy_arp") == "1":
        host.write_switch(f"net/ipv4/conf/{tap}/proxy_arp", "0")
    if "UP" in link.get("flags", []):
        host.change("ip", "link", "set", "dev", tap, "down")


def _preflight(nic: Nic, host: Host) -> None:
    """Refuse, before changing anything, what ifup could not finish."""
    if host.link(nic.interface) is None:
        raise CommandFailed(f"interface {nic.interface} does not exist")
    if nic.mode == "bridged":
        bridge = host.link(nic.link)
        if bridge is None or bridge.get("linkinfo", {}).get("info_kind") != "bridge":
            raise CommandFailed(f"LINK={nic.link} is not a bridge on this node")
        return
    try:
        host.query("ip", "-j", "route", "show", "table", nic.link)
    except CommandFailed:
        raise CommandFailed(f"LINK={nic.link} is not a routing table on this node") from None
    if host.read_switch(f"net/ipv4/conf/{nic.interface}/forwarding") != "1":
        raise CommandFailed(
            f"IPv4 forwarding is off on {nic.interface} (set net.ipv4.ip_forward=1 on the node)"
        )


def _bridge(nic: Nic, host: Host) -> None:
    tap = nic.interface
    mtu = (host.link(nic.link) or {}).get("mtu")
    if mtu and (host.link(tap) or {}).get("mtu") != mtu:
        host.change("ip", "link", "set", "dev", tap, "mtu", str(mtu))
    host.change("ip", "link", "set", "dev", tap, "master", nic.link)
    host.change("ip", "link", "set", "dev", tap, "up")


def _route(nic: Nic, host: Host) -> None:
    tap, table = nic.interface, nic.link
    host.change("ip", "link", "set", "dev", tap, "up")
    host.write_switch(f"net/ipv4/conf/{tap}/proxy_arp", "1")
    for family, address, plen in (("-4", nic.ip, 32), ("-6", nic.ip6, 128)):
        if address is None:
            continue
        host.change("ip", family, "rule", "add", "iif", tap, "table", table)
        host.change(
            "ip", family, "route", "replace", f"{address}/{plen}", "dev", tap, "table", table,
            "proto", "static",
        )  # fmt: skip
        defaults = host.query("ip", family, "-j", "route", "show", "table", table, "default")
        uplink = next((r["dev"] for r in defaults if r.get("dev")), None)
        if uplink is None:
            host.note(f"no {family} default route in table {table}: no neighbour proxy")
            continue
        host.change("ip", family, "neigh", "replace", "proxy", address, "dev", uplink)


def _same(shown: str | None, *addresses: str | None) -> bool:
    """Whether an address as ``ip`` shows it is one of ``addresses``."""
    try:
        value = ipaddress.ip_address(shown or "")
    except ValueError:
        return False
    return any(a is not None and value == ipaddress.ip_address(a) for a in addresses)


def _describe(nic: Nic) -> str:
    profile = nic.profile.value if nic.profile else "none"
    return f"{nic.mode} {nic.flavor.name} on {nic.link}, firewall profile {profile}"
