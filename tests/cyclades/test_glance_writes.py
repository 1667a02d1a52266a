"""Glance v2 writes over real HTTP (``snfd.cyclades.glance_api``): create,
JSON patch, upload into the owner's ``images`` container and download
(ranges, checksums, quota), stage and import, tags, members and their
answers, deactivation, deletion with the data, schemas, and Plankton's
download of the same bytes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from snfd.cyclades.disk_formats import DiskFormats
from snfd.cyclades.image_api import ImageAPI
from snfd.cyclades.images import ImageRegistry
from snfd.testing.pithos import HTTPReply, http
from snfd.web.auth import TokenAuth
from tests.cyclades.test_disk_formats import NO_QEMU_IMG, iso_like, qemu_image
from tests.cyclades.test_image_api import APICase

PATCH = "application/openstack-images-v2.1-json-patch"
DATA = b"0123456789" * 100


class GlanceCase(APICase):
    """``APICase`` whose registry moves image data through the node's
    block store."""

    async def _setUp(self) -> None:
        await super()._setUp()
        self.registry = ImageRegistry(self.objects, self.clock, system_owner=self.carol,
                                      blocks=self.stack.blocks)
        self.api = ImageAPI(self.registry)
        self.stack.root.mount("glance", TokenAuth(self.api.resource(), self.stack.accounts))
        self.base = f"{self.stack.url}/glance"

    async def send(self, method: str, path: str, data: bytes, user: str | None = None,
                   headers: dict[str, str] | None = None) -> HTTPReply:
        """A request with a raw body (image data)."""
        who = self.alice if user is None else user
        reply = await http(method, self.base + path, token=self.tokens[who],
                           headers={"Content-Type": "application/octet-stream",
                                    **(headers or {})}, body=data)
        if reply.code >= 500:
            self.fail(f"{method} {path} answered {reply.code}: {reply.body[:300]!r}")
        return reply

    async def patch(self, image_id: str, ops: list[dict[str, Any]], user: str | None = None,
                    media: str = PATCH) -> HTTPReply:
        who = self.alice if user is None else user
        return await http("PATCH", f"{self.base}/v2/images/{image_id}",
                          token=self.tokens[who], headers={"Content-Type": media},
                          body=json.dumps(ops).encode())

    async def create(self, user: str | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("disk_format", "raw")
        body.setdefault("container_format", "bare")
        r = await self.call("POST", "/v2/images", user, body=body)
        self.assertEqual(r.code, 201, r.body)
        created: dict[str, Any] = r.json()
        return created

    async def show(self, image_id: str, user: str | None = None) -> dict[str, Any]:
        r = await self.call("GET", f"/v2/images/{image_id}", user)
        self.assertEqual(r.code, 200, r.body)
        shown: dict[str, Any] = r.json()
        return shown

    async def active(self, user: str | None = None, data: bytes = DATA,
                     **body: Any) -> dict[str, Any]:
        """A created image with ``data`` uploaded."""
        image = await self.create(user, **body)
        r = await self.send("PUT", f"/v2/images/{image['id']}/file", data, user)
        self.assertEqual(r.code, 204, r.body)
        return await self.show(image["id"], user)

    async def listed(self, query: str = "", user: str | None = None) -> set[str]:
        r = await self.call("GET", f"/v2/images{query}", user)
        self.assertEqual(r.code, 200, r.body)
        return {i["id"] for i in r.json()["images"]}


class CreateTests(GlanceCase):
    async def test_create(self):
        """POST /v2/images answers 201 with a queued image: the given core
        fields and properties, Glance's defaults (shared, unprotected, no
        size or checksum), and a Location."""
        r = await self.call("POST", "/v2/images", body={
            "name": "deb", "disk_format": "qcow2", "container_format": "bare",
            "min_ram": 512, "tags": ["a", "b"], "os_distro": "debian"})
        self.assertEqual(r.code, 201, r.body)
        body = r.json()
        self.assertEqual(r.header("location"), f"/v2/images/{body['id']}")
        self.assertEqual(
            {k: body[k] for k in ("name", "status", "visibility", "protected", "os_hidden",
                                  "size", "checksum", "os_hash_algo", "os_hash_value",
                                  "disk_format", "container_format", "min_ram", "min_disk",
                                  "tags", "os_distro", "owner")},
            {"name": "deb", "status": "queued", "visibility": "shared", "protected": False,
             "os_hidden": False, "size": None, "checksum": None, "os_hash_algo": None,
             "os_hash_value": None, "disk_format": "qcow2", "container_format": "bare",
             "min_ram": 512, "min_disk": 0, "tags": ["a", "b"], "os_distro": "debian",
             "owner": self.alice})
        self.assertEqual(await self.show(body["id"]), body)
        # A file of the owner's images container, empty for now.
        r = await self.pithos("HEAD", self.alice, f"images/{body['id']}")
        self.assertEqual((r.code, r.header("content-length")), (200, "0"))

    async def test_nameless_and_chosen_id(self):
        """A client may choose the id (a UUID, once: 409 after); a
        nameless image shows name null."""
        chosen = "00000000-1111-2222-3333-444455556666"
        body = await self.create(id=chosen)
        self.assertEqual((body["id"], body["name"]), (chosen, None))
        self.assertEqual((await self.show(chosen))["id"], chosen)
        r = await self.call("POST", "/v2/images", body={"id": chosen})
        self.assertFault(r, 409)
        self.assertFault(await self.call("POST", "/v2/images", body={"id": "nope"}), 400)

    async def test_refusals(self):
        """Unknown formats are 400, read-only fields and os_glance_* 403,
        a non-text property or a bad visibility 400."""
        for body, code in (({"disk_format": "wrong"}, 400), ({"container_format": "x"}, 400),
                           ({"status": "active"}, 403), ({"size": 3}, 403),
                           ({"owner": self.bob}, 403), ({"os_glance_foo": "bar"}, 403),
                           ({"os_distro": 3}, 400), ({"visibility": "everyone"}, 400),
                           ({"protected": "yes"}, 400), ({"min_ram": -1}, 400)):
            self.assertFault(await self.call("POST", "/v2/images", body=body), code)
        self.assertEqual(await self.listed(), set())


class DataTests(GlanceCase):
    async def test_upload_and_download(self):
        """PUT .../file makes the image active with Glance's size, MD5 and
        SHA-512; GET .../file sends the bytes (Content-MD5), a Range 206,
        a bad one 416; the data is the file in the images container."""
        image = await self.create(name="disk")
        r = await self.call("GET", f"/v2/images/{image['id']}/file")
        self.assertEqual((r.code, r.body), (204, b""))
        shown = await self.active(name="disk")
        self.assertEqual(
            {k: shown[k] for k in ("status", "size", "checksum", "os_hash_algo",
                                   "os_hash_value")},
            {"status": "active", "size": len(DATA), "checksum": hashlib.md5(DATA, usedforsecurity=False).hexdigest(),
             "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(DATA).hexdigest()})
        path = f"/v2/images/{shown['id']}/file"
        r = await self.call("GET", path)
        self.assertEqual((r.code, r.body, r.header("content-md5")),
                         (200, DATA, hashlib.md5(DATA, usedforsecurity=False).hexdigest()))
        r = await http("GET", self.base + path, token=self.tokens[self.alice],
                       headers={"Range": "bytes=10-19"})
        self.assertEqual((r.code, r.body, r.header("content-range")),
                         (206, DATA[10:20], f"bytes 10-19/{len(DATA)}"))
        r = await http("GET", self.base + path, token=self.tokens[self.alice],
                       headers={"Range": "bytes=5000-"})
        self.assertEqual(r.code, 416)
        r = await self.pithos("GET", self.alice, f"images/{shown['id']}")
        self.assertEqual((r.code, r.body), (200, DATA))
        # Plankton sends the same bytes.
        r = await self.call("GET", f"/v1.0/images/{shown['id']}")
        self.assertEqual((r.code, r.body, r.header("x-image-meta-status")),
                         (200, DATA, "AVAILABLE"))
        # Once there is data there is no second upload.
        self.assertFault(await self.send("PUT", path, b"more"), 409)

    async def test_large_body_and_formats(self):
        """A body past the JSON limit (1 MiB here) is taken for an upload;
        an image without formats takes no data (400)."""
        big = bytes(range(256)) * 6000
        shown = await self.active(data=big)
        self.assertEqual((shown["size"], shown["checksum"]),
                         (len(big), hashlib.md5(big, usedforsecurity=False).hexdigest()))
        r = await self.call("POST", "/v2/images", body={"name": "bare"})
        r = await self.send("PUT", f"/v2/images/{r.json()['id']}/file", DATA)
        self.assertFault(r, 400)

    async def test_quota(self):
        """Data past the owner's pithos.diskspace is 413 and the image is
        queued again, with no data."""
        await self.stack.set_diskspace(self.bob, 100)
        image = await self.create(self.bob)
        r = await self.send("PUT", f"/v2/images/{image['id']}/file", DATA, self.bob)
        self.assertFault(r, 413)
        shown = await self.show(image["id"], self.bob)
        self.assertEqual((shown["status"], shown["size"]), ("queued", None))

    async def test_stage_and_import(self):
        """/v2/info/import offers glance-direct only; staged data makes the
        image 'uploading', web-download is refused (400), a glance-direct
        import answers 202 and the image is active; importing an image
        with nothing staged is 409."""
        r = await self.call("GET", "/v2/info/import")
        self.assertEqual(r.json()["import-methods"]["value"], ["glance-direct"])
        image = await self.create()
        path = f"/v2/images/{image['id']}"
        self.assertFault(await self.call("POST", f"{path}/import",
                                         body={"method": {"name": "glance-direct"}}), 409)
        r = await self.send("PUT", f"{path}/stage", DATA)
        self.assertEqual(r.code, 204, r.body)
        self.assertEqual((await self.show(image["id"]))["status"], "uploading")
        self.assertEqual((await self.call("GET", f"{path}/file")).code, 204)
        self.assertFault(await self.call("POST", f"{path}/import", body={
            "method": {"name": "web-download", "uri": "http://example.org/x"}}), 400)
        r = await self.call("POST", f"{path}/import", body={"method": {"name": "glance-direct"}})
        self.assertEqual(r.code, 202, r.body)
        shown = await self.show(image["id"])
        self.assertEqual((shown["status"], shown["os_hash_value"]),
                         ("active", hashlib.sha512(DATA).hexdigest()))
        self.assertEqual((await self.call("GET", f"{path}/file")).body, DATA)

    async def test_deactivate(self):
        """Deactivating an active image stops its downloads (403) until it
        is reactivated; a queued image cannot be deactivated (403); nobody
        else may (404 when they cannot see it)."""
        shown = await self.active()
        path = f"/v2/images/{shown['id']}"
        r = await self.call("POST", f"{path}/actions/deactivate")
        self.assertEqual(r.code, 204, r.body)
        self.assertEqual((await self.show(shown["id"]))["status"], "deactivated")
        self.assertFault(await self.call("GET", f"{path}/file"), 403)
        self.assertFault(await self.call("POST", f"{path}/actions/deactivate", self.bob), 404)
        r = await self.call("POST", f"{path}/actions/reactivate")
        self.assertEqual(r.code, 204, r.body)
        self.assertEqual((await self.call("GET", f"{path}/file")).body, DATA)
        queued = await self.create()
        r = await self.call("POST", f"/v2/images/{queued['id']}/actions/deactivate")
        self.assertFault(r, 403)


class PatchTests(GlanceCase):
    async def test_patch(self):
        """add/replace/remove change the name, core fields and properties;
        the older v2.0 media type works too."""
        image = await self.create(name="a", os_distro="debian")
        r = await self.patch(image["id"], [
            {"op": "replace", "path": "/name", "value": "b"},
            {"op": "add", "path": "/os_version", "value": "12"},
            {"op": "replace", "path": "/os_distro", "value": "ubuntu"},
            {"op": "replace", "path": "/min_disk", "value": 4},
            {"op": "replace", "path": "/tags", "value": ["x"]},
            {"op": "replace", "path": "/visibility", "value": "private"}])
        self.assertEqual(r.code, 200, r.body)
        body = r.json()
        self.assertEqual({k: body[k] for k in ("name", "os_version", "os_distro", "min_disk",
                                               "tags", "visibility")},
                         {"name": "b", "os_version": "12", "os_distro": "ubuntu",
                          "min_disk": 4, "tags": ["x"], "visibility": "private"})
        r = await self.patch(image["id"], [{"remove": "/os_version"}],
                             media="application/openstack-images-v2.0-json-patch")
        self.assertEqual(r.code, 200, r.body)
        self.assertNotIn("os_version", r.json())

    async def test_patch_refusals(self):
        """Glance's refusals: a missing property replaced or removed 409,
        read-only or reserved fields 403, base fields removed 403, bad
        values 400, another media type 415, another user 404/403."""
        image = await self.create()
        for ops, code in (([{"op": "replace", "path": "/nope", "value": "x"}], 409),
                          ([{"op": "remove", "path": "/nope"}], 409),
                          ([{"op": "replace", "path": "/status", "value": "active"}], 403),
                          ([{"op": "add", "path": "/os_glance_foo", "value": "bar"}], 403),
                          ([{"op": "remove", "path": "/name"}], 403),
                          ([{"op": "replace", "path": "/protected", "value": "no"}], 400),
                          ([{"op": "move", "path": "/name"}], 400),
                          ({"op": "add"}, 400)):
            self.assertFault(await self.patch(image["id"], ops), code)
        r = await self.patch(image["id"], [], media="application/json")
        self.assertEqual(r.code, 415)
        self.assertEqual((await self.patch(image["id"], [], self.bob)).code, 404)
        public = await self.create(visibility="public")
        self.assertEqual((await self.patch(public["id"], [], self.bob)).code, 403)

    async def test_os_hidden_and_filters(self):
        """Hidden images leave the default listing; os_hidden=true lists
        them; tag, size and sort filter and order as Glance's do."""
        small = await self.active(data=b"x" * 10, tags=["t"])
        large = await self.active(data=b"y" * 20)
        r = await self.patch(large["id"], [{"op": "replace", "path": "/os_hidden",
                                            "value": True}])
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.listed(), {small["id"]})
        self.assertEqual(await self.listed("?os_hidden=true"), {large["id"]})
        self.assertEqual(await self.listed("?tag=t"), {small["id"]})
        self.assertEqual(await self.listed("?tag=t&tag=u"), set())
        self.assertEqual(await self.listed("?size=10"), {small["id"]})
        self.assertEqual(await self.listed("?size=20"), set())
        await self.patch(large["id"], [{"op": "replace", "path": "/os_hidden",
                                        "value": False}])
        r = await self.call("GET", "/v2/images?sort=size:desc")
        self.assertEqual([i["id"] for i in r.json()["images"]], [large["id"], small["id"]])


