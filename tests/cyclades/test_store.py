"""The compute service's SQL (``snfd.cyclades.store``) on real PostgreSQL:
the migration, backends and their counters, flavors unique on their shape,
servers with JSON columns and change tracking, keypairs, one-use build
parameters and expiring passwords."""

from __future__ import annotations

import datetime

import psycopg2
from twisted.trial import unittest

from snfd.cyclades import store
from snfd.db.migrations import NODE_SCHEMA, Schema
from snfd.testing.postgres import fresh_database

CYCLADES = Schema("cyclades", "snfd.cyclades.schema")


class StoreTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.conn = psycopg2.connect(fresh_database(self, [NODE_SCHEMA, CYCLADES]))
        self.addCleanup(self.conn.close)
        self.txn = self.conn.cursor()


class BackendTests(StoreTestCase):
    def test_add_modify_charge_remove(self):
        """A backend is added with its settings, counts allocations at once,
        and is removed only while it holds no live server."""
        b = store.add_backend_txn(self.txn, "c1", "https://127.0.0.1:5080",
                                  disk_templates=("file", "diskless"), username="u")
        self.assertEqual(b.disk_templates, ("file", "diskless"))
        self.assertIsNone(b.stats_updated)
        b = store.update_backend_txn(self.txn, b.id, mfree=1000, dfree=5000, pinst_cnt=1,
                                     ctotal=4)
        self.assertGreater(b.stats_updated.year, 2000)
        store.charge_backend_txn(self.txn, b.id, 128, 1024)
        b = store.backend_txn(self.txn, b.id)
        self.assertEqual((b.mfree, b.dfree, b.pinst_cnt), (872, 3976, 2))
        self.assertEqual(store.backend_txn(self.txn, clustername="c1"), b)
        flavor, _ = store.create_flavor_txn(self.txn, 1, 128, 1, "file")
        server = store.insert_server_txn(self.txn, "u1", "p1", "vm", flavor.id, "img",
                                         backend_id=b.id)
        self.assertEqual(store.remove_backend_txn(self.txn, b.id), 1)
        store.update_server_txn(self.txn, server.id, deleted=True)
        self.assertEqual(store.remove_backend_txn(self.txn, b.id), 0)
        self.assertIsNone(store.backend_txn(self.txn, b.id))

    def test_unknown_setting_refused(self):
        """Only declared columns can be set."""
        b = store.add_backend_txn(self.txn, "c1", "https://x:1")
        self.assertRaises(ValueError, store.update_backend_txn, self.txn, b.id, id=4)


class FlavorTests(StoreTestCase):
    def test_unique_shape(self):
        """Creating a flavor twice returns the first (undeleted)."""
        a, new_a = store.create_flavor_txn(self.txn, 2, 2048, 20, "drbd")
        store.update_flavor_txn(self.txn, a.id, deleted=True)
        self.assertEqual(store.flavors_txn(self.txn), [])
        b, new_b = store.create_flavor_txn(self.txn, 2, 2048, 20, "drbd")
        self.assertEqual((a.id, new_a, new_b, b.deleted), (b.id, True, False, False))
        self.assertEqual(b.name, "C2R2048D20drbd")


class ServerTests(StoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.flavor, _ = store.create_flavor_txn(self.txn, 1, 512, 5, "file")

    def test_json_and_arrays_round_trip(self):
        """Metadata, tags, NICs and disks come back as they were stored."""
        s = store.insert_server_txn(
            self.txn, "u1", "p1", "vm", self.flavor.id, "img", metadata={"OS": "debian"},
            tags=("a", "b"), nics=({"id": 1, "ip": None},), image={"name": "Debian"})
        self.assertEqual((s.operstate, s.metadata, s.tags, s.nics, s.image["name"]),
                         ("BUILD", {"OS": "debian"}, ("a", "b"), ({"id": 1, "ip": None},),
                          "Debian"))
        self.assertIsNone(s.backendtime)
        when = datetime.datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=datetime.UTC)
        s = store.update_server_txn(self.txn, s.id, backendtime=when, operstate="STARTED")
        self.assertEqual((s.backendtime, s.operstate), (when, "STARTED"))

    def test_changes_since_includes_deleted(self):
        """A listing since a time includes servers deleted after it."""
        a = store.insert_server_txn(self.txn, "u1", "p1", "a", self.flavor.id, "img")
        store.insert_server_txn(self.txn, "u2", "p1", "b", self.flavor.id, "img")
        self.conn.commit()
        self.txn.execute("SELECT now()")
        since = self.txn.fetchone()[0]
        self.conn.commit()
        store.update_server_txn(self.txn, a.id, deleted=True)
        self.assertEqual([s.id for s in store.servers_txn(self.txn, userid="u1")], [])
        self.assertEqual([s.id for s in store.servers_txn(self.txn, userid="u1",
                                                           since=since)], [a.id])

    def test_usage(self):
        """Usage sums live servers per user and project; stopped ones hold
        no online cpu/ram."""
        a = store.insert_server_txn(self.txn, "u1", "p1", "a", self.flavor.id, "img")
        store.insert_server_txn(self.txn, "u1", "p1", "b", self.flavor.id, "img",
                                operstate="STOPPED")
        store.insert_server_txn(self.txn, "u1", "p1", "c", self.flavor.id, "img",
                                deleted=True)
        self.assertEqual(store.usage_txn(self.txn)[("u1", "p1")],
                         {"vm": 2, "total_cpu": 2, "total_ram": 1024, "disk": 10,
                          "cpu": 1, "ram": 512})
        self.assertEqual(a.flavor, self.flavor)


class SecretsTests(StoreTestCase):
    def test_params_are_one_use(self):
        """Build parameters can be taken once."""
        flavor, _ = store.create_flavor_txn(self.txn, 1, 512, 5, "file")
        s = store.insert_server_txn(self.txn, "u1", "p1", "a", flavor.id, "img")
        store.put_params_txn(self.txn, "k", s.id, {"img_passwd": "x"})
        self.assertEqual(store.take_params_txn(self.txn, "k"), {"img_passwd": "x"})
        self.assertIsNone(store.take_params_txn(self.txn, "k"))

    def test_password_expires(self):
        """A cached password is gone once expired."""
        flavor, _ = store.create_flavor_txn(self.txn, 1, 512, 5, "file")
        s = store.insert_server_txn(self.txn, "u1", "p1", "a", flavor.id, "img")
        now = datetime.datetime.now(datetime.UTC)
        store.put_password_txn(self.txn, s.id, "pw", now + datetime.timedelta(hours=1))
        self.assertEqual(store.password_txn(self.txn, s.id), "pw")
        store.put_password_txn(self.txn, s.id, "pw", now - datetime.timedelta(hours=1))
        self.assertIsNone(store.password_txn(self.txn, s.id))

    def test_keypairs(self):
        """Keypair names are unique per user."""
        self.assertTrue(store.add_keypair_txn(self.txn, "u", "k", "ssh-rsa A", "f"))
        self.assertFalse(store.add_keypair_txn(self.txn, "u", "k", "ssh-rsa B", "f"))
        self.assertTrue(store.add_keypair_txn(self.txn, "v", "k", "ssh-rsa B", "f"))
        self.assertEqual([k["public_key"] for k in store.keypairs_txn(self.txn, "u")],
                         ["ssh-rsa A"])
        self.assertTrue(store.delete_keypair_txn(self.txn, "u", "k"))
        self.assertFalse(store.delete_keypair_txn(self.txn, "u", "k"))
