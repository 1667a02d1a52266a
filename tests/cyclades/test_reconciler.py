"""The reconciler (``snfd.cyclades.reconciler``): stale servers, orphan
instances, unsynced state/flavor/NICs and pending tasks found and fixed,
against an in-test RAPI whose answers each test sets, and once against the
Ganeti simulator; plus the leader duty."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd.cyclades import store
from snfd.cyclades.reconciler import (
    ReconcileDuty,
    Reconciler,
    Report,
    expand_fixes,
    instance_nics,
)
from snfd.cyclades.updates import SIMULATED_LOGMSG, OpEvent, UpdatePath
from snfd.ganeti.rapi import RapiPool, RapiUnavailable
from snfd.ganeti_sim import SimulatedCluster
from snfd.httpclient import HTTPClientPool
from snfd.interfaces import ILeaderDuty
from snfd.metrics import Metrics
from tests.cyclades.test_updates import (
    CLUSTER,
    NOTHING,
    CycladesDBMixin,
    running,
    stopped,
)


class StubRapi:
    """The ``GanetiRapi`` calls the reconciler makes, answered from lists
    a test fills in."""

    def __init__(self) -> None:
        self.instance_list: list[dict[str, Any]] = []
        self.job_list: list[dict[str, Any]] = []
        self.full_jobs: dict[int, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.down = False
        #: instances the bulk list lacks but a GET of one finds
        self.made_since: list[dict[str, Any]] = []

    async def instances(self) -> list[dict[str, Any]]:
        if self.down:
            raise RapiUnavailable(CLUSTER, "connection refused")
        return self.instance_list

    async def jobs(self) -> list[dict[str, Any]]:
        return self.job_list

    async def instance(self, name: str) -> dict[str, Any] | None:
        return next((i for i in [*self.instance_list, *self.made_since] if i["name"] == name),
                    None)

    async def job(self, job_id: int) -> dict[str, Any] | None:
        return self.full_jobs.get(job_id)

    async def delete_instance(self, name: str, shutdown_timeout: int | None = None) -> int:
        self.deleted.append(name)
        return 900 + len(self.deleted)


class StubPool:
    def __init__(self) -> None:
        self.rapis: dict[str, StubRapi] = {}

    def client(self, target: Any) -> StubRapi:
        return self.rapis.setdefault(target.cluster, StubRapi())


def instance(server_id: int, running: bool = True, vcpus: int = 1, memory: int = 512,
             nics: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A bulk ``/2/instances`` entry."""
    nics = nics or []
    entry = {"name": f"snf-{server_id}", "oper_state": running,
             "admin_state": "up" if running else "down",
             "beparams": {"vcpus": vcpus, "maxmem": memory, "minmem": memory,
                          "memory": memory},
             "nic.names": [n.get("name") for n in nics], "nic.ips": [n.get("ip") for n in nics],
             "nic.macs": [n.get("mac") for n in nics],
             "nic.uuids": [n.get("uuid") for n in nics],
             "nic.networks": [n.get("network") for n in nics],
             "nic.modes": [n.get("mode") for n in nics],
             "nic.links": [n.get("link") for n in nics],
             "disk.sizes": [], "disk.names": [], "disk.uuids": []}
    entry.update(extra)
    return entry


class ReconcilerTestCase(CycladesDBMixin, unittest.TestCase):
    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def asyncSetUp(self) -> None:
        await self.setUpDB()
        self.clock = task.Clock()
        self.clock.advance(time.time() + 3600)  # everything is an hour old
        self.pool = StubPool()
        self.rapi = self.pool.rapis.setdefault(CLUSTER, StubRapi())
        self.updates = UpdatePath(self.db, self.charger, self.clock)
        self.reconciler = Reconciler(self.db, self.pool, self.updates, self.clock)

    def job(self, job_id: int, opcode: str, server_id: int, status: str,
            ended: float | None = None, **extra: Any) -> dict[str, Any]:
        """A job of the bulk listing; ``ended`` seconds before now."""
        end = None if ended is None else self.clock.seconds() - ended
        entry = {"id": job_id, "status": status, "opstatus": [status],
                 "ops": [{"OP_ID": opcode, "instance_name": f"snf-{server_id}"}],
                 "end_ts": None if end is None else [int(end), 0]}
        entry.update(extra)
        return entry

    async def reconcile(self, *fix: str) -> Report:
        return await self.reconciler.reconcile(fix=frozenset(fix))


