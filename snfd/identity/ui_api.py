"""Sign-up and email verification under ``/ui`` (Synnefo's URLs).

The web UI is to come; until then these answer JSON so that a person can
sign up with curl and follow the link of the verification mail.

- ``POST /ui/signup`` ``{"email", "password", "first_name", "last_name"}``
  -> 202 ``{"uuid", "state": "pending_verification"}`` and a mail.
- ``GET /ui/activate?auth=<code>`` -> 200 ``{"uuid", "state"}``: the
  account is verified (waiting for moderation, or active).
- ``GET /ui/login/shibboleth`` behind a front web server that authenticated
  the person and set its identity headers (provider ``shibboleth``)
  -> 200 ``{"uuid", "email", "token", "expires"}``; the first login
  creates the account.
"""

from __future__ import annotations

from typing import Any

from klein import Klein

from snfd import errors
from snfd.identity.accounts import Accounts
from snfd.identity.providers import Credentials
from snfd.web.app import json_body, json_object, make_app, read_json

_SIGNUP_FIELDS = {"email", "password", "first_name", "last_name"}


class SignupAPI:
    def __init__(self, accounts: Accounts, max_body: int):
        self._accounts = accounts
        self._max_body = max_body
        self.app = self._routes()

    def resource(self) -> Any:
        return self.app.resource()

    def _routes(self) -> Klein:
        app = make_app()

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
            user, _ = await self._accounts.create_user(
                values["email"], values["first_name"], values["last_name"],
                password=values["password"])
            return json_body(request, {"uuid": user.uuid, "state": user.state}, 202)

        @app.route("/activate", methods=["GET"])
        async def activate(request: Any) -> bytes:
            codes = request.args.get(b"auth") or [b""]
            code = codes[0].decode("ascii", "replace").strip()
            if not code:
                raise errors.BadRequest("The link has no verification code (auth=...).")
            user = await self._accounts.verify(code)
            return json_body(request, {"uuid": user.uuid, "state": user.state})

        @app.route("/login/shibboleth", methods=["GET", "POST"])
        async def shibboleth(request: Any) -> bytes:
            """The front web server authenticated the person and set the
            identity headers; answer a new token for them."""
            headers = {k.decode("latin-1").lower(): v[0].decode("utf-8", "replace")
                       for k, v in request.requestHeaders.getAllRawHeaders()}
            credentials = Credentials(headers=headers, source=_peer(request))
            user = await self._accounts.login(credentials, only="shibboleth")
            secret, token = await self._accounts.issue_token(user, methods=("shibboleth",))
            return json_body(request, {"uuid": user.uuid, "email": user.email,
                                       "token": secret,
                                       "expires": token.expires_at.isoformat()})

        return app


def _peer(request: Any) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")
