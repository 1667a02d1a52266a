"""Nova's microversions 2.16 to 2.66 on the administrators' and secondary
APIs of the compute API's Nova dialect (``/compute/v2.1``): the server
migrations subresource (2.22-2.24, 2.65) and ``os-migrations`` (2.23,
2.59, 2.66), hypervisors (2.28, 2.33, 2.53), services by UUID (2.53),
``os-hosts`` gone (2.43), usage paging (2.40), aggregates' uuid (2.41),
instance actions (2.21, 2.58, 2.62, 2.66), flavor descriptions and extra
specs (2.55, 2.61), server groups' single policy and rules (2.64), and
the migration actions' bodies (2.25, 2.29, 2.30, 2.56).  Each answer is
checked against the keys tempest's schemas for that version require and
allow, and the version before against the old shape."""

from __future__ import annotations

import datetime
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.trial import unittest

from snfd import errors
from snfd.cyclades import store
from snfd.cyclades.requests import _migrate
from snfd.testing.compute import compute_stack

UTC = datetime.UTC
#: tempest's v2_59 ``list_migrations`` item (v2_23's plus ``uuid``).
OS_MIGRATION_KEYS_223 = {
    "id", "status", "instance_uuid", "source_node", "source_compute", "dest_node",
    "dest_compute", "dest_host", "old_instance_type_id", "new_instance_type_id",
    "created_at", "updated_at", "migration_type"}
#: tempest's v2_1 ``list_live_migrations`` item (v2_59 adds ``uuid``).
SERVER_MIGRATION_KEYS = {
    "id", "status", "server_uuid", "source_node", "source_compute", "dest_node",
    "dest_compute", "dest_host", "disk_processed_bytes", "disk_remaining_bytes",
    "disk_total_bytes", "memory_processed_bytes", "memory_remaining_bytes",
    "memory_total_bytes", "created_at", "updated_at"}
SERVICE_UPDATE_KEYS = {"id", "binary", "disabled_reason", "host", "state", "status",
                       "updated_at", "zone", "forced_down"}
ACTION_KEYS = {"action", "request_id", "user_id", "project_id", "start_time", "message",
               "instance_uuid"}
EVENT_KEYS = {"event", "start_time", "finish_time", "result"}


