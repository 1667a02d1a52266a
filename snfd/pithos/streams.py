"""Object bytes on the wire: request bodies streamed into the block store,
and byte ranges of stored objects streamed to responses.

Upload: the HTTP layer's ``body_sink`` (see ``snfd.web.site.Root.body_sink``)
returns a ``BlockSink``; twisted writes the body into it chunk by chunk, the
sink cuts it into blocks and stores each in a thread as soon as it is
complete, so a body is never held in memory, and the handler awaits
``BlockSink.result()`` for the hashmap (and MD5).

Download: ``send_range`` writes ``[start, end)`` of an object to a request
with flow control, reading one block ahead; ``read_range`` returns a small
range as ``bytes``.  Both follow the reference's rule: every block is
right-padded with zeros to the block size and the whole is cut to the
object's size; they read from each block only the bytes they send
(``IBlockStore.read``).  Both, and every other read of an object's blocks for a
client, go through ``read_block``: a block the object references and the
store lacks is data loss, logged (error) and answered 503
(``BlockMissing``).  A block the store cannot read is its own 503
(``snfd.pithos.blocks.StorageUnreadable``).  Once bytes were sent, a
failure can only drop the connection (``snfd.web.site.Request.processingFailed``).
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from snfd import errors
from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, blocks_in

log = Logger(namespace="snfd.pithos")


@attrs.frozen
class Upload:
    """What a streamed body became: ``size`` bytes received, the
    ``hashes`` of its blocks (``[EMPTY_HASH]`` when empty) and the ``md5``
    hex digest of the whole (``None`` when not computed)."""

    size: int
    hashes: list[str]
    md5: str | None


class UploadAborted(Exception):
    """The connection was lost before the body was complete."""


_WAITING, _OPEN, _FAILED, _CLOSED = "waiting", "open", "failed", "closed"

BLOCK_MISSING = ("The server cannot read this data: part of it is missing from its storage."
                 " The operator has been told.")
"""The message of the 503 of a block an object references that is gone."""


class BlockMissing(errors.ServiceUnavailable, KeyError):
    """A block an object references is absent from the block store: its
    data is lost (503, without ``Retry-After``: retrying brings nothing
    back).  Still the ``KeyError`` of ``IBlockStore.get``."""

    def __init__(self, name: str):
        super().__init__(BLOCK_MISSING)
        self.block = name


async def read_block(store: Any, name: str, length: int | None = None) -> bytes:
    """The block ``name`` of ``store`` (an ``IBlockStore``), which an
    object being read for a client references: padded to the block size,
    or only its first ``length`` bytes.

    @raise BlockMissing: the store has no such block (logged as data loss).
    """
    try:
        block: bytes = await (defer.maybeDeferred(store.get, name) if length is None
                              else defer.maybeDeferred(store.read, name, length))
    except KeyError:
        log.error("block {name} is missing from the block store: data loss (an object"
                  " references it); reads of it are answered 503", name=name)
        raise BlockMissing(name) from None
    return block


class BlockSink:
    """A request body's destination, cutting it into stored blocks.

    Twisted calls ``write`` per chunk of the body, ``tell``/``seek`` once
    it is complete, and ``close`` when the request ends or its connection
    is lost.  Nothing is stored before ``gate`` allows it: until then at
    most ``prebuffer`` full blocks are held and reading is paused.  When
    the gate fails (a fault: no permission, no container...) everything
    received is dropped and the rest of the body is read and discarded,
    so the connection stays usable, and ``result`` raises the fault.

    Once open, each full block is stored through ``store.put`` (hashing
    and I/O in the store's threads) while the MD5 of the body is computed
    in order in the reactor's threads; when ``max_in_flight`` blocks are
    being stored reading is paused until one is done.

    @param store: an ``IBlockStore``.
    @param reactor: the reactor (its thread pool computes the MD5).
    @param gate: an awaitable firing when the upload may be stored (with
        the most bytes it may have, or ``None``: no bound), or failing
        with the error ``result`` is to raise.  A body found longer than
        its bound fails with ``errors.OverLimit`` as soon as it passes it,
        so what is stored never exceeds the bound.
    @param pause: stops reading from the client
        (``transport.pauseProducing``).
    @param resume: restarts it (``transport.resumeProducing``).
    @param compute_md5: whether ``Upload.md5`` is wanted.
    @param abandoned: called once (its result awaited) with ``(hash,
        size)`` of every block stored (perhaps none) when the upload ends
        without handing them to the handler: a failure of ``result`` or a
        lost connection.  Those blocks belong to no object (``Uploads``
        records them as the uploader's, to be bounded).
    """

    def __init__(self, store: Any, reactor: Any, gate: Awaitable[Any],
                 pause: Callable[[], None], resume: Callable[[], None],
                 block_size: int = BLOCK_SIZE, max_in_flight: int = 2,
                 compute_md5: bool = True, prebuffer: int = 2,
                 abandoned: Callable[[list[tuple[str, int]]], Any] | None = None):
        self._store = store
        self._reactor = reactor
        self._pause = pause
        self._resume = resume
        self._block_size = block_size
        self._max_in_flight = max(1, max_in_flight)
        self._prebuffer = max(1, prebuffer)
        self._received = 0
        self._buffer: bytearray | None = bytearray(block_size)
        self._fill = 0
        self._count = 0                      # blocks cut so far
        self._hashes: dict[int, str] = {}   # blocks stored, by index
        self._sizes: dict[int, int] = {}
        self._limit: int | None = None
        self._abandoned = abandoned
        self._held: list[tuple[int, bytes | bytearray]] = []  # before the gate
        self._in_flight = 0
        self._drained: list[defer.Deferred[None]] = []
        self._md5 = hashlib.md5(usedforsecurity=False) if compute_md5 else None
        self._md5_queue: collections.deque[tuple[bytes | bytearray, Callable[[], None]]] = (
            collections.deque())
        self._md5_busy = False
        self._failure: Failure | None = None
        self._state = _WAITING
        self._paused = False
        self._finishing = False              # result() was called
        self._gate_settled: defer.Deferred[None] = defer.Deferred()
        gated: defer.Deferred[Any] = defer.ensureDeferred(gate)  # type: ignore[arg-type]
        gated.addCallbacks(self._gate_opened, self._gate_failed)

    # -- the file-like side twisted uses ---------------------------------------

    def write(self, data: bytes) -> None:
        """Take the next chunk of the body."""
        self._received += len(data)
        if self._state in (_FAILED, _CLOSED) or self._buffer is None:
            return
        if self._over_limit():
            return
        view = memoryview(data)
        size = self._block_size
        while view:
            take = min(len(view), size - self._fill)
            self._buffer[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == size:
                block, self._buffer, self._fill = self._buffer, bytearray(size), 0
                self._cut(block)
                if self._state == _FAILED:
                    break
        self._flow()

    def tell(self) -> int:
        """Bytes received so far."""
        return self._received

    def seek(self, offset: int, whence: int = 0) -> int:
        """Does nothing (twisted rewinds its content before rendering)."""
        return 0

    def read(self, size: int = -1) -> bytes:
        """Nothing: the body went to the block store."""
        return b""

    def close(self) -> None:
        """The request ended or its connection was lost.  Before ``result``
        was called this abandons the upload (blocks already stored stay
        for the garbage collector) and releases its memory."""
        if self._finishing:
            return
        if self._state != _CLOSED:
            self._state = _CLOSED
            self._failure = Failure(UploadAborted("connection lost during the upload"))
        self._release()
        self._finishing = True
        defer.ensureDeferred(self._abandon()).addErrback(
            lambda f: log.failure("pithos: recording an abandoned upload", f))

    # -- the handler's side ---------------------------------------------------

    async def result(self) -> Upload:
        """Wait until the whole body is durable in the store.

        Call it once, after twisted has delivered the whole body (from the
        resource's render).
        @raise: the gate's error, the store's error, or ``UploadAborted``.
        """
        if self._finishing:
            if self._state == _CLOSED:
                raise UploadAborted("connection lost during the upload")
            raise RuntimeError("BlockSink.result() called twice")
        self._finishing = True
        if self._paused:
            # The body is complete: reading on belongs to the channel now.
            self._paused = False
            self._resume()
        await self._gate_settled
        if self._state == _OPEN and self._fill and self._buffer is not None:
            tail = bytes(memoryview(self._buffer)[:self._fill])
            self._release()
            self._cut(tail)
        else:
            self._release()
        await self._drain()
        if self._failure is not None:
            await self._abandon()
            self._failure.raiseException()
        hashes = [self._hashes[i] for i in range(self._count)] or [EMPTY_HASH]
        md5 = self._md5.hexdigest() if self._md5 is not None else None
        return Upload(size=self._received, hashes=hashes, md5=md5)

    # -- internals ---------------------------------------------------------------

    async def _drain(self) -> None:
        while self._in_flight:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._drained.append(waiter)
            await waiter

    async def _abandon(self) -> None:
        """Hand the blocks stored so far to ``abandoned``, once all are."""
        await self._drain()
        stored = [(self._hashes[i], self._sizes[i]) for i in sorted(self._hashes)]
        callback, self._abandoned = self._abandoned, None
        if callback is not None:
            await callback(stored)

    def _over_limit(self) -> bool:
        """Fail the upload when the body has passed its bound."""
        if self._limit is None or self._received <= self._limit:
            return False
        self._fail(Failure(errors.OverLimit(
            f"Quota exceeded: the upload is longer than the {self._limit} bytes"
            " left for it.")))
        return True

    def _release(self) -> None:
        self._buffer = None
        self._fill = 0
        self._held = []

    def _cut(self, block: bytes | bytearray) -> None:
        index = self._count
        self._count += 1
        if self._state == _OPEN:
            self._dispatch(index, block)
        elif self._state == _WAITING:
            self._held.append((index, block))

    def _gate_opened(self, limit: object) -> None:
        if isinstance(limit, int):
            self._limit = limit
        if self._state == _WAITING and not self._over_limit():
            self._state = _OPEN
            held, self._held = self._held, []
            for index, block in held:
                self._dispatch(index, block)
                if self._state != _OPEN:
                    break
        self._gate_settled.callback(None)
        self._flow()

    def _gate_failed(self, failure: Failure) -> None:
        if self._state == _WAITING:
            self._fail(failure)
        self._gate_settled.callback(None)

    def _fail(self, failure: Failure) -> None:
        """Record the first error; drop everything not yet stored."""
        if self._failure is None:
            self._failure = failure
        if self._state in (_WAITING, _OPEN):
            self._state = _FAILED
            self._release()
        self._flow()

    def _dispatch(self, index: int, block: bytes | bytearray) -> None:
        self._in_flight += 1
        parts = [2 if self._md5 is not None else 1]

        def part_done() -> None:
            parts[0] -= 1
            if parts[0] == 0:
                self._in_flight -= 1
                if not self._in_flight:
                    drained, self._drained = self._drained, []
                    for waiter in drained:
                        waiter.callback(None)
                self._flow()

        def stored(names: Sequence[str]) -> None:
            self._hashes[index] = names[0]
            self._sizes[index] = len(block)

        d = defer.maybeDeferred(self._store.put, [block])
        d.addCallbacks(stored, self._fail)
        d.addBoth(lambda _: part_done())
        if self._md5 is not None:
            self._md5_queue.append((block, part_done))
            self._next_md5()

    def _next_md5(self) -> None:
        if self._md5_busy or not self._md5_queue or self._md5 is None:
            return
        block, done = self._md5_queue.popleft()
        self._md5_busy = True

        def after(_: object) -> None:
            self._md5_busy = False
            done()
            self._next_md5()

        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                              self._md5.update, block)
        d.addErrback(self._fail)
        d.addBoth(after)

    def _flow(self) -> None:
        """Pause or resume reading to bound the memory held."""
        if self._finishing or self._state == _CLOSED:
            return
        if self._state == _WAITING:
            stop = len(self._held) >= self._prebuffer
        elif self._state == _OPEN:
            stop = self._in_flight >= self._max_in_flight
        else:
            stop = False
        if stop and not self._paused:
            self._paused = True
            self._pause()
        elif not stop and self._paused:
            self._paused = False
            self._resume()


# -- download -------------------------------------------------------------------


def _check_range(hashes: Sequence[str], size: int, start: int, end: int,
                 block_size: int) -> None:
    if not 0 <= start <= end <= size:
        raise ValueError(f"[{start}, {end}) is not within 0..{size}")
    if len(hashes) < blocks_in(size, block_size):
        raise ValueError(f"{len(hashes)} hashes cannot hold {size} bytes")


def _needed(index: int, size: int, end: int, block_size: int) -> int:
    """How many leading bytes of block ``index`` a read up to ``end`` of
    an object of ``size`` bytes uses."""
    base = index * block_size
    return min(end, size, base + block_size) - base


def _piece(block: bytes, index: int, size: int, start: int, end: int,
           block_size: int) -> bytes:
    """The part of padded block ``index`` inside ``[start, end)`` and the
    object's size."""
    base = index * block_size
    lo = max(start, base) - base
    hi = min(end, size, base + block_size) - base
    if len(block) < hi:
        block = block + bytes(hi - len(block))
    return block[lo:hi]


async def read_range(store: Any, hashes: Sequence[str], size: int, start: int,
                     end: int, block_size: int = BLOCK_SIZE) -> bytes:
    """Bytes ``[start, end)`` of the object ``(size, hashes)``, for small
    reads (the blocks are fetched concurrently and joined in memory).

    @raise ValueError: the range is not within the object.
    @raise BlockMissing: a block is missing from the store.
    """
    _check_range(hashes, size, start, end, block_size)
    if start == end:
        return b""
    first, last = start // block_size, (end - 1) // block_size
    try:
        blocks = await defer.gatherResults(
            [defer.ensureDeferred(read_block(store, hashes[i],
                                             _needed(i, size, end, block_size)))
             for i in range(first, last + 1)],
            consumeErrors=True)
    except defer.FirstError as e:
        e.subFailure.raiseException()
    return b"".join(_piece(b, first + n, size, start, end, block_size)
                    for n, b in enumerate(blocks))


@implementer(IPushProducer)
class _Pacer:
    """The producer ``send_range`` registers: remembers whether the
    connection asked it to pause, and whether the client went away."""

    def __init__(self) -> None:
        self.paused = False
        self.gone = False
        self._waiters: list[defer.Deferred[None]] = []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._wake()

    def stopProducing(self) -> None:
        self.lost()

    def lost(self, *_: object) -> None:
        self.gone = True
        self._wake()

    def wait(self) -> defer.Deferred[None]:
        """Fires when resumed or gone."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.called:
                w.callback(None)


async def send_range(request: Any, store: Any, hashes: Sequence[str], size: int,
                     start: int, end: int, block_size: int = BLOCK_SIZE,
                     read_ahead: int = 2) -> bool:
    """Write bytes ``[start, end)`` of the object ``(size, hashes)`` to
    ``request`` (a ``twisted.web`` request; headers must already be set).

    Blocks are read in the store's threads, ``read_ahead`` of them at a
    time ahead of the one being written (two concurrent reads keep a disk
    busy), and nothing more is written while the connection's buffers are
    full.  Call it once per range or per segment, then
    ``request.finish()`` -- unless it returned ``False``: the client
    disconnected (before or during the call), the rest was skipped and
    the request must not be finished.

    @raise ValueError: the range is not within the object.
    @raise BlockMissing: a block is missing from the store.
    @raise snfd.pithos.blocks.StorageUnreadable: a block cannot be read
        (or whatever else the store's ``get`` raises).  Either way some
        bytes may have been written (``request.startedWriting``): the
        caller can then only drop the connection.
    """
    _check_range(hashes, size, start, end, block_size)
    if getattr(request, "_disconnected", False) or getattr(request, "channel", 1) is None:
        return False
    if start == end:
        return True
    pacer = _Pacer()
    request.registerProducer(pacer, True)
    finished = request.notifyFinish()
    finished.addErrback(pacer.lost)
    first, last = start // block_size, (end - 1) // block_size
    pending: collections.deque[defer.Deferred[bytes]] = collections.deque()
    following = first
    depth = max(1, read_ahead)

    def fill() -> None:
        nonlocal following
        while following <= last and len(pending) < depth:
            pending.append(defer.ensureDeferred(read_block(
                store, hashes[following], _needed(following, size, end, block_size))))
            following += 1

    try:
        for index in range(first, last + 1):
            fill()
            block = await pending.popleft()
            if pacer.gone:
                return False
            fill()
            request.write(_piece(block, index, size, start, end, block_size))
            del block
            while pacer.paused and not pacer.gone:
                await pacer.wait()
            if pacer.gone:
                return False
        return True
    finally:
        for d in pending:
            d.addErrback(lambda _: None)
        if request.channel is not None:
            request.unregisterProducer()
        else:
            request.producer = None


__all__ = ["BLOCK_MISSING", "BlockMissing", "BlockSink", "Upload", "UploadAborted",
           "read_block", "read_range", "send_range"]
