"""The update path (``snfd.cyclades.updates``) on real PostgreSQL with the
in-process quota holder: the state machine per opcode and status, the
ordering rule, duplicate deliveries, task adoption, the task's commission
accepted or rejected, forced commissions for changes made outside the API,
removal, build progress and simulated events."""

from __future__ import annotations

import datetime
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.model import GiB, MiB, Server, charges, provisions
from snfd.cyclades.updates import SIMULATED_LOGMSG, MalformedMessage, UpdatePath
from snfd.db.migrations import NODE_SCHEMA, Schema
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.plugins.identity import plugin as identity_plugin
from snfd.quota import Resource
from snfd.quota.serials import Charger
from snfd.testing.postgres import fresh_database, recorded_runs, started_pool

CYCLADES = Schema("cyclades", "snfd.cyclades.schema")
T0 = 1_700_000_000
USER, PROJECT = "u1", "p1"
CLUSTER = "cluster1.example.org"


def resources() -> list[Resource]:
    """Cyclades' compute resources, as the service registers them."""
    return [Resource(name, name, None, "compute", "cyclades_compute")
            for name in ("cyclades.vm", "cyclades.total_cpu", "cyclades.cpu",
                         "cyclades.total_ram", "cyclades.ram", "cyclades.disk")]


def at(seconds: float) -> list[int]:
    """An event_time ``seconds`` after T0."""
    micros = round(seconds * 1_000_000)
    return [T0 + micros // 1_000_000, micros % 1_000_000]


def when(seconds: float) -> datetime.datetime:
    sec, usec = at(seconds)
    return (datetime.datetime.fromtimestamp(sec, datetime.UTC)
            + datetime.timedelta(microseconds=usec))


def op(server: Server | int, opcode: str, status: str, job: int, t: float,
       **extra: Any) -> dict[str, Any]:
    """A ``ganeti-op-status`` message as the event daemon publishes it."""
    sid = server if isinstance(server, int) else server.id
    message = {"type": "ganeti-op-status", "instance": f"snf-{sid}",
               "operation": f"OP_INSTANCE_{opcode}", "status": status, "jobId": job,
               "logmsg": f"{opcode.lower()} {status}", "result": None,
               "event_time": at(t), "cluster": CLUSTER, "job_fields": {}, "tags": []}
    message.update(extra)
    return message


class CycladesDBMixin:
    """A fresh database, a quota holder with cyclades' resources, a
    backend, two flavors and helpers to make servers and read quota."""

    limit = 100 * GiB

    async def setUpDB(self) -> None:
        self.dsn = fresh_database(self, [NODE_SCHEMA, identity_plugin.schema, CYCLADES])
        self.db = started_pool(self, self.dsn)
        self.qh = LocalQuotaHolder(self.db)
        await self.qh.register_resources("cyclades", resources())
        for r in resources():
            await self.qh.set_limit(f"user:{USER}", f"project:{PROJECT}", r.name, self.limit)
            await self.qh.set_limit(f"project:{PROJECT}", None, r.name, self.limit)
        self.charger = Charger(self.db, self.qh, "cyclades")
        self.addCleanup(lambda: defer.ensureDeferred(self.charger.drain()))
        self.backend = await self.db.run("t", store.add_backend_txn, CLUSTER,
                                         "https://127.0.0.1:1", disk_templates=("file",))
        await self.db.run("t", store.update_backend_txn, self.backend.id, mfree=8192,
                          dfree=100 * 1024, pinst_cnt=0, ctotal=4)
        self.small, _ = await self.db.run("t", store.create_flavor_txn, 1, 512, 5, "file")
        self.big, _ = await self.db.run("t", store.create_flavor_txn, 2, 1024, 5, "file")

    async def server(self, charged: bool = True, flavor: Any = None,
                     **fields: Any) -> Server:
        """A server on the backend; ``charged``: its BUILD commission was
        accepted (what the API does), with online resources unless it
        is STOPPED."""
        flavor = flavor or self.small
        fields.setdefault("backend_id", self.backend.id)
        server = await self.db.run("t", store.insert_server_txn, USER, PROJECT, "vm",
                                   flavor.id, "img", **fields)
        if charged:
            amounts = charges(server, "BUILD")
            if server.operstate == "STOPPED":
                amounts = {k: v for k, v in amounts.items()
                           if k not in ("cyclades.cpu", "cyclades.ram")}
            await self.qh.issue("cyclades", provisions(server, amounts), auto_accept=True)
        return server

    async def get(self, server: Server) -> Server:
        found = await self.db.run("t", store.server_txn, server.id)
        assert found is not None
        return found

    async def usage(self) -> dict[str, tuple[int, int]]:
        """The user's (usage_min, usage_max) per resource, once settled."""
        await self.charger.drain()
        holdings = await self.qh.quotas(holders=[f"user:{USER}"], sources=[f"project:{PROJECT}"])
        return {h.resource.split(".", 1)[1]: (h.usage_min, h.usage_max) for h in holdings}

    async def pending(self) -> list[int]:
        await self.charger.drain()
        return await self.qh.pending("cyclades")

    async def issue(self, server: Server, action: str) -> int:
        """What the API does before submitting ``action``'s job."""
        return await self.charger.issue(provisions(server, charges(server, action)),
                                        force=action == "DESTROY",
                                        resource_key=f"server:{server.id}")


def running(cpu: int = 1, ram: int = 512) -> dict[str, tuple[int, int]]:
    """The usage of one running server of that shape (disk 5 GiB)."""
    return {"vm": (1, 1), "total_cpu": (cpu, cpu), "cpu": (cpu, cpu),
            "total_ram": (ram * MiB, ram * MiB), "ram": (ram * MiB, ram * MiB),
            "disk": (5 * GiB, 5 * GiB)}


def stopped(cpu: int = 1, ram: int = 512) -> dict[str, tuple[int, int]]:
    return {**running(cpu, ram), "cpu": (0, 0), "ram": (0, 0)}


NOTHING = {k: (0, 0) for k in ("vm", "total_cpu", "cpu", "total_ram", "ram", "disk")}


class UpdateTestCase(CycladesDBMixin, unittest.TestCase):
    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def asyncSetUp(self) -> None:
        await self.setUpDB()
        self.clock = task.Clock()
        self.clock.advance(T0 + 1000)
        self.updates = UpdatePath(self.db, self.charger, self.clock)


class StateMachineTests(UpdateTestCase):
    async def test_create_success(self):
        """A create job's intermediate statuses are recorded without
        changing the state; its success makes the server STARTED, clears
        the BUILD task, takes Ganeti's NICs and disks (with ids) and
        advances backendtime."""
        s = await self.server(task="BUILD", task_job_id=3, backendjobid=3)
        await self.updates.op_status(op(s, "CREATE", "queued", 3, 1))
        await self.updates.op_status(op(s, "CREATE", "running", 3, 2))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.backendjobstatus, got.task, got.backendtime),
                         ("BUILD", "running", "BUILD", None))
        nics = [{"name": "snf-nic-7", "network": None, "ip": "10.0.0.2",
                 "mac": "aa:00:00:11:22:33", "mode": "bridged", "link": "br0", "uuid": "n1"}]
        disks = [{"name": "d0", "size": 5120, "uuid": "d1"}]
        await self.updates.op_status(op(s, "CREATE", "success", 3, 3, instance_nics=nics,
                                        instance_disks=disks))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task, got.task_job_id, got.backendjobstatus,
                          got.backendopcode, got.backendlogmsg, got.backendtime),
                         ("STARTED", "", None, "success", "OP_INSTANCE_CREATE",
                          "create success", when(3)))
        self.assertEqual(got.nics, ({**nics[0], "id": 7, "firewall": None},))
        self.assertEqual(got.disks, ({**disks[0], "id": 1},))
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_nic_ids_are_stable(self):
        """A NIC keeps its id across syncs (matched by uuid, else name);
        a new NIC gets a new id; a removed one disappears."""
        s = await self.server(operstate="STOPPED", charged=False,
                              nics=({"id": 4, "uuid": "n1", "name": "a", "firewall": "ENABLED"},))
        nics = [{"name": "a", "uuid": "n1", "ip": "10.0.0.9"},
                {"name": "b", "uuid": "n2", "ip": None}]
        await self.updates.op_status(op(s, "SET_PARAMS", "success", 5, 1,
                                        instance_nics=nics))
        got = await self.get(s)
        self.assertEqual([(n["id"], n["uuid"], n["ip"], n.get("firewall")) for n in got.nics],
                         [(4, "n1", "10.0.0.9", "ENABLED"), (5, "n2", None, None)])
        await self.updates.op_status(op(s, "SET_PARAMS", "success", 6, 2,
                                        instance_nics=nics[1:]))
        got = await self.get(s)
        self.assertEqual([n["id"] for n in got.nics], [5])

    async def test_create_error(self):
        """A failed create puts the server in ERROR (its NICs too), clears
        the task and keeps the BUILD quota (the server still exists)."""
        s = await self.server(task="BUILD", task_job_id=3, nics=({"id": 1, "uuid": "n1"},))
        await self.updates.op_status(op(
            s, "CREATE", "error", 3, 2,
            result=["OpPrereqError", ["Not enough memory", "insufficient_resources"]]))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task, got.backendjobstatus, got.backendtime),
                         ("ERROR", "", "error", when(2)))
        self.assertEqual(got.nics[0]["state"], "ERROR")
        self.assertEqual(await self.usage(), running())

    async def test_create_canceled(self):
        """A cancelled create also ends in ERROR."""
        s = await self.server(task="BUILD", task_job_id=3)
        await self.updates.op_status(op(s, "CREATE", "canceled", 3, 2))
        self.assertEqual((await self.get(s)).operstate, "ERROR")

    async def test_create_end_expires_server_params(self):
        """The build parameters (admin password...) stay fetchable while the
        create job runs and are dropped when it ends, in success, error or
        cancel: the vmapi URL recorded in the Ganeti job leaks nothing
        afterwards."""
        for job, status in enumerate(("success", "error", "canceled"), start=3):
            s = await self.server(task="BUILD", task_job_id=job, backendjobid=job)
            key = f"key-{status}"
            await self.db.run("t", store.put_params_txn, key, s.id, {"img_passwd": "pw"})
            await self.updates.op_status(op(s, "CREATE", "running", job, 1))
            await self.db.run("t", store.put_params_txn, f"{key}-2", s.id, {})
            self.assertEqual(await self.db.run("t", store.take_params_txn, f"{key}-2"), {})
            await self.updates.op_status(op(s, "CREATE", status, job, 2))
            self.assertIsNone(await self.db.run("t", store.take_params_txn, key), status)

    async def test_operstate_per_opcode(self):
        """Each opcode's success sets the state of the reference's table;
        other opcodes (SET_PARAMS, MIGRATE, FAILOVER) leave it."""
        s = await self.server(operstate="STOPPED")
        expected = [("STARTUP", "STARTED"), ("SHUTDOWN", "STOPPED"), ("REBOOT", "STARTED"),
                    ("SET_PARAMS", "STARTED"), ("MIGRATE", "STARTED"),
                    ("SHUTDOWN", "STOPPED"), ("FAILOVER", "STOPPED"), ("REBOOT", "STARTED")]
        seen = []
        for i, (opcode, _) in enumerate(expected):
            await self.updates.op_status(op(s, opcode, "success", 10 + i, 1 + i))
            seen.append((opcode, (await self.get(s)).operstate))
        self.assertEqual(seen, expected)
        self.assertEqual(await self.usage(), running())

    async def test_failed_job_keeps_state(self):
        """A failed shutdown is recorded but changes neither the state nor
        backendtime."""
        s = await self.server(operstate="STARTED", backendtime=when(0))
        await self.updates.op_status(op(s, "SHUTDOWN", "error", 4, 1))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.backendjobid, got.backendjobstatus,
                          got.backendtime), ("STARTED", 4, "error", when(0)))

    async def test_not_ours_ignored(self):
        """Events of instances that are not snf-<id>, of unknown or deleted
        servers and from another cluster change nothing."""
        s = await self.server(operstate="STARTED")
        gone = await self.server(operstate="STARTED", deleted=True, charged=False)
        for name in ("vm1", "snf-abc", "snf-", "snf-99999"):
            await self.updates.op_status({**op(s, "SHUTDOWN", "success", 4, 1),
                                          "instance": name})
        await self.updates.op_status(op(gone, "SHUTDOWN", "success", 4, 1))
        await self.updates.op_status({**op(s, "SHUTDOWN", "success", 4, 1),
                                      "cluster": "other.example.org"})
        self.assertEqual((await self.get(s)).operstate, "STARTED")
        self.assertEqual((await self.get(gone)).operstate, "STARTED")
        self.assertEqual(await self.usage(), running())

    async def test_malformed_messages(self):
        """Missing keys and wrong types raise MalformedMessage."""
        s = await self.server()
        good = op(s, "SHUTDOWN", "success", 4, 1)
        bad = [{k: v for k, v in good.items() if k != "jobId"},
               {**good, "jobId": "4"}, {**good, "status": "done"},
               {**good, "event_time": "now"}, {**good, "event_time": [1, 2, 3]},
               {**good, "instance": 42}, {**good, "instance_nics": ["x"]},
               {**good, "job_fields": []}, []]
        for message in bad:
            with self.assertRaises(MalformedMessage):
                await self.updates.op_status(message)
        self.assertEqual((await self.get(s)).operstate, "BUILD")

    async def test_snapshot_ignored(self):
        """OP_INSTANCE_SNAPSHOT events are not handled yet: nothing changes."""
        s = await self.server(operstate="STARTED")
        await self.updates.op_status(op(s, "SNAPSHOT", "success", 4, 1))
        self.assertIsNone((await self.get(s)).backendjobid)


