"""Moving a policy's blocks to another store while the cloud runs
(``snfd.pithos.migrate``, ``snf-manage pithos-migrate-blocks``) and the
read-only fallback of the switch (``[pithos] block_fallback``,
``snfd.pithos.policies.FallbackBlocks``).

The command runs as a process of its own on a fresh database (it reads
the source from the node's configuration), so that a test can kill it
with SIGKILL half way.  The RADOS target is the harness's shared Ceph
(``snfd.testing.ceph``), each test in a namespace of its own, skipped
with the harness's reason where Ceph is not installed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from snfd import plugin_loader, tap
from snfd.config import ConfigError, load_config
from snfd.interfaces import IBlockStore
from snfd.pithos.blocks import FileBlockStore, every_name
from snfd.pithos.hashmap import BLOCK_SIZE, block_hash, hashmap_of
from snfd.pithos.migrate import CopyReport, Progress, copy_blocks, verify_blocks
from snfd.pithos.policies import (
    FallbackBlocks,
    StoragePolicies,
    file_places,
    parse_fallbacks,
)
from snfd.pithos.service import _fallback_store
from snfd.testing.ceph import ceph_unavailable, shared_cluster
from snfd.testing.postgres import fresh_database
from tests.pithos.test_api import StackCase
from tests.pithos.test_disk_full import run, small_filesystem

MANAGE = [sys.executable, "-m", "snfd.cli.manage"]
POOL = "snfd-test-blocks"


def some_blocks(n: int, seed: int = 1, size: int = 4096) -> list[bytes]:
    """``n`` distinct blocks of about ``size`` bytes (a few end in zeros,
    which are not part of their names)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        data = rng.randbytes(size - i % 7)
        out.append(data + bytes(3) if i % 5 == 0 else data)
    return out


def plant(root: Path, block: bytes) -> str:
    """Write ``block`` into the filesystem store at ``root`` as its layout
    says (``<root>/ab/cd/ef/<name>``), without the store: a source made
    quickly.  Its name."""
    name = block_hash(block)
    directory = root / name[0:2] / name[2:4] / name[4:6]
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / name).write_bytes(block)
    return name


def path_of(root: Path, name: str) -> Path:
    return root / name[0:2] / name[2:4] / name[4:6] / name


def stored(root: Path) -> dict[str, bytes]:
    """Every block file under a filesystem store (temporary files, whose
    names are not block names, left out) and its content."""
    out = {}
    for f in root.rglob("*"):
        if f.is_file() and len(f.name) == 64 and not f.name.startswith("."):
            out[f.name] = f.read_bytes()
    return out


