"""``snfd.pithos.rados_blocks.RadosBlockStore`` on a real Ceph cluster
(``snfd.testing.ceph``: a mon and an OSD on 127.0.0.1, one per test
process): the ``IBlockStore`` contract, the atomic operations it relies
on, writers killed with SIGKILL mid-write, and a cluster that stops
answering.  Each test works in a RADOS namespace of its own.  Skipped,
with the reason, where Ceph or the ``rados`` module is not installed."""

from __future__ import annotations

import calendar
import os
import signal
import textwrap
import uuid
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from snfd.pithos.blocks import StorageFailing, every_name
from snfd.pithos.hashmap import block_hash
from snfd.pithos.rados_blocks import AGE_KEY, RadosBlockStore, RadosUnavailable, open_store
from snfd.testing.ceph import ceph_unavailable, shared_cluster
from tests.archip import test_volumes
from tests.pithos import test_backend, test_backend_gc
from tests.pithos.block_contract import SIZE, BlockStoreContract, run_and_kill

POOL = "snfd-test-blocks"


class RadosTestCase(unittest.TestCase):
    """A store on the shared cluster's test pool, in a fresh namespace,
    with ages from a manual clock."""

    timeout = 300

    def setUp(self) -> None:
        reason = ceph_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        self.cluster = shared_cluster()
        self.cluster.create_pool(POOL)
        self.namespace = f"t-{uuid.uuid4().hex[:12]}"
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.store = self.open()

    def open(self, block_size: int = SIZE, **kw: Any) -> RadosBlockStore:
        store = open_store(self.cluster.conf, POOL, reactor, namespace=self.namespace,
                           clock=self.clock, **kw)
        store.block_size = block_size
        self.addCleanup(store.close)
        return store

    def age(self, name: str) -> float:
        rados = self.store._rados
        with rados.ReadOpCtx() as op:
            values, _ = self.store._ioctx.get_omap_vals_by_keys(op, (AGE_KEY,))
            self.store._ioctx.operate_read_op(op, name)
            return int(dict(values)[AGE_KEY]) / 1000


class ContractTests(RadosTestCase, BlockStoreContract):
    """The contract every block store passes."""

    async def test_bytes_as_given_and_mtime_set(self):
        """An object holds the block's bytes as given (trailing zeros
        too), and its RADOS mtime is set (not 1970)."""
        data = b"abc\x00\x00"
        [name] = await self.store.put([data])
        ioctx = self.store._ioctx
        self.assertEqual(ioctx.read(name, SIZE, 0), data)
        _size, mtime = ioctx.stat(name)
        # The store's clock (1970-01-12 here): neither 0 nor the wall clock.
        self.assertEqual(calendar.timegm(mtime), int(self.now()))

    async def test_a_present_block_is_not_sent_again(self):
        """put of a present block refreshes it without rewriting it: the
        object's version does not change."""
        [name] = await self.store.put([b"once"])
        ioctx = self.store._ioctx
        ioctx.read(name, 1, 0)
        version = ioctx.get_last_version()
        self.clock.advance(60)
        await self.store.put([b"once"])
        ioctx.read(name, 1, 0)
        self.assertEqual(ioctx.get_last_version(), version + 1)  # the age entry only
        self.assertEqual(self.age(name), self.now())

    async def test_foreign_object_without_an_age_is_adopted(self):
        """An object of a block name written by something else (no age
        entry) counts as present, gets an age, and then ages normally."""
        name = block_hash(b"foreign")
        self.store._ioctx.write_full(name, b"foreign")
        self.assertEqual(await self.store.missing([name]), [])
        self.assertEqual(self.age(name), self.now())
        self.assertEqual(await self.store.delete([name], self.now()), [])
        self.clock.advance(10)
        self.assertEqual(await self.store.delete([name], self.now()), [name])

    async def test_objects_that_are_not_blocks_are_not_listed(self):
        self.store._ioctx.write_full("not-a-block", b"x")
        [name] = await self.store.put([b"a block"])
        self.assertEqual(await every_name(self.store), [name])

    async def test_an_expired_cursor_says_so(self):
        await self.store.put([b"1", b"2"])
        _page, cursor = await self.store.scan("", 1)
        self.assertIsNotNone(cursor)
        await self.assertFailure(self.store.scan("no-such-cursor", 1), ValueError)

    async def test_namespaces_are_apart(self):
        """Two stores in two namespaces of one pool see only their own."""
        [name] = await self.store.put([b"mine"])
        self.namespace = f"t-{uuid.uuid4().hex[:12]}"
        other = self.open()
        self.assertEqual(await other.missing([name]), [name])
        self.assertEqual(await every_name(other), [])


class ConfigTests(RadosTestCase):
    def test_a_missing_pool_is_named(self):
        with self.assertRaises(RadosUnavailable) as caught:
            open_store(self.cluster.conf, "no-such-pool", reactor)
        self.assertIn("no-such-pool", str(caught.exception))

    def test_an_unreadable_conf_is_named(self):
        with self.assertRaises(RadosUnavailable) as caught:
            open_store("/nonexistent/ceph.conf", POOL, reactor, connect_timeout=2)
        self.assertIn("/nonexistent/ceph.conf", str(caught.exception))