class OrderingTests(UpdateTestCase):
    async def test_older_or_equal_event_ignored(self):
        """An event not newer than backendtime is ignored."""
        s = await self.server(operstate="STARTED")
        await self.updates.op_status(op(s, "SHUTDOWN", "success", 5, 10))
        await self.updates.op_status(op(s, "STARTUP", "success", 6, 10))
        await self.updates.op_status(op(s, "STARTUP", "success", 4, 9.5))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.backendjobid, got.backendtime),
                         ("STOPPED", 5, when(10)))
        self.assertEqual(await self.usage(), stopped())

    async def test_intermediate_statuses_of_newer_jobs(self):
        """Queued and running statuses of a newer job are recorded without
        advancing backendtime, so the job's own later statuses apply."""
        s = await self.server(operstate="STARTED")
        await self.updates.op_status(op(s, "SHUTDOWN", "success", 5, 10))
        await self.updates.op_status(op(s, "STARTUP", "queued", 6, 11))
        got = await self.get(s)
        self.assertEqual((got.backendjobid, got.backendjobstatus, got.backendtime),
                         (6, "queued", when(10)))
        await self.updates.op_status(op(s, "STARTUP", "running", 6, 11.5))
        await self.updates.op_status(op(s, "STARTUP", "success", 6, 12))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.backendjobstatus, got.backendtime),
                         ("STARTED", "success", when(12)))

    async def test_duplicate_delivery_is_idempotent(self):
        """The same message twice gives the same state and moves quota
        once (an administrator's shutdown: -online, forced)."""
        s = await self.server(operstate="STARTED")
        message = op(s, "SHUTDOWN", "success", 5, 10)
        await self.updates.op_status(message)
        first = await self.get(s)
        await self.updates.op_status(message)
        second = await self.get(s)
        self.assertEqual(first, second)
        self.assertEqual(second.operstate, "STOPPED")
        self.assertEqual(await self.usage(), stopped())
        self.assertEqual(await self.pending(), [])

    async def test_duplicate_task_event_accepts_once(self):
        """A task job's success delivered twice accepts its commission once
        and the second delivery changes nothing."""
        s = await self.server(operstate="STOPPED")
        serial = await self.issue(s, "START")
        await self.db.run("t", store.update_server_txn, s.id, task="START", serial=serial,
                          task_job_id=8)
        message = op(s, "STARTUP", "success", 8, 3)
        await self.updates.op_status(message)
        await self.updates.op_status(message)
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])


