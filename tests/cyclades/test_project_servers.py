"""Servers and projects as Nova has them (issue 21), over real HTTP: a
server is charged to the project its creator's token is scoped to; in
Nova's dialect a project-scoped token lists, shows and (with a role
above reader) changes the project's servers, whoever made them, while
Synnefo's dialect and unscoped tokens keep to the user's own; and
``os-simple-tenant-usage`` reports a project's server hours."""

from __future__ import annotations

import datetime

from twisted.trial import unittest

from snfd.testing.compute import compute_stack

UTC = datetime.UTC


class ProjectServerTests(unittest.TestCase):
    async def setUp(self) -> None:
        s = self.stack = await compute_stack(self)
        self.alice, self.alice_token = await s.user("alice")
        self.bob, self.bob_token = await s.user("bob")
        _, self.admin = await s.admin()
        self.identity = f"{s.url}/identity/v3"
        code, body, _ = await s.call("POST", f"{self.identity}/projects", self.admin,
                                     {"project": {"name": "lab", "domain_id": "default"}})
        self.assertEqual(code, 201, body)
        self.project = body["project"]["id"]
        _, roles, _ = await s.call("GET", f"{self.identity}/roles", self.admin)
        ids = {r["name"]: r["id"] for r in roles["roles"]}
        for user, role in ((self.alice, "member"), (self.bob, "reader")):
            code, body, _ = await s.call(
                "PUT", f"{self.identity}/projects/{self.project}/users/{user}/roles/{ids[role]}",
                self.admin)
            self.assertEqual(code, 204, body)
        await s.set_limits(self.alice, self.project)
        self.alice_lab = await self.scoped(self.alice_token)
        self.bob_lab = await self.scoped(self.bob_token)
        self.v21 = f"{s.url}/compute/v2.1"

    async def scoped(self, token: str) -> str:
        code, body, headers = await self.stack.call(
            "POST", f"{self.identity}/auth/tokens", None,
            {"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                      "scope": {"project": {"id": self.project}}}})
        self.assertEqual(code, 201, body)
        return headers.getRawHeaders("x-subject-token")[0]

    async def call(self, method, path, token, body=None, base=None):
        return await self.stack.call(method, (base or self.v21) + path, token, body)

    async def create(self) -> str:
        code, body, _ = await self.call("POST", "/servers", self.alice_lab, {"server": {
            "name": "lab-vm", "imageRef": self.stack.image.id,
            "flavorRef": str(self.stack.flavors["small"].id)}})
        self.assertEqual(code, 202, body)
        return str(body["server"]["id"])

    async def listed(self, token, base=None) -> list[str]:
        code, body, _ = await self.call("GET", "/servers", token, base=base)
        self.assertEqual(code, 200, body)
        return [str(s["id"]) for s in body["servers"]]

    async def test_project_servers(self):
        sid = await self.create()
        code, body, _ = await self.call("GET", f"/servers/{sid}", self.bob_lab)
        self.assertEqual((code, body["server"]["tenant_id"]), (200, self.project))
        self.assertEqual(body["server"]["user_id"], self.alice)
        self.assertEqual(await self.listed(self.bob_lab), [sid])
        self.assertEqual(await self.listed(self.bob_token), [])
        self.assertEqual(await self.listed(self.bob_lab, f"{self.stack.url}/compute/v2.0"), [])
        self.assertEqual(await self.listed(self.alice_token), [sid])
        code, _, _ = await self.call("DELETE", f"/servers/{sid}", self.bob_lab)
        self.assertEqual(code, 403)
        code, _, _ = await self.call("GET", f"/servers/{sid}", self.bob_token)
        self.assertEqual(code, 404)
        _, holdings, _ = await self.call("GET", f"/os-quota-sets/{self.project}/detail",
                                         self.alice_lab)
        self.assertEqual(holdings["quota_set"]["instances"]["in_use"], 1)

    async def test_tenant_usage(self):
        sid = await self.create()
        now = datetime.datetime.now(UTC).replace(tzinfo=None)
        period = (f"start={(now - datetime.timedelta(days=1)).isoformat()}"
                  f"&end={(now + datetime.timedelta(days=1)).isoformat()}")
        code, body, _ = await self.call(
            "GET", f"/os-simple-tenant-usage/{self.project}?{period}", self.bob_lab)
        self.assertEqual(code, 200, body)
        usage = body["tenant_usage"]
        self.assertEqual(len(usage), 8)
        self.assertEqual([u["instance_id"] for u in usage["server_usages"]], [sid])
        self.assertEqual(usage["server_usages"][0]["vcpus"], self.stack.flavors["small"].cpu)
        code, body, _ = await self.call("GET", f"/os-simple-tenant-usage?{period}&detailed=1",
                                        self.admin)
        self.assertEqual(code, 200, body)
        self.assertIn(self.project, [u["tenant_id"] for u in body["tenant_usages"]])
        code, _, _ = await self.call("GET", f"/os-simple-tenant-usage?{period}",
                                     self.alice_lab)
        self.assertEqual(code, 403)
        code, _, _ = await self.call("GET", f"/os-simple-tenant-usage/{self.project}"
                                            "?start=yesterday", self.bob_lab)
        self.assertEqual(code, 400)
        code, _, _ = await self.call("GET", f"/os-simple-tenant-usage/{self.alice}?{period}",
                                     self.bob_lab)
        self.assertEqual(code, 403)
        code, body, _ = await self.call(
            "GET", f"/os-simple-tenant-usage/{self.project}?start=2000-01-01T00:00:00"
                   "&end=2000-01-02T00:00:00", self.bob_lab)
        self.assertEqual((code, body), (200, {"tenant_usage": {}}))

    async def test_all_tenants_filters_and_sorting(self):
        """Administrators list every project's servers (all_tenants) and
        filter by project or user; users may not; sort_key/sort_dir order
        the listing, 400 for a key this cloud does not sort by."""
        sid = await self.create()
        code, body, _ = await self.call("POST", "/servers", self.alice_token, {"server": {
            "name": "a-first", "imageRef": self.stack.image.id,
            "flavorRef": str(self.stack.flavors["small"].id)}})
        self.assertEqual(code, 202, body)
        own = str(body["server"]["id"])
        code, _, _ = await self.call("GET", "/servers?all_tenants=1", self.bob_lab)
        self.assertEqual(code, 403)
        code, body, _ = await self.call("GET", "/servers?all_tenants=1", self.admin)
        self.assertEqual({s["id"] for s in body["servers"]}, {sid, own})
        code, body, _ = await self.call(
            "GET", f"/servers?all_tenants=1&tenant_id={self.project}", self.admin)
        self.assertEqual([s["id"] for s in body["servers"]], [sid])
        code, body, _ = await self.call(
            "GET", f"/servers/detail?all_tenants=1&user_id={self.bob}", self.admin)
        self.assertEqual(body["servers"], [])
        code, body, _ = await self.call("GET", "/servers?sort_key=display_name&sort_dir=asc",
                                        self.alice_token)
        self.assertEqual([s["name"] for s in body["servers"]], ["a-first", "lab-vm"])
        code, body, _ = await self.call("GET", "/servers?sort_key=display_name",
                                        self.alice_token)
        self.assertEqual([s["name"] for s in body["servers"]], ["lab-vm", "a-first"])
        for bad in ("sort_key=color", "sort_key=uuid&sort_dir=up"):
            code, _, _ = await self.call("GET", f"/servers?{bad}", self.alice_token)
            self.assertEqual(code, 400, bad)
