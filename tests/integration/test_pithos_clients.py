"""The storage service under real clients, against a real ``twistd snfd``
node with the identity and pithos plugins on a fresh database: the
``swift`` command line (Keystone v3 and v1.0 auth), python-swiftclient's
``Connection``, openstacksdk's object store, sharing between two users,
public links fetched without a token, and the ``snf`` client.

Each test has a node of its own on a fresh database.  The helpers here (``PithosNode``, ``request``) are
shared with ``test_pithos_crash``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.node import NodeProcess, http_get
from snfd.testing.postgres import fresh_database

SWIFT = str(Path(sys.executable).with_name("swift"))
SNF = [sys.executable, "-m", "snfd.cli.snf"]
MANAGE = [sys.executable, "-m", "snfd.cli.manage"]
MiB = 1024 * 1024


@attrs.frozen
class User:
    uuid: str
    email: str
    password: str
    token: str


def request(method: str, url: str, token: str | None = None,
            headers: dict[str, str] | None = None, body: bytes | None = None,
            timeout: float = 120.0) -> tuple[int, dict[str, str], bytes]:
    """One blocking HTTP request: (status, lowercased headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        hdrs = dict(headers or {})
        if token:
            hdrs["X-Auth-Token"] = token
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - Swift's ETag


class PithosNode:
    """A ``twistd snfd`` node serving identity and pithos, driven by
    blocking calls (tests call them from threads or from setUpClass).

    ``dsn`` and ``state_dir`` may be given to restart a node on the data
    of an earlier one; the block store is ``<state_dir>/blocks``.
    """

    def __init__(self, dsn: str, state_dir: Path, config: str = "",
                 plugins: str = "identity,pithos", env: dict[str, str] | None = None):
        self.dsn = dsn
        self.state_dir = state_dir
        self.block_path = state_dir / "blocks"
        self.config_path = state_dir.parent / f"{state_dir.name}.conf"
        self.config_path.write_text(
            "[database]\nauto_upgrade = yes\n"
            f"[pithos]\nblock_path = {self.block_path}\n{config}")
        self.env = {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": plugins, **(env or {})}
        self.process = NodeProcess(env=self.env, args=["--config", str(self.config_path)],
                                   state_dir=state_dir)

    @property
    def url(self) -> str:
        return self.process.url

    def start(self, timeout: float = 120.0) -> None:
        """Start the process and wait until /_health answers and the object
        store is mounted (an anonymous request gets 401, not 404)."""
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.process.proc
            if proc is not None and proc.poll() is not None:
                raise AssertionError(
                    f"node exited with {proc.returncode}:\n{self.process.tail()}")
            try:
                if http_get(self.url + "/_health", timeout=2)[0] == 200:
                    status = http_get(self.url + "/object-store/v1/nobody", timeout=5)[0]
                    if status == 404:
                        raise AssertionError(
                            "the node serves no /object-store:\n" + self.process.tail())
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"node not ready after {timeout}s:\n{self.process.tail()}")

    def stop(self) -> None:
        self.process.cleanup()

    def manage(self, *argv: str) -> Any:
        """Run ``snf-manage --json`` style commands; the parsed JSON output."""
        env = dict(os.environ, SNFD_STATE_DIR=str(self.state_dir), **self.env)
        proc = subprocess.run([*MANAGE, "--config", str(self.config_path), *argv],
                              env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"snf-manage {' '.join(argv)} failed:\n{proc.stderr}")
        return proc.stdout

    def add_user(self, email: str, first: str = "Test") -> User:
        password = f"password of {email}"
        made = json.loads(self.manage(
            "user-add", "--email", email, "--password", password, "--first-name", first,
            "--last-name", "User", "--activate", "--json"))
        return User(made["uuid"], email, password, made["token"])

    def storage_url(self, user: User) -> str:
        return f"{self.url}/object-store/v1/{user.uuid}"

    def object_url(self, user: User, container: str, name: str = "") -> str:
        url = f"{self.storage_url(user)}/{quote(container)}"
        return f"{url}/{quote(name)}" if name else url


def stat_fields(text: str) -> dict[str, str]:
    """The ``Key: value`` lines `swift stat` prints."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


class NodeTestCase(unittest.TestCase):
    """A fresh identity+pithos node for each test, with users alice and bob."""

    timeout = 300
    node: PithosNode
    alice: User
    bob: User

    async def setUp(self) -> None:
        dsn = fresh_database(self)
        root = Path(tempfile.mkdtemp(prefix="snfd-pithos-clients-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.node = PithosNode(dsn, root / "node")
        self.addCleanup(self.node.stop)
        await self.call(self.node.start)
        self.alice = await self.call(self.node.add_user, "alice@example.org", "Alice")
        self.bob = await self.call(self.node.add_user, "bob@example.org", "Bob")

    def workdir(self) -> Path:
        path = Path(self.mktemp()).absolute()
        path.mkdir(parents=True)
        return path

    # -- the swift command line --------------------------------------------

    def v3(self, user: User) -> list[str]:
        return ["--auth-version", "3", "--os-auth-url", self.node.url + "/identity/v3",
                "--os-username", user.email, "--os-password", user.password,
                "--os-project-id", user.uuid, "--os-user-domain-name", "Default",
                "--os-project-domain-name", "Default"]

    def v1(self, user: User, name: str | None = None) -> list[str]:
        return ["-A", self.node.url + "/auth/v1.0", "-U", name or user.uuid, "-K", user.token]

    def as_token(self, user: User, owner: User) -> list[str]:
        """``user``'s token on ``owner``'s account (no authentication round)."""
        return ["--os-auth-token", user.token, "--os-storage-url", self.node.storage_url(owner)]

    def swift(self, auth: list[str], *argv: str, cwd: Path | None = None,
              ok: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the swift CLI (blocking); fails the test unless it exits as ``ok`` says."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "ST_"))}
        proc = subprocess.run([SWIFT, *auth, *argv], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=240)
        if ok and proc.returncode != 0:
            self.fail(f"swift {' '.join(argv)} failed ({proc.returncode}):\n"
                      f"{proc.stdout}\n{proc.stderr}\n--- node log:\n{self.node.process.tail(30)}")
        if not ok and proc.returncode == 0:
            self.fail(f"swift {' '.join(argv)} succeeded but should not have:\n{proc.stdout}")
        return proc

    async def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return await threads.deferToThread(fn, *args, **kw)


def write_random(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


class SwiftCommandLineTests(NodeTestCase):
    """The `swift` command (python-swiftclient's CLI)."""

    async def test_v3_upload_download_list_stat_post_copy_delete(self):
        """With Keystone v3 auth, `swift` uploads a small file, a 9 MiB
        (three-block) file and a directory tree, lists them, downloads them
        byte-identical (the client checks MD5 ETags), reports sizes and
        counts in `stat`, sets metadata with `post`, copies an object (with
        its metadata) to another container, and deletes objects and then a
        whole container."""
        work = self.workdir()
        files = {
            "small.txt": write_random(work / "small.txt", 1000, 1),
            "big.bin": write_random(work / "big.bin", 9 * MiB + 12345, 2),
            "tree/a.txt": write_random(work / "tree/a.txt", 10, 3),
            "tree/sub/b.bin": write_random(work / "tree/sub/b.bin", 200 * 1024, 4),
            "tree/sub/empty": write_random(work / "tree/sub/empty", 0, 5),
        }
        auth = self.v3(self.alice)
        await self.call(self.swift, auth, "upload", "c1", "small.txt", "big.bin", "tree",
                       cwd=work)
        listed = (await self.call(self.swift, auth, "list", "c1")).stdout.split()
        self.assertEqual(listed, sorted(files))
        out = work / "out"
        await self.call(self.swift, auth, "download", "c1", "-D", str(out), cwd=work)
        for name, data in files.items():
            self.assertEqual((out / name).read_bytes(), data, name)

        stat = stat_fields((await self.call(self.swift, auth, "stat", "c1", "big.bin")).stdout)
        self.assertEqual(stat["Content Length"], str(len(files["big.bin"])))
        self.assertEqual(stat["ETag"], md5(files["big.bin"]))
        stat = stat_fields((await self.call(self.swift, auth, "stat", "c1")).stdout)
        self.assertEqual(stat["Objects"], str(len(files)))
        self.assertEqual(stat["Bytes"], str(sum(map(len, files.values()))))
        stat = stat_fields((await self.call(self.swift, auth, "stat")).stdout)
        self.assertIn(self.alice.uuid, stat["Account"])

        await self.call(self.swift, auth, "post", "-m", "Color:blue", "c1", "small.txt")
        stat = stat_fields((await self.call(self.swift, auth, "stat", "c1", "small.txt")).stdout)
        self.assertEqual(stat.get("Meta Color"), "blue")

        await self.call(self.swift, auth, "post", "c1copy")
        await self.call(self.swift, auth, "copy", "-d", "/c1copy/copied.txt", "c1", "small.txt")
        await self.call(self.swift, auth, "download", "c1copy", "copied.txt", "-o",
                       str(work / "copied"))
        self.assertEqual((work / "copied").read_bytes(), files["small.txt"])
        stat = stat_fields((await self.call(self.swift, auth, "stat", "c1copy",
                                           "copied.txt")).stdout)
        self.assertEqual(stat.get("Meta Color"), "blue")

        await self.call(self.swift, auth, "delete", "c1", "small.txt")
        listed = (await self.call(self.swift, auth, "list", "c1")).stdout.split()
        self.assertEqual(listed, sorted(set(files) - {"small.txt"}))
        await self.call(self.swift, auth, "delete", "c1")
        await self.call(self.swift, auth, "stat", "c1", ok=False)
        await self.call(self.swift, auth, "delete", "c1copy")

    async def test_v1_auth_by_uuid_and_email(self):
        """`swift -A <node>/auth/v1.0 -U <uuid or email> -K <token>` works
        (upload, list, download, stat of the account); a wrong key is
        refused."""
        work = self.workdir()
        data = write_random(work / "v1.bin", 5 * MiB, 6)
        for name in (self.alice.uuid, self.alice.email):
            auth = self.v1(self.alice, name)
            await self.call(self.swift, auth, "upload", "c2", "v1.bin", cwd=work)
            self.assertEqual((await self.call(self.swift, auth, "list", "c2")).stdout.split(),
                             ["v1.bin"])
            target = work / f"down-{len(name)}"
            await self.call(self.swift, auth, "download", "c2", "v1.bin", "-o", str(target))
            self.assertEqual(target.read_bytes(), data)
            stat = stat_fields((await self.call(self.swift, auth, "stat")).stdout)
            self.assertIn(self.alice.uuid, stat["Account"])
        bad = ["-A", self.node.url + "/auth/v1.0", "-U", self.alice.uuid, "-K", "not-a-token"]
        await self.call(self.swift, bad, "list", ok=False)
        # Bob's token does not log in as Alice.
        mixed = ["-A", self.node.url + "/auth/v1.0", "-U", self.alice.uuid, "-K", self.bob.token]
        await self.call(self.swift, mixed, "list", ok=False)
        await self.call(self.swift, self.v1(self.alice), "delete", "c2")

    async def segmented(self, flags: list[str], container: str) -> dict[str, str]:
        work = self.workdir()
        data = write_random(work / "seg.bin", 9 * MiB + 4321, 7)
        auth = self.v3(self.alice)
        await self.call(self.swift, auth, "upload", *flags, "--segment-size", str(3 * MiB),
                       container, "seg.bin", cwd=work)
        self.assertEqual((await self.call(self.swift, auth, "list", container)).stdout.split(),
                         ["seg.bin"])
        segments = (await self.call(self.swift, auth, "list", container + "_segments")).stdout
        self.assertEqual(len(segments.split()), 4, segments)
        stat = stat_fields((await self.call(self.swift, auth, "stat", container,
                                           "seg.bin")).stdout)
        self.assertEqual(stat["Content Length"], str(len(data)))
        await self.call(self.swift, auth, "download", container, "seg.bin", "-o",
                       str(work / "back"))
        self.assertEqual((work / "back").read_bytes(), data)
        # A ranged read across segment boundaries.
        status, _, body = await self.call(
            request, "GET", self.node.object_url(self.alice, container, "seg.bin"),
            self.alice.token, {"Range": f"bytes={3 * MiB - 10}-{6 * MiB + 9}"})
        self.assertEqual(status, 206)
        self.assertEqual(body, data[3 * MiB - 10:6 * MiB + 10])
        await self.call(self.swift, auth, "delete", container, "seg.bin")
        self.assertEqual((await self.call(self.swift, auth, "list", container)).stdout, "")
        self.assertEqual(
            (await self.call(self.swift, auth, "list", container + "_segments")).stdout, "")
        await self.call(self.swift, auth, "delete", container)
        await self.call(self.swift, auth, "delete", container + "_segments")
        return stat

    async def test_dynamic_large_object(self):
        """`swift upload --use-dlo --segment-size` makes segments in
        <container>_segments and an X-Object-Manifest object that reads back
        byte-identical (also by range across segments); `swift delete`
        removes the segments too."""
        stat = await self.segmented(["--use-dlo"], "c3")
        self.assertTrue(stat["Manifest"].startswith("c3_segments/seg.bin/"), stat)

    async def test_static_large_object(self):
        """`swift upload --use-slo --segment-size` stores an SLO manifest
        that reads back byte-identical; `swift delete` removes its segments."""
        stat = await self.segmented(["--use-slo"], "c4")
        self.assertEqual(stat.get("X-Static-Large-Object", "").lower(), "true", stat)

    async def test_default_large_object(self):
        """`swift upload --segment-size` without a flag picks the kind the
        node's /info announces (SLO) and it reads back byte-identical."""
        stat = await self.segmented([], "c4d")
        self.assertEqual(stat.get("X-Static-Large-Object", "").lower(), "true", stat)

    async def test_unicode_names_stdin_and_listing_options(self):
        """Object names with non-ASCII letters, spaces, '%', '?' and '#'
        round-trip through `swift upload`/`list`/`download`; `swift upload -`
        (a chunked PUT from stdin) stores the bytes; `swift list --prefix`
        and `--delimiter` list as Swift does; `--skip-identical` skips an
        unchanged file; container metadata shows in `stat`."""
        work = self.workdir()
        auth = self.v3(self.alice)
        names = ["dir/ünïcode файл.txt", "dir/sub/100% sure?.bin", "hash#tag.txt", "top.txt"]
        bodies = {n: write_random(work / "src" / n, 100 + i, 60 + i) for i, n in enumerate(names)}
        await self.call(self.swift, auth, "upload", "c11", *names, cwd=work / "src")
        listed = (await self.call(self.swift, auth, "list", "c11")).stdout.splitlines()
        self.assertEqual(listed, sorted(names))
        listed = (await self.call(self.swift, auth, "list", "c11", "--prefix", "dir/")).stdout
        self.assertEqual(listed.splitlines(), sorted(n for n in names if n.startswith("dir/")))
        listed = (await self.call(self.swift, auth, "list", "c11", "--delimiter", "/")).stdout
        self.assertEqual(listed.splitlines(), ["dir/", "hash#tag.txt", "top.txt"])
        await self.call(self.swift, auth, "download", "c11", "-D", str(work / "out"))
        for name, data in bodies.items():
            self.assertEqual((work / "out" / name).read_bytes(), data, name)

        def piped() -> subprocess.CompletedProcess[bytes]:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "ST_"))}
            return subprocess.run([SWIFT, *auth, "upload", "--object-name", "from stdin",
                                   "c11", "-"], input=bodies["top.txt"] * 50000, env=env,
                                  capture_output=True, timeout=240)

        proc = await self.call(piped)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        status, _, body = await self.call(request, "GET", self.node.object_url(
            self.alice, "c11", "from stdin"), self.alice.token)
        self.assertEqual((status, body), (200, bodies["top.txt"] * 50000))

        url = self.node.object_url(self.alice, "c11", "top.txt")
        _, before, _ = await self.call(request, "HEAD", url, self.alice.token)
        await self.call(self.swift, auth, "upload", "--skip-identical", "c11", "top.txt",
                        cwd=work / "src")
        _, after, _ = await self.call(request, "HEAD", url, self.alice.token)
        self.assertEqual(after["x-object-version"], before["x-object-version"])
        await self.call(self.swift, auth, "post", "-m", "Purpose:testing", "c11")
        stat = stat_fields((await self.call(self.swift, auth, "stat", "c11")).stdout)
        self.assertEqual(stat.get("Meta Purpose"), "testing")
        await self.call(self.swift, auth, "delete", "c11")

    async def test_capabilities(self):
        """`swift capabilities` reads /info from the storage URL and finds
        the SLO and bulk-delete limits the node announces."""
        out = (await self.call(self.swift, self.v3(self.alice), "capabilities", "--json")).stdout
        info = json.loads(out)
        self.assertIn("swift", info)
        self.assertIn("slo", info)
        self.assertIn("bulk_delete", info)

    async def test_container_acls(self):
        """`swift post -r <bob>` lets Bob list and download from Alice's
        container with his own token and her storage URL, not upload;
        `swift post -w <bob>` lets him upload too.  Before that he can do
        neither."""
        work = self.workdir()
        data = write_random(work / "acl.bin", 4096, 8)
        alice = self.v3(self.alice)
        bob = self.as_token(self.bob, self.alice)
        await self.call(self.swift, alice, "upload", "c5", "acl.bin", cwd=work)
        await self.call(self.swift, bob, "download", "c5", "acl.bin", "-o",
                       str(work / "nope"), ok=False)
        await self.call(self.swift, bob, "list", "c5", ok=False)

        await self.call(self.swift, alice, "post", "-r", self.bob.uuid, "c5")
        stat = stat_fields((await self.call(self.swift, alice, "stat", "c5")).stdout)
        self.assertIn(self.bob.uuid, stat.get("Read ACL", ""))
        await self.call(self.swift, bob, "download", "c5", "acl.bin", "-o", str(work / "got"))
        self.assertEqual((work / "got").read_bytes(), data)
        self.assertEqual((await self.call(self.swift, bob, "list", "c5")).stdout.split(),
                         ["acl.bin"])
        (work / "bob.txt").write_bytes(b"from bob")
        await self.call(self.swift, bob, "upload", "--skip-container-put", "c5", "bob.txt",
                       cwd=work, ok=False)

        await self.call(self.swift, alice, "post", "-r", self.bob.uuid, "-w", self.bob.uuid,
                       "c5")
        await self.call(self.swift, bob, "upload", "--skip-container-put", "c5", "bob.txt",
                       cwd=work)
        await self.call(self.swift, alice, "download", "c5", "bob.txt", "-o",
                       str(work / "frombob"))
        self.assertEqual((work / "frombob").read_bytes(), b"from bob")
        await self.call(self.swift, alice, "delete", "c5")


