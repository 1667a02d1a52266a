"""A plugin's own non-HTTP listeners: started with the node after the
shared resources, stopped before them; a bad description stops the node."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, error, protocol, reactor
from twisted.plugin import IPlugin
from twisted.protocols.basic import LineReceiver
from twisted.trial import unittest
from zope.interface import implementer

from snfd import config as cfg
from snfd import tap
from snfd.interfaces import ISnfdPlugin
from snfd.testing.node import free_port
from snfd.testing.postgres import fresh_database


class Echo(LineReceiver):
    def lineReceived(self, line: bytes) -> None:
        self.sendLine(b"echo " + line)


class EchoService(service.Service):
    name = "echo"  # type: ignore[assignment]


@implementer(IPlugin, ISnfdPlugin)
class EchoPlugin:
    name = "echo"
    config_keys = ()
    schema = None
    provides = ()
    requires = ()
    uses = ()

    def __init__(self, description: str):
        self.description = description

    def makeService(self, node: Any, section: Any, deps: Any) -> Any:
        return EchoService()

    def provided(self, svc: Any) -> dict[Any, Any]:
        return {}

    def mounts(self, svc: Any) -> dict[str, Any]:
        return {}

    def listeners(self, svc: Any) -> list[Any]:
        factory = protocol.Factory.forProtocol(Echo)
        return [(self.description, factory)]

    def duties(self, svc: Any) -> list[Any]:
        return []


class Client(LineReceiver):
    def __init__(self) -> None:
        self.lines: defer.Deferred[bytes] = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        self.lines.callback(line)


class ListenerTests(unittest.TestCase):
    def build(self, description: str) -> service.IService:
        plugin = EchoPlugin(description)
        state = tempfile.mkdtemp(prefix="snfd-test-state-")
        self.addCleanup(shutil.rmtree, state, True)
        env = {"SNFD_DATABASE_URL": fresh_database(self),
               "SNFD_LISTEN": f"tcp:{free_port()}:interface=127.0.0.1",
               "SNFD_STATE_DIR": state}
        config = cfg.load_config(None, {plugin.name: plugin.config_keys}, environ=env,
                                 overrides={("database", "auto_upgrade"): "yes"})
        return tap.build(config, {plugin.name: plugin}, reactor)

    async def ask(self, port: int) -> bytes:
        point = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        client = await endpoints.connectProtocol(point, Client())
        try:
            client.sendLine(b"hi")
            return await client.lines
        finally:
            client.transport.loseConnection()

    async def test_listener_served_and_stopped(self):
        """The plugin's listener answers while the node runs and its port is
        closed once the node has stopped."""
        port = free_port()
        node = self.build(f"tcp:{port}:interface=127.0.0.1")
        node.startService()
        try:
            self.assertEqual(await self.ask(port), b"echo hi")
        finally:
            await node.stopService()
        with self.assertRaises(error.ConnectionRefusedError):
            await self.ask(port)

    def test_bad_description_stops_node(self):
        """A listener description strports cannot parse is a startup error
        naming the plugin."""
        e = self.assertRaises(tap.StartupError, self.build, "nosuchkind:1")
        self.assertIn("plugin echo: listener 'nosuchkind:1'", str(e))
