"""The image APIs over real HTTP (``snfd.cyclades.image_api``) on a served
object store and real identity tokens: version discovery (also by
keystoneauth, without a token), every Plankton endpoint with its
``X-Image-Meta-*`` headers, and the Glance v2 reads, paged, as
openstacksdk reads them through the Keystone catalog."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from twisted.internet import threads

from snfd.cluster.store import register_node_txn
from snfd.cyclades.image_api import ImageAPI
from snfd.testing.pithos import HTTPReply, http
from snfd.web.auth import TokenAuth
from tests.cyclades.test_images import DATA, ImageCase

PASSWORD = "correct horse battery"


class APICase(ImageCase):
    """``ImageCase`` with the image API mounted at ``/image`` behind the
    token check."""

    async def _setUp(self) -> None:
        await super()._setUp()
        self.api = ImageAPI(self.registry)
        self.stack.root.mount("image", TokenAuth(self.api.resource(), self.stack.accounts))
        self.base = f"{self.stack.url}/image"

    async def call(self, method: str, path: str, user: str | None = None,
                   headers: dict[str, str] | None = None, body: Any = None) -> HTTPReply:
        """A request to ``/image<path>`` with ``user``'s token (alice's by
        default; ``""``: none).  Never a 5xx."""
        who = self.alice if user is None else user
        raw = json.dumps(body).encode() if body is not None else None
        reply = await http(method, self.base + path, token=self.tokens[who] if who else None,
                           headers=headers, body=raw)
        if reply.code >= 500 and reply.code != 501:
            self.fail(f"{method} {path} answered {reply.code}: {reply.body[:300]!r}")
        return reply

    def meta(self, reply: HTTPReply) -> dict[str, str]:
        """The ``X-Image-Meta-*`` headers of a reply, lowercased, prefix off."""
        return {k.decode().lower()[len("x-image-meta-"):]: v[0].decode()
                for k, v in reply.headers.getAllRawHeaders()
                if k.lower().startswith(b"x-image-meta-")}

    def assertFault(self, reply: HTTPReply, code: int) -> None:
        self.assertEqual(reply.code, code, reply.body)
        if reply.body:
            self.assertEqual(next(iter(reply.json().values()))["code"], code)


class VersionTests(APICase):
    async def test_versions_without_token(self):
        """GET /image and /image/ answer 300 with the versions, Glance v2
        current, without a token; /image/v2/ too."""
        for path in ("", "/", "/v2/"):
            r = await self.call("GET", path, user="")
            self.assertEqual(r.code, 300, path)
            versions = r.json()["versions"]
            self.assertEqual(versions[0]["id"], "v2.0")
            self.assertEqual(versions[0]["status"], "CURRENT")
            self.assertEqual(versions[0]["links"], [{"rel": "self",
                                                     "href": f"{self.base}/v2/"}])
            self.assertEqual(versions[1]["links"][0]["href"], f"{self.base}/v1.0/")

    async def test_keystoneauth_discovery(self):
        """keystoneauth's discovery, without authentication, finds the
        Glance v2 endpoint from the unversioned URL."""
        base = self.base

        def discover() -> Any:
            from keystoneauth1 import discover, session

            d = discover.Discover(session.Session(), base, authenticated=False)
            return d.data_for("2.0")

        data = await threads.deferToThread(discover)
        self.assertEqual(data["url"], f"{base}/v2/")

    async def test_public_url(self):
        """With a public URL the links use it instead of the request's."""
        api = ImageAPI(self.registry, public_url="https://cloud.example/")
        self.stack.root.mount("image2", TokenAuth(api.resource(), self.stack.accounts))
        r = await http("GET", f"{self.stack.url}/image2/")
        self.assertEqual(r.json()["versions"][0]["links"][0]["href"],
                         "https://cloud.example/image2/v2/")


