"""The compute effect path against the Ganeti simulator
(``snfd.cyclades.servers``): what a create sends to Ganeti and charges,
the one-use build parameters, and the action protocol (task, serial, job
id) carried through to the update path, with quota moved exactly."""

from __future__ import annotations

import base64
import json
import time

from twisted.internet import threads
from twisted.trial import unittest

from snfd.cyclades import allocator, store
from snfd.testing.compute import compute_stack

GiB = 1 << 30
MiB = 1 << 20
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ/bzaETcgVB2/7hNQ/oj5EoNl1c/uLHISA2CVbx1MwQ"
    " alice@example.org")


def usage(cpu=0, ram=0, vm=0, total_cpu=0, total_ram=0, disk=0, networks=0, ips=0):
    return {"cyclades.cpu": cpu, "cyclades.ram": ram * MiB, "cyclades.vm": vm,
            "cyclades.total_cpu": total_cpu, "cyclades.total_ram": total_ram * MiB,
            "cyclades.disk": disk * GiB, "cyclades.network.private": networks,
            "cyclades.floating_ip": ips}


class ServerTestCase(unittest.TestCase):
    async def setUp(self) -> None:
        self.stack = await compute_stack(self)
        self.alice, self.token = await self.stack.user("alice")

    async def create(self, **over) -> dict:
        s = self.stack
        body = {"name": "vm1", "flavorRef": s.flavors["small"].id, "imageRef": s.image.id}
        body.update(over)
        code, reply, _ = await s.call("POST", "/servers", self.token, {"server": body})
        self.assertEqual(code, 202, reply)
        return reply["server"]

    async def active(self, **over) -> int:
        """A created server the update path has seen become ACTIVE."""
        created = await self.create(**over)
        await self.stack.follow((await self.stack.server(created["id"])).backendjobid)
        server = await self.stack.server(created["id"])
        self.assertEqual((server.operstate, server.task), ("STARTED", ""))
        return int(created["id"])

    async def act(self, server_id: int, action: dict, expected: int = 202):
        code, body, _ = await self.stack.call("POST", f"/servers/{server_id}/action",
                                              self.token, action)
        self.assertEqual(code, expected, body)
        return body


