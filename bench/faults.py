"""Faults under load: a two-node cluster keeps serving, heals by itself and
loses nothing while its parts fail, one at a time.

The cloud: two ``twistd snfd`` nodes (identity, pithos, cyclades) on one
private PostgreSQL (``ThrowawayPostgres``) and one private RabbitMQ
(``PrivateRabbit``), sharing one block store (a tmpfs of its own when run
as root, so that it can be filled); the Ganeti they drive is a simulated
cluster in a third node of its own (plugin ``ganeti-sim``, its own
database on the test PostgreSQL, publishing job events on the same
RabbitMQ), reached through a TCP proxy in this process that can refuse or
delay connections.  The embedded default (one node, its private
PostgreSQL) is a second, smaller cloud for the fault that concerns it.

The load, from threads of this process, through a balancer that behaves
as haproxy would: health checks of ``/_health`` every 0.25 s (down after
one failed or slow check), requests to healthy nodes in turn, a request
whose connection is refused, or an idempotent one whose connection
dropped unanswered, sent once more to the other node; every request has
a 10 s timeout:

- objects (3 threads): PUT of a new object (1-64 KiB, one in fifty 4.5
  MiB: two blocks), GET of an acknowledged one (checked byte for byte),
  DELETE of an acknowledged one, at random, about 150 objects live;
- tokens (2 threads): a password token issue, then five validations;
- servers (1 thread): create, and delete the oldest when three live.

For each fault, in turn: ``--before`` s of steady load, the fault, its
repair (as systemd or an operator would: a killed process started again
after ``--down`` s), load until the cloud answers again, ``--after`` s
more; then the load stops and the invariants are checked:

- every acknowledged object reads back byte-identical, every
  acknowledged DELETE is gone, and an object whose PUT failed is either
  absent or whole (no partial object is visible);
- the account's bytes (listing, ``X-Account-Bytes-Used``) equal the
  quota holder's ``pithos.diskspace`` usage;
- after reconciliation no server is in a transitional state (within
  ``--settle`` s), every acknowledged server exists unless its DELETE was
  acknowledged, and ``cyclades.vm``/``cpu``/``ram``/``disk`` usage equal
  what the servers hold;
- no commission is left pending (``pending`` 0 on every holding).

Printed: a table, one row per fault: requests and failures (by kind and
status), the longest gap in service (the longest time any kind of
request went without a success, from before the fault to after it), the
time to recovery (from the fault to its last failed request; every kind
of request is seen to succeed after it), the repair time of the part, and the invariants.
Beside it, the same figures for a window of steady load with no fault.
Never a timing in a pass/fail test: the figures are printed; the exit
status is 1 when an invariant does not hold.

Usage: ``python bench/faults.py [--only NAME,...] [--before S] [--after S]
[--down S]``; needs the test PostgreSQL (``SNFD_TEST_DATABASE_URL``,
default 127.0.0.1:5432 trust), RabbitMQ installed (Debian's), and root
for the block-store-full fault (skipped otherwise, with the reason).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import random
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from snfd.testing.cloudnode import CloudNode, User
from snfd.testing.node import free_port, http_get
from snfd.testing.postgres import ThrowawayPostgres, create_database, drop_database
from snfd.testing.rabbitmq import PrivateRabbit

TIMEOUT = 10.0
CONTAINER = "faults"
QUOTAS = (("cyclades.vm", "1000"), ("cyclades.total_cpu", "1000"), ("cyclades.cpu", "1000"),
          ("cyclades.total_ram", "1T"), ("cyclades.ram", "1T"), ("cyclades.disk", "4T"),
          ("pithos.diskspace", "1T"))
# Nova statuses a server may rest in; the rest are transitional.
RESTING = {"ACTIVE", "SHUTOFF", "ERROR"}


def say(text: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the balancer and the clients -------------------------------------------------------


class Balancer:
    """haproxy's part: health checks, round robin over healthy nodes."""

    def __init__(self, urls: list[str], interval: float = 0.25):
        self.urls = list(urls)
        self.interval = interval
        self.healthy = {u: True for u in urls}
        self._turn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._check, daemon=True)
        self._thread.start()

    def _check(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                try:
                    ok = http_get(url + "/_health", timeout=1.0)[0] == 200
                except OSError:
                    ok = False
                self.healthy[url] = ok
            self._stop.wait(self.interval)

    def order(self) -> list[str]:
        """Nodes to try, the next healthy one first (all, when none is)."""
        with self._lock:
            self._turn += 1
            turn = self._turn
        up = [u for u in self.urls if self.healthy[u]] or self.urls
        first = up[turn % len(up)]
        return [first, *[u for u in up if u != first]]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class Refused(Exception):
    """No node took the connection (or answered an idempotent request)."""


IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE"}
DROPPED = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


class Client:
    """One thread's keep-alive connections, one per node."""

    def __init__(self, balancer: Balancer):
        self.balancer = balancer
        self.conns: dict[str, http.client.HTTPConnection] = {}

    def _conn(self, url: str) -> http.client.HTTPConnection:
        conn = self.conns.get(url)
        if conn is None:
            host, _, port = url.removeprefix("http://").partition(":")
            conn = self.conns[url] = http.client.HTTPConnection(host, int(port),
                                                                  timeout=TIMEOUT)
        return conn

    def call(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """The request on the next healthy node; redispatched once when the
        connection is refused (nothing was sent).  Raises on any other
        transport error, after dropping the connection."""
        for url in self.balancer.order()[:2]:
            conn = self._conn(url)
            try:
                if conn.sock is None:
                    conn.connect()
            except ConnectionRefusedError:
                conn.close()
                continue
            except OSError:
                conn.close()
                raise
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
                out = {k.lower(): v for k, v in resp.getheaders()}
                if out.get("connection", "").lower() == "close":
                    conn.close()
                return resp.status, out, data
            except DROPPED:
                # The node went away with the request unanswered: an
                # idempotent request is sent again to the other node
                # (haproxy's ``retry-on conn-failure empty-response``).
                conn.close()
                if method not in IDEMPOTENT:
                    raise
            except (OSError, http.client.HTTPException):
                conn.close()
                raise
        raise Refused("no node answered")

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


# -- what happened ----------------------------------------------------------------------


@attrs.frozen
class Outcome:
    kind: str       # "object PUT", "token issue", ...
    start: float
    end: float
    ok: bool
    what: str       # "ok", the status, or the exception's name


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()

    def add(self, kind: str, start: float, ok: bool, what: str) -> None:
        with self._lock:
            self.outcomes.append(Outcome(kind, start, time.monotonic(), ok, what))

    def between(self, t0: float, t1: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if t0 <= o.end <= t1]


def timed(recorder: Recorder, kind: str, client: Client, method: str, path: str,
          headers: dict[str, str], body: bytes | None, good: set[int],
          ) -> tuple[int, dict[str, str], bytes] | None:
    """One request, recorded; None when it failed in transport."""
    start = time.monotonic()
    try:
        status, hdrs, data = client.call(method, path, headers, body)
    except Exception as e:
        recorder.add(kind, start, False, type(e).__name__)
        return None
    recorder.add(kind, start, status in good, str(status))
    return status, hdrs, data


@attrs.define
class Ledger:
    """What the clients were told about objects and servers."""

    acked: dict[str, str] = attrs.Factory(dict)            # object -> sha256
    maybe: dict[str, set[str | None]] = attrs.Factory(dict)  # object -> possible contents
    deleted: set[str] = attrs.Factory(set)
    corrupt: list[str] = attrs.Factory(list)                 # seen during the load
    servers: list[str] = attrs.Factory(list)                 # acknowledged, not deleted
    servers_maybe: set[str] = attrs.Factory(set)             # create or delete failed
    servers_deleted: set[str] = attrs.Factory(set)
    lock: threading.Lock = attrs.Factory(threading.Lock)


# -- the load ---------------------------------------------------------------------------


@attrs.define
class Load:
    balancer: Balancer
    user: User
    recorder: Recorder
    ledger: Ledger
    flavor: str | None
    image: str | None
    stopping: threading.Event = attrs.Factory(threading.Event)
    threads: list[threading.Thread] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)

    def start(self) -> None:
        self.stopping.clear()
        workers: list[Callable[[int], None]] = [self.objects] * 3 + [self.tokens] * 2
        if self.flavor is not None:
            workers.append(self.servers)
        self.threads = [threading.Thread(target=self._guard, args=(w, k), daemon=True)
                        for k, w in enumerate(workers)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()
        if self.errors:
            raise SystemExit(f"a load thread failed: {self.errors[0]}")

    def _guard(self, work: Callable[[int], None], k: int) -> None:
        try:
            work(k)
        except Exception as e:  # a bug of the harness, not a fault of the cloud
            self.errors.append(repr(e))

    def objects(self, k: int) -> None:
        client = Client(self.balancer)
        rng = random.Random(k)
        base = f"/object-store/v1/{self.user.uuid}/{CONTAINER}"
        auth = {"X-Auth-Token": self.user.token}
        serial = 0
        ledger = self.ledger
        while not self.stopping.is_set():
            roll = rng.random()
            with ledger.lock:
                names = list(ledger.acked)
            # About 150 objects live: new ones, reads and deletes balance there.
            put, get = (0.35, 0.8) if len(names) < 150 else (0.2, 0.65)
            if roll < put or len(names) < 20:
                serial += 1
                name = f"o{k}-{time.monotonic_ns()}-{serial}"
                size = 4_718_592 if rng.random() < 0.02 else rng.randint(1024, 65536)
                data = rng.randbytes(size)
                sha = hashlib.sha256(data).hexdigest()
                with ledger.lock:
                    ledger.maybe[name] = {None, sha}
                got = timed(self.recorder, "object PUT", client, "PUT", f"{base}/{name}",
                            auth, data, {201})
                if got is not None and got[0] == 201:
                    with ledger.lock:
                        ledger.acked[name] = sha
                        del ledger.maybe[name]
            elif roll < get:
                name = rng.choice(names)
                # 404 is a right answer while another thread deletes it; a
                # wrong one is caught below, as a broken invariant.
                got = timed(self.recorder, "object GET", client, "GET", f"{base}/{name}",
                            auth, None, {200, 404})
                if got is not None and got[0] in (200, 404):
                    with ledger.lock:
                        if name in ledger.acked and name not in ledger.maybe:
                            if got[0] == 404 or hashlib.sha256(got[2]).hexdigest() \
                                    != ledger.acked[name]:
                                ledger.corrupt.append(f"GET {name}: {got[0]}, "
                                                      f"{len(got[2])} bytes")
            else:
                name = rng.choice(names)
                with ledger.lock:
                    if name not in ledger.acked or name in ledger.maybe:
                        continue
                    ledger.maybe[name] = {None, ledger.acked[name]}
                got = timed(self.recorder, "object DELETE", client, "DELETE",
                            f"{base}/{name}", auth, None, {204})
                with ledger.lock:
                    if got is not None and got[0] in (204, 404):
                        del ledger.acked[name]
                        del ledger.maybe[name]
                        ledger.deleted.add(name)
        client.close()

    def tokens(self, k: int) -> None:
        client = Client(self.balancer)
        body = json.dumps({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.user.email, "domain": {"id": "default"},
                "password": self.user.password}}},
            "scope": {"project": {"id": self.user.uuid}}}}).encode()
        json_type = {"Content-Type": "application/json"}
        while not self.stopping.is_set():
            got = timed(self.recorder, "token issue", client, "POST",
                        "/identity/v3/auth/tokens", json_type, body, {201})
            token = got[1].get("x-subject-token") if got is not None else None
            if not token:
                time.sleep(0.05)
                continue
            for _ in range(5):
                if self.stopping.is_set():
                    break
                timed(self.recorder, "token validate", client, "GET",
                      "/identity/v3/auth/tokens",
                      {"X-Auth-Token": token, "X-Subject-Token": token}, None, {200})
        client.close()

    def servers(self, k: int) -> None:
        client = Client(self.balancer)
        auth = {"X-Auth-Token": self.user.token, "Content-Type": "application/json"}
        ledger = self.ledger
        serial = 0
        while not self.stopping.is_set():
            with ledger.lock:
                live = list(ledger.servers)
            if len(live) >= 3:
                sid = live[0]
                got = timed(self.recorder, "server delete", client, "DELETE",
                            f"/compute/v2.0/servers/{sid}", auth, None, {204})
                with ledger.lock:
                    ledger.servers.remove(sid)
                    if got is not None and got[0] in (204, 404):
                        ledger.servers_deleted.add(sid)
                    else:
                        ledger.servers_maybe.add(sid)
                continue
            serial += 1
            body = json.dumps({"server": {"name": f"faults-{serial}",
                                          "flavorRef": self.flavor,
                                          "imageRef": self.image}}).encode()
            got = timed(self.recorder, "server create", client, "POST",
                        "/compute/v2.0/servers", auth, body, {202})
            if got is not None and got[0] == 202:
                with ledger.lock:
                    ledger.servers.append(str(json.loads(got[2])["server"]["id"]))
            else:
                time.sleep(0.2)
            time.sleep(0.3)
        client.close()


