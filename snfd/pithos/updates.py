"""Partial data updates of an object (Pithos ``POST`` with data, reference
2.9): overwrite, append or extend a byte range with the request body or
with the data of another object, and optionally truncate the result.

Only the blocks a range touches are read, patched and stored again; when
a source object's data lands on a block boundary its full blocks are
reused by hash, without any I/O.  The new version is written with the
version read as ``expect_serial``, so a concurrent change makes the
update start over from the new latest version (a few times, then 409).

The new version keeps the object's content type, metadata and sharing;
its MD5 is not computed (``checksum`` ``""``).
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from snfd import errors
from snfd.pithos.hashmap import EMPTY_HASH, blocks_in
from snfd.pithos.model import ObjectInfo
from snfd.pithos.streams import read_block

ATTEMPTS = 4
"""Times an update is computed and written before a concurrent writer's
changes make it give up with 409."""

FLUSH_BLOCKS = 8
"""Patched blocks kept in memory before they are written to the store."""

OCTET_STREAM = "application/octet-stream"

_RANGE = re.compile(r"^bytes (\d+)-(\d*)/(\d+|\*)$")


@attrs.frozen
class StoredBody:
    """A request body already stored as blocks (streamed, never held
    whole): ``size`` bytes in the blocks ``hashes`` of the store's block
    size."""

    size: int
    hashes: list[str]


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``(offset, length, total)`` of a ``Content-Range`` header.

    ``bytes <first>-<last>/<total>``: ``last`` may be omitted (``length``
    ``None``: as long as the data), ``total`` may be ``*`` (``None``).
    ``bytes */*`` means append: all three ``None``.

    @raise errors.BadRequest: no header (``None`` or blank).
    @raise errors.RangeNotSatisfiable: any other syntax, ``last < first``,
        or ``first``/``last`` not below ``total``.
    """
    if value is None or not value.strip():
        raise errors.BadRequest("Missing Content-Range header")
    value = value.strip()
    if value == "bytes */*":
        return None, None, None
    m = _RANGE.match(value)
    if m is None:
        raise errors.RangeNotSatisfiable("Invalid Content-Range header")
    offset = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else None
    total = None if m.group(3) == "*" else int(m.group(3))
    if ((last is not None and last < offset)
            or (total is not None and offset >= total)
            or (total is not None and last is not None and last >= total)):
        raise errors.RangeNotSatisfiable("Invalid Content-Range header")
    return offset, (None if last is None else last - offset + 1), total


async def partial_update(backend: Any, blocks: Any, user: str, account: str,
                         container: str, name: str, *, content_range: str | None,
                         data: bytes | StoredBody | None,
                         source: tuple[str, str, str, int | None] | None,
                         object_bytes: int | None, content_length: int | None,
                         content_type: str | None, chunked: bool = False) -> ObjectInfo:
    """Write a range of an object and store the result as a new version.

    @param content_range: the ``Content-Range`` header (see
        ``parse_content_range``); the range starts at most at the end of
        the object (``bytes */*`` appends) and may reach past it, which
        extends the object.  With a ``total`` the range must lie inside
        the object and ``total`` must be its size.
    @param data: the request body (used when ``source`` is ``None``),
        in memory or stored as blocks (``StoredBody``).
    @param source: ``(account, container, name, version)`` of
        ``X-Source-Object`` (the object itself is allowed): its first
        ``length`` bytes (all of it when the range has no end) are written.
    @param object_bytes: ``X-Object-Bytes``: cut the result to that many
        bytes if it is longer.
    @param content_length: the ``Content-Length`` header; must equal the
        range's length when both are given.
    @param content_type: the request's ``Content-Type``; with a body it
        must be ``application/octet-stream``.
    @param chunked: the body came with ``Transfer-Encoding: chunked`` (so
        no ``Content-Length`` is needed).

    @raise errors.BadRequest: no ``Content-Range``; a negative
        ``object_bytes``; a source shorter than the range; a
        ``Content-Length`` other than the range's length or the body's;
        a body that is not ``application/octet-stream``.
    @raise errors.LengthRequired: a body without ``Content-Length`` that
        was not chunked (or no body and no source).
    @raise errors.RangeNotSatisfiable: a malformed range, an offset past
        the end, or a ``total`` that is not the object's size or a range
        that leaves the object.
    @raise errors.NotFound: the object or the source does not exist (or
        is not readable).
    @raise errors.Conflict: concurrent updates kept winning.
    Other backend faults (403, 413 quota) pass through.
    @return: the new version.
    """
    offset, length, total = parse_content_range(content_range)
    if object_bytes is not None and object_bytes < 0:
        raise errors.BadRequest("Invalid X-Object-Bytes header")
    if source is None:
        if data is None or (content_length is None and not chunked):
            raise errors.LengthRequired("Missing Content-Length header")
        if content_type is not None and content_type.split(";")[0].strip().lower() \
                != OCTET_STREAM:
            raise errors.BadRequest(f"Data updates need Content-Type: {OCTET_STREAM}")
        if content_length is not None and content_length != _length(data):
            raise errors.BadRequest("The body is not as long as its Content-Length.")
    for _ in range(ATTEMPTS):
        target = await backend.object(user, account, container, name)
        src: ObjectInfo | None = None
        if source is not None:
            try:
                src = await backend.object(user, *source[:3], version=source[3])
            except errors.NotFound:
                raise errors.NotFound("Source object does not exist") from None
            if src.deleted:
                raise errors.NotFound("Source object does not exist")
        at = target.size if offset is None else offset
        if at > target.size:
            raise errors.RangeNotSatisfiable("Supplied offset is beyond object limits")
        if src is not None:
            count = src.size if length is None else length
            if count > src.size:
                raise errors.BadRequest("Object length is smaller than range length")
        else:
            assert data is not None
            count = _length(data)
            if length is not None and length != count:
                raise errors.BadRequest("Content length does not match range length")
        if total is not None and (total != target.size or at >= target.size
                                  or at + count > target.size):
            raise errors.RangeNotSatisfiable(
                "Supplied range will change provided object limits")
        size = max(target.size, at + count)
        if object_bytes is not None and object_bytes < size:
            size = object_bytes
        patch = _Patch(blocks, target, size)
        if src is not None:
            await patch.copy(at, src.hashes or [], count)
        elif isinstance(data, StoredBody):
            await patch.copy(at, data.hashes, count)
        else:
            assert data is not None
            await patch.write(at, memoryview(data))
        hashes = await patch.finish()
        try:
            return await backend.put_object(
                user, account, container, name, size=size, hashes=hashes,
                content_type=target.type, checksum="", meta=None,
                expect_serial=target.serial)
        except errors.Conflict:
            continue  # a concurrent change (or lost blocks): start over
    raise errors.Conflict("The object kept changing during the update; try again.")


