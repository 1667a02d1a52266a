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
    """The plugins to run, in the order given (``None``: all, by name)."""
    if enabled is None:
        return [plugins[n] for n in sorted(plugins)]
    chosen = []
    for name in enabled:
        if name not in plugins:
            have = ", ".join(sorted(plugins)) or "none"
            raise PluginError(
                f"[plugins] enabled: no installed plugin is named {name!r}"
                f" (installed: {have})")
        if plugins[name] not in chosen:
            chosen.append(plugins[name])
    return chosen
