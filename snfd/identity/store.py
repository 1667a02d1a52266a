"""Accounts in PostgreSQL: users, linked login identities, tokens, the
one-time codes of native applications' logins, groups, components and the
failed-login counters.

SQL lives only in the ``*_txn`` functions; they take a DB-API cursor and
return plain values.  Tokens and verification codes arrive here already
hashed (``secret_hash``), and so do login codes: the plain values never
reach the database.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid as uuid_module
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg2.errors
import psycopg2.extras

from snfd import errors
from snfd.db import prepared

STATES = ("pending_verification", "pending_moderation", "active", "rejected", "deactivated")

_USER_COLUMNS = """
    u.uuid::text, u.email, u.first_name, u.last_name, u.state, u.is_admin,
    u.password_hash IS NOT NULL, u.default_project::text, u.created_at,
    u.verified_at, u.moderated_at, u.activated_at, u.state_reason,
    coalesce((SELECT array_agg(g.group_name ORDER BY g.group_name)
              FROM identity_user_groups g WHERE g.user_uuid = u.uuid), '{}'),
    u.username, u.extra
"""


def secret_hash(secret: str) -> bytes:
    """The stored form of a token or verification code.  They are 256-bit
    random values, so one SHA-256 is enough (no salt or stretching)."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


@attrs.frozen
class User:
    """A user.  ``email`` and ``username`` are both optional but one is
    set: the Keystone name (``login_name``) is the username when there is
    one, else the email."""

    uuid: str
    email: str | None
    first_name: str
    last_name: str
    state: str
    is_admin: bool
    has_password: bool
    default_project: str | None
    created_at: datetime.datetime
    verified_at: datetime.datetime | None
    moderated_at: datetime.datetime | None
    activated_at: datetime.datetime | None
    state_reason: str
    groups: tuple[str, ...]
    username: str | None = None
    #: properties Keystone's API does not define, kept as given
    extra: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)

    @property
    def login_name(self) -> str:
        """The Keystone name: the username, or the email."""
        return self.username or self.email or ""

    @property
    def local_identifier(self) -> str:
        """The identifier of the user's local (password) login link: the
        email, or the username of a user without one, lowercased."""
        return (self.email or self.username or "").lower()

    @property
    def name(self) -> str:
        """The display name: first and last name, or the login name."""
        full = f"{self.first_name} {self.last_name}".strip()
        return full or self.login_name

    @property
    def is_active(self) -> bool:
        return self.state == "active"

    def as_json(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid, "email": self.email, "username": self.username,
            "first_name": self.first_name,
            "last_name": self.last_name, "state": self.state, "is_admin": self.is_admin,
            "has_password": self.has_password, "default_project": self.default_project,
            "groups": list(self.groups), "created_at": _iso(self.created_at),
            "verified_at": _iso(self.verified_at), "moderated_at": _iso(self.moderated_at),
            "activated_at": _iso(self.activated_at), "state_reason": self.state_reason,
        }


@attrs.frozen
class AccessRule:
    """What a token of an application credential may call: ``method`` on
    ``path`` (``*`` one segment, ``**`` any) of the service of type
    ``service``."""

    id: str
    service: str
    method: str
    path: str


@attrs.frozen
class TokenCredential:
    """The application credential a token was issued from."""

    id: str
    name: str
    unrestricted: bool
    roles: tuple[str, ...]
    access_rules: tuple[AccessRule, ...] = ()


@attrs.frozen
class Token:
    """A validated token (never the token itself)."""

    user: User
    is_primary: bool
    project: str | None
    methods: tuple[str, ...]
    audit_id: str
    audit_chain: str | None
    issued_at: datetime.datetime
    expires_at: datetime.datetime
    #: set when the token was issued from an application credential
    app_credential: TokenCredential | None = None
    #: the roles the user holds on ``project`` (or on the system), implied
    #: ones included, as validation found them
    roles: tuple[str, ...] = ()
    #: scoped to the system (Keystone's ``{"system": {"all": true}}``)
    system: bool = False
    #: the name of ``project``, when validation found it active and the
    #: user an accepted member of it (``None``: not found or not read)
    project_name: str | None = None

    @property
    def audit_ids(self) -> tuple[str, ...]:
        return (self.audit_id,) + ((self.audit_chain,) if self.audit_chain else ())


