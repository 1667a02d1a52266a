"""Sign-up and email verification under ``/ui`` (Synnefo's URLs), beside
the web UI's files (``snfd.ui``).

- ``GET /ui/`` -> the web UI's page; ``GET /ui/static/<file>`` -> its
  files.  ``GET /ui`` -> 301 to ``/ui/``.  A browser's navigation (it asks
  for HTML) to ``/ui/activate`` gets the page too, which asks the person
  for the password and posts it as below; API clients get JSON.

- ``POST /ui/signup`` ``{"email", "password", "first_name", "last_name"}``
  -> 202 ``{"uuid", "state": "pending_verification"}`` and a mail; 429
  past the sign-ups allowed per address or per email.
- ``GET /ui/activate?auth=<code>`` (the link of the mail) -> 200: what to
  confirm; it changes nothing, so mail scanners that open links verify
  nothing.
- ``POST /ui/activate`` ``{"auth", "password"}`` (``auth`` may be in the
  query instead) -> 200 ``{"uuid", "state", "has_password"}``: the account
  is verified (waiting for moderation, or active) and ``password`` is its
  password from then on: the sign-up's one survives only when given again.
- ``POST /ui/token`` (with the user's token) -> 200 ``{"token",
  "expires"}``: a new primary token; every other token of the user stops
  working at once, on every node (Synnefo's "renew token").  Tokens are
  stored hashed: this is the only time the new one is shown.  A token
  made from an application credential may not (403): it would trade a
  limited credential for the user's full token.
- ``GET /ui/providers`` -> 200 ``{"providers": [{"name", "kind",
  "url"?}]}``: how a person may log in here (``password`` kinds on the
  login form, the others by opening ``url``).
- Both logins below answer a browser's navigation (it asks for HTML) with
  a 303 to ``/ui/#token=<token>`` instead of JSON: the app takes the
  token from the fragment (never sent to a server, dropped from the
  history at once) and keeps it as its session.
- ``GET /ui/login/shibboleth`` behind a front web server that authenticated
  the person and set its identity headers (provider ``shibboleth``)
  -> 200 ``{"uuid", "email", "token", "expires"}``; the first login
  creates the account.
- ``GET /ui/login/oidc/<name>`` (provider ``oidc:<name>``) -> 302 to the
  OpenID provider, with a cookie binding the login to the browser; the
  provider sends the browser back to ``GET /ui/login/oidc/<name>/callback``
  -> 200 ``{"uuid", "email", "token", "expires"}`` as for Shibboleth, or
  401 with the reason (see ``snfd.identity.oidc``).
- A native application's loopback hand-over (RFC 8252 with PKCE, RFC
  7636; what ``snf login --provider`` does): either login started with
  ``?next=<url>&state=<s>&code_challenge=<c>&code_challenge_method=S256``
  ends, once the person is known, in a 303 to ``<url>?code=<code>&
  state=<s>`` whatever the client asks for: no token, so none is left in
  the browser's history.  ``<url>`` must be plain http to the loopback
  (``127.0.0.1``, ``[::1]`` or ``localhost``, any port, a path and nothing
  else): any other target is 400 before anything happens; ``state`` (the
  application's, 1 to 256 URL-safe characters) and the challenge (the
  S256 of the application's secret verifier: 43 URL-safe base64
  characters; no other method) are required with it.  The OpenID Connect
  login carries them through the provider's round trip in a cookie of the
  browser (``snfd_loopback_<name>``, checked again at the callback); the
  Shibboleth one in its own URL (the front server's session handler
  returns the person to it).
- ``POST /ui/token/exchange`` ``{"code", "code_verifier"}`` -> 200
  ``{"uuid", "email", "token", "expires", "provider"}``: the token the
  login would have answered.  The code works once (the first attempt
  deletes it, whatever its outcome), for 60 seconds, and only with the
  verifier whose S256 is the login's challenge, on any node; otherwise
  400 "Invalid or expired code", which says no more.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from klein import Klein

from snfd import errors
from snfd.identity import oidc
from snfd.identity.accounts import Accounts
from snfd.identity.providers import Credentials
from snfd.identity.store import User
from snfd.ui import StaticFiles, shell, wants_page
from snfd.web.app import json_body, json_object, make_app, read_json
from snfd.web.auth import user_of

_SIGNUP_FIELDS = {"email", "password", "first_name", "last_name"}

#: The loopback targets of a native application's hand-over: plain http to
#: 127.0.0.1, [::1] or localhost, any port, a path of unreserved characters
#: (no query, fragment, user info or backslash: what a browser would read
#: differently from this pattern).
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\]|localhost)(?::([0-9]{1,5}))?"
                       r"(/[A-Za-z0-9._~/-]*)?\Z")
#: The application's ``state``: URL-safe characters only.
_STATE = re.compile(r"[A-Za-z0-9._~-]{1,256}\Z")
#: A PKCE S256 challenge: a SHA-256 in URL-safe base64, unpadded.
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}\Z")
#: The query arguments of a loopback hand-over.
LOOPBACK_ARGS = ("next", "state", "code_challenge", "code_challenge_method")
#: Prefix of the cookie that carries a loopback hand-over through an OpenID
#: Connect provider.
LOOPBACK_COOKIE = "snfd_loopback_"


class SignupAPI:
    def __init__(self, accounts: Accounts, max_body: int):
        self._accounts = accounts
        self._max_body = max_body
        self.app = self._routes()

    def resource(self) -> Any:
        return self.app.resource()

    def _routes(self) -> Klein:
        app = make_app()

        @app.route("/", methods=["GET", "HEAD"])
        def page(request: Any) -> bytes:
            if not request.path.endswith(b"/"):
                request.redirect(request.path + b"/")
                request.setResponseCode(301)
                return b""
            return shell(request)

        @app.route("/static/", branch=True, methods=["GET", "HEAD"])
        def files(request: Any) -> Any:
            return StaticFiles()

        @app.route("/signup", methods=["POST"])
        async def signup(request: Any) -> bytes:
            if not any(p.name == "local" for p in self._accounts.providers):
                raise errors.Forbidden("Sign-up with a password is not enabled here.")
            body = json_object(read_json(request, self._max_body))
            unknown = set(body) - _SIGNUP_FIELDS
            if unknown:
                raise errors.BadRequest(f"Unknown fields: {', '.join(sorted(unknown))}.")
            values = {}
            for field in _SIGNUP_FIELDS:
                value = body.get(field, "")
                if not isinstance(value, str):
                    raise errors.BadRequest(f"{field} must be a string.")
                values[field] = value
            if not values["password"]:
                raise errors.BadRequest("password is required.")
            user = await self._accounts.signup(
                values["email"], values["password"], values["first_name"],
                values["last_name"], source=_peer(request))
            return json_body(request, {"uuid": user.uuid, "state": user.state}, 202)

        @app.route("/activate", methods=["GET"])
        async def confirm(request: Any) -> bytes:
            """The page of the mailed link: what to confirm, nothing done."""
            if wants_page(request):
                return shell(request)
            code = _code(request.args.get(b"auth"))
            request.setHeader(b"cache-control", b"no-store")
            return json_body(request, {
                "action": "verify your email address", "method": "POST",
                "url": "/ui/activate", "auth": code,
                "fields": {"auth": "the code of the link",
                           "password": "the account's password from now on"}})

        @app.route("/activate", methods=["POST"])
        async def activate(request: Any) -> bytes:
            body = json_object(read_json(request, self._max_body, required=False) or {})
            code = body["auth"] if "auth" in body else _code(request.args.get(b"auth"))
            password = body.get("password") or None
            if not isinstance(code, str) or (password is not None
                                             and not isinstance(password, str)):
                raise errors.BadRequest("auth and password must be strings.")
            user = await self._accounts.verify(code, password)
            return json_body(request, {"uuid": user.uuid, "state": user.state,
                                       "has_password": user.has_password})

        @app.route("/token", methods=["POST"])
        async def renew(request: Any) -> bytes:
            """Renew the caller's token (docstring above)."""
            user = user_of(request)
            assert user.user is not None
            if user.app_credential is not None:
                # It would trade a limited credential for the user's full token.
                raise errors.Forbidden("An application credential cannot renew the"
                                       " user's token.")
            secret = await self._accounts.renew_token(user.user)
            token = await self._accounts.validate(secret)
            request.setHeader(b"cache-control", b"no-store")
            return json_body(request, {"token": secret,
                                       "expires": token.expires_at.isoformat()})

        @app.route("/token/exchange", methods=["POST"])
        async def exchange(request: Any) -> bytes:
            """A native application trades the code of its loopback login
            and its PKCE verifier for the token (module docstring)."""
            request.setHeader(b"cache-control", b"no-store")
            body = json_object(read_json(request, self._max_body))
            code, verifier = body.get("code"), body.get("code_verifier")
            if not (isinstance(code, str) and code and isinstance(verifier, str)
                    and verifier):
                raise errors.BadRequest("code and code_verifier are required (strings).")
            user, secret, token, provider = await self._accounts.redeem_login_code(
                code, verifier)
            return json_body(request, {"uuid": user.uuid, "email": user.email,
                                       "token": secret, "provider": provider,
                                       "expires": token.expires_at.isoformat()})

        @app.route("/providers", methods=["GET"])
        def providers(request: Any) -> bytes:
            found = []
            for p in self._accounts.providers:
                if p.name in ("local", "ldap"):
                    found.append({"name": p.name, "kind": "password"})
                elif p.name == "shibboleth":
                    found.append({"name": p.name, "kind": "redirect",
                                  "url": "/ui/login/shibboleth"})
                elif p.name.startswith("oidc:"):
                    found.append({"name": p.name, "kind": "redirect",
                                  "url": f"/ui/login/oidc/{p.name[5:]}"})
            return json_body(request, {"providers": found})

        @app.route("/login/shibboleth", methods=["GET", "POST"])
        async def shibboleth(request: Any) -> bytes:
            """The front web server authenticated the person and set the
            identity headers; answer a new token for them (a loopback
            login: a code to exchange for it)."""
            loopback = _loopback({k: _arg(request, k) for k in LOOPBACK_ARGS})
            headers = {k.decode("latin-1").lower(): v[0].decode("utf-8", "replace")
                       for k, v in request.requestHeaders.getAllRawHeaders()}
            credentials = Credentials(headers=headers, source=_peer(request))
            user = await self._accounts.login(credentials, only="shibboleth")
            return await self._logged_in(request, user, ("shibboleth",), "shibboleth",
                                         loopback)

        @app.route("/login/oidc/<name>", methods=["GET"])
        async def oidc_begin(request: Any, name: str) -> bytes:
            """Send the browser to the OpenID provider ``name``."""
            provider = oidc.find(self._accounts.providers, name)
            loopback = _loopback({k: _arg(request, k) for k in LOOPBACK_ARGS})
            redirect = await provider.begin(_peer(request))
            secure = provider.redirect_uri.startswith("https:")
            request.addCookie(redirect.cookie_name.encode(), redirect.cookie.encode(),
                              path=redirect.cookie_path.encode(), max_age=str(redirect.max_age),
                              httpOnly=True, sameSite="lax", secure=secure)
            # Set, or dropped when an abandoned login left one: it must not
            # capture this login.
            carried = LOOPBACK_COOKIE + provider.settings.name
            if loopback or oidc.cookie_value(_header(request, b"cookie"), carried):
                request.addCookie(carried.encode(),
                                  urlencode(loopback).encode() if loopback else b"",
                                  path=redirect.cookie_path.encode(),
                                  max_age=str(redirect.max_age if loopback else 0),
                                  httpOnly=True, sameSite="lax", secure=secure)
            request.setHeader(b"cache-control", b"no-store")
            request.redirect(redirect.url.encode())
            return b""

        @app.route("/login/oidc/<name>/callback", methods=["GET"])
        async def oidc_callback(request: Any, name: str) -> bytes:
            """The provider sent the browser back: complete the login and
            answer a new token (or a loopback login's code), as the
            Shibboleth login does."""
            provider = oidc.find(self._accounts.providers, name)
            params = {key: (request.args.get(key.encode()) or [b""])[0].decode("utf-8", "replace")
                      for key in ("state", "code", "error")}
            headers = {k.decode("latin-1").lower(): v[0].decode("utf-8", "replace")
                       for k, v in request.requestHeaders.getAllRawHeaders()}
            carried = oidc.cookie_value(headers.get("cookie", ""),
                                        LOOPBACK_COOKIE + provider.settings.name)
            for cookie in (provider.cookie_name,
                           *([LOOPBACK_COOKIE + provider.settings.name] if carried else [])):
                request.addCookie(cookie.encode(), b"", max_age="0",
                                  path=provider.path.encode(), httpOnly=True, sameSite="lax")
            loopback = _loopback(dict(parse_qsl(carried)))
            request.setHeader(b"cache-control", b"no-store")
            credentials = Credentials(headers=headers, source=_peer(request), params=params)
            user = await self._accounts.login(credentials, only=provider.name)
            return await self._logged_in(request, user, ("openid",), provider.name, loopback,
                                         {"provider": provider.name})

        return app

    async def _logged_in(self, request: Any, user: User, methods: Sequence[str],
                         provider: str, loopback: dict[str, str] | None,
                         extra: Mapping[str, Any] | None = None) -> bytes:
        """A login's answer once the person is known: for a native
        application's loopback login, a one-time code (no token) in a 303
        to its target; else a new token (``_handoff``)."""
        request.setHeader(b"cache-control", b"no-store")
        if loopback:
            code = await self._accounts.issue_login_code(
                user, loopback["code_challenge"], methods, provider)
            request.setResponseCode(303)
            query = urlencode({"code": code, "state": loopback["state"]})
            request.setHeader(b"location", f"{loopback['next']}?{query}".encode())
            request.setHeader(b"referrer-policy", b"no-referrer")
            return b""
        secret, token = await self._accounts.issue_token(user, methods=methods)
        return _handoff(request, {"uuid": user.uuid, "email": user.email, "token": secret,
                                  **(extra or {}), "expires": token.expires_at.isoformat()})


