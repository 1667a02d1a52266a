"""Scale-out: one to three capped ``twistd snfd`` nodes behind haproxy, and
faults under load on three.

What it brings up (``bench/cluster_parts.py``), all on 127.0.0.1 with free
ports inside a network namespace of its own (``snfd-bench-<pid>``, only
``lo``; the run re-executes itself there with ``nsenter --net``, which
leaves the mounts, and so the cgroups, as they are; the namespace is
deleted at the end), so nothing of it can reach or be reached from the
machine's own services; loopback is all the traffic there is:

- PostgreSQL: a private primary and a streaming standby made
  synchronous (``synchronous_standby_names`` set after the base backup);
  the nodes' database URL names both (``target_session_attrs=read-write``).
  Both run with ``fsync = off`` (the harness's choice): commits cost less
  than on a durable server;
- RabbitMQ: a 3-node cluster; the nodes name all three brokers in
  ``[bus] url`` with ``queue_type = quorum``;
- Ceph: one monitor and ``--osds`` OSDs (3; a single host), pool
  ``snfd-blocks`` with a copy of each block on every OSD, 3 at most (with
  several OSDs: a killed one is marked down after a 6 s heartbeat grace,
  ``cluster_parts.OSD_HEARTBEAT``); the nodes' block store is ``rados``;
- the simulated Ganeti: one ``twistd snfd`` of its own (plugin
  ``ganeti-sim``, 8 nodes of 64 GiB / 64 CPUs, its own database on the same
  PostgreSQL, events over the RabbitMQ cluster), shared by every node as
  one backend (``snf-manage backend-add``), as ``bench/faults.py`` does;
- up to three nodes (identity, pithos, cyclades; ``[node] drain_grace =
  2``) behind haproxy 2.6 (leastconn, ``option httpchk GET /_health``,
  ``inter 500ms fall 2 rise 2``, ``retries 3``, ``option redispatch``,
  ``retry-on conn-failure empty-response response-timeout`` but no retry
  of a POST that reached a node (``disable-l7-retry if METH_POST``),
  ``timeout server 10s``, no ``shutdown-sessions``).

CPU: each node in a cgroup v1 ``cpu`` group of its own
(``/sys/fs/cgroup/cpu/snfd-bench/nodeN``, ``cfs_period_us`` 10000,
``cfs_quota_us`` ``--cpu`` x 10000), moved there once it answers (its
start-up is not capped); PostgreSQL, RabbitMQ, Ceph, haproxy, the simulator
and this load generator get uncapped groups of their own; ``cpuacct.usage``
of each group gives its CPU.  Without cgroup v1 ``cpu`` the run is
uncapped and says so.  The groups are removed at the end.

Part 1, scaling: 1, 2, then 3 nodes (exactly that many running: the
others stopped), ``--rounds`` (3) times, interleaved so that other jobs on
a shared machine weigh on every size alike; each table row is the round
with the median total.  ``--per-node-clients`` (4) threads per node,
each with one keep-alive ``http.client`` connection to haproxy, loop
over a mix: PUT of
a new 4 KiB object into one of 12 containers (35 %), GET of an
acknowledged object, checked byte for byte (40 %), token validation
(``GET /identity/v3/auth/tokens`` with ``X-Subject-Token``, 22 %), server
create on the simulator (3 %).  After ``--warmup`` s, ``--seconds`` s are
measured.  Printed per step: requests/s per kind and in total, the ratio to
one node (the goal: 3 nodes >= 2.7x one node at the same CPU share),
p50/p99 latency, and CPU ms per request: of each node (its CPU over the
responses haproxy counted from it), how much of its quota it used and
how often it was throttled, and of each other component (over all
requests); beside them what bounds the step: the machine's cores and how
busy they were (``/proc/stat``, other jobs included).

Part 2, faults under load on three nodes: the same mix plus
``--rmw-clients`` (3) threads doing If-Match read-modify-write on 4
counter objects (each update appends a unique tag).  For each fault:
``--before`` s of load, the fault and its repair, load until every node is
healthy, ``--after`` s more; then the load stops and the invariants are
checked: every acknowledged PUT is listed with its size and ETag and a
sample of 100 reads back byte for byte (objects whose PUT got no 201 are
absent or whole); each counter holds every acknowledged update exactly
once (a 412 or 409 is a refused update; the final value is the
acknowledged updates plus those applied whose answer was lost: a
transport error, or a refusal of a retry haproxy sent after the first
attempt was applied); the account's
``X-Account-Bytes-Used`` equals the sum of its listings and the
``pithos.diskspace`` usage of ``GET /account/v1.0/quotas``, with nothing
pending; every server create that got a 202 made exactly one server, one
that got none at most one, and ``cyclades.vm`` usage counts them, with
nothing pending (waited for up to ``SETTLE_WAIT``).
Faults: none (the floor), the leader SIGKILLed (started again after
``--down`` s), the leader SIGSTOPped (SIGCONT after ``--frozen`` s), a
rolling SIGTERM restart of all three nodes (each started again and UP in
haproxy before the next), a RabbitMQ broker (the one the nodes use)
SIGKILLed and restarted after ``--down`` s, the PostgreSQL primary SIGKILLed
and the standby promoted 1 s later (afterwards there is no standby), and
with ``--osds`` 3 or more a Ceph OSD SIGKILLed and started again after
``--down`` s (repaired once every PG is active+clean). Printed: errors seen
by clients (haproxy's own answers marked as such: "no server UP" when it had
taken every node out), the longest time without any successful request and
the longest for one kind (server creates left out: at 3 % of the mix their
gaps are their pace), the latency of every request (p50, p99, max), repair
time, haproxy's retries and redispatches, the invariants, and the first
answer of each kind of failure.

A benchmark, never a pass/fail test: the exit status is 0 when it ran.
Run as root: ``.venv/bin/python bench/cluster.py [--seconds N]
[--per-node-clients N] [--cpu 0.2] [--quick]``; ``--quick`` shortens every
duration (a smoke run of the whole thing).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
from cluster_parts import (  # bench/cluster_parts.py
    OSD_HEARTBEAT,
    POOL,
    Cloud,
    CpuGroups,
    Haproxy,
    healthy,
    say,
    wait,
    with_descendants,
)

from snfd.testing.cloudnode import User

SIZE = 4096
CONTAINERS = [f"c{i:02d}" for i in range(12)]
COUNTERS = [f"counter-{i}" for i in range(4)]
COUNTER_BOX = "counters"
MIX = (("PUT", 0.35), ("GET", 0.40), ("token", 0.22), ("create", 0.03))
KIND_LABEL = {"PUT": "PUT 4 KiB", "GET": "GET 4 KiB", "token": "token check",
              "create": "server create", "total": "total"}
OTHERS = ("postgres", "rabbitmq", "ceph", "haproxy", "simulator", "loadgen")
TIMEOUT = 30.0


def body_for(name: str) -> bytes:
    """The 4 KiB an object holds: derived from its name, so a read can be
    checked without remembering it, and unique (no two share a block)."""
    return hashlib.sha256(name.encode()).digest() * (SIZE // 32)


def quantiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99) in ms; nan when there is nothing to rank."""
    if not values:
        return float("nan"), float("nan")
    if len(values) == 1:
        return values[0] * 1000, values[0] * 1000
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


