"""The volume API (Cinder v3 on Synnefo's semantics) on a node with the
volume service: thin volumes blank, from an image and from a snapshot,
with their quota, ownership and bad input; snapshots published as images;
volume types."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from snfd.testing.compute import compute_stack

GiB = 1 << 30


class VolumeCase(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self, volumes=True)
        self.alice, self.token = await self.stack.user("alice")
        self.bob, self.bob_token = await self.stack.user("bob")
        self.volumes = self.stack.service.volumes.thin

    async def vol(self, method: str, path: str, token: str | None = None,
                  body: Any = None, project: bool = False) -> tuple[int, Any]:
        base = f"{self.stack.url}/volume/v3" + (f"/{self.alice}" if project else "")
        code, reply, _ = await self.stack.call(method, base + path, token or self.token, body)
        return code, reply

    async def volume(self, token: str | None = None, **over: Any) -> dict[str, Any]:
        code, reply = await self.vol("POST", "/volumes", token,
                                     {"volume": {"size": 1, "name": "data", **over}})
        self.assertEqual(code, 202, reply)
        return reply["volume"]


class VolumeTests(VolumeCase):
    async def test_versions_and_types(self):
        code, reply = await self.vol("GET", "/")
        self.assertEqual((code, reply["versions"][0]["id"]), (200, "v3.0"))
        code, reply = await self.vol("GET", "/types")
        names = {t["name"]: t for t in reply["volume_types"]}
        self.assertEqual(names["ext_archipelago"]["extra_specs"]["SNF:detachable"], "true")
        self.assertEqual(names["file"]["extra_specs"]["SNF:detachable"], "false")
        code, reply = await self.vol("GET", f"/types/{names['file']['id']}")
        self.assertEqual((code, reply["volume_type"]["name"]), (200, "file"))
        self.assertEqual((await self.vol("GET", "/types/nothing"))[0], 404)

    async def test_blank_volume_lifecycle_and_quota(self):
        """A blank volume is a zero map of its size, charged to
        cyclades.disk; the owner alone sees it; deleting it releases both."""
        before = (await self.stack.usage(self.alice))["cyclades.disk"]
        made = await self.volume(size=2, metadata={"k": "v"})
        self.assertEqual((made["status"], made["size"], made["volume_type"]),
                         ("available", 2, "ext_archipelago"))
        self.assertEqual(made["bootable"], "false")
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.disk"],
                         before + 2 * GiB)
        info = await self.volumes.info(f"snf-vol-{made['id']}")
        self.assertEqual((info.size, info.zero, info.owned), (2 * GiB, 512, 0))
        code, reply = await self.vol("GET", "/volumes/detail")
        self.assertEqual([v["id"] for v in reply["volumes"]], [made["id"]])
        code, reply = await self.vol("GET", "/volumes", project=True)
        self.assertEqual([v["id"] for v in reply["volumes"]], [made["id"]])
        self.assertEqual((await self.vol("GET", f"/volumes/{made['id']}",
                                         self.bob_token))[0], 404)
        self.assertEqual((await self.vol("DELETE", f"/volumes/{made['id']}",
                                         self.bob_token))[0], 404)
        code, reply = await self.vol("PUT", f"/volumes/{made['id']}", body={
            "volume": {"name": "renamed", "description": "d", "metadata": {"a": "b"}}})
        self.assertEqual((code, reply["volume"]["name"], reply["volume"]["metadata"]),
                         (200, "renamed", {"a": "b"}))
        code, reply = await self.vol("POST", f"/volumes/{made['id']}/action",
                                     body={"os-extend": {"new_size": 3}})
        self.assertEqual(code, 202, reply)
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.disk"],
                         before + 3 * GiB)
        self.assertEqual((await self.volumes.info(f"snf-vol-{made['id']}")).size, 3 * GiB)
        code, _ = await self.vol("DELETE", f"/volumes/{made['id']}")
        self.assertEqual(code, 202)
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.disk"], before)
        with self.assertRaises(KeyError):
            await self.volumes.info(f"snf-vol-{made['id']}")
        self.assertEqual((await self.vol("GET", f"/volumes/{made['id']}"))[0], 404)

    async def test_reassign(self):
        """reassign moves a volume and its cyclades.disk to another project
        of its owner; a project that cannot hold it refuses (nothing moves)."""
        other = "0c0ffee0-0000-4000-8000-000000000001"
        await self.stack.set_limits(self.alice, other)
        made = await self.volume(size=2)
        before = (await self.stack.usage(self.alice))["cyclades.disk"]
        code, reply = await self.vol("POST", f"/volumes/{made['id']}/action",
                                     body={"reassign": {"project": other}})
        self.assertEqual(code, 202, reply)
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.disk"],
                         before - 2 * GiB)
        self.assertEqual((await self.stack.usage(self.alice, other))["cyclades.disk"], 2 * GiB)
        code, reply = await self.vol("GET", f"/volumes/{made['id']}")
        self.assertEqual(reply["volume"]["os-vol-tenant-attr:tenant_id"], other)
        code, reply = await self.vol("POST", f"/volumes/{made['id']}/action",
                                     body={"reassign": {"project": "nowhere"}})
        self.assertIn(code, (403, 404, 409, 413), reply)  # not a project of hers: 404
        code, reply = await self.vol("GET", f"/volumes/{made['id']}")
        self.assertEqual(reply["volume"]["os-vol-tenant-attr:tenant_id"], other)
        code, reply = await self.vol("POST", f"/volumes/{made['id']}/action",
                                     body={"reassign": {}})
        self.assertEqual(code, 400, reply)

    async def test_over_quota(self):
        """A volume beyond cyclades.disk is 413 and leaves nothing."""
        carol, token = await self.stack.user("carol", disk=GiB)
        code, reply = await self.vol("POST", "/volumes", token,
                                     {"volume": {"size": 2}})
        self.assertEqual(code, 413, reply)
        code, reply = await self.vol("GET", "/volumes", token)
        self.assertEqual(reply["volumes"], [])

    async def test_bad_input(self):
        for body in ({"volume": {}}, {"volume": {"size": 0}}, {"volume": {"size": "x"}},
                     {"volume": {"size": 1, "volume_type": "file"}},
                     {"volume": {"size": 1, "volume_type": "nothing"}},
                     {"volume": {"size": 1, "imageRef": "nothing"}},
                     {"volume": {"size": 1, "snapshot_id": "nothing"}},
                     {"volume": {"size": 1, "source_volid": "x"}},
                     {"volume": {"size": 1, "metadata": {"k": 1}}},
                     {"volume": {"size": 1, "name": 7}}, {"volume": []}, {}):
            code, reply = await self.vol("POST", "/volumes", body=body)
            self.assertIn(code, (400, 404), body)
            self.assertEqual(list(reply), ["badRequest" if code == 400 else "itemNotFound"])
        made = await self.volume()
        for action in ({"os-extend": {"new_size": 1}}, {"os-extend": {}},
                       {"os-reset_status": {}}, {}):
            code, reply = await self.vol("POST", f"/volumes/{made['id']}/action", body=action)
            self.assertEqual(code, 400, action)
        self.assertEqual((await self.vol("GET", "/volumes/not-a-uuid"))[0], 404)

    async def test_from_image_copies_nothing(self):
        """A volume from an image names the image's blocks: nothing is
        copied; it is bootable and at least the image's size."""
        image = self.stack.image
        made = await self.volume(imageRef=image.id, size=None)
        self.assertEqual((made["status"], made["size"], made["bootable"]),
                         ("available", 1, "true"))
        code, shown = await self.vol("GET", f"/volumes/{made['id']}")
        self.assertEqual(shown["volume"]["volume_image_metadata"], {"image_id": image.id})
        info = await self.volumes.info(f"snf-vol-{made['id']}")
        self.assertEqual((info.shared, info.owned), (1, 0))
        store = self.volumes.store
        opened = await store.open(f"snf-vol-{made['id']}", False)
        try:
            data = await opened.read(0, image.size)
        finally:
            await opened.close()
        self.assertEqual(data, b"Debian Bookworm (diskdump)\n" * 64)

    async def test_from_image_needs_an_active_image_and_its_min_disk(self):
        """As Cinder: a volume from an image is at least the image's
        ``min_disk``, and a deactivated image makes none (400)."""
        s = self.stack
        glance = f"{s.url}/image/v2/images"
        code, made, _ = await s.call("POST", glance, self.token, {
            "name": "needs 3", "disk_format": "raw", "container_format": "bare",
            "min_disk": 3})
        self.assertEqual(code, 201, made)
        code, reply, _ = await s.call("PUT", f"{glance}/{made['id']}/file", self.token,
                                      raw=b"x" * 1024,
                                      headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(code, 204, reply)
        code, reply = await self.vol("POST", "/volumes", body={"volume": {
            "size": 2, "imageRef": made["id"]}})
        self.assertEqual(code, 400, reply)
        code, reply = await self.vol("POST", "/volumes", body={"volume": {
            "imageRef": made["id"]}})
        self.assertEqual((code, reply["volume"]["size"]), (202, 3))
        code, reply, _ = await s.call("POST", f"{glance}/{made['id']}/actions/deactivate",
                                      self.token)
        self.assertEqual(code, 204, reply)
        code, reply = await self.vol("POST", "/volumes", body={"volume": {
            "size": 3, "imageRef": made["id"]}})
        self.assertEqual(code, 400, reply)
        self.assertIn("deactivated", reply["badRequest"]["message"])

    async def test_snapshots(self):
        """A snapshot freezes the volume and is published as an image in
        the owner's snapshots container; a volume made from it has its
        bytes; deleting it removes its map and unregisters its image."""
        made = await self.volume(size=1)
        store = self.volumes.store
        opened = await store.open(f"snf-vol-{made['id']}", True)
        try:
            await opened.write(4096, b"written before the snapshot")
        finally:
            await opened.close()
        code, reply = await self.vol("POST", "/snapshots", body={"snapshot": {
            "volume_id": made["id"], "name": "snap", "description": "first"}})
        self.assertEqual(code, 202, reply)
        snap = reply["snapshot"]
        self.assertEqual((snap["status"], snap["size"]), ("creating", 1))
        await self.stack.service.volumes.drain()
        code, reply = await self.vol("GET", f"/snapshots/{snap['id']}")
        self.assertEqual(reply["snapshot"]["status"], "available")
        self.assertEqual(reply["snapshot"]["os-extended-snapshot-attributes:progress"],
                         "100%")
        image_id = (await self.stack.service.volumes.snapshot(self.alice, snap["id"])).image_id
        image = await self.stack.images.get(self.alice, image_id)
        self.assertTrue(image.is_snapshot)
        self.assertEqual((image.size, image.volume_id), (GiB, made["id"]))
        self.assertEqual((await self.vol("GET", f"/snapshots/{snap['id']}",
                                         self.bob_token))[0], 404)
        code, reply = await self.vol("GET", "/snapshots/detail")
        self.assertEqual([s["id"] for s in reply["snapshots"]], [snap["id"]])

        clone = await self.volume(snapshot_id=snap["id"], size=2)
        self.assertEqual(clone["snapshot_id"], snap["id"])
        opened = await store.open(f"snf-vol-{clone['id']}", False)
        try:
            self.assertEqual(await opened.read(4096, 27), b"written before the snapshot")
            self.assertEqual(opened.size, 2 * GiB)
        finally:
            await opened.close()
        # From the snapshot's image too (as a server's boot source would).
        from_image = await self.volume(imageRef=image_id, size=None)
        self.assertEqual(from_image["size"], 1)

        code, _ = await self.vol("DELETE", f"/snapshots/{snap['id']}")
        self.assertEqual(code, 202)
        with self.assertRaises(KeyError):
            await self.volumes.info(f"snf-snap-{snap['id']}")
        self.assertEqual((await self.vol("GET", f"/snapshots/{snap['id']}"))[0], 404)
        # The clone keeps its bytes.
        opened = await store.open(f"snf-vol-{clone['id']}", False)
        try:
            self.assertEqual(await opened.read(4096, 27), b"written before the snapshot")
        finally:
            await opened.close()


class ThinServerCase(VolumeCase):
    """``VolumeCase`` with a thin flavor to build servers on."""

    async def setUp(self) -> None:
        await super().setUp()
        self.thin_flavor = await self.stack.flavor(1, 1024, 1, "ext_archipelago")

    async def server(self, **over: Any) -> dict[str, Any]:
        s = self.stack
        body = {"name": "vm", "flavorRef": self.thin_flavor.id, "imageRef": s.image.id,
                **over}
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": body})
        self.assertEqual(code, 202, reply)
        created = reply["server"]
        await s.follow((await s.server(created["id"])).backendjobid)
        return created

    async def attachments(self, server_id: Any) -> list[dict[str, Any]]:
        code, reply, _ = await self.stack.call(
            "GET", f"/servers/{server_id}/os-volume_attachments", self.token)
        self.assertEqual(code, 200, reply)
        return list(reply["volumeAttachments"])


class ServerVolumeTests(ThinServerCase):
    """Servers on a thin flavor: their boot disk is a thin clone of the
    image; volumes attach and detach as Ganeti disks; boot from a volume
    or a snapshot; what goes when a server is deleted."""

    async def test_boot_disk_is_a_thin_clone(self):
        """The server's disk is a new volume cloned from the image (nothing
        copied), in use, shown on the server; the server's own charge covers
        it; deleting the server deletes it."""
        before = (await self.stack.usage(self.alice))["cyclades.disk"]
        created = await self.server()
        server = await self.stack.server(created["id"])
        self.assertEqual(server.operstate, "STARTED")
        [root] = server.volumes
        self.assertEqual((root.status, root.bootable, root.delete_on_termination,
                          root.charged), ("in-use", True, True, False))
        info = await self.volumes.info(root.map_name)
        self.assertEqual((info.size, info.shared, info.owned), (GiB, 1, 0))
        self.assertEqual([d["name"] for d in server.disks], [root.map_name])
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.disk"],
                         before + GiB)  # the flavor's disk, once
        code, reply, _ = await self.stack.call("GET", f"/servers/{created['id']}",
                                               self.token)
        self.assertEqual(reply["server"]["volumes"], [root.id])
        [attachment] = await self.attachments(created["id"])
        self.assertEqual(attachment["volumeId"], root.id)
        code, reply = await self.vol("GET", f"/volumes/{root.id}")
        self.assertEqual((reply["volume"]["status"],
                          reply["volume"]["attachments"][0]["server_id"]),
                         ("in-use", str(created["id"])))
        # The boot disk cannot be detached, nor deleted while in use.
        code, reply, _ = await self.stack.call(
            "DELETE", f"/servers/{created['id']}/os-volume_attachments/{root.id}", self.token)
        self.assertEqual(code, 400, reply)
        self.assertEqual((await self.vol("DELETE", f"/volumes/{root.id}"))[0], 400)

        code, _, _ = await self.stack.call("DELETE", f"/servers/{created['id']}", self.token)
        self.assertEqual(code, 204)
        await self.stack.follow_all()
        self.assertEqual((await self.vol("GET", f"/volumes/{root.id}"))[0], 404)
        with self.assertRaises(KeyError):
            await self.volumes.info(root.map_name)
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.disk"], before)

    async def test_attach_and_detach(self):
        """A volume attaches as a Ganeti disk (in-use once the job ends) and
        detaches (available, its data kept); another user's volume or a
        volume in use is refused; deleting the server frees what it had."""
        created = await self.server()
        volume = await self.volume(size=2)
        code, reply, _ = await self.stack.call(
            "POST", f"/servers/{created['id']}/os-volume_attachments", self.token,
            {"volumeAttachment": {"volumeId": volume["id"]}})
        self.assertEqual(code, 200, reply)
        self.assertEqual(reply["volumeAttachment"]["volumeId"], volume["id"])
        code, reply = await self.vol("GET", f"/volumes/{volume['id']}")
        self.assertEqual(reply["volume"]["status"], "attaching")
        await self.stack.follow_all()
        code, reply = await self.vol("GET", f"/volumes/{volume['id']}")
        self.assertEqual(reply["volume"]["status"], "in-use")
        server = await self.stack.server(created["id"])
        self.assertEqual(len(server.disks), 2)
        self.assertEqual(len(await self.attachments(created["id"])), 2)
        # In use: not attachable again, not deletable.
        code, reply, _ = await self.stack.call(
            "POST", f"/servers/{created['id']}/os-volume_attachments", self.token,
            {"volumeAttachment": {"volumeId": volume["id"]}})
        self.assertEqual(code, 400, reply)
        self.assertEqual((await self.vol("DELETE", f"/volumes/{volume['id']}"))[0], 400)
        # Another user's volume is not found.
        bobs = await self.volume(token=self.bob_token)
        code, reply, _ = await self.stack.call(
            "POST", f"/servers/{created['id']}/os-volume_attachments", self.token,
            {"volumeAttachment": {"volumeId": bobs["id"]}})
        self.assertEqual(code, 404, reply)

        # Nova's swap (administrators): 404 for a volume not attached, else
        # refused (Ganeti cannot replace a disk's storage).
        _, root_token = await self.stack.admin()
        swap = f"/servers/{created['id']}/os-volume_attachments"
        body = {"volumeAttachment": {"volumeId": bobs["id"]}}
        code, reply, _ = await self.stack.call("PUT", f"{swap}/{bobs['id']}", root_token, body)
        self.assertEqual(code, 404, reply)
        code, reply, _ = await self.stack.call("PUT", f"{swap}/{volume['id']}", root_token,
                                               body)
        self.assertEqual(code, 400, reply)
        code, reply, _ = await self.stack.call("PUT", f"{swap}/{volume['id']}", self.token,
                                               body)
        self.assertEqual(code, 403, reply)

        # The simulated cluster's hypervisor (fake) cannot hot-unplug, as
        # Ganeti's: a running server keeps its disks.
        detach = f"/servers/{created['id']}/os-volume_attachments/{volume['id']}"
        code, reply, _ = await self.stack.call("DELETE", detach, self.token)
        self.assertEqual(code, 409, reply)
        code, reply = await self.vol("GET", f"/volumes/{volume['id']}")
        self.assertEqual(reply["volume"]["status"], "in-use")
        code, reply, _ = await self.stack.call("POST", f"/servers/{created['id']}/action",
                                               self.token, {"os-stop": None})
        self.assertEqual(code, 202, reply)
        await self.stack.follow_all()
        code, reply, _ = await self.stack.call("DELETE", detach, self.token)
        self.assertEqual(code, 202, reply)
        await self.stack.follow_all()
        code, reply = await self.vol("GET", f"/volumes/{volume['id']}")
        self.assertEqual((reply["volume"]["status"], reply["volume"]["attachments"]),
                         ("available", []))
        self.assertEqual(len((await self.stack.server(created["id"])).disks), 1)
        await self.volumes.info(f"snf-vol-{volume['id']}")  # the map stays

        # Attached again, then the server goes: the volume stays, available.
        await self.stack.call("POST", f"/servers/{created['id']}/os-volume_attachments",
                              self.token, {"volumeAttachment": {"volumeId": volume["id"]}})
        await self.stack.follow_all()
        await self.stack.call("DELETE", f"/servers/{created['id']}", self.token)
        await self.stack.follow_all()
        code, reply = await self.vol("GET", f"/volumes/{volume['id']}")
        self.assertEqual(reply["volume"]["status"], "available")

    async def test_attach_refused_to_other_templates(self):
        s = self.stack
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": {
            "name": "file-vm", "flavorRef": s.flavors["small"].id, "imageRef": s.image.id}})
        volume = await self.volume()
        code, reply, _ = await s.call(
            "POST", f"/servers/{reply['server']['id']}/os-volume_attachments", self.token,
            {"volumeAttachment": {"volumeId": volume["id"]}})
        self.assertEqual(code, 400, reply)

    async def test_boot_from_volume_and_snapshot(self):
        """block_device_mapping_v2 boots a server from an existing volume
        (adopted, kept after the server unless delete_on_termination) and
        from a snapshot (a new clone); a second volume attaches with it."""
        boot = await self.volume(imageRef=self.stack.image.id, size=None)
        extra = await self.volume(size=1)
        created = await self.server(imageRef="", block_device_mapping_v2=[
            {"source_type": "volume", "destination_type": "volume", "uuid": boot["id"],
             "boot_index": 0},
            {"source_type": "volume", "destination_type": "volume", "uuid": extra["id"]}])
        server = await self.stack.server(created["id"])
        self.assertEqual([v.id for v in server.volumes], [boot["id"], extra["id"]])
        # Booted from a volume: no image, as Nova shows it (what was
        # deployed stays known to the server).
        self.assertEqual((server.image_id, server.image["id"]), ("", self.stack.image.id))
        code, reply, _ = await self.stack.call(
            "GET", f"{self.stack.url}/compute/v2.1/servers/{created['id']}", self.token)
        self.assertEqual(reply["server"]["image"], "")
        code, reply = await self.vol("POST", "/snapshots", body={"snapshot": {
            "volume_id": boot["id"], "force": True}})
        self.assertEqual(code, 202, reply)
        await self.stack.service.volumes.drain()
        snap = reply["snapshot"]
        await self.stack.call("DELETE", f"/servers/{created['id']}", self.token)
        await self.stack.follow_all()
        for v in (boot, extra):
            code, reply = await self.vol("GET", f"/volumes/{v['id']}")
            self.assertEqual(reply["volume"]["status"], "available")

        second = await self.server(imageRef="", block_device_mapping_v2=[
            {"source_type": "snapshot", "destination_type": "volume", "uuid": snap["id"],
             "boot_index": "0", "delete_on_termination": True}])
        server = await self.stack.server(second["id"])
        [root] = server.volumes
        self.assertEqual((root.source, root.charged), (f"snapshot:{snap['id']}", False))
        self.assertEqual(server.operstate, "STARTED")

    async def test_failed_create_gives_volumes_back(self):
        """A create Ganeti fails deletes the boot volume made for it but
        gives back a volume the user brought, even one marked
        delete_on_termination."""
        extra = await self.volume(size=1)
        s = self.stack
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": {
            "name": "vm", "flavorRef": self.thin_flavor.id, "imageRef": s.image.id,
            "block_device_mapping_v2": [{"source_type": "volume", "uuid": extra["id"],
                                         "destination_type": "volume",
                                         "delete_on_termination": True}]}})
        self.assertEqual(code, 202, reply)
        server = await s.server(reply["server"]["id"])
        root = next(v for v in server.volumes if v.id != extra["id"])
        await s.service.updates.simulate(server.id, "OP_INSTANCE_CREATE", "error",
                                         jobid=server.backendjobid or 0)
        code, shown = await self.vol("GET", f"/volumes/{extra['id']}")
        self.assertEqual((code, shown["volume"]["status"]), (200, "available"))
        self.assertEqual((await self.vol("GET", f"/volumes/{root.id}"))[0], 404)
        with self.assertRaises(KeyError):
            await self.volumes.info(root.map_name)

    async def test_bad_block_device_mappings(self):
        s = self.stack
        for bdm in ([{"source_type": "blank", "destination_type": "volume", "uuid": "x"}],
                    [{"source_type": "volume", "destination_type": "local",
                      "uuid": "x", "boot_index": 0}],
                    [{"source_type": "volume", "destination_type": "volume",
                      "boot_index": 0}],
                    [{"source_type": "volume", "destination_type": "volume",
                      "uuid": "nothing", "boot_index": 0}],
                    [{"source_type": "snapshot", "destination_type": "volume",
                      "uuid": "x", "boot_index": 1}], "x"):
            code, reply, _ = await s.call("POST", "/servers", self.token, {"server": {
                "name": "vm", "flavorRef": self.thin_flavor.id,
                "block_device_mapping_v2": bdm}})
            self.assertIn(code, (400, 404), (bdm, reply))
        # Volumes need a thin flavor.
        volume = await self.volume()
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": {
            "name": "vm", "flavorRef": s.flavors["small"].id, "imageRef": s.image.id,
            "block_device_mapping_v2": [{"source_type": "volume", "uuid": volume["id"],
                                         "destination_type": "volume"}]}})
        self.assertEqual(code, 400, reply)


