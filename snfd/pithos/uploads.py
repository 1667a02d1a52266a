"""Request bodies of the object store API, and the MD5s computed after
the fact.

``Uploads`` decides, as soon as a request's headers have arrived, whether
its body streams into the block store (a ``BlockSink``: object ``PUT``
data and container ``POST`` block uploads, unless small) or is buffered;
a streamed body is stored only once its gate has authenticated the
token (the same way ``snfd.web.auth.TokenAuth`` reads it, see
``token_from``) and checked that the caller may write there.  Handlers
then take the body as blocks with ``Uploads.stored`` (whichever way it
came), or as bytes with ``small_body``; ``form_file`` stores the file
of an HTML form upload.

``Checksums`` computes the MD5 of an object stored without one (a hashmap
upload, a partial update) off the reactor and records it;
``Checksums.drain`` waits for those started so far.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from snfd import errors
from snfd.pithos import swift
from snfd.pithos.charges import too_many_uploads
from snfd.pithos.hashmap import EMPTY_HASH, blocks_in
from snfd.pithos.middleware import settings_of
from snfd.pithos.model import ObjectInfo
from snfd.pithos.policies import Placement
from snfd.pithos.requests import OCTET_STREAM, Target, media_type, parse_target, raw_query
from snfd.pithos.streams import BlockSink
from snfd.pithos.validation import check_new_object_name
from snfd.web.auth import token_from

log = Logger(namespace="snfd.pithos")

RoomCheck = Callable[[Target, int, Any], Awaitable[None]]
"""A rule ``Uploads.check_room`` also asks: raise a fault when an object
of that many bytes may not be stored at that target.  The third argument
is the request for that one object, whose container settings the rule
may share (``middleware.settings_of``), or ``None``."""

MAX_SMALL_BODY = 8 * 1024 * 1024
"""Largest buffered body a metadata request may carry (SLO manifests,
bulk deletes)."""
HASHMAP_ENTRY_BYTES = 96
"""Room for one hash in a hashmap upload body: 64 hex digits, quotes, a
comma and the whitespace of pretty-printed JSON."""
PARSE_IN_THREAD_FROM = 64 * 1024
"""Hashmap bodies from this size are parsed in a thread, off the reactor."""
FORM_DATA = "multipart/form-data"
STREAM_FROM = 64 * 1024
"""Bodies of known length below this are buffered in memory and stored
by the handler (no up-front check: a small upload costs one transaction);
longer or chunked ones stream into the block store behind a gate."""
TOKEN_IN_QUERY = True
"""The gate reads a token from the query too, as the ``TokenAuth`` in
front of the object store does (``allow_query``, for HTML form uploads)."""


class Uploads:
    """Where request bodies go, and the blocks they became.

    @param backend: the ``Backend`` (the gate's permission checks).
    @param blocks: the ``IBlockStore``.
    @param reactor: the reactor (its thread pool hashes).
    @param authenticator: the node's ``IAuthenticator``; ``None``: every
        body is buffered (and checked after).
    @param blocks_in_flight: blocks of one upload stored at once.
    """

    def __init__(self, backend: Any, blocks: Any, reactor: Any, authenticator: Any = None,
                 *, blocks_in_flight: int = 2):
        self.backend = backend
        self.blocks = blocks
        self.reactor = reactor
        self.authenticator = authenticator
        self.blocks_in_flight = blocks_in_flight
        # Further "would it fit" rules (Swift's container and account
        # quotas, ``snfd.pithos.swift_quotas``), asked by ``check_room``.
        self.room_checks: list[RoomCheck] = []

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
        if b"temp_url_sig" in args:
            # A temp URL write has no token for the gate: its filter
            # (``snfd.pithos.tempurl``) checks the signature, so buffer.
            return None
        heads = request.requestHeaders
        target: Target | None
        refusal: errors.Fault | None = None
        try:
            target = parse_target(path.split(b"/")[2:])
        except errors.Fault as e:
            target, refusal = None, e
        if method == b"POST" and target is not None and target.level == "object":
            # A partial update's data (reference 2.9) streams like a PUT's.
            if (not heads.hasHeader(b"content-range") or heads.hasHeader(b"x-source-object")
                    or length == 0):
                return None
            given = heads.getRawHeaders(b"content-type") or [OCTET_STREAM.encode()]
            if media_type(given[0].decode("latin-1")) != OCTET_STREAM:
                return None
            kind = "object"
        elif method == b"PUT":
            if target is not None and target.level != "object":
                return None
            if (b"hashmap" in args or args.get(b"multipart-manifest") == [b"put"]
                    or b"extract-archive" in args
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
            if media_type(given[0].decode("latin-1")) != OCTET_STREAM:
                return None
            kind = "blocks"
        placement = Placement(self.blocks)
        gate = defer.ensureDeferred(self._gate(request, heads, args, target, kind, refusal,
                                               length, placement))
        transport = request.channel.transport

        async def abandoned(blocks: list[tuple[str, int]]) -> None:
            await self._record(request, blocks)

        return BlockSink(placement, self.reactor, gate, transport.pauseProducing,
                         transport.resumeProducing, block_size=self.blocks.block_size,
                         max_in_flight=self.blocks_in_flight,
                         compute_md5=method == b"PUT", abandoned=abandoned)

    def body_limit(self, request: Any, method: bytes, uri: bytes) -> int:
        """The largest body buffered (not streamed by ``body_sink``) for a
        request whose headers have arrived: object data (a ``PUT``, a
        data ``POST`` or an HTML form) up to ``swift.MAX_FILE_SIZE``, a
        hashmap up to ``max_hashmap_body``, anything else
        ``MAX_SMALL_BODY``."""
        path, _, query = uri.partition(b"?")
        args = raw_query(query)
        try:
            level = parse_target(path.split(b"/")[2:]).level
        except errors.Fault:
            return MAX_SMALL_BODY
        if method == b"PUT" and b"extract-archive" in args:
            return swift.MAX_FILE_SIZE  # an archive (``snfd.pithos.bulk``), read from disk
        if method == b"PUT" and level == "object":
            if b"hashmap" in args:
                return max_hashmap_body(self.blocks.block_size)
            if args.get(b"multipart-manifest") == [b"put"]:
                return swift.MAX_MANIFEST_SIZE
            return swift.MAX_FILE_SIZE
        if method == b"POST" and level in ("object", "container"):
            given = request.requestHeaders.getRawHeaders(b"content-type") or [b""]
            if media_type(given[0].decode("latin-1")) in (OCTET_STREAM, FORM_DATA):
                return swift.MAX_FILE_SIZE
        return MAX_SMALL_BODY

    async def _gate(self, request: Any, heads: Any, args: dict[bytes, list[bytes]],
                    target: Target | None, kind: str, refusal: errors.Fault | None,
                    size: int | None, placement: Placement) -> int | None:
        """Whether a streamed body may be stored (raises the fault when
        not), and the most bytes it may have (``None``: no bound), which
        its ``BlockSink`` enforces: a chunked body cannot be checked
        before it starts."""
        if refusal is not None:
            raise refusal
        assert target is not None and target.account and target.container
        if kind == "object":
            assert target.name is not None
            check_new_object_name(target.name)  # before a block is stored
        token = token_from(heads, args, TOKEN_IN_QUERY)
        if token is None:
            raise errors.Unauthorized("This request needs a user token (X-Auth-Token).")
        principal = await self.authenticator.authenticate(token)
        if principal.is_component or principal.user is None:
            raise errors.Forbidden("This request needs a user token, not a service token.")
        user = principal.user
        if kind == "blocks":
            blocks = await self.check_writer(user, target, kind)
            record = _record_of(request)
            record.uploader = user
            record.reservation, limit = await self.backend.reserve_uploads(user, size)
            if record.done:  # the connection was lost meanwhile: give the room back
                await self.backend.record_uploads(user, [], record.reservation)
        else:
            blocks, room = await self.check_upload(user, target, size, request)
            _record_of(request).uploader = user
            limit = room if size is None else size
        placement.settle(blocks)
        return limit

    async def check_upload(self, user: str, target: Target, size: int | None,
                           request: Any = None) -> tuple[Any, int | None]:
        """What is checked before object data (a ``PUT``'s, a partial
        update's) of ``size`` bytes (``None``: not known yet) is stored:
        ``user`` may write there (``check_writer``), has no more
        unreferenced uploads than it may (``Backend.upload_limits``), and
        the data fits the quotas (``check_room``).  Returns the block
        store the data goes to and the room the quotas leave (``None``:
        unbounded).  ``request``: the request for that one object, if
        any (see ``RoomCheck``)."""
        blocks = await self.check_writer(user, target, "object", request)
        assert target.account and target.container and target.name is not None
        room, pending, bound = await self.backend.upload_limits(
            user, target.account, target.container, target.name)
        too_many_uploads(pending, bound)
        for check in self.room_checks:
            await check(target, size or 0, request)
        _fits(size or 0, room)
        return blocks, room

    async def check_writer(self, user: str, target: Target, kind: str,
                           request: Any = None) -> Any:
        """What the gate checks before storing a body: the container is
        visible to ``user`` and, for object data (``kind`` ``"object"``),
        ``user`` may write the object when it exists.  Returns the block
        store of the container's storage policy, where the body goes.
        For the owner, who may write any of its containers, the
        container's settings serve (``middleware.settings_of``, shared
        with ``request``: see ``RoomCheck``)."""
        assert target.account and target.container
        container: Any = None
        if user == target.account:
            container = await settings_of(request, self.backend, target.account,
                                          target.container)
        if container is None:
            # Another user's read decides what it may see; the owner's
            # finds a container created too recently for the settings.
            container = await self.backend.container(user, target.account, target.container)
        blocks = self.backend.container_blocks(container)
        if user == target.account or kind != "object":
            return blocks
        assert target.name is not None
        try:
            info = await self.backend.object(user, target.account, target.container,
                                             target.name)
        except errors.NotFound:
            return blocks  # a write permission inherited from a directory: put_object decides
        if info.allowed_to != "write":
            raise errors.Forbidden("You may not write this object.")
        return blocks

    async def check_room(self, target: Target, size: int,
                         request: Any = None) -> int | None:
        """``OverLimit`` when a ``size``-byte object at ``target`` would not
        fit the container's or the account's quota (or a fault of one of
        ``room_checks``): refused before any block is stored, so no
        refused upload leaves blocks behind.  Returns the room
        (``Backend.upload_room``)."""
        assert target.account and target.container and target.name is not None
        for check in self.room_checks:
            await check(target, size, request)
        room = await self.backend.upload_room(target.account, target.container, target.name)
        _fits(size, room)
        return room

    async def reserve(self, request: Any, user: str, size: int) -> None:
        """Take room for a buffered block upload of ``size`` bytes
        (``Backend.reserve_uploads``) that ``settle`` records."""
        record = _record_of(request)
        record.uploader = user
        record.reservation, _ = await self.backend.reserve_uploads(user, size)

    def buffered_size(self, request: Any) -> int | None:
        """The size of a buffered (not streamed) body; ``None`` for a
        streamed one (its gate checked it)."""
        content = request.content
        if isinstance(content, BlockSink):
            return None
        content.seek(0, 2)
        size: int = content.tell()
        content.seek(0)
        return size

    async def stored(self, request: Any, user: str,
                     blocks: Any = None) -> tuple[int, list[str], str]:
        """``(size, hashes, md5)`` of the request body ``user`` sent, stored
        as blocks: from the ``BlockSink`` it was streamed into, or (when
        it was buffered) read and stored now, in ``blocks`` (default: the
        ``Uploads``' own store).

        Unless the handler calls ``committed`` (a version references them
        now), ``settle`` records these blocks as ``user``'s unreferenced
        uploads: what a failed upload stored is bounded as block uploads
        are (``Backend.record_uploads``)."""
        record = _record_of(request)
        record.uploader = record.uploader or user
        size, hashes, md5 = await self._stored(request, record, blocks)
        record.blocks = self._sized(hashes, size)
        return size, hashes, md5

    def _sized(self, hashes: list[str], size: int) -> list[tuple[str, int]]:
        """``(hash, bytes)`` of each block of a ``size``-byte body."""
        bs = self.blocks.block_size
        return [(h, min(bs, size - i * bs)) for i, h in enumerate(hashes)]

    def committed(self, request: Any) -> None:
        """The body's blocks are in an object now: ``settle`` leaves them."""
        _record_of(request).done = True

    async def _stored(self, request: Any, record: _Record,
                      blocks: Any) -> tuple[int, list[str], str]:
        content = request.content
        if isinstance(content, BlockSink):
            record.taken = True
            try:
                upload = await content.result()
            except BaseException:
                record.sink_failed = True  # the sink's ``abandoned`` records
                raise
            return upload.size, upload.hashes, upload.md5 or ""
        store = blocks if blocks is not None else self.blocks
        content.seek(0, 2)
        size = content.tell()
        content.seek(0)
        if size < STREAM_FROM:
            # A small body is in memory: hashing it here costs less than
            # the thread hops; the block store still writes in its threads.
            data = content.read()
            bs = self.blocks.block_size
            hashes = await store.put([data[i:i + bs] for i in range(0, size, bs)])
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
            hashes.extend(await store.put([chunk]))
            size += len(chunk)
        return size, hashes or [EMPTY_HASH], md5.hexdigest()

    async def form_file(self, request: Any, form_type: str | None, name: str,
                        user: str | None = None,
                        blocks: Any = None) -> tuple[int, list[str], str, str]:
        """The ``X-Object-Data`` file of an HTML form upload (a buffered
        ``multipart/form-data`` body whose ``Content-Type`` is
        ``form_type``), stored as blocks: ``(size, hashes, md5, type)``,
        the type the part's, else guessed from the object ``name``.

        The body is read from its buffer (a temporary file, at most
        ``swift.MAX_FILE_SIZE`` bytes: ``body_limit``) piece by piece in
        threads and the file's bytes stored block by block as they are
        found, so it is never held whole, in ``blocks`` (default: the
        ``Uploads``' own store).  What is stored is ``user``'s upload, as
        with ``stored``.

        @raise errors.BadRequest: the form has no boundary or no such file.
        """
        content = request.content
        if isinstance(content, BlockSink):
            raise errors.BadRequest("The form has no X-Object-Data file.")
        form = FormFile(form_boundary(form_type))
        pool = self.reactor.getThreadPool()
        bs = self.blocks.block_size
        md5 = hashlib.md5(usedforsecurity=False)
        pending = bytearray()
        hashes: list[str] = []
        size = 0
        target = blocks if blocks is not None else self.blocks
        record = _record_of(request)
        record.uploader = record.uploader or user
        record.blocks = []

        async def store(block: bytes) -> None:
            await deferToThreadPool(self.reactor, pool, md5.update, block)
            stored = await target.put([block])
            hashes.extend(stored)
            record.blocks.append((stored[0], len(block)))  # type: ignore[union-attr]

        await deferToThreadPool(self.reactor, pool, content.seek, 0)
        while not form.done:
            chunk = await deferToThreadPool(self.reactor, pool, content.read, FORM_READ)
            if not chunk:
                break
            for piece in form.feed(chunk):
                pending += piece
                size += len(piece)
                while len(pending) >= bs:
                    block = bytes(pending[:bs])
                    del pending[:bs]
                    await store(block)
        if not form.found:
            raise errors.BadRequest("The form has no X-Object-Data file.")
        if pending:
            await store(bytes(pending))
        content_type = form.content_type or mimetypes.guess_type(name)[0] or OCTET_STREAM
        return size, hashes or [EMPTY_HASH], md5.hexdigest(), content_type

    async def settle(self, request: Any) -> None:
        """End a request's upload, whatever became of it (call it once the
        handler is done, in a ``finally``): a streamed body the handler
        did not take is awaited (its error is moot: the request failed
        before using it), and the blocks of a body not ``committed`` are
        recorded as its uploader's unreferenced uploads, in place of the
        room ``reserve`` or the gate took."""
        record = _record_of(request)
        content = request.content
        if isinstance(content, BlockSink) and not record.taken:
            record.taken = True
            try:
                upload = await content.result()
            except Exception:
                record.sink_failed = True
            else:
                record.blocks = self._sized(upload.hashes, upload.size)
        if not record.sink_failed:
            await self._record(request, record.blocks or [])

    async def _record(self, request: Any, blocks: list[tuple[str, int]]) -> None:
        record = _record_of(request)
        if record.done:
            return
        record.done = True
        if record.uploader is not None:
            await self.backend.record_uploads(record.uploader, blocks, record.reservation)


@attrs.define
class _Record:
    """What became of one request's upload (``Uploads``)."""

    uploader: str | None = None     # who sent it (the gate's user, the handler's)
    reservation: int | None = None  # room taken for a block upload
    blocks: list[tuple[str, int]] | None = None  # stored, (hash, size)
    taken: bool = False             # a streamed body: the handler awaited it
    sink_failed: bool = False       # ... and it failed: the sink records
    done: bool = False              # recorded, or committed to a version


def _record_of(request: Any) -> _Record:
    record: _Record | None = getattr(request, "pithos_upload", None)
    if record is None:
        record = request.pithos_upload = _Record()
    return record


FORM_READ = 1024 * 1024
"""Bytes of a buffered form body read at a time."""
MAX_FORM_PART_HEAD = 16 * 1024
"""Longest headers of one part of a form."""


def form_boundary(form_type: str | None) -> bytes:
    """The ``boundary`` parameter of a ``multipart/form-data`` type, 400
    when there is none."""
    message = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(
        f"Content-Type: {form_type or ''}\r\n\r\n")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
        raise errors.BadRequest("The form's Content-Type has no boundary.")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise errors.BadRequest("The form's boundary is not ASCII.") from None


class FormFile:
    """Finds the ``X-Object-Data`` part of a ``multipart/form-data`` body
    fed piece by piece (``feed`` returns the part's bytes found so far);
    holds at most a part's headers and a delimiter's length of it."""

    def __init__(self, boundary: bytes):
        self.delimiter = b"\r\n--" + boundary
        # A body may start with its first delimiter, without the CRLF.
        self._buf = b"\r\n"
        self._state = "skip"
        self.content_type: str | None = None
        self.found = False
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        """The bytes of the file in ``data`` (and what was held back)."""
        self._buf += data
        out: list[bytes] = []
        keep = len(self.delimiter) - 1
        while not self.done:
            if self._state in ("skip", "data"):
                i = self._buf.find(self.delimiter)
                if i < 0:
                    if self._state == "data" and len(self._buf) > keep:
                        out.append(self._buf[:-keep])
                    self._buf = self._buf[-keep:]
                    return out
                if self._state == "data":
                    out.append(self._buf[:i])
                    self.found = self.done = True
                    return out
                self._buf = self._buf[i + len(self.delimiter):]
                self._state = "delimited"
            if self._state == "delimited":
                if self._buf.startswith(b"--"):
                    self.done = True  # the closing delimiter
                    return out
                j = self._buf.find(b"\r\n")
                if j < 0:
                    if len(self._buf) > MAX_FORM_PART_HEAD:
                        raise errors.BadRequest("The form is not multipart/form-data.")
                    return out
                self._buf = self._buf[j + 2:]
                self._state = "head"
            if self._state == "head":
                j = self._buf.find(b"\r\n\r\n")
                if j < 0 and not self._buf.startswith(b"\r\n"):
                    if len(self._buf) > MAX_FORM_PART_HEAD:
                        raise errors.BadRequest("A part of the form has too long headers.")
                    return out
                # A part without headers starts right after the CRLF.
                end = 0 if self._buf.startswith(b"\r\n") else j + 2
                head = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(
                    self._buf[:end] + b"\r\n")
                self._buf = self._buf[end + 2:]
                if head.get_param("name", header="content-disposition") == "X-Object-Data":
                    self._state = "data"
                    if head.get("Content-Type"):
                        self.content_type = head.get_content_type()
                else:
                    self._state = "skip"
        return out


def streamed(request: Any) -> bool:
    """Whether the request's body went into a ``BlockSink``."""
    return isinstance(request.content, BlockSink)


def max_hashmap_body(block_size: int) -> int:
    """The largest hashmap upload body: room for the hashes of an object
    of ``swift.MAX_FILE_SIZE`` bytes in blocks of ``block_size``."""
    return blocks_in(swift.MAX_FILE_SIZE, block_size) * HASHMAP_ENTRY_BYTES + 4096


async def hashmap_doc(reactor: Any, request: Any, block_size: int) -> dict[str, Any]:
    """The JSON object of a hashmap upload (``{"bytes": N, "hashes":
    [...]}``, not yet checked against each other): 413 beyond
    ``max_hashmap_body`` or with more hashes than the largest object
    has, 400 when it is not a JSON object.  A large body is parsed in
    the reactor's thread pool."""
    body = small_body(request, max_hashmap_body(block_size))
    try:
        text = body.decode("utf-8")
        if len(body) >= PARSE_IN_THREAD_FROM:
            doc = await deferToThreadPool(reactor, reactor.getThreadPool(), json.loads, text)
        else:
            doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise errors.BadRequest("A hashmap upload takes a JSON body"
                                ' {"bytes": N, "hashes": [...]}.') from None
    if not isinstance(doc, dict):
        raise errors.BadRequest('The hashmap must be a JSON object {"bytes", "hashes"}.')
    most = blocks_in(swift.MAX_FILE_SIZE, block_size)
    hashes = doc.get("hashes")
    if isinstance(hashes, list) and len(hashes) > most:
        raise errors.OverLimit(f"A hashmap holds at most {most} hashes"
                               f" (objects are at most {swift.MAX_FILE_SIZE} bytes).")
    return doc


def small_body(request: Any, limit: int = MAX_SMALL_BODY) -> bytes:
    """The buffered body of ``request``: 400 when it was streamed (a
    request that takes no data), 413 beyond ``limit`` bytes."""
    content = request.content
    if isinstance(content, BlockSink):
        raise errors.BadRequest("This request takes no data.")
    content.seek(0, 2)
    if content.tell() > limit:
        raise errors.OverLimit(f"The request body is larger than {limit} bytes.")
    content.seek(0)
    data: bytes = content.read()
    return data


def has_body(request: Any) -> bool:
    """Whether the buffered body of ``request`` holds any byte."""
    content = request.content
    content.seek(0, 2)
    size: int = content.tell()
    content.seek(0)
    return size > 0


class Checksums:
    """MD5s of stored objects, computed off the reactor after the fact.

    @param backend: the ``Backend`` (``set_checksum``).
    @param blocks: the ``IBlockStore``.
    @param reactor: the reactor (its thread pool hashes).
    """

    def __init__(self, backend: Any, blocks: Any, reactor: Any):
        self.backend = backend
        self.blocks = blocks
        self.reactor = reactor
        self._background: set[defer.Deferred[None]] = set()

    def later(self, info: ObjectInfo) -> None:
        """Compute the MD5 of ``info``'s content off the reactor and record
        it (fire and forget; failures are logged).  Nothing happens when
        it is known or ``info`` has no hashmap."""
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

    async def drain(self) -> None:
        """Wait for the computations started so far (and any they start)."""
        while self._background:
            await defer.DeferredList(list(self._background), consumeErrors=True)

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


__all__ = [
    "HASHMAP_ENTRY_BYTES",
    "MAX_SMALL_BODY",
    "PARSE_IN_THREAD_FROM",
    "STREAM_FROM",
    "Checksums",
    "FormFile",
    "Uploads",
    "form_boundary",
    "has_body",
    "hashmap_doc",
    "max_hashmap_body",
    "small_body",
    "streamed",
]


def _fits(size: int, room: int | None) -> None:
    if room is not None and size > room:
        raise errors.OverLimit(f"Quota exceeded: {size} bytes do not fit in {room}.")
