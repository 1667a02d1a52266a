"""Crash safety of the storage service: a real ``twistd snfd`` node is
killed with SIGKILL while forty uploads are in flight, a new node starts on
the same database and block directory, and then:

- every upload the old node acknowledged (201) reads back byte-identical
  with the ETag it was acknowledged with;
- every object that exists holds one complete body that a client sent for
  that name (an upload that committed just before the kill but whose reply
  was lost may exist; a partial one never);
- the container's and account's counters agree with the listing;
- garbage collection with no grace period removes exactly the blocks that
  no version references (those of the killed uploads) and the temporary
  files the crash left, and every acknowledged object still reads back.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import attrs
from twisted.internet import threads
from twisted.trial import unittest

from snfd.pithos.hashmap import BLOCK_SIZE, EMPTY_HASH, block_hash
from snfd.testing.postgres import create_database, drop_database
from tests.integration.test_pithos_clients import MiB, PithosNode, request

UPLOADS = 40
PREEXISTING = 5  # of the 40 uploads, this many overwrite objects made before
KILL_AFTER = 12  # acknowledgements seen before the SIGKILL
CHUNK = 256 * 1024
PACE = 0.01  # seconds between chunks: uploads overlap and last a while
_HEX = re.compile(r"^[0-9a-f]{64}$")


@attrs.define
class Upload:
    name: str
    body: bytes
    status: int | None = None
    etag: str | None = None
    error: str | None = None
    started: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.status == 201


def put(url: str, token: str, upload: Upload, pace: float) -> None:
    """PUT ``upload.body`` in paced chunks with a Content-Length; records
    the outcome on ``upload``."""
    parts = urlsplit(url)
    upload.started = True
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.putrequest("PUT", parts.path)
        conn.putheader("X-Auth-Token", token)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(len(upload.body)))
        conn.endheaders()
        view = memoryview(upload.body)
        for i in range(0, len(view), CHUNK):
            conn.send(view[i:i + CHUNK])
            if pace:
                time.sleep(pace)
        resp = conn.getresponse()
        resp.read()
        upload.status = resp.status
        upload.etag = (resp.getheader("ETag") or "").strip('"')
    except (OSError, http.client.HTTPException) as e:
        upload.error = repr(e)
    finally:
        conn.close()


def put_stalled(url: str, token: str, body: bytes, sent: int,
                release: threading.Event) -> None:
    """Send the first ``sent`` bytes of a PUT of ``body`` and wait (the
    upload is in flight when the node dies)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.putrequest("PUT", parts.path)
        conn.putheader("X-Auth-Token", token)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:sent])
        release.wait(300)
    except (OSError, http.client.HTTPException):
        pass
    finally:
        conn.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - content check


def block_files(path: Path) -> tuple[set[str], list[Path]]:
    """(names of block files, other files) under a block store directory."""
    blocks, others = set(), []
    if not path.exists():
        return blocks, others
    for f in path.rglob("*"):
        if f.is_file():
            if _HEX.match(f.name) and f.parent.parent.parent.parent == path:
                blocks.add(f.name)
            else:
                others.append(f)
    return blocks, others


