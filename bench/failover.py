"""Leader failover of two real ``twistd snfd`` nodes on one PostgreSQL.

Measures, over several rounds each:
- SIGKILL of the leader -> the other node's /_cluster names itself leader;
- SIGSTOP of the leader -> same; then SIGCONT -> the old leader reports it
  no longer leads.
Printed beside the floors measured or configured in the same run: the
PostgreSQL round trip, the election interval (a follower's lock attempt
period) and the leader session timeout (how long a frozen leader's session
lives).  Usage: ``python bench/failover.py [rounds]`` (default 5); needs the
test PostgreSQL (SNFD_TEST_DATABASE_URL, default 127.0.0.1:5432 trust).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import tempfile
import time

import psycopg2

from snfd.testing.node import NodeProcess, http_get
from snfd.testing.postgres import create_database, drop_database

INTERVAL = 0.2
SESSION_TIMEOUT = 2.0


def cluster(node: NodeProcess) -> dict | None:
    try:
        status, _, body = http_get(node.url + "/_cluster", timeout=1)
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def wait(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def healthy(node: NodeProcess) -> bool:
    try:
        return http_get(node.url + "/_health", timeout=1)[0] == 200
    except OSError:
        return False


def node_id(node: NodeProcess) -> str:
    wait(lambda: healthy(node), 60, "node ready")
    return json.loads(http_get(node.url + "/_health")[2])["node"]


def pg_round_trip(dsn: str) -> float:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        samples = []
        for _ in range(200):
            t = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchone()
            samples.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(samples)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    admin, dbname, dsn = create_database("snfd_bench")
    fd, config = tempfile.mkstemp(suffix=".conf")
    os.write(fd, (f"[database]\nauto_upgrade = yes\n[node]\nelection_interval = {INTERVAL}\n"
                  f"leader_session_timeout = {SESSION_TIMEOUT}\n").encode())
    os.close(fd)
    env = {"SNFD_DATABASE_URL": dsn, "SNFD_PLUGINS": ""}
    nodes = [NodeProcess(env=env, args=["--config", config]) for _ in range(2)]
    kill_times, stop_times, notice_times = [], [], []
    try:
        for n in nodes:
            n.start()
        ids = {node_id(n): n for n in nodes}
        rtt = pg_round_trip(dsn)
        for kind in ("kill", "stop"):
            for _ in range(rounds):
                wait(lambda: (cluster(nodes[0]) or {}).get("leader") in ids, 30, "a leader")
                leader_id = cluster(nodes[0])["leader"]
                leader = ids[leader_id]
                other = next(n for n in nodes if n is not leader)
                other_id = next(i for i, n in ids.items() if n is other)
                t0 = time.monotonic()
                leader.signal(signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
                wait(lambda o=other, i=other_id: (cluster(o) or {}).get("leader") == i,
                     60, "takeover")
                took = time.monotonic() - t0
                if kind == "kill":
                    kill_times.append(took)
                    leader.proc.wait(10)
                    leader.start()
                    node_id(leader)
                else:
                    stop_times.append(took)
                    t1 = time.monotonic()
                    leader.signal(signal.SIGCONT)
                    wait(lambda old=leader: (cluster(old) or {}).get("this_node_leads") is False,
                         60, "old leader notices")
                    notice_times.append(time.monotonic() - t1)
    finally:
        for n in nodes:
            n.cleanup()
        os.unlink(config)
        drop_database(admin, dbname)

    def fmt(xs):
        return (f"median {statistics.median(xs) * 1000:7.0f} ms   min {min(xs) * 1000:6.0f}"
                f"   max {max(xs) * 1000:6.0f}   (n={len(xs)})")

    print(f"floors: PostgreSQL round trip {rtt * 1000:.2f} ms; election interval"
          f" {INTERVAL * 1000:.0f} ms; leader session timeout {SESSION_TIMEOUT * 1000:.0f} ms")
    print(f"SIGKILL leader -> takeover          {fmt(kill_times)}   bound: 1000 ms")
    print(f"SIGSTOP leader -> takeover          {fmt(stop_times)}   bound: 5000 ms")
    print(f"SIGCONT old leader -> knows it lost {fmt(notice_times)}")


if __name__ == "__main__":
    main()
