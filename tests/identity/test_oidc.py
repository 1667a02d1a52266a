"""OpenID Connect logins end to end: a node whose identity service offers
the provider ``corp``, and a real OpenID provider (IdentityPython's
``pyop``) serving on 127.0.0.1 with one person, alice.  A browser starts
the login at the node, signs in at the provider's form and is sent back to
the node's callback, which answers a token (or, for a native application,
a one-time code to exchange)."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from Cryptodome.PublicKey import RSA
from jwkest.jwk import RSAKey
from pyop.authz_state import AuthorizationState
from pyop.exceptions import InvalidClientAuthentication, OAuthError
from pyop.provider import Provider
from pyop.subject_identifier import HashBasedSubjectIdentifierFactory
from pyop.userinfo import Userinfo
from twisted.internet import defer, ssl
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial import unittest
from twisted.web import resource, server
from zope.interface.verify import verifyObject

from snfd import config as cfg
from snfd import errors, plugin_loader
from snfd.httpclient import Target
from snfd.identity import oidc
from snfd.interfaces import IAuthProvider
from snfd.testing.nodecase import BASE, NodeTestCase
from snfd.testing.stubhttp import call, pumped
from snfd.testing.tls import self_signed
from tests.identity.test_ui_api import PKCE, VERIFIER

CLIENT_ID = "snfd"
CLIENT_SECRET = "s3cret:with/odd&chars"
CALLBACK = BASE + "/ui/login/oidc/corp/callback"
ALICE = {"email": "alice@corp.test", "email_verified": True,
         "given_name": "Alice", "family_name": "Liddell"}

_KEYS: dict[str, RSAKey] = {}


def key(name: str, kid: str) -> RSAKey:
    """An RSA signing key (made once per test run)."""
    if name not in _KEYS:
        _KEYS[name] = RSAKey(key=RSA.generate(2048), kid=kid, alg="RS256", use="sig")
    return _KEYS[name]


class _Provider(Provider):
    """pyop's provider, able to issue ID tokens for another client."""

    audience: str | None = None

    def _create_signed_id_token(self, client_id: str, *args: Any, **kwargs: Any) -> str:
        return super()._create_signed_id_token(self.audience or client_id, *args, **kwargs)


