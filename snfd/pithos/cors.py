"""Cross-origin resource sharing on containers and objects, as Swift's
proxy serves it, as a ``Filter`` (``snfd.pithos.middleware``).

A container's metadata set the rules for it and its objects::

    X-Container-Meta-Access-Control-Allow-Origin    https://a.example https://b.example
                                                    (space-separated, or *)
    X-Container-Meta-Access-Control-Max-Age         3600
    X-Container-Meta-Access-Control-Expose-Headers  x-object-meta-color etag
                                                    (space-separated)

- A preflight (``OPTIONS`` with ``Origin``) needs no token.  It is 200 with
  ``Access-Control-Allow-Origin`` (``*`` when the container allows any
  origin, else the origin itself with ``Vary: Origin``),
  ``-Allow-Methods`` (what the path answers), ``-Allow-Headers`` (those
  requested), ``-Max-Age`` (when set), when the origin is allowed and the
  requested method is one the path answers; 401 otherwise.  ``OPTIONS``
  without ``Origin``, and on an account or the top level (no CORS
  there), is 200 with ``Allow``.
- An actual request carrying an allowed ``Origin`` to a container or
  object gets ``Access-Control-Allow-Origin`` and
  ``Access-Control-Expose-Headers`` (the simple response headers,
  ``ETag``, ``X-Timestamp``, the transaction ids, the reply's
  ``X-Container-Meta-*``/``X-Object-Meta-*`` headers and those the
  container names), errors included.  An origin the container does not
  allow gets no CORS headers (Swift's ``strict_cors_mode``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from snfd import errors
from snfd.pithos.middleware import Handler, container_settings
from snfd.pithos.requests import Call, Reply

ALLOW_ORIGIN = "X-Container-Meta-Access-Control-Allow-Origin"
MAX_AGE = "X-Container-Meta-Access-Control-Max-Age"
EXPOSE_HEADERS = "X-Container-Meta-Access-Control-Expose-Headers"

EXPOSED = ("cache-control", "content-language", "content-type", "expires",
           "last-modified", "pragma", "etag", "x-timestamp", "x-trans-id",
           "x-openstack-request-id")
"""What every CORS reply lets the browser read: the simple response
headers and Swift's own."""

METHODS = {
    "top": ("GET", "HEAD"),
    "account": ("DELETE", "GET", "HEAD", "POST"),
    "container": ("DELETE", "GET", "HEAD", "POST", "PUT"),
    "object": ("COPY", "DELETE", "GET", "HEAD", "MOVE", "POST", "PUT"),
}
"""The methods each level answers (besides ``OPTIONS``), as the API routes them."""


@attrs.frozen
class Rules:
    """A container's CORS settings (``None`` or empty when unset)."""

    allow_origin: str = ""
    max_age: str | None = None
    expose_headers: str = ""

    @classmethod
    def of(cls, meta: Mapping[str, str]) -> Rules:
        return cls(meta.get(ALLOW_ORIGIN, "").strip(), meta.get(MAX_AGE),
                   meta.get(EXPOSE_HEADERS, ""))

    @property
    def any_origin(self) -> bool:
        return self.allow_origin == "*"

    def allows(self, origin: str) -> bool:
        allowed = self.allow_origin.split()
        return "*" in allowed or origin in allowed


def allowed_methods(level: str) -> str:
    """The ``Allow`` value of a level."""
    return ", ".join((*METHODS[level], "OPTIONS"))


def origin_headers(rules: Rules, origin: str) -> list[tuple[str, str]]:
    """``Access-Control-Allow-Origin`` for an allowed ``origin`` (and
    ``Vary: Origin`` when the answer depends on it)."""
    if rules.any_origin:
        return [("Access-Control-Allow-Origin", "*")]
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]


def exposed(reply_headers: list[str], rules: Rules) -> str:
    """``Access-Control-Expose-Headers`` for a reply with these header names."""
    names = list(EXPOSED)
    names += [n.lower() for n in reply_headers
              if n.lower().startswith(("x-container-meta-", "x-object-meta-"))]
    names += [n.strip().lower() for n in rules.expose_headers.split() if n.strip()]
    return ", ".join(dict.fromkeys(names))


class CORS:
    """The CORS ``Filter``; see the module docstring."""

    def __init__(self, backend: Any):
        self.backend = backend

    @classmethod
    def from_api(cls, api: Any) -> CORS:
        """The filter of ``api`` (a ``PithosAPI``)."""
        return cls(api.backend)

    def info(self) -> dict[str, Any]:
        return {}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        if call.method == "OPTIONS":
            return await self._preflight(call)
        origin = call.header("Origin")
        if origin is None or call.target.container is None:
            return await app(call)
        rules = await self._rules(call)
        if not rules.allows(origin):
            return await app(call)
        try:
            reply = await app(call)
        except errors.Fault as e:
            names = list(e.headers)
            for name, value in [("Access-Control-Expose-Headers", exposed(names, rules)),
                                *origin_headers(rules, origin)]:
                e.headers.setdefault(name, value)
            raise
        names = [n for n, _ in reply.headers]
        present = {n.lower() for n in names}
        if "access-control-expose-headers" not in present:
            reply.headers.append(("Access-Control-Expose-Headers", exposed(names, rules)))
        if "access-control-allow-origin" not in present:
            reply.headers += origin_headers(rules, origin)
        return reply

    async def _rules(self, call: Call) -> Rules:
        t = call.target
        assert t.account is not None and t.container is not None
        settings = await container_settings(call, self.backend, t.account, t.container)
        return Rules.of(settings.meta if settings is not None else {})

    async def _preflight(self, call: Call) -> Reply:
        level = call.target.level
        allow = allowed_methods(level)
        headers = [("Allow", allow)]
        origin = call.header("Origin")
        if origin is None or call.target.container is None:
            return Reply(200, headers)
        rules = await self._rules(call)
        method = (call.header("Access-Control-Request-Method") or "").strip()
        if not rules.allows(origin) or method not in (*METHODS[level], "OPTIONS"):
            return Reply(401, headers)
        headers += origin_headers(rules, origin)
        if rules.max_age is not None:
            headers.append(("Access-Control-Max-Age", rules.max_age))
        headers.append(("Access-Control-Allow-Methods", allow))
        asked = [h.strip() for h in (call.header("Access-Control-Request-Headers") or "")
                 .split(",") if h.strip()]
        if asked:
            headers.append(("Access-Control-Allow-Headers", ", ".join(dict.fromkeys(asked))))
            vary = [v for n, v in headers if n == "Vary"]
            headers = [(n, v) for n, v in headers if n != "Vary"]
            headers.append(("Vary", ", ".join([*vary, "Access-Control-Request-Headers"])))
        return Reply(200, headers)


__all__ = ["CORS", "EXPOSED", "METHODS", "Rules", "allowed_methods", "exposed",
           "origin_headers"]
