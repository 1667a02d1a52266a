"""Nova's microversions 2.1 to 2.15 on the compute API's Nova dialect
(``/compute/v2.1``): negotiation (the headers, ``latest``, 400 and 406),
and what each version changes that snfd serves: keypair types and codes
(2.2), administrators' extended server attributes (2.3), the ``ip6``
filter (2.5), remote consoles (2.6, 2.8), ``locked`` (2.9), other users'
keypairs for administrators (2.10), forced-down services (2.11), server
groups' project and user (2.13), evacuate without ``onSharedStorage``
(2.14) and the soft server group policies (2.15)."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from snfd.cyclades import store
from snfd.testing.compute import compute_stack
from tests.cyclades.test_compute_api import PUBLIC_KEY


def at(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


class MicroversionTests(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        self.root, self.root_token = await self.stack.admin()
        self.v21 = f"{self.stack.url}/compute/v2.1"

    async def call(self, method: str, path: str, version: str | None = None,
                   body: Any = None, token: str | None = None) -> tuple[int, Any, Any]:
        return await self.stack.call(method, self.v21 + path, token or self.token, body,
                                     headers=at(version) if version else None)

    async def server(self, **fields: Any) -> Any:
        s = self.stack
        return await s.db.run("t", store.insert_server_txn, self.alice, self.alice, "web one",
                              s.flavors["small"].id, s.image.id, backend_id=s.backend.id,
                              backendjobid=1, backendopcode="OP_INSTANCE_CREATE",
                              backendjobstatus="success", operstate="STARTED", **fields)

    async def test_negotiation(self):
        code, body, headers = await self.call("GET", "/servers")
        self.assertEqual(headers.getRawHeaders("openstack-api-version"), ["compute 2.1"])
        code, body, headers = await self.call("GET", "/servers", "2.9")
        self.assertEqual((code, headers.getRawHeaders("openstack-api-version")),
                         (200, ["compute 2.9"]))
        self.assertEqual(headers.getRawHeaders("x-openstack-nova-api-version"), ["2.9"])
        code, body, headers = await self.call("GET", "/servers", "latest")
        self.assertEqual(headers.getRawHeaders("openstack-api-version"), ["compute 2.66"])
        code, body, _ = await self.stack.call(
            "GET", self.v21 + "/servers", self.token,
            headers={"X-OpenStack-Nova-API-Version": "2.12"})
        self.assertEqual(code, 200)
        code, body, _ = await self.call("GET", "/servers", "2.67")
        self.assertEqual(code, 406, body)
        self.assertIn("maximum is 2.66", body["notAcceptable"]["message"])
        code, body, _ = await self.call("GET", "/servers", "2.x")
        self.assertEqual(code, 400, body)
        code, body, _ = await self.stack.call("GET", f"{self.stack.url}/compute/v2.1/",
                                              self.token)
        self.assertEqual((body["version"]["min_version"], body["version"]["version"]),
                         ("2.1", "2.66"))
        # Synnefo's dialect stays at 2.1 whatever is asked.
        code, body, headers = await self.stack.call(
            "GET", "/servers/detail", self.token, headers=at("2.40"))
        self.assertEqual((code, headers.getRawHeaders("openstack-api-version")),
                         (200, ["compute 2.1"]))

    async def test_keypairs(self):
        """2.2: a type (ssh, x509; generated or uploaded), 201 on create and
        204 on delete; 2.1 refuses a type.  2.10: an administrator's
        ``user_id``; anyone else's is 403."""
        code, body, _ = await self.call("POST", "/os-keypairs", "2.1",
                                        {"keypair": {"name": "k0", "type": "ssh"}})
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", "/os-keypairs", "2.2",
                                        {"keypair": {"name": "k1", "public_key": PUBLIC_KEY}})
        self.assertEqual((code, body["keypair"]["type"]), (201, "ssh"))
        code, body, _ = await self.call("POST", "/os-keypairs", "2.2",
                                        {"keypair": {"name": "cert", "type": "x509"}})
        self.assertEqual((code, body["keypair"]["type"]), (201, "x509"), body)
        cert = body["keypair"]["public_key"]
        self.assertTrue(cert.startswith("-----BEGIN CERTIFICATE-----"))
        self.assertIn("BEGIN RSA PRIVATE KEY", body["keypair"]["private_key"])
        self.assertEqual(len(body["keypair"]["fingerprint"].split(":")), 20)
        code, body, _ = await self.call("POST", "/os-keypairs", "2.2", {"keypair": {
            "name": "cert2", "type": "x509", "public_key": cert}})
        self.assertEqual((code, body["keypair"]["type"]), (201, "x509"), body)
        code, body, _ = await self.call("POST", "/os-keypairs", "2.2", {"keypair": {
            "name": "bad", "type": "x509", "public_key": PUBLIC_KEY}})
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("GET", "/os-keypairs", "2.2")
        self.assertEqual({k["keypair"]["name"]: k["keypair"]["type"] for k in body["keypairs"]},
                         {"k1": "ssh", "cert": "x509", "cert2": "x509"})
        code, body, _ = await self.call("GET", "/os-keypairs/cert", "2.2")
        self.assertEqual(body["keypair"]["type"], "x509")
        code, body, _ = await self.call("GET", "/os-keypairs/cert", "2.1")
        self.assertNotIn("type", body["keypair"])
        code, _, _ = await self.call("DELETE", "/os-keypairs/cert2", "2.2")
        self.assertEqual(code, 204)
        code, _, _ = await self.call("DELETE", "/os-keypairs/k1", "2.1")
        self.assertEqual(code, 202)
        # 2.10: an administrator acts on Alice's keypairs.
        code, body, _ = await self.call("POST", "/os-keypairs", "2.10", {"keypair": {
            "name": "given", "user_id": self.alice}}, self.root_token)
        self.assertEqual((code, body["keypair"]["user_id"]), (201, self.alice), body)
        code, body, _ = await self.call("GET", f"/os-keypairs?user_id={self.alice}", "2.10",
                                        token=self.root_token)
        self.assertEqual({k["keypair"]["name"] for k in body["keypairs"]}, {"cert", "given"})
        code, body, _ = await self.call("GET", "/os-keypairs/given", "2.2")
        self.assertEqual(code, 200, body)
        code, body, _ = await self.call("GET", f"/os-keypairs?user_id={self.root}", "2.10")
        self.assertEqual(code, 403, body)
        code, _, _ = await self.call("DELETE", f"/os-keypairs/given?user_id={self.alice}",
                                     "2.10", token=self.root_token)
        self.assertEqual(code, 204)

    async def test_servers(self):
        """2.3: administrators see the extended attributes; 2.9: ``locked``
        in a server's detail and its rename's answer; 2.5: ``ip6`` filters
        for users too."""
        server = await self.server()
        sid = str(server.id)
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.3", token=self.root_token)
        shown = body["server"]
        self.assertEqual((shown["OS-EXT-SRV-ATTR:hostname"],
                          shown["OS-EXT-SRV-ATTR:launch_index"]), ("web-one", 0))
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.2", token=self.root_token)
        self.assertNotIn("OS-EXT-SRV-ATTR:hostname", body["server"])
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.15")
        self.assertNotIn("OS-EXT-SRV-ATTR:hostname", body["server"])
        self.assertIs(body["server"]["locked"], False)
        code, body, _ = await self.call("GET", f"/servers/{sid}", "2.8")
        self.assertNotIn("locked", body["server"])
        code, _, _ = await self.call("POST", f"/servers/{sid}/action", "2.9", {"lock": None})
        self.assertEqual(code, 202)
        code, body, _ = await self.call("GET", "/servers/detail", "2.9")
        self.assertEqual([s["locked"] for s in body["servers"]], [True])
        code, body, _ = await self.call("PUT", f"/servers/{sid}", "2.9",
                                        {"server": {"name": "web two"}},
                                        token=self.root_token)
        self.assertEqual((code, body["server"]["locked"]), (200, True), body)
        # ip6: ignored for users before 2.5.
        code, body, _ = await self.call("GET", "/servers?ip6=2001", "2.4")
        self.assertEqual(len(body["servers"]), 1)
        code, body, _ = await self.call("GET", "/servers?ip6=2001", "2.5")
        self.assertEqual(body["servers"], [])

    async def test_remote_consoles(self):
        sid = str((await self.server()).id)
        path = f"/servers/{sid}/remote-consoles"
        vnc = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
        code, _, _ = await self.call("POST", path, "2.5", vnc)
        self.assertEqual(code, 404)
        code, body, _ = await self.call("POST", path, "2.6", vnc)
        self.assertEqual(code, 501, body)
        mks = {"remote_console": {"protocol": "mks", "type": "webmks"}}
        code, _, _ = await self.call("POST", path, "2.6", mks)
        self.assertEqual(code, 400)
        code, _, _ = await self.call("POST", path, "2.8", mks)
        self.assertEqual(code, 501)

    async def test_server_groups(self):
        """2.13 shows a group's project and user; 2.15 takes the soft
        policies (400 before)."""
        soft = {"server_group": {"name": "g", "policies": ["soft-anti-affinity"]}}
        code, body, _ = await self.call("POST", "/os-server-groups", "2.14", soft)
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", "/os-server-groups", "2.15", soft)
        self.assertEqual(code, 200, body)
        group = body["server_group"]
        self.assertEqual((group["policies"], group["project_id"], group["user_id"]),
                         (["soft-anti-affinity"], self.alice, self.alice))
        code, body, _ = await self.call("GET", f"/os-server-groups/{group['id']}", "2.12")
        self.assertNotIn("project_id", body["server_group"])

    async def test_services_and_evacuate(self):
        """2.11: an administrator forces a backend's compute service down
        (offline: no new server goes there) and up again; 2.14: evacuate
        refuses ``onSharedStorage``."""
        host = self.stack.backend.clustername
        down = {"host": host, "binary": "nova-compute", "forced_down": True}
        code, _, _ = await self.call("PUT", "/os-services/force-down", "2.10", down,
                                     self.root_token)
        self.assertEqual(code, 404)
        code, body, _ = await self.call("PUT", "/os-services/force-down", "2.11", down,
                                        self.root_token)
        self.assertEqual((code, body), (200, {"service": down}))
        code, body, _ = await self.call("GET", "/os-services?binary=nova-compute", "2.11",
                                        token=self.root_token)
        self.assertEqual([(s["forced_down"], s["state"]) for s in body["services"]],
                         [(True, "down")])
        self.assertTrue((await self.stack.db.run("t", store.backend_txn,
                                                 self.stack.backend.id)).offline)
        code, body, _ = await self.call("PUT", "/os-services/force-down", "2.11",
                                        {**down, "forced_down": False}, self.root_token)
        self.assertEqual(code, 200)
        code, body, _ = await self.call("GET", "/os-services?binary=nova-compute", "2.10",
                                        token=self.root_token)
        self.assertNotIn("forced_down", body["services"][0])
        self.assertEqual(body["services"][0]["state"], "up")
        sid = str((await self.server()).id)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", "2.14",
                                        {"evacuate": {"onSharedStorage": False}},
                                        self.root_token)
        self.assertEqual(code, 400, body)
