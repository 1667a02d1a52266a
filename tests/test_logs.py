"""The node's log observer (``snfd.logs``): level filter, batches per
reactor turn, immediate writes from ``warn`` up, order kept."""

from __future__ import annotations

import io

from twisted.internet import task
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial import unittest

from snfd.logs import FLUSH_AT, NodeLogObserver, level_named


class Counted(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


class ObserverTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.out = Counted()
        self.observer = NodeLogObserver(self.out, LogLevel.info,
                                        lambda f: self.clock.callLater(0, f))
        publisher = LogPublisher(self.observer)
        self.log = Logger(namespace="snfd.test", observer=publisher)

    def test_info_lines_are_written_together_after_the_turn(self):
        for i in range(3):
            self.log.info("line {i}", i=i)
        self.assertEqual(self.out.getvalue(), "")
        self.clock.advance(0)
        lines = self.out.getvalue().splitlines()
        self.assertEqual([line.split("] ", 1)[1] for line in lines],
                         ["line 0", "line 1", "line 2"])
        self.assertIn("[snfd.test#info]", lines[0])
        self.assertEqual(self.out.writes, 1)

    def test_debug_is_dropped_at_info(self):
        self.log.debug("not shown")
        self.clock.advance(0)
        self.assertEqual(self.out.getvalue(), "")

    def test_a_warning_writes_at_once_after_what_waits(self):
        self.log.info("first")
        self.log.warn("second")
        text = self.out.getvalue()
        self.assertLess(text.index("first"), text.index("second"))
        self.assertIn("[snfd.test#warn] second", text)

    def test_failures_carry_their_traceback(self):
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            self.log.failure("it broke")
        text = self.out.getvalue()
        self.assertIn("it broke", text)
        self.assertIn("ZeroDivisionError", text)

    def test_a_full_batch_is_written_before_the_turn_ends(self):
        big = "x" * 1000
        for _ in range(FLUSH_AT // 1000 + 1):
            self.log.info("{big}", big=big)
        self.assertGreaterEqual(len(self.out.getvalue()), FLUSH_AT)

    def test_level_names(self):
        self.assertEqual(level_named(" DEBUG "), LogLevel.debug)
        with self.assertRaises(ValueError) as caught:
            level_named("verbose")
        self.assertIn("SNFD_LOG_LEVEL", str(caught.exception))
