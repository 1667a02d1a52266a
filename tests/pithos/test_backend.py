"""The storage backend on real PostgreSQL and a real block store:
containers, objects, versions, metadata, listings, copy/move, limits and
statistics.  (Sharing, quotas and garbage collection: test_backend_*.py.)"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from snfd import errors
from snfd.db.migrations import NODE_SCHEMA, Schema
from snfd.pithos.backend import Backend, MissingBlocks
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.hashmap import EMPTY_HASH, hashmap_of, merkle
from snfd.pithos.model import ObjectInfo, Permissions, Subdir
from snfd.pithos.rules import MAX_META_KEYS
from snfd.testing.postgres import fresh_database, started_pool

PITHOS = Schema("pithos", "snfd.pithos.schema")
BS = 64  # small blocks: multi-block objects stay tiny

ALICE, BOB, CAROL = "alice-uuid", "bob-uuid", "carol-uuid"


class BackendTestCase(unittest.TestCase):
    """A Backend on a fresh database, a FileBlockStore in a temporary
    directory and a manual clock starting at 1000."""

    schemas: tuple[Schema, ...] = (NODE_SCHEMA, PITHOS)

    def setUp(self):
        return defer.ensureDeferred(self.asyncSetUp())

    async def asyncSetUp(self) -> None:
        self.dsn = fresh_database(self, list(self.schemas))
        self.db = started_pool(self, self.dsn)
        self.blocks = self.make_blocks()
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.backend = self.make_backend()

    def make_blocks(self, clock: Any = None) -> Any:
        """The block store (``test_rados_blocks`` runs these tests on RADOS)."""
        return FileBlockStore(self.mktemp(), reactor, block_size=BS, clock=clock)

    def make_backend(self, **kw) -> Backend:
        return Backend(self.db, self.blocks, kw.pop("charger", None), self.clock, **kw)

    async def put(self, name: str, data: bytes = b"data", *, user: str = ALICE,
                  account: str | None = None, container: str = "c",
                  content_type: str = "text/plain", **kw) -> ObjectInfo:
        """Store ``data``'s blocks and create a version of ``name``."""
        await self.blocks.put([data[i:i + BS] for i in range(0, len(data), BS)])
        info: ObjectInfo = await self.backend.put_object(
            user, account or user, container, name, size=len(data),
            hashes=hashmap_of(data, BS), content_type=content_type, **kw)
        return info

    async def container(self, name: str = "c", user: str = ALICE, **policy: str) -> None:
        await self.backend.put_container(user, user, name, policy, {})

    async def names(self, user: str = ALICE, account: str = ALICE, container: str = "c",
                    **kw) -> list[str]:
        """The listing as names, subdirectories suffixed with ' (dir)'."""
        found = await self.backend.objects(user, account, container, **kw)
        return [f"{e.name} (dir)" if isinstance(e, Subdir) else e.name for e in found]

    async def fails(self, fault: type, coro) -> errors.Fault:
        try:
            await coro
        except fault as e:
            return e
        except Exception as e:  # pragma: no cover - shows what was raised
            self.fail(f"{fault.__name__} expected, got {e!r}")
        self.fail(f"{fault.__name__} not raised")

    def tick(self, seconds: float = 1.0) -> float:
        self.clock.advance(seconds)
        return self.clock.seconds()


