"""The node's log observer: ``twistd --logger snfd.logs.observer``.

twistd's default observer formats and flushes every event to the log
file, debug events included: on a busy node that is a write system call
and a time formatting per request (the access log) and per Ganeti event.
This one:

- drops events below ``SNFD_LOG_LEVEL`` (``debug``, ``info``, ``warn``,
  ``error`` or ``critical``; default ``info``);
- formats each event as twistd does (``<time> [<namespace>#<level>]
  <text>``, tracebacks included), the time string made once a second;
- writes ``info`` events at the end of the reactor's current turn, many
  in one write, and anything from ``warn`` up at once, with what waits
  before it (order is kept).  Before the reactor runs and after it
  stopped, every line is written at once; a process killed outright loses
  at most one turn's info lines.

It writes to standard output (``--nodaemon``: systemd's journal, a
container's log, a test's captured output), which is where twistd's
``--logfile=-`` writes.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from twisted.logger import (
    ILogObserver,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
)
from zope.interface import implementer

#: Bytes of waiting lines that make the observer write before the turn ends.
FLUSH_AT = 64 * 1024


def level_named(name: str) -> LogLevel:
    """``SNFD_LOG_LEVEL``'s value as a level; ``ValueError`` naming the
    variable when it is not one."""
    try:
        return LogLevel.levelWithName(name.strip().lower())
    except Exception:
        raise ValueError(f"SNFD_LOG_LEVEL: {name!r} is not one of debug, info, warn,"
                         " error, critical") from None


@implementer(ILogObserver)
class NodeLogObserver:
    """Filters, formats and batches events into ``out`` (see the module
    docstring).  ``later(f)`` runs ``f`` once the reactor's current turn
    is over (``reactor.callLater(0, f)``)."""

    def __init__(self, out: IO[str], level: LogLevel,
                 later: Callable[[Callable[[], None]], Any]):
        self._out = out
        self._level = level
        self._later = later
        self._waiting: list[str] = []
        self._size = 0
        self._scheduled = False
        self._second = -1
        self._stamp = ""

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        if level < self._level:
            return
        text = formatEventAsClassicLogText(event, formatTime=self._time)
        if not text:
            return
        self._waiting.append(text)
        self._size += len(text)
        if level >= LogLevel.warn or self._size >= FLUSH_AT:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._later(self._flush_later)

    def _time(self, when: float | None) -> str:
        if when is None:
            return formatTime(when)
        second = int(when)
        if second != self._second:
            self._second, self._stamp = second, formatTime(second)
        return self._stamp

    def _flush_later(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write what waits."""
        if not self._waiting:
            return
        text, self._waiting, self._size = "".join(self._waiting), [], 0
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):
            pass  # nowhere left to log to (a closed or full output)


def observer() -> NodeLogObserver:
    """The observer twistd's ``--logger snfd.logs.observer`` makes: to
    standard output, at ``SNFD_LOG_LEVEL``, batched by the global reactor's
    turns and written out at its shutdown."""
    from twisted.internet import reactor

    try:
        level = level_named(os.environ.get("SNFD_LOG_LEVEL", "info"))
    except ValueError as e:
        sys.stderr.write(f"snfd: {e}\n")
        raise SystemExit(1) from None
    def later(f: Callable[[], None]) -> None:
        # Once the reactor has stopped (twistd's last lines), at once.
        if reactor.running:  # type: ignore[attr-defined]
            reactor.callLater(0, f)  # type: ignore[attr-defined]
        else:
            f()

    made = NodeLogObserver(sys.stdout, level, later)
    reactor.addSystemEventTrigger("after", "shutdown", made.flush)  # type: ignore[attr-defined]
    atexit.register(made.flush)  # an exit without the reactor's shutdown
    return made
