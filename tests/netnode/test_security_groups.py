"""Security groups on a NIC (``snf:sg:`` instance tags) and the ``refresh``
hook: the tags read into rules and their nft text (pure), then the scripts
run for real in network namespaces (see ``lab``), checking which traffic
passes."""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from snfd.netnode import rules
from snfd.netnode.nic import (
    BadEnvironment,
    SecurityGroups,
    SgRule,
    nic_environ_from_hook,
    nic_from_environ,
    sg_rule_from_tag,
)
from tests.netnode.test_hook import SHARE, NamespaceCase, ganeti_env

NIC = "snf-nic-12"

BASE = {
    "INTERFACE": "tap0",
    "INTERFACE_INDEX": "0",
    "INTERFACE_UUID": "u-0",
    "INTERFACE_NAME": NIC,
    "MODE": "bridged",
    "LINK": "prv0",
    "MAC": "aa:00:01:12:34:56",
    "IP": "10.0.0.2",
    "TAGS": "",
}


def sg(*rules: str, nic: str = NIC) -> str:
    """The instance tags turning security groups on for ``nic`` with ``rules``."""
    return " ".join([f"snf:sg:{nic}:on", *(f"snf:sg:{nic}:{r}" for r in rules)])


class SgTagTests(unittest.TestCase):
    """Reading ``snf:sg:`` tags."""

    def test_rule_fields(self) -> None:
        """Each field of a rule tag: direction and version, protocol (names
        or numbers, known numbers by name), ports or ICMP type.code, and a
        remote CIDR normalised, IPv6 colons and all."""
        cases = {
            "in4:tcp:22:0.0.0.0/0": SgRule("in", 4, "tcp", "0.0.0.0/0", ports=(22, 22)),
            "out6:any:any:::/0": SgRule("out", 6, "any", "::/0"),
            "in4:udp:1000-2000:10.0.0.5/32": SgRule("in", 4, "udp", "10.0.0.5/32", (1000, 2000)),
            "in6:sctp:any:2001:db8::1/64": SgRule("in", 6, "sctp", "2001:db8::/64"),
            "in4:icmp:8:10.1.0.0/16": SgRule("in", 4, "icmp", "10.1.0.0/16", icmp_type=8),
            "out6:icmp:1.4:::/0": SgRule("out", 6, "icmp", "::/0", icmp_type=1, icmp_code=4),
            "out4:47:any:0.0.0.0/0": SgRule("out", 4, "47", "0.0.0.0/0"),
            "in4:6:80:0.0.0.0/0": SgRule("in", 4, "tcp", "0.0.0.0/0", ports=(80, 80)),
            "in6:58:any:::/0": SgRule("in", 6, "icmp", "::/0"),
            "in4:58:any:0.0.0.0/0": SgRule("in", 4, "58", "0.0.0.0/0"),
        }
        for rule, expected in cases.items():
            self.assertEqual(sg_rule_from_tag(f"snf:sg:{NIC}:{rule}"), expected, rule)

    def test_malformed_rules(self) -> None:
        """A malformed rule names the tag and what is wrong with it."""
        cases = {
            "in4:tcp:22": "not snf:sg:",
            "up4:tcp:22:0.0.0.0/0": "direction 'up4'",
            "in5:tcp:22:0.0.0.0/0": "direction 'in5'",
            "in4:gre:any:0.0.0.0/0": "protocol 'gre'",
            "in4:256:any:0.0.0.0/0": "protocol 256",
            "in4:tcp:0:0.0.0.0/0": "port range '0'",
            "in4:tcp:22-21:0.0.0.0/0": "port range '22-21'",
            "in4:udp:65536:0.0.0.0/0": "port range '65536'",
            "in4:tcp:ssh:0.0.0.0/0": "port range 'ssh'",
            "in4:icmp:8.256:0.0.0.0/0": "ICMP range '8.256'",
            "in4:icmp:8-9:0.0.0.0/0": "ICMP range '8-9'",
            "in4:47:1:0.0.0.0/0": "range '1' must be 'any'",
            "in4:any:22:0.0.0.0/0": "range '22' must be 'any'",
            "in4:tcp:22:::/0": "not an IPv4 CIDR",
            "in6:tcp:22:0.0.0.0/0": "not an IPv6 CIDR",
            "in4:tcp:22:10.0.0.5": "not an IPv4 CIDR",
            "in4:tcp:22:10.0.0.0/33": "not a CIDR",
        }
        for rule, message in cases.items():
            tag = f"snf:sg:{NIC}:{rule}"
            e = self.assertRaises(BadEnvironment, sg_rule_from_tag, tag)
            self.assertIn(repr(tag), str(e))
            self.assertIn(message, str(e))

    def test_marker_and_idents(self) -> None:
        """Without the marker a NIC has no security groups (its rule tags
        are still checked); the marker alone means no rule; tags may name
        the NIC by index, name or UUID; other NICs' tags are ignored,
        malformed or not; duplicates count once."""
        nic = nic_from_environ
        self.assertIsNone(nic(BASE).security_groups)
        self.assertIsNone(
            nic({**BASE, "TAGS": f"snf:sg:{NIC}:in4:tcp:22:0.0.0.0/0"}).security_groups
        )
        self.assertRaises(BadEnvironment, nic, {**BASE, "TAGS": f"snf:sg:{NIC}:in4:tcp:x:0/0"})
        self.assertEqual(nic({**BASE, "TAGS": sg()}).security_groups, SecurityGroups(()))
        tags = " ".join([
            "snf:sg:u-0:on", "snf:sg:0:in4:tcp:22:0.0.0.0/0",
            f"snf:sg:{NIC}:in4:tcp:22:0.0.0.0/0", "snf:sg:u-0:out6:any:any:::/0",
            "snf:sg:1:on", "snf:sg:1:in4:tcp:bad:0/0", "snf:sg:", "snf:sg:other",
        ])  # fmt: skip
        self.assertEqual(
            nic({**BASE, "TAGS": tags}).security_groups,
            SecurityGroups(
                (SgRule("in", 4, "tcp", "0.0.0.0/0", (22, 22)), SgRule("out", 6, "any", "::/0"))
            ),
        )


