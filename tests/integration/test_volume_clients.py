"""Volumes under real clients, against a real ``twistd snfd`` node with the
volume service (identity, pithos, archip, cyclades and the simulated
Ganeti cluster, whose demo flavors then include thin ones): the
``openstack`` command line creates, shows, renames, extends, snapshots and
deletes volumes, boots a server from a volume made from an image, adds
and removes a volume; openstacksdk's block-storage proxy lists them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.postgres import fresh_database
from snfd.testing.rabbitmq import private_rabbit
from tests.integration.test_compute_clients import ComputeNode
from tests.integration.test_pithos_clients import PithosNode


class VolumeNode(ComputeNode):
    """A compute node that also runs the volume service."""

    def __init__(self, dsn: str, state_dir: Path, bus_url: str):
        PithosNode.__init__(
            self, dsn, state_dir,
            config="[ganeti-sim]\nqueue_delay = 0.05\nexec_time = 0.2\n"
                   "[cyclades]\nreconcile_interval = 5\n",
            plugins="identity,pithos,archip,cyclades,ganeti-sim",
            env={"SNFD_BUS_URL": bus_url})


class VolumeClientTests(unittest.TestCase):
    timeout = 600

    async def setUp(self) -> None:
        rabbit = await threads.deferToThread(private_rabbit, self)
        root = Path(tempfile.mkdtemp(prefix="snfd-volume-clients-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.node = VolumeNode(fresh_database(self), root / "node", rabbit.url)
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start)
        self.alice = await threads.deferToThread(self.node.add_user, "alice@example.org",
                                                 "Alice")

    def os(self, *argv: str, timeout: float = 120.0) -> Any:
        return self.node.openstack(self.alice, *argv, timeout=timeout)

    def wait(self, kind: list[str], ident: str, wanted: str, field: str = "status",
             timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = self.os(*kind, "show", ident, "-f", "json")
            if shown[field] == wanted:
                return shown
            time.sleep(0.3)
        raise AssertionError(f"{' '.join(kind)} {ident} is {shown.get(field)}, not {wanted}")

    def cli(self) -> None:
        made = self.os("volume", "create", "--size", "1", "data", "-f", "json")
        self.assertEqual((made["status"], made["size"]), ("available", 1))
        listed = self.os("volume", "list", "-f", "json")
        self.assertEqual([v["ID"] for v in listed], [made["id"]])
        self.os("volume", "set", "--name", "renamed", "--size", "2", made["id"])
        shown = self.os("volume", "show", made["id"], "-f", "json")
        self.assertEqual((shown["name"], shown["size"]), ("renamed", 2))
        types = self.os("volume", "type", "list", "-f", "json")
        self.assertIn("ext_archipelago", [t["Name"] for t in types])

        snap = self.os("volume", "snapshot", "create", "--volume", made["id"], "snap",
                       "-f", "json")
        self.wait(["volume", "snapshot"], snap["id"], "available")
        self.assertEqual([s["ID"] for s in self.os("volume", "snapshot", "list", "-f",
                                                   "json")], [snap["id"]])

        images = self.os("image", "list", "-f", "json")
        image = next(i for i in images if i["Name"] == "Demo Linux")
        flavors = self.os("flavor", "list", "-f", "json")
        thin = next(f for f in flavors if "ext_archipelago" in f["Name"])
        server = self.os("server", "create", "--flavor", thin["ID"], "--image", image["ID"],
                         "--boot-from-volume", str(thin["Disk"]), "--wait", "vm", "-f",
                         "json", timeout=180)
        self.assertEqual(server["status"], "ACTIVE")
        attached = server["volumes_attached"]
        self.assertEqual(len(attached), 1, server)

        self.os("server", "add", "volume", "vm", made["id"])
        self.wait(["volume"], made["id"], "in-use")
        # The simulated cluster's hypervisor cannot hot-unplug a disk.
        self.os("server", "stop", "vm")
        self.wait(["server"], "vm", "SHUTOFF")
        self.os("server", "remove", "volume", "vm", made["id"])
        self.wait(["volume"], made["id"], "available")

        self.os("server", "delete", "--wait", "vm", timeout=180)
        self.os("volume", "snapshot", "delete", snap["id"])
        self.os("volume", "delete", made["id"])
        self.assertEqual(self.os("volume", "list", "-f", "json"), [])

    def sdk(self) -> None:
        import openstack

        conn = openstack.connect(
            auth_url=f"{self.node.url}/identity/v3", username=self.alice.email,
            password=self.alice.password, project_id=self.alice.uuid,
            user_domain_name="Default", project_domain_name="Default")
        volume = conn.block_storage.create_volume(size=1, name="sdk")
        volume = conn.block_storage.wait_for_status(volume, "available", wait=60)
        self.assertIn(volume.id, [v.id for v in conn.block_storage.volumes()])
        conn.block_storage.delete_volume(volume)
        conn.block_storage.wait_for_delete(volume, wait=60)
        conn.close()

    async def test_openstack_and_sdk(self) -> None:
        await threads.deferToThread(self.cli)
        await threads.deferToThread(self.sdk)



