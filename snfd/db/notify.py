"""PostgreSQL LISTEN on a dedicated connection, read by the reactor.

A ``Listener`` holds one autocommit connection outside the pool, LISTENs on
one channel and hands every notification's payload to a callback on the
reactor thread.  When the connection fails it reconnects with capped,
jittered backoff; since notifications sent meanwhile are lost, it calls
``on_gap`` after every (re)connect so the owner can drop whatever it
cached.  ``listening`` says whether notifications are being received right
now: a cache that relies on them must not answer from memory otherwise.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions
from twisted.internet import threads
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from snfd.db.pool import connection_options
from snfd.repeats import Repeats

log = Logger(namespace="snfd.db.notify")

_CHANNEL = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@implementer(IReadDescriptor)
class Listener:
    """Delivers ``NOTIFY <channel>`` payloads to ``callback(payload)``."""

    def __init__(self, reactor: Any, dsn: str, channel: str,
                 callback: Callable[[str], None], on_gap: Callable[[], None],
                 max_delay: float = 10.0):
        if not _CHANNEL.match(channel):
            raise ValueError(f"bad channel name {channel!r}")
        self._reactor = reactor
        self._dsn = dsn
        self._channel = channel
        self._callback = callback
        self._on_gap = on_gap
        self._max_delay = max_delay
        self._conn: Any = None
        self._fd = -1
        self._running = False
        self._retry: Any = None
        self._delay = 0.1
        self.listening = False
        self._failures = Repeats(log, f"LISTEN on {channel}", reactor)

    def start(self) -> None:
        self._running = True
        self._connect()

    def stop(self) -> None:
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._drop()

    def _connect(self) -> None:
        d = threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._open)
        d.addCallbacks(self._opened, self._failed)

    def _open(self) -> Any:
        conn = psycopg2.connect(self._dsn, **connection_options("snfd-listen"))
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {self._channel}")
        return conn

    def _opened(self, conn: Any) -> None:
        if not self._running:
            conn.close()
            return
        self._conn = conn
        # The reactor watches a duplicate of the socket that only this
        # object closes: psycopg2 closes its own at once on a fatal error,
        # and the number may then be reused before the reactor lets go.
        self._fd = os.dup(conn.fileno())
        self._delay = 0.1
        self._failures.recovered()
        self.listening = True
        self._reactor.addReader(self)
        self._on_gap()

    def _failed(self, failure: Any) -> None:
        if not self._running:
            return
        self._failures.failed(f"{failure.getErrorMessage().strip()}; retrying in"
                              f" {self._delay:.1f}s")
        self._schedule()

    def _schedule(self) -> None:
        delay = self._delay * (0.5 + random.random())
        self._delay = min(self._max_delay, self._delay * 2)
        self._retry = self._reactor.callLater(delay, self._connect)

    def _drop(self) -> None:
        self.listening = False
        if self._conn is not None:
            self._reactor.removeReader(self)
            os.close(self._fd)
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    # IReadDescriptor

    def fileno(self) -> int:
        return self._fd if self._conn is not None else -1

    def doRead(self) -> None:
        try:
            self._conn.poll()
        except psycopg2.Error as e:
            log.warn("LISTEN connection lost: {error}", error=" ".join(str(e).split()))
            self._drop()
            self._on_gap()
            if self._running:
                self._schedule()
            return
        while self._conn.notifies:
            note = self._conn.notifies.pop(0)
            try:
                self._callback(note.payload)
            except Exception:
                log.failure("notification handler failed")

    def connectionLost(self, reason: Any) -> None:
        self._drop()
        if self._running:
            self._schedule()

    def logPrefix(self) -> str:
        return "Listener"

