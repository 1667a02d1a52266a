"""A new user's first day, as issue 14's "Done means" tells it, with the
real ``openstack`` and ``swift`` command lines against a real ``twistd
snfd`` node (identity and pithos) on a fresh database.

The node's administrator (the credentials the node writes at first start)
gives new projects storage (``pithos.diskspace``'s project default is 0:
``snf-manage resource-modify``), creates a project, a user with a password
in it and grants ``member``; the user gets a token scoped to the project,
makes a container charged to the project (Pithos's
``X-Container-Policy-Project``: a container is charged to the account's
base project unless it names another, whatever project the token is
scoped to) and uploads an object into it, which the project's
``pithos.diskspace`` usage shows; then the user makes an application
credential and lists the container with it from a clouds.yaml, and
``swift`` downloads the object with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.cloudnode import OPENSTACK, CloudNode
from snfd.testing.postgres import fresh_database

SWIFT = str(Path(sys.executable).with_name("swift"))
DISKSPACE = "pithos.diskspace"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without OS_*/ST_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "ST_"))}
    env.update(extra)
    return env


def stat_fields(text: str) -> dict[str, str]:
    """The ``Key: value`` lines `swift stat` prints."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def columns(row: dict[str, Any]) -> dict[str, Any]:
    """A row of ``openstack -f json`` with its keys as ``project_id``
    (clients name them "Project ID" or "project_id" by version)."""
    return {k.lower().replace(" ", "_"): v for k, v in row.items()}


