"""Sign-up, the verification link, the Shibboleth login and the code
exchange of native applications' logins under /ui, driven in process over
a real PostgreSQL; and the SMTP mailer against an SMTP server listening on
127.0.0.1."""

from __future__ import annotations

import email
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.mail import smtp
from twisted.trial import unittest
from twisted.web import resource
from zope.interface import implementer

from snfd import errors
from snfd.identity.accounts import TooManyFailures
from snfd.identity.mail import SmtpMailer
from snfd.identity.providers import Credentials
from snfd.identity.service import from_config
from snfd.testing.nodecase import BASE, NodeTestCase
from snfd.testing.stubhttp import call, pumped
from tests.identity.test_accounts import PASSWORD

#: RFC 7636's own example (appendix B): a verifier and its S256 challenge.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
#: What a native application adds to a login's URL.
PKCE = {"code_challenge": CHALLENGE, "code_challenge_method": "S256"}


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

    def link_path(self, n: int = 0, to: str | None = None) -> str:
        """The path of the link in the ``n``-th verification mail (to
        ``to``: mail files written within one second are not ordered)."""
        mails = [m for m in self.mails() if m["Subject"] == "Verify your email address"
                 and (to is None or m["To"] == to)]
        link = mails[n].get_payload(decode=True).decode().split("auth=")[1].split()[0]
        return "/ui/activate?auth=" + link

    @defer.inlineCallbacks
    def login(self, email, password, source="10.0.0.1"):
        """The uuid the password login gives, or the fault's status."""
        try:
            user = yield defer.ensureDeferred(self.accounts_.login(
                Credentials(email, password, source=source)))
        except errors.Fault as e:
            return e.code
        return user.uuid

    @defer.inlineCallbacks
    def test_signup_and_verify(self):
        """A sign-up answers 202 and mails a link; the link's page asks for
        a confirmation; confirming with the sign-up password activates the
        account (moderation off) and keeps the password; it works once."""
        code, body = yield self.call("POST", "/ui/signup", {
            "email": "u@example.org", "password": PASSWORD, "first_name": "U"})
        self.assertEqual((code, body["state"]), (202, "pending_verification"))
        link = self.mails()[0].get_payload(decode=True).decode().split()[-1]
        self.assertTrue(link.startswith("http://cloud.test/ui/activate?auth="))
        path = link[len("http://cloud.test"):]
        code, body = yield self.call("GET", path)
        self.assertEqual((code, body["method"]), (200, "POST"))
        code, body = yield self.call("POST", path, {"password": PASSWORD})
        self.assertEqual((code, body["state"]), (200, "active"))
        uuid = yield self.login("u@example.org", PASSWORD)
        self.assertEqual(uuid, body["uuid"])
        code, body = yield self.call("POST", path, {"password": PASSWORD})
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_verification_is_not_a_plain_get(self):
        """Opening the link (what a mail scanner does) verifies nothing; the
        POST of its code does (M6)."""
        code, body = yield self.call("POST", "/ui/signup", {
            "email": "scan@example.org", "password": PASSWORD})
        uuid = body["uuid"]
        for _ in range(2):
            code, _ = yield self.call("GET", self.link_path())
            self.assertEqual(code, 200)
        user = yield defer.ensureDeferred(self.accounts_.get_user(uuid))
        self.assertEqual(user.state, "pending_verification")
        auth = self.link_path().split("auth=")[1]
        code, body = yield self.call("POST", "/ui/activate", {"auth": auth,
                                                               "password": PASSWORD})
        self.assertEqual((code, body["state"]), (200, "active"))

    @defer.inlineCallbacks
    def test_signup_password_does_not_survive_someone_elses_verification(self):
        """An attacker who signs up with the victim's address cannot log in
        once the victim verifies it: the password given at verification is
        the account's, the sign-up password is gone (M6, pre-account
        hijack); confirming without one leaves no password at all."""
        yield self.call("POST", "/ui/signup", {
            "email": "victim@example.org", "password": "attacker's password"})
        code, body = yield self.call("POST", self.link_path(to="victim@example.org"),
                                     {"password": "the victim's own password"})
        self.assertEqual((code, body["state"]), (200, "active"))
        self.assertEqual((yield self.login("victim@example.org", "attacker's password")),
                         401)
        uuid = yield self.login("victim@example.org", "the victim's own password")
        self.assertEqual(uuid, body["uuid"])

        yield self.call("POST", "/ui/signup", {
            "email": "victim2@example.org", "password": "attacker's password"})
        code, body = yield self.call("POST", self.link_path(to="victim2@example.org"), {})
        self.assertEqual((code, body["state"], body["has_password"]),
                         (200, "active", False))
        self.assertEqual((yield self.login("victim2@example.org", "attacker's password")),
                         401)

    @defer.inlineCallbacks
    def test_signup_throttled_per_address(self):
        """One address may sign up ``signups_per_address`` times per
        ``signup_window``; the next is 429 with Retry-After and sends no
        mail (M6)."""
        for n in range(10):
            code, body = yield self.call("POST", "/ui/signup", {
                "email": f"s{n}@example.org", "password": PASSWORD})
            self.assertEqual(code, 202, body)
        code, body = yield self.call("POST", "/ui/signup", {
            "email": "s10@example.org", "password": PASSWORD})
        self.assertEqual(code, 429)
        self.assertEqual(len(self.mails()), 10)
        self.clock.advance(3601)
        code, body = yield self.call("POST", "/ui/signup", {
            "email": "s10@example.org", "password": PASSWORD})
        self.assertEqual(code, 202, body)

    @defer.inlineCallbacks
    def test_signup_throttled_per_email(self):
        """Sign-ups naming one email are limited whatever their addresses
        (M6)."""
        for n in range(3):
            try:
                yield defer.ensureDeferred(self.accounts_.signup(
                    "target@example.org", PASSWORD, source=f"10.9.0.{n}"))
            except errors.Conflict:
                pass
        yield self.assertFailure(defer.ensureDeferred(self.accounts_.signup(
            "target@example.org", PASSWORD, source="10.9.1.1")), TooManyFailures)

    @defer.inlineCallbacks
    def test_mail_carries_no_chosen_text(self):
        """The verification mail holds none of the text a sign-up chose
        (names): it cannot carry an attacker's message; names with control
        characters or too long are refused (M6)."""
        code, _ = yield self.call("POST", "/ui/signup", {
            "email": "m@example.org", "password": PASSWORD,
            "first_name": "Win a prize at http://evil.example", "last_name": "now"})
        self.assertEqual(code, 202)
        body = self.mails()[0].get_payload(decode=True).decode()
        self.assertNotIn("evil", body)
        self.assertNotIn("prize", body)
        for name in ("a\nb", "x" * 200, "bell\x07"):
            code, fault = yield self.call("POST", "/ui/signup", {
                "email": "n@example.org", "password": PASSWORD, "first_name": name})
            self.assertEqual(code, 400, name)
        code, _ = yield self.call("POST", "/ui/signup", {
            "email": "o@example.org\r\nBcc: x@example.org", "password": PASSWORD})
        self.assertEqual(code, 400)

    @defer.inlineCallbacks
    def test_pending_users_expire(self):
        """An unverified sign-up is deleted by the leader sweep after
        ``pending_expiry`` hours, which frees its address; its link stops
        working (M6)."""
        code, body = yield self.call("POST", "/ui/signup", {
            "email": "squat@example.org", "password": "squatter's password"})
        path = self.link_path()
        sweep = self.services["identity"].duties()[0]
        self.clock.advance(3600)
        yield defer.ensureDeferred(sweep.sweep())
        user = yield defer.ensureDeferred(self.accounts_.get_user(body["uuid"]))
        self.assertEqual(user.state, "pending_verification")
        self.clock.advance(7 * 24 * 3600)
        # The database's clock must agree that the sign-up is that old.
        yield self.accounts_.db.run("test.age", lambda txn: txn.execute(
            "UPDATE identity_users SET created_at = created_at - interval '8 days',"
            " verification_sent = verification_sent - interval '8 days' WHERE uuid = %s",
            (body["uuid"],)))
        yield defer.ensureDeferred(sweep.sweep())
        yield self.assertFailure(defer.ensureDeferred(self.accounts_.get_user(body["uuid"])),
                                 errors.NotFound)
        code, _ = yield self.call("POST", path, {"password": PASSWORD})
        self.assertEqual(code, 404)
        code, body = yield self.call("POST", "/ui/signup", {
            "email": "squat@example.org", "password": PASSWORD})
        self.assertEqual(code, 202, body)

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


    async def test_a_browser_gets_the_token_in_the_apps_fragment(self):
        """A browser's navigation (it asks for HTML) is sent on to the app
        with the token in the fragment, never in the query; the token
        works; the providers list names the redirect."""
        headers = {"eppn": "bob@uni.example", "mail": "bob@uni.example",
                   "Accept": "text/html,application/xhtml+xml"}
        response = await pumped(self.http, self.http.request(
            "GET", BASE + "/ui/login/shibboleth", headers={k: [v] for k, v in headers.items()},
            allow_redirects=False))
        self.assertEqual(response.code, 303)
        location = response.headers.getRawHeaders("location")[0]
        self.assertTrue(location.startswith("/ui/#token="), location)
        principal = await self.accounts_.authenticate(location.split("=", 1)[1])
        self.assertEqual(principal.email, "bob@uni.example")
        code, listed, _ = await NodeTestCase.call(self, "GET", "/ui/providers")
        self.assertEqual(listed["providers"], [
            {"name": "local", "kind": "password"},
            {"name": "shibboleth", "kind": "redirect", "url": "/ui/login/shibboleth"}])


    async def shibboleth(self, query: str, headers: dict[str, str]) -> tuple[int, Any]:
        """A GET of the Shibboleth login with ``query``, no redirect
        followed: ``(status, location or the decoded fault)``."""
        response = await pumped(self.http, self.http.request(
            "GET", BASE + "/ui/login/shibboleth?" + query,
            headers={k: [v] for k, v in headers.items()}, allow_redirects=False))
        content = await pumped(self.http, response.content())
        if response.code == 303:
            return response.code, response.headers.getRawHeaders("location")[0]
        return response.code, json.loads(content) if content else None

    async def loopback_code(self, eppn: str, target: str = "http://127.0.0.1:8123/callback",
                            state: str = "st", accept: str = "text/html") -> str:
        """A Shibboleth login started as ``snf login`` starts it (a loopback
        ``next``, a state, the PKCE challenge of ``VERIFIER``): the code
        of the loopback redirect."""
        query = urlencode({"next": target, "state": state, **PKCE})
        code, location = await self.shibboleth(query, {"eppn": eppn, "mail": eppn,
                                                       "Accept": accept})
        self.assertEqual(code, 303, location)
        return parse_qs(urlsplit(location).query)["code"][0]

    async def exchange(self, code: str, verifier: str = VERIFIER,
                       http: Any = None) -> tuple[int, Any]:
        """``POST /ui/token/exchange``: ``(status, decoded body)``."""
        status, body, headers = await call(http or self.http, "POST",
                                           BASE + "/ui/token/exchange",
                                           {"code": code, "code_verifier": verifier}, None, {})
        if status == 200:
            self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-store"])
        return status, body

    async def assertInvalid(self, code: str, verifier: str = VERIFIER) -> None:
        """The exchange is refused with the one message that says nothing
        about what was wrong."""
        status, fault = await self.exchange(code, verifier)
        self.assertEqual(status, 400, fault)
        self.assertEqual(fault["badRequest"]["message"], "Invalid or expired code.")

    async def test_loopback_handoff(self):
        """A login started with a loopback ``next``, a ``state`` and a PKCE
        S256 challenge (a native application's, RFC 8252 and 7636) ends in
        a 303 to that target with a one-time code and the state in the
        query, for an API client as for a browser; 127.0.0.1, [::1] and
        localhost on any port are taken, the target rebuilt from its
        parts; the code and the verifier give the user's token, with the
        login's method and the usual lifetime."""
        headers = {"eppn": "cli@uni.example", "mail": "cli@uni.example"}
        for target, expected in (
                ("http://127.0.0.1:8123/callback", "http://127.0.0.1:8123/callback"),
                ("http://[::1]:1/cb", "http://[::1]:1/cb"),
                ("http://localhost:65535", "http://localhost:65535/"),
                ("http://127.0.0.1/", "http://127.0.0.1/")):
            for accept in ("application/json", "text/html"):
                query = urlencode({"next": target, "state": "s-1.2_3~", **PKCE})
                code, location = await self.shibboleth(query, dict(headers, Accept=accept))
                self.assertEqual(code, 303, location)
                parts = urlsplit(location)
                self.assertEqual(f"{parts.scheme}://{parts.netloc}{parts.path}", expected)
                args = parse_qs(parts.query)
                self.assertEqual(sorted(args), ["code", "state"])
                self.assertEqual(args["state"], ["s-1.2_3~"])
                status, body = await self.exchange(args["code"][0])
                self.assertEqual(status, 200, body)
                self.assertEqual((body["email"], body["provider"]),
                                 ("cli@uni.example", "shibboleth"))
                principal = await self.accounts_.authenticate(body["token"])
                self.assertEqual(principal.email, "cli@uni.example")
                token = await self.accounts_.validate(body["token"])
                self.assertEqual(token.methods, ("shibboleth",))
                self.assertEqual(body["expires"], token.expires_at.isoformat())
                self.assertEqual(token.expires_at - token.issued_at,
                                 self.accounts_.policy.token_duration)

    async def test_loopback_redirect_carries_no_token(self):
        """The loopback redirect (what the browser's history keeps) holds
        no token: the login issued none (only the activation's primary
        one exists) until the code is exchanged, nothing in the redirect
        authenticates, and the token is not in it."""
        query = urlencode({"next": "http://127.0.0.1:8123/callback", "state": "st", **PKCE})
        code, location = await self.shibboleth(query, {
            "eppn": "hist@uni.example", "mail": "hist@uni.example", "Accept": "text/html"})
        self.assertEqual(code, 303, location)
        user = await self.accounts_.get_user("hist@uni.example")
        self.assertEqual(await self.tokens_of(user.uuid), 1)
        args = parse_qs(urlsplit(location).query)
        for value in (location, *args["code"], *args["state"]):
            await self.assertFailure(defer.ensureDeferred(self.accounts_.authenticate(value)),
                                     errors.Unauthorized)
        status, body = await self.exchange(args["code"][0])
        self.assertEqual(status, 200, body)
        self.assertNotIn(body["token"], location)
        self.assertEqual(await self.tokens_of(user.uuid), 2)

    async def tokens_of(self, uuid: str) -> int:
        """How many tokens the user has."""
        return await self.accounts_.db.run("test.tokens", lambda txn: (txn.execute(
            "SELECT count(*) FROM identity_tokens WHERE user_uuid = %s", (uuid,)),
            txn.fetchone()[0])[1])

    async def test_code_works_once(self):
        """A code exchanged once is refused the second time, and a second
        exchange racing the first does not both succeed."""
        code = await self.loopback_code("once@uni.example")
        status, body = await self.exchange(code)
        self.assertEqual(status, 200, body)
        await self.assertInvalid(code)
        code = await self.loopback_code("once@uni.example")
        answers = await defer.gatherResults([
            defer.ensureDeferred(self.exchange(code)) for _ in range(4)])
        self.assertEqual(sorted(status for status, _ in answers), [200, 400, 400, 400])

    async def test_wrong_verifier_is_refused(self):
        """A code with a verifier other than the login's is refused with
        the same message as an unknown code, and the code is spent: the
        right verifier does not work after a wrong one."""
        code = await self.loopback_code("pkce@uni.example")
        await self.assertInvalid(code, "x" + VERIFIER[1:])
        await self.assertInvalid(code)
        code = await self.loopback_code("pkce@uni.example")
        await self.assertInvalid(code, CHALLENGE)
        await self.assertInvalid("not-a-code")
        await self.assertInvalid(code[:-1] + ("A" if code[-1] != "A" else "B"))

    async def test_code_expires(self):
        """A code works for 60 seconds of the identity service's clock."""
        code = await self.loopback_code("slow@uni.example")
        self.clock.advance(59)
        status, body = await self.exchange(code)
        self.assertEqual(status, 200, body)
        code = await self.loopback_code("slow@uni.example")
        self.clock.advance(61)
        await self.assertInvalid(code)

    async def test_expired_codes_are_swept(self):
        """The leader sweep deletes expired codes, not live ones."""
        await self.loopback_code("sweep@uni.example")
        self.clock.advance(61)
        live = await self.loopback_code("sweep@uni.example")
        # The database's clock must agree that the first code is that old.
        await self.accounts_.db.run("test.age", lambda txn: txn.execute(
            "UPDATE identity_login_codes SET expires_at = expires_at - interval '2 minutes'"
            " WHERE expires_at < %s", (self.accounts_.now(),)))
        sweep = self.services["identity"].duties()[0]
        await sweep.sweep()
        left = await self.accounts_.db.run("test.codes", lambda txn: (txn.execute(
            "SELECT count(*) FROM identity_login_codes"), txn.fetchone()[0])[1])
        self.assertEqual(left, 1)
        status, body = await self.exchange(live)
        self.assertEqual(status, 200, body)

    async def test_exchange_on_another_node(self):
        """The code lives in the database: another node's identity service
        (built by the same factory over the same database, with its own
        memory) redeems it, once."""
        other = from_config(self.node, self.services["identity"].section)
        root = resource.Resource()
        root.putChild(b"ui", other.mounts()["ui"])
        code = await self.loopback_code("roam@uni.example")
        status, body = await self.exchange(code, http=StubTreq(root))
        self.assertEqual(status, 200, body)
        principal = await self.accounts_.authenticate(body["token"])
        self.assertEqual(principal.email, "roam@uni.example")
        await self.assertInvalid(code)

    async def test_bad_exchanges(self):
        """An exchange without a code or a verifier (or not strings, or
        not a JSON object) is 400 and spends nothing."""
        code = await self.loopback_code("shape@uni.example")
        for body in ({}, {"code": code}, {"code_verifier": VERIFIER},
                     {"code": code, "code_verifier": 1}, {"code": [code], "code_verifier":
                                                          VERIFIER}, [code]):
            status, fault, _ = await call(self.http, "POST", BASE + "/ui/token/exchange",
                                          body, None, {})
            self.assertEqual(status, 400, (body, fault))
        status, body = await self.exchange(code)
        self.assertEqual(status, 200, body)

    async def test_loopback_handoff_refuses_other_targets(self):
        """Any ``next`` but plain http to the loopback (another host, https,
        user info, a backslash a browser reads as a slash, a query or a
        fragment, a bad port), or a missing or malformed ``state``, or a
        missing or malformed PKCE challenge or a method other than S256,
        is 400 before anything happens: no account is made, nothing
        issued."""
        headers = {"eppn": "victim@uni.example", "mail": "victim@uni.example"}
        before = len(await self.accounts_.list_users())
        for target in ("http://evil.example/callback", "https://127.0.0.1:8123/callback",
                       "http://127.0.0.1.evil.example/", "http://127.0.0.1@evil.example/",
                       "http://evil.example\\@127.0.0.1/", "http://evil.example#@127.0.0.1/",
                       "http://127.0.0.1:8123/cb?x=1", "http://127.0.0.1:8123/cb#x",
                       "http://127.0.0.1:99999/", "http://127.0.0.1:0/", "//127.0.0.1:8123/",
                       "/ui/", "javascript:alert(1)", "http://127.0.0.2/", "http://[::2]/",
                       "http://localhost.:80/", "http://127.0.0.1:8123/\n", ""):
            code, fault = await self.shibboleth(
                urlencode({"next": target, "state": "s", **PKCE}), headers)
            self.assertEqual(code, 400, (target, fault))
            self.assertIn("loopback", fault["badRequest"]["message"])
        cb = "http://127.0.0.1:8123/cb"
        for query in ({"next": cb, **PKCE},
                      {"next": cb, "state": "", **PKCE},
                      {"next": cb, "state": "a b", **PKCE},
                      {"next": cb, "state": "x" * 257, **PKCE},
                      {"state": "s", **PKCE},
                      PKCE):
            code, fault = await self.shibboleth(urlencode(query), headers)
            self.assertEqual(code, 400, (query, fault))
        for pkce in ({}, {"code_challenge": CHALLENGE},
                     {"code_challenge": CHALLENGE, "code_challenge_method": "plain"},
                     {"code_challenge": CHALLENGE, "code_challenge_method": "s256"},
                     {"code_challenge": CHALLENGE[:-1], "code_challenge_method": "S256"},
                     {"code_challenge": CHALLENGE + "A", "code_challenge_method": "S256"},
                     {"code_challenge": CHALLENGE[:-1] + "=", "code_challenge_method": "S256"},
                     {"code_challenge_method": "S256"}):
            code, fault = await self.shibboleth(
                urlencode({"next": cb, "state": "s", **pkce}), headers)
            self.assertEqual(code, 400, (pkce, fault))
            self.assertIn("code_challenge", fault["badRequest"]["message"])
        self.assertEqual(len(await self.accounts_.list_users()), before)


class ShibbolethDefaultTests(NodeTestCase):
    """The Shibboleth provider enabled without ``shibboleth_trusted``."""

    plugins = ("identity",)
    overrides = {("identity", "auth_providers"): "local, shibboleth"}

    async def test_trusts_no_address_by_default(self):
        """Identity headers from 127.0.0.1 (a reverse proxy on the same
        host forwards everyone from there) are not believed until the
        front servers are configured (L8)."""
        headers = {"eppn": "mallory@uni.example", "mail": "admin@localhost"}
        code, fault, _ = await self.call("GET", "/ui/login/shibboleth", headers=headers)
        self.assertEqual(code, 401, fault)


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
