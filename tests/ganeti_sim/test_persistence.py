"""A simulated cluster stopped and started again on the same state
directory: instances, jobs, the job serial and the certificate survive;
interrupted jobs end as errors and queued ones run."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial import unittest

from snfd.ganeti_sim import SimulatedCluster
from tests.ganeti_sim.support import (
    call,
    client,
    create_body,
    reactor,
    run,
    sleep,
    started,
    wait_job,
)


class RestartTests(unittest.TestCase):
    async def restart(self, cluster: SimulatedCluster, state: Path, **kwargs: object,
                      ) -> SimulatedCluster:
        await cluster.stop()
        return await started(self, state, **kwargs)

    async def test_instances_and_jobs_survive(self) -> None:
        """After a restart the instances (with their NICs, disks and state),
        the jobs and the certificate are the same, and new job ids
        continue after the old ones."""
        state = Path(self.mktemp())
        cluster = await started(self, state)
        rapi = client(self, cluster)
        created = await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        await run(rapi, "POST", "/2/instances", create_body("snf-2"))
        stopped = await run(rapi, "PUT", "/2/instances/snf-2/shutdown")
        before = (await call(rapi, "GET", "/2/instances?bulk=1"))[1]
        nodes_before = (await call(rapi, "GET", "/2/nodes?bulk=1"))[1]
        certificate = cluster.certificate

        again = await self.restart(cluster, state)
        self.assertEqual(again.certificate, certificate)
        rapi2 = client(self, again)
        self.assertEqual((await call(rapi2, "GET", "/2/instances?bulk=1"))[1], before)
        self.assertEqual((await call(rapi2, "GET", "/2/nodes?bulk=1"))[1], nodes_before)
        self.assertEqual((await call(rapi2, "GET", f"/2/jobs/{created['id']}"))[1], created)
        job = await run(rapi2, "PUT", "/2/instances/snf-2/startup")
        self.assertEqual(job["id"], stopped["id"] + 1)
        self.assertEqual(job["status"], "success")

    async def test_interrupted_job_ends_in_error(self) -> None:
        """A job running when the cluster stops is finished as an error
        ("Unclean master daemon shutdown") on the next start."""
        state = Path(self.mktemp())
        cluster = await started(self, state, exec_time=1.0)
        rapi = client(self, cluster)
        status, job_id = await call(rapi, "POST", "/2/instances", create_body("snf-3"))
        for _ in range(500):
            if (await call(rapi, "GET", f"/2/jobs/{job_id}"))[1]["status"] == "running":
                break
            await sleep(0.01)
        again = await self.restart(cluster, state)
        job = await wait_job(client(self, again), job_id)
        self.assertEqual((job["status"], job["opresult"]),
                         ("error", [["OpExecError", ["Unclean master daemon shutdown"]]]))
        doc = json.loads((again.queue_dir / f"job-{job_id}").read_text())
        self.assertEqual(doc["ops"][0]["status"], "error")

    async def test_queued_job_runs_after_restart(self) -> None:
        """A job still queued when the cluster stops runs after the start."""
        state = Path(self.mktemp())
        cluster = await started(self, state)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-4"))
        cluster.hold_queue()
        status, job_id = await call(rapi, "PUT", "/2/instances/snf-4/shutdown")
        again = await self.restart(cluster, state)
        rapi2 = client(self, again)
        self.assertEqual((await wait_job(rapi2, job_id))["status"], "success")
        status, inst = await call(rapi2, "GET", "/2/instances/snf-4")
        self.assertEqual(inst["status"], "ADMIN_down")

    async def test_stop_is_idempotent(self) -> None:
        """Stopping twice, or a cluster never started, is harmless."""
        cluster = await started(self)
        await cluster.stop()
        await cluster.stop()
        await SimulatedCluster(reactor(), Path(self.mktemp()), "x.test").stop()

    async def test_fixed_port(self) -> None:
        """A cluster told a port listens on it, and answers there after a
        restart on the same port."""
        from snfd.testing.node import free_port

        port = free_port()
        state = Path(self.mktemp())
        cluster = await started(self, state, port=port)
        self.assertEqual(cluster.url, f"https://127.0.0.1:{port}")
        again = await self.restart(cluster, state, port=port)
        self.assertEqual(await call(client(self, again), "GET", "/version"), (200, 2))
