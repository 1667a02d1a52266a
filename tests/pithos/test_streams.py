"""Tests for ``snfd.pithos.streams``: request bodies streamed into a real
block store (``BlockSink``), and object ranges streamed back
(``send_range``, ``read_range``)."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from twisted.web import resource, server

from snfd import errors
from snfd.pithos.blocks import FileBlockStore, every_name
from snfd.pithos.hashmap import EMPTY_HASH, hashmap_of
from snfd.pithos.streams import BlockSink, UploadAborted, read_range, send_range
from snfd.testing.stubhttp import serve
from snfd.web.site import Root

BS = 1024


def payload(n: int, seed: int = 0) -> bytes:
    rnd = random.Random(seed)
    return rnd.randbytes(n)


def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut in pieces of the given sizes, cycling."""
    out, i, k = [], 0, 0
    while i < len(data):
        size = sizes[k % len(sizes)]
        out.append(data[i:i + size])
        i += size
        k += 1
    return out


class HeldStore:
    """A real store whose puts wait until the test releases them, and
    which can be told to fail them."""

    def __init__(self, store: FileBlockStore):
        self.store = store
        self.block_size = store.block_size
        self.held: list[tuple[list[Any], defer.Deferred[Any]]] = []
        self.fail_with: Exception | None = None
        self.puts = 0

    def put(self, blocks):
        self.puts += 1
        d: defer.Deferred[Any] = defer.Deferred()
        self.held.append((list(blocks), d))
        return d

    async def release(self) -> None:
        held, self.held = self.held, []
        for blocks, d in held:
            if self.fail_with is not None:
                d.errback(self.fail_with)
            else:
                d.callback(await self.store.put(blocks))

    def get(self, name):
        return self.store.get(name)

    def read(self, name, length):
        return self.store.read(name, length)


class SinkTestCase(unittest.TestCase):
    def setUp(self):
        self.store = FileBlockStore(self.mktemp(), reactor, block_size=BS)
        self.pauses = 0
        self.resumes = 0

    def pause(self) -> None:
        self.pauses += 1

    def resume(self) -> None:
        self.resumes += 1

    def sink(self, gate: Any = None, store: Any = None, **kw: Any) -> BlockSink:
        return BlockSink(store or self.store, reactor,
                         gate if gate is not None else defer.succeed(None),
                         self.pause, self.resume, block_size=BS, **kw)

    async def stored(self) -> list[str]:
        return await every_name(self.store)


