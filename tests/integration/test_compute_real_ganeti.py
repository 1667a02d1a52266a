"""Servers on a real Ganeti 3.0 cluster, end to end through snfd's compute API.

Each test brings up a real single-node Ganeti cluster in a network namespace
of its own (``snfd.testing.ganeti.RealGanetiCluster``), a private RabbitMQ, a
fresh database and a ``twistd snfd`` node with the identity, pithos,
cyclades and ganeti-events plugins.  The node watches the cluster's job
queue (``[ganeti-events] queue_dir``) and publishes each job's progress on
the bus, where its dispatcher applies it.  The reconciler's interval is a
day, so every state change the API shows came through the job-queue
watcher and RabbitMQ; the tests also check that the server's recorded
backend job is the very Ganeti job that made the change.

The operator's side is ``snf-manage`` (``backend-add`` against the
cluster's RAPI, ``flavor-create``, ``image-register``, ``user-add``); the
Ganeti side is checked with ``gnt-instance list`` inside the cluster.

Needs root (network namespaces, Ganeti daemons): elsewhere the tests skip
with ``real_ganeti_unavailable()``'s reason.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import psycopg2
from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.cloudnode import User
from tests.integration.real_ganeti import start_node

SERVERS = "/compute/v2.0/servers"
#: Seconds a real Ganeti job (create with a 1 GiB file disk, start, ...) may take.
JOB_WAIT = 180.0


def _job_opcodes(queue_dir: Path, job_id: int) -> list[str]:
    """The opcodes (``OP_ID``) of job ``job_id`` in the cluster's queue,
    live or archived; [] when its file is not found."""
    candidates = [queue_dir / f"job-{job_id}",
                  *sorted((queue_dir / "archive").glob(f"*/job-{job_id}"))]
    for path in candidates:
        with contextlib.suppress(OSError, ValueError):
            job = json.loads(path.read_text())
            return [op.get("input", {}).get("OP_ID", "") for op in job.get("ops", [])]
    return []


class ComputeOnRealGanetiTests(unittest.TestCase):
    """The compute API drives a real Ganeti cluster; the cluster's job
    events come back through the watcher and RabbitMQ."""

    timeout = 900

    async def setUp(self) -> None:
        root = await start_node(self, "snfd-compute-real-", "", "/compute/v2.0/flavors")
        await threads.deferToThread(self.provision, root)

    def provision(self, root: Path) -> None:
        """The operator's part: the backend, a flavor the cluster's instance
        policy accepts (1 GiB file disk), an image and a user."""
        node, cluster = self.node, self.cluster
        backend = json.loads(node.manage(
            "backend-add", cluster.name, "--url", cluster.url, "--username", cluster.username,
            "--password", cluster.password, "--certificate", str(root / "rapi.pem"),
            "--events", "watch", "--json"))
        self.assertIn("file", backend["disk_templates"])
        self.assertEqual(backend["events"], "watch")
        self.assertEqual(backend["hypervisor"], "fake")
        flavors = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                         "--disk", "1", "--disk-template", "file", "--json"))
        self.flavor_id = flavors[0]["id"]
        image_file = root / "tiny.img"
        image_file.write_bytes(b"\0" * 4096)
        image = json.loads(node.manage("image-register", str(image_file), "--name", "Test",
                                       "--property", "OS=debian", "--json"))
        self.image_id = image["id"]
        self.alice = node.add_user("alice@example.org", "Alice")

    # -- helpers (blocking; run in threads) ------------------------------------

    def fail_with_log(self, message: str) -> None:
        raise AssertionError(f"{message}\n--- node log:\n{self.node.tail(80)}")

    def create(self, user: User, name: str) -> int:
        status, body = self.node.api("POST", SERVERS, user.token, {"server": {
            "name": name, "imageRef": self.image_id, "flavorRef": self.flavor_id}})
        if status != 202:
            self.fail_with_log(f"create {name}: {status} {body}")
        self.assertEqual(body["server"]["status"], "BUILD")
        return int(body["server"]["id"])

    def action(self, user: User, sid: int, body: dict[str, Any]) -> None:
        status, answer = self.node.api("POST", f"{SERVERS}/{sid}/action", user.token, body)
        if status != 202:
            self.fail_with_log(f"action {body} on {sid}: {status} {answer}")

    def show(self, user: User, sid: int) -> tuple[int, Any]:
        return self.node.api("GET", f"{SERVERS}/{sid}", user.token)

    def wait_status(self, user: User, sid: int, wanted: str) -> dict[str, Any]:
        """Poll the API until the server shows ``wanted`` with no task pending."""
        deadline = time.monotonic() + JOB_WAIT
        shown: Any = None
        while time.monotonic() < deadline:
            status, shown = self.show(user, sid)
            if status == 200:
                server = shown["server"]
                if server["status"] == "ERROR":
                    self.fail_with_log(f"server {sid} went to ERROR: {self.row(sid)}")
                if server["status"] == wanted and not server["SNF:task_state"]:
                    return dict(server)
            time.sleep(0.5)
        self.fail_with_log(f"server {sid} never became {wanted}; last: {shown};"
                           f" row {self.row(sid)}")
        raise AssertionError("unreachable")

    def wait_gone(self, user: User, sid: int) -> None:
        deadline = time.monotonic() + JOB_WAIT
        while time.monotonic() < deadline:
            status, shown = self.show(user, sid)
            if status == 404 or (status == 200 and shown["server"]["status"] == "DELETED"):
                return
            time.sleep(0.5)
        self.fail_with_log(f"server {sid} was not deleted; row {self.row(sid)}")

    def row(self, sid: int) -> dict[str, Any]:
        """The server's row: state and the last backend job applied to it."""
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT operstate, deleted, backendjobid, backendopcode,"
                            " backendjobstatus, backendlogmsg FROM cyclades_servers"
                            " WHERE id = %s", (sid,))
                found = cur.fetchone()
        finally:
            conn.close()
        if found is None:
            return {}
        keys = ("operstate", "deleted", "backendjobid", "backendopcode",
                "backendjobstatus", "backendlogmsg")
        return dict(zip(keys, found, strict=True))

    def assert_event_applied(self, sid: int, opcode: str) -> int:
        """The server's last applied event is a successful ``opcode`` job
        that exists in the cluster's job queue with that opcode; its id."""
        row = self.row(sid)
        self.assertEqual((row["backendopcode"], row["backendjobstatus"]), (opcode, "success"),
                         row)
        job_id = row["backendjobid"]
        self.assertIsNotNone(job_id, row)
        self.assertIn(opcode, _job_opcodes(self.cluster.queue_dir, job_id))
        return int(job_id)

    async def instances(self) -> dict[str, str]:
        """Ganeti's instances: name -> status (``running``, ``ADMIN_down``...)."""
        out = await self.cluster.gx("gnt-instance", "list", "--no-headers", "--separator=|",
                                    "-o", "name,status")
        return dict(line.split("|", 1) for line in out.split())

    async def call(self, fn: Any, *args: Any) -> Any:
        return await threads.deferToThread(fn, *args)

    # -- tests -----------------------------------------------------------------

    async def test_create_stop_start_reboot_delete(self):
        """Two servers created through the API become ACTIVE and running
        instances on the cluster; stop makes one STOPPED (ADMIN_down in
        Ganeti), start ACTIVE again, reboot leaves it ACTIVE after a
        successful reboot job, and delete removes both from the API and from
        Ganeti.  Each state change is the Ganeti job the server records,
        applied through the watcher and RabbitMQ (the reconciler waits a
        day), and the NICs the events carry are shown."""
        alice = self.alice
        one = await self.call(self.create, alice, "vm-one")
        two = await self.call(self.create, alice, "vm-two")
        for sid in (one, two):
            server = await self.call(self.wait_status, alice, sid, "ACTIVE")
            self.assertEqual(server["progress"], 100)
            self.assertEqual(len(server["attachments"]), 1, server["attachments"])
            self.assertTrue(server["attachments"][0]["mac_address"], server["attachments"])
            await self.call(self.assert_event_applied, sid, "OP_INSTANCE_CREATE")
        names = {sid: f"snf-{sid}" for sid in (one, two)}
        instances = await self.instances()
        self.assertEqual({names[one]: "running", names[two]: "running"},
                         {n: instances.get(n) for n in names.values()})

        await self.call(self.action, alice, one, {"os-stop": {}})
        await self.call(self.wait_status, alice, one, "STOPPED")
        await self.call(self.assert_event_applied, one, "OP_INSTANCE_SHUTDOWN")
        self.assertEqual((await self.instances())[names[one]], "ADMIN_down")

        await self.call(self.action, alice, one, {"os-start": {}})
        await self.call(self.wait_status, alice, one, "ACTIVE")
        started = await self.call(self.assert_event_applied, one, "OP_INSTANCE_STARTUP")
        self.assertEqual((await self.instances())[names[one]], "running")

        await self.call(self.action, alice, one, {"reboot": {"type": "HARD"}})
        await self.call(self.wait_status, alice, one, "ACTIVE")
        rebooted = await self.call(self.assert_event_applied, one, "OP_INSTANCE_REBOOT")
        self.assertGreater(rebooted, started)
        self.assertEqual((await self.instances())[names[one]], "running")

        for sid in (one, two):
            status, _ = await self.call(self.node.api, "DELETE", f"{SERVERS}/{sid}",
                                        alice.token)
            self.assertEqual(status, 204)
        for sid in (one, two):
            await self.call(self.wait_gone, alice, sid)
            row = await self.call(self.row, sid)
            self.assertTrue(row["deleted"], row)
            self.assertEqual((row["backendopcode"], row["backendjobstatus"]),
                             ("OP_INSTANCE_REMOVE", "success"), row)
        instances = await self.instances()
        self.assertFalse(set(names.values()) & set(instances), instances)
        status, listed = await self.call(self.node.api, "GET", SERVERS, alice.token)
        self.assertEqual((status, listed["servers"]), (200, []))

    async def test_administrator_shutdown_shows_stopped(self):
        """An administrator's ``gnt-instance shutdown`` on the cluster (a job
        snfd did not submit) shows the server STOPPED in the API: the job's
        event is applied through the watcher and RabbitMQ, and the server
        records that very job."""
        alice = self.alice
        sid = await self.call(self.create, alice, "vm-admin")
        await self.call(self.wait_status, alice, sid, "ACTIVE")
        job_id = await self.cluster.submit("gnt-instance", "shutdown", f"snf-{sid}")
        await self.call(self.wait_status, alice, sid, "STOPPED")
        applied = await self.call(self.assert_event_applied, sid, "OP_INSTANCE_SHUTDOWN")
        self.assertEqual(applied, job_id)
        self.assertEqual((await self.instances())[f"snf-{sid}"], "ADMIN_down")
        status, _ = await self.call(self.node.api, "DELETE", f"{SERVERS}/{sid}", alice.token)
        self.assertEqual(status, 204)
        await self.call(self.wait_gone, alice, sid)
        self.assertNotIn(f"snf-{sid}", await self.instances())