def status_of(status: int, body: bytes) -> str:
    """The status as the tables show it; haproxy's own answers (its HTML
    error pages: no server UP, or every retry failed) say so."""
    if body.startswith(b"<html><body><h1>"):
        if b"No server is available" in body:
            return f"{status} (haproxy: no server UP)"
        return f"{status} (haproxy)"
    return str(status)


# -- the clients ------------------------------------------------------------------------


class Client:
    """One keep-alive connection to haproxy, reopened after any error."""

    def __init__(self, url: str):
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def call(self, method: str, path: str, headers: dict[str, str],
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        got = {k.lower(): v for k, v in resp.getheaders()}
        if got.get("connection", "").lower() == "close":
            self.conn.close()
        return resp.status, got, data

    def close(self) -> None:
        self.conn.close()


@attrs.frozen
class Outcome:
    kind: str
    start: float
    end: float
    ok: bool
    what: str           # "ok", the status, or the exception's name
    label: str = ""     # the step or fault it was sent in


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        #: the first answer of each failure (kind and status): what it said
        self.said: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, outcome: Outcome, body: bytes = b"") -> None:
        with self._lock:
            self.outcomes.append(outcome)
            if not outcome.ok:
                key = f"{outcome.kind} {outcome.what}"
                self.said.setdefault(key, body[:160].decode("utf-8", "replace"))

    def between(self, t0: float, t1: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if t0 <= o.end <= t1]


@attrs.define
class Ledger:
    """What the clients were told."""

    acked: dict[str, str] = attrs.Factory(dict)       # "container/name" -> ETag
    names: list[str] = attrs.Factory(list)            # acked, for picking GETs
    unanswered: set[str] = attrs.Factory(set)         # PUTs that got no 201
    corrupt: list[str] = attrs.Factory(list)          # wrong reads seen under load
    counted: dict[str, set[str]] = attrs.Factory(dict)   # counter -> acked tags
    unsure: dict[str, set[str]] = attrs.Factory(dict)    # counter -> tags not acked
    applied: dict[str, set[str]] = attrs.Factory(dict)   # ... and found applied later
    created: set[str] = attrs.Factory(set)            # server names whose create got a 202
    uncreated: set[str] = attrs.Factory(set)          # ... and those that got no 202
    lock: threading.Lock = attrs.Factory(threading.Lock)


@attrs.frozen
class Account:
    user: User
    tokens: list[str]
    flavor: str | None
    image: str | None

    def path(self, container: str, name: str = "") -> str:
        p = f"/object-store/v1/{self.user.uuid}/{quote(container)}"
        return f"{p}/{quote(name)}" if name else p


