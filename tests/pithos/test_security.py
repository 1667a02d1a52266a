"""Regression tests of the object store's access holes found by the audit
(issue 12): large-object segments read with the reader's rights (H1),
copies and moves with a delimiter checked on every destination (H2), and
old versions kept from sharees (M4), and hashmaps naming only blocks
their caller uploaded or can read (M3, L7).  Alice is the victim, bob the
attacker, carol another user; everything runs over real HTTP."""

from __future__ import annotations

import json

from twisted.trial import unittest

from snfd.pithos.hashmap import BLOCK_SIZE, block_hash, hashmap_of
from snfd.testing.pithos import http
from tests.pithos.test_api import StackCase

SECRET = b"alice's payroll: very private"


class ManifestRightsTests(StackCase):
    """H1: the segments of a large object are read with the rights of
    whoever reads the manifest, never the owner's."""

    async def _setUp(self):
        await super()._setUp()
        self.carol, self.carol_token = await self.stack.user("carol@example.org")
        await self.container("c")
        await self.container("priv")
        await self.put("/priv/payroll.csv", SECRET)
        await self.put("/c/collab.txt", b"hello", **{
            "X-Object-Public": "true",
            "X-Object-Sharing": f"read={self.carol};write={self.bob}"})
        r = await self.call("HEAD", "/c/collab.txt")
        self.link = r.header("X-Object-Public")
        self.assertTrue(self.link)

    async def public(self, link: str | None = None):
        return await http("GET", link or self.link)

    async def test_public_dlo_written_by_sharee(self):
        """A writer who turns a public object into a DLO over the owner's
        private container gets nothing private out of the public link."""
        await self.put("/c/collab.txt", b"", token=self.bob_token,
                       **{"X-Object-Manifest": "priv/"})
        r = await self.public()
        self.assertEqual(r.code, 200)
        self.assertNotIn(b"payroll", r.body)
        self.assertEqual(r.body, b"")

    async def test_public_dlo_reads_public_segments(self):
        """The owner's public DLO still reads as the concatenation of its
        segments that are themselves public, and only those."""
        await self.put("/priv/part1", b"one,", **{"X-Object-Public": "true"})
        await self.put("/priv/part2", b"two", **{"X-Object-Public": "true"})
        await self.put("/c/collab.txt", b"", **{"X-Object-Manifest": "priv/part"})
        r = await self.public()
        self.assertEqual((r.code, r.body), (200, b"one,two"))
        await self.put("/c/collab.txt", b"", **{"X-Object-Manifest": "priv/"})
        r = await self.public()
        self.assertEqual((r.code, r.body), (200, b"one,two"))
        r = await http("HEAD", self.link)
        self.assertEqual(r.length, 7)

    async def test_sharee_reads_dlo_with_own_rights(self):
        """A sharee reading a DLO through a share gets only the segments
        it may read itself; the owner still reads everything."""
        await self.put("/c/collab.txt", b"", token=self.bob_token,
                       **{"X-Object-Manifest": "priv/"})
        for token in (self.bob_token, self.carol_token):
            r = await self.call("GET", "/c/collab.txt", token=token)
            self.assertEqual(r.code, 200)
            self.assertNotIn(b"payroll", r.body)
        await self.call("POST", "/priv/payroll.csv?update",
                        headers={"X-Object-Sharing": f"read={self.carol}"})
        r = await self.call("GET", "/c/collab.txt", token=self.carol_token)
        self.assertEqual(r.body, SECRET)
        r = await self.call("GET", "/c/collab.txt", token=self.bob_token)
        self.assertEqual(r.body, b"")
        r = await self.call("GET", "/c/collab.txt")
        self.assertEqual(r.body, SECRET)

    async def test_public_slo_reads_public_segments_only(self):
        """A published SLO is read anonymously: a private segment makes
        the public link fail (409) without sending its bytes; once the
        segment is public the link serves the whole object."""
        manifest = json.dumps([{"path": "/priv/payroll.csv"}]).encode()
        r = await self.call("PUT", "/c/big?multipart-manifest=put", body=manifest,
                            headers={"Content-Type": "text/csv"})
        self.assertEqual(r.code, 201, r.body)
        await self.call("POST", "/c/big?update", headers={"X-Object-Public": "true"})
        link = (await self.call("HEAD", "/c/big")).header("X-Object-Public")
        r = await self.public(link)
        self.assertEqual(r.code, 409)
        self.assertNotIn(SECRET, r.body)
        self.assertEqual((await self.call("GET", "/c/big")).body, SECRET)
        await self.call("POST", "/priv/payroll.csv?update", headers={"X-Object-Public": "true"})
        r = await self.public(link)
        self.assertEqual((r.code, r.body), (200, SECRET))