class BlockSinkTests(SinkTestCase):
    async def check_upload(self, data: bytes, sizes: list[int]) -> None:
        sink = self.sink()
        for piece in chunks(data, sizes):
            sink.write(piece)
        self.assertEqual(sink.tell(), len(data))
        up = await sink.result()
        self.assertEqual(up.size, len(data))
        self.assertEqual(up.hashes, hashmap_of(data, BS))
        self.assertEqual(up.md5, hashlib.md5(data, usedforsecurity=False).hexdigest())
        for i, h in enumerate(up.hashes):
            block = data[i * BS:(i + 1) * BS]
            self.assertEqual(await self.store.get(h), block + bytes(BS - len(block)))

    async def test_odd_chunk_sizes(self):
        """Whatever the chunking, the hashes, MD5 and size match those of
        the whole body, and every block reads back from the store."""
        data = payload(5 * BS + 377)
        for sizes in ([1, 7, 1023], [BS + 1], [3000], [BS - 1, 2], [len(data)], [BS * 3 + 5]):
            await self.check_upload(data, sizes)

    async def test_exact_multiple_of_block_size(self):
        """A body of exactly n blocks gives n hashes (no empty tail)."""
        await self.check_upload(payload(4 * BS, 1), [500])
        await self.check_upload(payload(BS, 2), [BS])

    async def test_trailing_zeros_and_zero_blocks(self):
        """Zero blocks and a tail ending in zeros are named as hashmap_of
        names them."""
        data = payload(BS, 3) + bytes(BS) + b"tail" + bytes(100)
        await self.check_upload(data, [700])

    async def test_empty_body(self):
        """An empty body is one EMPTY_HASH, the MD5 of nothing, 0 bytes,
        and stores nothing."""
        sink = self.sink()
        up = await sink.result()
        self.assertEqual((up.size, up.hashes, up.md5),
                         (0, [EMPTY_HASH], hashlib.md5(b"", usedforsecurity=False).hexdigest()))
        self.assertEqual(await self.stored(), [])

    async def test_md5_optional(self):
        """With compute_md5=False no MD5 is given."""
        sink = self.sink(compute_md5=False)
        sink.write(b"abc")
        up = await sink.result()
        self.assertIsNone(up.md5)
        self.assertEqual(up.hashes, hashmap_of(b"abc", BS))

    async def test_file_like_surface(self):
        """read() is empty, seek() does nothing, tell() counts bytes."""
        sink = self.sink()
        sink.write(b"12345")
        sink.seek(0, 0)
        self.assertEqual(sink.tell(), 5)
        self.assertEqual(sink.read(), b"")
        await sink.result()

    async def test_nothing_stored_before_gate(self):
        """Until the gate fires nothing is stored; after two full blocks
        reading pauses; when it opens the held blocks are stored."""
        gate: defer.Deferred[None] = defer.Deferred()
        sink = self.sink(gate)
        data = payload(3 * BS + 10, 4)
        sink.write(data[:2 * BS])
        self.assertEqual(self.pauses, 1)
        sink.write(data[2 * BS:])
        self.assertEqual(await self.stored(), [])
        gate.callback(None)
        up = await sink.result()
        self.assertEqual(up.hashes, hashmap_of(data, BS))
        self.assertEqual(sorted(await self.stored()), sorted(set(up.hashes)))
        self.assertEqual(self.resumes, self.pauses)

    async def test_gate_failure_discards(self):
        """When the gate fails nothing is stored, reading resumes so the
        rest of the body is consumed, and result raises the gate's fault."""
        gate: defer.Deferred[None] = defer.Deferred()
        sink = self.sink(gate)
        sink.write(payload(2 * BS + 5))
        self.assertEqual(self.pauses, 1)
        gate.errback(errors.Forbidden("no"))
        self.assertEqual(self.resumes, 1)
        sink.write(payload(5 * BS))
        self.assertEqual(sink.tell(), 7 * BS + 5)
        self.assertEqual(self.pauses, 1)
        await self.assertFailure(defer.ensureDeferred(sink.result()), errors.Forbidden)
        self.assertEqual(await self.stored(), [])

    async def test_gate_failure_after_body(self):
        """A gate failing after the body is complete still stores nothing."""
        gate: defer.Deferred[None] = defer.Deferred()
        sink = self.sink(gate)
        sink.write(b"x" * (BS + 1))
        result = defer.ensureDeferred(sink.result())
        gate.errback(errors.NotFound("no container"))
        await self.assertFailure(result, errors.NotFound)
        self.assertEqual(await self.stored(), [])

    async def test_backpressure(self):
        """Reading pauses while max_in_flight blocks are being stored and
        resumes once they are done."""
        held = HeldStore(self.store)
        sink = self.sink(store=held, max_in_flight=2)
        data = payload(3 * BS + 1, 5)
        sink.write(data[:BS])
        self.assertEqual((held.puts, self.pauses), (1, 0))
        sink.write(data[BS:2 * BS + 3])
        self.assertEqual((held.puts, self.pauses), (2, 1))
        sink.write(data[2 * BS + 3:])  # already on its way when paused
        self.assertEqual(held.puts, 3)
        await held.release()
        # MD5s are computed in threads; the resume follows them.
        while self.resumes == 0:
            await deferToThread(lambda: None)
        self.assertEqual(self.resumes, 1)
        result = defer.ensureDeferred(sink.result())
        while not held.held:
            await deferToThread(lambda: None)
        await held.release()
        up = await result
        self.assertEqual(up.hashes, hashmap_of(data, BS))

    async def test_storage_error(self):
        """A store failure surfaces from result; later data is dropped."""
        held = HeldStore(self.store)
        held.fail_with = OSError(28, "No space left on device")
        sink = self.sink(store=held)
        sink.write(payload(BS))
        await held.release()
        sink.write(payload(BS))
        self.assertEqual(held.puts, 1)
        await self.assertFailure(defer.ensureDeferred(sink.result()), OSError)

    async def test_close_before_end(self):
        """A connection lost mid-body abandons the upload: nothing more is
        stored, reading is not resumed, result raises UploadAborted."""
        gate: defer.Deferred[None] = defer.Deferred()
        sink = self.sink(gate)
        sink.write(payload(2 * BS))
        sink.close()
        gate.callback(None)
        sink.write(payload(BS))
        self.assertEqual(self.resumes, 0)
        await self.assertFailure(defer.ensureDeferred(sink.result()), UploadAborted)
        self.assertEqual(await self.stored(), [])

    async def test_gate_bound_cuts_the_body_off(self):
        """A body longer than the bound its gate gives fails with OverLimit
        as soon as it passes it; what is stored stays within the bound and
        goes to ``abandoned``."""
        gone: list[Any] = []

        async def abandoned(blocks: list[tuple[str, int]]) -> None:
            gone.append(blocks)

        data = payload(5 * BS, 8)
        sink = self.sink(defer.succeed(2 * BS + 10), abandoned=abandoned)
        for piece in chunks(data, [BS // 2]):
            sink.write(piece)
        await self.assertFailure(defer.ensureDeferred(sink.result()), errors.OverLimit)
        expected = [(h, BS) for h in hashmap_of(data[:2 * BS], BS)]
        self.assertEqual(gone, [expected])
        self.assertEqual(sorted(await self.stored()), sorted({h for h, _ in expected}))

    async def test_lost_connection_hands_over_stored_blocks(self):
        """A connection lost mid-body gives the blocks already stored to
        ``abandoned`` (once)."""
        gone: list[Any] = []

        async def abandoned(blocks: list[tuple[str, int]]) -> None:
            gone.append(blocks)

        data = payload(2 * BS + 7, 9)
        sink = self.sink(abandoned=abandoned)
        sink.write(data)
        sink.close()
        await self.assertFailure(defer.ensureDeferred(sink.result()), UploadAborted)
        while not gone:
            await deferToThread(lambda: None)
        self.assertEqual(gone, [[(h, BS) for h in hashmap_of(data[:2 * BS], BS)]])

    async def test_close_after_result(self):
        """close() after the upload completed (the request finished) is
        harmless."""
        sink = self.sink()
        sink.write(b"abc")
        up = await sink.result()
        sink.close()
        self.assertEqual(up.size, 3)


# -- over HTTP ------------------------------------------------------------------


class Uploads(resource.Resource):
    """PUT streams into the store; the gate fails for paths under /deny."""

    isLeaf = True

    def __init__(self, store: FileBlockStore):
        super().__init__()
        self.store = store
        self.peers: list[int] = []

    def body_sink(self, request, method, uri, length):
        if method != b"PUT":
            return None
        gate = (defer.fail(errors.Forbidden("denied")) if b"/deny" in uri
                else defer.succeed(None))
        transport = request.channel.transport
        return BlockSink(self.store, reactor, gate, transport.pauseProducing,
                         transport.resumeProducing, block_size=BS)

    def render_PUT(self, request):
        self.peers.append(request.getClientAddress().port)

        async def go():
            try:
                up = await request.content.result()
                body = json.dumps({"size": up.size, "hashes": up.hashes,
                                   "md5": up.md5}).encode()
            except Exception as e:
                body = errors.render_fault(request, e)
            request.setHeader(b"content-length", str(len(body)).encode())
            request.write(body)
            request.finish()

        defer.ensureDeferred(go())
        return server.NOT_DONE_YET

    def render_GET(self, request):
        self.peers.append(request.getClientAddress().port)
        return b"ok"


class BlockSinkHTTPTests(unittest.TestCase):
    def setUp(self):
        self.store = FileBlockStore(self.mktemp(), reactor, block_size=BS)
        self.uploads = Uploads(self.store)
        root = Root()
        root.mount("t", self.uploads)
        url = urlsplit(serve(self, root))
        self.host, self.port = url.hostname, url.port

    def exchange(self, requests: list[tuple[str, str, Any]]) -> list[tuple[int, bytes]]:
        """Send requests on one keep-alive connection (blocking; run it in
        a thread); each body is bytes or an iterable of chunks."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        out = []
        try:
            for method, path, body in requests:
                if isinstance(body, bytes) or body is None:
                    conn.request(method, path, body=body)
                else:
                    conn.request(method, path, body=body, encode_chunked=True,
                                 headers={"Transfer-Encoding": "chunked"})
                response = conn.getresponse()
                out.append((response.status, response.read()))
        finally:
            conn.close()
        return out

    async def test_put_with_length_and_chunked(self):
        """A body with Content-Length and a chunked one are both cut into
        the blocks of their hashmap, with their MD5."""
        data = payload(7 * BS + 100, 7)
        pieces = chunks(data, [333, 2000])
        [(s1, b1), (s2, b2)] = await deferToThread(
            self.exchange, [("PUT", "/t/a", data), ("PUT", "/t/b", iter(pieces))])
        self.assertEqual((s1, s2), (200, 200))
        for body in (b1, b2):
            got = json.loads(body)
            self.assertEqual(got["hashes"], hashmap_of(data, BS))
            self.assertEqual(got["md5"], hashlib.md5(data, usedforsecurity=False).hexdigest())
            self.assertEqual(got["size"], len(data))

    async def test_denied_upload_keeps_connection(self):
        """A refused upload stores nothing, is answered with its fault, and
        the connection serves the next request."""
        answers = await deferToThread(
            self.exchange, [("PUT", "/t/deny/x", payload(6 * BS)), ("GET", "/t/after", None)])
        self.assertEqual([s for s, _ in answers], [403, 200])
        self.assertEqual(await self.store.scan("", 10), ([], None))
        self.assertEqual(len(set(self.uploads.peers)), 1)


# -- download ---------------------------------------------------------------------


class ObjectFixture:
    """Objects in a real store: a multi-block one with a short middle
    block, a zero block and a short tail."""

    def __init__(self, store: FileBlockStore):
        self.store = store

    async def build(self) -> tuple[list[str], int, bytes]:
        a = payload(BS, 10)
        short = b"short middle block"
        c = payload(BS, 11)
        tail = payload(300, 12)
        hashes = await self.store.put([a, short, bytes(BS), c, tail])
        size = 4 * BS + 250  # the tail is cut to the object's size
        expected = (a + short + bytes(BS - len(short)) + bytes(BS) + c + tail)[:size]
        return hashes, size, expected


RANGES = [
    (0, None), (0, 1), (0, BS), (BS - 1, BS + 1), (BS, 2 * BS), (5, 3 * BS + 7),
    (2 * BS + 3, 2 * BS + 4), (-1, None), (-250, None), (17, 17), (4 * BS, None),
]


def resolve(start: int, end: int | None, size: int) -> tuple[int, int]:
    if start < 0:
        start += size
    return start, size if end is None else end


class ReadRangeTests(unittest.TestCase):
    async def test_ranges(self):
        """read_range returns the padded-then-cut bytes of any range."""
        store = FileBlockStore(self.mktemp(), reactor, block_size=BS)
        hashes, size, expected = await ObjectFixture(store).build()
        for start, end in RANGES:
            s, e = resolve(start, end, size)
            self.assertEqual(await read_range(store, hashes, size, s, e, BS), expected[s:e],
                             (s, e))

    async def test_empty_object(self):
        """The empty object reads as nothing."""
        store = FileBlockStore(self.mktemp(), reactor, block_size=BS)
        self.assertEqual(await read_range(store, [EMPTY_HASH], 0, 0, 0, BS), b"")

    async def test_bad_range_and_missing_block(self):
        """Ranges outside the object are a ValueError; a block the store
        lacks is a KeyError."""
        store = FileBlockStore(self.mktemp(), reactor, block_size=BS)
        hashes, size, _ = await ObjectFixture(store).build()
        for s, e in ((0, size + 1), (-1, 2), (5, 4)):
            await self.assertFailure(
                defer.ensureDeferred(read_range(store, hashes, size, s, e, BS)), ValueError)
        gone = ["ab" * 32, *hashes[1:]]
        await self.assertFailure(
            defer.ensureDeferred(read_range(store, gone, size, 0, 10, BS)), KeyError)


class Downloads(resource.Resource):
    """GET /?start=&end= streams that range of one object; a second range
    may follow (``&then=start-end``) to check that calls compose."""

    isLeaf = True

    def __init__(self, store, hashes, size):
        super().__init__()
        self.store, self.hashes, self.size = store, hashes, size
        self.outcomes: list[bool] = []

    def render_GET(self, request):
        start = int(request.args[b"start"][0])
        end = int(request.args[b"end"][0])
        ranges = [(start, end)]
        if b"then" in request.args:
            s, e = request.args[b"then"][0].split(b"-")
            ranges.append((int(s), int(e)))
        request.setHeader(b"content-length", str(sum(e - s for s, e in ranges)).encode())

        async def go():
            for s, e in ranges:
                ok = await send_range(request, self.store, self.hashes, self.size, s, e, BS)
                self.outcomes.append(ok)
                if not ok:
                    return
            request.finish()

        defer.ensureDeferred(go())
        return server.NOT_DONE_YET


class SendRangeHTTPTests(unittest.TestCase):
    async def test_ranges_over_http(self):
        """Every range, including ones across block boundaries, short
        stored blocks and the zero block, arrives as the padded-then-cut
        bytes; two calls compose into one response."""
        store = FileBlockStore(self.mktemp(), reactor, block_size=BS)
        hashes, size, expected = await ObjectFixture(store).build()
        root = Root()
        downloads = Downloads(store, hashes, size)
        root.mount("o", downloads)
        url = urlsplit(serve(self, root))

        def fetch_all() -> list[bytes]:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            got = []
            try:
                for start, end in RANGES:
                    s, e = resolve(start, end, size)
                    conn.request("GET", f"/o/x?start={s}&end={e}")
                    got.append(conn.getresponse().read())
                conn.request("GET", f"/o/x?start=10&end={BS + 10}&then=0-5")
                got.append(conn.getresponse().read())
            finally:
                conn.close()
            return got

        got = await deferToThread(fetch_all)
        for (start, end), body in zip(RANGES, got, strict=False):
            s, e = resolve(start, end, size)
            self.assertEqual(body, expected[s:e], (s, e))
        self.assertEqual(got[-1], expected[10:BS + 10] + expected[0:5])
        self.assertTrue(all(downloads.outcomes))


class FakeRequest:
    """Just what send_range touches of a twisted.web request; pauses its
    producer on every write, as a transport with a full buffer does."""

    def __init__(self) -> None:
        self.channel: Any = object()
        self._disconnected = False
        self.producer: Any = None
        self.written: list[bytes] = []
        self.finished: list[defer.Deferred[None]] = []
        self.pause_on_write = True

    def registerProducer(self, producer, streaming):
        assert streaming and self.producer is None
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def notifyFinish(self):
        d: defer.Deferred[None] = defer.Deferred()
        self.finished.append(d)
        return d

    def write(self, data):
        self.written.append(data)
        if self.pause_on_write:
            self.producer.pauseProducing()

    def lose(self):
        self._disconnected = True
        self.channel = None
        for d in self.finished:
            d.errback(ConnectionError("gone"))


class CountingStore:
    """A store that counts the reads asked for and those answered."""

    def __init__(self, store):
        self.store = store
        self.gets = 0
        self.answered = 0

    def get(self, name):
        return self.read(name, self.store.block_size)

    def read(self, name, length):
        self.gets += 1

        def answered(r):
            self.answered += 1
            return r

        return self.store.read(name, length).addBoth(answered)


async def until(condition) -> None:
    """Let the reactor and its threads run until ``condition()``."""
    while not condition():
        await deferToThread(lambda: None)


class SendRangeFlowTests(unittest.TestCase):
    async def setUp(self):
        self.store = FileBlockStore(self.mktemp(), reactor, block_size=BS)
        self.data = payload(6 * BS, 20)
        self.hashes = await self.store.put([self.data[i:i + BS] for i in range(0, len(self.data), BS)])
        self.counting = CountingStore(self.store)

    async def test_waits_while_paused(self):
        """While the connection is paused nothing more is written and only
        read_ahead blocks are read ahead; each resume lets exactly one
        more block out."""
        request = FakeRequest()
        counting = self.counting
        sending = defer.ensureDeferred(
            send_range(request, counting, self.hashes, len(self.data), 0, len(self.data), BS,
                       read_ahead=2))
        for n in range(1, 7):
            if n > 1:
                request.producer.resumeProducing()
            # Quiet: n blocks written and the next two read ahead.
            await until(lambda n=n: counting.answered == min(n + 2, 6))
            self.assertEqual(len(request.written), n)
            self.assertEqual(counting.gets, min(n + 2, 6))
        request.producer.resumeProducing()
        self.assertTrue(await sending)
        self.assertEqual(b"".join(request.written), self.data)
        self.assertIsNone(request.producer)

    async def test_disconnect_stops(self):
        """A client that goes away mid-stream stops the sending: send_range
        returns False, writes nothing more and unregisters its producer."""
        request = FakeRequest()
        sending = defer.ensureDeferred(
            send_range(request, self.store, self.hashes, len(self.data), 0, len(self.data), BS))
        while not request.written:
            await deferToThread(lambda: None)
        request.lose()
        self.assertFalse(await sending)
        self.assertEqual(len(request.written), 1)
        self.assertIsNone(request.producer)

    async def test_already_gone(self):
        """On a request whose client is gone, send_range writes nothing and
        returns False."""
        request = FakeRequest()
        request.lose()
        self.assertFalse(await send_range(request, self.store, self.hashes, len(self.data),
                                          0, 10, BS))
        self.assertEqual(request.written, [])

    async def test_unpaused_sends_all(self):
        """Without pauses the whole range is written in order."""
        request = FakeRequest()
        request.pause_on_write = False
        self.assertTrue(await send_range(request, self.store, self.hashes, len(self.data),
                                         BS - 3, 4 * BS + 2, BS))
        self.assertEqual(b"".join(request.written), self.data[BS - 3:4 * BS + 2])



class BoundedReads:
    """A buffered body that refuses to be read whole."""

    def __init__(self, data: bytes, most: int):
        self.data, self.pos, self.most, self.reads = data, 0, most, 0

    def seek(self, offset: int, whence: int = 0) -> None:
        self.pos = offset if whence == 0 else len(self.data) + offset

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.most:
            raise AssertionError(f"read({n}) of a buffered form body")
        self.reads += 1
        piece = self.data[self.pos:self.pos + n]
        self.pos += len(piece)
        return piece


class FormUploadTests(SinkTestCase):
    """HTML form uploads are read from their buffer piece by piece and
    their file stored block by block, never held whole."""

    def form(self, data: bytes, boundary: str = "b0und") -> bytes:
        return (f"preamble\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n"
                f"--{boundary}-ish\r\n--{boundary}\r\nContent-Disposition: form-data;"
                f" name=\"X-Object-Data\"; filename=\"f.bin\"\r\nContent-Type: image/png\r\n\r\n"
                ).encode() + data + f"\r\n--{boundary}--\r\n".encode()

    async def test_file_is_read_in_pieces(self):
        """A form whose file spans several blocks is read in bounded pieces
        (never ``read()`` of the whole) and gives the file's exact bytes,
        MD5 and part type."""
        from snfd.pithos import uploads as module

        self.patch(module, "FORM_READ", 100)
        data = bytes(random.Random(7).randbytes(BS * 3 + 17))
        body = BoundedReads(self.form(data), 100)
        request = type("R", (), {"content": body})()
        uploads = module.Uploads(None, self.store, reactor)
        size, hashes, md5, ctype = await uploads.form_file(
            request, "multipart/form-data; boundary=b0und", "o")
        self.assertEqual((size, hashes), (len(data), hashmap_of(data, BS)))
        self.assertEqual(md5, hashlib.md5(data, usedforsecurity=False).hexdigest())
        self.assertEqual(ctype, "image/png")
        self.assertGreater(body.reads, 1)

    def test_parser_finds_the_file_at_any_split(self):
        """The file's bytes are found whatever the pieces the body comes
        in, even one byte at a time; a form without the file finds none."""
        from snfd.pithos.uploads import FormFile

        data = b"a\r\n--b0un\r\nd" * 50
        body = self.form(data)
        for step in (1, 2, 7, 64, len(body)):
            form = FormFile(b"b0und")
            got = b"".join(p for i in range(0, len(body), step)
                           for p in form.feed(body[i:i + step]))
            self.assertEqual((got, form.found), (data, True), step)
        form = FormFile(b"b0und")
        form.feed(b"--b0und\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n--b0und--")
        self.assertEqual((form.found, form.done), (False, True))
