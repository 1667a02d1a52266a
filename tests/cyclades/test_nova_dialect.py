"""Nova's dialect of the compute API (``/compute/v2.1``,
``snfd.cyclades.compute_views.NovaViews``) over real HTTP, beside
Synnefo's at ``/compute/v2.0``: the same servers, in the shapes Nova's
microversion 2.1 schemas allow (exact key sets here, so an extra key
fails as it fails tempest), string ids, Nova's states, deleted servers
gone, 200 with an empty list when nothing changed, keypair views and
codes."""

from __future__ import annotations

import datetime
from urllib.parse import quote

from twisted.trial import unittest

from snfd.cyclades import store
from snfd.testing.compute import compute_stack
from tests.cyclades.test_compute_api import PUBLIC_KEY

UTC = datetime.UTC

#: The keys Nova 2.1 allows in a server detail (tempest's v2_1 schema).
SERVER_DETAIL_KEYS = {
    "id", "name", "status", "tenant_id", "user_id", "created", "updated", "hostId",
    "progress", "image", "flavor", "metadata", "addresses", "accessIPv4", "accessIPv6",
    "OS-DCF:diskConfig", "links", "key_name", "security_groups", "OS-EXT-STS:task_state",
    "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state", "OS-EXT-AZ:availability_zone",
    "OS-SRV-USG:launched_at", "OS-SRV-USG:terminated_at",
    "os-extended-volumes:volumes_attached", "config_drive", "fault",
    "OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:instance_name",
    "OS-EXT-SRV-ATTR:hypervisor_hostname"}
#: ``common_show_server``: a rename's answer.
SERVER_SHORT_KEYS = {
    "id", "name", "status", "tenant_id", "user_id", "created", "updated", "hostId",
    "progress", "image", "flavor", "metadata", "addresses", "accessIPv4", "accessIPv6",
    "OS-DCF:diskConfig", "links", "fault"}
FLAVOR_KEYS = {"id", "name", "links", "ram", "vcpus", "swap", "disk",
               "OS-FLV-DISABLED:disabled", "os-flavor-access:is_public", "rxtx_factor",
               "OS-FLV-EXT-DATA:ephemeral"}
IMAGE_KEYS = {"id", "status", "updated", "created", "links", "name", "minDisk", "minRam",
              "progress", "metadata", "server", "OS-EXT-IMG-SIZE:size", "OS-DCF:diskConfig"}


