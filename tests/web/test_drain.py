"""A node leaving a load balancer's pool (``snfd.web.drain``): a real
``twistd snfd`` stopped with SIGTERM answers ``/_health`` with 503 while
it still serves requests (each closing its connection), waits for a
request in flight, finishes it, and only then exits; without
``drain_grace`` it stops at once when idle."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from twisted.internet import reactor, threads
from twisted.trial import unittest

from snfd.testing.node import NodeProcess, http_get
from snfd.testing.postgres import fresh_database


def health(url: str) -> tuple[int, dict[str, str], dict[str, object]]:
    status, headers, body = http_get(url + "/_health", timeout=5)
    return status, headers, json.loads(body)


class DrainTests(unittest.TestCase):
    timeout = 180

    async def node(self, grace: float) -> NodeProcess:
        config = Path(self.mktemp()).absolute()
        config.write_text(f"[node]\ndrain_grace = {grace}\ndrain_timeout = 60\n"
                          "[database]\nauto_upgrade = yes\n")
        node = NodeProcess(env={"SNFD_DATABASE_URL": fresh_database(self),
                                "SNFD_PLUGINS": ""}, args=["--config", str(config)])
        self.addCleanup(node.cleanup)
        node.start()
        await node.wait_ready(reactor, timeout=120)
        return node

    async def test_sigterm_drains(self):
        node = await self.node(grace=2.0)
        # A request in flight: its headers and half of its body sent.
        slow = socket.create_connection(("127.0.0.1", node.port), timeout=30)
        self.addCleanup(slow.close)
        slow.sendall(b"POST /no-such-thing HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 10\r\n\r\n12345")
        await threads.deferToThread(time.sleep, 0.3)
        started = time.monotonic()
        node.signal(15)

        # During the grace: /_health fails, other requests are served, and
        # each response closes its connection.
        await threads.deferToThread(time.sleep, 0.3)
        status, headers, body = await threads.deferToThread(health, node.url)
        self.assertEqual((status, body["status"]), (503, "draining"))
        self.assertEqual(headers.get("connection"), "close")
        status, headers, _ = await threads.deferToThread(http_get, node.url + "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("connection"), "close")

        # After the grace, the node waits for the request in flight.
        await threads.deferToThread(time.sleep, 3.0)
        self.assertIsNone(node.proc.poll(), node.tail())
        slow.sendall(b"67890")
        answer = await threads.deferToThread(slow.recv, 65536)
        self.assertTrue(answer.startswith(b"HTTP/1.1 404"), answer[:100])
        code = await threads.deferToThread(node.proc.wait, 60)
        self.assertGreaterEqual(time.monotonic() - started, 2.0)
        self.assertIn(code, (0, -15), node.tail())
        self.assertIn("draining: /_health answers 503; 1 requests in flight",
                      node.tail(200))

    async def test_idle_node_without_grace_stops_at_once(self):
        node = await self.node(grace=0.0)
        node.signal(15)
        code = await threads.deferToThread(node.proc.wait, 30)
        self.assertIn(code, (0, -15), node.tail())
        self.assertIn("0 requests in flight", node.tail(200))


