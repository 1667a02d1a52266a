"""Application credentials, their access rules, EC2 credentials and
Keystone's generic credentials in PostgreSQL.

SQL lives only in the ``*_txn`` functions; they take a DB-API cursor and
return plain values.  Application credential secrets arrive already hashed
(argon2id), EC2 secrets and credential blobs already encrypted: no plain
value reaches the database.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid as uuid_module
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg2.errors

from snfd import errors
from snfd.identity import project_store, store
from snfd.identity.store import AccessRule, Token, is_uuid


@attrs.frozen
class AppCredential:
    """An application credential (never its secret)."""

    id: str
    user: str
    project: str
    name: str
    description: str | None
    roles: tuple[str, ...]
    unrestricted: bool
    expires_at: datetime.datetime | None
    access_rules: tuple[AccessRule, ...]


@attrs.frozen
class Ec2Credential:
    """An EC2 credential; ``secret`` is the stored (encrypted) form."""

    access: str
    user: str
    project: str
    secret: bytes
    #: its id in ``/v3/credentials`` (the SHA-256 of the access key it was
    #: made with)
    id: str = ""


@attrs.frozen
class StoredCredential:
    """A generic credential (``/v3/credentials``); ``blob`` is the stored
    (encrypted) form."""

    id: str
    user: str
    project: str | None
    type: str
    blob: bytes


_COLUMNS = ("c.id::text, c.user_uuid::text, c.project::text, c.name, c.description, c.roles,"
            " c.unrestricted, c.expires_at")


def _rules_of_txn(txn: Any, credential_id: str) -> tuple[AccessRule, ...]:
    txn.execute("SELECT r.id::text, r.service, r.method, r.path FROM identity_access_rules r"
                " JOIN identity_app_credential_rules cr ON cr.rule = r.id"
                " WHERE cr.credential = %s ORDER BY r.service, r.path, r.method",
                (credential_id,))
    return tuple(AccessRule(*r) for r in txn.fetchall())


def _credential(txn: Any, row: Sequence[Any]) -> AppCredential:
    return AppCredential(row[0], row[1], row[2], row[3], row[4], tuple(row[5]), row[6],
                         row[7], _rules_of_txn(txn, row[0]))


# -- application credentials ---------------------------------------------------

def create_app_credential_txn(txn: Any, user: str, project: str, name: str,
                              description: str | None, secret_hash: str,
                              roles: Sequence[str], unrestricted: bool,
                              expires_at: datetime.datetime | None,
                              rules: Sequence[tuple[str | None, str, str, str]],
                              ) -> AppCredential:
    """A new credential of ``user`` on ``project``.  ``rules`` are
    ``(id, service, method, path)``: an id names an existing rule of the
    user (404 otherwise); without one an identical rule of the user is
    reused or a new one made.  409 when the user has a credential of that
    name."""
    cid = str(uuid_module.uuid4())
    try:
        txn.execute("SAVEPOINT app_credential")
        txn.execute(
            "INSERT INTO identity_app_credentials (id, user_uuid, project, name, description,"
            " secret_hash, roles, unrestricted, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (cid, user, project, name, description, secret_hash, list(roles), unrestricted,
             expires_at))
        txn.execute("RELEASE SAVEPOINT app_credential")
    except psycopg2.errors.UniqueViolation:
        txn.execute("ROLLBACK TO SAVEPOINT app_credential")
        raise errors.Conflict(f"An application credential named {name!r} exists"
                              " already.") from None
    for rule_id, service, method, path in rules:
        if rule_id is not None:
            txn.execute("SELECT id::text FROM identity_access_rules"
                        " WHERE id = %s AND user_uuid = %s",
                        (rule_id if is_uuid(rule_id) else None, user))
            row = txn.fetchone()
            if row is None:
                raise errors.NotFound(f"Could not find access rule: {rule_id}.")
        else:
            txn.execute(
                "INSERT INTO identity_access_rules (id, user_uuid, service, method, path)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_uuid, service, method, path)"
                " DO UPDATE SET path = EXCLUDED.path RETURNING id::text",
                (str(uuid_module.uuid4()), user, service, method, path))
            row = txn.fetchone()
        txn.execute("INSERT INTO identity_app_credential_rules (credential, rule)"
                    " VALUES (%s, %s) ON CONFLICT DO NOTHING", (cid, row[0]))
    found = get_app_credential_txn(txn, cid)
    assert found is not None
    return found


def get_app_credential_txn(txn: Any, credential_id: str) -> AppCredential | None:
    if not is_uuid(credential_id):
        return None
    txn.execute(f"SELECT {_COLUMNS} FROM identity_app_credentials c WHERE c.id = %s",
                (credential_id,))
    row = txn.fetchone()
    return _credential(txn, row) if row else None


def app_credential_by_name_txn(txn: Any, user: str, name: str) -> AppCredential | None:
    if not is_uuid(user):
        return None
    txn.execute(f"SELECT {_COLUMNS} FROM identity_app_credentials c"
                " WHERE c.user_uuid = %s AND c.name = %s", (user, name))
    row = txn.fetchone()
    return _credential(txn, row) if row else None


def app_secret_hash_txn(txn: Any, credential_id: str) -> str | None:
    """The argon2 hash of the credential's secret (``None``: no such credential)."""
    txn.execute("SELECT secret_hash FROM identity_app_credentials WHERE id = %s",
                (credential_id,))
    row = txn.fetchone()
    return row[0] if row else None