class ListingTests(VolumeCase):
    async def test_metadata_routes(self):
        made = await self.volume(metadata={"a": "1"})
        base = f"/volumes/{made['id']}/metadata"
        code, reply = await self.vol("POST", base, body={"metadata": {"b": "2"}})
        self.assertEqual((code, reply["metadata"]), (200, {"a": "1", "b": "2"}))
        code, reply = await self.vol("GET", base + "/b")
        self.assertEqual((code, reply), (200, {"meta": {"b": "2"}}))
        code, reply = await self.vol("PUT", base + "/b", body={"meta": {"b": "3"}})
        self.assertEqual((code, reply), (200, {"meta": {"b": "3"}}))
        self.assertEqual((await self.vol("PUT", base + "/b", body={"meta": {"c": "3"}}))[0],
                         400)
        self.assertEqual((await self.vol("DELETE", base + "/a"))[0], 200)
        self.assertEqual((await self.vol("GET", base + "/a"))[0], 404)
        code, reply = await self.vol("PUT", base, body={"metadata": {"z": "9"}})
        self.assertEqual(reply["metadata"], {"z": "9"})
        self.assertEqual((await self.vol("GET", base, self.bob_token))[0], 404)

    async def test_filters_sorting_paging(self):
        made = [await self.volume(name=f"v{i}", size=i + 1, metadata={"n": str(i % 2)})
                for i in range(4)]
        code, reply = await self.vol("GET", "/volumes/detail?sort=size:asc&limit=2")
        self.assertEqual([v["name"] for v in reply["volumes"]], ["v0", "v1"])
        next_url = reply["volumes_links"][0]["href"]
        self.assertIn("volumes/detail?", next_url)
        self.assertIn(f"marker={made[1]['id']}", next_url)
        code, reply = await self.vol("GET", f"/volumes?sort=size:asc&marker={made[1]['id']}")
        self.assertEqual([v["name"] for v in reply["volumes"]], ["v2", "v3"])
        code, reply = await self.vol("GET", "/volumes/detail?name=v2")
        self.assertEqual([v["id"] for v in reply["volumes"]], [made[2]["id"]])
        code, reply = await self.vol("GET", "/volumes/detail?metadata={'n': '1'}")
        self.assertEqual(sorted(v["name"] for v in reply["volumes"]), ["v1", "v3"])
        for bad in ("limit=x", "sort=nothing:asc", "sort=size:up", "metadata=[1]"):
            self.assertEqual((await self.vol("GET", f"/volumes?{bad}"))[0], 400, bad)
        self.assertEqual((await self.vol("GET", "/volumes?marker=nothing"))[0], 404)

    async def test_limits_zones_extensions(self):
        await self.volume(size=2)
        code, reply = await self.vol("GET", "/limits")
        absolute = reply["limits"]["absolute"]
        self.assertEqual((absolute["maxTotalVolumeGigabytes"], absolute["totalGigabytesUsed"],
                          absolute["totalVolumesUsed"]), (1024, 2, 1))
        code, reply = await self.vol("GET", "/os-availability-zone")
        self.assertEqual(reply["availabilityZoneInfo"][0]["zoneName"], "nova")
        self.assertEqual((await self.vol("GET", "/extensions"))[1], {"extensions": []})


