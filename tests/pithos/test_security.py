"""Regression tests of the object store's access holes found by the audit
(issue 12): large-object segments read with the reader's rights (H1),
copies and moves with a delimiter checked on every destination (H2), and
old versions kept from sharees (M4).  Alice is the victim, bob the
attacker, carol another user; everything runs over real HTTP."""

from __future__ import annotations

import json

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
            self.assertEqual(r.code, 404, r.body)
