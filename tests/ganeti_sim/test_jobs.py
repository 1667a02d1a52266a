"""Jobs on the simulator, driven through RAPI: the instance lifecycle,
semantic errors that only show in the job, injected failures, cancelling,
administrator jobs, dependencies and node accounting."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from tests.ganeti_sim.support import (
    call,
    client,
    create_body,
    run,
    sleep,
    started,
    wait_job,
)

NODE = "node1.sim.ganeti.test"


async def instance(rapi: Any, name: str) -> dict[str, Any]:
    status, body = await call(rapi, "GET", f"/2/instances/{name}")
    assert status == 200, (status, body)
    return body


def state(inst: dict[str, Any]) -> tuple[str, str, bool]:
    return inst["status"], inst["admin_state"], inst["oper_state"]


class LifecycleTests(unittest.TestCase):
    async def test_create(self) -> None:
        """A create (no pnode, iallocator) succeeds with the chosen node as
        result, log messages, and a running instance with the requested
        NIC, disk, beparams, osparams and tags."""
        cluster = await started(self)
        rapi = client(self, cluster)
        job = await run(rapi, "POST", "/2/instances", create_body("snf-1"))
        self.assertEqual((job["status"], job["opstatus"], job["opresult"]),
                         ("success", ["success"], [[NODE]]))
        self.assertEqual(job["summary"], ["INSTANCE_CREATE(snf-1)"])
        messages = [entry[3] for entry in job["oplog"][0]]
        self.assertEqual(messages[0], " - INFO: Selected nodes for instance snf-1 via"
                                      f" iallocator hail: {NODE}")
        self.assertIn("* starting instance...", messages)
        self.assertEqual([e[0] for e in job["oplog"][0]], list(range(1, len(messages) + 1)))
        op = job["ops"][0]
        self.assertEqual((op["OP_ID"], op["pnode"], op["iallocator"]),
                         ("OP_INSTANCE_CREATE", NODE, "hail"))
        self.assertEqual(op["beparams"], {"vcpus": 2, "auto_balance": True, "maxmem": 1024,
                                          "minmem": 1024})
        self.assertEqual(op["reason"][0][0], "gnt:library:rlib2:instances")

        inst = await instance(rapi, "snf-1")
        self.assertEqual(state(inst), ("running", "up", True))
        self.assertEqual((inst["pnode"], inst["disk_template"], inst["os"]),
                         (NODE, "file", "snf-image+default"))
        self.assertEqual(inst["nic.ips"], ["10.0.0.5"])
        self.assertEqual(inst["nic.names"], ["snf-1-nic0"])
        self.assertRegex(inst["nic.macs"][0], r"^aa:00:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$")
        self.assertEqual((inst["nic.modes"], inst["nic.links"], inst["nic.networks"]),
                         (["bridged"], ["gntbr0"], [None]))
        self.assertEqual(len(inst["nic.uuids"]), 1)
        self.assertEqual((inst["disk.sizes"], inst["disk.names"]), ([2048], ["snf-1-root"]))
        self.assertEqual((inst["oper_ram"], inst["oper_vcpus"]), (1024, 2))
        self.assertEqual(inst["beparams"]["memory"], 1024)
        self.assertEqual(inst["tags"], ["synnefo:user:u1"])
        self.assertEqual(await call(rapi, "GET", "/2/instances"),
                         (200, [{"id": "snf-1", "uri": "/2/instances/snf-1"}]))
        status, bulk = await call(rapi, "GET", "/2/instances?bulk=1")
        self.assertEqual(bulk, [inst])
        self.assertEqual(cluster.instances["snf-1"].pnode, NODE)

    async def test_full_lifecycle(self) -> None:
        """shutdown, startup, reboot, modify, tags and delete each succeed
        and change the instance as on a real cluster."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-2"))

        job = await run(rapi, "PUT", "/2/instances/snf-2/shutdown", {"timeout": 5})
        self.assertEqual(job["status"], "success")
        self.assertEqual((job["ops"][0]["timeout"], job["ops"][0]["admin_state_source"]),
                         (5, "admin"))
        inst = await instance(rapi, "snf-2")
        self.assertEqual(state(inst), ("ADMIN_down", "down", False))
        self.assertEqual((inst["oper_ram"], inst["oper_vcpus"]), (None, None))

        await run(rapi, "PUT", "/2/instances/snf-2/startup")
        self.assertEqual(state(await instance(rapi, "snf-2")), ("running", "up", True))

        job = await run(rapi, "POST", "/2/instances/snf-2/reboot?type=hard")
        self.assertEqual((job["status"], job["ops"][0]["reboot_type"]), ("success", "hard"))

        job = await run(rapi, "PUT", "/2/instances/snf-2/modify",
                        {"beparams": {"vcpus": 4, "maxmem": 2048, "minmem": 2048}})
        self.assertEqual(job["opresult"], [[["be/vcpus", 4], ["be/maxmem", 2048],
                                            ["be/minmem", 2048]]])
        inst = await instance(rapi, "snf-2")
        self.assertEqual((inst["beparams"]["vcpus"], inst["beparams"]["maxmem"]), (4, 2048))
        # Running with the old size until restarted.
        self.assertEqual((inst["oper_ram"], inst["oper_vcpus"]), (1024, 2))

        job = await run(rapi, "PUT", "/2/instances/snf-2/tags?tag=a&tag=b")
        self.assertEqual((job["status"], job["summary"]), ("success", ["TAGS_SET"]))
        await run(rapi, "DELETE", "/2/instances/snf-2/tags?tag=a")
        self.assertEqual(await call(rapi, "GET", "/2/instances/snf-2/tags"),
                         (200, ["synnefo:user:u1", "b"]))

        job = await run(rapi, "DELETE", "/2/instances/snf-2")
        self.assertEqual((job["status"], job["opresult"]), ("success", [None]))
        self.assertEqual((await call(rapi, "GET", "/2/instances/snf-2"))[0], 404)
        self.assertEqual(await call(rapi, "GET", "/2/instances"), (200, []))

    async def test_startup_of_running_and_reboot_of_stopped(self) -> None:
        """Starting a running instance succeeds without change; rebooting a
        stopped one starts it and says so in the log."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-3"))
        job = await run(rapi, "PUT", "/2/instances/snf-3/startup")
        self.assertEqual(job["status"], "success")
        await run(rapi, "PUT", "/2/instances/snf-3/shutdown")
        job = await run(rapi, "POST", "/2/instances/snf-3/reboot")
        self.assertEqual(job["oplog"][0][0][3],
                         " - INFO: Instance snf-3 was already stopped, starting now")
        self.assertEqual(state(await instance(rapi, "snf-3")), ("running", "up", True))

    async def test_modify_nics(self) -> None:
        """NICs are added (MAC generated and written back into the job),
        modified by name and removed, with Ganeti's result entries."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-4"))
        job = await run(rapi, "PUT", "/2/instances/snf-4/modify",
                        {"nics": [["add", {"name": "n2", "ip": "10.0.0.7"}]]})
        inst = await instance(rapi, "snf-4")
        mac = inst["nic.macs"][1]
        self.assertEqual(job["ops"][0]["nics"], [["add", -1, {"mac": mac, "name": "n2",
                                                              "ip": "10.0.0.7"}]])
        self.assertEqual(job["opresult"], [[[
            "nic.1", f"add:mac={mac},ip=10.0.0.7,mode=bridged,link=gntbr0,network=None"]]])
        self.assertEqual(inst["custom_nicparams"][1],
                         {"mode": "bridged", "link": "gntbr0", "vlan": ""})
        job = await run(rapi, "PUT", "/2/instances/snf-4/modify",
                        {"nics": [["modify", "n2", {"ip": "10.0.0.9"}]]})
        self.assertEqual(job["opresult"], [[["nic.ip/1", "10.0.0.9"], ["nic.link/1", "gntbr0"],
                                            ["nic.mode/1", "bridged"], ["nic.vlan/1", ""]]])
        job = await run(rapi, "PUT", "/2/instances/snf-4/modify",
                        {"nics": [["remove", "snf-4-nic0", {}]]})
        self.assertEqual(job["opresult"], [[["NIC/0", "remove"]]])
        self.assertEqual((await instance(rapi, "snf-4"))["nic.ips"], ["10.0.0.9"])

    async def test_disk_removal_needs_a_stopped_instance(self) -> None:
        """A disk is added to a running instance, but leaves one only by
        hotplug (Ganeti 3.0's rule, measured on the real cluster): the
        removal fails with wrong_state; stopped, it succeeds."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-6"))
        job = await run(rapi, "PUT", "/2/instances/snf-6/modify",
                        {"disks": [["add", -1, {"size": 1024, "name": "extra"}]]})
        self.assertEqual(job["status"], "success")
        job = await run(rapi, "PUT", "/2/instances/snf-6/modify",
                        {"disks": [["remove", "extra", {}]]})
        self.assertEqual(job["status"], "error")
        self.assertIn("can't remove volume from a running instance without using hotplug",
                      str(job["opresult"]))
        self.assertIn("wrong_state", str(job["opresult"]))
        await run(rapi, "PUT", "/2/instances/snf-6/shutdown")
        job = await run(rapi, "PUT", "/2/instances/snf-6/modify",
                        {"disks": [["remove", "extra", {}]]})
        self.assertEqual(job["status"], "success")
        self.assertEqual((await instance(rapi, "snf-6"))["disk.sizes"], [2048])

    async def test_dry_run_create(self) -> None:
        """A dry-run create checks and allocates but creates nothing; its
        result is the chosen node's uuid."""
        cluster = await started(self)
        rapi = client(self, cluster)
        job = await run(rapi, "POST", "/2/instances?dry-run=1", create_body("snf-5"))
        self.assertEqual(job["status"], "success")
        self.assertEqual(job["ops"][0]["dry_run"], True)
        self.assertEqual(job["opresult"], [[cluster.config.nodes[NODE].uuid]])
        self.assertEqual(job["oplog"][0][-1][3], " - INFO: dry-run mode requested, not"
                                                 " actually executing the operation")
        self.assertEqual(await call(rapi, "GET", "/2/instances"), (200, []))

    async def test_instance_info_is_a_job(self) -> None:
        """GET .../info answers a job id whose result describes the instance."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-6"))
        job = await run(rapi, "GET", "/2/instances/snf-6/info")
        info = job["opresult"][0]["snf-6"]
        self.assertEqual((info["config_state"], info["run_state"], info["pnode"]),
                         ("up", "up", NODE))
        self.assertEqual(info["nics"][0][2], "10.0.0.5")

    async def test_console(self) -> None:
        """The console of the fake hypervisor is a message."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-7"))
        self.assertEqual(await call(rapi, "GET", "/2/instances/snf-7/console"), (200, {
            "instance": "snf-7", "kind": "msg",
            "message": "Console not available for fake hypervisor"}))


