"""``snf sync --watch``: inotify on a tree (real, no node), and watchers
run as child processes, as a user runs them, against a real ``twistd
snfd`` node: two folders (two machines) syncing through one container
converge after edits, renames, deletions and a conflict made on both
sides; a watcher killed with SIGKILL in the middle of uploads or
downloads, then restarted, loses and duplicates nothing; a one-block
change of a 1 GiB file moves one block plus the hashmap each way; the
systemd user unit is valid."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.trial import unittest

from snfd.client.inotify import TreeWatch
from snfd.client.sync import PART_SUFFIX, STATE_NAME
from snfd.client.watch import own_file
from snfd.pithos.hashmap import BLOCK_SIZE
from tests.client.test_snf_integration import SNF, SnfNodeTestCase

ROOT = Path(__file__).resolve().parents[2]
#: What a pass moves beyond the changed block: the hashmap (about 70 bytes
#: a hash, 256 hashes for 1 GiB) and small JSON bodies.
OVERHEAD = 64 * 1024
#: How long the folders may take to converge (seconds): generous, the
#: machine may be busy.
CONVERGE = 180.0


class TreeWatchTests(unittest.TestCase):
    """``TreeWatch`` on a real directory."""

    def setUp(self):
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.watch = TreeWatch(self.root, ignore=own_file)
        self.addCleanup(self.watch.close)

    def test_changes_are_seen(self):
        self.assertFalse(self.watch.wait(0.05))
        (self.root / "a").write_bytes(b"1")
        self.assertTrue(self.watch.wait(5))
        self.watch.settle(0.05, 5)
        self.assertFalse(self.watch.wait(0.05))
        (self.root / "a").rename(self.root / "b")
        self.assertTrue(self.watch.wait(5))
        self.watch.settle(0.05, 5)
        (self.root / "b").unlink()
        self.assertTrue(self.watch.wait(5))

    def test_new_directories_are_followed(self):
        """A directory made, or a tree moved in, is watched too."""
        (self.root / "sub").mkdir()
        self.assertTrue(self.watch.wait(5))
        self.watch.settle(0.05, 5)
        (self.root / "sub" / "f").write_bytes(b"x")
        self.assertTrue(self.watch.wait(5))
        self.watch.settle(0.05, 5)
        outside = Path(self.mktemp()).absolute()
        (outside / "deep" / "er").mkdir(parents=True)
        outside.rename(self.root / "moved")
        self.assertTrue(self.watch.wait(5))
        self.watch.settle(0.05, 5)
        (self.root / "moved" / "deep" / "er" / "f").write_bytes(b"x")
        self.assertTrue(self.watch.wait(5))

    def test_own_files_are_not_changes(self):
        """The sync's state and partial downloads do not wake it."""
        (self.root / STATE_NAME).write_text("{}")
        (self.root / f".x{PART_SUFFIX}").write_bytes(b"part")
        (self.root / ".snf-sync-123.tmp").write_bytes(b"tmp")
        self.assertFalse(self.watch.wait(0.2))

    def test_a_burst_becomes_one_wake(self):
        """``settle`` returns once the writes stop: a burst of writes is one
        pass, not one per write."""
        def writer() -> None:
            for i in range(8):
                (self.root / f"f{i}").write_bytes(b"x")
                time.sleep(0.05)
        thread = threading.Thread(target=writer)
        thread.start()
        self.assertTrue(self.watch.wait(5))
        self.watch.settle(0.5, 30)
        self.assertFalse(thread.is_alive())
        thread.join()
        self.assertFalse(self.watch.wait(0.05))


