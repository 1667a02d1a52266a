"""Leaving a load balancer's pool cleanly when the node is stopped.

On SIGTERM (twistd stops the services, this one first) the node:

1. answers ``/_health`` with 503 ``"draining"``, so a load balancer that
   checks it stops sending new requests here; every response from then on
   carries ``Connection: close``, so kept-alive connections end after the
   request they carry (the balancer opens new ones elsewhere);
2. waits ``[node] drain_grace`` seconds (a little more than the
   balancer's checks take to mark it down: two checks 0.5 s apart, 1 s);
3. waits until no request is in flight, at most ``[node] drain_timeout``
   seconds;
4. then lets the listeners close and the services stop.

With no load balancer, ``drain_grace`` 0 (the default) stops at once but
still lets requests in flight finish.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

log = Logger(namespace="snfd.web.drain")


class Drain:
    """Counts the requests in flight and says whether the node drains."""

    def __init__(self, clock: Any, grace: float = 0.0, timeout: float = 30.0):
        self.clock = clock
        self.grace = grace
        self.timeout = timeout
        self.draining = False
        self.in_flight = 0
        self._idle: list[defer.Deferred[None]] = []

    def started(self) -> None:
        """A request began (its end must be reported to ``finished``)."""
        self.in_flight += 1

    def finished(self, _: object = None) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def idle(self) -> defer.Deferred[None]:
        """Fires once no request is in flight."""
        if self.in_flight == 0:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d

    async def drain(self) -> None:
        """Steps 1 to 3 of the module docstring."""
        self.draining = True
        log.info("draining: /_health answers 503; {n} requests in flight",
                 n=self.in_flight)
        if self.grace > 0:
            await task.deferLater(self.clock, self.grace, lambda: None)
        idle = self.idle()
        idle.addTimeout(self.timeout, self.clock)
        try:
            await idle
        except defer.TimeoutError:
            log.warn("drained for {t} s; {n} requests still in flight are cut off",
                     t=self.timeout, n=self.in_flight)


class DrainOnStop(service.Service):
    """Drains when the node stops; added after the listeners, so stopped
    (and awaited) before them."""

    name = "drain"

    def __init__(self, drain: Drain):
        self._drain = drain

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._drain.drain())


__all__ = ["Drain", "DrainOnStop"]