class SgRulesTests(unittest.TestCase):
    """The security-group chains' nft text."""

    def chain(self, script: str, name: str) -> list[str]:
        lines = script.splitlines()
        start = lines.index(f"  chain {name} {{")
        end = lines.index("  }", start)
        return [line.strip() for line in lines[start + 1 : end]]

    def test_no_marker_no_chains(self) -> None:
        """Without the marker nothing about security groups is rendered."""
        self.assertNotIn("sg-", rules.setup_script(nic_from_environ(BASE)))

    def test_bridged_own_base_chains_and_mirrors(self) -> None:
        """A bridged NIC gets base chains of its own at priority 10 in its
        bridge table, next to the profile's; each rule in its direction and
        its stateless answers in the other; then drop."""
        tags = sg("in4:tcp:22:0.0.0.0/0", "out4:udp:53:10.1.2.3/32", "in4:icmp:8:10.0.0.0/8",
                  "out6:any:any:::/0") + " synnefo:network:0:limited"  # fmt: skip
        script = rules.setup_script(nic_from_environ({**BASE, "TAGS": tags}))
        self.assertIn("table bridge snf-tap0 {", script)
        self.assertEqual(
            self.chain(script, "sg-forward"),
            [
                "type filter hook forward priority 10; policy accept;",
                'oifname "tap0" jump sg-to-vm',
                'iifname "tap0" jump sg-from-vm',
            ],
        )
        self.assertIn("type filter hook input priority 10; policy accept;", script)
        self.assertIn("type filter hook output priority 10; policy accept;", script)
        self.assertEqual(self.chain(script, "forward")[-1], 'oifname "tap0" jump limited')
        to_vm = self.chain(script, "sg-to-vm")
        self.assertEqual(to_vm[:2], ["ether type { vlan, 8021ad } drop",
                                     "meta protocol != { ip, ip6 } accept"])  # fmt: skip
        self.assertEqual(
            to_vm[5:],
            [
                "ip saddr 0.0.0.0/0 tcp dport 22 accept",
                "ip saddr 10.0.0.0/8 icmp type 8 accept",
                "ip saddr 10.1.2.3/32 udp sport 53 accept",
                "ip saddr 10.1.2.3/32 icmp type { 3, 11, 12 } accept",
                "ip6 saddr ::/0 tcp flags & (syn | ack) != syn accept",
                "ip6 saddr ::/0 udp dport 32768-65535 accept",
                "ip6 saddr ::/0 sctp dport 32768-65535 accept",
                "ip6 saddr ::/0 icmpv6 type { 129 } accept",
                "ip6 saddr ::/0 icmpv6 type { 1, 2, 3, 4 } accept",
                "ip6 saddr ::/0 meta l4proto != { tcp, udp, sctp, icmp, ipv6-icmp } accept",
                "drop",
            ],
        )
        self.assertEqual(
            self.chain(script, "sg-from-vm")[5:],
            [
                "ip daddr 10.1.2.3/32 udp dport 53 accept",
                "ip6 daddr ::/0 accept",
                "ip daddr 0.0.0.0/0 tcp sport 22 tcp flags & (syn | ack) != syn accept",
                "ip daddr 0.0.0.0/0 icmp type { 3, 11, 12 } accept",
                "ip daddr 10.0.0.0/8 icmp type 0 accept",
                "ip daddr 10.0.0.0/8 icmp type { 3, 11, 12 } accept",
                "drop",
            ],
        )

    def test_always_allowed(self) -> None:
        """Neighbour discovery, MLD and DHCP pass without rules; a VM may
        not send router advertisements (134) unless a rule allows it."""
        script = rules.setup_script(nic_from_environ({**BASE, "TAGS": sg()}))
        self.assertEqual(
            self.chain(script, "sg-to-vm")[2:],
            [
                "icmpv6 type { 130, 131, 132, 133, 134, 135, 136, 143 } accept",
                "udp sport 67 udp dport 68 accept",
                "udp sport 547 udp dport 546 accept",
                "drop",
            ],
        )
        self.assertEqual(
            self.chain(script, "sg-from-vm")[2:],
            [
                "icmpv6 type { 130, 131, 132, 133, 135, 136, 143 } accept",
                "udp sport 68 udp dport 67 accept",
                "udp sport 546 udp dport 547 accept",
                "drop",
            ],
        )

    def test_routed_uses_conntrack(self) -> None:
        """A routed NIC's inet table accepts established and related
        traffic by conntrack, no mirrored rules."""
        env = {**BASE, "MODE": "routed", "LINK": "100", "TAGS": sg("in6:tcp:80-81:::/0")}
        script = rules.setup_script(nic_from_environ(env))
        self.assertIn("table inet snf-tap0 {", script)
        to_vm = self.chain(script, "sg-to-vm")
        self.assertEqual(to_vm[:2], ["ct state established,related accept",
                                     "ct state invalid drop"])  # fmt: skip
        self.assertEqual(to_vm[-2:], ["ip6 saddr ::/0 tcp dport 80-81 accept", "drop"])
        self.assertNotIn("sport 80-81", script)


