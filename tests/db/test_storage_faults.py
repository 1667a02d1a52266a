"""The node's database when its disk is full or its filesystem read-only
(issue 22), against a real PostgreSQL whose data directory is on a small
filesystem mounted for the test (root only; skipped otherwise; every
mount, loop device and file is removed by the test's cleanups).

What PostgreSQL does, and what the pool answers:

- Data files full (a tmpfs filled with a ballast file): a write that
  needs a new page fails with SQLSTATE 53100 and is rolled back; the
  server stays up.  The pool fails it at once with ``DatabaseImpaired``
  (503, ``Retry-After``, "out of disk space") and keeps its connection;
  reads go on; writes work again once there is room, nothing restarted.
- WAL full (the same, once the current WAL segment is used up): the
  server cannot create the next segment and PANICs; its crash recovery
  needs a new segment too, so it shuts down.  The pool answers
  ``DatabaseUnavailable`` (503); the embedded server's supervisor fails
  to restart it until there is room, then does, and the pool is back.
- Filesystem read-only (ext4 on a loop device, turned read-only by an
  error as ``errors=remount-ro`` does): reads of tables a session has
  open go on; opening any other file fails (PostgreSQL opens them
  read-write), which the pool answers 503 "read-only"; new sessions are
  refused, and the first write PANICs the server, which cannot start on
  a read-only filesystem.  After the operator's repair (unmount, fsck,
  mount) the supervisor starts it again, and never creates a new, empty
  cluster in the unmounted directory meanwhile.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task, threads
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from snfd.db.pool import Database, DatabaseImpaired, DatabaseUnavailable
from snfd.db.supervisor import EmbeddedSupervisor
from snfd.metrics import Metrics
from snfd.testing.postgres import ThrowawayPostgres, query
from tests.cluster.test_election import wait_for
from tests.pithos.test_disk_full import fill, run

ROW = 256 * 1024
"""A row that needs new pages (random bytes, stored uncompressed)."""


def _need_root(*commands: str) -> None:
    if os.geteuid() != 0:
        raise unittest.SkipTest("mounting a small filesystem needs root")
    for command in commands:
        if shutil.which(command) is None:
            raise unittest.SkipTest(f"no {command} command")


def _mount_point(testcase: unittest.TestCase) -> Path:
    """A new directory under /tmp: the data directory's socket path must
    be short, and the account PostgreSQL runs as must reach it."""
    where = Path(tempfile.mkdtemp(prefix="snfd-dbfs-", dir="/tmp"))
    os.chmod(where, 0o755)
    testcase.addCleanup(shutil.rmtree, where, True)
    return where


async def _unmount(where: Path) -> None:
    """Unmount ``where``, waiting a little for processes that still use
    it to exit; detach it if it stays busy."""
    for _ in range(50):
        done = await run("umount", str(where))
        if done.returncode == 0 or not os.path.ismount(where):
            return
        await _sleep(0.2)
    await run("umount", "-l", str(where))


async def _sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def tmpfs(testcase: unittest.TestCase, size: int) -> Path:
    """A tmpfs of ``size`` bytes mounted for ``testcase``."""
    _need_root("mount", "umount")
    where = _mount_point(testcase)
    mounted = await run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                         "snfd-test-db", str(where))
    if mounted.returncode != 0:
        raise unittest.SkipTest(f"mounting a tmpfs is not permitted here:"
                                f" {mounted.stderr.strip() or mounted.returncode}")
    testcase.addCleanup(_unmount, where)
    return where


class Ext4:
    """An ext4 filesystem on a loop device over a sparse file, mounted
    with ``errors=remount-ro``, as a data disk usually is."""

    def __init__(self, where: Path, device: str):
        self.where = where
        self.device = device

    @classmethod
    async def mounted(cls, testcase: unittest.TestCase, size: int) -> Ext4:
        _need_root("mount", "umount", "losetup", "mkfs.ext4", "e2fsck")
        fd, image = tempfile.mkstemp(prefix="snfd-dbfs-", suffix=".img", dir="/tmp")
        testcase.addCleanup(os.unlink, image)
        os.ftruncate(fd, size)
        os.close(fd)
        attached = await run("losetup", "--find", "--show", image)
        if attached.returncode != 0:
            raise unittest.SkipTest(f"no loop device here: {attached.stderr.strip()}")
        device = attached.stdout.strip()
        testcase.addCleanup(run, "losetup", "--detach", device)
        made = await run("mkfs.ext4", "-q", "-F", device)
        if made.returncode != 0:
            raise unittest.SkipTest(f"mkfs.ext4 failed: {made.stderr.strip()}")
        fs = cls(_mount_point(testcase), device)
        await fs.mount()
        testcase.addCleanup(fs.unmount)
        if not fs._trigger.exists():
            raise unittest.SkipTest(f"this kernel has no {fs._trigger}")
        return fs

    @property
    def _trigger(self) -> Path:
        return Path("/sys/fs/ext4") / os.path.basename(self.device) / "trigger_fs_error"

    async def mount(self) -> None:
        done = await run("mount", "-o", "errors=remount-ro", self.device, str(self.where))
        if done.returncode != 0:
            raise unittest.SkipTest(f"mounting ext4 is not permitted here: {done.stderr.strip()}")

    async def unmount(self) -> None:
        if os.path.ismount(self.where):
            await _unmount(self.where)

    def fail(self) -> None:
        """An ext4 error (as a failing disk gives): the kernel turns the
        filesystem read-only at once, files open for writing or not."""
        self._trigger.write_text("snfd test: the disk failed\n")
        with open("/proc/mounts") as f:
            options = [line.split()[3] for line in f if line.split()[1] == str(self.where)]
        assert options and {"ro", "emergency_ro"} & set(options[-1].split(",")), options

    async def check(self) -> None:
        """The operator's fsck of the unmounted filesystem."""
        done = await run("e2fsck", "-f", "-y", self.device)
        # 0: clean, 1: errors corrected, 2: corrected, reboot advised.
        assert done.returncode < 4, done.stdout + done.stderr


