"""Trial's tree reporter that also says where the time went.

``./dev test`` runs ``trial --reporter=snfd-timed``: the usual tree of
results, then the slowest tests and the slowest modules (set-up and
tear-down included: the wall time from a test's start to its stop), so
that every run, CI's included, shows what makes the suite long.
The plugin that names it is ``twisted/plugins/snfd_trial_reporter.py``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from twisted.trial.reporter import TreeReporter

SHOWN = 20


class TimedTreeReporter(TreeReporter):
    """``TreeReporter`` plus the ``SHOWN`` slowest tests and modules."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._started: dict[str, float] = {}
        self.durations: dict[str, float] = {}

    def startTest(self, test: Any) -> None:
        self._started[test.id()] = time.monotonic()
        super().startTest(test)

    def stopTest(self, test: Any) -> None:
        super().stopTest(test)
        began = self._started.pop(test.id(), None)
        if began is not None:
            self.durations[test.id()] = time.monotonic() - began

    def done(self) -> None:
        super().done()
        if not self.durations:
            return
        modules: dict[str, float] = defaultdict(float)
        for name, seconds in self.durations.items():
            modules[name.rsplit(".", 2)[0]] += seconds
        self._writeln("")
        self._writeln(f"Slowest tests (of {len(self.durations)}, seconds):")
        for name, seconds in sorted(self.durations.items(), key=lambda i: -i[1])[:SHOWN]:
            self._writeln(f"  {seconds:8.1f}  {name}")
        self._writeln("Slowest modules (seconds):")
        for name, seconds in sorted(modules.items(), key=lambda i: -i[1])[:SHOWN]:
            self._writeln(f"  {seconds:8.1f}  {name}")
