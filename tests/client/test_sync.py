"""The pure logic of the ``snf`` client: local hashing against the
server's hashing rules, the sync plan, safe paths and conflict names, the
transfer algorithms over an in-memory object store (not HTTP), fault
messages, retries of the transport (over a requests adapter, no
network), and the settings file."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter
from twisted.trial import unittest

from snfd.client import config as cfg
from snfd.client import sync
from snfd.client.pithos import (
    ClientError,
    Hashmap,
    PithosClient,
    Transport,
    encode_params,
    fault_message,
    sharing_header,
)
from snfd.client.sync import (
    CONFLICT,
    DELETE_LOCAL,
    DELETE_REMOTE,
    DOWNLOAD,
    UPLOAD,
    Action,
    conflict_name,
    filter_plan,
    plan,
    safe_relpath,
)
from snfd.pithos.hashmap import EMPTY_HASH, block_hash, hashmap_of, merkle

BS = 16  # a tiny block size keeps the files small and the blocks many


class MemoryStore:
    """An in-memory stand-in for ``PithosClient`` with the object store's
    hashmap rules (blocks named by ``block_hash``, 409 lists the missing
    ones).  It records what crossed the "network"."""

    storage_url = "memory://store/v1/user"

    def __init__(self, block_size: int = BS):
        self.block_size = block_size
        self.blocks: dict[str, bytes] = {EMPTY_HASH: b""}
        self.objects_: dict[tuple[str, str], tuple[int, list[str], str]] = {}
        self.uploaded: list[str] = []
        self.ranges: list[tuple[int, int]] = []
        self.version = 0
        self.corrupt = False

    # -- the PithosClient methods the transfers use --
    def block_params(self, container: str) -> tuple[int, str]:
        return self.block_size, "sha256"

    def put_hashmap(self, container, name, size, hashes, *, content_type="", headers=None):
        headers = headers or {}
        current = self.objects_.get((container, name))
        if "If-None-Match" in headers and current is not None:
            raise ClientError(412, "The object exists.")
        if "If-Match" in headers and (current is None or headers["If-Match"].strip('"')
                                      != merkle(current[1])):
            raise ClientError(412, "The object does not match If-Match.")
        missing = [h for h in dict.fromkeys(hashes) if h not in self.blocks]
        if missing:
            return missing, {}
        self.version += 1
        self.objects_[(container, name)] = (size, list(hashes), str(self.version))
        return [], {"X-Object-Version": str(self.version)}

    def upload_block(self, container: str, data: bytes) -> list[str]:
        h = block_hash(data)
        self.blocks[h] = data
        self.uploaded.append(h)
        return [h]

    def object_info(self, container, name, version=None):
        if (container, name) not in self.objects_:
            raise ClientError(404, "Object not found.")
        size, hashes, v = self.objects_[(container, name)]
        return {"Content-Type": "application/octet-stream", "X-Object-Version": v,
                "Content-Length": str(size), "X-Object-Hash": merkle(hashes)}

    def get_hashmap(self, container, name, version=None):
        size, hashes, _ = self.objects_[(container, name)]
        return Hashmap(bytes=size, hashes=list(hashes), block_size=self.block_size,
                       block_hash="sha256")

    def content(self, container: str, name: str) -> bytes:
        size, hashes, _ = self.objects_[(container, name)]
        data = b"".join(self.blocks[h].ljust(self.block_size, b"\0") for h in hashes)
        return data[:size]

    def read_range(self, container, name, start, end, version=None):
        self.ranges.append((start, end))
        data = self.content(container, name)[start:end + 1]
        return b"X" * len(data) if self.corrupt else data

    def objects(self, container, *, prefix="", delimiter=None, limit=None):
        for (c, name), (size, hashes, _) in sorted(self.objects_.items()):
            if c == container and name.startswith(prefix):
                yield {"name": name, "bytes": size, "x_object_hash": merkle(hashes),
                       "content_type": "application/octet-stream"}

    def delete(self, container, name, *, recursive=False, if_match=None):
        current = self.objects_.get((container, name))
        if current is None:
            raise ClientError(404 if if_match is None else 412, "Object not found.")
        if if_match is not None and if_match != merkle(current[1]):
            raise ClientError(412, "The object does not match If-Match.")
        del self.objects_[(container, name)]

    # -- helpers --
    def put(self, container: str, name: str, data: bytes) -> None:
        hashes = hashmap_of(data, self.block_size)
        for i, h in enumerate(hashes):
            self.blocks[h] = data[i * self.block_size:(i + 1) * self.block_size]
        self.put_hashmap(container, name, len(data), hashes)


def client_of(store: MemoryStore) -> PithosClient:
    return store  # type: ignore[return-value]


def blocks(*chars: str) -> bytes:
    """Data of one full block per character."""
    return b"".join(c.encode() * BS for c in chars)


class HashingTests(unittest.TestCase):
    @given(st.binary(max_size=5 * BS + 3), st.sampled_from([1, 4]))
    @settings(max_examples=60, deadline=None)
    def test_hash_file_is_the_servers_hashmap(self, data, workers):
        """A local file hashes to exactly the hashmap the server stores
        for the same bytes (``hashmap_of``), in one thread or several."""
        path = Path(self.mktemp())
        path.write_bytes(data)
        local = sync.hash_file(path, BS, workers=workers)
        self.assertEqual(local.size, len(data))
        self.assertEqual(local.hashes, hashmap_of(data, BS))
        self.assertEqual(local.object_hash, merkle(hashmap_of(data, BS)))

    def test_trailing_zeros_do_not_change_a_block_name(self):
        """A block and the same block with zeros after it are one block:
        a file whose last block is all zeros names it EMPTY_HASH."""
        path = Path(self.mktemp())
        path.write_bytes(b"a" * BS + b"\0" * BS + b"b\0\0")
        local = sync.hash_file(path, BS)
        self.assertEqual(local.hashes, [hashlib.sha256(b"a" * BS).hexdigest(), EMPTY_HASH,
                                        hashlib.sha256(b"b").hexdigest()])

    def test_block_spans(self):
        """Blocks cover the object exactly; only the last is short."""
        self.assertEqual(sync.block_spans(0, 4), [])
        self.assertEqual(sync.block_spans(4, 4), [(0, 4)])
        self.assertEqual(sync.block_spans(10, 4), [(0, 4), (4, 4), (8, 2)])


class PlanTests(unittest.TestCase):
    def test_equal_sides_need_nothing(self):
        """Paths with the same hash on both sides are left alone, whatever
        the base says."""
        self.assertEqual(plan({"a": "1", "b": "2"}, {"a": "1", "b": "2"}, {"a": "0"}), [])

    def test_new_files_are_copied_to_the_other_side(self):
        """With no base, a path on one side only is copied over."""
        self.assertEqual(plan({"up": "1"}, {"down": "2"}, {}),
                         [Action("down", DOWNLOAD), Action("up", UPLOAD)])

    def test_one_sided_changes_are_copied(self):
        """A path changed on one side since the last sync goes to the other."""
        base = {"l": "0", "r": "0"}
        self.assertEqual(plan({"l": "1", "r": "0"}, {"l": "0", "r": "2"}, base),
                         [Action("l", UPLOAD), Action("r", DOWNLOAD)])

    def test_deletions_are_propagated(self):
        """A path deleted on one side and unchanged on the other is deleted
        there too (this is what the base is for)."""
        base = {"gone-locally": "1", "gone-remotely": "2"}
        self.assertEqual(plan({"gone-remotely": "2"}, {"gone-locally": "1"}, base),
                         [Action("gone-locally", DELETE_REMOTE),
                          Action("gone-remotely", DELETE_LOCAL)])

    def test_a_change_wins_over_a_deletion(self):
        """Deleted on one side but changed on the other: the changed file
        is copied back, nothing is lost."""
        base = {"a": "1", "b": "1"}
        self.assertEqual(plan({"a": "2"}, {"b": "3"}, base),
                         [Action("a", UPLOAD), Action("b", DOWNLOAD)])

    def test_both_changed_is_a_conflict(self):
        """Both sides changed differently (or appeared differently without
        a base): conflict."""
        self.assertEqual(plan({"a": "1", "b": "5"}, {"a": "2", "b": "6"}, {"a": "0"}),
                         [Action("a", CONFLICT), Action("b", CONFLICT)])

    def test_deleted_on_both_sides(self):
        """A path gone from both sides needs nothing."""
        self.assertEqual(plan({}, {}, {"a": "1"}), [])

    def test_filter_by_direction_and_delete(self):
        """``up`` only changes remote objects, ``down`` only local files;
        ``delete=False`` skips deletions; conflicts need both ways."""
        actions = [Action("a", UPLOAD), Action("b", DOWNLOAD), Action("c", DELETE_LOCAL),
                   Action("d", DELETE_REMOTE), Action("e", CONFLICT)]
        todo, skipped = filter_plan(actions, direction="up")
        self.assertEqual([a.path for a in todo], ["a", "d"])
        self.assertEqual([a.path for a in skipped], ["b", "c", "e"])
        todo, _ = filter_plan(actions, direction="down")
        self.assertEqual([a.path for a in todo], ["b", "c"])
        todo, _ = filter_plan(actions, delete=False)
        self.assertEqual([a.path for a in todo], ["a", "b", "e"])


class PathTests(unittest.TestCase):
    def test_safe_relpath(self):
        """Remote names that could escape the sync directory, or clash
        with the sync's own files, are refused."""
        for good in ("a", "a/b.txt", "dir/.hidden", "x..y"):
            self.assertTrue(safe_relpath(good), good)
        for bad in ("", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/",
                    "a\\b", "a\x00b", ".snf-sync.json", "d/.f.snf-part"):
            self.assertFalse(safe_relpath(bad), bad)

    def test_conflict_name(self):
        """Conflict copies keep the extension and take the first free number."""
        self.assertEqual(conflict_name("d/report.txt", []), "d/report (conflict).txt")
        self.assertEqual(conflict_name("README", []), "README (conflict)")
        self.assertEqual(conflict_name(".bashrc", []), ".bashrc (conflict)")
        self.assertEqual(conflict_name("a.txt", ["a (conflict).txt"]), "a (conflict 2).txt")


