"""The cloud's APIs besides the object store, as ``snf`` calls them:
identity, account (quotas, projects, commissions), compute, network,
image and volume.

``Cloud(transport, settings)`` takes the token and the catalog's public
endpoints that ``snf login`` stored (``snfd.client.config.Settings``);
``call(kind, method, path, body)`` sends JSON to the endpoint of service
type ``kind`` and answers the decoded JSON (None for an empty body).
Errors are ``ClientError`` with the API's own message (Keystone's, Nova's,
Neutron's ...) and its status, which ``snf`` turns into its exit code.
Creating calls (``POST``, ``PATCH``) are sent once: a retry could make a
second server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from snfd.client.config import Settings
from snfd.client.pithos import ClientError, Params, Transport

__all__ = ["ClientError", "Cloud"]

#: Other names a service type goes by in a catalog.
_ALIASES = {"volumev3": ("volumev3", "block-storage", "volume"),
            "account": ("account", "astakos_account")}


class Cloud:
    """One logged-in user's view of the cloud's APIs (module docstring)."""

    def __init__(self, transport: Transport, settings: Settings):
        if not settings.token or not settings.url:
            raise ClientError(0, "not logged in: run `snf login --url URL --user EMAIL` first")
        self.transport = transport
        self.settings = settings

    @property
    def user(self) -> str:
        return self.settings.user

    def endpoint(self, kind: str) -> str:
        """The public endpoint of service type ``kind``; the identity API
        is ``<url>/identity/v3`` whatever the catalog says."""
        if kind == "identity":
            return self.settings.url.rstrip("/") + "/identity/v3"
        for name in _ALIASES.get(kind, (kind,)):
            found = self.settings.endpoints.get(name)
            if found:
                return found.rstrip("/")
        raise ClientError(0, f"this cloud has no {kind} service (log in again if it was"
                             " added since)")

    def has(self, kind: str) -> bool:
        try:
            self.endpoint(kind)
        except ClientError:
            return False
        return True

    def request(self, kind: str, method: str, path: str, *, body: Any = None,
                data: bytes | None = None, params: Params | None = None,
                headers: Mapping[str, str] | None = None,
                ok: Iterable[int] = (200, 201, 202, 204)) -> Any:
        """Send one request; the ``requests`` response."""
        sent = {"X-Auth-Token": self.settings.token, "Accept": "application/json",
                **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            sent["Content-Type"] = "application/json"
        return self.transport.request(
            method, self.endpoint(kind) + path, params=params, headers=sent, data=data,
            ok=ok, idempotent=False if method in ("POST", "PATCH") else None)

    def call(self, kind: str, method: str, path: str, body: Any = None, *,
             params: Params | None = None, headers: Mapping[str, str] | None = None,
             ok: Iterable[int] = (200, 201, 202, 204)) -> Any:
        """Send JSON (``body``, unless None) and answer the decoded JSON
        reply (None when empty)."""
        resp = self.request(kind, method, path, body=body, params=params, headers=headers,
                            ok=ok)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ClientError(resp.status_code, f"{method} {path}: the answer is not JSON"
                              ) from None
