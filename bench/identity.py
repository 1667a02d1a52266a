"""Token issue and validation rates of snfd and of a real OpenStack Keystone, side by side.

Starts one ``twistd snfd`` node (identity plugin only) on a fresh database of
the test PostgreSQL and takes the administrator it creates; unless
``--no-keystone``, also a real Keystone 2025.2 (``bench/keystone_peer.py``:
its own virtualenv made on first use in ``--keystone-venv``, default
``/work/keystone-venv``; gunicorn 4 workers x 2 threads, PostgreSQL, fernet
tokens, memcached cache, bcrypt) and its bootstrap admin.  It drives both
with 50 concurrent keep-alive clients from this process, the same Keystone
v3 JSON on both (snfd under ``<node>/identity/v3``, Keystone under
``<url>/v3``), phase by phase, snfd then Keystone:

- floor: ``GET .../v3``, the version document (the HTTP stack with no
  database and no crypto), the most any endpoint can reach on this machine
  in this run;
- v3 token issue with the password method (one password verification each:
  snfd's argon2id, Keystone's bcrypt; each single-core cost is measured too);
- v3 token issue with the token method (no password hashing);
- v3 validation (``GET .../v3/auth/tokens``, as the admin with a
  project-scoped token) of one token many times (the caches), and of many
  distinct tokens once each.

Prints requests/s, p50/p99 latency and the ratio snfd / Keystone (above 1:
snfd is faster).  Usage: ``python bench/identity.py [requests_per_phase]
[--no-keystone] [--keystone-venv DIR]`` (default 2000 requests; the
password phase runs a quarter of that).  The load generator shares the
machine's cores with both servers (both run while either is measured), so
the figures are lower bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import argon2
import keystone_peer  # bench/keystone_peer.py
import treq
from twisted.internet import defer, task
from twisted.web.client import HTTPConnectionPool

from snfd.testing.node import NodeProcess
from snfd.testing.postgres import create_database, drop_database

CONCURRENCY = 50
JSON = {"Content-Type": "application/json"}


def credentials(node: NodeProcess) -> tuple[str, str, str]:
    """(email, password, uuid) of the administrator the node created."""
    values = {}
    text = (node.state_dir / "admin-credentials").read_text()
    for line in text.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            values[k] = v
    return values["OS_USERNAME"], values["OS_PASSWORD"], values["OS_PROJECT_ID"]


def password_body(email: str, password: str, project: str) -> bytes:
    return json.dumps({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": email, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"id": project}}}}).encode()


def token_body(token: str, project: str) -> bytes:
    return json.dumps({"auth": {
        "identity": {"methods": ["token"], "token": {"id": token}},
        "scope": {"project": {"id": project}}}}).encode()


async def phase(pool, n: int, request) -> tuple[float, list[float]]:
    """Run ``request(i)`` n times with CONCURRENCY in flight: (rate, latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            resp = await request(i)
            body = await resp.content()
            if resp.code >= 400:
                raise SystemExit(f"request failed with {resp.code}: {body[:300]!r}")
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(CONCURRENCY)],
                              consumeErrors=True)
    return n / (time.perf_counter() - start), latencies


def line(name: str, rate: float, lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100)
    return (f"{name:<44} {rate:8.0f} req/s   p50 {q[49] * 1000:7.1f} ms"
            f"   p99 {q[98] * 1000:7.1f} ms   (n={len(lat)})")


class _Answered:
    """A response whose status the caller has taken care of."""
    code = 200

    def __init__(self, resp):
        self.resp = resp

    async def content(self):
        return await self.resp.content()


@dataclass
class Target:
    """One identity service: its Keystone v3 root, and an admin to log in as."""
    name: str
    v3: str  # snfd: <node>/identity/v3; Keystone: <url>/v3
    username: str
    password: str
    project: str
    hash_name: str
    hash_cost: float  # seconds of one password verification on one core


class Workload:
    """The requests of every phase against one target."""

    def __init__(self, target: Target, pool: HTTPConnectionPool):
        self.t, self.pool = target, pool
        self.token = ""
        self.many: list[str] = []

    async def version_document(self, i):
        return await treq.get(self.t.v3, pool=self.pool)

    async def issue_password(self, i):
        return await treq.post(self.t.v3 + "/auth/tokens", password_body(
            self.t.username, self.t.password, self.t.project), headers=JSON, pool=self.pool)

    async def issue_token(self, i):
        return await treq.post(self.t.v3 + "/auth/tokens", token_body(self.token, self.t.project),
                               headers=JSON, pool=self.pool)

    async def issue_and_keep(self, i):
        resp = await self.issue_token(i)
        self.many.append(resp.headers.getRawHeaders("X-Subject-Token")[0])
        return resp

    async def validate_same(self, i):
        return await treq.get(self.t.v3 + "/auth/tokens", pool=self.pool, headers={
            "X-Auth-Token": self.token, "X-Subject-Token": self.token})

    async def validate_distinct(self, i):
        return await treq.get(self.t.v3 + "/auth/tokens", pool=self.pool, headers={
            "X-Auth-Token": self.token, "X-Subject-Token": self.many[i]})

    async def warm_up(self) -> int:
        """Open the connections and take every worker through validation once:
        the number of requests refused meanwhile (Keystone's threaded workers
        answer 403 to a few concurrent first validations: a race in loading
        their policy)."""
        await phase(self.pool, 200, self.version_document)
        refused = 0

        async def tolerant(i):
            nonlocal refused
            resp = await self.validate_same(i)
            if resp.code == 403:
                refused += 1
                return _Answered(resp)
            return resp

        await phase(self.pool, 200, tolerant)
        return refused

    async def login(self) -> None:
        """The admin's project-scoped token (admin role: it may validate others)."""
        first = await self.issue_password(0)
        await first.content()
        if first.code != 201:
            raise SystemExit(f"{self.t.name}: password login answered {first.code}")
        self.token = first.headers.getRawHeaders("X-Subject-Token")[0]