class ContainerTests(BackendTestCase):
    async def test_create_then_update_by_put(self):
        """put_container answers True when it creates, False when the
        container exists, and then merges the policy and meta given."""
        self.assertTrue(await self.backend.put_container(
            ALICE, ALICE, "c", {"versioning": "none"}, {"X-Container-Meta-A": "1"}))
        self.assertFalse(await self.backend.put_container(
            ALICE, ALICE, "c", {"quota": "500"}, {"X-Container-Meta-B": "2"}))
        info = await self.backend.container(ALICE, ALICE, "c")
        self.assertEqual((info.policy.versioning, info.policy.quota, info.policy.project),
                         ("none", 500, ALICE))
        self.assertEqual(info.meta, {"X-Container-Meta-A": "1", "X-Container-Meta-B": "2"})
        self.assertEqual((info.count, info.bytes), (0, 0))

    async def test_policy_validation(self):
        """Unknown policy keys, bad quotas and bad versioning values are
        BadRequest; an empty value restores the default."""
        for policy in ({"colour": "red"}, {"quota": "-1"}, {"quota": "lots"},
                       {"versioning": "sometimes"}):
            await self.fails(errors.BadRequest,
                             self.backend.put_container(ALICE, ALICE, "c", policy, {}))
        await self.container(versioning="none", quota="10")
        await self.backend.update_container(ALICE, ALICE, "c", None, False,
                                            {"versioning": "", "quota": ""})
        info = await self.backend.container(ALICE, ALICE, "c")
        self.assertEqual((info.policy.versioning, info.policy.quota), ("auto", 0))

    async def test_names(self):
        """Container names: not empty, at most 256 characters, no '/' or
        NUL; any other Unicode is fine."""
        for bad in ("", "x" * 257, "a/b", "a\x00b"):
            await self.fails(errors.BadRequest,
                             self.backend.put_container(ALICE, ALICE, bad, {}, {}))
        self.assertTrue(await self.backend.put_container(ALICE, ALICE, "x" * 256, {}, {}))
        self.assertTrue(await self.backend.put_container(ALICE, ALICE, "κόσμε ☃", {}, {}))

    async def test_only_owner_creates(self):
        """Creating a container in another's account is Forbidden."""
        await self.fails(errors.Forbidden, self.backend.put_container(BOB, ALICE, "c", {}, {}))

    async def test_meta_update_and_limit(self):
        """Container meta merge (empty value deletes) and replace; more
        than 32 keys is BadRequest."""
        await self.container()
        await self.backend.update_container(ALICE, ALICE, "c", {"X-Container-Meta-A": "1",
                                                                "X-Container-Meta-B": "2"},
                                            False, None)
        await self.backend.update_container(ALICE, ALICE, "c", {"X-Container-Meta-A": ""},
                                            False, None)
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).meta,
                         {"X-Container-Meta-B": "2"})
        await self.backend.update_container(ALICE, ALICE, "c", {"X-Container-Meta-C": "3"},
                                            True, None)
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).meta,
                         {"X-Container-Meta-C": "3"})
        many = {f"X-Container-Meta-K{i}": "v" for i in range(MAX_META_KEYS + 1)}
        await self.fails(errors.BadRequest,
                         self.backend.update_container(ALICE, ALICE, "c", many, True, None))

    async def test_delete(self):
        """A container holding objects is a Conflict to delete; an empty
        one (even with history) goes; with a delimiter everything goes."""
        await self.container()
        await self.put("a")
        await self.fails(errors.Conflict, self.backend.delete_container(ALICE, ALICE, "c"))
        await self.backend.delete_object(ALICE, ALICE, "c", "a")
        await self.backend.delete_container(ALICE, ALICE, "c")
        await self.fails(errors.NotFound, self.backend.container(ALICE, ALICE, "c"))
        await self.container("d")
        await self.put("x/1", container="d")
        await self.put("x/2", container="d")
        await self.backend.delete_container(ALICE, ALICE, "d", delimiter="/")
        await self.fails(errors.NotFound, self.backend.container(ALICE, ALICE, "d"))
        self.assertEqual((await self.backend.account(ALICE, ALICE)).count, 0)

    async def test_account_listing(self):
        """containers() lists by code point order with marker, end_marker,
        prefix, limit and reverse; account() counts containers and bytes."""
        for name in ("b", "a", "é", "Z", "ab"):
            await self.container(name)
        listed = [c.name for c in await self.backend.containers(ALICE, ALICE)]
        self.assertEqual(listed, ["Z", "a", "ab", "b", "é"])
        listed = [c.name for c in await self.backend.containers(
            ALICE, ALICE, marker="a", end_marker="é")]
        self.assertEqual(listed, ["ab", "b"])
        listed = [c.name for c in await self.backend.containers(
            ALICE, ALICE, reverse=True, limit=2)]
        self.assertEqual(listed, ["é", "b"])
        listed = [c.name for c in await self.backend.containers(ALICE, ALICE, prefix="a")]
        self.assertEqual(listed, ["a", "ab"])
        await self.put("o", b"12345", container="ab")
        info = await self.backend.account(ALICE, ALICE)
        self.assertEqual((info.count, info.bytes), (5, 5))
        [ab] = await self.backend.containers(ALICE, ALICE, prefix="ab")
        self.assertEqual((ab.count, ab.bytes, ab.policy.project), (1, 5, ALICE))

    async def test_unused_account(self):
        """An account never written to answers zeros, no error."""
        info = await self.backend.account(ALICE, ALICE)
        self.assertEqual((info.count, info.bytes), (0, 0))
        self.assertEqual(await self.backend.containers(ALICE, ALICE), [])

    async def test_account_meta_and_groups(self):
        """Account meta merge/replace; groups merge (empty list deletes)
        and replace; group names are lowercased; limits are enforced."""
        await self.backend.update_account(ALICE, ALICE, {"X-Account-Meta-A": "1"}, False,
                                          {"Team": [BOB, CAROL], "solo": [BOB]})
        await self.backend.update_account(ALICE, ALICE, {"X-Account-Meta-B": "2"}, False,
                                          {"solo": []})
        info = await self.backend.account(ALICE, ALICE)
        self.assertEqual(info.meta, {"X-Account-Meta-A": "1", "X-Account-Meta-B": "2"})
        self.assertEqual(info.groups, {"team": (BOB, CAROL)})
        await self.backend.update_account(ALICE, ALICE, {}, True, {"new": [CAROL]})
        info = await self.backend.account(ALICE, ALICE)
        self.assertEqual((info.meta, info.groups), ({}, {"new": (CAROL,)}))
        await self.backend.update_account(ALICE, ALICE, None, False, None)
        self.assertEqual((await self.backend.account(ALICE, ALICE)).groups, {"new": (CAROL,)})
        await self.fails(errors.BadRequest, self.backend.update_account(
            ALICE, ALICE, None, False, {"big": [f"u{i}" for i in range(33)]}))
        await self.fails(errors.BadRequest, self.backend.update_account(
            ALICE, ALICE, None, True, {f"g{i}": [BOB] for i in range(33)}))
        await self.fails(errors.Forbidden, self.backend.update_account(
            BOB, ALICE, {"X-Account-Meta-X": "1"}, False, None))


