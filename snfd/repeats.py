"""Log discipline for failures that repeat.

A part that fails again and again (the database gone, a peer refusing
connections) must not fill a disk with the same line.  ``Repeats`` logs
the first failure of a streak at once, then at most one line per
``interval`` saying how many failures there were since the last line,
and the recovery once, with the streak's length and duration::

    leader lock attempt failed: could not connect to server ...
    leader lock attempt still failing: 300 times in the last 60 s (last: ...)
    leader lock attempt recovered after 412 failures in 83 s

The clock is injected (``seconds()``); nothing here schedules anything.
"""

from __future__ import annotations

from typing import Any


class Repeats:
    """One kind of failure (``what``, e.g. "leader lock attempt") logged
    to ``log`` (a ``twisted.logger.Logger``) with the discipline of the
    module docstring."""

    def __init__(self, log: Any, what: str, clock: Any, interval: float = 60.0):
        self._log = log
        self.what = what
        self._clock = clock
        self.interval = interval
        #: failures in the current streak (0: none)
        self.count = 0
        self._since = 0.0
        self._last_line = 0.0
        self._unreported = 0

    @property
    def failing(self) -> bool:
        return self.count > 0

    def failed(self, error: str) -> None:
        """Note one failure (``error``: one line saying why)."""
        now = self._clock.seconds()
        self.count += 1
        if self.count == 1:
            self._since = self._last_line = now
            self._unreported = 0
            self._log.warn("{what} failed: {error}", what=self.what, error=error)
            return
        self._unreported += 1
        if now - self._last_line >= self.interval:
            self._log.warn("{what} still failing: {n} times in the last {seconds:.0f} s"
                           " (last: {error})", what=self.what, n=self._unreported,
                           seconds=now - self._last_line, error=error)
            self._last_line = now
            self._unreported = 0

    def recovered(self) -> None:
        """Note a success: ends a streak (logged once), else nothing."""
        if not self.count:
            return
        self._log.info("{what} recovered after {n} failures in {seconds:.0f} s",
                       what=self.what, n=self.count,
                       seconds=self._clock.seconds() - self._since)
        self.count = 0


__all__ = ["Repeats"]
