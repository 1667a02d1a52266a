"""The parts ``bench/cluster.py`` brings up and takes down: CPU groups
(cgroup v1), haproxy, and the cloud behind it (a PostgreSQL primary with a
synchronous standby, a RabbitMQ cluster, a single-host Ceph, the simulated
Ganeti and up to three ``twistd snfd`` nodes).  Every ``stop``/``remove``
is idempotent and safe after a half-way start."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from snfd.ganeti_sim.tls import certificate_part
from snfd.testing.ceph import CephCluster
from snfd.testing.cloudnode import CloudNode, User
from snfd.testing.node import free_port, http_get
from snfd.testing.pgstandby import PrimaryWithStandby
from snfd.testing.rabbitmq import RabbitCluster

#: The CFS period of the capped groups: a 100 ms period gave p99 latencies
#: of 350-470 ms at 0.2 CPU (reference/scale-out.md).
PERIOD_US = 10_000
POOL = "snfd-blocks"
#: With several OSDs: a killed one is reported by its peers after 6 s of
#: silence (Ceph's default grace is 20 s, which stalls the I/O of its PGs that
#: long, past haproxy's timeout server 10s), heartbeats every second.
OSD_HEARTBEAT = {"osd heartbeat grace": "6", "osd heartbeat interval": "1"}
QUOTAS = (("cyclades.vm", "5000"), ("cyclades.total_cpu", "5000"), ("cyclades.cpu", "5000"),
          ("cyclades.total_ram", "4T"), ("cyclades.ram", "4T"), ("cyclades.disk", "8T"))


def say(text: str) -> None:
    """Progress, on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wait(what: str, timeout: float, probe: Callable[[], Any], step: float = 0.05) -> float:
    """Seconds until ``probe()`` is true; RuntimeError after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def healthy(url: str) -> bool:
    try:
        return http_get(url + "/_health", timeout=1)[0] == 200
    except OSError:
        return False


# -- processes ----------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def with_descendants(roots: Iterable[int]) -> set[int]:
    """``roots`` and every live process below them."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def process_group(pgid: int) -> set[int]:
    """The live processes of process group ``pgid`` and their descendants."""
    members = [pid for pid in _all_pids()
               if (fields := _stat_fields(pid)) is not None and int(fields[2]) == pgid]
    return with_descendants(members)


# -- CPU groups ---------------------------------------------------------------------------


