"""Ganeti jobs as published events, by polling RAPI.

For clusters where no snfd runs on the master (so no ``JobQueueWatcher``):
``RapiJobPoller`` lists ``GET /2/jobs?bulk=1`` and hands each changed job to
an ``EventPublisher``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from snfd.ganeti.jobs import BadJob, parse_job_id
from snfd.ganeti.publisher import EventPublisher
from snfd.ganeti.rapi import FINAL_STATUSES, RapiError, RapiUnavailable
from snfd.interfaces import ILeaderDuty

log = Logger()


@implementer(ILeaderDuty)
class RapiJobPoller:
    """Publishes a cluster's jobs by polling its RAPI.

    Every ``interval`` seconds it lists ``GET /2/jobs?bulk=1``; each job
    whose status or op statuses changed since the last poll is published
    (``EventPublisher.publish_job``).  A job that reached a final status is
    first read whole with ``GET /2/jobs/<id>`` for its op results and logs.
    The first poll publishes every job still in the queue.  An unreachable
    or failing cluster is logged and asked again at the next tick; a job
    that could not be published is tried again at the next tick.

    ``start()``/``stop()`` run it directly; as an ``ILeaderDuty`` it runs
    on the leader only (``start(leadership)``).
    """

    def __init__(self, reactor: Any, rapi: Any, cluster: str,
                 publisher: EventPublisher, interval: float = 2.0):
        self._reactor = reactor
        self._rapi = rapi
        self.cluster = cluster
        self.name = f"ganeti-poller-{cluster}"
        self._publisher = publisher
        self.interval = interval
        self._known: dict[int, tuple[Any, ...]] = {}
        self._loop: task.LoopingCall | None = None
        self._tick: defer.Deferred[None] | None = None
        self._failing = False

    def start(self, leadership: Any = None) -> None:
        """Poll from now on (the first poll at once)."""
        if self._loop is not None and self._loop.running:
            return
        self._known.clear()
        self._loop = task.LoopingCall(self._run_tick)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("Ganeti job poller for {cluster} stopped", f,
                                  cluster=self.cluster))

    def stop(self) -> defer.Deferred[None]:
        """Stop polling; the poll in progress is cancelled (what it had not
        published yet is published by the next poller) and the Deferred
        fires once it has ended."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        tick, self._tick = self._tick, None
        if tick is None or tick.called:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        tick.addBoth(lambda _: done.callback(None))
        tick.cancel()
        return done

    def _run_tick(self) -> defer.Deferred[None]:
        self._tick = defer.ensureDeferred(self._guarded_poll())
        return self._tick

    async def _guarded_poll(self) -> None:
        try:
            await self.poll()
        except defer.CancelledError:
            pass  # stop() ended this poll
        except Exception:
            log.failure("Polling the jobs of Ganeti cluster {cluster} failed",
                        cluster=self.cluster)

    async def poll(self) -> None:
        """One poll: list the jobs and publish those that changed."""
        try:
            jobs = await self._rapi.jobs()
        except (RapiUnavailable, RapiError) as e:
            if not self._failing:
                log.warn("Cannot list the jobs of Ganeti cluster {cluster}: {error};"
                         " retrying every {interval}s", cluster=self.cluster, error=e,
                         interval=self.interval)
            self._failing = True
            return
        if self._failing:
            log.info("Ganeti cluster {cluster} answers again", cluster=self.cluster)
            self._failing = False
        listed: set[int] = set()
        for job in jobs:
            try:
                job_id = parse_job_id(job.get("id"))
            except BadJob:
                continue
            listed.add(job_id)
            state = (job.get("status"), tuple(_hashable(job.get("opstatus"))))
            if self._known.get(job_id) == state:
                continue
            if not await self._publish(job_id, job):
                return
            self._known[job_id] = state
        # Archived jobs leave the listing; forget them.
        for job_id in set(self._known) - listed:
            del self._known[job_id]

    async def _publish(self, job_id: int, job: dict[str, Any]) -> bool:
        if job.get("status") in FINAL_STATUSES:
            try:
                full = await self._rapi.job(job_id)
            except (RapiUnavailable, RapiError) as e:
                log.warn("Cannot read job {job} of {cluster}: {error}", job=job_id,
                         cluster=self.cluster, error=e)
                return False
            if full is not None:
                job = full
        try:
            return await self._publisher.publish_job(job, self.cluster, self._rapi)
        except BadJob as e:
            log.warn("Skipping job {job} of {cluster}: {error}", job=job_id,
                     cluster=self.cluster, error=e)
            return True


def _hashable(values: Any) -> Iterable[Any]:
    return [v if isinstance(v, str | int | None) else repr(v)
            for v in (values if isinstance(values, list) else [])]
