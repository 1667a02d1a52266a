"""Driving an in-process resource with treq's ``StubTreq`` while its
handlers wait on real threads (the database pool).

StubTreq moves bytes only when flushed; ``pumped`` flushes until the
awaited Deferred has its result, yielding to the real reactor in between.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer, task


async def pumped(stub: StubTreq, d: defer.Deferred, timeout: float = 30.0) -> Any:
    """The result of ``d`` (raised if it failed), flushing ``stub``."""
    from twisted.internet import reactor

    box: list[Any] = []
    d.addBoth(box.append)
    waited = 0.0
    while not box:
        stub.flush()
        if box:
            break
        if waited > timeout:
            raise AssertionError(f"no response within {timeout}s")
        await task.deferLater(reactor, 0.005, lambda: None)
        waited += 0.005
    result = box[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


async def call(stub: StubTreq, method: str, url: str, body: Any = None,
               raw: bytes | None = None, headers: dict[str, str] | None = None,
               ) -> tuple[int, Any, Any]:
    """``(status, decoded JSON body or None, response headers)``."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {k: [v] for k, v in (headers or {}).items()}
    if data is not None:
        hdrs.setdefault("Content-Type", ["application/json"])
    response = await pumped(stub, stub.request(method, url, data=data,  # type: ignore[attr-defined]
                                               headers=hdrs))
    content = await pumped(stub, response.content())
    return response.code, json.loads(content) if content else None, response.headers


def serve(testcase: Any, root: Any, port: int = 0) -> str:
    """Serve ``root`` on a free port of 127.0.0.1 for one test: the base
    URL.  Cleanup closes every connection clients left open (keep-alive)
    and waits for them, then stops listening, so the reactor is clean."""
    from twisted.internet import reactor as global_reactor

    from snfd.metrics import Metrics
    from snfd.web.site import Site

    reactor: Any = global_reactor
    site = Site(root, reactor, Metrics())
    open_channels: list[Any] = []
    build = site.buildProtocol

    def tracked(addr: Any) -> Any:
        proto = build(addr)
        lost: defer.Deferred[None] = defer.Deferred()
        original = proto.connectionLost

        def connectionLost(reason: Any) -> None:
            original(reason)
            open_channels.remove((proto, lost))
            lost.callback(None)

        made = proto.makeConnection

        def makeConnection(transport: Any) -> None:
            proto.snfd_transport = transport
            made(transport)

        proto.connectionLost = connectionLost
        proto.makeConnection = makeConnection
        open_channels.append((proto, lost))
        return proto

    site.buildProtocol = tracked  # type: ignore[method-assign]
    listening = reactor.listenTCP(port, site, interface="127.0.0.1")

    async def close() -> None:
        await listening.stopListening()
        waits = []
        for proto, lost in list(open_channels):
            proto.snfd_transport.loseConnection()
            waits.append(lost)
        await defer.gatherResults(waits)

    testcase.addCleanup(lambda: defer.ensureDeferred(close()))
    return f"http://127.0.0.1:{listening.getHost().port}"