class UploadTests(unittest.TestCase):
    def setUp(self):
        self.store = MemoryStore()
        self.path = Path(self.mktemp())

    def upload(self) -> sync.UploadResult:
        return sync.upload_file(client_of(self.store), self.path, "c", "f")

    def test_upload_sends_only_missing_blocks(self):
        """A first upload sends each distinct block once; re-uploading
        after one block changed sends that block only."""
        self.path.write_bytes(blocks("a", "b", "a", "c") + b"tail")
        first = self.upload()
        self.assertEqual((first.blocks, first.uploaded_blocks), (5, 4))
        self.assertEqual(self.store.content("c", "f"), self.path.read_bytes())
        data = bytearray(self.path.read_bytes())
        data[BS + 3] = ord("z")
        self.path.write_bytes(bytes(data))
        second = self.upload()
        self.assertEqual(second.uploaded_blocks, 1)
        self.assertEqual(second.uploaded_bytes, BS)
        self.assertEqual(self.store.content("c", "f"), bytes(data))
        self.assertEqual(second.object_hash, merkle(hashmap_of(bytes(data), BS)))

    def test_unchanged_upload_sends_no_block(self):
        """Uploading a file the server has already sends no block (resume
        after an interruption works the same way)."""
        self.path.write_bytes(blocks("q", "r"))
        self.upload()
        self.assertEqual(self.upload().uploaded_blocks, 0)

    def test_zero_tails_are_not_sent(self):
        """Trailing zeros of a block are not sent; a zero block never is."""
        self.path.write_bytes(b"x" + b"\0" * (BS - 1) + b"\0" * BS)
        result = self.upload()
        self.assertEqual((result.uploaded_blocks, result.uploaded_bytes), (1, 1))
        self.assertEqual(self.store.content("c", "f"), self.path.read_bytes())

    def test_empty_file(self):
        """An empty file is the hashmap [EMPTY_HASH] and sends nothing."""
        self.path.write_bytes(b"")
        result = self.upload()
        self.assertEqual((result.size, result.uploaded_blocks), (0, 0))
        self.assertEqual(result.object_hash, EMPTY_HASH)

    def test_file_changed_while_uploading(self):
        """If a block no longer matches the hash the server asked for, the
        upload stops with a clear error instead of storing wrong data."""
        self.path.write_bytes(blocks("a", "b"))
        local = sync.hash_file(self.path, BS)
        self.path.write_bytes(blocks("a", "c"))
        e = self.assertRaises(ClientError, sync.upload_file, client_of(self.store),
                              self.path, "c", "f", local=local)
        self.assertIn("changed while", str(e))


