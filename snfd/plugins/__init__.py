"""Service plugins: every module here (or in any ``snfd/plugins/`` directory
on ``sys.path``) may provide ``ISnfdPlugin`` objects.

Third parties ship a module into ``snfd/plugins/`` of their own
distribution; the ``__path__`` extension below makes Twisted's plugin scan
see it.  See docs/plugins.md.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # type: ignore[name-defined]
__all__: list[str] = []
