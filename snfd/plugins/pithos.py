"""The storage service (Pithos) as a node plugin: the Swift API and its
Synnefo extensions over content-addressed blocks.  See ``snfd.pithos``."""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import Key, number, positive_integer, quantity, text
from snfd.db.migrations import Schema
from snfd.interfaces import (
    IAuthenticator,
    IBlockStore,
    IObjectStore,
    IQuotaHolder,
    ISnfdPlugin,
)
from snfd.pithos.catalog import CATALOG
from snfd.plugins import ServicePlugin


@implementer(IPlugin, ISnfdPlugin)
class PithosPlugin(ServicePlugin):
    name = "pithos"
    factory = "snfd.pithos.service:from_config"
    schema = Schema("pithos", "snfd.pithos.schema")
    catalog = CATALOG
    provides = (IBlockStore, IObjectStore)
    requires = (IAuthenticator, IQuotaHolder)
    config_keys = (
        Key("block_path", text, "",
            "Directory of the filesystem block store; empty: <state_dir>/blocks."),
        Key("public_url", text, "",
            "Base URL of public links and X-Storage-Url; empty: [identity]"
            " public_url, else this node's address."),
        Key("gc_interval", number, 3600.0,
            "Seconds between garbage collections of unreferenced blocks (leader)."),
        Key("gc_grace", number, 6 * 3600.0,
            "Seconds a block stays after it was last stored or referenced, even"
            " if no object uses it: uploads in flight finish within it."),
        Key("diskspace_default", quantity, 50 * 1024 ** 3,
            "pithos.diskspace (bytes) of a new user's base project, set when"
            " the resource is first registered; 10G style sizes allowed."),
        Key("upload_blocks_in_flight", positive_integer, 4,
            "Blocks of one upload hashed and written at the same time; more"
            " pauses reading from the client."),
    )


plugin = PithosPlugin()