class DownloadTests(unittest.TestCase):
    def setUp(self):
        self.store = MemoryStore()
        self.dest = Path(self.mktemp())

    def download(self, **kw: Any) -> sync.DownloadResult:
        return sync.download_object(client_of(self.store), "c", "f", self.dest, **kw)

    def test_fresh_download(self):
        """A download fetches each non-zero block and writes the object."""
        data = blocks("a", "b") + b"\0" * BS + b"end"
        self.store.put("c", "f", data)
        result = self.download()
        self.assertEqual(self.dest.read_bytes(), data)
        self.assertEqual(result.fetched_blocks, 3)  # the zero block is never fetched
        self.assertFalse(sync.partial_path(self.dest).exists())

    def test_only_changed_blocks_are_fetched(self):
        """Downloading over an older copy fetches only the changed blocks
        and truncates or extends to the object's size."""
        self.dest.write_bytes(blocks("a", "b", "c", "d", "e"))
        new = blocks("a", "B", "c") + b"xy"
        self.store.put("c", "f", new)
        result = self.download()
        self.assertEqual(self.dest.read_bytes(), new)
        self.assertEqual(self.store.ranges, [(BS, 2 * BS - 1), (3 * BS, 3 * BS + 1)])
        self.assertEqual(result.fetched_bytes, BS + 2)

    def test_identical_file_is_left_alone(self):
        """A local file that already holds the object is neither fetched
        nor rewritten."""
        data = blocks("a", "b") + b"c"
        self.store.put("c", "f", data)
        self.dest.write_bytes(data)
        before = self.dest.stat()
        self.assertEqual(self.download().fetched_blocks, 0)
        after = self.dest.stat()
        self.assertEqual((before.st_ino, before.st_mtime_ns), (after.st_ino, after.st_mtime_ns))
        self.assertEqual(self.store.ranges, [])

    def test_resume_from_partial_file(self):
        """An interrupted download's partial file is reused: only blocks it
        lacks are fetched."""
        data = blocks("a", "b", "c", "d")
        self.store.put("c", "f", data)
        sync.partial_path(self.dest).write_bytes(data[:2 * BS])
        result = self.download()
        self.assertEqual(result.fetched_blocks, 2)
        self.assertEqual(self.dest.read_bytes(), data)

    def test_wrong_data_is_refused(self):
        """Data that does not match the hashmap is not written to the
        destination; an error says so."""
        self.store.put("c", "f", blocks("a"))
        self.dest.write_bytes(b"old")
        self.store.corrupt = True
        e = self.assertRaises(ClientError, self.download)
        self.assertIn("do not match", str(e))
        self.assertEqual(self.dest.read_bytes(), b"old")

    def test_empty_object(self):
        """An empty object downloads as an empty file."""
        self.store.put("c", "f", b"")
        self.dest.write_bytes(b"something")
        self.assertEqual(self.download().fetched_blocks, 0)
        self.assertEqual(self.dest.read_bytes(), b"")


