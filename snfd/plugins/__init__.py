"""Service plugins: every module here (or in any ``snfd/plugins/`` directory
on ``sys.path``) may provide ``ISnfdPlugin`` objects.

Third parties ship a module into ``snfd/plugins/`` of their own
distribution; the ``__path__`` extension below makes Twisted's plugin scan
see it.  See docs/plugins.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.plugin import pluginPackagePaths
from zope.interface.interface import InterfaceClass

__path__.extend(pluginPackagePaths(__name__))  # type: ignore[name-defined]
__all__: list[str] = ["ServicePlugin"]


class ServicePlugin:
    """The members most plugins share; a plugin class sets ``name``,
    ``config_keys``, ``schema`` and what it provides, requires and uses,
    and names its service factory in ``factory``.

    ``factory`` is ``"package.module:function"``, called as
    ``function(node, section, deps)``; the module is imported only when a
    node builds the service, so that scanning the installed plugins stays
    cheap.  The service's own ``provided()``, ``mounts()``,
    ``listeners()`` and ``duties()`` answer for the plugin where it has
    them; otherwise there are none.
    """

    schema: Any = None
    #: Families of sections: ``{"oidc": keys}`` declares ``[oidc:NAME]``.
    config_families: dict[str, tuple[Any, ...]] = {}
    provides: tuple[InterfaceClass, ...] = ()
    requires: tuple[InterfaceClass, ...] = ()
    uses: tuple[InterfaceClass, ...] = ()
    factory: str = ""

    def makeService(self, node: Any, section: Any, deps: Any) -> Any:
        module, _, function = self.factory.partition(":")
        return getattr(importlib.import_module(module), function)(node, section, deps)

    def provided(self, service: Any) -> dict[InterfaceClass, Any]:
        return dict(service.provided()) if hasattr(service, "provided") else {}

    def mounts(self, service: Any) -> dict[str, Any]:
        return dict(service.mounts()) if hasattr(service, "mounts") else {}

    def listeners(self, service: Any) -> list[Any]:
        return list(service.listeners()) if hasattr(service, "listeners") else []

    def duties(self, service: Any) -> list[Any]:
        return list(service.duties()) if hasattr(service, "duties") else []

