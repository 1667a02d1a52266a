"""A NIC's network setup, read from the environment Ganeti gives its NIC
scripts. Pure: nothing here touches the host.

What Ganeti 3.0 passes (``lib/hypervisor/hv_base.py:ConfigureNIC``, the same
for KVM's ``kvm-ifup`` and Xen's ``xen-ifup-os``): ``INSTANCE``, ``MAC``,
``MODE`` (bridged|routed|openvswitch), ``INTERFACE`` (the tap),
``INTERFACE_INDEX``, ``INTERFACE_UUID``, ``TAGS`` (the instance's tags, space
separated); when set: ``IP``, ``INTERFACE_NAME``, ``LINK``, ``VLAN``,
``BRIDGE`` (= LINK in bridged mode); for a NIC in a Ganeti network
(``objects.Network.HooksDict``): ``NETWORK_NAME``, ``NETWORK_UUID``,
``NETWORK_TAGS``, and when set ``NETWORK_SUBNET``, ``NETWORK_GATEWAY``,
``NETWORK_SUBNET6``, ``NETWORK_GATEWAY6``, ``NETWORK_MAC_PREFIX``.

Synnefo's conventions on top of that:

- the network's flavor is a Ganeti network tag: ``private-filtered``
  (MAC_FILTERED), ``ip-less-routed`` (IP_LESS_ROUTED), ``physical-vlan``
  (PHYSICAL_VLAN); no tag is CUSTOM (plain bridged or routed, as MODE says);
- a NIC's firewall profile is an instance tag
  ``synnefo:network:<ident>:<profile>``, ident being the NIC's index, name or
  UUID, profile one of :class:`Profile`;
- a NIC's security groups (Neutron's, resolved to CIDRs by the control
  plane) are instance tags ``snf:sg:<ident>:on`` (port security on: drop
  what no rule allows) and one ``snf:sg:<ident>:<dir><v>:<proto>:<range>:<remote>``
  per allow rule (:class:`SgRule`, :func:`sg_rule_from_tag`).

Ganeti's *hooks* (``/etc/ganeti/hooks/<name>-post.d``) get the instance
instead as ``GANETI_INSTANCE_*`` (``lib/cmdlib/instance_utils.py``
``BuildInstanceHookEnv``): ``_NAME``, ``_TAGS``, ``_NIC_COUNT`` and per NIC
``_NIC<i>_UUID``, ``_IP``, ``_MAC``, ``_MODE``, ``_LINK``, ``_VLAN``, when set
``_NAME`` and ``_BRIDGE``, and the network's ``_NIC<i>_NETWORK_*`` as above;
post hooks also get the same names re-read after the operation under
``GANETI_POST_`` (``lib/hooksmaster.py``). :func:`nic_environ_from_hook`
turns one NIC of that into the NIC scripts' environment.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

# Linux interface names are at most 15 bytes; we also keep to characters that
# are safe in nft identifiers (our table names embed the interface name).
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_MAC_PREFIX = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){2}")
_LINK = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PROFILE_TAG = re.compile(r"synnefo:network:(?P<ident>[^:\s]+):(?P<profile>[a-z]+)")
_SG_PREFIX = "snf:sg:"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,4}")
_PORT_RANGE = re.compile(r"(?P<low>[0-9]{1,5})(-(?P<high>[0-9]{1,5}))?")
_ICMP_RANGE = re.compile(r"(?P<type>[0-9]{1,3})(\.(?P<code>[0-9]{1,3}))?")
# Protocol numbers that name a protocol we match by name (so a range applies).
_PROTOCOL_NUMBERS = {
    **{(v, n): name for v in (4, 6) for n, name in ((6, "tcp"), (17, "udp"), (132, "sctp"))},
    (4, 1): "icmp",
    (6, 58): "icmp",
}


class BadEnvironment(Exception):
    """The environment does not describe a NIC we can set up; the message is
    one line naming the variable and what is wrong with it."""


class Flavor(enum.Enum):
    """Synnefo's network flavors, by the Ganeti network tag that marks them."""

    CUSTOM = ""
    MAC_FILTERED = "private-filtered"
    IP_LESS_ROUTED = "ip-less-routed"
    PHYSICAL_VLAN = "physical-vlan"


