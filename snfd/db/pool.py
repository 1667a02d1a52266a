"""The node's PostgreSQL pool: named, timed, retried interactions.

psycopg2 connections in Twisted's ``adbapi`` thread pool.  Each call is
``await db.run("service.what", fn, ...)`` where ``fn(txn, ...)`` holds the
SQL (the ``*_txn`` functions of the store modules).  Serialization failures,
deadlocks and lost connections are retried with jittered exponential
backoff, which is why an interaction must be safe to run again.  A lost
connection is replaced on the next attempt, so the pool survives a
PostgreSQL restart: calls made while the server is down wait (up to
``retry_window`` seconds) and then fail with ``DatabaseUnavailable``.
Once an outage has lasted ``retry_window`` (nothing has succeeded since
the first connection failure), calls stop waiting: each tries once and
fails at once, until one succeeds.  ``DatabaseUnavailable`` is a 503
fault with ``Retry-After`` (what an API answers); why the database could
not be reached is in its ``reason`` and the node's log, not in the answer.

A server that answers but cannot do the work fails the interaction at
once, not retried, with ``DatabaseImpaired`` (a ``DatabaseUnavailable``,
so also a 503 with ``Retry-After``) whose message names the cause: out
of disk space, memory or connections (SQLSTATE class 53), or its storage
read-only or failing (an I/O error, 58030).  PostgreSQL has rolled the
transaction back, so nothing is half-written, and the connection is
kept for the next interaction.  These failures are logged with
``snfd.repeats`` discipline: the first at once, then at most a line a
minute with a count, and the recovery once (when an interaction of a
kind that failed succeeds again).  (A server that cannot write its WAL
at all does not answer this way: it PANICs and goes down, which the pool
sees as a lost connection; see docs/operations.md.)

One ambiguity is inherent: if the connection breaks while COMMIT is in
flight, the transaction may have committed and is run again.  Interactions
that are not naturally idempotent guard themselves (unique keys, serials).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
from twisted.enterprise import adbapi
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.db.prepared import SESSION_OPTIONS
from snfd.interfaces import IDatabase
from snfd.metrics import Metrics
from snfd.repeats import Repeats

T = TypeVar("T")

log = Logger(namespace="snfd.db")

_RETRY_CONFLICT = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)
# SQLSTATE classes/codes that mean "this connection is gone or not yet usable".
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03")
_MAX_CONFLICT_ATTEMPTS = 10
# Interactions run their statements back to back in a thread; a session idle
# inside a transaction this long belongs to a frozen or stuck node, and the
# row locks it holds (an account's, written by every upload into it) would
# stall the other nodes' requests for as long (bench/cluster.py: a node
# SIGSTOPped for 5 s stopped every node's uploads for up to 4.9 s at 5 s).
# PostgreSQL ends the session; the node, resumed, retries the interaction.
_IDLE_IN_TRANSACTION = 2.0


class DatabaseUnavailable(errors.ServiceUnavailable):
    """The database could not be reached in time (503, ``Retry-After``);
    ``reason``: why, for the log."""

    def __init__(self, reason: str, retry_after: int = 5,
                 message: str = "The service cannot reach its database; try again shortly."):
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.reason = reason

    def __str__(self) -> str:
        return f"database unavailable: {self.reason}"


# What a server that answers but cannot do the work lacks, by SQLSTATE
# (class 53, insufficient resources, by its prefix): what the client is
# told, and the Retry-After (seconds) for it.  A full disk or failing
# storage waits for an operator; memory and connections free themselves.
_IMPAIRED: dict[str, tuple[str, int]] = {
    "53100": ("the database is out of disk space", 30),
    "53200": ("the database is out of memory", 5),
    "53300": ("the database has too many connections", 5),
    "53400": ("the database has reached a configured limit", 30),
    "53": ("the database is out of resources", 5),
    "58030": ("the database's storage is failing", 30),
}
# PostgreSQL reports EROFS as 42501 (insufficient_privilege), like EACCES;
# only its message tells a read-only filesystem from a missing grant.
_READ_ONLY = ("42501", "Read-only file system")


class DatabaseImpaired(DatabaseUnavailable):
    """The database answers but cannot do the work: out of disk space,
    memory or connections, or its storage read-only or failing (503,
    ``Retry-After``).  ``cause``: which, in words (in the message too);
    ``reason``: the server's own error, for the log."""

    def __init__(self, cause: str, reason: str, retry_after: int):
        super().__init__(reason, retry_after,
                         f"The service cannot complete the request: {cause}."
                         " Please try again later.")
        self.cause = cause

    def __str__(self) -> str:
        return f"{self.cause}: {self.reason}"


