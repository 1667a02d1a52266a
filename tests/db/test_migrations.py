"""Numbered migrations: applied once, recorded, checked, concurrent-safe."""

from __future__ import annotations

import psycopg2
from twisted.trial import unittest

from snfd.db import migrations
from snfd.db.migrations import NODE_SCHEMA, Schema, SchemaError
from snfd.testing.postgres import fresh_database


class MigrationTests(unittest.TestCase):
    def connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(fresh_database(self))
        self.addCleanup(conn.close)
        return conn

    def test_node_schema_applies_and_is_recorded(self) -> None:
        """Upgrading a fresh database creates the cluster tables and records
        every node migration in schema_version; a second upgrade does nothing."""
        conn = self.connect()
        done = migrations.upgrade(conn, [NODE_SCHEMA])
        self.assertEqual([m.version for m in done], list(range(1, NODE_SCHEMA.latest + 1)))
        with conn.cursor() as cur:
            cur.execute("SELECT epoch FROM cluster_leader")
            self.assertEqual(cur.fetchall(), [(0,)])
            cur.execute("SELECT count(*) FROM nodes")
            self.assertEqual(cur.fetchone(), (0,))
            self.assertEqual(migrations.applied_txn(cur), {"node": NODE_SCHEMA.latest})
        conn.rollback()
        self.assertEqual(migrations.upgrade(conn, [NODE_SCHEMA]), [])

    def test_check_refuses_outdated_schema(self) -> None:
        """check() on a database lacking migrations names the component and
        says to run snf-manage upgrade."""
        conn = self.connect()
        e = self.assertRaises(SchemaError, migrations.check, conn, [NODE_SCHEMA])
        self.assertIn("node at version 0", str(e))
        self.assertIn("snf-manage upgrade", str(e))
        migrations.upgrade(conn, [NODE_SCHEMA])
        migrations.check(conn, [NODE_SCHEMA])

    def test_failed_migration_leaves_nothing(self) -> None:
        """A migration that fails is rolled back whole and not recorded; the
        error names the file."""
        conn = self.connect()
        bad = Schema("broken", "tests.db.broken_schema")
        e = self.assertRaises(SchemaError, migrations.upgrade, conn, [bad])
        self.assertIn("broken 0002_fails", str(e))
        with conn.cursor() as cur:
            self.assertEqual(migrations.applied_txn(cur), {"broken": 1})
            cur.execute("SELECT to_regclass('half_done')")
            self.assertEqual(cur.fetchone(), (None,))
        conn.rollback()

    def test_gap_in_numbering_is_an_error(self) -> None:
        """A schema directory with a missing number is refused before anything runs."""
        e = self.assertRaises(SchemaError, Schema("gap", "tests.db.gap_schema").migrations)
        self.assertIn("0002 is missing", str(e))

    def test_concurrent_upgrades_apply_once(self) -> None:
        """Two connections upgrading the same database apply each migration
        exactly once (the advisory lock serializes them)."""
        dsn = fresh_database(self)
        a, b = psycopg2.connect(dsn), psycopg2.connect(dsn)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        # b computes its pending list before a applies anything.
        with b.cursor() as cur:
            todo_b = migrations.pending_txn(cur, [NODE_SCHEMA])
        b.commit()
        migrations.upgrade(a, [NODE_SCHEMA])
        applied_by_b = []
        for m in todo_b:
            with b.cursor() as cur:
                applied_by_b.append(migrations.apply_txn(cur, m))
            b.commit()
        self.assertEqual(applied_by_b, [False] * len(todo_b))
