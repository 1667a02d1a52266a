"""Leader election: a PostgreSQL session advisory lock on its own connection.

Why this shape (measured in reference/stack.md):

- The lock lives on one dedicated psycopg2 connection, used from one
  dedicated thread, never from the pool: a pooled connection may be
  replaced silently, losing the lock without notice.
- A killed leader's socket closes, PostgreSQL releases the lock at once and
  the next follower attempt (every ``interval``) wins: takeover in about
  ``interval``.
- A frozen or partitioned leader keeps its TCP session, so the session sets
  ``idle_session_timeout``: the leader pings every ``interval``; if pings
  stop arriving the server ends the session after ``session_timeout`` and
  the lock is free.
- The leader steps down at once when a ping fails, and also by its own
  (monotonic) clock when it has not had a successful ping for 3/4 of the
  session timeout (it was frozen, or the database is slow), before even
  asking: that is its lease.
- Each term gets an epoch from ``cluster_leader``; leader-only writes go
  through ``Term.fenced``, which the database refuses once a newer term
  began, so a resumed stale leader cannot act even before it notices.

Clocks: the lease (3/4 of the session timeout since the last successful
ping) and the lock calls' timeouts are measured with the monotonic clock,
never the wall clock: set forward an hour, the wall clock does not make a
healthy leader step down (the reactor runs a pending timeout early; it is
checked against the monotonic deadline and re-armed); set back, it does
not stretch the lease.  The lease is checked where leadership is asked
about (``is_leader``, ``Term.fenced``), not only by the next round, so a
leader whose rounds are late (frozen, or its timers postponed by a wall
clock set back: see ``snfd.clock``) stops believing it leads once its
lease ran out.  Rounds and timeouts are scheduled with ``clock`` (the
reactor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer
from zope.interface.verify import verifyObject

from snfd.clock import MonotonicClock
from snfd.cluster import LostLeadership, store
from snfd.db.pool import Database, connection_options
from snfd.interfaces import ILeaderDuty, ILeadership
from snfd.metrics import Metrics
from snfd.repeats import Repeats

T = TypeVar("T")
log = Logger(namespace="snfd.cluster")
_STOPPING = "node stopping"
_LEASE_OVER = "its lease ran out (no answer from the lock session in time)"


@implementer(ILeadership)
class Term:
    """One leadership term of this node (see ``ILeadership``).  ``leasing``
    says whether the node's lease still runs; a write asked for after it
    ran out is refused here, and the node steps down."""

    def __init__(self, epoch: int, db: Database, on_lost: Callable[[int, str], None],
                 leasing: Callable[[], bool]):
        self.epoch = epoch
        self.active = True
        self._db = db
        self._on_lost = on_lost
        self._leasing = leasing

    async def fenced(self, name: str, interaction: Callable[..., T],
                     *args: Any, **kwargs: Any) -> T:
        if not self.active:
            raise LostLeadership(f"leadership term {self.epoch} is over")
        if not self._leasing():
            self._on_lost(self.epoch, _LEASE_OVER)
            raise LostLeadership(f"leadership term {self.epoch}: {_LEASE_OVER}")
        try:
            return await self._db.run(name, _fenced_txn, self.epoch, interaction, args, kwargs)
        except LostLeadership:
            self._on_lost(self.epoch, "a newer leadership term exists")
            raise


def _fenced_txn(txn: Any, epoch: int, interaction: Callable[..., T],
                args: tuple, kwargs: dict) -> T:
    store.check_epoch_txn(txn, epoch)
    return interaction(txn, *args, **kwargs)


class LeaderElection(service.Service):
    """Competes for leadership and runs the leader duties while it holds it.

    @param reactor: runs the lock thread (its results come back through it).
    @param clock: schedules rounds and timeouts (``callLater``); default
        ``reactor``.
    @param monotonic: measures the lease and timeouts (``seconds()``);
        default a ``snfd.clock.MonotonicClock``.
    """

    name = "leader-election"  # type: ignore[assignment]

    def __init__(
        self,
        reactor: Any,
        dsn: str,
        node_id: str,
        db: Database,
        metrics: Metrics,
        *,
        interval: float = 0.2,
        session_timeout: float = 2.0,
        clock: Any = None,
        monotonic: Any = None,
    ):
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._monotonic = monotonic if monotonic is not None else MonotonicClock()
        self._dsn = dsn
        self._node_id = node_id
        self._db = db
        self._metrics = metrics
        self._interval = interval
        self._timeout = session_timeout
        self._threads = ThreadPool(1, 1, name="snfd-leader-lock")
        self._conn: Any = None
        self._busy = False
        self._last_ok = 0.0
        self._loop: task.LoopingCall | None = None
        self._duties: list[Any] = []
        self._failures = Repeats(log, "leader lock attempt", self._monotonic)
        self.term: Term | None = None
        self._rounds = 0

    # -- public ----------------------------------------------------------

    def add_duty(self, duty: Any) -> None:
        """Run ``duty`` (an ``ILeaderDuty``) whenever this node leads."""
        verifyObject(ILeaderDuty, duty)
        self._duties.append(duty)

    @property
    def is_leader(self) -> bool:
        """Whether this node leads now: it holds a term and its lease has
        not run out (checked now, on the monotonic clock, whether or not a
        round has run since)."""
        return self.term is not None and self._leasing()

    def _leasing(self) -> bool:
        return self._monotonic.seconds() - self._last_ok <= self._timeout * 0.75

    @property
    def epoch(self) -> int:
        return self.term.epoch if self.term is not None else 0

    @property
    def rounds(self) -> int:
        """How many election rounds this node has completed since it was
        created.

        A round is one lock attempt (as a follower) or one ping of the lock
        session (as the leader), counted once its outcome (leading, still
        following, stepping down, duties started or stopped) has taken
        effect.  It is what to wait for instead of time: when the count has
        grown by two since some moment, this node asked the database again
        after that moment and acted on the answer.
        """
        return self._rounds

    # -- lifecycle -------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._threads.start()
        self._loop = task.LoopingCall(lambda: defer.ensureDeferred(self._tick()))
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: log.failure("leader election loop died", f))

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        await self._step_down(_STOPPING)
        self._discard_connection()
        # Waits for queued lock work (the close); it is short.
        self._threads.stop()

    # -- the loop --------------------------------------------------------

    async def _tick(self) -> None:
        if await self._round():
            self._rounds += 1

    async def _round(self) -> bool:
        """One election round; ``False`` when skipped (the lock thread is
        still busy with an earlier, timed-out one)."""
        now = self._monotonic.seconds()
        if self.term is not None and now - self._last_ok > self._timeout * 0.75:
            await self._step_down(
                f"no answer from the lock session for {now - self._last_ok:.1f}s")
            return True
        if self._busy:
            return False
        if self.term is not None:
            try:
                await self._in_thread(self._ping_blocking, self._timeout / 2)
            except Exception as e:
                await self._step_down(f"lock session failed: {_oneline(e)}")
                return True
            self._last_ok = now
            return True
        try:
            epoch = await self._in_thread(self._acquire_blocking, self._timeout)
        except Exception as e:
            self._failures.failed(_oneline(e))
            self._discard_connection()
            return True
        self._failures.recovered()
        if epoch is not None and self.running:
            self._last_ok = now
            await self._become_leader(epoch)
        return True

    async def _become_leader(self, epoch: int) -> None:
        self.term = term = Term(epoch, self._db, self._lost, self._leasing)
        self._metrics.leader.set(1)
        self._metrics.leader_epoch.set(epoch)
        self._metrics.leader_changes.labels("gained").inc()
        log.info("this node ({node}) is now the leader, epoch {epoch}",
                 node=self._node_id, epoch=epoch)
        for duty in self._duties:
            if self.term is not term:
                return
            try:
                await defer.maybeDeferred(duty.start, term)
            except Exception:
                log.failure("leader duty {duty} failed to start", duty=duty.name)

    def _lost(self, epoch: int, reason: str) -> None:
        if self.term is not None and self.term.epoch == epoch:
            defer.ensureDeferred(self._step_down(reason))

    async def _step_down(self, reason: str) -> None:
        term, self.term = self.term, None
        if term is None:
            return
        term.active = False
        self._metrics.leader.set(0)
        self._metrics.leader_epoch.set(0)
        self._metrics.leader_changes.labels("lost").inc()
        (log.info if reason == _STOPPING else log.warn)(
            "this node ({node}) stops leading (epoch {epoch}): {reason}",
            node=self._node_id, epoch=term.epoch, reason=reason)
        self._discard_connection()
        for duty in reversed(self._duties):
            try:
                await defer.maybeDeferred(duty.stop)
            except Exception:
                log.failure("leader duty {duty} failed to stop", duty=duty.name)

    # -- the lock connection (only ever touched from the lock thread) -----

    def _in_thread(self, fn: Callable[[], T], timeout: float) -> defer.Deferred:
        """Run ``fn`` on the lock thread; fail after ``timeout`` seconds of
        the monotonic clock even if the thread is still blocked (it is then
        left to finish on its own)."""
        self._busy = True
        work = threads.deferToThreadPool(self._reactor, self._threads, fn)
        result: defer.Deferred = defer.Deferred()
        deadline = self._monotonic.seconds() + timeout

        def done(outcome: Any) -> None:
            self._busy = False
            if timer[0].active():
                timer[0].cancel()
            if not result.called:
                result.callback(outcome)

        def expire() -> None:
            if result.called:
                return
            left = deadline - self._monotonic.seconds()
            if left > 0:
                # Run early: the wall clock, which the reactor's timers
                # follow, was set forward.
                timer[0] = self._clock.callLater(left, expire)
                return
            result.errback(TimeoutError(f"no answer within {timeout:g}s"))

        timer = [self._clock.callLater(timeout, expire)]
        work.addBoth(done)
        return result

    def _connect_blocking(self) -> Any:
        conn = psycopg2.connect(
            self._dsn,
            **connection_options(store.LEADER_APPLICATION_PREFIX + self._node_id))
        conn.autocommit = True
        ms = int(self._timeout * 1000)
        with conn.cursor() as cur:
            cur.execute("SET idle_session_timeout = %s", (ms,))
            cur.execute("SET statement_timeout = %s", (ms,))
            cur.execute("SET lock_timeout = %s", (ms * 5,))
            # Server-side keepalives: notice a vanished leader host quickly.
            cur.execute("SET tcp_keepalives_idle = 2")
            cur.execute("SET tcp_keepalives_interval = 1")
            cur.execute("SET tcp_keepalives_count = 2")
        return conn

    def _acquire_blocking(self) -> int | None:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = self._connect_blocking()
        with conn.cursor() as cur:
            if not store.try_lock_txn(cur):
                return None
            return store.begin_term_txn(cur, self._node_id)

    def _ping_blocking(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            raise psycopg2.InterfaceError("lock connection is closed")
        with conn.cursor() as cur:
            store.ping_txn(cur)

    def _discard_connection(self) -> None:
        """Close the lock connection (releasing the lock) on the lock thread,
        after whatever it is doing now."""
        conn, self._conn = self._conn, None
        if conn is None:
            return

        def close() -> None:
            try:
                conn.close()
            except Exception:
                pass

        if self._threads.started:
            self._threads.callInThread(close)
        else:
            close()


def _oneline(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
