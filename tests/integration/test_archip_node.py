"""The volume service in a real ``twistd snfd`` node: volumes made through
its provider API are served by the node's NBD listener to real clients
(``qemu-img``, ``nbdcopy``, ``nbdinfo``), and a node restart keeps them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from snfd.testing.node import NodeProcess, free_port
from snfd.testing.postgres import fresh_database

MANAGE = [sys.executable, "-m", "snfd.cli.manage"]
PLUGINS = "identity,pithos,archip"
MiB = 1024 * 1024
_TOOLS = ("qemu-img", "nbdcopy", "nbdinfo")


class ArchipNodeTests(unittest.TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        missing = [t for t in _TOOLS if shutil.which(t) is None]
        if missing:
            raise unittest.SkipTest(f"needs {', '.join(missing)} (Debian libnbd-bin,"
                                    " qemu-utils; ./dev test installs them)")
        self.dsn = fresh_database(self)
        self.config = Path(self.mktemp()).absolute()
        self.config.write_text("[database]\nauto_upgrade = yes\n")
        self.nbd_port = free_port()
        self.node = self.start_node()
        yield defer.ensureDeferred(self.node.wait_ready(reactor, timeout=120))
        made = yield threads.deferToThread(self.manage, "component-add", "archipelago")
        self.token = made["token"]
        self.work = Path(self.mktemp()).absolute()
        self.work.mkdir()

    def start_node(self, state_dir: Path | None = None) -> NodeProcess:
        node = NodeProcess(env={"SNFD_DATABASE_URL": self.dsn, "SNFD_PLUGINS": PLUGINS,
                                "SNFD_NBD_LISTEN": f"tcp:{self.nbd_port}:interface=127.0.0.1"},
                           args=["--config", str(self.config)], state_dir=state_dir)
        self.addCleanup(node.cleanup)
        node.start()
        return node

    def manage(self, *argv: str) -> Any:
        env = dict(os.environ, SNFD_DATABASE_URL=self.dsn, SNFD_PLUGINS=PLUGINS,
                   SNFD_STATE_DIR=str(self.node.state_dir))
        out = subprocess.run([*MANAGE, *argv, "--json"], env=env, capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            self.fail(f"snf-manage {' '.join(argv)}: {out.stderr}")
        return json.loads(out.stdout)

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - 127.0.0.1
            f"{self.node.url}/archip/v1{path}", data=data,
                                     method=method, headers={"X-Auth-Token": self.token,
                                                             "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - 127.0.0.1
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def tool(self, *argv: str) -> str:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=120,
                             cwd=self.work)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: rc {out.returncode}\n{out.stderr}\n"
                                 f"{self.node.tail(30)}")
        return out.stdout

    def url(self, name: str) -> str:
        return f"nbd://127.0.0.1:{self.nbd_port}/{name}"

    @defer.inlineCallbacks
    def test_volumes_over_nbd(self):
        """The provider API makes a volume the node serves: written with
        qemu-img, snapshotted, cloned (nothing copied), read back with
        nbdcopy; after a restart the node still serves them."""
        status, root = yield threads.deferToThread(self.api, "GET", "")
        self.assertEqual((status, root["nbd"]), (200, {"host": "127.0.0.1",
                                                       "port": self.nbd_port, "tls": False}))
        status, _ = yield threads.deferToThread(self.api, "PUT", "/volumes/disk-1",
                                                {"size": 16 * MiB})
        self.assertEqual(status, 201)
        source = self.work / "source.raw"
        data = os.urandom(5 * MiB) + bytes(6 * MiB) + os.urandom(MiB)
        source.write_bytes(data)
        yield threads.deferToThread(self.tool, "qemu-img", "convert", "-n", "-f", "raw",
                                    "-O", "raw", str(source), self.url("disk-1"))
        info = yield threads.deferToThread(self.tool, "nbdinfo", "--json", self.url("disk-1"))
        self.assertEqual(json.loads(info)["exports"][0]["export-size"], 16 * MiB)
        status, snap = yield threads.deferToThread(
            self.api, "POST", "/volumes/disk-1/snapshot", {"snapshot": "snap-1"})
        self.assertEqual((status, snap["read_only"]), (201, True))
        status, clone = yield threads.deferToThread(
            self.api, "PUT", "/volumes/disk-2", {"size": 20 * MiB, "origin": "snap-1"})
        self.assertEqual((status, clone["objects"]["owned"]), (201, 0))
        out = self.work / "out.raw"
        yield threads.deferToThread(self.tool, "nbdcopy", self.url("disk-2"), str(out))
        expected = data + bytes(20 * MiB - len(data))
        self.assertEqual(out.read_bytes(), expected)

        # A restart: the node serves what is on disk.
        state = self.node.state_dir
        yield threads.deferToThread(self.node.stop)
        self.node = self.start_node(state)
        yield defer.ensureDeferred(self.node.wait_ready(reactor, timeout=120))
        out.unlink()
        yield threads.deferToThread(self.tool, "nbdcopy", self.url("disk-2"), str(out))
        self.assertEqual(out.read_bytes(), expected)
        status, _ = yield threads.deferToThread(self.api, "DELETE", "/volumes/disk-2")
        self.assertEqual(status, 204)
