"""The object store when its block store's filesystem is full, read-only
or failing (issue 22): uploads are refused with Swift's 507 (full) or a
503 with ``Retry-After`` (read-only, I/O errors), nothing is half-written
or charged, reads go on, the log says so once, and uploads work again
as soon as the filesystem does, without a restart.  Blocks that cannot
be read are a 503 with ``Retry-After`` before a download's first byte and
a dropped connection after it; a block gone is a 503 logged as data loss.

The full and read-only cases run on a real small filesystem: a tmpfs
mounted for the test (root only; skipped otherwise) holding the block
store, filled with a file, then freed, or remounted read-only, then
read-write.  Every mount is unmounted by the test's cleanups.  An I/O
error cannot be had from a tmpfs: those cases fail the block store's
file writes in process, after half a block was written, or its file
reads.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
from typing import Any

from twisted.internet import defer, reactor, task, threads
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.monkey import MonkeyPatcher
from twisted.trial import unittest

from snfd import errors
from snfd.archip import nbd
from snfd.pithos import blocks as block_store
from snfd.pithos import streams
from snfd.pithos.hashmap import BLOCK_SIZE, block_hash, hashmap_of, is_hash
from snfd.pithos.uploads import STREAM_FROM
from snfd.testing.pithos import HTTPReply, http, object_store_stack, raw_http

MOUNT_SIZE = 8 * 1024 * 1024
"""Room for the objects made before the disk is filled, and for a whole
block (4 MiB) once it is freed."""


async def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command in a thread; its completed process (never raises)."""
    result: subprocess.CompletedProcess[str] = await threads.deferToThread(
        subprocess.run, list(argv), capture_output=True, text=True, check=False)
    return result


async def small_filesystem(testcase: unittest.TestCase, size: int = MOUNT_SIZE) -> str:
    """A tmpfs of ``size`` bytes mounted on a new directory, unmounted by
    ``testcase``'s cleanups (whatever the test's outcome); skips the test
    when not root or when mounting is not permitted here."""
    if os.geteuid() != 0:
        raise unittest.SkipTest("mounting a small tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        raise unittest.SkipTest("no mount/umount command")
    where = os.path.abspath(testcase.mktemp())
    os.makedirs(where)
    mounted = await run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700",
                         "snfd-test-blocks", where)
    if mounted.returncode != 0:
        raise unittest.SkipTest(f"mounting a tmpfs is not permitted here:"
                                f" {mounted.stderr.strip() or mounted.returncode}")

    async def unmount() -> None:
        done = await run("umount", where)
        if done.returncode != 0:  # still busy: detach it now, gone once unused
            await run("umount", "-l", where)

    testcase.addCleanup(unmount)
    return where


async def remount(where: str, mode: str) -> None:
    """Remount ``where`` ``ro`` or ``rw``."""
    done = await run("mount", "-o", f"remount,{mode}", where)
    if done.returncode != 0:
        raise AssertionError(f"remount,{mode} {where}: {done.stderr.strip()}")


def _fill_now(where: str) -> str:
    path = os.path.join(where, "filler")
    with open(path, "wb", buffering=0) as f:
        for piece in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\xff" * piece)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    return path


async def fill(where: str) -> str:
    """Fill the filesystem at ``where`` with one file (its path)."""
    path: str = await threads.deferToThread(_fill_now, where)
    if os.statvfs(where).f_bavail != 0:
        raise AssertionError(f"{where} is not full after writing {path}")
    return path


def store_contents(root: str) -> tuple[dict[str, str], list[str]]:
    """The block store at ``root``: each file named as a block with the
    hash of its content, and every other file (temporaries)."""
    named: dict[str, str] = {}
    others: list[str] = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if is_hash(name):
                with open(path, "rb") as f:
                    named[name] = block_hash(f.read())
            else:
                others.append(path)
    return named, others


