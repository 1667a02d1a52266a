"""Swift's expiring objects (``snfd.pithos.expiry``): X-Delete-At and
X-Delete-After on writes, answered on reads, refused in the past, hidden
at once when due and deleted by the leader's sweep."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import task

from snfd.pithos import expiry
from snfd.testing.pithos import object_store_stack
from tests.pithos.test_api import StackCase


class ExpiryCase(StackCase):
    """A served object store whose clock is a ``task.Clock`` at the wall
    time."""

    async def _setUp(self):
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.stack = await object_store_stack(self, clock=self.clock)
        self.alice, self.alice_token = await self.stack.user("alice@example.org")
        self.bob, self.bob_token = await self.stack.user("bob@example.org")
        await self.container("c")

    def now(self) -> int:
        return int(self.clock.seconds())

    async def names(self, path: str = "/c") -> list[str]:
        return [e["name"] for e in await self.listing(path)]


class HeaderTests(ExpiryCase):
    async def test_delete_at_on_put_answered(self):
        """X-Delete-At given with a PUT comes back on HEAD and GET as
        Swift's ten digits."""
        at = self.now() + 100
        await self.put("/c/o", **{"X-Delete-At": str(at)})
        for method in ("HEAD", "GET"):
            r = await self.call(method, "/c/o")
            self.assertEqual(r.code, 200)
            self.assertEqual(r.header("X-Delete-At"), f"{at:010d}")

    async def test_delete_after_becomes_delete_at(self):
        """X-Delete-After on a POST is stored as X-Delete-At = now + after."""
        await self.put("/c/o")
        r = await self.call("POST", "/c/o", headers={"X-Delete-After": "60"})
        self.assertEqual(r.code, 202, r.body)
        r = await self.call("HEAD", "/c/o")
        self.assertEqual(int(r.header("X-Delete-At")), self.now() + 60)
        self.assertIsNone(r.header("X-Delete-After"))

    async def test_refused(self):
        """A time in the past, or not an integer, is a 400 with Swift's
        message, and nothing is written."""
        cases = [({"X-Delete-At": str(self.now() - 10)}, b"X-Delete-At in past"),
                 ({"X-Delete-At": str(self.now())}, b"X-Delete-At in past"),
                 ({"X-Delete-At": "soon"}, b"Non-integer X-Delete-At"),
                 ({"X-Delete-After": "-5"}, b"X-Delete-After in past"),
                 ({"X-Delete-After": "1.5"}, b"Non-integer X-Delete-After")]
        for headers, message in cases:
            r = await self.call("PUT", "/c/o", body=b"x", headers=headers)
            self.assertFault(r, 400)
            self.assertEqual(r.body, message)
        self.assertFault(await self.call("HEAD", "/c/o"), 404)
        await self.put("/c/o")
        r = await self.call("POST", "/c/o", headers={"X-Delete-At": "1"})
        self.assertFault(r, 400)

    async def test_post_without_it_clears(self):
        """A POST that does not repeat X-Delete-At drops it (its metadata
        replace the old, as in Swift); a PUT makes a fresh object."""
        await self.put("/c/o", **{"X-Delete-After": "100"})
        await self.call("POST", "/c/o", headers={"X-Object-Meta-A": "1"})
        self.assertIsNone((await self.call("HEAD", "/c/o")).header("X-Delete-At"))
        await self.call("POST", "/c/o", headers={"X-Delete-After": "100"})
        await self.put("/c/o", b"new")
        self.assertIsNone((await self.call("HEAD", "/c/o")).header("X-Delete-At"))

    async def test_copy_carries_it(self):
        """A copy keeps the source's X-Delete-At unless it gives its own."""
        at = self.now() + 100
        await self.put("/c/o", **{"X-Delete-At": str(at)})
        r = await self.call("COPY", "/c/o", headers={"Destination": "/c/p"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual(int((await self.call("HEAD", "/c/p")).header("X-Delete-At")), at)
        r = await self.call("PUT", "/c/q", headers={"X-Copy-From": "/c/o",
                                                    "X-Delete-After": "500"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual(int((await self.call("HEAD", "/c/q")).header("X-Delete-At")),
                         self.now() + 500)


class HiddenTests(ExpiryCase):
    async def test_hidden_when_due(self):
        """Once its time has come an object answers 404 to GET, HEAD, POST
        and COPY and is left out of listings, before any sweep."""
        await self.put("/c/gone", **{"X-Delete-After": "10"})
        await self.put("/c/kept")
        self.assertEqual(await self.names(), ["gone", "kept"])
        self.clock.advance(10)
        for method in ("GET", "HEAD"):
            self.assertFault(await self.call(method, "/c/gone"), 404)
        self.assertFault(await self.call("POST", "/c/gone",
                                         headers={"X-Object-Meta-A": "1"}), 404)
        self.assertFault(await self.call("COPY", "/c/gone",
                                         headers={"Destination": "/c/copy"}), 404)
        self.assertEqual(await self.names(), ["kept"])
        self.assertEqual((await self.call("GET", "/c/kept")).code, 200)

    async def test_container_delete(self):
        """A container holding only expired objects (not yet swept) is
        deleted by its owner: they are gone as far as a listing tells."""
        await self.put("/c/o", **{"X-Delete-After": "5"})
        self.assertFault(await self.call("DELETE", "/c"), 409)
        self.clock.advance(5)
        self.assertEqual(await self.names(), [])
        self.assertEqual((await self.call("DELETE", "/c")).code, 204)
        self.assertFault(await self.call("HEAD", "/c"), 404)

    async def test_overwrite_revives(self):
        """A new PUT over an expired object makes a live one."""
        await self.put("/c/o", **{"X-Delete-After": "5"})
        self.clock.advance(6)
        await self.put("/c/o", b"again")
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.code, r.body), (200, b"again"))


class SweepTests(ExpiryCase):
    async def test_duty_deletes_expired(self):
        """The leader duty, driven by the clock, deletes objects whose
        time has come (counts drop, history keeps them) and leaves the
        others."""
        await self.put("/c/a", b"aaaa", **{"X-Delete-After": "30"})
        await self.put("/c/b", b"bb", **{"X-Delete-After": "90"})
        await self.put("/c/keep", b"k")
        duty = expiry.expiry_duty(self.stack.backend, self.clock, 60)
        duty.start(None)
        self.addCleanup(duty.stop)
        await self.settle(duty)
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Object-Count"), "3")
        self.clock.advance(60)  # the second sweep: a is due
        await self.settle(duty)
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Object-Count"), "2")
        self.assertEqual(r.header("X-Container-Bytes-Used"), "3")
        self.assertEqual(await self.names(), ["b", "keep"])
        self.clock.advance(60)  # the third: b too
        await self.settle(duty)
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Object-Count"), "1")
        self.assertEqual(await self.names(), ["keep"])
        versions = (await self.call("GET", "/c/a?version=list&format=json")).json()
        self.assertEqual(len(versions["versions"]), 1)

    async def settle(self, duty: Any) -> None:
        """Wait for the sweep the clock started."""
        running = duty._running
        if running is not None:
            await running

    async def test_changed_object_spared(self):
        """An object whose X-Delete-At was moved or dropped before the
        sweep is not deleted."""
        await self.put("/c/o", **{"X-Delete-After": "10"})
        await self.call("POST", "/c/o", headers={"X-Delete-After": "1000"})
        self.clock.advance(20)
        sweep = expiry.ExpirySweep(self.stack.backend, self.clock)
        self.assertEqual(await sweep(), 0)
        self.assertEqual((await self.call("HEAD", "/c/o")).code, 200)

    async def test_sweep_pages(self):
        """A sweep goes through every due object, a page at a time."""
        for i in range(5):
            await self.put(f"/c/o{i}", **{"X-Delete-After": "10"})
        self.clock.advance(10)
        sweep = expiry.ExpirySweep(self.stack.backend, self.clock, batch=2)
        self.assertEqual(await sweep(), 5)
        self.assertEqual(await self.names(), [])
        self.assertEqual(await sweep(), 0)