class SyncCase(unittest.TestCase):
    """A temporary directory synced with ``c/p`` of a ``MemoryStore``."""

    def setUp(self):
        self.store = MemoryStore()
        self.root = Path(self.mktemp())
        self.root.mkdir()

    def run_sync(self, **kw: Any) -> sync.SyncReport:
        return sync.sync(client_of(self.store), self.root, "c", "p", **kw)

    def remote(self) -> dict[str, bytes]:
        return {n[len("p/"):]: self.store.content(c, n) for c, n in self.store.objects_
                if n.startswith("p/")}

    def local(self) -> dict[str, bytes]:
        return {p.relative_to(self.root).as_posix(): p.read_bytes()
                for p in self.root.rglob("*") if p.is_file()
                and p.name != sync.STATE_NAME}


class SyncTests(SyncCase):
    def test_round_trip(self):
        """Local-only files go up, remote-only objects come down, then a
        local deletion and a remote deletion propagate, and a second
        sync does nothing."""
        (self.root / "sub").mkdir()
        (self.root / "sub" / "mine.txt").write_bytes(b"mine")
        self.store.put("c", "p/theirs.bin", blocks("t"))
        self.store.put("c", "other/outside", b"not under the prefix")
        report = self.run_sync()
        self.assertEqual(sorted(report.done),
                         [Action("sub/mine.txt", UPLOAD), Action("theirs.bin", DOWNLOAD)])
        self.assertEqual(self.local(), self.remote())
        self.assertEqual(self.run_sync().done, [])
        (self.root / "sub" / "mine.txt").unlink()
        self.store.delete("c", "p/theirs.bin")
        report = self.run_sync()
        self.assertEqual(sorted(report.done), [Action("sub/mine.txt", DELETE_REMOTE),
                                               Action("theirs.bin", DELETE_LOCAL)])
        self.assertEqual(self.local(), {})
        self.assertEqual(self.remote(), {})
        self.assertEqual(self.store.content("c", "other/outside"), b"not under the prefix")

    def test_conflict_keeps_both(self):
        """When both sides changed, the remote version takes the name and
        the local one is kept (and uploaded) as "name (conflict)"."""
        (self.root / "a.txt").write_bytes(b"v1")
        self.run_sync()
        (self.root / "a.txt").write_bytes(b"local v2")
        self.store.put("c", "p/a.txt", b"remote v2")
        report = self.run_sync()
        self.assertEqual(report.done, [Action("a.txt", CONFLICT)])
        expected = {"a.txt": b"remote v2", "a (conflict).txt": b"local v2"}
        self.assertEqual(self.local(), expected)
        self.assertEqual(self.remote(), expected)
        self.assertEqual(self.run_sync().done, [])

    def test_dry_run_changes_nothing(self):
        """--dry-run reports the plan and touches neither side nor the state."""
        (self.root / "a").write_bytes(b"1")
        report = self.run_sync(dry_run=True)
        self.assertEqual(report.done, [Action("a", UPLOAD)])
        self.assertEqual(self.remote(), {})
        self.assertFalse((self.root / sync.STATE_NAME).exists())

    def test_unchanged_files_are_not_rehashed(self):
        """The state caches each file's hash by size and mtime: a second
        scan of unchanged files does not read them."""
        (self.root / "a").write_bytes(b"1")
        self.run_sync()
        cache = sync.SyncState.load(self.root).cache
        found = sync.scan_local(self.root, BS, cache)
        self.assertIsNone(found["a"].local)  # from the cache, not hashed

    def test_a_failed_step_does_not_stop_the_others(self):
        """A step that fails is reported; the others are done, and the
        failed one is tried again next time."""
        self.store.put("c", "p/dir", b"a file")
        (self.root / "dir").mkdir()
        (self.root / "dir" / "x").write_bytes(b"x")
        (self.root / "b").write_bytes(b"b")
        report = self.run_sync()
        self.assertEqual([a.path for a, _ in report.failed], ["dir"])
        self.assertIn(Action("b", UPLOAD), report.done)