@attrs.frozen
class Component:
    name: str
    base_url: str
    ui_url: str
    created_at: datetime.datetime


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _user(row: Sequence[Any]) -> User:
    return User(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                row[9], row[10], row[11], row[12], tuple(row[13]), row[14], dict(row[15]))


# -- users ----------------------------------------------------------------

def _check_free_txn(txn: Any, what: str, value: str | None, uuid: str) -> None:
    """``Conflict`` when another user than ``uuid`` has ``value`` as its
    email or username (case-insensitive): a password login by either must
    name one user."""
    if value is None:
        return
    txn.execute("SELECT 1 FROM identity_users WHERE (lower(email) = lower(%s)"
                " OR lower(username) = lower(%s)) AND uuid <> %s", (value, value, uuid))
    if txn.fetchone():
        raise errors.Conflict(f"A user with the {what} {value} exists already.")


def create_user_txn(txn: Any, uuid: str, email: str | None, first_name: str, last_name: str,
                    state: str, is_admin: bool, password_hash: str | None,
                    now: datetime.datetime, username: str | None = None) -> User:
    """Insert a user; ``Conflict`` when the email or the username is taken
    (as another user's email or username, case-insensitive)."""
    if email is None and username is None:
        raise errors.BadRequest("A user needs an email or a username.")
    _check_free_txn(txn, "email", email, uuid)
    _check_free_txn(txn, "name", username, uuid)
    try:
        txn.execute(
            "INSERT INTO identity_users (uuid, email, username, first_name, last_name, state,"
            " is_admin, password_hash, created_at, updated_at, verified_at, activated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (uuid, email, username, first_name, last_name, state, is_admin, password_hash,
             now, now, now if state in ("pending_moderation", "active") else None,
             now if state == "active" else None))
    except psycopg2.errors.UniqueViolation:
        # Another transaction took the email between the check and here.
        raise errors.Conflict(f"A user with the email or name {email or username} exists"
                              " already.") from None
    user = get_user_txn(txn, uuid)
    if password_hash is not None:
        link_txn(txn, "local", user.local_identifier, uuid, {})
    return user


def get_user_txn(txn: Any, uuid: str) -> User:
    """The user with this uuid; ``NotFound`` otherwise (also for non-uuids)."""
    if not is_uuid(uuid):
        raise errors.NotFound(f"No user {uuid}.")
    txn.execute(f"SELECT {_USER_COLUMNS} FROM identity_users u WHERE u.uuid = %s", (uuid,))
    row = txn.fetchone()
    if row is None:
        raise errors.NotFound(f"No user {uuid}.")
    return _user(row)


def find_user_txn(txn: Any, ref: str, by_username: bool = True) -> User:
    """A user by uuid, by email or (``by_username``) by username
    (case-insensitive)."""
    if is_uuid(ref):
        return get_user_txn(txn, ref)
    txn.execute(f"SELECT {_USER_COLUMNS} FROM identity_users u"
                " WHERE lower(u.email) = lower(%s) OR (%s AND lower(u.username) = lower(%s))",
                (ref, by_username, ref))
    row = txn.fetchone()
    if row is None:
        raise errors.NotFound(f"No user {ref}.")
    return _user(row)


def list_users_txn(txn: Any, state: str | None = None) -> list[User]:
    where, args = ("WHERE u.state = %s", (state,)) if state else ("", ())
    txn.execute(f"SELECT {_USER_COLUMNS} FROM identity_users u {where}"
                " ORDER BY u.created_at, u.email", args)
    return [_user(r) for r in txn.fetchall()]


def count_users_txn(txn: Any) -> int:
    txn.execute("SELECT count(*) FROM identity_users")
    return int(txn.fetchone()[0])


def password_hash_txn(txn: Any, name: str) -> tuple[str, str | None, str] | None:
    """``(uuid, argon2 hash or None, state)`` of the user with this email or
    username (case-insensitive)."""
    txn.execute("SELECT uuid::text, password_hash, state FROM identity_users"
                " WHERE lower(email) = lower(%s) OR lower(username) = lower(%s)",
                (name, name))
    row = txn.fetchone()
    return (row[0], row[1], row[2]) if row else None


