"""Swift's TempURL: a signed, expiring URL that reads or writes one object
(or the objects under one prefix) without a token.

The account owner sets a key (``X-Account-Meta-Temp-URL-Key`` or
``-Key-2``, or the container's ``X-Container-Meta-Temp-URL-Key`` /
``-Key-2``) and signs ``METHOD\\nEXPIRES\\nPATH`` with HMAC, where PATH is
``/v1/<account>/<container>/<object>`` (or ``prefix:/v1/<account>/<container>/<prefix>``
with ``temp_url_prefix``).  The URL carries ``temp_url_sig`` (hex of a
SHA-1, SHA-256 or SHA-512 HMAC, or ``<digest>:<base64>``) and
``temp_url_expires`` (epoch seconds, or ISO 8601 ``2026-01-01T00:00:00Z``).

A valid temp URL makes the call act as the account owner on that one
object: the ``TempURL`` filter sets the call's principal and hands it on
with only the temp URL parameters left in its query (Swift does the same),
so ``?multipart-manifest``, ``?delimiter``, ``?hashmap`` and the like
never reach the handlers.  ``HEAD`` is also allowed by a ``GET``, ``PUT``
or ``POST`` signature.  Anything wrong (no key, a bad or expired
signature, another method, not an object path) is Swift's 401 with its
body ``401 Unauthorized: Temp URL invalid``.

Where snfd differs from Swift:

- The signed path may also carry the mount point of the object store
  (``/object-store/v1/...``): tempest signs the path of the storage URL
  as the catalog gives it.  Both name the same object.
- Besides Swift's refused ``X-Object-Manifest`` and ``X-Symlink-Target``
  (400 on writes), the headers that would make the call reach another
  object or grant lasting access are refused too: copies and moves
  (``X-Copy-From``, ``X-Move-From``, ``X-Source-Object``, ...), and the
  Pithos sharing headers (``X-Object-Sharing``, ``X-Object-Public``).
  Swift lets a temp URL ``PUT`` copy from the key's account or container.
- An account or container ``POST`` without ``?update`` replaces the
  user metadata in Pithos; the temp URL keys it does not name are kept
  (Swift's ``POST`` never drops metadata it does not name, and clients
  set ``Temp-URL-Key`` and ``Temp-URL-Key-2`` in separate requests).
- Replies leave out ``X-Object-Meta-*`` (except ``X-Object-Meta-Public-*``)
  as Swift does, and the owner's view of Pithos sharing
  (``X-Object-Public``, ``X-Object-Sharing``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hmac
import posixpath
import re
import time
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos.middleware import Handler
from snfd.pithos.requests import Call, Reply, raw_postpath
from snfd.web.auth import Principal

DIGESTS = ("sha1", "sha256", "sha512")
"""The HMAC digests a signature may use."""
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
"""The methods a temp URL may be signed for."""
HEAD_BY = ("HEAD", "GET", "POST", "PUT")
"""The signatures that also allow a ``HEAD``."""
INVALID = "401 Unauthorized: Temp URL invalid\n"
"""Swift's body for a refused temp URL."""

ACCOUNT_KEYS = ("x-account-meta-temp-url-key", "x-account-meta-temp-url-key-2")
CONTAINER_KEYS = ("x-container-meta-temp-url-key", "x-container-meta-temp-url-key-2")

INCOMING_REMOVE = ("x-timestamp",)
"""Request headers dropped from a temp URL call (Swift's default)."""
DISALLOWED = ("X-Object-Manifest", "X-Symlink-Target")
"""Headers Swift refuses on temp URL writes: a pointer to data the URL
does not cover."""
BEYOND_ONE_OBJECT = ("X-Copy-From", "X-Copy-From-Account", "X-Move-From", "X-Source-Object",
                     "X-Source-Account", "X-Source-Version", "X-Symlink-Target-Account",
                     "Destination", "Destination-Account", "X-Object-Sharing",
                     "X-Object-Public")
"""Headers refused on temp URL writes in snfd (see the module docstring)."""
OUTGOING_REMOVE = ("x-object-meta-*", "x-object-public", "x-object-sharing")
OUTGOING_ALLOW = ("x-object-meta-public-*",)

_ISO8601 = "%Y-%m-%dT%H:%M:%SZ"
_HEX = {40: "sha1", 64: "sha256", 128: "sha512"}
_B64 = re.compile(r"^[A-Za-z0-9+/]*$")


# -- the rules, as functions ------------------------------------------------------


