"""Server groups (``os-server-groups`` and the ``group`` scheduler hint),
instance actions (``os-instance-actions``) and rebuild (Ganeti's
reinstall), through the compute API on a simulated Ganeti cluster, in
the shapes tempest's Nova 2.1 schemas allow."""

from __future__ import annotations

from twisted.trial import unittest

from snfd.cyclades import server_groups
from snfd.cyclades.model import GanetiBackend
from snfd.testing.compute import compute_stack
from tests.cyclades.test_nova_dialect import SERVER_SHORT_KEYS

GROUP_KEYS = {"id", "name", "policies", "members", "metadata"}
ACTION_KEYS = {"action", "request_id", "user_id", "project_id", "start_time", "message",
               "instance_uuid"}
EVENT_KEYS = {"event", "start_time", "finish_time", "result"}


def _backend(backend_id: int) -> GanetiBackend:
    return GanetiBackend(id=backend_id, clustername=f"c{backend_id}", rapi_url="")


class PlacementFilterTests(unittest.TestCase):
    """``server_groups.placement_filter``: where a new member may go."""

    def test_policies(self):
        b1, b2, b3 = _backend(1), _backend(2), _backend(3)
        candidates = [b1, b2, b3]
        f = server_groups.placement_filter
        self.assertEqual(f(candidates, "affinity", set()), candidates)
        self.assertEqual(f(candidates, "affinity", {2}), [b2])
        # The members' backend cannot take it: nothing (a refusal).
        self.assertEqual(f([b1, b3], "affinity", {2}), [])
        self.assertEqual(f([b1, b3], "soft-affinity", {2}), [b1, b3])
        self.assertEqual(f(candidates, "soft-affinity", {3}), [b3])
        self.assertEqual(f(candidates, "anti-affinity", {1, 2}), [b3])
        # Every backend holds a member: Ganeti's exclusion tags decide.
        self.assertEqual(f([b1, b2], "anti-affinity", {1, 2}), [b1, b2])
        self.assertEqual(f(candidates, "soft-anti-affinity", {1}), [b2, b3])


class _Stack(unittest.TestCase):
    nodes = 1

    async def setUp(self) -> None:
        self.stack = await compute_stack(self, nodes=self.nodes)
        self.alice, self.token = await self.stack.user("alice")
        self.v21 = f"{self.stack.url}/compute/v2.1"

    async def call(self, method, path, body=None, token=None, headers=None):
        return await self.stack.call(method, self.v21 + path, token or self.token, body,
                                     headers=headers)

    async def create(self, hints=None, follow=True, token=None, **more):
        s = self.stack
        body = {"server": {"name": "vm", "flavorRef": str(s.flavors["small"].id),
                           "imageRef": s.image.id, **more}}
        if hints is not None:
            body["os:scheduler_hints"] = hints
        code, answer, headers = await self.call("POST", "/servers", body, token)
        self.assertEqual(code, 202, answer)
        sid = answer["server"]["id"]
        if follow:
            await s.follow((await s.server(int(sid))).backendjobid)
        return sid, headers

    async def action(self, sid, body, code_wanted=202):
        code, answer, headers = await self.call("POST", f"/servers/{sid}/action", body)
        self.assertEqual(code, code_wanted, answer)
        return answer, headers

    async def settle(self, sid):
        """Follow the server's pending job to its end."""
        server = await self.stack.server(int(sid))
        await self.stack.follow(server.task_job_id or server.backendjobid)
        return await self.stack.server(int(sid))


