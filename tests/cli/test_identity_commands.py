"""snf-manage's identity commands on a fresh database: users, tokens,
groups, components, resources, quotas, projects and commission
reconciliation."""

from __future__ import annotations

import json

from twisted.trial import unittest

from snfd import config as cfg
from snfd import plugin_loader, tap
from snfd.identity.service import RESOURCES
from snfd.quota import Resource, user_and_project
from snfd.quota.serials import decide_txn, record_txn
from snfd.testing.files import temp_file
from snfd.testing.postgres import fresh_database, query
from tests.cli.test_manage import RunManage


class IdentityCommandTests(RunManage, unittest.TestCase):
    async def setUp(self):
        self.dsn = fresh_database(self)
        self.env = {"SNFD_DATABASE_URL": self.dsn, "SNFD_PLUGINS": "identity",
                    "SNFD_STATE_DIR": self.mktemp()}
        self.assertEqual((await self.run_manage("upgrade", env=self.env))[0], 0)

    async def manage(self, *argv: str) -> tuple[int, str, str]:
        return await self.run_manage(*argv, env=self.env)

    async def ok(self, *argv: str) -> str:
        code, out, err = await self.manage(*argv)
        self.assertEqual(code, 0, err)
        return out

    def sql(self, statement: str, *args):
        return query(self.dsn, statement, *args)

    def assembly(self) -> tap.Assembly:
        """What snf-manage works with on this database (the identity
        service from the daemon's factory, not started), for setting up
        what no command does; closed at cleanup."""
        from twisted.internet import reactor

        installed = plugin_loader.installed()
        config = cfg.load_config(None, plugin_loader.config_keys(installed),
                                 environ=self.env)
        built = tap.assemble(config, installed, reactor, self.dsn, ("identity",))
        self.addCleanup(built.close)
        return built

    async def test_user_lifecycle(self):
        """user-add --json prints uuid and token; show, list, modify,
        renew-token (the old token is gone), deactivate, activate."""
        made = json.loads(await self.ok("user-add", "--email", "ann@example.org", "--password",
                                        "a long password", "--first-name", "Ann", "--activate",
                                        "--admin", "--json"))
        self.assertEqual((made["state"], made["is_admin"]), ("active", True))
        self.assertTrue(made["token"])
        shown = json.loads(await self.ok("user-show", "ann@example.org", "--json"))
        self.assertEqual(shown["uuid"], made["uuid"])
        self.assertEqual(shown["providers"], ["local:ann@example.org"])
        self.assertIn("ann@example.org", await self.ok("user-list"))
        renewed = json.loads(await self.ok("user-renew-token", made["uuid"], "--json"))
        self.assertNotEqual(renewed["token"], made["token"])
        [(count,)] = self.sql("SELECT count(*) FROM identity_tokens")
        self.assertEqual(count, 1)
        await self.ok("user-modify", made["uuid"], "--last-name", "Lee", "--no-admin")
        self.assertFalse(json.loads(await self.ok("user-show", made["uuid"], "--json"))["is_admin"])
        await self.ok("user-deactivate", made["uuid"], "--reason", "left")
        self.assertEqual(self.sql("SELECT count(*) FROM identity_tokens"), [(0,)])
        self.assertIn("active", await self.ok("user-activate", made["uuid"]))

    async def test_pending_user_and_errors(self):
        """Without --activate a user waits for verification; an unknown user
        or a taken email is a one-line error with status 1."""
        made = json.loads(await self.ok("user-add", "--email", "bob@example.org", "--json"))
        self.assertEqual((made["state"], made["token"]), ("pending_verification", None))
        await self.ok("user-modify", "bob@example.org", "--verify")
        state = json.loads(await self.ok("user-show", "bob@example.org", "--json"))["state"]
        self.assertEqual(state, "pending_moderation")
        code, _, err = await self.manage("user-add", "--email", "BOB@example.org")
        self.assertEqual(code, 1)
        self.assertEqual(err.count("\n"), 1)
        code, _, err = await self.manage("user-show", "nobody@example.org")
        self.assertEqual(code, 1)
        self.assertIn("nobody@example.org", err)

    async def test_groups_and_components(self):
        """Groups gain members; a component gets a token (stored hashed)."""
        made = json.loads(await self.ok("user-add", "--email", "c@example.org", "--activate",
                                        "--json"))
        await self.ok("group-add", "helpdesk")
        await self.ok("group-member-add", "helpdesk", made["uuid"])
        self.assertEqual(json.loads(await self.ok("user-show", made["uuid"], "--json"))["groups"],
                         ["helpdesk"])
        self.assertIn("helpdesk  (1 members)", await self.ok("group-list"))
        token = json.loads(await self.ok("component-add", "pithos", "--json"))["token"]
        [(stored,)] = self.sql("SELECT token_hash FROM identity_components")
        self.assertNotIn(token.encode(), bytes(stored))
        self.assertIn("pithos", await self.ok("component-list"))

    async def test_resources_and_quotas(self):
        """resource-modify sets defaults that new users' base projects get;
        quota-list shows the holdings."""
        # What the identity service does when a node starts.
        quota = self.assembly().services["identity"].quota
        await quota.register_resources("astakos", list(RESOURCES))
        out = json.loads(await self.ok("resource-list", "--json"))
        self.assertIn("astakos.pending_app", [r["name"] for r in out])
        modified = json.loads(await self.ok("resource-modify", "astakos.pending_app",
                                            "--base-default", "7", "--json"))
        self.assertEqual(modified["base_default"], 7)
        made = json.loads(await self.ok("user-add", "--email", "d@example.org", "--activate",
                                        "--json"))
        rows = json.loads(await self.ok("quota-list", "--user", made["uuid"], "--json"))
        self.assertEqual([(r["resource"], r["limit"]) for r in rows],
                         [("astakos.pending_app", 7)])
        code, _, err = await self.manage("resource-modify", "nope.thing", "--base-default", "1")
        self.assertEqual(code, 1)

    async def test_projects(self):
        """project-list shows base projects only with --system;
        project-show shows one."""
        made = json.loads(await self.ok("user-add", "--email", "e@example.org", "--activate",
                                        "--json"))
        self.assertEqual(await self.ok("project-list"), "no projects\n")
        rows = json.loads(await self.ok("project-list", "--system", "--json"))
        self.assertEqual([r["id"] for r in rows], [made["uuid"]])
        shown = json.loads(await self.ok("project-show", made["uuid"], "--json"))
        self.assertEqual(shown["name"], f"system:{made['uuid']}")

    async def test_project_control(self):
        """An application is approved, the project suspended and resumed
        with project-control."""
        from snfd.identity.projects import parse_application
        from snfd.web.auth import Principal

        made = json.loads(await self.ok("user-add", "--email", "g@example.org", "--activate",
                                        "--admin", "--json"))
        # An application, as the account API submits it.
        projects = self.assembly().services["identity"].projects
        spec = parse_application({"name": "lab.example.org",
                                  "end_date": "2100-01-01T00:00:00Z", "resources": {}},
                                 True)
        project, _ = await projects.submit_application(
            Principal(user=made["uuid"], is_admin=True), spec)
        self.assertEqual(await self.ok("project-control", project, "--approve"),
                         f"{project}: active\n")
        self.assertEqual(await self.ok("project-control", project, "--suspend"),
                         f"{project}: suspended\n")
        self.assertEqual(await self.ok("project-control", project, "--unsuspend"),
                         f"{project}: active\n")
        self.assertIn("lab.example.org", await self.ok("project-list"))

    async def test_reconcile_commissions(self):
        """A commission the component recorded as accepted is accepted, one
        it never decided is rejected."""
        made = json.loads(await self.ok("user-add", "--email", "f@example.org", "--activate",
                                        "--json"))
        # Two commissions a component issued: it committed the first (its
        # serial recorded as accepted), then crashed.
        built = self.assembly()
        holder = built.services["identity"].quota
        vm = Resource("cyclades.vm", "VMs", None, "compute", "cyclades_compute",
                      base_default=5)
        await holder.register_resources("cyclades", [vm])
        provisions = user_and_project(made["uuid"], made["uuid"], "cyclades.vm", 1)
        kept = await holder.issue("cyclades", provisions)
        dropped = await holder.issue("cyclades", provisions)
        await built.node.db.run("test.record_serial", record_txn, "cyclades", kept)
        await built.node.db.run("test.accept_serial", decide_txn, "cyclades", kept, True)
        out = await self.ok("reconcile-commissions")
        self.assertIn(f"accepted 1 [{kept}]", out)
        self.assertIn(f"rejected 1 [{dropped}]", out)
        rows = json.loads(await self.ok("quota-list", "--user", made["uuid"], "--resource",
                                        "cyclades.vm", "--json"))
        self.assertEqual([(r["usage"], r["pending"]) for r in rows], [(1, 0)])

    async def test_verification_mail(self):
        """A user added without --activate is sent a verification mail whose
        link points at the node's public address (by default, derived from
        its first listen endpoint, as the daemon does)."""
        import email
        from pathlib import Path

        await self.ok("user-add", "--email", "h@example.org")
        [mail] = (Path(self.env["SNFD_STATE_DIR"]) / "mail").iterdir()
        message = email.message_from_bytes(mail.read_bytes())
        self.assertEqual(message["To"], "h@example.org")
        self.assertIn("http://127.0.0.1:8080/ui/activate?auth=", message.get_payload())

    async def test_startup_errors(self):
        """A configuration the identity service refuses is a one-line error
        with status 1, and so is a database without the identity tables."""
        bad = temp_file(self, "[identity]\nsmtp_url = mail.example.org\n")
        code, out, err = await self.manage("--config", bad, "user-list")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"snf-manage: {bad}: [identity] smtp_url:"
                              " expected smtp://host[:port] or smtps://host[:port]\n")
        env = {**self.env, "SNFD_DATABASE_URL": fresh_database(self)}
        code, _, err = await self.run_manage("user-list", env=env)
        self.assertEqual((code, err), (1, "snf-manage: the database lacks the identity"
                                          " tables; run `snf-manage upgrade` first\n"))
