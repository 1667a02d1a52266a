"""``snf`` account commands (``snfd.cli.snf_account``) against a real node
with identity and pithos: who am I and token renewal, quotas and
resources, a project applied for, approved, joined and left, sharing
groups, and a component's commissions.  The CLI runs as a child process
(``SnfNodeTestCase``)."""

from __future__ import annotations

import json
from typing import Any

import requests
from twisted.internet import defer, threads
from twisted.trial import unittest

from snfd.cli.snf_account import format_amount, parse_amount
from tests.client.test_snf_integration import SnfNodeTestCase

MISSING = "00000000-0000-4000-8000-000000000000"


class AmountTests(unittest.TestCase):
    """Amounts with units, both ways (no node)."""

    def test_parse_and_format(self):
        self.assertEqual(parse_amount("10G"), 10 * 2**30)
        self.assertEqual(parse_amount("512M"), 512 * 2**20)
        self.assertEqual(parse_amount("1.5K"), 1536)
        self.assertEqual(parse_amount("7", is_bytes=False), 7)
        self.assertEqual(parse_amount("unlimited"), 2**63 - 1)
        self.assertRaises(ValueError, parse_amount, "10G", False)
        self.assertRaises(ValueError, parse_amount, "ten")
        self.assertEqual(format_amount(10 * 2**30, True), "10G")
        self.assertEqual(format_amount(1536, True), "1.5K")
        self.assertEqual(format_amount(1536, False), "1536")
        self.assertEqual(format_amount(2**63 - 1, True), "unlimited")


class AccountTestCase(SnfNodeTestCase):
    def snf(self, who: str, *argv: str, ok: bool = True, env: dict[str, str] | None = None,
            text: bool = True) -> Any:
        """As ``SnfNodeTestCase.snf``, with tables wide enough not to cut
        uuids (rich takes 80 columns when not on a terminal)."""
        return super().snf(who, *argv, ok=ok, env={"COLUMNS": "250", **(env or {})},
                           text=text)

    def settings(self, who: str) -> Any:
        """The stored settings of ``who``'s current cloud."""
        stored = json.loads(self.config_of(who).read_text())
        return stored["clouds"][stored["current"]]

    @defer.inlineCallbacks
    def json_of(self, who: str, *argv: str) -> Any:
        proc = yield self.snf(who, "-o", "json", *argv)
        return json.loads(proc.stdout)

    @defer.inlineCallbacks
    def admin(self, email: str) -> Any:
        """A user made an administrator, logged in again."""
        uuid = yield self.user(email)
        yield threads.deferToThread(self.manage, "user-modify", uuid, "--admin")
        yield self.snf(email, "login", "--url", self.node.url, "--user", email,
                       env={"SNF_PASSWORD": "a long password"})
        return uuid