class SharingTests(NodeTestCase):
    """Pithos sharing between two users, and public links."""

    async def test_object_sharing_direct_group_and_write(self):
        """Alice shares one object with Bob directly (read), one through her
        account group (`<alice>:friends`) and one for writing; Bob reads the
        shared ones with `swift` (his token, her storage URL), cannot read
        the private one nor write a read-only one, and writes the writable
        one.  Bob's sharers list names Alice, and his listing of her
        container shows only what is shared with him."""
        work = self.workdir()
        alice = self.v3(self.alice)
        bob = self.as_token(self.bob, self.alice)
        bodies = {n: write_random(work / n, 3000 + i, 10 + i) for i, n in enumerate(
            ("shared.txt", "private.txt", "grouped.txt", "writable.txt"))}
        await self.call(self.swift, alice, "upload", "c6", *bodies, cwd=work)
        await self.call(self.swift, alice, "post", "-H",
                       f"X-Object-Sharing: read={self.bob.uuid}", "c6", "shared.txt")
        await self.call(self.swift, alice, "post", "-H",
                       f"X-Account-Group-friends: {self.bob.uuid}")
        await self.call(self.swift, alice, "post", "-H",
                       f"X-Object-Sharing: read={self.alice.uuid}:friends", "c6", "grouped.txt")
        await self.call(self.swift, alice, "post", "-H",
                       f"X-Object-Sharing: write={self.bob.uuid}", "c6", "writable.txt")

        for name in ("shared.txt", "grouped.txt", "writable.txt"):
            await self.call(self.swift, bob, "download", "c6", name, "-o", str(work / "got"))
            self.assertEqual((work / "got").read_bytes(), bodies[name], name)
        await self.call(self.swift, bob, "download", "c6", "private.txt", "-o",
                       str(work / "nope"), ok=False)
        status, _, _ = await self.call(request, "GET", self.node.object_url(
            self.alice, "c6", "private.txt"), self.bob.token)
        self.assertIn(status, (403, 404))
        status, _, _ = await self.call(request, "PUT", self.node.object_url(
            self.alice, "c6", "shared.txt"), self.bob.token,
            {"Content-Type": "text/plain"}, b"overwritten by bob")
        self.assertEqual(status, 403)
        status, _, _ = await self.call(request, "PUT", self.node.object_url(
            self.alice, "c6", "new-by-bob.txt"), self.bob.token,
            {"Content-Type": "text/plain"}, b"bob was here")
        self.assertIn(status, (403, 404))

        (work / "writable.txt").write_bytes(b"rewritten by bob")
        await self.call(self.swift, bob, "upload", "--skip-container-put", "c6", "writable.txt",
                       cwd=work)
        await self.call(self.swift, alice, "download", "c6", "writable.txt", "-o",
                       str(work / "back"))
        self.assertEqual((work / "back").read_bytes(), b"rewritten by bob")

        status, _, body = await self.call(request, "GET", self.node.url + "/object-store/v1/",
                                         self.bob.token)
        self.assertEqual(status, 200)
        self.assertIn(self.alice.uuid, body.decode().split())
        listed = (await self.call(self.swift, bob, "list", "c6")).stdout.split()
        self.assertEqual(listed, ["grouped.txt", "shared.txt", "writable.txt"])
        # Alice's own private object stays hers: Bob's account knows nothing of it.
        status, _, _ = await self.call(request, "GET", self.node.object_url(
            self.bob, "c6", "private.txt"), self.bob.token)
        self.assertEqual(status, 404)
        await self.call(self.swift, alice, "delete", "c6")

    async def test_public_link(self):
        """`X-Object-Public: true` (swift post -H) gives the owner a public URL
        that plain urllib fetches without a token (also by range); others do
        not see the URL; `X-Object-Public: false` makes it 404."""
        work = self.workdir()
        data = write_random(work / "pub.bin", 5 * MiB + 7, 20)
        alice = self.v3(self.alice)
        await self.call(self.swift, alice, "upload", "c7", "pub.bin", cwd=work)
        url = self.node.object_url(self.alice, "c7", "pub.bin")
        await self.call(self.swift, alice, "post", "-H", "X-Object-Public: true", "c7", "pub.bin")
        status, headers, _ = await self.call(request, "HEAD", url, self.alice.token)
        self.assertEqual(status, 200)
        public = headers.get("x-object-public", "")
        self.assertTrue(public.startswith("http://127.0.0.1:"), headers)
        self.assertIn("/public/", public)

        def fetch(link: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
            req = urllib.request.Request(link, headers=headers or {})  # noqa: S310
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
                    return resp.status, resp.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        self.assertEqual(await self.call(fetch, public), (200, data))
        self.assertEqual(await self.call(fetch, public, {"Range": "bytes=4194300-4194309"}),
                         (206, data[4194300:4194310]))
        await self.call(self.swift, alice, "post", "-r", self.bob.uuid, "c7")
        status, headers, _ = await self.call(request, "HEAD", url, self.bob.token)
        self.assertEqual(status, 200)
        self.assertNotIn("x-object-public", headers)
        await self.call(self.swift, alice, "post", "-H", "X-Object-Public: false", "c7",
                       "pub.bin")
        self.assertEqual((await self.call(fetch, public))[0], 404)
        await self.call(self.swift, alice, "delete", "c7")


class LibraryTests(NodeTestCase):
    """python-swiftclient's Connection and openstacksdk."""

    async def test_swiftclient_connection(self):
        """Connection (v1 auth): put/head/get/post/delete, listings with
        hashes and sizes, single, suffix and multiple ranges, 416,
        If-None-Match and If-Modified-Since (304), If-Match and
        If-Unmodified-Since (412)."""
        from swiftclient import client
        from swiftclient.exceptions import ClientException

        data = random.Random(30).randbytes(5 * MiB + 99)

        def status_of(fn: Any, *args: Any, **kw: Any) -> int | None:
            try:
                fn(*args, **kw)
            except ClientException as e:
                return e.http_status
            return None

        def scenario() -> None:
            conn = client.Connection(authurl=self.node.url + "/auth/v1.0",
                                     user=self.alice.uuid, key=self.alice.token, retries=0)
            try:
                conn.put_container("c8")
                etag = conn.put_object("c8", "obj", data, content_type="application/x-test")
                self.assertEqual(etag, md5(data))
                head = conn.head_object("c8", "obj")
                self.assertEqual(int(head["content-length"]), len(data))
                self.assertEqual(head["content-type"], "application/x-test")
                self.assertEqual(head["etag"].strip('"'), etag)
                headers, body = conn.get_object("c8", "obj")
                self.assertEqual(body, data)

                headers, body = conn.get_object("c8", "obj", headers={"Range": "bytes=5-14"})
                self.assertEqual(body, data[5:15])
                self.assertEqual(headers["content-range"], f"bytes 5-14/{len(data)}")
                headers, body = conn.get_object("c8", "obj", headers={"Range": "bytes=-10"})
                self.assertEqual(body, data[-10:])
                headers, body = conn.get_object(
                    "c8", "obj", headers={"Range": "bytes=0-1,4194303-4194305"})
                self.assertTrue(headers["content-type"].startswith("multipart/byteranges"))
                self.assertIn(data[0:2], body)
                self.assertIn(data[4194303:4194306], body)
                self.assertEqual(status_of(conn.get_object, "c8", "obj", headers={
                    "Range": f"bytes={len(data) + 10}-"}), 416)

                self.assertEqual(status_of(conn.get_object, "c8", "obj", headers={
                    "If-None-Match": f'"{etag}"'}), 304)
                self.assertEqual(status_of(conn.get_object, "c8", "obj", headers={
                    "If-Match": '"0123456789abcdef0123456789abcdef"'}), 412)
                self.assertEqual(status_of(conn.get_object, "c8", "obj", headers={
                    "If-Modified-Since": head["last-modified"]}), 304)
                self.assertEqual(status_of(conn.get_object, "c8", "obj", headers={
                    "If-Unmodified-Since": formatdate(86400, usegmt=True)}), 412)
                headers, body = conn.get_object("c8", "obj", headers={"If-Match": f'"{etag}"'})
                self.assertEqual(body, data)

                conn.post_object("c8", "obj", {"X-Object-Meta-Flavour": "mint"})
                self.assertEqual(conn.head_object("c8", "obj")["x-object-meta-flavour"], "mint")
                conn.put_object("c8", "dir/other", b"x" * 10, content_type="text/plain")
                _, listing = conn.get_container("c8", full_listing=True)
                self.assertEqual([o["name"] for o in listing], ["dir/other", "obj"])
                entry = listing[1]
                self.assertEqual(entry["bytes"], len(data))
                self.assertEqual(entry["hash"].strip('"'), etag)
                _, listing = conn.get_container("c8", delimiter="/")
                self.assertEqual([o.get("name", o.get("subdir")) for o in listing],
                                 ["dir/", "obj"])
                _, containers = conn.get_account()
                self.assertIn("c8", [c["name"] for c in containers])
                conn.delete_object("c8", "obj")
                self.assertEqual(status_of(conn.head_object, "c8", "obj"), 404)
                self.assertEqual(status_of(conn.delete_container, "c8"), 409)
                conn.delete_object("c8", "dir/other")
                conn.delete_container("c8")
                self.assertEqual(status_of(conn.head_container, "c8"), 404)
            finally:
                conn.close()

        await self.call(scenario)

    async def test_openstacksdk_object_store(self):
        """openstacksdk (v3 password auth, catalog lookup) creates a
        container, uploads, lists, downloads byte-identical, sets object
        metadata (a POST that repeats the object's Content-Type,
        application/octet-stream, with an empty body) and deletes."""
        import openstack

        data = random.Random(40).randbytes(3 * MiB + 1)

        def scenario() -> None:
            conn = openstack.connect(
                auth_url=self.node.url + "/identity/v3", username=self.alice.email,
                password=self.alice.password, project_id=self.alice.uuid,
                user_domain_name="Default", project_domain_name="Default",
                identity_api_version="3", load_yaml_config=False, load_envvars=False)
            try:
                store = conn.object_store
                store.create_container(name="c9")
                store.upload_object(container="c9", name="sdk.bin", data=data)
                store.upload_object(container="c9", name="small.txt", data=b"hello")
                names = sorted(o.name for o in store.objects("c9"))
                self.assertEqual(names, ["sdk.bin", "small.txt"])
                self.assertEqual(store.download_object("sdk.bin", container="c9"), data)
                meta = store.get_object_metadata("sdk.bin", container="c9")
                self.assertEqual(int(meta.content_length), len(data))
                store.set_object_metadata("sdk.bin", container="c9", color="red")
                meta = store.get_object_metadata("sdk.bin", container="c9")
                self.assertEqual(meta.metadata.get("color"), "red")
                self.assertEqual(store.download_object("sdk.bin", container="c9"), data)
                store.delete_object("sdk.bin", container="c9")
                store.delete_object("small.txt", container="c9")
                self.assertEqual(list(store.objects("c9")), [])
                store.delete_container("c9")
            finally:
                conn.close()

        await self.call(scenario)


class SnfClientTests(NodeTestCase):
    """The `snf` command line client (helper D's), end to end."""

    async def setUp(self) -> None:
        try:
            import snfd.cli.snf  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("snfd.cli.snf (the snf client) is not installed") from None
        await super().setUp()

    def snf(self, config: Path, *argv: str, cwd: Path | None = None,
            ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, SNF_CONFIG=str(config))
        proc = subprocess.run([*SNF, *argv], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=240)
        if ok and proc.returncode != 0:
            self.fail(f"snf {' '.join(argv)} failed ({proc.returncode}):\n"
                      f"{proc.stdout}\n{proc.stderr}")
        if not ok and proc.returncode == 0:
            self.fail(f"snf {' '.join(argv)} succeeded but should not have:\n{proc.stdout}")
        return proc

    async def test_login_upload_download_sync(self):
        """`snf login` with a token, `snf file upload` of a 9 MiB file,
        `snf file download` byte-identical (also read by plain GET), a
        re-upload of the unchanged file that sends no block (`--stats`), and
        `snf file sync` of a directory both ways."""
        work = self.workdir()
        config = work / "snf.json"
        data = write_random(work / "big.bin", 9 * MiB + 5, 50)
        await self.call(self.snf, config, "login", "--url", self.node.url, "--token",
                       self.alice.token)
        await self.call(self.snf, config, "container", "create", "c10")
        await self.call(self.snf, config, "file", "upload", str(work / "big.bin"),
                       "c10/big.bin")
        await self.call(self.snf, config, "file", "download", "c10/big.bin",
                       str(work / "back.bin"))
        self.assertEqual((work / "back.bin").read_bytes(), data)
        status, headers, body = await self.call(
            request, "GET", self.node.object_url(self.alice, "c10", "big.bin"), self.alice.token)
        self.assertEqual((status, body), (200, data))
        again = await self.call(self.snf, config, "--stats", "file", "upload",
                                str(work / "big.bin"), "c10/big.bin")
        sent = re.search(r"sent (\d+) bytes", again.stderr)
        self.assertIsNotNone(sent, again.stderr)
        self.assertLess(int(sent.group(1)), 64 * 1024, again.stderr)

        local = work / "tree"
        tree = {"a.txt": write_random(local / "a.txt", 100, 51),
                "sub/b.bin": write_random(local / "sub/b.bin", 5 * MiB, 52)}
        await self.call(self.snf, config, "file", "sync", str(local), "c10/tree")
        for name, content in tree.items():
            status, _, body = await self.call(request, "GET", self.node.object_url(
                self.alice, "c10", f"tree/{name}"), self.alice.token)
            self.assertEqual((status, body), (200, content), name)
        status, _, _ = await self.call(
            request, "PUT", self.node.object_url(self.alice, "c10", "tree/remote.txt"),
            self.alice.token, {"Content-Type": "text/plain"}, b"made remotely")
        self.assertEqual(status, 201)
        await self.call(self.snf, config, "file", "sync", str(local), "c10/tree")
        self.assertEqual((local / "remote.txt").read_bytes(), b"made remotely")
