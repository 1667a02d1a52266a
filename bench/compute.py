"""Server creation through the compute API, on the simulator and on real Ganeti.

Two parts, each on a ``twistd snfd`` node of its own
(``snfd.testing.cloudnode.CloudNode``) on a fresh database of the test
PostgreSQL, with a private RabbitMQ as the bus (``PrivateRabbit``; the
in-process bus when RabbitMQ is not installed or does not start -- the
output says which):

- simulator: plugins identity, pithos and cyclades, and the simulated
  Ganeti (plugin ganeti-sim: 4 nodes of 64 GiB and 64 CPUs, queue delay
  0.05 s, ``--exec-time`` 0.01 s per step of an op: a create has about eight
  steps and holds the node-allocation lock, so the simulator, like Ganeti,
  runs creates one at a time) in a second ``twistd`` of its own, added with
  ``snf-manage backend-add`` as in ``bench/faults.py``, its events over the
  RabbitMQ (with the in-process bus it has to run inside the node, and its
  own work -- it rewrites its whole state file on every op -- then shares
  the node's reactor); ``--servers`` (1,000) servers of 1 CPU / 128 MiB /
  1 GiB ``file`` from a 1 MiB image registered with ``snf-manage
  image-register``;
- real Ganeti: a single-node Ganeti 3.0 cluster in a network namespace of
  its own (``snfd.testing.ganeti.RealGanetiCluster``, fake hypervisor, OS
  ``noop+default``), plugins identity, pithos, cyclades and ganeti-events
  (the job-queue watcher), the cluster added with ``snf-manage
  backend-add``, ``--real-servers`` (20) servers of the same flavor from a
  1 MiB image registered with ``snf-manage image-register``; the cluster's
  ipolicy vcpu-ratio is raised to 64 (at 4, its node takes only about six
  1-CPU instances).  Skipped, with
  the reason printed, when ``real_ganeti_unavailable()`` says so.

In each part the quotas are raised (``snf-manage resource-modify``) before
the user is made, ``--clients`` (8) threads with one keep-alive
``http.client`` connection each send ``POST /compute/v2.0/servers``, timing
every call, while one more thread polls ``GET
/compute/v2.0/servers/detail?changes-since=...`` every ``--poll`` (0.1) s
and stamps the moment each server is first seen ACTIVE.  When every server
is ACTIVE (or ERROR), the cluster's job files (``job-<id>`` in its queue
directory, Ganeti's own timestamps) give for each server the
``end_timestamp`` of its OP_INSTANCE_CREATE op (instance ``snf-<id>``).

Printed: create-call latency p50/p99 and calls/s; servers/s reaching
ACTIVE (count / (last first-seen-ACTIVE - first create sent)); update-path
lag, first seen ACTIVE minus the op's end_timestamp, p50/p99 (the poll
interval is its granularity: each figure is late by up to one poll);
Ganeti's own per-job time (job end - received) and the op's exec time
(end - exec_timestamp), p50/p99, and the jobs' completion rate (the most
the update path could show); the loopback floor, ``GET /_health`` req/s
with the same client count, measured in the same run; and the CPU time
per server of each process (the node, the simulator, PostgreSQL,
RabbitMQ, this load generator; from ``/proc``) from the first create to
the last server seen ACTIVE, which says where a create's cost goes.  The load
generator shares the machine's cores with the node (and the simulator or
Ganeti), so the figures are lower bounds.  Usage: ``python
bench/compute.py [--servers N] [--real-servers N] [--clients C]
[--poll S] [--exec-time S] [--no-real]``.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs

from snfd.ganeti_sim.tls import certificate_part
from snfd.testing.cloudnode import CloudNode, User
from snfd.testing.node import free_port
from snfd.testing.postgres import create_database, drop_database

UTC = datetime.UTC
SIM_QUEUE_DELAY = 0.05
VCPU_RATIO = 64
QUOTAS = (("cyclades.vm", "5000"), ("cyclades.total_cpu", "5000"), ("cyclades.cpu", "5000"),
          ("cyclades.total_ram", "4T"), ("cyclades.ram", "4T"), ("cyclades.disk", "8T"))


def say(text: str) -> None:
    """Progress, on stderr (the figures go to stdout)."""
    print(text, file=sys.stderr, flush=True)


# -- HTTP load ------------------------------------------------------------------------


class Client:
    """One keep-alive connection to the node, reopened after an error."""

    def __init__(self, url: str, token: str | None):
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.token = host, int(port), token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {"X-Auth-Token": self.token} if self.token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            raise

    def close(self) -> None:
        self.conn.close()


def health_rate(url: str, clients: int, seconds: float = 3.0) -> float:
    """``GET /_health`` per second with ``clients`` keep-alive threads."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        c = Client(url, None)
        try:
            while time.perf_counter() < stop:
                status, _ = c.call("GET", "/_health")
                if status != 200:
                    raise SystemExit(f"/_health answered {status}")
                counts[k] += 1
        finally:
            c.close()

    start = time.perf_counter()
    run_threads(clients, worker)
    return sum(counts) / (time.perf_counter() - start)


