"""Publishing Ganeti job messages on the bus.

``EventPublisher`` puts the messages of ``snfd.ganeti.jobs`` on a topic
exchange (``ganeti`` by default).  Delivery is at least once: the publisher
drops the duplicates it has seen recently, and the consumer ignores stale or
repeated events by their ``event_time``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from snfd.bus import BusUnavailable, UnknownExchange
from snfd.ganeti.jobs import attach_instance_info, job_events

log = Logger()


class EventPublisher(service.Service):
    """Publishes job events on a topic exchange of the bus.

    ``startService`` declares the exchange.  Each message is published as
    JSON and is done when the bus confirmed it.  Events seen recently (the
    last ``memory`` duplicate keys) are not published again.  A publish the
    bus cannot take (``BusUnavailable``, or the exchange gone) is retried
    with exponential backoff up to ``max_delay`` seconds, for as long as the
    publisher runs; one still pending when it stops is logged at error
    level, never dropped silently.  Events of one caller are published in
    the order given.

    ``clock`` provides ``callLater``/``seconds`` (the reactor; default the
    global one).
    """

    name = "ganeti-events-publisher"  # type: ignore[assignment]

    def __init__(self, bus: Any, exchange: str = "ganeti", *, clock: Any = None,
                 memory: int = 4096, max_delay: float = 30.0):
        if clock is None:
            from twisted.internet import reactor as clock
        self.bus = bus
        self.exchange = exchange
        self._clock = clock
        self._memory = memory
        self._max_delay = max_delay
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._pending: set[tuple[Any, ...]] = set()
        self._declared = False
        self._stopping = False
        self._sleeps: set[defer.Deferred[None]] = set()
        self._in_flight: set[defer.Deferred[Any]] = set()

    def startService(self) -> None:
        defer.ensureDeferred(self.start())

    async def start(self) -> None:
        """Start (as ``startService``), returning once the exchange is
        declared.  A bus that is unavailable now is only logged: the
        declaration is made again before the first publish."""
        if not self.running:
            service.Service.startService(self)
        self._stopping = False
        try:
            await self._declare()
        except Exception as e:
            log.warn("Could not declare exchange {exchange} yet ({error}); retried on"
                     " the first publish", exchange=self.exchange, error=e)

    def stopService(self) -> defer.Deferred[None]:
        """Stop retrying (pending events are logged as lost) and wait for
        the publishes the bus is still working on."""
        if self.running:
            service.Service.stopService(self)
        self._stopping = True
        for sleep in list(self._sleeps):
            sleep.cancel()
        return defer.DeferredList(list(self._in_flight)).addCallback(lambda _: None)

    async def stop(self) -> None:
        """``stopService`` as a coroutine."""
        await self.stopService()

    async def _declare(self) -> None:
        await self.bus.declare_exchange(self.exchange, "topic")
        self._declared = True

    def seen(self, key: tuple[Any, ...]) -> bool:
        """Whether an event with this duplicate key was published recently
        (or is being published now)."""
        return key in self._seen or key in self._pending

    def _remember(self, key: tuple[Any, ...]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)

    async def publish_job(self, job: dict[str, Any], cluster: str,
                          rapi: Any = None) -> bool:
        """Publish the events of ``job`` not seen before, in op order,
        attaching instance details through ``rapi`` when given.

        Returns False if the publisher stopped before all were published.
        @raise BadJob: ``job`` is not a job.
        """
        for event in job_events(job, cluster):
            if self.seen(event.key):
                continue
            self._pending.add(event.key)
            try:
                await attach_instance_info(event.message, rapi)
                done = await self.publish(event.routing_key, event.message)
            finally:
                self._pending.discard(event.key)
            if not done:
                return False
            self._remember(event.key)
        return True

    async def publish(self, routing_key: str, message: dict[str, Any]) -> bool:
        """Publish one message, retrying while the bus is unavailable.

        True once the bus confirmed it; False when the publisher stopped
        first (logged at error level as lost).
        """
        body = json.dumps(message, sort_keys=True).encode("utf-8")
        delay = 0.5
        while True:
            if self._stopping:
                self._lost(routing_key, message, "the publisher stopped")
                return False
            cancelled = False
            try:
                if not self._declared:
                    await self._declare()
                attempt = defer.ensureDeferred(
                    self.bus.publish(self.exchange, routing_key, body))

                def cancel(waiter: defer.Deferred[Any], attempt: Any = attempt) -> None:
                    # A cancelled bus publish may fail as BusUnavailable:
                    # remember that the caller gave up, so it is not retried.
                    nonlocal cancelled
                    cancelled = True
                    attempt.cancel()

                waiter: defer.Deferred[Any] = defer.Deferred(cancel)
                attempt.addBoth(_relay, waiter)
                self._in_flight.add(attempt)
                try:
                    await waiter
                finally:
                    self._in_flight.discard(attempt)
                return True
            except defer.CancelledError:
                raise
            except UnknownExchange:
                self._declared = False
                error: Exception | str = "the exchange does not exist"
            except BusUnavailable as e:
                if cancelled:
                    raise defer.CancelledError() from None
                error = e
            except Exception:
                log.failure("Publishing {key} failed; event dropped", key=routing_key)
                return False
            if self._stopping:
                self._lost(routing_key, message, error)
                return False
            log.warn("Publishing {key} failed ({error}); retrying in {delay}s",
                     key=routing_key, error=error, delay=delay)
            sleep = task.deferLater(self._clock, delay, lambda: None)
            self._sleeps.add(sleep)
            try:
                await sleep
            except defer.CancelledError:
                if not self._stopping:
                    raise  # the caller gave up; stopService cancels quietly
            finally:
                self._sleeps.discard(sleep)
            delay = min(delay * 2, self._max_delay)

    def _lost(self, routing_key: str, message: dict[str, Any], why: Any) -> None:
        log.error("Event lost ({why}): {key} {status} of job {job} on {cluster}",
                  why=why, key=routing_key, status=message.get("status"),
                  job=message.get("jobId"), cluster=message.get("cluster"))


def _relay(result: Any, waiter: defer.Deferred[Any]) -> None:
    """Pass ``result`` on to ``waiter`` unless it already fired (cancelled)."""
    if not waiter.called:
        if isinstance(result, Failure):
            waiter.errback(result)
        else:
            waiter.callback(result)