class StaleTests(ReconcilerTestCase):
    async def test_stale_server(self):
        """A live server missing from Ganeti is stale; fixing simulates a
        remove: deleted and its quota released."""
        s = await self.server(operstate="STARTED")
        report = await self.reconcile()
        self.assertEqual([sid for sid, _ in report.stale], [s.id])
        self.assertFalse((await self.get(s)).deleted)
        report = await self.reconcile("stale")
        got = await self.get(s)
        self.assertEqual((got.deleted, got.operstate, got.backendlogmsg),
                         (True, "DESTROYED", SIMULATED_LOGMSG))
        self.assertEqual(len(report.fixed), 1)
        self.assertEqual(await self.usage(), NOTHING)
        self.assertTrue((await self.reconcile()).clean)

    async def test_instance_made_since_the_lists_is_not_stale(self):
        """A server the instance list lacks, whose instance Ganeti has when
        asked again (made since the list was read), is left alone; it is
        stale once Ganeti lacks it when asked too."""
        s = await self.server(operstate="STARTED")
        self.rapi.made_since.append(instance(s.id))
        report = await self.reconcile("stale")
        self.assertEqual(report.stale, [])
        self.assertIn((s.id, "made in Ganeti since it was read"), report.skipped)
        self.assertFalse((await self.get(s)).deleted)
        self.rapi.made_since.clear()
        report = await self.reconcile("stale")
        self.assertEqual([sid for sid, _ in report.stale], [s.id])
        self.assertTrue((await self.get(s)).deleted)

    async def test_build_with_failed_create(self):
        """A BUILD server whose create job failed (or that Ganeti does not
        know) is stale; fixing simulates the create error: ERROR."""
        failed = await self.server(task="BUILD", task_job_id=7, backendjobid=7)
        unknown = await self.server(task="BUILD", task_job_id=8, backendjobid=8)
        self.rapi.full_jobs[7] = {**self.job(7, "OP_INSTANCE_CREATE", failed.id, "error",
                                             ended=600),
                                  "opresult": [["OpExecError", ["boom", "internal_error"]]]}
        report = await self.reconcile("stale")
        self.assertEqual(sorted(sid for sid, _ in report.stale), [failed.id, unknown.id])
        for s in (failed, unknown):
            got = await self.get(s)
            self.assertEqual((got.operstate, got.task, got.deleted), ("ERROR", "", False))

    async def test_build_in_progress_skipped(self):
        """A BUILD server whose create job still runs, or that has no job
        yet but is young, is left alone."""
        running_ = await self.server(task="BUILD", task_job_id=7, backendjobid=7)
        self.rapi.job_list.append(self.job(7, "OP_INSTANCE_CREATE", running_.id, "running"))
        self.clock.advance(-3600)
        young = await self.server(task="BUILD")
        report = await self.reconcile("all")
        self.assertEqual(sorted(sid for sid, _ in report.skipped),
                         sorted([running_.id, young.id]))
        self.assertEqual(report.stale, [])
        self.assertEqual((await self.get(running_)).operstate, "BUILD")

    async def test_error_server_stale_only_when_destroy_asked(self):
        """An ERROR server missing from Ganeti is stale only when its user
        asked to destroy it."""
        kept = await self.server(operstate="ERROR")
        asked = await self.server(operstate="ERROR", action="DESTROY")
        report = await self.reconcile()
        self.assertEqual([sid for sid, _ in report.stale], [asked.id])
        self.assertNotIn(kept.id, [sid for sid, _ in report.stale])