class MidPass(sync.Progress):
    """Runs ``change`` when the pass is about to carry out the action on
    ``path``: the other side, or the user, acting during a pass."""

    def __init__(self, path: str, change: Any):
        self.path, self.change = path, change

    def action(self, action: Action) -> None:
        if action.path == self.path:
            self.change()


class SyncRaceTests(SyncCase):
    """What a pass does when a side changes while it runs, what order it
    works in, and the transfers it saves."""

    def test_remote_change_during_the_pass_is_not_overwritten(self):
        """The upload is conditional on the remote hash the pass saw: a
        change made meanwhile stays, and the next pass sees a conflict
        that keeps both."""
        (self.root / "a.txt").write_bytes(b"v1")
        self.run_sync()
        (self.root / "a.txt").write_bytes(b"local v2")
        race = MidPass("a.txt", lambda: self.store.put("c", "p/a.txt", b"remote v2"))
        report = self.run_sync(progress=race)
        self.assertEqual([(a.kind, a.path) for a, _ in report.failed], [(UPLOAD, "a.txt")])
        self.assertIn("changed remotely", report.failed[0][1])
        self.assertEqual(self.remote(), {"a.txt": b"remote v2"})
        self.assertEqual(self.run_sync().done, [Action("a.txt", CONFLICT)])
        expected = {"a.txt": b"remote v2", "a (conflict).txt": b"local v2"}
        self.assertEqual(self.local(), expected)
        self.assertEqual(self.remote(), expected)

    def test_new_remote_object_during_the_pass_is_not_overwritten(self):
        """A path the pass saw only locally is created remotely only if it
        is still absent there (If-None-Match: *)."""
        (self.root / "n").write_bytes(b"mine")
        race = MidPass("n", lambda: self.store.put("c", "p/n", b"theirs"))
        report = self.run_sync(progress=race)
        self.assertEqual([a.path for a, _ in report.failed], ["n"])
        self.assertEqual(self.remote(), {"n": b"theirs"})
        self.run_sync()
        self.assertEqual(self.local(), {"n": b"theirs", "n (conflict)": b"mine"})

    def test_local_edit_during_a_download_is_kept(self):
        """A download replaces the file only if it is still as the pass
        saw it; the edit made meanwhile wins a conflict later."""
        (self.root / "a.txt").write_bytes(b"v1")
        self.run_sync()
        self.store.put("c", "p/a.txt", b"remote v2")

        def edit() -> None:
            (self.root / "a.txt").write_bytes(b"edited meanwhile")
        report = self.run_sync(progress=MidPass("a.txt", edit))
        self.assertEqual([(a.kind, a.path) for a, _ in report.failed], [(DOWNLOAD, "a.txt")])
        self.assertEqual((self.root / "a.txt").read_bytes(), b"edited meanwhile")
        self.run_sync()
        expected = {"a.txt": b"remote v2", "a (conflict).txt": b"edited meanwhile"}
        self.assertEqual(self.local(), expected)
        self.assertEqual(self.remote(), expected)

    def test_local_edit_during_a_local_delete_is_kept(self):
        """A remote deletion removes the local file only if it is unchanged;
        the edit made meanwhile is uploaded next time."""
        (self.root / "a").write_bytes(b"v1")
        self.run_sync()
        self.store.delete("c", "p/a")

        def edit() -> None:
            (self.root / "a").write_bytes(b"still wanted")
        report = self.run_sync(progress=MidPass("a", edit))
        self.assertEqual([(a.kind, a.path) for a, _ in report.failed], [(DELETE_LOCAL, "a")])
        self.run_sync()
        self.assertEqual(self.remote(), {"a": b"still wanted"})

    def test_remote_edit_during_a_remote_delete_is_kept(self):
        """A remote deletion is conditional on the hash the pass saw
        (If-Match): the edit made meanwhile stays and comes down next."""
        (self.root / "a").write_bytes(b"v1")
        self.run_sync()
        (self.root / "a").unlink()
        report = self.run_sync(progress=MidPass("a", lambda: self.store.put("c", "p/a", b"v2")))
        self.assertEqual([(a.kind, a.path) for a, _ in report.failed], [(DELETE_REMOTE, "a")])
        self.run_sync()
        self.assertEqual(self.local(), {"a": b"v2"})

    def test_remote_delete_already_done_meanwhile(self):
        """A remote deletion whose object went meanwhile (another client, or
        a retried DELETE whose first try took effect: 412 either way) is
        done, not a failure."""
        (self.root / "a").write_bytes(b"v1")
        self.run_sync()
        (self.root / "a").unlink()
        report = self.run_sync(progress=MidPass("a", lambda: self.store.delete("c", "p/a")))
        self.assertEqual((report.done, report.failed), ([Action("a", DELETE_REMOTE)], []))
        self.assertEqual(self.remote(), {})

    def test_deletions_come_after_copies(self):
        """A pass copies before it deletes, whatever the names' order."""
        for name in ("a", "m"):
            (self.root / name).write_bytes(name.encode())
        self.run_sync()
        (self.root / "a").unlink()
        (self.root / "m").unlink()
        (self.root / "z").write_bytes(b"z")
        self.store.put("c", "p/b", b"b")
        kinds = [a.kind for a in self.run_sync().done]
        self.assertEqual(kinds, [DOWNLOAD, UPLOAD, DELETE_REMOTE, DELETE_REMOTE])

    def test_a_remote_rename_is_copied_locally(self):
        """A remote rename arrives as a new name: its blocks come from the
        local file of the same content, none over the network."""
        data = blocks("a", "b", "c", "d")
        (self.root / "old").write_bytes(data)
        self.run_sync()
        self.store.put("c", "p/new", data)
        self.store.delete("c", "p/old")
        self.store.ranges.clear()
        report = self.run_sync()
        self.assertEqual(sorted(report.done), [Action("new", DOWNLOAD),
                                               Action("old", DELETE_LOCAL)])
        self.assertEqual(self.store.ranges, [])
        self.assertEqual(self.local(), {"new": data})

    def test_files_being_written_are_held(self):
        """With ``settle``, a file modified less than that long ago waits
        for a later pass, and nothing is deleted for it meanwhile."""
        (self.root / "a").write_bytes(b"1")
        self.run_sync()
        (self.root / "a").write_bytes(b"half writ")
        now = (self.root / "a").stat().st_mtime
        report = self.run_sync(settle=5.0, clock=lambda: now + 1)
        self.assertEqual((report.done, report.held), ([], ["a"]))
        self.assertEqual(self.remote(), {"a": b"1"})
        report = self.run_sync(settle=5.0, clock=lambda: now + 6)
        self.assertEqual(report.done, [Action("a", UPLOAD)])

    def test_state_is_saved_during_a_long_pass(self):
        """The state is written during a pass, not only at its end, so a
        killed pass leaves most of its work recorded."""
        for i in range(3):
            (self.root / f"f{i}").write_bytes(b"x%d" % i)
        ticks = iter(range(0, 100, 2))
        seen: list[set[str]] = []

        class Look(sync.Progress):
            def action(inner, action: Action) -> None:
                state = sync.SyncState.load(self.root)
                seen.append(set(next(iter(state.remotes.values()), {})))
        self.run_sync(progress=Look(), clock=lambda: float(next(ticks)))
        self.assertEqual(seen, [set(), {"f0"}, {"f0", "f1"}])


