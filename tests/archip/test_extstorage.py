"""The Ganeti ExtStorage provider ``archipelago``
(``share/ganeti/extstorage/archipelago``) run as Ganeti runs it: each
action script a subprocess with Ganeti's ``VOL_*``/``EXTP_*`` variables.

It talks to a stand-in of the node (``StandInNode``, for these tests only):
the ``/archip/v1`` contract over a real ``VolumeStore`` on a temporary
``FileBlockStore``, and a real ``NbdServerFactory`` on 127.0.0.1, both in
trial's reactor (the scripts run in threads).  Attaching is real:
``nbdfuse`` and a loop device, so the tests need root, ``/dev/fuse``,
``nbdfuse`` (Debian libnbd-bin), ``fusermount3`` (fuse3) and ``losetup``,
and skip saying which is missing.  Whatever a test leaves attached,
mounted or running is released by its cleanups, and each test checks that
the provider itself left nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.python import log
from twisted.trial import unittest
from twisted.web import server
from twisted.web.resource import Resource

from snfd.archip.io import VolumeBusy
from snfd.archip.mapfile import MapV2
from snfd.archip.nbd import NbdServerFactory
from snfd.archip.volumes import VolumeStore
from snfd.cli import archip as installer
from snfd.pithos.blocks import FileBlockStore

MiB = 1024 * 1024
TOKEN = "component-token-of-the-tests"


def unavailable() -> str | None:
    """Why the provider cannot attach volumes here, or None."""
    if os.geteuid() != 0:
        return "attaching needs root (FUSE mounts, loop devices)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    for tool, package in (("nbdfuse", "libnbd-bin"), ("fusermount3", "fuse3"),
                          ("losetup", "mount")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian {package}; ./dev test installs it)"
    if not os.path.exists("/usr/bin/python3"):
        return "the provider runs /usr/bin/python3, which is missing"
    return None


def info_of(name: str, m: MapV2) -> dict[str, Any]:
    owned = sum(1 for e in m.entries if e.writable)
    zero = sum(1 for e in m.entries if e.is_zero)
    return {"name": name, "size": m.size, "read_only": m.read_only, "epoch": m.epoch,
            "objects": {"owned": owned, "shared": len(m.entries) - owned - zero,
                        "zero": zero}}


class StandInNode(Resource):
    """The node's ``/archip/v1`` contract (docs/archipelago.md) over a
    volume store and its NBD server: a stand-in for these tests."""

    isLeaf = True

    def __init__(self, store: VolumeStore, nbd: NbdServerFactory, nbd_port: int):
        super().__init__()
        self.store, self.nbd, self.nbd_port = store, nbd, nbd_port
        self.calls: list[tuple[str, str]] = []

    def render(self, request: Any) -> Any:
        d = defer.ensureDeferred(self._answer(request))

        def send(reply: tuple[int, Any]) -> None:
            status, body = reply
            request.setResponseCode(status)
            if body is not None:
                request.setHeader(b"content-type", b"application/json")
                request.write(json.dumps(body).encode())
            request.finish()

        d.addCallback(send)
        return server.NOT_DONE_YET

    async def _answer(self, request: Any) -> tuple[int, Any]:
        if request.getHeader(b"x-auth-token") != TOKEN.encode():
            return 401, {"unauthorized": {"code": 401, "message": "bad token"}}
        method = request.method.decode()
        parts = request.path.decode().rstrip("/").split("/")[1:]
        self.calls.append((method, "/".join(parts)))
        raw = request.content.read()
        body = json.loads(raw) if raw else {}
        if parts[:2] != ["archip", "v1"]:
            return 404, {"message": "not here"}
        rest = parts[2:]
        try:
            if not rest and method == "GET":
                return 200, {"nbd": {"host": "127.0.0.1", "port": self.nbd_port,
                                     "tls": self.nbd.tls is not None},
                             "block_size": self.store.block_size}
            if len(rest) == 2 and rest[0] == "volumes":
                return await self._volume(method, rest[1], body)
            if len(rest) == 3 and rest[0] == "volumes" and method == "POST":
                return await self._action(rest[1], rest[2], body)
        except KeyError as e:
            return 404, {"message": f"no volume {e}"}
        except ValueError as e:
            return 400, {"message": str(e)}
        except (FileExistsError, VolumeBusy) as e:
            return 409, {"message": str(e)}
        return 404, {"message": "no such route"}

    async def _volume(self, method: str, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET":
            return 200, info_of(name, await self.store.info(name))
        if method == "DELETE":
            if name in self.nbd.open_volumes():
                return 409, {"message": f"{name} is open over NBD"}
            await self.store.remove(name)
            return 204, None
        if method == "PUT":
            size = body.get("size")
            if not isinstance(size, int) or size <= 0:
                raise ValueError(f"bad size {size!r}")
            try:
                current = await self.store.info(name)
            except KeyError:
                pass
            else:
                if not body.get("exist_ok"):
                    return 409, {"message": f"{name} exists"}
                if size > current.size:
                    current = await self.store.grow(name, size)
                return 200, info_of(name, current)
            origin = body.get("origin")
            made = (await self.store.clone(name, origin, size) if origin
                    else await self.store.create(name, size))
            return 201, info_of(name, made)
        return 405, {"message": method}

    async def _action(self, name: str, action: str, body: dict[str, Any]) -> tuple[int, Any]:
        if action == "grow":
            return 200, info_of(name, await self.store.grow(name, body["size"]))
        if action == "snapshot":
            snap = body["snapshot"]
            return 201, info_of(snap, await self.store.snapshot(name, snap))
        return 404, {"message": action}


def leftovers(root: str) -> dict[str, list[str]]:
    """Loop devices over files, FUSE mounts and nbdfuse processes under ``root``."""
    loops = json.loads(subprocess.run(["losetup", "--list", "--json"], capture_output=True,
                                      text=True, check=False).stdout or '{"loopdevices": []}')
    found: dict[str, list[str]] = {
        "loops": [d["name"] for d in loops.get("loopdevices", [])
                  if (d.get("back-file") or "").startswith(root)],
        "mounts": [], "nbdfuse": []}
    with open("/proc/self/mountinfo") as f:
        found["mounts"] = [line.split()[4] for line in f if line.split()[4].startswith(root)]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"nbdfuse") and any(root.encode() in a for a in argv):
            found["nbdfuse"].append(pid)
    return found


def force_release(root: str) -> None:
    """Release whatever is left under ``root`` (a failed test's attachments)."""
    left = leftovers(root)
    for loop in left["loops"]:
        subprocess.run(["losetup", "--detach", loop], capture_output=True, check=False)
    for mount in left["mounts"]:
        subprocess.run(["fusermount3", "-u", "-z", mount], capture_output=True, check=False)
    for pid in left["nbdfuse"]:
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


def device_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def read_device(device: str, offset: int, length: int) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def write_device(device: str, offset: int, data: bytes, sync: bool = True) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


class _Case(unittest.TestCase):
    """A stand-in node and the provider installed in a temporary directory."""

    timeout = 120

    def setUp(self) -> None:
        why = unavailable()
        if why:
            raise unittest.SkipTest(why)
        self.tmp = tempfile.mkdtemp(prefix="snfd-extstorage-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        blocks = FileBlockStore(os.path.join(self.tmp, "blocks"), reactor)
        self.store = VolumeStore(os.path.join(self.tmp, "volumes"), blocks, reactor)
        self.nbd = NbdServerFactory(self.store, reactor=reactor)
        nbd_port = reactor.listenTCP(0, self.nbd, interface="127.0.0.1")
        self.addCleanup(nbd_port.stopListening)
        self.api = StandInNode(self.store, self.nbd, nbd_port.getHost().port)
        site = server.Site(self.api)
        site.displayTracebacks = False
        http_port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(http_port.stopListening)
        self.run_dir = os.path.join(self.tmp, "run")
        self.provider = Path(self.tmp) / "extstorage" / "archipelago"
        installer.install(self.provider, installer.provider_conf(
            f"http://127.0.0.1:{http_port.getHost().port}", TOKEN, run_dir=self.run_dir))
        # Runs first (cleanups are last in, first out): a failed test's
        # attachments go before the servers they use.
        self.addCleanup(threads.deferToThread, force_release, self.tmp)

    async def action(self, action: str, name: str, ok: bool = True,
                     **extra: str) -> subprocess.CompletedProcess[str]:
        """Run action script ``action`` for volume ``name`` (``VOL_NAME``) as
        Ganeti does (root, in the provider directory, its variables)."""
        env = {"PATH": "/usr/bin:/bin", "VOL_NAME": name, "VOL_UUID": f"uuid-of-{name}",
               "EXTP_PROVIDER": "archipelago", "EXTP_ACCESS": "kernelspace", **extra}
        started = time.monotonic()
        done = await threads.deferToThread(
            subprocess.run, [str(self.provider / action)], env=env, cwd=str(self.provider),
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        log.msg(f"extstorage {action} {name}: {time.monotonic() - started:.3f} s")
        if ok and done.returncode != 0:
            self.fail(f"{action} {name} exited {done.returncode}: {done.stderr}")
        return done

    async def attach(self, name: str, **extra: str) -> str:
        done = await self.action("attach", name, **extra)
        lines = done.stdout.splitlines()
        self.assertEqual(len(lines), 1, f"attach must print the device only: {done.stdout!r}")
        self.assertTrue(lines[0].startswith("/dev/loop"), lines)
        return lines[0]

    async def in_thread(self, fn: Any, *args: Any) -> Any:
        return await threads.deferToThread(fn, *args)

    async def read_volume(self, name: str, offset: int, length: int) -> bytes:
        volume = await self.store.open(name, False)
        try:
            return await volume.read(offset, length)
        finally:
            await volume.close()

    async def assert_nothing_left(self) -> None:
        left = await self.in_thread(leftovers, self.tmp)
        self.assertEqual(left, {"loops": [], "mounts": [], "nbdfuse": []})
        for _ in range(100):  # the server sees nbdfuse's connection close
            if not self.nbd.open_volumes():
                break
            await self.in_thread(time.sleep, 0.02)
        self.assertEqual(self.nbd.open_volumes(), {})
        attached = [p.name for p in Path(self.run_dir).iterdir() if not p.name.startswith(".")] \
            if os.path.isdir(self.run_dir) else []
        self.assertEqual(attached, [], "records of attachments remain")


class LifecycleTests(_Case):
    """What Ganeti asks of a volume, start to end."""

    async def test_create_attach_write_grow_detach_remove(self):
        """create makes the map; attach (twice: the same device) gives a
        block device of its size whose writes reach the map's own objects;
        detach (twice) and remove leave nothing attached and no map."""
        done = await self.action("create", "vol-1", VOL_SIZE="64")
        self.assertEqual(done.stdout, "")
        self.assertEqual(info_of("vol-1", await self.store.info("vol-1"))["size"], 64 * MiB)
        device = await self.attach("vol-1")
        self.assertEqual(await self.attach("vol-1"), device)
        self.assertEqual(await self.in_thread(device_size, device), 64 * MiB)
        self.assertEqual(await self.in_thread(read_device, device, 0, 4096), bytes(4096))

        data = os.urandom(MiB) + os.urandom(MiB)
        await self.in_thread(write_device, device, 5 * MiB, data)
        self.assertEqual(await self.read_volume("vol-1", 5 * MiB, len(data)), data)
        self.assertEqual(info_of("vol-1", await self.store.info("vol-1"))["objects"]["owned"], 1)

        await self.action("detach", "vol-1")
        await self.action("detach", "vol-1")
        await self.assert_nothing_left()
        self.assertEqual(await self.read_volume("vol-1", 5 * MiB, len(data)), data)
        await self.action("remove", "vol-1")
        await self.action("remove", "vol-1")  # gone already: still success
        self.assertEqual(await self.store.names(), [])
        await self.assert_nothing_left()

    async def test_clone_of_a_snapshot(self):
        """create with an origin clones it (nothing copied): the attached
        device reads the origin's bytes, then zeros up to its larger size;
        a write copies one object up and leaves the origin as it was."""
        await self.store.create("image", 12 * MiB)
        source = await self.store.open("image", True)
        image = os.urandom(12 * MiB)
        await source.write(0, image)
        await source.close()
        await self.store.snapshot("image", "image-snap")
        await self.action("create", "vm-disk", VOL_SIZE="32", EXTP_ORIGIN="image-snap")
        made = info_of("vm-disk", await self.store.info("vm-disk"))
        self.assertEqual(made["objects"], {"owned": 0, "shared": 3, "zero": 5})
        device = await self.attach("vm-disk")
        self.assertEqual(await self.in_thread(device_size, device), 32 * MiB)
        self.assertEqual(await self.in_thread(read_device, device, 0, 12 * MiB), image)
        self.assertEqual(await self.in_thread(read_device, device, 12 * MiB, 4 * MiB),
                         bytes(4 * MiB))
        await self.in_thread(write_device, device, 4096, b"x" * 512)
        changed = info_of("vm-disk", await self.store.info("vm-disk"))["objects"]
        self.assertEqual(changed, {"owned": 1, "shared": 2, "zero": 5})
        self.assertEqual(await self.read_volume("image-snap", 0, 12 * MiB), image)
        await self.action("detach", "vm-disk")
        await self.action("remove", "vm-disk")
        await self.assert_nothing_left()

    async def test_named_disk_and_ganeti_export(self):
        """A disk with a name (``VOL_CNAME``, as snfd names its disks) uses
        that map; Ganeti's export runs ``snapshot`` without the name, which
        still finds the map, and includes writes still in the device's
        cache; the snapshot attaches read-only and is removed."""
        ganeti = {"VOL_CNAME": "snf-vol-7"}
        await self.action("create", "1234.ext.disk0", VOL_SIZE="16", **ganeti)
        self.assertEqual(await self.store.names(), ["snf-vol-7"])
        device = await self.attach("1234.ext.disk0", **ganeti)
        await self.in_thread(write_device, device, 0, b"cached" * 100, False)
        await self.action("snapshot", "1234.ext.disk0",
                          VOL_SNAPSHOT_NAME="1234.ext.disk0.snap", VOL_SNAPSHOT_SIZE="16")
        snap = await self.store.info("1234.ext.disk0.snap")
        self.assertTrue(snap.read_only)
        self.assertEqual(await self.read_volume("1234.ext.disk0.snap", 0, 600),
                         b"cached" * 100)
        snap_device = await self.attach("1234.ext.disk0.snap")
        self.assertEqual(await self.in_thread(read_device, snap_device, 0, 600), b"cached" * 100)
        ro = Path(f"/sys/block/{os.path.basename(snap_device)}/ro").read_text().strip()
        self.assertEqual(ro, "1")
        await self.action("detach", "1234.ext.disk0.snap")
        await self.action("remove", "1234.ext.disk0.snap")
        await self.action("detach", "1234.ext.disk0", **ganeti)
        await self.action("remove", "1234.ext.disk0", **ganeti)
        self.assertEqual(await self.store.names(), [])
        await self.assert_nothing_left()
        self.assertEqual(os.listdir(os.path.join(self.run_dir, ".names")), [])

    async def test_managed_disk_keeps_its_map(self):
        """A disk snfd's compute service made (``managed=yes``, its map made
        beforehand and named by the disk): create adopts the map, remove
        detaches and leaves it (the compute service deletes it, or keeps the
        volume for another server)."""
        await self.store.create("snf-vol-9", 8 * MiB)
        ganeti = {"VOL_CNAME": "snf-vol-9", "EXTP_MANAGED": "yes"}
        await self.action("create", "99.ext.disk1", VOL_SIZE="8", **ganeti)
        device = await self.attach("99.ext.disk1", **ganeti)
        await self.in_thread(write_device, device, 0, b"kept" * 128)
        await self.action("detach", "99.ext.disk1", **ganeti)
        await self.action("remove", "99.ext.disk1", **ganeti)
        self.assertEqual(await self.store.names(), ["snf-vol-9"])
        self.assertEqual(await self.read_volume("snf-vol-9", 0, 512), b"kept" * 128)
        await self.assert_nothing_left()

    async def test_grow(self):
        """grow enlarges the map; an attached device nothing holds open is
        attached again at the new size; one held open keeps its size (the
        documented limit) and grow still succeeds."""
        await self.action("create", "vol-g", VOL_SIZE="8")
        device = await self.attach("vol-g")
        await self.in_thread(write_device, device, 0, b"kept")
        done = await self.action("grow", "vol-g", VOL_SIZE="8", VOL_NEW_SIZE="16")
        self.assertEqual(done.stdout, "")
        self.assertEqual((await self.store.info("vol-g")).size, 16 * MiB)
        device = await self.attach("vol-g")
        self.assertEqual(await self.in_thread(device_size, device), 16 * MiB)
        self.assertEqual(await self.in_thread(read_device, device, 0, 4), b"kept")

        held = os.open(device, os.O_RDONLY)
        try:
            done = await self.action("grow", "vol-g", VOL_SIZE="16", VOL_NEW_SIZE="24")
            self.assertIn("keeps its old size", done.stderr)
            self.assertEqual(await self.attach("vol-g"), device)
            self.assertEqual(await self.in_thread(device_size, device), 16 * MiB)
        finally:
            os.close(held)
        self.assertEqual((await self.store.info("vol-g")).size, 24 * MiB)
        await self.action("detach", "vol-g")
        device = await self.attach("vol-g")
        self.assertEqual(await self.in_thread(device_size, device), 24 * MiB)
        await self.action("detach", "vol-g")
        await self.action("remove", "vol-g")
        await self.assert_nothing_left()

    async def test_attach_again_after_nbdfuse_died(self):
        """An attachment whose nbdfuse is gone is not reported: attach
        releases what is left and attaches afresh."""
        await self.action("create", "vol-k", VOL_SIZE="8")
        await self.attach("vol-k")
        pid = int(Path(self.run_dir, "vol-k", "nbdfuse.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if not os.path.exists(f"/proc/{pid}") or \
                    Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1] == "Z":
                break
            await self.in_thread(time.sleep, 0.01)
        device = await self.attach("vol-k")
        await self.in_thread(write_device, device, 0, b"alive")
        self.assertEqual(await self.read_volume("vol-k", 0, 5), b"alive")
        await self.action("detach", "vol-k")
        await self.action("remove", "vol-k")
        await self.assert_nothing_left()

    async def test_unrecorded_loop_device_released(self):
        """A loop device an attach set up but died before recording is
        found by its file and released by the next attach."""
        await self.action("create", "vol-u", VOL_SIZE="8")
        first = await self.attach("vol-u")
        os.unlink(os.path.join(self.run_dir, "vol-u", "loop"))
        second = await self.attach("vol-u")
        loops = (await self.in_thread(leftovers, self.tmp))["loops"]
        self.assertEqual(loops, [second], f"the first device was {first}")
        await self.action("detach", "vol-u")
        await self.action("remove", "vol-u")
        await self.assert_nothing_left()

    async def test_open_close_setinfo(self):
        """open, close and setinfo succeed and print nothing on stdout."""
        await self.action("create", "vol-o", VOL_SIZE="4")
        for action, extra in (("open", {"VOL_OPEN_EXCLUSIVE": "True"}), ("close", {}),
                              ("setinfo", {"VOL_METADATA": "originstname+vm1"})):
            done = await self.action(action, "vol-o", **extra)
            self.assertEqual(done.stdout, "")
        await self.action("remove", "vol-o")


class FailureTests(_Case):
    """Errors end an action with one line on stderr and status 1."""

    def assert_one_line(self, done: subprocess.CompletedProcess[str], *parts: str) -> None:
        self.assertEqual(done.returncode, 1, done)
        self.assertEqual(done.stdout, "")
        lines = done.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, done.stderr)
        for part in parts:
            self.assertIn(part, lines[0])

    async def test_unknown_origin(self):
        """create with an origin the node does not know fails with its 404."""
        done = await self.action("create", "vol-x", ok=False, VOL_SIZE="4",
                                 EXTP_ORIGIN="no-such-snap")
        self.assert_one_line(done, "archipelago create", "404")

    async def test_bad_token(self):
        """A token the node refuses is a 401."""
        conf = json.loads((self.provider / "archipelago.conf").read_text())
        conf["token"] = "wrong"
        installer.install(self.provider, conf)
        self.assert_one_line(await self.action("create", "vol-x", ok=False, VOL_SIZE="4"),
                             "401")

    async def test_node_down(self):
        """An unreachable node is named."""
        conf = json.loads((self.provider / "archipelago.conf").read_text())
        conf["url"] = "http://127.0.0.1:9"
        installer.install(self.provider, conf)
        done = await self.action("attach", "vol-x", ok=False)
        self.assert_one_line(done, "did not answer")
        await self.assert_nothing_left()

    async def test_missing_or_bad_conf(self):
        """A missing or malformed configuration is named."""
        conf = self.provider / "archipelago.conf"
        conf.write_text("{not json")
        self.assert_one_line(await self.action("detach", "vol-x", ok=False), "not JSON")
        conf.write_text('{"url": "ftp://x", "token": "t"}')
        self.assert_one_line(await self.action("detach", "vol-x", ok=False), '"url"')
        conf.unlink()
        self.assert_one_line(await self.action("detach", "vol-x", ok=False), "cannot read")

    async def test_bad_names_and_sizes(self):
        """A volume name that is not a map name, or a size that is not a
        number of MiB, is refused before the node is asked."""
        self.assert_one_line(await self.action("create", "../etc", ok=False, VOL_SIZE="4"),
                             "volume name")
        self.assert_one_line(await self.action("create", "vol-x", ok=False, VOL_SIZE="4k"),
                             "VOL_SIZE")
        self.assertEqual(self.api.calls, [])

    async def test_verify(self):
        """verify checks the node answers and the configuration is private."""
        done = await self.action("verify", "unused")
        self.assertIn("NBD on 127.0.0.1", done.stderr)
        os.chmod(self.provider / "archipelago.conf", 0o644)
        self.assert_one_line(await self.action("verify", "unused", ok=False), "root only")


class InstallerTests(unittest.TestCase):
    """``snf-manage extstorage-install`` puts the provider where Ganeti
    looks for one."""

    def test_files_and_modes(self):
        """Every action an executable regular file, parameters.list, and a
        configuration only root reads; a second install replaces them."""
        dest = Path(tempfile.mkdtemp(prefix="snfd-extstorage-install-")) / "archipelago"
        self.addCleanup(shutil.rmtree, dest.parent, True)
        for _ in range(2):
            installer.install(dest, installer.provider_conf("http://10.0.0.1:8080/", "tok"))
        for action in installer.ACTIONS:
            st = (dest / action).stat()
            self.assertEqual(oct(st.st_mode & 0o777), "0o755", action)
            self.assertFalse((dest / action).is_symlink())
        self.assertEqual(oct((dest / "archipelago.conf").stat().st_mode & 0o777), "0o600")
        self.assertEqual(json.loads((dest / "archipelago.conf").read_text()),
                         {"url": "http://10.0.0.1:8080", "token": "tok"})
        params = (dest / "parameters.list").read_text().splitlines()
        self.assertEqual([p.split()[0] for p in params], ["origin", "origin_size", "managed"])
        self.assertEqual(sorted(p.name for p in dest.iterdir()),
                         sorted([*installer.ACTIONS, "archipelago.py", "parameters.list",
                                 "archipelago.conf"]))

    def test_command_with_token(self):
        """``--token`` installs without a database."""
        from snfd.cli.manage import main

        dest = Path(tempfile.mkdtemp(prefix="snfd-extstorage-install-")) / "p"
        self.addCleanup(shutil.rmtree, dest.parent, True)
        self.assertEqual(main(["extstorage-install", "--dest", str(dest), "--url",
                               "http://127.0.0.1:1", "--token", "t1", "--run-dir",
                               "/srv/gnt9/run/snfd-archipelago"]), 0)
        self.assertEqual(json.loads((dest / "archipelago.conf").read_text())["run_dir"],
                         "/srv/gnt9/run/snfd-archipelago")
        self.assertEqual(main(["extstorage-install", "--dest", str(dest), "--url", "ftp://x",
                               "--token", "t1"]), 1)


class TlsTests(_Case):
    """A node whose NBD server requires TLS: the provider attaches over
    nbds:// with the CA it was installed with, and refuses to attach
    without one."""

    def setUp(self) -> None:
        from twisted.internet import ssl

        from snfd.tls import self_signed

        cert, key = self_signed("127.0.0.1", ["127.0.0.1"])
        super().setUp()
        self.nbd.tls = ssl.PrivateCertificate.loadPEM(cert + key).options()
        self.ca = Path(self.tmp) / "ca.pem"
        self.ca.write_bytes(cert)

    async def test_attach_over_tls(self):
        await self.action("create", "vol-t", VOL_SIZE="8")
        done = await self.action("attach", "vol-t", ok=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("requires TLS", done.stderr)
        conf = json.loads((self.provider / installer.CONF).read_text())
        pki = Path(self.tmp) / "pki"
        pki.mkdir()
        (pki / "ca-cert.pem").write_bytes(self.ca.read_bytes())
        conf["nbd_tls_certificates"] = str(pki)
        installer.install(self.provider, conf)
        device = await self.attach("vol-t")
        await self.in_thread(write_device, device, 0, b"tls!" * 128)
        self.assertEqual(await self.read_volume("vol-t", 0, 512), b"tls!" * 128)
        await self.action("detach", "vol-t")
        await self.action("remove", "vol-t")
        await self.assert_nothing_left()
