"""The simulator's Ganeti networks: /2/networks and /2/groups, the network
jobs, address pools and NICs on networks, as measured on Ganeti 3.0.2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial import unittest

from snfd.ganeti_sim import SimulatedCluster
from tests.ganeti_sim.support import (
    call,
    client,
    create_body,
    reactor,
    run,
    started,
    wait_job,
)

NET = "snf-net-1"
NET_BODY = {"network_name": NET, "network": "10.99.0.0/24", "gateway": "10.99.0.1",
            "mac_prefix": "aa:00:01", "add_reserved_ips": ["10.99.0.10"],
            "conflicts_check": False}
CONNECT = {"group_name": "default", "network_mode": "bridged", "network_link": "gntbr0"}


def net_nic(**params: Any) -> dict[str, Any]:
    return {"network": NET, **params}


def diskless(name: str, *nics: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return create_body(name, disk_template="diskless", disks=[], nics=list(nics),
                       os_type="noop+default", beparams={"vcpus": 1, "memory": 128},
                       osparams={}, **overrides)


async def connected(testcase: unittest.TestCase) -> tuple[Any, Any]:
    """A cluster with NET created and connected to group default."""
    cluster = await started(testcase)
    rapi = client(testcase, cluster)
    assert (await run(rapi, "POST", "/2/networks", NET_BODY))["status"] == "success"
    connect = await run(rapi, "PUT", f"/2/networks/{NET}/connect", CONNECT)
    assert connect["status"] == "success"
    return cluster, rapi


def error_of(job: dict[str, Any]) -> list[Any]:
    """[error class, message, ecode] of a failed single-op job."""
    error_class, args = job["opresult"][0]
    return [error_class, *args]


class NetworkResourceTests(unittest.TestCase):
    async def test_create_and_show(self) -> None:
        """A created network lists as {name, uri}, and in bulk/alone with its
        pool: network/broadcast addresses, gateway and reserved IPs external."""
        cluster = await started(self)
        rapi = client(self, cluster)
        self.assertEqual(await call(rapi, "GET", "/2/networks"), (200, []))
        job = await run(rapi, "POST", "/2/networks", {**NET_BODY, "tags": ["t1"]})
        self.assertEqual((job["status"], job["summary"], job["opresult"]),
                         ("success", [f"NETWORK_ADD({NET})"], [None]))
        self.assertEqual(await call(rapi, "GET", "/2/networks"),
                         (200, [{"name": NET, "uri": f"/2/networks/{NET}"}]))
        status, net = await call(rapi, "GET", f"/2/networks/{NET}")
        self.assertEqual(status, 200)
        self.assertEqual((await call(rapi, "GET", "/2/networks?bulk=1"))[1], [net])
        self.assertEqual(
            {k: net[k] for k in ("network", "gateway", "mac_prefix", "free_count",
                                 "reserved_count", "group_list", "inst_list",
                                 "external_reservations", "tags", "network6")},
            {"network": "10.99.0.0/24", "gateway": "10.99.0.1", "mac_prefix": "aa:00:01",
             "free_count": 252, "reserved_count": 4, "group_list": [], "inst_list": [],
             "external_reservations": "10.99.0.0, 10.99.0.1, 10.99.0.10, 10.99.0.255",
             "tags": ["t1"], "network6": None})
        self.assertEqual(net["map"], "XX" + "." * 8 + "X" + "." * 244 + "X")

    async def test_unknown_network_is_404(self) -> None:
        """GET of an unknown network answers Ganeti's 404."""
        rapi = client(self, await started(self))
        status, body = await call(rapi, "GET", "/2/networks/nope")
        self.assertEqual((status, body["message"]), (404, "Not Found"))

    async def test_groups(self) -> None:
        """/2/groups lists the one group, default; bulk shows its nodes."""
        cluster = await started(self)
        rapi = client(self, cluster)
        self.assertEqual(await call(rapi, "GET", "/2/groups"),
                         (200, [{"name": "default", "uri": "/2/groups/default"}]))
        status, groups = await call(rapi, "GET", "/2/groups?bulk=1")
        self.assertEqual((groups[0]["name"], groups[0]["node_list"]),
                         ("default", cluster.nodes))

    async def test_bad_bodies(self) -> None:
        """A create without a subnet, or a connect body naming the network,
        is a 400 before any job exists."""
        rapi = client(self, await started(self))
        status, body = await call(rapi, "POST", "/2/networks", {"network_name": "x"})
        self.assertEqual(status, 400)
        self.assertIn("OP_NETWORK_ADD.network", body["message"])
        status, body = await call(rapi, "PUT", "/2/networks/x/connect",
                                  {**CONNECT, "network_name": "y"})
        self.assertEqual(status, 400)
        self.assertIn("Can&#x27;t overwrite static parameters", body["message"])

    async def test_create_errors(self) -> None:
        """A duplicate name fails already_exists; a gateway or reservation
        outside the subnet fails as OpExecError."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/networks", NET_BODY)
        job = await run(rapi, "POST", "/2/networks", NET_BODY)
        self.assertEqual(error_of(job)[0::2], ["OpPrereqError", "already_exists"])
        job = await run(rapi, "POST", "/2/networks",
                        {"network_name": "n3", "network": "10.97.0.0/28",
                         "gateway": "10.96.0.1"})
        self.assertEqual(error_of(job), [
            "OpExecError", "Cannot create IP address pool for network 'n3':"
            " 10.97.0.0/28 does not contain 10.96.0.1"])
        job = await run(rapi, "POST", "/2/networks",
                        {"network_name": "n4", "network": "10.97.0.0/28",
                         "add_reserved_ips": ["10.96.0.1"]})
        self.assertEqual(error_of(job), [
            "OpExecError", "Cannot reserve IP address '10.96.0.1': 10.97.0.0/28 does not"
            " contain 10.96.0.1"])


class ConnectionTests(unittest.TestCase):
    async def test_connect_disconnect_delete(self) -> None:
        """Connecting shows in group_list; a connected network cannot be
        removed (wrong_state, with a warning); disconnected it can."""
        cluster, rapi = await connected(self)
        net = (await call(rapi, "GET", f"/2/networks/{NET}"))[1]
        self.assertEqual(net["group_list"], [["default", "bridged", "gntbr0", ""]])
        job = await run(rapi, "DELETE", f"/2/networks/{NET}")
        self.assertEqual(error_of(job),
                         ["OpPrereqError", "Network still connected", "wrong_state"])
        self.assertIsNotNone(job["start_ts"])
        self.assertEqual(job["oplog"][0][0][3], f" - WARNING: Network '{NET}' is connected"
                         " to the following node groups: default")
        self.assertEqual((await run(rapi, "PUT", f"/2/networks/{NET}/disconnect",
                                    {"group_name": "default"}))["status"], "success")
        self.assertEqual((await run(rapi, "DELETE", f"/2/networks/{NET}"))["status"],
                         "success")
        self.assertEqual(await call(rapi, "GET", "/2/networks"), (200, []))

    async def test_unknown_network_or_group(self) -> None:
        """Unknown networks and groups fail unknown_entity while waiting."""
        cluster, rapi = await connected(self)
        job = await run(rapi, "DELETE", "/2/networks/nonet")
        self.assertEqual(error_of(job),
                         ["OpPrereqError", "Network 'nonet' not found", "unknown_entity"])
        job = await run(rapi, "PUT", f"/2/networks/{NET}/connect",
                        {**CONNECT, "group_name": "nogroup"})
        self.assertEqual(error_of(job), ["OpPrereqError", "Node group 'nogroup' not found",
                                         "unknown_entity"])

    async def test_twice_is_a_warning(self) -> None:
        """Connecting twice or disconnecting an unconnected network succeeds
        with a warning."""
        cluster, rapi = await connected(self)
        job = await run(rapi, "PUT", f"/2/networks/{NET}/connect", CONNECT)
        self.assertEqual((job["status"], job["oplog"][0][0][3]), (
            "success", f" - WARNING: Network '{NET}' is already mapped to group 'default'"))
        await run(rapi, "PUT", f"/2/networks/{NET}/disconnect", {"group_name": "default"})
        job = await run(rapi, "PUT", f"/2/networks/{NET}/disconnect",
                        {"group_name": "default"})
        self.assertEqual((job["status"], job["oplog"][0][0][3]), (
            "success", f" - WARNING: Network '{NET}' is not mapped to group 'default'"))

    async def test_disconnect_in_use(self) -> None:
        """A network a NIC is on cannot be disconnected."""
        cluster, rapi = await connected(self)
        await run(rapi, "POST", "/2/instances", diskless("snf-1", net_nic(ip="10.99.0.5")))
        job = await run(rapi, "PUT", f"/2/networks/{NET}/disconnect",
                        {"group_name": "default"})
        self.assertEqual(error_of(job), [
            "OpPrereqError", "Conflicting IP addresses found;  remove/modify the"
            " corresponding network interfaces", "wrong_state"])
        self.assertIn("snf-1: nic0/10.99.0.5", job["oplog"][0][0][3])


class NicTests(unittest.TestCase):
    async def test_explicit_and_pool(self) -> None:
        """A NIC on a network gets the group's mode/link, the network's MAC
        prefix and its IP; "pool" takes the first free address; the
        instance shows the network's uuid and name."""
        cluster, rapi = await connected(self)
        job = await run(rapi, "POST", "/2/instances",
                        diskless("snf-1", net_nic(ip="10.99.0.5", name="a"),
                                 net_nic(ip="pool")))
        self.assertEqual(job["status"], "success")
        logs = [entry[3] for entry in job["oplog"][0]]
        self.assertIn(" - INFO: NIC/0 inherits netparams ['gntbr0', 'bridged', '']", logs)
        self.assertIn(f" - INFO: Chose IP 10.99.0.2 from network {NET}", logs)
        inst = (await call(rapi, "GET", "/2/instances/snf-1"))[1]
        net = (await call(rapi, "GET", f"/2/networks/{NET}"))[1]
        self.assertEqual(inst["nic.ips"], ["10.99.0.5", "10.99.0.2"])
        self.assertEqual(inst["nic.networks"], [net["uuid"], net["uuid"]])
        self.assertEqual(inst["nic.networks.names"], [NET, NET])
        self.assertEqual(inst["nic.modes"], ["bridged", "bridged"])
        self.assertEqual(inst["nic.links"], ["gntbr0", "gntbr0"])
        self.assertEqual(inst["custom_nicparams"],
                         [{"mode": "bridged", "link": "gntbr0", "vlan": ""}] * 2)
        self.assertTrue(all(m.startswith("aa:00:01:") for m in inst["nic.macs"]))
        self.assertEqual((net["inst_list"], net["free_count"]), (["snf-1"], 250))

    async def test_taken_or_outside(self) -> None:
        """An address in use, reserved or outside the subnet is refused."""
        cluster, rapi = await connected(self)
        await run(rapi, "POST", "/2/instances", diskless("snf-1", net_nic(ip="10.99.0.5")))
        for ip in ("10.99.0.5", "10.99.0.1", "10.99.0.10", "10.98.0.5"):
            job = await run(rapi, "POST", "/2/instances", diskless("snf-2", net_nic(ip=ip)))
            self.assertEqual(error_of(job), [
                "OpPrereqError", f"IP address {ip} already in use or does not belong to"
                f" network {NET}", "resource_not_unique"])

    async def test_nic_argument_errors(self) -> None:
        """Unknown network, pool without network, mode with network."""
        cluster, rapi = await connected(self)
        cases = [
            ({"network": "nonet", "ip": "pool"},
             ["OpPrereqError", "Network 'nonet' not found", "unknown_entity"]),
            ({"ip": "pool"}, ["OpPrereqError", "if ip=pool, parameter network must be"
                              " passed too", "wrong_input"]),
            (net_nic(mode="routed"), ["OpPrereqError", "If network is given, no mode or"
                                      " link is allowed to be passed", "wrong_input"]),
        ]
        for nic, want in cases:
            job = await run(rapi, "POST", "/2/instances", diskless("snf-2", nic))
            self.assertEqual(error_of(job), want)

    async def test_unconnected_network(self) -> None:
        """A NIC on a network the group is not connected to makes the
        iallocator fail."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/networks", NET_BODY)
        job = await run(rapi, "POST", "/2/instances", diskless("snf-2", net_nic(ip="pool")))
        self.assertEqual(error_of(job)[0::2], ["OpPrereqError", "insufficient_resources"])
        self.assertIn("group default is not connected to a network required by instance"
                      " snf-2", error_of(job)[1])

    async def test_modify_add_remove_and_delete_release(self) -> None:
        """Modify adds a NIC from the pool (the chosen IP and MAC written
        back into the job), removing it or the instance frees the address."""
        cluster, rapi = await connected(self)
        await run(rapi, "POST", "/2/instances", diskless("snf-1", net_nic(ip="10.99.0.5")))
        status, job_id = await call(rapi, "PUT", "/2/instances/snf-1/modify",
                                    {"nics": [["add", net_nic(ip="pool", name="p")]]})
        job = await wait_job(rapi, job_id)
        self.assertEqual(job["status"], "success")
        added = job["ops"][0]["nics"][0][2]
        self.assertEqual(added["ip"], "10.99.0.2")
        self.assertTrue(added["mac"].startswith("aa:00:01:"))
        self.assertEqual(job["opresult"][0][0][1],
                         f"add:mac={added['mac']},ip=10.99.0.2,mode=bridged,link=gntbr0,"
                         f"network={NET}")
        net = (await call(rapi, "GET", f"/2/networks/{NET}"))[1]
        self.assertEqual(net["free_count"], 250)
        await run(rapi, "PUT", "/2/instances/snf-1/modify", {"nics": [["remove", "p", {}]]})
        self.assertEqual((await call(rapi, "GET", f"/2/networks/{NET}"))[1]["free_count"],
                         251)
        await run(rapi, "DELETE", "/2/instances/snf-1")
        net = (await call(rapi, "GET", f"/2/networks/{NET}"))[1]
        self.assertEqual((net["free_count"], net["inst_list"]), (252, []))


class DependsTests(unittest.TestCase):
    async def test_create_waits_for_connect(self) -> None:
        """A create that depends on the connect job waits for it, and then
        finds the network connected."""
        cluster = await started(self)
        rapi = client(self, cluster)
        await run(rapi, "POST", "/2/networks", NET_BODY)
        cluster.hold_queue()
        status, connect = await call(rapi, "PUT", f"/2/networks/{NET}/connect", CONNECT)
        status, create = await call(rapi, "POST", "/2/instances", diskless(
            "snf-1", net_nic(ip="pool"), depends=[[connect, ["success"]]]))
        cluster.release_queue()
        self.assertEqual((await wait_job(rapi, create))["status"], "success")
        self.assertEqual((await wait_job(rapi, connect))["status"], "success")

    async def test_wrong_status_and_unknown(self) -> None:
        """A dependency that ended in a status not listed fails the job
        (after it started waiting); an unknown one too; a relative id
        counts back from the job's own id."""
        cluster, rapi = await connected(self)
        failed = await run(rapi, "DELETE", f"/2/networks/{NET}")
        job = await run(rapi, "PUT", f"/2/networks/{NET}/disconnect",
                        {"group_name": "default", "depends": [[failed["id"], ["success"]]]})
        self.assertEqual(error_of(job), [
            "OpExecError", f"Dependency job {failed['id']} finished with status 'error',"
            " not one of 'success' as required"])
        self.assertIsNotNone(job["start_ts"])
        job = await run(rapi, "PUT", f"/2/networks/{NET}/disconnect",
                        {"group_name": "default", "depends": [[9999, ["success"]]]})
        self.assertEqual(error_of(job), ["OpExecError", "Dependency error: Job 9999 not found"])
        job = await run(rapi, "PUT", f"/2/networks/{NET}/connect",
                        {**CONNECT, "depends": [[-1, ["error"]]]})
        self.assertEqual(job["status"], "success")
        self.assertEqual(job["ops"][0]["depends"], [[job["id"] - 1, ["error"]]])


class PersistenceTests(unittest.TestCase):
    async def test_networks_survive_a_restart(self) -> None:
        """Networks, the group's connections and reserved addresses come
        back after a restart."""
        state = Path(self.mktemp())
        first = SimulatedCluster(reactor(), state, "sim.ganeti.test", queue_delay=0.01,
                                 exec_time=0.01)
        await first.start()
        try:
            rapi = client(self, first)
            await run(rapi, "POST", "/2/networks", NET_BODY)
            await run(rapi, "PUT", f"/2/networks/{NET}/connect", CONNECT)
            await run(rapi, "POST", "/2/instances", diskless("snf-1", net_nic(ip="pool")))
            before = (await call(rapi, "GET", f"/2/networks/{NET}"))[1]
            await first.flush()
        finally:
            await first.stop()
        second = await started(self, state)
        rapi = client(self, second)
        self.assertEqual((await call(rapi, "GET", f"/2/networks/{NET}"))[1], before)
        inst = (await call(rapi, "GET", "/2/instances/snf-1"))[1]
        self.assertEqual(inst["nic.networks.names"], [NET])