class ServerGroupAPITests(_Stack):
    async def test_create_show_list_delete(self):
        """A group answers 200 with Nova's five keys; the project's members
        list and show it, another user does not see it (404); after its
        deletion it is gone."""
        code, body, _ = await self.call("POST", "/os-server-groups", {
            "server_group": {"name": "web", "policies": ["anti-affinity"]}})
        self.assertEqual(code, 200, body)
        group = body["server_group"]
        self.assertEqual(set(group), GROUP_KEYS)
        self.assertEqual((group["name"], group["policies"], group["members"], group["metadata"]),
                         ("web", ["anti-affinity"], [], {}))
        code, body, _ = await self.call("GET", f"/os-server-groups/{group['id']}")
        self.assertEqual((code, body["server_group"]), (200, group))
        _, body, _ = await self.call("GET", "/os-server-groups")
        self.assertEqual(body["server_groups"], [group])
        _, bob = await self.stack.user("bob")
        code, _, _ = await self.call("GET", f"/os-server-groups/{group['id']}", token=bob)
        self.assertEqual(code, 404)
        _, body, _ = await self.call("GET", "/os-server-groups", token=bob)
        self.assertEqual(body["server_groups"], [])
        code, _, _ = await self.call("DELETE", f"/os-server-groups/{group['id']}", token=bob)
        self.assertEqual(code, 404)
        code, _, _ = await self.call("DELETE", f"/os-server-groups/{group['id']}")
        self.assertEqual(code, 204)
        code, _, _ = await self.call("GET", f"/os-server-groups/{group['id']}")
        self.assertEqual(code, 404)

    async def test_bad_requests_and_quota(self):
        """Microversion 2.1 takes one of affinity, anti-affinity (the soft
        policies are 2.15's): anything else is 400; a project holds ten
        groups (403 past them), as the quota set says."""
        for bad in ({"name": "g", "policies": ["soft-affinity"]},
                    {"name": "g", "policies": ["affinity", "anti-affinity"]},
                    {"name": "g", "policies": "affinity"},
                    {"name": "", "policies": ["affinity"]},
                    {"name": "g", "policies": ["affinity"], "rules": {}}):
            code, body, _ = await self.call("POST", "/os-server-groups", {"server_group": bad})
            self.assertEqual(code, 400, (bad, body))
        for i in range(server_groups.MAX_GROUPS):
            code, _, _ = await self.call("POST", "/os-server-groups", {
                "server_group": {"name": f"g{i}", "policies": ["affinity"]}})
            self.assertEqual(code, 200)
        code, body, _ = await self.call("POST", "/os-server-groups", {
            "server_group": {"name": "one-more", "policies": ["affinity"]}})
        self.assertEqual(code, 403, body)
        _, body, _ = await self.call("GET", f"/os-quota-sets/{self.alice}/detail")
        self.assertEqual(body["quota_set"]["server_groups"],
                         {"limit": 10, "in_use": 10, "reserved": 0})
        _, body, _ = await self.call("GET", "/os-server-groups?limit=3&offset=8")
        self.assertEqual([g["name"] for g in body["server_groups"]], ["g8", "g9"])

    async def test_hint_of_a_group_one_cannot_see(self):
        """A create naming a group that is not there or not the caller's is
        400, and nothing is created."""
        _, bob = await self.stack.user("bob")
        _, body, _ = await self.call("POST", "/os-server-groups", {
            "server_group": {"name": "bobs", "policies": ["affinity"]}}, token=bob)
        for group in ("no-such-group", body["server_group"]["id"]):
            code, answer, _ = await self.call("POST", "/servers", {
                "server": {"name": "vm", "flavorRef": str(self.stack.flavors["small"].id),
                           "imageRef": self.stack.image.id},
                "os:scheduler_hints": {"group": group}})
            self.assertEqual(code, 400, answer)
        _, body, _ = await self.call("GET", "/servers")
        self.assertEqual(body["servers"], [])


