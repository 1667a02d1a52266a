"""A NIC's nftables rules, as the text of one ``nft -f`` transaction. Pure.

Each NIC owns two tables named after its tap, ``bridge snf-<tap>`` (bridged
NICs: MAC filtering and the firewall profile, on frames the bridge forwards)
and ``inet snf-<tap>`` (routed NICs: source address check and the profile,
on packets the node routes). A NIC that needs no filtering has no table.
Owning whole tables makes both directions simple and exact: ifup replaces
them and ifdown deletes them in one atomic transaction, whatever state an
earlier run left, and nothing is shared with other NICs or other software.

Each script first declares then deletes both tables (nftables 1.0.6 has no
"delete if present"), so it succeeds whether or not they existed.

The profiles are stateless, as Synnefo's (the kernels we target lack
bridge-family conntrack): "no new connection" means TCP segments that are not
a bare SYN, UDP from port 53 (DNS answers) and ICMP/ICMPv6 pass; non-IP
frames (ARP) always pass.
"""

from __future__ import annotations

from snfd.netnode.nic import Nic, Profile

PROFILE_RULES: dict[Profile, list[str]] = {
    Profile.PROTECTED: [
        "meta protocol != { ip, ip6 } accept",
        "tcp flags & (fin | syn | rst | ack) != syn accept",
        "udp sport 53 accept",
        "meta l4proto { icmp, ipv6-icmp } accept",
        "drop",
    ],
    Profile.LIMITED: [
        "meta protocol != { ip, ip6 } accept",
        "tcp flags & (fin | syn | rst | ack) != syn accept",
        "tcp dport { 22, 3389 } accept",
        "udp sport 53 accept",
        "meta l4proto { icmp, ipv6-icmp } accept",
        "drop",
    ],
}

_MAC_PREFIX_MASK = "ff:ff:ff:00:00:00"


def table_name(interface: str) -> str:
    """The name of the tables that belong to ``interface``'s NIC."""
    return f"snf-{interface}"


def teardown_script(interface: str) -> str:
    """Delete the NIC's tables, present or not."""
    name = table_name(interface)
    return "".join(
        f"table {family} {name}\ndelete table {family} {name}\n" for family in ("bridge", "inet")
    )


def setup_script(nic: Nic) -> str:
    """Replace the NIC's tables with the ones its setup needs."""
    tables = _bridge_table(nic) if nic.mode == "bridged" else _inet_table(nic)
    return teardown_script(nic.interface) + tables


def _bridge_table(nic: Nic) -> str:
    tap = f'"{nic.interface}"'
    from_tap: list[str] = []
    to_tap: list[str] = []
    if nic.mac_prefix is not None:
        # Isolation of private networks sharing one bridge: the VM may send
        # only with its own MAC, and receives only frames from its network's
        # MAC prefix (also broadcasts, hence the input/output hooks as well).
        from_tap.append(f"iifname {tap} ether saddr != {nic.mac} drop")
        to_tap.append(
            f"oifname {tap} ether saddr & {_MAC_PREFIX_MASK} != {nic.mac_prefix}:00:00:00 drop"
        )
    forward = from_tap + to_tap + _jump_to_profile(nic)
    if not forward:
        return ""
    chains = [_base_chain("forward", forward)]
    if from_tap:
        chains.append(_base_chain("input", from_tap))
    if to_tap:
        chains.append(_base_chain("output", to_tap))
    return _table("bridge", nic, chains)


def _inet_table(nic: Nic) -> str:
    tap = f'"{nic.interface}"'
    # A routed VM may only send from its own addresses.
    forward = [f"iifname {tap} ip saddr != {nic.ip} drop"]
    if nic.ip6 is not None:
        forward.append(f"iifname {tap} ip6 saddr != {nic.ip6} drop")
    forward += _jump_to_profile(nic)
    return _table("inet", nic, [_base_chain("forward", forward)])


def _jump_to_profile(nic: Nic) -> list[str]:
    """Traffic to the NIC goes through its profile's chain, if it has one."""
    if nic.profile is None or nic.profile not in PROFILE_RULES:
        return []
    return [f'oifname "{nic.interface}" jump {nic.profile.value}']


def _base_chain(hook: str, rules: list[str]) -> str:
    head = f"type filter hook {hook} priority 0; policy accept;"
    return _chain(hook, [head, *rules])


def _chain(name: str, lines: list[str]) -> str:
    return f"  chain {name} {{\n" + "".join(f"    {line}\n" for line in lines) + "  }\n"


def _table(family: str, nic: Nic, chains: list[str]) -> str:
    if nic.profile is not None and nic.profile in PROFILE_RULES:
        chains.append(_chain(nic.profile.value, PROFILE_RULES[nic.profile]))
    return f"table {family} {table_name(nic.interface)} {{\n" + "".join(chains) + "}\n"
