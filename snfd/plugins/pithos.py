"""The storage service (Pithos) as a node plugin: the Swift API and its
Synnefo extensions over content-addressed blocks.  See ``snfd.pithos``."""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import Key, number, one_of, positive_integer, quantity, text
from snfd.db.migrations import Schema
from snfd.interfaces import (
    IAuthenticator,
    IBlockReferences,
    IBlockStore,
    IObjectStore,
    IQuotaHolder,
    ISnfdPlugin,
)
from snfd.pithos.catalog import CATALOG, catalog_for, storage_url_path
from snfd.pithos.policies import DEFAULT_POLICIES, parse_fallbacks, parse_policies
from snfd.plugins import ServicePlugin


@implementer(IPlugin, ISnfdPlugin)
class PithosPlugin(ServicePlugin):
    name = "pithos"
    factory = "snfd.pithos.service:from_config"
    schema = Schema("pithos", "snfd.pithos.schema")
    catalog = CATALOG

    def catalog_for(self, section: object) -> tuple[object, ...]:
        """The catalog entries as the node's ``[pithos]`` section sets them
        (``storage_url_path``)."""
        return catalog_for(section)
    provides = (IBlockStore, IObjectStore, IBlockReferences)
    requires = (IAuthenticator, IQuotaHolder)
    config_keys = (
        Key("block_store", one_of("file", "rados"), "file",
            "Where blocks are kept: file (a directory, block_path) or rados (a"
            " Ceph pool, rados_pool of the cluster rados_conf)."),
        Key("block_path", text, "",
            "Directory of the filesystem block store; empty: <state_dir>/blocks."),
        Key("rados_conf", text, "",
            "With block_store = rados: the cluster's ceph.conf (required)."),
        Key("rados_pool", text, "snfd-blocks",
            "With block_store = rados: the replicated pool of the blocks (made"
            " by the operator: ceph osd pool create, application enable synnefo)."),
        Key("rados_user", text, "admin",
            "With block_store = rados: the cephx user, without client."),
        Key("rados_keyring", text, "",
            "With block_store = rados: the keyring of rados_user; empty: as"
            " rados_conf says."),
        Key("rados_namespace", text, "",
            "With block_store = rados: the RADOS namespace of policy 0's"
            " blocks (other policies: blocks-<name>, or their directory)."),
        Key("block_fallback", parse_fallbacks, (),
            "While blocks move to another store (snf-manage"
            " pithos-migrate-blocks; docs/operations.md): the directory of the"
            " filesystem store they come from, read when a block is not in"
            " policy 0's store; policy:directory entries for other policies."
            " Never written nor collected; relative: below state_dir.",
            shown=""),
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
        Key("storage_policies", parse_policies, parse_policies(""),
            "Swift storage policies: name[|alias...][:directory] entries; the"
            " first is policy 0 (containers older than policies, and the block"
            " store images and volumes use; default directory: block_path),"
            " each other one defaults to <state_dir>/blocks-<name> (with"
            " block_store = rados the directory names a RADOS namespace).",
            shown=DEFAULT_POLICIES),
        Key("storage_policy_default", text, "",
            "The policy of new containers without X-Storage-Policy; empty: the"
            " first of storage_policies."),
        Key("storage_url_path", storage_url_path, "object-store/v1",
            "Where the catalog and v1 auth send Swift clients: object-store/v1"
            " (Synnefo's layout) or v1 (Swift's own); both are always served."),
        Key("upload_blocks_in_flight", positive_integer, 4,
            "Blocks of one upload hashed and written at the same time; more"
            " pauses reading from the client."),
    )


plugin = PithosPlugin()
