"""Backend allocation (``snfd.cyclades.allocator``): the reference's filter
chain and score as pure functions, the locked choice that charges the
chosen backend at once on real PostgreSQL, and statistics summed from a
cluster's nodes."""

from __future__ import annotations

import datetime

import attrs
import psycopg2
from twisted.trial import unittest

from snfd.cyclades import allocator, store
from snfd.cyclades.model import Flavor, GanetiBackend
from snfd.db.migrations import NODE_SCHEMA, Schema
from snfd.testing.postgres import fresh_database

CYCLADES = Schema("cyclades", "snfd.cyclades.schema")
UTC = datetime.UTC


def backend(id: int, **kw) -> GanetiBackend:
    values = dict(clustername=f"c{id}", rapi_url="https://127.0.0.1:1", mfree=8192,
                  mtotal=16384, dfree=100_000, dtotal=200_000, pinst_cnt=0, ctotal=8,
                  disk_templates=("file", "diskless", "drbd", "ext"))
    values.update(kw)
    return GanetiBackend(id=id, **values)


FLAVOR = Flavor(id=1, cpu=1, ram=1024, disk=10, disk_template="file")


class FilterTests(unittest.TestCase):
    def test_project_filter_prefers_assigned(self):
        """Backends assigned to the project are the only candidates; without
        any, only public backends are."""
        public, private, assigned = (backend(1), backend(2, public=False),
                                     backend(3, public=False, projects=("p1",)))
        self.assertEqual(allocator.project_filter([public, private, assigned], "p1"),
                         [assigned])
        self.assertEqual(allocator.project_filter([public, private, assigned], "p2"),
                         [public])

    def test_fits(self):
        """A flavor fits when disk, memory and the CPU rule all hold; DRBD
        counts the disk twice."""
        self.assertTrue(allocator.fits(backend(1), FLAVOR))
        self.assertFalse(allocator.fits(backend(1, mfree=1024), FLAVOR))
        self.assertFalse(allocator.fits(backend(1, dfree=10 * 1024), FLAVOR))
        # (5 + 1) * 4 / 8 = 3 is not < 3
        self.assertFalse(allocator.fits(backend(1, pinst_cnt=5), FLAVOR))
        drbd = attrs.evolve(FLAVOR, disk_template="drbd")
        self.assertEqual(allocator.disk_needed(drbd), 20 * 1024)
        self.assertFalse(allocator.fits(backend(1, dfree=15 * 1024), drbd))
        self.assertTrue(allocator.fits(backend(1, dfree=15 * 1024), FLAVOR))

    def test_default_filter_keeps_all_when_none_fits(self):
        """When the flavor fits no backend, the default filter keeps them all."""
        full = [backend(1, mfree=10), backend(2, dfree=0)]
        self.assertEqual(allocator.default_filter(full, FLAVOR), full)
        mixed = [backend(1, mfree=10), backend(2)]
        self.assertEqual([b.id for b in allocator.default_filter(mixed, FLAVOR)], [2])

    def test_template_filter_maps_ext(self):
        """``ext_<provider>`` flavors need the ``ext`` template."""
        bs = [backend(1, disk_templates=("file",)), backend(2, disk_templates=("ext",))]
        ext = attrs.evolve(FLAVOR, disk_template="ext_archipelago")
        self.assertEqual([b.id for b in allocator.template_filter(bs, ext)], [2])
        self.assertEqual([b.id for b in allocator.template_filter(bs, FLAVOR)], [1])

    def test_score_and_choice(self):
        """The least loaded backend by the reference's score wins; ties go
        to the lowest id."""
        idle = backend(1, mfree=16000, dfree=190_000)
        busy = backend(2, pinst_cnt=3, mfree=4000)
        self.assertLess(allocator.score(idle), allocator.score(busy))
        self.assertAlmostEqual(
            allocator.score(busy), 0.5 * (4 * 4 / 24) + 0.5 * ((1 - 4000 / 16384) + 0.5))
        self.assertEqual(allocator.choose([busy, idle], FLAVOR, "p").id, 1)
        self.assertEqual(allocator.choose([backend(5), backend(4)], FLAVOR, "p").id, 4)

    def test_no_candidate(self):
        """No backend with the template means no choice."""
        self.assertIsNone(allocator.choose([backend(1, disk_templates=("plain",))], FLAVOR,
                                           "p"))
        self.assertIsNone(allocator.choose([], FLAVOR, "p"))

    def test_node_stats(self):
        """Statistics are sums over vm_capable, online, undrained nodes;
        missing (None) values count zero."""
        nodes = [
            {"name": "n1", "mfree": 100, "mtotal": 200, "dfree": 1000, "dtotal": 2000,
             "pinst_cnt": 2, "ctotal": 4, "vm_capable": True, "offline": False,
             "drained": False},
            {"name": "n2", "mfree": 50, "mtotal": 100, "dfree": 500, "dtotal": 1000,
             "pinst_cnt": 1, "ctotal": 2, "vm_capable": True, "offline": False,
             "drained": True},
            {"name": "n3", "mfree": None, "mtotal": None, "dfree": None, "dtotal": None,
             "pinst_cnt": 0, "ctotal": None, "vm_capable": True, "offline": True,
             "drained": False},
            {"name": "n4", "mfree": 10, "mtotal": 20, "dfree": None, "dtotal": 30,
             "pinst_cnt": 1, "ctotal": 1, "vm_capable": True, "offline": False,
             "drained": False},
            {"name": "n5", "mfree": 999, "mtotal": 999, "dfree": 999, "dtotal": 999,
             "pinst_cnt": 9, "ctotal": 9, "vm_capable": False, "offline": False,
             "drained": False},
        ]
        self.assertEqual(allocator.node_stats(nodes),
                         {"mfree": 110, "mtotal": 220, "dfree": 1000, "dtotal": 2030,
                          "pinst_cnt": 3, "ctotal": 5})

    def test_staleness(self):
        """Statistics never refreshed, or older than the minimum age, are stale."""
        now = datetime.datetime(2024, 1, 1, tzinfo=UTC)
        self.assertTrue(allocator.is_stale(backend(1), 60, now))
        fresh = backend(1, stats_updated=now - datetime.timedelta(seconds=10))
        self.assertFalse(allocator.is_stale(fresh, 60, now))
        self.assertTrue(allocator.is_stale(fresh, 5, now))


