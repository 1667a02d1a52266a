"""Supervision of the embedded PostgreSQL: restarted when it dies.

The embedded server is a daemon of its own (``snfd.db.embedded``); when
its postmaster dies (``kill -9``, the OOM killer) nothing else brings it
back.  ``EmbeddedSupervisor`` looks every ``interval`` seconds whether the
postmaster named in ``postmaster.pid`` is alive.  When it is not, it says
so once and starts the server again in a thread (``pg_ctl start`` does
crash recovery), with back-off between failed attempts (a killed
postmaster's backends may hold its shared memory for a moment), their
failures logged with ``snfd.repeats`` discipline, and the recovery once.
Meanwhile the pool answers 503 with ``Retry-After`` (``snfd.db.pool``),
and reconnects by itself once the server is back.

A restart never initialises a new database cluster: a data directory
without one (its filesystem unmounted for repair, say) is a failed
attempt, not an empty database for the node.  PostgreSQL also goes down
when it cannot write its WAL (a full disk) or its files (a read-only
filesystem); restarts then fail until there is room again or the
filesystem is writable.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger

from snfd.db.embedded import EmbeddedPostgresError, PostgresProcess
from snfd.repeats import Repeats

log = Logger(namespace="snfd.db")


def postmaster_alive(pg: PostgresProcess) -> bool:
    """Whether the postmaster ``pg``'s data directory names is running."""
    try:
        first = (pg.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first.strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _restart(pg: PostgresProcess) -> None:
    """Start ``pg`` again (``pg_ctl start`` does crash recovery), refusing
    a data directory that holds no cluster rather than creating one."""
    if not (pg.datadir / "PG_VERSION").exists():
        raise EmbeddedPostgresError(
            f"{pg.datadir} holds no database cluster (is its filesystem mounted?);"
            " not creating a new one")
    pg.start()


class EmbeddedSupervisor(service.Service):
    """Restarts the embedded PostgreSQL ``pg`` when it dies (see the module
    docstring); ``reactor`` runs the checks and the threads."""

    name = "embedded-postgres-supervisor"

    def __init__(self, pg: PostgresProcess, reactor: Any, interval: float = 1.0,
                 max_delay: float = 30.0):
        self.pg = pg
        self._reactor = reactor
        self.interval = interval
        self.max_delay = max_delay
        self._loop: task.LoopingCall | None = None
        self._down_since: float | None = None
        self._next_attempt = 0.0
        self._delay = interval
        self._busy: defer.Deferred[None] | None = None
        self._failures = Repeats(log, "restarting the embedded PostgreSQL", reactor)
        #: restarts done since the node started
        self.restarts = 0

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=False)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        # Let a restart under way finish: the node then stops the server.
        return self._busy if self._busy is not None else defer.succeed(None)

    def _tick(self) -> None:
        if self._busy is not None or not self.running:
            return
        self._busy = defer.ensureDeferred(self._check())

        def done(_: Any) -> None:
            self._busy = None
        self._busy.addErrback(lambda f: log.failure("supervising the embedded PostgreSQL"
                                                    " failed", f))
        self._busy.addBoth(done)

    async def _check(self) -> None:
        alive = await threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), postmaster_alive, self.pg)
        now = self._reactor.seconds()
        if alive:
            return
        if self._down_since is None:
            self._down_since = now
            self._next_attempt = now
            self._delay = self.interval
            log.error("the embedded PostgreSQL in {datadir} is not running; restarting it",
                      datadir=str(self.pg.datadir))
        if now < self._next_attempt or not self.running:
            return
        try:
            await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                            _restart, self.pg)
        except EmbeddedPostgresError as e:
            self._failures.failed(str(e))
            self._delay = min(self._delay * 2, self.max_delay)
            self._next_attempt = self._reactor.seconds() + self._delay
            return
        self._failures.recovered()
        self.restarts += 1
        log.info("the embedded PostgreSQL is running again ({seconds:.1f} s after it was"
                 " found down)", seconds=self._reactor.seconds() - self._down_since)
        self._down_since = None


__all__ = ["EmbeddedSupervisor", "postmaster_alive"]