class ImageExportTests(VolumeCase):
    """With the volume service, a build on a non-thin flavor reads its image
    from a read-only NBD export the OS definition finds by the instance's
    name; it goes when the build ends.  A thin build is told the disk holds
    the image already."""

    async def params_of(self, server_id: Any) -> dict[str, Any]:
        s = self.stack
        job = await s.rapi_client().job((await s.server(server_id)).backendjobid)
        url = job["ops"][0]["osparams"]["config_url"]
        code, params, _ = await s.call("GET", url)
        self.assertEqual(code, 200, params)
        return dict(params)

    async def test_file_flavor_build_reads_an_export(self):
        import json

        s = self.stack
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": {
            "name": "vm", "flavorRef": s.flavors["small"].id, "imageRef": s.image.id}})
        self.assertEqual(code, 202, reply)
        server = await s.server(reply["server"]["id"])
        export = f"snf-img-{server.instance_name}"
        info = await self.volumes.info(export)
        self.assertEqual((info.read_only, info.size), (True, s.image.size))
        opened = await self.volumes.store.open(export, False)
        try:
            self.assertEqual(await opened.read(0, s.image.size),
                             b"Debian Bookworm (diskdump)\n" * 64)
        finally:
            await opened.close()
        params = await self.params_of(server.id)
        self.assertEqual(params["img_deployed"], "no")
        self.assertEqual(json.loads(params["img_nbd"])["tls"], False)
        await s.follow(server.backendjobid)
        with self.assertRaises(KeyError):
            await self.volumes.info(export)

    async def test_thin_build_is_deployed(self):
        s = self.stack
        flavor = await s.flavor(1, 1024, 1, "ext_archipelago")
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": {
            "name": "vm", "flavorRef": flavor.id, "imageRef": s.image.id}})
        self.assertEqual(code, 202, reply)
        server = await s.server(reply["server"]["id"])
        params = await self.params_of(server.id)
        self.assertEqual(params["img_deployed"], "yes")
        with self.assertRaises(KeyError):
            await self.volumes.info(f"snf-img-{server.instance_name}")


