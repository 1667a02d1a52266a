"""The compute service under real clients, against a real ``twistd snfd``
node (identity, pithos, cyclades and the simulated Ganeti cluster) on a
fresh database with a private RabbitMQ as its bus: the ``openstack``
command line and openstacksdk's compute proxy create, stop, start, reboot
and delete servers, and every state change arrives through the job-queue
watcher, RabbitMQ and the dispatcher.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.node import http_get
from snfd.testing.postgres import fresh_database
from snfd.testing.rabbitmq import private_rabbit
from tests.integration.test_pithos_clients import PithosNode, User

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


class ComputeNode(PithosNode):
    """A node serving identity, pithos and cyclades over a simulated
    Ganeti cluster whose jobs take ``exec_time`` seconds."""

    def __init__(self, dsn: str, state_dir: Path, bus_url: str, exec_time: float = 0.2):
        super().__init__(
            dsn, state_dir,
            config=f"[ganeti-sim]\nqueue_delay = 0.05\nexec_time = {exec_time}\n"
                   "[cyclades]\nreconcile_interval = 5\n",
            plugins="identity,pithos,cyclades,ganeti-sim", env={"SNFD_BUS_URL": bus_url})

    def start(self, timeout: float = 120.0) -> None:
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the demo flavors come a moment later
            if http_get(self.url + "/compute/v2.0/flavors", timeout=5)[0] == 401:
                flavors = json.loads(self.manage("flavor-list", "--json"))
                if flavors:
                    return
            time.sleep(0.2)
        raise AssertionError("no compute API or no flavors:\n" + self.process.tail())

    def openstack(self, user: User, *argv: str, timeout: float = 120.0) -> Any:
        """Run the ``openstack`` command as ``user``; its JSON output."""
        env = dict(os.environ, OS_AUTH_URL=f"{self.url}/identity/v3",
                   OS_IDENTITY_API_VERSION="3", OS_USERNAME=user.email,
                   OS_PASSWORD=user.password, OS_PROJECT_ID=user.uuid,
                   OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default")
        proc = subprocess.run([OPENSTACK, *argv], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"openstack {' '.join(argv)} failed:\n{proc.stderr}\n"
                                 + self.process.tail())
        return json.loads(proc.stdout) if "-f" in argv else proc.stdout


class ComputeClientTests(unittest.TestCase):
    timeout = 600

    async def setUp(self) -> None:
        rabbit = await threads.deferToThread(private_rabbit, self)
        root = Path(tempfile.mkdtemp(prefix="snfd-compute-clients-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.node = ComputeNode(fresh_database(self), root / "node", rabbit.url)
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start)
        self.alice = await threads.deferToThread(self.node.add_user, "alice@example.org",
                                                 "Alice")
        self.bob = await threads.deferToThread(self.node.add_user, "bob@example.org", "Bob")

    def wait_status(self, user: User, server: str, wanted: str,
                    timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = self.node.openstack(user, "server", "show", server, "-f", "json")
            if shown["status"] == wanted:
                return shown
            time.sleep(0.3)
        raise AssertionError(f"server {server} is {shown.get('status')}, not {wanted}")

    def cli_lifecycle(self) -> None:
        node, alice = self.node, self.alice
        images = node.openstack(alice, "image", "list", "-f", "json")
        self.assertTrue(images, "the embedded default has a system image")
        flavors = node.openstack(alice, "flavor", "list", "-f", "json")
        group = node.openstack(alice, "server", "group", "create", "--policy",
                               "anti-affinity", "spread", "-f", "json")
        made = node.openstack(alice, "server", "create", "--flavor", flavors[0]["Name"],
                              "--image", images[0]["ID"], "--hint", f"group={group['id']}",
                              "vm-one", "-f", "json")
        self.assertEqual(made["status"], "BUILD")
        sid = str(made["id"])
        self.wait_status(alice, sid, "ACTIVE")
        shown = node.openstack(alice, "server", "group", "show", group["id"], "-f", "json")
        self.assertEqual([str(m) for m in shown["members"]], [sid])
        listed = node.openstack(alice, "server", "list", "-f", "json")
        self.assertEqual([str(s["ID"]) for s in listed], [sid])
        node.openstack(alice, "server", "stop", sid)
        self.wait_status(alice, sid, "SHUTOFF")  # Nova's dialect (v3 catalog: v2.1)
        node.openstack(alice, "server", "start", sid)
        self.wait_status(alice, sid, "ACTIVE")
        node.openstack(alice, "server", "reboot", "--hard", sid)
        self.wait_status(alice, sid, "ACTIVE")
        node.openstack(alice, "server", "rebuild", "--image", images[0]["ID"], sid)
        self.wait_status(alice, sid, "ACTIVE")
        events = node.openstack(alice, "server", "event", "list", sid, "-f", "json")
        self.assertEqual([e["Action"] for e in events],
                         ["rebuild", "reboot", "start", "stop", "create"])
        # Another user sees nothing of it.
        self.assertEqual(node.openstack(self.bob, "server", "list", "-f", "json"), [])
        quota = json.loads(node.manage("quota-list", "--user", alice.uuid, "--resource",
                                       "cyclades.vm", "--json"))
        self.assertEqual([q["usage"] for q in quota], [1])
        node.openstack(alice, "server", "delete", "--wait", sid)
        self.assertEqual(node.openstack(alice, "server", "list", "-f", "json"), [])
        quota = json.loads(node.manage("quota-list", "--user", alice.uuid, "--resource",
                                       "cyclades.vm", "--json"))
        self.assertEqual([q["usage"] for q in quota], [0])

    def test_openstack_cli(self):
        """`openstack server create/list/show/stop/start/reboot/rebuild/delete`,
        `server group` and `server event list` work;
        the server goes BUILD -> ACTIVE -> SHUTOFF -> ACTIVE -> gone (Nova's
        dialect, where the v3 catalog points), its quota is charged and
        released, and another user does not see it."""
        return threads.deferToThread(self.cli_lifecycle)

    def sdk_lifecycle(self) -> None:
        import openstack

        conn = openstack.connect(
            auth_url=f"{self.node.url}/identity/v3", username=self.bob.email,
            password=self.bob.password, project_id=self.bob.uuid,
            user_domain_name="Default", project_domain_name="Default")
        self.addCleanup(conn.close)
        image = next(iter(conn.image.images()))
        flavor = next(iter(conn.compute.flavors()))
        # The SDK negotiates the node's highest microversion (2.66), where
        # Nova requires ``networks`` (2.37): "auto" is the default networks.
        server = conn.compute.create_server(name="sdk-vm", image_id=image.id,
                                            flavor_id=flavor.id, networks="auto")
        self.assertEqual(conn.compute.get_server(server).description, None)
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=60)
        conn.compute.stop_server(server)
        conn.compute.wait_for_server(server, status="SHUTOFF", wait=60)
        conn.compute.start_server(server)
        conn.compute.wait_for_server(server, status="ACTIVE", wait=60)
        self.assertEqual([s.id for s in conn.compute.servers()], [server.id])
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=60)

    def test_openstacksdk(self):
        """openstacksdk's compute proxy creates, waits for, stops, starts
        and deletes a server."""
        return threads.deferToThread(self.sdk_lifecycle)
