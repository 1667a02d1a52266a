"""Copying a storage policy's blocks from one block store to another
while the cloud runs (``snf-manage pithos-migrate-blocks``: a seed's NFS
directory to Ceph).  The switch procedure around it is in
docs/operations.md, "Moving blocks from a filesystem to Ceph".

A copy (``copy_blocks``) streams the source's ``scan``.  For each page it
asks the target which blocks are ``missing`` (the present ones have their
age refreshed there, which only delays their collection), reads those
from the source, checks each block's content against its name
(``blocks.name_of``: SHA-256 of the bytes without trailing zeros, in a
thread) and stores it in the target under that name, ``in_flight``
blocks at a time, across pages.  A block whose bytes do not match its
name is reported and not copied (nor is one the source cannot read);
one deleted from the source between the listing and the read (collected
meanwhile) is counted as gone.  A failure of the target (full,
unreachable) stops the copy.

Resuming: when the source's cursor outlives the process
(``IBlockStore.scan_resumable``: the filesystem store's, names
ascending), a ``Progress`` file records the cursor after the last page
whose blocks are all done, atomically, and an interrupted copy (killed,
say) resumes there.  Otherwise (a RADOS source) a copy run again lists
the source from the start and skips what the target holds, at the cost
of one ``missing`` per page and no read.  A finished copy removes its
progress file: the next one walks the whole source again, as the second
copy of the switch procedure must.

``verify_blocks`` reads every block the source lists back from the
target and checks its content.

Maps: Pithos keeps its maps in the database, which does not move.
Archipelago's volume maps are blocks of policy 0's store (copied with
the others) behind pointers in the volume place, which
``snfd.archip.place.copy_volumes`` moves.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool

from snfd.pithos.blocks import name_of

PROGRESS_VERSION = 1

T = TypeVar("T")


@attrs.frozen
class BlockFault:
    """A block a copy or a verification did not accept, and why."""

    name: str
    reason: str


@attrs.define
class CopyReport:
    """What a copy did (since its start, across resumed runs).

    ``scanned``: names the source listed, in pages finished; ``copied``
    and ``bytes``: blocks written to the target and their size;
    ``present``: blocks the target already held; ``gone``: blocks listed
    then absent from the source; ``failed``: blocks not copied because
    their content does not match their name or cannot be read.
    ``resumed_after``: the cursor this run started from (``None``: the
    beginning), ``copied_before`` and ``bytes_before`` what the runs
    before it copied; ``complete``: the whole source was walked."""

    scanned: int = 0
    copied: int = 0
    bytes: int = 0
    present: int = 0
    gone: int = 0
    failed: list[BlockFault] = attrs.field(factory=list)
    resumed_after: str | None = None
    copied_before: int = 0
    bytes_before: int = 0
    complete: bool = False

    def counts(self) -> dict[str, Any]:
        """The counters as JSON values (what a progress file keeps)."""
        return {"scanned": self.scanned, "copied": self.copied, "bytes": self.bytes,
                "present": self.present, "gone": self.gone,
                "failed": [attrs.asdict(f) for f in self.failed]}

    @classmethod
    def from_counts(cls, counts: dict[str, Any]) -> CopyReport:
        return cls(scanned=int(counts["scanned"]), copied=int(counts["copied"]),
                   bytes=int(counts["bytes"]), present=int(counts["present"]),
                   gone=int(counts["gone"]),
                   failed=[BlockFault(str(f["name"]), str(f["reason"]))
                           for f in counts["failed"]])


@attrs.define
class VerifyReport:
    """What a verification found: ``checked`` blocks the source lists,
    ``ok`` of them in the target with the right content (``bytes``),
    ``missing`` from it, ``corrupt`` there (content not matching the
    name, or unreadable)."""

    checked: int = 0
    ok: int = 0
    bytes: int = 0
    missing: list[str] = attrs.field(factory=list)
    corrupt: list[BlockFault] = attrs.field(factory=list)


class Progress:
    """The progress file of one copy: the source's cursor after the last
    page finished, and the counts so far, as JSON, written atomically
    (a temporary file fsynced then renamed).  It belongs to one source,
    target and role of the source (``"store"``: a policy's own store,
    ``"fallback"``: the one it moved from, after the switch); a file of
    another copy is not resumed, since a copy begun before the switch
    may have passed blocks written after it (``stale`` says why)."""

    def __init__(self, path: str, source: str, target: str, role: str):
        self.path = path
        self.source = source
        self.target = target
        self.role = role
        self.stale: str | None = None

    def load(self) -> tuple[str, CopyReport] | None:
        """The cursor to resume after and the counts so far, or ``None``
        (no file, or one of another copy: ``stale`` set)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self.stale = f"{self.path} is unreadable ({e}); starting over"
            return None
        mine = {"version": PROGRESS_VERSION, "source": self.source, "target": self.target,
                "role": self.role}
        theirs = {k: doc.get(k) for k in mine}
        if theirs != mine:
            self.stale = (f"{self.path} is the progress of another copy ({theirs['source']}"
                          f" as {theirs['role']} to {theirs['target']}); starting over")
            return None
        try:
            return str(doc["cursor"]), CopyReport.from_counts(doc["counts"])
        except (KeyError, TypeError, ValueError) as e:
            self.stale = f"{self.path} is malformed ({e!r}); starting over"
            return None

    def save(self, cursor: str, report: CopyReport) -> None:
        """Record that every block up to ``cursor`` is done (any thread)."""
        doc = {"version": PROGRESS_VERSION, "source": self.source, "target": self.target,
               "role": self.role, "cursor": cursor, "counts": report.counts()}
        temporary = f"{self.path}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        directory = os.open(os.path.dirname(os.path.abspath(self.path)),
                            os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def finish(self) -> None:
        """Forget the copy (it is complete): the next one starts over."""
        for path in (self.path, f"{self.path}.tmp"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def describe(store: Any) -> str:
    """A block store as the reports and progress files name it:
    ``file:<directory>`` or ``rados:<pool>/<namespace>``."""
    path = getattr(store, "path", None)
    if path is not None:
        return f"file:{path}"
    pool = getattr(store, "pool", None)
    if pool is not None:
        return f"rados:{pool}/{store.namespace}"
    return repr(store)


def _matches(name: str, block: bytes) -> bool:
    """Whether ``block`` is the block ``name`` (hashed in a thread)."""
    return name_of(block) == name


async def _store(target: Any, name: str, block: bytes) -> None:
    put_hashed = getattr(target, "put_hashed", None)
    if put_hashed is not None:
        await put_hashed([(name, block)])
    else:
        await target.put([block])


async def _walk(source: Any, cursor: str, batch: int, in_flight: int,
                start: Callable[[list[str]], Awaitable[tuple[list[str], T]]],
                work: Callable[[str, T], Coroutine[Any, Any, None]],
                page_done: Callable[[int, str | None, T], Awaitable[None]]) -> None:
    """Stream ``source.scan`` from ``cursor``.  ``start(names)`` of each
    page gives the names to work on and the page's own record;
    ``work(name, record)`` runs ``in_flight`` at a time, across pages
    (the next page is listed while one is worked on, never more);
    ``page_done(listed, next cursor, record)`` once every name of the
    page and of the pages before is done, in order.  A failed ``work``
    stops the walk once the work in flight has ended, and is raised."""
    gate = defer.DeferredSemaphore(in_flight)
    pages: deque[tuple[int, str | None, T, defer.Deferred[Any]]] = deque()
    following: str | None = cursor

    async def settle() -> None:
        listed, after, record, done = pages.popleft()
        for ok, value in await done:
            if not ok:
                value.raiseException()
        await page_done(listed, after, record)

    try:
        while following is not None:
            names, following = await source.scan(following, batch)
            names = list(names)
            chosen, record = await start(names)
            done = defer.DeferredList([gate.run(work, n, record) for n in chosen],
                                      consumeErrors=True)
            pages.append((len(names), following, record, done))
            if len(pages) > 1:
                await settle()
        while pages:
            await settle()
    except BaseException:
        # Leave nothing running behind: the caller closes the stores.
        for _, _, _, done in pages:
            await done
        raise


async def copy_blocks(source: Any, target: Any, reactor: Any, *,
                      progress: Progress | None = None, batch: int = 1000,
                      in_flight: int = 8,
                      on_page: Callable[[CopyReport], None] | None = None) -> CopyReport:
    """Copy every block of ``source`` that ``target`` lacks (see the
    module docstring).

    @param source: an ``IBlockStore``.
    @param target: an ``IBlockStore`` of the same block size.
    @param reactor: the reactor whose thread pool hashes the blocks and
        writes the progress file.
    @param progress: where to record the cursor and resume from
        (used when ``source.scan_resumable``); removed once complete.
    @param on_page: called with the report after each page.
    @return: the report (``complete``); a failure of the target (or of
        the source's listing) is raised, the pages done recorded.
    """
    pool = reactor.getThreadPool()
    resumable = progress is not None and bool(getattr(source, "scan_resumable", False))
    report = CopyReport()
    cursor = ""
    if resumable:
        assert progress is not None
        saved = await deferToThreadPool(reactor, pool, progress.load)
        if saved is not None:
            cursor, report = saved
            report.resumed_after = cursor
            report.copied_before, report.bytes_before = report.copied, report.bytes

    async def start(names: list[str]) -> tuple[list[str], CopyReport]:
        page = CopyReport()
        absent: list[str] = list(await target.missing(names)) if names else []
        page.present = len(names) - len(absent)
        return absent, page

    async def copy(name: str, page: CopyReport) -> None:
        try:
            block = await source.get_stored(name)
        except KeyError:
            page.gone += 1
            return
        except OSError as e:
            page.failed.append(BlockFault(name, f"unreadable in the source: {e}"))
            return
        if not await deferToThreadPool(reactor, pool, _matches, name, block):
            page.failed.append(BlockFault(name, "its content does not match its name"))
            return
        await _store(target, name, block)
        page.copied += 1
        page.bytes += len(block)

    async def page_done(listed: int, after: str | None, page: CopyReport) -> None:
        report.scanned += listed
        report.copied += page.copied
        report.bytes += page.bytes
        report.present += page.present
        report.gone += page.gone
        report.failed.extend(sorted(page.failed, key=lambda f: f.name))
        if resumable and after is not None:
            assert progress is not None
            await deferToThreadPool(reactor, pool, progress.save, after, report)
        if on_page is not None:
            on_page(report)

    await _walk(source, cursor, batch, in_flight, start, copy, page_done)
    report.complete = True
    if progress is not None:
        await deferToThreadPool(reactor, pool, progress.finish)
    return report


async def verify_blocks(source: Any, target: Any, reactor: Any, *, batch: int = 1000,
                        in_flight: int = 8,
                        on_page: Callable[[VerifyReport], None] | None = None,
                        ) -> VerifyReport:
    """Read every block ``source`` lists back from ``target`` and check
    its content against its name (nothing is written, no age refreshed).
    ``on_page`` as for ``copy_blocks``."""
    pool = reactor.getThreadPool()
    report = VerifyReport()

    async def start(names: list[str]) -> tuple[list[str], VerifyReport]:
        return names, VerifyReport()

    async def check(name: str, page: VerifyReport) -> None:
        try:
            block = await target.get_stored(name)
        except KeyError:
            page.missing.append(name)
            return
        except OSError as e:
            page.corrupt.append(BlockFault(name, f"unreadable in the target: {e}"))
            return
        if not await deferToThreadPool(reactor, pool, _matches, name, block):
            page.corrupt.append(BlockFault(name, "its content in the target does not"
                                                 " match its name"))
            return
        page.ok += 1
        page.bytes += len(block)

    async def page_done(listed: int, after: str | None, page: VerifyReport) -> None:
        report.checked += listed
        report.ok += page.ok
        report.bytes += page.bytes
        report.missing.extend(page.missing)
        report.corrupt.extend(page.corrupt)
        if on_page is not None:
            on_page(report)

    await _walk(source, "", batch, in_flight, start, check, page_done)
    report.missing.sort()
    report.corrupt.sort(key=lambda f: f.name)
    return report


__all__ = ["BlockFault", "CopyReport", "Progress", "VerifyReport", "copy_blocks",
           "describe", "verify_blocks"]
