"""The ``IBlockStore`` contract, for every driver: a mixin whose tests
run against the store a test case makes (``snfd.pithos.blocks`` in
``test_blocks``, ``snfd.pithos.rados_blocks`` in ``test_rados_blocks``).

A case provides ``self.store`` (block size ``SIZE``, ages from
``self.clock``, a ``task.Clock`` far from the wall clock), ``now()``, and
``age(name)``: the block's age as the store keeps it.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from twisted.internet import defer
from zope.interface.verify import verifyObject

from snfd.interfaces import IBlockStore
from snfd.pithos.blocks import every_name, name_of
from snfd.pithos.hashmap import EMPTY_HASH, block_hash

SIZE = 64 * 1024


def block(i: int, length: int = SIZE) -> bytes:
    """A distinct, deterministic block."""
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (length // len(seed) + 1))[:length]


def run_and_kill(script: str, args: list[str], acks_wanted: int,
                 watchdog: float = 120.0) -> tuple[list[tuple[int, str]], int | None]:
    """Run the writer ``script`` (``python -c script args...``: it prints
    ``<i> <name>`` for each block it stored), SIGKILL it at a random moment
    after ``acks_wanted`` acknowledgements; every acknowledgement it printed
    (before and as it died), and its exit status."""
    child = subprocess.Popen([sys.executable, "-c", script, *args],
                             stdout=subprocess.PIPE, text=True)
    acks: list[tuple[int, str]] = []
    timer = threading.Timer(watchdog, child.kill)  # never hang the suite
    timer.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            i, name = line.split()
            acks.append((int(i), name))
            if len(acks) >= acks_wanted:
                break
        # At a random moment, so that it often lands inside a write.
        time.sleep(random.uniform(0, 0.005))
        child.send_signal(signal.SIGKILL)
        # Whatever it printed before dying was acknowledged too.
        rest = child.stdout.read()
        acks.extend((int(i), n) for i, n in (ln.split() for ln in rest.splitlines()
                                             if len(ln.split()) == 2))
    finally:
        timer.cancel()
        if child.poll() is None:
            child.kill()
        child.wait()
    return acks, child.returncode


class BlockStoreContract:
    """Tests every ``IBlockStore`` passes (mixed into a ``TestCase``)."""

    store: Any
    clock: Any

    def now(self) -> float:
        return self.clock.seconds()

    def age(self, name: str) -> float:
        raise NotImplementedError

    def test_provides_interface(self):
        """The store provides IBlockStore with its block size."""
        verifyObject(IBlockStore, self.store)
        self.assertEqual(self.store.block_size, SIZE)

    async def test_put_then_get(self):
        """put returns the blocks' names in order; get returns each block
        right-padded with zeros to the block size."""
        blocks = [b"hello", block(1), b"x" * 100]
        names = await self.store.put(blocks)
        self.assertEqual(names, [block_hash(b) for b in blocks])
        for b, n in zip(blocks, names, strict=True):
            self.assertEqual(await self.store.get(n), b + bytes(SIZE - len(b)))

    async def test_read_a_prefix(self):
        """read returns exactly the bytes asked for: a prefix of the
        block, or the block padded with zeros as far as asked; the empty
        block costs no file; a missing block is a KeyError."""
        [name] = await self.store.put([b"hello"])
        self.assertEqual(await self.store.read(name, 3), b"hel")
        self.assertEqual(await self.store.read(name, 5), b"hello")
        self.assertEqual(await self.store.read(name, 8), b"hello\x00\x00\x00")
        self.assertEqual(await self.store.read(EMPTY_HASH, 4), bytes(4))
        with self.assertRaises(KeyError):
            await self.store.read(block_hash(b"absent"), 4)

    async def test_get_stored(self):
        """get_stored returns a block's bytes as stored, unpadded (trailing
        zeros given kept); the empty block is empty; a missing block is a
        KeyError."""
        blocks = [b"hello", b"abc\x00\x00", block(2)]
        names = await self.store.put(blocks)
        for b, n in zip(blocks, names, strict=True):
            self.assertEqual(await self.store.get_stored(n), b)
        self.assertEqual(await self.store.get_stored(EMPTY_HASH), b"")
        with self.assertRaises(KeyError):
            await self.store.get_stored(block_hash(b"absent"))

    async def test_get_absent(self):
        """get of an absent or malformed name fails with KeyError."""
        await self.assertFailure(self.store.get("ab" * 32), KeyError)
        await self.assertFailure(self.store.get("../../etc/passwd"), KeyError)
        await self.assertFailure(self.store.get(EMPTY_HASH.upper()), KeyError)

    async def test_missing(self):
        """missing lists the absent names in the order given, once each;
        malformed names are absent."""
        [a, b] = await self.store.put([b"a", b"b"])
        x, y = "01" * 32, "02" * 32
        self.assertEqual(await self.store.missing([y, a, x, y, EMPTY_HASH, b, "bad"]),
                         [y, x, "bad"])
        self.assertEqual(self.store.missing_now([x, a]), [x])

    async def test_delete_by_age(self):
        """delete removes only the named blocks older than older_than,
        ignores absent ones, and returns the names it removed."""
        old, other = await self.store.put([b"old", b"other"])
        self.clock.advance(3600)
        [young] = await self.store.put([b"young"])
        absent = "03" * 32
        removed = await self.store.delete([old, young, absent, old], self.now() - 60)
        self.assertEqual(removed, [old])
        self.assertEqual(await self.store.missing([old, young, other]), [old])
        await self.assertFailure(self.store.get(old), KeyError)
        self.assertEqual(await self.store.get(young), b"young" + bytes(SIZE - 5))

    async def test_delete_then_put_again(self):
        """A deleted block can be stored again."""
        [a] = await self.store.put([b"a"])
        self.clock.advance(3600)
        self.assertEqual(await self.store.delete([a], self.now()), [a])
        await self.store.put([b"a"])
        self.assertEqual(await self.store.missing([a]), [])

    async def test_too_large(self):
        """A block larger than block_size is refused and nothing stored."""
        await self.assertFailure(self.store.put([b"x" * (SIZE + 1)]), ValueError)
        self.assertEqual(await every_name(self.store), [])

    async def test_empty_block_needs_no_io(self):
        """The empty and all-zero blocks are named EMPTY_HASH, never
        written, always present, and read as zeros."""
        names = await self.store.put([b"", bytes(10), bytes(SIZE)])
        self.assertEqual(names, [EMPTY_HASH] * 3)
        self.assertEqual(await self.store.missing([EMPTY_HASH]), [])
        self.assertEqual(await self.store.get(EMPTY_HASH), bytes(SIZE))
        self.assertEqual(await self.store.scan("", 10), ([], None))
        self.assertEqual(await self.store.delete([EMPTY_HASH], self.now() + 100), [])

    async def test_ages_come_from_the_clock(self):
        """A block stored now has the store clock's time as its age, and
        delete compares older_than with that time (not the wall clock's)."""
        [a] = await self.store.put([b"a"])
        self.assertEqual(self.age(a), self.now())
        self.assertEqual(await self.store.delete([a], self.now()), [])
        self.clock.advance(10)
        self.assertEqual(await self.store.delete([a], self.now() - 10), [])
        self.assertEqual(await self.store.delete([a], self.now() - 9), [a])

    async def test_missing_refreshes_age(self):
        """missing (and missing_now) reset the age of the present blocks."""
        [a, b] = await self.store.put([b"a", b"b"])
        self.clock.advance(3600)
        await self.store.missing([a])
        self.store.missing_now([b])
        for n in (a, b):
            self.assertEqual(self.age(n), self.now())

    async def test_put_existing_refreshes_age(self):
        """Putting a present block resets its age and keeps its bytes."""
        [a] = await self.store.put([b"a"])
        self.clock.advance(3600)
        await self.store.put([b"a\x00"])
        self.assertEqual(self.age(a), self.now())
        self.assertEqual(await self.store.read(a, 2), b"a\x00")

    async def test_scan_pages_through_every_name_once(self):
        """scan pages through every stored name once; a page is full unless
        it is the last; the cursor of the last page is None."""
        names = await self.store.put([block(i, 100) for i in range(150)])
        seen: list[str] = []
        cursor: str | None = ""
        while cursor is not None:
            page, cursor = await self.store.scan(cursor, 7)
            self.assertTrue(len(page) == 7 or cursor is None, (len(page), cursor))
            seen.extend(page)
        self.assertEqual(sorted(seen), sorted(names))
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual((await self.store.scan("", 0))[0], [])

    async def test_concurrent_puts_of_one_block(self):
        """Many simultaneous puts of the same block all succeed and leave
        one block."""
        data = block(7)
        results = await defer.gatherResults([self.store.put([data]) for _ in range(8)])
        self.assertEqual({r[0] for r in results}, {block_hash(data)})
        self.assertEqual(await every_name(self.store), [block_hash(data)])
        self.assertEqual(await self.store.get(block_hash(data)), data)

    async def test_refresh_racing_delete_never_loses_a_refreshed_block(self):
        """Refreshes (missing) and deletions of old blocks, issued at the
        same time in both orders: a block a refresh found present is
        still there afterwards; every other one is gone."""
        names = await self.store.put([block(i, 64) for i in range(60)])
        self.clock.advance(3600)
        cutoff = self.now() - 60
        calls = []
        for i, name in enumerate(names):
            pair = [self.store.missing([name]), self.store.delete([name], cutoff)]
            calls.append(defer.gatherResults(pair if i % 2 else pair[::-1]))
        results = await defer.gatherResults(calls)
        after = set(await every_name(self.store))
        refreshed = 0
        for name, (absent, removed) in zip(names, results, strict=True):
            if absent == []:  # the refresh found it: it must have survived
                refreshed += 1
                self.assertIn(name, after)
                self.assertEqual(removed, [])
            else:
                self.assertEqual(removed, [name])
                self.assertNotIn(name, after)
        self.assertEqual(len(after), refreshed)

    def test_name_of_matches_block_hash(self):
        """name_of (the copy-free hash) agrees with hashmap.block_hash."""
        for data in (b"", b"\x00", b"a", b"a\x00", bytes(5) + b"a", block(3)):
            self.assertEqual(name_of(data), block_hash(data))
            self.assertEqual(name_of(bytearray(data)), block_hash(data))
