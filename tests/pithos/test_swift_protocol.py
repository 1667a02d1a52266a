"""The object store speaks Swift's protocol in its details (issue 13,
"Protocol details that differ today"): listings, conditional requests,
copies, names, request bodies and the constraints ``/info`` advertises,
each held to what Swift 2.38 answers (its source: ``swift/common/swob.py``,
``swift/common/constraints.py``, ``swift/common/middleware/copy.py``,
``swift/container/backend.py``, ``swift/obj/server.py``)."""

from __future__ import annotations

import hashlib
import math
import socket
import time
from typing import Any
from urllib.parse import quote

from twisted.internet import task, threads
from twisted.web.http import datetimeToString, stringToDatetime

from snfd.pithos.rules import MAX_META_KEYS
from snfd.pithos.uploads import STREAM_FROM
from tests.pithos.test_api import StackCase, parse_xml


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [e.get("name", e.get("subdir")) for e in entries]


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class AccountListingTests(StackCase):
    async def _containers(self, *given: str) -> None:
        for name in given:
            await self.container(name)

    async def test_delimiter_and_prefix(self):
        """An account listing with a delimiter rolls containers up into
        subdir entries after the prefix, in JSON, XML (``<subdir name>``)
        and text, as Swift's account backend does."""
        await self._containers("a-1", "a-2", "b", "b-x-1", "b-x-2", "c")
        entries = await self.listing("", "&delimiter=-")
        self.assertEqual(names(entries), ["a-", "b", "b-", "c"])
        self.assertEqual(entries[0], {"subdir": "a-"})
        entries = await self.listing("", "&delimiter=-&prefix=b-")
        self.assertEqual(names(entries), ["b-x-"])
        r = await self.call("GET", "?delimiter=-")
        self.assertEqual(r.body, b"a-\nb\nb-\nc\n")
        r = await self.call("GET", "?delimiter=-&format=xml")
        root = parse_xml(r.body)
        self.assertEqual([(e.tag, e.get("name") or e.findtext("name")) for e in root],
                         [("subdir", "a-"), ("container", "b"), ("subdir", "b-"),
                          ("container", "c")])

    async def test_delimiter_paging(self):
        """limit counts subdirs; a marker equal to a subdir resumes after
        everything under it; reverse rolls up too; end_marker bounds."""
        await self._containers("a-1", "a-2", "b", "b-x-1", "b-x-2", "c")
        self.assertEqual(names(await self.listing("", "&delimiter=-&limit=2")), ["a-", "b"])
        self.assertEqual(names(await self.listing("", "&delimiter=-&marker=a-")),
                         ["b", "b-", "c"])
        self.assertEqual(names(await self.listing("", "&delimiter=-&marker=b-&limit=1")),
                         ["c"])
        self.assertEqual(names(await self.listing("", "&delimiter=-&reverse=on")),
                         ["c", "b-", "b", "a-"])
        self.assertEqual(names(await self.listing("", "&delimiter=-&end_marker=b-")),
                         ["a-", "b"])

    async def test_paging_and_order(self):
        """marker, end_marker, limit and reverse page an account's
        containers in the byte order of their UTF-8 names."""
        given = ["b", "a", "\u00e9", "Z", "\U0001f600", "\uff41"]
        await self._containers(*given)
        want = sorted(given, key=lambda n: n.encode("utf-8"))
        self.assertEqual(names(await self.listing("")), want)
        self.assertEqual(names(await self.listing("", "&limit=2&marker=a")), want[2:4])
        self.assertEqual(names(await self.listing("", f"&end_marker={quote(want[3])}")),
                         want[:3])
        self.assertEqual(names(await self.listing("", "&reverse=true")), want[::-1])
        self.assertEqual(names(await self.listing("", f"&reverse=true&marker={quote(want[3])}"
                                                  f"&end_marker={quote(want[0])}")),
                         [want[2], want[1]])


