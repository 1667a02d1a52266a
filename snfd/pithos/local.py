"""Writing a local file into the object store, for operator tools
(``snf-manage image-register``) and the embedded default's bootstrap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import threads

from snfd.pithos.hashmap import EMPTY_HASH
from snfd.pithos.model import ObjectInfo


async def store_file(backend: Any, account: str, container: str, name: str, source: Path,
                     content_type: str = "application/octet-stream",
                     meta: dict[str, str] | None = None) -> ObjectInfo:
    """Store the file ``source`` as ``account/container/name`` (the
    container is created if needed), block by block, as ``account``
    itself; returns the new version's info.  Blocks already stored are not
    written again; the file is read in a thread, a block at a time."""
    blocks = backend.blocks
    size = 0
    hashes: list[str] = []
    with source.open("rb") as f:
        while True:
            block = await threads.deferToThread(f.read, backend.block_size)
            if not block:
                break
            size += len(block)
            hashes += await blocks.put([block])
    await backend.put_container(account, account, container, {}, {})
    info: ObjectInfo = await backend.put_object(
        account, account, container, name, size=size, hashes=hashes or [EMPTY_HASH],
        content_type=content_type, meta=meta or {})
    return info