class HookEnvironTests(unittest.TestCase):
    """A hook's GANETI_* environment as one NIC's."""

    def test_nic_from_hook_environment(self) -> None:
        """NIC i's variables become the NIC scripts' names; the post values
        win over the pre ones."""
        env = hook_env("inst1", [("tapa", "aa:00:01:00:00:0a", "10.9.0.10")], "old")
        env.update({k.replace("GANETI_", "GANETI_POST_"): v for k, v in env.items()})
        env["GANETI_POST_INSTANCE_TAGS"] = "new"
        self.assertEqual(
            nic_environ_from_hook(env, 0, "tap7"),
            {
                "INSTANCE": "inst1",
                "TAGS": "new",
                "INTERFACE": "tap7",
                "INTERFACE_INDEX": "0",
                "INTERFACE_NAME": "snf-nic-tapa",
                "INTERFACE_UUID": "uuid-tapa",
                "IP": "10.9.0.10",
                "MAC": "aa:00:01:00:00:0a",
                "MODE": "bridged",
                "LINK": "prv0",
                "BRIDGE": "prv0",
                "NETWORK_NAME": "snf-net-1",
                "NETWORK_UUID": "net-uuid-1",
                "NETWORK_SUBNET": "10.9.0.0/24",
            },
        )


def hook_env(instance: str, nics: list[tuple[str, str, str]], tags: str) -> dict[str, str]:
    """Ganeti 3.0's pre-phase hook environment for an instance modify
    (``BuildInstanceHookEnv`` under ``GANETI_``), NICs as (tap, mac, ip)."""
    env = {
        "GANETI_HOOKS_VERSION": "2",
        "GANETI_OP_CODE": "OP_INSTANCE_SET_PARAMS",
        "GANETI_HOOKS_PHASE": "post",
        "GANETI_HOOKS_PATH": "instance-modify",
        "GANETI_OBJECT_TYPE": "INSTANCE",
        "GANETI_INSTANCE_NAME": instance,
        "GANETI_INSTANCE_PRIMARY": "node1",
        "GANETI_INSTANCE_TAGS": tags,
        "GANETI_INSTANCE_NIC_COUNT": str(len(nics)),
    }
    for i, (tap, mac, ip) in enumerate(nics):
        nic = f"GANETI_INSTANCE_NIC{i}_"
        env.update({
            f"{nic}NAME": f"snf-nic-{tap}", f"{nic}UUID": f"uuid-{tap}", f"{nic}IP": ip,
            f"{nic}MAC": mac, f"{nic}MODE": "bridged", f"{nic}LINK": "prv0", f"{nic}VLAN": "",
            f"{nic}BRIDGE": "prv0", f"{nic}NETWORK_NAME": "snf-net-1",
            f"{nic}NETWORK_UUID": "net-uuid-1", f"{nic}NETWORK_TAGS": "",
            f"{nic}NETWORK_SUBNET": "10.9.0.0/24",
        })  # fmt: skip
    return env