def _setup_txn(txn: Any) -> None:
    txn.execute("CREATE TABLE t (id serial PRIMARY KEY, v bytea NOT NULL)")
    txn.execute("ALTER TABLE t ALTER v SET STORAGE EXTERNAL")
    txn.execute("INSERT INTO t (v) VALUES ('small')")


def _insert_txn(txn: Any, value: bytes) -> None:
    txn.execute("INSERT INTO t (v) VALUES (%s)", (value,))


def _count_txn(txn: Any, table: str = "t") -> int:
    txn.execute(f"SELECT count(*) FROM {table}")
    n: int = txn.fetchone()[0]
    return n


def _session_txn(txn: Any) -> tuple[int, Any]:
    """This session's backend and when the server started."""
    txn.execute("SELECT pg_backend_pid(), pg_postmaster_start_time()")
    return tuple(txn.fetchone())  # type: ignore[return-value]


def _switch_wal_txn(txn: Any) -> None:
    txn.execute("SELECT pg_switch_wal()")


class StorageFaultTests(unittest.TestCase):
    def setUp(self) -> None:
        self.metrics = Metrics()
        self.lines: list[str] = []

        def seen(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "snfd.db":
                self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(seen)
        self.addCleanup(globalLogPublisher.removeObserver, seen)

    async def server_on(self, directory: Path) -> ThrowawayPostgres:
        """A durable PostgreSQL (as production runs) with its data in
        ``directory``, stopped before the filesystem is unmounted."""
        pg = ThrowawayPostgres(durable=True, datadir=directory / "data")
        self.addCleanup(pg.cleanup)
        await threads.deferToThread(pg.start)
        return pg

    def pool(self, pg: ThrowawayPostgres, retry_window: float = 2.0) -> Database:
        """One connection, so that its reuse shows."""
        db = Database(pg.dsn, reactor, self.metrics, application_name="test",
                      min_connections=1, max_connections=1, retry_window=retry_window)
        db.start()
        self.addCleanup(db.close)
        return db

    def supervise(self, pg: ThrowawayPostgres) -> EmbeddedSupervisor:
        supervisor = EmbeddedSupervisor(pg.process, reactor, interval=0.1, max_delay=0.5)
        supervisor.startService()
        self.addCleanup(supervisor.stopService)
        return supervisor

    def logged(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def retries(self, name: str) -> float:
        labels = {"name": name, "reason": "connection"}
        return self.metrics.registry.get_sample_value("snfd_db_retries_total", labels) or 0.0

    @defer.inlineCallbacks
    def test_data_files_full(self):
        """Writes answer 503 "out of disk space" at once, nothing written,
        the connection kept; reads go on; the log says it once and the
        recovery once; writes work again when there is room."""
        where = yield defer.ensureDeferred(tmpfs(self, 64 << 20))
        pg = yield defer.ensureDeferred(self.server_on(where))
        db = self.pool(pg)
        yield defer.ensureDeferred(db.run("test.setup", _setup_txn))
        session = yield defer.ensureDeferred(db.run("test.session", _session_txn))
        ballast = yield defer.ensureDeferred(fill(str(where)))

        for _ in range(3):
            with self.assertRaises(DatabaseImpaired) as raised:
                yield defer.ensureDeferred(db.run("test.write", _insert_txn, os.urandom(ROW)))
        e = raised.exception
        self.assertEqual((e.code, e.headers), (503, {"Retry-After": "30"}))
        self.assertIn("the database is out of disk space", e.message)
        self.assertIn("No space left on device", e.reason)
        self.assertEqual(self.retries("test.write"), 0)
        # Rolled back, and the same connection serves the reads.
        n = yield defer.ensureDeferred(db.run("test.read", _count_txn))
        self.assertEqual(n, 1)
        again = yield defer.ensureDeferred(db.run("test.session", _session_txn))
        self.assertEqual(again, session)
        failed = self.logged("database interactions failed")
        self.assertEqual(len(failed), 1, self.lines)
        self.assertIn("out of disk space (test.write: could not extend file", failed[0])
        self.assertEqual(self.logged("recovered"), [])

        os.unlink(ballast)
        yield defer.ensureDeferred(db.run("test.write", _insert_txn, os.urandom(ROW)))
        n = yield defer.ensureDeferred(db.run("test.read", _count_txn))
        self.assertEqual(n, 2)
        again = yield defer.ensureDeferred(db.run("test.session", _session_txn))
        self.assertEqual(again, session)  # the server never restarted
        recovered = self.logged("database interactions recovered")
        self.assertEqual(len(recovered), 1, self.lines)
        self.assertIn("after 3 failures", recovered[0])

    @defer.inlineCallbacks
    def test_wal_full(self):
        """With no room for the next WAL segment the server PANICs and
        cannot recover, so it is down: 503 (unavailable), restarts fail
        until there is room, then it is back with every commit."""
        where = yield defer.ensureDeferred(tmpfs(self, 64 << 20))
        pg = yield defer.ensureDeferred(self.server_on(where))
        db = self.pool(pg)
        supervisor = self.supervise(pg)
        yield defer.ensureDeferred(db.run("test.setup", _setup_txn))
        ballast = yield defer.ensureDeferred(fill(str(where)))
        # Small rows fit the current segment's pages; switching segments
        # stands for the end of the current one.
        yield defer.ensureDeferred(db.run("test.write", _insert_txn, b"fits"))
        yield defer.ensureDeferred(db.run("test.switch", _switch_wal_txn))

        with self.assertRaises(DatabaseUnavailable) as raised:
            yield defer.ensureDeferred(db.run("test.write", _insert_txn, b"needs a segment"))
        self.assertNotIsInstance(raised.exception, DatabaseImpaired)
        self.assertEqual(raised.exception.code, 503)
        self.assertEqual(self.logged("database interactions failed"), [])
        log = pg.process.logfile
        yield defer.ensureDeferred(wait_for(
            lambda: self.logged("restarting the embedded PostgreSQL failed"),
            what="a failed restart"))
        # Said in the node's log: the server's own reason.
        failed = self.logged("restarting the embedded PostgreSQL failed")
        self.assertIn("No space left on device", failed[0])
        text = log.read_text()
        self.assertIn('PANIC:  could not write to file "pg_wal/xlogtemp', text)
        self.assertIn("shutting down due to startup process failure", text)
        self.assertEqual(supervisor.restarts, 0)

        os.unlink(ballast)
        yield defer.ensureDeferred(wait_for(lambda: supervisor.restarts == 1,
                                            what="the restart once there is room"))
        yield defer.ensureDeferred(db.run("test.write", _insert_txn, b"after"))
        n = yield defer.ensureDeferred(db.run("test.read", _count_txn))
        self.assertEqual(n, 3)  # the setup row, "fits" and "after"

    @defer.inlineCallbacks
    def test_filesystem_read_only(self):
        """Reads of open tables go on, others answer 503 "read-only"; a
        write takes the server down (503); after the operator's repair it
        is started again with every commit, and while the filesystem is
        unmounted no new cluster is made in its place."""
        fs = yield defer.ensureDeferred(Ext4.mounted(self, 128 << 20))
        pg = yield defer.ensureDeferred(self.server_on(fs.where))
        yield threads.deferToThread(query, pg.dsn, "CREATE TABLE t (id serial PRIMARY KEY,"
                                    " v bytea NOT NULL)")
        yield threads.deferToThread(query, pg.dsn, "INSERT INTO t (v) VALUES ('one')")
        yield threads.deferToThread(query, pg.dsn, "CREATE TABLE u (id int)")
        db = self.pool(pg)
        supervisor = self.supervise(pg)
        n = yield defer.ensureDeferred(db.run("test.read", _count_txn))
        self.assertEqual(n, 1)

        fs.fail()
        n = yield defer.ensureDeferred(db.run("test.read", _count_txn))
        self.assertEqual(n, 1)
        with self.assertRaises(DatabaseImpaired) as raised:
            yield defer.ensureDeferred(db.run("test.read_u", _count_txn, "u"))
        self.assertEqual((raised.exception.code, raised.exception.headers),
                         (503, {"Retry-After": "30"}))
        self.assertIn("the database's storage is read-only", raised.exception.message)
        with self.assertRaises(DatabaseUnavailable) as down:
            yield defer.ensureDeferred(db.run("test.write", _insert_txn, b"two"))
        self.assertNotIsInstance(down.exception, DatabaseImpaired)
        yield defer.ensureDeferred(wait_for(
            lambda: self.logged("restarting the embedded PostgreSQL failed"),
            what="a failed restart"))
        self.assertIn("PANIC:", pg.process.logfile.read_text())
        failed = self.logged("restarting the embedded PostgreSQL failed")
        self.assertIn("Read-only file system", failed[0])

        yield defer.ensureDeferred(fs.unmount())
        failures = supervisor._failures.count
        yield defer.ensureDeferred(wait_for(lambda: supervisor._failures.count >= failures + 2,
                                            what="restarts attempted while unmounted"))
        self.assertFalse((fs.where / "data").exists())
        yield defer.ensureDeferred(fs.check())
        yield defer.ensureDeferred(fs.mount())
        yield defer.ensureDeferred(wait_for(lambda: supervisor.restarts == 1,
                                            what="the restart after the repair"))
        yield defer.ensureDeferred(db.run("test.write", _insert_txn, b"two"))
        n = yield defer.ensureDeferred(db.run("test.read", _count_txn))
        self.assertEqual(n, 2)