class TaskTests(UpdateTestCase):
    async def start_task(self, s: Server, task_name: str, action: str, job: int | None,
                         **extra: Any) -> int:
        await self.charger.drain()
        serial = await self.issue(s, action)
        await self.db.run("t", store.update_server_txn, s.id, task=task_name, serial=serial,
                          task_job_id=job, action=task_name, **extra)
        return serial

    async def test_task_success_accepts(self):
        """The success of the task's job accepts its commission and clears
        the task."""
        s = await self.server(operstate="STOPPED")
        await self.start_task(s, "START", "START", 8)
        self.assertEqual((await self.usage())["cpu"], (0, 1))
        await self.updates.op_status(op(s, "STARTUP", "success", 8, 3))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task, got.task_job_id, got.serial),
                         ("STARTED", "", None, None))
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_task_error_rejects(self):
        """The failure (or cancel) of the task's job rejects its commission,
        clears the task and keeps the state."""
        for status in ("error", "canceled"):
            s = await self.server(operstate="STARTED", charged=False)
            await self.qh.issue("cyclades", provisions(s, charges(s, "BUILD")),
                                auto_accept=True)
            before = await self.usage()
            await self.start_task(s, "STOP", "STOP", 8)
            await self.updates.op_status(op(s, "SHUTDOWN", status, 8, 3))
            got = await self.get(s)
            self.assertEqual((got.operstate, got.task, got.serial), ("STARTED", "", None))
            self.assertEqual(await self.usage(), before)
        self.assertEqual(await self.pending(), [])

    async def test_adoption_before_job_id_is_stored(self):
        """An event of the task's opcode arriving while task_job_id is still
        NULL makes that job the task's job."""
        s = await self.server(operstate="STARTED")
        await self.start_task(s, "STOP", "STOP", None)
        await self.updates.op_status(op(s, "SHUTDOWN", "queued", 9, 1))
        self.assertEqual((await self.get(s)).task_job_id, 9)
        await self.updates.op_status(op(s, "SHUTDOWN", "success", 9, 2))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task), ("STOPPED", ""))
        self.assertEqual(await self.usage(), stopped())
        self.assertEqual(await self.pending(), [])

    async def test_adoption_of_a_final_event(self):
        """A task job's final event arriving first is adopted too."""
        s = await self.server(operstate="STOPPED")
        await self.start_task(s, "START", "START", None)
        await self.updates.op_status(op(s, "STARTUP", "success", 9, 2))
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task, got.task_job_id), ("STARTED", "", None))
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_no_adoption_of_other_opcodes(self):
        """An event of another opcode is not the task's: the task stays
        pending and the change is charged on its own."""
        s = await self.server(operstate="STARTED")
        serial = await self.start_task(s, "STOP", "STOP", None)
        await self.updates.op_status(op(s, "REBOOT", "success", 9, 2))
        got = await self.get(s)
        self.assertEqual((got.task, got.task_job_id, got.serial), ("STOP", None, serial))
        self.assertEqual(await self.pending(), [serial])

    async def test_no_adoption_of_a_job_seen_finished(self):
        """A redelivered final event of a job already seen finishing is not
        adopted by a newer task of the same kind."""
        s = await self.server(operstate="STARTED")
        await self.start_task(s, "STOP", "STOP", 8)
        failed = op(s, "SHUTDOWN", "error", 8, 3)
        await self.updates.op_status(failed)
        serial = await self.start_task(s, "STOP", "STOP", None)
        await self.updates.op_status(failed)
        got = await self.get(s)
        self.assertEqual((got.task, got.task_job_id, got.serial), ("STOP", None, serial))

    async def test_job_of_a_task_whose_commission_was_rejected_is_charged(self):
        """Reconciliation rejected the commissions of a node that died
        between submitting a task's job and storing its id; when the job
        is adopted and succeeds, its work is charged with a forced
        commission, so usage still follows Ganeti."""
        cases = (("STOPPED", "START", "STARTUP", running()),
                 ("STARTED", "STOP", "SHUTDOWN", stopped()),
                 ("BUILD", "BUILD", "CREATE", running()))
        for state, task_name, opcode, after in cases:
            s = await self.server(operstate=state, charged=task_name != "BUILD")
            before = await self.usage()
            serial = await self.start_task(s, task_name, task_name, None)
            self.assertEqual(await self.charger.reconcile(), ([], [serial]))
            self.assertEqual(await self.usage(), before)
            await self.updates.op_status(op(s, opcode, "success", 9, 2))
            got = await self.get(s)
            self.assertEqual((got.task, got.serial), ("", None))
            self.assertEqual(await self.usage(), after, task_name)
            self.assertEqual(await self.pending(), [])
            # The next case starts from nothing.
            await self.qh.issue("cyclades", provisions(got, charges(got, "DESTROY")),
                                auto_accept=True)
            await self.db.run("t", store.update_server_txn, s.id, deleted=True)

    async def test_failed_job_of_a_rejected_task_moves_nothing(self):
        """A task whose commission was rejected first and whose job failed
        changes no quota."""
        s = await self.server(operstate="STOPPED")
        serial = await self.start_task(s, "START", "START", None)
        await self.charger.reconcile()
        await self.updates.op_status(op(s, "STARTUP", "error", 9, 2))
        self.assertEqual((await self.get(s)).serial, None)
        self.assertEqual(await self.usage(), stopped())
        self.assertEqual(await self.pending(), [])
        self.assertNotIn(serial, await self.pending())

    async def test_resize_task(self):
        """A RESIZE task's SET_PARAMS success switches the flavor to the
        one with the new vcpus/memory and accepts the commission."""
        s = await self.server(operstate="STOPPED")
        serial = await self.charger.issue(provisions(s, charges(s, "RESIZE", self.big)))
        await self.db.run("t", store.update_server_txn, s.id, task="RESIZE", serial=serial,
                          task_job_id=11)
        await self.updates.op_status(op(
            s, "SET_PARAMS", "success", 11, 3,
            job_fields={"beparams": {"vcpus": 2, "maxmem": 1024, "minmem": 1024}}))
        got = await self.get(s)
        self.assertEqual((got.flavor.id, got.task, got.operstate),
                         (self.big.id, "", "STOPPED"))
        self.assertEqual(await self.usage(), stopped(2, 1024))
        self.assertEqual(await self.pending(), [])

    async def test_rescue_task(self):
        """The success of a RESCUE task's job sets rescue; UNRESCUE clears it."""
        s = await self.server(operstate="STOPPED")
        await self.start_task(s, "RESCUE", "RESCUE", 12)
        await self.updates.op_status(op(s, "SET_PARAMS", "success", 12, 3))
        self.assertTrue((await self.get(s)).rescue)
        await self.start_task(s, "UNRESCUE", "UNRESCUE", 13)
        await self.updates.op_status(op(s, "SET_PARAMS", "success", 13, 4))
        self.assertFalse((await self.get(s)).rescue)