class GroupPlacementTests(_Stack):
    nodes = 2

    async def _group(self, policy):
        _, body, _ = await self.call("POST", "/os-server-groups", {
            "server_group": {"name": policy, "policies": [policy]}})
        return body["server_group"]["id"]

    async def _pnode(self, sid):
        found = await self.stack.rapi_client().instance(f"snf-{sid}")
        return found["pnode"], found.get("tags", [])

    async def test_affinity_puts_members_on_one_node(self):
        """Members of an affinity group share a Ganeti node (the second is
        created on the first's primary node); the group lists them, and a
        deleted member leaves it."""
        group = await self._group("affinity")
        first, _ = await self.create({"group": group})
        second, _ = await self.create({"group": group})
        (node1, _), (node2, _) = await self._pnode(first), await self._pnode(second)
        self.assertEqual(node1, node2)
        _, body, _ = await self.call("GET", f"/os-server-groups/{group}")
        self.assertEqual(body["server_group"]["members"], [first, second])
        code, _, _ = await self.call("DELETE", f"/servers/{first}")
        self.assertEqual(code, 204)
        await self.settle(first)
        _, body, _ = await self.call("GET", f"/os-server-groups/{group}")
        self.assertEqual(body["server_group"]["members"], [second])

    async def test_anti_affinity_spreads_members_over_nodes(self):
        """Members of an anti-affinity group carry its exclusion tag and the
        cluster learns the tag's prefix, so Ganeti puts them on different
        nodes; with both nodes taken, a third member's create fails in
        Ganeti and the server is in ERROR (Nova's "no valid host")."""
        group = await self._group("anti-affinity")
        first, _ = await self.create({"group": group})
        second, _ = await self.create({"group": group})
        (node1, tags1), (node2, tags2) = await self._pnode(first), await self._pnode(second)
        self.assertNotEqual(node1, node2)
        self.assertEqual(tags1, [server_groups.exclusion_tag(group)])
        self.assertEqual(tags2, tags1)
        info = await self.stack.rapi_client().info()
        self.assertIn(server_groups.EXCLUSION_CLUSTER_TAG, info["tags"])
        third, _ = await self.create({"group": group})
        _, body, _ = await self.call("GET", f"/servers/{third}")
        self.assertEqual(body["server"]["status"], "ERROR")
        # A server outside the group goes anywhere.
        other, _ = await self.create()
        _, body, _ = await self.call("GET", f"/servers/{other}")
        self.assertEqual(body["server"]["status"], "ACTIVE")


class InstanceActionTests(_Stack):
    async def test_actions_of_a_server(self):
        """Create and a hard reboot are listed (newest first) with Nova's
        keys; the create's request id (X-Compute-Request-Id of its answer)
        shows it with its job's events, ended in Success; a lock has no
        events; unknown request ids and other users' servers are 404."""
        sid, headers = await self.create()
        request_id = headers.getRawHeaders("x-compute-request-id")[0]
        await self.action(sid, {"reboot": {"type": "HARD"}})
        await self.settle(sid)
        await self.action(sid, {"lock": None})
        code, body, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions")
        self.assertEqual(code, 200)
        actions = body["instanceActions"]
        self.assertEqual([a["action"] for a in actions], ["lock", "reboot", "create"])
        for a in actions:
            self.assertEqual(set(a), ACTION_KEYS)
            self.assertEqual((a["instance_uuid"], a["user_id"], a["project_id"], a["message"]),
                             (sid, self.alice, self.alice, None))
        self.assertEqual(actions[2]["request_id"], request_id)
        code, body, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions/{request_id}")
        self.assertEqual(code, 200)
        shown = body["instanceAction"]
        self.assertEqual(set(shown), ACTION_KEYS | {"events"})
        self.assertEqual([(e["event"], e["result"]) for e in shown["events"]],
                         [("op_instance_create", "Success")])
        self.assertEqual(set(shown["events"][0]), EVENT_KEYS)
        self.assertIsNotNone(shown["events"][0]["finish_time"])
        lock = actions[0]["request_id"]
        _, body, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions/{lock}")
        self.assertEqual(body["instanceAction"]["events"], [])
        code, _, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions/999")
        self.assertEqual(code, 404)
        _, bob = await self.stack.user("bob")
        code, _, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions", token=bob)
        self.assertEqual(code, 404)
        code, _, _ = await self.call("GET", "/servers/424242/os-instance-actions")
        self.assertEqual(code, 404)

    async def test_failed_job_shows_error(self):
        """An action whose job failed has the message Error and an event
        ending in Error."""
        sid, _ = await self.create()
        await self.action(sid, {"os-stop": None})
        await self.settle(sid)
        self.stack.sim.fail_next("OP_INSTANCE_STARTUP", message="Could not start instance")
        _, headers = await self.action(sid, {"os-start": None})
        await self.settle(sid)
        request_id = headers.getRawHeaders("x-compute-request-id")[0]
        _, body, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions/{request_id}")
        shown = body["instanceAction"]
        self.assertEqual((shown["action"], shown["message"]), ("start", "Error"))
        self.assertEqual([e["result"] for e in shown["events"]], ["Error"])