class SemanticErrorTests(unittest.TestCase):
    async def test_unknown_instance(self) -> None:
        """Actions on an unknown instance are accepted (a job id) and fail
        in the job with OpPrereqError/unknown_entity."""
        rapi = client(self, await started(self))
        for method, path in (("PUT", "/2/instances/nosuch/startup"),
                             ("PUT", "/2/instances/nosuch/shutdown"),
                             ("DELETE", "/2/instances/nosuch"),
                             ("PUT", "/2/instances/nosuch/tags?tag=a")):
            job = await run(rapi, method, path)
            self.assertEqual((job["status"], job["opresult"]), (
                "error", [["OpPrereqError", ["Instance 'nosuch' not known",
                                             "unknown_entity"]]]))
            self.assertIsNotNone(job["end_ts"])

    async def test_duplicate_name(self) -> None:
        """Creating an existing instance fails with already_exists."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-8"))
        job = await run(rapi, "POST", "/2/instances", create_body("snf-8"))
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Instance 'snf-8' is already in the cluster", "already_exists"]]])

    async def test_policy_and_resources(self) -> None:
        """Creates that break the instance policy or do not fit fail like
        Ganeti's: nic-count with wrong_input, memory through the
        iallocator with insufficient_resources; nothing is created."""
        rapi = client(self, await started(self, node_memory=4096))
        job = await run(rapi, "POST", "/2/instances", create_body("snf-9", nics=[]))
        self.assertEqual(job["opresult"][0][1][1], "wrong_input")
        self.assertIn("nic-count value 0 is not in range [1, 8]", job["opresult"][0][1][0])
        job = await run(rapi, "POST", "/2/instances", create_body(
            "snf-9", beparams={"vcpus": 1, "memory": 8192}))
        self.assertEqual(job["opresult"], [["OpPrereqError", [
            "Can't compute nodes using iallocator 'hail': Request failed: Group default"
            " (preferred): No valid allocation solutions, failure reasons: FailMem: 1",
            "insufficient_resources"]]])
        job = await run(rapi, "POST", "/2/instances", create_body(
            "snf-9", disk_template="plain", os_type="nosuch+default"))
        self.assertEqual(job["opresult"][0][0], "OpExecError")
        self.assertEqual(await call(rapi, "GET", "/2/instances"), (200, []))

    async def test_modify_errors(self) -> None:
        """An unknown beparam fails with TypeEnforcementError, an empty
        modify with "No changes submitted", a bad tag with TagError."""
        rapi = client(self, await started(self))
        await run(rapi, "POST", "/2/instances", create_body("snf-10"))
        job = await run(rapi, "PUT", "/2/instances/snf-10/modify",
                        {"beparams": {"nonsense": 1}})
        self.assertEqual(job["opresult"], [["TypeEnforcementError",
                                            ["Unknown parameter 'nonsense'"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-10/modify", {})
        self.assertEqual(job["opresult"], [["OpPrereqError", ["No changes submitted",
                                                              "wrong_input"]]])
        job = await run(rapi, "PUT", "/2/instances/snf-10/tags?tag=a%20b")
        self.assertEqual(job["opresult"], [["TagError", ["Tag contains invalid characters"]]])
        job = await run(rapi, "DELETE", "/2/instances/snf-10/tags?tag=nope")
        self.assertEqual(job["opresult"], [["OpPrereqError", ["Tag(s) 'nope' not found",
                                                              "unknown_entity"]]])


class FaultInjectionTests(unittest.TestCase):
    async def test_fail_next_exec_error(self) -> None:
        """``fail_next`` fails the next op of that kind once running, with
        the given error; the instance is not created and the next create
        works."""
        cluster = await started(self)
        rapi = client(self, cluster)
        cluster.fail_next("OP_INSTANCE_CREATE", "OpExecError", "disk exploded",
                          "environment_error")
        job = await run(rapi, "POST", "/2/instances", create_body("snf-11"))
        self.assertEqual((job["status"], job["opresult"]), (
            "error", [["OpExecError", ["disk exploded", "environment_error"]]]))
        self.assertEqual(await call(rapi, "GET", "/2/instances"), (200, []))
        job = await run(rapi, "POST", "/2/instances", create_body("snf-11"))
        self.assertEqual(job["status"], "success")

    async def test_fail_next_prereq_error(self) -> None:
        """An injected OpPrereqError fails the op before it runs."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-12"))
        cluster.fail_next("OP_INSTANCE_SHUTDOWN", "OpPrereqError", "no way", "wrong_state")
        job = await run(rapi, "PUT", "/2/instances/snf-12/shutdown")
        self.assertEqual(job["opresult"], [["OpPrereqError", ["no way", "wrong_state"]]])
        self.assertEqual(state(await instance(rapi, "snf-12")), ("running", "up", True))

    async def test_crash_behind_ganetis_back(self) -> None:
        """``set_oper_state`` makes a running instance ERROR_down."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-13"))
        cluster.set_oper_state("snf-13", False)
        self.assertEqual(state(await instance(rapi, "snf-13")), ("ERROR_down", "up", False))


class CancelTests(unittest.TestCase):
    async def test_cancel_queued_job(self) -> None:
        """With the queue held a job stays queued; cancelling it answers
        [true, "Dequeued job N"] and it ends canceled without running;
        cancelling again answers [false, "Job N not found in queue"]."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-14"))
        cluster.hold_queue()
        status, job_id = await call(rapi, "POST", "/2/instances/snf-14/reboot")
        status, job = await call(rapi, "GET", f"/2/jobs/{job_id}")
        self.assertEqual((job["status"], job["start_ts"]), ("queued", None))
        self.assertEqual(await call(rapi, "DELETE", f"/2/jobs/{job_id}"),
                         (200, [True, f"Dequeued job {job_id}"]))
        job = await wait_job(rapi, job_id)
        self.assertEqual((job["status"], job["opstatus"], job["start_ts"]),
                         ("canceled", ["canceled"], None))
        self.assertIsNotNone(job["end_ts"])
        self.assertEqual(await call(rapi, "DELETE", f"/2/jobs/{job_id}"),
                         (200, [False, f"Job {job_id} not found in queue"]))
        cluster.release_queue()
        job = await run(rapi, "PUT", "/2/instances/snf-14/shutdown")
        self.assertEqual(job["status"], "success")

    async def test_cannot_cancel_running_job(self) -> None:
        """A job that left the queue cannot be cancelled and still finishes."""
        cluster = await started(self, exec_time=0.2)
        rapi = client(self, cluster)
        status, job_id = await call(rapi, "POST", "/2/instances", create_body("snf-15"))
        for _ in range(500):
            status, job = await call(rapi, "GET", f"/2/jobs/{job_id}")
            if job["status"] == "running":
                break
            await sleep(0.01)
        self.assertEqual(await call(rapi, "DELETE", f"/2/jobs/{job_id}"), (200, [
            False, "Job no longer waiting, can't cancel (informed it anyway)"]))
        self.assertEqual((await wait_job(rapi, job_id))["status"], "success")