def parse_signature(given: str) -> tuple[str, str] | None:
    """``(digest, lowercase-or-as-given hex)`` of a signature: hex (its
    length names the digest) or ``<digest>:<base64>`` (standard or
    URL-safe alphabet, padding optional); ``None`` when it is neither."""
    if ":" in given:
        digest, encoded = given.split(":", 1)
        if ("-" in encoded or "_" in encoded) and not ("+" in encoded or "/" in encoded):
            encoded = encoded.replace("-", "+").replace("_", "/")
        encoded = encoded.rstrip("=")
        if not _B64.match(encoded) or len(encoded) % 4 == 1:
            return None
        try:
            raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
        return digest, raw.hex()
    try:
        bytes.fromhex(given)
    except ValueError:
        return None
    named = _HEX.get(len(given))
    return (named, given) if named else None


def signature(key: str, message: str, digest: str) -> str:
    """The hex HMAC of ``message`` under ``key``."""
    return hmac.new(key.encode("utf-8"), message.encode("utf-8"), digest).hexdigest()


def matches(given_hex: str, key: str, message: str, digest: str) -> bool:
    """Whether ``given_hex`` is the signature of ``message`` (in constant
    time)."""
    return hmac.compare_digest(given_hex.encode("ascii", "replace"),
                               signature(key, message, digest).encode("ascii"))


def parse_expires(value: str, now: float) -> int:
    """``temp_url_expires`` as epoch seconds (integer or ISO 8601 UTC);
    ``0`` when unreadable or past ``now``."""
    try:
        expires = int(value)
    except ValueError:
        try:
            expires = calendar.timegm(time.strptime(value, _ISO8601))
        except ValueError:
            return 0
    return expires if expires >= now else 0


def signed_paths(request: Any) -> list[str]:
    """The paths a signature of this request may name: Swift's, from
    ``/v1`` on, and the same below the object store's mount point (see
    the module docstring).  Percent-decoded, as Swift signs them."""
    postpath = b"/".join(raw_postpath(request))
    raw: bytes = request.path
    mount = raw[:len(raw) - len(postpath)].rstrip(b"/") if raw.endswith(postpath) else b""
    swift_path = "/" + unquote_to_bytes(postpath).decode("utf-8", "replace")
    paths = [swift_path]
    if mount:
        paths.append(unquote_to_bytes(mount).decode("utf-8", "replace") + swift_path)
    return paths


def key_values(meta: dict[str, str], names: tuple[str, ...]) -> list[str]:
    """The non-empty values of the metadata keys ``names`` (any case)."""
    return [v for k, v in meta.items() if k.lower() in names and v]


async def signing_keys(backend: Any, account: str, container: str | None) -> list[str]:
    """The temp URL keys of ``account`` and its ``container``, read as the
    account owner (an unknown account or container has none).  FormPost
    signs with the same keys."""
    keys: list[str] = []
    try:
        info = await backend.account_settings(account)
        keys += key_values(info.meta, ACCOUNT_KEYS)
    except errors.NotFound:
        pass
    if container is not None:
        try:
            cinfo = await backend.container(account, account, container)
            keys += key_values(cinfo.meta, CONTAINER_KEYS)
        except errors.NotFound:
            pass
    return keys


def disposition(filename: str, kind: str) -> str:
    """Swift's ``Content-Disposition`` naming ``filename`` (RFC 6266, with
    ``filename*`` for any name)."""
    return (f'{kind}; filename="{quote(filename, safe=" /")}"; '
            f"filename*=UTF-8''{quote(filename)}")


def _outgoing(name: str) -> bool:
    """Whether a reply header survives a temp URL call."""
    lower = name.lower()

    def listed(patterns: tuple[str, ...]) -> bool:
        return any(lower.startswith(p[:-1]) if p.endswith("*") else lower == p
                   for p in patterns)

    return listed(OUTGOING_ALLOW) or not listed(OUTGOING_REMOVE)


def _invalid(call: Call) -> errors.Unauthorized:
    realm = quote(call.target.account or "unknown")
    return errors.Unauthorized(INVALID, headers={"WWW-Authenticate": f'Swift realm="{realm}"'})


# -- the filter -------------------------------------------------------------------


