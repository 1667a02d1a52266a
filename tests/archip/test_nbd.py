"""The NBD server (``snfd.archip.nbd``) against real clients (libnbd's
``nbdinfo`` and ``nbdcopy``, ``qemu-img``) and a raw socket.

The volumes are a test double of ``VolumeOpener``/``VolumeIO`` backed by
bytearrays (``BytearrayOpener``), not the real store: it keeps the
store's one-writer-per-volume rule, so a server that opened a volume once
per connection would fail ``nbdcopy --connections 4``.  The server listens
on 127.0.0.1 in trial's reactor; the clients run in threads.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from snfd.archip import nbd
from snfd.archip.io import VolumeBusy

MiB = 1024 * 1024
T = TypeVar("T")


# -- the test double of the volume store


class BytearrayVolume:
    """A test double of ``VolumeIO``: one open handle on a bytearray,
    recording what was asked of it in ``opener.log``."""

    def __init__(self, opener: BytearrayOpener, name: str, writable: bool):
        self.opener, self.name, self.writable = opener, name, writable
        self.data = opener.volumes[name]
        self.size = len(self.data)
        self.block_size = opener.block_size
        self.read_only = not writable or name in opener.snapshots
        self.closed: defer.Deferred[None] = defer.Deferred()

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"{offset}+{length} is past the end ({self.size})")

    def _writing(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self.name} is read-only")
        if self.opener.full:
            raise OSError(28, "no space left")

    async def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self.data[offset:offset + length])

    async def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        self._writing()
        if self.opener.gate is not None:
            await self.opener.gate
        self.data[offset:offset + len(data)] = data
        self.opener.log.append(("write", offset, len(data)))

    async def flush(self) -> None:
        self.opener.log.append(("flush",))

    async def trim(self, offset: int, length: int) -> None:
        self._check(offset, length)
        self._writing()
        self.data[offset:offset + length] = bytes(length)
        self.opener.log.append(("trim", offset, length))

    async def write_zeroes(self, offset: int, length: int) -> None:
        self._check(offset, length)
        self._writing()
        self.data[offset:offset + length] = bytes(length)
        self.opener.log.append(("zero", offset, length))

    async def close(self) -> None:
        self.opener.log.append(("close", self.name))
        if self.writable:
            self.opener.writers.discard(self.name)
        self.closed.callback(None)


class BytearrayOpener:
    """A test double of ``VolumeOpener`` over named bytearrays; at most one
    writable handle per volume, as the real store (``VolumeBusy``)."""

    def __init__(self, block_size: int = MiB):
        self.block_size = block_size
        self.volumes: dict[str, bytearray] = {}
        self.snapshots: set[str] = set()
        self.writers: set[str] = set()
        self.opened: list[BytearrayVolume] = []
        self.log: list[tuple[Any, ...]] = []
        self.full = False
        #: While set, writes wait for it (a slow store).
        self.gate: defer.Deferred[None] | None = None

    def add(self, name: str, data: bytes | int, snapshot: bool = False) -> bytearray:
        self.volumes[name] = bytearray(data)
        if snapshot:
            self.snapshots.add(name)
        return self.volumes[name]

    async def open(self, name: str, writable: bool) -> BytearrayVolume:
        if name not in self.volumes:
            raise KeyError(name)
        if writable and name not in self.snapshots:
            if name in self.writers:
                raise VolumeBusy(f"volume {name} is open for writing elsewhere")
            self.writers.add(name)
        volume = BytearrayVolume(self, name, writable)
        self.opened.append(volume)
        return volume

    async def names(self) -> list[str]:
        return sorted(self.volumes)


# -- a raw protocol client (blocking; runs in a thread)


class RawClient:
    """Speaks NBD byte by byte over a blocking socket."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.handle = 0

    def close(self) -> None:
        self.sock.close()

    def recv(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.sock.recv(min(left, 4 * MiB))
            if not chunk:
                raise EOFError(f"connection closed with {left} of {n} bytes unread")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def at_eof(self) -> bool:
        """True when the server closed the connection (EOF or reset)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def greet(self, flags: int = nbd.FLAG_C_FIXED_NEWSTYLE | nbd.FLAG_C_NO_ZEROES) -> int:
        magic, opt, handshake = struct.unpack(">QQH", self.recv(18))
        assert (magic, opt) == (nbd.NBDMAGIC, nbd.IHAVEOPT)
        self.sock.sendall(struct.pack(">I", flags))
        return handshake

    def option(self, option: int, data: bytes = b"", magic: int = nbd.IHAVEOPT) -> None:
        self.sock.sendall(struct.pack(">QII", magic, option, len(data)) + data)

    def reply(self) -> tuple[int, int, bytes]:
        magic, option, kind, length = struct.unpack(">QIII", self.recv(20))
        assert magic == nbd.REPLY_MAGIC, hex(magic)
        return option, kind, self.recv(length)

    def replies(self) -> list[tuple[int, bytes]]:
        """The replies to one option, up to its final one."""
        out = []
        while True:
            _, kind, data = self.reply()
            out.append((kind, data))
            if kind != nbd.REP_INFO and kind != nbd.REP_SERVER:
                return out

    def go(self, name: str, option: int = nbd.OPT_GO,
           infos: tuple[int, ...] = (nbd.INFO_BLOCK_SIZE,)) -> list[tuple[int, bytes]]:
        encoded = name.encode()
        self.option(option, struct.pack(">I", len(encoded)) + encoded
                    + struct.pack(">H", len(infos)) + b"".join(struct.pack(">H", i) for i in infos))
        return self.replies()

    def connect(self, name: str) -> RawClient:
        self.greet()
        assert self.go(name)[-1][0] == nbd.REP_ACK
        return self

    def send(self, kind: int, offset: int = 0, length: int = 0, data: bytes = b"",
             flags: int = 0, magic: int = nbd.REQUEST_MAGIC) -> int:
        self.handle += 1
        self.sock.sendall(struct.pack(">IHHQQI", magic, flags, kind, self.handle, offset, length)
                          + data)
        return self.handle

    def answer(self, length: int = 0) -> tuple[int, int, bytes]:
        """A simple reply: (error, handle, data); ``length`` bytes of data
        follow a successful READ."""
        magic, error, handle = struct.unpack(">IIQ", self.recv(16))
        assert magic == nbd.SIMPLE_REPLY_MAGIC, hex(magic)
        return error, handle, self.recv(length) if length and not error else b""

    def command(self, kind: int, offset: int = 0, length: int = 0, data: bytes = b"",
                flags: int = 0) -> tuple[int, bytes]:
        handle = self.send(kind, offset, length, data, flags)
        error, got, payload = self.answer(length if kind == nbd.CMD_READ else 0)
        assert got == handle
        return error, payload


# -- the real clients


_TOOLS = ("nbdinfo", "nbdcopy", "qemu-img")
_install_tried = False


def _missing() -> list[str]:
    return [t for t in _TOOLS if shutil.which(t) is None]


def tools_unavailable() -> str | None:
    """Why the real clients cannot run here, or None (installing Debian's
    ``libnbd-bin`` and ``qemu-utils`` first when root)."""
    global _install_tried
    if _missing() and not _install_tried and os.geteuid() == 0 and shutil.which("apt-get"):
        _install_tried = True
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq",
               "libnbd-bin", "qemu-utils"]
        if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(cmd, env=env, capture_output=True, timeout=900)
    missing = _missing()
    if missing:
        return (f"{', '.join(missing)} not installed and could not be installed "
                "(Debian libnbd-bin, qemu-utils; as root ./dev test installs them)")
    return None


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


class ServerCase(unittest.TestCase):
    """A server on a free port of 127.0.0.1 over ``self.opener``."""

    read_only = False

    def setUp(self) -> None:
        self.opener = BytearrayOpener()
        self.factory = nbd.NbdServerFactory(self.opener, reactor=reactor, read_only=self.read_only)
        self.protocols: list[nbd.NbdServerProtocol] = []
        build = self.factory.buildProtocol

        def counting(addr: Any) -> Any:
            protocol = build(addr)
            self.protocols.append(protocol)
            return protocol

        self.factory.buildProtocol = counting  # type: ignore[method-assign]
        self.listening = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        self.addCleanup(self._stop)

    async def _stop(self) -> None:
        await self.settled()
        for protocol in self.protocols:
            if not protocol._lost:
                protocol.transport.abortConnection()
        await self.listening.stopListening()
        await self.settled()

    async def settled(self, timeout: float = 5.0) -> None:
        """Wait until every connection ended and every volume was closed."""
        for _ in range(int(timeout / 0.01)):
            if all(p._lost for p in self.protocols) and not self.factory.open_volumes():
                return
            await task.deferLater(reactor, 0.01, lambda: None)

    def url(self, name: str) -> str:
        return f"nbd://127.0.0.1:{self.port}/{name}"

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await threads.deferToThread(fn, *args)

    async def client(self, fn: Callable[[RawClient], T], name: str | None = None) -> T:
        """``fn(client)`` in a thread, on a connection in transmission with
        ``name`` if given (only greeted otherwise)."""
        def run() -> T:
            client = RawClient(self.port)
            try:
                if name is None:
                    return fn(client)
                return fn(client.connect(name))
            finally:
                client.close()
        return await self.thread(run)


class ClientCase(ServerCase):
    """A server, the real clients and a temporary directory."""

    def setUp(self) -> None:
        why = tools_unavailable()
        if why:
            raise unittest.SkipTest(why)
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="snfd-nbd-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)


class RealClientTests(ClientCase):
    """libnbd's tools and qemu-img against the server."""

    async def test_nbdinfo(self):
        """nbdinfo sees the size, the flags (multi-conn, flush, FUA, trim,
        zero) and the block sizes (1, the object size, 32 MiB)."""
        self.opener.add("vol-1", 8 * MiB)
        done = await self.thread(_run, "nbdinfo", "--json", self.url("vol-1"))
        self.assertEqual(done.returncode, 0, done.stderr)
        info = json.loads(done.stdout)["exports"][0]
        self.assertEqual(info["export-size"], 8 * MiB)
        self.assertEqual((info["is_read_only"], info["can_multi_conn"], info["can_flush"],
                          info["can_fua"], info["can_trim"], info["can_zero"]),
                         (False, True, True, True, True, True))
        self.assertEqual((info["block_size_minimum"], info["block_size_preferred"],
                          info["block_size_maximum"]), (1, MiB, 32 * MiB))
        await self.settled()
        self.assertEqual(self.opener.writers, set())

    async def test_nbdinfo_list(self):
        """nbdinfo --list shows every volume."""
        for name in ("vol-a", "vol-b", "snap-c"):
            self.opener.add(name, MiB, snapshot=name.startswith("snap"))
        done = await self.thread(_run, "nbdinfo", "--list", "--json", self.url(""))
        self.assertEqual(done.returncode, 0, done.stderr)
        exports = {e["export-name"]: e for e in json.loads(done.stdout)["exports"]}
        self.assertEqual(sorted(exports), ["snap-c", "vol-a", "vol-b"])
        self.assertTrue(exports["snap-c"]["is_read_only"])
        self.assertFalse(exports["vol-a"]["is_read_only"])

    async def test_nbdinfo_unknown_export(self):
        """An unknown export is an error nbdinfo reports (rc 1)."""
        done = await self.thread(_run, "nbdinfo", self.url("nothing"))
        self.assertEqual(done.returncode, 1)
        self.assertIn("opt_go", done.stderr)

    async def test_nbdcopy_both_ways_multi_conn(self):
        """nbdcopy with four connections writes a sparse file (data, and
        zeroing for the hole) into a volume and reads it back identical; all the connections
        share one open volume (opened writable once)."""
        self.opener.add("vol-1", 16 * MiB)
        head, tail = os.urandom(6 * MiB), os.urandom(6 * MiB)
        source = head + bytes(4 * MiB) + tail
        with open(self.path("in.img"), "wb") as f:
            f.write(head)
            f.seek(4 * MiB, os.SEEK_CUR)  # a hole: nbdcopy zeroes it
            f.write(tail)
        done = await self.thread(_run, "nbdcopy", "--connections", "4", "--threads", "4", "--flush",
                                 self.path("in.img"), self.url("vol-1"))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(bytes(self.opener.volumes["vol-1"]), source)
        self.assertGreaterEqual(len(self.protocols), 4)
        self.assertIn(("flush",), self.opener.log)
        self.assertTrue([op for op in self.opener.log if op[0] in ("zero", "trim")])
        await self.settled()
        done = await self.thread(_run, "nbdcopy", "--connections", "4", "--threads", "4", self.url("vol-1"),
                                 self.path("out.img"))
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(self.path("out.img"), "rb") as f:
            self.assertEqual(f.read(), source)
        self.assertGreaterEqual(len(self.protocols), 8)
        await self.settled()
        self.assertEqual(len(self.opener.opened), 2, "one open per nbdcopy run")
        self.assertTrue(all(v.closed.called for v in self.opener.opened))

    async def test_qemu_img(self):
        """qemu-img reads the volume's info, converts it to a file and
        writes a file into it."""
        data = self.opener.add("vol-1", os.urandom(4 * MiB))
        done = await self.thread(_run, "qemu-img", "info", "--output=json", self.url("vol-1"))
        self.assertEqual(done.returncode, 0, done.stderr)
        info = json.loads(done.stdout)
        self.assertEqual((info["format"], info["virtual-size"]), ("raw", 4 * MiB))
        done = await self.thread(_run, "qemu-img", "convert", "-f", "raw", "-O", "raw",
                                 self.url("vol-1"), self.path("out.raw"))
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(self.path("out.raw"), "rb") as f:
            self.assertEqual(f.read(), bytes(data))
        await self.settled()
        fresh = os.urandom(4 * MiB)
        with open(self.path("in.raw"), "wb") as f:
            f.write(fresh)
        done = await self.thread(_run, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw",
                                 self.path("in.raw"), self.url("vol-1"))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(bytes(self.opener.volumes["vol-1"]), fresh)

    async def test_nbdcopy_into_read_only(self):
        """Copying into a read-only export fails; the volume is unchanged."""
        self.opener.add("snap-1", MiB, snapshot=True)
        with open(self.path("in.img"), "wb") as f:
            f.write(os.urandom(MiB))
        done = await self.thread(_run, "nbdcopy", self.path("in.img"), self.url("snap-1"))
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(bytes(self.opener.volumes["snap-1"]), bytes(MiB))


class HandshakeTests(ServerCase):
    """Option haggling, byte by byte."""

    async def test_greeting(self):
        """The server offers fixed newstyle and no zeroes."""
        flags = await self.client(lambda c: c.greet())
        self.assertEqual(flags, nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES)

    async def test_unknown_export(self):
        """GO for a missing export is NBD_REP_ERR_UNKNOWN and the client
        may go on negotiating."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> tuple[Any, Any]:
            c.greet()
            return c.go("nope"), c.go("vol-1")
        missing, found = await self.client(run)
        self.assertEqual([k for k, _ in missing], [nbd.REP_ERR_UNKNOWN])
        self.assertEqual(found[-1][0], nbd.REP_ACK)

    async def test_unsupported_options(self):
        """STRUCTURED_REPLY, STARTTLS and unknown options are
        NBD_REP_ERR_UNSUP; LIST then still works."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> list[Any]:
            c.greet()
            out = []
            for option in (nbd.OPT_STRUCTURED_REPLY, nbd.OPT_STARTTLS, 9, 1000):
                c.option(option)
                out.append(c.reply()[:2])
            c.option(nbd.OPT_LIST)
            out.append(c.replies())
            return out
        *unsupported, listing = await self.client(run)
        self.assertEqual(unsupported, [(nbd.OPT_STRUCTURED_REPLY, nbd.REP_ERR_UNSUP),
                                       (nbd.OPT_STARTTLS, nbd.REP_ERR_UNSUP),
                                       (9, nbd.REP_ERR_UNSUP), (1000, nbd.REP_ERR_UNSUP)])
        self.assertEqual(listing, [(nbd.REP_SERVER, b"\0\0\0\x05vol-1"), (nbd.REP_ACK, b"")])

    async def test_info_then_go(self):
        """INFO answers the export's size, flags and block sizes and
        releases the volume; GO answers the same and keeps it open."""
        self.opener.add("vol-1", 3 * MiB)

        def run(c: RawClient) -> tuple[Any, Any]:
            c.greet()
            info = c.go("vol-1", nbd.OPT_INFO)
            return info, c.go("vol-1")
        info, go = await self.client(run)
        self.assertEqual(info, go)
        flags = (nbd.FLAG_HAS_FLAGS | nbd.FLAG_SEND_FLUSH | nbd.FLAG_SEND_FUA
                 | nbd.FLAG_SEND_TRIM | nbd.FLAG_SEND_WRITE_ZEROES | nbd.FLAG_CAN_MULTI_CONN)
        self.assertEqual(info, [
            (nbd.REP_INFO, struct.pack(">HQH", nbd.INFO_EXPORT, 3 * MiB, flags)),
            (nbd.REP_INFO, struct.pack(">HIII", nbd.INFO_BLOCK_SIZE, 1, MiB, 32 * MiB)),
            (nbd.REP_ACK, b""),
        ])
        await self.settled()
        self.assertEqual(len(self.opener.opened), 2)

    async def test_export_name_with_and_without_zeroes(self):
        """EXPORT_NAME answers size and flags, followed by 124 zeros unless
        the client asked for none; a missing export, or a name over the
        option cap, hangs up."""
        self.opener.add("vol-1", MiB)

        def run(flags: int) -> Callable[[RawClient], bytes]:
            def go(c: RawClient) -> bytes:
                c.greet(flags)
                c.option(nbd.OPT_EXPORT_NAME, b"vol-1")
                reply = c.recv(10 if flags & nbd.FLAG_C_NO_ZEROES else 134)
                c.send(nbd.CMD_DISC)
                assert c.at_eof()
                return reply
            return go
        plain = await self.client(run(nbd.FLAG_C_FIXED_NEWSTYLE | nbd.FLAG_C_NO_ZEROES))
        zeroes = await self.client(run(nbd.FLAG_C_FIXED_NEWSTYLE))
        self.assertEqual(plain[:8], struct.pack(">Q", MiB))
        self.assertEqual(zeroes[:10], plain)
        self.assertEqual(zeroes[10:], bytes(124))

        def missing(c: RawClient) -> bool:
            c.greet()
            c.option(nbd.OPT_EXPORT_NAME, b"nope")
            return c.at_eof()
        self.assertTrue(await self.client(missing))

        def too_long(c: RawClient) -> bool:
            c.greet()
            c.option(nbd.OPT_EXPORT_NAME, b"x" * (nbd.MAX_OPTION + 1))
            return c.at_eof()
        self.assertTrue(await self.client(too_long))

    async def test_long_option_skipped(self):
        """Option data over the cap is skipped unbuffered and answered
        NBD_REP_ERR_TOO_BIG; the next option works."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> tuple[Any, Any]:
            c.greet()
            c.option(nbd.OPT_GO, bytes(4 * MiB))
            return c.reply()[1], c.go("vol-1")[-1][0]
        self.assertEqual(await self.client(run), (nbd.REP_ERR_TOO_BIG, nbd.REP_ACK))

    async def test_malformed_go(self):
        """GO data whose lengths do not add up is NBD_REP_ERR_INVALID."""
        def run(c: RawClient) -> int:
            c.greet()
            c.option(nbd.OPT_GO, struct.pack(">I", 100) + b"abc" + b"\0\0")
            return c.reply()[1]
        self.assertEqual(await self.client(run), nbd.REP_ERR_INVALID)

    async def test_bad_option_magic_and_client_flags(self):
        """A bad option magic or unknown client flags close the
        connection."""
        def bad_magic(c: RawClient) -> bool:
            c.greet()
            c.option(nbd.OPT_LIST, magic=0x1234)
            return c.at_eof()

        def bad_flags(c: RawClient) -> bool:
            c.greet(0x80)
            return c.at_eof()
        self.assertTrue(await self.client(bad_magic))
        self.assertTrue(await self.client(bad_flags))

    async def test_abort(self):
        """ABORT is acknowledged, then the server hangs up."""
        def run(c: RawClient) -> tuple[int, bool]:
            c.greet()
            c.option(nbd.OPT_ABORT)
            return c.reply()[1], c.at_eof()
        self.assertEqual(await self.client(run), (nbd.REP_ACK, True))

    async def test_handshake_timeout(self):
        """A client that never finishes its handshake is dropped."""
        self.factory.handshake_timeout = 0.2

        def run(c: RawClient) -> bool:
            c.greet()
            return c.at_eof()
        self.assertTrue(await self.client(run))

    async def test_read_only_server(self):
        """A read-only server opens volumes for reading: READ_ONLY is
        advertised and no writer lock is taken."""
        self.opener.add("vol-1", MiB)
        self.factory.read_only = True

        def run(c: RawClient) -> tuple[int, int]:
            c.greet()
            export = c.go("vol-1")[0][1]
            writers = len(self.opener.writers)
            return struct.unpack(">HQH", export)[2], writers
        flags, writers = await self.client(run)
        self.assertTrue(flags & nbd.FLAG_READ_ONLY)
        self.assertEqual(writers, 0)

    async def test_volume_busy_elsewhere(self):
        """A volume another writer holds (outside this server) is
        NBD_REP_ERR_POLICY with the store's message."""
        self.opener.add("vol-1", MiB)
        self.opener.writers.add("vol-1")

        def run(c: RawClient) -> Any:
            c.greet()
            return c.go("vol-1")
        [(kind, message)] = await self.client(run)
        self.assertEqual(kind, nbd.REP_ERR_POLICY)
        self.assertIn(b"open for writing elsewhere", message)


class TransmissionTests(ServerCase):
    """Commands, byte by byte."""

    async def test_read_write(self):
        """A write is read back; a zero-length read answers no data."""
        data = self.opener.add("vol-1", os.urandom(2 * MiB))

        def run(c: RawClient) -> list[Any]:
            return [c.command(nbd.CMD_WRITE, 1000, 5, b"hello"),
                    c.command(nbd.CMD_READ, 998, 9),
                    c.command(nbd.CMD_READ, 0, 0)]
        before = bytes(data)
        self.assertEqual(await self.client(run, "vol-1"), [
            (0, b""), (0, before[998:1000] + b"hello" + before[1005:1007]), (0, b"")])

    async def test_out_of_range(self):
        """A read, write or trim past the end is EINVAL; the connection
        goes on."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> list[int]:
            return [c.command(nbd.CMD_READ, MiB - 1, 2)[0],
                    c.command(nbd.CMD_WRITE, MiB, 1, b"x")[0],
                    c.command(nbd.CMD_TRIM, 2**63, 1)[0],
                    c.command(nbd.CMD_READ, MiB - 1, 1)[0]]
        self.assertEqual(await self.client(run, "vol-1"),
                         [nbd.EINVAL, nbd.EINVAL, nbd.EINVAL, 0])

    async def test_read_only(self):
        """A read-only export advertises READ_ONLY and refuses writes, trims
        and zeroing with EPERM (a write's payload is still consumed)."""
        data = self.opener.add("snap-1", os.urandom(MiB), snapshot=True)

        def run(c: RawClient) -> tuple[Any, list[int]]:
            c.greet()
            go = c.go("snap-1")
            return go, [c.command(nbd.CMD_WRITE, 0, 4, b"abcd")[0],
                        c.command(nbd.CMD_TRIM, 0, MiB)[0],
                        c.command(nbd.CMD_WRITE_ZEROES, 0, 10)[0],
                        c.command(nbd.CMD_FLUSH)[0]]
        before = bytes(data)
        go, errors = await self.client(run)
        (_, export) = go[0]
        (_, _, flags) = struct.unpack(">HQH", export)
        self.assertTrue(flags & nbd.FLAG_READ_ONLY)
        self.assertEqual(errors, [nbd.EPERM, nbd.EPERM, nbd.EPERM, 0])
        self.assertEqual(bytes(data), before)

    async def test_oversize(self):
        """A READ or WRITE over 32 MiB is EINVAL (the WRITE's payload is
        read and dropped); the connection goes on."""
        data = self.opener.add("vol-1", 64 * MiB)
        big = 32 * MiB + 1

        def run(c: RawClient) -> list[int]:
            return [c.command(nbd.CMD_READ, 0, big)[0],
                    c.command(nbd.CMD_WRITE, 0, big, b"\xff" * big)[0],
                    c.command(nbd.CMD_WRITE, 0, 32 * MiB, b"\x01" * (32 * MiB))[0]]
        self.assertEqual(await self.client(run, "vol-1"), [nbd.EINVAL, nbd.EINVAL, 0])
        self.assertEqual((data[32 * MiB - 1], data[32 * MiB]), (1, 0))

    async def test_large_trim_and_zero(self):
        """TRIM and WRITE_ZEROES take any length (mkfs trims a whole
        device at once): 48 MiB of each succeed."""
        data = self.opener.add("vol-1", b"\x07" * (64 * MiB))

        def run(c: RawClient) -> list[int]:
            return [c.command(nbd.CMD_TRIM, 0, 48 * MiB)[0],
                    c.command(nbd.CMD_WRITE_ZEROES, 16 * MiB, 48 * MiB)[0]]
        self.assertEqual(await self.client(run, "vol-1"), [0, 0])
        self.assertEqual(data, bytes(64 * MiB))
        self.assertIn(("trim", 0, 48 * MiB), self.opener.log)
        self.assertIn(("zero", 16 * MiB, 48 * MiB), self.opener.log)

    async def test_fua(self):
        """FUA flushes after the command and before its reply; without it
        there is no flush."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> list[Any]:
            c.command(nbd.CMD_WRITE, 0, 3, b"abc")
            plain = list(self.opener.log)
            c.command(nbd.CMD_WRITE, 0, 3, b"def", nbd.CMD_FLAG_FUA)
            fua = list(self.opener.log)
            c.command(nbd.CMD_WRITE_ZEROES, 0, 3, flags=nbd.CMD_FLAG_FUA)
            return [plain, fua, list(self.opener.log)]
        plain, fua, zero = await self.client(run, "vol-1")
        self.assertEqual(plain, [("write", 0, 3)])
        self.assertEqual(fua[1:], [("write", 0, 3), ("flush",)])
        self.assertEqual(zero[3:], [("zero", 0, 3), ("flush",)])

    async def test_pipelined_in_order(self):
        """Requests sent back to back are answered in order, each after
        the ones before it took effect."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> list[Any]:
            handles = [c.send(nbd.CMD_WRITE, 0, 2, b"ab"), c.send(nbd.CMD_READ, 0, 2),
                       c.send(nbd.CMD_WRITE, 0, 2, b"cd"), c.send(nbd.CMD_READ, 0, 2)]
            answers = [c.answer(), c.answer(2), c.answer(), c.answer(2)]
            return [h == a[1] for h, a in zip(handles, answers, strict=True)] + [a[2] for a in answers]
        self.assertEqual(await self.client(run, "vol-1"),
                         [True] * 4 + [b"", b"ab", b"", b"cd"])

    async def test_bounded_buffering(self):
        """While the store is slow, the server stops reading: a client
        pushing 96 MiB of writes gets only about one request's worth
        buffered by the server (the rest waits in the kernel); once the
        store moves again every write is acknowledged in order."""
        data = self.opener.add("vol-1", 8 * MiB)
        self.opener.gate = defer.Deferred()
        stream = b"".join(
            struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, nbd.CMD_WRITE, i, (i % 8) * MiB, MiB)
            + bytes([i]) * MiB for i in range(96))
        client = await self.thread(lambda: RawClient(self.port).connect("vol-1"))
        self.addCleanup(client.close)

        def push(until_blocked: bool) -> int:
            client.sock.settimeout(0.5 if until_blocked else 10)
            while self.sent < len(stream):
                try:
                    self.sent += client.sock.send(stream[self.sent:self.sent + MiB])
                except TimeoutError:
                    break
            return self.sent
        self.sent = 0
        await self.thread(push, True)
        self.assertLess(self.sent, len(stream))
        [server] = self.protocols
        buffered = server._queued_bytes + len(server._buf)
        self.assertLess(buffered, nbd.HIGH_WATER + 2 * MiB + 32 * nbd.REQUEST_COST,
                        (buffered, self.sent))
        gate, self.opener.gate = self.opener.gate, None
        gate.callback(None)

        def finish() -> list[tuple[int, int]]:
            push(False)
            return [client.answer()[:2] for _ in range(96)]
        self.assertEqual(await self.thread(finish), [(0, i) for i in range(96)])
        self.assertEqual(data[7 * MiB], 95)

    async def test_errors_mapped(self):
        """A full store is ENOSPC; an unknown command is EINVAL."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> list[int]:
            self.opener.full = True
            return [c.command(nbd.CMD_WRITE, 0, 1, b"x")[0], c.command(99)[0]]
        self.assertEqual(await self.client(run, "vol-1"), [nbd.ENOSPC, nbd.EINVAL])

    async def test_multi_connection_shares_the_volume(self):
        """Two writable connections to one volume share one open handle: a
        write acknowledged on one is read on the other; the volume closes
        when the last one goes."""
        self.opener.add("vol-1", MiB)

        def run() -> bytes:
            a, b = RawClient(self.port).connect("vol-1"), RawClient(self.port).connect("vol-1")
            try:
                a.command(nbd.CMD_WRITE, 10, 4, b"both")
                return b.command(nbd.CMD_READ, 10, 4)[1]
            finally:
                a.close()
                b.close()
        self.assertEqual(await self.thread(run), b"both")
        await self.settled()
        self.assertEqual(len(self.opener.opened), 1)
        self.assertEqual(self.opener.log[-1], ("close", "vol-1"))

    async def test_disconnect_closes_volume(self):
        """Dropping the connection without DISC, or sending DISC, closes
        the volume (and frees its writer lock)."""
        self.opener.add("vol-1", MiB)
        await self.client(lambda c: c.command(nbd.CMD_WRITE, 0, 1, b"x"), "vol-1")
        await self.opener.opened[0].closed
        self.assertEqual(self.opener.writers, set())

        def disc(c: RawClient) -> bool:
            c.send(nbd.CMD_DISC)
            return c.at_eof()
        self.assertTrue(await self.client(disc, "vol-1"))
        await self.opener.opened[1].closed
        self.assertEqual(self.factory.open_volumes(), {})

    async def test_bad_request_magic(self):
        """A request with a bad magic closes the connection and the
        volume."""
        self.opener.add("vol-1", MiB)

        def run(c: RawClient) -> bool:
            c.send(nbd.CMD_READ, 0, 1, magic=0xDEADBEEF)
            return c.at_eof()
        self.assertTrue(await self.client(run, "vol-1"))
        await self.opener.opened[0].closed


class VolumeStoreTests(ClientCase):
    """The same clients against the real volume store
    (``snfd.archip.volumes``) instead of the test double."""

    def setUp(self) -> None:
        super().setUp()
        from snfd.archip.volumes import VolumeStore
        from snfd.pithos.blocks import FileBlockStore

        blocks = FileBlockStore(self.path("blocks"), reactor, block_size=MiB)
        self.store = VolumeStore(self.path("volumes"), blocks, reactor)
        self.factory.opener = self.store

    async def test_nbdcopy_into_store(self):
        """nbdcopy (four connections) writes a sparse file into an empty
        volume of the store and reads it back identical; qemu-img sees its
        size; the store's one-writer lock never refuses the connections."""
        await self.store.create("vol-1", 16 * MiB)
        head, tail = os.urandom(5 * MiB + 100), os.urandom(6 * MiB)
        with open(self.path("in.img"), "wb") as f:
            f.write(head)
            f.seek(16 * MiB - len(tail))
            f.write(tail)
        with open(self.path("in.img"), "rb") as f:
            source = f.read()
        self.assertEqual(len(source), 16 * MiB)
        done = await self.thread(_run, "nbdcopy", "--connections", "4", "--threads", "4",
                                 "--flush", self.path("in.img"), self.url("vol-1"))
        self.assertEqual(done.returncode, 0, done.stderr)
        await self.settled()
        done = await self.thread(_run, "nbdcopy", "--connections", "4", "--threads", "4",
                                 self.url("vol-1"), self.path("out.img"))
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(self.path("out.img"), "rb") as f:
            self.assertEqual(f.read(), source)
        await self.settled()
        done = await self.thread(_run, "qemu-img", "info", "--output=json", self.url("vol-1"))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["virtual-size"], 16 * MiB)