def set_password_txn(txn: Any, uuid: str, password_hash: str | None,
                     now: datetime.datetime) -> None:
    user = get_user_txn(txn, uuid)
    txn.execute("UPDATE identity_users SET password_hash = %s, updated_at = %s"
                " WHERE uuid = %s", (password_hash, now, uuid))
    if password_hash is None:
        txn.execute("DELETE FROM identity_auth_links WHERE provider = 'local'"
                    " AND user_uuid = %s", (uuid,))
    else:
        link_txn(txn, "local", user.local_identifier, uuid, {})


def modify_user_txn(txn: Any, uuid: str, now: datetime.datetime, **fields: Any) -> User:
    """Change ``email``, ``username``, ``first_name``, ``last_name``,
    ``is_admin``, ``default_project`` or ``extra`` (those given and not
    ``None``)."""
    allowed = ("email", "username", "first_name", "last_name", "is_admin", "default_project",
               "extra")
    changes = {k: v for k, v in fields.items() if k in allowed and v is not None}
    if "extra" in changes:
        changes["extra"] = psycopg2.extras.Json(changes["extra"])
    before = get_user_txn(txn, uuid)
    _check_free_txn(txn, "email", changes.get("email"), uuid)
    _check_free_txn(txn, "name", changes.get("username"), uuid)
    for column, value in changes.items():
        txn.execute(f"UPDATE identity_users SET {column} = %s WHERE uuid = %s", (value, uuid))
    txn.execute("UPDATE identity_users SET updated_at = %s WHERE uuid = %s", (now, uuid))
    after = get_user_txn(txn, uuid)
    if after.local_identifier != before.local_identifier:
        txn.execute("UPDATE identity_auth_links SET identifier = %s WHERE provider = 'local'"
                    " AND user_uuid = %s", (after.local_identifier, uuid))
    return after


def set_state_txn(txn: Any, uuid: str, state: str, reason: str,
                  now: datetime.datetime) -> User:
    """Move a user to ``state``, stamping verification, moderation or
    activation times; leaving ``active`` deletes every token of the user."""
    if state not in STATES:
        raise ValueError(state)
    get_user_txn(txn, uuid)
    stamp = {"pending_moderation": "verified_at", "active": "activated_at"}.get(state)
    txn.execute("UPDATE identity_users SET state = %s, state_reason = %s, updated_at = %s"
                " WHERE uuid = %s", (state, reason, now, uuid))
    if stamp:
        txn.execute(f"UPDATE identity_users SET {stamp} = coalesce({stamp}, %s)"
                    " WHERE uuid = %s", (now, uuid))
    if state == "active":
        txn.execute("UPDATE identity_users SET verified_at = coalesce(verified_at, %s),"
                    " moderated_at = coalesce(moderated_at, %s), verification_hash = NULL"
                    " WHERE uuid = %s", (now, now, uuid))
    else:
        revoke_user_tokens_txn(txn, uuid)
    return get_user_txn(txn, uuid)


def set_verification_txn(txn: Any, uuid: str, code_hash: bytes | None,
                         now: datetime.datetime) -> None:
    txn.execute("UPDATE identity_users SET verification_hash = %s, verification_sent = %s"
                " WHERE uuid = %s", (code_hash, now if code_hash else None, uuid))


def user_by_verification_txn(txn: Any, code_hash: bytes) -> User | None:
    txn.execute(f"SELECT {_USER_COLUMNS} FROM identity_users u"
                " WHERE u.verification_hash = %s", (code_hash,))
    row = txn.fetchone()
    return _user(row) if row else None


