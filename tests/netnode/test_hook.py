"""The NIC scripts run for real, as root, in network namespaces the tests
create (see ``lab``): bridge membership, nftables tables, routes, and which
traffic passes between "VMs"; and that ifdown leaves nothing."""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from tests.netnode.lab import Lab, unavailable

SHARE = Path(__file__).resolve().parents[2] / "share" / "ganeti"
_WHY_NOT = unavailable()

NET1 = "aa:00:01"  # two private networks sharing bridge prv0
NET2 = "aa:00:02"


def ganeti_env(tap: str, mac: str, ip: str, link: str = "prv0", mode: str = "bridged",
               network_tags: str = "", tags: str = "", **extra: str) -> dict[str, str]:  # fmt: skip
    """The environment Ganeti 3.0's ConfigureNIC gives a NIC script."""
    env = {
        "INSTANCE": f"snf-{tap}",
        "MAC": mac,
        "MODE": mode,
        "INTERFACE": tap,
        "INTERFACE_INDEX": "0",
        "INTERFACE_UUID": f"uuid-{tap}",
        "INTERFACE_NAME": f"snf-nic-{tap}",
        "TAGS": tags,
        "IP": ip,
        "LINK": link,
        "NETWORK_NAME": "snf-net-1",
        "NETWORK_UUID": "net-uuid-1",
        "NETWORK_TAGS": network_tags,
        "NETWORK_SUBNET": "10.9.0.0/24",
    }
    if mode == "bridged":
        env["BRIDGE"] = link
    env.update(extra)
    return env


def private(tap: str, prefix: str, host: int, **extra: str) -> dict[str, str]:
    """A MAC_FILTERED NIC: address 10.9.0.<host>, MAC in ``prefix``."""
    return ganeti_env(tap, f"{prefix}:00:00:{host:02x}", f"10.9.0.{host}",
                      network_tags="private-filtered", NETWORK_MAC_PREFIX=prefix, **extra)  # fmt: skip


class NamespaceCase(unittest.TestCase):
    if _WHY_NOT:
        skip = _WHY_NOT

    def setUp(self) -> None:
        self.lab = Lab(self.addCleanup)

    def up(self, env: dict[str, str]) -> str:
        """ifup must succeed; returns its stderr."""
        result = self.lab.hook("ifup", env)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stderr

    def down(self, env: dict[str, str]) -> str:
        """ifdown must succeed; returns its stderr."""
        result = self.lab.hook("ifdown", env)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stderr