def run_threads(n: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            target(k)
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise SystemExit(f"a client failed: {errors[0]!r}")


@attrs.define
class Watch:
    """When each server was first seen ACTIVE (or ERROR), by the poller."""

    url: str
    token: str
    interval: float
    active: dict[int, float] = attrs.Factory(dict)
    failed: dict[int, str] = attrs.Factory(dict)
    polls: int = 0
    stopping: threading.Event = attrs.Factory(threading.Event)
    error: str | None = None

    def run(self) -> None:
        client = Client(self.url, self.token)
        since = time.time() - 5
        try:
            while not self.stopping.is_set():
                sent = time.time()
                stamp = datetime.datetime.fromtimestamp(since, UTC).isoformat()
                status, body = client.call(
                    "GET", f"/compute/v2.0/servers/detail?changes-since={quote(stamp)}")
                seen = time.time()
                self.polls += 1
                if status == 200:
                    for s in json.loads(body)["servers"]:
                        sid = int(s["id"])
                        if s["status"] == "ACTIVE":
                            self.active.setdefault(sid, seen)
                        elif s["status"] == "ERROR":
                            self.failed.setdefault(sid, s.get("fault", {}).get("message", ""))
                elif status != 304:
                    self.error = f"changes-since poll answered {status}: {body[:200]!r}"
                    return
                # The next poll overlaps this one by a second: a change
                # committed with an earlier timestamp is not missed.
                since = sent - 1.0
                self.stopping.wait(max(0.0, self.interval - (time.time() - sent)))
        except Exception as e:
            self.error = repr(e)
        finally:
            client.close()


@attrs.define
class Creates:
    """What the create phase measured."""

    latencies: list[float]
    sent: dict[int, float]          # server id -> wall time its create was sent
    first_sent: float
    last_answered: float


def create_servers(url: str, token: str, n: int, clients: int, flavor: int,
                   image: str) -> Creates:
    """``n`` ``POST /compute/v2.0/servers`` from ``clients`` threads."""
    counter = iter(range(n))
    lock = threading.Lock()
    latencies: list[float] = []
    sent: dict[int, float] = {}
    ends: list[float] = []

    def worker(k: int) -> None:
        c = Client(url, token)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = {"server": {"name": f"bench-{i}", "flavorRef": str(flavor),
                                   "imageRef": image}}
                wall = time.time()
                t = time.perf_counter()
                status, answer = c.call("POST", "/compute/v2.0/servers", body)
                latency = time.perf_counter() - t
                if status != 202:
                    raise SystemExit(f"create {i} answered {status}: {answer[:300]!r}")
                sid = int(json.loads(answer)["server"]["id"])
                with lock:
                    latencies.append(latency)
                    sent[sid] = wall
                    ends.append(time.time())
        finally:
            c.close()

    first = time.time()
    run_threads(clients, worker)
    return Creates(latencies, sent, first, max(ends))


# -- Ganeti's job files ---------------------------------------------------------------


def ts(value: Any) -> float | None:
    """A Ganeti ``[seconds, microseconds]`` timestamp as seconds."""
    if not value:
        return None
    return float(value[0]) + float(value[1]) / 1e6


@attrs.frozen
class CreateJob:
    received: float
    end: float          # the job's end
    op_exec: float      # the OP_INSTANCE_CREATE op's exec_timestamp
    op_end: float       # ... and its end_timestamp
    status: str
    error: str          # the op's result when it failed


def create_jobs(queue_dir: Path) -> dict[str, CreateJob]:
    """Instance name -> its (last) OP_INSTANCE_CREATE job, from the job files
    in ``queue_dir`` and its archive."""
    found: dict[str, CreateJob] = {}
    paths = [*queue_dir.glob("job-*"), *queue_dir.glob("archive/*/job-*")]
    for path in sorted(paths, key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else -1):
        if not path.name[4:].isdigit():
            continue
        try:
            job = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for op in job.get("ops", []):
            data = op.get("input", {})
            if data.get("OP_ID") != "OP_INSTANCE_CREATE":
                continue
            received, end = ts(job.get("received_timestamp")), ts(job.get("end_timestamp"))
            op_exec, op_end = ts(op.get("exec_timestamp")), ts(op.get("end_timestamp"))
            if None in (received, end, op_exec, op_end):
                continue
            assert received is not None and end is not None
            assert op_exec is not None and op_end is not None
            status = op.get("status", "")
            error = "" if status == "success" else json.dumps(op.get("result"))[:300]
            found[data["instance_name"]] = CreateJob(received, end, op_exec, op_end, status,
                                                     error)
    return found


# -- one part -------------------------------------------------------------------------


def quantiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99); with fewer than two values, that value twice."""
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def ms(pair: tuple[float, float]) -> str:
    return f"p50 {pair[0] * 1000:8.1f} ms   p99 {pair[1] * 1000:8.1f} ms"


def prepare(node: CloudNode) -> User:
    """Raise the cyclades quotas (new users' base projects), then make the user."""
    for resource, value in QUOTAS:
        node.manage("resource-modify", resource, "--base-default", value)
    return node.add_user("bench@example.org", "Bench")


def wait_for(what: str, timeout: float, probe: Callable[[], Any], node: CloudNode) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.2)
    raise SystemExit(f"no {what} after {timeout:.0f} s:\n{node.tail()}")


