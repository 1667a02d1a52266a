"""The volume service (Archipelago) as a node plugin: thin copy-on-write
volumes over the node's block store, served over NBD, made and snapshotted
by the compute service and attached by Ganeti's ExtStorage provider.  See
``snfd.archip``."""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from snfd.config import Key, boolean, one_of, text
from snfd.interfaces import (
    IAuthenticator,
    IBlockReferences,
    IBlockStore,
    ISnfdPlugin,
    IVolumes,
)
from snfd.plugins import ServicePlugin


def nbd_listen(value: str) -> str:
    """A ``tcp:PORT[:interface=ADDR]`` strports description."""
    v = value.strip()
    parts = v.split(":")
    if len(parts) < 2 or parts[0] != "tcp" or not parts[1].isdigit() \
            or not 0 <= int(parts[1]) <= 65535 \
            or any(not p.startswith(("interface=", "backlog=")) for p in parts[2:]):
        raise ValueError(f"expected tcp:PORT[:interface=ADDR], got {v!r}")
    return v


def host_port(value: str) -> str:
    """``HOST:PORT``, or empty."""
    v = value.strip()
    if not v:
        return v
    host, _, port = v.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    return v


@implementer(IPlugin, ISnfdPlugin)
class ArchipPlugin(ServicePlugin):
    name = "archip"
    factory = "snfd.archip.service:from_config"
    provides = (IVolumes,)
    requires = (IBlockStore, IBlockReferences, IAuthenticator)
    config_keys = (
        Key("volume_store", one_of("file", "rados"), "file",
            "Where the volume maps' pointers and the objects volumes own are"
            " kept: file (the directory path, this node's alone) or rados (a Ceph"
            " pool every node shares, through [pithos]'s connection; needs"
            " [pithos] block_store = rados, since the maps are blocks)."),
        Key("path", text, "",
            "With volume_store = file: the directory of the volume maps' pointers"
            " and of the objects volumes own; empty: <state_dir>/volumes."),
        Key("rados_pool", text, "",
            "With volume_store = rados: the replicated pool (omap is needed, so"
            " not an erasure-coded one); empty: [pithos] rados_pool."),
        Key("rados_namespace", text, "archip",
            "With volume_store = rados: pointers go to the RADOS namespace"
            " <rados_namespace>.maps, owned objects to <rados_namespace>.objects."),
        Key("nbd_listen", nbd_listen, "tcp:10809:interface=127.0.0.1",
            "Where the NBD server listens (tcp:PORT[:interface=ADDR]).  It has no"
            " authentication: an internal address only, reachable from the"
            " Ganeti nodes.", env="SNFD_NBD_LISTEN"),
        Key("nbd_address", host_port, "",
            "HOST:PORT the ExtStorage provider connects to; empty: the interface"
            " and port of nbd_listen."),
        Key("nbd_tls", boolean, False,
            "Require TLS on the NBD server (STARTTLS with [node] tls_certificate and"
            " tls_key); providers then need the certificate's CA"
            " (snf-manage extstorage-install --nbd-ca)."),
    )


plugin = ArchipPlugin()
