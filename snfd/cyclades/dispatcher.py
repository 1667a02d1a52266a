"""The dispatcher: consumes Ganeti's event messages from the bus and hands
them to the update path (reference/synnefo-apis.md 3.6, snf-dispatcher).

It declares the topic exchange ``ganeti`` and four durable queues, each
with a dead-letter queue (``<queue>.dead``):

=========================  =============================
queue                      binding
=========================  =============================
``<prefix>-events-op``        ``ganeti.<prefix>.event.op``
``<prefix>-events-network``   ``ganeti.<prefix>.event.network``
``<prefix>-events-progress``  ``ganeti.<prefix>.event.progress``
``<prefix>-events-cluster``   ``ganeti.event.cluster``
=========================  =============================

and consumes each with ``prefetch`` messages in flight.  Every node runs
one (competing consumers); the update path's ordering rule and row locks
make that safe.

A message is handled by its ``type``: ``ganeti-op-status`` goes to
``UpdatePath.op_status``, the ``image-*`` progress types to
``UpdatePath.progress``, ``ganeti-network-status`` to
``UpdatePath.network_status``.  Cluster messages are acknowledged and
logged only (backend statistics are refreshed by the allocator), as is
the eventd heartbeat.  A body that is
not a UTF-8 JSON object with a string ``type``, an unknown type, a missing
key or a value of the wrong type raises, so the bus rejects the message
into the dead-letter queue; the consumer itself carries on.

The bus may be unreachable when the service starts: declarations that
time out are remembered by the bus and made once it connects, and the
consumers wait for their queues, so the service starts at once either way.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from snfd.bus import BusUnavailable
from snfd.cyclades.updates import PROGRESS_TYPES, MalformedMessage, UpdatePath

log = Logger(namespace="snfd.cyclades.dispatcher")

EXCHANGE = "ganeti"
_ACK_ONLY = frozenset({"ganeti-cluster-status", "eventd-heartbeat"})


def decode(body: bytes) -> dict[str, Any]:
    """A message body as a JSON object with a string ``type``; raises
    ``MalformedMessage`` otherwise."""
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedMessage(f"the body is not UTF-8 JSON: {e}") from None
    if not isinstance(message, dict):
        raise MalformedMessage("the body is not a JSON object")
    if not isinstance(message.get("type"), str):
        raise MalformedMessage("the message has no string 'type'")
    return message


class Dispatcher(service.Service):
    """Consumes ``ganeti`` events into ``updates`` (see the module docstring).

    @param bus: the node's ``IMessageBus``.
    @param updates: the ``UpdatePath``.
    @param prefix: the instance name prefix in the routing keys (``snf``).
    @param prefetch: messages in flight per queue.
    """

    name = "cyclades-dispatcher"  # type: ignore[assignment]

    def __init__(self, bus: Any, updates: UpdatePath, prefix: str = "snf",
                 prefetch: int = 5, exchange: str = EXCHANGE):
        self._bus = bus
        self._updates = updates
        self.prefix = prefix
        self.prefetch = prefetch
        self.exchange = exchange
        self._consumers: list[Any] = []
        self._declaring: defer.Deferred[None] | None = None

    @property
    def queues(self) -> dict[str, str]:
        """Queue name -> routing key it is bound with."""
        p = self.prefix
        return {f"{p}-events-op": f"ganeti.{p}.event.op",
                f"{p}-events-network": f"ganeti.{p}.event.network",
                f"{p}-events-progress": f"ganeti.{p}.event.progress",
                f"{p}-events-cluster": "ganeti.event.cluster"}

    def startService(self) -> None:
        super().startService()
        self._declaring = defer.ensureDeferred(self._declare())
        for queue in self.queues:
            self._consumers.append(self._bus.consume(queue, self.handle, self.prefetch))

    async def _declare(self) -> None:
        steps: list[tuple[str, Any]] = [
            (f"exchange {self.exchange}",
             lambda: self._bus.declare_exchange(self.exchange, "topic"))]
        for queue, key in self.queues.items():
            steps.append((f"queue {queue}", lambda q=queue, k=key: self._bus.declare_queue(
                q, [(self.exchange, k)], dead_letter=True)))
        for what, declare in steps:
            try:
                await declare()
            except BusUnavailable:
                log.warn("bus unavailable: {what} will be declared once it connects",
                         what=what)
            except Exception:
                log.failure("could not declare {what}", what=what)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await defer.maybeDeferred(consumer.stop)
        if self._declaring is not None:
            await self._declaring

    async def handle(self, message: Any) -> None:
        """Handle one delivered ``IMessage``; raising rejects it."""
        body = decode(message.body)
        kind = body["type"]
        if kind == "ganeti-op-status":
            await self._updates.op_status(body)
        elif kind in PROGRESS_TYPES:
            await self._updates.progress(body)
        elif kind == "ganeti-network-status":
            await self._updates.network_status(body)
        elif kind in _ACK_ONLY:
            log.debug("{kind} from {cluster}: acknowledged", kind=kind,
                      cluster=body.get("cluster"))
        else:
            raise MalformedMessage(f"unknown message type {kind!r}")
