"""The embedded default's public network: seeded once with the demo
content, and where servers that name no network are connected."""

from __future__ import annotations

import ipaddress
import os

from twisted.trial import unittest

from snfd import tap
from snfd.cyclades.networks import store
from snfd.testing.compute import compute_stack


class DemoNetworkTests(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self, overrides={
            ("cyclades", "default_server_networks"): "SNF:ANY_PUBLIC"})

    async def public(self) -> list:
        found: list = await self.stack.db.run("test.public", store.networks_txn,
                                              public=True)
        return found

    async def test_seeded_once(self):
        """The first seeding makes one public floating-IP pool with an IPv4
        and an IPv6 subnet in documentation ranges; a second (the next
        start) makes nothing more."""
        backends = self.stack.service.backends
        await backends.seed_demo()
        await backends.seed_demo()
        (network,) = await self.public()
        self.assertEqual((network.name, network.public, network.floating_ip_pool,
                          network.external), ("public", True, True, True))
        subnets = await self.stack.db.run("test.subnets", store.subnets_txn, [network.id])
        self.assertEqual([(s.ipversion, s.cidr, s.gateway) for s in subnets], [
            (4, "192.0.2.0/24", "192.0.2.1"), (6, "2001:db8:100::/64", "2001:db8:100::1")])

    async def test_completed_after_an_interrupted_start(self):
        """A demo network left without its subnets (a start stopped half-way)
        gets them at the next start; an operator's own public network
        stops the seeding altogether."""
        networks = self.stack.service.networks
        half = await networks.admin_create_network(name="public", flavor="CUSTOM",
                                                   public=True, floating_ip_pool=True)
        await self.stack.service.backends.seed_demo()
        subnets = await self.stack.db.run("test.subnets", store.subnets_txn, [half.id])
        self.assertEqual(len(subnets), 2)
        await networks.delete_network("", half.id, admin=True)
        await networks.admin_create_network(name="wan", flavor="CUSTOM", public=True)
        await self.stack.service.backends.seed_demo()
        self.assertEqual([n.name for n in await self.public()], ["wan"])

    async def test_server_without_networks_gets_a_public_port(self):
        """With SNF:ANY_PUBLIC a server that names no network is connected
        to the demo network: an IPv4 address of its pool and its SLAAC
        IPv6 address, ACTIVE once Ganeti has it."""
        s = self.stack
        await s.service.backends.seed_demo()
        _, token = await s.user("alice")
        code, reply, _ = await s.call("POST", "/servers", token, {"server": {
            "name": "vm", "imageRef": s.image.id, "flavorRef": s.flavors["small"].id}})
        self.assertEqual(code, 202, reply)
        await s.follow_all()
        ports = await s.service.networks.server_ports([int(reply["server"]["id"])])
        (port,) = ports[int(reply["server"]["id"])]
        (network,) = await self.public()
        self.assertEqual((port.network_id, port.state), (network.id, "ACTIVE"))
        self.assertIn(ipaddress.ip_address(port.address(4)),
                      ipaddress.ip_network("192.0.2.0/24"))
        self.assertIn(ipaddress.ip_address(port.address(6)),
                      ipaddress.ip_network("2001:db8:100::/64"))



class EmbeddedDefaultConfigTests(unittest.TestCase):
    def load(self, **env: str):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SNFD_")}
        environ.update(env, SNFD_STATE_DIR=self.mktemp())
        self.patch(os, "environ", environ)
        config, _ = tap.load(None)
        return config["cyclades"].default_server_networks

    def test_any_public_on_the_embedded_default(self):
        """Without a config file and a database URL (the embedded default)
        servers that name no network go to SNF:ANY_PUBLIC; a node on a
        cluster database keeps the key's default (no ports)."""
        self.assertEqual(self.load(), ("SNF:ANY_PUBLIC",))
        self.assertFalse(self.load(SNFD_DATABASE_URL="postgresql://db.example/snfd"))
