"""``./dev test``'s two streams (``snfd.testing.streams``) run every test
module exactly once."""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from snfd.testing import streams
from snfd.testing.summary import summarize

TESTS = Path(__file__).resolve().parent


def _modules() -> set[str]:
    return {"tests." + ".".join(p.relative_to(TESTS).with_suffix("").parts)
            for p in TESTS.rglob("test_*.py")}


class StreamTests(unittest.TestCase):
    def test_every_module_runs_once(self):
        covered: dict[str, int] = {}
        for name in ("system", "units"):
            for entry in streams.stream(name):
                for module in _modules():
                    if module == entry or module.startswith(entry + "."):
                        covered[module] = covered.get(module, 0) + 1
        self.assertEqual(covered, dict.fromkeys(_modules(), 1))
        self.assertIn("tests.integration", streams.stream("system"))
        self.assertIn("tests.cyclades.test_groups_actions", streams.stream("units"))

    def test_summary_adds_streams_up(self):
        """The one line adds both streams' counts; a stream that never
        reported counts as a failure."""
        one = "Ran 3 tests in 1.0s\n\nPASSED (successes=3)\n"
        two = "Ran 2 tests in 1.0s\n\nFAILED (skips=1, failures=1)\n"
        self.assertEqual(summarize(one, two), "3 passed, 1 failed, 1 skipped")
        self.assertEqual(summarize(one, "Traceback..."), "3 passed, 1 failed, 0 skipped")
