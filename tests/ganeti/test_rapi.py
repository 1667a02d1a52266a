"""The Ganeti RAPI client (``snfd.ganeti.rapi``) against an in-test HTTPS
RAPI on 127.0.0.1: TLS pinning, basic auth, job ids, Ganeti's error bodies
and its all-null answer for unknown jobs, timeouts and refused connections.

``FakeRapi`` and ``serve_rapi`` are shared with the event tests."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import protocol, ssl
from twisted.internet.defer import Deferred
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest
from twisted.web import resource, server

from snfd.ganeti.rapi import (
    FINAL_STATUSES,
    GanetiRapi,
    RapiError,
    RapiPool,
    RapiTarget,
    RapiUnavailable,
    depends_on,
)
from snfd.httpclient import HTTPClientPool
from snfd.metrics import Metrics
from snfd.testing.node import free_port
from snfd.testing.tls import self_signed

_NOT_FOUND = {"code": 404, "message": "Not Found", "explain": None}


class FakeRapi(resource.Resource):
    """A RAPI that answers from ``answers`` and records every request.

    ``answers[(method, path)]`` is ``(status, JSON value)`` or a list of
    them, consumed in order (the last one repeats).  Unknown paths answer
    Ganeti's 404.  With ``hang`` set no request is ever answered.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[tuple[str, str], Any] = {}
        self.requests: list[dict[str, Any]] = []
        self.hang = False

    def answer(self, method: str, path: str, *replies: tuple[int, Any]) -> None:
        self.answers[(method, path)] = list(replies)

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if (r["method"], r["path"]) == (method, path)]

    def render(self, request: server.Request) -> Any:
        body = request.content.read()
        auth = request.getHeader(b"authorization")
        ctype = request.getHeader(b"content-type")
        method, path = request.method.decode(), request.path.decode()
        self.requests.append({
            "method": method, "path": path,
            "args": [(k.decode(), v.decode()) for k, vs in request.args.items() for v in vs],
            "authorization": auth.decode() if auth else None,
            "content_type": ctype.decode() if ctype else None,
            "body": json.loads(body) if body else None,
        })
        if self.hang:
            return server.NOT_DONE_YET
        replies = self.answers.get((method, path), [(404, _NOT_FOUND)])
        status, value = replies.pop(0) if len(replies) > 1 else replies[0]
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(value).encode()


class _Tracked(ProtocolWrapper):
    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.factory.lost(self)


class _Listener(WrappingFactory):
    """Listens on 127.0.0.1 and aborts every open connection on stop."""

    protocol = _Tracked

    def __init__(self, reactor: Any, inner: protocol.Factory,
                 tls: ssl.PrivateCertificate | None):
        if tls is not None:
            inner = TLSMemoryBIOFactory(tls.options(), False, inner)
        super().__init__(inner)
        self._open: dict[_Tracked, Deferred[None]] = {}
        self._port = reactor.listenTCP(0, self, interface="127.0.0.1")
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._port.getHost().port}"

    def registerProtocol(self, p: _Tracked) -> None:
        super().registerProtocol(p)
        self._open[p] = Deferred()

    def lost(self, p: _Tracked) -> None:
        self._open.pop(p).callback(None)

    async def stop(self) -> None:
        await self._port.stopListening()
        waits = list(self._open.values())
        for p in list(self._open):
            p.transport.abortConnection()
        for d in waits:
            await d


def serve_rapi(testcase: unittest.TestCase, fake: FakeRapi,
               tls: bool = True) -> tuple[str, bytes]:
    """Serve ``fake`` for one test: (base URL, certificate PEM).

    The certificate names ``cluster.ganeti.test`` (not the address), as
    Ganeti's own certificate names the cluster.
    """
    from twisted.internet import reactor

    cert, key = self_signed("cluster.ganeti.test")
    private = ssl.PrivateCertificate.loadPEM(cert + key) if tls else None
    listener = _Listener(reactor, server.Site(fake), private)
    testcase.addCleanup(lambda: Deferred.fromCoroutine(listener.stop()))
    return listener.url, cert


