"""The simulator's job queue on disk, as an inotify watcher sees it: only
atomic renames onto ``job-<id>``, every version complete JSON without a
job-level status, temporary names like real Ganeti's, several versions per
job, and the ``serial`` and ``version`` files."""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet import inotify
from twisted.python.filepath import FilePath
from twisted.trial import unittest

from tests.ganeti_sim.support import call, client, create_body, reactor, run, started

JOB = re.compile(r"^job-\d+$")
TMP = re.compile(r"^job-(\d+)-\d+-\d+\.tmp$")
NEW = re.compile(r"^job-(\d+)[a-z0-9_]{8}\.new$")


class Watcher:
    """Records every event in a directory and the content of each job file
    at the moment it was moved into place."""

    def __init__(self, testcase: Any, directory: str):
        self.events: list[tuple[str, str]] = []
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.moves: dict[str, int] = {}
        self.bad: list[str] = []
        notifier = inotify.INotify(reactor())
        notifier.startReading()
        testcase.addCleanup(notifier.loseConnection)
        mask = (inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE | inotify.IN_CREATE
                | inotify.IN_MOVED_FROM)
        notifier.watch(FilePath(directory), mask=mask, callbacks=[self._event])

    def _event(self, _: Any, path: FilePath, mask: int) -> None:
        name = path.basename()
        if isinstance(name, bytes):
            name = name.decode()
        kinds = inotify.humanReadableMask(mask)
        for kind in kinds:
            self.events.append((kind, name))
        if not JOB.match(name):
            return
        if "close_write" in kinds:
            self.bad.append(f"{name} written in place")
        if "moved_to" in kinds:
            self.moves[name] = self.moves.get(name, 0) + 1
            try:
                self.versions.setdefault(name, []).append(json.loads(path.getContent()))
            except FileNotFoundError:
                pass
            except ValueError as e:
                self.bad.append(f"{name}: incomplete JSON ({e})")


