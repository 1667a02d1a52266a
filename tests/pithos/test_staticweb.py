"""Static web (Swift's ``staticweb``): containers open to all served as web
sites to callers without a token, and to token callers who ask with
``X-Web-Mode: true``."""

from __future__ import annotations

from twisted.trial import unittest

from snfd.pithos.staticweb import css_href, human_size
from tests.pithos.test_api import StackCase

OPEN = {"X-Container-Read": ".r:*,.rlistings"}


class PiecesTests(unittest.TestCase):
    def test_human_size(self):
        """Sizes read as Swift's listings show them."""
        self.assertEqual([human_size(n) for n in (0, 1023, 1024, 1536, 5 * 2**20, 2**40)],
                         ["0", "1023", "1Ki", "2Ki", "5Mi", "1Ti"])

    def test_css_href(self):
        """A relative style sheet is found from any directory depth; URLs
        and absolute paths are kept."""
        self.assertEqual(css_href("s.css", ""), "s.css")
        self.assertEqual(css_href("s.css", "a/b/"), "../../s.css")
        self.assertEqual(css_href("/x/s.css", "a/"), "/x/s.css")
        self.assertEqual(css_href("https://cdn.test/s.css", "a/"), "https://cdn.test/s.css")


class StaticWebTests(StackCase):
    async def _setUp(self):
        await super()._setUp()
        await self.container("site", **OPEN)
        await self.put("/site/index.html", b"<p>home</p>", **{"Content-Type": "text/html"})
        await self.put("/site/docs/index.html", b"<p>docs</p>",
                       **{"Content-Type": "text/html"})
        await self.put("/site/files/a.txt", b"a" * 2048, **{"Content-Type": "text/plain"})
        await self.put("/site/files/sub/b.txt", b"b")
        await self.put("/site/404error.html", b"<p>lost</p>", **{"Content-Type": "text/html"})

    async def web(self, **meta: str) -> None:
        r = await self.call("POST", "/site", headers={
            f"X-Container-Meta-Web-{k.replace('_', '-')}": v for k, v in meta.items()})
        self.assertEqual(r.code, 204)

    async def test_off_by_default(self):
        """Without web settings a container reads as the plain API."""
        r = await self.call("GET", "/site", token=None)
        self.assertEqual(r.code, 200)
        self.assertIn(b"index.html\n", r.body)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        self.assertEqual((await self.call("GET", "/site/docs/", token=None)).code, 404)

    async def test_index(self):
        """With Web-Index the container and its pseudo directories serve
        their index; a path without its trailing slash is redirected."""
        await self.web(Index="index.html")
        r = await self.call("GET", "/site/", token=None)
        self.assertEqual((r.code, r.body), (200, b"<p>home</p>"))
        self.assertEqual(r.header("Content-Type"), "text/html")
        r = await self.call("GET", "/site", token=None)
        self.assertEqual(r.code, 301)
        self.assertTrue(r.header("Location").endswith(f"/{self.alice}/site/"))
        r = await self.call("GET", "/site/docs/", token=None)
        self.assertEqual((r.code, r.body), (200, b"<p>docs</p>"))
        r = await self.call("GET", "/site/docs", token=None)
        self.assertEqual(r.code, 301)
        self.assertTrue(r.header("Location").endswith("/site/docs/"))
        r = await self.call("HEAD", "/site/docs/", token=None)
        self.assertEqual((r.code, r.header("Content-Length")), (200, "11"))
        r = await self.call("GET", "/site/index.html", token=None)
        self.assertEqual((r.code, r.body), (200, b"<p>home</p>"))

    async def test_listings(self):
        """With Web-Listings a directory without an index is an HTML listing
        of its subdirectories and objects, linked relative to it."""
        await self.web(Listings="true")
        r = await self.call("GET", "/site/files/", token=None)
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=UTF-8")
        page = r.body.decode()
        self.assertIn(f"<title>Listing of /object-store/v1/{self.alice}/site/files/</title>",
                      page)
        self.assertIn('<a href="./sub/">sub/</a>', page)
        self.assertIn('<a href="./a%2Etxt">a.txt</a>', page)
        self.assertIn('<td class="colsize">2Ki</td>', page)
        self.assertIn('class="item type-text type-plain"', page)
        self.assertIn('<a href="../">../</a>', page)
        self.assertIn("<style", page)
        r = await self.call("GET", "/site/", token=None)
        self.assertIn(b'<a href="./files/">files/</a>', r.body)
        self.assertNotIn(b'href="../"', r.body)
        self.assertEqual((await self.call("GET", "/site/nothing/", token=None)).code, 404)
        r = await self.call("GET", "/site/files", token=None)
        self.assertEqual(r.code, 301)

    async def test_listing_css_and_label(self):
        """Web-Listings-CSS links the style sheet from any depth;
        Web-Listings-Label replaces the path in the title."""
        await self.web(Listings="true", Listings_CSS="listings.css",
                       Listings_Label="example.test")
        r = await self.call("GET", "/site/", token=None)
        self.assertIn(b'<link rel="stylesheet" type="text/css" href="listings.css" />', r.body)
        self.assertIn(b"<title>Listing of example.test/</title>", r.body)
        r = await self.call("GET", "/site/files/sub/", token=None)
        self.assertIn(b'href="../../listings.css"', r.body)
        self.assertIn(b"Listing of example.test/files/sub/", r.body)

    async def test_index_falls_back_to_listing(self):
        """A directory whose index is missing is listed when listings are
        on, else a 404 page that says listings are off."""
        await self.web(Index="index.html")
        r = await self.call("GET", "/site/files/", token=None)
        self.assertEqual(r.code, 404)
        self.assertIn(b"Web Listing Disabled", r.body)
        await self.web(Index="index.html", Listings="true")
        r = await self.call("GET", "/site/files/", token=None)
        self.assertEqual(r.code, 200)
        self.assertIn(b"a.txt", r.body)

    async def test_error_page(self):
        """With Web-Error a 404 serves <404><error> with status 404; other
        answers are untouched."""
        await self.web(Listings="true", Error="error.html")
        r = await self.call("GET", "/site/missing.html", token=None)
        self.assertEqual((r.code, r.body), (404, b"<p>lost</p>"))
        self.assertEqual(r.header("Content-Type"), "text/html")
        r = await self.call("GET", "/site/nothing/", token=None)
        self.assertEqual((r.code, r.body), (404, b"<p>lost</p>"))
        await self.call("DELETE", "/site/404error.html")
        r = await self.call("GET", "/site/missing.html", token=None)
        self.assertEqual(r.code, 404)

    async def test_directory_markers(self):
        """A directory marker reads as its directory; Web-Directory-Type
        names the marker type."""
        await self.put("/site/files", b"", **{"Content-Type": "application/directory"})
        await self.web(Listings="true")
        r = await self.call("GET", "/site/files", token=None)
        self.assertEqual(r.code, 301)
        await self.put("/site/files", b"", **{"Content-Type": "text/directory"})
        r = await self.call("GET", "/site/files", token=None)
        self.assertEqual(r.code, 200)
        await self.web(Listings="true", Directory_Type="text/directory")
        r = await self.call("GET", "/site/files", token=None)
        self.assertEqual(r.code, 301)

    async def test_token_callers_need_web_mode(self):
        """A caller with a token gets the plain API unless it sends
        X-Web-Mode: true; then it gets the site (404 if none)."""
        await self.web(Index="index.html")
        r = await self.call("GET", "/site/", token=self.bob_token)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        r = await self.call("GET", "/site/", token=self.bob_token,
                            headers={"X-Web-Mode": "true"})
        self.assertEqual((r.code, r.body), (200, b"<p>home</p>"))
        await self.container("plain")
        r = await self.call("GET", "/plain/", headers={"X-Web-Mode": "true"})
        self.assertEqual(r.code, 404)

    async def test_private_containers_stay_closed(self):
        """Web settings open nothing: a container not open to all is 401
        without a token, and a token caller's rights are its own."""
        await self.container("closed", **{"X-Container-Meta-Web-Index": "index.html",
                                          "X-Container-Meta-Web-Listings": "true",
                                          "X-Container-Meta-Web-Error": "error.html"})
        await self.put("/closed/index.html", b"private")
        await self.put("/closed/401error.html", b"private error")
        for path in ("/closed", "/closed/", "/closed/index.html", "/closed/x/"):
            r = await self.call("GET", path, token=None)
            self.assertEqual(r.code, 401, path)
            self.assertNotIn(b"private", r.body)
        r = await self.call("GET", "/closed/", token=self.bob_token,
                            headers={"X-Web-Mode": "true"})
        self.assertEqual(r.code, 403)
        self.assertNotIn(b"private", r.body)

    async def test_info(self):
        """/info lists staticweb."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.json()["staticweb"], {})
