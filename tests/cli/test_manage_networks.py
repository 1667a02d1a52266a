"""snf-manage's network commands: network-create/list/modify/remove,
subnet-create/list and reconcile-pools, on a real PostgreSQL."""

from __future__ import annotations

import json

import psycopg2
from twisted.trial import unittest

from snfd.cli import networks
from snfd.testing.postgres import fresh_database
from tests.cli.test_manage import RunManage, _on_test_reactor

OWNER = "0e1d3b57-6c1b-4b0a-9a43-5c9bd8a1f001"


class NetworkCommandCase(RunManage, unittest.TestCase):
    """A fresh database with the compute tables; snf-manage run against it."""

    async def setUp(self) -> None:
        self.dsn = fresh_database(self)
        self.env = {"SNFD_DATABASE_URL": self.dsn, "SNFD_PLUGINS": "identity,pithos,cyclades",
                    "SNFD_STATE_DIR": self.mktemp()}
        self.assertEqual((await self.manage("upgrade"))[0], 0)

    async def manage(self, *argv: str) -> tuple[int, str, str]:
        self.patch(networks, "run_with_reactor", _on_test_reactor)
        return await self.run_manage(*argv, env=self.env)

    async def ok(self, *argv: str) -> str:
        code, out, err = await self.manage(*argv)
        self.assertEqual(code, 0, err)
        return out

    async def fails(self, *argv: str) -> str:
        """The command's one-line error (it must exit 1)."""
        code, out, err = await self.manage(*argv)
        self.assertEqual(code, 1, out)
        self.assertTrue(err.startswith("snf-manage: "), err)
        return err

    def sql(self, statement: str, *args: object) -> list[tuple]:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    async def public(self) -> int:
        return int(await self.ok(
            "network-create", "--name", "internet", "--flavor", "IP_LESS_ROUTED", "--public",
            "--floating-ip-pool", "--subnet", "203.0.113.0/24", "--gateway", "203.0.113.1",
            "--allocation-pool", "203.0.113.10,203.0.113.20",
            "--allocation-pool", "203.0.113.30,203.0.113.40",
            "--subnet6", "2001:db8:7::/64"))


