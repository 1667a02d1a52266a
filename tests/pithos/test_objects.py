"""The object store other services use (``snfd.pithos.objects``, the
``IObjectStore`` contract) over a real backend on PostgreSQL: reads by
path and uuid under the object store's own permission rule, attribute
domains that belong to the object across its versions, the search by
attribute, sharing, hashmaps and files; and migration 0003, which moves
the image metadata of older databases into the ``plankton`` domain."""

from __future__ import annotations

from pathlib import Path

import psycopg2
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd import errors
from snfd.db import migrations
from snfd.db.migrations import NODE_SCHEMA
from snfd.interfaces import IObjectStore, ObjectHashmap, Sharing
from snfd.pithos import store
from snfd.pithos.backend import MissingBlocks
from snfd.pithos.hashmap import hashmap_of, merkle
from snfd.pithos.model import Permissions
from snfd.pithos.objects import PithosObjects
from snfd.pithos.rules import MAX_META_KEYS
from snfd.testing.postgres import fresh_database
from tests.pithos.test_backend import ALICE, BOB, BS, CAROL, PITHOS, BackendTestCase

DOMAIN = "plankton"


class ObjectsCase(BackendTestCase):
    """``BackendTestCase`` with ``PithosObjects`` over its backend and
    alice's container ``c``."""

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.objects = PithosObjects(self.backend)
        await self.container()

    async def tagged(self, name: str = "disk", data: bytes = b"data", *, user: str = ALICE,
                     **attributes: str) -> str:
        """A file with attributes in ``plankton`` (``kind=disk`` by
        default); its uuid."""
        info = await self.put(name, data, user=user)
        await self.objects.set_attributes(user, user, "c", name, DOMAIN,
                                          attributes or {"kind": "disk"})
        return info.uuid

    async def share(self, name: str, read: tuple[str, ...] = (), write: tuple[str, ...] = (),
                    owner: str = ALICE) -> None:
        await self.objects.set_sharing(owner, owner, "c", name, Sharing(read, write))


class ContractTests(ObjectsCase):
    async def test_provides_the_interface(self):
        """PithosObjects provides IObjectStore, with the block store's
        block size."""
        verifyObject(IObjectStore, self.objects)
        self.assertEqual(self.objects.block_size, BS)

    async def test_reads_by_path_and_uuid(self):
        """A file reads the same by path and by uuid: its version, content
        summary and, when asked, its attributes in one domain; a missing
        path or uuid is NotFound."""
        info = await self.put("disk", b"x" * 100, content_type="application/x-disk")
        await self.objects.set_attributes(ALICE, ALICE, "c", "disk", DOMAIN, {"k": "v"})
        at = await self.objects.object_at(ALICE, ALICE, "c", "disk", DOMAIN)
        self.assertEqual((at.uuid, at.size, at.type, at.hash, at.path),
                         (info.uuid, 100, "application/x-disk", info.hash, f"{ALICE}/c/disk"))
        self.assertGreater(at.serial, info.serial)
        self.assertEqual(at.attributes, {"k": "v"})
        self.assertEqual(at.sharing, Sharing())
        self.assertEqual(await self.objects.object_by_uuid(ALICE, info.uuid, DOMAIN), at)
        self.assertEqual((await self.objects.object_at(ALICE, ALICE, "c", "disk")).attributes,
                         {})
        for missing in (self.objects.object_at(ALICE, ALICE, "c", "nothing"),
                        self.objects.object_by_uuid(ALICE, "no-such-uuid"),
                        self.objects.object_by_uuid(ALICE, "")):
            await self.fails(errors.NotFound, missing)

    async def test_stranger_is_refused(self):
        """Another user learns nothing of a file not shared with them
        (404 on every read and change, nothing found); read sharing lets
        them read but not change it (403); write sharing lets them change
        attributes, never sharing."""
        uuid = await self.tagged()
        reads = lambda: [  # noqa: E731
            self.objects.object_at(BOB, ALICE, "c", "disk"),
            self.objects.object_by_uuid(BOB, uuid),
            self.objects.hashmap(BOB, ALICE, "c", "disk")]
        changes = lambda: [  # noqa: E731
            self.objects.set_attributes(BOB, ALICE, "c", "disk", DOMAIN, {"k": "v"}),
            self.objects.set_sharing(BOB, ALICE, "c", "disk", Sharing((BOB,))),
            self.objects.create_from_hashmap(BOB, ALICE, "c", "disk", 0, [])]
        for call in reads() + changes():
            await self.fails(errors.NotFound, call)
        self.assertEqual(await self.objects.find(BOB, DOMAIN, "kind"), [])
        await self.share("disk", read=(BOB,))
        for call in reads():
            await call
        self.assertEqual([o.uuid for o in await self.objects.find(BOB, DOMAIN, "kind")],
                         [uuid])
        for call in changes():
            await self.fails(errors.Forbidden, call)
        await self.share("disk", write=(BOB,))
        changed = await self.objects.set_attributes(BOB, ALICE, "c", "disk", DOMAIN,
                                                    {"k": "v"})
        self.assertEqual(changed.attributes, {"kind": "disk", "k": "v"})
        await self.fails(errors.Forbidden, self.objects.set_sharing(
            BOB, ALICE, "c", "disk", Sharing((BOB,))))
        await self.fails(errors.NotFound, self.objects.object_at(CAROL, ALICE, "c", "disk"))


