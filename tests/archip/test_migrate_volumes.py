"""Moving a node's volumes from its directory to RADOS: ``copy_volumes``
with ``prune`` (directory to directory), and ``snf-manage
archip-migrate-volumes`` run as a process on a node's configuration, its
target a RADOS namespace of the harness's shared Ceph
(``snfd.testing.ceph``), skipped with the harness's reason where Ceph is
not installed."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial import unittest

from snfd.archip import mapfile
from snfd.archip.place import FileVolumePlace, PointerChanged, blocks_missing, copy_volumes
from snfd.archip.volumes import VolumeStore
from snfd.cli import archip as archip_cli
from snfd.pithos.blocks import FileBlockStore
from snfd.pithos.hashmap import BLOCK_SIZE
from snfd.testing.ceph import ceph_unavailable, shared_cluster
from tests.archip.test_rados_volumes import fill_source

MANAGE = [sys.executable, "-m", "snfd.cli.manage"]
COMMAND = "archip-migrate-volumes"
POOL = "snfd-test-volumes"
BS = 64 * 1024


class _Racing(FileVolumePlace):
    """A target whose pointers another node changes under every removal."""

    def remove_pointer_now(self, name: str, expected: Any, floor: int) -> None:
        raise PointerChanged(f"volume {name} changed")


class PruneTests(unittest.TestCase):
    """``copy_volumes(..., prune=...)`` between two directories."""

    def setUp(self) -> None:
        root = Path(self.mktemp()).resolve()
        self.source = FileVolumePlace(root / "source", BS)
        self.target = FileVolumePlace(root / "target", BS)
        self.target_path = root / "target"
        for name, block in (("keep", "a"), ("gone", "b")):
            self.source.create_pointer_now(name, (block * 64,), 100, None)
            self.source.create_object_now(mapfile.owned_name(name, 0, 0), None, 0,
                                          name.encode(), 0)
        report = copy_volumes(self.source, self.target)
        self.assertEqual((report.pointers_copied, report.objects_copied), (2, 2))
        # Removed from the source after that copy; its snapshots keep
        # objects, so its name got a floor.
        self.source.remove_pointer_now("gone", self.source.read_pointer_now("gone"), 3)

    def test_without_prune(self) -> None:
        """The volume removed from the source stays in the target; its
        floor is copied."""
        report = copy_volumes(self.source, self.target, replace_pointers=True)
        self.assertEqual((report.pointers_present, report.pointers_removed, report.floors),
                         (1, 0, 1))
        self.assertEqual(self.target.names_now(), ["gone", "keep"])

    def test_prune(self) -> None:
        """Every volume the source lacks goes from the target, with the
        source's floor; the next copy finds nothing to remove."""
        seen: list[tuple[str, str]] = []
        report = copy_volumes(self.source, self.target, replace_pointers=True, prune=True,
                              progress=lambda kind, name: seen.append((kind, name)))
        self.assertTrue(report.complete)
        self.assertEqual((report.pointers_present, report.pointers_copied,
                          report.pointers_removed), (1, 0, 1))
        self.assertEqual(self.target.names_now(), ["keep"])
        self.assertEqual(self.target.first_epoch_now("gone"), 3)
        self.assertEqual(seen[-1], ("removed", "gone"))
        # Its objects stay for the start-up sweep (no map names them).
        self.assertIn(mapfile.owned_name("gone", 0, 0), self.target.object_names_now())
        again = copy_volumes(self.source, self.target, replace_pointers=True, prune=True)
        self.assertEqual((again.pointers_present, again.pointers_removed), (1, 0))

    def test_prune_named(self) -> None:
        """Given names, only those go: a volume another source copied into
        the target stays."""
        self.target.create_pointer_now("elsewhere", ("c" * 64,), 100, None)
        report = copy_volumes(self.source, self.target, replace_pointers=True,
                              prune={"gone", "keep"})
        self.assertEqual(report.pointers_removed, 1)
        self.assertEqual(self.target.names_now(), ["elsewhere", "keep"])
        report = copy_volumes(self.source, self.target, replace_pointers=True, prune=True)
        self.assertEqual(report.pointers_removed, 1)
        self.assertEqual(self.target.names_now(), ["keep"])

    def test_changed_meanwhile(self) -> None:
        """A removal that loses a race is a conflict, and the copy goes on."""
        racing = _Racing(self.target_path, BS)
        report = copy_volumes(self.source, racing, replace_pointers=True, prune=True)
        self.assertEqual(report.conflicts, ["volume gone: not removed: volume gone changed"])
        self.assertFalse(report.complete)
        self.assertEqual(self.target.names_now(), ["gone", "keep"])