class NovaVolumeProxyTests(VolumeCase):
    """Nova's ``os-volumes`` and ``os-snapshots`` (to microversion 2.35)
    over the same thin volumes, in Nova's camel-cased shapes."""

    async def nova(self, method: str, path: str, body: Any = None, token: str | None = None,
                   version: str = "2.1") -> tuple[int, Any]:
        code, reply, _ = await self.stack.call(
            method, f"{self.stack.url}/compute/v2.1{path}", token or self.token, body,
            headers={"OpenStack-API-Version": f"compute {version}"})
        return code, reply

    async def test_volumes_and_snapshots(self):
        code, reply = await self.nova("POST", "/os-volumes", {"volume": {
            "size": 1, "display_name": "data", "display_description": "mine",
            "metadata": {"Type": "work"}, "volume_type": "ext_archipelago"}})
        self.assertEqual(code, 200, reply)
        made = reply["volume"]
        self.assertEqual(set(made), {"id", "status", "size", "displayName",
                                     "displayDescription", "availabilityZone", "createdAt",
                                     "volumeType", "snapshotId", "metadata", "attachments"})
        self.assertEqual((made["status"], made["displayName"], made["metadata"],
                          made["attachments"], made["volumeType"]),
                         ("available", "data", {"Type": "work"}, [{}], "ext_archipelago"))
        # The same volume through Cinder's API.
        code, reply = await self.vol("GET", f"/volumes/{made['id']}")
        self.assertEqual((code, reply["volume"]["name"]), (200, "data"))
        second = (await self.nova("POST", "/os-volumes", {"volume": {"size": 1}}))[1]["volume"]
        code, reply = await self.nova("GET", "/os-volumes/detail")
        self.assertEqual([v["id"] for v in reply["volumes"]], [made["id"], second["id"]])
        code, reply = await self.nova("GET", "/os-volumes?offset=1&limit=1")
        self.assertEqual([v["id"] for v in reply["volumes"]], [second["id"]])
        self.assertEqual((await self.nova("GET", f"/os-volumes/{made['id']}",
                                          token=self.bob_token))[0], 404)
        for bad in ({}, {"size": 0}, {"size": "x"}, {"size": 1, "availability_zone": "z"}):
            code, reply = await self.nova("POST", "/os-volumes", {"volume": bad})
            self.assertEqual(code, 400, (bad, reply))
        code, reply = await self.nova("POST", "/os-snapshots", {"snapshot": {
            "volume_id": made["id"], "display_name": "snap"}})
        self.assertEqual(code, 200, reply)
        snap = reply["snapshot"]
        self.assertEqual(set(snap), {"id", "volumeId", "status", "size", "createdAt",
                                     "displayName", "displayDescription"})
        self.assertEqual((snap["volumeId"], snap["displayName"]), (made["id"], "snap"))
        await self.stack.service.volumes.drain()
        code, reply = await self.nova("GET", f"/os-snapshots/{snap['id']}")
        self.assertEqual(reply["snapshot"]["status"], "available")
        code, reply = await self.nova("GET", "/os-snapshots")
        self.assertEqual([s["id"] for s in reply["snapshots"]], [snap["id"]])
        # Gone from 2.36: the volume service's own API serves them.
        self.assertEqual((await self.nova("GET", "/os-volumes", version="2.36"))[0], 404)
        self.assertEqual((await self.nova("GET", "/os-snapshots", version="2.36"))[0], 404)
        self.assertEqual((await self.nova("DELETE", f"/os-snapshots/{snap['id']}"))[0], 202)
        self.assertEqual((await self.nova("DELETE", f"/os-volumes/{made['id']}"))[0], 202)
        self.assertEqual((await self.nova("GET", f"/os-volumes/{made['id']}"))[0], 404)


