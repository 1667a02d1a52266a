"""Token validation over HTTP (``RemoteAuthenticator``) against a real
listening identity API, as a node without the identity plugin uses it."""

from __future__ import annotations

from twisted.internet import defer, reactor, task
from zope.interface.verify import verifyObject

from snfd import errors
from snfd.httpclient import HTTPClientPool
from snfd.identity.remote import RemoteAuthenticator
from snfd.interfaces import IAuthenticator
from snfd.metrics import Metrics
from snfd.testing.stubhttp import serve
from tests.identity.test_keystone import KeystoneTestCase, d


class RemoteAuthenticatorTests(KeystoneTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.url = serve(self, self.node.root) + "/identity"
        self.pool = HTTPClientPool(reactor, Metrics())
        self.addCleanup(lambda: defer.ensureDeferred(self.pool.close()))

    def remote(self, token: str, ttl: float = 0.0, clock=reactor) -> RemoteAuthenticator:
        return RemoteAuthenticator(self.pool, clock, self.url, token, ttl=ttl)

    @defer.inlineCallbacks
    def test_validates_user_tokens(self):
        """A user token checked through a component token gives the user's
        principal; an unknown one is 401."""
        uuid, token = yield d(self.user("r@example.org", admin=True))
        component = yield d(self.accounts.set_component("pithos"))
        remote = self.remote(component)
        verifyObject(IAuthenticator, remote)
        p = yield d(remote.authenticate(token))
        self.assertEqual((p.user, p.email, p.is_admin), (uuid, "r@example.org", True))
        yield self.assertFailure(d(remote.authenticate("not-a-token")), errors.Unauthorized)

    @defer.inlineCallbacks
    def test_renewal_seen_after_ttl(self):
        """A renewed token is refused once the remote cache's ttl passed."""
        uuid, token = yield d(self.user("s@example.org"))
        component = yield d(self.accounts.set_component("pithos"))
        clock = task.Clock()
        remote = self.remote(component, ttl=2.0, clock=clock)
        yield d(remote.authenticate(token))
        yield d(self.accounts.renew_token(uuid))
        yield d(remote.authenticate(token))  # cached
        clock.advance(3)
        yield self.assertFailure(d(remote.authenticate(token)), errors.Unauthorized)

    @defer.inlineCallbacks
    def test_bad_component_token_is_unavailable(self):
        """A refused component token makes the service unavailable (503),
        not the user's token invalid."""
        _, token = yield d(self.user("t@example.org"))
        remote = self.remote("wrong-component-token")
        yield self.assertFailure(d(remote.authenticate(token)), errors.ServiceUnavailable)