class ForcedCommissionTests(UpdateTestCase):
    async def test_admin_stop(self):
        """A shutdown the API did not start releases the online resources
        with a forced commission, accepted."""
        s = await self.server(operstate="STARTED")
        await self.updates.op_status(op(s, "SHUTDOWN", "success", 5, 1))
        self.assertEqual(await self.usage(), stopped())
        self.assertEqual(await self.pending(), [])

    async def test_admin_start_over_limit(self):
        """A startup the API did not start charges the online resources even
        beyond the limit (forced)."""
        s = await self.server(operstate="STOPPED")
        await self.qh.set_limit(f"user:{USER}", f"project:{PROJECT}", "cyclades.cpu", 0)
        await self.updates.op_status(op(s, "STARTUP", "success", 5, 1))
        self.assertEqual((await self.get(s)).operstate, "STARTED")
        self.assertEqual(await self.usage(), running())

    async def test_admin_modify_makes_hidden_flavor(self):
        """An administrator's beparams change switches the server to a
        flavor of that shape, made hidden when none exists, and moves the
        cpu/ram quota."""
        s = await self.server(operstate="STARTED")
        await self.updates.op_status(op(s, "SET_PARAMS", "success", 5, 1,
                                        job_fields={"beparams": {"vcpus": 4}}))
        got = await self.get(s)
        self.assertEqual((got.flavor.cpu, got.flavor.ram, got.flavor.disk,
                          got.flavor.allow_create, got.flavor.public),
                         (4, 512, 5, False, False))
        self.assertEqual(await self.usage(), running(4, 512))

    async def test_commission_rejected_when_change_no_longer_applies(self):
        """A forced commission issued for a change that another delivery
        (to another node) applied meanwhile is rejected: quota moves once."""
        s = await self.server(operstate="STOPPED")
        message = op(s, "STARTUP", "success", 5, 1)
        real = self.qh
        calls = []
        other_node = UpdatePath(self.db, self.charger, self.clock)

        class Racing:
            def __getattr__(self, name):
                if name.startswith("__"):
                    raise AttributeError(name)  # not a ledger (zope's __provides__)
                return getattr(real, name)

            async def issue(self, *args, **kwargs):
                serial = await real.issue(*args, **kwargs)
                if not calls:
                    calls.append(serial)
                    await other_node.op_status(message)  # the redelivery wins
                return serial

        self.charger = Charger(self.db, Racing(), "cyclades")
        self.updates = UpdatePath(self.db, self.charger, self.clock)
        await self.updates.op_status(message)
        self.assertEqual(len(calls), 1)
        self.assertEqual((await self.get(s)).operstate, "STARTED")
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_refused_forced_commission(self):
        """When even a forced commission is refused (a release below zero:
        the usage is already off) the change is applied without it."""
        s = await self.server(operstate="STARTED", charged=False)
        await self.updates.op_status(op(s, "SHUTDOWN", "success", 5, 1))
        self.assertEqual((await self.get(s)).operstate, "STOPPED")
        self.assertEqual(await self.usage(), NOTHING)

    async def test_unreachable_quota_holder(self):
        """With the quota holder unreachable a change needing a commission
        raises and changes nothing (reconciliation replays it later)."""
        s = await self.server(operstate="STARTED")
        real = self.qh

        class Unreachable:
            def __getattr__(self, name):
                if name.startswith("__"):
                    raise AttributeError(name)  # not a ledger (zope's __provides__)
                return getattr(real, name)

            async def issue(self, *args, **kwargs):
                raise errors.ServiceUnavailable("identity unreachable")

        updates = UpdatePath(self.db, Charger(self.db, Unreachable(), "cyclades"), self.clock)
        with self.assertRaises(errors.ServiceUnavailable):
            await updates.op_status(op(s, "SHUTDOWN", "success", 5, 1))
        self.assertEqual((await self.get(s)).operstate, "STARTED")


