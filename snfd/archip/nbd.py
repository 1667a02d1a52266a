"""An NBD server for volumes: fixed-newstyle negotiation, simple replies.

``NbdServerFactory(opener, reactor=...)`` serves every volume a
``VolumeOpener`` knows, the export name being the volume's name.  Written
from the protocol's specification (NetworkBlockDevice/nbd ``doc/proto.md``).

What it speaks:

- Handshake: fixed newstyle with ``NO_ZEROES``; the options
  ``EXPORT_NAME``, ``GO``, ``INFO`` (``NBD_INFO_EXPORT`` and
  ``NBD_INFO_BLOCK_SIZE``: minimum 1, preferred the volume's object size,
  maximum 32 MiB), ``LIST``, ``ABORT``, and ``STARTTLS`` when the factory
  has a TLS context (then required: Twisted's ``startTLS`` on the
  connection); every other option, including ``STRUCTURED_REPLY``, is
  answered ``NBD_REP_ERR_UNSUP``.
  A missing export is ``NBD_REP_ERR_UNKNOWN``; a volume held by a writer
  outside this server is ``NBD_REP_ERR_POLICY``.  Option data longer than
  ``MAX_OPTION`` is skipped unread and answered ``NBD_REP_ERR_TOO_BIG``
  (for ``EXPORT_NAME``, which has no error reply, the server hangs up, as
  it does for a bad magic or unknown client flags).  A handshake not
  finished within ``handshake_timeout`` seconds is dropped.
- Transmission flags: ``HAS_FLAGS``, ``SEND_FLUSH``, ``SEND_FUA``,
  ``SEND_TRIM``, ``SEND_WRITE_ZEROES``, ``CAN_MULTI_CONN``, and
  ``READ_ONLY`` for a read-only volume.
- Commands ``READ``, ``WRITE``, ``FLUSH``, ``TRIM``, ``WRITE_ZEROES`` (with
  ``FLAG_FUA``: a flush after the command, before the reply) and ``DISC``.
  Errors: ``EINVAL`` outside the export, for an unknown command and for a
  ``READ``/``WRITE`` over ``MAX_PAYLOAD`` (``TRIM`` and ``WRITE_ZEROES``
  take any length: mkfs trims the whole device at once); ``EPERM`` for a
  write to a read-only volume; ``ENOSPC`` when the store is out of space;
  ``EIO`` otherwise (logged with its traceback).

Buffering is bounded both ways: a request's payload is collected up to its
declared length (at most ``MAX_PAYLOAD``; a longer WRITE's payload is
discarded as it arrives and the request fails), reading from the socket
pauses while more than ``HIGH_WATER`` bytes wait, and a connection's
commands wait while the socket's send buffer is full.  Each connection runs
its commands one at a time, in order; parallelism comes from several
connections.

**One open volume per node.**  The factory holds a single open
``VolumeIO`` per volume, shared by every connection of this server to that
volume and reference counted; the last connection to go closes it.  That is
what ``CAN_MULTI_CONN`` promises (a write acknowledged on one connection is
seen by a read on any other, a flush on one covers writes acknowledged on
all), and it is why a multi-connection client such as ``nbdcopy`` (four
connections) never meets the store's one-writer-per-volume lock
(``VolumeBusy``) against itself.  Opening and closing a volume hold a
per-volume lock, so a connection arriving while the last one closes waits
for the close and then opens afresh.  Volumes are opened writable unless
the factory is ``read_only``; one whose writable open raises
``PermissionError`` (a snapshot) is served read-only.  ``INFO`` holds the
volume only while it answers.
"""

from __future__ import annotations

import errno
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from snfd import errors
from snfd.archip.io import VolumeBusy, VolumeIO, VolumeOpener

# Magic numbers.
NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9  # option replies
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

# Handshake flags (server) and client flags.
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# Transmission flags.
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_SEND_TRIM = 1 << 5
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_CAN_MULTI_CONN = 1 << 8