class CrashTests(unittest.TestCase):
    timeout = 900

    def node(self, dsn: str, state_dir: Path, config: str = "") -> PithosNode:
        node = PithosNode(dsn, state_dir, config)
        self.addCleanup(node.stop)
        return node

    async def test_sigkill_during_uploads(self):
        """Acknowledged uploads survive a SIGKILL of the node byte-identical;
        nothing partial or unsent appears; GC then removes exactly the
        unreferenced blocks and leftovers, and nothing acknowledged."""
        admin, dbname, dsn = create_database("snfd_test")
        self.addCleanup(drop_database, admin, dbname)
        root = Path(tempfile.mkdtemp(prefix="snfd-pithos-crash-"))
        self.addCleanup(shutil.rmtree, root, True)
        state = root / "node"

        first = self.node(dsn, state)
        await threads.deferToThread(first.start)
        user = await threads.deferToThread(first.add_user, "crash@example.org")
        status, _, _ = await threads.deferToThread(
            request, "PUT", first.url + f"/object-store/v1/{user.uuid}/crash", user.token)
        self.assertEqual(status, 201)

        rng = random.Random(4242)
        sizes = [0, 1, 4 * MiB, 8 * MiB, 4 * MiB + 1] + [
            rng.randint(0, 10 * MiB) for _ in range(UPLOADS - 5)]
        rng.shuffle(sizes)
        uploads = [Upload(f"obj-{i:02d}" if i >= PREEXISTING else f"old-{i}",
                          random.Random(i).randbytes(size)) for i, size in enumerate(sizes)]
        sent: dict[str, list[bytes]] = {u.name: [u.body] for u in uploads}
        before: dict[str, Upload] = {}
        for i in range(PREEXISTING):
            old = Upload(f"old-{i}", random.Random(1000 + i).randbytes((i + 1) * MiB + i))
            await threads.deferToThread(put, self.url_of(first, user, old.name), user.token,
                                        old, 0)
            self.assertTrue(old.acknowledged, old)
            before[old.name] = old
            sent[old.name].append(old.body)

        # One upload stops after two whole blocks: they are stored, and no
        # version will ever reference them.
        stalled = random.Random(99).randbytes(3 * BLOCK_SIZE)
        orphans = {block_hash(stalled[:BLOCK_SIZE]),
                   block_hash(stalled[BLOCK_SIZE:2 * BLOCK_SIZE])}
        await threads.deferToThread(self.upload_and_kill, first, user.token, user.uuid,
                                    uploads, stalled, orphans)
        acked = [u for u in uploads if u.acknowledged]
        lost = [u for u in uploads if not u.acknowledged]
        self.assertGreaterEqual(len(acked), KILL_AFTER)
        self.assertTrue(lost, "every upload finished before the kill: nothing was tested")
        for u in uploads:
            if u.status is not None:
                self.assertEqual(u.status, 201, u.name)
                self.assertIn(u.etag, (md5(u.body),), u.name)
        blocks_after_crash, _ = block_files(first.block_path)
        self.assertLessEqual(orphans, blocks_after_crash)

        second = self.node(dsn, state, "")
        await threads.deferToThread(second.start)
        # What each name must hold: an acknowledged upload's body, else (an
        # overwrite whose reply was lost) the old body or the new one.
        must: dict[str, list[bytes]] = {u.name: [u.body] for u in acked}
        for name in before:
            must.setdefault(name, sent[name])
        await threads.deferToThread(self.check_objects, second, user, must, sent)

        referenced = await threads.deferToThread(self.referenced_blocks, second, user)
        self.assertLessEqual(referenced - {EMPTY_HASH}, blocks_after_crash)
        self.assertFalse(orphans & referenced)
        await threads.deferToThread(second.manage, "pithos-gc", "--grace", "0")
        expected = referenced - {EMPTY_HASH}
        deadline = time.monotonic() + 120
        while True:
            blocks, others = block_files(second.block_path)
            if (blocks == expected and not others) or time.monotonic() > deadline:
                break
            await threads.deferToThread(time.sleep, 0.5)
        self.assertEqual(sorted(blocks - expected), [], "unreferenced blocks left by GC")
        self.assertEqual(sorted(expected - blocks), [], "referenced blocks removed by GC")
        self.assertEqual(others, [], "temporary files left by GC")
        await threads.deferToThread(self.check_objects, second, user, must, sent)

    @staticmethod
    def url_of(node: PithosNode, user, name: str) -> str:
        return f"{node.url}/object-store/v1/{user.uuid}/crash/{quote(name)}"

    def upload_and_kill(self, node: PithosNode, token: str, account: str,
                        uploads: list[Upload], stalled: bytes, orphans: set[str]) -> None:
        """Start the uploads a little apart, SIGKILL the node once
        KILL_AFTER of them are acknowledged and the stalled upload's
        ``orphans`` blocks are stored, and wait for every client."""
        release = threading.Event()
        base = f"{node.url}/object-store/v1/{account}/crash/"
        hanging = threading.Thread(target=put_stalled, args=(
            base + "stalled", token, stalled, 2 * BLOCK_SIZE + 1000, release))
        hanging.start()
        workers = [threading.Thread(target=put, args=(base + quote(u.name), token, u, PACE))
                   for u in uploads]

        def starter() -> None:
            for w in workers:
                w.start()
                time.sleep(0.05)

        launcher = threading.Thread(target=starter)
        launcher.start()
        deadline = time.monotonic() + 300
        while (sum(u.acknowledged for u in uploads) < KILL_AFTER
               or not orphans <= block_files(node.block_path)[0]):
            if time.monotonic() > deadline:
                break
            if all(u.status is not None or u.error for u in uploads if u.started) and \
                    not launcher.is_alive():
                break
            time.sleep(0.02)
        node.process.signal(signal.SIGKILL)
        assert node.process.proc is not None
        node.process.proc.wait(30)
        release.set()
        hanging.join(60)
        launcher.join()
        for w in workers:
            w.join(180)

    def check_objects(self, node: PithosNode, user, must: dict[str, list[bytes]],
                      sent: dict[str, list[bytes]]) -> None:
        """Every acknowledged upload reads back; every listed object is one
        complete body sent for it, with its MD5 as ETag; counters agree
        with the listing."""
        base = f"{node.url}/object-store/v1/{user.uuid}/crash"
        for name, bodies in sorted(must.items()):
            status, headers, body = request("GET", f"{base}/{quote(name)}", user.token)
            self.assertEqual(status, 200, name)
            self.assertIn(md5(body), {md5(b) for b in bodies}, f"{name} does not read back")
            self.assertEqual(headers["etag"].strip('"'), md5(body), name)
        status, _, body = request("GET", base + "?format=json", user.token)
        self.assertEqual(status, 200)
        listing = json.loads(body)
        names = [e["name"] for e in listing]
        self.assertLessEqual(set(must), set(names))
        for entry in listing:
            name = entry["name"]
            self.assertIn(name, sent, f"{name} was never sent")
            status, _, body = request("GET", f"{base}/{quote(name)}", user.token)
            self.assertEqual(status, 200, name)
            self.assertIn(md5(body), {md5(b) for b in sent[name]},
                          f"{name} holds no body sent for it ({len(body)} bytes)")
            self.assertEqual(entry["bytes"], len(body), name)
        status, headers, _ = request("HEAD", base, user.token)
        self.assertEqual(int(headers["x-container-object-count"]), len(listing))
        used = sum(e["bytes"] for e in listing)
        self.assertEqual(int(headers["x-container-bytes-used"]), used)
        status, headers, _ = request("HEAD", f"{node.url}/object-store/v1/{user.uuid}",
                                     user.token)
        self.assertEqual(int(headers["x-account-bytes-used"]), used)

    def referenced_blocks(self, node: PithosNode, user) -> set[str]:
        """The block hashes of every version of every object (history too)."""
        base = f"{node.url}/object-store/v1/{user.uuid}/crash"
        status, _, body = request("GET", base + "?format=json", user.token)
        self.assertEqual(status, 200)
        hashes: set[str] = set()
        for entry in json.loads(body):
            url = f"{base}/{quote(entry['name'])}"
            status, _, body = request("GET", url + "?version=list&format=json", user.token)
            self.assertEqual(status, 200, entry["name"])
            for version, _ in json.loads(body)["versions"]:
                status, _, body = request(
                    "GET", f"{url}?version={version}&hashmap&format=json", user.token)
                if status == 404:  # a deletion marker has no map
                    continue
                self.assertEqual(status, 200, (entry["name"], version))
                hashes.update(json.loads(body)["hashes"])
        return hashes