class Load:
    """Client threads through haproxy: ``mix`` threads of the mixed load and
    ``rmw`` threads of counter updates, until ``stop``."""

    def __init__(self, url: str, account: Account, ledger: Ledger, recorder: Recorder):
        self.url = url
        self.account = account
        self.ledger = ledger
        self.recorder = recorder
        self.label = "load"
        self.starts = 0
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        kinds = [k for k, _ in MIX if k != "create" or account.flavor is not None]
        self.kinds = kinds
        self.weights = [w for k, w in MIX if k in kinds]

    def start(self, mix: int, rmw: int = 0) -> None:
        self.stopping.clear()
        self.starts += 1  # names and tags are unique to this start
        self.threads = [threading.Thread(target=self._guard, args=(self._mix, k), daemon=True)
                        for k in range(mix)]
        self.threads += [threading.Thread(target=self._guard, args=(self._rmw, k),
                                          daemon=True) for k in range(rmw)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()
        self.threads = []
        if self.errors:
            raise RuntimeError(f"a load thread failed: {self.errors[0]}")

    def _guard(self, work: Callable[[int], None], k: int) -> None:
        try:
            work(k)
        except Exception as e:  # a bug of the harness, not a fault of the cloud
            self.errors.append(repr(e))

    def _timed(self, client: Client, kind: str, method: str, path: str,
               headers: dict[str, str], body: bytes | None, good: set[int],
               ) -> tuple[int, dict[str, str], bytes] | None:
        start = time.monotonic()
        try:
            got = client.call(method, path, headers, body)
        except Exception as e:
            self.recorder.add(Outcome(kind, start, time.monotonic(), False, type(e).__name__,
                                      self.label))
            return None
        self.recorder.add(Outcome(kind, start, time.monotonic(), got[0] in good,
                                  status_of(got[0], got[2]), self.label), got[2])
        return got

    def _mix(self, k: int) -> None:
        client = Client(self.url)
        rng = random.Random(f"{self.label}-{k}")
        auth = {"X-Auth-Token": self.account.user.token}
        ledger = self.ledger
        serial = 0
        while not self.stopping.is_set():
            kind = rng.choices(self.kinds, self.weights)[0]
            if kind == "PUT":
                serial += 1
                container = CONTAINERS[(k + serial) % len(CONTAINERS)]
                key = f"{container}/{self.label}.{self.starts}-{k}-{serial}"
                with ledger.lock:
                    ledger.unanswered.add(key)
                got = self._timed(client, "PUT", "PUT", self.account.path(*key.split("/", 1)),
                                  {**auth, "Content-Type": "application/octet-stream"},
                                  body_for(key), {201})
                if got is not None and got[0] == 201:
                    with ledger.lock:
                        ledger.unanswered.discard(key)
                        ledger.acked[key] = got[1].get("etag", "").strip('"')
                        ledger.names.append(key)
            elif kind == "GET":
                with ledger.lock:
                    key = rng.choice(ledger.names)
                start = time.monotonic()
                try:
                    status, _, data = client.call("GET", self.account.path(*key.split("/", 1)),
                                                  auth)
                except Exception as e:
                    self.recorder.add(Outcome("GET", start, time.monotonic(), False,
                                              type(e).__name__, self.label))
                    continue
                right = status == 200 and data == body_for(key)
                self.recorder.add(Outcome("GET", start, time.monotonic(), right,
                                          status_of(status, data) if status != 200 or right
                                          else "wrong bytes", self.label), data)
                if status in (200, 404) and not right:
                    with ledger.lock:
                        ledger.corrupt.append(f"GET {key}: {status}, {len(data)} bytes")
            elif kind == "token":
                self._timed(client, "token", "GET", "/identity/v3/auth/tokens",
                            {**auth, "X-Subject-Token": rng.choice(self.account.tokens)},
                            None, {200})
            else:
                serial += 1
                name = f"{self.label}.{self.starts}-{k}-{serial}"
                body = json.dumps({"server": {"name": name, "flavorRef": self.account.flavor,
                                              "imageRef": self.account.image}}).encode()
                with ledger.lock:
                    ledger.uncreated.add(name)
                got = self._timed(client, "create", "POST", "/compute/v2.0/servers",
                                  {**auth, "Content-Type": "application/json"}, body, {202})
                if got is not None and got[0] == 202:
                    with ledger.lock:
                        ledger.uncreated.discard(name)
                        ledger.created.add(name)
        client.close()

    def _rmw(self, k: int) -> None:
        """Read a counter, append a tag, write it back If-Match its ETag."""
        client = Client(self.url)
        rng = random.Random(f"rmw-{self.label}-{k}")
        auth = {"X-Auth-Token": self.account.user.token}
        ledger = self.ledger
        serial = 0
        while not self.stopping.is_set():
            name = rng.choice(COUNTERS)
            path = self.account.path(COUNTER_BOX, name)
            got = self._timed(client, "counter read", "GET", path, auth, None, {200})
            if got is None or got[0] != 200:
                time.sleep(0.05)
                continue
            serial += 1
            tag = f"{self.label}.{self.starts}.{k}.{serial}"
            with ledger.lock:
                ledger.unsure[name].add(tag)
            put = self._timed(client, "counter update", "PUT", path,
                              {**auth, "If-Match": got[1].get("etag", ""),
                               "Content-Type": "text/plain"},
                              got[2] + tag.encode() + b"\n", {201, 409, 412})
            if put is not None and put[0] == 201:
                with ledger.lock:
                    ledger.unsure[name].discard(tag)
                    ledger.counted[name].add(tag)
        client.close()


# -- part 1: scaling ----------------------------------------------------------------------


@attrs.frozen
class Snapshot:
    t: float
    cpu: dict[str, float]
    throttle: dict[str, tuple[int, int]]
    answered: dict[str, int]
    machine: tuple[float, float]


def snapshot(groups: CpuGroups, haproxy: Haproxy) -> Snapshot:
    return Snapshot(time.monotonic(), groups.usage(), groups.throttling(), haproxy.answered(),
                    machine_busy())


@attrs.frozen
class Step:
    nodes: int
    threads: int
    seconds: float
    rates: dict[str, float]                       # kind -> successes/s ("total" too)
    latency: dict[str, tuple[float, float]]       # kind -> (p50, p99) ms
    errors: collections.Counter[str]
    node_ms: dict[str, float]                     # node -> CPU ms per its response
    node_quota: dict[str, float]                  # node -> share of its quota used
    node_throttled: dict[str, float]              # node -> share of periods throttled
    node_answered: dict[str, int]
    other_ms: dict[str, float]                    # component -> CPU ms per request
    machine_cores: float                          # cores busy on the whole machine
    ours_cores: float                             # ... of them, our groups


def use_nodes(cloud: Cloud, n: int) -> None:
    """Exactly the first ``n`` nodes running (the others stopped with SIGTERM:
    an idle node still spends CPU on heartbeats and elections)."""
    for i, node in enumerate(cloud.nodes):
        running = node in cloud.running()
        if i < n and not running:
            say(f"starting node {i + 1} ...")
            cloud.start_node(i)
        elif i >= n and running:
            say(f"stopping node {i + 1} ...")
            node.process.stop()


def measure_step(cloud: Cloud, haproxy: Haproxy, groups: CpuGroups, load: Load, n: int,
                 args: argparse.Namespace) -> Step:
    use_nodes(cloud, n)
    haproxy.start({f"n{i + 1}": cloud.nodes[i].process.port for i in range(n)})
    groups.adopt("haproxy", with_descendants([haproxy.proc.pid] if haproxy.proc else []))
    threads = args.per_node_clients * n
    say(f"{n} node(s): {threads} client threads, {args.warmup:.0f} s warm-up,"
        f" {args.seconds:.0f} s measured ...")
    load.label = f"scale{n}"
    load.start(threads)
    try:
        time.sleep(args.warmup)
        s0 = snapshot(groups, haproxy)
        time.sleep(args.seconds)
        s1 = snapshot(groups, haproxy)
    finally:
        load.stop()
    wall = s1.t - s0.t
    window = load.recorder.between(s0.t, s1.t)
    rates, latency = {}, {}
    for kind in [*load.kinds, "total"]:
        mine = [o for o in window if o.ok and (kind == "total" or o.kind == kind)]
        rates[kind] = len(mine) / wall
        latency[kind] = quantiles([o.end - o.start for o in mine])
    errors = collections.Counter(f"{o.kind} {o.what}" for o in window if not o.ok)
    used = {g: s1.cpu[g] - s0.cpu[g] for g in s1.cpu}
    node_ms, quota, throttled, answered = {}, {}, {}, {}
    for i in range(n):
        name, group = f"n{i + 1}", f"node{i + 1}"
        answered[name] = s1.answered.get(name, 0) - s0.answered.get(name, 0)
        if group in used:
            node_ms[name] = used[group] * 1000 / max(answered[name], 1)
            quota[name] = used[group] / (wall * groups.quota.get(group, 1.0))
            periods = s1.throttle[group][0] - s0.throttle[group][0]
            throttled[name] = (s1.throttle[group][1] - s0.throttle[group][1]) / max(periods, 1)
    requests = max(len(window), 1)
    other = {g: used[g] * 1000 / requests for g in OTHERS if g in used}
    machine = (s1.machine[0] - s0.machine[0]) / wall
    return Step(n, threads, wall, rates, latency, errors, node_ms, quota, throttled, answered,
                other, machine, sum(used.values()) / wall)


def median_step(steps: list[Step]) -> Step:
    """The round whose total throughput is the median (shown whole, so its
    figures belong together)."""
    return sorted(steps, key=lambda s: s.rates["total"])[len(steps) // 2]


def scaling_report(rounds: dict[int, list[Step]], kinds: list[str],
                   args: argparse.Namespace, groups: CpuGroups) -> None:
    cores = os.cpu_count() or 1
    steps = [median_step(rounds[n]) for n in sorted(rounds)]
    one = steps[0]
    capped = (f"each node capped at {args.cpu} CPU (cgroup v1 cfs_quota_us"
              f" {round(args.cpu * 10000)} per 10000 us period)" if groups.available
              else f"UNCAPPED: {groups.why_not}")
    print(f"\n== scaling: {capped}; {args.per_node_clients} client threads per node through"
          f" haproxy; {args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up;"
          f" {args.rounds} round(s) of 1, 2, 3 nodes, each row the round with the median"
          " total\n")
    head = ["nodes", "threads", *(KIND_LABEL[k] + " /s" for k in kinds), "total /s",
            "vs 1 node (total)", "vs 1 node (per kind)", "errors"]
    rows = []
    for s in steps:
        per_kind = " / ".join(f"{s.rates[k] / one.rates[k]:.2f}" if one.rates[k] else "-"
                              for k in kinds)
        rows.append([str(s.nodes), str(s.threads), *(f"{s.rates[k]:.1f}" for k in kinds),
                     f"{s.rates['total']:.1f}", f"x{s.rates['total'] / one.rates['total']:.2f}",
                     per_kind, ", ".join(f"{k} x{v}" for k, v in sorted(s.errors.items()))
                     or "none"])
    table(head, rows)
    if len(steps) == 3:
        ratio = steps[-1].rates["total"] / one.rates["total"]
        each = ", ".join(f"x{three.rates['total'] / single.rates['total']:.2f}"
                         for single, three in zip(rounds[1], rounds[3], strict=True))
        print(f"\ngoal: 3 nodes >= 2.7x one node at the same CPU share; measured x{ratio:.2f}"
              f" (medians; {'met' if ratio >= 2.7 else 'NOT met'}); round by round: {each}")
    print("\nlatency through haproxy, p50 / p99 ms\n")
    table(["nodes", *(KIND_LABEL[k] for k in [*kinds, "total"])],
          [[str(s.nodes), *(f"{s.latency[k][0]:.0f} / {s.latency[k][1]:.0f}"
                            for k in [*kinds, "total"])] for s in steps])
    if not groups.available:
        return
    print("\nCPU ms per request: each node over the responses haproxy counted from it"
          " (quota used, periods throttled); the other parts over all requests\n")
    table(["nodes", "node1", "node2", "node3", *OTHERS, "cores busy: ours / machine"],
          [[str(s.nodes),
            *(f"{s.node_ms[n]:.2f} ({s.node_quota[n]:.0%} q, {s.node_throttled[n]:.0%} thr)"
              if n in s.node_ms else "-" for n in ("n1", "n2", "n3")),
            *(f"{s.other_ms[g]:.2f}" if s.other_ms.get(g) else "-" for g in OTHERS),
            f"{s.ours_cores:.2f} / {s.machine_cores:.2f} of {cores}"] for s in steps])
    for s in steps:
        spent = sum(ms * s.node_answered[n] for n, ms in s.node_ms.items())
        per_request = spent / max(sum(s.node_answered.values()), 1)
        bound = args.cpu * s.nodes * 1000 / per_request if per_request else float("nan")
        print(f"- {s.nodes} node(s): at the measured node CPU per request the quota allows"
              f" {bound:.0f} req/s (measured {s.rates['total']:.0f}); the machine's"
              f" {cores} cores were {s.machine_cores / cores:.0%} busy"
              f" ({(s.machine_cores - s.ours_cores) / cores:.0%} outside our groups: other"
              " jobs, the kernel)")
        stack = sum(s.node_ms[n] * s.node_answered[n] for n in s.node_ms) / max(
            sum(s.node_answered.values()), 1) + sum(s.other_ms.values())
        print(f"  the whole stack spent {stack:.1f} CPU ms per request: {cores} cores could"
              f" serve at most {cores * 1000 / stack:.0f} req/s of this mix; PostgreSQL alone,"
              f" on one core, {1000 / s.other_ms['postgres']:.0f} req/s")


def table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


# -- part 2: faults -----------------------------------------------------------------------


@attrs.define
class Ctx:
    cloud: Cloud
    haproxy: Haproxy
    args: argparse.Namespace


@attrs.frozen
class Fault:
    name: str
    describe: str
    run: Callable[[Ctx], tuple[float, str]]     # -> (repair seconds, a note)


def down_after(ctx: Ctx, i: int, t0: float) -> str:
    """How long haproxy took to mark node ``i`` DOWN (polled)."""
    try:
        wait("haproxy to mark the node DOWN", 15,
             lambda: ctx.haproxy.status(f"n{i + 1}").startswith("DOWN"), step=0.05)
    except RuntimeError:
        return "haproxy never marked it DOWN"
    return f"haproxy DOWN after {time.monotonic() - t0:.2f} s"


def kill_leader(ctx: Ctx) -> tuple[float, str]:
    i = ctx.cloud.leader()
    node = ctx.cloud.nodes[i]
    t0 = time.monotonic()
    node.process.signal(signal.SIGKILL)
    assert node.process.proc is not None
    node.process.proc.wait(10)
    note = down_after(ctx, i, t0)
    time.sleep(max(0.0, ctx.args.down - (time.monotonic() - t0)))
    ctx.cloud.start_node(i)
    return time.monotonic() - t0, f"node {i + 1} (the leader); {note}"


def stop_leader(ctx: Ctx) -> tuple[float, str]:
    i = ctx.cloud.leader()
    node = ctx.cloud.nodes[i]
    t0 = time.monotonic()
    node.process.signal(signal.SIGSTOP)
    try:
        note = down_after(ctx, i, t0)
        time.sleep(max(0.0, ctx.args.frozen - (time.monotonic() - t0)))
    finally:
        node.process.signal(signal.SIGCONT)
    wait("the frozen node to answer again", 60, lambda: healthy(node.url))
    return time.monotonic() - t0, f"node {i + 1} (the leader); {note}"


def rolling_restart(ctx: Ctx) -> tuple[float, str]:
    t0 = time.monotonic()
    exits = []
    for i, node in enumerate(ctx.cloud.nodes):
        t = time.monotonic()
        node.process.stop(timeout=60)   # SIGTERM: drains, then exits
        exits.append(time.monotonic() - t)
        ctx.cloud.start_node(i)
        wait(f"haproxy to mark n{i + 1} UP", 30,
             lambda i=i: ctx.haproxy.status(f"n{i + 1}") == "UP", step=0.05)
    return time.monotonic() - t0, ("SIGTERM to exit " + ", ".join(f"{e:.1f}" for e in exits)
                                   + " s")


def kill_broker(ctx: Ctx) -> tuple[float, str]:
    t0 = time.monotonic()
    ctx.cloud.kill_rabbit(0)
    time.sleep(ctx.args.down)
    ctx.cloud.restart_rabbit(0)
    return time.monotonic() - t0, "broker 1 of 3 (first in every node's [bus] url)"


def fail_over_postgres(ctx: Ctx) -> tuple[float, str]:
    pg = ctx.cloud.pg
    assert pg is not None
    pg.wait_replayed()
    t0 = time.monotonic()
    pg.kill_primary()
    time.sleep(1.0)  # what a failover manager would take to notice
    pg.promote()
    return time.monotonic() - t0, "standby promoted 1 s after the kill; no standby afterwards"


def kill_osd(ctx: Ctx) -> tuple[float, str]:
    ceph = ctx.cloud.ceph
    assert ceph is not None
    t0 = time.monotonic()
    ceph.kill_osd(1)
    time.sleep(ctx.args.down)
    ceph.start_osd(1)
    up = time.monotonic() - t0
    ceph.wait_active_clean()
    return time.monotonic() - t0, (f"osd.1 of {ceph.osds} (pool size {ctx.cloud.pool_size});"
                                   f" booted again at {up:.1f} s, then active+clean")


FAULTS = [
    Fault("none", "no fault (the floor)", lambda ctx: (0.0, "")),
    Fault("node-kill", "the leader node SIGKILLed, started again after --down s", kill_leader),
    Fault("node-stop", "the leader node SIGSTOPped, SIGCONT after --frozen s", stop_leader),
    Fault("rolling-restart", "SIGTERM, restart, UP in haproxy: each node in turn",
          rolling_restart),
    Fault("broker-kill", "a RabbitMQ broker SIGKILLed, restarted after --down s", kill_broker),
    Fault("pg-failover", "the PostgreSQL primary SIGKILLed, the standby promoted",
          fail_over_postgres),
    # With --osds 3 or more only (a copy of every block stays up).
    Fault("osd-kill", "a Ceph OSD SIGKILLed, started again after --down s", kill_osd),
]


@attrs.frozen
class Row:
    fault: str
    requests: int
    failed: collections.Counter[str]
    gap: float
    kind_gap: tuple[float, str]
    latency: tuple[float, float, float]     # p50, p99, max ms of every request
    repair: float
    note: str
    retries: int
    redispatches: int
    broken: list[str]
    facts: list[str]
    said: dict[str, str]        # failure -> what its first answer said


def longest_gaps(outcomes: list[Outcome], t0: float, t1: float) -> tuple[float, float, str]:
    """(the longest time with no successful request of any kind, the longest
    one kind went without one, that kind), within [t0, t1]."""
    def gap(ends: list[float]) -> float:
        points = [t0, *sorted(ends), t1]
        return max(b - a for a, b in itertools.pairwise(points))

    ok = [o for o in outcomes if o.ok]
    worst, which = 0.0, ""
    # Server creates are 3 % of the mix: their gaps are their pace.
    for kind in sorted({o.kind for o in outcomes} - {"create"}):
        g = gap([o.end for o in ok if o.kind == kind])
        if g > worst:
            worst, which = g, kind
    return gap([o.end for o in ok]), worst, which


def one_fault(ctx: Ctx, fault: Fault, load: Load, account: Account) -> Row:
    args = ctx.args
    say(f"{fault.name}: {fault.describe}")
    load.label = fault.name
    load.start(args.per_node_clients * len(ctx.cloud.nodes), args.rmw_clients)
    try:
        time.sleep(args.before)
        before = ctx.haproxy.answered()
        t_fault = time.monotonic()
        repair, note = fault.run(ctx)
        wait("every node healthy and UP in haproxy", 120,
             lambda: all(healthy(n.url) and ctx.haproxy.status(f"n{i + 1}") == "UP"
                         for i, n in enumerate(ctx.cloud.nodes)), step=0.1)
        time.sleep(args.after)
        t_end = time.monotonic()
    finally:
        load.stop()
    after = ctx.haproxy.answered()
    window = load.recorder.between(t_fault - args.before, t_end)
    failed = collections.Counter(f"{o.kind} {o.what}" for o in window if not o.ok)
    gap, kind_gap, kind = longest_gaps(window, t_fault - args.before, t_end)
    say(f"{fault.name}: checking the invariants ...")
    broken, facts = check_invariants(ctx, account, load.ledger)
    times = [o.end - o.start for o in window]
    latency = (*quantiles(times), max(times, default=0.0) * 1000)
    row = Row(fault.name, len(window), failed, gap, (kind_gap, kind), latency, repair, note,
              after.get("retries", 0) - before.get("retries", 0),
              after.get("redispatches", 0) - before.get("redispatches", 0), broken, facts,
              {k: load.recorder.said.get(k, "") for k in failed})
    say(f"{fault.name}: {len(window)} requests, {sum(failed.values())} failed, longest gap"
        f" {gap:.2f} s; invariants {'hold' if not broken else 'BROKEN'}")
    return row


# -- the invariants -----------------------------------------------------------------------


def listing(client: Client, account: Account, container: str) -> dict[str, dict[str, Any]]:
    """Every object of ``container``: name -> its listing entry."""
    out: dict[str, dict[str, Any]] = {}
    marker = ""
    while True:
        status, _, body = client.call(
            "GET", f"{account.path(container)}?format=json&limit=10000&marker={quote(marker)}",
            {"X-Auth-Token": account.user.token})
        if status == 204:
            return out
        if status != 200:
            raise RuntimeError(f"listing {container} answered {status}")
        page = json.loads(body)
        if not page:
            return out
        out.update((o["name"], o) for o in page)
        marker = page[-1]["name"]


def check_invariants(ctx: Ctx, account: Account, ledger: Ledger) -> tuple[list[str], list[str]]:
    """(what is broken, what was checked) after the load stopped."""
    client = Client(ctx.haproxy.url)
    try:
        broken, facts = check_objects(client, account, ledger)
        b, f = check_counters(client, account, ledger)
        broken += b
        facts += f
        b, f = check_quota(client, account)
        broken += b
        facts += f
        if account.flavor is not None:
            b, f = check_servers(client, account, ledger)
            broken += b
            facts += f
        return broken, facts
    finally:
        client.close()


def check_objects(client: Client, account: Account, ledger: Ledger,
                  ) -> tuple[list[str], list[str]]:
    broken = list(ledger.corrupt)
    ledger.corrupt.clear()
    listed = {c: listing(client, account, c) for c in CONTAINERS}
    for key, etag in ledger.acked.items():
        container, name = key.split("/", 1)
        entry = listed[container].get(name)
        if entry is None:
            broken.append(f"acknowledged {key} is not listed")
        elif entry["bytes"] != SIZE or (etag and entry.get("hash") != etag):
            broken.append(f"acknowledged {key} listed with {entry['bytes']} bytes,"
                          f" hash {entry.get('hash')} (ETag was {etag})")
    auth = {"X-Auth-Token": account.user.token}
    sample = random.sample(sorted(ledger.acked), min(100, len(ledger.acked)))
    for key in sample:
        status, _, data = client.call("GET", account.path(*key.split("/", 1)), auth)
        if status != 200 or data != body_for(key):
            broken.append(f"acknowledged {key} reads {status}, {len(data)} bytes")
    whole = 0
    for key in sorted(ledger.unanswered):
        container, name = key.split("/", 1)
        if name not in listed[container]:
            continue
        status, _, data = client.call("GET", account.path(container, name), auth)
        if status != 200 or data != body_for(key):
            broken.append(f"failed PUT {key} reads {status}, {len(data)} bytes: not whole")
        whole += 1
    known = set(ledger.acked) | ledger.unanswered
    strays = [f"{c}/{n}" for c, objs in listed.items() for n in objs if f"{c}/{n}" not in known]
    if strays:
        broken.append(f"{len(strays)} listed objects no client wrote, e.g. {strays[0]}")
    facts = [f"{len(ledger.acked)} acknowledged PUTs all listed with size and ETag,"
             f" {len(sample)} read back byte for byte; of {len(ledger.unanswered)} PUTs"
             f" without a 201, {whole} present (whole)"]
    return broken, facts


def check_counters(client: Client, account: Account, ledger: Ledger,
                   ) -> tuple[list[str], list[str]]:
    """Each counter holds every acknowledged update once; an update that got
    no acknowledgement is there at most once, and is settled as applied."""
    broken = []
    acked = final = extra = 0
    for name in COUNTERS:
        status, _, data = client.call("GET", account.path(COUNTER_BOX, name),
                                      {"X-Auth-Token": account.user.token})
        if status != 200:
            broken.append(f"{name} reads {status}")
            continue
        tags = data.decode().split()
        seen = set(tags)
        counted, unsure, applied = (ledger.counted[name], ledger.unsure[name],
                                    ledger.applied[name])
        if len(tags) != len(seen):
            broken.append(f"{name}: {len(tags) - len(seen)} updates applied twice")
        lost = (counted | applied) - seen
        if lost:
            broken.append(f"{name}: {len(lost)} acknowledged updates lost, e.g. {min(lost)}")
        strangers = seen - counted - applied - unsure
        if strangers:
            broken.append(f"{name}: {len(strangers)} updates no client sent")
        applied |= seen & unsure
        unsure.clear()
        acked += len(counted)
        final += len(tags)
        extra += len(applied)
    return broken, [f"counters: final {final} = {acked} acknowledged + {extra} applied"
                    " without an acknowledgement"]


def check_quota(client: Client, account: Account) -> tuple[list[str], list[str]]:
    """Bytes used == sum of the listings == pithos.diskspace usage, nothing
    pending; retried for up to 20 s (usage follows commissions)."""
    auth = {"X-Auth-Token": account.user.token}
    deadline = time.monotonic() + 20
    while True:
        _, head, _ = client.call("HEAD", f"/object-store/v1/{account.user.uuid}", auth)
        used = int(head.get("x-account-bytes-used", -1))
        listed = sum(o["bytes"] for c in [*CONTAINERS, COUNTER_BOX]
                     for o in listing(client, account, c).values())
        status, _, body = client.call("GET", "/account/v1.0/quotas", auth)
        held = (json.loads(body).get(account.user.uuid, {}).get("pithos.diskspace", {})
                if status == 200 else {})
        usage, pending = held.get("usage"), held.get("pending")
        problems = []
        if used != listed:
            problems.append(f"X-Account-Bytes-Used {used} != listed {listed}")
        if usage != listed:
            problems.append(f"pithos.diskspace usage {usage} != listed {listed}")
        if pending:
            problems.append(f"pithos.diskspace pending {pending}")
        if not problems or time.monotonic() > deadline:
            return problems, [f"bytes used {used}, listed {listed}, pithos.diskspace usage"
                              f" {usage}, pending {pending}"]
        time.sleep(1)


def check_servers(client: Client, account: Account, ledger: Ledger,
                  ) -> tuple[list[str], list[str]]:
    """Every create that got a 202 made one server, one that got none at
    most one (a POST is never sent twice: no duplicate names), and the
    ``cyclades.vm`` usage counts them; the usage is retried for up to 20 s
    (it follows commissions)."""
    auth = {"X-Auth-Token": account.user.token}
    names: list[str] = []
    marker = ""
    while True:
        status, _, body = client.call(
            "GET", "/compute/v2.0/servers?limit=1000"
            + (f"&marker={quote(marker)}" if marker else ""), auth)
        if status != 200:
            return [f"listing servers answered {status}"], []
        page = json.loads(body)["servers"]
        if not page:
            break
        names += [s["name"] for s in page]
        marker = str(page[-1]["id"])
    counts = collections.Counter(names)
    broken = []
    twice = sorted(n for n, c in counts.items() if c > 1)
    if twice:
        broken.append(f"{len(twice)} servers created twice, e.g. {twice[0]}")
    lost = sorted(ledger.created - set(counts))
    if lost:
        broken.append(f"{len(lost)} acknowledged creates made no server, e.g. {lost[0]}")
    strangers = set(counts) - ledger.created - ledger.uncreated
    if strangers:
        broken.append(f"{len(strangers)} servers no client asked for")
    made = len(set(counts) & ledger.uncreated)
    began = time.monotonic()
    while True:
        status, _, body = client.call("GET", "/account/v1.0/quotas", auth)
        held = (json.loads(body).get(account.user.uuid, {}).get("cyclades.vm", {})
                if status == 200 else {})
        usage, pending = held.get("usage"), held.get("pending")
        if (usage == len(names) and not pending) or time.monotonic() - began > SETTLE_WAIT:
            break
        time.sleep(1)
    waited = time.monotonic() - began
    if usage != len(names) or pending:
        broken.append(f"cyclades.vm usage {usage} (pending {pending}) != {len(names)} servers"
                      f" after {waited:.0f} s")
    return broken, [f"{len(ledger.created)} acknowledged creates each made one server;"
                    f" of {len(ledger.uncreated)} without a 202, {made} made one;"
                    f" cyclades.vm usage {usage}, pending {pending}"
                    + (f" (settled after {waited:.0f} s)" if waited >= 1 else "")]


SETTLE_WAIT = 45.0
"""Seconds the server check waits for ``cyclades.vm`` to settle: a create
whose node was killed after it issued its commission leaves it pending
until the leader's commission reconciliation (every 30 s) finds that the
boot which issued it is over and rejects it."""


def fault_report(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\n== faults under load on 3 nodes: {args.per_node_clients * 3} mixed threads +"
          f" {args.rmw_clients} If-Match counter threads; {args.before:.0f} s of load before"
          f" each fault, {args.after:.0f} s after every node is UP again; invariants checked"
          " with the load stopped\n")
    table(["fault", "requests", "client errors (kind status x n)", "longest gap (any /"
           " one kind)", "latency p50 / p99 / max", "repair", "haproxy retries / redispatches",
           "invariants"],
          [[r.fault, str(r.requests),
            ", ".join(f"{k} x{n}" for k, n in sorted(r.failed.items())) or "none",
            f"{r.gap:.2f} s / {r.kind_gap[0]:.2f} s ({r.kind_gap[1]})",
            "{:.0f} / {:.0f} / {:.0f} ms".format(*r.latency),
            f"{r.repair:.1f} s", f"{r.retries} / {r.redispatches}",
            "hold" if not r.broken else "BROKEN: " + "; ".join(r.broken[:4])]
           for r in rows])
    print("\n(an update without an acknowledgement: no answer, or a 409/412 to a retry"
          " of an update already applied)")
    for r in rows:
        print(f"- {r.fault}: " + "; ".join([r.note, *r.facts] if r.note else r.facts))
        for failure, said in sorted(r.said.items()):
            if said.strip():
                print(f"  - {failure}: {' '.join(said.split())[:120]}")


# -- the run ------------------------------------------------------------------------------


def prepare(cloud: Cloud) -> Account:
    """The user, containers, counters, tokens to check, and a few objects."""
    user, flavor, image = cloud.prepare()
    node = cloud.nodes[0]
    tokens = []
    body = json.dumps({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user.email, "domain": {"id": "default"}, "password": user.password}}},
        "scope": {"project": {"id": user.uuid}}}}).encode()
    for _ in range(10):
        status, headers, _ = node.request("POST", "/identity/v3/auth/tokens", None, body,
                                          {"Content-Type": "application/json"})
        if status != 201:
            raise RuntimeError(f"token issue answered {status}")
        tokens.append(headers["x-subject-token"])
    account = Account(user, tokens, flavor, image)
    for container in [*CONTAINERS, COUNTER_BOX]:
        status, _ = node.api("PUT", account.path(container), user.token)
        if status not in (201, 202):
            raise RuntimeError(f"PUT container {container} answered {status}")
    for name in COUNTERS:
        status, _, _ = node.request("PUT", account.path(COUNTER_BOX, name), user.token, b"")
        if status != 201:
            raise RuntimeError(f"PUT {name} answered {status}")
    return account