# Options.
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8

# Option replies.
REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_ERR_UNSUP = 2**31 + 1
REP_ERR_POLICY = 2**31 + 2
REP_ERR_INVALID = 2**31 + 3
REP_ERR_TLS_REQD = 2**31 + 5
REP_ERR_UNKNOWN = 2**31 + 6
REP_ERR_TOO_BIG = 2**31 + 9

# Information types.
INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

# Commands and command flags.
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_WRITE_ZEROES = 6
CMD_FLAG_FUA = 1 << 0

# Error values (the protocol's, which are Linux's).
EPERM = 1
EIO = 5
EINVAL = 22
ENOSPC = 28

#: The largest READ or WRITE payload, advertised as the maximum block size.
MAX_PAYLOAD = 32 * 1024 * 1024
#: The longest option data read during the handshake (names are at most
#: 4096 bytes; GO/INFO add a few info requests).
MAX_OPTION = 16 * 1024
#: Bytes of requests received and not yet served above which reading from
#: the socket pauses, and below which it resumes.  Each queued request
#: counts ``REQUEST_COST`` beside its payload, so a flood of small requests
#: is bounded too.  Unparsed input is bounded apart: at most one partial
#: request (requests are parsed as soon as they are complete), or
#: ``MAX_OPTION`` while an option is being answered.
HIGH_WATER = MAX_PAYLOAD
LOW_WATER = MAX_PAYLOAD // 4
REQUEST_COST = 4096

_OPTION_HEADER = struct.Struct(">QII")
_OPTION_REPLY = struct.Struct(">QIII")
_REQUEST = struct.Struct(">IHHQQI")
_SIMPLE_REPLY = struct.Struct(">IIQ")

_TRANSMISSION_FLAGS = (
    FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM
    | FLAG_SEND_WRITE_ZEROES | FLAG_CAN_MULTI_CONN
)


def transmission_flags(volume: VolumeIO) -> int:
    """The transmission flags an export of ``volume`` advertises."""
    return _TRANSMISSION_FLAGS | (FLAG_READ_ONLY if volume.read_only else 0)


def preferred_block_size(volume: VolumeIO) -> int:
    """The volume's object size as the protocol allows it: a power of two
    between 512 and ``MAX_PAYLOAD``."""
    size = min(max(volume.block_size, 512), MAX_PAYLOAD)
    return 1 << (size.bit_length() - 1)


def nbd_error(failure: BaseException) -> int:
    """The NBD error value for an exception a volume raised."""
    if isinstance(failure, ValueError):
        return EINVAL
    if isinstance(failure, PermissionError):
        return EPERM
    if isinstance(failure, OSError) and failure.errno in (errno.ENOSPC, errno.EDQUOT):
        return ENOSPC
    return EIO


@dataclass
class _Shared:
    volume: VolumeIO
    refs: int


@dataclass
class _Request:
    flags: int
    kind: int
    handle: int
    offset: int
    length: int
    data: bytes | None = None
    error: int = 0  # decided while parsing (an oversized WRITE)


