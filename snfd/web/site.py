"""The node's one HTTP site: request ids, one log line per request, metrics,
and the root resource that mounts each service under its path segment."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.web import resource, server

from snfd import errors
from snfd.metrics import Metrics

log = Logger(namespace="snfd.http")

BodySinkFactory = Callable[[Any, bytes, bytes, "int | None"], Any]

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class FaultResource(resource.Resource):
    """Answers every request below it with one fault."""

    isLeaf = True

    def __init__(self, fault: errors.Fault):
        super().__init__()
        self.fault = fault

    def render(self, request: Any) -> bytes:
        return errors.render_fault(request, self.fault)


class Root(resource.Resource):
    """Dispatches on the first path segment to the mounted resources.

    Unknown segments get an ``itemNotFound`` fault; the request's metric
    route is the mounted segment (``/identity``), never the raw path.
    """

    def __init__(self) -> None:
        super().__init__()
        self._mounts: dict[bytes, resource.IResource] = {}

    def mount(self, segment: str, child: resource.IResource) -> None:
        key = segment.encode("ascii")
        if key in self._mounts:
            raise ValueError(f"the path /{segment} is mounted twice")
        self._mounts[key] = child

    def body_sink(self, segment: bytes) -> BodySinkFactory | None:
        """The ``body_sink`` of the resource mounted at ``segment``, if any.

        A mounted resource may stream request bodies instead of having them
        buffered: its ``body_sink(request, method, uri, length)`` is called
        once the headers are in (``request.requestHeaders``; ``length`` is
        ``None`` for a chunked body) and returns ``None`` to buffer as
        usual, or a file-like sink.  Twisted calls the sink's
        ``write(data)`` per chunk, then ``tell()`` and ``seek(0, 0)``
        before the resource renders, and ``close()`` if the connection
        drops; the resource finds it as ``request.content``.
        """
        return getattr(self._mounts.get(segment), "body_sink", None)

    @property
    def segments(self) -> list[str]:
        return sorted(k.decode() for k in self._mounts)

    def getChild(self, path: bytes, request: Any) -> resource.IResource:
        child = self._mounts.get(path)
        if child is None:
            request.route = "other"
            return FaultResource(errors.NotFound(
                f"No such resource: /{path.decode('utf-8', 'replace')}"))
        request.route = "/" + path.decode("ascii")
        return child

    def render(self, request: Any) -> bytes:
        request.route = "/"
        return FaultResource(errors.NotFound(
            "Nothing here; see the service catalog of the identity service.")
        ).render(request)


class Request(server.Request):
    """A request with an id (``X-Request-Id``) and a start time."""

    route = "other"
    request_id = ""
    started = 0.0

    def process(self) -> None:
        site: Site = self.channel.site  # type: ignore[attr-defined]
        self.started = site.clock.seconds()
        given = self.getHeader(b"x-request-id")
        if given and _CLIENT_ID.match(given.decode("latin-1")):
            self.request_id = given.decode("latin-1")
        else:
            self.request_id = "req-" + uuid.uuid4().hex
        self.setHeader(b"x-request-id", self.request_id.encode("ascii"))
        super().process()

    def gotLength(self, length: int | None) -> None:
        """Choose where the body goes before it arrives: a service may
        stream it (``Site.stream_bodies``) instead of buffering it."""
        site: Site = self.channel.site  # type: ignore[attr-defined]
        # The request line is parsed but method and uri are only set on
        # the request once the body has arrived.
        method = getattr(self.channel, "_command", b"")
        uri = getattr(self.channel, "_path", b"")
        segment = uri.split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0]
        factory = site.resource.body_sink(segment) if isinstance(site.resource, Root) else None
        sink = factory(self, method, uri, length) if factory is not None else None
        if sink is None:
            super().gotLength(length)
        else:
            self.content = sink

    def processingFailed(self, reason: Any) -> None:
        """Whatever escapes a resource is answered with a fault, not an HTML
        traceback."""
        body = errors.render_fault(self, reason)
        self.setHeader(b"content-length", str(len(body)).encode("ascii"))
        self.write(body)
        self.finish()


class Site(server.Site):
    """The HTTP site: logs every request once and counts it in the metrics."""

    requestFactory = Request
    displayTracebacks = False
    noisy = False

    def __init__(self, root: resource.IResource, clock: Any, metrics: Metrics):
        super().__init__(root)
        self.clock = clock
        self.metrics = metrics

    def log(self, request: Any) -> None:
        duration = max(0.0, self.clock.seconds() - request.started)
        status = request.code
        route = getattr(request, "route", "other")
        method = request.method.decode("latin-1")
        # The path only: query strings may carry tokens (X-Auth-Token=...).
        path = request.path.decode("utf-8", "replace")
        self.metrics.http_requests.labels(route, method, str(status)).inc()
        self.metrics.http_latency.labels(route).observe(duration)
        log.info(
            "{method} {path} {status} {bytes}B {ms:.1f}ms {request_id}",
            method=method, path=path, status=status, bytes=request.sentLength,
            ms=duration * 1000, request_id=getattr(request, "request_id", "-"))
