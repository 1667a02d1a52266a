"""A whole node built in process (real PostgreSQL, in-process bus) and
driven over real HTTP: health, faults, request ids, metrics, plugin routes,
the cluster view, and the request log; and the node's site streaming
request bodies (in memory)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile

import treq
from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web import http, resource

from snfd import config as cfg
from snfd import tap
from snfd.httpclient import HTTPClientPool, Target
from snfd.metrics import Metrics
from snfd.testing.node import free_port
from snfd.testing.plugins import thirdparty_plugin
from snfd.testing.postgres import fresh_database, throwaway_postgres
from snfd.testing.tls import self_signed
from snfd.web.site import Root, Site, StreamingUnavailable
from tests.cluster.test_election import wait_for


class NodeHTTPTests(unittest.TestCase):
    def start_node(self, dsn: str | None = None, tls: tuple[str, str] | None = None,
                   retry_window: float | None = None):
        plugin = thirdparty_plugin()
        installed = {plugin.name: plugin}
        self.port = free_port()
        state = tempfile.mkdtemp(prefix="snfd-test-state-")
        self.addCleanup(shutil.rmtree, state, True)
        listen = f"tcp:{self.port}:interface=127.0.0.1"
        overrides = {("database", "auto_upgrade"): "yes", ("node", "election_interval"): "0.05",
                     ("node", "cluster_trusted"): "127.0.0.1"}
        if retry_window is not None:
            overrides[("database", "retry_window")] = str(retry_window)
        if tls:
            self.tls_port = free_port()
            listen += f" ssl:{self.tls_port}:interface=127.0.0.1"
            overrides[("node", "tls_certificate")], overrides[("node", "tls_key")] = tls
        env = {
            "SNFD_DATABASE_URL": dsn or fresh_database(self),
            "SNFD_LISTEN": listen,
            "SNFD_STATE_DIR": state,
        }
        config = cfg.load_config(None, {plugin.name: plugin.config_keys}, environ=env,
                                 overrides=overrides)
        self.service = tap.build(config, installed, reactor)
        self.node = self.service.node
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def get(self, path: str, method: str = "GET", headers=None):
        response = await treq.request(method, self.url(path), headers=headers,
                                      persistent=False)
        body = await response.content()
        return response, body

    async def poll_json(self, path: str, ready, what: str, timeout: float = 20.0):
        """GET ``path`` (expecting 200 JSON) until ``ready(body)`` holds."""
        deadline = reactor.seconds() + timeout
        while True:
            response, body = await self.get(path)
            self.assertEqual(response.code, 200, path)
            data = json.loads(body)
            if ready(data):
                return data
            if reactor.seconds() > deadline:
                self.fail(f"timed out waiting for {what}: last answer {data!r}")
            await task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def test_health(self):
        """GET /_health answers 200 with JSON on the database and the bus."""
        self.start_node()
        response, body = yield defer.ensureDeferred(self.get("/_health"))
        self.assertEqual(response.code, 200)
        data = json.loads(body)
        self.assertEqual(data["status"], "ok")
        self.assertTrue(data["database"]["ok"])
        self.assertEqual(data["bus"], {"ok": True, "kind": "in-process"})
        self.assertEqual(data["plugins"], ["thirdparty"])

    @defer.inlineCallbacks
    def test_unknown_path_is_fault_json(self):
        """Unknown paths, at the root and inside a plugin's app, are answered
        with itemNotFound fault JSON."""
        self.start_node()
        for path in ("/nowhere", "/", "/thirdparty/nowhere", "/_health/extra"):
            response, body = yield defer.ensureDeferred(self.get(path))
            self.assertEqual(response.code, 404, path)
            self.assertEqual(response.headers.getRawHeaders("content-type")[0],
                             "application/json; charset=utf-8")
            fault = json.loads(body)["itemNotFound"]
            self.assertEqual(fault["code"], 404)
            self.assertTrue(fault["message"])

    @defer.inlineCallbacks
    def test_plugin_routes_and_faults(self):
        """A plugin's route answers; its typed errors become their faults; a
        wrong method is 405; a crash is a 500 that does not leak details."""
        self.start_node()
        response, body = yield defer.ensureDeferred(self.get("/thirdparty/hello"))
        self.assertEqual((response.code, json.loads(body)["greeting"]), (200, "hello"))
        response, body = yield defer.ensureDeferred(self.get("/thirdparty/conflict", "POST"))
        self.assertEqual(response.code, 409)
        self.assertEqual(json.loads(body), {"conflict": {"code": 409,
                                                         "message": "This always conflicts."}})
        response, body = yield defer.ensureDeferred(self.get("/thirdparty/hello", "DELETE"))
        self.assertEqual(response.code, 405)
        self.assertIn("badMethod", json.loads(body))
        response, body = yield defer.ensureDeferred(self.get("/thirdparty/crash"))
        self.assertEqual(response.code, 500)
        self.assertIn("computeFault", json.loads(body))
        self.assertNotIn(b"secret internal detail", body)
        self.flushLoggedErrors(RuntimeError)

    @defer.inlineCallbacks
    def test_request_id_and_log_line(self):
        """Each response carries X-Request-Id (a valid client one is kept) and
        each request is logged exactly once with method, path, status, bytes,
        duration and id."""
        self.start_node()
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        response, _ = yield defer.ensureDeferred(self.get("/thirdparty/hello"))
        rid = response.headers.getRawHeaders("x-request-id")[0]
        self.assertTrue(rid.startswith("req-"))
        response, _ = yield defer.ensureDeferred(
            self.get("/thirdparty/hello?X-Auth-Token=hush",
                     headers={"X-Request-Id": "client-chosen-id-1"}))
        self.assertEqual(response.headers.getRawHeaders("x-request-id"), ["client-chosen-id-1"])
        lines = [e for e in events if e.get("log_namespace") == "snfd.http"]
        self.assertEqual([e["request_id"] for e in lines], [rid, "client-chosen-id-1"])
        self.assertEqual({(e["method"], e["path"], e["status"]) for e in lines},
                         {("GET", "/thirdparty/hello", 200)})
        self.assertNotIn("hush", repr(lines))

    @defer.inlineCallbacks
    def test_metrics(self):
        """GET /metrics serves Prometheus text with requests by route and
        status, latency, named DB interactions and leadership."""
        self.start_node()
        yield defer.ensureDeferred(self.get("/thirdparty/ticks"))
        yield defer.ensureDeferred(self.get("/nowhere"))
        yield defer.ensureDeferred(wait_for(lambda: self.node.election.is_leader, what="leader"))
        response, body = yield defer.ensureDeferred(self.get("/metrics"))
        self.assertEqual(response.code, 200)
        text = body.decode()
        self.assertIn('snfd_http_requests_total{method="GET",route="/thirdparty",status="200"} 1.0',
                      text)
        self.assertIn('snfd_http_requests_total{method="GET",route="other",status="404"} 1.0', text)
        self.assertIn('snfd_http_request_seconds_bucket{le="0.1",route="/thirdparty"}', text)
        self.assertIn('snfd_db_interaction_seconds_count{name="thirdparty.count",outcome="ok"}',
                      text)
        self.assertIn("snfd_cluster_leader 1.0", text)

    @defer.inlineCallbacks
    def test_cluster_view(self):
        """GET /_cluster from a local caller shows this node, the leader, the
        epoch and the members; the plugin's leader duty runs."""
        self.start_node()
        yield defer.ensureDeferred(wait_for(lambda: self.node.election.is_leader, what="leader"))
        data = yield defer.ensureDeferred(
            self.poll_json("/_cluster", lambda d: d["members"], "membership"))
        self.assertEqual(data["node"], self.node.node_id)
        self.assertEqual(data["leader"], self.node.node_id)
        self.assertGreaterEqual(data["epoch"], 1)
        self.assertEqual([m["id"] for m in data["members"]], [self.node.node_id])
        self.assertTrue(data["members"][0]["alive"])
        counts = yield defer.ensureDeferred(self.poll_json(
            "/thirdparty/ticks", lambda d: d.get(self.node.node_id), "leader ticks"))
        self.assertGreater(counts[self.node.node_id], 0)

    @defer.inlineCallbacks
    def test_health_503_when_database_down(self):
        """While the database is down /_health answers 200 "degraded" (with
        the reason) for the pool's retry window, which requests wait out,
        then 503 "unavailable"; 200 "ok" once it is back."""
        pg = throwaway_postgres(self)
        self.start_node(pg.dsn, retry_window=1.5)
        response, _ = yield defer.ensureDeferred(self.get("/_health"))
        self.assertEqual(response.code, 200)
        pg.stop()
        response, body = yield defer.ensureDeferred(self.get("/_health"))
        data = json.loads(body)
        self.assertEqual((response.code, data["status"]), (200, "degraded"))
        self.assertFalse(data["database"]["ok"])
        self.assertTrue(data["database"]["error"])
        yield task.deferLater(reactor, 1.6, lambda: None)
        response, body = yield defer.ensureDeferred(self.get("/_health"))
        data = json.loads(body)
        self.assertEqual((response.code, data["status"]), (503, "unavailable"))
        self.assertGreaterEqual(data["database"]["failing_for_s"], 1.5)
        pg.start()
        for _ in range(200):
            response, body = yield defer.ensureDeferred(self.get("/_health"))
            if response.code == 200:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(json.loads(body)["status"], "ok")

    @defer.inlineCallbacks
    def test_tls_endpoint(self):
        """An ssl: endpoint serves the same site over TLS with the certificate
        and key from [node] tls_certificate / tls_key; a client pinning that
        certificate gets the health JSON."""
        cert, key = self_signed("127.0.0.1", "localhost")
        tmp = tempfile.mkdtemp(prefix="snfd-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(cert)
        with open(key_path, "wb") as f:
            f.write(key)
        self.start_node(tls=(cert_path, key_path))
        pool = HTTPClientPool(reactor, Metrics())
        self.addCleanup(lambda: defer.ensureDeferred(pool.close()))
        client = pool.client(Target("self", f"https://127.0.0.1:{self.tls_port}",
                                    ca_certificate=cert, timeout=10))
        status, body = yield defer.ensureDeferred(client.json_request("GET", "/_health"))
        self.assertEqual((status, body["status"]), (200, "ok"))
        # plain HTTP still served on the tcp: endpoint
        response, _ = yield defer.ensureDeferred(self.get("/_health"))
        self.assertEqual(response.code, 200)

    def test_tls_endpoint_without_certificate(self):
        """An ssl: endpoint with no certificate configured is a startup error
        naming [node] tls_certificate."""
        plugin = thirdparty_plugin()
        env = {"SNFD_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
               "SNFD_LISTEN": "ssl:1:interface=127.0.0.1",
               "SNFD_STATE_DIR": tempfile.mkdtemp(prefix="snfd-test-state-")}
        self.addCleanup(shutil.rmtree, env["SNFD_STATE_DIR"], True)
        config = cfg.load_config(None, {plugin.name: plugin.config_keys}, environ=env)
        e = self.assertRaises(tap.StartupError, tap.build, config, {plugin.name: plugin},
                              reactor)
        self.assertIn("[node] tls_certificate", str(e))


class CountingSink:
    """A request body sink that keeps only counts (so a body far larger
    than memory passes through), recording what was received when."""

    def __init__(self) -> None:
        self.received = 0
        self.chunks = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.received += len(data)
        self.chunks += 1

    def tell(self) -> int:
        return self.received

    def seek(self, offset: int, whence: int = 0) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class SinkResource(resource.Resource):
    """Streams every PUT body into a ``CountingSink``; renders what it got."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.sinks: list[tuple[bytes, bytes, int | None, CountingSink]] = []
        self.rendered: list[object] = []

    def body_sink(self, request, method, uri, length):
        if method != b"PUT":
            return None
        sink = CountingSink()
        self.sinks.append((method, uri, length, sink))
        return sink

    def render_PUT(self, request):
        self.rendered.append(request.content)
        return b"stored"


class StreamingTests(unittest.TestCase):
    """Request bodies are streamed to the mounted resource's sink as they
    arrive, and a Twisted that would stop that is a startup error."""

    MiB = 1024 * 1024

    def connect(self) -> tuple[SinkResource, object, StringTransport]:
        """The node's Site with a ``SinkResource`` at /sink, and one
        connection to it, in memory."""
        sinks = SinkResource()
        root = Root()
        root.mount("sink", sinks)
        site = Site(root, task.Clock(), Metrics())
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        return sinks, channel, transport

    def test_large_body_reaches_the_sink_before_it_ends(self):
        """A 256 MiB body (far more than a node should hold for one
        request) reaches the sink piece by piece, each piece as it arrives,
        before the body ended; the resource renders once it ended, with the
        sink as request.content.  Fails if bodies silently fall back to
        being buffered."""
        sinks, channel, transport = self.connect()
        total, piece = 256 * self.MiB, b"x" * self.MiB
        channel.dataReceived(b"PUT /sink/big?part=1 HTTP/1.1\r\nHost: node\r\n"
                             b"Content-Length: %d\r\n\r\n" % total)
        [(method, uri, length, sink)] = sinks.sinks
        self.assertEqual((method, uri, length), (b"PUT", b"/sink/big?part=1", total))
        for sent in range(1, total // self.MiB):
            channel.dataReceived(piece)
            self.assertEqual(sink.received, sent * self.MiB)
        self.assertEqual(sinks.rendered, [])
        channel.dataReceived(piece)
        self.assertEqual(sinks.rendered, [sink])
        self.assertEqual((sink.received, sink.chunks), (total, total // self.MiB))
        self.assertIn(b"stored", transport.value())

    def test_chunked_body_reaches_the_sink_before_it_ends(self):
        """A chunked body (no length) is streamed the same way."""
        sinks, channel, _ = self.connect()
        channel.dataReceived(b"PUT /sink/chunked HTTP/1.1\r\nHost: node\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
        [(_, _, length, sink)] = sinks.sinks
        self.assertIsNone(length)
        for sent in range(1, 4):
            channel.dataReceived(b"%x\r\n%s\r\n" % (self.MiB, b"y" * self.MiB))
            self.assertEqual(sink.received, sent * self.MiB)
        self.assertEqual(sinks.rendered, [])
        channel.dataReceived(b"0\r\n\r\n")
        self.assertEqual(sinks.rendered, [sink])

    def test_other_bodies_are_buffered(self):
        """A request whose resource declines to stream (or has no
        body_sink) is buffered as Twisted does by default."""
        sinks, channel, transport = self.connect()
        channel.dataReceived(b"POST /sink/x HTTP/1.1\r\nHost: node\r\n"
                             b"Content-Length: 5\r\n\r\nhello")
        self.assertEqual(sinks.sinks, [])
        self.assertIn(b"405", transport.value().split(b"\r\n", 1)[0])

    def test_moved_request_line_is_a_startup_error(self):
        """If Twisted no longer keeps the request line where request_line
        reads it, building the site (hence the node) fails, naming the
        problem, instead of buffering every body."""
        original = http.HTTPChannel.lineReceived

        def moved(channel, line):
            original(channel, line)
            for name in ("_command", "_path"):
                if name in channel.__dict__:
                    channel.__dict__["_renamed" + name] = channel.__dict__.pop(name)

        self.patch(http.HTTPChannel, "lineReceived", moved)
        e = self.assertRaises(StreamingUnavailable, Site, Root(), task.Clock(), Metrics())
        self.assertIn("before the request body", str(e))
        plugin = thirdparty_plugin()
        env = {"SNFD_DATABASE_URL": fresh_database(self),
               "SNFD_LISTEN": f"tcp:{free_port()}:interface=127.0.0.1",
               "SNFD_STATE_DIR": tempfile.mkdtemp(prefix="snfd-test-state-")}
        self.addCleanup(shutil.rmtree, env["SNFD_STATE_DIR"], True)
        config = cfg.load_config(None, {plugin.name: plugin.config_keys}, environ=env,
                                 overrides={("database", "auto_upgrade"): "yes"})
        self.assertRaises(StreamingUnavailable, tap.build, config, {plugin.name: plugin},
                          reactor)

    def test_buffering_twisted_is_a_startup_error(self):
        """If Twisted no longer lets the request choose where its body goes
        before it arrives (it buffers the body itself), building the site
        fails."""
        def buffering(channel):
            request = channel.requests[-1]
            request.content = io.BytesIO()

        self.patch(http.HTTPChannel, "allHeadersReceived", buffering)
        e = self.assertRaises(StreamingUnavailable, Site, Root(), task.Clock(), Metrics())
        self.assertIn("no longer reaches the body sink", str(e))