def http_pool(testcase: unittest.TestCase) -> HTTPClientPool:
    """A fresh outbound pool, closed after the test (before the servers)."""
    from twisted.internet import reactor

    pool = HTTPClientPool(reactor, Metrics())
    testcase.addCleanup(lambda: Deferred.fromCoroutine(pool.close()))
    return pool


class RapiTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.fake = FakeRapi()
        self.url, self.cert = serve_rapi(self, self.fake)
        self.pool = http_pool(self)

    def rapi(self, **overrides: Any) -> GanetiRapi:
        settings: dict[str, Any] = {
            "cluster": "c1", "url": self.url, "username": "synnefo",
            "password": "synnefopass", "certificate": self.cert.decode(), "timeout": 10.0,
        }
        settings.update(overrides)
        return GanetiRapi(self.pool, RapiTarget(**settings))


class TransportTests(RapiTestCase):
    async def test_pinned_certificate_and_basic_auth(self) -> None:
        """With the cluster's certificate pinned the call succeeds although
        the certificate names another host, and it carries basic auth."""
        self.fake.answer("GET", "/2/info", (200, {"name": "cluster.ganeti.test"}))
        info = await self.rapi().info()
        self.assertEqual(info, {"name": "cluster.ganeti.test"})
        [call] = self.fake.requests
        self.assertEqual(call["authorization"], "Basic c3lubmVmbzpzeW5uZWZvcGFzcw==")

    async def test_wrong_certificate_unavailable(self) -> None:
        """A server whose certificate is not the pinned one is refused:
        RapiUnavailable naming the cluster and TLS; no request reached it."""
        other, _ = self_signed("cluster.ganeti.test")
        with self.assertRaises(RapiUnavailable) as caught:
            await self.rapi(certificate=other.decode()).info()
        self.assertEqual(caught.exception.cluster, "c1")
        self.assertIn("TLS", caught.exception.reason)
        self.assertEqual(self.fake.requests, [])

    async def test_timeout_unavailable(self) -> None:
        """A RAPI that never answers gives RapiUnavailable once the
        target's timeout passed."""
        self.fake.hang = True
        with self.assertRaises(RapiUnavailable) as caught:
            await self.rapi(timeout=0.3).instances()
        self.assertIn("no complete answer", caught.exception.reason)

    async def test_refused_unavailable(self) -> None:
        """Nothing listening: RapiUnavailable (connection refused)."""
        rapi = self.rapi(url=f"https://127.0.0.1:{free_port()}", timeout=5.0)
        with self.assertRaises(RapiUnavailable) as caught:
            await rapi.jobs()
        self.assertIn("refused", caught.exception.reason)

    async def test_error_status_html_unescaped(self) -> None:
        """An HTTP error answers RapiError with its status and Ganeti's
        message, HTML entities decoded."""
        self.fake.answer("POST", "/2/instances", (400, {
            "code": 400, "message": "Invalid disk template &quot;zz&quot; &#x27;x&#x27;",
            "explain": None}))
        with self.assertRaises(RapiError) as caught:
            await self.rapi().create_instance({"name": "snf-1"})
        self.assertEqual(caught.exception.status, 400)
        self.assertEqual(caught.exception.message, "Invalid disk template \"zz\" 'x'")
        self.fake.answer("GET", "/2/info", (401, {"code": 401, "message": "Unauthorized"}))
        with self.assertRaises(RapiError) as caught:
            await self.rapi().info()
        self.assertEqual(caught.exception.status, 401)

    async def test_error_without_json_body(self) -> None:
        """An error status without a Ganeti body still gives RapiError."""
        self.fake.answer("GET", "/2/nodes", (502, "bad gateway"))
        with self.assertRaises(RapiError) as caught:
            await self.rapi().nodes()
        self.assertEqual(caught.exception.status, 502)


