"""Declares ``twistd snfd``.  Imported by every twistd/plugin scan, so it
imports nothing of snfd until the command is actually used."""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class _SnfdServiceMaker:
    tapname = "snfd"
    description = "snfd cloud node: identity, storage, compute services as plugins"

    @property
    def options(self):  # type: ignore[no-untyped-def]
        from snfd.tap import Options

        return Options

    def makeService(self, options):  # type: ignore[no-untyped-def]
        from snfd.tap import makeService

        return makeService(options)


serviceMaker = _SnfdServiceMaker()
