"""Swift compatibility: /info, v1 authentication, container and account
ACLs mapped to Pithos sharing, and (over a real backend on PostgreSQL
with a real block store) static and dynamic large objects and bulk
delete."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
from typing import Any
from urllib.parse import quote

from treq.testing import StubTreq
from twisted.internet import defer, utils
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from snfd import errors
from snfd.pithos import swift
from snfd.pithos.model import ANYONE, ObjectInfo, Permissions
from snfd.testing.identity import StubAuthenticator
from snfd.testing.pithos import object_store_stack
from snfd.testing.stubhttp import pumped
from snfd.web.auth import Principal
from snfd.web.site import Root
from tests.pithos.test_updates import ALICE, BOB, Store

UUID = "5f2e3c1a-0000-4000-8000-000000000001"
OTHER = "5f2e3c1a-0000-4000-8000-000000000002"
NOW = 1_700_000_000.0


async def get(stub: StubTreq, url: str, headers: dict[str, str] | None = None,
              method: str = "GET") -> tuple[int, bytes, Any]:
    hdrs = {k: [v] for k, v in (headers or {}).items()}
    response = await pumped(stub, stub.request(method, url, headers=hdrs))
    body = await pumped(stub, response.content())
    return response.code, body, response.headers


class InfoTests(unittest.TestCase):
    def test_document_lists_only_supported_features(self) -> None:
        """/info announces the core limits, SLO, bulk delete, the Pithos
        block parameters, crossdomain and healthcheck, and the features
        it is given (the middleware filters), nothing else."""
        info = swift.info_document({"tempurl": {"methods": ["GET"]}})
        self.assertEqual(set(info), {"swift", "slo", "bulk_delete", "pithos", "crossdomain",
                                     "healthcheck", "tempurl"})
        self.assertEqual(info["swift"]["max_meta_count"], 32)
        self.assertEqual(info["swift"]["max_object_name_length"], 1024)
        self.assertEqual(info["swift"]["container_listing_limit"], 10000)
        self.assertEqual(info["slo"]["min_segment_size"], 1)
        self.assertEqual(info["bulk_delete"]["max_deletes_per_request"], 10000)
        self.assertEqual(info["pithos"], {"block_size": 4194304, "block_hash": "sha256"})
        json.dumps(info)  # serialisable as is

    async def test_get_and_head(self) -> None:
        """GET /info answers the document as JSON; HEAD the same headers
        without a body; another path below it is 404 and POST is 405."""
        root = Root()
        root.mount("info", swift.InfoResource())
        stub = StubTreq(root)
        code, body, headers = await get(stub, "http://x/info")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body), swift.info_document())
        self.assertIn(b"application/json", headers.getRawHeaders(b"content-type")[0])
        code, body, _ = await get(stub, "http://x/info", method="HEAD")
        self.assertEqual((code, body), (200, b""))
        code, _, _ = await get(stub, "http://x/info/more")
        self.assertEqual(code, 404)
        code, _, _ = await get(stub, "http://x/info", method="POST")
        self.assertEqual(code, 405)


class AuthV1Tests(unittest.TestCase):
    def setUp(self) -> None:
        self.auth = StubAuthenticator()
        expires = datetime.datetime.fromtimestamp(NOW + 3600, datetime.UTC)
        self.auth.tokens["tok-alice"] = Principal(user=UUID, email="Alice@Example.org",
                                                  expires_at=expires)
        self.auth.tokens["tok-svc"] = Principal(component="cyclades")
        root = Root()
        root.mount("auth", swift.AuthV1Resource(self.auth, "https://cloud.test/",
                                                clock=lambda: NOW))
        self.stub = StubTreq(root)

    async def test_uuid_and_token(self) -> None:
        """The user's uuid and token give the storage URL of their account
        and the token back, with its remaining lifetime."""
        code, _, headers = await get(self.stub, "http://x/auth/v1.0", {
            "X-Auth-User": UUID, "X-Auth-Key": "tok-alice"})
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("x-storage-url"),
                         [f"https://cloud.test/object-store/v1/{UUID}"])
        self.assertEqual(headers.getRawHeaders("x-auth-token"), ["tok-alice"])
        self.assertEqual(headers.getRawHeaders("x-storage-token"), ["tok-alice"])
        self.assertEqual(headers.getRawHeaders("x-auth-token-expires"), ["3600"])

    async def test_email_and_storage_headers(self) -> None:
        """The email (any case) works as the user, and the X-Storage-User/
        X-Storage-Pass spelling and a trailing slash are accepted."""
        code, _, headers = await get(self.stub, "http://x/auth/v1.0/", {
            "X-Storage-User": "alice@example.ORG", "X-Storage-Pass": "tok-alice"})
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders("x-auth-token"), ["tok-alice"])

    async def test_refusals(self) -> None:
        """Another user's name, an unknown token, a service token or missing
        headers are 401 with no storage URL."""
        for hdrs in ({"X-Auth-User": OTHER, "X-Auth-Key": "tok-alice"},
                     {"X-Auth-User": UUID, "X-Auth-Key": "nope"},
                     {"X-Auth-User": "cyclades", "X-Auth-Key": "tok-svc"},
                     {"X-Auth-User": UUID},
                     {}):
            code, body, headers = await get(self.stub, "http://x/auth/v1.0", hdrs)
            self.assertEqual(code, 401, hdrs)
            self.assertIsNone(headers.getRawHeaders("x-storage-url"))
            self.assertIn("unauthorized", json.loads(body))

    async def test_other_paths(self) -> None:
        """Only v1.0 is served below /auth."""
        code, _, _ = await get(self.stub, "http://x/auth/v2.0", {
            "X-Auth-User": UUID, "X-Auth-Key": "tok-alice"})
        self.assertEqual(code, 404)


class ContainerACLTests(unittest.TestCase):
    def test_users_and_groups(self) -> None:
        """Bare uuids are users, account:user pairs naming one user are
        that user, other pairs are Pithos groups; spaces and case go,
        duplicates too."""
        p = swift.acl_to_permissions(
            f" {UUID.upper()} , {OTHER}:{OTHER},*:{OTHER}", f"{UUID}:friends,{UUID}:*")
        self.assertEqual(p, Permissions(read=(UUID, OTHER), write=(f"{UUID}:friends", UUID)))

    def test_public_read(self) -> None:
        """.r:* (any referrer) grants everyone, callers without a token
        too (ANYONE); *:* every authenticated user; .rlistings is
        accepted; ANYONE, else *, absorbs the rest."""
        self.assertEqual(swift.acl_to_permissions(f".r:*,.rlistings,{UUID}", None),
                         Permissions(read=(ANYONE,)))
        self.assertEqual(swift.acl_to_permissions(f"*:*,{UUID}", None),
                         Permissions(read=("*",)))
        self.assertEqual(swift.acl_to_permissions("*:*,.r:*", None),
                         Permissions(read=(ANYONE,)))
        self.assertEqual(swift.acl_to_permissions(None, f"{UUID},*:*"),
                         Permissions(write=("*",)))
        self.assertEqual(swift.acl_to_permissions("", ""), Permissions())
        self.assertEqual(swift.acl_to_permissions(None, None), Permissions())

    def test_unsupported(self) -> None:
        """Referrer restrictions, referrer or listing grants for writing,
        unknown dotted elements and half pairs are 400."""
        for read, write in ((".r:example.com", None), (".r:-bad.example", None),
                            (None, ".r:*"), (None, ".rlistings"), (".foo", None),
                            (f"{UUID}:", None), (None, ":x")):
            with self.assertRaises(errors.BadRequest, msg=(read, write)):
                swift.acl_to_permissions(read, write)

    def test_round_trip(self) -> None:
        """Sharing renders as ACL headers that parse back to it."""
        for p in (Permissions(read=(UUID, f"{OTHER}:team"), write=(OTHER,)),
                  Permissions(read=("*",), write=("*",)),
                  Permissions(read=(ANYONE,), write=("*",)),
                  Permissions()):
            read, write = swift.permissions_to_acl(p)
            self.assertEqual(swift.acl_to_permissions(read, write), p)
        self.assertEqual(swift.permissions_to_acl(Permissions(read=(ANYONE,))),
                         (".r:*,.rlistings", ""))
        self.assertEqual(swift.permissions_to_acl(Permissions(read=("*",))), ("*:*", ""))


class AccountACLTests(unittest.TestCase):
    def test_parse(self) -> None:
        """read-only grants read, read-write grants write; an empty value or
        {} removes sharing."""
        p = swift.account_acl_to_permissions(json.dumps(
            {"read-only": [UUID, "*:" + OTHER], "read-write": [f"{UUID}:team"], "admin": []}))
        self.assertEqual(p, Permissions(read=(UUID, OTHER), write=(f"{UUID}:team",)))
        self.assertEqual(swift.account_acl_to_permissions(""), Permissions())
        self.assertEqual(swift.account_acl_to_permissions("{}"), Permissions())

    def test_rejections(self) -> None:
        """Not JSON, not an object, an unknown key, a non-list, a non-string
        member, dotted elements and admin grants are 400."""
        for value in ("nope", "[]", '{"owner": []}', '{"read-only": "x"}',
                      '{"read-only": [1]}', '{"read-only": [".r:*"]}',
                      json.dumps({"admin": [UUID]})):
            with self.assertRaises(errors.BadRequest, msg=value):
                swift.account_acl_to_permissions(value)

    def test_render(self) -> None:
        """Writers are read-write, other readers read-only, * is *:*; no
        sharing is no header; the rendering parses back."""
        p = Permissions(read=(UUID, OTHER, "x:y"), write=(OTHER,))
        value = swift.permissions_to_account_acl(p)
        self.assertEqual(json.loads(value), {"read-only": [UUID, "x:y"], "read-write": [OTHER]})
        self.assertEqual(swift.account_acl_to_permissions(value),
                         Permissions(read=(UUID, "x:y"), write=(OTHER,)))
        self.assertEqual(swift.permissions_to_account_acl(Permissions()), "")
        self.assertEqual(json.loads(swift.permissions_to_account_acl(
            Permissions(read=("*",), write=("*",)))), {"read-write": ["*:*"]})


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def manifest(*segments: tuple[str, bytes | None, int | None]) -> bytes:
    """An SLO upload body: (path, data whose MD5 is the etag, size)."""
    return json.dumps([{"path": p, "etag": None if d is None else md5(d), "size_bytes": n}
                       for p, d, n in segments]).encode()


class LargeObjectTests(unittest.TestCase):
    def setUp(self) -> defer.Deferred[None]:
        self.s = Store(self)
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self) -> None:
        await self.s.container("c")
        await self.s.container("c_segments")
        self.parts = [b"a" * 20, b"b" * 16, b"c" * 3]
        self.seg = []
        for i, part in enumerate(self.parts):
            self.seg.append(await self.s.put("c_segments", f"big/{i:08d}", part))
        self.body = manifest(*((f"/c_segments/big/{i:08d}", p, len(p))
                               for i, p in enumerate(self.parts)))

    async def data_of(self, segments: list[ObjectInfo]) -> bytes:
        out = b""
        for seg in segments:
            out += b"".join([await self.s.blocks.get(h) for h in seg.hashes or ()])[:seg.size]
        return out

    async def test_put_slo(self) -> None:
        """An SLO manifest records its segments; it reports their total size
        and Swift's ETag (MD5 of the segment MD5s) in helper meta, keeps the
        user meta, and reads as the concatenation of its segments."""
        info = await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "big",
                                   self.body, "video/mp4", {"X-Object-Meta-Kind": "film"})
        got = await self.s.backend.object(ALICE, ALICE, "c", "big")
        self.assertTrue(swift.is_slo(got))
        self.assertEqual(got.type, "video/mp4")
        self.assertEqual(got.meta.get("X-Object-Meta-Kind"), "film")
        self.assertEqual(swift.slo_size(got), 39)
        etag = md5("".join(md5(p) for p in self.parts).encode())
        self.assertEqual(swift.slo_etag(got), f'"{etag}"')
        self.assertEqual(got.serial, info.serial)
        listed = await swift.get_slo_manifest(self.s.backend, self.s.blocks, ALICE, got)
        self.assertEqual([(e["name"], e["hash"], e["bytes"], e["content_type"]) for e in listed],
                         [(f"/c_segments/big/{i:08d}", md5(p), len(p), "text/plain")
                          for i, p in enumerate(self.parts)])
        segments = await swift.segments_for(self.s.backend, self.s.blocks, ALICE, got)
        self.assertEqual(await self.data_of(segments), b"".join(self.parts))

    async def test_etag_and_size_are_optional(self) -> None:
        """Null etag and size_bytes are filled in from the segments; a path
        without its leading slash is accepted."""
        body = json.dumps([{"path": "c_segments/big/00000000", "etag": None, "size_bytes": None},
                           {"path": "/c_segments/big/00000002"}]).encode()
        await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "big", body,
                            "x/y", {})
        got = await self.s.backend.object(ALICE, ALICE, "c", "big")
        self.assertEqual(swift.slo_size(got), 23)

    async def test_segment_problems(self) -> None:
        """Wrong etags and sizes, missing segments, empty segments and the
        manifest itself are all reported at once as 400; nothing is stored."""
        await self.s.put("c_segments", "empty", b"")
        body = json.dumps([
            {"path": "/c_segments/big/00000000", "etag": "0" * 32, "size_bytes": 20},
            {"path": "/c_segments/big/00000001", "etag": None, "size_bytes": 99},
            {"path": "/c_segments/missing", "etag": None, "size_bytes": None},
            {"path": "/c_segments/empty", "etag": None, "size_bytes": None},
            {"path": "/c/big", "etag": None, "size_bytes": None}]).encode()
        with self.assertRaises(errors.BadRequest) as e:
            await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "big", body,
                                "x/y", {})
        self.assertEqual(e.exception.message.splitlines(), [
            "Errors:",
            "/c_segments/big/00000000, Etag Mismatch",
            "/c_segments/big/00000001, Size Mismatch",
            "/c_segments/missing, 404 Not Found",
            "/c_segments/empty, Too small; each segment must be at least 1 byte.",
            "/c/big, Manifest may not reference itself"])
        with self.assertRaises(errors.NotFound):
            await self.s.backend.object(ALICE, ALICE, "c", "big")

    async def test_malformed_manifests(self) -> None:
        """Bodies that are not a non-empty JSON list of well-formed entries
        are 400; too many segments are 413."""
        for body in (b"nope", b"{}", b"[]", b'[1]', b'[{"path": "/c"}]',
                     b'[{"path": "/c/o", "range": "1-2"}]',
                     b'[{"path": "/c/o", "size_bytes": -1}]',
                     b'[{"path": "/c/o", "etag": 5}]'):
            with self.assertRaises(errors.BadRequest, msg=body):
                await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "m",
                                    body, "x/y", {})
        body = json.dumps([{"path": "/c/o"}] * (swift.MAX_MANIFEST_SEGMENTS + 1)).encode()
        with self.assertRaises(errors.OverLimit):
            await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "m", body,
                                "x/y", {})

    async def test_changed_segment(self) -> None:
        """Reading an SLO whose segment changed or vanished is 409."""
        await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "big", self.body,
                            "x/y", {})
        info = await self.s.backend.object(ALICE, ALICE, "c", "big")
        await self.s.put("c_segments", "big/00000001", b"B" * 16)
        with self.assertRaises(errors.Conflict):
            await swift.segments_for(self.s.backend, self.s.blocks, ALICE, info)
        await self.s.backend.delete_object(ALICE, ALICE, "c_segments", "big/00000001")
        with self.assertRaises(errors.Conflict):
            await swift.segments_for(self.s.backend, self.s.blocks, ALICE, info)

    async def test_nested_slo(self) -> None:
        """An SLO can be a segment of another: it counts by its own size and
        ETag and is expanded when read."""
        inner = await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "inner",
                                    self.body, "x/y", {})
        body = json.dumps([
            {"path": "/c/inner", "etag": inner.meta[swift.SLO_ETAG], "size_bytes": 39},
            {"path": "/c_segments/big/00000002", "etag": md5(b"ccc"), "size_bytes": 3},
        ]).encode()
        outer = await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "outer",
                                    body, "x/y", {})
        self.assertEqual(swift.slo_size(outer), 42)
        listed = await swift.get_slo_manifest(self.s.backend, self.s.blocks, ALICE, outer)
        self.assertTrue(listed[0]["sub_slo"])
        segments = await swift.segments_for(self.s.backend, self.s.blocks, ALICE, outer)
        self.assertEqual(await self.data_of(segments), b"".join(self.parts) + b"ccc")

    async def test_delete_slo(self) -> None:
        """Deleting an SLO deletes its segments, then the manifest, and
        summarises what happened; other objects stay."""
        await self.s.put("c_segments", "big/other", b"keep")
        await swift.put_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "big", self.body,
                            "x/y", {})
        await self.s.backend.delete_object(ALICE, ALICE, "c_segments", "big/00000002")
        summary = await swift.delete_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "big")
        self.assertEqual(summary, {"Number Deleted": 3, "Number Not Found": 1, "Errors": [],
                                   "Response Status": "200 OK", "Response Body": ""})
        listing = await self.s.backend.objects(ALICE, ALICE, "c_segments")
        self.assertEqual([o.name for o in listing], ["big/other"])
        with self.assertRaises(errors.NotFound):
            await self.s.backend.object(ALICE, ALICE, "c", "big")

    async def test_delete_slo_refusals(self) -> None:
        """A plain object is not deleted as an SLO (400 in the summary); a
        missing one is counted as not found."""
        summary = await swift.delete_slo(self.s.backend, self.s.blocks, ALICE, ALICE,
                                         "c_segments", "big/00000000")
        self.assertEqual(summary["Response Status"], "400 Bad Request")
        self.assertEqual(summary["Errors"], [["/c_segments/big/00000000", "Not an SLO manifest"]])
        await self.s.backend.object(ALICE, ALICE, "c_segments", "big/00000000")
        summary = await swift.delete_slo(self.s.backend, self.s.blocks, ALICE, ALICE, "c", "no")
        self.assertEqual((summary["Number Not Found"], summary["Number Deleted"]), (1, 0))

    async def test_dlo(self) -> None:
        """A DLO reads as the objects under its prefix in name order (not
        itself); its ETag is the MD5 of their MD5s; plain objects have no
        segments; a missing container gives none."""
        dlo = await self.s.put("c_segments", "big/", b"", meta={"X-Object-Manifest":
                                                               "c_segments/big/"})
        segments = await swift.segments_for(self.s.backend, self.s.blocks, ALICE, dlo)
        self.assertEqual([s.name for s in segments], [f"big/{i:08d}" for i in range(3)])
        self.assertEqual(await self.data_of(segments), b"".join(self.parts))
        self.assertEqual(swift.manifest_etag(segments),
                         '"' + md5("".join(md5(p) for p in self.parts).encode()) + '"')
        self.assertIsNone(await swift.segments_for(self.s.backend, self.s.blocks, ALICE,
                                                   self.seg[0]))
        nowhere = await self.s.put("c", "nowhere", b"", meta={"X-Object-Manifest": "gone/x"})
        self.assertEqual(await swift.segments_for(self.s.backend, self.s.blocks, ALICE,
                                                  nowhere), [])


class BulkDeleteTests(unittest.TestCase):
    def setUp(self) -> defer.Deferred[None]:
        self.s = Store(self)
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self) -> None:
        for c in ("c", "d", "empty"):
            await self.s.container(c)
        for name in ("a", "b c", "ü/x"):
            await self.s.put("c", name, b"data")
        await self.s.put("d", "keep", b"data")

    async def test_objects_and_containers(self) -> None:
        """URL-encoded object and container paths are deleted in order;
        missing ones are counted; a container that is not empty is an
        error (409) that makes the status 400."""
        body = "\n".join(["/c/a", "/c/b%20c", quote("/c/ü/x"), "/c/missing", "",
                          "/c", "/empty", "/d", "/nocontainer"]).encode()
        summary = await swift.bulk_delete(self.s.backend, ALICE, ALICE, body)
        self.assertEqual(summary["Number Deleted"], 5)
        self.assertEqual(summary["Number Not Found"], 2)
        self.assertEqual(summary["Errors"], [["/d", "409 Conflict"]])
        self.assertEqual(summary["Response Status"], "400 Bad Request")
        names = [c.name for c in await self.s.backend.containers(ALICE, ALICE)]
        self.assertEqual(names, ["d"])

    async def test_too_many(self) -> None:
        """More paths than allowed deletes nothing (413 in the summary)."""
        body = b"\n".join([b"/c/a"] * (swift.MAX_DELETES_PER_REQUEST + 1))
        summary = await swift.bulk_delete(self.s.backend, ALICE, ALICE, body)
        self.assertEqual(summary["Response Status"], "413 Request Entity Too Large")
        self.assertEqual(summary["Number Deleted"], 0)
        await self.s.backend.object(ALICE, ALICE, "c", "a")

    async def test_others_objects(self) -> None:
        """A stranger is denied another user's objects (Swift's 403 in the
        errors), whether they exist or not."""
        summary = await swift.bulk_delete(self.s.backend, BOB, ALICE, b"/c/a\n/c/absent\n")
        self.assertEqual((summary["Number Deleted"], summary["Number Not Found"]), (0, 0))
        self.assertEqual([status for _, status in summary["Errors"]], ["403 Forbidden"] * 2)
        await self.s.backend.object(ALICE, ALICE, "c", "a")


class SwiftClientTests(unittest.TestCase):
    """The ``swift`` command of python-swiftclient against a served store,
    authenticating with /auth/v1.0 (uuid + token)."""

    timeout = 240

    def setUp(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self) -> None:
        self.stack = await object_store_stack(self)
        self.uuid, self.token = await self.stack.user("alice@example.org")
        self.dir = FilePath(self.mktemp())
        self.dir.makedirs()
        self.data = os.urandom(350_000)
        self.dir.child("big.bin").setContent(self.data)

    async def attempt(self, *args: str, user: tuple[str, str] | None = None,
                  ) -> tuple[int, str]:
        """Run ``swift <args>`` in ``self.dir`` as ``user`` (uuid, token;
        default Alice): ``(exit code, output)``."""
        uuid, token = user or (self.uuid, self.token)
        # "--key=" form: a token may start with "-".
        argv = ("-m", "swiftclient.shell", f"--auth={self.stack.url}/auth/v1.0",
                f"--user={uuid}", f"--key={token}", *args)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": self.dir.path,
               "LANG": "C.UTF-8"}
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, argv, env=env, path=self.dir.path)
        return code, out.decode() + err.decode()

    async def swift(self, *args: str, user: tuple[str, str] | None = None) -> str:
        """``attempt``, failing the test on a non-zero exit; the output."""
        code, out = await self.attempt(*args, user=user)
        self.assertEqual(code, 0, f"swift {' '.join(args)}:\n{out}")
        return out

    async def names(self, container: str) -> list[str]:
        out = await self.swift("list", container)
        return out.split()

    async def test_capabilities(self) -> None:
        """'swift capabilities' shows what /info announces."""
        out = await self.swift("capabilities", "--json")
        self.assertEqual(json.loads(out), self.stack.api.info())

    async def test_slo_upload_download_delete(self) -> None:
        """A file uploaded with --use-slo in segments is an SLO whose stat
        shows the whole size, downloads intact, and deletes with its
        segments."""
        await self.swift("upload", "--use-slo", "--segment-size", "100000", "c", "big.bin")
        segments = await self.names("c_segments")
        self.assertEqual(len(segments), 4)
        stat = await self.swift("stat", "c", "big.bin")
        self.assertRegex(stat, r"Content Length: 350000\b")
        self.assertIn("X-Static-Large-Object: True", stat)
        await self.swift("download", "c", "big.bin", "-o", "copy.bin")
        self.assertEqual(self.dir.child("copy.bin").getContent(), self.data)
        await self.swift("delete", "c", "big.bin")
        self.assertEqual(await self.names("c"), [])
        self.assertEqual(await self.names("c_segments"), [])

    async def test_dlo_upload_download_delete(self) -> None:
        """With --use-dlo the segments are joined by an X-Object-Manifest
        DLO: same size, same bytes; deleting removes the segments too."""
        await self.swift("upload", "--use-dlo", "--segment-size", "100000", "c", "big.bin")
        stat = await self.swift("stat", "c", "big.bin")
        self.assertRegex(stat, r"Content Length: 350000\b")
        self.assertRegex(stat, r"Manifest: c_segments/big\.bin/")
        await self.swift("download", "c", "big.bin", "-o", "copy.bin")
        self.assertEqual(self.dir.child("copy.bin").getContent(), self.data)
        await self.swift("delete", "c", "big.bin")
        self.assertEqual(await self.names("c_segments"), [])

    async def test_unchanged_upload_is_skipped(self) -> None:
        """--skip-identical recognises an unchanged SLO by its segment MD5s
        (no new version), and a changed file is uploaded again."""
        args = ("upload", "--use-slo", "--segment-size", "100000", "--skip-identical",
                "c", "big.bin")
        await self.swift(*args)
        version = re.search(r"X-Object-Version: (\d+)", await self.swift("stat", "c", "big.bin"))
        await self.swift(*args)
        again = re.search(r"X-Object-Version: (\d+)", await self.swift("stat", "c", "big.bin"))
        assert version is not None and again is not None
        self.assertEqual(version.group(1), again.group(1))
        self.dir.child("big.bin").setContent(self.data[:-1] + b"!")
        await self.swift(*args)
        changed = re.search(r"X-Object-Version: (\d+)", await self.swift("stat", "c", "big.bin"))
        assert changed is not None
        self.assertNotEqual(changed.group(1), version.group(1))

    async def test_bulk_delete(self) -> None:
        """Deleting a container of many objects goes through bulk delete
        and leaves nothing."""
        for i in range(30):
            self.dir.child(f"f{i:02d}.txt").setContent(b"x%d" % i)
        files = [f"f{i:02d}.txt" for i in range(30)]
        await self.swift("upload", "c", *files)
        self.assertEqual(await self.names("c"), files)
        bulk: list[int] = []
        original = swift.bulk_delete

        async def counting(*args: Any) -> dict[str, Any]:
            bulk.append(1)
            return await original(*args)

        self.patch(swift, "bulk_delete", counting)
        await self.swift("delete", "c")
        self.assertTrue(bulk)
        out = await self.swift("list")
        self.assertNotIn("c", out.split())

    async def test_container_acl(self) -> None:
        """'swift post -r' shares a container: the reader lists and downloads
        through the owner's storage URL, sees the ACL as the owner set it
        in Swift terms, and loses access when it is cleared."""
        bob = await self.stack.user("bob@example.org")
        self.dir.child("f.txt").setContent(b"shared bytes")
        await self.swift("upload", "c", "f.txt")
        as_bob = ("--os-storage-url", self.stack.account_url(self.uuid))
        code, _ = await self.attempt(*as_bob, "list", "c", user=bob)
        self.assertNotEqual(code, 0)
        await self.swift("post", "-r", bob[0], "c")
        self.assertRegex(await self.swift("stat", "c"), rf"Read ACL: {bob[0]}\b")
        self.assertEqual((await self.swift(*as_bob, "list", "c", user=bob)).split(), ["f.txt"])
        await self.swift(*as_bob, "download", "c", "f.txt", "-o", "bob.txt", user=bob)
        self.assertEqual(self.dir.child("bob.txt").getContent(), b"shared bytes")
        code, _ = await self.attempt(*as_bob, "upload", "c", "f.txt", user=bob)
        self.assertNotEqual(code, 0)
        await self.swift("post", "-r", "", "c")
        code, _ = await self.attempt(*as_bob, "list", "c", user=bob)
        self.assertNotEqual(code, 0)
