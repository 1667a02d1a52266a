"""What a ``GET`` of an object sends: its bytes (the object's own, or a
Swift large object's segments, see ``snfd.pithos.swift``), whole, one
range (206) or several as ``multipart/byteranges`` (416 when none fits),
streamed from the block store as the client reads.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import attrs

from snfd.pithos import headers as hdr
from snfd.pithos import swift
from snfd.pithos.hashmap import EMPTY_HASH
from snfd.pithos.model import ObjectInfo
from snfd.pithos.requests import Call, Reply
from snfd.pithos.streams import send_range


@attrs.frozen
class Part:
    """A stretch of stored bytes (an object, or a segment of a large one)."""

    hashes: list[str]
    size: int
    block_size: int


async def content(backend: Any, blocks: Any, user: str, info: ObjectInfo, raw: bool,
                  want_data: bool) -> tuple[list[Part], int, str]:
    """The bytes a GET of ``info`` sends, its size and ETag: the
    object's own, or (unless ``raw``) a large object's segments (looked
    up only when ``want_data``, for an SLO) as ``user``, the reader (see
    ``swift.segments_for``)."""
    own = ([Part(info.hashes or [EMPTY_HASH], info.size, info.block_size)],
           info.size, info.checksum or info.hash)
    if raw:
        return own
    if swift.is_slo(info):
        size, etag = swift.slo_size(info), swift.slo_etag(info)
        if not want_data:
            return [], size, etag
        segments = await swift.segments_for(backend, blocks, user, info) or []
        parts = [Part(s.hashes or [EMPTY_HASH], s.size, s.block_size) for s in segments]
        return parts, size, etag
    if swift.dlo_source(info) is not None:
        segments = await swift.segments_for(backend, blocks, user, info) or []
        parts = [Part(s.hashes or [EMPTY_HASH], s.size, s.block_size) for s in segments]
        return parts, sum(s.size for s in segments), swift.manifest_etag(segments)
    return own


async def _send(request: Any, blocks: Any, parts: Sequence[Part], start: int,
                end: int) -> bool:
    offset = 0
    for p in parts:
        lo, hi = max(start, offset), min(end, offset + p.size)
        if lo < hi and not await send_range(request, blocks, p.hashes, p.size,
                                            lo - offset, hi - offset, p.block_size):
            return False
        offset += p.size
        if offset >= end:
            break
    return True


def body_reply(blocks: Any, call: Call, headers: list[tuple[str, str]], parts: list[Part],
               size: int, content_type: str, etag: str, mtime: float) -> Reply:
    """200 with the whole content, 206 with one range or a
    ``multipart/byteranges`` of several (416 when none fits); ``Range``
    is ignored when ``If-Range`` does not hold."""
    ranges = None
    if hdr.if_range_holds(call.request, etag, mtime):
        ranges = hdr.parse_ranges(call.header("Range"), size)
    if ranges is None:
        return Reply(200, headers, content_type=content_type, length=size,
                     stream=lambda r: _send(r, blocks, parts, 0, size))
    if len(ranges) == 1:
        start, end = ranges[0]
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        return Reply(206, headers, content_type=content_type, length=end - start,
                     stream=lambda r: _send(r, blocks, parts, start, end))
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
            if not await _send(request, blocks, parts, s, e):
                return False
            request.write(b"\r\n")
        request.write(tail)
        return True

    return Reply(206, headers, content_type=f"multipart/byteranges; boundary={boundary}",
                 length=length, stream=stream)


__all__ = ["Part", "body_reply", "content"]
