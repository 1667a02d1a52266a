"""``snf server``, ``flavor``, ``keypair`` and ``image`` against a real
``twistd snfd`` node with identity, pithos, cyclades and the simulated
Ganeti cluster (``ganeti-sim``) on a fresh database, with the embedded
default's demo flavors and public "Demo Linux" image.  ``snf`` runs as a
child process, as a user runs it; the test bodies run in a thread."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.trial import unittest

from snfd.testing import demo
from snfd.testing.cloudnode import CloudNode
from snfd.testing.postgres import fresh_database

SNF = [sys.executable, "-m", "snfd.cli.snf"]
PLUGINS = "identity,pithos,cyclades,ganeti-sim"
CONFIG = ("[identity]\nmoderation = no\n"
          "[ganeti-sim]\nqueue_delay = 0.05\nexec_time = 0.2\n")


class SnfComputeTestCase(unittest.TestCase):
    """A node of its own per test, a user logged in with ``snf``."""

    timeout = 400

    @defer.inlineCallbacks
    def setUp(self):
        dsn = fresh_database(self)
        root = Path(self.mktemp()).absolute()
        root.mkdir(parents=True)
        self.work = root / "work"
        self.work.mkdir()
        self.node = CloudNode(dsn, root / "node", PLUGINS, CONFIG)
        self.addCleanup(self.node.stop)
        yield threads.deferToThread(self.node.start, 120.0, "/compute/v2.1/flavors")
        yield threads.deferToThread(demo.wait_flavors, self.node)
        self.user = yield threads.deferToThread(self.node.add_user, "vm@example.org")
        yield threads.deferToThread(
            self.snf, "login", "--url", self.node.url, "--user", self.user.email,
            env={"SNF_PASSWORD": self.user.password})

    def drive(self, steps: Callable[[], None]) -> defer.Deferred[None]:
        return threads.deferToThread(steps)

    def snf(self, *argv: str, ok: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``snf`` as the user; fail unless it exits 0 (with ``ok=False``,
        unless it fails)."""
        full = dict(os.environ, SNF_CONFIG=str(self.work / "snf.json"))
        full.pop("SNF_PASSWORD", None)
        full.update(env or {})
        proc = subprocess.run([*SNF, *argv], env=full, capture_output=True, text=True,
                              timeout=240, cwd=self.work, stdin=subprocess.DEVNULL)
        if ok and proc.returncode != 0:
            raise AssertionError(f"snf {' '.join(argv)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr!r}\n{self.node.tail(30)}")
        if not ok and proc.returncode == 0:
            raise AssertionError(f"snf {' '.join(argv)} succeeded:\n{proc.stdout!r}")
        return proc

    def json_of(self, *argv: str) -> Any:
        return json.loads(self.snf("-o", "json", *argv).stdout)


