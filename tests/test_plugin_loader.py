"""Which plugins run, and in what order their services are built."""

from __future__ import annotations

import attrs
from twisted.trial import unittest

from snfd.plugin_loader import PluginError, select


@attrs.frozen
class _Plugin:
    name: str
    after: tuple[str, ...] = ()


class SelectTests(unittest.TestCase):
    def setUp(self) -> None:
        self.plugins = {p.name: p for p in (
            _Plugin("cyclades", after=("identity", "pithos")), _Plugin("identity"),
            _Plugin("pithos", after=("identity",)), _Plugin("ganeti-sim",
                                                           after=("cyclades",)))}

    def names(self, enabled: list[str] | None) -> list[str]:
        return [p.name for p in select(self.plugins, enabled)]

    def test_all_by_name_then_after(self):
        """With no list, plugins run by name, each after those it uses."""
        self.assertEqual(self.names(None), ["identity", "pithos", "cyclades", "ganeti-sim"])

    def test_listed_order_kept_where_free(self):
        """A listed order is kept except where ``after`` moves a plugin; a
        plugin named in ``after`` but not enabled is ignored."""
        self.assertEqual(self.names(["cyclades", "identity"]), ["identity", "cyclades"])
        self.assertEqual(self.names(["pithos", "identity"]), ["identity", "pithos"])

    def test_cycle_refused(self):
        """Two plugins each wanting to start after the other stop the node."""
        plugins = {"a": _Plugin("a", ("b",)), "b": _Plugin("b", ("a",))}
        self.assertRaises(PluginError, select, plugins, None)