def v1_mount(controller: str) -> Path | None:
    """Where the cgroup v1 hierarchy holding ``controller`` is mounted."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "cgroup" and controller in fields[3].split(","):
            return Path(fields[1])
    return None


class CpuGroups:
    """One cgroup v1 group per component, ``<mount>/snfd-bench/<name>``, in
    the ``cpu`` hierarchy (a CFS quota for capped groups, period 10 ms) and
    in the ``cpuacct`` one (``cpuacct.usage``: CPU time of everything in
    it); the two may be one mount.  ``why_not`` says why there are none
    (then nothing is capped and nothing measured)."""

    def __init__(self, base: str = "snfd-bench"):
        self.base = base
        cpu, acct = v1_mount("cpu"), v1_mount("cpuacct")
        self.why_not: str | None = None
        if os.geteuid() != 0:
            self.why_not = "not root"
        elif cpu is None or acct is None:
            self.why_not = "no cgroup v1 cpu/cpuacct hierarchy is mounted"
        elif not (cpu / "cpu.cfs_quota_us").exists():
            self.why_not = f"{cpu} has no cpu.cfs_quota_us (no CFS bandwidth control)"
        self.cpu, self.acct = cpu, acct
        self.names: list[str] = []
        self.quota: dict[str, float] = {}

    @property
    def available(self) -> bool:
        return self.why_not is None

    def _roots(self) -> list[Path]:
        assert self.cpu is not None and self.acct is not None
        return list(dict.fromkeys([self.cpu, self.acct]))

    def _dirs(self, name: str) -> list[Path]:
        return [root / self.base / name for root in self._roots()]

    def setup(self, names: Iterable[str], capped: dict[str, float]) -> None:
        """Make the groups (after removing any a killed run left); ``capped``
        maps group -> CPU share (0.2: 2 ms per 10 ms period)."""
        if not self.available:
            return
        self.remove()
        for name in names:
            for d in self._dirs(name):
                d.mkdir(parents=True, exist_ok=True)
            self.names.append(name)
            share = capped.get(name)
            if share is not None:
                assert self.cpu is not None
                d = self.cpu / self.base / name
                (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (d / "cpu.cfs_quota_us").write_text(str(round(share * PERIOD_US)))
                self.quota[name] = share

    def adopt(self, name: str, pids: Iterable[int]) -> None:
        """Move ``pids`` (each with all its threads) into group ``name``;
        their later children are born there."""
        if not self.available:
            return
        for d in self._dirs(name):
            for pid in pids:
                try:
                    (d / "cgroup.procs").write_text(str(pid))
                except OSError:  # gone meanwhile, or a zombie
                    pass

    def usage(self) -> dict[str, float]:
        """CPU seconds used so far by each group."""
        if not self.available:
            return {}
        assert self.acct is not None
        return {name: int((self.acct / self.base / name / "cpuacct.usage").read_text()) / 1e9
                for name in self.names}

    def throttling(self) -> dict[str, tuple[int, int]]:
        """(CFS periods, periods throttled) of each capped group."""
        out = {}
        if not self.available:
            return out
        assert self.cpu is not None
        for name in self.quota:
            stat = dict(line.split() for line in
                        (self.cpu / self.base / name / "cpu.stat").read_text().splitlines())
            out[name] = (int(stat["nr_periods"]), int(stat["nr_throttled"]))
        return out

    def remove(self) -> None:
        """Move whatever is left in our groups to the root group, then remove
        them (this process too: it runs in one)."""
        if not self.available:
            return
        for root in self._roots():
            top = root / self.base
            if not top.exists():
                continue
            for d in [*sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True), top]:
                with contextlib.suppress(OSError):
                    for pid in (d / "cgroup.procs").read_text().split():
                        with contextlib.suppress(OSError):
                            (root / "cgroup.procs").write_text(pid)
                for _attempt in range(50):
                    try:
                        d.rmdir()
                        break
                    except OSError:
                        time.sleep(0.1)  # a task is still leaving
        self.names.clear()
        self.quota.clear()


# -- haproxy ------------------------------------------------------------------------------


HAPROXY_CFG = """\
global
    maxconn 4096
    stats socket {sock} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    # A request unanswered for this long is sent again elsewhere
    # (response-timeout): what ends a SIGSTOPped node's requests.
    timeout server 10s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout

frontend api
    bind 127.0.0.1:{port}
    default_backend snfd

# No "on-marked-down shutdown-sessions": it cuts requests a draining node
# would have finished (reference/scale-out.md).
backend snfd
    balance leastconn
    # A POST (a server create, a token) that reached a node is never sent
    # again: only connection failures are retried for it.
    http-request disable-l7-retry if METH_POST
    option httpchk GET /_health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}
"""


class Haproxy:
    """haproxy 2.6 in the foreground (``-db``) on a free port of 127.0.0.1,
    in front of the nodes given to ``start``; its stats socket answers
    ``stats``."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.sock = root / "haproxy.sock"
        self.cfg = root / "haproxy.cfg"
        self.log = root / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, servers: dict[str, int]) -> None:
        """Start with ``servers`` (name -> port) and return when all are UP."""
        self.stop()
        lines = "\n".join(f"    server {name} 127.0.0.1:{port} check"
                          for name, port in servers.items())
        self.cfg.write_text(HAPROXY_CFG.format(sock=self.sock, port=self.port, servers=lines))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.root)
        def up() -> bool:
            self._exited()
            stats = self.stats()  # {} until the new haproxy answers on its socket
            return all(stats.get(name, {}).get("status") == "UP" for name in servers)
        wait("haproxy's servers UP", 60, up, step=0.1)

    def _exited(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited ({self.proc.returncode}):\n"
                               + self.log.read_text(errors="replace")[-2000:])

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of backend snfd: server name (and BACKEND) -> row."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(self.sock))
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return {}
        text = data.decode().lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row.get("pxname") == "snfd"}

    def answered(self) -> dict[str, int]:
        """Responses each server gave so far (the sum of its hrsp_* counters),
        and the backend's retries and redispatches."""
        out = {}
        for name, row in self.stats().items():
            if name == "BACKEND":
                out["retries"] = int(row.get("wretr") or 0)
                out["redispatches"] = int(row.get("wredis") or 0)
            else:
                out[name] = sum(int(row.get(f"hrsp_{c}") or 0)
                                for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))
        return out

    def status(self, name: str) -> str:
        return self.stats().get(name, {}).get("status", "")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# -- the cloud ----------------------------------------------------------------------------