class ServerTests(SnfComputeTestCase):
    def test_keypair_and_server_lifecycle(self):
        """A generated key pair's private key lands in a 0600 file; a server
        made with it and --wait is ACTIVE, with its metadata, the admin
        password printed once; it is listed and shown (also as JSON), its
        metadata set, stopped and started with --wait, renamed, deleted.
        A missing server exits 3, an action its state refuses 5."""
        def steps() -> None:
            key = self.work / "mykey"
            out = self.snf("keypair", "generate", "mykey", "--out", str(key)).stdout
            self.assertIn("mykey", out)
            self.assertNotIn("PRIVATE KEY", out)
            self.assertIn("PRIVATE KEY", key.read_text())
            self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
            self.assertIn("mykey", self.snf("keypair", "list").stdout)
            [listed] = self.json_of("keypair", "list")
            self.assertEqual(listed["name"], "mykey")
            self.assertNotIn("private_key", listed)
            # Not twice over an existing file.
            proc = self.snf("keypair", "generate", "other", "--out", str(key), ok=False)
            self.assertEqual(proc.returncode, 1)

            flavors = self.json_of("flavor", "list")
            self.assertTrue(flavors)
            small = min(flavors, key=lambda f: (f["vcpus"], f["ram"], f["disk"]))
            self.assertIn(small["name"], self.snf("flavor", "list").stdout)
            self.assertEqual(self.json_of("flavor", "info", small["id"])["ram"], small["ram"])

            proc = self.snf("server", "create", "--name", "vm1", "--cpu", str(small["vcpus"]),
                            "--ram", str(small["ram"]), "--disk", str(small["disk"]),
                            "--image", "Demo Linux", "--key", "mykey",
                            "--metadata", "purpose=test", "--wait")
            lines = proc.stdout.splitlines()
            [password] = [line.split(": ", 1)[1] for line in lines
                          if line.startswith("admin password: ")]
            self.assertTrue(password)
            self.assertEqual(lines[-1], "status: ACTIVE")
            self.assertEqual(proc.stdout.count(password), 1)
            [server] = self.json_of("server", "list")
            sid = server["id"]
            self.assertEqual((server["name"], server["status"]), ("vm1", "ACTIVE"))
            self.assertIn("vm1", self.snf("server", "list").stdout)
            self.assertIn("mykey", self.snf("server", "list", "--detail").stdout)
            shown = self.json_of("server", "info", sid)
            self.assertEqual((shown["key_name"], shown["metadata"], shown["flavor"]["vcpus"]),
                             ("mykey", {"purpose": "test"}, small["vcpus"]))
            self.assertNotIn(password, json.dumps(shown))
            info = self.snf("server", "info", sid).stdout
            self.assertIn("ACTIVE", info)
            self.assertIn("purpose=test", info)

            self.snf("server", "metadata", sid, "set", "role=web", "tier=1")
            self.snf("server", "metadata", sid, "delete", "tier")
            self.assertEqual(self.snf("server", "metadata", sid).stdout.split(),
                             ["purpose=test", "role=web"])
            self.snf("server", "tag", sid, "add", "prod")
            self.assertEqual(self.json_of("server", "tag", sid), ["prod"])

            # An action the state refuses: 5, with the API's message.
            proc = self.snf("server", "start", sid, ok=False)
            self.assertEqual(proc.returncode, 5, proc.stderr)
            self.assertTrue(proc.stderr.startswith("snf: "), proc.stderr)
            self.assertIn("(409)", proc.stderr)
            self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)

            self.assertIn("status: SHUTOFF",
                          self.snf("server", "shutdown", sid, "--wait").stdout)
            self.assertEqual(self.json_of("server", "info", sid)["status"], "SHUTOFF")
            proc = self.snf("server", "wait", sid, "--status", "ACTIVE", "--timeout", "1",
                            ok=False)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("still SHUTOFF", proc.stderr)
            self.snf("server", "start", sid, "--wait")
            self.snf("server", "wait", sid)
            self.assertEqual(self.json_of("server", "info", sid)["status"], "ACTIVE")

            self.snf("server", "rename", sid, "vm-renamed")
            self.assertEqual(self.json_of("server", "info", sid)["name"], "vm-renamed")

            # Missing servers: 3.
            for argv in (("server", "info", "987654"), ("server", "delete", "987654"),
                         ("server", "reboot", "987654")):
                proc = self.snf(*argv, ok=False)
                self.assertEqual(proc.returncode, 3, proc.stderr)
                self.assertIn("(404)", proc.stderr)

            self.snf("server", "delete", sid, "--wait")
            self.assertEqual(self.json_of("server", "list"), [])
            self.assertEqual(self.snf("server", "info", sid, ok=False).returncode, 3)
            self.snf("keypair", "delete", "mykey")
            self.assertEqual(self.json_of("keypair", "list"), [])
        return self.drive(steps)