class CallTests(RapiTestCase):
    async def test_create_posts_version_1_json(self) -> None:
        """create_instance POSTs the body as application/json with
        ``__version__: 1`` and returns Ganeti's bare job id; dry_run adds
        ``dry-run=1``."""
        self.fake.answer("POST", "/2/instances", (200, 17))
        job = await self.rapi().create_instance({"name": "snf-1", "mode": "create"},
                                                dry_run=True)
        self.assertEqual(job, 17)
        [call] = self.fake.requests
        self.assertEqual(call["content_type"], "application/json")
        self.assertEqual(call["body"], {"name": "snf-1", "mode": "create", "__version__": 1})
        self.assertEqual(call["args"], [("dry-run", "1")])

    async def test_instance_actions(self) -> None:
        """Startup, shutdown (timeout body), reboot (type query), delete,
        modify and tags reach their RAPI resources and return job ids."""
        base = "/2/instances/snf-1"
        for method, path in [("PUT", "/startup"), ("PUT", "/shutdown"), ("POST", "/reboot"),
                             ("DELETE", ""), ("PUT", "/modify"), ("PUT", "/tags"),
                             ("DELETE", "/tags")]:
            self.fake.answer(method, base + path, (200, 5))
        rapi = self.rapi()
        self.assertEqual(await rapi.startup("snf-1"), 5)
        self.assertEqual(await rapi.shutdown("snf-1", timeout=30), 5)
        self.assertEqual(await rapi.reboot("snf-1", "soft", shutdown_timeout=20), 5)
        self.assertEqual(await rapi.delete_instance("snf-1"), 5)
        self.assertEqual(await rapi.modify("snf-1", beparams={"vcpus": 2}), 5)
        self.assertEqual(await rapi.add_tags("snf-1", ["a", "b c"]), 5)
        self.assertEqual(await rapi.delete_tags("snf-1", ["a"]), 5)
        self.assertEqual(self.fake.calls("PUT", base + "/shutdown")[0]["body"], {"timeout": 30})
        self.assertIsNone(self.fake.calls("PUT", base + "/startup")[0]["body"])
        self.assertEqual(self.fake.calls("POST", base + "/reboot")[0]["args"],
                         [("type", "soft"), ("shutdown_timeout", "20")])
        self.assertEqual(self.fake.calls("PUT", base + "/modify")[0]["body"],
                         {"beparams": {"vcpus": 2}})
        self.assertEqual(self.fake.calls("PUT", base + "/tags")[0]["args"],
                         [("tag", "a"), ("tag", "b c")])

    async def test_lists_ask_bulk(self) -> None:
        """instances(), nodes() and jobs() ask ``bulk=1`` and return lists."""
        self.fake.answer("GET", "/2/instances", (200, [{"name": "snf-1"}]))
        self.fake.answer("GET", "/2/nodes", (200, [{"name": "node1", "mfree": 100}]))
        self.fake.answer("GET", "/2/jobs", (200, [{"id": 1, "status": "success"}]))
        rapi = self.rapi()
        self.assertEqual(await rapi.instances(), [{"name": "snf-1"}])
        self.assertEqual(await rapi.nodes(), [{"name": "node1", "mfree": 100}])
        self.assertEqual(await rapi.jobs(), [{"id": 1, "status": "success"}])
        self.assertEqual({tuple(r["args"]) for r in self.fake.requests}, {(("bulk", "1"),)})

    async def test_instance_missing_is_none(self) -> None:
        """instance() of a name Ganeti does not know (404) is None."""
        self.fake.answer("GET", "/2/instances/snf-1", (200, {"name": "snf-1"}))
        self.assertEqual(await self.rapi().instance("snf-1"), {"name": "snf-1"})
        self.assertIsNone(await self.rapi().instance("snf-2"))

    async def test_job_and_unknown_job(self) -> None:
        """job() returns the job; Ganeti's all-null answer for an unknown id
        is None."""
        self.fake.answer("GET", "/2/jobs/10", (200, {"id": 10, "status": "success"}))
        self.fake.answer("GET", "/2/jobs/99", (200, {
            "id": None, "status": None, "ops": None, "opstatus": None}))
        self.assertEqual((await self.rapi().job(10))["status"], "success")
        self.assertIsNone(await self.rapi().job(99))

    async def test_cancel_job(self) -> None:
        """cancel_job returns Ganeti's (done, message)."""
        self.fake.answer("DELETE", "/2/jobs/495", (200, [True, "Dequeued job 495"]))
        self.assertEqual(await self.rapi().cancel_job(495), (True, "Dequeued job 495"))

    async def test_wait_job(self) -> None:
        """wait_job polls until the job's status is final and returns it;
        an unknown job raises RapiUnavailable."""
        self.fake.answer("GET", "/2/jobs/7", (200, {"id": 7, "status": "queued"}),
                         (200, {"id": 7, "status": "running"}),
                         (200, {"id": 7, "status": "error"}))
        job = await self.rapi().wait_job(7, poll=0.01)
        self.assertEqual(job["status"], "error")
        self.assertIn(job["status"], FINAL_STATUSES)
        self.assertEqual(len(self.fake.calls("GET", "/2/jobs/7")), 3)
        self.fake.answer("GET", "/2/jobs/8", (200, {"id": None, "status": None}))
        with self.assertRaises(RapiUnavailable):
            await self.rapi().wait_job(8, poll=0.01)

    async def test_non_job_answer_unavailable(self) -> None:
        """A write answered with something that is not a job id is
        reported as RapiUnavailable, not returned."""
        self.fake.answer("PUT", "/2/instances/snf-1/startup", (200, {"oops": 1}))
        with self.assertRaises(RapiUnavailable):
            await self.rapi().startup("snf-1")


