"""Application credentials, their access rules, and EC2 credentials: the
Keystone v3 routes under ``/v3/users/<user_id>/`` and the
``application_credential`` authentication method.

An application credential is a user's delegation of some of its roles on
one project (the project of the token that creates it) to an application,
which authenticates with the credential's id (or name and user) and a
secret.  Its life:

- *created* by its user with a project-scoped token: ``roles`` a subset of
  the token's roles (by default all of them), an optional ``expires_at``,
  ``unrestricted`` (default false) and optional ``access_rules``.  The
  secret (generated unless given) is shown in this one answer; only its
  argon2id hash is stored.
- *used*: ``POST /v3/auth/tokens`` with the method
  ``application_credential`` gives a token scoped to the credential's
  project with the credential's roles.  It is refused (401) once the
  credential has expired, when its user is no longer active or no longer
  a member of the project, or has lost one of its roles.
- *deleted* by its user (or an administrator), or with the user; the
  tokens issued from it end with it, on every node.

A token from a restricted credential may not create or delete application
credentials (403), nor get another token with the ``token`` method.
Access rules (``service``, ``method``, ``path`` with ``*`` for one path
segment and ``**`` for any) are enforced by ``snfd.web.auth.TokenAuth`` in
front of every API of the node: a request none of them allows is 401.

EC2 credentials (``/v3/users/<u>/credentials/OS-EC2``) are an access key
and a secret for one project.  The API shows the secret again, so it is
stored encrypted (AES-256-GCM) with a key kept outside the database
(``[identity] credential_key_file``).
"""

from __future__ import annotations

import base64
import datetime
import os
import secrets
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from snfd import errors
from snfd.identity import credential_store, store, tokens
from snfd.identity.accounts import Accounts, TooManyFailures
from snfd.identity.catalog import stable_id
from snfd.identity.credential_store import AppCredential, Ec2Credential
from snfd.identity.passwords import PasswordRule
from snfd.identity.store import AccessRule, Token, TokenCredential, User, is_uuid
from snfd.web.app import json_body, json_object, read_json
from snfd.web.auth import Principal, token_of, user_of

UTC = datetime.UTC

METHOD = "application_credential"
ACCESS_RULE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
NAME_LENGTH = 255
SECRET_BYTES = 64
KEY_BYTES = 32

#: The role names a user holds on a project (with the implied ones, as a
#: token of the user scoped to it carries them).
RoleNames = Callable[[User, str], Awaitable[Sequence[str]]]


def naive_utc(value: datetime.datetime) -> str:
    """An expiry as Keystone shows it: UTC without an offset, microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def parse_expiry(value: Any, now: datetime.datetime) -> datetime.datetime | None:
    """``expires_at`` of a request (ISO 8601; without an offset: UTC);
    400 when malformed or not in the future."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.BadRequest('"expires_at" must be an ISO 8601 time or null.')
    try:
        when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.BadRequest(f'"expires_at" is not an ISO 8601 time: {value!r}.') from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise errors.BadRequest('"expires_at" must be in the future.')
    return when


def generate_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()


def role_json(name: str) -> dict[str, Any]:
    return {"id": stable_id("role", name), "name": name, "domain_id": None}


def rule_json(rule: AccessRule) -> dict[str, str]:
    return {"id": rule.id, "service": rule.service, "method": rule.method, "path": rule.path}


def token_credential_json(cred: TokenCredential) -> dict[str, Any]:
    """The ``application_credential`` element of a token body."""
    body: dict[str, Any] = {"id": cred.id, "name": cred.name,
                            "restricted": not cred.unrestricted}
    if cred.access_rules:
        body["access_rules"] = [rule_json(r) for r in cred.access_rules]
    return body


def credential_user(user: User, cred: TokenCredential) -> tuple[bool, tuple[str, ...]]:
    """``(is_admin, groups)`` a token of ``cred`` grants: only what its
    roles delegate."""
    return (user.is_admin and "admin" in cred.roles,
            tuple(g for g in user.groups if g in cred.roles))


# -- EC2 secrets ------------------------------------------------------------

