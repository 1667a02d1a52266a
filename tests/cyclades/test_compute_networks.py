"""Nova's network proxies on the compute API (``network_proxy_api``) and
the network parts of a server create, against a real node on the
simulated Ganeti: floating IPs (``os-floating-ips``, pools, the
``addFloatingIp``/``removeFloatingIp`` actions) with their quota, a
server's interfaces (``os-interface``), ``os-tenant-networks``, and
``networks``/``security_groups`` on create."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.trial import unittest

from snfd.testing.compute import compute_stack

FIP_KEYS = {"id", "pool", "instance_id", "ip", "fixed_ip"}
IFACE_KEYS = {"port_state", "fixed_ips", "port_id", "net_id", "mac_addr"}


class ComputeNetworkCase(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        self.bob, self.bob_token = await self.stack.user("bob")

    async def nova(self, method: str, path: str, token: str | None = None, body: Any = None,
                   dialect: str = "v2.1") -> tuple[int, Any]:
        server = body.get("server") if isinstance(body, dict) else None
        # Nova's words "auto" and "none" for networks are 2.37's.
        headers = ({"OpenStack-API-Version": "compute 2.37"}
                   if isinstance(server, dict) and isinstance(server.get("networks"), str)
                   else None)
        code, reply, _ = await self.stack.call(
            method, f"{self.stack.url}/compute/{dialect}{path}", token or self.token, body,
            headers=headers)
        return code, reply

    async def network(self, name: str, cidr: str | None = "10.0.0.0/24",
                      token: str | None = None) -> str:
        """A private network (with an IPv4 subnet ``cidr``); its id."""
        s = self.stack
        code, reply, _ = await s.call("POST", f"{s.network}/networks", token or self.token,
                                      {"network": {"name": name}})
        self.assertEqual(code, 201, reply)
        network_id: str = reply["network"]["id"]
        if cidr is not None:
            code, reply, _ = await s.call("POST", f"{s.network}/subnets", token or self.token,
                                          {"subnet": {"network_id": network_id, "cidr": cidr,
                                                      "ip_version": 4}})
            self.assertEqual(code, 201, reply)
        return network_id

    async def public_network(self, cidr: str = "192.0.2.0/28", name: str = "public") -> int:
        """An administrator's public network and floating IP pool; its id."""
        networks = self.stack.service.networks
        network = await networks.admin_create_network(
            name=name, flavor="CUSTOM", public=True, floating_ip_pool=True)
        await networks.create_subnet("admin", network.id, {"cidr": cidr, "ip_version": 4},
                                     admin=True)
        return network.id

    async def server(self, networks: Any, token: str | None = None,
                     dialect: str = "v2.1", **more: Any) -> str:
        """A server on ``networks``, built (its jobs followed); its id."""
        s = self.stack
        code, reply = await self.nova("POST", "/servers", token, {"server": {
            "name": "vm", "imageRef": s.image.id, "flavorRef": s.flavors["small"].flavorid,
            "networks": networks, **more}}, dialect)
        self.assertEqual(code, 202, reply)
        await s.follow_all()
        return str(reply["server"]["id"])

    async def fip(self, token: str | None = None, **body: Any) -> dict[str, Any]:
        code, reply = await self.nova("POST", "/os-floating-ips", token, body)
        self.assertEqual(code, 200, reply)
        self.assertEqual(set(reply), {"floating_ip"})
        self.assertEqual(set(reply["floating_ip"]), FIP_KEYS)
        return reply["floating_ip"]  # type: ignore[no-any-return]

    async def action(self, server_id: str, body: Any, token: str | None = None,
                     dialect: str = "v2.1") -> tuple[int, Any]:
        return await self.nova("POST", f"/servers/{server_id}/action", token, body, dialect)