class AttributeTests(ObjectsCase):
    async def test_set_merge_replace_delete(self):
        """Attributes merge (an empty value deletes its key) or, replaced,
        become the whole domain; each change is a new version; other
        domains and the API's metadata stay apart."""
        await self.put("disk", meta={"X-Object-Meta-Colour": "blue"})
        first = await self.objects.set_attributes(ALICE, ALICE, "c", "disk", DOMAIN,
                                                  {"a": "1", "b": "2"})
        merged = await self.objects.set_attributes(ALICE, ALICE, "c", "disk", DOMAIN,
                                                   {"b": "", "c": "3"})
        self.assertEqual(merged.attributes, {"a": "1", "c": "3"})
        self.assertGreater(merged.serial, first.serial)
        other = await self.objects.set_attributes(ALICE, ALICE, "c", "disk", "other",
                                                  {"x": "y"})
        self.assertEqual(other.attributes, {"x": "y"})
        replaced = await self.objects.set_attributes(ALICE, ALICE, "c", "disk", DOMAIN,
                                                     {"d": "4"}, replace=True)
        self.assertEqual(replaced.attributes, {"d": "4"})
        emptied = await self.objects.set_attributes(ALICE, ALICE, "c", "disk", DOMAIN, {},
                                                    replace=True)
        self.assertEqual(emptied.attributes, {})
        self.assertEqual(
            (await self.objects.object_at(ALICE, ALICE, "c", "disk", "other")).attributes,
            {"x": "y"})
        info = await self.backend.object(ALICE, ALICE, "c", "disk")
        self.assertEqual(info.meta, {"X-Object-Meta-Colour": "blue"})

    async def test_limits(self):
        """More keys than a domain holds, NUL characters and empty keys are
        400s and change nothing; the object store's own domain, an empty
        domain or one with a NUL are refused as programming errors."""
        await self.tagged()
        for bad in ({f"k{i}": "v" for i in range(MAX_META_KEYS + 1)}, {"k": "a\x00b"},
                    {"": "v"}):
            await self.fails(errors.BadRequest, self.objects.set_attributes(
                ALICE, ALICE, "c", "disk", DOMAIN, bad))
        self.assertEqual(
            (await self.objects.object_at(ALICE, ALICE, "c", "disk", DOMAIN)).attributes,
            {"kind": "disk"})
        for domain in ("pithos", "", "a\x00b"):
            with self.assertRaises(ValueError):
                await self.objects.set_attributes(ALICE, ALICE, "c", "disk", domain, {})
            with self.assertRaises(ValueError):
                await self.objects.object_at(ALICE, ALICE, "c", "disk", domain)

    async def test_attributes_survive_new_content(self):
        """New content over the file (a PUT replacing its metadata too) and
        a metadata change through the object store's API keep the
        attributes; so does a version restored from history."""
        uuid = await self.tagged(kind="image", title="debian")
        self.tick()
        info = await self.put("disk", b"new content", meta={"X-Object-Meta-A": "1"})
        self.assertEqual(info.uuid, uuid)
        await self.backend.update_object(ALICE, ALICE, "c", "disk",
                                         {"X-Object-Meta-B": "2"}, True)
        at = await self.objects.object_at(ALICE, ALICE, "c", "disk", DOMAIN)
        self.assertEqual((at.uuid, at.size, at.attributes),
                         (uuid, len(b"new content"), {"kind": "image", "title": "debian"}))
        self.assertNotIn("kind", (await self.backend.object(ALICE, ALICE, "c", "disk")).meta)

    async def test_copy_move_and_delete(self):
        """A copy takes its source's attributes (new uuid); a move keeps
        the object's (same uuid, new path); a deleted object has none, and
        a file uploaded again at its path starts without."""
        uuid = await self.tagged()
        await self.backend.copy_object(ALICE, ALICE, "c", "disk", ALICE, "c", "copy")
        copy = await self.objects.object_at(ALICE, ALICE, "c", "copy", DOMAIN)
        self.assertNotEqual(copy.uuid, uuid)
        self.assertEqual(copy.attributes, {"kind": "disk"})
        await self.backend.copy_object(ALICE, ALICE, "c", "disk", ALICE, "c", "moved",
                                       move=True)
        moved = await self.objects.object_by_uuid(ALICE, uuid, DOMAIN)
        self.assertEqual((moved.name, moved.attributes), ("moved", {"kind": "disk"}))
        await self.fails(errors.NotFound, self.objects.object_at(ALICE, ALICE, "c", "disk"))
        await self.backend.delete_object(ALICE, ALICE, "c", "moved")
        await self.fails(errors.NotFound, self.objects.object_by_uuid(ALICE, uuid))
        await self.put("moved")
        self.assertEqual(
            (await self.objects.object_at(ALICE, ALICE, "c", "moved", DOMAIN)).attributes, {})
        self.assertEqual([o.name for o in await self.objects.find(ALICE, DOMAIN, "kind")],
                         ["copy"])


