"""Swift's container and account quotas (``snfd.pithos.swift_quotas``)
over the served object store."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.trial import unittest

from snfd.pithos.swift_quotas import OVER_QUOTA, RESELLER_ADMIN, is_reseller
from snfd.pithos.uploads import STREAM_FROM
from snfd.web.auth import Principal
from tests.pithos.test_api import StackCase


class ContainerQuotaTests(StackCase):
    async def used(self, container: str = "c") -> tuple[int, int]:
        r = await self.call("HEAD", f"/{container}")
        return (int(r.header("X-Container-Bytes-Used") or 0),
                int(r.header("X-Container-Object-Count") or 0))

    async def test_bytes(self):
        """An upload that would take the container over its bytes quota is
        Swift's 413 "Upload exceeds quota." and stores nothing; one that
        fits is stored."""
        await self.container("c", **{"X-Container-Meta-Quota-Bytes": "10"})
        await self.put("/c/a", b"x" * 10)
        r = await self.call("PUT", "/c/b", body=b"y")
        self.assertFault(r, 413)
        self.assertEqual(r.body, OVER_QUOTA.encode())
        self.assertEqual(await self.used(), (10, 1))

    async def test_streamed_upload_refused_before_storing(self):
        """A long upload (streamed into blocks) is refused by its gate."""
        await self.container("c", **{"X-Container-Meta-Quota-Bytes": "100"})
        r = await self.call("PUT", "/c/big", body=b"z" * (STREAM_FROM + 10))
        self.assertFault(r, 413)
        self.assertEqual(r.body, OVER_QUOTA.encode())
        self.assertEqual(await self.used(), (0, 0))

    async def test_count(self):
        """The count quota bounds the objects of the container."""
        await self.container("c")
        r = await self.call("POST", "/c", headers={"X-Container-Meta-Quota-Count": "2"})
        self.assertEqual(r.code, 204)
        await self.put("/c/1", b"")
        await self.put("/c/2", b"")
        self.assertFault(await self.call("PUT", "/c/3", body=b""), 413)
        self.assertEqual(await self.used(), (0, 2))
        r = await self.call("POST", "/c", headers={"X-Remove-Container-Meta-Quota-Count": "x"})
        self.assertEqual(r.code, 204)
        await self.put("/c/3", b"")

    async def test_invalid_values(self):
        """Quota values must be non-negative integers."""
        r = await self.call("PUT", "/c", headers={"X-Container-Meta-Quota-Bytes": "lots"})
        self.assertFault(r, 400)
        self.assertEqual(r.body, b"Invalid bytes quota.")
        await self.container("c")
        r = await self.call("POST", "/c", headers={"X-Container-Meta-Quota-Count": "-1"})
        self.assertFault(r, 400)
        self.assertEqual(r.body, b"Invalid count quota.")

    async def test_copies(self):
        """A copy into a container it would overfill is refused, by PUT with
        X-Copy-From and by COPY."""
        await self.container("src")
        await self.put("/src/o", b"x" * 20)
        await self.container("c", **{"X-Container-Meta-Quota-Bytes": "10"})
        r = await self.call("PUT", "/c/o", headers={"X-Copy-From": "/src/o"})
        self.assertFault(r, 413)
        r = await self.call("COPY", "/src/o", headers={"Destination": "/c/o"})
        self.assertFault(r, 413)
        self.assertEqual(await self.used(), (0, 0))

    async def test_sharer_writes_are_bounded(self):
        """A user writing into a shared container meets the owner's quota."""
        await self.container("c", **{"X-Container-Meta-Quota-Bytes": "5",
                                     "X-Container-Write": self.bob})
        r = await self.call("PUT", "/c/o", token=self.bob_token, body=b"123456")
        self.assertFault(r, 413)


