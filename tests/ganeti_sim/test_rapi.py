"""The simulator's RAPI transport and read-only answers: TLS pinned to its
certificate, basic auth on every path, Ganeti's error bodies and status
codes, and the cluster, node and job views."""

from __future__ import annotations

from twisted.trial import unittest

from snfd.httpclient import OutboundError
from snfd.testing.tls import self_signed
from tests.ganeti_sim.support import call, client, started


class AuthTests(unittest.TestCase):
    async def test_version_needs_credentials(self) -> None:
        """Without credentials even /version answers 401 with Ganeti's body
        and a Basic challenge."""
        cluster = await started(self)
        rapi = client(self, cluster)
        response = await rapi.request("GET", "/version", headers={"Authorization": "Bearer x"})
        self.assertEqual(response.status, 401)
        self.assertEqual(response.json(), {
            "code": 401, "message": "Unauthorized",
            "explain": "No permission -- see authorization schemes"})
        self.assertEqual(response.headers.getRawHeaders("www-authenticate"),
                         ['Basic realm="Ganeti Remote API"'])

    async def test_wrong_password_is_refused(self) -> None:
        """A wrong password gets 401 on any path, writes included, and no
        job is created."""
        cluster = await started(self)
        bad = client(self, cluster, password="wrong")
        for method, path in (("GET", "/2/info"), ("PUT", "/2/instances/x/startup"),
                             ("GET", "/2/jobs/1")):
            status, body = await call(bad, method, path)
            self.assertEqual((status, body["code"]), (401, 401))
        status, jobs = await call(client(self, cluster), "GET", "/2/jobs")
        self.assertEqual([j["id"] for j in jobs], [1])

    async def test_right_credentials(self) -> None:
        """With the configured user /version answers the bare integer 2."""
        cluster = await started(self, username="u", password="p4ss")
        self.assertEqual(await call(client(self, cluster), "GET", "/version"), (200, 2))


class TLSTests(unittest.TestCase):
    async def test_pinned_certificate_with_hostname(self) -> None:
        """The certificate names 127.0.0.1, so a client that pins it and
        checks the host name connects."""
        cluster = await started(self)
        rapi = client(self, cluster, verify_hostname=True)
        self.assertEqual(await call(rapi, "GET", "/version"), (200, 2))
        self.assertIn("BEGIN CERTIFICATE", cluster.certificate)
        self.assertNotIn("PRIVATE KEY", cluster.certificate)

    async def test_other_certificate_is_refused(self) -> None:
        """A client that trusts another certificate refuses the connection."""
        cluster = await started(self)
        other, _ = self_signed("127.0.0.1")
        rapi = client(self, cluster, certificate=other.decode())
        with self.assertRaises(OutboundError) as caught:
            await rapi.request("GET", "/version")
        self.assertIn("TLS", caught.exception.reason)


class ErrorTests(unittest.TestCase):
    async def test_unknown_path(self) -> None:
        """Unknown paths and instances answer 404 "Not Found"."""
        cluster = await started(self)
        rapi = client(self, cluster)
        for path in ("/2/nosuch", "/2/instances/nosuch", "/2/nodes/nosuch", "/2/jobs/abc"):
            self.assertEqual(await call(rapi, "GET", path), (404, {
                "code": 404, "message": "Not Found",
                "explain": "Nothing matches the given URI"}))

    async def test_wrong_method(self) -> None:
        """A known path with another method answers 501 naming both."""
        rapi = client(self, await started(self))
        status, body = await call(rapi, "POST", "/2/info", {})
        self.assertEqual(status, 501)
        self.assertEqual(body["message"], "Method POST is unsupported for path /2/info")
        self.assertEqual(body["explain"], "Server does not support this operation")

    async def test_unimplemented_resource(self) -> None:
        """Ganeti resources the simulator lacks answer 501, not 404."""
        rapi = client(self, await started(self))
        status, body = await call(rapi, "PUT", "/2/networks/snf-net-1/modify", {})
        self.assertEqual(status, 501)
        self.assertIn("does not implement", body["message"])

    async def test_body_needs_json_content_type(self) -> None:
        """A body that is not application/json answers 415."""
        rapi = client(self, await started(self))
        response = await rapi.request("POST", "/2/instances", data=b'{"__version__": 1}',
                                      headers={"Content-Type": "text/plain"})
        self.assertEqual(response.status, 415)
        self.assertEqual(response.json()["message"], "Unsupported Media Type")

    async def test_malformed_body(self) -> None:
        """Unparsable JSON answers 400 "Unable to parse JSON data"."""
        rapi = client(self, await started(self))
        response = await rapi.request("PUT", "/2/instances/x/shutdown", data=b"{bad",
                                      headers={"Content-Type": "application/json"})
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json()["message"], "Unable to parse JSON data")

    async def test_invalid_parameters(self) -> None:
        """Bad or missing parameters answer 400 with Ganeti's HTML-escaped
        text, and no job is created."""
        cluster = await started(self)
        rapi = client(self, cluster)
        status, body = await call(rapi, "PUT", "/2/instances/x/shutdown", {"bogus": 1})
        self.assertEqual(status, 400)
        self.assertEqual(body["message"], "Invalid body parameters: Object OpInstanceShutdown"
                                          " doesn&#x27;t support the parameter &#x27;bogus&#x27;")
        status, body = await call(rapi, "POST", "/2/instances",
                                  {"__version__": 1, "mode": "create"})
        self.assertEqual(status, 400)
        self.assertIn("OP_INSTANCE_CREATE.instance_name&#x27; fails validation",
                      body["message"])
        status, body = await call(rapi, "POST", "/2/instances/x/reboot?type=weird")
        self.assertEqual(status, 400)
        self.assertEqual(await call(rapi, "GET", "/2/jobs"),
                         (200, [{"id": 1, "uri": "/2/jobs/1"}]))

    async def test_create_versions(self) -> None:
        """Create bodies without ``__version__`` or with another version are
        refused with 400."""
        rapi = client(self, await started(self))
        self.assertEqual((await call(rapi, "POST", "/2/instances", {"mode": "create"}))[1][
            "message"], "Instance creation request version 0 is no longer supported")
        self.assertEqual((await call(rapi, "POST", "/2/instances", {"__version__": 2}))[1][
            "message"], "Unsupported request data version 2")
        status, body = await call(rapi, "POST", "/2/instances", [1])
        self.assertEqual(status, 400)
        self.assertIn("but &#x27;dict&#x27; is expected", body["message"])


