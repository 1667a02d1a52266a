"""Security groups (``snfd.cyclades.networks.security_groups``) through
Neutron's API against a real node on the simulated Ganeti: the default
group, rules and their checks, ownership, limits, ports in groups, and the
instance tags that carry a server's rules to the nodes."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from snfd.cyclades.networks import security
from snfd.cyclades.networks.model import Port, SecurityRule
from snfd.testing.compute import compute_stack


class SecurityGroupCase(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        self.bob, self.bob_token = await self.stack.user("bob")

    async def net(self, method: str, path: str, token: str | None = None,
                  body: Any = None) -> tuple[int, Any]:
        code, reply, _ = await self.stack.call(
            method, f"{self.stack.network}{path}", token or self.token, body)
        return code, reply

    async def group(self, name: str = "web", token: str | None = None) -> dict[str, Any]:
        code, reply = await self.net("POST", "/security-groups", token,
                                     {"security_group": {"name": name, "description": "d"}})
        self.assertEqual(code, 201, reply)
        return reply["security_group"]

    async def rule(self, group_id: str, token: str | None = None, code: int = 201,
                   **body: Any) -> Any:
        got, reply = await self.net("POST", "/security-group-rules", token, {
            "security_group_rule": {"security_group_id": group_id, "direction": "ingress",
                                    **body}})
        self.assertEqual(got, code, reply)
        return reply.get("security_group_rule", reply)

    async def nova(self, method: str, path: str, body: Any = None,
                   token: str | None = None) -> tuple[int, Any]:
        code, reply, _ = await self.stack.call(
            method, f"{self.stack.url}/compute/v2.1{path}", token or self.token, body)
        return code, reply


class GroupTests(SecurityGroupCase):
    async def test_default_group_is_made_once_with_neutrons_rules(self):
        code, reply = await self.net("GET", "/security-groups")
        self.assertEqual(code, 200, reply)
        [default] = reply["security_groups"]
        self.assertEqual(default["name"], "default")
        rules = {(r["direction"], r["ethertype"], r["remote_group_id"])
                 for r in default["security_group_rules"]}
        self.assertEqual(rules, {("egress", "IPv4", None), ("egress", "IPv6", None),
                                 ("ingress", "IPv4", default["id"]),
                                 ("ingress", "IPv6", default["id"])})
        code, again = await self.net("GET", "/security-groups")
        self.assertEqual([g["id"] for g in again["security_groups"]], [default["id"]])
        code, reply = await self.net("GET", "/security-group-rules")
        self.assertEqual(len(reply["security_group_rules"]), 4)
        # Nobody else sees it.
        code, reply = await self.net("GET", f"/security-groups/{default['id']}",
                                     self.bob_token)
        self.assertEqual(code, 404, reply)
        self.assertIn("NeutronError", reply)

    async def test_lifecycle(self):
        made = await self.group()
        self.assertEqual({(r["direction"], r["ethertype"]) for r in
                          made["security_group_rules"]},
                         {("egress", "IPv4"), ("egress", "IPv6")})
        code, reply = await self.net("PUT", f"/security-groups/{made['id']}", None,
                                     {"security_group": {"name": "web2", "description": "x"}})
        self.assertEqual((code, reply["security_group"]["name"]), (200, "web2"))
        code, reply = await self.net("GET", "/security-groups?name=web2")
        self.assertEqual([g["id"] for g in reply["security_groups"]], [made["id"]])
        code, _ = await self.net("DELETE", f"/security-groups/{made['id']}", self.bob_token)
        self.assertEqual(code, 404)
        code, _ = await self.net("DELETE", f"/security-groups/{made['id']}")
        self.assertEqual(code, 204)
        code, _ = await self.net("GET", f"/security-groups/{made['id']}")
        self.assertEqual(code, 404)

    async def test_default_name_is_reserved(self):
        code, reply = await self.net("POST", "/security-groups",
                                     None, {"security_group": {"name": "default"}})
        self.assertEqual(code, 409, reply)
        made = await self.group()
        code, reply = await self.net("PUT", f"/security-groups/{made['id']}", None,
                                     {"security_group": {"name": "default"}})
        self.assertEqual(code, 409, reply)
        code, reply = await self.net("GET", "/security-groups?name=default")
        default = reply["security_groups"][0]
        code, reply = await self.net("PUT", f"/security-groups/{default['id']}", None,
                                     {"security_group": {"name": "other"}})
        self.assertEqual(code, 409, reply)
        code, reply = await self.net("DELETE", f"/security-groups/{default['id']}")
        self.assertEqual(code, 409, reply)

    async def test_limits(self):
        await self.net("GET", "/security-groups")
        for i in range(security.MAX_GROUPS - 1):
            await self.group(f"g{i}")
        code, reply = await self.net("POST", "/security-groups", None,
                                     {"security_group": {"name": "one-too-many"}})
        self.assertEqual(code, 409, reply)
        code, reply = await self.net("GET", f"/quotas/{self.alice}/details")
        self.assertEqual(reply["quota"]["security_group"],
                         {"limit": security.MAX_GROUPS, "used": security.MAX_GROUPS,
                          "reserved": 0})


class RuleTests(SecurityGroupCase):
    async def test_rules_as_given(self):
        g = await self.group()
        tcp = await self.rule(g["id"], protocol="tcp", port_range_min=22, port_range_max=22,
                              remote_ip_prefix="10.100.0.0/16")
        self.assertEqual((tcp["protocol"], tcp["port_range_min"], tcp["port_range_max"],
                          tcp["remote_ip_prefix"], tcp["ethertype"]),
                         ("tcp", 22, 22, "10.100.0.0/16", "IPv4"))
        icmp = await self.rule(g["id"], protocol="icmp", port_range_min=8, port_range_max=0)
        self.assertEqual((icmp["port_range_min"], icmp["port_range_max"]), (8, 0))
        number = await self.rule(g["id"], protocol=17)
        self.assertEqual(number["protocol"], "17")
        other = await self.group("other")
        remote = await self.rule(g["id"], protocol="udp", remote_group_id=other["id"])
        self.assertEqual(remote["remote_group_id"], other["id"])
        code, reply = await self.net("GET", f"/security-group-rules/{tcp['id']}")
        self.assertEqual(reply["security_group_rule"]["security_group_id"], g["id"])
        code, reply = await self.net("GET", f"/security-groups/{g['id']}")
        self.assertEqual(len(reply["security_group"]["security_group_rules"]), 6)
        # A duplicate, also spelled with the protocol's number, is 409.
        await self.rule(g["id"], code=409, protocol="6", port_range_min=22,
                        port_range_max=22, remote_ip_prefix="10.100.0.0/16")
        code, _ = await self.net("DELETE", f"/security-group-rules/{tcp['id']}",
                                 self.bob_token)
        self.assertEqual(code, 404)
        code, _ = await self.net("DELETE", f"/security-group-rules/{tcp['id']}")
        self.assertEqual(code, 204)
        # Deleting a group deletes the rules naming it as their remote.
        code, _ = await self.net("DELETE", f"/security-groups/{other['id']}")
        self.assertEqual(code, 204)
        code, _ = await self.net("GET", f"/security-group-rules/{remote['id']}")
        self.assertEqual(code, 404)

    async def test_bad_rules(self):
        g = await self.group()
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"protocol": "bad_protocol_name"}, 400, "not supported"),
            ({"protocol": "tcp", "remote_ip_prefix": "192.168.1./24"}, 400, "valid IP"),
            ({"protocol": "tcp", "remote_ip_prefix": "192.168.1.1/33"}, 400, "valid IP"),
            ({"protocol": "tcp", "remote_ip_prefix": "256"}, 400, "valid IP"),
            ({"protocol": "tcp", "remote_group_id": "bad_group_id"}, 404, "does not exist"),
            ({"ethertype": "bad"}, 400, "ethertype"),
            ({"direction": "sideways"}, 400, "direction"),
            ({"protocol": "tcp", "port_range_min": -16, "port_range_max": 80}, 400,
             "Invalid value for port -16"),
            ({"protocol": "tcp", "port_range_min": 80, "port_range_max": 79}, 400,
             "port_range_min must be <= port_range_max"),
            ({"protocol": "tcp", "port_range_min": 80, "port_range_max": 65536}, 400,
             "Invalid value for port 65536"),
            ({"protocol": "tcp", "port_range_max": 6}, 400,
             "port_range_min must be <= port_range_max"),
            ({"protocol": "icmp", "port_range_min": 1, "port_range_max": 256}, 400,
             "Invalid value for ICMP code"),
            ({"protocol": "icmp", "port_range_max": 6}, 400,
             "ICMP type (port-range-min) is missing"),
            ({"protocol": "icmp", "port_range_min": 300, "port_range_max": 1}, 400,
             "Invalid value for ICMP type"),
            ({"protocol": "gre", "port_range_min": 1}, 400, "for port range"),
            ({"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}, 400,
             "Conflicting value ethertype"),
        ]
        for body, code, text in cases:
            reply = await self.rule(g["id"], code=code, **body)
            self.assertIn(text, reply["NeutronError"]["message"], body)
        both = {"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": g["id"]}
        await self.rule(g["id"], code=400, **both)
        await self.rule("00000000-0000-0000-0000-000000000000", code=404)
        # Another project's group is neither a parent nor a remote.
        await self.rule(g["id"], token=self.bob_token, code=404)
        bobs = await self.group("bobs", self.bob_token)
        await self.rule(g["id"], code=404, remote_group_id=bobs["id"])


class PortTests(SecurityGroupCase):
    async def network(self) -> str:
        code, reply = await self.net("POST", "/networks", None, {"network": {"name": "n"}})
        network_id: str = reply["network"]["id"]
        code, reply = await self.net("POST", "/subnets", None, {"subnet": {
            "network_id": network_id, "cidr": "10.0.0.0/24", "ip_version": 4}})
        self.assertEqual(code, 201, reply)
        return network_id

    async def test_ports_join_the_default_group_or_those_named(self):
        network = await self.network()
        code, reply = await self.net("POST", "/ports", None,
                                     {"port": {"network_id": network}})
        self.assertEqual(code, 201, reply)
        code, groups = await self.net("GET", "/security-groups?name=default")
        default = groups["security_groups"][0]["id"]
        self.assertEqual(reply["port"]["security_groups"], [default])
        web = await self.group()
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": network, "security_groups": [web["id"]]}})
        self.assertEqual(reply["port"]["security_groups"], [web["id"]])
        port = reply["port"]["id"]
        code, reply = await self.net("DELETE", f"/security-groups/{web['id']}")
        self.assertEqual(code, 409, reply)
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": network, "security_groups": ["00000000-0000-0000-0000-0"]}})
        self.assertEqual(code, 404, reply)
        bobs = await self.group("bobs", self.bob_token)
        code, reply = await self.net("PUT", f"/ports/{port}", None,
                                     {"port": {"security_groups": [bobs["id"]]}})
        self.assertEqual(code, 404, reply)
        code, reply = await self.net("PUT", f"/ports/{port}", None,
                                     {"port": {"port_security_enabled": False}})
        self.assertEqual(code, 409, reply)
        code, reply = await self.net("PUT", f"/ports/{port}", None, {"port": {
            "port_security_enabled": False, "security_groups": []}})
        self.assertEqual((code, reply["port"]["security_groups"]), (200, []), reply)
        code, reply = await self.net("POST", "/ports", None, {"port": {
            "network_id": network, "port_security_enabled": False,
            "security_groups": [web["id"]]}})
        self.assertEqual(code, 400, reply)
        code, reply = await self.net("DELETE", f"/security-groups/{web['id']}")
        self.assertEqual(code, 204, reply)


class NodeTagTests(SecurityGroupCase):
    def test_node_tags(self):
        port = Port(id=7, network_id=1, userid="u", project="p", mac="aa:00:00:00:00:01")
        rules = [SecurityRule(id="1", group_id="g", project="p", direction="ingress",
                              ethertype="IPv4", protocol="tcp", port_range_min=22,
                              port_range_max=22),
                 SecurityRule(id="2", group_id="g", project="p", direction="egress",
                              ethertype="IPv6"),
                 SecurityRule(id="3", group_id="g", project="p", direction="ingress",
                              ethertype="IPv4", protocol="icmp", port_range_min=8,
                              port_range_max=0, remote_ip_prefix="192.0.2.0/24"),
                 SecurityRule(id="4", group_id="g", project="p", direction="ingress",
                              ethertype="IPv4", protocol="udp", remote_group_id="h"),
                 SecurityRule(id="5", group_id="g", project="p", direction="ingress",
                              ethertype="IPv4", protocol="dccp", port_range_min=5,
                              port_range_max=6),
                 SecurityRule(id="6", group_id="g", project="p", direction="ingress",
                              ethertype="IPv4", protocol="tcp", port_range_min=1000,
                              port_range_max=2000)]
        tags = security.node_tags(port, rules, {"h": ["10.0.0.5", "2001:db8::5"]})
        self.assertEqual(tags, [
            "snf:sg:snf-nic-7:on",
            "snf:sg:snf-nic-7:in4:tcp:22:0.0.0.0/0",
            "snf:sg:snf-nic-7:out6:any:any:::/0",
            "snf:sg:snf-nic-7:in4:icmp:8.0:192.0.2.0/24",
            "snf:sg:snf-nic-7:in4:udp:any:10.0.0.5/32",
            "snf:sg:snf-nic-7:in4:tcp:1000-2000:0.0.0.0/0",
        ])
        self.assertTrue(all(len(t) <= 128 for t in tags))
        off = Port(id=7, network_id=1, userid="u", project="p", mac="aa:00:00:00:00:01",
                   port_security=False)
        self.assertEqual(security.node_tags(off, rules, {}), [])

    async def test_servers_carry_their_rules_and_follow_changes(self):
        """A server made on a network carries its default group's rules as
        instance tags from its create job on; a rule added later, and a
        second member joining the group, reach its instance."""
        s = self.stack
        code, reply = await self.net("POST", "/networks", None, {"network": {"name": "n"}})
        network = reply["network"]["id"]
        await self.net("POST", "/subnets", None, {"subnet": {
            "network_id": network, "cidr": "10.0.0.0/24", "ip_version": 4}})

        async def server() -> tuple[int, str]:
            code, reply = await self.nova("POST", "/servers", {"server": {
                "name": "vm", "imageRef": s.image.id,
                "flavorRef": s.flavors["small"].flavorid, "networks": [{"uuid": network}]}})
            self.assertEqual(code, 202, reply)
            await s.follow_all()
            server_id = int(reply["server"]["id"])
            ports = (await s.server(server_id)).ports
            return server_id, ports[0].ips[0].address

        async def tags(server_id: int) -> set[str]:
            found = await s.rapi_client().instance(f"snf-{server_id}")
            return {t for t in found["tags"] if t.startswith("snf:sg:")}

        first, first_ip = await server()
        port = (await s.server(first)).ports[0]
        nic = port.nic_name
        self.assertEqual(await tags(first), {
            f"snf:sg:{nic}:on", f"snf:sg:{nic}:out4:any:any:0.0.0.0/0",
            f"snf:sg:{nic}:out6:any:any:::/0", f"snf:sg:{nic}:in4:any:any:{first_ip}/32"})
        second, second_ip = await server()
        await s.follow_all()
        self.assertIn(f"snf:sg:{nic}:in4:any:any:{second_ip}/32", await tags(first))
        default = port.security_groups[0]
        mark = await s.follow_all()
        await self.rule(default, protocol="tcp", port_range_min=22, port_range_max=22)
        # The no-op modify that runs the nodes' hooks waits for the tag jobs.
        jobs = [await s.rapi_client().job(int(j["id"]))
                for j in await s.rapi_client().jobs() if int(j["id"]) > mark]
        ops = {int(j["id"]): j["ops"][0] for j in jobs}
        modifies = [op for op in ops.values() if op.get("OP_ID") == "OP_INSTANCE_SET_PARAMS"]
        self.assertTrue(modifies, ops)
        for op in modifies:
            waits = [d[0] for d in op.get("depends") or []]
            self.assertTrue(waits, op)
            self.assertTrue(all(ops[w].get("OP_ID") == "OP_TAGS_SET" for w in waits), ops)
        await s.follow_all()
        self.assertIn(f"snf:sg:{nic}:in4:tcp:22:0.0.0.0/0", await tags(first))
        self.assertIn(f"snf:sg:snf-nic-{(await s.server(second)).ports[0].id}"
                      ":in4:tcp:22:0.0.0.0/0", await tags(second))
        # The second server goes: its address leaves the first one's rules
        # when Ganeti reports it removed.
        code, reply = await self.nova("DELETE", f"/servers/{second}")
        self.assertEqual(code, 204, reply)
        await s.follow_all()
        await s.follow_all()   # the tag jobs the removal's event submitted
        self.assertNotIn(f"snf:sg:{nic}:in4:any:any:{second_ip}/32", await tags(first))
        self.assertIn(f"snf:sg:{nic}:in4:any:any:{first_ip}/32", await tags(first))
        # Tags lost (a delivery that failed, a hand edit): the reconciler
        # finds them and delivers them again.
        lost = f"snf:sg:{nic}:in4:tcp:22:0.0.0.0/0"
        await s.follow(await s.rapi_client().delete_tags(f"snf-{first}", [lost]))
        reconciler = s.service.reconciler
        reconciler.settle = 0.0
        report = await reconciler.reconcile(fix={"unsynced"})
        self.assertIn((first, "security-group tags differ from the database's"
                              " (0 stale, 1 missing)"), report.unsynced)
        self.assertIn((first, "delivered its security-group tags"), report.fixed)
        await s.follow_all()
        self.assertIn(lost, await tags(first))
        report = await reconciler.reconcile()
        self.assertEqual([u for u in report.unsynced if u[0] == first], [])


class NovaProxyTests(SecurityGroupCase):
    """``os-security-groups`` and friends in Nova 2.1's shapes."""

    async def test_groups_and_rules(self):
        code, reply = await self.nova("POST", "/os-security-groups", {
            "security_group": {"name": "web", "description": "web servers"}})
        self.assertEqual(code, 200, reply)
        web = reply["security_group"]
        self.assertEqual(set(web), {"id", "name", "description", "tenant_id", "rules"})
        self.assertEqual(web["rules"], [])   # Neutron's egress rules are not Nova's
        code, reply = await self.nova("GET", "/os-security-groups")
        self.assertEqual({g["name"] for g in reply["security_groups"]}, {"default", "web"})
        code, reply = await self.nova("POST", "/os-security-group-rules", {
            "security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "tcp",
                                    "from_port": 22, "to_port": 22}})
        self.assertEqual(code, 200, reply)
        rule = reply["security_group_rule"]
        self.assertEqual((rule["ip_range"], rule["group"], rule["from_port"]),
                         ({"cidr": "0.0.0.0/0"}, {}, 22))
        code, reply = await self.nova("POST", "/os-security-group-rules", {
            "security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "tcp",
                                    "from_port": 80, "to_port": 80, "cidr": "10.2.3.124/24"}})
        self.assertEqual(reply["security_group_rule"]["ip_range"], {"cidr": "10.2.3.124/24"})
        code, reply = await self.nova("POST", "/os-security-group-rules", {
            "security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "icmp",
                                    "from_port": -1, "to_port": -1}})
        self.assertEqual((code, reply["security_group_rule"]["from_port"]), (200, -1))
        code, reply = await self.nova("GET", "/os-security-groups")
        default = next(g for g in reply["security_groups"] if g["name"] == "default")
        code, reply = await self.nova("POST", "/os-security-group-rules", {
            "security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "udp",
                                    "from_port": 53, "to_port": 53,
                                    "group_id": default["id"]}})
        self.assertEqual(reply["security_group_rule"]["group"],
                         {"name": "default", "tenant_id": self.alice})
        bad = [({"parent_group_id": "not-a-uuid", "ip_protocol": "tcp", "from_port": 22,
                 "to_port": 22}, 400),
               ({"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 22,
                 "to_port": 22}, 400),   # a duplicate
               ({"parent_group_id": web["id"], "ip_protocol": "nope", "from_port": 22,
                 "to_port": 22}, 400),
               ({"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 65536,
                 "to_port": 65536}, 400),
               ({"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 22,
                 "to_port": 21}, 400),
               ({"parent_group_id": "00000000-0000-0000-0000-000000000000",
                 "ip_protocol": "tcp", "from_port": 22, "to_port": 22}, 404)]
        for body, want in bad:
            code, reply = await self.nova("POST", "/os-security-group-rules",
                                          {"security_group_rule": body})
            self.assertEqual(code, want, (body, reply))
        code, reply = await self.nova("GET", f"/os-security-groups/{web['id']}")
        self.assertEqual(len(reply["security_group"]["rules"]), 4)
        code, reply = await self.nova("PUT", f"/os-security-groups/{web['id']}", {
            "security_group": {"name": "www", "description": "x"}})
        self.assertEqual((code, reply["security_group"]["name"]), (200, "www"))
        code, _ = await self.nova("DELETE", f"/os-security-groups/{default['id']}")
        self.assertEqual(code, 400)
        code, _ = await self.nova("DELETE", f"/os-security-group-rules/{rule['id']}")
        self.assertEqual(code, 202)
        code, _ = await self.nova("DELETE", f"/os-security-group-rules/{rule['id']}")
        self.assertEqual(code, 404)
        code, _ = await self.nova("DELETE", f"/os-security-groups/{web['id']}",
                                  token=self.bob_token)
        self.assertEqual(code, 404)
        code, _ = await self.nova("DELETE", f"/os-security-groups/{web['id']}")
        self.assertEqual(code, 202)

    async def test_servers_in_groups(self):
        s = self.stack
        code, reply = await self.net("POST", "/networks", None, {"network": {"name": "n"}})
        network = reply["network"]["id"]
        await self.net("POST", "/subnets", None, {"subnet": {
            "network_id": network, "cidr": "10.0.0.0/24", "ip_version": 4}})
        code, reply = await self.nova("POST", "/os-security-groups", {
            "security_group": {"name": "web", "description": ""}})
        web = reply["security_group"]
        code, reply = await self.nova("POST", "/servers", {"server": {
            "name": "vm", "imageRef": s.image.id, "flavorRef": s.flavors["small"].flavorid,
            "networks": [{"uuid": network}], "security_groups": [{"name": "nope"}]}})
        self.assertEqual(code, 400, reply)
        code, reply = await self.nova("POST", "/servers", {"server": {
            "name": "vm", "imageRef": s.image.id, "flavorRef": s.flavors["small"].flavorid,
            "networks": [{"uuid": network}], "security_groups": [{"name": "web"}]}})
        self.assertEqual(code, 202, reply)
        server = reply["server"]["id"]
        await s.follow_all()
        code, reply = await self.nova("GET", f"/servers/{server}/os-security-groups")
        self.assertEqual([g["name"] for g in reply["security_groups"]], ["web"])
        code, reply = await self.nova("GET", f"/servers/{server}")
        self.assertEqual(reply["server"]["security_groups"], [{"name": "web"}])
        code, reply = await self.nova("POST", f"/servers/{server}/action",
                                      {"addSecurityGroup": {"name": "default"}})
        self.assertEqual(code, 202, reply)
        code, reply = await self.nova("GET", f"/servers/{server}")
        self.assertEqual(reply["server"]["security_groups"],
                         [{"name": "web"}, {"name": "default"}])
        code, reply = await self.nova("POST", f"/servers/{server}/action",
                                      {"addSecurityGroup": {"name": "nope"}})
        self.assertEqual(code, 404, reply)
        code, reply = await self.nova("DELETE", f"/os-security-groups/{web['id']}")
        self.assertEqual(code, 400, reply)
        code, reply = await self.nova("POST", f"/servers/{server}/action",
                                      {"removeSecurityGroup": {"name": "web"}})
        self.assertEqual(code, 202, reply)
        code, reply = await self.nova("POST", f"/servers/{server}/action",
                                      {"removeSecurityGroup": {"name": "web"}})
        self.assertEqual(code, 400, reply)
        await s.follow_all()
        found = await s.rapi_client().instance(f"snf-{server}")
        nic = (await s.server(int(server))).ports[0].nic_name
        self.assertIn(f"snf:sg:{nic}:on", found["tags"])
        code, reply = await self.nova("DELETE", f"/os-security-groups/{web['id']}")
        self.assertEqual(code, 202, reply)