def _length(data: bytes | StoredBody) -> int:
    return data.size if isinstance(data, StoredBody) else len(data)


class _Patch:
    """The hashmap of ``target`` being rewritten into one of ``size``
    bytes.  Writes come in ascending offsets; a block is written to the
    store once no later write can touch it."""

    def __init__(self, blocks: Any, target: ObjectInfo, size: int):
        self.blocks = blocks
        self.bs = target.block_size
        self.size = size
        self.old_size = target.size
        self.old = list(target.hashes or ()) if target.size else []
        self.limit = blocks_in(size, self.bs)
        self.new: dict[int, str] = {}
        # Block index -> full block being patched (not stored yet).
        self.open: dict[int, bytearray] = {}
        # Finished blocks waiting to be stored.
        self.ready: dict[int, bytes] = {}

    def _hash(self, i: int) -> str:
        if i in self.new:
            return self.new[i]
        if i < len(self.old):
            return self.old[i]
        return EMPTY_HASH

    async def _load(self, i: int) -> bytearray:
        block = self.open.get(i)
        if block is not None:
            return block
        finished = self.ready.pop(i, None)
        if finished is not None:
            block = bytearray(finished.ljust(self.bs, b"\x00"))
        else:
            raw = await read_block(self.blocks, self._hash(i))
            block = bytearray(bytes(raw[:self.bs]).ljust(self.bs, b"\x00"))
        self.open[i] = block
        return block

    def _done(self, i: int, block: bytes | bytearray) -> None:
        self.open.pop(i, None)
        self.new.pop(i, None)
        if i < self.limit:  # blocks past a truncation are never stored
            self.ready[i] = bytes(block)

    async def write(self, offset: int, data: memoryview) -> None:
        # Bytes past a truncation are never stored.
        data = data[:max(0, self.size - offset)]
        pos = 0
        while pos < len(data):
            i, start = divmod(offset + pos, self.bs)
            n = min(self.bs - start, len(data) - pos)
            if start == 0 and n == self.bs:
                self._done(i, data[pos:pos + n].tobytes())
            else:
                block = await self._load(i)
                block[start:start + n] = data[pos:pos + n]
                if start + n == self.bs:
                    self._done(i, block)
            pos += n
            if len(self.ready) >= FLUSH_BLOCKS:
                await self._flush()

    async def copy(self, offset: int, hashes: list[str], count: int) -> None:
        count = min(count, max(0, self.size - offset))
        aligned = offset % self.bs == 0
        for k in range(blocks_in(count, self.bs)):
            n = min(self.bs, count - k * self.bs)
            if aligned and n == self.bs:
                i = offset // self.bs + k
                self.open.pop(i, None)
                self.ready.pop(i, None)
                self.new[i] = hashes[k]
                continue
            raw = await read_block(self.blocks, hashes[k])
            await self.write(offset + k * self.bs, memoryview(bytes(raw[:n])))

    async def _flush(self) -> None:
        if not self.ready:
            return
        items = sorted(self.ready.items())
        self.ready = {}
        names = await self.blocks.put([b for _, b in items])
        for (i, _), h in zip(items, names, strict=True):
            self.new[i] = h

    async def finish(self) -> list[str]:
        """Store what is left and return the hashmap of ``size`` bytes."""
        for i, block in sorted(self.open.items()):
            self._done(i, block)
        if self.size == 0:
            self.ready.clear()
            return [EMPTY_HASH]
        tail = self.size % self.bs
        last = self.limit - 1
        if tail:
            # The last block is stored cut to the object's end, so equal
            # contents always give equal hashes.
            if last in self.ready:
                self.ready[last] = self.ready[last][:tail]
            elif last in self.new or self.size != self.old_size:
                raw = await read_block(self.blocks, self._hash(last))
                self.ready[last] = bytes(raw[:tail])
        await self._flush()
        return [self._hash(i) for i in range(self.limit)]


__all__ = ["StoredBody", "parse_content_range", "partial_update"]