class ViewTests(unittest.TestCase):
    async def test_info_and_features(self) -> None:
        """/2/info names the cluster and its settings; /2/features
        includes instance-create-reqv1."""
        cluster = await started(self, max_running_jobs=7, disk_templates=("file", "drbd"))
        rapi = client(self, cluster)
        status, info = await call(rapi, "GET", "/2/info")
        self.assertEqual(status, 200)
        self.assertEqual(info["name"], "sim.ganeti.test")
        self.assertEqual(info["master"], "node1.sim.ganeti.test")
        self.assertEqual(info["max_running_jobs"], 7)
        self.assertEqual(info["enabled_disk_templates"], ["file", "drbd"])
        self.assertEqual(info["enabled_hypervisors"], ["fake"])
        self.assertEqual(info["software_version"], "3.0.2")
        status, features = await call(rapi, "GET", "/2/features")
        self.assertIn("instance-create-reqv1", features)

    async def test_nodes(self) -> None:
        """/2/nodes lists ids and uris; bulk gives the resources Cyclades
        reads, from the configured node sizes."""
        cluster = await started(self, nodes=2, node_memory=4096, node_disk=20480,
                                node_cpus=4)
        rapi = client(self, cluster)
        self.assertEqual(await call(rapi, "GET", "/2/nodes"), (200, [
            {"id": "node1.sim.ganeti.test", "uri": "/2/nodes/node1.sim.ganeti.test"},
            {"id": "node2.sim.ganeti.test", "uri": "/2/nodes/node2.sim.ganeti.test"}]))
        status, nodes = await call(rapi, "GET", "/2/nodes?bulk=1")
        self.assertEqual(status, 200)
        for node in nodes:
            self.assertEqual(
                {k: node[k] for k in ("mtotal", "mfree", "dtotal", "dfree", "ctotal",
                                      "pinst_cnt", "sinst_cnt", "vm_capable", "drained",
                                      "offline")},
                {"mtotal": 4096, "mfree": 4096, "dtotal": 20480, "dfree": 20480, "ctotal": 4,
                 "pinst_cnt": 0, "sinst_cnt": 0, "vm_capable": True, "drained": False,
                 "offline": False})
        self.assertEqual([n["role"] for n in nodes], ["M", "C"])
        status, one = await call(rapi, "GET", "/2/nodes/node2.sim.ganeti.test")
        self.assertEqual(one, {**nodes[1], "secondary_ip": nodes[1]["sip"]})

    async def test_unknown_job_is_all_null(self) -> None:
        """An unknown job id answers 200 with every field null."""
        rapi = client(self, await started(self))
        self.assertEqual(await call(rapi, "GET", "/2/jobs/999"), (200, {
            "id": 999, "ops": None, "status": None, "summary": None, "opstatus": None,
            "received_ts": None, "start_ts": None, "end_ts": None, "oplog": None,
            "opresult": None}))

    async def test_new_cluster_has_init_job(self) -> None:
        """A new cluster has job 1, the finished cluster initialisation."""
        rapi = client(self, await started(self))
        status, job = await call(rapi, "GET", "/2/jobs/1")
        self.assertEqual((job["status"], job["summary"], job["opresult"]),
                         ("success", ["CLUSTER_POST_INIT"], [True]))

    async def test_os_list(self) -> None:
        """/2/os lists the OSes with their variants (it runs a job)."""
        cluster = await started(self, oses=("noop+default", "snf-image+default"))
        rapi = client(self, cluster)
        self.assertEqual(await call(rapi, "GET", "/2/os"),
                         (200, ["noop+default", "snf-image+default"]))
        status, jobs = await call(rapi, "GET", "/2/jobs?bulk=1")
        self.assertEqual(jobs[-1]["summary"], ["OS_DIAGNOSE"])
        self.assertNotIn("oplog", jobs[-1])

    async def test_unknown_instance_subresources(self) -> None:
        """Tags and console of an unknown instance answer the 500s Ganeti
        3.0.2 gives."""
        rapi = client(self, await started(self))
        status, body = await call(rapi, "GET", "/2/instances/nosuch/tags")
        self.assertEqual(status, 500)
        self.assertEqual(body["message"],
                         "(&#x27;Instance name nosuch not found&#x27;, &#x27;unknown_entity&#x27;)")
        status, body = await call(rapi, "GET", "/2/instances/nosuch/console")
        self.assertEqual((status, body["message"]), (500, "list index out of range"))
