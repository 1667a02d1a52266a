"""Instance actions: what each request did to a server, kept for Nova's
``os-instance-actions``.

A request that creates, deletes, starts, stops, reboots, resizes,
rebuilds, rescues, unrescues, locks, unlocks or migrates a server, or
attaches or detaches an interface, is recorded once it has been accepted:
the server, the request id (the ``X-Compute-Request-Id`` the answer
carried), the action's name as Nova names it, who asked, the server's
project, the time, and the Ganeti job it submitted (none for a lock or an
interface change, whose NIC job is not the server's task).
A request that failed is not recorded (Nova records some refused ones;
here only what happened is history).

A record's events are its job's opcodes as the update path saw them
(``cyclades_job_events``, written by ``snfd.cyclades.updates``): each
opcode's start, its end and ``Success``/``Error``.  An action whose job
failed shows the message ``Error``, as Nova's; the events ran on the
server's backend (Nova's event ``host``).  The history lives as long as
the server's row (deleted servers keep theirs: Nova shows them from
microversion 2.21, ``server``).
"""

from __future__ import annotations

import datetime
from typing import Any

from snfd.cyclades import store
from snfd.cyclades.model import InstanceAction, Server

UTC = datetime.UTC


class InstanceActions:
    """The record of instance actions.

    @param db: the node's ``IDatabase``.
    @param clock: an ``IReactorTime``: the actions' start times.
    """

    def __init__(self, db: Any, clock: Any):
        self._db = db
        self._clock = clock

    async def record(self, server: Server, request_id: str, action: str, user: str,
                     job: bool = True) -> None:
        """Note that request ``request_id`` of ``user`` did ``action`` to
        ``server`` as the effect path returned it; with ``job``, the job
        it submitted is the server's task job (or, when the update path
        has already seen that job end, its last job)."""
        job_id = None
        if job:
            job_id = server.task_job_id if server.task_job_id is not None \
                else server.backendjobid
        now = datetime.datetime.fromtimestamp(self._clock.seconds(), UTC)
        await self._db.run("cyclades.add_action", store.add_action_txn, server.id,
                           request_id, action, user, server.project, now, job_id)

    async def of_server(self, server_id: int) -> list[InstanceAction]:
        """A server's actions, newest first."""
        found: list[InstanceAction] = await self._db.run(
            "cyclades.actions", store.actions_txn, server_id)
        return found

    async def server(self, server_id: str) -> Server | None:
        """The server (deleted ones too) whose path id is ``server_id``,
        or None: for the history of a deleted server."""
        if not server_id.isdigit() or len(server_id) > 18:
            return None
        found: Server | None = await self._db.run("cyclades.server", store.server_txn,
                                                  int(server_id))
        return found

    async def one(self, server_id: int, request_id: str) -> InstanceAction | None:
        """The action of request ``request_id`` on the server, or None."""
        found = await self._db.run("cyclades.actions", store.actions_txn, server_id,
                                   request_id)
        return found[0] if found else None