def _handoff(request: Any, login: dict[str, Any]) -> bytes:
    """A login's answer with its token: JSON for an API client; for a
    browser, a 303 to the app with the token in the fragment (module
    docstring)."""
    request.setHeader(b"cache-control", b"no-store")
    if wants_page(request):
        request.setResponseCode(303)
        request.setHeader(b"location", f"/ui/#token={login['token']}".encode())
        return b""
    return json_body(request, login)


def _header(request: Any, name: bytes) -> str:
    return (request.getHeader(name) or b"").decode("latin-1")


def _arg(request: Any, name: str) -> str | None:
    """The query argument ``name`` (the first one); None when absent."""
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def loopback_target(url: str) -> str | None:
    """``url`` rebuilt from its parts when it is a loopback target a native
    application may be handed a login code at (``_LOOPBACK``); None
    otherwise."""
    match = _LOOPBACK.match(url)
    if match is None:
        return None
    host, port, path = match.groups()
    if port is not None and not 0 < int(port) < 65536:
        return None
    return f"http://{host}{f':{int(port)}' if port else ''}{path or '/'}"


def _loopback(args: Mapping[str, str | None]) -> dict[str, str] | None:
    """The loopback hand-over a login was started with (``LOOPBACK_ARGS``
    of ``args``), None without one; 400 for any other target, or without a
    well-formed state, or without an S256 code challenge."""
    if all(args.get(k) is None for k in LOOPBACK_ARGS):
        return None
    target = loopback_target(args.get("next") or "")
    if target is None:
        raise errors.BadRequest("next must be a plain http URL of the loopback"
                                " (http://127.0.0.1:PORT/PATH, [::1] or localhost).")
    state = args.get("state")
    if state is None or not _STATE.match(state):
        raise errors.BadRequest("A loopback login needs its state (1 to 256 URL-safe"
                                " characters).")
    challenge = args.get("code_challenge")
    if args.get("code_challenge_method") != "S256" or not _CHALLENGE.match(challenge or ""):
        raise errors.BadRequest("A loopback login needs a PKCE code_challenge with"
                                " code_challenge_method=S256 (the URL-safe base64 of the"
                                " verifier's SHA-256, 43 characters).")
    return {"next": target, "state": state, "code_challenge": challenge or "",
            "code_challenge_method": "S256"}


def _code(values: list[bytes] | None) -> str:
    """The verification code of a link's ``auth`` argument; 400 without one."""
    code = (values or [b""])[0].decode("ascii", "replace").strip()
    if not code:
        raise errors.BadRequest("The link has no verification code (auth=...).")
    return code


def _peer(request: Any) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")