class UserTests(AccountTestCase):
    @defer.inlineCallbacks
    def test_info_and_token_renew(self):
        """``user info`` shows the token's user; ``token-renew`` prints and
        stores a new token with which commands work, and the old token is
        refused from then on (exit 4)."""
        me = "alice@example.org"
        uuid = yield self.user(me)
        proc = yield self.snf(me, "user", "info")
        self.assertIn(uuid, proc.stdout)
        self.assertIn(me, proc.stdout)
        token = yield self.json_of(me, "user", "info")
        self.assertEqual(token["user"]["id"], uuid)
        self.assertIn("expires_at", token)

        old = self.settings(me)["token"]
        proc = yield self.snf(me, "user", "token-renew")
        new = proc.stdout.strip()
        self.assertTrue(new)
        self.assertNotEqual(new, old)
        self.assertIn("no longer works", proc.stderr)
        self.assertEqual(self.settings(me)["token"], new)
        proc = yield self.snf(me, "user", "info")
        self.assertIn(uuid, proc.stdout)
        yield self.snf(me, "quota", "list")
        yield self.snf(me, "container", "list")

        stale = dict(self.settings(me), token=old)
        self.config_of("stale").write_text(json.dumps(stale))
        proc = yield self.snf("stale", "user", "info", ok=False)
        self.assertEqual(proc.returncode, 4, proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        proc = yield self.snf("stale", "quota", "list", ok=False)
        self.assertEqual(proc.returncode, 4, proc.stderr)


class QuotaTests(AccountTestCase):
    @defer.inlineCallbacks
    def test_quotas_and_resources(self):
        """``resource list`` names pithos.diskspace in bytes; ``quota list``
        shows the base project's diskspace, human-readable in the table and
        exact in JSON; a project without quota is exit 3."""
        me = "bob@example.org"
        uuid = yield self.user(me)
        proc = yield self.snf(me, "resource", "list")
        self.assertIn("pithos.diskspace", proc.stdout)
        self.assertIn("bytes", proc.stdout)
        found = yield self.json_of(me, "resource", "list")
        self.assertEqual(found["pithos.diskspace"]["unit"], "bytes")

        (self.work / "f.txt").write_bytes(b"x" * 3000)
        yield self.snf(me, "container", "create", "box")
        yield self.snf(me, "file", "upload", str(self.work / "f.txt"), "box/f.txt")
        quotas = yield self.json_of(me, "quota", "list")
        disk = quotas[uuid]["pithos.diskspace"]
        self.assertEqual(disk["usage"], 3000)
        self.assertIsInstance(disk["limit"], int)
        proc = yield self.snf(me, "quota", "list", "--project", uuid)
        self.assertIn("pithos.diskspace", proc.stdout)
        self.assertIn(format_amount(disk["limit"], True), proc.stdout)
        self.assertIn("2.9K", proc.stdout)
        self.assertNotIn(str(disk["limit"]), proc.stdout)

        proc = yield self.snf(me, "quota", "list", "--project", MISSING, ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)


class ProjectTests(AccountTestCase):
    @defer.inlineCallbacks
    def test_project_lifecycle(self):
        """A user applies for a project; an administrator approves it;
        another user joins, the owner accepts, the member gets the member
        quota, cannot join twice (exit 5) and leaves; the owner enrolls
        and removes; modifications are cancelled and denied."""
        owner, member, boss = "carol@example.org", "dave@example.org", "root@example.org"
        yield self.user(owner)
        member_uuid = yield self.user(member)
        yield self.admin(boss)

        made = yield self.json_of(
            owner, "project", "create", "--name", "lab.example.org", "--end-date",
            "2030-12-31", "--resource", "pithos.diskspace=1G,10G", "--max-members", "5",
            "--join-policy", "moderated", "--description", "a lab")
        pid = made["id"]
        proc = yield self.snf(owner, "project", "info", "lab.example.org")
        self.assertIn(pid, proc.stdout)
        self.assertIn("pithos.diskspace: member 1G, project 10G", proc.stdout)
        info = yield self.json_of(owner, "project", "info", pid)
        self.assertEqual(info["state"], "uninitialized")
        self.assertEqual(info["resources"]["pithos.diskspace"],
                         {"member_capacity": 2**30, "project_capacity": 10 * 2**30})
        self.assertEqual(info["last_application"]["state"], "pending")

        proc = yield self.snf(owner, "project", "info", MISSING, ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        proc = yield self.snf(owner, "project", "info", "no.example.org", ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        proc = yield self.snf(owner, "project", "approve", pid, ok=False)
        self.assertEqual(proc.returncode, 4, proc.stderr)

        yield self.snf(boss, "project", "approve", pid)
        info = yield self.json_of(boss, "project", "info", pid)
        self.assertEqual(info["state"], "active")
        proc = yield self.snf(boss, "project", "approve", pid, ok=False)
        self.assertEqual(proc.returncode, 5, proc.stderr)
        proc = yield self.snf(member, "project", "list")
        self.assertIn("lab.example.org", proc.stdout)

        yield self.snf(member, "project", "join", "lab.example.org")
        proc = yield self.snf(owner, "membership", "list", "--project", pid)
        self.assertIn(member, proc.stdout)
        memberships = yield self.json_of(owner, "membership", "list", "--project", pid)
        [memb] = [m for m in memberships if m["user"] == member_uuid]
        self.assertEqual(memb["state"], "requested")
        yield self.snf(owner, "membership", "accept", str(memb["id"]))
        proc = yield self.snf(member, "quota", "list", "--project", pid)
        self.assertIn("1G", proc.stdout)
        quotas = yield self.json_of(member, "quota", "list", "--project", pid)
        self.assertEqual(quotas[pid]["pithos.diskspace"]["limit"], 2**30)

        proc = yield self.snf(member, "project", "join", pid, ok=False)
        self.assertEqual(proc.returncode, 5, proc.stderr)
        proc = yield self.snf(member, "membership", "accept", str(memb["id"]), ok=False)
        self.assertIn(proc.returncode, (4, 5), proc.stderr)

        yield self.snf(member, "project", "leave", pid)
        proc = yield self.snf(member, "quota", "list", "--project", pid, ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)

        proc = yield self.snf(owner, "project", "enroll", pid, member)
        memberships = yield self.json_of(member, "membership", "list")
        [memb] = [m for m in memberships if m["project"] == pid and m["state"] == "accepted"]
        yield self.snf(owner, "membership", "remove", str(memb["id"]))
        memberships = yield self.json_of(member, "membership", "list", "--project", pid)
        self.assertNotIn("accepted", [m["state"] for m in memberships])

        yield self.snf(owner, "project", "modify", pid, "--max-members", "10")
        yield self.snf(owner, "project", "cancel", pid)
        info = yield self.json_of(owner, "project", "info", pid)
        self.assertEqual((info["last_application"]["state"], info["max_members"]),
                         ("cancelled", 5))
        yield self.snf(owner, "project", "modify", pid, "--resource",
                       "pithos.diskspace=2G,20G")
        yield self.snf(boss, "project", "deny", pid, "--reason", "too large")
        info = yield self.json_of(owner, "project", "info", pid)
        self.assertEqual(info["last_application"]["state"], "denied")
        self.assertEqual(info["resources"]["pithos.diskspace"]["member_capacity"], 2**30)
        proc = yield self.snf(owner, "project", "create", "--name", "x.example.org",
                              "--end-date", "2030-01-01", "--resource", "nope=10G", ok=False)
        self.assertEqual(proc.returncode, 5, proc.stderr)


class GroupTests(AccountTestCase):
    @defer.inlineCallbacks
    def test_groups(self):
        """A group set by email lists its member; sharing with owner:group
        lets the member read; an unknown email is exit 3; deleting it
        ends the group (and deleting it again is exit 3)."""
        owner, friend = "erin@example.org", "frank@example.org"
        owner_uuid = yield self.user(owner)
        friend_uuid = yield self.user(friend)
        proc = yield self.snf(owner, "group", "list")
        self.assertIn("no groups", proc.stdout)
        yield self.snf(owner, "group", "set", "team", friend)
        proc = yield self.snf(owner, "group", "list")
        self.assertIn("team", proc.stdout)
        self.assertIn(friend, proc.stdout)
        groups = yield self.json_of(owner, "group", "list")
        self.assertEqual(groups, [{"name": "team", "members": [friend_uuid]}])

        yield self.snf(owner, "container", "create", "pub")
        (self.work / "n.txt").write_text("for the team")
        yield self.snf(owner, "file", "upload", str(self.work / "n.txt"), "pub/n.txt")
        yield self.snf(owner, "file", "share", "pub/n.txt", "--read", f"{owner_uuid}:team")
        proc = yield self.snf(friend, "file", "-A", owner_uuid, "cat", "pub/n.txt")
        self.assertEqual(proc.stdout, "for the team")

        proc = yield self.snf(owner, "group", "set", "other", "ghost@example.org", ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        yield self.snf(owner, "group", "delete", "team")
        groups = yield self.json_of(owner, "group", "list")
        self.assertEqual(groups, [])
        proc = yield self.snf(friend, "file", "-A", owner_uuid, "cat", "pub/n.txt", ok=False)
        self.assertIn(proc.returncode, (3, 4), proc.stderr)
        proc = yield self.snf(owner, "group", "delete", "team", ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)


class CommissionTests(AccountTestCase):
    def issue(self, token: str, provisions: list[dict[str, Any]]) -> int:
        resp = requests.post(f"{self.node.url}/account/v1.0/commissions", timeout=30,
                             headers={"X-Auth-Token": token},
                             json={"provisions": provisions, "name": "test"})
        resp.raise_for_status()
        return int(resp.json()["serial"])

    @defer.inlineCallbacks
    def test_commissions(self):
        """A component sees its pending commissions, their provisions, and
        accepts or rejects them; the accepted one shows in the user's
        usage; a resolved serial is exit 3 and a user's token exit 4."""
        me = "gina@example.org"
        uuid = yield self.user(me)
        made = yield threads.deferToThread(self.manage, "component-add", "testsvc")
        token = made["token"]
        env = {"SNF_COMPONENT_TOKEN": token}
        provisions = [{"holder": f"user:{uuid}", "source": f"project:{uuid}",
                       "resource": "pithos.diskspace", "quantity": 5000},
                      {"holder": f"project:{uuid}", "source": None,
                       "resource": "pithos.diskspace", "quantity": 5000}]
        one = yield threads.deferToThread(self.issue, token, provisions)
        two = yield threads.deferToThread(self.issue, token, provisions)

        proc = yield self.snf(me, "commission", "pending", env=env)
        self.assertEqual(proc.stdout.split(), [str(one), str(two)])
        proc = yield self.snf(me, "-o", "json", "commission", "--token", token, "pending")
        self.assertEqual(json.loads(proc.stdout), [one, two])
        proc = yield self.snf(me, "commission", "info", str(one), env=env)
        self.assertIn("pithos.diskspace", proc.stdout)
        self.assertIn("+5000", proc.stdout)
        found = yield self.json_of(me, "commission", "--token", token, "info", str(one))
        self.assertEqual(found["serial"], one)

        yield self.snf(me, "commission", "accept", str(one), env=env)
        yield self.snf(me, "commission", "reject", str(two), env=env)
        proc = yield self.snf(me, "commission", "pending", env=env)
        self.assertIn("no pending commissions", proc.stdout)
        quotas = yield self.json_of(me, "quota", "list")
        self.assertEqual(quotas[uuid]["pithos.diskspace"]["usage"], 5000)

        proc = yield self.snf(me, "commission", "accept", str(two), env=env, ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        proc = yield self.snf(me, "commission", "info", str(one), env=env, ok=False)
        self.assertEqual(proc.returncode, 3, proc.stderr)
        user_token = self.settings(me)["token"]
        proc = yield self.snf(me, "commission", "--token", user_token, "pending", ok=False)
        self.assertEqual(proc.returncode, 4, proc.stderr)
        proc = yield self.snf(me, "commission", "pending", ok=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
