"""Swift's object versioning (``snfd.pithos.object_versioning``): the
container flag, version ids, reads and removals of one version, delete
markers and the ``?versions`` listing."""

from __future__ import annotations

from typing import Any

from snfd.pithos.object_versioning import DELETE_MARKER
from tests.pithos.test_api import StackCase


class ObjectVersioningCase(StackCase):
    async def versioned(self, name: str = "c") -> None:
        await self.container(name, **{"X-Versions-Enabled": "true"})

    async def versions(self, query: str = "", path: str = "/c") -> Any:
        r = await self.call("GET", f"{path}?versions{query}")
        self.assertEqual(r.code, 200, r.body)
        return r.json()


class SettingsTests(ObjectVersioningCase):
    async def test_enable_disable_answered(self):
        """X-Versions-Enabled set by PUT and POST is answered by HEAD (to
        the owner and to a reader) and survives a metadata replacement."""
        await self.versioned()
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Versions-Enabled"), "True")
        await self.call("POST", "/c", headers={"X-Container-Meta-A": "1"})
        await self.call("POST", "/c", headers={"X-Container-Read": self.bob})
        r = await self.call("HEAD", "/c", token=self.bob_token)
        self.assertEqual(r.header("X-Versions-Enabled"), "True")
        r = await self.call("POST", "/c", headers={"X-Versions-Enabled": "false"})
        self.assertEqual(r.code, 204)
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Versions-Enabled"), "False")
        self.assertEqual(r.header("X-Container-Meta-A"), "1")

    async def test_legacy_refused(self):
        """The flag is refused on a container with X-Versions-Location,
        beside X-History-Location in one request, and the legacy headers
        are refused on a versioned container."""
        await self.container("old", **{"X-Versions-Location": "arch"})
        r = await self.call("POST", "/old", headers={"X-Versions-Enabled": "true"})
        self.assertFault(r, 400)
        self.assertIn(b"legacy versioned writes", r.body)
        r = await self.call("PUT", "/new", headers={"X-Versions-Enabled": "true",
                                                    "X-History-Location": "arch"})
        self.assertFault(r, 400)
        await self.versioned()
        r = await self.call("POST", "/c", headers={"X-Versions-Location": "arch"})
        self.assertFault(r, 400)
        r = await self.call("HEAD", "/c")
        self.assertIsNone(r.header("X-Versions-Location"))

    async def test_info(self):
        """/info lists object_versioning."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.json()["object_versioning"], {})


class ObjectTests(ObjectVersioningCase):
    async def test_ids_and_version_reads(self):
        """PUT and GET answer X-Object-Version-Id; ?version-id reads an
        older version, whose id is answered too."""
        await self.versioned()
        first = (await self.put("/c/o", b"one")).header("X-Object-Version-Id")
        second = (await self.put("/c/o", b"two")).header("X-Object-Version-Id")
        self.assertTrue(first and second and first != second)
        r = await self.call("GET", "/c/o")
        self.assertEqual((r.body, r.header("X-Object-Version-Id")), (b"two", second))
        r = await self.call("GET", f"/c/o?version-id={first}")
        self.assertEqual((r.code, r.body), (200, b"one"))
        self.assertEqual(r.header("X-Object-Version-Id"), first)
        r = await self.call("HEAD", f"/c/o?version-id={first}")
        self.assertEqual(r.header("Content-Length"), "3")

    async def test_version_id_refusals(self):
        """A bad id, POST with an id and an id on a never-versioned
        container are 400s; null names no version (404)."""
        await self.versioned()
        await self.put("/c/o")
        self.assertFault(await self.call("GET", "/c/o?version-id=abc"), 400)
        self.assertFault(await self.call("POST", "/c/o?version-id=1"), 400)
        self.assertFault(await self.call("GET", "/c/o?version-id=null"), 404)
        await self.container("plain")
        await self.put("/plain/o")
        self.assertFault(await self.call("GET", "/plain/o?version-id=1"), 400)

    async def test_delete_leaves_marker(self):
        """A DELETE answers its marker's id; the object is gone, its
        versions still read; the marker itself reads as a 404."""
        await self.versioned()
        v1 = (await self.put("/c/o", b"one")).header("X-Object-Version-Id")
        r = await self.call("DELETE", "/c/o")
        self.assertEqual(r.code, 204)
        marker = r.header("X-Object-Version-Id")
        self.assertTrue(marker and marker != v1)
        self.assertFault(await self.call("GET", "/c/o"), 404)
        r = await self.call("GET", f"/c/o?version-id={v1}")
        self.assertEqual(r.body, b"one")
        r = await self.call("GET", f"/c/o?version-id={marker}")
        self.assertEqual(r.code, 404)
        self.assertEqual(r.header("X-Object-Version-Id"), marker)

    async def test_delete_one_version(self):
        """DELETE ?version-id removes that version only: an old one leaves
        the current object; the current one leaves no current version."""
        await self.versioned()
        v1 = (await self.put("/c/o", b"one")).header("X-Object-Version-Id")
        v2 = (await self.put("/c/o", b"two")).header("X-Object-Version-Id")
        r = await self.call("DELETE", f"/c/o?version-id={v1}")
        self.assertEqual(r.code, 204)
        self.assertEqual(r.header("X-Object-Version-Id"), v1)
        self.assertEqual(r.header("X-Object-Current-Version-Id"), v2)
        self.assertFault(await self.call("GET", f"/c/o?version-id={v1}"), 404)
        self.assertEqual((await self.call("GET", "/c/o")).body, b"two")
        r = await self.call("DELETE", f"/c/o?version-id={v2}")
        self.assertEqual(r.header("X-Object-Current-Version-Id"), "null")
        self.assertFault(await self.call("GET", "/c/o"), 404)
        self.assertEqual(await self.versions(), [])
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Object-Count"), "0")
        self.assertEqual(r.header("X-Container-Bytes-Used"), "0")

    async def test_restore_by_put(self):
        """PUT ?version-id with no body makes that version current."""
        await self.versioned()
        v1 = (await self.put("/c/o", b"one")).header("X-Object-Version-Id")
        await self.put("/c/o", b"two")
        r = await self.call("PUT", f"/c/o?version-id={v1}", body=b"x")
        self.assertFault(r, 400)
        r = await self.call("PUT", f"/c/o?version-id={v1}", body=b"")
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/c/o")).body, b"one")

    async def test_history_is_the_owners(self):
        """A reader gets the current version by its id, and a 403 for an
        older one and for the listing."""
        await self.versioned()
        await self.call("POST", "/c", headers={"X-Container-Read": self.bob})
        v1 = (await self.put("/c/o", b"one")).header("X-Object-Version-Id")
        v2 = (await self.put("/c/o", b"two")).header("X-Object-Version-Id")
        r = await self.call("GET", f"/c/o?version-id={v2}", token=self.bob_token)
        self.assertEqual(r.body, b"two")
        r = await self.call("GET", f"/c/o?version-id={v1}", token=self.bob_token)
        self.assertFault(r, 403)
        self.assertFault(await self.call("GET", "/c?versions", token=self.bob_token), 403)


class ListingTests(ObjectVersioningCase):
    async def test_versions_listing(self):
        """?versions lists every version newest first within a name, with
        is_latest, and deletion markers with Swift's type."""
        await self.versioned()
        a1 = (await self.put("/c/a", b"1")).header("X-Object-Version-Id")
        a2 = (await self.put("/c/a", b"22")).header("X-Object-Version-Id")
        b1 = (await self.put("/c/b", b"333")).header("X-Object-Version-Id")
        marker = (await self.call("DELETE", "/c/b")).header("X-Object-Version-Id")
        listing = await self.versions()
        self.assertEqual([(e["name"], e["version_id"], e["is_latest"]) for e in listing],
                         [("a", a2, True), ("a", a1, False), ("b", marker, True),
                          ("b", b1, False)])
        self.assertEqual(listing[0]["bytes"], 2)
        self.assertEqual(listing[2]["content_type"], DELETE_MARKER)
        self.assertEqual(listing[2]["bytes"], 0)
        for key in ("hash", "last_modified", "content_type"):
            self.assertIn(key, listing[1])

    async def test_paging(self):
        """limit, marker, version_marker and prefix page the listing."""
        await self.versioned()
        ids = [(await self.put("/c/a", b"x")).header("X-Object-Version-Id")
               for _ in range(3)]
        await self.put("/c/b")
        page = await self.versions("&limit=2")
        self.assertEqual([e["version_id"] for e in page], ids[::-1][:2])
        page = await self.versions(f"&marker=a&version_marker={ids[1]}")
        self.assertEqual([(e["name"], e["version_id"]) for e in page][:1], [("a", ids[0])])
        self.assertEqual([e["name"] for e in page], ["a", "b"])
        page = await self.versions("&marker=a")
        self.assertEqual([e["name"] for e in page], ["b"])
        page = await self.versions("&prefix=b")
        self.assertEqual([e["name"] for e in page], ["b"])
        self.assertFault(await self.call("GET", "/c?versions&version_marker=1"), 400)
        self.assertFault(await self.call("GET", "/c?versions&format=xml"), 406)

    async def test_delimiter(self):
        """A delimiter folds names into subdirs."""
        await self.versioned()
        await self.put("/c/d/x")
        await self.put("/c/d/y")
        await self.put("/c/e")
        page = await self.versions("&delimiter=/")
        self.assertEqual([e.get("subdir", e.get("name")) for e in page], ["d/", "e"])

    async def test_container_delete_needs_no_versions(self):
        """A versioned container keeping versions is a 409 on DELETE; with
        every version removed it goes."""
        await self.versioned()
        v1 = (await self.put("/c/o")).header("X-Object-Version-Id")
        marker = (await self.call("DELETE", "/c/o")).header("X-Object-Version-Id")
        self.assertFault(await self.call("DELETE", "/c"), 409)
        for v in (marker, v1):
            r = await self.call("DELETE", f"/c/o?version-id={v}")
            self.assertEqual(r.code, 204, r.body)
        self.assertEqual((await self.call("DELETE", "/c")).code, 204)
