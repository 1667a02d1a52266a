"""Swift's FormPost over real HTTP: signed forms upload their files
without a token, redirect or answer in text as Swift does, and are
refused with Swift's messages; Pithos's own form upload keeps working."""

from __future__ import annotations

import hmac
import time
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from snfd.pithos.formpost import Scanner
from snfd.pithos.hashmap import BLOCK_SIZE
from snfd.testing.pithos import http
from tests.pithos.test_api import StackCase

KEY = "form-key"
BOUNDARY = "--boundary--"


def form(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]],
         after: list[tuple[str, str]] = ()) -> bytes:
    """A multipart/form-data body: ``fields``, then ``(field, filename,
    data)`` files, then ``after`` fields."""
    out = b""
    for name, value in fields:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    for field, filename, data in files:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n").encode()
        out += data + b"\r\n"
    for name, value in after:
        out += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    return out + f"--{BOUNDARY}--\r\n".encode()


class ScannerTests(unittest.TestCase):
    def test_parts_found_across_pieces(self):
        """Fed one byte at a time, the scanner finds each part's headers
        and exact byte range."""
        body = form([("a", "1")], [("f", "x.txt", b"hello\r\n--not-the-boundary")])
        scanner = Scanner(BOUNDARY.encode())
        events = []
        for i in range(len(body)):
            events += scanner.feed(body[i:i + 1])
        events += scanner.finish()
        ends = [p for e, p in events if e == "end"]
        self.assertEqual([p.name for p in ends], ["a", "f"])
        self.assertEqual(body[ends[0].start:ends[0].end], b"1")
        self.assertEqual(body[ends[1].start:ends[1].end], b"hello\r\n--not-the-boundary")
        self.assertEqual(ends[1].filename, "x.txt")


class FormPostTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self._prepare()))
        return d

    async def _prepare(self):
        await self.container("c")
        r = await self.call("POST", headers={"X-Account-Meta-Temp-URL-Key": KEY})
        self.assertEqual(r.code, 204)

    def signed(self, path: str, redirect: str = "", max_size: int = 1024, max_count: int = 3,
               expires: int | None = None, key: str = KEY, digest: str = "sha1",
               signed_path: str | None = None) -> list[tuple[str, str]]:
        expires = int(time.time()) + 600 if expires is None else expires
        body = (f"{signed_path or f'/v1/{self.alice}{path}'}\n{redirect}\n{max_size}\n"
                f"{max_count}\n{expires}")
        sig = hmac.new(key.encode(), body.encode(), digest).hexdigest()
        return [("redirect", redirect), ("max_file_size", str(max_size)),
                ("max_file_count", str(max_count)), ("expires", str(expires)),
                ("signature", sig)]

    async def post(self, path: str, body: bytes, token: Any = None):
        return await self.call("POST", path, token=token, body=body, headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})

    async def test_upload_to_prefix(self):
        """Each file becomes <prefix><filename> (no token needed): 201
        with Swift's text body."""
        body = form(self.signed("/c/up-"), [("file1", "a.txt", b"first"),
                                            ("file2", "b.txt", b"second")])
        r = await self.post("/c/up-", body)
        self.assertEqual((r.code, r.body), (201, b"201 Created"))
        self.assertEqual((await self.call("GET", "/c/up-a.txt")).body, b"first")
        r = await self.call("GET", "/c/up-b.txt")
        self.assertEqual((r.body, r.header("Content-Type")), (b"second", "text/plain"))

    async def test_upload_to_container_with_token(self):
        """A form to the container itself names objects by file name;
        the caller's token (tempest sends one) changes nothing; the path
        below the mount point (what tempest signs) signs too; SHA-256
        signs too."""
        fields = self.signed("/c", signed_path=f"/object-store/v1/{self.alice}/c",
                             digest="sha256")
        r = await self.post("/c", form(fields, [("f", "doc.txt", b"x" * 100)]),
                            token=self.bob_token)
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/doc.txt")).body, b"x" * 100)

    async def test_large_file(self):
        """A file of several blocks is stored whole."""
        data = bytes(range(256)) * (BLOCK_SIZE // 128) + b"tail"
        body = form(self.signed("/c/", max_size=len(data)), [("f", "big", data)])
        r = await self.post("/c/", body)
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/c/big")
        self.assertEqual(len(r.body), len(data))
        self.assertTrue(r.body == data)

    async def test_redirect(self):
        """With a redirect: 303 to it with status and message."""
        body = form(self.signed("/c/r-", redirect="https://example.org/done?x=1"),
                    [("f", "a", b"a")])
        r = await self.post("/c/r-", body)
        self.assertEqual(r.code, 303)
        self.assertEqual(r.header("Location"), "https://example.org/done?x=1&status=201&message=")

    async def test_refusals(self):
        """Expired form, bad signature, no key: 401 with Swift's
        messages; nothing is stored."""
        past = int(time.time()) - 10
        r = await self.post("/c/", form(self.signed("/c/", expires=past), [("f", "a", b"a")]))
        self.assertEqual((r.code, r.body), (401, b"FormPost: Form Expired"))
        r = await self.post("/c/", form(self.signed("/c/", key="wrong"), [("f", "a", b"a")]))
        self.assertEqual((r.code, r.body), (401, b"FormPost: Invalid Signature"))
        r = await self.post("/c/", form(self.signed("/c/other"), [("f", "a", b"a")]))
        self.assertEqual(r.code, 401)
        await self.call("POST", headers={"X-Remove-Account-Meta-Temp-URL-Key": "x"})
        r = await self.post("/c/", form(self.signed("/c/"), [("f", "a", b"a")]))
        self.assertEqual((r.code, r.body), (401, b"FormPost: Invalid Signature"))
        self.assertEqual((await self.call("HEAD", "/c/a")).code, 404)

    async def test_limits(self):
        """Too large a file is a 400; files beyond max_file_count are
        refused after the first ones; no file at all is a 400; a body
        that does not start with the boundary is a 400."""
        r = await self.post("/c/", form(self.signed("/c/", max_size=3),
                                        [("f", "big", b"four")]))
        self.assertEqual((r.code, r.body), (400, b"FormPost: max_file_size exceeded"))
        self.assertEqual((await self.call("HEAD", "/c/big")).code, 404)
        r = await self.post("/c/", form(self.signed("/c/", max_count=1),
                                        [("f", "one", b"1"), ("g", "two", b"2")]))
        self.assertEqual((r.code, r.body),
                         (400, b"400 Bad Request\r\nFormPost: Max File Count Exceeded"))
        self.assertEqual((await self.call("HEAD", "/c/one")).code, 200)
        self.assertEqual((await self.call("HEAD", "/c/two")).code, 404)
        r = await self.post("/c/", form(self.signed("/c/"), []))
        self.assertEqual((r.code, r.body),
                         (400, b"400 Bad Request\r\nFormPost: No Files To Process"))
        r = await self.post("/c/", b"garbage" + form(self.signed("/c/"), []))
        self.assertEqual((r.code, r.body), (400, b"FormPost: invalid starting boundary"))

    async def test_fields_after_files(self):
        """Fields after a file count only for the files after them: a
        file before max_file_count is over the count (0), one before the
        signature is refused with it."""
        r = await self.post("/c/", form([], [("f", "a", b"a")], after=self.signed("/c/")))
        self.assertEqual((r.code, r.body),
                         (400, b"400 Bad Request\r\nFormPost: Max File Count Exceeded"))
        signed = self.signed("/c/")
        fields = [f for f in signed if f[0] != "signature"]
        signature = [f for f in signed if f[0] == "signature"]
        r = await self.post("/c/", form(fields, [("f", "a", b"a")], after=signature))
        self.assertEqual((r.code, r.body), (401, b"FormPost: Invalid Signature"))
        self.assertEqual((await self.call("HEAD", "/c/a")).code, 404)

    async def test_pithos_form_upload_kept(self):
        """Pithos's own form upload (X-Object-Data, a token, no signature)
        still creates the object it is posted to."""
        body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"X-Object-Data\"; "
                f"filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\nform data\r\n"
                f"--{BOUNDARY}--\r\n").encode()
        url = self.stack.account_url(self.alice) + "/c/pithos-form?X-Auth-Token=" + \
            self.alice_token
        r = await http("POST", url, body=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/pithos-form")).body, b"form data")

    async def test_info(self):
        """/info lists formpost."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.json()["formpost"], {})