class FaultMessageTests(unittest.TestCase):
    def test_openstack_fault(self):
        """The message of a fault body, with its details."""
        body = json.dumps({"itemNotFound": {"code": 404, "message": "Object does not exist",
                                            "details": "c/o"}}).encode()
        self.assertEqual(fault_message(404, "Not Found", body), "Object does not exist: c/o")

    def test_keystone_error(self):
        """Keystone's ``{"error": {...}}`` shape."""
        body = json.dumps({"error": {"code": 401, "message": "Invalid credentials",
                                     "title": "Unauthorized"}}).encode()
        self.assertEqual(fault_message(401, "Unauthorized", body), "Invalid credentials")

    def test_text_and_empty_bodies(self):
        """A text body gives its first line; HTML or nothing gives the reason."""
        self.assertEqual(fault_message(500, "X", b"broken  thing\nmore"), "broken thing")
        self.assertEqual(fault_message(502, "Bad Gateway", b"<html>..."), "Bad Gateway")
        self.assertEqual(fault_message(500, "", b""), "HTTP 500")

    def test_encode_params_and_sharing(self):
        """Flags are sent bare; values are quoted; sharing is read=...;write=..."""
        self.assertEqual(encode_params([("hashmap", None), ("format", "json")]),
                         "?hashmap&format=json")
        self.assertEqual(encode_params({"prefix": "a b/c"}), "?prefix=a%20b%2Fc")
        self.assertEqual(sharing_header(["a", " b"], ["*"]), "read=a,b;write=*")
        self.assertEqual(sharing_header([], []), "")


