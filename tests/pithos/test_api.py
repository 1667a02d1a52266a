"""The object store API over real HTTP, a real PostgreSQL, a real block
store and real identity tokens: the top level, accounts, containers and
listings (reference 2.1-2.5), and the request rules every level shares
(authentication, bad paths, methods, never a 500)."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

from twisted.internet import defer
from twisted.trial import unittest

from snfd.pithos.hashmap import BLOCK_SIZE, block_hash
from snfd.pithos.uploads import STREAM_FROM
from snfd.testing.pithos import HTTPReply, http, object_store_stack, raw_http

_DEFAULT: Any = object()


def parse_xml(body: bytes) -> ElementTree.Element:
    """Our own server's XML (trusted)."""
    return ElementTree.fromstring(body)  # noqa: S314


class StackCase(unittest.TestCase):
    """A served object store with users alice and bob."""

    timeout = 120

    def setUp(self):
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self):
        self.stack = await object_store_stack(self)
        self.alice, self.alice_token = await self.stack.user("alice@example.org")
        self.bob, self.bob_token = await self.stack.user("bob@example.org")

    async def call(self, method: str, path: str = "", token: Any = _DEFAULT,
                   account: str | None = None, headers: dict[str, Any] | None = None,
                   body: bytes | None = None, chunks: list[bytes] | None = None,
                   raw: bytes | None = None) -> HTTPReply:
        """A request to ``<account url><path>`` (alice's account and token
        by default); ``raw`` is a full path sent as is.  Fails on 5xx."""
        if token is _DEFAULT:
            token = self.alice_token
        if raw is not None:
            url: str | bytes = self.stack.url.encode() + raw
        else:
            url = self.stack.account_url(account or self.alice) + path
        reply = await http(method, url, token=token, headers=headers, body=body,
                           chunks=chunks)
        if reply.code >= 500:
            self.fail(f"{method} {path or raw!r} answered {reply.code}: {reply.body[:500]!r}")
        return reply

    async def container(self, name: str = "c", **headers: str) -> None:
        r = await self.call("PUT", f"/{name}", headers=headers)
        self.assertIn(r.code, (201, 202), r.body)

    async def put(self, path: str, data: bytes = b"data", token: Any = _DEFAULT,
                  account: str | None = None, **headers: str) -> HTTPReply:
        headers.setdefault("Content-Type", "application/octet-stream")
        r = await self.call("PUT", path, token=token, account=account,
                            headers=headers, body=data)
        self.assertEqual(r.code, 201, r.body)
        return r

    async def listing(self, path: str, query: str = "", token: Any = _DEFAULT,
                      account: str | None = None) -> Any:
        r = await self.call("GET", f"{path}?format=json{query}", token=token, account=account)
        self.assertEqual(r.code, 200, r.body)
        return r.json()

    def assertFault(self, reply: HTTPReply, code: int) -> None:
        self.assertEqual(reply.code, code, reply.body)
        if reply.body:  # Swift's style: the message as plain text
            self.assertTrue(reply.header("Content-Type").startswith("text/plain"))
            self.assertNotIn(b"Traceback", reply.body)


