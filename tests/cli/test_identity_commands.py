"""snf-manage's identity commands on a fresh database: users, tokens,
groups, components, resources, quotas, projects and commission
reconciliation."""

from __future__ import annotations

import json

import psycopg2
from twisted.internet import defer
from twisted.trial import unittest

from snfd.db.pool import DirectDatabase
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.identity.service import RESOURCES
from snfd.quota import Resource, user_and_project
from snfd.quota.serials import record_txn
from snfd.testing.postgres import fresh_database, query
from tests.cli.test_manage import RunManage


def run(coro):
    """The result of a coroutine that completes synchronously (DirectDatabase)."""
    out: list = []
    defer.ensureDeferred(coro).addBoth(out.append)
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


class IdentityCommandTests(RunManage, unittest.TestCase):
    def setUp(self):
        self.dsn = fresh_database(self)
        self.env = {"SNFD_DATABASE_URL": self.dsn, "SNFD_PLUGINS": "identity",
                    "SNFD_STATE_DIR": self.mktemp()}
        self.assertEqual(self.run_manage("upgrade", env=self.env)[0], 0)

    def manage(self, *argv: str) -> tuple[int, str, str]:
        return self.run_manage(*argv, env=self.env)

    def ok(self, *argv: str) -> str:
        code, out, err = self.manage(*argv)
        self.assertEqual(code, 0, err)
        return out

    def sql(self, statement: str, *args):
        return query(self.dsn, statement, *args)

    def test_user_lifecycle(self):
        """user-add --json prints uuid and token; show, list, modify,
        renew-token (the old token is gone), deactivate, activate."""
        made = json.loads(self.ok("user-add", "--email", "ann@example.org", "--password",
                                  "a long password", "--first-name", "Ann", "--activate",
                                  "--admin", "--json"))
        self.assertEqual((made["state"], made["is_admin"]), ("active", True))
        self.assertTrue(made["token"])
        shown = json.loads(self.ok("user-show", "ann@example.org", "--json"))
        self.assertEqual(shown["uuid"], made["uuid"])
        self.assertEqual(shown["providers"], ["local:ann@example.org"])
        self.assertIn("ann@example.org", self.ok("user-list"))
        renewed = json.loads(self.ok("user-renew-token", made["uuid"], "--json"))
        self.assertNotEqual(renewed["token"], made["token"])
        [(count,)] = self.sql("SELECT count(*) FROM identity_tokens")
        self.assertEqual(count, 1)
        self.ok("user-modify", made["uuid"], "--last-name", "Lee", "--no-admin")
        self.assertFalse(json.loads(self.ok("user-show", made["uuid"], "--json"))["is_admin"])
        self.ok("user-deactivate", made["uuid"], "--reason", "left")
        self.assertEqual(self.sql("SELECT count(*) FROM identity_tokens"), [(0,)])
        self.assertIn("active", self.ok("user-activate", made["uuid"]))

    def test_pending_user_and_errors(self):
        """Without --activate a user waits for verification; an unknown user
        or a taken email is a one-line error with status 1."""
        made = json.loads(self.ok("user-add", "--email", "bob@example.org", "--json"))
        self.assertEqual((made["state"], made["token"]), ("pending_verification", None))
        self.ok("user-modify", "bob@example.org", "--verify")
        state = json.loads(self.ok("user-show", "bob@example.org", "--json"))["state"]
        self.assertEqual(state, "pending_moderation")
        code, _, err = self.manage("user-add", "--email", "BOB@example.org")
        self.assertEqual(code, 1)
        self.assertEqual(err.count("\n"), 1)
        code, _, err = self.manage("user-show", "nobody@example.org")
        self.assertEqual(code, 1)
        self.assertIn("nobody@example.org", err)

    def test_groups_and_components(self):
        """Groups gain members; a component gets a token (stored hashed)."""
        made = json.loads(self.ok("user-add", "--email", "c@example.org", "--activate",
                                  "--json"))
        self.ok("group-add", "helpdesk")
        self.ok("group-member-add", "helpdesk", made["uuid"])
        self.assertEqual(json.loads(self.ok("user-show", made["uuid"], "--json"))["groups"],
                         ["helpdesk"])
        self.assertIn("helpdesk  (1 members)", self.ok("group-list"))
        token = json.loads(self.ok("component-add", "pithos", "--json"))["token"]
        [(stored,)] = self.sql("SELECT token_hash FROM identity_components")
        self.assertNotIn(token.encode(), bytes(stored))
        self.assertIn("pithos", self.ok("component-list"))

    def holder(self):
        conn = psycopg2.connect(self.dsn)
        self.addCleanup(conn.close)
        return conn, LocalQuotaHolder(DirectDatabase(conn))

    def test_resources_and_quotas(self):
        """resource-modify sets defaults that new users' base projects get;
        quota-list shows the holdings."""
        _, holder = self.holder()
        run(holder.register_resources("astakos", list(RESOURCES)))
        out = json.loads(self.ok("resource-list", "--json"))
        self.assertIn("astakos.pending_app", [r["name"] for r in out])
        modified = json.loads(self.ok("resource-modify", "astakos.pending_app",
                                      "--base-default", "7", "--json"))
        self.assertEqual(modified["base_default"], 7)
        made = json.loads(self.ok("user-add", "--email", "d@example.org", "--activate",
                                  "--json"))
        rows = json.loads(self.ok("quota-list", "--user", made["uuid"], "--json"))
        self.assertEqual([(r["resource"], r["limit"]) for r in rows],
                         [("astakos.pending_app", 7)])
        code, _, err = self.manage("resource-modify", "nope.thing", "--base-default", "1")
        self.assertEqual(code, 1)

    def test_projects(self):
        """project-list shows base projects only with --system;
        project-show shows one."""
        made = json.loads(self.ok("user-add", "--email", "e@example.org", "--activate",
                                  "--json"))
        self.assertEqual(self.ok("project-list"), "no projects\n")
        rows = json.loads(self.ok("project-list", "--system", "--json"))
        self.assertEqual([r["id"] for r in rows], [made["uuid"]])
        shown = json.loads(self.ok("project-show", made["uuid"], "--json"))
        self.assertEqual(shown["name"], f"system:{made['uuid']}")

    def test_project_control(self):
        """An application is approved, the project suspended and resumed
        with project-control."""
        from snfd.identity.projects import Projects, parse_application
        from snfd.identity.service import WallClock
        from snfd.web.auth import Principal

        made = json.loads(self.ok("user-add", "--email", "g@example.org", "--activate",
                                  "--admin", "--json"))
        conn, _ = self.holder()
        projects = Projects(DirectDatabase(conn), WallClock())
        spec = parse_application({"name": "lab.example.org",
                                  "end_date": "2100-01-01T00:00:00Z", "resources": {}},
                                 True)
        project, _ = run(projects.submit_application(
            Principal(user=made["uuid"], is_admin=True), spec))
        self.assertEqual(self.ok("project-control", project, "--approve"),
                         f"{project}: active\n")
        self.assertEqual(self.ok("project-control", project, "--suspend"),
                         f"{project}: suspended\n")
        self.assertEqual(self.ok("project-control", project, "--unsuspend"),
                         f"{project}: active\n")
        self.assertIn("lab.example.org", self.ok("project-list"))

    def test_reconcile_commissions(self):
        """A commission the component recorded as accepted is accepted, one
        it never decided is rejected."""
        made = json.loads(self.ok("user-add", "--email", "f@example.org", "--activate",
                                  "--json"))
        conn, holder = self.holder()
        vm = Resource("cyclades.vm", "VMs", None, "compute", "cyclades_compute",
                      base_default=5)
        run(holder.register_resources("cyclades", [vm]))
        provisions = user_and_project(made["uuid"], made["uuid"], "cyclades.vm", 1)
        kept = run(holder.issue("cyclades", provisions))
        dropped = run(holder.issue("cyclades", provisions))
        with conn.cursor() as cur:
            record_txn(cur, "cyclades", kept)
            cur.execute("UPDATE quota_serials SET accept = true, pending = false"
                        " WHERE serial = %s", (kept,))
        conn.commit()
        out = self.ok("reconcile-commissions")
        self.assertIn(f"accepted 1 [{kept}]", out)
        self.assertIn(f"rejected 1 [{dropped}]", out)
        rows = json.loads(self.ok("quota-list", "--user", made["uuid"], "--resource",
                                  "cyclades.vm", "--json"))
        self.assertEqual([(r["usage"], r["pending"]) for r in rows], [(1, 0)])
