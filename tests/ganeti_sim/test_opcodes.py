"""Opcode forms and job file rendering, without a cluster: the key orders
and shapes real Ganeti writes at each stage, validation messages, the
derived job status and the summary."""

from __future__ import annotations

import json

from twisted.trial import unittest

from snfd.ganeti_sim import opcodes
from snfd.ganeti_sim.jobqueue import Job, Op, rapi_job, timestamp
from snfd.ganeti_sim.opcodes import BodyError


class FillTests(unittest.TestCase):
    def test_shutdown_submitted_form(self) -> None:
        """A RAPI shutdown is submitted with the common parameters first,
        then its own in definition order, defaults included, expansion-only
        ones left out."""
        op = opcodes.fill("OP_INSTANCE_SHUTDOWN",
                          {"instance_name": "vm1", "timeout": 5, "no_remember": False},
                          dry_run=False)
        self.assertEqual(list(op), ["dry_run", "priority", "depends", "comment", "reason",
                                    "OP_ID", "instance_name", "force",
                                    "ignore_offline_nodes", "timeout", "no_remember"])
        self.assertEqual((op["timeout"], op["force"], op["depends"]), (5, False, None))

    def test_modify_has_no_dry_run(self) -> None:
        """Handlers that do not pass dry_run leave it out of the op."""
        op = opcodes.fill("OP_INSTANCE_SET_PARAMS", {"instance_name": "vm1"})
        self.assertNotIn("dry_run", op)
        self.assertEqual(opcodes.expanded_input(op)["dry_run"], None)

    def test_validation_messages(self) -> None:
        """Unknown, missing and mistyped parameters give Ganeti's texts."""
        with self.assertRaises(BodyError) as caught:
            opcodes.fill("OP_INSTANCE_SHUTDOWN", {"instance_name": "x", "bogus": 1})
        self.assertEqual(str(caught.exception), "Invalid body parameters: Object"
                         " OpInstanceShutdown doesn't support the parameter 'bogus'")
        with self.assertRaises(BodyError) as caught:
            opcodes.fill("OP_INSTANCE_CREATE", {"mode": "create"})
        self.assertEqual(str(caught.exception), "Invalid body parameters: (\"Parameter"
                         " 'OP_INSTANCE_CREATE.instance_name' fails validation\","
                         " 'wrong_input')")
        with self.assertRaises(BodyError):
            opcodes.fill("OP_INSTANCE_SHUTDOWN", {"instance_name": "x", "timeout": "abc"})
        with self.assertRaises(BodyError):
            opcodes.fill("OP_INSTANCE_STARTUP", {"instance_name": "x",
                                                 "depends": [[1, ["bogus"]]]})

    def test_reason_without_source(self) -> None:
        """Ops a RAPI handler builds itself (a reinstall's) carry only the
        ``gnt:opcode:...`` reason entry."""
        op = opcodes.fill("OP_INSTANCE_REINSTALL", {"instance_name": "vm1"})
        opcodes.add_reason(op, None, "", 1, 7, 1, 2)
        self.assertEqual(op["reason"], [["gnt:opcode:instance_reinstall", "job=7;index=1", 2]])
        self.assertEqual([k for k in op if k not in ("priority", "depends", "comment",
                                                    "reason", "OP_ID")],
                         ["instance_name", "force_variant"])

    def test_forms(self) -> None:
        """The job process rewrites the op with its own parameters first;
        expanded, every parameter is present and debug_level added; RAPI
        drops nulls except depends and comment."""
        op = opcodes.fill("OP_INSTANCE_REMOVE", {"instance_name": "vm1"}, dry_run=False)
        loaded = opcodes.loaded_input(op)
        self.assertEqual(list(loaded)[:3], ["instance_name", "shutdown_timeout",
                                            "ignore_failures"])
        self.assertEqual(list(loaded)[-1], "OP_ID")
        expanded = opcodes.expanded_input(op)
        self.assertEqual(list(expanded), ["instance_name", "instance_uuid", "shutdown_timeout",
                                          "ignore_failures", "dry_run", "debug_level",
                                          "priority", "depends", "comment", "reason",
                                          "OP_ID"])
        shown = opcodes.rapi_op(expanded)
        self.assertEqual(list(shown)[:7], ["dry_run", "debug_level", "priority", "depends",
                                           "comment", "reason", "OP_ID"])
        self.assertNotIn("instance_uuid", shown)