def at(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


def is_uuid(value: Any) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except (TypeError, ValueError):
        return False


def marker_of(links: list[dict[str, str]]) -> str:
    """The marker of a ``next`` link (the only link Nova gives)."""
    [link] = links
    assert link["rel"] == "next", link
    return parse_qs(urlsplit(link["href"]).query)["marker"][0]


class _Stack(unittest.TestCase):
    nodes = 2

    async def setUp(self) -> None:
        self.stack = await compute_stack(self, nodes=self.nodes)
        self.alice, self.token = await self.stack.user("alice")
        self.root, self.admin = await self.stack.admin()
        self.v21 = f"{self.stack.url}/compute/v2.1"
        self.host = self.stack.backend.clustername

    async def call(self, method: str, path: str, version: str | None = None,
                   body: Any = None, token: str | None = None) -> tuple[int, Any, Any]:
        """As the administrator unless ``token`` says otherwise."""
        return await self.stack.call(method, self.v21 + path, token or self.admin, body,
                                     headers=at(version) if version else None)

    async def create(self, flavor: str | None = None) -> str:
        """A server of alice's, built."""
        s = self.stack
        code, body, _ = await self.call("POST", "/servers", None, {"server": {
            "name": "vm", "imageRef": s.image.id,
            "flavorRef": flavor or str(s.flavors["small"].id)}}, token=self.token)
        self.assertEqual(code, 202, body)
        sid = str(body["server"]["id"])
        await self.settle(sid)
        return sid

    async def settle(self, sid: str) -> None:
        server = await self.stack.server(int(sid))
        await self.stack.follow(server.task_job_id or server.backendjobid)


class HypervisorTests(_Stack):
    async def test_cpu_info_paging_and_uuids(self):
        """2.28: cpu_info an object (a JSON string before); 2.33: limit and
        marker with a next link; 2.53: UUID ids (the node's and its compute
        service's), the search and servers routes 404, replaced by
        hypervisor_hostname_pattern and with_servers."""
        sid = await self.create()
        _, body, _ = await self.call("GET", "/os-hypervisors/detail", "2.27")
        self.assertIsInstance(body["hypervisors"][0]["cpu_info"], str)
        _, body, _ = await self.call("GET", "/os-hypervisors/detail", "2.28")
        self.assertIsInstance(body["hypervisors"][0]["cpu_info"], dict)
        self.assertNotIn("hypervisors_links", body)
        everyone = [h["id"] for h in body["hypervisors"]]
        self.assertEqual(len(everyone), 2)
        # Paging: 2.32 ignores limit, 2.33 honours it.
        _, body, _ = await self.call("GET", "/os-hypervisors?limit=1", "2.32")
        self.assertEqual(len(body["hypervisors"]), 2)
        self.assertNotIn("hypervisors_links", body)
        code, body, _ = await self.call("GET", "/os-hypervisors?limit=1", "2.33")
        self.assertEqual((code, [h["id"] for h in body["hypervisors"]]), (200, everyone[:1]))
        self.assertEqual(marker_of(body["hypervisors_links"]), everyone[0])
        self.assertIn("/compute/v2.1/os-hypervisors?", body["hypervisors_links"][0]["href"])
        _, body, _ = await self.call("GET", f"/os-hypervisors/detail?marker={everyone[0]}",
                                     "2.33")
        self.assertEqual([h["id"] for h in body["hypervisors"]], everyone[1:])
        self.assertEqual((await self.call("GET", "/os-hypervisors?marker=nope", "2.33"))[0],
                         400)
        # 2.53: UUIDs.
        _, body, _ = await self.call("GET", "/os-hypervisors/detail", "2.53")
        found = body["hypervisors"]
        self.assertTrue(all(is_uuid(h["id"]) and is_uuid(h["service"]["id"]) for h in found))
        self.assertTrue(all("servers" not in h for h in found))
        _, services, _ = await self.call("GET", "/os-services?binary=nova-compute", "2.53")
        self.assertEqual({h["service"]["id"] for h in found},
                         {services["services"][0]["id"]})
        hid, name = found[0]["id"], found[0]["hypervisor_hostname"]
        code, body, _ = await self.call("GET", f"/os-hypervisors/{hid}", "2.53")
        self.assertEqual((code, body["hypervisor"]["hypervisor_hostname"]), (200, name))
        self.assertEqual((await self.call("GET", f"/os-hypervisors/{everyone[0]}x",
                                          "2.53"))[0], 400)
        self.assertEqual((await self.call("GET", f"/os-hypervisors/{uuid.uuid4()}",
                                          "2.53"))[0], 404)
        self.assertEqual((await self.call("GET", f"/os-hypervisors/{hid}/uptime", "2.53"))[0],
                         501)
        for route in ("search", "servers"):
            self.assertEqual((await self.call("GET", f"/os-hypervisors/{name}/{route}",
                                              "2.52"))[0], 200)
            self.assertEqual((await self.call("GET", f"/os-hypervisors/{name}/{route}",
                                              "2.53"))[0], 404)
        code, body, _ = await self.call(
            "GET", f"/os-hypervisors?hypervisor_hostname_pattern={name}", "2.53")
        self.assertEqual((code, [h["hypervisor_hostname"] for h in body["hypervisors"]]),
                         (200, [name]))
        self.assertEqual(set(body["hypervisors"][0]),
                         {"id", "hypervisor_hostname", "state", "status"})
        self.assertEqual((await self.call(
            "GET", "/os-hypervisors?hypervisor_hostname_pattern=nowhere", "2.53"))[0], 404)
        self.assertEqual((await self.call(
            "GET", f"/os-hypervisors?hypervisor_hostname_pattern={name}&limit=1",
            "2.53"))[0], 400)
        code, body, _ = await self.call("GET", "/os-hypervisors/detail?with_servers=true",
                                        "2.53")
        shown = [s for h in body["hypervisors"] for s in h.get("servers", [])]
        self.assertEqual([s["uuid"] for s in shown], [sid])
        self.assertEqual(set(shown[0]), {"uuid", "name"})
        self.assertEqual((await self.call("GET", "/os-hypervisors?with_servers=maybe",
                                          "2.53"))[0], 400)
        # Before 2.53 the parameters are ignored.
        _, body, _ = await self.call("GET", "/os-hypervisors?with_servers=true", "2.52")
        self.assertTrue(all("servers" not in h for h in body["hypervisors"]))


class ServiceTests(_Stack):
    nodes = 1

    async def test_services_by_uuid(self):
        """2.53: services' ids are UUIDs, stable across requests;
        PUT /os-services/<uuid> disables (with a reason), forces down and
        enables the compute service and answers it whole; the old action
        routes, unknown and non-UUID ids and other binaries are refused."""
        _, body, _ = await self.call("GET", "/os-services", "2.52")
        self.assertIsInstance(body["services"][0]["id"], int)
        _, body, _ = await self.call("GET", "/os-services", "2.53")
        self.assertTrue(all(is_uuid(s["id"]) for s in body["services"]))
        _, again, _ = await self.call("GET", "/os-services", "2.53")
        self.assertEqual(body, again)
        [compute] = [s for s in body["services"] if s["binary"] == "nova-compute"]
        path = f"/os-services/{compute['id']}"
        code, body, _ = await self.call("PUT", path, "2.53",
                                        {"status": "disabled", "disabled_reason": "upgrade"})
        self.assertEqual(code, 200, body)
        shown = body["service"]
        self.assertEqual(set(shown), SERVICE_UPDATE_KEYS)
        self.assertEqual((shown["id"], shown["status"], shown["disabled_reason"],
                          shown["forced_down"], shown["state"]),
                         (compute["id"], "disabled", "upgrade", False, "up"))
        self.assertIsInstance(shown["updated_at"], str)
        self.assertTrue((await self.stack.db.run("t", store.backend_txn,
                                                 self.stack.backend.id)).drained)
        code, body, _ = await self.call("PUT", path, "2.53", {"forced_down": True})
        self.assertEqual((code, body["service"]["forced_down"], body["service"]["state"]),
                         (200, True, "down"))
        code, body, _ = await self.call("PUT", path, "2.53",
                                        {"status": "enabled", "forced_down": False})
        self.assertEqual((code, body["service"]["status"], body["service"]["forced_down"],
                          body["service"]["disabled_reason"]), (200, "enabled", False, None))
        backend = await self.stack.db.run("t", store.backend_txn, self.stack.backend.id)
        self.assertEqual((backend.drained, backend.offline), (False, False))
        for bad in ({}, {"disabled_reason": "x"}, {"status": "off"},
                    {"status": "enabled", "disabled_reason": "x"},
                    {"status": "disabled", "disabled_reason": ""},
                    {"forced_down": "maybe"}, {"status": "disabled", "host": "x"}):
            code, body, _ = await self.call("PUT", path, "2.53", bad)
            self.assertEqual(code, 400, (bad, body))
        self.assertEqual((await self.call("PUT", f"/os-services/{uuid.uuid4()}", "2.53",
                                          {"status": "enabled"}))[0], 404)
        code, _, _ = await self.call("PUT", "/os-services/disable", "2.53",
                                     {"host": self.host, "binary": "nova-compute"})
        self.assertEqual(code, 400)
        code, _, _ = await self.call("PUT", path, "2.53", {"status": "enabled"},
                                     token=self.token)
        self.assertEqual(code, 403)
        # Before 2.53 the action routes still work.
        code, _, _ = await self.call("PUT", "/os-services/enable", "2.52",
                                     {"host": self.host, "binary": "nova-compute"})
        self.assertEqual(code, 200)

    async def test_delete_a_compute_service(self):
        """DELETE /os-services/<id> (a number before 2.53, a UUID from it):
        409 while the backend holds a server, 400 for a bad id, 404 for an
        unknown one, 204 once it is empty: the backend is gone."""
        sid = await self.create()
        _, body, _ = await self.call("GET", "/os-services?binary=nova-compute", "2.53")
        service = body["services"][0]["id"]
        code, body, _ = await self.call("DELETE", f"/os-services/{service}", "2.53")
        self.assertEqual(code, 409, body)
        self.assertEqual((await self.call("DELETE", "/os-services/1x", "2.52"))[0], 400)
        self.assertEqual((await self.call("DELETE", "/os-services/1", "2.53"))[0], 400)
        self.assertEqual((await self.call("DELETE", f"/os-services/{uuid.uuid4()}",
                                          "2.53"))[0], 404)
        code, _, _ = await self.call("DELETE", f"/servers/{sid}", token=self.token)
        self.assertEqual(code, 204)
        await self.settle(sid)
        code, body, _ = await self.call("DELETE", f"/os-services/{service}", "2.53")
        self.assertEqual(code, 204, body)
        _, body, _ = await self.call("GET", "/os-services?binary=nova-compute", "2.53")
        self.assertEqual(body["services"], [])


class HostsAggregatesTests(_Stack):
    nodes = 1

    async def test_hosts_gone_and_aggregate_uuid(self):
        """2.43: every os-hosts route is 404 (to users too); 2.41:
        aggregates show a UUID that never changes."""
        for path in ("/os-hosts", f"/os-hosts/{self.host}"):
            self.assertEqual((await self.call("GET", path, "2.42"))[0], 200)
            self.assertEqual((await self.call("GET", path, "2.43"))[0], 404)
        self.assertEqual((await self.call("GET", "/os-hosts", "2.43", token=self.token))[0],
                         404)
        self.assertEqual((await self.call("PUT", f"/os-hosts/{self.host}", "2.43",
                                          {"status": "enable"}))[0], 404)
        code, body, _ = await self.call("POST", "/os-aggregates", "2.41",
                                        {"aggregate": {"name": "a1"}})
        self.assertEqual(code, 200, body)
        made = body["aggregate"]
        self.assertTrue(is_uuid(made["uuid"]))
        agg = f"/os-aggregates/{made['id']}"
        _, body, _ = await self.call("GET", agg, "2.41")
        self.assertEqual(body["aggregate"]["uuid"], made["uuid"])
        _, body, _ = await self.call("PUT", agg, "2.41", {"aggregate": {"name": "a2"}})
        self.assertEqual(body["aggregate"]["uuid"], made["uuid"])
        _, body, _ = await self.call("POST", agg + "/action", "2.41",
                                     {"add_host": {"host": self.host}})
        self.assertEqual(body["aggregate"]["uuid"], made["uuid"])
        _, body, _ = await self.call("GET", "/os-aggregates", "2.41")
        self.assertEqual([a["uuid"] for a in body["aggregates"]], [made["uuid"]])
        _, body, _ = await self.call("GET", agg, "2.40")
        self.assertNotIn("uuid", body["aggregate"])


class UsageTests(_Stack):
    nodes = 1

    async def test_paged_usage(self):
        """2.40: the servers of the period are paged by limit and marker
        (a server id), with tenant_usages_links / tenant_usage_links when
        a page is full; a marker that is no server of it is 400."""
        first, second = await self.create(), await self.create()
        end = (datetime.datetime.now(UTC) + datetime.timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%S")
        period = f"start=2000-01-01T00:00:00&end={end}&detailed=1"
        _, body, _ = await self.call("GET", f"/os-simple-tenant-usage?{period}&limit=1",
                                     "2.39")
        self.assertEqual(len(body["tenant_usages"][0]["server_usages"]), 2)
        self.assertEqual(set(body), {"tenant_usages"})
        code, body, _ = await self.call("GET", f"/os-simple-tenant-usage?{period}&limit=1",
                                        "2.40")
        self.assertEqual(code, 200, body)
        self.assertEqual([u["instance_id"] for u in body["tenant_usages"][0]["server_usages"]],
                         [first])
        self.assertEqual(marker_of(body["tenant_usages_links"]), first)
        _, body, _ = await self.call(
            "GET", f"/os-simple-tenant-usage?{period}&limit=1&marker={first}", "2.40")
        self.assertEqual([u["instance_id"] for u in body["tenant_usages"][0]["server_usages"]],
                         [second])
        _, body, _ = await self.call(
            "GET", f"/os-simple-tenant-usage?{period}&marker={second}", "2.40")
        self.assertEqual(body, {"tenant_usages": []})
        path = f"/os-simple-tenant-usage/{self.alice}?{period}"
        _, body, _ = await self.call("GET", path + "&limit=1", "2.40", token=self.token)
        self.assertEqual(marker_of(body["tenant_usage_links"]), first)
        self.assertEqual(len(body["tenant_usage"]["server_usages"]), 1)
        _, body, _ = await self.call("GET", path + "&limit=2", "2.40", token=self.token)
        self.assertEqual(len(body["tenant_usage"]["server_usages"]), 2)
        self.assertIn("tenant_usage_links", body)
        _, body, _ = await self.call("GET", path + "&limit=3", "2.40", token=self.token)
        self.assertEqual(set(body), {"tenant_usage"})
        self.assertEqual((await self.call("GET", path + "&marker=999999", "2.40"))[0], 400)


class FlavorTests(_Stack):
    nodes = 1

    async def test_description_and_extra_specs(self):
        """2.55: a flavor has a description (null when none) in every
        answer, the short listing too, and PUT changes it; 2.61: its detail
        shows its extra specs (not the short listing)."""
        code, body, _ = await self.call("POST", "/flavors", "2.55", {"flavor": {
            "name": "described", "id": "d1", "ram": 512, "vcpus": 1, "disk": 1,
            "description": "for tests"}})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["flavor"]["description"], "for tests")
        self.assertNotIn("extra_specs", body["flavor"])
        _, body, _ = await self.call("GET", "/flavors/d1", "2.54")
        self.assertNotIn("description", body["flavor"])
        _, body, _ = await self.call("GET", "/flavors", "2.55", token=self.token)
        shown = {f["id"]: f for f in body["flavors"]}
        self.assertEqual(set(shown["d1"]), {"id", "name", "links", "description"})
        self.assertIsNone(shown[str(self.stack.flavors["small"].id)]["description"])
        code, body, _ = await self.call("PUT", "/flavors/d1", "2.55",
                                        {"flavor": {"description": "changed"}})
        self.assertEqual((code, body["flavor"]["description"]), (200, "changed"))
        for bad in ({"description": "x" * 65536}, {"name": "x"}, {}):
            code, _, _ = await self.call("PUT", "/flavors/d1", "2.55", {"flavor": bad})
            self.assertEqual(code, 400, bad)
        code, _, _ = await self.call("PUT", "/flavors/d1", "2.55",
                                     {"flavor": {"description": "mine"}}, token=self.token)
        self.assertEqual(code, 403)
        code, _, _ = await self.call("POST", "/flavors/d1/os-extra_specs", "2.61",
                                     {"extra_specs": {"hw:cpu_policy": "shared"}})
        self.assertEqual(code, 200)
        _, body, _ = await self.call("GET", "/flavors/d1", "2.61")
        self.assertEqual(body["flavor"]["extra_specs"], {"hw:cpu_policy": "shared"})
        _, body, _ = await self.call("GET", "/flavors/detail", "2.61")
        self.assertEqual({f["id"]: f["extra_specs"] for f in body["flavors"]}["d1"],
                         {"hw:cpu_policy": "shared"})
        _, body, _ = await self.call("GET", "/flavors", "2.61")
        self.assertTrue(all("extra_specs" not in f for f in body["flavors"]))
        _, body, _ = await self.call("PUT", "/flavors/d1", "2.61",
                                     {"flavor": {"description": None}})
        self.assertEqual((body["flavor"]["description"], body["flavor"]["extra_specs"]),
                         (None, {"hw:cpu_policy": "shared"}))
        _, body, _ = await self.call("GET", "/flavors/d1", "2.60")
        self.assertNotIn("extra_specs", body["flavor"])
        # Synnefo's dialect is unchanged.
        _, body, _ = await self.stack.call("GET", f"{self.stack.url}/compute/v2.0/flavors"
                                           "/detail", self.token, headers=at("2.61"))
        self.assertTrue(all("description" not in f and "extra_specs" not in f
                            for f in body["flavors"]))


class ServerGroupTests(_Stack):
    nodes = 1

    async def test_policy_and_rules(self):
        """2.64: a group is made with one policy (a string) and, for
        anti-affinity, rules; it shows policy and rules, not policies and
        metadata; 2.63 keeps the old shape."""
        code, body, _ = await self.call("POST", "/os-server-groups", "2.64", {"server_group": {
            "name": "g", "policy": "anti-affinity", "rules": {"max_server_per_host": "3"}}},
            token=self.token)
        self.assertEqual(code, 200, body)
        group = body["server_group"]
        self.assertEqual(set(group), {"id", "name", "policy", "rules", "members", "project_id",
                                      "user_id"})
        self.assertEqual((group["policy"], group["rules"]),
                         ("anti-affinity", {"max_server_per_host": 3}))
        _, body, _ = await self.call("GET", f"/os-server-groups/{group['id']}", "2.64",
                                     token=self.token)
        self.assertEqual(body["server_group"], group)
        _, body, _ = await self.call("GET", "/os-server-groups", "2.64", token=self.token)
        self.assertEqual(body["server_groups"], [group])
        _, body, _ = await self.call("GET", f"/os-server-groups/{group['id']}", "2.63",
                                     token=self.token)
        self.assertEqual((body["server_group"]["policies"], body["server_group"]["metadata"]),
                         (["anti-affinity"], {}))
        self.assertNotIn("rules", body["server_group"])
        code, body, _ = await self.call("POST", "/os-server-groups", "2.64", {"server_group": {
            "name": "soft", "policy": "soft-affinity"}}, token=self.token)
        self.assertEqual((code, body["server_group"]["rules"]), (200, {}))
        for bad in ({"name": "g", "policies": ["affinity"]},
                    {"name": "g"},
                    {"name": "g", "policy": "nearby"},
                    {"name": "g", "policy": "affinity", "rules": {"max_server_per_host": 2}},
                    {"name": "g", "policy": "anti-affinity",
                     "rules": {"max_server_per_host": 0}},
                    {"name": "g", "policy": "anti-affinity",
                     "rules": {"max_server_per_host": True}},
                    {"name": "g", "policy": "anti-affinity", "rules": {"other": 1}}):
            code, body, _ = await self.call("POST", "/os-server-groups", "2.64",
                                            {"server_group": bad}, token=self.token)
            self.assertEqual(code, 400, (bad, body))
        code, _, _ = await self.call("POST", "/os-server-groups", "2.63", {"server_group": {
            "name": "g", "policy": "affinity"}}, token=self.token)
        self.assertEqual(code, 400)


class InstanceActionTests(_Stack):
    nodes = 1

    async def actions(self, sid: str, version: str, query: str = "",
                      token: str | None = None) -> tuple[int, Any]:
        code, body, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions{query}",
                                        version, token=token or self.token)
        return code, body

    async def test_paging_times_and_hosts(self):
        """2.58: updated_at, limit/marker (a request id) with a next link,
        changes-since, other parameters 400; 2.66: changes-before (400
        before it, and when before changes-since); 2.62: events show
        hostId to everyone and host to administrators."""
        sid = await self.create()
        code, _, _ = await self.call("POST", f"/servers/{sid}/action", None, {"os-stop": None},
                                     token=self.token)
        self.assertEqual(code, 202)
        await self.settle(sid)
        _, body = await self.actions(sid, "2.57")
        self.assertEqual(set(body), {"instanceActions"})
        self.assertTrue(all(set(a) == ACTION_KEYS for a in body["instanceActions"]))
        _, body = await self.actions(sid, "2.58")
        stop, create = body["instanceActions"]
        self.assertEqual((stop["action"], create["action"]), ("stop", "create"))
        self.assertEqual(set(stop), ACTION_KEYS | {"updated_at"})
        self.assertGreaterEqual(stop["updated_at"], stop["start_time"])
        code, body = await self.actions(sid, "2.58", "?limit=1")
        self.assertEqual((code, [a["action"] for a in body["instanceActions"]]),
                         (200, ["stop"]))
        self.assertEqual(marker_of(body["links"]), stop["request_id"])
        _, body = await self.actions(sid, "2.58", f"?marker={stop['request_id']}")
        self.assertEqual([a["action"] for a in body["instanceActions"]], ["create"])
        self.assertNotIn("links", body)
        self.assertEqual((await self.actions(sid, "2.58", "?marker=nope"))[0], 400)
        self.assertEqual((await self.actions(sid, "2.58", "?sort=x"))[0], 400)
        self.assertEqual((await self.actions(sid, "2.57", "?sort=x"))[0], 200)
        _, body = await self.actions(sid, "2.58", "?changes-since=2999-01-01T00:00:00Z")
        self.assertEqual(body["instanceActions"], [])
        _, body = await self.actions(sid, "2.58", "?changes-since=2000-01-01T00:00:00Z")
        self.assertEqual(len(body["instanceActions"]), 2)
        self.assertEqual((await self.actions(
            sid, "2.65", "?changes-before=2000-01-01T00:00:00Z"))[0], 400)
        _, body = await self.actions(sid, "2.66", "?changes-before=2000-01-01T00:00:00Z")
        self.assertEqual(body["instanceActions"], [])
        _, body = await self.actions(sid, "2.66", "?changes-before=2999-01-01T00:00:00Z")
        self.assertEqual(len(body["instanceActions"]), 2)
        self.assertEqual((await self.actions(
            sid, "2.66", "?changes-since=2001-01-01T00:00:00Z"
            "&changes-before=2000-01-01T00:00:00Z"))[0], 400)
        self.assertEqual((await self.actions(sid, "2.58", "?changes-since=soon"))[0], 400)
        # Events: hostId for all from 2.62, host for administrators.
        path = f"/servers/{sid}/os-instance-actions/{create['request_id']}"
        _, body, _ = await self.call("GET", path, "2.61", token=self.token)
        self.assertEqual(set(body["instanceAction"]["events"][0]), EVENT_KEYS)
        self.assertEqual(set(body["instanceAction"]), ACTION_KEYS | {"events", "updated_at"})
        _, body, _ = await self.call("GET", path, "2.62", token=self.token)
        [event] = body["instanceAction"]["events"]
        self.assertEqual(set(event), EVENT_KEYS | {"hostId"})
        self.assertEqual(len(event["hostId"]), 56)
        _, body, _ = await self.call("GET", path, "2.62")
        [admins] = body["instanceAction"]["events"]
        self.assertEqual((admins["host"], admins["hostId"]), (self.host, event["hostId"]))

    async def test_deleted_server(self):
        """2.21: a deleted server's actions are listed and shown (404
        before), to its owner and administrators, not to others."""
        sid = await self.create()
        code, _, _ = await self.call("DELETE", f"/servers/{sid}", None, token=self.token)
        self.assertEqual(code, 204)
        await self.settle(sid)
        self.assertEqual((await self.actions(sid, "2.20"))[0], 404)
        code, body = await self.actions(sid, "2.21")
        self.assertEqual((code, [a["action"] for a in body["instanceActions"]]),
                         (200, ["delete", "create"]))
        request_id = body["instanceActions"][0]["request_id"]
        code, body, _ = await self.call(
            "GET", f"/servers/{sid}/os-instance-actions/{request_id}", "2.21")
        self.assertEqual((code, body["instanceAction"]["action"]), (200, "delete"))
        _, bob = await self.stack.user("bob")
        self.assertEqual((await self.actions(sid, "2.21", token=bob))[0], 404)
        self.assertEqual((await self.actions("424242", "2.21"))[0], 404)