class ServerImageTests(ThinServerCase):
    """Nova's createImage and createBackup on a server with a thin boot
    disk: the image is there at once (saving), holds the disk's bytes once
    saved, with Nova's snapshot properties; bad input, a second capture
    while one is saved, other people's servers and thick disks refused."""

    async def act(self, server_id: Any, body: Any, version: str = "2.1",
                  token: str | None = None) -> tuple[int, Any, Any]:
        return await self.stack.call(
            "POST", f"{self.stack.url}/compute/v2.1/servers/{server_id}/action",
            token or self.token, body, headers={"OpenStack-API-Version": f"compute {version}"})

    async def test_create_image(self):
        created = await self.server()
        root = (await self.stack.server(created["id"])).volumes[0]
        opened = await self.volumes.store.open(root.map_name, True)
        try:
            await opened.write(8192, b"the server wrote this")
        finally:
            await opened.close()
        code, reply, headers = await self.act(created["id"], {"createImage": {
            "name": "golden-2", "metadata": {"purpose": "test"}}})
        self.assertEqual((code, reply), (202, None))
        image_id = headers.getRawHeaders(b"location")[0].decode().rsplit("/", 1)[-1]
        image = await self.stack.images.get(self.alice, image_id)
        self.assertEqual((image.name, image.status), ("golden-2", "UNAVAILABLE"))
        code, reply, _ = await self.act(created["id"], {"createImage": {"name": "again"}})
        self.assertEqual(code, 409, reply)
        await self.stack.service.server_images.drain()
        image = await self.stack.images.get(self.alice, image_id)
        self.assertEqual((image.status, image.size, image.visibility), ("AVAILABLE", GiB,
                                                                         "private"))
        self.assertEqual({k: image.properties.get(k) for k in (
            "purpose", "image_type", "instance_uuid", "base_image_ref", "user_id")},
            {"purpose": "test", "image_type": "snapshot", "instance_uuid": str(created["id"]),
             "base_image_ref": self.stack.image.id, "user_id": self.alice})
        self.assertEqual(image.min_disk, 1)
        # A server built from it has the bytes the first one wrote.
        second = await self.server(imageRef=image_id)
        disk = (await self.stack.server(second["id"])).volumes[0]
        opened = await self.volumes.store.open(disk.map_name, False)
        try:
            self.assertEqual(await opened.read(8192, 21), b"the server wrote this")
        finally:
            await opened.close()
        # No frozen map is left behind.
        names = await self.volumes.store.names()
        self.assertFalse([n for n in names if n.startswith("snf-snap-image-")])
        # Two at once: one is made, the other is 409.
        both = await defer.gatherResults([
            defer.ensureDeferred(self.act(created["id"], {"createImage": {"name": n}}))
            for n in ("a", "b")])
        self.assertEqual(sorted(code for code, _, _ in both), [202, 409])
        await self.stack.service.server_images.drain()
        # 2.45: the id in the body.
        code, reply, headers = await self.act(second["id"], {"createImage": {"name": "x"}},
                                              "2.45")
        self.assertEqual(code, 202, reply)
        self.assertEqual(set(reply), {"image_id"})
        await self.stack.service.server_images.drain()

    async def test_refusals(self):
        created = await self.server()
        for body in ({"createImage": {}}, {"createImage": {"name": "a" * 256}},
                     {"createImage": {"name": "x", "metadata": {"": ""}}},
                     {"createImage": {"name": "x", "metadata": {"a" * 256: "b"}}},
                     {"createImage": "x"},
                     {"createBackup": {"name": "x", "backup_type": "daily"}},
                     {"createBackup": {"name": "x", "backup_type": "daily", "rotation": -1}}):
            code, reply, _ = await self.act(created["id"], body)
            self.assertEqual(code, 400, (body, reply))
        code, reply, _ = await self.act(created["id"], {"createImage": {"name": "x"}},
                                        token=self.bob_token)
        self.assertEqual(code, 404, reply)
        code, reply, _ = await self.act(999999, {"createImage": {"name": "x"}})
        self.assertEqual(code, 404, reply)
        thick = await self.stack.flavor(1, 1024, 1, "file")
        code, reply, _ = await self.stack.call("POST", "/servers", self.token, {"server": {
            "name": "thick", "flavorRef": thick.id, "imageRef": self.stack.image.id}})
        await self.stack.follow((await self.stack.server(reply["server"]["id"])).backendjobid)
        code, reply, _ = await self.act(reply["server"]["id"], {"createImage": {"name": "x"}})
        self.assertEqual(code, 400, reply)
        self.assertIn("thin", reply["badRequest"]["message"])
        self.assertEqual([i for i in await self.stack.images.list(self.alice)
                          if i.name == "x"], [])

    async def test_backup_rotation(self):
        """createBackup keeps the newest ``rotation`` backups of its type."""
        created = await self.server()
        ids = []
        for n in range(3):
            code, reply, _ = await self.act(created["id"], {"createBackup": {
                "name": f"b{n}", "backup_type": "daily", "rotation": 2}}, "2.45")
            self.assertEqual(code, 202, reply)
            ids.append(reply["image_id"])
            await self.stack.service.server_images.drain()
        left = sorted(i.name for i in await self.stack.images.list(self.alice)
                      if i.properties.get("image_type") == "backup")
        self.assertEqual(left, ["b1", "b2"])