def corrupt(path: Path) -> None:
    """Change one byte of a block file in place (its length kept)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


class CopyTests(unittest.TestCase):
    """``copy_blocks`` and ``verify_blocks`` between two filesystem
    stores, in process."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.source_dir = self.root / "old"
        self.target_dir = self.root / "new"
        self.source = FileBlockStore(self.source_dir, reactor)
        self.target = FileBlockStore(self.target_dir, reactor)

    async def test_copies_what_the_target_lacks(self):
        """Every block lands in the target byte for byte, trailing zeros
        kept; blocks the target had are counted present and not read; a
        second copy finds everything there."""
        blocks = some_blocks(40)
        names = [plant(self.source_dir, b) for b in blocks]
        already = names[:5]
        await self.target.put(blocks[:5])
        report = await copy_blocks(self.source, self.target, reactor, batch=7, in_flight=3)
        self.assertEqual((report.scanned, report.copied, report.present, report.gone,
                          report.failed, report.complete), (40, 35, 5, 0, [], True))
        self.assertEqual(report.bytes, sum(len(b) for b in blocks[5:]))
        self.assertEqual(stored(self.target_dir), stored(self.source_dir))
        self.assertTrue(set(already) <= set(stored(self.target_dir)))
        again = await copy_blocks(self.source, self.target, reactor, batch=7)
        self.assertEqual((again.scanned, again.copied, again.present), (40, 0, 40))
        checked = await verify_blocks(self.source, self.target, reactor, batch=9)
        self.assertEqual((checked.checked, checked.ok, checked.missing, checked.corrupt),
                         (40, 40, [], []))

    async def test_corrupt_source_block(self):
        """A source block whose bytes no longer match its name is reported
        and not copied; the others are; verify then names it missing."""
        names = [plant(self.source_dir, b) for b in some_blocks(12)]
        bad = names[4]
        corrupt(path_of(self.source_dir, bad))
        report = await copy_blocks(self.source, self.target, reactor, batch=5)
        self.assertEqual([f.name for f in report.failed], [bad])
        self.assertIn("does not match its name", report.failed[0].reason)
        self.assertEqual(report.copied, 11)
        self.assertEqual(sorted(stored(self.target_dir)), sorted(set(names) - {bad}))
        checked = await verify_blocks(self.source, self.target, reactor)
        self.assertEqual((checked.ok, checked.missing), (11, [bad]))

    async def test_verify_finds_a_corrupt_target_block(self):
        """verify reads every block back from the target and names those
        whose content does not match."""
        names = [plant(self.source_dir, b) for b in some_blocks(6)]
        await copy_blocks(self.source, self.target, reactor)
        corrupt(path_of(self.target_dir, names[2]))
        checked = await verify_blocks(self.source, self.target, reactor)
        self.assertEqual([f.name for f in checked.corrupt], [names[2]])
        self.assertEqual((checked.ok, checked.missing), (5, []))

    async def test_block_gone_meanwhile(self):
        """A block deleted from the source between its listing and its
        read (collected meanwhile) is counted gone, not failed."""
        names = [plant(self.source_dir, b) for b in some_blocks(5)]
        source = _Vanishing(self.source, names[1])
        report = await copy_blocks(source, self.target, reactor)
        self.assertEqual((report.copied, report.gone, report.failed), (4, 1, []))

    async def test_resumes_after_the_recorded_page(self):
        """With a progress file, a copy starts after the cursor recorded
        (the names after it only) and forgets the file once complete."""
        names = sorted(plant(self.source_dir, b) for b in some_blocks(20))
        progress = Progress(str(self.root / "progress.json"), "s", "t", "store")
        report = await copy_blocks(self.source, self.target, reactor, progress=progress)
        self.assertFalse(os.path.exists(progress.path))
        for name in names:
            os.unlink(path_of(self.target_dir, name))
        done = CopyReport(scanned=8, copied=8)
        progress.save(names[7], done)
        report = await copy_blocks(self.source, self.target, reactor, progress=progress)
        self.assertEqual(report.resumed_after, names[7])
        self.assertEqual((report.scanned, report.copied, report.copied_before), (20, 20, 8))
        self.assertEqual(sorted(stored(self.target_dir)), names[8:])
        self.assertFalse(os.path.exists(progress.path))

    async def test_progress_of_another_copy_is_not_resumed(self):
        """A progress file recorded for another source, target or role
        (a copy begun before the switch) is not resumed: the copy walks the
        whole source."""
        names = sorted(plant(self.source_dir, b) for b in some_blocks(6))
        path = str(self.root / "progress.json")
        Progress(path, "s", "t", "store").save(names[3], CopyReport(scanned=4, copied=4))
        progress = Progress(path, "s", "t", "fallback")
        report = await copy_blocks(self.source, self.target, reactor, progress=progress)
        self.assertIsNone(report.resumed_after)
        self.assertIn("another copy", progress.stale or "")
        self.assertEqual((report.scanned, report.copied), (6, 6))


@attrs.define
class _Vanishing:
    """A source store whose block ``gone`` disappears once listed."""

    store: Any
    gone: str

    @property
    def block_size(self) -> int:
        return int(self.store.block_size)

    scan_resumable = True

    def scan(self, cursor: str, limit: int) -> Any:
        return self.store.scan(cursor, limit)

    async def get_stored(self, name: str) -> bytes:
        if name == self.gone:
            raise KeyError(name)
        block: bytes = await self.store.get_stored(name)
        return block


