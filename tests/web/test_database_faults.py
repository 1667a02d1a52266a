"""A request whose database interaction meets a server out of disk space
(SQLSTATE 53100) is answered 503 with ``Retry-After``, in the error style
of its API, never 500: the pool (``snfd.db.pool``) turns the error into
``DatabaseImpaired`` and the one renderer (``snfd.errors``) answers it.
The database is the real pool whose connections fail as psycopg2 fails
on a full disk; ``tests/db/test_storage_faults.py`` shows PostgreSQL
failing so."""

from __future__ import annotations

import json
from typing import Any

import psycopg2.errors
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from snfd.db.pool import Database
from snfd.metrics import Metrics
from snfd.web.app import make_app
from snfd.web.site import Root, Site


class _DiskFull(psycopg2.errors.DiskFull):
    """What psycopg2 raises for a write PostgreSQL cannot extend a file
    for (a real one carries its SQLSTATE from the server)."""

    pgcode = "53100"


class _FailingPool:
    """Stands for the pool's connections: every interaction fails with
    ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def runInteraction(self, interaction: Any, *args: Any, **kwargs: Any) -> defer.Deferred:
        self.calls += 1
        return defer.fail(self.error)


class _Clock(task.Clock):
    """A clock for the pool, whose threads are never started."""

    def callWhenRunning(self, f: Any, *args: Any, **kwargs: Any) -> None:
        return None


class DatabaseFaultTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = _Clock()
        self.db = Database("postgresql://unused/db", self.clock, Metrics())
        self.pool = _FailingPool(_DiskFull(
            'could not extend file "base/16384/16390": No space left on device\n'
            "HINT:  Check free disk space.\n"))
        self.db._pool = self.pool  # type: ignore[assignment]
        app = make_app()

        @app.route("/<style>/things", methods=["PUT"])
        async def put(request: Any, style: str) -> bytes:
            if style != "compute":
                request.fault_style = style
            await self.db.run("test.put_thing", lambda txn: None)
            return b"stored"

        root = Root()
        root.mount("api", app.resource())
        self.site = Site(root, self.clock, Metrics())

    def put(self, style: str) -> tuple[bytes, bytes]:
        """The status line and headers, and the body, of a PUT answered
        in ``style`` (HTTP/1.0: the body is not chunked)."""
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(ConnectionDone()))
        channel.dataReceived(f"PUT /api/{style}/things HTTP/1.0\r\nHost: node\r\n"
                             "Content-Length: 2\r\n\r\n{}".encode())
        head, _, body = transport.value().partition(b"\r\n\r\n")
        return head, body

    def assert_503(self, head: bytes) -> None:
        self.assertTrue(head.startswith(b"HTTP/1.0 503 "), head)
        self.assertIn(b"\r\nRetry-After: 30\r\n", head + b"\r\n")

    def test_each_api_style(self):
        """503 with Retry-After in each API's error shape, the message
        naming the cause; no traceback logged (trial fails a test that
        logs one), no retry."""
        message = ("The service cannot complete the request: the database is out of"
                   " disk space. Please try again later.")
        head, body = self.put("compute")
        self.assert_503(head)
        self.assertEqual(json.loads(body),
                         {"serviceUnavailable": {"code": 503, "message": message}})

        head, body = self.put("keystone")
        self.assert_503(head)
        self.assertEqual(json.loads(body), {"error": {
            "code": 503, "title": "Service Unavailable", "message": message}})

        head, body = self.put("swift")
        self.assert_503(head)
        self.assertIn(b"Content-Type: text/plain", head)
        self.assertEqual(body, message.encode())

        head, body = self.put("neutron")
        self.assert_503(head)
        self.assertEqual(json.loads(body), {"NeutronError": {
            "type": "ServiceUnavailable", "message": message, "detail": ""}})

        self.assertEqual(self.pool.calls, 4)

    def test_other_database_errors_stay_500(self):
        """An error in the SQL itself is a bug: 500 (logged), as before."""

        class _UndefinedTable(psycopg2.errors.UndefinedTable):
            pgcode = "42P01"

        self.pool.error = _UndefinedTable('relation "things" does not exist')
        head, body = self.put("compute")
        self.assertTrue(head.startswith(b"HTTP/1.0 500 "), head)
        self.assertEqual(json.loads(body)["computeFault"]["code"], 500)
        self.assertEqual(len(self.flushLoggedErrors(psycopg2.errors.UndefinedTable)), 1)