class ChooseTxnTests(unittest.TestCase):
    def setUp(self) -> None:
        self.conn = psycopg2.connect(fresh_database(self, [NODE_SCHEMA, CYCLADES]))
        self.addCleanup(self.conn.close)
        self.txn = self.conn.cursor()

    def add(self, name: str, **settings) -> GanetiBackend:
        stats = {k: settings.pop(k) for k in list(settings)
                 if k in ("mfree", "mtotal", "dfree", "dtotal", "pinst_cnt", "ctotal")}
        b = store.add_backend_txn(self.txn, name, "https://127.0.0.1:1",
                                  disk_templates=("file", "diskless"), **settings)
        base = dict(mfree=8192, mtotal=16384, dfree=100_000, dtotal=200_000, pinst_cnt=0,
                    ctotal=8)
        base.update(stats)
        return store.update_backend_txn(self.txn, b.id, **base)

    def test_charges_the_chosen_backend(self):
        """The chosen backend's free memory and disk drop and its instance
        count grows in the same transaction; offline and drained backends
        are never chosen."""
        self.add("offline", offline=True, mfree=16000)
        self.add("drained", drained=True, mfree=16000)
        good = self.add("good")
        chosen = allocator.choose_backend_txn(self.txn, FLAVOR, "p1")
        self.assertEqual(chosen.id, good.id)
        after = store.backend_txn(self.txn, good.id)
        self.assertEqual((after.mfree, after.dfree, after.pinst_cnt),
                         (8192 - 1024, 100_000 - 10 * 1024, 1))
        allocator.release_backend_txn(self.txn, good.id, FLAVOR)
        back = store.backend_txn(self.txn, good.id)
        self.assertEqual((back.mfree, back.dfree, back.pinst_cnt), (8192, 100_000, 0))

    def test_spreads_load(self):
        """Successive allocations go to whichever backend is then least loaded."""
        a = self.add("a")
        b = self.add("b")
        first = allocator.choose_backend_txn(self.txn, FLAVOR, "p1")
        second = allocator.choose_backend_txn(self.txn, FLAVOR, "p1")
        self.assertEqual({first.id, second.id}, {a.id, b.id})

    def test_none_usable(self):
        """Without a usable backend offering the template there is no choice."""
        self.add("x", drained=True)
        self.assertIsNone(allocator.choose_backend_txn(self.txn, FLAVOR, "p1"))