def cpu_seconds(roles: dict[str, Callable[[int, str], bool]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the live processes of
    each role, from ``/proc/<pid>/stat``; a role is a test on (pid, the
    process's command name)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(roles, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        for role, test in roles.items():
            if test(int(entry.name), comm):
                used[role] += (int(fields[11]) + int(fields[12])) / tick
                break
    return used


def process_roles(node: CloudNode, sim: CloudNode | None) -> dict[str, Callable[[int, str], bool]]:
    """The processes whose CPU a create costs: the node, the simulator in
    its own process, PostgreSQL, RabbitMQ and this load generator."""
    def pid_of(cloud: CloudNode | None) -> int | None:
        proc = cloud.process.proc if cloud is not None else None
        return proc.pid if proc is not None else None

    node_pid, sim_pid, me = pid_of(node), pid_of(sim), os.getpid()
    roles: dict[str, Callable[[int, str], bool]] = {
        "node": lambda pid, comm: pid == node_pid}
    if sim_pid is not None:
        roles["simulator"] = lambda pid, comm: pid == sim_pid
    roles["PostgreSQL"] = lambda pid, comm: comm == "postgres"
    roles["RabbitMQ"] = lambda pid, comm: comm in ("beam.smp", "erl_child_setup", "epmd")
    roles["load generator"] = lambda pid, comm: pid == me
    return roles


def measure(title: str, node: CloudNode, user: User, queue_dir: Path, n: int, clients: int,
            poll: float, flavor: int, image: str, timeout: float,
            sim: CloudNode | None = None) -> None:
    """Create ``n`` servers, follow them to ACTIVE, and print the figures."""
    say(f"{title}: HTTP floor ...")
    floor = health_rate(node.url, clients)
    say(f"{title}: creating {n} servers with {clients} clients ...")
    roles = process_roles(node, sim)
    cpu_before, wall_before = cpu_seconds(roles), time.monotonic()
    watch = Watch(node.url, user.token, poll)
    poller = threading.Thread(target=watch.run)
    poller.start()
    try:
        creates = create_servers(node.url, user.token, n, clients, flavor, image)
        say(f"{title}: waiting for ACTIVE ...")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and watch.error is None:
            done = set(watch.active) | set(watch.failed)
            if done >= set(creates.sent):
                break
            time.sleep(0.2)
    finally:
        watch.stopping.set()
        poller.join()
    cpu_after, wall = cpu_seconds(roles), time.monotonic() - wall_before
    if watch.error:
        raise SystemExit(f"the poller failed: {watch.error}")
    ids = set(creates.sent)
    active = {i: t for i, t in watch.active.items() if i in ids}
    jobs = create_jobs(queue_dir)
    lags, per_job, execs, job_ends = [], [], [], []
    for sid in ids:
        job = jobs.get(f"snf-{sid}")
        if job is None:
            continue
        per_job.append(job.end - job.received)
        execs.append(job.op_end - job.op_exec)
        job_ends.append(job.op_end)
        if sid in active:
            lags.append(active[sid] - job.op_end)

    span = creates.last_answered - creates.first_sent
    print(f"\n== {title}")
    print(f"{len(ids)} servers created, {len(active)} seen ACTIVE, {len(watch.failed)} ERROR,"
          f" {len(ids) - len(active) - len(watch.failed)} neither after the wait;"
          f" {len(jobs)} create jobs found in {queue_dir}")
    print(f"HTTP floor: GET /_health {floor:8.0f} req/s with {clients} keep-alive clients"
          " (same run)")
    print(f"create call (POST /servers, {clients} clients): {ms(quantiles(creates.latencies))}"
          f"   {len(creates.latencies) / span:6.1f} calls/s"
          f" ({len(creates.latencies) / span / floor:.1%} of the floor)")
    if active:
        reach = max(active.values()) - creates.first_sent
        print(f"servers reaching ACTIVE: {len(active) / reach:6.2f} servers/s"
              f" ({len(active)} in {reach:.1f} s from the first create sent)")
    if job_ends:
        ganeti_rate = len(job_ends) / (max(job_ends) - creates.first_sent)
        print(f"Ganeti create jobs done: {ganeti_rate:6.2f} jobs/s (op end of the last job,"
              " from the first create sent): the most the API could show")
    if lags:
        print(f"update-path lag, job op end -> API shows ACTIVE: {ms(quantiles(lags))}"
              f"   (n={len(lags)}; polled every {poll:.2f} s, {watch.polls} polls:"
              f" each figure is late by up to one poll)")
    if per_job:
        print(f"Ganeti per-job time (end - received):            {ms(quantiles(per_job))}")
        print(f"Ganeti create op exec time (end - exec start):   {ms(quantiles(execs))}")
    spent = {role: cpu_after[role] - cpu_before[role] for role in roles}
    print(f"CPU per server, creates and the update path to ACTIVE ({wall:.1f} s,"
          f" {os.cpu_count()} cores, {sum(spent.values()) / wall:.0%} of one core busy):"
          + "".join(f"\n  {role:15s} {seconds / len(ids) * 1000:7.2f} ms"
                    f"  ({seconds / wall:4.0%} of a core)" for role, seconds in spent.items())
          + f"\n  {'total':15s} {sum(spent.values()) / len(ids) * 1000:7.2f} ms")
    for sid, message in sorted(watch.failed.items())[:3]:
        job = jobs.get(f"snf-{sid}")
        detail = f"job {job.status}: {job.error}" if job else "no create job"
        print(f"  server {sid} ERROR: {message[:200]} ({detail})")


# -- the two parts --------------------------------------------------------------------


def simulator_part(root: Path, bus: dict[str, str], args: argparse.Namespace) -> None:
    exec_time = args.exec_time
    # 64 CPUs a node: at Ganeti's default vcpu-ratio of 4, room for 1,024 1-CPU servers.
    sim_config = (f"[ganeti-sim]\nnodes = 4\nnode_memory = 65536\nnode_cpus = 64\n"
                  f"queue_delay = {SIM_QUEUE_DELAY}\nexec_time = {exec_time}\n")
    made_dbs = [create_database("snfd_bench")]
    sim: CloudNode | None = None
    if bus:
        # The simulator in a process of its own (as in bench/faults.py): its
        # work -- rewriting its whole state file on every op, as Ganeti
        # rewrites config.data -- is then not on the node's reactor.
        made_dbs.append(create_database("snfd_bench_sim"))
        sim_port = free_port()
        sim = CloudNode(made_dbs[1][2], root / "sim", "ganeti-sim",
                        sim_config + f"port = {sim_port}\n", bus)
        node = CloudNode(made_dbs[0][2], root / "node", "identity,pithos,cyclades", "", bus)
        where = "its own process"
    else:
        node = CloudNode(made_dbs[0][2], root / "sim", "identity,pithos,cyclades,ganeti-sim",
                         sim_config, bus)
        where = "the node's process (no RabbitMQ to carry its events)"
    queue = root / "sim" / "ganeti-sim" / "queue"
    try:
        if sim is not None:
            say("simulator: starting the simulated Ganeti ...")
            sim.start()
        say("simulator: starting the node ...")
        node.start(ready_path="/compute/v2.0/flavors")
        if sim is not None:
            pem = root / "rapi.pem"
            wait_for("the simulator's certificate", 60,
                     lambda: (root / "sim" / "ganeti-sim" / "rapi.pem").exists(), sim)
            pem.write_text(certificate_part((root / "sim" / "ganeti-sim" / "rapi.pem")
                                            .read_bytes()))
            node.manage("backend-add", "sim.ganeti.test", "--url",
                        f"https://127.0.0.1:{sim_port}", "--username", "synnefo",
                        "--password", "synnefopass", "--certificate", str(pem),
                        "--events", "watch")
        user = prepare(node)
        made = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128", "--disk",
                                      "1", "--disk-template", "file", "--json"))
        flavor = int(made[0]["id"])
        disk = root / "bench-image.diskdump"
        disk.write_bytes(os.urandom(1 << 20))
        image = str(json.loads(node.manage("image-register", str(disk), "--name", "Bench image",
                                           "--property", "OS=linux", "--json"))["id"])
        measure(f"simulator: {args.servers} servers (ganeti-sim in {where}, 4 nodes x 64 GiB x"
                f" 64 CPUs, queue_delay {SIM_QUEUE_DELAY} s, exec_time {exec_time} s per step;"
                " a create holds the node-allocation lock, so creates run one at a time as on"
                " Ganeti)", node, user, queue, args.servers, args.clients, args.poll, flavor,
                image, timeout=900, sim=sim)
    finally:
        node.stop()
        if sim is not None:
            sim.stop()
        for admin, dbname, _ in made_dbs:
            drop_database(admin, dbname)


def real_part(root: Path, bus: dict[str, str], args: argparse.Namespace) -> None:
    from snfd.testing.ganeti import RealGanetiCluster, real_ganeti_unavailable

    why = real_ganeti_unavailable()
    if why is not None:
        print(f"\n== real Ganeti: skipped: {why}")
        return
    say("real Ganeti: bringing a cluster up ...")
    cluster = RealGanetiCluster(None)
    cluster.up()
    admin = dbname = None
    node = None
    try:
        # The node has the machine's few CPUs; at the default vcpu-ratio of 4 it
        # takes only a handful of 1-CPU instances (hail-single: FailCPU).
        subprocess.run([str(cluster.base / "ns" / "gx"), "gnt-cluster", "modify",
                        f"--ipolicy-vcpu-ratio={VCPU_RATIO}"], check=True, capture_output=True,
                       timeout=120)
        pem = root / "rapi.pem"
        pem.write_text(cluster.certificate)
        admin, dbname, dsn = create_database("snfd_bench")
        config = (f"[cyclades]\nos = noop+default\n"
                  f"[ganeti-events]\nqueue_dir = {cluster.queue_dir}\ncluster = {cluster.name}\n"
                  f"rapi_url = {cluster.url}\nrapi_username = {cluster.username}\n"
                  f"rapi_password = {cluster.password}\nrapi_certificate = {pem}\n")
        node = CloudNode(dsn, root / "real", "identity,pithos,cyclades,ganeti-events", config,
                         bus)
        say("real Ganeti: starting the node ...")
        node.start(ready_path="/compute/v2.0/flavors")
        # backend-add asks the cluster for its templates and statistics.
        node.manage("backend-add", cluster.name, "--url", cluster.url, "--username",
                    cluster.username, "--password", cluster.password, "--certificate",
                    str(pem), "--events", "watch")
        user = prepare(node)
        made = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128", "--disk",
                                      "1", "--disk-template", "file", "--json"))
        flavor = int(made[0]["id"])
        disk = root / "bench-image.diskdump"
        disk.write_bytes(os.urandom(1 << 20))
        registered = json.loads(node.manage("image-register", str(disk), "--name",
                                            "Bench image", "--property", "OS=linux", "--json"))
        image = str(registered["id"])
        measure(f"real Ganeti: {args.real_servers} servers ({cluster.name}, one node, fake"
                f" hypervisor, noop OS, file disks, ipolicy vcpu-ratio {VCPU_RATIO})",
                node, user, cluster.queue_dir, args.real_servers, args.clients, args.poll,
                flavor, image, timeout=600)
    finally:
        if node is not None:
            node.stop()
        cluster.down()
        if admin is not None and dbname is not None:
            drop_database(admin, dbname)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--real-servers", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--exec-time", type=float, default=0.01,
                        help="the simulator's seconds per step of an op (a create has ~8)")
    parser.add_argument("--no-real", action="store_true", help="skip the real Ganeti part")
    args = parser.parse_args()

    from twisted.trial.unittest import SkipTest

    from snfd.testing.rabbitmq import PrivateRabbit

    root = Path(tempfile.mkdtemp(prefix="snfd-bench-compute-"))
    rabbit: PrivateRabbit | None = None
    bus: dict[str, str] = {}
    try:
        try:
            rabbit = PrivateRabbit()
            say("starting a private RabbitMQ ...")
            rabbit.start()
            bus = {"SNFD_BUS_URL": rabbit.url}
            bus_kind = f"a private RabbitMQ ({rabbit.url.split('@')[-1]})"
        except (SkipTest, RuntimeError) as e:
            if rabbit is not None:
                rabbit.stop()
            rabbit = None
            bus_kind = f"the in-process bus (no RabbitMQ: {str(e).splitlines()[0]})"
        print(f"machine: {os.cpu_count()} cores; bus: {bus_kind}; the load generator, the"
              " node and the cluster share the machine")
        simulator_part(root, bus, args)
        if not args.no_real:
            real_part(root, bus, args)
    finally:
        if rabbit is not None:
            rabbit.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
