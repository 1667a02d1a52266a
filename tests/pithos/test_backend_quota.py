"""Quotas in the storage backend: container quota policies, and the
account's pithos.diskspace charged through a real quota holder (free
versioning: only current bytes count), including releases, projects and
refused commissions that leave nothing behind."""

from __future__ import annotations

from typing import Any

from snfd import errors
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.plugins.identity import plugin as identity_plugin
from snfd.quota import Resource
from snfd.quota import serials as qs
from snfd.quota.serials import Charger
from tests.pithos.test_backend import ALICE, BOB, NODE_SCHEMA, PITHOS, BackendTestCase

DISK = Resource("pithos.diskspace", "Storage", "bytes", "object-store", "pithos_object-store")
PROJECT = "project-x"


class ContainerQuotaTests(BackendTestCase):
    async def test_container_quota(self):
        """A write that takes the container past its quota is OverLimit
        and stores nothing; within the quota it works; 0 is unlimited."""
        await self.container(quota="100")
        await self.put("a", b"x" * 60)
        await self.fails(errors.OverLimit, self.put("b", b"x" * 50))
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "c", "b"))
        info = await self.backend.container(ALICE, ALICE, "c")
        self.assertEqual((info.count, info.bytes), (1, 60))
        await self.put("a", b"x" * 100)  # overwrite: counted once
        await self.backend.update_container(ALICE, ALICE, "c", None, False, {"quota": "0"})
        await self.put("b", b"x" * 500)

    async def test_history_is_free(self):
        """Superseded versions do not count against the container quota."""
        await self.container(quota="100")
        for _ in range(5):
            await self.put("a", b"y" * 90)
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).bytes, 90)

    async def test_metadata_update_over_quota(self):
        """A container already over a lowered quota still accepts changes
        that do not grow it."""
        await self.container(quota="100")
        await self.put("a", b"z" * 80)
        await self.backend.update_container(ALICE, ALICE, "c", None, False, {"quota": "10"})
        await self.backend.update_object(ALICE, ALICE, "c", "a", {"X-Object-Meta-K": "v"},
                                         False)
        await self.put("a", b"z" * 50)
        await self.fails(errors.OverLimit, self.put("a", b"z" * 60))