class BridgedTests(NamespaceCase):
    """Bridged flavors: CUSTOM, MAC_FILTERED and the firewall profiles."""

    def setUp(self) -> None:
        super().setUp()
        self.lab.bridge("prv0")
        self.a = self.lab.vm("a", "tapa", f"{NET1}:00:00:0a", "10.9.0.10/24")
        self.b = self.lab.vm("b", "tapb", f"{NET1}:00:00:0b", "10.9.0.11/24")
        self.c = self.lab.vm("c", "tapc", f"{NET2}:00:00:0c", "10.9.0.12/24")

    def test_custom_bridges_without_filters(self) -> None:
        """A CUSTOM NIC's tap joins LINK and comes up with no nftables
        table; VMs on the bridge reach each other; ifdown takes the tap off
        the bridge and down."""
        envs = [ganeti_env("tapa", f"{NET1}:00:00:0a", "10.9.0.10"),
                ganeti_env("tapc", f"{NET2}:00:00:0c", "10.9.0.12")]  # fmt: skip
        for env in envs:
            self.up(env)
        self.assertEqual(self.lab.members(), {"tapa", "tapc"})
        self.assertIn("UP", self.lab.link("tapa")["flags"])
        self.assertEqual(self.lab.tables(), set())
        self.assertTrue(self.lab.ping(self.a, "10.9.0.12"))
        for env in envs:
            self.down(env)
        self.assertEqual(self.lab.members(), set())
        self.assertNotIn("UP", self.lab.link("tapa")["flags"])

    def test_mac_filtered_isolates_private_networks(self) -> None:
        """On one shared bridge, VMs of the same MAC_FILTERED network talk,
        VMs of another (other MAC prefix) do not, and a VM that changes its
        MAC is cut off; ifdown leaves no table, chain or member."""
        envs = [private("tapa", NET1, 10), private("tapb", NET1, 11), private("tapc", NET2, 12)]
        for env in envs:
            self.up(env)
        self.assertEqual(self.lab.members(), {"tapa", "tapb", "tapc"})
        self.assertEqual(
            self.lab.tables(), {"bridge snf-tapa", "bridge snf-tapb", "bridge snf-tapc"}
        )
        self.assertIn(
            f"ether saddr & ff:ff:ff:00:00:00 != {NET1}:00:00:00 drop", self.lab.ruleset()
        )
        self.assertTrue(self.lab.ping(self.a, "10.9.0.11"))
        self.assertTrue(self.lab.ping(self.b, "10.9.0.10"))
        self.assertFalse(self.lab.ping(self.a, "10.9.0.12", timeout=1.5))
        self.assertFalse(self.lab.ping(self.c, "10.9.0.11", timeout=1.5))

        self.lab.sh(self.a, "ip", "link", "set", "eth0", "address", f"{NET1}:00:00:99")
        self.assertFalse(self.lab.ping(self.a, "10.9.0.11", timeout=1.5))

        for env in envs:
            self.down(env)
        self.assertEqual(self.lab.tables(), set())
        self.assertEqual(self.lab.ruleset().strip(), "")
        self.assertEqual(self.lab.members(), set())

    def test_limited_profile_allows_ssh_only(self) -> None:
        """Tag ``limited`` (API PROTECTED): new connections to the VM pass
        to port 22 only; ping passes; the VM's own outgoing connections
        work (their answers are not new connections)."""
        self.lab.serve(self.a, 22, 8080)
        self.lab.serve(self.b, 8080)
        self.up(private("tapa", NET1, 10, TAGS="synnefo:network:uuid-tapa:limited"))
        self.up(private("tapb", NET1, 11))
        self.assertTrue(self.lab.connects(self.b, "10.9.0.10", 22))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 8080, timeout=1.5))
        self.assertTrue(self.lab.ping(self.b, "10.9.0.10"))
        self.assertTrue(self.lab.connects(self.a, "10.9.0.11", 8080))

    def test_protected_profile_allows_no_new_connection(self) -> None:
        """Tag ``protected`` (API ENABLED): no new connection reaches the
        VM, not even SSH; ping and the VM's outgoing connections work. The
        profile is found by the NIC's name as well as its UUID."""
        self.lab.serve(self.a, 22)
        self.lab.serve(self.b, 8080)
        self.up(ganeti_env("tapa", f"{NET1}:00:00:0a", "10.9.0.10",
                           TAGS="other synnefo:network:snf-nic-tapa:protected"))  # fmt: skip
        self.up(ganeti_env("tapb", f"{NET1}:00:00:0b", "10.9.0.11"))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 22, timeout=1.5))
        self.assertTrue(self.lab.ping(self.b, "10.9.0.10"))
        self.assertTrue(self.lab.connects(self.a, "10.9.0.11", 8080))

    def test_unprotected_and_profile_change(self) -> None:
        """Tag ``unprotected`` (API DISABLED) filters nothing; running ifup
        again with another profile replaces the NIC's rules, and the
        second ifdown finds nothing to do."""
        self.lab.serve(self.a, 8080)
        env = ganeti_env("tapa", f"{NET1}:00:00:0a", "10.9.0.10",
                         TAGS="synnefo:network:uuid-tapa:limited")  # fmt: skip
        self.up(env)
        self.up(ganeti_env("tapb", f"{NET1}:00:00:0b", "10.9.0.11"))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 8080, timeout=1.5))
        env["TAGS"] = "synnefo:network:uuid-tapa:unprotected"
        self.up(env)
        self.assertEqual(self.lab.tables(), set())
        self.assertTrue(self.lab.connects(self.b, "10.9.0.10", 8080))
        self.down(env)
        self.assertEqual(self.down(env), "")

    def test_bad_environment_applies_nothing(self) -> None:
        """A missing or wrong variable, or a LINK that is no bridge, exits
        non-zero with one line on stderr, and nothing is applied."""
        good = private("tapa", NET1, 10)
        cases = [
            ({k: v for k, v in good.items() if k != "MAC"}, 2, "MAC is not set"),
            ({k: v for k, v in good.items() if k != "NETWORK_MAC_PREFIX"}, 2, "NETWORK_MAC_PREFIX"),
            ({**good, "MAC": f"{NET2}:00:00:0a"}, 2, "outside NETWORK_MAC_PREFIX"),
            ({**good, "MODE": "openvswitch"}, 2, "MODE='openvswitch'"),
            ({**good, "LINK": "nosuchbr"}, 1, "LINK=nosuchbr is not a bridge"),
            ({**good, "INTERFACE": "tapz"}, 1, "interface tapz does not exist"),
        ]
        for env, status, message in cases:
            result = self.lab.hook("ifup", env)
            self.assertEqual(result.returncode, status, result.stderr)
            self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
            self.assertIn(message, result.stderr)
        self.assertEqual(self.lab.tables(), set())
        self.assertEqual(self.lab.members(), set())

    def test_failure_midway_is_undone(self) -> None:
        """When the host refuses a step after the filters were applied (here:
        a bridge cannot join a bridge), ifup exits 1 and removes them again."""
        self.lab.bridge("prv1")
        result = self.lab.hook("ifup", private("prv1", NET1, 20))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("failed: ip link set dev prv1 master prv0", result.stderr)
        self.assertIn("undone", result.stderr.splitlines()[-1])
        self.assertEqual(self.lab.tables(), set())
        self.assertEqual(self.lab.members(), set())

    def test_ganeti_wrappers(self) -> None:
        """share/ganeti's kvm-ifup-custom and kvm-ifdown-custom run the
        module with SNFD_PYTHON, logging one line per action."""
        env = private("tapa", NET1, 10)
        up = self.lab.hook("ifup", env, script=str(SHARE / "kvm-ifup-custom"))
        self.assertEqual(up.returncode, 0, up.stderr)
        self.assertIn("snfd-netnode ifup tapa: ip link set dev tapa master prv0", up.stderr)
        self.assertEqual(self.lab.members(), {"tapa"})
        down = self.lab.hook("ifdown", env, script=str(SHARE / "kvm-ifdown-custom"))
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertEqual(
            down.stderr.splitlines(),
            [
                "snfd-netnode ifdown tapa: nft: delete tables of tapa",
                "snfd-netnode ifdown tapa: ip link set dev tapa nomaster",
                "snfd-netnode ifdown tapa: ip link set dev tapa down",
            ],
        )
        self.assertEqual(self.lab.tables(), set())


