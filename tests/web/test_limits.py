"""Request body limits of the node's site (``Root.body_limit``): a body
larger than its resource accepts is refused as soon as its length is
known, before it is read; and failures while answering never leave a
request hanging."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tempfile

from twisted.internet import defer, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.test.requesthelper import DummyRequest

from snfd import errors
from snfd.metrics import Metrics
from snfd.testing.pithos import object_store_stack
from snfd.web.app import read_json
from snfd.web.site import DEFAULT_MAX_BODY, Root, Site


class Recording(resource.Resource):
    """Records the bodies it renders; declares ``max_body``."""

    isLeaf = True

    def __init__(self, max_body: int | None = None) -> None:
        super().__init__()
        if max_body is not None:
            self.max_body = max_body
        self.bodies: list[bytes] = []

    def render_POST(self, request):
        self.bodies.append(request.content.read())
        return b"ok"


class BadHeader(resource.Resource):
    """Answers later, setting a header Twisted refuses (as a stored
    metadata key with CR LF would)."""

    isLeaf = True

    def __init__(self, clock: task.Clock) -> None:
        super().__init__()
        self.clock = clock

    def render_GET(self, request):
        def answer():
            request.responseHeaders.addRawHeader(b"X-Object-Meta-K\r\nSet-Cookie: x", b"v")
            request.write(b"never")
            request.finish()

        d = task.deferLater(self.clock, 0, answer)
        d.addErrback(request.processingFailed)
        return server.NOT_DONE_YET


class FailsMidAnswer(resource.Resource):
    """Starts its answer, then fails."""

    isLeaf = True

    def __init__(self, clock: task.Clock) -> None:
        super().__init__()
        self.clock = clock

    def render_GET(self, request):
        def answer():
            request.setHeader(b"content-length", b"10")
            request.write(b"part")
            raise RuntimeError("the stream broke")

        d = task.deferLater(self.clock, 0, answer)
        d.addErrback(request.processingFailed)
        return server.NOT_DONE_YET


class BodyLimitTests(unittest.TestCase):
    """The site refuses bodies over the mounted resource's limit with 413
    and closes the connection without reading them."""

    def connect(self, root: Root) -> tuple[object, StringTransport]:
        site = Site(root, task.Clock(), Metrics())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        return channel, transport

    def test_declared_length_over_the_limit_is_refused_before_the_body(self):
        """A Content-Length above the resource's ``max_body`` is answered
        413 (fault JSON) right after the headers, without 100-continue;
        the connection closes and the resource never renders."""
        res = Recording(max_body=100)
        root = Root()
        root.mount("r", res)
        channel, transport = self.connect(root)
        channel.dataReceived(b"POST /r/x HTTP/1.1\r\nHost: node\r\nExpect: 100-continue\r\n"
                             b"Content-Length: 101\r\n\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head)
        self.assertNotIn(b"100 Continue", head)
        self.assertEqual(json.loads(body)["overLimit"]["code"], 413)
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"x" * 101)
        self.assertEqual(res.bodies, [])

    def test_body_within_the_limit_is_buffered(self):
        """A body up to the limit reaches the resource as before."""
        res = Recording(max_body=100)
        root = Root()
        root.mount("r", res)
        channel, transport = self.connect(root)
        channel.dataReceived(b"POST /r/x HTTP/1.1\r\nHost: node\r\n"
                             b"Content-Length: 100\r\n\r\n" + b"y" * 100)
        self.assertEqual(res.bodies, [b"y" * 100])
        self.assertIn(b"200 OK", transport.value())

    def test_chunked_body_is_cut_off_at_the_limit(self):
        """A chunked body is refused with 413 once it passes the limit; the
        rest is not read and the resource never renders."""
        res = Recording(max_body=100)
        root = Root()
        root.mount("r", res)
        channel, transport = self.connect(root)
        channel.dataReceived(b"POST /r/x HTTP/1.1\r\nHost: node\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
        channel.dataReceived(b"40\r\n" + b"a" * 64 + b"\r\n")
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"40\r\n" + b"a" * 64 + b"\r\n" + b"40\r\n" + b"a" * 64
                             + b"\r\n0\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(res.bodies, [])

    def test_resources_without_a_limit_get_the_default(self):
        """A resource that declares nothing (and an unknown path) buffers
        at most ``DEFAULT_MAX_BODY`` bytes."""
        root = Root()
        root.mount("r", Recording())
        for path in (b"/r/x", b"/nowhere"):
            channel, transport = self.connect(root)
            channel.dataReceived(b"POST %s HTTP/1.1\r\nHost: node\r\n"
                                 b"Content-Length: %d\r\n\r\n" % (path, DEFAULT_MAX_BODY + 1))
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "), path)

    def test_header_failure_is_a_500_not_a_hang(self):
        """A resource answering later that fails while setting its headers
        gets a logged 500 (with the request id), not a request left
        without an answer."""
        clock = task.Clock()
        root = Root()
        root.mount("bad", BadHeader(clock))
        channel, transport = self.connect(root)
        channel.dataReceived(b"GET /bad/x HTTP/1.1\r\nHost: node\r\n\r\n")
        clock.advance(0)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 500 "), head)
        self.assertIn(b"X-Request-Id", head)
        self.assertNotIn(b"Set-Cookie", head)
        self.assertEqual(json.loads(body)["computeFault"]["code"], 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


    def test_failure_after_the_answer_started_drops_the_connection(self):
        """A failure once the status and headers are sent drops the
        connection (the client sees a short body) instead of appending a
        fault to the body; it is logged."""
        clock = task.Clock()
        root = Root()
        root.mount("mid", FailsMidAnswer(clock))
        channel, transport = self.connect(root)
        channel.dataReceived(b"GET /mid/x HTTP/1.1\r\nHost: node\r\n\r\n")
        clock.advance(0)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(body, b"part")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RequestShapeTests(unittest.TestCase):
    """Requests no service can act on are answered by the site itself."""

    connect = BodyLimitTests.connect

    def test_nul_in_path_or_query_is_a_400(self):
        """A NUL (%00) in a path segment, a query name or a query value is a
        400 before any resource sees it (PostgreSQL text cannot hold one:
        it used to reach SQL and answer 500)."""
        res = Recording()
        root = Root()
        root.mount("r", res)
        for target in (b"/r/a%00b", b"/r/x?marker=%00", b"/r/x?%00=1"):
            channel, transport = self.connect(root)
            channel.dataReceived(b"POST %s HTTP/1.1\r\nHost: node\r\n"
                                 b"Content-Length: 2\r\n\r\n{}" % target)
            head, _, body = transport.value().partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), (target, head))
            self.assertIn("NUL", json.loads(body)["badRequest"]["message"])
        self.assertEqual(res.bodies, [])

    def test_content_type_with_line_breaks_is_a_400(self):
        """A Content-Type holding characters Python takes for line breaks
        (vertical tab, form feed, ...) is answered 400; Twisted's own
        parsing used to raise and drop the connection unanswered."""
        res = Recording()
        root = Root()
        root.mount("r", res)
        for ctype in (b"\x0b\x01", b"text/plain\x0c", b"a\x85b"):
            channel, transport = self.connect(root)
            channel.dataReceived(b"POST /r/x HTTP/1.1\r\nHost: node\r\nContent-Type: "
                                 + ctype + b"\r\nContent-Length: 2\r\n\r\n[]")
            head, _, body = transport.value().partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), (ctype, head))
            self.assertIn("Content-Type", json.loads(body)["badRequest"]["message"])
        self.assertEqual(res.bodies, [])


class JSONBodyTests(unittest.TestCase):
    """``read_json`` refuses what it cannot decode with a 400."""

    def test_deeply_nested_json_is_a_400(self):
        """JSON nested deeper than the decoder goes is a BadRequest that
        says so, not an unexpected error (a 500)."""
        request = DummyRequest([])
        request.content = io.BytesIO(b"[" * 100_000 + b"]" * 100_000)
        e = self.assertRaises(errors.BadRequest, read_json, request, 1 << 20)
        self.assertIn("nested too deeply", e.message)


class IdentityBodyLimitTests(unittest.TestCase):
    """Over a real TCP connection to a node running identity."""

    timeout = 60

    @defer.inlineCallbacks
    def test_large_token_request_is_refused_before_its_body(self):
        """An unauthenticated 32 MiB POST to /identity/v3/auth/tokens gets
        413 in Keystone's error style as soon as its headers are sent: the
        body is never sent, and the server closes the connection."""
        stack = yield defer.ensureDeferred(object_store_stack(self))
        host, port = stack.url.removeprefix("http://").rsplit(":", 1)

        def exchange() -> bytes:
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(b"POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: node\r\n"
                          b"Content-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % (32 * 1024 * 1024))
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks)

        reply = yield threads.deferToThread(exchange)
        head, _, body = reply.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head)
        self.assertEqual(json.loads(body)["error"]["code"], 413)


class TemporaryStorageTests(unittest.TestCase):
    """A body too large for memory is buffered in ``TMPDIR``; with that
    full (a real tmpfs filled up), the request is answered 503 with
    ``Retry-After`` in its resource's error style, never a dropped
    connection, and buffering works again once there is room."""

    def setUp(self):
        return defer.ensureDeferred(self._set_up())

    async def _set_up(self) -> None:
        from tests.pithos.test_disk_full import small_filesystem

        self.tmp = await small_filesystem(self, 1 << 20)
        before = tempfile.tempdir
        tempfile.tempdir = self.tmp
        self.addCleanup(setattr, tempfile, "tempdir", before)
        self.res = Recording(max_body=4 << 20)
        self.root = Root()
        self.root.mount("r", self.res)
        self.site = Site(self.root, task.Clock(), Metrics())

    def post(self, size: int) -> StringTransport:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        channel.dataReceived(b"POST /r/x HTTP/1.1\r\nHost: node\r\n"
                             b"Content-Length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            channel.dataReceived(b"z" * 65536)
        return transport

    def test_full_temporary_directory(self):
        ballast = os.path.join(self.tmp, "ballast")
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        with self.assertLogs_snfd() as lines:
            transport = self.post(2 << 20)
            self.post(2 << 20)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 503 "), head)
        self.assertIn(b"Retry-After: 30", head)
        self.assertIn("temporary storage", json.loads(body)["serviceUnavailable"]["message"])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.res.bodies, [])
        failed = [line for line in lines if "buffering request bodies" in line]
        self.assertEqual(len(failed), 1, lines)
        self.assertIn("No space left on device", failed[0])

        os.unlink(ballast)
        with self.assertLogs_snfd() as lines:
            transport = self.post(512 << 10)
        self.assertIn(b"200 OK", transport.value())
        self.assertEqual(self.res.bodies, [b"z" * (512 << 10)])
        self.assertTrue(any("recovered" in line for line in lines), lines)

    @contextlib.contextmanager
    def assertLogs_snfd(self):
        """The snfd.http log lines written inside the block, as text."""
        from twisted.logger import formatEvent, globalLogPublisher

        lines: list[str] = []

        def observe(event):
            if event.get("log_namespace") == "snfd.http":
                lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        try:
            yield lines
        finally:
            globalLogPublisher.removeObserver(observe)
