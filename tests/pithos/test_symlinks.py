"""Swift's symlinks (``snfd.pithos.symlinks``) over the served object
store."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.trial import unittest

from snfd.pithos.symlinks import MD5_EMPTY, Link, link_of
from tests.pithos.test_api import StackCase, parse_xml


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class LinkCodecTests(unittest.TestCase):
    def test_round_trip(self):
        """A link survives its stored form, odd names included."""
        for link in (Link("a", "c", "o"), Link("a b", "c;d", "x=y/%z/ü"),
                     Link("a", "c", "o", "etag", 12)):
            self.assertEqual(link_of(link.checksum()), link)
        self.assertIsNone(link_of(MD5_EMPTY))
        self.assertIsNone(link_of(None))


class SymlinkTests(StackCase):
    async def link(self, path: str, target: str, code: int = 201, token: Any = None,
                   account: str | None = None, **headers: str) -> None:
        headers = {"X-Symlink-Target": target, "Content-Type": "application/symlink",
                   **headers}
        r = await self.call("PUT", path, headers=headers, body=b"", account=account,
                            token=token or self.alice_token)
        self.assertEqual(r.code, code, r.body)

    async def test_follow(self):
        """GET and HEAD of a link answer the target, with Content-Location;
        ?symlink=get answers the link itself."""
        await self.container("c")
        await self.container("d")
        await self.put("/c/file.txt", b"target data")
        await self.link("/d/link", "c/file.txt")
        r = await self.call("GET", "/d/link")
        self.assertEqual((r.code, r.body), (200, b"target data"))
        self.assertEqual(r.header("Content-Location"), f"/v1/{self.alice}/c/file.txt")
        self.assertEqual(r.header("ETag"), md5(b"target data"))
        r = await self.call("HEAD", "/d/link")
        self.assertEqual(r.header("Content-Length"), "11")
        r = await self.call("GET", "/d/link?symlink=get")
        self.assertEqual((r.code, r.body), (200, b""))
        self.assertEqual(r.header("ETag"), MD5_EMPTY)
        self.assertEqual(r.header("X-Symlink-Target"), "c/file.txt")
        self.assertEqual(r.header("X-Symlink-Target-Account"), self.alice)
        self.assertEqual(r.header("Content-Type"), "application/symlink")

    async def test_listing(self):
        """JSON and XML listings show a link's symlink_path and the plain
        ETag."""
        await self.container("c")
        await self.link("/c/link", "c/some object")
        [entry] = await self.listing("/c")
        self.assertEqual(entry["hash"], MD5_EMPTY)
        self.assertEqual(entry["bytes"], 0)
        self.assertEqual(entry["content_type"], "application/symlink")
        self.assertEqual(entry["symlink_path"], f"/v1/{self.alice}/c/some%20object")
        r = await self.call("GET", "/c?format=xml")
        obj = parse_xml(r.body).find("object")
        assert obj is not None
        self.assertEqual(obj.findtext("hash"), MD5_EMPTY)
        self.assertEqual(obj.findtext("symlink_path"), f"/v1/{self.alice}/c/some%20object")

    async def test_missing_target(self):
        """A link to nothing may be made; reading through it is a 404, as
        after its target is deleted."""
        await self.container("c")
        await self.link("/c/broken", "c/missing")
        self.assertFault(await self.call("GET", "/c/broken"), 404)
        await self.put("/c/t", b"x")
        await self.link("/c/l", "c/t")
        self.assertEqual((await self.call("GET", "/c/l")).body, b"x")
        self.assertEqual((await self.call("DELETE", "/c/t")).code, 204)
        self.assertFault(await self.call("GET", "/c/l"), 404)
        self.assertEqual((await self.call("DELETE", "/c/l")).code, 204)

    async def test_refusals(self):
        """A body, a target not <container>/<object>, the link itself and a
        POST with a target are refused as Swift refuses them."""
        await self.container("c")
        r = await self.call("PUT", "/c/l", headers={"X-Symlink-Target": "c/o"}, body=b"data")
        self.assertFault(r, 400)
        self.assertEqual(r.body, b"Symlink requests require a zero byte body")
        for bad in ("/c/o", "c", "c/"):
            await self.link("/c/l", bad, 412)
        await self.link("/c/l", "c/l", 400)
        await self.put("/c/o")
        r = await self.call("POST", "/c/o", headers={"X-Symlink-Target": "c/x"})
        self.assertFault(r, 400)
        self.assertFault(await self.call("GET", "/c/l"), 404)

    async def test_chains_and_loops(self):
        """Two links are followed; a third, or a loop, is a 409."""
        await self.container("c")
        await self.put("/c/o", b"end")
        await self.link("/c/l1", "c/o")
        await self.link("/c/l2", "c/l1")
        self.assertEqual((await self.call("GET", "/c/l2")).body, b"end")
        await self.link("/c/l3", "c/l2")
        self.assertFault(await self.call("GET", "/c/l3"), 409)
        await self.link("/c/a", "c/b")
        await self.link("/c/b", "c/a")
        self.assertFault(await self.call("GET", "/c/a"), 409)

    async def test_callers_own_rights(self):
        """A link is read with the caller's rights: bob, who may read the
        link, may not read alice's private target through it, nor may he
        link to it himself."""
        await self.container("private")
        await self.put("/private/secret", b"secret")
        await self.container("shared", **{"X-Container-Read": self.bob})
        await self.link("/shared/l", "private/secret")
        r = await self.call("GET", "/shared/l", token=self.bob_token)
        self.assertIn(r.code, (403, 404))
        self.assertNotIn(b"secret", r.body)
        r = await self.call("GET", "/shared/l?symlink=get", token=self.bob_token)
        self.assertEqual(r.code, 200)
        await self.call("PUT", "/mine", token=self.bob_token, account=self.bob)
        await self.link("/mine/l", "private/secret", account=self.bob,
                        token=self.bob_token, **{"X-Symlink-Target-Account": self.alice})
        r = await self.call("GET", "/mine/l", token=self.bob_token, account=self.bob)
        self.assertIn(r.code, (403, 404))
        self.assertNotIn(b"secret", r.body)

    async def test_static_links(self):
        """A static link needs its target with that ETag; reading through it
        answers 409 once the target changed."""
        await self.container("c")
        await self.put("/c/o", b"v1")
        etag = md5(b"v1")
        await self.link("/c/bad", "c/o", 409, **{"X-Symlink-Target-Etag": "0" * 32})
        await self.link("/c/none", "c/missing", 409, **{"X-Symlink-Target-Etag": etag})
        r = await self.call("PUT", "/c/s", body=b"", headers={
            "X-Symlink-Target": "c/o", "X-Symlink-Target-Etag": etag})
        self.assertEqual(r.code, 201)
        r = await self.call("HEAD", "/c/s?symlink=get")
        self.assertEqual(r.header("X-Symlink-Target-Etag"), etag)
        self.assertEqual(r.header("X-Symlink-Target-Bytes"), "2")
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")
        [entry] = [e for e in await self.listing("/c") if e["name"] == "s"]
        self.assertEqual((entry["symlink_etag"], entry["symlink_bytes"]), (etag, 2))
        self.assertEqual((await self.call("GET", "/c/s")).body, b"v1")
        await self.put("/c/o", b"v2")
        self.assertFault(await self.call("GET", "/c/s"), 409)

    async def test_copy_and_post(self):
        """A copy of a link copies its target (?symlink=get: the link); a
        POST to a link answers 307 to the target."""
        await self.container("c")
        await self.put("/c/o", b"content")
        await self.link("/c/l", "c/o")
        r = await self.call("PUT", "/c/copy", headers={"X-Copy-From": "/c/l"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/c/copy?symlink=get")
        self.assertEqual((r.body, r.header("X-Symlink-Target")), (b"content", None))
        r = await self.call("COPY", "/c/l", headers={"Destination": "/c/copy2"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/copy2?symlink=get")).body, b"content")
        r = await self.call("COPY", "/c/l?symlink=get", headers={"Destination": "/c/l2"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("HEAD", "/c/l2?symlink=get")
        self.assertEqual(r.header("X-Symlink-Target"), "c/o")
        r = await self.call("POST", "/c/l", headers={"X-Object-Meta-A": "b"})
        self.assertEqual(r.code, 307)
        self.assertEqual(r.header("Location"), f"/v1/{self.alice}/c/o")

    async def test_info(self):
        """/info advertises symlinks as Swift does."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.json()["symlink"], {"symloop_max": 2, "static_links": True})