class Cloud:
    """Everything behind haproxy, on 127.0.0.1 with free ports.

    ``start`` brings up PostgreSQL (primary plus synchronous standby),
    RabbitMQ (3 nodes, quorum queues), Ceph (1 monitor, ``osds`` OSDs, a
    pool with a copy on each, 3 at most; ``OSD_HEARTBEAT`` with several)
    and the simulated Ganeti (a ``twistd snfd`` of its own with the
    ``ganeti-sim`` plugin, its own database); ``start_node(i)`` starts snfd
    node ``i`` (0-2) capped in its CPU group; ``prepare`` makes the user,
    flavor and image.
    """

    def __init__(self, root: Path, groups: CpuGroups, node_count: int = 3,
                 servers: bool = True, osds: int = 3):
        self.root = root
        self.groups = groups
        self.servers = servers
        self.osds = osds
        self.pg: PrimaryWithStandby | None = None
        self.rabbit: RabbitCluster | None = None
        self.ceph: CephCluster | None = None
        self.sim: CloudNode | None = None
        self.sim_port = free_port()
        self.nodes: list[CloudNode] = []
        self.node_count = node_count

    @property
    def pool_size(self) -> int:
        """Copies of each block: one per OSD, three at most."""
        return min(3, self.osds)

    # -- bring-up

    def start(self) -> None:
        errors: list[BaseException] = []

        def rabbit() -> None:  # 20 s of mostly waiting: beside the rest
            try:
                self.rabbit = RabbitCluster(3)
                self.rabbit.start()
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=rabbit)
        say("starting RabbitMQ (3 nodes), PostgreSQL (primary + standby) and Ceph ...")
        thread.start()
        try:
            self._start_postgres()
            self.ceph = CephCluster(settings=OSD_HEARTBEAT if self.osds > 1 else None)
            self.ceph.start(osds=self.osds)
            self.ceph.create_pool(POOL, size=self.pool_size)
            self.groups.adopt("ceph", with_descendants(self.ceph.pids()))
        finally:
            thread.join()
        if errors:
            raise errors[0]
        self.adopt_rabbit()
        if self.servers:
            say("starting the simulated Ganeti ...")
            sim_config = (f"[ganeti-sim]\nport = {self.sim_port}\nnodes = 8\n"
                          "node_memory = 65536\nnode_cpus = 64\nqueue_delay = 0.05\n"
                          "exec_time = 0.01\n" + self._bus_config())
            (self.root / "sim").mkdir(mode=0o700)
            self.sim = CloudNode(self.pg_dsn("snfd_sim"), self.root / "sim", "ganeti-sim",
                                 sim_config)
            self.sim.start()
            assert self.sim.process.proc is not None
            self.groups.adopt("simulator", with_descendants([self.sim.process.proc.pid]))
        for i in range(self.node_count):
            (self.root / f"node{i + 1}").mkdir(mode=0o700)  # a node warns about others'
            self.nodes.append(CloudNode(self.pg_dsn("snfd"), self.root / f"node{i + 1}",
                                        self.plugins, self._node_config()))

    def _start_postgres(self) -> None:
        import psycopg2

        self.pg = PrimaryWithStandby()
        self.pg.start()
        # After the base backup, so the standby does not inherit it: a
        # promoted standby that did would wait for a standby on every commit.
        conn = psycopg2.connect(self.pg.primary_dsn())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
                cur.execute("SELECT pg_reload_conf()")

            def synchronous() -> bool:
                with conn.cursor() as cur:
                    cur.execute("SELECT sync_state FROM pg_stat_replication")
                    return [r[0] for r in cur.fetchall()] == ["sync"]
            wait("the standby to be synchronous", 30, synchronous, step=0.1)
        finally:
            conn.close()
        for name in ("snfd", "snfd_sim"):
            self.pg.create_database(name)
        self.adopt_postgres()

    def pg_dsn(self, db: str) -> str:
        assert self.pg is not None
        return self.pg.dsn(db)

    def adopt_postgres(self) -> None:
        assert self.pg is not None
        self.groups.adopt("postgres", with_descendants(self.pg.pids()))

    def adopt_rabbit(self) -> None:
        assert self.rabbit is not None
        for node in self.rabbit.nodes:
            if node.pid is not None:
                self.groups.adopt("rabbitmq", process_group(node.pid))

    @property
    def plugins(self) -> str:
        return "identity,pithos,cyclades" if self.servers else "identity,pithos"

    def _bus_config(self) -> str:
        assert self.rabbit is not None
        return (f"[bus]\nurl = {' '.join(self.rabbit.urls)}\nqueue_type = quorum\n"
                "reconnect_max_delay = 1\n")

    def _node_config(self) -> str:
        assert self.ceph is not None
        config = ("[node]\ndrain_grace = 2\n" + self._bus_config()
                  + f"[pithos]\nblock_store = rados\nrados_conf = {self.ceph.conf}\n"
                  f"rados_pool = {POOL}\nrados_namespace = bench\n")
        if self.servers:
            config += "[cyclades]\nreconcile_interval = 60\nos = noop+default\n"
        return config

    def start_node(self, i: int) -> None:
        """Start node ``i`` (again) and move it into its capped group once it
        answers (its start-up is not capped)."""
        node = self.nodes[i]
        node.start(ready_path="/compute/v2.0/flavors" if self.servers else None)
        assert node.process.proc is not None
        self.groups.adopt(f"node{i + 1}", with_descendants([node.process.proc.pid]))

    def running(self) -> list[CloudNode]:
        return [n for n in self.nodes
                if n.process.proc is not None and n.process.proc.poll() is None]

    def leader(self) -> int:
        """The index of the running node that says it leads."""
        def ask() -> int | None:
            for i, node in enumerate(self.nodes):
                if node not in self.running():
                    continue
                try:
                    status, _, body = http_get(node.url + "/_cluster", timeout=2)
                except OSError:
                    continue
                if status == 200 and json.loads(body).get("this_node_leads"):
                    return i
            return None

        found: list[int] = []
        wait("a leader", 60, lambda: (i := ask()) is not None and not found.append(i),
             step=0.1)
        return found[0]

    def prepare(self) -> tuple[User, str | None, str | None]:
        """The backend, quotas, user, flavor and image: (user, flavor, image);
        flavor and image are None without server creates."""
        node = self.nodes[0]
        flavor = image = None
        if self.servers:
            assert self.sim is not None
            pem_source = self.root / "sim" / "ganeti-sim" / "rapi.pem"
            wait("the simulator's certificate", 60, pem_source.exists)
            pem = self.root / "rapi.pem"
            pem.write_text(certificate_part(pem_source.read_bytes()))
            node.manage("backend-add", "sim.ganeti.test", "--url",
                        f"https://127.0.0.1:{self.sim_port}", "--username", "synnefo",
                        "--password", "synnefopass", "--certificate", str(pem),
                        "--events", "watch")
            for resource, value in QUOTAS:
                node.manage("resource-modify", resource, "--base-default", value)
        user = node.add_user("bench@example.org", "Bench")
        if self.servers:
            made = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                          "--disk", "1", "--disk-template", "file", "--json"))
            flavor = str(made[0]["id"])
            disk = self.root / "bench-image.diskdump"
            disk.write_bytes(os.urandom(1 << 20))
            image = str(json.loads(node.manage("image-register", str(disk), "--name",
                                               "Bench image", "--property", "OS=linux",
                                               "--json"))["id"])
        return user, flavor, image

    # -- faults

    def kill_rabbit(self, i: int) -> None:
        assert self.rabbit is not None
        self.rabbit.kill(i)

    def restart_rabbit(self, i: int) -> None:
        assert self.rabbit is not None
        self.rabbit.restart(i)
        self.adopt_rabbit()

    # -- take-down

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        if self.sim is not None:
            with contextlib.suppress(Exception):
                self.sim.stop()
        for part in (self.rabbit, self.ceph, self.pg):
            if part is not None:
                try:
                    part.stop()
                except Exception as e:  # the others must still stop
                    say(f"stopping {type(part).__name__}: {e}")


__all__ = ["Cloud", "CpuGroups", "Haproxy", "healthy", "say", "wait"]