class BlocksMissingTests(unittest.TestCase):
    """``blocks_missing``: what a node reading the volumes through other
    block stores would not find."""

    async def setUp(self) -> None:  # type: ignore[override]
        root = Path(self.mktemp()).resolve()
        self.root = root
        self.blocks = FileBlockStore(root / "blocks", reactor, block_size=BS)
        self.volumes = VolumeStore(str(root / "volumes"), self.blocks, reactor)
        self.image = await self.blocks.put([b"image block one", b"image block two"])
        await self.volumes.clone("clone", mapfile.from_hashmap(self.image, BS + 15, BS))
        await fill_source(self.volumes, BS)
        self.place = self.volumes.place

    def store(self, name: str) -> FileBlockStore:
        return FileBlockStore(self.root / name, None, block_size=BS)

    def test_what_each_store_lacks(self) -> None:
        """An empty store lacks every map; one with only the maps lacks the
        image's blocks the clone names (owned and zero objects are not
        blocks); the source's own store, or a store and it as its
        fallback, lack nothing; a volume the place lacks is skipped."""
        names = self.place.names_now()
        self.assertEqual(names, ["clone", "gone-snap", "vol", "vol-snap"])
        empty = self.store("empty")
        lacking = blocks_missing(self.place, [empty], [*names, "no-such-volume"])
        self.assertEqual(lacking, {n: list(self.place.read_pointer_now(n).blocks)
                                   for n in names})
        maps_only = self.store("maps")
        for name in names:
            for block in self.place.read_pointer_now(name).blocks:
                maps_only.store_now(block, self.blocks.get_stored_now(block))
        self.assertEqual(blocks_missing(self.place, [maps_only], names),
                         {"clone": self.image})
        self.assertEqual(blocks_missing(self.place, [self.blocks], names), {})
        self.assertEqual(blocks_missing(self.place, [empty, maps_only, self.blocks], names),
                         {})
        self.assertEqual(blocks_missing(self.place, [], ["clone"]),
                         {"clone": list(self.place.read_pointer_now("clone").blocks)})


class ProgressTests(unittest.TestCase):
    """The command's progress lines and text summary, in this process
    (a progress line per 1000 objects would take thousands here)."""

    def test_lines(self) -> None:
        root = Path(self.mktemp()).resolve()
        source = FileVolumePlace(root / "source", BS)
        source.create_pointer_now("v", ("a" * 64,), 100, None)
        for i in range(5):
            source.create_object_now(mapfile.owned_name("v", 0, i), None, 0, b"x", 0)
        args = argparse.Namespace(final=False, json=False)
        record = archip_cli.Record(str(root / "state" / archip_cli.RECORD), source.where,
                                   "file:target")
        stores = [FileBlockStore(root / "blocks", None, block_size=BS)]
        copy = archip_cli._Copy(args, source, FileVolumePlace(root / "target", BS),
                                "file:target", record, stores, "file:blocks")
        self.patch(archip_cli, "PROGRESS_EVERY", 2)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(copy.run(), 0)
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], f"copying: volumes of {source.where} to file:target")
        self.assertRegex(lines[1], r"^2 of 5 objects checked or copied; \d+ objects/s$")
        self.assertRegex(lines[2], r"^4 of 5 objects checked or copied; \d+ objects/s$")
        self.assertRegex(lines[3], r"^done in [\d.]+ s: 1 pointers copied, 0 already there,"
                                   r" 0 removed; 5 objects copied \(320.0 KiB\), 0 already"
                                   r" there; 0 floors raised; 0 conflicts$")
        # The map's block is not in the stores a node on RADOS would read:
        # said, and (not the final copy) the status stays 0.
        self.assertEqual(lines[4:6], [
            "1 of 1 volumes lack blocks of their maps in file:blocks:",
            f"lacking blocks: volume v: 1 (first {'a' * 64})"])
        self.assertIn("copy the blocks (snf-manage pithos-migrate-blocks", lines[6])
        self.assertEqual(len(lines), 7)
        doc = json.loads((root / "state" / archip_cli.RECORD).read_text())
        self.assertEqual(doc["copies"], {f"{source.where} -> file:target": ["v"]})