class DelimiterCopyTests(StackCase):
    """H2: a copy or move with ``?delimiter`` needs write on every
    destination and read on every source."""

    async def _setUp(self):
        await super()._setUp()
        await self.container("c")
        await self.put("/c/doc", b"alice doc", **{"X-Object-Sharing": f"write={self.bob}"})
        await self.put("/c/doc.bak", b"alice backup")
        await self.call("PUT", "/src", token=self.bob_token, account=self.bob)
        for name, data in (("doc", b"bob doc"), ("doc.bak", b"bob overwrote it"),
                           ("doc.planted", b"planted")):
            await self.put(f"/src/{name}", data, token=self.bob_token, account=self.bob)

    async def assertUntouched(self):
        self.assertEqual((await self.call("GET", "/c/doc")).body, b"alice doc")
        self.assertEqual((await self.call("GET", "/c/doc.bak")).body, b"alice backup")
        self.assertEqual((await self.call("GET", "/c/doc.planted")).code, 404)

    async def test_copy_checks_every_destination(self):
        """Copying a tree onto an object the caller may write is refused
        (403, nothing written) when a destination under it is not
        writable."""
        r = await self.call("PUT", "/c/doc?delimiter=.", token=self.bob_token, headers={
            "X-Copy-From": "/src/doc", "X-Source-Account": self.bob,
            "Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 403, r.body)
        await self.assertUntouched()
        r = await self.call("COPY", "/src/doc?delimiter=.", token=self.bob_token,
                            account=self.bob, headers={
                                "Destination": "/c/doc", "Destination-Account": self.alice})
        self.assertEqual(r.code, 403, r.body)
        await self.assertUntouched()

    async def test_move_checks_every_destination(self):
        """A move with a delimiter is refused the same way and leaves the
        sources in place."""
        r = await self.call("PUT", "/c/doc?delimiter=.", token=self.bob_token, headers={
            "X-Move-From": "/src/doc", "X-Source-Account": self.bob,
            "Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 403, r.body)
        await self.assertUntouched()
        r = await self.call("GET", "/src/doc.planted", token=self.bob_token, account=self.bob)
        self.assertEqual((r.code, r.body), (200, b"planted"))

    async def test_writable_destinations_are_copied(self):
        """With write on every destination the whole tree is copied."""
        await self.call("POST", "/c/doc.bak?update",
                        headers={"X-Object-Sharing": f"write={self.bob}"})
        await self.call("POST", "/c?update",
                        headers={"X-Container-Write": self.bob})
        r = await self.call("PUT", "/c/doc?delimiter=.", token=self.bob_token, headers={
            "X-Copy-From": "/src/doc", "X-Source-Account": self.bob,
            "Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/doc.planted")).body, b"planted")
        self.assertEqual((await self.call("GET", "/c/doc.bak")).body, b"bob overwrote it")

    async def test_copy_reads_only_readable_sources(self):
        """Copying out of another's tree takes only the objects the
        caller may read."""
        await self.call("PUT", "/mine", token=self.bob_token, account=self.bob)
        r = await self.call("PUT", "/mine/doc?delimiter=.", token=self.bob_token,
                            account=self.bob, headers={
                                "X-Copy-From": "/c/doc", "X-Source-Account": self.alice,
                                "Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/mine/doc.bak", token=self.bob_token, account=self.bob)
        self.assertEqual(r.code, 404)


class HistoryTests(StackCase):
    """M4: a non-owner reads only the current version of an object shared
    with them; history stays the owner's."""

    async def _setUp(self):
        await super()._setUp()
        await self.container("c")
        r = await self.put("/c/report", b"the secret report")
        self.old = r.header("X-Object-Version")
        await self.call("DELETE", "/c/report")
        r = await self.put("/c/report", b"the public report",
                           **{"X-Object-Sharing": f"read={self.bob}"})
        self.current = r.header("X-Object-Version")

    async def test_sharee_cannot_read_deleted_history(self):
        """A later sharee cannot read a deleted version (403), list the
        versions (403) or copy an old version out; the current version
        reads as before and the owner still reads the old one."""
        r = await self.call("GET", f"/c/report?version={self.old}", token=self.bob_token)
        self.assertEqual(r.code, 403, r.body)
        self.assertNotIn(b"secret", r.body)
        r = await self.call("GET", f"/c/report?version={self.old}&hashmap&format=json",
                            token=self.bob_token)
        self.assertEqual(r.code, 403, r.body)
        r = await self.call("GET", "/c/report?version=list&format=json", token=self.bob_token)
        self.assertEqual(r.code, 403, r.body)
        await self.call("PUT", "/mine", token=self.bob_token, account=self.bob)
        r = await self.call("PUT", "/mine/copy", token=self.bob_token, account=self.bob,
                            headers={"X-Copy-From": "/c/report",
                                     "X-Source-Account": self.alice,
                                     "X-Source-Version": self.old,
                                     "Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 403, r.body)
        r = await self.call("GET", "/mine/copy", token=self.bob_token, account=self.bob)
        self.assertEqual(r.code, 404)
        r = await self.call("GET", f"/c/report?version={self.current}", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"the public report"))
        r = await self.call("GET", "/c/report", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"the public report"))
        r = await self.call("GET", f"/c/report?version={self.old}")
        self.assertEqual((r.code, r.body), (200, b"the secret report"))
        r = await self.call("GET", "/c/report?version=list&format=json")
        self.assertEqual(len(r.json()["versions"]), 2)

    async def test_stranger_still_gets_not_found(self):
        """Someone the object is not shared with learns nothing: 404 for
        any version and for the version list."""
        carol, carol_token = await self.stack.user("carol@example.org")
        for query in (f"?version={self.old}", "?version=list&format=json"):
            r = await self.call("GET", "/c/report" + query, token=carol_token)
            self.assertEqual(r.code, 403, r.body)


class BlockNamingTests(StackCase):
    """M3 and L7: a hashmap PUT names only blocks its caller uploaded or
    can read in an object; any other block counts as missing (409),
    whether the store holds it or not, so the answer tells nothing about
    another tenant's data and lends none of it."""

    async def _setUp(self):
        await super()._setUp()
        await self.container("c")
        await self.put("/c/secret", SECRET)
        self.secret_hash = block_hash(SECRET)
        r = await self.call("PUT", "/b", token=self.bob_token, account=self.bob)
        self.assertEqual(r.code, 201, r.body)

    async def put_hashmap(self, path: str, size: int, hashes: list[str],
                          token: object, account: str | None = None):
        body = json.dumps({"bytes": size, "hashes": hashes}).encode()
        return await self.call("PUT", f"{path}?hashmap&format=json", token=token,
                               account=account, body=body,
                               headers={"Content-Type": "application/octet-stream"})

    async def test_foreign_block_cannot_be_named(self):
        """Bob naming the block of alice's private object gets a 409 that
        lists it, and no object: he cannot copy her data by its hash."""
        r = await self.put_hashmap("/b/stolen", len(SECRET), [self.secret_hash],
                                   self.bob_token, self.bob)
        self.assertEqual((r.code, r.json()), (409, [self.secret_hash]), r.body)
        r = await self.call("GET", "/b/stolen", token=self.bob_token, account=self.bob)
        self.assertEqual(r.code, 404)

    async def test_no_existence_oracle(self):
        """A block that exists (alice's) and one that exists nowhere are
        answered alike: both are listed as missing."""
        unknown = block_hash(b"nobody has this block")
        r = await self.put_hashmap("/b/probe", BLOCK_SIZE + 1, [self.secret_hash, unknown],
                                   self.bob_token, self.bob)
        self.assertEqual(r.code, 409, r.body)
        self.assertEqual(sorted(r.json()), sorted([self.secret_hash, unknown]))

    async def test_uploaded_block_can_be_named(self):
        """After bob uploads the same bytes himself (POST to his container),
        the same hashmap PUT creates his object."""
        r = await self.call("POST", "/b?update&format=json", token=self.bob_token,
                            account=self.bob, body=SECRET,
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.json(), [self.secret_hash])
        r = await self.put_hashmap("/b/mine", len(SECRET), [self.secret_hash],
                                   self.bob_token, self.bob)
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/b/mine", token=self.bob_token, account=self.bob)
        self.assertEqual((r.code, r.body), (200, SECRET))

    async def test_owner_and_readers_name_blocks(self):
        """The owner names the blocks of her own objects, and a sharee those
        of an object he may read, without uploading them again."""
        r = await self.put_hashmap("/c/again", len(SECRET), [self.secret_hash],
                                   self.alice_token)
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("POST", "/c/secret", headers={"X-Object-Sharing": f"read={self.bob}"})
        self.assertEqual(r.code, 202, r.body)
        r = await self.put_hashmap("/b/shared", len(SECRET), [self.secret_hash],
                                   self.bob_token, self.bob)
        self.assertEqual(r.code, 201, r.body)


class RefusedUploadTests(StackCase):
    """M3: an upload whose length the quota cannot hold (the container's
    or the account's) is refused before a block of it is stored."""

    def data(self, size: int, seed: bytes) -> bytes:
        return (seed * (size // len(seed) + 1))[:size]

    async def assertNothingStored(self, data: bytes) -> None:
        missing = await self.stack.blocks.missing(hashmap_of(data))
        self.assertEqual(sorted(missing), sorted(set(hashmap_of(data))))

    async def test_container_quota_streamed(self):
        """A streamed PUT longer than the container quota leaves is 413
        and stores no block; one that fits still works."""
        await self.container("q", **{"X-Container-Policy-Quota": "200000"})
        data = self.data(300_000, b"streamed over quota ")
        r = await self.call("PUT", "/q/big", body=data,
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 413, r.body)
        await self.assertNothingStored(data)
        await self.put("/q/fits", self.data(150_000, b"this one fits "))

    async def test_container_quota_buffered(self):
        """A small (buffered) PUT beyond the container quota is 413 and
        stores no block; replacing an object by one of the same size is
        still allowed in a full container."""
        await self.container("q", **{"X-Container-Policy-Quota": "10"})
        await self.put("/q/o", b"0123456789")
        data = b"small but over the quota"
        r = await self.call("PUT", "/q/x", body=data,
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 413, r.body)
        await self.assertNothingStored(data)
        await self.put("/q/o", b"abcdefghij")

    async def test_account_quota_streamed(self):
        """A streamed PUT longer than the account's remaining diskspace is
        413 and stores no block."""
        await self.stack.set_diskspace(self.alice, 100_000)
        await self.container("c")
        data = self.data(200_000, b"over the account quota ")
        r = await self.call("PUT", "/c/big", body=data,
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 413, r.body)
        await self.assertNothingStored(data)


class BlockUploadBoundTests(StackCase):
    """M3: blocks uploaded by POST to a container that no object references
    yet are bounded per uploader by its remaining diskspace; naming them
    in an object (charged from then on) or their expiry by the garbage
    collector frees the room."""

    async def _setUp(self):
        await super()._setUp()
        await self.stack.set_diskspace(self.bob, 300_000)
        r = await self.call("PUT", "/b", token=self.bob_token, account=self.bob)
        self.assertEqual(r.code, 201, r.body)

    async def upload(self, data: bytes):
        return await self.call("POST", "/b?update&format=json", token=self.bob_token,
                               account=self.bob, body=data,
                               headers={"Content-Type": "application/octet-stream"})

    async def test_bound_and_reference(self):
        """Past the bound a block upload is 413; once the pending blocks
        are in an object, uploads within what is left work again."""
        first = b"1" * 200_000
        r = await self.upload(first)
        self.assertEqual(r.code, 202, r.body)
        r = await self.upload(b"2" * 150_000)
        self.assertEqual(r.code, 413, r.body)
        r = await self.call("PUT", "/b/o?hashmap&format=json", token=self.bob_token,
                            account=self.bob, body=json.dumps(
                                {"bytes": len(first), "hashes": hashmap_of(first)}).encode(),
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.upload(b"3" * 90_000)
        self.assertEqual(r.code, 202, r.body)
        r = await self.upload(b"4" * 20_000)
        self.assertEqual(r.code, 413, r.body)

    async def test_expiry_frees_room(self):
        """The garbage collector drops upload records past its grace, so
        they no longer count against the bound."""
        r = await self.upload(b"1" * 200_000)
        self.assertEqual(r.code, 202, r.body)
        self.assertEqual((await self.upload(b"2" * 150_000)).code, 413)
        await self.stack.backend.collect_garbage(-1.0)
        r = await self.upload(b"2" * 150_000)
        self.assertEqual(r.code, 202, r.body)


class LeftoverUploadTests(StackCase):
    """M3, the rest: what an upload stores and nothing ends up referencing
    is bounded too.  A chunked upload (no Content-Length) stops storing
    once past the room the quota leaves; a partial update is checked
    before storing; blocks of an upload that failed after storing count
    as the uploader's unreferenced uploads; and the block-upload bound is
    reserved at the gate, so concurrent uploads cannot pass it together."""

    async def _setUp(self):
        await super()._setUp()
        await self.stack.set_diskspace(self.bob, 300_000)
        r = await self.call("PUT", "/b", token=self.bob_token, account=self.bob)
        self.assertEqual(r.code, 201, r.body)

    async def assertNothingStored(self, data: bytes) -> None:
        missing = await self.stack.blocks.missing(hashmap_of(data))
        self.assertEqual(sorted(missing), sorted(set(hashmap_of(data))))

    async def bob_upload(self, data: bytes, chunked: bool = False):
        body = dict(chunks=[data[i:i + 65536] for i in range(0, len(data), 65536)]) \
            if chunked else dict(body=data)
        return await self.call("POST", "/b?update&format=json", token=self.bob_token,
                               account=self.bob,
                               headers={"Content-Type": "application/octet-stream"}, **body)

    async def test_chunked_put_over_quota_stores_nothing(self):
        """A chunked PUT is cut off (413) as soon as it passes the room the
        container quota leaves: its block is never stored."""
        await self.container("q", **{"X-Container-Policy-Quota": "200000"})
        data = b"chunked over the quota " * 20_000
        r = await self.call("PUT", "/q/big", chunks=[data[i:i + 50_000]
                                                      for i in range(0, len(data), 50_000)],
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 413, r.body)
        await self.assertNothingStored(data)
        r = await self.call("PUT", "/q/fits", chunks=[b"small", b" enough"],
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, r.body)

    async def test_chunked_block_upload_is_bounded(self):
        """A chunked block upload longer than what the uploader has left is
        413 and stores nothing."""
        data = b"chunked blocks " * 30_000
        r = await self.bob_upload(data, chunked=True)
        self.assertEqual(r.code, 413, r.body)
        await self.assertNothingStored(data)
        r = await self.bob_upload(b"fits " * 20_000, chunked=True)
        self.assertEqual(r.code, 202, r.body)

    async def test_partial_update_checked_before_storing(self):
        """An append that cannot fit the account's space is 413 before a
        block of it is stored."""
        await self.stack.set_diskspace(self.alice, 100_000)
        await self.container("c")
        await self.put("/c/o", b"0123456789")
        data = b"appended over the quota " * 10_000
        r = await self.call("POST", "/c/o", body=data, headers={
            "Content-Type": "application/octet-stream", "Content-Range": "bytes */*"})
        self.assertEqual(r.code, 413, r.body)
        await self.assertNothingStored(data)

    async def test_failed_upload_counts_against_the_uploader(self):
        """The blocks of a PUT refused after its body was stored (a wrong
        ETag) are bob's unreferenced uploads: they take his room for
        block uploads, and he may name them in a hashmap."""
        data = b"stored then refused " * 10_000
        r = await self.call("PUT", "/b/o", token=self.bob_token, account=self.bob,
                            body=data, headers={"Content-Type": "application/octet-stream",
                                                "ETag": "0" * 32})
        self.assertEqual(r.code, 422, r.body)
        r = await self.bob_upload(b"more " * 30_000)
        self.assertEqual(r.code, 413, r.body)
        body = json.dumps({"bytes": len(data), "hashes": hashmap_of(data)}).encode()
        r = await self.call("PUT", "/b/o?hashmap&format=json", token=self.bob_token,
                            account=self.bob, body=body,
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.bob_upload(b"more " * 10_000)
        self.assertEqual(r.code, 202, r.body)

    async def test_concurrent_block_uploads_share_the_bound(self):
        """Two block uploads that each fit but not together: one is 413."""
        from twisted.internet import defer
        first, second = b"1" * 200_000, b"2" * 200_000
        replies = await defer.gatherResults([
            defer.ensureDeferred(self.bob_upload(first)),
            defer.ensureDeferred(self.bob_upload(second))])
        self.assertEqual(sorted(r.code for r in replies), [202, 413],
                         [r.body for r in replies])


class LostGateTests(unittest.TestCase):
    """M3: a block upload whose connection is lost while its gate is
    still reserving room gives that room back at once (not at the garbage
    collector's grace)."""

    async def test_reservation_released_after_lost_connection(self):
        from twisted.internet import defer
        from twisted.web.http_headers import Headers

        from snfd.pithos.policies import Placement
        from snfd.pithos.requests import Target
        from snfd.pithos.uploads import Uploads, _record_of
        from snfd.web.auth import Principal

        reserving: defer.Deferred = defer.Deferred()
        recorded: list = []

        class Backend:
            async def container(self, user, account, container):
                return object()

            async def container_settings(self, account, container):
                return object()

            def container_blocks(self, container):
                return "store"

            async def reserve_uploads(self, user, size):
                return await reserving

            async def record_uploads(self, user, blocks, reservation=None):
                recorded.append((user, list(blocks), reservation))

        class Authenticator:
            async def authenticate(self, token):
                return Principal(user="bob")

        uploads = Uploads(Backend(), None, None, Authenticator())
        request = type("Request", (), {})()
        heads = Headers({b"x-auth-token": [b"t"]})
        gate = defer.ensureDeferred(uploads._gate(
            request, heads, {}, Target(account="bob", container="b"), "blocks", None, None,
            Placement(type("Store", (), {"block_size": 4})())))
        await uploads._record(request, [])  # the sink was abandoned: nothing stored
        reserving.callback((7, 1000))
        await gate
        self.assertIn(("bob", [], 7), recorded)  # the room taken is given back
        self.assertTrue(_record_of(request).done)
