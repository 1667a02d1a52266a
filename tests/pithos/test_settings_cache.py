"""The per-node cache of container settings (``snfd.pithos.settings_cache``):
what it promises on one node and across nodes sharing one database, the
races of reads with notifications, listener gaps, and what it spares an
owner's object request (docs/plans/container-settings-cache.md)."""

from __future__ import annotations

import threading
from typing import Any

import attrs
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from snfd import errors
from snfd.db.notify import Listener
from snfd.pithos.backend import Backend
from snfd.pithos.model import ContainerSettings, Permissions
from snfd.pithos.settings_cache import SettingsCache
from snfd.pithos.store import CONTAINERS_CHANNEL
from snfd.testing.postgres import query, recorded_runs, started_pool
from tests.pithos.test_api import StackCase
from tests.pithos.test_backend import ALICE, BOB, BackendTestCase

PATH = f"{ALICE}/c"
SETTINGS_READ = "pithos.container_settings"


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait, on the reactor, until ``predicate()`` holds."""
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError("condition not reached")
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


# -- the cache alone ------------------------------------------------------------

class CacheTests(unittest.TestCase):
    """``SettingsCache`` with reads the test holds and releases."""

    def setUp(self):
        self.usable = True
        self.cache = SettingsCache(usable=lambda: self.usable, max_entries=2)
        self.reads: list[defer.Deferred] = []

    def read(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.reads.append(d)
        return d

    def get(self, path: str = "a/c") -> defer.Deferred:
        return defer.ensureDeferred(self.cache.get(path, self.read))

    def test_kept_and_answered(self):
        """A read's answer is kept and answered without reading; an
        absent container (``None``) too."""
        first = self.get()
        self.reads[0].callback("settings")
        self.assertEqual(self.successResultOf(first), "settings")
        self.assertEqual(self.successResultOf(self.get()), "settings")
        self.get("a/gone")
        self.reads[1].callback(None)
        self.assertIsNone(self.successResultOf(self.get("a/gone")))
        self.assertEqual(len(self.reads), 2)

    def test_invalidated_during_read_not_kept(self):
        """A read in flight when its key is invalidated answers what it
        read but does not keep it; another key's reads are unaffected."""
        held, other = self.get("a/c"), self.get("a/d")
        self.cache.invalidate("a/c")
        self.reads[0].callback("old")
        self.reads[1].callback("d")
        self.assertEqual((self.successResultOf(held), self.successResultOf(other)),
                         ("old", "d"))
        self.assertNotIn("a/c", self.cache)
        self.assertIn("a/d", self.cache)

    def test_overlapping_reads(self):
        """Of two reads of a key, the one begun after an invalidation keeps
        its answer; the one begun before does not, even finishing last."""
        before = self.get()
        self.cache.invalidate("a/c")
        after = self.get()
        self.reads[1].callback("new")
        self.reads[0].callback("old")
        self.assertEqual((self.successResultOf(before), self.successResultOf(after)),
                         ("old", "new"))
        self.assertEqual(self.successResultOf(self.get()), "new")

    def test_cleared_during_read_not_kept(self):
        """A gap (``clear``) while a read is in flight: nothing kept."""
        held = self.get()
        self.cache.clear()
        self.reads[0].callback("old")
        self.successResultOf(held)
        self.assertEqual(len(self.cache), 0)

    def test_not_usable(self):
        """While not usable the cache answers nothing from memory and keeps
        nothing read meanwhile."""
        self.get()
        self.reads[0].callback("kept")
        self.usable = False
        self.get()
        self.assertEqual(len(self.reads), 2)
        self.reads[1].callback("fresh")
        self.usable = True
        self.assertEqual(self.successResultOf(self.get()), "kept")

    def test_failed_read(self):
        """A failed read keeps nothing and leaves no read in flight."""
        d = self.get()
        self.reads[0].errback(errors.ServiceUnavailable("down"))
        self.failureResultOf(d, errors.ServiceUnavailable)
        self.assertEqual(len(self.cache), 0)
        self.get()
        self.reads[1].callback("up")
        self.assertIn("a/c", self.cache)

    def test_bounded(self):
        """At most ``max_entries``, the least recently used dropped."""
        for i, path in enumerate(["a/1", "a/2"]):
            self.get(path)
            self.reads[i].callback(path)
        self.get("a/1")  # used: a/2 is now the oldest
        self.get("a/3")
        self.reads[2].callback("a/3")
        self.assertEqual([p in self.cache for p in ("a/1", "a/2", "a/3")],
                         [True, False, True])


# -- on real PostgreSQL ---------------------------------------------------------

