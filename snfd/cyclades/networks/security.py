"""Security groups' pure rules: what a rule may say (Neutron's checks and
messages), the default group's rules, when two rules are the same, and a
port's rules as the instance tags the node-side NIC scripts enforce.

**Tags** (the contract with :mod:`snfd.netnode`): for a port with port
security, ``snf:sg:<nic>:on`` (filtered: what no rule allows is dropped)
and one tag per allow rule, ``snf:sg:<nic>:<in|out><4|6>:<proto>:<range>:<remote>``
where ``proto`` is ``any``, ``tcp``, ``udp``, ``icmp`` (the version's
ICMP), ``sctp`` or a protocol number; ``range`` is ``any``, a port ``N``
or ``N-M``, or for ICMP a type ``T`` or ``T.C``; ``remote`` a CIDR.  A
rule whose remote is a group becomes one tag per address of the group's
members.  A rule the node cannot express exactly (ports on DCCP or
UDP-Lite) gives no tag: the node allows less, never more.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from snfd import errors
from snfd.cyclades.networks.model import Port, SecurityRule

#: Neutron's protocol names and their numbers.
PROTOCOLS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "igmp": 2, "ip": 0, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
    "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89,
    "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
#: Protocols with ports (Neutron's list); the node matches ports on these.
PORT_PROTOCOLS = frozenset({6, 17, 132, 33, 136})
_NODE_PORTS = {6: "tcp", 17: "udp", 132: "sctp"}
ICMP = frozenset({1, 58})
DIRECTIONS = ("ingress", "egress")
ETHERTYPES = ("IPv4", "IPv6")
MAX_GROUPS = 10
MAX_RULES = 100


@attrs.frozen
class RuleRequest:
    """A checked rule: the fields of :class:`SecurityRule` a client sets."""

    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    description: str = ""


def protocol_number(protocol: str | None) -> int | None:
    """The IP protocol number of a rule's protocol (None: any)."""
    if protocol is None:
        return None
    return PROTOCOLS[protocol] if protocol in PROTOCOLS else int(protocol)


def check_rule(body: Mapping[str, Any]) -> RuleRequest:
    """A rule from a ``security_group_rule`` body, checked as Neutron
    checks it (400 with Neutron's message)."""
    direction = body.get("direction")
    if direction not in DIRECTIONS:
        raise errors.BadRequest(f"Invalid input for direction. Reason: {direction!r} is not in"
                                " ['ingress', 'egress'].")
    ethertype = body.get("ethertype") or "IPv4"
    if ethertype not in ETHERTYPES:
        raise errors.BadRequest(f"Invalid input for ethertype. Reason: {str(ethertype)[:40]!r}"
                                " is not in ['IPv4', 'IPv6'].")
    protocol = _protocol(body.get("protocol"))
    pmin = _port(body.get("port_range_min"))
    pmax = _port(body.get("port_range_max"))
    number = protocol_number(protocol)
    if number in ICMP:
        for value, field, attr in ((pmin, "type", "port-range-min"),
                                   (pmax, "code", "port-range-max")):
            if value is not None and not 0 <= value <= 255:
                raise errors.BadRequest(f"Invalid value for ICMP {field} ({attr}): {value}."
                                        " It must be 0 to 255.")
        if pmin is None and pmax is not None:
            raise errors.BadRequest(f"ICMP code (port-range-max) {pmax} is provided but ICMP"
                                    " type (port-range-min) is missing.")
    elif pmin is not None or pmax is not None:
        if number not in PORT_PROTOCOLS:
            raise errors.BadRequest(f"Invalid protocol {protocol} for port range, only"
                                    " supported for TCP, UDP, UDPLITE, SCTP and DCCP.")
        for value in (pmin, pmax):
            if value is not None and not 1 <= value <= 65535:
                raise errors.BadRequest(f"Invalid value for port {value}.")
        if pmin is None or (pmax is not None and pmin > pmax):
            raise errors.BadRequest("For TCP/UDP protocols, port_range_min must be <="
                                    " port_range_max.")
        if pmax is None:
            pmax = pmin
    prefix = body.get("remote_ip_prefix")
    group = body.get("remote_group_id")
    if prefix is not None and group is not None:
        raise errors.BadRequest("Only remote_ip_prefix or remote_group_id may be provided.")
    if prefix is not None:
        prefix = _cidr(prefix, ethertype)
    if group is not None and not isinstance(group, str):
        raise errors.NotFound(f"Security group {str(group)[:40]} does not exist.")
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > 255:
        raise errors.BadRequest("Invalid input for description: a string of at most 255"
                                " characters is needed.")
    return RuleRequest(direction=direction, ethertype=ethertype, protocol=protocol,
                       port_range_min=pmin, port_range_max=pmax, remote_ip_prefix=prefix,
                       remote_group_id=group, description=description)


