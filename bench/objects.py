"""The same object-storage workload on snfd and on a real OpenStack Swift, side by side.

One run starts an snfd node (``twistd snfd`` with the identity and pithos
plugins, on a fresh database of the test PostgreSQL, its block store in a
temporary directory) and a real Swift (``swift==2.38.*`` from its own
virtualenv, made on first use in ``--swift-venv``, default
``/work/swift-venv``): one replica, one proxy, account, container and object
server with one worker each on free ports of 127.0.0.1, tempauth, its
devices in a temporary directory on the same filesystem as snfd's blocks.
It then runs the same workload on both, interleaved round by round (snfd,
Swift, snfd, Swift ...), and prints the median of each figure, the ratio
snfd / Swift (above 1: snfd is faster), and the machine's limits measured
in the same run:

- a large object of random data (``--large-mib``, default 256) with
  ``curl``: PUT (the file to send in the page cache), GET after dropping
  the page cache ("cold", only as root; otherwise the row says it was not
  dropped), and GET again ("warm": a re-read).  The first GET right after
  the PUT is not measured warm: on this machine it ran at half the speed of
  the next ones on both servers, even after a ``sync``;
- 4 KiB objects: ``--small-count`` (default 500) each of PUT, GET, HEAD and
  DELETE over one keep-alive connection (``http.client``), then the same
  with 16 keep-alive client threads sharing the objects;
- the limits: raw disk write (``dd conv=fdatasync`` of ``--large-mib`` into
  the same filesystem) and read (after dropping the page cache), SHA-256 and
  MD5 on one core (hashlib), loopback TCP throughput, the durable small
  write (a 4 KiB block made durable as snfd's filesystem store does, and one
  PostgreSQL commit: what bounds a small PUT), and the HTTP floor of
  each server with 1 and 16 clients: snfd's ``GET /_health`` (which pings
  its database) and ``GET /identity/v3`` (the version document, touching
  nothing, as Swift's), Swift's ``GET /healthcheck``.

Swift's proxy caches tokens and account/container info in an in-process
dictionary (a paste filter written into the temporary directory) instead
of memcached, which this machine does not have; everything else is stock,
including the object server dropping the page cache of authenticated
objects of ``keep_cache_size`` (5 MiB) or more after writing and reading
them: Swift's "warm" large GET reads the disk.
Timings are reported, never judged: there is no pass/fail.  The load
generator shares the machine's cores with both servers.

Usage: ``python bench/objects.py [--rounds N] [--small-count N] [--large-mib N]
[--clients N] [--swift-venv DIR]``; small: ``--rounds 1 --small-count 100
--large-mib 64``.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

from pithos import (  # bench/pithos.py, the single-node storage bench
    Account,
    concurrent_rate,
    dd_rate,
    drop_caches,
    hash_rate,
    timed_threads,
    write_random_file,
)

from snfd.testing.cloudnode import CloudNode
from snfd.testing.node import free_port
from snfd.testing.postgres import create_database, drop_database

MiB = 1024 * 1024
SWIFT = "swift==2.38.*"
SWIFT_USER, SWIFT_KEY = "bench:bencher", "benchkey"
SMALL = 4096


# -- Swift -----------------------------------------------------------------------------


def swift_venv(path: Path) -> Path:
    """The ``bin`` directory of the virtualenv at ``path`` with Swift in it,
    made and installed on first use (a ``.installed-<spec>`` marker)."""
    stamp = path / f".installed-{SWIFT}"
    if not stamp.exists():
        print(f"==> installing {SWIFT} into {path}", file=sys.stderr)
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", SWIFT], check=True,
                       stdout=subprocess.DEVNULL)
        stamp.touch()
    return path / "bin"


#: A paste filter standing in for memcached: tempauth keeps its tokens in
#: ``swift.cache`` and the proxy its account/container info.  One proxy
#: worker, so one process-wide dictionary is the whole cache.
CACHE_FILTER = '''\
import threading
import time


class DictCache:
    def __init__(self):
        self._data = {}
        self._lock = threading.Lock()

    def _live(self, key):
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires and expires < time.time():
            self._data.pop(key, None)
            return None
        return item

    def get(self, key, raise_on_error=False, **kw):
        item = self._live(key)
        return None if item is None else item[0]

    def set(self, key, value, serialize=True, time=0, min_compress_len=0,
            raise_on_error=False, **kw):
        self._data[key] = (value, _expiry(time))

    def incr(self, key, delta=1, time=0, **kw):
        with self._lock:
            item = self._live(key)
            value = int(item[0]) + delta if item else delta
            self._data[key] = (value, item[1] if item else _expiry(time))
            return value

    def decr(self, key, delta=1, time=0, **kw):
        return self.incr(key, -delta, time)

    def delete(self, key, **kw):
        self._data.pop(key, None)

    def get_multi(self, keys, server_key, **kw):
        return [self.get(f"{server_key}/{k}") for k in keys]

    def set_multi(self, mapping, server_key, serialize=True, time=0, **kw):
        for k, v in mapping.items():
            self.set(f"{server_key}/{k}", v, time=time)


def _expiry(ttl):
    if not ttl:
        return 0
    return ttl if ttl > 30 * 86400 else time.time() + ttl


def filter_factory(global_conf, **local_conf):
    cache = DictCache()

    def make(app):
        def middleware(env, start_response):
            env["swift.cache"] = cache
            return app(env, start_response)
        return middleware
    return make
'''


class SwiftAccount(Account):
    """A tempauth account of the Swift proxy: paths under ``/v1/AUTH_<name>``."""

    def path(self, container: str, name: str = "") -> str:
        p = f"/v1/{self.uuid}/{quote(container)}"
        return f"{p}/{quote(name)}" if name else p


class SwiftCluster:
    """A one-replica Swift: proxy, account, container and object server, one
    worker each, on free ports of 127.0.0.1; config, rings, devices and
    logs under ``root``.  ``stop`` ends the process groups it started."""

    SERVERS = ("account", "container", "object", "proxy")

    def __init__(self, bindir: Path, root: Path):
        self.bindir = bindir
        self.root = root
        self.etc = root / "etc"
        self.devices = root / "srv"
        self.logs = root / "log"
        self.ports = {name: free_port() for name in self.SERVERS}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy']}"

    def _check_xattrs(self) -> None:
        probe = self.devices / ".xattr-probe"
        probe.touch()
        try:
            os.setxattr(probe, "user.swift.probe", b"x" * 1024)
        except OSError as e:
            raise SystemExit(f"{self.devices} does not take user xattrs ({e}): Swift needs"
                             " them; run with TMPDIR on a filesystem that does") from e
        finally:
            probe.unlink()

    def _configure(self) -> None:
        for d in (self.etc, self.devices / "d1", self.logs, self.root / "cache"):
            d.mkdir(parents=True, exist_ok=True)
        self._check_xattrs()
        (self.etc / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_suffix = snfd-bench\n"
            "swift_hash_path_prefix = snfd-bench\n"
            "[storage-policy:0]\nname = gold\ndefault = yes\n")
        (self.root / "benchcache.py").write_text(CACHE_FILTER)
        common = (f"[DEFAULT]\nbind_ip = 127.0.0.1\nworkers = 1\nuser = {getpass.getuser()}\n"
                  f"swift_dir = {self.etc}\ndevices = {self.devices}\nmount_check = false\n"
                  f"recon_cache_path = {self.root / 'cache'}\n")
        for name in ("account", "container", "object"):
            (self.etc / f"{name}-server.conf").write_text(
                common + f"bind_port = {self.ports[name]}\nlog_name = {name}-server\n"
                f"[pipeline:main]\npipeline = {name}-server\n"
                f"[app:{name}-server]\nuse = egg:swift#{name}\n")
        filters = ["catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "cache",
                   "listing_formats", "tempauth", "copy", "dlo", "slo", "proxy-logging"]
        account, user = SWIFT_USER.split(":")
        proxy = (common + f"bind_port = {self.ports['proxy']}\nlog_name = proxy-server\n"
                 f"[pipeline:main]\npipeline = {' '.join(filters)} proxy-server\n"
                 "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
                 "[filter:cache]\npaste.filter_factory = benchcache:filter_factory\n"
                 f"[filter:tempauth]\nuse = egg:swift#tempauth\n"
                 f"user_{account}_{user} = {SWIFT_KEY} .admin\n")
        for f in dict.fromkeys(filters):
            if f not in ("cache", "tempauth"):
                proxy += f"[filter:{f}]\nuse = egg:swift#{f.replace('-', '_')}\n"
        (self.etc / "proxy-server.conf").write_text(proxy)
        builder = str(self.bindir / "swift-ring-builder")
        for name in ("account", "container", "object"):
            ring = str(self.etc / f"{name}.builder")
            for argv in (["create", "6", "1", "1"],
                         ["add", f"r1z1-127.0.0.1:{self.ports[name]}/d1", "100"],
                         ["rebalance"]):
                proc = subprocess.run([builder, ring, *argv], capture_output=True,
                                      text=True, check=False)
                if proc.returncode not in (0, 1):  # 1: a warning
                    raise SystemExit(f"swift-ring-builder {argv[0]} failed:\n"
                                     f"{proc.stdout}{proc.stderr}")
            if not (self.etc / f"{name}.ring.gz").exists():
                raise SystemExit(f"swift-ring-builder made no {name}.ring.gz")

    def start(self, timeout: float = 60.0) -> SwiftAccount:
        self._configure()
        env = dict(os.environ, PYTHONPATH=str(self.root))
        env.pop("VIRTUAL_ENV", None)
        for name in self.SERVERS:
            log = open(self.logs / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen(
                [str(self.bindir / f"swift-{name}-server"),
                 str(self.etc / f"{name}-server.conf")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.root, env=env, start_new_session=True)
            log.close()
        deadline = time.monotonic() + timeout
        for name in self.SERVERS:
            while True:
                if self.procs[name].poll() is not None:
                    raise SystemExit(f"swift-{name}-server exited:\n{self.tail(name)}")
                try:
                    with socket.create_connection(("127.0.0.1", self.ports[name]), 1):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"swift-{name}-server did not listen:\n{self.tail(name)}")
                time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["proxy"], timeout=30)
        try:
            conn.request("GET", "/auth/v1.0",
                         headers={"X-Auth-User": SWIFT_USER, "X-Auth-Key": SWIFT_KEY})
            resp = conn.getresponse()
            resp.read()
            token, storage = resp.getheader("X-Auth-Token"), resp.getheader("X-Storage-Url")
        finally:
            conn.close()
        if resp.status != 200 or not token or not storage:
            raise SystemExit(f"tempauth answered {resp.status}:\n{self.tail('proxy')}")
        return SwiftAccount(self.url, token, storage.rstrip("/").rsplit("/", 1)[1])

    def tail(self, name: str, lines: int = 40) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, to each server's process group (its own
        session: the server and its worker); idempotent."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            try:  # the worker may outlive its parent
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(10)
        self.procs.clear()


# -- the workload ----------------------------------------------------------------------


def curl_rate(argv: list[str], size: int, what: str) -> float:
    """MB/s of one ``curl`` transfer of ``size`` bytes (curl's own total time)."""
    proc = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-H", "Expect:", "-w", "%{http_code} %{time_total}",
         *argv], capture_output=True, text=True, check=False)
    fields = proc.stdout.split()
    if proc.returncode != 0 or len(fields) < 2:
        raise SystemExit(f"{what}: curl failed ({proc.returncode}): {proc.stdout} {proc.stderr}")
    return size / float(fields[-1]) / 1e6


