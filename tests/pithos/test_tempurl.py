"""Swift's TempURL over real HTTP: account and container keys, the three
digests in hex and base64, prefixes, ISO 8601 expiry times, the methods
a signature allows, Swift's 401, and what a temp URL may not reach."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

from twisted.internet import defer
from twisted.trial import unittest

from snfd.pithos.tempurl import INVALID, parse_expires, parse_signature
from snfd.pithos.uploads import STREAM_FROM
from tests.pithos.test_api import StackCase

KEY = "secret-key"


def sign(key: str, method: str, expires: int | str, path: str, digest: str = "sha256",
         encoding: str = "hex") -> str:
    mac = hmac.new(key.encode(), f"{method}\n{expires}\n{path}".encode(), digest)
    if encoding == "hex":
        return mac.hexdigest()
    return f"{digest}:" + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


class RuleTests(unittest.TestCase):
    def test_signature_forms(self):
        """Hex names its digest by its length; ``<digest>:<base64>`` takes
        either alphabet with or without padding; anything else is no
        signature."""
        raw = hashlib.sha512(b"x").digest()
        self.assertEqual(parse_signature("a" * 40), ("sha1", "a" * 40))
        self.assertEqual(parse_signature("b" * 64), ("sha256", "b" * 64))
        self.assertEqual(parse_signature("c" * 128), ("sha512", "c" * 128))
        for encoded in (base64.urlsafe_b64encode(raw).decode(),
                        base64.b64encode(raw).decode().rstrip("=")):
            self.assertEqual(parse_signature("sha512:" + encoded), ("sha512", raw.hex()))
        for bad in ("a" * 41, "z" * 40, "sha1:***", ""):
            self.assertIsNone(parse_signature(bad))

    def test_expires(self):
        """Epoch seconds or ISO 8601 UTC; a past or unreadable time is 0."""
        self.assertEqual(parse_expires("2000000000", 1e9), 2000000000)
        self.assertEqual(parse_expires("2033-05-18T03:33:20Z", 1e9), 2000000000)
        self.assertEqual(parse_expires("999", 1e9), 0)
        self.assertEqual(parse_expires("tomorrow", 1e9), 0)


class TempURLTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self._prepare()))
        return d

    async def _prepare(self):
        await self.container("c")
        await self.put("/c/obj", b"the data", **{"Content-Type": "text/plain",
                                                  "X-Object-Meta-Secret": "s",
                                                  "X-Object-Meta-Public-Tag": "t"})
        r = await self.call("POST", headers={"X-Account-Meta-Temp-URL-Key": KEY})
        self.assertEqual(r.code, 204)

    def path(self, name: str = "obj", container: str = "c") -> str:
        return f"/v1/{self.alice}/{container}/{name}"

    async def temp(self, method: str, name: str = "obj", query: str = "", token: Any = None,
                   sig_method: str | None = None, key: str = KEY, expires: int | None = None,
                   signed_path: str | None = None, digest: str = "sha256",
                   encoding: str = "hex", **kwargs: Any):
        expires = int(time.time()) + 600 if expires is None else expires
        sig = sign(key, sig_method or method, expires, signed_path or self.path(name),
                   digest, encoding)
        url = f"/c/{name}?temp_url_sig={quote(sig)}&temp_url_expires={expires}{query}"
        return await self.call(method, url, token=token, **kwargs)

    async def test_get_and_head(self):
        """A GET signature reads the object without a token, as an
        attachment named after it, with Expires; HEAD works with it too;
        the object's private metadata stay out."""
        r = await self.temp("GET")
        self.assertEqual((r.code, r.body), (200, b"the data"))
        self.assertEqual(r.header("Content-Disposition"),
                         "attachment; filename=\"obj\"; filename*=UTF-8''obj")
        self.assertTrue(r.header("Expires").endswith("GMT"))
        self.assertIsNone(r.header("X-Object-Meta-Secret"))
        self.assertEqual(r.header("X-Object-Meta-Public-Tag"), "t")
        r = await self.temp("HEAD", sig_method="GET")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("ETag"), hashlib.md5(b"the data", usedforsecurity=False).hexdigest())

    async def test_inline_and_filename(self):
        """``inline`` and ``filename`` choose the Content-Disposition."""
        r = await self.temp("GET", query="&inline")
        self.assertEqual(r.header("Content-Disposition"), "inline")
        r = await self.temp("GET", query="&filename=my%20file.txt")
        self.assertEqual(r.header("Content-Disposition"),
                         "attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt")
        r = await self.temp("GET", query="&inline&filename=a.txt")
        self.assertTrue(r.header("Content-Disposition").startswith('inline; filename="a.txt"'))

    async def test_digests_and_encodings(self):
        """SHA-1, SHA-256 and SHA-512, hex or base64, all sign."""
        for digest in ("sha1", "sha256", "sha512"):
            for encoding in ("hex", "base64"):
                r = await self.temp("GET", digest=digest, encoding=encoding)
                self.assertEqual(r.code, 200, (digest, encoding))

    async def test_mount_path_signed(self):
        """A signature over the path below the object store's mount point
        (what tempest signs) is as good as Swift's /v1 path, which also
        serves temp URLs."""
        r = await self.temp("GET", signed_path=f"/object-store{self.path()}")
        self.assertEqual((r.code, r.body), (200, b"the data"))
        expires = int(time.time()) + 600
        sig = sign(KEY, "GET", expires, self.path())
        r = await self.call("GET", raw=f"{self.path()}?temp_url_sig={sig}"
                            f"&temp_url_expires={expires}".encode(), token=None)
        self.assertEqual((r.code, r.body), (200, b"the data"))  # Swift's own layout

    async def test_second_key_and_container_keys(self):
        """Temp-URL-Key-2 and the container's two keys sign too."""
        await self.call("POST", headers={"X-Account-Meta-Temp-URL-Key-2": "k2"})
        await self.call("POST", "/c", headers={"X-Container-Meta-Temp-URL-Key": "ck",
                                               "X-Container-Meta-Temp-URL-Key-2": "ck2"})
        for key in ("k2", "ck", "ck2"):
            r = await self.temp("GET", key=key)
            self.assertEqual(r.code, 200, key)

    async def test_keys_survive_replacing_posts(self):
        """Setting Temp-URL-Key-2 (or other metadata) with a replacing
        POST keeps the keys it does not name, on accounts and containers;
        naming a key (to remove it) still removes it."""
        await self.call("POST", headers={"X-Account-Meta-Temp-URL-Key-2": "k2"})
        await self.call("POST", headers={"X-Account-Meta-Other": "x"})
        for key in (KEY, "k2"):
            self.assertEqual((await self.temp("GET", key=key)).code, 200, key)
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Meta-Other"), "x")
        await self.call("POST", "/c", headers={"X-Container-Meta-Temp-URL-Key": "ck"})
        await self.call("POST", "/c", headers={"X-Container-Meta-Web-Index": "i"})
        self.assertEqual((await self.temp("GET", key="ck")).code, 200)
        await self.call("POST", headers={"X-Remove-Account-Meta-Temp-URL-Key-2": "x"})
        self.assertEqual((await self.temp("GET", key="k2")).code, 401)
        self.assertEqual((await self.temp("GET", key=KEY)).code, 200)

    async def test_iso_expiry(self):
        """temp_url_expires may be ISO 8601; the signature is over the
        epoch seconds."""
        expires = int(time.time()) + 600
        sig = sign(KEY, "GET", expires, self.path())
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        r = await self.call("GET", f"/c/obj?temp_url_sig={sig}&temp_url_expires={iso}",
                            token=None)
        self.assertEqual(r.code, 200)

    async def test_refusals(self):
        """Expired, wrong key, wrong method, tampered path, no key, a
        missing parameter: Swift's 401 with its body."""
        past = int(time.time()) - 10
        for r in (await self.temp("GET", expires=past),
                  await self.temp("GET", key="wrong"),
                  await self.temp("DELETE", sig_method="GET"),
                  await self.temp("GET", signed_path=self.path("other")),
                  await self.call("GET", "/c/obj?temp_url_sig=" + "a" * 64, token=None),
                  await self.call("GET", f"/c/obj?temp_url_expires={past + 99999}",
                                  token=None)):
            self.assertEqual(r.code, 401)
            self.assertEqual(r.body, INVALID.encode())
            self.assertTrue(r.header("WWW-Authenticate").startswith("Swift realm="))
        r = await self.temp("HEAD", sig_method="DELETE")
        self.assertEqual(r.code, 401)
        await self.call("POST", headers={"X-Remove-Account-Meta-Temp-URL-Key": "x"})
        self.assertEqual((await self.temp("GET")).code, 401)

    async def test_only_objects(self):
        """A signature over a container path opens nothing."""
        expires = int(time.time()) + 600
        sig = sign(KEY, "GET", expires, f"/v1/{self.alice}/c")
        r = await self.call("GET", f"/c?temp_url_sig={sig}&temp_url_expires={expires}",
                            token=None)
        self.assertEqual(r.code, 401)

    async def test_put_post_delete(self):
        """PUT writes the object (HEAD allowed by the PUT signature), POST
        changes its metadata, DELETE removes it."""
        r = await self.temp("PUT", name="new", body=b"uploaded",
                            headers={"Content-Type": "text/plain"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.temp("HEAD", name="new", sig_method="PUT")).code, 200)
        r = await self.call("GET", "/c/new")
        self.assertEqual(r.body, b"uploaded")
        r = await self.temp("POST", name="new", headers={"X-Object-Meta-Color": "blue"})
        self.assertEqual(r.code, 202, r.body)
        r = await self.call("HEAD", "/c/new")
        self.assertEqual(r.header("X-Object-Meta-Color"), "blue")
        r = await self.temp("DELETE", name="new")
        self.assertEqual(r.code, 204)
        self.assertEqual((await self.call("HEAD", "/c/new")).code, 404)

    async def test_large_put(self):
        """A PUT too large to buffer by default is still taken (it has no
        token for the streaming gate)."""
        data = b"x" * (STREAM_FROM * 3)
        r = await self.temp("PUT", name="big", body=data)
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/big")).body, data)

    async def test_prefix(self):
        """A prefix signature opens the objects under the prefix, and no
        other."""
        await self.put("/c/pre/one", b"1")
        await self.put("/c/other", b"2")
        expires = int(time.time()) + 600
        sig = sign(KEY, "GET", expires, f"prefix:/v1/{self.alice}/c/pre")
        query = f"temp_url_sig={sig}&temp_url_expires={expires}&temp_url_prefix=pre"
        r = await self.call("GET", f"/c/pre/one?{query}", token=None)
        self.assertEqual((r.code, r.body), (200, b"1"))
        r = await self.call("GET", f"/c/other?{query}", token=None)
        self.assertEqual(r.code, 401)

    async def test_never_wider(self):
        """A temp URL reaches its one object: copies, manifests, sharing
        headers are refused on writes, and the other query parameters are
        dropped (a DELETE with ?delimiter deletes only the object)."""
        for header in ("X-Copy-From", "X-Object-Manifest", "X-Symlink-Target",
                       "X-Object-Sharing"):
            r = await self.temp("PUT", name="x", body=b"", headers={header: "c/obj"})
            self.assertEqual(r.code, 400, header)
            self.assertIn(b"is not allowed in this tempurl", r.body)
        await self.put("/c/dir/a", b"a")
        await self.put("/c/dir", b"", **{"Content-Type": "application/directory"})
        r = await self.temp("DELETE", name="dir", query="&delimiter=/")
        self.assertEqual(r.code, 204)
        self.assertEqual((await self.call("HEAD", "/c/dir/a")).code, 200)

    async def test_bob_token_ignored(self):
        """A temp URL acts as the account owner whatever token comes with
        it."""
        r = await self.temp("GET", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"the data"))

    async def test_info(self):
        """/info lists tempurl with its methods and digests."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        section = r.json()["tempurl"]
        self.assertEqual(section["allowed_digests"], ["sha1", "sha256", "sha512"])
        self.assertIn("PUT", section["methods"])
        self.assertIn("x-object-meta-*", section["outgoing_remove_headers"])
