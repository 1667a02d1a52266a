"""The compute service (Cyclades) as a node plugin: servers, flavors,
keypairs and images over Ganeti clusters.  See ``snfd.cyclades``."""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import Key, boolean, number, positive_integer, text
from snfd.db.migrations import Schema
from snfd.interfaces import (
    CatalogService,
    IAuthenticator,
    IComputeBackends,
    IObjectStore,
    IQuotaHolder,
    ISnfdPlugin,
)
from snfd.plugins import ServicePlugin

# Until the network and volume APIs exist, the catalog names only what runs.
# Compute speaks two dialects (snfd.cyclades.compute_views): Synnefo's tokens
# (kamaki, the UI) find Synnefo's at v2.0, Keystone v3 clients Nova's at v2.1.
CATALOG = (
    CatalogService("cyclades_compute", "compute", "compute/v2.0", "v2.0", catalogs=("v2",)),
    CatalogService("cyclades_compute", "compute", "compute/v2.1", "v2.1", catalogs=("v3",)),
    CatalogService("cyclades_plankton", "image", "image/v1.0", "v1.0", catalogs=("v2",)),
    CatalogService("image", "image", "image", "v2", catalogs=("v3",)),
)


@implementer(IPlugin, ISnfdPlugin)
class CycladesPlugin(ServicePlugin):
    name = "cyclades"
    factory = "snfd.cyclades.service:from_config"
    schema = Schema("cyclades", "snfd.cyclades.schema")
    provides = (IComputeBackends,)
    requires = (IAuthenticator, IQuotaHolder, IObjectStore)
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
        Key("flavor_disk_template", text, "drbd",
            "Ganeti disk template of flavors administrators make through Nova's"
            " API (until their extra spec SNF:disk_template names another)."),
    )


plugin = CycladesPlugin()
