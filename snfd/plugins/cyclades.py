"""The compute service (Cyclades) as a node plugin: servers, flavors,
keypairs and images over Ganeti clusters.  See ``snfd.cyclades``."""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import Key, boolean, names, number, positive_integer, text
from snfd.db.migrations import Schema
from snfd.interfaces import (
    CatalogService,
    IAuthenticator,
    IBlockStore,
    IComputeBackends,
    IObjectStore,
    IQuotaHolder,
    ISnfdPlugin,
    IVolumes,
)
from snfd.plugins import ServicePlugin

# Compute speaks two dialects (snfd.cyclades.compute_views): Synnefo's tokens
# (kamaki, the UI) find Synnefo's at v2.0, Keystone v3 clients Nova's at v2.1.
CATALOG = (
    CatalogService("cyclades_compute", "compute", "compute/v2.0", "v2.0", catalogs=("v2",)),
    CatalogService("cyclades_compute", "compute", "compute/v2.1", "v2.1", catalogs=("v3",)),
    CatalogService("cyclades_plankton", "image", "image/v1.0", "v1.0", catalogs=("v2",)),
    CatalogService("image", "image", "image", "v2", catalogs=("v3",)),
    CatalogService("cyclades_network", "network", "network/v2.0", "v2.0", catalogs=("v2",)),
    CatalogService("neutron", "network", "network", "v2.0", catalogs=("v3",)),
    CatalogService("cinderv3", "volumev3", "volume/v3", "v3", catalogs=("v3",)),
    CatalogService("cinder", "block-storage", "volume/v3", "v3", catalogs=("v3",)),
)

_FLAVORS = ("MAC_FILTERED", "PHYSICAL_VLAN", "IP_LESS_ROUTED", "CUSTOM")


def mac_base(value: str) -> str:
    """A MAC prefix of 5 hex digits (``aa:00:0``)."""
    digits = value.strip().replace(":", "").lower()
    if len(digits) != 5 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"expected 5 hex digits such as aa:00:0, got {value.strip()!r}")
    if int(digits[:2], 16) & 0x03 != 0x02:
        raise ValueError(f"{value.strip()!r} is not a locally administered unicast prefix")
    return value.strip().lower()


def network_flavors(value: str) -> tuple[str, ...]:
    """Network types, comma separated (of MAC_FILTERED, PHYSICAL_VLAN,
    IP_LESS_ROUTED, CUSTOM)."""
    found = names(value)
    for flavor in found:
        if flavor not in _FLAVORS:
            raise ValueError(f"unknown network type {flavor!r}; one of {', '.join(_FLAVORS)}")
    return found


@implementer(IPlugin, ISnfdPlugin)
class CycladesPlugin(ServicePlugin):
    name = "cyclades"
    factory = "snfd.cyclades.service:from_config"
    schema = Schema("cyclades", "snfd.cyclades.schema")
    provides = (IComputeBackends,)
    requires = (IAuthenticator, IQuotaHolder, IObjectStore)
    uses = (IVolumes, IBlockStore)
    catalog = CATALOG
    config_keys = (
        Key("public_url", text, "",
            "Base URL clients (and snf-image, for server parameters) reach this"
            " service at; empty: [identity] public_url, else this node's address."),
        Key("os", text, "snf-image+default",
            "Ganeti OS definition new servers are created with."),
        Key("system_images_owner", text, "",
            "Account (uuid) whose images are system images; empty: the built-in"
            " system account snfd.cyclades.images registers them under."),
        Key("events_prefix", text, "snf",
            "Instance-name prefix of the job events consumed (routing keys"
            " ganeti.<prefix>.event.*)."),
        Key("dispatcher", boolean, True,
            "Consume Ganeti job events on this node (competing with other nodes)."),
        Key("reconcile_interval", number, 300.0,
            "Seconds between reconciliations of servers with Ganeti (leader)."),
        Key("poll_interval", number, 2.0,
            "Seconds between RAPI job polls of backends whose events are 'poll'."),
        Key("stats_min_age", number, 60.0,
            "Backend statistics older than this many seconds are refreshed from"
            " RAPI before an allocation."),
        Key("max_metadata", positive_integer, 10, "Metadata items a server may have."),
        Key("password_ttl", number, 3600.0,
            "Seconds GET /servers/<id>/password shows a new server's password."),
        Key("rapi_timeout", number, 30.0, "Seconds a RAPI call may take."),
        Key("default_server_networks", names, "",
            "Networks a server that names none is connected to: network ids, or"
            " SNF:ANY_PUBLIC (the first public network); empty: one NIC on the"
            " cluster's default link, without a port.  The embedded default (no"
            " config file, no database URL) has SNF:ANY_PUBLIC."),
        Key("network_flavors", network_flavors, "MAC_FILTERED",
            "Network types users may create through the network API."),
        Key("mac_prefix_base", mac_base, "aa:00:0",
            "First MAC prefix (5 hex digits) of the pool private networks take theirs from."),
        Key("default_bridge", text, "br0", "Bridge of CUSTOM networks on the Ganeti nodes."),
        Key("filtered_bridge", text, "prv0",
            "Shared bridge of MAC_FILTERED networks on the Ganeti nodes."),
        Key("bridge_base", text, "prv",
            "Name prefix of the bridge pool PHYSICAL_VLAN networks take theirs from."),
        Key("bridge_pool_size", positive_integer, 20, "Bridges in that pool."),
        Key("nic_hotplug", boolean, True,
            "Add and remove NICs of running servers (Ganeti hotplug)."),
        Key("flavor_disk_template", text, "drbd",
            "Ganeti disk template of flavors administrators make through Nova's"
            " API (until their extra spec SNF:disk_template names another)."),
    )


plugin = CycladesPlugin()
