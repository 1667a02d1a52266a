"""Finding, checking and ordering the installed service plugins, and the
providers of the interfaces they offer one another."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject

import snfd.plugins
from snfd.config import Key
from snfd.interfaces import ISnfdPlugin


class PluginError(Exception):
    """A plugin problem that stops the node; ``str()`` is one line."""


def installed() -> dict[str, ISnfdPlugin]:
    """Every installed plugin by name, each checked with ``verifyObject``."""
    found: dict[str, ISnfdPlugin] = {}
    for plugin in getPlugins(ISnfdPlugin, snfd.plugins):
        try:
            verifyObject(ISnfdPlugin, plugin)
        except Invalid as e:
            raise PluginError(
                f"plugin {getattr(plugin, 'name', plugin)!r} does not provide"
                f" ISnfdPlugin correctly: {' '.join(str(e).split())}") from None
        if plugin.name in found:
            raise PluginError(f"two installed plugins are named {plugin.name!r}")
        found[plugin.name] = plugin
    return found


def config_keys(plugins: Mapping[str, ISnfdPlugin]) -> dict[str, Sequence[Key]]:
    """Each plugin's section and keys; a plugin's ``config_families``
    (optional: ``{"oidc": keys}``) add the families of sections
    ``[oidc:NAME]`` (declared as ``"oidc:*"``, see ``snfd.config``)."""
    keys: dict[str, Sequence[Key]] = {name: tuple(p.config_keys) for name, p in plugins.items()}
    for p in plugins.values():
        for family, family_keys in dict(getattr(p, "config_families", {})).items():
            keys[f"{family}:*"] = tuple(family_keys)
    return keys


def select(plugins: Mapping[str, ISnfdPlugin], enabled: Iterable[str] | None,
           external: Iterable[InterfaceClass] = ()) -> list[ISnfdPlugin]:
    """The plugins to run (``None``: all), in the order their services are
    built: by name, or as ``enabled`` lists them, except that a plugin
    comes after the plugins providing what it requires or uses.

    ``external`` are interfaces the node provides itself (the remote
    identity service).  A required interface that neither an enabled
    plugin nor ``external`` provides, an interface two plugins provide,
    and a cycle are each a ``PluginError`` naming the plugin.
    """
    if enabled is None:
        chosen = [plugins[n] for n in sorted(plugins)]
    else:
        chosen = []
        for name in enabled:
            if name not in plugins:
                have = ", ".join(sorted(plugins)) or "none"
                raise PluginError(
                    f"[plugins] enabled: no installed plugin is named {name!r}"
                    f" (installed: {have})")
            if plugins[name] not in chosen:
                chosen.append(plugins[name])
    return _ordered(chosen, frozenset(external))


def _name(interface: InterfaceClass) -> str:
    return interface.__name__


def _ordered(chosen: list[ISnfdPlugin],
             external: frozenset[InterfaceClass]) -> list[ISnfdPlugin]:
    """``chosen`` with each plugin moved after the providers of what it
    requires and uses (stable otherwise)."""
    provider: dict[InterfaceClass, ISnfdPlugin] = {}
    for plugin in chosen:
        for interface in plugin.provides:
            other = provider.get(interface)
            if other is not None:
                raise PluginError(
                    f"plugins {other.name!r} and {plugin.name!r} both provide"
                    f" {_name(interface)}; enable one of them")
            provider[interface] = plugin
    for plugin in chosen:
        for interface in plugin.requires:
            if interface not in provider and interface not in external:
                raise PluginError(
                    f"plugin {plugin.name!r} requires {_name(interface)}, which no"
                    " enabled plugin provides")
    done: list[ISnfdPlugin] = []
    visiting: list[str] = []

    def visit(plugin: ISnfdPlugin) -> None:
        if plugin in done:
            return
        if plugin.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(plugin.name):], plugin.name])
            raise PluginError(f"plugins depend on each other in a cycle: {cycle}")
        visiting.append(plugin.name)
        for interface in (*plugin.requires, *plugin.uses):
            first = provider.get(interface)
            if first is not None and first is not plugin:
                visit(first)
        visiting.pop()
        done.append(plugin)

    for plugin in chosen:
        visit(plugin)
    return done


class Dependencies(Mapping[InterfaceClass, Any]):
    """What one service receives: each interface it requires, and each it
    uses that is provided, mapped to its provider.  Read-only."""

    def __init__(self, owner: str, providers: Mapping[InterfaceClass, Any]):
        self._owner = owner
        self._providers = dict(providers)

    def __getitem__(self, interface: InterfaceClass) -> Any:
        try:
            return self._providers[interface]
        except KeyError:
            raise KeyError(f"{self._owner} has no {_name(interface)}: declare it in"
                           " requires or uses") from None

    def __iter__(self) -> Iterator[InterfaceClass]:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)


class Registry:
    """The providers known so far while a node is wired: filled by the
    node (external providers) and by each plugin as its service is built."""

    def __init__(self) -> None:
        self._providers: dict[InterfaceClass, Any] = {}

    def add(self, source: str, interface: InterfaceClass, provider: Any) -> None:
        """Record ``provider`` for ``interface`` after ``verifyObject``."""
        try:
            verifyObject(interface, provider)
        except Invalid as e:
            raise PluginError(
                f"{source}: its {_name(interface)} is not valid:"
                f" {' '.join(str(e).split())}") from None
        self._providers[interface] = provider

    def add_plugin(self, plugin: ISnfdPlugin, service: Any) -> None:
        """Record what ``plugin.provided(service)`` offers, which must be
        exactly the interfaces the plugin declares in ``provides``."""
        offered = dict(plugin.provided(service))
        if set(offered) != set(plugin.provides):
            raise PluginError(
                f"plugin {plugin.name!r}: provided() gives"
                f" {sorted(map(_name, offered))}, provides declares"
                f" {sorted(map(_name, plugin.provides))}")
        for interface, provider in offered.items():
            self.add(f"plugin {plugin.name!r}", interface, provider)

    def get(self, interface: InterfaceClass) -> Any:
        return self._providers.get(interface)

    def for_plugin(self, plugin: ISnfdPlugin) -> Dependencies:
        """The dependencies of ``plugin`` (its providers are built: see
        ``select``)."""
        wanted: dict[InterfaceClass, Any] = {}
        for interface in plugin.requires:
            if interface not in self._providers:
                raise PluginError(f"plugin {plugin.name!r} requires {_name(interface)},"
                                  " which no enabled plugin provides")
            wanted[interface] = self._providers[interface]
        for interface in plugin.uses:
            if interface in self._providers:
                wanted[interface] = self._providers[interface]
        return Dependencies(f"plugin {plugin.name!r}", wanted)

