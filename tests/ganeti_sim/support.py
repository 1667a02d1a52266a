"""Shared set-up for the simulator tests: a started cluster in a temp dir
and an HTTPS client pinned to its certificate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from snfd.ganeti_sim import SimulatedCluster
from snfd.httpclient import HTTPClientPool, Target, TargetClient
from snfd.metrics import Metrics

FINAL = ("success", "error", "canceled")


def reactor() -> Any:
    from twisted.internet import reactor as global_reactor

    return global_reactor


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor(), seconds, lambda: None)


async def started(testcase: Any, state_dir: Path | None = None, **kwargs: Any,
                  ) -> SimulatedCluster:
    """A started cluster with fast jobs, stopped at the end of the test."""
    kwargs.setdefault("queue_delay", 0.01)
    kwargs.setdefault("exec_time", 0.01)
    if state_dir is None:
        state_dir = Path(testcase.mktemp())
    cluster = SimulatedCluster(reactor(), state_dir, "sim.ganeti.test", **kwargs)
    await cluster.start()
    testcase.addCleanup(lambda: defer.ensureDeferred(cluster.stop()))
    return cluster


def client(testcase: Any, cluster: SimulatedCluster, *, username: str | None = None,
           password: str | None = None, certificate: str | None = None,
           verify_hostname: bool = False) -> TargetClient:
    """An HTTPS client that trusts exactly the cluster's certificate."""
    pool = HTTPClientPool(reactor(), Metrics())
    testcase.addCleanup(lambda: defer.ensureDeferred(pool.close()))
    return pool.client(Target(
        name="sim", base_url=cluster.url,
        username=cluster.username if username is None else username,
        password=cluster.password if password is None else password,
        ca_certificate=certificate or cluster.certificate,
        verify_hostname=verify_hostname, timeout=10.0))


async def call(rapi: TargetClient, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, decoded JSON) of one RAPI call."""
    return await rapi.json_request(method, path, json=body)


async def wait_job(rapi: TargetClient, job_id: int, attempts: int = 1000) -> dict[str, Any]:
    """Poll ``GET /2/jobs/<id>`` until the job is final; the final view."""
    for _ in range(attempts):
        status, job = await call(rapi, "GET", f"/2/jobs/{job_id}")
        assert status == 200, (status, job)
        if job["status"] in FINAL:
            return job
        await sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def run(rapi: TargetClient, method: str, path: str, body: Any = None,
              ) -> dict[str, Any]:
    """Submit a write, check it answered a bare job id, and wait for the job."""
    status, job_id = await call(rapi, method, path, body)
    assert status == 200 and isinstance(job_id, int), (status, job_id)
    return await wait_job(rapi, job_id)


def create_body(name: str, **overrides: Any) -> dict[str, Any]:
    """A version 1 create body like Cyclades sends (no pnode)."""
    body: dict[str, Any] = {
        "__version__": 1, "mode": "create", "name": name, "disk_template": "file",
        "disks": [{"size": 2048, "name": f"{name}-root"}],
        "nics": [{"name": f"{name}-nic0", "ip": "10.0.0.5"}],
        "os_type": "snf-image+default", "name_check": False, "ip_check": False,
        "beparams": {"vcpus": 2, "memory": 1024, "auto_balance": True},
        "osparams": {"img_id": "pithos://u/images/x", "img_format": "diskdump",
                     "config_url": "https://example.test/vmapi/server-params/abc"},
        "tags": ["synnefo:user:u1"],
    }
    body.update(overrides)
    return body
