"""Tests for ``snfd.testing.ceph``: a real single-host Ceph cluster comes up,
stores objects, survives an OSD killed with SIGKILL, and leaves nothing
behind when stopped (not even after a failed start)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

from twisted.trial import unittest

from snfd.testing import ceph
from snfd.testing.ceph import STATE_DIR, CephCluster, ceph_unavailable, shared_cluster

_WHY_NOT = ceph_unavailable()
if _WHY_NOT is None:
    import rados


def put_if_absent(ioctx, key: str, data: bytes) -> None:
    """Create object ``key`` holding ``data`` in one exclusive-create write
    op; ``rados.ObjectExists`` when it exists."""
    with rados.WriteOpCtx() as op:
        op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
        op.write_full(data)
        ioctx.operate_write_op(op, key, mtime=int(time.time()))


def processes_naming(fragment: str) -> list[int]:
    """The live processes with an argument that contains ``fragment``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z" and any(os.fsencode(fragment) in arg for arg in argv):
            found.append(int(entry.name))
    return sorted(found)


class CephClusterTests(unittest.TestCase):
    if _WHY_NOT is not None:
        skip = _WHY_NOT

    def connect(self, cluster: CephCluster):
        client = rados.Rados(conffile=cluster.conf)
        client.connect(timeout=30)
        self.addCleanup(client.shutdown)
        return client

    def test_lifecycle(self):
        """Objects written before an OSD is killed with SIGKILL are read
        back intact after it is started again; stop() leaves no process
        and no file."""
        cluster = CephCluster()
        self.addCleanup(cluster.stop)
        cluster.start()
        base, conf = cluster.base, cluster.conf
        assert base is not None
        self.assertEqual(base.parent, STATE_DIR)
        self.assertTrue(base.name.startswith("snfd-ceph-"))
        self.assertNotIn(cluster.mon_port, (3300, 6789))
        cluster.create_pool("harness")

        client = self.connect(cluster)
        ioctx = client.open_ioctx("harness")
        data = os.urandom(1024 * 1024)
        put_if_absent(ioctx, "block", data)
        with self.assertRaises(rados.ObjectExists):
            put_if_absent(ioctx, "block", b"other")
        self.assertEqual(ioctx.read("block", len(data) + 1), data)

        cluster.kill_osd(0, signal.SIGKILL)
        cluster.start_osd(0)
        cluster.wait_active_clean(60)
        # Without this the client's first op to the restarted OSD waits
        # for librados' own timeout (about 12 s) before it fetches the new map.
        client.wait_for_latest_osdmap()
        self.assertEqual(ioctx.read("block", len(data) + 1), data)
        self.assertEqual(ioctx.stat("block")[0], len(data))
        ioctx.close()
        client.shutdown()

        pids = cluster.pids()
        self.assertEqual(len(pids), 2)  # mon.a, osd.0
        self.assertEqual(processes_naming(conf), pids)
        cluster.stop()
        self.assertEqual(processes_naming(conf), [])
        self.assertFalse(base.exists())
        self.assertFalse(cluster.started)
        cluster.stop()  # idempotent

    def test_failed_start_cleans_up(self):
        """A start that fails once the monitor runs (here: a block file
        too small for bluestore) stops it and removes the directory."""
        # A state directory of its own: other clusters may come and go.
        state = Path(tempfile.mkdtemp(prefix="snfd-ceph-test-", dir=STATE_DIR))
        self.addCleanup(shutil.rmtree, state, ignore_errors=True)
        self.patch(ceph, "STATE_DIR", state)
        cluster = CephCluster(block_size=16 * 1024 * 1024)
        self.addCleanup(cluster.stop)
        with self.assertRaises(RuntimeError) as raised:
            cluster.start()
        self.assertIn("ceph-osd --mkfs failed", str(raised.exception))
        self.assertFalse(cluster.started)
        self.assertEqual(processes_naming(f"{state}/"), [])
        self.assertEqual(list(state.iterdir()), [])

    def test_shared_cluster(self):
        """One cluster serves the whole process; tests isolate themselves
        with their own pool or namespace."""
        cluster = shared_cluster()
        self.assertIs(shared_cluster(), cluster)
        pool = f"t-{secrets.token_hex(4)}"
        cluster.create_pool(pool)
        self.addCleanup(cluster.delete_pool, pool)
        client = self.connect(cluster)
        ioctx = client.open_ioctx(pool)
        self.addCleanup(ioctx.close)
        ioctx.set_namespace("mine")
        ioctx.write_full("o", b"in mine")
        ioctx.set_namespace("theirs")
        with self.assertRaises(rados.ObjectNotFound):
            ioctx.stat("o")
        self.assertEqual([o.key for o in ioctx.list_objects()], [])
        ioctx.set_namespace("mine")
        self.assertEqual(ioctx.read("o"), b"in mine")