class NovaDialectTests(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self, sim=False)
        self.alice, self.token = await self.stack.user("alice")
        self.v21 = f"{self.stack.url}/compute/v2.1"

    async def _stored(self, **fields):
        s = self.stack
        return await s.db.run("t", store.insert_server_txn, self.alice, self.alice, "stored",
                              s.flavors["small"].id, s.image.id, backend_id=s.backend.id,
                              backendjobid=1, backendopcode="OP_INSTANCE_CREATE",
                              backendjobstatus="success", **fields)

    async def call(self, method, path, body=None):
        return await self.stack.call(method, self.v21 + path, self.token, body)

    async def test_server_shapes(self):
        """A running server: string ids, only Nova's keys, Nova's states and
        MAC addresses; a stopped one is SHUTOFF; a listing has id, name,
        links; Synnefo's dialect still shows its own shape at v2.0."""
        server = await self._stored(
            operstate="STARTED", metadata={"OS": "debian"}, tags=("web",),
            nics=({"id": 7, "network": "snf-net-1", "ip": "10.0.0.5",
                   "mac": "aa:00:00:11:22:33"},))
        code, body, headers = await self.call("GET", f"/servers/{server.id}")
        self.assertEqual(code, 200)
        d = body["server"]
        self.assertLessEqual(set(d), SERVER_DETAIL_KEYS)
        self.assertEqual((d["id"], d["flavor"]["id"]),
                         (str(server.id), str(self.stack.flavors["small"].id)))
        self.assertEqual((d["status"], d["OS-EXT-STS:vm_state"], d["OS-EXT-STS:power_state"],
                          d["OS-EXT-STS:task_state"]), ("ACTIVE", "active", 1, None))
        self.assertEqual(d["addresses"], {"snf-net-1": [
            {"version": 4, "addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed",
             "OS-EXT-IPS-MAC:mac_addr": "aa:00:00:11:22:33"}]})
        # /ips and a rename's short server have Nova's plain addresses.
        _, body, _ = await self.call("GET", f"/servers/{server.id}/ips")
        self.assertEqual(body["addresses"],
                         {"snf-net-1": [{"version": 4, "addr": "10.0.0.5"}]})
        _, body, _ = await self.call("PUT", f"/servers/{server.id}",
                                     {"server": {"name": "stored"}})
        self.assertEqual(body["server"]["addresses"],
                         {"snf-net-1": [{"version": 4, "addr": "10.0.0.5"}]})
        self.assertEqual(d["links"][0]["href"], f"{self.v21}/servers/{server.id}")
        self.assertEqual(d["config_drive"], "")
        self.assertEqual(headers.getRawHeaders("x-openstack-nova-api-version"), ["2.1"])
        self.assertTrue(headers.getRawHeaders("x-openstack-request-id"))
        await self.stack.set_server(server.id, operstate="STOPPED")
        _, body, _ = await self.call("GET", f"/servers/{server.id}")
        self.assertEqual((body["server"]["status"], body["server"]["OS-EXT-STS:power_state"]),
                         ("SHUTOFF", 4))
        _, body, _ = await self.call("GET", "/servers")
        self.assertEqual(body["servers"], [{"id": str(server.id), "name": "stored",
                                            "links": body["servers"][0]["links"]}])
        _, body, _ = await self.stack.call("GET", f"/servers/{server.id}", self.token)
        self.assertEqual((body["server"]["id"], body["server"]["status"]),
                         (server.id, "STOPPED"))
        self.assertIn("SNF:task_state", body["server"])

    async def test_rename_answers_the_short_server(self):
        """PUT answers 200 with Nova's short server (Synnefo's: 204)."""
        server = await self._stored(operstate="STARTED")
        code, body, _ = await self.call("PUT", f"/servers/{server.id}",
                                        {"server": {"name": "renamed"}})
        self.assertEqual(code, 200)
        self.assertLessEqual(set(body["server"]), SERVER_SHORT_KEYS)
        self.assertEqual(body["server"]["name"], "renamed")
        code, _, _ = await self.stack.call("PUT", f"/servers/{server.id}", self.token,
                                           {"server": {"name": "again"}})
        self.assertEqual(code, 204)

    async def test_deleted_servers_are_gone(self):
        """A deleted server is 404 and not listed; changes-since lists it
        (DELETED) and answers 200 with an empty list when nothing changed."""
        server = await self._stored(operstate="STARTED")
        mark = quote(datetime.datetime.now(UTC).isoformat())
        code, body, _ = await self.call("GET", f"/servers/detail?changes-since={mark}")
        self.assertEqual((code, body), (200, {"servers": []}))
        await self.stack.set_server(server.id, deleted=True, operstate="DESTROYED")
        code, _, _ = await self.call("GET", f"/servers/{server.id}")
        self.assertEqual(code, 404)
        _, body, _ = await self.call("GET", "/servers/detail")
        self.assertEqual(body["servers"], [])
        _, body, _ = await self.call("GET", f"/servers/detail?changes-since={mark}")
        self.assertEqual([(x["id"], x["status"]) for x in body["servers"]],
                         [(str(server.id), "DELETED")])
        code, body, _ = await self.stack.call("GET", f"/servers/{server.id}", self.token)
        self.assertEqual((code, body["server"]["status"]), (200, "DELETED"))

    async def test_flavors_and_images(self):
        """Flavors and images carry only Nova's keys, ids as strings."""
        _, body, _ = await self.call("GET", "/flavors/detail")
        for flavor in body["flavors"]:
            self.assertLessEqual(set(flavor), FLAVOR_KEYS)
            self.assertIsInstance(flavor["id"], str)
        small = str(self.stack.flavors["small"].id)
        code, body, _ = await self.call("GET", f"/flavors/{small}")
        self.assertEqual((code, body["flavor"]["id"]), (200, small))
        _, body, _ = await self.call("GET", "/flavors")
        self.assertEqual(set(body["flavors"][0]), {"id", "name", "links"})
        _, body, _ = await self.call("GET", "/images/detail")
        self.assertTrue(body["images"])
        for image in body["images"]:
            self.assertLessEqual(set(image), IMAGE_KEYS)
            self.assertEqual((image["minDisk"], image["minRam"]), (0, 0))

    async def test_quota_sets(self):
        """os-quota-sets shows the caller's cyclades holdings in a project
        and Nova's fixed entries; defaults are the resources' defaults (of
        a base project here); another project is 403."""
        code, body, _ = await self.call("GET", f"/os-quota-sets/{self.alice}")
        self.assertEqual(code, 200)
        quota = body["quota_set"]
        self.assertEqual((quota["id"], quota["instances"], quota["cores"], quota["ram"],
                          quota["metadata_items"], quota["floating_ips"]),
                         (self.alice, 10, 32, 64 * 1024, 10, 5))
        _, body, _ = await self.call("GET", f"/os-quota-sets/{self.alice}/detail")
        self.assertEqual(body["quota_set"]["instances"],
                         {"limit": 10, "in_use": 0, "reserved": 0})
        _, body, _ = await self.call("GET", f"/os-quota-sets/{self.alice}/defaults")
        self.assertEqual((body["quota_set"]["instances"], body["quota_set"]["cores"],
                          body["quota_set"]["ram"]), (4, 8, 16 * 1024))
        code, _, _ = await self.call("GET", "/os-quota-sets/someone-else")
        self.assertEqual(code, 403)

    async def test_keypairs(self):
        """Nova 2.1's keypair views: create (200, with user_id), show (with
        id, deleted, times), list (name, key, fingerprint), delete 202."""
        code, body, _ = await self.call("POST", "/os-keypairs", {
            "keypair": {"name": "laptop", "public_key": PUBLIC_KEY}})
        self.assertEqual(code, 200)
        self.assertEqual(set(body["keypair"]), {"name", "public_key", "fingerprint", "user_id"})
        _, body, _ = await self.call("GET", "/os-keypairs/laptop")
        self.assertEqual(set(body["keypair"]), {
            "name", "public_key", "fingerprint", "user_id", "created_at", "deleted",
            "deleted_at", "updated_at", "id"})
        self.assertIsInstance(body["keypair"]["id"], int)
        _, body, _ = await self.call("GET", "/os-keypairs")
        self.assertEqual(set(body["keypairs"][0]["keypair"]),
                         {"name", "public_key", "fingerprint"})
        code, _, _ = await self.call("DELETE", "/os-keypairs/laptop")
        self.assertEqual(code, 202)


