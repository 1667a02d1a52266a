"""The volume service in a node: its provider API (what Ganeti's
ExtStorage provider calls), ``IVolumes`` for other services, and the
storage service's garbage collection sparing what live maps need."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.interfaces import IVolumes
from snfd.pithos.hashmap import block_hash
from snfd.testing.nodecase import NodeTestCase

MiB = 1024 * 1024


class ArchipServiceTests(NodeTestCase):
    plugins = ("identity", "pithos", "archip")
    overrides = {("archip", "nbd_listen"): "tcp:10999:interface=127.0.0.1",
                 ("archip", "nbd_address"): "10.7.0.1:10999"}

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.archip = self.services["archip"]
        self.volumes = self.providers.get(IVolumes)
        accounts = self.services["identity"].accounts
        self.token = await accounts.set_component("archipelago")

    async def api(self, method: str, path: str, body: Any = None,
                  token: str | None = None) -> tuple[int, Any]:
        status, got, _ = await self.call(method, "/archip/v1" + path, body,
                                         token=self.token if token is None else token)
        return status, got

    async def image(self, data: bytes) -> tuple[list[str], int]:
        """``data`` in the node's block store, as a Pithos file's hashmap."""
        bs = self.volumes.block_size
        chunks = [data[i:i + bs] for i in range(0, len(data), bs)]
        blocks = self.services["pithos"].blocks
        return list(await blocks.put(chunks)), len(data)

    async def test_provides_ivolumes(self) -> None:
        verifyObject(IVolumes, self.volumes)
        self.assertEqual(self.archip.listeners()[0][0], "tcp:10999:interface=127.0.0.1")

    async def test_provider_api(self) -> None:
        """Create, clone from a snapshot, grow, snapshot, info and delete,
        with the answers the provider relies on."""
        status, root = await self.api("GET", "")
        self.assertEqual((status, root), (200, {"nbd": {"host": "10.7.0.1", "port": 10999,
                                                        "tls": False},
                                                "block_size": 4 * MiB}))
        status, made = await self.api("PUT", "/volumes/vol-a", {"size": 8 * MiB})
        self.assertEqual(status, 201)
        self.assertEqual(made, {"name": "vol-a", "size": 8 * MiB, "read_only": False,
                                "epoch": 0, "objects": {"owned": 0, "shared": 0, "zero": 2}})
        self.assertEqual((await self.api("PUT", "/volumes/vol-a", {"size": 8 * MiB}))[0], 409)
        status, same = await self.api("PUT", "/volumes/vol-a",
                                      {"size": 12 * MiB, "exist_ok": True})
        self.assertEqual((status, same["size"]), (200, 12 * MiB))
        status, snap = await self.api("POST", "/volumes/vol-a/snapshot", {"snapshot": "snap-a"})
        self.assertEqual((status, snap["read_only"], snap["size"]), (201, True, 12 * MiB))
        status, clone = await self.api("PUT", "/volumes/vol-b",
                                       {"size": 16 * MiB, "origin": "snap-a"})
        self.assertEqual((status, clone["objects"]["zero"]), (201, 4))
        status, grown = await self.api("POST", "/volumes/vol-b/grow", {"size": 20 * MiB})
        self.assertEqual((status, grown["size"]), (200, 20 * MiB))
        self.assertEqual((await self.api("POST", "/volumes/vol-b/grow", {"size": MiB}))[0], 400)
        self.assertEqual((await self.api("GET", "/volumes/vol-b"))[1]["size"], 20 * MiB)
        self.assertEqual((await self.api("DELETE", "/volumes/vol-b"))[0], 204)
        self.assertEqual((await self.api("DELETE", "/volumes/vol-b"))[0], 404)
        self.assertEqual((await self.api("GET", "/volumes/vol-b"))[0], 404)
        self.assertEqual((await self.api("PUT", "/volumes/vol-c",
                                         {"size": MiB, "origin": "nothing"}))[0], 404)
        self.assertEqual((await self.api("PUT", "/volumes/vol-c",
                                         {"size": MiB, "origin": "vol-a"}))[0], 400)

    async def test_bad_requests(self) -> None:
        """Bad names, sizes and bodies are 400; users are refused."""
        for body in ({"size": 0}, {"size": "1"}, {"size": True}, {}, [],
                     {"size": MiB, "origin": 7}, {"size": MiB, "exist_ok": "yes"}):
            status, got = await self.api("PUT", "/volumes/v", body)
            self.assertEqual(status, 400, body)
        self.assertEqual((await self.api("PUT", "/volumes/.hidden", {"size": MiB}))[0], 400)
        self.assertEqual((await self.api("PUT", "/volumes/" + "x" * 100, {"size": MiB}))[0],
                         400)
        self.assertEqual((await self.api("POST", "/volumes/v/snapshot", {}))[0], 400)
        self.assertEqual((await self.api("GET", "", token=""))[0], 401)
        _, user_token = await self.user("user@example.org")
        self.assertEqual((await self.api("GET", "", token=user_token))[0], 403)
        _, admin_token = await self.user("admin@example.org", admin=True)
        self.assertEqual((await self.api("GET", "", token=admin_token))[0], 200)

    async def test_clone_of_an_image_and_its_snapshot_hashmap(self) -> None:
        """A clone of a hashmap copies nothing; a snapshot of it after a
        write gives a hashmap of the written content."""
        bs = self.volumes.block_size
        data = b"A" * bs + b"B" * 100
        hashes, size = await self.image(data)
        info = await self.volumes.clone_hashmap("vm-disk", hashes, size, 3 * bs)
        self.assertEqual((info.shared, info.zero, info.owned), (2, 1, 0))
        vol = await self.archip.volumes.open("vm-disk", True)
        try:
            await vol.write(bs, b"C")
        finally:
            await vol.close()
        await self.volumes.snapshot("vm-disk", "vm-snap")
        size_out, out = await self.volumes.hashmap("vm-snap")
        self.assertEqual(size_out, 3 * bs)
        self.assertEqual(out[0], hashes[0])
        self.assertEqual(out[1], block_hash(b"C" + b"B" * 99))

    async def test_gc_spares_what_maps_name(self) -> None:
        """Blocks only a volume names survive the storage service's garbage
        collection; once the volume is removed they go."""
        data = b"image bytes no file references"
        hashes, size = await self.image(data)
        await self.volumes.clone_hashmap("keeper", hashes, size)
        backend = self.services["pithos"].backend
        self.clock.advance(7 * 24 * 3600)
        await backend.collect_garbage(60)
        blocks = self.services["pithos"].blocks
        self.assertEqual(await blocks.missing(hashes), [])
        await self.volumes.remove("keeper")
        self.clock.advance(7 * 24 * 3600)
        await backend.collect_garbage(60)
        self.assertEqual(await blocks.missing(hashes), hashes)


class NbdTlsConfigTests(unittest.TestCase):
    """``[archip] nbd_tls`` takes the node's certificate, and stops the
    node with a line naming the key when there is none."""

    async def test_tls_from_the_node_certificate(self) -> None:
        from pathlib import Path

        from snfd.testing.nodecase import build_node
        from snfd.tls import self_signed

        cert, key = self_signed("node.test", ["127.0.0.1"])
        d = Path(self.mktemp())
        d.mkdir()
        (d / "cert.pem").write_bytes(cert)
        (d / "key.pem").write_bytes(key)
        built = await build_node(self, ("identity", "pithos", "archip"), {
            ("archip", "nbd_tls"): "yes", ("node", "tls_certificate"): str(d / "cert.pem"),
            ("node", "tls_key"): str(d / "key.pem")})
        svc = built.services["archip"]
        self.assertIsNotNone(svc.nbd.tls)
        self.assertTrue(svc.api._tls)

    async def test_tls_without_a_certificate(self) -> None:
        from snfd.config import ConfigError
        from snfd.testing.nodecase import build_node

        with self.assertRaises(ConfigError) as caught:
            await build_node(self, ("identity", "pithos", "archip"),
                             {("archip", "nbd_tls"): "yes"})
        self.assertIn("[archip] nbd_tls: needs [node] tls_certificate and tls_key",
                      str(caught.exception))


class VolumeStoreConfigTests(unittest.TestCase):
    """``[archip] volume_store``: the filesystem by default; RADOS through
    ``[pithos]``'s connection, which must keep blocks on RADOS too; a bad
    setting stops the node with a line naming the key."""

    async def test_file_by_default(self) -> None:
        from snfd.archip.place import FileVolumePlace
        from snfd.testing.nodecase import build_node

        built = await build_node(self, ("identity", "pithos", "archip"))
        place = built.services["archip"].store.place
        self.assertIsInstance(place, FileVolumePlace)
        self.assertEqual(place.path, str(built.node.state_dir / "volumes"))

    async def test_rados_needs_blocks_on_rados(self) -> None:
        from snfd.config import ConfigError
        from snfd.testing.nodecase import build_node

        with self.assertRaises(ConfigError) as caught:
            await build_node(self, ("identity", "pithos", "archip"),
                             {("archip", "volume_store"): "rados"})
        self.assertIn("[archip] volume_store: rados needs [pithos] block_store = rados",
                      str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))

    def on_rados(self, **archip: str) -> dict[tuple[str, str], str]:
        import uuid

        from snfd.testing.ceph import ceph_unavailable, shared_cluster
        from tests.archip.test_rados_volumes import POOL

        reason = ceph_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        cluster = shared_cluster()
        cluster.create_pool(POOL)
        namespace = f"n-{uuid.uuid4().hex[:12]}"
        return {("pithos", "block_store"): "rados", ("pithos", "rados_conf"): cluster.conf,
                ("pithos", "rados_pool"): POOL, ("pithos", "rados_namespace"): namespace,
                ("archip", "volume_store"): "rados", ("archip", "rados_namespace"): namespace,
                **{("archip", k): v for k, v in archip.items()}}

    async def test_a_missing_pool_is_named(self) -> None:
        from snfd.config import ConfigError
        from snfd.testing.nodecase import build_node

        with self.assertRaises(ConfigError) as caught:
            await build_node(self, ("identity", "pithos", "archip"),
                             self.on_rados(rados_pool="no-such-pool"))
        self.assertIn("[archip] rados_pool: the cluster of", str(caught.exception))
        self.assertIn("'no-such-pool'", str(caught.exception))

    async def test_volumes_on_rados(self) -> None:
        """A node with volume_store = rados keeps its volumes in the pool:
        another node's store over the same pool sees them."""
        from twisted.internet import reactor

        from snfd.archip.rados_volumes import RadosVolumePlace, open_place
        from snfd.archip.volumes import VolumeStore
        from snfd.testing.nodecase import build_node

        overrides = self.on_rados()
        built = await build_node(self, ("identity", "pithos", "archip"), overrides)
        store = built.services["archip"].store
        blocks = built.services["pithos"].blocks
        self.addCleanup(blocks.close)
        self.addCleanup(store.place.close)
        self.assertIsInstance(store.place, RadosVolumePlace)
        self.assertIn(overrides[("pithos", "rados_pool")], store.where)
        volumes = built.providers.get(IVolumes)
        await volumes.create("vol", 4 * MiB)
        v = await volumes.open("vol", True)
        await v.write(10, b"on rados")
        await v.close()
        other = open_place(overrides[("pithos", "rados_conf")],
                           overrides[("pithos", "rados_pool")], reactor,
                           block_size=4 * MiB,
                           namespace=overrides[("archip", "rados_namespace")])
        self.addCleanup(other.close)
        elsewhere = VolumeStore(other, blocks, reactor, node="other-node")
        r = await elsewhere.open("vol", False)
        self.assertEqual(await r.read(10, 8), b"on rados")
        await r.close()