class CreateTests(ServerTestCase):
    async def test_create_charges_and_submits(self):
        """A create answers 202 BUILD/BUILDING with the admin password,
        charges exactly the flavor (accepted at once: nothing pending),
        records the job, and sends Ganeti the reference's parameters with
        only the config URL, image id and format as OS parameters."""
        s = self.stack
        created = await self.create(adminPass="Secret12345", metadata={"OS": "debian"},
                                    min_count=1, max_count=1)
        self.assertEqual((created["status"], created["SNF:task_state"], created["adminPass"]),
                         ("BUILD", "BUILDING", "Secret12345"))
        self.assertEqual(await s.usage(self.alice),
                         usage(cpu=1, ram=1024, vm=1, total_cpu=1, total_ram=1024, disk=2))
        self.assertEqual(await s.pending(), [])
        server = await s.server(created["id"])
        self.assertEqual((server.task, server.task_job_id, server.serial),
                         ("BUILD", server.backendjobid, None))
        backend = await s.db.run("t", store.backend_txn, s.backend.id)
        self.assertGreater(backend.stats_updated.year, 2000)
        job = await s.rapi_client().wait_job(server.backendjobid, poll=0.02, timeout=30)
        self.assertEqual(job["status"], "success")
        (op,) = job["ops"]
        self.assertEqual((op["OP_ID"], op["instance_name"], op["disk_template"]),
                         ("OP_INSTANCE_CREATE", f"snf-{server.id}", "file"))
        self.assertEqual(op["disks"], [{"size": 2048}])
        self.assertEqual((op["beparams"]["vcpus"], op["beparams"]["auto_balance"]), (1, True))
        self.assertEqual(op["os_type"], "snf-image+default")
        self.assertEqual(set(op["osparams"]), {"config_url", "img_id", "img_format"})
        self.assertTrue(op["osparams"]["config_url"].startswith(f"{s.url}/vmapi/server-params/"))
        self.assertEqual((op["osparams"]["img_id"], op["osparams"]["img_format"]),
                         (s.image.mapfile, "diskdump"))
        self.assertEqual(len(op["nics"]), 1)
        self.assertNotIn("Secret12345", json.dumps(job))
        self.assertIn(f"snf-{server.id}", s.sim.instances)

    async def test_server_params_once(self):
        """snf-image's parameters (password, personality, keys, image) are
        served once from the config URL, without a token, then 404; the
        password stays readable through the API for a while."""
        s = self.stack
        code, _, _ = await s.call("POST", "/os-keypairs", self.token,
                                  {"keypair": {"name": "k", "public_key": PUBLIC_KEY}})
        contents = base64.b64encode(b"hello").decode()
        created = await self.create(
            key_name="k", user_data=base64.b64encode(b"#cloud-config").decode(),
            personality=[{"path": "/etc/motd", "contents": contents, "mode": 0o644}])
        server = await s.server(created["id"])
        job = await s.rapi_client().job(server.backendjobid)
        config_url = job["ops"][0]["osparams"]["config_url"]
        code, params, _ = await s.call("GET", config_url)
        self.assertEqual(code, 200)
        self.assertEqual(params["img_passwd"], created["adminPass"])
        self.assertEqual(params["auth_keys"], PUBLIC_KEY)
        self.assertEqual(json.loads(params["img_personality"]),
                         [{"path": "/etc/motd", "contents": contents, "mode": 420}])
        self.assertEqual(json.loads(params["img_properties"]), {"OS": "debian"})
        self.assertEqual((params["img_id"], params["img_format"]), (s.image.mapfile, "diskdump"))
        self.assertIn("cloud_userdata", params)
        code, _, _ = await s.call("GET", config_url)
        self.assertEqual(code, 404)
        code, body, _ = await s.call("GET", f"/servers/{server.id}/password", self.token)
        self.assertEqual((code, body), (200, {"password": created["adminPass"]}))
        self.assertEqual(created["SNF:key_names"], ["k"])

    async def _config_url(self, server_id) -> str:
        server = await self.stack.server(server_id)
        job = await self.stack.rapi_client().job(server.backendjobid)
        return str(job["ops"][0]["osparams"]["config_url"])

    async def test_server_params_expire_on_build_completion(self):
        """Build parameters never fetched are dropped when the update path
        sees the create job end: the config URL is 404 afterwards, while
        the password stays readable through the API for a while."""
        s = self.stack
        created = await self.create()
        config_url = await self._config_url(created["id"])
        await s.follow((await s.server(created["id"])).backendjobid)
        code, _, _ = await s.call("GET", config_url)
        self.assertEqual(code, 404)
        code, body, _ = await s.call("GET", f"/servers/{created['id']}/password", self.token)
        self.assertEqual((code, body), (200, {"password": created["adminPass"]}))

    async def test_server_params_expire_on_delete(self):
        """Deleting a server drops its build parameters and its cached
        admin password: neither the config URL recorded in the Ganeti job
        nor the password API gives the password of a deleted server."""
        s = self.stack
        created = await self.create()
        config_url = await self._config_url(created["id"])
        # The update path saw the build start (delete is refused before).
        await s.set_server(created["id"], backendjobstatus="running")
        code, body, _ = await s.call("DELETE", f"/servers/{created['id']}", self.token)
        self.assertEqual(code, 204, body)
        code, _, _ = await s.call("GET", config_url)
        self.assertEqual(code, 404)
        code, _, _ = await s.call("GET", f"/servers/{created['id']}/password", self.token)
        self.assertEqual(code, 404)

    async def test_networks_choices(self):
        """``networks`` absent, [] or "auto" give the default NIC; "none"
        gives none."""
        s = self.stack
        for networks, nics in (([], 1), ("auto", 1), ("none", 0)):
            created = await self.create(networks=networks)
            server = await s.server(created["id"])
            job = await s.rapi_client().job(server.backendjobid)
            self.assertEqual(len(job["ops"][0]["nics"]), nics, networks)

    async def test_delete_while_queued(self):
        """A server whose create job still waits in Ganeti's queue is
        deleted at once (204, as Nova deletes a building server): the
        remove job waits for the create job, then removes the instance;
        the server ends DESTROYED and its quota is given back."""
        s = self.stack
        before = await s.usage(self.alice)
        s.sim.hold_queue()
        created = await self.create()
        server = await s.server(created["id"])
        code, body, _ = await s.call("DELETE", f"/servers/{created['id']}", self.token)
        self.assertEqual(code, 204, body)
        remove = (await s.server(created["id"])).task_job_id
        # Deleted again while its removal waits: 204, no second job or release.
        pending = await s.pending()
        code, body, _ = await s.call("DELETE", f"/servers/{created['id']}", self.token)
        self.assertEqual(code, 204, body)
        self.assertEqual(((await s.server(created["id"])).task_job_id, await s.pending()),
                         (remove, pending))
        job = await s.rapi_client().job(remove)
        self.assertEqual(job["ops"][0]["depends"], [[server.backendjobid, []]])
        s.sim.release_queue()
        await s.follow(remove)
        server = await s.server(created["id"])
        self.assertEqual((server.operstate, server.deleted, server.task),
                         ("DESTROYED", True, ""))
        self.assertEqual(await s.usage(self.alice), before)
        self.assertEqual(await s.rapi_client().instances(), [])

    async def test_delete_while_running(self):
        """A server whose create job runs is removed by a job that waits
        for the create (the instance appears at its end)."""
        s = self.stack
        s.sim.hold_queue()
        created = await self.create()
        server = await s.server(created["id"])
        await s.set_server(created["id"], backendjobstatus="running")
        code, body, _ = await s.call("DELETE", f"/servers/{created['id']}", self.token)
        self.assertEqual(code, 204, body)
        remove = (await s.server(created["id"])).task_job_id
        job = await s.rapi_client().job(remove)
        self.assertEqual(job["ops"][0]["depends"], [[server.backendjobid, []]])
        s.sim.release_queue()
        await s.follow(remove)
        self.assertEqual(await s.rapi_client().instances(), [])

    async def test_no_backend(self):
        """Without a usable backend a create is 503 and nothing is charged."""
        s = self.stack
        await s.db.run("t", store.update_backend_txn, s.backend.id, drained=True)
        code, body, _ = await s.call("POST", "/servers", self.token, {"server": {
            "name": "x", "flavorRef": s.flavors["small"].id, "imageRef": s.image.id}})
        self.assertEqual(code, 503)
        self.assertIn("No Ganeti backend", body["serviceUnavailable"]["message"])
        self.assertEqual(await s.usage(self.alice), usage())
        self.assertEqual(await s.pending(), [])

    async def test_refresh_stats(self):
        """Backend statistics are refreshed from the cluster's nodes."""
        s = self.stack
        backend = await s.db.run("t", store.backend_txn, s.backend.id)
        fresh = await allocator.refresh_stats(s.db, s.rapi, backend, 60)
        nodes = await s.rapi_client().nodes()
        self.assertEqual((fresh.mtotal, fresh.ctotal), (nodes[0]["mtotal"], nodes[0]["ctotal"]))
        self.assertEqual(await allocator.refresh_stats(s.db, s.rapi, fresh, 60), fresh)


