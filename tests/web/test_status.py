"""The node endpoints' access and method rules, on in-memory requests."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from snfd import errors
from snfd.web.auth import Principal
from snfd.web.status import ClusterView, MetricsPage


class _Node:
    class membership:
        @staticmethod
        async def status():
            return {"node": "n1", "leader": "n1", "epoch": 3, "members": []}

    class election:
        is_leader = True
        rounds = 7


class _Authenticator:
    """Admits the token "admin" as an administrator, "user" as a user."""

    async def authenticate(self, token):
        if token not in ("admin", "user"):
            raise errors.Unauthorized("Invalid token")
        return Principal(user=token, is_admin=token == "admin")


def render(resource, request) -> tuple[int, dict]:
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    body = b"".join(request.written)
    return request.responseCode or 200, json.loads(body) if body else {}


class ClusterViewTests(unittest.TestCase):
    def request(self, host: str, method: bytes = b"GET", token: str = "") -> DummyRequest:
        request = DummyRequest([])
        request.method = method
        if token:
            request.requestHeaders.setRawHeaders(b"x-auth-token", [token])
        request.client = IPv4Address("TCP", host, 40000)
        return request

    def test_loopback_not_trusted_by_default(self):
        """A caller on 127.0.0.1 without an administrator's token gets 403:
        behind a reverse proxy on the same host every client comes from
        there (L8)."""
        for host in ("127.0.0.1", "::1"):
            code, body = render(ClusterView(_Node()), self.request(host))
            self.assertEqual(code, 403, host)

    def test_configured_addresses_trusted(self):
        """Callers from the configured addresses or networks get the view;
        others, loopback included, do not."""
        view = ClusterView(_Node(), trusted=("10.0.0.0/24", "192.0.2.5"))
        code, body = render(view, self.request("10.0.0.9"))
        self.assertEqual((code, body["leader"], body["epoch"]), (200, "n1", 3))
        code, _ = render(view, self.request("192.0.2.5"))
        self.assertEqual(code, 200)
        for host in ("127.0.0.1", "10.0.1.9"):
            code, _ = render(view, self.request(host))
            self.assertEqual(code, 403, host)

    def test_trusted_addresses_from_node_config(self):
        """Without explicit addresses the view reads ``[node]
        cluster_trusted``, which defaults to none."""
        from snfd import config as cfg

        node = _Node()
        node.config = cfg.load_config(None, {}, environ={})
        code, _ = render(ClusterView(node), self.request("127.0.0.1"))
        self.assertEqual(code, 403)
        node.config = cfg.load_config(None, {}, environ={},
                                      overrides={("node", "cluster_trusted"): "127.0.0.1"})
        code, _ = render(ClusterView(node), self.request("127.0.0.1"))
        self.assertEqual(code, 200)

    def test_remote_caller_forbidden(self):
        """A remote caller that is not an administrator gets a 403 fault."""
        code, body = render(ClusterView(_Node()), self.request("192.0.2.7"))
        self.assertEqual(code, 403)
        self.assertEqual(body["forbidden"]["code"], 403)

    def test_remote_admin_allowed(self):
        """A remote caller whose token is an administrator's gets the view;
        a user's token or a wrong one gets 403."""
        view = ClusterView(_Node(), _Authenticator())
        code, _ = render(view, self.request("192.0.2.7", token="admin"))
        self.assertEqual(code, 200)
        for token in ("user", "wrong"):
            code, _ = render(view, self.request("192.0.2.7", token=token))
            self.assertEqual(code, 403, token)

    def test_wrong_method(self):
        """POST is answered with a 405 fault naming the allowed methods."""
        request = self.request("192.0.2.7", b"POST")
        code, body = render(MetricsPage(None), request)
        self.assertEqual(code, 405)
        self.assertIn("badMethod", body)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"allow"), [b"GET, HEAD"])
