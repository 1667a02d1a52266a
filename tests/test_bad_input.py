"""The bad-input matrix of issue 12: each input a finding named, sent as
raw bytes to a running node (``snfd.testing.compute.compute_stack``), gets
the right status, an error in the style of the API it reached (Swift's
plain text, Keystone's and Nova's JSON), and loses nothing: the object
the requests aimed at reads back unchanged.  ``tests/test_fuzz.py`` sends
random input to the same surfaces; this table pins the known cases."""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.trial import unittest

from snfd.testing import fuzz
from snfd.testing.compute import compute_stack

DATA = b"0123456789" * 50


@attrs.frozen
class Raw:
    """A request written exactly as given (``fuzz.send`` takes it): for
    heads that ``fuzz.Req`` would complete (a declared length with no
    body, a chunked body)."""

    method: str
    head: bytes
    body: bytes = b""

    def wire(self, host: bytes) -> bytes:
        return self.head.replace(b"{host}", host) + b"\r\n\r\n" + self.body


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def chunked(data: bytes, size: int = 50_000) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


class BadInputMatrixTests(unittest.TestCase):
    timeout = 300

    async def setUp(self) -> None:  # type: ignore[override]
        from twisted.internet import reactor

        self.reactor = reactor
        stack = self.stack = await compute_stack(self)
        self.port = int(stack.url.rsplit(":", 1)[1])
        self.alice, self.token = await stack.user("alice")
        self.store = f"/object-store/v1/{self.alice}"
        await self.ok("PUT", f"{self.store}/c")
        await self.ok("PUT", f"{self.store}/q", headers=[
            (b"X-Container-Policy-Quota", b"200000")])
        await self.ok("PUT", f"{self.store}/c/o", DATA)

    def auth(self, headers: list[tuple[bytes, bytes]] | None = None,
             ) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"X-Auth-Token", self.token.encode()), *(headers or []))

    async def send(self, req: Any) -> fuzz.Answer:
        return await fuzz.send(self.reactor, self.port, req)

    async def ok(self, method: str, path: str, body: bytes = b"",
                 headers: list[tuple[bytes, bytes]] | None = None) -> fuzz.Answer:
        answer = await self.send(fuzz.Req(method, path, self.auth(headers), body))
        self.assertLess(answer.status, 300, (method, path, answer))
        return answer

    # -- the styles -----------------------------------------------------------------

    def assertSwift(self, answer: fuzz.Answer, status: int) -> None:
        self.assertEqual(answer.status, status, answer)
        self.assertTrue((answer.header(b"content-type") or b"").startswith(b"text/plain"),
                        answer)
        self.assertNotIn(b"Traceback", answer.body)

    def assertJSONFault(self, answer: fuzz.Answer, status: int, key: str | None) -> None:
        """Keystone's ``{"error": {...}}`` (``key`` ``"error"``) or Nova's
        ``{"<fault>": {...}}`` (``key`` ``None``: any one name)."""
        self.assertEqual(answer.status, status, answer)
        self.assertTrue((answer.header(b"content-type") or b"").startswith(
            b"application/json"), answer)
        doc = json.loads(answer.body)
        self.assertEqual(len(doc), 1, doc)
        name, fault = next(iter(doc.items()))
        if key is not None:
            self.assertEqual(name, key)
        self.assertEqual(fault["code"], status)
        self.assertTrue(fault["message"].strip(), doc)

    async def assertObjectIntact(self) -> None:
        answer = await self.ok("GET", f"{self.store}/c/o")
        self.assertEqual(answer.body, DATA)

    # -- the matrix -----------------------------------------------------------------

    async def test_object_store(self):
        """Swift's plain-text errors; the object is intact after each."""
        s = self.store
        rows: list[tuple[str, Any, int]] = [
            ("M2 a metadata key with CR LF",
             fuzz.Req("POST", f"{s}/c/o", self.auth([
                 (b"X-Object-Meta-K%0D%0ASet-Cookie%3A%20x", b"v")])), 400),
            ("L5 a name XML cannot hold",
             fuzz.Req("PUT", f"{s}/c/bad%01name", self.auth(), b"x"), 400),
            ("site: a NUL in the path",
             fuzz.Req("GET", f"{s}/c/o%00", self.auth()), 400),
            ("site: a Content-Type with a line break",
             fuzz.Req("PUT", f"{s}/c/o", self.auth([(b"Content-Type", b"text/\x0bplain")]),
                      b"new"), 400),
            ("L2 more than 50 ranges",
             fuzz.Req("GET", f"{s}/c/o", self.auth([(b"Range", b"bytes=" + b",".join(
                 f"{i}-{i}".encode() for i in range(51)))])), 416),
            ("L2 three overlapping ranges",
             fuzz.Req("GET", f"{s}/c/o", self.auth([(b"Range", b"bytes=0-9,0-9,0-9")])),
             416),
            ("L7 a hashmap over its cap",
             fuzz.Req("PUT", f"{s}/c/o?hashmap&format=json", self.auth(),
                      json.dumps({"bytes": 1, "hashes": ["0" * 64] * 20_000}).encode()),
             413),
            ("M1 a declared body over the limit, refused before it is sent",
             Raw("PUT", b"PUT " + f"{s}/c/o?hashmap".encode() + b" HTTP/1.1\r\nHost: {host}"
                 b"\r\nX-Auth-Token: " + self.token.encode()
                 + b"\r\nContent-Length: 1073741824\r\nConnection: close"), 413),
            ("M3 a chunked upload over the container quota",
             Raw("PUT", b"PUT " + f"{s}/q/big".encode() + b" HTTP/1.1\r\nHost: {host}"
                 b"\r\nX-Auth-Token: " + self.token.encode()
                 + b"\r\nTransfer-Encoding: chunked\r\nConnection: close",
                 chunked(b"x" * 300_000)), 413),
            ("M3 a partial update over the container quota",
             fuzz.Req("POST", f"{s}/q/o", self.auth([
                 (b"Content-Type", b"application/octet-stream"),
                 (b"Content-Range", b"bytes */*")]), b"y" * 250_000), 413),
        ]
        for finding, req, status in rows:
            with self.subTest(finding):
                self.assertSwift(await self.send(req), status)
                await self.assertObjectIntact()

    async def test_identity(self):
        """Keystone's JSON errors."""
        rows: list[tuple[str, Any, int]] = [
            ("L6 deeply nested JSON",
             fuzz.Req("POST", "/identity/v3/auth/tokens",
                      ((b"Content-Type", b"application/json"),), nested(5000)), 400),
            ("M1 a declared body over the limit",
             Raw("POST", b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: {host}"
                 b"\r\nContent-Type: application/json\r\nContent-Length: 33554432"
                 b"\r\nConnection: close"), 413),
            ("bad JSON",
             fuzz.Req("POST", "/identity/v3/auth/tokens",
                      ((b"Content-Type", b"application/json"),), b"{\"auth\": "), 400),
        ]
        for finding, req, status in rows:
            with self.subTest(finding):
                self.assertJSONFault(await self.send(req), status, "error")

    async def test_compute(self):
        """Nova's JSON errors."""
        rows: list[tuple[str, Any, int]] = [
            ("H3 a name filter with a backreference",
             fuzz.Req("GET", "/compute/v2.1/servers?name=(a)%5C1", self.auth()), 400),
            ("H3 a name filter longer than the bound",
             fuzz.Req("GET", "/compute/v2.1/servers?name=" + "a" * 300, self.auth()), 400),
            ("L6 deeply nested JSON",
             fuzz.Req("POST", "/compute/v2.1/servers",
                      self.auth([(b"Content-Type", b"application/json")]), nested(5000)), 400),
            ("M1 a declared body over the limit",
             Raw("POST", b"POST /compute/v2.1/servers HTTP/1.1\r\nHost: {host}"
                 b"\r\nX-Auth-Token: " + self.token.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 33554432"
                 b"\r\nConnection: close"), 413),
        ]
        for finding, req, status in rows:
            with self.subTest(finding):
                self.assertJSONFault(await self.send(req), status, None)
