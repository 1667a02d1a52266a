"""The node's one HTTP site: request ids, one log line per request, metrics,
streamed request bodies, and the root resource that mounts each service
under its path segment.

Streaming request bodies needs the request's method and URI once its
headers are in, before its body: Twisted sets ``Request.method`` and
``uri`` only after the whole body arrived and has no supported hook
before that (``Request.gotLength`` is where the body's destination is
chosen).  ``request_line`` therefore reads what the channel holds for the
request being received: ``HTTPChannel._command``/``_path`` (HTTP/1.1) or
``H2Stream.command``/``path``.  So that a Twisted upgrade cannot quietly
turn streaming into buffering, ``Site`` checks at construction, on a
request fed through the channel it will really use, that a body reaches
a ``body_sink`` piece by piece before it ends (``check_streaming``), and
refuses to start otherwise (``StreamingUnavailable``).

A body that is not streamed is buffered only up to the limit of the
resource it is for (``Root.body_limit``): a larger ``Content-Length`` is
answered 413 as soon as the headers are in, and a chunked body is cut off
with a 413 once it passes the limit; either way the connection is closed
without reading the rest of the body.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

from twisted.copyright import version as twisted_version
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.http_headers import Headers

from snfd import errors
from snfd.metrics import Metrics
from snfd.repeats import Repeats

log = Logger(namespace="snfd.http")

BodySinkFactory = Callable[[Any, bytes, bytes, "int | None"], Any]

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

BUFFER_RETRY_AFTER = 30
"""``Retry-After`` (seconds) when a body cannot be buffered: an operator acts."""

DEFAULT_MAX_BODY = 1024 * 1024
"""The largest request body buffered for a mounted resource that declares
no limit of its own (``Root.body_limit``), and for unknown paths."""


class StreamingUnavailable(RuntimeError):
    """The installed Twisted does not give a request's method and URI
    before its body, so request bodies could not be streamed."""


def request_line(channel: Any) -> tuple[bytes, bytes]:
    """The method and URI of the request ``channel`` is receiving, once
    its headers are in and before its body (see the module docstring).

    @raise StreamingUnavailable: the channel holds neither (a Twisted
        whose internals changed).
    """
    for method_name, uri_name in (("_command", "_path"), ("command", "path")):
        method = getattr(channel, method_name, None)
        uri = getattr(channel, uri_name, None)
        if isinstance(method, bytes) and isinstance(uri, bytes):
            return method, uri
    raise StreamingUnavailable(
        f"{type(channel).__name__} of Twisted {twisted_version} holds no method"
        " and URI before the request body; snfd.web.site.request_line needs"
        " updating for this Twisted version")


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

    def body_limit(self, segment: bytes, request: Any, method: bytes, uri: bytes) -> int:
        """The largest body, in bytes, buffered for a request to the
        resource mounted at ``segment`` (bodies its ``body_sink`` streams
        are not limited here).

        A mounted resource declares it with a ``body_limit(request,
        method, uri)`` method (once the headers are in, as for
        ``body_sink``) or a ``max_body`` attribute; otherwise, and for
        unknown segments, it is ``DEFAULT_MAX_BODY``.
        """
        child = self._mounts.get(segment)
        hook = getattr(child, "body_limit", None)
        if callable(hook):
            limit = hook(request, method, uri)
            if isinstance(limit, int):
                return limit
        given = getattr(child, "max_body", None)
        return given if isinstance(given, int) else DEFAULT_MAX_BODY

    def fault_style(self, segment: bytes, request: Any) -> str | None:
        """The error style (``request.fault_style``) of the resource
        mounted at ``segment`` for ``request``: its ``fault_style(request)``
        hook, if any (``TokenAuth`` has one)."""
        hook = getattr(self._mounts.get(segment), "fault_style", None)
        return hook(request) if callable(hook) else None

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
        refusal = _malformed(request)
        if refusal:
            style = self.fault_style(path, request)
            if style is not None:
                request.fault_style = style
            return FaultResource(errors.BadRequest(refusal))
        return child

    def render(self, request: Any) -> bytes:
        request.route = "/"
        return FaultResource(errors.NotFound(
            "Nothing here; see the service catalog of the identity service.")
        ).render(request)


# Bytes Python's line splitting (and so Twisted's Content-Type parsing,
# through the email package) takes for line breaks.
_LINE_BREAKS = re.compile(b"[\n\r\x0b\x0c\x1c-\x1e\x85]")


def _malformed(request: Any) -> str:
    """Why no service can act on ``request`` (``""``: it is fine).

    A NUL in a decoded path segment, query name or query value (no
    service can name anything with one: PostgreSQL text cannot hold it),
    and a Content-Type that Twisted could not parse (``Request``
    dropped it)."""
    if getattr(request, "bad_content_type", False):
        return "The Content-Type header holds control characters."
    if any(b"\x00" in segment for segment in request.postpath) or any(
            b"\x00" in name or any(b"\x00" in v for v in values)
            for name, values in (request.args or {}).items()):
        return "The path or the query string holds a NUL character (%00)."
    return ""


class Request(server.Request):
    """A request with an id (``X-Request-Id``) and a start time, whose
    buffered body is limited (``Root.body_limit``)."""

    route = "other"
    request_id = ""
    started = 0.0
    # Set by gotLength for a buffered body: its limit and what arrived.
    _body_limit: int | None = None
    _body_received = 0
    _body_refused = False
    _request_line = (b"", b"")

    def _identify(self) -> None:
        site: Site = self.channel.site  # type: ignore[attr-defined]
        self.started = site.clock.seconds()
        segment = self.path.lstrip(b"/").split(b"/", 1)[0]
        given = self.getHeader(b"x-request-id")
        if isinstance(site.resource, Root) and \
                site.resource.fault_style(segment, self) == "swift":
            # Swift's transaction id, which its clients and tempest parse.
            self.request_id = f"tx{uuid.uuid4().hex[:21]}-{int(self.started):010x}"
        elif given and _CLIENT_ID.match(given.decode("latin-1")):
            self.request_id = given.decode("latin-1")
        else:
            self.request_id = "req-" + uuid.uuid4().hex
        self._id_headers()

    def _id_headers(self) -> None:
        """The request id under the names OpenStack clients read it."""
        value = self.request_id.encode("ascii")
        for name in (b"x-request-id", b"x-openstack-request-id", b"x-trans-id"):
            self.setHeader(name, value)

    bad_content_type = False

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._buffered_whole():
            return
        # Twisted parses Content-Type with the email package, which raises
        # on line-break characters and drops the connection unanswered:
        # such a header is taken out here and the request refused (400).
        types = self.requestHeaders.getRawHeaders(b"content-type") or []
        if any(_LINE_BREAKS.search(t) for t in types):
            self.requestHeaders.removeHeader(b"content-type")
            self.bad_content_type = True
        site = getattr(self.channel, "site", None)
        segment = path.split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0]
        if site is not None and isinstance(site.resource, Root) and \
                site.resource.body_sink(segment) is not None:
            # A resource that reads its own bodies (the object store's
            # form uploads) gets them unparsed: Twisted would read a
            # multipart body whole into memory for ``request.args``.
            self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def process(self) -> None:
        self._identify()
        drain = getattr(self.channel.site, "drain", None)  # type: ignore[attr-defined]
        if drain is not None:
            if not self._counted:  # a request refused before its body
                self._count(drain)
            if drain.draining and hasattr(self.channel, "persistent"):
                # Leaving the pool: this connection ends with this response.
                self.responseHeaders.setRawHeaders(b"connection", [b"close"])
                self.channel.persistent = False
        super().process()

    _counted = False

    def _count(self, drain: Any) -> None:
        """In flight (``snfd.web.drain``) from its headers to its end."""
        self._counted = True
        drain.started()
        self.notifyFinish().addBoth(drain.finished)

    def gotLength(self, length: int | None) -> None:
        """Choose where the body goes before it arrives: the resource
        mounted at the first path segment may stream it
        (``Root.body_sink``); otherwise it is buffered up to that
        resource's limit (``Root.body_limit``), and a larger declared
        length is refused at once.  The request is in flight from here."""
        site: Site = self.channel.site  # type: ignore[attr-defined]
        if getattr(site, "drain", None) is not None:
            self._count(site.drain)
        if not isinstance(site.resource, Root):
            super().gotLength(length)
            return
        method, uri = request_line(self.channel)
        segment = uri.split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0]
        factory = site.resource.body_sink(segment)
        sink = factory(self, method, uri, length) if factory is not None else None
        if sink is not None:
            self.content = sink
            return
        self._request_line = (method, uri)
        limit = site.resource.body_limit(segment, self, method, uri)
        if length is not None and length > limit:
            self._refuse_body(limit)
            return
        self._body_limit = limit
        try:
            super().gotLength(length)
        except OSError as e:
            self._cannot_buffer(e)

    def handleContentChunk(self, data: bytes) -> None:
        """Buffer the next piece of the body, refusing it (413) once it
        passes its limit, or (503) when it cannot be written."""
        if self._body_refused:
            return
        if self._body_limit is not None:
            self._body_received += len(data)
            if self._body_received > self._body_limit:
                self._refuse_body(self._body_limit)
                return
        try:
            super().handleContentChunk(data)
        except OSError as e:
            self._cannot_buffer(e)

    def _buffered_whole(self) -> bool:
        """Whether a body buffered in a temporary file reached its file
        whole (what a write kept in memory is written now); answers 503
        and returns false when it did not."""
        content = getattr(self, "content", None)
        if self._body_limit is None or content is None or isinstance(content, io.BytesIO):
            return True
        site: Site = self.channel.site  # type: ignore[attr-defined]
        try:
            content.flush()
        except OSError as e:
            self._cannot_buffer(e)
            return False
        site.buffering.recovered()
        return True

    def _cannot_buffer(self, error: OSError) -> None:
        """A body larger than Twisted keeps in memory goes to a file in the
        system's temporary directory (``TMPDIR``); when that directory is
        full, read-only or failing, the request is answered 503 with
        ``Retry-After`` and what was written is dropped."""
        site: Site = self.channel.site  # type: ignore[attr-defined]
        site.buffering.failed(f"{error.strerror or error}; request bodies are answered 503")
        self._refuse(errors.ServiceUnavailable(
            "The server cannot take the request body at the moment (its temporary storage"
            " is full or failing). Please try again at a later time.",
            headers={"Retry-After": str(BUFFER_RETRY_AFTER)}))

    def _refuse_body(self, limit: int) -> None:
        """Answer 413 before the body is read (or while it is)."""
        self._refuse(errors.OverLimit(f"The request body is larger than {limit} bytes."))

    def _refuse(self, fault: errors.Fault) -> None:
        """Answer ``fault`` before the body is read (or while it is), in
        the error style of the resource it was for, and close the
        connection so that the rest of the body is never read."""
        self._body_refused = True
        channel = self.channel
        site: Site = channel.site  # type: ignore[attr-defined]
        method, uri = self._request_line
        self.method, self.uri = method, uri
        self.path = uri.split(b"?", 1)[0]
        self.args = {}
        self.clientproto = getattr(channel, "_version", None) or b"HTTP/1.1"
        # Whatever of the body is still in flight goes nowhere.
        decoder = getattr(channel, "_transferDecoder", None)
        if decoder is not None:
            decoder.dataCallback = decoder.finishCallback = _discard
        # Not "100 Continue" after the answer, and no next request.
        self.requestHeaders.removeHeader(b"expect")
        channel.persistent = False
        segment = self.path.lstrip(b"/").split(b"/", 1)[0]
        assert isinstance(site.resource, Root)
        name = segment.decode("ascii", "replace")
        self.route = "/" + name if name in site.resource.segments else "other"
        self._identify()
        self.fault_style = site.resource.fault_style(segment, self)
        self.setHeader(b"connection", b"close")
        content, self.content = getattr(self, "content", None), io.BytesIO()
        if content is not None and content is not self.content:
            with contextlib.suppress(OSError):
                content.close()
        body = errors.render_fault(self, fault)
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def processingFailed(self, reason: Any) -> None:
        """Whatever escapes a resource is answered with a fault, not an HTML
        traceback; resources that answer later (``NOT_DONE_YET``) hand
        what escapes them here too.  Headers set before the failure are
        dropped (one of them may be what failed); if the answer had
        already started, the connection is dropped instead (the client
        sees a short body, never a wrong one), so a request never hangs.
        That is logged with its traceback unless ``reason`` is a fault,
        whose cause is logged where it arose (a block store's failing
        disk, once per streak)."""
        if self.finished or self._disconnected:
            log.failure("A request failed after it was answered", reason)
            return
        if self.startedWriting:
            if not reason.check(errors.Fault):
                log.failure("A request failed while it was being answered; dropping"
                            " the connection", reason)
            transport: Any = self.channel.transport
            transport.abortConnection()
            return
        self.responseHeaders = Headers()
        if self.request_id:
            self._id_headers()
        body = errors.render_fault(self, reason)
        self.setHeader(b"content-length", str(len(body)).encode("ascii"))
        self.write(body)
        self.finish()


def _discard(data: bytes) -> None:
    pass


class Site(server.Site):
    """The HTTP site: logs every request once and counts it in the metrics."""

    requestFactory = Request
    displayTracebacks = False
    noisy = False

    def __init__(self, root: resource.IResource, clock: Any, metrics: Metrics,
                 drain: Any = None):
        """@param drain: a ``snfd.web.drain.Drain`` that counts requests in
            flight and says when responses must close their connections.
        @raise StreamingUnavailable: request bodies could not be
            streamed with the installed Twisted (``check_streaming``)."""
        super().__init__(root)
        self.clock = clock
        self.metrics = metrics
        self.drain = drain
        #: Failures to buffer request bodies in ``TMPDIR``, logged with discipline.
        self.buffering = Repeats(log, f"buffering request bodies in {tempfile.gettempdir()}",
                                 clock)
        check_streaming(type(self))

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


class _ProbeSink:
    """Records what ``check_streaming``'s request body delivers."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes, int | None]] = []
        self.chunks: list[bytes] = []

    def sink(self, request: Any, method: bytes, uri: bytes, length: int | None) -> Any:
        self.calls.append((method, uri, length))
        return self

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def tell(self) -> int:
        return sum(len(c) for c in self.chunks)

    def seek(self, offset: int, whence: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


def check_streaming(site_class: type[Site] = Site) -> None:
    """Check that ``site_class`` streams request bodies with the installed
    Twisted: a request fed through the channel its ``buildProtocol`` makes
    reaches a ``Root``-mounted ``body_sink`` with its method, URI and
    length, and the first part of its body reaches the sink before the
    rest was sent.  In memory (no sockets, no reactor), in microseconds.

    @raise StreamingUnavailable: it does not.
    """
    probe = _ProbeSink()
    root = Root()
    sink_resource = resource.Resource()
    sink_resource.body_sink = probe.sink  # type: ignore[attr-defined]
    root.mount("probe", sink_resource)
    site = site_class.__new__(site_class)
    # The factory as Site.__init__ makes it, minus this check; a manual
    # clock so that no timer reaches the real reactor.
    server.Site.__init__(site, root, timeout=None, reactor=task.Clock())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 0))
    error: BaseException | None = None
    try:
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"PUT /probe/object?a=1 HTTP/1.1\r\nHost: probe\r\n"
                             b"Content-Length: 10\r\n\r\nfirst")
    except Exception as e:
        error = e
    finally:
        channel.connectionLost(Failure(ConnectionDone()))
    if isinstance(error, StreamingUnavailable):
        raise error
    if error is not None or probe.calls != [(b"PUT", b"/probe/object?a=1", 10)] \
            or probe.chunks != [b"first"]:
        raise StreamingUnavailable(
            f"with Twisted {twisted_version}, a request body no longer reaches"
            f" the body sink as it arrives (sink calls {probe.calls!r}, chunks"
            f" {probe.chunks!r}, error {error!r}); snfd.web.site needs updating")
