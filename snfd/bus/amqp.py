"""The message bus over AMQP 0-9-1 (RabbitMQ), with pika's Twisted adapter.

One connection per bus.  It carries one publishing channel in confirm
mode, one short-lived channel per declaration and one channel per
consumer (so ``basic_qos`` is per consumer and a broker error on one
channel does not disturb the others).

The bus keeps itself connected: when the connection fails or the broker
restarts it reconnects with exponential backoff (with jitter, capped at
``reconnect_max_delay``), replays every exchange and queue declaration and
re-creates every consumer.  A publish issued while disconnected waits for
the connection and is retried until its confirm arrives or the publish
timeout passes (then ``BusUnavailable``), so a message is either
confirmed by the broker or the caller is told; it may be delivered twice
if the connection died between the broker's accept and its confirm.

``pika.adapters.twisted_connection`` imports (and so installs) the global
reactor when it is imported; it is therefore imported only when the bus
connects, by which time the process has chosen its reactor.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import attrs
import pika
import pika.exceptions
from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionClosed as TCPConnectionClosed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from snfd.bus import (
    DEAD_LETTER_EXCHANGE,
    AmqpAddress,
    BusUnavailable,
    Message,
    UnknownExchange,
    run_handler,
)
from snfd.interfaces import IConsumer, IMessageBus
from snfd.metrics import Metrics

_EXCHANGE_TYPES = ("topic", "direct", "fanout")
_NOT_FOUND = 404

#: Errors after which the operation is tried again on the next
#: connection: the connection (or its channel) went away under it.
#: ``ChannelClosedByBroker`` is not one: the broker refused the request.
_TRANSIENT = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ConnectionClosed,
    pika.exceptions.ChannelClosedByClient,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ConsumerCancelled,
    TCPConnectionClosed,
    ConnectionError,
)


@attrs.define
class _QueueDeclaration:
    dead_letter: bool
    bindings: list[tuple[str, str]] = attrs.field(factory=list)


@implementer(IMessageBus)
class AmqpBus:
    """An ``IMessageBus`` backed by a RabbitMQ broker.

    @param address: where and as whom to connect (``parse_amqp_url``), or
        a sequence of them: the brokers of a RabbitMQ cluster, tried in
        turn (a failed attempt moves to the next one; a working one is
        kept until its connection fails).
    @param queue_type: ``classic``, or ``quorum`` for queues replicated
        across a cluster's nodes (a queue keeps the type it was first
        declared with: RabbitMQ refuses to redeclare it as the other).
    @param reactor: provides TCP (and TLS) connections and time.
    @param metrics: the ``bus_*`` instruments are updated here.
    @param publish_timeout: seconds a ``publish`` (or a declaration) may
        wait for the broker, across reconnects, before ``BusUnavailable``.
    @param reconnect_max_delay: cap of the reconnect backoff, seconds.
    @param heartbeat: AMQP heartbeat interval; a silent broker is taken
        as gone after about two intervals.
    @param connect_timeout: seconds for TCP connect plus AMQP handshake.
    @param tls_options: client TLS options for ``amqps`` (default:
        ``optionsForClientTLS(host)`` with the platform's trust roots).
    """

    log = Logger()

    def __init__(self, address: AmqpAddress | Sequence[AmqpAddress], reactor,
                 metrics: Metrics,
                 publish_timeout: float = 30.0,
                 reconnect_max_delay: float = 30.0,
                 heartbeat: int = 10,
                 connect_timeout: float = 10.0,
                 tls_options=None,
                 dead_letter_exchange: str = DEAD_LETTER_EXCHANGE,
                 monotonic: Any = None,
                 queue_type: str = "classic") -> None:
        self.addresses = [address] if isinstance(address, AmqpAddress) else list(address)
        if not self.addresses:
            raise ValueError("no broker address")
        self._current = 0
        self._queue_type = queue_type
        self._reactor = reactor
        # Publish deadlines are durations: measured on a clock that setting
        # the wall clock does not move (the reactor's own in tests).
        self._monotonic = monotonic if monotonic is not None else reactor
        self._metrics = metrics
        self._publish_timeout = publish_timeout
        self._reconnect_max_delay = reconnect_max_delay
        self._first_delay = min(0.5, reconnect_max_delay)
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._tls_options = tls_options
        self._dlx = dead_letter_exchange
        self._exchanges: dict[str, str] = {}
        self._queues: dict[str, _QueueDeclaration] = {}
        self._consumers: set[_AmqpConsumer] = set()
        self._conn: Any = None        # open and set up; None while offline
        self._proto: Any = None       # the connection being set up or used
        self._attempt: defer.Deferred[Any] | None = None
        self._publish_channel: Any = None
        self._publish_conn: Any = None
        self._publish_lock = defer.DeferredLock()
        self._waiters: list[defer.Deferred[None]] = []
        self._timers: set[defer.Deferred[None]] = set()
        self._loop: defer.Deferred[None] | None = None
        self._stopping = False        # no more (re)connecting
        self._closing = False         # nothing may use the bus any more
        self._stop_d: defer.Deferred[None] | None = None
        metrics.bus_connected.set(0)

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def address(self) -> AmqpAddress:
        """The broker the bus uses (or tries next)."""
        return self.addresses[self._current]

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._stopping:
            raise BusUnavailable("a stopped AmqpBus cannot be restarted")
        if self._loop is None:
            self._loop = defer.Deferred.fromCoroutine(self._run())

    def stop(self) -> defer.Deferred[None]:
        """Stop consumers (waiting for their handlers), fail waiting
        publishes with ``BusUnavailable``, close the connection and cancel
        every timer.  Idempotent; the Deferred never fails."""
        if self._stop_d is None:
            self._stop_d = defer.Deferred.fromCoroutine(self._stop())
        return _follow(self._stop_d)

    async def declare_exchange(self, name: str, type: str = "topic") -> None:
        """Declare a durable exchange now (waiting for the connection up
        to the publish timeout) and after every reconnect.

        @raise ValueError: the broker refused it (exists with another type).
        @raise BusUnavailable: no connection within the publish timeout;
            the declaration is still made once the bus connects.
        """
        if type not in _EXCHANGE_TYPES:
            raise ValueError(f"exchange type must be one of {_EXCHANGE_TYPES}")
        if not name:
            raise ValueError("the default exchange cannot be declared")
        previous = self._exchanges.get(name)
        self._exchanges[name] = type
        try:
            await self._declare(
                lambda ch: self._exchange_on(ch, name, type),
                f"exchange {name!r}")
        except (ValueError, UnknownExchange):
            if previous is None:
                del self._exchanges[name]
            else:
                self._exchanges[name] = previous
            raise

    async def declare_queue(self, name: str,
                            bindings: Iterable[tuple[str, str]] = (),
                            dead_letter: bool = True) -> None:
        """Declare a durable queue, its bindings and its dead-letter
        queue, now and after every reconnect.

        @raise UnknownExchange: a binding names an exchange that does not
            exist on the broker.
        @raise ValueError: the broker refused it (the queue exists with
            other arguments, e.g. the other ``dead_letter``).
        @raise BusUnavailable: as for ``declare_exchange``.
        """
        bindings = [(str(e), str(p)) for e, p in bindings]
        previous = self._queues.get(name)
        declaration = _QueueDeclaration(
            dead_letter, list(previous.bindings) if previous else [])
        for binding in bindings:
            if binding not in declaration.bindings:
                declaration.bindings.append(binding)
        self._queues[name] = declaration
        try:
            await self._declare(
                lambda ch: self._queue_on(ch, name, dead_letter, bindings),
                f"queue {name!r}")
        except (ValueError, UnknownExchange):
            if previous is None:
                del self._queues[name]
            else:
                self._queues[name] = previous
            raise

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      headers: dict[str, Any] | None = None,
                      content_type: str | None = "application/json") -> None:
        """Publish a persistent message and wait for the broker's confirm.

        Retried on a nack and across reconnects until the publish timeout.

        @raise UnknownExchange: the exchange does not exist.
        @raise BusUnavailable: no confirm within the publish timeout, or
            the bus was stopped.
        """
        if not isinstance(body, bytes):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        properties = pika.BasicProperties(
            delivery_mode=2, content_type=content_type,
            headers=dict(headers) if headers else None)
        try:
            await self._publish(exchange, routing_key, body, properties)
        except defer.CancelledError:
            self._metrics.bus_publish_failures.labels(exchange).inc()
            raise BusUnavailable("the bus is stopping") from None
        except Exception:
            self._metrics.bus_publish_failures.labels(exchange).inc()
            raise
        self._metrics.bus_published.labels(exchange).inc()

    async def _publish(self, exchange: str, routing_key: str, body: bytes,
                       properties: pika.BasicProperties) -> None:
        deadline = self._monotonic.seconds() + self._publish_timeout
        delay = 0.05
        while True:
            conn = await self._wait_connection(deadline)
            try:
                channel = await self._channel_for_publish(conn, deadline)
                await self._within(
                    channel.basic_publish(exchange, routing_key, body,
                                          properties),
                    deadline, f"confirm of a message to {exchange!r}")
                return
            except pika.exceptions.NackError:
                self.log.warn("Broker nacked a message to {exchange};"
                              " publishing it again", exchange=exchange)
            except pika.exceptions.ChannelClosedByBroker as e:
                if (e.reply_code == _NOT_FOUND
                        and await self._exchange_missing(exchange, deadline)):
                    raise UnknownExchange(f"no exchange {exchange!r}") from None
                # The publishing channel was closed because of another
                # publish; this one goes again on a fresh channel.
            except (BusUnavailable, defer.CancelledError):
                raise
            except Exception as e:
                if not (isinstance(e, _TRANSIENT) or conn is not self._conn):
                    raise
            await self._sleep(min(delay, self._remaining(deadline)))
            delay = min(delay * 2, 1.0)

    def consume(self, queue: str, handler: Callable[[Message], Any],
                prefetch: int = 10) -> _AmqpConsumer:
        """Start a consumer (see ``IMessageBus.consume``).

        It subscribes as soon as the bus is connected and again after
        every reconnect; a failure to subscribe (a queue that does not
        exist yet) is logged and retried with backoff.
        """
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if self._stopping:
            raise BusUnavailable("the bus is stopped")
        consumer = _AmqpConsumer(self, queue, handler, prefetch)
        self._consumers.add(consumer)
        consumer.start()
        return consumer

    # -- connection ----------------------------------------------------------

    async def _run(self) -> None:
        delay = self._first_delay
        while not self._stopping:
            try:
                conn = await self._connect()
            except defer.CancelledError:
                break
            except Exception as e:
                if not self._stopping:
                    self.log.warn(
                        "Cannot connect to AMQP broker {host}:{port}: {error}",
                        host=self.address.host, port=self.address.port,
                        error=_describe(e))
                # The next broker of a cluster, at once for the first round.
                self._current = (self._current + 1) % len(self.addresses)
                if self._current != 0:
                    continue
            else:
                delay = self._first_delay
                await self._serve(conn)
            if self._stopping:
                break
            wait = delay * (0.5 + random.random() / 2)
            delay = min(delay * 2, self._reconnect_max_delay)
            try:
                await self._sleep(wait)
            except defer.CancelledError:
                break
        self._proto = None

    async def _connect(self) -> Any:
        """Open a TCP (TLS) connection and do the AMQP handshake."""
        from pika.adapters.twisted_connection import TwistedProtocolConnection

        a = self.address
        params = pika.ConnectionParameters(
            virtual_host=a.vhost,
            credentials=pika.PlainCredentials(a.username, a.password),
            heartbeat=self._heartbeat,
            client_properties={"connection_name": "snfd"})
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, a.host, a.port, timeout=self._connect_timeout)
        if a.tls:
            from twisted.internet.ssl import optionsForClientTLS
            endpoint = wrapClientTLS(
                self._tls_options or optionsForClientTLS(a.host), endpoint)
        factory = protocol.Factory.forProtocol(
            lambda: TwistedProtocolConnection(
                params, custom_reactor=self._reactor))
        factory.noisy = False
        self._attempt = endpoint.connect(factory)
        try:
            proto: Any = await self._attempt
        finally:
            self._attempt = None
        self._proto = proto
        ready = proto.ready
        ready.addTimeout(self._connect_timeout, self._reactor)
        try:
            await ready
        except BaseException:
            if proto.transport is not None:
                proto.transport.abortConnection()
            self._proto = None
            raise
        return proto

    async def _serve(self, conn: Any) -> None:
        """Set the connection up, use it until it closes, then go offline."""
        closed = conn.closed
        try:
            await self._setup(conn)
        except Exception as e:
            if not self._stopping:
                self.log.warn(
                    "Setting up the AMQP connection failed: {error}",
                    error=_describe(e))
            if not closed.called and conn.transport is not None:
                conn.transport.abortConnection()
        else:
            if not closed.called:
                self._online(conn)
        reason = await closed
        self._proto = None
        self._offline(reason)

    async def _setup(self, conn: Any) -> None:
        channel = await conn.channel()
        await channel.confirm_delivery()
        self._publish_channel, self._publish_conn = channel, conn
        replay = None
        for name, type in list(self._exchanges.items()):
            replay = await self._replay(
                conn, replay,
                partial(self._exchange_on, name=name, type=type),
                f"exchange {name!r}")
        for name, decl in list(self._queues.items()):
            replay = await self._replay(
                conn, replay,
                partial(self._queue_on, name=name,
                        dead_letter=decl.dead_letter,
                        bindings=list(decl.bindings)),
                f"queue {name!r}")
        if replay is not None and replay.is_open:
            replay.close()

    async def _replay(self, conn, channel, operation, what: str) -> Any:
        """Run one remembered declaration; a refusal is logged, not fatal
        (the rest of the declarations are still replayed)."""
        if channel is None or not channel.is_open:
            channel = await conn.channel()
        try:
            await operation(channel)
        except pika.exceptions.ChannelClosedByBroker as e:
            self.log.error("Broker refused to re-declare {what}: {error}",
                           what=what, error=_describe(e))
        return channel

    def _online(self, conn: Any) -> None:
        self._conn = conn
        self._metrics.bus_connected.set(1)
        self._metrics.bus_reconnects.inc()
        self.log.info("Connected to AMQP broker {host}:{port}",
                      host=self.address.host, port=self.address.port)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _offline(self, reason: Any) -> None:
        was_online = self._conn is not None
        self._conn = None
        self._publish_channel = self._publish_conn = None
        self._metrics.bus_connected.set(0)
        if was_online and not self._stopping:
            self.log.warn(
                "Lost the AMQP connection: {error}",
                error=_describe(reason))

    async def _wait_connection(self, deadline: float | None) -> Any:
        """The open connection, waiting for it until ``deadline`` (a
        reactor time; ``None``: no limit).

        @raise BusUnavailable: at the deadline or when the bus stops.
        """
        while True:
            if self._closing:
                raise BusUnavailable("the bus is stopped")
            if self._conn is not None:
                return self._conn
            waiter: defer.Deferred[None] = defer.Deferred()
            self._waiters.append(waiter)
            try:
                if deadline is None:
                    await waiter
                else:
                    await self._within(waiter, deadline,
                                       "connection to the broker")
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _channel_for_publish(self, conn: Any, deadline: float) -> Any:
        """The confirm-mode channel of ``conn``, reopened if the broker
        closed it."""
        async with self._publish_lock:
            channel = self._publish_channel
            if (channel is not None and channel.is_open
                    and self._publish_conn is conn):
                return channel
            channel = await self._within(conn.channel(), deadline,
                                         "publishing channel")
            await self._within(channel.confirm_delivery(), deadline,
                               "confirm mode")
            if self._conn is conn:
                self._publish_channel, self._publish_conn = channel, conn
            return channel

    # -- declarations ----------------------------------------------------------

    async def _declare(self, operation, what: str) -> None:
        """Run a declaration on a channel of its own, retrying across
        reconnects until the publish timeout."""
        deadline = self._monotonic.seconds() + self._publish_timeout
        while True:
            conn = await self._wait_connection(deadline)
            channel = None
            try:
                channel = await self._within(conn.channel(), deadline, what)
                await self._within(operation(channel), deadline, what)
                return
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code == _NOT_FOUND:
                    raise UnknownExchange(f"{what}: {e.reply_text}") from None
                raise ValueError(f"{what}: {e.reply_text}") from None
            except (BusUnavailable, defer.CancelledError):
                raise
            except Exception as e:
                if not (isinstance(e, _TRANSIENT) or conn is not self._conn):
                    raise
                await self._sleep(min(0.1, self._remaining(deadline)))
            finally:
                if channel is not None and channel.is_open:
                    channel.close()

    async def _exchange_on(self, channel, name: str, type: str) -> None:
        await channel.exchange_declare(exchange=name, exchange_type=type,
                                       durable=True)

    async def _queue_on(self, channel, name: str, dead_letter: bool,
                        bindings: list[tuple[str, str]]) -> None:
        typed = {"x-queue-type": "quorum"} if self._queue_type == "quorum" else {}
        arguments = dict(typed) or None
        if dead_letter:
            dead = f"{name}.dead"
            await channel.exchange_declare(exchange=self._dlx,
                                           exchange_type="direct",
                                           durable=True)
            await channel.queue_declare(queue=dead, durable=True,
                                        arguments=dict(typed) or None)
            await channel.queue_bind(queue=dead, exchange=self._dlx,
                                     routing_key=dead)
            arguments = {**typed, "x-dead-letter-exchange": self._dlx,
                         "x-dead-letter-routing-key": dead}
        await channel.queue_declare(queue=name, durable=True,
                                    arguments=arguments)
        for exchange, pattern in bindings:
            await channel.queue_bind(queue=name, exchange=exchange,
                                     routing_key=pattern)

    async def _exchange_missing(self, name: str, deadline: float) -> bool:
        """Whether the broker says exchange ``name`` does not exist."""
        conn = self._conn
        if conn is None:
            return False
        channel = None
        try:
            channel = await self._within(conn.channel(), deadline, "check")
            await self._within(
                channel.exchange_declare(exchange=name, passive=True),
                deadline, "check")
        except pika.exceptions.ChannelClosedByBroker as e:
            return e.reply_code == _NOT_FOUND
        except _TRANSIENT:
            return False
        finally:
            if channel is not None and channel.is_open:
                channel.close()
        return False

    # -- time ----------------------------------------------------------------

    def _remaining(self, deadline: float) -> float:
        return max(0.0, deadline - self._monotonic.seconds())

    async def _within(self, awaitable: Any, deadline: float,
                      what: str) -> Any:
        """Await a Deferred or coroutine; ``BusUnavailable`` at the
        deadline (reactor time)."""
        d = defer.ensureDeferred(awaitable)
        d.addTimeout(self._remaining(deadline), self._reactor)
        try:
            return await d
        except defer.TimeoutError:
            raise BusUnavailable(
                f"{what}: no answer from the AMQP broker within"
                f" {self._publish_timeout} s") from None

    async def _sleep(self, seconds: float) -> None:
        """Wait; cancelled (``CancelledError``) when the bus stops."""
        from twisted.internet.task import deferLater

        if self._closing:
            raise defer.CancelledError()
        d = deferLater(self._reactor, seconds, lambda: None)
        self._timers.add(d)
        try:
            await d
        finally:
            self._timers.discard(d)

    # -- stopping ------------------------------------------------------------

    async def _stop(self) -> None:
        self._stopping = True
        # Handlers still running may publish: the connection stays up
        # until every consumer has drained.
        await defer.DeferredList([c.stop() for c in list(self._consumers)])
        self._closing = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(BusUnavailable("the bus is stopped"))
        for d in list(self._timers):
            d.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        proto = self._proto
        abort = None
        if proto is not None and proto.transport is not None:
            if self._conn is proto and proto.is_open:
                proto.close()
                # A broker that does not answer Close gets the TCP cut.
                abort = self._reactor.callLater(
                    5, proto.transport.abortConnection)
            else:
                proto.transport.abortConnection()
        if self._loop is not None:
            await self._loop
        if abort is not None and abort.active():
            abort.cancel()
        self._metrics.bus_connected.set(0)


@implementer(IConsumer)
class _AmqpConsumer:
    """One subscription of ``AmqpBus``, on a channel of its own."""

    log = Logger()

    def __init__(self, bus: AmqpBus, queue: str,
                 handler: Callable[[Message], Any], prefetch: int) -> None:
        self.queue = queue
        self._bus = bus
        self._handler = handler
        self._prefetch = prefetch
        self._channel: Any = None
        self._tag: str | None = None
        self._in_flight: set[defer.Deferred[None]] = set()
        self._stopping = False
        self._loop: defer.Deferred[None] | None = None
        self._stop_d: defer.Deferred[None] | None = None

    def start(self) -> None:
        self._loop = defer.Deferred.fromCoroutine(self._run())

    def stop(self) -> defer.Deferred[None]:
        """Cancel the subscription and wait for running handlers.

        Messages the broker sent ahead but no handler took yet go back
        to the queue.  Idempotent; the Deferred never fails.
        """
        if self._stop_d is None:
            self._stop_d = defer.Deferred.fromCoroutine(self._stop())
        return _follow(self._stop_d)

    async def _run(self) -> None:
        delay = self._bus._first_delay
        while not self._stopping:
            try:
                conn = await self._bus._wait_connection(None)
            except (BusUnavailable, defer.CancelledError):
                break
            try:
                await self._consume_on(conn)
                delay = self._bus._first_delay
            except defer.CancelledError:
                break
            except pika.exceptions.ChannelClosedByBroker as e:
                self.log.error("Cannot consume from queue {queue}: {error}",
                               queue=self.queue, error=_describe(e))
            except Exception as e:
                if not (isinstance(e, _TRANSIENT) or self._bus._conn
                        is not conn):
                    self.log.failure("Consumer of queue {queue} failed",
                                     queue=self.queue)
            if self._stopping:
                break
            self._retire(self._channel)
            if self._bus._conn is conn:
                # The connection is fine, the subscription is not: do not
                # spin on a queue that does not exist.
                try:
                    await self._bus._sleep(delay)
                except defer.CancelledError:
                    break
                delay = min(delay * 2, self._bus._reconnect_max_delay)

    async def _consume_on(self, conn: Any) -> None:
        channel = await conn.channel()
        self._channel, self._tag = channel, None
        await channel.basic_qos(prefetch_count=self._prefetch)
        deliveries, self._tag = await channel.basic_consume(
            queue=self.queue, auto_ack=False)
        while True:
            item = await deliveries.get()
            d = defer.Deferred.fromCoroutine(self._handle(channel, item))
            if not d.called:
                self._in_flight.add(d)
                d.addBoth(self._forget, d)

    def _forget(self, _: object, d: defer.Deferred[None]) -> None:
        self._in_flight.discard(d)

    def _retire(self, channel: Any) -> None:
        """Close a channel whose subscription ended (the broker cancelled
        it) once the handlers still acking on it are done."""
        if channel is None or not channel.is_open:
            return

        def close(_: object) -> None:
            if channel.is_open:
                channel.close()

        defer.DeferredList(list(self._in_flight)).addCallback(close)

    async def _handle(self, channel: Any, item: Any) -> None:
        method, properties = item.method, item.properties
        message = Message(
            exchange=method.exchange, routing_key=method.routing_key,
            body=item.body, headers=dict(properties.headers or {}),
            content_type=properties.content_type,
            redelivered=bool(method.redelivered))
        ok = await run_handler(self._handler, message, self.queue, self.log)
        outcome = "ack" if ok else "reject"
        if not channel.is_open:
            # The broker requeued it when the channel closed; whoever gets
            # it next sees redelivered=True.
            return
        if outcome == "ack":
            channel.basic_ack(delivery_tag=method.delivery_tag)
        else:
            channel.basic_reject(delivery_tag=method.delivery_tag,
                                 requeue=False)
        self._bus._metrics.bus_consumed.labels(self.queue, outcome).inc()

    async def _stop(self) -> None:
        self._stopping = True
        channel, tag = self._channel, self._tag
        if channel is not None and channel.is_open and tag is not None:
            cancel = channel.basic_cancel(tag)
            cancel.addTimeout(10, self._bus._reactor)
            with contextlib.suppress(Exception):
                # Closing the channel below cancels the consumer anyway.
                await cancel
        if self._loop is not None and not self._loop.called:
            self._loop.cancel()
        if self._loop is not None:
            try:
                await self._loop
            except defer.CancelledError:
                pass
        await defer.DeferredList(list(self._in_flight))
        # Unacked messages sent ahead go back to the queue with the channel.
        channel = self._channel
        if channel is not None and channel.is_open:
            channel.close()
        self._bus._consumers.discard(self)


def _follow(d: defer.Deferred[None]) -> defer.Deferred[None]:
    """A new Deferred firing (with ``None``) when ``d`` does; ``d`` must
    never fail.  Lets several callers wait for one operation."""
    follower: defer.Deferred[None] = defer.Deferred()
    d.addCallback(lambda _: follower.callback(None))
    return follower


def _describe(error: Any) -> str:
    if hasattr(error, "getErrorMessage"):
        return error.getErrorMessage()
    return f"{type(error).__name__}: {error}" if error else "closed"
