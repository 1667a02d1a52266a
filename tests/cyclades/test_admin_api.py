"""Administrators' views of hypervisors, services and hosts over real HTTP
(``snfd.cyclades.admin_api`` over ``snfd.cyclades.hosts``), against a
simulated Ganeti cluster served over RAPI: its nodes are the
hypervisors, the cluster is the compute host and service; others get
403, unknown names 404."""

from __future__ import annotations

from twisted.trial import unittest

from snfd.testing.compute import compute_stack

HYPERVISOR_KEYS = {
    "id", "hypervisor_hostname", "state", "status", "hypervisor_type", "hypervisor_version",
    "host_ip", "cpu_info", "current_workload", "running_vms", "vcpus", "vcpus_used",
    "memory_mb", "memory_mb_used", "free_ram_mb", "local_gb", "local_gb_used",
    "free_disk_gb", "disk_available_least", "service"}


class AdminCase(unittest.TestCase):
    """A compute stack with alice and an administrator (whose token
    ``call`` uses unless given another), at Nova's dialect by default."""

    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")
        _, self.admin = await self.stack.admin()
        self.host = self.stack.backend.clustername

    async def call(self, method, path, body=None, token=None, base="/compute/v2.1"):
        return await self.stack.call(method, f"{self.stack.url}{base}{path}",
                                     token or self.admin, body)