class CommandCase(unittest.TestCase):
    """``snf-manage pithos-migrate-blocks`` run as a process on a node's
    configuration: policy 0's store is ``self.old``."""

    timeout = 300

    def setUp(self) -> None:
        installed = plugin_loader.installed()
        self.dsn = fresh_database(self, tap.node_schemas(
            [installed["identity"], installed["pithos"]]))
        self.root = Path(self.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.old = self.root / "old"
        self.new = self.root / "new"
        self.state = self.root / "state"
        self.configure()

    def configure(self, extra: str = "") -> None:
        self.config = self.root / "snfd.conf"
        self.config.write_text(f"[pithos]\nblock_path = {self.old}\n{extra}")

    def env(self) -> dict[str, str]:
        return dict(os.environ, SNFD_DATABASE_URL=self.dsn, SNFD_STATE_DIR=str(self.state),
                    SNFD_PLUGINS="identity,pithos")

    def argv(self, *args: str) -> list[str]:
        return [*MANAGE, "--config", str(self.config), "pithos-migrate-blocks", *args]

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env(), capture_output=True,
                              text=True, timeout=240)

    def migrate(self, *args: str, status: int = 0) -> dict[str, Any]:
        """Run the command with ``--json``; its summary."""
        done = self.manage(*args, "--json")
        self.assertEqual(done.returncode, status, done.stderr + done.stdout)
        summary: dict[str, Any] = json.loads(done.stdout)
        return summary


