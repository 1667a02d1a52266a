"""The behaviour every ``IMessageBus`` must have, run against each one.

``BusContractMixin`` holds the tests; ``LocalBusContractTests`` runs them
on the in-process bus and ``AmqpBusContractTests`` on the RabbitMQ at
``SNFD_TEST_AMQP_URL`` (default: the local broker on 127.0.0.1:5672).  The
AMQP run names every exchange and queue uniquely and deletes them
afterwards, so it can run again on the same broker.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterable

from twisted.internet import defer, task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.bus import DEAD_LETTER_EXCHANGE, BusUnavailable, UnknownExchange, make_bus
from snfd.interfaces import IConsumer, IMessage, IMessageBus
from snfd.metrics import Metrics

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def async_test(f):
    """Run an ``async def`` test method as a Deferred-returning one."""
    @functools.wraps(f)
    def run(self, *args, **kwargs):
        return defer.ensureDeferred(f(self, *args, **kwargs))
    return run


def real_reactor():
    from twisted.internet import reactor
    return reactor


class Boom(Exception):
    """What failing handlers raise."""


class BusTestMixin:
    """Helpers for tests that drive a bus on the real reactor."""

    async def sleep(self, seconds: float) -> None:
        """Let time pass (to give something the chance to start, never
        before asserting that something did not happen: see ``drain``)."""
        await task.deferLater(real_reactor(), seconds, lambda: None)

    async def wait_for(self, predicate, timeout: float = 30.0,
                       what: str = "condition") -> None:
        """Poll ``predicate`` until it is true; fail after ``timeout`` s."""
        reactor = real_reactor()
        deadline = reactor.seconds() + timeout
        while not predicate():
            if reactor.seconds() > deadline:
                self.fail(f"timed out after {timeout} s waiting for {what}")
            await self.sleep(0.01)

    async def drain(self, bus, queue: str,
                    *received: Callable[[], Iterable[bytes]]) -> set[bytes]:
        """Wait until the consumers of ``queue`` got everything the queue
        handed out so far: the barrier before asserting that nothing else
        arrived.

        ``received`` holds one callable per consumer of ``queue``, giving
        the bodies that consumer got so far.  Markers (unique bodies) are
        published straight to ``queue`` through AMQP's default exchange
        (``""`` routes by queue name; both buses have it) until every
        consumer has got one.  This is a drain because ``publish`` returns
        only once the broker holds the message in its queues (publisher
        confirms), so whatever the test published earlier is ahead of the
        markers; a queue hands out its messages in order, and a consumer
        gets what it is handed in order (its handler is called as each
        message arrives).  So a consumer that got a marker got everything
        handed to it before.

        Returns the markers, for the caller to leave out.
        """
        markers: set[bytes] = set()
        waiting = list(received)
        while waiting:
            if len(markers) >= 20:
                self.fail(f"after {len(markers)} markers to {queue},"
                          f" {len(waiting)} consumer(s) got none")
            marker = f"drain-{uuid.uuid4().hex}".encode()
            markers.add(marker)
            await bus.publish("", queue, marker)
            await self.wait_for(
                lambda marker=marker: any(marker in got() for got in received),
                what=f"the drain marker on {queue}")
            waiting = [got for got in waiting if markers.isdisjoint(got())]
        return markers

    async def take_rest(self, bus, queue: str) -> list[bytes]:
        """The bodies of the messages left in ``queue`` that no consumer
        holds, in order: a fresh consumer takes them up to a marker
        (``drain``), then stops.  What it takes, no other consumer got; so
        this is the barrier for "the other consumers took no more"."""
        got: list[bytes] = []
        consumer = bus.consume(queue, lambda m: got.append(m.body))
        markers = await self.drain(bus, queue, lambda: got)
        await consumer.stop()
        return [body for body in got if body not in markers]


class BusContractMixin(BusTestMixin):
    """Behaviour tests; a subclass provides ``new_bus`` and ``name``."""

    async def new_bus(self) -> IMessageBus:
        """A started, connected bus, stopped in the test's cleanup."""
        raise NotImplementedError

    def name(self, prefix: str) -> str:
        """A fresh exchange/queue name for this test."""
        return f"snfdtest-{prefix}-{uuid.uuid4().hex[:12]}"

    async def setup_queue(self, bus, bindings_patterns=("#",),
                          exchange=None, **kwargs):
        exchange = exchange or self.name("ex")
        queue = self.name("q")
        await bus.declare_exchange(exchange)
        await bus.declare_queue(
            queue, [(exchange, p) for p in bindings_patterns], **kwargs)
        return exchange, queue

    def sample(self, name: str, **labels) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    @async_test
    async def test_provides_interfaces(self):
        """The bus, its consumers and its messages provide their
        interfaces."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        got = []
        consumer = bus.consume(queue, got.append)
        await bus.publish(exchange, "k", b"x")
        await self.wait_for(lambda: got, what="delivery")
        self.assertTrue(verifyObject(IMessageBus, bus))
        self.assertTrue(verifyObject(IConsumer, consumer))
        self.assertTrue(verifyObject(IMessage, got[0]))
        self.assertEqual(consumer.queue, queue)

    @async_test
    async def test_round_trip(self):
        """A published message reaches the consumer with its exchange,
        routing key, body, headers and content type."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus, ["vm.*"])
        got = []
        bus.consume(queue, got.append)
        await bus.publish(exchange, "vm.create", b'\x00{"id": 1}\xff',
                          headers={"trace": "abc", "attempt": 3},
                          content_type="application/octet-stream")
        markers = await self.drain(bus, queue, lambda: [m.body for m in got])
        [m] = [m for m in got if m.body not in markers]
        self.assertEqual(m.exchange, exchange)
        self.assertEqual(m.routing_key, "vm.create")
        self.assertEqual(m.body, b'\x00{"id": 1}\xff')
        self.assertEqual(m.headers, {"trace": "abc", "attempt": 3})
        self.assertEqual(m.content_type, "application/octet-stream")
        self.assertFalse(m.redelivered)

    @async_test
    async def test_defaults(self):
        """Without headers a message has empty headers and the content
        type ``application/json``."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        got = []
        bus.consume(queue, got.append)
        await bus.publish(exchange, "k", b"{}")
        await self.wait_for(lambda: got, what="delivery")
        self.assertEqual(got[0].headers, {})
        self.assertEqual(got[0].content_type, "application/json")

    @async_test
    async def test_topic_routing(self):
        """``*`` matches exactly one word and ``#`` zero or more."""
        bus = await self.new_bus()
        exchange = self.name("ex")
        await bus.declare_exchange(exchange)
        patterns = {"star": "vm.*", "hash": "vm.#", "errors": "#.error"}
        got = {key: [] for key in patterns}
        queues = {}
        for key, pattern in patterns.items():
            queues[key] = queue = self.name(key)
            await bus.declare_queue(queue, [(exchange, pattern)])
            bus.consume(queue, got[key].append)
        keys = ["vm", "vm.create", "vm.create.error", "net.error", "error",
                "other"]
        for key in keys:
            await bus.publish(exchange, key, key.encode())
        expected = {
            "star": ["vm.create"],
            "hash": ["vm", "vm.create", "vm.create.error"],
            "errors": ["vm.create.error", "net.error", "error"],
        }
        markers: set[bytes] = set()
        for key, queue in queues.items():
            markers |= await self.drain(
                bus, queue, lambda key=key: [m.body for m in got[key]])
        self.assertEqual(
            {k: sorted(m.routing_key for m in v if m.body not in markers)
             for k, v in got.items()},
            {k: sorted(v) for k, v in expected.items()})

    @async_test
    async def test_each_queue_gets_a_copy(self):
        """Two queues bound to the same key both receive the message."""
        bus = await self.new_bus()
        exchange, first = await self.setup_queue(bus, ["job.#"])
        second = self.name("q")
        await bus.declare_queue(second, [(exchange, "job.*")])
        got = {first: [], second: []}
        bus.consume(first, lambda m: got[first].append(m.body))
        bus.consume(second, lambda m: got[second].append(m.body))
        await bus.publish(exchange, "job.run", b"1")
        markers = await self.drain(bus, first, lambda: got[first])
        markers |= await self.drain(bus, second, lambda: got[second])
        self.assertEqual({q: [b for b in v if b not in markers]
                          for q, v in got.items()},
                         {first: [b"1"], second: [b"1"]})

    @async_test
    async def test_competing_consumers_share(self):
        """Consumers of one queue share its messages: each message is
        handled by exactly one of them, and both get work."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        got = {"a": [], "b": []}
        held = []

        def handler(who):
            async def handle(message):
                got[who].append(message.body)
                if got["a"] and got["b"]:
                    for d in held:
                        if not d.called:
                            d.callback(None)
                else:
                    # Hold this consumer's only slot until the other one
                    # got a message too.
                    d = defer.Deferred()
                    held.append(d)
                    await d
            return handle

        bus.consume(queue, handler("a"), prefetch=1)
        bus.consume(queue, handler("b"), prefetch=1)
        bodies = [str(i).encode() for i in range(10)]
        for body in bodies:
            await bus.publish(exchange, "k", body)
        await self.wait_for(lambda: len(got["a"]) + len(got["b"]) >= 10,
                            what="all messages")
        markers = await self.drain(bus, queue, lambda: got["a"],
                                   lambda: got["b"])
        handled = [b for b in got["a"] + got["b"] if b not in markers]
        self.assertEqual(sorted(handled), sorted(bodies))
        self.assertTrue(got["a"] and got["b"], got)

    @async_test
    async def test_prefetch_bounds_concurrent_handlers(self):
        """No more than ``prefetch`` handlers of a consumer run at once:
        the messages it has no room for stay in the queue (another
        consumer can take them); the next one starts when a handler
        finishes."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        gates = []
        done = []

        async def handler(message):
            gate = defer.Deferred()
            gates.append(gate)
            await gate
            done.append(message.body)

        bus.consume(queue, handler, prefetch=2)
        for i in range(5):
            await bus.publish(exchange, "k", str(i).encode())
        await self.wait_for(lambda: len(gates) == 2, what="two handlers")
        self.assertEqual(await self.take_rest(bus, queue), [b"2", b"3", b"4"])
        self.assertEqual(len(gates), 2)
        await bus.publish(exchange, "k", b"5")
        await bus.publish(exchange, "k", b"6")
        gates[0].callback(None)
        await self.wait_for(lambda: len(gates) == 3, what="a third handler")
        self.assertEqual(await self.take_rest(bus, queue), [b"6"])
        self.assertEqual(len(gates), 3)
        for gate in gates[1:]:
            gate.callback(None)
        await self.wait_for(lambda: len(done) == 3, what="every handler")
        self.assertEqual(sorted(done), [b"0", b"1", b"5"])

    @async_test
    async def test_failed_message_is_dead_lettered(self):
        """A message whose handler raises goes to ``<queue>.dead`` with its
        body and headers, via the dead-letter exchange, with an
        ``x-death`` record naming the queue."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        attempts = []

        def fail(message):
            attempts.append(message.body)
            raise Boom("cannot handle")

        bus.consume(queue, fail)
        dead = []
        bus.consume(f"{queue}.dead", dead.append)
        await bus.publish(exchange, "vm.create", b"poison",
                          headers={"trace": "t1"})
        await self.wait_for(lambda: dead, what="the dead letter")
        markers = await self.drain(bus, f"{queue}.dead",
                                   lambda: [m.body for m in dead])
        [m] = [m for m in dead if m.body not in markers]
        self.assertEqual(m.body, b"poison")
        self.assertEqual(m.headers["trace"], "t1")
        self.assertEqual(m.exchange, DEAD_LETTER_EXCHANGE)
        self.assertEqual(m.routing_key, f"{queue}.dead")
        self.assertEqual(m.headers["x-death"][0]["queue"], queue)
        self.assertEqual(m.headers["x-death"][0]["reason"], "rejected")
        self.assertEqual(attempts, [b"poison"])
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)
        await self.wait_for(lambda: self.sample(
            "snfd_bus_consumed_total", queue=queue, outcome="reject") == 1,
            what="the reject metric")

    @async_test
    async def test_acked_message_not_redelivered(self):
        """A message whose handler succeeded is gone from the queue: a
        later consumer does not see it again."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        first = []
        consumer = bus.consume(queue, first.append)
        await bus.publish(exchange, "k", b"once")
        await self.wait_for(lambda: first, what="delivery")
        await consumer.stop()
        second = []
        bus.consume(queue, second.append)
        # The marker is the drain: stop() returned after the handler's ack
        # and the close of the first consumer's channel (which would have
        # put an unacknowledged "once" back in the queue) went out, so a
        # redelivered "once" would be ahead of the marker.
        await bus.publish(exchange, "k", b"marker")
        await self.wait_for(lambda: second, what="the marker")
        self.assertEqual([m.body for m in second], [b"marker"])
        self.assertEqual([m.body for m in first], [b"once"])
        await self.wait_for(lambda: self.sample(
            "snfd_bus_consumed_total", queue=queue, outcome="ack") == 2,
            what="the ack metric")
        self.assertEqual(
            self.sample("snfd_bus_published_total", exchange=exchange), 2)

    @async_test
    async def test_declarations_idempotent(self):
        """Declaring an exchange or a queue again, with the same binding,
        changes nothing: a message still arrives once."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus, ["a.*"])
        await bus.declare_exchange(exchange)
        await bus.declare_queue(queue, [(exchange, "a.*")])
        await bus.declare_queue(queue, [(exchange, "a.*")])
        got = []
        bus.consume(queue, got.append)
        await bus.publish(exchange, "a.b", b"x")
        markers = await self.drain(bus, queue, lambda: [m.body for m in got])
        self.assertEqual([m.body for m in got if m.body not in markers],
                         [b"x"])

    @async_test
    async def test_conflicting_declarations_refused(self):
        """Re-declaring an exchange with another type, or a queue with the
        other dead-letter setting, raises ValueError; the bus keeps
        working."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        with self.assertRaises(ValueError):
            await bus.declare_exchange(exchange, "direct")
        with self.assertRaises(ValueError):
            await bus.declare_queue(queue, dead_letter=False)
        got = []
        bus.consume(queue, got.append)
        await bus.publish(exchange, "k", b"still works")
        await self.wait_for(lambda: got, what="delivery")

    @async_test
    async def test_consumer_stop_stops_delivery(self):
        """After ``consumer.stop()`` the consumer gets nothing more; the
        message stays queued for the next consumer."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        got = []
        consumer = bus.consume(queue, got.append)
        await bus.publish(exchange, "k", b"one")
        await self.wait_for(lambda: got, what="delivery")
        await consumer.stop()
        await bus.publish(exchange, "k", b"two")
        self.assertEqual(await self.take_rest(bus, queue), [b"two"])
        self.assertEqual([m.body for m in got], [b"one"])

    @async_test
    async def test_consumer_stop_waits_for_handlers(self):
        """``consumer.stop()`` fires only after running handlers ended, and
        their messages are acknowledged."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        gate = defer.Deferred()
        started = []

        async def handler(message):
            started.append(message)
            await gate

        consumer = bus.consume(queue, handler)
        await bus.publish(exchange, "k", b"slow")
        await self.wait_for(lambda: started, what="the handler")
        stopped = defer.ensureDeferred(consumer.stop())
        # The barrier: a fresh consumer subscribing after stop() began gets
        # the queue's marker, so the cancel has gone through the broker and
        # all stop() has left to wait for is the handler.
        self.assertEqual(await self.take_rest(bus, queue), [])
        self.assertFalse(stopped.called)
        gate.callback(None)
        await stopped
        # Acknowledged: "slow" is not back in the queue.
        self.assertEqual(await self.take_rest(bus, queue), [])
        self.assertEqual([m.body for m in started], [b"slow"])

    @async_test
    async def test_unroutable_publish_succeeds(self):
        """Publishing to an exchange with no matching binding succeeds
        (the message is dropped, as AMQP does)."""
        bus = await self.new_bus()
        exchange = self.name("ex")
        await bus.declare_exchange(exchange)
        await bus.publish(exchange, "nobody.listens", b"x")
        exchange2, queue = await self.setup_queue(bus, ["only.this"])
        await bus.publish(exchange2, "something.else", b"x")

    @async_test
    async def test_unknown_exchange(self):
        """Publishing to, or binding to, an undeclared exchange raises
        UnknownExchange (counted as a publish failure); the bus keeps
        working."""
        bus = await self.new_bus()
        missing = self.name("missing")
        with self.assertRaises(UnknownExchange):
            await bus.publish(missing, "k", b"x")
        self.assertEqual(self.sample("snfd_bus_publish_failures_total",
                                     exchange=missing), 1)
        with self.assertRaises(UnknownExchange):
            await bus.declare_queue(self.name("q"), [(missing, "#")])
        exchange, queue = await self.setup_queue(bus)
        got = []
        bus.consume(queue, got.append)
        await bus.publish(exchange, "k", b"fine")
        await self.wait_for(lambda: got, what="delivery")

    @async_test
    async def test_consume_before_declare(self):
        """A consumer started before its queue exists receives messages
        once the queue is declared."""
        bus = await self.new_bus()
        exchange, queue = self.name("ex"), self.name("q")
        got = []
        bus.consume(queue, got.append)
        await self.sleep(0.2)
        await bus.declare_exchange(exchange)
        await bus.declare_queue(queue, [(exchange, "#")])
        await bus.publish(exchange, "k", b"late queue")
        await self.wait_for(lambda: got, what="delivery")
        self.assertEqual(got[0].body, b"late queue")

    @async_test
    async def test_handler_publishing(self):
        """A handler may publish; its message is delivered in turn."""
        bus = await self.new_bus()
        exchange, first = await self.setup_queue(bus, ["step.one"])
        second = self.name("q")
        await bus.declare_queue(second, [(exchange, "step.two")])
        got = []

        async def forward(message):
            await bus.publish(exchange, "step.two", message.body + b"!")

        bus.consume(first, forward)
        bus.consume(second, got.append)
        await bus.publish(exchange, "step.one", b"go")
        await self.wait_for(lambda: got, what="the forwarded message")
        self.assertEqual(got[0].body, b"go!")

    @async_test
    async def test_stop(self):
        """A stopped bus is not connected and refuses to publish."""
        bus = await self.new_bus()
        exchange, queue = await self.setup_queue(bus)
        self.assertTrue(bus.connected)
        await bus.stop()
        self.assertFalse(bus.connected)
        with self.assertRaises(BusUnavailable):
            await bus.publish(exchange, "k", b"late")