def tree(root: Path) -> dict[str, bytes]:
    """The files under ``root`` (the sync's own left out) by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not own_file(p.name)}


def leftovers(root: Path) -> list[str]:
    """Partial downloads and temporary state files left in ``root``."""
    return sorted(p.name for p in root.rglob("*") if p.is_file() and own_file(p.name)
                  and p.name != STATE_NAME)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Watching:
    """``snf -o json sync DIR REMOTE --watch`` as a child process; its
    JSON lines are collected in ``events``."""

    def __init__(self, env: dict[str, str], cwd: Path, folder: Path, remote: str):
        self.proc = subprocess.Popen(
            [*SNF, "-q", "-o", "json", "sync", str(folder), remote, "--watch",
             "--interval", "0.2", "--max-interval", "1"],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, True)),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, stdout: bool) -> None:
        for line in stream:
            if stdout:
                self.events.append(json.loads(line))
            else:
                self.stderr.append(line)

    def passes(self, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e["event"] == "pass"]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        return code


def until(what: str, check: Callable[[], bool], timeout: float = CONVERGE,
          also: Callable[[], str] = lambda: "") -> defer.Deferred[None]:
    """Wait (in a thread) until ``check()`` holds."""
    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"{what}: not after {timeout:.0f} s\n{also()}")
    return threads.deferToThread(wait)


class WatchTests(SnfNodeTestCase):
    timeout = 900
    me = "wanda@example.org"

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        yield self.user(self.me)
        self.watchers: list[Watching] = []
        self.addCleanup(self._stop_all)

    def _stop_all(self) -> None:
        for w in self.watchers:
            w.stop(signal.SIGKILL)

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(exist_ok=True)
        return path

    def watch(self, folder: Path, remote: str = "box/shared") -> Watching:
        env = dict(os.environ, SNF_CONFIG=str(self.config_of(self.me)))
        w = Watching(env, self.work, folder, remote)
        self.watchers.append(w)
        return w

    def remote_tree(self) -> dict[str, bytes]:
        """The container path's content, read by a one-shot download sync
        into a fresh folder."""
        fresh = Path(self.mktemp()).absolute()
        subprocess.run([*SNF, "-q", "sync", str(fresh), "box/shared", "--direction", "down"],
                       env=dict(os.environ, SNF_CONFIG=str(self.config_of(self.me))),
                       check=True, capture_output=True, timeout=600)
        return tree(fresh)

    def why(self, *watchers: Watching) -> Callable[[], str]:
        return lambda: "\n".join(
            f"watcher {i}: events {w.events[-8:]!r}\nstderr {''.join(w.stderr)[-2000:]}"
            for i, w in enumerate(watchers))

    def no_traceback(self, *watchers: Watching) -> None:
        for w in watchers:
            self.assertNotIn("Traceback", "".join(w.stderr))

    @defer.inlineCallbacks
    def test_two_folders_converge(self):
        """Two machines (two folders, each with its watcher) and one
        container: files made, edited, renamed and deleted on either side
        reach the other; a file both edited while one machine was off is a
        conflict that keeps both versions, on both sides and remotely."""
        a, b = self.folder("a"), self.folder("b")
        wa, wb = self.watch(a), self.watch(b)
        why = self.why(wa, wb)

        def same(expected: dict[str, bytes]) -> Callable[[], bool]:
            return lambda: tree(a) == expected and tree(b) == expected

        (a / "sub").mkdir()
        (a / "one.txt").write_bytes(b"one")
        (a / "sub" / "two.txt").write_bytes(b"two" * 1000)
        (a / "c.txt").write_bytes(b"c, first")
        expected = {"one.txt": b"one", "sub/two.txt": b"two" * 1000, "c.txt": b"c, first"}
        yield until("A's new files in B", same(expected), also=why)

        (b / "one.txt").write_bytes(b"one, edited on B")
        expected["one.txt"] = b"one, edited on B"
        yield until("B's edit in A", same(expected), also=why)

        (a / "sub" / "two.txt").rename(a / "sub" / "deux.txt")
        expected["sub/deux.txt"] = expected.pop("sub/two.txt")
        yield until("A's rename in B", same(expected), also=why)

        (b / "one.txt").unlink()
        del expected["one.txt"]
        yield until("B's deletion in A", same(expected), also=why)

        # B goes offline; both edit c.txt; B comes back.
        self.assertEqual(wb.stop(), 0)
        (a / "c.txt").write_bytes(b"c, edited on A")
        (b / "c.txt").write_bytes(b"c, edited on B while offline")
        yield until("A's edit uploaded",
                    lambda: self.remote_tree().get("c.txt") == b"c, edited on A",
                    timeout=CONVERGE, also=why)
        wb = self.watch(b)
        why = self.why(wa, wb)
        expected["c.txt"] = b"c, edited on A"
        expected["c (conflict).txt"] = b"c, edited on B while offline"
        yield until("the conflict kept on both sides", same(expected), also=why)
        self.assertEqual((yield threads.deferToThread(self.remote_tree)), expected)
        self.assertEqual((leftovers(a), leftovers(b)), ([], []))
        self.assertEqual(wa.stop(), 0)
        self.assertEqual(wb.stop(), 0)
        self.no_traceback(wa, wb)

    @defer.inlineCallbacks
    def test_killed_mid_sync_loses_nothing(self):
        """SIGKILL while a watcher uploads, restart: every file is stored
        once, as it is; SIGKILL while another downloads, restart: its
        folder ends equal, with no partial file and no conflict copy."""
        a = self.folder("a")
        for i in range(24):
            (a / f"small-{i:02}.bin").write_bytes(os.urandom(300_000))
        (a / "deep").mkdir()
        (a / "deep" / "big.bin").write_bytes(os.urandom(12 * BLOCK_SIZE + 123))
        expected = tree(a)

        def started(w: Watching, kind: str) -> Callable[[], bool]:
            # Some done, one under way: the sixth has begun.
            return lambda: sum(e["event"] == kind for e in w.events) >= 6

        w = self.watch(a)
        yield until("uploads under way", started(w, "upload"), also=self.why(w))
        self.assertEqual(w.stop(signal.SIGKILL), -signal.SIGKILL)
        w = self.watch(a)
        yield until("the uploads finish", lambda: any(
            p["done"] == 0 and not p["failed"] and not p["held"] for p in w.passes()),
            also=self.why(w))
        self.assertEqual(tree(a), expected)
        self.assertEqual((yield threads.deferToThread(self.remote_tree)), expected)
        self.assertEqual(w.stop(), 0)

        d = self.folder("d")
        w = self.watch(d)
        yield until("downloads under way", started(w, "download"), also=self.why(w))
        w.stop(signal.SIGKILL)
        w = self.watch(d)
        yield until("the downloads finish", lambda: tree(d) == expected, also=self.why(w))
        yield until("a quiet pass", lambda: any(
            p["done"] == 0 and not p["failed"] for p in w.passes()), also=self.why(w))
        self.assertEqual(leftovers(d), [])
        self.assertEqual((yield threads.deferToThread(self.remote_tree)), expected)
        self.assertEqual(w.stop(), 0)
        self.no_traceback(w)

    @defer.inlineCallbacks
    def test_one_block_change_of_a_large_file(self):
        """A 1 GiB file synced to a second folder; one block changed on the
        first side moves one block plus the hashmap up, and the same down."""
        a, b = self.folder("a"), self.folder("b")
        big = a / "disk.img"
        size = 1 << 30

        def write() -> None:
            with big.open("wb") as f:
                for _ in range(size // BLOCK_SIZE):
                    f.write(os.urandom(BLOCK_SIZE))
        yield threads.deferToThread(write)
        wa, wb = self.watch(a), self.watch(b)
        why = self.why(wa, wb)
        digest = yield threads.deferToThread(sha256_of, big)

        def arrived(expected: str) -> Callable[[], bool]:
            def check() -> bool:
                copy = b / "disk.img"
                return copy.exists() and copy.stat().st_size == size and \
                    sha256_of(copy) == expected
            return check
        yield until("the first copy", arrived(digest), timeout=600, also=why)
        yield until("both quiet", lambda: all(
            w.passes() and w.passes()[-1]["done"] == 0 for w in (wa, wb)), also=why)
        marks = len(wa.events), len(wb.events)

        with big.open("r+b") as f:
            f.seek(100 * BLOCK_SIZE)
            f.write(os.urandom(BLOCK_SIZE))
        digest = yield threads.deferToThread(sha256_of, big)
        yield until("the changed copy", arrived(digest), timeout=600, also=why)
        yield until("both quiet again", lambda: all(
            w.passes(m) and w.passes(m)[-1]["done"] == 0 for w, m in zip((wa, wb), marks, strict=True)),
            also=why)
        sent = sum(p["sent"] for p in wa.passes(marks[0]))
        received = sum(p["received"] for p in wb.passes(marks[1]))
        self.assertTrue(BLOCK_SIZE <= sent <= BLOCK_SIZE + OVERHEAD, sent)
        self.assertTrue(BLOCK_SIZE <= received <= BLOCK_SIZE + OVERHEAD, received)
        self.assertEqual(wa.stop(), 0)
        self.assertEqual(wb.stop(), 0)
        self.no_traceback(wa, wb)


class UnitFileTests(unittest.TestCase):
    def test_systemd_unit_is_valid(self):
        """``systemd-analyze verify`` accepts the user unit, instantiated."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise unittest.SkipTest("systemd-analyze is not installed")
        unit = Path(self.mktemp()).absolute()
        unit.mkdir()
        copy = unit / "snf-sync@documents.service"
        copy.write_text((ROOT / "etc" / "systemd" / "snf-sync@.service").read_text())
        out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
        self.assertEqual(out.stderr.strip(), "")
        self.assertEqual(out.returncode, 0)