class _CommandCase(unittest.TestCase):
    """``snf-manage archip-migrate-volumes`` as a process on a node's
    configuration: its volumes in ``self.volumes_dir``."""

    timeout = 300

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.state = self.root / "state"
        self.volumes_dir = self.root / "volumes"
        self.conf = ""
        self.configure()

    def configure(self, extra: str = "", pithos: str = "") -> None:
        self.config = self.root / "snfd.conf"
        self.config.write_text(f"[archip]\npath = {self.volumes_dir}\n{extra}"
                               f"[pithos]\nrados_conf = {self.conf}\n{pithos}")

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, SNFD_STATE_DIR=str(self.state))
        return subprocess.run([*MANAGE, "--config", str(self.config), COMMAND, *args],
                              env=env, capture_output=True, text=True, timeout=240)

    def assert_refused(self, args: tuple[str, ...], message: str) -> None:
        done = self.manage(*args)
        self.assertEqual(done.returncode, 2, (args, done.stderr, done.stdout))
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, (args, done.stderr))
        self.assertIn(message, done.stderr)
        self.assertEqual(done.stdout, "")


class BadArgumentTests(_CommandCase):
    """Refusals that need no cluster: one line on stderr, status 2."""

    def test_bad_arguments(self) -> None:
        self.volumes_dir.mkdir()
        for args, message in [
            ((), "--to is required"),
            (("--to", "nonsense"), "--to takes rados:<pool>[/<namespace>], not 'nonsense'"),
            (("--to", "rados:"), "--to takes rados:<pool>[/<namespace>]"),
            (("--to", "file:/srv/volumes"), "--to takes rados:<pool>[/<namespace>]"),
            (("--to", "rados:p/a/b"), "--to takes rados:<pool>[/<namespace>]"),
            (("--to", "rados:snfd-blocks"), "needs --rados-conf (or [pithos] rados_conf)"),
        ]:
            self.assert_refused(args, message)

    def test_no_directory(self) -> None:
        self.assert_refused(("--to", "rados:snfd-blocks"),
                            f"[archip] path: no directory {self.volumes_dir}")

    def test_already_on_rados(self) -> None:
        self.volumes_dir.mkdir()
        self.configure("volume_store = rados\n")
        self.assert_refused(("--to", "rados:snfd-blocks", "--final"),
                            "[archip] volume_store is rados already")


