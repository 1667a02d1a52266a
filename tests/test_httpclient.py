"""Tests for snfd.httpclient against real servers on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import protocol, ssl
from twisted.internet.defer import CancelledError, Deferred
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest
from twisted.web import resource, server

from snfd.httpclient import (
    HTTPClientPool,
    OutboundError,
    OutboundTimeout,
    Target,
)
from snfd.metrics import Metrics
from snfd.testing.tls import self_signed as _self_signed


class _Echo(resource.Resource):
    """Answers every request with JSON describing what it received."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        auth = request.getHeader(b"authorization")
        return json.dumps({
            "method": request.method.decode(),
            "path": request.path.decode(),
            "args": {
                k.decode(): [v.decode() for v in vs]
                for k, vs in request.args.items()
            },
            "authorization": auth.decode() if auth else None,
            "body": request.content.read().decode(),
        }).encode()


class _HeadersThenSilence(resource.Resource):
    """Sends the status, headers and part of the body, then nothing more."""

    isLeaf = True

    def render(self, request: server.Request) -> Any:
        request.setHeader(b"content-length", b"100")
        request.write(b"partial")
        return server.NOT_DONE_YET


class _Tracked(ProtocolWrapper):
    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.factory.lost(self)


class _Server(WrappingFactory):
    """A listener that counts its connections and closes them all on stop."""

    protocol = _Tracked

    def __init__(self, reactor: Any, inner: protocol.Factory,
                 tls: ssl.PrivateCertificate | None = None):
        if tls is not None:
            inner = TLSMemoryBIOFactory(tls.options(), False, inner)
        super().__init__(inner)
        self.connections_made = 0
        self._open: dict[_Tracked, Deferred[None]] = {}
        self._stopped = False
        self._port = reactor.listenTCP(0, self, interface="127.0.0.1")
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._port.getHost().port}"

    def registerProtocol(self, p: _Tracked) -> None:
        super().registerProtocol(p)
        self.connections_made += 1
        self._open[p] = Deferred()

    def lost(self, p: _Tracked) -> None:
        self._open.pop(p).callback(None)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._port.stopListening()
        waits = list(self._open.values())
        for p in list(self._open):
            p.transport.abortConnection()
        for d in waits:
            await d