CRASH_BLOCK = 1024 * 1024

_WRITER = textwrap.dedent("""
    import hashlib, os, sys, threading
    sys.path.insert(0, sys.argv[5])
    from snfd.pithos.rados_blocks import open_store
    from tests.pithos.test_rados_blocks import crash_block
    store = open_store(sys.argv[1], sys.argv[2], None, namespace=sys.argv[3])
    lock = threading.Lock()
    counter = iter(range(int(sys.argv[4]), 10**9))
    def work():
        try:
            while True:
                with lock:
                    i = next(counter)
                [name] = store.put_now([crash_block(i)])
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
    """Block ``i`` of the crash test: distinct, of varying length."""
    import hashlib
    seed = hashlib.sha256(str(i).encode()).digest()
    return seed * ((CRASH_BLOCK - 8 - (i % 3) * 1000) // len(seed)) + bytes(i % 5)


class CrashTests(RadosTestCase):
    def run_and_kill(self, first: int, acks_wanted: int) -> list[tuple[int, str]]:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        acks, code = run_and_kill(_WRITER, [self.cluster.conf, POOL, self.namespace,
                                            str(first), repo], acks_wanted)
        self.assertEqual(code, -signal.SIGKILL)
        return acks

    async def test_kill_during_writes(self):
        """Writers killed with SIGKILL in the middle of puts, several rounds:
        every acknowledged block reads back intact, and every object under
        a block name holds exactly a block of that name."""
        acks: list[tuple[int, str]] = []
        for round_ in range(6):
            acks += await deferToThread(self.run_and_kill, round_ * 1000, 8)
        store = self.open(block_size=CRASH_BLOCK)
        for i, name in acks:
            data = crash_block(i)
            self.assertEqual(name, block_hash(data))
            self.assertEqual(await store.get(name), data + bytes(CRASH_BLOCK - len(data)))
        names = await every_name(store)
        self.assertTrue({n for _, n in acks} <= set(names))
        for name in names:
            self.assertEqual(block_hash(store.get_now(name)), name)


class UnansweredTests(RadosTestCase):
    """A cluster that stops answering fails operations after the timeout
    (a 503), and they work again once it is back."""

    timeout = 600

    async def test_osd_down(self):
        store = self.open(op_timeout=3)
        [name] = await store.put([b"before"])
        self.cluster.kill_osd(0, signal.SIGSTOP)
        try:
            await self.assertFailure(store.put([b"while frozen"]), StorageFailing)
        finally:
            self.cluster.kill_osd(0, signal.SIGCONT)
        await deferToThread(self.cluster.wait_active_clean, 120)
        self.assertEqual((await store.get(name))[:6], b"before")
        [again] = await store.put([b"while frozen"])
        self.assertEqual(await store.missing([again]), [])

    async def test_osd_restarted(self):
        """An OSD killed and started again: what was acknowledged is there,
        and the store (connected all along) writes and reads again."""
        store = self.open(op_timeout=5)
        names = await store.put([b"one", b"two"])
        self.cluster.kill_osd(0, signal.SIGKILL)
        await deferToThread(self.cluster.start_osd, 0)
        await deferToThread(self.cluster.wait_active_clean, 120)
        for attempt in range(10):
            try:
                [three] = await store.put([b"three"])
                break
            except StorageFailing:
                if attempt == 9:
                    raise
        self.assertEqual(await store.missing([*names, three]), [])
        self.assertEqual((await store.get(names[1]))[:3], b"two")


# -- the object store's, the collection's and the volumes' tests, on RADOS ----


class OnRados:
    """Makes a test case's block store a RADOS one, in a fresh namespace
    of the shared cluster's pool."""

    def make_blocks(self, clock: Any = None) -> RadosBlockStore:
        reason = ceph_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        cluster = shared_cluster()
        cluster.create_pool(POOL)
        store = open_store(cluster.conf, POOL, reactor, clock=clock,
                           namespace=f"t-{uuid.uuid4().hex[:12]}")
        store.block_size = self.block_size  # type: ignore[attr-defined]
        self.addCleanup(store.close)  # type: ignore[attr-defined]
        return store


class BackendObjectsOnRados(OnRados, test_backend.ObjectTests):
    block_size = test_backend.BS


class GarbageCollectionOnRados(OnRados, test_backend_gc.GarbageCollectionTests):
    block_size = test_backend.BS


class VolumeClonesOnRados(OnRados, test_volumes.CloneTests):
    block_size = test_volumes.BS


class VolumeCopyOnWriteOnRados(OnRados, test_volumes.CopyOnWriteTests):
    block_size = test_volumes.BS


class VolumeSnapshotsOnRados(OnRados, test_volumes.SnapshotTests):
    block_size = test_volumes.BS
