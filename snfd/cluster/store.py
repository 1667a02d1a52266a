"""SQL of cluster membership and leadership (``*_txn`` functions only).

Every function takes a DB-API cursor: they run in the node's pool and on the
election's dedicated lock connection alike.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from snfd.cluster import LostLeadership

# The session advisory lock whose holder is the leader ("snfd" in ASCII).
LEADER_LOCK = 0x736E6664
LEADER_APPLICATION_PREFIX = "snfd-leader:"


@attrs.frozen
class Member:
    id: str
    address: str
    plugins: tuple[str, ...]
    started_at: datetime.datetime
    last_heartbeat: datetime.datetime
    stopped_at: datetime.datetime | None
    alive: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "address": self.address,
            "plugins": list(self.plugins),
            "started_at": self.started_at.isoformat(),
            "last_heartbeat": self.last_heartbeat.isoformat(),
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "alive": self.alive,
        }


@attrs.frozen
class Leadership:
    leader: str | None
    epoch: int
    since: datetime.datetime | None


def register_node_txn(txn: Any, node_id: str, address: str, plugins: list[str],
                      boot: str | None = None) -> None:
    txn.execute(
        """INSERT INTO nodes (id, address, plugins, started_at, last_heartbeat, boot)
           VALUES (%s, %s, %s, now(), now(), %s)
           ON CONFLICT (id) DO UPDATE SET
               address = EXCLUDED.address, plugins = EXCLUDED.plugins,
               started_at = now(), last_heartbeat = now(), stopped_at = NULL,
               boot = EXCLUDED.boot""",
        (node_id, address, plugins, boot))


def boot_over_txn(txn: Any, node_id: str, boot: str, issued_at: datetime.datetime,
                  ) -> bool:
    """Whether boot ``boot`` of node ``node_id``, known to have run at
    ``issued_at`` (the database's clock), is over: the node registered a
    later boot since, or this boot stopped.  A boot that only missed its
    heartbeats is not over: a frozen process wakes up and carries on.  A
    boot not registered yet (a request can come before the first
    heartbeat) is not over either."""
    txn.execute(
        """SELECT EXISTS (SELECT 1 FROM nodes WHERE id = %s AND (
               (boot IS DISTINCT FROM %s AND started_at > %s)
               OR (boot = %s AND stopped_at IS NOT NULL)))""",
        (node_id, boot, issued_at, boot))
    return bool(txn.fetchone()[0])


def heartbeat_txn(txn: Any, node_id: str) -> None:
    txn.execute(
        "UPDATE nodes SET last_heartbeat = now(), stopped_at = NULL WHERE id = %s",
        (node_id,))


def node_stopped_txn(txn: Any, node_id: str) -> None:
    txn.execute("UPDATE nodes SET stopped_at = now() WHERE id = %s", (node_id,))


def members_txn(txn: Any, dead_after: float) -> list[Member]:
    txn.execute(
        """SELECT id, address, plugins, started_at, last_heartbeat, stopped_at,
                  stopped_at IS NULL
                  AND last_heartbeat > now() - make_interval(secs => %s)
           FROM nodes ORDER BY id""",
        (dead_after,))
    return [Member(r[0], r[1], tuple(r[2]), r[3], r[4], r[5], bool(r[6]))
            for r in txn.fetchall()]


def leadership_txn(txn: Any) -> Leadership:
    """Who holds the leader lock now (``None`` if nobody) and the epoch."""
    txn.execute(
        """SELECT a.application_name FROM pg_locks l
           JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid = 0 AND l.objid = %s AND l.objsubid = 1""",
        (LEADER_LOCK,))
    row = txn.fetchone()
    leader = None
    if row and row[0] and row[0].startswith(LEADER_APPLICATION_PREFIX):
        leader = row[0][len(LEADER_APPLICATION_PREFIX):]
    txn.execute("SELECT epoch, since FROM cluster_leader WHERE id = 1")
    epoch, since = txn.fetchone()
    return Leadership(leader, epoch, since)


def status_txn(txn: Any, dead_after: float) -> tuple[list[Member], Leadership]:
    """Members and leadership, read in one transaction."""
    return members_txn(txn, dead_after), leadership_txn(txn)


def try_lock_txn(txn: Any) -> bool:
    """Try to take the leader lock in this (autocommit) session."""
    txn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
    return bool(txn.fetchone()[0])


def begin_term_txn(txn: Any, node_id: str) -> int:
    """Start a new leadership term for ``node_id``; returns its epoch.  One
    statement, so it is atomic in an autocommit session too."""
    txn.execute(
        """WITH t AS (
               UPDATE cluster_leader SET epoch = epoch + 1, node_id = %s, since = now()
               WHERE id = 1 RETURNING epoch, node_id, since)
           INSERT INTO cluster_terms (epoch, node_id, started_at)
           SELECT epoch, node_id, since FROM t RETURNING epoch""",
        (node_id,))
    return int(txn.fetchone()[0])


def ping_txn(txn: Any) -> None:
    txn.execute("SELECT 1")
    txn.fetchone()


def check_epoch_txn(txn: Any, epoch: int) -> None:
    """Fence: lock the term row in share mode and refuse if it moved on.

    A new term's UPDATE waits for this transaction, so a write that passed
    this check commits before any newer leader starts."""
    txn.execute("SELECT epoch FROM cluster_leader WHERE id = 1 FOR SHARE")
    current = txn.fetchone()[0]
    if current != epoch:
        raise LostLeadership(
            f"leadership term {epoch} is over (the cluster is at term {current})")
