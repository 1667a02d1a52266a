"""The bus on a three-node RabbitMQ cluster (``snfd.testing.rabbitmq.
RabbitCluster``) with quorum queues: the broker the node is connected to
is killed with SIGKILL in the middle of a stream of publishes; the bus
moves to another broker, and every message whose publish returned (the
broker confirmed it) is delivered: nothing lost, duplicates counted."""

from __future__ import annotations

from twisted.internet import threads
from twisted.trial import unittest

from snfd.bus import make_bus
from snfd.metrics import Metrics
from snfd.testing.rabbitmq import RabbitCluster
from tests.bus.test_contract import BusTestMixin, async_test, real_reactor


class ClusterFailoverTests(BusTestMixin, unittest.TestCase):
    timeout = 600

    def setUp(self):
        self.cluster = RabbitCluster(3)
        self.addCleanup(self.cluster.stop)
        self.cluster.start()

    @async_test
    async def test_broker_killed_loses_no_confirmed_message(self):
        bus = make_bus(" ".join(self.cluster.urls), real_reactor(), Metrics(),
                       publish_timeout=120.0, reconnect_max_delay=1.0,
                       queue_type="quorum")
        bus.start()
        self.addCleanup(bus.stop)
        await self.wait_for(lambda: bus.connected, 60, "the connection")
        await bus.declare_exchange("events")
        await bus.declare_queue("work", [("events", "job.#")])
        got: list[bytes] = []
        bus.consume("work", lambda m: got.append(m.body))

        confirmed: list[bytes] = []
        victim = next(i for i, url in enumerate(self.cluster.urls)
                      if str(bus.address.port) in url)
        for i in range(400):
            if i == 150:
                await threads.deferToThread(self.cluster.kill, victim)
            body = b"%d" % i
            await bus.publish("events", "job.x", body)
            confirmed.append(body)
        await self.wait_for(lambda: set(confirmed) <= set(got), 120,
                            "every confirmed message delivered")
        self.assertNotEqual(bus.address.port, self.cluster.nodes[victim].port)
        lost = set(confirmed) - set(got)
        self.assertEqual(lost, set())
        duplicates = len(got) - len(set(got))
        self.assertLess(duplicates, 50, duplicates)
