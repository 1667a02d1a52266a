"""CORS as Swift serves it: container metadata set the allowed origins;
preflight OPTIONS needs no token; actual requests with an allowed Origin
get Access-Control-Allow-Origin and -Expose-Headers."""

from __future__ import annotations

from tests.pithos.test_api import StackCase

SITE = "https://app.example"


class CORSTests(StackCase):
    async def _setUp(self):
        await super()._setUp()
        await self.container("c", **{
            "X-Container-Meta-Access-Control-Allow-Origin": f"{SITE} https://b.example",
            "X-Container-Meta-Access-Control-Max-Age": "600",
            "X-Container-Meta-Access-Control-Expose-Headers": "X-Object-Version"})
        await self.container("any", **{"X-Container-Meta-Access-Control-Allow-Origin": "*"})
        await self.container("none")
        await self.put("/c/o", b"data", **{"X-Object-Meta-Color": "blue"})

    async def preflight(self, path: str, origin: str | None = SITE, method: str = "GET",
                        **extra: str):
        headers = {"Access-Control-Request-Method": method, **extra}
        if origin is not None:
            headers["Origin"] = origin
        return await self.call("OPTIONS", path, token=None, headers=headers)

    async def test_preflight_allowed(self):
        """A preflight from an allowed origin for a method the path answers
        is 200 with the origin, methods, requested headers and max age,
        without a token."""
        r = await self.preflight("/c/o", method="PUT",
                                 **{"Access-Control-Request-Headers": "x-auth-token, "
                                                                      "content-type"})
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), SITE)
        self.assertEqual(r.header("Access-Control-Max-Age"), "600")
        methods = r.header("Access-Control-Allow-Methods").split(", ")
        self.assertTrue({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"} <= set(methods))
        self.assertEqual(r.header("Access-Control-Allow-Headers"),
                         "x-auth-token, content-type")
        self.assertEqual(r.header("Vary"), "Origin, Access-Control-Request-Headers")
        r = await self.preflight("/c", origin="https://b.example")
        self.assertEqual((r.code, r.header("Access-Control-Allow-Origin")),
                         (200, "https://b.example"))

    async def test_preflight_any_origin(self):
        """A container allowing ``*`` answers ``*``, on missing objects too."""
        r = await self.preflight("/any/whatever", origin="https://x.example")
        self.assertEqual((r.code, r.header("Access-Control-Allow-Origin")), (200, "*"))
        self.assertIsNone(r.header("Vary"))
        self.assertIsNone(r.header("Access-Control-Max-Age"))

    async def test_preflight_refused(self):
        """An origin not allowed, a container without CORS or a missing one,
        and a method the path does not answer are 401."""
        for path, origin, method in (("/c/o", "https://evil.example", "GET"),
                                     ("/none/o", SITE, "GET"), ("/absent/o", SITE, "GET"),
                                     ("/c/o", SITE, "PATCH"), ("/c", SITE, "COPY")):
            r = await self.preflight(path, origin=origin, method=method)
            self.assertEqual(r.code, 401, (path, origin, method))
            self.assertIsNone(r.header("Access-Control-Allow-Origin"))

    async def test_options_without_origin(self):
        """OPTIONS without Origin, or on an account, is 200 with Allow."""
        r = await self.preflight("/c/o", origin=None)
        self.assertEqual(r.code, 200)
        self.assertIn("PUT", r.header("Allow"))
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        r = await self.preflight("", origin=SITE)
        self.assertEqual(r.code, 200)
        self.assertIn("OPTIONS", r.header("Allow"))
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))

    async def test_actual_request(self):
        """A request with an allowed Origin gets Allow-Origin and the
        exposed headers (Swift's, the reply's metadata, the container's)."""
        r = await self.call("GET", "/c/o", headers={"Origin": SITE})
        self.assertEqual((r.code, r.body), (200, b"data"))
        self.assertEqual(r.header("Access-Control-Allow-Origin"), SITE)
        self.assertEqual(r.header("Vary"), "Origin")
        exposed = r.header("Access-Control-Expose-Headers").split(", ")
        for name in ("etag", "x-timestamp", "x-trans-id", "content-type",
                     "x-object-meta-color", "x-object-version"):
            self.assertIn(name, exposed)
        r = await self.call("PUT", "/any/new", headers={"Origin": "https://x.example"},
                            body=b"x")
        self.assertEqual((r.code, r.header("Access-Control-Allow-Origin")), (201, "*"))

    async def test_errors_carry_cors(self):
        """Error answers carry the CORS headers too, so the page can read them."""
        r = await self.call("GET", "/c/missing", headers={"Origin": SITE})
        self.assertEqual((r.code, r.header("Access-Control-Allow-Origin")), (404, SITE))
        r = await self.call("GET", "/c/o", token=None, headers={"Origin": SITE})
        self.assertEqual((r.code, r.header("Access-Control-Allow-Origin")), (401, SITE))

    async def test_origin_not_allowed(self):
        """An origin the container does not allow, or a container without
        CORS, gets no CORS headers (Swift's strict mode); the request is
        answered as usual."""
        r = await self.call("GET", "/c/o", headers={"Origin": "https://evil.example"})
        self.assertEqual(r.code, 200)
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        await self.put("/none/o")
        r = await self.call("GET", "/none/o", headers={"Origin": SITE})
        self.assertEqual(r.code, 200)
        self.assertIsNone(r.header("Access-Control-Expose-Headers"))
        r = await self.call("GET", "", headers={"Origin": SITE})
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))

    async def test_options_needs_no_token_but_gives_nothing(self):
        """OPTIONS reveals no metadata and changes nothing."""
        r = await self.preflight("/c/o")
        self.assertEqual(r.body, b"")
        self.assertIsNone(r.header("X-Object-Meta-Color"))
