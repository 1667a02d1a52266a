"""Throughput of the storage service beside the machine's physical limits.

Starts one ``twistd snfd`` node (identity and pithos plugins) on a fresh
database of the test PostgreSQL with its block store in a temporary
directory, makes a user with ``snf-manage user-add``, and measures, in the
same run:

- the limits: raw disk write (``dd bs=4M count=256 conv=fdatasync`` into
  the block store's filesystem), raw disk read (``dd`` of that file after
  dropping the page cache -- only as root; otherwise the figure is the
  page cache's and says so), SHA-256 and MD5 on one core (an upload hashes
  every block with SHA-256 and the whole stream with MD5), a 4 KiB
  write+fsync rate, and the HTTP floor (``GET /_health`` with the same
  concurrency as the small-object phases);
- PUT and GET of one 1 GiB object of random data in one request each,
  streamed from a file and discarded on arrival (the client holds 1 MiB);
- 4 KiB object PUT, GET and HEAD per second with 16 concurrent keep-alive
  clients (threads with ``http.client``), about 10 s each;
- the body bytes the ``snf`` client library (``snfd.client``) sends to
  upload a 1 GiB file that the server already has, and the same file with
  one block changed (the minimum: the hashmap, plus one block).

Prints a table: figure, value, physical limit, ratio.  Usage:
``python bench/pithos.py [--size-mib N] [--seconds S] [--clients C]``, or
against a running node ``--url URL --token TOKEN [--block-path DIR]``
(the limits are then measured in DIR, by default a temporary directory).
The load generator shares the machine's cores with the node, so the
figures are lower bounds.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

from snfd.testing.node import NodeProcess, http_get
from snfd.testing.postgres import create_database, drop_database

MiB = 1024 * 1024
BLOCK = 4 * MiB
MANAGE = [sys.executable, "-m", "snfd.cli.manage"]


# -- physical limits ----------------------------------------------------------------


def dd_rate(argv: list[str]) -> float:
    """MB/s of a dd run (from the byte count and seconds it prints)."""
    proc = subprocess.run(["dd", *argv], capture_output=True, text=True, check=True)
    m = re.search(r"(\d+) bytes .* copied, ([\d.e+-]+) s", proc.stderr)
    if not m:
        raise SystemExit(f"cannot read dd's output: {proc.stderr}")
    return int(m.group(1)) / float(m.group(2)) / 1e6


def drop_caches() -> bool:
    """Drop the page cache if we may (root): True if it was dropped."""
    if os.geteuid() != 0:
        return False
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def disk_rates(directory: Path) -> tuple[float, float, bool]:
    """(write MB/s, read MB/s, read was uncached) in ``directory``."""
    target = directory / "bench-dd.tmp"
    try:
        write = dd_rate(["if=/dev/zero", f"of={target}", "bs=4M", "count=256",
                         "conv=fdatasync"])
        uncached = drop_caches()
        read = dd_rate([f"if={target}", "of=/dev/null", "bs=4M"])
    finally:
        target.unlink(missing_ok=True)
    return write, read, uncached


def hash_rate(name: str, mib: int = 512) -> float:
    """MB/s of hashlib ``name`` over 4 MiB blocks on one core."""
    block = os.urandom(BLOCK)
    start = time.perf_counter()
    for _ in range(mib // 4):
        hashlib.new(name, block).digest()
    return mib * MiB / (time.perf_counter() - start) / 1e6


def fsync_rate(directory: Path, seconds: float = 2.0) -> float:
    """4 KiB file writes with fsync (file and directory) per second, one thread."""
    data = os.urandom(4096)
    scratch = directory / "bench-fsync"
    scratch.mkdir(exist_ok=True)
    dfd = os.open(scratch, os.O_RDONLY)
    n = 0
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            tmp = scratch / f"t{n}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, scratch / f"b{n}")
            os.fsync(dfd)
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        os.close(dfd)
        shutil.rmtree(scratch, ignore_errors=True)


# -- HTTP -----------------------------------------------------------------------------


class Account:
    """Where and as whom the benchmark talks to the object store."""

    def __init__(self, url: str, token: str, uuid: str):
        self.url = url.rstrip("/")
        self.token = token
        self.uuid = uuid
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path

    def path(self, container: str, name: str = "") -> str:
        p = f"{self.prefix}/object-store/v1/{self.uuid}/{quote(container)}"
        return f"{p}/{quote(name)}" if name else p

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=600)

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = self.connect()
        try:
            conn.request(method, path, body=body,
                         headers={"X-Auth-Token": self.token, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def put_large(account: Account, path: str, source: Path) -> float:
    """PUT the file at ``source`` in one request, 1 MiB at a time: MB/s."""
    size = source.stat().st_size
    conn = account.connect()
    try:
        start = time.perf_counter()
        conn.putrequest("PUT", path)
        conn.putheader("X-Auth-Token", account.token)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        with open(source, "rb") as f:
            while chunk := f.read(MiB):
                conn.send(chunk)
        resp = conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 201:
            raise SystemExit(f"PUT of {size} bytes answered {resp.status}")
        return size / elapsed / 1e6
    finally:
        conn.close()


def get_large(account: Account, path: str, size: int) -> float:
    """GET ``path`` into a 1 MiB buffer (discarded): MB/s."""
    conn = account.connect()
    buf = memoryview(bytearray(MiB))
    try:
        start = time.perf_counter()
        conn.request("GET", path, headers={"X-Auth-Token": account.token})
        resp = conn.getresponse()
        got = 0
        while n := resp.readinto(buf):
            got += n
        elapsed = time.perf_counter() - start
        if resp.status != 200 or got != size:
            raise SystemExit(f"GET answered {resp.status} with {got} of {size} bytes")
        return size / elapsed / 1e6
    finally:
        conn.close()


def concurrent_rate(account: Account, clients: int, seconds: float, make) -> float:
    """Requests per second of ``clients`` threads, each with one keep-alive
    connection, sending ``make(client, i) -> (method, path, body)`` for
    ``seconds``; any status >= 300 aborts the run."""
    counts = [0] * clients
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        conn = account.connect()
        try:
            i = 0
            while time.perf_counter() < stop and not errors:
                method, path, body = make(k, i)
                headers = {"X-Auth-Token": account.token}
                if body is not None:
                    headers["Content-Type"] = "application/octet-stream"
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 300:
                    errors.append(f"{method} {path}: {resp.status}")
                    return
                i += 1
                counts[k] = i
        except (OSError, http.client.HTTPException) as e:
            errors.append(repr(e))
        finally:
            conn.close()

    elapsed = timed_threads([threading.Thread(target=worker, args=(k,))
                             for k in range(clients)])
    if errors:
        raise SystemExit(f"small-object phase failed: {errors[0]}")
    return sum(counts) / elapsed


def timed_threads(threads: list[threading.Thread]) -> float:
    """Start ``threads``, wait for all of them; the seconds that took."""
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


# -- the snf client -------------------------------------------------------------------


def snf_bytes(account: Account, source: Path, size: int) -> tuple[int, int, int] | None:
    """Body bytes ``snfd.client`` sends to upload ``source`` (already on the
    server) unchanged, and with one block changed, and the size of the
    hashmap it sends; None without the client library."""
    try:
        from snfd.client import pithos as snf_pithos
        from snfd.client import sync as snf_sync
    except ImportError:
        return None
    transport = snf_pithos.Transport()
    try:
        client = snf_pithos.PithosClient(
            transport, f"{account.url}/object-store/v1/{account.uuid}", account.token)
        snf_sync.upload_file(client, source, "bench", "snf.bin")  # the baseline copy
        before = transport.counters.sent
        snf_sync.upload_file(client, source, "bench", "snf.bin")
        unchanged = transport.counters.sent - before
        with open(source, "r+b") as f:
            f.seek((size // BLOCK // 2) * BLOCK)
            f.write(os.urandom(4096))
        before = transport.counters.sent
        snf_sync.upload_file(client, source, "bench", "snf.bin")
        changed = transport.counters.sent - before
    finally:
        transport.close()
    blocks = -(-size // BLOCK)
    hashmap = len(json.dumps({"bytes": size, "hashes": ["0" * 64] * blocks}))
    return unchanged, changed, hashmap


# -- the run --------------------------------------------------------------------------


def write_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, BLOCK)
            f.write(os.urandom(n))
            left -= n


def run(account: Account, scratch: Path, size: int, seconds: float, clients: int) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: float, unit: str, limit: float | None, note: str = "") -> None:
        ratio = f"{value / limit:.0%}" if limit else "-"
        lim = f"{limit:,.0f} {unit}{note}" if limit else note or "-"
        rows.append((name, f"{value:,.0f} {unit}", lim, ratio))

    print("measuring the machine's limits ...", file=sys.stderr)
    write, read, uncached = disk_rates(scratch)
    sha = hash_rate("sha256")
    md5 = hash_rate("md5")
    fsyncs = fsync_rate(scratch)
    floor = concurrent_rate(account, clients, min(seconds, 5.0),
                            lambda k, i: ("GET", "/_health", None))
    status, _ = account.call("PUT", account.path("bench"))
    if status not in (201, 202):
        raise SystemExit(f"container PUT answered {status}")

    print(f"PUT/GET of a {size // MiB} MiB object ...", file=sys.stderr)
    source = scratch / "bench-object.bin"
    write_random_file(source, size)
    try:
        put = put_large(account, account.path("bench", "large"), source)
        dropped = drop_caches()
        get = get_large(account, account.path("bench", "large"), size)

        print(f"4 KiB objects, {clients} clients, {seconds:.0f} s per phase ...",
              file=sys.stderr)
        small = os.urandom(4096)
        written = [0] * clients

        def put_small(k: int, i: int):
            written[k] = i + 1
            return "PUT", account.path("bench", f"small/{k}/{i}"), small

        puts = concurrent_rate(account, clients, seconds, put_small)

        def read_small(method: str):
            def make(k: int, i: int):
                return method, account.path("bench", f"small/{k}/{i % max(1, written[k])}"), None
            return make

        gets = concurrent_rate(account, clients, seconds, read_small("GET"))
        heads = concurrent_rate(account, clients, seconds, read_small("HEAD"))

        print("snf client upload of an unchanged / one-block-changed file ...",
              file=sys.stderr)
        snf = snf_bytes(account, source, size)
    finally:
        source.unlink(missing_ok=True)

    put_limit = min(write, sha, md5)
    row(f"PUT {size // MiB} MiB object (MB/s)", put, "MB/s", put_limit,
        " (min of disk write, SHA-256, MD5)")
    row(f"GET {size // MiB} MiB object (MB/s)", get, "MB/s", read,
        " (disk read)" if uncached and dropped else " (page cache: not root)")
    row(f"4 KiB PUT, {clients} clients (req/s)", puts, "req/s", floor, " (HTTP floor)")
    row(f"4 KiB GET, {clients} clients (req/s)", gets, "req/s", floor, " (HTTP floor)")
    row(f"4 KiB HEAD, {clients} clients (req/s)", heads, "req/s", floor, " (HTTP floor)")
    if snf is None:
        rows.append(("snf upload, unchanged file", "(no snfd.client)", "-", "-"))
    else:
        unchanged, changed, hashmap = snf
        rows.append((f"snf upload, unchanged {size // MiB} MiB file", f"{unchanged:,} B",
                     f"{hashmap:,} B (the hashmap)", f"{hashmap / max(1, unchanged):.0%}"))
        rows.append(("snf upload, one block changed", f"{changed:,} B",
                     f"{hashmap + BLOCK:,} B (hashmap + 1 block)",
                     f"{(hashmap + BLOCK) / max(1, changed):.0%}"))

    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores; limits measured in {scratch}")
    print(f"disk write {write:,.0f} MB/s (dd 1 GiB, fdatasync); disk read {read:,.0f} MB/s"
          + ("" if uncached else " (cached: not root, page cache not dropped)"))
    print(f"SHA-256 {sha:,.0f} MB/s and MD5 {md5:,.0f} MB/s on one core;"
          f" 4 KiB write+fsync {fsyncs:,.0f}/s on one thread;"
          f" HTTP floor GET /_health {floor:,.0f} req/s with {clients} clients")
    print("the load generator runs on the same machine as the node\n")
    widths = [max(len(r[i]) for r in [("figure", "value", "physical limit", "ratio"), *rows])
              for i in range(4)]
    header = ("figure", "value", "physical limit", "ratio")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) if i == 0 or i == 2 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def start_node(root: Path) -> tuple[NodeProcess, Account, tuple[str, str]]:
    admin, dbname, dsn = create_database("snfd_bench")
    config = root / "node.conf"
    config.write_text(f"[database]\nauto_upgrade = yes\npool_max = 10\n"
                      f"[pithos]\nblock_path = {root / 'blocks'}\n")
    env = {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": "identity,pithos"}
    node = NodeProcess(env=env, args=["--config", str(config)], state_dir=root / "state")
    node.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            if node.proc is not None and node.proc.poll() is not None:
                raise SystemExit("the node exited:\n" + node.tail())
            try:
                if http_get(node.url + "/_health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the node did not start:\n" + node.tail())
            time.sleep(0.1)
        proc = subprocess.run(
            [*MANAGE, "--config", str(config), "user-add", "--email", "bench@example.org",
             "--first-name", "Bench", "--activate", "--json"],
            env=dict(os.environ, SNFD_STATE_DIR=str(node.state_dir), **env),
            capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"snf-manage user-add failed:\n{proc.stderr}")
        made = json.loads(proc.stdout)
    except BaseException:
        node.cleanup()
        drop_database(admin, dbname)
        raise
    return node, Account(node.url, made["token"], made["uuid"]), (admin, dbname)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running node (default: start one)")
    parser.add_argument("--token", help="a user's token on --url")
    parser.add_argument("--block-path", help="a directory on the block store's filesystem")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    size = args.size_mib * MiB

    if args.url:
        if not args.token:
            parser.error("--url needs --token")
        status, body = Account(args.url, args.token, "").call(
            "GET", urlsplit(args.url).path + "/identity/v3/auth/tokens",
            headers={"X-Subject-Token": args.token})
        if status != 200:
            raise SystemExit(f"the token was refused ({status})")
        uuid = json.loads(body)["token"]["user"]["id"]
        if args.block_path:
            run(Account(args.url, args.token, uuid), Path(args.block_path), size,
                args.seconds, args.clients)
            return
        scratch = Path(tempfile.mkdtemp(prefix="snfd-bench-"))
        try:
            run(Account(args.url, args.token, uuid), scratch, size, args.seconds, args.clients)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return

    root = Path(tempfile.mkdtemp(prefix="snfd-bench-pithos-"))
    node, account, (admin, dbname) = start_node(root)
    try:
        run(account, root, size, args.seconds, args.clients)
    finally:
        node.cleanup()
        drop_database(admin, dbname)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
