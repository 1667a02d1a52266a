"""The dispatcher (``snfd.cyclades.dispatcher``) on the in-process bus and on
RabbitMQ: its queues and bindings, messages reaching the update path, and
bad messages dead-lettered while the consumers keep going."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest

from snfd.bus import make_bus
from snfd.bus.local import LocalBus
from snfd.cyclades import store
from snfd.cyclades.dispatcher import Dispatcher, decode
from snfd.cyclades.updates import MalformedMessage, UpdatePath
from snfd.metrics import Metrics
from tests.bus.test_contract import (
    DEFAULT_AMQP_URL,
    BusTestMixin,
    amqp_skip_reason,
    delete_names,
    real_reactor,
)
from tests.cyclades.test_updates import T0, CycladesDBMixin, at, op

OP_KEY = "ganeti.snf.event.op"


class DispatcherMixin(CycladesDBMixin, BusTestMixin):
    exchange = "ganeti"
    prefix = "snf"

    async def setUpDispatcher(self, bus: Any) -> None:
        await self.setUpDB()
        self.clock = task.Clock()
        self.clock.advance(T0 + 1000)
        self.bus = bus
        self.updates = UpdatePath(self.db, self.charger, self.clock)
        self.dispatcher = Dispatcher(bus, self.updates, prefix=self.prefix,
                                     exchange=self.exchange)
        self.dispatcher.startService()
        self.addCleanup(self.dispatcher.stopService)
        self.dead: list[Any] = []
        await self.dispatcher._declaring
        bus.consume(f"{self.prefix}-events-op.dead", self.dead.append)

    async def publish(self, key: str, body: bytes | dict[str, Any]) -> None:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        await self.bus.publish(self.exchange, key, body)

    async def state(self, server) -> str:
        return (await self.get(server)).operstate

    async def wait_state(self, server, state: str) -> None:
        for _ in range(3000):
            if await self.state(server) == state:
                return
            await self.sleep(0.01)
        self.fail(f"server {server.id} never reached {state}")


class LocalDispatcherTests(DispatcherMixin, unittest.TestCase):
    def setUp(self):
        bus = LocalBus(real_reactor(), Metrics())
        bus.start()
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        return defer.ensureDeferred(self.setUpDispatcher(bus))

    def test_queues(self):
        """The four queues and their routing keys follow the prefix."""
        self.assertEqual(Dispatcher(None, self.updates, prefix="abc").queues, {
            "abc-events-op": "ganeti.abc.event.op",
            "abc-events-network": "ganeti.abc.event.network",
            "abc-events-progress": "ganeti.abc.event.progress",
            "abc-events-cluster": "ganeti.event.cluster"})

    async def test_op_status_reaches_the_server(self):
        """A ganeti-op-status message published on the op key changes the
        server."""
        s = await self.server(operstate="STARTED")
        await self.publish(OP_KEY, op(s, "SHUTDOWN", "success", 5, 1))
        await self.wait_state(s, "STOPPED")

    async def test_progress(self):
        """Progress messages on the progress key reach the server."""
        s = await self.server()
        await self.publish("ganeti.snf.event.progress",
                           {"type": "image-copy-progress", "instance": f"snf-{s.id}",
                            "progress": 42, "event_time": at(1)})
        for _ in range(3000):
            if (await self.get(s)).buildpercentage == 42:
                break
            await self.sleep(0.01)
        self.assertEqual((await self.get(s)).buildpercentage, 42)

    async def test_garbage_is_dead_lettered(self):
        """Bodies that are not UTF-8 JSON objects with a type, unknown
        types and messages with missing keys or wrong types go to the dead
        letter queue; the consumer carries on with the next message."""
        s = await self.server(operstate="STARTED")
        good = op(s, "SHUTDOWN", "success", 5, 1)
        garbage = [b"\xff\xfe", b"not json", b"[1, 2]", b'{"no": "type"}',
                   b'{"type": 7}', b'{"type": "who-knows"}',
                   json.dumps({k: v for k, v in good.items() if k != "jobId"}).encode(),
                   json.dumps({**good, "event_time": "yesterday"}).encode()]
        for body in garbage:
            await self.publish(OP_KEY, body)
        await self.publish(OP_KEY, good)
        await self.wait_state(s, "STOPPED")
        await self.wait_for(lambda: len(self.dead) == len(garbage), what="dead letters")
        self.assertEqual(sorted(m.body for m in self.dead), sorted(garbage))
        self.assertEqual(len(self.flushLoggedErrors(MalformedMessage)), len(garbage))

    async def test_network_and_cluster_messages_acknowledged(self):
        """Network, cluster and heartbeat messages are acknowledged, not
        dead-lettered."""
        s = await self.server(operstate="STARTED")
        await self.publish("ganeti.snf.event.network",
                           {"type": "ganeti-network-status", "network": "snf-net-1",
                            "operation": "OP_NETWORK_ADD", "status": "success"})
        await self.publish("ganeti.event.cluster",
                           {"type": "ganeti-cluster-status", "cluster": "c"})
        await self.publish(OP_KEY, {"type": "eventd-heartbeat", "cluster": "c"})
        await self.publish(OP_KEY, op(s, "SHUTDOWN", "success", 5, 1))
        await self.wait_state(s, "STOPPED")
        self.assertEqual(self.dead, [])

    def test_decode(self):
        """decode() accepts exactly UTF-8 JSON objects with a string type."""
        self.assertEqual(decode(b'{"type": "x", "a": 1}'), {"type": "x", "a": 1})
        for body in (b"", b"null", b'"x"', b'{"type": null}'):
            self.assertRaises(MalformedMessage, decode, body)

    async def test_stop(self):
        """After stopService nothing more is consumed: the message stays in
        the queue for whoever consumes next."""
        s = await self.server(operstate="STARTED")
        await self.dispatcher.stopService()
        message = op(s, "SHUTDOWN", "success", 5, 1)
        await self.publish(OP_KEY, message)
        left = await self.take_rest(self.bus, f"{self.prefix}-events-op")
        self.assertEqual([json.loads(body) for body in left], [message])
        self.assertEqual(await self.state(s), "STARTED")


class AmqpDispatcherTests(DispatcherMixin, unittest.TestCase):
    """The dispatcher on RabbitMQ (``SNFD_TEST_AMQP_URL``)."""

    def setUp(self):
        url = os.environ.get("SNFD_TEST_AMQP_URL", DEFAULT_AMQP_URL)
        reason = amqp_skip_reason(url)
        if reason:
            raise unittest.SkipTest(reason)
        tag = uuid.uuid4().hex[:10]
        self.exchange = f"snfdtest-ganeti-{tag}"
        self.prefix = f"t{tag}"
        queues = [f"{self.prefix}-events-{k}" for k in ("op", "network", "progress",
                                                         "cluster")]
        self.addCleanup(lambda: delete_names(url, queues, [self.exchange]))
        bus = make_bus(url, real_reactor(), Metrics(), publish_timeout=20.0,
                       reconnect_max_delay=2.0)
        bus.start()
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        return defer.ensureDeferred(self.setUpDispatcher(bus))

    async def test_events_and_dead_letters(self):
        """On RabbitMQ too an event reaches the server and a bad message is
        dead-lettered."""
        s = await self.server(operstate="STARTED")
        await self.publish(f"ganeti.{self.prefix}.event.op", b"garbage")
        await self.publish(f"ganeti.{self.prefix}.event.op",
                           {**op(s, "SHUTDOWN", "success", 5, 1),
                            "instance": f"snf-{s.id}"})
        # The op message's routing key carries the prefix; the update path
        # only cares for the instance name.
        await self.wait_state(s, "STOPPED")
        await self.wait_for(lambda: len(self.dead) == 1, what="the dead letter")
        self.assertEqual(self.dead[0].body, b"garbage")
        self.flushLoggedErrors(MalformedMessage)
        self.assertEqual((await self.db.run("t", store.server_txn, s.id)).backendjobid, 5)
