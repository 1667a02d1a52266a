"""Flavors in both dialects over real HTTP (``snfd.cyclades.flavor_api``
over ``snfd.cyclades.flavors``): administrators create, describe and
delete named flavors with ids of their choosing, keep access lists and
extra specs, as Nova 2.1 answers; users see public flavors and private
ones of their projects, and cannot change any; Synnefo's dialect keeps
its serial ids and shapes."""

from __future__ import annotations

import uuid

from twisted.trial import unittest

from snfd.cyclades import store
from snfd.testing.compute import compute_stack
from tests.cyclades.test_nova_dialect import FLAVOR_KEYS


class FlavorManagementTests(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        _, self.admin = await self.stack.admin()
        self.v21 = f"{self.stack.url}/compute/v2.1"
        self.v20 = f"{self.stack.url}/compute/v2.0"

    async def call(self, method, path, body=None, token=None, base=None):
        return await self.stack.call(method, (base or self.v21) + path,
                                     token or self.admin, body)

    async def create(self, **flavor):
        flavor.setdefault("name", f"f-{uuid.uuid4().hex[:8]}")
        flavor.setdefault("ram", 512)
        flavor.setdefault("vcpus", 1)
        flavor.setdefault("disk", 10)
        code, body, _ = await self.call("POST", "/flavors", {"flavor": flavor})
        self.assertEqual(code, 200, body)
        return body["flavor"]

    async def names(self, token, query=""):
        code, body, _ = await self.call("GET", f"/flavors/detail{query}", token=token)
        self.assertEqual(code, 200, body)
        return {f["name"] for f in body["flavors"]}

    async def test_create_show_delete(self):
        """An administrator's flavor: the id given (a number as text, or a
        UUID when none), Nova's keys only, shown to users; deleted it is
        404, and its name and id can be taken again."""
        made = await self.create(id=4242, swap=1024, rxtx_factor=2,
                                 **{"OS-FLV-EXT-DATA:ephemeral": 10})
        self.assertEqual(set(made), FLAVOR_KEYS)
        self.assertEqual((made["id"], made["swap"], made["OS-FLV-EXT-DATA:ephemeral"],
                          made["rxtx_factor"], made["os-flavor-access:is_public"]),
                         ("4242", 1024, 10, 2.0, True))
        auto = await self.create(ram="1024")
        self.assertEqual(str(uuid.UUID(auto["id"])), auto["id"])
        self.assertEqual((auto["ram"], auto["swap"], auto["rxtx_factor"]), (1024, "", 1.0))
        code, body, _ = await self.call("GET", "/flavors/4242", token=self.token)
        self.assertEqual((code, body["flavor"]["name"]), (200, made["name"]))
        self.assertEqual((await self.call("DELETE", "/flavors/4242"))[0], 202)
        self.assertEqual((await self.call("GET", "/flavors/4242"))[0], 404)
        self.assertNotIn(made["name"], await self.names(self.token))
        again = await self.create(id=4242, name=made["name"])
        self.assertEqual(again["id"], "4242")

    async def test_conflicts_and_bad_bodies(self):
        """409 for a taken name or id; 400 for Nova's malformed bodies."""
        made = await self.create(id="same-id")
        code, _, _ = await self.call("POST", "/flavors", {"flavor": {
            "name": made["name"], "ram": 1, "vcpus": 1, "disk": 0}})
        self.assertEqual(code, 409)
        code, _, _ = await self.call("POST", "/flavors", {"flavor": {
            "name": "other", "id": "same-id", "ram": 1, "vcpus": 1, "disk": 0}})
        self.assertEqual(code, 409)
        for bad in ({"name": " lead", "ram": 1, "vcpus": 1, "disk": 0},
                    {"name": "x", "ram": 0, "vcpus": 1, "disk": 0},
                    {"name": "x", "ram": 1, "vcpus": 1, "disk": -1},
                    {"name": "x", "ram": 1, "vcpus": 1},
                    {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "rxtx_factor": 0},
                    {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "id": "bad/id"},
                    {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "color": "red"},
                    {"name": "x", "ram": 1, "vcpus": 1, "disk": 0,
                     "os-flavor-access:is_public": "maybe"}):
            with self.subTest(bad=bad):
                code, body, _ = await self.call("POST", "/flavors", {"flavor": bad})
                self.assertEqual(code, 400, body)
                self.assertEqual(body["badRequest"]["code"], 400)

    async def test_users_may_not_change_flavors(self):
        made = await self.create(**{"os-flavor-access:is_public": "False"})
        fid = made["id"]
        for method, path, body in (
                ("POST", "/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1,
                                                 "disk": 0}}),
                ("DELETE", f"/flavors/{fid}", None),
                ("POST", f"/flavors/{fid}/action",
                 {"addTenantAccess": {"tenant": self.alice}}),
                ("GET", f"/flavors/{fid}/os-flavor-access", None),
                ("POST", f"/flavors/{fid}/os-extra_specs", {"extra_specs": {"a": "b"}}),
                ("PUT", f"/flavors/{fid}/os-extra_specs/a", {"a": "b"}),
                ("DELETE", f"/flavors/{fid}/os-extra_specs/a", None)):
            with self.subTest(method=method, path=path):
                code, answer, _ = await self.call(method, path, body, token=self.token)
                self.assertEqual(code, 403, answer)

    async def test_private_flavor_and_access(self):
        """A private flavor is hidden from users until their project is
        added; administrators list it with is_public=false or none; a user
        cannot boot from it (400 in Nova's dialect); access to a public
        flavor and duplicates are 409, removing a missing one 404."""
        private = await self.create(**{"os-flavor-access:is_public": "False"})
        public = await self.create()
        fid = private["id"]
        self.assertNotIn(private["name"], await self.names(self.token))
        self.assertNotIn(private["name"], await self.names(self.admin))
        for value in ("f", "false", "no", "0"):
            self.assertIn(private["name"], await self.names(self.admin, f"?is_public={value}"))
        self.assertIn(private["name"], await self.names(self.admin, "?is_public=none"))
        self.assertIn(public["name"], await self.names(self.admin, "?is_public=none"))
        self.assertEqual((await self.call("GET", "/flavors/detail?is_public=maybe"))[0], 400)
        code, body, _ = await self.call("GET", f"/flavors/{fid}/os-flavor-access")
        self.assertEqual((code, body), (200, {"flavor_access": []}))
        code, body, _ = await self.call("POST", "/servers", {"server": {
            "name": "vm", "imageRef": self.stack.image.id, "flavorRef": fid}},
            token=self.token)
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", f"/flavors/{fid}/action",
                                        {"addTenantAccess": {"tenant": self.alice}})
        self.assertEqual((code, body), (200, {"flavor_access": [
            {"flavor_id": fid, "tenant_id": self.alice}]}))
        self.assertIn(private["name"], await self.names(self.token))
        code, _, _ = await self.call("POST", f"/flavors/{fid}/action",
                                     {"addTenantAccess": {"tenant": self.alice}})
        self.assertEqual(code, 409)
        code, _, _ = await self.call("POST", f"/flavors/{public['id']}/action",
                                     {"addTenantAccess": {"tenant": self.alice}})
        self.assertEqual(code, 409)
        self.assertEqual((await self.call("GET", f"/flavors/{public['id']}/os-flavor-access"))[0],
                         404)
        code, body, _ = await self.call("POST", f"/flavors/{fid}/action",
                                        {"removeTenantAccess": {"tenant": self.alice}})
        self.assertEqual((code, body), (200, {"flavor_access": []}))
        self.assertNotIn(private["name"], await self.names(self.token))
        code, _, _ = await self.call("POST", f"/flavors/{fid}/action",
                                     {"removeTenantAccess": {"tenant": self.alice}})
        self.assertEqual(code, 404)

    async def test_extra_specs(self):
        """Set (merge; the answer is what was given), read (users too),
        update one key (exactly the path's key), unset (404 when absent);
        SNF:disk_template is the flavor's Ganeti disk template."""
        fid = (await self.create())["id"]
        specs = {"hw:numa_nodes": "1", "hw:cpu_policy": "shared"}
        code, body, _ = await self.call("POST", f"/flavors/{fid}/os-extra_specs",
                                        {"extra_specs": specs})
        self.assertEqual((code, body), (200, {"extra_specs": specs}))
        code, body, _ = await self.call("GET", f"/flavors/{fid}/os-extra_specs",
                                        token=self.token)
        self.assertEqual((code, body), (200, {"extra_specs": specs}))
        code, body, _ = await self.call("GET", f"/flavors/{fid}/os-extra_specs/hw:numa_nodes",
                                        token=self.token)
        self.assertEqual((code, body), (200, {"hw:numa_nodes": "1"}))
        code, body, _ = await self.call("PUT", f"/flavors/{fid}/os-extra_specs/hw:numa_nodes",
                                        {"hw:numa_nodes": 2})
        self.assertEqual((code, body), (200, {"hw:numa_nodes": "2"}))
        for bad in ({"other": "1"}, {"hw:numa_nodes": "1", "other": "2"}):
            code, _, _ = await self.call("PUT", f"/flavors/{fid}/os-extra_specs/hw:numa_nodes",
                                         bad)
            self.assertEqual(code, 400)
        code, body, _ = await self.call("DELETE", f"/flavors/{fid}/os-extra_specs/hw:cpu_policy")
        self.assertEqual(code, 200)
        self.assertEqual((await self.call("DELETE",
                                          f"/flavors/{fid}/os-extra_specs/hw:cpu_policy"))[0],
                         404)
        self.assertEqual((await self.call("GET", f"/flavors/{fid}/os-extra_specs/nope"))[0], 404)
        code, body, _ = await self.call("POST", f"/flavors/{fid}/os-extra_specs",
                                        {"extra_specs": {"SNF:disk_template": "plain"}})
        self.assertEqual(code, 200, body)
        serial = (await self.stack.db.run("t", store.flavor_by_flavorid_txn, fid)).id
        code, body, _ = await self.call("GET", f"/flavors/{serial}", base=self.v20)
        self.assertEqual((code, body["flavor"]["SNF:disk_template"]), (200, "plain"))
        code, _, _ = await self.call("POST", f"/flavors/{fid}/os-extra_specs",
                                     {"extra_specs": {"SNF:disk_template": "not a template"}})
        self.assertEqual(code, 400)

    async def test_boot_and_dialects(self):
        """A server booted from an administrator's flavor by its flavorid
        shows that id at v2.1 and the serial id at v2.0; the flavor filter
        takes each dialect's id."""
        made = await self.create(id="my-flavor", ram=256)
        code, body, _ = await self.call("POST", "/servers", {"server": {
            "name": "vm", "imageRef": self.stack.image.id, "flavorRef": "my-flavor"}},
            token=self.token)
        self.assertEqual(code, 202, body)
        sid = body["server"]["id"]
        code, body, _ = await self.call("GET", f"/servers/{sid}", token=self.token)
        self.assertEqual(body["server"]["flavor"]["id"], "my-flavor")
        code, body, _ = await self.call("GET", "/servers?flavor=my-flavor", token=self.token)
        self.assertEqual([s["id"] for s in body["servers"]], [sid])
        code, body, _ = await self.call("GET", f"/servers/{sid}", token=self.token, base=self.v20)
        serial = body["server"]["flavor"]["id"]
        self.assertIsInstance(serial, int)
        code, body, _ = await self.call("GET", f"/flavors/{serial}", token=self.token,
                                        base=self.v20)
        self.assertEqual((code, body["flavor"]["name"]), (200, made["name"]))
        self.assertEqual((await self.call("GET", "/flavors/my-flavor", base=self.v20))[0], 404)

    async def test_disabled_flavors_by_dialect(self):
        """A flavor that may not make servers is left out of users' listings
        in Nova's dialect (disabled) and listed in Synnefo's with
        SNF:allow_create false, as the reference shows it."""
        small = self.stack.flavors["small"]
        await self.stack.db.run("t", store.update_flavor_txn, small.id, allow_create=False)
        code, body, _ = await self.call("GET", "/flavors/detail", token=self.token)
        self.assertNotIn(str(small.id), [f["id"] for f in body["flavors"]])
        code, body, _ = await self.call("GET", "/flavors/detail", token=self.token,
                                        base=self.v20)
        shown = [f for f in body["flavors"] if f["id"] == small.id]
        self.assertEqual([f["SNF:allow_create"] for f in shown], [False])
        code, body, _ = await self.call("GET", f"/flavors/{small.id}", token=self.token)
        self.assertEqual((code, body["flavor"]["OS-FLV-DISABLED:disabled"]), (200, True))
