"""The storage service's SQL (``snfd.pithos.store``) on real PostgreSQL:
the migration, byte-wise path ranges, hashmaps and their release, meta
key counts, sharing rows and the garbage collector's marks."""

from __future__ import annotations

import secrets

import psycopg2
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from snfd.db import migrations
from snfd.db.migrations import NODE_SCHEMA, Schema
from snfd.pithos import store
from snfd.pithos.hashmap import EMPTY_HASH, hashmap_of
from snfd.pithos.model import Permissions
from snfd.testing.postgres import admin_dsn, drop_database, dsn_with_database, fresh_database

PITHOS = Schema("pithos", "snfd.pithos.schema")
NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=6)


class StoreTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.conn = psycopg2.connect(fresh_database(self, [NODE_SCHEMA, PITHOS]))
        self.addCleanup(self.conn.close)
        self.txn = self.conn.cursor()

    def container(self, account: str = "acct", name: str = "c") -> int:
        anode = store.ensure_account_txn(self.txn, account, 1.0)
        node = store.create_node_txn(self.txn, anode, f"{account}/{name}")
        assert node is not None
        return node

    def version(self, container: int, path: str, hashes: list[str] | None = None,
                meta: dict[str, str] | None = None) -> store.Version:
        node = store.node_txn(self.txn, path) or store.create_node_txn(self.txn, container,
                                                                        path)
        map_id = store.insert_map_txn(self.txn, hashes) if hashes else None
        return store.insert_version_txn(
            self.txn, node, hash="h", size=1, type="t", source=None, mtime=1.0, muser="u",
            uuid="x", checksum="", cluster=store.NORMAL, map_id=map_id, meta=meta or {})


class MigrationTests(unittest.TestCase):
    def test_migration_applies(self):
        """The pithos migration applies on top of the node schema and is
        recorded; applying again does nothing."""
        conn = psycopg2.connect(fresh_database(self))
        self.addCleanup(conn.close)
        done = migrations.upgrade(conn, [NODE_SCHEMA, PITHOS])
        self.assertIn(("pithos", 1), [(m.component, m.version) for m in done])
        self.assertEqual(migrations.upgrade(conn, [NODE_SCHEMA, PITHOS]), [])
        migrations.check(conn, [NODE_SCHEMA, PITHOS])

    def test_uploads_migration(self):
        """Migration 0004 adds the block upload records on a schema at
        0003: recorded blocks are found per account and can be dropped."""
        conn = psycopg2.connect(fresh_database(self))
        self.addCleanup(conn.close)
        migrations.upgrade(conn, [NODE_SCHEMA])
        for migration in PITHOS.migrations()[:3]:
            with conn.cursor() as cur:
                migrations.apply_txn(cur, migration)
            conn.commit()
        done = migrations.upgrade(conn, [NODE_SCHEMA, PITHOS])
        self.assertEqual([(m.component, m.version) for m in done][:1], [("pithos", 4)])
        a, b = hashmap_of(b"one"), hashmap_of(b"two")
        with conn.cursor() as txn:
            store.record_uploads_txn(txn, "acct", [(a[0], 3), (b[0], 3)])
            store.record_uploads_txn(txn, "acct", [(a[0], 3)])
            self.assertEqual(store.uploaded_txn(txn, "acct", a + b), {a[0], b[0]})
            self.assertEqual(store.uploaded_txn(txn, "other", a + b), set())
            store.forget_uploads_txn(txn, "acct", a)
            self.assertEqual(store.uploaded_txn(txn, "acct", a + b), {b[0]})
        conn.commit()
        migrations.check(conn, [NODE_SCHEMA, PITHOS])

    def test_expiry_migration(self):
        """Migration 0005 adds the index the sweep of expired objects
        (snfd.pithos.expiry) reads, on a schema at 0004."""
        conn = psycopg2.connect(fresh_database(self))
        self.addCleanup(conn.close)
        migrations.upgrade(conn, [NODE_SCHEMA])
        for migration in PITHOS.migrations()[:4]:
            with conn.cursor() as cur:
                migrations.apply_txn(cur, migration)
            conn.commit()
        done = migrations.upgrade(conn, [NODE_SCHEMA, PITHOS])
        self.assertEqual([(m.component, m.version) for m in done][:1], [("pithos", 5)])
        with conn.cursor() as txn:
            txn.execute("SELECT indexdef FROM pg_indexes"
                        " WHERE indexname = 'pithos_attributes_delete_at'")
            self.assertIn("X-Delete-At", txn.fetchone()[0])
            self.assertEqual(store.expiring_txn(txn, "9999999999", None, None, 10), [])
        migrations.check(conn, [NODE_SCHEMA, PITHOS])


class SuccessorTests(unittest.TestCase):
    @given(NAMES, NAMES)
    def test_successor_bounds_the_prefix(self, prefix, rest):
        """Every string starting with the prefix is below its successor,
        and the successor does not start with the prefix."""
        nxt = store.successor(prefix)
        if nxt is None:
            self.assertTrue(all(c == "\U0010ffff" for c in prefix))
            return
        self.assertLess((prefix + rest).encode(), nxt.encode())
        self.assertFalse(nxt.startswith(prefix) and prefix != "")
        self.assertLessEqual(prefix.encode(), nxt.encode())

    def test_surrogates_skipped(self):
        """The successor never contains a surrogate (not storable)."""
        self.assertEqual(store.successor("a\ud7ff"), "a\ue000")
        self.assertEqual(store.successor("\U0010ffff"), None)
        self.assertEqual(store.successor("a\U0010ffff"), "b")