class NetworkCommandTests(NetworkCommandCase):
    async def test_public_network_with_subnets(self):
        """network-create --public --floating-ip-pool prints the id of a
        public floating pool with an IPv4 subnet (the given gateway and
        ranges) and an IPv6 one; network-list and subnet-list show them."""
        network_id = await self.public()
        listed = json.loads(await self.ok("network-list", "--json"))
        self.assertEqual(len(listed), 1)
        n = listed[0]
        self.assertEqual((n["id"], n["name"], n["flavor"], n["public"], n["external"],
                          n["floating_ip_pool"], n["owner"], n["link"], n["state"]),
                         (network_id, "internet", "IP_LESS_ROUTED", True, True, True, None,
                          f"snf_rt_{network_id}", "ACTIVE"))
        self.assertEqual([s["cidr"] for s in n["subnets"]],
                         ["203.0.113.0/24", "2001:db8:7::/64"])
        table = (await self.ok("network-list")).splitlines()
        self.assertEqual(table[0].split(), ["ID", "NAME", "FLAVOR", "PUBLIC", "FLOATING",
                                            "LINK", "MAC", "PREFIX", "SUBNETS", "STATE"])
        self.assertEqual(table[1].split(), [
            str(network_id), "internet", "IP_LESS_ROUTED", "yes", "yes",
            f"snf_rt_{network_id}", "aa:00:0", "203.0.113.0/24,2001:db8:7::/64", "ACTIVE"])
        subnets = json.loads(await self.ok("subnet-list", "--network", str(network_id),
                                           "--json"))
        self.assertEqual([(s["ip_version"], s["gateway"], s["allocation_pools"])
                          for s in subnets], [
            (4, "203.0.113.1", [{"start": "203.0.113.10", "end": "203.0.113.20"},
                                {"start": "203.0.113.30", "end": "203.0.113.40"}]),
            (6, "2001:db8:7::1", [{"start": "2001:db8:7::2",
                                   "end": "2001:db8:7:0:ffff:ffff:ffff:ffff"}])])
        self.assertIn("203.0.113.10-203.0.113.20,203.0.113.30-203.0.113.40",
                      await self.ok("subnet-list"))

    async def test_private_networks_take_from_the_pools(self):
        """A user's MAC_FILTERED network takes the first usable MAC prefix
        of the pool and a PHYSICAL_VLAN one the first bridge; both belong
        to the owner (and its base project)."""
        filtered = int(await self.ok("network-create", "--name", "lab", "--flavor",
                                     "MAC_FILTERED", "--owner", OWNER))
        vlan = int(await self.ok("network-create", "--name", "vlan", "--flavor",
                                 "PHYSICAL_VLAN", "--owner", OWNER, "--project", "p-1",
                                 "--subnet", "10.9.0.0/24", "--no-gateway"))
        by_id = {n["id"]: n for n in json.loads(await self.ok("network-list", "--json"))}
        self.assertEqual((by_id[filtered]["mac_prefix"], by_id[filtered]["link"],
                          by_id[filtered]["owner"], by_id[filtered]["project"],
                          by_id[filtered]["public"]), ("aa:00:1", "prv0", OWNER, OWNER, False))
        self.assertEqual((by_id[vlan]["mac_prefix"], by_id[vlan]["link"],
                          by_id[vlan]["project"]), ("aa:00:0", "prv1", "p-1"))
        subnet = json.loads(await self.ok("subnet-list", "--json", "--network", str(vlan)))[0]
        self.assertEqual((subnet["gateway"], subnet["allocation_pools"]),
                         (None, [{"start": "10.9.0.1", "end": "10.9.0.254"}]))
        self.assertEqual(json.loads(await self.ok("network-list", "--public", "--json")), [])

    async def test_create_refuses_bad_requests(self):
        """network-create says what is wrong in one line, and a subnet it
        refuses leaves no network behind."""
        cases = [
            (("--flavor", "CUSTOM"), "a private network needs --owner"),
            (("--flavor", "CUSTOM", "--public", "--owner", OWNER), "no --owner"),
            (("--flavor", "CUSTOM", "--owner", OWNER, "--floating-ip-pool"),
             "--floating-ip-pool needs --public"),
            (("--flavor", "CUSTOM", "--public", "--floating-ip-pool"),
             "needs an IPv4 --subnet"),
            (("--flavor", "CUSTOM", "--public", "--subnet", "2001:db8::/64"),
             "not an IPv4 network"),
            (("--flavor", "CUSTOM", "--public", "--subnet", "10.0.0.0/24", "--gateway",
              "10.0.0.5", "--allocation-pool", "10.0.0.2,10.0.0.9"),
             "The gateway 10.0.0.5 is inside the allocation pool"),
            (("--flavor", "CUSTOM", "--public", "--subnet", "10.0.0.0/24",
              "--allocation-pool", "10.1.0.2,10.1.0.9"), "is not within"),
            (("--flavor", "CUSTOM", "--public", "--mac-prefix", "zz:00:0"),
             "not a 5-hex-digit MAC prefix"),
        ]
        for argv, message in cases:
            err = await self.fails("network-create", "--name", "x", *argv)
            self.assertIn(message, err, argv)
        self.assertEqual(await self.ok("network-list"), "no networks\n")

    async def test_modify(self):
        """network-modify renames and shares a network and makes a public
        one a floating-IP pool or not; a private one cannot be a pool."""
        public = await self.public()
        out = await self.ok("network-modify", str(public), "--name", "wan",
                            "--floating-ip-pool", "no")
        self.assertEqual(out, f"network {public}: wan public=yes floating_ip_pool=no"
                              " shared=no\n")
        private = int(await self.ok("network-create", "--name", "lab", "--flavor",
                                    "CUSTOM", "--owner", OWNER))
        self.assertIn("not public", await self.fails("network-modify", str(private),
                                                     "--floating-ip-pool", "yes"))
        self.assertIn("shared=yes", await self.ok("network-modify", str(private),
                                                  "--shared", "yes"))
        self.assertIn("nothing to change", await self.fails("network-modify", str(private)))
        self.assertIn("Network 999 could not be found",
                      await self.fails("network-modify", "999", "--name", "x"))

    async def test_remove(self):
        """network-remove refuses a network with ports (a clear error, exit
        1) and removes one without; a removed network is no longer listed."""
        network_id = await self.public()
        self.sql("INSERT INTO cyclades_ports (network_id, userid, project, mac)"
                 " VALUES (%s, %s, %s, 'aa:00:00:00:00:01')", network_id, OWNER, OWNER)
        err = await self.fails("network-remove", str(network_id))
        self.assertIn(f"network {network_id}: there are one or more ports still in use", err)
        self.sql("DELETE FROM cyclades_ports")
        self.assertEqual(await self.ok("network-remove", str(network_id)),
                         f"removed network {network_id}\n")
        self.assertEqual(await self.ok("network-list"), "no networks\n")
        self.assertIn("could not be found", await self.fails("network-remove",
                                                             str(network_id)))

    async def test_subnet_create(self):
        """subnet-create adds a subnet (IP version from the CIDR) and prints
        its id; a subnet the rules refuse is a one-line error."""
        network_id = int(await self.ok("network-create", "--name", "lab", "--flavor",
                                       "CUSTOM", "--owner", OWNER))
        subnet_id = int(await self.ok("subnet-create", "--network", str(network_id),
                                      "--cidr", "192.168.5.0/24", "--gateway",
                                      "192.168.5.254", "--name", "v4",
                                      "--allocation-pool", "192.168.5.10,192.168.5.19"))
        (found,) = json.loads(await self.ok("subnet-list", "--json"))
        self.assertEqual((found["id"], found["network_id"], found["name"], found["cidr"],
                          found["gateway"], found["allocation_pools"]),
                         (subnet_id, network_id, "v4", "192.168.5.0/24", "192.168.5.254",
                          [{"start": "192.168.5.10", "end": "192.168.5.19"}]))
        self.assertIn("Invalid cidr", await self.fails(
            "subnet-create", "--network", str(network_id), "--cidr", "192.168.5.0"))
        self.assertIn("could not be found", await self.fails(
            "subnet-create", "--network", "999", "--cidr", "10.0.0.0/24"))