class MigrationTests(_Stack):
    async def _drbd_server(self) -> str:
        flavor = await self.stack.flavor(1, 512, 2, "drbd")
        return await self.create(flavor.flavorid)

    async def test_queued_live_migration(self):
        """A live migration whose Ganeti job is queued: listed under its
        server from 2.23 (404 before) and in os-migrations with its type,
        link (2.23) and uuid (2.59); force_complete is 400 (not running);
        abort is 400 until 2.65, which cancels the Ganeti job: the
        migration is cancelled and the server active again."""
        sid = await self._drbd_server()
        self.stack.sim.hold_queue()
        self.addCleanup(self.stack.sim.release_queue)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", None, {
            "os-migrateLive": {"host": None, "block_migration": False,
                               "disk_over_commit": False}})
        self.assertEqual(code, 202, body)
        base = f"/servers/{sid}/migrations"
        self.assertEqual((await self.call("GET", base, "2.22"))[0], 404)
        self.assertEqual((await self.call("GET", base, "2.23", token=self.token))[0], 403)
        code, body, _ = await self.call("GET", base, "2.23")
        self.assertEqual(code, 200, body)
        [m] = body["migrations"]
        self.assertEqual(set(m), SERVER_MIGRATION_KEYS)
        self.assertEqual((m["status"], m["server_uuid"], m["source_compute"]),
                         ("queued", sid, self.host))
        _, body, _ = await self.call("GET", base, "2.59")
        self.assertEqual(set(body["migrations"][0]), SERVER_MIGRATION_KEYS | {"uuid"})
        mid = m["id"]
        code, body, _ = await self.call("GET", f"{base}/{mid}", "2.23")
        self.assertEqual((code, body["migration"]), (200, m))
        self.assertEqual((await self.call("GET", f"{base}/{mid + 1}", "2.23"))[0], 404)
        _, body, _ = await self.call("GET", "/os-migrations", "2.23")
        [listed] = body["migrations"]
        self.assertEqual(set(listed), OS_MIGRATION_KEYS_223 | {"links"})
        self.assertEqual(listed["migration_type"], "live-migration")
        self.assertTrue(listed["links"][0]["href"].endswith(f"/servers/{sid}/migrations/{mid}"))
        _, body, _ = await self.call("GET", "/os-migrations", "2.22")
        self.assertEqual(set(body["migrations"][0]), OS_MIGRATION_KEYS_223 - {"migration_type"})
        action = f"{base}/{mid}/action"
        self.assertEqual((await self.call("POST", action, "2.21",
                                          {"force_complete": None}))[0], 404)
        code, body, _ = await self.call("POST", action, "2.22", {"force_complete": None})
        self.assertEqual(code, 400, body)
        self.assertEqual((await self.call("POST", action, "2.22", {"force": None}))[0], 400)
        self.assertEqual((await self.call("DELETE", f"{base}/{mid}", "2.23"))[0], 404)
        code, body, _ = await self.call("DELETE", f"{base}/{mid}", "2.24")
        self.assertEqual(code, 400, body)
        self.assertEqual((await self.call("DELETE", f"{base}/{mid + 1}", "2.65"))[0], 404)
        code, body, _ = await self.call("DELETE", f"{base}/{mid}", "2.65")
        self.assertEqual(code, 202, body)
        self.stack.sim.release_queue()
        await self.settle(sid)
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual(body["server"]["status"], "ACTIVE")
        _, body, _ = await self.call("GET", "/os-migrations", "2.23")
        self.assertEqual([(m["status"], "links" in m) for m in body["migrations"]],
                         [("cancelled", False)])
        _, body, _ = await self.call("GET", base, "2.23")
        self.assertEqual(body["migrations"], [])
        # The server no longer migrates: Nova's 409.
        code, body, _ = await self.call("DELETE", f"{base}/{mid}", "2.65")
        self.assertEqual(code, 409, body)
        code, body, _ = await self.call("POST", action, "2.22", {"force_complete": None})
        self.assertEqual(code, 409, body)

    async def test_running_live_migration(self):
        """A running live migration cannot be forced or aborted through
        Ganeti's RAPI: 409 for both, with the reason."""
        sid = await self.create()
        s = self.stack
        await s.set_server(int(sid), task="MIGRATE", task_job_id=4242)
        await s.db.run("t", store.add_migration_txn, int(sid), 4242, "live-migration",
                       self.host, "node1", None, s.flavors["small"].id)
        await s.db.run("t", store.job_event_txn, int(sid), 4242, "OP_INSTANCE_MIGRATE",
                       datetime.datetime.now(UTC), None)
        _, body, _ = await self.call("GET", f"/servers/{sid}/migrations", "2.24")
        [m] = body["migrations"]
        self.assertEqual(m["status"], "running")
        path = f"/servers/{sid}/migrations/{m['id']}"
        code, body, _ = await self.call("POST", path + "/action", "2.22",
                                        {"force_complete": None})
        self.assertEqual(code, 409, body)
        self.assertIn("Ganeti", body["conflict"]["message"])
        code, body, _ = await self.call("DELETE", path, "2.24")
        self.assertEqual(code, 409, body)
        self.assertIn("Ganeti", body["conflict"]["message"])

    async def test_os_migrations_paging(self):
        """2.59: each migration has a uuid, paged by limit and marker (a
        uuid) with migrations_links, filtered by changes-since (2.66 also
        changes-before), and unknown parameters are 400 (ignored before)."""
        sid = await self.create()
        s = self.stack
        for job in (1001, 1002, 1003):
            await s.db.run("t", store.add_migration_txn, int(sid), job, "migration",
                           self.host, "node1", None, s.flavors["small"].id)
        when = datetime.datetime(2030, 1, 1, tzinfo=UTC)
        await s.db.run("t", store.job_event_txn, int(sid), 1002, "OP_INSTANCE_FAILOVER",
                       when, "Success")
        _, body, _ = await self.call("GET", "/os-migrations", "2.59")
        found = body["migrations"]
        self.assertEqual([m["status"] for m in found], ["queued", "completed", "queued"])
        self.assertTrue(all(set(m) == OS_MIGRATION_KEYS_223 | {"uuid"} and is_uuid(m["uuid"])
                            for m in found))
        self.assertEqual(found[1]["updated_at"], "2030-01-01T00:00:00Z")
        code, body, _ = await self.call("GET", "/os-migrations?limit=2", "2.59")
        self.assertEqual([m["id"] for m in body["migrations"]], [m["id"] for m in found[:2]])
        self.assertEqual(marker_of(body["migrations_links"]), found[1]["uuid"])
        _, body, _ = await self.call("GET", f"/os-migrations?marker={found[1]['uuid']}",
                                     "2.59")
        self.assertEqual([m["id"] for m in body["migrations"]], [found[2]["id"]])
        self.assertEqual((await self.call("GET", f"/os-migrations?marker={uuid.uuid4()}",
                                          "2.59"))[0], 400)
        _, body, _ = await self.call("GET", "/os-migrations?changes-since=2029-12-31T00:00:00",
                                     "2.59")
        self.assertEqual([m["id"] for m in body["migrations"]], [found[1]["id"]])
        self.assertEqual((await self.call("GET", "/os-migrations?changes-before=2030-01-02",
                                          "2.59"))[0], 400)
        _, body, _ = await self.call("GET", "/os-migrations?changes-before=2029-12-31T00:00:00",
                                     "2.66")
        self.assertEqual(body["migrations"], [])
        self.assertEqual((await self.call("GET", "/os-migrations?foo=1", "2.59"))[0], 400)
        _, body, _ = await self.call("GET", "/os-migrations?foo=1&limit=1", "2.58")
        self.assertEqual(len(body["migrations"]), 3)
        _, body, _ = await self.call("GET", "/os-migrations?migration_type=live-migration",
                                     "2.59")
        self.assertEqual(body["migrations"], [])