class RadosCommandTests(_CommandCase):
    """The procedure against the shared Ceph: copies while the node would
    run, then the final copy."""

    async def setUp(self) -> None:  # type: ignore[override]
        reason = ceph_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        self.cluster = shared_cluster()
        self.cluster.create_pool(POOL)
        self.namespace = f"m-{uuid.uuid4().hex[:12]}"
        super().setUp()
        self.conf = self.cluster.conf
        # The blocks (the maps among them) stay in this directory, policy
        # 0's fallback: the volumes read back from RADOS find them there.
        self.blocks_namespace = f"b-{uuid.uuid4().hex[:12]}"
        self.configure_blocks(fallback=True)
        self.blocks = FileBlockStore(str(self.root / "blocks"), reactor)
        self.assertEqual(self.blocks.block_size, BLOCK_SIZE)
        self.source = VolumeStore(str(self.volumes_dir), self.blocks, reactor)
        await fill_source(self.source, BLOCK_SIZE)
        await self.source.create("doomed", 2 * BLOCK_SIZE)
        v = await self.source.open("doomed", True)
        await v.write(BLOCK_SIZE, b"removed after the first copy")
        await v.close()

    def configure_blocks(self, fallback: bool) -> None:
        """The node's blocks in a namespace of the pool of its own, with
        their directory as the fallback or not."""
        self.configure(f"rados_namespace = {self.namespace}\n",
                       f"rados_pool = {POOL}\nrados_namespace = {self.blocks_namespace}\n"
                       + (f"block_fallback = {self.root / 'blocks'}\n" if fallback else ""))

    def open_target(self) -> Any:
        from snfd.archip.rados_volumes import open_place

        place = open_place(self.cluster.conf, POOL, None, block_size=BLOCK_SIZE,
                           namespace=self.namespace)
        self.addCleanup(place.close)
        return place

    def migrate(self, *args: str, status: int = 0) -> dict[str, Any]:
        """Run the command with ``--json``; its summary."""
        done = self.manage("--to", f"rados:{POOL}", *args, "--json")
        self.assertEqual(done.returncode, status, done.stderr + done.stdout)
        summary: dict[str, Any] = json.loads(done.stdout)
        self.assertEqual((summary["source"], summary["target"], summary["final"]),
                         (str(self.volumes_dir), f"rados:{POOL}/{self.namespace}",
                          "--final" in args))
        return summary

    async def assert_same(self, target: Any) -> None:
        """The target has the source's volumes: the same pointers, objects
        of the same bytes, the same floors; they read the same."""
        source = self.source.place
        self.assertEqual(target.names_now(), source.names_now())
        for name in source.names_now():
            there, here = target.read_pointer_now(name), source.read_pointer_now(name)
            self.assertEqual((there.blocks, there.length), (here.blocks, here.length), name)
        self.assertEqual(sorted(target.object_names_now()), sorted(source.object_names_now()))
        for name in source.object_names_now():
            self.assertEqual(target.read_object_now(name, 0, BLOCK_SIZE),
                             source.read_object_now(name, 0, BLOCK_SIZE), name)
        self.assertEqual(target.floors_now(), source.floors_now())
        on_rados = VolumeStore(target, self.blocks, reactor, node="node-b")
        for name in await self.source.names():
            here, there = await self.source.open(name, False), await on_rados.open(name, False)
            try:
                self.assertEqual(await there.read(0, there.size),
                                 await here.read(0, here.size), name)
            finally:
                await here.close()
                await there.close()

    async def test_procedure(self) -> None:
        """A first copy brings everything; a second finds it all there; a
        volume written and one removed after it: a copy without --final
        lists the changed pointer as a conflict and leaves the removed
        volume; the final copy replaces the one and removes the other,
        but not a volume another node's directory brought."""
        names = ["doomed", "gone-snap", "vol", "vol-snap"]
        objects = len(self.source.place.object_names_now())
        first = self.migrate()
        self.assertEqual(
            {k: first[k] for k in ("pointers_copied", "pointers_present", "pointers_removed",
                                   "objects_copied", "objects_present", "floors_raised",
                                   "conflicts", "complete")},
            {"pointers_copied": 4, "pointers_present": 0, "pointers_removed": 0,
             "objects_copied": objects, "objects_present": 0, "floors_raised": 1,
             "conflicts": [], "complete": True})
        self.assertEqual(first["bytes_copied"], objects * BLOCK_SIZE)
        target = self.open_target()
        self.assertEqual(target.names_now(), names)
        await self.assert_same(target)

        again = self.migrate()
        self.assertEqual((again["pointers_copied"], again["pointers_present"],
                          again["objects_copied"], again["objects_present"],
                          again["floors_raised"]), (0, 4, 0, objects, 0))

        # The node goes on: a write into an object "vol" owns, one that
        # makes it a new object (a new map), and "doomed" removed.
        v = await self.source.open("vol", True)
        await v.write(10, b"in place")
        await v.write(2 * BLOCK_SIZE + 5, b"a new object")
        await v.close()
        await self.source.remove("doomed")
        # A volume another node's directory brought to the pool.
        target.create_pointer_now("elsewhere", ("e" * 64,), 100, None)
        objects_now = len(self.source.place.object_names_now())

        running = self.migrate(status=1)
        self.assertEqual(running["conflicts"], ["volume vol: the target's map differs"])
        self.assertEqual((running["pointers_copied"], running["pointers_removed"],
                          running["objects_copied"], running["complete"]), (0, 0, 2, False))
        self.assertEqual(target.names_now(), sorted([*names, "elsewhere"]))
        done = self.manage("--to", f"rados:{POOL}")
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn("conflict: volume vol: the target's map differs",
                      done.stdout.splitlines())

        final = self.migrate("--final")
        self.assertEqual((final["pointers_copied"], final["pointers_present"],
                          final["pointers_removed"], final["objects_copied"],
                          final["objects_present"], final["conflicts"], final["complete"]),
                         (1, 2, 1, 0, objects_now, [], True))
        self.assertEqual(target.names_now(), ["elsewhere", "gone-snap", "vol", "vol-snap"])
        target.remove_pointer_now("elsewhere", target.read_pointer_now("elsewhere"), 0)
        # The removed volume's object goes with the start-up sweep of the
        # first node on RADOS.
        node = VolumeStore(target, self.blocks, reactor, node="node-b")
        self.assertEqual(await node.sweep(), 1)
        await self.assert_same(target)
        record = json.loads((self.state / archip_cli.RECORD).read_text())
        self.assertEqual(record["copies"],
                         {f"{self.volumes_dir} -> rados:{POOL}/{self.namespace}":
                          ["gone-snap", "vol", "vol-snap"]})

        done = self.manage("--to", f"rados:{POOL}", "--final")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertEqual(lines[0], f"final copy: volumes of {self.volumes_dir} to"
                                   f" rados:{POOL}/{self.namespace}")
        self.assertRegex(lines[1], r"^done in [\d.]+ s: 0 pointers copied, 3 already there,"
                                   r" 0 removed; 0 objects copied \(0 B\), \d+ already there;"
                                   r" 0 floors raised; 0 conflicts$")
        self.assertEqual(lines[2], "the blocks of the 3 volumes' maps are in"
                                   f" rados:{POOL}/{self.blocks_namespace} or the fallback"
                                   f" {self.root / 'blocks'}")
        self.assertEqual(lines[3], f"every volume of {self.volumes_dir} is in"
                                   f" rados:{POOL}/{self.namespace}: set [archip] volume_store"
                                   " = rados, with [pithos] block_store = rados, and start"
                                   " the node (step 4)")

    async def test_final_needs_the_blocks(self) -> None:
        """Volumes whose maps' blocks a node on RADOS would not find (in
        policy 0's RADOS namespace or its fallback directory) are listed;
        the final copy then ends with status 1, and passes once the
        fallback is set or the blocks are copied to RADOS."""
        from snfd.pithos.migrate import copy_blocks
        from snfd.pithos.rados_blocks import open_store

        names = ["doomed", "gone-snap", "vol", "vol-snap"]
        self.configure_blocks(fallback=False)
        first = self.migrate()
        self.assertEqual(sorted(first["volumes_lacking_blocks"]), names)
        self.assertEqual(first["volumes_checked"], 4)
        done = self.manage("--to", f"rados:{POOL}", "--final")
        self.assertEqual(done.returncode, 1, done.stderr + done.stdout)
        self.assertIn(f"4 of 4 volumes lack blocks of their maps in"
                      f" rados:{POOL}/{self.blocks_namespace}:", done.stdout.splitlines())
        self.assertIn("then run --final again", done.stdout)
        self.assertNotIn("start the node", done.stdout)

        self.configure_blocks(fallback=True)
        self.assertEqual(self.migrate("--final")["volumes_lacking_blocks"], {})

        self.configure_blocks(fallback=False)
        store = open_store(self.cluster.conf, POOL, reactor, namespace=self.blocks_namespace)
        self.addCleanup(store.close)
        copied = await copy_blocks(self.blocks, store, reactor)
        self.assertTrue(copied.complete)
        self.assertEqual(self.migrate("--final")["volumes_lacking_blocks"], {})

    def test_no_such_pool(self) -> None:
        self.assert_refused(("--to", "rados:snfd-no-such-pool"), "has no pool")