class NetworkCallTests(RapiTestCase):
    async def test_network_reads(self) -> None:
        """networks() asks bulk=1; network() a 404 as None; groups() the names."""
        net = {"name": "snf-net-1", "network": "10.99.0.0/24"}
        self.fake.answer("GET", "/2/networks", (200, [net]))
        self.fake.answer("GET", "/2/networks/snf-net-1", (200, net))
        self.fake.answer("GET", "/2/groups",
                         (200, [{"name": "default", "uri": "/2/groups/default"}]))
        rapi = self.rapi()
        self.assertEqual(await rapi.networks(), [net])
        self.assertEqual(self.fake.calls("GET", "/2/networks")[0]["args"], [("bulk", "1")])
        self.assertEqual(await rapi.network("snf-net-1"), net)
        self.assertIsNone(await rapi.network("snf-net-2"))
        self.assertEqual(await rapi.groups(), ["default"])

    async def test_network_error_other_than_404_raises(self) -> None:
        """network() turns only a 404 into None."""
        self.fake.answer("GET", "/2/networks/n", (500, {"code": 500, "message": "boom"}))
        with self.assertRaises(RapiError):
            await self.rapi().network("n")

    async def test_create_network_body(self) -> None:
        """create_network POSTs only the fields given (plus conflicts_check)
        under Ganeti's names; the answer is the job id."""
        self.fake.answer("POST", "/2/networks", (200, 7), (200, 8))
        rapi = self.rapi()
        job = await rapi.create_network(
            "snf-net-1", subnet="10.99.0.0/24", gateway="10.99.0.1", mac_prefix="aa:00:01",
            add_reserved_ips=["10.99.0.10"], tags=("t1",), depends=depends_on(3))
        self.assertEqual(job, 7)
        self.assertEqual(await rapi.create_network("snf-net-2", subnet6="2001:db8::/64",
                                                   gateway6="2001:db8::1",
                                                   conflicts_check=True), 8)
        first, second = self.fake.calls("POST", "/2/networks")
        self.assertEqual(first["content_type"], "application/json")
        self.assertEqual(first["body"], {
            "network_name": "snf-net-1", "network": "10.99.0.0/24", "gateway": "10.99.0.1",
            "mac_prefix": "aa:00:01", "add_reserved_ips": ["10.99.0.10"], "tags": ["t1"],
            "conflicts_check": False, "depends": [[3, ["success"]]]})
        self.assertEqual(second["body"], {
            "network_name": "snf-net-2", "network6": "2001:db8::/64",
            "gateway6": "2001:db8::1", "conflicts_check": True})

    async def test_connect_disconnect_delete(self) -> None:
        """connect/disconnect PUT to the network's sub-resources, delete
        DELETEs it (a body only for depends); each answers its job id.
        The name is quoted into the path."""
        self.fake.answer("PUT", "/2/networks/snf%20net/connect", (200, 11))
        self.fake.answer("PUT", "/2/networks/snf%20net/disconnect", (200, 12))
        self.fake.answer("DELETE", "/2/networks/snf%20net", (200, 13))
        rapi = self.rapi()
        self.assertEqual(await rapi.connect_network("snf net", "default", "bridged", "br0",
                                                    vlan="42", depends=[[-1, []]]), 11)
        self.assertEqual(await rapi.disconnect_network("snf net", "default"), 12)
        self.assertEqual(await rapi.delete_network("snf net"), 13)
        self.assertEqual(await rapi.delete_network("snf net", depends=depends_on(12)), 13)
        [connect] = self.fake.calls("PUT", "/2/networks/snf%20net/connect")
        self.assertEqual(connect["body"], {
            "group_name": "default", "network_mode": "bridged", "network_link": "br0",
            "network_vlan": "42", "conflicts_check": False, "depends": [[-1, []]]})
        [disconnect] = self.fake.calls("PUT", "/2/networks/snf%20net/disconnect")
        self.assertEqual(disconnect["body"], {"group_name": "default"})
        plain, dependent = self.fake.calls("DELETE", "/2/networks/snf%20net")
        self.assertIsNone(plain["body"])
        self.assertEqual(dependent["body"], {"depends": [[12, ["success"]]]})

    async def test_depends_passes_through_create_and_modify(self) -> None:
        """create_instance and modify carry ``depends`` in their bodies."""
        self.fake.answer("POST", "/2/instances", (200, 21))
        self.fake.answer("PUT", "/2/instances/snf-1/modify", (200, 22))
        rapi = self.rapi()
        await rapi.create_instance({"name": "snf-1", "depends": depends_on(5)})
        await rapi.modify("snf-1", nics=[["add", {"network": "n", "ip": "pool"}]],
                          depends=depends_on(21, statuses=("success", "error")))
        self.assertEqual(self.fake.calls("POST", "/2/instances")[0]["body"]["depends"],
                         [[5, ["success"]]])
        self.assertEqual(self.fake.calls("PUT", "/2/instances/snf-1/modify")[0]["body"],
                         {"nics": [["add", {"network": "n", "ip": "pool"}]],
                          "depends": [[21, ["success", "error"]]]})


