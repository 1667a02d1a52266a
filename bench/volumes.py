"""Thin volumes (issue 16) beside the machine's limits measured in the same run.

Everything runs in one temporary directory: a real ``FileBlockStore``
(``blocks/``, as the node makes it) and ``VolumeStore``s over it.  Measured:

1. **Thin clone of a 10 GiB image.**  A 10 GiB image is stored as a
   Pithos-style hashmap of 2,560 entries whose blocks are only four random
   4 MiB blocks (three entries in four) and the zero block (one in four):
   what a clone costs depends on the entries, not on the blocks' content,
   and storing 10 GiB of distinct blocks would only slow the run.  Timed:
   ``mapfile.from_hashmap`` and ``VolumeStore.clone`` (median of
   ``--clones``; the first clone stores the map's block, later ones of the
   same image find it there), with ``store.counters.bytes_copied`` and the
   bytes handed to the block store for the map (and the bytes that really
   landed there).  Targets: under 50 ms, 0 bytes copied.  1b: the same
   clone into stores in use (each clone lists the store's owned objects
   to pick its epoch): the store of part 2 after its writes, and one
   beside ``--filler`` (100,000) empty files named as owned objects.
2. **NBD, 1 GiB, with ``nbdcopy``** against ``snfd.archip.nbd.NbdServerFactory``
   over a ``VolumeStore`` in a Twisted process of its own (this script with
   ``--serve``: the default reactor and thread pool, a ``FileBlockStore``
   with the node's defaults, 127.0.0.1, nothing tuned), beside
   ``qemu-nbd -t -f raw -x exp -p PORT -b 127.0.0.1`` on a raw file in the
   same directory, and the raw disk (``dd bs=4M`` of a 1 GiB file,
   ``conv=fdatasync`` for writes, page cache dropped before reads when
   root).  Reads: ``nbdcopy nbd://.../<vol> null:`` of a clone of a 1 GiB
   image of 256 distinct random blocks (bytes from the block store; also
   with ``-C 1``, one connection, as nbdcopy uses with qemu-nbd), of a
   volume holding its own objects, and of qemu-nbd's file.  Writes:
   ``nbdcopy --flush <1 GiB random file> nbd://...`` into an empty volume,
   into a clone of that image (a copy-up of every object), and into
   qemu-nbd's (new, sparse) file.  ``--rounds`` (3) rounds, snfd and
   qemu-nbd interleaved, their order alternating; medians.  Caches: the
   page cache is dropped before every run and the source file read back
   into it before writes.  Round one checks what was written by reading
   it back (SHA-256 against the source), and asks ``nbdcopy -v`` how many
   connections and threads it uses with each server.  Also: the bytes of
   map versions a write stores in the block store.
3. **First-write copy-up cost per object**: a 4 KiB ``OpenVolume.write``
   into each of ``--objects`` objects of a clone (the first write copies
   the image's 4 MiB block: page cache dropped before, and again with the
   blocks cached), of an empty volume (a new object of zeros), and again
   into the objects it now owns (also with a flush each); medians.
   Beside them: 4 MiB at the disk's write rate (a copy-up writes a whole
   object) and a 4 KiB write+fsync.
4. **100 servers from one image**: 100 ``VolumeStore.clone`` of the 10 GiB
   image's hashmap into 100 volumes of one store, directly (the compute
   test harness ``snfd.testing.compute.compute_stack`` wants a trial
   ``TestCase``: not straightforward outside trial).  4b: the same on a
   real node (``snfd.testing.cloudnode.CloudNode``: ``twistd snfd`` with
   plugins identity, pithos, archip, cyclades and ganeti-sim on a fresh
   database of the test PostgreSQL): ``--servers`` ``POST
   /compute/v2.1/servers``, one after another, of the demo image on the
   smallest demo ``ext_archipelago`` flavor (10 GiB), until all are
   ACTIVE; then the node's volume maps are read: objects owned (target
   0) and what the block store gained.  ``--no-node`` skips it.

``nbdcopy`` onto a regular file truncates it to the source's size: the
script checks that on two small files of its own at start, and writes with
``nbdcopy`` only to NBD exports.  Every process, file and port it starts
is stopped or removed at the end, also on failure.  Usage: ``python
bench/volumes.py [--quick] [--dir DIR] [--no-node]`` (``--quick``: 256 MiB,
one round, fewer clones, objects and servers, under a minute; the default
run takes about 2.5 minutes on 2 cores).  The benchmark shares the
machine's cores with the server and ``nbdcopy``, so the figures are lower
bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.threads import deferToThread

from snfd.archip import mapfile
from snfd.archip.nbd import NbdServerFactory
from snfd.archip.volumes import VolumeStore
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.hashmap import EMPTY_HASH

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
BLOCK = 4 * MiB
IMAGE_10G = 10 * GiB
CLONE_TARGET = 0.050


def say(text: str) -> None:
    """Progress, on stderr (the figures go to stdout)."""
    print(text, file=sys.stderr, flush=True)


# -- the machine's limits ------------------------------------------------------------


def drop_caches() -> bool:
    """Write back and drop the page cache if we may (root): True if dropped."""
    os.sync()
    if os.geteuid() != 0:
        return False
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def dd_rate(argv: list[str]) -> float:
    """MB/s of a dd run (from the byte count and seconds it prints)."""
    proc = subprocess.run(["dd", *argv], capture_output=True, text=True, check=True)
    m = re.search(r"(\d+) bytes .* copied, ([\d.e+-]+) s", proc.stderr)
    if not m:
        raise SystemExit(f"cannot read dd's output: {proc.stderr}")
    return int(m.group(1)) / float(m.group(2)) / 1e6


def disk_rates(directory: Path, size: int, runs: int) -> tuple[list[float], list[float]]:
    """Raw sequential (write, read) MB/s of ``size`` bytes in ``directory``,
    ``runs`` times each: dd of 4 MiB blocks, fdatasync before the write
    ends, the page cache dropped before each read (when root)."""
    target = directory / "dd.tmp"
    writes, reads = [], []
    try:
        for _ in range(runs):
            drop_caches()
            writes.append(dd_rate(["if=/dev/zero", f"of={target}", "bs=4M",
                                   f"count={size // BLOCK}", "conv=fdatasync"]))
            drop_caches()
            reads.append(dd_rate([f"if={target}", "of=/dev/null", "bs=4M"]))
            target.unlink()
    finally:
        target.unlink(missing_ok=True)
    return writes, reads


def sha256_rate(mib: int = 256) -> float:
    """MB/s of SHA-256 over 4 MiB blocks on one core."""
    block = os.urandom(BLOCK)
    start = time.perf_counter()
    for _ in range(mib // 4):
        hashlib.sha256(block).digest()
    return mib * MiB / (time.perf_counter() - start) / 1e6


def fsync_latency(directory: Path, count: int = 200) -> float:
    """Median seconds of a 4 KiB pwrite + fsync into one file."""
    data = os.urandom(4096)
    path = directory / "fsync.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for i in range(count):
            start = time.perf_counter()
            os.pwrite(fd, data, (i % 256) * 4096)
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(times)


def new_object_latency(directory: Path, count: int = 16) -> float:
    """Median seconds to make a new 4 MiB file durable under its name (write
    a temporary file, fsync, rename, fsync the directory): what a copy-up
    must do at least."""
    data = os.urandom(BLOCK)
    times = []
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            temporary, final = directory / f".obj{i}.tmp", directory / f"obj{i}.tmp"
            start = time.perf_counter()
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, final)
            os.fsync(dfd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(dfd)
        for i in range(count):
            (directory / f".obj{i}.tmp").unlink(missing_ok=True)
            (directory / f"obj{i}.tmp").unlink(missing_ok=True)
    return statistics.median(times)


def process_io(pid: int) -> dict[str, int]:
    """``/proc/<pid>/io`` (the bytes a process read and wrote)."""
    text = Path(f"/proc/{pid}/io").read_text()
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def tree_bytes(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``."""
    files = size = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                size += os.stat(os.path.join(dirpath, name)).st_size
                files += 1
    return files, size


