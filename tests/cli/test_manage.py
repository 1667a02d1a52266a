"""snf-manage: upgrade, cluster, config-check, config-example."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import psycopg2
from twisted.trial import unittest

from snfd.cli import manage
from snfd.cluster import store
from snfd.testing.files import temp_file
from snfd.testing.postgres import fresh_database


class RunManage:
    """Runs ``snf-manage`` in process with a clean ``SNFD_*`` environment."""

    def run_manage(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SNFD_")}
        environ.update(env or {})
        self.patch(os, "environ", environ)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = manage.main(list(argv))
        return code, out.getvalue(), err.getvalue()



class ManageTests(RunManage, unittest.TestCase):
    def config(self, text: str) -> str:
        return temp_file(self, text)

    def test_config_check(self):
        """config-check says OK for a valid file and prints the one-line
        error (exit 1) for an invalid one."""
        good = self.config("[node]\nheartbeat_interval = 2\n")
        self.assertEqual(self.run_manage("--config", good, "config-check")[:2],
                         (0, f"{good}: OK\n"))
        bad = self.config("[node]\nheartbeat = 2\n")
        code, _, err = self.run_manage("--config", bad, "config-check")
        self.assertEqual((code, err), (1, f"snf-manage: {bad}: [node] heartbeat: unknown key\n"))

    def test_config_check_unknown_plugin(self):
        """config-check refuses enabling a plugin that is not installed."""
        code, _, err = self.run_manage("config-check", env={"SNFD_PLUGINS": "ghost"})
        self.assertEqual(code, 1)
        self.assertIn("no installed plugin is named 'ghost'", err)

    def test_upgrade_and_cluster(self):
        """upgrade applies the node migrations once (--check reports them
        before); cluster shows members, the leader and the epoch."""
        dsn = fresh_database(self)
        env = {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": ""}
        code, out, _ = self.run_manage("upgrade", "--check", env=env)
        self.assertEqual((code, out.splitlines()[0]), (1, "pending: node 0001_cluster"))
        code, _, err = self.run_manage("cluster", env=env)
        self.assertEqual(code, 1)
        self.assertIn("snf-manage upgrade", err)
        self.assertEqual(self.run_manage("upgrade", env=env)[:2],
                         (0, "applied: node 0001_cluster\napplied: node 0002_quota_serials\n"))
        self.assertEqual(self.run_manage("upgrade", env=env)[:2], (0, "schema is up to date\n"))

        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            store.register_node_txn(cur, "node-a", "http://127.0.0.1:1", ["x"])
            store.begin_term_txn(cur, "node-a")
        conn.close()
        code, out, _ = self.run_manage("cluster", "--json", env=env)
        data = json.loads(out)
        self.assertEqual((code, data["epoch"], data["leader"]), (0, 1, None))
        self.assertEqual([(m["id"], m["alive"]) for m in data["members"]], [("node-a", True)])
        code, out, _ = self.run_manage("cluster", env=env)
        self.assertIn("leader: (none)   epoch: 1", out)
        self.assertIn("node-a", out)

    def test_config_example(self):
        """config-example prints every documented key."""
        code, out, _ = self.run_manage("config-example")
        self.assertEqual(code, 0)
        self.assertIn("[database]", out)
        self.assertIn("#url = ", out)
