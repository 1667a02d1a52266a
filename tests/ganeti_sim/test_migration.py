"""Migrations and failovers on the simulator: drbd instances swap primary
and secondary, diskless and shared-storage ones move to a target node or
the iallocator's pick, the rest is refused with Ganeti 3.0.2's texts (the
one-node refusals are pinned against real Ganeti by the contract)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.ganeti_sim.support import call, client, create_body, run, started

NODE1, NODE2, NODE3 = (f"node{i}.sim.ganeti.test" for i in (1, 2, 3))


def small(name: str, template: str = "diskless", **overrides: Any) -> dict[str, Any]:
    disks = [] if template == "diskless" else [{"size": 1024}]
    return create_body(name, disk_template=template, disks=disks,
                       beparams={"vcpus": 1, "memory": 512}, **overrides)


def placement(cluster: Any, name: str) -> tuple[str, list[str], str]:
    inst = cluster.instances[name]
    return inst.pnode, list(inst.snodes), inst.status()


def log(job: dict[str, Any]) -> list[str]:
    return [entry[3] for entry in job["oplog"][0]]


class DrbdTests(unittest.TestCase):
    async def test_migrate_then_failover_swap_nodes(self) -> None:
        """A running drbd instance migrates live to its secondary (the old
        primary becomes the secondary, it keeps running, the op's mode is
        filled in), and fails over back with a stop and a start."""
        cluster = await started(self, nodes=2)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", small("snf-1", "drbd", pnode=NODE1,
                                                      snode=NODE2))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {})
        self.assertEqual((job["status"], job["opresult"]), ("success", [None]))
        self.assertEqual(placement(cluster, "snf-1"), (NODE2, [NODE1], "running"))
        self.assertEqual(job["ops"][0]["mode"], "live")
        self.assertEqual(log(job)[0], "Migrating instance snf-1")
        self.assertIn("* changing disks into dual-master mode", log(job))
        self.assertEqual(log(job)[-1], "* done")
        job = await run(rapi, "PUT", "/2/instances/snf-1/failover", {})
        self.assertEqual(job["status"], "success")
        self.assertEqual(placement(cluster, "snf-1"), (NODE1, [NODE2], "running"))
        self.assertEqual(log(job), [
            "Failover instance snf-1",
            "* checking disk consistency between source and target",
            "* shutting down instance on source node",
            "* deactivating the instance's disks on source node",
            f"* activating the instance's disks on target node {NODE1}",
            f"* starting the instance on the target node {NODE1}"])
        status, nodes = await call(rapi, "GET", "/2/nodes?bulk=1")
        self.assertEqual([(n["name"], n["pinst_cnt"], n["sinst_cnt"]) for n in nodes],
                         [(NODE1, 1, 0), (NODE2, 0, 1)])

    async def test_other_targets_refused(self) -> None:
        """A drbd instance moves only to its secondary: another target
        node, or an iallocator, is refused with wrong_input."""
        cluster = await started(self, nodes=3)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", small("snf-1", "drbd", pnode=NODE1,
                                                      snode=NODE2))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {"target_node": NODE3})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Instances with disk types drbd cannot be migrated to arbitrary nodes (neither"
            " an iallocator nor a target node can be passed)", "wrong_input"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-1/failover", {"iallocator": "hail"})
        self.assertIn("cannot be failed over to arbitrary nodes", job["opresult"][0][1][0])
        self.assertEqual(placement(cluster, "snf-1"), (NODE1, [NODE2], "running"))


class SharedStorageTests(unittest.TestCase):
    async def test_target_node_and_iallocator(self) -> None:
        """A diskless instance migrates to the target node given; without
        one the cluster's iallocator (written into the op) picks the other
        node with the most free memory and logs its choice."""
        cluster = await started(self, nodes=3, node_memory=4096)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", small("snf-1", pnode=NODE1))
        await run(rapi, "POST", "/2/instances", small("snf-2", pnode=NODE1))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {"target_node": NODE3})
        self.assertEqual(job["status"], "success")
        self.assertEqual(job["ops"][0]["target_node_uuid"],
                         cluster.config.nodes[NODE3].uuid)
        self.assertEqual(placement(cluster, "snf-1"), (NODE3, [], "running"))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {"mode": "non-live"})
        self.assertEqual(placement(cluster, "snf-1"), (NODE2, [], "running"))
        self.assertEqual((job["ops"][0]["iallocator"], job["ops"][0]["mode"]),
                         ("hail", "non-live"))
        self.assertEqual(log(job)[0], " - INFO: Selected nodes for instance snf-1 via"
                                      f" iallocator hail: {NODE2}")

    async def test_one_node(self) -> None:
        """On one node the iallocator finds nothing ("Can't find any good
        node: ", insufficient_resources) and the primary as target is
        refused (wrong_state), both once running; an unknown target node
        fails while waiting."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", small("snf-1"))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Can't compute nodes using iallocator 'hail': Request failed: Can't find any"
            " good node: ", "insufficient_resources"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-1/failover", {"target_node": NODE1})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            f"Cannot migrate instance snf-1 to its primary ({NODE1})", "wrong_state"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {"target_node": "nodex"})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Node 'nodex' not known", "unknown_entity"]]])
        op = json.loads((Path(cluster.queue_dir) / f"job-{job['id']}").read_text())["ops"][0]
        self.assertIsNone(op["exec_timestamp"])

    async def test_relocation_failures_name_nodes(self) -> None:
        """When no other node fits, the refusal names each node and its
        reason; an exclusion tag on the other node's instances counts."""
        cluster = await started(self, nodes=2)
        rapi = client(self, cluster)
        await run(rapi, "PUT", "/2/tags?tag=htools:iextags:svc")
        await run(rapi, "POST", "/2/instances", small("snf-1", pnode=NODE1, tags=["svc:dns"]))
        await run(rapi, "POST", "/2/instances", small("snf-2", pnode=NODE2, tags=["svc:dns"]))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {})
        self.assertEqual(job["opresult"][0][1][0],
                         "Can't compute nodes using iallocator 'hail': Request failed: Can't"
                         f" find any good node:  Node {NODE2} failed: FailTags;")

    async def test_stopped_instance(self) -> None:
        """A stopped instance cannot be migrated ("please use failover");
        with allow_failover it is failed over instead and stays stopped."""
        cluster = await started(self, nodes=2)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", small("snf-1", pnode=NODE1, start=False))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {"target_node": NODE2})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Can't migrate, please use failover: Instance snf-1 is not running",
            "wrong_state"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate",
                        {"target_node": NODE2, "allow_failover": True})
        self.assertEqual(job["status"], "success")
        self.assertEqual(log(job)[:3], [
            " - INFO: Instance is marked down or offline, fallback allowed, switching to"
            " failover",
            " - INFO: Not checking memory on the secondary node as instance will not be"
            " started",
            "Failover instance snf-1"])
        self.assertEqual(placement(cluster, "snf-1"), (NODE2, [], "ADMIN_down"))

    async def test_target_short_of_memory(self) -> None:
        """A running instance needs its minimum memory free on the target."""
        cluster = await started(self, nodes=2, node_memory=1024)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", small("snf-1", pnode=NODE1))
        await run(rapi, "POST", "/2/instances", small("snf-2", pnode=NODE2))
        await run(rapi, "POST", "/2/instances", small("snf-3", pnode=NODE2))
        job = await run(rapi, "PUT", "/2/instances/snf-1/failover", {"target_node": NODE2})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            f"Not enough memory on node {NODE2} for migrating instance snf-1: needed 512"
            " MiB, available 0 MiB", "insufficient_resources"]]])