def write_random_file(path: Path, size: int) -> str:
    """``size`` random bytes at ``path``, made durable; their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // BLOCK):
            chunk = os.urandom(BLOCK)
            digest.update(chunk)
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def read_through(path: Path) -> None:
    """Read ``path`` once (into the page cache)."""
    with open(path, "rb", buffering=0) as f:
        while f.read(BLOCK):
            pass


# -- what the volume store puts into the block store -------------------------------


class CountingBlocks:
    """A block store that counts the bytes handed to ``put`` and passes
    everything on to the real one."""

    def __init__(self, blocks: FileBlockStore):
        self._blocks = blocks
        self.block_size = blocks.block_size
        self.put_bytes = 0
        self.put_blocks = 0

    def put(self, blocks: Sequence[bytes]) -> Any:
        blocks = list(blocks)
        self.put_bytes += sum(len(b) for b in blocks)
        self.put_blocks += len(blocks)
        return self._blocks.put(blocks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blocks, name)


# -- processes ------------------------------------------------------------------------


class Children:
    """The processes this run started; ``stop_all`` ends each by its pid
    (from any thread: also when the reactor shuts down on a signal)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        with self._lock:
            proc = subprocess.Popen(argv, **kw)
            self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def stop_all(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[Any], what: str,
                   timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} does not listen on 127.0.0.1:{port}")
        time.sleep(0.05)


def start_snfd_server(children: Children, root: Path) -> tuple[subprocess.Popen[Any], int]:
    """This script with ``--serve root`` (its log: ``root/server.log``); its port."""
    with open(root / "server.log", "ab") as log:
        proc = children.start([sys.executable, os.path.abspath(__file__), "--serve",
                               str(root)], stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30.0)
    line = proc.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        children.stop(proc)
        raise SystemExit("the NBD server did not start:\n" + tail(root / "server.log"))
    return proc, int(line)


