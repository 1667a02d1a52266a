"""Image deployment on a non-thin (``file``) disk, end to end, on a real
Ganeti 3.0 cluster: the OS definition ``snf-image`` against a real node.

One real single-node cluster in a network namespace
(``snfd.testing.ganeti.RealGanetiCluster``: fake hypervisor, ``file``
enabled by ganeti-up.sh), a private RabbitMQ, a fresh database and a
``twistd snfd`` node with the identity, pithos, archip, cyclades and
ganeti-events plugins (``real_ganeti.start_node(archip=True,
guest_os="snf-image+default", public_on_host=True)``): its HTTP site
(hence the build's ``config_url``) and its NBD server are reachable from
the namespace on the root end of the cluster's veth pair.  The OS
definition is installed into the cluster's OS search path
(``/srv/gnt<N>/srv/os/snf-image``, seen inside as
``/srv/ganeti/os/snf-image``) by ``snf-manage os-install``.

The operator registers a small partitioned ext4 image (``image-register``)
and a ``file`` flavor; the user creates a server through the compute API
with a key pair, an admin password and a personality file.  Once it is
ACTIVE, the instance's disk file (its path from ``gnt-instance info``) is
read with debugfs from the root namespace: the image is there, grown to
the disk, with the host name, the key, the password hash and the file.
A second server, on the thin flavor (``ext_archipelago``, the provider
installed by ``snf-manage extstorage-install``), has a clone that holds the image:
create only customizes it, through the loop device the provider attached.
Deleting the servers leaves no instance and no image export.  Timings (the
whole create, and create inside Ganeti from its OS log) go to the test log.

Needs root and real Ganeti (``real_ganeti_unavailable``), and the tools
``create`` uses (``tests.archip.test_os_definition.unavailable``) and
those the provider attaches with (``tests.archip.test_extstorage.unavailable``).
"""

from __future__ import annotations

import base64
import crypt
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.python import log
from twisted.trial import unittest

from tests.archip.test_extstorage import unavailable as extstorage_unavailable
from tests.archip.test_os_definition import START, debugfs, make_image, stat_of
from tests.archip.test_os_definition import unavailable as create_unavailable
from tests.integration.real_ganeti import rapi_get, start_node