class SwiftProtocolTests(StackCase):
    async def test_transaction_ids(self):
        """Every answer, faults too, carries one id as X-Trans-Id (Swift's
        tx<21 hex>-<10 hex> form), X-Openstack-Request-Id and X-Request-Id."""
        for r in (await self.call("HEAD"), await self.call("GET", "/missing")):
            tx = r.header("X-Trans-Id")
            self.assertRegex(tx, r"^tx[0-9a-f]{21}-[0-9a-f]{10}$")
            self.assertEqual(r.header("X-Openstack-Request-Id"), tx)
            self.assertEqual(r.header("X-Request-Id"), tx)

    async def test_content_type_everywhere(self):
        """204s and HEADs say text/plain like Swift; faults are Swift's
        plain-text messages."""
        await self.container("c")
        for r in (await self.call("HEAD"), await self.call("POST", "/c"),
                  await self.call("HEAD", "/c")):
            self.assertEqual(r.code, 204)
            self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        r = await self.call("GET", "/nothere")
        self.assertEqual(r.code, 404)
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(r.body, b"Container does not exist.")

    async def test_healthcheck_and_crossdomain(self):
        """/healthcheck answers OK and /crossdomain.xml the open policy,
        without a token, as Swift's middleware do; /info lists both."""
        r = await self.call("GET", raw=b"/object-store/healthcheck", token=None)
        self.assertEqual((r.code, r.body), (200, b"OK"))
        r = await self.call("GET", raw=b"/object-store/crossdomain.xml", token=None)
        self.assertEqual(r.code, 200)
        self.assertIn(b'<allow-access-from domain="*"', r.body)
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertIn("crossdomain", r.json())
        self.assertIn("healthcheck", r.json())


