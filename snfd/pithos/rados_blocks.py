"""The node's block store on a Ceph RADOS pool (``IBlockStore``).

Configured by ``[pithos] block_store = rados`` (``rados_conf``,
``rados_pool``, ``rados_user``, ``rados_keyring``, ``rados_namespace``);
the filesystem store (``snfd.pithos.blocks``) stays the default.  Needs
the ``rados`` module of Debian's ``python3-rados`` (imported when a store
is opened; ``./dev`` links it into the virtualenv).

Layout: a block named ``h`` (lowercase hex SHA-256) is the RADOS object
``h`` in the pool (in the store's namespace), holding the bytes as given
(reads pad them with zeros to ``block_size``); the pool must be replicated
(an erasure-coded pool has no omap).  The all-zero block ``EMPTY_HASH``
is never written.  The block's *age* is the omap entry ``t``: the
store's clock in milliseconds, 16 decimal digits, so that the OSD's string
comparison is a comparison of times.

Every change is one compound operation, which the OSD applies atomically
and serialises per object, so races need no dance of renames:

- *refresh* (``missing``, and ``put`` of a present block): "``t`` exists"
  then set ``t``; on an absent object it fails with ``ENOENT`` and creates
  nothing;
- *write if absent* (``put``): exclusive create, the data, ``t``; a
  concurrent writer of the same block makes it fail with ``EEXIST``, and
  the block is refreshed instead.  Refreshing first means a present block's
  4 MiB are never sent;
- *delete if older* (``delete``): "``t`` < cutoff" then remove; a block
  refreshed meanwhile makes it fail with ``ECANCELED`` and stays.

``mtime`` is always passed (the binding's default is 1970).  A write is
acknowledged by the OSDs once it is on every replica's disk: durable.
``scan`` streams the pool's listing in its own (hash) order, a page at a
time; its cursor names a listing this store holds open (for
``SCAN_IDLE`` seconds), since the binding cannot resume a listing.

Threads: every ``_now`` method is synchronous and may be called from any
thread (the backend calls ``missing_now`` inside a transaction); batches
keep up to ``window`` operations in flight with librados' asynchronous
calls.  The asynchronous methods run them in the store's own pool of
``window`` threads and fire on the reactor.  A cluster that does not
answer within ``op_timeout`` seconds fails the operation
(``StorageFailing``, a 503) instead of hanging a request; a full cluster
(``ENOSPC``, ``EDQUOT``) gives ``StorageFull`` (507), as the filesystem
store does.
"""

from __future__ import annotations

import errno
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from snfd.interfaces import IBlockStore
from snfd.pithos.blocks import FULL, Block, StorageFailing, StorageFull, StorageUnreadable, name_of
from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, is_hash

log = Logger(namespace="snfd.pithos.rados_blocks")

T = TypeVar("T")

AGE_KEY = "t"
SCAN_IDLE = 600.0
"""Seconds an unfinished listing stays open after its last page."""


class RadosUnavailable(Exception):
    """The ``rados`` module cannot be imported, or the cluster or pool
    cannot be opened; ``str()`` says which and how to fix it."""


def import_rados() -> Any:
    """The ``rados`` module.  @raise RadosUnavailable: not installed."""
    try:
        import rados  # type: ignore[import-not-found]
    except ImportError as e:
        raise RadosUnavailable(
            f"the rados module cannot be imported ({e}): apt-get install python3-rados,"
            " then link /usr/lib/python3/dist-packages/rados.cpython-311-*.so into this"
            " Python's site-packages (./dev does)") from None
    return rados


def stamp(seconds: float) -> str:
    """A time as the store keeps it in ``t`` (ms, 16 digits)."""
    return f"{max(0, int(seconds * 1000)):016d}"