class NewUserJourneyTests(unittest.TestCase):
    timeout = 300

    async def setUp(self) -> None:
        dsn = fresh_database(self)
        root = Path(tempfile.mkdtemp(prefix="snfd-journey-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.work = root / "work"
        self.work.mkdir()
        self.node = CloudNode(dsn, root / "node", "identity,pithos")
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start, ready_path="/object-store/v1/nobody")
        self.admin = await threads.deferToThread(self.admin_credentials)

    def admin_credentials(self) -> dict[str, str]:
        """The OS_* variables of the administrator, from
        ``<state_dir>/admin-credentials`` (written at first start)."""
        path = self.node.state_dir / "admin-credentials"
        deadline = time.monotonic() + 60
        while not path.exists():
            if time.monotonic() > deadline:
                raise AssertionError("no administrator credentials:\n" + self.node.tail())
            time.sleep(0.1)
        env = {}
        for line in path.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                env[key] = value
        return env

    # -- the command lines ----------------------------------------------------

    def command(self, argv: list[str], env: dict[str, str]) -> str:
        """Run ``argv`` in the work directory; its stdout (fails with its
        output and the node's log tail unless it exits 0)."""
        proc = subprocess.run(argv, env=env, cwd=self.work, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"{Path(argv[0]).name} {' '.join(argv[1:])} failed "
                                 f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                                 f"--- node log:\n{self.node.tail(30)}")
        return proc.stdout

    def openstack(self, env: dict[str, str], *argv: str) -> Any:
        """``openstack <argv>`` with the OS_* variables ``env``; its JSON
        output when ``-f json`` is among ``argv``, else its text."""
        out = self.command([OPENSTACK, *argv], clean_env(**env))
        return json.loads(out) if "json" in argv else out

    def swift(self, auth: list[str], *argv: str) -> str:
        """``swift <auth> <argv>`` (no OS_*/ST_* variables); its stdout."""
        return self.command([SWIFT, *auth, *argv], clean_env())

    def wait_for_resource(self, name: str) -> None:
        """Wait until the node's services have registered ``name``
        (``snf-manage resource-list``)."""
        deadline = time.monotonic() + 60
        while name not in {r["name"] for r in json.loads(
                self.node.manage("resource-list", "--json"))}:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} never registered:\n{self.node.tail()}")
            time.sleep(0.2)

    def usage(self, token: str, project: str) -> int:
        """The user's ``pithos.diskspace`` usage in ``project``, from the
        Astakos quota API (``GET /account/v1.0/quotas``)."""
        status, body = self.node.api("GET", "/account/v1.0/quotas", token)
        if status != 200:
            raise AssertionError(f"GET /account/v1.0/quotas: {status} {body}")
        return int(body[project][DISKSPACE]["usage"])

    # -- the journey ----------------------------------------------------------

    async def test_admin_makes_a_member_who_stores_in_the_project(self) -> None:
        """The administrator creates a project, a user in it and grants
        `member` with `openstack`; the user's project-scoped token works,
        `swift` makes a container charged to the project and uploads an
        object (the project's pithos.diskspace usage grows by its size);
        an application credential made with `openstack application
        credential create` lists the container from a clouds.yaml, and
        `swift` downloads the object with it."""
        await threads.deferToThread(self.journey)

    def journey(self) -> None:
        admin = self.admin
        # 0. A new project's members get each resource's project default,
        # which for pithos.diskspace is 0 until the administrator sets one.
        self.wait_for_resource(DISKSPACE)
        self.node.manage("resource-modify", DISKSPACE, "--project-default", "1G")

        # 1. The administrator creates a project, a user in it, and grants member.
        project = self.openstack(admin, "project", "create", "--description",
                                 "The web team", "web-team", "-f", "json")
        self.assertEqual((project["name"], project["enabled"]), ("web-team", True))
        pid = project["id"]
        user = self.openstack(admin, "user", "create", "--password", "carol's password",
                              "--project", "web-team", "--email", "carol@example.org",
                              "carol@example.org", "-f", "json")
        self.assertEqual(user["name"], "carol@example.org")
        self.assertEqual(user["default_project_id"], pid)
        uid = user["id"]
        self.openstack(admin, "role", "add", "--user", uid, "--project", pid, "member")
        assigned = self.openstack(admin, "role", "assignment", "list", "--user", uid,
                                  "--project", pid, "--names", "-f", "json")
        self.assertEqual([(a["Role"], a["User"], a["Project"]) for a in assigned],
                         [("member", "carol@example.org@Default", "web-team@Default")])

        # 2. The user gets a token scoped to the project.
        carol = {"OS_AUTH_URL": admin["OS_AUTH_URL"], "OS_IDENTITY_API_VERSION": "3",
                 "OS_USERNAME": "carol@example.org", "OS_PASSWORD": "carol's password",
                 "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                 "OS_PROJECT_ID": pid}
        token = self.openstack(carol, "token", "issue", "-f", "json")
        self.assertEqual((token["project_id"], token["user_id"]), (pid, uid))
        self.assertTrue(token["id"])
        before = self.usage(token["id"], pid)
        self.assertEqual(before, 0)

        # 3. With swift (Keystone v3, the same project scope) the user makes
        # a container charged to the project and uploads an object.
        v3 = ["--auth-version", "3", "--os-auth-url", admin["OS_AUTH_URL"],
              "--os-username", "carol@example.org", "--os-password", "carol's password",
              "--os-user-domain-name", "Default", "--os-project-domain-name", "Default",
              "--os-project-id", pid]
        self.swift(v3, "post", "-H", f"X-Container-Policy-Project: {pid}", "reports")
        data = b"quarterly numbers\n" * 1000
        (self.work / "q3.txt").write_bytes(data)
        self.swift(v3, "upload", "reports", "q3.txt")
        self.assertEqual(self.swift(v3, "list", "reports").split(), ["q3.txt"])
        stat = stat_fields(self.swift(v3, "stat", "reports"))
        self.assertEqual((stat["Objects"], stat["Bytes"]), ("1", str(len(data))))
        self.assertEqual(stat.get("X-Container-Policy-Project"), pid)
        self.assertEqual(self.usage(token["id"], pid), before + len(data))
        held = json.loads(self.node.manage("quota-list", "--user", uid, "--project", pid,
                                           "--resource", DISKSPACE, "--json"))
        self.assertEqual([(h["holder"], h["usage"]) for h in held],
                         [(f"user:{uid}", len(data))])

        # Without the header, a container is charged to the account's base
        # project (Pithos's default), whatever project the token names.
        self.swift(v3, "post", "scratch")
        stat = stat_fields(self.swift(v3, "stat", "scratch"))
        self.assertEqual(stat.get("X-Container-Policy-Project"), uid)

        # 4. The user makes an application credential and lists the
        # container with it from a clouds.yaml.
        shown = self.openstack(carol, "application", "credential", "create", "reports-ci",
                               "--description", "lists the reports", "-f", "json")
        made = columns(shown)
        self.assertTrue(made["secret"])
        self.assertEqual(made["project_id"], pid)
        clouds = self.work / "clouds.yaml"
        clouds.write_text(
            "clouds:\n  snfd:\n    auth_type: v3applicationcredential\n    auth:\n"
            f"      auth_url: {admin['OS_AUTH_URL']}\n"
            f"      application_credential_id: {made['id']}\n"
            f"      application_credential_secret: {made['secret']}\n"
            "    identity_api_version: 3\n")
        cloud = {"OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": "snfd"}
        issued = self.openstack(cloud, "token", "issue", "-f", "json")
        self.assertEqual((issued["project_id"], issued["user_id"]), (pid, uid))
        listed = self.openstack(cloud, "object", "list", "reports", "-f", "json")
        self.assertEqual([o["Name"] for o in listed], ["q3.txt"])
        app = ["--auth-version", "3", "--os-auth-url", admin["OS_AUTH_URL"],
               "--os-auth-type", "v3applicationcredential",
               "--os-application-credential-id", made["id"],
               "--os-application-credential-secret", made["secret"]]
        self.swift(app, "download", "reports", "q3.txt", "-o", "fetched.txt")
        self.assertEqual((self.work / "fetched.txt").read_bytes(), data)

        log = self.node.log()
        for secret in (made["secret"], "carol's password", admin["OS_PASSWORD"]):
            self.assertNotIn(secret, log)
