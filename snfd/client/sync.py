"""Block-level transfers between local files and the object store.

Everything compares *hashmaps* (``snfd.pithos.hashmap``): a file is cut in
blocks of the container's block size, each named by the SHA-256 of the
block without its trailing zero bytes, and the file's hash is the Merkle
root of those names -- the object's ``X-Object-Hash``.  So only blocks
whose names differ ever cross the network:

- ``upload_file``: PUT the hashmap; the server answers 409 with the blocks
  it lacks; POST those (in parallel, each reply checked) and PUT the
  hashmap again.  Running it again after an interruption sends only what
  is still missing.
- ``download_object``: pin the object's current version, GET its hashmap,
  and fetch with ``Range`` only the blocks whose local content differs
  (the partial file an interrupted download left, ``.<name>.snf-part``
  beside it, else the existing file); then rename atomically.
- ``sync``: both ways, by comparing each path's local hash, remote hash
  and the hash both sides had at the last sync (kept in ``.snf-sync.json``
  in the local directory), see ``plan``.

These functions block; run them in a command-line process, not on a
reactor.  ``Progress`` receives what they do.
"""

from __future__ import annotations

import concurrent.futures
import json
import mimetypes
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from snfd.client.pithos import DIRECTORY_TYPES, ClientError, PithosClient
from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, HASH_ALGORITHM, block_hash, merkle

STATE_NAME = ".snf-sync.json"
PART_SUFFIX = ".snf-part"
DEFAULT_WORKERS = 4
BLOCK_ATTEMPTS = 3
UPLOAD_ROUNDS = 4


class TransferError(ClientError):
    """A transfer could not complete (a local file changed underneath, the
    server returned wrong data, an unsupported block hash...)."""

    def __init__(self, message: str):
        super().__init__(0, message)


class Progress:
    """What a transfer reports; the default does nothing.  ``advance`` may
    be called from worker threads."""

    def start(self, label: str, total: int) -> None:
        """A transfer of ``total`` bytes over the network begins."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes were transferred."""

    def finish(self) -> None:
        """The transfer begun by the last ``start`` ended."""

    def action(self, action: Action) -> None:
        """``sync`` is about to carry out ``action``."""


# -- hashing -------------------------------------------------------------------


@attrs.frozen
class LocalMap:
    """A local file's hashmap: ``size`` bytes in ``hashes`` (``[EMPTY_HASH]``
    for an empty file, as the server stores it)."""

    size: int
    hashes: list[str]
    block_size: int

    @property
    def object_hash(self) -> str:
        return merkle(self.hashes)