def list_app_credentials_txn(txn: Any, user: str, name: str | None = None,
                             ) -> list[AppCredential]:
    if not is_uuid(user):
        return []
    where, args = "c.user_uuid = %s", [user]
    if name is not None:
        where += " AND c.name = %s"
        args.append(name)
    txn.execute(f"SELECT {_COLUMNS} FROM identity_app_credentials c WHERE {where}"
                " ORDER BY c.created_at, c.name", args)
    return [_credential(txn, r) for r in txn.fetchall()]


def delete_app_credential_txn(txn: Any, credential_id: str) -> None:
    """Delete a credential and (by the foreign key) every token issued from
    it; every node's token cache hears of it."""
    txn.execute("DELETE FROM identity_app_credentials WHERE id = %s RETURNING user_uuid::text",
                (credential_id,))
    row = txn.fetchone()
    if row is None:
        raise errors.NotFound(f"Could not find application credential: {credential_id}.")
    store.notify_txn(txn, f"user:{row[0]}")


def issue_app_token_txn(txn: Any, token_hash: bytes, credential: AppCredential,
                        audit_id: str, now: datetime.datetime,
                        expires: datetime.datetime) -> Token:
    """A token of the credential's user scoped to its project; 401 when the
    user is no longer a member of that project or the credential is gone."""
    if get_app_credential_txn(txn, credential.id) is None:
        raise errors.Unauthorized("The application credential no longer exists.")
    member_of = {str(p.id) for p in project_store.projects_of_user_txn(txn, credential.user)}
    if credential.project not in member_of:
        raise errors.Unauthorized("The user of this application credential is no longer a"
                                  " member of its project.")
    store.add_token_txn(txn, token_hash, credential.user, False, credential.project,
                        ["application_credential"], audit_id, None, now, expires,
                        app_credential=credential.id)
    token = store.token_txn(txn, token_hash)
    assert token is not None
    return token


# -- access rules -----------------------------------------------------------------

def list_access_rules_txn(txn: Any, user: str) -> list[AccessRule]:
    if not is_uuid(user):
        return []
    txn.execute("SELECT id::text, service, method, path FROM identity_access_rules"
                " WHERE user_uuid = %s ORDER BY service, path, method", (user,))
    return [AccessRule(*r) for r in txn.fetchall()]


def get_access_rule_txn(txn: Any, user: str, rule_id: str) -> AccessRule | None:
    if not (is_uuid(user) and is_uuid(rule_id)):
        return None
    txn.execute("SELECT id::text, service, method, path FROM identity_access_rules"
                " WHERE user_uuid = %s AND id = %s", (user, rule_id))
    row = txn.fetchone()
    return AccessRule(*row) if row else None


def delete_access_rule_txn(txn: Any, user: str, rule_id: str) -> None:
    """Delete a rule of the user; 404 when unknown, 403 while a credential
    uses it."""
    if get_access_rule_txn(txn, user, rule_id) is None:
        raise errors.NotFound(f"Could not find access rule: {rule_id}.")
    txn.execute("SELECT 1 FROM identity_app_credential_rules WHERE rule = %s LIMIT 1",
                (rule_id,))
    if txn.fetchone():
        raise errors.Forbidden("The access rule is in use by an application credential;"
                               " delete the credential first.")
    txn.execute("DELETE FROM identity_access_rules WHERE id = %s", (rule_id,))


# -- EC2 credentials -------------------------------------------------------------

def ec2_id(access: str) -> str:
    """The credential id of an EC2 access key (Keystone's: its SHA-256)."""
    return hashlib.sha256(access.encode()).hexdigest()