def users_by_ref_txn(txn: Any, uuids: Sequence[str] | None,
                     emails: Sequence[str] | None) -> list[tuple[str, str]]:
    """``(uuid, email)`` pairs for the given uuids and emails (unknown ones
    are left out); both ``None``: every user."""
    if uuids is None and emails is None:
        txn.execute("SELECT uuid::text, coalesce(email, username) FROM identity_users"
                    " ORDER BY 2")
        return [(r[0], r[1]) for r in txn.fetchall()]
    out: dict[str, str] = {}
    good = [u for u in (uuids or ()) if is_uuid(u)]
    if good:
        txn.execute("SELECT uuid::text, coalesce(email, username) FROM identity_users"
                    " WHERE uuid = ANY(%s::uuid[])", (good,))
        out.update((r[0], r[1]) for r in txn.fetchall())
    if emails:
        txn.execute("SELECT uuid::text, coalesce(email, username) FROM identity_users"
                    " WHERE lower(email) = ANY(%s) OR lower(username) = ANY(%s)",
                    ([e.lower() for e in emails], [e.lower() for e in emails]))
        out.update((r[0], r[1]) for r in txn.fetchall())
    return sorted(out.items())


# -- linked identities -------------------------------------------------------

def link_txn(txn: Any, provider: str, identifier: str, uuid: str,
             info: dict[str, Any]) -> None:
    """Link a provider identity to a user; ``Conflict`` when it is linked to
    another user."""
    txn.execute("SELECT user_uuid::text FROM identity_auth_links"
                " WHERE provider = %s AND identifier = %s", (provider, identifier))
    row = txn.fetchone()
    if row and row[0] != uuid:
        raise errors.Conflict(f"This {provider} identity belongs to another user.")
    txn.execute(
        "INSERT INTO identity_auth_links (provider, identifier, user_uuid, info)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (provider, identifier)"
        " DO UPDATE SET info = EXCLUDED.info", (provider, identifier, uuid, json.dumps(info)))


def linked_user_txn(txn: Any, provider: str, identifier: str) -> str | None:
    txn.execute("SELECT user_uuid::text FROM identity_auth_links"
                " WHERE provider = %s AND identifier = %s", (provider, identifier))
    row = txn.fetchone()
    return row[0] if row else None


def links_of_txn(txn: Any, uuid: str) -> list[tuple[str, str]]:
    txn.execute("SELECT provider, identifier FROM identity_auth_links WHERE user_uuid = %s"
                " ORDER BY provider, identifier", (uuid,))
    return [(r[0], r[1]) for r in txn.fetchall()]


# -- tokens ----------------------------------------------------------------

def add_token_txn(txn: Any, token_hash: bytes, uuid: str, is_primary: bool,
                  project: str | None, methods: Sequence[str], audit_id: str,
                  audit_chain: str | None, issued_at: datetime.datetime,
                  expires_at: datetime.datetime, app_credential: str | None = None,
                  system: bool = False) -> None:
    if is_primary:
        txn.execute("DELETE FROM identity_tokens WHERE user_uuid = %s AND is_primary", (uuid,))
    txn.execute(
        "INSERT INTO identity_tokens (hash, user_uuid, is_primary, project, methods,"
        " audit_id, audit_chain, issued_at, expires_at, app_credential, system)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (token_hash, uuid, is_primary, project, list(methods), audit_id, audit_chain,
         issued_at, expires_at, app_credential, system))


def token_txn(txn: Any, token_hash: bytes) -> Token | None:
    """The token with this hash and its user, expired or not."""
    prepared.execute(txn,
        f"SELECT t.is_primary, t.project::text, t.methods, t.audit_id, t.audit_chain,"
        f" t.issued_at, t.expires_at, {_USER_COLUMNS}, t.system, t.app_credential::text"
        " FROM identity_tokens t JOIN identity_users u ON u.uuid = t.user_uuid"
        " WHERE t.hash = %s", (token_hash,))
    row = txn.fetchone()
    if row is None:
        return None
    credential = token_credential_txn(txn, row[-1]) if row[-1] is not None else None
    return Token(_user(row[7:-2]), row[0], row[1], tuple(row[2]), row[3], row[4], row[5],
                 row[6], credential, system=row[-2])