def block_spans(size: int, block_size: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of each block of a ``size``-byte object."""
    return [(off, min(block_size, size - off)) for off in range(0, size, block_size)]


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _hash_blocks(fd: int, spans: list[tuple[int, int]], workers: int) -> list[str]:
    """The block names of ``spans`` of ``fd`` (hashlib releases the GIL, so
    threads hash in parallel)."""
    def one(span: tuple[int, int]) -> str:
        return block_hash(_pread_all(fd, span[1], span[0]))

    if workers <= 1 or len(spans) <= 1:
        return [one(s) for s in spans]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, spans))


def hash_file(path: Path, block_size: int = BLOCK_SIZE, *,
              workers: int = DEFAULT_WORKERS) -> LocalMap:
    """The hashmap of the file at ``path``.
    @raise OSError: the file cannot be read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        hashes = _hash_blocks(fd, block_spans(size, block_size), workers)
    finally:
        os.close(fd)
    return LocalMap(size=size, hashes=hashes or [EMPTY_HASH], block_size=block_size)


def _check_algorithm(algorithm: str) -> None:
    if algorithm.lower() != HASH_ALGORITHM:
        raise TransferError(f"the container hashes blocks with {algorithm!r};"
                            f" only {HASH_ALGORITHM} is supported")


# -- upload ----------------------------------------------------------------------


@attrs.frozen
class UploadResult:
    size: int
    blocks: int
    uploaded_blocks: int
    uploaded_bytes: int
    object_hash: str
    version: str


def upload_file(client: PithosClient, path: Path, container: str, name: str, *,
                content_type: str = "application/octet-stream",
                headers: Mapping[str, str] | None = None,
                workers: int = DEFAULT_WORKERS, progress: Progress | None = None,
                block_params: tuple[int, str] | None = None,
                local: LocalMap | None = None) -> UploadResult:
    """Upload the file at ``path`` as ``container/name`` by hashmap.

    Blocks the server already has (in any object of any user) are not sent.
    ``headers`` go with the hashmap PUT (meta, sharing, public).
    @raise ClientError: the server refused, or the file changed while it
        was being uploaded (``TransferError``).
    """
    progress = progress or Progress()
    block_size, algorithm = block_params or client.block_params(container)
    _check_algorithm(algorithm)
    if local is None or local.block_size != block_size:
        local = hash_file(path, block_size, workers=workers)
    where: dict[str, int] = {}
    for index, h in enumerate(local.hashes):
        where.setdefault(h, index)
    sent_blocks = sent_bytes = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(UPLOAD_ROUNDS):
            missing, reply = client.put_hashmap(
                container, name, local.size, local.hashes, content_type=content_type,
                headers=headers)
            if not missing:
                return UploadResult(
                    size=local.size, blocks=len(local.hashes), uploaded_blocks=sent_blocks,
                    uploaded_bytes=sent_bytes, object_hash=local.object_hash,
                    version=reply.get("X-Object-Version", ""))
            unknown = [h for h in missing if h not in where]
            if unknown:
                raise TransferError(f"the server asks for block {unknown[0]} that"
                                    f" {path} does not have")
            spans = [(where[h] * block_size,
                      min(block_size, local.size - where[h] * block_size), h) for h in missing]
            progress.start(f"upload {name}", sum(s[1] for s in spans))
            try:
                with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
                    for n in pool.map(
                            lambda s: _send_block(client, container, fd, s[0], s[1], s[2],
                                                  progress), spans):
                        sent_blocks += 1
                        sent_bytes += n
            finally:
                progress.finish()
    finally:
        os.close(fd)
    raise TransferError(f"the server still lacks blocks of {name} after"
                        f" {UPLOAD_ROUNDS} rounds of uploads")


def _send_block(client: PithosClient, container: str, fd: int, offset: int, length: int,
                expected: str, progress: Progress) -> int:
    """POST one block, check the name the server gives it; returns the
    bytes sent.  Trailing zero bytes are not sent: they do not change the
    block's name and the server pads blocks with zeros."""
    data = _pread_all(fd, length, offset)
    if block_hash(data) != expected:
        raise TransferError("the file changed while it was being uploaded; run again")
    data = data.rstrip(b"\x00")
    for attempt in range(BLOCK_ATTEMPTS):
        got = client.upload_block(container, data)
        if got == [expected]:
            progress.advance(length)
            return len(data)
        if attempt == BLOCK_ATTEMPTS - 1:
            raise TransferError(f"the server stored block {expected} as {got!r}")
    raise AssertionError("unreachable")


# -- download --------------------------------------------------------------------


@attrs.frozen
class DownloadResult:
    size: int
    blocks: int
    fetched_blocks: int
    fetched_bytes: int
    object_hash: str
    version: str


def partial_path(dest: Path) -> Path:
    """Where an interrupted download of ``dest`` keeps what it fetched."""
    return dest.with_name(f".{dest.name}{PART_SUFFIX}")


def download_object(client: PithosClient, container: str, name: str, dest: Path, *,
                    version: str | None = None, workers: int = DEFAULT_WORKERS,
                    progress: Progress | None = None, seed: Path | None = None,
                    guard: Callable[[], None] | None = None) -> DownloadResult:
    """Make the file ``dest`` hold the object ``container/name``.

    The version is pinned first, so a concurrent change of the object does
    not mix two versions.  Blocks already right in the partial file or in
    ``dest`` (else in ``seed``, another local file, e.g. the same content
    under its old name) are not fetched.  ``dest`` is replaced atomically at
    the end, right after ``guard()``, which may raise to keep ``dest`` as it
    is (the partial file stays for the next attempt).
    @raise ClientError: the server refused, or sent data that does not
        match the hashmap (``TransferError``).
    """
    progress = progress or Progress()
    info = client.object_info(container, name, version)
    ctype = info.get("Content-Type", "").split(";")[0].strip()
    if ctype in DIRECTORY_TYPES:
        raise TransferError(f"{container}/{name} is a directory")
    pinned = version or info.get("X-Object-Version") or None
    hm = client.get_hashmap(container, name, pinned)
    _check_algorithm(hm.block_hash)
    spans = block_spans(hm.bytes, hm.block_size)
    hashes = hm.hashes if hm.bytes else []
    if len(hashes) != len(spans):
        raise TransferError(f"the hashmap of {container}/{name} has {len(hashes)} hashes"
                            f" for {hm.bytes} bytes")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    result = DownloadResult(size=hm.bytes, blocks=len(spans), fetched_blocks=0,
                            fetched_bytes=0, object_hash=merkle(hashes), version=pinned or "")
    if part.exists():
        fd = os.open(part, os.O_RDWR)
        # Blocks past the old end read as zeros, the content of a zero block.
        os.ftruncate(fd, hm.bytes)
        have = _hash_blocks(fd, spans, workers)
    else:
        have = [EMPTY_HASH] * len(spans)
        origin = dest if dest.is_file() else seed if seed is not None and seed.is_file() \
            else None
        src = os.open(origin, os.O_RDONLY) if origin is not None else None
        try:
            if src is not None:
                have = _hash_blocks(src, spans, workers)
                if origin == dest and have == hashes and os.fstat(src).st_size == hm.bytes:
                    return result  # already right: leave the file alone
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
            os.ftruncate(fd, hm.bytes)
            if src is not None:
                _copy_blocks(src, fd, [s for s, h, got in zip(spans, hashes, have, strict=True)
                                       if h == got and h != EMPTY_HASH])
        finally:
            if src is not None:
                os.close(src)
    fetched = fetched_bytes = 0
    try:
        todo = [(off, length, h) for (off, length), h, got in zip(spans, hashes, have,
                                                                   strict=True)
                if h != got]
        progress.start(f"download {name}", sum(t[1] for t in todo))
        try:
            with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
                for n in pool.map(lambda t: _fetch_block(client, container, name, pinned, fd,
                                                         t[0], t[1], t[2], progress), todo):
                    fetched += 1
                    fetched_bytes += n
        finally:
            progress.finish()
        os.fsync(fd)
    finally:
        os.close(fd)
    if guard is not None:
        guard()
    os.replace(part, dest)
    return attrs.evolve(result, fetched_blocks=fetched, fetched_bytes=fetched_bytes)


def _copy_blocks(src: int, dst: int, spans: list[tuple[int, int]]) -> None:
    """Copy the ``(offset, length)`` spans of ``src`` to the same offsets
    of ``dst`` (the blocks a download need not fetch)."""
    for offset, length in spans:
        _pwrite_all(dst, _pread_all(src, length, offset), offset)


def _fetch_block(client: PithosClient, container: str, name: str, version: str | None,
                 fd: int, offset: int, length: int, expected: str,
                 progress: Progress) -> int:
    for attempt in range(BLOCK_ATTEMPTS):
        data = client.read_range(container, name, offset, offset + length - 1, version)
        if len(data) == length and block_hash(data) == expected:
            _pwrite_all(fd, data, offset)
            progress.advance(length)
            return length
        if attempt == BLOCK_ATTEMPTS - 1:
            raise TransferError(f"the server sent bytes {offset}-{offset + length - 1} of"
                                f" {container}/{name} that do not match its hashmap")
    raise AssertionError("unreachable")


# -- sync ------------------------------------------------------------------------

UPLOAD = "upload"
DOWNLOAD = "download"
DELETE_LOCAL = "delete-local"
DELETE_REMOTE = "delete-remote"
CONFLICT = "conflict"

UPWARD = frozenset({UPLOAD, DELETE_REMOTE})
DOWNWARD = frozenset({DOWNLOAD, DELETE_LOCAL})


@attrs.frozen(order=True)
class Action:
    """One step of a sync: ``kind`` on the relative ``path``."""

    path: str
    kind: str


def plan(local: Mapping[str, str], remote: Mapping[str, str],
         base: Mapping[str, str]) -> list[Action]:
    """What to do to make both sides equal, by path.

    ``local`` and ``remote`` map relative paths to object hashes; ``base``
    to the hash both sides had after the last sync.  For each path, with L,
    R and B its local, remote and base hashes (absent: none):

    - L == R: nothing;
    - only one side differs from B: that side changed, copy it over (a
      side that no longer has the path had it deleted: delete it on the
      other side too);
    - neither side equals B (both changed, or the path is new on both):
      if one side lacks it, copy the other (a change wins over a
      deletion; nothing is lost), else ``conflict``.

    Sorted by path.
    """
    actions = []
    for path in sorted(set(local) | set(remote)):
        lh, rh, bh = local.get(path), remote.get(path), base.get(path)
        if lh == rh:
            continue
        if lh == bh:  # only the remote side changed
            actions.append(Action(path, DOWNLOAD if rh is not None else DELETE_LOCAL))
        elif rh == bh:  # only the local side changed
            actions.append(Action(path, UPLOAD if lh is not None else DELETE_REMOTE))
        elif lh is None:
            actions.append(Action(path, DOWNLOAD))
        elif rh is None:
            actions.append(Action(path, UPLOAD))
        else:
            actions.append(Action(path, CONFLICT))
    return actions


def filter_plan(actions: Iterable[Action], *, direction: str = "both",
                delete: bool = True) -> tuple[list[Action], list[Action]]:
    """Split ``actions`` into ``(to do, skipped)``: ``direction`` ``up``
    never changes local files, ``down`` never changes remote objects
    (conflicts need both); without ``delete`` nothing is deleted."""
    todo: list[Action] = []
    skipped: list[Action] = []
    for a in actions:
        allowed = (a.kind in UPWARD if direction == "up" else
                   a.kind in DOWNWARD if direction == "down" else True)
        if not delete and a.kind in (DELETE_LOCAL, DELETE_REMOTE):
            allowed = False
        (todo if allowed else skipped).append(a)
    return todo, skipped


def safe_relpath(name: str) -> bool:
    """Whether a remote name can be a path under the sync directory: not
    absolute, no empty, ``.`` or ``..`` parts, no NUL or backslash, and not
    one of the sync's own files."""
    if not name or name.startswith("/") or "\x00" in name or "\\" in name:
        return False
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return False
    return not (name == STATE_NAME or parts[-1].endswith(PART_SUFFIX))


def conflict_name(path: str, taken: Iterable[str]) -> str:
    """A free name for the local copy of a conflicting ``path``:
    ``dir/name (conflict).ext``, then ``(conflict 2)``..."""
    used = set(taken)
    head, sep, leaf = path.rpartition("/")
    stem, dot, ext = leaf.rpartition(".")
    if not stem:  # no extension, or a dot file
        stem, dot, ext = leaf, "", ""
    n = 1
    while True:
        tag = " (conflict)" if n == 1 else f" (conflict {n})"
        candidate = f"{head}{sep}{stem}{tag}{dot}{ext}"
        if candidate not in used:
            return candidate
        n += 1


@attrs.define
class SyncState:
    """What ``sync`` remembers in ``<dir>/.snf-sync.json``.

    ``base``: per remote (``storage URL/container/prefix``), the hash of
    each path after the last sync.  ``cache``: each local file's
    ``[size, mtime_ns, block_size, hash]`` when it was last hashed, so
    unchanged files are not hashed again.
    """

    remotes: dict[str, dict[str, str]] = attrs.field(factory=dict)
    cache: dict[str, list[Any]] = attrs.field(factory=dict)

    @classmethod
    def load(cls, root: Path) -> SyncState:
        try:
            data = json.loads((root / STATE_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as e:
            raise TransferError(f"{root / STATE_NAME}: unreadable ({e}); remove it to"
                                " start over") from None
        if not isinstance(data, dict) or data.get("version") != 1:
            raise TransferError(f"{root / STATE_NAME}: not a sync state of this snf")
        return cls(remotes=data.get("remotes") or {}, cache=data.get("cache") or {})

    def save(self, root: Path) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".snf-sync-", suffix=".tmp", dir=root)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "remotes": self.remotes, "cache": self.cache}, f,
                      sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / STATE_NAME)