def put_large(account: Account, path: str, source: Path) -> float:
    return curl_rate(["-X", "PUT", "-T", str(source), "-o", "/dev/null",
                      "-H", f"X-Auth-Token: {account.token}",
                      "-H", "Content-Type: application/octet-stream",
                      f"{account.url}{path}"], source.stat().st_size, f"PUT {path}")


def get_large(account: Account, path: str, size: int) -> float:
    return curl_rate(["-o", "/dev/null", "-H", f"X-Auth-Token: {account.token}",
                      f"{account.url}{path}"], size, f"GET {path}")


def small_phase(account: Account, method: str, paths: list[str], clients: int) -> float:
    """Requests per second of ``method`` on every path, split over
    ``clients`` threads with one keep-alive connection each."""
    body = os.urandom(SMALL) if method == "PUT" else None
    expect = {"PUT": 201, "GET": 200, "HEAD": 200, "DELETE": 204}[method]
    errors: list[str] = []

    def worker(mine: list[str]) -> None:
        conn = account.connect()
        try:
            for path in mine:
                headers = {"X-Auth-Token": account.token}
                if body is not None:
                    headers["Content-Type"] = "application/octet-stream"
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != expect or (method == "GET" and len(data) != SMALL):
                    errors.append(f"{method} {path}: {resp.status} {data[:200]!r}")
                    return
                if errors:
                    return
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{method}: {e!r}")
        finally:
            conn.close()

    elapsed = timed_threads([threading.Thread(target=worker, args=(paths[k::clients],))
                             for k in range(clients)])
    if errors:
        raise SystemExit(f"small-object phase failed: {errors[0]}")
    return len(paths) / elapsed


