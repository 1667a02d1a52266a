"""The ``snf`` command line tried as a new user would, against a node on a
real Ganeti 3.0 cluster.

One real single-node cluster in a network namespace
(``snfd.testing.ganeti.RealGanetiCluster``: fake hypervisor, the no-op OS,
``file`` and ``ext`` enabled by ganeti-up.sh), a private RabbitMQ, a fresh
database and a ``twistd snfd`` node with the identity, pithos, archip,
cyclades and ganeti-events plugins (``real_ganeti.start_node(archip=True)``,
as ``test_volumes_real_ganeti``), the networks' bridges on the cluster's
``gntbr0`` with ``nic_hotplug`` off (as ``test_network_real_ganeti``: the
fake hypervisor refuses hotplug).

The operator's side is ``snf-manage``: ``backend-add``,
``extstorage-install`` (the ExtStorage provider ``archipelago``), two thin
flavors (``ext_archipelago``, 1 CPU/128 MiB and 2 CPUs/256 MiB, 1 GiB disk),
``image-register`` of a small image, a public network with a floating-IP
pool (``network-create``) and the users (``user-add``).

Then everything the user does is ``snf`` run as a child process
(``python -m snfd.cli.snf``) with a settings file of its own
(``SNF_CONFIG``): log in; upload a folder (``file upload -r``: a new
account has no container; the first upload makes the default one); make an
account group of a second user and share a file with it (``group set``,
``file share --read <uuid>:<group>``), which that user then reads with
``snf file -A``; generate a key pair; make a private network and its subnet;
create a server with the key on that network with ``--wait`` (stderr on a
pseudo-terminal, so that the status line is drawn: it must show the
server's status); allocate a floating IP and attach it; create a volume and
attach it; snapshot it (the snapshot is published as an image of the
user's ``snapshots`` container: that is the API's snapshot-to-image path)
and register that file as an image of its own name and properties with
``snf image register`` (Plankton takes properties from headers, so their
keys come back lowercased: ``OS`` is ``os``); boot a second server
from that image, whose disk holds what was written to the volume before
the snapshot; then shutdown, start, reboot, resize (stopped: the backend
changes only CPUs and RAM), detach and release, delete and clean up.
Each step's ``-o json`` output is checked, and so is Ganeti's side of the
servers (``gnt-instance list`` inside the cluster; NICs, disks and
beparams from its RAPI).  No ``snf`` stderr may hold a traceback.

What real Ganeti does not allow here, and how the walk goes instead:

- Volumes and snapshots are thin volumes (Archipelago, the
  ``ext_archipelago`` template), and only servers of a thin flavor take
  volumes (``Volumes.attach``): so the walk's servers are all on thin
  flavors; a ``file`` server could not take the volume at all.
- The fake hypervisor cannot hot-remove a disk: detaching the volume from
  the running server is refused at once (exit 5, one line), so it is
  detached while the server is stopped.  (Ganeti adds the disk to the
  running instance without hotplug, so attaching works while it runs.)
- Resizing changes CPUs and RAM of a stopped server only, to a flavor of
  the same disk size and template.
- The fake hypervisor has no console: ``snf server console`` fails with
  Ganeti's message (501, exit 7).

Needs root, real Ganeti (``real_ganeti_unavailable``) and what the provider
attaches volumes with (``tests.archip.test_extstorage.unavailable``:
nbdfuse, fusermount3, losetup, /dev/fuse); elsewhere it skips.  Each step's
time goes to the test log.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.python import log
from twisted.trial import unittest

from tests.archip.test_extstorage import unavailable as extstorage_unavailable
from tests.integration.real_ganeti import rapi_get, start_node

SNF = [sys.executable, "-m", "snfd.cli.snf"]
MiB = 1024 * 1024
#: Seconds a real Ganeti job (create, modify, remove...) may take; generous:
#: the machine is small and shared.
JOB_WAIT = 300.0
#: Seconds one ``snf`` command may take (its own --wait included).
SNF_TIMEOUT = 900.0
PUBLIC_CIDR = "10.88.0.0/24"
PRIVATE_CIDR, PRIVATE_GATEWAY = "192.168.77.0/24", "192.168.77.1"
#: The operator's image: recognisable bytes.
IMAGE = b"snf walk: the operator's image\n" + os.urandom(2 * MiB + 123)
#: What the user writes into the volume before snapshotting it.
MARKER = b"written into the data volume before the snapshot\n" * 40
_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")


def _read(device: str, length: int) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, 0)
    finally:
        os.close(fd)


def _write(device: str, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


class SnfOnRealGanetiTests(unittest.TestCase):
    """A new user's walk through ``snf`` on a real cluster."""

    timeout = 2400

    async def setUp(self) -> None:
        reason = extstorage_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        root = await start_node(
            self, "snfd-snf-real-",
            "filtered_bridge = gntbr0\ndefault_bridge = gntbr0\nnic_hotplug = no\n",
            "/volume/v3/types", archip=True)
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.figures: dict[str, float] = {}
        await threads.deferToThread(self.provision, root)

    def provision(self, root: Path) -> None:
        """The operator's part, all ``snf-manage``."""
        node, cluster = self.node, self.cluster
        backend = json.loads(node.manage(
            "backend-add", cluster.name, "--url", cluster.url, "--username", cluster.username,
            "--password", cluster.password, "--certificate", str(root / "rapi.pem"),
            "--events", "watch", "--json"))
        self.assertIn("ext", backend["disk_templates"])
        provider = cluster.base / "srv" / "extstorage" / "archipelago"
        self.run_dir = cluster.base / "run" / "snfd-archipelago"
        node.manage("extstorage-install", "--dest", str(provider),
                    "--url", f"http://{self.host}:{node.process.port}",
                    "--run-dir", str(self.run_dir))
        for cpu, ram in (("1", "128"), ("2", "256")):
            node.manage("flavor-create", "--cpu", cpu, "--ram", ram, "--disk", "1",
                        "--disk-template", "ext_archipelago", "--json")
        image_file = root / "walk.img"
        image_file.write_bytes(IMAGE)
        image = json.loads(node.manage("image-register", str(image_file), "--name",
                                       "Walk Linux", "--property", "OS=debian",
                                       "--property", "OSFAMILY=linux", "--json"))
        self.image_id = image["id"]
        self.public_id = node.manage(
            "network-create", "--name", "public", "--flavor", "CUSTOM", "--public",
            "--floating-ip-pool", "--subnet", PUBLIC_CIDR).strip()
        self.alice = node.add_user("alice@example.org", "Alice")
        self.bob = node.add_user("bob@example.org", "Bob")

    # -- running snf (blocking; the walk runs in a thread) --------------------------

    def env(self, who: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "SNF_"))}
        env["SNF_CONFIG"] = str(self.work / f"{who}.json")
        return env

    def fail_with_log(self, message: str) -> None:
        lines = [line for line in self.node.log().splitlines()
                 if "snfd.http#info" not in line and "ClientFactory#info" not in line]
        raise AssertionError(f"{message}\n--- Ganeti's last jobs:\n{self.jobs()}\n"
                             "--- node log:\n" + "\n".join(lines[-40:]))

    def snf(self, *argv: str, who: str = "alice", ok: bool | None = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``snf <argv>`` as ``who``; fail unless it exits 0 (``ok=False``:
        unless it fails; None: whatever it does).  Never a traceback."""
        started = time.monotonic()
        proc = subprocess.run([*SNF, *argv], env={**self.env(who), **(env or {})},
                              capture_output=True, text=True, timeout=SNF_TIMEOUT,
                              cwd=self.work, stdin=subprocess.DEVNULL, check=False)
        took = time.monotonic() - started
        log.msg(f"snf on real Ganeti: {who}: snf {' '.join(argv)} -> {proc.returncode}"
                f" in {took:.2f} s")
        self.assertNotIn("Traceback", proc.stderr, f"snf {' '.join(argv)}")
        self.assertNotIn("Traceback", proc.stdout, f"snf {' '.join(argv)}")
        if ok and proc.returncode != 0:
            self.fail_with_log(f"snf {' '.join(argv)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}\n{proc.stderr}")
        if ok is False and proc.returncode == 0:
            self.fail_with_log(f"snf {' '.join(argv)} succeeded:\n{proc.stdout}")
        return proc

    def js(self, *argv: str, who: str = "alice") -> Any:
        """``snf -o json <argv>``, parsed."""
        return json.loads(self.snf("-o", "json", *argv, who=who).stdout)

    def refused(self, code: int, *argv: str, who: str = "alice") -> str:
        """A command that must fail with exit ``code`` and one line; its stderr."""
        proc = self.snf(*argv, who=who, ok=False)
        self.assertEqual(proc.returncode, code, proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        self.assertTrue(proc.stderr.startswith("snf: "), proc.stderr)
        return proc.stderr

    def snf_tty(self, *argv: str, who: str = "alice") -> tuple[str, str]:
        """Run ``snf <argv>`` with its stderr on a pseudo-terminal (as in a
        user's shell, so status lines are drawn) and stdout on a pipe; its
        stdout and its stderr without terminal escapes.  Fails unless it
        exits 0; never a traceback."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {**self.env(who), "TERM": "xterm-256color", "COLUMNS": "160"}
        started = time.monotonic()
        with tempfile.TemporaryFile(dir=self.work) as out:
            proc = subprocess.Popen([*SNF, *argv], env=env, stdout=out, stderr=slave,
                                    stdin=subprocess.DEVNULL, cwd=self.work)
            os.close(slave)
            raw = bytearray()
            deadline = started + SNF_TIMEOUT
            try:
                while time.monotonic() < deadline:
                    ready, _, _ = select.select([master], [], [], 1.0)
                    if ready:
                        try:
                            chunk = os.read(master, 65536)
                        except OSError:  # EIO: the child's side is closed
                            break
                        if not chunk:
                            break
                        raw += chunk
                    elif proc.poll() is not None:
                        break
                else:
                    proc.kill()
                code = proc.wait(timeout=60)
            finally:
                os.close(master)
            out.seek(0)
            stdout = out.read().decode("utf-8", "replace")
        text = raw.decode("utf-8", "replace")
        err = _ANSI.sub("", text).replace("\r", "\n")
        log.msg(f"snf on real Ganeti: {who}: snf {' '.join(argv)} (tty) -> {code} in"
                f" {time.monotonic() - started:.2f} s")
        log.msg(f"snf on real Ganeti: its terminal showed (the end): {err[-800:]!r}")
        self.assertNotIn("Traceback", err, f"snf {' '.join(argv)}")
        if code != 0:
            self.fail_with_log(f"snf {' '.join(argv)} failed ({code}):\n{stdout}\n{err}")
        return stdout, err

    # -- the cluster's side ----------------------------------------------------------

    def gnt(self, *argv: str) -> str:
        done = subprocess.run([str(self.cluster.base / "ns" / "gx"), *argv],
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            self.fail_with_log(f"gx {' '.join(argv)}: {done.returncode}\n{done.stderr}")
        return done.stdout

    def instances(self) -> dict[str, str]:
        """``gnt-instance list``: instance name -> status."""
        out = self.gnt("gnt-instance", "list", "--no-headers", "--separator=|",
                       "-o", "name,status")
        return dict(line.split("|", 1) for line in out.split())

    def instance(self, sid: str) -> dict[str, Any]:
        status, found = rapi_get(self.cluster, f"/2/instances/snf-{sid}")
        self.assertEqual(status, 200, found)
        return dict(found)

    def jobs(self) -> str:
        """Ganeti's last few jobs: id, status, summary."""
        try:
            status, jobs = rapi_get(self.cluster, "/2/jobs?bulk=1")
        except OSError as e:
            return f"({e})"
        if status != 200 or not isinstance(jobs, list):
            return f"({status} {jobs})"
        return "\n".join(f"{j.get('id')} {j.get('status')} {j.get('summary')}"
                         for j in sorted(jobs, key=lambda j: int(j.get("id", 0)))[-8:])

    def job_summaries(self) -> list[str]:
        status, jobs = rapi_get(self.cluster, "/2/jobs?bulk=1")
        self.assertEqual(status, 200, jobs)
        return [f"{j.get('status')} {' '.join(j.get('summary') or [])}"
                for j in sorted(jobs, key=lambda j: int(j.get("id", 0)))]

    def device(self, volume_id: str) -> str:
        """The loop device the provider attached for the volume's map."""
        device = (self.run_dir / f"snf-vol-{volume_id}" / "loop").read_text().strip()
        self.assertRegex(device, r"^/dev/loop\d+$")
        return device

    def until(self, what: str, probe: Callable[[], Any], timeout: float = JOB_WAIT) -> Any:
        """Poll ``probe`` until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            seen = probe()
            if seen:
                return seen
            time.sleep(0.5)
        self.fail_with_log(f"{what}: not after {timeout:.0f} s; last seen {seen!r}")

    def retry(self, refused: int, *argv: str) -> bool:
        """Run ``argv``: True when it succeeds, False when it is refused with
        exit ``refused`` (the cloud is not there yet), else fail."""
        proc = self.snf(*argv, ok=None)
        if proc.returncode not in (0, refused):
            self.fail_with_log(f"snf {' '.join(argv)}: {proc.returncode} {proc.stderr}")
        return proc.returncode == 0

    def step(self, name: str, started: float) -> float:
        took = self.figures[name] = round(time.monotonic() - started, 2)
        log.msg(f"snf on real Ganeti: step {name!r} took {took:.2f} s")
        return time.monotonic()

    # -- the walk --------------------------------------------------------------------

    def test_new_user_walk(self) -> Any:
        """Files, sharing, a key pair, a private network, a server with
        --wait, a floating IP, a volume, a snapshot registered as an image
        and a server from it, the server's lifecycle and the clean-up, all
        with ``snf``, checked by its JSON and on the cluster."""
        return threads.deferToThread(self.walk)

    def walk(self) -> None:
        alice, bob = self.alice, self.bob
        t = time.monotonic()

        # 1. Log in (the password from $SNF_PASSWORD, as a script would).
        out = self.snf("login", "--url", self.node.url, "--user", alice.email,
                       env={"SNF_PASSWORD": alice.password}).stdout
        self.assertIn(f"logged in as {alice.email} ({alice.uuid})", out)
        who = self.js("user", "info")["user"]
        self.assertEqual((who["id"], who["name"]), (alice.uuid, alice.email), who)
        self.assertEqual(os.stat(self.work / "alice.json").st_mode & 0o777, 0o600)
        self.snf("login", "--url", self.node.url, "--user", bob.email, who="bob",
                 env={"SNF_PASSWORD": bob.password})
        t = self.step("log in", t)

        # 2. Upload a folder.
        folder = self.work / "notes"
        (folder / "sub").mkdir(parents=True)
        (folder / "readme.txt").write_text("read me, team\n")
        (folder / "sub" / "private.txt").write_text("for alice only\n")
        blob = os.urandom(9 * MiB + 17)
        (folder / "sub" / "data.bin").write_bytes(blob)
        # A new account has no container yet: the first upload into the
        # default one (pithos) makes it.
        self.assertEqual(self.snf("container", "list").stdout.split(), [])
        out = self.snf("file", "upload", "-r", str(folder)).stdout
        self.assertEqual(self.snf("container", "list").stdout.split(), ["pithos"])
        self.assertEqual(len(out.strip().splitlines()), 3, out)
        self.assertIn("uploaded pithos/notes/sub/data.bin", out)
        listed = self.snf("file", "list", "pithos/notes/").stdout.split()
        self.assertEqual(sorted(listed), ["notes/readme.txt", "notes/sub/data.bin",
                                          "notes/sub/private.txt"])
        # The same folder again: every block is there already.
        again = self.snf("file", "upload", "-r", str(folder), "pithos/").stdout
        self.assertIn("(9437201 bytes; 0 of 3 blocks transferred)", again)
        self.snf("file", "download", "pithos/notes/sub/data.bin", str(self.work / "back.bin"))
        self.assertEqual((self.work / "back.bin").read_bytes(), blob)
        t = self.step("upload a folder", t)

        # 3. A group of bob, and a file shared with it: bob reads it, not the rest.
        out = self.snf("group", "set", "team", bob.email).stdout
        self.assertIn(f"share with it as {alice.uuid}:team", out)
        self.assertEqual(self.js("group", "list"), [{"name": "team", "members": [bob.uuid]}])
        self.snf("file", "share", "pithos/notes/readme.txt", "--read", f"{alice.uuid}:team")
        info = self.snf("file", "info", "pithos/notes/readme.txt").stdout
        self.assertIn(f"{alice.uuid}:team", info)
        long = self.snf("file", "list", "-l", "pithos/notes/").stdout
        self.assertRegex(long, r" s- notes/readme\.txt")
        self.assertRegex(long, r" -- notes/sub/private\.txt")
        read = self.snf("file", "-A", alice.uuid, "cat", "pithos/notes/readme.txt",
                        who="bob").stdout
        self.assertEqual(read, "read me, team\n")
        err = self.snf("file", "-A", alice.uuid, "cat", "pithos/notes/sub/private.txt",
                       who="bob", ok=False).stderr
        self.assertTrue(err.startswith("snf: "), err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        t = self.step("group and share", t)

        # 4. A key pair; the private key into a new 0600 file.
        key_file = self.work / "walkkey"
        made = self.js("keypair", "generate", "walkkey", "--out", str(key_file))
        self.assertEqual(made["name"], "walkkey")
        self.assertNotIn("private_key", made)
        self.assertIn("PRIVATE KEY", key_file.read_text())
        self.assertEqual(os.stat(key_file).st_mode & 0o777, 0o600)
        self.assertEqual([k["name"] for k in self.js("keypair", "list")], ["walkkey"])
        t = self.step("key pair", t)

        # 5. A private network and its subnet.
        lan = self.js("network", "create", "lan")
        priv = str(lan["id"])
        self.assertEqual((lan["name"], lan["type"], lan["subnets"]),
                         ("lan", "MAC_FILTERED", []), lan)
        subnet = self.js("subnet", "create", priv, PRIVATE_CIDR, "--name", "lan-v4")
        self.assertEqual((subnet["cidr"], subnet["gateway_ip"], str(subnet["network_id"])),
                         (PRIVATE_CIDR, PRIVATE_GATEWAY, priv), subnet)
        self.assertEqual(self.js("network", "info", priv)["subnets"], [subnet["id"]])
        self.assertIn(PRIVATE_CIDR, self.snf("network", "list").stdout)
        t = self.step("private network and subnet", t)

        # 6. A server with the key on that network, --wait on a terminal.
        flavors = self.js("flavor", "list")
        small = [f for f in flavors if (f["vcpus"], f["ram"], f["disk"]) == (1, 128, 1)]
        big = [f for f in flavors if (f["vcpus"], f["ram"], f["disk"]) == (2, 256, 1)]
        self.assertEqual((len(small), len(big)), (1, 1), flavors)
        self.assertIn("Walk Linux", [i["name"] for i in self.js("image", "list")])
        stdout, stderr = self.snf_tty(
            "server", "create", "--name", "web", "--cpu", "1", "--ram", "128", "--disk", "1",
            "--template", "ext_archipelago", "--image", "Walk Linux", "--key", "walkkey",
            "--network", priv, "--metadata", "purpose=walk", "--wait", "--timeout", "600")
        created = re.search(r"^server (\d+) \(web\) created$", stdout, re.MULTILINE)
        self.assertIsNotNone(created, stdout)
        assert created is not None
        sid = created.group(1)
        self.assertRegex(stdout, r"(?m)^admin password: \S+$")
        self.assertEqual(stdout.strip().splitlines()[-1], "status: ACTIVE", stdout)
        # The status line was drawn while Ganeti built it.
        self.assertRegex(stderr, rf"server {sid}: BUILD", stderr[-2000:])
        self.assertRegex(stderr, rf"server {sid}: ACTIVE .* 100%", stderr[-2000:])
        self.assertIn("(shown only now: note it)", stderr)
        server = self.js("server", "info", sid)
        self.assertEqual((server["status"], server["key_name"], server["metadata"],
                          server["flavor"]["vcpus"]), ("ACTIVE", "walkkey",
                                                       {"purpose": "walk"}, 1), server)
        [lan_port] = self.js("port", "list", "--server", sid)
        self.assertEqual(str(lan_port["network_id"]), priv, lan_port)
        lan_port = self.until("the server's port ACTIVE", lambda: next(
            (p for p in self.js("port", "list", "--server", sid)
             if p["status"] == "ACTIVE"), None))
        lan_address = lan_port["fixed_ips"][0]["ip_address"]
        self.assertTrue(lan_address.startswith("192.168.77."), lan_port)
        self.assertEqual(self.instances().get(f"snf-{sid}"), "running")
        inst = self.instance(sid)
        self.assertEqual((inst["nic.networks.names"], inst["nic.ips"], inst["nic.macs"]),
                         ([f"snf-net-{priv}"], [lan_address], [lan_port["mac_address"]]), inst)
        self.assertEqual(len(inst["disk.names"]), 1, inst)
        boot_map = inst["disk.names"][0]
        self.assertTrue(boot_map.startswith("snf-vol-"), inst)
        self.assertEqual(_read(self.device(boot_map[len("snf-vol-"):]), len(IMAGE)), IMAGE)
        t = self.step("create a server (--wait)", t)

        # 7. A floating IP, attached to the server.
        ip = self.js("ip", "create")
        address = ip["floating_ip_address"]
        self.assertEqual((str(ip["floating_network_id"]), ip["status"], ip["port_id"]),
                         (self.public_id, "DOWN", None), ip)
        self.assertTrue(address.startswith("10.88.0."), ip)
        attached = self.js("ip", "attach", address, sid)
        self.assertEqual((attached["instance_id"], attached["floating_ip_address"]),
                         (sid, address), attached)
        fip_port = self.until("the floating IP's port ACTIVE", lambda: next(
            (p for p in self.js("port", "list", "--server", sid)
             if [i["ip_address"] for i in p["fixed_ips"]] == [address]
             and p["status"] == "ACTIVE"), None))
        self.assertEqual(str(fip_port["network_id"]), self.public_id, fip_port)
        shown = self.js("ip", "info", address)
        self.assertEqual((shown["status"], shown["port_id"], shown["instance_id"]),
                         ("ACTIVE", fip_port["id"], sid), shown)
        inst = self.instance(sid)
        self.assertEqual((inst["nic.ips"], inst["nic.networks.names"]),
                         ([lan_address, address],
                          [f"snf-net-{priv}", f"snf-net-{self.public_id}"]), inst)
        self.assertIn("status: ACTIVE", self.snf("server", "wait", sid, "--timeout",
                                                 "300").stdout)
        t = self.step("floating IP", t)

        # 8. A volume, attached to the running server.
        volume = self.js("volume", "create", "--size", "1", "--name", "data", "--wait")
        vid = volume["id"]
        self.assertEqual((volume["status"], volume["size"], volume["name"],
                          volume["attachments"]), ("available", 1, "data", []), volume)
        inuse = self.js("volume", "attach", vid, sid, "--wait")
        self.assertEqual((inuse["status"], [a["server_id"] for a in inuse["attachments"]]),
                         ("in-use", [sid]), inuse)
        self.assertEqual(self.instance(sid)["disk.names"], [boot_map, f"snf-vol-{vid}"])
        self.assertEqual(self.instances().get(f"snf-{sid}"), "running")
        device = self.device(vid)
        self.assertEqual(_read(device, MiB), bytes(MiB))
        _write(device, MARKER)
        self.assertIn("in-use", self.refused(5, "volume", "delete", vid))
        t = self.step("volume create and attach", t)

        # 9. A snapshot of it (in use: --force), registered as an image.
        self.refused(5, "snapshot", "create", vid, "--name", "backup")
        snap = self.js("snapshot", "create", vid, "--name", "backup", "--force", "--wait")
        self.assertEqual((snap["status"], snap["volume_id"], snap["size"]),
                         ("available", vid, 1), snap)
        self.assertEqual([s["id"] for s in self.js("snapshot", "list")], [snap["id"]])
        # Published as a file of the snapshots container, already an image.
        snap_file = f"backup-{snap['id']}"
        self.assertEqual(self.snf("file", "list", "snapshots").stdout.split(), [snap_file])
        [published] = self.js("image", "list", "--mine")
        self.assertEqual(published["name"], "backup", published)
        out = self.snf("image", "register", "Backup of data", f"snapshots/{snap_file}",
                       "-p", "OS=debian", "-p", "OSFAMILY=linux").stdout
        self.assertEqual(out.strip(), f"registered Backup of data: {published['id']}")
        image = self.js("image", "info", published["id"])
        # (Plankton takes properties from headers: their keys come lowercased.)
        self.assertEqual((image["name"], image["os"], image["osfamily"], image["size"],
                          image["owner"]),
                         ("Backup of data", "debian", "linux", 1 << 30, alice.uuid), image)
        self.assertEqual([i["id"] for i in self.js("image", "list", "--mine")],
                         [published["id"]])
        t = self.step("snapshot and register it as an image", t)

        # What a person reads: the tables of everything made so far.
        tables = {
            ("server", "list", "--detail"): ["web", "walkkey", address, "ACTIVE"],
            ("server", "info", sid): ["purpose=walk", lan_address, "walkkey"],
            ("port", "list", "--server", sid): [lan_address, address],
            ("ip", "list"): [address, "ACTIVE"],
            ("ip", "info", address): [address],
            ("network", "list"): ["lan", PRIVATE_CIDR, PUBLIC_CIDR],
            ("network", "info", priv): ["lan", "MAC_FILTERED", PRIVATE_CIDR],
            ("subnet", "list", "--network", priv): [PRIVATE_CIDR, PRIVATE_GATEWAY],
            ("volume", "list"): ["data", "in-use", "1 GiB", sid],
            ("volume", "info", vid): ["data", "in-use", sid],
            ("snapshot", "list"): ["backup", vid, "available"],
            ("snapshot", "info", snap["id"]): ["backup", vid],
            ("image", "list"): ["Walk Linux", "Backup of data"],
            ("image", "info", published["id"]): ["Backup of data", "osfamily"],
            ("flavor", "list"): ["ext_archipelago"],
            ("keypair", "list"): ["walkkey"],
            ("group", "list"): ["team", bob.email],
            ("user", "info",): [alice.uuid, alice.email],
            ("quota", "list"): ["cyclades.vm", "cyclades.disk", "pithos.diskspace"],
        }
        for argv, wanted in tables.items():
            shown_text = self.snf(*argv).stdout
            log.msg(f"snf on real Ganeti: snf {' '.join(argv)}:\n{shown_text}")
            for text in wanted:
                self.assertIn(text, shown_text, f"snf {' '.join(argv)}:\n{shown_text}")
        t = self.step("tables", t)

        # A second server from that image: its disk holds the volume's bytes.
        made = self.js("server", "create", "--name", "restored", "--flavor", str(small[0]["id"]),
                       "--image", published["id"], "--network", priv, "--wait",
                       "--timeout", "600")
        sid2 = str(made["id"])
        self.assertEqual((made["status"], made["name"]), ("ACTIVE", "restored"), made)
        self.assertTrue(made["adminPass"])
        self.assertEqual(self.instances().get(f"snf-{sid2}"), "running")
        [boot2] = self.instance(sid2)["disk.names"]
        self.assertEqual(_read(self.device(boot2[len("snf-vol-"):]), len(MARKER)), MARKER)
        t = self.step("a server from the snapshot's image", t)

        # 10. The lifecycle: shutdown, start, reboot.
        out = self.snf("server", "shutdown", sid, "--wait", "--timeout", "600").stdout
        self.assertIn("status: SHUTOFF", out)
        self.assertEqual(self.js("server", "info", sid)["status"], "SHUTOFF")
        self.assertEqual(self.instances().get(f"snf-{sid}"), "ADMIN_down")
        self.refused(5, "server", "shutdown", sid)
        t = self.step("shutdown", t)
        self.assertIn("status: ACTIVE",
                      self.snf("server", "start", sid, "--wait", "--timeout", "600").stdout)
        self.assertEqual(self.js("server", "info", sid)["status"], "ACTIVE")
        self.assertEqual(self.instances().get(f"snf-{sid}"), "running")
        t = self.step("start", t)
        reboots = sum(f"INSTANCE_REBOOT(snf-{sid})" in j for j in self.job_summaries())
        self.assertIn("status: ACTIVE", self.snf("server", "reboot", sid, "--hard", "--wait",
                                                 "--timeout", "600").stdout)
        self.assertEqual(self.js("server", "info", sid)["status"], "ACTIVE")
        self.assertEqual(self.instances().get(f"snf-{sid}"), "running")
        summaries = self.job_summaries()
        self.assertEqual(sum(f"INSTANCE_REBOOT(snf-{sid})" in j for j in summaries),
                         reboots + 1, summaries)
        self.assertIn(f"success INSTANCE_REBOOT(snf-{sid})", summaries)
        t = self.step("reboot", t)

        # The fake hypervisor has no console (501: exit 7, Ganeti's words).
        self.assertIn("Console not available for fake hypervisor. (501)",
                      self.refused(7, "server", "console", sid))
        # Nor can it hot-remove a disk: a detach from the running server is
        # refused at once, the volume still in-use.
        self.assertIn("stop it to detach the volume. (409)",
                      self.refused(5, "volume", "detach", vid))
        self.assertEqual(self.js("volume", "info", vid)["status"], "in-use")

        # 11. Resize: stopped, to the flavor of 2 CPUs and 256 MiB.
        self.snf("server", "shutdown", sid, "--wait", "--timeout", "600")
        self.refused(5, "server", "resize", sid, str(small[0]["id"]))  # its flavor already
        out = self.snf("server", "resize", sid, str(big[0]["id"]), "--wait", "--timeout",
                       "600").stdout
        self.assertIn("status: SHUTOFF", out)
        resized = self.js("server", "info", sid)
        self.assertEqual((resized["status"], resized["flavor"]["vcpus"],
                          resized["flavor"]["ram"]), ("SHUTOFF", 2, 256), resized)
        beparams = self.instance(sid)["beparams"]
        self.assertEqual((beparams["vcpus"], beparams["maxmem"], beparams["minmem"]),
                         (2, 256, 256), beparams)
        self.assertEqual(self.instances().get(f"snf-{sid}"), "ADMIN_down")
        t = self.step("resize (stopped)", t)

        # 12. Detach the volume (stopped) and the floating IP.
        free = self.js("volume", "detach", vid, "--wait")
        self.assertEqual((free["status"], free["attachments"]), ("available", []), free)
        self.assertEqual(self.instance(sid)["disk.names"], [boot_map])
        self.assertFalse((self.run_dir / f"snf-vol-{vid}").exists(), "still attached")
        self.assertIn("snapshots", self.refused(5, "volume", "delete", vid))
        loose = self.js("ip", "detach", address)
        self.assertEqual((loose["status"], loose["instance_id"]), ("DOWN", None), loose)
        self.until("the floating IP's NIC gone", lambda: self.instance(sid)["nic.ips"]
                   == [lan_address])
        self.until("the floating IP's port gone", lambda: [
            p["id"] for p in self.js("port", "list", "--server", sid)] == [lan_port["id"]])
        t = self.step("detach the volume and the floating IP", t)

        # Started again with its new flavor.
        self.snf("server", "start", sid, "--wait", "--timeout", "600")
        self.assertEqual(self.instances().get(f"snf-{sid}"), "running")
        self.assertEqual(self.js("server", "info", sid)["flavor"]["vcpus"], 2)
        t = self.step("start with the new flavor", t)

        # 13. Delete the servers, and clean up.
        for server_id in (sid, sid2):
            self.snf("server", "delete", server_id, "--wait", "--timeout", "600")
            self.refused(3, "server", "info", server_id)
        self.assertEqual(self.js("server", "list"), [])
        instances = self.instances()
        self.assertFalse({f"snf-{sid}", f"snf-{sid2}"} & set(instances), instances)
        t = self.step("delete the servers", t)
        self.snf("ip", "release", address)
        self.assertEqual(self.js("ip", "list"), [])
        self.refused(3, "ip", "info", address)
        self.snf("snapshot", "delete", snap["id"])
        self.assertEqual(self.js("snapshot", "list"), [])
        self.assertEqual(self.js("image", "list", "--mine"), [])
        self.until("the volume deleted", lambda: self.retry(5, "volume", "delete", vid))
        self.until("the volume gone", lambda: vid not in {
            v["id"] for v in self.js("volume", "list")})
        self.refused(3, "volume", "info", vid)
        # The network goes once its ports are gone (refused, 5, until then).
        self.until("the network deleted", lambda: self.retry(5, "network", "delete", priv))
        self.refused(3, "network", "info", priv)
        self.until("the network gone from Ganeti", lambda: rapi_get(
            self.cluster, f"/2/networks/snf-net-{priv}")[0] == 404)
        self.snf("keypair", "delete", "walkkey")
        self.assertEqual(self.js("keypair", "list"), [])
        self.snf("file", "share", "pithos/notes/readme.txt", "--clear")
        self.snf("group", "delete", "team")
        self.assertEqual(self.js("group", "list"), [])
        self.snf("file", "delete", "-r", "pithos/notes")
        self.assertEqual(self.snf("file", "list", "pithos/notes/").stdout.split(), [])
        gone = self.snf("file", "-A", alice.uuid, "cat", "pithos/notes/readme.txt", who="bob",
                        ok=False)
        self.assertIn(gone.returncode, (3, 4), gone.stderr)
        self.step("clean up", t)
        log.msg("snf on real Ganeti: tracebacks in the node's log:"
                f" {self.node.log().count('Traceback')}")
        log.msg(f"snf on real Ganeti, seconds: {self.figures}")
