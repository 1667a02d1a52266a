"""One IQuotaHolder contract, held twice over a real PostgreSQL: by the
in-process holder (snfd.identity.quotaholder) and by the HTTP client
(snfd.quota.remote) talking to a real listening account API."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd import errors
from snfd.httpclient import HTTPClientPool
from snfd.identity.account_api import AccountAPI
from snfd.identity.accounts import Accounts, Policy
from snfd.identity.mail import FileMailer
from snfd.identity.passwords import Passwords
from snfd.identity.projects import Projects
from snfd.identity.quotaholder import LocalQuotaHolder
from snfd.identity.tokens import TokenCache
from snfd.interfaces import IQuotaHolder
from snfd.metrics import Metrics
from snfd.quota import (
    Holding,
    NoCapacityError,
    NoHoldingError,
    NoQuantityError,
    Provision,
    Resource,
    user_and_project,
)
from snfd.quota.remote import RemoteQuotaHolder
from snfd.testing.identity import identity_database
from snfd.testing.postgres import started_pool
from snfd.testing.stubhttp import serve
from snfd.web.auth import TokenAuth
from snfd.web.site import Root, Site

VM = Resource("cyclades.vm", "Virtual machines", None, "compute", "cyclades_compute")
RAM = Resource("cyclades.ram", "RAM of running VMs", "bytes", "compute", "cyclades_compute")
DISK = Resource("pithos.diskspace", "Storage space", "bytes", "object-store",
                "pithos_object-store")

USER, PROJECT = "u1", "p1"
U_HOLDER, P_HOLDER, SOURCE = f"user:{USER}", f"project:{PROJECT}", f"project:{PROJECT}"

LIMITS = [
    (U_HOLDER, SOURCE, "cyclades.vm", 2), (P_HOLDER, None, "cyclades.vm", 3),
    (U_HOLDER, SOURCE, "cyclades.ram", 4096), (P_HOLDER, None, "cyclades.ram", 8192),
    (U_HOLDER, SOURCE, "pithos.diskspace", 100), (P_HOLDER, None, "pithos.diskspace", 100),
]


def vms(quantity: int) -> list[Provision]:
    return user_and_project(USER, PROJECT, "cyclades.vm", quantity)


def by_key(holdings: list[Holding]) -> list[Holding]:
    return sorted(holdings, key=lambda h: (h.holder, h.source or "", h.resource))


class QuotaHolderContract:
    """The behaviour every IQuotaHolder shows.  A subclass provides
    ``holder(component)``: the holder a service of that component uses.
    ``self.admin`` is the in-process holder, for set-up and inspection."""

    admin: LocalQuotaHolder

    def holder(self, component: str) -> Any:
        raise NotImplementedError

    async def prepare(self) -> None:
        """A migrated database with the resources and limits of LIMITS."""
        self.dsn = identity_database(self)
        self.db = started_pool(self, self.dsn)
        self.admin = LocalQuotaHolder(self.db)
        await self.admin.register_resources("cyclades", [VM, RAM])
        await self.admin.register_resources("pithos", [DISK])
        for holder, source, resource, limit in LIMITS:
            await self.admin.set_limit(holder, source, resource, limit)

    async def vm(self, holder: str = U_HOLDER) -> Holding:
        source = SOURCE if holder.startswith("user:") else None
        [found] = await self.holder("cyclades").quotas(
            holders=[holder], sources=[source], resources=["cyclades.vm"])
        return found

    def test_provides_the_interface(self):
        """The holder provides IQuotaHolder."""
        verifyObject(IQuotaHolder, self.holder("cyclades"))

    async def test_component_resources_show_the_defaults_as_they_stand(self):
        """A component reads its own resource definitions, sorted, with the
        defaults an administrator changed since it registered them."""
        await self.admin.modify_resource("cyclades.vm", project_default=3)
        found = await self.holder("cyclades").component_resources("cyclades")
        self.assertEqual([r.name for r in found], sorted([VM.name, RAM.name]))
        vm = next(r for r in found if r.name == "cyclades.vm")
        self.assertEqual((vm.project_default, vm.base_default), (3, VM.base_default))

    async def test_serials_increase_and_stay_pending(self):
        """Each issue answers a larger serial; pending lists them sorted."""
        qh = self.holder("cyclades")
        s1 = await qh.issue("cyclades", vms(1))
        s2 = await qh.issue("cyclades", vms(1))
        self.assertGreater(s2, s1)
        self.assertEqual(await qh.pending("cyclades"), [s1, s2])

    async def test_import_then_accept(self):
        """An import raises usage_max at once and usage_min on accept, for
        both the user's and the project's holding."""
        qh = self.holder("cyclades")
        serial = await qh.issue("cyclades", vms(2))
        self.assertEqual(((await self.vm()).usage_min, (await self.vm()).usage_max), (0, 2))
        self.assertEqual((await self.vm(P_HOLDER)).usage_max, 2)
        resolution = await qh.resolve("cyclades", accept=[serial])
        self.assertEqual((resolution.accepted, resolution.rejected, resolution.failed),
                         ([serial], [], []))
        self.assertEqual(((await self.vm()).usage_min, (await self.vm()).usage_max), (2, 2))
        self.assertEqual(await qh.pending("cyclades"), [])

    async def test_reject_undoes_an_import(self):
        """Rejecting an import brings usage back."""
        qh = self.holder("cyclades")
        serial = await qh.issue("cyclades", vms(1))
        resolution = await qh.resolve("cyclades", reject=[serial])
        self.assertEqual(resolution.rejected, [serial])
        self.assertEqual(((await self.vm()).usage_min, (await self.vm()).usage_max), (0, 0))

    async def test_release_then_accept_or_reject(self):
        """A release lowers usage_min while pending; accepting lowers
        usage_max, rejecting restores usage_min."""
        qh = self.holder("cyclades")
        await qh.issue("cyclades", vms(2), auto_accept=True)
        released = await qh.issue("cyclades", vms(-1))
        self.assertEqual(((await self.vm()).usage_min, (await self.vm()).usage_max), (1, 2))
        await qh.resolve("cyclades", reject=[released])
        self.assertEqual(((await self.vm()).usage_min, (await self.vm()).usage_max), (2, 2))
        released = await qh.issue("cyclades", vms(-2))
        await qh.resolve("cyclades", accept=[released])
        self.assertEqual(((await self.vm()).usage_min, (await self.vm()).usage_max), (0, 0))

    async def test_no_capacity(self):
        """An import beyond the limit raises NoCapacityError naming the
        provision, the limit and the usage, and changes nothing."""
        qh = self.holder("cyclades")
        await qh.issue("cyclades", vms(1))
        with self.assertRaises(NoCapacityError) as raised:
            await qh.issue("cyclades", vms(2))
        error = raised.exception
        self.assertEqual(error.provision, Provision(U_HOLDER, SOURCE, "cyclades.vm", 2))
        self.assertEqual((error.limit, error.usage), (2, 1))
        self.assertEqual(error.code, 413)
        self.assertEqual((await self.vm()).usage_max, 1)
        self.assertEqual(len(await qh.pending("cyclades")), 1)

    async def test_force_passes_the_limit(self):
        """A forced import may exceed the limit."""
        qh = self.holder("cyclades")
        await qh.issue("cyclades", vms(5), force=True)
        self.assertEqual((await self.vm()).usage_max, 5)

    async def test_no_quantity_even_when_forced(self):
        """A release below zero raises NoQuantityError, forced or not."""
        qh = self.holder("cyclades")
        for force in (False, True):
            with self.assertRaises(NoQuantityError) as raised:
                await qh.issue("cyclades", vms(-1), force=force)
            self.assertEqual(raised.exception.provision.quantity, -1)
        self.assertEqual(await qh.pending("cyclades"), [])

    async def test_no_holding(self):
        """A provision on a missing holding raises NoHoldingError naming it,
        and the other provisions of the commission are not applied."""
        qh = self.holder("cyclades")
        ghost = Provision("user:ghost", "project:ghost", "cyclades.vm", 1)
        with self.assertRaises(NoHoldingError) as raised:
            await qh.issue("cyclades", [*vms(1), ghost])
        self.assertEqual(raised.exception.provision, ghost)
        self.assertEqual(raised.exception.code, 404)
        self.assertEqual((await self.vm()).usage_max, 0)
        self.assertEqual(await qh.pending("cyclades"), [])

    async def test_commission_details(self):
        """commission() shows a pending commission's name, issue time and
        provisions, those of one holding summed; resolved, it is NotFound."""
        qh = self.holder("cyclades")
        before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
        serial = await qh.issue("cyclades", [*vms(1), *vms(1)], name="two vms")
        c = await qh.commission("cyclades", serial)
        self.assertEqual((c.serial, c.clientkey, c.name), (serial, "cyclades", "two vms"))
        self.assertGreater(c.issue_time, before)
        self.assertEqual(sorted(c.provisions, key=lambda p: p.key), sorted(vms(2),
                         key=lambda p: p.key))
        await qh.resolve("cyclades", accept=[serial])
        with self.assertRaises(errors.NotFound):
            await qh.commission("cyclades", serial)
        with self.assertRaises(errors.NotFound):
            await qh.commission("cyclades", serial + 1000)

    async def test_resolution_failures(self):
        """Unknown serials fail with NotFound and serials in both lists with
        BadRequest, without stopping the others."""
        qh = self.holder("cyclades")
        s1 = await qh.issue("cyclades", vms(1))
        s2 = await qh.issue("cyclades", vms(1))
        resolution = await qh.resolve("cyclades", accept=[s1, 987654, s2], reject=[s2])
        self.assertEqual(resolution.accepted, [s1])
        self.assertEqual(resolution.rejected, [])
        failed = dict(resolution.failed)
        self.assertEqual(sorted(failed), sorted([987654, s2]))
        self.assertIsInstance(failed[987654], errors.NotFound)
        self.assertIsInstance(failed[s2], errors.BadRequest)
        self.assertEqual(await qh.pending("cyclades"), [s2])
        again = await qh.resolve("cyclades", accept=[s1])
        self.assertEqual((again.accepted, [s for s, _ in again.failed]), ([], [s1]))

    async def test_auto_accept(self):
        """auto_accept resolves at once: nothing pending, usage_min raised."""
        qh = self.holder("cyclades")
        await qh.issue("cyclades", vms(1), auto_accept=True)
        self.assertEqual(await qh.pending("cyclades"), [])
        self.assertEqual((await self.vm()).usage_min, 1)

    async def test_components_are_isolated(self):
        """A component neither sees nor resolves another's commissions."""
        serial = await self.holder("cyclades").issue("cyclades", vms(1))
        pithos = self.holder("pithos")
        self.assertEqual(await pithos.pending("pithos"), [])
        with self.assertRaises(errors.NotFound):
            await pithos.commission("pithos", serial)
        resolution = await pithos.resolve("pithos", accept=[serial])
        self.assertEqual((resolution.accepted, [s for s, _ in resolution.failed]),
                         ([], [serial]))
        self.assertEqual(await self.holder("cyclades").pending("cyclades"), [serial])

    async def test_quotas_filters(self):
        """quotas() answers the holdings matching the holder, source and
        resource filters."""
        qh = self.holder("cyclades")
        await qh.issue("cyclades", vms(1))
        found = await qh.quotas(holders=[U_HOLDER], resources=["cyclades.vm", "cyclades.ram"])
        self.assertEqual(by_key(found), [
            Holding(U_HOLDER, SOURCE, "cyclades.ram", 4096, 0, 0),
            Holding(U_HOLDER, SOURCE, "cyclades.vm", 2, 0, 1)])
        found = await qh.quotas(sources=[None], resources=["cyclades.vm"])
        self.assertEqual(found, [Holding(P_HOLDER, None, "cyclades.vm", 3, 0, 1)])
        found = await qh.quotas(resources=["cyclades.vm", "cyclades.ram"])
        self.assertEqual(len(found), 4)
        self.assertEqual(await qh.quotas(holders=["user:nobody"]), [])

    async def test_register_resources_keeps_admin_defaults(self):
        """Registering again updates the description but keeps defaults an
        administrator changed; it is idempotent."""
        qh = self.holder("cyclades")
        ip = Resource("cyclades.floating_ip", "IPs", None, "network", "cyclades_network",
                      base_default=1)
        await qh.register_resources("cyclades", [ip])
        await self.admin.modify_resource("cyclades.floating_ip", base_default=7)
        changed = Resource("cyclades.floating_ip", "Floating IPs", None, "network",
                           "cyclades_network", base_default=1)
        await qh.register_resources("cyclades", [changed])
        await qh.register_resources("cyclades", [changed])
        [found] = [r for r in await self.admin.resources() if r.name == "cyclades.floating_ip"]
        self.assertEqual((found.description, found.base_default), ("Floating IPs", 7))

    async def test_register_resources_of_another_component_is_refused(self):
        """A component cannot register a resource of another component's
        service."""
        with self.assertRaises(errors.BadRequest):
            await self.holder("pithos").register_resources("pithos", [VM])


