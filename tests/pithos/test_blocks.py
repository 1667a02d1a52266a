"""Tests for ``snfd.pithos.blocks.FileBlockStore``: the ``IBlockStore``
contract on a real filesystem, ages for garbage collection, and crash
safety."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import stat
import textwrap
import time

from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from snfd.pithos.blocks import FileBlockStore, every_name
from snfd.pithos.hashmap import EMPTY_HASH, block_hash
from tests.pithos.block_contract import SIZE, BlockStoreContract, block, run_and_kill


class StoreTestCase(unittest.TestCase):
    """A store in a temporary directory whose block ages come from a
    manual clock (far from the wall clock: ages must not depend on it)."""

    def setUp(self):
        self.root = self.mktemp()
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.store = self.make_store()

    def make_store(self, **kw) -> FileBlockStore:
        return FileBlockStore(self.root, reactor, block_size=SIZE, clock=self.clock, **kw)

    def now(self) -> float:
        return self.clock.seconds()

    def mtime(self, name: str) -> float:
        return os.stat(self.path(name)).st_mtime

    age = mtime

    def path(self, name: str) -> str:
        return os.path.join(self.root, name[0:2], name[2:4], name[4:6], name)

    def files(self) -> list[str]:
        """Every regular file under the store, relative to its root."""
        out = []
        for dirpath, _dirs, names in os.walk(self.root):
            out.extend(os.path.relpath(os.path.join(dirpath, n), self.root) for n in names)
        return sorted(out)


class ContractTests(StoreTestCase, BlockStoreContract):
    """The contract, and what is particular to files."""

    async def test_layout_and_bytes_as_given(self):
        """A block is stored at <h[0:2]>/<h[2:4]>/<h[4:6]>/<h> with its
        bytes as given, trailing zeros included."""
        data = b"abc\x00\x00\x00"
        [name] = await self.store.put([data])
        self.assertEqual(name, block_hash(b"abc"))
        with open(self.path(name), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(self.files(), [os.path.relpath(self.path(name), self.root)])

    async def test_blocks_readable_only_by_the_owner(self):
        """Under a permissive umask, a stored block file and every directory
        from the store's root down to it have no group or other
        permission bits: other local accounts read no tenant's data."""
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        self.root = self.mktemp()
        self.store = self.make_store(direct=self.store._direct)
        [name] = await self.store.put([block(7)])
        path = os.path.abspath(self.path(name))
        root = os.path.abspath(self.root)
        checked = []
        while path != os.path.dirname(root):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            self.assertEqual(mode & 0o077, 0, f"{path}: {mode:o}")
            checked.append(path)
            path = os.path.dirname(path)
        self.assertEqual(len(checked), 5)  # the file, 3 levels, the root

    def test_existing_root_is_made_private(self):
        """A store opened on an existing root open to others (an older
        node's 0755) closes it to the owner only."""
        root = self.mktemp()
        os.mkdir(root)
        os.chmod(root, 0o755)
        FileBlockStore(root, reactor, block_size=SIZE, clock=self.clock)
        self.assertEqual(stat.S_IMODE(os.stat(root).st_mode), 0o700)

    async def test_too_large(self):
        """A block larger than block_size is refused and nothing stored."""
        await self.assertFailure(self.store.put([b"x" * (SIZE + 1)]), ValueError)
        self.assertEqual(self.files(), [])

    async def test_empty_block_needs_no_io(self):
        """The empty and all-zero blocks are named EMPTY_HASH, never
        written, always present, and read as zeros."""
        names = await self.store.put([b"", bytes(10), bytes(SIZE)])
        self.assertEqual(names, [EMPTY_HASH] * 3)
        self.assertEqual(self.files(), [])
        self.assertEqual(await self.store.missing([EMPTY_HASH]), [])
        self.assertEqual(await self.store.get(EMPTY_HASH), bytes(SIZE))
        self.assertEqual(await self.store.scan("", 10), ([], None))
        self.assertEqual(await self.store.delete([EMPTY_HASH], self.now() + 100), [])

    def test_ages_without_a_reactor_are_wall_time(self):
        """A store built without a reactor or clock (as in a process of its
        own) dates blocks with the wall clock."""
        store = FileBlockStore(self.mktemp(), None, block_size=SIZE)
        before = time.time()
        name = store.put_now(b"wall")
        mtime = os.stat(os.path.join(store.path, name[0:2], name[2:4], name[4:6], name)).st_mtime
        self.assertTrue(before - 1 <= mtime <= time.time() + 1, (before, mtime))
        self.assertEqual(store.delete_now([name], before - 60), [])

    async def test_put_existing_refreshes_not_rewrites(self):
        """Putting a present block keeps its file (same inode) and resets
        its age."""
        [a] = await self.store.put([b"a"])
        self.clock.advance(3600)
        before = os.stat(self.path(a))
        await self.store.put([b"a\x00"])
        after = os.stat(self.path(a))
        self.assertEqual(after.st_ino, before.st_ino)
        self.assertEqual(after.st_size, 1)
        self.assertEqual(after.st_mtime, self.now())

    async def test_scan_pages_in_order(self):
        """scan pages through every stored name in ascending order; fewer
        than limit means the end; temporary files are never listed."""
        names = await self.store.put([block(i, 100) for i in range(150)])
        # Litter that must not appear: writes and a delete interrupted.
        directory = os.path.dirname(self.path(names[0]))
        for litter in (f".w.{'06' * 32}.x", f".d.{'07' * 32}.x"):
            with open(os.path.join(directory, litter), "wb") as f:
                f.write(b"partial")
        expected = sorted(names)
        seen: list[str] = []
        cursor: str | None = ""
        while cursor is not None:
            page, cursor = await self.store.scan(cursor, 7)
            self.assertTrue(len(page) == 7 or cursor is None)
            seen.extend(page)
        self.assertEqual(seen, expected)

    async def test_scan_after_skips(self):
        """scan starts strictly after ``after``, even when ``after`` is
        not itself stored, and honours limit."""
        names = sorted(await self.store.put([block(i, 50) for i in range(40)]))
        self.assertEqual(await self.store.scan(names[9], 5), (names[10:15], names[14]))
        between = names[20][:-1] + ("0" if names[20][-1] != "0" else "1")
        expected = [n for n in names if n > between][:3]
        self.assertEqual(await self.store.scan(between, 3), (expected, expected[-1]))
        self.assertEqual(await self.store.scan(names[-1], 5), ([], None))
        self.assertEqual((await self.store.scan("", 0))[0], [])

    async def test_concurrent_puts_of_one_block(self):
        """Many simultaneous puts of the same block all succeed and leave
        one file and no temporary ones."""
        data = block(7)
        results = await defer.gatherResults([self.store.put([data]) for _ in range(8)])
        self.assertEqual({r[0] for r in results}, {block_hash(data)})
        self.assertEqual(len(self.files()), 1)