class TempURL:
    """The ``Filter`` serving temp URLs (see the module docstring).

    @param backend: the ``Backend`` (the keys).
    @param clock: what tells the time (``seconds()``; the backend's clock).
    """

    def __init__(self, backend: Any, clock: Any):
        self.backend = backend
        self.clock = clock

    @classmethod
    def from_api(cls, api: Any) -> TempURL:
        """The filter of a ``PithosAPI``."""
        return cls(api.backend, api.backend.clock)

    def info(self) -> dict[str, Any]:
        return {"tempurl": {
            "methods": list(METHODS),
            "incoming_remove_headers": list(INCOMING_REMOVE),
            "incoming_allow_headers": [],
            "outgoing_remove_headers": list(OUTGOING_REMOVE),
            "outgoing_allow_headers": list(OUTGOING_ALLOW),
            "allowed_digests": list(DIGESTS),
        }}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        if call.method == "OPTIONS" or (not call.has("temp_url_sig")
                                        and not call.has("temp_url_expires")):
            if call.method == "POST" and call.target.level in ("account", "container") \
                    and not call.flag("update"):
                await self._keep_keys(call)
            return await app(call)
        given_sig = call.get("temp_url_sig") or ""
        expires = parse_expires(call.get("temp_url_expires") or "", self.clock.seconds())
        prefix = call.get("temp_url_prefix")
        t = call.target
        if not given_sig or not expires or call.method not in METHODS or \
                t.level != "object":
            raise _invalid(call)
        assert t.account is not None and t.container is not None and t.name is not None
        parsed = parse_signature(given_sig)
        if parsed is None or parsed[0] not in DIGESTS:
            raise _invalid(call)
        digest, given_hex = parsed
        if prefix is not None and not t.name.startswith(prefix):
            raise _invalid(call)
        keys = await signing_keys(self.backend, t.account, t.container)
        if not keys:
            raise _invalid(call)
        paths = signed_paths(call.request)
        if prefix is not None:
            # The prefix replaces the object name in the signed path.
            base = f"/{t.account}/{t.container}/{t.name}"
            paths = [f"prefix:{p[:len(p) - len(base)]}/{t.account}/{t.container}/{prefix}"
                     for p in paths if p.endswith(base)]
        methods = HEAD_BY if call.method == "HEAD" else (call.method,)
        if not any(matches(given_hex, key, f"{method}\n{expires}\n{path}", digest)
                   for method in methods for path in paths for key in keys):
            raise _invalid(call)
        self._check_headers(call)
        call.request.principal = Principal(user=t.account)
        args = {"temp_url_sig": given_sig, "temp_url_expires": str(expires)}
        if prefix is not None:
            args["temp_url_prefix"] = prefix
        reply = await app(Call(call.request, call.method, t, args))
        reply.headers = [(k, v) for k, v in reply.headers if _outgoing(k)]
        if call.method in ("GET", "HEAD") and 200 <= reply.code < 300:
            self._disposition(call, reply, expires)
        return reply

    async def _keep_keys(self, call: Call) -> None:
        """A ``POST`` that replaces the account's (container's) metadata
        keeps the temp URL keys it does not name (see the module
        docstring): they are added to it as they are."""
        t = call.target
        assert t.account is not None
        kind = "account" if t.level == "account" else "container"
        heads = call.request.requestHeaders
        names = [k.decode("latin-1").lower() for k, _ in heads.getAllRawHeaders()]
        given = [n for n in names if n.startswith((f"x-{kind}-meta-", f"x-remove-{kind}-meta-"))]
        if not given:
            return  # nothing is replaced
        if kind == "account":
            try:
                meta = (await self.backend.account_settings(t.account)).meta
            except errors.Fault:
                return
        else:
            assert t.container is not None
            try:
                meta = (await self.backend.container(t.account, t.account, t.container)).meta
            except errors.Fault:
                return  # the handler answers
        for key in ACCOUNT_KEYS if kind == "account" else CONTAINER_KEYS:
            named = key in given or key.replace("x-", "x-remove-", 1) in given
            value = next((v for k, v in meta.items() if k.lower() == key and v), None)
            if value is not None and not named:
                heads.addRawHeader(key.encode("ascii"), value.encode("utf-8"))

    @staticmethod
    def _check_headers(call: Call) -> None:
        """Drop Swift's incoming headers; refuse those reaching beyond the
        one object on a write."""
        heads = call.request.requestHeaders
        for name in INCOMING_REMOVE:
            heads.removeHeader(name.encode("ascii"))
        if call.method in ("GET", "HEAD"):
            return
        for name in DISALLOWED + BEYOND_ONE_OBJECT:
            if heads.hasHeader(name.encode("ascii")):
                raise errors.BadRequest(f"The header {name!r} is not allowed in this tempurl")

    @staticmethod
    def _disposition(call: Call, reply: Reply, expires: int) -> None:
        """Swift's ``Content-Disposition`` (``inline``, ``filename``, the
        object's own, else an attachment named after the object) and
        ``Expires``."""
        filename = call.get("filename")
        existing = None
        kept = []
        for k, v in reply.headers:
            if k.lower() == "content-disposition":
                existing = v
            else:
                kept.append((k, v))
        if call.has("inline"):
            value = disposition(filename, "inline") if filename else "inline"
        elif filename:
            value = disposition(filename, "attachment")
        elif existing:
            value = existing
        else:
            assert call.target.name is not None
            value = disposition(posixpath.basename(call.target.name.rstrip("/")),
                                "attachment")
        kept.append(("Content-Disposition", value.replace("\n", "%0A")))
        kept.append(("Expires", hdr.http_date(expires)))
        reply.headers = kept


__all__ = ["DIGESTS", "METHODS", "TempURL", "parse_expires", "parse_signature",
           "signed_paths", "signing_keys"]
