"""The network API (``snfd.cyclades.networks``) against a real node on the
simulated Ganeti: networks, subnets, ports and floating IPs with their
quota, pools, ownership and bad input; servers on networks."""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from snfd.cyclades.networks import pools
from snfd.testing.compute import compute_stack


class NetworkCase(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        self.bob, self.bob_token = await self.stack.user("bob")

    async def net(self, method: str, path: str, token: str | None = None,
                  body: Any = None) -> tuple[int, Any]:
        code, reply, _ = await self.stack.call(
            method, f"{self.stack.network}{path}", token or self.token, body)
        return code, reply

    async def network(self, token: str | None = None, **over: Any) -> dict[str, Any]:
        code, reply = await self.net("POST", "/networks", token,
                                     {"network": {"name": "private", **over}})
        self.assertEqual(code, 201, reply)
        return reply["network"]

    async def subnet(self, network_id: str, cidr: str = "10.0.0.0/29",
                     token: str | None = None, **over: Any) -> dict[str, Any]:
        code, reply = await self.net("POST", "/subnets", token, {"subnet": {
            "network_id": network_id, "cidr": cidr, "ip_version": 4, **over}})
        self.assertEqual(code, 201, reply)
        return reply["subnet"]

    async def public_network(self) -> tuple[int, int]:
        """An administrator's public network with a floating IP pool and
        an IPv4 subnet; (network id, subnet id)."""
        networks = self.stack.service.networks
        network = await networks.admin_create_network(
            name="public", flavor="CUSTOM", public=True, floating_ip_pool=True)
        subnet = await networks.create_subnet(
            "admin", network.id, {"cidr": "192.0.2.0/28", "ip_version": 4}, admin=True)
        return network.id, subnet.id


class NetworkTests(NetworkCase):
    async def test_discovery(self):
        code, reply, _ = await self.stack.call("GET", f"{self.stack.url}/network/",
                                               self.token)
        self.assertEqual(code, 200, reply)
        self.assertEqual(reply["versions"][0]["id"], "v2.0")
        code, reply = await self.net("GET", "/extensions")
        aliases = {e["alias"] for e in reply["extensions"]}
        self.assertIn("external-net", aliases)
        self.assertNotIn("router", aliases)
        code, reply = await self.net("GET", "/extensions/router")
        self.assertEqual(code, 404)
        self.assertIn("NeutronError", reply)

    async def test_lifecycle_and_quota(self):
        """A private network charges cyclades.network.private; deleting it
        gives it back.  Others cannot see it."""
        s = self.stack
        created = await self.network()
        self.assertEqual(created["type"], "MAC_FILTERED")
        self.assertEqual(created["status"], "ACTIVE")
        self.assertFalse(created["router:external"])
        self.assertEqual((await s.usage(self.alice))["cyclades.network.private"], 1)
        code, reply = await self.net("GET", "/networks")
        self.assertEqual([n["id"] for n in reply["networks"]], [created["id"]])
        code, reply = await self.net("GET", f"/networks/{created['id']}", self.bob_token)
        self.assertEqual(code, 404, reply)
        code, reply = await self.net("GET", "/networks", self.bob_token)
        self.assertEqual(reply["networks"], [])
        code, reply = await self.net("PUT", f"/networks/{created['id']}", None,
                                     {"network": {"name": "renamed"}})
        self.assertEqual((code, reply["network"]["name"]), (200, "renamed"))
        self.assertEqual(reply["network"]["revision_number"], created["revision_number"] + 1)
        code, reply = await self.net("GET", "/networks?name=renamed&fields=id&fields=name")
        self.assertEqual(reply["networks"], [{"id": created["id"], "name": "renamed"}])
        code, _ = await self.net("DELETE", f"/networks/{created['id']}", self.bob_token)
        self.assertEqual(code, 404)
        code, _ = await self.net("DELETE", f"/networks/{created['id']}")
        self.assertEqual(code, 204)
        self.assertEqual((await s.usage(self.alice))["cyclades.network.private"], 0)
        code, _ = await self.net("GET", f"/networks/{created['id']}")
        self.assertEqual(code, 404)

    async def test_private_networks_get_distinct_mac_prefixes(self):
        a, b = await self.network(), await self.network()
        networks = self.stack.service.networks
        first = await networks.network(self.alice, int(a["id"]))
        second = await networks.network(self.alice, int(b["id"]))
        self.assertNotEqual(first.mac_prefix, second.mac_prefix)
        for n in (first, second):
            octet = int(n.mac_prefix[:2], 16)
            self.assertEqual(octet & 0x03, 0x02, n.mac_prefix)

    async def test_over_quota(self):
        s = self.stack
        user, token = await s.user("carol", **{"network.private": 1})
        await self.network(token)
        code, reply = await self.net("POST", "/networks", token, {"network": {"name": "x"}})
        self.assertEqual(code, 413, reply)
        self.assertEqual((await s.usage(user))["cyclades.network.private"], 1)

    async def test_bad_input(self):
        cases = [
            ({"network": {"type": "PHYSICAL_VLAN"}}, 403),
            ({"network": {"type": "NOPE"}}, 403),
            ({"network": {"router:external": True}}, 403),
            ({"network": {"bogus": 1}}, 400),
            ({"network": "x"}, 400),
            ({"network": {"name": 7}}, 400),
        ]
        for body, expected in cases:
            code, reply = await self.net("POST", "/networks", None, body)
            self.assertEqual(code, expected, (body, reply))
            self.assertIn("message", reply["NeutronError"])
        self.assertEqual((await self.stack.usage(self.alice))["cyclades.network.private"], 0)

    async def test_quota(self):
        await self.network()
        code, reply = await self.net("GET", f"/quotas/{self.alice}")
        self.assertEqual(code, 200, reply)
        self.assertEqual((reply["quota"]["network"], reply["quota"]["floatingip"]), (5, 5))
        code, reply = await self.net("GET", f"/quotas/{self.alice}/details")
        self.assertEqual(reply["quota"]["network"], {"limit": 5, "used": 1, "reserved": 0})
        code, reply = await self.net("GET", f"/quotas/{self.bob}")
        self.assertEqual(code, 403, reply)
        code, reply = await self.net("PUT", f"/quotas/{self.alice}", None,
                                     {"quota": {"network": 9}})
        self.assertEqual(code, 403, reply)
        code, reply, _ = await self.stack.call("GET", f"{self.stack.network}/nowhere",
                                               self.token)
        self.assertEqual(code, 404)
        self.assertIn("NeutronError", reply)

    async def test_tags(self):
        created = await self.network()
        path = f"/networks/{created['id']}/tags"
        code, _ = await self.net("PUT", path + "/red")
        self.assertEqual(code, 201)
        code, reply = await self.net("PUT", path, None, {"tags": ["blue", "green"]})
        self.assertEqual((code, reply["tags"]), (200, ["blue", "green"]))
        code, _ = await self.net("GET", path + "/red")
        self.assertEqual(code, 404)
        code, reply = await self.net("GET", "/networks?tags=blue")
        self.assertEqual(len(reply["networks"]), 1)
        code, _ = await self.net("DELETE", path)
        self.assertEqual(code, 204)
        code, reply = await self.net("GET", path)
        self.assertEqual(reply["tags"], [])


class SubnetTests(NetworkCase):
    async def test_pools_and_gateway(self):
        network = await self.network()
        subnet = await self.subnet(network["id"], "10.0.0.0/24")
        self.assertEqual(subnet["gateway_ip"], "10.0.0.1")
        self.assertEqual(subnet["allocation_pools"], [{"start": "10.0.0.2",
                                                       "end": "10.0.0.254"}])
        code, reply = await self.net("GET", f"/networks/{network['id']}")
        self.assertEqual(reply["network"]["subnets"], [subnet["id"]])

    async def test_bad_subnets(self):
        network = await self.network()
        nid = network["id"]
        cases = [
            ({"cidr": "10.0.0.0/21"}, 409),                       # over /22
            ({"cidr": "10.0.0.0/24", "allocation_pools": [
                {"start": "10.0.0.10", "end": "10.0.0.20"},
                {"start": "10.0.0.15", "end": "10.0.0.30"}]}, 409),  # overlapping
            ({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.12", "allocation_pools": [
                {"start": "10.0.0.10", "end": "10.0.0.20"}]}, 409),  # gateway inside
            ({"cidr": "10.0.0.0/24", "allocation_pools": [
                {"start": "10.0.1.10", "end": "10.0.1.20"}]}, 400),  # outside
            ({"cidr": "10.0.0.0/24", "ip_version": 6}, 400),
            ({"cidr": "not a cidr"}, 400),
            ({"cidr": "10.0.0.0/24", "gateway_ip": "10.9.9.9"}, 400),
        ]
        for extra, expected in cases:
            code, reply = await self.net("POST", "/subnets", None, {"subnet": {
                "network_id": nid, "ip_version": 4, **extra}})
            self.assertEqual(code, expected, (extra, reply))
        code, reply = await self.net("POST", "/subnets", self.bob_token, {"subnet": {
            "network_id": nid, "ip_version": 4, "cidr": "10.0.0.0/24"}})
        self.assertEqual(code, 404, reply)
        code, reply = await self.net("GET", "/subnets")
        self.assertEqual(reply["subnets"], [])

    async def test_ipv6_slaac(self):
        network = await self.network()
        await self.subnet(network["id"], "10.0.0.0/24")
        v6 = await self.subnet(network["id"], "2001:db8:1::/64", ip_version=6)
        self.assertEqual(v6["ipv6_address_mode"], "slaac")
        code, reply = await self.net("POST", "/ports", None,
                                     {"port": {"network_id": network["id"]}})
        self.assertEqual(code, 201, reply)
        port = reply["port"]
        v6_ip = next(f["ip_address"] for f in port["fixed_ips"] if ":" in f["ip_address"])
        self.assertEqual(v6_ip, pools.eui64("2001:db8:1::/64", port["mac_address"]))