class Profile(enum.Enum):
    """Firewall profiles, by their tag word, for traffic *to* the NIC.

    Synnefo's API names map to the tags as ENABLED -> ``protected``,
    PROTECTED -> ``limited``, DISABLED -> ``unprotected``
    (``GANETI_FIREWALL_*_TAG``). snf-network defines them: protected drops
    traffic that asks for a new connection and accepts DNS answers (UDP from
    port 53) and ICMP; limited also accepts SSH (22) and RDP (3389);
    unprotected accepts everything.
    """

    PROTECTED = "protected"
    LIMITED = "limited"
    UNPROTECTED = "unprotected"


# When an instance carries several profile tags for one NIC, the strictest wins.
_STRICTNESS = [Profile.PROTECTED, Profile.LIMITED, Profile.UNPROTECTED]


@dataclass(frozen=True)
class SgRule:
    """One security-group allow rule of a NIC, as its tag says.

    ``direction`` is ``in`` (to the VM; ``remote`` is the source) or ``out``
    (from the VM; ``remote`` is the destination); ``version`` 4 or 6;
    ``protocol`` ``any``, ``tcp``, ``udp``, ``sctp``, ``icmp`` (ICMPv6 for
    version 6) or a decimal IP protocol number. ``ports`` (tcp, udp, sctp)
    is the VM-side port range for ``in`` and the remote one for ``out``,
    None for any; ``icmp_type``/``icmp_code`` are None for any.
    ``remote`` is a normalised CIDR of ``version``.
    """

    direction: str
    version: int
    protocol: str
    remote: str
    ports: tuple[int, int] | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True)
class SecurityGroups:
    """A NIC with port security on: only ``rules`` pass (and what
    :mod:`snfd.netnode.rules` always lets through)."""

    rules: tuple[SgRule, ...] = field(default=())


@dataclass(frozen=True)
class Nic:
    """One NIC as ifup sets it up.

    ``mode`` is ``bridged`` (tap joins bridge ``link``) or ``routed`` (the
    NIC's ``ip`` is routed to the tap in routing table ``link``).
    ``mac_prefix`` is set for MAC_FILTERED only; ``ip6`` (the EUI-64 address
    in NETWORK_SUBNET6) for routed NICs of networks with an IPv6 subnet.
    ``security_groups`` is None when the NIC has no ``snf:sg:<ident>:on``
    tag (no security-group filtering).
    """

    interface: str
    instance: str
    mode: str
    link: str
    mac: str
    flavor: Flavor
    profile: Profile | None
    ip: str | None = None
    ip6: str | None = None
    mac_prefix: str | None = None
    security_groups: SecurityGroups | None = None


@dataclass(frozen=True)
class Teardown:
    """What ifdown needs to remove a NIC's setup. Only ``interface`` is
    required; ``table`` (a routed NIC's LINK), ``ip`` and ``ip6`` find a
    routed NIC's host routes and neighbour proxies (the proxies outlive the
    tap)."""

    interface: str
    table: str | None = None
    ip: str | None = None
    ip6: str | None = None


def nic_from_environ(env: Mapping[str, str], argv_interface: str | None = None) -> Nic:
    """Read the NIC to set up, or raise :class:`BadEnvironment`.

    ``argv_interface`` is the tap named on the command line, if any (Ganeti's
    ``kvm-ifup`` gets it as ``$1``); it must agree with INTERFACE.
    """
    interface = _interface(env, argv_interface)
    mode = _required(env, "MODE")
    if mode not in ("bridged", "routed"):
        raise BadEnvironment(f"MODE={mode!r} is not supported (bridged or routed)")
    link = _required(env, "LINK")
    if not _LINK.fullmatch(link):
        raise BadEnvironment(f"LINK={link!r} is not a bridge or routing table name")
    mac = _required(env, "MAC").lower()
    if not _MAC.fullmatch(mac):
        raise BadEnvironment(f"MAC={mac!r} is not a MAC address")
    ip = _ipv4(env.get("IP") or None)
    flavor = _flavor(env.get("NETWORK_TAGS", ""))
    if flavor is Flavor.IP_LESS_ROUTED and mode != "routed":
        raise BadEnvironment(f"network tag ip-less-routed needs MODE=routed, not {mode}")
    if flavor in (Flavor.MAC_FILTERED, Flavor.PHYSICAL_VLAN) and mode != "bridged":
        raise BadEnvironment(f"network tag {flavor.value} needs MODE=bridged, not {mode}")
    if mode == "routed" and ip is None:
        raise BadEnvironment("IP is required for a routed NIC")
    mac_prefix = None
    if flavor is Flavor.MAC_FILTERED:
        mac_prefix = env.get("NETWORK_MAC_PREFIX", "").lower()
        if not _MAC_PREFIX.fullmatch(mac_prefix):
            raise BadEnvironment(
                f"NETWORK_MAC_PREFIX={mac_prefix!r} is not a 3-octet MAC prefix"
                " (required by private-filtered)"
            )
        if not mac.startswith(mac_prefix + ":"):
            raise BadEnvironment(f"MAC {mac} is outside NETWORK_MAC_PREFIX {mac_prefix}")
    ip6 = None
    if mode == "routed" and env.get("NETWORK_SUBNET6"):
        ip6 = eui64(mac, env["NETWORK_SUBNET6"])
    return Nic(
        interface=interface,
        instance=env.get("INSTANCE", ""),
        mode=mode,
        link=link,
        mac=mac,
        flavor=flavor,
        profile=_profile(env),
        ip=ip,
        ip6=ip6,
        mac_prefix=mac_prefix,
        security_groups=_security_groups(env),
    )