def token_credential_txn(txn: Any, credential_id: str) -> TokenCredential | None:
    """What a token issued from the application credential ``credential_id``
    carries: its name, restriction, roles and access rules."""
    txn.execute("SELECT id::text, name, unrestricted, roles FROM identity_app_credentials"
                " WHERE id = %s", (credential_id,))
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute("SELECT r.id::text, r.service, r.method, r.path FROM identity_access_rules r"
                " JOIN identity_app_credential_rules cr ON cr.rule = r.id"
                " WHERE cr.credential = %s ORDER BY r.service, r.path, r.method",
                (credential_id,))
    rules = tuple(AccessRule(*r) for r in txn.fetchall())
    return TokenCredential(row[0], row[1], row[2], tuple(row[3]), rules)


# -- roles on the system ---------------------------------------------------

def system_roles_txn(txn: Any, uuid: str) -> list[str]:
    """The roles stored for the user on the system (``member``,
    ``reader``; ``admin`` is the user's ``is_admin``)."""
    txn.execute("SELECT role FROM identity_system_roles WHERE user_uuid = %s ORDER BY role",
                (uuid,))
    return [r[0] for r in txn.fetchall()]


def add_system_role_txn(txn: Any, uuid: str, role: str) -> None:
    txn.execute("INSERT INTO identity_system_roles (user_uuid, role) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING", (uuid, role))


def remove_system_role_txn(txn: Any, uuid: str, role: str) -> bool:
    """Remove one stored role; whether the user held it."""
    txn.execute("DELETE FROM identity_system_roles WHERE user_uuid = %s AND role = %s",
                (uuid, role))
    return bool(txn.rowcount)


def system_role_holders_txn(txn: Any, uuid: str | None = None) -> list[tuple[str, str, str]]:
    """Every role on the system as ``(user uuid, user name, role)``: the
    stored ones and ``admin`` of each administrator; of one user when
    ``uuid`` is given."""
    if uuid is not None and not is_uuid(uuid):
        return []
    txn.execute(
        "SELECT u.uuid::text, coalesce(u.username, u.email), r.role"
        " FROM identity_system_roles r JOIN identity_users u ON u.uuid = r.user_uuid"
        " WHERE %(u)s::uuid IS NULL OR u.uuid = %(u)s::uuid"
        " UNION ALL SELECT u.uuid::text, coalesce(u.username, u.email), 'admin'"
        " FROM identity_users u WHERE u.is_admin"
        " AND (%(u)s::uuid IS NULL OR u.uuid = %(u)s::uuid) ORDER BY 1, 3", {"u": uuid})
    return [(r[0], r[1], r[2]) for r in txn.fetchall()]


def has_primary_token_txn(txn: Any, uuid: str) -> bool:
    txn.execute("SELECT 1 FROM identity_tokens WHERE user_uuid = %s AND is_primary", (uuid,))
    return txn.fetchone() is not None


def revoke_token_txn(txn: Any, token_hash: bytes) -> str | None:
    """Delete one token; the owner's uuid, or ``None`` when unknown."""
    txn.execute("DELETE FROM identity_tokens WHERE hash = %s RETURNING user_uuid::text",
                (token_hash,))
    row = txn.fetchone()
    if row:
        notify_txn(txn, f"user:{row[0]}")
    return row[0] if row else None


def revoke_user_tokens_txn(txn: Any, uuid: str) -> None:
    """Delete every token of the user and tell every node's cache."""
    txn.execute("DELETE FROM identity_tokens WHERE user_uuid = %s", (uuid,))
    notify_txn(txn, f"user:{uuid}")


def expire_tokens_txn(txn: Any, now: datetime.datetime, limit: int = 5000) -> int:
    """Delete up to ``limit`` tokens expired both at ``now`` (the sweeping
    node's clock) and by the database's clock; how many were deleted.  A
    deletion is for the whole cluster: a leader whose clock was set forward
    must not delete tokens that every other node still accepts."""
    txn.execute("DELETE FROM identity_tokens WHERE hash IN (SELECT hash FROM identity_tokens"
                " WHERE expires_at < LEAST(%s, now()) LIMIT %s)", (now, limit))
    return int(txn.rowcount)


# -- one-time login codes (RFC 8252 + PKCE) ----------------------------------