class RemoveTests(UpdateTestCase):
    async def counters(self) -> tuple[int, int, int]:
        b = await self.db.run("t", store.backend_txn, self.backend.id)
        return b.mfree, b.dfree, b.pinst_cnt

    async def test_destroy_task(self):
        """The DESTROY task's remove success deletes the server (DESTROYED,
        no NICs), gives the backend's counters back and accepts the
        forced DESTROY commission."""
        s = await self.server(operstate="STARTED", nics=({"id": 1},))
        before = await self.counters()
        serial = await self.issue(s, "DESTROY")
        await self.db.run("t", store.update_server_txn, s.id, task="DESTROY",
                          serial=serial, task_job_id=20, action="DESTROY")
        await self.updates.op_status(op(s, "REMOVE", "success", 20, 5))
        got = await self.get(s)
        self.assertEqual((got.deleted, got.operstate, got.nics, got.task, got.backendtime),
                         (True, "DESTROYED", (), "", when(5)))
        self.assertEqual(await self.counters(),
                         (before[0] + 512, before[1] + 5 * 1024, before[2] - 1))
        self.assertEqual(await self.usage(), NOTHING)
        self.assertEqual(await self.pending(), [])
        # Later events of the deleted server change nothing.
        await self.updates.op_status(op(s, "STARTUP", "success", 21, 6))
        self.assertEqual((await self.get(s)).operstate, "DESTROYED")

    async def test_remove_after_its_commission_was_rejected(self):
        """A delete whose commission reconciliation rejected first (its
        node died before storing the job's id) still gives the server's
        quota back when Ganeti removes the instance."""
        s = await self.server(operstate="STARTED")
        serial = await self.issue(s, "DESTROY")
        await self.db.run("t", store.update_server_txn, s.id, task="DESTROY",
                          serial=serial, action="DESTROY")
        self.assertEqual(await self.charger.reconcile(), ([], [serial]))
        await self.updates.op_status(op(s, "REMOVE", "success", 20, 5))
        self.assertTrue((await self.get(s)).deleted)
        self.assertEqual(await self.usage(), NOTHING)
        self.assertEqual(await self.pending(), [])

    async def test_other_job_during_a_pending_delete_moves_no_quota(self):
        """A stop (or a rebuild's shutdown) that ends while a delete is
        pending moves no quota: the DESTROY commission, made from the
        running state, releases the server's share once; the remove then
        leaves the user's other server's share held."""
        await self.server(operstate="STARTED")   # another running server
        s = await self.server(operstate="STARTED")
        serial = await self.issue(s, "DESTROY")
        await self.db.run("t", store.update_server_txn, s.id, task="DESTROY",
                          serial=serial, task_job_id=20, action="DESTROY")
        await self.updates.op_status(op(s, "SHUTDOWN", "success", 19, 4))
        self.assertEqual((await self.get(s)).operstate, "STOPPED")
        self.assertEqual(await self.pending(), [serial])
        await self.updates.op_status(op(s, "REMOVE", "success", 20, 5))
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_remove_expires_server_params(self):
        """A remove that deletes the server drops its build parameters."""
        s = await self.server(operstate="BUILD")
        await self.db.run("t", store.put_params_txn, "k", s.id, {"img_passwd": "pw"})
        await self.updates.op_status(op(s, "REMOVE", "success", 31, 5))
        self.assertTrue((await self.get(s)).deleted)
        self.assertIsNone(await self.db.run("t", store.take_params_txn, "k"))

    async def test_remove_of_missing_instance(self):
        """A remove failing because the instance no longer exists deletes
        the server too."""
        s = await self.server(operstate="STOPPED")
        serial = await self.issue(s, "DESTROY")
        await self.db.run("t", store.update_server_txn, s.id, task="DESTROY",
                          serial=serial, task_job_id=20)
        await self.updates.op_status(op(
            s, "REMOVE", "error", 20, 5,
            result=["OpPrereqError", ["Instance 'snf-1' not known", "unknown_entity"]]))
        self.assertTrue((await self.get(s)).deleted)
        self.assertEqual(await self.usage(), NOTHING)

    async def test_failed_remove(self):
        """Any other remove failure keeps the server, clears the task and
        rejects the DESTROY commission."""
        s = await self.server(operstate="STARTED")
        serial = await self.issue(s, "DESTROY")
        await self.db.run("t", store.update_server_txn, s.id, task="DESTROY",
                          serial=serial, task_job_id=20)
        await self.updates.op_status(op(
            s, "REMOVE", "error", 20, 5, result=["OpExecError", ["disk busy", "wrong_state"]]))
        got = await self.get(s)
        self.assertEqual((got.deleted, got.operstate, got.task), (False, "STARTED", ""))
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_admin_remove(self):
        """A remove the API did not start releases everything with a forced
        commission, and rejects a pending task's commission."""
        s = await self.server(operstate="STOPPED")
        serial = await self.issue(s, "START")
        await self.db.run("t", store.update_server_txn, s.id, task="START",
                          serial=serial, task_job_id=30)
        await self.updates.op_status(op(s, "REMOVE", "success", 31, 5))
        got = await self.get(s)
        self.assertEqual((got.deleted, got.task, got.serial), (True, "", None))
        self.assertEqual(await self.usage(), NOTHING)
        self.assertEqual(await self.pending(), [])