class OpenIDProvider(resource.Resource):
    """An OpenID provider over pyop: discovery, a sign-in form at the
    authorization endpoint, the token, userinfo and JWKS endpoints.
    ``published`` (when set) replaces the keys the provider publishes."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.users = {"alice": ("wonderland", ALICE)}
        self.published: list[RSAKey] | None = None
        self.provider: _Provider

    def start(self, testcase: Any) -> str:
        """Listen (HTTPS, certificate ``self.certificate``) on a free port
        of 127.0.0.1 until the test ends: the issuer URL."""
        from twisted.internet import reactor

        self.certificate, private = self_signed("127.0.0.1")
        tls = ssl.PrivateCertificate.loadPEM(self.certificate + private)
        listener = _Listener(TLSMemoryBIOFactory(tls.options(), False, server.Site(self)))
        port = reactor.listenTCP(0, listener, interface="127.0.0.1")
        testcase.addCleanup(lambda: defer.ensureDeferred(listener.stop(port)))
        issuer = f"https://127.0.0.1:{port.getHost().port}"
        configuration = {
            "issuer": issuer,
            "authorization_endpoint": issuer + "/authorize",
            "token_endpoint": issuer + "/token",
            "userinfo_endpoint": issuer + "/userinfo",
            "jwks_uri": issuer + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": ["sub", "email", "email_verified", "given_name",
                                 "family_name"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }
        client = {"client_secret": CLIENT_SECRET, "redirect_uris": [CALLBACK],
                  "response_types": ["code"], "subject_type": "public",
                  "token_endpoint_auth_method": "client_secret_basic"}
        self.provider = _Provider(
            key("signing", "k1"), configuration,
            AuthorizationState(HashBasedSubjectIdentifierFactory("salt")),
            {CLIENT_ID: client, "other": dict(client, client_secret="other")},
            Userinfo({name: claims for name, (_, claims) in self.users.items()}))
        return issuer

    def render_GET(self, request: Any) -> bytes:
        path = request.path.decode()
        query = urlsplit(request.uri.decode()).query
        if path == "/.well-known/openid-configuration":
            return self._json(request, self.provider.provider_configuration.to_dict())
        if path == "/jwks":
            keys = self.published if self.published is not None else [self.provider.signing_key]
            return self._json(request, {"keys": [k.serialize() for k in keys]})
        if path == "/authorize":
            try:
                self.provider.parse_authentication_request(query)
            except Exception as e:
                request.setResponseCode(400)
                return f"bad authentication request: {e}".encode()
            return (f'<form method="post" action="/authorize">'
                    f'<input type="hidden" name="request" value="{html.escape(query)}">'
                    f'<input name="username"><input name="password" type="password">'
                    f"</form>").encode()
        if path == "/userinfo":
            try:
                answer = self.provider.handle_userinfo_request(
                    None, {"Authorization": request.getHeader("authorization") or ""})
            except OAuthError as e:
                request.setResponseCode(401)
                return self._json(request, {"error": str(e)})
            return self._json(request, answer.to_dict())
        request.setResponseCode(404)
        return b"not found"

    def render_POST(self, request: Any) -> bytes:
        path = request.path.decode()
        if path == "/authorize":
            form = {k.decode(): v[0].decode() for k, v in request.args.items()}
            password, _ = self.users.get(form.get("username", ""), (None, None))
            if password is None or form.get("password") != password:
                request.setResponseCode(401)
                return b"wrong username or password"
            authn = self.provider.parse_authentication_request(form["request"])
            answer = self.provider.authorize(authn, form["username"])
            request.redirect(answer.request(authn["redirect_uri"], False).encode())
            return b""
        if path == "/token":
            body = request.content.read().decode()
            try:
                answer = self.provider.handle_token_request(
                    body, {"Authorization": request.getHeader("authorization") or ""})
            except InvalidClientAuthentication:
                request.setResponseCode(401)
                return self._json(request, {"error": "invalid_client"})
            except OAuthError as e:
                request.setResponseCode(400)
                return self._json(request, {"error": e.oauth_error})
            return self._json(request, answer.to_dict())
        request.setResponseCode(404)
        return b"not found"

    def _json(self, request: Any, value: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(value).encode()


class _Tracked(ProtocolWrapper):
    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.factory.lost(self)


class _Listener(WrappingFactory):
    """Counts its connections and closes them all when stopped."""

    protocol = _Tracked

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._open: dict[_Tracked, defer.Deferred[None]] = {}

    def registerProtocol(self, p: _Tracked) -> None:
        super().registerProtocol(p)
        self._open[p] = defer.Deferred()

    def lost(self, p: _Tracked) -> None:
        self._open.pop(p).callback(None)

    async def stop(self, port: Any) -> None:
        await port.stopListening()
        waits = list(self._open.values())
        for p in list(self._open):
            p.transport.abortConnection()
        for d in waits:
            await d


class OIDCLoginTests(NodeTestCase):
    """A node with the local provider and the OpenID provider ``corp``
    (users created at their first login), against a real provider."""

    plugins = ("identity",)

    async def setUp(self) -> None:
        self.op = OpenIDProvider()
        self.issuer = self.op.start(self)
        ca = self.mktemp()
        with open(ca, "wb") as f:
            f.write(self.op.certificate)
        self.overrides = {
            ("identity", "auth_providers"): "local",
            ("identity", "oidc_providers"): "corp",
            ("oidc:corp", "issuer"): self.issuer,
            ("oidc:corp", "client_id"): CLIENT_ID,
            ("oidc:corp", "client_secret"): CLIENT_SECRET,
            ("oidc:corp", "ca_certificate"): ca,
        }
        await super().setUp()
        self.addCleanup(lambda: defer.ensureDeferred(self.node.http.close()))
        self.accounts_ = self.services["identity"].accounts

    async def browse(self, method: str, url: str, **kwargs: Any) -> Any:
        """The browser's request to the provider (no redirect followed)."""
        client = self.node.http.client(Target(name="browser", base_url=url,
                                              ca_certificate=self.op.certificate))
        return await client.request(method, "", **kwargs)

    async def get(self, path: str, cookie: str = "") -> tuple[int, Any, Any]:
        """A browser's GET of the node (no redirect followed):
        ``(status, body, headers)``, the body decoded when JSON."""
        headers = {"Cookie": [cookie]} if cookie else {}
        response = await pumped(self.http, self.http.request(  # type: ignore[attr-defined]
            "GET", BASE + path, headers=headers, allow_redirects=False))
        content = await pumped(self.http, response.content())
        kind = response.headers.getRawHeaders(b"content-type", [b""])[0]
        return response.code, json.loads(content) if b"json" in kind else content, \
            response.headers

    async def sign_in(self, username: str = "alice",
                      password: str = "wonderland") -> tuple[str, str]:  # noqa: S107
        """Start a login at the node and sign in at the provider: the
        callback path the provider sends the browser to, and the cookie
        the node set."""
        code, _, headers = await self.get("/ui/login/oidc/corp")
        self.assertEqual(code, 302)
        location = headers.getRawHeaders(b"location")[0].decode()
        self.assertTrue(location.startswith(self.issuer + "/authorize?"), location)
        query = parse_qs(urlsplit(location).query)
        self.assertEqual(query["code_challenge_method"], ["S256"])
        self.assertEqual(query["redirect_uri"], [CALLBACK])
        [cookie] = headers.getRawHeaders(b"set-cookie")
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"SameSite=lax", cookie)
        form = await self.browse("GET", location)
        self.assertEqual(form.status, 200, form.body)
        answer = await self.browse(
            "POST", self.issuer + "/authorize",
            data={"request": urlsplit(location).query, "username": username,
                  "password": password})
        self.assertEqual(answer.status, 302, answer.body)
        back = answer.headers.getRawHeaders(b"location")[0].decode()
        self.assertTrue(back.startswith(CALLBACK + "?"), back)
        return back[len(BASE):], cookie.split(b";")[0].decode()

    async def login(self) -> dict[str, Any]:
        callback, cookie = await self.sign_in()
        code, body, _ = await self.get(callback, cookie)
        self.assertEqual(code, 200, body)
        return body  # type: ignore[no-any-return]

    async def users(self) -> int:
        return len(await self.accounts_.list_users())

    async def refused(self, reason: str) -> None:
        """A login whose callback is refused (401 naming ``reason``), and
        no account made."""
        before = await self.users()
        callback, cookie = await self.sign_in()
        code, fault, _ = await self.get(callback, cookie)
        self.assertEqual(code, 401, fault)
        self.assertIn(reason, fault["unauthorized"]["message"])
        self.assertEqual(await self.users(), before)

    async def test_first_login_creates_and_links_the_account(self):
        """The first login creates an active account with the email the
        provider verified, linked to (issuer, sub); the token it answers
        works; the second login finds the same account."""
        before = await self.users()
        first = await self.login()
        self.assertEqual(first["email"], "alice@corp.test")
        self.assertEqual(first["provider"], "oidc:corp")
        self.assertEqual(await self.users(), before + 1)
        principal = await self.accounts_.authenticate(first["token"])
        self.assertEqual(principal.email, "alice@corp.test")
        user = await self.accounts_.get_user(first["uuid"])
        self.assertEqual((user.state, user.first_name, user.last_name),
                         ("active", "Alice", "Liddell"))
        [link] = [p for p in await self.accounts_.links_of(first["uuid"])
                  if p[0] == "oidc:corp"]
        issuer, sub = link[1].split(" ", 1)
        self.assertEqual(issuer, self.issuer)
        self.assertTrue(sub)
        second = await self.login()
        self.assertEqual(second["uuid"], first["uuid"])
        self.assertNotEqual(second["token"], first["token"])
        self.assertEqual(await self.users(), before + 1)

    async def test_replayed_state_is_refused(self):
        """A callback works once: the same state (and code) again is 401."""
        callback, cookie = await self.sign_in()
        code, _, _ = await self.get(callback, cookie)
        self.assertEqual(code, 200)
        code, fault, _ = await self.get(callback, cookie)
        self.assertEqual(code, 401)
        self.assertIn("unknown or expired login", fault["unauthorized"]["message"])

    async def test_bad_signature_is_refused(self):
        """An ID token signed by a key other than the one the provider
        publishes under that key id is refused."""
        self.op.published = [key("signing", "k1")]
        self.op.provider.signing_key = key("impostor", "k1")
        await self.refused("signature is not valid")

    async def test_wrong_audience_is_refused(self):
        """An ID token issued for another client is refused."""
        self.op.provider.audience = "other"
        await self.refused("'aud' claim is not valid")

    async def test_expired_token_is_refused(self):
        """An ID token whose exp has passed (beyond the tolerated clock
        skew) is refused."""
        self.op.provider.id_token_lifetime = -3600
        await self.refused("has expired")

    async def test_rotated_keys_are_fetched(self):
        """When the provider starts signing with a new key, the node reads
        the provider's keys again and the login works; a key the provider
        withdrew is trusted no longer than an hour."""
        await self.login()
        self.op.published = [key("signing", "k1"), key("rotated", "k2")]
        self.op.provider.signing_key = key("rotated", "k2")
        await self.login()
        self.op.published = [key("signing", "k1")]
        self.clock.advance(oidc.DISCOVERY_TTL + 1)
        await self.refused("key the provider does not publish")

    async def test_callback_needs_the_browser_that_started(self):
        """The callback from a browser without the login's cookie (a login
        planted in someone else's browser) is refused."""
        callback, _ = await self.sign_in()
        code, fault, _ = await self.get(callback, "snfd_oidc_corp=forged")
        self.assertEqual(code, 401)
        self.assertIn("another browser", fault["unauthorized"]["message"])

    async def test_started_login_expires(self):
        """A callback after oidc_login_ttl seconds is refused."""
        callback, cookie = await self.sign_in()
        self.clock.advance(601)
        code, fault, _ = await self.get(callback, cookie)
        self.assertEqual(code, 401)
        self.assertIn("unknown or expired login", fault["unauthorized"]["message"])

    async def test_loopback_handoff(self):
        """A login started with a loopback ``next``, ``state`` and PKCE
        challenge (``snf login --provider``) carries them through the
        provider in a cookie and ends in a 303 to the loopback with a
        one-time code (no token) and the state; the code and the verifier
        give a token of the user with the method ``openid``, once; a later
        login from the same browser (the cookie still sent) drops it and
        answers as usual; a target off the loopback, or no S256
        challenge, is 400 and starts nothing."""
        query = urlencode({"next": "http://127.0.0.1:4321/callback", "state": "cli-state",
                           **PKCE})
        code, _, headers = await self.get("/ui/login/oidc/corp?" + query)
        self.assertEqual(code, 302)
        location = headers.getRawHeaders(b"location")[0].decode()
        cookies = [c.split(b";")[0].decode() for c in headers.getRawHeaders(b"set-cookie")]
        self.assertEqual(sorted(c.split("=")[0] for c in cookies),
                         ["snfd_loopback_corp", "snfd_oidc_corp"])
        await self.browse("GET", location)
        answer = await self.browse(
            "POST", self.issuer + "/authorize",
            data={"request": urlsplit(location).query, "username": "alice",
                  "password": "wonderland"})
        back = answer.headers.getRawHeaders(b"location")[0].decode()
        code, _, headers = await self.get(back[len(BASE):], "; ".join(cookies))
        self.assertEqual(code, 303)
        redirect = headers.getRawHeaders(b"location")[0].decode()
        target = urlsplit(redirect)
        self.assertEqual((target.netloc, target.path), ("127.0.0.1:4321", "/callback"))
        args = parse_qs(target.query)
        self.assertEqual(sorted(args), ["code", "state"])
        self.assertEqual(args["state"], ["cli-state"])
        exchange = {"code": args["code"][0], "code_verifier": VERIFIER}
        code, body, _ = await call(self.http, "POST", BASE + "/ui/token/exchange", exchange)
        self.assertEqual(code, 200, body)
        self.assertEqual((body["email"], body["provider"]), ("alice@corp.test", "oidc:corp"))
        self.assertNotIn(body["token"], redirect)
        principal = await self.accounts_.authenticate(body["token"])
        self.assertEqual(principal.email, "alice@corp.test")
        token = await self.accounts_.validate(body["token"])
        self.assertEqual(token.methods, ("openid",))
        code, fault, _ = await call(self.http, "POST", BASE + "/ui/token/exchange", exchange)
        self.assertEqual(code, 400, fault)

        stale = next(c for c in cookies if c.startswith("snfd_loopback_"))
        code, _, headers = await self.get("/ui/login/oidc/corp", stale)
        self.assertEqual(code, 302)
        dropped = [c for c in headers.getRawHeaders(b"set-cookie")
                   if c.startswith(b"snfd_loopback_corp=")]
        self.assertEqual(len(dropped), 1)
        self.assertIn(b"Max-Age=0", dropped[0])
        body = await self.login()
        self.assertEqual(body["email"], "alice@corp.test")

        for query in (urlencode({"next": "http://evil.example/callback", "state": "s", **PKCE}),
                      urlencode({"next": "http://127.0.0.1:4321/callback", "state": "s"}),
                      urlencode({"next": "http://127.0.0.1:4321/callback", "state": "s",
                                 **PKCE, "code_challenge_method": "plain"})):
            code, fault, headers = await self.get("/ui/login/oidc/corp?" + query)
            self.assertEqual(code, 400, fault)
            self.assertIsNone(headers.getRawHeaders(b"set-cookie"))

    async def test_unknown_provider(self):
        """A provider name that is not configured is 404."""
        code, _, _ = await self.get("/ui/login/oidc/nope")
        self.assertEqual(code, 404)