def start_qemu_nbd(children: Children, image: Path) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    with open(image.with_suffix(".log"), "ab") as log:
        proc = children.start(["qemu-nbd", "-t", "-f", "raw", "-x", "exp", "-p", str(port),
                               "-b", "127.0.0.1", str(image)],
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_listening(port, proc, "qemu-nbd")
    except BaseException:
        children.stop(proc)
        raise
    return proc, port


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def nbdcopy(source: str, destination: str, *options: str) -> float:
    """Seconds of one ``nbdcopy``; the destination is an NBD export or ``null:``
    (never a regular file: nbdcopy truncates it)."""
    if not (destination.startswith("nbd://") or destination == "null:"):
        raise ValueError(f"nbdcopy to {destination!r}: only NBD exports and null:")
    start = time.perf_counter()
    proc = subprocess.run(["nbdcopy", *options, source, destination],
                          capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"nbdcopy {source} {destination} failed:\n{proc.stderr}")
    return elapsed


def nbdcopy_plan(uri: str) -> str:
    """What ``nbdcopy -v`` says it uses to read ``uri``: connections,
    requests in flight, threads, and the size of its first read request;
    the copy is stopped once it said so."""
    proc = subprocess.Popen(["nbdcopy", "-v", uri, "null:"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, errors="replace")
    assert proc.stderr is not None
    plan, request = "?", "?"
    try:
        for line in proc.stderr:
            if line.startswith("nbdcopy: connections="):
                plan = line.removeprefix("nbdcopy: ").strip()
            found = re.search(r"nbd_aio_pread\w*: enter: .*count=(\d+)", line)
            if found:
                request = f"{int(found.group(1)) // KiB:,} KiB"
                break
        plan = f"{plan} request={request}"
    finally:
        proc.terminate()
        proc.stderr.close()
        proc.wait(30)
    return plan


def nbd_sha256(uri: str) -> str:
    """SHA-256 of an export's bytes, read with ``nbdcopy <uri> -``."""
    digest = hashlib.sha256()
    proc = subprocess.Popen(["nbdcopy", uri, "-"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(BLOCK):
            digest.update(chunk)
    finally:
        proc.stdout.close()
        if proc.wait(60) != 0:
            raise SystemExit(f"nbdcopy {uri} - failed")
    return digest.hexdigest()


def nbdcopy_truncates(directory: Path) -> bool:
    """Whether ``nbdcopy`` onto a longer regular file leaves it at the
    source's size (two small files of our own)."""
    source, victim = directory / "trunc-src", directory / "trunc-dst"
    try:
        source.write_bytes(os.urandom(MiB))
        victim.write_bytes(b"\xaa" * (2 * MiB))
        subprocess.run(["nbdcopy", str(source), str(victim)], check=True,
                       capture_output=True, timeout=60)
        return victim.stat().st_size < 2 * MiB
    finally:
        source.unlink(missing_ok=True)
        victim.unlink(missing_ok=True)


def tool_version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0] if out else None


# -- the NBD server process -----------------------------------------------------------


def serve(root: Path) -> None:
    """The NBD server over the volume store in ``root`` (``--serve``): prints
    its port on a line of stdout, runs until SIGTERM or until its parent
    is gone."""
    from twisted.internet import reactor as installed
    from twisted.internet.task import LoopingCall
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                     redirectStandardIO=False)
    reactor: Any = installed
    blocks = FileBlockStore(root / "blocks", reactor)
    store = VolumeStore(root / "volumes", blocks, reactor)
    port = reactor.listenTCP(0, NbdServerFactory(store, reactor=reactor),
                             interface="127.0.0.1")
    parent = os.getppid()

    def orphaned() -> None:
        if os.getppid() != parent:
            reactor.stop()

    LoopingCall(orphaned).start(1.0)
    print(port.getHost().port, flush=True)
    reactor.run()


# -- the run --------------------------------------------------------------------------


@dataclass
class Report:
    """Rows under section titles, printed in the titles' order."""

    sections: dict[str, list[tuple[str, str, str, str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    _current: str = ""

    def section(self, title: str) -> None:
        self._current = title
        self.sections.setdefault(title, [])

    def row(self, name: str, value: str, limit: str = "-", ratio: str = "-") -> None:
        self.sections[self._current].append(("  " + name, value, limit, ratio))

    def print(self) -> None:
        for text in self.header:
            print(text)
        print()
        head = ("figure", "value", "limit or target (same run)", "ratio")
        rows = [r for title in self.sections for r in self.sections[title]]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

        def line(r: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

        print(line(head))
        print(line(["-" * w for w in widths]))
        for title in sorted(self.sections):
            print(title)
            for r in self.sections[title]:
                print(line(r))
        if self.notes:
            print("\nnotes:")
            for n in self.notes:
                print(f"- {n}")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """The median, and the range when there are several."""
    med = fmt(statistics.median(values))
    if len(values) < 2:
        return med
    return f"{med} ({fmt(min(values))}-{fmt(max(values))})"


def mbs(value: float) -> str:
    return f"{value:,.0f} MB/s"


def ratio(value: float, limit: float) -> str:
    return f"{value / limit:.0%}" if limit else "-"


async def put_image_blocks(blocks: FileBlockStore, count: int) -> list[str]:
    """``count`` distinct random 4 MiB blocks stored; their names."""
    names: list[str] = []
    while len(names) < count:
        batch = [os.urandom(BLOCK) for _ in range(min(8, count - len(names)))]
        names.extend(await blocks.put(batch))
    return names


async def clone_times(store: VolumeStore, image: mapfile.MapV2, prefix: str,
                      count: int) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        await store.clone(f"{prefix}-{i:03d}", image)
        times.append(time.perf_counter() - start)
    return times


async def part_clone(report: Report, root: Path, blocks: FileBlockStore,
                     hashes: list[str], reactor: Any, clones: int) -> None:
    say(f"1. {clones} thin clones of a 10 GiB image ...")
    start = time.perf_counter()
    image = mapfile.from_hashmap(hashes, IMAGE_10G)
    from_hashmap = time.perf_counter() - start
    counting = CountingBlocks(blocks)
    store = VolumeStore(root / "p1", counting, reactor)  # type: ignore[arg-type]
    before = tree_bytes(root / "blocks")
    times = await clone_times(store, image, "clone", clones)
    after = tree_bytes(root / "blocks")
    later = times[1:] or times
    encoded = len(mapfile.encode(await store.info("clone-000")))
    report.section("1. thin clone of a 10 GiB image (2,560 entries)")
    report.row("mapfile.from_hashmap", ms(from_hashmap))
    report.row(f"VolumeStore.clone, median of {len(later)} (range)", spread(later, ms),
               "target 50 ms", ratio(statistics.median(later), CLONE_TARGET))
    report.row("  the first clone (stores the map block)", ms(times[0]), "target 50 ms",
               ratio(times[0], CLONE_TARGET))
    report.row("bytes copied (counters.bytes_copied)", f"{store.counters.bytes_copied:,} B",
               "target 0")
    report.row("map bytes put per clone", f"{counting.put_bytes // clones:,} B",
               f"encoded map {encoded:,} B")
    report.row(f"new bytes in the block store, {clones} clones",
               f"{after[1] - before[1]:,} B", f"{after[0] - before[0]} new block(s)")


async def part_many(report: Report, root: Path, blocks: FileBlockStore,
                    hashes: list[str], reactor: Any, servers: int) -> None:
    say(f"4. {servers} volumes cloned from one image ...")
    image = mapfile.from_hashmap(hashes, IMAGE_10G)
    counting = CountingBlocks(blocks)
    store = VolumeStore(root / "p4", counting, reactor)  # type: ignore[arg-type]
    before = tree_bytes(root / "blocks")
    start = time.perf_counter()
    times = await clone_times(store, image, "snf-vol", servers)
    total = time.perf_counter() - start
    after = tree_bytes(root / "blocks")
    owned = 0
    for name in await store.names():
        owned += sum(1 for e in (await store.info(name)).entries if e.archip)
    pointers = tree_bytes(root / "p4")
    report.section(f"4. {servers} servers' volumes from one 10 GiB image"
                   " (direct VolumeStore.clone)")
    report.row("clone, median (p90, max)",
               f"{ms(statistics.median(times))} ({ms(quantile(times, 0.9))},"
               f" {ms(max(times))})", "target 50 ms",
               ratio(statistics.median(times), CLONE_TARGET))
    report.row(f"all {servers} clones", f"{total:,.2f} s")
    report.row("total bytes copied", f"{store.counters.bytes_copied:,} B", "target 0")
    report.row("objects owned, all maps", f"{owned:,}", "target 0")
    report.row("map bytes put (all clones)", f"{counting.put_bytes:,} B")
    report.row("new bytes in the block store", f"{after[1] - before[1]:,} B",
               f"{after[0] - before[0]} new block(s): every clone's map is part 1's")
    report.row("pointer files", f"{pointers[1]:,} B", f"{pointers[0]} files")


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def part_copy_up(report: Report, root: Path, blocks: FileBlockStore,
                       image: mapfile.MapV2, reactor: Any, objects: int,
                       fsync: float, new_object: float) -> None:
    say(f"3. first writes into {objects} objects ...")
    store = VolumeStore(root / "p3", blocks, reactor)
    data = os.urandom(4 * KiB)
    objects = min(objects, len(image.entries))

    async def first_writes(name: str) -> tuple[list[float], list[float], list[float]]:
        volume = await store.open(name, writable=True)
        try:
            first, again, flushed = [], [], []
            for i in range(objects):
                start = time.perf_counter()
                await volume.write(i * BLOCK + 64 * KiB, data)
                first.append(time.perf_counter() - start)
            for i in range(objects):
                start = time.perf_counter()
                await volume.write(i * BLOCK + 128 * KiB, data)
                again.append(time.perf_counter() - start)
            for i in range(objects):
                start = time.perf_counter()
                await volume.write(i * BLOCK + 192 * KiB, data)
                await volume.flush()
                flushed.append(time.perf_counter() - start)
            return first, again, flushed
        finally:
            await volume.close()

    await store.clone("cold", image)
    await store.clone("warm", image)
    await store.create("empty", image.size)
    dropped = await deferToThread(drop_caches)
    cold, owned, owned_flushed = await first_writes("cold")
    copied = store.counters.bytes_copied
    warm, _, _ = await first_writes("warm")
    zero, _, _ = await first_writes("empty")
    report.section(f"3. first 4 KiB write per object, OpenVolume.write, median of {objects}")
    floor = f"new 4 MiB file made durable {ms(new_object)}"
    report.row("copy-up of an image block" + (", cache dropped" if dropped else ""),
               spread(cold, ms), floor, ratio(new_object, statistics.median(cold)))
    report.row("copy-up of an image block, cached", spread(warm, ms), floor,
               ratio(new_object, statistics.median(warm)))
    report.row("new object for a zero object", spread(zero, ms),
               f"4 KiB write+fsync {ms(fsync)}", ratio(fsync, statistics.median(zero)))
    report.row("write into an owned object", spread(owned, ms))
    report.row("write into an owned object + flush", spread(owned_flushed, ms),
               f"4 KiB write+fsync {ms(fsync)}", ratio(fsync, statistics.median(owned_flushed)))
    report.row("bytes copied by the cold copy-ups", f"{copied:,} B",
               f"{objects} x 4 MiB = {objects * BLOCK:,} B")
    if not dropped:
        report.notes.append("part 3: not root, the page cache was not dropped: the"
                            " 'cache dropped' copy-up read its blocks from the cache")


@dataclass
class NbdFigures:
    """MB/s of each run, bytes of map versions stored per snfd write."""

    qemu_write: list[float] = field(default_factory=list)
    snfd_write_empty: list[float] = field(default_factory=list)
    snfd_write_clone: list[float] = field(default_factory=list)
    qemu_read: list[float] = field(default_factory=list)
    snfd_read_clone: list[float] = field(default_factory=list)
    snfd_read_owned: list[float] = field(default_factory=list)
    snfd_read_one: list[float] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)
    io: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    maps_stored: list[int] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)


@dataclass
class NbdRound:
    """One round of part 2 (blocking: run in a thread)."""

    root: Path
    source: Path
    size: int
    snfd: str       # nbd://127.0.0.1:PORT of the snfd server
    server: int     # its pid
    qemu: str       # nbd://127.0.0.1:PORT/exp of this round's qemu-nbd
    index: int
    fig: NbdFigures

    def accounted(self, kind: str, run: Callable[[], float]) -> float:
        """``run()``, with the bytes the server read and wrote meanwhile
        (``rchar``/``wchar``: files and pipes, not sockets) per byte moved."""
        before = process_io(self.server)
        rate = run()
        after = process_io(self.server)
        self.fig.io.setdefault(kind, []).append(
            ((after["rchar"] - before["rchar"]) / self.size,
             (after["wchar"] - before["wchar"]) / self.size))
        return rate

    def write(self, uri: str) -> float:
        drop_caches()
        read_through(self.source)
        return self.size / nbdcopy(str(self.source), uri, "--flush") / 1e6

    def read(self, uri: str, *options: str) -> float:
        drop_caches()
        return self.size / nbdcopy(uri, "null:", *options) / 1e6

    def snfd_write(self, volume: str, kind: str, into: list[float]) -> None:
        before = tree_bytes(self.root / "blocks")[1]
        into.append(self.accounted(kind, lambda: self.write(f"{self.snfd}/{volume}")))
        self.fig.maps_stored.append(tree_bytes(self.root / "blocks")[1] - before)

    def snfd_read(self, volume: str, kind: str, into: list[float], *options: str) -> None:
        into.append(self.accounted(kind, lambda: self.read(f"{self.snfd}/{volume}", *options)))

    def writes(self) -> None:
        fig, r = self.fig, self.index
        if r % 2 == 0:
            fig.qemu_write.append(self.write(self.qemu))
        self.snfd_write(f"empty-{r}", "write, empty volume", fig.snfd_write_empty)
        self.snfd_write(f"clone-{r}", "write, clone", fig.snfd_write_clone)
        if r % 2 == 1:
            fig.qemu_write.append(self.write(self.qemu))

    def reads(self) -> None:
        fig, r = self.fig, self.index
        if r % 2 == 1:
            fig.qemu_read.append(self.read(self.qemu))
        self.snfd_read("read-clone", "read, clone", fig.snfd_read_clone)
        self.snfd_read(f"empty-{r}", "read, own objects", fig.snfd_read_owned)
        self.snfd_read("read-clone", "read, clone, -C 1", fig.snfd_read_one, "-C", "1")
        if r % 2 == 0:
            fig.qemu_read.append(self.read(self.qemu))

    def verify(self, expected: str) -> None:
        """Read back what the first round wrote (SHA-256 against the source)."""
        for uri in (f"{self.snfd}/empty-{self.index}", f"{self.snfd}/clone-{self.index}",
                    self.qemu):
            got = nbd_sha256(uri)
            name = "qemu-nbd" if uri == self.qemu else uri.rsplit("/", 1)[1]
            self.fig.verified.append(f"{name} {'ok' if got == expected else 'DIFFERS'}")


async def part_nbd(report: Report, root: Path, blocks: FileBlockStore, reactor: Any,
                   children: Children, image: mapfile.MapV2, rounds: int,
                   disk_w: list[float], disk_r: list[float]) -> tuple[int, int]:
    """Part 2; the store's (owned objects, volumes) at the end."""
    size = image.size
    store = VolumeStore(root / "volumes", blocks, reactor)
    say(f"2. NBD: a {size // MiB} MiB source file ...")
    source = root / "source.raw"
    source_sha = await deferToThread(write_random_file, source, size)
    await store.clone("read-clone", image)
    for r in range(rounds):
        await store.create(f"empty-{r}", size)
        await store.clone(f"clone-{r}", image)
    fig = NbdFigures()
    server, port = await deferToThread(start_snfd_server, children, root)
    try:
        for r in range(rounds):
            target = root / f"qemu-{r}.raw"
            with open(target, "wb") as f:
                f.truncate(size)
            qemu, qport = await deferToThread(start_qemu_nbd, children, target)
            try:
                one = NbdRound(root, source, size, f"nbd://127.0.0.1:{port}", server.pid,
                               f"nbd://127.0.0.1:{qport}/exp", r, fig)
                say(f"   round {r + 1}/{rounds}: writes ...")
                await deferToThread(one.writes)
                if r == 0:
                    fig.plans["snfd"] = await deferToThread(
                        nbdcopy_plan, f"{one.snfd}/read-clone")
                    fig.plans["qemu-nbd"] = await deferToThread(nbdcopy_plan, one.qemu)
                say(f"   round {r + 1}/{rounds}: reads ...")
                await deferToThread(one.reads)
                if r == 0:
                    say("   reading back what was written ...")
                    await deferToThread(one.verify, source_sha)
            finally:
                await deferToThread(children.stop, qemu)
                target.unlink(missing_ok=True)
    finally:
        await deferToThread(children.stop, server)
        source.unlink(missing_ok=True)
    log = tail(root / "server.log", 1_000_000)
    if "Traceback" in log:
        report.notes.append(f"the NBD server logged {log.count('Traceback')} traceback(s):\n"
                            + tail(root / "server.log"))

    label = f"{size // MiB} MiB"
    dw, dr = statistics.median(disk_w), statistics.median(disk_r)
    qw, qr = statistics.median(fig.qemu_write), statistics.median(fig.qemu_read)
    report.section(f"2. NBD with nbdcopy, {label}, median of {rounds} (range)")
    report.row("qemu-nbd read", spread(fig.qemu_read, mbs), f"disk read {mbs(dr)}",
               ratio(qr, dr))
    report.row("snfd read, clone of an image", spread(fig.snfd_read_clone, mbs),
               f"qemu-nbd read {mbs(qr)}; target 80%",
               ratio(statistics.median(fig.snfd_read_clone), qr))
    report.row("snfd read, the volume's own objects", spread(fig.snfd_read_owned, mbs),
               f"qemu-nbd read {mbs(qr)}; target 80%",
               ratio(statistics.median(fig.snfd_read_owned), qr))
    report.row("snfd read, clone, 1 connection (-C 1)", spread(fig.snfd_read_one, mbs),
               f"qemu-nbd read {mbs(qr)}; target 80%",
               ratio(statistics.median(fig.snfd_read_one), qr))
    report.row("qemu-nbd write (--flush)", spread(fig.qemu_write, mbs),
               f"disk write {mbs(dw)}", ratio(qw, dw))
    report.row("snfd write, empty volume", spread(fig.snfd_write_empty, mbs),
               f"qemu-nbd write {mbs(qw)}", ratio(statistics.median(fig.snfd_write_empty), qw))
    report.row("snfd write, clone (copy-up of all)", spread(fig.snfd_write_clone, mbs),
               f"qemu-nbd write {mbs(qw)}", ratio(statistics.median(fig.snfd_write_clone), qw))
    report.row(f"map versions stored per {label} write",
               f"{statistics.median(fig.maps_stored):,.0f} B",
               f"{size // BLOCK} saves x {len(mapfile.encode(image)):,} B map")
    for kind, pairs in fig.io.items():
        read = statistics.median(p[0] for p in pairs)
        written = statistics.median(p[1] for p in pairs)
        report.row(f"server file I/O per byte, {kind}",
                   f"read {read:.2f}, written {written:.2f}")
    if fig.verified:
        report.row("read back = source (SHA-256)", ", ".join(fig.verified))
    report.notes.append("nbdcopy -v, reading: " + "; ".join(
        f"{server}: {plan}" for server, plan in fig.plans.items())
        + " (snfd advertises CAN_MULTI_CONN, qemu-nbd does not by default; the request"
        " size follows the server's preferred block size: snfd's is its 4 MiB object)")
    encoded_10g = 32 + 128 * (IMAGE_10G // BLOCK)
    report.notes.append(
        "every first write into an object saves the whole map as a new block of the block"
        f" store: writing all of a {label} volume stores {size // BLOCK} map versions"
        f" ({statistics.median(fig.maps_stored) / 1e6:,.1f} MB measured); a 10 GiB volume"
        f" would store 2,560 x {encoded_10g:,} B = {2560 * encoded_10g / 1e9:,.2f} GB,"
        " garbage for the collection once the pointer moves on")
    owned = len(os.listdir(root / "volumes" / "objects"))
    return owned, len(await store.names())


async def run(reactor: Any, root: Path, children: Children, args: argparse.Namespace) -> None:
    # On SIGINT/SIGTERM the reactor waits for the threads running nbdcopy:
    # stopping the servers ends those at once.
    reactor.addSystemEventTrigger("before", "shutdown", children.stop_all)
    report = Report()
    size = args.size_mib * MiB
    cores = len(os.sched_getaffinity(0))
    report.header.append(f"machine: {cores} cores (nproc), {os.cpu_count()} online;"
                         f" Linux {platform.release()}; {platform.python_implementation()}"
                         f" {platform.python_version()}")
    fs = tool_version(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", str(root)])
    report.header.append(f"directory: {root} ({fs or 'filesystem unknown'});"
                         f" load average at start {os.getloadavg()[0]:.2f}")

    say("limits: disk, SHA-256, fsync ...")
    tools = {t: shutil.which(t) for t in ("nbdcopy", "qemu-nbd", "dd")}
    disk_w, disk_r = await deferToThread(disk_rates, root, size, args.rounds)
    dropped = await deferToThread(drop_caches)
    sha = await deferToThread(sha256_rate)
    fsync = await deferToThread(fsync_latency, root)
    new_object = await deferToThread(new_object_latency, root)
    report.header.append(
        f"limits: disk write {spread(disk_w, mbs)} (dd {size // MiB} MiB bs=4M,"
        f" fdatasync); disk read {spread(disk_r, mbs)}"
        + (" (page cache dropped)" if dropped else " (PAGE CACHE, not dropped: not root)"))
    report.header.append(f"limits: SHA-256 {mbs(sha)} on one core;"
                         f" 4 KiB pwrite+fsync {ms(fsync)}; a new 4 MiB file made durable"
                         f" (write, fsync, rename, fsync of the directory) {ms(new_object)}"
                         " (medians)")
    versions = [v for v in (tool_version(["nbdcopy", "--version"]),
                            tool_version(["qemu-nbd", "--version"])) if v]
    if versions:
        report.header.append("tools: " + "; ".join(versions))
    if not dropped:
        report.notes.append("not root: reads were not preceded by dropping the page cache,"
                            " so disk and NBD reads may come from memory")

    blocks = FileBlockStore(root / "blocks", reactor)
    shared = await put_image_blocks(blocks, 4)
    hashes = [EMPTY_HASH if i % 4 == 3 else shared[i % 4]
              for i in range(IMAGE_10G // BLOCK)]
    image_10g = mapfile.from_hashmap(hashes, IMAGE_10G)
    report.notes.append("the 10 GiB image of parts 1 and 4: 2,560 entries naming 4 distinct"
                        " random 4 MiB blocks (3 entries in 4) and the zero block (1 in 4);"
                        " a clone's cost depends on its entries, not on the blocks")
    await part_clone(report, root, blocks, hashes, reactor, args.clones)

    say(f"an image of {size // MiB} MiB of distinct random blocks ...")
    image = mapfile.from_hashmap(await put_image_blocks(blocks, size // BLOCK), size)
    missing = [t for t, path in tools.items() if path is None]
    if missing:
        report.section("2. NBD with nbdcopy")
        report.row("skipped", f"{', '.join(missing)} missing")
        report.notes.append(f"part 2 skipped: {', '.join(missing)} not installed"
                            " (Debian: libnbd-bin for nbdcopy, qemu-utils for qemu-nbd)")
    else:
        truncates = await deferToThread(nbdcopy_truncates, root)
        report.notes.append(
            "nbdcopy onto a longer regular file " + ("truncates it to the source's size"
                                                     if truncates else "did not truncate it")
            + " (checked on two 1-2 MiB files of this run): nothing here is written"
            " with nbdcopy but NBD exports")
        owned, volumes = await part_nbd(report, root, blocks, reactor, children, image,
                                        args.rounds, disk_w, disk_r)
        # Each clone lists the store's owned objects to choose its epoch.
        store = VolumeStore(root / "volumes", blocks, reactor)
        after = await clone_times(store, image_10g, "late", 5)
        report.section("1b. thin clone of the 10 GiB image into a store in use")
        report.row(f"after part 2 ({owned:,} owned objects, {volumes} volumes)",
                   spread(after, ms), "target 50 ms",
                   ratio(statistics.median(after), CLONE_TARGET))
    if args.filler:
        say(f"1c. a clone beside {args.filler:,} owned objects ...")
        filled = root / "p1c"
        store = VolumeStore(filled, blocks, reactor)
        await store.create("seed", BLOCK)
        await deferToThread(fill_objects, filled / "objects", args.filler)
        after = await clone_times(store, image_10g, "late", 5)
        report.section("1b. thin clone of the 10 GiB image into a store in use")
        report.row(f"beside {args.filler:,} owned objects (empty files)",
                   spread(after, ms), "target 50 ms",
                   ratio(statistics.median(after), CLONE_TARGET))
        report.notes.append(f"1b: {args.filler:,} empty files named as other volumes' owned"
                            f" objects (as many as {args.filler * 4 // 1024:,} GiB written)"
                            " stand for a store in use: each clone lists them all to pick"
                            " its epoch")
        await deferToThread(shutil.rmtree, filled, True)

    await part_copy_up(report, root, blocks, image, reactor, args.objects, fsync,
                       new_object)
    await part_many(report, root, blocks, hashes, reactor, args.servers)
    if args.node:
        await part_node(report, root, reactor, args.servers)
    report.print()


@dataclass
class NodeRun:
    """What part 4b saw on a real node."""

    state_dir: Path
    flavor: str
    latencies: list[float] = field(default_factory=list)
    posting: float = 0.0      # seconds from the first POST to the last answer
    settled: float = 0.0      # seconds from the first POST to all ACTIVE or ERROR
    active: int = 0
    errors: list[str] = field(default_factory=list)
    blocks_added: tuple[int, int] = (0, 0)


NODE_PLUGINS = "identity,pithos,archip,cyclades,ganeti-sim"
NODE_QUOTAS = (("cyclades.vm", "5000"), ("cyclades.total_cpu", "5000"),
               ("cyclades.cpu", "5000"), ("cyclades.total_ram", "4T"),
               ("cyclades.ram", "4T"), ("cyclades.disk", "8T"))


def node_servers(root: Path, servers: int, timeout: float = 600.0) -> NodeRun:
    """``servers`` ``POST /compute/v2.1/servers``, one after another, on the
    demo ``ext_archipelago`` flavor of a real node (``twistd snfd``, plugins
    ``NODE_PLUGINS``, a fresh database of the test PostgreSQL); waits until
    every server is ACTIVE or ERROR.  Blocking."""
    from snfd.testing.cloudnode import CloudNode
    from snfd.testing.postgres import create_database, drop_database

    admin, dbname, dsn = create_database("snfd_bench")
    config = ("[ganeti-sim]\nnodes = 4\nnode_memory = 65536\nnode_cpus = 64\n"
              "queue_delay = 0.05\nexec_time = 0.01\n"
              f"[archip]\nnbd_listen = tcp:{free_port()}:interface=127.0.0.1\n")
    node = CloudNode(dsn, root / "node", NODE_PLUGINS, config)
    try:
        node.start(ready_path="/compute/v2.1/flavors")
        for resource, value in NODE_QUOTAS:
            node.manage("resource-modify", resource, "--base-default", value)
        user = node.add_user("bench@example.org", "Bench")
        deadline = time.monotonic() + 120
        while True:
            status, body = node.api("GET", "/compute/v2.1/images", user.token)
            if status == 200 and body["images"]:
                image = body["images"][0]["id"]
                break
            if time.monotonic() > deadline:
                raise SystemExit("no demo image on the node:\n" + node.tail())
            time.sleep(0.2)
        status, body = node.api("GET", "/compute/v2.0/flavors/detail", user.token)
        thin = sorted((f["disk"], f["vcpus"], f["id"]) for f in body["flavors"]
                      if f.get("SNF:disk_template") == "ext_archipelago")
        if not thin:
            raise SystemExit("the node offers no ext_archipelago flavor")
        disk, cpus, flavor = thin[0]
        run = NodeRun(node.state_dir, f"{flavor} ({cpus} CPU, {disk} GiB ext_archipelago)")
        before = tree_bytes(node.state_dir / "blocks")
        ids: set[str] = set()
        first = time.perf_counter()
        for i in range(servers):
            start = time.perf_counter()
            status, body = node.api("POST", "/compute/v2.1/servers", user.token, {
                "server": {"name": f"bench-{i}", "flavorRef": str(flavor),
                           "imageRef": image}})
            run.latencies.append(time.perf_counter() - start)
            if status != 202:
                raise SystemExit(f"server create {i} answered {status}: {body!r:.300}")
            ids.add(body["server"]["id"])
        run.posting = time.perf_counter() - first
        deadline = time.monotonic() + timeout
        while True:
            status, body = node.api("GET", "/compute/v2.1/servers/detail", user.token)
            mine = [s for s in body["servers"] if s["id"] in ids] if status == 200 else []
            done = [s for s in mine if s["status"] in ("ACTIVE", "ERROR")]
            if len(done) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        run.settled = time.perf_counter() - first
        run.active = sum(1 for s in done if s["status"] == "ACTIVE")
        run.errors = [str(s.get("fault", {}).get("message", ""))[:200]
                      for s in done if s["status"] == "ERROR"]
        after = tree_bytes(node.state_dir / "blocks")
        run.blocks_added = (after[0] - before[0], after[1] - before[1])
        return run
    finally:
        node.stop()
        drop_database(admin, dbname)


async def part_node(report: Report, root: Path, reactor: Any, servers: int) -> None:
    say(f"4b. {servers} servers on a real node (ganeti-sim, ext_archipelago) ...")
    title = f"4b. {servers} servers on a real node, ext_archipelago flavor (ganeti-sim)"
    try:
        run = await deferToThread(node_servers, root, servers)
    except Exception as e:
        report.section(title)
        report.row("failed", type(e).__name__)
        report.notes.append(f"part 4b failed: {e}")
        return
    store = VolumeStore(run.state_dir / "volumes",
                        FileBlockStore(run.state_dir / "blocks", reactor), reactor)
    maps = await store.names()
    entries = owned = shared = 0
    for name in maps:
        m = await store.info(name)
        entries += len(m.entries)
        owned += sum(1 for e in m.entries if e.archip)
        shared += sum(1 for e in m.entries if not e.archip and not e.is_zero)
    objects = len(os.listdir(run.state_dir / "volumes" / "objects"))
    report.section(title)
    report.row("POST /servers, median (p90, max)",
               f"{ms(statistics.median(run.latencies))} ({ms(quantile(run.latencies, 0.9))},"
               f" {ms(max(run.latencies))})", f"flavor {run.flavor}")
    report.row(f"all {servers} POSTs, one after another", f"{run.posting:,.1f} s")
    report.row("until all ACTIVE (from the first POST)", f"{run.settled:,.1f} s",
               f"{run.active} ACTIVE, {len(run.errors)} ERROR")
    report.row("volume maps", f"{len(maps)}",
               f"{entries // max(1, len(maps)):,} entries each, {shared // max(1, len(maps))}"
               " naming image blocks")
    report.row("objects owned, all maps (files)", f"{owned:,} ({objects:,})", "target 0")
    report.row("new bytes in the block store", f"{run.blocks_added[1]:,} B",
               f"{run.blocks_added[0]} new block(s)")
    if run.errors:
        report.notes.append(f"4b: {len(run.errors)} servers in ERROR, the first: {run.errors[0]}")


def fill_objects(directory: Path, count: int) -> None:
    for i in range(count):
        name = mapfile.owned_name(f"other-{i // 2560}", 0, i % 2560)
        os.close(os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o600))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="256 MiB, one round, fewer clones and objects")
    parser.add_argument("--dir", help="where the temporary directory goes (default: $TMPDIR)")
    parser.add_argument("--size-mib", type=int, help="NBD volume size (1024; quick 256)")
    parser.add_argument("--rounds", type=int, help="NBD runs of each kind (3; quick 1)")
    parser.add_argument("--clones", type=int, help="clones timed in part 1 (11; quick 5)")
    parser.add_argument("--objects", type=int, help="objects written in part 3 (64; quick 16)")
    parser.add_argument("--servers", type=int, help="volumes in part 4 (100; quick 20)")
    parser.add_argument("--filler", type=int,
                        help="owned objects beside a clone in 1c (100000; quick 10000; 0: skip)")
    parser.add_argument("--no-node", dest="node", action="store_false",
                        help="skip part 4b (a real node: needs the test PostgreSQL)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return
    defaults = ({"size_mib": 256, "rounds": 1, "clones": 5, "objects": 16, "servers": 20,
                 "filler": 10000} if args.quick else
                {"size_mib": 1024, "rounds": 3, "clones": 11, "objects": 64, "servers": 100,
                 "filler": 100000})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.size_mib % 4 or args.size_mib <= 0:
        parser.error("--size-mib must be a positive multiple of 4")

    root = Path(tempfile.mkdtemp(prefix="snfd-bench-volumes-", dir=args.dir))
    children = Children()
    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor, root, children, args)))
    finally:
        children.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