class TlsTests(ServerCase):
    """With a TLS context the server requires STARTTLS (the protocol's
    "forced TLS"): before it only STARTTLS and ABORT are answered."""

    def setUp(self) -> None:
        from twisted.internet import ssl

        from snfd.tls import self_signed

        self.cert, key = self_signed("127.0.0.1", ["127.0.0.1"])
        super().setUp()
        self.factory.tls = ssl.PrivateCertificate.loadPEM(self.cert + key).options()

    async def test_starttls_required(self):
        """GO and LIST before STARTTLS are TLS_REQD; STARTTLS with data is
        invalid; after it the same connection, now TLS, serves the volume;
        a second STARTTLS is invalid."""
        import ssl as pyssl

        self.opener.add("vol-1", MiB)
        cert = self.cert.decode()

        def run(client: RawClient) -> list[Any]:
            out: list[Any] = []
            client.greet()
            client.option(nbd.OPT_LIST)
            out.append(client.reply()[1])
            client.option(nbd.OPT_GO, struct.pack(">I", 5) + b"vol-1" + struct.pack(">H", 0))
            out.append(client.reply()[1])
            client.option(nbd.OPT_STARTTLS, b"x")
            out.append(client.reply()[1])
            client.option(nbd.OPT_STARTTLS)
            out.append(client.reply()[1])
            context = pyssl.create_default_context(cadata=cert)
            client.sock = context.wrap_socket(client.sock, server_hostname="127.0.0.1")
            client.option(nbd.OPT_STARTTLS)
            out.append(client.reply()[1])
            out.append(client.go("vol-1")[-1][0])
            client.command(nbd.CMD_WRITE, 4096, 5, b"hello")
            out.append(client.command(nbd.CMD_READ, 4096, 5))
            return out

        got = await self.client(run)
        self.assertEqual(got, [nbd.REP_ERR_TLS_REQD, nbd.REP_ERR_TLS_REQD, nbd.REP_ERR_INVALID,
                               nbd.REP_ACK, nbd.REP_ERR_INVALID, nbd.REP_ACK, (0, b"hello")])

    async def test_export_name_in_the_clear_hangs_up(self):
        self.opener.add("vol-1", MiB)

        def run(client: RawClient) -> bytes:
            client.greet()
            client.option(nbd.OPT_EXPORT_NAME, b"vol-1")
            try:
                return client.sock.recv(1)
            except ConnectionResetError:  # aborted: closed without a goodbye
                return b""

        self.assertEqual(await self.client(run), b"")

    async def test_nbdinfo_over_tls(self):
        """libnbd's nbdinfo reaches the volume with nbds:// and is refused
        with plain nbd://."""
        why = tools_unavailable()
        if why:
            raise unittest.SkipTest(why)
        self.opener.add("vol-1", 2 * MiB)
        url = f"nbds://127.0.0.1:{self.port}/vol-1?tls-verify-peer=false"
        done = await self.thread(_run, "nbdinfo", "--json", url)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["exports"][0]["export-size"], 2 * MiB)
        done = await self.thread(_run, "nbdinfo", "--json", self.url("vol-1"))
        self.assertNotEqual(done.returncode, 0)


