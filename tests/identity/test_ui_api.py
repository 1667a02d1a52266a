"""Sign-up, the verification link and the Shibboleth login under /ui,
driven in process over a real PostgreSQL; and the SMTP mailer against an
SMTP server listening on 127.0.0.1."""

from __future__ import annotations

import email

from twisted.internet import defer, reactor
from twisted.mail import smtp
from twisted.trial import unittest
from zope.interface import implementer

from snfd.identity.mail import SmtpMailer
from snfd.testing.nodecase import NodeTestCase
from tests.identity.test_accounts import PASSWORD


class SignupTests(NodeTestCase):
    """A node running the identity service as the daemon builds it, with
    ``http://cloud.test`` as its public URL, moderation off, the local and
    Shibboleth providers (headers trusted from 127.0.0.1) and its mail
    written as files to ``<state_dir>/mail``."""

    plugins = ("identity",)
    overrides = {("identity", "public_url"): "http://cloud.test",
                 ("identity", "moderation"): "no",
                 ("identity", "auth_providers"): "local, shibboleth",
                 ("identity", "shibboleth_trusted"): "127.0.0.1"}

    async def setUp(self) -> None:
        await super().setUp()
        self.accounts_ = self.services["identity"].accounts

    @defer.inlineCallbacks
    def call(self, method, path, body=None, headers=None, raw=None):
        code, parsed, _ = yield defer.ensureDeferred(
            NodeTestCase.call(self, method, path, body, raw=raw, headers=headers))
        return code, parsed

    def mails(self) -> list[email.message.Message]:
        """The mails the node has sent, oldest first."""
        folder = self.state_dir / "mail"
        if not folder.exists():
            return []
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.iterdir())]

    @defer.inlineCallbacks
    def test_signup_and_verify(self):
        """A sign-up answers 202, mails a link, and the link activates the
        account (moderation off); the link works once."""
        code, body = yield self.call("POST", "/ui/signup", {
            "email": "u@example.org", "password": PASSWORD, "first_name": "U"})
        self.assertEqual((code, body["state"]), (202, "pending_verification"))
        link = self.mails()[0].get_payload(decode=True).decode().split()[-1]
        self.assertTrue(link.startswith("http://cloud.test/ui/activate?auth="))
        path = link[len("http://cloud.test"):]
        code, body = yield self.call("GET", path)
        self.assertEqual((code, body["state"]), (200, "active"))
        code, body = yield self.call("GET", path)
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_bad_signups(self):
        """Malformed sign-ups are 400 with a fault, never 500."""
        for body in ([1], {"email": "x@example.org"}, {"email": 5, "password": PASSWORD},
                     {"email": "x@example.org", "password": PASSWORD, "admin": True},
                     {"email": "not an email", "password": PASSWORD}):
            code, fault = yield self.call("POST", "/ui/signup", body)
            self.assertEqual(code, 400, body)
            self.assertIn("badRequest", fault)
        code, _ = yield self.call("POST", "/ui/signup", raw=b"{nope")
        self.assertEqual(code, 400)

    @defer.inlineCallbacks
    def test_shibboleth_login_creates_and_reuses_the_account(self):
        """Trusted headers log a person in, creating the account the first
        time and finding it the second."""
        headers = {"eppn": "ann@uni.example", "mail": "ann@uni.example", "givenName": "Ann"}
        code, first = yield self.call("GET", "/ui/login/shibboleth", headers=headers)
        self.assertEqual(code, 200, first)
        code, second = yield self.call("GET", "/ui/login/shibboleth", headers=headers)
        self.assertEqual(second["uuid"], first["uuid"])
        principal = yield defer.ensureDeferred(self.accounts_.authenticate(second["token"]))
        self.assertEqual(principal.email, "ann@uni.example")
        code, fault = yield self.call("GET", "/ui/login/shibboleth")
        self.assertEqual(code, 401)


@implementer(smtp.IMessageDelivery)
class _Inbox:
    def __init__(self):
        self.messages = []

    def receivedHeader(self, helo, origin, recipients):
        return b""

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        inbox = self

        @implementer(smtp.IMessage)
        class Message:
            def __init__(self):
                self.lines = []

            def lineReceived(self, line):
                self.lines.append(line)

            def eomReceived(self):
                inbox.messages.append(b"\n".join(self.lines))
                return defer.succeed(None)

            def connectionLost(self):
                pass

        return Message


class SmtpMailerTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_sends_through_a_relay(self):
        """The SMTP mailer delivers a message to a relay on 127.0.0.1."""
        inbox = _Inbox()
        class Factory(smtp.SMTPFactory):
            def buildProtocol(self, addr):
                p = super().buildProtocol(addr)
                p.delivery = inbox
                lost = p.connectionLost

                def connectionLost(reason):
                    lost(reason)
                    self.closed.callback(None)
                p.connectionLost = connectionLost
                return p

        factory = Factory()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        closed = defer.Deferred()
        factory.closed = closed
        mailer = SmtpMailer(reactor, f"smtp://127.0.0.1:{port.getHost().port}", "snfd@test")
        yield defer.ensureDeferred(mailer.send("ann@example.org", "Hello", "a link"))
        yield closed
        self.assertEqual(len(inbox.messages), 1)
        self.assertIn(b"Subject: Hello", inbox.messages[0])

    @defer.inlineCallbacks
    def test_relay_down(self):
        """No relay listening: the send fails with an OSError naming it."""
        from snfd.testing.node import free_port

        mailer = SmtpMailer(reactor, f"smtp://127.0.0.1:{free_port()}", "snfd@test",
                            timeout=5)
        e = yield self.assertFailure(
            defer.ensureDeferred(mailer.send("ann@example.org", "Hello", "x")), OSError)
        self.assertIn("127.0.0.1", str(e))
