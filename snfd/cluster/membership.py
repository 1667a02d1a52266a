"""This node's row in ``nodes``: registered at start, heartbeat, stopped.

Clocks: every time in ``nodes`` is the database's ``now()``, and whether a
member is alive is decided in SQL against the database's ``now()`` too
(``store.members_txn``): no node's wall clock is compared with another's,
so a node whose clock was set back or forward is judged by its heartbeats
alone.  Heartbeats are scheduled on the reactor (kept to their delays
after a jump back by ``snfd.clock.ClockWatch``).
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from snfd.cluster import store
from snfd.db.pool import Database
from snfd.repeats import Repeats

log = Logger(namespace="snfd.cluster")


class Membership(service.Service):
    """Keeps this node's membership row fresh and reads the cluster's state."""

    name = "membership"  # type: ignore[assignment]

    def __init__(self, reactor: Any, db: Database, node_id: str, address: str,
                 plugins: list[str], heartbeat_interval: float = 5.0,
                 monotonic: Any = None):
        self._reactor = reactor
        #: This start of the node: what its requests in flight belong to.
        self.boot = secrets.token_hex(8)
        # How long heartbeats have failed, for the log: a duration.
        self._monotonic = monotonic if monotonic is not None else reactor
        self._db = db
        self.node_id = node_id
        self._address = address
        self._plugins = plugins
        self._interval = heartbeat_interval
        self._loop: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._registered = False
        self._failures = Repeats(log, "membership heartbeat", self._monotonic)
        self._loop = task.LoopingCall(lambda: defer.ensureDeferred(self._beat()))
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=True)

    async def _beat(self) -> None:
        try:
            if not self._registered:
                await self._db.run("cluster.register_node", store.register_node_txn,
                                   self.node_id, self._address, self._plugins, self.boot)
                self._registered = True
                log.info("node {node} joined the cluster at {address}",
                         node=self.node_id, address=self._address)
            else:
                await self._db.run("cluster.heartbeat", store.heartbeat_txn, self.node_id)
        except Exception as e:
            self._failures.failed(" ".join(str(e).split()))
        else:
            self._failures.recovered()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return defer.ensureDeferred(self._leave())

    async def _leave(self) -> None:
        try:
            await self._db.run("cluster.node_stopped", store.node_stopped_txn, self.node_id)
        except Exception as e:
            log.warn("could not mark node stopped: {error}", error=" ".join(str(e).split()))

    @property
    def dead_after(self) -> float:
        """Seconds without a heartbeat after which a member is dead."""
        return self._interval * 3

    async def boot_over(self, node_id: str, boot: str,
                        issued_at: datetime.datetime) -> bool:
        """Whether that boot of that node (running at ``issued_at``, by the
        database's clock) has ended: restarted or stopped since
        (``store.boot_over_txn``)."""
        over: bool = await self._db.run("cluster.boot_over", store.boot_over_txn, node_id,
                                        boot, issued_at)
        return over

    async def status(self) -> dict[str, Any]:
        """The cluster as ``GET /_cluster`` shows it."""
        members, leadership = await self._db.run(
            "cluster.status", store.status_txn, self.dead_after)
        return {
            "node": self.node_id,
            "leader": leadership.leader,
            "epoch": leadership.epoch,
            "leader_since": leadership.since.isoformat() if leadership.since else None,
            "members": [m.as_json() for m in members],
        }
