"""Command-line tools: ``snf-manage`` (administration) and ``snf`` (users)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any


def yes_no(text: str) -> bool:
    """An argparse type for yes/no flags (also true/false, 1/0, on/off)."""
    import argparse

    t = text.strip().lower()
    if t in ("yes", "true", "1", "on"):
        return True
    if t in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


class Interrupted(Exception):
    """A signal (SIGINT, SIGTERM) stopped the command's reactor before its
    work ended."""

    def __init__(self) -> None:
        super().__init__("interrupted by a signal before the command finished")


def run_with_reactor(work: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """Run ``work(reactor)`` under a reactor of the command's own (for
    commands that use threads, RAPI or the pool); its result is the exit
    status and its exception propagates (``Interrupted`` when a signal
    stopped the reactor first)."""
    from twisted.internet import defer, reactor

    outcome: list[Any] = []

    def start() -> None:
        # Once running: work that fails before its first wait must still
        # find a reactor to stop.
        d = defer.ensureDeferred(work(reactor))
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(start)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if not outcome:
        raise Interrupted()
    result = outcome[0]
    if isinstance(result, defer.Failure):
        result.raiseException()
    return int(result)