class ObjectTests(BackendTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        await self.container()

    async def test_put_and_read(self):
        """A put version carries the Merkle hash, size, type, hashmap, meta
        and the writer; reading it back gives the same."""
        data = bytes(range(200))
        put = await self.put("dir/o", data, meta={"X-Object-Meta-Colour": "red"},
                             checksum="abc")
        got = await self.backend.object(ALICE, ALICE, "c", "dir/o")
        self.assertEqual(got.hashes, hashmap_of(data, BS))
        self.assertEqual(got.hash, merkle(hashmap_of(data, BS)))
        self.assertEqual((got.size, got.type, got.muser, got.checksum, got.serial, got.uuid),
                         (200, "text/plain", ALICE, "abc", put.serial, put.uuid))
        self.assertEqual(got.meta, {"X-Object-Meta-Colour": "red"})
        self.assertEqual((got.block_size, got.deleted, got.mtime), (BS, False, 1000.0))

    async def test_empty_object(self):
        """An empty object is stored with the hashmap [EMPTY_HASH] (sent as
        [] or [EMPTY_HASH]); its hash is the empty hash."""
        info = await self.backend.put_object(ALICE, ALICE, "c", "e", size=0, hashes=[],
                                             content_type="text/plain")
        self.assertEqual((info.hash, info.size), (EMPTY_HASH, 0))
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "e")).hashes,
                         [EMPTY_HASH])

    async def test_bad_hashmaps_and_names(self):
        """Hashmaps inconsistent with the size, and bad object names, are
        BadRequest."""
        await self.fails(errors.BadRequest, self.backend.put_object(
            ALICE, ALICE, "c", "o", size=100, hashes=[EMPTY_HASH], content_type="x/y"))
        for bad in ("", "x" * 1025, "a\x00b"):
            await self.fails(errors.BadRequest, self.put(bad))
        await self.put("x" * 1024)
        await self.put("../..")  # names are keys, not filesystem paths

    async def test_missing_blocks(self):
        """A hashmap naming absent blocks raises MissingBlocks listing
        them (once each, in order) and creates nothing."""
        data = b"A" * BS + b"B" * BS + b"A" * BS
        hashes = hashmap_of(data, BS)
        e = await self.fails(MissingBlocks, self.backend.put_object(
            ALICE, ALICE, "c", "o", size=len(data), hashes=hashes, content_type="x/y"))
        self.assertEqual(e.hashes, [hashes[0], hashes[1]])
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "c", "o"))
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).count, 0)

    async def test_missing_blocks_inside_transaction(self):
        """The blocks are checked again inside the transaction: a block
        gone between the first check and the transaction is reported."""
        data = b"Q" * 10
        [name] = await self.blocks.put([data])
        real = self.blocks.missing

        async def stale(names):
            found = await real(names)
            await self.blocks.delete([name], 1e12)  # gone right after the check
            return found

        self.blocks.missing = stale
        e = await self.fails(MissingBlocks, self.backend.put_object(
            ALICE, ALICE, "c", "o", size=10, hashes=[name], content_type="x/y"))
        self.assertEqual(e.hashes, [name])

    async def test_conditions(self):
        """if_none_match refuses an existing object (PreconditionFailed);
        expect_serial refuses a stale version (Conflict)."""
        first = await self.put("o", b"1")
        await self.fails(errors.PreconditionFailed, self.put("o", b"2", if_none_match=True))
        second = await self.put("o", b"2", expect_serial=first.serial)
        await self.fails(errors.Conflict, self.put("o", b"3", expect_serial=first.serial))
        await self.fails(errors.Conflict, self.put("new", b"3", expect_serial=second.serial))
        await self.put("fresh", b"1", if_none_match=True)

    async def test_conditional_delete(self):
        """A delete with expect_serial removes only that current version: a
        stale serial, or an object already gone, is PreconditionFailed and
        the object stays as it is; with until or a delimiter it is refused."""
        first = await self.put("o", b"1")
        second = await self.put("o", b"2")
        await self.fails(errors.PreconditionFailed, self.backend.delete_object(
            ALICE, ALICE, "c", "o", expect_serial=first.serial))
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "o")).serial,
                         second.serial)
        await self.fails(errors.BadRequest, self.backend.delete_object(
            ALICE, ALICE, "c", "o", delimiter="/", expect_serial=second.serial))
        await self.backend.delete_object(ALICE, ALICE, "c", "o", expect_serial=second.serial)
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "c", "o"))
        await self.fails(errors.PreconditionFailed, self.backend.delete_object(
            ALICE, ALICE, "c", "o", expect_serial=second.serial))

    async def test_uuid_and_meta_across_versions(self):
        """Overwriting keeps the uuid; meta=None keeps the previous meta,
        meta={} clears it; a recreated deleted object gets a new uuid."""
        a = await self.put("o", b"1", meta={"X-Object-Meta-A": "1", "Content-Encoding": "gz"})
        b = await self.put("o", b"22")
        self.assertEqual(b.uuid, a.uuid)
        self.assertEqual(b.meta, {"X-Object-Meta-A": "1", "Content-Encoding": "gz"})
        c = await self.put("o", b"333", meta={})
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "o")).meta, {})
        self.assertEqual(c.uuid, a.uuid)
        await self.backend.delete_object(ALICE, ALICE, "c", "o")
        d = await self.put("o", b"4")
        self.assertNotEqual(d.uuid, a.uuid)

    async def test_update_meta(self):
        """update_object merges (empty deletes) or replaces user meta and
        content headers, keeps other stored keys, and makes a new version
        with the same content; meta=None makes no version."""
        v1 = await self.put("o", b"abc", meta={"X-Object-Meta-A": "1",
                                               "Content-Disposition": "inline",
                                               "X-Static-Large-Object": "True"})
        v2 = await self.backend.update_object(ALICE, ALICE, "c", "o",
                                              {"X-Object-Meta-A": "", "X-Object-Meta-B": "2"},
                                              False)
        self.assertGreater(v2.serial, v1.serial)
        self.assertEqual(v2.meta, {"X-Object-Meta-B": "2", "Content-Disposition": "inline",
                                   "X-Static-Large-Object": "True"})
        self.assertEqual((v2.hash, v2.size, v2.uuid, v2.hashes), (v1.hash, 3, v1.uuid,
                                                                   v1.hashes))
        v3 = await self.backend.update_object(ALICE, ALICE, "c", "o",
                                              {"X-Object-Meta-C": "3"}, True)
        self.assertEqual(v3.meta, {"X-Object-Meta-C": "3", "X-Static-Large-Object": "True"})
        v4 = await self.backend.update_object(ALICE, ALICE, "c", "o", None, False,
                                              permissions=Permissions(read=(BOB,)))
        self.assertEqual(v4.serial, v3.serial)
        self.assertEqual(v4.sharing, Permissions(read=(BOB,)))
        many = {f"X-Object-Meta-K{i}": "v" for i in range(MAX_META_KEYS + 1)}
        await self.fails(errors.BadRequest,
                         self.backend.update_object(ALICE, ALICE, "c", "o", many, False))
        await self.fails(errors.NotFound,
                         self.backend.update_object(ALICE, ALICE, "c", "nope", {}, False))
        info = await self.backend.container(ALICE, ALICE, "c")
        self.assertEqual(info.object_meta, ("C",))

    async def test_versions_and_history(self):
        """With versioning auto every version stays readable; a delete adds
        a deletion marker readable as deleted, and versions() still lists
        the (non-marker) versions."""
        v1 = await self.put("o", b"one")
        self.tick()
        v2 = await self.put("o", b"two!")
        old = await self.backend.object(ALICE, ALICE, "c", "o", version=v1.serial)
        self.assertEqual((old.size, old.hashes), (3, hashmap_of(b"one", BS)))
        self.assertIsNone(old.allowed_to)
        self.tick()
        await self.backend.delete_object(ALICE, ALICE, "c", "o")
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "c", "o"))
        listed = await self.backend.versions(ALICE, ALICE, "c", "o")
        self.assertEqual(listed, [(v1.serial, 1000.0), (v2.serial, 1001.0)])
        marker = await self.backend.object(ALICE, ALICE, "c", "o", version=v2.serial + 1)
        self.assertTrue(marker.deleted)
        self.assertEqual(marker.size, 0)
        await self.fails(errors.NotFound,
                         self.backend.object(ALICE, ALICE, "c", "o", version=10 ** 9))
        other = await self.put("p")
        await self.fails(errors.NotFound,
                         self.backend.object(ALICE, ALICE, "c", "o", version=other.serial))
        await self.fails(errors.NotFound, self.backend.versions(ALICE, ALICE, "c", "never"))

    async def test_versioning_none(self):
        """With versioning none the previous version is removed at once."""
        await self.container("n", versioning="none")
        v1 = await self.put("o", b"one", container="n")
        v2 = await self.put("o", b"two", container="n")
        await self.fails(errors.NotFound,
                         self.backend.object(ALICE, ALICE, "n", "o", version=v1.serial))
        self.assertEqual([s for s, _ in await self.backend.versions(ALICE, ALICE, "n", "o")],
                         [v2.serial])
        rows = await self.db.run("t", _count_txn, "pithos_maps")
        self.assertEqual(rows, 1)  # only the current version's map is left

    async def test_until_listing_and_stats(self):
        """objects(until=t) and container(until=t) show the state at t:
        versions current then (also now superseded ones), not objects
        created later, not objects deleted by then."""
        await self.put("a", b"1")
        await self.put("gone", b"22")
        t1 = self.tick()
        await self.put("a", b"1111")
        await self.put("later", b"333")
        await self.backend.delete_object(ALICE, ALICE, "c", "gone")
        t2 = self.tick()
        await self.backend.delete_object(ALICE, ALICE, "c", "a")
        then = await self.backend.objects(ALICE, ALICE, "c", until=t1 - 0.5)
        self.assertEqual([(o.name, o.size) for o in then], [("a", 1), ("gone", 2)])
        then = await self.backend.objects(ALICE, ALICE, "c", until=t2 - 0.5)
        self.assertEqual([(o.name, o.size) for o in then], [("a", 4), ("later", 3)])
        info = await self.backend.container(ALICE, ALICE, "c", until=t2 - 0.5)
        self.assertEqual((info.count, info.bytes, info.until), (2, 7, t2 - 0.5))
        now = await self.backend.container(ALICE, ALICE, "c")
        self.assertEqual((now.count, now.bytes), (1, 3))
        acct = await self.backend.account(ALICE, ALICE, until=t1 - 0.5)
        self.assertEqual((acct.count, acct.bytes), (1, 3))

    async def test_purge_object(self):
        """delete_object(until=t) removes every version older than t; the
        newer ones stay, and purging the current one removes the object."""
        v1 = await self.put("o", b"1")
        t = self.tick()
        v2 = await self.put("o", b"22")
        await self.backend.delete_object(ALICE, ALICE, "c", "o", until=t - 0.5)
        await self.fails(errors.NotFound,
                         self.backend.object(ALICE, ALICE, "c", "o", version=v1.serial))
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "o")).serial, v2.serial)
        self.tick()
        await self.backend.delete_object(ALICE, ALICE, "c", "o", until=self.tick())
        await self.fails(errors.NotFound, self.backend.versions(ALICE, ALICE, "c", "o"))
        info = await self.backend.container(ALICE, ALICE, "c")
        self.assertEqual((info.count, info.bytes), (0, 0))

    async def test_purge_container(self):
        """delete_container(until=t) purges history and deletion markers
        older than t and keeps current objects and the container."""
        v1 = await self.put("o", b"1")
        await self.put("d", b"1")
        await self.backend.delete_object(ALICE, ALICE, "c", "d")
        v2 = await self.put("o", b"2")
        await self.backend.delete_container(ALICE, ALICE, "c", until=self.tick())
        await self.fails(errors.NotFound,
                         self.backend.object(ALICE, ALICE, "c", "o", version=v1.serial))
        self.assertEqual([s for s, _ in await self.backend.versions(ALICE, ALICE, "c", "o")],
                         [v2.serial])
        await self.fails(errors.NotFound, self.backend.versions(ALICE, ALICE, "c", "d"))
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).count, 1)

    async def test_copy(self):
        """A copy has a new uuid, the source's content and meta updated by
        the given meta; sharing and public links are not copied; a source
        version may be named."""
        src = await self.put("s", b"source!", meta={"X-Object-Meta-A": "1"},
                             permissions=Permissions(read=(BOB,)), public=True)
        await self.container("d")
        copy = await self.backend.copy_object(ALICE, ALICE, "c", "s", ALICE, "d", "t",
                                              meta={"X-Object-Meta-B": "2"})
        self.assertNotEqual(copy.uuid, src.uuid)
        self.assertEqual((copy.hash, copy.size, copy.type), (src.hash, 7, "text/plain"))
        self.assertEqual(copy.meta, {"X-Object-Meta-A": "1", "X-Object-Meta-B": "2"})
        self.assertIsNone(copy.sharing)
        self.assertIsNone(copy.public)
        self.assertEqual((await self.backend.object(ALICE, ALICE, "c", "s")).size, 7)
        await self.put("s", b"newer")
        old = await self.backend.copy_object(ALICE, ALICE, "c", "s", ALICE, "d", "old",
                                             version=src.serial, content_type="x/y",
                                             meta={"X-Object-Meta-C": "3"}, replace_meta=True)
        self.assertEqual((old.size, old.type, old.meta), (7, "x/y", {"X-Object-Meta-C": "3"}))
        await self.fails(errors.NotFound, self.backend.copy_object(
            ALICE, ALICE, "c", "nope", ALICE, "d", "x"))
        await self.fails(errors.NotFound, self.backend.copy_object(
            ALICE, ALICE, "c", "s", ALICE, "nocontainer", "x"))

    async def test_move(self):
        """A move keeps the uuid, deletes the source (sharing and public
        link with it) and updates both containers' statistics."""
        src = await self.put("s", b"12345", public=True,
                             permissions=Permissions(read=(BOB,)))
        await self.container("d")
        moved = await self.backend.copy_object(ALICE, ALICE, "c", "s", ALICE, "d", "t",
                                               move=True)
        self.assertEqual((moved.uuid, moved.size), (src.uuid, 5))
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "c", "s"))
        await self.fails(errors.NotFound, self.backend.public_object(src.public))
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).bytes, 0)
        self.assertEqual((await self.backend.container(ALICE, ALICE, "d")).bytes, 5)
        same = await self.backend.copy_object(ALICE, ALICE, "d", "t", ALICE, "d", "t",
                                              move=True)
        self.assertEqual(same.uuid, src.uuid)
        self.assertEqual((await self.backend.container(ALICE, ALICE, "d")).count, 1)

    async def test_copy_and_delete_with_delimiter(self):
        """With a delimiter, copy/move/delete act on the object and every
        object under '<name>/' too."""
        await self.put("dir", b"", content_type="application/directory")
        await self.put("dir/a", b"a")
        await self.put("dir/sub/b", b"bb")
        await self.put("dirt", b"not under")
        await self.backend.copy_object(ALICE, ALICE, "c", "dir", ALICE, "c", "new",
                                       delimiter="/")
        self.assertEqual(await self.names(prefix="new"), ["new", "new/a", "new/sub/b"])
        await self.backend.copy_object(ALICE, ALICE, "c", "new", ALICE, "c", "moved",
                                       delimiter="/", move=True)
        self.assertEqual(await self.names(prefix="new"), [])
        self.assertEqual(await self.names(prefix="moved"), ["moved", "moved/a", "moved/sub/b"])
        await self.backend.delete_object(ALICE, ALICE, "c", "dir", delimiter="/")
        self.assertEqual(await self.names(prefix="dir"), ["dirt"])
        await self.backend.delete_object(ALICE, ALICE, "c", "moved/sub", delimiter="/")
        self.assertEqual(await self.names(prefix="moved"), ["moved", "moved/a"])
        await self.fails(errors.NotFound,
                         self.backend.delete_object(ALICE, ALICE, "c", "nothing", delimiter="/"))

    async def test_checksum(self):
        """set_checksum records the MD5 of a version afterwards."""
        v = await self.put("o")
        await self.backend.set_checksum(v.serial, "d41d8cd98f00b204e9800998ecf8427e")
        got = await self.backend.object(ALICE, ALICE, "c", "o")
        self.assertEqual(got.checksum, "d41d8cd98f00b204e9800998ecf8427e")

    async def test_statistics_exact_after_many_operations(self):
        """After a random mix of puts, overwrites, meta updates, copies,
        moves and deletes (in two containers, one without versioning) the
        container and account statistics equal a recount."""
        await self.container("n", versioning="none")
        rng = random.Random(4)
        names = [f"f{i}" for i in range(8)]
        for _ in range(80):
            op = rng.choice(["put", "put", "meta", "copy", "move", "delete"])
            cont, other = rng.sample(["c", "n"], 2)
            name = rng.choice(names)
            try:
                if op == "put":
                    await self.put(name, bytes(rng.randrange(256) for _ in
                                               range(rng.randrange(0, 200))), container=cont)
                elif op == "meta":
                    await self.backend.update_object(ALICE, ALICE, cont, name,
                                                     {"X-Object-Meta-X": str(rng.random())},
                                                     False)
                elif op in ("copy", "move"):
                    await self.backend.copy_object(ALICE, ALICE, cont, name, ALICE, other,
                                                   rng.choice(names), move=op == "move")
                else:
                    await self.backend.delete_object(ALICE, ALICE, cont, name)
            except errors.NotFound:
                pass
        total_count = total_bytes = 0
        for cont in ("c", "n"):
            listed = await self.backend.objects(ALICE, ALICE, cont)
            info = await self.backend.container(ALICE, ALICE, cont)
            self.assertEqual((info.count, info.bytes),
                             (len(listed), sum(o.size for o in listed)))
            total_count += 1
            total_bytes += info.bytes
            keys = await self.db.run("t", _meta_keys_txn, ALICE, cont)
            self.assertEqual(tuple(info.object_meta), keys)
        acct = await self.backend.account(ALICE, ALICE)
        self.assertEqual((acct.count, acct.bytes), (total_count, total_bytes))
        history = await self.db.run("t", _history_txn)
        self.assertEqual(history[0], history[1])