class PortTests(NetworkCase):
    async def test_ports_take_addresses_from_the_pool(self):
        network = await self.network()
        subnet = await self.subnet(network["id"], "10.0.0.0/29")   # hosts .2 - .6
        prefix = (await self.stack.service.networks.network(
            self.alice, int(network["id"]))).mac_prefix
        addresses = []
        for _ in range(5):
            code, reply = await self.net("POST", "/ports", None,
                                         {"port": {"network_id": network["id"]}})
            self.assertEqual(code, 201, reply)
            port = reply["port"]
            self.assertTrue(port["mac_address"].startswith(prefix), port)
            self.assertEqual(port["fixed_ips"][0]["subnet_id"], subnet["id"])
            addresses.append(port["fixed_ips"][0]["ip_address"])
        self.assertEqual(addresses, [f"10.0.0.{i}" for i in range(2, 7)])
        code, reply = await self.net("POST", "/ports", None,
                                     {"port": {"network_id": network["id"]}})
        self.assertEqual(code, 409, reply)
        code, reply = await self.net("GET", "/ports")
        self.assertEqual(len(reply["ports"]), 5)       # the refused one left nothing
        code, reply = await self.net("DELETE", f"/networks/{network['id']}")
        self.assertEqual(code, 409, reply)

    async def test_fixed_address_and_mac(self):
        """A port takes the address and MAC asked for; on a MAC_FILTERED
        network the MAC must be under the network's prefix (its traffic is
        filtered by it)."""
        network = await self.network()
        subnet = await self.subnet(network["id"], "10.0.0.0/24")
        prefix = pools.ganeti_mac_prefix((await self.stack.service.networks.network(
            self.alice, int(network["id"]))).mac_prefix)
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": network["id"], "mac_address": "fa:16:3e:00:00:01"}})
        self.assertEqual(code, 400, reply)
        body = {"port": {"network_id": network["id"], "mac_address": f"{prefix}:00:00:01",
                         "fixed_ips": [{"subnet_id": subnet["id"],
                                        "ip_address": "10.0.0.50"}]}}
        code, reply = await self.net("POST", "/ports", None, body)
        self.assertEqual(code, 201, reply)
        self.assertEqual(reply["port"]["mac_address"], f"{prefix}:00:00:01")
        self.assertEqual(reply["port"]["fixed_ips"][0]["ip_address"], "10.0.0.50")
        for change, expected in (
                ({"mac_address": f"{prefix}:00:00:02"}, 409),     # address taken
                ({"fixed_ips": [{"ip_address": "10.0.0.1"}], "mac_address": None}, 409),
                ({"mac_address": "01:00:5e:00:00:01", "fixed_ips": None}, 400),
                ({"fixed_ips": [{"ip_address": "10.9.0.1"}], "mac_address": None}, 400)):
            again = {"port": {**body["port"], **change}}
            again["port"] = {k: v for k, v in again["port"].items() if v is not None}
            code, reply = await self.net("POST", "/ports", None, again)
            self.assertEqual(code, expected, (change, reply))
        code, reply = await self.net("GET", "/ports")
        self.assertEqual(len(reply["ports"]), 1)

    async def test_others_networks_and_ports(self):
        network = await self.network()
        await self.subnet(network["id"])
        code, reply = await self.net("POST", "/ports", self.bob_token,
                                     {"port": {"network_id": network["id"]}})
        self.assertEqual(code, 404, reply)
        code, reply = await self.net("POST", "/ports", None,
                                     {"port": {"network_id": network["id"]}})
        port = reply["port"]
        for method in ("GET", "DELETE"):
            code, _ = await self.net(method, f"/ports/{port['id']}", self.bob_token)
            self.assertEqual(code, 404)
        code, _ = await self.net("PUT", f"/ports/{port['id']}", self.bob_token,
                                 {"port": {"name": "x"}})
        self.assertEqual(code, 404)

    async def test_parallel_allocation_never_repeats_an_address(self):
        """Twelve concurrent port creations on a subnet of six addresses:
        six succeed with six different addresses, six get 409."""
        network = await self.network()
        await self.subnet(network["id"], "10.0.0.0/29", gateway_ip=None)  # .1 - .6
        results = await defer.gatherResults([
            defer.ensureDeferred(self.net("POST", "/ports", None,
                                          {"port": {"network_id": network["id"]}}))
            for _ in range(12)])
        codes = sorted(code for code, _ in results)
        self.assertEqual(codes, [201] * 6 + [409] * 6)
        addresses = [r["port"]["fixed_ips"][0]["ip_address"] for c, r in results if c == 201]
        self.assertEqual(sorted(addresses, key=ipaddress.ip_address),
                         [f"10.0.0.{i}" for i in range(1, 7)])