# -- a RAPI proxy that can fail ---------------------------------------------------------


class RapiProxy:
    """TCP on 127.0.0.1 to the simulator's RAPI (TLS passes through), in
    one of three modes: "pass"; "refuse", an outage (open connections are
    cut, new ones closed at once); "slow" (every request waits ``delay`` s
    before it is forwarded, on open connections too)."""

    def __init__(self, upstream_port: int, delay: float = 3.0):
        self.upstream_port = upstream_port
        self.delay = delay
        self._mode = "pass"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode == "refuse":
            with self._lock:
                for s in self._open:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self._mode == "refuse":
            conn.close()
            return
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
        except OSError:
            conn.close()
            return
        pair = {conn: up, up: conn}
        with self._lock:
            self._open.update(pair)
        try:
            while True:
                ready, _, _ = select.select(list(pair), [], [], 60)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is conn and self._mode == "slow":
                        time.sleep(self.delay)
                    pair[s].sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.difference_update(pair)
            conn.close()
            up.close()

    def close(self) -> None:
        self._closing = True
        self.sock.close()


# -- the cloud --------------------------------------------------------------------------


def leader_of(node: CloudNode) -> str | None:
    try:
        status, _, body = http_get(node.url + "/_cluster", timeout=1)
    except OSError:
        return None
    return json.loads(body).get("leader") if status == 200 else None


