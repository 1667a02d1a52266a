"""The object store API over real HTTP for objects (reference 2.6-2.10,
2.15): uploads streamed, chunked, by hashmap and by form; reads with
ranges and conditions; versions; copy and move; metadata, sharing and
public links; names; and bad input of every kind."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import socket

from twisted.internet import defer, reactor, threads

from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, block_hash, hashmap_of, merkle
from snfd.pithos.uploads import STREAM_FROM
from snfd.testing.pithos import http, raw_http
from tests.pithos.test_api import StackCase, parse_xml


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


BIG = bytes(range(256)) * (BLOCK_SIZE // 256) * 2 + b"the tail"  # 2 blocks and a bit


class UploadTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    async def test_roundtrip(self):
        """PUT answers 201 with the MD5 ETag and the version; GET gives
        the data back with every object header."""
        r = await self.put("/c/o", b"hello", **{"Content-Type": "text/plain"})
        self.assertEqual(r.header("ETag"), md5(b"hello"))
        version = r.header("X-Object-Version")
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.code, r.body), (200, b"hello"))
        self.assertEqual(r.length, 5)
        self.assertEqual(r.header("Content-Type"), "text/plain")
        self.assertEqual(r.header("ETag"), md5(b"hello"))
        self.assertEqual(r.header("X-Object-Hash"), block_hash(b"hello"))
        self.assertEqual(r.header("X-Object-Version"), version)
        self.assertEqual(r.header("X-Object-Modified-By"), self.alice)
        self.assertIsNotNone(r.header("X-Object-UUID"))
        self.assertIsNotNone(r.header("X-Object-Version-Timestamp"))
        self.assertIsNotNone(r.header("X-Timestamp"))
        self.assertTrue(r.header("Last-Modified").endswith("GMT"))
        self.assertEqual(r.header("Accept-Ranges"), "bytes")

    async def test_head(self):
        """HEAD has the headers of GET, Content-Length the object's size,
        and no body."""
        await self.put("/c/o", b"12345")
        r = await self.call("HEAD", "/c/o")
        self.assertEqual((r.code, r.body), (200, b""))
        self.assertEqual(r.length, 5)
        self.assertEqual(r.header("ETag"), md5(b"12345"))

    async def test_empty_object(self):
        """An empty object has the empty hash and MD5."""
        await self.put("/c/e", b"")
        r = await self.call("GET", "/c/e")
        self.assertEqual((r.code, r.body), (200, b""))
        self.assertEqual(r.header("X-Object-Hash"), EMPTY_HASH)
        self.assertEqual(r.header("ETag"), md5(b""))

    async def test_big_object(self):
        """An object of several blocks has the Merkle hash of its blocks
        and reads back whole."""
        r = await self.put("/c/big", BIG)
        self.assertEqual(r.header("ETag"), md5(BIG))
        r = await self.call("GET", "/c/big")
        self.assertEqual(r.body, BIG)
        self.assertEqual(r.header("X-Object-Hash"), merkle(hashmap_of(BIG)))

    async def test_chunked(self):
        """A chunked PUT (no Content-Length) stores the whole body."""
        pieces = [BIG[i:i + 300000] for i in range(0, len(BIG), 300000)]
        r = await self.call("PUT", "/c/chunked", chunks=pieces,
                            headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual(r.header("ETag"), md5(BIG))
        self.assertEqual((await self.call("GET", "/c/chunked")).body, BIG)

    async def test_content_type_guessed(self):
        """Without Content-Type the type is guessed from the name, else
        application/octet-stream."""
        r = await self.call("PUT", "/c/page.html", body=b"<p/>")
        self.assertEqual(r.code, 201)
        r = await self.call("HEAD", "/c/page.html")
        self.assertEqual(r.header("Content-Type"), "text/html")
        await self.call("PUT", "/c/blob", body=b"x")
        r = await self.call("HEAD", "/c/blob")
        self.assertEqual(r.header("Content-Type"), "application/octet-stream")

    async def test_etag_check(self):
        """A PUT whose ETag does not match its data is 422 and creates
        nothing; a matching one (quoted or not) succeeds."""
        r = await self.call("PUT", "/c/o", body=b"data", headers={"ETag": md5(b"other")})
        self.assertFault(r, 422)
        self.assertEqual((await self.call("HEAD", "/c/o")).code, 404)
        r = await self.call("PUT", "/c/o", body=b"data", headers={"ETag": f'"{md5(b"data")}"'})
        self.assertEqual(r.code, 201)

    async def test_missing_container(self):
        """A PUT into a missing container is 404; a streamed one stores no
        block (small and chunked bodies alike)."""
        lost = b"lost data" * (STREAM_FROM // 9 + 1)
        r = await self.call("PUT", "/nope/o", body=lost)
        self.assertFault(r, 404)
        r = await self.call("PUT", "/nope/o", chunks=[b"lost", b"chunks"])
        self.assertFault(r, 404)
        self.assertFault(await self.call("PUT", "/nope/o", body=b"small"), 404)
        self.assertEqual(await self.stack.blocks.missing(
            [block_hash(lost), block_hash(b"lostchunks")]),
            [block_hash(lost), block_hash(b"lostchunks")])

    async def test_refused_upload(self):
        """A streamed upload with a bad token, or by a user who may not
        write there, is refused and stores no block."""
        body = b"intruder" * (STREAM_FROM // 8 + 1)
        r = await self.call("PUT", "/c/o", body=body, token="bogus")
        self.assertFault(r, 401)
        r = await self.call("PUT", "/c/o", body=body, token=self.bob_token)
        self.assertIn(r.code, (403, 404))
        await self.put("/c/o", **{"X-Object-Sharing": f"read={self.bob}"})
        r = await self.call("PUT", "/c/o", body=body, token=self.bob_token)
        self.assertFault(r, 403)
        self.assertEqual(await self.stack.blocks.missing([block_hash(body)]),
                         [block_hash(body)])
        self.assertEqual((await self.call("GET", "/c/o")).body, b"data")

    async def test_token_paths_agree(self):
        """The gate of a streamed upload reads the token as the token
        wrapper of every request does: a malformed one (non-ASCII bytes,
        empty, blank) gets the same 401 whether the body is buffered or
        streamed, and stores no block; of two X-Auth-Token headers both
        take the last; a token in the query works for both."""
        path = f"/object-store/v1/{self.alice}/c/o".encode()
        small = b"small body"

        async def put(tokens: list[bytes], body: bytes, query: bytes = b"") -> tuple[int, bytes]:
            head = (b"PUT " + path + query + b" HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/octet-stream\r\n"
                    + b"".join(b"X-Auth-Token: " + t + b"\r\n" for t in tokens)
                    + b"Content-Length: %d\r\n" % len(body))
            code, reply = await raw_http(self.stack.url, head, body)
            return code, reply.partition(b"\r\n\r\n")[2]

        big = b"malformed" * (STREAM_FROM // 9 + 1)
        for bad in (b"\xc3\xa9t\xe9", b"", b" \t "):
            buffered = await put([bad], small)
            self.assertEqual(buffered[0], 401, (bad, buffered))
            self.assertEqual(await put([bad], big), buffered, bad)
        token = self.alice_token.encode()
        refused = b"refused" * (STREAM_FROM // 7 + 1)
        self.assertEqual((await put([token, b"bogus"], small))[0], 401)
        self.assertEqual((await put([token, b"bogus"], refused))[0], 401)
        self.assertEqual(await self.stack.blocks.missing([block_hash(big), block_hash(refused)]),
                         [block_hash(big), block_hash(refused)])
        self.assertEqual((await put([b"bogus", token], small))[0], 201)
        self.assertEqual((await put([b"bogus", token], big))[0], 201)
        self.assertEqual((await self.call("GET", "/c/o")).body, big)
        self.assertEqual((await put([], refused, b"?X-Auth-Token=" + token))[0], 201)
        self.assertEqual((await self.call("GET", "/c/o")).body, refused)

    async def test_short_body(self):
        """A client that sends less than its Content-Length and hangs up
        creates no object and no version, whether its body was to be
        buffered or streamed."""
        host, port = self.stack.url.removeprefix("http://").split(":")
        path = f"/object-store/v1/{self.alice}/c/short"

        def send(length: int) -> None:
            # Half the body, then hang up (no reply is awaited).
            with socket.create_connection((host, int(port))) as s:
                s.sendall((f"PUT {path} HTTP/1.1\r\nHost: x\r\n"
                           f"X-Auth-Token: {self.alice_token}\r\n"
                           f"Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n"
                           ).encode() + b"x" * (length // 2))
        for length in (100, 3 * STREAM_FROM):
            await threads.deferToThread(send, length)
            self.assertEqual((await self.call("HEAD", "/c/short")).code, 404)
            r = await self.call("GET", "/c/short?version=list&format=json")
            self.assertIn(r.code, (200, 404))
            if r.code == 200:
                self.assertEqual(r.json()["versions"], [])
        await self.put("/c/short", b"now whole")
        self.assertEqual((await self.call("GET", "/c/short")).body, b"now whole")

    async def test_if_none_match_star(self):
        """If-None-Match: * creates only a new object (412 otherwise);
        If-None-Match with a tag on a write is a 400."""
        r = await self.call("PUT", "/c/o", body=b"1", headers={"If-None-Match": "*"})
        self.assertEqual(r.code, 201)
        r = await self.call("PUT", "/c/o", body=b"2", headers={"If-None-Match": "*"})
        self.assertFault(r, 412)
        self.assertEqual((await self.call("GET", "/c/o")).body, b"1")
        r = await self.call("PUT", "/c/o", body=b"2", headers={"If-None-Match": md5(b"1")})
        self.assertFault(r, 400)

    async def test_if_match_write(self):
        """If-Match on a PUT replaces only the version that matches."""
        r = await self.put("/c/o", b"1")
        self.assertFault(await self.call("PUT", "/c/o", body=b"2",
                                         headers={"If-Match": md5(b"x")}), 412)
        r = await self.call("PUT", "/c/o", body=b"2", headers={"If-Match": r.header("ETag")})
        self.assertEqual(r.code, 201)
        self.assertFault(await self.call("PUT", "/c/new", body=b"2",
                                         headers={"If-Match": "*"}), 412)

    async def test_if_match_delete(self):
        """If-Match on a DELETE (an extension of Swift's) deletes only the
        version it names, by MD5 or by hashmap hash: another is 412 and the
        object stays; a gone object is 412; with a delimiter it is 400."""
        r = await self.put("/c/o", b"1")
        self.assertFault(await self.call("DELETE", "/c/o", headers={"If-Match": md5(b"x")}),
                         412)
        self.assertEqual((await self.call("GET", "/c/o")).body, b"1")
        self.assertFault(await self.call("DELETE", "/c/o?delimiter=/",
                                         headers={"If-Match": r.header("ETag")}), 400)
        r = await self.call("DELETE", "/c/o", headers={"If-Match": r.header("ETag")})
        self.assertEqual(r.code, 204)
        self.assertFault(await self.call("DELETE", "/c/o", headers={"If-Match": "*"}), 412)
        await self.put("/c/p", b"2")
        r = await self.call("DELETE", "/c/p",
                            headers={"If-Match": f'"{block_hash(b"2")}"'})
        self.assertEqual(r.code, 204)
        self.assertEqual((await self.call("HEAD", "/c/p")).code, 404)

    async def test_quota(self):
        """An upload past the account's pithos.diskspace is 413 and stores
        nothing; usage follows uploads and deletes."""
        await self.stack.set_diskspace(self.alice, 10)
        await self.put("/c/a", b"12345")
        self.assertEqual(await self.stack.usage(self.alice), 5)
        r = await self.call("PUT", "/c/b", body=b"123456")
        self.assertFault(r, 413)
        self.assertEqual((await self.call("HEAD", "/c/b")).code, 404)
        self.assertEqual((await self.call("DELETE", "/c/a")).code, 204)
        self.assertEqual(await self.stack.usage(self.alice), 0)

    async def test_form_upload(self):
        """A multipart/form-data POST with an X-Object-Data file and the
        token in the query creates the object (201, body = MD5)."""
        boundary = "XyZ"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"X-Object-Data\";"
                f" filename=\"f.txt\"\r\nContent-Type: text/plain\r\n\r\nform data\r\n"
                f"--{boundary}--\r\n").encode()
        url = (self.stack.account_url(self.alice) + "/c/form?X-Auth-Token="
               + self.alice_token)
        r = await http("POST", url, body=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual(r.body, md5(b"form data").encode())
        r = await self.call("GET", "/c/form")
        self.assertEqual((r.body, r.header("Content-Type")), (b"form data", "text/plain"))


class NameTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    async def test_unicode_names(self):
        """Names in any script, with spaces and symbols, round-trip through
        PUT, GET and the listing."""
        names = ["κείμενο.txt", "中文/文件", "emoji 😀", "a+b&c=d?", "tab\there", "100%"]
        for name in names:
            quoted = "".join(c if c.isalnum() and c.isascii() else
                             "".join(f"%{b:02X}" for b in c.encode()) for c in name)
            await self.put(f"/c/{quoted}", name.encode())
            r = await self.call("GET", f"/c/{quoted}")
            self.assertEqual(r.body, name.encode(), name)
        listed = [e["name"] for e in await self.listing("/c")]
        self.assertEqual(listed, sorted(names))

    async def test_dot_segments(self):
        """'.', '..' and 'a/../b' are names like any other: stored under
        exactly that name and nothing else."""
        for name in ("..", ".", "a/../b", "./x"):
            await self.put(f"/c/{name}", name.encode())
        for name in ("..", ".", "a/../b", "./x"):
            r = await self.call("GET", f"/c/{name}")
            self.assertEqual(r.body, name.encode(), name)
        self.assertEqual((await self.call("HEAD", "/c/b")).code, 404)
        self.assertEqual(sorted(e["name"] for e in await self.listing("/c")),
                         sorted(["..", ".", "a/../b", "./x"]))

    async def test_encoded_slash(self):
        """%2F in an object name is a slash: a%2Fb and a/b are the same."""
        await self.put("/c/a%2Fb", b"slash")
        self.assertEqual((await self.call("GET", "/c/a/b")).body, b"slash")

    async def test_bad_names(self):
        """NUL, invalid UTF-8 and names over 1024 characters are 400s; 1024
        is fine."""
        for bad in ("/c/a%00b", "/c/%C3%28", "/c/" + "x" * 1025):
            self.assertFault(await self.call("PUT", bad, body=b"x"), 400)
            self.assertFault(await self.call("GET", bad), 400)
        await self.put("/c/" + "é" * 1024)
        r = await self.call("HEAD", "/c/" + "%C3%A9" * 1024)
        self.assertEqual(r.code, 200)


    async def test_names_xml_cannot_hold(self):
        """Object and container names with characters XML 1.0 forbids
        (C0 controls but tab, LF and CR; U+FFFE, U+FFFF) are 400s on
        write, streamed bodies included (no block is stored), and copies
        may not create them; tab stays a valid name character."""
        for bad in ("a%01b", "x%1F", "%0B", "a%EF%BF%BE", "a%EF%BF%BF"):
            self.assertFault(await self.call("PUT", f"/c/{bad}", body=b"x"), 400)
            self.assertFault(await self.call("PUT", f"/c{bad}"), 400)
        streamed = b"streamed, refused" * (STREAM_FROM // 17 + 1)
        self.assertFault(await self.call("PUT", "/c/s%02", body=streamed), 400)
        self.assertEqual(await self.stack.blocks.missing([block_hash(streamed)]),
                         [block_hash(streamed)])
        await self.put("/c/src", b"src")
        r = await self.call("PUT", "/c/dst%07", headers={"X-Copy-From": "/c/src"})
        self.assertFault(r, 400)
        await self.put("/c/tab%09ok", b"tab")
        self.assertEqual([e["name"] for e in await self.listing("/c")], ["src", "tab\tok"])

    async def test_xml_listing_of_old_names(self):
        """Names stored before the rule (here written past it) leave XML
        listings of the container and the account well-formed, the
        characters shown as U+FFFD; JSON gives them exactly, and the
        object can still be read and deleted."""
        from snfd.pithos import backend as backend_module
        from snfd.pithos import validation

        self.patch(backend_module, "check_new_path", validation.check_path)
        self.patch(backend_module, "check_new_container_name",
                   validation.check_container_name)
        await self.put("/c/old%01name%EF%BF%BE", b"old")
        await self.container("d%1B")
        self.patch(backend_module, "check_new_path", validation.check_new_path)
        self.patch(backend_module, "check_new_container_name",
                   validation.check_new_container_name)
        r = await self.call("GET", "/c?format=xml")
        self.assertEqual(r.code, 200, r.body)
        root = parse_xml(r.body)
        self.assertEqual([o.findtext("name") for o in root.findall("object")],
                         ["old\ufffdname\ufffd"])
        root = parse_xml((await self.call("GET", "?format=xml")).body)
        self.assertEqual(sorted(c.findtext("name") for c in root.findall("container")),
                         ["c", "d\ufffd"])
        self.assertEqual([e["name"] for e in await self.listing("/c")],
                         ["old\x01name\ufffe"])
        self.assertEqual((await self.call("GET", "/c/old%01name%EF%BF%BE")).body, b"old")
        r = await self.call("DELETE", "/c/old%01name%EF%BF%BE")
        self.assertEqual(r.code, 204)


class RangeTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.setup_objects()))
        return d

    async def setup_objects(self):
        await self.container("c")
        self.data = bytes(range(256)) * 4
        await self.put("/c/o", self.data, **{"Content-Type": "text/plain"})
        await self.put("/c/big", BIG)

    async def get(self, value: str, path: str = "/c/o", **headers: str):
        return await self.call("GET", path, headers={"Range": value, **headers})

    async def test_single(self):
        """One range: 206, Content-Range, exactly those bytes."""
        r = await self.get("bytes=10-19")
        self.assertEqual((r.code, r.body), (206, self.data[10:20]))
        self.assertEqual(r.header("Content-Range"), "bytes 10-19/1024")
        self.assertEqual(r.length, 10)
        r = await self.get("bytes=-4")
        self.assertEqual((r.body, r.header("Content-Range")),
                         (self.data[-4:], "bytes 1020-1023/1024"))
        r = await self.get("bytes=1000-")
        self.assertEqual(r.body, self.data[1000:])

    async def test_across_blocks(self):
        """Ranges across block boundaries of a big object."""
        for start, end in ((BLOCK_SIZE - 5, BLOCK_SIZE + 5), (0, len(BIG) - 1),
                           (2 * BLOCK_SIZE - 1, len(BIG) - 1)):
            r = await self.get(f"bytes={start}-{end}", "/c/big")
            self.assertEqual(r.body, BIG[start:end + 1])

    async def test_multiple(self):
        """Several ranges: a multipart/byteranges body whose parts carry
        their Content-Range and bytes, with an exact Content-Length."""
        r = await self.get("bytes=0-1,10-12,-3")
        self.assertEqual(r.code, 206)
        ctype = r.header("Content-Type")
        self.assertTrue(ctype.startswith("multipart/byteranges; boundary="))
        self.assertEqual(r.length, len(r.body))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + r.body)
        parts = list(message.iter_parts())
        self.assertEqual([p["Content-Range"] for p in parts],
                         ["bytes 0-1/1024", "bytes 10-12/1024", "bytes 1021-1023/1024"])
        self.assertEqual([p.get_payload(decode=True) for p in parts],
                         [self.data[0:2], self.data[10:13], self.data[-3:]])
        self.assertEqual(parts[0].get_content_type(), "text/plain")

    async def test_overlapping_ranges_not_amplified(self):
        """Anonymously, on a public link, 100 overlapping ranges are a 416
        (as Swift) rather than 100 copies of the object, and a few
        overlapping ranges send each byte once."""
        r = await self.call("POST", "/c/o?update", headers={"X-Object-Public": "true"})
        self.assertEqual(r.code, 202)
        link = (await self.call("HEAD", "/c/o")).header("X-Object-Public")
        r = await http("GET", link, headers={"Range": "bytes=" + ",".join(["0-"] * 100)})
        self.assertEqual(r.code, 416)
        self.assertEqual(r.header("Content-Range"), "bytes */1024")
        self.assertLess(len(r.body), 1024)
        r = await http("GET", link, headers={"Range": "bytes=0-,0-"})
        self.assertEqual((r.code, r.body), (206, self.data))
        self.assertEqual(r.header("Content-Range"), "bytes 0-1023/1024")
        r = await self.get("bytes=0-9,5-19")
        self.assertEqual((r.code, r.body), (206, self.data[:20]))

    async def test_unsatisfiable(self):
        """A range past the end is 416 with Content-Range: bytes */size."""
        r = await self.get("bytes=1024-")
        self.assertFault(r, 416)
        self.assertEqual(r.header("Content-Range"), "bytes */1024")

    async def test_bad_headers_ignored(self):
        """Malformed Range headers are ignored: 200 and the whole object."""
        for value in ("bytes=x-y", "bytes=5-2", "lines=1-2", "bytes", "bytes=--1"):
            r = await self.get(value)
            self.assertEqual((r.code, r.body), (200, self.data), value)

    async def test_if_range(self):
        """If-Range with the current ETag honours the range; with another
        it sends the whole object."""
        etag = md5(self.data)
        r = await self.get("bytes=0-0", **{"If-Range": etag})
        self.assertEqual(r.code, 206)
        r = await self.get("bytes=0-0", **{"If-Range": md5(b"old")})
        self.assertEqual((r.code, r.body), (200, self.data))

    async def test_head_range(self):
        """HEAD with a range answers its headers and no body."""
        r = await self.call("HEAD", "/c/o", headers={"Range": "bytes=0-9"})
        self.assertEqual((r.code, r.body), (206, b""))
        self.assertEqual(r.length, 10)


class ConditionalTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.setup_objects()))
        return d

    async def setup_objects(self):
        await self.container("c")
        r = await self.put("/c/o", b"content")
        self.etag, self.last = r.header("ETag"), r.header("Last-Modified")

    async def test_if_none_match(self):
        """A matching If-None-Match is 304 with the ETag and no body; a
        different one 200."""
        r = await self.call("GET", "/c/o", headers={"If-None-Match": f'"{self.etag}"'})
        self.assertEqual((r.code, r.body), (304, b""))
        self.assertEqual(r.header("ETag"), self.etag)
        r = await self.call("GET", "/c/o", headers={"If-None-Match": "other"})
        self.assertEqual(r.code, 200)

    async def test_if_match(self):
        """A failing If-Match is 412; a matching one 200."""
        self.assertFault(await self.call("GET", "/c/o", headers={"If-Match": "other"}), 412)
        r = await self.call("GET", "/c/o", headers={"If-Match": self.etag})
        self.assertEqual(r.code, 200)

    async def test_dates(self):
        """If-Modified-Since at Last-Modified is 304; an old
        If-Unmodified-Since is 412."""
        r = await self.call("HEAD", "/c/o", headers={"If-Modified-Since": self.last})
        self.assertEqual(r.code, 304)
        r = await self.call("GET", "/c/o", headers={
            "If-Modified-Since": "Tue, 15 Nov 1994 08:12:31 GMT"})
        self.assertEqual(r.code, 200)
        r = await self.call("GET", "/c/o", headers={
            "If-Unmodified-Since": "Tue, 15 Nov 1994 08:12:31 GMT"})
        self.assertFault(r, 412)


class HashmapTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    async def put_hashmap(self, path: str, doc: object, raw: bytes | None = None):
        body = raw if raw is not None else json.dumps(doc).encode()
        return await self.call("PUT", f"{path}?hashmap&format=json", body=body,
                               headers={"Content-Type": "application/octet-stream"})

    async def test_get_hashmap(self):
        """?hashmap&format=json gives block size, hash, bytes and hashes;
        XML the same; without a format it is an ordinary GET."""
        await self.put("/c/big", BIG)
        r = await self.call("GET", "/c/big?hashmap&format=json")
        self.assertEqual(r.json(), {"block_size": BLOCK_SIZE, "block_hash": "sha256",
                                    "bytes": len(BIG), "hashes": hashmap_of(BIG)})
        r = await self.call("GET", "/c/big?hashmap&format=xml")
        root = parse_xml(r.body)
        self.assertEqual((root.tag, root.get("bytes"), root.get("block_hash")),
                         ("object", str(len(BIG)), "sha256"))
        self.assertEqual([h.text for h in root.findall("hash")], hashmap_of(BIG))
        r = await self.call("GET", "/c/big?hashmap")
        self.assertEqual(r.body, BIG)

    async def test_upload_protocol(self):
        """A hashmap naming missing blocks is 409 with their list; after the
        blocks are POSTed the same PUT creates the object, whose ETag
        becomes its MD5 once computed in the background."""
        data = BIG
        doc = {"bytes": len(data), "hashes": hashmap_of(data)}
        r = await self.put_hashmap("/c/o", doc)
        self.assertEqual(r.code, 409, r.body)
        self.assertEqual(sorted(r.json()), sorted(set(hashmap_of(data))))
        self.assertEqual((await self.call("HEAD", "/c/o")).code, 404)
        for i in range(0, len(data), BLOCK_SIZE):
            r = await self.call("POST", "/c?update&format=json", body=data[i:i + BLOCK_SIZE],
                                headers={"Content-Type": "application/octet-stream"})
            self.assertEqual(r.json(), [block_hash(data[i:i + BLOCK_SIZE])])
        r = await self.put_hashmap("/c/o", doc)
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual(r.header("ETag"), merkle(hashmap_of(data)))
        await self.stack.api.drain()
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.body, r.header("ETag")), (data, md5(data)))

    async def test_empty(self):
        """A hashmap of 0 bytes with [] or [EMPTY_HASH] makes an empty
        object."""
        for hashes in ([], [EMPTY_HASH]):
            r = await self.put_hashmap("/c/e", {"bytes": 0, "hashes": hashes})
            self.assertEqual(r.code, 201, r.body)
            self.assertEqual((await self.call("GET", "/c/e")).body, b"")

    async def test_bad_hashmaps(self):
        """Bad JSON, XML, a wrong count, bad hex, wrong types are 400s
        and create nothing."""
        h = block_hash(b"x")
        for doc, raw in ((None, b"{nope"), (None, b"<object/>"), (None, b"\xff"),
                         ([h], None), ({"bytes": 5}, None),
                         ({"bytes": 5, "hashes": [h, h]}, None),
                         ({"bytes": BLOCK_SIZE + 1, "hashes": [h]}, None),
                         ({"bytes": 1, "hashes": ["zz"]}, None),
                         ({"bytes": -1, "hashes": []}, None),
                         ({"bytes": "1", "hashes": [h]}, None),
                         ({"bytes": 0, "hashes": [h]}, None)):
            r = await self.put_hashmap("/c/bad", doc, raw)
            self.assertFault(r, 400)
        self.assertEqual((await self.call("HEAD", "/c/bad")).code, 404)

    async def test_hashmap_size_capped(self):
        """A hashmap body larger than the hashes of the largest object
        (5 GiB) need is refused with 413 whatever it holds; one for the
        largest object (parsed off the reactor) is answered as usual."""
        h = block_hash(b"cap")
        padded = json.dumps({"bytes": 3, "hashes": [h]}).encode() + b" " * (1 << 20)
        r = await self.put_hashmap("/c/big", None, padded)
        self.assertFault(r, 413)
        r = await self.put_hashmap("/c/big", {"bytes": 2, "hashes": [h] * 2000})
        self.assertFault(r, 413)
        largest = 5 * 1024 ** 3 + 2
        r = await self.put_hashmap("/c/big", {"bytes": largest,
                                              "hashes": [h] * -(-largest // BLOCK_SIZE)})
        self.assertEqual((r.code, r.json()), (409, [h]))
        self.assertEqual((await self.call("HEAD", "/c/big")).code, 404)

    async def test_deeply_nested_json_bodies(self):
        """JSON nested too deeply to decode, as a hashmap, an SLO manifest
        or an account ACL, is a 400 (not a 500) and creates nothing."""
        deep = b"[" * 100_000 + b"]" * 100_000
        within_cap = b"[" * 50_000 + b"]" * 50_000  # hashmap bodies are capped (413)
        self.assertFault(await self.put_hashmap("/c/bad", None, within_cap), 400)
        r = await self.call("PUT", "/c/bad?multipart-manifest=put", body=deep)
        self.assertFault(r, 400)
        self.assertEqual((await self.call("HEAD", "/c/bad")).code, 404)
        r = await self.call("POST", "", headers={"X-Account-Access-Control": "[" * 5000})
        self.assertFault(r, 400)


class PartialUpdateTests(StackCase):
    """Data updates (POST with Content-Range) of large bodies stream into
    the block store like a PUT's body instead of being read whole."""

    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    def spy_sinks(self) -> list[object]:
        """The sinks the object store chooses for request bodies."""
        uploads = self.stack.api.uploads
        chosen: list[object] = []
        original = uploads.body_sink

        def body_sink(*args):
            sink = original(*args)
            chosen.append(sink)
            return sink

        self.patch(uploads, "body_sink", body_sink)
        return chosen

    async def test_large_update_body_is_streamed(self):
        """A multi-block update body, sent with a length or chunked, goes
        into a BlockSink as it arrives (not into a buffer read whole), and
        the object holds the patched bytes after."""
        from snfd.pithos.streams import BlockSink

        patch = bytes(reversed(range(256))) * (BLOCK_SIZE // 256) + b"12345"
        for chunked in (False, True):
            await self.put("/c/o", BIG)
            chosen = self.spy_sinks()
            at = 100
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Range": f"bytes {at}-{at + len(patch) - 1}/*"}
            if chunked:
                r = await self.call("POST", "/c/o", headers=headers,
                                    chunks=[patch[:BLOCK_SIZE // 3], patch[BLOCK_SIZE // 3:]])
            else:
                r = await self.call("POST", "/c/o", headers=headers, body=patch)
            self.assertEqual(r.code, 204, r.body)
            self.assertEqual([type(s) for s in chosen], [BlockSink])
            expected = BIG[:at] + patch + BIG[at + len(patch):]
            await self.stack.api.drain()  # the MD5 is computed after the fact
            r = await self.call("GET", "/c/o")
            self.assertEqual((len(r.body), r.body == expected), (len(expected), True))
            self.assertEqual(r.header("ETag"), md5(expected))

    async def test_streamed_update_needs_write_permission(self):
        """A streamed update by someone who may not write the object is
        refused and changes nothing."""
        await self.put("/c/o", BIG)
        r = await self.call("POST", "/c/o", token=self.bob_token, account=self.alice,
                            headers={"Content-Type": "application/octet-stream",
                                     "Content-Range": f"bytes 0-{STREAM_FROM * 2 - 1}/*"},
                            body=b"z" * (STREAM_FROM * 2))
        self.assertIn(r.code, (403, 404))
        self.assertEqual((await self.call("GET", "/c/o")).body, BIG)


class VersionTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    async def test_versions(self):
        """Every PUT is a version; version=list lists them (JSON/XML; 400
        in text); version=N reads an old one; Last-Modified stays the
        latest change."""
        v1 = (await self.put("/c/o", b"one")).header("X-Object-Version")
        latest = await self.put("/c/o", b"two")
        r = await self.call("GET", "/c/o?version=list&format=json")
        versions = r.json()["versions"]
        self.assertEqual([str(v[0]) for v in versions],
                         [v1, latest.header("X-Object-Version")])
        r = await self.call("GET", f"/c/o?version={v1}")
        self.assertEqual(r.body, b"one")
        self.assertEqual(r.header("X-Object-Version"), v1)
        self.assertEqual(r.header("Last-Modified"), latest.header("Last-Modified"))
        r = await self.call("GET", "/c/o?version=list&format=xml")
        self.assertEqual(len(parse_xml(r.body).findall("version")), 2)
        self.assertFault(await self.call("GET", "/c/o?version=list"), 400)
        self.assertFault(await self.call("GET", "/c/o?version=abc"), 400)
        self.assertFault(await self.call("GET", "/c/o?version=999999"), 404)

    async def test_delete_keeps_history(self):
        """DELETE answers 204; the object is gone but version=list still
        answers and old versions read."""
        v1 = (await self.put("/c/o", b"one")).header("X-Object-Version")
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 204)
        self.assertEqual((await self.call("GET", "/c/o")).code, 404)
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 404)
        r = await self.call("GET", "/c/o?version=list&format=json")
        self.assertIn(int(v1), [v[0] for v in r.json()["versions"]])
        r = await self.call("GET", f"/c/o?version={v1}")
        self.assertEqual(r.body, b"one")

    async def test_delete_delimiter(self):
        """DELETE with delimiter=/ also deletes what is under name/."""
        for name in ("d", "d/1", "d/2/3", "e"):
            await self.put(f"/c/{name}")
        self.assertEqual((await self.call("DELETE", "/c/d?delimiter=/")).code, 204)
        self.assertEqual([e["name"] for e in await self.listing("/c")], ["e"])


class MetaTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    async def test_put_and_post(self):
        """PUT sets metadata and content headers; POST without ?update
        replaces them; with ?update merges, empty deletes (202)."""
        await self.put("/c/o", **{"X-Object-Meta-a_b": "1", "Content-Encoding": "gzip",
                                  "Content-Disposition": "attachment"})
        r = await self.call("HEAD", "/c/o")
        self.assertEqual(r.header("X-Object-Meta-A-B"), "1")
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertEqual(r.header("Content-Disposition"), "attachment")
        r = await self.call("POST", "/c/o?update", headers={"X-Object-Meta-A-B": "",
                                                            "X-Object-Meta-C": "2"})
        self.assertEqual(r.code, 202)
        r = await self.call("HEAD", "/c/o")
        self.assertIsNone(r.header("X-Object-Meta-A-B"))
        self.assertEqual((r.header("X-Object-Meta-C"), r.header("Content-Encoding")),
                         ("2", "gzip"))
        await self.call("POST", "/c/o", headers={"X-Object-Meta-D": "3"})
        r = await self.call("HEAD", "/c/o")
        self.assertEqual((r.header("X-Object-Meta-C"), r.header("X-Object-Meta-D"),
                          r.header("Content-Encoding")), (None, "3", None))
        self.assertEqual((await self.call("GET", "/c/o")).body, b"data")

    async def test_unicode_and_limits(self):
        """Unicode metadata comes back URL-encoded; over-long values are
        400s."""
        await self.put("/c/o", **{"X-Object-Meta-Name": "%CF%80"})
        r = await self.call("HEAD", "/c/o")
        self.assertEqual(r.header("X-Object-Meta-Name"), "%CF%80")
        r = await self.call("PUT", "/c/o", body=b"x", headers={"X-Object-Meta-K": "v" * 257})
        self.assertFault(r, 400)
        r = await self.call("POST", "/c/o", headers={"X-Object-Meta-" + "k" * 129: "v"})
        self.assertFault(r, 400)

    async def test_disposition_type(self):
        """disposition-type=inline|attachment overrides
        Content-Disposition; other values are 400s."""
        await self.put("/c/dir/file.txt")
        r = await self.call("GET", "/c/dir/file.txt?disposition-type=attachment")
        self.assertEqual(r.header("Content-Disposition"), 'attachment; filename="file.txt"')
        self.assertFault(await self.call("GET", "/c/dir/file.txt?disposition-type=x"), 400)

    async def test_missing(self):
        """POST to a missing object is 404."""
        self.assertFault(await self.call("POST", "/c/nope", headers={
            "X-Object-Meta-A": "1"}), 404)

    async def test_keys_and_values_must_be_header_text(self):
        """A metadata key that decodes to anything but header-name
        characters (CR LF, ``:``, space), or a value that decodes to a
        control character, is a 400 and nothing is stored; the object
        stays readable."""
        await self.put("/c/o")
        for name, value in (("X-Object-Meta-K%0D%0ASet-Cookie%3A%20x", "v"),
                            ("X-Object-Meta-A%20B", "v"), ("X-Object-Meta-A%3AB", "v"),
                            ("X-Object-Meta-K", "a%0D%0ASet-Cookie: x"),
                            ("X-Object-Meta-K", "a%07b")):
            for query in ("?update", ""):
                r = await self.call("POST", "/c/o" + query, headers={name: value})
                self.assertFault(r, 400)
            self.assertFault(await self.call("PUT", "/c/o2", body=b"x",
                                             headers={name: value}), 400)
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.code, r.body), (200, b"data"))
        self.assertIsNone(r.header("Set-Cookie"))
        self.assertEqual((await self.call("GET", "/c/o2")).code, 404)

    async def test_unsendable_stored_key_is_a_500_not_a_hang(self):
        """An object whose stored metadata cannot be sent as a header (as
        one stored before keys were checked) is answered with a logged
        500 on GET and HEAD, never left without an answer."""
        from snfd.pithos import headers, validation

        self.patch(validation, "check_meta_key", lambda key: None)
        self.patch(headers, "check_meta_key", lambda key: None)
        await self.put("/c/o")
        r = await self.call("POST", "/c/o?update",
                            headers={"X-Object-Meta-K%0D%0ASet-Cookie%3A%20x": "v"})
        self.assertEqual(r.code, 202)
        for method in ("GET", "HEAD"):
            d = defer.ensureDeferred(http(method, self.stack.account_url(self.alice) + "/c/o",
                                          token=self.alice_token))
            d.addTimeout(10, reactor)
            r = await d
            self.assertEqual(r.code, 500)
            self.assertIsNone(r.header("Set-Cookie"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)


class SharingTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.container("c")))
        return d

    async def test_unshared(self):
        """Another user gets the same 404 for an existing unshared object
        as for a missing one, and may not write it."""
        await self.put("/c/o")
        r1 = await self.call("GET", "/c/o", token=self.bob_token)
        r2 = await self.call("GET", "/c/missing", token=self.bob_token)
        self.assertEqual(r1.code, r2.code)
        self.assertIn(r1.code, (403, 404))
        r = await self.call("PUT", "/c/o", body=b"evil", token=self.bob_token)
        self.assertIn(r.code, (403, 404))
        self.assertEqual((await self.call("GET", "/c/o")).body, b"data")
        self.assertIn((await self.call("DELETE", "/c/o", token=self.bob_token)).code,
                      (403, 404))

    async def test_read_share(self):
        """read= lets the user read (X-Object-Allowed-To: read) but not
        write (403); the owner sees X-Object-Sharing."""
        await self.put("/c/o", **{"X-Object-Sharing": f"read={self.bob}"})
        r = await self.call("HEAD", "/c/o")
        self.assertEqual(r.header("X-Object-Sharing"), f"read={self.bob}")
        r = await self.call("GET", "/c/o", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"data"))
        self.assertEqual(r.header("X-Object-Allowed-To"), "read")
        self.assertIsNone(r.header("X-Object-Sharing"))
        r = await self.call("PUT", "/c/o", body=b"evil", token=self.bob_token)
        self.assertFault(r, 403)
        r = await self.call("POST", "/c/o", token=self.bob_token,
                            headers={"X-Object-Sharing": f"write={self.bob}"})
        self.assertFault(r, 403)
        self.assertEqual((await self.call("GET", "/c/o")).body, b"data")

    async def test_write_share(self):
        """write= lets the user overwrite the object."""
        await self.put("/c/o", **{"X-Object-Sharing": f"write={self.bob}"})
        r = await self.call("PUT", "/c/o", body=b"bob's", token=self.bob_token)
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("HEAD", "/c/o")
        self.assertEqual(r.header("X-Object-Modified-By"), self.bob)

    async def test_inherited(self):
        """Sharing a directory object shares what is under it, and says
        so in X-Object-Shared-By."""
        await self.put("/c/dir", b"", **{"Content-Type": "application/directory",
                                         "X-Object-Sharing": f"read={self.bob}"})
        await self.put("/c/dir/file", b"inside")
        r = await self.call("GET", "/c/dir/file", token=self.bob_token)
        self.assertEqual((r.code, r.body), (200, b"inside"))
        self.assertIn("dir", r.header("X-Object-Shared-By"))

    async def test_bad_sharing(self):
        """Bad X-Object-Sharing syntax is 400."""
        r = await self.call("PUT", "/c/o", body=b"x", headers={"X-Object-Sharing": "bogus"})
        self.assertFault(r, 400)

    async def test_public(self):
        """X-Object-Public: true gives the owner a public URL that serves
        the object without a token, with only the listed headers;
        unpublishing withdraws it."""
        await self.put("/c/o", b"public data", **{"X-Object-Meta-Secret": "s",
                                                  "Content-Type": "text/plain"})
        r = await self.call("POST", "/c/o?update", headers={"X-Object-Public": "true"})
        self.assertEqual(r.code, 202)
        link = (await self.call("HEAD", "/c/o")).header("X-Object-Public")
        self.assertTrue(link.startswith(self.stack.url + "/public/"))
        r = await self.call("HEAD", "/c/o", token=self.bob_token)
        self.assertIsNone(r.header("X-Object-Public"))
        r = await http("GET", link)
        self.assertEqual((r.code, r.body), (200, b"public data"))
        names = {k.decode().lower() for k, _ in r.headers.getAllRawHeaders()}
        self.assertFalse({n for n in names if n.startswith("x-object")})
        self.assertEqual(r.header("Content-Type"), "text/plain")
        self.assertEqual(r.header("ETag"), md5(b"public data"))
        r = await http("GET", link, headers={"Range": "bytes=0-5"})
        self.assertEqual((r.code, r.body), (206, b"public"))
        r = await http("GET", link + "?disposition-type=attachment")
        self.assertEqual(r.header("Content-Disposition"), 'attachment; filename="o"')
        self.assertEqual((await http("PUT", link, body=b"x")).code, 405)
        await self.call("POST", "/c/o?update", headers={"X-Object-Public": "false"})
        self.assertEqual((await http("GET", link)).code, 404)
        self.assertEqual((await http("GET", self.stack.url + "/public/nope")).code, 404)
        self.assertEqual((await http("GET", self.stack.url + "/public/a/b")).code, 404)


class CopyMoveTests(StackCase):
    def setUp(self):
        d = super().setUp()
        d.addCallback(lambda _: defer.ensureDeferred(self.setup_objects()))
        return d

    async def setup_objects(self):
        await self.container("c")
        await self.container("d")
        await self.put("/c/src", b"source", **{"X-Object-Meta-A": "1",
                                               "Content-Type": "text/plain"})
        self.uuid = (await self.call("HEAD", "/c/src")).header("X-Object-UUID")

    async def test_copy_by_put(self):
        """PUT with X-Copy-From copies data and metadata under a new uuid
        (201 + version); given metadata are added."""
        r = await self.call("PUT", "/d/copy", headers={"X-Copy-From": "/c/src",
                                                       "X-Object-Meta-B": "2"})
        self.assertEqual(r.code, 201, r.body)
        self.assertIsNotNone(r.header("X-Object-Version"))
        r = await self.call("GET", "/d/copy")
        self.assertEqual(r.body, b"source")
        self.assertEqual((r.header("X-Object-Meta-A"), r.header("X-Object-Meta-B")),
                         ("1", "2"))
        self.assertEqual(r.header("Content-Type"), "text/plain")
        self.assertNotEqual(r.header("X-Object-UUID"), self.uuid)
        self.assertEqual((await self.call("GET", "/c/src")).body, b"source")

    async def test_fresh_metadata(self):
        """X-Fresh-Metadata: true copies without the source's metadata."""
        await self.call("PUT", "/d/copy", headers={"X-Copy-From": "/c/src",
                                                   "X-Fresh-Metadata": "true",
                                                   "X-Object-Meta-B": "2"})
        r = await self.call("HEAD", "/d/copy")
        self.assertEqual((r.header("X-Object-Meta-A"), r.header("X-Object-Meta-B")),
                         (None, "2"))

    async def test_move_by_put(self):
        """PUT with X-Move-From moves: same uuid, the source is gone."""
        r = await self.call("PUT", "/d/moved", headers={"X-Move-From": "/c/src"})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/d/moved")
        self.assertEqual((r.body, r.header("X-Object-UUID")), (b"source", self.uuid))
        self.assertEqual((await self.call("HEAD", "/c/src")).code, 404)

    async def test_copy_method(self):
        """COPY with Destination copies; MOVE moves; a missing source is
        404; no Destination is 412 (Swift), a bad one 400."""
        r = await self.call("COPY", "/c/src", headers={"Destination": "/d/x%20y"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/d/x y")).body, b"source")
        r = await self.call("MOVE", "/c/src", headers={"Destination": "/d/m"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("HEAD", "/d/m")).header("X-Object-UUID"), self.uuid)
        self.assertFault(await self.call("COPY", "/c/src", headers={"Destination": "/d/z"}),
                         404)
        self.assertFault(await self.call("COPY", "/d/m"), 412)
        self.assertFault(await self.call("COPY", "/d/m", headers={"Destination": "/d"}), 400)

    async def test_copy_version(self):
        """X-Source-Version copies an old version."""
        v1 = (await self.call("HEAD", "/c/src")).header("X-Object-Version")
        await self.put("/c/src", b"newer")
        r = await self.call("PUT", "/d/old", headers={"X-Copy-From": "/c/src",
                                                      "X-Source-Version": v1})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/d/old")).body, b"source")

    async def test_cross_account(self):
        """Copying from another account needs read permission there."""
        r = await self.call("PUT", "/c", token=self.bob_token, account=self.bob)
        self.assertEqual(r.code, 201)
        r = await self.call("PUT", "/c/stolen", token=self.bob_token, account=self.bob,
                            headers={"X-Copy-From": "/c/src", "X-Source-Account": self.alice})
        self.assertIn(r.code, (403, 404))
        await self.call("POST", "/c/src?update",
                        headers={"X-Object-Sharing": f"read={self.bob}"})
        r = await self.call("PUT", "/c/copied", token=self.bob_token, account=self.bob,
                            headers={"X-Copy-From": "/c/src", "X-Source-Account": self.alice})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/c/copied", token=self.bob_token, account=self.bob)
        self.assertEqual(r.body, b"source")

    async def test_delimiter(self):
        """COPY with delimiter=/ copies a directory and what is under it."""
        await self.put("/c/dir", b"", **{"Content-Type": "application/directory"})
        await self.put("/c/dir/a")
        await self.put("/c/dir/b/c")
        r = await self.call("COPY", "/c/dir?delimiter=/", headers={"Destination": "/d/new"})
        self.assertEqual(r.code, 201, r.body)
        names = [e["name"] for e in await self.listing("/d")]
        self.assertEqual(names, ["new", "new/a", "new/b/c"])


class FramingTests(StackCase):
    async def test_content_length(self):
        """Every reply with a body says its Content-Length (no chunking),
        errors and empty 201/202 replies included."""
        await self.container("c")
        replies = [
            await self.call("PUT", "/c/o", body=b"abc"),
            await self.call("POST", "/c/o", headers={"X-Object-Meta-A": "1"}),
            await self.call("GET", "/c/o"),
            await self.call("GET", "/c/o", headers={"Range": "bytes=0-0,2-2"}),
            await self.call("GET", "/c?format=json"),
            await self.call("GET", "/c/missing"),
            await self.call("GET", "/c/%FF"),
        ]
        for r in replies:
            self.assertEqual(r.length, len(r.body), r.code)
        self.assertEqual([r.code for r in replies], [201, 202, 200, 206, 200, 404, 400])


class MethodTests(StackCase):
    async def test_unknown_method(self):
        """Unsupported methods are 405 with Allow."""
        r = await self.call("PATCH", "/c/o")
        self.assertFault(r, 405)
        self.assertIn("COPY", r.header("Allow"))
