"""Tests for snfd.db.embedded and the PostgreSQL helpers of snfd.testing."""

import os
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import psycopg2
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, TestCase

from snfd.db.embedded import (
    EmbeddedPostgresError,
    PostgresProcess,
    bundled_bindir,
    embedded_for_command,
    ensure_embedded,
)
from snfd.testing.postgres import (
    TestServerUnavailable,
    ThrowawayPostgres,
    admin_dsn,
    fresh_database,
    throwaway_postgres,
)


def _kill_server(datadir: Path) -> None:
    """Fast-stop whatever postmaster runs on C{datadir}, without snfd code."""
    try:
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _scratch_dir(testcase: TestCase, mode: int = 0o755) -> Path:
    """A directory under /tmp (reachable by the snfd account), removed after
    the test, after any server running under it is stopped."""
    path = Path(tempfile.mkdtemp(prefix="snfd-test-", dir="/tmp"))
    os.chmod(path, mode)
    testcase.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def _embedded(testcase: TestCase, state_dir: Path, **kwargs):
    """ensure_embedded, with the server stopped when the test ends."""
    testcase.addCleanup(_kill_server, state_dir / "postgres")
    return ensure_embedded(state_dir, Logger(observer=lambda e: None),
                           **kwargs)


def _query(dsn: str, sql: str):
    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def _root_only() -> None:
    if os.geteuid() != 0:
        raise SkipTest("only root switches accounts")


class EmbeddedPostgresTests(TestCase):
    def test_first_start(self) -> None:
        """The first start creates the data directory in the state directory
        and a database snfd that answers over the returned DSN."""
        state = _scratch_dir(self) / "state"
        pg = _embedded(self, state)
        self.assertTrue((state / "postgres" / "PG_VERSION").is_file())
        self.assertEqual(
            _query(pg.dsn_for("snfd"), "SELECT 1, current_database()"),
            [(1, "snfd")])

    def test_second_start_adopts_running_server(self) -> None:
        """A second ensure_embedded on the same state directory (a node
        restarted after being killed) reuses the running server: sessions
        opened before survive."""
        state = _scratch_dir(self)
        first = _embedded(self, state)
        conn = psycopg2.connect(first.dsn_for("snfd"))
        self.addCleanup(conn.close)
        second = _embedded(self, state)
        self.assertEqual(second.dsn_for("snfd"), first.dsn_for("snfd"))
        self.assertEqual((first.adopted, second.adopted), (False, True))
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            self.assertEqual(cur.fetchall(), [(1,)])

    def test_stop_start_keeps_data(self) -> None:
        """Data written before a stop is there after the next start, and the
        server is unreachable in between."""
        state = _scratch_dir(self)
        pg = _embedded(self, state)
        dsn = pg.dsn_for("snfd")
        _query(dsn, "CREATE TABLE kept (v text);"
                    " INSERT INTO kept VALUES ('x')")
        pg.stop()
        self.assertFalse(pg.is_running())
        self.assertRaises(psycopg2.OperationalError, _query, dsn, "SELECT 1")
        pg.start()
        self.assertEqual(_query(dsn, "SELECT v FROM kept"), [("x",)])

    def test_command_leaves_a_running_node_alone(self) -> None:
        """A one-off command starts the server when the node is down and
        hands it back to be stopped; when the node runs it, the command
        gets no process to stop."""
        state = _scratch_dir(self)
        self.addCleanup(_kill_server, state / "postgres")
        own, dsn = embedded_for_command(state)
        self.assertIsNotNone(own)
        self.assertEqual(_query(dsn, "SELECT current_database()"),
                         [("snfd",)])
        shared, again = embedded_for_command(state)
        self.assertIsNone(shared)
        self.assertEqual(again, dsn)
        own.stop()
        self.assertRaises(psycopg2.OperationalError, _query, dsn, "SELECT 1")

    def test_socket_path_too_long(self) -> None:
        """A state directory so deep that the Unix socket path would not fit
        is refused up front with an error naming the cure."""
        state = _scratch_dir(self) / ("d" * 100)
        with self.assertRaises(EmbeddedPostgresError) as caught:
            _embedded(self, state)
        message = str(caught.exception)
        self.assertIn("socket path", message)
        self.assertIn("SNFD_STATE_DIR", message)
        self.assertNotIn("\n", message)
        self.assertFalse((state / "postgres").exists())

    def test_socket_path_checked_for_any_server(self) -> None:
        """PostgresProcess itself refuses a data directory whose socket
        path is over the limit, before creating anything."""
        datadir = _scratch_dir(self) / ("d" * 90)
        self.assertRaises(EmbeddedPostgresError, PostgresProcess, datadir,
                          bindir=bundled_bindir(), run_as="postgres")
        self.assertFalse(datadir.exists())

    def test_unreachable_state_dir_as_root(self) -> None:
        """As root, a state directory the snfd account cannot reach (under a
        mode-700 directory) is an error naming that directory, whose mode
        is left alone."""
        _root_only()
        closed = _scratch_dir(self, mode=0o700)
        with self.assertRaises(EmbeddedPostgresError) as caught:
            _embedded(self, closed / "state")
        self.assertIn(str(closed), str(caught.exception))
        self.assertIn("SNFD_STATE_DIR", str(caught.exception))
        self.assertEqual(stat.S_IMODE(closed.stat().st_mode), 0o700)

    def test_unreachable_binaries_are_copied_as_root(self) -> None:
        """As root, binaries the snfd account cannot run (a virtualenv under
        a private home) are copied once into the state directory and the
        server runs from the copy; the private directory stays private."""
        _root_only()
        private = _scratch_dir(self, mode=0o700)
        bundled = bundled_bindir()
        package = bundled.parent.parent
        shutil.copytree(package / "pginstall",
                        private / "pgserver" / "pginstall", symlinks=True)
        shutil.copytree(package.parent / "pgserver.libs",
                        private / "pgserver.libs", symlinks=True)
        fake = private / "pgserver" / "pginstall" / "bin"

        state = _scratch_dir(self)
        events: list = []
        pg = ensure_embedded(state, Logger(observer=events.append),
                             bindir=fake)
        self.addCleanup(_kill_server, state / "postgres")
        self.assertTrue(pg.bindir.is_relative_to(state))
        copies = [p for p in state.iterdir() if p.name.startswith("pgsql-")]
        self.assertEqual(len(copies), 1)
        self.assertEqual(copies[0].stat().st_uid, 0)
        self.assertEqual(stat.S_IMODE(copies[0].stat().st_mode), 0o755)
        self.assertEqual(_query(pg.dsn_for("snfd"), "SELECT 1"), [(1,)])
        self.assertEqual(stat.S_IMODE(private.stat().st_mode), 0o700)

        pg.stop()
        events.clear()
        again = ensure_embedded(state, Logger(observer=events.append),
                                bindir=fake)
        self.assertEqual(again.bindir, pg.bindir)
        self.assertFalse([e for e in events if "Copied" in e["log_format"]])