def teardown_from_environ(env: Mapping[str, str], argv_interface: str | None = None) -> Teardown:
    """Read what ifdown removes, or raise :class:`BadEnvironment`.

    Lenient on purpose: tags may have changed since ifup, so everything that
    ifup may have added for the interface is removed whatever they say now.
    """
    interface = _interface(env, argv_interface)
    link = env.get("LINK") or None
    if link is not None and not _LINK.fullmatch(link):
        raise BadEnvironment(f"LINK={link!r} is not a bridge or routing table name")
    table = link if env.get("MODE") == "routed" else None
    ip = _ipv4(env.get("IP") or None)
    ip6 = None
    mac = env.get("MAC", "").lower()
    if env.get("NETWORK_SUBNET6") and _MAC.fullmatch(mac):
        ip6 = eui64(mac, env["NETWORK_SUBNET6"])
    return Teardown(interface=interface, table=table, ip=ip, ip6=ip6)


def eui64(mac: str, subnet6: str) -> str:
    """The SLAAC (modified EUI-64) address of ``mac`` in the /64 ``subnet6``."""
    try:
        net = ipaddress.IPv6Network(subnet6, strict=False)
    except ValueError as e:
        raise BadEnvironment(f"NETWORK_SUBNET6={subnet6!r}: {e}") from None
    if net.prefixlen > 64:
        raise BadEnvironment(f"NETWORK_SUBNET6={subnet6!r} is longer than /64")
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    iid = bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]])
    return str(net.network_address + int.from_bytes(iid, "big"))


def _interface(env: Mapping[str, str], argv_interface: str | None) -> str:
    interface = env.get("INTERFACE") or argv_interface
    if not interface:
        raise BadEnvironment("INTERFACE is not set (and no interface given as argument)")
    if argv_interface and argv_interface != interface:
        raise BadEnvironment(f"argument {argv_interface!r} disagrees with INTERFACE={interface!r}")
    if not _IFNAME.fullmatch(interface):
        raise BadEnvironment(f"INTERFACE={interface!r} is not an interface name")
    return interface


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise BadEnvironment(f"{name} is not set")
    return value


