"""Nova's microversions 2.16 to 2.66 for servers, limits, quotas,
keypairs and the removed proxies on the compute API's Nova dialect
(``/compute/v2.1``): the exact keys each version shows (tempest's
``api_schema/response/compute/v2_NN`` schemas forbid others), the keys
each version takes or refuses on create, update and rebuild, and what
later versions no longer serve.  The admin APIs' versions are in
``test_microversions_admin``."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

from twisted.trial import unittest

from snfd.cyclades import store
from snfd.testing.compute import compute_stack
from tests.cyclades.test_compute_api import PUBLIC_KEY
from tests.cyclades.test_nova_dialect import SERVER_DETAIL_KEYS, SERVER_SHORT_KEYS

UTC = datetime.UTC
#: What a server detail gains by 2.66 (2.9 locked, 2.19 description, 2.26
#: tags, 2.63 trusted_image_certificates; 2.16's host_status is admins').
LATER_DETAIL_KEYS = {"locked", "description", "tags", "trusted_image_certificates"}


def at(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


class LaterServerTests(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        self.root, self.root_token = await self.stack.admin()
        self.v21 = f"{self.stack.url}/compute/v2.1"

    async def call(self, method: str, path: str, version: str, body: Any = None,
                   token: str | None = None) -> tuple[int, Any, Any]:
        return await self.stack.call(method, self.v21 + path, token or self.token, body,
                                     headers=at(version))

    async def create(self, version: str = "2.66", **more: Any) -> tuple[int, Any]:
        s = self.stack
        body = {"name": "vm", "flavorRef": str(s.flavors["small"].id), "imageRef": s.image.id}
        if version >= "2.37" and len(version) == 4:
            body["networks"] = "auto"
        body.update(more)
        code, answer, _ = await self.call("POST", "/servers", version, {"server": body})
        if code == 202:
            await s.follow((await s.server(int(answer["server"]["id"]))).backendjobid)
        return code, answer

    async def test_server_shapes_by_version(self):
        """2.19 description, 2.26 tags, 2.47 the flavor's values, 2.63
        trusted_image_certificates (null): in the detail, the listing's
        detail, a rename's and a rebuild's answer; 2.16 host_status for
        administrators only."""
        code, made = await self.create(description="my web server", tags=["web", "prod"])
        self.assertEqual(code, 202, made)
        sid = made["server"]["id"]
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.66")
        shown = body["server"]
        self.assertLessEqual(set(shown), SERVER_DETAIL_KEYS | LATER_DETAIL_KEYS)
        self.assertLessEqual(LATER_DETAIL_KEYS, set(shown))
        small = self.stack.flavors["small"]
        self.assertEqual((shown["description"], shown["tags"],
                          shown["trusted_image_certificates"]),
                         ("my web server", ["web", "prod"], None))
        self.assertEqual(shown["flavor"], {
            "original_name": small.name, "vcpus": small.cpu, "ram": small.ram,
            "disk": small.disk, "ephemeral": 0, "swap": 0, "extra_specs": {}})
        self.assertNotIn("host_status", shown)
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.46")
        self.assertEqual(set(body["server"]["flavor"]), {"id", "links"})
        self.assertNotIn("trusted_image_certificates", body["server"])
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.25")
        self.assertNotIn("tags", body["server"])
        self.assertEqual(body["server"]["description"], "my web server")
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.18")
        self.assertNotIn("description", body["server"])
        # Administrators see the host's state from 2.16.
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.16", token=self.root_token)
        self.assertEqual(body["server"]["host_status"], "UP")
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.15", token=self.root_token)
        self.assertNotIn("host_status", body["server"])
        # The listing's detail has the same shape.
        code, body, _ = await self.call("GET", "/servers/detail", "2.66")
        self.assertEqual(body["servers"][0]["description"], "my web server")
        self.assertIn("trusted_image_certificates", body["servers"][0])
        # A rename (update) changes and answers the description (2.19).
        code, body, _ = await self.call("PUT", f"/servers/{sid}", "2.66",
                                        {"server": {"description": None}})
        self.assertEqual(code, 200, body)
        self.assertLessEqual(set(body["server"]),
                             SERVER_SHORT_KEYS | LATER_DETAIL_KEYS)
        self.assertIsNone(body["server"]["description"])
        self.assertEqual(body["server"]["tags"], ["web", "prod"])
        # An update that changes nothing answers the server (Nova's).
        code, body, _ = await self.call("PUT", f"/servers/{sid}", "2.66", {"server": {}})
        self.assertEqual((code, body["server"]["id"]), (200, sid), body)
        # Tags (2.26): a tag's PUT names its URL.
        code, body, headers = await self.call("PUT", f"/servers/{sid}/tags/blue", "2.26")
        self.assertEqual(code, 201, body)
        self.assertTrue(headers.getRawHeaders("location")[0].endswith(
            f"/compute/v2.1/servers/{sid}/tags/blue"))
        code, body, _ = await self.call("PUT", f"/servers/{sid}", "2.18",
                                        {"server": {"description": "x"}})
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("PUT", f"/servers/{sid}", "2.19",
                                        {"server": {"description": "x" * 256}})
        self.assertEqual(code, 400, body)

    async def test_rebuild_by_version(self):
        """2.19 takes a description, 2.54 a key_name (null: no key) and
        answers it, 2.57 user_data (answered null: not kept) and refuses
        personality; earlier versions refuse the later keys."""
        s = self.stack
        code, body, _ = await self.call("POST", "/os-keypairs", "2.2", {
            "keypair": {"name": "k1", "public_key": PUBLIC_KEY}})
        self.assertEqual(code, 201, body)
        code, made = await self.create()
        sid = made["server"]["id"]
        rebuild = {"imageRef": s.image.id, "description": "again", "key_name": "k1",
                   "user_data": "ZWNobyBoaQ=="}
        for version, refused in (("2.18", "description"), ("2.53", "key_name"),
                                 ("2.56", "user_data")):
            code, body, _ = await self.call("POST", f"/servers/{sid}/action", version,
                                            {"rebuild": rebuild})
            self.assertEqual(code, 400, (version, body))
            self.assertIn(refused, body["badRequest"]["message"])
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.57", {
            "rebuild": {"imageRef": s.image.id, "personality": []}})
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.57", {
            "rebuild": {**rebuild, "key_name": "missing"}})
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.57",
                                        {"rebuild": rebuild})
        self.assertEqual(code, 202, body)
        shown = body["server"]
        self.assertEqual((shown["description"], shown["key_name"], shown["user_data"]),
                         ("again", "k1", None))
        self.assertIn("adminPass", shown)
        server = await s.server(int(sid))
        self.assertEqual((server.key_names, server.description), (("k1",), "again"))
        await s.follow(server.task_job_id)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.54", {
            "rebuild": {"imageRef": s.image.id, "key_name": None}})
        self.assertEqual((code, body["server"]["key_name"]), (202, None), body)
        self.assertNotIn("user_data", body["server"])

    async def test_create_rules_by_version(self):
        """2.37 requires ``networks`` (``"auto"``: the defaults, ``"none"``:
        no NIC), which earlier versions refuse as text; ``tags`` from 2.52,
        ``description`` from 2.19, no ``personality`` from 2.57; device
        tags and trusted certificates are refused with the reason."""
        code, body = await self.create("2.37", networks=None)
        self.assertEqual(code, 400, body)
        self.assertIn("networks", body["badRequest"]["message"])
        code, body = await self.create("2.36", networks="auto")
        self.assertEqual(code, 400, body)
        code, body = await self.create("2.37", networks="none")
        self.assertEqual(code, 202, body)
        server = await self.stack.server(int(body["server"]["id"]))
        self.assertEqual(server.ports, ())
        code, body = await self.create("2.51", tags=["a"])
        self.assertEqual(code, 400, body)
        code, body = await self.create("2.18", description="d")
        self.assertEqual(code, 400, body)
        code, body = await self.create("2.57", personality=[{"path": "/etc/motd",
                                                             "contents": "aGk="}])
        self.assertEqual(code, 400, body)
        code, body = await self.create("2.66", networks=[{"uuid": "1", "tag": "nic1"}])
        self.assertEqual(code, 400, body)
        self.assertIn("Device tags", body["badRequest"]["message"])
        code, body = await self.create("2.63", trusted_image_certificates=["abc"])
        self.assertEqual(code, 400, body)
        self.assertIn("signature", body["badRequest"]["message"])

    async def test_listing_filters(self):
        """2.66's ``changes-before`` (deleted servers included, as with
        ``changes-since``; earlier than ``changes-since`` is 400); from 2.38
        an unknown ``status`` is 400."""
        s = self.stack
        old = await s.db.run("t", store.insert_server_txn, self.alice, self.alice, "old",
                             s.flavors["small"].id, s.image.id, backend_id=s.backend.id,
                             operstate="STARTED")
        await s.db.run("t", lambda txn: txn.execute(
            "UPDATE cyclades_servers SET updated = now() - interval '1 hour'"
            " WHERE id = %s", (old.id,)))
        code, made = await self.create()
        new = made["server"]["id"]
        cut = quote((datetime.datetime.now(UTC) - datetime.timedelta(minutes=30)).isoformat())
        code, body, _ = await self.call("GET", f"/servers?changes-before={cut}", "2.66")
        self.assertEqual((code, [x["id"] for x in body["servers"]]), (200, [str(old.id)]))
        code, body, _ = await self.call("GET", f"/servers?changes-since={cut}", "2.66")
        self.assertEqual([x["id"] for x in body["servers"]], [new])
        code, body, _ = await self.call("GET", f"/servers?changes-before={cut}", "2.65")
        self.assertEqual(len(body["servers"]), 2)   # not a filter before 2.66
        later = quote(datetime.datetime.now(UTC).isoformat())
        code, body, _ = await self.call(
            "GET", f"/servers?changes-since={later}&changes-before={cut}", "2.66")
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("GET", "/servers?status=WHATEVER", "2.38")
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("GET", "/servers?status=WHATEVER", "2.37")
        self.assertEqual((code, body["servers"]), (200, []))
        code, body, _ = await self.call("GET", "/servers?status=SHELVED", "2.38")
        self.assertEqual((code, body["servers"]), (200, []))

    async def test_removed_proxies_and_actions(self):
        """Images (2.36) and their metadata (2.39), networks, security groups
        and floating IPs (2.36) are the other services' only; the floating
        IP actions are gone from 2.44."""
        image = self.stack.image.id
        for path, last in (("/images", "2.35"), (f"/images/{image}", "2.35"),
                           (f"/images/{image}/metadata", "2.38"),
                           ("/os-security-groups", "2.35"), ("/os-floating-ips", "2.35"),
                           ("/os-networks", "2.35"), ("/os-floating-ip-pools", "2.35")):
            code, body, _ = await self.call("GET", path, last)
            self.assertEqual(code, 200, (path, body))
            gone = f"2.{int(last.split('.')[1]) + 1}"
            code, body, _ = await self.call("GET", path, gone)
            self.assertEqual(code, 404, (path, body))
        code, made = await self.create()
        sid = made["server"]["id"]
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.44",
                                        {"addFloatingIp": {"address": "192.0.2.7"}})
        self.assertEqual(code, 404, body)

    async def test_limits_and_quotas_by_version(self):
        """2.36 drops the network service's limits and quotas, 2.39 the
        image metadata limit, 2.57 the personality ones; quota classes
        show server groups from 2.50."""
        network = {"maxSecurityGroups", "maxSecurityGroupRules", "maxTotalFloatingIps",
                   "totalFloatingIpsUsed", "totalSecurityGroupsUsed"}
        _, body, _ = await self.call("GET", "/limits", "2.35")
        self.assertLessEqual(network | {"maxImageMeta", "maxPersonality"},
                             set(body["limits"]["absolute"]))
        _, body, _ = await self.call("GET", "/limits", "2.36")
        self.assertFalse(network & set(body["limits"]["absolute"]))
        self.assertIn("maxImageMeta", body["limits"]["absolute"])
        _, body, _ = await self.call("GET", "/limits", "2.57")
        self.assertFalse({"maxPersonality", "maxPersonalitySize", "maxImageMeta"}
                         & set(body["limits"]["absolute"]))
        self.assertIn("maxServerMeta", body["limits"]["absolute"])
        _, body, _ = await self.call("GET", f"/os-quota-sets/{self.alice}", "2.35")
        self.assertIn("floating_ips", body["quota_set"])
        _, body, _ = await self.call("GET", f"/os-quota-sets/{self.alice}/detail", "2.57")
        self.assertFalse({"floating_ips", "fixed_ips", "security_groups",
                          "security_group_rules", "injected_files",
                          "injected_file_content_bytes"} & set(body["quota_set"]))
        self.assertIn("server_groups", body["quota_set"])
        _, body, _ = await self.call("GET", "/os-quota-class-sets/default", "2.49",
                                     token=self.root_token)
        self.assertIn("fixed_ips", body["quota_class_set"])
        self.assertNotIn("server_groups", body["quota_class_set"])
        _, body, _ = await self.call("GET", "/os-quota-class-sets/default", "2.50",
                                     token=self.root_token)
        self.assertIn("server_groups", body["quota_class_set"])
        self.assertNotIn("fixed_ips", body["quota_class_set"])

    async def test_keypair_paging(self):
        """2.35 pages keypairs by name (``limit``, ``marker``) with a link
        to the next page."""
        for name in ("c", "a", "b"):
            code, body, _ = await self.call("POST", "/os-keypairs", "2.35", {
                "keypair": {"name": name, "public_key": PUBLIC_KEY}})
            self.assertEqual(code, 201, body)
        _, body, _ = await self.call("GET", "/os-keypairs?limit=2", "2.35")
        self.assertEqual([k["keypair"]["name"] for k in body["keypairs"]], ["a", "b"])
        self.assertIn("marker=b", body["keypairs_links"][0]["href"])
        _, body, _ = await self.call("GET", "/os-keypairs?limit=2&marker=b", "2.35")
        self.assertEqual([k["keypair"]["name"] for k in body["keypairs"]], ["c"])
        self.assertNotIn("keypairs_links", body)
        _, body, _ = await self.call("GET", "/os-keypairs?limit=2", "2.34")
        self.assertEqual(len(body["keypairs"]), 3)

    async def test_crash_dump_and_diagnostics(self):
        """2.17's trigger_crash_dump: 409 unless running, else 400 (Ganeti
        cannot send an NMI); unknown before 2.17.  2.48's diagnostics in
        Nova's common shape."""
        code, made = await self.create()
        sid = made["server"]["id"]
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.16",
                                        {"trigger_crash_dump": None})
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.17",
                                        {"trigger_crash_dump": None})
        self.assertEqual(code, 400, body)
        self.assertIn("NMI", body["badRequest"]["message"])
        code, body, _ = await self.call("GET", f"/servers/{sid}/diagnostics", "2.48",
                                        token=self.root_token)
        self.assertEqual(code, 200, body)
        self.assertEqual(set(body), {
            "state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive",
            "num_cpus", "num_nics", "num_disks", "memory_details", "cpu_details",
            "nic_details", "disk_details"})
        self.assertEqual((body["state"], body["memory_details"]["maximum"]),
                         ("running", self.stack.flavors["small"].ram))
        await self.call("POST", f"/servers/{sid}/action", "2.17", {"os-stop": None})
        await self.stack.follow((await self.stack.server(int(sid))).task_job_id)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.17",
                                        {"trigger_crash_dump": None})
        self.assertEqual(code, 409, body)


