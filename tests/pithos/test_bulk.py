"""Swift's archive extraction (``snfd.pithos.bulk``) and bulk delete over
the served object store."""

from __future__ import annotations

import io
import tarfile

from snfd.pithos.uploads import STREAM_FROM
from tests.pithos.test_api import StackCase, parse_xml


def archive(files: dict[str, bytes], compression: str = "", dirs: tuple[str, ...] = (),
            pax: dict[str, dict[str, str]] | None = None) -> bytes:
    """A tar archive of ``files`` (path -> data) and directories ``dirs``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}",
                      format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.pax_headers = (pax or {}).get(path, {})
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class ExtractTests(StackCase):
    async def extract(self, path: str, body: bytes, kind: str = "tar",
                      fmt: str = "json") -> dict:
        r = await self.call("PUT", f"{path}?extract-archive={kind}",
                            headers={"Accept": "application/json"} if fmt == "json" else {},
                            body=body)
        self.assertEqual(r.code, 200, r.body)
        return r.json()

    async def test_account_level(self):
        """At the account level the first path component names the
        container, made when missing; directories are skipped."""
        summary = await self.extract("/", archive(
            {"./box/a.txt": b"alpha", "box/sub/b": b"beta", "other/c": b""},
            dirs=("box", "box/sub")))
        self.assertEqual(summary, {"Number Files Created": 3, "Response Body": "",
                                   "Response Status": "201 Created", "Errors": []})
        self.assertEqual([e["name"] for e in await self.listing("/box")], ["a.txt", "sub/b"])
        r = await self.call("GET", "/box/a.txt")
        self.assertEqual((r.body, r.header("Content-Type")), (b"alpha", "text/plain"))
        self.assertEqual((await self.call("GET", "/other/c")).body, b"")

    async def test_container_and_prefix(self):
        """Below an account the paths go under the container and prefix of
        the request; gzip and bzip2 archives are read, large files whole."""
        await self.container("c")
        big = bytes(range(256)) * ((STREAM_FROM * 3) // 256)
        for kind, compression in (("tar.gz", "gz"), ("tar.bz2", "bz2")):
            summary = await self.extract(f"/c/{kind}", archive(
                {"x/y": b"why", "big": big}, compression), kind)
            self.assertEqual(summary["Number Files Created"], 2, summary)
            self.assertEqual((await self.call("GET", f"/c/{kind}/x/y")).body, b"why")
            r = await self.call("GET", f"/c/{kind}/big")
            self.assertEqual(r.body, big)

    async def test_metadata_from_pax_headers(self):
        """pax xattrs give the type and user metadata, as in Swift."""
        await self.container("c")
        await self.extract("/c", archive({"o": b"data"}, pax={"o": {
            "SCHILY.xattr.user.mime_type": "text/x-test",
            "SCHILY.xattr.user.meta.color": "blue"}}))
        r = await self.call("HEAD", "/c/o")
        self.assertEqual(r.header("Content-Type"), "text/x-test")
        self.assertEqual(r.header("X-Object-Meta-Color"), "blue")

    async def test_failures(self):
        """Files that cannot be stored are listed with their status; a
        broken archive or one without files is a 400 in the summary; an
        unknown format is a 400."""
        await self.container("q", **{"X-Container-Meta-Quota-Bytes": "3"})
        summary = await self.extract("/q", archive({"ok": b"123", "big": b"4567"}))
        self.assertEqual(summary["Number Files Created"], 1)
        self.assertEqual(summary["Response Status"], "400 Bad Request")
        self.assertEqual(summary["Errors"], [["q/big", "413 Request Entity Too Large"]])
        summary = await self.extract("/", archive({"top-level-file": b"x"}))
        self.assertEqual(summary["Errors"], [["top-level-file", "400 Bad Request"]])
        summary = await self.extract("/q", b"this is no tar archive" * 40)
        self.assertEqual(summary["Response Status"], "400 Bad Request")
        self.assertTrue(summary["Response Body"].startswith("Invalid Tar File"))
        summary = await self.extract("/q", archive({}, dirs=("d",)))
        self.assertEqual(summary["Response Body"], "Invalid Tar File: No Valid Files")
        r = await self.call("PUT", "/q?extract-archive=zip", body=b"PK")
        self.assertFault(r, 400)
        self.assertEqual(r.body, b"Unsupported archive format")

    async def test_others_account(self):
        """Extracting into another user's account creates nothing."""
        summary = await self.extract("/", archive({"c/o": b"x"}))
        self.assertEqual(summary["Number Files Created"], 1)
        r = await self.call("PUT", "/?extract-archive=tar", token=self.bob_token,
                            body=archive({"c/p": b"x", "d/q": b"y"}),
                            headers={"Accept": "application/json"})
        self.assertEqual(r.json()["Number Files Created"], 0)
        self.assertEqual(len(r.json()["Errors"]), 2)
        self.assertEqual([e["name"] for e in await self.listing("")], ["c"])

    async def test_formats(self):
        """The summary comes as text by default and as XML (root extract)."""
        await self.container("c")
        r = await self.call("PUT", "/c?extract-archive=tar", body=archive({"o": b"x"}))
        self.assertIn(b"Number Files Created: 1\n", r.body)
        self.assertIn(b"Response Status: 201 Created\n", r.body)
        r = await self.call("PUT", "/c?extract-archive=tar&format=xml",
                            body=archive({"p": b"x"}))
        root = parse_xml(r.body)
        self.assertEqual(root.tag, "extract")
        self.assertEqual(root.findtext("number_files_created"), "1")

    async def test_info(self):
        """/info advertises bulk_upload beside bulk_delete."""
        r = await self.call("GET", raw=b"/object-store/info", token=None)
        self.assertEqual(r.json()["bulk_upload"], {"max_containers_per_extraction": 10000,
                                                   "max_failed_extractions": 1000})
        self.assertIn("bulk_delete", r.json())


class BulkDeleteTests(StackCase):
    async def test_delete_what_was_extracted(self):
        """What an archive made is deleted by bulk delete, by DELETE and by
        POST (tempest's test_bulk_delete and test_bulk_delete_by_POST)."""
        for method in ("DELETE", "POST"):
            r = await self.call("PUT", "/?extract-archive=tar",
                                body=archive({"box/o": b"data"}))
            self.assertEqual(r.code, 200)
            r = await self.call(method, "/?bulk-delete", body=b"box/o\nbox",
                                headers={"Accept": "application/json"})
            self.assertEqual(r.code, 200, r.body)
            self.assertEqual(r.json()["Number Deleted"], 2)
            self.assertEqual(await self.listing(""), [])