class OrphanTests(ReconcilerTestCase):
    async def test_orphans(self):
        """An snf-<id> instance without a live server is an orphan; fixing
        deletes the instance.  Other instances are not Cyclades'."""
        gone = await self.server(operstate="STARTED", deleted=True, charged=False)
        self.rapi.instance_list += [instance(gone.id), instance(424242),
                                    {"name": "someone-elses", "oper_state": True}]
        report = await self.reconcile()
        self.assertEqual(sorted(sid for sid, _ in report.orphans), [gone.id, 424242])
        self.assertEqual(self.rapi.deleted, [])
        await self.reconcile("orphans")
        self.assertEqual(sorted(self.rapi.deleted), sorted([f"snf-{gone.id}", "snf-424242"]))


class UnsyncedTests(ReconcilerTestCase):
    async def test_state(self):
        """A state mismatch is fixed with a simulated startup or shutdown,
        charged as Ganeti's own change."""
        s = await self.server(operstate="STOPPED")
        self.rapi.instance_list.append(instance(s.id, running=True))
        report = await self.reconcile("unsynced")
        self.assertEqual([sid for sid, _ in report.unsynced], [s.id])
        self.assertEqual((await self.get(s)).operstate, "STARTED")
        self.assertEqual(await self.usage(), running())
        self.assertTrue((await self.reconcile()).clean)

    async def test_repair_stamped_in_ganetis_clock(self):
        """With this node's clock two hours ahead of the Ganeti master's, a
        repair is stamped with the latest time seen in Ganeti's jobs, so
        the master's next event for the server (a minute later by its
        clock) is applied rather than ignored as older than the repair."""
        s = await self.server(operstate="STOPPED")
        self.rapi.instance_list.append(instance(s.id, running=True))
        self.rapi.job_list.append(self.job(3, "OP_INSTANCE_STARTUP", s.id + 1, "success",
                                           ended=7200))
        await self.reconcile("unsynced")
        self.assertEqual((await self.get(s)).operstate, "STARTED")
        ganeti_now = datetime.datetime.fromtimestamp(self.clock.seconds() - 7200 + 60,
                                                     datetime.UTC)
        outcome = await self.updates.apply(OpEvent(
            server_id=s.id, instance=f"snf-{s.id}", opcode="OP_INSTANCE_SHUTDOWN",
            status="success", job_id=4, event_time=ganeti_now))
        self.assertNotIn("ignored", outcome)
        self.assertEqual((await self.get(s)).operstate, "STOPPED")

    async def test_build_to_stopped(self):
        """A BUILD server Ganeti shows stopped gets a simulated create
        success and then a shutdown."""
        s = await self.server(task="BUILD", task_job_id=5, backendjobid=5)
        self.rapi.instance_list.append(instance(s.id, running=False))
        await self.reconcile("unsynced")
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task), ("STOPPED", ""))
        self.assertEqual(await self.usage(), stopped())

    async def test_flavor(self):
        """vcpus/memory differing from the flavor switch the flavor."""
        s = await self.server(operstate="STARTED")
        self.rapi.instance_list.append(instance(s.id, vcpus=2, memory=1024))
        report = await self.reconcile("unsynced")
        self.assertEqual(len(report.unsynced), 1)
        self.assertEqual((await self.get(s)).flavor.id, self.big.id)
        self.assertEqual(await self.usage(), running(2, 1024))

    async def test_nics(self):
        """NICs differing from Ganeti's are replaced by Ganeti's."""
        s = await self.server(operstate="STARTED", nics=({"id": 1, "uuid": "old"},))
        nics = [{"name": "snf-nic-3", "uuid": "n3", "mac": "aa:00:00:00:00:03",
                 "ip": "10.0.0.3", "network": "snf-net-1", "mode": "bridged", "link": "br0"}]
        self.rapi.instance_list.append(instance(s.id, nics=nics))
        self.assertEqual(instance_nics(self.rapi.instance_list[0]), nics)
        report = await self.reconcile("unsynced")
        self.assertEqual([what for _, what in report.unsynced], ["NICs differ from Ganeti's"])
        got = await self.get(s)
        self.assertEqual([(n["id"], n["uuid"], n["ip"]) for n in got.nics], [(3, "n3", "10.0.0.3")])
        self.assertTrue((await self.reconcile()).clean)

    async def test_busy_servers_skipped(self):
        """Servers with a job in progress or one that just ended are left
        alone."""
        a = await self.server(operstate="STOPPED")
        b = await self.server(operstate="STOPPED")
        self.rapi.instance_list += [instance(a.id), instance(b.id)]
        self.rapi.job_list += [self.job(1, "OP_INSTANCE_STARTUP", a.id, "running"),
                               self.job(2, "OP_INSTANCE_STARTUP", b.id, "success", ended=1)]
        report = await self.reconcile("all")
        self.assertEqual(sorted(sid for sid, _ in report.skipped), sorted([a.id, b.id]))
        self.assertEqual((await self.get(a)).operstate, "STOPPED")


