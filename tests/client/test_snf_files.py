"""``snf sharer list`` and the ``snf file`` commands that change an object
in place (``restore``, ``append``, ``overwrite``, ``truncate``) against a
real ``twistd snfd`` node (``SnfNodeTestCase``); what they did is read
back through the object-store API with the user's token.  The retry rules
of the partial updates (an append is sent once, an overwrite is re-sent
whole) are checked on a ``Transport`` with a scripted adapter."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import requests
from requests.adapters import BaseAdapter
from twisted.internet import defer, threads
from twisted.trial import unittest

from snfd.client import config as cfg
from snfd.client.pithos import ClientError, FileBody, PithosClient, Transport
from snfd.pithos.hashmap import BLOCK_SIZE
from tests.client.test_snf_integration import SnfNodeTestCase, stats_of


class FilesTestCase(SnfNodeTestCase):
    def api(self, who: str, method: str, path: str = "",
            **kwargs: Any) -> requests.Response:
        """A request to ``who``'s storage URL + ``path`` with their token."""
        settings = cfg.load(self.config_of(who))
        headers = {"X-Auth-Token": settings.token, **kwargs.pop("headers", {})}
        return requests.request(method, settings.storage_url + path, headers=headers,
                                timeout=30, **kwargs)

    @defer.inlineCallbacks
    def content(self, who: str, path: str) -> Any:
        """``(bytes, X-Object-Version)`` of an object, read through the API."""
        resp = yield threads.deferToThread(self.api, who, "GET", path)
        self.assertEqual(resp.status_code, 200, resp.text)
        return resp.content, resp.headers["X-Object-Version"]

    def local(self, name: str, data: bytes) -> str:
        path = self.work / name
        path.write_bytes(data)
        return str(path)

    def assertOneLine(self, proc: Any, code: int, *texts: str) -> None:
        self.assertEqual(proc.returncode, code, proc.stderr)
        self.assertTrue(proc.stderr.startswith("snf: "), proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        for text in texts:
            self.assertIn(text, proc.stderr)


class PartialUpdateTests(FilesTestCase):
    @defer.inlineCallbacks
    def test_append_overwrite_truncate(self):
        """Each change gives the bytes the API then serves, as the new
        version the command printed: an append adds the file once; an
        overwrite patches a range (and may run past the end); a truncation
        cuts.  A range starting past the end is the server's 416: exit 5,
        one line with its message; a range longer than the local file or
        ending before it starts is a bad command line (2); a truncation to
        more bytes than the object has is refused (5); nothing changed."""
        me = "ivy@example.org"
        yield self.user(me)
        yield self.snf(me, "container", "create", "box")
        yield self.snf(me, "file", "upload", self.local("base.txt", b"0123456789"),
                       "box/f.txt")

        proc = yield self.snf(me, "file", "append", "box/f.txt", self.local("a", b"abc"))
        data, version = yield self.content(me, "/box/f.txt")
        self.assertEqual(data, b"0123456789abc")
        self.assertEqual(proc.stdout.strip(),
                         f"appended 3 bytes to box/f.txt: version {version}")

        proc = yield self.snf(me, "file", "overwrite", "box/f.txt", self.local("o", b"XY"),
                              "--start", "2")
        data, version = yield self.content(me, "/box/f.txt")
        self.assertEqual(data, b"01XY456789abc")
        self.assertIn(f"version {version}", proc.stdout)

        # --end takes the first END-START+1 bytes of the file; past the end
        # the object grows.
        proc = yield self.snf(me, "-o", "json", "file", "overwrite", "box/f.txt",
                              self.local("l", b"LONGER"), "--start", "11", "--end", "14")
        data, version = yield self.content(me, "/box/f.txt")
        self.assertEqual(data, b"01XY456789aLONG")
        shown = json.loads(proc.stdout)
        self.assertEqual((shown["x_object_version"], shown["bytes"]), (version, 4))

        proc = yield self.snf(me, "file", "overwrite", "box/f.txt", self.local("s", b"zz"),
                              "--start", "100", ok=False)
        self.assertOneLine(proc, 5, "(416)", "beyond")
        for argv in (("--start", "0", "--end", "5"), ("--start", "4", "--end", "3")):
            proc = yield self.snf(me, "file", "overwrite", "box/f.txt",
                                  self.local("s", b"zz"), *argv, ok=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
        proc = yield self.snf(me, "file", "truncate", "box/f.txt", "16", ok=False)
        self.assertOneLine(proc, 5, "15 bytes")
        data, unchanged = yield self.content(me, "/box/f.txt")
        self.assertEqual((data, unchanged), (b"01XY456789aLONG", version))

        proc = yield self.snf(me, "file", "truncate", "box/f.txt", "4")
        data, version = yield self.content(me, "/box/f.txt")
        self.assertEqual(data, b"01XY")
        self.assertIn(f"version {version}", proc.stdout)
        yield self.snf(me, "file", "truncate", "box/f.txt", "0")
        data, _ = yield self.content(me, "/box/f.txt")
        self.assertEqual(data, b"")
        yield self.snf(me, "file", "append", "box/f.txt", self.local("a", b"again"))
        data, _ = yield self.content(me, "/box/f.txt")
        self.assertEqual(data, b"again")

        # Missing objects: 3.
        proc = yield self.snf(me, "file", "append", "box/none", self.local("a", b"x"),
                              ok=False)
        self.assertOneLine(proc, 3, "(404)")
        proc = yield self.snf(me, "file", "truncate", "box/none", "0", ok=False)
        self.assertOneLine(proc, 3, "(404)")

    @defer.inlineCallbacks
    def test_large_append_is_streamed_once(self):
        """Appending several blocks to an object that ends mid-block: one
        request carrying the file's bytes once (``--stats``), and the
        object is the concatenation; overwriting across a block boundary
        changes just those bytes."""
        me = "jade@example.org"
        yield self.user(me)
        yield self.snf(me, "container", "create", "big")
        head = os.urandom(BLOCK_SIZE + 1000)
        tail = os.urandom(2 * BLOCK_SIZE + 77)
        yield self.snf(me, "file", "upload", self.local("head", head), "big/obj")
        proc = yield self.snf(me, "--stats", "file", "append", "big/obj",
                              self.local("tail", tail))
        sent, _ = stats_of(proc.stderr)
        self.assertEqual(sent, len(tail))
        self.assertIn(" in 1 requests", proc.stderr)
        data, _ = yield self.content(me, "/big/obj")
        self.assertEqual(hashlib.sha256(data).hexdigest(),
                         hashlib.sha256(head + tail).hexdigest())

        patch = os.urandom(5000)
        at = BLOCK_SIZE - 2500
        yield self.snf(me, "file", "overwrite", "big/obj", self.local("patch", patch),
                       "--start", str(at))
        expected = bytearray(head + tail)
        expected[at:at + len(patch)] = patch
        data, _ = yield self.content(me, "/big/obj")
        self.assertEqual(hashlib.sha256(data).hexdigest(),
                         hashlib.sha256(bytes(expected)).hexdigest())


class RestoreTests(FilesTestCase):
    @defer.inlineCallbacks
    def test_restore_an_older_version(self):
        """Restoring the first version makes its bytes the latest, as a
        new (third) version whose id is printed; a version that does not
        exist is 404 (exit 3), one that is not a number a bad command
        line (2)."""
        me = "kim@example.org"
        yield self.user(me)
        yield self.snf(me, "container", "create", "docs")
        yield self.snf(me, "file", "upload", self.local("r.txt", b"first words"),
                       "docs/r.txt")
        _, first = yield self.content(me, "/docs/r.txt")
        yield self.snf(me, "file", "upload", self.local("r.txt", b"second, longer words"),
                       "docs/r.txt")
        proc = yield self.snf(me, "file", "restore", "docs/r.txt", "--version", first)
        data, version = yield self.content(me, "/docs/r.txt")
        self.assertEqual(data, b"first words")
        self.assertNotEqual(version, first)
        self.assertEqual(proc.stdout.strip(),
                         f"restored version {first} of docs/r.txt: version {version}")
        resp = yield threads.deferToThread(self.api, me, "GET", "/docs/r.txt",
                                           params={"version": "list", "format": "json"})
        ids = [str(v[0]) for v in resp.json()["versions"]]
        self.assertEqual((len(ids), ids[0], ids[-1]), (3, first, version))

        proc = yield self.snf(me, "file", "restore", "docs/r.txt", "--version", "987654321",
                              ok=False)
        self.assertOneLine(proc, 3, "(404)")
        proc = yield self.snf(me, "file", "restore", "docs/r.txt", "--version", "last",
                              ok=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        data, latest = yield self.content(me, "/docs/r.txt")
        self.assertEqual((data, latest), (b"first words", version))


class SharerTests(FilesTestCase):
    @defer.inlineCallbacks
    def test_sharers_and_their_objects(self):
        """Nobody shares with a new user; once an owner shares an object,
        the owner is listed (table: uuid and email; JSON: the API's
        entries) and browsed with ``file -A``; with write permission the
        friend may append to it; a third user still sees no sharer."""
        owner = yield self.user("lee@example.org")
        friend = yield self.user("max@example.org")
        yield self.user("ned@example.org")
        proc = yield self.snf("max@example.org", "sharer", "list")
        self.assertEqual(proc.stdout.strip(), "nobody shares objects with you")
        proc = yield self.snf("max@example.org", "-o", "json", "sharer", "list")
        self.assertEqual(json.loads(proc.stdout), [])

        yield self.snf("lee@example.org", "container", "create", "team")
        yield self.snf("lee@example.org", "container", "create", "private")
        yield self.snf("lee@example.org", "file", "upload",
                       self.local("plan.txt", b"the plan"), "team/plan.txt")
        yield self.snf("lee@example.org", "file", "share", "team/plan.txt",
                       "--write", friend)

        shared = json.loads((yield self.snf("max@example.org", "-o", "json", "sharer",
                                            "list")).stdout)
        self.assertEqual([s["name"] for s in shared], [owner])
        self.assertTrue(shared[0]["last_modified"])
        proc = yield self.snf("max@example.org", "sharer", "list")
        self.assertIn(owner, proc.stdout)
        self.assertIn("lee@example.org", proc.stdout)
        proc = yield self.snf("ned@example.org", "-o", "json", "sharer", "list")
        self.assertEqual(json.loads(proc.stdout), [])

        proc = yield self.snf("max@example.org", "file", "-A", owner, "list")
        self.assertEqual(proc.stdout.split(), ["team"])
        proc = yield self.snf("max@example.org", "file", "-A", owner, "list", "team")
        self.assertEqual(proc.stdout.split(), ["plan.txt"])
        yield self.snf("max@example.org", "file", "-A", owner, "append", "team/plan.txt",
                       self.local("more", b", and more"))
        data, _ = yield self.content("lee@example.org", "/team/plan.txt")
        self.assertEqual(data, b"the plan, and more")
        proc = yield self.snf("ned@example.org", "file", "-A", owner, "append",
                              "team/plan.txt", self.local("more", b"!"), ok=False)
        self.assertOneLine(proc, 4, "(403)")


class ScriptedAdapter(BaseAdapter):
    """Answers from a script of statuses or exceptions; records each
    request's method, Content-Range and the body bytes it read."""

    def __init__(self, script: list[Any]):
        super().__init__()
        self.script = list(script)
        self.seen: list[tuple[str, str, bytes]] = []

    def send(self, request: Any, **kwargs: Any) -> requests.Response:
        body = request.body
        if hasattr(body, "read"):
            body = b"".join(iter(lambda: body.read(7), b""))
        self.seen.append((request.method, request.headers.get("Content-Range", ""),
                          body or b""))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        resp = requests.Response()
        resp.status_code = step
        resp._content = b""
        resp.reason = "Reason"
        resp.url = request.url
        resp.request = request
        resp.headers["X-Object-Version"] = "7"
        return resp

    def close(self) -> None:
        pass


class RetryTests(unittest.TestCase):
    def client(self, script: list[Any]) -> tuple[PithosClient, ScriptedAdapter]:
        adapter = ScriptedAdapter(script)
        session = requests.Session()
        session.mount("http://", adapter)
        transport = Transport(session=session, sleep=lambda _: None, retries=3)
        return PithosClient(transport, "http://h/object-store/v1/me", "tok"), adapter

    def test_append_is_sent_once(self):
        """An append that got a 500, or whose answer timed out, is not sent
        again (the data might have been added)."""
        for failure in (500, requests.ReadTimeout("slow")):
            client, adapter = self.client([failure, 204])
            self.assertRaises(ClientError, client.append, "c", "o",
                              FileBody(io.BytesIO(b"data"), 0, 4))
            self.assertEqual(adapter.seen, [("POST", "bytes */*", b"data")])

    def test_overwrite_and_truncate_are_retried_whole(self):
        """An overwrite is re-sent after a 500 with the whole range again
        (the file is rewound); a truncation likewise."""
        client, adapter = self.client([500, 204])
        f = io.BytesIO(b"..patch..")
        headers = client.overwrite("c", "o", 10, FileBody(f, 2, 5))
        self.assertEqual(headers["X-Object-Version"], "7")
        self.assertEqual(adapter.seen, [("POST", "bytes 10-14/*", b"patch")] * 2)
        client, adapter = self.client([502, 204])
        client.truncate("c", "o", 3)
        self.assertEqual(len(adapter.seen), 2)