class RoutedTests(NamespaceCase):
    """IP_LESS_ROUTED: the node routes a VM's address, holding no address in
    the VM's network, between the VM's tap and an uplink to the router."""

    TABLE = "100"

    def setUp(self) -> None:
        super().setUp()
        lab = self.lab
        self.router = lab.router(self.TABLE)
        self.vm = lab.vm("v", "tapr", "aa:00:00:00:00:05", "192.0.2.5/24", gateway="192.0.2.1")
        self.env = ganeti_env(
            "tapr", "aa:00:00:00:00:05", "192.0.2.5", link=self.TABLE, mode="routed",
            network_tags="ip-less-routed", NETWORK_SUBNET="192.0.2.0/24",
            NETWORK_GATEWAY="192.0.2.1", NETWORK_SUBNET6="2001:db8:1::/64",
            TAGS="synnefo:network:uuid-tapr:limited",
        )  # fmt: skip
        self.eui64 = "2001:db8:1:0:a800:ff:fe00:5"  # aa:00:00:00:00:05 in EUI-64

    def state(self) -> dict[str, object]:
        """What ifup may add for tapr: rules, routes, proxies, tables, proxy_arp."""
        lab, node = self.lab, self.lab.node
        return {
            "rules": [r for f in ("-4", "-6") for r in lab.query(node, "ip", f, "-j", "rule", "show")
                      if r.get("iif") == "tapr"],
            "routes": [r["dst"] for f in ("-4", "-6")
                       for r in lab.query(node, "ip", f, "-j", "route", "show", "table", self.TABLE)
                       if r.get("dev") == "tapr"],
            "proxies": sorted((p["dst"], p["dev"]) for f in ("-4", "-6")
                              for p in lab.query(node, "ip", f, "-j", "neigh", "show", "proxy")),
            "tables": lab.tables(),
            "proxy_arp": lab.sh(node, "sysctl", "-n", "net.ipv4.conf.tapr.proxy_arp").stdout.strip(),
        }  # fmt: skip

    def test_routed_nic(self) -> None:
        """ifup routes IP (and its EUI-64) to the tap in table LINK, proxies
        the VM's ARP and the router's, so both reach each other through the
        node; the VM cannot send from another address; the limited profile
        lets the router reach port 22 and not 8080; ifdown removes it all."""
        self.up(self.env)
        state = self.state()
        self.assertEqual([r["table"] for r in state["rules"]], [self.TABLE, self.TABLE])  # type: ignore[index]
        self.assertEqual(sorted(state["routes"]), ["192.0.2.5", self.eui64])  # type: ignore[arg-type]
        self.assertEqual(state["proxies"], [("192.0.2.5", "uplink"), (self.eui64, "uplink")])
        self.assertEqual(state["tables"], {"inet snf-tapr"})
        self.assertEqual(state["proxy_arp"], "1")

        self.assertTrue(self.lab.ping(self.vm, "192.0.2.1"))
        self.assertTrue(self.lab.ping(self.router, "192.0.2.5"))
        self.lab.serve(self.vm, 22, 8080)
        self.assertTrue(self.lab.connects(self.router, "192.0.2.5", 22))
        self.assertFalse(self.lab.connects(self.router, "192.0.2.5", 8080, timeout=1.5))

        self.lab.sh(self.vm, "ip", "addr", "add", "192.0.2.77/32", "dev", "eth0")
        arrived = self.lab.udp_sources(self.vm, self.router, "192.0.2.1", "192.0.2.5", "192.0.2.77")
        self.assertEqual(arrived, {"192.0.2.5"})

        self.down(self.env)
        self.assertEqual(
            self.state(),
            {"rules": [], "routes": [], "proxies": [], "tables": set(), "proxy_arp": "0"},
        )
        self.assertEqual(self.down(self.env), "")

    def test_stale_state_is_replaced(self) -> None:
        """ifup over an earlier ifup's state (Ganeti 3.0 never runs ifdown)
        leaves one rule, one route and one proxy per address, not two."""
        self.up(self.env)
        self.up(self.env)
        state = self.state()
        self.assertEqual(len(state["rules"]), 2)  # type: ignore[arg-type]
        self.assertEqual(len(state["proxies"]), 2)  # type: ignore[arg-type]

    def test_missing_ip_is_refused(self) -> None:
        """A routed NIC without IP exits 2 and changes nothing."""
        env = {k: v for k, v in self.env.items() if k != "IP"}
        result = self.lab.hook("ifup", env)
        self.assertEqual(result.returncode, 2)
        self.assertIn("IP is required for a routed NIC", result.stderr)
        self.assertEqual(self.state()["rules"], [])