class HTTPClientPoolTests(unittest.TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.metrics = Metrics()
        self.pool = HTTPClientPool(reactor, self.metrics)
        self.addCleanup(lambda: Deferred.fromCoroutine(self.pool.close()))

    def serve(self, root: resource.Resource | None = None, *,
              tls: tuple[bytes, bytes] | None = None,
              factory: protocol.Factory | None = None) -> _Server:
        """Listen on a free 127.0.0.1 port; stopped after the test."""
        if factory is None:
            factory = server.Site(root if root is not None else _Echo())
        private = None
        if tls is not None:
            private = ssl.PrivateCertificate.loadPEM(tls[0] + tls[1])
        listener = _Server(self.reactor, factory, private)
        # Cleanups run last-in first-out: the pool closes before this.
        self.addCleanup(lambda: Deferred.fromCoroutine(listener.stop()))
        return listener

    def outcomes(self, target: str) -> dict[str, float]:
        counts = {}
        for metric in self.metrics.outbound_requests.collect():
            for sample in metric.samples:
                if (sample.name.endswith("_total")
                        and sample.labels["target"] == target):
                    counts[sample.labels["outcome"]] = sample.value
        return counts

    async def test_json_round_trip(self) -> None:
        """A JSON body and query parameters reach the server, and the JSON
        answer comes back parsed with its status; the call is counted as
        2xx for the target."""
        srv = self.serve()
        client = self.pool.client(Target(name="node", base_url=srv.url + "/"))
        status, body = await client.json_request(
            "POST", "/api/things", json={"size": 3}, params={"dry": "1"})
        self.assertEqual(status, 200)
        self.assertEqual(body["method"], "POST")
        self.assertEqual(body["path"], "/api/things")
        self.assertEqual(body["args"], {"dry": ["1"]})
        self.assertEqual(json.loads(body["body"]), {"size": 3})
        self.assertIsNone(body["authorization"])
        self.assertEqual(self.outcomes("node"), {"2xx": 1.0})

    async def test_paths_join_onto_base_url_prefix(self) -> None:
        """Paths are joined onto a base URL's path prefix with exactly one
        slash, whether or not either side carries one."""
        srv = self.serve()
        client = self.pool.client(
            Target(name="node", base_url=srv.url + "/prefix/"))
        response = await client.get("/2/info")
        self.assertEqual(response.json()["path"], "/prefix/2/info")
        response = await client.get("2/info")
        self.assertEqual(response.json()["path"], "/prefix/2/info")

    async def test_basic_auth_sent(self) -> None:
        """A target with a username sends HTTP basic auth on every call."""
        srv = self.serve()
        client = self.pool.client(Target(
            name="rapi", base_url=srv.url, username="snf", password="s3cret"))
        response = await client.get("/2/instances")
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json()["authorization"], "Basic c25mOnMzY3JldA==")

    async def test_pinned_self_signed_certificate(self) -> None:
        """An HTTPS server with a self-signed certificate is reached when
        that certificate is pinned as the target's ca_certificate."""
        cert, key = _self_signed("127.0.0.1", "localhost")
        srv = self.serve(tls=(cert, key))
        client = self.pool.client(Target(
            name="rapi", base_url=srv.url, ca_certificate=cert.decode()))
        status, body = await client.json_request("GET", "/2/version")
        self.assertEqual(status, 200)
        self.assertEqual(body["path"], "/2/version")

    async def test_self_signed_without_pin_fails(self) -> None:
        """Without a pin the platform trust store does not trust a
        self-signed certificate: the call fails with an OutboundError naming
        the target and TLS verification."""
        cert, key = _self_signed("127.0.0.1", "localhost")
        srv = self.serve(tls=(cert, key))
        client = self.pool.client(Target(name="rapi", base_url=srv.url))
        with self.assertRaises(OutboundError) as caught:
            await client.get("/2/version")
        self.assertNotIsInstance(caught.exception, OutboundTimeout)
        self.assertIn("rapi", str(caught.exception))
        self.assertIn("TLS verification failed", str(caught.exception))
        self.assertEqual(self.outcomes("rapi"), {"error": 1.0})

    async def test_different_pin_fails(self) -> None:
        """A server presenting a certificate other than the pinned one is
        refused with an OutboundError about TLS verification."""
        cert, key = _self_signed("127.0.0.1", "localhost")
        other, _ = _self_signed("127.0.0.1", "localhost")
        srv = self.serve(tls=(cert, key))
        client = self.pool.client(Target(
            name="rapi", base_url=srv.url, ca_certificate=other))
        with self.assertRaises(OutboundError) as caught:
            await client.get("/2/version")
        self.assertIn("TLS verification failed", str(caught.exception))

    async def test_pinned_certificate_must_name_the_host(self) -> None:
        """A pinned certificate that does not name the IP the target is
        reached at is refused, unless verify_hostname is False."""
        cert, key = _self_signed("ganeti.example")
        srv = self.serve(tls=(cert, key))
        strict = HTTPClientPool(self.reactor, self.metrics)
        self.addCleanup(lambda: Deferred.fromCoroutine(strict.close()))
        client = strict.client(Target(
            name="strict", base_url=srv.url, ca_certificate=cert))
        with self.assertRaises(OutboundError) as caught:
            await client.get("/")
        self.assertIn("TLS verification failed", str(caught.exception))

        lax = self.pool.client(Target(
            name="lax", base_url=srv.url, ca_certificate=cert,
            verify_hostname=False))
        response = await lax.get("/")
        self.assertEqual(response.status, 200)

    async def test_two_pins_in_one_pool(self) -> None:
        """Two targets pinned to different self-signed certificates are both
        reachable through the same pool."""
        cert_a, key_a = _self_signed("127.0.0.1")
        cert_b, key_b = _self_signed("127.0.0.1")
        srv_a = self.serve(tls=(cert_a, key_a))
        srv_b = self.serve(tls=(cert_b, key_b))
        a = self.pool.client(
            Target(name="a", base_url=srv_a.url, ca_certificate=cert_a))
        b = self.pool.client(
            Target(name="b", base_url=srv_b.url, ca_certificate=cert_b))
        self.assertEqual((await a.get("/x")).status, 200)
        self.assertEqual((await b.get("/y")).status, 200)
        self.assertEqual((await a.get("/z")).status, 200)

    def test_conflicting_trust_for_one_server_refused(self) -> None:
        """Two targets at the same host and port must agree on their pinned
        certificate; the second registration is refused."""
        cert_a, _ = _self_signed("127.0.0.1")
        cert_b, _ = _self_signed("127.0.0.1")
        self.pool.client(Target(
            name="a", base_url="https://127.0.0.1:5080", ca_certificate=cert_a))
        self.assertRaises(ValueError, self.pool.client, Target(
            name="b", base_url="https://127.0.0.1:5080/other",
            ca_certificate=cert_b))

    async def test_replaced_trust(self) -> None:
        """A server whose certificate changed is trusted by its new pin once
        the target is registered with ``replace_trust``; the old pin no
        longer verifies it."""
        cert_old, _ = _self_signed("127.0.0.1")
        cert_new, key_new = _self_signed("127.0.0.1")
        srv = self.serve(tls=(cert_new, key_new))
        old = self.pool.client(Target(name="a", base_url=srv.url, ca_certificate=cert_old))
        with self.assertRaises(OutboundError):
            await old.get("/x")
        new = self.pool.client(Target(name="a", base_url=srv.url, ca_certificate=cert_new),
                               replace_trust=True)
        self.assertEqual((await new.get("/x")).status, 200)

    async def test_silent_server_times_out(self) -> None:
        """A server that accepts the connection but never answers makes the
        call raise OutboundTimeout (an OutboundError) naming the target and
        the timeout, counted as a timeout."""
        srv = self.serve(factory=protocol.Factory.forProtocol(protocol.Protocol))
        client = self.pool.client(
            Target(name="slow", base_url=srv.url, timeout=0.5))
        with self.assertRaises(OutboundTimeout) as caught:
            await client.get("/2/jobs/1")
        message = str(caught.exception)
        self.assertIn("slow", message)
        self.assertIn("GET", message)
        self.assertIn("/2/jobs/1", message)
        self.assertIn("0.5s", message)
        self.assertIsInstance(caught.exception, OutboundError)
        self.assertEqual(self.outcomes("slow"), {"timeout": 1.0})

    async def test_timeout_covers_the_body(self) -> None:
        """A server that sends headers but never finishes the body makes the
        call raise OutboundTimeout with the per-call timeout."""
        srv = self.serve(_HeadersThenSilence())
        client = self.pool.client(Target(name="slow", base_url=srv.url))
        with self.assertRaises(OutboundTimeout) as caught:
            await client.get("/", timeout=0.3)
        self.assertEqual(caught.exception.seconds, 0.3)

    async def test_caller_cancels_while_connecting(self) -> None:
        """Cancelling a call that is still connecting fails it with
        CancelledError, not an OutboundError."""
        srv = self.serve()
        client = self.pool.client(Target(name="node", base_url=srv.url))
        call = Deferred.fromCoroutine(client.get("/"))
        call.cancel()
        with self.assertRaises(CancelledError):
            await call
        self.assertEqual(self.outcomes("node"), {"cancelled": 1.0})

    async def test_caller_cancels_while_waiting(self) -> None:
        """Cancelling a call that waits for an answer fails it with
        CancelledError and closes its connection."""
        srv = self.serve(factory=protocol.Factory.forProtocol(protocol.Protocol))
        client = self.pool.client(Target(name="node", base_url=srv.url))
        call = Deferred.fromCoroutine(client.get("/"))
        self.reactor.callLater(0.1, call.cancel)
        with self.assertRaises(CancelledError):
            await call
        self.assertEqual(self.outcomes("node"), {"cancelled": 1.0})

    async def test_connection_refused(self) -> None:
        """Nothing listening makes the call raise OutboundError saying the
        connection was refused."""
        srv = self.serve()
        url = srv.url
        await srv.stop()
        client = self.pool.client(Target(name="gone", base_url=url))
        with self.assertRaises(OutboundError) as caught:
            await client.get("/")
        self.assertIn("gone", str(caught.exception))
        self.assertIn("connection refused", str(caught.exception))

    async def test_error_status_is_an_answer(self) -> None:
        """An HTTP error status is returned, not raised, and counted by its
        class; a non-JSON error body reads as None."""
        srv = self.serve(resource.NoResource())
        client = self.pool.client(Target(name="node", base_url=srv.url))
        status, body = await client.json_request("GET", "/missing")
        self.assertEqual(status, 404)
        self.assertIsNone(body)
        self.assertEqual(self.outcomes("node"), {"4xx": 1.0})

    async def test_connections_are_reused(self) -> None:
        """Sequential calls to one target reuse one persistent connection."""
        srv = self.serve()
        client = self.pool.client(Target(name="node", base_url=srv.url))
        for _ in range(3):
            self.assertEqual((await client.get("/")).status, 200)
        self.assertEqual(srv.connections_made, 1)

    async def test_tls_connections_are_reused(self) -> None:
        """Sequential HTTPS calls to one pinned target reuse one connection."""
        cert, key = _self_signed("127.0.0.1")
        srv = self.serve(tls=(cert, key))
        client = self.pool.client(
            Target(name="rapi", base_url=srv.url, ca_certificate=cert))
        for _ in range(3):
            self.assertEqual((await client.get("/")).status, 200)
        self.assertEqual(srv.connections_made, 1)