class AdminAPITests(AdminCase):

    async def test_users_are_refused(self):
        for method, path, body in (
                ("GET", "/os-hypervisors", None), ("GET", "/os-hypervisors/detail", None),
                ("GET", "/os-hypervisors/statistics", None), ("GET", "/os-services", None),
                ("PUT", "/os-services/disable", {"host": self.host, "binary": "nova-compute"}),
                ("GET", "/os-hosts", None), ("GET", f"/os-hosts/{self.host}", None),
                ("PUT", f"/os-hosts/{self.host}", {"status": "enable"})):
            with self.subTest(path=path):
                code, _, _ = await self.call(method, path, body, token=self.token)
                self.assertEqual(code, 403)

    async def test_hypervisors_are_ganeti_nodes(self):
        """Each node of the cluster, with its memory and disk from RAPI and
        the servers primary on it; search and servers by host name."""
        code, body, _ = await self.call("POST", "/servers", {"server": {
            "name": "vm", "imageRef": self.stack.image.id,
            "flavorRef": str(self.stack.flavors["small"].id)}}, token=self.token)
        self.assertEqual(code, 202, body)
        sid = body["server"]["id"]
        await self.stack.follow((await self.stack.server(int(sid))).backendjobid)
        code, body, _ = await self.call("GET", "/os-hypervisors/detail")
        self.assertEqual(code, 200, body)
        hypervisors = body["hypervisors"]
        self.assertEqual(sorted(h["hypervisor_hostname"] for h in hypervisors),
                         sorted(self.stack.sim.nodes))
        for h in hypervisors:
            self.assertEqual(set(h), HYPERVISOR_KEYS)
            self.assertEqual(h["service"]["host"], self.host)
            self.assertGreater(h["memory_mb"], 0)
        code, body, _ = await self.call("GET", "/os-hypervisors/statistics")
        stats = body["hypervisor_statistics"]
        self.assertEqual(stats["count"], len(hypervisors))
        self.assertEqual(stats["memory_mb"], sum(h["memory_mb"] for h in hypervisors))
        first = hypervisors[0]
        code, body, _ = await self.call("GET", f"/os-hypervisors/{first['id']}")
        self.assertEqual((code, body["hypervisor"]["hypervisor_hostname"]),
                         (200, first["hypervisor_hostname"]))
        self.assertEqual((await self.call("GET", "/os-hypervisors/nope"))[0], 404)
        self.assertEqual((await self.call("GET", f"/os-hypervisors/{first['id']}/uptime"))[0],
                         501)
        self.assertEqual((await self.call("GET", "/os-hypervisors/nope/uptime"))[0], 404)
        code, body, _ = await self.call(
            "GET", f"/os-hypervisors/{first['hypervisor_hostname']}/search")
        self.assertEqual(code, 200)
        self.assertIn(first["id"], [h["id"] for h in body["hypervisors"]])
        self.assertEqual((await self.call("GET", "/os-hypervisors/no-such-node/search"))[0],
                         404)
        code, body, _ = await self.call("GET", f"/os-hypervisors/{self.host[:4]}/servers")
        self.assertEqual(code, 200, body)
        shown = [s for h in body["hypervisors"] for s in h.get("servers", [])]
        self.assertEqual([s["uuid"] for s in shown], [sid])
        self.assertEqual(sum(h["running_vms"] for h in hypervisors), 1)
        self.assertEqual(sum(h["vcpus_used"] for h in hypervisors),
                         self.stack.flavors["small"].cpu)

    async def test_services_and_hosts(self):
        """The cluster is a nova-compute service and a compute host; the
        filters work; disabling drains the backend, maintenance takes it
        offline, and both undo."""
        code, body, _ = await self.call("GET", "/os-services")
        self.assertEqual(code, 200)
        compute = [s for s in body["services"] if s["binary"] == "nova-compute"]
        self.assertEqual([s["host"] for s in compute], [self.host])
        self.assertEqual((compute[0]["status"], compute[0]["state"]), ("enabled", "up"))
        code, body, _ = await self.call("GET", f"/os-services?host={self.host}"
                                               "&binary=nova-compute")
        self.assertEqual(len(body["services"]), 1)
        code, body, _ = await self.call("GET", "/os-services?host=xxx&binary=nova-compute")
        self.assertEqual(body["services"], [])
        code, body, _ = await self.call("PUT", "/os-services/disable-log-reason", {
            "host": self.host, "binary": "nova-compute", "disabled_reason": "upgrade"})
        self.assertEqual((code, body["service"]["status"]), (200, "disabled"))
        code, body, _ = await self.call("GET", f"/os-services?host={self.host}")
        self.assertEqual(body["services"][0]["status"], "disabled")
        code, body, _ = await self.call("PUT", "/os-services/enable",
                                        {"host": self.host, "binary": "nova-compute"})
        self.assertEqual((code, body["service"]["status"]), (200, "enabled"))
        code, _, _ = await self.call("PUT", "/os-services/enable",
                                     {"host": "xxx", "binary": "nova-compute"})
        self.assertEqual(code, 404)

        code, body, _ = await self.call("GET", "/os-hosts")
        self.assertIn({"host_name": self.host, "service": "compute", "zone": "nova"},
                      body["hosts"])
        code, body, _ = await self.call("GET", "/os-hosts?zone=xxx")
        self.assertEqual(body["hosts"], [])
        code, body, _ = await self.call("GET", f"/os-hosts/{self.host}")
        self.assertEqual(code, 200)
        self.assertEqual(body["host"][0]["resource"]["host"], self.host)
        self.assertEqual(body["host"][0]["resource"]["project"], "(total)")
        self.assertEqual((await self.call("GET", "/os-hosts/nonexistent"))[0], 404)
        for bad in ({}, {"status": "invalid"}, {"maintenance_mode": "invalid"},
                    {"status": "enable", "other": 1}):
            self.assertEqual((await self.call("PUT", f"/os-hosts/{self.host}", bad))[0], 400)
        code, body, _ = await self.call("PUT", f"/os-hosts/{self.host}",
                                        {"status": "disable", "maintenance_mode": "enable"})
        self.assertEqual(body, {"host": self.host, "status": "disabled",
                                "maintenance_mode": "on_maintenance"})
        code, body, _ = await self.call("GET", "/os-hypervisors")
        self.assertTrue(all(h["state"] == "down" for h in body["hypervisors"]))
        await self.call("PUT", f"/os-hosts/{self.host}",
                        {"status": "enable", "maintenance_mode": "disable"})
        code, body, _ = await self.call("GET", "/os-services?binary=nova-compute")
        self.assertEqual((body["services"][0]["status"], body["services"][0]["state"]),
                         ("enabled", "up"))
        self.assertEqual((await self.call("PUT", "/os-hosts/nonexistent",
                                          {"status": "enable"}))[0], 404)
        self.assertEqual((await self.call("GET", f"/os-hosts/{self.host}/startup"))[0], 501)
        self.assertEqual((await self.call("GET", "/os-hosts/nonexistent/startup"))[0], 404)