def one_round(account: Account, source: Path, rnd: int, count: int,
              clients: int) -> dict[str, float]:
    """One round of the whole workload on one server: figure -> rate."""
    size = source.stat().st_size
    mib = size // MiB
    out: dict[str, float] = {}
    large = account.path("bench", f"large-{rnd}")
    out[f"PUT {mib} MiB (MB/s)"] = put_large(account, large, source)
    # Cold first, then warm (a re-read): the first GET right after the PUT
    # was half as fast as the next ones on both servers, even after a sync.
    dropped = drop_caches()
    out[f"GET {mib} MiB, cold (MB/s)" if dropped
        else f"GET {mib} MiB, cache NOT dropped (MB/s)"] = get_large(account, large, size)
    out[f"GET {mib} MiB, warm (MB/s)"] = get_large(account, large, size)
    status, body = account.call("DELETE", large)
    if status != 204:
        raise SystemExit(f"DELETE {large}: {status} {body[:200]!r}")
    for n, label in ((1, "one connection"), (clients, f"{clients} connections")):
        paths = [account.path("bench", f"small/{rnd}/{n}/{i}") for i in range(count)]
        for method in ("PUT", "GET", "HEAD", "DELETE"):
            out[f"{method} 4 KiB, {label} (/s)"] = small_phase(account, method, paths, n)
    return out


