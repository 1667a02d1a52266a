"""Tokens when a node's wall clock is set: a cached validation's TTL is a
duration of the monotonic clock, a token's expiry an instant of the wall
clock, and a leader whose clock is ahead does not sweep away tokens the
database's clock says are still valid."""

from __future__ import annotations

import datetime
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from snfd import errors
from snfd.httpclient import HTTPClientPool
from snfd.identity.remote import RemoteAuthenticator
from snfd.identity.tokens import TokenCache
from snfd.metrics import Metrics
from snfd.testing.postgres import query
from snfd.testing.stubhttp import serve
from tests.identity.test_accounts import AccountsTestCase
from tests.identity.test_keystone import KeystoneTestCase, d

HOUR = 3600.0


def clocks() -> tuple[task.Clock, task.Clock]:
    wall, steady = task.Clock(), task.Clock()
    wall.advance(time.time())
    steady.advance(1000)
    return wall, steady


class TokenCacheClockTests(unittest.TestCase):
    def test_wall_clock_set_back_does_not_stretch_ttl(self):
        """An entry ends ``ttl`` seconds of monotonic time after it was
        cached, though the wall clock was set back an hour meanwhile."""
        wall, steady = clocks()
        cache = TokenCache(wall, 2.0, monotonic=steady)
        cache.put(b"k", "user:u", "principal")
        wall.advance(-HOUR)
        steady.advance(1.5)
        self.assertEqual(cache.get(b"k"), "principal")
        steady.advance(0.5)
        self.assertIsNone(cache.get(b"k"))

    def test_wall_clock_set_forward_keeps_ttl_but_ends_expired_tokens(self):
        """The wall clock set forward does not end an entry's TTL early,
        but a token whose expiry (an instant of the wall clock) has passed
        is not answered from the cache, as the database path refuses it."""
        wall, steady = clocks()
        cache = TokenCache(wall, 60.0, monotonic=steady)
        cache.put(b"short", "user:u", "short-lived", not_after=wall.seconds() + 10)
        cache.put(b"long", "user:u", "long-lived", not_after=wall.seconds() + 2 * HOUR)
        wall.advance(HOUR)
        steady.advance(1)
        self.assertEqual((cache.get(b"short"), cache.get(b"long")), (None, "long-lived"))


class RemoteCacheClockTests(KeystoneTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.url = serve(self, self.node.root) + "/identity"
        self.pool = HTTPClientPool(reactor, Metrics())
        self.addCleanup(lambda: defer.ensureDeferred(self.pool.close()))

    @defer.inlineCallbacks
    def test_revocation_seen_after_ttl_though_wall_clock_went_back(self):
        """On a node validating tokens over HTTP (its cache gets no
        invalidations), a revoked token is refused once the cache's TTL of
        monotonic time passed, though that node's wall clock was set back an
        hour: it does not stay accepted for the hour."""
        _, token = yield d(self.user("jump@example.org"))
        component = yield d(self.accounts.set_component("pithos"))
        wall, steady = clocks()
        remote = RemoteAuthenticator(self.pool, wall, self.url, component, ttl=2.0,
                                     monotonic=steady)
        yield d(remote.authenticate(token))
        yield d(self.accounts.revoke(token))
        wall.advance(-HOUR)
        yield d(remote.authenticate(token))  # still cached: within the TTL
        steady.advance(2.0)
        yield self.assertFailure(d(remote.authenticate(token)), errors.Unauthorized)


class ExpirySweepClockTests(AccountsTestCase):
    @defer.inlineCallbacks
    def test_leader_clock_ahead_sweeps_only_expired_tokens(self):
        """The expiry sweep of a leader whose wall clock was set forward an
        hour deletes the tokens that expired, not those expiring within the
        hour, which the other nodes (their clocks right) still accept."""
        wall, _ = clocks()
        leader = self.accounts(clock=wall)
        other = self.accounts()
        user, _ = yield d(leader.create_user("sweep@example.org", activate=True))
        now = leader.now()
        valid, _ = yield d(leader.issue_token(
            user, expires_at=now + datetime.timedelta(minutes=10)))
        expired, _ = yield d(leader.issue_token(
            user, expires_at=now - datetime.timedelta(seconds=1)))
        wall.advance(HOUR)
        self.assertEqual((yield d(leader.expire_tokens())), 1)
        principal = yield d(other.authenticate(valid))
        self.assertEqual(principal.user, user.uuid)
        yield self.assertFailure(d(other.authenticate(expired)), errors.Unauthorized)

    @defer.inlineCallbacks
    def test_leader_clock_ahead_keeps_young_sign_ups(self):
        """A leader whose clock was set forward past ``pending_expiry``
        deletes only the unverified sign-ups the database's clock also
        says are too old."""
        wall, _ = clocks()
        leader = self.accounts(clock=wall)
        young, _ = yield d(leader.create_user("young@example.org"))
        old, _ = yield d(leader.create_user("old@example.org"))
        self.assertEqual(young.state, "pending_verification")
        query(self.dsn, "UPDATE identity_users SET verification_sent = now() - interval"
                        " '8 days', created_at = now() - interval '8 days' WHERE uuid = %s",
              old.uuid)
        wall.advance(8 * 24 * HOUR)
        self.assertEqual((yield d(leader.expire_pending())), 1)
        left = {r[0] for r in query(self.dsn, "SELECT uuid FROM identity_users")}
        self.assertIn(young.uuid, left)
        self.assertNotIn(old.uuid, left)