class OrderTests(UpdateTestCase):
    """Events of one server handed over together (the dispatcher's
    prefetch) are applied one at a time, in arrival order, skipping the
    intermediate ones a later event of the same job makes useless."""

    async def start_time(self, server: Server, job: int) -> datetime.datetime:
        rows = await self.db.run("t", lambda txn: (txn.execute(
            "SELECT start_time FROM cyclades_job_events WHERE server_id = %s AND job_id = %s",
            (server.id, job)), txn.fetchall())[1])
        self.assertEqual(len(rows), 1)
        return rows[0][0]

    async def test_intermediate_events_are_skipped(self):
        """A job's queued and running events waiting behind its success are
        not applied; the success is, and the opcode's start is the first
        event's time."""
        s = await self.server(task="BUILD", task_job_id=3, backendjobid=3)
        applied = recorded_runs(self, self.db)
        await defer.gatherResults([defer.ensureDeferred(self.updates.op_status(m)) for m in (
            op(s, "CREATE", "queued", 3, 1), op(s, "CREATE", "running", 3, 2),
            op(s, "CREATE", "running", 3, 2.5), op(s, "CREATE", "success", 3, 3))])
        self.assertEqual(applied.count("cyclades.op_status"), 2)  # the first and the last
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task, got.backendjobstatus, got.backendtime),
                         ("STARTED", "", "success", when(3)))
        self.assertEqual(await self.start_time(s, 3), when(1))
        self.assertEqual(await self.usage(), running())

    async def test_final_events_and_other_jobs_are_not_skipped(self):
        """Only a later event of the same job and opcode supersedes one: a
        success followed by a later job's events, and a newer job's
        queued status after an older job's, are all applied, in order."""
        s = await self.server(operstate="STARTED")
        applied = recorded_runs(self, self.db)
        await defer.gatherResults([defer.ensureDeferred(self.updates.op_status(m)) for m in (
            op(s, "SHUTDOWN", "running", 5, 1), op(s, "SHUTDOWN", "success", 5, 2),
            op(s, "STARTUP", "queued", 6, 3), op(s, "STARTUP", "running", 6, 4))])
        # The second STARTUP event supersedes the first; the success runs
        # twice (the first run learns its forced commission).
        self.assertEqual(applied.count("cyclades.op_status"), 4)
        got = await self.get(s)
        self.assertEqual((got.operstate, got.backendjobid, got.backendjobstatus,
                          got.backendtime), ("STOPPED", 6, "running", when(2)))
        self.assertEqual(await self.start_time(s, 6), when(3))

    async def test_an_older_event_arriving_later_supersedes_nothing(self):
        """A redelivered older event behind a newer one of the same job
        does not make the newer one skipped (it is then ignored as old)."""
        s = await self.server(operstate="STARTED")
        applied = recorded_runs(self, self.db)
        await defer.gatherResults([defer.ensureDeferred(self.updates.op_status(m)) for m in (
            op(s, "SHUTDOWN", "running", 5, 1), op(s, "SHUTDOWN", "running", 5, 3),
            op(s, "SHUTDOWN", "queued", 5, 0.5))])
        self.assertEqual(applied.count("cyclades.op_status"), 3)  # none skipped
        got = await self.get(s)
        self.assertEqual((got.backendjobstatus, got.backendlogmsg), ("queued",
                                                                      "shutdown queued"))

    async def test_a_failing_event_fails_alone(self):
        """An event whose transaction raises fails its own message; the
        server's later events still apply."""
        s = await self.server(operstate="STARTED")
        run = self.db.run
        calls = []

        def failing_once(name: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            if name == "cyclades.op_status" and calls.count(name) == 1:
                return defer.fail(RuntimeError("boom"))
            return run(name, *args, **kwargs)

        self.db.run = failing_once
        self.addCleanup(setattr, self.db, "run", run)
        first = defer.ensureDeferred(self.updates.op_status(op(s, "SHUTDOWN", "success", 5, 1)))
        second = defer.ensureDeferred(self.updates.op_status(op(s, "STARTUP", "success", 6, 2)))
        await self.assertFailure(first, RuntimeError)
        await second
        self.assertEqual((await self.get(s)).backendjobid, 6)


class ProgressTests(UpdateTestCase):
    def progress(self, s: Server, kind: str, t: float, **extra: Any) -> dict[str, Any]:
        return {"type": kind, "instance": f"snf-{s.id}", "event_time": at(t), **extra}

    async def test_build_percentage_is_monotonic(self):
        """image-copy-progress raises buildpercentage, never lowers it, and
        older messages are ignored."""
        s = await self.server()
        await self.updates.progress(self.progress(s, "image-copy-progress", 1, progress=40))
        await self.updates.progress(self.progress(s, "image-copy-progress", 3, progress=30))
        await self.updates.progress(self.progress(s, "image-copy-progress", 2, progress=90))
        got = await self.get(s)
        self.assertEqual((got.buildpercentage, got.backendtime), (40, when(3)))
        await self.updates.progress(self.progress(s, "image-copy-progress", 4,
                                                  progress=250))
        self.assertEqual((await self.get(s)).buildpercentage, 100)

    async def test_progress_only_while_building(self):
        """Copy progress of a server that is no longer building is ignored."""
        s = await self.server(operstate="STARTED")
        await self.updates.progress(self.progress(s, "image-copy-progress", 1, progress=40))
        self.assertEqual((await self.get(s)).buildpercentage, 0)

    async def test_diagnostics(self):
        """image-info/-warning/-error/-helper messages become diagnostics."""
        s = await self.server()
        await self.updates.progress(self.progress(s, "image-info", 1, messages=["copying"]))
        await self.updates.progress(self.progress(s, "image-error", 2,
                                                  messages=["no space", "left"]))
        await self.updates.progress(self.progress(s, "image-helper", 3, subtype="warning",
                                                  messages=["odd"], stderr="trace"))
        diags = await self.db.run("t", store.diagnostics_txn, s.id)
        self.assertEqual([(d["level"], d["source"], d["message"], d["details"])
                          for d in diags],
                         [("WARNING", "image-helper", "odd", "trace"),
                          ("ERROR", "image-error", "no space\nleft", None),
                          ("INFO", "image-info", "copying", None)])
        self.assertEqual(diags[0]["source_date"], when(3))

    async def test_bad_progress(self):
        """Progress messages with missing or wrong fields raise."""
        s = await self.server()
        for message in (self.progress(s, "image-copy-progress", 1),
                        self.progress(s, "image-copy-progress", 1, progress="x"),
                        self.progress(s, "image-nonsense", 1),
                        {"type": "image-info", "instance": f"snf-{s.id}"}):
            with self.assertRaises(MalformedMessage):
                await self.updates.progress(message)


class SimulateTests(UpdateTestCase):
    async def test_simulated_event(self):
        """A simulated event is job 0 with the reconciliation log message,
        applied even when backendtime is ahead of the clock."""
        s = await self.server(operstate="STARTED", backendtime=when(5000))
        outcome = await self.updates.simulate(s.id, "OP_INSTANCE_SHUTDOWN", "success")
        got = await self.get(s)
        self.assertEqual((got.operstate, got.backendjobid, got.backendlogmsg),
                         ("STOPPED", 0, SIMULATED_LOGMSG))
        self.assertGreater(got.backendtime, when(5000))
        self.assertIn("STARTED -> STOPPED", outcome)
        self.assertEqual(await self.usage(), stopped())

    async def test_simulated_event_completes_the_task(self):
        """A simulated event of the task's opcode counts as the task's job
        (its job is gone): the commission is accepted."""
        s = await self.server(operstate="STOPPED")
        serial = await self.issue(s, "START")
        await self.db.run("t", store.update_server_txn, s.id, task="START", serial=serial,
                          task_job_id=40)
        await self.updates.simulate(s.id, "OP_INSTANCE_STARTUP", "success")
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task), ("STARTED", ""))
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_clear_task(self):
        """clear_task drops a task still waiting for the given job and
        rejects its commission; a task that moved on is kept."""
        s = await self.server(operstate="STOPPED")
        serial = await self.issue(s, "START")
        await self.db.run("t", store.update_server_txn, s.id, task="START", serial=serial,
                          task_job_id=40)
        self.assertFalse(await self.updates.clear_task(s.id, 41))
        self.assertTrue(await self.updates.clear_task(s.id, 40))
        got = await self.get(s)
        self.assertEqual((got.task, got.serial, got.task_job_id), ("", None, None))
        self.assertEqual(await self.usage(), stopped())
        self.assertEqual(await self.pending(), [])
