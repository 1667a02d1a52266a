"""The node's own endpoints: ``/_health``, ``/_cluster`` and ``/metrics``."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web import resource, server

from snfd import errors
from snfd.web.auth import token_of


class GetLeaf(resource.Resource):
    """A GET/HEAD-only leaf answered by ``async def answer(request)``, which
    returns the body (``bytes``) or raises a fault.  ``paths``: the
    remaining paths it answers (the leaf itself, with or without a slash)."""

    isLeaf = True
    paths: tuple[list[bytes], ...] = ([], [b""])

    def render(self, request: Any) -> Any:
        if request.postpath not in self.paths:
            return errors.render_fault(request, errors.NotFound("No such resource."))
        if request.method not in (b"GET", b"HEAD"):
            return errors.render_fault(request, errors.MethodNotAllowed(
                "Only GET is allowed here.", headers={"Allow": "GET, HEAD"}))
        gone: list[object] = []
        request.notifyFinish().addBoth(gone.append)
        defer.ensureDeferred(self._respond(request, gone))
        return server.NOT_DONE_YET

    async def _respond(self, request: Any, gone: list[object]) -> None:
        try:
            body = await self.answer(request)
        except Exception as e:
            body = errors.render_fault(request, e)
        if gone:  # the client went away while we were answering
            return
        request.setHeader(b"content-length", str(len(body)).encode("ascii"))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    async def answer(self, request: Any) -> bytes:
        raise NotImplementedError


def _json(request: Any, value: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value).encode("utf-8")


class Health(GetLeaf):
    """``GET /_health``: the state of the database and the bus; for a load
    balancer, 503 when the node is stopping (``snfd.web.drain``) or its
    database has failed every ping for ``grace`` seconds, 200 otherwise.

    ``grace`` defaults to the pool's ``retry_window``, the time requests
    wait out an outage before they fail: a database failover shorter than
    that (which every node sees alike) leaves the nodes in the balancer,
    answering once it is over, and the answer says ``"degraded"``
    meanwhile; a node cut off from its database for longer leaves."""

    def __init__(self, node: Any, timeout: float = 2.0, drain: Any = None,
                 grace: float | None = None):
        super().__init__()
        self._node = node
        self._timeout = timeout
        self._drain = drain
        self._grace = grace if grace is not None else float(
            getattr(node.db, "retry_window", 0.0))
        #: when the pings began failing (the node's reactor time); None: they answer
        self._failing_since: float | None = None

    async def answer(self, request: Any) -> bytes:
        node = self._node
        if self._drain is not None and self._drain.draining:
            # Stopping (snfd.web.drain): a load balancer sends nothing more.
            return _json(request, {"status": "draining", "node": node.node_id}, 503)
        db: dict[str, Any]
        try:
            rtt = await node.db.ping(self._timeout)
            db = {"ok": True, "latency_ms": round(rtt * 1000, 2)}
            self._failing_since = None
        except Exception as e:
            now = node.reactor.seconds()
            if self._failing_since is None:
                self._failing_since = now
            db = {"ok": False, "error": " ".join(str(e).split()),
                  "failing_for_s": round(now - self._failing_since, 1)}
        bus = {"ok": bool(node.bus.connected), "kind": node.bus_kind}
        up = db["ok"] or db["failing_for_s"] < self._grace
        body = {
            "status": ("ok" if db["ok"] and bus["ok"] else "degraded" if up else "unavailable"),
            "node": node.node_id,
            "database": db,
            "bus": bus,
            "leader": node.election.is_leader,
            "plugins": sorted(node.plugins),
        }
        return _json(request, body, 200 if up else 503)


class ClusterView(GetLeaf):
    """``GET /_cluster``: members, leader and epoch; for callers from the
    ``trusted`` addresses or networks (``None``: ``[node] cluster_trusted``
    of ``node.config``; by default none), or callers whose token
    ``authenticator`` (an ``IAuthenticator``, when the node has one) says
    belongs to an administrator.

    Loopback is not trusted by itself: behind a reverse proxy on the same
    host every client's request arrives from 127.0.0.1."""

    def __init__(self, node: Any, authenticator: Any = None,
                 trusted: Iterable[str] | None = None):
        super().__init__()
        self._node = node
        self._authenticator = authenticator
        if trusted is None:
            config = getattr(node, "config", None)
            trusted = config.node.cluster_trusted if config is not None else ()
        self._trusted = tuple(ipaddress.ip_network(a, strict=False) for a in trusted)

    async def answer(self, request: Any) -> bytes:
        if not await self._allowed(request):
            raise errors.Forbidden(
                "The cluster view is only for local callers and administrators.")
        try:
            status = await self._node.membership.status()
        except Exception as e:
            raise errors.ServiceUnavailable(
                f"database unavailable: {' '.join(str(e).split())}") from e
        status["this_node_leads"] = self._node.election.is_leader
        status["election_rounds"] = self._node.election.rounds
        return _json(request, status)

    async def _allowed(self, request: Any) -> bool:
        peer = request.getClientAddress()
        if isinstance(peer, IPv4Address | IPv6Address) and self._trusts(peer.host):
            return True
        if self._authenticator is None:
            return False
        try:
            token = token_of(request)
            principal = await self._authenticator.authenticate(token) if token else None
        except errors.Fault:
            return False
        return bool(principal is not None and principal.is_admin)


    def _trusts(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == n.version and address in n for n in self._trusted)


class MetricsPage(GetLeaf):
    """``GET /metrics``: the Prometheus text exposition."""

    def __init__(self, metrics: Any):
        super().__init__()
        self._metrics = metrics

    async def answer(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return self._metrics.render()
