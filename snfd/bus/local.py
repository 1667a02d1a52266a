"""The in-process message bus: RabbitMQ's routing, inside one process.

``LocalBus`` keeps exchanges, queues and bindings in memory and behaves
like the AMQP bus as far as one process can see: topic/direct/fanout
routing, one copy per bound queue, unroutable messages dropped,
competing consumers served round-robin, at most ``prefetch`` handlers
per consumer at once, ack on success and dead-lettering to
``<queue>.dead`` on failure.  Messages live as long as the process (there
is no broker to restart, so "durable" means "until ``stop``").

Handlers never run inside ``publish``: deliveries are scheduled with
``reactor.callLater(0, ...)``, so a handler that publishes is not
re-entered, exactly as with a network round trip.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from snfd.bus import (
    DEAD_LETTER_EXCHANGE,
    BusUnavailable,
    Message,
    UnknownExchange,
    run_handler,
)
from snfd.bus.topic import matches
from snfd.interfaces import IConsumer, IMessageBus
from snfd.metrics import Metrics

_EXCHANGE_TYPES = ("topic", "direct", "fanout")


@attrs.define
class _Queue:
    name: str
    dead_letter: bool
    messages: deque[Message] = attrs.field(factory=deque)


@implementer(IMessageBus)
class LocalBus:
    """An ``IMessageBus`` that never leaves the process.

    ``connected`` is true from ``start()`` until ``stop()``.  Publishing
    and declaring work before ``start()`` too (messages wait in their
    queues); nothing is delivered before it, and after ``stop()``
    ``publish`` raises ``BusUnavailable``.
    """

    log = Logger()

    def __init__(self, reactor, metrics: Metrics) -> None:
        self._reactor = reactor
        self._metrics = metrics
        self._exchanges: dict[str, str] = {"": "direct"}
        self._bindings: dict[str, set[tuple[str, str]]] = {}
        self._queues: dict[str, _Queue] = {}
        self._consumers: dict[str, list[_LocalConsumer]] = {}
        self._scheduled: dict[str, Any] = {}
        self._started = False
        self._stopped = False

    @property
    def connected(self) -> bool:
        return self._started and not self._stopped

    def start(self) -> None:
        """Begin delivering."""
        if self._stopped:
            raise BusUnavailable("a stopped LocalBus cannot be restarted")
        self._started = True
        for name in self._queues:
            self._schedule(name)

    async def stop(self) -> None:
        """Stop every consumer, wait for their handlers, stop delivering."""
        self._stopped = True
        for call in self._scheduled.values():
            call.cancel()
        self._scheduled.clear()
        consumers = [c for cs in self._consumers.values() for c in cs]
        await defer.DeferredList(
            [defer.Deferred.fromCoroutine(c.stop()) for c in consumers])

    async def declare_exchange(self, name: str, type: str = "topic") -> None:
        """Declare an exchange; re-declaring it with another type raises
        ``ValueError`` (AMQP's PRECONDITION_FAILED)."""
        if type not in _EXCHANGE_TYPES:
            raise ValueError(f"exchange type must be one of {_EXCHANGE_TYPES}")
        if not name:
            raise ValueError("the default exchange cannot be declared")
        existing = self._exchanges.get(name)
        if existing is not None and existing != type:
            raise ValueError(
                f"exchange {name!r} exists with type {existing!r}, not"
                f" {type!r}")
        self._exchanges[name] = type

    async def declare_queue(self, name: str,
                            bindings: Iterable[tuple[str, str]] = (),
                            dead_letter: bool = True) -> None:
        """Declare a queue and add bindings to it.

        @raise UnknownExchange: a binding names an undeclared exchange.
        @raise ValueError: the queue exists with the other ``dead_letter``.
        """
        bindings = list(bindings)
        for exchange, _ in bindings:
            if not exchange or exchange not in self._exchanges:
                raise UnknownExchange(f"no exchange {exchange!r}")
        queue = self._queues.get(name)
        if queue is not None and queue.dead_letter != dead_letter:
            raise ValueError(
                f"queue {name!r} exists with dead_letter={queue.dead_letter}")
        if dead_letter:
            await self.declare_queue(f"{name}.dead", dead_letter=False)
        if queue is None:
            self._queues[name] = _Queue(name, dead_letter)
            self._schedule(name)
        for exchange, pattern in bindings:
            self._bindings.setdefault(exchange, set()).add((pattern, name))

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      headers: dict[str, Any] | None = None,
                      content_type: str | None = "application/json") -> None:
        """Put a copy of the message in every queue whose binding matches.

        Returns once the copies are enqueued; a message that matches no
        binding is dropped, as AMQP drops unroutable messages.

        @raise UnknownExchange: ``exchange`` was never declared.
        @raise BusUnavailable: the bus was stopped.
        """
        if not isinstance(body, bytes):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        if self._stopped:
            self._metrics.bus_publish_failures.labels(exchange).inc()
            raise BusUnavailable("the bus is stopped")
        kind = self._exchanges.get(exchange)
        if kind is None:
            self._metrics.bus_publish_failures.labels(exchange).inc()
            raise UnknownExchange(f"no exchange {exchange!r}")
        for queue_name in sorted(self._route(exchange, kind, routing_key)):
            self._enqueue(queue_name, Message(
                exchange=exchange, routing_key=routing_key, body=body,
                headers=dict(headers or {}), content_type=content_type))
        self._metrics.bus_published.labels(exchange).inc()

    def consume(self, queue: str, handler: Callable[[Message], Any],
                prefetch: int = 10) -> _LocalConsumer:
        """Deliver messages of ``queue`` to ``handler`` (see
        ``IMessageBus.consume``).  A queue not declared yet is waited
        for."""
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if self._stopped:
            raise BusUnavailable("the bus is stopped")
        consumer = _LocalConsumer(self, queue, handler, prefetch)
        self._consumers.setdefault(queue, []).append(consumer)
        self._schedule(queue)
        return consumer

    # -- routing and delivery ----------------------------------------------

    def _route(self, exchange: str, kind: str, routing_key: str) -> set[str]:
        if exchange == "":
            return {routing_key} if routing_key in self._queues else set()
        found = set()
        for pattern, queue_name in self._bindings.get(exchange, ()):
            if (kind == "fanout"
                    or (kind == "direct" and pattern == routing_key)
                    or (kind == "topic" and matches(pattern, routing_key))):
                found.add(queue_name)
        return found

    def _enqueue(self, queue_name: str, message: Message) -> None:
        self._queues[queue_name].messages.append(message)
        self._schedule(queue_name)

    def _schedule(self, queue_name: str) -> None:
        if not self.connected or queue_name in self._scheduled:
            return
        self._scheduled[queue_name] = self._reactor.callLater(
            0, self._dispatch, queue_name)

    def _dispatch(self, queue_name: str) -> None:
        del self._scheduled[queue_name]
        queue = self._queues.get(queue_name)
        consumers = self._consumers.get(queue_name)
        if queue is None or not consumers:
            return
        while queue.messages:
            # Round-robin: the first consumer with room takes the message
            # and moves to the back of the line.
            consumer = next((c for c in consumers if c.has_room), None)
            if consumer is None:
                return
            consumers.remove(consumer)
            consumers.append(consumer)
            consumer.deliver(queue.messages.popleft())

    def _handled(self, consumer: _LocalConsumer, message: Message,
                 ok: bool) -> None:
        queue = self._queues.get(consumer.queue)
        if not ok and queue is not None and queue.dead_letter:
            self._dead_letter(queue, message)
        self._metrics.bus_consumed.labels(
            consumer.queue, "ack" if ok else "reject").inc()
        self._schedule(consumer.queue)

    def _dead_letter(self, queue: _Queue, message: Message) -> None:
        # Shaped like RabbitMQ's: the dead-letter exchange and routing
        # key replace the original ones, which go to the x-death header.
        death = {"queue": queue.name, "reason": "rejected", "count": 1,
                 "exchange": message.exchange,
                 "routing-keys": [message.routing_key]}
        headers = dict(message.headers)
        headers["x-death"] = [death, *headers.get("x-death", [])]
        self._enqueue(f"{queue.name}.dead", attrs.evolve(
            message, exchange=DEAD_LETTER_EXCHANGE,
            routing_key=f"{queue.name}.dead", headers=headers))

    def _remove(self, consumer: _LocalConsumer) -> None:
        consumers = self._consumers.get(consumer.queue, [])
        if consumer in consumers:
            consumers.remove(consumer)


@implementer(IConsumer)
class _LocalConsumer:
    """A subscription of ``LocalBus``; ``stop()`` waits for its handlers."""

    log = Logger()

    def __init__(self, bus: LocalBus, queue: str,
                 handler: Callable[[Message], Any], prefetch: int) -> None:
        self.queue = queue
        self._bus = bus
        self._handler = handler
        self._prefetch = prefetch
        self._in_flight: set[defer.Deferred[None]] = set()
        self._active = True

    @property
    def has_room(self) -> bool:
        return self._active and len(self._in_flight) < self._prefetch

    def deliver(self, message: Message) -> None:
        d = defer.Deferred.fromCoroutine(self._handle(message))
        if not d.called:
            self._in_flight.add(d)
            d.addBoth(lambda _: self._in_flight.discard(d))

    async def _handle(self, message: Message) -> None:
        delivered = attrs.evolve(message, headers=dict(message.headers))
        ok = await run_handler(self._handler, delivered, self.queue, self.log)
        self._bus._handled(self, message, ok)

    async def stop(self) -> None:
        """Stop taking messages; return once running handlers ended."""
        self._active = False
        self._bus._remove(self)
        await defer.DeferredList(list(self._in_flight))