class AdminActionTests(AdminCase):
    """Administrators' actions and reports on servers: reset-state,
    restore (409: no soft delete), Nova's diagnostics, migrations, the
    usage audit, external events; and the extension list."""

    async def setUp(self) -> None:
        await super().setUp()
        s = self.stack
        code, body, _ = await self.call("POST", "/servers", {"server": {
            "name": "vm", "imageRef": s.image.id,
            "flavorRef": str(s.flavors["small"].id)}}, token=self.token)
        self.assertEqual(code, 202, body)
        self.sid = body["server"]["id"]
        await s.follow((await s.server(int(self.sid))).backendjobid)

    async def test_reset_state_restore_and_delete(self):
        act = f"/servers/{self.sid}/action"
        code, _, _ = await self.call("POST", act, {"os-resetState": {"state": "error"}},
                                     token=self.token)
        self.assertEqual(code, 403)
        code, _, _ = await self.call("POST", act, {"os-resetState": {"state": "lost"}})
        self.assertEqual(code, 400)
        code, _, _ = await self.call("POST", "/servers/999999/action",
                                     {"os-resetState": {"state": "error"}})
        self.assertEqual(code, 404)
        code, _, _ = await self.call("POST", act, {"restore": None}, token=self.token)
        self.assertEqual(code, 409)
        code, _, _ = await self.call("POST", act, {"os-resetState": {"state": "error"}})
        self.assertEqual(code, 202)
        _, body, _ = await self.call("GET", f"/servers/{self.sid}", token=self.token)
        self.assertEqual(body["server"]["status"], "ERROR")
        code, _, _ = await self.call("POST", act, {"os-resetState": {"state": "active"}})
        self.assertEqual(code, 202)
        _, body, _ = await self.call("GET", f"/servers/{self.sid}", token=self.token)
        self.assertEqual(body["server"]["status"], "ACTIVE")
        await self.call("POST", act, {"os-resetState": {"state": "error"}})
        code, _, _ = await self.call("DELETE", f"/servers/{self.sid}", token=self.token)
        self.assertEqual(code, 204)

    async def test_diagnostics_by_dialect(self):
        path = f"/servers/{self.sid}/diagnostics"
        self.assertEqual((await self.call("GET", path, token=self.token))[0], 403)
        code, body, _ = await self.call("GET", path)
        self.assertEqual(code, 200, body)
        self.assertEqual((body["driver"], body["num_cpus"], body["state"]),
                         ("ganeti", self.stack.flavors["small"].cpu, "active"))
        code, body, _ = await self.call("GET", path, token=self.token, base="/compute/v2.0")
        self.assertEqual(code, 200)
        self.assertIsInstance(body, list)

    async def test_reports(self):
        for path in ("/os-migrations", "/os-instance_usage_audit_log",
                     "/os-instance_usage_audit_log/2026-12-01T00:00:00"):
            self.assertEqual((await self.call("GET", path, token=self.token))[0], 403)
        code, body, _ = await self.call("GET", "/os-migrations")
        self.assertEqual((code, body), (200, {"migrations": []}))
        code, body, _ = await self.call("GET", "/os-instance_usage_audit_log/2099-02-10T00:00:00")
        audit = body["instance_usage_audit_log"]
        self.assertEqual((audit["period_beginning"], audit["period_ending"]),
                         ("2099-01-01 00:00:00", "2099-02-01 00:00:00"))
        self.assertEqual((audit["total_instances"], audit["num_hosts"]), (1, 1))
        code, _, _ = await self.call("GET", "/os-instance_usage_audit_log/not-a-time")
        self.assertEqual(code, 400)
        code, body, _ = await self.call("GET", "/os-instance_usage_audit_log")
        self.assertEqual(code, 200)
        self.assertIn("overall_status", body["instance_usage_audit_logs"])

    async def test_external_events(self):
        events = [{"name": "network-changed", "server_uuid": self.sid}]
        code, _, _ = await self.call("POST", "/os-server-external-events",
                                     {"events": events}, token=self.token)
        self.assertEqual(code, 403)
        code, body, _ = await self.call("POST", "/os-server-external-events",
                                        {"events": events})
        self.assertEqual((code, body["events"][0]["code"], body["events"][0]["status"]),
                         (200, 200, "completed"))
        code, body, _ = await self.call("POST", "/os-server-external-events", {"events": [
            *events, {"name": "network-changed", "server_uuid": "424242"}]})
        self.assertEqual((code, [e["code"] for e in body["events"]]), (207, [200, 404]))
        code, _, _ = await self.call("POST", "/os-server-external-events", {"events": [
            {"name": "reboot-now", "server_uuid": self.sid}]})
        self.assertEqual(code, 400)

    async def test_extensions(self):
        code, body, _ = await self.call("GET", "/extensions", token=self.token)
        self.assertIn("Hosts", [e["name"] for e in body["extensions"]])
        code, body, _ = await self.call("GET", "/extensions/os-consoles", token=self.token)
        self.assertEqual((code, body["extension"]["alias"]), (200, "os-consoles"))
        self.assertEqual((await self.call("GET", "/extensions/nope", token=self.token))[0], 404)


    async def test_quota_updates_are_the_identity_services(self):
        """Quota-set and quota-class updates: 403 for users, 400 (with where
        to set them) for administrators; the default class reads."""
        for method, path in (("PUT", f"/os-quota-sets/{self.alice}"),
                             ("DELETE", f"/os-quota-sets/{self.alice}"),
                             ("PUT", "/os-quota-class-sets/default")):
            body = {"quota_set": {"ram": 0}} if method == "PUT" else None
            self.assertEqual((await self.call(method, path, body, token=self.token))[0], 403)
            code, answer, _ = await self.call(method, path, body)
            self.assertEqual(code, 400)
            self.assertIn("identity service", answer["badRequest"]["message"])
        code, body, _ = await self.call("GET", "/os-quota-class-sets/default")
        self.assertEqual((code, body["quota_class_set"]["id"]), (200, "default"))
        self.assertIn("instances", body["quota_class_set"])