class TopLevelTests(StackCase):
    async def test_swift_v1_auth_compatibility(self):
        """GET /v1 with X-Auth-User and X-Auth-Key and no token answers 204
        with the key as token and the user's storage URL."""
        for path in (b"/object-store/v1", b"/object-store/v1/"):
            r = await self.call("GET", raw=path, token=None, headers={
                "X-Auth-User": self.alice, "X-Auth-Key": self.alice_token})
            self.assertEqual(r.code, 204)
            self.assertEqual(r.header("X-Auth-Token"), self.alice_token)
            self.assertEqual(r.header("X-Storage-Url"), self.stack.account_url(self.alice))

    async def test_no_token(self):
        """Without a token (and without v1 credentials) every level is 401;
        a bad token is 401 too."""
        for path in (b"/object-store/v1/", b"/object-store/v1/" + self.alice.encode(),
                     b"/object-store/v1/" + self.alice.encode() + b"/c/o"):
            self.assertFault(await self.call("GET", raw=path, token=None), 401)
            self.assertFault(await self.call("GET", raw=path, token="bogus"), 401)

    async def test_sharers(self):
        """The top level lists the accounts sharing something with the
        caller: 204 (text) or [] (json) when none; names (text), name and
        last_modified (json), <accounts> (xml)."""
        r = await self.call("GET", raw=b"/object-store/v1/")
        self.assertEqual(r.code, 204)
        r = await self.call("GET", raw=b"/object-store/v1?format=json")
        self.assertEqual((r.code, r.json()), (200, []))
        r = await self.call("PUT", "/c", token=self.bob_token, account=self.bob)
        await self.put("/c/o", token=self.bob_token, account=self.bob,
                       **{"X-Object-Sharing": f"read={self.alice}"})
        r = await self.call("GET", raw=b"/object-store/v1")
        self.assertEqual((r.code, r.body), (200, f"{self.bob}\n".encode()))
        r = await self.call("GET", raw=b"/object-store/v1/?format=json")
        self.assertEqual([e["name"] for e in r.json()], [self.bob])
        self.assertIn("last_modified", r.json()[0])
        r = await self.call("GET", raw=b"/object-store/v1/", headers={"Accept": "text/xml"})
        root = parse_xml(r.body)
        self.assertEqual(root.tag, "accounts")
        self.assertEqual(root.find("account/name").text, self.bob)
        r = await self.call("GET", raw=b"/object-store/v1/?format=json", token=self.bob_token)
        self.assertEqual(r.json(), [])

    async def test_info(self):
        """/object-store/info answers the Swift capabilities."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.code, 200)
        self.assertIn("swift", r.json())

    async def test_not_v1(self):
        """Paths outside /v1 are 404s."""
        self.assertFault(await self.call("GET", raw=b"/object-store/v2/x"), 404)
        self.assertFault(await self.call("GET", raw=b"/object-store/"), 404)


class AccountTests(StackCase):
    async def test_head_fresh_account(self):
        """HEAD of an account never used: 204, zero counts, the quota of
        the base project and its sum, Last-Modified, no body."""
        r = await self.call("HEAD")
        self.assertEqual(r.code, 204)
        self.assertEqual(r.header("X-Account-Container-Count"), "0")
        self.assertEqual(r.header("X-Account-Bytes-Used"), "0")
        self.assertIsNotNone(r.header("Last-Modified"))
        self.assertEqual(r.header(f"X-Account-Policy-Quota-{self.alice}"),
                         r.header("X-Account-Policy-Quota"))
        self.assertEqual(r.body, b"")

    async def test_counts(self):
        """The account counts its containers and bytes."""
        await self.container("a")
        await self.container("b")
        await self.put("/a/x", b"12345")
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Container-Count"), "2")
        self.assertEqual(r.header("X-Account-Bytes-Used"), "5")
        self.assertEqual(r.header("X-Account-Object-Count"), "1")

    async def test_meta_replace_update(self):
        """POST without ?update replaces the user meta, with ?update
        merges and an empty value deletes; keys are normalised."""
        r = await self.call("POST", headers={"X-Account-Meta-first_key": "1",
                                             "X-Account-Meta-Other": "2"})
        self.assertEqual(r.code, 204)
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Meta-First-Key"), "1")
        self.assertEqual(r.header("X-Account-Meta-Other"), "2")
        await self.call("POST", "?update", headers={"X-Account-Meta-Other": "",
                                                "X-Account-Meta-New": "3"})
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Meta-First-Key"), "1")
        self.assertIsNone(r.header("X-Account-Meta-Other"))
        self.assertEqual(r.header("X-Account-Meta-New"), "3")
        await self.call("POST", headers={"X-Account-Meta-Only": "x"})
        r = await self.call("HEAD")
        self.assertIsNone(r.header("X-Account-Meta-First-Key"))
        self.assertEqual(r.header("X-Account-Meta-Only"), "x")

    async def test_unicode_meta(self):
        """Non-ASCII metadata (raw UTF-8 or URL-encoded) is answered
        URL-encoded."""
        await self.call("POST", headers={"X-Account-Meta-A": "café".encode(),
                                         "X-Account-Meta-B": "%CE%B1"})
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Meta-A"), "caf%C3%A9")
        self.assertEqual(r.header("X-Account-Meta-B"), "%CE%B1")

    async def test_meta_limits(self):
        """Over-long keys, values and too many keys are 400s and change
        nothing."""
        for headers in ({"X-Account-Meta-" + "k" * 129: "v"},
                        {"X-Account-Meta-K": "v" * 257},
                        {f"X-Account-Meta-K{i}": "v" for i in range(33)}):
            self.assertFault(await self.call("POST", headers=headers), 400)
        r = await self.call("HEAD")
        self.assertFalse([k for k, _ in r.headers.getAllRawHeaders()
                          if k.lower().startswith(b"x-account-meta-")])

    async def test_groups(self):
        """Groups are set, shown, merged with ?update and deleted with an
        empty value."""
        r = await self.call("POST", headers={"X-Account-Group-Dev": f"{self.bob}, {self.alice}"})
        self.assertEqual(r.code, 204)
        r = await self.call("HEAD")
        self.assertEqual(sorted(r.header("X-Account-Group-Dev").split(",")),
                         sorted([self.bob, self.alice]))
        await self.call("POST", "?update", headers={"X-Account-Group-Dev": ""})
        r = await self.call("HEAD")
        self.assertIsNone(r.header("X-Account-Group-Dev"))

    async def test_listing_formats(self):
        """Containers are listed as text, JSON (with counts and policy) or
        XML, by format= or by Accept."""
        await self.container("b")
        await self.container("a")
        await self.put("/a/o", b"xyz")
        r = await self.call("GET")
        self.assertEqual((r.code, r.body), (200, b"a\nb\n"))
        self.assertEqual(r.header("X-Account-Container-Count"), "2")
        entries = await self.listing("")
        self.assertEqual([e["name"] for e in entries], ["a", "b"])
        self.assertEqual((entries[0]["count"], entries[0]["bytes"]), (1, 3))
        self.assertEqual(entries[0]["x_container_policy"]["versioning"], "auto")
        self.assertIn("T", entries[0]["last_modified"])
        r = await self.call("GET", headers={"Accept": "application/json"})
        self.assertEqual([e["name"] for e in r.json()], ["a", "b"])
        r = await self.call("GET", "?format=xml")
        self.assertTrue(r.header("Content-Type").startswith("application/xml"))
        root = parse_xml(r.body)
        self.assertEqual(root.tag, "account")
        self.assertEqual(root.get("name"), self.alice)
        self.assertEqual([n.text for n in root.findall("container/name")], ["a", "b"])

    async def test_listing_paging(self):
        """limit, marker, end_marker, prefix and reverse page through the
        containers; limit=0 gives none."""
        for name in ("a1", "a2", "b1", "b2", "c1"):
            await self.container(name)
        names = lambda es: [e["name"] for e in es]  # noqa: E731
        self.assertEqual(names(await self.listing("", "&limit=2")), ["a1", "a2"])
        self.assertEqual(names(await self.listing("", "&marker=a2&limit=2")), ["b1", "b2"])
        self.assertEqual(names(await self.listing("", "&end_marker=b1")), ["a1", "a2"])
        self.assertEqual(names(await self.listing("", "&prefix=b")), ["b1", "b2"])
        self.assertEqual(names(await self.listing("", "&reverse=true&limit=2")),
                         ["c1", "b2"])
        r = await self.call("GET", "?limit=0")
        self.assertEqual(r.code, 204)
        self.assertFault(await self.call("GET", "?limit=x"), 400)
        self.assertFault(await self.call("GET", "?until=soon"), 400)

    async def test_empty_listing(self):
        """An empty text listing is 204; JSON and XML are 200."""
        self.assertEqual((await self.call("GET")).code, 204)
        self.assertEqual(await self.listing(""), [])
        r = await self.call("GET", "?format=xml")
        self.assertEqual(r.code, 200)

    async def test_other_account(self):
        """Another user's account: 403 or 404 and never its details; once
        something is shared, HEAD shows only Last-Modified."""
        r = await self.call("HEAD", token=self.bob_token)
        self.assertIn(r.code, (403, 404))
        self.assertIsNone(r.header("X-Account-Bytes-Used"))
        r = await self.call("GET", "?format=json", token=self.bob_token)
        self.assertIn(r.code, (403, 404))
        r = await self.call("POST", token=self.bob_token, headers={"X-Account-Meta-X": "1"})
        self.assertIn(r.code, (403, 404))
        await self.container("c")
        await self.put("/c/o", **{"X-Object-Sharing": f"read={self.bob}"})
        r = await self.call("HEAD", token=self.bob_token)
        self.assertEqual(r.code, 204)
        self.assertIsNotNone(r.header("Last-Modified"))
        self.assertIsNone(r.header("X-Account-Bytes-Used"))
        self.assertIsNone(r.header("X-Account-Policy-Quota"))
        entries = await self.listing("", token=self.bob_token)
        self.assertEqual([e["name"] for e in entries], ["c"])

    async def test_conditional(self):
        """If-Modified-Since at the last change is 304, If-Unmodified-Since
        before it 412."""
        await self.container("c")
        r = await self.call("HEAD")
        last = r.header("Last-Modified")
        r = await self.call("GET", headers={"If-Modified-Since": last})
        self.assertEqual(r.code, 304)
        self.assertEqual(r.body, b"")
        r = await self.call("GET", headers={"If-Unmodified-Since":
                                            "Tue, 15 Nov 1994 08:12:31 GMT"})
        self.assertFault(r, 412)

    async def test_methods(self):
        """PUT and DELETE on an account are 405 with Allow."""
        r = await self.call("PUT")
        self.assertFault(r, 405)
        self.assertIn("GET", r.header("Allow"))
        self.assertFault(await self.call("DELETE"), 405)


class ContainerTests(StackCase):
    async def test_create_and_head(self):
        """PUT creates (201), again answers 202; HEAD shows counts, the
        block size and hash, the policy and metadata."""
        r = await self.call("PUT", "/c", headers={"X-Container-Meta-Colour": "blue"})
        self.assertEqual(r.code, 201)
        r = await self.call("PUT", "/c")
        self.assertEqual(r.code, 202)
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.code, 204)
        self.assertEqual(r.header("X-Container-Object-Count"), "0")
        self.assertEqual(r.header("X-Container-Bytes-Used"), "0")
        self.assertEqual(r.header("X-Container-Block-Size"), str(BLOCK_SIZE))
        self.assertEqual(r.header("X-Container-Block-Hash"), "sha256")
        self.assertEqual(r.header("X-Container-Policy-Versioning"), "auto")
        self.assertEqual(r.header("X-Container-Policy-Quota"), "0")
        self.assertEqual(r.header("X-Container-Meta-Colour"), "blue")
        self.assertIsNotNone(r.header("Last-Modified"))
        self.assertEqual(r.body, b"")

    async def test_missing(self):
        """A missing container is 404 for HEAD, GET, POST and DELETE."""
        for method in ("HEAD", "GET", "POST", "DELETE"):
            self.assertEqual((await self.call(method, "/nope")).code, 404, method)

    async def test_policy(self):
        """Policy headers set quota and versioning; unknown keys and bad
        values are 400s."""
        await self.container("c", **{"X-Container-Policy-Versioning": "none",
                                     "X-Container-Policy-Quota": "100"})
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Policy-Versioning"), "none")
        self.assertEqual(r.header("X-Container-Policy-Quota"), "100")
        self.assertFault(await self.call("PUT", "/d", headers={
            "X-Container-Policy-Colour": "red"}), 400)
        self.assertFault(await self.call("POST", "/c", headers={
            "X-Container-Policy-Versioning": "sometimes"}), 400)
        self.assertEqual((await self.call("HEAD", "/d")).code, 404)

    async def test_container_quota(self):
        """An upload over the container's quota is 413 and stores nothing."""
        await self.container("c", **{"X-Container-Policy-Quota": "10"})
        await self.put("/c/small", b"12345")
        r = await self.call("PUT", "/c/big", body=b"x" * 20,
                            headers={"Content-Type": "text/plain"})
        self.assertFault(r, 413)
        self.assertEqual((await self.call("HEAD", "/c/big")).code, 404)
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Bytes-Used"), "5")

    async def test_meta_post(self):
        """POST with ?update merges metadata; without it the given
        metadata replace the old; a bare POST leaves them alone."""
        await self.container("c", **{"X-Container-Meta-A": "1"})
        r = await self.call("POST", "/c?update", headers={"X-Container-Meta-B": "2"})
        self.assertEqual(r.code, 204)
        r = await self.call("HEAD", "/c")
        self.assertEqual((r.header("X-Container-Meta-A"), r.header("X-Container-Meta-B")),
                         ("1", "2"))
        await self.call("POST", "/c")
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Meta-A"), "1")
        await self.call("POST", "/c", headers={"X-Container-Meta-C": "3"})
        r = await self.call("HEAD", "/c")
        self.assertEqual((r.header("X-Container-Meta-A"), r.header("X-Container-Meta-C")),
                         (None, "3"))

    async def test_delete(self):
        """DELETE of a non-empty container is 409; once empty 204; with
        delimiter=/ it empties it first."""
        await self.container("c")
        await self.put("/c/o")
        self.assertFault(await self.call("DELETE", "/c"), 409)
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 204)
        self.assertEqual((await self.call("DELETE", "/c")).code, 204)
        self.assertEqual((await self.call("HEAD", "/c")).code, 404)
        await self.container("d")
        await self.put("/d/x/y")
        await self.put("/d/z")
        self.assertEqual((await self.call("DELETE", "/d?delimiter=/")).code, 204)
        self.assertEqual((await self.call("HEAD", "/d")).code, 404)

    async def test_names(self):
        """Container names may hold any Unicode but not '/' (%2F), NUL,
        invalid UTF-8, nor more than 256 characters."""
        r = await self.call("PUT", "/%CE%B1%CE%B2%20%F0%9F%98%80")
        self.assertEqual(r.code, 201)
        self.assertEqual([e["name"] for e in await self.listing("")], ["αβ 😀"])
        for bad in ("/a%2Fb", "/a%00b", "/%FF", "/" + "c" * 257):
            self.assertFault(await self.call("PUT", bad), 400)
        self.assertEqual((await self.call("PUT", "/" + "c" * 256)).code, 201)

    async def test_other_user(self):
        """Another user may not create, change or delete containers in an
        account (403/404), and cannot see an unshared one."""
        await self.container("c")
        r = await self.call("HEAD", "/c", token=self.bob_token)
        self.assertIn(r.code, (403, 404))
        self.assertIn((await self.call("PUT", "/d", token=self.bob_token)).code, (403, 404))
        self.assertIn((await self.call("DELETE", "/c", token=self.bob_token)).code, (403, 404))
        self.assertIn((await self.call("POST", "/c", token=self.bob_token, headers={
            "X-Container-Meta-A": "1"})).code, (403, 404))
        self.assertEqual((await self.call("HEAD", "/d")).code, 404)

    async def test_block_upload(self):
        """POST of octet-stream data to a container stores it as blocks
        and answers their hashes (JSON by default, XML, text); a hashmap
        PUT can then use them."""
        await self.container("c")
        data = b"abc" * 1000
        r = await self.call("POST", "/c?update", body=data,
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 202, r.body)
        self.assertEqual(r.json(), [block_hash(data)])
        r = await self.call("POST", "/c?update&format=xml", body=b"other",
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(parse_xml(r.body).find("item").text,
                         block_hash(b"other"))
        r = await self.call("POST", "/c?update&format=text", body=b"third",
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.body, (block_hash(b"third") + "\n").encode())
        r = await self.call("PUT", "/c/o?hashmap&format=json",
                            body=json.dumps({"bytes": len(data),
                                             "hashes": [block_hash(data)]}).encode(),
                            headers={"Content-Type": "text/plain"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/c/o")
        self.assertEqual(r.body, data)

    async def test_block_upload_multi_and_chunked(self):
        """A chunked block upload longer than a block answers one hash per
        block."""
        await self.container("c")
        data = bytes(range(256)) * (BLOCK_SIZE // 256) + b"tail"
        r = await self.call("POST", "/c?update&format=json",
                            chunks=[data[i:i + 100000] for i in range(0, len(data), 100000)],
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 202, r.body)
        self.assertEqual(r.json(), [block_hash(data[:BLOCK_SIZE]), block_hash(b"tail")])

    async def test_block_upload_refused(self):
        """A block upload (small or streamed) to a missing container or by
        a stranger is refused and stores nothing."""
        big = b"secret" * (STREAM_FROM // 6 + 1)
        for body in (b"secret", big):
            r = await self.call("POST", "/nope?update", body=body,
                                headers={"Content-Type": "application/octet-stream"})
            self.assertFault(r, 404)
        await self.container("c")
        for body in (b"secret", big):
            r = await self.call("POST", "/c?update", body=body, token=self.bob_token,
                                headers={"Content-Type": "application/octet-stream"})
            self.assertIn(r.code, (403, 404))
        self.assertEqual(await self.stack.blocks.missing([block_hash(b"secret"),
                                                          block_hash(big)]),
                         [block_hash(b"secret"), block_hash(big)])


class ListingTests(StackCase):
    async def fill(self, *names: str, container: str = "c", **headers: str) -> None:
        await self.container(container)
        for name in names:
            await self.put(f"/{container}/{name}", name.encode(), **headers)

    async def test_entries(self):
        """A JSON entry carries name, hash (the MD5), bytes, content_type,
        ISO last_modified and the x_object_* details; XML the same."""
        await self.fill("o")
        [entry] = await self.listing("/c")
        self.assertEqual(entry["name"], "o")
        self.assertEqual(entry["bytes"], 1)
        self.assertEqual(entry["hash"], "d95679752134a2d9eb61dbd7b91c4bcc")
        self.assertEqual(entry["x_object_hash"], block_hash(b"o"))
        self.assertEqual(entry["content_type"], "application/octet-stream")
        self.assertRegex(entry["last_modified"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
        self.assertEqual(entry["x_object_modified_by"], self.alice)
        self.assertIsInstance(entry["x_object_version"], int)
        self.assertIn("x_object_uuid", entry)
        self.assertIn("x_object_version_timestamp", entry)
        r = await self.call("GET", "/c?format=xml")
        root = parse_xml(r.body)
        self.assertEqual((root.tag, root.get("name")), ("container", "c"))
        self.assertEqual(root.find("object/name").text, "o")
        self.assertEqual(root.find("object/bytes").text, "1")
        self.assertEqual(r.header("X-Container-Object-Count"), "1")

    async def test_text_and_empty(self):
        """Text lists names one per line; empty is 204 (text) or []."""
        await self.fill()
        self.assertEqual((await self.call("GET", "/c")).code, 204)
        self.assertEqual(await self.listing("/c"), [])
        await self.put("/c/b")
        await self.put("/c/a")
        self.assertEqual((await self.call("GET", "/c")).body, b"a\nb\n")

    async def test_delimiter(self):
        """With a delimiter, virtual directories appear as subdir entries
        (JSON and XML), a real object of the same name wins, and prefix
        descends."""
        await self.fill("a/1", "a/2", "b", "d/", "d/x")
        entries = await self.listing("/c", "&delimiter=/")
        self.assertEqual([e.get("name", e.get("subdir")) for e in entries],
                         ["a/", "b", "d/"])
        self.assertEqual(entries[0], {"subdir": "a/"})
        self.assertEqual(entries[2]["name"], "d/")
        r = await self.call("GET", "/c?format=xml&delimiter=/")
        root = parse_xml(r.body)
        self.assertEqual(root.find("subdir").get("name"), "a/")
        entries = await self.listing("/c", "&delimiter=/&prefix=a/")
        self.assertEqual([e["name"] for e in entries], ["a/1", "a/2"])
        self.assertEqual((await self.call("GET", "/c?delimiter=/")).body, b"a/\nb\nd/\n")

    async def test_query_text(self):
        """Query values are percent-encoded UTF-8; anything else (bad
        escapes, raw bytes, which HTTP does not allow in a request target)
        is a 400, never a 500."""
        await self.fill("é1", "é2", "x")
        base = f"/object-store/v1/{self.alice}/c?format=json&prefix=".encode()
        r = await self.call("GET", raw=base + b"%C3%A9")
        self.assertEqual([e["name"] for e in r.json()], ["é1", "é2"])

        async def raw(query: bytes) -> tuple[int, bytes]:
            return await raw_http(self.stack.url, b"GET " + base + query + b" HTTP/1.1\r\n"
                                  b"Host: x\r\nX-Auth-Token: " + self.alice_token.encode())
        code, reply = await raw(b"%C3%A9")
        self.assertEqual(code, 200, reply)
        self.assertIn(b'"name": "\\u00e91"', reply)
        for bad in (b"%FF", b"\xff", "é".encode(), b"x&%C3=1"):
            self.assertEqual((await raw(bad))[0], 400, bad)

    async def test_path(self):
        """path=p lists the objects directly under p/ (names ending with
        the delimiter included), without virtual directories."""
        await self.fill("p/1", "p/d/", "p/q/2", "p/q/3", "r")
        entries = await self.listing("/c", "&path=p")
        self.assertEqual([e.get("name", e.get("subdir")) for e in entries], ["p/1", "p/d/"])

    async def test_paging(self):
        """limit, marker (exclusive), end_marker (exclusive), reverse."""
        await self.fill("a", "b", "c", "d")
        names = lambda es: [e["name"] for e in es]  # noqa: E731
        self.assertEqual(names(await self.listing("/c", "&limit=2")), ["a", "b"])
        self.assertEqual(names(await self.listing("/c", "&marker=b")), ["c", "d"])
        self.assertEqual(names(await self.listing("/c", "&marker=a&end_marker=d")),
                         ["b", "c"])
        self.assertEqual(names(await self.listing("/c", "&reverse=on&limit=3")),
                         ["d", "c", "b"])

    async def test_unicode_order(self):
        """Listing order is by code point, whatever the locale; names of
        any script round-trip."""
        names = ["Z", "a", "é", "ω", "中", "😀", "a b", "a%b"]
        await self.fill(*[n.replace("%", "%25") for n in names])
        listed = [e["name"] for e in await self.listing("/c")]
        self.assertEqual(listed, sorted(names))

    async def test_meta_filter(self):
        """meta=k lists objects having the key, meta=k=v those with that
        value, meta=!k those without it."""
        await self.fill()
        await self.put("/c/red", **{"X-Object-Meta-Colour": "red"})
        await self.put("/c/blue", **{"X-Object-Meta-Colour": "blue"})
        await self.put("/c/none")
        names = lambda es: [e["name"] for e in es]  # noqa: E731
        self.assertEqual(names(await self.listing("/c", "&meta=Colour")), ["blue", "red"])
        self.assertEqual(names(await self.listing("/c", "&meta=Colour=red")), ["red"])
        self.assertEqual(names(await self.listing("/c", "&meta=!Colour")), ["none"])

    async def test_shared_and_public(self):
        """?shared lists what I share, ?public what I published (and
        public listings are the owner's only)."""
        await self.fill("plain", "shared", "public")
        await self.call("POST", "/c/shared?update",
                        headers={"X-Object-Sharing": f"read={self.bob}"})
        await self.call("POST", "/c/public?update", headers={"X-Object-Public": "true"})
        self.assertEqual([e["name"] for e in await self.listing("/c", "&shared")], ["shared"])
        self.assertEqual([e["name"] for e in await self.listing("/c", "&public")], ["public"])
        entries = {e["name"]: e for e in await self.listing("/c")}
        self.assertEqual(entries["shared"]["x_object_sharing"], f"read={self.bob}")
        self.assertTrue(entries["public"]["x_object_public"].startswith(
            self.stack.url + "/public/"))

    async def test_cross_user(self):
        """Another user lists only what is shared with them, with
        x_object_allowed_to, and may not use until."""
        await self.fill("secret", "open")
        await self.call("POST", "/c/open?update",
                        headers={"X-Object-Sharing": f"write={self.bob}"})
        entries = await self.listing("/c", token=self.bob_token)
        self.assertEqual([e["name"] for e in entries], ["open"])
        self.assertEqual(entries[0]["x_object_allowed_to"], "write")
        self.assertNotIn("x_object_public", entries[0])
        r = await self.call("GET", "/c?format=json&until=1", token=self.bob_token)
        self.assertIn(r.code, (403, 404))

    async def test_until(self):
        """?until lists the container as it was then."""
        await self.fill("old")
        r = await self.call("HEAD", "/c/old")
        then = float(r.header("X-Object-Version-Timestamp")) + 0.0000005
        await self.put("/c/new")
        await self.call("DELETE", "/c/old")
        self.assertEqual([e["name"] for e in await self.listing("/c", f"&until={then}")],
                         ["old"])
        self.assertEqual([e["name"] for e in await self.listing("/c")], ["new"])
        r = await self.call("HEAD", f"/c?until={then}")
        self.assertEqual(r.header("X-Container-Object-Count"), "1")
        self.assertIsNotNone(r.header("X-Container-Until-Timestamp"))