def _english_database(testcase) -> str:
    """A migrated database whose default collation sorts like English
    ('a' < 'B' < 'é' < 'z'), unlike code point order."""
    admin = admin_dsn()
    name = f"snfd_test_icu_{secrets.token_hex(6)}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
                        " LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    finally:
        conn.close()
    testcase.addCleanup(drop_database, admin, name)
    dsn = dsn_with_database(admin, name)
    conn = psycopg2.connect(dsn)
    try:
        migrations.upgrade(conn, [NODE_SCHEMA, PITHOS])
    finally:
        conn.close()
    return dsn


class CollationTests(StoreTestCase):
    def setUp(self) -> None:
        self.conn = psycopg2.connect(_english_database(self))
        self.addCleanup(self.conn.close)
        self.txn = self.conn.cursor()

    def test_paths_compare_bytewise(self):
        """Listings order by code point even in a database whose locale
        sorts otherwise."""
        self.txn.execute("SELECT 'B' < 'a'")
        self.assertEqual(self.txn.fetchone(), (False,))  # the locale differs
        c = self.container()
        names = ["b", "B", "é", "e", "日", "😀", "a/b", "a-b"]
        for n in names:
            self.version(c, f"acct/c/{n}")
        rows = store.object_rows_txn(self.txn, c, limit=100)
        self.assertEqual([p for p, _ in rows], sorted(f"acct/c/{n}" for n in names))
        rows = store.object_rows_txn(self.txn, c, after="acct/c/a", before="acct/c/e",
                                     limit=100)
        self.assertEqual([p for p, _ in rows], ["acct/c/a-b", "acct/c/a/b", "acct/c/b"])
        rows = store.object_rows_txn(self.txn, c, limit=100, filters=[], exact=[],
                                     prefixes=["acct/c/a"])
        self.assertEqual([p for p, _ in rows], ["acct/c/a-b", "acct/c/a/b"])


class StoreTests(StoreTestCase):

    def test_maps_round_trip_and_release(self):
        """A hashmap reads back as stored (duplicates kept); a map is
        released only when no version references it."""
        c = self.container()
        hashes = hashmap_of(b"x" * 10 + b"y" * 10 + b"x" * 10, 10)
        v = self.version(c, "acct/c/o", hashes)
        self.assertEqual(store.map_hashes_txn(self.txn, v.map_id), hashes)
        self.assertEqual(store.map_hashes_txn(self.txn, None), [EMPTY_HASH])
        self.assertEqual(store.release_maps_txn(self.txn, [v.map_id]), 0)
        store.delete_versions_txn(self.txn, [v])
        self.assertIsNone(store.node_txn(self.txn, "acct/c/o"))
        self.txn.execute("SELECT count(*) FROM pithos_maps")
        self.assertEqual(self.txn.fetchone(), (0,))
        self.assertEqual(store.gc_mark_txn(self.txn, hashes[:2]), hashes[:2])

    def test_meta_key_counts(self):
        """Meta key counts go up and down and vanish at zero."""
        c = self.container()
        store.adjust_meta_keys_txn(self.txn, c, {"X-Object-Meta-A": 2, "X-Object-Meta-B": 1})
        store.adjust_meta_keys_txn(self.txn, c, {"X-Object-Meta-A": -1, "X-Object-Meta-B": -1})
        self.assertEqual(store.meta_keys_txn(self.txn, c), ["X-Object-Meta-A"])
        store.adjust_meta_keys_txn(self.txn, c, {"X-Object-Meta-A": -1})
        self.assertEqual(store.meta_keys_txn(self.txn, c), [])

    def test_permissions(self):
        """Sharing rows set, replace, read back by path, by prefix and by
        member."""
        store.set_permissions_txn(self.txn, "acct/c/o", Permissions(("b", "a"), ("w",)))
        store.set_permissions_txn(self.txn, "acct/c/p", Permissions(("z",)))
        store.set_permissions_txn(self.txn, "acct/cc/q", Permissions(("z",)))
        self.assertEqual(store.permissions_txn(self.txn, ["acct/c/o", "acct/x"]),
                         {"acct/c/o": Permissions(("a", "b"), ("w",))})
        under = store.permissions_under_txn(self.txn, "acct/c/")
        self.assertEqual(sorted(under), ["acct/c/o", "acct/c/p"])
        self.assertEqual(sorted(store.permissions_under_txn(self.txn, "acct/", ["z"])),
                         ["acct/c/p", "acct/cc/q"])
        store.set_permissions_txn(self.txn, "acct/c/o", Permissions())
        self.assertEqual(store.permissions_txn(self.txn, ["acct/c/o"]), {})

    def test_gc_marks(self):
        """Marking returns the unreferenced names (never the empty block)
        and records them; referenced names are not marked."""
        c = self.container()
        used = hashmap_of(b"used", 10)
        self.version(c, "acct/c/o", used)
        free = hashmap_of(b"free", 10)
        marked = store.gc_mark_txn(self.txn, [*used, *free, EMPTY_HASH])
        self.assertEqual(marked, free)
        self.assertEqual(store.gc_marked_txn(self.txn, [*free, *used]), free)
        store.gc_unmark_txn(self.txn, free)
        self.assertEqual(store.gc_marked_txn(self.txn, free), [])