class FindTests(ObjectsCase):
    async def test_what_a_user_may_read(self):
        """The search finds, by path, the user's own files with the key and
        those others share with the user (directly, through a group, a
        directory object or a container, or with everybody), each with its
        attributes and own sharing; never files without the key or not
        shared with the user."""
        await self.container(user=BOB)
        await self.container(user=CAROL)
        await self.tagged("b-own", user=BOB)
        await self.tagged("untagged-but-named", user=BOB, other="x")
        await self.tagged("a-private")
        await self.tagged("b-direct")
        await self.share("b-direct", read=(BOB,))
        await self.tagged("c-public", user=CAROL)
        await self.share("c-public", read=("*",), owner=CAROL)
        await self.tagged("c-group", user=CAROL)
        await self.backend.update_account(CAROL, CAROL, None, False, {"friends": [BOB]})
        await self.share("c-group", read=(f"{CAROL}:friends",), owner=CAROL)
        await self.put("dir", b"", content_type="application/directory")
        await self.share("dir", read=(BOB,))
        await self.tagged("dir/d-inside")
        await self.tagged("dir/d-own-sharing")
        await self.share("dir/d-own-sharing", read=(CAROL,))
        await self.backend.put_container(ALICE, ALICE, "shared", {}, {})
        await self.backend.update_container(ALICE, ALICE, "shared", None, False, None,
                                            permissions=Permissions(read=(BOB,)))
        await self.put("e-in-shared", container="shared")
        await self.objects.set_attributes(ALICE, ALICE, "shared", "e-in-shared", DOMAIN,
                                          {"kind": "disk"})
        found = await self.objects.find(BOB, DOMAIN, "kind")
        self.assertEqual([o.path for o in found],
                         [f"{ALICE}/c/b-direct", f"{ALICE}/c/dir/d-inside",
                          f"{ALICE}/shared/e-in-shared", f"{BOB}/c/b-own",
                          f"{CAROL}/c/c-group", f"{CAROL}/c/c-public"])
        by_name = {o.name: o for o in found}
        self.assertEqual(by_name["b-direct"].sharing, Sharing((BOB,)))
        self.assertTrue(by_name["c-public"].sharing.public)
        self.assertEqual(by_name["dir/d-inside"].sharing, Sharing())
        self.assertEqual(by_name["b-own"].attributes, {"kind": "disk"})


    async def test_sharing_with_a_project(self):
        """An entry naming a project grants to a caller acting in that
        project (its token's scope) and to nobody else: found, read by
        path and uuid, its hashmap; the same user acting in another
        project (or with no scope) is refused as for a stranger."""
        project = "0f1e2d3c-project-of-bob-and-carol"
        uuid = await self.tagged("for-project")
        await self.share("for-project", read=(project,))
        for who in (BOB, CAROL):
            found = await self.objects.find(who, DOMAIN, "kind", project)
            self.assertEqual([o.name for o in found], ["for-project"])
            await self.objects.object_at(who, ALICE, "c", "for-project", project=project)
            await self.objects.object_by_uuid(who, uuid, project=project)
            hm = await self.objects.hashmap(who, ALICE, "c", "for-project", project)
            self.assertEqual(hm.size, 4)
        for scope in (None, BOB, "another-project"):
            self.assertEqual(await self.objects.find(BOB, DOMAIN, "kind", scope), [])
            await self.fails(errors.NotFound, self.objects.object_at(
                BOB, ALICE, "c", "for-project", project=scope))
            await self.fails(errors.NotFound, self.objects.hashmap(
                BOB, ALICE, "c", "for-project", scope))

