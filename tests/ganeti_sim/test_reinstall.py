"""Reinstalls on the simulator, driven through RAPI as Ganeti 3.0.2 answers
them (``tests.ganeti.contract`` lists what was measured): one job of
shutdown, reinstall and startup; OS parameters replaced; the refusals; the
events a watcher builds from every write of the job file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from snfd.ganeti.jobs import job_events
from snfd.ganeti_sim import jobqueue
from tests.ganeti_sim.support import call, client, create_body, run, started, wait_job

OSPARAMS = {"img_id": "pithos://u/images/x", "img_format": "diskdump",
            "config_url": "https://example.test/vmapi/server-params/abc"}
OPS = ["OP_INSTANCE_SHUTDOWN", "OP_INSTANCE_REINSTALL", "OP_INSTANCE_STARTUP"]


async def instance(rapi: Any, name: str) -> dict[str, Any]:
    status, body = await call(rapi, "GET", f"/2/instances/{name}")
    assert status == 200, (status, body)
    return body


def texts(job: dict[str, Any]) -> list[list[Any]]:
    """Each op's log as [serial, text] pairs."""
    return [[[entry[0], entry[3]] for entry in log] for log in job["oplog"]]


def job_file(cluster: Any, job_id: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(cluster.queue_dir) / f"job-{job_id}").read_text())
    return data