def load_key(path: Path) -> bytes:
    """The EC2 secret key in ``path`` (32 bytes), made (mode 0600) when
    absent."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_key(path)  # another process was quicker
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: a credential key is {KEY_BYTES} bytes, not {len(key)}")
    return key


@attrs.frozen
class SecretBox:
    """Encrypts EC2 secrets for the database (AES-256-GCM; the access key
    is the associated data, so a secret cannot be moved to another key)."""

    key: bytes = attrs.field(repr=False)

    def seal(self, access: str, secret: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self.key).encrypt(nonce, secret.encode(), access.encode())

    def open(self, access: str, sealed: bytes) -> str:
        try:
            return AESGCM(self.key).decrypt(sealed[:12], sealed[12:], access.encode()).decode()
        except InvalidTag:
            raise errors.InternalError("An EC2 secret cannot be decrypted with this node's"
                                       " credential key.") from None


# -- the domain ---------------------------------------------------------------

@attrs.frozen
class NewAppCredential:
    """What a creation request asks for (validated)."""

    name: str
    description: str | None
    secret: str | None
    expires_at: datetime.datetime | None
    roles: tuple[str, ...] | None
    unrestricted: bool
    access_rules: tuple[tuple[str | None, str, str, str], ...]


class AppCredentials:
    """Application and EC2 credentials over the cluster database."""

    def __init__(self, accounts: Accounts, role_names: RoleNames, box: SecretBox | None):
        self._accounts = accounts
        self._db = accounts.db
        self._role_names = role_names
        self._box = box

    async def create(self, caller: Token, new: NewAppCredential,
                     ) -> tuple[AppCredential, str]:
        """A credential of the caller's user on the caller's project: the
        credential and its secret (the only time it is known)."""
        if caller.project is None:
            raise errors.BadRequest("An application credential is created with a"
                                    " project-scoped token.")
        held = (caller.app_credential.roles if caller.app_credential is not None
                else tuple(await self._role_names(caller.user, caller.project)))
        roles = new.roles if new.roles is not None else held
        missing = [r for r in roles if r not in held]
        if missing:
            raise errors.BadRequest("Cannot create an application credential with the"
                                    f" unassigned role {missing[0]!r}.")
        secret = new.secret if new.secret is not None else generate_secret()
        try:
            hashed = await self._accounts.passwords.hash(secret)
        except PasswordRule as e:
            raise errors.BadRequest(f"secret: {e}") from None
        cred = await self._db.run(
            "identity.create_app_credential", credential_store.create_app_credential_txn,
            caller.user.uuid, caller.project, new.name, new.description, hashed,
            list(dict.fromkeys(roles)), new.unrestricted, new.expires_at,
            list(new.access_rules))
        return cred, secret

    async def list_credentials(self, user: str, name: str | None = None,
                               ) -> list[AppCredential]:
        return await self._db.run("identity.list_app_credentials",
                                  credential_store.list_app_credentials_txn, user, name)

    async def get(self, user: str, credential_id: str) -> AppCredential:
        cred = await self._db.run("identity.get_app_credential",
                                  credential_store.get_app_credential_txn, credential_id)
        if cred is None or cred.user != user:
            raise errors.NotFound(f"Could not find application credential: {credential_id}.")
        return cred

    async def delete(self, user: str, credential_id: str) -> None:
        await self.get(user, credential_id)
        await self._db.run("identity.delete_app_credential",
                           credential_store.delete_app_credential_txn, credential_id)
        self._accounts.cache.invalidate(f"user:{user}")

    async def authenticate(self, credential_id: str | None, user_id: str | None,
                           name: str | None, secret: str, source: str) -> tuple[str, Token]:
        """A new token from a credential named by id, or by its user and
        name; 401 for a wrong secret or an unknown, expired or no longer
        valid credential, 429 while the source or credential is throttled."""
        cred: AppCredential | None = None
        if credential_id is not None:
            cred = await self._db.run("identity.get_app_credential",
                                      credential_store.get_app_credential_txn, credential_id)
        elif user_id is not None and name is not None:
            cred = await self._db.run("identity.app_credential_by_name",
                                      credential_store.app_credential_by_name_txn, user_id,
                                      name)
        await self._verify(cred, secret, source)
        assert cred is not None
        now = self._accounts.now()
        if cred.expires_at is not None and cred.expires_at <= now:
            raise errors.Unauthorized("The application credential has expired.")
        user = await self._accounts.get_user(cred.user)
        if not user.is_active:
            raise errors.Unauthorized("User inactive")
        held = set(await self._role_names(user, cred.project))
        if any(r not in held for r in cred.roles):
            raise errors.Unauthorized("The user no longer holds the roles of this"
                                      " application credential.")
        expires = now + self._accounts.policy.token_duration
        if cred.expires_at is not None:
            expires = min(expires, cred.expires_at)
        secret_token = tokens.new_token()
        token = await self._db.run("identity.issue_app_token",
                                   credential_store.issue_app_token_txn,
                                   store.secret_hash(secret_token), cred,
                                   tokens.new_audit_id(), now, expires)
        return secret_token, token

    async def _verify(self, cred: AppCredential | None, secret: str, source: str) -> None:
        """Check ``secret`` (argon2, after the same work for an unknown
        credential), counted like a login: per source address and per
        credential, taken back when right."""
        policy = self._accounts.policy
        address = f"address:{source}"
        keys = [address]
        limits = [store.Limit(address, policy.failures_per_address)]
        if cred is not None:
            keys.append(f"app-credential:{cred.id}")
            limits.append(store.Limit(keys[1], policy.failures_per_account))
        at = self._accounts.now()
        since = at - datetime.timedelta(seconds=policy.login_window)
        if not await self._db.run("identity.app_credential_attempt", store.attempt_txn,
                                  limits, at, since):
            raise TooManyFailures("Too many failed attempts; try again later.",
                                  headers={"Retry-After": str(int(policy.login_window))})
        hashed = None
        if cred is not None:
            hashed = await self._db.run("identity.app_secret_hash",
                                        credential_store.app_secret_hash_txn, cred.id)
        if not await self._accounts.passwords.verify(hashed, secret):
            raise errors.Unauthorized("Invalid application credential")
        await self._db.run("identity.app_credential_forget", store.forget_attempt_txn,
                           keys, at)

    # -- access rules ---------------------------------------------------------

    async def access_rules(self, user: str) -> list[AccessRule]:
        return await self._db.run("identity.list_access_rules",
                                  credential_store.list_access_rules_txn, user)

    async def access_rule(self, user: str, rule_id: str) -> AccessRule:
        rule = await self._db.run("identity.get_access_rule",
                                  credential_store.get_access_rule_txn, user, rule_id)
        if rule is None:
            raise errors.NotFound(f"Could not find access rule: {rule_id}.")
        return rule

    async def delete_access_rule(self, user: str, rule_id: str) -> None:
        await self._db.run("identity.delete_access_rule",
                           credential_store.delete_access_rule_txn, user, rule_id)

    # -- EC2 --------------------------------------------------------------------

    def _sealer(self) -> SecretBox:
        if self._box is None:
            raise errors.ServiceUnavailable("EC2 credentials need a credential key"
                                            " ([identity] credential_key_file).")
        return self._box

    async def create_ec2(self, user: str, project: str) -> tuple[Ec2Credential, str]:
        projects = await self._accounts.user_projects(user)
        if project not in {str(p.id) for p in projects}:
            raise errors.NotFound(f"Could not find project: {project}.")
        access, secret = uuid_module.uuid4().hex, uuid_module.uuid4().hex
        cred = await self._db.run("identity.create_ec2", credential_store.create_ec2_txn,
                                  access, user, project, self._sealer().seal(access, secret),
                                  self._accounts.now())
        return cred, secret

    async def list_ec2(self, user: str) -> list[tuple[Ec2Credential, str]]:
        found = await self._db.run("identity.list_ec2", credential_store.list_ec2_txn, user)
        return [(c, self._sealer().open(c.access, c.secret)) for c in found]

    async def get_ec2(self, user: str, access: str) -> tuple[Ec2Credential, str]:
        cred = await self._db.run("identity.get_ec2", credential_store.get_ec2_txn, user,
                                  access)
        if cred is None:
            raise errors.NotFound(f"Could not find credential: {access}.")
        return cred, self._sealer().open(cred.access, cred.secret)

    async def delete_ec2(self, user: str, access: str) -> None:
        await self._db.run("identity.delete_ec2", credential_store.delete_ec2_txn, user,
                           access)


# -- request bodies -------------------------------------------------------------

def _optional_text(data: dict[str, Any], key: str, limit: int | None = None) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.BadRequest(f'"{key}" must be a string or null.')
    if limit is not None and len(value) > limit:
        raise errors.BadRequest(f'"{key}" may have at most {limit} characters.')
    return value


_FIELDS = {"name", "description", "secret", "expires_at", "roles", "unrestricted",
           "access_rules"}


def new_credential(body: Any, now: datetime.datetime,
                   role_ids: dict[str, str]) -> NewAppCredential:
    """The validated ``application_credential`` of a creation request;
    ``role_ids`` maps role ids to names."""
    data = json_object(json_object(body).get("application_credential"),
                       '"application_credential"')
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise errors.BadRequest(f"Unknown application credential field {unknown[0]!r}.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_LENGTH:
        raise errors.BadRequest(f'"name" must be a non-empty string of at most {NAME_LENGTH}'
                                " characters.")
    secret = _optional_text(data, "secret")
    if secret == "":
        secret = None
    unrestricted = data.get("unrestricted", False)
    if not isinstance(unrestricted, bool):
        raise errors.BadRequest('"unrestricted" must be true or false.')
    roles: tuple[str, ...] | None = None
    if data.get("roles") is not None:
        raw = data["roles"]
        if not isinstance(raw, list):
            raise errors.BadRequest('"roles" must be a list of {"id"} or {"name"} objects.')
        names = []
        for item in raw:
            item = json_object(item, '"roles" item')
            if isinstance(item.get("name"), str):
                names.append(item["name"])
            elif isinstance(item.get("id"), str):
                if item["id"] not in role_ids:
                    raise errors.BadRequest("Cannot create an application credential with"
                                            f" the unassigned role {item['id']!r}.")
                names.append(role_ids[item["id"]])
            else:
                raise errors.BadRequest('Each of "roles" needs an "id" or a "name".')
        roles = tuple(names) or None
    rules: list[tuple[str | None, str, str, str]] = []
    if data.get("access_rules") is not None:
        raw = data["access_rules"]
        if not isinstance(raw, list):
            raise errors.BadRequest('"access_rules" must be a list.')
        for item in raw:
            item = json_object(item, '"access_rules" item')
            if set(item) == {"id"} and isinstance(item["id"], str):
                rules.append((item["id"], "", "", ""))
                continue
            service, method, path = item.get("service"), item.get("method"), item.get("path")
            if set(item) - {"id", "service", "method", "path"}:
                raise errors.BadRequest("An access rule has service, method and path.")
            if not (isinstance(service, str) and service and isinstance(path, str)
                    and path.startswith("/") and method in ACCESS_RULE_METHODS):
                raise errors.BadRequest(
                    "An access rule needs a service, a path starting with / and a method"
                    f" among {', '.join(ACCESS_RULE_METHODS)}.")
            rules.append((None, service, method, path))
    return NewAppCredential(
        name=name, description=_optional_text(data, "description", 65535), secret=secret,
        expires_at=parse_expiry(data.get("expires_at"), now), roles=roles,
        unrestricted=unrestricted, access_rules=tuple(rules))


# -- HTTP --------------------------------------------------------------------------

class CredentialRoutes:
    """The Keystone v3 handlers of application credentials, access rules and
    EC2 credentials; ``routes()`` lists them for ``KeystoneAPI``."""

    def __init__(self, accounts: Accounts, credentials: AppCredentials, base: str,
                 role_names: RoleNames, max_body: int):
        self._accounts = accounts
        self.credentials = credentials
        self._base = base
        self._role_names = role_names
        self._max_body = max_body

    def routes(self) -> list[tuple[str, str, Any]]:
        u = "/v3/users/<user_id>"
        return [
            ("POST", f"{u}/application_credentials", self.create),
            ("GET", f"{u}/application_credentials", self.index),
            ("GET", f"{u}/application_credentials/<credential_id>", self.show),
            ("DELETE", f"{u}/application_credentials/<credential_id>", self.delete),
            ("GET", f"{u}/access_rules", self.list_rules),
            ("GET", f"{u}/access_rules/<rule_id>", self.show_rule),
            ("DELETE", f"{u}/access_rules/<rule_id>", self.delete_rule),
            ("POST", f"{u}/credentials/OS-EC2", self.create_ec2),
            ("GET", f"{u}/credentials/OS-EC2", self.list_ec2),
            ("GET", f"{u}/credentials/OS-EC2/<access>", self.show_ec2),
            ("DELETE", f"{u}/credentials/OS-EC2/<access>", self.delete_ec2),
        ]

    # -- views ----------------------------------------------------------------

    def _json(self, cred: AppCredential, secret: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": cred.id, "name": cred.name, "description": cred.description,
            "user_id": cred.user, "project_id": cred.project,
            "roles": [role_json(r) for r in cred.roles],
            "unrestricted": cred.unrestricted,
            "expires_at": naive_utc(cred.expires_at) if cred.expires_at else None,
            "access_rules": [rule_json(r) for r in cred.access_rules],
            "links": {"self": f"{self._base}/v3/users/{cred.user}/application_credentials/"
                              f"{cred.id}"}}
        if secret is not None:
            body["secret"] = secret
        return body

    def _ec2_json(self, cred: Ec2Credential, secret: str) -> dict[str, Any]:
        return {"user_id": cred.user, "tenant_id": cred.project, "access": cred.access,
                "secret": secret, "trust_id": None,
                "links": {"self": f"{self._base}/v3/users/{cred.user}/credentials/OS-EC2/"
                                  f"{cred.access}"}}

    def _links(self, path: str) -> dict[str, Any]:
        return {"self": f"{self._base}/v3/{path}", "previous": None, "next": None}

    # -- who may -------------------------------------------------------------

    @staticmethod
    def _owner_or_admin(request: Any, user_id: str) -> Principal:
        caller = user_of(request)
        if caller.user != user_id and not caller.is_admin:
            raise errors.Forbidden("You may only manage your own credentials.")
        return caller

    async def _unrestricted_caller(self, request: Any, user_id: str) -> Token:
        """The caller's token, when it may create or delete application
        credentials of ``user_id``: its own, not from a restricted one."""
        caller = user_of(request)
        secret = token_of(request)
        if secret is None:
            raise errors.Unauthorized("This request needs a user token (X-Auth-Token).")
        token = await self._accounts.validate(secret)
        cred = token.app_credential
        if cred is not None and not cred.unrestricted:
            raise errors.Forbidden("A token from a restricted application credential cannot"
                                   " create or delete application credentials.")
        if caller.user != user_id and not (caller.is_admin and request.method == b"DELETE"):
            raise errors.Forbidden("You may only manage your own application credentials.")
        return token

    # -- application credentials ----------------------------------------------

    async def create(self, request: Any, user_id: str) -> bytes:
        """``POST /v3/users/<u>/application_credentials`` (201)."""
        caller = await self._unrestricted_caller(request, user_id)
        held = await self._role_names(caller.user, caller.project) if caller.project else ()
        known = {stable_id("role", n): n for n in held}
        new = new_credential(read_json(request, self._max_body), self._accounts.now(), known)
        cred, secret = await self.credentials.create(caller, new)
        return json_body(request, {"application_credential": self._json(cred, secret)}, 201)

    async def index(self, request: Any, user_id: str) -> bytes:
        self._owner_or_admin(request, user_id)
        names = request.args.get(b"name")
        name = names[-1].decode("utf-8", "replace") if names else None
        found = await self.credentials.list_credentials(user_id, name)
        return json_body(request, {
            "application_credentials": [self._json(c) for c in found],
            "links": self._links(f"users/{user_id}/application_credentials")})

    async def show(self, request: Any, user_id: str, credential_id: str) -> bytes:
        self._owner_or_admin(request, user_id)
        cred = await self.credentials.get(user_id, credential_id)
        return json_body(request, {"application_credential": self._json(cred)})

    async def delete(self, request: Any, user_id: str, credential_id: str) -> bytes:
        await self._unrestricted_caller(request, user_id)
        await self.credentials.delete(user_id, credential_id)
        request.setResponseCode(204)
        return b""

    # -- access rules ------------------------------------------------------------

    async def list_rules(self, request: Any, user_id: str) -> bytes:
        self._owner_or_admin(request, user_id)
        rules = await self.credentials.access_rules(user_id)
        for key in ("service", "method", "path"):
            wanted = request.args.get(key.encode())
            if wanted:
                value = wanted[-1].decode("utf-8", "replace")
                rules = [r for r in rules if getattr(r, key) == value]
        return json_body(request, {"access_rules": [rule_json(r) for r in rules],
                                   "links": self._links(f"users/{user_id}/access_rules")})

    async def show_rule(self, request: Any, user_id: str, rule_id: str) -> bytes:
        self._owner_or_admin(request, user_id)
        rule = await self.credentials.access_rule(user_id, rule_id)
        return json_body(request, {"access_rule": rule_json(rule)})

    async def delete_rule(self, request: Any, user_id: str, rule_id: str) -> bytes:
        self._owner_or_admin(request, user_id)
        await self.credentials.delete_access_rule(user_id, rule_id)
        request.setResponseCode(204)
        return b""

    # -- EC2 -------------------------------------------------------------------------

    async def create_ec2(self, request: Any, user_id: str) -> bytes:
        """``POST /v3/users/<u>/credentials/OS-EC2`` with ``tenant_id`` (201)."""
        caller = self._owner_or_admin(request, user_id)
        if caller.user != user_id:
            raise errors.Forbidden("You may only create your own EC2 credentials.")
        body = json_object(read_json(request, self._max_body))
        tenant = body.get("tenant_id")
        if not isinstance(tenant, str) or not tenant:
            raise errors.BadRequest('"tenant_id" must name one of your projects.')
        cred, secret = await self.credentials.create_ec2(user_id, tenant)
        return json_body(request, {"credential": self._ec2_json(cred, secret)}, 201)

    async def list_ec2(self, request: Any, user_id: str) -> bytes:
        self._owner_or_admin(request, user_id)
        found = await self.credentials.list_ec2(user_id)
        return json_body(request, {
            "credentials": [self._ec2_json(c, s) for c, s in found],
            "links": self._links(f"users/{user_id}/credentials/OS-EC2")})

    async def show_ec2(self, request: Any, user_id: str, access: str) -> bytes:
        self._owner_or_admin(request, user_id)
        cred, secret = await self.credentials.get_ec2(user_id, access)
        return json_body(request, {"credential": self._ec2_json(cred, secret)})

    async def delete_ec2(self, request: Any, user_id: str, access: str) -> bytes:
        self._owner_or_admin(request, user_id)
        await self.credentials.delete_ec2(user_id, access)
        request.setResponseCode(204)
        return b""

    # -- the authentication method ---------------------------------------------

    async def issue(self, identity: dict[str, Any], source: str) -> tuple[str, Token]:
        """The ``application_credential`` method of ``POST /v3/auth/tokens``:
        by ``id`` and ``secret``, or by ``name``, ``user`` (``id``, or
        ``name`` and ``domain``) and ``secret``."""
        data = json_object(identity.get(METHOD), '"auth.identity.application_credential"')
        secret = data.get("secret")
        if not isinstance(secret, str) or not secret:
            raise errors.BadRequest('"auth.identity.application_credential.secret" must be'
                                    " a non-empty string.")
        if "id" in data:
            if not isinstance(data["id"], str):
                raise errors.BadRequest('"application_credential.id" must be a string.')
            return await self.credentials.authenticate(data["id"], None, None, secret, source)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise errors.BadRequest('"auth.identity.application_credential" needs an id, or'
                                    " a name and a user.")
        spec = json_object(data.get("user"), '"application_credential.user"')
        user_id = spec.get("id")
        if user_id is None:
            user_name = spec.get("name")
            if not isinstance(user_name, str) or not user_name:
                raise errors.BadRequest('"application_credential.user" needs an id or a'
                                        " name.")
            domain = spec.get("domain")
            if domain is not None:
                domain = json_object(domain, '"application_credential.user.domain"')
                if domain.get("id", "default") != "default" or \
                        str(domain.get("name", "Default")).lower() != "default":
                    raise errors.Unauthorized("Unknown domain.")
            try:
                user_id = (await self._accounts.get_user(user_name)).uuid
            except errors.NotFound:
                user_id = None
        elif not isinstance(user_id, str):
            raise errors.BadRequest('"application_credential.user.id" must be a string.')
        if user_id is not None and not is_uuid(user_id):
            user_id = None
        return await self.credentials.authenticate(None, user_id, name, secret, source)
