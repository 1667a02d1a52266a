"""Backup and sync tools that speak Swift, against a real ``twistd snfd``
node (identity and pithos) on a fresh database: rclone (a tree copied up,
checked, synced with deletions, copied back byte for byte, purged) and
restic (a repository initialised, two backups, check, restore, forget
and prune).  Both log in with Keystone v3 passwords, as their users do.

The tools come from Debian (``./dev test`` installs them as root); a
machine without them skips these tests, saying why.
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.cloudnode import CloudNode, User
from snfd.testing.postgres import fresh_database

RCLONE = shutil.which("rclone")
RESTIC = shutil.which("restic")
MiB = 1024 * 1024


def make_tree(root: Path, seed: int) -> None:
    """A small tree: nested directories, an empty file, UTF-8 names, a
    file of several 4 MiB blocks."""
    rng = random.Random(seed)
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "empty.txt").write_bytes(b"")
    (root / "docs" / "日本語 ünïcode.txt").write_text("こんにちは\n")
    (root / "docs" / "deep" / "er" / "note.md").write_text("# note\n" * 100)
    (root / "big.bin").write_bytes(rng.randbytes(9 * MiB + 123))
    for i in range(20):
        (root / "docs" / f"f{i:02d}.dat").write_bytes(rng.randbytes(rng.randrange(1, 70000)))


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(same_tree(a / d, b / d) for d in cmp.common_dirs)


class ToolCase(unittest.TestCase):
    timeout = 600
    node: CloudNode
    user: User

    async def setUp(self) -> None:
        dsn = fresh_database(self)
        self.root = Path(tempfile.mkdtemp(prefix="snfd-swift-tools-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.node = CloudNode(dsn, self.root / "node")
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start, 120.0, "/identity/v3")
        self.user = await threads.deferToThread(self.node.add_user, "tools@example.org")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OS_", "ST_", "RCLONE_", "RESTIC_"))}
        env.update(HOME=str(self.root), **extra)
        return env

    def run_tool(self, argv: list[str], env: dict[str, str],
                 ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL, check=False)
        if ok and proc.returncode != 0:
            self.fail(f"{' '.join(argv[:3])} failed ({proc.returncode}):\n{proc.stdout}\n"
                      f"{proc.stderr}\n{self.node.tail(30)}")
        return proc


class RcloneTests(ToolCase):
    if RCLONE is None:
        skip = "rclone is not installed (Debian's rclone; ./dev test installs it as root)"

    def rclone(self, *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert RCLONE is not None
        env = self.env(
            RCLONE_CONFIG_SNF_TYPE="swift", RCLONE_CONFIG_SNF_AUTH_VERSION="3",
            RCLONE_CONFIG_SNF_AUTH=f"{self.node.url}/identity/v3",
            RCLONE_CONFIG_SNF_USER=self.user.email, RCLONE_CONFIG_SNF_KEY=self.user.password,
            RCLONE_CONFIG_SNF_TENANT_ID=self.user.uuid, RCLONE_CONFIG_SNF_DOMAIN="Default",
            RCLONE_CONFIG_SNF_TENANT_DOMAIN="Default")
        return self.run_tool([RCLONE, "--config", "/dev/null", *argv], env, ok)

    async def test_copy_check_sync_and_back(self) -> None:
        """rclone copies a tree up, finds it identical (sizes and MD5s),
        syncs a change (an edit, a new file, a deletion), copies it back
        byte for byte, lists and purges it."""
        def scenario() -> None:
            src = self.root / "src"
            make_tree(src, 1)
            self.rclone("mkdir", "snf:backup")
            self.rclone("copy", str(src), "snf:backup/tree")
            self.rclone("check", str(src), "snf:backup/tree")
            (src / "docs" / "f03.dat").write_bytes(b"changed")
            (src / "docs" / "added.txt").write_text("new\n")
            (src / "docs" / "f04.dat").unlink()
            self.rclone("sync", str(src), "snf:backup/tree")
            self.rclone("check", str(src), "snf:backup/tree")
            listed = json.loads(self.rclone("lsjson", "-R", "--files-only",
                                            "snf:backup/tree").stdout)
            names = {entry["Path"] for entry in listed}
            self.assertIn("docs/added.txt", names)
            self.assertNotIn("docs/f04.dat", names)
            back = self.root / "back"
            self.rclone("copy", "snf:backup/tree", str(back))
            # rclone does not make empty directories; the tree has none.
            self.assertTrue(same_tree(src, back))
            self.rclone("purge", "snf:backup")
            self.assertNotIn("backup", self.rclone("lsd", "snf:").stdout)

        await threads.deferToThread(scenario)


class ResticTests(ToolCase):
    if RESTIC is None:
        skip = "restic is not installed (Debian's restic; ./dev test installs it as root)"

    def restic(self, *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert RESTIC is not None
        # restic (0.14) takes the project id from OS_TENANT_ID, not OS_PROJECT_ID.
        env = self.env(
            OS_AUTH_URL=f"{self.node.url}/identity/v3", OS_USERNAME=self.user.email,
            OS_PASSWORD=self.user.password, OS_TENANT_ID=self.user.uuid,
            OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
            RESTIC_PASSWORD="repository secret", RESTIC_CACHE_DIR=str(self.root / "cache"))
        return self.run_tool([RESTIC, "-r", "swift:restic:/repo", *argv], env, ok)

    async def test_backup_check_restore_prune(self) -> None:
        """restic makes a repository in a container, backs a tree up twice
        (the second after changes), checks every pack, restores the latest
        snapshot identical to the tree, and forgets and prunes the first."""
        def scenario() -> None:
            src = self.root / "data"
            make_tree(src, 2)
            self.restic("init")
            self.restic("backup", str(src))
            (src / "docs" / "f01.dat").write_bytes(b"second version")
            (src / "docs" / "f02.dat").unlink()
            self.restic("backup", str(src))
            self.restic("check", "--read-data")
            snapshots = json.loads(self.restic("snapshots", "--json").stdout)
            self.assertEqual(len(snapshots), 2)
            target = self.root / "restored"
            self.restic("restore", "latest", "--target", str(target))
            self.assertTrue(same_tree(src, target / src.relative_to("/")))
            self.restic("forget", snapshots[0]["short_id"], "--prune")
            self.restic("check")
            self.assertEqual(len(json.loads(self.restic("snapshots", "--json").stdout)), 1)

        await threads.deferToThread(scenario)
