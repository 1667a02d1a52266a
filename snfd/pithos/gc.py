"""Garbage collection of the blocks no version references, and the
writers' half of its protocol.

A transaction that makes a version reference blocks holds the
collector's advisory lock shared (``store.gc_share_txn``) and re-checks,
inside the transaction, that its blocks exist (``missing_now`` of the
block store) and are not being collected (``check_blocks_txn``).  The
collector marks the unreferenced blocks of a page under the exclusive
lock, deletes them from the block store (sparing blocks stored or
refreshed within the grace), then unmarks them; so a block is never
deleted while a committed version references it.  A map is deleted in
the transaction that removes its last version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from snfd import errors
from snfd.pithos import store
from snfd.pithos.hashmap import EMPTY_HASH


class MissingBlocks(errors.Conflict):
    """A hashmap names blocks the store does not have (409; the body is the
    JSON list of their hashes).  ``blocks``: the store found lacking them
    inside a transaction (a container's storage policy), when known: the
    blocks may be in another policy's store (``StoragePolicies.bring``)."""

    def __init__(self, hashes: Sequence[str], blocks: Any = None):
        super().__init__(f"{len(hashes)} blocks are missing.")
        self.hashes = list(hashes)
        self.blocks = blocks


def check_blocks_txn(txn: Any, blocks: Any, hashes: Sequence[str]) -> None:
    """Inside the transaction, under the collector's shared lock: every
    block is present in ``blocks`` (when it can tell synchronously) and
    not being collected; ``MissingBlocks`` otherwise."""
    wanted = list(dict.fromkeys(h for h in hashes if h != EMPTY_HASH))
    if not wanted:
        return
    gone = set(store.gc_marked_txn(txn, wanted))
    missing_now = getattr(blocks, "missing_now", None)
    if missing_now is not None:
        gone.update(missing_now(wanted))
    if gone:
        raise MissingBlocks([h for h in wanted if h in gone], blocks)


async def collect_garbage(db: Any, blocks: Any, cutoff: float,
                          batch: int = 1000,
                          storage: Sequence[str] | None = None) -> tuple[int, int]:
    """Remove the blocks of ``blocks`` no version references, sparing any
    stored or refreshed after ``cutoff`` (seconds since the epoch), safely
    against concurrent writers (see the module docstring).  ``storage``:
    the store is a storage policy's (its names): only versions in its
    containers count (``store.gc_mark_txn``).  Returns ``(blocks scanned,
    removed)``.  Run by one node at a time (a leader duty)."""
    await db.run("pithos.gc_reset", store.gc_unmark_txn, None)
    # Uploads not referenced within the grace are no longer the uploader's
    # to name (nor count against its bound of unreferenced uploads).
    await db.run("pithos.gc_uploads", store.prune_uploads_txn, cutoff)
    after = ""
    scanned = removed = 0
    while True:
        page = list(await blocks.scan(after, batch))
        if not page:
            break
        scanned += len(page)
        after = page[-1]
        unused: list[str] = await db.run("pithos.gc_mark", store.gc_mark_txn, page, storage)
        if unused:
            try:
                gone = await blocks.delete(unused, cutoff)
            finally:
                await db.run("pithos.gc_unmark", store.gc_unmark_txn, unused)
            removed += len(gone)
        if len(page) < batch:
            break
    return scanned, removed


__all__ = ["MissingBlocks", "check_blocks_txn", "collect_garbage"]