class LocalBusContractTests(BusContractMixin, unittest.TestCase):
    """The contract, on the in-process bus."""

    async def new_bus(self):
        self.metrics = Metrics()
        bus = make_bus("", real_reactor(), self.metrics)
        bus.start()
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        return bus


_amqp_reachable: dict[str, str | None] = {}


def amqp_skip_reason(url: str) -> str | None:
    """Why the broker at ``url`` cannot be used (``None``: it can)."""
    if url not in _amqp_reachable:
        import pika

        try:
            params = pika.URLParameters(url)
            params.socket_timeout = 3
            params.connection_attempts = 1
            pika.BlockingConnection(params).close()
            _amqp_reachable[url] = None
        except Exception as e:
            _amqp_reachable[url] = (
                f"no AMQP broker at {url} ({type(e).__name__}: {e});"
                " set SNFD_TEST_AMQP_URL to a RabbitMQ to run these tests")
    return _amqp_reachable[url]


def delete_names(url: str, queues, exchanges) -> None:
    """Delete test queues and exchanges (blocking; cleanup only)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)
            channel.queue_delete(f"{queue}.dead")
        for exchange in exchanges:
            channel.exchange_delete(exchange)
    finally:
        connection.close()


class AmqpBusContractTests(BusContractMixin, unittest.TestCase):
    """The contract, on RabbitMQ (``SNFD_TEST_AMQP_URL``)."""

    def setUp(self):
        self.url = os.environ.get("SNFD_TEST_AMQP_URL", DEFAULT_AMQP_URL)
        reason = amqp_skip_reason(self.url)
        if reason:
            raise unittest.SkipTest(reason)
        self.names: list[str] = []
        self.addCleanup(lambda: delete_names(self.url, self.names,
                                             self.names))

    def name(self, prefix):
        name = super().name(prefix)
        self.names.append(name)
        return name

    async def new_bus(self):
        self.metrics = Metrics()
        bus = make_bus(self.url, real_reactor(), self.metrics,
                       publish_timeout=20.0, reconnect_max_delay=2.0)
        bus.start()
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        await self.wait_for(lambda: bus.connected, what="the connection")
        return bus