class ContainerListingTests(StackCase):
    async def test_paging_reverse_and_order(self):
        """Objects list in the byte order of their UTF-8 names; marker,
        end_marker, limit and reverse page them as Swift does."""
        await self.container("c")
        given = ["b", "a", "a/b", "a0", "\u00e9", "Z", "\U0001f600", "\uff41", "a b"]
        for name in given:
            await self.put(f"/c/{quote(name)}")
        want = sorted(given, key=lambda n: n.encode("utf-8"))
        self.assertEqual(names(await self.listing("/c")), want)
        self.assertEqual(names(await self.listing("/c", "&limit=3&marker=a")), want[2:5])
        self.assertEqual(names(await self.listing("/c", "&end_marker=a0")),
                         want[:want.index("a0")])
        self.assertEqual(names(await self.listing("/c", "&reverse=1&limit=2")), want[::-1][:2])
        self.assertEqual(names(await self.listing("/c", "&reverse=1&marker=b&end_marker=a")),
                         ["a0", "a/b", "a b"])

    async def test_delimiter(self):
        """A delimiter rolls names up into subdirs (JSON ``subdir``, XML
        ``<subdir name><name>``, text lines)."""
        await self.container("c")
        for name in ("a/1", "a/2", "b", "c/d/e"):
            await self.put(f"/c/{name}")
        self.assertEqual(names(await self.listing("/c", "&delimiter=/")), ["a/", "b", "c/"])
        self.assertEqual(names(await self.listing("/c", "&delimiter=/&prefix=c/")), ["c/d/"])
        r = await self.call("GET", "/c?delimiter=/&format=xml")
        sub = parse_xml(r.body).find("subdir")
        self.assertEqual((sub.get("name"), sub.findtext("name")), ("a/", "a/"))

    async def test_path(self):
        """``path`` lists the objects directly below it, without the
        directory object itself and without deeper names or subdirs
        (``swift.container.backend.list_objects_iter``); a directory
        marker one level down is listed."""
        await self.container("c")
        for name in ("d", "d/", "d/x", "d/y/", "d/y/z", "e"):
            await self.put(f"/c/{name}")
        self.assertEqual(names(await self.listing("/c", "&path=d")), ["d/x", "d/y/"])
        self.assertEqual(names(await self.listing("/c", "&path=d/")), ["d/x", "d/y/"])


class WriteConditionTests(StackCase):
    async def test_if_none_match_star(self):
        """``If-None-Match: *`` creates a missing object and is a 412
        when it exists; a list holding ``*`` counts as ``*``."""
        await self.container("c")
        await self.put("/c/o", **{"If-None-Match": "*"})
        r = await self.call("PUT", "/c/o", headers={"If-None-Match": "*"}, body=b"new")
        self.assertFault(r, 412)
        r = await self.call("PUT", "/c/o", headers={"If-None-Match": '"abc", *'}, body=b"x")
        self.assertFault(r, 412)
        r = await self.call("GET", "/c/o")
        self.assertEqual(r.body, b"data")

    async def test_if_none_match_etags(self):
        """Anything but ``*`` in If-None-Match on a PUT is Swift's 400
        ``If-None-Match only supports *``."""
        await self.container("c")
        r = await self.call("PUT", "/c/o", headers={"If-None-Match": f'"{md5(b"x")}"'},
                            body=b"x")
        self.assertFault(r, 400)
        self.assertEqual(r.body, b"If-None-Match only supports *")

    async def test_etag_mismatch(self):
        """A PUT whose data does not match its ETag is a 422 and stores
        nothing; a matching one (quoted or not) is stored."""
        await self.container("c")
        r = await self.call("PUT", "/c/o", headers={"ETag": md5(b"other")}, body=b"data")
        self.assertFault(r, 422)
        self.assertFault(await self.call("HEAD", "/c/o"), 404)
        await self.put("/c/o", b"data", ETag=f'"{md5(b"data")}"')


