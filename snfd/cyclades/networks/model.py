"""The network service's values, as the store returns them, and the
network flavors (reference 3.3, ``Network.FLAVORS``)."""

from __future__ import annotations

import datetime
from typing import Any

import attrs

NETWORK_PREFIX = "snf-net-"
NIC_PREFIX = "snf-nic-"

#: What a flavor means in Ganeti: mode, where its link comes from
#: (``"bridge"``: the settings' default bridge; ``"filtered"``: the shared
#: MAC-filtered bridge; ``"pool"``: the bridge pool; ``"table"``: a routing
#: table named after the network), whether its MAC prefix comes from the
#: pool, and the Ganeti tag the node-side hooks act on.
FLAVORS: dict[str, tuple[str, str, bool, str]] = {
    "CUSTOM": ("bridged", "bridge", False, ""),
    "IP_LESS_ROUTED": ("routed", "table", False, "ip-less-routed"),
    "MAC_FILTERED": ("bridged", "filtered", True, "private-filtered"),
    "PHYSICAL_VLAN": ("bridged", "pool", False, "physical-vlan"),
}


@attrs.frozen
class Network:
    id: int
    name: str
    flavor: str
    mode: str
    link: str
    mac_prefix: str
    userid: str | None = None
    project: str | None = None
    description: str = ""
    mac_index: int | None = None
    link_index: int | None = None
    public: bool = False
    shared: bool = False
    external: bool = False
    floating_ip_pool: bool = False
    state: str = "ACTIVE"
    deleted: bool = False
    tags: tuple[str, ...] = ()
    revision: int = 1
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None
    #: the ids of its subnets (filled by the store)
    subnets: tuple[int, ...] = ()

    @property
    def ganeti_name(self) -> str:
        return f"{NETWORK_PREFIX}{self.id}"

    @property
    def ganeti_tags(self) -> list[str]:
        tag = FLAVORS[self.flavor][3]
        return [tag] if tag else []

    def visible_to(self, user: str, admin: bool = False) -> bool:
        """Whether ``user`` may see and use it: public and shared networks,
        its owner's; administrators any."""
        return admin or self.public or self.shared or self.userid == user


@attrs.frozen
class Subnet:
    id: int
    network_id: int
    ipversion: int
    cidr: str
    gateway: str | None
    name: str = ""
    description: str = ""
    userid: str | None = None
    project: str | None = None
    dhcp: bool = True
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[dict[str, Any], ...] = ()
    #: allocation ranges, ``(first, last)`` inclusive
    pools: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    revision: int = 1
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None


@attrs.frozen
class IP:
    id: int
    subnet_id: int
    network_id: int
    address: str
    userid: str
    project: str
    port_id: int | None = None
    floating: bool = False
    #: the port a floating IP was detached from while its NIC went
    freed_from: int | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    revision: int = 1
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None
    #: for a floating IP: the server its port belongs to (filled by the store)
    device_id: int | None = None

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4


@attrs.frozen
class Port:
    id: int
    network_id: int
    userid: str
    project: str
    mac: str
    name: str = ""
    description: str = ""
    device_id: int | None = None
    device_owner: str = ""
    state: str = "DOWN"
    security_groups: tuple[str, ...] = ()
    port_security: bool = True
    admin_state_up: bool = True
    firewall_profile: str = ""
    #: the job removing its NIC (while DELETING)
    remove_job: int | None = None
    #: a user's port bound to a server: freed, not deleted, with its NIC
    preserve: bool = False
    tags: tuple[str, ...] = ()
    revision: int = 1
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None
    #: its addresses, its network's name, mode and link (filled by the store)
    ips: tuple[IP, ...] = ()
    network_name: str = ""
    network_mode: str = ""
    network_link: str = ""
    #: the names of its security groups, in ``security_groups``' order
    security_group_names: tuple[str, ...] = ()

    @property
    def nic_name(self) -> str:
        return f"{NIC_PREFIX}{self.id}"

    def address(self, version: int) -> str:
        """Its first address of that IP version, or ""."""
        return next((ip.address for ip in self.ips if ip.version == version), "")


@attrs.frozen
class SecurityRule:
    """One allow rule of a security group (Neutron's fields).  ``protocol``
    is as the client gave it (a name or a number; None: any);
    ``port_range_min``/``max`` are ports for the port protocols and the
    ICMP type and code for ICMP."""

    id: str
    group_id: str
    project: str
    direction: str
    ethertype: str
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    description: str = ""
    revision: int = 1
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None


@attrs.frozen
class SecurityGroup:
    id: str
    project: str
    name: str
    userid: str | None = None
    description: str = ""
    is_default: bool = False
    tags: tuple[str, ...] = ()
    revision: int = 1
    created: datetime.datetime | None = None
    updated: datetime.datetime | None = None
    #: its rules (filled by the store)
    rules: tuple[SecurityRule, ...] = ()