@attrs.define
class Node:
    """A Backend as one snfd node holds it: its own pool, cache and
    listener; ``delivered`` lists the payloads its listener handed on."""

    backend: Backend
    cache: SettingsCache
    listener: Listener | None
    db: Any
    delivered: list[str]

    async def settings(self, container: str = "c") -> ContainerSettings | None:
        return await self.backend.container_settings(ALICE, container)


class NodesCase(BackendTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        await self.container()

    async def node(self, listening: bool = True) -> Node:
        """A node; ``listening=False``: a cache that answers although no
        notification ever reaches it (only the node's own writes
        invalidate it)."""
        db = started_pool(self, self.dsn)
        delivered: list[str] = []
        listener: Listener | None = None
        if not listening:
            cache = SettingsCache(usable=lambda: True)
        else:
            box: list[Listener] = []
            cache = SettingsCache(usable=lambda: box[0].listening)

            def deliver(payload: str) -> None:
                delivered.append(payload)
                cache.invalidate(payload)

            listener = Listener(reactor, self.dsn, CONTAINERS_CHANNEL, deliver, cache.clear)
            box.append(listener)
            listener.start()
            self.addCleanup(listener.stop)
            await until(lambda: box[0].listening)
        backend = Backend(db, self.blocks, None, self.clock, settings=cache)
        return Node(backend, cache, listener, db, delivered)

    async def cached(self, node: Node, container: str = "c") -> ContainerSettings | None:
        """Read ``container``'s settings on ``node`` twice; the second is
        answered from memory (no database interaction)."""
        await node.settings(container)
        runs = recorded_runs(self, node.db)
        found = await node.settings(container)
        self.assertEqual(runs, [], "a cached read reached the database")
        return found

    async def delivered(self, node: Node, path: str, change: Any) -> None:
        """Run ``change`` (a coroutine) and wait until ``node`` has been
        told of ``path``."""
        node.delivered.clear()
        await change
        await until(lambda: path in node.delivered)


class ContractTests(NodesCase):
    """The cache never answers after a change has committed and its
    notification has been delivered."""

    async def test_changes_on_another_node(self):
        """Metadata, policy, sharing, deletion and creation on node B are
        seen by node A once their notification reached it."""
        a, b = await self.node(), await self.node()
        changes = [
            (lambda: b.backend.update_container(ALICE, ALICE, "c", {"X-Container-Meta-A": "1"},
                                                False, None),
             lambda s: s.meta.get("X-Container-Meta-A") == "1"),
            (lambda: b.backend.update_container(ALICE, ALICE, "c", None, False,
                                                {"versioning": "none"}),
             lambda s: s.policy.versioning == "none"),
            (lambda: b.backend.update_container(ALICE, ALICE, "c", None, False, None,
                                                Permissions(read=(BOB,))),
             lambda s: s.sharing == Permissions(read=(BOB,))),
            (lambda: b.backend.delete_container(ALICE, ALICE, "c"), lambda s: s is None),
            (lambda: b.backend.put_container(ALICE, ALICE, "c", {}, {"X-Container-Meta-B": "2"}),
             lambda s: s is not None and s.meta == {"X-Container-Meta-B": "2"}),
        ]
        for change, seen in changes:
            before = await self.cached(a)
            self.assertFalse(seen(before))
            await self.delivered(a, PATH, change())
            self.assertTrue(seen(await a.settings()))

    async def test_writers_outside_the_backend(self):
        """Triggers tell of any writer's change (``snf-manage``, the
        collector): here plain SQL on each table of the settings."""
        a = await self.node()
        node = f"(SELECT node FROM pithos_nodes WHERE path = '{PATH}')"
        statements = [
            (f"INSERT INTO pithos_node_meta (node, key, value) VALUES ({node}, 'K', 'v')",
             lambda s: s.meta.get("K") == "v"),
            (f"UPDATE pithos_node_meta SET value = 'w' WHERE node = {node} AND key = 'K'",
             lambda s: s.meta.get("K") == "w"),
            (f"DELETE FROM pithos_node_meta WHERE node = {node} AND key = 'K'",
             lambda s: "K" not in s.meta),
            (f"INSERT INTO pithos_policy (node, key, value) VALUES ({node}, 'quota', '7')",
             lambda s: s.policy.quota == 7),
            (f"DELETE FROM pithos_policy WHERE node = {node} AND key = 'quota'",
             lambda s: s.policy.quota == 0),
            (f"INSERT INTO pithos_permissions (path, access, member) VALUES ('{PATH}', 0, '*')",
             lambda s: s.sharing == Permissions(read=("*",))),
            (f"DELETE FROM pithos_permissions WHERE path = '{PATH}'",
             lambda s: s.sharing is None),
        ]
        for sql, seen in statements:
            before = await self.cached(a)
            self.assertFalse(seen(before), sql)
            await self.delivered(a, PATH, defer.ensureDeferred(self.sql(sql)))
            self.assertTrue(seen(await a.settings()), sql)

    async def sql(self, statement: str) -> None:
        from twisted.internet import threads

        await threads.deferToThread(query, self.dsn, statement)

    async def test_objects_and_accounts_tell_nothing(self):
        """Object writes (statistics, object sharing) and account changes
        send no notification: the cached settings stay."""
        a, b = await self.node(), await self.node()
        await self.cached(a)
        await self.backend.put_container(ALICE, ALICE, "d", {}, {})
        self.backend = b.backend
        await self.put("o", b"data", permissions=Permissions(read=(BOB,)))
        await b.backend.update_object(ALICE, ALICE, "c", "o", None, False, Permissions())
        await b.backend.delete_object(ALICE, ALICE, "c", "o")
        await b.backend.update_account(ALICE, ALICE, {"X-Account-Meta-A": "1"}, False, None,
                                       Permissions(read=(BOB,)))
        # A change of another container, told after the writes above.
        await self.delivered(a, f"{ALICE}/d", b.backend.update_container(
            ALICE, ALICE, "d", {"X-Container-Meta-A": "1"}, False, None))
        self.assertEqual(a.delivered, [f"{ALICE}/d"])
        await self.cached(a)
        runs = recorded_runs(self, a.db)
        await a.settings()
        self.assertEqual(runs, [])


class ReadYourWritesTests(NodesCase):
    """A node's own change is seen by its next read with no notification
    delivered: each ``Backend`` method that changes settings drops them."""

    async def test_own_changes(self):
        a = await self.node(listening=False)
        changes = [
            (lambda: a.backend.update_container(ALICE, ALICE, "c", {"X-Container-Meta-A": "1"},
                                                False, None),
             lambda s: s.meta.get("X-Container-Meta-A") == "1"),
            (lambda: a.backend.put_container(ALICE, ALICE, "c", {}, {"X-Container-Meta-B": "2"}),
             lambda s: s.meta.get("X-Container-Meta-B") == "2"),
            (lambda: a.backend.update_container(ALICE, ALICE, "c", None, False,
                                                {"versioning": "none"}),
             lambda s: s.policy.versioning == "none"),
            (lambda: a.backend.update_container(ALICE, ALICE, "c", None, False, None,
                                                Permissions(read=(BOB,))),
             lambda s: s.sharing == Permissions(read=(BOB,))),
            (lambda: a.backend.delete_container(ALICE, ALICE, "c"), lambda s: s is None),
            (lambda: a.backend.put_container(ALICE, ALICE, "c", {}, {}),
             lambda s: s is not None and s.meta == {}),
        ]
        for change, seen in changes:
            self.assertFalse(seen(await self.cached(a)))
            await change()
            self.assertTrue(seen(await a.settings()))

    async def test_failed_change(self):
        """A change that fails drops the settings too (it may have
        committed before failing to answer)."""
        a = await self.node(listening=False)
        await self.cached(a)
        await self.fails(errors.Forbidden, a.backend.update_container(
            BOB, ALICE, "c", {"X-Container-Meta-A": "1"}, False, None))
        self.assertNotIn(PATH, a.cache)


class InFlightTests(NodesCase):
    async def test_read_held_across_a_notification(self):
        """A read that has read, held in its thread while a change's
        notification is delivered, answers what it read but keeps
        nothing: the next read sees the change."""
        a, b = await self.node(), await self.node()
        selected, release = threading.Event(), threading.Event()
        original = a.db.read

        def held(name: str, interaction: Any, *args: Any, **kw: Any) -> Any:
            def run(txn: Any, *a: Any, **k: Any) -> Any:
                found = interaction(txn, *a, **k)
                selected.set()
                release.wait(10)
                return found
            return original(name, run if name == SETTINGS_READ else interaction, *args, **kw)

        a.db.read = held
        reading = defer.ensureDeferred(a.settings())
        await until(selected.is_set)
        await self.delivered(a, PATH, b.backend.update_container(
            ALICE, ALICE, "c", {"X-Container-Meta-A": "1"}, False, None))
        release.set()
        stale = await reading
        a.db.read = original
        assert stale is not None
        self.assertNotIn("X-Container-Meta-A", stale.meta)
        self.assertNotIn(PATH, a.cache)
        fresh = await a.settings()
        assert fresh is not None
        self.assertEqual(fresh.meta.get("X-Container-Meta-A"), "1")


class GapTests(NodesCase):
    async def test_nothing_answered_while_disconnected(self):
        """While its listener is stopped a node reads every time (a change
        made meanwhile is seen, nothing is kept); the reconnection clears
        what was cached before."""
        a, b = await self.node(), await self.node()
        await self.cached(a)
        assert a.listener is not None
        a.listener.stop()
        await b.backend.update_container(ALICE, ALICE, "c", {"X-Container-Meta-A": "1"},
                                         False, None)
        for _ in range(2):
            runs = recorded_runs(self, a.db)
            seen = await a.settings()
            assert seen is not None
            self.assertEqual((runs, seen.meta), ([SETTINGS_READ], {"X-Container-Meta-A": "1"}))
        a.listener.start()
        await until(lambda: a.cache.answers)
        self.assertEqual(len(a.cache), 0)
        seen = await self.cached(a)
        assert seen is not None
        self.assertEqual(seen.meta, {"X-Container-Meta-A": "1"})

    async def test_connection_lost(self):
        """A listener whose connection is killed clears the cache, answers
        nothing until it is back, and caches again then."""
        a = await self.node()
        await self.cached(a)
        await self.sql_terminate_listeners()
        await until(lambda: not a.cache.answers)
        self.assertEqual(len(a.cache), 0)
        await until(lambda: a.cache.answers)
        await self.cached(a)

    async def sql_terminate_listeners(self) -> None:
        from twisted.internet import threads

        await threads.deferToThread(
            query, self.dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'snfd-listen' AND datname = current_database()")


# -- what an object request reads -------------------------------------------------

class ObjectRequestTests(StackCase):
    """Over HTTP: the node's own cache serves the filters."""

    async def _setUp(self):
        await super()._setUp()
        await until(lambda: self.stack.backend.settings.answers)

    async def test_owner_object_requests_read_no_settings(self):
        """Once cached, an owner's object GET, HEAD, PUT and DELETE read no
        container from the database."""
        await self.container("c")
        await self.put("/c/o")
        await self.call("GET", "/c/o")
        runs = recorded_runs(self, self.stack.db)
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            r = await self.call(method, "/c/o", body=b"new" if method == "PUT" else None,
                                headers={"Content-Type": "text/plain"})
            self.assertLess(r.code, 300, (method, r.body))
        self.assertEqual([n for n in runs if n in (SETTINGS_READ, "pithos.container")], [])

    async def test_quota_reads_usage_afresh(self):
        """A container with a Swift quota has its usage read for each
        upload (one read); the cached settings never stand for it."""
        await self.container("c", **{"X-Container-Meta-Quota-Bytes": "10"})
        await self.put("/c/a", b"x" * 6)
        runs = recorded_runs(self, self.stack.db)
        self.assertFault(await self.call("PUT", "/c/b", body=b"y" * 6), 413)
        self.assertEqual([n for n in runs if n in (SETTINGS_READ, "pithos.container")],
                         ["pithos.container"])
        await self.put("/c/b", b"y" * 4)

    async def test_own_change_seen_at_once(self):
        """A container change is applied to the very next object request
        on the node that made it (CORS rules here)."""
        await self.container("c")
        await self.put("/c/o")
        origin = {"Origin": "http://web.example"}
        r = await self.call("GET", "/c/o", headers=origin)
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))
        await self.call("POST", "/c", headers={
            "X-Container-Meta-Access-Control-Allow-Origin": "http://web.example"})
        r = await self.call("GET", "/c/o", headers=origin)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "http://web.example")

    async def test_stale_settings_grant_nothing(self):
        """Settings that still say a container is readable by all (a change
        not yet told to this node) let no anonymous caller read: the
        handler's own read decides."""
        self.stack.backend.settings = SettingsCache(usable=lambda: True)  # told nothing
        await self.container("c", **{"X-Container-Read": ".r:*"})
        await self.put("/c/o", b"open")
        r = await self.call("GET", "/c/o", token=None)
        self.assertEqual((r.code, r.body), (200, b"open"))
        await self.sql(f"DELETE FROM pithos_permissions WHERE path = '{self.alice}/c'")
        r = await self.call("GET", "/c/o", token=None)
        self.assertIn(r.code, (401, 404))
        self.assertNotEqual(r.body, b"open")

    async def sql(self, statement: str) -> None:
        from twisted.internet import threads

        await threads.deferToThread(query, self.stack.dsn, statement)