@attrs.frozen
class LocalFile:
    path: Path
    size: int
    mtime_ns: int
    object_hash: str
    local: LocalMap | None  # the hashmap when it was just computed


def scan_local(root: Path, block_size: int, cache: dict[str, list[Any]], *,
               workers: int = DEFAULT_WORKERS) -> dict[str, LocalFile]:
    """Every regular file under ``root`` (symbolic links and the sync's own
    files skipped) by relative path, hashed unless ``cache`` knows it
    unchanged; ``cache`` is brought up to date."""
    found: dict[str, LocalFile] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            rel = full.relative_to(root).as_posix()
            if not safe_relpath(rel) or fname.startswith(".snf-sync-"):
                continue
            try:
                st = full.lstat()
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            known = cache.get(rel)
            if known and known[:3] == [st.st_size, st.st_mtime_ns, block_size]:
                found[rel] = LocalFile(full, st.st_size, st.st_mtime_ns, str(known[3]), None)
                continue
            local = hash_file(full, block_size, workers=workers)
            cache[rel] = [st.st_size, st.st_mtime_ns, block_size, local.object_hash]
            found[rel] = LocalFile(full, st.st_size, st.st_mtime_ns, local.object_hash, local)
    for rel in [r for r in cache if r not in found]:
        del cache[rel]
    return found


