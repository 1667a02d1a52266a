"""Real ``twistd snfd`` processes: embedded default, startup errors, a
dropped-in third-party plugin, two-node failover on SIGKILL and SIGSTOP
with fencing, and surviving a PostgreSQL restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from snfd.testing.files import temp_file
from snfd.testing.node import NodeProcess, http_get, run_twistd
from snfd.testing.plugins import FIXTURE
from snfd.testing.postgres import fresh_database, query, throwaway_postgres

# Generous: these bound a correct implementation by an order of magnitude;
# the measured figures come from bench/failover.py.
TAKEOVER_DEADLINE = 30.0
# twistd re-raises the terminating signal after a clean shutdown so that its
# parent sees how it ended; systemd counts SIGTERM as a clean stop.
CLEAN_EXIT = (0, -signal.SIGTERM)


def write_config(testcase: unittest.TestCase, text: str) -> str:
    return temp_file(testcase, text)


def plugin_env() -> dict[str, str]:
    """The environment that drops the third-party plugin into snfd.plugins."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{FIXTURE}{os.pathsep}{path}" if path else str(FIXTURE)}


async def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def leader_seen_by(node: NodeProcess) -> str | None:
    try:
        status, body = node.get_json("/_cluster")
    except OSError:
        return None
    return body.get("leader") if status == 200 else None


