"""Ganeti's ``ext`` disks on snfd volumes: the ExtStorage provider
``archipelago`` in a real Ganeti 3.0 cluster, against a real node.

One real single-node cluster in a network namespace
(``snfd.testing.ganeti.RealGanetiCluster``: fake hypervisor, the no-op
OS, ``ext`` enabled by ganeti-up.sh), and a ``twistd snfd`` node with the
identity, pithos and archip plugins, reachable from the namespace on the
root end of the cluster's veth pair (10.77.N.1): its HTTP site listens
there beside 127.0.0.1, and its NBD server only there.  The provider is
installed into the cluster by ``snf-manage extstorage-install`` (a new
``archipelago`` component token), with its records under
``/srv/gnt<N>/run/snfd-archipelago`` so that ganeti-down.sh releases what
a failed run leaves.

The instance's disk is a clone of a snapshot made through the node's
``/archip/v1``: its loop device (global, so read from the root namespace)
shows the snapshot's bytes, a write reaches the volume's own objects, and
shutdown, startup, grow-disk and remove attach, detach, grow and delete
the volume.  Timings go to the test log (``_trial_temp/test.log``).

Needs root, real Ganeti (``real_ganeti_unavailable``), and what the
provider attaches with (nbdfuse, fusermount3, losetup, /dev/fuse).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.python import log
from twisted.trial import unittest

from snfd.testing.cloudnode import CloudNode
from snfd.testing.ganeti import RealGanetiCluster, real_ganeti_unavailable
from snfd.testing.node import free_port
from snfd.testing.postgres import fresh_database
from tests.archip.test_extstorage import unavailable

MiB = 1024 * 1024
INSTANCE = "vm1.ganeti.test"
DISK = "snf-vol-1"  # the disk's name, which the provider takes as the map's


class ExtStorageOnRealGanetiTests(unittest.TestCase):
    """``gnt-instance add -t ext`` with provider ``archipelago`` on a real
    cluster, end to end."""

    timeout = 900

    async def setUp(self) -> None:
        reason = unavailable() or await threads.deferToThread(real_ganeti_unavailable)
        if reason:
            raise unittest.SkipTest(reason)
        root = Path(tempfile.mkdtemp(prefix="snfd-archip-ganeti-"))
        self.addCleanup(shutil.rmtree, root, True)
        cluster = self.cluster = RealGanetiCluster(reactor)
        self.addCleanup(threads.deferToThread, cluster.down)  # last: after the node
        await threads.deferToThread(cluster.up)
        n = cluster.number
        self.host = f"10.77.{n}.1"  # the root namespace's end of the veth pair
        self.nbd_port = free_port()
        self.node = CloudNode(fresh_database(self), root / "node", "identity,pithos,archip",
                              "", {"SNFD_NBD_LISTEN": f"tcp:{self.nbd_port}:interface={self.host}"})
        port = self.node.process.port
        self.node.process.env["SNFD_LISTEN"] = \
            f"tcp:{port}:interface=127.0.0.1 tcp:{port}:interface={self.host}"
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start, 180.0, "/archip/v1")
        self.provider = cluster.base / "srv" / "extstorage" / "archipelago"
        self.run_dir = cluster.base / "run" / "snfd-archipelago"
        await threads.deferToThread(
            self.node.manage, "extstorage-install", "--dest", str(self.provider),
            "--url", f"http://{self.host}:{port}", "--run-dir", str(self.run_dir))
        self.token = json.loads((self.provider / "archipelago.conf").read_text())["token"]

    # -- helpers (blocking ones run in threads) ----------------------------------

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A call of the node's ``/archip/v1`` with the provider's token."""
        request = urllib.request.Request(  # noqa: S310 - the test's own node
            f"{self.node.url}/archip/v1{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Auth-Token": self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
                raw = answer.read()
                return answer.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    async def call(self, method: str, path: str, body: Any = None,
                   expect: int = 200) -> Any:
        status, answer = await threads.deferToThread(self.api, method, path, body)
        if status != expect:
            self.fail(f"{method} {path}: {status} {answer}\n{self.node.tail(30)}")
        return answer

    async def gnt(self, *argv: str) -> tuple[str, float]:
        """A ``gnt-*`` command in the cluster: its output and seconds taken."""
        started = time.monotonic()
        try:
            out = await self.cluster.gx(*argv)
        except Exception as e:
            self.fail(f"{e}\n--- extstorage logs:\n{self.es_logs()}\n"
                      f"--- node:\n{self.node.tail(30)}")
        took = time.monotonic() - started
        log.msg(f"archipelago on real Ganeti: {' '.join(argv[:2])} took {took:.2f} s")
        return out, took

    def es_logs(self, prefix: str = "") -> str:
        """The ExtStorage actions' logs (the last few), or those of one action."""
        logs = sorted((self.cluster.base / "log" / "extstorage").glob(f"{prefix}*"),
                      key=lambda p: p.stat().st_mtime)
        return "\n".join(f"{p.name}: {p.read_text(errors='replace')[-400:]}"
                         for p in (logs if prefix else logs[-6:]))

    def device(self) -> str:
        """The instance disk's loop device, as the provider recorded it."""
        return (self.run_dir / DISK / "loop").read_text().strip()

    def leftovers(self, mounts: bool = True) -> dict[str, Any]:
        """Loop devices over the provider's files, nbdfuse processes and
        (while the cluster is up) FUSE mounts in its mount namespace."""
        listed = json.loads(subprocess.run(["losetup", "--list", "--json"],
                                           capture_output=True, text=True).stdout or "{}")
        loops = [d["name"] for d in listed.get("loopdevices", [])
                 if "/snfd-archipelago/" in (d.get("back-file") or "")]
        nbdfuse = subprocess.run(["pgrep", "-f", f"nbdfuse.*{self.run_dir}"],
                                 capture_output=True, text=True).stdout.split()
        found: dict[str, Any] = {"loops": loops, "nbdfuse": nbdfuse}
        if mounts:
            table = subprocess.run([str(self.cluster.base / "ns" / "gx"), "cat",
                                    "/proc/self/mountinfo"], capture_output=True, text=True)
            found["mounts"] = [m for m in table.stdout.splitlines()
                               if "fuse" in m and "snfd-archipelago" in m]
        return found

    # -- the test ------------------------------------------------------------------

    async def test_instance_on_a_clone(self):
        """An instance's ext disk is a clone of a snapshot: its device reads
        the snapshot's bytes, a write copies one object up, and shutdown,
        startup, an export, grow-disk and remove detach, attach, snapshot,
        grow and delete it, leaving no loop device, FUSE mount, nbdfuse or
        map; what is still attached when the cluster goes, ganeti-down.sh
        releases."""
        root = await self.call("GET", "")
        self.assertEqual(root["nbd"], {"host": self.host, "port": self.nbd_port, "tls": False})

        # The origin: a volume written over NBD, then snapshotted.
        await self.call("PUT", "/volumes/image-1", {"size": 16 * MiB}, expect=201)
        image = os.urandom(5 * MiB) + bytes(10 * MiB) + os.urandom(MiB)
        source = Path(self.mktemp())
        source.write_bytes(image)
        done = await threads.deferToThread(
            subprocess.run, ["nbdcopy", str(source),
                             f"nbd://{self.host}:{self.nbd_port}/image-1"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr)
        snap = await self.call("POST", "/volumes/image-1/snapshot",
                               {"snapshot": "image-1-snap"}, expect=201)
        self.assertTrue(snap["read_only"])

        diagnose, _ = await self.gnt("gnt-storage", "diagnose")
        self.assertIn("archipelago", diagnose)

        _, took = await self.gnt(
            "gnt-instance", "add", "-t", "ext",
            "--disk", f"0:size=1G,provider=archipelago,origin=image-1-snap,name={DISK}",
            "-o", "noop+default", "-n", self.cluster.node_name, "--no-name-check",
            "--no-ip-check", "-B", "maxmem=128,minmem=128,vcpus=1", INSTANCE)
        figures = {"add": took}
        info = await self.call("GET", f"/volumes/{DISK}")
        self.assertEqual((info["size"], info["objects"]["owned"]), (1024 * MiB, 0))
        shown, _ = await self.gnt("gnt-instance", "info", INSTANCE)
        device = await threads.deferToThread(self.device)
        self.assertRegex(device, r"^/dev/loop\d+$")
        self.assertIn(f"on primary: {device}", shown)

        def read(offset: int, length: int) -> bytes:
            fd = os.open(device, os.O_RDONLY)
            try:
                return os.pread(fd, length, offset)
            finally:
                os.close(fd)

        def write(offset: int, data: bytes) -> None:
            fd = os.open(device, os.O_WRONLY)
            try:
                os.pwrite(fd, data, offset)
                os.fsync(fd)
            finally:
                os.close(fd)

        self.assertEqual(await threads.deferToThread(read, 0, len(image)), image)
        self.assertEqual(await threads.deferToThread(read, 1000 * MiB, MiB), bytes(MiB))
        await threads.deferToThread(write, 33 * MiB, b"written by the instance" * 100)
        info = await self.call("GET", f"/volumes/{DISK}")
        self.assertEqual(info["objects"]["owned"], 1)

        _, figures["shutdown"] = await self.gnt("gnt-instance", "shutdown", INSTANCE)
        self.assertFalse((self.run_dir / DISK).exists(), "still attached after shutdown")
        _, figures["startup"] = await self.gnt("gnt-instance", "startup", INSTANCE)
        device = await threads.deferToThread(self.device)
        self.assertEqual(await threads.deferToThread(read, 33 * MiB, 23 * 100),
                         b"written by the instance" * 100)

        # An export snapshots the disk (Ganeti names the volume by its own
        # name there: the provider finds the map), reads the snapshot through
        # the OS definition's export (the no-op OS reads nothing) and removes it.
        ganeti_names = [p.name for p in (self.run_dir / ".names").iterdir()]
        self.assertEqual(len(ganeti_names), 1, ganeti_names)
        _, figures["export"] = await self.gnt(
            "gnt-backup", "export", "-n", self.cluster.node_name, "--noshutdown", INSTANCE)
        logs = await threads.deferToThread(self.es_logs, "snapshot-")
        self.assertIn(f"{DISK}: snapshot {ganeti_names[0]}.snap", logs)
        await self.call("GET", f"/volumes/{ganeti_names[0]}.snap", expect=404)
        await self.call("GET", f"/volumes/{DISK}")

        _, figures["grow-disk"] = await self.gnt(
            "gnt-instance", "grow-disk", INSTANCE, "0", "128M")
        info = await self.call("GET", f"/volumes/{DISK}")
        self.assertEqual(info["size"], 1152 * MiB)
        shown, _ = await self.gnt("gnt-instance", "info", INSTANCE)
        device = await threads.deferToThread(self.device)
        self.assertEqual(await threads.deferToThread(
            lambda: Path(f"/sys/block/{os.path.basename(device)}/size").read_text().strip()),
            str(1152 * MiB // 512))
        self.assertEqual(re.findall(r"on primary: (\S+)", shown), [device])

        _, figures["remove"] = await self.gnt("gnt-instance", "remove", "-f", INSTANCE)
        log.msg(f"archipelago on real Ganeti, seconds: {figures}")
        await self.call("GET", f"/volumes/{DISK}", expect=404)
        self.assertEqual(await threads.deferToThread(self.leftovers),
                         {"loops": [], "mounts": [], "nbdfuse": []})
        kept = await self.call("GET", "/volumes/image-1-snap")
        self.assertTrue(kept["read_only"], "the origin outlives its clone")

        # What a failed run leaves attached, ganeti-down.sh releases.
        await self.call("PUT", "/volumes/left-1", {"size": 8 * MiB}, expect=201)
        attached = await self.cluster.gx("env", "VOL_NAME=left-1",
                                         "/srv/ganeti/extstorage/archipelago/attach")
        self.assertRegex(attached, r"^/dev/loop\d+\n$")
        left = await threads.deferToThread(self.leftovers)
        self.assertEqual((len(left["loops"]), len(left["mounts"]), len(left["nbdfuse"])),
                         (1, 1, 1))
        started = time.monotonic()
        await threads.deferToThread(self.cluster.down)
        log.msg(f"archipelago on real Ganeti: ganeti-down.sh with a volume attached took"
                f" {time.monotonic() - started:.2f} s")
        left = await threads.deferToThread(self.leftovers, False)
        self.assertEqual(left, {"loops": [], "nbdfuse": []})