@implementer(IBlockStore)
class RadosBlockStore:
    """Blocks as objects of a RADOS pool.

    @param ioctx: an open ``rados.Ioctx`` on the pool (and namespace); see
        ``open_store`` to make one from the configuration.
    @param reactor: the reactor the asynchronous methods fire on (None in
        a process without one: then only the ``_now`` methods work).
    @param clock: what block ages are measured with (``seconds()``, epoch
        seconds), as for ``FileBlockStore``; default the reactor, else the
        wall clock.
    @param window: operations in flight at most, per batch, and threads.
    """

    scan_resumable = False
    """A scan's cursor names a listing held open by this object."""

    def __init__(self, ioctx: Any, reactor: Any, *, block_size: int = BLOCK_SIZE,
                 clock: Any = None, window: int = 8, rados: Any = None,
                 cluster: Any = None):
        self._rados = rados or import_rados()
        self._ioctx = ioctx
        self._cluster = cluster
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self.block_size = block_size
        self.window = window
        self.pool = ioctx.get_pool_name()
        self.namespace = ioctx.get_namespace()
        self.where = f"rados pool {ioctx.get_pool_name()}" + (
            f" namespace {ioctx.get_namespace()}" if ioctx.get_namespace() else "")
        self._pool = ThreadPool(minthreads=0, maxthreads=window,
                                name=f"rados-{ioctx.get_pool_name()}")
        self._pool.start()
        if reactor is not None:  # else only the _now methods are used
            reactor.addSystemEventTrigger("during", "shutdown", self.close)
        self._listings: dict[str, tuple[Iterator[Any], float]] = {}
        self._listings_lock = threading.Lock()
        self._cursor_ids = itertools.count(1)

    def close(self) -> None:
        """Stop the threads and close the pool (and the cluster handle, if
        the store opened it)."""
        if self._pool is not None:
            self._pool.stop()
            self._pool = None  # type: ignore[assignment]
            self._ioctx.close()
            if self._cluster is not None:
                self._cluster.shutdown()

    # -- IBlockStore ----------------------------------------------------------

    def put(self, blocks: Iterable[Block]) -> Any:
        blocks = list(blocks)
        return self._in_thread(self.put_now, blocks)

    def put_hashed(self, pairs: Iterable[tuple[str, Block]]) -> Any:
        """Like ``put`` for blocks whose names the caller computed (trusted)."""
        pairs = list(pairs)
        return self._in_thread(self.store_now, pairs)

    def get(self, name: str) -> Any:
        return self.read(name, self.block_size)

    def read(self, name: str, length: int) -> Any:
        if name == EMPTY_HASH:
            from twisted.internet import defer
            return defer.succeed(bytes(length))
        return self._in_thread(self.get_now, name, length)

    def get_stored(self, name: str) -> Any:
        return self._in_thread(self.get_stored_now, name)

    def missing(self, names: Iterable[str]) -> Any:
        names = list(names)
        return self._in_thread(self.missing_now, names)

    def delete(self, names: Iterable[str], older_than: float) -> Any:
        names = list(names)
        return self._in_thread(self.delete_now, names, older_than)

    def scan(self, cursor: str, limit: int) -> Any:
        return self._in_thread(self.scan_now, cursor, limit)

    def sweep_temporary(self, older_than: float) -> Any:
        """Nothing to sweep: a write is one atomic operation, no crash
        leaves a part of one behind."""
        from twisted.internet import defer
        return defer.succeed(0)

    # -- synchronous, any thread ---------------------------------------------

    def put_now(self, blocks: Iterable[Block]) -> list[str]:
        pairs = []
        for block in blocks:
            if len(block) > self.block_size:
                raise ValueError(f"a block of {len(block)} bytes is larger than"
                                 f" {self.block_size}")
            pairs.append((name_of(block), block))
        return self.store_now(pairs)

    def store_now(self, pairs: Iterable[tuple[str, Block]]) -> list[str]:
        """Store each ``(name, block)`` unless present (then refresh it);
        the names, in order, once all are durable."""
        pairs = list(pairs)
        wanted = {n: b for n, b in pairs if n != EMPTY_HASH}
        absent = self.missing_now(wanted)
        now = self._now()

        def create(op: Any, name: str) -> None:
            op.new(self._rados.LIBRADOS_CREATE_EXCLUSIVE)
            op.write_full(bytes(wanted[name]))
            self._ioctx.set_omap(op, (AGE_KEY,), (stamp(now),))
        results = self._batch(absent, create, now)
        raced = [n for n, rv in zip(absent, results, strict=True) if rv == -errno.EEXIST]
        self._check(absent, results, allowed=(-errno.EEXIST,), writing=True)
        if raced:  # written by another writer just now: make it ours too
            self.missing_now(raced)
        return [n for n, _ in pairs]

    def get_now(self, name: str, length: int | None = None) -> bytes:
        """The first ``length`` bytes (default ``block_size``) of block
        ``name``, padded with zeros.  @raise KeyError: absent."""
        length = self.block_size if length is None else length
        if name == EMPTY_HASH:
            return bytes(length)
        data = self._read_now(name, length)
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    def get_stored_now(self, name: str) -> bytes:
        """``get_stored`` run in the calling thread."""
        if name == EMPTY_HASH:
            return b""
        return self._read_now(name, self.block_size)

    def _read_now(self, name: str, length: int) -> bytes:
        """At most the first ``length`` bytes of the object ``name``."""
        if not is_hash(name):
            raise KeyError(name)
        try:
            data = self._ioctx.read(name, length, 0)
        except self._rados.ObjectNotFound:
            raise KeyError(name) from None
        except self._rados.Error as e:
            if isinstance(e, self._rados.TimedOut):
                self._refresh_map()
            raise StorageUnreadable(_os_error(e, self.where)) from None
        return bytes(data)

    def missing_now(self, names: Iterable[str]) -> list[str]:
        """The absent ones of ``names`` (once each, in order); the present
        ones refreshed."""
        wanted = [n for n in dict.fromkeys(names) if n != EMPTY_HASH]
        valid = [n for n in wanted if is_hash(n)]
        now = self._now()

        def refresh(op: Any, name: str) -> None:
            op.omap_cmp(AGE_KEY, "0", self._rados.LIBRADOS_CMPXATTR_OP_GT)
            self._ioctx.set_omap(op, (AGE_KEY,), (stamp(now),))
        results = self._batch(valid, refresh, now)
        self._check(valid, results, allowed=(-errno.ENOENT, -errno.ECANCELED), writing=True)
        # ECANCELED: present without an age (not written by this store):
        # give it one, so that it ages like the others.
        foreign = [n for n, rv in zip(valid, results, strict=True) if rv == -errno.ECANCELED]
        if foreign:
            def adopt(op: Any, name: str) -> None:
                self._ioctx.set_omap(op, (AGE_KEY,), (stamp(now),))
            self._batch(foreign, adopt, now)
        gone = {n for n, rv in zip(valid, results, strict=True) if rv == -errno.ENOENT}
        return [n for n in wanted if n in gone or not is_hash(n)]

    def delete_now(self, names: Iterable[str], older_than: float) -> list[str]:
        """Remove those of ``names`` whose age is before ``older_than``."""
        wanted = [n for n in dict.fromkeys(names) if n != EMPTY_HASH and is_hash(n)]
        cutoff = stamp(older_than)

        def remove(op: Any, name: str) -> None:
            op.omap_cmp(AGE_KEY, cutoff, self._rados.LIBRADOS_CMPXATTR_OP_LT)
            op.remove()
        results = self._batch(wanted, remove, self._now())
        self._check(wanted, results, allowed=(-errno.ENOENT, -errno.ECANCELED), writing=True)
        return [n for n, rv in zip(wanted, results, strict=True) if rv == 0]

    def scan_now(self, cursor: str, limit: int) -> tuple[list[str], str | None]:
        """A page of the pool's block names in the pool's order (see
        ``IBlockStore.scan``)."""
        now = time.monotonic()
        with self._listings_lock:
            for key, (_, used) in list(self._listings.items()):
                if now - used > SCAN_IDLE:
                    del self._listings[key]
            if cursor:
                try:
                    listing, _ = self._listings.pop(cursor)
                except KeyError:
                    raise ValueError(f"the scan cursor {cursor!r} is unknown or expired;"
                                     " start again") from None
            else:
                listing = iter(self._ioctx.list_objects())
        names: list[str] = []
        try:
            while len(names) < limit:
                try:
                    obj = next(listing)
                except StopIteration:
                    return names, None
                if is_hash(obj.key):
                    names.append(obj.key)
        except self._rados.Error as e:
            raise StorageUnreadable(_os_error(e, self.where)) from None
        key = f"{next(self._cursor_ids)}"
        with self._listings_lock:
            self._listings[key] = (listing, time.monotonic())
        return names, key

    # -- helpers ----------------------------------------------------------------

    def _batch(self, names: list[str], build: Callable[[Any, str], None],
               now: float) -> list[int]:
        """Run one compound write operation per name (``build`` fills it), up
        to ``window`` in flight; their return values (0 or ``-errno``)."""
        try:
            return write_batch(self._ioctx, names, build, self.window, int(now))
        except self._rados.Error as e:
            raise StorageFailing(_os_error(e, self.where)) from None

    def _check(self, names: list[str], results: list[int], allowed: tuple[int, ...],
               writing: bool) -> None:
        for name, rv in zip(names, results, strict=True):
            if rv == 0 or rv in allowed:
                continue
            error = OSError(-rv, f"{self.where}: block {name}: {_strerror(-rv)}")
            if -rv == errno.ETIMEDOUT:
                self._refresh_map()
            if -rv in FULL:
                raise StorageFull(error)
            raise StorageFailing(error) if writing else StorageUnreadable(error)

    def _refresh_map(self) -> None:
        """After a timeout: fetch the newest OSD map now.  librados learns
        of a restarted OSD lazily, and until it does, every operation on
        that OSD's placement groups goes to the dead address and times
        out (measured: 12-13 s)."""
        if self._cluster is None:
            return
        try:
            self._cluster.wait_for_latest_osdmap()
        except self._rados.Error as e:
            log.warn("{where}: cannot fetch the OSD map: {e}", where=self.where, e=e)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> Any:
        if self._pool is None:
            raise RuntimeError(f"{self.where}: the block store is closed")
        return deferToThreadPool(self._reactor, self._pool, fn, *args)

    def _now(self) -> float:
        return self._clock.seconds() if self._clock is not None else time.time()