@attrs.frozen
class LoginCode:
    """What a one-time login code stands for: the user it logs in, the
    PKCE S256 challenge the login was started with, the methods and the
    provider of the login, and when the code stops working."""

    user: str
    challenge: str
    methods: tuple[str, ...]
    provider: str
    expires_at: datetime.datetime


def add_login_code_txn(txn: Any, code_hash: bytes, uuid: str, challenge: str,
                       methods: Sequence[str], provider: str,
                       expires_at: datetime.datetime) -> None:
    txn.execute(
        "INSERT INTO identity_login_codes (hash, user_uuid, challenge, methods, provider,"
        " expires_at) VALUES (%s, %s, %s, %s, %s, %s)",
        (code_hash, uuid, challenge, list(methods), provider, expires_at))


def take_login_code_txn(txn: Any, code_hash: bytes) -> LoginCode | None:
    """Delete the code with this hash and return what it stood for (None
    when there is none), expired or not: read and deleted by one statement,
    so of two exchanges of one code only one finds it."""
    txn.execute(
        "DELETE FROM identity_login_codes WHERE hash = %s"
        " RETURNING user_uuid::text, challenge, methods, provider, expires_at",
        (code_hash,))
    row = txn.fetchone()
    if row is None:
        return None
    return LoginCode(row[0], row[1], tuple(row[2]), row[3], row[4])


def expire_login_codes_txn(txn: Any, now: datetime.datetime) -> int:
    """Delete the codes expired both at ``now`` and by the database's
    clock; how many."""
    txn.execute("DELETE FROM identity_login_codes WHERE expires_at < LEAST(%s, now())",
                (now,))
    return int(txn.rowcount)


NOTIFY_CHANNEL = "snfd_identity"


def notify_txn(txn: Any, payload: str) -> None:
    """Tell every node (at commit) that cached answers about ``payload``
    (``user:<uuid>``, ``component:<name>``) are stale."""
    txn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))


# -- groups ----------------------------------------------------------------