class ScriptedAdapter(BaseAdapter):
    """A requests adapter answering from a script of (status, body) or
    exceptions; no network."""

    def __init__(self, script: list[Any]):
        super().__init__()
        self.script = list(script)
        self.seen: list[tuple[str, str]] = []

    def send(self, request, **kwargs):
        self.seen.append((request.method, request.url))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        status, body = step
        resp = requests.Response()
        resp.status_code = status
        resp._content = body
        resp.reason = "Reason"
        resp.url = request.url
        resp.request = request
        return resp

    def close(self):
        pass


class TransportTests(unittest.TestCase):
    def transport(self, script: list[Any]) -> tuple[Transport, ScriptedAdapter, list[float]]:
        adapter = ScriptedAdapter(script)
        session = requests.Session()
        session.mount("http://", adapter)
        sleeps: list[float] = []
        return Transport(session=session, sleep=sleeps.append, retries=3), adapter, sleeps

    def test_503_and_connection_errors_are_retried_with_backoff(self):
        """503 and refused connections are retried, the pauses doubling;
        the counters count every attempt's body bytes."""
        t, adapter, sleeps = self.transport([
            (503, b""), requests.ConnectionError("refused"), (201, b"done")])
        resp = t.request("PUT", "http://h/x", data=b"12345")
        self.assertEqual(resp.content, b"done")
        self.assertEqual(sleeps, [0.5, 1.0])
        self.assertEqual((t.counters.sent, t.counters.received, t.counters.requests),
                         (15, 4, 3))

    def test_move_is_not_retried_after_a_500(self):
        """MOVE is not repeated after a 500 (it might have happened); the
        error carries the server's message."""
        body = json.dumps({"computeFault": {"code": 500, "message": "boom"}}).encode()
        t, adapter, sleeps = self.transport([(500, body), (201, b"")])
        e = self.assertRaises(ClientError, t.request, "MOVE", "http://h/x")
        self.assertEqual((e.status, str(e)), (500, "boom (500)"))
        self.assertEqual(len(adapter.seen), 1)

    def test_gives_up_after_the_retries(self):
        """After ``retries`` more attempts the last error is raised."""
        t, adapter, sleeps = self.transport([(503, b"busy")] * 4)
        e = self.assertRaises(ClientError, t.request, "GET", "http://h/x")
        self.assertEqual(e.status, 503)
        self.assertEqual(len(adapter.seen), 4)

    def test_client_errors_are_not_retried(self):
        """A 4xx is final: one attempt, the fault message."""
        body = json.dumps({"itemNotFound": {"code": 404, "message": "No such object"}})
        t, adapter, _ = self.transport([(404, body.encode())])
        e = self.assertRaises(ClientError, t.request, "GET", "http://h/x")
        self.assertEqual(str(e), "No such object (404)")
        self.assertEqual(len(adapter.seen), 1)


class ConfigTests(unittest.TestCase):
    def test_save_and_load(self):
        """Settings round-trip through a file of mode 0600 in a directory
        created 0700; a missing file gives the defaults."""
        path = Path(self.mktemp()) / "snf" / "config.json"
        self.assertEqual(cfg.load(path), cfg.Settings())
        s = cfg.Settings(url="http://x", token="secret", user="u", storage_url="http://x/v1/u")
        cfg.save(s, path)
        self.assertEqual(cfg.load(path), s)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(path.parent.stat().st_mode), 0o700)

    def test_environment_names_the_file(self):
        """$SNF_CONFIG chooses the file."""
        path = Path(self.mktemp())
        self.patch(os, "environ", dict(os.environ, SNF_CONFIG=str(path)))
        self.assertEqual(cfg.default_path(), path)

    def test_malformed_file(self):
        """A malformed file is an error naming the file."""
        path = Path(self.mktemp())
        path.write_text('{"token": 5}')
        e = self.assertRaises(cfg.ConfigError, cfg.load, path)
        self.assertIn(str(path), str(e))