class FloatingIPTests(NetworkCase):
    async def test_allocate_and_release(self):
        s = self.stack
        public, _ = await self.public_network()
        code, reply = await self.net("GET", "/networks")
        self.assertIn(str(public), [n["id"] for n in reply["networks"]])
        code, reply = await self.net("POST", "/floatingips", None,
                                     {"floatingip": {"floating_network_id": str(public)}})
        self.assertEqual(code, 201, reply)
        ip = reply["floatingip"]
        self.assertEqual(ip["floating_ip_address"], "192.0.2.2")
        self.assertIsNone(ip["port_id"])
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 1)
        code, reply = await self.net("GET", f"/floatingips/{ip['id']}", self.bob_token)
        self.assertEqual(code, 404)
        code, reply = await self.net("POST", "/floatingips", None, {"floatingip": {
            "floating_network_id": str(public), "floating_ip_address": "192.0.2.2"}})
        self.assertEqual(code, 409, reply)
        code, _ = await self.net("DELETE", f"/floatingips/{ip['id']}")
        self.assertEqual(code, 204)
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 0)

    async def test_ports_on_public_networks_need_a_floating_ip(self):
        public, _ = await self.public_network()
        code, reply = await self.net("POST", "/ports", None,
                                     {"port": {"network_id": str(public)}})
        self.assertEqual(code, 403, reply)
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": str(public), "fixed_ips": [{"ip_address": "192.0.2.9"}]}})
        self.assertEqual(code, 409, reply)

    async def test_over_quota(self):
        s = self.stack
        public, _ = await self.public_network()
        user, token = await s.user("carol", floating_ip=0)
        code, reply = await self.net("POST", "/floatingips", token,
                                     {"floatingip": {"floating_network_id": str(public)}})
        self.assertEqual(code, 413, reply)
        self.assertEqual(await s.service.networks.floating_ips(user), [])


