"""Where the simulator's iallocator puts new instances: exclusion tags
(cluster tags ``htools:iextags:<prefix>``) and how a refusal counts its
reasons, as hail in Ganeti 3.0.2 does."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from tests.ganeti_sim.support import call, client, create_body, run, started

NODE1, NODE2 = "node1.sim.ganeti.test", "node2.sim.ganeti.test"
REFUSED = ("Can't compute nodes using iallocator 'hail': Request failed: Group default"
           " (preferred): No valid allocation solutions, failure reasons: ")


def small(name: str, *tags: str, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("beparams", {"vcpus": 1, "memory": 512})
    return create_body(name, disk_template="diskless", disks=[], tags=list(tags),
                       **overrides)


async def tagged_cluster(testcase: unittest.TestCase, **kwargs: Any) -> tuple[Any, Any]:
    cluster = await started(testcase, **kwargs)
    rapi = client(testcase, cluster)
    job = await run(rapi, "PUT", "/2/tags?tag=htools:iextags:svc")
    assert job["status"] == "success", job
    return cluster, rapi


class ExclusionTagTests(unittest.TestCase):
    async def test_same_tag_refused_on_one_node(self) -> None:
        """With ``htools:iextags:svc`` a second instance tagged ``svc:dns``
        finds no node (FailTags: 1); other tags of the prefix, tags of
        another prefix and an explicit pnode are not refused; the create's
        tags are on the instance."""
        cluster, rapi = await tagged_cluster(self)
        self.assertEqual(await call(rapi, "GET", "/2/tags"), (200, ["htools:iextags:svc"]))
        job = await run(rapi, "POST", "/2/instances", small("snf-1", "svc:dns", "other"))
        self.assertEqual(job["status"], "success")
        status, inst = await call(rapi, "GET", "/2/instances/snf-1")
        self.assertEqual(inst["tags"], ["svc:dns", "other"])
        job = await run(rapi, "POST", "/2/instances", small("snf-2", "svc:dns"))
        self.assertEqual(job["opresult"], [["OpPrereqError", [REFUSED + "FailTags: 1",
                                                              "insufficient_resources"]]])
        for name, tag in (("snf-3", "svc:web"), ("snf-4", "other"), ("snf-5", "dns:svc")):
            job = await run(rapi, "POST", "/2/instances", small(name, tag))
            self.assertEqual(job["status"], "success", tag)
        job = await run(rapi, "POST", "/2/instances", small("snf-6", "svc:dns", pnode=NODE1))
        self.assertEqual(job["status"], "success")
        self.assertNotIn("snf-2", cluster.instances)

    async def test_prefix_is_a_plain_string_prefix(self) -> None:
        """``svc`` makes ``svcdns`` an exclusion tag too, as htools matches
        the suffix of the cluster tag as a plain prefix."""
        cluster, rapi = await tagged_cluster(self)
        await run(rapi, "POST", "/2/instances", small("snf-1", "svcdns"))
        job = await run(rapi, "POST", "/2/instances", small("snf-2", "svcdns"))
        self.assertEqual(job["opresult"][0][1][0], REFUSED + "FailTags: 1")

    async def test_stopped_instances_count(self) -> None:
        """A stopped instance's exclusion tags still keep others away."""
        cluster, rapi = await tagged_cluster(self)
        await run(rapi, "POST", "/2/instances", small("snf-1", "svc:dns", start=False))
        job = await run(rapi, "POST", "/2/instances", small("snf-2", "svc:dns"))
        self.assertEqual(job["opresult"][0][1][0], REFUSED + "FailTags: 1")

    async def test_spread_over_nodes(self) -> None:
        """Instances sharing an exclusion tag land on different nodes; once
        every node has one, the refusal counts each node (FailTags: 2)."""
        cluster, rapi = await tagged_cluster(self, nodes=2)
        for name in ("snf-1", "snf-2"):
            job = await run(rapi, "POST", "/2/instances", small(name, "svc:dns"))
            self.assertEqual(job["status"], "success")
        self.assertEqual({cluster.instances[n].pnode for n in ("snf-1", "snf-2")},
                         {NODE1, NODE2})
        job = await run(rapi, "POST", "/2/instances", small("snf-3", "svc:dns"))
        self.assertEqual(job["opresult"][0][1][0], REFUSED + "FailTags: 2")

    async def test_one_reason_per_node_in_htools_order(self) -> None:
        """Each node counts once, for the first check it fails, and the
        reasons are listed in htools' order, not the nodes': a node whose
        tags clash but that is out of vCPUs counts as FailCPU."""
        cluster, rapi = await tagged_cluster(self, nodes=2, node_cpus=1, node_memory=1024)
        await run(rapi, "POST", "/2/instances", small(
            "snf-1", "svc:dns", pnode=NODE1, beparams={"vcpus": 1, "memory": 128}))
        await run(rapi, "POST", "/2/instances", small(
            "snf-2", pnode=NODE2, beparams={"vcpus": 1, "memory": 896}))
        job = await run(rapi, "POST", "/2/instances", small("snf-3", "svc:dns"))
        self.assertEqual(job["opresult"][0][1][0], REFUSED + "FailMem: 1, FailTags: 1")
        await run(rapi, "POST", "/2/instances", small(
            "snf-4", pnode=NODE1, beparams={"vcpus": 3, "memory": 128}))
        job = await run(rapi, "POST", "/2/instances", small(
            "snf-5", "svc:dns", beparams={"vcpus": 1, "memory": 256}))
        self.assertEqual(job["opresult"][0][1][0], REFUSED + "FailMem: 1, FailCPU: 1")
        self.assertEqual(sorted(cluster.instances), ["snf-1", "snf-2", "snf-4"])