def post(env: dict[str, str], tags: str) -> dict[str, str]:
    """A post hook's environment: ``env`` as after the operation under
    GANETI_POST_ (with ``tags``), plus ``env`` itself as before."""
    after = {k.replace("GANETI_INSTANCE_", "GANETI_POST_INSTANCE_"): v
             for k, v in env.items() if k.startswith("GANETI_INSTANCE_")}  # fmt: skip
    return {**env, **after, "GANETI_POST_INSTANCE_TAGS": tags}


A_MAC, B_MAC = "aa:00:01:00:00:0a", "aa:00:01:00:00:0b"


class BridgedSecurityGroupTests(NamespaceCase):
    """Security groups on bridged NICs: stateless, answers by mirrored rules.
    VM a (10.9.0.10) is filtered; b (10.9.0.11) is not."""

    def setUp(self) -> None:
        super().setUp()
        self.lab.bridge("prv0")
        self.a = self.lab.vm("a", "tapa", A_MAC, "10.9.0.10/24")
        self.b = self.lab.vm("b", "tapb", B_MAC, "10.9.0.11/24")
        self.up(ganeti_env("tapb", B_MAC, "10.9.0.11"))

    def up_a(self, tags: str) -> None:
        self.up(ganeti_env("tapa", A_MAC, "10.9.0.10", TAGS=tags))

    def test_inbound_rule(self) -> None:
        """An ``in4:tcp:22`` rule lets new connections reach port 22 (the
        VM's answers pass), not 8080; without an outbound rule the VM cannot
        connect out."""
        self.lab.serve(self.a, 22, 8080)
        self.lab.serve(self.b, 8080)
        self.up_a(sg("in4:tcp:22:0.0.0.0/0", nic="snf-nic-tapa"))
        self.assertTrue(self.lab.connects(self.b, "10.9.0.10", 22))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 8080, timeout=1.5))
        self.assertFalse(self.lab.connects(self.a, "10.9.0.11", 8080, timeout=1.5))

    def test_ipv6(self) -> None:
        """IPv6 rules on a bridged NIC: neighbour discovery passes on its
        own, ``in6:tcp:22`` admits SSH over IPv6 (not 8080), and an IPv4
        rule does nothing for IPv6."""
        for ns, address in ((self.a, "fd00::a/64"), (self.b, "fd00::b/64")):
            self.lab.sh(ns, "ip", "addr", "add", address, "dev", "eth0", "nodad")
        self.lab.serve(self.a, 22, 8080)
        self.up_a(sg("in6:tcp:22:fd00::/64", "in4:tcp:8080:0.0.0.0/0", nic="0"))
        self.assertTrue(self.lab.connects(self.b, "fd00::a", 22))
        self.assertFalse(self.lab.connects(self.b, "fd00::a", 8080, timeout=1.5))

    def test_answers_are_not_new_connections(self) -> None:
        """The VM's answers on an ``in`` rule's port are TCP segments that
        are not a bare SYN: the VM cannot open a connection from that port
        (whose SYN-ACK the rule itself would let in)."""
        self.lab.serve(self.b, 8080)
        self.up_a(sg("in4:tcp:2222:0.0.0.0/0", nic="0"))
        self.assertFalse(self.lab.connects(self.a, "10.9.0.11", 8080, 1.5, source_port=2222))
        self.up_a(sg("in4:tcp:2222:0.0.0.0/0", "out4:tcp:8080:0.0.0.0/0", nic="0"))
        self.assertTrue(self.lab.connects(self.a, "10.9.0.11", 8080, source_port=2222))

    def test_outbound_rules_and_answers(self) -> None:
        """``out4:any`` lets the VM connect anywhere, and lets in only what
        looks like answers (the default group's rules: b can open no
        connection to the VM); ``out4:tcp:8080`` to b only lets it reach
        b's 8080 and get the SYN-ACK back, while b still cannot open a
        connection to the VM's 8080 (a bare SYN is no answer)."""
        self.lab.serve(self.a, 8080)
        self.lab.serve(self.b, 22, 8080)
        self.up_a(sg("out4:any:any:0.0.0.0/0", "in4:any:any:10.9.0.10/32", nic="0"))
        self.assertTrue(self.lab.connects(self.a, "10.9.0.11", 22))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 8080, timeout=1.5))
        self.up_a(sg("out4:tcp:8080:10.9.0.11/32", nic="uuid-tapa"))
        self.assertTrue(self.lab.connects(self.a, "10.9.0.11", 8080))
        self.assertFalse(self.lab.connects(self.a, "10.9.0.11", 22, timeout=1.5))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 8080, timeout=1.5))

    def test_ping_needs_an_icmp_rule(self) -> None:
        """Ping to the VM passes only with an ICMP rule (its echo reply is
        the mirrored answer); the VM's own ping out still needs one."""
        self.up_a(sg(nic="0"))
        self.assertFalse(self.lab.ping(self.b, "10.9.0.10", timeout=1.5))
        self.up_a(sg("in4:icmp:8:0.0.0.0/0", nic="0"))
        self.assertTrue(self.lab.ping(self.b, "10.9.0.10"))
        self.assertFalse(self.lab.ping(self.a, "10.9.0.11", timeout=1.5))

    def test_marker_alone_drops_ip_not_arp(self) -> None:
        """The marker without rules drops IP both ways, but ARP passes (b
        learns a's MAC), so a rule added later works at once."""
        self.lab.serve(self.a, 22)
        self.up_a(sg(nic="0"))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 22, timeout=1.5))
        neigh = self.lab.query(self.b, "ip", "-j", "neigh", "show", "10.9.0.10")
        self.assertEqual([n.get("lladdr") for n in neigh], [A_MAC])
        self.up_a(sg("in4:tcp:22:0.0.0.0/0", nic="0"))
        self.assertTrue(self.lab.connects(self.b, "10.9.0.10", 22))

    def test_remote_cidr_restricts_the_source(self) -> None:
        """A /32 remote admits that source only."""
        self.lab.sh(self.b, "ip", "addr", "add", "10.9.0.13/24", "dev", "eth0")
        self.up_a(sg("in4:udp:9999:10.9.0.13/32", nic="0"))
        arrived = self.lab.udp_sources(self.b, self.a, "10.9.0.10", "10.9.0.11", "10.9.0.13")
        self.assertEqual(arrived, {"10.9.0.13"})

    def test_profile_and_security_groups_both_apply(self) -> None:
        """With profile ``limited`` (new connections to 22 and 3389) and
        security groups allowing 22 and 8080, only 22 passes: a packet must
        pass both."""
        self.lab.serve(self.a, 22, 3389, 8080)
        self.up_a(sg("in4:tcp:22:0.0.0.0/0", "in4:tcp:8080:0.0.0.0/0", nic="0")
                  + " synnefo:network:0:limited")  # fmt: skip
        self.assertTrue(self.lab.connects(self.b, "10.9.0.10", 22))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 8080, timeout=1.5))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 3389, timeout=1.5))

    def test_malformed_tag_applies_nothing(self) -> None:
        """ifup with a malformed rule for this NIC exits 2 naming the tag,
        with nothing applied; a malformed tag of another NIC is ignored."""
        bad = "snf:sg:0:in4:tcp:99999:0.0.0.0/0"
        result = self.lab.hook(
            "ifup", ganeti_env("tapa", A_MAC, "10.9.0.10", TAGS=sg(nic="0") + " " + bad)
        )
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(repr(bad), result.stderr)
        self.assertEqual(self.lab.tables(), set())
        self.assertEqual(self.lab.members(), {"tapb"})
        self.up_a(sg(nic="0") + " snf:sg:1:in4:tcp:99999:0.0.0.0/0")
        self.assertEqual(self.lab.tables(), {"bridge snf-tapa"})