def impairment(exc: BaseException) -> tuple[str, int] | None:
    """``(cause, retry_after)`` when ``exc`` says the database server
    lacks a resource or its storage fails (see ``DatabaseImpaired``);
    ``None`` for any other error."""
    if not isinstance(exc, psycopg2.Error):
        return None
    code = getattr(exc, "pgcode", None)
    if not code:
        return None
    if code == _READ_ONLY[0]:
        if _READ_ONLY[1] in str(exc):
            return ("the database's storage is read-only", 30)
        return None
    return _IMPAIRED.get(code) or _IMPAIRED.get(code[:2])


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection broke (rather than the SQL failed)."""
    if isinstance(exc, adbapi.ConnectionLost | psycopg2.InterfaceError):
        return True
    if isinstance(exc, psycopg2.OperationalError):
        code = getattr(exc, "pgcode", None)
        if code is None:
            return True
        return code.startswith(_CONNECTION_STATES[0]) or code in _CONNECTION_STATES[1:]
    return False


def connection_options(application_name: str,
                       idle_in_transaction: float | None = None) -> dict[str, Any]:
    """libpq options for every snfd connection: a name in pg_stat_activity,
    a connect timeout, TCP keepalives so a dead peer is noticed, and the
    plans of prepared statements made once (``snfd.db.prepared``).

    ``idle_in_transaction`` (seconds) ends a session that sits inside a
    transaction that long: a frozen node must not hold row locks (such as
    the share lock of a fenced write) that a new leader waits for.
    """
    settings = [SESSION_OPTIONS]
    if idle_in_transaction:
        settings.append(
            f"-c idle_in_transaction_session_timeout={int(idle_in_transaction * 1000)}")
    return {
        "application_name": application_name[:63],
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "options": " ".join(settings),
    }


class _Pool(adbapi.ConnectionPool):
    """adbapi's pool, dropping a broken connection quietly instead of
    logging tracebacks for the expected failure of its rollback, and
    running an interaction in autocommit when asked (``runAutocommit``)."""

    def runAutocommit(self, interaction, *args, **kw):  # type: ignore[no-untyped-def]
        """``runInteraction`` outside a transaction (see ``Database.read``)."""
        return self.runInteraction(_autocommit, interaction, *args, **kw)

    def _runInteraction(self, interaction, *args, **kw):  # type: ignore[no-untyped-def]
        conn = self.connectionFactory(self)
        trans = self.transactionFactory(self, conn)
        try:
            result = interaction(trans, *args, **kw)
            trans.close()
            conn.commit()
            return result
        except BaseException:
            raw = conn._connection
            if raw is not None and not raw.closed:
                try:
                    raw.rollback()
                except psycopg2.Error:
                    self.disconnect(raw)
            else:
                self.disconnect(raw)
            raise


def _autocommit(txn: Any, interaction: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run ``interaction`` with the connection in autocommit; the commit
    that follows it is then a no-op without a round trip."""
    raw = txn._connection._connection
    raw.autocommit = True
    try:
        return interaction(txn, *args, **kw)
    finally:
        if not raw.closed:
            raw.autocommit = False


