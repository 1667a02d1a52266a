"""Volumes end to end through the compute API on a real Ganeti 3.0 cluster.

One real single-node cluster in a network namespace
(``snfd.testing.ganeti.RealGanetiCluster``: fake hypervisor, the no-op OS,
``ext`` enabled by ganeti-up.sh), a private RabbitMQ, a fresh database and
a ``twistd snfd`` node with the identity, pithos, archip, cyclades and
ganeti-events plugins (``real_ganeti.start_node(archip=True)``): its HTTP
site and NBD server are reachable from the namespace on the root end of
the cluster's veth pair.  The ExtStorage provider ``archipelago`` is
installed into the cluster by ``snf-manage extstorage-install``, with its
records under ``/srv/gnt<N>/run/snfd-archipelago`` so that ganeti-down.sh
releases what a failed run leaves.

The operator's side is ``snf-manage`` (``backend-add``, ``flavor-create``
of an ``ext_archipelago`` flavor, ``image-register`` of a small image of
random bytes); the user's is the compute API and ``/volume/v3``.  Each
server's disk is read and written through the loop device the provider
attached for it (loop devices are global: the root namespace reads them),
and the volume service's own view of each map comes from ``/archip/v1``
with the provider's component token.  Timings of each step go to the test
log (``_trial_temp/test.log``).

Needs root, real Ganeti (``real_ganeti_unavailable``), and what the
provider attaches with (nbdfuse, fusermount3, losetup, /dev/fuse).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.python import log
from twisted.trial import unittest

from tests.archip.test_extstorage import unavailable
from tests.integration.real_ganeti import rapi_get, start_node

MiB = 1024 * 1024
GiB = 1024 * MiB
SERVERS = "/compute/v2.1/servers"
VOLUMES = "/volume/v3/volumes"
SNAPSHOTS = "/volume/v3/snapshots"
#: Seconds a real Ganeti job (create with an ext disk, modify, remove) may take.
JOB_WAIT = 180.0
#: The image: recognisable at both ends, one whole 4 MiB object and a partial one.
IMAGE = (b"snfd volumes on real Ganeti: the image starts here\n"
         + os.urandom(6 * MiB + 4321) + b"\nthe image ends here\n")
#: Where server one's disk is written: inside the image's second object
#: (shared with the image until then).
WRITE_AT = 5 * MiB + 777
WRITTEN = b"written into server one's disk\n" * 300


def _read(device: str, offset: int, length: int) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _write(device: str, offset: int, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


class VolumesOnRealGanetiTests(unittest.TestCase):
    """Thin servers, snapshots and volume attachments through the compute
    API on a real cluster, down to the bytes of the disks."""

    timeout = 1200

    async def setUp(self) -> None:
        reason = unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        root = await start_node(self, "snfd-volumes-real-", "", "/volume/v3/types",
                                archip=True)
        self.figures: dict[str, float] = {}
        await threads.deferToThread(self.provision, root)

    def provision(self, root: Path) -> None:
        """The operator's part: the backend, the provider, a thin flavor, an
        image and a user."""
        node, cluster = self.node, self.cluster
        backend = json.loads(node.manage(
            "backend-add", cluster.name, "--url", cluster.url, "--username", cluster.username,
            "--password", cluster.password, "--certificate", str(root / "rapi.pem"),
            "--events", "watch", "--json"))
        self.assertIn("ext", backend["disk_templates"])
        self.provider = cluster.base / "srv" / "extstorage" / "archipelago"
        self.run_dir = cluster.base / "run" / "snfd-archipelago"
        node.manage("extstorage-install", "--dest", str(self.provider),
                    "--url", f"http://{self.host}:{node.process.port}",
                    "--run-dir", str(self.run_dir))
        self.token = json.loads((self.provider / "archipelago.conf").read_text())["token"]
        flavors = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                         "--disk", "1", "--disk-template", "ext_archipelago",
                                         "--json"))
        self.flavor_id = flavors[0]["id"]
        image_file = root / "volume-test.img"
        image_file.write_bytes(IMAGE)
        image = json.loads(node.manage("image-register", str(image_file), "--name",
                                       "Volume test", "--property", "OS=debian", "--json"))
        self.assertEqual(image["size"], len(IMAGE))
        self.image_id = image["id"]
        self.alice = node.add_user("alice@example.org", "Alice")

    # -- helpers (blocking ones run in threads) ----------------------------------

    def fail_with_log(self, message: str) -> None:
        """Fail with ``message``, the provider's last logs, Ganeti's last
        jobs and the node's log (without its access lines)."""
        lines = [line for line in self.node.log().splitlines()
                 if "snfd.http#info" not in line and "ClientFactory#info" not in line]
        raise AssertionError(f"{message}\n--- extstorage logs:\n{self.es_logs()}\n"
                             f"--- Ganeti's last jobs:\n{self.jobs()}\n"
                             "--- node log:\n" + "\n".join(lines[-40:]))

    def api(self, method: str, path: str, body: Any = None,
            expect: int | tuple[int, ...] = 200) -> Any:
        """A call of the node's API as alice; its answer (fails unless the
        status is ``expect``)."""
        try:
            status, answer = self.node.api(method, path, self.alice.token, body)
        except ConnectionError as e:
            # The node is gone: say how it ended (CI saw this once).
            proc = self.node.process.proc
            self.fail_with_log(f"{method} {path}: {e!r}; node exit status"
                               f" {proc.poll() if proc is not None else None}")
        if status not in (expect if isinstance(expect, tuple) else (expect,)):
            self.fail_with_log(f"{method} {path}: {status} {answer}")
        return answer

    def archip(self, name: str) -> tuple[int, Any]:
        """The volume service's view of map ``name`` (``/archip/v1`` with the
        provider's component token): status and info."""
        return self.node.api("GET", f"/archip/v1/volumes/{name}", self.token)

    def info(self, name: str) -> dict[str, Any]:
        status, answer = self.archip(name)
        if status != 200:
            self.fail_with_log(f"map {name}: {status} {answer}")
        return dict(answer)

    def wait(self, what: str, probe: Callable[[], Any], done: Callable[[Any], bool],
             timeout: float = JOB_WAIT) -> Any:
        """Poll ``probe`` until ``done`` holds of what it returns."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            seen = probe()
            if done(seen):
                return seen
            time.sleep(0.3)
        self.fail_with_log(f"{what}: not after {timeout:.0f} s; last seen {seen}")

    def create_server(self, name: str, **more: Any) -> int:
        body = {"name": name, "flavorRef": str(self.flavor_id), **more}
        if "block_device_mapping_v2" not in more:
            body["imageRef"] = self.image_id
        made = self.api("POST", SERVERS, {"server": body}, expect=202)
        return int(made["server"]["id"])

    def server(self, sid: int) -> tuple[int, Any]:
        return self.node.api("GET", f"{SERVERS}/{sid}", self.alice.token)

    def wait_status(self, sid: int, wanted: str = "ACTIVE") -> dict[str, Any]:
        """Wait until the server shows ``wanted`` with no task pending."""
        def there(shown: tuple[int, Any]) -> bool:
            status, body = shown
            if status == 200 and body["server"]["status"] == "ERROR":
                self.fail_with_log(f"server {sid} went to ERROR: {body}")
            return (status == 200 and body["server"]["status"] == wanted
                    and not body["server"]["OS-EXT-STS:task_state"])
        shown = self.wait(f"server {sid} {wanted}", lambda: self.server(sid), there)
        return dict(shown[1]["server"])

    def wait_gone(self, sid: int) -> None:
        self.wait(f"server {sid} deleted", lambda: self.server(sid),
                  lambda s: s[0] == 404 or (s[0] == 200
                                            and s[1]["server"]["status"] == "DELETED"))

    def volume(self, volume_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"{VOLUMES}/{volume_id}")["volume"])

    def wait_volume(self, volume_id: str, wanted: str, was: str) -> dict[str, Any]:
        """Wait until the volume is ``wanted``; fail when it is ``error`` or
        back to ``was`` (the change failed)."""
        shown = self.wait(f"volume {volume_id} {wanted}", lambda: self.volume(volume_id),
                          lambda v: v["status"] in (wanted, was, "error"))
        if shown["status"] != wanted:
            self.fail_with_log(f"volume {volume_id} is {shown['status']}, not {wanted}: the"
                               " change was accepted, then undone")
        return dict(shown)

    def boot_volume(self, server: dict[str, Any]) -> dict[str, Any]:
        """The server's one volume (its boot disk), as ``/volume/v3`` shows it
        (Synnefo's dialect lists it; Nova's does not list the thin root disk
        of a server built from an image)."""
        attached = self.api("GET", f"/compute/v2.0/servers/{server['id']}")["server"]["volumes"]
        self.assertEqual(len(attached), 1, attached)
        volume = self.volume(attached[0])
        self.assertEqual((volume["status"], volume["bootable"], volume["size"]),
                         ("in-use", "true", 1), volume)
        self.assertEqual([a["server_id"] for a in volume["attachments"]], [server["id"]])
        return volume

    def device(self, map_name: str) -> str:
        """The loop device the provider attached for ``map_name``."""
        device = (self.run_dir / map_name / "loop").read_text().strip()
        self.assertRegex(device, r"^/dev/loop\d+$")
        return device

    def ganeti_disks(self, sid: int) -> tuple[list[str], list[str]]:
        """The instance's disk names (RAPI) and the devices ``gnt-instance
        info`` shows on its primary node."""
        status, instance = rapi_get(self.cluster, f"/2/instances/snf-{sid}")
        self.assertEqual(status, 200, instance)
        shown = subprocess.run([str(self.cluster.base / "ns" / "gx"), "gnt-instance", "info",
                                f"snf-{sid}"], capture_output=True, text=True, timeout=120)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        return list(instance["disk.names"]), re.findall(r"on primary: (\S+)", shown.stdout)

    def assert_holds_image(self, map_name: str, sid: int, image: bytes) -> None:
        """The disk of ``map_name`` (server ``sid``'s) holds ``image`` and
        zeros after it; Ganeti shows its device."""
        device = self.device(map_name)
        names, devices = self.ganeti_disks(sid)
        self.assertEqual((names, devices), ([map_name], [device]))
        self.assertEqual(_read(device, 0, len(image)), image)
        self.assertEqual(_read(device, len(image), 8 * MiB - len(image)),
                         bytes(8 * MiB - len(image)))
        self.assertEqual(_read(device, GiB - MiB, MiB), bytes(MiB))

    def es_logs(self) -> str:
        """The last few ExtStorage action logs."""
        try:
            logs = sorted((self.cluster.base / "log" / "extstorage").glob("*"),
                          key=lambda p: p.stat().st_mtime)
            return "\n".join(f"{p.name}: {p.read_text(errors='replace')[-400:]}"
                             for p in logs[-6:])
        except OSError as e:
            return f"({e})"

    def jobs(self) -> str:
        """Ganeti's last few jobs: id, status, summary and, for a failed
        one, its opcodes' results."""
        status, jobs = rapi_get(self.cluster, "/2/jobs?bulk=1")
        if status != 200 or not isinstance(jobs, list):
            return f"({status} {jobs})"
        lines = []
        for job in sorted(jobs, key=lambda j: int(j.get("id", 0)))[-5:]:
            line = f"{job.get('id')} {job.get('status')} {job.get('summary')}"
            if job.get("status") == "error":
                detail = rapi_get(self.cluster, f"/2/jobs/{job.get('id')}")[1]
                line += f" {detail.get('opresult') if isinstance(detail, dict) else detail}"
            lines.append(line)
        return "\n".join(lines)

    def leftovers(self) -> dict[str, list[str]]:
        """Loop devices over the provider's files, nbdfuse processes and FUSE
        mounts in the cluster's mount namespace."""
        listed = json.loads(subprocess.run(["losetup", "--list", "--json"],
                                           capture_output=True, text=True).stdout or "{}")
        loops = [d["name"] for d in listed.get("loopdevices", [])
                 if "/snfd-archipelago/" in (d.get("back-file") or "")]
        nbdfuse = subprocess.run(["pgrep", "-f", f"nbdfuse.*{self.run_dir}"],
                                 capture_output=True, text=True).stdout.split()
        table = subprocess.run([str(self.cluster.base / "ns" / "gx"), "cat",
                                "/proc/self/mountinfo"], capture_output=True, text=True)
        mounts = [m for m in table.stdout.splitlines()
                  if "fuse" in m and "snfd-archipelago" in m]
        return {"loops": loops, "mounts": mounts, "nbdfuse": nbdfuse}

    def step(self, name: str, started: float) -> None:
        took = self.figures[name] = round(time.monotonic() - started, 2)
        log.msg(f"volumes on real Ganeti: {name} took {took:.2f} s")

    # -- the test ------------------------------------------------------------------

    def test_thin_servers_snapshot_and_attachment(self):
        """Two servers from an image on the thin flavor get disks that read as
        the image (zeros after it) with no object copied; a write into one
        copies up into that volume only; a snapshot of it boots a third
        server whose disk holds the write; a new volume attaches to a
        running server as a second Ganeti disk and detaches again (a
        detach the fake hypervisor cannot do hot is refused, not accepted
        and undone); and deleting the servers, the snapshot and the volume
        leaves no map, owned object, loop device, FUSE mount or nbdfuse."""
        return threads.deferToThread(self.scenario)

    def scenario(self) -> None:
        maps: list[str] = []

        # 1. Two servers from the image: clones, nothing copied.
        started = time.monotonic()
        one, two = self.create_server("vm-one"), self.create_server("vm-two")
        servers = {sid: self.wait_status(sid) for sid in (one, two)}
        self.step("create two servers (ACTIVE)", started)
        boot = {sid: self.boot_volume(servers[sid]) for sid in (one, two)}
        for sid in (one, two):
            self.assertEqual(boot[sid]["volume_image_metadata"], {"image_id": self.image_id})
            map_name = f"snf-vol-{boot[sid]['id']}"
            maps.append(map_name)
            info = self.info(map_name)
            self.assertEqual((info["size"], info["read_only"], info["objects"]["owned"]),
                             (GiB, False, 0), info)
            started = time.monotonic()
            self.assert_holds_image(map_name, sid, IMAGE)
            self.step(f"read server {sid}'s disk", started)
        map_one, map_two = maps

        # 2. A write into server one's disk copies one object up, into its volume only.
        started = time.monotonic()
        device_one = self.device(map_one)
        _write(device_one, WRITE_AT, WRITTEN)
        self.step("write into server one's disk (fsync)", started)
        self.assertEqual(self.info(map_one)["objects"]["owned"], 1)
        self.assertEqual(self.info(map_two)["objects"]["owned"], 0)
        written = IMAGE[:WRITE_AT] + WRITTEN + IMAGE[WRITE_AT + len(WRITTEN):]
        self.assertEqual(_read(device_one, 0, len(IMAGE)), written)
        self.assertEqual(_read(self.device(map_two), 0, len(IMAGE)), IMAGE)

        # 3. A snapshot of it (in use: force) boots a third server.
        started = time.monotonic()
        snap = self.api("POST", SNAPSHOTS, {"snapshot": {
            "volume_id": boot[one]["id"], "name": "after the write", "force": True}},
            expect=202)["snapshot"]
        snap = self.wait(f"snapshot {snap['id']} available",
                         lambda: self.api("GET", f"{SNAPSHOTS}/{snap['id']}")["snapshot"],
                         lambda s: s["status"] in ("available", "error"))
        self.step("snapshot server one's volume (available)", started)
        self.assertEqual(snap["status"], "available", snap)
        snap_map = f"snf-snap-{snap['id']}"
        maps.append(snap_map)
        self.assertTrue(self.info(snap_map)["read_only"])
        started = time.monotonic()
        three = self.create_server("vm-three", block_device_mapping_v2=[{
            "source_type": "snapshot", "destination_type": "volume", "boot_index": 0,
            "uuid": snap["id"]}])
        servers[three] = self.wait_status(three)
        self.step("create a server from the snapshot (ACTIVE)", started)
        boot[three] = self.boot_volume(servers[three])
        self.assertEqual(boot[three]["snapshot_id"], snap["id"])
        map_three = f"snf-vol-{boot[three]['id']}"
        maps.append(map_three)
        self.assertEqual(self.info(map_three)["objects"]["owned"], 0)
        self.assert_holds_image(map_three, three, written)

        # 4. A new volume attaches to server one as a second disk, and detaches.
        started = time.monotonic()
        data = self.api("POST", VOLUMES, {"volume": {"size": 1, "name": "data"}},
                        expect=202)["volume"]
        self.assertEqual(data["status"], "available", data)
        map_data = f"snf-vol-{data['id']}"
        maps.append(map_data)
        self.assertEqual(self.info(map_data)["size"], GiB)
        self.step("create a volume", started)
        started = time.monotonic()
        self.api("POST", f"{SERVERS}/{one}/os-volume_attachments",
                 {"volumeAttachment": {"volumeId": data["id"]}})
        attached = self.wait_volume(data["id"], "in-use", "available")
        self.step("attach the volume (in-use)", started)
        self.assertEqual([a["server_id"] for a in attached["attachments"]], [str(one)])
        names, devices = self.ganeti_disks(one)
        self.assertEqual(names, [map_one, map_data])
        self.assertEqual(devices, [device_one, self.device(map_data)])
        self.assertEqual(_read(self.device(map_data), 0, MiB), bytes(MiB))
        _write(self.device(map_data), 0, b"written into the data volume\n")
        shown = self.wait_status(one)
        # Nova's dialect lists the attached volume, not the thin root disk of
        # a server built from an image (its local disk in Nova's terms).
        self.assertEqual({v["id"] for v in shown["os-extended-volumes:volumes_attached"]},
                         {data["id"]})
        # The fake hypervisor cannot hot-remove a disk (Ganeti refuses to
        # remove one from a running instance without hotplug): a detach from
        # the running server is refused at once, the volume still in-use, or
        # it is done; it is never accepted and then undone.
        started = time.monotonic()
        detach = f"{SERVERS}/{one}/os-volume_attachments/{data['id']}"
        status, answer = self.node.api("DELETE", detach, self.alice.token)
        if status != 202:
            self.assertIn(status, (400, 409), answer)
            self.assertEqual(self.volume(data["id"])["status"], "in-use")
            self.api("POST", f"{SERVERS}/{one}/action", {"os-stop": {}}, expect=202)
            self.wait_status(one, "SHUTOFF")
            self.step("stop server one", started)
            started = time.monotonic()
            self.api("DELETE", detach, expect=202)
        self.wait_volume(data["id"], "available", "in-use")
        self.step("detach the volume (available)", started)
        self.assertEqual(self.ganeti_disks(one)[0], [map_one])
        self.assertFalse((self.run_dir / map_data).exists(), "still attached")
        kept = self.info(map_data)
        self.assertEqual((kept["size"], kept["objects"]["owned"]), (GiB, 1), kept)

        # 5. Everything goes, and leaves nothing behind.
        started = time.monotonic()
        for sid in (one, two, three):
            self.api("DELETE", f"{SERVERS}/{sid}", expect=204)
        for sid in (one, two, three):
            self.wait_gone(sid)
        self.step("delete three servers", started)
        started = time.monotonic()
        self.api("DELETE", f"{SNAPSHOTS}/{snap['id']}", expect=202)
        self.api("DELETE", f"{VOLUMES}/{data['id']}", expect=202)
        self.step("delete the snapshot and the volume", started)
        for sid in (one, two, three):
            self.api("GET", f"{VOLUMES}/{boot[sid]['id']}", expect=404)
        self.api("GET", f"{VOLUMES}/{data['id']}", expect=404)
        self.api("GET", f"{SNAPSHOTS}/{snap['id']}", expect=404)
        self.assertEqual({m: self.archip(m)[0] for m in maps}, {m: 404 for m in maps})
        pointers = self.node.state_dir / "volumes" / "maps"
        self.assertEqual(sorted(set(maps) & {p.name for p in pointers.iterdir()}), [])
        objects = self.node.state_dir / "volumes" / "objects"

        def left() -> list[str]:
            return [p.name for p in objects.iterdir()
                    if any(p.name.startswith(m + "_") for m in maps)]
        # A removed map's pointer goes first, its objects right after it
        # (the boot volumes go with their servers' remove jobs).
        deadline = time.monotonic() + 30
        while left() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(left(), [])
        self.assertEqual(self.leftovers(), {"loops": [], "mounts": [], "nbdfuse": []})
        instances = rapi_get(self.cluster, "/2/instances")[1]
        self.assertEqual(instances, [])
        log.msg(f"volumes on real Ganeti, seconds: {self.figures}")