class FirewallTests(SnfComputeTestCase):
    def test_firewall_profile(self):
        """``server firewall`` sets the profile of the server's only
        interface (found by itself, or named with --nic), as its port then
        shows; a profile outside the three is a bad command line (2), a
        NIC the server lacks the API's 400 (5), a missing server 3."""
        def steps() -> None:
            small = min(self.json_of("flavor", "list"),
                        key=lambda f: (f["vcpus"], f["ram"], f["disk"]))
            lan = self.json_of("network", "create", "lan", "--subnet", "10.9.0.0/24")
            sid = str(self.json_of("server", "create", "--name", "fw", "--flavor",
                                   str(small["id"]), "--image", "Demo Linux",
                                   "--network", lan["id"], "--wait")["id"])
            [port] = self.json_of("port", "list", "--server", sid)
            self.assertEqual(port["SNF:firewall_profile"], "DISABLED")

            proc = self.snf("server", "firewall", sid, "protected", "--wait")
            self.assertIn(f"interface {port['id']}: firewall PROTECTED", proc.stdout)
            shown = self.json_of("port", "info", port["id"])
            self.assertEqual(shown["SNF:firewall_profile"], "PROTECTED")
            done = self.json_of("server", "firewall", sid, "ENABLED", "--nic", port["id"],
                                "--wait")
            self.assertEqual(done, {"id": sid, "nic": port["id"],
                                    "firewallProfile": "ENABLED"})
            shown = self.json_of("port", "info", port["id"])
            self.assertEqual(shown["SNF:firewall_profile"], "ENABLED")

            proc = self.snf("server", "firewall", sid, "OPEN", ok=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            proc = self.snf("server", "firewall", sid, "DISABLED", "--nic", "987654", ok=False)
            self.assertEqual(proc.returncode, 5, proc.stderr)
            self.assertIn("(400)", proc.stderr)
            self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
            proc = self.snf("server", "firewall", "987654", "DISABLED", ok=False)
            self.assertEqual(proc.returncode, 3, proc.stderr)
        return self.drive(steps)


class ImageTests(SnfComputeTestCase):
    def test_register_a_local_file(self):
        """A local file is uploaded to the user's storage and registered as
        a private image with its properties; it is listed as theirs (the
        public demo image is not), changed, then unregistered while its
        file stays; registering the file again by its remote path, public,
        makes it public."""
        def steps() -> None:
            disk = self.work / "disk.diskdump"
            disk.write_bytes(os.urandom(5 << 20))
            proc = self.snf("image", "register", "My disk", str(disk),
                            "--property", "OSFAMILY=linux")
            self.assertIn("registered My disk", proc.stdout)
            self.assertIn("uploaded images/disk.diskdump", proc.stderr)
            self.assertIn("disk.diskdump", self.snf("file", "list", "images").stdout)
            [mine] = self.json_of("image", "list", "--mine")
            self.assertEqual((mine["name"], mine["visibility"], mine["size"]),
                             ("My disk", "private", 5 << 20))
            self.assertIn(mine["id"], proc.stdout)
            public = self.json_of("image", "list", "--public")
            self.assertIn("Demo Linux", [i["name"] for i in public])
            self.assertNotIn(mine["id"], [i["id"] for i in public])
            everything = [i["name"] for i in self.json_of("image", "list")]
            self.assertEqual(sorted(everything), ["Demo Linux", "My disk"])

            self.snf("image", "modify", mine["id"], "--name", "Renamed", "-p", "users=root")
            shown = self.json_of("image", "info", mine["id"])
            self.assertEqual((shown["name"], shown.get("users")), ("Renamed", "root"))
            self.assertIn("Renamed", self.snf("image", "info", mine["id"]).stdout)

            self.snf("image", "unregister", mine["id"])
            self.assertEqual(self.json_of("image", "list", "--mine"), [])
            self.assertIn("disk.diskdump", self.snf("file", "list", "images").stdout)
            proc = self.snf("image", "info", mine["id"], ok=False)
            self.assertEqual(proc.returncode, 3, proc.stderr)

            self.snf("image", "register", "Again", "images/disk.diskdump", "--public")
            [again] = self.json_of("image", "list", "--mine")
            self.assertEqual((again["name"], again["visibility"]), ("Again", "public"))
        return self.drive(steps)