class FloatingIPTests(ComputeNetworkCase):
    async def test_allocate_show_list_release(self):
        """A floating IP from a pool named by name: Nova's keys only,
        charged to cyclades.floating_ip; shown and listed alike, nobody
        else's; released with 202 (the quota given back), then 404."""
        s = self.stack
        await self.public_network()
        ip = await self.fip(pool="public")
        self.assertEqual(ip, {"id": ip["id"], "pool": "public", "ip": "192.0.2.2",
                              "fixed_ip": None, "instance_id": None})
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 1)
        code, reply = await self.nova("GET", f"/os-floating-ips/{ip['id']}")
        self.assertEqual((code, reply), (200, {"floating_ip": ip}))
        code, reply = await self.nova("GET", "/os-floating-ips")
        self.assertEqual((code, reply), (200, {"floating_ips": [ip]}))
        code, reply = await self.nova("GET", "/os-floating-ips", None, None, "v2.0")
        self.assertEqual((code, reply), (200, {"floating_ips": [ip]}))
        for method in ("GET", "DELETE"):
            code, _ = await self.nova(method, f"/os-floating-ips/{ip['id']}", self.bob_token)
            self.assertEqual(code, 404)
        code, reply = await self.nova("GET", "/os-floating-ips", self.bob_token)
        self.assertEqual(reply, {"floating_ips": []})
        code, _ = await self.nova("DELETE", f"/os-floating-ips/{ip['id']}")
        self.assertEqual(code, 202)
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 0)
        for method in ("GET", "DELETE"):
            code, _ = await self.nova(method, f"/os-floating-ips/{ip['id']}")
            self.assertEqual(code, 404)
        code, _ = await self.nova("GET", "/os-floating-ips/6b5d1c6e-2f4f-4b8e-9f6d-3c1a2b3c4d5e")
        self.assertEqual(code, 404)

    async def test_pools(self):
        """Pools are listed by name; a pool is named by name or id, or not
        at all (any pool); an unknown pool is 404."""
        public = await self.public_network()
        code, reply = await self.nova("GET", "/os-floating-ip-pools")
        self.assertEqual((code, reply), (200, {"floating_ip_pools": [{"name": "public"}]}))
        self.assertEqual((await self.fip(pool=str(public)))["pool"], "public")
        code, reply, _ = await self.stack.call(
            "POST", f"{self.stack.url}/compute/v2.1/os-floating-ips", self.token)
        self.assertEqual(code, 200, reply)
        self.assertEqual(reply["floating_ip"]["ip"], "192.0.2.3")
        code, reply = await self.nova("POST", "/os-floating-ips", None, {"pool": "nope"})
        self.assertEqual(code, 404, reply)
        code, reply = await self.nova("POST", "/os-floating-ips", None, {"pool": 7})
        self.assertEqual(code, 400, reply)
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.floating_ip"], 2)

    async def test_quota_and_exhaustion(self):
        """Over the floating IP quota is 403 and an exhausted pool 404, as
        Nova answers; neither charges anything."""
        s = self.stack
        await self.public_network("192.0.2.0/30")        # one address: .2
        carol, token = await s.user("carol", floating_ip=0)
        code, reply = await self.nova("POST", "/os-floating-ips", token, {"pool": "public"})
        self.assertEqual(code, 403, reply)
        self.assertEqual((await s.usage(carol))["cyclades.floating_ip"], 0)
        await self.fip(pool="public")
        code, reply = await self.nova("POST", "/os-floating-ips", None, {"pool": "public"})
        self.assertEqual(code, 404, reply)
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 1)