class StatusTests(unittest.TestCase):
    def test_job_status(self) -> None:
        """The job status follows Ganeti: first failure or cancel wins,
        success only when all succeeded, else the op in progress."""
        cases = [
            (["queued"], "queued"), (["waiting"], "waiting"), (["running"], "running"),
            (["success", "queued"], "queued"), (["success", "running"], "running"),
            (["success", "success"], "success"), (["success", "error", "error"], "error"),
            (["canceled"], "canceled"), (["error", "canceled"], "error"),
        ]
        for statuses, expected in cases:
            self.assertEqual(opcodes.job_status(statuses), expected, statuses)

    def test_summary(self) -> None:
        """Summaries name the instance where Ganeti does."""
        self.assertEqual(opcodes.summary({"OP_ID": "OP_INSTANCE_CREATE",
                                          "instance_name": "vm1"}), "INSTANCE_CREATE(vm1)")
        self.assertEqual(opcodes.summary({"OP_ID": "OP_TAGS_SET", "name": "vm1"}), "TAGS_SET")
        self.assertEqual(opcodes.summary({"OP_ID": "OP_TEST_DELAY", "duration": 3}),
                         "TEST_DELAY(3.0)")

    def test_errors(self) -> None:
        """Op errors render as [class, [message, ecode]] or [class, [message]]."""
        self.assertEqual(opcodes.prereq("x", "wrong_input").result(),
                         ["OpPrereqError", ["x", "wrong_input"]])
        self.assertEqual(opcodes.OpError("TagError", "y").result(), ["TagError", ["y"]])


class RenderTests(unittest.TestCase):
    def job(self) -> Job:
        op = opcodes.fill("OP_INSTANCE_STARTUP", {"instance_name": "vm1"}, dry_run=False)
        opcodes.add_reason(op, "gnt:library:rlib2:instances_name_startup", "", 1, 7, 0, 2)
        return Job(id=7, ops=[Op(input=op)], received_timestamp=timestamp(1700000000.25))

    def test_queue_write(self) -> None:
        """Before its process starts a job is written compactly, top-level
        keys in the queue's order, without livelock or process id, and no
        job-level status."""
        text = self.job().render()
        self.assertNotIn(" ", text.replace("gnt:library", ""))
        doc = json.loads(text)
        self.assertEqual(list(doc), ["id", "ops", "received_timestamp", "start_timestamp",
                                     "end_timestamp"])
        self.assertEqual(list(doc["ops"][0]), ["input", "status", "result", "log", "priority",
                                               "start_timestamp", "exec_timestamp",
                                               "end_timestamp"])
        self.assertEqual(doc["received_timestamp"], [1700000000, 250000])
        self.assertEqual(doc["ops"][0]["input"]["reason"][1],
                         ["gnt:opcode:instance_startup", "job=7;index=0", 2])

    def test_process_write(self) -> None:
        """Once its process owns it, a job is written with spaces and a
        final newline, keys in the job process's order."""
        job = self.job()
        job.in_process = True
        job.livelock = "/var/run/ganeti/livelocks/job_000007_1"
        job.process_id = 42
        text = job.render()
        self.assertTrue(text.startswith('{"id": 7, "ops": [{"input": '))
        self.assertTrue(text.endswith("}\n"))
        doc = json.loads(text)
        self.assertEqual(list(doc), ["id", "ops", "start_timestamp", "end_timestamp",
                                     "received_timestamp", "livelock", "process_id"])

    def test_rapi_view(self) -> None:
        """The RAPI view of a job file derives status and summary."""
        doc = json.loads(self.job().render())
        view = rapi_job(doc, 7)
        self.assertEqual((view["status"], view["summary"], view["opstatus"]),
                         ("queued", ["INSTANCE_STARTUP(vm1)"], ["queued"]))
        self.assertEqual(list(view), ["id", "ops", "status", "summary", "opstatus",
                                      "received_ts", "start_ts", "end_ts", "oplog",
                                      "opresult"])
        self.assertNotIn("oplog", rapi_job(doc, 7, bulk=True))