class ContentTests(ObjectsCase):
    async def test_hashmap_and_create_from_it(self):
        """A file's hashmap makes another file with the same content
        without copying data; a container is created for its owner."""
        data = bytes(range(256)) * 2
        info = await self.put("disk", data)
        hashmap = await self.objects.hashmap(ALICE, ALICE, "c", "disk")
        self.assertEqual(hashmap, ObjectHashmap(info.serial, len(data),
                                                tuple(hashmap_of(data, BS))))
        made = await self.objects.create_from_hashmap(
            ALICE, ALICE, "snapshots", "snap", hashmap.size, hashmap.hashes,
            "application/x-snapshot")
        self.assertEqual((made.hash, made.size, made.type),
                         (info.hash, len(data), "application/x-snapshot"))
        self.assertNotEqual(made.uuid, info.uuid)

    async def test_missing_blocks_are_refused(self):
        """A hashmap naming blocks the store lacks is a Conflict listing
        them, and nothing is stored."""
        absent = hashmap_of(b"never stored" * 10, BS)
        e = await self.fails(MissingBlocks, self.objects.create_from_hashmap(
            ALICE, ALICE, "c", "ghost", 120, absent))
        self.assertIsInstance(e, errors.Conflict)
        self.assertEqual(sorted(e.hashes), sorted(set(absent)))
        await self.fails(errors.NotFound, self.objects.object_at(ALICE, ALICE, "c", "ghost"))

    async def test_new_content_keeps_attributes(self):
        """New content made from a hashmap keeps the file's uuid and
        attributes."""
        uuid = await self.tagged()
        data = b"z" * 150
        await self.blocks.put([data[i:i + BS] for i in range(0, len(data), BS)])
        await self.objects.create_from_hashmap(ALICE, ALICE, "c", "disk", len(data),
                                               hashmap_of(data, BS))
        at = await self.objects.object_at(ALICE, ALICE, "c", "disk", DOMAIN)
        self.assertEqual((at.uuid, at.size, at.attributes), (uuid, 150, {"kind": "disk"}))

    async def test_store_file(self):
        """A local file is stored block by block into a new container; the
        file reads back whole through the block store."""
        data = bytes(range(200)) + b"tail"
        source = Path(self.mktemp())
        source.write_bytes(data)
        stored = await self.objects.store_file(ALICE, ALICE, "images", "f.img", source,
                                               "application/x-disk")
        self.assertEqual((stored.size, stored.hash, stored.type, stored.path),
                         (len(data), merkle(hashmap_of(data, BS)), "application/x-disk",
                          f"{ALICE}/images/f.img"))
        hashmap = await self.objects.hashmap(ALICE, ALICE, "images", "f.img")
        blocks = [await self.blocks.get(h) for h in hashmap.hashes]
        self.assertEqual(b"".join(blocks)[:len(data)], data)
        empty = Path(self.mktemp())
        empty.write_bytes(b"")
        self.assertEqual((await self.objects.store_file(ALICE, ALICE, "images", "e", empty)
                          ).size, 0)

    async def test_sharing(self):
        """Sharing is kept as the object store keeps it (normalised, ``*``
        absorbing its list) and ``Sharing()`` removes it; a bad entry is a
        400."""
        await self.put("disk")
        await self.share("disk", read=(" Bob-UUID ", CAROL), write=(CAROL,))
        at = await self.objects.object_at(ALICE, ALICE, "c", "disk")
        self.assertEqual(at.sharing, Sharing((BOB, CAROL), (CAROL,)))
        self.assertFalse(at.sharing.public)
        await self.share("disk", read=(BOB, "*"))
        self.assertEqual((await self.objects.object_at(ALICE, ALICE, "c", "disk")).sharing,
                         Sharing(("*",)))
        await self.share("disk")
        self.assertEqual((await self.objects.object_at(ALICE, ALICE, "c", "disk")).sharing,
                         Sharing())
        await self.fails(errors.BadRequest, self.objects.set_sharing(
            ALICE, ALICE, "c", "disk", Sharing(("a,b",))))