class RebuildTests(_Stack):
    async def test_rebuild_a_running_server(self):
        """A rebuild answers 202 with the server already showing the new
        image, name and metadata and the new adminPass; it is REBUILD
        until Ganeti's reinstall job (shutdown, reinstall, startup) ends,
        then ACTIVE; snf-image gets new build parameters; the action is
        recorded."""
        s = self.stack
        sid, _ = await self.create()
        other = await s.add_image(s.images.system_owner, "Other")
        answer, _ = await self.action(sid, {"rebuild": {
            "imageRef": other.id, "name": "rebuilt", "metadata": {"rebuild": "server"},
            "adminPass": "rebuildPassw0rd"}})
        shown = answer["server"]
        self.assertEqual((shown["id"], shown["image"]["id"], shown["name"], shown["metadata"],
                          shown["adminPass"]),
                         (sid, other.id, "rebuilt", {"rebuild": "server"}, "rebuildPassw0rd"))
        self.assertEqual(shown["status"], "REBUILD")
        # Nova's rebuild answer is the short server (a rename's) and adminPass.
        self.assertLessEqual(set(shown), SERVER_SHORT_KEYS | {"adminPass"})
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual(body["server"]["OS-EXT-STS:task_state"], "rebuilding")
        server = await s.server(int(sid))
        job = await s.rapi_client().job(server.task_job_id)
        self.assertEqual([op["OP_ID"] for op in job["ops"]],
                         ["OP_INSTANCE_SHUTDOWN", "OP_INSTANCE_REINSTALL",
                          "OP_INSTANCE_STARTUP"])
        reinstall = job["ops"][1]
        self.assertEqual(reinstall["os_type"], "snf-image+default")
        self.assertIn("/server-params/", reinstall["osparams"]["config_url"])
        await self.settle(sid)
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual((body["server"]["status"], body["server"]["image"]["id"]),
                         ("ACTIVE", other.id))
        _, body, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions")
        self.assertEqual([a["action"] for a in body["instanceActions"]], ["rebuild", "create"])

    async def test_rebuild_a_stopped_server_keeps_it_stopped(self):
        s = self.stack
        sid, _ = await self.create()
        await self.action(sid, {"os-stop": None})
        await self.settle(sid)
        await self.action(sid, {"rebuild": {"imageRef": s.image.id}})
        server = await s.server(int(sid))
        job = await s.rapi_client().job(server.task_job_id)
        self.assertEqual([op["OP_ID"] for op in job["ops"]],
                         ["OP_INSTANCE_SHUTDOWN", "OP_INSTANCE_REINSTALL"])
        await self.settle(sid)
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual(body["server"]["status"], "SHUTOFF")

    async def test_rebuild_refusals(self):
        """An unknown image or field is 400; a server being built or in
        rescue is 409; the server is unchanged."""
        s = self.stack
        sid, _ = await self.create(follow=False)
        await self.action(sid, {"rebuild": {"imageRef": s.image.id}}, 409)
        await self.settle(sid)
        await self.action(sid, {"rebuild": {"imageRef": "no-such-image"}}, 400)
        await self.action(sid, {"rebuild": {"imageRef": s.image.id, "flavorRef": "1"}}, 400)
        await self.action(sid, {"rebuild": {}}, 400)
        await self.action(sid, {"rebuild": {"imageRef": s.image.id, "adminPass": ""}}, 400)
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual((body["server"]["status"], body["server"]["name"]), ("ACTIVE", "vm"))

    async def test_rebuild_a_server_in_error(self):
        """An administrator's os-resetState to error, then a user's rebuild:
        the server runs again (ACTIVE), as Nova's."""
        s = self.stack
        _, root = await s.admin()
        sid, _ = await self.create()
        code, _, _ = await s.call("POST", f"{self.v21}/servers/{sid}/action", root,
                                  {"os-resetState": {"state": "error"}})
        self.assertEqual(code, 202)
        await self.action(sid, {"rebuild": {"imageRef": s.image.id}})
        await self.settle(sid)
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual(body["server"]["status"], "ACTIVE")