# -- the limits ------------------------------------------------------------------------


def disk_limits(directory: Path, mib: int) -> tuple[float, float, bool]:
    """(write MB/s with fdatasync, read MB/s, read after dropping the cache)."""
    target = directory / "bench-dd.tmp"
    try:
        write = dd_rate(["if=/dev/zero", f"of={target}", "bs=4M",
                         f"count={max(1, mib // 4)}", "conv=fdatasync"])
        cold = drop_caches()
        read = dd_rate([f"if={target}", "of=/dev/null", "bs=4M"])
    finally:
        target.unlink(missing_ok=True)
    return write, read, cold


def durable_write_floor(directory: Path, dsn: str, n: int = 200) -> tuple[float, float]:
    """(ms, ms): one durable 4 KiB block the way snfd's filesystem store
    writes it (a new file written and fsynced, renamed over its name, the
    directory fsynced), and one committed one-row insert into PostgreSQL
    (``synchronous_commit`` as the server has it: on, by default); medians
    of ``n`` each, one after another.  Together they bound a durable small
    PUT on one connection, whatever the code around them."""
    import psycopg2

    blocks = directory / "bench-fsync"
    blocks.mkdir()
    data = os.urandom(4096)
    spent = []
    try:
        for i in range(n):
            start = time.perf_counter()
            temp = blocks / f".{i}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, blocks / str(i))
            dfd = os.open(blocks, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            spent.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(blocks, ignore_errors=True)
    block = statistics.median(spent) * 1000
    commits = []
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE bench_commit (k int PRIMARY KEY, v bytea)")
        conn.commit()
        for i in range(n):
            start = time.perf_counter()
            cur.execute("INSERT INTO bench_commit VALUES (%s, %s)", (i, data[:64]))
            conn.commit()
            commits.append(time.perf_counter() - start)
        cur.execute("DROP TABLE bench_commit")
        conn.commit()
    finally:
        conn.close()
    return block, statistics.median(commits) * 1000


def loopback_rate(mib: int = 1024) -> float:
    """MB/s of one TCP stream over 127.0.0.1 (1 MiB sends, one reader thread)."""
    server = socket.create_server(("127.0.0.1", 0))
    got = [0]

    def reader() -> None:
        conn, _ = server.accept()
        buf = memoryview(bytearray(MiB))
        with conn:
            while n := conn.recv_into(buf):
                got[0] += n

    t = threading.Thread(target=reader)
    t.start()
    chunk = os.urandom(MiB)
    start = time.perf_counter()
    with socket.create_connection(server.getsockname()) as c:
        for _ in range(mib):
            c.sendall(chunk)
    t.join()
    elapsed = time.perf_counter() - start
    server.close()
    return got[0] / elapsed / 1e6


def http_floor(account: Account, path: str, clients: int, seconds: float = 3.0) -> float:
    return concurrent_rate(account, clients, seconds, lambda k, i: ("GET", path, None))


# -- the run ---------------------------------------------------------------------------


def fmt(figure: str, value: float) -> str:
    return f"{value:,.0f} MB/s" if "MB/s" in figure else f"{value:,.0f}/s"


def report(results: dict[str, dict[str, list[float]]], limits: list[str], rounds: int) -> None:
    names = list(results["snfd"])
    rows = [("figure", "snfd", "Swift", "ratio")]
    for name in names:
        snfd = statistics.median(results["snfd"][name])
        swift = statistics.median(results["swift"][name])
        figure = name.rsplit(" (", 1)[0]
        rows.append((figure, fmt(name, snfd), fmt(name, swift),
                     f"{snfd / swift:.2f}" if swift else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\nmedians of {rounds} interleaved round(s); ratio = snfd / Swift"
          " (above 1: snfd is faster)\n")
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if j == 0 else c.rjust(w)
                                for j, (c, w) in enumerate(zip(r, widths, strict=True))) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\nlimits measured in the same run:")
    for line in limits:
        print(f"- {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-count", type=int, default=500)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--swift-venv", type=Path, default=Path("/work/swift-venv"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups

    bindir = swift_venv(args.swift_venv)
    root = Path(tempfile.mkdtemp(prefix="snfd-bench-objects-"))
    node: CloudNode | None = None
    swift: SwiftCluster | None = None
    database: tuple[str, str] | None = None
    try:
        print(f"starting snfd and Swift under {root} ...", file=sys.stderr)
        admin, dbname, dsn = create_database("snfd_bench")
        database = (admin, dbname)
        node = CloudNode(dsn, root / "snfd", "identity,pithos", "pool_max = 10\n")
        node.start()
        user = node.add_user("bench@example.org", "Bench")
        snfd = Account(node.url, user.token, user.uuid)
        swift = SwiftCluster(bindir, root / "swift")
        swift_account = swift.start()
        targets: dict[str, Account] = {"snfd": snfd, "swift": swift_account}
        for name, account in targets.items():
            status, body = account.call("PUT", account.path("bench"))
            if status not in (201, 202):
                raise SystemExit(f"{name}: container PUT answered {status} {body[:200]!r}")

        print("measuring the machine's limits ...", file=sys.stderr)
        write, read, cold = disk_limits(root, args.large_mib)
        sha, md5 = hash_rate("sha256", 256), hash_rate("md5", 256)
        loop = loopback_rate()
        block_ms, commit_ms = durable_write_floor(root, dsn)
        # snfd's /_health pings the database; /identity/v3 (the version
        # document) touches nothing, as Swift's /healthcheck.
        floors = {(name, n): http_floor(account, path, n)
                  for name, account, path in (("snfd", snfd, "/_health"),
                                              ("snfd-static", snfd, "/identity/v3"),
                                              ("swift", swift_account, "/healthcheck"))
                  for n in (1, args.clients)}

        source = root / "large.bin"
        write_random_file(source, args.large_mib * MiB)
        results: dict[str, dict[str, list[float]]] = {"snfd": {}, "swift": {}}
        for rnd in range(args.rounds):
            for name, account in targets.items():
                print(f"round {rnd + 1}/{args.rounds}: {name} ...", file=sys.stderr)
                for figure, value in one_round(account, source, rnd, args.small_count,
                                               args.clients).items():
                    results[name].setdefault(figure, []).append(value)
        source.unlink()

        cores = os.cpu_count() or 1
        c = args.clients
        limits = [
            f"machine: {cores} cores; client, snfd and Swift share them; data under {root}"
            f" ({args.large_mib} MiB objects, {args.small_count} small objects per phase)",
            f"disk write {write:,.0f} MB/s (dd {args.large_mib} MiB, conv=fdatasync);"
            f" disk read {read:,.0f} MB/s"
            + (" (page cache dropped)" if cold else " (page cache NOT dropped: not root)"),
            f"SHA-256 {sha:,.0f} MB/s, MD5 {md5:,.0f} MB/s on one core (hashlib)",
            f"loopback TCP {loop:,.0f} MB/s (one stream, 1 MiB sends)",
            f"durable small write: a 4 KiB block file written, fsynced, renamed and its"
            f" directory fsynced {block_ms:.2f} ms; a one-row PostgreSQL commit"
            f" {commit_ms:.2f} ms (medians): a durable 4 KiB PUT on one connection cannot"
            f" beat {1000 / (block_ms + commit_ms):,.0f}/s here",
            f"HTTP floor: snfd GET /_health (a database ping) {floors['snfd', 1]:,.0f}/s with"
            f" 1 client, {floors['snfd', c]:,.0f}/s with {c}; snfd GET /identity/v3 (no"
            f" database) {floors['snfd-static', 1]:,.0f}/s with 1,"
            f" {floors['snfd-static', c]:,.0f}/s with {c}; Swift proxy GET /healthcheck"
            f" {floors['swift', 1]:,.0f}/s with 1, {floors['swift', c]:,.0f}/s with {c}",
            "Swift 2.38: 1 replica, 1 worker per server, tempauth, in-process token cache"
            " (no memcached); its object server drops the page cache of authenticated"
            " objects of 5 MiB or more itself (stock keep_cache_size), so its warm GET"
            " of the large object reads the disk too",
        ]
        report(results, limits, args.rounds)
    finally:
        if swift is not None:
            swift.stop()
        if node is not None:
            node.stop()
        if database is not None:
            drop_database(*database)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