def archive(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class _StoreLog:
    """What the block store logs (its namespace), formatted; and every
    event logged at error level or above, or with a traceback."""

    def __init__(self, testcase: unittest.TestCase):
        self.events: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self._seen)
        testcase.addCleanup(globalLogPublisher.removeObserver, self._seen)

    def _seen(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "snfd.pithos.blocks":
            self.events.append(event)
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            self.errors.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def error_lines(self) -> list[str]:
        return [formatEvent(e) for e in self.errors]


def _block_path(root: str, name: str) -> str:
    return os.path.join(root, name[0:2], name[2:4], name[4:6], name)


def fail_reads(testcase: unittest.TestCase, store: block_store.FileBlockStore,
               *names: str) -> MonkeyPatcher:
    """Make ``store``'s reads of the blocks ``names`` (all blocks when
    none) fail with ``EIO``; returns the patch, whose ``restore()`` lifts
    the fault (the test's cleanups do it otherwise)."""
    read = store._read_file

    def failing(path: str) -> bytes:
        if not names or os.path.basename(path) in names:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return read(path)

    patch = MonkeyPatcher((store, "_read_file", failing))
    patch.patch()
    testcase.addCleanup(patch.restore)
    return patch


def _get_now(base: str, path: str, token: str) -> tuple[bytes, bytes]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    received = bytearray()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
                  "Connection: close\r\n\r\n".encode())
        try:
            while chunk := s.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return head, body


async def raw_get(base: str, path: str, token: str) -> tuple[bytes, bytes]:
    """``GET path`` over a plain socket read until the server closes or
    resets the connection: the reply's head and the body bytes received."""
    got: tuple[bytes, bytes] = await threads.deferToThread(_get_now, base, path, token)
    return got


class _StoreCase(unittest.TestCase):
    """A served object store with alice, a container ``c`` and two objects
    stored while all was well: ``small`` (buffered upload) and ``big``
    (streamed); ``block_path``: where its blocks go (default: the state
    directory)."""

    timeout = 120
    block_path: str | None = None

    def setUp(self) -> Any:
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self) -> None:
        self.where = await self.blocks_directory()
        config = {"block_path": os.path.join(self.where, "blocks")} if self.where else {}
        self.stack = await object_store_stack(self, pithos_config=config)
        self.root = self.stack.blocks.path
        self.alice, self.token = await self.stack.user("alice@example.org")
        self.log = _StoreLog(self)
        self.assertEqual((await self.call("PUT", "/c")).code, 201)
        self.small = os.urandom(1000)
        self.big = os.urandom(3 * STREAM_FROM)
        for name, data in (("small", self.small), ("big", self.big)):
            r = await self.call("PUT", f"/c/{name}", data)
            self.assertEqual(r.code, 201, r.body)
        self.usage = await self.stack.usage(self.alice)
        self.stored, _ = store_contents(self.root)

    async def blocks_directory(self) -> str | None:
        return None

    async def call(self, method: str, path: str, body: bytes | None = None,
                   chunks: list[bytes] | None = None, **headers: str) -> HTTPReply:
        headers.setdefault("Content-Type", "application/octet-stream")
        return await http(method, self.stack.account_url(self.alice) + path, self.token,
                          headers=headers, body=body, chunks=chunks)

    def assertRefused(self, reply: HTTPReply, code: int, message: str) -> None:
        """A fault in Swift's style: ``code`` with ``message`` as text."""
        self.assertEqual((reply.code, reply.body.decode("utf-8", "replace")),
                         (code, message))
        self.assertTrue(reply.header("Content-Type").startswith("text/plain"))

    async def assertNothingChanged(self, *absent: str) -> None:
        """No new object, no new block file, no temporary file left, the
        blocks intact, the quota not charged, the earlier objects read."""
        for name in absent:
            self.assertEqual((await self.call("HEAD", f"/c/{name}")).code, 404, name)
        named, others = store_contents(self.root)
        self.assertEqual((named, others), (self.stored, []))
        self.assertEqual({k: v for k, v in named.items() if k != v}, {})
        self.assertEqual(await self.stack.usage(self.alice), self.usage)
        for name, data in (("small", self.small), ("big", self.big)):
            r = await self.call("GET", f"/c/{name}")
            self.assertEqual((r.code, r.body == data), (200, True), name)
            self.assertEqual((await self.call("HEAD", f"/c/{name}")).code, 200)

    def assertLoggedOnce(self, *kinds: str, what: str = "writing blocks to") -> None:
        """The block store logged one line per kind (``failed``,
        ``recovered``) of ``what`` it does, in that order, and no
        traceback."""
        lines = self.log.lines()
        self.assertEqual(len(lines), len(kinds), lines)
        for line, kind in zip(lines, kinds, strict=True):
            self.assertIn(f"{what} {self.root} {kind}", line)
        self.assertFalse([e for e in self.log.events if "log_failure" in e])