class JobFileTests(unittest.TestCase):
    async def test_atomic_complete_versions(self) -> None:
        """Through a create, shutdown, startup, a failure and a delete,
        every IN_MOVED_TO on job-<id> holds complete JSON, no job file is
        ever written in place, and temporary files use Ganeti's names."""
        cluster = await started(self)
        watcher = Watcher(self, str(cluster.queue_dir))
        rapi = client(self, cluster)
        create = await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        shutdown = await run(rapi, "PUT", "/2/instances/snf-1/shutdown")
        await run(rapi, "PUT", "/2/instances/snf-1/startup")
        failed = await run(rapi, "PUT", "/2/instances/nosuch/startup")
        await run(rapi, "DELETE", "/2/instances/snf-1")
        await cluster.flush()

        self.assertEqual(watcher.bad, [])
        for name in {n for _, n in watcher.events}:
            self.assertTrue(JOB.match(name) or TMP.match(name) or NEW.match(name)
                            or re.match(r"^serial(-\d+-\d+\.tmp)?$", name), name)
        for kind, name in watcher.events:
            if kind == "moved_to":
                self.assertTrue(JOB.match(name) or name == "serial", name)

        create_versions = watcher.versions[f"job-{create['id']}"]
        shutdown_versions = watcher.versions[f"job-{shutdown['id']}"]
        # Queued three times, waiting, running, one per log message, final.
        self.assertEqual(watcher.moves[f"job-{create['id']}"], 6 + len(create["oplog"][0]))
        self.assertGreaterEqual(watcher.moves[f"job-{create['id']}"], 9)
        self.assertEqual(watcher.moves[f"job-{shutdown['id']}"], 6)
        self.assertEqual(watcher.moves[f"job-{failed['id']}"], 5)

        for doc in create_versions + shutdown_versions:
            self.assertNotIn("status", doc)
            self.assertLessEqual({"id", "ops", "received_timestamp", "start_timestamp",
                                  "end_timestamp"}, set(doc))
            for op in doc["ops"]:
                self.assertEqual(set(op), {"input", "status", "result", "log",
                                           "start_timestamp", "exec_timestamp",
                                           "end_timestamp", "priority"})
                self.assertIn("OP_ID", op["input"])
                self.assertIn("reason", op["input"])
        # The content is read when the event is handled, possibly after a
        # later replacement: statuses only ever move forward.
        order = ["queued", "waiting", "running", "success"]
        statuses = [order.index(doc["ops"][0]["status"]) for doc in create_versions]
        self.assertEqual(statuses, sorted(statuses))
        self.assertEqual(statuses[-1], order.index("success"))
        logs = [len(doc["ops"][0]["log"]) for doc in create_versions]
        self.assertEqual(logs, sorted(logs))
        self.assertIn("process_id", create_versions[-1])
        final = create_versions[-1]["ops"][0]
        self.assertIsNotNone(final["exec_timestamp"])
        self.assertEqual(final["result"], ["node1.sim.ganeti.test"])

        failed_final = watcher.versions[f"job-{failed['id']}"][-1]["ops"][0]
        self.assertEqual(failed_final["status"], "error")
        self.assertIsNone(failed_final["exec_timestamp"])

    async def test_serial_and_version(self) -> None:
        """``serial`` holds the last job id after each submission and
        ``version`` is 1."""
        cluster = await started(self)
        rapi = client(self, cluster)
        job = await run(rapi, "PUT", "/2/instances/x/startup")
        await cluster.flush()
        self.assertEqual((cluster.queue_dir / "serial").read_text(), f"{job['id']}\n")
        self.assertEqual((cluster.queue_dir / "version").read_text(), "1\n")

    async def test_file_matches_rapi(self) -> None:
        """The final job file and GET /2/jobs/<id> agree: RAPI shows the
        op statuses, results, logs and timestamps the file holds."""
        cluster = await started(self)
        rapi = client(self, cluster)
        job = await run(rapi, "POST", "/2/instances", create_body("snf-2"))
        doc = json.loads((cluster.queue_dir / f"job-{job['id']}").read_text())
        self.assertEqual(job["opstatus"], [op["status"] for op in doc["ops"]])
        self.assertEqual(job["opresult"], [op["result"] for op in doc["ops"]])
        self.assertEqual(job["oplog"], [op["log"] for op in doc["ops"]])
        self.assertEqual((job["received_ts"], job["start_ts"], job["end_ts"]),
                         (doc["received_timestamp"], doc["start_timestamp"],
                          doc["end_timestamp"]))

    async def test_rapi_never_ahead_of_file(self) -> None:
        """Whenever RAPI reports a job status, the job file already holds it."""
        cluster = await started(self)
        rapi = client(self, cluster)
        status, job_id = await call(rapi, "POST", "/2/instances", create_body("snf-3"))
        seen = set()
        while True:
            status, job = await call(rapi, "GET", f"/2/jobs/{job_id}")
            doc = json.loads((cluster.queue_dir / f"job-{job_id}").read_text())
            file_statuses = [op["status"] for op in doc["ops"]]
            order = ["queued", "waiting", "running", "success"]
            self.assertGreaterEqual(order.index(file_statuses[0]),
                                    order.index(job["opstatus"][0]))
            seen.add(job["status"])
            if job["status"] == "success":
                break
        self.assertIn("success", seen)


class ArchiveTests(unittest.TestCase):
    async def test_archive(self) -> None:
        """Archiving moves finished job files to archive/<id // 10000>/; the
        job leaves the listing but stays readable and job ids go on."""
        cluster = await started(self)
        watcher = Watcher(self, str(cluster.queue_dir))
        rapi = client(self, cluster)
        job = await run(rapi, "PUT", "/2/instances/x/startup")
        self.assertEqual(await cluster.archive_jobs(), 2)
        await cluster.flush()
        self.assertFalse((cluster.queue_dir / f"job-{job['id']}").exists())
        self.assertTrue((cluster.queue_dir / "archive" / "0" / f"job-{job['id']}").exists())
        self.assertIn(("moved_from", f"job-{job['id']}"), watcher.events)
        self.assertEqual(await call(rapi, "GET", "/2/jobs"), (200, []))
        self.assertEqual(await call(rapi, "GET", f"/2/jobs/{job['id']}"), (200, job))
        self.assertEqual(await call(rapi, "DELETE", f"/2/jobs/{job['id']}"),
                         (200, [False, f"Job {job['id']} not found in queue"]))
        follow = await run(rapi, "PUT", "/2/instances/x/startup")
        self.assertEqual(follow["id"], job["id"] + 1)