def seed(cloud: Cloud, account: Account, ledger: Ledger, n: int = 24) -> None:
    """A few objects for the first GETs to read."""
    node = cloud.nodes[0]
    for i in range(n):
        key = f"{CONTAINERS[i % len(CONTAINERS)]}/seed-{i}"
        status, headers, _ = node.request("PUT", account.path(*key.split("/", 1)),
                                          account.user.token, body_for(key))
        if status != 201:
            raise RuntimeError(f"seed PUT answered {status}")
        ledger.acked[key] = headers.get("etag", "").strip('"')
        ledger.names.append(key)
    for name in COUNTERS:
        ledger.counted[name] = set()
        ledger.unsure[name] = set()
        ledger.applied[name] = set()


def topology(cloud: Cloud, haproxy: Haproxy, groups: CpuGroups, args: argparse.Namespace,
             load_before: str) -> None:
    assert cloud.pg is not None and cloud.rabbit is not None and cloud.ceph is not None
    print(f"== snfd scale-out benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}")
    print(f"machine: {os.cpu_count()} cores shared by every part and this load generator;"
          f" load average before the run {load_before}")
    netns = os.environ.get(NETNS_ENV)
    print("network: everything on 127.0.0.1 with free ports, "
          + (f"in the network namespace {netns} (only lo)" if netns
             else "in the root network namespace (--no-netns)")
          + "; latency is loopback's")
    print(f"PostgreSQL: primary :{cloud.pg.primary_port} + synchronous standby"
          f" :{cloud.pg.standby_port} (streaming, sync_state=sync; both fsync=off)")
    brokers = ", ".join(u.rsplit("@", 1)[1].split("/")[0] for u in cloud.rabbit.urls)
    print(f"RabbitMQ: 3-node cluster on {brokers}, quorum queues")
    print(f"Ceph: single host, 1 monitor + {cloud.osds} OSD(s)"
          + (" (so replication is not exercised)" if cloud.osds == 1
             else f", heartbeat grace {OSD_HEARTBEAT['osd heartbeat grace']} s")
          + f", pool {POOL} of size {cloud.pool_size}, monitor :{cloud.ceph.mon_port}")
    print("Ganeti: " + ("the simulator as its own twistd (ganeti-sim), one backend shared by"
                        " every node" if cloud.servers else "none (--no-servers)"))
    print(f"haproxy: 127.0.0.1:{haproxy.port}, leastconn, httpchk GET /_health inter 500ms"
          " fall 2 rise 2, retries 3, redispatch, retry-on conn-failure empty-response"
          " response-timeout (POSTs: conn-failure only), timeout server 10s,"
          " no shutdown-sessions;"
          " nodes with drain_grace = 2")
    print("CPU groups: " + ("cgroup v1 " + ", ".join(
        f"{n}{' (capped ' + str(groups.quota[n]) + ')' if n in groups.quota else ''}"
        for n in groups.names) if groups.available else f"none ({groups.why_not})"))