class PendingTaskTests(ReconcilerTestCase):
    async def test_finished_task_job(self):
        """A task whose job finished without its event being applied gets
        that job's final event simulated: the commission is accepted."""
        s = await self.server(operstate="STOPPED")
        serial = await self.issue(s, "START")
        await self.db.run("t", store.update_server_txn, s.id, task="START", serial=serial,
                          task_job_id=50)
        self.rapi.instance_list.append(instance(s.id, running=True))
        self.rapi.full_jobs[50] = {**self.job(50, "OP_INSTANCE_STARTUP", s.id, "success",
                                              ended=600), "opresult": [None]}
        report = await self.reconcile("pending_tasks")
        self.assertEqual([sid for sid, _ in report.pending_tasks], [s.id])
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task, got.backendjobid), ("STARTED", "", 50))
        self.assertEqual(await self.usage(), running())
        self.assertEqual(await self.pending(), [])

    async def test_unknown_task_job(self):
        """A task whose job Ganeti does not know is cleared and its
        commission rejected."""
        s = await self.server(operstate="STOPPED")
        serial = await self.issue(s, "START")
        await self.db.run("t", store.update_server_txn, s.id, task="START", serial=serial,
                          task_job_id=51)
        self.rapi.instance_list.append(instance(s.id, running=False))
        report = await self.reconcile("pending_tasks")
        self.assertEqual(len(report.pending_tasks), 1)
        got = await self.get(s)
        self.assertEqual((got.operstate, got.task, got.serial), ("STOPPED", "", None))
        self.assertEqual(await self.usage(), stopped())
        self.assertEqual(await self.pending(), [])


class ReportTests(ReconcilerTestCase):
    async def test_unavailable_backend(self):
        """A backend whose RAPI cannot be reached is reported; the others
        are still reconciled."""
        other = await self.db.run("t", store.add_backend_txn, "other", "https://127.0.0.1:2")
        s = await self.server(operstate="STARTED", backend_id=other.id)
        self.rapi.down = True
        report = await self.reconcile("stale")
        self.assertEqual([c for c, _ in report.unavailable], [CLUSTER])
        self.assertTrue((await self.get(s)).deleted)
        self.assertIn("unavailable: " + CLUSTER, report.summary())
        self.assertIn(f"server {s.id}", str(report))
        self.assertEqual(report.as_json()["stale"][0]["server"], s.id)
        self.assertEqual(report.as_json()["unavailable"][0]["backend"], CLUSTER)

    async def test_backend_choice(self):
        """Only the backends asked for are read; unknown ids are reported;
        offline backends are left out by default."""
        s = await self.server(operstate="STARTED")
        await self.db.run("t", store.update_backend_txn, self.backend.id, offline=True)
        self.assertEqual((await self.reconcile()).stale, [])
        report = await self.reconciler.reconcile(backend_ids=[self.backend.id, 999])
        self.assertEqual([sid for sid, _ in report.stale], [s.id])
        self.assertEqual(report.unavailable, [("999", "no such backend")])

    def test_fix_names(self):
        """'all' means every fix; an unknown name is refused."""
        self.assertEqual(expand_fixes(["all"]),
                         {"stale", "orphans", "unsynced", "pending_tasks"})
        self.assertRaises(ValueError, expand_fixes, ["everything"])


class FakeLeadership:
    def __init__(self) -> None:
        self.fenced_calls: list[str] = []

    async def fenced(self, name, interaction, *args, **kwargs):
        self.fenced_calls.append(name)
        return interaction(None, *args, **kwargs)