class ConditionalReadTests(StackCase):
    async def _object(self) -> tuple[str, str]:
        await self.container("c")
        r = await self.put("/c/o", b"hello")
        return r.header("ETag"), r.header("Last-Modified")

    async def test_etags(self):
        """If-Match and If-None-Match on GET and HEAD, with lists and ``*``:
        a failed If-Match is 412, a matching If-None-Match 304 (with the
        ETag); If-None-Match is looked at first, as in swob."""
        etag, _ = await self._object()
        for method in ("GET", "HEAD"):
            call = lambda **h: self.call(method, "/c/o", headers=h)  # noqa: B023, E731
            self.assertEqual((await call(**{"If-Match": f'"x", "{etag}"'})).code, 200)
            self.assertEqual((await call(**{"If-Match": "*"})).code, 200)
            self.assertEqual((await call(**{"If-Match": '"x"'})).code, 412)
            r = await call(**{"If-None-Match": f'"x", "{etag}"'})
            self.assertEqual((r.code, r.header("ETag")), (304, etag))
            self.assertEqual((await call(**{"If-None-Match": "*"})).code, 304)
            self.assertEqual((await call(**{"If-None-Match": '"x"'})).code, 200)
            # W/ tags are never the object's ETag (swob compares them as given).
            self.assertEqual((await call(**{"If-None-Match": f'W/"{etag}"'})).code, 200)
            r = await call(**{"If-None-Match": etag, "If-Match": '"x"'})
            self.assertEqual(r.code, 304)
        r = await self.call("GET", "/c/missing", headers={"If-Match": "*"})
        self.assertFault(r, 412)

    async def test_dates(self):
        """If-Modified-Since at or after Last-Modified is 304, before it
        200; If-Unmodified-Since before it is 412; both are checked after
        the ETag conditions and even beside them, as in swob."""
        etag, last = await self._object()
        when = int(stringToDatetime(last.encode()))
        before = datetimeToString(when - 1).decode()
        after = datetimeToString(when + 1).decode()
        for method in ("GET", "HEAD"):
            call = lambda **h: self.call(method, "/c/o", headers=h)  # noqa: B023, E731
            self.assertEqual((await call(**{"If-Modified-Since": last})).code, 304)
            self.assertEqual((await call(**{"If-Modified-Since": after})).code, 304)
            self.assertEqual((await call(**{"If-Modified-Since": before})).code, 200)
            self.assertEqual((await call(**{"If-Unmodified-Since": last})).code, 200)
            self.assertEqual((await call(**{"If-Unmodified-Since": before})).code, 412)
            r = await call(**{"If-Match": etag, "If-Unmodified-Since": before})
            self.assertEqual(r.code, 412)
            r = await call(**{"If-None-Match": '"x"', "If-Modified-Since": last})
            self.assertEqual(r.code, 304)

    async def test_last_modified_rounds_up(self):
        """Last-Modified is the write's time rounded up to the second
        (Swift: ``Timestamp.ceil()``), the same in PUT's answer, HEAD and
        GET; the listing keeps the exact time (ISO 8601, microseconds),
        which X-Timestamp carries too."""
        await self.container("c")
        r = await self.put("/c/o")
        put_last = r.header("Last-Modified")
        head = await self.call("HEAD", "/c/o")
        get = await self.call("GET", "/c/o")
        self.assertEqual(head.header("Last-Modified"), put_last)
        self.assertEqual(get.header("Last-Modified"), put_last)
        exact = float(head.header("X-Timestamp"))
        self.assertEqual(int(stringToDatetime(put_last.encode())), math.ceil(exact))
        entry = (await self.listing("/c"))[0]
        listed = time.strptime(entry["last_modified"][:19], "%Y-%m-%dT%H:%M:%S")
        self.assertEqual(time.strftime("%Y-%m-%dT%H:%M:%S", listed),
                         time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(exact))))
        self.assertEqual(entry["last_modified"][19:], f"{exact % 1:.5f}"[1:] + "0")
        r = await self.call("GET", "/c/o", headers={"If-Modified-Since": put_last})
        self.assertEqual(r.code, 304)
        # Containers and accounts round the same way.
        r = await self.call("HEAD", "/c")
        self.assertEqual(int(stringToDatetime(r.header("Last-Modified").encode())),
                         math.ceil(float(r.header("X-Timestamp"))))

    async def test_copy_conditions(self):
        """COPY and X-Copy-From evaluate the conditions on the source:
        a failed If-Match is 412 and copies nothing."""
        etag, _ = await self._object()
        r = await self.call("COPY", "/c/o", headers={"Destination": "/c/p", "If-Match": '"x"'})
        self.assertFault(r, 412)
        r = await self.call("PUT", "/c/p", headers={"X-Copy-From": "/c/o",
                                                    "If-Match": '"x"'}, body=b"")
        self.assertFault(r, 412)
        self.assertFault(await self.call("HEAD", "/c/p"), 404)
        r = await self.call("COPY", "/c/o", headers={"Destination": "/c/p", "If-Match": etag})
        self.assertEqual(r.code, 201)