class MigrationTests(_Stack):
    nodes = 2

    async def _drbd_server(self):
        flavor = await self.stack.flavor(1, 512, 2, "drbd")
        code, body, _ = await self.call("POST", "/servers", {"server": {
            "name": "ha", "flavorRef": flavor.flavorid, "imageRef": self.stack.image.id}})
        self.assertEqual(code, 202, body)
        sid = body["server"]["id"]
        await self.settle(sid)
        return sid

    async def _nodes(self, sid):
        found = await self.stack.rapi_client().instance(f"snf-{sid}")
        return found["pnode"], found["snodes"]

    async def test_live_migration_and_failover(self):
        """An administrator's os-migrateLive moves a DRBD server to its
        secondary node (MIGRATING meanwhile), migrate (a failover) moves
        it back; os-migrations lists both, completed, newest first; users
        get 403; another compute host is 400."""
        s = self.stack
        _, root = await s.admin()
        sid = await self._drbd_server()
        pnode, snodes = await self._nodes(sid)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", {"os-migrateLive": {
            "host": None, "block_migration": False, "disk_over_commit": False}})
        self.assertEqual(code, 403, body)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", {"os-migrateLive": {
            "host": "elsewhere", "block_migration": False, "disk_over_commit": False}},
            token=root)
        self.assertEqual(code, 400, body)
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", {"os-migrateLive": {
            "host": s.backend.clustername, "block_migration": False,
            "disk_over_commit": False}}, token=root)
        self.assertEqual(code, 202, body)
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual(body["server"]["status"], "MIGRATING")
        await self.settle(sid)
        self.assertEqual(await self._nodes(sid), (snodes[0], [pnode]))
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", {"migrate": None},
                                        token=root)
        self.assertEqual(code, 202, body)
        await self.settle(sid)
        self.assertEqual((await self._nodes(sid))[0], pnode)
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual(body["server"]["status"], "ACTIVE")
        code, body, _ = await self.call("GET", "/os-migrations", token=root)
        self.assertEqual(code, 200)
        self.assertEqual([(m["instance_uuid"], m["status"], m["source_node"])
                          for m in body["migrations"]],
                         [(sid, "completed", snodes[0]), (sid, "completed", pnode)])
        self.assertIsNotNone(body["migrations"][0]["updated_at"])
        code, _, _ = await self.call("GET", "/os-migrations")
        self.assertEqual(code, 403)
        _, body, _ = await self.call("GET", f"/servers/{sid}/os-instance-actions")
        self.assertEqual([a["action"] for a in body["instanceActions"]],
                         ["migrate", "live-migration", "create"])

    async def test_a_template_that_cannot_move(self):
        """A server on a file disk cannot migrate: Ganeti's job fails, the
        migration shows error and the server stays ACTIVE; evacuate answers
        200 with an empty body."""
        s = self.stack
        _, root = await s.admin()
        sid, _ = await self.create()
        code, body, _ = await self.call("POST", f"/servers/{sid}/action", {"os-migrateLive": {
            "host": None, "block_migration": False, "disk_over_commit": False}}, token=root)
        self.assertEqual(code, 202, body)
        await self.settle(sid)
        _, body, _ = await self.call("GET", f"/os-migrations?instance_uuid={sid}", token=root)
        self.assertEqual([m["status"] for m in body["migrations"]], ["error"])
        _, body, _ = await self.call("GET", f"/servers/{sid}")
        self.assertEqual(body["server"]["status"], "ACTIVE")
        code, body, _ = await self.call("POST", f"/servers/{sid}/action",
                                        {"evacuate": {"onSharedStorage": True}}, token=root)
        self.assertEqual((code, body), (200, {}))
        await self.settle(sid)


class RebuildReconcileTests(_Stack):
    async def test_reconciler_ends_a_rebuild_whose_events_were_lost(self):
        """A rebuild whose job ended while no event reached the node: the
        reconciler applies the job's last opcode (not its first, a
        shutdown), which ends the task; the server runs."""
        s = self.stack
        sid, _ = await self.create()
        await self.action(sid, {"rebuild": {"imageRef": s.image.id}})
        server = await s.server(int(sid))
        await s.rapi_client().wait_job(server.task_job_id, poll=0.02, timeout=30)
        s.service.reconciler.settle = 0.0   # judge the job that just ended
        report = await s.service.reconciler.reconcile(fix=frozenset({"pending_tasks"}))
        self.assertIn("OP_INSTANCE_STARTUP success", str(report.pending_tasks), report)
        server = await s.server(int(sid))
        self.assertEqual((server.task, server.operstate), ("", "STARTED"))