def _protocol(value: Any) -> str | None:
    if value is None or value == "any":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise errors.BadRequest(_bad_protocol(value))
    text = str(value).lower()
    if text in PROTOCOLS:
        return text
    if text.isdigit() and int(text) <= 255:
        return str(int(text))
    raise errors.BadRequest(_bad_protocol(value))


def _bad_protocol(value: Any) -> str:
    return (f"Security group rule protocol {str(value)[:40]} not supported. Only protocol"
            f" values {sorted(PROTOCOLS)} and integer representations [0 to 255] are"
            " supported.")


def _port(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise errors.BadRequest(f"Invalid value for port {value}.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise errors.BadRequest(f"Invalid value for port {str(value)[:20]}.") from None
    if not 0 <= number <= 65535:
        raise errors.BadRequest(f"Invalid value for port {number}.")
    return number


def _cidr(value: Any, ethertype: str) -> str:
    try:
        network = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise errors.BadRequest(f"Invalid input for remote_ip_prefix. Reason:"
                                f" '{str(value)[:60]}' is not a valid IP subnet.") from None
    if f"IPv{network.version}" != ethertype:
        raise errors.BadRequest(f"Conflicting value ethertype {ethertype} for CIDR {value}.")
    return str(value)


def normalized(prefix: str) -> str:
    """A rule's CIDR without host bits (Neutron's ``normalized_cidr``)."""
    return str(ipaddress.ip_network(prefix, strict=False))


def same_rule(a: RuleRequest | SecurityRule, b: RuleRequest | SecurityRule) -> bool:
    """Whether two rules of a group allow the same thing (Neutron refuses
    the second: 409)."""
    def key(r: RuleRequest | SecurityRule) -> tuple[Any, ...]:
        prefix = None if r.remote_ip_prefix is None else normalized(r.remote_ip_prefix)
        return (r.direction, r.ethertype, protocol_number(r.protocol), r.port_range_min,
                r.port_range_max, None if prefix in ("0.0.0.0/0", "::/0") else prefix,
                r.remote_group_id)
    return key(a) == key(b)


def default_rules(group_id: str) -> list[RuleRequest]:
    """Neutron's rules of a project's default group: everything out, and
    in from the group's own members."""
    return [RuleRequest(direction="egress", ethertype="IPv4"),
            RuleRequest(direction="egress", ethertype="IPv6"),
            RuleRequest(direction="ingress", ethertype="IPv4", remote_group_id=group_id),
            RuleRequest(direction="ingress", ethertype="IPv6", remote_group_id=group_id)]


def node_tags(port: Port, rules: Iterable[SecurityRule],
              members: Mapping[str, Iterable[str]]) -> list[str]:
    """The instance tags that make the node filter ``port``'s NIC by its
    groups' ``rules`` (see the module docstring); ``members``: group id ->
    the addresses of its members' ports.  None without port security."""
    if not port.port_security:
        return []
    nic = port.nic_name
    tags = [f"snf:sg:{nic}:on"]
    for rule in rules:
        version = 4 if rule.ethertype == "IPv4" else 6
        head = f"snf:sg:{nic}:{'in' if rule.direction == 'ingress' else 'out'}{version}"
        number = protocol_number(rule.protocol)
        proto, span = _node_match(rule, number)
        if proto is None:
            continue
        if rule.remote_group_id is not None:
            remotes = [f"{a}/{32 if version == 4 else 128}"
                       for a in sorted(set(members.get(rule.remote_group_id, ())))
                       if ipaddress.ip_address(a).version == version]
        else:
            remotes = [normalized(rule.remote_ip_prefix or
                                  ("0.0.0.0/0" if version == 4 else "::/0"))]
        tags += [f"{head}:{proto}:{span}:{remote}" for remote in remotes]
    return list(dict.fromkeys(tags))


def _node_match(rule: SecurityRule, number: int | None) -> tuple[str | None, str]:
    """The node's protocol and range words for a rule; (None, "") when the
    node cannot say it exactly."""
    lo, hi = rule.port_range_min, rule.port_range_max
    if number is None:
        return "any", "any"
    if number in ICMP:
        if lo is None:
            return "icmp", "any"
        return "icmp", str(lo) if hi is None else f"{lo}.{hi}"
    if number in PORT_PROTOCOLS:
        if lo is None:
            return _NODE_PORTS.get(number, str(number)), "any"
        if number not in _NODE_PORTS:
            return None, ""
        return _NODE_PORTS[number], str(lo) if lo == hi or hi is None else f"{lo}-{hi}"
    return str(number), "any"