class FloatingIPActionTests(ComputeNetworkCase):
    async def setUp(self) -> None:
        await super().setUp()
        await self.public_network()
        self.private = await self.network("private")
        self.server_id = await self.server([{"uuid": self.private}])

    async def instance_of(self, ip: dict[str, Any]) -> Any:
        code, reply = await self.nova("GET", f"/os-floating-ips/{ip['id']}")
        self.assertEqual(code, 200, reply)
        return reply["floating_ip"]["instance_id"]

    async def test_associate_and_disassociate(self):
        """addFloatingIp gives the server a NIC with the address (the
        floating IP names the server at once, the address shows as
        floating on the pool's network); removeFloatingIp takes it away;
        a floating IP not on the server is 409 to remove."""
        s = self.stack
        ip = await self.fip(pool="public")
        code, reply = await self.action(self.server_id, {"addFloatingIp": {
            "address": ip["ip"]}})
        self.assertEqual(code, 202, reply)
        self.assertEqual(await self.instance_of(ip), self.server_id)
        await s.follow_all()
        code, reply = await self.nova("GET", f"/servers/{self.server_id}/ips")
        self.assertEqual(list(reply["addresses"]), ["private", "public"])
        self.assertEqual(reply["addresses"]["public"], [{"version": 4, "addr": ip["ip"]}])
        code, reply = await self.nova("GET", f"/servers/{self.server_id}")
        self.assertEqual([(a["addr"], a["OS-EXT-IPS:type"]) for a in
                          reply["server"]["addresses"]["public"]], [(ip["ip"], "floating")])
        code, reply = await self.nova("GET", f"/servers/{self.server_id}/os-interface")
        self.assertEqual(len(reply["interfaceAttachments"]), 2)
        code, reply = await self.action(self.server_id, {"addFloatingIp": {
            "address": ip["ip"]}})
        self.assertEqual(code, 202, reply)                  # already there: nothing to do
        mark = await s.follow_all()
        code, reply = await self.action(self.server_id, {"removeFloatingIp": {
            "address": ip["ip"]}})
        self.assertEqual(code, 202, reply)
        await s.follow_all(mark)
        self.assertIsNone(await self.instance_of(ip))
        code, reply = await self.nova("GET", f"/servers/{self.server_id}/ips")
        self.assertEqual(list(reply["addresses"]), ["private"])
        code, reply = await self.action(self.server_id, {"removeFloatingIp": {
            "address": ip["ip"]}})
        self.assertEqual(code, 409, reply)
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 1)
        code, _ = await self.nova("DELETE", f"/os-floating-ips/{ip['id']}")
        self.assertEqual(code, 202)
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 0)

    async def test_bad_requests(self):
        """An unknown address is 404, no address or not an address 400, a
        fixed_address that is not the server's 400, someone else's server
        or floating IP 404."""
        ip = await self.fip(pool="public")
        sid = self.server_id
        cases = [
            ({"addFloatingIp": {"address": "0.0.0.0"}}, None, 404),
            ({"removeFloatingIp": {"address": "0.0.0.0"}}, None, 404),
            ({"addFloatingIp": {"address": ""}}, None, 400),
            ({"addFloatingIp": {}}, None, 400),
            ({"removeFloatingIp": {"address": "x"}}, None, 400),
            ({"addFloatingIp": {"address": ip["ip"], "fixed_address": "10.9.9.9"}}, None, 400),
            ({"addFloatingIp": {"address": ip["ip"]}}, self.bob_token, 404),
        ]
        for body, token, expected in cases:
            code, reply = await self.action(sid, body, token)
            self.assertEqual(code, expected, (body, reply))
        bob_private = await self.network("bobs", token=self.bob_token)
        bob_server = await self.server([{"uuid": bob_private}], self.bob_token)
        code, reply = await self.action(bob_server, {"addFloatingIp": {"address": ip["ip"]}},
                                        self.bob_token)
        self.assertEqual(code, 404, reply)
        self.assertIsNone(await self.instance_of(ip))

    async def test_one_floating_ip_per_fixed_address_in_novas_dialect(self):
        """Nova's dialect: a server with one fixed address takes one
        floating IP (400 for a second); Synnefo's attaches the second as
        another NIC."""
        first = await self.fip(pool="public")
        second = await self.fip(pool="public")
        code, reply = await self.action(self.server_id, {"addFloatingIp": {
            "address": first["ip"], "fixed_address": "10.0.0.2"}})
        self.assertEqual(code, 202, reply)
        code, reply = await self.action(self.server_id, {"addFloatingIp": {
            "address": second["ip"]}})
        self.assertEqual(code, 400, reply)
        self.assertIsNone(await self.instance_of(second))
        code, reply = await self.action(self.server_id, {"addFloatingIp": {
            "address": second["ip"]}}, dialect="v2.0")
        self.assertEqual(code, 202, reply)
        self.assertEqual(await self.instance_of(second), self.server_id)

    async def test_move_to_another_server(self):
        """Associating a floating IP attached elsewhere moves it: it names
        the new server, and removing it from the old one is then 409.
        (While the network service still holds the address on the old
        server's port being removed, the move is 409 and a retry once
        Ganeti removed the NIC succeeds.)"""
        s = self.stack
        other = await self.server([{"uuid": self.private}])
        ip = await self.fip(pool="public")
        code, _ = await self.action(self.server_id, {"addFloatingIp": {"address": ip["ip"]}})
        self.assertEqual(code, 202)
        mark = await s.follow_all()
        code, reply = await self.action(other, {"addFloatingIp": {"address": ip["ip"]}})
        if code == 409:
            await s.follow_all(mark)
            code, reply = await self.action(other, {"addFloatingIp": {"address": ip["ip"]}})
        self.assertEqual(code, 202, reply)
        self.assertEqual(await self.instance_of(ip), other)
        code, reply = await self.action(self.server_id, {"removeFloatingIp": {
            "address": ip["ip"]}})
        self.assertEqual(code, 409, reply)

    async def test_release_an_attached_floating_ip(self):
        """Deleting an attached floating IP detaches it and releases it
        (202; the quota is given back).  (While the address is still held
        on the port being removed the delete is 409; again once Ganeti
        removed the NIC, it succeeds.)"""
        s = self.stack
        ip = await self.fip(pool="public")
        code, _ = await self.action(self.server_id, {"addFloatingIp": {"address": ip["ip"]}})
        self.assertEqual(code, 202)
        mark = await s.follow_all()
        code, reply = await self.nova("DELETE", f"/os-floating-ips/{ip['id']}")
        if code == 409:
            await s.follow_all(mark)
            code, reply = await self.nova("DELETE", f"/os-floating-ips/{ip['id']}")
        self.assertEqual(code, 202, reply)
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 0)
        code, _ = await self.nova("GET", f"/os-floating-ips/{ip['id']}")
        self.assertEqual(code, 404)