def write_batch(ioctx: Any, names: Sequence[str], build: Callable[[Any, str], None],
                window: int, mtime: int) -> list[int]:
    """Run one compound write operation on each object of ``names``
    (``build(op, name)`` fills it) through ``ioctx``, ``window`` at most in
    flight, each with ``mtime``; their return values (0 or ``-errno``), in
    order.  A librados error submitting them propagates, once every
    operation already submitted has completed (none is released in flight)."""
    results: list[int] = []
    for start in range(0, len(names), window):
        ops: list[Any] = []
        comps: list[Any] = []
        try:
            for name in names[start:start + window]:
                ops.append(ioctx.create_write_op())
                build(ops[-1], name)
                comps.append(ioctx.operate_aio_write_op(ops[-1], name, mtime=mtime))
            for comp in comps:
                comp.wait_for_complete()
                results.append(comp.get_return_value())
        finally:
            for comp in comps:
                comp.wait_for_complete()
            for op in ops:
                ioctx.release_write_op(op)
    return results


def _strerror(code: int) -> str:
    import os
    return os.strerror(code)


def _os_error(error: Exception, where: str) -> OSError:
    code = getattr(error, "errno", None) or errno.EIO
    code = abs(code)
    return OSError(code, f"{where}: {error}")


def connect(conf: str, *, user: str = "admin", keyring: str = "",
            op_timeout: float = 30.0, connect_timeout: float = 10.0) -> tuple[Any, Any]:
    """``(rados module, connected cluster handle)`` for the cluster that
    ``conf`` (a ``ceph.conf``) describes, as ``client.<user>``; operations
    fail after ``op_timeout`` seconds instead of hanging.

    @raise RadosUnavailable: no ``rados`` module, or the cluster
        unreachable or refusing the key.
    """
    rados = import_rados()
    # Whole seconds: librados refuses "30.0".
    seconds = str(max(1, round(op_timeout)))
    settings = {"rados_osd_op_timeout": seconds, "rados_mon_op_timeout": seconds}
    if keyring:
        settings["keyring"] = keyring
    try:
        cluster = rados.Rados(conffile=conf, name=f"client.{user}", conf=settings)
        cluster.connect(timeout=int(connect_timeout))
    except (rados.Error, OSError) as e:
        raise RadosUnavailable(f"cannot connect to the cluster of {conf} as client.{user}:"
                               f" {e}") from None
    return rados, cluster


