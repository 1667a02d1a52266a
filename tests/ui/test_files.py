"""The Files page in a real browser: containers, an upload by hashmap from
the file input (a re-upload sends only the changed block), the download,
sharing with another user, a public link, versions, moves, folders, long
listings paged with "Load more", and deletes."""

from __future__ import annotations

import hashlib
import http.client
import os
from urllib.parse import quote, urlsplit

from tests.ui.case import BrowserCase

MIB = 1024 * 1024

DOWNLOAD_DIGEST = """
const [container, name, done] = arguments;
import("/ui/static/js/pithos.js").then(async (P) => {
  const blob = await P.fetchBlob(container, name);
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  done([blob.size, [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, "0"))
                    .join("")]);
}).catch(e => done(["error", String(e)]));
"""


def get_public(url: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class FilesTests(BrowserCase):
    def console_errors(self, *expected: str) -> list[str]:
        """The page's console errors, but those Chromium logs for answers
        the page expects: the 409 of a hashmap PUT (the protocol's "these
        blocks are missing") and the ``expected`` URLs' refusals."""
        allowed = ("?hashmap&format=json ", *(f"{u} " for u in expected))
        return [m for m in self.browser.console_errors()
                if not ("status of 409" in m and any(a in m for a in allowed))]

    def object_path(self, account: str, container: str, name: str) -> str:
        return f"/object-store/v1/{account}/{quote(container)}/{quote(name)}"

    def choose(self, path: str) -> None:
        """Give the page's file input a file, as a person choosing it."""
        self.browser.driver.find_element("css selector", "#upload-input").send_keys(path)

    def test_upload_share_publish_restore_delete(self):
        def steps() -> None:
            owner = self.node.add_user("owner@example.org")
            friend = self.node.add_user("friend@example.org")
            b = self.browser
            self.log_in(owner)
            b.click("#nav a[data-page=files]")
            b.wait_text("main", "Containers")
            b.fill_form("#new-container", {"name": "docs"})
            b.submit("#new-container")
            b.wait_text("#drop-zone", "docs/")
            b.wait_text("main", "This folder is empty.")

            # A 20 MiB file (5 blocks of 4 MiB): every block is sent.
            first = bytearray(os.urandom(20 * MIB))
            big = self.root / "big.bin"
            big.write_bytes(first)
            self.choose(str(big))
            b.shot("upload-progress")
            b.wait_text("#uploads .upload:first-child .upload-status",
                        "Uploaded: 5 of 5 blocks sent", timeout=180)
            b.wait_text("#main table.list", "big.bin")
            b.wait_text("#main table.list", "20 MiB")
            b.wait_text(".files-summary", "1 objects, 20 MiB")
            b.shot("files")

            # Changed in one block: only that block is sent again.
            second = bytearray(first)
            second[9 * MIB + 5] ^= 0xFF
            big.write_bytes(second)
            self.choose(str(big))
            status = b.wait_text("#uploads .upload:first-child .upload-status",
                                 "Uploaded:", timeout=180)
            self.assertIn("1 of 5 blocks sent", status)
            self.assertIn("4 already stored", status)
            path = self.object_path(owner.uuid, "docs", "big.bin")
            code, _, body = self.node.request("GET", path, owner.token)
            self.assertEqual(code, 200)
            self.assertEqual(body, bytes(second))

            # The page's download (fetch with the token in a header) gets it.
            got = b.driver.execute_async_script(DOWNLOAD_DIGEST, "docs", "big.bin")
            self.assertEqual(got, [len(second), hashlib.sha256(second).hexdigest()])

            # Shared with the friend by e-mail: the friend reads it.
            code, _, _ = self.node.request("GET", path, friend.token)
            self.assertEqual(code, 403)
            b.click("button.object-name[data-name='big.bin']")
            b.fill_form("#share-form", {"read": "friend@example.org"})
            b.submit("#share-form")
            b.wait_text("#object-sharing", "friend@example.org")
            code, _, body = self.node.request("GET", path, friend.token)
            self.assertEqual(code, 200)
            self.assertEqual(body, bytes(second))

            # A public link, read without a token.
            b.click("#publish")
            link = b.element("#public-url").get_attribute("href")
            self.assertIn("/public/", link)
            self.assertEqual(get_public(link), (200, bytes(second)))
            b.shot("file-details")

            # The first version restored.
            b.wait(">= 2 versions", lambda: len(b.driver.find_elements(
                "css selector", "#versions tbody tr")) >= 2)
            b.click("#versions tbody tr:last-child button[data-version]")
            b.wait_text("#notice", "was restored")
            code, _, body = self.node.request("GET", path, owner.token)
            self.assertEqual(body, bytes(first))

            # Renamed, then deleted.
            b.element("#move-form")
            b.fill_form("#move-form", {"to": "docs/renamed.bin"})
            b.submit("#move-form")
            b.wait_text("#main table.list", "renamed.bin")
            self.assertNotIn("big.bin", b.text("#main table.list"))
            b.accept_dialogs()
            b.click("button[data-delete='renamed.bin']")
            b.wait_text("main", "This folder is empty.")
            code, _, _ = self.node.request(
                "GET", self.object_path(owner.uuid, "docs", "renamed.bin"), owner.token)
            self.assertEqual(code, 404)
            self.assertEqual(get_public(link)[0], 404)
            self.assertEqual(self.console_errors(), [])
        return self.drive(steps)

    def test_folders_paging_and_containers(self):
        def steps() -> None:
            user = self.node.add_user("pages@example.org")
            base = f"/object-store/v1/{user.uuid}"
            code, _, _ = self.node.request("PUT", base + "/many", user.token, b"")
            self.assertEqual(code, 201)
            for i in range(230):
                code, _, _ = self.node.request("PUT", f"{base}/many/item-{i:03d}.txt",
                                               user.token, b"x" * i)
                self.assertEqual(code, 201)
            b = self.browser
            self.log_in(user)
            b.open(self.ui + "#/files")
            b.wait_text("main", "many")
            b.wait_text("#storage", "used")
            b.click("a.container[href='#/files/many']")
            b.wait_text("#main table.list", "item-199.txt")
            self.assertNotIn("item-200.txt", b.text("#main table.list"))
            b.click("#load-more")
            b.wait_text("#main table.list", "item-229.txt")
            b.shot("files-long-list")

            # A folder: made, entered, an upload lands in it, breadcrumbs back.
            b.fill_form("#folder-form", {"folder": "reports"})
            b.submit("#folder-form")
            b.wait_text(".files-crumbs", "reports")
            b.wait_text("main", "This folder is empty.")
            small = self.root / "note.txt"
            small.write_bytes(b"hello")
            self.choose(str(small))
            b.wait_text("#uploads .upload-status", "1 of 1 blocks sent", timeout=60)
            b.wait_text("#main table.list", "note.txt")
            code, _, body = self.node.request("GET", f"{base}/many/reports/note.txt",
                                              user.token)
            self.assertEqual((code, body), (200, b"hello"))
            b.click(".files-crumbs a[href='#/files/many']")
            b.wait_text("#main table.list", "item-199.txt")
            b.click("#load-more")
            b.wait_text("#main table.list", "reports/")
            b.click("a.folder")
            b.wait_text("#main table.list", "note.txt")

            # A container that is not empty is refused with the API's message;
            # an empty one goes.
            b.open(self.ui + "#/files")
            b.fill_form("#new-container", {"name": "spare"})
            b.submit("#new-container")
            b.wait_text("#drop-zone", "spare/")
            b.click(".files-crumbs a[href='#/files']")
            b.accept_dialogs()
            b.click("button[data-delete='many']")
            shown = b.wait_text("#notice .error", "")
            self.assertTrue(shown.strip())
            b.click("button[data-delete='spare']")
            b.wait_text("#notice", "spare was deleted")
            b.wait("spare gone", lambda: "spare" not in b.text("#main table.list"))
            self.assertEqual(self.console_errors(self.node.url + base + "/many"), [])
        return self.drive(steps)