class CreateTests(ComputeNetworkCase):
    async def test_security_groups(self):
        """Groups named on create must be the project's (400 otherwise,
        even for a server without ports); names are ``{"name"}`` objects."""
        s = self.stack
        await self.server("auto", security_groups=[{"name": "default"}])
        for groups in ([{"name": "does_not_exist"}], [{"name": "default"}, {"name": "x"}],
                       "default", [{"id": "default"}]):
            for dialect in ("v2.1", "v2.0"):
                code, reply = await self.nova("POST", "/servers", None, {"server": {
                    "name": "vm", "imageRef": s.image.id,
                    "flavorRef": s.flavors["small"].flavorid if dialect == "v2.1"
                    else s.flavors["small"].id,
                    "security_groups": groups}}, dialect)
                self.assertEqual(code, 400, (groups, dialect, reply))
        self.assertEqual(len(await s.servers.of_user(self.alice)), 1)

    async def test_unusable_networks_and_ports(self):
        """A network or port the user may not use is 400 in Nova's dialect
        and 404 in Synnefo's; a port in use 409; nothing is created."""
        s = self.stack
        bobs = await self.network("bobs", token=self.bob_token)
        code, reply, _ = await s.call("POST", f"{s.network}/ports", self.bob_token,
                                      {"port": {"network_id": bobs}})
        bob_port = reply["port"]["id"]
        cases = [([{"uuid": bobs}], 400, 404), ([{"uuid": "999999"}], 400, 404),
                 ([{"port": bob_port}], 400, 404), ([{"uuid": "a-b-c"}], 400, 400)]
        for networks, nova, synnefo in cases:
            for dialect, expected, flavor in (("v2.1", nova, s.flavors["small"].flavorid),
                                              ("v2.0", synnefo, s.flavors["small"].id)):
                code, reply = await self.nova("POST", "/servers", None, {"server": {
                    "name": "vm", "imageRef": s.image.id, "flavorRef": flavor,
                    "networks": networks}}, dialect)
                self.assertEqual(code, expected, (networks, dialect, reply))
        mine = await self.network("mine")
        code, reply, _ = await s.call("POST", f"{s.network}/ports", self.token,
                                      {"port": {"network_id": mine}})
        port = reply["port"]["id"]
        await self.server([{"port": port}])
        code, reply = await self.nova("POST", "/servers", None, {"server": {
            "name": "vm", "imageRef": s.image.id, "flavorRef": s.flavors["small"].flavorid,
            "networks": [{"port": port}]}})
        self.assertEqual(code, 409, reply)
        self.assertEqual(len(await s.servers.of_user(self.alice)), 1)

    async def test_the_same_network_twice(self):
        """A server on [n1, n2, n1] gets three ports, in that order: its
        addresses are keyed by network name, n1's two in order."""
        n1 = await self.network("n1", "10.0.1.0/24")
        n2 = await self.network("n2", "10.0.2.0/24")
        sid = await self.server([{"uuid": n1}, {"uuid": n2}, {"uuid": n1}])
        code, reply = await self.nova("GET", f"/servers/{sid}/os-interface")
        self.assertEqual([i["net_id"] for i in reply["interfaceAttachments"]], [n1, n2, n1])
        self.assertEqual({i["port_state"] for i in reply["interfaceAttachments"]}, {"ACTIVE"})
        code, reply = await self.nova("GET", f"/servers/{sid}/ips")
        addresses = reply["addresses"]
        self.assertEqual(list(addresses), ["n1", "n2"])
        self.assertEqual([len(addresses["n1"]), len(addresses["n2"])], [2, 1])
        for name, cidr in (("n1", "10.0.1.0/24"), ("n2", "10.0.2.0/24")):
            for entry in addresses[name]:
                self.assertIn(ipaddress.ip_address(entry["addr"]), ipaddress.ip_network(cidr))
        code, reply = await self.nova("GET", f"/servers/{sid}/ips/n1")
        self.assertEqual(reply, {"n1": addresses["n1"]})
        code, reply = await self.nova("GET", f"/servers/{sid}/ips", None, None, "v2.0")
        self.assertEqual(list(reply["addresses"]), [n1, n2])