class ActionTests(ServerTestCase):
    async def test_lifecycle_quota(self):
        """stop, start, reboot, resize and delete each record their task and
        job, move quota exactly as the reference says once the update path
        sees the job finish, and leave nothing pending."""
        s = self.stack
        sid = await self.active()
        full = usage(cpu=1, ram=1024, vm=1, total_cpu=1, total_ram=1024, disk=2)
        self.assertEqual(await s.usage(self.alice), full)

        await self.act(sid, {"os-stop": None})
        server = await s.server(sid)
        self.assertEqual((server.task, server.action), ("STOP", "STOP"))
        self.assertIsNotNone(server.serial)
        self.assertIsNotNone(server.task_job_id)
        code, body, _ = await s.call("GET", f"/servers/{sid}", self.token)
        self.assertEqual(body["server"]["SNF:task_state"], "STOPPING")
        await self.act(sid, {"os-start": None}, 400)   # a task is running
        await s.follow(server.task_job_id)
        server = await s.server(sid)
        self.assertEqual((server.operstate, server.task, server.serial), ("STOPPED", "", None))
        self.assertEqual(await s.usage(self.alice),
                         usage(vm=1, total_cpu=1, total_ram=1024, disk=2))

        big = s.flavors["big"]
        await self.act(sid, {"resize": {"flavorRef": big.id}})
        server = await s.server(sid)
        job = await s.follow(server.task_job_id)
        self.assertEqual(job["ops"][0]["beparams"],
                         {"vcpus": 2, "minmem": 2048, "maxmem": 2048})
        self.assertEqual((await s.server(sid)).flavor.id, big.id)
        self.assertEqual(await s.usage(self.alice),
                         usage(vm=1, total_cpu=2, total_ram=2048, disk=2))

        await self.act(sid, {"start": {}})
        await s.follow((await s.server(sid)).task_job_id)
        self.assertEqual(await s.usage(self.alice),
                         usage(cpu=2, ram=2048, vm=1, total_cpu=2, total_ram=2048, disk=2))

        await self.act(sid, {"reboot": {"type": "HARD"}})
        job = await s.follow((await s.server(sid)).task_job_id)
        self.assertEqual(job["ops"][0]["OP_ID"], "OP_INSTANCE_REBOOT")
        self.assertEqual((job["ops"][0]["reboot_type"], job["ops"][0]["shutdown_timeout"]),
                         ("hard", 0))

        code, _, _ = await s.call("DELETE", f"/servers/{sid}", self.token)
        self.assertEqual(code, 204)
        server = await s.server(sid)
        self.assertEqual(server.task, "DESTROY")
        await s.follow(server.task_job_id)
        code, body, _ = await s.call("GET", f"/servers/{sid}", self.token)
        self.assertEqual(body["server"]["status"], "DELETED")
        self.assertEqual(await s.usage(self.alice), usage())
        self.assertEqual(await s.pending(), [])
        self.assertNotIn(f"snf-{sid}", s.sim.instances)

    async def test_failed_job_rejects(self):
        """When Ganeti fails the task's job the commission is rejected and
        quota stays as it was."""
        s = self.stack
        sid = await self.active()
        before = await s.usage(self.alice)
        s.sim.fail_next("OP_INSTANCE_SHUTDOWN")
        await self.act(sid, {"shutdown": {}})
        job = await s.follow((await s.server(sid)).task_job_id)
        self.assertEqual(job["status"], "error")
        server = await s.server(sid)
        self.assertEqual((server.operstate, server.task), ("STARTED", ""))
        self.assertEqual(await s.usage(self.alice), before)
        self.assertEqual(await s.pending(), [])

    async def test_console(self):
        """A console needs an ACTIVE server (409); a hypervisor without VNC
        (the simulator's fake one answers a message) is 501 with that message."""
        created = await self.create()
        await self.act(created["id"], {"console": {"type": "vnc"}}, 409)
        sid = await self.active()
        body = await self.act(sid, {"console": {"type": "vnc"}}, 501)
        self.assertIn("Console not available", body["notImplemented"]["message"])

    async def test_firewall(self):
        """A firewall profile becomes the NIC's instance tag in Ganeti."""
        s = self.stack
        sid = await self.active()
        server = await s.server(sid)
        self.assertTrue(server.nics, "the update path synced no NICs")
        nic = server.nics[0]
        await self.act(sid, {"firewallProfile": {"profile": "ENABLED", "nic": nic["id"]}})
        # The pending change is shown, so a client can wait for its end.
        nova = f"{s.url}/compute/v2.1/servers/{sid}"   # Nova's dialect
        code, body, _ = await s.call("GET", f"/servers/{sid}", self.token)
        self.assertEqual(body["server"]["SNF:task_state"], "SETTING_FIREWALL")
        code, body, _ = await s.call("GET", nova, self.token)
        self.assertEqual(body["server"]["OS-EXT-STS:task_state"], "setting_firewall")
        await s.follow((await s.server(sid)).task_job_id)
        code, body, _ = await s.call("GET", f"/servers/{sid}", self.token)
        self.assertEqual(body["server"]["SNF:task_state"], "")
        code, body, _ = await s.call("GET", nova, self.token)
        self.assertIsNone(body["server"]["OS-EXT-STS:task_state"])
        key = nic.get("uuid") or nic.get("name") or nic.get("id")
        tags = s.sim.instances[f"snf-{sid}"].tags
        self.assertIn(f"synnefo:network:{key}:protected", tags)
        await self.act(sid, {"firewallProfile": {"profile": "PROTECTED", "nic": nic["id"]}})
        await s.follow((await s.server(sid)).task_job_id)
        tags = s.sim.instances[f"snf-{sid}"].tags
        self.assertIn(f"synnefo:network:{key}:limited", tags)
        self.assertNotIn(f"synnefo:network:{key}:protected", tags)
        await self.act(sid, {"firewallProfile": {"profile": "OPEN", "nic": nic["id"]}}, 400)

    async def test_reassign(self):
        """Reassigning moves the server's whole quota to the new project in
        one accepted commission; a project without quota for the user is
        refused and nothing moves."""
        s = self.stack
        sid = await self.active()
        await s.set_limits(self.alice, "proj2")
        await self.act(sid, {"reassign": {"project": "proj2", "shared_to_project": True}},
                       200)
        full = usage(cpu=1, ram=1024, vm=1, total_cpu=1, total_ram=1024, disk=2)
        self.assertEqual(await s.usage(self.alice), usage())
        self.assertEqual(await s.usage(self.alice, "proj2"), full)
        code, body, _ = await s.call("GET", f"/servers/{sid}", self.token)
        self.assertEqual((body["server"]["tenant_id"], body["server"]["shared_to_project"]),
                         ("proj2", True))
        code, _, _ = await s.call("POST", f"/servers/{sid}/action", self.token,
                                  {"reassign": {"project": "nowhere"}})
        self.assertEqual(code, 404)
        self.assertEqual(await s.usage(self.alice, "proj2"), full)
        self.assertEqual(await s.pending(), [])

    async def test_quota_for_start(self):
        """Starting needs online quota: beyond it the start is 413 and
        nothing changes."""
        s = self.stack
        sid = await self.active()
        await self.act(sid, {"os-stop": None})
        await s.follow((await s.server(sid)).task_job_id)
        await s.quota.set_limit(f"user:{self.alice}", f"project:{self.alice}",
                                "cyclades.cpu", 0)
        await self.act(sid, {"os-start": None}, 413)
        server = await s.server(sid)
        self.assertEqual((server.operstate, server.task), ("STOPPED", ""))
        self.assertEqual(await s.pending(), [])