class SubnetChangeTests(NetworkCase):
    async def test_two_subnets_and_changing_addresses(self):
        network = await self.network()
        first = await self.subnet(network["id"], "10.0.0.0/28")
        code, reply = await self.net("POST", "/subnets", None, {"subnet": {
            "network_id": network["id"], "cidr": "10.0.0.8/29", "ip_version": 4}})
        self.assertEqual(code, 400, reply)
        self.assertIn("overlaps with another subnet", reply["NeutronError"]["message"])
        second = await self.subnet(network["id"], "10.0.1.0/28")
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": network["id"], "fixed_ips": [{"subnet_id": first["id"]}]}})
        port = reply["port"]
        code, reply = await self.net("PUT", f"/ports/{port['id']}", None, {"port": {
            "fixed_ips": [{"subnet_id": first["id"]}, {"subnet_id": second["id"]}]}})
        self.assertEqual(code, 200, reply)
        self.assertEqual([f["ip_address"] for f in reply["port"]["fixed_ips"]],
                         ["10.0.0.2", "10.0.1.2"])
        code, reply = await self.net("PUT", f"/ports/{port['id']}", None, {"port": {
            "fixed_ips": [{"subnet_id": second["id"]}], "admin_state_up": False}})
        self.assertEqual([f["ip_address"] for f in reply["port"]["fixed_ips"]], ["10.0.1.2"])
        self.assertFalse(reply["port"]["admin_state_up"])
        code, reply = await self.net("DELETE", f"/subnets/{second['id']}")
        self.assertEqual(code, 409, reply)
        code, reply = await self.net("DELETE", f"/subnets/{first['id']}")
        self.assertEqual(code, 204, reply)