MiB = 1024 * 1024
GiB = 1024 * MiB
SERVERS = "/compute/v2.1/servers"
JOB_WAIT = 240.0
PASSWORD = "the admin password of vm-one 7Tz"
#: An ed25519 public key (its wire form: the type, then 32 bytes).
KEY = "ssh-ed25519 " + base64.b64encode(
    b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode() \
    + " alice@example.org"
MOTD = b"deployed by snf-image on real Ganeti\n"


class ImageDeployOnRealGanetiTests(unittest.TestCase):
    """A server on a ``file`` flavor gets its image written and customized."""

    timeout = 900

    async def setUp(self) -> None:
        reason = create_unavailable() or extstorage_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        root = await start_node(self, "snfd-image-deploy-real-", "", "/compute/v2.1/flavors",
                                archip=True, guest_os="snf-image+default",
                                public_on_host=True)
        self.root = root
        self.figures: dict[str, float] = {}
        await threads.deferToThread(self.provision, root)

    def provision(self, root: Path) -> None:
        node, cluster = self.node, self.cluster
        backend = json.loads(node.manage(
            "backend-add", cluster.name, "--url", cluster.url, "--username", cluster.username,
            "--password", cluster.password, "--certificate", str(root / "rapi.pem"),
            "--events", "watch", "--json"))
        self.assertIn("file", backend["disk_templates"])
        self.os_dir = cluster.base / "srv" / "os" / "snf-image"
        node.manage("os-install", "--dest", str(self.os_dir))
        # The ExtStorage provider, for the thin server; its component token
        # also asks the volume service about the image export.
        provider = cluster.base / "srv" / "extstorage" / "archipelago"
        self.run_dir = cluster.base / "run" / "snfd-archipelago"
        node.manage("extstorage-install", "--dest", str(provider),
                    "--url", f"http://{self.host}:{node.process.port}",
                    "--run-dir", str(self.run_dir))
        self.token = json.loads((provider / "archipelago.conf").read_text())["token"]
        flavors = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                         "--disk", "1", "--disk-template", "file", "--json"))
        self.flavor_id = flavors[0]["id"]
        thin = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                      "--disk", "1", "--disk-template", "ext_archipelago",
                                      "--json"))
        self.thin_flavor_id = thin[0]["id"]
        work = root / "image"
        work.mkdir()
        self.image = make_image(work)
        image = json.loads(node.manage(
            "image-register", str(work / "image.raw"), "--name", "Deploy test",
            "--property", "OSFAMILY=linux", "--property", "ROOT_PARTITION=1", "--json"))
        self.image_id = image["id"]
        self.alice = node.add_user("alice@example.org", "Alice")

    # -- helpers (blocking) ------------------------------------------------------

    def fail_with_log(self, message: str) -> None:
        lines = [line for line in self.node.log().splitlines()
                 if "snfd.http#info" not in line and "ClientFactory#info" not in line]
        raise AssertionError(f"{message}\n--- OS logs:\n{self.os_logs()}\n"
                             f"--- Ganeti's last jobs:\n{self.jobs()}\n"
                             "--- node log:\n" + "\n".join(lines[-40:]))

    def api(self, method: str, path: str, body: Any = None,
            expect: int | tuple[int, ...] = 200) -> Any:
        status, answer = self.node.api(method, path, self.alice.token, body)
        if status not in (expect if isinstance(expect, tuple) else (expect,)):
            self.fail_with_log(f"{method} {path}: {status} {answer}")
        return answer

    def wait(self, what: str, probe: Any, done: Any, timeout: float = JOB_WAIT) -> Any:
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            seen = probe()
            if done(seen):
                return seen
            time.sleep(0.2)
        self.fail_with_log(f"{what}: not after {timeout:.0f} s; last seen {seen}")

    def server(self, sid: int) -> tuple[int, Any]:
        return self.node.api("GET", f"{SERVERS}/{sid}", self.alice.token)

    def os_logs(self) -> str:
        logs = sorted((self.cluster.base / "log" / "os").glob("*"),
                      key=lambda p: p.stat().st_mtime)
        return "\n".join(f"{p.name}: {p.read_text(errors='replace')[-1500:]}"
                         for p in logs[-2:])

    def jobs(self) -> str:
        status, jobs = rapi_get(self.cluster, "/2/jobs?bulk=1")
        if status != 200 or not isinstance(jobs, list):
            return f"({status} {jobs})"
        lines = []
        for job in sorted(jobs, key=lambda j: int(j.get("id", 0)))[-4:]:
            line = f"{job.get('id')} {job.get('status')} {job.get('summary')}"
            if job.get("status") == "error":
                detail = rapi_get(self.cluster, f"/2/jobs/{job.get('id')}")[1]
                line += f" {detail.get('opresult') if isinstance(detail, dict) else detail}"
            lines.append(line)
        return "\n".join(lines)

    def disk_file(self, sid: int) -> Path:
        """The instance's disk file, as the root namespace sees it."""
        shown = subprocess.run([str(self.cluster.base / "ns" / "gx"), "gnt-instance", "info",
                                f"snf-{sid}"], capture_output=True, text=True, timeout=120)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        paths = re.findall(r"on primary: (/srv/ganeti/\S+)", shown.stdout)
        self.assertEqual(len(paths), 1, shown.stdout)
        return self.cluster.base / "srv" / paths[0][len("/srv/ganeti/"):]

    def export_status(self, sid: int) -> int:
        status, _ = self.node.api("GET", f"/archip/v1/volumes/snf-img-snf-{sid}", self.token)
        return status

    # -- the test ------------------------------------------------------------------

    def test_servers_from_image(self):
        """A server on a ``file`` flavor from a partitioned ext4 image is
        ACTIVE with the image on its 1 GiB disk file (which keeps its
        size), the root partition and filesystem grown to the disk, its
        host name, root's password (SHA-512 hash of the admin password),
        the key pair's key and the personality file written; the image's
        NBD export is gone once the build ended.  A server on the thin
        flavor gets the same customization on its clone, nothing written
        by the OS.  Both builds' OS scripts reported their outcome to the
        node (a diagnostic of each server).  Deleting both leaves no instance and no export."""
        return threads.deferToThread(self.scenario)

    def scenario(self) -> None:
        self.api("POST", "/compute/v2.1/os-keypairs",
                 {"keypair": {"name": "laptop", "public_key": KEY}})
        sid = self.create_server("vm-one", self.flavor_id, "file")
        disk = self.disk_file(sid)
        self.assertEqual(disk.stat().st_size, GiB)
        self.assert_deployed(disk, "vm-one", sid)

        # A thin server: its disk (a clone) holds the image; only customized.
        thin = self.create_server("vm-two", self.thin_flavor_id, "thin")
        # Synnefo's dialect lists the thin root disk (Nova's does not).
        volume = self.api("GET", f"/compute/v2.0/servers/{thin}")["server"]["volumes"][0]
        device = (self.run_dir / f"snf-vol-{volume}" / "loop").read_text().strip()
        self.assert_deployed(Path(device), "vm-two", thin)
        self.assertIn("not written", self.os_logs())

        started = time.monotonic()
        for server in (sid, thin):
            self.api("DELETE", f"{SERVERS}/{server}", expect=204)
        for server in (sid, thin):
            self.wait(f"server {server} deleted", lambda s=server: self.server(s),
                      lambda s: s[0] == 404 or (s[0] == 200
                                                and s[1]["server"]["status"] == "DELETED"))
        self.figures["delete two servers"] = round(time.monotonic() - started, 2)
        self.assertEqual([self.export_status(s) for s in (sid, thin)], [404, 404])
        self.assertEqual(rapi_get(self.cluster, "/2/instances")[1], [])
        self.assertFalse(disk.exists())
        self.assertFalse((self.run_dir / f"snf-vol-{volume}").exists(), "still attached")
        log.msg(f"image deploy on real Ganeti, seconds: {self.figures}")

    def create_server(self, name: str, flavor: int, kind: str) -> int:
        """Create ``name`` with the key, the password and /etc/motd; wait
        until it is ACTIVE; its id."""
        started = time.monotonic()
        made = self.api("POST", SERVERS, {"server": {
            "name": name, "flavorRef": str(flavor), "imageRef": self.image_id,
            "key_name": "laptop", "adminPass": PASSWORD,
            "personality": [{"path": "/etc/motd",
                             "contents": base64.b64encode(MOTD).decode()}]}}, expect=202)
        sid = int(made["server"]["id"])

        def active(shown: tuple[int, Any]) -> bool:
            status, body = shown
            if status == 200 and body["server"]["status"] == "ERROR":
                self.fail_with_log(f"server {sid} went to ERROR: {body}")
            return (status == 200 and body["server"]["status"] == "ACTIVE"
                    and not body["server"]["OS-EXT-STS:task_state"])

        self.wait(f"server {sid} ACTIVE", lambda: self.server(sid), active)
        took = self.figures[f"{kind}: create (POST to ACTIVE)"] = \
            round(time.monotonic() - started, 2)
        # snf-image reported to the node: the owner sees how the build went.
        shown = self.api("GET", f"/compute/v2.0/servers/{sid}")["server"]
        self.assertIn(("INFO", "image-info"), {(d["level"], d["source"])
                                               for d in shown["diagnostics"]}, shown)
        inside = re.findall(r"create done in ([\d.]+) s", self.os_logs())
        if inside:
            self.figures[f"{kind}: create inside Ganeti (OS script)"] = float(inside[-1])
        log.msg(f"image deploy on real Ganeti: {kind} create took {took:.2f} s")
        return sid

    def assert_deployed(self, disk: Path, hostname: str, sid: int) -> None:
        """``disk`` holds the image, grown to 1 GiB and customized (its host
        name: the server's name)."""
        with open(disk, "rb") as f:
            data = f.read(MiB)
        self.assertEqual(data[:440], self.image[:440])
        table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                          text=True, check=True).stdout)["partitiontable"]
        self.assertEqual([(p["start"], p["size"]) for p in table["partitions"]],
                         [(START, GiB // 512 - START)])
        self.assertEqual(debugfs(disk, "cat /etc/hostname"), f"{hostname}\n")
        root = debugfs(disk, "cat /etc/shadow").splitlines()[0].split(":")
        self.assertEqual(root[0], "root")
        self.assertEqual(crypt.crypt(PASSWORD, root[1]), root[1])
        self.assertEqual(debugfs(disk, "cat /root/.ssh/authorized_keys"), KEY + "\n")
        self.assertEqual(stat_of(disk, "/root/.ssh/authorized_keys")[2], 0o600)
        self.assertEqual(debugfs(disk, "cat /etc/motd").encode(), MOTD)
        self.assertNotIn(PASSWORD, self.os_logs())
        self.assertEqual(self.export_status(sid), 404)
