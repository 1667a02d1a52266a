"""Swift's container and account quotas (its ``container_quotas`` and
``account_quotas`` middleware), on top of the Pithos quota policy.

Container quotas are metadata the container's owner sets like any other:
``X-Container-Meta-Quota-Bytes`` (bytes the container may hold) and
``X-Container-Meta-Quota-Count`` (objects).  A value that is not a
non-negative integer is a 400 (``Invalid bytes quota.``, ``Invalid count
quota.``); an empty one removes the quota.

The account quota is ``X-Account-Meta-Quota-Bytes`` (Swift's newer
``X-Account-Quota-Bytes`` is the same), with ``X-Account-Quota-Count``
(objects) and, per storage policy, ``X-Account-Quota-Bytes-Policy-<name>``
and ``X-Account-Quota-Count-Policy-<name>``.  They are stored as account
metadata (``X-Account-Meta-Quota-Bytes``, ``-Quota-Count``,
``-Quota-Bytes-Policy-<Name>``, ``-Quota-Count-Policy-<Name>``), which the
owner reads on ``HEAD``, all but the first under Swift's names for them
(``shown_key``).  Only a reseller administrator (a user in the
group ``RESELLER_ADMIN``, which Keystone tokens carry as a role) sets or
removes them, on any account: a ``POST`` carrying only those headers to
another user's account is applied as if by its owner, anything more stays
the owner's (403).  Anyone else who sends one gets a 403, and an owner's
metadata replacement (``POST`` without ``?update``) keeps them.

An object of known length that would take a container or its account over
a quota is refused with Swift's 413 ``Upload exceeds quota.``: uploads
before a block is stored (``Uploads.check_room``, which the upload gate,
the ``PUT`` handler and archive extraction ask), copies (``PUT`` with
``X-Copy-From``, ``COPY``) before they are made.  As in Swift the sums are
the container's and account's current ones plus the new object (an
overwritten object is not deducted); the Pithos container policy quota
and the project's ``pithos.diskspace`` are enforced besides, by the
backend.  Where Pithos differs: a Pithos hashmap upload (``?hashmap``)
and a partial update (``POST`` with data) are bounded by those Pithos
quotas only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos import swift
from snfd.pithos.backend import KEEP
from snfd.pithos.middleware import Handler, settings_of
from snfd.pithos.requests import Call, Reply, Target
from snfd.pithos.symlinks import SYMLOOP_MAX, link_of

RESELLER_ADMIN = "ResellerAdmin"
"""Swift's reseller administrators: the Keystone role (granted on the
token's project), or an Astakos group of that name (which tokens carry as
a role too)."""

OVER_QUOTA = "Upload exceeds quota."

CONTAINER_BYTES = "x-container-meta-quota-bytes"
CONTAINER_COUNT = "x-container-meta-quota-count"
ACCOUNT_BYTES = "X-Account-Meta-Quota-Bytes"
ACCOUNT_COUNT = "X-Account-Meta-Quota-Count"
_POLICY_KINDS = ("bytes", "count")

# Request header (lowercase, without ``x-remove-`` / ``x-``) -> stored key.
_ACCOUNT_HEADERS = {
    "account-meta-quota-bytes": ACCOUNT_BYTES,
    "account-quota-bytes": ACCOUNT_BYTES,
    "account-meta-quota-count": ACCOUNT_COUNT,
    "account-quota-count": ACCOUNT_COUNT,
}


def is_reseller(request: Any) -> bool:
    """Whether the caller is a reseller administrator: its token carries
    the ``ResellerAdmin`` role, or it is in the group of that name."""
    principal = getattr(request, "principal", None)
    if principal is None or principal.is_component:
        return False
    names = (*(getattr(principal, "groups", ()) or ()), *(getattr(principal, "roles", ()) or ()))
    return RESELLER_ADMIN.lower() in (n.lower() for n in names)


def protected(key: str) -> bool:
    """Whether the stored account metadata ``key`` is a quota (only a
    reseller administrator changes it)."""
    k = key.lower()
    return k in (ACCOUNT_BYTES.lower(), ACCOUNT_COUNT.lower()) or any(
        k.startswith(f"x-account-meta-quota-{kind}-policy-") for kind in _POLICY_KINDS)


def shown_key(key: str) -> str:
    """The header an account ``HEAD`` answers the stored metadata ``key``
    under: Swift's own names for the quotas that are not user metadata
    (``X-Account-Quota-Count``, ``X-Account-Quota-Bytes-Policy-<Name>``,
    ``X-Account-Quota-Count-Policy-<Name>``: clients listing user metadata
    must not see them); any other key as it is."""
    k = key.lower()
    if k == ACCOUNT_COUNT.lower() or (protected(key) and "-policy-" in k):
        return "X-Account-" + key[len("X-Account-Meta-"):]
    return key


def _stored_key(name: str) -> str | None:
    """The stored key set by the request header ``name`` (lowercase), if
    it is an account quota header."""
    bare = name[len("x-remove-"):] if name.startswith("x-remove-") else name[len("x-"):]
    if not name.startswith("x-"):
        return None
    if bare in _ACCOUNT_HEADERS:
        return _ACCOUNT_HEADERS[bare]
    for kind in _POLICY_KINDS:
        for prefix in (f"account-quota-{kind}-policy-", f"account-meta-quota-{kind}-policy-"):
            if bare.startswith(prefix) and len(bare) > len(prefix):
                policy = bare[len(prefix):]
                return f"X-Account-Meta-Quota-{kind.capitalize()}-Policy-{hdr.normal_key(policy)}"
    return None


def _quota(meta: Mapping[str, str], key: str) -> int | None:
    for k, v in meta.items():
        if k.lower() == key.lower():
            v = v.strip()
            return int(v) if v.isdigit() else None
    return None


def _check_value(key: str, value: str) -> None:
    if value and not value.isdigit():
        kind = "count" if "count" in key.lower() else "bytes"
        raise errors.BadRequest(f"Invalid {kind} quota.")


class Quotas:
    """The filter: see the module docstring.

    @param backend: the ``Backend`` (container and account usage; quota
        changes by a reseller administrator).
    """

    def __init__(self, backend: Any):
        self.backend = backend

    @classmethod
    def from_api(cls, api: Any) -> Quotas:
        quotas = cls(api.backend)
        api.uploads.room_checks.append(quotas.check)
        return quotas

    def info(self) -> dict[str, Any]:
        return {"container_quotas": {}, "account_quotas": {}}

    async def __call__(self, call: Call, app: Handler) -> Reply:
        level, method = call.target.level, call.method
        if level == "account" and method == "POST" and not call.flag("bulk-delete"):
            return await self._account_post(call, app)
        if level == "container" and method in ("PUT", "POST"):
            for key in (CONTAINER_BYTES, CONTAINER_COUNT):
                value = call.header(key)
                if value is not None:
                    _check_value(key, value.strip())
        elif level == "object" and (method == "COPY" or (
                method == "PUT" and call.header("X-Copy-From") is not None)):
            await self._check_copy(call)
        return await app(call)

    # -- enforcing ----------------------------------------------------------------

    async def check(self, target: Target, size: int, request: Any = None) -> None:
        """``OverLimit`` (Swift's 413) when a new ``size``-byte object at
        ``target`` would exceed its container's or its account's quota."""
        assert target.account is not None and target.container is not None
        settings = await settings_of(request, self.backend, target.account, target.container)
        if settings is None:
            return  # the write answers the 404
        if any(k.lower() in (CONTAINER_BYTES, CONTAINER_COUNT) for k in settings.meta):
            # The usage changes with every write: read afresh, with the
            # quotas as they are now.
            try:
                container = await self.backend.container(target.account, target.account,
                                                         target.container)
            except errors.NotFound:
                return
            limit = _quota(container.meta, CONTAINER_BYTES)
            if limit is not None and container.bytes + size > limit:
                raise errors.OverLimit(OVER_QUOTA)
            limit = _quota(container.meta, CONTAINER_COUNT)
            if limit is not None and container.count + 1 > limit:
                raise errors.OverLimit(OVER_QUOTA)
        if not any(protected(k) for k in await self.backend.account_meta(target.account)):
            return
        account = await self.backend.account_settings(target.account)
        limit = _quota(account.meta, ACCOUNT_BYTES)
        if limit is not None and account.bytes + size > limit:
            raise errors.OverLimit(OVER_QUOTA)
        limit = _quota(account.meta, ACCOUNT_COUNT)
        if limit is not None and account.objects + 1 > limit:
            raise errors.OverLimit(OVER_QUOTA)
        try:
            policy = self.backend.policies.of(settings.policy.storage).name
        except errors.Fault:
            return  # a policy this node lost: the write answers it
        _, objects, used = account.storage.get(policy, (0, 0, 0))
        limit = _quota(account.meta, f"X-Account-Meta-Quota-Bytes-Policy-{policy}")
        if limit is not None and used + size > limit:
            raise errors.OverLimit(OVER_QUOTA)
        limit = _quota(account.meta, f"X-Account-Meta-Quota-Count-Policy-{policy}")
        if limit is not None and objects + 1 > limit:
            raise errors.OverLimit(OVER_QUOTA)

    async def _check_copy(self, call: Call) -> None:
        t = call.target
        assert t.account is not None and t.container is not None and t.name is not None
        if call.anonymous:
            return  # the handler refuses it
        try:
            if call.method == "COPY":
                src = (t.account, t.container, t.name)
                destination = call.header("Destination")
                if destination is None:
                    return
                container, name = hdr.split_object_path(destination, "Destination")
                account = hdr.unquoted(call.header("Destination-Account") or "",
                                       "Destination-Account").strip() or t.account
                dst = Target(account, container, name)
            else:
                source = call.header("X-Copy-From") or ""
                container, name = hdr.split_object_path(source, "X-Copy-From")
                given = call.header("X-Copy-From-Account") or call.header("X-Source-Account")
                account = hdr.unquoted(given or "", "X-Source-Account").strip() or t.account
                src = (account, container, name)
                dst = t
            info = await self.backend.object(call.user, *src)
            if call.get("symlink") != "get":
                # A copy of a symlink copies what it stands for.
                for _ in range(SYMLOOP_MAX):
                    link = link_of(info.checksum)
                    if link is None:
                        break
                    info = await self.backend.object(call.user, link.account,
                                                     link.container, link.name)
        except errors.Fault:
            return  # the handler answers a bad or missing source
        size = swift.slo_size(info) if swift.is_slo(info) else info.size
        await self.check(dst, size)

    # -- setting ------------------------------------------------------------------

    async def _account_post(self, call: Call, app: Handler) -> Reply:
        t = call.target
        assert t.account is not None
        changes = self._take_quota_headers(call)
        if changes and not is_reseller(call.request):
            raise errors.Forbidden("Only a reseller admin may change an account's quota.")
        for key, value in changes.items():
            _check_value(key, value)
        replacing = not call.flag("update") and \
            hdr.meta_headers(call.request, "Account") is not None
        if replacing and not call.anonymous and call.user == t.account:
            # A metadata replacement keeps the quotas it may not change.
            current = await self.backend.account_settings(t.account)
            heads = call.request.requestHeaders
            for key, value in current.meta.items():
                if protected(key) and key not in changes:
                    heads.setRawHeaders(key.encode("ascii"), [value.encode("utf-8")])
        reply = await app(call)
        if changes:
            # As the owner would: the reseller administrator may change
            # these, and only these, on any account.
            await self.backend.update_account(t.account, t.account, changes, False, None,
                                              KEEP)
        return reply

    @staticmethod
    def _take_quota_headers(call: Call) -> dict[str, str]:
        """The account quota changes ``call`` asks for (stored key ->
        value, ``""`` to remove), taken out of its headers so that the
        handlers never see them."""
        heads = call.request.requestHeaders
        changes: dict[str, str] = {}
        for raw_name, values in list(heads.getAllRawHeaders()):
            name = raw_name.decode("latin-1").lower()
            key = _stored_key(name)
            if key is None:
                continue
            value = "" if name.startswith("x-remove-") else \
                hdr.text(values[-1], f"The header {name}").strip()
            changes[key] = value
            heads.removeHeader(raw_name)
        return changes


__all__ = ["OVER_QUOTA", "RESELLER_ADMIN", "Quotas", "is_reseller", "protected"]