class CopyTests(StackCase):
    async def test_copy_needs_destination(self):
        """COPY without Destination is Swift's 412 ``Destination header
        required``."""
        await self.container("c")
        await self.put("/c/o")
        r = await self.call("COPY", "/c/o")
        self.assertFault(r, 412)
        self.assertEqual(r.body, b"Destination header required")

    async def test_ranged_copy(self):
        """A copy with a Range header copies that range of the source
        (Swift's copy middleware), by COPY and by X-Copy-From."""
        await self.container("c")
        data = bytes(range(256)) * 10
        await self.put("/c/o", data)
        r = await self.call("COPY", "/c/o", headers={"Destination": "/c/p",
                                                     "Range": "bytes=10-19"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual(r.header("ETag"), md5(data[10:20]))
        self.assertEqual((await self.call("GET", "/c/p")).body, data[10:20])
        r = await self.call("PUT", "/c/q", headers={"X-Copy-From": "/c/o",
                                                    "Range": "bytes=-5"}, body=b"")
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/q")).body, data[-5:])
        r = await self.call("COPY", "/c/o", headers={"Destination": "/c/p",
                                                     "Range": "bytes=5000-"})
        self.assertFault(r, 416)

    async def test_cross_account(self):
        """X-Copy-From-Account names the source account and
        Destination-Account the destination's: a source the caller may
        not read is 403 (404 when missing in a readable container), a
        destination it may not write 403."""
        await self.container("c")
        await self.put("/c/o", b"alice's")
        await self.call("PUT", "/b", token=self.bob_token, account=self.bob)
        # Bob may not read alice's container.
        r = await self.call("PUT", "/b/copy", token=self.bob_token, account=self.bob,
                            headers={"X-Copy-From": "/c/o",
                                     "X-Copy-From-Account": self.alice}, body=b"")
        self.assertFault(r, 403)
        await self.call("POST", "/c", headers={"X-Container-Read": self.bob})
        r = await self.call("PUT", "/b/copy", token=self.bob_token, account=self.bob,
                            headers={"X-Copy-From": "/c/o",
                                     "X-Copy-From-Account": self.alice}, body=b"")
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual(r.header("X-Copied-From-Account"), self.alice)
        r = await self.call("GET", "/b/copy", token=self.bob_token, account=self.bob)
        self.assertEqual(r.body, b"alice's")
        r = await self.call("PUT", "/b/copy2", token=self.bob_token, account=self.bob,
                            headers={"X-Copy-From": "/c/missing",
                                     "X-Copy-From-Account": self.alice}, body=b"")
        self.assertFault(r, 404)
        # Alice may not write into bob's container; then she may.
        r = await self.call("COPY", "/c/o", headers={"Destination": "/b/from-alice",
                                                     "Destination-Account": self.bob})
        self.assertFault(r, 403)
        await self.call("POST", "/b", token=self.bob_token, account=self.bob,
                        headers={"X-Container-Write": self.alice})
        r = await self.call("COPY", "/c/o", headers={"Destination": "/b/from-alice",
                                                     "Destination-Account": self.bob})
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/b/from-alice", token=self.bob_token, account=self.bob)
        self.assertEqual(r.body, b"alice's")

    async def test_post_content_type(self):
        """An object POST with Content-Type changes the object's type
        and keeps its data."""
        await self.container("c")
        await self.put("/c/o", b"text", **{"Content-Type": "application/octet-stream"})
        r = await self.call("POST", "/c/o", headers={"Content-Type": "text/plain",
                                                     "X-Object-Meta-A": "1"})
        self.assertEqual(r.code, 202, r.body)
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.header("Content-Type"), r.body), ("text/plain", b"text"))
        self.assertEqual(r.header("X-Object-Meta-A"), "1")
        self.assertEqual((await self.listing("/c"))[0]["content_type"], "text/plain")