class ImageProxyTests(unittest.TestCase):
    """Nova's image proxy (to 2.35) over the image service: its listing
    filters and paging, its delete, and Nova's refusal of a flavor smaller
    than an image's ``min_ram``/``min_disk``."""

    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        self.v21 = f"{self.stack.url}/compute/v2.1"

    async def glance(self, method: str, path: str, body: Any = None,
                     raw: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        code, reply, _ = await self.stack.call(method, f"{self.stack.url}/image/v2{path}",
                                               self.token, body, raw=raw, headers=headers)
        self.assertIn(code, (200, 201, 204), reply)
        return reply

    async def image(self, name: str, **more: Any) -> str:
        made = await self.glance("POST", "/images", {
            "name": name, "disk_format": "raw", "container_format": "bare",
            "visibility": "private", **more})
        await self.glance("PUT", f"/images/{made['id']}/file", raw=b"*" * 1024,
                          headers={"Content-Type": "application/octet-stream"})
        return str(made["id"])

    async def test_filters_delete_and_needs(self):
        first = await self.image("first")
        needy = await self.image("needy", min_ram=1 << 20, min_disk=1 << 10)
        code, body, _ = await self.stack.call("GET", f"{self.v21}/images?name=first",
                                              self.token)
        self.assertEqual([i["id"] for i in body["images"]], [first])
        code, body, _ = await self.stack.call("GET", f"{self.v21}/images/detail?minRam=1000000",
                                              self.token)
        self.assertEqual([i["id"] for i in body["images"]], [needy])
        code, body, _ = await self.stack.call("GET", f"{self.v21}/images?limit=1", self.token)
        self.assertEqual(len(body["images"]), 1)
        marker = body["images"][0]["id"]
        code, body, _ = await self.stack.call("GET", f"{self.v21}/images?marker={marker}",
                                              self.token)
        self.assertNotIn(marker, [i["id"] for i in body["images"]])
        code, body, _ = await self.stack.call("GET", f"{self.v21}/images?status=ACTIVE",
                                              self.token)
        self.assertLessEqual({first, needy}, {i["id"] for i in body["images"]})
        for since, wanted in (("2000-01-01T00:00:00Z", True), ("2999-01-01T00:00:00Z", False)):
            code, body, _ = await self.stack.call(
                "GET", f"{self.v21}/images?changes-since={since}", self.token)
            self.assertEqual(first in {i["id"] for i in body["images"]}, wanted, since)
        # A flavor smaller than the image needs is 400, as Nova's.
        small = self.stack.flavors["small"]
        code, body, _ = await self.stack.call("POST", f"{self.v21}/servers", self.token, {
            "server": {"name": "vm", "flavorRef": small.flavorid, "imageRef": needy}})
        self.assertEqual(code, 400, body)
        self.assertIn("memory is too small", body["badRequest"]["message"])
        code, body, _ = await self.stack.call("DELETE", f"{self.v21}/images/{first}",
                                              self.token)
        self.assertEqual(code, 204, body)
        code, body, _ = await self.stack.call("GET", f"{self.v21}/images/{first}", self.token)
        self.assertEqual(code, 404, body)
