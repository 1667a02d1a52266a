"""Networks on a real Ganeti 3.0 cluster, end to end through snfd's APIs.

The issue's scenario: a server on a private network gets a floating IP,
another server joins the network, a port is detached, the servers go and
then the networks, all of it followed through Ganeti's job events.

One real single-node Ganeti cluster in a network namespace of its own
(``snfd.testing.ganeti.RealGanetiCluster``, fake hypervisor, the no-op OS),
a private RabbitMQ, a fresh database and a ``twistd snfd`` node with the
identity, pithos, cyclades and ganeti-events plugins, set up as in
``test_compute_real_ganeti``: the node watches the cluster's job queue and
publishes each job's progress on the bus, where its dispatcher applies it.
The reconciler's interval is a day, so every port status and every
backend-network state the test sees came through the job-queue watcher
and RabbitMQ.  The Ganeti side is read over the cluster's RAPI
(``GET /2/instances/<name>``, ``GET /2/networks``).

Both network kinds connect to the cluster's bridge: ``filtered_bridge``
(MAC_FILTERED, the users' private networks) and ``default_bridge``
(CUSTOM, the administrator's public network) are ``gntbr0``, the empty
bridge inside the cluster's namespace.  ``nic_hotplug`` is off: Ganeti's
fake hypervisor refuses hotplug ("Hotplug is not possible: Hotplug is
not supported by this hypervisor"), so NICs of the running test servers
change in Ganeti's configuration only, as on a cluster without hotplug.
(With hotplug on, the attach's modify job fails that way and the port
stays BUILD.)

Needs root (network namespaces, Ganeti daemons): elsewhere the test skips
with ``real_ganeti_unavailable()``'s reason.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
from twisted.internet import threads
from twisted.trial import unittest

from snfd.cyclades.networks import pools
from snfd.testing.cloudnode import User
from tests.integration.real_ganeti import rapi_get, start_node

SERVERS = "/compute/v2.0/servers"
NET = "/network/v2.0"
#: Seconds a real Ganeti job (create with a 1 GiB file disk, modify, ...) may take.
JOB_WAIT = 180.0
PUBLIC_CIDR, PUBLIC_GATEWAY = "10.88.0.0/24", "10.88.0.1"
PRIVATE_CIDR, PRIVATE_GATEWAY = "192.168.77.0/24", "192.168.77.1"


def _job_opcodes(queue_dir: Path, job_id: int) -> list[str]:
    """The opcodes (``OP_ID``) of job ``job_id`` in the cluster's queue,
    live or archived; [] when its file is not found."""
    candidates = [queue_dir / f"job-{job_id}",
                  *sorted((queue_dir / "archive").glob(f"*/job-{job_id}"))]
    for path in candidates:
        with contextlib.suppress(OSError, ValueError):
            job = json.loads(path.read_text())
            return [op.get("input", {}).get("OP_ID", "") for op in job.get("ops", [])]
    return []


class NetworksOnRealGanetiTests(unittest.TestCase):
    """The network API drives a real Ganeti cluster; ports and networks
    follow the cluster's job events."""

    timeout = 1200

    async def setUp(self) -> None:
        root = await start_node(
            self, "snfd-network-real-",
            "filtered_bridge = gntbr0\ndefault_bridge = gntbr0\nnic_hotplug = no\n",
            "/network/v2.0/networks")
        await threads.deferToThread(self.provision, root)

    def provision(self, root: Path) -> None:
        """The operator's part: the backend, a flavor, an image, an
        administrator and a user."""
        node, cluster = self.node, self.cluster
        backend = json.loads(node.manage(
            "backend-add", cluster.name, "--url", cluster.url, "--username", cluster.username,
            "--password", cluster.password, "--certificate", str(root / "rapi.pem"),
            "--events", "watch", "--json"))
        self.assertEqual(backend["events"], "watch")
        flavors = json.loads(node.manage("flavor-create", "--cpu", "1", "--ram", "128",
                                         "--disk", "1", "--disk-template", "file", "--json"))
        self.flavor_id = flavors[0]["id"]
        image_file = root / "tiny.img"
        image_file.write_bytes(b"\0" * 4096)
        image = json.loads(node.manage("image-register", str(image_file), "--name", "Test",
                                       "--property", "OS=debian", "--json"))
        self.image_id = image["id"]
        made = json.loads(node.manage(
            "user-add", "--email", "root@example.org", "--password", "root password",
            "--first-name", "Root", "--activate", "--admin", "--json"))
        self.admin = User(made["uuid"], "root@example.org", "root password", made["token"])
        self.alice = node.add_user("alice@example.org", "Alice")

    # -- helpers (blocking; run in threads) ------------------------------------

    def fail_with_log(self, message: str) -> None:
        raise AssertionError(f"{message}\n--- node log:\n{self.node.tail(80)}")

    def api(self, user: User, method: str, path: str, body: Any = None,
            expect: int | None = None) -> Any:
        status, answer = self.node.api(method, path, user.token, body)
        if expect is not None and status != expect:
            self.fail_with_log(f"{method} {path} {body}: {status} {answer}")
        return answer

    def rapi(self, path: str) -> tuple[int, Any]:
        """A GET on the cluster's RAPI: status and the parsed answer."""
        return rapi_get(self.cluster, path)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def wait(self, what: str, probe: Callable[[], Any]) -> Any:
        """Poll ``probe`` until it returns something true; that value."""
        deadline = time.monotonic() + JOB_WAIT
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.3)
        self.fail_with_log(f"timed out waiting for {what}")
        raise AssertionError("unreachable")

    def create_server(self, name: str, network_id: str) -> int:
        body = self.api(self.alice, "POST", SERVERS, {"server": {
            "name": name, "imageRef": self.image_id, "flavorRef": self.flavor_id,
            "networks": [{"uuid": network_id}]}}, expect=202)
        self.assertEqual(body["server"]["status"], "BUILD")
        return int(body["server"]["id"])

    def wait_server(self, sid: int, wanted: str) -> dict[str, Any]:
        def probe() -> Any:
            status, shown = self.node.api("GET", f"{SERVERS}/{sid}", self.alice.token)
            if status != 200:
                return None
            server = shown["server"]
            if server["status"] == "ERROR":
                self.fail_with_log(f"server {sid} went to ERROR: {self.server_row(sid)}")
            return server if server["status"] == wanted and not server["SNF:task_state"] \
                else None
        found: dict[str, Any] = self.wait(f"server {sid} {wanted}", probe)
        return found

    def wait_server_gone(self, sid: int) -> None:
        def probe() -> bool:
            status, shown = self.node.api("GET", f"{SERVERS}/{sid}", self.alice.token)
            return status == 404 or (status == 200 and shown["server"]["status"] == "DELETED")
        self.wait(f"server {sid} deleted", probe)

    def ports_of(self, sid: int) -> list[dict[str, Any]]:
        ports: list[dict[str, Any]] = self.api(
            self.alice, "GET", f"{NET}/ports?device_id={sid}", expect=200)["ports"]
        return ports

    def wait_port(self, port_id: str, wanted: str) -> dict[str, Any]:
        def probe() -> Any:
            port = self.api(self.alice, "GET", f"{NET}/ports/{port_id}", expect=200)["port"]
            if port["status"] == "ERROR":
                self.fail_with_log(f"port {port_id} went to ERROR")
            return port if port["status"] == wanted else None
        found: dict[str, Any] = self.wait(f"port {port_id} {wanted}", probe)
        return found

    def server_row(self, sid: int) -> dict[str, Any]:
        rows = self.query("SELECT operstate, backendjobid, backendopcode, backendjobstatus,"
                          " backendlogmsg FROM cyclades_servers WHERE id = %s", sid)
        keys = ("operstate", "backendjobid", "backendopcode", "backendjobstatus",
                "backendlogmsg")
        return dict(zip(keys, rows[0], strict=True)) if rows else {}

    def assert_event_applied(self, sid: int, opcode: str) -> int:
        """The server's newest ``opcode`` job the update path applied
        (``cyclades_job_events``) succeeded and exists in the cluster's
        queue with that opcode; its id.  (Not simply the server's last job:
        security-group deliveries add tag jobs and no-op modifies to an
        instance whenever its group's members change.)"""
        rows = self.query("SELECT job_id, result FROM cyclades_job_events WHERE server_id = %s"
                          " AND opcode = %s AND finish_time IS NOT NULL"
                          " ORDER BY job_id DESC LIMIT 1", sid, opcode)
        self.assertTrue(rows, f"no {opcode} applied to server {sid}: {self.server_row(sid)}")
        job_id, result = rows[0]
        self.assertEqual(str(result).lower(), "success", (job_id, result))
        self.assertIn(opcode, _job_opcodes(self.cluster.queue_dir, job_id))
        return int(job_id)

    def backend_network(self, network_id: str) -> dict[str, Any] | None:
        """The network's row on the (only) backend, or None."""
        rows = self.query("SELECT operstate, jobs, backendjobid FROM cyclades_backend_networks"
                          " WHERE network_id = %s", int(network_id))
        if not rows:
            return None
        operstate, jobs, job = rows[0]
        return {"operstate": operstate, "jobs": list(jobs), "backendjobid": job}

    def port_row_state(self, port_id: str) -> str | None:
        rows = self.query("SELECT state FROM cyclades_ports WHERE id = %s", int(port_id))
        return rows[0][0] if rows else None

    def expected_mac_prefix(self, network_id: str) -> str:
        """The network's MAC prefix in Ganeti, as snfd computes it from
        the network's pooled prefix."""
        (prefix,), = self.query("SELECT mac_prefix FROM cyclades_networks WHERE id = %s",
                                int(network_id))
        return pools.ganeti_mac_prefix(prefix)

    def wait_network_active(self, network_id: str) -> dict[str, Any]:
        """Wait for the network's add and connect jobs, submitted when its
        first NIC went to the backend, to be applied from their events."""
        first = self.backend_network(network_id)
        self.assertIsNotNone(first, f"network {network_id} never went to the backend")
        assert first is not None
        self.assertEqual(first["operstate"], "PENDING", first)
        jobs = first["jobs"]
        self.assertEqual([_job_opcodes(self.cluster.queue_dir, j) for j in jobs],
                         [["OP_NETWORK_ADD"], ["OP_NETWORK_CONNECT"]], first)
        self.assertEqual(first["backendjobid"], jobs[-1], first)

        def probe() -> Any:
            row = self.backend_network(network_id)
            return row if row and row["operstate"] == "ACTIVE" else None
        row: dict[str, Any] = self.wait(f"network {network_id} ACTIVE on the backend", probe)
        self.assertEqual(row["jobs"], [], row)
        return row

    def instance(self, sid: int) -> dict[str, Any]:
        status, found = self.rapi(f"/2/instances/snf-{sid}")
        self.assertEqual(status, 200, found)
        return dict(found)

    def ganeti_network(self, network_id: str) -> tuple[int, Any]:
        return self.rapi(f"/2/networks/snf-net-{network_id}")

    def assert_nics(self, sid: int, ports: list[dict[str, Any]], networks: list[str]) -> None:
        """Instance ``snf-<sid>`` has exactly one NIC per port, in order:
        named after it, with its MAC and address, on ``snf-net-<network>``,
        bridged on gntbr0."""
        inst = self.instance(sid)
        self.assertEqual(inst["nic.names"], [f"snf-nic-{p['id']}" for p in ports], inst)
        self.assertEqual(inst["nic.macs"], [p["mac_address"] for p in ports], inst)
        self.assertEqual(inst["nic.ips"], [p["fixed_ips"][0]["ip_address"] for p in ports],
                         inst)
        self.assertEqual(inst["nic.networks.names"], [f"snf-net-{n}" for n in networks], inst)
        self.assertEqual(inst["nic.modes"], ["bridged"] * len(ports), inst)
        self.assertEqual(inst["nic.links"], ["gntbr0"] * len(ports), inst)

    def assert_ganeti_network(self, network_id: str, cidr: str, gateway: str,
                              tags: list[str], instances: list[int]) -> None:
        """``snf-net-<id>`` in Ganeti: subnet, gateway, the backend's MAC
        prefix, the flavor's tag, connected bridged to gntbr0 in the
        default group, with these instances' NICs on it."""
        status, net = self.ganeti_network(network_id)
        self.assertEqual(status, 200, net)
        self.assertEqual((net["network"], net["gateway"], net["mac_prefix"], net["tags"]),
                         (cidr, gateway, self.expected_mac_prefix(network_id), tags), net)
        self.assertEqual(net["group_list"], [["default", "bridged", "gntbr0", ""]], net)
        self.assertEqual(sorted(net["inst_list"]), sorted(f"snf-{s}" for s in instances), net)

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await threads.deferToThread(fn, *args, **kwargs)

    # -- the scenario ------------------------------------------------------------

    async def test_private_network_floating_ip_ports_and_removal(self):
        """A server on a private network with a floating IP, another server
        joining the network, a port detached, the servers and then the
        networks deleted, on a real Ganeti cluster.  The networks reach
        Ganeti (add + connect: subnet, gateway, the backend's MAC prefix,
        the flavor's tag, bridged on the configured bridge) with the first
        NIC on them, and their backend state goes PENDING -> ACTIVE from
        the add and connect jobs' events; ports go BUILD -> ACTIVE from the
        create and modify jobs' events, with NICs named after them carrying
        their MAC, address and network; a deleted port's NIC leaves the
        instance and the port goes when the modify job's event says so; a
        deleted network is disconnected and removed from Ganeti, its
        backend row going with the remove job's event."""
        alice, admin, call = self.alice, self.admin, self.call

        # The administrator's public network with a floating-IP pool.
        public = (await call(self.api, admin, "POST", f"{NET}/networks", {"network": {
            "name": "public", "type": "CUSTOM", "router:external": True}},
            expect=201))["network"]
        self.assertEqual((public["router:external"], public["SNF:floating_ip_pool"]),
                         (True, True), public)
        pub = public["id"]
        await call(self.api, admin, "POST", f"{NET}/subnets", {"subnet": {
            "network_id": pub, "cidr": PUBLIC_CIDR, "ip_version": 4}}, expect=201)

        # Alice's private network.
        private = (await call(self.api, alice, "POST", f"{NET}/networks", {"network": {
            "name": "private"}}, expect=201))["network"]
        self.assertEqual(private["type"], "MAC_FILTERED", private)
        priv = private["id"]
        subnet = (await call(self.api, alice, "POST", f"{NET}/subnets", {"subnet": {
            "network_id": priv, "cidr": PRIVATE_CIDR, "ip_version": 4}},
            expect=201))["subnet"]
        self.assertEqual(subnet["gateway_ip"], PRIVATE_GATEWAY, subnet)
        self.assertIsNone(await call(self.backend_network, priv))

        # Server A on the private network: the network goes to Ganeti with it.
        a = await call(self.create_server, "vm-a", priv)
        a_ports = await call(self.ports_of, a)
        self.assertEqual(len(a_ports), 1, a_ports)
        a_priv = a_ports[0]
        self.assertEqual((a_priv["status"], a_priv["network_id"]), ("BUILD", priv), a_priv)
        await call(self.wait_network_active, priv)
        await call(self.wait_server, a, "ACTIVE")
        await call(self.assert_event_applied, a, "OP_INSTANCE_CREATE")
        a_priv = await call(self.wait_port, a_priv["id"], "ACTIVE")
        await call(self.assert_nics, a, [a_priv], [priv])
        await call(self.assert_ganeti_network, priv, PRIVATE_CIDR, PRIVATE_GATEWAY,
                   ["private-filtered"], [a])

        # A floating IP, attached to A Synnefo's way: a port with its address.
        fip = (await call(self.api, alice, "POST", f"{NET}/floatingips", {"floatingip": {
            "floating_network_id": pub}}, expect=201))["floatingip"]
        address = fip["floating_ip_address"]
        self.assertEqual((fip["status"], fip["port_id"]), ("DOWN", None), fip)
        self.assertIsNone(await call(self.backend_network, pub))
        a_pub = (await call(self.api, alice, "POST", f"{NET}/ports", {"port": {
            "network_id": pub, "device_id": str(a),
            "fixed_ips": [{"ip_address": address}]}}, expect=201))["port"]
        self.assertEqual((a_pub["status"], a_pub["fixed_ips"][0]["ip_address"]),
                         ("BUILD", address), a_pub)
        await call(self.wait_network_active, pub)
        a_pub = await call(self.wait_port, a_pub["id"], "ACTIVE")
        await call(self.wait_server, a, "ACTIVE")
        attached = await call(self.assert_event_applied, a, "OP_INSTANCE_SET_PARAMS")
        fip = (await call(self.api, alice, "GET", f"{NET}/floatingips/{fip['id']}",
                          expect=200))["floatingip"]
        self.assertEqual((fip["status"], fip["port_id"], fip["instance_id"]),
                         ("ACTIVE", a_pub["id"], str(a)), fip)
        await call(self.assert_nics, a, [a_priv, a_pub], [priv, pub])
        await call(self.assert_ganeti_network, pub, PUBLIC_CIDR, PUBLIC_GATEWAY, [], [a])

        # Server B joins the private network, already on the backend: no new jobs.
        before = await call(self.backend_network, priv)
        b = await call(self.create_server, "vm-b", priv)
        b_ports = await call(self.ports_of, b)
        self.assertEqual([p["status"] for p in b_ports], ["BUILD"], b_ports)
        await call(self.wait_server, b, "ACTIVE")
        await call(self.assert_event_applied, b, "OP_INSTANCE_CREATE")
        b_priv = await call(self.wait_port, b_ports[0]["id"], "ACTIVE")
        self.assertEqual(await call(self.backend_network, priv), before)
        self.assertNotEqual(b_priv["fixed_ips"][0]["ip_address"],
                            a_priv["fixed_ips"][0]["ip_address"])
        await call(self.assert_nics, b, [b_priv], [priv])
        await call(self.assert_ganeti_network, priv, PRIVATE_CIDR, PRIVATE_GATEWAY,
                   ["private-filtered"], [a, b])

        # A's private port detached: the NIC leaves, then the port goes.
        await call(self.api, alice, "DELETE", f"{NET}/ports/{a_priv['id']}", expect=204)
        status, _ = await call(self.node.api, "GET", f"{NET}/ports/{a_priv['id']}",
                               alice.token)
        self.assertEqual(status, 404)
        self.assertEqual(await call(self.port_row_state, a_priv["id"]), "DELETING")
        await call(self.wait, f"port {a_priv['id']} removed by the event",
                   lambda: self.port_row_state(a_priv["id"]) is None)
        detached = await call(self.assert_event_applied, a, "OP_INSTANCE_SET_PARAMS")
        self.assertGreater(detached, attached)
        await call(self.assert_nics, a, [a_pub], [pub])
        self.assertEqual([p["id"] for p in await call(self.ports_of, a)], [a_pub["id"]])
        await call(self.assert_ganeti_network, priv, PRIVATE_CIDR, PRIVATE_GATEWAY,
                   ["private-filtered"], [b])

        # The servers go, with their ports; the floating IP is free again.
        for sid in (a, b):
            await call(self.api, alice, "DELETE", f"{SERVERS}/{sid}", expect=204)
        for sid in (a, b):
            await call(self.wait_server_gone, sid)
            self.assertEqual((await call(self.server_row, sid))["backendopcode"],
                             "OP_INSTANCE_REMOVE")
            status, _ = await call(self.rapi, f"/2/instances/snf-{sid}")
            self.assertEqual(status, 404)
        self.assertEqual((await call(self.api, alice, "GET", f"{NET}/ports",
                                     expect=200))["ports"], [])
        fip = (await call(self.api, alice, "GET", f"{NET}/floatingips/{fip['id']}",
                          expect=200))["floatingip"]
        self.assertEqual((fip["status"], fip["port_id"]), ("DOWN", None), fip)
        await call(self.api, alice, "DELETE", f"{NET}/floatingips/{fip['id']}", expect=204)

        # The networks go: disconnected and removed from Ganeti.
        await call(self.api, alice, "DELETE", f"{NET}/networks/{priv}", expect=204)
        await call(self.api, admin, "DELETE", f"{NET}/networks/{pub}", expect=204)
        for net in (priv, pub):
            row = await call(self.backend_network, net)
            self.assertEqual(row and row["operstate"], "DELETING", row)
            assert row is not None
            self.assertEqual(_job_opcodes(self.cluster.queue_dir, row["backendjobid"]),
                             ["OP_NETWORK_REMOVE"])
        for net in (priv, pub):
            await call(self.wait, f"network {net} removed by the event",
                       lambda net=net: self.backend_network(net) is None)
            status, _ = await call(self.ganeti_network, net)
            self.assertEqual(status, 404)
        status, listed = await call(self.rapi, "/2/networks")
        self.assertEqual((status, listed), (200, []))
        status, _ = await call(self.node.api, "GET", f"{NET}/networks/{priv}", alice.token)
        self.assertEqual(status, 404)

    async def test_nic_macs_under_the_ganeti_network_mac_prefix(self):
        """A NIC's MAC is under the MAC prefix of its Ganeti network, which
        Ganeti hands the node-side scripts as NETWORK_MAC_PREFIX: snfd's
        kvm-ifup-custom refuses a MAC_FILTERED NIC outside it ("MAC ... is
        outside NETWORK_MAC_PREFIX") and filters the NIC's traffic by it."""
        alice, call = self.alice, self.call
        networks = []
        for n, cidr in enumerate(("192.168.78.0/24", "192.168.79.0/24")):
            made = (await call(self.api, alice, "POST", f"{NET}/networks", {"network": {
                "name": f"private-{n}"}}, expect=201))["network"]
            await call(self.api, alice, "POST", f"{NET}/subnets", {"subnet": {
                "network_id": made["id"], "cidr": cidr, "ip_version": 4}}, expect=201)
            networks.append(made["id"])
        body = await call(self.api, alice, "POST", SERVERS, {"server": {
            "name": "vm-macs", "imageRef": self.image_id, "flavorRef": self.flavor_id,
            "networks": [{"uuid": n} for n in networks]}}, expect=202)
        sid = int(body["server"]["id"])
        await call(self.wait_server, sid, "ACTIVE")
        inst = await call(self.instance, sid)
        prefixes = []
        for name in inst["nic.networks.names"]:
            status, net = await call(self.rapi, f"/2/networks/{name}")
            self.assertEqual(status, 200, net)
            prefixes.append(net["mac_prefix"])
        self.assertEqual([mac[:8] for mac in inst["nic.macs"]], prefixes, inst)

