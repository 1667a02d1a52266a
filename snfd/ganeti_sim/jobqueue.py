"""The simulated job queue: jobs, their scheduling and their files on disk.

Jobs live in ``queue_dir`` exactly as Ganeti 3.0 keeps them
(reference/ganeti.md Part B section 7): one ``job-<id>`` file of plain JSON
per job (``id``, ``ops``, ``received_timestamp``, ``start_timestamp``,
``end_timestamp``, ``livelock``, ``process_id``; no job-level status), a
``serial`` file with the last job id and ``version`` = 1.  Every update is
an atomic replace: a temporary file in the same directory is written,
closed and renamed over ``job-<id>``, so a watcher sees ``IN_MOVED_TO``.
Temporary names follow real Ganeti: ``job-<id>-<pid>-<n>.tmp`` for the
queue's own writes (compact JSON) and ``job-<id><random>.new`` for the
job process's writes.

A job's life, and the file writes it produces (a create with its five log
messages gives nine or more replacements, a shutdown six):

* submitted: queued, written once (and ``serial`` replaced);
* dispatched (a free slot among ``max_running_jobs`` and the queue not
  held): queued again with the queue's livelock, then after ``queue_delay``
  once more with the job's own livelock;
* its process starts: each op goes ``waiting`` (acquiring locks), then
  ``running`` with its full parameters, one write per log message, and
  ``success`` or ``error``; each step of the running phase takes
  ``exec_time``.

What ``GET /2/jobs/<id>`` shows is the last version *written*, so a client
never sees a status before the job file holds it (as on a real cluster,
where the queue daemon reads the files).  Files are written in order by one
writer in a thread.

Dependencies (an op's ``depends``, ``[[job_id, [statuses]]]``; a negative
id counts back from the job's own id and is stored resolved) keep a job
``queued`` while a job it names is unfinished; then its process checks
them once the op is ``waiting``: a status not listed fails the op with
``OpExecError`` "Dependency job N finished with status 'S', not one of 'A'
as required" (its input stays unexpanded), an unknown job with
"Dependency error: Job N not found", and a cancelled one (not listed)
cancels the job, as Ganeti 3.0 does.

On load (a restarted simulator), jobs that never started are queued again;
jobs that were waiting or running are finished as ``error`` with
``["OpExecError", ["Unclean master daemon shutdown"]]`` (what real Ganeti
does on a master restart), since the simulated work they were doing is lost.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from snfd.ganeti_sim import instances, networks, opcodes
from snfd.ganeti_sim.model import ClusterConfig
from snfd.ganeti_sim.opcodes import OpError

log = Logger(namespace="snfd.ganeti_sim")

JOB_FILE = re.compile(r"^job-(\d+)$")
LIVELOCK_DIR = "/var/run/ganeti/livelocks"
UNCLEAN_SHUTDOWN = "Unclean master daemon shutdown"


def timestamp(seconds: float) -> list[int]:
    """Ganeti's ``[seconds, microseconds]``."""
    whole = int(seconds)
    return [whole, round((seconds - whole) * 1_000_000) % 1_000_000]