class ServerNetworkTests(NetworkCase):
    async def server(self, networks: Any) -> dict[str, Any]:
        s = self.stack
        # "auto" and "none" are Nova's words from microversion 2.37.
        headers = {"OpenStack-API-Version": "compute 2.37"} if isinstance(networks, str) \
            else None
        code, reply, _ = await s.call("POST", f"{s.url}/compute/v2.1/servers", self.token, {"server": {
            "name": "vm", "imageRef": s.image.id, "flavorRef": s.flavors["small"].flavorid,
            "networks": networks}}, headers=headers)
        self.assertEqual(code, 202, reply)
        return reply["server"]

    async def test_server_on_a_private_network(self):
        """The server gets a port on the network; the network is created on
        the backend first and the create depends on it; the addresses
        show; deleting the server frees the address."""
        s = self.stack
        network = await self.network()
        await self.subnet(network["id"], "10.0.0.0/24")
        created = await self.server([{"uuid": network["id"], "fixed_ip": "10.0.0.9"}])
        row = await s.server(int(created["id"]))
        job = await s.rapi_client().job(row.backendjobid)
        nic = job["ops"][0]["nics"][0]
        self.assertEqual(nic["network"], f"snf-net-{network['id']}")
        self.assertEqual(nic["ip"], "10.0.0.9")
        await s.follow_all()
        code, reply = await self.net("GET", f"/ports?device_id={created['id']}")
        self.assertEqual(len(reply["ports"]), 1, reply)
        port = reply["ports"][0]
        self.assertEqual(port["status"], "ACTIVE")
        self.assertEqual(port["mac_address"], nic["mac"])
        code, reply, _ = await s.call("GET", f"{s.url}/compute/v2.1/servers/{created['id']}",
                                      self.token)
        self.assertEqual(reply["server"]["addresses"], {"private": [{
            "version": 4, "addr": "10.0.0.9", "OS-EXT-IPS:type": "fixed",
            "OS-EXT-IPS-MAC:mac_addr": nic["mac"]}]})
        mark = await s.follow_all()
        code, _, _ = await s.call("DELETE", f"{s.url}/compute/v2.1/servers/{created['id']}",
                                  self.token)
        self.assertEqual(code, 204)
        await s.follow_all(mark)
        code, reply = await self.net("GET", "/ports")
        self.assertEqual(reply["ports"], [])
        code, _ = await self.net("DELETE", f"/networks/{network['id']}")
        self.assertEqual(code, 204)

    async def test_port_attach_and_detach(self):
        s = self.stack
        network = await self.network()
        await self.subnet(network["id"], "10.0.0.0/24")
        created = await self.server("auto")
        await s.follow((await s.server(int(created["id"]))).backendjobid)
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": network["id"], "device_id": created["id"]}})
        self.assertEqual(code, 201, reply)
        port = reply["port"]
        self.assertEqual(port["status"], "BUILD")
        row = await s.server(int(created["id"]))
        await s.follow_all(row.backendjobid)
        code, reply = await self.net("GET", f"/ports/{port['id']}")
        self.assertEqual(reply["port"]["status"], "ACTIVE", reply)
        instance = await s.rapi_client().instance(row.instance_name)
        self.assertIn(f"snf-nic-{port['id']}", instance["nic.names"])
        mark = await s.follow_all()
        code, _ = await self.net("DELETE", f"/ports/{port['id']}")
        self.assertEqual(code, 204)
        await s.follow_all(mark)
        instance = await s.rapi_client().instance(row.instance_name)
        self.assertNotIn(f"snf-nic-{port['id']}", instance["nic.names"])
        code, reply = await self.net("GET", "/ports")
        self.assertEqual(reply["ports"], [])

    async def test_floating_ip_attached_and_released(self):
        """A floating IP attached to a server is a port on the public
        network with that address; it cannot be released while attached;
        detaching (deleting the port) and releasing returns the quota."""
        s = self.stack
        public, _ = await self.public_network()
        created = await self.server("auto")
        await s.follow_all()
        code, reply = await self.net("POST", "/floatingips", None,
                                     {"floatingip": {"floating_network_id": str(public)}})
        ip = reply["floatingip"]
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": str(public), "device_id": created["id"],
            "fixed_ips": [{"ip_address": ip["floating_ip_address"]}]}})
        self.assertEqual(code, 201, reply)
        port = reply["port"]
        code, reply = await self.net("GET", f"/floatingips/{ip['id']}")
        self.assertEqual((reply["floatingip"]["port_id"], reply["floatingip"]["instance_id"]),
                         (port["id"], created["id"]))
        code, reply = await self.net("DELETE", f"/floatingips/{ip['id']}")
        self.assertEqual(code, 409, reply)
        mark = await s.follow_all()
        code, reply, _ = await s.call("GET", f"{s.url}/compute/v2.1/servers/{created['id']}",
                                      self.token)
        self.assertIn({"version": 4, "addr": ip["floating_ip_address"],
                       "OS-EXT-IPS:type": "floating",
                       "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]},
                      reply["server"]["addresses"]["public"])
        code, _ = await self.net("DELETE", f"/ports/{port['id']}")
        self.assertEqual(code, 204)
        await s.follow_all(mark)
        code, reply = await self.net("GET", f"/floatingips/{ip['id']}")
        self.assertIsNone(reply["floatingip"]["port_id"])
        code, _ = await self.net("DELETE", f"/floatingips/{ip['id']}")
        self.assertEqual(code, 204)
        self.assertEqual((await s.usage(self.alice))["cyclades.floating_ip"], 0)

    async def test_floating_ip_moves_at_once(self):
        """A detached floating IP is free at once; attached to another
        server on the same cluster, the new NIC's job waits for the old
        NIC's removal (Ganeti still holds the address until then)."""
        s = self.stack
        public, _ = await self.public_network()
        first, second = await self.server("auto"), await self.server("auto")
        await s.follow_all()
        code, reply = await self.net("POST", "/floatingips", None,
                                     {"floatingip": {"floating_network_id": str(public)}})
        ip = reply["floatingip"]
        fixed = [{"ip_address": ip["floating_ip_address"]}]
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": str(public), "device_id": first["id"], "fixed_ips": fixed}})
        old = reply["port"]
        mark = await s.follow_all()
        s.sim.hold_queue()
        code, _ = await self.net("DELETE", f"/ports/{old['id']}")
        self.assertEqual(code, 204)
        code, reply = await self.net("GET", f"/floatingips/{ip['id']}")
        self.assertIsNone(reply["floatingip"]["port_id"])
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": str(public), "device_id": second["id"], "fixed_ips": fixed}})
        self.assertEqual(code, 201, reply)
        jobs = sorted(int(j["id"]) for j in await s.rapi_client().jobs() if int(j["id"]) > mark)
        # (Security-group tag jobs come between: find the NIC changes.)
        nic_jobs = {}
        for job_id in jobs:
            job = await s.rapi_client().job(job_id)
            for change in job["ops"][0].get("nics") or []:
                nic_jobs[change[0]] = job
        remove, added = nic_jobs["remove"], nic_jobs["add"]
        self.assertEqual(added["ops"][0]["depends"], [[int(remove["id"]), ["success"]]])
        s.sim.release_queue()
        await s.follow_all(mark)
        code, reply = await self.net("GET", f"/floatingips/{ip['id']}")
        self.assertEqual(reply["floatingip"]["instance_id"], second["id"])
        code, reply = await self.net("GET", f"/ports/{reply['floatingip']['port_id']}")
        self.assertEqual(reply["port"]["status"], "ACTIVE")

    async def test_firewall_profile_of_a_port(self):
        """The firewallProfile action on a port becomes the instance tag the
        node-side scripts read (by the NIC's name) and the port's
        SNF:firewall_profile; a PUT of it is refused."""
        s = self.stack
        network = await self.network()
        await self.subnet(network["id"], "10.0.0.0/24")
        created = await self.server([{"uuid": network["id"]}])
        await s.follow_all()
        code, reply = await self.net("GET", f"/ports?device_id={created['id']}")
        port = reply["ports"][0]
        self.assertEqual(port["SNF:firewall_profile"], "DISABLED")
        mark = await s.follow_all()
        code, reply, _ = await s.call(
            "POST", f"{s.url}/compute/v2.0/servers/{created['id']}/action", self.token,
            {"firewallProfile": {"profile": "ENABLED", "nic": port["id"]}})
        self.assertEqual(code, 202, reply)
        await s.follow_all(mark)
        instance = await s.rapi_client().instance(f"snf-{created['id']}")
        self.assertIn(f"synnefo:network:snf-nic-{port['id']}:protected", instance["tags"])
        code, reply = await self.net("GET", f"/ports/{port['id']}")
        self.assertEqual(reply["port"]["SNF:firewall_profile"], "ENABLED")
        code, reply = await self.net("PUT", f"/ports/{port['id']}", None,
                                     {"port": {"SNF:firewall_profile": "DISABLED"}})
        self.assertEqual(code, 400, reply)

    async def test_others_network_refused(self):
        network = await self.network(self.bob_token)
        s = self.stack
        code, reply, _ = await s.call("POST", f"{s.url}/compute/v2.1/servers", self.token, {"server": {
            "name": "vm", "imageRef": s.image.id, "flavorRef": s.flavors["small"].flavorid,
            "networks": [{"uuid": network["id"]}]}})
        self.assertIn(code, (400, 404), reply)
        self.assertEqual(await s.servers.of_user(self.alice), [])
