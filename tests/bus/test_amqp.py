"""Integration tests of ``AmqpBus`` against a private RabbitMQ node that
the tests stop, restart and wipe (``snfd.testing.rabbitmq``).

Each test starts its own node (several seconds); the node is removed in
the test's cleanup whatever the outcome.  Broker stops and starts run in
a thread so that the reactor, and the bus on it, keep running meanwhile.
"""

from __future__ import annotations

from twisted.internet import defer, threads
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from snfd.bus import AmqpAddress, BusUnavailable, make_bus, parse_amqp_url
from snfd.bus.amqp import AmqpBus
from snfd.metrics import Metrics
from snfd.testing.rabbitmq import private_rabbit
from tests.bus.test_contract import BusTestMixin, async_test, real_reactor


class AmqpBusBrokerRestartTests(BusTestMixin, unittest.TestCase):
    """The bus rides out broker outages."""

    def setUp(self):
        self.rabbit = private_rabbit(self)
        self.metrics = Metrics()

    def make_bus(self, publish_timeout=60.0) -> AmqpBus:
        bus = AmqpBus(parse_amqp_url(self.rabbit.url), real_reactor(),
                      self.metrics, publish_timeout=publish_timeout,
                      reconnect_max_delay=1.0)
        bus.start()
        self.addCleanup(bus.stop)
        return bus

    async def broker_down(self, bus) -> None:
        await threads.deferToThread(self.rabbit.stop_node)
        await self.wait_for(lambda: not bus.connected, 60,
                            "the bus to notice the outage")

    async def broker_up(self, bus) -> None:
        await threads.deferToThread(self.rabbit.start)
        await self.wait_for(lambda: bus.connected, 60, "the reconnection")

    def sample(self, name, **labels) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def failed_connects(self) -> list[dict]:
        """The bus's log events of failed connection attempts from now on
        (a list that grows)."""
        events: list[dict] = []

        def observe(event: dict) -> None:
            if str(event.get("log_format", "")).startswith("Cannot connect to AMQP"):
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return events

    @async_test
    async def test_consumer_survives_restart(self):
        """A consumer keeps consuming across a broker restart, and
        messages published while the broker is down are confirmed after
        it is back and then handled."""
        bus = self.make_bus()
        await self.wait_for(lambda: bus.connected, 60, "the connection")
        await bus.declare_exchange("jobs")
        await bus.declare_queue("workers", [("jobs", "job.#")])
        handled = set()
        bus.consume("workers", lambda m: handled.add(m.body))

        before = {f"before-{i}".encode() for i in range(5)}
        for body in sorted(before):
            await bus.publish("jobs", "job.run", body)
        await self.wait_for(lambda: before <= handled, 60, "the first batch")

        await self.broker_down(bus)
        during = {f"during-{i}".encode() for i in range(3)}
        attempts = self.failed_connects()
        pending = [defer.ensureDeferred(bus.publish("jobs", "job.run", body))
                   for body in sorted(during)]
        # The barrier: two more failed reconnects, so the bus tried the
        # broker again after the publishes began, and they still wait.
        count = len(attempts)
        await self.wait_for(lambda: len(attempts) >= count + 2, 60,
                            "two failed reconnects")
        self.assertFalse(any(d.called for d in pending))
        await self.broker_up(bus)
        await defer.gatherResults(pending)

        after = {f"after-{i}".encode() for i in range(5)}
        for body in sorted(after):
            await bus.publish("jobs", "job.run", body)
        everything = before | during | after
        await self.wait_for(lambda: everything <= handled, 60,
                            "every message")
        self.assertEqual(handled, everything)
        self.assertEqual(self.sample("snfd_bus_publish_failures_total",
                                     exchange="jobs"), 0)

    @async_test
    async def test_declarations_replayed_on_fresh_broker(self):
        """When the broker comes back without its data, the bus declares
        its exchanges, queues and dead-letter queues again and its
        consumers resume."""
        bus = self.make_bus()
        await self.wait_for(lambda: bus.connected, 60, "the connection")
        await bus.declare_exchange("events")
        await bus.declare_queue("audit", [("events", "#")])
        handled = []
        bus.consume("audit", lambda m: handled.append(m.body))
        await self.broker_down(bus)
        self.rabbit.wipe()
        await self.broker_up(bus)
        await bus.publish("events", "vm.create", b"after the wipe")
        await self.wait_for(lambda: handled, 60, "delivery")
        self.assertEqual(handled, [b"after the wipe"])

    @async_test
    async def test_publish_times_out_while_broker_down(self):
        """With the broker down, publish raises BusUnavailable once the
        publish timeout passed, and the failure is counted."""
        bus = self.make_bus(publish_timeout=2.0)
        await self.wait_for(lambda: bus.connected, 60, "the connection")
        await bus.declare_exchange("lost")
        await self.broker_down(bus)
        with self.assertRaises(BusUnavailable):
            await bus.publish("lost", "k", b"nobody hears")
        self.assertEqual(self.sample("snfd_bus_publish_failures_total",
                                     exchange="lost"), 1)

    @async_test
    async def test_connected_follows_broker(self):
        """``connected`` and the ``bus_connected`` gauge go false when the
        broker goes away and true again when it is back; each connection
        counts in ``bus_reconnects``."""
        bus = self.make_bus()
        self.assertFalse(bus.connected)
        await self.wait_for(lambda: bus.connected, 60, "the connection")
        self.assertEqual(self.sample("snfd_bus_connected"), 1)
        await self.broker_down(bus)
        self.assertEqual(self.sample("snfd_bus_connected"), 0)
        await self.broker_up(bus)
        self.assertEqual(self.sample("snfd_bus_connected"), 1)
        self.assertEqual(self.sample("snfd_bus_reconnects_total"), 2)
        await bus.stop()
        self.assertFalse(bus.connected)
        self.assertEqual(self.sample("snfd_bus_connected"), 0)


