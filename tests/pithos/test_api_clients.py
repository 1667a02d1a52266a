"""The object store API as real clients use it: python-swiftclient (in a
thread) for the core Swift calls, and the HTTP paths that compose other
modules: large objects read with ranges, partial updates by POST, purges
with ``until``."""

from __future__ import annotations

import hashlib
import io
import json

from swiftclient import client as swift_client
from swiftclient.exceptions import ClientException
from twisted.internet import defer, threads

from snfd.pithos.hashmap import BLOCK_SIZE
from tests.pithos.test_api import StackCase


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class SwiftClientTests(StackCase):
    def connection(self, token: str | None = None,
                   account: str | None = None) -> swift_client.Connection:
        return swift_client.Connection(
            preauthurl=self.stack.account_url(account or self.alice),
            preauthtoken=token or self.alice_token, retries=0, timeout=30)

    async def in_thread(self, fn, *args, **kwargs):
        return await threads.deferToThread(fn, *args, **kwargs)

    async def test_objects(self):
        """put/get/head/post/delete of containers and objects through
        swiftclient, with metadata, unicode names and an empty
        Content-Type."""
        conn = self.connection()
        self.addCleanup(conn.close)
        await self.in_thread(conn.put_container, "photos", headers={"X-Container-Meta-A": "b"})
        etag = await self.in_thread(conn.put_object, "photos", "δ/holiday.jpg", b"jpeg bytes",
                                    headers={"X-Object-Meta-Place": "sea"})
        self.assertEqual(etag, md5(b"jpeg bytes"))
        headers, body = await self.in_thread(conn.get_object, "photos", "δ/holiday.jpg")
        self.assertEqual(body, b"jpeg bytes")
        self.assertEqual(headers["content-type"], "image/jpeg")
        self.assertEqual(headers["x-object-meta-place"], "sea")
        await self.in_thread(conn.post_object, "photos", "δ/holiday.jpg",
                             headers={"X-Object-Meta-Place": "mountain"})
        headers = await self.in_thread(conn.head_object, "photos", "δ/holiday.jpg")
        self.assertEqual(headers["x-object-meta-place"], "mountain")
        headers, listing = await self.in_thread(conn.get_container, "photos")
        self.assertEqual(headers["x-container-meta-a"], "b")
        self.assertEqual([o["name"] for o in listing], ["δ/holiday.jpg"])
        self.assertEqual(listing[0]["hash"], md5(b"jpeg bytes"))
        headers, containers = await self.in_thread(conn.get_account)
        self.assertEqual([c["name"] for c in containers], ["photos"])
        self.assertEqual(headers["x-account-bytes-used"], str(len(b"jpeg bytes")))
        await self.in_thread(conn.delete_object, "photos", "δ/holiday.jpg")
        with self.assertRaises(ClientException) as caught:
            await self.in_thread(conn.head_object, "photos", "δ/holiday.jpg")
        self.assertEqual(caught.exception.http_status, 404)
        await self.in_thread(conn.delete_container, "photos")

    async def test_streamed_and_ranged(self):
        """A file object uploaded with a length, and ranged reads."""
        conn = self.connection()
        self.addCleanup(conn.close)
        data = bytes(range(256)) * 5000
        await self.in_thread(conn.put_container, "c")
        await self.in_thread(conn.put_object, "c", "file", io.BytesIO(data),
                             content_length=len(data), chunk_size=65536)
        headers, body = await self.in_thread(conn.get_object, "c", "file",
                                             headers={"Range": "bytes=1000-1999"})
        self.assertEqual(body, data[1000:2000])
        self.assertEqual(headers["content-range"], f"bytes 1000-1999/{len(data)}")

    async def test_refusals(self):
        """A stranger gets ClientExceptions, not data."""
        conn = self.connection()
        self.addCleanup(conn.close)
        await self.in_thread(conn.put_container, "private")
        await self.in_thread(conn.put_object, "private", "o", b"secret")
        bob = self.connection(self.bob_token, self.alice)
        self.addCleanup(bob.close)
        with self.assertRaises(ClientException) as caught:
            await self.in_thread(bob.get_object, "private", "o")
        self.assertIn(caught.exception.http_status, (403, 404))


class LargeObjectTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.segments()))
        return d

    async def segments(self):
        await self.container("c")
        await self.container("segs")
        self.parts = [b"a" * 1000, b"b" * 2000, b"c" * 3]
        for i, part in enumerate(self.parts):
            await self.put(f"/segs/big/{i:03d}", part)
        self.whole = b"".join(self.parts)

    async def test_dlo(self):
        """A DLO reads as its segments joined, with their total size, the
        quoted MD5 of their ETags, and ranges across segments;
        multipart-manifest=get reads the manifest itself."""
        await self.put("/c/dlo", b"", **{"X-Object-Manifest": "segs/big/"})
        r = await self.call("GET", "/c/dlo")
        self.assertEqual((r.code, r.body, r.length), (200, self.whole, len(self.whole)))
        self.assertEqual(r.header("ETag"),
                         '"' + md5("".join(md5(p) for p in self.parts).encode()) + '"')
        self.assertEqual(r.header("X-Object-Manifest"), "segs/big/")
        r = await self.call("HEAD", "/c/dlo")
        self.assertEqual(r.length, len(self.whole))
        r = await self.call("GET", "/c/dlo", headers={"Range": "bytes=990-3001"})
        self.assertEqual((r.code, r.body), (206, self.whole[990:3002]))
        r = await self.call("GET", "/c/dlo", headers={"Range": "bytes=0-1,2999-"})
        self.assertEqual(r.code, 206)
        self.assertIn(b"aa", r.body)
        r = await self.call("GET", "/c/dlo?multipart-manifest=get")
        self.assertEqual((r.code, r.body), (200, b""))

    async def test_slo(self):
        """An SLO manifest PUT answers its quoted ETag; GET reads the
        segments (with ranges), multipart-manifest=get the JSON list, and
        multipart-manifest=delete removes it and its segments."""
        manifest = [{"path": f"/segs/big/{i:03d}", "etag": md5(p), "size_bytes": len(p)}
                    for i, p in enumerate(self.parts)]
        r = await self.call("PUT", "/c/slo?multipart-manifest=put",
                            body=json.dumps(manifest).encode())
        self.assertEqual(r.code, 201, r.body)
        etag = '"' + md5("".join(md5(p) for p in self.parts).encode()) + '"'
        self.assertEqual(r.header("ETag"), etag)
        r = await self.call("GET", "/c/slo")
        self.assertEqual((r.body, r.header("ETag"), r.length),
                         (self.whole, etag, len(self.whole)))
        self.assertEqual(r.header("X-Static-Large-Object"), "True")
        self.assertIsNone(r.header("X-Slo-Size"))
        r = await self.call("HEAD", "/c/slo")
        self.assertEqual(r.length, len(self.whole))
        r = await self.call("POST", "/c/slo", headers={"X-Object-Meta-A": "1"})
        self.assertEqual(r.code, 202)
        r = await self.call("GET", "/c/slo")
        self.assertEqual((r.body, r.header("X-Object-Meta-A")), (self.whole, "1"))
        r = await self.call("GET", "/c/slo", headers={"Range": "bytes=-5"})
        self.assertEqual(r.body, self.whole[-5:])
        r = await self.call("GET", "/c/slo?multipart-manifest=get")
        self.assertEqual([e["name"] for e in r.json()],
                         [f"/segs/big/{i:03d}" for i in range(3)])
        r = await self.call("DELETE", "/c/slo?multipart-manifest=delete",
                            headers={"Accept": "application/json"})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json()["Number Deleted"], 4)
        self.assertEqual(await self.listing("/segs"), [])

    async def test_slo_bad_manifest(self):
        """A manifest naming a missing segment is a 400."""
        manifest = [{"path": "/segs/nope", "etag": None, "size_bytes": None}]
        r = await self.call("PUT", "/c/slo?multipart-manifest=put",
                            body=json.dumps(manifest).encode())
        self.assertFault(r, 400)


class PartialUpdateTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    async def test_append_and_overwrite(self):
        """POST with octet-stream data and Content-Range appends or
        overwrites (204 + new version); the ETag becomes the MD5 of the
        new content once computed."""
        await self.put("/c/o", b"hello")
        r = await self.call("POST", "/c/o", body=b" world", headers={
            "Content-Type": "application/octet-stream", "Content-Range": "bytes */*"})
        self.assertEqual(r.code, 204, r.body)
        self.assertIsNotNone(r.header("X-Object-Version"))
        r = await self.call("POST", "/c/o", body=b"J", headers={
            "Content-Type": "application/octet-stream", "Content-Range": "bytes 0-0/*"})
        self.assertEqual(r.code, 204, r.body)
        await self.stack.api.drain()
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.body, r.header("ETag")), (b"Jello world", md5(b"Jello world")))

    async def test_source_and_truncate(self):
        """X-Source-Object copies another object's data in; X-Object-Bytes
        truncates."""
        await self.put("/c/o", b"0123456789")
        await self.put("/c/src", b"ab")
        r = await self.call("POST", "/c/o", headers={
            "X-Source-Object": "/c/src", "Content-Range": "bytes 2-3/*",
            "Content-Type": "application/octet-stream", "X-Object-Bytes": "6"})
        self.assertEqual(r.code, 204, r.body)
        self.assertEqual((await self.call("GET", "/c/o")).body, b"01ab45")

    async def test_errors(self):
        """A data update without Content-Range is 400; a bad range 416."""
        await self.put("/c/o", b"data")
        r = await self.call("POST", "/c/o", body=b"x", headers={
            "Content-Type": "application/octet-stream"})
        self.assertFault(r, 400)
        r = await self.call("POST", "/c/o", body=b"x", headers={
            "Content-Type": "application/octet-stream", "Content-Range": "bytes 9-9/*"})
        self.assertFault(r, 416)
        self.assertFault(await self.call("POST", "/c/o", body=b"x", headers={
            "Content-Type": "application/octet-stream", "Content-Range": "bytes */*",
            "X-Object-Bytes": "many"}), 400)


class PurgeTests(StackCase):
    async def test_object_until(self):
        """DELETE ?until=<ts> purges the history before ts and keeps the
        current version."""
        await self.container("c")
        r = await self.put("/c/o", b"v1")
        v1 = int(r.header("X-Object-Version"))
        first = float((await self.call("HEAD", "/c/o")).header("X-Object-Version-Timestamp"))
        r = await self.put("/c/o", b"v2")
        head = await self.call("HEAD", "/c/o")
        second = float(head.header("X-Object-Version-Timestamp"))
        # Halfway between the versions: the header's rounding (to the
        # microsecond) cannot carry it past the current version's time.
        until = (first + second) / 2
        self.assertEqual((await self.call("DELETE", f"/c/o?until={until}")).code, 204)
        r = await self.call("GET", "/c/o?version=list&format=json")
        self.assertNotIn(v1, [v[0] for v in r.json()["versions"]])
        self.assertEqual((await self.call("GET", "/c/o")).body, b"v2")

    async def test_big_upload_through_sink(self):
        """A body of several blocks is stored through the streaming sink
        and its blocks are durable in the store."""
        await self.container("c")
        data = b"\x01" * (BLOCK_SIZE * 2 + 17)
        await self.put("/c/big", data)
        r = await self.call("GET", "/c/big?hashmap&format=json")
        self.assertEqual(await self.stack.blocks.missing(r.json()["hashes"]), [])
