"""The Ganeti OS definition ``snf-image`` (``share/ganeti/os/snf-image``),
run as Ganeti runs it, against a stand-in node.

Each test builds a small raw disk image without mounting anything
(``truncate``, ``sfdisk``, ``mkfs.ext4 -E offset=... -d``), serves it
read-only over NBD from trial's reactor (``snfd.archip.nbd`` over the
``BytearrayOpener`` test double) as ``snf-img-<instance>``, serves the
build's parameters once over HTTP on 127.0.0.1 (a second GET is 404, as
the node's ``/vmapi/server-params``), installs the definition with
``snf-manage os-install``'s ``install`` and runs its ``create`` with
Ganeti's environment (reset: its PATH, cwd the OS directory,
``DISK_0_PATH`` a sparse 64 MiB file, ``INSTANCE_NAME``, ``OSP_*``).  What
it wrote is read back with ``debugfs`` and ``dumpe2fs``.  Times go to the
test log.

Needs root (Ganeti runs it as root) and the tools it uses: qemu-img,
sfdisk (Debian fdisk), e2fsprogs, /usr/bin/python3.
"""

from __future__ import annotations

import base64
import crypt
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads
from twisted.python import log
from twisted.trial import unittest
from twisted.web import server
from twisted.web.resource import Resource

from snfd.archip.nbd import NbdServerFactory
from snfd.cli import os_install
from tests.archip.test_nbd import BytearrayOpener

MiB = 1024 * 1024
INSTANCE = "snf-42"
EXPORT = f"snf-img-{INSTANCE}"
DISK_SIZE = 64 * MiB
IMAGE_SIZE = 16 * MiB
START = 2048  # the partition's first sector
PASSWORD = "a secret root password 6Yq!"
KEYS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOne alice@example.org\n" \
       "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQExampleKeyTwo alice@laptop"
GANETI_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"


def unavailable() -> str | None:
    """Why ``create`` cannot run here, or None."""
    if os.geteuid() != 0:
        return "Ganeti runs OS scripts as root"
    if not os.path.exists("/usr/bin/python3"):
        return "the OS definition runs /usr/bin/python3, which is missing"
    for tool, package in (("qemu-img", "qemu-utils"), ("sfdisk", "fdisk"),
                          ("debugfs", "e2fsprogs"), ("resize2fs", "e2fsprogs"),
                          ("mkfs.ext4", "e2fsprogs")):
        if shutil.which(tool, path=GANETI_PATH) is None:
            return f"{tool} is not installed (Debian {package})"
    return None