def node_id(node: CloudNode) -> str:
    return json.loads(http_get(node.url + "/_health")[2])["node"]


def wait(what: str, timeout: float, probe: Callable[[], Any]) -> float:
    """Seconds until ``probe()`` is true; SystemExit after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def healthy(node: CloudNode) -> bool:
    try:
        return http_get(node.url + "/_health", timeout=1)[0] == 200
    except OSError:
        return False


class Cloud:
    """The two-node cluster, its database, bus, block store and Ganeti."""

    def __init__(self, root: Path):
        self.root = root
        self.pg = ThrowawayPostgres(durable=True)
        self.rabbit = PrivateRabbit()
        self.blocks = root / "blocks"
        self.blocks.mkdir()
        self.tmpfs = False
        self.sim_db: tuple[str, str] | None = None
        self.sim: CloudNode | None = None
        self.proxy: RapiProxy | None = None
        self.nodes: list[CloudNode] = []

    def start(self) -> None:
        say("starting PostgreSQL and RabbitMQ ...")
        self.pg.start()
        self.rabbit.start()
        if os.geteuid() == 0:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "tmpfs",
                            str(self.blocks)], check=True)
            self.tmpfs = True
        bus = {"SNFD_BUS_URL": self.rabbit.url}
        admin, dbname, dsn = create_database("snfd_faults_sim")
        self.sim_db = (admin, dbname)
        sim_port = free_port()
        say("starting the simulated Ganeti ...")
        self.sim = CloudNode(dsn, self.root / "sim", "ganeti-sim",
                             f"[ganeti-sim]\nport = {sim_port}\nnodes = 4\n"
                             "node_memory = 65536\nnode_cpus = 64\nqueue_delay = 0.05\n"
                             "exec_time = 0.05\n", bus)
        self.sim.start()
        self.proxy = RapiProxy(sim_port)
        with psycopg_autocommit(self.pg.dsn) as cur:
            cur.execute("CREATE DATABASE snfd")
        config = (f"[pithos]\nblock_path = {self.blocks}\n"
                  "[cyclades]\nreconcile_interval = 10\nos = noop+default\n")
        for name in ("a", "b"):
            self.nodes.append(CloudNode(self.pg.dsn_for("snfd"), self.root / name,
                                        "identity,pithos,cyclades", config, bus))
        say("starting the two nodes ...")
        for node in self.nodes:
            node.start(ready_path="/compute/v2.0/flavors")

    def prepare(self) -> tuple[User, str, str]:
        """The backend, a flavor, an image and the user; (user, flavor, image)."""
        assert self.sim is not None and self.proxy is not None
        from snfd.ganeti_sim.tls import certificate_part

        node = self.nodes[0]
        pem = self.root / "rapi.pem"
        wait("the simulator's certificate", 60,
             lambda: (self.root / "sim" / "ganeti-sim" / "rapi.pem").exists())
        pem.write_text(certificate_part(
            (self.root / "sim" / "ganeti-sim" / "rapi.pem").read_bytes()))
        node.manage("backend-add", "sim.ganeti.test", "--url",
                    f"https://127.0.0.1:{self.proxy.port}", "--username", "synnefo",
                    "--password", "synnefopass", "--certificate", str(pem),
                    "--events", "watch")
        for resource, value in QUOTAS:
            node.manage("resource-modify", resource, "--base-default", value)
        user = node.add_user("faults@example.org", "Fault")
        made = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                      "--disk", "1", "--disk-template", "file", "--json"))
        disk = self.root / "image.diskdump"
        disk.write_bytes(os.urandom(1 << 20))
        image = json.loads(node.manage("image-register", str(disk), "--name", "Faults",
                                       "--property", "OS=linux", "--json"))
        status, _ = node.api("PUT", f"/object-store/v1/{user.uuid}/{CONTAINER}", user.token)
        assert status in (201, 202), status
        return user, str(made[0]["id"]), str(image["id"])

    def leader(self) -> tuple[CloudNode, CloudNode]:
        """(leader, follower), once both agree who leads."""
        ids = {node_id(n): n for n in self.nodes}
        wait("a leader", 60, lambda: leader_of(self.nodes[0]) in ids
             and leader_of(self.nodes[0]) == leader_of(self.nodes[1]))
        lead = ids[leader_of(self.nodes[0]) or ""]
        return lead, next(n for n in self.nodes if n is not lead)

    def all_healthy(self) -> bool:
        return all(healthy(n) for n in self.nodes) and leader_of(self.nodes[0]) is not None

    def postmaster(self) -> int:
        return int((self.pg.process.datadir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.sim is not None:
            self.sim.stop()
        if self.proxy is not None:
            self.proxy.close()
        self.rabbit.stop()
        self.pg.cleanup()
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.blocks)], check=False)
        if self.sim_db is not None:
            drop_database(*self.sim_db)


class psycopg_autocommit:
    def __init__(self, dsn: str):
        import psycopg2

        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True

    def __enter__(self) -> Any:
        return self.conn.cursor()

    def __exit__(self, *exc: Any) -> None:
        self.conn.close()


# -- the faults -------------------------------------------------------------------------


@attrs.frozen
class Fault:
    name: str
    describe: str
    run: Callable[[Cloud, argparse.Namespace], float]   # -> seconds until repaired


def restart_node(node: CloudNode) -> None:
    node.process.proc.wait(10)  # type: ignore[union-attr]
    node.start(ready_path="/compute/v2.0/flavors")


def kill_leader(cloud: Cloud, args: argparse.Namespace) -> float:
    lead, _ = cloud.leader()
    t0 = time.monotonic()
    lead.process.signal(signal.SIGKILL)
    time.sleep(args.down)
    restart_node(lead)
    return time.monotonic() - t0


def stop_leader(cloud: Cloud, args: argparse.Namespace) -> float:
    lead, _ = cloud.leader()
    t0 = time.monotonic()
    lead.process.signal(signal.SIGSTOP)
    time.sleep(args.frozen)
    lead.process.signal(signal.SIGCONT)
    wait("the frozen leader to serve again", 60, lambda: healthy(lead))
    return time.monotonic() - t0


def kill_follower(cloud: Cloud, args: argparse.Namespace) -> float:
    _, follower = cloud.leader()
    t0 = time.monotonic()
    follower.process.signal(signal.SIGKILL)
    time.sleep(args.down)
    restart_node(follower)
    return time.monotonic() - t0


def restart_postgres(cloud: Cloud, args: argparse.Namespace) -> float:
    t0 = time.monotonic()
    cloud.pg.restart()
    return time.monotonic() - t0


def kill_postgres(cloud: Cloud, args: argparse.Namespace) -> float:
    t0 = time.monotonic()
    os.kill(cloud.postmaster(), signal.SIGKILL)
    time.sleep(args.down)
    # Its children outlive the postmaster for a moment; start once they are gone.
    wait("PostgreSQL's backends to exit", 30, lambda: not listening(cloud.pg.port))
    cloud.pg.start()
    return time.monotonic() - t0


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def restart_rabbitmq(cloud: Cloud, args: argparse.Namespace) -> float:
    t0 = time.monotonic()
    cloud.rabbit.restart()
    return time.monotonic() - t0


def fill_blocks(cloud: Cloud, args: argparse.Namespace) -> float:
    """Fill the block store's filesystem and keep it full for ``--down`` s
    (what a write frees when it fails is taken again at once), then free
    it."""
    ballast = cloud.blocks / "ballast"
    t0 = time.monotonic()
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        free = os.statvfs(cloud.blocks)
        try:  # most of it at once; the writes below take the rest
            os.posix_fallocate(fd, 0, free.f_bavail * free.f_frsize * 9 // 10)
        except OSError:
            pass
        os.lseek(fd, 0, os.SEEK_END)
        while time.monotonic() - t0 < args.down:
            for size in (1 << 16, 1 << 12):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
            time.sleep(0.01)
    finally:
        os.close(fd)
        ballast.unlink()
    return time.monotonic() - t0


def rapi_outage(cloud: Cloud, args: argparse.Namespace) -> float:
    assert cloud.proxy is not None
    t0 = time.monotonic()
    cloud.proxy.mode = "refuse"
    time.sleep(args.outage)
    cloud.proxy.mode = "pass"
    return time.monotonic() - t0


def rapi_slow(cloud: Cloud, args: argparse.Namespace) -> float:
    assert cloud.proxy is not None
    t0 = time.monotonic()
    cloud.proxy.mode = "slow"
    time.sleep(args.outage)
    cloud.proxy.mode = "pass"
    return time.monotonic() - t0


FAULTS = [
    Fault("none", "no fault (steady load)", lambda cloud, args: 0.0),
    Fault("leader-kill", "SIGKILL of the leader node, started again after --down s",
          kill_leader),
    Fault("leader-stop", "SIGSTOP of the leader node, SIGCONT after --frozen s",
          stop_leader),
    Fault("follower-kill", "SIGKILL of the other node, started again after --down s",
          kill_follower),
    Fault("pg-restart", "PostgreSQL restarted (fast shutdown, start)", restart_postgres),
    Fault("pg-kill", "PostgreSQL's postmaster SIGKILLed, started after --down s",
          kill_postgres),
    Fault("rabbit-restart", "RabbitMQ restarted", restart_rabbitmq),
    Fault("blocks-full", "the block store's filesystem filled for --down s", fill_blocks),
    Fault("rapi-outage", "Ganeti's RAPI refusing connections for --outage s", rapi_outage),
    Fault("rapi-slow", "Ganeti's RAPI answering 3 s late for --outage s", rapi_slow),
]


# -- the invariants ---------------------------------------------------------------------


def check_objects(node: CloudNode, user: User, ledger: Ledger) -> list[str]:
    broken: list[str] = list(ledger.corrupt)
    ledger.corrupt.clear()
    base = f"/object-store/v1/{user.uuid}/{CONTAINER}"
    status, _, body = node.request("GET", f"{base}?format=json&limit=10000", user.token)
    if status != 200:
        return [f"listing answered {status}"]
    listed = {o["name"]: o for o in json.loads(body)}
    for name, sha in list(ledger.acked.items()):
        if name in ledger.maybe:
            continue  # its DELETE failed: below
        status, _, data = node.request("GET", f"{base}/{name}", user.token)
        if status != 200 or hashlib.sha256(data).hexdigest() != sha:
            broken.append(f"acknowledged {name}: {status}, {len(data)} bytes")
    for name in ledger.deleted:
        if name in listed:
            broken.append(f"deleted {name} is listed")
    for name, possible in list(ledger.maybe.items()):
        status, _, data = node.request("GET", f"{base}/{name}", user.token)
        seen = None if status == 404 else hashlib.sha256(data).hexdigest()
        if status not in (200, 404) or seen not in possible:
            broken.append(f"uncertain {name}: {status}, {len(data)} bytes, not a whole "
                          "version")
            continue
        # Settle it for the next round.
        del ledger.maybe[name]
        if seen is None:
            ledger.acked.pop(name, None)
            ledger.deleted.add(name)
        else:
            ledger.acked[name] = seen
    unknown = set(listed) - set(ledger.acked) - set(ledger.maybe)
    if unknown:
        broken.append(f"{len(unknown)} listed objects no client made, e.g. {min(unknown)}")
    return broken


def holdings(node: CloudNode, user: User) -> dict[str, dict[str, int]]:
    rows = json.loads(node.manage("quota-list", "--user", user.uuid, "--json"))
    return {r["resource"]: r for r in rows}


def check_quota_and_servers(cloud: Cloud, user: User, ledger: Ledger,
                            settle: float) -> tuple[list[str], int]:
    """Invariants of quotas, servers and commissions; (broken, servers in ERROR)."""
    node = next(n for n in cloud.nodes if healthy(n))
    broken: list[str] = []
    servers: list[dict[str, Any]] = []

    def resting() -> bool:
        nonlocal servers
        status, body = node.api("GET", "/compute/v2.0/servers/detail", user.token)
        servers = body["servers"] if status == 200 else []
        return status == 200 and all(s["status"] in RESTING for s in servers)

    try:
        wait("servers to rest", settle, resting)
    except SystemExit:
        broken += [f"server {s['id']} still {s['status']} after {settle:.0f} s"
                   for s in servers if s["status"] not in RESTING]
    ids = {str(s["id"]) for s in servers}
    for sid in ledger.servers:
        if sid not in ids:
            broken.append(f"acknowledged server {sid} is gone")
    for sid in ledger.servers_deleted:
        if sid in ids:
            broken.append(f"deleted server {sid} is still listed")
    # Servers whose create or delete failed: learn what became of them.
    known = set(ledger.servers) | ledger.servers_maybe
    for sid in ids - set(ledger.servers):
        if sid not in known:
            ledger.servers_maybe.add(sid)
    for sid in list(ledger.servers_maybe):
        if sid not in ids:
            ledger.servers_maybe.discard(sid)
            ledger.servers_deleted.add(sid)
    errors = sum(1 for s in servers if s["status"] == "ERROR")

    def agree() -> list[str]:
        held = holdings(node, user)
        status, _, body = node.request(
            "GET", f"/object-store/v1/{user.uuid}/{CONTAINER}?format=json&limit=10000",
            user.token)
        stored = sum(o["bytes"] for o in json.loads(body)) if status == 200 else -1
        _, head, _ = node.request("HEAD", f"/object-store/v1/{user.uuid}", user.token)
        flavors = {str(f["id"]): f for f in node.api("GET", "/compute/v2.0/flavors/detail",
                                                user.token)[1]["flavors"]}
        # A server whose create Ganeti never took (RAPI down: the create
        # answered 503) rests in ERROR holding nothing: its commission
        # was rejected.  The load makes no other ERROR server.
        charged = [s for s in servers if s["status"] != "ERROR"]
        want = {"pithos.diskspace": stored,
                "cyclades.vm": len(charged), "cyclades.total_cpu": 0,
                "cyclades.total_ram": 0, "cyclades.disk": 0}
        for s in charged:
            f = flavors[str(s["flavor"]["id"])]
            want["cyclades.total_cpu"] += f["vcpus"]
            want["cyclades.total_ram"] += f["ram"] << 20
            want["cyclades.disk"] += f["disk"] << 30
        out = []
        if int(head.get("x-account-bytes-used", -1)) != stored:
            out.append(f"X-Account-Bytes-Used {head.get('x-account-bytes-used')} != "
                       f"listed {stored}")
        for resource, value in want.items():
            row = held.get(resource)
            if row is None or row["usage"] != value:
                out.append(f"{resource} usage {row and row['usage']} != {value}")
        out += [f"{r} pending {row['pending']}" for r, row in held.items() if row["pending"]]
        return out

    # Usage follows the servers' last jobs a moment later; give it the settle time.
    deadline = time.monotonic() + settle
    mismatch = agree()
    while mismatch and time.monotonic() < deadline:
        time.sleep(1)
        mismatch = agree()
    return broken + mismatch, errors


# -- one round --------------------------------------------------------------------------


@attrs.frozen
class Row:
    fault: str
    requests: int
    failed: collections.Counter[str]
    gap: float
    gap_kind: str
    recovery: float
    repair: float
    broken: list[str]
    server_errors: int


def longest_gap(outcomes: list[Outcome], t0: float, t1: float) -> tuple[float, str]:
    """The longest time, within [t0, t1], that one kind of request went
    without a success."""
    worst, which = 0.0, ""
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    for o in outcomes:
        if o.ok:
            by_kind[o.kind].append(o.end)
    kinds = {o.kind for o in outcomes}
    for kind in kinds:
        ends = [t0, *sorted(by_kind[kind]), t1]
        gap = max(b - a for a, b in itertools.pairwise(ends))
        if gap > worst:
            worst, which = gap, kind
    return worst, which


def recovery_time(outcomes: list[Outcome], t_fault: float) -> float:
    """From the fault until its last failed request (0 when none failed);
    every kind of request succeeded after that (``one_round`` waits for it)."""
    failures = [o.end for o in outcomes if not o.ok and o.end >= t_fault]
    return max(failures) - t_fault if failures else 0.0


def one_round(cloud: Cloud, fault: Fault, load: Load, args: argparse.Namespace,
              ) -> Row:
    say(f"{fault.name}: {fault.describe}")
    load.start()
    time.sleep(args.before)
    t_fault = time.monotonic()
    repair = fault.run(cloud, args)
    wait("the cloud healthy again", 120, cloud.all_healthy)
    # Every kind of request succeeds again (or the window ends).
    kinds = {"object PUT", "object GET", "object DELETE", "token issue", "token validate"}
    if load.flavor is not None:
        kinds |= {"server create", "server delete"}
    t_healed = time.monotonic()

    def all_kinds_ok() -> bool:
        done = {o.kind for o in load.recorder.between(t_healed, time.monotonic()) if o.ok}
        return kinds <= done

    stuck: list[str] = []
    try:
        wait("every kind of request to succeed again", 120, all_kinds_ok)
    except SystemExit:
        done = {o.kind for o in load.recorder.between(t_healed, time.monotonic()) if o.ok}
        stuck = [f"{kind} never succeeded again within 120 s" for kind in kinds - done]
    time.sleep(args.after)
    t_end = time.monotonic()
    load.stop()
    window = load.recorder.between(t_fault - args.before, t_end)
    failed = collections.Counter(f"{o.kind} {o.what}" for o in window if not o.ok)
    gap, gap_kind = longest_gap(window, t_fault - args.before, t_end)
    node = next(n for n in cloud.nodes if healthy(n))
    broken = check_objects(node, load.user, load.ledger)
    more, server_errors = check_quota_and_servers(cloud, load.user, load.ledger, args.settle)
    row = Row(fault.name, len(window), failed, gap, gap_kind,
              recovery_time(window, t_fault), repair, stuck + broken + more, server_errors)
    say(f"{fault.name}: {len(window)} requests, {sum(failed.values())} failed, gap"
        f" {gap:.2f} s ({gap_kind}), recovery {row.recovery:.2f} s,"
        f" invariants {'hold' if not row.broken else 'BROKEN: ' + '; '.join(row.broken[:5])}")
    return row


# -- the embedded default ---------------------------------------------------------------


def embedded_round(root: Path, args: argparse.Namespace) -> Row:
    """One node on its private PostgreSQL; its postmaster SIGKILLed."""
    state = root / "embedded"
    state.mkdir()
    state.chmod(0o755)
    node = CloudNode("", state, "identity,pithos", "", {})
    for env in (node.env, node.process.env):
        env.pop("SNFD_DATABASE_URL", None)
    try:
        say("embedded: starting a node on the embedded default ...")
        node.start(timeout=180, ready_path="/object-store/v1/nobody")
        wait("a leader", 60, lambda: leader_of(node) is not None)
        user = node.add_user("faults@example.org", "Fault")
        status, _ = node.api("PUT", f"/object-store/v1/{user.uuid}/{CONTAINER}", user.token)
        assert status in (201, 202), status
        balancer = Balancer([node.url])
        load = Load(balancer, user, Recorder(), Ledger(), None, None)

        class One:
            nodes = [node]

            def all_healthy(self) -> bool:
                return healthy(node) and leader_of(node) is not None

        def kill(_: Any, a: argparse.Namespace) -> float:
            t0 = time.monotonic()
            pid = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            wait("the embedded PostgreSQL to be restarted", 120, lambda: healthy(node)
                 and (state / "postgres" / "postmaster.pid").exists()
                 and int((state / "postgres" / "postmaster.pid").read_text().split()[0])
                 != pid)
            return time.monotonic() - t0

        fault = Fault("embedded-pg-kill",
                      "the embedded default's PostgreSQL SIGKILLed (the node restarts it)",
                      kill)
        try:
            say(f"{fault.name}: {fault.describe}")
            load.start()
            time.sleep(args.before)
            t_fault = time.monotonic()
            repair = kill(None, args)
            t_healed = time.monotonic()
            kinds = {"object PUT", "object GET", "object DELETE", "token issue",
                     "token validate"}
            try:
                wait("every kind of request to succeed again", 120, lambda: kinds <= {
                    o.kind for o in load.recorder.between(t_healed, time.monotonic())
                    if o.ok})
            except SystemExit:
                pass
            time.sleep(args.after)
            t_end = time.monotonic()
            load.stop()
        finally:
            balancer.close()
        window = load.recorder.between(t_fault - args.before, t_end)
        failed = collections.Counter(f"{o.kind} {o.what}" for o in window if not o.ok)
        gap, gap_kind = longest_gap(window, t_fault - args.before, t_end)
        broken = check_objects(node, user, load.ledger)
        held = holdings(node, user)
        _, head, _ = node.request("HEAD", f"/object-store/v1/{user.uuid}", user.token)
        used = int(head.get("x-account-bytes-used", -1))
        if held["pithos.diskspace"]["usage"] != used:
            broken.append(f"pithos.diskspace usage {held['pithos.diskspace']['usage']}"
                          f" != bytes used {used}")
        broken += [f"{r} pending {row['pending']}" for r, row in held.items() if row["pending"]]
        return Row(fault.name, len(window), failed, gap, gap_kind,
                   recovery_time(window, t_fault), repair, broken, 0)
    finally:
        node.stop()


# -- main -------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = ["| fault | requests | failed (kind status x count) | longest gap | recovery |"
             " repair | invariants |",
             "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        failed = ", ".join(f"{k} x{n}" for k, n in sorted(r.failed.items())) or "none"
        inv = "hold" if not r.broken else "BROKEN: " + "; ".join(r.broken[:4])
        if r.server_errors:
            inv += f" ({r.server_errors} servers in ERROR)"
        lines.append(f"| {r.fault} | {r.requests} | {failed} | {r.gap:.2f} s ({r.gap_kind})"
                     f" | {r.recovery:.2f} s | {r.repair:.1f} s | {inv} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated fault names (default: all)")
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=5.0)
    parser.add_argument("--down", type=float, default=5.0)
    parser.add_argument("--frozen", type=float, default=10.0)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    names = [f.name for f in FAULTS] + ["embedded-pg-kill"]
    wanted = args.only.split(",") if args.only else names
    unknown = set(wanted) - set(names)
    if unknown:
        raise SystemExit(f"unknown faults: {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(names)}")
    root = Path(tempfile.mkdtemp(prefix="snfd-faults-", dir="/tmp"))
    root.chmod(0o755)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        cluster_faults = [f for f in FAULTS if f.name in wanted]
        if "blocks-full" in wanted and os.geteuid() != 0:
            print("blocks-full: skipped: filling a filesystem of its own needs root (tmpfs)")
            cluster_faults = [f for f in cluster_faults if f.name != "blocks-full"]
        if cluster_faults:
            cloud = Cloud(root)
            try:
                cloud.start()
                user, flavor, image = cloud.prepare()
                balancer = Balancer([n.url for n in cloud.nodes])
                load = Load(balancer, user, Recorder(), Ledger(), flavor, image)
                try:
                    for fault in cluster_faults:
                        rows.append(one_round(cloud, fault, load, args))
                finally:
                    balancer.close()
                    if not load.stopping.is_set():
                        load.stopping.set()
            finally:
                cloud.stop()
        if "embedded-pg-kill" in wanted:
            rows.append(embedded_round(root, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores; load: 3 object, 2 token and 1 server thread(s)"
          f" through a health-checking balancer; {args.before:.0f} s of load before each"
          f" fault, {args.after:.0f} s after it answers again; whole run"
          f" {time.monotonic() - started:.0f} s")
    print(table(rows))
    gaps = [r.gap for r in rows if r.fault == "none"]
    if gaps:
        print(f"(the 'none' row is the floor: the longest gap with no fault,"
              f" {statistics.mean(gaps):.2f} s, comes from the load's own pace)")
    if any(r.broken for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
