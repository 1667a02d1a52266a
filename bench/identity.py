"""Token issue and validation rates of a real ``twistd snfd`` identity node.

Starts one node (identity plugin only) on a fresh database of the test
PostgreSQL, takes the administrator it creates, and drives it with 50
concurrent keep-alive clients from this process:

- floor: ``GET /identity/v3``, the version document (the HTTP stack with no
  database and no crypto),
  the most any endpoint can reach on this machine in this run;
- Keystone v3 token issue with the password method (one argon2id
  verification each; its single-core cost is measured here too);
- Keystone v3 token issue with the token method (no password hashing);
- Keystone v3 validation (``GET /identity/v3/auth/tokens``) of one token
  many times (the node's cache), and of many distinct tokens once each
  (every one a database read).

Prints requests/s and p50/p99 latency.  Usage:
``python bench/identity.py [requests_per_phase]`` (default 2000; the
password phase runs a quarter of that).  The load generator shares the
machine's cores with the node, so the figures are lower bounds.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import argon2
import treq
from twisted.internet import defer, task
from twisted.web.client import HTTPConnectionPool

from snfd.testing.node import NodeProcess
from snfd.testing.postgres import create_database, drop_database

CONCURRENCY = 50


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


async def phase(reactor, pool, n: int, request) -> tuple[float, list[float]]:
    """Run ``request(i)`` n times with CONCURRENCY in flight: (rate, latencies)."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            resp = await request(i)
            await resp.content()
            if resp.code >= 400:
                raise SystemExit(f"request failed with {resp.code}")
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(CONCURRENCY)],
                              consumeErrors=True)
    return n / (time.perf_counter() - start), latencies


def line(name: str, rate: float, lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100)
    return (f"{name:<44} {rate:8.0f} req/s   p50 {q[49] * 1000:7.1f} ms"
            f"   p99 {q[98] * 1000:7.1f} ms   (n={len(lat)})")


async def run(reactor, node: NodeProcess, n: int) -> None:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = CONCURRENCY
    email, password, project = credentials(node)
    url = node.url
    headers = {"Content-Type": "application/json"}

    async def version_document(i):
        return await treq.get(url + "/identity/v3", pool=pool)

    async def issue_password(i):
        return await treq.post(url + "/identity/v3/auth/tokens", password_body(
            email, password, project), headers=headers, pool=pool)

    first = await issue_password(0)
    token = first.headers.getRawHeaders("X-Subject-Token")[0]
    await first.content()

    async def issue_token(i):
        return await treq.post(url + "/identity/v3/auth/tokens", token_body(token, project),
                               headers=headers, pool=pool)

    async def validate_same(i):
        return await treq.get(url + "/identity/v3/auth/tokens", pool=pool, headers={
            "X-Auth-Token": token, "X-Subject-Token": token})

    many: list[str] = []

    async def issue_and_keep(i):
        resp = await issue_token(i)
        many.append(resp.headers.getRawHeaders("X-Subject-Token")[0])
        return resp

    async def validate_distinct(i):
        return await treq.get(url + "/identity/v3/auth/tokens", pool=pool, headers={
            "X-Auth-Token": token, "X-Subject-Token": many[i]})

    hasher = argon2.PasswordHasher()
    encoded = hasher.hash("benchmark password")
    t = time.perf_counter()
    for _ in range(5):
        hasher.verify(encoded, "benchmark password")
    argon = (time.perf_counter() - t) / 5
    cores = os.cpu_count() or 1

    await phase(reactor, pool, 200, version_document)  # warm up connections
    results = [("floor: GET /identity/v3 (no DB, no crypto)",
                *await phase(reactor, pool, n, version_document))]
    results.append(("v3 issue, password method (argon2id)",
                    *await phase(reactor, pool, max(50, n // 4), issue_password)))
    results.append(("v3 issue, token method", *await phase(reactor, pool, n, issue_and_keep)))
    results.append(("v3 validate, same token (node cache)",
                    *await phase(reactor, pool, n, validate_same)))
    results.append(("v3 validate, distinct tokens (cache misses)",
                    *await phase(reactor, pool, len(many), validate_distinct)))
    await pool.closeCachedConnections()

    print(f"machine: {cores} cores; argon2id verify {argon * 1000:.0f} ms on one core"
          f" -> at most {cores / argon:.0f} password logins/s with every core hashing")
    print(f"{CONCURRENCY} concurrent keep-alive clients in one process on the same machine")
    for name, rate, lat in results:
        print(line(name, rate, lat))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    admin, dbname, dsn = create_database("snfd_bench")
    fd, name = tempfile.mkstemp(suffix=".conf")
    os.write(fd, b"[database]\nauto_upgrade = yes\npool_max = 10\n")
    os.close(fd)
    config = Path(name)
    node = NodeProcess(env={"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity"},
                       args=["--config", str(config)])
    try:
        node.start()
        task.react(lambda reactor: defer.ensureDeferred(_main(reactor, node, n)))
    finally:
        node.cleanup()
        config.unlink(missing_ok=True)
        drop_database(admin, dbname)


async def _main(reactor, node: NodeProcess, n: int) -> None:
    await node.wait_ready(reactor)
    deadline = time.monotonic() + 30
    while not (node.state_dir / "admin-credentials").exists():
        if time.monotonic() > deadline:
            raise SystemExit("the node created no administrator:\n" + node.tail())
        await task.deferLater(reactor, 0.1, lambda: None)
    await run(reactor, node, n)


if __name__ == "__main__":
    main()
