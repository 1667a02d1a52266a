"""``snf``, the command line, against a real ``twistd snfd`` node running
the identity and pithos plugins on a fresh database: login, block-level
uploads and downloads that send only changed blocks, resume, object
management, sharing between two users, public links, sync both ways and
one-line errors.  The CLI runs as a child process, as a user runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from snfd.client.sync import partial_path
from snfd.pithos.hashmap import BLOCK_SIZE, hashmap_of, merkle
from snfd.testing.node import NodeProcess, http_get
from snfd.testing.postgres import fresh_database

SNF = [sys.executable, "-m", "snfd.cli.snf"]
MANAGE = [sys.executable, "-m", "snfd.cli.manage"]
PASSWORD = "a long password"
# What a block upload costs beyond the block: the hashmap PUTs (about 70
# bytes per hash) and small JSON bodies.
OVERHEAD = 64 * 1024


def stats_of(stderr: str) -> tuple[int, int]:
    """``(sent, received)`` from the ``--stats`` line."""
    for line in stderr.splitlines():
        if line.startswith("sent "):
            words = line.replace(",", "").split()
            return int(words[1]), int(words[4])
    raise AssertionError(f"no stats line in {stderr!r}")


class SnfNodeTestCase(unittest.TestCase):
    """A node with identity and pithos, and helpers that run ``snf`` as
    one of the users made with ``snf-manage user-add``."""

    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        dsn = fresh_database(self)
        config = Path(self.mktemp()).absolute()
        config.write_text("[database]\nauto_upgrade = yes\n")
        self.node = NodeProcess(env={"SNFD_DATABASE_URL": dsn,
                                     "SNFD_PLUGINS": "identity,pithos"},
                                args=["--config", str(config)])
        self.addCleanup(self.node.cleanup)
        self.node.start()
        yield defer.ensureDeferred(self.node.wait_ready(reactor, timeout=120))
        self.work = Path(self.mktemp()).absolute()
        self.work.mkdir()

    def manage(self, *argv: str) -> Any:
        env = dict(os.environ, SNFD_DATABASE_URL=self.node.env["SNFD_DATABASE_URL"],
                   SNFD_PLUGINS="identity,pithos", SNFD_STATE_DIR=str(self.node.state_dir))
        out = subprocess.run([*MANAGE, *argv, "--json"], env=env, capture_output=True,
                             text=True, timeout=120)
        if out.returncode != 0:
            self.fail(f"snf-manage {' '.join(argv)}: {out.stderr}")
        return json.loads(out.stdout)

    @defer.inlineCallbacks
    def user(self, email: str) -> Any:
        """Create a user and log ``snf`` in as them; returns their uuid."""
        made = yield threads.deferToThread(
            self.manage, "user-add", "--email", email, "--password", PASSWORD,
            "--first-name", "Test", "--activate")
        proc = yield self.snf(email, "login", "--url", self.node.url, "--user", email,
                              env={"SNF_PASSWORD": PASSWORD})
        self.assertIn(made["uuid"], proc.stdout)
        return made["uuid"]

    def config_of(self, who: str) -> Path:
        return self.work / f"{who}.json"

    def snf(self, who: str, *argv: str, ok: bool = True, env: dict[str, str] | None = None,
            text: bool = True) -> defer.Deferred[subprocess.CompletedProcess[Any]]:
        """Run ``snf`` (in a thread) as ``who``; fail unless it exits 0
        (or, with ``ok=False``, unless it fails)."""
        full = dict(os.environ, SNF_CONFIG=str(self.config_of(who)))
        full.pop("SNF_PASSWORD", None)
        full.update(env or {})

        def run() -> subprocess.CompletedProcess[Any]:
            proc = subprocess.run([*SNF, *argv], env=full, capture_output=True, text=text,
                                  timeout=240, cwd=self.work)
            if ok and proc.returncode != 0:
                raise AssertionError(f"snf {' '.join(argv)} failed ({proc.returncode}):\n"
                                     f"{proc.stderr!r}\n{self.node.tail(30)}")
            if not ok and proc.returncode == 0:
                raise AssertionError(f"snf {' '.join(argv)} succeeded:\n{proc.stdout!r}")
            return proc

        return threads.deferToThread(run)


class TransferTests(SnfNodeTestCase):
    @defer.inlineCallbacks
    def test_login_and_block_level_transfers(self):
        """Login stores a 0600 settings file with the storage URL of the
        catalog.  Uploading a 3.5-block file sends it once; changing one
        block and uploading again sends one block; a download over an
        outdated copy, or resuming from a partial file, fetches only the
        blocks that differ; the object hash is the Merkle hash of the
        local hashmap."""
        uuid = yield self.user("alice@example.org")
        config = self.config_of("alice@example.org")
        self.assertEqual(stat.S_IMODE(config.stat().st_mode), 0o600)
        settings = json.loads(config.read_text())["clouds"]["default"]
        self.assertEqual(settings["storage_url"],
                         f"{self.node.url}/object-store/v1/{uuid}")
        yield self.snf("alice@example.org", "container", "create", "box")

        data = bytearray(os.urandom(3 * BLOCK_SIZE + BLOCK_SIZE // 2))
        big = self.work / "big.bin"
        big.write_bytes(data)
        proc = yield self.snf("alice@example.org", "--stats", "file", "upload", str(big),
                              "box/dir/big.bin")
        sent, _ = stats_of(proc.stderr)
        self.assertTrue(len(data) <= sent < len(data) + OVERHEAD, sent)

        data[BLOCK_SIZE + 10:BLOCK_SIZE + 20] = os.urandom(10)
        big.write_bytes(data)
        proc = yield self.snf("alice@example.org", "--stats", "file", "upload", str(big),
                              "box/dir/big.bin")
        sent, _ = stats_of(proc.stderr)
        self.assertTrue(BLOCK_SIZE <= sent < BLOCK_SIZE + OVERHEAD, sent)

        proc = yield self.snf("alice@example.org", "file", "info", "box/dir/big.bin")
        self.assertIn(f"X-Object-Hash: {merkle(hashmap_of(bytes(data)))}", proc.stdout)
        proc = yield self.snf("alice@example.org", "file", "versions", "box/dir/big.bin")
        self.assertEqual(len(proc.stdout.splitlines()), 2)

        copy = self.work / "copy.bin"
        proc = yield self.snf("alice@example.org", "--stats", "file", "download",
                              "box/dir/big.bin", str(copy))
        self.assertEqual(copy.read_bytes(), bytes(data))
        _, received = stats_of(proc.stderr)
        self.assertTrue(len(data) <= received < len(data) + OVERHEAD, received)

        stale = bytearray(data)
        stale[-5:] = b"stale"
        copy.write_bytes(stale)
        proc = yield self.snf("alice@example.org", "--stats", "file", "download",
                              "box/dir/big.bin", str(copy))
        self.assertEqual(copy.read_bytes(), bytes(data))
        _, received = stats_of(proc.stderr)
        self.assertTrue(BLOCK_SIZE // 2 <= received < BLOCK_SIZE // 2 + OVERHEAD, received)

        resumed = self.work / "resumed.bin"
        partial_path(resumed).write_bytes(data[:2 * BLOCK_SIZE])
        proc = yield self.snf("alice@example.org", "--stats", "file", "download",
                              "box/dir/big.bin", str(resumed))
        self.assertEqual(resumed.read_bytes(), bytes(data))
        self.assertFalse(partial_path(resumed).exists())
        _, received = stats_of(proc.stderr)
        rest = len(data) - 2 * BLOCK_SIZE
        self.assertTrue(rest <= received < rest + OVERHEAD, received)

        proc = yield self.snf("alice@example.org", "file", "cat", "box/dir/big.bin",
                              text=False)
        self.assertEqual(proc.stdout, bytes(data))

    @defer.inlineCallbacks
    def test_one_line_errors(self):
        """Failures exit with one line that carries the server's message,
        and a status that says what failed: 1 before login, 4 for a wrong
        password, 3 for a missing object."""
        yield self.user("bob@example.org")
        proc = yield self.snf("carol@example.org", "file", "list", "box", ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("not logged in", proc.stderr)
        proc = yield self.snf("bob@example.org", "login", "--url", self.node.url, "--user",
                              "bob@example.org", ok=False, env={"SNF_PASSWORD": "wrong"})
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        self.assertIn("(401)", proc.stderr)
        self.assertEqual(proc.returncode, 4)
        proc = yield self.snf("bob@example.org", "file", "download", "nobox/none",
                              str(self.work / "x"), ok=False)
        self.assertEqual(proc.returncode, 3)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        self.assertTrue(proc.stderr.startswith("snf: "), proc.stderr)
        self.assertIn("(404)", proc.stderr)
        self.assertFalse((self.work / "x").exists())


class ManagementTests(SnfNodeTestCase):
    @defer.inlineCallbacks
    def test_objects_and_containers(self):
        """mkdir, upload, list (-l, delimiter), copy, move, delete -r and
        container deletion behave as the listing then shows."""
        me = "dana@example.org"
        yield self.user(me)
        yield self.snf(me, "container", "create", "docs", "--versioning", "auto")
        proc = yield self.snf(me, "container", "list")
        self.assertIn("docs", proc.stdout.split())
        yield self.snf(me, "file", "mkdir", "docs/notes")
        for name in ("a.txt", "b.txt"):
            (self.work / name).write_text(f"text of {name}")
            yield self.snf(me, "file", "upload", str(self.work / name), "docs/notes/")
        proc = yield self.snf(me, "file", "list", "docs")
        self.assertEqual(proc.stdout.split(), ["notes/", "notes/a.txt", "notes/b.txt"])
        proc = yield self.snf(me, "file", "list", "docs", "-l")
        self.assertIn(str(len("text of a.txt")), proc.stdout)
        proc = yield self.snf(me, "file", "list", "docs/notes/", "--delimiter", "/")
        self.assertEqual(proc.stdout.split(), ["notes/a.txt", "notes/b.txt"])

        yield self.snf(me, "file", "copy", "docs/notes/a.txt", "docs/c.txt")
        yield self.snf(me, "file", "move", "docs/notes/b.txt", "docs/d.txt")
        proc = yield self.snf(me, "file", "list", "docs")
        self.assertEqual(proc.stdout.split(), ["c.txt", "d.txt", "notes/", "notes/a.txt"])
        proc = yield self.snf(me, "file", "cat", "docs/c.txt")
        self.assertEqual(proc.stdout, "text of a.txt")

        tree = self.work / "tree"
        (tree / "deep").mkdir(parents=True)
        (tree / "top.txt").write_text("top")
        (tree / "deep" / "low.txt").write_text("low")
        yield self.snf(me, "file", "upload", "-r", str(tree), "docs/notes/tree")
        out = self.work / "out"
        yield self.snf(me, "file", "download", "-r", "docs/notes/tree", str(out))
        self.assertEqual(((out / "top.txt").read_text(), (out / "deep" / "low.txt").read_text()),
                         ("top", "low"))

        yield self.snf(me, "file", "delete", "-r", "docs/notes")
        proc = yield self.snf(me, "file", "list", "docs")
        self.assertEqual(proc.stdout.split(), ["c.txt", "d.txt"])
        proc = yield self.snf(me, "container", "delete", "docs", ok=False)
        self.assertIn("(409)", proc.stderr)
        yield self.snf(me, "container", "delete", "docs", "-r")
        proc = yield self.snf(me, "container", "list")
        self.assertNotIn("docs", proc.stdout.split())

    @defer.inlineCallbacks
    def test_sharing_and_publishing(self):
        """An object shared for reading can be read by that user through
        ``-A <owner>``, not by others; a published object is served at the
        printed URL without a token until it is unpublished."""
        owner = yield self.user("erin@example.org")
        friend = yield self.user("frank@example.org")
        yield self.user("gina@example.org")
        yield self.snf("erin@example.org", "container", "create", "pub")
        (self.work / "note.txt").write_text("shared words")
        yield self.snf("erin@example.org", "file", "upload", str(self.work / "note.txt"),
                       "pub/note.txt")
        yield self.snf("erin@example.org", "file", "share", "pub/note.txt", "--read", friend)
        proc = yield self.snf("frank@example.org", "file", "-A", owner, "cat", "pub/note.txt")
        self.assertEqual(proc.stdout, "shared words")
        proc = yield self.snf("gina@example.org", "file", "-A", owner, "cat", "pub/note.txt",
                              ok=False)
        self.assertIn("(40", proc.stderr)

        proc = yield self.snf("erin@example.org", "file", "publish", "pub/note.txt")
        url = proc.stdout.strip()
        self.assertIn("/public/", url)
        status, _, body = yield threads.deferToThread(http_get, url)
        self.assertEqual((status, body), (200, b"shared words"))
        yield self.snf("erin@example.org", "file", "unpublish", "pub/note.txt")
        status, _, _ = yield threads.deferToThread(http_get, url)
        self.assertEqual(status, 404)


class FirstUploadTests(SnfNodeTestCase):
    @defer.inlineCallbacks
    def test_first_upload_makes_the_default_container(self):
        """A new account has no container: its first upload into the default
        container makes it; an upload into another missing container is
        refused with a hint, and makes nothing."""
        me = "nina@example.org"
        yield self.user(me)
        (self.work / "a.txt").write_text("a")
        proc = yield self.snf(me, "file", "upload", str(self.work / "a.txt"), "typo/a.txt",
                              ok=False)
        self.assertIn("snf container create typo", proc.stderr)
        proc = yield self.snf(me, "container", "list")
        self.assertEqual(proc.stdout.split(), [])
        yield self.snf(me, "file", "upload", str(self.work / "a.txt"))
        proc = yield self.snf(me, "file", "cat", "pithos/a.txt")
        self.assertEqual(proc.stdout, "a")


class SyncTests(SnfNodeTestCase):
    @defer.inlineCallbacks
    def test_sync_both_ways(self):
        """A first sync uploads local files; after a remote upload, a local
        edit and a local deletion, the second sync downloads the new
        object, uploads the edit and deletes the remote copy; a third sync
        has nothing to do."""
        me = "hank@example.org"
        yield self.user(me)
        yield self.snf(me, "container", "create", "sync")
        local = self.work / "tree"
        (local / "sub").mkdir(parents=True)
        (local / "one.txt").write_text("one")
        (local / "sub" / "two.txt").write_text("two")
        (local / "gone.txt").write_text("soon gone")
        proc = yield self.snf(me, "file", "sync", str(local), "sync/mirror")
        self.assertEqual(sorted(proc.stdout.split()),
                         sorted(["upload", "gone.txt", "upload", "one.txt", "upload",
                                 "sub/two.txt"]))
        proc = yield self.snf(me, "file", "list", "sync/mirror/")
        self.assertEqual(proc.stdout.split(),
                         ["mirror/gone.txt", "mirror/one.txt", "mirror/sub/two.txt"])

        (self.work / "new.txt").write_text("from elsewhere")
        yield self.snf(me, "file", "upload", str(self.work / "new.txt"),
                       "sync/mirror/sub/new.txt")
        (local / "one.txt").write_text("one, edited")
        (local / "gone.txt").unlink()
        proc = yield self.snf(me, "file", "sync", str(local), "sync/mirror")
        self.assertEqual(sorted(line.split() for line in proc.stdout.splitlines()),
                         [["delete-remote", "gone.txt"], ["download", "sub/new.txt"],
                          ["upload", "one.txt"]])
        self.assertEqual((local / "sub" / "new.txt").read_text(), "from elsewhere")
        proc = yield self.snf(me, "file", "cat", "sync/mirror/one.txt")
        self.assertEqual(proc.stdout, "one, edited")
        proc = yield self.snf(me, "file", "list", "sync/mirror/")
        self.assertNotIn("mirror/gone.txt", proc.stdout.split())
        proc = yield self.snf(me, "file", "sync", str(local), "sync/mirror")
        self.assertEqual(proc.stdout, "")
