"""The disk format check of uploaded image data
(``snfd.cyclades.disk_formats``): the rule as functions, the sampler, and
what real ``qemu-img`` makes of images it made itself (``qemu-img
create``), sampled as an upload samples them."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from snfd import errors
from snfd.cyclades import disk_formats
from snfd.cyclades.disk_formats import (
    HEAD,
    TAIL,
    Detected,
    DiskFormats,
    Sample,
    Sampler,
    check,
    checked,
    is_iso,
)

QEMU_IMG = shutil.which("qemu-img")
NO_QEMU_IMG = None if QEMU_IMG else \
    "qemu-img is not installed (Debian: apt-get install qemu-utils)"


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


async def qemu_image(fmt: str, *options: str, size: str = "16M") -> bytes:
    """The bytes of a new, empty image that ``qemu-img create -f fmt``
    makes."""
    assert QEMU_IMG is not None

    def make() -> bytes:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "image")
            _run([QEMU_IMG, "create", "-q", "-f", fmt, *options, path, size])
            return Path(path).read_bytes()

    return await threads.deferToThread(make)


async def qemu_convert(data: bytes, fmt: str, *options: str) -> bytes:
    """``data`` (a raw disk) converted by ``qemu-img convert -O fmt``."""
    assert QEMU_IMG is not None

    def make() -> bytes:
        with tempfile.TemporaryDirectory() as d:
            source, target = os.path.join(d, "raw"), os.path.join(d, "out")
            Path(source).write_bytes(data)
            _run([QEMU_IMG, "convert", "-q", "-f", "raw", "-O", fmt, *options, source,
                  target])
            return Path(target).read_bytes()

    return await threads.deferToThread(make)


def iso_like(size: int = 64 * 1024) -> bytes:
    """Data with an ISO 9660 primary volume descriptor and its set
    terminator where a CD's are."""
    data = bytearray(size)
    data[0x8000:0x8007] = b"\x01CD001\x01"
    data[0x8800:0x8807] = b"\xffCD001\x01"
    return bytes(data)


def sampled(data: bytes, block: int = 1024 * 1024) -> Sample:
    """``data``'s sample, fed a block at a time as an upload feeds it."""
    sampler = Sampler()
    for start in range(0, len(data), block):
        sampler.feed(data[start:start + block])
    return sampler.sample()


class RuleTests(unittest.TestCase):
    """``checked`` and ``check``: Glance's rule over what was detected."""

    def refused(self, disk_format: str, detected: Detected) -> str:
        e = self.assertRaises(errors.BadRequest, check, disk_format, detected)
        self.assertEqual(e.code, 400)
        return e.message

    def test_what_is_checked(self):
        """Bare images of Glance's formats are checked; Synnefo's dumps and
        any other container format are not."""
        for fmt in ("raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso", "ami", "ari",
                    "aki", "ploop"):
            self.assertTrue(checked(fmt, "bare"), fmt)
        for fmt in ("diskdump", "extdump", "ntfsdump"):
            self.assertFalse(checked(fmt, "bare"), fmt)
        for container in ("ovf", "ova", "docker", "compressed", "ami"):
            self.assertFalse(checked("qcow2", container), container)

    def test_matching_formats_pass(self):
        """Data that is its declared format passes; so does an ISO or raw
        data declared raw, and unrecognised data declared ami/ari/aki/ploop."""
        check("raw", Detected("raw"))
        check("raw", Detected("raw", iso=True))
        check("iso", Detected("raw", iso=True))
        check("qcow2", Detected("qcow2"))
        check("vhd", Detected("vhd"))
        check("vmdk", Detected("vmdk", subformat="streamOptimized"))
        check("vmdk", Detected("vmdk", subformat="monolithicSparse"))
        for fmt in ("ami", "ari", "aki", "ploop"):
            check(fmt, Detected("raw"))
        check("ploop", Detected("ploop"))

    def test_mismatches_are_refused(self):
        """Data of another format than declared is refused, raw declared
        included, and so is an ISO declared ami or anything but raw/iso."""
        message = self.refused("raw", Detected("qcow2"))
        self.assertIn("disk_format raw does not match the data, which is qcow2", message)
        self.refused("qcow2", Detected("raw"))
        self.refused("iso", Detected("raw"))
        self.refused("vhd", Detected("vhdx"))
        self.refused("ami", Detected("qcow2"))
        self.refused("ami", Detected("raw", iso=True))
        self.refused("qcow2", Detected("raw", iso=True))

    def test_unsafe_images_are_refused(self):
        """A qcow2 with a backing or data file, a VMDK of another subformat
        or with a descriptor, QED, qcow v1, an ISO that is also a qcow2 and
        data qemu-img could not open are refused whatever was declared."""
        self.assertIn("backing file", self.refused("qcow2", Detected("qcow2",
                                                                     backing_file="b")))
        self.assertIn("backing file", self.refused("raw", Detected("qcow2", backing_file="b")))
        self.assertIn("data file", self.refused("qcow2", Detected("qcow2", data_file="d")))
        self.assertIn("monolithicFlat", self.refused("vmdk", Detected(
            "vmdk", subformat="monolithicFlat")))
        self.assertIn("descriptor", self.refused("vmdk", Detected("vmdk", descriptor=True)))
        self.assertIn("QED", self.refused("raw", Detected("qed")))
        self.assertIn("version 1", self.refused("qcow2", Detected("qcow")))
        self.assertIn("more than one format", self.refused("iso", Detected("qcow2", iso=True)))
        self.assertIn("inspection failed: broken",
                      self.refused("qcow2", Detected("", error="broken")))


