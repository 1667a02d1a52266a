"""Token validation over HTTP, for nodes that do not run the identity
service: ``IAuthenticator`` asking the Keystone API of a node that does
(``GET /identity/v3/auth/tokens`` with the component token as
``X-Auth-Token`` and the user's as ``X-Subject-Token``).

Answers are cached for ``ttl`` seconds (default 2; 0 disables it) of the
monotonic clock; this cache gets no invalidations, so a renewed or revoked
token may be accepted here for at most ``ttl`` seconds more, however the
wall clock is set.  Nodes that share the cluster
database should run the identity plugin instead: its cache is invalidated
everywhere at once.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from zope.interface import implementer

from snfd import errors
from snfd.httpclient import HTTPClientPool, OutboundError, Target
from snfd.identity.tokens import TokenCache
from snfd.interfaces import IAuthenticator
from snfd.web.auth import Principal


@implementer(IAuthenticator)
class RemoteAuthenticator:
    def __init__(self, http: HTTPClientPool, clock: Any, identity_url: str,
                 component_token: str, ttl: float = 2.0, timeout: float = 10.0,
                 ca_certificate: str | bytes | None = None, monotonic: Any = None):
        base = identity_url.rstrip("/")
        if not base.endswith("/v3"):
            base += "/v3"
        self._client = http.client(Target(name="identity", base_url=base, timeout=timeout,
                                          ca_certificate=ca_certificate))
        self._token = component_token
        self._cache = TokenCache(clock, ttl, monotonic=monotonic)

    async def authenticate(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode("utf-8")).digest()
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            status, body = await self._client.json_request(
                "GET", "auth/tokens?nocatalog",
                headers={"X-Auth-Token": self._token, "X-Subject-Token": token})
        except OutboundError as e:
            raise errors.ServiceUnavailable(f"The identity service is unavailable: {e}") from None
        if status == 404:  # the subject token is unknown or expired
            raise errors.Unauthorized("Invalid token")
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            raise errors.ServiceUnavailable(
                f"The identity service answered {status} to a token validation.")
        principal = principal_from_keystone(body["token"])
        self._cache.put(key, f"user:{principal.user}", principal,
                        not_after=principal.expires_at.timestamp()
                        if principal.expires_at else None)
        return principal


def principal_from_keystone(token: dict[str, Any]) -> Principal:
    """The ``Principal`` a Keystone v3 token body describes."""
    try:
        user = token["user"]
        project = (token.get("project") or {}).get("id")
        cred = token.get("application_credential") or {}
        rules = tuple((r["service"], r["method"], r["path"])
                      for r in cred.get("access_rules") or ()) or None
        return Principal(
            user=user["id"], email=user.get("name", ""),
            name=user.get("SNF:display_name") or user.get("name", ""),
            is_admin=bool(user.get("SNF:admin")), groups=tuple(user.get("SNF:groups") or ()),
            project=project, expires_at=_when(token.get("expires_at")),
            issued_at=_when(token.get("issued_at")),
            audit_ids=tuple(token.get("audit_ids") or ()),
            methods=tuple(token.get("methods") or ()), app_credential=cred.get("id"),
            access_rules=rules,
            roles=tuple(r["name"] for r in token.get("roles") or ()),
            system=bool((token.get("system") or {}).get("all")))
    except (KeyError, TypeError, AttributeError):
        raise errors.ServiceUnavailable(
            "The identity service sent a token body this node cannot read.") from None


def _when(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