class RoutedSecurityGroupTests(NamespaceCase):
    """Security groups on a routed NIC: stateful by conntrack."""

    def setUp(self) -> None:
        super().setUp()
        self.router = self.lab.router("100")
        self.vm = self.lab.vm("v", "tapr", "aa:00:00:00:00:05", "192.0.2.5/24", gateway="192.0.2.1")

    def up_vm(self, tags: str) -> None:
        self.up(ganeti_env("tapr", "aa:00:00:00:00:05", "192.0.2.5", link="100", mode="routed",
                           network_tags="ip-less-routed", NETWORK_SUBNET="192.0.2.0/24",
                           TAGS=tags))  # fmt: skip

    def test_routed_nic(self) -> None:
        """In: port 22 from anywhere, nothing else, no ping. Out: the
        router's 8080 only; its answers come back by conntrack, not as new
        traffic to the VM."""
        self.lab.serve(self.vm, 22, 8080)
        self.lab.serve(self.router, 22, 8080)
        self.up_vm(sg("in4:tcp:22:0.0.0.0/0", "out4:tcp:8080:192.0.2.1/32", nic="0"))
        self.assertEqual(self.lab.tables(), {"inet snf-tapr"})
        self.assertTrue(self.lab.connects(self.router, "192.0.2.5", 22))
        self.assertFalse(self.lab.connects(self.router, "192.0.2.5", 8080, timeout=1.5))
        self.assertFalse(self.lab.ping(self.router, "192.0.2.5", timeout=1.5))
        self.assertTrue(self.lab.connects(self.vm, "192.0.2.1", 8080))
        self.assertFalse(self.lab.connects(self.vm, "192.0.2.1", 22, timeout=1.5))