class DeleteTests(GlanceCase):
    async def test_delete(self):
        """DELETE is 403 while protected; then 204, the image and its file
        are gone (404 both, and for a second delete)."""
        shown = await self.active(protected=True)
        path = f"/v2/images/{shown['id']}"
        self.assertFault(await self.call("DELETE", path), 403)
        await self.patch(shown["id"], [{"op": "replace", "path": "/protected", "value": False}])
        self.assertEqual((await self.call("DELETE", path)).code, 204)
        self.assertFault(await self.call("GET", path), 404)
        self.assertFault(await self.call("DELETE", path), 404)
        self.assertFault(await self.call("DELETE", "/v2/images/"), 404)
        self.assertFault(await self.call("GET", "/v2/images/"), 404)
        self.assertEqual((await self.pithos("HEAD", self.alice, f"images/{shown['id']}")).code,
                         404)


class TagTests(GlanceCase):
    async def test_tags(self):
        """PUT adds a tag (twice is fine), DELETE removes it, a missing tag
        or image is 404."""
        image = await self.create()
        path = f"/v2/images/{image['id']}/tags"
        for _ in range(2):
            self.assertEqual((await self.call("PUT", f"{path}/blue")).code, 204)
        self.assertEqual((await self.show(image["id"]))["tags"], ["blue"])
        self.assertEqual((await self.call("DELETE", f"{path}/blue")).code, 204)
        self.assertEqual((await self.show(image["id"]))["tags"], [])
        self.assertFault(await self.call("DELETE", f"{path}/blue"), 404)
        self.assertFault(await self.call(
            "PUT", "/v2/images/00000000-0000-0000-0000-000000000000/tags/x"), 404)


