"""The object store's HTTP API: OpenStack Swift v1 with the Pithos
extensions (reference section 2), over ``Backend`` and the block store.

``PithosAPI.resource()`` serves ``/object-store/v1/...`` (the node wraps
it in ``TokenAuth``, which leaves the caller on ``request.principal``);
``PithosAPI.public_resource()`` serves public links, ``/public/<token>``,
without authentication.

Paths: ``/v1`` and ``/v1/`` (accounts sharing with the caller),
``/v1/<account>``, ``/v1/<account>/<container>`` and
``/v1/<account>/<container>/<object>``.  The account and container
segments are percent-decoded one by one (so ``%2F`` inside them is a 400:
they cannot hold ``/``); the object name is everything after the
container, percent-decoded, ``/`` kept.  Names must be UTF-8, without
NUL, not empty, at most 256 (account, container) or 1024 (object)
characters, else 400.  Names are keys, not file paths: ``.``, ``..`` and
``a/../b`` are ordinary object names (as in Swift).

ETag: the object's MD5 when it is known (uploads through the API always
compute it; after a hashmap upload or a partial update it is computed in
the background, see ``PithosAPI.drain``), else its Merkle hash
(``X-Object-Hash``).  Large objects (Swift DLO/SLO, ``snfd.pithos.swift``)
have the quoted ETag of Swift's rules.  The hash travels unquoted, as
Pithos and Swift send it for plain objects.

Deliberate differences from the reference, for Swift clients:

- An object ``PUT`` without ``Content-Type`` is not a 411 (``swift
  upload`` sends none): the type is guessed from the name, else
  ``application/octet-stream``.
- A container or account ``POST`` without ``?update`` replaces the user
  metadata only when it carries metadata headers; a bare ``POST`` (an ACL
  or policy change) leaves them alone.  Object ``POST`` always follows
  the reference (and Swift): without ``?update`` the metadata given
  replace the old.
- Block uploads (container ``POST`` with data) are open to every user who
  can see the container (a write is checked when a hashmap names the
  blocks).

Errors are ``snfd.errors`` faults rendered by ``render_fault``; the only
other error body is the 409 of a hashmap upload, the JSON list of the
missing block hashes (the protocol the reference defines).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import mimetypes
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, unquote_to_bytes
from xml.sax.saxutils import escape, quoteattr

import attrs
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos import swift, updates
from snfd.pithos.backend import (
    KEEP,
    MAX_CONTAINER_NAME,
    MAX_LIST,
    MAX_OBJECT_NAME,
    MissingBlocks,
)
from snfd.pithos.hashmap import EMPTY_HASH, HASH_ALGORITHM, HashmapError, checked_hashmap
from snfd.pithos.model import ContainerInfo, ObjectInfo, Permissions, Subdir
from snfd.pithos.streams import BlockSink, send_range
from snfd.web.auth import user_of

log = Logger(namespace="snfd.pithos")

MAX_ACCOUNT_NAME = 256
MAX_HASHMAP_BODY = 32 * 1024 * 1024
"""Largest hashmap upload body (a 1 TiB object's hashmap is ~18 MiB)."""
MAX_SMALL_BODY = 8 * 1024 * 1024
"""Largest buffered body a metadata request may carry (SLO manifests,
bulk deletes)."""
OCTET_STREAM = "application/octet-stream"
STREAM_FROM = 64 * 1024
"""Bodies of known length below this are buffered in memory and stored
by the handler (no up-front check: a small upload costs one transaction);
longer or chunked ones stream into the block store behind a gate."""
_TOKEN = re.compile(r"^[0-9A-Za-z]{1,64}$")
_TRUE = ("1", "true", "yes", "on", "t", "y")
_JSON = "application/json; charset=utf-8"
_XML = "application/xml; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


# -- what a request addresses ---------------------------------------------------


@attrs.frozen
class Target:
    """What a path names: ``level`` is ``top``, ``account``, ``container``
    or ``object``; the names below it are ``None``."""

    account: str | None = None
    container: str | None = None
    name: str | None = None

    @property
    def level(self) -> str:
        if self.name is not None:
            return "object"
        if self.container is not None:
            return "container"
        if self.account is not None:
            return "account"
        return "top"


def _decoded(raw: bytes, what: str, limit: int) -> str:
    try:
        value = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.BadRequest(f"The {what} name is not valid UTF-8.") from None
    if not value:
        raise errors.BadRequest(f"The {what} name is empty.")
    if "\x00" in value:
        raise errors.BadRequest(f"The {what} name holds a NUL character.")
    if len(value) > limit:
        raise errors.BadRequest(f"The {what} name is longer than {limit} characters.")
    return value


def parse_target(segments: Sequence[bytes]) -> Target:
    """The ``Target`` of the raw path segments below the mount point
    (``[b"v1", account, container, *object]``); see the module docstring.

    @raise errors.NotFound: not a ``/v1`` path.
    @raise errors.BadRequest: a bad name.
    """
    if not segments or segments[0] != b"v1":
        raise errors.NotFound("No such resource: the API lives under /object-store/v1.")
    rest = list(segments[1:])
    if rest and rest[-1] == b"" and len(rest) <= 3:
        rest.pop()  # a trailing slash after the account or container
    if not rest:
        return Target()
    account = _decoded(rest[0], "account", MAX_ACCOUNT_NAME)
    if "/" in account:
        raise errors.BadRequest("The account name may not hold '/'.")
    if len(rest) == 1:
        return Target(account)
    container = _decoded(rest[1], "container", MAX_CONTAINER_NAME)
    if "/" in container:
        raise errors.BadRequest("The container name may not hold '/'.")
    if len(rest) == 2:
        return Target(account, container)
    name = _decoded(b"/".join(rest[2:]), "object", MAX_OBJECT_NAME)
    return Target(account, container, name)


# -- replies --------------------------------------------------------------------


Stream = Callable[[Any], Awaitable[bool]]


@attrs.define
class Reply:
    """A response: status, headers (in order; a name may repeat), and a
    body or a ``stream`` writing ``length`` bytes (``False`` when the
    client went away).  ``HEAD`` replies send the headers only."""

    code: int
    headers: list[tuple[str, str]] = attrs.Factory(list)
    body: bytes = b""
    content_type: str | None = None
    stream: Stream | None = None
    length: int | None = None


@attrs.frozen
class _Part:
    """A stretch of stored bytes (an object, or a segment of a large one)."""

    hashes: list[str]
    size: int
    block_size: int


def _json(value: Any, code: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(code, headers or [], json.dumps(value).encode("utf-8"), _JSON)


def _xml(body: str, code: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(code, headers or [], (_XML_HEAD + body).encode("utf-8"), _XML)


def _text_lines(lines: Sequence[str], headers: list[tuple[str, str]]) -> Reply:
    """A text listing; 204 when empty (Swift and Pithos)."""
    if not lines:
        return Reply(204, headers)
    return Reply(200, headers, "".join(f"{n}\n" for n in lines).encode("utf-8"), _TEXT)


def _x(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


# -- query parameters -----------------------------------------------------------


@attrs.define
class Call:
    """One request being answered: the raw request, its method, target
    and decoded query parameters (first value of each)."""

    request: Any
    method: str
    target: Target
    args: dict[str, str]

    @property
    def user(self) -> str:
        user = user_of(self.request).user
        assert user is not None
        return user

    def has(self, name: str) -> bool:
        return name in self.args

    def get(self, name: str) -> str | None:
        return self.args.get(name)

    def header(self, name: str) -> str | None:
        return hdr.header(self.request, name)

    def fmt(self, default: str = "text") -> str:
        return hdr.listing_format(self.args.get("format"), self.header("Accept"), default)

    def flag(self, name: str) -> bool:
        """A parameter given at all (``?shared``, ``?update``)."""
        return name in self.args

    def truthy(self, name: str) -> bool:
        return (self.args.get(name) or "").strip().lower() in _TRUE

    def integer(self, name: str) -> int | None:
        value = self.args.get(name)
        if value is None or value == "":
            return None
        if not value.strip().isdigit():
            raise errors.BadRequest(f"The parameter {name} must be a non-negative integer.")
        return int(value)

    def epoch(self, name: str = "until") -> float | None:
        value = self.args.get(name)
        if value is None or value == "":
            return None
        try:
            t = float(value)
        except ValueError:
            raise errors.BadRequest(f"The parameter {name} must be epoch seconds.") from None
        if not 0 <= t < 1e11:
            raise errors.BadRequest(f"The parameter {name} is out of range.")
        return t

    def limit(self) -> int:
        given = self.integer("limit")
        return MAX_LIST if given is None else min(given, MAX_LIST)

    def text_param(self, name: str) -> str | None:
        value = self.args.get(name)
        if value is not None and "\x00" in value:
            raise errors.BadRequest(f"The parameter {name} holds a NUL character.")
        return value


def query_args(request: Any) -> dict[str, str]:
    """The query parameters of ``request`` by name (first value; ``""``
    for a bare ``?update``, which twisted's ``request.args`` drops),
    UTF-8 (400 otherwise)."""
    _, _, query = request.uri.partition(b"?")
    out = {}
    for key, values in raw_query(query).items():
        name = hdr.text(key, "A query parameter name")
        out[name] = hdr.text(values[0], f"The parameter {name}") if values else ""
    return out


def raw_query(query: bytes) -> dict[bytes, list[bytes]]:
    """``query`` parsed, keys and values percent-decoded to bytes (any
    escape is kept byte for byte; callers decide on UTF-8)."""
    parsed = parse_qs(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return {k.encode("latin-1"): [v.encode("latin-1") for v in vs]
            for k, vs in parsed.items()}


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


# -- the API --------------------------------------------------------------------


class PithosAPI:
    """Builds the object store's resources; see the module docstring.

    @param backend: the ``Backend``.
    @param blocks: the ``IBlockStore`` (``block_size``, ``put``, ``get``).
    @param reactor: the reactor (its thread pool hashes).
    @param public_url: base URL of the cluster; public links are
        ``<public_url>/public/<token>``, storage URLs
        ``<public_url>/object-store/v1/<account>``.
    @param authenticator: the node's ``IAuthenticator``, which lets
        streamed uploads be refused before their data is stored
        (``None``: request bodies are buffered and checked after).
    @param blocks_in_flight: blocks of one upload stored at once.
    """

    def __init__(self, backend: Any, blocks: Any, reactor: Any, public_url: str,
                 authenticator: Any = None, *, blocks_in_flight: int = 2):
        self.backend = backend
        self.blocks = blocks
        self.reactor = reactor
        self.public_url = public_url.rstrip("/")
        self.authenticator = authenticator
        self.blocks_in_flight = blocks_in_flight
        self._background: set[defer.Deferred[None]] = set()

    def resource(self) -> Resource:
        """The ``/object-store`` resource."""
        return _ObjectStore(self)

    def public_resource(self) -> Resource:
        """The ``/public`` resource."""
        return _Public(self)

    async def drain(self) -> None:
        """Wait for the background work started so far (MD5 computations
        after hashmap uploads and partial updates)."""
        while self._background:
            await defer.DeferredList(list(self._background), consumeErrors=True)

    # -- serving ----------------------------------------------------------

    async def respond(self, request: Any, handle: Callable[[Any], Awaitable[Reply]]) -> None:
        """Run ``handle(request)`` and send its reply (or its fault)."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        try:
            reply = await handle(request)
        except Exception as e:
            if gone:
                return
            body = errors.render_fault(request, e)
            if request.code not in (204, 304):
                request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()
            return
        if gone:
            return
        request.setResponseCode(reply.code)
        for name, value in reply.headers:
            request.responseHeaders.addRawHeader(hdr.reply_name(name),
                                                 hdr.reply_value(name, value))
        if reply.content_type is not None:
            request.setHeader(b"content-type", reply.content_type.encode("utf-8"))
        if reply.code not in (204, 304):
            length = reply.length if reply.stream is not None else len(reply.body)
            request.setHeader(b"content-length", b"%d" % (length or 0))
        if reply.stream is None or request.method == b"HEAD":
            request.write(reply.body)
            request.finish()
            return
        try:
            complete = await reply.stream(request)
        except Exception:
            log.failure("Streaming {path} failed; dropping the connection",
                        path=request.path.decode("utf-8", "replace"))
            if not gone and request.channel is not None:
                request.channel.transport.abortConnection()
            return
        if complete and not gone:
            request.finish()

    async def handle(self, request: Any) -> Reply:
        """Route one ``/object-store`` request."""
        segments = list(request.postpath)
        if segments[:1] == [b"info"] and len(segments) <= 2 and not any(segments[1:]):
            if request.method not in (b"GET", b"HEAD"):
                raise errors.MethodNotAllowed("Use GET.", headers={"Allow": "GET, HEAD"})
            return _json(swift.info_document())
        target = parse_target(segments)
        method = request.method.decode("ascii", "replace").upper()
        call = Call(request, method, target, query_args(request))
        routes = _ROUTES[target.level]
        handler = routes.get(method)
        if handler is None:
            allowed = ", ".join(sorted(routes))
            raise errors.MethodNotAllowed(
                f"{method} is not allowed here (allowed: {allowed}).",
                headers={"Allow": allowed})
        reply: Reply = await handler(self, call)
        return reply

    # -- streamed request bodies --------------------------------------------

    def body_sink(self, request: Any, method: bytes, uri: bytes,
                  length: int | None) -> BlockSink | None:
        """A ``BlockSink`` for the bodies that become blocks (object PUT
        data, container POST block uploads) unless they are small
        (``STREAM_FROM``), else ``None`` (buffered).

        The sink stores nothing before ``_gate`` has authenticated the
        token and checked that the caller may write there; a refused
        upload's body is read and dropped, and the handler answers the
        gate's fault.
        """
        if self.authenticator is None or method not in (b"PUT", b"POST"):
            return None
        if length is not None and length < STREAM_FROM:
            return None
        path, _, query = uri.partition(b"?")
        args = raw_query(query)
        heads = request.requestHeaders
        target: Target | None
        refusal: errors.Fault | None = None
        try:
            target = parse_target(path.split(b"/")[2:])
        except errors.Fault as e:
            target, refusal = None, e
        if method == b"PUT":
            if target is not None and target.level != "object":
                return None
            if (b"hashmap" in args or args.get(b"multipart-manifest") == [b"put"]
                    or heads.hasHeader(b"x-copy-from") or heads.hasHeader(b"x-move-from")):
                return None
            if length is not None and length > swift.MAX_FILE_SIZE:
                refusal = refusal or errors.OverLimit(
                    f"Objects are at most {swift.MAX_FILE_SIZE} bytes; upload"
                    " larger ones in segments.")
            kind = "object"
        else:
            if target is None or target.level != "container" or length == 0:
                return None
            given = heads.getRawHeaders(b"content-type") or [b""]
            if _media_type(given[0].decode("latin-1")) != OCTET_STREAM:
                return None
            kind = "blocks"
        gate = defer.ensureDeferred(self._gate(heads, args, target, kind, refusal))
        transport = request.channel.transport
        return BlockSink(self.blocks, self.reactor, gate, transport.pauseProducing,
                         transport.resumeProducing, block_size=self.blocks.block_size,
                         max_in_flight=self.blocks_in_flight)

    async def _gate(self, heads: Any, args: dict[bytes, list[bytes]], target: Target | None,
                    kind: str, refusal: errors.Fault | None) -> None:
        if refusal is not None:
            raise refusal
        assert target is not None and target.account and target.container
        raw = heads.getRawHeaders(b"x-auth-token") or args.get(b"X-Auth-Token")
        token = raw[0].decode("latin-1").strip() if raw else ""
        if not token:
            raise errors.Unauthorized("This request needs a user token (X-Auth-Token).")
        principal = await self.authenticator.authenticate(token)
        if principal.is_component or principal.user is None:
            raise errors.Forbidden("This request needs a user token, not a service token.")
        user = principal.user
        await self.backend.container(user, target.account, target.container)
        if user == target.account or kind != "object":
            return
        assert target.name is not None
        try:
            info = await self.backend.object(user, target.account, target.container,
                                             target.name)
        except errors.NotFound:
            return  # a write permission inherited from a directory: put_object decides
        if info.allowed_to != "write":
            raise errors.Forbidden("You may not write this object.")

    async def _upload(self, request: Any) -> tuple[int, list[str], str]:
        """``(size, hashes, md5)`` of the request body, stored as blocks:
        from the ``BlockSink`` it was streamed into, or (when it was
        buffered) read and stored now."""
        content = request.content
        if isinstance(content, BlockSink):
            request.pithos_upload_taken = True
            upload = await content.result()
            return upload.size, upload.hashes, upload.md5 or ""
        content.seek(0, 2)
        size = content.tell()
        content.seek(0)
        if size < STREAM_FROM:
            # A small body is in memory: hashing it here costs less than
            # the thread hops; the block store still writes in its threads.
            data = content.read()
            bs = self.blocks.block_size
            hashes = await self.blocks.put([data[i:i + bs] for i in range(0, size, bs)])
            return size, hashes or [EMPTY_HASH], hashlib.md5(
                data, usedforsecurity=False).hexdigest()
        pool = self.reactor.getThreadPool()
        md5 = hashlib.md5(usedforsecurity=False)
        hashes = []
        size = 0
        while True:
            chunk = await deferToThreadPool(self.reactor, pool, content.read,
                                            self.blocks.block_size)
            if not chunk:
                break
            await deferToThreadPool(self.reactor, pool, md5.update, chunk)
            hashes.extend(await self.blocks.put([chunk]))
            size += len(chunk)
        return size, hashes or [EMPTY_HASH], md5.hexdigest()

    async def _settle_upload(self, request: Any) -> None:
        """Let a streamed body finish (its error is moot: the request
        failed before using it)."""
        content = request.content
        if isinstance(content, BlockSink) and not getattr(request, "pithos_upload_taken", False):
            request.pithos_upload_taken = True
            try:
                await content.result()
            except Exception:
                pass

    def _small_body(self, request: Any, limit: int = MAX_SMALL_BODY) -> bytes:
        content = request.content
        if isinstance(content, BlockSink):
            raise errors.BadRequest("This request takes no data.")
        content.seek(0, 2)
        if content.tell() > limit:
            raise errors.OverLimit(f"The request body is larger than {limit} bytes.")
        content.seek(0)
        data: bytes = content.read()
        return data

    # -- MD5 after the fact ----------------------------------------------------

    def _checksum_later(self, info: ObjectInfo) -> None:
        """Compute the MD5 of ``info``'s content off the reactor and record
        it (fire and forget; failures are logged)."""
        if info.checksum or info.hashes is None:
            return
        d = defer.ensureDeferred(self._checksum(info))
        self._background.add(d)

        def done(result: Any) -> None:
            self._background.discard(d)
            if hasattr(result, "getTraceback"):
                log.failure("Computing the MD5 of {path} version {serial} failed",
                            result, path=info.path, serial=info.serial)

        d.addBoth(done)

    async def _checksum(self, info: ObjectInfo) -> None:
        assert info.hashes is not None
        pool = self.reactor.getThreadPool()
        md5 = hashlib.md5(usedforsecurity=False)
        left = info.size
        for h in info.hashes:
            if left <= 0:
                break
            block = await self.blocks.get(h)
            piece = block[:min(left, info.block_size)]
            await deferToThreadPool(self.reactor, pool, md5.update, piece)
            left -= len(piece)
        await self.backend.set_checksum(info.serial, md5.hexdigest())

    # -- pieces of replies ---------------------------------------------------------

    def public_link(self, token: str) -> str:
        return f"{self.public_url}/public/{token}"

    def _object_headers(self, info: ObjectInfo, user: str | None, etag: str,
                        last_modified: float) -> list[tuple[str, str]]:
        out = [
            ("ETag", etag),
            ("Last-Modified", hdr.http_date(last_modified)),
            ("X-Timestamp", hdr.x_timestamp(info.mtime)),
            ("Accept-Ranges", "bytes"),
            ("X-Object-Hash", info.hash),
            ("X-Object-UUID", info.uuid),
            ("X-Object-Version", str(info.serial)),
            ("X-Object-Version-Timestamp", hdr.timestamp(info.mtime)),
            ("X-Object-Modified-By", info.muser),
        ]
        for key, value in sorted(info.meta.items()):
            if key.startswith("X-Object-Meta-") or key in hdr.CONTENT_HEADERS:
                out.append((key, value))
            elif key == swift.SLO:
                out.append((key, "True"))
        if info.sharing:
            out.append(("X-Object-Sharing", hdr.format_sharing(info.sharing)))
        if info.shared_by:
            out.append(("X-Object-Shared-By", info.shared_by))
        if info.allowed_to and user != info.account:
            out.append(("X-Object-Allowed-To", info.allowed_to))
        if info.public and user == info.account:
            out.append(("X-Object-Public", self.public_link(info.public)))
        return out

    def _entry(self, info: ObjectInfo, user: str) -> dict[str, Any]:
        """An object as a JSON listing shows it."""
        entry: dict[str, Any] = {
            "name": info.name,
            "hash": info.checksum or info.hash,
            "bytes": info.size,
            "content_type": info.type,
            "last_modified": hdr.iso_date(info.mtime),
            "x_object_hash": info.hash,
            "x_object_uuid": info.uuid,
            "x_object_version": info.serial,
            "x_object_version_timestamp": hdr.timestamp(info.mtime),
            "x_object_modified_by": info.muser,
        }
        if info.sharing:
            entry["x_object_sharing"] = hdr.format_sharing(info.sharing)
        if info.shared_by:
            entry["x_object_shared_by"] = info.shared_by
        if info.allowed_to and user != info.account:
            entry["x_object_allowed_to"] = info.allowed_to
        if info.public and user == info.account:
            entry["x_object_public"] = self.public_link(info.public)
        return entry

    async def _content(self, user: str, info: ObjectInfo, raw: bool,
                       want_data: bool) -> tuple[list[_Part], int, str]:
        """The bytes a GET of ``info`` sends, its size and ETag: the
        object's own, or (unless ``raw``) a large object's segments."""
        own = ([_Part(info.hashes or [EMPTY_HASH], info.size, info.block_size)],
               info.size, info.checksum or info.hash)
        if raw:
            return own
        if swift.is_slo(info):
            size, etag = swift.slo_size(info), swift.slo_etag(info)
            if not want_data:
                return [], size, etag
            segments = await swift.segments_for(self.backend, self.blocks, user, info) or []
            parts = [_Part(s.hashes or [EMPTY_HASH], s.size, s.block_size) for s in segments]
            return parts, size, etag
        if swift.dlo_source(info) is not None:
            segments = await swift.segments_for(self.backend, self.blocks, user, info) or []
            parts = [_Part(s.hashes or [EMPTY_HASH], s.size, s.block_size) for s in segments]
            return parts, sum(s.size for s in segments), swift.manifest_etag(segments)
        return own

    async def _send(self, request: Any, parts: Sequence[_Part], start: int, end: int) -> bool:
        offset = 0
        for p in parts:
            lo, hi = max(start, offset), min(end, offset + p.size)
            if lo < hi and not await send_range(request, self.blocks, p.hashes, p.size,
                                                lo - offset, hi - offset, p.block_size):
                return False
            offset += p.size
            if offset >= end:
                break
        return True

    def _body_reply(self, call: Call, headers: list[tuple[str, str]], parts: list[_Part],
                    size: int, content_type: str, etag: str, mtime: float,
                    ranges_allowed: bool = True) -> Reply:
        """200 with the whole content, 206 with one range or a
        ``multipart/byteranges`` of several (416 when none fits)."""
        ranges = None
        if ranges_allowed and hdr.if_range_holds(call.request, etag, mtime):
            ranges = hdr.parse_ranges(call.header("Range"), size)
        if ranges is None:
            return Reply(200, headers, content_type=content_type, length=size,
                         stream=lambda r: self._send(r, parts, 0, size))
        if len(ranges) == 1:
            start, end = ranges[0]
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
            return Reply(206, headers, content_type=content_type, length=end - start,
                         stream=lambda r: self._send(r, parts, start, end))
        boundary = secrets.token_hex(16)
        heads = [(f"--{boundary}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Range: bytes {s}-{e - 1}/{size}\r\n\r\n").encode()
                 for s, e in ranges]
        tail = f"--{boundary}--\r\n".encode("ascii")
        length = sum(len(h) + (e - s) + 2 for h, (s, e) in zip(heads, ranges, strict=True))
        length += len(tail)

        async def stream(request: Any) -> bool:
            for head, (s, e) in zip(heads, ranges, strict=True):
                request.write(head)
                if not await self._send(request, parts, s, e):
                    return False
                request.write(b"\r\n")
            request.write(tail)
            return True

        return Reply(206, headers, content_type=f"multipart/byteranges; boundary={boundary}",
                     length=length, stream=stream)

    # -- top level -------------------------------------------------------------------

    async def top_get(self, call: Call) -> Reply:
        """Accounts sharing with the caller, or the v1-auth dummy answer."""
        if getattr(call.request, "principal", None) is None:
            auth_user = call.header("X-Auth-User")
            auth_key = call.header("X-Auth-Key")
            if auth_user and auth_key:
                url = f"{self.public_url}/object-store/v1/{quote(auth_user.strip(), safe='')}"
                return Reply(204, [("X-Auth-Token", auth_key.strip()),
                                   ("X-Storage-Token", auth_key.strip()),
                                   ("X-Storage-Url", url)])
        user = call.user
        fmt = call.fmt()
        sharers = [] if call.integer("limit") == 0 else await self.backend.sharers(
            user, marker=call.text_param("marker") or None, limit=call.limit())
        if fmt == "json":
            return _json([{"name": s.name, "last_modified": hdr.iso_date(s.mtime)}
                          for s in sharers])
        if fmt == "xml":
            items = "".join(f"<account>{_x('name', s.name)}"
                            f"{_x('last_modified', hdr.iso_date(s.mtime))}</account>"
                            for s in sharers)
            return _xml(f"<accounts>{items}</accounts>")
        return _text_lines([s.name for s in sharers], [])

    # -- accounts --------------------------------------------------------------------

    async def _account_headers(self, call: Call) -> list[tuple[str, str]]:
        t = call.target
        assert t.account is not None
        user = call.user
        until = call.epoch()
        info = await self.backend.account(user, t.account, until)
        latest = info if until is None else await self.backend.account(user, t.account)
        hdr.check_preconditions(call.request, None, latest.mtime,
                                reading=call.method in ("GET", "HEAD"))
        out = [("Last-Modified", hdr.http_date(latest.mtime)),
               ("X-Timestamp", hdr.x_timestamp(latest.mtime))]
        if user != t.account:
            return out
        out += [("X-Account-Container-Count", str(info.count)),
                ("X-Account-Bytes-Used", str(info.bytes))]
        if until is not None:
            out.append(("X-Account-Until-Timestamp", hdr.timestamp(info.until or until)))
        for name, members in sorted(info.groups.items()):
            out.append((f"X-Account-Group-{hdr.normal_key(name)}", ",".join(members)))
        for project, quota in sorted(info.quotas.items()):
            out.append((f"X-Account-Policy-Quota-{project}", str(quota)))
        out.append(("X-Account-Policy-Quota", str(sum(info.quotas.values()))))
        for key, value in sorted(info.meta.items()):
            out.append((key, value))
        if info.sharing:
            out.append(("X-Account-Access-Control",
                        swift.permissions_to_account_acl(info.sharing)))
        return out

    async def account_head(self, call: Call) -> Reply:
        return Reply(204, await self._account_headers(call))

    async def account_get(self, call: Call) -> Reply:
        """The container listing."""
        t = call.target
        assert t.account is not None
        user = call.user
        headers = await self._account_headers(call)
        until = call.epoch()
        fmt = call.fmt()
        containers: list[ContainerInfo] = []
        if call.integer("limit") != 0:
            containers = await self.backend.containers(
                user, t.account, marker=call.text_param("marker") or None,
                end_marker=call.text_param("end_marker") or None,
                prefix=call.text_param("prefix") or "", limit=call.limit(),
                reverse=call.truthy("reverse"), shared=call.flag("shared"),
                public=call.flag("public"), until=until)
        owner = user == t.account
        if fmt == "json":
            return _json([self._container_entry(c, owner, until) for c in containers],
                         headers=headers)
        if fmt == "xml":
            items = "".join(self._container_xml(c, owner, until) for c in containers)
            return _xml(f"<account name={quoteattr(t.account)}>{items}</account>",
                        headers=headers)
        return _text_lines([c.name for c in containers], headers)

    @staticmethod
    def _container_entry(c: ContainerInfo, owner: bool, until: float | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": c.name, "count": c.count, "bytes": c.bytes,
                                 "last_modified": hdr.iso_date(c.mtime)}
        if until is not None:
            entry["x_container_until_timestamp"] = hdr.timestamp(c.until or until)
        if owner:
            entry["x_container_policy"] = {"quota": str(c.policy.quota),
                                           "versioning": c.policy.versioning,
                                           "project": c.policy.project}
        return entry

    def _container_xml(self, c: ContainerInfo, owner: bool, until: float | None) -> str:
        entry = self._container_entry(c, owner, until)
        policy = entry.pop("x_container_policy", None)
        inner = "".join(_x(k, v) for k, v in entry.items())
        if policy is not None:
            inner += "<x_container_policy>" + "".join(
                _x("key", k) + _x("value", v) for k, v in policy.items()
            ) + "</x_container_policy>"
        return f"<container>{inner}</container>"

    async def account_post(self, call: Call) -> Reply:
        """Metadata, groups and ACL; or a Swift bulk delete."""
        t = call.target
        assert t.account is not None
        user = call.user
        if call.flag("bulk-delete"):
            return await self._bulk_delete(call)
        meta = hdr.meta_headers(call.request, "Account")
        groups = hdr.group_headers(call.request)
        replace = not call.flag("update")
        acl = call.header("X-Account-Access-Control")
        permissions = KEEP if acl is None else swift.account_acl_to_permissions(acl)
        if meta is not None or groups is not None or permissions is not KEEP:
            await self.backend.update_account(user, t.account, meta, replace, groups,
                                              permissions)
        return Reply(202)

    async def account_delete(self, call: Call) -> Reply:
        if call.flag("bulk-delete"):
            call.user  # noqa: B018 -- 401 before reading the body
            return await self._bulk_delete(call)
        raise errors.MethodNotAllowed("Accounts are not deleted through this API.",
                                      headers={"Allow": "HEAD, GET, POST"})

    async def _bulk_delete(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None
        summary = await swift.bulk_delete(self.backend, call.user, t.account,
                                          self._small_body(call.request))
        return self._summary_reply(call, summary)

    def _summary_reply(self, call: Call, summary: dict[str, Any]) -> Reply:
        """Swift's bulk summary in the format asked for (text by default)."""
        fmt = call.fmt()
        if fmt == "json":
            return _json(summary)
        if fmt == "xml":
            parts = []
            for key, value in summary.items():
                tag = key.lower().replace(" ", "_")
                if key == "Errors":
                    errs = "".join(f"<object>{_x('name', n)}{_x('status', s)}</object>"
                                   for n, s in value)
                    parts.append(f"<errors>{errs}</errors>")
                else:
                    parts.append(_x(tag, value))
            return _xml(f"<delete>{''.join(parts)}</delete>")
        lines = []
        for key, value in summary.items():
            if key == "Errors":
                lines.append("Errors:")
                lines.extend(f"{n}, {s}" for n, s in value)
            else:
                lines.append(f"{key}: {value}")
        return Reply(200, [], ("\n".join(lines) + "\n").encode("utf-8"), _TEXT)

    # -- containers ------------------------------------------------------------------

    async def _container_headers(self, call: Call) -> list[tuple[str, str]]:
        t = call.target
        assert t.account is not None and t.container is not None
        user = call.user
        until = call.epoch()
        info = await self.backend.container(user, t.account, t.container, until)
        latest = info if until is None else await self.backend.container(
            user, t.account, t.container)
        hdr.check_preconditions(call.request, None, latest.mtime,
                                reading=call.method in ("GET", "HEAD"))
        out = [("Last-Modified", hdr.http_date(latest.mtime)),
               ("X-Timestamp", hdr.x_timestamp(latest.mtime)),
               ("X-Container-Block-Size", str(self.blocks.block_size)),
               ("X-Container-Block-Hash", HASH_ALGORITHM)]
        if until is not None:
            out.append(("X-Container-Until-Timestamp", hdr.timestamp(info.until or until)))
        out += [("X-Container-Object-Count", str(info.count)),
                ("X-Container-Bytes-Used", str(info.bytes))]
        if user != t.account:
            return out
        if info.object_meta:
            out.append(("X-Container-Object-Meta", ",".join(info.object_meta)))
        out += [("X-Container-Policy-Quota", str(info.policy.quota)),
                ("X-Container-Policy-Versioning", info.policy.versioning),
                ("X-Container-Policy-Project", info.policy.project)]
        for key, value in sorted(info.meta.items()):
            out.append((key, value))
        if info.sharing:
            read, write = swift.permissions_to_acl(info.sharing)
            if read:
                out.append(("X-Container-Read", read))
            if write:
                out.append(("X-Container-Write", write))
        return out

    async def container_head(self, call: Call) -> Reply:
        return Reply(204, await self._container_headers(call))

    async def container_get(self, call: Call) -> Reply:
        """The object listing (reference 2.5)."""
        t = call.target
        assert t.account is not None and t.container is not None
        user = call.user
        headers = await self._container_headers(call)
        fmt = call.fmt()
        prefix = call.text_param("prefix") or ""
        delimiter = call.text_param("delimiter") or None
        path = call.text_param("path")
        path_mode = path is not None
        if path is not None:
            prefix = path if not path or path.endswith("/") else path + "/"
            delimiter = "/"
        meta_filters = [m.strip() for m in (call.text_param("meta") or "").split(",")
                        if m.strip()]
        entries: list[ObjectInfo | Subdir] = []
        if call.integer("limit") != 0:
            entries = await self.backend.objects(
                user, t.account, t.container, prefix=prefix, delimiter=delimiter,
                marker=call.text_param("marker") or None,
                end_marker=call.text_param("end_marker") or None, limit=call.limit(),
                reverse=call.truthy("reverse"), path_mode=path_mode,
                meta_filters=meta_filters, shared=call.flag("shared"),
                public=call.flag("public"), until=call.epoch())
        if fmt == "json":
            return _json([{"subdir": e.name} if isinstance(e, Subdir) else self._entry(e, user)
                          for e in entries], headers=headers)
        if fmt == "xml":
            items = []
            for e in entries:
                if isinstance(e, Subdir):
                    items.append(f"<subdir name={quoteattr(e.name)}>{_x('name', e.name)}"
                                 "</subdir>")
                else:
                    items.append("<object>" + "".join(
                        _x(k, v) for k, v in self._entry(e, user).items()) + "</object>")
            return _xml(f"<container name={quoteattr(t.container)}>{''.join(items)}"
                        "</container>", headers=headers)
        return _text_lines([e.name for e in entries], headers)

    def _container_acl(self, call: Call, current: Permissions | None) -> Permissions | None:
        read, write = call.header("X-Container-Read"), call.header("X-Container-Write")
        if read is None and write is None:
            return KEEP
        old_read, old_write = swift.permissions_to_acl(current or Permissions())
        return swift.acl_to_permissions(old_read if read is None else read,
                                        old_write if write is None else write)

    async def container_put(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None
        user = call.user
        policy = hdr.policy_headers(call.request) or {}
        meta = hdr.meta_headers(call.request, "Container") or {}
        created = await self.backend.put_container(user, t.account, t.container, policy, meta)
        if call.header("X-Container-Read") is not None or \
                call.header("X-Container-Write") is not None:
            current = None
            if not created:
                current = (await self.backend.container(user, t.account, t.container)).sharing
            await self.backend.update_container(user, t.account, t.container, None, False,
                                                None, self._container_acl(call, current))
        return Reply(201 if created else 202)

    async def container_post(self, call: Call) -> Reply:
        """Metadata, policy and ACL changes, and block uploads."""
        t = call.target
        assert t.account is not None and t.container is not None
        request = call.request
        try:
            user = call.user
            meta = hdr.meta_headers(request, "Container")
            policy = hdr.policy_headers(request)
            replace = not call.flag("update")
            permissions = KEEP
            if call.header("X-Container-Read") is not None or \
                    call.header("X-Container-Write") is not None:
                current = await self.backend.container(user, t.account, t.container)
                permissions = self._container_acl(call, current.sharing)
            changed = meta is not None or policy is not None or permissions is not KEEP
            if changed:
                await self.backend.update_container(user, t.account, t.container, meta,
                                                    replace, policy, permissions)
            uploading = isinstance(request.content, BlockSink) or (
                _media_type(call.header("Content-Type")) == OCTET_STREAM
                and self._has_body(request))
            if not changed and not isinstance(request.content, BlockSink):
                await self.backend.container(user, t.account, t.container)  # 404?
            if not uploading:
                return Reply(202)
            size, hashes, _ = await self._upload(request)
        finally:
            await self._settle_upload(request)
        if size == 0:
            return Reply(202)
        fmt = call.fmt(default="json")
        if fmt == "xml":
            return _xml("<items>" + "".join(_x("item", h) for h in hashes) + "</items>", 202)
        if fmt == "text":
            return Reply(202, [], "".join(f"{h}\n" for h in hashes).encode(), _TEXT)
        return _json(hashes, 202)

    @staticmethod
    def _has_body(request: Any) -> bool:
        content = request.content
        content.seek(0, 2)
        size: int = content.tell()
        content.seek(0)
        return size > 0

    async def container_delete(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None
        await self.backend.delete_container(call.user, t.account, t.container,
                                            until=call.epoch(),
                                            delimiter=call.text_param("delimiter") or None)
        return Reply(204)

    # -- objects: reading ------------------------------------------------------------

    @staticmethod
    def _version(call: Call) -> int | None:
        value = call.get("version")
        if value is None or value == "":
            return None
        if not value.isdigit():
            raise errors.BadRequest("The parameter version must be a version id or 'list'.")
        return int(value)

    async def object_get(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        fmt = call.fmt()
        if call.get("version") == "list":
            return await self._versions(call, fmt)
        version = self._version(call)
        info = await self.backend.object(user, t.account, t.container, t.name, version)
        if info.deleted:
            raise errors.NotFound("That version is a deletion.")
        latest = info.mtime
        if version is not None:
            try:
                latest = (await self.backend.object(user, t.account, t.container,
                                                    t.name)).mtime
            except errors.NotFound:
                pass
        if call.flag("hashmap") and fmt != "text":
            return self._hashmap_reply(call, info, latest, fmt)
        manifest_get = call.get("multipart-manifest") == "get"
        reading = call.method == "GET"
        parts, size, etag = await self._content(user, info, manifest_get, reading)
        hdr.check_preconditions(call.request, etag, latest, reading=True)
        headers = self._object_headers(info, user, etag, latest)
        headers = self._disposition(call, headers, info)
        if manifest_get and swift.is_slo(info):
            manifest = await swift.get_slo_manifest(self.backend, self.blocks, user, info)
            return _json(manifest, headers=headers)
        return self._body_reply(call, headers, parts, size, info.type, etag, latest)

    @staticmethod
    def _disposition(call: Call, headers: list[tuple[str, str]],
                     info: ObjectInfo) -> list[tuple[str, str]]:
        kind = call.get("disposition-type")
        if kind is None:
            return headers
        if kind not in ("inline", "attachment"):
            raise errors.BadRequest("disposition-type must be inline or attachment.")
        headers = [(k, v) for k, v in headers if k != "Content-Disposition"]
        headers.append(("Content-Disposition", hdr.content_disposition(kind, info.name)))
        return headers

    def _hashmap_reply(self, call: Call, info: ObjectInfo, latest: float, fmt: str) -> Reply:
        etag = info.checksum or info.hash
        hdr.check_preconditions(call.request, etag, latest, reading=True)
        hashes = info.hashes or [EMPTY_HASH]
        headers = self._object_headers(info, call.user, etag, latest)
        if fmt == "xml":
            items = "".join(_x("hash", h) for h in hashes)
            return _xml(f"<object name={quoteattr(info.name)} bytes=\"{info.size}\""
                        f" block_size=\"{info.block_size}\" block_hash=\"{HASH_ALGORITHM}\">"
                        f"{items}</object>", headers=headers)
        return _json({"block_size": info.block_size, "block_hash": HASH_ALGORITHM,
                      "bytes": info.size, "hashes": hashes}, headers=headers)

    async def _versions(self, call: Call, fmt: str) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        if fmt == "text":
            raise errors.BadRequest("version=list needs format=json or format=xml.")
        versions = await self.backend.versions(call.user, t.account, t.container, t.name)
        if fmt == "xml":
            items = "".join(f"<version timestamp=\"{hdr.timestamp(m)}\">{s}</version>"
                            for s, m in versions)
            return _xml(f"<object name={quoteattr(t.name)}>{items}</object>")
        return _json({"versions": [[s, hdr.timestamp(m)] for s, m in versions]})

    # -- objects: writing ------------------------------------------------------------

    def _content_type(self, call: Call) -> str:
        """The type of a new object: the request's, else guessed (see
        the module docstring)."""
        given = call.header("Content-Type")
        if given is not None and given.strip():
            value = given.strip()
            if len(value) > 256 or not value.isprintable():
                raise errors.BadRequest("Bad Content-Type header.")
            return value
        assert call.target.name is not None
        return mimetypes.guess_type(call.target.name)[0] or OCTET_STREAM

    def _object_meta(self, call: Call) -> dict[str, str]:
        meta = hdr.meta_headers(call.request, "Object") or {}
        meta.update(hdr.content_meta(call.request))
        return meta

    def _permissions(self, call: Call) -> tuple[Permissions | None, bool | None]:
        sharing = call.header("X-Object-Sharing")
        public = call.header("X-Object-Public")
        return (KEEP if sharing is None else hdr.parse_sharing(sharing),
                None if public is None else hdr.parse_public(public))

    async def object_put(self, call: Call) -> Reply:
        """Upload (streamed), hashmap upload, SLO manifest, or copy/move."""
        request = call.request
        try:
            call.user  # noqa: B018 -- 401 before anything else
            if call.header("X-Copy-From") is not None or \
                    call.header("X-Move-From") is not None:
                return await self._copy_by_put(call)
            if call.flag("hashmap"):
                return await self._put_hashmap(call)
            if call.get("multipart-manifest") == "put":
                return await self._put_slo(call)
            return await self._put_data(call)
        finally:
            await self._settle_upload(request)

    async def _write_conditions(self, call: Call) -> tuple[int | None, bool]:
        """``(expect_serial, if_none_match)`` for a write: ``If-Match``
        needs the current object (412 if absent or different);
        ``If-None-Match`` takes only ``*``."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        expect = None
        if_match = call.header("If-Match")
        if if_match is not None:
            try:
                current = await self.backend.object(call.user, t.account, t.container, t.name)
            except errors.NotFound:
                raise errors.PreconditionFailed("The object does not exist.") from None
            if not hdr.etag_matches(if_match, current.checksum or current.hash) and \
                    not hdr.etag_matches(if_match, current.hash):
                raise errors.PreconditionFailed("The object does not match If-Match.")
            expect = current.serial
        if_none = call.header("If-None-Match")
        if if_none is not None and if_none.strip() != "*":
            raise errors.BadRequest("If-None-Match on a write only takes '*'.")
        return expect, if_none is not None

    async def _put_data(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        content_type = self._content_type(call)
        meta = self._object_meta(call)
        permissions, public = self._permissions(call)
        expect, if_none = await self._write_conditions(call)
        given_etag = call.header("ETag")
        size, hashes, md5 = await self._upload(call.request)
        if size > swift.MAX_FILE_SIZE:
            raise errors.OverLimit(f"Objects are at most {swift.MAX_FILE_SIZE} bytes.")
        if given_etag is not None and given_etag.strip().strip('"').lower() != md5:
            raise errors.Unprocessable("The data does not match the ETag given.")
        info = await self.backend.put_object(
            user, t.account, t.container, t.name, size=size, hashes=hashes,
            content_type=content_type, checksum=md5, meta=meta, permissions=permissions,
            public=public, expect_serial=expect, if_none_match=if_none)
        return self._created(info)

    def _created(self, info: ObjectInfo, code: int = 201) -> Reply:
        return Reply(code, [("ETag", info.checksum or info.hash),
                            ("X-Object-Version", str(info.serial)),
                            ("Last-Modified", hdr.http_date(info.mtime))])

    async def _put_hashmap(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        body = self._small_body(call.request, MAX_HASHMAP_BODY)
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise errors.BadRequest("A hashmap upload takes a JSON body"
                                    ' {"bytes": N, "hashes": [...]}.') from None
        if not isinstance(doc, dict):
            raise errors.BadRequest('The hashmap must be a JSON object {"bytes", "hashes"}.')
        try:
            size, hashes = checked_hashmap(doc.get("bytes"), doc.get("hashes"),
                                           self.blocks.block_size)
        except HashmapError as e:
            raise errors.BadRequest(f"Bad hashmap: {e}") from None
        if size > swift.MAX_FILE_SIZE:
            raise errors.OverLimit(f"Objects are at most {swift.MAX_FILE_SIZE} bytes.")
        content_type = self._content_type(call)
        meta = self._object_meta(call)
        permissions, public = self._permissions(call)
        expect, if_none = await self._write_conditions(call)
        try:
            info = await self.backend.put_object(
                user, t.account, t.container, t.name, size=size, hashes=hashes,
                content_type=content_type, checksum="", meta=meta, permissions=permissions,
                public=public, expect_serial=expect, if_none_match=if_none)
        except MissingBlocks as e:
            return _json(e.hashes, 409)
        if info.hashes is None:
            info = attrs.evolve(info, hashes=hashes)
        self._checksum_later(info)
        return self._created(info)

    async def _put_slo(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        body = self._small_body(call.request, swift.MAX_MANIFEST_SIZE)
        info = await swift.put_slo(self.backend, self.blocks, call.user, t.account,
                                   t.container, t.name, body, self._content_type(call),
                                   self._object_meta(call))
        return Reply(201, [("ETag", swift.slo_etag(info)),
                           ("X-Object-Version", str(info.serial)),
                           ("Last-Modified", hdr.http_date(info.mtime))])

    async def _copy_by_put(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        move = call.header("X-Move-From") is not None
        source = call.header("X-Move-From" if move else "X-Copy-From")
        assert source is not None
        container, name = hdr.split_object_path(source, "X-Move-From" if move
                                                else "X-Copy-From")
        account = hdr.unquoted(call.header("X-Source-Account") or "",
                               "X-Source-Account").strip() or t.account
        return await self._copy(call, (account, container, name),
                                (t.account, t.container, t.name), move)

    async def object_copy(self, call: Call) -> Reply:
        return await self._copy_by_method(call, move=False)

    async def object_move(self, call: Call) -> Reply:
        return await self._copy_by_method(call, move=True)

    async def _copy_by_method(self, call: Call, move: bool) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        call.user  # noqa: B018
        destination = call.header("Destination")
        if destination is None:
            raise errors.BadRequest("COPY and MOVE need a Destination header.")
        container, name = hdr.split_object_path(destination, "Destination")
        account = hdr.unquoted(call.header("Destination-Account") or "",
                               "Destination-Account").strip() or t.account
        return await self._copy(call, (t.account, t.container, t.name),
                                (account, container, name), move)

    async def _copy(self, call: Call, src: tuple[str, str, str], dst: tuple[str, str, str],
                    move: bool) -> Reply:
        if len(dst[1]) > MAX_CONTAINER_NAME or len(dst[2]) > MAX_OBJECT_NAME or \
                "\x00" in dst[2]:
            raise errors.BadRequest("The destination name is too long or holds NUL.")
        version = None
        if not move:
            given = call.header("X-Source-Version")
            if given is not None and given.strip():
                if not given.strip().isdigit():
                    raise errors.BadRequest("X-Source-Version must be a version id.")
                version = int(given.strip())
        content_type = None
        if call.header("Content-Type") and not call.flag("ignore_content_type"):
            content_type = self._content_type(call)
        meta = self._object_meta(call)
        permissions, public = self._permissions(call)
        fresh = (call.header("X-Fresh-Metadata") or "").strip().lower() in _TRUE
        info = await self.backend.copy_object(
            call.user, *src, *dst, move=move, version=version, content_type=content_type,
            meta=meta, replace_meta=fresh, permissions=permissions, public=public,
            delimiter=call.text_param("delimiter") or None)
        reply = self._created(info)
        reply.headers += [("X-Copied-From", quote(f"{src[1]}/{src[2]}")),
                          ("X-Copied-From-Account", quote(src[0]))]
        return reply

    async def object_post(self, call: Call) -> Reply:
        """Metadata/permissions; data updates; HTML form uploads."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        request = call.request
        media = _media_type(call.header("Content-Type"))
        if media == "multipart/form-data":
            return await self._form_upload(call)
        source = call.header("X-Source-Object")
        user_meta = hdr.meta_headers(request, "Object")
        content = hdr.content_meta(request)
        meta = {**(user_meta or {}), **content}
        meta_given = user_meta is not None or bool(content)
        permissions, public = self._permissions(call)
        replace = not call.flag("update")
        empty = (call.header("Content-Range") is None
                 and (call.header("Content-Length") or "").strip() == "0")
        if (media != OCTET_STREAM or empty) and source is None:
            # The backend keeps stored keys other than user meta and content
            # headers (the SLO helper meta) when replacing.
            await self.backend.update_object(user, t.account, t.container, t.name,
                                             meta, replace, permissions, public)
            return Reply(202)
        if meta_given or permissions is not KEEP or public is not None:
            await self.backend.update_object(user, t.account, t.container, t.name,
                                             meta if meta_given else None, replace,
                                             permissions, public)
        src = None
        if source is not None:
            container, name = hdr.split_object_path(source, "X-Source-Object")
            account = hdr.unquoted(call.header("X-Source-Account") or "",
                                   "X-Source-Account").strip() or t.account
            given = (call.header("X-Source-Version") or "").strip()
            if given and not given.isdigit():
                raise errors.BadRequest("X-Source-Version must be a version id.")
            src = (account, container, name, int(given) if given else None)
        object_bytes = None
        given_bytes = call.header("X-Object-Bytes")
        if given_bytes is not None:
            if not given_bytes.strip().isdigit():
                raise errors.BadRequest("X-Object-Bytes must be a non-negative integer.")
            object_bytes = int(given_bytes.strip())
        length = call.header("Content-Length")
        data = None if source is not None else self._small_body(request, 1 << 40)
        info = await updates.partial_update(
            self.backend, self.blocks, user, t.account, t.container, t.name,
            content_range=call.header("Content-Range"), data=data, source=src,
            object_bytes=object_bytes,
            content_length=int(length) if length and length.strip().isdigit() else None,
            content_type=call.header("Content-Type"),
            chunked=call.header("Transfer-Encoding") is not None)
        self._checksum_later(info)
        return self._created(info, 204)

    async def _form_upload(self, call: Call) -> Reply:
        """An HTML form's ``X-Object-Data`` file becomes the object."""
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        body = self._small_body(call.request, swift.MAX_FILE_SIZE)
        head = f"Content-Type: {call.header('Content-Type')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        found = None
        if message.is_multipart():
            for part in message.iter_parts():
                if part.get_param("name", header="content-disposition") == "X-Object-Data":
                    found = part
                    break
        if found is None:
            raise errors.BadRequest("The form has no X-Object-Data file.")
        data = found.get_payload(decode=True) or b""
        assert isinstance(data, bytes)
        content_type = found.get_content_type() if found.get("Content-Type") else (
            mimetypes.guess_type(t.name)[0] or OCTET_STREAM)
        size = self.blocks.block_size
        hashes = await self.blocks.put([data[i:i + size] for i in range(0, len(data), size)])
        md5 = await deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                      lambda: hashlib.md5(data, usedforsecurity=False)
                                      .hexdigest())
        info = await self.backend.put_object(
            call.user, t.account, t.container, t.name, size=len(data),
            hashes=hashes or [EMPTY_HASH], content_type=content_type, checksum=md5, meta={})
        reply = self._created(info)
        reply.body, reply.content_type = md5.encode("ascii"), _TEXT
        return reply

    async def object_delete(self, call: Call) -> Reply:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        user = call.user
        if call.get("multipart-manifest") == "delete":
            info = await self.backend.object(user, t.account, t.container, t.name)
            if swift.is_slo(info):
                summary = await swift.delete_slo(self.backend, self.blocks, user, t.account,
                                                 t.container, t.name)
                return self._summary_reply(call, summary)
        await self.backend.delete_object(user, t.account, t.container, t.name,
                                         until=call.epoch(),
                                         delimiter=call.text_param("delimiter") or None)
        return Reply(204)

    # -- public links ----------------------------------------------------------------

    async def public_get(self, request: Any) -> Reply:
        """``GET``/``HEAD /public/<token>``: no token, ranges, and only
        the headers the reference lists."""
        if request.method not in (b"GET", b"HEAD"):
            raise errors.MethodNotAllowed("Public links are read with GET.",
                                          headers={"Allow": "GET, HEAD"})
        segments = list(request.postpath)
        token = segments[0].decode("ascii", "replace") if len(segments) == 1 else ""
        if not _TOKEN.match(token):
            raise errors.NotFound("No such public link.")
        info = await self.backend.public_object(token)
        call = Call(request, request.method.decode("ascii"), Target(
            info.account, info.container, info.name), query_args(request))
        parts, size, etag = await self._content(info.account, info, False,
                                                request.method == b"GET")
        hdr.check_preconditions(request, etag, info.mtime, reading=True)
        headers = [("ETag", etag), ("Last-Modified", hdr.http_date(info.mtime))]
        for key in ("Content-Encoding", "Content-Disposition"):
            if info.meta.get(key):
                headers.append((key, info.meta[key]))
        headers = self._disposition(call, headers, info)
        return self._body_reply(call, headers, parts, size, info.type, etag, info.mtime)


_ROUTES: dict[str, dict[str, Callable[[PithosAPI, Call], Awaitable[Reply]]]] = {
    "top": {"GET": PithosAPI.top_get, "HEAD": PithosAPI.top_get},
    "account": {"HEAD": PithosAPI.account_head, "GET": PithosAPI.account_get,
                "POST": PithosAPI.account_post, "DELETE": PithosAPI.account_delete},
    "container": {"HEAD": PithosAPI.container_head, "GET": PithosAPI.container_get,
                  "PUT": PithosAPI.container_put, "POST": PithosAPI.container_post,
                  "DELETE": PithosAPI.container_delete},
    "object": {"HEAD": PithosAPI.object_get, "GET": PithosAPI.object_get,
               "PUT": PithosAPI.object_put, "POST": PithosAPI.object_post,
               "DELETE": PithosAPI.object_delete, "COPY": PithosAPI.object_copy,
               "MOVE": PithosAPI.object_move},
}


class _ObjectStore(Resource):
    """The ``/object-store`` leaf: every path below it is routed by
    ``PithosAPI.handle``."""

    isLeaf = True

    def __init__(self, api: PithosAPI):
        super().__init__()
        self._api = api
        self.body_sink = api.body_sink

    def render(self, request: Any) -> Any:
        d = defer.ensureDeferred(self._api.respond(request, self._api.handle))
        d.addErrback(lambda f: log.failure("Answering a request failed", f))
        return server.NOT_DONE_YET


class _Public(Resource):
    """The ``/public`` leaf: public links."""

    isLeaf = True

    def __init__(self, api: PithosAPI):
        super().__init__()
        self._api = api

    def render(self, request: Any) -> Any:
        d = defer.ensureDeferred(self._api.respond(request, self._api.public_get))
        d.addErrback(lambda f: log.failure("Answering a request failed", f))
        return server.NOT_DONE_YET


__all__ = ["PithosAPI", "Reply", "Target", "parse_target"]
