"""A real node in process, for tests: built through the daemon's own
factories (``snfd.tap``), its services started, its clock a
``task.Clock``, and HTTP driven in process over its real root resource.

Usage::

    class MyTests(NodeTestCase):
        plugins = ("identity", "pithos")

        async def test_something(self):
            alice, token = await self.user("alice@example.org")
            status, body, headers = await self.call("GET", "/identity/v3", token=token)

The database is a fresh one on the test PostgreSQL with every enabled
plugin's migrations applied; the bus is the in-process one; nothing
listens on a port.  ``self.clock`` starts at the wall time and moves only
when a test advances it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import attrs
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.trial import unittest

from snfd import config as cfg
from snfd import plugin_loader, tap
from snfd.cluster import store as cluster_store
from snfd.node import Node
from snfd.testing.postgres import fresh_database
from snfd.testing.stubhttp import call, pumped

BASE = "http://node.test"


@attrs.frozen
class BuiltNode:
    """A node built and started by ``build_node``."""

    node: Node
    services: dict[str, Any]
    providers: plugin_loader.Registry


async def build_node(testcase: Any, plugins: tuple[str, ...],
                     overrides: dict[tuple[str, str], str] | None = None, *,
                     clock: Any = None, address: str = BASE) -> BuiltNode:
    """Build a node with ``plugins`` through ``snfd.tap``'s factories on a
    fresh database, mount its resources on ``node.root`` and start its
    services; ``testcase``'s cleanups stop everything.  ``address`` is the
    public URL (``[identity] public_url``)."""
    from twisted.internet import reactor

    installed = plugin_loader.installed()
    state = tempfile.mkdtemp(prefix="snfd-nodecase-")
    testcase.addCleanup(shutil.rmtree, state, True)
    wanted = {("identity", "public_url"): address, ("identity", "moderation"): "no",
              **(overrides or {})}
    env = {"SNFD_DATABASE_URL": "postgresql://unused@127.0.0.1/unused",
           "SNFD_STATE_DIR": state, "SNFD_PLUGINS": ",".join(plugins)}
    config = cfg.load_config(None, plugin_loader.config_keys(installed), environ=env,
                             overrides={k: v for k, v in wanted.items()
                                        if k[0] == "node" or k[0] in plugins
                                        or ":" in k[0]})
    chosen, remote = tap.select(config, installed)
    dsn = fresh_database(testcase, tap.node_schemas(chosen))
    node = tap.shared_resources(config, reactor, "test-node", Path(state), address, dsn,
                                chosen, clock=clock)
    providers, built = tap.build_services(node, chosen, remote)
    tap.mount(node, providers, built)
    node.db.start()
    testcase.addCleanup(node.db.close)
    await defer.maybeDeferred(node.bus.start)
    testcase.addCleanup(lambda: defer.maybeDeferred(node.bus.stop))
    for _, svc in built:
        svc.startService()
        testcase.addCleanup(svc.stopService)
    for _, svc in built:
        starting = getattr(svc, "_starting", None)
        if starting is not None:
            await starting
    return BuiltNode(node, {p.name: svc for p, svc in built}, providers)


class NodeTestCase(unittest.TestCase):
    """Builds ``self.node`` (a ``snfd.node.Node``), ``self.services`` (by
    plugin name), ``self.providers`` and ``self.http`` (a ``StubTreq``
    over the node's root) before each test, and stops them after it."""

    plugins: ClassVar[tuple[str, ...]] = ("identity", "pithos")
    overrides: ClassVar[dict[tuple[str, str], str]] = {}

    node: Node
    services: dict[str, Any]
    providers: plugin_loader.Registry
    http: StubTreq
    clock: task.Clock

    async def setUp(self) -> None:  # type: ignore[override]
        self.clock = task.Clock()
        self.clock.advance(time.time())
        built = await build_node(self, self.plugins, dict(self.overrides), clock=self.clock)
        self.node, self.services, self.providers = built.node, built.services, built.providers
        self.state_dir = Path(self.node.state_dir)
        self.http = StubTreq(self.node.root)

    async def user(self, email: str, admin: bool = False) -> tuple[str, str]:
        """An active user of the identity service: ``(uuid, token)``."""
        user, token = await self.services["identity"].accounts.create_user(
            email, "Test", "User", activate=True, admin=admin)
        return user.uuid, token or ""

    async def add_member(self, *plugins: str, node_id: str = "peer",
                         address: str = "http://peer.test") -> None:
        """Register another live member of the cluster running ``plugins``,
        as that node's ``Membership`` would at its start: the catalog lists
        their services.  It stays alive for three heartbeat intervals
        (``[node] heartbeat_interval``) of wall time."""
        await self.node.db.run("test.add_member", cluster_store.register_node_txn,
                               node_id, address, list(plugins))

    async def call(self, method: str, path: str, body: Any = None, *, token: str = "",
                   raw: bytes | None = None, headers: dict[str, str] | None = None,
                   ) -> tuple[int, Any, Any]:
        """``(status, decoded JSON body or None, response headers)``."""
        headers = dict(headers or {})
        if token:
            headers["X-Auth-Token"] = token
        return await call(self.http, method, BASE + path, body, raw, headers)

    async def request(self, method: str, path: str, data: bytes | None = None, *,
                      token: str = "", headers: dict[str, str] | None = None,
                      ) -> tuple[int, bytes, Any]:
        """``(status, raw body, response headers)``, for non-JSON APIs."""
        hdrs = {k: [v] for k, v in (headers or {}).items()}
        if token:
            hdrs["X-Auth-Token"] = [token]
        response = await pumped(self.http, self.http.request(  # type: ignore[attr-defined]
            method, BASE + path, data=data, headers=hdrs))
        content = await pumped(self.http, response.content())
        return response.code, content, response.headers


__all__ = ["BASE", "BuiltNode", "NodeTestCase", "build_node"]
