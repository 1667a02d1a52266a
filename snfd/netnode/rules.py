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

Security groups (a NIC tagged ``snf:sg:<nic>:on``, Neutron's semantics) live
in the same tables in base chains of their own, ``sg-forward``, ``sg-input``
and ``sg-output`` at priority 10, so they are independent of the anti-spoofing
checks and the profile (priority 0): an ``accept`` ends only its own base
chain, a packet must pass both. They jump to ``sg-to-vm`` (what leaves the
node through the tap, forwarded or the node's own: ``oifname``) and
``sg-from-vm`` (what the tap brings in, forwarded or for the node itself:
``iifname``), which accept what a rule allows and drop every other IP
packet. Always allowed, as Neutron does: non-IP frames (ARP) except
VLAN-tagged ones (they could carry IP past the filter), ICMPv6 neighbour
discovery and MLD (to the VM types 130-136 and 143; from it the same but
router advertisements, 134, which Neutron drops from VMs), and DHCP (v4
client 68 <-> server 67, v6 546 <-> 547).

Security groups are stateful: answers to allowed traffic pass.

- Routed NICs (``inet``): conntrack. Both chains start with ``ct state
  established,related accept`` and ``ct state invalid drop``. Unlike
  Neutron, which deletes the conntrack entries a removed rule allowed, a
  connection established before a rule goes away keeps flowing until it
  ends (or its entry times out).
- Bridged NICs (``bridge``): our kernels have no bridge conntrack (a ``ct``
  expression there does not load), so answers are recognised statelessly
  by mirroring each rule into the other direction. For a rule allowing
  traffic to the remote R with protocol P and remote ports S (``out``), or
  from R to local ports S (``in``), what passes the other way is: from or
  to R, protocol P with *source* port in S, and for TCP only segments that
  are not a bare SYN (``tcp flags & (syn | ack) != syn``); for ICMP the reply
  types of the allowed requests (echo 8 -> 0, timestamp 13 -> 14,
  information 15 -> 16, address mask 17 -> 18; ICMPv6 echo 128 -> 129); for
  every rule ICMP errors to or from R (v4 destination unreachable, time
  exceeded, parameter problem; v6 also packet too big). A rule for UDP or
  SCTP on any port, or for any protocol, cannot name the answers' source
  port: its UDP and SCTP answers are those to a client's port, 32768-65535
  (``EPHEMERAL``); a rule for any protocol also mirrors to TCP segments that
  are not a bare SYN, ICMP replies and errors, and the protocols other than
  TCP, UDP, SCTP and ICMP (GRE, ESP, ...), from or to R.  So the default
  group's "everything out" rules let in what looks like answers, never a
  new TCP connection nor UDP to a service's port.

  What this lets through that conntrack would not: packets that merely look
  like answers, with no request before them: TCP segments with ACK (or RST,
  FIN) from an allowed remote port to any port of the VM (ACK scans, RSTs),
  UDP or SCTP from an allowed remote port to any VM port (say from port 53
  for a DNS rule), UDP to the VM's ports 32768-65535 from R under an
  "any" rule, other IP protocols from R under an "any" rule, ICMP replies
  and errors not tied to any flow. What conntrack would
  let through that this does not: ICMP errors about an allowed flow coming
  from a router outside R (path MTU discovery through such routers breaks
  unless R covers them, as the usual ``0.0.0.0/0`` egress rule does),
  non-first IP fragments unless an ``any`` rule covers them (they carry no
  ports; conntrack would reassemble first), FTP-style related connections.
"""

from __future__ import annotations

from snfd.netnode.nic import Nic, Profile, SgRule

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
    chains = []
    if forward:
        chains.append(_base_chain("forward", forward))
    if from_tap:
        chains.append(_base_chain("input", from_tap))
    if to_tap:
        chains.append(_base_chain("output", to_tap))
    chains += _sg_chains(nic, stateful=False)
    if not chains:
        return ""
    return _table("bridge", nic, chains)


def _inet_table(nic: Nic) -> str:
    tap = f'"{nic.interface}"'
    # A routed VM may only send from its own addresses.
    forward = [f"iifname {tap} ip saddr != {nic.ip} drop"]
    if nic.ip6 is not None:
        forward.append(f"iifname {tap} ip6 saddr != {nic.ip6} drop")
    forward += _jump_to_profile(nic)
    chains = [_base_chain("forward", forward), *_sg_chains(nic, stateful=True)]
    return _table("inet", nic, chains)


def _jump_to_profile(nic: Nic) -> list[str]:
    """Traffic to the NIC goes through its profile's chain, if it has one."""
    if nic.profile is None or nic.profile not in PROFILE_RULES:
        return []
    return [f'oifname "{nic.interface}" jump {nic.profile.value}']


SG_PRIORITY = 10

# Neutron's always-allowed ICMPv6: MLD (130-132, 143) and neighbour discovery
# (133 router solicitation, 134 router advertisement, 135/136 neighbour
# solicitation/advertisement); a VM may not advertise itself as a router.
_ICMPV6_TO_VM = "{ 130, 131, 132, 133, 134, 135, 136, 143 }"
_ICMPV6_FROM_VM = "{ 130, 131, 132, 133, 135, 136, 143 }"
# Request -> reply types, for answers to ICMP rules on bridged NICs.
_ICMP_REPLIES = {4: {8: 0, 13: 14, 15: 16, 17: 18}, 6: {128: 129}}
_ICMP_ERRORS = {4: "{ 3, 11, 12 }", 6: "{ 1, 2, 3, 4 }"}
#: The ports clients send from (Linux 32768-60999, Windows and the IANA range
#: 49152-65535): where UDP answers to a rule for any port are let in.
EPHEMERAL = "32768-65535"


def _sg_chains(nic: Nic, stateful: bool) -> list[str]:
    """The security-group chains of ``nic``, none without port security."""
    sg = nic.security_groups
    if sg is None:
        return []
    tap = f'"{nic.interface}"'
    to_vm: list[str] = []
    from_vm: list[str] = []
    if stateful:
        for chain in (to_vm, from_vm):
            chain += ["ct state established,related accept", "ct state invalid drop"]
    else:
        for chain in (to_vm, from_vm):
            chain += ["ether type { vlan, 8021ad } drop", "meta protocol != { ip, ip6 } accept"]
    to_vm += [
        f"icmpv6 type {_ICMPV6_TO_VM} accept",
        "udp sport 67 udp dport 68 accept",
        "udp sport 547 udp dport 546 accept",
    ]
    from_vm += [
        f"icmpv6 type {_ICMPV6_FROM_VM} accept",
        "udp sport 68 udp dport 67 accept",
        "udp sport 546 udp dport 547 accept",
    ]
    for rule in sg.rules:
        (to_vm if rule.direction == "in" else from_vm).append(f"{_sg_allow(rule)} accept")
    if not stateful:
        for rule in sg.rules:
            answers = [f"{line} accept" for line in _sg_answers(rule)]
            (from_vm if rule.direction == "in" else to_vm).extend(answers)
    return [
        _base_chain("sg-forward", [f"oifname {tap} jump sg-to-vm",
                                   f"iifname {tap} jump sg-from-vm"],
                    hook="forward", priority=SG_PRIORITY),
        _base_chain("sg-input", [f"iifname {tap} jump sg-from-vm"],
                    hook="input", priority=SG_PRIORITY),
        _base_chain("sg-output", [f"oifname {tap} jump sg-to-vm"],
                    hook="output", priority=SG_PRIORITY),
        _chain("sg-to-vm", [*_unique(to_vm), "drop"]),
        _chain("sg-from-vm", [*_unique(from_vm), "drop"]),
    ]  # fmt: skip


def _sg_remote(rule: SgRule, answer: bool) -> str:
    """Match the rule's remote end: the source of what comes in to the VM."""
    incoming = (rule.direction == "in") != answer
    family = "ip" if rule.version == 4 else "ip6"
    return f"{family} {'saddr' if incoming else 'daddr'} {rule.remote}"


def _sg_allow(rule: SgRule) -> str:
    """What ``rule`` allows, in its own direction (without the verdict)."""
    match = [_sg_remote(rule, answer=False)]
    icmp = "icmp" if rule.version == 4 else "icmpv6"
    if rule.protocol in ("tcp", "udp", "sctp"):
        match.append(
            f"{rule.protocol} dport {_span(rule.ports)}"
            if rule.ports
            else f"meta l4proto {rule.protocol}"
        )
    elif rule.protocol == "icmp":
        if rule.icmp_type is None:
            match.append(f"meta l4proto {_l4_icmp(rule)}")
        else:
            match.append(f"{icmp} type {rule.icmp_type}")
            if rule.icmp_code is not None:
                match.append(f"{icmp} code {rule.icmp_code}")
    elif rule.protocol != "any":
        match.append(f"meta l4proto {rule.protocol}")
    return " ".join(match)


def _sg_answers(rule: SgRule) -> list[str]:
    """What answers ``rule``'s traffic, the other way, told statelessly
    (bridged NICs only; see the module docstring)."""
    remote = _sg_remote(rule, answer=True)
    icmp = "icmp" if rule.version == 4 else "icmpv6"
    replies = _ICMP_REPLIES[rule.version]
    if rule.protocol == "any":
        every_reply = ", ".join(map(str, sorted(replies.values())))
        return [
            f"{remote} tcp flags & (syn | ack) != syn",
            f"{remote} udp dport {EPHEMERAL}",
            f"{remote} sctp dport {EPHEMERAL}",
            f"{remote} {icmp} type {{ {every_reply} }}",
            f"{remote} {icmp} type {_ICMP_ERRORS[rule.version]}",
            f"{remote} meta l4proto != {{ tcp, udp, sctp, icmp, ipv6-icmp }}",
        ]
    lines = []
    if rule.protocol == "tcp":
        sport = f" tcp sport {_span(rule.ports)}" if rule.ports else ""
        lines.append(f"{remote}{sport} tcp flags & (syn | ack) != syn")
    elif rule.protocol in ("udp", "sctp"):
        lines.append(
            f"{remote} {rule.protocol} sport {_span(rule.ports)}"
            if rule.ports
            else f"{remote} {rule.protocol} dport {EPHEMERAL}"
        )
    elif rule.protocol == "icmp":
        if rule.icmp_type is None:
            types = sorted(replies.values())
        elif rule.icmp_type in replies and rule.icmp_code in (None, 0):
            types = [replies[rule.icmp_type]]
        else:
            types = []
        if len(types) == 1:
            lines.append(f"{remote} {icmp} type {types[0]}")
        elif types:
            lines.append(f"{remote} {icmp} type {{ {', '.join(map(str, types))} }}")
    else:
        lines.append(f"{remote} meta l4proto {rule.protocol}")
    lines.append(f"{remote} {icmp} type {_ICMP_ERRORS[rule.version]}")
    return lines


def _l4_icmp(rule: SgRule) -> str:
    return "icmp" if rule.version == 4 else "ipv6-icmp"


def _span(ports: tuple[int, int] | None) -> str:
    assert ports is not None
    low, high = ports
    return str(low) if low == high else f"{low}-{high}"


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def _base_chain(name: str, rules: list[str], hook: str | None = None, priority: int = 0) -> str:
    head = f"type filter hook {hook or name} priority {priority}; policy accept;"
    return _chain(name, [head, *rules])


def _chain(name: str, lines: list[str]) -> str:
    return f"  chain {name} {{\n" + "".join(f"    {line}\n" for line in lines) + "  }\n"


def _table(family: str, nic: Nic, chains: list[str]) -> str:
    if nic.profile is not None and nic.profile in PROFILE_RULES:
        chains.append(_chain(nic.profile.value, PROFILE_RULES[nic.profile]))
    return f"table {family} {table_name(nic.interface)} {{\n" + "".join(chains) + "}\n"
