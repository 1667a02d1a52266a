"""OpenID Connect login providers: this cloud as a relying party of one or
more OpenID providers (Google, a university's Keycloak, ...).

A browser login goes through three steps:

1. ``begin``: the person opens ``/ui/login/oidc/NAME``; a login is
   *started*: a random ``state``, ``nonce`` and PKCE verifier are kept in
   ``PendingLogins`` (with a hash of a cookie set on the browser) and the
   browser is redirected to the provider's authorization endpoint with the
   S256 challenge of the verifier.
2. The provider authenticates the person and sends the browser back to
   ``/ui/login/oidc/NAME/callback`` with ``code`` and ``state``.
3. ``authenticate``: the login is *taken* (once: a replayed ``state`` is
   unknown) if it is not *expired*, belongs to this provider and to this
   browser; the code is exchanged (with the verifier) at the token
   endpoint; the ID token's signature is checked against the provider's
   JWKS (fetched again once when a token names a key id it does not hold:
   keys rotate) and its claims ``iss``, ``aud`` (and ``azp``), ``exp``,
   ``iat``, ``nonce`` and ``sub``; missing names and email come from the
   userinfo endpoint.  The person is ``(issuer, sub)``.

Discovery (``<issuer>/.well-known/openid-configuration``) happens at the
first login and again an hour later; its ``issuer`` must be the
configured one exactly.  Every call to the provider goes through the
node's HTTP client pool with the provider's timeout.  JOSE (JWS, JWK, the
claims) is ``joserfc``'s.

Started logins live in this node's memory: the callback must reach the
node that started the login (a node that restarts forgets them: the
person starts again).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import attrs
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from twisted.logger import Logger
from zope.interface import implementer

from snfd import errors
from snfd.config import ConfigError
from snfd.httpclient import OutboundError, Target
from snfd.identity.providers import Credentials, ExternalIdentity, ProviderUnavailable
from snfd.interfaces import IAuthProvider

log = Logger(namespace="snfd.identity.oidc")

#: Where a provider publishes its configuration, below its issuer URL.
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: Seconds a provider's configuration and keys are used before being read again.
DISCOVERY_TTL = 3600.0
#: Signature algorithms accepted on ID tokens: asymmetric ones only (never
#: ``none``, never a MAC keyed with the client secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA")
#: Prefix of the cookie that binds a started login to the browser.
COOKIE = "snfd_oidc_"


@attrs.frozen
class Settings:
    """One provider as configured in its ``[oidc:NAME]`` section."""

    name: str
    issuer: str
    client_id: str
    client_secret: str = attrs.field(default="", repr=False)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    create_users: bool = True
    trust_email: bool = False
    ca_certificate: str | None = attrs.field(default=None, repr=False)
    timeout: float = 10.0
    clock_skew: float = 60.0


@attrs.frozen
class PendingLogin:
    """A started login, kept until its callback takes it or it expires."""

    state: str
    provider: str
    nonce: str = attrs.field(repr=False)
    verifier: str = attrs.field(repr=False)
    browser: bytes = attrs.field(repr=False)  # SHA-256 of the cookie's value
    source: str
    expires: float


class PendingLogins:
    """The logins started on this node: ``state`` -> ``PendingLogin``.

    States of a login: *started* (``add``), then *taken* by its callback
    (``take``, once; gone afterwards) or *expired* (``ttl`` seconds of
    ``clock`` after it started; dropped).  At most ``most`` are kept, and
    at most ``per_source`` of one source address: more are 429, so that
    nobody fills the table.
    """

    def __init__(self, clock: Any, ttl: float = 600.0, most: int = 10000,
                 per_source: int = 20) -> None:
        self._clock = clock
        self.ttl = ttl
        self._most = most
        self._per_source = per_source
        self._logins: collections.OrderedDict[str, PendingLogin] = collections.OrderedDict()
        self._by_source: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        self._prune()
        return len(self._logins)

    def start(self, provider: str, source: str, browser: bytes) -> PendingLogin:
        """A new login of ``provider`` for the browser whose cookie hashes
        to ``browser``; 429 when too many are in progress."""
        self._prune()
        if self._by_source[source] >= self._per_source or len(self._logins) >= self._most:
            raise TooManyLogins("Too many logins in progress; try again later.",
                                headers={"Retry-After": str(int(self.ttl))})
        login = PendingLogin(state=_random(), provider=provider, nonce=_random(),
                             verifier=_random(48), browser=browser, source=source,
                             expires=self._clock.seconds() + self.ttl)
        self._logins[login.state] = login
        self._by_source[source] += 1
        return login

    def take(self, state: str) -> PendingLogin | None:
        """The started login of ``state``, removed; ``None`` when there is
        none (never started, already taken, or expired)."""
        self._prune()
        login = self._logins.pop(state, None)
        if login is not None:
            self._forget(login)
        return login

    def _prune(self) -> None:
        now = self._clock.seconds()
        while self._logins:
            oldest = next(iter(self._logins.values()))
            if oldest.expires > now:
                break
            del self._logins[oldest.state]
            self._forget(oldest)

    def _forget(self, login: PendingLogin) -> None:
        self._by_source[login.source] -= 1
        if self._by_source[login.source] <= 0:
            del self._by_source[login.source]


@attrs.frozen
class Redirect:
    """Where ``begin`` sends the browser, and the cookie it sets there."""

    url: str
    cookie_name: str
    cookie: str = attrs.field(repr=False)
    cookie_path: str
    max_age: int


@attrs.frozen
class _Metadata:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    algorithms: tuple[str, ...]
    fetched: float


class TooManyLogins(errors.Fault):
    code, name = 429, "overLimit"


class Refused(Exception):
    """The provider's answer does not prove who the person is."""