class LocalQuotaHolderTests(QuotaHolderContract, unittest.TestCase):
    def setUp(self):
        return defer.ensureDeferred(self.prepare())

    def holder(self, component: str) -> Any:
        return self.admin


class RemoteQuotaHolderTests(QuotaHolderContract, unittest.TestCase):
    def setUp(self):
        return defer.ensureDeferred(self._setUp())

    async def _setUp(self):
        await self.prepare()
        accounts = Accounts(self.db, reactor, Passwords(reactor), TokenCache(reactor, 0),
                            FileMailer(Path(self.mktemp()), "t@x"), [],
                            Policy(public_url="http://127.0.0.1"))
        self.tokens = {name: await accounts.set_component(name)
                       for name in ("cyclades", "pithos")}
        api = AccountAPI(accounts, self.admin, Projects(self.db, reactor), None)
        root = Root()
        root.mount("account", TokenAuth(api.resource(), accounts))
        self.url = serve(self, root) + "/account/v1.0"
        self.http = HTTPClientPool(reactor, Metrics())
        self.addCleanup(self._close_http)
        self.holders = {name: RemoteQuotaHolder(self.http, self.url, token, 10.0)
                        for name, token in self.tokens.items()}

    async def _close_http(self) -> None:
        await self.http.close()

    def holder(self, component: str) -> Any:
        return self.holders[component]

    async def test_bare_mount_url_works(self):
        """The account URL may be given without the version."""
        qh = RemoteQuotaHolder(self.http, self.url[:-len("/v1.0")], self.tokens["cyclades"],
                               10.0)
        self.assertEqual(await qh.pending("cyclades"), [])

    async def test_refused_token_is_service_unavailable(self):
        """A token the identity service refuses makes the holder unavailable."""
        qh = RemoteQuotaHolder(self.http, self.url, "not-a-token", 10.0)
        with self.assertRaises(errors.ServiceUnavailable):
            await qh.pending("cyclades")

    async def test_unreachable_is_service_unavailable(self):
        """No server at the URL makes the holder unavailable."""
        closed = reactor.listenTCP(0, Site(Root(), reactor, Metrics()), interface="127.0.0.1")
        port = closed.getHost().port
        await closed.stopListening()
        qh = RemoteQuotaHolder(self.http, f"http://127.0.0.1:{port}/account",
                               self.tokens["cyclades"], 5.0)
        with self.assertRaises(errors.ServiceUnavailable):
            await qh.issue("cyclades", vms(1))