class NbdServerFactory(Factory):
    """Serves the volumes of ``opener`` over NBD.

    ``read_only`` opens every volume for reading only.  A connection that
    has not finished its handshake after ``handshake_timeout`` seconds is
    dropped.  ``tls`` (a Twisted TLS server context, such as
    ``ssl.CertificateOptions``) makes TLS required: a client must send
    ``STARTTLS`` before any option but ``ABORT`` (others are answered
    ``NBD_REP_ERR_TLS_REQD``; ``EXPORT_NAME`` is hung up on).
    """

    log = Logger()

    def __init__(self, opener: VolumeOpener, *, reactor: Any, read_only: bool = False,
                 handshake_timeout: float = 30.0, tls: Any = None) -> None:
        self.opener = opener
        self.reactor = reactor
        self.read_only = read_only
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self._shared: dict[str, _Shared] = {}
        self._locks: dict[str, defer.DeferredLock] = {}

    def buildProtocol(self, addr: Any) -> Any:
        protocol = NbdServerProtocol()
        protocol.factory = self
        return protocol

    def open_volumes(self) -> dict[str, int]:
        """The volumes open now, with how many connections share each."""
        return {name: shared.refs for name, shared in self._shared.items()}

    def _lock(self, name: str) -> defer.DeferredLock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = defer.DeferredLock()
        return lock

    def _forget_lock(self, name: str) -> None:
        lock = self._locks.get(name)
        if lock is not None and not lock.locked and not lock.waiting and name not in self._shared:
            del self._locks[name]

    async def acquire(self, name: str) -> VolumeIO:
        """The shared open volume ``name``, opening it for the first
        connection.  Raises what the opener raises (``KeyError``,
        ``VolumeBusy``)."""
        lock = self._lock(name)
        await lock.acquire()
        try:
            shared = self._shared.get(name)
            if shared is None:
                volume = await self._open(name)
                shared = self._shared[name] = _Shared(volume, 0)
            shared.refs += 1
            return shared.volume
        finally:
            lock.release()
            self._forget_lock(name)

    async def _open(self, name: str) -> VolumeIO:
        if self.read_only:
            return await self.opener.open(name, writable=False)
        try:
            return await self.opener.open(name, writable=True)
        except PermissionError:
            # A volume that cannot be written (a snapshot) is served
            # read-only.
            return await self.opener.open(name, writable=False)

    async def release(self, name: str) -> None:
        """One connection is done with ``name``; the last one closes it."""
        lock = self._lock(name)
        await lock.acquire()
        try:
            shared = self._shared[name]
            shared.refs -= 1
            if shared.refs == 0:
                del self._shared[name]
                try:
                    await shared.volume.close()
                except Exception:
                    self.log.failure("closing volume {name}", name=name)
        finally:
            lock.release()
            self._forget_lock(name)