class DiskFullTests(_StoreCase):
    """The block store on a tmpfs that a test fills."""

    async def blocks_directory(self) -> str | None:
        return await small_filesystem(self)

    async def test_uploads_refused_then_accepted_once_freed(self):
        """With the disk full, a streamed, a chunked and a small PUT are
        507 with Swift's message, and none leaves an object, a block, a
        temporary file or a charge behind; earlier objects read on; the
        store logs the streak once.  Once the space is freed the same
        PUT is 201 (no restart), and the recovery is logged once."""
        filler = await fill(self.where)
        new = os.urandom(2 * STREAM_FROM)
        r = await self.call("PUT", "/c/new", new)
        self.assertRefused(r, 507, block_store.NO_ROOM)
        r = await self.call("PUT", "/c/chunked", chunks=[new[:STREAM_FROM], new[STREAM_FROM:]])
        self.assertRefused(r, 507, block_store.NO_ROOM)
        r = await self.call("PUT", "/c/tiny", b"a few new bytes")
        self.assertRefused(r, 507, block_store.NO_ROOM)
        await self.assertNothingChanged("new", "chunked", "tiny")
        self.assertLoggedOnce("failed")
        self.assertIn("No space left on device; uploads are answered 507",
                      self.log.lines()[0])

        os.unlink(filler)
        r = await self.call("PUT", "/c/new", new)
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/new")).body, new)
        self.assertLoggedOnce("failed", "recovered")

    async def test_nearly_full(self):
        """With room for small blocks only, small uploads are 201 and
        larger ones 507: one streak of failures in the log, no recovery
        until the space is freed."""
        filler = await fill(self.where)
        large = os.urandom(3 * STREAM_FROM)
        self.assertRefused(await self.call("PUT", "/c/large", large), 507,
                           block_store.NO_ROOM)
        os.truncate(filler, os.path.getsize(filler) - 2 * STREAM_FROM)
        r = await self.call("PUT", "/c/tiny", b"a few new bytes")
        self.assertEqual(r.code, 201, r.body)
        self.assertRefused(await self.call("PUT", "/c/large", large), 507,
                           block_store.NO_ROOM)
        self.assertLoggedOnce("failed")
        os.unlink(filler)
        self.assertEqual((await self.call("PUT", "/c/large", large)).code, 201)
        self.assertLoggedOnce("failed", "recovered")

    async def test_status_line(self):
        """The status line is Swift's ``507 Insufficient Storage``."""
        await fill(self.where)
        account = self.stack.account_url(self.alice).removeprefix(self.stack.url)
        code, reply = await raw_http(
            self.stack.url, f"PUT {account}/c/o HTTP/1.1\r\nHost: x\r\n"
            f"X-Auth-Token: {self.token}\r\nContent-Length: 5\r\n".encode(), b"hello")
        self.assertEqual(code, 507)
        self.assertTrue(reply.startswith(b"HTTP/1.1 507 Insufficient Storage\r\n"), reply)

    async def test_hashmap_upload(self):
        """The Pithos upload protocol with the disk full: a hashmap of new
        blocks is 409 with their list, uploading them is 507 (nothing
        kept), the hashmap stays 409; a hashmap of blocks the store has
        needs no room (201).  Once freed, the upload completes."""
        filler = await fill(self.where)
        data = os.urandom(3000)
        doc = json.dumps({"bytes": len(data), "hashes": hashmap_of(data)}).encode()
        r = await self.call("PUT", "/c/o?hashmap&format=json", doc)
        self.assertEqual((r.code, r.json()), (409, [block_hash(data)]))
        r = await self.call("POST", "/c?update&format=json", data)
        self.assertRefused(r, 507, block_store.NO_ROOM)
        r = await self.call("POST", "/c?update&format=json", os.urandom(2 * STREAM_FROM))
        self.assertRefused(r, 507, block_store.NO_ROOM)
        r = await self.call("PUT", "/c/o?hashmap&format=json", doc)
        self.assertEqual(r.code, 409, r.body)
        await self.assertNothingChanged("o")

        same = json.dumps({"bytes": len(self.big), "hashes": hashmap_of(self.big)})
        r = await self.call("PUT", "/c/same?hashmap&format=json", same.encode())
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/same")).body, self.big)

        os.unlink(filler)
        r = await self.call("POST", "/c?update&format=json", data)
        self.assertEqual((r.code, r.json()), (202, [block_hash(data)]))
        r = await self.call("PUT", "/c/o?hashmap&format=json", doc)
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/o")).body, data)
        self.assertLoggedOnce("failed", "recovered")

    async def test_form_bulk_and_copies(self):
        """A form upload is 507; an archive extraction answers Swift's
        summary with ``502 Bad Gateway`` and the file's ``507
        Insufficient Storage``; a copy of a range (new data) is 507,
        while a whole copy stores no data and is 201."""
        await fill(self.where)
        boundary = "XyZ"
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"X-Object-Data\";"
                f" filename=\"f\"\r\nContent-Type: text/plain\r\n\r\nform data\r\n"
                f"--{boundary}--\r\n").encode()
        r = await self.call("POST", "/c/form", form,
                            **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertRefused(r, 507, block_store.NO_ROOM)
        r = await self.call("PUT", "/c?extract-archive=tar", archive({"x/y": b"why"}),
                            Accept="application/json")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json(), {"Number Files Created": 0, "Response Body": "",
                                    "Response Status": "502 Bad Gateway",
                                    "Errors": [["c/x/y", "507 Insufficient Storage"]]})
        r = await self.call("PUT", "/c/part", b"", **{"X-Copy-From": "c/big",
                                                     "Range": "bytes=10-99"})
        self.assertRefused(r, 507, block_store.NO_ROOM)
        await self.assertNothingChanged("form", "x/y", "part")
        r = await self.call("COPY", "/c/big", Destination="c/copy")
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/copy")).body, self.big)


