"""The storage service (Pithos) as a node plugin: the Swift API and its
Synnefo extensions over content-addressed blocks.  See ``snfd.pithos``."""

from __future__ import annotations

from typing import Any

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


@implementer(IPlugin, ISnfdPlugin)
class PithosPlugin:
    name = "pithos"
    schema = Schema("pithos", "snfd.pithos.schema")
    provides = (IBlockStore, IObjectStore)
    requires = (IAuthenticator, IQuotaHolder)
    uses = ()
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

    def makeService(self, node: Any, section: Any, deps: Any) -> Any:
        from snfd.pithos.service import from_config

        return from_config(node, section, deps)

    def provided(self, svc: Any) -> dict[Any, Any]:
        return svc.provided()

    def mounts(self, svc: Any) -> dict[str, Any]:
        return svc.mounts()

    def listeners(self, svc: Any) -> list[Any]:
        return []

    def duties(self, svc: Any) -> list[Any]:
        return svc.duties()


plugin = PithosPlugin()