class RefreshTests(NamespaceCase):
    """``refresh``, the instance-modify post hook: re-applies a running
    instance's tables from its current tags."""

    def setUp(self) -> None:
        super().setUp()
        self.lab.bridge("prv0")
        self.a = self.lab.vm("a", "tapa", A_MAC, "10.9.0.10/24")
        self.b = self.lab.vm("b", "tapb", B_MAC, "10.9.0.11/24")
        self.up(ganeti_env("tapb", B_MAC, "10.9.0.11"))
        self.nic_dir = Path(self.mktemp()).resolve()
        self.env = hook_env(
            "inst-a", [("tapa", A_MAC, "10.9.0.10")], sg("in4:tcp:22:0.0.0.0/0", nic="0")
        )

    def running(self, **taps: str) -> None:
        """Write KVM's runtime NIC files of inst-a: index -> tap."""
        (self.nic_dir / "inst-a").mkdir(parents=True)
        for index, tap in taps.items():
            (self.nic_dir / "inst-a" / index.lstrip("_")).write_text(tap)

    def refresh(self, env: dict[str, str], script: str | None = None):
        return self.lab.hook("refresh", env, script=script, args=["--nic-dir", str(self.nic_dir)])

    def test_refresh_replaces_rules_of_a_running_tap(self) -> None:
        """After the tags change, refresh (through the hook wrapper, post
        values winning) makes the new rule apply to the running VM, and
        leaves the tap on its bridge, up."""
        self.lab.serve(self.a, 22, 8080)
        self.up(ganeti_env("tapa", A_MAC, "10.9.0.10", TAGS=self.env["GANETI_INSTANCE_TAGS"]))
        self.assertFalse(self.lab.connects(self.b, "10.9.0.10", 8080, timeout=1.5))
        self.running(_0="tapa\n")
        tags = sg("in4:tcp:22:0.0.0.0/0", "in4:tcp:8080:10.9.0.11/32", nic="snf-nic-tapa")
        result = self.refresh(post(self.env, tags), script=str(SHARE / "snfd-netnode-refresh"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("snfd-netnode refresh inst-a: nft: tables of tapa", result.stderr)
        self.assertTrue(self.lab.connects(self.b, "10.9.0.10", 8080))
        self.assertEqual(self.lab.members(), {"tapa", "tapb"})
        self.assertIn("UP", self.lab.link("tapa")["flags"])

    def test_refresh_turns_filtering_off(self) -> None:
        """Without the marker any more, refresh removes the NIC's table."""
        self.up(ganeti_env("tapa", A_MAC, "10.9.0.10", TAGS=self.env["GANETI_INSTANCE_TAGS"]))
        self.running(_0="tapa")
        result = self.refresh({**self.env, "GANETI_INSTANCE_TAGS": ""})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.lab.tables(), set())

    def test_nothing_to_do(self) -> None:
        """No runtime files (the master, another node, a stopped instance)
        or a tap that is gone: exit 0, silent, nothing applied."""
        result = self.refresh(self.env)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.running(_0="tapz")
        result = self.refresh(self.env)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(self.lab.tables(), set())

    def test_malformed_tag_keeps_the_old_rules(self) -> None:
        """A malformed tag: exit 2, one line naming it, old rules in place."""
        self.up(ganeti_env("tapa", A_MAC, "10.9.0.10", TAGS=self.env["GANETI_INSTANCE_TAGS"]))
        before = self.lab.ruleset()
        self.running(_0="tapa")
        result = self.refresh(
            {**self.env, "GANETI_INSTANCE_TAGS": sg("in4:tcp:80:nowhere", nic="0")}
        )
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("NIC 0: security group tag 'snf:sg:0:in4:tcp:80:nowhere'", result.stderr)
        self.assertEqual(self.lab.ruleset(), before)

    def test_not_an_instance_hook(self) -> None:
        """Without GANETI_INSTANCE_NAME refresh refuses (exit 2)."""
        result = self.refresh({"GANETI_HOOKS_PHASE": "post"})
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("GANETI_INSTANCE_NAME is not set", result.stderr)