class ThrowawayPostgresTests(TestCase):
    def test_restart_keeps_port_and_data(self) -> None:
        """restart() brings the server back on the same port with the same
        data."""
        server = throwaway_postgres(self)
        dsn = server.dsn
        _query(dsn, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        server.restart()
        self.assertEqual(server.dsn, dsn)
        self.assertEqual(_query(dsn, "SELECT v FROM kept"), [(7,)])

    def test_cleanup_removes_everything(self) -> None:
        """cleanup() stops the server and deletes its directory."""
        server = ThrowawayPostgres()
        self.addCleanup(server.cleanup)
        server.start()
        self.assertIn(server.port, range(17000, 18000))
        server.cleanup()
        self.assertFalse(server.base.exists())
        self.assertRaises(psycopg2.OperationalError, _query, server.dsn,
                          "SELECT 1")


class _Cleanups:
    """Stands in for a TestCase to run fresh_database's cleanup on demand."""

    def __init__(self) -> None:
        self.calls: list = []

    def addCleanup(self, f, *args, **kwargs) -> None:
        self.calls.append((f, args, kwargs))

    def run(self) -> None:
        for f, args, kwargs in reversed(self.calls):
            f(*args, **kwargs)


class FreshDatabaseTests(TestCase):
    def test_empty_then_dropped(self) -> None:
        """fresh_database gives an empty database, dropped by its cleanup
        even while a session is still connected to it."""
        owner = _Cleanups()
        self.addCleanup(owner.run)
        dsn = fresh_database(owner)
        [(name,)] = _query(dsn, "SELECT current_database()")
        self.assertTrue(name.startswith("snfd_test_"))
        self.assertEqual(
            _query(dsn, "SELECT count(*) FROM pg_tables"
                        " WHERE schemaname = 'public'"), [(0,)])
        lingering = psycopg2.connect(dsn)
        self.addCleanup(lingering.close)

        owner.run()
        owner.calls.clear()
        self.assertEqual(
            _query(admin_dsn(), "SELECT count(*) FROM pg_database"
                                f" WHERE datname = '{name}'"), [(0,)])

    def test_unreachable_server_is_an_error(self) -> None:
        """An unreachable test server raises a clear error, not a skip."""
        nowhere = "postgresql://postgres@127.0.0.1:1/postgres"
        self.patch(os, "environ",
                   {**os.environ, "SNFD_TEST_DATABASE_URL": nowhere})
        with self.assertRaises(TestServerUnavailable) as caught:
            fresh_database(_Cleanups())
        self.assertIn("SNFD_TEST_DATABASE_URL", str(caught.exception))