@implementer(IAuthProvider)
class OIDCProvider:
    """Log in with an OpenID provider (authorization code flow, PKCE S256).

    ``name`` is ``oidc:NAME``; identities are linked as ``(name, "<issuer>
    <sub>")``.  Only emails the provider marks ``email_verified`` (or all,
    with ``trust_email``) are passed on, so ``verified_email`` holds.

    @param settings: the ``[oidc:NAME]`` section's values.
    @param http: the node's ``HTTPClientPool``.
    @param clock: time (``seconds()``) for expiries and the token's claims.
    @param logins: the node's ``PendingLogins`` (shared by its providers).
    @param public_url: the cloud's base URL; the callback is
        ``<public_url>/ui/login/oidc/NAME/callback``.
    """

    verified_email = True

    def __init__(self, settings: Settings, http: Any, clock: Any, logins: PendingLogins,
                 public_url: str) -> None:
        self.settings = settings
        self.name = f"oidc:{settings.name}"
        self.creates_users = settings.create_users
        self._http = http
        self._clock = clock
        self._logins = logins
        self.path = f"/ui/login/oidc/{settings.name}"
        self.redirect_uri = public_url.rstrip("/") + self.path + "/callback"
        self._metadata: _Metadata | None = None
        self._keys: KeySet | None = None
        self._keys_read = 0.0

    # -- step 1 ---------------------------------------------------------------

    async def begin(self, source: str) -> Redirect:
        """Start a login from ``source``: where to send the browser.

        @raise errors.ServiceUnavailable: the provider's configuration
            cannot be read.
        @raise errors.OverLimit: too many logins are in progress.
        """
        try:
            metadata = await self._discover()
        except ProviderUnavailable as e:
            raise errors.ServiceUnavailable(f"The login service is unavailable: {e}") from None
        cookie = _random()
        login = self._logins.start(self.name, source, _digest(cookie))
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": _challenge(login.verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if urlsplit(metadata.authorization_endpoint).query else "?"
        return Redirect(url=metadata.authorization_endpoint + separator + urlencode(query),
                        cookie_name=self.cookie_name, cookie=cookie, cookie_path=self.path,
                        max_age=int(self._logins.ttl))

    @property
    def cookie_name(self) -> str:
        return COOKIE + self.settings.name

    # -- step 3 ---------------------------------------------------------------

    async def authenticate(self, credentials: Credentials) -> ExternalIdentity | None:
        """The person of a callback (``credentials.params``: ``state`` and
        ``code``, or ``error``); ``None`` without a ``state``.  See
        ``IAuthProvider.authenticate``.

        @raise errors.Unauthorized: the login is unknown (never started,
            replayed, expired), of another provider or browser, or the
            provider's answer proves nothing (refused code, bad signature,
            wrong issuer, audience or nonce, expired token); the reason is
            in the message.
        @raise ProviderUnavailable: the provider cannot be reached.
        """
        params = credentials.params
        state = params.get("state", "")
        if not state:
            return None
        login = self._logins.take(state)
        try:
            if login is None or login.provider != self.name:
                raise Refused("unknown or expired login; start again")
            cookie = cookie_value(credentials.headers.get("cookie", ""), self.cookie_name)
            if not secrets.compare_digest(_digest(cookie), login.browser):
                raise Refused("the login was started in another browser")
            if params.get("error"):
                raise Refused(f"the provider answered {params['error'][:100]!r}")
            code = params.get("code", "")
            if not code:
                raise Refused("the callback has no code")
            return await self._identity(code, login)
        except Refused as e:
            log.info("OpenID Connect login with {provider} from {source} refused: {reason}",
                     provider=self.name, source=credentials.source, reason=str(e))
            raise errors.Unauthorized(f"OpenID Connect login refused: {e}") from None

    async def _identity(self, code: str, login: PendingLogin) -> ExternalIdentity:
        metadata = await self._discover()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": login.verifier}
        headers = {"Accept": "application/json"}
        if self.settings.client_secret:
            pair = f"{quote(self.settings.client_id, safe='')}:" \
                   f"{quote(self.settings.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.settings.client_id
        status, answer = await self._call("POST", metadata.token_endpoint, data=form,
                                          headers=headers)
        if status != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            if status >= 500:
                raise ProviderUnavailable(f"{self.name}: token endpoint answered {status}")
            raise Refused(f"the token endpoint refused the code ({error or status})")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise Refused("the token endpoint gave no ID token")
        claims = await self._verified_claims(id_token, login.nonce, metadata)
        access_token = answer.get("access_token")
        if metadata.userinfo_endpoint and isinstance(access_token, str):
            claims = {**await self._userinfo(metadata, access_token, claims["sub"]), **claims}
        return self._identity_of(claims)

    async def _verified_claims(self, id_token: str, nonce: str,
                               metadata: _Metadata) -> dict[str, Any]:
        """The ID token's claims once its signature and claims are checked."""
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(), metadata.algorithms)
            except InvalidKeyIdError:
                # The provider rotated its keys: read them again, once.
                token = jwt.decode(id_token, await self._key_set(refresh=True),
                                   metadata.algorithms)
        except InvalidKeyIdError:
            raise Refused("the ID token is signed with a key the provider does not"
                          " publish") from None
        except BadSignatureError:
            raise Refused("the ID token's signature is not valid") from None
        except (JoseError, ValueError) as e:
            raise Refused(f"the ID token cannot be read ({e})") from None
        claims = token.claims
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock.seconds()), leeway=int(self.settings.clock_skew),
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise Refused("the ID token has expired") from None
        except MissingClaimError as e:
            raise Refused(f"the ID token has no {e.claim!r} claim") from None
        except InvalidClaimError as e:
            raise Refused(f"the ID token's {e.claim!r} claim is not valid") from None
        except JoseError as e:
            raise Refused(f"the ID token's claims are not valid ({e})") from None
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 \
                and claims.get("azp") != self.settings.client_id:
            raise Refused("the ID token's azp is not this client")
        return dict(claims)

    async def _userinfo(self, metadata: _Metadata, access_token: str,
                        sub: str) -> dict[str, Any]:
        status, info = await self._call("GET", metadata.userinfo_endpoint, headers={
            "Authorization": f"Bearer {access_token}", "Accept": "application/json"})
        if status != 200 or not isinstance(info, dict):
            log.warn("{provider}: the userinfo endpoint answered {status}; using the ID"
                     " token's claims only", provider=self.name, status=status)
            return {}
        if info.get("sub") != sub:
            raise Refused("the userinfo endpoint names another subject")
        return info

    def _identity_of(self, claims: Mapping[str, Any]) -> ExternalIdentity:
        def text(key: str) -> str:
            value = claims.get(key)
            return value.strip()[:256] if isinstance(value, str) else ""

        verified = claims.get("email_verified") in (True, "true") or self.settings.trust_email
        email = text("email") if verified else ""
        first, last = text("given_name"), text("family_name")
        if not first and not last and text("name"):
            first, _, last = text("name").partition(" ")
        return ExternalIdentity(
            provider=self.name,
            identifier=f"{self.settings.issuer} {claims['sub']}",
            email=email, first_name=first[:64], last_name=last[:64],
            info={"issuer": self.settings.issuer, "sub": claims["sub"],
                  "email": text("email"), "email_verified": verified})

    # -- the provider's configuration and keys ----------------------------------

    async def _discover(self) -> _Metadata:
        now = self._clock.seconds()
        if self._metadata is not None and now - self._metadata.fetched < DISCOVERY_TTL:
            return self._metadata
        url = self.settings.issuer.rstrip("/") + DISCOVERY_PATH
        status, document = await self._call("GET", url)
        if status != 200 or not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.name}: {url} answered {status}")
        if document.get("issuer") != self.settings.issuer:
            raise ProviderUnavailable(
                f"{self.name}: the configuration names the issuer"
                f" {document.get('issuer')!r}, not {self.settings.issuer!r}")
        endpoints = {}
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                    "userinfo_endpoint"):
            value = document.get(key) or ""
            optional = key == "userinfo_endpoint" and not value
            if not isinstance(value, str) or not (optional or _safe_url(value)):
                raise ProviderUnavailable(f"{self.name}: the configuration's {key} is"
                                          f" not an https URL: {value!r}")
            endpoints[key] = value
        offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in ALGORITHMS if a in offered)
        if not algorithms:
            raise ProviderUnavailable(f"{self.name}: the provider signs ID tokens with"
                                      f" none of {', '.join(ALGORITHMS)}")
        metadata = _Metadata(algorithms=algorithms, fetched=now, **endpoints)
        if self._metadata is None or self._metadata.jwks_uri != metadata.jwks_uri:
            self._keys = None
        self._metadata = metadata
        return metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        """The provider's keys, read again after ``DISCOVERY_TTL`` seconds
        (so that a key it withdrew is not trusted for long) or when asked."""
        now = self._clock.seconds()
        if self._keys is not None and not refresh and now - self._keys_read < DISCOVERY_TTL:
            return self._keys
        metadata = await self._discover()
        status, document = await self._call("GET", metadata.jwks_uri)
        if status != 200 or not isinstance(document, dict):
            raise ProviderUnavailable(f"{self.name}: {metadata.jwks_uri} answered {status}")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as e:
            raise ProviderUnavailable(f"{self.name}: the provider's keys cannot be read"
                                      f" ({e})") from None
        self._keys, self._keys_read = keys, now
        return keys

    async def _call(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        client = self._http.client(Target(name=f"oidc-{self.settings.name}", base_url=url,
                                          ca_certificate=self.settings.ca_certificate,
                                          timeout=self.settings.timeout))
        try:
            return await client.json_request(method, "", **kwargs)  # type: ignore[no-any-return]
        except OutboundError as e:
            raise ProviderUnavailable(str(e)) from None


def from_config(config: Any, section: Any, http: Any, clock: Any,
                public_url: str) -> list[OIDCProvider]:
    """The providers ``[identity] oidc_providers`` names, each from its
    ``[oidc:NAME]`` section of ``config``; they share one ``PendingLogins``.

    @raise ConfigError: a name has no section, or a section's
        ``ca_certificate`` cannot be read.
    """
    logins = PendingLogins(clock, ttl=section.oidc_login_ttl)
    providers = []
    for name in section.oidc_providers:
        options = config.sections.get(f"oidc:{name}")
        if options is None:
            raise ConfigError(config.source, "identity", "oidc_providers",
                              f"{name!r} has no section [oidc:{name}]")
        ca = None
        if options.ca_certificate:
            try:
                ca = Path(options.ca_certificate).expanduser().read_text()
            except OSError as e:
                raise ConfigError(config.source, f"oidc:{name}", "ca_certificate",
                                  f"cannot read {options.ca_certificate}: {e.strerror}"
                                  ) from None
        settings = Settings(name=name, issuer=options.issuer, client_id=options.client_id,
                            client_secret=options.client_secret, scopes=options.scopes,
                            create_users=options.create_users,
                            trust_email=options.trust_email, ca_certificate=ca,
                            timeout=options.timeout or 10.0, clock_skew=options.clock_skew)
        providers.append(OIDCProvider(settings, http, clock, logins, public_url))
    listed = {f"oidc:{n}" for n in section.oidc_providers}
    for unused in sorted(n for n in config.sections if n.startswith("oidc:")
                         and n not in listed):
        log.warn("[{section}] is not in [identity] oidc_providers: not offered",
                 section=unused)
    return providers


def find(providers: Sequence[Any], name: str) -> OIDCProvider:
    """The OpenID Connect provider ``NAME`` among ``providers``; 404 if none."""
    for provider in providers:
        if isinstance(provider, OIDCProvider) and provider.settings.name == name:
            return provider
    raise errors.NotFound(f"No OpenID Connect provider is named {name!r}.")


def _random(size: int = 32) -> str:
    return secrets.token_urlsafe(size)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _challenge(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636, 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def cookie_value(header: str, name: str) -> str:
    """The value of cookie ``name`` in a ``Cookie`` header; ``""`` if absent."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip()
    return ""


def _safe_url(url: str) -> bool:
    """An https URL, or http on loopback (tests, development)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))