class BufferedContractTests(ContractTests):
    """The same contract with buffered writes (no O_DIRECT)."""

    def setUp(self):
        super().setUp()
        self.store = self.make_store(direct=False)


class DirectFallbackTests(StoreTestCase):
    async def test_falls_back_when_direct_io_is_refused(self):
        """On a filesystem refusing O_DIRECT (EINVAL, as tmpfs did) blocks
        are written buffered, with nothing left behind."""
        real_open = os.open

        def refusing(path, flags, *args, **kwargs):
            if flags & getattr(os, "O_DIRECT", 0):
                real_open(path, flags & ~os.O_DIRECT, *args, **kwargs)  # created, then refused
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *args, **kwargs)

        self.patch(os, "open", refusing)
        names = await self.store.put([b"abc", block(2)])
        for data, name in zip([b"abc", block(2)], names, strict=True):
            self.assertEqual(await self.store.get(name), data + bytes(SIZE - len(data)))
        self.assertEqual(len(self.files()), 2)

    async def test_sizes_around_the_alignment(self):
        """Blocks of lengths around the direct-I/O alignment keep their
        exact length on disk."""
        store = FileBlockStore(self.mktemp(), reactor, block_size=3 * 4096)
        for length in (1, 4095, 4096, 4097, 8192, 3 * 4096):
            data = b"\x01" * length
            [name] = await store.put([data])
            path = os.path.join(store.path, name[0:2], name[2:4], name[4:6], name)
            self.assertEqual(os.path.getsize(path), length)
            self.assertEqual((await store.get(name))[:length], data)


