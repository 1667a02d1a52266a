"""Finding, checking and selecting the installed service plugins."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from twisted.plugin import getPlugins
from zope.interface.exceptions import Invalid
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
    return {name: tuple(p.config_keys) for name, p in plugins.items()}


def select(plugins: Mapping[str, ISnfdPlugin],
           enabled: Iterable[str] | None) -> list[ISnfdPlugin]:
    """The plugins to run (``None``: all), in the order their services are
    built: by name, or as ``enabled`` lists them, except that a plugin comes
    after the plugins its optional ``after`` attribute names (those it
    uses when both run)."""
    if enabled is None:
        return _ordered([plugins[n] for n in sorted(plugins)])
    chosen: list[ISnfdPlugin] = []
    for name in enabled:
        if name not in plugins:
            have = ", ".join(sorted(plugins)) or "none"
            raise PluginError(
                f"[plugins] enabled: no installed plugin is named {name!r}"
                f" (installed: {have})")
        if plugins[name] not in chosen:
            chosen.append(plugins[name])
    return _ordered(chosen)


def _ordered(chosen: list[ISnfdPlugin]) -> list[ISnfdPlugin]:
    """``chosen`` with each plugin moved after those in its ``after``
    (stable otherwise); a cycle is a ``PluginError``."""
    names = {p.name for p in chosen}
    done: list[ISnfdPlugin] = []
    visiting: set[str] = set()
    by_name = {p.name: p for p in chosen}

    def visit(plugin: ISnfdPlugin) -> None:
        if plugin in done:
            return
        if plugin.name in visiting:
            raise PluginError(f"plugins {plugin.name!r} and others each want to start"
                              " after the other")
        visiting.add(plugin.name)
        for name in getattr(plugin, "after", ()):
            if name in names:
                visit(by_name[name])
        visiting.discard(plugin.name)
        done.append(plugin)

    for plugin in chosen:
        visit(plugin)
    return done
