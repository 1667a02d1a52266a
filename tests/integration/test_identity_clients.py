"""The identity service under real OpenStack clients, against real
``twistd snfd`` nodes: keystoneauth1, openstacksdk and the ``openstack``
command line, on a fresh cluster database and on the embedded default,
and LDAP logins against a private OpenLDAP ``slapd``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from snfd.testing.node import NodeProcess
from snfd.testing.postgres import fresh_database

OPENSTACK = str(Path(sys.executable).with_name("openstack"))
MANAGE = [sys.executable, "-m", "snfd.cli.manage"]


def admin_env(node: NodeProcess) -> dict[str, str]:
    """The OS_* variables of the administrator the node created."""
    env = {}
    for line in (node.state_dir / "admin-credentials").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = v
    return env


class IdentityNodeTestCase(unittest.TestCase):
    timeout = 240

    def start_node(self, env: dict[str, str], config: str = "") -> NodeProcess:
        args = []
        if config:
            path = Path(self.mktemp()).absolute()
            path.write_text(config)
            args = ["--config", str(path)]
        node = NodeProcess(env=env, args=args)
        self.addCleanup(node.cleanup)
        node.start()
        return node

    @defer.inlineCallbacks
    def ready(self, node: NodeProcess):
        yield defer.ensureDeferred(node.wait_ready(reactor, timeout=120))
        for _ in range(600):
            if (node.state_dir / "admin-credentials").exists():
                return admin_env(node)
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.fail("no administrator credentials:\n" + node.tail())

    def openstack(self, env: dict[str, str], *argv: str) -> object:
        full = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        full.update(env)
        proc = subprocess.run([OPENSTACK, *argv, "-f", "json"], env=full, capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            self.fail(f"openstack {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
        return json.loads(proc.stdout)


class OpenStackClientTests(IdentityNodeTestCase):
    """One node on a fresh database of the test PostgreSQL."""

    @defer.inlineCallbacks
    def setUp(self):
        dsn = fresh_database(self)
        self.node = self.start_node({"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity"},
                                    "[database]\nauto_upgrade = yes\n")
        self.env = yield self.ready(self.node)

    @defer.inlineCallbacks
    def test_keystoneauth_password_session(self):
        """keystoneauth1 discovers /identity, logs in with a password scoped
        to the base project and finds endpoints in the catalog."""
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        def login():
            auth = v3.Password(
                auth_url=self.node.url + "/identity", username=self.env["OS_USERNAME"],
                password=self.env["OS_PASSWORD"], project_id=self.env["OS_PROJECT_ID"],
                user_domain_name="Default")
            sess = session.Session(auth=auth)
            token = sess.get_token()
            access = auth.get_access(sess)
            return (token, access.user_id, access.project_id,
                    sess.get_endpoint(service_type="identity", interface="public"),
                    sess.get_endpoint(service_type="account", interface="public"))

        token, user, project, identity, account = yield threads.deferToThread(login)
        self.assertTrue(token)
        self.assertEqual((user, project), (self.env["OS_PROJECT_ID"],) * 2)
        self.assertTrue(identity.startswith(self.node.url + "/identity"))
        self.assertEqual(account, self.node.url + "/account/v1.0")

    @defer.inlineCallbacks
    def test_openstacksdk_connection(self):
        """openstacksdk connects, authorizes and reads the current project."""
        import openstack

        def connect():
            conn = openstack.connect(
                auth_url=self.env["OS_AUTH_URL"], username=self.env["OS_USERNAME"],
                password=self.env["OS_PASSWORD"], project_id=self.env["OS_PROJECT_ID"],
                user_domain_name="Default", project_domain_name="Default",
                identity_api_version="3", load_yaml_config=False, load_envvars=False)
            try:
                token = conn.authorize()
                return token, conn.current_user_id, conn.current_project_id
            finally:
                conn.close()

        token, user, project = yield threads.deferToThread(connect)
        self.assertTrue(token)
        self.assertEqual((user, project), (self.env["OS_PROJECT_ID"],) * 2)

    @defer.inlineCallbacks
    def test_openstack_cli_token_issue_and_catalog_list(self):
        """`openstack token issue` and `openstack catalog list` work."""
        issued = yield threads.deferToThread(self.openstack, self.env, "token", "issue")
        self.assertEqual(issued["project_id"], self.env["OS_PROJECT_ID"])
        self.assertEqual(issued["user_id"], self.env["OS_PROJECT_ID"])
        catalog = yield threads.deferToThread(self.openstack, self.env, "catalog", "list")
        types = {entry["Type"] for entry in catalog}
        self.assertIn("identity", types)
        self.assertIn("account", types)

    @defer.inlineCallbacks
    def test_new_user_from_snf_manage(self):
        """A user made with `snf-manage user-add --activate --json` logs in
        with the openstack client at once; after `user-renew-token` the old
        token is refused."""
        env = dict(os.environ, SNFD_DATABASE_URL=self.node.env["SNFD_DATABASE_URL"],
                   SNFD_PLUGINS="identity", SNFD_STATE_DIR=str(self.node.state_dir))
        out = yield threads.deferToThread(subprocess.run, [
            *MANAGE, "user-add", "--email", "new@example.org", "--password",
            "a long password", "--first-name", "New", "--activate", "--json"],
            env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        made = json.loads(out.stdout)
        user_env = dict(self.env, OS_USERNAME="new@example.org", OS_PASSWORD="a long password",
                        OS_PROJECT_ID=made["uuid"])
        issued = yield threads.deferToThread(self.openstack, user_env, "token", "issue")
        self.assertEqual(issued["user_id"], made["uuid"])
        import urllib.error
        import urllib.request

        def check(token):
            req = urllib.request.Request(  # noqa: S310
                self.node.url + "/identity/v3/auth/tokens",
                headers={"X-Auth-Token": token, "X-Subject-Token": token})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                    return resp.status
            except urllib.error.HTTPError as e:
                return e.code

        self.assertEqual((yield threads.deferToThread(check, made["token"])), 200)
        out = yield threads.deferToThread(subprocess.run, [
            *MANAGE, "user-renew-token", "new@example.org", "--json"],
            env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual((yield threads.deferToThread(check, made["token"])), 401)
        renewed = json.loads(out.stdout)["token"]
        self.assertEqual((yield threads.deferToThread(check, renewed)), 200)
        log = self.node.log_path.read_text(errors="replace")
        for secret in (made["token"], renewed, "a long password", self.env["OS_PASSWORD"]):
            self.assertNotIn(secret, log)


class OpenStackAdminTests(IdentityNodeTestCase):
    """The Keystone administration API under the ``openstack`` command line,
    as the administrator the node made."""

    @defer.inlineCallbacks
    def setUp(self):
        dsn = fresh_database(self)
        self.node = self.start_node({"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity"},
                                    "[database]\nauto_upgrade = yes\n")
        self.env = yield self.ready(self.node)

    def run_openstack(self, env: dict[str, str], *argv: str) -> str:
        """A command that prints nothing (no ``-f json``)."""
        full = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        full.update(env)
        proc = subprocess.run([OPENSTACK, *argv], env=full, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            self.fail(f"openstack {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc.stdout

    @defer.inlineCallbacks
    def test_admin_makes_project_user_and_grant(self):
        """`openstack project create`, `user create/list/show/set/delete`,
        `role add/remove`, `role assignment list`: the new user gets a token
        scoped to the new project with member and reader; `token revoke`
        ends it."""
        def steps():
            admin = self.env
            project = self.openstack(admin, "project", "create", "--description",
                                     "The web team", "web-team")
            user = self.openstack(admin, "user", "create", "--password", "bob's password",
                                  "--description", "Bob Stone", "--domain", "default",
                                  "bob@example.org")
            listed = self.openstack(admin, "user", "list")
            shown = self.openstack(admin, "user", "show", "bob@example.org")
            self.run_openstack(admin, "user", "set", "--description", "Robert Stone",
                               "bob@example.org")
            reshown = self.openstack(admin, "user", "show", user["id"])
            self.run_openstack(admin, "role", "add", "--user", "bob@example.org",
                               "--project", "web-team", "member")
            assigned = self.openstack(admin, "role", "assignment", "list", "--user",
                                      "bob@example.org", "--project", "web-team", "--names")
            bob = dict(admin, OS_USERNAME="bob@example.org", OS_PASSWORD="bob's password",
                       OS_PROJECT_NAME="web-team", OS_PROJECT_DOMAIN_NAME="Default",
                       OS_USER_DOMAIN_NAME="Default")
            bob.pop("OS_PROJECT_ID", None)
            token = self.openstack(bob, "token", "issue")
            self.run_openstack(admin, "token", "revoke", token["id"])
            self.run_openstack(admin, "role", "remove", "--user", "bob@example.org",
                               "--project", "web-team", "member")
            after = self.openstack(admin, "role", "assignment", "list", "--user",
                                   "bob@example.org", "--project", "web-team")
            self.run_openstack(admin, "user", "delete", "bob@example.org")
            remaining = self.openstack(admin, "user", "list")
            return (project, user, listed, shown, reshown, assigned, token, after, remaining)

        (project, user, listed, shown, reshown, assigned, token, after,
         remaining) = yield threads.deferToThread(steps)
        self.assertEqual((project["name"], project["enabled"]), ("web-team", True))
        self.assertEqual(user["name"], "bob@example.org")
        self.assertIn("bob@example.org", {u["Name"] for u in listed})
        self.assertEqual((shown["id"], shown["description"]), (user["id"], "Bob Stone"))
        self.assertEqual(reshown["description"], "Robert Stone")
        self.assertEqual([(a["Role"], a["User"], a["Project"]) for a in assigned],
                         [("member", "bob@example.org@Default", "web-team@Default")])
        self.assertEqual((token["project_id"], token["user_id"]), (project["id"], user["id"]))
        self.assertEqual(after, [])
        self.assertNotIn("bob@example.org", {u["Name"] for u in remaining})


class EmbeddedDefaultTests(IdentityNodeTestCase):
    @defer.inlineCallbacks
    def test_token_issue_on_the_embedded_default(self):
        """A new user's first steps: the embedded default writes the
        administrator's credentials and `openstack token issue` and
        `openstack catalog list` work with them."""
        state = Path(tempfile.mkdtemp(prefix="snfd-embedded-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, state, True)
        state.chmod(0o755)  # as root, the embedded server's account must reach it
        node = NodeProcess(env={"SNFD_PLUGINS": "identity"}, state_dir=state)
        node.env.pop("SNFD_DATABASE_URL", None)
        self.addCleanup(node.cleanup)
        node.start()
        env = yield self.ready(node)
        issued = yield threads.deferToThread(self.openstack, env, "token", "issue")
        self.assertEqual(issued["project_id"], env["OS_PROJECT_ID"])
        catalog = yield threads.deferToThread(self.openstack, env, "catalog", "list")
        self.assertIn("identity", {entry["Type"] for entry in catalog})
        mode = (node.state_dir / "admin-credentials").stat().st_mode & 0o777
        self.assertEqual(mode, 0o600)


class LdapLoginTests(IdentityNodeTestCase):
    @defer.inlineCallbacks
    def test_ldap_user_logs_in_with_keystoneauth(self):
        """With `auth_providers = local, ldap`, a person known only to the
        LDAP server gets a token with keystoneauth1; the account is created
        from the LDAP attributes."""
        from keystoneauth1 import exceptions, session
        from keystoneauth1.identity import v3

        from snfd.testing.slapd import private_slapd

        slapd = private_slapd(self)
        slapd.add_person("carol", "carol's password", "carol@example.org", "Carol", "Ng")
        dsn = fresh_database(self)
        node = self.start_node(
            {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity"},
            "[database]\nauto_upgrade = yes\n[identity]\nauth_providers = local, ldap\n"
            f"ldap_url = {slapd.url}\nldap_user_dn = uid={{username}},ou=people,{slapd.base_dn}\n")
        yield self.ready(node)

        def login(password):
            auth = v3.Password(auth_url=node.url + "/identity/v3", username="carol",
                               password=password, user_domain_name="Default")
            sess = session.Session(auth=auth)
            return sess.get_token(), auth.get_access(sess).user_id

        token, user = yield threads.deferToThread(login, "carol's password")
        self.assertTrue(token)
        self.assertTrue(user)
        yield self.assertFailure(threads.deferToThread(login, "wrong"), exceptions.Unauthorized)