def argon2_cost() -> float:
    """Seconds of one argon2id verification (argon2.PasswordHasher defaults, as
    snfd hashes) on one core."""
    hasher = argon2.PasswordHasher()
    encoded = hasher.hash("benchmark password")
    t = time.perf_counter()
    for _ in range(5):
        hasher.verify(encoded, "benchmark password")
    return (time.perf_counter() - t) / 5


async def run(reactor, targets: list[Target], n: int) -> None:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = CONCURRENCY
    loads = [Workload(t, pool) for t in targets]
    refused = {}
    for w in loads:
        await w.login()
        refused[w.t.name] = await w.warm_up()

    phases = [
        ("floor: GET v3 version document", n, "version_document"),
        ("v3 issue, password method", max(50, n // 4), "issue_password"),
        ("v3 issue, token method", n, "issue_and_keep"),
        ("v3 validate, same token (cache)", n, "validate_same"),
        ("v3 validate, distinct tokens (cache misses)", n, "validate_distinct"),
    ]
    results: dict[str, dict[str, tuple[float, list[float]]]] = {}
    for title, count, method in phases:  # interleaved: each phase on every target in turn
        for w in loads:
            print(f"{title}: {w.t.name} ...", file=sys.stderr)
            results.setdefault(title, {})[w.t.name] = await phase(
                pool, count, getattr(w, method))
    await pool.closeCachedConnections()

    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores, shared by the load generator and every server;"
          f" {CONCURRENCY} concurrent keep-alive clients in one process")
    for t in targets:
        print(f"{t.name}: {t.hash_name} verify {t.hash_cost * 1000:.0f} ms on one core"
              f" -> at most {cores / t.hash_cost:.0f} password logins/s with every core hashing")
    for name, count in refused.items():
        if count:
            print(f"{name}: {count} of 200 warm-up validations refused with 403"
                  " (first validations in each worker; none is measured)")
    names = [t.name for t in targets]
    print(f"{'phase':<44} {'server':<9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}"
          + (f"   {names[0]}/{names[1]}" if len(names) == 2 else ""))
    for title, _, _ in phases:
        row = results[title]
        for k, name in enumerate(names):
            rate, lat = row[name]
            q = statistics.quantiles(lat, n=100)
            ratio = ""
            if k == 0 and len(names) == 2:
                ratio = f"   {rate / row[names[1]][0]:6.2f}x"
            print(f"{title if k == 0 else '':<44} {name:<9} {rate:8.0f} {q[49] * 1000:8.1f}"
                  f" {q[98] * 1000:8.1f} {len(lat):6d}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requests", type=int, nargs="?", default=2000,
                        help="requests per phase (the password phase runs a quarter)")
    parser.add_argument("--keystone", action=argparse.BooleanOptionalAction, default=True,
                        help="run the same workload on a real Keystone too (default: yes)")
    parser.add_argument("--keystone-venv", type=Path, default=keystone_peer.DEFAULT_VENV,
                        help="Keystone's virtualenv, made on first use")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups

    with contextlib.ExitStack() as stack:
        admin, dbname, dsn = create_database("snfd_bench")
        stack.callback(drop_database, admin, dbname)
        fd, name = tempfile.mkstemp(suffix=".conf")
        os.write(fd, b"[database]\nauto_upgrade = yes\npool_max = 10\n")
        os.close(fd)
        config = Path(name)
        stack.callback(config.unlink, missing_ok=True)
        node = NodeProcess(env={"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity"},
                           args=["--config", str(config)])
        stack.callback(node.cleanup)
        node.start()
        keystone = None
        if args.keystone:
            print("starting Keystone ...", file=sys.stderr)
            keystone = stack.enter_context(keystone_peer.running_keystone(args.keystone_venv))
        task.react(lambda reactor: defer.ensureDeferred(
            _main(reactor, node, keystone, args.requests)))


async def _main(reactor, node: NodeProcess, keystone: keystone_peer.KeystonePeer | None,
                n: int) -> None:
    await node.wait_ready(reactor)
    deadline = time.monotonic() + 30
    while not (node.state_dir / "admin-credentials").exists():
        if time.monotonic() > deadline:
            raise SystemExit("the node created no administrator:\n" + node.tail())
        await task.deferLater(reactor, 0.1, lambda: None)
    email, password, project = credentials(node)
    targets = [Target("snfd", node.url + "/identity/v3", email, password, project,
                      "argon2id (argon2-cffi defaults)", argon2_cost())]
    if keystone is not None:
        targets.append(Target(
            "Keystone", keystone.url + "/v3", keystone.username, keystone.password,
            keystone.project_id,
            f"{keystone_peer.HASH_ALGORITHM} ({keystone_peer.HASH_ROUNDS} rounds)",
            keystone.hash_cost()))
    await run(reactor, targets, n)


if __name__ == "__main__":
    main()
