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
from snfd.interfaces import IDatabase
from snfd.metrics import Metrics

T = TypeVar("T")

log = Logger(namespace="snfd.db")

_RETRY_CONFLICT = (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected)
# SQLSTATE classes/codes that mean "this connection is gone or not yet usable".
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03")
_MAX_CONFLICT_ATTEMPTS = 10
# Interactions run their statements back to back in a thread; a session idle
# inside a transaction this long belongs to a frozen or stuck node.
_IDLE_IN_TRANSACTION = 5.0


class DatabaseUnavailable(errors.ServiceUnavailable):
    """The database could not be reached in time (503, ``Retry-After``);
    ``reason``: why, for the log."""

    def __init__(self, reason: str, retry_after: int = 5):
        super().__init__("The service cannot reach its database; try again shortly.",
                         headers={"Retry-After": str(retry_after)})
        self.reason = reason

    def __str__(self) -> str:
        return f"database unavailable: {self.reason}"


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
    a connect timeout, and TCP keepalives so a dead peer is noticed.

    ``idle_in_transaction`` (seconds) ends a session that sits inside a
    transaction that long: a frozen node must not hold row locks (such as
    the share lock of a fenced write) that a new leader waits for.
    """
    options = {
        "application_name": application_name[:63],
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    if idle_in_transaction:
        options["options"] = (
            f"-c idle_in_transaction_session_timeout={int(idle_in_transaction * 1000)}")
    return options


class _Pool(adbapi.ConnectionPool):
    """adbapi's pool, dropping a broken connection quietly instead of
    logging tracebacks for the expected failure of its rollback."""

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
        self._retry_window = retry_window
        #: when the current outage began (the first connection failure since
        #: the last success); None: no outage known
        self.down_since: float | None = None
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
        started = self._reactor.seconds()
        conflicts = 0
        delay = 0.05
        while True:
            try:
                result = await self._pool.runInteraction(interaction, *args, **kwargs)
            except _RETRY_CONFLICT as e:
                conflicts += 1
                if conflicts >= _MAX_CONFLICT_ATTEMPTS:
                    self._observe(name, "error", started)
                    raise
                reason = type(e).__name__
            except Exception as e:
                if not connection_lost(e):
                    self._observe(name, "error", started)
                    raise
                now = self._reactor.seconds()
                if self.down_since is None:
                    self.down_since = now
                if now - min(started, self.down_since) >= self._retry_window:
                    self._observe(name, "unavailable", started)
                    raise DatabaseUnavailable(
                        f"unreachable for {now - self.down_since:.0f}s (last error:"
                        f" {' '.join(str(e).split()) or type(e).__name__})") from e
                reason = "connection"
            else:
                self.down_since = None
                self._observe(name, "ok", started)
                return result
            self._metrics.db_retries.labels(name, reason).inc()
            log.debug("retrying {name} after {reason}", name=name, reason=reason)
            await task.deferLater(self._reactor, delay * (0.5 + random.random()), lambda: None)
            delay = min(delay * 2, 2.0)

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