class SampleTests(unittest.TestCase):
    def test_sampler_keeps_head_and_tail(self):
        """Fed in blocks of any size, the sampler keeps the first HEAD and
        the last TAIL bytes and counts them all."""
        data = os.urandom(HEAD + 3 * TAIL + 17)
        for block in (1000, TAIL, 1024 * 1024, len(data)):
            sample = sampled(data, block)
            self.assertEqual((sample.head, sample.tail, sample.size),
                             (data[:HEAD], data[-TAIL:], len(data)), block)
        short = b"x" * 100
        self.assertEqual(sampled(short), Sample(short, short, 100))
        self.assertEqual(Sampler().sample(), Sample(b"", b"", 0))

    def test_iso_signature(self):
        """An ISO is told by the signature of its first volume descriptor at
        0x8001, as Glance tells it; too short data or another offset is not
        one."""
        self.assertTrue(is_iso(iso_like()))
        udf = bytearray(64 * 1024)
        udf[0x8001:0x8006] = b"NSR02"
        self.assertTrue(is_iso(bytes(udf)))
        self.assertFalse(is_iso(iso_like()[:0x8100]))
        moved = bytearray(64 * 1024)
        moved[0x9001:0x9006] = b"CD001"
        self.assertFalse(is_iso(bytes(moved)))
        self.assertFalse(is_iso(b"\0" * 64 * 1024))


