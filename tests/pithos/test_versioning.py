"""Swift's versioned writes (``snfd.pithos.versioning``): the container
settings, archiving on overwrite, and DELETE in stack and history mode."""

from __future__ import annotations

from snfd.pithos.versioning import DELETE_MARKER, archive_name, archive_prefix
from tests.pithos.test_api import StackCase


class VersioningCase(StackCase):
    async def archive(self, name: str = "o", container: str = "arch") -> list[dict]:
        entries: list[dict] = await self.listing(f"/{container}",
                                                 f"&prefix={archive_prefix(name)}")
        return entries

    async def body(self, path: str) -> bytes:
        r = await self.call("GET", path)
        self.assertEqual(r.code, 200, r.body)
        return r.body


class SettingsTests(VersioningCase):
    async def test_set_answered_kept_removed(self):
        """X-Versions-Location set by PUT is answered by HEAD, survives a
        metadata replacement, and goes with X-Remove-Versions-Location."""
        await self.container("c", **{"X-Versions-Location": "arch"})
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Versions-Location"), "arch")
        await self.call("POST", "/c", headers={"X-Container-Meta-A": "1"})
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Versions-Location"), "arch")
        self.assertEqual(r.header("X-Container-Meta-A"), "1")
        r = await self.call("POST", "/c", headers={"X-History-Location": "hist"})
        self.assertEqual(r.code, 204)
        r = await self.call("HEAD", "/c")
        self.assertIsNone(r.header("X-Versions-Location"))
        self.assertEqual(r.header("X-History-Location"), "hist")
        await self.call("POST", "/c", headers={"X-Remove-History-Location": "x"})
        r = await self.call("HEAD", "/c")
        self.assertIsNone(r.header("X-History-Location"))
        self.assertEqual(r.header("X-Container-Meta-A"), "1")

    async def test_refused(self):
        """Both flags at once is a 400; a name with a slash a 412."""
        r = await self.call("PUT", "/c", headers={"X-Versions-Location": "a",
                                                  "X-History-Location": "b"})
        self.assertFault(r, 400)
        r = await self.call("PUT", "/c", headers={"X-Versions-Location": "a/b"})
        self.assertFault(r, 412)

    async def test_info(self):
        """/info lists versioned_writes with both flags."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.json()["versioned_writes"],
                         {"allowed_flags": ["x-versions-location", "x-history-location"]})


class StackModeTests(VersioningCase):
    async def setUp_containers(self) -> None:
        await self.container("arch")
        await self.container("c", **{"X-Versions-Location": "arch"})

    async def test_overwrite_archives_and_delete_restores(self):
        """Each overwrite copies the current object to
        <3 hex length><name>/<timestamp>; each DELETE puts the newest
        archived version back and removes it; the last one deletes."""
        await self.setUp_containers()
        first = await self.put("/c/o", b"one")
        ts = (await self.call("HEAD", "/c/o")).header("X-Timestamp")
        await self.put("/c/o", b"two")
        await self.put("/c/o", b"three")
        archived = await self.archive()
        self.assertEqual(len(archived), 2)
        self.assertTrue(archived[0]["name"].startswith("001o/"))
        self.assertEqual(archived[0]["name"], f"001o/{ts}")
        self.assertEqual(await self.body(f"/arch/{archived[0]['name']}"), b"one")
        self.assertEqual(await self.body("/c/o"), b"three")
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 204)
        self.assertEqual(await self.body("/c/o"), b"two")
        self.assertEqual(len(await self.archive()), 1)
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 204)
        self.assertEqual(await self.body("/c/o"), b"one")
        self.assertEqual(await self.archive(), [])
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 204)
        self.assertFault(await self.call("GET", "/c/o"), 404)
        r = await self.call("HEAD", "/c")
        self.assertEqual(r.header("X-Container-Object-Count"), "0")
        r = await self.call("HEAD", "/arch")
        self.assertEqual(r.header("X-Container-Object-Count"), "0")
        self.assertTrue(first.header("ETag"))

    async def test_copy_onto_archives(self):
        """A COPY onto a versioned object archives what it replaces."""
        await self.setUp_containers()
        await self.put("/c/o", b"old")
        await self.put("/c/src", b"new")
        r = await self.call("COPY", "/c/src", headers={"Destination": "/c/o"})
        self.assertEqual(r.code, 201, r.body)
        archived = await self.archive()
        self.assertEqual(len(archived), 1)
        self.assertEqual(await self.body(f"/arch/{archived[0]['name']}"), b"old")

    async def test_missing_archive_container(self):
        """An overwrite whose archive container is missing is a 412 and
        leaves the object as it was."""
        await self.container("c", **{"X-Versions-Location": "nowhere"})
        await self.put("/c/o", b"one")
        r = await self.call("PUT", "/c/o", body=b"two",
                            headers={"Content-Type": "text/plain"})
        self.assertFault(r, 412)
        self.assertEqual(await self.body("/c/o"), b"one")


class HistoryModeTests(VersioningCase):
    async def test_delete_leaves_marker(self):
        """With X-History-Location a DELETE archives the object, writes a
        delete marker and deletes it; the archive keeps every version."""
        await self.container("arch")
        await self.container("c", **{"X-History-Location": "arch"})
        await self.put("/c/o", b"one")
        await self.put("/c/o", b"two")
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 204)
        self.assertFault(await self.call("GET", "/c/o"), 404)
        archived = await self.archive()
        self.assertEqual(len(archived), 3)
        self.assertEqual([await self.body(f"/arch/{e['name']}") for e in archived[:2]],
                         [b"one", b"two"])
        self.assertEqual(archived[2]["content_type"], DELETE_MARKER)
        self.assertEqual(archived[2]["bytes"], 0)

    async def test_stack_after_history_marker(self):
        """Switched back to stack mode, a DELETE after a marker restores
        the version before it and removes the marker."""
        await self.container("arch")
        await self.container("c", **{"X-History-Location": "arch"})
        await self.put("/c/o", b"one")
        await self.call("DELETE", "/c/o")
        await self.call("POST", "/c", headers={"X-Versions-Location": "arch"})
        self.assertEqual((await self.call("DELETE", "/c/o")).code, 204)
        self.assertEqual(await self.body("/c/o"), b"one")
        self.assertEqual(await self.archive(), [])


class NamesTests(VersioningCase):
    def test_archive_name(self):
        """The archive name is the 3-hex-digit length, the name, a slash
        and Swift's five-decimal timestamp."""
        self.assertEqual(archive_name("photo.jpg", 1700000000.5),
                         "009photo.jpg/1700000000.50000")
        self.assertEqual(archive_prefix("é" * 300), "12c" + "é" * 300 + "/")