class AggregateTests(AdminCase):
    """Host aggregates: groups of backends with metadata; a zone of an
    aggregate is listed and chosen on create."""

    async def test_lifecycle(self):
        code, body, _ = await self.call("POST", "/os-aggregates", {"aggregate": {"name": "a1"}})
        self.assertEqual(code, 200, body)
        made = body["aggregate"]
        self.assertEqual(set(made), {"id", "name", "availability_zone", "created_at",
                                     "updated_at", "deleted", "deleted_at"})
        agg = f"/os-aggregates/{made['id']}"
        for bad in ({"name": ""}, {"name": "a" * 256}, {"name": " x"}, {}):
            self.assertEqual((await self.call("POST", "/os-aggregates",
                                              {"aggregate": bad}))[0], 400)
        self.assertEqual((await self.call("POST", "/os-aggregates",
                                          {"aggregate": {"name": "a1"}}))[0], 409)
        for method, path, body in (("GET", "/os-aggregates", None), ("GET", agg, None),
                                   ("DELETE", agg, None),
                                   ("POST", "/os-aggregates", {"aggregate": {"name": "u"}}),
                                   ("POST", f"{agg}/action", {"add_host": {"host": self.host}})):
            self.assertEqual((await self.call(method, path, body, token=self.token))[0], 403)
        self.assertEqual((await self.call("GET", "/os-aggregates/-1"))[0], 404)
        self.assertEqual((await self.call("DELETE", "/os-aggregates/-1"))[0], 404)
        code, body, _ = await self.call("POST", f"{agg}/action",
                                        {"add_host": {"host": self.host}})
        self.assertEqual((code, body["aggregate"]["hosts"]), (200, [self.host]))
        self.assertEqual((await self.call("POST", f"{agg}/action",
                                          {"add_host": {"host": self.host}}))[0], 409)
        self.assertEqual((await self.call("POST", f"{agg}/action",
                                          {"add_host": {"host": "nonexist"}}))[0], 404)
        self.assertEqual((await self.call("DELETE", agg))[0], 400)
        code, body, _ = await self.call("POST", f"{agg}/action", {"set_metadata": {
            "metadata": {"ssd": "yes", "availability_zone": "zone-a"}}})
        self.assertEqual((body["aggregate"]["metadata"], body["aggregate"]["availability_zone"]),
                         ({"ssd": "yes", "availability_zone": "zone-a"}, "zone-a"))
        code, body, _ = await self.call("PUT", agg, {"aggregate": {"name": "renamed"}})
        self.assertEqual((code, body["aggregate"]["name"]), (200, "renamed"))
        code, body, _ = await self.call("GET", "/os-availability-zone", token=self.token)
        self.assertEqual([z["zoneName"] for z in body["availabilityZoneInfo"]], ["zone-a"])
        code, body, _ = await self.call("POST", "/servers", {"server": {
            "name": "vm", "imageRef": self.stack.image.id, "availability_zone": "zone-b",
            "flavorRef": str(self.stack.flavors["small"].id)}}, token=self.token)
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", "/servers", {"server": {
            "name": "vm", "imageRef": self.stack.image.id, "availability_zone": "zone-a",
            "flavorRef": str(self.stack.flavors["small"].id)}}, token=self.token)
        self.assertEqual(code, 202, body)
        # The server shows its backend's zone.
        server = f"/servers/{body['server']['id']}"
        _, body, _ = await self.call("GET", server, token=self.token)
        self.assertEqual(body["server"]["OS-EXT-AZ:availability_zone"], "zone-a")
        code, body, _ = await self.call("POST", f"{agg}/action",
                                        {"remove_host": {"host": self.host}})
        self.assertEqual((code, body["aggregate"]["hosts"]), (200, []))
        self.assertEqual((await self.call("POST", f"{agg}/action",
                                          {"remove_host": {"host": self.host}}))[0], 404)
        code, body, _ = await self.call("GET", "/os-availability-zone", token=self.token)
        self.assertEqual(sorted(z["zoneName"] for z in body["availabilityZoneInfo"]),
                         ["nova", "zone-a"])
        _, body, _ = await self.call("GET", server, token=self.token)
        self.assertEqual(body["server"]["OS-EXT-AZ:availability_zone"], "nova")
        self.assertEqual((await self.call("DELETE", agg))[0], 200)
        self.assertEqual((await self.call("GET", agg))[0], 404)

