"""Partial data updates (reference 2.9): Content-Range parsing, and writes,
appends, extensions, copies from other objects and truncation over a real
backend on PostgreSQL with a real block store (small blocks, so that
ranges cross block boundaries)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from snfd import errors
from snfd.pithos.backend import Backend
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.hashmap import EMPTY_HASH, hashmap_of
from snfd.pithos.model import ObjectInfo
from snfd.pithos.updates import parse_content_range, partial_update
from snfd.plugins.pithos import PithosPlugin
from snfd.testing.postgres import fresh_database, started_pool

ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
BS = 16
OCTET = "application/octet-stream"


class Store:
    """A real ``Backend`` on a fresh database and a ``FileBlockStore`` of
    ``block_size`` bytes, with helpers to write and read whole objects."""

    def __init__(self, testcase: unittest.TestCase, block_size: int = BS):
        dsn = fresh_database(testcase, schemas=(PithosPlugin.schema,))
        db = started_pool(testcase, dsn)
        self.blocks = FileBlockStore(testcase.mktemp(), reactor, block_size=block_size)
        self.backend = Backend(db, self.blocks, None, reactor)
        self.block_size = block_size

    async def container(self, name: str, user: str = ALICE) -> None:
        await self.backend.put_container(user, user, name, {}, {})

    async def put(self, container: str, name: str, data: bytes, user: str = ALICE,
                  account: str | None = None, content_type: str = "text/plain",
                  meta: dict[str, str] | None = None) -> ObjectInfo:
        bs = self.block_size
        hashes = (await self.blocks.put([data[i:i + bs] for i in range(0, len(data), bs)])
                  if data else [EMPTY_HASH])
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return await self.backend.put_object(
            user, account or user, container, name, size=len(data), hashes=hashes,
            content_type=content_type, checksum=md5, meta=meta or {})

    async def read(self, container: str, name: str, user: str = ALICE,
                   account: str | None = None) -> tuple[ObjectInfo, bytes]:
        info = await self.backend.object(user, account or user, container, name)
        data = b"".join([await self.blocks.get(h) for h in info.hashes or ()])
        return info, data[:info.size]


class ContentRangeTests(unittest.TestCase):
    def test_forms(self) -> None:
        """first-last, an open end, a total, and 'bytes */*' (append)."""
        self.assertEqual(parse_content_range("bytes 0-9/*"), (0, 10, None))
        self.assertEqual(parse_content_range("bytes 5-/*"), (5, None, None))
        self.assertEqual(parse_content_range("bytes 2-3/10"), (2, 2, 10))
        self.assertEqual(parse_content_range(" bytes */* "), (None, None, None))

    def test_missing_is_400(self) -> None:
        """No header at all is a bad request, not a range error."""
        for value in (None, "", "  "):
            with self.assertRaises(errors.BadRequest):
                parse_content_range(value)

    def test_invalid_is_416(self) -> None:
        """Other syntax, an end before the start, or a range not below the
        total are unsatisfiable."""
        for value in ("bytes=0-1/*", "bytes 0-1", "bytes -5/*", "bytes 5-4/*",
                      "bytes 10-12/10", "bytes 0-10/10", "bytes */10", "items 0-1/*",
                      "bytes 0-1/x"):
            with self.assertRaises(errors.RangeNotSatisfiable, msg=value):
                parse_content_range(value)


class RequestCheckTests(unittest.TestCase):
    """Checks made before the object is looked up (no backend needed)."""

    async def update(self, **kw: Any) -> ObjectInfo:
        args: dict[str, Any] = {"content_range": "bytes 0-1/*", "data": b"ab",
                                "source": None, "object_bytes": None,
                                "content_length": 2, "content_type": OCTET}
        args.update(kw)
        return await partial_update(None, None, ALICE, ALICE, "c", "o", **args)

    async def test_length_required(self) -> None:
        """A body without Content-Length that was not chunked is 411; so is
        an update with neither a body nor a source."""
        with self.assertRaises(errors.LengthRequired):
            await self.update(content_length=None)
        with self.assertRaises(errors.LengthRequired):
            await self.update(data=None, content_length=None)

    async def test_bad_requests(self) -> None:
        """Missing Content-Range, negative X-Object-Bytes, a body that is not
        octet-stream, or shorter than its Content-Length, are 400."""
        for kw in ({"content_range": None}, {"object_bytes": -1},
                   {"content_type": "text/plain"}, {"content_length": 3}):
            with self.assertRaises(errors.BadRequest, msg=kw):
                await self.update(**kw)

    async def test_invalid_range(self) -> None:
        """A malformed range is 416 before anything is read."""
        with self.assertRaises(errors.RangeNotSatisfiable):
            await self.update(content_range="bytes 3-1/*")


class PartialUpdateTests(unittest.TestCase):
    def setUp(self) -> defer.Deferred[None]:
        self.s = Store(self)
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self) -> None:
        await self.s.container("c")
        self.base = bytes(range(1, 41))  # 40 bytes: blocks of 16, 16, 8
        self.orig = await self.s.put("c", "o", self.base, content_type="text/x-base",
                                     meta={"X-Object-Meta-Color": "blue"})

    async def update(self, content_range: str | None, data: bytes | None = None,
                     source: tuple[str, str, str, int | None] | None = None,
                     object_bytes: int | None = None, name: str = "o",
                     content_length: int | None = -1, user: str = ALICE,
                     chunked: bool = False) -> ObjectInfo:
        if content_length == -1:
            content_length = None if data is None else len(data)
        return await partial_update(
            self.s.backend, self.s.blocks, user, ALICE, "c", name,
            content_range=content_range, data=data, source=source,
            object_bytes=object_bytes, content_length=content_length,
            content_type=OCTET if data is not None else None, chunked=chunked)

    async def assertContent(self, expected: bytes, name: str = "o") -> ObjectInfo:
        info, data = await self.s.read("c", name)
        self.assertEqual(data, expected)
        self.assertEqual(info.size, len(expected))
        self.assertEqual(info.hashes, hashmap_of(expected, BS))
        return info

    async def test_overwrite_across_blocks(self) -> None:
        """A range inside the object replaces exactly those bytes as a new
        version that keeps the content type and metadata."""
        info = await self.update("bytes 10-21/*", b"X" * 12)
        expected = self.base[:10] + b"X" * 12 + self.base[22:]
        got = await self.assertContent(expected)
        self.assertEqual(info.serial, got.serial)
        self.assertGreater(info.serial, self.orig.serial)
        self.assertEqual(got.type, "text/x-base")
        self.assertEqual(got.meta.get("X-Object-Meta-Color"), "blue")
        self.assertEqual(got.hashes[2], self.orig.hashes[2])  # untouched block kept

    async def test_total_must_be_the_size(self) -> None:
        """With a total, the range must stay inside an object of that size."""
        await self.update("bytes 0-3/40", b"abcd")
        await self.assertContent(b"abcd" + self.base[4:])
        for cr, data in (("bytes 0-3/41", b"abcd"), ("bytes 38-41/42", b"abcd")):
            with self.assertRaises(errors.RangeNotSatisfiable, msg=cr):
                await self.update(cr, data)
        await self.assertContent(b"abcd" + self.base[4:])

    async def test_append(self) -> None:
        """'bytes */*' appends the body; an open range at the end does too,
        and a chunked body needs no Content-Length."""
        await self.update("bytes */*", b"tail")
        await self.update("bytes 44-/*", b"+more", content_length=None, chunked=True)
        await self.assertContent(self.base + b"tail+more")

    async def test_extend_past_the_end(self) -> None:
        """A range that starts inside and ends past the end extends the
        object; one starting past the end is 416."""
        await self.update("bytes 36-51/*", b"Z" * 16)
        await self.assertContent(self.base[:36] + b"Z" * 16)
        with self.assertRaises(errors.RangeNotSatisfiable):
            await self.update("bytes 53-53/*", b"!")

    async def test_length_mismatch(self) -> None:
        """A body whose length differs from the range's is 400 and changes
        nothing."""
        with self.assertRaises(errors.BadRequest):
            await self.update("bytes 0-9/*", b"short")
        await self.assertContent(self.base)

    async def test_copy_aligned_reuses_blocks(self) -> None:
        """Data from another object written at a block boundary reuses its
        full blocks by hash; its short tail is patched in."""
        src_data = bytes(range(100, 136))  # 36 bytes: 16, 16, 4
        src = await self.s.put("c", "src", src_data)
        await self.update("bytes 16-/*", source=(ALICE, "c", "src", None))
        info = await self.assertContent(self.base[:16] + src_data)
        self.assertEqual(info.hashes[1:3], src.hashes[0:2])

    async def test_copy_unaligned_and_partial(self) -> None:
        """A source range at an unaligned offset, limited by the range's
        end, is copied byte for byte from the source's start."""
        src_data = bytes(range(100, 136))
        await self.s.put("c", "src", src_data)
        await self.update("bytes 5-24/*", source=(ALICE, "c", "src", None))
        await self.assertContent(self.base[:5] + src_data[:20] + self.base[25:])

    async def test_copy_old_version(self) -> None:
        """X-Source-Version selects the source's data at that version."""
        old = await self.s.put("c", "src", b"old-data")
        await self.s.put("c", "src", b"new-data")
        await self.update("bytes 0-/*", source=(ALICE, "c", "src", old.serial))
        await self.assertContent(b"old-data" + self.base[8:])

    async def test_source_errors(self) -> None:
        """A source shorter than the range is 400; a missing source or
        target is 404."""
        await self.s.put("c", "src", b"four")
        with self.assertRaises(errors.BadRequest):
            await self.update("bytes 0-9/*", source=(ALICE, "c", "src", None))
        with self.assertRaises(errors.NotFound):
            await self.update("bytes 0-9/*", source=(ALICE, "c", "nope", None))
        with self.assertRaises(errors.NotFound):
            await self.update("bytes 0-1/*", b"ab", name="nope")
        await self.assertContent(self.base)

    async def test_truncate(self) -> None:
        """X-Object-Bytes cuts the result; the reference's truncate-to-zero
        (the object as its own source, 'bytes 0-0/*', 0 bytes) empties it."""
        await self.update("bytes 0-1/*", b"AB", object_bytes=20)
        await self.assertContent(b"AB" + self.base[2:20])
        await self.update("bytes */*", b"", object_bytes=25)  # longer: no effect
        await self.assertContent(b"AB" + self.base[2:20])
        await self.update("bytes 0-0/*", source=(ALICE, "c", "o", None), object_bytes=0)
        info = await self.assertContent(b"")
        self.assertEqual(info.hashes, [EMPTY_HASH])

    async def test_write_into_empty_object(self) -> None:
        """An empty object grows from an append."""
        await self.s.put("c", "e", b"")
        await self.update("bytes */*", b"hello", name="e")
        await self.assertContent(b"hello", name="e")

    async def test_others_need_write_permission(self) -> None:
        """Another user without any sharing is denied (403, whether the
        object exists or not)."""
        with self.assertRaises(errors.Forbidden):
            await self.update("bytes 0-1/*", b"ab", user=BOB)
        await self.assertContent(self.base)

    async def test_concurrent_change_is_retried(self) -> None:
        """When another writer changes the object between the read and the
        write, the update starts over and both changes survive."""
        backend = self.s.backend
        s = self.s
        calls: list[int] = []

        class Racing:
            def __getattr__(self, name: str) -> Any:
                return getattr(backend, name)

            async def put_object(self, *args: Any, **kw: Any) -> ObjectInfo:
                if not calls:
                    calls.append(1)
                    data = (await s.read("c", "o"))[1]
                    await s.put("c", "o", data + b"racer", content_type="text/x-base")
                return await backend.put_object(*args, **kw)

        await partial_update(Racing(), s.blocks, ALICE, ALICE, "c", "o",
                             content_range="bytes 0-1/*", data=b"AB", source=None,
                             object_bytes=None, content_length=2, content_type=OCTET)
        await self.assertContent(b"AB" + self.base[2:] + b"racer")

    async def test_random_updates_match_a_byte_model(self) -> None:
        """Random writes, appends, copies and truncations give the bytes a
        simple in-memory model predicts, and canonical hashmaps."""
        rnd = random.Random(4)
        model = bytearray(self.base)
        await self.s.put("c", "src", bytes(range(200, 250)))
        src = bytes(range(200, 250))
        for _ in range(25):
            size = len(model)
            at = rnd.randrange(0, size + 1)
            n = rnd.choice([1, 3, 15, 16, 17, 33])
            cut = rnd.choice([None, None, None, rnd.randrange(0, size + n + 1)])
            if rnd.random() < 0.5:
                data = bytes(rnd.randrange(256) for _ in range(n))
                await self.update(f"bytes {at}-{at + n - 1}/*", data, object_bytes=cut)
            else:
                data = src[:n]
                await self.update(f"bytes {at}-{at + n - 1}/*",
                                  source=(ALICE, "c", "src", None), object_bytes=cut)
            model[at:at + n] = data
            if cut is not None and cut < len(model):
                del model[cut:]
            await self.assertContent(bytes(model))