NETNS_ENV = "SNFD_BENCH_NETNS"


def in_private_netns() -> int | None:
    """Run this benchmark again inside a new network namespace (only
    ``lo``, up) and delete the namespace afterwards; its exit status.
    ``None``: already inside one."""
    if os.environ.get(NETNS_ENV):
        return None
    import subprocess

    name = f"snfd-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        child = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{name}", "--", sys.executable, *sys.argv],
            env={**os.environ, NETNS_ENV: name})
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda n, _f: child.send_signal(n))
        while True:
            try:
                return child.wait()
            except InterruptedError:
                continue
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="measured seconds per scaling step")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int,
                        help="rounds of 1, 2, 3 nodes (the median is shown); default 3,"
                        " 1 with --quick")
    parser.add_argument("--per-node-clients", type=int, default=4)
    parser.add_argument("--cpu", type=float, default=0.2, help="CPU share of each node")
    parser.add_argument("--rmw-clients", type=int, default=3)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=5.0)
    parser.add_argument("--down", type=float, default=3.0)
    parser.add_argument("--frozen", type=float, default=5.0)
    parser.add_argument("--no-servers", action="store_true",
                        help="no simulated Ganeti, no server creates in the mix")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--osds", type=int, default=3,
                        help="Ceph OSDs (the pool keeps a copy on each, 3 at most); with"
                             " 3 or more the faults include an OSD killed")
    parser.add_argument("--quick", action="store_true", help="short durations: a smoke run")
    parser.add_argument("--no-netns", action="store_true",
                        help="run in the root network namespace (on 127.0.0.1 there)")
    parser.add_argument("--keep-logs", type=Path,
                        help="copy the nodes', simulator's and haproxy's logs here at the end")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.before, args.after = 4.0, 1.0, 2.0, 2.0
        args.down, args.frozen = 2.0, 3.0
    args.rounds = args.rounds or (1 if args.quick else 3)
    if os.geteuid() != 0:
        raise SystemExit("run as root: private PostgreSQL, Ceph and cgroups need it")
    if not args.no_netns:
        status = in_private_netns()
        if status is not None:
            sys.exit(status)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())

    root = Path(tempfile.mkdtemp(prefix="snfd-bench-cluster-"))
    groups = CpuGroups()
    cloud = Cloud(root, groups, servers=not args.no_servers, osds=args.osds)
    haproxy = Haproxy(root)
    rounds: dict[int, list[Step]] = {1: [], 2: [], 3: []}
    rows: list[Row] = []
    load: Load | None = None
    try:
        groups.setup(["node1", "node2", "node3", *OTHERS],
                     {f"node{i}": args.cpu for i in (1, 2, 3)})
        if not groups.available:
            say(f"no CPU groups ({groups.why_not}): running uncapped")
        groups.adopt("loadgen", [os.getpid()])
        cloud.start()
        say("starting node 1 ...")
        cloud.start_node(0)
        account = prepare(cloud)
        ledger = Ledger()
        seed(cloud, account, ledger)
        load = Load(haproxy.url, account, ledger, Recorder())
        # Interleaved, so that other jobs on the machine weigh on every size alike.
        for r in range(args.rounds):
            say(f"scaling, round {r + 1} of {args.rounds}")
            for n in (1, 2, 3):
                rounds[n].append(measure_step(cloud, haproxy, groups, load, n, args))
        topology(cloud, haproxy, groups, args, load_before)
        scaling_report(rounds, load.kinds, args, groups)
        sys.stdout.flush()
        if not args.no_faults:
            ctx = Ctx(cloud, haproxy, args)
            try:
                for fault in FAULTS:
                    if fault.name == "osd-kill" and args.osds < 3:
                        continue
                    rows.append(one_fault(ctx, fault, load, account))
            finally:
                if rows:
                    fault_report(rows, args)
    finally:
        if load is not None:
            load.stopping.set()
        say("stopping everything ...")
        haproxy.stop()
        cloud.stop()
        groups.remove()
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            if load is not None:
                with open(args.keep_logs / "failures.txt", "w") as out:
                    for o in load.recorder.outcomes:
                        if not o.ok:
                            print(f"{o.start:.3f} {o.end - o.start:.3f} {o.label} {o.kind}"
                                  f" {o.what}", file=out)
            for log in [*root.glob("*/node.log"), root / "haproxy.log"]:
                if log.exists():
                    shutil.copy(log, args.keep_logs / f"{log.parent.name}-{log.name}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