class AdminTests(unittest.TestCase):
    async def test_admin_shutdown(self) -> None:
        """An administrator's job is a normal job whose reason trail names
        gnt-instance; it changes the instance like the RAPI one."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/instances", create_body("snf-16"))
        job_id = cluster.admin("OP_INSTANCE_SHUTDOWN", "snf-16", timeout=0)
        job = await wait_job(rapi, job_id)
        self.assertEqual(job["status"], "success")
        self.assertEqual(job["ops"][0]["reason"][0][:2], ["gnt:client:gnt-instance", "stop"])
        self.assertEqual(job["ops"][0]["timeout"], 0)
        self.assertEqual(state(await instance(rapi, "snf-16")), ("ADMIN_down", "down", False))


class DependencyTests(unittest.TestCase):
    async def test_depends(self) -> None:
        """A job that depends on another waits for it; when the other was
        cancelled (and cancelled is not accepted) the dependent job is
        cancelled too, as Ganeti's dependency manager does."""
        cluster = await started(self)
        rapi = client(self, cluster)
        cluster.hold_queue()
        status, first = await call(rapi, "POST", "/2/instances", create_body("snf-17"))
        status, second = await call(rapi, "PUT", "/2/instances/snf-17/shutdown",
                                    {"depends": [[first, ["success"]]]})
        status, third = await call(rapi, "PUT", "/2/instances/snf-17/startup")
        self.assertEqual(await call(rapi, "DELETE", f"/2/jobs/{first}"),
                         (200, [True, f"Dequeued job {first}"]))
        cluster.release_queue()
        job = await wait_job(rapi, second)
        self.assertEqual(job["status"], "canceled")
        self.assertEqual(job["opresult"], ["Job canceled by request"])
        self.assertEqual((await wait_job(rapi, third))["status"], "error")