class ReinstallJobTests(unittest.TestCase):
    async def test_running_instance(self) -> None:
        """A reinstall of a running instance is one job of three ops (no
        dry_run, reasons only ``gnt:opcode:...``); the reinstall op logs
        the OS change and the create script run with serials counted over
        the job; the instance runs again with exactly the osparams given
        and the new OS."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        job = await run(rapi, "POST", "/2/instances/snf-1/reinstall",
                        {"os": "noop+default", "osparams": {"img_id": "new"}})
        self.assertEqual((job["status"], job["opstatus"], job["opresult"]),
                         ("success", ["success"] * 3, [None, None, None]))
        self.assertEqual([op["OP_ID"] for op in job["ops"]], OPS)
        self.assertEqual(job["summary"], [f"{op[3:]}(snf-1)" for op in OPS])
        self.assertEqual(texts(job), [[], [[1, "Changing OS scripts to 'noop+default'..."],
                                           [2, " - INFO: Running instance OS create"
                                               " scripts..."]], []])
        for index, op in enumerate(job["ops"]):
            self.assertNotIn("dry_run", op)
            self.assertEqual([r[:2] for r in op["reason"]],
                             [[f"gnt:opcode:{OPS[index][3:].lower()}",
                               f"job={job['id']};index={index}"]])
        self.assertEqual(job["ops"][2]["force"], False)
        inst = await instance(rapi, "snf-1")
        self.assertEqual((inst["status"], inst["os"]), ("running", "noop+default"))
        self.assertEqual(cluster.instances["snf-1"].osparams, {"img_id": "new"})

    async def test_stopped_instance_without_start(self) -> None:
        """``start: false`` leaves out the startup op; the shutdown of an
        already stopped instance succeeds; without osparams the instance
        keeps none (the op's input shows ``{}``) and its OS is unchanged."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-1", osparams=OSPARAMS))
        await run(rapi, "PUT", "/2/instances/snf-1/shutdown")
        job = await run(rapi, "POST", "/2/instances/snf-1/reinstall", {"start": False})
        self.assertEqual((job["status"], job["summary"]),
                         ("success", ["INSTANCE_SHUTDOWN(snf-1)", "INSTANCE_REINSTALL(snf-1)"]))
        self.assertEqual(texts(job), [[], [[1, " - INFO: Running instance OS create"
                                               " scripts..."]]])
        self.assertEqual(job["ops"][1]["osparams"], {})
        inst = await instance(rapi, "snf-1")
        self.assertEqual((inst["status"], inst["os"]), ("ADMIN_down", "snf-image+default"))
        self.assertEqual(cluster.instances["snf-1"].osparams, {})

    async def test_events_from_every_write(self) -> None:
        """The events built from each version of the job file, duplicates
        dropped, are Ganeti 3.0.2's sequence: every op queued, then each op
        waiting, running (and again per log message), final."""
        written: list[tuple[str, str]] = []
        replace = jobqueue._replace

        def recording(path: Path, text: str, temp_name: str | None) -> None:
            replace(path, text, temp_name)
            written.append((path.name, text))

        self.patch(jobqueue, "_replace", recording)
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        job = await run(rapi, "POST", "/2/instances/snf-1/reinstall", {"os": "noop+default"})
        await cluster.flush()
        seen: set[Any] = set()
        sequence = []
        for name, text in written:
            if name != f"job-{job['id']}":
                continue
            for event in job_events(json.loads(text), cluster.name):
                if event.key not in seen:
                    seen.add(event.key)
                    sequence.append((event.key[2], event.message["operation"][12:],
                                     event.message["status"], event.message["logmsg"]))
        create_script = " - INFO: Running instance OS create scripts..."
        self.assertEqual(sequence, [
            (0, "SHUTDOWN", "queued", None), (1, "REINSTALL", "queued", None),
            (2, "STARTUP", "queued", None),
            (0, "SHUTDOWN", "waiting", None), (0, "SHUTDOWN", "running", None),
            (0, "SHUTDOWN", "success", None),
            (1, "REINSTALL", "waiting", None), (1, "REINSTALL", "running", None),
            (1, "REINSTALL", "running", "Changing OS scripts to 'noop+default'..."),
            (1, "REINSTALL", "running", create_script),
            (1, "REINSTALL", "success", create_script),
            (2, "STARTUP", "waiting", None), (2, "STARTUP", "running", None),
            (2, "STARTUP", "success", None)])


class ReinstallRefusalTests(unittest.TestCase):
    async def test_diskless_instance(self) -> None:
        """A diskless instance is stopped by the shutdown op, then the
        reinstall fails "has no disks" (wrong_input) while running and the
        startup ends "Preceding opcode failed" with null timestamps and
        its input never expanded."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body(
            "snf-1", disk_template="diskless", disks=[]))
        job = await run(rapi, "POST", "/2/instances/snf-1/reinstall", {"os": "noop+default"})
        self.assertEqual(job["opstatus"], ["success", "error", "error"])
        self.assertEqual(job["opresult"][1:], [
            ["OpPrereqError", ["Instance 'snf-1' has no disks", "wrong_input"]],
            ["OpExecError", ["Preceding opcode failed"]]])
        ops = job_file(cluster, job["id"])["ops"]
        self.assertIsNotNone(ops[1]["exec_timestamp"])
        self.assertEqual([ops[2][k] for k in ("start_timestamp", "exec_timestamp",
                                              "end_timestamp")], [None, None, None])
        self.assertNotIn("debug_level", ops[2]["input"])
        self.assertEqual(next(iter(ops[2]["input"])), "instance_name")
        self.assertIsNone(ops[1]["input"]["osparams"])
        self.assertEqual((await instance(rapi, "snf-1"))["status"], "ADMIN_down")

    async def test_unknown_instance_and_os(self) -> None:
        """An unknown instance fails the shutdown op while waiting and the
        others after it; an unknown OS fails the reinstall op with Ganeti's
        OpExecError and leaves the instance stopped."""
        cluster = await started(self)
        rapi = client(self, cluster)
        job = await run(rapi, "POST", "/2/instances/nosuch/reinstall", {})
        self.assertEqual(job["opresult"], [
            ["OpPrereqError", ["Instance 'nosuch' not known", "unknown_entity"]],
            ["OpExecError", ["Preceding opcode failed"]],
            ["OpExecError", ["Preceding opcode failed"]]])
        self.assertIsNone(job_file(cluster, job["id"])["ops"][0]["exec_timestamp"])
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        job = await run(rapi, "POST", "/2/instances/snf-1/reinstall", {"os": "bogus+default"})
        self.assertEqual(job["opresult"][1], [
            "OpExecError", ["OS Parameters validation failed on node node1.sim.ganeti.test:"
                            " Directory for OS bogus not found in search path"]])
        self.assertEqual((await instance(rapi, "snf-1"))["status"], "ADMIN_down")

    async def test_reinstall_op_needs_a_stopped_instance(self) -> None:
        """An administrator's reinstall op alone (not through RAPI) refuses
        an instance marked up: wrong_state."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        job = await cluster.wait_job(cluster.admin("OP_INSTANCE_REINSTALL", "snf-1"))
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Instance 'snf-1' is marked to be up, cannot reinstall", "wrong_state"]]])
        self.assertEqual(job["ops"][0]["reason"][0][:2], ["gnt:client:gnt-instance",
                                                          "reinstall"])

    async def test_request_errors(self) -> None:
        """A body that is not an object, a non-boolean start, or a body
        with query arguments is a 400; a non-string os or non-object
        osparams is the queue daemon's 502; nothing is submitted."""
        cluster = await started(self)
        rapi = client(self, cluster)
        path = "/2/instances/snf-1/reinstall"
        cases = [
            (path, [1], 400, "Invalid body contents, not a dictionary"),
            (path, {"start": "yes"},
             400, "&#x27;start&#x27; parameter: Type is &#x27;str&#x27;, but &#x27;bool&#x27;"
                  " is expected"),
            (path + "?nostartup=1", {"start": False},
             400, "Can&#x27;t combine query and body parameters"),
            (path, {"os": 5}, 502, "Failed to parse request: SubmitJob: Can&#x27;t parse value"
                                   " for &#x27;os_type&#x27;: Unable to read String"),
            (path, {"osparams": "x"}, 502, "Failed to parse request: SubmitJob: Can&#x27;t"
                                           " parse value for &#x27;osparams&#x27;: Unable to"
                                           " read JSObject"),
        ]
        for target, body, code, message in cases:
            status, answer = await call(rapi, "POST", target, body)
            self.assertEqual((status, answer["code"], answer["message"]),
                             (code, code, message), target)
        self.assertEqual(await call(rapi, "GET", "/2/jobs"), (200, [{"id": 1,
                                                                      "uri": "/2/jobs/1"}]))

    async def test_legacy_query(self) -> None:
        """Without a body the legacy query form is read: ``nostartup=1``
        leaves out the startup op, ``os`` names the OS; ``dry-run=1`` is
        not a dry run but a reinstall without an OS change."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        status, job_id = await call(
            rapi, "POST", "/2/instances/snf-1/reinstall?os=noop%2Bdefault&nostartup=1")
        job = await wait_job(rapi, job_id)
        self.assertEqual((status, job["summary"]), (200, ["INSTANCE_SHUTDOWN(snf-1)",
                                                          "INSTANCE_REINSTALL(snf-1)"]))
        self.assertEqual(job["ops"][1]["os_type"], "noop+default")
        status, job_id = await call(rapi, "POST", "/2/instances/snf-1/reinstall?dry-run=1")
        job = await wait_job(rapi, job_id)
        self.assertEqual((job["status"], len(job["ops"])), ("success", 3))
        self.assertEqual(texts(job)[1], [[1, " - INFO: Running instance OS create"
                                             " scripts..."]])
        self.assertEqual((await instance(rapi, "snf-1"))["status"], "running")