@implementer(IPushProducer)
class NbdServerProtocol(Protocol):
    """One client connection: the handshake, then its commands in order."""

    factory: NbdServerFactory
    log = Logger()

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._state = "client_flags"
        self._need = 4
        self._option: tuple[int, int] | None = None
        self._discard = 0
        self._request: _Request | None = None
        self._busy = False  # an option is being answered
        self._parsing = False
        self._no_zeroes = False
        self._name: str | None = None
        self.volume: VolumeIO | None = None
        self._queue: deque[_Request] = deque()
        self._queued_bytes = 0
        self._working = False  # commands are being served
        self._read_paused = False
        self._write_paused: defer.Deferred[None] | None = None
        self._lost = False
        self._closing = False
        self._timeout: Any = None
        self._tls = False  # STARTTLS done

    @property
    def _t(self) -> Any:
        return self.transport

    # -- connection

    def connectionMade(self) -> None:
        transport = self._t
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        self._timeout = self.factory.reactor.callLater(
            self.factory.handshake_timeout, self._handshake_timed_out)
        transport.write(struct.pack(">QQH", NBDMAGIC, IHAVEOPT,
                                    FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))

    def _handshake_timed_out(self) -> None:
        self._timeout = None
        self.log.info("NBD handshake timed out")
        self._abort()

    def _abort(self) -> None:
        self._closing = True
        transport = self._t
        transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self._queue.clear()
        if self._write_paused is not None:
            paused, self._write_paused = self._write_paused, None
            paused.callback(None)
        if not self._working:
            self._release()

    def _release(self) -> None:
        if self._name is not None:
            name, self._name, self.volume = self._name, None, None
            defer.ensureDeferred(self.factory.release(name)).addErrback(
                lambda f: self.log.failure("releasing volume", f))

    # -- IPushProducer: the transport's send buffer is full or drained

    def pauseProducing(self) -> None:
        if self._write_paused is None:
            self._write_paused = defer.Deferred()

    def resumeProducing(self) -> None:
        if self._write_paused is not None:
            paused, self._write_paused = self._write_paused, None
            paused.callback(None)

    def stopProducing(self) -> None:
        pass

    # -- input

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._buf += data
        self._parse()
        self._flow()

    def _flow(self) -> None:
        """Pause reading from the socket while too much waits, resume when
        it was served."""
        if self._busy:
            # Nothing is parsed while an option is answered, and a client
            # must wait for the answer: hold back whatever it sends.
            full = len(self._buf) - self._pos > MAX_OPTION
            drained = not full
        else:
            full = self._queued_bytes > HIGH_WATER
            drained = self._queued_bytes < LOW_WATER
        if not self._read_paused and full:
            self._read_paused = True
            self._t.pauseProducing()
        elif self._read_paused and drained:
            self._read_paused = False
            self._t.resumeProducing()

    def _take(self, n: int) -> bytes:
        with memoryview(self._buf) as view:
            data = bytes(view[self._pos:self._pos + n])
        self._pos += n
        return data

    def _parse(self) -> None:
        if self._parsing:
            return
        self._parsing = True
        try:
            self._parse_some()
        finally:
            self._parsing = False

    def _parse_some(self) -> None:
        while not self._closing and not self._busy:
            if self._state == "discard":
                n = min(self._discard, len(self._buf) - self._pos)
                self._pos += n
                self._discard -= n
                if self._discard:
                    break
                self._discarded()
                continue
            if len(self._buf) - self._pos < self._need:
                break
            chunk = self._take(self._need)
            getattr(self, "_on_" + self._state)(chunk)
        if self._pos > 1 << 20 or self._pos == len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0

    def _expect(self, state: str, need: int) -> None:
        self._state, self._need = state, need

    # -- handshake

    def _on_client_flags(self, chunk: bytes) -> None:
        (flags,) = struct.unpack(">I", chunk)
        if flags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES):
            self.log.info("NBD client flags {flags:#x} not understood", flags=flags)
            self._abort()
            return
        self._no_zeroes = bool(flags & FLAG_C_NO_ZEROES)
        self._expect("option_header", _OPTION_HEADER.size)

    def _on_option_header(self, chunk: bytes) -> None:
        magic, option, length = _OPTION_HEADER.unpack(chunk)
        if magic != IHAVEOPT:
            self.log.info("NBD option with a bad magic {magic:#x}", magic=magic)
            self._abort()
            return
        self._option = (option, length)
        if length > MAX_OPTION and option == OPT_EXPORT_NAME:
            self.log.info("NBD export name of {length} bytes", length=length)
            self._abort()  # EXPORT_NAME has no error reply
            return
        if length > MAX_OPTION:
            self._discard = length
            self._state = "discard"
        elif length:
            self._expect("option_data", length)
        else:
            self._on_option_data(b"")

    def _discarded(self) -> None:
        if self._option is not None:
            option, _ = self._option
            self._option = None
            self._reply(option, REP_ERR_TOO_BIG, b"option data too long")
            self._expect("option_header", _OPTION_HEADER.size)
        else:
            request, self._request = self._request, None
            assert request is not None
            self._enqueue(request)
            self._expect("request", _REQUEST.size)

    def _on_option_data(self, data: bytes) -> None:
        assert self._option is not None
        option, _ = self._option
        self._option = None
        self._busy = True
        d = defer.ensureDeferred(self._handle_option(option, data))
        d.addErrback(self._option_failed, option)
        d.addBoth(self._option_done)

    def _option_failed(self, failure: Failure, option: int) -> None:
        self.log.failure("NBD option {option}", failure, option=option)
        self._abort()

    def _option_done(self, _: object) -> None:
        self._busy = False
        if not self._lost and not self._closing:
            self._parse()
            self._flow()

    def _reply(self, option: int, kind: int, data: bytes = b"") -> None:
        self._t.write(_OPTION_REPLY.pack(REPLY_MAGIC, option, kind, len(data)) + data)

    async def _handle_option(self, option: int, data: bytes) -> None:
        self._expect("option_header", _OPTION_HEADER.size)
        if self.factory.tls is not None and not self._tls:
            # TLS is required: before it, only STARTTLS and ABORT.
            if option == OPT_STARTTLS:
                if data:
                    self._reply(option, REP_ERR_INVALID, b"STARTTLS takes no data")
                    return
                self._reply(option, REP_ACK)
                self._t.startTLS(self.factory.tls)
                self._tls = True
                return
            if option == OPT_EXPORT_NAME:
                self.log.info("NBD EXPORT_NAME before STARTTLS: hanging up")
                self._abort()
                return
            if option != OPT_ABORT:
                self._reply(option, REP_ERR_TLS_REQD, b"STARTTLS first")
                return
        if option == OPT_STARTTLS:
            self._reply(option, REP_ERR_INVALID if self._tls else REP_ERR_UNSUP,
                        b"TLS already started" if self._tls else b"TLS is not served here")
            return
        if option == OPT_EXPORT_NAME:
            await self._export_name(data)
        elif option in (OPT_GO, OPT_INFO):
            await self._go_or_info(option, data)
        elif option == OPT_LIST:
            if data:
                self._reply(option, REP_ERR_INVALID, b"LIST takes no data")
                return
            for name in await self.factory.opener.names():
                encoded = name.encode()
                self._reply(option, REP_SERVER, struct.pack(">I", len(encoded)) + encoded)
            self._reply(option, REP_ACK)
        elif option == OPT_ABORT:
            self._reply(option, REP_ACK)
            self._closing = True
            self._t.loseConnection()
        else:
            self._reply(option, REP_ERR_UNSUP, b"option not supported")

    async def _export_name(self, data: bytes) -> None:
        try:
            name = data.decode()
            volume = await self.factory.acquire(name)
        except Exception as e:
            # The option has no error reply: the protocol says hang up.
            self.log.info("NBD export {name!r} refused: {e!r}", name=data, e=e)
            self._abort()
            return
        if not self._enter(name, volume):
            return
        reply = struct.pack(">QH", volume.size, transmission_flags(volume))
        self._t.write(reply if self._no_zeroes else reply + bytes(124))

    async def _go_or_info(self, option: int, data: bytes) -> None:
        if len(data) < 6:
            self._reply(option, REP_ERR_INVALID, b"option data too short")
            return
        (length,) = struct.unpack_from(">I", data)
        if length > len(data) - 6:
            self._reply(option, REP_ERR_INVALID, b"export name longer than the option")
            return
        (count,) = struct.unpack_from(">H", data, 4 + length)
        if len(data) != 6 + length + 2 * count:
            self._reply(option, REP_ERR_INVALID, b"information requests do not match the length")
            return
        try:
            name = data[4:4 + length].decode()
        except UnicodeDecodeError:
            self._reply(option, REP_ERR_INVALID, b"export name is not UTF-8")
            return
        try:
            volume = await self.factory.acquire(name)
        except KeyError:
            self._reply(option, REP_ERR_UNKNOWN, f"no export {name!r}".encode())
            return
        except VolumeBusy as e:
            self._reply(option, REP_ERR_POLICY, str(e).encode())
            return
        if option == OPT_GO and not self._enter(name, volume):
            return
        self._reply(option, REP_INFO, struct.pack(
            ">HQH", INFO_EXPORT, volume.size, transmission_flags(volume)))
        self._reply(option, REP_INFO, struct.pack(
            ">HIII", INFO_BLOCK_SIZE, 1, preferred_block_size(volume), MAX_PAYLOAD))
        self._reply(option, REP_ACK)
        if option == OPT_INFO:
            await self.factory.release(name)

    def _enter(self, name: str, volume: VolumeIO) -> bool:
        """Into transmission with ``volume``; False when the client left
        while the volume was being opened (then it is released)."""
        self._name, self.volume = name, volume
        if self._lost:
            self._release()
            return False
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self._expect("request", _REQUEST.size)
        return True

    # -- transmission

    def _on_request(self, chunk: bytes) -> None:
        magic, flags, kind, handle, offset, length = _REQUEST.unpack(chunk)
        if magic != REQUEST_MAGIC:
            self.log.info("NBD request with a bad magic {magic:#x}", magic=magic)
            self._abort()
            return
        request = _Request(flags, kind, handle, offset, length)
        if kind == CMD_WRITE:
            if length > MAX_PAYLOAD:
                request.error = EINVAL
                self._request, self._discard = request, length
                self._state = "discard"
                return
            if length:
                self._request = request
                self._expect("payload", length)
                return
            request.data = b""
        self._enqueue(request)
        if kind == CMD_DISC:
            # Nothing after a disconnect request is read.
            self._closing = True

    def _on_payload(self, data: bytes) -> None:
        request, self._request = self._request, None
        assert request is not None
        request.data = data
        self._enqueue(request)
        self._expect("request", _REQUEST.size)

    def _enqueue(self, request: _Request) -> None:
        self._queue.append(request)
        self._queued_bytes += REQUEST_COST + len(request.data or b"")
        if not self._working:
            defer.ensureDeferred(self._work()).addErrback(
                lambda f: self.log.failure("NBD commands", f))

    async def _work(self) -> None:
        self._working = True
        try:
            while self._queue and not self._lost:
                if self._write_paused is not None:
                    await self._write_paused
                    continue
                request = self._queue.popleft()
                self._queued_bytes -= REQUEST_COST + len(request.data or b"")
                await self._serve(request)
                if not self._lost:
                    self._flow()
        finally:
            self._working = False
            if self._lost:
                self._release()

    def _send(self, handle: int, error: int, data: bytes = b"") -> None:
        header = _SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, handle)
        if data:
            self._t.writeSequence([header, data])
        else:
            self._t.write(header)

    async def _serve(self, request: _Request) -> None:
        volume = self.volume
        assert volume is not None
        kind, offset, length = request.kind, request.offset, request.length
        if kind == CMD_DISC:
            self._t.loseConnection()
            return
        if request.error:
            self._send(request.handle, request.error)
            return
        if kind not in (CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES):
            self._send(request.handle, EINVAL)
            return
        if kind != CMD_FLUSH and offset + length > volume.size:
            self._send(request.handle, EINVAL)
            return
        if kind == CMD_READ and length > MAX_PAYLOAD:
            self._send(request.handle, EINVAL)
            return
        if kind in (CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES) and volume.read_only:
            self._send(request.handle, EPERM)
            return
        try:
            data = await self._run(volume, request)
            if request.flags & CMD_FLAG_FUA and kind != CMD_READ:
                await volume.flush()
        except Exception as e:
            code = nbd_error(e)
            # A fault's cause is logged where it arose (the block store's
            # failing disk, once per streak), not once per command.
            if code == EIO and not isinstance(e, errors.Fault):
                self.log.failure("NBD command {kind} on {name}", kind=kind, name=self._name)
            self._send(request.handle, code)
            return
        self._send(request.handle, 0, data)

    async def _run(self, volume: VolumeIO, request: _Request) -> bytes:
        kind, offset, length = request.kind, request.offset, request.length
        if kind == CMD_READ:
            if not length:
                return b""
            data = await volume.read(offset, length)
            if len(data) != length:
                raise OSError(errno.EIO, f"short read: {len(data)} of {length} bytes")
            return data
        if kind == CMD_WRITE:
            assert request.data is not None
            if length:
                await volume.write(offset, request.data)
        elif kind == CMD_FLUSH:
            await volume.flush()
        elif kind == CMD_TRIM:
            if length:
                await volume.trim(offset, length)
        elif kind == CMD_WRITE_ZEROES:
            if length:
                await volume.write_zeroes(offset, length)
        return b""


