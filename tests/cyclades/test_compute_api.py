"""The compute API over real HTTP (``snfd.cyclades.compute_api``): version
discovery and microversion headers, the create validation matrix, server
dicts, visibility, changes-since, metadata and tags limits, keypairs,
flavors, images and the one-use server parameters.  A backend whose RAPI
is down gives the failure paths; the Ganeti simulator the happy ones."""

from __future__ import annotations

import base64
import datetime
from urllib.parse import quote

from twisted.trial import unittest

from snfd.cyclades import store
from snfd.testing.compute import compute_stack

UTC = datetime.UTC
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ/bzaETcgVB2/7hNQ/oj5EoNl1c/uLHISA2CVbx1MwQ"
    " alice@example.org")
# ssh-keygen -l -E md5 of PUBLIC_KEY
PUBLIC_KEY_MD5 = "bf:66:9f:6b:99:75:90:1b:a2:a8:f9:7f:88:b8:d4:2a"


def server_body(stack, **over):
    body = {"name": "vm1", "flavorRef": stack.flavors["small"].id,
            "imageRef": stack.image.id}
    body.update(over)
    return {"server": body}


class DownStackTests(unittest.TestCase):
    """Requests answered without a reachable Ganeti."""

    async def setUp(self) -> None:
        self.stack = await compute_stack(self, sim=False)
        self.alice, self.token = await self.stack.user("alice")

    async def test_versions(self):
        """``/`` lists v2.0 (Synnefo's dialect, microversion 2.1 only) and
        v2.1 (Nova's, 2.1 to 2.66), as keystoneauth's discovery reads it;
        ``/v2.x[/]`` describe themselves; every answer says the
        microversion it speaks (2.1 when none is asked for)."""
        s = self.stack
        code, body, headers = await s.call("GET", f"{s.url}/compute/")
        self.assertEqual(code, 200)
        self.assertEqual([(v["id"], v["version"], v["min_version"], v["links"][0]["href"])
                          for v in body["versions"]],
                         [("v2.0", "2.1", "2.1", f"{s.url}/compute/v2.0/"),
                          ("v2.1", "2.66", "2.1", f"{s.url}/compute/v2.1/")])
        for path in (f"{s.url}/compute/v2.0", f"{s.url}/compute/v2.0/",
                     f"{s.url}/compute/v2.1", f"{s.url}/compute/v2.1/"):
            code, body, headers = await s.call("GET", path)
            self.assertEqual((code, body["version"]["status"]), (200, "CURRENT"))
            self.assertEqual(headers.getRawHeaders("x-openstack-nova-api-version"), ["2.1"])
            self.assertEqual(headers.getRawHeaders("openstack-api-version"), ["compute 2.1"])

    async def test_token_needed(self):
        """The API needs a user token (401 without, 401 for a bad one)."""
        code, body, _ = await self.stack.call("GET", "/servers")
        self.assertEqual(code, 401)
        code, body, _ = await self.stack.call("GET", "/servers", "nope")
        self.assertEqual(code, 401)

    async def test_microversion_requests_accepted(self):
        """Requests naming a 2.x microversion are served (as 2.1)."""
        code, body, headers = await self.stack.call(
            "GET", "/servers/detail", self.token,
            headers={"X-OpenStack-Nova-API-Version": "2.37",
                     "OpenStack-API-Version": "compute 2.37"})
        self.assertEqual((code, body), (200, {"servers": []}))
        self.assertEqual(headers.getRawHeaders("openstack-api-version"), ["compute 2.1"])

    async def test_extensions_limits_zones(self):
        """Extensions list what is served (Nova's legacy list); limits show
        the cyclades quota as Nova's absolute limits; one availability zone."""
        s = self.stack
        code, body, _ = await s.call("GET", "/extensions", self.token)
        self.assertEqual(code, 200)
        self.assertIn("os-flavor-manage", [e["alias"] for e in body["extensions"]])
        code, body, _ = await s.call("GET", "/limits", self.token)
        self.assertEqual(code, 200)
        self.assertEqual(body["limits"]["rate"], [])
        absolute = body["limits"]["absolute"]
        self.assertEqual((absolute["maxTotalInstances"], absolute["totalInstancesUsed"],
                          absolute["maxTotalCores"], absolute["maxTotalRAMSize"]),
                         (10, 0, 32, 64 * 1024))
        code, body, _ = await s.call("GET", "/os-availability-zone", self.token)
        self.assertEqual(body["availabilityZoneInfo"][0]["zoneName"], "nova")

    async def test_create_validation(self):
        """Malformed creates are 400 with a message; nothing is charged."""
        s = self.stack
        carol, _ = await s.user("carol")
        other = await s.add_image(carol, "private", public=False)
        bad_personality = [{"path": "/x", "contents": "not base64!"}]
        big = base64.b64encode(b"x" * 7681).decode()  # 10244 characters
        cases = [
            ({"server": "x"}, 400),
            (server_body(s, name=""), 400),
            (server_body(s, name=None), 400),
            (server_body(s, flavorRef="abc"), 400),
            (server_body(s, imageRef=None), 400),
            (server_body(s, metadata={"k": 1}), 400),
            (server_body(s, metadata={f"k{i}": "v" for i in range(11)}), 400),
            (server_body(s, metadata={"k" * 51: "v"}), 400),
            (server_body(s, personality=bad_personality), 400),
            (server_body(s, personality=[{"contents": "eA=="}]), 400),
            (server_body(s, personality=[{"path": "/x", "contents": big}]), 413),
            (server_body(s, personality=[{"path": f"/{i}", "contents": "eA=="}
                                         for i in range(6)]), 413),
            (server_body(s, adminPass="short1A"), 400),
            (server_body(s, adminPass="alllowercase1"), 400),
            (server_body(s, tags=["a/b"]), 400),
            (server_body(s, tags=["x" * 61]), 400),
            (server_body(s, tags=[f"t{i}" for i in range(51)]), 400),
            (server_body(s, networks=[{"uuid": "net-1"}]), 400),
            (server_body(s, max_count=2), 400),
            (server_body(s, user_data="@@@"), 400),
            (server_body(s, flavorRef=9999), 404),
            (server_body(s, imageRef="no-such-image"), 404),
            (server_body(s, imageRef=other.id), 404),
            (server_body(s, key_name="missing"), 404),
        ]
        for body, expected in cases:
            code, reply, _ = await s.call("POST", "/servers", self.token, body)
            self.assertEqual(code, expected, (body, reply))
            self.assertIn("message", next(iter(reply.values())))
        self.assertEqual(await s.usage(self.alice), dict.fromkeys(
            ["cyclades.vm", "cyclades.total_cpu", "cyclades.cpu", "cyclades.total_ram",
             "cyclades.ram", "cyclades.disk", "cyclades.network.private",
             "cyclades.floating_ip"], 0))
        self.assertEqual(await s.servers.of_user(self.alice), [])

    async def test_not_json(self):
        """A body that is not JSON, or sent with another content type, is 400."""
        s = self.stack
        code, _, _ = await s.call("POST", "/servers", self.token, raw=b"{nope")
        self.assertEqual(code, 400)
        code, body, _ = await s.call("POST", "/servers", self.token,
                                     raw=b'{"server": {}}',
                                     headers={"Content-Type": "text/plain"})
        self.assertEqual(code, 400)
        self.assertIn("JSON", body["badRequest"]["message"])

    async def test_flavor_rules(self):
        """A flavor with creation off, or private to other projects, is 403;
        a deleted one 404."""
        s = self.stack
        off = await s.flavor(1, 256, 1, allow_create=False)
        private = await s.flavor(1, 256, 2, public=False, access=("other-project",))
        gone = await s.flavor(1, 256, 3)
        await s.db.run("t", store.update_flavor_txn, gone.id, deleted=True)
        for flavor, expected in ((off, 403), (private, 403), (gone, 404)):
            code, _, _ = await s.call("POST", "/servers", self.token,
                                      server_body(s, flavorRef=flavor.id))
            self.assertEqual(code, expected)

    async def test_quota_exceeded(self):
        """A create beyond the user's quota is 413 with the holder's details
        and leaves nothing behind."""
        s = self.stack
        bob, token = await s.user("bob", vm=0)
        code, body, _ = await s.call("POST", "/servers", token, server_body(s))
        self.assertEqual(code, 413)
        self.assertEqual(body["overLimit"]["data"]["provision"]["resource"], "cyclades.vm")
        self.assertEqual(await s.servers.of_user(bob), [])
        self.assertEqual(await s.pending(), [])

    async def test_unknown_project(self):
        """Creating in a project where the user holds no quota is refused."""
        s = self.stack
        code, _, _ = await s.call("POST", "/servers", self.token,
                                  server_body(s, project="not-mine"))
        self.assertEqual(code, 404)

    async def test_rapi_down(self):
        """When Ganeti cannot be reached the create is 503, the server is
        ERROR with the reason, its commission is rejected, the backend's
        counters are given back and the build secrets are dropped; such a
        server is deleted at once."""
        s = self.stack
        before = await s.db.run("t", store.backend_txn, s.backend.id)
        code, body, _ = await s.call("POST", "/servers", self.token, server_body(s))
        self.assertEqual(code, 503)
        self.assertIn("ERROR", body["serviceUnavailable"]["message"])
        (server,) = await s.servers.of_user(self.alice)
        self.assertEqual((server.operstate, server.task), ("ERROR", ""))
        self.assertIn("down.ganeti.test", server.backendlogmsg)
        after = await s.db.run("t", store.backend_txn, s.backend.id)
        self.assertEqual((after.mfree, after.dfree, after.pinst_cnt),
                         (before.mfree, before.dfree, before.pinst_cnt))
        self.assertEqual(set((await s.usage(self.alice)).values()), {0})
        self.assertEqual(await s.pending(), [])
        rows = await s.db.run("t", lambda txn: (txn.execute(
            "SELECT count(*) FROM cyclades_server_params"), txn.fetchone()[0])[1])
        self.assertEqual(rows, 0)
        code, body, _ = await s.call("GET", f"/servers/{server.id}", self.token)
        self.assertEqual(body["server"]["status"], "ERROR")
        code, _, _ = await s.call("DELETE", f"/servers/{server.id}", self.token)
        self.assertEqual(code, 204)
        code, body, _ = await s.call("GET", f"/servers/{server.id}", self.token)
        self.assertEqual((body["server"]["status"], body["server"]["deleted"]),
                         ("DELETED", True))
        code, body, _ = await s.call("GET", "/servers", self.token)
        self.assertEqual(body["servers"], [])
        self.assertEqual(set((await s.usage(self.alice)).values()), {0})

    async def test_action_rapi_down(self):
        """An action whose job cannot be submitted is 503; the task is
        cleared and its commission rejected, so quota is unchanged."""
        s = self.stack
        server = await self._stored_server(operstate="STOPPED")
        usage = await s.usage(self.alice)
        code, body, _ = await s.call("POST", f"/servers/{server.id}/action", self.token,
                                     {"os-start": None})
        self.assertEqual(code, 503)
        after = await s.server(server.id)
        self.assertEqual((after.task, after.serial, after.operstate), ("", None, "STOPPED"))
        self.assertEqual(await s.usage(self.alice), usage)
        self.assertEqual(await s.pending(), [])

    async def _stored_server(self, user=None, **fields):
        s = self.stack
        server = await s.db.run("t", store.insert_server_txn, user or self.alice,
                                user or self.alice, "stored", s.flavors["small"].id,
                                s.image.id, backend_id=s.backend.id, backendjobid=1,
                                backendopcode="OP_INSTANCE_CREATE",
                                backendjobstatus="success", **fields)
        return server

    async def test_state_rules(self):
        """Actions not allowed in the server's state are refused with the
        reference's codes: 409 for a wrong state or a build in progress,
        400 while another task runs or in ERROR; unknown actions 400,
        unsupported ones 501, suspend 403."""
        s = self.stack
        active = await self._stored_server(operstate="STARTED")
        building = await self._stored_server(operstate="BUILD", task="BUILD")
        busy = await self._stored_server(operstate="STARTED", task="REBOOT")
        broken = await self._stored_server(operstate="ERROR")
        cases = [
            (active, {"os-start": None}, 409),
            (active, {"resize": {"flavorRef": s.flavors["big"].id}}, 409),
            (active, {"unrescue": {}}, 409),
            (building, {"shutdown": {}}, 409),
            (busy, {"shutdown": {}}, 400),
            (broken, {"reboot": {"type": "HARD"}}, 400),
            (active, {"reboot": {"type": "GENTLE"}}, 400),
            (active, {"dance": {}}, 400),
            (active, {"start": {}, "shutdown": {}}, 400),
            (active, {"changePassword": {"adminPass": "x"}}, 501),
            (active, {"rebuild": {}}, 400),
            (active, {"confirmResize": None}, 501),
            (active, {"suspend": None}, 403),
            (active, {"console": {"type": "spice"}}, 400),
            (active, {"firewallProfile": {"profile": "ENABLED", "nic": "0"}}, 400),
            (active, {"rescue": {}}, 501),
        ]
        for server, action, expected in cases:
            code, body, _ = await s.call("POST", f"/servers/{server.id}/action", self.token,
                                         action)
            self.assertEqual(code, expected, (server.operstate, action, body))
        self.assertEqual(await s.pending(), [])

    async def test_resize_rules(self):
        """Resize needs a flavor with the same disk and template (400) that
        differs from the current one (400)."""
        s = self.stack
        stopped = await self._stored_server(operstate="STOPPED")
        other_disk = s.flavors["huge"]
        for flavor_id in (other_disk.id, s.flavors["small"].id, s.flavors["diskless"].id):
            code, _, _ = await s.call("POST", f"/servers/{stopped.id}/action", self.token,
                                      {"resize": {"flavorRef": flavor_id}})
            self.assertEqual(code, 400)

    async def test_other_users_server_is_not_found(self):
        """Another user's server is 404 for every route; so is a non-numeric id."""
        s = self.stack
        bob, bob_token = await s.user("bob")
        theirs = await self._stored_server(user=bob, operstate="STARTED")
        for method, path, body in [
                ("GET", f"/servers/{theirs.id}", None),
                ("PUT", f"/servers/{theirs.id}", {"server": {"name": "x"}}),
                ("DELETE", f"/servers/{theirs.id}", None),
                ("POST", f"/servers/{theirs.id}/action", {"shutdown": {}}),
                ("GET", f"/servers/{theirs.id}/metadata", None),
                ("POST", f"/servers/{theirs.id}/metadata", {"metadata": {"a": "b"}}),
                ("GET", f"/servers/{theirs.id}/diagnostics", None),
                ("GET", f"/servers/{theirs.id}/password", None),
                ("GET", f"/servers/{theirs.id}/tags", None),
                ("GET", "/servers/abc", None)]:
            code, _, _ = await s.call(method, path, self.token, body)
            self.assertEqual(code, 404, (method, path))
        code, body, _ = await s.call("GET", "/servers/detail", self.token)
        self.assertEqual(body["servers"], [])
        code, body, _ = await s.call("GET", "/servers/detail", bob_token)
        self.assertEqual([x["id"] for x in body["servers"]], [theirs.id])

    async def test_server_dict(self):
        """A server shows the reference's fields: API status, task state,
        links on the base URL, flavor and image references, NIC views."""
        s = self.stack
        server = await self._stored_server(
            operstate="STARTED", metadata={"OS": "debian"}, tags=("web",),
            nics=({"id": 7, "network": "snf-net-1", "ip": "10.0.0.5",
                   "mac": "aa:00:00:11:22:33", "firewall": "ENABLED"},))
        code, body, _ = await s.call("GET", f"/servers/{server.id}", self.token)
        d = body["server"]
        self.assertEqual((d["status"], d["SNF:task_state"], d["progress"]), ("ACTIVE", "", 100))
        self.assertEqual((d["user_id"], d["tenant_id"]), (self.alice, self.alice))
        self.assertEqual(d["flavor"]["id"], s.flavors["small"].id)
        self.assertEqual(d["image"]["id"], s.image.id)
        self.assertEqual(d["links"][0]["href"], f"{s.url}/compute/v2.0/servers/{server.id}")
        self.assertEqual(d["addresses"], {"snf-net-1": [
            {"version": 4, "addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"}]})
        self.assertEqual(d["attachments"][0]["firewallProfile"], "ENABLED")
        # Without ports (a NIC Ganeti made by default) it is in no group.
        self.assertEqual((d["metadata"], d["tags"], d["security_groups"]),
                         ({"OS": "debian"}, ["web"], []))
        for key in ("created", "updated", "hostId", "suspended", "deleted", "SNF:rescue",
                    "volumes", "diagnostics", "key_name", "SNF:key_names", "SNF:fqdn",
                    "SNF:port_forwarding", "accessIPv4", "accessIPv6", "config_drive",
                    "shared_to_project"):
            self.assertIn(key, d)
        rebooting = await s.set_server(server.id, task="REBOOT",
                                       backendopcode="OP_INSTANCE_REBOOT",
                                       backendjobstatus="running")
        code, body, _ = await s.call("GET", f"/servers/{rebooting.id}", self.token)
        self.assertEqual((body["server"]["status"], body["server"]["SNF:task_state"]),
                         ("REBOOT", "REBOOTING"))
        code, body, _ = await s.call("GET", "/servers", self.token)
        self.assertEqual(set(body["servers"][0]), {"id", "name", "links"})

    async def test_changes_since(self):
        """changes-since lists servers changed after the time, deleted ones
        included, and answers 304 when nothing changed; a bad time is 400."""
        s = self.stack
        first = await self._stored_server(operstate="STARTED")
        mark = quote(datetime.datetime.now(UTC).isoformat())
        code, _, _ = await s.call("GET", f"/servers/detail?changes-since={mark}", self.token)
        self.assertEqual(code, 304)
        await s.set_server(first.id, deleted=True, operstate="DESTROYED")
        code, body, _ = await s.call("GET", f"/servers/detail?changes-since={mark}",
                                     self.token)
        self.assertEqual(code, 200)
        self.assertEqual([(x["id"], x["status"]) for x in body["servers"]],
                         [(first.id, "DELETED")])
        code, _, _ = await s.call("GET", "/servers?changes-since=yesterday", self.token)
        self.assertEqual(code, 400)

    async def test_name_filter_is_linear_time(self):
        """``?name=`` is a regular expression searched as Nova does, by a
        linear-time engine (RE2): what only a backtracking engine offers
        (backreferences, lookaround), a bad pattern or one over 255
        characters is 400 in Nova's fault JSON, and ``(a+)+$`` over a long
        name that does not match (2**65 paths for a backtracking engine) is
        answered at once."""
        s = self.stack
        short = await s.db.run("t", store.insert_server_txn, self.alice, self.alice,
                               "aaa", s.flavors["small"].id, s.image.id,
                               backend_id=s.backend.id, operstate="STARTED")
        await s.db.run("t", store.insert_server_txn, self.alice, self.alice,
                       "a" * 64 + "!", s.flavors["small"].id, s.image.id,
                       backend_id=s.backend.id, operstate="STARTED")
        for pattern in [r"(a)\1", "(?=a)a", "(?<!b)a", "[a", "a" * 256]:
            code, body, _ = await s.call("GET", f"/servers?name={quote(pattern)}", self.token)
            self.assertEqual(code, 400, pattern)
            self.assertEqual(body["badRequest"]["code"], 400, pattern)
        code, body, _ = await s.call("GET", f"/servers?name={quote('(a+)+$')}", self.token)
        self.assertEqual(code, 200)
        self.assertEqual([x["id"] for x in body["servers"]], [short.id])
        code, body, _ = await s.call("GET", f"/servers?name={quote('^A{3}$|!$')}", self.token)
        self.assertEqual(len(body["servers"]), 1)
        self.assertEqual(body["servers"][0]["name"], "a" * 64 + "!")

    async def test_metadata(self):
        """Metadata merge (201), replace, item get/put/delete and the limit of
        10 items (400); deleted servers' metadata cannot change (404)."""
        s = self.stack
        server = await self._stored_server(operstate="STARTED")
        base = f"/servers/{server.id}/metadata"
        code, body, _ = await s.call("POST", base, self.token, {"metadata": {"a": "1"}})
        self.assertEqual((code, body), (201, {"metadata": {"a": "1"}}))
        code, body, _ = await s.call("PUT", f"{base}/b", self.token, {"meta": {"b": "2"}})
        self.assertEqual((code, body), (201, {"meta": {"b": "2"}}))
        code, body, _ = await s.call("GET", base, self.token)
        self.assertEqual(body, {"metadata": {"a": "1", "b": "2"}})
        code, body, _ = await s.call("GET", f"{base}/a", self.token)
        self.assertEqual(body, {"meta": {"a": "1"}})
        code, _, _ = await s.call("PUT", f"{base}/c", self.token, {"meta": {"d": "2"}})
        self.assertEqual(code, 400)
        code, _, _ = await s.call("DELETE", f"{base}/a", self.token)
        self.assertEqual(code, 204)
        code, _, _ = await s.call("GET", f"{base}/a", self.token)
        self.assertEqual(code, 404)
        many = {f"k{i}": "v" for i in range(10)}
        code, _, _ = await s.call("POST", base, self.token, {"metadata": many})
        self.assertEqual(code, 400)
        code, body, _ = await s.call("PUT", base, self.token, {"metadata": many})
        self.assertEqual((code, len(body["metadata"])), (200, 10))
        await s.set_server(server.id, deleted=True)
        code, _, _ = await s.call("POST", base, self.token, {"metadata": {"x": "y"}})
        self.assertEqual(code, 404)

    async def test_tags_and_rename(self):
        """Tags can be replaced, added one by one (201 new, 204 present),
        checked and removed; a rename is 204."""
        s = self.stack
        server = await self._stored_server(operstate="STOPPED")
        base = f"/servers/{server.id}"
        code, body, _ = await s.call("PUT", f"{base}/tags", self.token, {"tags": ["a", "b"]})
        self.assertEqual((code, body), (200, {"tags": ["a", "b"]}))
        code, _, _ = await s.call("PUT", f"{base}/tags/c", self.token)
        self.assertEqual(code, 201)
        code, _, _ = await s.call("PUT", f"{base}/tags/c", self.token)
        self.assertEqual(code, 204)
        code, _, _ = await s.call("GET", f"{base}/tags/c", self.token)
        self.assertEqual(code, 204)
        code, _, _ = await s.call("DELETE", f"{base}/tags/a", self.token)
        self.assertEqual(code, 204)
        code, body, _ = await s.call("GET", f"{base}/tags", self.token)
        self.assertEqual(body, {"tags": ["b", "c"]})
        code, _, _ = await s.call("DELETE", f"{base}/tags", self.token)
        code, body, _ = await s.call("GET", f"{base}/tags", self.token)
        self.assertEqual(body, {"tags": []})
        code, _, _ = await s.call("PUT", base, self.token, {"server": {"name": "renamed"}})
        self.assertEqual(code, 204)
        self.assertEqual((await s.server(server.id)).name, "renamed")
        code, _, _ = await s.call("PUT", base, self.token, {"server": {"name": ""}})
        self.assertEqual(code, 400)

    async def test_diagnostics_stats_password(self):
        """Diagnostics are listed newest first; stats are 501; without a
        cached password the password is 404."""
        s = self.stack
        server = await self._stored_server(operstate="STARTED")
        for message in ("first", "second"):
            await s.db.run("t", store.add_diagnostic_txn, server.id, "INFO", "image-info",
                           message)
        code, body, _ = await s.call("GET", f"/servers/{server.id}/diagnostics", self.token)
        self.assertEqual([d["message"] for d in body], ["second", "first"])
        code, body, _ = await s.call("GET", f"/servers/{server.id}", self.token)
        self.assertEqual(len(body["server"]["diagnostics"]), 2)
        code, _, _ = await s.call("GET", f"/servers/{server.id}/stats", self.token)
        self.assertEqual(code, 501)
        code, _, _ = await s.call("GET", f"/servers/{server.id}/password", self.token)
        self.assertEqual(code, 404)

    async def test_keypairs(self):
        """Keypairs: upload with a validated key and its MD5 fingerprint,
        generation returns the private key once, names are unique (409),
        bad keys 400, delete 204 then 404."""
        s = self.stack
        code, body, _ = await s.call("POST", "/os-keypairs", self.token,
                                     {"keypair": {"name": "laptop", "public_key": PUBLIC_KEY}})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["keypair"]["fingerprint"], PUBLIC_KEY_MD5)
        self.assertNotIn("private_key", body["keypair"])
        code, _, _ = await s.call("POST", "/os-keypairs", self.token,
                                  {"keypair": {"name": "laptop", "public_key": PUBLIC_KEY}})
        self.assertEqual(code, 409)
        for bad in ("ssh-rsa", "ssh-rsa !!!notbase64", "ssh-foo AAAA",
                    "ssh-rsa " + PUBLIC_KEY.split()[1]):
            code, _, _ = await s.call("POST", "/os-keypairs", self.token,
                                      {"keypair": {"name": "bad", "public_key": bad}})
            self.assertEqual(code, 400, bad)
        code, body, _ = await s.call("POST", "/os-keypairs", self.token,
                                     {"keypair": {"name": "generated"}})
        self.assertEqual(code, 200)
        self.assertIn("BEGIN RSA PRIVATE KEY", body["keypair"]["private_key"])
        self.assertTrue(body["keypair"]["public_key"].startswith("ssh-rsa "))
        code, body, _ = await s.call("GET", "/os-keypairs", self.token)
        self.assertEqual([k["keypair"]["name"] for k in body["keypairs"]],
                         ["generated", "laptop"])
        self.assertNotIn("private_key", body["keypairs"][0]["keypair"])
        code, body, _ = await s.call("GET", "/os-keypairs/laptop", self.token)
        self.assertEqual(body["keypair"]["public_key"], PUBLIC_KEY)
        bob, bob_token = await s.user("bob")
        code, _, _ = await s.call("GET", "/os-keypairs/laptop", bob_token)
        self.assertEqual(code, 404)
        code, _, _ = await s.call("DELETE", "/os-keypairs/laptop", self.token)
        self.assertEqual(code, 204)
        code, _, _ = await s.call("DELETE", "/os-keypairs/laptop", self.token)
        self.assertEqual(code, 404)

    async def test_flavors(self):
        """Flavors list (id, name, links), detail and get with the
        reference's fields; private ones only for their projects; deleted
        ones hidden."""
        s = self.stack
        private = await s.flavor(8, 8192, 8, public=False, access=(self.alice,))
        hidden = await s.flavor(8, 8192, 9, public=False, access=("other",))
        code, body, _ = await s.call("GET", "/flavors", self.token)
        names = {f["name"] for f in body["flavors"]}
        self.assertIn("C1R1024D2file", names)
        self.assertIn(private.name, names)
        self.assertNotIn(hidden.name, names)
        self.assertEqual(set(body["flavors"][0]), {"id", "name", "links"})
        code, body, _ = await s.call("GET", "/flavors/detail", self.token)
        small = next(f for f in body["flavors"] if f["id"] == s.flavors["small"].id)
        self.assertEqual(
            {k: small[k] for k in ("ram", "vcpus", "disk", "SNF:disk_template",
                                   "SNF:allow_create", "os-flavor-access:is_public")},
            {"ram": 1024, "vcpus": 1, "disk": 2, "SNF:disk_template": "file",
             "SNF:allow_create": True, "os-flavor-access:is_public": True})
        code, body, _ = await s.call("GET", f"/flavors/{s.flavors['small'].id}", self.token)
        self.assertEqual(body["flavor"]["name"], "C1R1024D2file")
        for missing in (str(hidden.id), "9999", "C1R1024D2file"):
            code, _, _ = await s.call("GET", f"/flavors/{missing}", self.token)
            self.assertEqual(code, 404)

    async def test_images(self):
        """The compute images view lists the images the user sees."""
        s = self.stack
        mine = await s.add_image(self.alice, "mine", public=False)
        carol, _ = await s.user("carol")
        await s.add_image(carol, "theirs", public=False)
        code, body, _ = await s.call("GET", "/images/detail", self.token)
        self.assertEqual({i["name"] for i in body["images"]}, {"Debian Bookworm", "mine"})
        code, body, _ = await s.call("GET", f"/images/{mine.id}", self.token)
        self.assertEqual((body["image"]["status"], body["image"]["metadata"]),
                         ("ACTIVE", {"OS": "debian"}))
        code, body, _ = await s.call("GET", f"/images/{mine.id}/metadata/OS", self.token)
        self.assertEqual(body, {"meta": {"OS": "debian"}})

    async def test_image_metadata_writes(self):
        """The owner merges, replaces, sets and deletes an image's properties
        through the compute view; another user cannot; a missing image or
        key is 404."""
        s = self.stack
        mine = await s.add_image(self.alice, "mine", public=False)
        path = f"/images/{mine.id}/metadata"
        code, body, _ = await s.call("POST", path, self.token, {"metadata": {"arch": "x86"}})
        self.assertEqual((code, body), (200, {"metadata": {"OS": "debian", "arch": "x86"}}))
        code, body, _ = await s.call("PUT", path, self.token, {"metadata": {"arch": "arm"}})
        self.assertEqual((code, body), (200, {"metadata": {"arch": "arm"}}))
        code, body, _ = await s.call("PUT", f"{path}/kernel", self.token,
                                     {"meta": {"kernel": "6.1"}})
        self.assertEqual((code, body), (200, {"meta": {"kernel": "6.1"}}))
        code, _, _ = await s.call("DELETE", f"{path}/arch", self.token)
        self.assertEqual(code, 204)
        _, body, _ = await s.call("GET", path, self.token)
        self.assertEqual(body, {"metadata": {"kernel": "6.1"}})
        for method, where in (("DELETE", f"{path}/arch"), ("POST", "/images/nope/metadata")):
            code, _, _ = await s.call(method, where, self.token, {"metadata": {"a": "b"}})
            self.assertEqual(code, 404, where)
        carol, carol_token = await s.user("carol")
        code, _, _ = await s.call("POST", path, carol_token, {"metadata": {"a": "b"}})
        self.assertEqual(code, 404)

    async def test_server_params_not_found(self):
        """Unknown server-params keys are 404 without a token."""
        code, _, _ = await self.stack.call("GET", f"{self.stack.url}/vmapi/server-params/x")
        self.assertEqual(code, 404)