class ReconcilePoolsTests(NetworkCommandCase):
    async def test_reconcile_pools(self):
        """reconcile-pools reports each problem on a line (exit 1): a fixed
        address without a port, one outside its pools, an allocated
        gateway, an address twice on a network, indexes outside their
        pools; a MAC outside its network's prefix is only a warning.
        --fix removes the portless fixed address and keeps the floating
        one; once all is repaired it exits 0."""
        self.assertEqual(await self.ok("reconcile-pools"),
                         "0 networks, 0 subnets, 0 addresses, 0 ports: 0 problems, 0 fixed,"
                         " 0 warnings\n")
        public = await self.public()
        vlan = int(await self.ok("network-create", "--name", "vlan", "--flavor",
                                 "PHYSICAL_VLAN", "--owner", OWNER, "--subnet",
                                 "10.1.0.0/24"))
        v4 = {r[1]: r[0] for r in self.sql(
            "SELECT id, network_id FROM cyclades_subnets WHERE ipversion = 4")}
        self.assertEqual(await self.ok("reconcile-pools"),
                         "2 networks, 3 subnets, 0 addresses, 0 ports: 0 problems, 0 fixed,"
                         " 0 warnings\n")

        def port(network_id: int, mac: str) -> int:
            return int(self.sql("INSERT INTO cyclades_ports (network_id, userid, project, mac)"
                                " VALUES (%s, %s, %s, %s) RETURNING id",
                                network_id, OWNER, OWNER, mac)[0][0])

        def ip(network_id: int, address: str, port_id: int | None = None,
               floating: bool = False) -> int:
            return int(self.sql(
                "INSERT INTO cyclades_ips (subnet_id, network_id, address, port_id, userid,"
                " project, floating) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                v4[network_id], network_id, address, port_id, OWNER, OWNER, floating)[0][0])

        good = port(vlan, "aa:00:00:12:34:56")
        ip(vlan, "10.1.0.2", good)
        between = ip(public, "203.0.113.50", port(public, "aa:00:00:00:00:02"))
        orphan = ip(vlan, "10.1.0.3")                       # fixed, no port
        held = ip(public, "203.0.113.11", floating=True)    # a floating IP, unattached
        users = port(vlan, "02:00:00:00:00:01")             # a MAC its user gave
        gateway = ip(vlan, "10.1.0.1", users)
        self.sql("UPDATE cyclades_networks SET link_index = 30 WHERE id = %s", vlan)
        code, out, _ = await self.manage("reconcile-pools")
        self.assertEqual(code, 1, out)
        self.assertEqual(out.splitlines(), [
            f"network {vlan}: bridge index 30 is outside the pool (1..20)",
            f"address 203.0.113.50 (id {between}): outside the allocation pools of"
            f" subnet {v4[public]} (203.0.113.0/24)",
            f"address 10.1.0.3 (id {orphan}): a fixed address without a port",
            f"address 10.1.0.1 (id {gateway}): the gateway of subnet {v4[vlan]} is"
            " allocated",
            f"warning: port {users}: MAC 02:00:00:00:00:01 is outside network {vlan}'s"
            " prefix aa:00:0 (given by its user?)",
            "2 networks, 3 subnets, 5 addresses, 3 ports: 4 problems, 0 fixed, 1 warnings",
        ])

        code, out, _ = await self.manage("reconcile-pools", "--fix")
        self.assertEqual(code, 1)
        self.assertEqual(out.splitlines()[0], f"fixed: address 10.1.0.3 (id {orphan}): a"
                                              " fixed address without a port (removed)")
        self.assertTrue(out.endswith("3 ports: 3 problems, 1 fixed, 1 warnings\n"), out)
        self.assertEqual(self.sql("SELECT id FROM cyclades_ips WHERE floating"), [(held,)])

        self.sql("UPDATE cyclades_networks SET link_index = 1 WHERE id = %s", vlan)
        self.sql("DELETE FROM cyclades_ips WHERE host(address) IN ('203.0.113.50',"
                 " '10.1.0.1')")
        code, out, _ = await self.manage("reconcile-pools", "--fix")
        self.assertEqual((code, out.splitlines()[-1]),
                         (0, "2 networks, 3 subnets, 2 addresses, 3 ports: 0 problems,"
                             " 0 fixed, 1 warnings"))

    async def test_duplicates_and_bad_prefixes(self):
        """What the unique indexes make impossible is still reported (two
        networks on one MAC-prefix index, an address allocated twice), and
        so are a multicast prefix and an index outside the pool."""
        a = int(await self.ok("network-create", "--name", "a", "--flavor", "MAC_FILTERED",
                              "--owner", OWNER))
        b = int(await self.ok("network-create", "--name", "b", "--flavor", "MAC_FILTERED",
                              "--owner", OWNER))
        self.sql("DROP INDEX cyclades_networks_mac_index")
        self.sql("UPDATE cyclades_networks SET mac_index = 1, mac_prefix = 'aa:00:1'")
        c = int(await self.ok("network-create", "--name", "c", "--flavor", "MAC_FILTERED",
                              "--owner", OWNER))
        self.sql("UPDATE cyclades_networks SET mac_index = 9000, mac_prefix = 'ab:32:8'"
                 " WHERE id = %s", c)
        code, out, _ = await self.manage("reconcile-pools")
        self.assertEqual(code, 1)
        self.assertEqual(out.splitlines()[:2], [
            f"MAC prefix index 1 is held by networks {a}, {b}",
            f"network {c}: MAC prefix ab:32:8 is a multicast prefix",
        ])
        self.assertIn(f"network {c}: MAC prefix index 9000 is outside the pool (1..4095)",
                      out)
        public = await self.public()
        self.sql("ALTER TABLE cyclades_ips DROP CONSTRAINT cyclades_ips_subnet_id_address_key")
        ids = [self.sql("INSERT INTO cyclades_ips (subnet_id, network_id, address, userid,"
                        " project, floating) SELECT id, network_id, '203.0.113.12', %s, %s,"
                        " true FROM cyclades_subnets WHERE ipversion = 4 RETURNING id",
                        OWNER, OWNER)[0][0] for _ in range(2)]
        code, out, _ = await self.manage("reconcile-pools")
        self.assertIn(f"address 203.0.113.12 is allocated 2 times on network {public}"
                      f" (ids {ids[0]}, {ids[1]})", out.splitlines())