class InterfaceTests(ComputeNetworkCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.n1 = await self.network("n1", "10.0.1.0/24")
        self.server_id = await self.server([{"uuid": self.n1}])
        self.path = f"/servers/{self.server_id}/os-interface"

    async def test_list_show_attach_detach(self):
        """The server's ports as Nova's interface attachments; a port
        attached by network (with or without an address) is BUILD until
        Ganeti added the NIC, then ACTIVE; a detached one leaves the list."""
        s = self.stack
        code, reply = await self.nova("GET", self.path)
        self.assertEqual(code, 200, reply)
        [first] = reply["interfaceAttachments"]
        self.assertEqual(set(first), IFACE_KEYS)
        self.assertEqual((first["net_id"], first["port_state"]), (self.n1, "ACTIVE"))
        self.assertEqual(first["fixed_ips"][0]["ip_address"], "10.0.1.2")
        code, reply = await self.nova("GET", f"{self.path}/{first['port_id']}")
        self.assertEqual((code, reply), (200, {"interfaceAttachment": first}))
        # By default, the user's only network.
        code, reply = await self.nova("POST", self.path, None, {"interfaceAttachment": {}})
        self.assertEqual(code, 200, reply)
        self.assertEqual(set(reply), {"interfaceAttachment"})
        default = reply["interfaceAttachment"]
        self.assertEqual((default["net_id"], default["port_state"]), (self.n1, "BUILD"))
        n2 = await self.network("n2", "10.0.2.0/24")
        code, reply = await self.nova("POST", self.path, None, {"interfaceAttachment": {
            "net_id": n2, "fixed_ips": [{"ip_address": "10.0.2.9"}]}})
        self.assertEqual(code, 200, reply)
        chosen = reply["interfaceAttachment"]
        self.assertEqual(set(chosen), IFACE_KEYS)
        self.assertEqual(chosen["fixed_ips"][0]["ip_address"], "10.0.2.9")
        mark = await s.follow_all()
        code, reply = await self.nova("GET", f"{self.path}/{chosen['port_id']}")
        self.assertEqual(reply["interfaceAttachment"]["port_state"], "ACTIVE")
        code, reply = await self.nova("GET", self.path)
        self.assertEqual([i["port_id"] for i in reply["interfaceAttachments"]],
                         [first["port_id"], default["port_id"], chosen["port_id"]])
        code, reply = await self.nova("POST", self.path, None, {"interfaceAttachment": {}})
        self.assertEqual((code, reply["badRequest"]["message"]), (400, (
            "Multiple possible networks found, use a Network ID to be more specific.")))
        code, _ = await self.nova("DELETE", f"{self.path}/{default['port_id']}")
        self.assertEqual(code, 202)
        code, reply = await self.nova("GET", self.path)
        self.assertEqual(len(reply["interfaceAttachments"]), 2)   # hidden at once
        await s.follow_all(mark)
        instance = await s.rapi_client().instance(
            (await s.server(int(self.server_id))).instance_name)
        self.assertNotIn(f"snf-nic-{default['port_id']}", instance["nic.names"])
        self.assertIn(f"snf-nic-{chosen['port_id']}", instance["nic.names"])
        code, reply = await self.nova("GET", f"/servers/{self.server_id}/ips")
        self.assertEqual(list(reply["addresses"]), ["n1", "n2"])
        code, reply = await self.nova("GET", f"/servers/{self.server_id}/os-instance-actions")
        self.assertEqual([a["action"] for a in reply["instanceActions"]],
                         ["detach_interface", "attach_interface", "attach_interface",
                          "create"])

    async def test_a_users_port_is_bound_and_freed(self):
        """A free port the user made is attached by port_id (its NIC added)
        and detached without being deleted (Nova keeps a port it did not
        make); so does the delete of its server."""
        s = self.stack
        code, reply, _ = await s.call("POST", f"{s.network}/ports", self.token,
                                      {"port": {"network_id": self.n1, "name": "mine"}})
        free = reply["port"]
        mark = await s.follow_all()
        code, reply = await self.nova("POST", self.path, None,
                                      {"interfaceAttachment": {"port_id": free["id"]}})
        self.assertEqual(code, 200, reply)
        self.assertEqual(reply["interfaceAttachment"]["port_state"], "BUILD")
        mark = await s.follow_all(mark)
        code, reply, _ = await s.call("GET", f"{s.network}/ports/{free['id']}", self.token)
        self.assertEqual((reply["port"]["device_id"], reply["port"]["status"]),
                         (self.server_id, "ACTIVE"))
        code, _ = await self.nova("DELETE", f"{self.path}/{free['id']}")
        self.assertEqual(code, 202)
        await s.follow_all(mark)
        code, reply, _ = await s.call("GET", f"{s.network}/ports/{free['id']}", self.token)
        self.assertEqual((code, reply["port"]["device_id"], reply["port"]["status"]),
                         (200, "", "DOWN"))
        self.assertEqual(reply["port"]["fixed_ips"], free["fixed_ips"])
        # Bound again, then the server goes: the port stays, free.
        code, reply = await self.nova("POST", self.path, None,
                                      {"interfaceAttachment": {"port_id": free["id"]}})
        self.assertEqual(code, 200, reply)
        mark = await s.follow_all()
        code, _ = await self.nova("DELETE", f"/servers/{self.server_id}")
        self.assertEqual(code, 204)
        await s.follow_all(mark)
        code, reply, _ = await s.call("GET", f"{s.network}/ports", self.token)
        self.assertEqual([(p["id"], p["device_id"]) for p in reply["ports"]],
                         [(free["id"], "")])

    async def test_bad_requests(self):
        """Both a port and a network, or an address without a network, are
        400; someone else's network or an unknown port 404; a port in use
        409; a port the server does not have 404; someone else's server
        404."""
        s = self.stack
        bobs = await self.network("bobs", token=self.bob_token)
        code, reply, _ = await s.call("POST", f"{s.network}/ports", self.token,
                                      {"port": {"network_id": self.n1}})
        free = reply["port"]["id"]
        code, reply = await self.nova("GET", self.path)
        used = reply["interfaceAttachments"][0]["port_id"]
        cases = [
            ({"net_id": self.n1, "port_id": free}, 400),
            ({"fixed_ips": [{"ip_address": "10.0.1.9"}]}, 400),
            ({"net_id": self.n1, "fixed_ips": [{"ip_address": "nope"}]}, 400),
            ({"net_id": self.n1, "fixed_ips": [{"ip_address": "10.0.1.9"},
                                               {"ip_address": "10.0.1.8"}]}, 400),
            ({"net_id": self.n1, "bogus": 1}, 400),
            ({"net_id": "a-b-c"}, 400),
            ({"net_id": bobs}, 404),
            ({"port_id": "999999"}, 404),
            ({"port_id": used}, 409),
            ({"net_id": self.n1, "fixed_ips": [{"ip_address": "10.0.1.2"}]}, 409),
        ]
        for attachment, expected in cases:
            code, reply = await self.nova("POST", self.path, None,
                                          {"interfaceAttachment": attachment})
            self.assertEqual(code, expected, (attachment, reply))
        code, reply = await self.nova("GET", self.path)
        self.assertEqual(len(reply["interfaceAttachments"]), 1)
        for method in ("GET", "DELETE"):
            code, _ = await self.nova(method, f"{self.path}/{free}")
            self.assertEqual(code, 404)
            code, _ = await self.nova(method, f"{self.path}/{used}", self.bob_token)
            self.assertEqual(code, 404)
        code, _ = await self.nova("GET", self.path, self.bob_token)
        self.assertEqual(code, 404)


class TenantNetworkTests(ComputeNetworkCase):
    async def test_list_and_show(self):
        """The networks the user sees (its own and public ones) with the
        CIDR of their IPv4 subnet (null without one); others' are 404."""
        public = await self.public_network()
        own = await self.network("own", "10.0.3.0/24")
        bare = await self.network("bare", None)
        bobs = await self.network("bobs", token=self.bob_token)
        for dialect in ("v2.1", "v2.0"):
            code, reply = await self.nova("GET", "/os-tenant-networks", None, None, dialect)
            self.assertEqual(code, 200, reply)
            found = {n["id"]: n for n in reply["networks"]}
            self.assertEqual(set(found), {str(public), own, bare})
            self.assertEqual(found[own], {"id": own, "cidr": "10.0.3.0/24", "label": "own"})
            self.assertEqual(found[bare]["cidr"], None)
            self.assertEqual(found[str(public)]["cidr"], "192.0.2.0/28")
        code, reply = await self.nova("GET", f"/os-tenant-networks/{own}")
        self.assertEqual((code, reply), (200, {"network": found[own]}))
        for ref in (bobs, "nope"):
            code, _ = await self.nova("GET", f"/os-tenant-networks/{ref}")
            self.assertEqual(code, 404)

    async def test_os_networks_reads_only(self):
        """``os-networks`` (nova-network's API, served by Nova with Neutron
        up to 2.35) shows the same networks; making or deleting one there
        is 501 (networks are the network API's)."""
        own = await self.network("own", "10.0.3.0/24")
        code, reply = await self.nova("GET", "/os-networks")
        self.assertEqual(code, 200, reply)
        self.assertEqual([n["label"] for n in reply["networks"]], ["own"])
        code, reply = await self.nova("GET", f"/os-networks/{own}")
        self.assertEqual((code, reply["network"]["cidr"]), (200, "10.0.3.0/24"))
        code, reply = await self.nova("POST", "/os-networks", None,
                                      {"network": {"label": "x", "cidr": "10.0.9.0/24"}})
        self.assertEqual(code, 501, reply)
        code, reply = await self.nova("DELETE", f"/os-networks/{own}")
        self.assertEqual(code, 501, reply)
