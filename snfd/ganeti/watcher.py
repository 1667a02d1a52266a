"""The Ganeti master's side: the job queue directory as published events.

What snf-ganeti-eventd does, as a service of the ``ganeti-events`` plugin:
``JobQueueWatcher`` follows the queue directory with inotify and hands each
changed job to an ``EventPublisher``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python import filepath

from snfd.ganeti.jobs import JOB_FILE, BadJob, parse_job_file
from snfd.ganeti.publisher import EventPublisher

log = Logger()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None  # archived or replaced between the event and the read


class JobQueueWatcher(service.Service):
    """Publishes the jobs of a Ganeti job queue directory as they change.

    Watches ``queue_dir`` with inotify for files renamed into place or
    closed after writing, named exactly ``job-<id>`` (Ganeti replaces job
    files atomically through temporary files also named ``job-*``, which
    are ignored).  Each file is read and parsed in a thread; one that is not
    a job is logged and skipped.  At start every existing job file is read
    once, so jobs that changed while the watcher was down are published
    (the publisher and the consumer drop what was seen before).  Jobs are
    processed one at a time per job id; a job that changes while it is
    being processed is read again afterwards (the latest file wins).

    A missing ``queue_dir`` is logged once; it is looked for again every
    ``retry_interval`` seconds and watched once it appears.

    ``rapi`` (a ``GanetiRapi``), when given, is asked for the instance
    details some messages carry (see ``attach_instance_info``).
    """

    name = "ganeti-job-queue-watcher"  # type: ignore[assignment]

    def __init__(self, reactor: Any, queue_dir: str | Path, cluster: str,
                 publisher: EventPublisher, rapi: Any = None,
                 retry_interval: float = 5.0):
        self._reactor = reactor
        self.queue_dir = Path(queue_dir)
        self.cluster = cluster
        self._publisher = publisher
        self._rapi = rapi
        self._retry_interval = retry_interval
        self._notifier: Any = None
        self._waiting: task.LoopingCall | None = None
        self._busy: dict[int, defer.Deferred[None]] = {}
        self._dirty: set[int] = set()
        self._scan: defer.Deferred[None] | None = None

    @property
    def watching(self) -> bool:
        """Whether the directory is being watched."""
        return self._notifier is not None

    def startService(self) -> None:
        super().startService()
        if self.queue_dir.is_dir():
            self._watch()
            return
        log.warn("Ganeti job queue {dir} does not exist; no Ganeti events from this"
                 " node until it does", dir=str(self.queue_dir))
        self._waiting = task.LoopingCall(self._look_again)
        self._waiting.clock = self._reactor
        self._waiting.start(self._retry_interval, now=False)

    def _look_again(self) -> None:
        if self.queue_dir.is_dir():
            assert self._waiting is not None
            self._waiting.stop()
            self._waiting = None
            log.info("Ganeti job queue {dir} appeared", dir=str(self.queue_dir))
            self._watch()

    def _watch(self) -> None:
        from twisted.internet import inotify

        notifier = inotify.INotify(reactor=self._reactor)
        try:
            notifier.startReading()
            notifier.watch(filepath.FilePath(str(self.queue_dir)),
                           mask=inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE,
                           callbacks=[self._notified])
        except Exception:
            notifier.loseConnection()
            log.failure("Cannot watch the Ganeti job queue {dir}", dir=str(self.queue_dir))
            return
        self._notifier = notifier
        log.info("Watching the Ganeti job queue {dir} for cluster {cluster}",
                 dir=str(self.queue_dir), cluster=self.cluster)
        self._scan = defer.ensureDeferred(self._scan_existing())

    async def _scan_existing(self) -> None:
        try:
            names = await threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(),
                lambda: sorted(p.name for p in self.queue_dir.iterdir()))
        except OSError as e:
            log.error("Cannot list the Ganeti job queue {dir}: {error}",
                      dir=str(self.queue_dir), error=e)
            return
        ids = sorted(int(m.group(1)) for m in map(JOB_FILE.match, names) if m)
        for job_id in ids:
            if not self.running:
                return
            await self.process(job_id)

    def _notified(self, ignored: Any, path: filepath.FilePath[Any], mask: int) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        match = JOB_FILE.match(name)
        if match is not None and self.running:
            self.process(int(match.group(1)))

    def process(self, job_id: int) -> defer.Deferred[None]:
        """Read and publish ``job-<job_id>`` (again, if it is being done
        now); the Deferred fires when that job has no work left."""
        running = self._busy.get(job_id)
        if running is not None:
            self._dirty.add(job_id)
            return running
        d = defer.ensureDeferred(self._process(job_id))
        self._busy[job_id] = d
        return d

    async def _process(self, job_id: int) -> None:
        try:
            while True:
                self._dirty.discard(job_id)
                await self._publish_file(job_id)
                if job_id not in self._dirty or not self.running:
                    return
        finally:
            self._busy.pop(job_id, None)
            self._dirty.discard(job_id)

    async def _publish_file(self, job_id: int) -> None:
        path = self.queue_dir / f"job-{job_id}"
        try:
            data = await threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), _read, path)
            if data is None:
                return
            job = parse_job_file(data)
            await self._publisher.publish_job(job, self.cluster, self._rapi)
        except BadJob as e:
            log.warn("Skipping {path}: not a Ganeti job ({error})", path=str(path), error=e)
        except defer.CancelledError:
            raise
        except Exception:
            log.failure("Skipping {path}: processing failed", path=str(path))

    def stopService(self) -> defer.Deferred[None]:
        """Stop watching; the jobs being processed are abandoned (their
        events not yet confirmed are published at the next start) and the
        Deferred fires once that is done."""
        super().stopService()
        if self._waiting is not None:
            self._waiting.stop()
            self._waiting = None
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None
        work = list(self._busy.values())
        if self._scan is not None:
            work.append(self._scan)
        if self._busy:
            # Not remembered as published, so the start-up scan of the next
            # run publishes them.
            log.info("Ganeti job queue watcher stopped with jobs {jobs} in progress",
                     jobs=sorted(self._busy))
        waits = defer.DeferredList(work, consumeErrors=True)
        for d in work:
            d.cancel()
        return waits.addCallback(lambda _: None)
