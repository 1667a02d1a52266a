"""Log discipline for repeated failures (``snfd.repeats``): the first
failure at once, then at most one line per interval with a count, the
recovery once."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial import unittest

from snfd.repeats import Repeats


class Recorder:
    """A logger that keeps (level, formatted line)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _emit(self, level: str, fmt: str, **kw: Any) -> None:
        self.lines.append((level, fmt.format(**kw)))

    def warn(self, fmt: str, **kw: Any) -> None:
        self._emit("warn", fmt, **kw)

    def info(self, fmt: str, **kw: Any) -> None:
        self._emit("info", fmt, **kw)


class RepeatsTests(unittest.TestCase):
    def test_a_streak_is_a_few_lines(self):
        clock, log = Clock(), Recorder()
        r = Repeats(log, "lock attempt", clock, interval=60)
        r.recovered()  # no streak: nothing
        for _ in range(4 * 60 * 2 + 1):  # four a second for two minutes
            r.failed("refused")
            clock.advance(0.25)
        self.assertTrue(r.failing)
        r.recovered()
        self.assertFalse(r.failing)
        self.assertEqual(log.lines, [
            ("warn", "lock attempt failed: refused"),
            ("warn", "lock attempt still failing: 240 times in the last 60 s (last: refused)"),
            ("warn", "lock attempt still failing: 240 times in the last 60 s (last: refused)"),
            ("info", "lock attempt recovered after 481 failures in 120 s")])
        # A new streak starts over.
        r.failed("again")
        self.assertEqual(log.lines[-1], ("warn", "lock attempt failed: again"))