def add_group_txn(txn: Any, name: str) -> None:
    txn.execute("INSERT INTO identity_groups (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))


def remove_group_txn(txn: Any, name: str) -> None:
    txn.execute("DELETE FROM identity_groups WHERE name = %s RETURNING name", (name,))
    if txn.fetchone() is None:
        raise errors.NotFound(f"No group {name}.")


def list_groups_txn(txn: Any) -> list[tuple[str, int]]:
    txn.execute("SELECT g.name, count(ug.user_uuid) FROM identity_groups g"
                " LEFT JOIN identity_user_groups ug ON ug.group_name = g.name"
                " GROUP BY g.name ORDER BY g.name")
    return [(r[0], int(r[1])) for r in txn.fetchall()]


def set_membership_txn(txn: Any, uuid: str, group: str, member: bool) -> None:
    get_user_txn(txn, uuid)
    txn.execute("SELECT 1 FROM identity_groups WHERE name = %s", (group,))
    if txn.fetchone() is None:
        raise errors.NotFound(f"No group {group}.")
    if member:
        txn.execute("INSERT INTO identity_user_groups (user_uuid, group_name) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING", (uuid, group))
    else:
        txn.execute("DELETE FROM identity_user_groups WHERE user_uuid = %s AND group_name = %s",
                    (uuid, group))
    notify_txn(txn, f"user:{uuid}")


@attrs.frozen
class Group:
    """A group as Keystone shows it (Astakos groups are named; schema 0004
    gave them ids and descriptions)."""

    id: str
    name: str
    description: str


_GROUP_COLUMNS = "g.id::text, g.name, g.description"


def create_group_txn(txn: Any, name: str, description: str) -> Group:
    """A new group; ``Conflict`` when the name is taken."""
    txn.execute(f"INSERT INTO identity_groups AS g (name, description) VALUES (%s, %s)"
                f" ON CONFLICT DO NOTHING RETURNING {_GROUP_COLUMNS}", (name, description))
    row = txn.fetchone()
    if row is None:
        raise errors.Conflict(f"A group named {name!r} exists already.")
    return Group(*row)


def group_txn(txn: Any, group_id: str) -> Group:
    """The group with this id; ``NotFound`` otherwise."""
    if is_uuid(group_id):
        txn.execute(f"SELECT {_GROUP_COLUMNS} FROM identity_groups g WHERE g.id = %s",
                    (group_id,))
        row = txn.fetchone()
        if row is not None:
            return Group(*row)
    raise errors.NotFound(f"Could not find group: {group_id}.")


def groups_txn(txn: Any, name: str | None = None, member: str | None = None) -> list[Group]:
    """Groups by name, optionally only the one called ``name`` or those
    the user ``member`` is in."""
    where, args = ["TRUE"], []
    if name is not None:
        where.append("g.name = %s")
        args.append(name)
    if member is not None:
        where.append("EXISTS (SELECT 1 FROM identity_user_groups ug WHERE ug.group_name ="
                     " g.name AND ug.user_uuid::text = %s)")
        args.append(member.lower())
    txn.execute(f"SELECT {_GROUP_COLUMNS} FROM identity_groups g WHERE {' AND '.join(where)}"
                " ORDER BY g.name", args)
    return [Group(*r) for r in txn.fetchall()]


def update_group_txn(txn: Any, group_id: str, name: str | None,
                     description: str | None) -> Group:
    """Rename (members follow) or describe the group; ``Conflict`` when
    the new name is taken."""
    group = group_txn(txn, group_id)
    if name is not None and name != group.name:
        txn.execute("SELECT 1 FROM identity_groups WHERE name = %s", (name,))
        if txn.fetchone():
            raise errors.Conflict(f"A group named {name!r} exists already.")
        txn.execute("SELECT user_uuid::text FROM identity_user_groups WHERE group_name = %s",
                    (group.name,))
        members = [r[0] for r in txn.fetchall()]
        txn.execute("UPDATE identity_groups SET name = %s WHERE id = %s", (name, group_id))
        for uuid in members:  # their tokens carry the group's name
            notify_txn(txn, f"user:{uuid}")
    if description is not None:
        txn.execute("UPDATE identity_groups SET description = %s WHERE id = %s",
                    (description, group_id))
    return group_txn(txn, group_id)


def group_members_txn(txn: Any, group_id: str) -> list[str]:
    """The uuids of the group's members."""
    txn.execute("SELECT ug.user_uuid::text FROM identity_user_groups ug"
                " JOIN identity_groups g ON g.name = ug.group_name WHERE g.id = %s"
                " ORDER BY 1", (group_id,))
    return [r[0] for r in txn.fetchall()]


def delete_user_txn(txn: Any, uuid: str) -> None:
    """Delete the user with its tokens, links, group and project
    memberships (the rows cascade); every node forgets its tokens."""
    get_user_txn(txn, uuid)
    txn.execute("DELETE FROM identity_users WHERE uuid = %s", (uuid,))
    notify_txn(txn, f"user:{uuid}")


# -- components ------------------------------------------------------------

def set_component_txn(txn: Any, name: str, token_hash: bytes, base_url: str,
                      ui_url: str) -> None:
    """Create a component or replace its token (the old one stops working)."""
    txn.execute(
        "INSERT INTO identity_components (name, token_hash, base_url, ui_url)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
        " token_hash = EXCLUDED.token_hash, base_url = EXCLUDED.base_url,"
        " ui_url = EXCLUDED.ui_url", (name, token_hash, base_url, ui_url))
    notify_txn(txn, f"component:{name}")


def component_by_token_txn(txn: Any, token_hash: bytes) -> Component | None:
    txn.execute("SELECT name, base_url, ui_url, created_at FROM identity_components"
                " WHERE token_hash = %s", (token_hash,))
    row = txn.fetchone()
    return Component(*row) if row else None


def list_components_txn(txn: Any) -> list[Component]:
    txn.execute("SELECT name, base_url, ui_url, created_at FROM identity_components"
                " ORDER BY name")
    return [Component(*r) for r in txn.fetchall()]


def remove_component_txn(txn: Any, name: str) -> None:
    txn.execute("DELETE FROM identity_components WHERE name = %s RETURNING name", (name,))
    if txn.fetchone() is None:
        raise errors.NotFound(f"No component {name}.")
    notify_txn(txn, f"component:{name}")


# -- failed logins and other counted attempts ---------------------------

# pg_advisory_xact_lock(class, key) class of the attempt counters (the
# two-key space never meets the one-key locks of migrations, GC, projects).
ATTEMPT_LOCK_CLASS = 0x534E4644 & 0x7FFFFFFF


@attrs.frozen
class Limit:
    """At most ``most`` counted attempts per ``key`` within the window;
    with ``only_if`` set, the limit applies only while ``only_if`` (another
    key) has attempts of its own in the window."""

    key: str
    most: int
    only_if: str | None = None


def attempt_txn(txn: Any, limits: Sequence[Limit], now: datetime.datetime,
                since: datetime.datetime) -> bool:
    """Count one attempt under every key of ``limits`` unless one of them
    is at its limit: ``True`` when counted, ``False`` when refused.

    Check and count are one step under a lock on each key (taken in sorted
    order), so concurrent attempts are counted one after the other and no
    more than the limit ever pass.  Records older than ``since`` are
    dropped on the way.
    """
    keys = sorted({limit.key for limit in limits})
    for key in keys:
        txn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (ATTEMPT_LOCK_CLASS, key))
    txn.execute("DELETE FROM identity_login_failures WHERE key = ANY(%s) AND failed_at < %s",
                (keys, since))
    counts = failures_txn(txn, keys, since)
    for limit in limits:
        if limit.only_if is not None and not counts.get(limit.only_if):
            continue
        if counts.get(limit.key, 0) >= limit.most:
            return False
    txn.executemany("INSERT INTO identity_login_failures (key, failed_at) VALUES (%s, %s)",
                    [(k, now) for k in keys])
    return True