class PlanktonDomainMigrationTests(unittest.TestCase):
    def test_image_metadata_moves_to_its_domain(self):
        """Migration 0003 moves the ``plankton:*`` keys of the ``pithos``
        domain to the ``plankton`` domain, keys and values unchanged, and
        leaves the object metadata where it is."""
        conn = psycopg2.connect(fresh_database(self))
        self.addCleanup(conn.close)
        migrations.upgrade(conn, [NODE_SCHEMA])
        for migration in PITHOS.migrations()[:2]:
            with conn.cursor() as cur:
                migrations.apply_txn(cur, migration)
            conn.commit()
        with conn.cursor() as txn:
            account = store.ensure_account_txn(txn, "acct", 1.0)
            container = store.create_node_txn(txn, account, "acct/c")
            node = store.create_node_txn(txn, container, "acct/c/disk")
            assert node is not None
            version = store.insert_version_txn(
                txn, node, hash="h", size=1, type="t", source=None, mtime=1.0, muser="u",
                uuid="x", checksum="", cluster=store.NORMAL, map_id=None,
                meta={"plankton:name": "Debian", "plankton:property:OS": "debian",
                      "X-Object-Meta-Colour": "blue"})
        conn.commit()
        done = migrations.upgrade(conn, [NODE_SCHEMA, PITHOS])
        self.assertEqual((done[0].component, done[0].version), ("pithos", 3))
        with conn.cursor() as txn:
            self.assertEqual(store.attributes_txn(txn, version.serial),
                             {"X-Object-Meta-Colour": "blue"})
            self.assertEqual(store.domain_attributes_txn(txn, [version.serial], "plankton"),
                             {version.serial: {"plankton:name": "Debian",
                                               "plankton:property:OS": "debian"}})
            txn.execute("SELECT to_regclass('pithos_attributes_domain_key')")
            self.assertIsNotNone(txn.fetchone()[0])
        conn.rollback()
        migrations.check(conn, [NODE_SCHEMA, PITHOS])