def open_store(conf: str, pool: str, reactor: Any, *, user: str = "admin",
               keyring: str = "", namespace: str = "", clock: Any = None,
               op_timeout: float = 30.0, connect_timeout: float = 10.0,
               window: int = 8) -> RadosBlockStore:
    """Connect to the cluster that ``conf`` (a ``ceph.conf``) describes as
    ``client.<user>`` and open the block store on ``pool``/``namespace``.

    @raise RadosUnavailable: no ``rados`` module, the cluster unreachable
        or refusing the key, or no such pool (operators create pools: a
        replicated one, ``ceph osd pool create <pool>`` and ``ceph osd pool
        application enable <pool> synnefo``).
    """
    rados, cluster = connect(conf, user=user, keyring=keyring, op_timeout=op_timeout,
                             connect_timeout=connect_timeout)
    try:
        if not cluster.pool_exists(pool):
            raise RadosUnavailable(f"the cluster of {conf} has no pool {pool!r}")
        ioctx = cluster.open_ioctx(pool)
        ioctx.set_namespace(namespace)
    except BaseException:
        cluster.shutdown()
        raise
    return RadosBlockStore(ioctx, reactor, clock=clock, window=window, rados=rados,
                           cluster=cluster)


__all__ = ["AGE_KEY", "RadosBlockStore", "RadosUnavailable", "connect", "import_rados",
           "open_store", "stamp", "write_batch"]
