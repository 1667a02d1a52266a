"""What uploaded image data is, and whether its declared ``disk_format``
may stand: Glance's format inspection (``[image_format]
require_image_format_match``), done with ``qemu-img info`` (Debian's
qemu-utils).

An upload is sampled as it streams (``Sampler``): its first 4 MiB, its
last 64 KiB and its size.  ``qemu-img info --output=json`` probes a
temporary *sparse* file of the full size holding only those bytes at
their offsets (footers such as VMDK's are at the end; nothing large is
written), in a child process of the injected reactor, with a timeout and
bounded output.  It is never told a format (``-f``), never follows a
backing file, and never runs on a VMDK descriptor file or a qcow2 with an
external data file (both name host files qemu-img would open: they are
recognised here first).  ISO 9660/UDF, which qemu-img reads as raw, is
recognised as Glance recognises it: ``CD001``/``NSR02``/``NSR03`` at
offset 0x8001.

The rule (``check``), for images whose ``container_format`` is ``bare``
(Glance inspects no other):

- raw, qcow2, vhd, vhdx, vmdk, vdi, iso: the data must be that format
  (qemu-img's ``vpc`` is Glance's ``vhd``); raw data that is an ISO is
  raw too (Glance's rule), any other recognised format is refused;
- ami, ari, aki, ploop (formats Glance cannot inspect): the data must not
  be a format it recognises (ploop: but its own, qemu-img's ``parallels``);
- Synnefo's diskdump, extdump, ntfsdump are not checked;
- whatever was declared, a qcow2 with a backing file or an external data
  file, a qcow2 version 1 or QED image, a VMDK that is not one
  monolithicSparse or streamOptimized file, and data that is an ISO and
  another format at once are refused (Glance's safety checks), as is
  data qemu-img cannot open.

Without qemu-img nothing is checked, and that is logged once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any

import attrs
from twisted.internet import defer, error, protocol, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from snfd import errors

log = Logger(namespace="snfd.cyclades.disk_formats")

#: How much of the start and of the end of the data is inspected.
HEAD = 4 * 1024 * 1024
TAIL = 64 * 1024
#: How long qemu-img may take, and how much it may answer.
TIMEOUT = 30.0
MAX_OUTPUT = 1024 * 1024

#: Declared formats whose data must be what they say.
INSPECTED = frozenset({"raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso"})
#: Declared formats Glance cannot inspect: the data must not be a format
#: it recognises (but, for ploop, its own).
UNRECOGNISED = frozenset({"ami", "ari", "aki", "ploop"})
#: qemu-img's names that are not Glance's.
QEMU_NAMES = {"vpc": "vhd", "parallels": "ploop"}
#: The VMDK subformats Glance accepts (``vmdk_allowed_types``).
VMDK_SUBFORMATS = ("monolithicSparse", "streamOptimized")
#: Formats refused whatever was declared.
BANNED = {"qed": "QED images are not accepted.",
          "qcow": "qcow version 1 images are not accepted."}

_ISO_OFFSET = 0x8001
_ISO_SIGNATURES = (b"CD001", b"NSR02", b"NSR03")
_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_DATA_FILE_BIT = 1 << 2
_VERSION_LINE = re.compile(rb"version=\d")

# Logged once per process, however many inspectors are made.
_missing_logged: list[bool] = []


@attrs.frozen
class Sample:
    """What is inspected of some data: its first ``HEAD`` bytes (all of it
    when shorter), its last ``TAIL`` bytes and its size."""

    head: bytes
    tail: bytes
    size: int


class Sampler:
    """Keeps the head and the tail of data fed to it a block at a time,
    so that the data is read once."""

    def __init__(self, head: int = HEAD, tail: int = TAIL):
        self._head_size = head
        self._tail_size = tail
        self._head = bytearray()
        self._tail = b""
        self._size = 0

    def feed(self, block: bytes) -> None:
        """Take the next ``block`` of the data."""
        self._size += len(block)
        if len(self._head) < self._head_size:
            self._head += block[:self._head_size - len(self._head)]
        if len(block) >= self._tail_size:
            self._tail = bytes(block[len(block) - self._tail_size:])
        else:
            self._tail = (self._tail + block)[-self._tail_size:]

    def sample(self) -> Sample:
        """What was fed so far."""
        return Sample(bytes(self._head), self._tail, self._size)


@attrs.frozen
class Detected:
    """What some data is.

    ``format``: Glance's name of what qemu-img read (raw, qcow2, vhd,
    vhdx, vmdk, vdi, ploop, luks, or qemu-img's own name for others);
    ``""`` when it could not be read (``error`` says why).  ``iso``: the
    ISO 9660/UDF signature is there.  ``backing_file``, ``data_file``:
    what a qcow2 names; ``subformat``: a VMDK's create type;
    ``descriptor``: a VMDK whose data is in other files."""

    format: str
    iso: bool = False
    backing_file: str = ""
    data_file: str = ""
    subformat: str = ""
    descriptor: bool = False
    error: str = ""


def is_iso(head: bytes) -> bool:
    """Whether data starting with ``head`` is an ISO 9660 or UDF image, as
    Glance tells: the signature of its first volume descriptor, in the
    sector after the 32 KiB system area."""
    return len(head) >= _ISO_OFFSET - 1 + 2048 and \
        head[_ISO_OFFSET:_ISO_OFFSET + 5] in _ISO_SIGNATURES


def _qcow2_data_file(head: bytes) -> bool:
    """A qcow2 (version 3 and later) whose header sets the external data
    file bit of its incompatible features."""
    if not head.startswith(_QCOW2_MAGIC) or len(head) < 0x50:
        return False
    version = int.from_bytes(head[4:8], "big")
    return version >= 3 and bool(int.from_bytes(head[0x48:0x50], "big")
                                 & _QCOW2_DATA_FILE_BIT)


def _vmdk_descriptor(head: bytes) -> bool:
    """A VMDK text descriptor, as qemu-img's probe sees one (comment and
    blank lines, then ``version=``): its extents are other files."""
    for line in head[:2048].split(b"\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        return bool(_VERSION_LINE.match(stripped))
    return False


def checked(disk_format: str, container_format: str) -> bool:
    """Whether data declared ``disk_format`` in ``container_format`` is
    inspected at all."""
    return container_format == "bare" and (disk_format in INSPECTED
                                           or disk_format in UNRECOGNISED)


def check(disk_format: str, detected: Detected) -> None:
    """Refuse (``BadRequest``) data that is ``detected`` for an image
    declared ``disk_format`` (see the module docstring); the caller has
    asked ``checked`` first."""
    if detected.error:
        raise errors.BadRequest(f"Image format inspection failed: {detected.error}")
    found = detected.format
    if detected.iso and found != "raw":
        raise errors.BadRequest(f"Image data is in more than one format (iso and {found}):"
                                " it is not accepted.")
    if detected.iso:
        found = "iso"
    if detected.backing_file:
        raise errors.BadRequest("Image data is a qcow2 image with a backing file: it is not"
                                " accepted.")
    if detected.data_file:
        raise errors.BadRequest("Image data is a qcow2 image with an external data file: it"
                                " is not accepted.")
    if found in BANNED:
        raise errors.BadRequest(BANNED[found])
    if found == "vmdk" and (detected.descriptor or detected.subformat not in VMDK_SUBFORMATS):
        what = "a descriptor naming other files" if detected.descriptor else \
            f"of subformat {detected.subformat[:64]!r}"
        raise errors.BadRequest(f"Image data is a VMDK image {what}: only"
                                f" {' and '.join(VMDK_SUBFORMATS)} VMDK images are accepted.")
    if disk_format in INSPECTED:
        ok = found == disk_format or (disk_format == "raw" and found == "iso")
    else:
        ok = found in ("raw", disk_format)
    if not ok:
        raise errors.BadRequest(f"Image disk_format {disk_format} does not match the data,"
                                f" which is {found}: declare the format the data is in.")


def _write_sample(sample: Sample, tmpdir: str | None) -> tuple[str, str]:
    """A private directory holding the sparse file of ``sample``."""
    directory = tempfile.mkdtemp(prefix="snfd-disk-format-", dir=tmpdir)
    path = os.path.join(directory, "image")
    try:
        with open(path, "wb") as f:
            f.truncate(sample.size)
            f.write(sample.head)
            f.seek(max(0, sample.size - len(sample.tail)))
            f.write(sample.tail)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory, path


class _Collect(protocol.ProcessProtocol):
    """Gathers a child's output up to ``limit`` bytes, killing it past
    that or when ``kill`` is called; ``done`` fires with the exit code
    (``None`` when it was killed or died of a signal)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.out = bytearray()
        self.err = bytearray()
        self.overflowed = False
        self.done: defer.Deferred[int | None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self._add(self.out, data)

    def errReceived(self, data: bytes) -> None:
        self._add(self.err, data)

    def _add(self, buffer: bytearray, data: bytes) -> None:
        if len(self.out) + len(self.err) + len(data) > self.limit:
            self.overflowed = True
            self.kill()
        else:
            buffer += data

    def kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except (error.ProcessExitedAlready, OSError, AttributeError):
            pass

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        self.done.callback(None if signal is not None else code)


class DiskFormats:
    """Inspects uploaded data with ``qemu-img`` (see the module docstring).

    @param reactor: runs qemu-img (``IReactorProcess``), times it
        (``IReactorTime``) and writes the sample file in its thread pool
        (``IReactorThreads``).
    @param qemu_img: the program; ``None``: ``qemu-img`` on the ``PATH``;
        ``""``: none (nothing is checked).
    @param timeout: seconds qemu-img may take.
    @param tmpdir: where the sample file is made (the system's default).
    """

    def __init__(self, reactor: Any, qemu_img: str | None = None, timeout: float = TIMEOUT,
                 tmpdir: str | None = None):
        self.reactor = reactor
        if qemu_img is None:
            qemu_img = shutil.which("qemu-img") or ""
        self.qemu_img = qemu_img
        self.timeout = timeout
        self.tmpdir = tmpdir

    def _thread(self, fn: Any, *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn,
                                         *args)

    async def verify(self, disk_format: str, container_format: str, sample: Sample) -> None:
        """Refuse (``BadRequest``) ``sample``'s data for an image declared
        ``disk_format`` in ``container_format``; ``ServiceUnavailable``
        when qemu-img does not answer in time.  Nothing is refused when
        the formats are not inspected or qemu-img is missing."""
        if not checked(disk_format, container_format):
            return
        detected = await self.detect(sample)
        if detected is None:
            return
        try:
            check(disk_format, detected)
        except errors.BadRequest as e:
            log.info("Refused image data declared {disk_format}: {why}",
                     disk_format=disk_format, why=e.message)
            raise

    async def detect(self, sample: Sample) -> Detected | None:
        """What ``sample``'s data is; ``None`` without qemu-img."""
        if not self.qemu_img:
            if not _missing_logged:
                _missing_logged.append(True)
                log.warn("qemu-img is not installed (Debian: qemu-utils): the disk format"
                         " of uploaded image data is not checked.")
            return None
        head = sample.head
        if _qcow2_data_file(head):
            return Detected("qcow2", data_file="(named in the image)")
        if _vmdk_descriptor(head):
            return Detected("vmdk", descriptor=True)
        iso = is_iso(head)
        try:
            directory, path = await self._thread(_write_sample, sample, self.tmpdir)
        except OSError as e:
            # The system's temporary directory is full, read-only or failing.
            log.warn("checking an image's disk format failed: {error}", error=e)
            raise errors.ServiceUnavailable(
                "The image data cannot be checked at the moment (the server's temporary"
                " storage is full or failing). Please try again at a later time.",
                headers={"Retry-After": "30"}) from None
        try:
            code, out, err = await self._run(path)
        finally:
            await self._thread(shutil.rmtree, directory, True)
        if code != 0:
            first = err.decode("utf-8", "replace").strip().splitlines()[:1] or ["no answer"]
            message = first[0].replace(f"file:{path}", "the data").replace(path, "the data")
            return Detected("", iso=iso, error=message[:300])
        try:
            info = json.loads(out)
            qemu_format = str(info["format"])
        except (ValueError, KeyError, TypeError):
            return Detected("", iso=iso, error="qemu-img's answer could not be read")
        specific = info.get("format-specific")
        data = specific.get("data") if isinstance(specific, dict) else None
        data = data if isinstance(data, dict) else {}
        extents = data.get("extents")
        elsewhere = isinstance(extents, list) and any(
            isinstance(e, dict) and e.get("filename") != path for e in extents)
        return Detected(
            QEMU_NAMES.get(qemu_format, qemu_format), iso=iso,
            backing_file=str(info.get("backing-filename")
                             or info.get("full-backing-filename") or ""),
            data_file=str(data.get("data-file") or ""),
            subformat=str(data.get("create-type") or ""),
            descriptor=elsewhere)

    async def _run(self, path: str) -> tuple[int, bytes, bytes]:
        """qemu-img's exit code and output for the file at ``path``;
        ``ServiceUnavailable`` past the timeout."""
        collect = _Collect(MAX_OUTPUT)
        # ``file:`` keeps the name from being read as another protocol;
        # qemu-img info opens no backing file unless asked to.
        self.reactor.spawnProcess(
            collect, self.qemu_img,
            [self.qemu_img, "info", "--output=json", "--force-share", f"file:{path}"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            collect.kill()

        late = self.reactor.callLater(self.timeout, expire)
        try:
            code = await collect.done
        finally:
            if late.active():
                late.cancel()
        if timed_out:
            raise errors.ServiceUnavailable("The image data could not be inspected in time;"
                                            " try again later.")
        if collect.overflowed:
            return 1, b"", b"qemu-img answered too much"
        if code is None:
            return 1, b"", b"qemu-img did not finish"
        return code, bytes(collect.out), bytes(collect.err)


__all__ = ["HEAD", "INSPECTED", "TAIL", "UNRECOGNISED", "Detected", "DiskFormats", "Sample",
           "Sampler", "check", "checked", "is_iso"]
