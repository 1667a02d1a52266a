"""The pools' rules and the checks of subnet requests, without I/O.

- **MAC prefixes** (``mac_prefix``): 5 hex digits, ``base + index``;
  index 0 is the default prefix (public and unpooled networks); only
  locally administered unicast prefixes are handed out
  (``usable_mac_index``).  Port MACs are chosen here, under the network's
  3-octet prefix (``ganeti_mac_prefix``: the 5 digits and a 0), and are
  unique per network in the database; Ganeti is given them and the same
  prefix, so two clusters never pick the same MAC.  (Synnefo adds a digit
  per backend because Ganeti generated the MACs, each cluster on its own;
  here one database chooses them all, so the digit would only split the
  prefix that node-side MAC filtering checks.)
- **Bridges** (``bridge``): ``<base><index>``, index from 1.
- **Addresses**: each subnet's allocation ranges (``pools``) exclude the
  network, broadcast and gateway addresses; ``choose_address`` takes the
  lowest free one.  IPv6 subnets of /64 are SLAAC: a port's address is the
  EUI-64 of its MAC (``eui64``).
- ``subnet_request``: the Neutron subnet body checked (CIDR size limit,
  gateway, ranges that overlap each other or the gateway: 409).
"""

from __future__ import annotations

import ipaddress
import itertools
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from snfd import errors

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = Any   # ipaddress.IPv4Address | IPv6Address of one version


def _hex_digits(prefix: str) -> str:
    return prefix.replace(":", "").lower()


def _colons(digits: str) -> str:
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))


def mac_prefix(base: str, index: int) -> str:
    """The ``index``-th prefix after ``base`` (``"aa:00:0"`` style)."""
    value = int(_hex_digits(base), 16) + index
    if value >= 1 << 20:
        raise ValueError("MAC prefix pool overflows 5 hex digits")
    return _colons(f"{value:05x}")


def usable_mac_index(base: str, index: int) -> bool:
    """Whether the ``index``-th prefix may be handed out: not the default
    one, and locally administered unicast (first octet ``xxxxxx10``)."""
    if index <= 0:
        return False
    first = int(_hex_digits(mac_prefix(base, index))[:2], 16)
    return first & 0x03 == 0x02


def check_mac_base(base: str) -> str:
    """``base`` if it is 5 hex digits; ValueError otherwise."""
    digits = _hex_digits(base)
    if len(digits) != 5 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"not a 5-hex-digit MAC prefix: {base!r}")
    return _colons(digits)


def ganeti_mac_prefix(prefix: str) -> str:
    """A network's 3-octet MAC prefix (Ganeti's ``mac_prefix``, the
    node-side scripts' ``NETWORK_MAC_PREFIX``) from its 5 pool digits."""
    return _colons(_hex_digits(prefix) + "0")


def random_mac(prefix: str) -> str:
    """A MAC under the network's 3-octet prefix (``ganeti_mac_prefix``);
    the caller makes it unique."""
    return _colons(_hex_digits(ganeti_mac_prefix(prefix)) + secrets.token_hex(3))


def under_prefix(mac: str, prefix: str) -> bool:
    """Whether ``mac`` is under the network's 3-octet prefix."""
    return _hex_digits(mac).startswith(_hex_digits(ganeti_mac_prefix(prefix)))


def check_mac(value: Any) -> str:
    """A MAC address a client gave, normalised; 400 unless unicast."""
    digits = _hex_digits(value) if isinstance(value, str) else ""
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits) \
            or int(digits[:2], 16) & 1:
        raise errors.BadRequest(f"Invalid MAC address {str(value)[:40]!r}: a unicast MAC"
                                " such as fa:16:3e:00:00:01 is needed.")
    return _colons(digits)


def bridge(base: str, index: int) -> str:
    return f"{base}{index}"


def eui64(cidr: str, mac: str) -> str:
    """The SLAAC address of ``mac`` in the /64 ``cidr``."""
    octets = bytearray(bytes.fromhex(_hex_digits(mac)))
    octets[0] ^= 0x02
    interface = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    network = ipaddress.IPv6Network(cidr)
    return str(network[int.from_bytes(interface, "big")])


def is_slaac(subnet_cidr: str, ipversion: int) -> bool:
    return ipversion == 6 and ipaddress.ip_network(subnet_cidr).prefixlen == 64


def in_pools(address: str, pools: Iterable[Sequence[str]]) -> bool:
    value = int(ipaddress.ip_address(address))
    return any(int(ipaddress.ip_address(a)) <= value <= int(ipaddress.ip_address(b))
               for a, b in pools)


def choose_address(pools: Iterable[Sequence[str]], used: Iterable[str]) -> str | None:
    """The lowest address of ``pools`` not in ``used``, or None."""
    taken = {int(ipaddress.ip_address(u)) for u in used}
    for first, last in pools:
        low, high = int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))
        candidate = low
        for value in sorted(t for t in taken if low <= t <= high):
            if value > candidate:
                break
            candidate = value + 1
        if candidate <= high:
            return str(ipaddress.ip_address(candidate))
    return None


@attrs.frozen
class SubnetRequest:
    """A subnet to create, checked."""

    ipversion: int
    cidr: str
    gateway: str | None
    pools: tuple[tuple[str, str], ...]
    name: str = ""
    description: str = ""
    dhcp: bool = True
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[dict[str, str], ...] = ()