def create_ec2_txn(txn: Any, access: str, user: str, project: str, secret: bytes,
                   now: datetime.datetime) -> Ec2Credential:
    """409 when the access key is taken."""
    txn.execute("INSERT INTO identity_ec2_credentials (access, user_uuid, project, secret,"
                " created_at, id) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                " RETURNING access", (access, user, project, secret, now, ec2_id(access)))
    if txn.fetchone() is None:
        raise errors.Conflict("An EC2 credential with this access key exists already.")
    return Ec2Credential(access, user, project, secret, ec2_id(access))


def list_ec2_txn(txn: Any, user: str | None = None) -> list[Ec2Credential]:
    """Every EC2 credential (of ``user`` when given)."""
    txn.execute("SELECT access, user_uuid::text, project::text, secret, id"
                " FROM identity_ec2_credentials WHERE %(u)s::uuid IS NULL"
                " OR user_uuid = %(u)s::uuid ORDER BY created_at, access",
                {"u": user if user is None or is_uuid(user) else _NOBODY})
    return [Ec2Credential(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in txn.fetchall()]


def ec2_by_id_txn(txn: Any, credential_id: str) -> Ec2Credential | None:
    txn.execute("SELECT access, user_uuid::text, project::text, secret, id"
                " FROM identity_ec2_credentials WHERE id = %s", (credential_id,))
    r = txn.fetchone()
    return Ec2Credential(r[0], r[1], r[2], bytes(r[3]), r[4]) if r else None


def update_ec2_txn(txn: Any, credential_id: str, access: str, secret: bytes) -> None:
    """A new access key and secret for the EC2 credential ``credential_id``
    (its id stays); 409 when the access key is another's."""
    txn.execute("SELECT 1 FROM identity_ec2_credentials WHERE access = %s AND id <> %s",
                (access, credential_id))
    if txn.fetchone():
        raise errors.Conflict("An EC2 credential with this access key exists already.")
    txn.execute("UPDATE identity_ec2_credentials SET access = %s, secret = %s WHERE id = %s",
                (access, secret, credential_id))


# -- generic credentials ----------------------------------------------------------

_NOBODY = "00000000-0000-0000-0000-000000000000"


def create_credential_txn(txn: Any, cred: StoredCredential, now: datetime.datetime) -> None:
    txn.execute("INSERT INTO identity_credentials (id, user_uuid, project, type, blob,"
                " created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (cred.id, cred.user, cred.project, cred.type, cred.blob, now))


def credentials_txn(txn: Any, user: str | None = None) -> list[StoredCredential]:
    """Every generic credential (of ``user`` when given)."""
    txn.execute("SELECT id, user_uuid::text, project::text, type, blob"
                " FROM identity_credentials WHERE %(u)s::uuid IS NULL"
                " OR user_uuid = %(u)s::uuid ORDER BY created_at, id",
                {"u": user if user is None or is_uuid(user) else _NOBODY})
    return [StoredCredential(r[0], r[1], r[2], r[3], bytes(r[4])) for r in txn.fetchall()]


def credential_txn(txn: Any, credential_id: str) -> StoredCredential | None:
    txn.execute("SELECT id, user_uuid::text, project::text, type, blob"
                " FROM identity_credentials WHERE id = %s", (credential_id,))
    r = txn.fetchone()
    return StoredCredential(r[0], r[1], r[2], r[3], bytes(r[4])) if r else None


def update_credential_txn(txn: Any, credential_id: str, blob: bytes) -> None:
    txn.execute("UPDATE identity_credentials SET blob = %s WHERE id = %s",
                (blob, credential_id))


def delete_credential_txn(txn: Any, credential_id: str) -> bool:
    """Delete a generic or EC2 credential by id; whether one was there."""
    txn.execute("DELETE FROM identity_credentials WHERE id = %s", (credential_id,))
    if txn.rowcount:
        return True
    txn.execute("DELETE FROM identity_ec2_credentials WHERE id = %s", (credential_id,))
    return bool(txn.rowcount)


def get_ec2_txn(txn: Any, user: str, access: str) -> Ec2Credential | None:
    if not is_uuid(user):
        return None
    txn.execute("SELECT access, user_uuid::text, project::text, secret, id"
                " FROM identity_ec2_credentials WHERE user_uuid = %s AND access = %s",
                (user, access))
    r = txn.fetchone()
    return Ec2Credential(r[0], r[1], r[2], bytes(r[3]), r[4]) if r else None


def delete_ec2_txn(txn: Any, user: str, access: str) -> None:
    txn.execute("DELETE FROM identity_ec2_credentials WHERE user_uuid = %s AND access = %s"
                " RETURNING access", (user if is_uuid(user) else None, access))
    if txn.fetchone() is None:
        raise errors.NotFound(f"Could not find credential: {access}.")