class ReadOnlyTests(_StoreCase):
    """The block store on a tmpfs that a test remounts read-only."""

    async def blocks_directory(self) -> str | None:
        return await small_filesystem(self)

    async def test_read_only(self):
        """On a read-only store uploads are 503 with ``Retry-After`` and
        a clear message, and so is a hashmap of blocks it has (their age
        cannot be refreshed); reads go on, and so do what writes no block
        (metadata, a whole copy); once remounted read-write the uploads
        are 201."""
        await remount(self.where, "ro")
        r = await self.call("PUT", "/c/new", os.urandom(2 * STREAM_FROM))
        self.assertRefused(r, 503, block_store.CANNOT_WRITE)
        self.assertEqual(r.header("Retry-After"), str(block_store.RETRY_AFTER))
        r = await self.call("PUT", "/c/tiny", b"new bytes")
        self.assertRefused(r, 503, block_store.CANNOT_WRITE)
        same = json.dumps({"bytes": len(self.big), "hashes": hashmap_of(self.big)})
        r = await self.call("PUT", "/c/same?hashmap&format=json", same.encode())
        self.assertRefused(r, 503, block_store.CANNOT_WRITE)
        await self.assertNothingChanged("new", "tiny", "same")
        self.assertLoggedOnce("failed")
        self.assertIn("Read-only file system; uploads are answered 503", self.log.lines()[0])
        r = await self.call("POST", "/c/big", **{"X-Object-Meta-Color": "blue",
                                                 "Content-Type": ""})
        self.assertEqual(r.code, 202, r.body)
        r = await self.call("COPY", "/c/big", Destination="c/copy")
        self.assertEqual(r.code, 201, r.body)
        r = await self.call("GET", "/c/copy")
        self.assertEqual((r.body == self.big, r.header("X-Object-Meta-Color")), (True, "blue"))

        await remount(self.where, "rw")
        r = await self.call("PUT", "/c/new", b"new bytes")
        self.assertEqual(r.code, 201, r.body)
        self.assertLoggedOnce("failed", "recovered")