class MemberTests(GlanceCase):
    async def test_share_accept_reject(self):
        """A member added to a shared image is pending: it can read the
        image but lists it only with member_status=pending; accepted, it
        is listed by default; rejected, not; only the member answers (the
        owner 403), with a known status (400); removed, it sees nothing."""
        shown = await self.active(name="golden")
        image_id = shown["id"]
        path = f"/v2/images/{image_id}/members"
        r = await self.call("POST", path, body={"member": self.bob})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual((r.json()["member_id"], r.json()["status"]), (self.bob, "pending"))
        self.assertFault(await self.call("POST", path, body={"member": self.bob}), 409)
        self.assertEqual((await self.show(image_id, self.bob))["name"], "golden")
        self.assertEqual(await self.listed(user=self.bob), set())
        self.assertEqual(await self.listed("?visibility=shared&member_status=pending",
                                           self.bob), {image_id})
        self.assertFault(await self.call("PUT", f"{path}/{self.bob}",
                                         body={"status": "accepted"}), 403)
        self.assertFault(await self.call("PUT", f"{path}/{self.bob}", self.bob,
                                         body={"status": "maybe"}), 400)
        r = await self.call("PUT", f"{path}/{self.bob}", self.bob, body={"status": "accepted"})
        self.assertEqual((r.code, r.json()["status"]), (200, "accepted"))
        self.assertEqual(await self.listed(user=self.bob), {image_id})
        self.assertEqual((await self.call("GET", f"/v2/images/{image_id}/file", self.bob)).body,
                         DATA)
        r = await self.call("PUT", f"{path}/{self.bob}", self.bob, body={"status": "rejected"})
        self.assertEqual(r.code, 200)
        self.assertEqual(await self.listed(user=self.bob), set())
        r = await self.call("GET", path)
        self.assertEqual([(m["member_id"], m["status"]) for m in r.json()["members"]],
                         [(self.bob, "rejected")])
        self.assertEqual((await self.call("DELETE", f"{path}/{self.bob}")).code, 204)
        self.assertFault(await self.call("GET", f"/v2/images/{image_id}", self.bob), 404)
        self.assertFault(await self.call("DELETE", f"{path}/{self.bob}"), 404)

    async def test_private_images_have_no_members(self):
        """Members are for shared images only (403); making a shared image
        private keeps its members but takes their access, shared again
        gives it back."""
        private = await self.create(visibility="private")
        r = await self.call("POST", f"/v2/images/{private['id']}/members",
                            body={"member": self.bob})
        self.assertFault(r, 403)
        shared = await self.create(name="s")
        await self.call("POST", f"/v2/images/{shared['id']}/members", body={"member": self.bob})
        await self.patch(shared["id"], [{"op": "replace", "path": "/visibility",
                                         "value": "private"}])
        self.assertFault(await self.call("GET", f"/v2/images/{shared['id']}", self.bob), 404)
        await self.patch(shared["id"], [{"op": "replace", "path": "/visibility",
                                         "value": "shared"}])
        self.assertEqual((await self.show(shared["id"], self.bob))["name"], "s")