class CommandTests(CommandCase):
    def test_file_to_file(self):
        """The command copies policy 0's blocks into another directory,
        reports the counts, forgets its progress, finds everything there
        the second time, and --verify agrees."""
        blocks = some_blocks(30)
        names = {plant(self.old, b) for b in blocks}
        summary = self.migrate("--to", f"file:{self.new}")
        self.assertEqual(
            {k: summary[k] for k in ("policy", "source", "target", "role", "scanned",
                                     "copied", "bytes", "present", "failed", "complete")},
            {"policy": "default", "source": f"file:{self.old}", "target": f"file:{self.new}",
             "role": "store", "scanned": 30, "copied": 30,
             "bytes": sum(len(b) for b in blocks), "present": 0, "failed": [],
             "complete": True})
        self.assertEqual(stored(self.new), stored(self.old))
        self.assertEqual(set(stored(self.new)), names)
        self.assertEqual(list(self.state.glob("pithos-migrate-blocks-*")), [])
        again = self.migrate("--to", f"file:{self.new}")
        self.assertEqual((again["copied"], again["present"]), (0, 30))
        checked = self.migrate("--to", f"file:{self.new}", "--verify")
        self.assertEqual((checked["checked"], checked["ok"], checked["missing"],
                          checked["corrupt"]), (30, 30, [], []))

    def test_text_output(self):
        """Without --json: what is copied where, a summary line; progress
        lines come every 10,000 blocks (none here)."""
        for b in some_blocks(3):
            plant(self.old, b)
        done = self.manage("--to", f"file:{self.new}")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertEqual(lines[0], f"copying policy default: file:{self.old} to"
                                   f" file:{self.new}")
        self.assertRegex(lines[1], r"^done: 3 blocks scanned, 3 copied \(.*\), 0 already"
                                   r" there, 0 gone from the source meanwhile, 0 failed;")
        self.assertEqual(len(lines), 2)

    def test_progress_lines(self):
        """A line every 10,000 blocks: here a verification against an
        empty target (quick), which names every block missing."""
        names = sorted(plant(self.old, b) for b in some_blocks(10_050, size=64))
        done = self.manage("--to", f"file:{self.new}", "--verify")
        self.assertEqual(done.returncode, 1, done.stderr)
        lines = done.stdout.splitlines()
        self.assertEqual(lines[0], f"verifying policy default: file:{self.old} against"
                                   f" file:{self.new}")
        self.assertRegex(lines[1], r"^10000 blocks checked: 0 ok, 10000 missing, 0 corrupt;"
                                   r" \d+ blocks/s, [\d.]+ MB/s$")
        self.assertRegex(lines[2], r"^checked 10050 blocks in [\d.]+ s: 0 ok, 10050 missing"
                                   r" from the target, 0 corrupt there$")
        self.assertEqual(lines[3:], [f"missing: {n}" for n in names])

    def test_corrupt_source_block(self):
        """A block whose bytes changed on disk is reported, not copied,
        and the command ends with status 1; the others are copied."""
        names = [plant(self.old, b) for b in some_blocks(8)]
        corrupt(path_of(self.old, names[3]))
        done = self.manage("--to", f"file:{self.new}")
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn(f"failed: {names[3]}: its content does not match its name"
                      " (not copied)", done.stdout.splitlines())
        self.assertEqual(sorted(stored(self.new)), sorted(set(names) - {names[3]}))
        summary = self.migrate("--to", f"file:{self.new}", status=1)
        self.assertEqual([f["name"] for f in summary["failed"]], [names[3]])
        checked = self.migrate("--to", f"file:{self.new}", "--verify", status=1)
        self.assertEqual(checked["missing"], [names[3]])

    def test_bad_arguments(self):
        """Bad arguments end the command with one line on stderr and
        status 2, before anything is copied."""
        plant(self.old, b"a block")
        cases = [
            ((), "--to is required"),
            (("--to", "ftp:/x"), "--to takes file:<directory> or rados:<pool>"),
            (("--to", "rados:"), "--to takes file:<directory> or rados:<pool>"),
            (("--to", f"file:{self.new}", "--policy", "gold"),
             "no storage policy is named 'gold'"),
            (("--to", f"file:{self.old}"), "is the source itself"),
            (("--to", "rados:snfd-blocks"), "needs --rados-conf"),
            (("--to", f"file:{self.new}", "--in-flight", "0"), "positive integer"),
        ]
        for args, message in cases:
            done = self.manage(*args)
            self.assertEqual(done.returncode, 2, (args, done.stderr))
            self.assertEqual(len(done.stderr.strip().splitlines()), 1, (args, done.stderr))
            self.assertIn(message, done.stderr)
            self.assertEqual(done.stdout, "")
        self.assertFalse(self.new.exists() and stored(self.new))

    def test_switch_procedure(self):
        """The procedure on two directories: a copy while the old store is
        the node's; blocks written to it after; the switch (new store, old
        one as fallback); the second copy, from the fallback into the new
        store, brings just those and says the fallback may go; verify
        agrees.  After the switch the copy goes nowhere but the policy's
        store."""
        first = {plant(self.old, b) for b in some_blocks(10)}
        self.assertEqual(self.migrate("--to", f"file:{self.new}")["copied"], 10)
        later = {plant(self.old, b) for b in some_blocks(5, seed=2)}
        self.config.write_text(f"[pithos]\nblock_path = {self.new}\n"
                               f"block_fallback = {self.old}\n")
        done = self.manage("--to", f"file:{self.new}", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        summary = json.loads(done.stdout)
        self.assertEqual((summary["source"], summary["role"], summary["scanned"],
                          summary["copied"], summary["present"]),
                         (f"file:{self.old}", "fallback", 15, 5, 10))
        self.assertIn(f"every block of the fallback file:{self.old} is in file:{self.new}:"
                      " its block_fallback entry may go (step 4)", done.stderr)
        self.assertEqual(set(stored(self.new)), first | later)
        checked = self.migrate("--to", f"file:{self.new}", "--verify")
        self.assertEqual((checked["ok"], checked["missing"]), (15, []))
        elsewhere = self.manage("--to", f"file:{self.root / 'elsewhere'}")
        self.assertEqual(elsewhere.returncode, 2, elsewhere.stderr)
        self.assertIn(f"policy default keeps its blocks in file:{self.new} now",
                      elsewhere.stderr)

    async def test_target_full(self):
        """A target that runs out of room stops the copy with one line and
        status 1, its pages done recorded; once there is room, the same
        command resumes and finishes."""
        where = Path(await small_filesystem(self, 1024 * 1024))
        names = sorted(plant(self.old, b) for b in some_blocks(64, size=32 * 1024))
        args = ("--to", f"file:{where / 'blocks'}", "--batch", "8")
        done = self.manage(*args)
        self.assertEqual(done.returncode, 1, done.stderr)
        [line] = done.stderr.strip().splitlines()
        self.assertIn(f"the copy to file:{where / 'blocks'} stopped: No space left on"
                      " device; ", line)
        self.assertIn("records how far it got: run it again to resume", line)
        copied = stored(where / "blocks")
        self.assertTrue(0 < len(copied) < len(names))
        await run("mount", "-o", "remount,size=16m", str(where))
        summary = self.migrate(*args)
        self.assertIsNotNone(summary["resumed_after"])
        self.assertEqual((summary["scanned"], summary["failed"]), (64, []))
        self.assertEqual(stored(where / "blocks"), stored(self.old))

    def interrupt(self, sig: int, *args: str) -> tuple[subprocess.Popen[bytes], bytes]:
        """Run the command with ``args``, and send it ``sig`` as soon as
        its progress file (``self.progress``) records a page; the process
        once ended, and its stderr."""
        proc = subprocess.Popen(self.argv(*args), env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                json.loads(self.progress.read_text())
                break
            except (FileNotFoundError, ValueError):
                time.sleep(0.005)
        proc.send_signal(sig)
        out, err = proc.communicate()
        self.assertNotEqual(proc.returncode, 0,
                            f"the copy ended before the signal: {out!r} {err!r}")
        return proc, err

    def test_killed_and_resumed(self):
        """A copy killed with SIGKILL half way resumes after the last page
        it recorded: each block is listed once across both runs, the rest
        is copied, and every block in the target is whole."""
        names = sorted(plant(self.old, b) for b in some_blocks(3000, seed=7))
        self.progress = self.root / "progress.json"
        args = ("--to", f"file:{self.new}", "--batch", "100", "--in-flight", "2",
                "--progress-file", str(self.progress))
        proc, _ = self.interrupt(signal.SIGKILL, *args, "--json")
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        saved = json.loads(self.progress.read_text())  # the last page recorded
        cursor = saved["cursor"]
        before = stored(self.new)
        self.assertLess(len(before), len(names), "nothing was left to resume")
        done_before = [n for n in names if n <= cursor]
        rest = [n for n in names if n > cursor]
        self.assertEqual(saved["counts"]["scanned"], len(done_before))

        summary = self.migrate(*args)
        self.assertEqual(summary["resumed_after"], cursor)
        self.assertEqual(summary["scanned"], len(names))
        self.assertEqual(summary["copied"] + summary["present"], len(names))
        self.assertEqual(summary["copied_this_run"], len(set(rest) - set(before)))
        self.assertEqual(summary["failed"], [])
        self.assertFalse(self.progress.exists())
        after = stored(self.new)
        self.assertEqual(sorted(after), names)
        self.assertEqual(after, stored(self.old))

    def test_interrupted_and_resumed(self):
        """SIGTERM (or ^C) stops the copy with one line and status 1; run
        again, it resumes and finishes."""
        names = sorted(plant(self.old, b) for b in some_blocks(3000, seed=8))
        self.progress = self.root / "progress.json"
        args = ("--to", f"file:{self.new}", "--batch", "100", "--in-flight", "2",
                "--progress-file", str(self.progress))
        proc, err = self.interrupt(signal.SIGTERM, *args)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(err.decode().strip().splitlines(),
                         ["snf-manage: interrupted by a signal before the command finished"])
        summary = self.migrate(*args)
        self.assertIsNotNone(summary["resumed_after"])
        self.assertEqual((summary["scanned"], summary["failed"]), (len(names), []))
        self.assertEqual(stored(self.new), stored(self.old))


class RadosCommandTests(CommandCase):
    """The command's RADOS target, on the harness's Ceph."""

    def setUp(self) -> None:
        reason = ceph_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        self.cluster = shared_cluster()
        self.cluster.create_pool(POOL)
        self.namespace = f"t-{uuid.uuid4().hex[:12]}"
        super().setUp()

    def open_target(self) -> Any:
        from snfd.pithos.rados_blocks import open_store

        store = open_store(self.cluster.conf, POOL, None, namespace=self.namespace)
        self.addCleanup(store.close)
        return store

    def test_file_to_rados(self):
        """Policy 0's blocks land in the pool's namespace byte for byte;
        a second run finds them all there; --verify agrees."""
        blocks = [*some_blocks(25), os.urandom(BLOCK_SIZE)]
        names = [plant(self.old, b) for b in blocks]
        to = ("--to", f"rados:{POOL}/{self.namespace}", "--rados-conf", self.cluster.conf)
        summary = self.migrate(*to)
        self.assertEqual((summary["target"], summary["scanned"], summary["copied"],
                          summary["failed"]),
                         (f"rados:{POOL}/{self.namespace}", 26, 26, []))
        target = self.open_target()
        for name, block in zip(names, blocks, strict=True):
            self.assertEqual(target.get_stored_now(name), block)
        again = self.migrate(*to)
        self.assertEqual((again["copied"], again["present"]), (0, 26))
        checked = self.migrate(*to, "--verify")
        self.assertEqual((checked["ok"], checked["missing"], checked["corrupt"]), (26, [], []))


class RadosSourceTests(unittest.TestCase):
    """A RADOS source, whose listing cannot be resumed: a copy run again
    lists it from the start and skips what the target has, unread."""

    timeout = 300

    async def test_rados_to_file(self):
        reason = ceph_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        from snfd.pithos.rados_blocks import open_store

        cluster = shared_cluster()
        cluster.create_pool(POOL)
        source = open_store(cluster.conf, POOL, reactor, namespace=f"t-{uuid.uuid4().hex[:12]}")
        self.addCleanup(source.close)
        blocks = some_blocks(15)
        await source.put(blocks)
        target = FileBlockStore(self.mktemp(), reactor)
        progress = Progress(self.mktemp(), "s", "t", "store")
        report = await copy_blocks(source, target, reactor, progress=progress, batch=4)
        self.assertEqual((report.scanned, report.copied), (15, 15))
        self.assertEqual(sorted(await every_name(target)), sorted(map(block_hash, blocks)))
        unread = _Unread(source)
        again = await copy_blocks(unread, target, reactor, progress=progress, batch=4)
        self.assertEqual((again.scanned, again.copied, again.present), (15, 0, 15))
        self.assertEqual(unread.reads, 0)


@attrs.define
class _Unread:
    """A source that counts its block reads."""

    store: Any
    reads: int = 0

    @property
    def block_size(self) -> int:
        return int(self.store.block_size)

    @property
    def scan_resumable(self) -> bool:
        return bool(self.store.scan_resumable)

    def scan(self, cursor: str, limit: int) -> Any:
        return self.store.scan(cursor, limit)

    def get_stored(self, name: str) -> Any:
        self.reads += 1
        return self.store.get_stored(name)


SMALL = b"an object of one small block"
LARGE = os.urandom(2 * BLOCK_SIZE + 1000)


class FallbackTests(StackCase):
    """A node on a new filesystem store with the old one as its fallback
    (``block_store = file``, ``block_path`` new, ``block_fallback`` old):
    the objects whose blocks are only in the old store, as after the
    switch, before the second copy."""

    async def _setUp(self):
        root = Path(self.mktemp()).resolve()
        self.old, self.new = root / "old", root / "new"
        self.old.mkdir(parents=True)
        from snfd.testing.pithos import object_store_stack

        # One policy: what a block lacks can only come from the fallback.
        self.stack = await object_store_stack(self, pithos_config={
            "block_path": str(self.new), "block_fallback": str(self.old),
            "storage_policies": "default"})
        self.alice, self.alice_token = await self.stack.user("alice@example.org")
        self.bob, self.bob_token = await self.stack.user("bob@example.org")
        await self.container("c")
        await self.put("/c/small", SMALL)
        await self.put("/c/large", LARGE)
        # As if written before the switch: only in the old store.
        self.moved = set(hashmap_of(SMALL) + hashmap_of(LARGE))
        for name in self.moved:
            path_of(self.old, name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path_of(self.new, name), path_of(self.old, name))

    def test_the_store_is_a_fallback_store(self):
        """Policy 0's store, the node's IBlockStore, is the new one with
        the old one as fallback."""
        blocks = self.stack.blocks
        self.assertIsInstance(blocks, FallbackBlocks)
        verifyObject(IBlockStore, blocks)
        self.assertEqual((blocks.primary.path, blocks.fallback.path),
                         (str(self.new), str(self.old)))

    async def test_reads_fall_back(self):
        """Objects whose blocks are only in the old store read back whole
        (GET, a range), and the reads were the fallback's; nothing was
        written to the new store by reading."""
        self.assertEqual((await self.call("GET", "/c/small")).body, SMALL)
        self.assertEqual((await self.call("GET", "/c/large")).body, LARGE)
        r = await self.call("GET", "/c/large", headers={"Range": "bytes=4194300-4194310"})
        self.assertEqual(r.body, LARGE[4194300:4194311])
        self.assertGreater(self.stack.blocks.fallback_reads, 0)
        self.assertFalse(self.moved & set(stored(self.new)))

    async def test_missing_names_the_primarys_absent_blocks(self):
        """missing() answers for the new store alone: blocks only in the
        fallback are missing, so writers store them there."""
        self.assertEqual(sorted(await self.stack.blocks.missing(sorted(self.moved))),
                         sorted(self.moved))

    async def test_new_versions_bring_their_blocks(self):
        """A hashmap PUT naming blocks only in the fallback is accepted,
        and so is a copy to another container: the blocks are copied to
        the new store first, and the objects read back."""
        doc = json.dumps({"bytes": len(LARGE), "hashes": hashmap_of(LARGE)}).encode()
        r = await self.call("PUT", "/c/again?hashmap&format=json", body=doc,
                            headers={"Content-Type": "application/json"})
        self.assertEqual(r.code, 201, r.body)
        self.assertTrue(set(hashmap_of(LARGE)) <= set(stored(self.new)))
        self.assertEqual((await self.call("GET", "/c/again")).body, LARGE)
        await self.container("d")
        r = await self.call("COPY", "/c/small", headers={"Destination": "/d/small"})
        self.assertEqual(r.code, 201, r.body)
        self.assertEqual((await self.call("GET", "/d/small")).body, SMALL)
        self.assertEqual(stored(self.old).keys(), self.moved)

    async def test_collection_spares_the_fallback(self):
        """A collection of the new store deletes its own unreferenced
        blocks and nothing of the fallback: neither the blocks versions
        reference there nor old garbage; the objects still read back."""
        garbage_old = plant(self.old, b"garbage in the old store")
        past = time.time() - 30 * 86400
        os.utime(path_of(self.old, garbage_old), (past, past))
        [garbage_new] = await self.stack.blocks.put([b"garbage in the new store"])
        before = stored(self.old)
        scanned, removed = await self.stack.backend.collect_garbage(-60.0)
        self.assertNotIn(garbage_new, stored(self.new))
        self.assertGreaterEqual(removed, 1)
        self.assertEqual(stored(self.old), before)
        self.assertEqual((await self.call("GET", "/c/large")).body, LARGE)
        self.assertEqual((await self.call("GET", "/c/small")).body, SMALL)


class FallbackConfigTests(unittest.TestCase):
    def load(self, **pithos: str) -> Any:
        env = {"SNFD_STATE_DIR": "/state"}
        installed = plugin_loader.installed()
        return load_config(None, plugin_loader.config_keys(installed), environ=env,
                           overrides={("pithos", k): v for k, v in pithos.items()})["pithos"]

    def test_entries(self):
        """A bare directory is policy 0's; policy:directory another's."""
        self.assertEqual(parse_fallbacks(""), ())
        self.assertEqual(parse_fallbacks("/srv/old, silver:/srv/old-silver gold:rel"),
                         (("", "/srv/old"), ("silver", "/srv/old-silver"), ("gold", "rel")))
        for bad in ("/a /b", "silver:/a silver:/b", "silver:"):
            self.assertRaises(ValueError, parse_fallbacks, bad)

    def test_policies_get_their_fallbacks(self):
        """Each entry wraps its policy's store; the others stay as they
        are; an unknown policy stops the node with one line."""
        section = self.load(block_fallback="/srv/old SILVER:/srv/old-silver")
        opened: list[tuple[str, str]] = []

        def fallback(directory: str, place: str) -> Any:
            opened.append((directory, place))
            return _Store()
        policies = StoragePolicies.from_config(section, lambda p: _Store(),
                                               file_places(section, Path("/state")), fallback)
        self.assertEqual(opened, [("/srv/old", "/state/blocks"),
                                  ("/srv/old-silver", "/state/blocks-silver")])
        self.assertTrue(all(isinstance(p.blocks, FallbackBlocks) for p in policies))
        section = self.load(block_fallback="gold:/srv/old")
        e = self.assertRaises(ConfigError, StoragePolicies.from_config, section,
                              lambda p: _Store(), file_places(section, Path("/state")),
                              fallback)
        self.assertIn("[pithos] block_fallback: no storage policy is named 'gold'", str(e))

    def test_directories_checked(self):
        """A fallback directory must exist and not be the store itself."""
        node = _Node(Path(self.mktemp()).resolve())
        node.state_dir.mkdir()
        e = self.assertRaises(ConfigError, _fallback_store, node, "nowhere",
                              "/x", "file", None)
        self.assertIn(f"no directory {node.state_dir / 'nowhere'}", str(e))
        (node.state_dir / "blocks").mkdir()
        e = self.assertRaises(ConfigError, _fallback_store, node, "blocks",
                              str(node.state_dir / "blocks"), "file", None)
        self.assertIn("is the store itself", str(e))


class _Store:
    block_size = BLOCK_SIZE
    scan_resumable = True


@attrs.define
class _Node:
    state_dir: Path
    reactor: Any = reactor
