"""Ganeti job events (``snfd.ganeti``): the messages built from job
files and RAPI job answers, the publisher on the in-process bus and on
RabbitMQ, the job queue watcher on a real directory with inotify, the RAPI
poller against an in-test RAPI, and the ``ganeti-events`` plugin.

The job fixtures follow what a real Ganeti 3.0 queue holds
(reference/ganeti.md Part B section 7): one file per job, ops with their
input, status, result, ``[serial, [sec, usec], type, text]`` log entries and
start/exec/end timestamps, no job-level status, atomic replaces through
``job-<id>-*.tmp`` and ``job-<id>*.new`` files.
"""

from __future__ import annotations

import copy
import json
import os
import types
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.bus import BusUnavailable, make_bus
from snfd.bus.local import LocalBus
from snfd.config import Section
from snfd.ganeti.jobs import BadJob, attach_instance_info, job_messages, parse_job_file
from snfd.ganeti.poller import RapiJobPoller
from snfd.ganeti.publisher import EventPublisher
from snfd.ganeti.rapi import GanetiRapi, RapiTarget
from snfd.ganeti.service import cluster_name
from snfd.ganeti.watcher import JobQueueWatcher
from snfd.interfaces import ILeaderDuty, ISnfdPlugin
from snfd.metrics import Metrics
from snfd.plugins.ganeti_events import plugin
from snfd.testing.node import free_port
from tests.bus.test_contract import (
    DEFAULT_AMQP_URL,
    BusTestMixin,
    amqp_skip_reason,
    delete_names,
)
from tests.ganeti.test_rapi import FakeRapi, http_pool, serve_rapi

T0 = 1_700_000_000
FINAL = ("success", "error", "canceled")