class NameTests(StackCase):
    NAMES = ("\U0001f600 smile", "e\u0301 combining", "with space", "100%25 done",
             "a%2Fb", "%41", "\u4f60\u597d/\u4e16\u754c", "tab\tname", "quote'\"",
             "\u202eright-to-left", "trailing/")

    async def test_unicode_names_round_trip(self):
        """Any valid UTF-8 name (emoji, combining characters, spaces,
        %-sequences, what tempest and Swift's functional tests make) is
        201 and comes back the same through GET and the listings."""
        await self.container("c")
        for name in self.NAMES:
            r = await self.call("PUT", "/c/" + quote(name), body=name.encode(),
                                headers={"Content-Type": "text/plain"})
            self.assertEqual(r.code, 201, (name, r.body))
            r = await self.call("GET", "/c/" + quote(name))
            self.assertEqual(r.body, name.encode(), name)
        listed = names(await self.listing("/c"))
        self.assertEqual(listed, sorted(self.NAMES, key=lambda n: n.encode()))
        r = await self.call("GET", "/c")
        self.assertEqual(r.body.decode().splitlines(),
                         sorted(self.NAMES, key=lambda n: n.encode()))
        r = await self.call("GET", "/c?format=xml")
        self.assertEqual([e.text for e in parse_xml(r.body).findall("object/name")],
                         sorted(self.NAMES, key=lambda n: n.encode()))

    async def test_escaped_slash_in_object_name(self):
        """``%2F`` in an object path is a slash of its name, as in Swift
        (WSGI decodes the path); a literal ``%2F`` is sent as ``%252F``."""
        await self.container("c")
        await self.put("/c/x%2Fy", b"1")
        self.assertEqual((await self.call("GET", "/c/x/y")).body, b"1")
        await self.put("/c/x%252Fy", b"2")
        self.assertEqual((await self.call("GET", "/c/x%252Fy")).body, b"2")
        self.assertEqual(names(await self.listing("/c")), ["x%2Fy", "x/y"])

    async def test_unicode_container_names(self):
        """Container names take any valid UTF-8 too."""
        given = ("\U0001f600", "e\u0301", "a b", "50%25", "100%")
        for name in given:
            r = await self.call("PUT", "/" + quote(name))
            self.assertEqual(r.code, 201, (name, r.body))
            self.assertEqual((await self.call("HEAD", "/" + quote(name))).code, 204)
        self.assertEqual(names(await self.listing("")),
                         sorted(given, key=lambda n: n.encode()))


def _exchange(base: str, data: bytes, half_close: bool) -> bytes:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


class BodyTests(StackCase):
    def head(self, method: str, path: str, *lines: str) -> bytes:
        url = self.stack.account_url(self.alice) + path
        target = url.split("/", 3)[3]
        out = [f"{method} /{target} HTTP/1.1", "Host: localhost",
               f"X-Auth-Token: {self.alice_token}", *lines]
        return ("\r\n".join(out) + "\r\n\r\n").encode()

    async def send(self, data: bytes, half_close: bool = False) -> bytes:
        reply: bytes = await threads.deferToThread(_exchange, self.stack.url, data, half_close)
        return reply

    async def _gone(self, path: str) -> None:
        # The server settles a dropped upload on its own time.
        from twisted.internet import reactor

        for _ in range(20):
            r = await self.call("HEAD", path)
            if r.code == 404:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertFault(r, 404)

    async def test_short_body_stores_nothing(self):
        """A PUT whose client closes before its Content-Length arrived
        (Swift's 499) stores nothing, small or streamed."""
        await self.container("c")
        for size in (100, STREAM_FROM * 3):
            head = self.head("PUT", "/c/short", f"Content-Length: {size}",
                             "Content-Type: application/octet-stream")
            reply = await self.send(head + b"x" * (size // 2), half_close=True)
            self.assertFalse(reply.startswith(b"HTTP/1.1 2"), reply[:200])
            await self._gone("/c/short")
        self.assertEqual(await self.listing("/c"), [])

    async def test_missing_length(self):
        """A data PUT with neither Content-Length nor chunking is Swift's
        411 ``Missing Content-Length header.``; a copy needs none."""
        await self.container("c")
        await self.put("/c/o")
        reply = await self.send(self.head("PUT", "/c/nolength", "Connection: close"))
        self.assertTrue(reply.startswith(b"HTTP/1.1 411"), reply[:200])
        self.assertTrue(reply.endswith(b"Missing Content-Length header."), reply[-200:])
        await self._gone("/c/nolength")
        reply = await self.send(self.head("PUT", "/c/copy", "X-Copy-From: /c/o",
                                          "Connection: close"))
        self.assertTrue(reply.startswith(b"HTTP/1.1 201"), reply[:200])

    async def test_longer_body_is_cut(self):
        """Bytes beyond Content-Length are not part of the object (they
        are the next request, which is refused)."""
        await self.container("c")
        head = self.head("PUT", "/c/o", "Content-Length: 4", "Connection: close")
        reply = await self.send(head + b"dataEXTRA" * 10)
        self.assertTrue(reply.startswith(b"HTTP/1.1 201"), reply[:200])
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.code, r.body), (200, b"data"))


