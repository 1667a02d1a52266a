"""Reading Ganeti's NIC environment into a NIC setup, and its nft text
(pure functions, no host needed)."""

from __future__ import annotations

from twisted.trial import unittest

from snfd.netnode import rules
from snfd.netnode.nic import (
    BadEnvironment,
    Flavor,
    Profile,
    eui64,
    nic_from_environ,
    teardown_from_environ,
)

BASE = {
    "INTERFACE": "tap0",
    "INTERFACE_INDEX": "1",
    "INTERFACE_UUID": "u-1",
    "INTERFACE_NAME": "snf-nic-7",
    "MODE": "bridged",
    "LINK": "prv0",
    "MAC": "AA:00:01:12:34:56",
    "IP": "10.0.0.2",
    "TAGS": "",
    "NETWORK_TAGS": "private-filtered",
    "NETWORK_MAC_PREFIX": "aa:00:01",
}


class NicFromEnvironTests(unittest.TestCase):
    def test_mac_filtered(self) -> None:
        """private-filtered gives MAC_FILTERED with the network's prefix; the
        MAC is normalised to lower case."""
        nic = nic_from_environ(BASE)
        self.assertEqual(
            (nic.flavor, nic.mac, nic.mac_prefix, nic.profile),
            (Flavor.MAC_FILTERED, "aa:00:01:12:34:56", "aa:00:01", None),
        )

    def test_profile_by_index_name_or_uuid(self) -> None:
        """A profile tag may name the NIC by index, name or UUID; tags of
        other NICs are ignored; of several, the strictest wins."""
        for ident in ("1", "snf-nic-7", "u-1"):
            env = {**BASE, "TAGS": f"synnefo:network:0:protected synnefo:network:{ident}:limited"}
            self.assertEqual(nic_from_environ(env).profile, Profile.LIMITED)
        env = {**BASE, "TAGS": "synnefo:network:u-1:unprotected synnefo:network:u-1:protected"}
        self.assertEqual(nic_from_environ(env).profile, Profile.PROTECTED)

    def test_flavor_and_mode_must_agree(self) -> None:
        """Contradicting tags and modes are refused with the variable named."""
        for env, message in [
            ({**BASE, "NETWORK_TAGS": "private-filtered ip-less-routed"}, "more than one flavor"),
            ({**BASE, "NETWORK_TAGS": "ip-less-routed"}, "needs MODE=routed"),
            ({**BASE, "MODE": "routed"}, "needs MODE=bridged"),
            ({**BASE, "IP": "10.0.0.300"}, "IP='10.0.0.300'"),
            ({**BASE, "INTERFACE": "tap0;rm"}, "INTERFACE="),
            ({**BASE, "LINK": ""}, "LINK is not set"),
        ]:
            e = self.assertRaises(BadEnvironment, nic_from_environ, env)
            self.assertIn(message, str(e))

    def test_argument_must_match_interface(self) -> None:
        """The tap given as argument stands in for INTERFACE, and must agree."""
        env = {k: v for k, v in BASE.items() if k != "INTERFACE"}
        self.assertEqual(nic_from_environ(env, "tap9").interface, "tap9")
        self.assertRaises(BadEnvironment, nic_from_environ, BASE, "tap9")

    def test_eui64(self) -> None:
        """SLAAC address: universal/local bit flipped, ff:fe in the middle."""
        self.assertEqual(
            eui64("aa:00:00:00:00:05", "2001:db8:1::/64"), "2001:db8:1:0:a800:ff:fe00:5"
        )

    def test_teardown_needs_only_the_interface(self) -> None:
        """ifdown works from INTERFACE alone; a routed LINK is the table."""
        self.assertEqual(teardown_from_environ({"INTERFACE": "tap0"}).table, None)
        td = teardown_from_environ({"INTERFACE": "tap0", "MODE": "routed", "LINK": "snf_public"})
        self.assertEqual(td.table, "snf_public")


class RulesTests(unittest.TestCase):
    def test_no_filter_no_table(self) -> None:
        """An unfiltered bridged NIC's script only deletes its tables."""
        nic = nic_from_environ({**BASE, "NETWORK_TAGS": ""})
        self.assertEqual(rules.setup_script(nic), rules.teardown_script("tap0"))

    def test_teardown_deletes_both_families(self) -> None:
        """Teardown declares then deletes both of the NIC's tables."""
        self.assertEqual(
            rules.teardown_script("tap0").splitlines(),
            [
                "table bridge snf-tap0",
                "delete table bridge snf-tap0",
                "table inet snf-tap0",
                "delete table inet snf-tap0",
            ],
        )