def ts(ms: int) -> list[int]:
    """The Ganeti timestamp ``ms`` milliseconds after T0."""
    return [T0 + ms // 1000, (ms % 1000) * 1000]


RECEIVED, STARTED, EXECUTED, ENDED = ts(0), ts(150), ts(420), ts(1310)

CREATE_INPUT = {
    "OP_ID": "OP_INSTANCE_CREATE", "instance_name": "snf-42", "mode": "create",
    "disk_template": "file", "os_type": "noop+default", "start": True,
    "disks": [{"name": "snf-vol-7", "size": 1024}],
    "nics": [{"name": "snf-nic-3", "network": "snf-net-1", "ip": "pool"}],
    "beparams": {"vcpus": 1, "memory": 512, "auto_balance": True},
    "hvparams": {"boot_order": "disk"},
    "osparams": {"config_url": "https://vmapi/server-params/ab12", "img_id": "pithos:x",
                 "img_format": "diskdump"},
    "ip_check": False, "name_check": False, "tags": ["synnefo:user:u1"],
    "reason": [["gnt:client:rapi", "", 1_700_000_000_000_000_000]],
    "depends": None, "priority": 0, "dry_run": False, "debug_level": 0,
}


def op_file(op_input: dict[str, Any], status: str, log: int = 0,
            result: Any = None) -> dict[str, Any]:
    """One op of a job file at ``status``, with ``log`` log entries."""
    started = status not in ("queued", "canceled")
    return {
        "input": copy.deepcopy(op_input), "status": status, "result": result,
        "log": [[i + 1, ts(450 + 100 * i), "message", f"* step {i + 1}"] for i in range(log)],
        "start_timestamp": STARTED if started else None,
        "exec_timestamp": EXECUTED if status in ("running", "success", "error") else None,
        "end_timestamp": ENDED if status in ("success", "error") else None,
        "priority": 0,
    }


def job_file(job_id: int, *ops: dict[str, Any]) -> dict[str, Any]:
    """A job file holding ``ops``."""
    return {
        "id": job_id, "ops": list(ops), "received_timestamp": RECEIVED,
        "start_timestamp": STARTED if any(op["start_timestamp"] for op in ops) else None,
        "end_timestamp": ENDED if all(op["status"] in FINAL for op in ops) else None,
        "livelock": f"/var/lib/ganeti/livelocks/job_{job_id}_1", "process_id": 4242,
    }


def create_job(status: str, job_id: int = 22, log: int = 0, result: Any = None,
               name: str = "snf-42") -> dict[str, Any]:
    return job_file(job_id, op_file({**CREATE_INPUT, "instance_name": name}, status,
                                    log=log, result=result))


def simple_job(op_id: str, status: str, job_id: int, name: str = "snf-42",
               **extra: Any) -> dict[str, Any]:
    op_input = {"OP_ID": op_id, "instance_name": name, "priority": 0, "dry_run": False,
                **extra}
    return job_file(job_id, op_file(op_input, status))


# The steps a create job file goes through (reference: 9 replacements).
CREATE_STAGES = [
    ("queued", 0), ("waiting", 0), ("running", 0), ("running", 2), ("running", 4),
    ("success", 4),
]


class JobMessagesTests(unittest.TestCase):
    def test_create_job_stages(self) -> None:
        """Each stage of a create job gives one ganeti-op-status message on
        ganeti.snf.event.op carrying the op's status, the job id, the last
        log text, the op's job_fields and tags, and the cluster."""
        for status, log in CREATE_STAGES:
            result = ["node1.ganeti.test"] if status == "success" else None
            [(key, message)] = job_messages(create_job(status, log=log, result=result), "c1")
            self.assertEqual(key, "ganeti.snf.event.op")
            self.assertEqual(message["type"], "ganeti-op-status")
            self.assertEqual(message["instance"], "snf-42")
            self.assertEqual(message["operation"], "OP_INSTANCE_CREATE")
            self.assertEqual(message["status"], status)
            self.assertEqual(message["jobId"], 22)
            self.assertEqual(message["cluster"], "c1")
            self.assertEqual(message["logmsg"], f"* step {log}" if log else None)
            self.assertEqual(message["result"], result)
            self.assertEqual(message["tags"], ["synnefo:user:u1"])
            self.assertEqual(message["job_fields"], {
                "nics": CREATE_INPUT["nics"], "disks": CREATE_INPUT["disks"],
                "hvparams": CREATE_INPUT["hvparams"], "beparams": CREATE_INPUT["beparams"]})
            json.dumps(message)

    def test_event_time_per_status(self) -> None:
        """event_time is the job's received time when queued, the op's start
        when waiting or canceling, its exec time when running, its end time
        when final."""
        expected = {"queued": RECEIVED, "waiting": STARTED, "running": EXECUTED,
                    "success": ENDED, "error": ENDED}
        for status, when in expected.items():
            [(_, message)] = job_messages(create_job(status), "c1")
            self.assertEqual(message["event_time"], when, status)
        job = create_job("waiting")
        job["ops"][0]["status"] = "canceling"
        [(_, message)] = job_messages(job, "c1")
        self.assertEqual(message["event_time"], STARTED)

    def test_event_time_falls_back(self) -> None:
        """A final op without an end time is dated by its exec time, and one
        cancelled while queued (no op times at all) by the job's received
        time."""
        job = create_job("success")
        job["ops"][0]["end_timestamp"] = None
        [(_, message)] = job_messages(job, "c1")
        self.assertEqual(message["event_time"], EXECUTED)
        [(_, message)] = job_messages(
            create_job("canceled", result="Job canceled by request"), "c1")
        self.assertEqual(message["status"], "canceled")
        self.assertEqual(message["event_time"], RECEIVED)
        self.assertEqual(message["result"], "Job canceled by request")

    def test_create_failure(self) -> None:
        """A failed create carries Ganeti's [class, [message, ecode]] result
        and, in job_fields, the whole request besides the four fields."""
        result = ["OpPrereqError", ["The given name (snf-42) is already in use",
                                    "already_exists"]]
        [(_, message)] = job_messages(create_job("error", log=1, result=result), "c1")
        self.assertEqual(message["status"], "error")
        self.assertEqual(message["result"], result)
        self.assertEqual(message["job_fields"]["nics"], CREATE_INPUT["nics"])
        self.assertEqual(message["job_fields"]["os_type"], "noop+default")
        self.assertEqual(message["job_fields"]["osparams"], CREATE_INPUT["osparams"])

    def test_job_fields_only_for_create_and_set_params(self) -> None:
        """SET_PARAMS carries nics/disks/hvparams/beparams from its input;
        other instance ops carry empty job_fields."""
        [(_, message)] = job_messages(simple_job(
            "OP_INSTANCE_SET_PARAMS", "success", 30, beparams={"vcpus": 2},
            nics=[["add", {"network": "snf-net-2"}]]), "c1")
        self.assertEqual(message["job_fields"], {
            "nics": [["add", {"network": "snf-net-2"}]], "disks": None, "hvparams": None,
            "beparams": {"vcpus": 2}})
        [(_, message)] = job_messages(simple_job("OP_INSTANCE_SHUTDOWN", "success", 31),
                                      "c1")
        self.assertEqual(message["job_fields"], {})
        self.assertEqual(message["tags"], [])

    def test_prefix_is_name_before_first_dash(self) -> None:
        """The routing key's prefix is the instance name up to its first
        dash, or the whole name without one."""
        for name, key in [("snf-42", "ganeti.snf.event.op"),
                          ("acme-vm-7", "ganeti.acme.event.op"),
                          ("vm1", "ganeti.vm1.event.op")]:
            [(routing_key, _)] = job_messages(create_job("queued", name=name), "c1")
            self.assertEqual(routing_key, key)

    def test_instance_tag_ops(self) -> None:
        """Tag ops on an instance are ganeti-op-status messages with their
        tags; tag ops on other kinds give nothing."""
        job = job_file(40, op_file({"OP_ID": "OP_TAGS_SET", "kind": "instance",
                                    "name": "snf-42", "tags": ["a", "b"], "dry_run": False},
                                   "success"))
        [(key, message)] = job_messages(job, "c1")
        self.assertEqual(key, "ganeti.snf.event.op")
        self.assertEqual((message["instance"], message["operation"], message["tags"]),
                         ("snf-42", "OP_TAGS_SET", ["a", "b"]))
        job = job_file(41, op_file({"OP_ID": "OP_TAGS_DEL", "kind": "node",
                                    "name": "node1", "tags": ["a"]}, "success"))
        self.assertEqual(job_messages(job, "c1"), [])

    def test_heartbeat(self) -> None:
        """A dry-run cluster OP_TAGS_SET with a snf:eventd:heartbeat tag is an
        eventd-heartbeat on eventd.heartbeat."""
        job = job_file(50, op_file({"OP_ID": "OP_TAGS_SET", "kind": "cluster", "name": None,
                                    "tags": ["snf:eventd:heartbeat:ab12"], "dry_run": True},
                                   "success"))
        self.assertEqual(job_messages(job, "c1"),
                         [("eventd.heartbeat", {"type": "eventd-heartbeat", "cluster": "c1"})])

    def test_network_op(self) -> None:
        """Network ops give ganeti-network-status on
        ganeti.<prefix>.event.network with the subnet, gateway, reserved IPs
        and group of the op's input."""
        job = job_file(60, op_file({
            "OP_ID": "OP_NETWORK_ADD", "network_name": "snf-net-7", "network": "10.0.0.0/24",
            "gateway": "10.0.0.1", "add_reserved_ips": ["10.0.0.5"], "conflicts_check": False,
            "tags": []}, "success"))
        [(key, message)] = job_messages(job, "c1")
        self.assertEqual(key, "ganeti.snf.event.network")
        self.assertEqual(message["type"], "ganeti-network-status")
        self.assertEqual(message["network"], "snf-net-7")
        self.assertEqual(message["operation"], "OP_NETWORK_ADD")
        self.assertEqual(message["event_time"], ENDED)
        self.assertEqual(message["job_fields"], {
            "subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "add_reserved_ips": ["10.0.0.5"],
            "remove_reserved_ips": None, "group_name": None})
        job = job_file(61, op_file({"OP_ID": "OP_NETWORK_CONNECT", "network_name": "snf-net-7",
                                    "group_name": "default", "network_mode": "bridged",
                                    "network_link": "gntbr0"}, "running"))
        [(_, message)] = job_messages(job, "c1")
        self.assertEqual(message["job_fields"]["group_name"], "default")

    def test_cluster_op(self) -> None:
        """OP_CLUSTER_SET_PARAMS is a ganeti-cluster-status on
        ganeti.event.cluster; other cluster and node ops give nothing."""
        job = job_file(70, op_file({"OP_ID": "OP_CLUSTER_SET_PARAMS"}, "success"),
                       op_file({"OP_ID": "OP_NODE_SET_PARAMS", "node_name": "n1"}, "success"),
                       op_file({"OP_ID": "OP_INSTANCE_QUERY_DATA", "instances": ["snf-1"]},
                               "success"))
        [(key, message)] = job_messages(job, "c1")
        self.assertEqual(key, "ganeti.event.cluster")
        self.assertEqual((message["type"], message["status"], message["jobId"]),
                         ("ganeti-cluster-status", "success", 70))

    def test_multi_op_job(self) -> None:
        """Each relevant op of a job gives its own message, in op order."""
        job = job_file(80, op_file({"OP_ID": "OP_INSTANCE_SHUTDOWN", "instance_name": "snf-1"},
                                   "success"),
                       op_file({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "snf-1"},
                               "running"))
        messages = [m for _, m in job_messages(job, "c1")]
        self.assertEqual([(m["operation"], m["status"]) for m in messages],
                         [("OP_INSTANCE_SHUTDOWN", "success"), ("OP_INSTANCE_STARTUP", "running")])

    def test_rapi_bulk_format(self) -> None:
        """A job from GET /2/jobs?bulk=1 (inputs in ops, opstatus, job-level
        timestamps, no log or result) gives the same message shape, dated by
        the job's times."""
        job = {"id": 22, "status": "running", "ops": [copy.deepcopy(CREATE_INPUT)],
               "opstatus": ["running"], "received_ts": RECEIVED, "start_ts": STARTED,
               "end_ts": None, "summary": ["INSTANCE_CREATE(snf-42)"]}
        [(key, message)] = job_messages(job, "c1")
        self.assertEqual(key, "ganeti.snf.event.op")
        self.assertEqual((message["status"], message["logmsg"], message["result"]),
                         ("running", None, None))
        self.assertEqual(message["event_time"], STARTED)
        self.assertEqual(message["job_fields"]["beparams"], CREATE_INPUT["beparams"])
        job = {**job, "status": "queued", "opstatus": ["queued"], "start_ts": None}
        [(_, message)] = job_messages(job, "c1")
        self.assertEqual(message["event_time"], RECEIVED)

    def test_rapi_single_job_format(self) -> None:
        """A job from GET /2/jobs/<id> gives op results, the last oplog text
        and the job's end time for a final op."""
        job = {"id": 23, "status": "error", "ops": [copy.deepcopy(CREATE_INPUT)],
               "opstatus": ["error"],
               "opresult": [["OpExecError", ["Could not add os", "environment_error"]]],
               "oplog": [[[1, ts(500), "message", "* creating"],
                          [2, ts(900), "message", "* failed"]]],
               "received_ts": RECEIVED, "start_ts": STARTED, "end_ts": ENDED}
        [(_, message)] = job_messages(job, "c1")
        self.assertEqual(message["status"], "error")
        self.assertEqual(message["logmsg"], "* failed")
        self.assertEqual(message["result"][1][1], "environment_error")
        self.assertEqual(message["event_time"], ENDED)

    def test_rapi_ops_of_one_job_end_in_order(self) -> None:
        """RAPI has only the job's end time: the final ops of a multi-op job
        (a reinstall's shutdown, reinstall, startup) are dated a microsecond
        apart, in op order, so that the update path (which ignores events
        not newer than the last applied) takes each one."""
        ops = [{"OP_ID": op, "instance_name": "snf-1"}
               for op in ("OP_INSTANCE_SHUTDOWN", "OP_INSTANCE_REINSTALL",
                          "OP_INSTANCE_STARTUP")]
        job = {"id": 24, "status": "success", "ops": ops, "opstatus": ["success"] * 3,
               "received_ts": RECEIVED, "start_ts": STARTED, "end_ts": [1700000000, 999999]}
        times = [m["event_time"] for _, m in job_messages(job, "c1")]
        self.assertEqual(times, [[1700000000, 999999], [1700000001, 0], [1700000001, 1]])

    def test_malformed_jobs(self) -> None:
        """A document without a job id or ops list raises BadJob; ops that
        are not usable (no OP_ID, unknown status, wrong types) are skipped
        and the rest still give messages; odd log entries give no logmsg."""
        for bad in [[], "job", {"ops": []}, {"id": "x", "ops": []}, {"id": 1, "ops": {}}]:
            self.assertRaises(BadJob, job_messages, bad, "c1")
        good = op_file(CREATE_INPUT, "running")
        good["log"] = [["odd"], 7]
        job = job_file(90, op_file({"no": "opid"}, "success"), good)
        job["ops"] += [op_file(CREATE_INPUT, "exploded"), "not an op",
                       {**good, "input": ["list"]}]
        job["received_timestamp"] = "yesterday"
        [(_, message)] = job_messages(job, "c1")
        self.assertEqual((message["status"], message["logmsg"]), ("running", None))
        self.assertEqual(job_messages({"id": "91", "ops": []}, "c1"), [])

    def test_parse_job_file(self) -> None:
        """parse_job_file accepts a JSON object and raises BadJob for
        anything else."""
        self.assertEqual(parse_job_file(b'{"id": 1, "ops": []}'), {"id": 1, "ops": []})
        for data in [b"", b"{", b"[1]", b"\xff\xfe"]:
            self.assertRaises(BadJob, parse_job_file, data)


# -- bus helpers -------------------------------------------------------------

def real_reactor() -> Any:
    from twisted.internet import reactor
    return reactor


class BusCase(BusTestMixin, unittest.TestCase):
    """A started LocalBus with a queue ``seen`` bound to ``ganeti`` #."""

    async def local_bus(self) -> LocalBus:
        self.metrics = Metrics()
        bus = LocalBus(real_reactor(), self.metrics)
        bus.start()
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        await bus.declare_exchange("ganeti")
        await bus.declare_queue("seen", [("ganeti", "#")])
        self.got: list[tuple[str, dict[str, Any]]] = []
        bus.consume("seen", lambda m: self.got.append((m.routing_key, json.loads(m.body))))
        return bus

    def publisher(self, bus: Any, clock: Any = None, **kwargs: Any) -> EventPublisher:
        publisher = EventPublisher(bus, clock=clock or real_reactor(), **kwargs)
        publisher.startService()
        self.addCleanup(publisher.stopService)
        return publisher

    def published(self) -> float:
        value = self.metrics.registry.get_sample_value(
            "snfd_bus_published_total", {"exchange": "ganeti"})
        return value or 0.0

    def statuses(self, job_id: int | None = None) -> list[str]:
        return [m.get("status", m["type"]) for _, m in self.got
                if job_id is None or m.get("jobId") == job_id]


class _FlakyBus:
    """The in-process bus, unavailable for the first ``failures`` publishes."""

    def __init__(self, bus: LocalBus, failures: int):
        self._bus = bus
        self.failures = failures
        self.attempts = 0

    async def declare_exchange(self, name: str, type: str = "topic") -> None:
        await self._bus.declare_exchange(name, type)

    async def publish(self, exchange: str, routing_key: str, body: bytes) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise BusUnavailable("broker unreachable")
        await self._bus.publish(exchange, routing_key, body)


class _HangingBus:
    """A bus whose publishes never confirm; cancelling one fails it with
    BusUnavailable, as the AMQP bus does."""

    def __init__(self) -> None:
        self.attempts = 0

    async def declare_exchange(self, name: str, type: str = "topic") -> None:
        pass

    def publish(self, exchange: str, routing_key: str, body: bytes) -> defer.Deferred[None]:
        self.attempts += 1

        def cancel(d: defer.Deferred[None]) -> None:
            d.errback(BusUnavailable("the bus is stopping"))

        return defer.Deferred(cancel)


class PublisherTests(BusCase):
    async def test_publishes_json_and_drops_duplicates(self) -> None:
        """A job's messages are published as JSON on their routing keys; the
        same job state published again is not repeated, a new state is."""
        bus = await self.local_bus()
        publisher = self.publisher(bus)
        self.assertTrue(await publisher.publish_job(create_job("running", log=1), "c1"))
        self.assertTrue(await publisher.publish_job(create_job("running", log=1), "c1"))
        self.assertTrue(await publisher.publish_job(create_job("running", log=2), "c1"))
        await self.wait_for(lambda: len(self.got) == 2, what="two messages")
        self.assertEqual([m["logmsg"] for _, m in self.got], ["* step 1", "* step 2"])
        self.assertEqual({k for k, _ in self.got}, {"ganeti.snf.event.op"})
        self.assertEqual(self.published(), 2)

    async def test_duplicate_memory_is_bounded(self) -> None:
        """Only the last ``memory`` events are remembered: an older one is
        published again (the consumer drops it by its event_time)."""
        bus = await self.local_bus()
        publisher = self.publisher(bus, memory=2)
        for status in ["queued", "waiting", "running", "queued"]:
            await publisher.publish_job(create_job(status), "c1")
        await self.wait_for(lambda: len(self.got) == 4, what="four messages")
        self.assertEqual(self.statuses(), ["queued", "waiting", "running", "queued"])

    async def test_declares_exchange_on_start(self) -> None:
        """Starting the publisher declares its topic exchange."""
        bus = LocalBus(real_reactor(), Metrics())
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        self.publisher(bus, exchange="ganeti-test")
        await bus.declare_queue("q", [("ganeti-test", "#")])

    async def test_retries_until_bus_is_back(self) -> None:
        """A publish the bus refuses is retried with backoff until it goes
        through; later events of the job follow it, in order."""
        bus = await self.local_bus()
        flaky = _FlakyBus(bus, failures=3)
        clock = task.Clock()
        publisher = self.publisher(flaky, clock=clock)
        done = defer.ensureDeferred(publisher.publish_job(
            job_file(5, op_file({"OP_ID": "OP_INSTANCE_STARTUP", "instance_name": "snf-1"},
                                "success"),
                     op_file({"OP_ID": "OP_INSTANCE_REBOOT", "instance_name": "snf-1"},
                             "queued")), "c1"))
        self.assertEqual(flaky.attempts, 1)
        for _ in range(3):
            self.assertFalse(done.called)
            clock.advance(60)
        self.assertTrue(await done)
        self.assertEqual(flaky.attempts, 5)
        await self.wait_for(lambda: len(self.got) == 2, what="both messages")
        self.assertEqual([m["operation"] for _, m in self.got],
                         ["OP_INSTANCE_STARTUP", "OP_INSTANCE_REBOOT"])

    async def test_stop_gives_up_and_republishes_later(self) -> None:
        """Stopping the publisher ends the retries of an unpublished event
        (publish_job answers False); it is not remembered as seen, so a new
        publisher publishes it."""
        bus = await self.local_bus()
        flaky = _FlakyBus(bus, failures=100)
        publisher = self.publisher(flaky, clock=task.Clock())
        done = defer.ensureDeferred(publisher.publish_job(create_job("success"), "c1"))
        await publisher.stopService()
        self.assertFalse(await done)
        self.assertFalse(publisher.seen(("c1", 22, 0, "success", 0)))
        self.assertEqual(self.published(), 0)
        again = self.publisher(bus)
        self.assertTrue(await again.publish_job(create_job("success"), "c1"))
        await self.wait_for(lambda: self.got, what="the message")
        self.assertEqual(self.statuses(), ["success"])


    async def test_caller_cancel_is_not_retried(self) -> None:
        """A caller that cancels publish_job while the bus holds the message
        stops it for good (no retry), even when the bus reports the cancel
        as BusUnavailable; the event is not remembered as seen."""
        bus = _HangingBus()
        publisher = self.publisher(bus, clock=task.Clock())
        self.assertTrue(publisher.running)
        done = defer.ensureDeferred(publisher.publish_job(create_job("success"), "c1"))
        self.assertEqual(bus.attempts, 1)
        done.cancel()
        with self.assertRaises(defer.CancelledError):
            await done
        self.assertEqual(bus.attempts, 1)
        self.assertFalse(publisher.seen(("c1", 22, 0, "success", 0)))

    async def test_start_awaits_declaration(self) -> None:
        """``await start()`` returns with the exchange declared; ``stop()``
        stops the service."""
        bus = LocalBus(real_reactor(), Metrics())
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        publisher = EventPublisher(bus, "ganeti-x", clock=real_reactor())
        await publisher.start()
        self.assertTrue(publisher.running)
        await bus.declare_queue("q", [("ganeti-x", "#")])
        await publisher.stop()
        self.assertFalse(publisher.running)


class AmqpPublisherTests(BusTestMixin, unittest.TestCase):
    """The publisher on RabbitMQ (``SNFD_TEST_AMQP_URL``)."""

    def setUp(self) -> None:
        self.url = os.environ.get("SNFD_TEST_AMQP_URL", DEFAULT_AMQP_URL)
        reason = amqp_skip_reason(self.url)
        if reason:
            raise unittest.SkipTest(reason)

    async def test_publish_to_rabbitmq(self) -> None:
        """Events reach a queue bound like the dispatcher's op queue, as
        JSON, after the broker confirmed them; duplicates are not sent."""
        exchange = f"snfdtest-ganeti-{uuid.uuid4().hex[:12]}"
        queue = f"snfdtest-q-{uuid.uuid4().hex[:12]}"
        self.addCleanup(lambda: delete_names(self.url, [queue], [exchange]))
        bus = make_bus(self.url, real_reactor(), Metrics(), publish_timeout=20.0)
        bus.start()
        self.addCleanup(lambda: defer.ensureDeferred(bus.stop()))
        await self.wait_for(lambda: bus.connected, what="the connection")
        publisher = EventPublisher(bus, exchange, clock=real_reactor())
        publisher.startService()
        self.addCleanup(publisher.stopService)
        await bus.declare_exchange(exchange)
        await bus.declare_queue(queue, [(exchange, "ganeti.*.event.op")])
        got: list[Any] = []
        bus.consume(queue, got.append)
        for status, log in CREATE_STAGES:
            self.assertTrue(await publisher.publish_job(create_job(status, log=log), "c1"))
        await publisher.publish_job(create_job("success", log=4), "c1")
        await self.wait_for(lambda: len(got) == len(CREATE_STAGES), what="every stage")
        bodies = [json.loads(m.body) for m in got]
        self.assertEqual([b["status"] for b in bodies], [s for s, _ in CREATE_STAGES])
        self.assertEqual({m.routing_key for m in got}, {"ganeti.snf.event.op"})


# -- the watcher -------------------------------------------------------------

def replace_job(queue: Path, job: Any, temp: str | None = None) -> None:
    """Write a job file as Ganeti does: a temporary file renamed over it."""
    job_id = job["id"] if isinstance(job, dict) else 0
    data = job if isinstance(job, bytes) else json.dumps(job).encode()
    tmp = queue / (temp or f"job-{job_id}-11056-84.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, queue / f"job-{job_id}")


def replace_raw(queue: Path, name: str, data: bytes) -> None:
    tmp = queue / f"{name}-1-1.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, queue / name)


class WatcherTests(BusCase):
    async def watcher(self, start: bool = True, queue: Path | None = None,
                      **kwargs: Any) -> JobQueueWatcher:
        bus = await self.local_bus()
        if queue is None:
            queue = Path(self.mktemp())
            queue.mkdir()
        self.queue = queue
        publisher = self.publisher(bus)
        watcher = JobQueueWatcher(real_reactor(), queue, "c1", publisher, **kwargs)
        if start:
            watcher.startService()
            self.addCleanup(watcher.stopService)
        return watcher

    async def sentinel(self, job_id: int = 999) -> None:
        """Publish one more job through the directory and wait for it: what
        was written before it has been handled by then."""
        replace_job(self.queue, simple_job("OP_INSTANCE_STARTUP", "queued", job_id))
        await self.wait_for(lambda: job_id in {m.get("jobId") for _, m in self.got},
                            what=f"sentinel job {job_id}")

    async def test_atomic_replaces_published(self) -> None:
        """Each rename of a job file into place publishes the job's new
        state; ``.tmp`` and ``.new`` temporary files are never read."""
        await self.watcher()
        for status, log in CREATE_STAGES:
            replace_job(self.queue, create_job(status, log=log),
                        temp="job-22fhyjaqp5.new" if log else None)
        await self.wait_for(lambda: "success" in self.statuses(22), what="success")
        # Every stage, in order (a state replaced before it was read may be skipped).
        seen = self.statuses(22)
        self.assertEqual(seen, sorted(seen, key=[s for s, _ in CREATE_STAGES].index))
        (self.queue / "job-77-11056-84.tmp").write_text(
            json.dumps(create_job("queued", job_id=77)))
        (self.queue / "job-78abc.new").write_text(json.dumps(create_job("queued", job_id=78)))
        (self.queue / "job-79.new").write_text(json.dumps(create_job("queued", job_id=79)))
        await self.sentinel()
        self.assertFalse({77, 78, 79} & {m.get("jobId") for _, m in self.got})

    async def test_written_in_place_published(self) -> None:
        """A job file written and closed in place (IN_CLOSE_WRITE) is
        published too."""
        await self.watcher()
        (self.queue / "job-31").write_text(json.dumps(create_job("queued", job_id=31)))
        await self.wait_for(lambda: self.statuses(31) == ["queued"], what="job 31")

    async def test_duplicate_write_not_republished(self) -> None:
        """Writing the same job state again publishes nothing new."""
        await self.watcher()
        replace_job(self.queue, create_job("running", log=2))
        replace_job(self.queue, create_job("running", log=2))
        await self.sentinel()
        replace_job(self.queue, create_job("running", log=2))
        await self.sentinel(998)
        self.assertEqual(self.statuses(22), ["running"])

    async def test_garbage_skipped(self) -> None:
        """Files that are not jobs (not JSON, not an object, no ops) are
        skipped and the watcher goes on."""
        await self.watcher()
        replace_raw(self.queue, "job-3", b"\x00not json")
        replace_raw(self.queue, "job-4", b"[1, 2]")
        replace_raw(self.queue, "job-5", b'{"id": 5, "ops": "many"}')
        replace_raw(self.queue, "job-6", b'{"id": 6, "ops": [{"input": 7, "status": 1}]}')
        await self.sentinel()
        self.assertEqual([m["jobId"] for _, m in self.got], [999])

    async def test_existing_jobs_published_at_start(self) -> None:
        """Job files already in the queue when the watcher starts are
        published once, in job id order; other files are ignored."""
        queue = Path(self.mktemp())
        queue.mkdir()
        replace_job(queue, create_job("success", job_id=12))
        replace_job(queue, simple_job("OP_INSTANCE_SHUTDOWN", "success", 3))
        (queue / "serial").write_text("12\n")
        (queue / "version").write_text("1\n")
        (queue / "archive").mkdir()
        (queue / "archive" / "job-1").write_text(json.dumps(create_job("success", job_id=1)))
        (queue / "job-13-1-2.tmp").write_text("{")
        await self.watcher(queue=queue)
        await self.wait_for(lambda: len(self.got) == 2, what="the existing jobs")
        self.assertEqual([m["jobId"] for _, m in self.got], [3, 12])
        await self.sentinel()
        self.assertEqual(len(self.got), 3)

    async def test_missing_queue_dir_waits(self) -> None:
        """Without the queue directory the watcher starts, watches nothing,
        and begins once the directory appears."""
        queue = Path(self.mktemp())
        watcher = await self.watcher(queue=queue, retry_interval=0.05)
        self.assertFalse(watcher.watching)
        queue.mkdir()
        await self.wait_for(lambda: watcher.watching, what="the directory to be watched")
        await self.sentinel()

    async def test_stop_abandons_unpublished_jobs(self) -> None:
        """Stopping the watcher while the bus refuses its events ends at
        once; the publisher keeps running and a new watcher publishes the
        job from the start-up scan once the bus is back."""
        bus = await self.local_bus()
        flaky = _FlakyBus(bus, failures=10 ** 6)
        publisher = self.publisher(flaky, clock=task.Clock())
        queue = Path(self.mktemp())
        queue.mkdir()
        self.queue = queue
        watcher = JobQueueWatcher(real_reactor(), queue, "c1", publisher)
        watcher.startService()
        replace_job(queue, create_job("success"))
        await self.wait_for(lambda: flaky.attempts > 0, what="a publish attempt")
        await watcher.stopService()
        self.assertTrue(publisher.running)
        flaky.failures = 0
        again = JobQueueWatcher(real_reactor(), queue, "c1", publisher)
        again.startService()
        self.addCleanup(again.stopService)
        await self.wait_for(lambda: self.statuses(22) == ["success"], what="the job")

    async def test_latest_file_wins(self) -> None:
        """A job that changes while it is being processed is read again
        afterwards, so its latest state is always published."""
        watcher = await self.watcher(start=False)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        replace_job(self.queue, create_job("running"))
        first = watcher.process(22)
        replace_job(self.queue, create_job("success"))
        second = watcher.process(22)
        self.assertIs(first, second)
        await first
        await self.wait_for(lambda: "success" in self.statuses(22), what="success")
        self.assertEqual(self.statuses(22)[-1], "success")


# -- RAPI: poller and instance details --------------------------------------

INSTANCE_INFO = {
    "name": "snf-42", "status": "running", "oper_state": True,
    "nic.names": ["snf-nic-3"], "nic.networks": ["0f1e-uuid"],
    "nic.networks.names": ["snf-net-1"], "nic.ips": ["10.0.0.2"],
    "nic.macs": ["aa:00:00:11:22:33"], "nic.modes": ["bridged"], "nic.links": ["gntbr0"],
    "nic.uuids": ["nic-uuid-1"], "disk.names": ["snf-vol-7"], "disk.sizes": [1024],
    "disk.uuids": ["disk-uuid-1"], "hvparams": {"boot_order": "disk", "cdrom_image_path": ""},
}


class RapiCase(BusCase):
    def rapi(self, url: str | None = None) -> GanetiRapi:
        self.fake = FakeRapi()
        served, cert = serve_rapi(self, self.fake)
        return GanetiRapi(http_pool(self), RapiTarget(
            cluster="c1", url=url or served, username="synnefo", password="pw",
            certificate=cert.decode(), timeout=5.0))


class InstanceInfoTests(RapiCase):
    async def test_attached_on_create_success(self) -> None:
        """A successful create gets the instance's NICs (network by name),
        disks and hvparams from GET /2/instances/<name>."""
        rapi = self.rapi()
        self.fake.answer("GET", "/2/instances/snf-42", (200, INSTANCE_INFO))
        [(_, message)] = job_messages(create_job("success"), "c1")
        await attach_instance_info(message, rapi)
        self.assertEqual(message["instance_nics"], [{
            "name": "snf-nic-3", "network": "snf-net-1", "ip": "10.0.0.2",
            "mac": "aa:00:00:11:22:33", "mode": "bridged", "link": "gntbr0",
            "uuid": "nic-uuid-1"}])
        self.assertEqual(message["instance_disks"],
                         [{"name": "snf-vol-7", "size": 1024, "uuid": "disk-uuid-1"}])
        self.assertEqual(message["instance_hvparams"], INSTANCE_INFO["hvparams"])
        json.dumps(message)

    async def test_only_when_needed(self) -> None:
        """Running creates, failed startups and shutdowns ask nothing;
        SET_PARAMS asks even when it failed."""
        rapi = self.rapi()
        self.fake.answer("GET", "/2/instances/snf-42", (200, INSTANCE_INFO))
        for job in [create_job("running"), simple_job("OP_INSTANCE_STARTUP", "error", 2),
                    simple_job("OP_INSTANCE_SHUTDOWN", "success", 3)]:
            [(_, message)] = job_messages(job, "c1")
            await attach_instance_info(message, rapi)
            self.assertNotIn("instance_nics", message)
        self.assertEqual(self.fake.requests, [])
        [(_, message)] = job_messages(simple_job("OP_INSTANCE_SET_PARAMS", "error", 4), "c1")
        await attach_instance_info(message, rapi)
        self.assertIn("instance_nics", message)

    async def test_skipped_when_unknown_or_unreachable(self) -> None:
        """An instance Ganeti no longer knows, an error answer or an
        unreachable RAPI leave the message as it was."""
        rapi = self.rapi()
        self.fake.answer("GET", "/2/instances/snf-42", (404, {"code": 404, "message": "no"}),
                         (500, {"code": 500, "message": "boom"}))
        for _ in range(2):
            [(_, message)] = job_messages(create_job("success"), "c1")
            before = dict(message)
            await attach_instance_info(message, rapi)
            self.assertEqual(message, before)
        gone = self.rapi(url=f"https://127.0.0.1:{free_port()}")
        [(_, message)] = job_messages(create_job("success"), "c1")
        await attach_instance_info(message, gone)
        self.assertNotIn("instance_nics", message)


def bulk(job: dict[str, Any]) -> dict[str, Any]:
    """The /2/jobs?bulk=1 entry of a job file (no oplog, no opresult)."""
    ops = job["ops"]
    statuses = [op["status"] for op in ops]
    status = next((s for s in ("error", "canceled") if s in statuses), None)
    if status is None:
        unfinished = [s for s in statuses if s != "success"]
        status = unfinished[0] if unfinished else "success"
    return {"id": job["id"], "status": status, "ops": [op["input"] for op in ops],
            "opstatus": statuses, "received_ts": job["received_timestamp"],
            "start_ts": job["start_timestamp"], "end_ts": job["end_timestamp"],
            "summary": [op["input"]["OP_ID"][3:] for op in ops]}


def full(job: dict[str, Any]) -> dict[str, Any]:
    """The /2/jobs/<id> answer of a job file."""
    return {**bulk(job), "opresult": [op["result"] for op in job["ops"]],
            "oplog": [op["log"] for op in job["ops"]]}


class PollerTests(RapiCase):
    async def test_publishes_changed_jobs(self) -> None:
        """Each poll publishes the jobs whose status changed; a finished job
        is read whole (result, log) and a successful create carries the
        instance's NICs; unchanged jobs are not asked again."""
        rapi = self.rapi()
        bus = await self.local_bus()
        poller = RapiJobPoller(real_reactor(), rapi, "c1", self.publisher(bus), interval=60)
        running = create_job("running", log=1)
        other = simple_job("OP_INSTANCE_SHUTDOWN", "success", 21)
        self.fake.answer("GET", "/2/jobs", (200, [bulk(other), bulk(running)]))
        self.fake.answer("GET", "/2/jobs/21", (200, full(other)))
        await poller.poll()
        await self.wait_for(lambda: len(self.got) == 2, what="two messages")
        self.assertEqual([(m["jobId"], m["status"], m["logmsg"]) for _, m in self.got],
                         [(21, "success", None), (22, "running", None)])
        await poller.poll()
        self.assertEqual(len(self.fake.calls("GET", "/2/jobs/21")), 1)
        self.assertEqual(self.published(), 2)

        done = create_job("success", log=4, result=["node1.ganeti.test"])
        self.fake.answer("GET", "/2/jobs", (200, [bulk(other), bulk(done)]))
        self.fake.answer("GET", "/2/jobs/22", (200, full(done)))
        self.fake.answer("GET", "/2/instances/snf-42", (200, INSTANCE_INFO))
        await poller.poll()
        await self.wait_for(lambda: len(self.got) == 3, what="the success")
        message = self.got[-1][1]
        self.assertEqual((message["status"], message["logmsg"], message["result"]),
                         ("success", "* step 4", ["node1.ganeti.test"]))
        self.assertEqual(message["event_time"], ENDED)
        self.assertEqual(message["instance_nics"][0]["network"], "snf-net-1")

    async def test_survives_unreachable_cluster(self) -> None:
        """A poll of an unreachable or failing RAPI publishes nothing and
        raises nothing."""
        bus = await self.local_bus()
        publisher = self.publisher(bus)
        gone = self.rapi(url=f"https://127.0.0.1:{free_port()}")
        await RapiJobPoller(real_reactor(), gone, "c1", publisher).poll()
        failing = self.rapi()
        self.fake.answer("GET", "/2/jobs", (503, {"code": 503, "message": "busy"}))
        await RapiJobPoller(real_reactor(), failing, "c1", publisher).poll()
        self.assertEqual(self.published(), 0)

    async def test_leader_duty(self) -> None:
        """As a leader duty it polls at start and then every interval, and
        after stop nothing more is scheduled."""
        rapi = self.rapi()
        bus = await self.local_bus()
        clock = task.Clock()
        poller = RapiJobPoller(clock, rapi, "c1", self.publisher(bus), interval=1.0)
        self.assertTrue(verifyObject(ILeaderDuty, poller))
        self.fake.answer("GET", "/2/jobs", (200, [bulk(create_job("queued"))]),
                         (200, [bulk(create_job("waiting"))]),
                         (200, [bulk(create_job("running"))]))
        poller.start(None)
        self.addCleanup(poller.stop)
        for expected in (["queued"], ["queued", "waiting"]):
            await self.wait_for(lambda: self.statuses() == expected,  # noqa: B023
                                what=f"{expected[-1]} published")
            clock.advance(1.0)
        await self.wait_for(lambda: self.statuses() == ["queued", "waiting", "running"],
                            what="three polls")
        await poller.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class PollerStopTests(RapiCase):
    async def test_stop_while_bus_down(self) -> None:
        """Stopping a poller whose events the bus refuses ends at once and
        leaves the job unpublished for the next poller; the shared
        publisher keeps running."""
        rapi = self.rapi()
        bus = await self.local_bus()
        flaky = _FlakyBus(bus, failures=10 ** 6)
        publisher = self.publisher(flaky, clock=task.Clock())
        self.fake.answer("GET", "/2/jobs", (200, [bulk(create_job("running"))]))
        poller = RapiJobPoller(real_reactor(), rapi, "c1", publisher, interval=60)
        poller.start(None)
        await self.wait_for(lambda: flaky.attempts > 0, what="a publish attempt")
        await poller.stop()
        self.assertTrue(publisher.running)
        self.assertFalse(publisher.seen(("c1", 22, 0, "running", 0)))
        flaky.failures = 0
        await RapiJobPoller(real_reactor(), rapi, "c1", publisher).poll()
        await self.wait_for(lambda: self.statuses(22) == ["running"], what="the job")


# -- the plugin --------------------------------------------------------------

def section(**values: Any) -> Section:
    keys = {k.name: k.default for k in plugin.config_keys}
    keys.update(values)
    return Section("ganeti-events", keys)


class PluginTests(RapiCase):
    def test_provides_interface(self) -> None:
        """The plugin provides ISnfdPlugin, mounts nothing and has no
        duties."""
        self.assertTrue(verifyObject(ISnfdPlugin, plugin))
        self.assertEqual(plugin.name, "ganeti-events")

    def test_cluster_name(self) -> None:
        """The cluster name comes from ssconf_cluster_name next to the
        queue directory, else the host name."""
        lib = Path(self.mktemp())
        (lib / "queue").mkdir(parents=True)
        self.assertTrue(cluster_name(lib / "queue"))
        (lib / "ssconf_cluster_name").write_text("cluster.ganeti.test\n")
        self.assertEqual(cluster_name(lib / "queue"), "cluster.ganeti.test")

    async def test_service_publishes_queue(self) -> None:
        """The plugin's service watches the configured queue directory and
        publishes on the configured exchange; with no queue directory it
        starts and does nothing."""
        bus = await self.local_bus()
        node = types.SimpleNamespace(bus=bus, reactor=real_reactor(), clock=real_reactor(),
                                     http=None)
        svc = plugin.makeService(node, section(queue_dir=Path(self.mktemp())), {})
        svc.startService()
        await svc.stopService()

        queue = Path(self.mktemp())
        queue.mkdir()
        svc = plugin.makeService(node, section(queue_dir=queue, cluster="c9"), {})
        self.assertEqual((plugin.mounts(svc), list(plugin.duties(svc))), ({}, []))
        svc.startService()
        self.addCleanup(svc.stopService)
        replace_job(queue, create_job("queued"))
        await self.wait_for(lambda: self.got, what="the message")
        self.assertEqual(self.got[0][1]["cluster"], "c9")

    async def test_service_with_rapi(self) -> None:
        """With rapi_* set, the plugin's events carry the instance details
        read over the pinned RAPI."""
        fake = FakeRapi()
        url, cert = serve_rapi(self, fake)
        fake.answer("GET", "/2/instances/snf-42", (200, INSTANCE_INFO))
        pem = Path(self.mktemp())
        pem.write_bytes(cert)
        bus = await self.local_bus()
        node = types.SimpleNamespace(bus=bus, reactor=real_reactor(), clock=real_reactor(),
                                     http=http_pool(self))
        queue = Path(self.mktemp())
        queue.mkdir()
        svc = plugin.makeService(node, section(
            queue_dir=queue, cluster="c9", rapi_url=url, rapi_username="reader",
            rapi_password="pw", rapi_certificate=str(pem)), {})
        svc.startService()
        self.addCleanup(svc.stopService)
        replace_job(queue, create_job("success"))
        await self.wait_for(lambda: self.got, what="the message")
        self.assertEqual(self.got[0][1]["instance_disks"][0]["uuid"], "disk-uuid-1")
        self.assertEqual(fake.calls("GET", "/2/instances/snf-42")[0]["authorization"],
                         "Basic cmVhZGVyOnB3")