def _replace(path: Path, text: str, temp_name: str | None) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it over
    ``path``.  ``temp_name`` None: a random ``<name><random>.new`` name."""
    directory = path.parent
    if temp_name is None:
        fd, temp = tempfile.mkstemp(prefix=path.name, suffix=".new", dir=directory)
    else:
        temp = str(directory / temp_name)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.fchmod(fd, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


class FileWriter:
    """Atomic file replacements, one at a time, in order, in one thread of
    its own (so the simulator never competes for the reactor's pool).

    ``write`` returns a Deferred that fires once the new content is in
    place; writes land in the order they were issued.  ``start`` before the
    first write, ``stop`` at the end (it waits for pending writes).
    """

    def __init__(self, reactor: Any):
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="ganeti-sim-writer")
        self._trigger: Any = None

    def start(self) -> None:
        if not self._pool.started:
            self._pool.start()
            self._trigger = self._reactor.addSystemEventTrigger(
                "during", "shutdown", self._pool.stop)

    async def stop(self) -> None:
        if not self._pool.started:
            return
        await self.drain()
        self._pool.stop()
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None

    def write(self, path: Path, text: str, temp_name: str | None = None) -> defer.Deferred[None]:
        """Replace ``path`` with ``text`` after every earlier write."""
        done: defer.Deferred[None] = defer.Deferred()
        d = threads.deferToThreadPool(self._reactor, self._pool, _replace, path, text,
                                      temp_name)

        def report(result: Any) -> None:
            if isinstance(result, Failure):
                log.failure("writing {path} failed", result, path=str(path))
            if not done.called:
                if isinstance(result, Failure):
                    done.errback(result)
                else:
                    done.callback(None)

        d.addBoth(report)
        return done

    def move(self, source: Path, target: Path) -> defer.Deferred[None]:
        """Rename ``source`` to ``target`` (creating its directory) after
        every earlier write."""
        def rename() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)

        return threads.deferToThreadPool(self._reactor, self._pool, rename)

    async def drain(self) -> None:
        """Wait until every write issued so far has landed."""
        if not self._pool.started:
            return
        # The single worker runs jobs in order: a no-op queued now runs last.
        await threads.deferToThreadPool(self._reactor, self._pool, lambda: None)


@attrs.define
class Op:
    """One opcode of a job, as its job file holds it."""

    input: dict[str, Any]
    status: str = "queued"
    result: Any = None
    log: list[list[Any]] = attrs.Factory(list)
    start_timestamp: list[int] | None = None
    exec_timestamp: list[int] | None = None
    end_timestamp: list[int] | None = None
    priority: int = 0


@attrs.define(eq=False)
class Job:
    """A job: its file content plus the queue's bookkeeping.

    ``in_process`` says whether the job's (simulated) process owns the file
    yet, which decides how writes look.  ``visible`` is the last version
    written to disk, what RAPI reports.
    """

    id: int
    ops: list[Op]
    received_timestamp: list[int]
    start_timestamp: list[int] | None = None
    end_timestamp: list[int] | None = None
    livelock: str | None = None
    process_id: int | None = None
    in_process: bool = False
    phase: str = "queued"        # queued | dispatched | finished
    visible: dict[str, Any] | None = None
    finished: list[defer.Deferred[None]] = attrs.Factory(list)

    def file_doc(self) -> dict[str, Any]:
        """The job file content in the current writer's key order."""
        if not self.in_process:
            doc: dict[str, Any] = {
                "id": self.id,
                "ops": [{"input": opcodes.submitted_input(op.input), "status": op.status,
                         "result": op.result, "log": op.log, "priority": op.priority,
                         "start_timestamp": op.start_timestamp,
                         "exec_timestamp": op.exec_timestamp,
                         "end_timestamp": op.end_timestamp} for op in self.ops],
                "received_timestamp": self.received_timestamp,
                "start_timestamp": self.start_timestamp,
                "end_timestamp": self.end_timestamp,
            }
            if self.livelock is not None:
                doc["livelock"] = self.livelock
            if self.process_id is not None:
                doc["process_id"] = self.process_id
            return doc
        return {
            "id": self.id,
            "ops": [{"input": op.input, "status": op.status, "result": op.result,
                     "log": op.log, "start_timestamp": op.start_timestamp,
                     "exec_timestamp": op.exec_timestamp, "end_timestamp": op.end_timestamp,
                     "priority": op.priority} for op in self.ops],
            "start_timestamp": self.start_timestamp,
            "end_timestamp": self.end_timestamp,
            "received_timestamp": self.received_timestamp,
            "livelock": self.livelock,
            "process_id": self.process_id,
        }

    def render(self) -> str:
        """The file text: compact for the queue's writes, spaced and
        newline-terminated for the job process's, like real Ganeti."""
        doc = self.file_doc()
        if self.in_process:
            return json.dumps(doc) + "\n"
        return json.dumps(doc, separators=(",", ":"))

    @property
    def status(self) -> str:
        return opcodes.job_status([op.status for op in self.ops])

    @classmethod
    def from_file(cls, data: dict[str, Any]) -> Job:
        ops = [Op(input=o["input"], status=o["status"], result=o.get("result"),
                  log=o.get("log") or [], start_timestamp=o.get("start_timestamp"),
                  exec_timestamp=o.get("exec_timestamp"), end_timestamp=o.get("end_timestamp"),
                  priority=o.get("priority", 0)) for o in data["ops"]]
        return cls(id=int(data["id"]), ops=ops, received_timestamp=data["received_timestamp"],
                   start_timestamp=data.get("start_timestamp"),
                   end_timestamp=data.get("end_timestamp"), livelock=data.get("livelock"),
                   process_id=data.get("process_id"),
                   in_process="process_id" in data)


def rapi_job(doc: dict[str, Any] | None, job_id: int, bulk: bool = False) -> dict[str, Any]:
    """A job as ``GET /2/jobs/<id>`` shows it, from its file content; every
    field null for an unknown job.  ``bulk`` leaves out ``oplog`` and
    ``opresult`` as ``GET /2/jobs?bulk=1`` does."""
    if doc is None:
        view: dict[str, Any] = {
            "id": job_id, "ops": None, "status": None, "summary": None, "opstatus": None,
            "received_ts": None, "start_ts": None, "end_ts": None, "oplog": None,
            "opresult": None}
    else:
        ops = doc["ops"]
        statuses = [op["status"] for op in ops]
        view = {
            "id": doc["id"],
            "ops": [opcodes.rapi_op(op["input"]) for op in ops],
            "status": opcodes.job_status(statuses),
            "summary": [opcodes.summary(op["input"]) for op in ops],
            "opstatus": statuses,
            "received_ts": doc["received_timestamp"],
            "start_ts": doc["start_timestamp"],
            "end_ts": doc["end_timestamp"],
            "oplog": [op["log"] for op in ops],
            "opresult": [op["result"] for op in ops],
        }
    if bulk:
        view.pop("oplog")
        view.pop("opresult")
    return view


class _Locks:
    """Exclusive named locks, granted all at once, first come first served."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._waiting: list[tuple[int, frozenset[str], defer.Deferred[None]]] = []

    def acquire(self, owner: int, names: frozenset[str]) -> defer.Deferred[None]:
        def cancel(d: defer.Deferred[None]) -> None:
            self._waiting[:] = [w for w in self._waiting if w[2] is not d]

        d: defer.Deferred[None] = defer.Deferred(cancel)
        self._waiting.append((owner, names, d))
        self._grant()
        return d

    def release(self, owner: int) -> None:
        for name in [n for n, o in self._held.items() if o == owner]:
            del self._held[name]
        self._grant()

    def _grant(self) -> None:
        blocked: set[str] = set()
        granted = []
        for entry in list(self._waiting):
            owner, names, d = entry
            if names & blocked or any(n in self._held for n in names):
                blocked |= names
                continue
            for name in names:
                self._held[name] = owner
            self._waiting.remove(entry)
            granted.append(d)
        for d in granted:
            d.callback(None)


@attrs.define
class Latency:
    """``queue_delay``: seconds from dispatch to the job's process starting;
    ``exec_time``: seconds per step of an op's running phase."""

    queue_delay: float
    exec_time: float


class JobQueue:
    """Jobs of one simulated cluster: submission, scheduling, execution,
    cancellation, and their files in ``queue_dir``.

    ``persist`` is called (with no arguments) after an op changed the
    configuration, before the job's final file write, so the caller can save
    it.  Call ``load`` once before anything else and ``stop`` at the end.
    """

    def __init__(self, reactor: Any, queue_dir: Path, config: ClusterConfig,
                 latency: Latency, writer: FileWriter, persist: Callable[[], None]):
        self._reactor = reactor
        self.queue_dir = queue_dir
        self._config = config
        self.latency = latency
        self._writer = writer
        self._persist = persist
        self._jobs: dict[int, Job] = {}
        self._pending: list[int] = []
        self._running = 0
        self._held = False
        self._serial = 0
        self._temp_counter = 0
        self._pid = os.getpid()
        self._started_at = int(reactor.seconds())
        self._failures: dict[str, list[OpError]] = {}
        self._locks = _Locks()
        self._tasks: set[defer.Deferred[None]] = set()
        self._stopped = False

    # -- lifecycle --------------------------------------------------------
    @property
    def serial(self) -> int:
        """The last job id handed out."""
        return self._serial

    async def load(self, serial: int = 0) -> None:
        """Read the queue directory: the ``serial``, every ``job-<id>`` file.

        Unstarted jobs are queued again; interrupted ones are finished as
        errors (see the module docstring).
        """
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        version = self.queue_dir / "version"
        if not version.exists():
            await self._writer.write(version, "1\n", f"version-{self._pid}-0.tmp")
        try:
            serial = max(serial, int((self.queue_dir / "serial").read_text().strip() or 0))
        except (OSError, ValueError):
            pass
        interrupted = []
        for path in sorted(self.queue_dir.iterdir()):
            match = JOB_FILE.match(path.name)
            if not match:
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                job = Job.from_file(data)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warn("ignoring unreadable job file {path}: {error}", path=str(path),
                         error=e)
                continue
            job.visible = data
            serial = max(serial, job.id)
            self._jobs[job.id] = job
            if job.status in opcodes.FINAL_STATUSES:
                job.phase = "finished"
            elif job.start_timestamp is None and all(op.status == "queued" for op in job.ops):
                self._pending.append(job.id)
            else:
                interrupted.append(job)
        self._serial = serial
        self._pending.sort()
        now = timestamp(self._reactor.seconds())
        for job in interrupted:
            for op in job.ops:
                if op.status not in opcodes.FINAL_STATUSES:
                    op.status = "error"
                    op.result = ["OpExecError", [UNCLEAN_SHUTDOWN]]
                    op.end_timestamp = now
            job.end_timestamp = now
            job.phase = "finished"
            await self._write(job)

    async def initialise(self) -> None:
        """On a new cluster (no job yet) record job 1, the finished
        ``OP_CLUSTER_POST_INIT`` that ``gnt-cluster init`` leaves behind,
        so job ids and listings start as on a real cluster."""
        if self._serial != 0 or self._jobs:
            return
        now = self._reactor.seconds()
        stamp = timestamp(now)
        nanos = stamp[0] * 1_000_000_000 + stamp[1] * 1000
        op = Op(input={"dry_run": None, "debug_level": 0, "priority": 0, "depends": None,
                       "comment": None,
                       "reason": [["gnt:client:gnt-cluster", "init", nanos - 1_000_000],
                                  ["gnt:opcode:cluster_post_init", "job=1;index=0", nanos]],
                       "OP_ID": "OP_CLUSTER_POST_INIT"},
                status="success", result=True, start_timestamp=stamp, exec_timestamp=stamp,
                end_timestamp=stamp)
        job = Job(id=1, ops=[op], received_timestamp=stamp, start_timestamp=stamp,
                  end_timestamp=stamp, livelock=f"{LIVELOCK_DIR}/job_000001_{stamp[0]}",
                  process_id=self._pid, in_process=True, phase="finished")
        self._serial = 1
        self._jobs[1] = job
        self._write_serial()
        await self._write(job)

    def start(self) -> None:
        """Begin running queued jobs."""
        self._stopped = False
        self._schedule()

    async def stop(self) -> None:
        """Stop every job where it is (its file stays non-final) and wait for
        the pending file writes."""
        self._stopped = True
        for d in list(self._tasks):
            d.cancel()
        await self._writer.drain()

    # -- controls ---------------------------------------------------------
    def hold(self) -> None:
        """Keep queued jobs queued (they stay cancellable) until ``release``."""
        self._held = True

    def release(self) -> None:
        """Let queued jobs run again."""
        self._held = False
        self._schedule()

    def fail_next(self, op_id: str, error: OpError) -> None:
        """Make the next op ``op_id`` fail with ``error``: an
        ``OpPrereqError`` while it is waiting (before it runs), any other
        class once it is running."""
        self._failures.setdefault(op_id, []).append(error)

    # -- submission and queries -------------------------------------------
    def submit(self, ops: list[dict[str, Any]], source: tuple[str, str] | None,
               ) -> tuple[int, defer.Deferred[None]]:
        """Queue a job of ``ops`` (submitted opcode dicts, see
        ``opcodes.fill``) from ``source`` (the reason trail's first entry,
        e.g. ``("gnt:library:rlib2:instances", "")``; None for none).

        Returns the new job id and a Deferred that fires once the job file
        (and ``serial``) are on disk.
        """
        self._serial += 1
        job_id = self._serial
        now = self._reactor.seconds()
        received_ns = int(timestamp(now)[0] * 1_000_000_000 + timestamp(now)[1] * 1000)
        source_ns = received_ns - 2_000_000
        job_ops = []
        for index, op in enumerate(ops):
            op = dict(op)
            if op.get("depends"):
                # A negative id is relative to this job's own (-1: the job before).
                op["depends"] = [[dep + job_id if dep < 0 else dep, list(statuses)]
                                 for dep, statuses in op["depends"]]
            opcodes.add_reason(op, source[0] if source else None, source[1] if source else "",
                               source_ns, job_id, index, received_ns)
            job_ops.append(Op(input=opcodes.submitted_input(op)))
        job = Job(id=job_id, ops=job_ops, received_timestamp=timestamp(now))
        self._jobs[job_id] = job
        self._write_serial()
        written = self._write(job)
        self._pending.append(job_id)
        self._schedule()
        return job_id, written

    def job_ids(self) -> list[int]:
        """Every job id the queue knows, ascending."""
        return sorted(self._jobs)

    def view(self, job_id: int, bulk: bool = False) -> dict[str, Any]:
        """``GET /2/jobs/<id>``: the job as last written (archived jobs
        included), or all nulls."""
        job = self._jobs.get(job_id)
        if job is None:
            return rapi_job(self._archived(job_id), job_id, bulk)
        return rapi_job(job.visible, job_id, bulk)

    def _archive_path(self, job_id: int) -> Path:
        return self.queue_dir / "archive" / str(job_id // 10000) / f"job-{job_id}"

    def _archived(self, job_id: int) -> dict[str, Any] | None:
        if job_id <= 0:
            return None
        try:
            doc: dict[str, Any] = json.loads(self._archive_path(job_id).read_text())
        except (OSError, ValueError):
            return None
        return doc

    async def archive(self, older_than: float) -> int:
        """Move finished jobs that ended more than ``older_than`` seconds ago
        to ``archive/<id // 10000>/job-<id>``, as ``gnt-job archive`` and
        ganeti-watcher do (a watcher of the queue directory sees
        IN_MOVED_FROM).  They stay readable through ``GET /2/jobs/<id>`` but
        leave the listing and memory.  Returns how many were archived."""
        limit = self._reactor.seconds() - older_than
        moved = 0
        for job_id in sorted(self._jobs):
            job = self._jobs[job_id]
            if job.phase != "finished" or job.visible is None or job.end_timestamp is None:
                continue
            if job.end_timestamp[0] + job.end_timestamp[1] / 1e6 > limit or job.finished:
                continue
            del self._jobs[job_id]
            await self._writer.move(self.queue_dir / f"job-{job_id}",
                                    self._archive_path(job_id))
            moved += 1
        return moved

    def written(self, job_id: int) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and job.visible is not None

    async def wait(self, job_id: int) -> dict[str, Any]:
        """The job's view once its final state is on disk."""
        job = self._jobs[job_id]
        if job.phase != "finished" or job.visible is None \
                or rapi_job(job.visible, job_id)["status"] not in opcodes.FINAL_STATUSES:
            d: defer.Deferred[None] = defer.Deferred()
            job.finished.append(d)
            await d
        return self.view(job_id)

    async def cancel(self, job_id: int) -> list[Any]:
        """``DELETE /2/jobs/<id>``: Ganeti's ``[success, message]``.

        Only a job still waiting in the queue can be cancelled; it ends
        ``canceled`` without running.
        """
        job = self._jobs.get(job_id)
        if job is None or job.phase == "finished":
            return [False, f"Job {job_id} not found in queue"]
        if job.phase != "queued":
            return [False, "Job no longer waiting, can't cancel (informed it anyway)"]
        self._pending.remove(job_id)
        now = timestamp(self._reactor.seconds())
        for op in job.ops:
            op.status = "canceled"
            op.end_timestamp = now
        job.end_timestamp = now
        await self._finish(job)
        self._schedule()
        return [True, f"Dequeued job {job_id}"]

    # -- internals ----------------------------------------------------------
    def _now(self) -> float:
        return float(self._reactor.seconds())

    def _ts(self) -> list[int]:
        return timestamp(self._reactor.seconds())

    def _temp_name(self, name: str) -> str:
        self._temp_counter += 1
        return f"{name}-{self._pid}-{self._temp_counter}.tmp"

    def _write_serial(self) -> None:
        self._writer.write(self.queue_dir / "serial", f"{self._serial}\n",
                           self._temp_name("serial"))

    def _write(self, job: Job) -> defer.Deferred[None]:
        text = job.render()
        name = f"job-{job.id}"
        temp = None if job.in_process else self._temp_name(name)
        d = self._writer.write(self.queue_dir / name, text, temp)

        def landed(_: Any) -> None:
            job.visible = json.loads(text)

        d.addCallback(landed)
        return d

    async def _finish(self, job: Job) -> None:
        job.phase = "finished"
        await self._write(job)
        waiters, job.finished = job.finished, []
        for d in waiters:
            d.callback(None)

    def _waits(self, job: Job) -> bool:
        """Whether a job it depends on is known and not finished yet: the
        job then stays ``queued``, as Ganeti 3.0's scheduler keeps it."""
        for op in job.ops:
            for dep_id, _ in op.input.get("depends") or []:
                dep = self._jobs.get(dep_id)
                if dep is not None and dep.phase != "finished":
                    return True
        return False

    def _dependency_verdict(self, job: Job, op: Op) -> tuple[str, str] | None:
        """None when ``op``'s dependencies allow it to run, else the op's
        final (status, message): Ganeti's ``_JobDependencyManager`` texts,
        checked by the job's process once the op is ``waiting``."""
        for dep_id, allowed in op.input.get("depends") or []:
            if dep_id == job.id:
                return "error", "Job can't depend on itself"
            dep = self._jobs.get(dep_id)
            if dep is None:
                archived = self._archived(dep_id)
                if archived is None:
                    return "error", f"Dependency error: Job {dep_id} not found"
                status = opcodes.job_status([o["status"] for o in archived["ops"]])
            else:
                status = dep.status
            if status == "canceled" and "canceled" not in allowed:
                return "canceled", f"Dependency job {dep_id} was cancelled"
            if allowed and status not in allowed:
                return "error", (f"Dependency job {dep_id} finished with status '{status}',"
                                 f" not one of '{', '.join(allowed)}' as required")
        return None

    def _schedule(self) -> None:
        if self._stopped or self._held:
            return
        for job_id in list(self._pending):
            if self._running >= self._config.max_running_jobs:
                break
            job = self._jobs[job_id]
            if self._waits(job):
                continue
            self._pending.remove(job_id)
            self._running += 1
            job.phase = "dispatched"
            self._spawn(self._run(job))

    def _spawn(self, coro: Any) -> None:
        d = defer.Deferred.fromCoroutine(coro)
        self._tasks.add(d)

        def done(result: Any) -> None:
            self._tasks.discard(d)
            if isinstance(result, Failure) and not result.check(defer.CancelledError):
                log.failure("simulated job failed unexpectedly", result)

        d.addBoth(done)

    async def _sleep(self, seconds: float) -> None:
        await task.deferLater(self._reactor, max(0.0, seconds), lambda: None)

    async def _run(self, job: Job) -> None:
        try:
            job.livelock = f"{LIVELOCK_DIR}/luxi-daemon_{self._started_at}"
            await self._write(job)
            await self._sleep(self.latency.queue_delay)
            job.livelock = f"{LIVELOCK_DIR}/job_{job.id:06d}_{int(self._now())}"
            await self._write(job)
            job.in_process = True
            job.process_id = self._pid
            # The job process rewrites every op in its own key order.
            for op in job.ops:
                op.input = opcodes.loaded_input(op.input)
            for index, op in enumerate(job.ops):
                ok = await self._run_op(job, index, op)
                last = index == len(job.ops) - 1
                if not ok:
                    for rest in job.ops[index + 1:]:
                        if op.status == "canceled":
                            rest.status = "canceled"
                            rest.result = op.result
                            rest.end_timestamp = op.end_timestamp
                        else:
                            # Ganeti 3.0 leaves every timestamp of these null.
                            rest.status = "error"
                            rest.result = ["OpExecError", ["Preceding opcode failed"]]
                if ok and op.status == "success" and op.input.get("OP_ID") != "OP_OS_DIAGNOSE":
                    self._persist()
                if not ok or last:
                    job.end_timestamp = self._ts()
                    await self._finish(job)
                    break
                await self._write(job)
        finally:
            self._running -= 1
            self._schedule()

    def _take_failure(self, op_id: str) -> OpError | None:
        queue = self._failures.get(op_id)
        if queue:
            return queue.pop(0)
        return None

    async def _run_op(self, job: Job, index: int, op: Op) -> bool:
        """Run one op to its end; False if it failed."""
        op.status = "waiting"
        op.start_timestamp = self._ts()
        if index == 0:
            job.start_timestamp = op.start_timestamp
        op.input = opcodes.loaded_input(op.input)
        await self._write(job)
        verdict = self._dependency_verdict(job, op)
        if verdict is not None:
            # The op never reached its logical unit: its input stays as loaded.
            op.status, message = verdict
            # Ganeti cancels a job whose dependency was cancelled unasked.
            op.result = (["OpExecError", [message]] if op.status == "error"
                         else "Job canceled by request")
            op.end_timestamp = self._ts()
            return False
        injected = self._take_failure(op.input.get("OP_ID", ""))
        try:
            if injected is not None and injected.error_class == "OpPrereqError":
                raise injected
            op_id = op.input.get("OP_ID", "")
            unit = networks.prepare if op_id in opcodes.NETWORK_OPS else instances.prepare
            plan = unit(self._config, op.input, self._now)
        except OpError as e:
            op.input = opcodes.expanded_input(op.input)
            op.status = "error"
            op.result = e.result()
            op.end_timestamp = self._ts()
            return False
        await self._locks.acquire(job.id, plan.locks)
        try:
            expanded = opcodes.expanded_input(op.input)
            expanded.update(plan.fill)
            op.input = expanded
            op.status = "running"
            op.exec_timestamp = self._ts()
            await self._write(job)
            steps = plan.run(op.input)
            while True:
                await self._sleep(self.latency.exec_time)
                if injected is not None:
                    raise injected
                try:
                    message = next(steps)
                except StopIteration as stop:
                    op.result = stop.value
                    break
                # The log serial counts across the job's ops.
                serial = sum(len(o.log) for o in job.ops) + 1
                op.log.append([serial, self._ts(), "message", message])
                await self._write(job)
            op.status = "success"
            return True
        except OpError as e:
            op.status = "error"
            op.result = e.result()
            return False
        finally:
            op.end_timestamp = self._ts()
            self._locks.release(job.id)
