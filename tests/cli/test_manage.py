"""snf-manage: upgrade, cluster, config-check, config-example."""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout

import psycopg2
from twisted.internet import defer, threads, utils
from twisted.trial import unittest

from snfd.cli import cyclades, identity, manage, pithos
from snfd.cluster import store
from snfd.testing.files import temp_file
from snfd.testing.postgres import fresh_database


def _on_test_reactor(work):
    """``run_with_reactor`` for a command run in a thread of the test: the
    work runs on the test's (running) reactor."""
    from twisted.internet import reactor

    return int(threads.blockingCallFromThread(
        reactor, lambda: defer.ensureDeferred(work(reactor))))


class RunManage:
    """Runs ``snf-manage`` in process with a clean ``SNFD_*`` environment."""

    async def run_manage(self, *argv: str, env: dict[str, str] | None = None,
                         ) -> tuple[int, str, str]:
        """``snf-manage argv``: its status, stdout and stderr.  It runs in a
        thread, as from a shell, and the commands that run under a reactor
        of their own run theirs on the test's reactor."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SNFD_")}
        environ.update(env or {})
        self.patch(os, "environ", environ)
        for module in (identity, pithos, cyclades):
            self.patch(module, "run_with_reactor", _on_test_reactor)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = await threads.deferToThread(manage.main, list(argv))
        return code, out.getvalue(), err.getvalue()


class ManageTests(RunManage, unittest.TestCase):
    def config(self, text: str) -> str:
        return temp_file(self, text)

    async def test_config_check(self):
        """config-check says OK for a valid file and prints the one-line
        error (exit 1) for an invalid one."""
        good = self.config("[node]\nheartbeat_interval = 2\n")
        self.assertEqual((await self.run_manage("--config", good, "config-check"))[:2],
                         (0, f"{good}: OK\n"))
        bad = self.config("[node]\nheartbeat = 2\n")
        code, _, err = await self.run_manage("--config", bad, "config-check")
        self.assertEqual((code, err), (1, f"snf-manage: {bad}: [node] heartbeat: unknown key\n"))

    async def test_config_check_unknown_plugin(self):
        """config-check refuses enabling a plugin that is not installed."""
        code, _, err = await self.run_manage("config-check", env={"SNFD_PLUGINS": "ghost"})
        self.assertEqual(code, 1)
        self.assertIn("no installed plugin is named 'ghost'", err)

    async def test_upgrade_and_cluster(self):
        """upgrade applies the node migrations once (--check reports them
        before); cluster shows members, the leader and the epoch."""
        dsn = fresh_database(self)
        env = {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": ""}
        code, out, _ = await self.run_manage("upgrade", "--check", env=env)
        self.assertEqual((code, out.splitlines()[0]), (1, "pending: node 0001_cluster"))
        code, _, err = await self.run_manage("cluster", env=env)
        self.assertEqual(code, 1)
        self.assertIn("snf-manage upgrade", err)
        self.assertEqual((await self.run_manage("upgrade", env=env))[:2],
                         (0, "applied: node 0001_cluster\napplied: node 0002_quota_serials\n"
                             "applied: node 0003_node_boots\n"))
        self.assertEqual((await self.run_manage("upgrade", env=env))[:2],
                         (0, "schema is up to date\n"))

        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            store.register_node_txn(cur, "node-a", "http://127.0.0.1:1", ["x"])
            store.begin_term_txn(cur, "node-a")
        conn.close()
        code, out, _ = await self.run_manage("cluster", "--json", env=env)
        data = json.loads(out)
        self.assertEqual((code, data["epoch"], data["leader"]), (0, 1, None))
        self.assertEqual([(m["id"], m["alive"]) for m in data["members"]], [("node-a", True)])
        code, out, _ = await self.run_manage("cluster", env=env)
        self.assertIn("leader: (none)   epoch: 1", out)
        self.assertIn("node-a", out)

    async def test_config_example(self):
        """config-example prints every documented key."""
        code, out, _ = await self.run_manage("config-example")
        self.assertEqual(code, 0)
        self.assertIn("[database]", out)
        self.assertIn("#url = ", out)

    async def test_reactor_command_startup_error(self):
        """A command that runs under its own reactor (an identity command,
        here) ends with a one-line error and status 1 when its service
        cannot be built (the plugin is installed, its tables exist, but it
        is not enabled), rather than leaving the reactor running."""
        dsn = fresh_database(self)
        env = {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity",
               "SNFD_STATE_DIR": self.mktemp()}
        self.assertEqual((await self.run_manage("upgrade", env=env))[0], 0)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SNFD_")}
        environ.update(env)
        manage_cmd = ("-m", "snfd.cli.manage", "user-list")
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, manage_cmd, env=environ)
        self.assertEqual((code, out, err), (0, b"no users\n", b""))
        environ["SNFD_PLUGINS"] = ""
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, manage_cmd, env=environ)
        self.assertEqual((code, err), (
            1, b"snf-manage: [plugins] enabled: the identity plugin is not enabled\n"))