def scan_remote(client: PithosClient, container: str, prefix: str) -> dict[str, str]:
    """Object hashes of the remote objects under ``prefix`` by relative
    path; directory markers and names unfit for a local path are left out."""
    found = {}
    for item in client.objects(container, prefix=prefix):
        name = item.get("name")
        if not isinstance(name, str) or not name.startswith(prefix):
            continue
        ctype = str(item.get("content_type", "")).split(";")[0].strip()
        if ctype in DIRECTORY_TYPES:
            continue
        rel = name[len(prefix):]
        if not safe_relpath(rel):
            continue
        found[rel] = str(item.get("x_object_hash") or item.get("hash") or "")
    return found


@attrs.define
class SyncReport:
    """What a pass did: actions ``done``, ``skipped`` (``direction``,
    ``delete``), ``failed`` with why, and the paths ``held`` back because
    they changed less than ``settle`` seconds ago (still being written)."""

    done: list[Action] = attrs.field(factory=list)
    skipped: list[Action] = attrs.field(factory=list)
    failed: list[tuple[Action, str]] = attrs.field(factory=list)
    held: list[str] = attrs.field(factory=list)


#: The order a pass carries out its actions: everything that copies first,
#: deletions last, so an interrupted pass has deleted nothing whose content
#: a copy (a rename's new name) still needs.
_ORDER = {UPLOAD: 0, DOWNLOAD: 0, CONFLICT: 0, DELETE_REMOTE: 1, DELETE_LOCAL: 1}
#: Seconds between saves of the state during a pass (it is saved at the end
#: too).  A lost save costs no data: the next pass finds both sides equal.
SAVE_EVERY = 1.0