def forget_attempt_txn(txn: Any, keys: Sequence[str], at: datetime.datetime,
                       clear: Sequence[str] = ()) -> None:
    """Take back the attempt counted ``at`` under each of ``keys`` (it did
    not fail), and forget every attempt of the keys in ``clear``."""
    for key in keys:
        txn.execute("DELETE FROM identity_login_failures WHERE ctid IN (SELECT ctid FROM"
                    " identity_login_failures WHERE key = %s AND failed_at = %s LIMIT 1)",
                    (key, at))
    if clear:
        txn.execute("DELETE FROM identity_login_failures WHERE key = ANY(%s)", (list(clear),))


def failures_txn(txn: Any, keys: Sequence[str], since: datetime.datetime) -> dict[str, int]:
    """Counted attempts per key since ``since``."""
    txn.execute("SELECT key, count(*) FROM identity_login_failures"
                " WHERE key = ANY(%s) AND failed_at >= %s GROUP BY key", (list(keys), since))
    return {r[0]: int(r[1]) for r in txn.fetchall()}


def prune_failures_txn(txn: Any, before: datetime.datetime) -> int:
    txn.execute("DELETE FROM identity_login_failures WHERE failed_at < %s", (before,))
    return int(txn.rowcount)


# -- pending sign-ups ------------------------------------------------------

def expire_pending_txn(txn: Any, now: datetime.datetime, expiry: datetime.timedelta,
                       limit: int = 1000) -> int:
    """Delete up to ``limit`` users still waiting for email verification
    whose last verification mail (or creation) is older than ``expiry``,
    both at ``now`` (the sweeping node's clock) and by the database's
    clock; how many were deleted.  Their email is free again."""
    txn.execute(
        "DELETE FROM identity_users WHERE uuid IN (SELECT uuid FROM identity_users"
        " WHERE state = 'pending_verification'"
        " AND coalesce(verification_sent, created_at) < LEAST(%s, now()) - %s LIMIT %s)",
        (now, expiry, limit))
    return int(txn.rowcount)


# -- feedback --------------------------------------------------------------

def add_feedback_txn(txn: Any, uuid: str, message: str, data: str) -> None:
    txn.execute("INSERT INTO identity_feedback (user_uuid, message, data) VALUES (%s, %s, %s)",
                (uuid, message, data))


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is a uuid in its canonical 36-character text form
    (what the database's ``uuid::text`` gives)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid_module.UUID(value)
    except ValueError:
        return False
    return True
