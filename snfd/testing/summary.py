"""Print trial's outcome as one plain line: ``N passed, N failed, N skipped``.

Usage: ``python -m snfd.testing.summary TRIAL_OUTPUT_FILE``.
"""

from __future__ import annotations

import re
import sys


def summarize(text: str) -> str:
    ran = re.findall(r"^Ran (\d+) tests? in", text, re.M)
    counts = {}
    verdict = re.findall(r"^(?:PASSED|FAILED) \((.*)\)$", text, re.M)
    if verdict:
        for part in verdict[-1].split(","):
            key, _, value = part.strip().partition("=")
            counts[key] = int(value)
    total = int(ran[-1]) if ran else 0
    failed = counts.get("failures", 0) + counts.get("errors", 0) + \
        counts.get("unexpectedSuccesses", 0)
    skipped = counts.get("skips", 0) + counts.get("expectedFailures", 0)
    passed = counts.get("successes", total - failed - skipped)
    return f"{passed} passed, {failed} failed, {skipped} skipped"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        print(summarize(f.read()))