class ChangedMeanwhile(TransferError):
    """A side changed after the pass looked at it; the next pass decides."""


def sync(client: PithosClient, root: Path, container: str, prefix: str = "", *,
         direction: str = "both", delete: bool = True, dry_run: bool = False,
         workers: int = DEFAULT_WORKERS, progress: Progress | None = None,
         settle: float = 0.0, clock: Callable[[], float] = time.time) -> SyncReport:
    """Make the directory ``root`` and the objects under
    ``container/prefix`` equal (see ``plan`` for the rules and
    ``filter_plan`` for ``direction`` and ``delete``).

    A conflict keeps both versions: the local file is renamed to
    ``conflict_name``, the remote object downloaded in its place and the
    renamed copy uploaded.  A failed step is reported in the result and
    the others go on.

    Nothing is lost when either side changes during the pass, or when the
    process is killed at any point:

    - an upload is conditional (``If-Match`` the remote hash the pass saw,
      ``If-None-Match: *`` when it saw none), and so is a remote deletion
      (``If-Match``: an object changed since the pass saw it stays);
    - a download replaces, and a local deletion removes, a file only if its
      size and mtime are still what the pass saw;
    - a download is written beside the file and renamed into place; a
      remote rename is downloaded from the local file of the same content;
    - deletions come after copies;
    - the state (``.snf-sync.json``, replaced atomically and synced to
      disk) only records what both sides already hold, so after a crash
      the next pass finds what is done equal on both sides and redoes the
      rest.

    ``settle``: files modified less than this many seconds ago are left for
    a later pass (``SyncReport.held``).
    """
    progress = progress or Progress()
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    root.mkdir(parents=True, exist_ok=True)
    block_size, algorithm = client.block_params(container)
    _check_algorithm(algorithm)
    state = SyncState.load(root)
    key = f"{client.storage_url}/{container}/{prefix}"
    base = state.remotes.setdefault(key, {})
    files = scan_local(root, block_size, state.cache, workers=workers)
    remote = scan_remote(client, container, prefix)
    local = {rel: f.object_hash for rel, f in files.items()}
    todo, skipped = filter_plan(plan(local, remote, base), direction=direction, delete=delete)
    report = SyncReport(skipped=skipped)
    if settle > 0:
        recent = {rel for rel, f in files.items() if f.mtime_ns / 1e9 > clock() - settle}
        report.held = sorted(recent & {a.path for a in todo})
        todo = [a for a in todo if a.path not in recent]
    todo.sort(key=lambda a: (_ORDER[a.kind], a.path))
    if dry_run:
        report.done = todo
        return report
    for rel in set(local) | set(remote):
        if local.get(rel) is not None and local.get(rel) == remote.get(rel):
            base[rel] = local[rel]
    for rel in [r for r in base if r not in local and r not in remote]:
        del base[rel]
    by_hash = {f.object_hash: f.path for f in files.values() if f.size}

    def unchanged(rel: str) -> None:
        """Raise unless the local ``rel`` is as the scan saw it."""
        seen = files.get(rel)
        try:
            st = (root / rel).lstat()
        except FileNotFoundError:
            if seen is None:
                return
            raise ChangedMeanwhile(f"{rel} was removed locally during the sync") from None
        if seen is None or (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
            raise ChangedMeanwhile(f"{rel} changed locally during the sync")

    def fetch(rel: str) -> None:
        result = download_object(client, container, prefix + rel, root / rel,
                                 workers=workers, progress=progress,
                                 seed=by_hash.get(remote.get(rel, "")),
                                 guard=lambda: unchanged(rel))
        st = (root / rel).stat()
        state.cache[rel] = [st.st_size, st.st_mtime_ns, block_size, result.object_hash]
        base[rel] = result.object_hash

    def send(rel: str, known: LocalMap | None) -> None:
        seen = remote.get(rel)
        condition = {"If-Match": f'"{seen}"'} if seen else {"If-None-Match": "*"}
        try:
            result = upload_file(client, root / rel, container, prefix + rel,
                                 content_type=guess_type(rel), headers=condition,
                                 workers=workers, progress=progress,
                                 block_params=(block_size, algorithm), local=known)
        except ClientError as e:
            if e.status in (409, 412):
                raise ChangedMeanwhile(f"{prefix + rel} changed remotely during the"
                                       " sync") from None
            raise
        base[rel] = result.object_hash

    def remove_remote(rel: str) -> None:
        try:
            client.delete(container, prefix + rel, if_match=remote.get(rel))
        except ClientError as e:
            if e.status == 404:
                return
            if e.status != 412:
                raise
        else:
            return
        try:   # a retried DELETE whose first try took effect is a 412 too
            client.object_info(container, prefix + rel)
        except ClientError as e:
            if e.status == 404:
                return
            raise
        raise ChangedMeanwhile(f"{prefix + rel} changed remotely during the sync")

    saved = clock()
    try:
        for action in todo:
            progress.action(action)
            rel = action.path
            try:
                if action.kind == UPLOAD:
                    send(rel, files[rel].local)
                elif action.kind == DOWNLOAD:
                    fetch(rel)
                elif action.kind == DELETE_LOCAL:
                    unchanged(rel)
                    (root / rel).unlink(missing_ok=True)
                    state.cache.pop(rel, None)
                    base.pop(rel, None)
                elif action.kind == DELETE_REMOTE:
                    remove_remote(rel)
                    base.pop(rel, None)
                elif action.kind == CONFLICT:
                    unchanged(rel)
                    copy = conflict_name(rel, set(local) | set(remote) | set(base))
                    (root / rel).rename(root / copy)
                    state.cache.pop(rel, None)
                    local[copy] = local.pop(rel)
                    files.pop(rel, None)
                    fetch(rel)
                    send(copy, None)
                report.done.append(action)
            except (ClientError, OSError) as e:
                report.failed.append((action, str(e)))
            if clock() - saved >= SAVE_EVERY:
                state.save(root)
                saved = clock()
    finally:
        state.save(root)
    return report


def guess_type(name: str) -> str:
    """The content type of a file by its name (``application/octet-stream``
    when unknown)."""
    ctype, _ = mimetypes.guess_type(name, strict=False)
    return ctype or "application/octet-stream"
