"""Reads without a token through Swift container ACLs: a container whose
``X-Container-Read`` holds ``.r:*`` is read (objects and listing) by
callers without a token, as Swift serves it; everything else still asks
for a token (401), as Swift answers."""

from __future__ import annotations

from snfd.testing.pithos import http
from tests.pithos.test_api import StackCase

OPEN = {"X-Container-Read": ".r:*,.rlistings"}


class AnonymousReadTests(StackCase):
    async def _setUp(self):
        await super()._setUp()
        await self.container("web", **OPEN)
        await self.container("private")
        await self.put("/web/page.html", b"<p>hello</p>", **{"Content-Type": "text/html"})
        await self.put("/private/secret", b"secret")

    async def test_reads_open_container(self):
        """GET and HEAD of an object, and the container's HEAD and listing,
        need no token where the container reads ``.r:*``."""
        r = await self.call("GET", "/web/page.html", token=None)
        self.assertEqual((r.code, r.body), (200, b"<p>hello</p>"))
        self.assertEqual(r.header("Content-Type"), "text/html")
        r = await self.call("HEAD", "/web/page.html", token=None)
        self.assertEqual((r.code, r.header("Content-Length")), (200, "12"))
        r = await self.call("HEAD", "/web", token=None)
        self.assertEqual((r.code, r.header("X-Container-Object-Count")), (204, "1"))
        r = await self.call("GET", "/web", token=None)
        self.assertEqual((r.code, r.body), (200, b"page.html\n"))
        self.assertEqual([o["name"] for o in await self.listing("/web", token=None)],
                         ["page.html"])

    async def test_owner_settings_hidden(self):
        """A caller without a token sees none of the owner's container
        metadata or ACLs."""
        await self.call("POST", "/web", headers={"X-Container-Meta-Owner-Note": "x"})
        r = await self.call("HEAD", "/web", token=None)
        self.assertIsNone(r.header("X-Container-Meta-Owner-Note"))
        self.assertIsNone(r.header("X-Container-Read"))

    async def test_everything_else_is_401(self):
        """Without a token: private containers and their objects, missing
        containers, the account and the top level are 401."""
        for path in ("/private", "/private/secret", "/private/absent", "/absent",
                     "/absent/o", ""):
            for method in ("GET", "HEAD"):
                r = await self.call(method, path, token=None)
                self.assertEqual(r.code, 401, (method, path))
        r = await self.call("GET", "/web", token=None, account=self.bob)
        self.assertEqual(r.code, 401)

    async def test_authenticated_grant_needs_a_token(self):
        """``*:*`` (and ``*``) in X-Container-Read grant every authenticated
        user, not callers without a token: it reads back as ``*:*``, other
        users read, anonymous callers get 401."""
        await self.container("members", **{"X-Container-Read": "*:*"})
        await self.put("/members/doc", b"for members")
        r = await self.call("HEAD", "/members")
        self.assertEqual(r.header("X-Container-Read"), "*:*")
        r = await self.call("GET", "/members/doc", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"for members"))
        for path in ("/members", "/members/doc"):
            self.assertEqual((await self.call("GET", path, token=None)).code, 401, path)

    async def test_missing_object_is_404(self):
        """In an open container a missing object is 404, as in Swift."""
        r = await self.call("GET", "/web/absent", token=None)
        self.assertEqual(r.code, 404)

    async def test_writes_need_a_token(self):
        """Writes to an open container without a token are 401 and change
        nothing."""
        for method, path in (("PUT", "/web/page.html"), ("POST", "/web/page.html"),
                             ("DELETE", "/web/page.html"), ("PUT", "/web/new"),
                             ("POST", "/web"), ("DELETE", "/web"), ("PUT", "/web2")):
            r = await self.call(method, path, token=None, body=b"x",
                                headers={"Content-Type": "text/plain"})
            self.assertEqual(r.code, 401, (method, path))
        r = await self.call("COPY", "/web/page.html", token=None,
                            headers={"Destination": "web/copy"})
        self.assertEqual(r.code, 401)
        self.assertEqual((await self.call("GET", "/web/page.html")).body, b"<p>hello</p>")
        self.assertEqual((await self.call("GET", "/web/new")).code, 404)

    async def test_closer_sharing_hides(self):
        """An object whose own sharing names someone is not open to all:
        without a token it is a 404 and not listed; its sharee reads it."""
        await self.put("/web/draft", b"draft", **{"X-Object-Sharing": f"read={self.bob}"})
        self.assertEqual((await self.call("GET", "/web/draft", token=None)).code, 404)
        self.assertEqual([o["name"] for o in await self.listing("/web", token=None)],
                         ["page.html"])
        r = await self.call("GET", "/web/draft", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"draft"))

    async def test_star_elsewhere_needs_a_token(self):
        """``*`` in an object's sharing or in a container's write list
        names authenticated users only."""
        await self.put("/private/all", b"all", **{"X-Object-Sharing": "read=*"})
        await self.container("dropbox", **{"X-Container-Write": "*:*"})
        await self.put("/dropbox/o", b"o")
        for path in ("/private/all", "/dropbox/o", "/dropbox"):
            self.assertEqual((await self.call("GET", path, token=None)).code, 401, path)
        r = await self.call("GET", "/private/all", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"all"))

    async def test_public_objects_stay_behind_their_links(self):
        """A public object in a private container is read through its link,
        not by its path without a token."""
        await self.call("POST", "/private/secret", headers={"X-Object-Public": "true"})
        link = (await self.call("HEAD", "/private/secret")).header("X-Object-Public")
        self.assertEqual((await self.call("GET", "/private/secret", token=None)).code, 401)
        r = await http("GET", link)
        self.assertEqual((r.code, r.body), (200, b"secret"))

    async def test_authenticated_users_still_read(self):
        """``.r:*`` keeps letting every authenticated user read and list;
        only the owner sees the ACL."""
        r = await self.call("GET", "/web/page.html", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"<p>hello</p>"))
        r = await self.call("GET", "/web", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"page.html\n"))
        r = await self.call("HEAD", "/web")
        self.assertEqual(r.header("X-Container-Read"), ".r:*,.rlistings")

    async def test_revoked(self):
        """Removing the ACL closes the container to callers without a
        token at once."""
        await self.call("POST", "/web", headers={"X-Container-Read": ""})
        self.assertEqual((await self.call("GET", "/web/page.html", token=None)).code, 401)
        self.assertEqual((await self.call("GET", "/web", token=None)).code, 401)

    async def test_history_is_the_owners(self):
        """Past versions stay the owner's: without a token they are 401."""
        await self.put("/web/page.html", b"v2", **{"Content-Type": "text/html"})
        r = await self.call("GET", "/web/page.html?version=list&format=json", token=None)
        self.assertEqual(r.code, 401)