class OIDCConfigTests(unittest.TestCase):
    """``[identity] oidc_providers`` and the ``[oidc:NAME]`` sections."""

    def load(self, **values: str) -> cfg.Config:
        overrides = {("identity", "oidc_providers"): "corp"}
        overrides.update({("oidc:corp", k): v for k, v in values.items()})
        return cfg.load_config(None, plugin_loader.config_keys(plugin_loader.installed()),
                               environ={}, overrides=overrides)

    def test_bad_values_name_the_key(self):
        """A bad issuer, a missing client_id and scopes without openid each
        stop the node with one line naming the key."""
        for values, where in (
                ({"issuer": "http://idp.example", "client_id": "x"}, "[oidc:corp] issuer"),
                ({"issuer": "https://idp.example"}, "[oidc:corp] client_id"),
                ({"issuer": "https://idp.example", "client_id": "x", "scopes": "email"},
                 "[oidc:corp] scopes")):
            with self.assertRaises(cfg.ConfigError) as caught:
                self.load(**values)
            self.assertIn(where, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))

    def test_listed_provider_needs_a_section(self):
        """A name in oidc_providers without its section names that key."""
        config = cfg.load_config(None, plugin_loader.config_keys(plugin_loader.installed()),
                                 environ={}, overrides={("identity", "oidc_providers"): "corp"})
        with self.assertRaises(cfg.ConfigError) as caught:
            oidc.from_config(config, config["identity"], None, None, BASE)
        self.assertIn("[identity] oidc_providers", str(caught.exception))

    def test_provider(self):
        """A configured provider is an IAuthProvider named oidc:NAME."""
        config = self.load(issuer="https://idp.example", client_id="x", create_users="no")
        [provider] = oidc.from_config(config, config["identity"], None, None, BASE)
        self.assertTrue(verifyObject(IAuthProvider, provider))
        self.assertEqual(provider.name, "oidc:corp")
        self.assertFalse(provider.creates_users)
        self.assertEqual(provider.redirect_uri, CALLBACK)


class PendingLoginsTests(unittest.TestCase):
    def test_bounded_per_source(self):
        """One address cannot hold more than per_source started logins."""
        from twisted.internet.task import Clock

        logins = oidc.PendingLogins(Clock(), ttl=10, per_source=2)
        logins.start("p", "10.0.0.1", b"")
        logins.start("p", "10.0.0.1", b"")
        with self.assertRaises(errors.Fault) as caught:
            logins.start("p", "10.0.0.1", b"")
        self.assertEqual(caught.exception.code, 429)
        logins.start("p", "10.0.0.2", b"")

