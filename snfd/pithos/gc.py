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

Other services keep references of their own (volume maps): they register
as holders with ``BlockReferences`` (the ``IBlockReferences`` the storage
service provides) and the collection of the node's block store spares
what they report.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.interfaces import IBlockReferences
from snfd.pithos import store
from snfd.pithos.hashmap import EMPTY_HASH

log = Logger(namespace="snfd.pithos.gc")


class MissingBlocks(errors.Conflict):
    """A hashmap names blocks the store does not have (409; the body is the
    JSON list of their hashes).  ``blocks``: the store found lacking them
    inside a transaction (a container's storage policy), when known: the
    blocks may be in another policy's store (``StoragePolicies.bring``)."""

    def __init__(self, hashes: Sequence[str], blocks: Any = None, collecting: bool = False):
        super().__init__(f"{len(hashes)} blocks are missing.")
        self.hashes = list(hashes)
        self.blocks = blocks
        #: Every one of them is present but marked by a running collection,
        #: which spares a block refreshed within its grace: the writer may
        #: wait for the marks to go and look again (``Backend._placed``).
        self.collecting = collecting


def check_blocks_txn(txn: Any, blocks: Any, hashes: Sequence[str]) -> None:
    """Inside the transaction, under the collector's shared lock: every
    block is present in ``blocks`` (when it can tell synchronously) and
    not being collected; ``MissingBlocks`` otherwise."""
    wanted = list(dict.fromkeys(h for h in hashes if h != EMPTY_HASH))
    if not wanted:
        return
    marked = set(store.gc_marked_txn(txn, wanted))
    missing_now = getattr(blocks, "missing_now", None)
    absent = set(missing_now(wanted)) if missing_now is not None else set()
    if marked or absent:
        raise MissingBlocks([h for h in wanted if h in marked or h in absent], blocks,
                            collecting=not absent)


@implementer(IBlockReferences)
class BlockReferences:
    """The holders of references to blocks outside the object store's
    versions (``IBlockReferences``)."""

    def __init__(self) -> None:
        self._holders: dict[str, Callable[[], Awaitable[set[str]]]] = {}

    def add_holder(self, name: str, referenced: Callable[[], Awaitable[set[str]]]) -> None:
        self._holders[name] = referenced

    def remove_holder(self, name: str) -> None:
        self._holders.pop(name, None)

    async def referenced(self) -> set[str] | None:
        """Every holder's blocks; ``None`` when a holder failed (the run
        must then delete nothing)."""
        out: set[str] = set()
        for name, holder in list(self._holders.items()):
            try:
                out.update(await holder())
            except Exception:
                log.failure("block holder {name} failed: this collection deletes nothing",
                            name=name)
                return None
        return out


async def collect_garbage(db: Any, blocks: Any, cutoff: float,
                          batch: int = 1000,
                          storage: Sequence[str] | None = None,
                          keep: AbstractSet[str] = frozenset()) -> tuple[int, int]:
    """Remove the blocks of ``blocks`` no version references, sparing any
    stored or refreshed after ``cutoff`` (seconds since the epoch), safely
    against concurrent writers (see the module docstring).  ``storage``:
    the store is a storage policy's (its names): only versions in its
    containers count (``store.gc_mark_txn``).  ``keep``: blocks other
    holders reference (``BlockReferences``), spared too.  Returns
    ``(blocks scanned, removed)``.  Run by one node at a time (a leader duty)."""
    await db.run("pithos.gc_reset", store.gc_unmark_txn, None)
    # Uploads not referenced within the grace are no longer the uploader's
    # to name (nor count against its bound of unreferenced uploads).
    await db.run("pithos.gc_uploads", store.prune_uploads_txn, cutoff)
    cursor: str | None = ""
    scanned = removed = 0
    while cursor is not None:
        page, cursor = await blocks.scan(cursor, batch)
        page = list(page)
        if not page:
            continue
        scanned += len(page)
        unused: list[str] = await db.run("pithos.gc_mark", store.gc_mark_txn, page, storage)
        held = [n for n in unused if n in keep]
        if held:
            await db.run("pithos.gc_unmark", store.gc_unmark_txn, held)
            unused = [n for n in unused if n not in keep]
        if unused:
            try:
                gone = await blocks.delete(unused, cutoff)
            finally:
                await db.run("pithos.gc_unmark", store.gc_unmark_txn, unused)
            removed += len(gone)
    return scanned, removed


__all__ = ["BlockReferences", "MissingBlocks", "check_blocks_txn", "collect_garbage"]