class PlanktonTests(APICase):
    async def post(self, user: str, path: str = "images/debian.img", data: bytes = DATA,
                   **headers: str) -> HTTPReply:
        """Upload a file and register it over the API, as kamaki does."""
        await self.upload(user, path, data)
        location = "pithos://" + "/".join(quote(p) for p in f"{user}/{path}".split("/"))
        headers.setdefault("X-Image-Meta-Name", quote(path.rsplit("/", 1)[-1]))
        r = await self.call("POST", "/v1.0/images/", user,
                            headers={"X-Image-Meta-Location": location, **headers})
        self.assertEqual(r.code, 200, r.body)
        return r

    async def test_register_headers(self):
        """POST /images/ registers a file from X-Image-Meta-* headers (name
        and properties URL-quoted) and answers 200 with the image's
        headers; HEAD answers the same."""
        r = await self.post(
            self.alice, "my images/δίσκος.img", **{
                "X-Image-Meta-Name": quote("Δίσκος 1"), "X-Image-Meta-Is-Public": "True",
                "X-Image-Meta-Disk-Format": "extdump",
                "X-Image-Meta-Property-OSFamily": quote("linux/gnu"),
                "X-Image-Meta-Property-Root-Partition": "1"})
        meta = self.meta(r)
        self.assertEqual(meta["name"], quote("Δίσκος 1"))
        self.assertEqual(meta["location"],
                         f"pithos://{self.alice}/my%20images/%CE%B4%CE%AF%CF%83%CE%BA%CE%BF"
                         "%CF%82.img")
        self.assertEqual((meta["disk-format"], meta["container-format"], meta["status"]),
                         ("extdump", "bare", "AVAILABLE"))
        self.assertEqual((meta["is-public"], meta["owner"], meta["size"]),
                         ("True", self.alice, str(len(DATA))))
        self.assertEqual((meta["property-osfamily"], meta["property-root-partition"]),
                         (quote("linux/gnu"), "1"))
        self.assertEqual(meta["created-at"], "2023-11-14 22:13:20")
        self.assertEqual((meta["deleted-at"], meta["is-snapshot"]), ("", "False"))
        head = await self.call("HEAD", f"/v1.0/images/{meta['id']}", self.bob)
        self.assertEqual(head.code, 200)
        self.assertEqual(self.meta(head), meta)

    async def test_register_errors(self):
        """Missing name or location, an explicit id, fields Plankton does
        not take on registration, and a wrong size are 400s; another's
        file is 404, or 403 once readable."""
        await self.upload(self.alice)
        loc = f"pithos://{self.alice}/images/debian.img"
        for headers in ({"X-Image-Meta-Location": loc},
                        {"X-Image-Meta-Name": "x"},
                        {"X-Image-Meta-Name": "", "X-Image-Meta-Location": loc},
                        {"X-Image-Meta-Name": "x", "X-Image-Meta-Location": loc,
                         "X-Image-Meta-Id": "mine"},
                        {"X-Image-Meta-Name": "x", "X-Image-Meta-Location": loc,
                         "X-Image-Meta-Status": "ERROR"},
                        {"X-Image-Meta-Name": "x", "X-Image-Meta-Location": loc,
                         "X-Image-Meta-Size": "1"},
                        {"X-Image-Meta-Name": "x", "X-Image-Meta-Location": "/etc/passwd"}):
            self.assertFault(await self.call("POST", "/v1.0/images", headers=headers), 400)
        r = await self.call("POST", "/v1.0/images", self.bob,
                            headers={"X-Image-Meta-Name": "x", "X-Image-Meta-Location": loc})
        self.assertFault(r, 404)
        await self.pithos("POST", self.alice, "images/debian.img",
                          headers={"X-Object-Sharing": f"read={self.bob}"})
        r = await self.call("POST", "/v1.0/images", self.bob,
                            headers={"X-Image-Meta-Name": "x", "X-Image-Meta-Location": loc})
        self.assertFault(r, 403)

    async def test_list_and_detail(self):
        """GET /images lists id, name, status, formats and size; /detail
        every field; both take the filters and the order."""
        a = self.meta(await self.post(self.alice, "images/a", b"x" * 10,
                                          **{"X-Image-Meta-Property-OS": "debian"}))
        self.clock.advance(1)
        b = self.meta(await self.post(self.alice, "images/b", b"x" * 20,
                                          **{"X-Image-Meta-Container-Format": "ovf"}))
        r = await self.call("GET", "/v1.0/images")
        self.assertEqual(r.code, 200)
        images = r.json()["images"]
        self.assertEqual([i["id"] for i in images], [b["id"], a["id"]])
        self.assertEqual(set(images[0]), {"id", "name", "status", "disk_format",
                                          "container_format", "size"})
        r = await self.call("GET", "/v1.0/images/detail?sort_key=name&sort_dir=asc")
        detail = r.json()["images"]
        self.assertEqual([i["id"] for i in detail], [a["id"], b["id"]])
        self.assertEqual(detail[0]["properties"], {"os": "debian"})
        self.assertEqual(detail[0]["location"], f"pithos://{self.alice}/images/a")
        self.assertEqual((detail[0]["is_public"], detail[0]["size"], detail[0]["owner"]),
                         (False, 10, self.alice))
        self.assertEqual(detail[1]["created_at"], "2023-11-14 22:13:21")
        for query, ids in (("container_format=ovf", [b["id"]]), ("size_max=15", [a["id"]]),
                           ("name=a", [a["id"]]), ("status=AVAILABLE", [b["id"], a["id"]])):
            r = await self.call("GET", f"/v1.0/images/detail?{query}")
            self.assertEqual([i["id"] for i in r.json()["images"]], ids, query)
        for query in ("sort_key=colour", "sort_dir=up", "size_min=big"):
            self.assertFault(await self.call("GET", f"/v1.0/images?{query}"), 400)

    async def test_update(self):
        """PUT /images/<id> changes the given fields, merges properties and
        answers the image's headers; fields it does not take are 400s;
        others' images are 403 (member) or 404."""
        image_id = self.meta(await self.post(
            self.alice, **{"X-Image-Meta-Property-A": "1",
                           "X-Image-Meta-Property-B": "2"}))["id"]
        r = await self.call("PUT", f"/v1.0/images/{image_id}", headers={
            "X-Image-Meta-Name": quote("νέο"), "X-Image-Meta-Property-B": "",
            "X-Image-Meta-Property-C": "3", "X-Image-Meta-Is-Public": "true"})
        self.assertEqual(r.code, 200, r.body)
        meta = self.meta(r)
        self.assertEqual((meta["name"], meta["is-public"]), (quote("νέο"), "True"))
        self.assertEqual({k: v for k, v in meta.items() if k.startswith("property-")},
                         {"property-a": "1", "property-c": "3"})
        r = await self.call("PUT", f"/v1.0/images/{image_id}",
                            headers={"X-Image-Meta-Checksum": "0"})
        self.assertFault(r, 400)
        r = await self.call("PUT", f"/v1.0/images/{image_id}", self.bob,
                            headers={"X-Image-Meta-Name": "mine"})
        self.assertFault(r, 403)
        await self.call("PUT", f"/v1.0/images/{image_id}",
                        headers={"X-Image-Meta-Is-Public": "false"})
        r = await self.call("PUT", f"/v1.0/images/{image_id}", self.bob,
                            headers={"X-Image-Meta-Name": "mine"})
        self.assertFault(r, 404)

    async def test_download_and_unregister(self):
        """GET /images/<id> is 501; DELETE unregisters (204): the image is
        gone, the file stays."""
        image_id = self.meta(await self.post(self.alice))["id"]
        self.assertFault(await self.call("GET", f"/v1.0/images/{image_id}"), 501)
        r = await self.call("DELETE", f"/v1.0/images/{image_id}")
        self.assertEqual(r.code, 204, r.body)
        self.assertEqual((await self.call("HEAD", f"/v1.0/images/{image_id}")).code, 404)
        self.assertEqual((await self.call("GET", "/v1.0/images")).json(), {"images": []})
        r = await self.pithos("GET", self.alice, "images/debian.img")
        self.assertEqual((r.code, r.body), (200, DATA))

    async def test_members(self):
        """Members are listed, replaced, added and removed over the API;
        shared-images/<member> lists what that member shares with the
        caller."""
        image_id = self.meta(await self.post(self.alice))["id"]
        path = f"/v1.0/images/{image_id}/members"
        r = await self.call("PUT", path, body={"memberships": [{"member_id": self.bob},
                                                              {"member_id": self.carol}]})
        self.assertEqual(r.code, 204, r.body)
        r = await self.call("GET", path)
        self.assertEqual(sorted(m["member_id"] for m in r.json()["members"]),
                         sorted([self.bob, self.carol]))
        self.assertEqual({m["can_share"] for m in r.json()["members"]}, {False})
        self.assertEqual((await self.call("DELETE", f"{path}/{self.carol}")).code, 204)
        self.assertEqual((await self.call("HEAD", f"/v1.0/images/{image_id}",
                                          self.carol)).code, 404)
        self.assertEqual((await self.call("PUT", f"{path}/{self.carol}")).code, 204)
        r = await self.call("GET", f"/v1.0/shared-images/{self.alice}", self.carol)
        self.assertEqual(r.json(), {"shared_images": [{"image_id": image_id,
                                                       "can_share": False}]})
        for body in ({}, {"memberships": "x"}, {"memberships": [{"id": "x"}]}):
            self.assertFault(await self.call("PUT", path, body=body), 400)
        self.assertFault(await self.call("PUT", path, self.bob, body={"memberships": []}),
                         403)

    async def test_member_sees_only_itself(self):
        """A member listing a private image's members sees only its own
        membership; only the owner sees them all."""
        image_id = self.meta(await self.post(self.alice))["id"]
        path = f"/v1.0/images/{image_id}/members"
        r = await self.call("PUT", path, body={"memberships": [{"member_id": self.bob},
                                                              {"member_id": self.carol}]})
        self.assertEqual(r.code, 204, r.body)
        r = await self.call("GET", path, self.bob)
        self.assertEqual(r.json(), {"members": [{"member_id": self.bob, "can_share": False}]})
        r = await self.call("GET", path, self.carol)
        self.assertEqual([m["member_id"] for m in r.json()["members"]], [self.carol])
        r = await self.call("GET", path)
        self.assertEqual(sorted(m["member_id"] for m in r.json()["members"]),
                         sorted([self.bob, self.carol]))

    async def test_token_required(self):
        """Every Plankton and Glance route needs a token (401)."""
        for method, path in (("GET", "/v1.0/images"), ("POST", "/v1.0/images"),
                             ("HEAD", "/v1.0/images/x"), ("GET", "/v2/images"),
                             ("GET", "/v2/images/x")):
            r = await self.call(method, path, user="")
            self.assertEqual(r.code, 401, (method, path))