class ConstraintTests(StackCase):
    async def test_blank_metadata_name(self):
        """``X-Object-Meta-`` with nothing after it is a 400 (Swift:
        ``Metadata name cannot be empty``)."""
        await self.container("c")
        for path, level in (("", "Account"), ("/c", "Container"), ("/c/o", "Object")):
            r = await self.call("PUT" if level == "Object" else "POST", path,
                                headers={f"X-{level}-Meta-": "v"}, body=b"")
            self.assertFault(r, 400)

    async def test_bad_header_values(self):
        """A metadata value or name that is not UTF-8 is a 400."""
        await self.container("c")
        path = self.stack.account_url(self.alice).split("/", 3)[3] + "/c"
        for line in (b"X-Container-Meta-A: \xff\xfe", b"X-Container-Meta-\xff: v"):
            head = (f"POST /{path} HTTP/1.1\r\nHost: localhost\r\n"
                    f"X-Auth-Token: {self.alice_token}\r\nContent-Length: 0\r\n").encode()
            reply = await threads.deferToThread(
                _exchange, self.stack.url, head + line + b"\r\nConnection: close\r\n\r\n",
                False)
            self.assertTrue(reply.startswith(b"HTTP/1.1 400"), reply[:200])

    async def test_header_size(self):
        """A header value longer than ``max_header_size`` is Swift's 400
        ``Header value too long: <name>``; one at the limit passes."""
        info = (await self.call("GET", raw=b"/object-store/info", token=None)).json()["swift"]
        size = info["max_header_size"]
        self.assertEqual(size, 8192)
        await self.container("c")
        r = await self.call("PUT", "/c/o", body=b"x", headers={"X-Something": "v" * (size + 1)})
        self.assertFault(r, 400)
        self.assertEqual(r.body, b"Header value too long: X-Something")
        self.assertFault(await self.call("HEAD", "/c/o"), 404)
        await self.put("/c/o", b"x", **{"X-Something": "v" * size})

    async def test_header_count(self):
        """More headers than Swift's count (``max_meta_count`` + 36 +
        ``extra_header_count``) are refused; that many pass."""
        info = (await self.call("GET", raw=b"/object-store/info", token=None)).json()["swift"]
        self.assertEqual(info["extra_header_count"], 0)
        self.assertEqual(info["max_meta_count"], MAX_META_KEYS)
        most = MAX_META_KEYS + 36 + info["extra_header_count"]
        await self.container("c")
        # Agent adds Host, Connection, Content-Length and the token.
        some = {f"X-Extra-{i}": "1" for i in range(most - 5)}
        await self.put("/c/o", b"x", **some)
        more = {f"X-Extra-{i}": "1" for i in range(most)}
        r = await self.call("PUT", "/c/o", body=b"x", headers=more)
        self.assertIn(r.code, (400, 431))
        self.assertEqual(r.body, b"Too many headers")