class AccountingTests(unittest.TestCase):
    async def test_node_resources_follow_instances(self) -> None:
        """mfree counts running instances' memory, dfree their disks and
        pinst_cnt the instances, on the node they landed on."""
        cluster = await started(self, node_memory=8192, node_disk=102400)
        rapi = client(self, cluster)

        async def node() -> dict[str, Any]:
            return (await call(rapi, "GET", f"/2/nodes/{NODE}"))[1]

        await run(rapi, "POST", "/2/instances", create_body("snf-18"))
        after = await node()
        self.assertEqual((after["mfree"], after["dfree"], after["pinst_cnt"],
                          after["pinst_list"]), (8192 - 1024, 102400 - 2048, 1, ["snf-18"]))
        await run(rapi, "PUT", "/2/instances/snf-18/shutdown")
        self.assertEqual((await node())["mfree"], 8192)
        await run(rapi, "DELETE", "/2/instances/snf-18")
        after = await node()
        self.assertEqual((after["mfree"], after["dfree"], after["pinst_cnt"]),
                         (8192, 102400, 0))

    async def test_drbd_uses_two_nodes(self) -> None:
        """A drbd instance gets a primary and a secondary node; both lose
        the disk space (plus metadata) and count it."""
        cluster = await started(self, nodes=2, node_disk=102400)
        rapi = client(self, cluster)
        job = await run(rapi, "POST", "/2/instances",
                        create_body("snf-19", disk_template="drbd"))
        self.assertEqual(len(job["opresult"][0]), 2)
        inst = await instance(rapi, "snf-19")
        self.assertEqual(len(inst["snodes"]), 1)
        status, nodes = await call(rapi, "GET", "/2/nodes?bulk=1")
        self.assertEqual(sorted((n["pinst_cnt"], n["sinst_cnt"]) for n in nodes),
                         [(0, 1), (1, 0)])
        self.assertEqual({n["dfree"] for n in nodes}, {102400 - 2048 - 128})