class OpenStackSDKTests(ServerTestCase):
    async def test_sdk_compute_proxy(self):
        """openstacksdk's compute proxy works against the API: flavors (also
        found by name), keypair generation, a create shaped as
        ``openstack server create`` sends it at microversion 2.1, show,
        list, stop, start, reboot and delete until DELETED."""
        from keystoneauth1 import session, token_endpoint
        from openstack import connection

        s = self.stack
        box: dict = {}

        def compute():
            # Built and used only in worker threads: the SDK blocks.
            if "conn" not in box:
                box["conn"] = connection.Connection(
                    session=session.Session(auth=token_endpoint.Token(s.compute, self.token)),
                    compute_endpoint_override=s.compute)
            return box["conn"].compute

        def create():
            flavor = compute().find_flavor("C1R1024D2file", ignore_missing=False)
            keypair = compute().create_keypair(name="sdk")
            server = compute().create_server(name="sdk-vm", image_id=s.image.id,
                                           flavor_id=flavor.id, min_count=1, max_count=1,
                                           networks=[], key_name="sdk")
            return flavor, keypair, server

        flavor, keypair, server = await threads.deferToThread(create)
        self.assertEqual(flavor.id, s.flavors["small"].id)
        self.assertIn("PRIVATE KEY", keypair.private_key)
        self.assertEqual((server.status, len(server.admin_password)), ("BUILD", 12))
        await s.follow((await s.server(server.id)).backendjobid)

        def check():
            shown = compute().get_server(server.id)
            listed = [x.name for x in compute().servers()]
            compute().stop_server(server.id)
            return shown, listed

        shown, listed = await threads.deferToThread(check)
        self.assertEqual((shown.status, shown.key_name, listed), ("ACTIVE", "sdk", ["sdk-vm"]))
        for step in (lambda: compute().start_server(server.id),
                     lambda: compute().reboot_server(server.id, "SOFT"),
                     lambda: compute().delete_server(server.id)):
            await s.follow((await s.server(server.id)).task_job_id)
            await threads.deferToThread(step)
        await s.follow((await s.server(server.id)).task_job_id)
        gone = await threads.deferToThread(
            lambda: compute().wait_for_delete(compute().get_server(server.id), wait=30))
        self.assertEqual(gone.status, "DELETED")
        self.assertEqual(await s.usage(self.alice), usage())


