"""``python -m snfd.netnode ifup|ifdown [TAP]``: set up or remove one NIC;
``python -m snfd.netnode refresh``: re-apply a running instance's filters.

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

refresh is a Ganeti hook (``share/ganeti/snfd-netnode-refresh`` in
``/etc/ganeti/hooks/instance-modify-post.d/``): after the control plane
changes an instance's tags (security groups, firewall profile) it submits an
instance modify, whose post hooks run on the master and the instance's
nodes with the instance in ``GANETI_*`` variables
(:func:`snfd.netnode.nic.nic_environ_from_hook`). For each NIC whose tap is
on this node (KVM's runtime file ``<nic_dir>/<instance>/<index>``, default
``/var/run/ganeti/kvm-hypervisor/nic``, names it, and the tap exists),
refresh replaces the NIC's nftables tables, all NICs in one atomic ``nft``
transaction; links, routes and bridge membership are left alone. With no
such NIC (the master, another node, a stopped instance) it does nothing.

Exit status: 0 done (or nothing to do); 1 the host refused (one line on
stderr, nothing left applied); 2 the environment does not describe a NIC
(nothing touched).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from snfd.netnode import rules
from snfd.netnode.host import CommandFailed, Host
from snfd.netnode.nic import (
    BadEnvironment,
    Nic,
    Teardown,
    nic_environ_from_hook,
    nic_from_environ,
    teardown_from_environ,
)

USAGE = (
    "usage: python -m snfd.netnode ifup|ifdown [INTERFACE]\n"
    "       python -m snfd.netnode refresh [--nic-dir DIR]"
)

# Ganeti's KVM hypervisor writes NIC i's tap name to <NIC_DIR>/<instance>/<i>
# (lib/hypervisor/hv_kvm/__init__.py: _NICS_DIR, _InstanceNICFile).
NIC_DIR = Path("/var/run/ganeti/kvm-hypervisor/nic")
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ifup, ifdown or refresh as Ganeti would: the NIC (or, for
    refresh, the hook's instance) described by ``environ`` (default
    ``os.environ``); returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    env = os.environ if environ is None else environ
    if args and args[0] == "refresh":
        if len(args) == 1:
            return _refresh_main(env, NIC_DIR)
        if len(args) == 3 and args[1] == "--nic-dir":
            return _refresh_main(env, Path(args[2]))
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


def _refresh_main(env: Mapping[str, str], nic_dir: Path) -> int:
    instance = env.get("GANETI_POST_INSTANCE_NAME") or env.get("GANETI_INSTANCE_NAME") or "?"

    def log(line: str) -> None:
        print(f"snfd-netnode refresh {instance}: {line}", file=sys.stderr, flush=True)

    try:
        refresh(env, Host(log), nic_dir)
    except BadEnvironment as e:
        log(f"bad environment: {e}")
        return 2
    except CommandFailed as e:
        log(f"failed: {e}")
        return 1
    return 0


def refresh(env: Mapping[str, str], host: Host, nic_dir: Path = NIC_DIR) -> list[Nic]:
    """Replace the nftables tables of the hook's instance's NICs whose taps
    are on this node; return those NICs (none: nothing to do).

    Every such NIC is read before anything changes, so a bad environment
    (say a malformed security-group tag) raises :class:`BadEnvironment`
    with the old filters still in place; :class:`CommandFailed` if nft
    refuses, in which case nothing changed either (one transaction).
    """
    post = "GANETI_POST_INSTANCE_NAME" in env
    prefix = "GANETI_POST_" if post else "GANETI_"
    instance = env.get(f"{prefix}INSTANCE_NAME", "")
    if not instance:
        raise BadEnvironment("GANETI_INSTANCE_NAME is not set (not an instance hook?)")
    if not _INSTANCE_NAME.fullmatch(instance):
        raise BadEnvironment(f"{prefix}INSTANCE_NAME={instance!r} is not an instance name")
    count = env.get(f"{prefix}INSTANCE_NIC_COUNT", "0")
    if not count.isdigit():
        raise BadEnvironment(f"{prefix}INSTANCE_NIC_COUNT={count!r} is not a number")
    nics = []
    for index in range(int(count)):
        try:
            tap = (nic_dir / instance / str(index)).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            path = nic_dir / instance / str(index)
            raise CommandFailed(f"cannot read {path}: {e.strerror}") from None
        try:
            nic = nic_from_environ(nic_environ_from_hook(env, index, tap))
        except BadEnvironment as e:
            raise BadEnvironment(f"NIC {index}: {e}") from None
        if host.link(nic.interface) is not None:
            nics.append(nic)
    if nics:
        host.change(
            "nft",
            "-f",
            "-",
            stdin="".join(rules.setup_script(nic) for nic in nics),
            what="nft: tables of " + ", ".join(f"{n.interface} for {_describe(n)}" for n in nics),
        )
    return nics


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
    sg = nic.security_groups
    groups = "off" if sg is None else f"{len(sg.rules)} rules"
    return (
        f"{nic.mode} {nic.flavor.name} on {nic.link}, firewall profile {profile},"
        f" security groups {groups}"
    )
