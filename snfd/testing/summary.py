"""Print trial's outcome as one plain line: ``N passed, N failed, N skipped``.

Usage: ``python -m snfd.testing.summary TRIAL_OUTPUT_FILE...`` (the counts
of several runs, ``./dev test``'s streams, are added up).
"""

from __future__ import annotations

import re
import sys


def counts(text: str) -> tuple[int, int, int]:
    """``(passed, failed, skipped)`` of one trial run's output."""
    ran = re.findall(r"^Ran (\d+) tests? in", text, re.M)
    tally: dict[str, int] = {}
    verdict = re.findall(r"^(?:PASSED|FAILED) \((.*)\)$", text, re.M)
    if verdict:
        for part in verdict[-1].split(","):
            key, _, value = part.strip().partition("=")
            tally[key] = int(value)
    total = int(ran[-1]) if ran else 0
    failed = tally.get("failures", 0) + tally.get("errors", 0) + \
        tally.get("unexpectedSuccesses", 0)
    skipped = tally.get("skips", 0) + tally.get("expectedFailures", 0)
    passed = tally.get("successes", total - failed - skipped)
    if not ran:
        failed += 1   # a run that never reported is a failure, not silence
    return passed, failed, skipped


def summarize(*texts: str) -> str:
    totals = [sum(c) for c in zip(*(counts(t) for t in texts), strict=True)] if texts \
        else [0, 0, 0]
    return f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped"


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


if __name__ == "__main__":
    print(summarize(*(_read(p) for p in sys.argv[1:])))