class GlanceTests(APICase):
    async def _register(self, user: str, path: str, **meta: Any) -> str:
        image = await self.register(user, path, **meta)
        return image.id

    async def test_image_shape(self):
        """GET /v2/images/<id> has Glance's fields, the properties as
        extra keys, and 404 for an image the caller cannot see."""
        image_id = await self._register(self.alice, "images/a", name="A",
                                        properties={"os": "debian", "size": "huge"})
        r = await self.call("GET", f"/v2/images/{image_id}")
        self.assertEqual(r.code, 200, r.body)
        body = r.json()
        self.assertEqual(
            {k: body[k] for k in ("id", "name", "status", "visibility", "owner", "size",
                                  "disk_format", "container_format", "min_disk", "min_ram",
                                  "protected", "tags", "os", "created_at", "file", "self",
                                  "schema")},
            {"id": image_id, "name": "A", "status": "active", "visibility": "private",
             "owner": self.alice, "size": len(DATA), "disk_format": "diskdump",
             "container_format": "bare", "min_disk": 0, "min_ram": 0, "protected": False,
             "tags": [], "os": "debian", "created_at": "2023-11-14T22:13:20Z",
             "file": f"/v2/images/{image_id}/file", "self": f"/v2/images/{image_id}",
             "schema": "/v2/schemas/image"})
        # The file's MD5 as the object store knows it; no SHA-512 for data
        # that did not come through Glance.
        self.assertEqual((body["checksum"], body["os_hash_algo"], body["os_hash_value"]),
                         (hashlib.md5(DATA, usedforsecurity=False).hexdigest(), None, None))
        self.assertFault(await self.call("GET", f"/v2/images/{image_id}", self.bob), 404)
        # This registry has no block store: no data moves (501).
        self.assertFault(await self.call("GET", f"/v2/images/{image_id}/file"), 501)

    async def test_visibility_and_members(self):
        """Images are public, shared or private; the visibility filter picks
        them; a member sees its own membership only."""
        private = await self._register(self.alice, "images/p")
        shared = await self._register(self.alice, "images/s")
        public = await self._register(self.bob, "images/o", is_public=True)
        await self.registry.add_member(self.alice, shared, self.bob)
        await self.registry.add_member(self.alice, shared, self.carol)

        async def ids(query: str = "", user: str | None = None) -> set[str]:
            r = await self.call("GET", f"/v2/images{query}", user)
            self.assertEqual(r.code, 200, r.body)
            return {i["id"] for i in r.json()["images"]}

        self.assertEqual(await ids(), {private, shared, public})
        self.assertEqual(await ids("?visibility=private"), {private})
        self.assertEqual(await ids("?visibility=shared"), {shared})
        self.assertEqual(await ids("?visibility=public"), {public})
        self.assertEqual(await ids("?visibility=shared", self.bob), {shared})
        self.assertEqual(await ids("?status=active&owner=" + self.bob), {public})
        self.assertEqual(await ids("?tag=x"), set())
        self.assertFault(await self.call("GET", "/v2/images?visibility=secret"), 400)
        r = await self.call("GET", f"/v2/images/{shared}/members")
        self.assertEqual(sorted(m["member_id"] for m in r.json()["members"]),
                         sorted([self.bob, self.carol]))
        r = await self.call("GET", f"/v2/images/{shared}/members", self.bob)
        self.assertEqual([(m["member_id"], m["status"]) for m in r.json()["members"]],
                         [(self.bob, "accepted")])
        r = await self.call("GET", f"/v2/images/{shared}/members/{self.carol}", self.bob)
        self.assertFault(r, 404)

    async def test_paging(self):
        """limit and marker page the listing; ``next`` is there while more
        remain and keeps the other parameters; a bad marker or limit is a
        400."""
        ids = []
        for n in range(5):
            ids.append(await self._register(self.alice, f"images/{n}", name=f"n{n}"))
        seen: list[str] = []
        path = "/v2/images?limit=2&sort_key=name&sort_dir=asc"
        while path:
            r = await self.call("GET", path)
            self.assertEqual(r.code, 200, r.body)
            body = r.json()
            self.assertLessEqual(len(body["images"]), 2)
            seen += [i["id"] for i in body["images"]]
            path = body.get("next", "")
            if path:
                self.assertTrue(path.startswith("/v2/images?"), path)
                self.assertIn("sort_key=name", path)
        self.assertEqual(seen, ids)
        for query in ("marker=nope", "limit=-1", "limit=x", "sort_key=colour"):
            self.assertFault(await self.call("GET", f"/v2/images?{query}"), 400)

    async def test_openstacksdk(self):
        """openstacksdk, authenticated through the Keystone API, finds the
        image service in the catalog, discovers v2, lists every image
        across pages and shows one."""
        # The node's own Keystone API; its catalog lists the image service
        # once a live cluster member runs the compute plugin.
        await self.stack.db.run("test.member", register_node_txn, "compute-node",
                                "http://127.0.0.1:1", ["cyclades"])
        user, token = await self.stack.accounts.create_user(
            "dave@example.org", "Dave", "D", password=PASSWORD, activate=True)
        assert token is not None
        self.tokens[user.uuid] = token
        ids = set()
        for n in range(30):
            ids.add(await self._register(user.uuid, f"images/{n}", name=f"image {n}"))
        url = self.stack.url

        def client() -> tuple[set[str], str]:
            import openstack

            conn = openstack.connect(
                auth_url=url + "/identity/v3", username="dave@example.org",
                password=PASSWORD, project_id=user.uuid, user_domain_name="Default",
                region_name="RegionOne", identity_api_version="3")
            try:
                listed = {i.id for i in conn.image.images()}
                one = conn.image.get_image(sorted(listed)[0])
                return listed, one.name
            finally:
                conn.close()

        listed, name = await threads.deferToThread(client)
        self.assertEqual(listed, ids)
        self.assertTrue(name.startswith("image "))