@implementer(IDatabase)
class Database:
    """The shared pool; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        reactor: Any,
        metrics: Metrics,
        *,
        application_name: str = "snfd",
        min_connections: int = 3,
        max_connections: int = 10,
        retry_window: float = 30.0,
    ):
        self.dsn = dsn
        self._reactor = reactor
        self._metrics = metrics
        self.retry_window = retry_window
        #: when the current outage began (the first connection failure since
        #: the last success); None: no outage known
        self.down_since: float | None = None
        #: failures of an impaired server (``DatabaseImpaired``), logged
        #: with discipline; and the names of the interactions that failed
        #: in the current streak, one of which succeeding ends it
        self.impaired = Repeats(log, "database interactions", reactor)
        self._impaired_names: set[str] = set()
        self._pool = _Pool(
            "psycopg2", dsn,
            cp_min=min_connections, cp_max=max_connections,
            cp_reconnect=True, cp_noisy=False, cp_reactor=reactor,
            **connection_options(application_name, idle_in_transaction=_IDLE_IN_TRANSACTION),
        )

    def start(self) -> None:
        """Start the pool's threads (idempotent)."""
        if not self._pool.running:
            self._pool.start()

    def close(self) -> None:
        """Close every connection and stop the threads."""
        if self._pool.running:
            self._pool.close()

    async def run(self, name: str, interaction: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._retried(self._pool.runInteraction, name, interaction, args, kwargs)

    async def read(self, name: str, interaction: Callable[..., T], *args: Any,
                   **kwargs: Any) -> T:
        return await self._retried(self._pool.runAutocommit, name, interaction, args, kwargs)

    async def _retried(self, runner: Callable[..., Any], name: str,
                       interaction: Callable[..., T], args: Any, kwargs: Any) -> T:
        started = self._reactor.seconds()
        conflicts = 0
        delay = 0.05
        while True:
            try:
                result: T = await runner(interaction, *args, **kwargs)
            except _RETRY_CONFLICT as e:
                conflicts += 1
                if conflicts >= _MAX_CONFLICT_ATTEMPTS:
                    self._observe(name, "error", started)
                    raise
                reason = type(e).__name__
            except Exception as e:
                impaired = impairment(e)
                if impaired is not None:
                    self.down_since = None  # it answered
                    self._observe(name, "unavailable", started)
                    raise self._impaired(name, e, *impaired) from e
                if not connection_lost(e):
                    self._observe(name, "error", started)
                    raise
                now = self._reactor.seconds()
                if self.down_since is None:
                    self.down_since = now
                if now - min(started, self.down_since) >= self.retry_window:
                    self._observe(name, "unavailable", started)
                    raise DatabaseUnavailable(
                        f"unreachable for {now - self.down_since:.0f}s (last error:"
                        f" {' '.join(str(e).split()) or type(e).__name__})") from e
                reason = "connection"
            else:
                self.down_since = None
                if name in self._impaired_names:
                    self._impaired_names.clear()
                    self.impaired.recovered()
                self._observe(name, "ok", started)
                return result
            self._metrics.db_retries.labels(name, reason).inc()
            log.debug("retrying {name} after {reason}", name=name, reason=reason)
            await task.deferLater(self._reactor, delay * (0.5 + random.random()), lambda: None)
            delay = min(delay * 2, 2.0)

    def _impaired(self, name: str, error: BaseException, cause: str,
                  retry_after: int) -> DatabaseImpaired:
        """Note that ``name`` failed with ``error``, which ``impairment``
        classified; the fault to raise."""
        reason = " ".join(str(error).split()) or type(error).__name__
        self._impaired_names.add(name)
        self.impaired.failed(f"{cause} ({name}: {reason}); answering 503")
        return DatabaseImpaired(cause, reason, retry_after)

    async def ping(self, timeout: float) -> float:
        started = self._reactor.seconds()
        d = self._pool.runInteraction(_ping_txn)
        d.addTimeout(timeout, self._reactor)
        try:
            await d
        except defer.TimeoutError:
            raise DatabaseUnavailable(f"no answer within {timeout:g}s") from None
        except Exception as e:
            raise DatabaseUnavailable(" ".join(str(e).split()) or type(e).__name__) from e
        return self._reactor.seconds() - started

    def _observe(self, name: str, outcome: str, started: float) -> None:
        self._metrics.db_interactions.labels(name, outcome).observe(
            self._reactor.seconds() - started)


def _ping_txn(txn: Any) -> None:
    txn.execute("SELECT 1")
    txn.fetchall()

