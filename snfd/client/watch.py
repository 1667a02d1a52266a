"""A sync that keeps running: ``snf sync DIR CONTAINER[/PREFIX] --watch``.

It runs a pass of ``snfd.client.sync.sync`` (both ways, by hashmap) at
start and then whenever either side changes:

- **local changes** are seen by inotify (``snfd.client.inotify``); a burst
  of events becomes one pass once the tree has been quiet for ``quiet``
  seconds (at most ``longest`` after the first), and a file still being
  written (modified less than ``quiet`` ago) is left for the next pass;
- **remote changes** are seen by polling the container's state (its
  ``X-Timestamp``, object count and bytes: a HEAD, not a listing), every
  ``interval`` seconds, backing off by half each quiet poll up to
  ``max_interval``, and back to ``interval`` after any change;
- every ``rescan`` seconds a pass runs anyway (a change that kept the
  container's figures, or events lost by the kernel);
- the cloud unreachable or failing (no answer, 5xx, 429): the watcher
  waits, backing off to ``max_interval``, and goes on; a refused token or
  a missing container ends it (nothing would change by waiting).

Crash safety is the pass's own (see ``sync``): the watcher keeps no state
of its own besides the timers.  It blocks; ``stop`` ends it between waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from snfd.client import sync as transfer
from snfd.client.inotify import TreeWatch
from snfd.client.pithos import ClientError, PithosClient


@attrs.frozen
class Timing:
    """The watcher's delays, in seconds (see the module docstring)."""

    interval: float = 2.0
    max_interval: float = 30.0
    quiet: float = 1.0
    longest: float = 10.0
    rescan: float = 600.0


@attrs.frozen
class PassResult:
    """One pass: its report and the body bytes it sent and received."""

    report: transfer.SyncReport
    sent: int
    received: int


def own_file(name: str) -> bool:
    """Whether a leaf name is the sync's own (state, partial downloads)."""
    return name.startswith(".snf-sync") or name.endswith(transfer.PART_SUFFIX)


def transient(error: ClientError) -> bool:
    """Whether waiting may cure ``error``: no answer, the service busy or
    failing."""
    return error.status in (0, 408, 429) or error.status >= 500


def remote_marker(client: PithosClient, container: str) -> tuple[str, str, str]:
    """What changes whenever an object of ``container`` does."""
    info = client.container_info(container)
    return (info.get("X-Timestamp", ""), info.get("X-Container-Object-Count", ""),
            info.get("X-Container-Bytes-Used", ""))


class Watcher:
    """Keeps ``root`` and ``container/prefix`` in sync until ``stop`` is set.

    ``on_pass`` receives each pass's result, ``on_wait`` a line saying why
    the watcher waits (the cloud unreachable ...).  ``sync_options`` go to
    every pass (``direction``, ``delete``, ``workers``, ``progress``).
    """

    def __init__(self, client: PithosClient, root: Path, container: str, prefix: str = "",
                 *, timing: Timing = Timing(),
                 on_pass: Callable[[PassResult], None] = lambda result: None,
                 on_wait: Callable[[str], None] = lambda why: None,
                 stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic, **sync_options: object):
        self.client = client
        self.root = root
        self.container = container
        self.prefix = prefix
        self.timing = timing
        self.on_pass = on_pass
        self.on_wait = on_wait
        self.stop = stop or threading.Event()
        self.clock = clock
        self.sync_options = sync_options

    def run_pass(self) -> PassResult:
        counters = self.client.transport.counters
        sent, received = counters.sent, counters.received
        report = transfer.sync(self.client, self.root, self.container, self.prefix,
                               settle=self.timing.quiet, **self.sync_options)  # type: ignore[arg-type]
        result = PassResult(report, counters.sent - sent, counters.received - received)
        self.on_pass(result)
        return result

    def run(self) -> None:
        """Watch until ``stop`` is set.
        @raise ClientError: a failure waiting cannot cure (see ``transient``).
        @raise OSError: the directory cannot be watched or written."""
        t = self.timing
        self.root.mkdir(parents=True, exist_ok=True)
        with TreeWatch(self.root, ignore=own_file) as tree:
            interval = t.interval
            due = True  # a pass is owed
            marker: tuple[str, str, str] | None = None
            last_pass = self.clock()
            while not self.stop.is_set():
                if due:
                    try:
                        # Taken before the pass looks, so a change made
                        # while it runs is seen by the next poll.
                        marker = remote_marker(self.client, self.container)
                        tree.overflowed = False
                        result = self.run_pass()
                    except ClientError as e:
                        if not transient(e):
                            raise
                        interval = min(interval * 2, t.max_interval)
                        self.on_wait(f"{e}; trying again in {interval:.0f} s")
                    else:
                        last_pass = self.clock()
                        report = result.report
                        due = bool(report.held or report.failed)
                        interval = (min(interval * 2, t.max_interval) if report.failed
                                    else t.interval)
                if self.stop.is_set():
                    break
                if tree.wait(interval):
                    tree.settle(t.quiet, t.longest)
                    due, interval = True, t.interval
                    continue
                if due:
                    continue
                try:
                    now = remote_marker(self.client, self.container)
                except ClientError as e:
                    if not transient(e):
                        raise
                    interval = min(interval * 2, t.max_interval)
                    self.on_wait(f"{e}; trying again in {interval:.0f} s")
                    continue
                if now != marker or tree.overflowed or \
                        self.clock() - last_pass >= t.rescan:
                    due, interval = True, t.interval
                else:
                    interval = min(interval * 1.5, t.max_interval)