class AccountQuotaTests(StackCase):
    async def _setUp(self):
        await super()._setUp()
        await self.stack.accounts.add_group(RESELLER_ADMIN)
        self.admin, self.admin_token = await self.stack.user("reseller@example.org")
        await self.stack.accounts.set_group_member(self.admin, RESELLER_ADMIN, True)
        await self.container("c")

    async def set_quota(self, **headers: str) -> None:
        r = await self.call("POST", token=self.admin_token, headers=headers)
        self.assertEqual(r.code, 204, r.body)

    async def test_reseller_sets_and_removes(self):
        """A reseller admin sets the quota on another user's account, the
        owner sees it, uploads beyond it are 413; removing it lifts it."""
        await self.set_quota(**{"X-Account-Meta-Quota-Bytes": "20"})
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Meta-Quota-Bytes"), "20")
        await self.put("/c/a", b"x" * 15)
        self.assertFault(await self.call("PUT", "/c/b", body=b"y" * 6), 413)
        await self.put("/c/b", b"y" * 5)
        await self.set_quota(**{"X-Account-Meta-Quota-Bytes": ""})
        self.assertIsNone((await self.call("HEAD")).header("X-Account-Meta-Quota-Bytes"))
        await self.put("/c/d", b"z" * 50)

    async def test_count(self):
        """X-Account-Quota-Count bounds the account's objects."""
        await self.set_quota(**{"X-Account-Quota-Count": "1"})
        await self.put("/c/a", b"")
        self.assertFault(await self.call("PUT", "/c/b", body=b""), 413)
        await self.set_quota(**{"X-Remove-Account-Quota-Count": "x"})
        await self.put("/c/b", b"")

    async def test_storage_policy(self):
        """X-Account-Quota-Bytes-Policy-<name> bounds the account's bytes in
        that storage policy only; HEAD answers it under that name, not as
        user metadata (clients listing X-Account-Meta-* must not see it)."""
        await self.set_quota(**{"X-Account-Quota-Bytes-Policy-silver": "10"})
        await self.container("s", **{"X-Storage-Policy": "silver"})
        self.assertFault(await self.call("PUT", "/s/o", body=b"x" * 11), 413)
        await self.put("/s/o", b"x" * 10)
        await self.put("/c/o", b"x" * 11)
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Quota-Bytes-Policy-Silver"), "10")
        self.assertIsNone(r.header("X-Account-Meta-Quota-Bytes-Policy-Silver"))

    async def test_owner_may_not_change_it(self):
        """The owner can neither set nor remove the quota (403), and
        replacing its metadata keeps it."""
        await self.set_quota(**{"X-Account-Meta-Quota-Bytes": "20"})
        for value in ("100", ""):
            r = await self.call("POST", headers={"X-Account-Meta-Quota-Bytes": value})
            self.assertFault(r, 403)
        r = await self.call("POST", headers={"X-Remove-Account-Meta-Quota-Bytes": "x"})
        self.assertFault(r, 403)
        r = await self.call("POST", headers={"X-Account-Meta-Color": "blue"})
        self.assertEqual(r.code, 204)
        r = await self.call("HEAD")
        self.assertEqual(r.header("X-Account-Meta-Quota-Bytes"), "20")
        self.assertEqual(r.header("X-Account-Meta-Color"), "blue")

    async def test_reseller_changes_only_quotas(self):
        """A reseller admin's POST to another account with other changes is
        the owner's 403, and its quota is not applied either; bad values
        are 400."""
        r = await self.call("POST", token=self.admin_token, headers={
            "X-Account-Meta-Quota-Bytes": "20", "X-Account-Meta-Color": "red"})
        self.assertFault(r, 403)
        self.assertIsNone((await self.call("HEAD")).header("X-Account-Meta-Quota-Bytes"))
        r = await self.call("POST", token=self.admin_token,
                            headers={"X-Account-Meta-Quota-Bytes": "many"})
        self.assertFault(r, 400)
        r = await self.call("POST", token=self.bob_token,
                            headers={"X-Account-Meta-Quota-Bytes": "20"})
        self.assertFault(r, 403)

    async def test_info(self):
        """/info advertises both quota middlewares."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.json()["container_quotas"], {})
        self.assertEqual(r.json()["account_quotas"], {})


class ResellerRoleTests(unittest.TestCase):
    def test_role_or_group_makes_a_reseller(self):
        """The ResellerAdmin role of the caller's token (any case), or its
        group of that name, makes it a reseller administrator; a
        component never is one."""
        def request(principal: Principal | None) -> SimpleNamespace:
            return SimpleNamespace(principal=principal)

        self.assertTrue(is_reseller(request(Principal(user="u", roles=("ResellerAdmin",)))))
        self.assertTrue(is_reseller(request(Principal(user="u", roles=("reselleradmin",)))))
        self.assertTrue(is_reseller(request(Principal(user="u", groups=("ResellerAdmin",)))))
        self.assertFalse(is_reseller(request(Principal(user="u", roles=("member",)))))
        self.assertFalse(is_reseller(request(Principal(component="x",
                                                       roles=("ResellerAdmin",)))))
        self.assertFalse(is_reseller(request(None)))