class DutyTests(ReconcilerTestCase):
    async def test_duty_fixes_and_keeps_going(self):
        """The duty reconciles with every fix at start and every interval,
        through a fenced check; a failed run is logged and the next one
        still comes."""
        s = await self.server(operstate="STARTED")
        duty = ReconcileDuty(self.reconciler, self.clock, interval=60.0)
        verifyObject(ILeaderDuty, duty)
        leadership = FakeLeadership()
        duty.start(leadership)
        self.addCleanup(duty.stop)
        await duty.stop()
        self.assertTrue((await self.get(s)).deleted)
        self.assertEqual(leadership.fenced_calls, ["cyclades.reconcile_term"])

        calls = []

        class Broken:
            async def reconcile(self, **kwargs):
                calls.append(kwargs)
                raise RuntimeError("boom")

        duty = ReconcileDuty(Broken(), self.clock, interval=60.0)  # type: ignore[arg-type]
        duty.start(leadership)
        self.clock.advance(60)
        await duty.stop()
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class SimulatorTests(CycladesDBMixin, unittest.TestCase):
    """The reconciler against the Ganeti simulator over HTTPS."""

    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def asyncSetUp(self) -> None:
        from twisted.internet import reactor

        await self.setUpDB()
        self.cluster = SimulatedCluster(reactor, Path(self.mktemp()), CLUSTER,
                                        queue_delay=0.01, exec_time=0.01)
        await self.cluster.start()
        self.addCleanup(lambda: defer.ensureDeferred(self.cluster.stop()))
        await self.db.run("t", store.update_backend_txn, self.backend.id,
                          rapi_url=self.cluster.url, username=self.cluster.username,
                          password=self.cluster.password,
                          certificate=self.cluster.certificate)
        http = HTTPClientPool(reactor, Metrics())
        self.addCleanup(lambda: defer.ensureDeferred(http.close()))
        self.pool = RapiPool(http)
        self.updates = UpdatePath(self.db, self.charger, reactor)
        self.reconciler = Reconciler(self.db, self.pool, self.updates, reactor, settle=0.0)
        backend = await self.db.run("t", store.backend_txn, self.backend.id)
        from snfd.cyclades.allocator import rapi_for
        self.rapi = rapi_for(self.pool, backend)

    async def create(self, name: str) -> None:
        job = await self.rapi.create_instance({
            "mode": "create", "name": name, "disk_template": "diskless", "disks": [],
            "nics": [{}], "os_type": "noop+default", "name_check": False,
            "ip_check": False, "beparams": {"vcpus": 1, "memory": 512}})
        self.assertEqual((await self.cluster.wait_job(job))["status"], "success")

    async def test_reconcile_against_the_simulator(self):
        """An administrator's stop behind the update path's back, an
        instance without a server and a server without an instance are
        found and fixed; a second run finds nothing."""
        synced = await self.server(operstate="STARTED")
        stale = await self.server(operstate="STARTED")
        await self.create(synced.instance_name)
        await self.create("snf-777777")
        job = self.cluster.admin("OP_INSTANCE_SHUTDOWN", synced.instance_name)
        await self.cluster.wait_job(job)

        report = await self.reconciler.reconcile(fix=frozenset({"all"}))
        self.assertEqual([sid for sid, _ in report.stale], [stale.id])
        self.assertEqual([sid for sid, _ in report.orphans], [777777])
        self.assertIn((synced.id, "state STARTED in the database, STOPPED in Ganeti"),
                      report.unsynced)
        self.assertEqual(report.failed, [])
        got = await self.get(synced)
        self.assertEqual(got.operstate, "STOPPED")
        self.assertEqual(len(got.nics), 1)
        self.assertTrue((await self.get(stale)).deleted)
        self.assertEqual(await self.usage(), stopped())

        for _ in range(200):
            if "snf-777777" not in self.cluster.instances:
                break
            await defer.Deferred.fromCoroutine(_sleep(0.02))
        self.assertNotIn("snf-777777", self.cluster.instances)
        report = await self.reconciler.reconcile(fix=frozenset({"all"}))
        self.assertTrue(report.clean, str(report))


async def _sleep(seconds: float) -> None:
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds, lambda: None)