class AmqpBusClusterTests(BusTestMixin, unittest.TestCase):
    """Several brokers, and quorum queues (on a private node)."""

    def setUp(self):
        self.rabbit = private_rabbit(self)

    @async_test
    async def test_brokers_tried_in_turn(self):
        """With the first broker of the list down, the bus connects to the
        next one and works."""
        down = "amqp://guest:guest@127.0.0.1:9/%2F"
        bus = make_bus(f"{down} {self.rabbit.url}", real_reactor(), Metrics(),
                       reconnect_max_delay=0.5)
        bus.start()
        self.addCleanup(bus.stop)
        await self.wait_for(lambda: bus.connected, 30, "the connection")
        self.assertEqual(bus.address, parse_amqp_url(self.rabbit.url))
        await bus.declare_exchange("ex")
        got: list[bytes] = []
        await bus.declare_queue("q", [("ex", "k")])
        bus.consume("q", lambda m: got.append(m.body))
        await bus.publish("ex", "k", b"hello")
        await self.wait_for(lambda: got == [b"hello"], 30, "the message")

    @async_test
    async def test_quorum_queues(self):
        """With queue_type quorum, queues (and their dead-letter queues) are
        declared as quorum queues: the broker refuses to redeclare them
        as classic ones."""
        import pika

        bus = make_bus(self.rabbit.url, real_reactor(), Metrics(), queue_type="quorum")
        bus.start()
        self.addCleanup(bus.stop)
        await bus.declare_exchange("ex")
        await bus.declare_queue("work", [("ex", "k")], dead_letter=True)

        def classic_redeclare(name: str, arguments: dict | None = None) -> str:
            conn = pika.BlockingConnection(pika.URLParameters(self.rabbit.url))
            try:
                conn.channel().queue_declare(queue=name, durable=True, arguments=arguments)
                return "accepted"
            except pika.exceptions.ChannelClosedByBroker as e:
                return f"{e.reply_code} {e.reply_text}"
            finally:
                if conn.is_open:
                    conn.close()
        dead = {"x-dead-letter-exchange": "snfd.dead",
                "x-dead-letter-routing-key": "work.dead"}
        for name, arguments in (("work", dead), ("work.dead", None)):
            answer = await threads.deferToThread(classic_redeclare, name, arguments)
            self.assertIn("406", answer)
            self.assertIn("x-queue-type", answer)


class AmqpBusUnreachableTests(BusTestMixin, unittest.TestCase):
    """The bus facing no broker at all."""

    @async_test
    async def test_publish_without_broker(self):
        """With nothing listening, the bus stays disconnected and publish
        raises BusUnavailable after the publish timeout; stop() is
        clean."""
        metrics = Metrics()
        # Port 9 (discard) on loopback: nothing listens there.
        bus = AmqpBus(parse_amqp_url("amqp://127.0.0.1:9/"), real_reactor(),
                      metrics, publish_timeout=1.0, reconnect_max_delay=0.5)
        bus.start()
        self.addCleanup(bus.stop)
        with self.assertRaises(BusUnavailable):
            await bus.publish("x", "k", b"x")
        self.assertFalse(bus.connected)
        with self.assertRaises(BusUnavailable):
            await bus.declare_exchange("x")
        await bus.stop()
        with self.assertRaises(BusUnavailable):
            await bus.publish("x", "k", b"x")


class MakeBusTests(unittest.TestCase):
    """``make_bus`` and ``parse_amqp_url`` (no broker needed)."""

    def test_empty_url_is_local(self):
        """An empty (or blank) URL gives the in-process bus."""
        from snfd.bus.local import LocalBus

        for url in ("", "  "):
            self.assertIsInstance(make_bus(url, real_reactor(), Metrics()),
                                  LocalBus)

    def test_amqp_url(self):
        """An amqp:// URL gives an AmqpBus aimed at its host, port, user
        and (percent-decoded) vhost, not connected before start()."""
        bus = make_bus("amqp://snf:s%40cret@mq.example:5673/cloud%2Fa",
                       real_reactor(), Metrics())
        self.assertIsInstance(bus, AmqpBus)
        self.assertFalse(bus.connected)
        self.assertEqual(bus.address, AmqpAddress(
            tls=False, host="mq.example", port=5673, username="snf",
            password="s@cret", vhost="cloud/a"))

    def test_defaults(self):
        """Missing parts default to guest/guest, port 5672 (5671 for
        amqps) and the vhost ``/``."""
        self.assertEqual(parse_amqp_url("amqp://h"), AmqpAddress(
            tls=False, host="h", port=5672, username="guest",
            password="guest", vhost="/"))
        self.assertEqual(parse_amqp_url("amqps://h/%2F"), AmqpAddress(
            tls=True, host="h", port=5671, username="guest",
            password="guest", vhost="/"))

    def test_bad_urls(self):
        """Other schemes and malformed AMQP URLs raise ValueError naming
        the problem."""
        for url, word in [("http://h/", "scheme"), ("h:5672", "scheme"),
                          ("amqp:///vhost", "host"),
                          ("amqp://h:notaport/", "port"),
                          ("amqp://h/?heartbeat=5", "query")]:
            with self.assertRaises(ValueError) as caught:
                make_bus(url, real_reactor(), Metrics())
            self.assertIn(word, str(caught.exception), url)