class IOErrorTests(_StoreCase):
    """The block store's file writes failing with ``EIO`` half way (in
    process: no real device fails on demand; no root needed)."""

    async def test_io_error(self):
        """A write failing with an I/O error is 503 with ``Retry-After``;
        the half-written file is gone; the failures are logged once; the
        next write that works is 201."""
        store = self.stack.blocks
        write = store._write_file

        def failing(path: str, block: Any, mtime: float) -> None:
            write(path, bytes(memoryview(block)[:len(block) // 2]), mtime)
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)

        self.patch(store, "_write_file", failing)
        for name, data in (("new", os.urandom(2 * STREAM_FROM)), ("tiny", b"new bytes")):
            r = await self.call("PUT", f"/c/{name}", data)
            self.assertRefused(r, 503, block_store.CANNOT_WRITE)
            self.assertEqual(r.header("Retry-After"), str(block_store.RETRY_AFTER))
        await self.assertNothingChanged("new", "tiny")
        self.assertLoggedOnce("failed")

        store._write_file = write  # type: ignore[method-assign]
        r = await self.call("PUT", "/c/tiny", b"new bytes")
        self.assertEqual(r.code, 201, r.body)
        self.assertLoggedOnce("failed", "recovered")


class ReadIOErrorTests(_StoreCase):
    """The block store's file reads failing with ``EIO`` (in process), or
    a block's file gone."""

    def assertUnreadable(self, reply: HTTPReply) -> None:
        self.assertRefused(reply, 503, block_store.CANNOT_READ)
        self.assertEqual(reply.header("Retry-After"), str(block_store.RETRY_AFTER))
        self.assertEqual((reply.header("Content-Range"), reply.header("ETag")), (None, None))

    async def test_read_error_before_streaming(self):
        """With every read failing, a GET, a ranged GET, a public link
        and a ranged copy are 503 with ``Retry-After`` and Swift's text
        (no header of the object's body); a HEAD reads no block (206).
        The store logs the failure once, nothing else is logged as an
        error; once the fault is lifted the same reads are 200."""
        r = await self.call("POST", "/c/big", **{"X-Object-Public": "true", "Content-Type": ""})
        self.assertEqual(r.code, 202, r.body)
        link = (await self.call("HEAD", "/c/big")).header("X-Object-Public")
        assert link is not None
        reads = fail_reads(self, self.stack.blocks)
        self.assertUnreadable(await self.call("GET", "/c/small"))
        self.assertUnreadable(await self.call("GET", "/c/big", Range="bytes=10-99"))
        self.assertUnreadable(await http("GET", link))
        r = await self.call("PUT", "/c/part", b"", **{"X-Copy-From": "c/big",
                                                     "Range": "bytes=10-99"})
        self.assertUnreadable(r)
        r = await self.call("HEAD", "/c/big", Range="bytes=10-99")
        self.assertEqual(r.code, 206, r.body)
        self.assertLoggedOnce("failed", what="reading blocks from")
        self.assertIn(f"reading blocks from {self.root} failed: Input/output error; reads of"
                      " unreadable blocks are answered 503", self.log.lines()[0])
        self.assertEqual(self.log.error_lines(), [])

        reads.restore()
        r = await self.call("GET", "/c/small")
        self.assertEqual((r.code, r.body == self.small), (200, True))
        r = await self.call("GET", "/c/big", Range="bytes=10-99")
        self.assertEqual((r.code, r.body), (206, self.big[10:100]))
        self.assertEqual((await http("GET", link)).body, self.big)
        await self.assertNothingChanged("part")

    async def test_read_error_mid_stream(self):
        """A block that cannot be read once the body has begun drops the
        connection: the client gets a short body, a prefix of the
        object's, never a wrong one.  Logged once (no traceback); the
        object reads whole once the fault is lifted."""
        data = os.urandom(BLOCK_SIZE + 1000)
        self.assertEqual((await self.call("PUT", "/c/two", data)).code, 201)
        reads = fail_reads(self, self.stack.blocks, block_hash(data[BLOCK_SIZE:]))
        path = self.stack.account_url(self.alice).removeprefix(self.stack.url) + "/c/two"
        for _ in range(2):
            head, body = await raw_get(self.stack.url, path, self.token)
            self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
            self.assertIn(b"\r\nContent-Length: %d\r\n" % len(data), head + b"\r\n")
            self.assertLess(len(body), len(data))
            self.assertEqual(body, data[:len(body)])
        self.assertLoggedOnce("failed", what="reading blocks from")
        self.assertEqual(self.log.error_lines(), [])

        reads.restore()
        r = await self.call("GET", "/c/two")
        self.assertEqual((r.code, r.body == data), (200, True))

    async def test_block_missing(self):
        """A block an object references whose file is gone: a GET and a
        ranged copy are 503 with a message saying so (no
        ``Retry-After``), logged as data loss at error level; the disk is
        not said to fail."""
        name = block_hash(self.small)
        os.unlink(_block_path(self.root, name))
        for r in (await self.call("GET", "/c/small"),
                  await self.call("PUT", "/c/part", b"", **{"X-Copy-From": "c/small",
                                                           "Range": "bytes=1-2"})):
            self.assertRefused(r, 503, streams.BLOCK_MISSING)
            self.assertIsNone(r.header("Retry-After"))
        lines = self.log.error_lines()
        self.assertEqual(len(lines), 2, lines)
        for line, event in zip(lines, self.log.errors, strict=True):
            self.assertIn(f"block {name} is missing from the block store: data loss", line)
            self.assertEqual((event["log_level"], "log_failure" in event),
                             (LogLevel.error, False))
        self.assertEqual(self.log.lines(), [])
        self.assertEqual((await self.call("GET", "/c/big")).body, self.big)


class ReadStreakTests(unittest.TestCase):
    """How the block store logs failing reads (``snfd.repeats``), on its
    clock (a ``task.Clock``)."""

    def test_one_streak(self):
        """A failing read logs at once; more within a minute, and reads
        of other blocks that work meanwhile, log nothing; then one line
        a minute with the count; the recovery once, with a read that
        works a minute after the last failure.  Each read tries the disk:
        the block reads as soon as it can."""
        clock = task.Clock()
        clock.advance(1_000_000)
        store = block_store.FileBlockStore(self.mktemp(), reactor, clock=clock)
        good, bad = store.put_now(b"good"), store.put_now(b"bad")
        log = _StoreLog(self)
        reads = fail_reads(self, store, bad)
        for _ in range(3):
            with self.assertRaises(block_store.StorageUnreadable) as caught:
                store.get_now(bad)
            store.get_now(good)
        fault = caught.exception
        self.assertIsInstance(fault, errors.ServiceUnavailable)
        self.assertEqual((fault.errno, fault.headers, nbd.nbd_error(fault)),
                         (errno.EIO, {"Retry-After": str(block_store.RETRY_AFTER)}, nbd.EIO))
        clock.advance(61)
        self.assertRaises(block_store.StorageUnreadable, store.get_now, bad)
        reads.restore()
        self.assertEqual(store.get_now(bad)[:3], b"bad")
        clock.advance(60)
        store.get_now(good)
        store.get_now(good)
        lines = log.lines()
        self.assertEqual(len(lines), 3, lines)
        what = f"reading blocks from {store.path}"
        self.assertIn(f"{what} failed: Input/output error; reads of unreadable blocks are"
                      f" answered 503 (block {bad})", lines[0])
        self.assertIn(f"{what} still failing: 3 times in the last 61 s (last:", lines[1])
        self.assertIn(f"{what} recovered after 4 failures in 121 s", lines[2])
        self.assertEqual(log.error_lines(), [])


class FaultTests(unittest.TestCase):
    """The block store's faults as values."""

    def test_faults_stay_os_errors(self):
        """A full store's fault is a 507 and still the ``OSError`` it was,
        so the NBD server still answers ``ENOSPC``; a read-only one is a
        503 with ``Retry-After``; other errors pass unchanged."""
        full = block_store.storage_fault(OSError(errno.ENOSPC, "No space left", "/x"))
        self.assertIsInstance(full, errors.InsufficientStorage)
        self.assertEqual((full.errno, full.filename, full.code), (errno.ENOSPC, "/x", 507))
        self.assertEqual(nbd.nbd_error(full), nbd.ENOSPC)
        quota = block_store.storage_fault(OSError(errno.EDQUOT, "Disk quota exceeded"))
        self.assertIsInstance(quota, block_store.StorageFull)
        for code in (errno.EROFS, errno.EIO):
            failing = block_store.storage_fault(OSError(code, os.strerror(code)))
            self.assertIsInstance(failing, errors.ServiceUnavailable)
            self.assertEqual((failing.errno, failing.headers),
                             (code, {"Retry-After": str(block_store.RETRY_AFTER)}))
        other = OSError(errno.EACCES, "Permission denied")
        self.assertIs(block_store.storage_fault(other), other)
