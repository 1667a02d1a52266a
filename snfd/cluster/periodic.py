"""A leader duty that runs one piece of work every so many seconds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from snfd.interfaces import ILeaderDuty

log = Logger(namespace="snfd.cluster")


@implementer(ILeaderDuty)
class PeriodicDuty:
    """Runs ``work()`` at once and then every ``interval`` seconds while
    this node leads.  A failing run is logged and the next one still
    comes; ``stop()`` returns the run in progress, if any, to wait for."""

    def __init__(self, name: str, interval: float, clock: Any,
                 work: Callable[[], Awaitable[Any]]):
        self.name = name
        self.interval = interval
        self._clock = clock
        self._work = work
        self._loop: task.LoopingCall | None = None
        self._running: defer.Deferred[None] | None = None

    def start(self, leadership: Any) -> None:
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("{name} stopped", f, name=self.name))

    def _tick(self) -> defer.Deferred[None]:
        self._running = defer.ensureDeferred(self._guarded())
        return self._running

    async def _guarded(self) -> None:
        try:
            await self._work()
        except Exception:
            log.failure("{name} failed", name=self.name)

    def stop(self) -> defer.Deferred[None] | None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        running, self._running = self._running, None
        return running
