"""Reading a local file into the block store, for operator tools
(``snf-manage image-register``) and the embedded default's bootstrap,
which store it through the object store (``PithosObjects.store_file``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import threads

from snfd.pithos.hashmap import EMPTY_HASH


async def put_file_blocks(blocks: Any, block_size: int, source: Path) -> tuple[int, list[str]]:
    """Store the blocks of the file ``source`` in the block store
    ``blocks`` (an ``IBlockStore``); ``(size, hashmap)``.  The file is read
    in a thread, a block at a time; blocks already stored are not written
    again.  An empty file is ``(0, [EMPTY_HASH])``."""
    size = 0
    hashes: list[str] = []
    with source.open("rb") as f:
        while True:
            block = await threads.deferToThread(f.read, block_size)
            if not block:
                break
            size += len(block)
            hashes += await blocks.put([block])
    return size, hashes or [EMPTY_HASH]


__all__ = ["put_file_blocks"]