class SweepTests(StoreTestCase):
    async def test_old_temporary_files_are_removed(self):
        """sweep_temporary removes temporary files older than the limit
        and keeps younger ones (a write may be in progress)."""
        [a] = await self.store.put([b"a"])
        directory = os.path.dirname(self.path(a))
        old = os.path.join(directory, f".w.{'04' * 32}.dead")
        young = os.path.join(directory, f".w.{'05' * 32}.live")
        for p in (old, young):
            with open(p, "wb") as f:
                f.write(b"partial")
        then = time.time() - 3600
        os.utime(old, (then, then))
        self.assertEqual(await self.store.sweep_temporary(time.time() - 60), 1)
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(young))
        self.assertEqual(await self.store.missing([a]), [])

    async def test_interrupted_delete_is_put_back(self):
        """A block left renamed aside by an interrupted delete is put back
        under its name by the sweep."""
        [a] = await self.store.put([b"a"])
        os.rename(self.path(a), os.path.join(os.path.dirname(self.path(a)), f".d.{a}.x"))
        self.assertEqual(await self.store.missing([a]), [a])
        await self.store.sweep_temporary(time.time() - 60)
        self.assertEqual(await self.store.missing([a]), [])
        self.assertEqual(len(self.files()), 1)

    async def test_delete_spares_block_refreshed_during_delete(self):
        """A block whose age is reset after delete checked it but before it
        renamed it aside is put back, not removed."""
        [a] = await self.store.put([b"a"])
        self.clock.advance(3600)
        real_rename = os.rename

        def racing_rename(src, dst):
            self.store.missing_now([a])  # a concurrent refresh of the block
            real_rename(src, dst)

        self.patch(os, "rename", racing_rename)
        self.assertEqual(self.store.delete_now([a], self.now() - 60), [])
        self.assertEqual(self.store.missing_now([a]), [])
        self.assertEqual(len(self.files()), 1)


CRASH_BLOCK = 1024 * 1024  # large enough that a kill often lands mid-write

_WRITER = textwrap.dedent("""
    import os, sys, threading
    sys.path.insert(0, sys.argv[2])
    from snfd.pithos.blocks import FileBlockStore
    from tests.pithos.test_blocks import CRASH_BLOCK, crash_block
    store = FileBlockStore(sys.argv[1], None, block_size=CRASH_BLOCK)
    lock = threading.Lock()
    counter = iter(range(int(sys.argv[3]), 10**9))
    def work():
        try:
            while True:
                with lock:
                    i = next(counter)
                name = store.put_now(crash_block(i))
                with lock:
                    sys.stdout.write(f"{i} {name}\\n")
                    sys.stdout.flush()
        except BaseException:
            os._exit(3)
    for _ in range(3):
        threading.Thread(target=work, daemon=True).start()
    threading.Event().wait()
""")


def crash_block(i: int) -> bytes:
    """Block ``i`` of the crash test: distinct, of varying length, some
    with trailing zeros."""
    seed = hashlib.sha256(str(i).encode()).digest()
    data = seed * ((CRASH_BLOCK - 8 - (i % 3) * 1000) // len(seed))
    return data + bytes(i % 5)


class CrashTests(StoreTestCase):
    def run_and_kill(self, root: str, first: int, acks_wanted: int) -> list[tuple[int, str]]:
        """Run a writer process putting blocks ``first, first + 1...``,
        SIGKILL it after ``acks_wanted`` acknowledged puts; the
        acknowledgements it printed."""
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        acks, code = run_and_kill(_WRITER, [root, repo, str(first)], acks_wanted, 60)
        self.assertEqual(code, -signal.SIGKILL)
        return acks

    async def test_kill_during_writes(self):
        """Writers killed with SIGKILL in the middle of many puts (several
        rounds on one store): every block acknowledged reads back intact,
        every file under a block name holds exactly a block of that name,
        and the sweep removes the leftovers."""
        root = self.mktemp()
        acks: list[tuple[int, str]] = []
        for round_ in range(10):
            acks += await deferToThread(self.run_and_kill, root, round_ * 1000, 12)
        store = FileBlockStore(root, reactor, block_size=CRASH_BLOCK)
        for i, name in acks:
            data = crash_block(i)
            self.assertEqual(name, block_hash(data))
            self.assertEqual(await store.get(name), data + bytes(CRASH_BLOCK - len(data)))
        names = await every_name(store)
        self.assertTrue({n for _, n in acks} <= set(names))
        for name in names:
            with open(os.path.join(root, name[0:2], name[2:4], name[4:6], name), "rb") as f:
                self.assertEqual(block_hash(f.read()), name)
        await store.sweep_temporary(time.time() + 1)
        for dirpath, _dirs, files in os.walk(root):
            self.assertEqual([f for f in files if f.startswith(".")], [], dirpath)