class DetectTests(unittest.TestCase):
    """``DiskFormats.detect`` on images made by qemu-img itself."""

    skip = NO_QEMU_IMG
    timeout = 120

    def setUp(self):
        from twisted.internet import reactor

        self.formats = DiskFormats(reactor)

    async def detect(self, data: bytes) -> Detected:
        detected = await self.formats.detect(sampled(data))
        assert detected is not None
        return detected

    async def test_formats(self):
        """qemu-img's formats come back under Glance's names (vpc is vhd);
        a VMDK's subformat is reported."""
        for fmt, options, expected in (
                ("qcow2", (), Detected("qcow2")),
                ("vpc", (), Detected("vhd")),
                ("vhdx", (), Detected("vhdx")),
                ("vdi", (), Detected("vdi")),
                ("vmdk", (), Detected("vmdk", subformat="monolithicSparse")),
                ("vmdk", ("-o", "subformat=streamOptimized"),
                 Detected("vmdk", subformat="streamOptimized")),
                ("raw", (), Detected("raw"))):
            self.assertEqual(await self.detect(await qemu_image(fmt, *options)), expected,
                             fmt)
        # A fixed VHD has its footer only: qemu-img reads it as raw, as
        # Glance does.
        fixed = await qemu_image("vpc", "-o", "subformat=fixed", size="1M")
        self.assertEqual(await self.detect(fixed), Detected("raw"))
        self.assertEqual(await self.detect(b""), Detected("raw"))
        self.assertEqual(await self.detect(iso_like()), Detected("raw", iso=True))

    async def test_large_images_are_sampled(self):
        """Images larger than the sample are still told: a
        streamOptimized VMDK whose footer is in the tail only, a qcow2
        with data past the head; the sample file is sparse and removed."""
        data = os.urandom(HEAD + 2 * 1024 * 1024)
        vmdk = await qemu_convert(data, "vmdk", "-o", "subformat=streamOptimized")
        self.assertGreater(len(vmdk), HEAD + TAIL)
        self.assertEqual(await self.detect(vmdk), Detected("vmdk", subformat="streamOptimized"))
        qcow2 = await qemu_convert(data, "qcow2")
        self.assertGreater(len(qcow2), HEAD + TAIL)
        tmpdir = self.mktemp()
        os.mkdir(tmpdir)
        self.formats.tmpdir = tmpdir
        self.assertEqual(await self.detect(qcow2), Detected("qcow2"))
        self.assertEqual(os.listdir(tmpdir), [])

    async def test_full_temporary_directory(self):
        """With the temporary directory full (a real tmpfs filled up), the
        check answers 503 with Retry-After and leaves nothing behind."""
        from tests.pithos.test_disk_full import small_filesystem

        tmpdir = await small_filesystem(self, 1 << 20)
        fd = os.open(os.path.join(tmpdir, "ballast"), os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        self.formats.tmpdir = tmpdir
        with self.assertRaises(errors.ServiceUnavailable) as caught:
            await self.detect(os.urandom(HEAD + 4096))
        self.assertEqual(caught.exception.headers.get("Retry-After"), "30")
        self.assertEqual(os.listdir(tmpdir), ["ballast"])

    async def test_backing_and_data_files_are_not_followed(self):
        """A qcow2's backing file is reported, not opened; a qcow2 with an
        external data file or a VMDK descriptor naming a host file is
        recognised without running qemu-img on it."""
        backed = await qemu_image("qcow2", "-u", "-b", "/nonexistent/base.qcow2", "-F",
                                  "qcow2")
        self.assertEqual(await self.detect(backed),
                         Detected("qcow2", backing_file="/nonexistent/base.qcow2"))
        d = self.mktemp()
        os.mkdir(d)
        with_data = await qemu_image("qcow2", "-o", f"data_file={d}/data.raw")
        self.assertTrue((await self.detect(with_data)).data_file)
        descriptor = (b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\n'
                      b'createType="monolithicFlat"\n\nRW 8 FLAT "/etc/hostname" 0\n')
        self.assertEqual(await self.detect(descriptor), Detected("vmdk", descriptor=True))

    async def test_unreadable_data(self):
        """Data qemu-img recognises but cannot open is reported as such,
        without the sample file's name."""
        broken = bytearray(await qemu_image("qcow2"))
        broken[20:24] = b"\xff\xff\xff\xff"  # cluster_bits out of range
        detected = await self.detect(bytes(broken))
        self.assertEqual(detected.format, "")
        self.assertTrue(detected.error)
        self.assertNotIn("snfd-disk-format", detected.error)

    async def test_verify(self):
        """``verify`` refuses a mismatch with a 400 and lets diskdump and
        non-bare images through uninspected."""
        qcow2 = sampled(await qemu_image("qcow2"))
        await self.formats.verify("qcow2", "bare", qcow2)
        refused = defer.ensureDeferred(self.formats.verify("raw", "bare", qcow2))
        e = await self.assertFailure(refused, errors.BadRequest)
        self.assertEqual(e.code, 400)
        await self.formats.verify("diskdump", "bare", qcow2)
        await self.formats.verify("raw", "ova", qcow2)


class QemuImgTests(unittest.TestCase):
    """What happens when qemu-img is missing, slow or talkative."""

    timeout = 60

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor

    def script(self, body: str) -> str:
        d = self.mktemp()
        os.mkdir(d)
        path = os.path.join(d, "qemu-img")
        Path(path).write_text(f"#!/bin/sh\n{body}\n")
        os.chmod(path, stat.S_IRWXU)
        return path

    async def test_missing_qemu_img(self):
        """Without qemu-img nothing is refused, and one warning says so
        however many uploads are checked."""
        self.patch(disk_formats, "_missing_logged", [])
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for _ in range(3):
            formats = DiskFormats(self.reactor, qemu_img="")
            await formats.verify("qcow2", "bare", sampled(b"not a qcow2"))
        warnings = [e for e in events if "qemu-img is not installed" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)

    async def test_timeout(self):
        """A qemu-img that does not answer in time is killed and the upload
        refused with a 503."""
        formats = DiskFormats(self.reactor, qemu_img=self.script("exec sleep 30"),
                              timeout=0.5)
        slow = defer.ensureDeferred(formats.verify("raw", "bare", sampled(b"data")))
        e = await self.assertFailure(slow, errors.ServiceUnavailable)
        self.assertIn("in time", e.message)

    async def test_bounded_output(self):
        """A qemu-img that answers too much is stopped and its answer is
        not taken."""
        formats = DiskFormats(self.reactor, qemu_img=self.script("exec yes"))
        detected = await formats.detect(sampled(b"data"))
        assert detected is not None
        self.assertEqual((detected.format, detected.error),
                         ("", "qemu-img answered too much"))