_LIBNBD_SCRIPT = r"""
import json, sys
import nbd

url = sys.argv[1]
out = {}
a, b = nbd.NBD(), nbd.NBD()
a.connect_uri(url)
b.connect_uri(url)
out["size"] = a.get_size()
out["multi_conn"] = a.can_multi_conn()
out["flush"], out["trim"], out["zero"] = a.can_flush(), a.can_trim(), a.can_zero()
a.pwrite(b"written on a" * 100, 65536)
a.flush()
out["read_on_b"] = b.pread(1200, 65536).decode()
b.zero(65536, 65536)
out["zeroed_on_a"] = a.pread(16, 65536) == bytes(16)
try:
    a.pread(10, out["size"])
    out["past_end"] = "read"
except nbd.Error as e:
    out["past_end"] = e.errno
a.shutdown()
b.shutdown()
print(json.dumps(out))
"""


class LibnbdTests(ServerCase):
    """python3-libnbd (Debian's, for /usr/bin/python3): two handles on one
    export see each other's writes (multi-conn), and the errors map."""

    async def test_python_libnbd(self):
        def probe() -> int:
            return subprocess.run(["/usr/bin/python3", "-c", "import nbd"],
                                  capture_output=True, timeout=60).returncode

        if await self.thread(probe) != 0:
            raise unittest.SkipTest("python3-libnbd is not installed (Debian python3-libnbd;"
                                    " ./dev test installs it)")
        self.opener.add("vol-1", 4 * MiB)

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(["/usr/bin/python3", "-c", _LIBNBD_SCRIPT, self.url("vol-1")],
                                  capture_output=True, text=True, timeout=60)

        done = await self.thread(run)
        self.assertEqual(done.returncode, 0, done.stderr)
        got = json.loads(done.stdout)
        self.assertEqual(got, {"size": 4 * MiB, "multi_conn": True, "flush": True,
                               "trim": True, "zero": True,
                               "read_on_b": "written on a" * 100, "zeroed_on_a": True,
                               "past_end": "EINVAL"})