class HotplugTests(VolumeCase):
    """On a KVM cluster (the simulator's ``hypervisor = kvm``) volumes
    attach to and detach from a running server by hotplug."""

    async def setUp(self) -> None:
        self.stack = await compute_stack(self, volumes=True, hypervisor="kvm")
        self.alice, self.token = await self.stack.user("alice")
        self.bob, self.bob_token = await self.stack.user("bob")
        self.volumes = self.stack.service.volumes.thin

    async def test_detach_from_a_running_server(self):
        s = self.stack
        flavor = await s.flavor(1, 1024, 1, "ext_archipelago")
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": {
            "name": "vm", "flavorRef": flavor.id, "imageRef": s.image.id}})
        self.assertEqual(code, 202, reply)
        sid = reply["server"]["id"]
        await s.follow((await s.server(sid)).backendjobid)
        volume = await self.volume(size=1)
        attachments = f"/servers/{sid}/os-volume_attachments"
        code, reply, _ = await s.call("POST", attachments, self.token,
                                      {"volumeAttachment": {"volumeId": volume["id"]}})
        self.assertEqual(code, 200, reply)
        await s.follow_all()
        server = await s.server(sid)
        self.assertEqual((server.operstate, len(server.disks)), ("STARTED", 2))
        job = await s.rapi_client().job(server.backendjobid)
        self.assertTrue(job["ops"][0].get("hotplug"), job["ops"][0])
        # Synnefo's dialect lists the root volume too; in Nova's the thin
        # clone of an image-built server is its local disk, not listed.
        code, reply, _ = await s.call("GET", attachments, self.token)
        self.assertEqual(len(reply["volumeAttachments"]), 2)
        code, reply, _ = await s.call("GET", f"{s.url}/compute/v2.1{attachments}", self.token)
        self.assertEqual([a["volumeId"] for a in reply["volumeAttachments"]], [volume["id"]])
        code, reply, _ = await s.call("GET", f"{s.url}/compute/v2.1/servers/{sid}", self.token)
        self.assertEqual(reply["server"]["os-extended-volumes:volumes_attached"],
                         [{"id": volume["id"]}])
        code, reply, _ = await s.call("DELETE", f"{attachments}/{volume['id']}", self.token)
        self.assertEqual(code, 202, reply)
        await s.follow_all()
        code, reply = await self.vol("GET", f"/volumes/{volume['id']}")
        self.assertEqual(reply["volume"]["status"], "available")
        server = await s.server(sid)
        self.assertEqual((server.operstate, len(server.disks)), ("STARTED", 1))