class SchemaTests(GlanceCase):
    async def test_schemas(self):
        """/v2/schemas/{image,images,member,members} name themselves; others 404."""
        for name in ("image", "images", "member", "members"):
            r = await self.call("GET", f"/v2/schemas/{name}")
            self.assertEqual((r.code, r.json()["name"]), (200, name))
        self.assertFault(await self.call("GET", "/v2/schemas/task"), 404)


class DiskFormatTests(GlanceCase):
    """The declared disk format checked against uploaded data with
    qemu-img (``snfd.cyclades.disk_formats``, on the reactor as in a
    node)."""

    skip = NO_QEMU_IMG

    async def _setUp(self) -> None:
        await super()._setUp()
        from twisted.internet import reactor

        self.registry = ImageRegistry(self.objects, self.clock, system_owner=self.carol,
                                      blocks=self.stack.blocks, formats=DiskFormats(reactor))
        self.stack.root.mount("glance-checked",
                              TokenAuth(ImageAPI(self.registry).resource(), self.stack.accounts))
        self.base = f"{self.stack.url}/glance-checked"

    async def refused(self, data: bytes, stage: bool = False, **body: Any) -> dict[str, Any]:
        """Upload (or stage) ``data`` to a new image: 400; the image as it
        is afterwards."""
        image = await self.create(**body)
        r = await self.send("PUT", f"/v2/images/{image['id']}/{'stage' if stage else 'file'}",
                            data)
        self.assertFault(r, 400)
        return await self.show(image["id"])

    async def test_matching_data_is_accepted(self):
        """Raw data declared raw, a qcow2 declared qcow2 and a VHD (qemu-img's
        vpc) declared vhd become active."""
        self.assertEqual((await self.active(disk_format="raw"))["status"], "active")
        qcow2 = await qemu_image("qcow2")
        shown = await self.active(data=qcow2, disk_format="qcow2")
        self.assertEqual((shown["status"], shown["size"]), ("active", len(qcow2)))
        vhd = await qemu_image("vpc")
        self.assertEqual((await self.active(data=vhd, disk_format="vhd"))["status"], "active")

    async def test_mismatch_is_refused(self):
        """A qcow2 declared raw is refused with a 400 saying why; the image
        is queued again with no data, nothing is charged, and the right
        format then takes the same data."""
        qcow2 = await qemu_image("qcow2")
        image = await self.create(disk_format="raw")
        path = f"/v2/images/{image['id']}"
        r = await self.send("PUT", f"{path}/file", qcow2)
        self.assertFault(r, 400)
        self.assertIn("disk_format raw does not match the data, which is qcow2",
                      r.json()["badRequest"]["message"])
        shown = await self.show(image["id"])
        self.assertEqual((shown["status"], shown["size"]), ("queued", None))
        self.assertEqual(await self.stack.usage(self.alice), 0)
        r = await self.pithos("GET", self.alice, f"images/{image['id']}")
        self.assertEqual((r.code, r.body), (200, b""))
        r = await self.patch(image["id"], [{"op": "replace", "path": "/disk_format",
                                            "value": "qcow2"}])
        self.assertEqual(r.code, 200, r.body)
        r = await self.send("PUT", f"{path}/file", qcow2)
        self.assertEqual(r.code, 204, r.body)
        self.assertEqual((await self.show(image["id"]))["status"], "active")
        self.assertEqual(await self.stack.usage(self.alice), len(qcow2))

    async def test_unsafe_qcow2_is_refused(self):
        """A qcow2 with a backing file is refused even declared qcow2."""
        backed = await qemu_image("qcow2", "-u", "-b", "/nonexistent/base.qcow2", "-F",
                                  "qcow2")
        shown = await self.refused(backed, disk_format="qcow2")
        self.assertEqual(shown["status"], "queued")

    async def test_iso(self):
        """An ISO declared iso is accepted, and declared raw too (Glance
        takes an ISO as raw data); an ISO declared qcow2 and raw data
        declared iso are refused."""
        self.assertEqual((await self.active(data=iso_like(), disk_format="iso"))["status"],
                         "active")
        self.assertEqual((await self.active(data=iso_like(), disk_format="raw"))["status"],
                         "active")
        await self.refused(iso_like(), disk_format="qcow2")
        await self.refused(DATA, disk_format="iso")

    async def test_formats_not_checked(self):
        """Synnefo's diskdump and images in a container other than bare are
        not inspected (as Glance inspects bare images only)."""
        qcow2 = await qemu_image("qcow2")
        shown = await self.active(data=qcow2, disk_format="diskdump")
        self.assertEqual((shown["status"], shown["disk_format"]), ("active", "diskdump"))
        shown = await self.active(data=qcow2, disk_format="raw", container_format="ova")
        self.assertEqual(shown["status"], "active")

    async def test_staged_mismatch_is_refused(self):
        """Staged data is checked as it is staged: a qcow2 declared raw is
        refused (400) and the image is queued, with nothing to import."""
        shown = await self.refused(await qemu_image("qcow2"), stage=True, disk_format="raw")
        self.assertEqual(shown["status"], "queued")
        r = await self.call("POST", f"/v2/images/{shown['id']}/import",
                            body={"method": {"name": "glance-direct"}})
        self.assertFault(r, 409)
