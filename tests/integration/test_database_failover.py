"""A node on a PostgreSQL primary with a streaming standby, named together
in one database URL (``host1,host2`` and ``target_session_attrs=
read-write``): the primary is crashed and the standby promoted while the
node runs; every object acknowledged before is there afterwards, writes
work again without restarting the node, and ``/_health`` is 200 again.
Needs root and PostgreSQL's server binaries; elsewhere it skips."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from twisted.internet import threads
from twisted.trial import unittest

from snfd.testing.cloudnode import CloudNode
from snfd.testing.node import http_get
from snfd.testing.pgstandby import PrimaryWithStandby, standby_unavailable


class FailoverTests(unittest.TestCase):
    timeout = 600

    def setUp(self) -> None:
        reason = standby_unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        self.pair = PrimaryWithStandby()
        self.addCleanup(self.pair.stop)
        self.pair.start()
        self.pair.create_database("snfd")
        state = Path(self.mktemp()).absolute() / "node"
        state.parent.mkdir(parents=True)
        self.node = CloudNode(self.pair.dsn("snfd"), state)
        self.addCleanup(self.node.stop)

    def put(self, token: str, path: str, body: bytes) -> int:
        return self.node.request("PUT", path, token, body)[0]

    def failover(self) -> None:
        self.pair.wait_replayed()
        self.pair.kill_primary()
        time.sleep(1.0)  # the node notices the primary gone meanwhile
        self.pair.promote()

    async def test_promoted_standby_is_found(self) -> None:
        await threads.deferToThread(self.node.start)
        user = await threads.deferToThread(self.node.add_user, "fay@example.org")
        base = f"/object-store/v1/{user.uuid}/box"
        self.assertEqual(await threads.deferToThread(self.put, user.token, base, b""), 201)
        acked = {}
        for i in range(20):
            body = uuid.uuid4().bytes * 100
            if await threads.deferToThread(self.put, user.token, f"{base}/o{i}", body) == 201:
                acked[f"o{i}"] = body
        self.assertEqual(len(acked), 20)

        await threads.deferToThread(self.failover)

        def write_again() -> float:
            started = time.monotonic()
            while time.monotonic() - started < 120:
                try:
                    if self.put(user.token, f"{base}/after", b"after failover") == 201:
                        return time.monotonic() - started
                except OSError:
                    pass
                time.sleep(0.2)
            raise AssertionError(f"no write after the failover:\n{self.node.tail()}")
        await threads.deferToThread(write_again)
        for name, body in acked.items():
            status, _, got = await threads.deferToThread(
                self.node.request, "GET", f"{base}/{name}", user.token)
            self.assertEqual((status, got), (200, body))
        status, _, _ = await threads.deferToThread(http_get, self.node.url + "/_health")
        self.assertEqual(status, 200)
