"""Which plugins run, in what order their services are built, and what
each receives of the others."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial import unittest
from zope.interface import Interface, implementer

from snfd.plugin_loader import PluginError, Registry, select


class IThing(Interface):
    def thing():
        """Return a thing."""


class IOther(Interface):
    def other():
        """Return another thing."""


@implementer(IThing)
class Thing:
    def thing(self) -> str:
        return "thing"


class NotAThing:
    def thing(self) -> str:
        return "impostor"


@attrs.frozen
class _Plugin:
    name: str
    provides: tuple[Any, ...] = ()
    requires: tuple[Any, ...] = ()
    uses: tuple[Any, ...] = ()
    offers: dict[Any, Any] = attrs.Factory(dict)

    def provided(self, svc: Any) -> dict[Any, Any]:
        return self.offers


class SelectTests(unittest.TestCase):
    def setUp(self) -> None:
        self.plugins = {p.name: p for p in (
            _Plugin("cyclades", provides=(IOther,), requires=(IThing,)),
            _Plugin("identity", provides=(IThing,)),
            _Plugin("sim", uses=(IOther,)))}

    def names(self, enabled: list[str] | None, plugins: Any = None) -> list[str]:
        return [p.name for p in select(plugins or self.plugins, enabled)]

    def test_all_by_name_then_providers_first(self):
        """With no list, plugins run by name, each after the providers of
        what it requires or uses."""
        self.assertEqual(self.names(None), ["identity", "cyclades", "sim"])
        self.assertEqual(self.names(["sim", "cyclades", "identity"]),
                         ["identity", "cyclades", "sim"])

    def test_used_interface_may_be_missing(self):
        """A plugin runs without the providers of what it only uses."""
        self.assertEqual(self.names(["sim"]), ["sim"])

    def test_missing_requirement_names_plugin_and_interface(self):
        """A required interface nobody provides is one line naming both."""
        e = self.assertRaises(PluginError, select, self.plugins, ["cyclades"])
        self.assertEqual(str(e), "plugin 'cyclades' requires IThing, which no enabled"
                                 " plugin provides")

    def test_external_provider_satisfies_requirement(self):
        """An interface the node provides itself (remote identity) counts."""
        self.assertEqual([p.name for p in select(self.plugins, ["cyclades"], (IThing,))],
                         ["cyclades"])

    def test_two_providers_refused(self):
        """Two enabled plugins providing one interface stop the node."""
        plugins = dict(self.plugins, ldap=_Plugin("ldap", provides=(IThing,)))
        e = self.assertRaises(PluginError, select, plugins, None)
        self.assertIn("both provide IThing", str(e))

    def test_cycle_refused(self):
        """Two plugins each requiring what the other provides stop the node."""
        plugins = {"a": _Plugin("a", provides=(IThing,), requires=(IOther,)),
                   "b": _Plugin("b", provides=(IOther,), requires=(IThing,))}
        e = self.assertRaises(PluginError, select, plugins, None)
        self.assertIn("cycle", str(e))


class RegistryTests(unittest.TestCase):
    def test_dependencies_hold_required_and_provided_used(self):
        """A plugin receives what it requires and what it uses that exists."""
        registry = Registry()
        thing = Thing()
        registry.add_plugin(_Plugin("identity", provides=(IThing,), offers={IThing: thing}),
                            None)
        deps = registry.for_plugin(_Plugin("x", requires=(IThing,), uses=(IOther,)))
        self.assertIs(deps[IThing], thing)
        self.assertIsNone(deps.get(IOther))
        self.assertEqual(list(deps), [IThing])

    def test_undeclared_interface_is_not_handed_out(self):
        """Asking for an interface not declared is an error naming it."""
        registry = Registry()
        registry.add_plugin(_Plugin("identity", provides=(IThing,), offers={IThing: Thing()}),
                            None)
        deps = registry.for_plugin(_Plugin("x"))
        e = self.assertRaises(KeyError, deps.__getitem__, IThing)
        self.assertIn("IThing", str(e))

    def test_provider_checked_with_verify_object(self):
        """A provided object that does not provide its interface stops the node."""
        registry = Registry()
        e = self.assertRaises(PluginError, registry.add_plugin,
                              _Plugin("bad", provides=(IThing,), offers={IThing: NotAThing()}),
                              None)
        self.assertIn("plugin 'bad': its IThing is not valid", str(e))

    def test_provided_must_match_declaration(self):
        """provided() giving other interfaces than declared stops the node."""
        registry = Registry()
        e = self.assertRaises(PluginError, registry.add_plugin,
                              _Plugin("odd", provides=(IThing, IOther),
                                      offers={IThing: Thing()}), None)
        self.assertIn("provides declares", str(e))
