"""The node: the shared resources every plugin receives, and its lifecycle.

``Node`` is a plain holder built by ``snfd.tap``; ``NodeService`` starts
the shared resources first and the plugins after them, and stops them in
exactly the reverse order, one after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from snfd.cluster.election import LeaderElection
from snfd.cluster.membership import Membership
from snfd.config import Config
from snfd.db.pool import Database
from snfd.httpclient import HTTPClientPool
from snfd.interfaces import IMessageBus, ISnfdPlugin
from snfd.metrics import Metrics
from snfd.web.site import Root

log = Logger(namespace="snfd.node")


@attrs.frozen
class Node:
    """The shared resources a plugin's ``makeService(node, section, deps)``
    gets; built once by ``snfd.tap`` and never changed afterwards.  What
    one service offers another is not here: it comes through ``deps``
    (see ``ISnfdPlugin``).  ``clock`` is the reactor itself in a node;
    tests build nodes with a ``task.Clock`` there.  ``monotonic`` is a
    ``snfd.clock.MonotonicClock`` in a node, and the test's ``task.Clock``
    (the same one as ``clock``) in a test node."""

    config: Config
    reactor: Any  # threads, connections, listening
    clock: Any  # IReactorTime: every timer and timestamp of the services
    monotonic: Any  # seconds() that never jumps: durations (leases, TTLs)
    node_id: str
    address: str
    state_dir: Path
    metrics: Metrics
    db: Database
    dsn: str
    bus: IMessageBus
    bus_kind: str
    http: HTTPClientPool
    membership: Membership
    election: LeaderElection
    root: Root
    plugins: Mapping[str, ISnfdPlugin] = attrs.Factory(dict)


def public_base(node: Node, own_url: str = "") -> str:
    """Where clients reach this cluster's services: a service's own
    ``public_url`` setting, else ``[identity] public_url`` when the identity
    plugin runs here, else this node's address; no trailing slash."""
    if own_url:
        return str(own_url).rstrip("/")
    identity = node.config["identity"] if "identity" in node.plugins else None
    if identity is not None and identity.public_url:
        return str(identity.public_url).rstrip("/")
    return str(node.address).rstrip("/")


class NodeService(service.MultiService):
    """Children start in the order added and stop in reverse, each stop
    awaited before the next (a plugin stops before the pool it uses)."""

    def stopService(self) -> defer.Deferred:
        service.Service.stopService(self)
        return defer.ensureDeferred(self._stop_in_order())

    async def _stop_in_order(self) -> None:
        for child in reversed(list(self)):
            try:
                await defer.maybeDeferred(child.stopService)
            except Exception:
                log.failure("stopping {name} failed", name=getattr(child, "name", child))


class SharedResource(service.Service):
    """Adapts a shared resource's start/stop callables to a service."""

    def __init__(self, name: str, start: Callable[[], Any] | None = None,
                 stop: Callable[[], Any] | None = None):
        self.name = name  # type: ignore[assignment]
        self._start, self._stop = start, stop

    def startService(self) -> None:
        super().startService()
        if self._start is not None:
            d = defer.maybeDeferred(self._start)
            d.addErrback(lambda f: log.failure("starting {name} failed", f, name=self.name))

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._stop is None:
            return defer.succeed(None)
        return defer.maybeDeferred(self._stop)