class RefusalTests(unittest.TestCase):
    async def test_local_storage_refused(self) -> None:
        """file and plain instances are neither migrated nor failed over."""
        cluster = await started(self, nodes=2)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", small("snf-1", "file"))
        await run(rapi, "POST", "/2/instances", small("snf-2", "plain"))
        job = await run(rapi, "PUT", "/2/instances/snf-1/migrate", {"mode": "live"})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Instance's disk layout 'file' does not allow migrations", "wrong_state"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-2/failover", {})
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Instance's disk layout 'plain' does not allow failovers", "wrong_state"]]])

    async def test_request_errors(self) -> None:
        """An unknown mode or parameter, or a body naming the instance, is
        a 400 with Ganeti's texts."""
        cluster = await started(self)
        rapi = client(self, cluster)
        for path, body, message in [
            ("migrate", {"mode": "fast"}, "Invalid body parameters: (&quot;Parameter"
             " &#x27;OP_INSTANCE_MIGRATE.mode&#x27; fails validation&quot;,"
             " &#x27;wrong_input&#x27;)"),
            ("migrate", {"bogus": 1}, "Invalid body parameters: Object OpInstanceMigrate"
             " doesn&#x27;t support the parameter &#x27;bogus&#x27;"),
            ("failover", {"instance_name": "x"},
             "Can&#x27;t overwrite static parameters {&#x27;instance_name&#x27;}"),
        ]:
            status, answer = await call(rapi, "PUT", f"/2/instances/snf-1/{path}", body)
            self.assertEqual((status, answer["message"]), (400, message))