class NovaCreateTests(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")

    async def admin_token(self) -> str:
        """A token of a new administrator (an Astakos admin)."""
        _, token = await self.stack.admin()
        return token

    async def test_create_answers_nova_shape_then_active(self):
        """POST /servers at v2.1: 202 with only id, links, adminPass,
        OS-DCF:diskConfig and security_groups, and a request id header;
        the server then shows BUILD/spawning and, once the job ends,
        ACTIVE with no task; a string flavorRef is accepted."""
        s = self.stack
        code, body, headers = await s.call(
            "POST", f"{s.url}/compute/v2.1/servers", self.token,
            {"server": {"name": "vm", "flavorRef": str(s.flavors["small"].id),
                        "imageRef": s.image.id}})
        self.assertEqual(code, 202, body)
        self.assertEqual(set(body["server"]), {"id", "links", "adminPass",
                                               "OS-DCF:diskConfig", "security_groups"})
        self.assertTrue(headers.getRawHeaders("x-openstack-request-id"))
        sid = body["server"]["id"]
        self.assertIsInstance(sid, str)
        _, shown, _ = await s.call("GET", f"{s.url}/compute/v2.1/servers/{sid}", self.token)
        self.assertEqual((shown["server"]["status"], shown["server"]["OS-EXT-STS:task_state"]),
                         ("BUILD", "spawning"))
        await s.follow((await s.server(int(sid))).backendjobid)
        _, shown, _ = await s.call("GET", f"{s.url}/compute/v2.1/servers/{sid}", self.token)
        self.assertEqual((shown["server"]["status"], shown["server"]["OS-EXT-STS:task_state"],
                          shown["server"]["OS-EXT-STS:vm_state"]), ("ACTIVE", None, "active"))
        self.assertIsNotNone(shown["server"]["OS-SRV-USG:launched_at"])

    async def test_admin_pass_rules(self):
        """Nova takes any adminPass (tempest's random ones may lack lower
        case); Synnefo's dialect keeps the reference's strength rule."""
        s = self.stack
        weak = "G2*AC8&LKFFGH%2"
        for prefix, code_wanted in (("/compute/v2.1", 202), ("/compute/v2.0", 400)):
            code, body, _ = await s.call("POST", f"{s.url}{prefix}/servers", self.token, {
                "server": {"name": "vm", "flavorRef": str(s.flavors["small"].id),
                           "imageRef": s.image.id, "adminPass": weak}})
            self.assertEqual(code, code_wanted, (prefix, body))
        code, body, _ = await s.call("POST", f"{s.url}/compute/v2.1/servers", self.token, {
            "server": {"name": "vm", "flavorRef": str(s.flavors["small"].id),
                       "imageRef": s.image.id, "adminPass": ""}})
        self.assertEqual(code, 400, body)

    async def test_access_addresses(self):
        """accessIPv4/accessIPv6 given on create are kept and shown, changed
        by PUT (Nova's dialect and Synnefo's), and a wrong one is 400."""
        s = self.stack
        v21 = f"{s.url}/compute/v2.1"
        code, body, _ = await s.call("POST", f"{v21}/servers", self.token, {"server": {
            "name": "vm", "flavorRef": str(s.flavors["small"].id), "imageRef": s.image.id,
            "accessIPv4": "1.1.1.1", "accessIPv6": "::babe:202:202"}})
        self.assertEqual(code, 202, body)
        sid = body["server"]["id"]
        _, shown, _ = await s.call("GET", f"{v21}/servers/{sid}", self.token)
        self.assertEqual((shown["server"]["accessIPv4"], shown["server"]["accessIPv6"]),
                         ("1.1.1.1", "::babe:202:202"))
        code, body, _ = await s.call("PUT", f"{v21}/servers/{sid}", self.token,
                                     {"server": {"accessIPv6": "2001:db8::5"}})
        self.assertEqual((code, body["server"]["accessIPv6"], body["server"]["name"]),
                         (200, "2001:db8::5", "vm"))
        for bad in ({"accessIPv4": "::1"}, {"accessIPv6": "300.1.1.1"}, {"accessIPv4": 7}):
            code, _, _ = await s.call("PUT", f"{v21}/servers/{sid}", self.token,
                                      {"server": bad})
            self.assertEqual(code, 400, bad)
        code, _, _ = await s.call("POST", f"{v21}/servers", self.token, {"server": {
            "name": "vm", "flavorRef": str(s.flavors["small"].id), "imageRef": s.image.id,
            "accessIPv4": "not an address"}})
        self.assertEqual(code, 400)

    async def test_administrator_acts_on_anyones_server(self):
        """An administrator sees and deletes another user's server (as its
        owner's: the quota given back is the owner's); a plain user gets
        404 for it."""
        s = self.stack
        v21 = f"{s.url}/compute/v2.1"
        _, body, _ = await s.call("POST", f"{v21}/servers", self.token, {"server": {
            "name": "vm", "flavorRef": str(s.flavors["small"].id), "imageRef": s.image.id}})
        sid = body["server"]["id"]
        await s.follow((await s.server(int(sid))).backendjobid)
        bob, bob_token = await s.user("bob")
        code, _, _ = await s.call("GET", f"{v21}/servers/{sid}", bob_token)
        self.assertEqual(code, 404)
        root_token = await self.admin_token()
        code, shown, _ = await s.call("GET", f"{v21}/servers/{sid}", root_token)
        self.assertEqual((code, shown["server"]["user_id"]), (200, self.alice))
        code, _, _ = await s.call("DELETE", f"{v21}/servers/{sid}", root_token)
        self.assertEqual(code, 204)
        server = await s.server(int(sid))
        self.assertEqual((server.userid, server.task), (self.alice, "DESTROY"))

    async def test_availability_zone_detail(self):
        """The zone's details list each Ganeti cluster as a host with a
        nova-compute service, for administrators only."""
        s = self.stack
        v21 = f"{s.url}/compute/v2.1"
        code, _, _ = await s.call("GET", f"{v21}/os-availability-zone/detail", self.token)
        self.assertEqual(code, 403)
        root_token = await self.admin_token()
        code, body, _ = await s.call("GET", f"{v21}/os-availability-zone/detail", root_token)
        self.assertEqual(code, 200)
        (zone,) = body["availabilityZoneInfo"]
        self.assertEqual((zone["zoneName"], zone["zoneState"]), ("nova", {"available": True}))
        service = zone["hosts"][s.backend.clustername]["nova-compute"]
        self.assertEqual((service["available"], service["active"]), (True, True))

    async def test_lock(self):
        """A locked server refuses its owner's actions, deletion and changes
        (409) until unlocked; an administrator acts on it anyway, and only
        an administrator undoes an administrator's lock (403 otherwise)."""
        s = self.stack
        v21 = f"{s.url}/compute/v2.1"
        _, body, _ = await s.call("POST", f"{v21}/servers", self.token, {"server": {
            "name": "vm", "flavorRef": str(s.flavors["small"].id), "imageRef": s.image.id}})
        sid = body["server"]["id"]
        await s.follow((await s.server(int(sid))).backendjobid)
        act = f"{v21}/servers/{sid}/action"
        code, _, _ = await s.call("POST", act, self.token, {"lock": None})
        self.assertEqual(code, 202)
        for method, path, data in (("POST", act, {"os-stop": None}),
                                   ("DELETE", f"{v21}/servers/{sid}", None),
                                   ("PUT", f"{v21}/servers/{sid}", {"server": {"name": "x"}}),
                                   ("PUT", f"{v21}/servers/{sid}/metadata/k",
                                    {"meta": {"k": "v"}})):
            code, _, _ = await s.call(method, path, self.token, data)
            self.assertEqual(code, 409, (method, path))
        _, shown, _ = await s.call("GET", f"{v21}/servers/{sid}", self.token)
        self.assertEqual(shown["server"]["status"], "ACTIVE")
        code, _, _ = await s.call("POST", act, self.token, {"unlock": None})
        self.assertEqual(code, 202)
        code, _, _ = await s.call("POST", act, self.token, {"os-stop": None})
        self.assertEqual(code, 202)
        await s.follow((await s.server(int(sid))).task_job_id)
        root_token = await self.admin_token()
        code, _, _ = await s.call("POST", act, root_token, {"lock": None})
        self.assertEqual(code, 202)
        code, _, _ = await s.call("POST", act, self.token, {"unlock": None})
        self.assertEqual(code, 403)
        code, body, _ = await s.call("POST", act, root_token, {"os-start": None})
        self.assertEqual(code, 202, body)
        bob, bob_token = await s.user("bob")
        code, _, _ = await s.call("POST", act, bob_token, {"lock": None})
        self.assertEqual(code, 404)


class NovaServerCallsTests(unittest.TestCase):
    """Nova's codes and bodies for metadata, os-server-password, rename,
    create faults, multiple create and administrators' server views."""

    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        self.v21 = f"{self.stack.url}/compute/v2.1"
        self.v20 = f"{self.stack.url}/compute/v2.0"

    async def _create(self, token: str | None = None, **more) -> str:
        s = self.stack
        code, body, _ = await s.call("POST", f"{self.v21}/servers", token or self.token, {
            "server": {"name": "vm", "flavorRef": str(s.flavors["small"].id),
                       "imageRef": s.image.id, **more}})
        self.assertEqual(code, 202, body)
        sid: str = body["server"]["id"]
        await s.follow((await s.server(int(sid))).backendjobid)
        return sid

    async def test_metadata_codes_and_limits(self):
        """POST metadata and PUT metadata/<key> answer 200 in Nova's dialect
        (201 in Synnefo's); past the item limit Nova's answers 403
        (Synnefo's 400); a value over 255 characters is 400 in Nova's."""
        s = self.stack
        sid = await self._create()
        for base, code_wanted in ((self.v21, 200), (self.v20, 201)):
            code, body, _ = await s.call("POST", f"{base}/servers/{sid}/metadata",
                                         self.token, {"metadata": {"a": "1"}})
            self.assertEqual((code, body["metadata"]["a"]), (code_wanted, "1"))
            code, body, _ = await s.call("PUT", f"{base}/servers/{sid}/metadata/b",
                                         self.token, {"meta": {"b": "2"}})
            self.assertEqual((code, body), (code_wanted, {"meta": {"b": "2"}}))
        many = {f"k{i}": "v" for i in range(11)}
        for base, code_wanted in ((self.v21, 403), (self.v20, 400)):
            for method in ("POST", "PUT"):
                code, _, _ = await s.call(method, f"{base}/servers/{sid}/metadata",
                                          self.token, {"metadata": many})
                self.assertEqual(code, code_wanted, (base, method))
        code, _, _ = await s.call("PUT", f"{self.v21}/servers/{sid}/metadata/c", self.token,
                                  {"meta": {"c": "x" * 256}})
        self.assertEqual(code, 400)
        code, _, _ = await s.call("POST", f"{self.v21}/servers", self.token, {"server": {
            "name": "vm", "flavorRef": str(s.flavors["small"].id), "imageRef": s.image.id,
            "metadata": {"a": "b" * 260}}})
        self.assertEqual(code, 400)
        _, body, _ = await s.call("GET", f"{self.v21}/servers/{sid}/metadata", self.token)
        self.assertEqual(body["metadata"], {"a": "1", "b": "2"})

    async def test_server_password(self):
        """os-server-password shows an empty password (the guest posts none)
        and DELETE answers 204; an unknown server is 404."""
        s = self.stack
        sid = await self._create()
        code, body, _ = await s.call("GET", f"{self.v21}/servers/{sid}/os-server-password",
                                     self.token)
        self.assertEqual((code, body), (200, {"password": ""}))
        code, _, _ = await s.call("DELETE", f"{self.v21}/servers/{sid}/os-server-password",
                                  self.token)
        self.assertEqual(code, 204)
        code, _, _ = await s.call("GET", f"{self.v21}/servers/999999/os-server-password",
                                  self.token)
        self.assertEqual(code, 404)

    async def test_rename_shows_progress_only_while_active(self):
        """A rename of a running server answers its progress; of a stopped
        one none, as Nova's view shows progress only in its busy states."""
        s = self.stack
        sid = await self._create()
        _, body, _ = await s.call("PUT", f"{self.v21}/servers/{sid}", self.token,
                                  {"server": {"name": "up"}})
        self.assertEqual(body["server"]["progress"], 100)
        await s.call("POST", f"{self.v21}/servers/{sid}/action", self.token, {"os-stop": None})
        await s.follow((await s.server(int(sid))).task_job_id)
        _, body, _ = await s.call("PUT", f"{self.v21}/servers/{sid}", self.token,
                                  {"server": {"name": "down"}})
        self.assertEqual(body["server"]["status"], "SHUTOFF")
        self.assertNotIn("progress", body["server"])

    async def test_create_naming_missing_things(self):
        """A create naming an image or a keypair that is not there is 400 in
        Nova's dialect and 404 in Synnefo's."""
        s = self.stack
        for more in ({"imageRef": "-1"}, {"key_name": "no-such-key"}):
            for base, code_wanted in ((self.v21, 400), (self.v20, 404)):
                code, body, _ = await s.call("POST", f"{base}/servers", self.token, {
                    "server": {"name": "vm", "flavorRef": str(s.flavors["small"].id),
                               "imageRef": s.image.id, **more}})
                self.assertEqual(code, code_wanted, (base, more, body))

    async def test_multiple_create(self):
        """min_count/max_count make that many servers of one name in Nova's
        dialect (the answer is the first, or a reservation id when asked);
        counts that make no sense are 400, and Synnefo's dialect takes
        one server per request."""
        s = self.stack
        body = {"name": "many", "flavorRef": str(s.flavors["small"].id),
                "imageRef": s.image.id}
        code, answer, _ = await s.call("POST", f"{self.v21}/servers", self.token,
                                       {"server": {**body, "min_count": 2}})
        self.assertEqual(code, 202, answer)
        self.assertIn("adminPass", answer["server"])
        _, listed, _ = await s.call("GET", f"{self.v21}/servers", self.token)
        self.assertEqual([x["name"] for x in listed["servers"]], ["many", "many"])
        code, answer, _ = await s.call("POST", f"{self.v21}/servers", self.token, {
            "server": {**body, "max_count": 2, "return_reservation_id": True}})
        self.assertEqual((code, list(answer)), (202, ["reservation_id"]))
        _, listed, _ = await s.call("GET", f"{self.v21}/servers", self.token)
        self.assertEqual(len(listed["servers"]), 4)
        for bad in ({"min_count": 3, "max_count": 2}, {"min_count": 0},
                    {"max_count": "two"}, {"return_reservation_id": "maybe"}):
            code, _, _ = await s.call("POST", f"{self.v21}/servers", self.token,
                                      {"server": {**body, **bad}})
            self.assertEqual(code, 400, bad)
        code, _, _ = await s.call("POST", f"{self.v20}/servers", self.token,
                                  {"server": {**body, "min_count": 2}})
        self.assertEqual(code, 400)

    async def test_multiple_create_within_quota(self):
        """A multiple create makes as many servers as the instances quota
        has room for, up to max_count; 403 and none made when that is less
        than min_count."""
        s = self.stack
        _, token = await s.user("carol", vm=2)
        body = {"name": "q", "flavorRef": str(s.flavors["small"].id), "imageRef": s.image.id}
        code, answer, _ = await s.call("POST", f"{self.v21}/servers", token,
                                       {"server": {**body, "min_count": 3}})
        self.assertEqual(code, 403, answer)
        _, listed, _ = await s.call("GET", f"{self.v21}/servers", token)
        self.assertEqual(listed["servers"], [])
        code, answer, _ = await s.call("POST", f"{self.v21}/servers", token,
                                       {"server": {**body, "max_count": 5}})
        self.assertEqual(code, 202, answer)
        _, listed, _ = await s.call("GET", f"{self.v21}/servers", token)
        self.assertEqual(len(listed["servers"]), 2)

    async def test_administrators_see_hosts(self):
        """Administrators see OS-EXT-SRV-ATTR:host (the server's cluster)
        and instance name, and filter listings by host; users see
        neither attribute, and their host filter is ignored."""
        s = self.stack
        sid = await self._create()
        _, root_token = await s.admin()
        _, shown, _ = await s.call("GET", f"{self.v21}/servers/{sid}", root_token)
        self.assertEqual((shown["server"]["OS-EXT-SRV-ATTR:host"],
                          shown["server"]["OS-EXT-SRV-ATTR:instance_name"]),
                         (s.backend.clustername, (await s.server(int(sid))).instance_name))
        for host, wanted in ((s.backend.clustername, [sid]), ("elsewhere", [])):
            _, listed, _ = await s.call(
                "GET", f"{self.v21}/servers?all_tenants=1&host={host}", root_token)
            self.assertEqual([x["id"] for x in listed["servers"]], wanted)
        _, shown, _ = await s.call("GET", f"{self.v21}/servers/{sid}", self.token)
        self.assertNotIn("OS-EXT-SRV-ATTR:host", shown["server"])
        _, listed, _ = await s.call("GET", f"{self.v21}/servers?host=elsewhere", self.token)
        self.assertEqual([x["id"] for x in listed["servers"]], [sid])

    async def test_inject_network_info_and_deleted_servers(self):
        """injectNetworkInfo is 202 for administrators (nothing to inject:
        guests take DHCP) and 403 for users; an action this cloud does not
        offer is 501, and on a deleted server 404 in Nova's dialect."""
        s = self.stack
        sid = await self._create()
        _, root_token = await s.admin()
        act = f"{self.v21}/servers/{sid}/action"
        code, _, _ = await s.call("POST", act, root_token, {"injectNetworkInfo": None})
        self.assertEqual(code, 202)
        code, _, _ = await s.call("POST", act, self.token, {"injectNetworkInfo": None})
        self.assertEqual(code, 403)
        code, _, _ = await s.call("POST", act, self.token, {"changePassword": {
            "adminPass": "x"}})
        self.assertEqual(code, 501)
        await s.call("DELETE", f"{self.v21}/servers/{sid}", self.token)
        await s.follow((await s.server(int(sid))).task_job_id)
        for action in ({"rebuild": {"imageRef": "x"}}, {"changePassword": {"adminPass": "x"}}):
            code, _, _ = await s.call("POST", act, self.token, action)
            self.assertEqual(code, 404, action)
