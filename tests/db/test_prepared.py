"""Prepared statements: planned once per connection, same answers."""

from __future__ import annotations

import psycopg2
from twisted.internet import defer, reactor
from twisted.trial import unittest

from snfd.db.pool import Database, connection_options
from snfd.db.prepared import Prepared, execute
from snfd.metrics import Metrics
from snfd.testing.postgres import fresh_database

LOOKUP = Prepared("SELECT v FROM kv WHERE k = %(key)s AND %(min)s::int <= v")


def _setup_txn(txn):
    txn.execute("CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)")
    txn.execute("INSERT INTO kv VALUES ('a', 1), ('b', 2)")


def _lookup_txn(txn, key, least=0):
    LOOKUP.execute(txn, {"key": key, "min": least})
    row = txn.fetchone()
    return None if row is None else row[0]


def _prepared_names_txn(txn):
    txn.execute("SELECT name, generic_plans FROM pg_prepared_statements")
    return dict(txn.fetchall())


class PreparedTests(unittest.TestCase):
    def setUp(self):
        self.dsn = fresh_database(self)

    def test_placeholders(self):
        with self.assertRaises(ValueError):
            Prepared("SELECT v FROM kv WHERE k = %s AND v = %(v)s")
        conn = psycopg2.connect(self.dsn, **connection_options("test"))
        self.addCleanup(conn.close)
        cur = conn.cursor()
        execute(cur, "SELECT %s::text || '%%' || %s::text", ("a", "b"))
        self.assertEqual(cur.fetchone()[0], "a%b")
        execute(cur, "SELECT %(x)s::int + %(x)s::int + %(y)s::int", {"x": 1, "y": 5})
        self.assertEqual(cur.fetchone()[0], 7)
        execute(cur, "SELECT 42")
        self.assertEqual(cur.fetchone()[0], 42)
        self.assertEqual(Prepared("SELECT 1").name, Prepared("SELECT 1").name)
        self.assertNotEqual(Prepared("SELECT 1").name, Prepared("SELECT 2").name)

    def test_answers_on_a_cursor(self):
        """On a plain cursor: prepared once, executed with its arguments
        (a repeated name is one parameter), also after a rollback."""
        conn = psycopg2.connect(self.dsn, **connection_options("test"))
        self.addCleanup(conn.close)
        cur = conn.cursor()
        _setup_txn(cur)
        conn.commit()
        self.assertEqual(_lookup_txn(cur, "b"), 2)
        self.assertIsNone(_lookup_txn(cur, "b", 3))
        conn.rollback()
        self.assertEqual(_lookup_txn(cur, "a"), 1)
        cur.execute("SELECT count(*) FROM pg_prepared_statements WHERE name = %s",
                    (LOOKUP.name,))
        self.assertEqual(cur.fetchone()[0], 1)

    def test_generic_plan_in_the_pool(self):
        """In the pool's sessions the plan is generic from the first
        execution; a new connection prepares its own."""
        def pool():
            db = Database(self.dsn, reactor, Metrics(), min_connections=1, max_connections=1)
            db.start()
            self.addCleanup(db.close)
            return db

        async def check():
            db = pool()
            await db.run("t", _setup_txn)
            for key, want in (("a", 1), ("b", 2), ("c", None)):
                self.assertEqual(await db.read("t", _lookup_txn, key), want)
                self.assertEqual(await db.run("t", _lookup_txn, key), want)
            names = await db.read("t", _prepared_names_txn)
            self.assertEqual(names, {LOOKUP.name: 6})
            db.close()
            db = pool()
            self.assertEqual(await db.read("t", _lookup_txn, "a"), 1)
            self.assertEqual(await db.read("t", _prepared_names_txn), {LOOKUP.name: 1})

        return defer.ensureDeferred(check())