def _count_txn(txn, table: str) -> int:
    txn.execute(f"SELECT count(*) FROM {table}")
    return int(txn.fetchone()[0])


def _meta_keys_txn(txn, account: str, container: str) -> tuple[str, ...]:
    """A recount of the user meta keys of a container's current objects."""
    txn.execute(
        """SELECT DISTINCT substr(a.key, 15) FROM pithos_nodes c
           JOIN pithos_nodes n ON n.parent = c.node
           JOIN pithos_versions v ON v.serial = n.latest_version AND v.cluster = 0
           JOIN pithos_attributes a ON a.serial = v.serial AND a.key LIKE 'X-Object-Meta-%%'
           WHERE c.path = %s ORDER BY 1""", (f"{account}/{container}",))
    return tuple(r[0] for r in txn.fetchall())


def _history_txn(txn) -> tuple[list, list]:
    """History statistics as kept and as recounted, per container."""
    txn.execute("""SELECT node, population, size FROM pithos_statistics
                   WHERE cluster = 1 AND population <> 0 ORDER BY node""")
    kept = [tuple(r) for r in txn.fetchall()]
    txn.execute("""SELECT n.parent, count(*), sum(v.size) FROM pithos_versions v
                   JOIN pithos_nodes n ON n.node = v.node WHERE v.cluster = 1
                   GROUP BY n.parent ORDER BY n.parent""")
    return kept, [tuple(int(x) for x in r) for r in txn.fetchall()]


