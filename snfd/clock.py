"""The node's clocks, and what keeps its timers to their delays when the
wall clock is set.

Each kind of time has its own use:

- the wall clock (the reactor's ``seconds()``: ``time.time``) for instants
  that mean something outside this process: a token's expiry, a
  version's date, the age a block carries on disk.  It may be set back or
  forward at any moment (an operator's ``date``, NTP stepping);
- ``MonotonicClock`` for durations inside this process: a leader's lease,
  a timeout, how long a failure lasted.  It never jumps, and it counts the
  time a suspended host slept (``CLOCK_BOOTTIME``), so a lease measured
  with it never outlives a suspension;
- ``FlooredWallClock`` and ``AgeCutoffs``: wall-clock readings held to
  the monotonic clock, for ages written down on one side and compared on
  the other (garbage collection's grace): stamps that a jump back does not
  make look older, cutoffs that a jump forward does not make later.

Twisted schedules ``callLater`` on the wall clock: a delayed call is due at
an instant of ``time.time()`` (``ReactorBase.seconds`` is
``twisted.python.runtime.seconds``, which is ``time.time``).  Set the
clock forward and every call due within the jump runs at once, early; set
it back and every pending call waits the jump out (an hour back: an hour
without heartbeats, election rounds, periodic duties or timeouts).  Calls
made after the jump are timed on the new reading and are right.
``ClockWatch`` notices a jump within a second, logs it, and after a jump
back brings every pending call forward by the jump, so each still runs
after the delay it was given.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from twisted.application import service
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.logger import Logger

log = Logger(namespace="snfd.clock")

# Monotonic, and counting a suspended host's sleep where the OS has it.
_STEADY = getattr(time, "CLOCK_BOOTTIME", None)


class MonotonicClock:
    """``seconds()`` of a clock that never jumps (an ``IReactorTime``
    reduced to ``seconds``): only differences of its readings mean
    anything.  Tests use a ``task.Clock`` in its place."""

    def seconds(self) -> float:
        if _STEADY is not None:
            return time.clock_gettime(_STEADY)
        return time.monotonic()


class AgeCutoffs:
    """Cutoffs for "older than ``age`` seconds" on the wall clock that a
    jump forward does not bring closer to now.

    ``cutoff(age)`` is what the wall clock read ``age`` seconds of the
    monotonic clock ago (carried from the newest reading at least that
    old, taken by an earlier call or at construction), or ``now - age``
    when that is earlier.  A stamp taken before the cutoff is at least
    ``age`` old even if the wall clock was set forward since: its readings
    from before the jump stay the reference until ``age`` seconds (plus
    the time between two calls) have passed after it, when everything
    stamped before the jump is that old anyway.  A jump back is followed
    at once.  Safe to call from any thread."""

    def __init__(self, wall: Any, monotonic: Any):
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._readings: deque[tuple[float, float]] = deque(
            [(float(monotonic.seconds()), float(wall.seconds()))])

    def cutoff(self, age: float) -> float:
        with self._lock:
            wall, steady = float(self._wall.seconds()), float(self._monotonic.seconds())
            self._readings.append((steady, wall))
            # Keep the newest reading at least ``age`` old and those after it.
            while len(self._readings) > 1 and self._readings[1][0] <= steady - age:
                self._readings.popleft()
            then_steady, then_wall = self._readings[0]
            return min(wall - age, then_wall + (steady - age - then_steady))


class FlooredWallClock:
    """The wall clock for stamps that say how recent something is (a
    block's mtime): it never falls further behind its previous reading
    than the monotonic time since.  A wall clock set back is not
    followed (the difference stays until the process ends); one set
    forward is.  So what is stamped after a jump back never looks older
    than what was stamped before it.  Safe to read from any thread."""

    def __init__(self, wall: Any, monotonic: Any):
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last = float(wall.seconds())
        self._last_steady = float(monotonic.seconds())

    def seconds(self) -> float:
        with self._lock:
            wall, steady = float(self._wall.seconds()), float(self._monotonic.seconds())
            now = max(wall, self._last + (steady - self._last_steady))
            self._last, self._last_steady = now, steady
            return now


class ClockWatch(service.Service):
    """Notices the wall clock being set, and keeps the reactor's pending
    delayed calls to their delays after it was set back.

    A thread wakes every ``period`` seconds (``Event.wait`` sleeps on
    ``CLOCK_MONOTONIC`` from Python 3.11 with glibc 2.30, so it wakes
    however the wall clock is set) and has ``check`` run on the reactor
    thread.  ``check`` compares how far the wall clock
    and the monotonic clock moved since its previous run; a difference of
    ``tolerance`` seconds or more is a jump, logged once.  After a jump
    back every pending delayed call is brought forward by the jump.  A
    call made between the jump and ``check`` (at most ``period`` seconds)
    is brought forward too and runs early, as every pending call does
    after a jump forward: timers may run early, never an hour late.

    @param reactor: runs ``check`` (``callFromThread``).
    @param monotonic: the monotonic clock (``seconds()``).
    @param wall: the wall clock whose delayed calls are kept
        (``seconds()``, ``getDelayedCalls()``); default ``reactor``.
    """

    name = "clock-watch"  # type: ignore[assignment]

    def __init__(self, reactor: Any, monotonic: Any, *, wall: Any = None,
                 period: float = 0.5, tolerance: float = 1.0):
        self._reactor = reactor
        self._wall = wall if wall is not None else reactor
        self._monotonic = monotonic
        self._period = period
        self._tolerance = tolerance
        self._last: tuple[float, float] | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def startService(self) -> None:
        super().startService()
        self.check()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="snfd-clock-watch",
                                        daemon=True)
        self._thread.start()

    def stopService(self) -> None:
        super().stopService()
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._period):
            self._reactor.callFromThread(self.check)

    def check(self) -> float:
        """Compare the clocks with the previous check (the first one only
        takes a reading): the jump in seconds (negative: set back), or 0
        when the wall clock kept time within ``tolerance``."""
        wall, steady = float(self._wall.seconds()), float(self._monotonic.seconds())
        last, self._last = self._last, (wall, steady)
        if last is None:
            return 0.0
        jump = (wall - last[0]) - (steady - last[1])
        if abs(jump) < self._tolerance:
            return 0.0
        if jump > 0:
            log.warn("the wall clock was set forward by {seconds:.1f} s: timers due"
                     " within that ran early", seconds=jump)
            return jump
        moved = 0
        for call in self._wall.getDelayedCalls():
            # Due at an instant of the old reading: the same delay is
            # ``jump`` earlier on the new one.
            try:
                call.reset(max(0.0, call.getTime() + jump - wall))
            except (AlreadyCalled, AlreadyCancelled):
                continue
            moved += 1
        log.warn("the wall clock was set back by {seconds:.1f} s: {n} pending timers"
                 " brought forward by as much, to keep their delays", seconds=-jump, n=moved)
        return jump


__all__ = ["AgeCutoffs", "ClockWatch", "FlooredWallClock", "MonotonicClock"]
