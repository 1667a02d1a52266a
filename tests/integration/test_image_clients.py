"""Images as a new user meets them, with real clients against a real
``twistd snfd`` node (identity, pithos, archip, cyclades and the simulated
Ganeti cluster): ``openstack image create --file``, ``image save``,
``image set --property``, sharing with another project that accepts it
there, a server booted from the image, ``snf file upload`` of the image's
file changed in one block (one block sent; the image keeps its
properties and serves the new bytes), and the server captured as a new
image (``openstack server image create``) that boots a second server.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.postgres import fresh_database
from snfd.testing.rabbitmq import private_rabbit
from tests.integration.test_pithos_clients import SNF
from tests.integration.test_volume_clients import VolumeNode

MiB = 1024 * 1024


class ImageClientTests(unittest.TestCase):
    timeout = 900

    async def setUp(self) -> None:
        rabbit = await threads.deferToThread(private_rabbit, self)
        self.root = Path(tempfile.mkdtemp(prefix="snfd-image-clients-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.node = VolumeNode(fresh_database(self), self.root / "node", rabbit.url)
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start)
        self.alice = await threads.deferToThread(self.node.add_user, "alice@example.org",
                                                 "Alice")
        self.bob = await threads.deferToThread(self.node.add_user, "bob@example.org", "Bob")

    def os(self, *argv: str, user: Any = None, timeout: float = 180.0) -> Any:
        return self.node.openstack(user or self.alice, *argv, timeout=timeout)

    def snf(self, *argv: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, SNF_CONFIG=str(self.root / "snf.json"))
        proc = subprocess.run([*SNF, *argv], env=env, capture_output=True, text=True,
                              timeout=240)
        self.assertEqual(proc.returncode, 0, f"snf {' '.join(argv)}:\n{proc.stdout}"
                                             f"\n{proc.stderr}")
        return proc

    def wait(self, kind: list[str], ident: str, wanted: str, user: Any = None,
             timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = self.os(*kind, "show", ident, "-f", "json", user=user)
            if shown["status"] == wanted:
                return shown
            time.sleep(0.3)
        raise AssertionError(f"{' '.join(kind)} {ident} is {shown.get('status')}")

    def journey(self) -> None:
        rng = random.Random(19)
        disk = self.root / "disk.img"
        data = bytearray(rng.randbytes(3 * 4 * MiB))
        disk.write_bytes(data)
        made = self.os("image", "create", "--disk-format", "raw", "--container-format",
                       "bare", "--file", str(disk), "myimg", "-f", "json")
        self.assertEqual((made["status"], made["size"]), ("active", len(data)))
        image_id = made["id"]
        saved = self.root / "saved.img"
        self.os("image", "save", "--file", str(saved), "myimg")
        self.assertEqual(saved.read_bytes(), bytes(data))
        self.os("image", "set", "--property", "os_distro=debian", "myimg")
        shown = self.os("image", "show", "myimg", "-f", "json")
        self.assertEqual(shown["properties"]["os_distro"], "debian")

        # Shared with bob's project, accepted there.
        self.os("image", "set", "--shared", "myimg")
        self.os("image", "add", "project", "myimg", self.bob.uuid)
        self.assertNotIn(image_id, [i["ID"] for i in self.os(
            "image", "list", "-f", "json", user=self.bob)])
        self.os("image", "set", "--accept", image_id, user=self.bob)
        self.assertIn(image_id, [i["ID"] for i in self.os(
            "image", "list", "-f", "json", user=self.bob)])

        # A server booted from it.
        flavors = self.os("flavor", "list", "-f", "json")
        thin = next(f for f in flavors if "ext_archipelago" in f["Name"])
        server = self.os("server", "create", "--flavor", thin["ID"], "--image", image_id,
                         "--wait", "vm", "-f", "json")
        self.assertEqual(server["status"], "ACTIVE")

        # The golden image re-uploaded with one block changed: one block goes.
        data[4 * MiB + 10:4 * MiB + 20] = b"0123456789"
        disk.write_bytes(data)
        self.snf("login", "--url", self.node.url, "--token", self.alice.token)
        sent = self.snf("file", "upload", str(disk), f"images/{image_id}")
        found = re.search(r"(\d+) of (\d+) blocks transferred", sent.stdout + sent.stderr)
        self.assertIsNotNone(found, sent.stdout + sent.stderr)
        assert found is not None
        self.assertEqual((found.group(1), found.group(2)), ("1", "3"))
        shown = self.os("image", "show", image_id, "-f", "json")
        self.assertEqual((shown["name"], shown["status"], shown["properties"]["os_distro"]),
                         ("myimg", "active", "debian"))
        self.os("image", "save", "--file", str(saved), image_id)
        self.assertEqual(saved.read_bytes(), bytes(data))

        # The server captured as an image, which boots another server.
        snap = self.os("server", "image", "create", "--name", "vm-snap", "--wait", "vm",
                       "-f", "json")
        self.assertEqual(self.wait(["image"], snap["id"], "active")["name"], "vm-snap")
        second = self.os("server", "create", "--flavor", thin["ID"], "--image", snap["id"],
                         "--wait", "vm2", "-f", "json")
        self.assertEqual(second["status"], "ACTIVE")
        for name in ("vm", "vm2"):
            self.os("server", "delete", "--wait", name)
        self.os("image", "delete", snap["id"], image_id)
        self.assertEqual([i for i in self.os("image", "list", "-f", "json")
                          if i["ID"] in (snap["id"], image_id)], [])

    async def test_new_user_journey(self) -> None:
        await threads.deferToThread(self.journey)