class ListingTests(BackendTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        await self.container()

    async def test_order_is_by_code_point(self):
        """Names are listed in code point (UTF-8 byte) order, not by
        locale: upper case before lower case, accented letters after z."""
        names = ["b", "a", "B", "é", "z", "日本", "ä", "a b", "a-b", "😀"]
        for n in names:
            await self.put(n)
        self.assertEqual(await self.names(), sorted(names))
        self.assertEqual(await self.names(reverse=True), sorted(names, reverse=True))

    async def test_marker_end_marker_limit(self):
        """marker and end_marker are exclusive; limit caps; reverse swaps
        the meaning of the markers' direction."""
        for n in "abcdef":
            await self.put(n)
        self.assertEqual(await self.names(marker="b", end_marker="e"), ["c", "d"])
        self.assertEqual(await self.names(marker="b", limit=2), ["c", "d"])
        self.assertEqual(await self.names(reverse=True, marker="e", limit=2), ["d", "c"])
        self.assertEqual(await self.names(reverse=True, marker="e", end_marker="b"),
                         ["d", "c"])
        self.assertEqual(await self.names(limit=0), [])
        self.assertEqual(await self.names(prefix="c"), ["c"])

    async def test_delimiter(self):
        """With a delimiter, names past the prefix's next delimiter fold
        into one subdir entry; the prefix narrows."""
        for n in ("a/b", "a/c", "a/d/e", "b", "c/x"):
            await self.put(n)
        self.assertEqual(await self.names(delimiter="/"), ["a/ (dir)", "b", "c/ (dir)"])
        self.assertEqual(await self.names(delimiter="/", prefix="a/"),
                         ["a/b", "a/c", "a/d/ (dir)"])
        self.assertEqual(await self.names(delimiter="/", reverse=True),
                         ["c/ (dir)", "b", "a/ (dir)"])
        self.assertEqual(await self.names(delimiter="/", limit=2), ["a/ (dir)", "b"])
        # A page that ended with a subdir continues after it.
        self.assertEqual(await self.names(delimiter="/", marker="a/"), ["b", "c/ (dir)"])
        self.assertEqual(await self.names(delimiter="/", marker="c/", reverse=True),
                         ["b", "a/ (dir)"])

    async def test_object_wins_over_subdir_of_same_name(self):
        """An object named like a subdir ("a/") is listed instead of the
        subdir, in both directions; a directory object "a" is listed next
        to the subdir "a/"."""
        for n in ("a/", "a/x", "a/y", "d", "d/z"):
            await self.put(n)
        self.assertEqual(await self.names(delimiter="/"), ["a/", "d", "d/ (dir)"])
        self.assertEqual(await self.names(delimiter="/", reverse=True),
                         ["d/ (dir)", "d", "a/"])
        found = await self.backend.objects(ALICE, ALICE, "c", delimiter="/")
        self.assertIsInstance(found[0], ObjectInfo)

    async def test_subdir_skipping_across_pages(self):
        """Large virtual directories are skipped without listing them
        (more objects than one page of the backend's query)."""
        for i in range(130):
            await self.backend.put_object(ALICE, ALICE, "c", f"big/{i:03d}", size=0,
                                          hashes=[], content_type="x/y")
        for n in ("a", "big/", "z/1", "zz"):
            await self.put(n)
        self.assertEqual(await self.names(delimiter="/"),
                         ["a", "big/", "z/ (dir)", "zz"])
        self.assertEqual(await self.names(delimiter="/", reverse=True),
                         ["zz", "z/ (dir)", "big/", "a"])
        self.assertEqual(await self.names(delimiter="/", limit=3, reverse=True),
                         ["zz", "z/ (dir)", "big/"])
        self.assertEqual(len(await self.names(prefix="big/")), 131)
        self.assertEqual(await self.names(delimiter="/", marker="big/"), ["z/ (dir)", "zz"])

    async def test_path_mode(self):
        """path lists the objects directly under path/ (and those ending
        with '/' one level down), no subdirs."""
        for n in ("p", "p/a", "p/b/", "p/b/c", "p/d/e", "q"):
            await self.put(n)
        self.assertEqual(await self.names(prefix="p", path_mode=True), ["p/a", "p/b/"])
        self.assertEqual(await self.names(prefix="", path_mode=True), ["p", "q"])

    async def test_meta_filters(self):
        """meta filters: key present, key absent, comparisons of values."""
        await self.put("a", meta={"X-Object-Meta-Colour": "red", "X-Object-Meta-Size": "5"})
        await self.put("b", meta={"X-Object-Meta-Colour": "blue"})
        await self.put("c")
        self.assertEqual(await self.names(meta_filters=["colour"]), ["a", "b"])
        self.assertEqual(await self.names(meta_filters=["!colour"]), ["c"])
        self.assertEqual(await self.names(meta_filters=["Colour=red"]), ["a"])
        self.assertEqual(await self.names(meta_filters=["colour!=red"]), ["b"])
        self.assertEqual(await self.names(meta_filters=["colour<c"]), ["b"])
        self.assertEqual(await self.names(meta_filters=["colour>=red", "size"]), ["a"])

    async def test_listing_entries(self):
        """Listing entries carry no hashmap and no meta; the owner sees
        the object's own sharing and public token; deleted objects are
        not listed."""
        await self.put("s", permissions=Permissions(read=(BOB,)), public=True,
                       meta={"X-Object-Meta-A": "1"})
        await self.put("gone")
        await self.backend.delete_object(ALICE, ALICE, "c", "gone")
        [entry] = await self.backend.objects(ALICE, ALICE, "c")
        self.assertEqual((entry.name, entry.hashes, entry.meta), ("s", None, {}))
        self.assertEqual(entry.sharing, Permissions(read=(BOB,)))
        self.assertEqual(len(entry.public), 16)
        await self.fails(errors.NotFound, self.backend.objects(ALICE, ALICE, "nope"))

    async def test_shared_and_public_filters(self):
        """shared lists objects with sharing (also under a shared
        directory object); public lists published objects."""
        await self.put("dir", b"", content_type="application/directory",
                       permissions=Permissions(read=(BOB,)))
        await self.put("dir/in")
        await self.put("own", permissions=Permissions(write=(CAROL,)))
        await self.put("pub", public=True)
        await self.put("plain")
        self.assertEqual(await self.names(shared=True), ["dir", "dir/in", "own"])
        self.assertEqual(await self.names(public=True), ["pub"])
        listed = [c.name for c in await self.backend.containers(ALICE, ALICE, shared=True)]
        self.assertEqual(listed, ["c"])
        listed = [c.name for c in await self.backend.containers(ALICE, ALICE, public=True)]
        self.assertEqual(listed, ["c"])