class BuildReportTests(ServerTestCase):
    async def test_build_reports(self):
        """snf-image reports to ``img_progress_url`` of its parameters,
        without a token: copy progress raises the build percentage, the
        other reports become the server's diagnostics (what its owner is
        told of an image deployed but not customized); a malformed report
        or one far from now is 400, an unknown key 404, and a key serves
        a bounded number of reports."""
        s = self.stack
        created = await self.create()
        server = await s.server(created["id"])
        job = await s.rapi_client().job(server.backendjobid)
        _, params, _ = await s.call("GET", job["ops"][0]["osparams"]["config_url"])
        url = params["img_progress_url"]
        self.assertTrue(url.startswith(f"{s.url}/vmapi/server-progress/"))
        await s.follow(server.backendjobid)
        # As if the build were still running (its job's events all applied).
        await s.set_server(server.id, operstate="BUILD", buildpercentage=10)
        now = time.time()

        def report(kind: str, **fields: object) -> dict[str, object]:
            return {"type": kind, "event_time": [int(now) + 1, 0], **fields}

        code, body, _ = await s.call("POST", url, body=report("image-copy-progress",
                                                              progress=40))
        self.assertEqual(code, 204, body)
        self.assertEqual((await s.server(server.id)).buildpercentage, 40)
        code, body, _ = await s.call("POST", url, body={**report(
            "image-warning", messages=["The image was deployed but not customized."]),
            "event_time": [int(now) + 2, 0]})
        self.assertEqual(code, 204, body)
        code, body, _ = await s.call("GET", f"/servers/{server.id}", self.token)
        self.assertEqual([(d["level"], d["source"], d["message"])
                          for d in body["server"]["diagnostics"]],
                         [("WARNING", "image-warning",
                           "The image was deployed but not customized.")])
        for bad in ({"type": "image-copy-progress"}, report("job-status"),
                    report("image-copy-progress", progress="x"),
                    {**report("image-info", messages=["x"]), "event_time": [0, 0]}):
            code, body, _ = await s.call("POST", url, body=bad)
            self.assertEqual(code, 400, (bad, body))
        code, _, _ = await s.call("POST", f"{s.url}/vmapi/server-progress/nothing",
                                  body=report("image-info", messages=["x"]))
        self.assertEqual(code, 404)
        key = url.rsplit("/", 1)[1]
        used = await s.db.run("t", lambda txn: txn.execute(
            "SELECT reports FROM cyclades_progress_keys WHERE key = %s", (key,))
            or txn.fetchone()[0])
        self.assertEqual(used, 6)
        self.assertEqual(await s.db.run("t", store.use_progress_key_txn, key, 7), server.id)
        self.assertIsNone(await s.db.run("t", store.use_progress_key_txn, key, 7))