def _network_of(value: Any, version: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise errors.BadRequest("A subnet needs a cidr such as 10.0.0.0/24.")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise errors.BadRequest(f"Invalid cidr {value[:60]!r}.") from None
    if "/" not in value:
        raise errors.BadRequest(f"Invalid cidr {value[:60]!r}: it needs a prefix length.")
    if version not in (4, 6) or isinstance(version, bool):
        raise errors.BadRequest("ip_version must be 4 or 6.")
    if network.version != version:
        raise errors.BadRequest(f"cidr {value} is not an IPv{version} network.")
    return network


def _address(value: Any, network: IPNetwork, what: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None or address.version != network.version:
        raise errors.BadRequest(f"Invalid {what} {str(value)[:60]!r}.")
    return address


def _usable(network: IPNetwork) -> tuple[IPAddress, IPAddress]:
    """The first and last host addresses of ``network``."""
    if network.num_addresses <= 2:
        raise errors.BadRequest(f"cidr {network} is too small for any port.")
    if network.version == 6:
        return network[1], network[-1]
    return network[1], network[-2]


def default_pools(network: IPNetwork, gateway: IPAddress | None
                  ) -> tuple[tuple[str, str], ...]:
    """Every host address of ``network`` but the gateway, as ranges."""
    first, last = _usable(network)
    if gateway is None or not first <= gateway <= last:
        return ((str(first), str(last)),)
    out = []
    if gateway > first:
        out.append((str(first), str(gateway - 1)))
    if gateway < last:
        out.append((str(gateway + 1), str(last)))
    return tuple(out)


def subnet_request(body: Mapping[str, Any], max_prefix: dict[int, int],
                   limited: bool) -> SubnetRequest:
    """Check a Neutron subnet body (``network_id`` aside).

    ``max_prefix``: per IP version, the largest network (smallest prefix
    length) users may ask for when ``limited`` (administrators are not).
    """
    version = body.get("ip_version", 4)
    network = _network_of(body.get("cidr"), version)
    if limited and network.prefixlen < max_prefix[network.version]:
        raise errors.Conflict(
            f"cidr {network} is larger than this cloud allows: at most"
            f" /{max_prefix[network.version]}.")
    first, last = _usable(network)
    gateway: IPAddress | None
    if "gateway_ip" in body and body["gateway_ip"] is None:
        gateway = None
    elif body.get("gateway_ip") is not None:
        gateway = _address(body["gateway_ip"], network, "gateway_ip")
        if gateway not in network or gateway == network.network_address or (
                network.version == 4 and gateway == network.broadcast_address):
            raise errors.BadRequest(f"gateway_ip {gateway} is not a host of {network}.")
    else:
        gateway = first
    given = body.get("allocation_pools")
    if given is None:
        pools = default_pools(network, gateway)
    else:
        if not isinstance(given, list) or not given:
            raise errors.BadRequest("allocation_pools must be a list of {start, end}.")
        ranges = []
        for item in given:
            if not isinstance(item, dict):
                raise errors.BadRequest("allocation_pools must be a list of {start, end}.")
            start = _address(item.get("start"), network, "allocation pool start")
            end = _address(item.get("end"), network, "allocation pool end")
            if not (first <= start <= end <= last):
                raise errors.BadRequest(
                    f"The allocation pool {start} - {end} is not within {network}'s"
                    f" hosts ({first} - {last}).")
            ranges.append((start, end))
        ranges.sort()
        for (a_start, a_end), (b_start, _) in itertools.pairwise(ranges):
            if b_start <= a_end:
                raise errors.Conflict(f"The allocation pools overlap: {a_start} - {a_end}"
                                      f" and {b_start}.")
        if gateway is not None:
            for start, end in ranges:
                if start <= gateway <= end:
                    raise errors.Conflict(f"The gateway {gateway} is inside the allocation"
                                          f" pool {start} - {end}.")
        pools = tuple((str(a), str(b)) for a, b in ranges)
    dns = body.get("dns_nameservers") or []
    if not isinstance(dns, list) or len(dns) > 5:
        raise errors.BadRequest("dns_nameservers must be a list of at most 5 addresses.")
    servers = []
    for item in dns:
        try:
            servers.append(str(ipaddress.ip_address(item)))
        except (ValueError, TypeError):
            raise errors.BadRequest(f"Invalid DNS name server {str(item)[:60]!r}.") from None
    if len(set(servers)) != len(servers):
        raise errors.BadRequest("Duplicate DNS name servers.")
    routes = _host_routes(body.get("host_routes") or [], network.version)
    dhcp = body.get("enable_dhcp", True)
    if not isinstance(dhcp, bool):
        raise errors.BadRequest("enable_dhcp must be true or false.")
    if network.version == 6:
        for key in ("ipv6_ra_mode", "ipv6_address_mode"):
            if body.get(key) not in (None, "slaac"):
                raise errors.BadRequest(
                    f"{key} {body.get(key)!r} is not supported: IPv6 subnets here use SLAAC.")
    return SubnetRequest(
        ipversion=network.version, cidr=str(network),
        gateway=None if gateway is None else str(gateway), pools=pools,
        name=_text(body, "name"), description=_text(body, "description"), dhcp=dhcp,
        dns_nameservers=tuple(servers), host_routes=routes)


def _host_routes(value: Any, version: int) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or len(value) > 20:
        raise errors.BadRequest("host_routes must be a list of {destination, nexthop}.")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise errors.BadRequest("host_routes must be a list of {destination, nexthop}.")
        try:
            destination = ipaddress.ip_network(str(item.get("destination")), strict=False)
            nexthop = ipaddress.ip_address(str(item.get("nexthop")))
        except (ValueError, TypeError):
            raise errors.BadRequest("Invalid host route.") from None
        if destination.version != version or nexthop.version != version:
            raise errors.BadRequest("A host route must be of the subnet's IP version.")
        out.append({"destination": str(destination), "nexthop": str(nexthop)})
    return tuple(out)


def _text(body: Mapping[str, Any], key: str, limit: int = 255) -> str:
    value = body.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > limit:
        raise errors.BadRequest(f"{key} must be a string of at most {limit} characters.")
    return value
