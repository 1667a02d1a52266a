"""The network service under real clients, against a real ``twistd snfd``
node (identity, pithos, cyclades and the simulated Ganeti cluster) on a
fresh database with a private RabbitMQ as its bus.

The issue's "done means", as a new user would do it: the ``openstack``
command line makes a private network and a subnet, boots two servers on
it and on the public network, allocates a floating IP, attaches it
(openstacksdk's ``PUT /floatingips/<id>`` with a port of the server: snfd
adds a port on the public network with that address, Synnefo's way),
moves it to the other server, lists and renames what it made, detaches
and deletes everything, and the user's quota (``/account/v1.0/quotas``)
returns to zero.  openstacksdk's network proxy does the same by hand,
with Nova's ``addFloatingIp``/``removeFloatingIp`` as well.

The public network is the one the simulated cluster's demo content seeds
("public": 192.0.2.0/24 and the SLAAC 2001:db8:100::/64, a floating-IP
pool).  Every port status seen here comes from Ganeti's job events
through the job-queue watcher, RabbitMQ and the dispatcher.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.cloudnode import CloudNode, User
from snfd.testing.postgres import fresh_database
from snfd.testing.rabbitmq import private_rabbit

PUBLIC_V4 = ipaddress.ip_network("192.0.2.0/24")
PUBLIC_V6 = ipaddress.ip_network("2001:db8:100::/64")
PRIVATE_CIDR = "10.0.0.0/24"
#: The resources a user's servers, networks and floating IPs charge.
CYCLADES = ("cyclades.vm", "cyclades.cpu", "cyclades.ram", "cyclades.total_cpu",
            "cyclades.total_ram", "cyclades.disk", "cyclades.network.private",
            "cyclades.floating_ip")
WAIT = 60.0


def _in(address: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return ipaddress.ip_address(address) in network


def _addresses(port: dict[str, Any]) -> list[str]:
    """The addresses of a port as `openstack port list` shows it."""
    return [ip["ip_address"] for ip in port["Fixed IP Addresses"]]


def _subnets(port: dict[str, Any]) -> set[str]:
    return {str(ip["subnet_id"]) for ip in port["Fixed IP Addresses"]}


class NetworkClientTests(unittest.TestCase):
    """Networks, subnets, ports and floating IPs through the ``openstack``
    command line and openstacksdk."""

    timeout = 600

    async def setUp(self) -> None:
        rabbit = await threads.deferToThread(private_rabbit, self)
        root = Path(tempfile.mkdtemp(prefix="snfd-network-clients-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.node = CloudNode(
            fresh_database(self), root / "node", "identity,pithos,cyclades,ganeti-sim",
            "[ganeti-sim]\nqueue_delay = 0.05\nexec_time = 0.2\n"
            "[cyclades]\nreconcile_interval = 5\ndefault_server_networks = SNF:ANY_PUBLIC\n",
            {"SNFD_BUS_URL": rabbit.url})
        self.addCleanup(self.node.stop)
        await threads.deferToThread(self.node.start, 120.0, "/network/v2.0/networks")
        self.alice = await threads.deferToThread(self.node.add_user, "alice@example.org",
                                                 "Alice")
        self.bob = await threads.deferToThread(self.node.add_user, "bob@example.org", "Bob")
        await threads.deferToThread(self.wait_demo)

    # -- helpers (blocking; run in threads) -------------------------------------------

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Poll ``probe`` until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n--- node log:\n"
                             + self.node.tail(80))

    def wait_demo(self) -> None:
        """The demo content (flavors, image, the public network with its
        two subnets) comes a moment after the API answers."""
        def probe() -> bool:
            status, body = self.node.api("GET", "/network/v2.0/networks?name=public",
                                         self.alice.token)
            flavors = json.loads(self.node.manage("flavor-list", "--json"))
            return (status == 200 and len(body["networks"]) == 1
                    and len(body["networks"][0]["subnets"]) == 2 and bool(flavors))
        self.wait("the demo content", probe)

    def cli(self, user: User, *argv: str) -> Any:
        return self.node.openstack(user, *argv)

    def cli_fails(self, user: User, *argv: str) -> str:
        """Run a command that must fail; what it said."""
        with self.assertRaises(AssertionError) as caught:
            self.node.openstack(user, *argv)
        return str(caught.exception)

    def usage(self, user: User) -> dict[str, int]:
        """The user's usage of the cyclades resources in their base
        project, as ``GET /account/v1.0/quotas`` shows it to them."""
        status, body = self.node.api("GET", "/account/v1.0/quotas", user.token)
        self.assertEqual(status, 200, body)
        return {r: body[user.uuid][r]["usage"] for r in CYCLADES}

    def ports_of(self, user: User, server: str) -> list[dict[str, Any]]:
        ports: list[dict[str, Any]] = self.cli(user, "port", "list", "--server", server,
                                               "--long", "-f", "json")
        return ports

    def wait_ports(self, user: User, server: str, count: int) -> list[dict[str, Any]]:
        """The server's ports once there are ``count`` of them, all ACTIVE."""
        def probe() -> Any:
            ports = self.ports_of(user, server)
            if any(p["Status"] == "ERROR" for p in ports):
                raise AssertionError(f"a port of server {server} went to ERROR: {ports}")
            return ports if len(ports) == count and all(
                p["Status"] == "ACTIVE" for p in ports) else None
        found: list[dict[str, Any]] = self.wait(f"{count} ACTIVE ports on {server}", probe)
        return found

    def nova_addresses(self, user: User, server: str) -> dict[str, list[dict[str, Any]]]:
        """The server's addresses in Nova's dialect (with their type)."""
        status, body = self.node.api("GET", f"/compute/v2.1/servers/{server}", user.token)
        self.assertEqual(status, 200, body)
        addresses: dict[str, list[dict[str, Any]]] = body["server"]["addresses"]
        return addresses

    # -- the openstack command line -----------------------------------------------------

    def cli_journey(self) -> None:
        alice = self.alice
        zero = dict.fromkeys(CYCLADES, 0)
        self.assertEqual(self.usage(alice), zero)
        public = self.cli(alice, "network", "show", "public", "-f", "json")
        self.assertTrue(public["router:external"])
        self.assertEqual(len(public["subnets"]), 2)

        # A private network and its subnet.
        net = self.cli(alice, "network", "create", "priv-net", "-f", "json")
        self.assertEqual((net["name"], net["status"], net["router:external"], net["shared"],
                          net["subnets"], net["project_id"]),
                         ("priv-net", "ACTIVE", False, False, [], alice.uuid))
        net_id = str(net["id"])
        subnet = self.cli(alice, "subnet", "create", "--network", "priv-net",
                          "--subnet-range", PRIVATE_CIDR, "priv-subnet", "-f", "json")
        self.assertEqual((subnet["cidr"], subnet["ip_version"], subnet["gateway_ip"],
                          str(subnet["network_id"]), subnet["allocation_pools"]),
                         (PRIVATE_CIDR, 4, "10.0.0.1", net_id,
                          [{"start": "10.0.0.2", "end": "10.0.0.254"}]))
        subnet_id = str(subnet["id"])
        shown = self.cli(alice, "network", "show", net_id, "-f", "json")
        self.assertEqual([str(s) for s in shown["subnets"]], [subnet_id])
        listed = self.cli(alice, "network", "list", "-f", "json")
        self.assertEqual(sorted(n["Name"] for n in listed), ["priv-net", "public"])
        self.assertEqual(self.usage(alice)["cyclades.network.private"], 1)
        # Bob sees the public network only, and not Alice's network by id.
        self.assertEqual([n["Name"] for n in self.cli(self.bob, "network", "list",
                                                      "-f", "json")], ["public"])
        self.assertIn("404", self.cli_fails(self.bob, "network", "show", net_id))

        # A user's port on the public network is refused: public addresses
        # come with a server or a floating IP (Synnefo's model).
        said = self.cli_fails(alice, "port", "create", "--network", "public", "mine")
        self.assertIn("403", said)
        self.assertIn("public network", said)

        # Two servers on the private and the public network: a fixed public
        # address each (IPv4 from the pool, IPv6 by SLAAC), no floating IP.
        image = self.cli(alice, "image", "list", "-f", "json")[0]["ID"]
        flavor = self.cli(alice, "flavor", "list", "-f", "json")[0]["Name"]
        servers: list[dict[str, Any]] = []
        for name in ("vm-one", "vm-two"):
            made = self.cli(alice, "server", "create", "--nic", f"net-id={net_id}",
                            "--nic", f"net-id={public['id']}", "--image", image,
                            "--flavor", flavor, "--wait", name, "-f", "json")
            self.assertEqual(made["status"], "ACTIVE")
            self.assertEqual(sorted(made["addresses"]), ["priv-net", "public"])
            (private_ip,) = made["addresses"]["priv-net"]
            v4, v6 = made["addresses"]["public"]
            self.assertTrue(_in(private_ip, ipaddress.ip_network(PRIVATE_CIDR)))
            self.assertTrue(_in(v4, PUBLIC_V4), v4)
            self.assertTrue(_in(v6, PUBLIC_V6), v6)
            servers.append(made)
        one, two = (str(s["id"]) for s in servers)
        self.assertEqual(len({s["addresses"]["priv-net"][0] for s in servers}), 2)
        self.assertEqual(len({s["addresses"]["public"][0] for s in servers}), 2)
        used = self.usage(alice)
        self.assertEqual((used["cyclades.vm"], used["cyclades.floating_ip"],
                          used["cyclades.network.private"]), (2, 0, 1))
        self.assertEqual(self.cli(alice, "floating", "ip", "list", "-f", "json"), [])

        # `port list` shows no network: a port's subnets say where it is.
        public_subnets = {str(s) for s in public["subnets"]}
        ports = self.wait_ports(alice, one, 2)
        by_network = {"public" if _subnets(p) <= public_subnets else _subnets(p).pop(): p
                      for p in ports}
        self.assertEqual(set(by_network), {subnet_id, "public"})
        self.assertEqual(_addresses(by_network[subnet_id]),
                         servers[0]["addresses"]["priv-net"])
        self.assertEqual(_addresses(by_network["public"]), servers[0]["addresses"]["public"])
        on_private = self.cli(alice, "port", "list", "--network", net_id, "-f", "json")
        self.assertEqual(len(on_private), 2)

        # A floating IP: held, not attached, charged.
        fip = self.cli(alice, "floating", "ip", "create", "public", "-f", "json")
        address = fip["floating_ip_address"]
        self.assertTrue(_in(address, PUBLIC_V4))
        self.assertNotIn(address, [s["addresses"]["public"][0] for s in servers])
        self.assertEqual((str(fip["floating_network_id"]), fip["port_id"], fip["status"]),
                         (str(public["id"]), None, "DOWN"))
        self.assertEqual(self.usage(alice)["cyclades.floating_ip"], 1)

        # Attached to vm-one: a third port, on the public network, with
        # that address (OSC: PUT /floatingips/<id> {"port_id": <a port of
        # the server>}).
        self.cli(alice, "server", "add", "floating", "ip", one, address)
        ports = self.wait_ports(alice, one, 3)
        floating_ports = [p for p in ports if _addresses(p) == [address]]
        self.assertEqual(len(floating_ports), 1, ports)
        self.assertLessEqual(_subnets(floating_ports[0]), public_subnets)
        fip = self.cli(alice, "floating", "ip", "show", address, "-f", "json")
        self.assertEqual((str(fip["port_id"]), fip["fixed_ip_address"], fip["status"],
                          str(fip["instance_id"])),
                         (str(floating_ports[0]["ID"]), address, "ACTIVE", one))
        listed = self.cli(alice, "floating", "ip", "list", "-f", "json")
        self.assertEqual([(f["Floating IP Address"], str(f["Port"])) for f in listed],
                         [(address, str(floating_ports[0]["ID"]))])
        addresses = self.cli(alice, "server", "show", one, "-c", "addresses", "-f", "json")
        self.assertIn(address, addresses["addresses"]["public"])
        types = {a["addr"]: a["OS-EXT-IPS:type"]
                 for a in self.nova_addresses(alice, one)["public"]}
        self.assertEqual(types[address], "floating")
        self.assertEqual(types[servers[0]["addresses"]["public"][0]], "fixed")

        # Renames.
        self.cli(alice, "network", "set", "--name", "priv-renamed", "priv-net")
        renamed = self.cli(alice, "network", "show", "priv-renamed", "-f", "json")
        self.assertEqual(str(renamed["id"]), net_id)
        self.cli(alice, "subnet", "set", "--name", "subnet-renamed", subnet_id)
        self.assertEqual(self.cli(alice, "subnet", "show", "subnet-renamed", "-f", "json")
                         ["cidr"], PRIVATE_CIDR)
        nic = str(by_network[subnet_id]["ID"])
        self.cli(alice, "port", "set", "--name", "nic-one", nic)
        port = self.cli(alice, "port", "show", "nic-one", "-f", "json")
        self.assertEqual((str(port["id"]), str(port["device_id"]), str(port["network_id"])),
                         (nic, one, net_id))
        self.assertEqual(self.cli(alice, "server", "show", one, "-c", "addresses", "-f",
                                  "json")["addresses"]["priv-renamed"],
                         servers[0]["addresses"]["priv-net"])

        # Detached: the address is free at once, its port goes when Ganeti
        # removed the NIC; moved to vm-two straight away.
        self.cli(alice, "server", "remove", "floating", "ip", one, address)
        fip = self.cli(alice, "floating", "ip", "show", address, "-f", "json")
        self.assertEqual((fip["port_id"], fip["fixed_ip_address"], fip["status"]),
                         (None, None, "DOWN"))
        self.cli(alice, "server", "add", "floating", "ip", two, address)
        self.wait_ports(alice, one, 2)
        ports = self.wait_ports(alice, two, 3)
        self.assertIn([address], [_addresses(p) for p in ports])
        self.assertNotIn(address, self.cli(alice, "server", "show", one, "-c", "addresses",
                                           "-f", "json")["addresses"]["public"])
        self.assertIn(address, self.cli(alice, "server", "show", two, "-c", "addresses",
                                         "-f", "json")["addresses"]["public"])
        self.assertEqual(str(self.cli(alice, "floating", "ip", "show", address, "-f",
                                      "json")["instance_id"]), two)
        self.cli(alice, "server", "remove", "floating", "ip", two, address)
        self.wait_ports(alice, two, 2)

        # Everything deleted; the quota back to zero.
        self.cli(alice, "server", "delete", "--wait", one, two)
        self.assertEqual(self.cli(alice, "server", "list", "-f", "json"), [])
        self.wait("the servers' ports gone",
                  lambda: self.cli(alice, "port", "list", "-f", "json") == [])
        fip = self.cli(alice, "floating", "ip", "show", address, "-f", "json")
        self.assertEqual((fip["port_id"], fip["status"]), (None, "DOWN"))
        self.cli(alice, "floating", "ip", "delete", address)
        self.assertEqual(self.cli(alice, "floating", "ip", "list", "-f", "json"), [])
        self.cli(alice, "subnet", "delete", subnet_id)
        self.assertEqual(self.cli(alice, "network", "show", net_id, "-f", "json")["subnets"],
                         [])
        self.cli(alice, "network", "delete", net_id)
        self.assertEqual([n["Name"] for n in self.cli(alice, "network", "list", "-f", "json")],
                         ["public"])
        self.assertIn("404", self.cli_fails(alice, "network", "show", net_id))
        self.assertEqual(self.usage(alice), zero)

    def test_openstack_cli(self):
        """With the `openstack` command line a user makes a private network
        and subnet, boots two servers on it and on the public network
        (each gets a fixed public address, no floating IP), allocates a
        floating IP, attaches it (a port on the public network with that
        address, `floating` in Nova's addresses), renames the network,
        subnet and port, moves the floating IP to the other server,
        detaches it and deletes everything; the quota goes back to zero.
        Another user sees none of it, and a user's port on the public
        network is refused (403)."""
        return threads.deferToThread(self.cli_journey)

    # -- openstacksdk --------------------------------------------------------------------

    def sdk_journey(self) -> None:
        import openstack

        bob = self.bob
        conn = openstack.connect(
            auth_url=f"{self.node.url}/identity/v3", username=bob.email,
            password=bob.password, project_id=bob.uuid,
            user_domain_name="Default", project_domain_name="Default")
        self.addCleanup(conn.close)
        net = conn.network.create_network(name="sdk-net")
        self.assertEqual((net.name, net.status, net.is_router_external, net.project_id),
                         ("sdk-net", "ACTIVE", False, bob.uuid))
        subnet = conn.network.create_subnet(network_id=net.id, ip_version=4,
                                            cidr="10.1.0.0/24", name="sdk-subnet")
        self.assertEqual((subnet.cidr, subnet.gateway_ip, subnet.allocation_pools),
                         ("10.1.0.0/24", "10.1.0.1", [{"start": "10.1.0.2",
                                                        "end": "10.1.0.254"}]))
        self.assertEqual(conn.network.get_network(net.id).subnet_ids, [subnet.id])

        # A free port (no server): an address of the subnet, a MAC, DOWN.
        port = conn.network.create_port(network_id=net.id, name="sdk-port")
        self.assertEqual((port.status, port.device_id or None, port.network_id),
                         ("DOWN", None, net.id))
        self.assertEqual([(ip["subnet_id"], ip["ip_address"]) for ip in port.fixed_ips],
                         [(subnet.id, "10.1.0.2")])
        self.assertTrue(port.mac_address)
        self.assertEqual([p.id for p in conn.network.ports(network_id=net.id)], [port.id])
        self.assertEqual(conn.network.update_port(port, name="renamed").name, "renamed")
        self.assertEqual(conn.network.update_network(net, name="sdk-net2").name, "sdk-net2")
        self.assertEqual(conn.network.find_network("sdk-net2").id, net.id)
        self.assertEqual(self.usage(bob)["cyclades.network.private"], 1)

        public = conn.network.find_network("public")
        self.assertTrue(public.is_router_external)
        ip = conn.network.create_ip(floating_network_id=public.id)
        self.assertTrue(_in(ip.floating_ip_address, PUBLIC_V4))
        self.assertEqual((ip.status, ip.port_id), ("DOWN", None))
        self.assertEqual([i.id for i in conn.network.ips()], [ip.id])
        self.assertEqual(self.usage(bob)["cyclades.floating_ip"], 1)

        # A server on the private network only.
        image = next(iter(conn.image.images()))
        flavor = next(iter(conn.compute.flavors()))
        server = conn.compute.create_server(name="sdk-vm", image_id=image.id,
                                            flavor_id=flavor.id, networks=[{"uuid": net.id}])
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=60)
        self.assertEqual(list(server.addresses), ["sdk-net2"])
        (nic,) = conn.network.ports(device_id=server.id)
        self.assertEqual(nic.network_id, net.id)

        def floating_port() -> Any:
            found = [p for p in conn.network.ports(device_id=server.id)
                     if p.network_id == public.id]
            return found[0] if len(found) == 1 and found[0].status == "ACTIVE" else None

        def no_floating_port() -> bool:
            return [p.network_id for p in conn.network.ports(device_id=server.id)] == [net.id]

        # Nova's addFloatingIp/removeFloatingIp, which Nova (and snfd) serve
        # up to microversion 2.43 (the SDK negotiates the node's 2.66).
        def floating(action: str) -> None:
            answer = conn.compute.post(
                f"/servers/{server.id}/action", microversion="2.43",
                json={action: {"address": ip.floating_ip_address}})
            self.assertEqual(answer.status_code, 202, answer.text)

        refused = conn.compute.post(f"/servers/{server.id}/action", microversion="2.44",
                                    json={"addFloatingIp": {"address": "192.0.2.1"}})
        self.assertEqual(refused.status_code, 404, refused.text)
        floating("addFloatingIp")
        attached = self.wait("the floating IP's port", floating_port)
        self.assertEqual([i["ip_address"] for i in attached.fixed_ips],
                         [ip.floating_ip_address])
        self.assertEqual(conn.network.get_ip(ip.id).port_id, attached.id)
        addresses = conn.compute.get_server(server.id).addresses
        self.assertEqual([(a["addr"], a["OS-EXT-IPS:type"]) for a in addresses["public"]],
                         [(ip.floating_ip_address, "floating")])
        floating("removeFloatingIp")
        self.assertIsNone(conn.network.get_ip(ip.id).port_id)
        self.wait("the floating IP's port gone", no_floating_port)

        # Neutron's PUT /floatingips/<id> with a port of the server.
        ip = conn.network.update_ip(ip, port_id=nic.id)
        self.assertEqual((ip.fixed_ip_address, ip.status),
                         (ip.floating_ip_address, "ACTIVE"))
        attached = self.wait("the floating IP's port", floating_port)
        self.assertEqual(ip.port_id, attached.id)
        ip = conn.network.update_ip(ip, port_id=None)
        self.assertEqual((ip.port_id, ip.status), (None, "DOWN"))
        self.wait("the floating IP's port gone", no_floating_port)

        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=60)
        conn.network.delete_ip(ip)
        conn.network.delete_port(port)
        self.wait("the ports gone", lambda: list(conn.network.ports()) == [])
        conn.network.delete_subnet(subnet)
        conn.network.delete_network(net)
        self.assertEqual([n.name for n in conn.network.networks()], ["public"])
        self.assertEqual(list(conn.network.ips()), [])
        self.assertEqual(self.usage(bob), dict.fromkeys(CYCLADES, 0))

    def test_openstacksdk(self):
        """openstacksdk's network proxy creates a network, subnet, port and
        floating IP, lists and renames them; the floating IP is attached to
        a server with Nova's addFloatingIp and with Neutron's PUT (a port
        on the public network each time) and detached both ways; all of
        it is deleted and the quota returns to zero."""
        return threads.deferToThread(self.sdk_journey)

    # -- a defect --------------------------------------------------------------------------

    def floating_ip_description(self) -> None:
        made = self.cli(self.alice, "floating", "ip", "create", "--description", "web",
                        "public", "-f", "json")
        self.assertEqual(made["description"], "web")
        self.cli(self.alice, "floating", "ip", "set", "--description", "db",
                 made["floating_ip_address"])
        shown = self.cli(self.alice, "floating", "ip", "show", made["floating_ip_address"],
                         "-f", "json")
        self.assertEqual(shown["description"], "db")

    def test_floating_ip_description(self):
        """`openstack floating ip create --description` and `floating ip set
        --description` keep the description."""
        return threads.deferToThread(self.floating_ip_description)


    # -- security groups -------------------------------------------------------------------

    def security_groups(self) -> None:
        alice, bob = self.alice, self.bob
        groups = self.cli(alice, "security", "group", "list", "-f", "json")
        self.assertEqual([g["Name"] for g in groups], ["default"])
        web = self.cli(alice, "security", "group", "create", "--description", "web servers",
                       "web", "-f", "json")
        rule = self.cli(alice, "security", "group", "rule", "create", "--protocol", "tcp",
                        "--dst-port", "22", "--remote-ip", "198.51.100.0/24", "web",
                        "-f", "json")
        self.assertEqual((rule["port_range_min"], rule["port_range_max"],
                          rule["remote_ip_prefix"], rule["direction"]),
                         (22, 22, "198.51.100.0/24", "ingress"))
        rules = self.cli(alice, "security", "group", "rule", "list", "web", "-f", "json")
        self.assertEqual(len(rules), 3)   # two egress rules come with a new group
        self.assertIn("409", self.cli_fails(alice, "security", "group", "rule", "create",
                                            "--protocol", "tcp", "--dst-port", "22",
                                            "--remote-ip", "198.51.100.0/24", "web"))
        self.assertEqual([g["Name"] for g in self.cli(bob, "security", "group", "list",
                                                      "-f", "json")], ["default"])
        image = self.cli(alice, "image", "list", "-f", "json")[0]["ID"]
        flavor = self.cli(alice, "flavor", "list", "-f", "json")[0]["Name"]
        made = self.cli(alice, "server", "create", "--image", image, "--flavor", flavor,
                        "--security-group", "web", "--wait", "guarded", "-f", "json")
        server = str(made["id"])
        (port,) = self.wait_ports(alice, server, 1)
        shown = self.cli(alice, "port", "show", str(port["ID"]), "-f", "json")
        self.assertEqual(shown["security_group_ids"], [web["id"]])
        self.cli(alice, "server", "add", "security", "group", server, "default")
        self.cli(alice, "server", "remove", "security", "group", server, "web")
        shown = self.cli(alice, "server", "show", server, "-f", "json")
        self.assertEqual([g["name"] for g in shown["security_groups"]], ["default"])
        # The rules reach the instance as tags the node-side scripts read.
        self.cli(alice, "security", "group", "rule", "create", "--protocol", "udp",
                 "--dst-port", "53", "default", "-f", "json")
        nic = f"snf-nic-{port['ID']}"

        def tagged() -> bool:
            info = json.loads(self.node.manage("server-inspect", server, "--json"))
            return f"snf:sg:{nic}:in4:udp:53:0.0.0.0/0" in (info["ganeti"] or {}).get(
                "tags", [])
        self.wait("the new rule on the instance", tagged)
        self.cli(alice, "security", "group", "rule", "delete", rule["id"])
        self.assertEqual(len(self.cli(alice, "security", "group", "rule", "list", "web",
                                      "-f", "json")), 2)
        self.cli(alice, "security", "group", "delete", "web")
        self.cli(alice, "server", "delete", "--wait", server)
        self.assertEqual([g["Name"] for g in self.cli(alice, "security", "group", "list",
                                                      "-f", "json")], ["default"])

    def test_security_groups(self):
        """`openstack security group` and `security group rule` create,
        list and delete a project's groups (another user sees only their
        own default group); `server create --security-group`, `server
        add/remove security group` put a server's port in groups, and a
        new rule reaches the instance's tags in Ganeti."""
        return threads.deferToThread(self.security_groups)
