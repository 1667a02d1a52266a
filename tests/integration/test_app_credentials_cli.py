"""Application credentials with the ``openstack`` command line against a
real ``twistd snfd`` node: made with ``openstack application credential
create`` and used from a clouds.yaml with ``auth_type:
v3applicationcredential``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from twisted.internet import defer, threads

from snfd.testing.postgres import fresh_database
from tests.integration.test_identity_clients import OPENSTACK, IdentityNodeTestCase


class AppCredentialCliTests(IdentityNodeTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        dsn = fresh_database(self)
        self.node = self.start_node({"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity"},
                                    "[database]\nauto_upgrade = yes\n")
        self.env = yield self.ready(self.node)

    def cloud(self, clouds: Path, *argv: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        return subprocess.run([OPENSTACK, "--os-cloud", "snfd", *argv, "-f", "json"],
                              env=env, capture_output=True, text=True, timeout=120)

    @defer.inlineCallbacks
    def test_create_and_use_from_clouds_yaml(self):
        """`openstack application credential create` shows the secret once;
        a clouds.yaml with v3applicationcredential issues tokens scoped to
        the credential's project; after `application credential delete`
        it is refused; the secret never reaches the node's log."""
        shown = yield threads.deferToThread(self.openstack, self.env, "application",
                                            "credential", "create", "ci", "--description",
                                            "for CI")
        # The client names its columns "ID", "Secret", "Project ID" (or in
        # lower case with underscores, depending on its version).
        made = {k.lower().replace(" ", "_"): v for k, v in shown.items()}
        self.assertTrue(made["secret"])
        self.assertEqual(made["project_id"], self.env["OS_PROJECT_ID"])
        listed = yield threads.deferToThread(self.openstack, self.env, "application",
                                             "credential", "list")
        self.assertEqual([c.get("Name", c.get("name")) for c in listed], ["ci"])
        shown = yield threads.deferToThread(self.openstack, self.env, "application",
                                            "credential", "show", "ci")
        self.assertNotIn(made["secret"], str(shown))

        clouds = Path(self.mktemp()).absolute()
        clouds.write_text(
            "clouds:\n  snfd:\n    auth_type: v3applicationcredential\n    auth:\n"
            f"      auth_url: {self.env['OS_AUTH_URL']}\n"
            f"      application_credential_id: {made['id']}\n"
            f"      application_credential_secret: {made['secret']}\n"
            "    identity_api_version: 3\n    region_name: RegionOne\n")
        proc = yield threads.deferToThread(self.cloud, clouds, "token", "issue")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        issued = json.loads(proc.stdout)
        self.assertEqual((issued["project_id"], issued["user_id"]),
                         (self.env["OS_PROJECT_ID"],) * 2)

        yield threads.deferToThread(subprocess.run, [
            OPENSTACK, "application", "credential", "delete", "ci"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
                 **self.env}, capture_output=True, text=True, timeout=120, check=True)
        proc = yield threads.deferToThread(self.cloud, clouds, "token", "issue")
        self.assertNotEqual(proc.returncode, 0)
        self.assertNotIn(made["secret"], self.node.log_path.read_text(errors="replace"))