class MigrationRequestTests(unittest.TestCase):
    """``requests._migrate``: the bodies of the migration actions by
    microversion."""

    def test_live_migration_bodies(self):
        """2.25 takes block_migration "auto" and refuses disk_over_commit;
        2.30 takes force."""
        old = {"host": None, "block_migration": False, "disk_over_commit": False}
        self.assertEqual(_migrate("os-migrateLive", old).kind, "live-migration")
        self.assertRaises(errors.BadRequest, _migrate, "os-migrateLive", old, (2, 25))
        self.assertRaises(errors.BadRequest, _migrate, "os-migrateLive",
                          {**old, "block_migration": "auto"}, (2, 24))
        self.assertRaises(errors.BadRequest, _migrate, "os-migrateLive",
                          {"block_migration": False}, (2, 24))
        auto = {"host": "c1", "block_migration": "auto"}
        self.assertEqual(_migrate("os-migrateLive", auto, (2, 25)).host, "c1")
        self.assertRaises(errors.BadRequest, _migrate, "os-migrateLive",
                          {"host": None}, (2, 25))
        self.assertRaises(errors.BadRequest, _migrate, "os-migrateLive",
                          {**auto, "force": True}, (2, 29))
        self.assertTrue(_migrate("os-migrateLive", {**auto, "force": True}, (2, 30)).force)
        self.assertRaises(errors.BadRequest, _migrate, "os-migrateLive",
                          {**auto, "force": "maybe"}, (2, 30))

    def test_evacuate_and_migrate_bodies(self):
        """evacuate: onSharedStorage until 2.13, force from 2.29; migrate:
        nothing before 2.56, then a host."""
        self.assertRaises(errors.BadRequest, _migrate, "evacuate", {"force": True}, (2, 28))
        self.assertTrue(_migrate("evacuate", {"force": True}, (2, 29)).force)
        self.assertEqual(_migrate("evacuate", {"onSharedStorage": True}).kind, "evacuation")
        self.assertRaises(errors.BadRequest, _migrate, "evacuate",
                          {"onSharedStorage": True}, (2, 14))
        self.assertEqual(_migrate("migrate", None, (2, 55)).host, None)
        self.assertRaises(errors.BadRequest, _migrate, "migrate", {"host": "c1"}, (2, 55))
        self.assertEqual(_migrate("migrate", {"host": "c1"}, (2, 56)).host, "c1")
        self.assertEqual(_migrate("migrate", {"host": None}, (2, 56)).host, None)