class StartupTests(unittest.TestCase):
    def test_bad_config_is_one_line(self):
        """A config error stops twistd with status 1 and one line naming the
        file, section and key."""
        path = write_config(self, "[database]\npool_max = lots\n")
        result = run_twistd(["-n", "--pidfile=", "snfd", "--config", path], env={})
        self.assertEqual(result.returncode, 1, result.stderr)
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        self.assertEqual(lines, [f"snfd: {path}: [database] pool_max: expected an integer,"
                                 " got 'lots'"])

    def test_unknown_plugin_is_one_line(self):
        """Enabling a plugin nobody provides stops the node naming it."""
        result = run_twistd(["-n", "--pidfile=", "snfd"],
                            env={"SNFD_PLUGINS": "nosuchplugin",
                                 "SNFD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("no installed plugin is named 'nosuchplugin'", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_old_schema_refused(self):
        """A node without auto_upgrade refuses a database whose schema is
        older than its code, telling the operator to run snf-manage upgrade."""
        state = tempfile.mkdtemp(prefix="snfd-state-")
        self.addCleanup(shutil.rmtree, state, True)
        result = run_twistd(["-n", "--pidfile=", "snfd"],
                            env={"SNFD_PLUGINS": "", "SNFD_DATABASE_URL": fresh_database(self),
                                 "SNFD_STATE_DIR": state})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("snf-manage upgrade", result.stderr)

    @defer.inlineCallbacks
    def test_embedded_default(self):
        """With no database URL the node starts a private PostgreSQL in its
        state directory, upgrades it, serves /_health, and on a second start
        reuses the same data (same node id, epoch moves on)."""
        state = Path(tempfile.mkdtemp(prefix="snfd-embedded-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, state, True)
        state.chmod(0o755)  # as root, the embedded server's account must reach it
        env = {"SNFD_PLUGINS": ""}
        env.pop("SNFD_DATABASE_URL", None)
        first = NodeProcess(env=env, state_dir=state)
        first.env.pop("SNFD_DATABASE_URL", None)
        self.addCleanup(first.cleanup)
        first.start()
        yield defer.ensureDeferred(first.wait_ready(reactor, timeout=120))
        status, health = first.get_json("/_health")
        self.assertEqual((status, health["database"]["ok"]), (200, True))
        yield defer.ensureDeferred(wait_until(lambda: leader_seen_by(first), 30, "a leader"))
        _, cluster = first.get_json("/_cluster")
        self.assertTrue((state / "postgres").is_dir() or any(state.iterdir()))
        code = yield threads.deferToThread(first.stop)
        self.assertIn(code, CLEAN_EXIT, first.tail())

        second = NodeProcess(env=env, state_dir=state)
        second.env.pop("SNFD_DATABASE_URL", None)
        self.addCleanup(second.cleanup)
        second.start()
        yield defer.ensureDeferred(second.wait_ready(reactor, timeout=120))
        yield defer.ensureDeferred(wait_until(lambda: leader_seen_by(second), 30, "a leader"))
        _, again = second.get_json("/_cluster")
        self.assertEqual(again["node"], cluster["node"])
        self.assertGreater(again["epoch"], cluster["epoch"])
        yield threads.deferToThread(second.stop)


    @defer.inlineCallbacks
    def test_embedded_postgres_killed(self):
        """The embedded PostgreSQL's postmaster killed (``kill -9``, as the
        OOM killer would): the node says so, restarts it, and serves again
        (/_health 200, identity answers) without being restarted; requests
        meanwhile are 503 with Retry-After, never a hang; the repeated
        failures leave a bounded number of log lines."""
        state = Path(tempfile.mkdtemp(prefix="snfd-embedded-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, state, True)
        state.chmod(0o755)
        node = NodeProcess(env={"SNFD_PLUGINS": "identity"}, state_dir=state)
        node.env.pop("SNFD_DATABASE_URL", None)
        self.addCleanup(node.cleanup)
        node.start()
        yield defer.ensureDeferred(node.wait_ready(reactor, timeout=120))
        yield defer.ensureDeferred(wait_until(lambda: leader_seen_by(node), 30, "a leader"))
        pid = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        seen: set[int] = set()

        def served() -> bool:
            # A token check reads the database: 404 (no such token) when up.
            request = urllib.request.Request(f"{node.url}/identity/v3/auth/tokens", headers={  # noqa: S310
                "X-Auth-Token": "not-a-token", "X-Subject-Token": "not-a-token"})
            try:
                with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
                if status == 503:
                    self.assertTrue(e.headers.get("Retry-After"), "503 without Retry-After")
            except OSError:
                return False
            seen.add(status)
            health, _, body = http_get(f"{node.url}/_health", timeout=10)
            # 200 "degraded" while the outage is shorter than retry_window:
            # serving again means the database answers its pings.
            return status != 503 and health == 200 and json.loads(body)["database"]["ok"]

        # Backends of the killed postmaster may answer for a moment: wait
        # for the supervisor to find it gone before judging the recovery.
        yield defer.ensureDeferred(wait_until(
            lambda: "is not running; restarting it" in node.log_path.read_text(errors="replace"),
            30, "the supervisor to notice"))
        yield defer.ensureDeferred(wait_until(served, 90, "the node serving again"))
        new_pid = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
        self.assertNotEqual(new_pid, pid)
        self.assertLessEqual(seen, {401, 404, 503}, node.tail())
        # The supervisor logs the restart once pg_ctl returns, which may be
        # after the pool has reconnected.
        yield defer.ensureDeferred(wait_until(
            lambda: "is running again" in node.log_path.read_text(errors="replace"),
            30, "the supervisor to log the restart"))
        log = node.log_path.read_text(errors="replace")
        self.assertLess(log.count("leader lock attempt"), 10, node.tail())
        self.assertNotIn("Traceback", log)
        yield defer.ensureDeferred(wait_until(lambda: leader_seen_by(node), 30, "a leader"))
        code = yield threads.deferToThread(node.stop)
        self.assertIn(code, CLEAN_EXIT, node.tail())


class TwoNodeTests(unittest.TestCase):
    """Two nodes on one database, both running the dropped-in plugin whose
    leader duty writes one fenced row every 50 ms."""

    def start_pair(self, dsn: str | None = None):
        self.dsn = dsn or fresh_database(self)
        config = write_config(self, "[database]\nauto_upgrade = yes\n"
                                    "[thirdparty]\ntick_interval = 0.05\n")
        env = {"SNFD_DATABASE_URL": self.dsn, "SNFD_PLUGINS": "thirdparty", **plugin_env()}
        nodes = []
        for _ in range(2):
            node = NodeProcess(env=env, args=["--config", config])
            self.addCleanup(node.cleanup)
            node.start()
            nodes.append(node)
        return nodes

    async def ready(self, nodes):
        for node in nodes:
            await node.wait_ready(reactor)
        ids = {}
        for node in nodes:
            _, health = node.get_json("/_health")
            ids[health["node"]] = node
        leader_id = await wait_until(lambda: leader_seen_by(nodes[0]), 30, "a leader")
        leader = ids[leader_id]
        follower = next(n for n in nodes if n is not leader)
        return leader, follower, leader_id

    def query(self, sql, args=()):
        return query(self.dsn, sql, *args)

    @defer.inlineCallbacks
    def test_plugin_dropped_in(self):
        """The third-party plugin found on PYTHONPATH loads in both nodes: its
        migration ran, its route answers, its leader duty runs on the leader
        only."""
        nodes = self.start_pair()
        leader, follower, leader_id = yield defer.ensureDeferred(self.ready(nodes))
        for node in nodes:
            status, body = node.get_json("/thirdparty/hello")
            self.assertEqual((status, body["greeting"]), (200, "hello"))
        yield defer.ensureDeferred(wait_until(
            lambda: self.query("SELECT count(*) FROM thirdparty_ticks")[0][0] > 5, 30, "ticks"))
        writers = {r[0] for r in self.query("SELECT DISTINCT node_id FROM thirdparty_ticks")}
        self.assertEqual(writers, {leader_id})
        status, cluster = follower.get_json("/_cluster")
        self.assertEqual(len(cluster["members"]), 2)
        self.assertFalse(cluster["this_node_leads"])

    @defer.inlineCallbacks
    def test_sigkill_failover(self):
        """SIGKILL of the leader: the other node becomes leader with a higher
        epoch."""
        nodes = self.start_pair()
        leader, follower, leader_id = yield defer.ensureDeferred(self.ready(nodes))
        _, before = follower.get_json("/_cluster")
        leader.signal(signal.SIGKILL)
        _, health = follower.get_json("/_health")
        new_id = yield defer.ensureDeferred(wait_until(
            lambda: (leader_seen_by(follower) or leader_id) != leader_id and leader_seen_by(follower),
            TAKEOVER_DEADLINE, "takeover"))
        self.assertEqual(new_id, health["node"])
        _, after = follower.get_json("/_cluster")
        self.assertGreater(after["epoch"], before["epoch"])

    @defer.inlineCallbacks
    def test_sigstop_failover_and_fencing(self):
        """SIGSTOP of the leader: the other node takes over once the frozen
        leader's lock session times out.  After SIGCONT the old leader does
        not act: no row of its duty is written after the takeover, and it
        reports that it no longer leads."""
        nodes = self.start_pair()
        leader, follower, leader_id = yield defer.ensureDeferred(self.ready(nodes))
        yield defer.ensureDeferred(wait_until(
            lambda: self.query("SELECT count(*) FROM thirdparty_ticks")[0][0] > 3, 30, "ticks"))
        leader.signal(signal.SIGSTOP)
        _, health = follower.get_json("/_health")
        yield defer.ensureDeferred(wait_until(
            lambda: leader_seen_by(follower) == health["node"], TAKEOVER_DEADLINE, "takeover"))
        _, cluster = follower.get_json("/_cluster")
        new_epoch = cluster["epoch"]
        old_rows = self.query("SELECT count(*), max(epoch) FROM thirdparty_ticks"
                              " WHERE node_id = %s", (leader_id,))[0]

        leader.signal(signal.SIGCONT)
        yield defer.ensureDeferred(wait_until(
            lambda: (leader.get_json("/_cluster")[1] or {}).get("this_node_leads") is False,
            TAKEOVER_DEADLINE, "the old leader to notice"))
        # Two more election rounds of the old leader: it asked the database
        # again after noticing, and whatever it had in flight has ended.
        noticed = leader.get_json("/_cluster")[1]["election_rounds"]
        yield defer.ensureDeferred(wait_until(
            lambda: leader.get_json("/_cluster")[1]["election_rounds"] >= noticed + 2,
            TAKEOVER_DEADLINE, "two more rounds of the old leader"))
        rows = self.query("SELECT count(*), max(epoch) FROM thirdparty_ticks"
                          " WHERE node_id = %s", (leader_id,))[0]
        self.assertEqual(rows, old_rows, "the resumed old leader wrote after losing its term")
        self.assertLess(rows[1], new_epoch)
        new_rows = self.query("SELECT count(*) FROM thirdparty_ticks WHERE epoch = %s",
                              (new_epoch,))[0][0]
        self.assertGreater(new_rows, 0)
        self.assertEqual(leader_seen_by(leader), health["node"])

    @defer.inlineCallbacks
    def test_postgres_restart(self):
        """Both nodes survive a PostgreSQL restart: /_health is 200 again and
        the cluster has a leader again, at a higher epoch."""
        pg = throwaway_postgres(self)
        conn = psycopg2.connect(pg.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE snfd")
        conn.close()
        nodes = self.start_pair(pg.dsn_for("snfd"))
        leader, follower, leader_id = yield defer.ensureDeferred(self.ready(nodes))
        _, before = follower.get_json("/_cluster")
        yield threads.deferToThread(pg.restart)
        for node in nodes:
            yield defer.ensureDeferred(wait_until(
                lambda n=node: ((n.get_json("/_health")[1] or {}).get("database") or {}).get("ok"),
                60, "the database answering each node's health check again"))
        yield defer.ensureDeferred(wait_until(
            lambda: (follower.get_json("/_cluster")[1] or {}).get("epoch", 0) > before["epoch"]
            and leader_seen_by(follower), 60, "a new term after restart"))
        for node in nodes:
            code = yield threads.deferToThread(node.stop)
            self.assertIn(code, CLEAN_EXIT, node.tail())