class MoveAndReinstallCallTests(RapiTestCase):
    async def test_reinstall_body(self) -> None:
        """reinstall POSTs the instance-reinstall-reqv1 body: os and start
        always, osparams only when given (as a copy); the answer is the id
        of the one job Ganeti makes of it."""
        path = "/2/instances/snf%201/reinstall"
        self.fake.answer("POST", path, (200, 31), (200, 32))
        rapi = self.rapi()
        osparams = {"img_id": "pithos://u/img", "img_format": "diskdump"}
        self.assertEqual(await rapi.reinstall("snf 1", "snf-image+default", osparams), 31)
        self.assertEqual(await rapi.reinstall("snf 1", "snf-image+default", start=False), 32)
        first, second = self.fake.calls("POST", path)
        self.assertEqual(first["content_type"], "application/json")
        self.assertEqual(first["body"], {"os": "snf-image+default", "start": True,
                                         "osparams": osparams})
        self.assertEqual(second["body"], {"os": "snf-image+default", "start": False})
        self.assertEqual(first["args"], [])

    async def test_migrate_and_failover_bodies(self) -> None:
        """migrate PUTs cleanup and allow_failover always, mode and
        target_node when given; failover ignore_consistency and target_node
        when given; both return the job id."""
        base = "/2/instances/snf-1"
        self.fake.answer("PUT", base + "/migrate", (200, 41), (200, 42))
        self.fake.answer("PUT", base + "/failover", (200, 43), (200, 44))
        rapi = self.rapi()
        self.assertEqual(await rapi.migrate("snf-1"), 41)
        self.assertEqual(await rapi.migrate("snf-1", mode="non-live", target_node="node2",
                                            cleanup=True, allow_failover=True), 42)
        self.assertEqual(await rapi.failover("snf-1"), 43)
        self.assertEqual(await rapi.failover("snf-1", target_node="node2",
                                             ignore_consistency=True), 44)
        plain, full = self.fake.calls("PUT", base + "/migrate")
        self.assertEqual(plain["body"], {"cleanup": False, "allow_failover": False})
        self.assertEqual(full["body"], {"cleanup": True, "allow_failover": True,
                                        "mode": "non-live", "target_node": "node2"})
        plain, full = self.fake.calls("PUT", base + "/failover")
        self.assertEqual(plain["body"], {"ignore_consistency": False})
        self.assertEqual(full["body"], {"ignore_consistency": True, "target_node": "node2"})

    async def test_cluster_tags(self) -> None:
        """Cluster tags are read with GET /2/tags, added with PUT and removed
        with DELETE /2/tags?tag=..; dry_run adds dry-run=1."""
        self.fake.answer("GET", "/2/tags", (200, ["htools:iextags:svc"]))
        self.fake.answer("PUT", "/2/tags", (200, 51), (200, 52))
        self.fake.answer("DELETE", "/2/tags", (200, 53))
        rapi = self.rapi()
        self.assertEqual(await rapi.cluster_tags(), ["htools:iextags:svc"])
        self.assertEqual(await rapi.add_cluster_tags(["htools:iextags:svc", "a b"]), 51)
        self.assertEqual(await rapi.add_cluster_tags(["snf:eventd:heartbeat"],
                                                     dry_run=True), 52)
        self.assertEqual(await rapi.delete_cluster_tags(["htools:iextags:svc"]), 53)
        added, heartbeat = self.fake.calls("PUT", "/2/tags")
        self.assertEqual(added["args"], [("tag", "htools:iextags:svc"), ("tag", "a b")])
        self.assertIsNone(added["body"])
        self.assertEqual(heartbeat["args"], [("tag", "snf:eventd:heartbeat"),
                                             ("dry-run", "1")])
        self.assertEqual(self.fake.calls("DELETE", "/2/tags")[0]["args"],
                         [("tag", "htools:iextags:svc")])

    async def test_cluster_tags_not_a_list(self) -> None:
        """An answer to GET /2/tags that is not a list is RapiUnavailable."""
        self.fake.answer("GET", "/2/tags", (200, {"tags": []}))
        with self.assertRaises(RapiUnavailable):
            await self.rapi().cluster_tags()


class RapiPoolTests(unittest.TestCase):
    def test_equal_targets_share_a_client(self) -> None:
        """Equal targets get the same client; changed settings a new one."""
        from twisted.internet import reactor

        pool = RapiPool(HTTPClientPool(reactor, Metrics()))
        target = RapiTarget(cluster="c1", url="https://127.0.0.1:5080", username="u",
                            password="p")
        same = RapiTarget(cluster="c1", url="https://127.0.0.1:5080", username="u",
                          password="p")
        first = pool.client(target)
        self.assertIs(pool.client(same), first)
        changed = pool.client(RapiTarget(cluster="c1", url="https://127.0.0.1:5080",
                                         username="u", password="q"))
        self.assertIsNot(changed, first)
        self.assertIs(pool.client(RapiTarget(cluster="c1", url="https://127.0.0.1:5080",
                                             username="u", password="q")), changed)
        self.assertEqual(changed.cluster, "c1")