class AccountQuotaTests(BackendTestCase):
    schemas = (NODE_SCHEMA, identity_plugin.schema, PITHOS)

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.qh = LocalQuotaHolder(self.db)
        await self.qh.register_resources("pithos", [DISK])
        await self.qh.set_limit(f"user:{ALICE}", f"project:{ALICE}", DISK.name, 1000)
        await self.qh.set_limit(f"project:{ALICE}", None, DISK.name, 10 ** 9)
        await self.qh.set_limit(f"user:{ALICE}", f"project:{PROJECT}", DISK.name, 5000)
        await self.qh.set_limit(f"project:{PROJECT}", None, DISK.name, 10 ** 9)
        self.charger = Charger(self.db, self.holder(), "pithos")
        self.backend = self.make_backend(charger=self.charger)
        await self.container()

    def holder(self) -> Any:
        """The holder writes charge: this one shares the database, so each
        write charges inside its own transaction (``IQuotaLedger``)."""
        return self.qh

    async def usage(self, project: str = ALICE) -> tuple[int, int]:
        # Accepted commissions reach the holder in the background.
        await self.backend.charger.drain()
        [h] = await self.qh.quotas([f"user:{ALICE}"], [f"project:{project}"], [DISK.name])
        return h.usage_min, h.usage_max

    async def test_charges_follow_current_bytes(self):
        """Creating charges the size, overwriting the difference, meta
        changes nothing, deleting releases; nothing is left pending."""
        await self.put("a", b"x" * 300)
        self.assertEqual(await self.usage(), (300, 300))
        await self.put("a", b"x" * 100)
        self.assertEqual(await self.usage(), (100, 100))
        await self.put("a", b"x" * 400)
        await self.backend.update_object(ALICE, ALICE, "c", "a", {"X-Object-Meta-A": "1"},
                                         False)
        self.assertEqual(await self.usage(), (400, 400))
        await self.backend.delete_object(ALICE, ALICE, "c", "a")
        self.assertEqual(await self.usage(), (0, 0))
        self.assertEqual(await self.qh.pending("pithos"), [])
        undecided = await self.db.run("t", qs.undecided_txn, "pithos")
        self.assertEqual(undecided, [])

    async def test_over_quota_stores_nothing(self):
        """A write beyond the account quota is a 413 fault, stores
        nothing and leaves the usage as it was; an overwrite is judged by
        its difference only."""
        await self.put("a", b"x" * 900)
        e = await self.fails(errors.Fault, self.put("b", b"x" * 200))
        self.assertEqual(e.code, 413)
        await self.fails(errors.NotFound, self.backend.object(ALICE, ALICE, "c", "b"))
        self.assertEqual(await self.usage(), (900, 900))
        await self.put("a", b"x" * 1000)  # +100: fits exactly
        self.assertEqual(await self.usage(), (1000, 1000))
        e = await self.fails(errors.Fault, self.backend.copy_object(
            ALICE, ALICE, "c", "a", ALICE, "c", "copy"))
        self.assertEqual(e.code, 413)
        self.assertEqual(await self.usage(), (1000, 1000))
        self.assertEqual(await self.qh.pending("pithos"), [])

    async def test_container_delete_and_purge(self):
        """Deleting a container with its objects releases their bytes;
        purging history releases nothing (history is free) but purging a
        current version does."""
        await self.put("a", b"x" * 100)
        await self.put("a", b"x" * 50)
        await self.put("b", b"x" * 30)
        self.assertEqual(await self.usage(), (80, 80))
        await self.backend.delete_container(ALICE, ALICE, "c", until=self.tick())
        self.assertEqual(await self.usage(), (80, 80))
        await self.backend.delete_object(ALICE, ALICE, "c", "b", until=self.tick())
        self.assertEqual(await self.usage(), (50, 50))
        await self.backend.delete_container(ALICE, ALICE, "c", delimiter="/")
        self.assertEqual(await self.usage(), (0, 0))

    async def test_versioning_none_delta(self):
        """Without versioning the charge is the same difference."""
        await self.container("n", versioning="none")
        await self.put("a", b"x" * 200, container="n")
        await self.put("a", b"x" * 150, container="n")
        self.assertEqual(await self.usage(), (150, 150))

    async def test_projects(self):
        """A container's bytes go to its project; changing the project
        moves them; a project the account has no quota in is refused."""
        await self.container("p", project=PROJECT)
        await self.put("a", b"x" * 700, container="p")
        self.assertEqual(await self.usage(PROJECT), (700, 700))
        self.assertEqual(await self.usage(), (0, 0))
        await self.put("b", b"x" * 10)
        await self.backend.update_container(ALICE, ALICE, "c", None, False,
                                            {"project": PROJECT})
        self.assertEqual((await self.usage(PROJECT), await self.usage()), ((710, 710), (0, 0)))
        await self.backend.update_container(ALICE, ALICE, "p", None, False, {"project": ""})
        self.assertEqual((await self.usage(PROJECT), await self.usage()),
                         ((10, 10), (700, 700)))
        await self.put("big", b"x" * 400)  # in project-x now
        e = await self.fails(errors.Fault, self.backend.update_container(
            ALICE, ALICE, "c", None, False, {"project": ALICE}))  # 410 > 300 left
        self.assertEqual(e.code, 413)
        self.assertEqual((await self.backend.container(ALICE, ALICE, "c")).policy.project,
                         PROJECT)
        await self.fails(errors.BadRequest, self.backend.update_container(
            ALICE, ALICE, "c", None, False, {"project": "unknown"}))
        info = await self.backend.account(ALICE, ALICE)
        self.assertEqual(info.quotas, {ALICE: 1000, PROJECT: 5000})

    async def test_moves(self):
        """Moving between containers of one project charges nothing;
        into another project moves the usage."""
        await self.container("p", project=PROJECT)
        await self.container("d")
        await self.put("a", b"x" * 100)
        await self.backend.copy_object(ALICE, ALICE, "c", "a", ALICE, "d", "a", move=True)
        self.assertEqual(await self.usage(), (100, 100))
        await self.backend.copy_object(ALICE, ALICE, "d", "a", ALICE, "p", "a", move=True)
        self.assertEqual((await self.usage(), await self.usage(PROJECT)),
                         ((0, 0), (100, 100)))

    async def test_no_holding(self):
        """Another user with no pithos.diskspace holding cannot store."""
        await self.container("c", user=BOB)
        e = await self.fails(errors.Fault, self.put("a", user=BOB))
        self.assertEqual(e.code, 413)
        await self.put("empty", b"", user=BOB)  # nothing to charge


class _AcrossHTTP:
    """The in-process holder seen as a holder on another node: the
    commission protocol only, no ``IQuotaLedger``."""

    def __init__(self, holder: Any):
        self._holder = holder

    def __getattr__(self, name: str) -> Any:
        if name == "charge_txn" or name.startswith("__"):
            raise AttributeError(name)  # (zope.interface asks for __provides__...)
        return getattr(self._holder, name)


class AccountQuotaCommissionTests(AccountQuotaTests):
    """The same, with a holder that offers only the commission protocol
    (identity on another node): issue, write, settle."""

    def holder(self) -> Any:
        return _AcrossHTTP(self.qh)
