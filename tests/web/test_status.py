"""The node endpoints' access and method rules, on in-memory requests."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from snfd.web.status import ClusterView, MetricsPage


class _Node:
    class membership:
        @staticmethod
        async def status():
            return {"node": "n1", "leader": "n1", "epoch": 3, "members": []}

    class election:
        is_leader = True

    admin_check = None


def render(resource, request) -> tuple[int, dict]:
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    body = b"".join(request.written)
    return request.responseCode or 200, json.loads(body) if body else {}


class ClusterViewTests(unittest.TestCase):
    def request(self, host: str, method: bytes = b"GET") -> DummyRequest:
        request = DummyRequest([])
        request.method = method
        request.client = IPv4Address("TCP", host, 40000)
        return request

    def test_local_caller_allowed(self):
        """A caller on 127.0.0.1 gets the cluster view."""
        code, body = render(ClusterView(_Node()), self.request("127.0.0.1"))
        self.assertEqual((code, body["leader"], body["epoch"]), (200, "n1", 3))

    def test_remote_caller_forbidden(self):
        """A remote caller that is not an administrator gets a 403 fault."""
        code, body = render(ClusterView(_Node()), self.request("192.0.2.7"))
        self.assertEqual(code, 403)
        self.assertEqual(body["forbidden"]["code"], 403)

    def test_remote_admin_allowed(self):
        """A remote caller that the admin check admits gets the view."""
        async def admit(request):
            return True
        code, _ = render(ClusterView(_Node(), admin_check=admit), self.request("192.0.2.7"))
        self.assertEqual(code, 200)

    def test_wrong_method(self):
        """POST is answered with a 405 fault naming the allowed methods."""
        request = self.request("127.0.0.1", b"POST")
        code, body = render(MetricsPage(None), request)
        self.assertEqual(code, 405)
        self.assertIn("badMethod", body)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"allow"), [b"GET, HEAD"])