def _ipv4(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise BadEnvironment(f"IP={value!r} is not an IPv4 address") from None


def _flavor(network_tags: str) -> Flavor:
    found = {Flavor(t) for t in network_tags.split() if t in {f.value for f in Flavor} - {""}}
    if len(found) > 1:
        names = " ".join(sorted(f.value for f in found))
        raise BadEnvironment(f"NETWORK_TAGS name more than one flavor: {names}")
    return found.pop() if found else Flavor.CUSTOM


def _idents(env: Mapping[str, str]) -> set[str]:
    """The names a tag may use for the NIC: its index, name and UUID."""
    return {
        env.get("INTERFACE_INDEX", ""),
        env.get("INTERFACE_NAME", ""),
        env.get("INTERFACE_UUID", ""),
    } - {""}


def _profile(env: Mapping[str, str]) -> Profile | None:
    idents = _idents(env)
    found = set()
    for tag in env.get("TAGS", "").split():
        m = _PROFILE_TAG.fullmatch(tag)
        if m and m["ident"] in idents and m["profile"] in {p.value for p in Profile}:
            found.add(Profile(m["profile"]))
    for profile in _STRICTNESS:
        if profile in found:
            return profile
    return None


def _security_groups(env: Mapping[str, str]) -> SecurityGroups | None:
    """The NIC's security groups from its ``snf:sg:`` tags; every such tag
    naming this NIC must be well formed, marker or not (fail closed)."""
    idents = _idents(env)
    on = False
    found: list[SgRule] = []
    for tag in env.get("TAGS", "").split():
        if not tag.startswith(_SG_PREFIX):
            continue
        parts = tag.split(":", 3)
        if len(parts) < 4 or parts[2] not in idents:
            continue
        if parts[3] == "on":
            on = True
            continue
        rule = sg_rule_from_tag(tag)
        if rule not in found:
            found.append(rule)
    return SecurityGroups(tuple(found)) if on else None


def sg_rule_from_tag(tag: str) -> SgRule:
    """Parse ``snf:sg:<ident>:<dir><v>:<proto>:<range>:<remote>``, or raise
    :class:`BadEnvironment` naming the tag."""

    def bad(why: str) -> BadEnvironment:
        return BadEnvironment(f"security group tag {tag!r}: {why}")

    fields = tag.split(":", 6)
    if len(fields) != 7 or fields[:2] != ["snf", "sg"]:
        raise bad("not snf:sg:<nic>:<dir><v>:<proto>:<range>:<remote>")
    dirv, proto, span, remote = fields[3:]
    if dirv not in ("in4", "in6", "out4", "out6"):
        raise bad(f"direction {dirv!r} is not in4, in6, out4 or out6")
    direction, version = dirv[:-1], int(dirv[-1])
    if _DECIMAL.fullmatch(proto):
        number = int(proto)
        if number > 255:
            raise bad(f"protocol {proto} is not 0..255")
        proto = _PROTOCOL_NUMBERS.get((version, number), proto)
    elif proto not in ("any", "tcp", "udp", "sctp", "icmp"):
        raise bad(f"protocol {proto!r} is not any, tcp, udp, icmp, sctp or 0..255")
    try:
        net = ipaddress.ip_network(remote, strict=False)
    except ValueError:
        raise bad(f"remote {remote!r} is not a CIDR") from None
    if net.version != version or "/" not in remote:
        raise bad(f"remote {remote!r} is not an IPv{version} CIDR")
    rule = SgRule(direction=direction, version=version, protocol=proto, remote=str(net))
    if span == "any":
        return rule
    if proto in ("tcp", "udp", "sctp"):
        m = _PORT_RANGE.fullmatch(span)
        low = int(m["low"]) if m else 0
        high = int(m["high"] or low) if m else 0
        if not (m and 1 <= low <= high <= 65535):
            raise bad(f"port range {span!r} is not N or N-M within 1..65535")
        return replace(rule, ports=(low, high))
    if proto == "icmp":
        m = _ICMP_RANGE.fullmatch(span)
        icmp_type = int(m["type"]) if m else 256
        icmp_code = int(m["code"]) if m and m["code"] is not None else None
        if icmp_type > 255 or (icmp_code is not None and icmp_code > 255):
            raise bad(f"ICMP range {span!r} is not T or T.C within 0..255")
        return replace(rule, icmp_type=icmp_type, icmp_code=icmp_code)
    raise bad(f"range {span!r} must be 'any' for protocol {proto}")


def nic_environ_from_hook(env: Mapping[str, str], index: int, interface: str) -> dict[str, str]:
    """The NIC scripts' environment for NIC ``index`` (tap ``interface``) of
    the instance in a Ganeti hook's environment ``env``.

    A post hook has each value twice: ``GANETI_POST_*`` as it is after the
    operation and ``GANETI_*`` as it was before; the post values win when
    the hook environment has them.
    """
    prefix = "GANETI_POST_" if "GANETI_POST_INSTANCE_NAME" in env else "GANETI_"
    nic = f"{prefix}INSTANCE_NIC{index}_"
    out = {
        "INSTANCE": env.get(f"{prefix}INSTANCE_NAME", ""),
        "TAGS": env.get(f"{prefix}INSTANCE_TAGS", ""),
        "INTERFACE": interface,
        "INTERFACE_INDEX": str(index),
    }
    names = {"UUID": "INTERFACE_UUID", "NAME": "INTERFACE_NAME"}
    for key, value in env.items():
        if key.startswith(nic) and value:
            name = key[len(nic) :]
            out[names.get(name, name)] = value
    return out