def sh(*argv: str, data: bytes | None = None) -> str:
    done = subprocess.run(argv, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


def make_image(where: Path, fs: str = "ext4", partitioned: bool = True, label: str = "dos",
               block: int = 0) -> bytes:
    """A 16 MiB raw image: one partition from sector 2048 (or none) in a
    ``label`` (dos or gpt) table, holding a tiny root filesystem with
    /etc/{passwd,group,shadow,hostname} (ext4 blocks of ``block`` bytes,
    0: mke2fs's choice)."""
    tree = where / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "root").mkdir(mode=0o700)
    (tree / "etc" / "hostname").write_text("image\n")
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "alice:x:1000:1000::/home/alice:/bin/sh\n")
    (tree / "etc" / "group").write_text("root:x:0:\nshadow:x:42:\nalice:x:1000:\n")
    shadow = tree / "etc" / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\n")
    os.chown(shadow, 0, 42)
    os.chmod(shadow, 0o640)
    image = where / "image.raw"
    image.touch()
    os.truncate(image, IMAGE_SIZE)
    offset = START * 512 if partitioned else 0
    if partitioned:
        kind = "L" if label == "gpt" else "83"
        sh("sfdisk", "-q", str(image),
           data=f"label: {label}\nstart={START}, size=28672, type={kind}\n".encode())
    if fs == "ext4":
        sh("mkfs.ext4", "-q", "-F", *(["-b", str(block)] if block else []),
           "-E", f"offset={offset}", "-d", str(tree), str(image),
           f"{(IMAGE_SIZE - offset - MiB * partitioned) // 1024}k")
    elif fs == "vfat":
        sh("mkfs.vfat", "--offset", str(offset // 512), str(image),
           str((IMAGE_SIZE - offset) // 1024))
    return image.read_bytes()


def debugfs(disk: Path, request: str, offset: int = START * 512) -> str:
    return sh("debugfs", "-R", request, f"{disk}?offset={offset}")


def stat_of(disk: Path, path: str) -> tuple[int, int, int]:
    """uid, gid and permission bits of ``path`` in the filesystem."""
    shown = debugfs(disk, f"stat {path}")
    user = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", shown)
    mode = re.search(r"Mode:\s+(\d+)", shown)
    assert user and mode, shown
    return int(user.group(1)), int(user.group(2)), int(mode.group(1), 8)


class OneTimeParams(Resource):
    """``GET /params``: the build's parameters, once; then 404.  ``POST
    /progress``: a report of the build, kept in ``reports`` (204)."""

    isLeaf = True

    def __init__(self, params: dict[str, Any]):
        super().__init__()
        self.params: dict[str, Any] | None = params
        self.gets = 0
        self.reports: list[dict[str, Any]] = []

    def render_POST(self, request: Any) -> bytes:
        self.reports.append(json.loads(request.content.read()))
        request.setResponseCode(204)
        return b""

    def kinds(self) -> list[tuple[str, Any]]:
        """The reports as (type, progress or first message)."""
        return [(r["type"], r.get("progress", (r.get("messages") or [None])[0]))
                for r in self.reports]

    def render_GET(self, request: Any) -> bytes:
        self.gets += 1
        if self.params is None:
            request.setResponseCode(404)
            return b'{"itemNotFound": {"code": 404, "message": "Not found."}}'
        body = json.dumps(self.params).encode()
        self.params = None
        request.setHeader(b"content-type", b"application/json")
        return body


class OsDefinitionTests(unittest.TestCase):
    """``create`` deploys and customizes as the contract says."""

    timeout = 180

    def setUp(self) -> None:
        why = unavailable()
        if why:
            raise unittest.SkipTest(why)
        self.tmp = Path(tempfile.mkdtemp(prefix="snfd-os-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.os_dir = self.tmp / "os" / "snf-image"
        os_install.install(self.os_dir)
        self.opener = BytearrayOpener()
        factory = NbdServerFactory(self.opener, reactor=reactor, read_only=True)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.nbd_port = port.getHost().port
        self.disk = self.tmp / "disk0"
        self.disk.touch()
        os.truncate(self.disk, DISK_SIZE)

    def serve_params(self, **overrides: Any) -> OneTimeParams:
        """Serve the build's parameters (``overrides`` replace or, None, drop keys)."""
        params: dict[str, Any] = {
            "img_id": "map-of-the-image", "img_passwd": PASSWORD, "img_format": "diskdump",
            "img_hostname": "web-1",
            "img_personality": json.dumps([
                {"path": "/etc/motd", "contents": base64.b64encode(b"hello\n").decode()},
                {"path": "/home/alice/notes/todo.txt", "owner": "alice", "group": "alice",
                 "mode": 0o640, "contents": base64.b64encode(b"deploy me\n").decode()}]),
            "img_properties": json.dumps({"OSFAMILY": "linux", "ROOT_PARTITION": "1"}),
            "auth_keys": KEYS, "img_deployed": "no",
            "img_nbd": json.dumps({"host": "127.0.0.1", "port": self.nbd_port, "tls": False}),
        }
        resource = OneTimeParams(params)
        site = server.Site(resource)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.params_url = f"http://127.0.0.1:{port.getHost().port}/params"
        params["img_progress_url"] = f"http://127.0.0.1:{port.getHost().port}/progress"
        for key, value in overrides.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return resource

    async def create(self, ok: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``create`` as Ganeti does."""
        env = {"PATH": GANETI_PATH, "OS_API_VERSION": "20", "OS_NAME": "snf-image",
               "OS_VARIANT": "default", "INSTANCE_NAME": INSTANCE, "DISK_COUNT": "1",
               "DISK_0_PATH": str(self.disk), "DISK_0_BACKEND_TYPE": "file:loop",
               "OSP_CONFIG_URL": self.params_url, "OSP_IMG_ID": "map-of-the-image",
               "OSP_IMG_FORMAT": "diskdump"}
        started = time.monotonic()
        done = await threads.deferToThread(
            subprocess.run, [str(self.os_dir / "create")], env=env, cwd=str(self.os_dir),
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        log.msg(f"snf-image create: {time.monotonic() - started:.3f} s")
        if ok and done.returncode != 0:
            self.fail(f"create exited {done.returncode}: {done.stderr}")
        self.assertNotIn(PASSWORD, done.stderr + done.stdout)
        return done

    def assert_customized(self, offset: int = START * 512, hostname: str = "web-1") -> None:
        disk = self.disk
        self.assertEqual(debugfs(disk, "cat /etc/hostname", offset), f"{hostname}\n")
        shadow = debugfs(disk, "cat /etc/shadow", offset).splitlines()
        root = shadow[0].split(":")
        self.assertEqual(root[0], "root")
        self.assertTrue(root[1].startswith("$6$"), root[1])
        self.assertEqual(crypt.crypt(PASSWORD, root[1]), root[1])
        self.assertEqual(shadow[1], "alice:!:19000:0:99999:7:::")
        self.assertEqual(stat_of(disk, "/etc/shadow") if offset else (0, 42, 0o640),
                         (0, 42, 0o640))
        self.assertEqual(debugfs(disk, "cat /root/.ssh/authorized_keys", offset), KEYS + "\n")
        if offset:
            self.assertEqual(stat_of(disk, "/root/.ssh")[2], 0o700)
            self.assertEqual(stat_of(disk, "/root/.ssh/authorized_keys"), (0, 0, 0o600))
            self.assertEqual(stat_of(disk, "/home/alice/notes/todo.txt"), (1000, 1000, 0o640))
            self.assertEqual(stat_of(disk, "/etc/motd"), (0, 0, 0o440))
        self.assertEqual(debugfs(disk, "cat /etc/motd", offset), "hello\n")
        self.assertEqual(debugfs(disk, "cat /home/alice/notes/todo.txt", offset),
                         "deploy me\n")
        self.assertEqual(os.stat(disk).st_size, DISK_SIZE)
        fsck = subprocess.run(["e2fsck", "-fn", f"{disk}?offset={offset}"],
                              capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout + fsck.stderr)

    def block_count(self, offset: int = START * 512) -> int:
        shown = sh("dumpe2fs", "-h", f"{self.disk}?offset={offset}")
        blocks = re.search(r"Block count:\s+(\d+)", shown)
        size = re.search(r"Block size:\s+(\d+)", shown)
        assert blocks and size, shown
        return int(blocks.group(1)) * int(size.group(1))

    async def test_deploys_and_customizes(self):
        """The image's bytes land on the file disk, which keeps its 64 MiB
        and stays sparse;
        the root partition and its ext4 grow to the disk; the host name,
        root's password hash (SHA-512, never logged), the SSH keys (700/600)
        and the personality files (modes and owners as given, parent
        directories made) are in it; the parameters were fetched once."""
        image = make_image(self.tmp)
        self.opener.add(EXPORT, image, snapshot=True)
        params = self.serve_params()
        done = await self.create()
        self.assertEqual(params.gets, 1)
        self.assertIn("image written", done.stderr)
        self.assertEqual([k for k, _ in params.kinds()],
                         ["image-copy-progress", "image-copy-progress", "image-info"])
        self.assertEqual([p for _, p in params.kinds()][:2], [0, 100])
        now = time.time()
        self.assertTrue(all(abs(r["event_time"][0] - now) < 300 for r in params.reports))
        data = self.disk.read_bytes()
        self.assertEqual(len(data), DISK_SIZE)
        self.assertEqual(data[:440], image[:440])  # the boot code, untouched
        # Zeros are not written: the file stays sparse.
        self.assertLess(os.stat(self.disk).st_blocks * 512, 2 * MiB)
        table = json.loads(sh("sfdisk", "--json", str(self.disk)))["partitiontable"]
        self.assertEqual([(p["start"], p["size"]) for p in table["partitions"]],
                         [(START, DISK_SIZE // 512 - START)])
        self.assertEqual(self.block_count(), DISK_SIZE - START * 512)
        self.assert_customized()

    async def test_gpt_4k_blocks(self):
        """A GPT image (backup table at the image's end) with 4 KiB blocks:
        the backup table moves to the disk's end, the partition and the
        filesystem grow, and the file keeps its size (resize2fs would cut a
        file holding a filesystem at an offset; create gives it back)."""
        image = make_image(self.tmp, label="gpt", block=4096)
        self.opener.add(EXPORT, image, snapshot=True)
        self.serve_params()
        await self.create()
        table = json.loads(sh("sfdisk", "--json", str(self.disk)))["partitiontable"]
        self.assertEqual(table["label"], "gpt")
        self.assertEqual(table["lastlba"], DISK_SIZE // 512 - 34)
        end = table["partitions"][0]["start"] + table["partitions"][0]["size"]
        self.assertEqual(end, DISK_SIZE // 512 - 33)
        self.assertGreater(self.block_count(), DISK_SIZE - 2 * MiB)
        self.assert_customized()
        verified = subprocess.run(["sfdisk", "--verify", str(self.disk)],
                                  capture_output=True, text=True)
        self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)

    async def test_tls(self):
        """``img_nbd`` with tls: the image is read over NBD with STARTTLS,
        the server's certificate checked against the CA that ``os-install
        --nbd-ca`` put in pki/; without that CA, create refuses."""
        from twisted.internet import ssl

        from snfd.tls import self_signed

        cert, key = self_signed("127.0.0.1", ["127.0.0.1"])
        tls = ssl.PrivateCertificate.loadPEM(cert + key).options()
        opener = BytearrayOpener()
        image = make_image(self.tmp)
        opener.add(EXPORT, image, snapshot=True)
        factory = NbdServerFactory(opener, reactor=reactor, read_only=True, tls=tls)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        nbd = json.dumps({"host": "127.0.0.1", "port": port.getHost().port, "tls": True})
        self.serve_params(img_nbd=nbd)
        done = await self.create(ok=False)
        self.assertEqual(done.returncode, 1)
        self.assertIn("requires TLS", done.stderr)
        ca = self.tmp / "ca.pem"
        ca.write_bytes(cert)
        os_install.install(self.os_dir, nbd_ca=ca)
        self.serve_params(img_nbd=nbd)
        done = await self.create()
        self.assertIn("nbds://", done.stderr)
        self.assert_customized()

    async def test_whole_disk_filesystem(self):
        """An image without a partition table is one filesystem: it grows to
        the disk and is customized (without img_hostname, the host name is
        the instance's)."""
        image = make_image(self.tmp, partitioned=False)
        self.opener.add(EXPORT, image, snapshot=True)
        self.serve_params(img_properties=json.dumps({"OSFAMILY": "linux"}), img_hostname=None)
        await self.create()
        self.assertEqual(self.block_count(0), DISK_SIZE)
        self.assert_customized(0, hostname=INSTANCE)

    async def test_deployed_writes_nothing(self):
        """``img_deployed=yes``: the disk (a thin clone) holds the image
        already; nothing is read over NBD (there is no ``img_nbd`` even),
        and the disk is customized in place."""
        image = make_image(self.tmp)
        with open(self.disk, "r+b") as f:
            f.write(image)
        self.serve_params(img_deployed="yes", img_nbd=None)
        done = await self.create()
        self.assertIn("not written", done.stderr)
        self.assertEqual(self.opener.log, [])
        self.assert_customized()

    async def test_other_filesystem_deployed_not_customized(self):
        """A root filesystem that is not ext2/3/4 (vfat here) is deployed
        byte for byte but not customized: one diagnostic line, status 0."""
        if shutil.which("mkfs.vfat") is None:
            raise unittest.SkipTest("mkfs.vfat is not installed (Debian dosfstools)")
        image = make_image(self.tmp, fs="vfat")
        self.opener.add(EXPORT, image, snapshot=True)
        params = self.serve_params()
        done = await self.create()
        self.assertIn("deployed, not customized: the root filesystem is not ext2/3/4",
                      done.stderr)
        # The owner is told: a warning diagnostic for the server.
        kind, message = params.kinds()[-1]
        self.assertEqual(kind, "image-warning")
        self.assertIn("not customized", message)
        self.assertIn("not ext2/3/4", message)
        data = self.disk.read_bytes()
        self.assertEqual(data[:IMAGE_SIZE], image)
        self.assertEqual(data[IMAGE_SIZE:], bytes(DISK_SIZE - IMAGE_SIZE))

    async def test_property_names_in_any_case(self):
        """Property names are matched without regard to case (the image API
        lower-cases them): a lower-case root_partition naming no partition
        is obeyed, so the image is deployed and not customized."""
        image = make_image(self.tmp)
        self.opener.add(EXPORT, image, snapshot=True)
        self.serve_params(img_properties=json.dumps({"osfamily": "linux",
                                                     "root_partition": "9"}))
        done = await self.create()
        self.assertIn("deployed, not customized", done.stderr)
        self.assertIn("9", done.stderr)

    async def test_unformatted_partition(self):
        """An image whose root partition holds no filesystem is deployed and
        left alone, status 0."""
        image = make_image(self.tmp, fs="none")
        self.opener.add(EXPORT, image, snapshot=True)
        self.serve_params()
        done = await self.create()
        self.assertIn("deployed, not customized", done.stderr)
        self.assertEqual(self.disk.read_bytes()[:IMAGE_SIZE], image)

    async def test_no_nbd_export_fails(self):
        """Without ``img_nbd`` (a node without the volume service) the image
        cannot be fetched: status 1, the reason on stderr, disk untouched."""
        params = self.serve_params(img_nbd=None)
        done = await self.create(ok=False)
        self.assertEqual(done.returncode, 1)
        self.assertIn("no NBD export (img_nbd)", done.stderr)
        kind, message = params.kinds()[-1]
        self.assertEqual(kind, "image-error")
        self.assertIn("no NBD export", message)
        self.assertEqual(self.disk.read_bytes(), bytes(DISK_SIZE))

    async def test_params_fetched_once(self):
        """A second run (parameters already handed out) fails on the 404."""
        self.opener.add(EXPORT, make_image(self.tmp), snapshot=True)
        params = self.serve_params()
        await self.create()
        done = await self.create(ok=False)
        self.assertEqual((done.returncode, params.gets), (1, 2))
        self.assertIn("HTTP 404", done.stderr)

    def test_other_scripts(self):
        """rename and verify succeed; export and import refuse, saying why."""
        for action, rc in (("rename", 0), ("verify", 0), ("export", 1), ("import", 1)):
            done = subprocess.run([str(self.os_dir / action)], cwd=str(self.os_dir),
                                  env={"PATH": GANETI_PATH}, capture_output=True, text=True)
            self.assertEqual(done.returncode, rc, (action, done.stderr))
            if rc:
                self.assertIn("not supported", done.stderr)


class OsInstallTests(unittest.TestCase):
    """``snf-manage os-install`` lays out what Ganeti needs."""

    def test_install(self):
        """Scripts executable, the API version 20, one variant, exactly the
        three parameters the node sends; ``--nbd-ca`` lands in pki/."""
        tmp = Path(tempfile.mkdtemp(prefix="snfd-os-install-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        ca = tmp / "ca.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\n")
        dest = tmp / "os" / "snf-image"
        os_install.install(dest, nbd_ca=ca)
        for name in ("create", "export", "import", "rename", "verify", "snf_image.py"):
            self.assertEqual(stat.S_IMODE((dest / name).stat().st_mode), 0o755, name)
        self.assertEqual((dest / "ganeti_api_version").read_text().split(), ["20"])
        self.assertEqual((dest / "variants.list").read_text().split(), ["default"])
        self.assertEqual([line.split()[0] for line in
                          (dest / "parameters.list").read_text().splitlines()],
                         ["config_url", "img_id", "img_format"])
        self.assertEqual((dest / "pki" / "ca-cert.pem").read_text(), ca.read_text())
        self.assertEqual([p.name for p in dest.iterdir() if p.name.startswith(".")], [])

    def test_not_the_definition(self):
        """A source without the scripts is refused before anything is written."""
        tmp = Path(tempfile.mkdtemp(prefix="snfd-os-install-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        with self.assertRaises(os_install.CommandFailed):
            os_install.install(tmp / "dest", source=tmp)
        self.assertFalse((tmp / "dest").exists())
