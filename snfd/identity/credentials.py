"""Keystone's generic credential store (``/v3/credentials``).

A credential is a blob (a string) of some ``type`` belonging to a user,
optionally bound to a project.  Type ``ec2`` is the EC2 credential of
``/v3/users/<u>/credentials/OS-EC2`` seen through this API: its blob is the
JSON ``{"access": ..., "secret": ...}``, its id the hex SHA-256 of the
access key it was made with (Keystone's rule; it keeps that id when the
blob changes), and it needs a project.  Any other type is kept as given.
Every blob is stored encrypted with the node's credential key (the
``SecretBox`` of ``app_credentials.py``).

Who may do what: administrators everything; a reader on the system reads
every credential; a user creates, reads, changes and deletes its own (on
its own projects).  ``id``, ``type``, ``user_id`` and ``project_id`` never
change: only ``blob`` does.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import attrs

from snfd import errors
from snfd.identity import credential_store
from snfd.identity.accounts import Accounts
from snfd.identity.app_credentials import SecretBox
from snfd.identity.credential_store import Ec2Credential, StoredCredential
from snfd.identity.keystone_admin import reads_all
from snfd.identity.projects import Projects
from snfd.identity.store import is_uuid
from snfd.web.app import json_body, json_object, read_json
from snfd.web.auth import Principal, user_of

EC2 = "ec2"
#: The longest blob kept (Keystone's column is a text; this bounds it).
MAX_BLOB = 64 * 1024
_TYPE_LENGTH = 255


@attrs.frozen
class Credential:
    """A credential as the API shows it (the blob in the clear)."""

    id: str
    user: str
    project: str | None
    type: str
    blob: str


def _ec2_blob(blob: str) -> tuple[str, str]:
    """``(access, secret)`` of an EC2 credential's blob; 400 otherwise."""
    try:
        data = json.loads(blob)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise errors.BadRequest('An ec2 credential\'s blob is a JSON object with "access"'
                                ' and "secret".')
    access, secret = data.get("access"), data.get("secret")
    if not isinstance(access, str) or not access or not isinstance(secret, str) or not secret:
        raise errors.BadRequest('An ec2 credential\'s blob needs "access" and "secret"'
                                " (non-empty strings).")
    extra = sorted(k for k, v in data.items() if k not in ("access", "secret") and v is not None)
    if extra:
        raise errors.BadRequest(f"An ec2 credential keeps only access and secret, not"
                                f" {', '.join(extra)}.")
    return access, secret


class CredentialStore:
    """Generic and EC2 credentials over the cluster database."""

    def __init__(self, accounts: Accounts, projects: Projects, box: SecretBox | None):
        self._accounts = accounts
        self._db = accounts.db
        self._projects = projects
        self._box = box

    def _sealer(self) -> SecretBox:
        if self._box is None:
            raise errors.ServiceUnavailable("Credentials need a credential key"
                                            " ([identity] credential_key_file).")
        return self._box

    def _ec2(self, cred: Ec2Credential) -> Credential:
        secret = self._sealer().open(cred.access, cred.secret)
        return Credential(cred.id, cred.user, cred.project, EC2,
                          json.dumps({"access": cred.access, "secret": secret}))

    def _generic(self, cred: StoredCredential) -> Credential:
        return Credential(cred.id, cred.user, cred.project, cred.type,
                          self._sealer().open(cred.id, cred.blob))

    async def create(self, user: str, project: str | None, kind: str, blob: str) -> Credential:
        """A new credential of ``user`` (which must exist), on ``project``
        (an alive project, required for ``ec2``)."""
        if not is_uuid(user):
            raise errors.NotFound(f"Could not find user: {user}.")
        user = (await self._accounts.get_user(user)).uuid
        if project is not None and not (is_uuid(project)
                                        and await self._projects.alive_projects([project])):
            raise errors.NotFound(f"Could not find project: {project}.")
        now = self._accounts.now()
        if kind == EC2:
            if project is None:
                raise errors.BadRequest("An ec2 credential needs a project_id.")
            access, secret = _ec2_blob(blob)
            await self._db.run("identity.create_ec2", credential_store.create_ec2_txn, access,
                               user, project, self._sealer().seal(access, secret), now)
            return Credential(credential_store.ec2_id(access), user, project, EC2, blob)
        cid = secrets.token_hex(32)
        await self._db.run("identity.create_credential", credential_store.create_credential_txn,
                           StoredCredential(cid, user, project, kind,
                                            self._sealer().seal(cid, blob)), now)
        return Credential(cid, user, project, kind, blob)

    async def project_ids(self, user: str) -> set[str]:
        """The ids of the user's projects."""
        return {str(p.id) for p in await self._accounts.user_projects(user)}

    async def find(self, user: str | None = None, kind: str | None = None) -> list[Credential]:
        """Every credential (of ``user``, of type ``kind``, when given)."""
        found: list[Credential] = []
        if kind in (None, EC2):
            ec2 = await self._db.run("identity.list_ec2", credential_store.list_ec2_txn, user)
            found += [self._ec2(c) for c in ec2]
        if kind != EC2:
            rest = await self._db.run("identity.list_credentials",
                                      credential_store.credentials_txn, user)
            found += [self._generic(c) for c in rest if kind is None or c.type == kind]
        return found

    async def get(self, credential_id: str) -> Credential:
        generic = await self._db.run("identity.get_credential", credential_store.credential_txn,
                                     credential_id)
        if generic is not None:
            return self._generic(generic)
        ec2 = await self._db.run("identity.get_ec2", credential_store.ec2_by_id_txn,
                                 credential_id)
        if ec2 is None:
            raise errors.NotFound(f"Could not find credential: {credential_id}.")
        return self._ec2(ec2)

    async def update(self, cred: Credential, blob: str) -> Credential:
        """``cred`` with a new blob (an ec2 one may change its access key;
        its id stays)."""
        if cred.type == EC2:
            access, secret = _ec2_blob(blob)
            await self._db.run("identity.update_ec2", credential_store.update_ec2_txn, cred.id,
                               access, self._sealer().seal(access, secret))
        else:
            await self._db.run("identity.update_credential",
                               credential_store.update_credential_txn, cred.id,
                               self._sealer().seal(cred.id, blob))
        return attrs.evolve(cred, blob=blob)

    async def delete(self, credential_id: str) -> None:
        if not await self._db.run("identity.delete_credential",
                                  credential_store.delete_credential_txn, credential_id):
            raise errors.NotFound(f"Could not find credential: {credential_id}.")


# -- HTTP ----------------------------------------------------------------------------

def _blob(data: dict[str, Any]) -> str:
    blob = data.get("blob")
    if not isinstance(blob, str):
        raise errors.BadRequest('"credential.blob" must be a string.')
    if len(blob.encode()) > MAX_BLOB:
        raise errors.BadRequest(f'"credential.blob" is longer than {MAX_BLOB} bytes.')
    return blob


class CredentialsAPI:
    """The handlers of ``/v3/credentials``; ``routes()`` lists them for
    ``KeystoneAPI``."""

    def __init__(self, credentials: CredentialStore, base: str, max_body: int):
        self._credentials = credentials
        self._base = base
        self._max_body = max_body

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/v3/credentials", self.create),
            ("GET", "/v3/credentials", self.index),
            ("GET", "/v3/credentials/<credential_id>", self.show),
            ("PATCH", "/v3/credentials/<credential_id>", self.update),
            ("DELETE", "/v3/credentials/<credential_id>", self.delete),
        ]

    def _json(self, cred: Credential) -> dict[str, Any]:
        return {"id": cred.id, "user_id": cred.user, "project_id": cred.project,
                "type": cred.type, "blob": cred.blob,
                "links": {"self": f"{self._base}/v3/credentials/{cred.id}"}}

    def _body(self, request: Any) -> dict[str, Any]:
        body = json_object(read_json(request, self._max_body))
        return json_object(body.get("credential"), '"credential"')

    async def _visible(self, request: Any, credential_id: str, write: bool) -> Credential:
        """The credential, to its owner, an administrator, or (reading) a
        reader on the system; 404 to anyone else, who may not know it."""
        caller = user_of(request)
        cred = await self._credentials.get(credential_id)
        allowed = caller.is_admin if write else reads_all(caller)
        if cred.user != caller.user and not allowed:
            raise errors.NotFound(f"Could not find credential: {credential_id}.")
        return cred

    async def create(self, request: Any) -> bytes:
        caller = user_of(request)
        data = self._body(request)
        user, kind = data.get("user_id"), data.get("type")
        if not isinstance(user, str) or not user:
            raise errors.BadRequest('"credential.user_id" is required.')
        if not isinstance(kind, str) or not kind or len(kind) > _TYPE_LENGTH:
            raise errors.BadRequest('"credential.type" is required (a string of at most'
                                    f" {_TYPE_LENGTH} characters).")
        project = data.get("project_id")
        if project is not None and not isinstance(project, str):
            raise errors.BadRequest('"credential.project_id" must be a string.')
        blob = _blob(data)
        if not caller.is_admin:
            if user != caller.user:
                raise errors.Forbidden("You may only create your own credentials.")
            await self._own_project(caller, project)
        cred = await self._credentials.create(user, project, kind, blob)
        return json_body(request, {"credential": self._json(cred)}, 201)

    async def _own_project(self, caller: Principal, project: str | None) -> None:
        if project is None:
            return
        if project not in await self._credentials.project_ids(caller.user or ""):
            raise errors.Forbidden(f"Project {project} is not one of yours.")

    async def index(self, request: Any) -> bytes:
        """Filters ``user_id`` and ``type``; a caller that may not read every
        credential sees its own."""
        caller = user_of(request)
        wanted = request.args.get(b"user_id")
        user = wanted[-1].decode("utf-8", "replace") if wanted else None
        if not reads_all(caller):
            if user is not None and user != caller.user:
                found: list[Credential] = []
                return self._list(request, found)
            user = caller.user
        kinds = request.args.get(b"type")
        kind = kinds[-1].decode("utf-8", "replace") if kinds else None
        return self._list(request, await self._credentials.find(user, kind))

    def _list(self, request: Any, found: list[Credential]) -> bytes:
        return json_body(request, {
            "credentials": [self._json(c) for c in found],
            "links": {"self": f"{self._base}/v3/credentials", "previous": None,
                      "next": None}})

    async def show(self, request: Any, credential_id: str) -> bytes:
        cred = await self._visible(request, credential_id, write=False)
        return json_body(request, {"credential": self._json(cred)})

    async def update(self, request: Any, credential_id: str) -> bytes:
        cred = await self._visible(request, credential_id, write=True)
        data = self._body(request)
        fixed = {"id": cred.id, "type": cred.type, "user_id": cred.user,
                 "project_id": cred.project}
        changed = sorted(k for k, v in data.items() if k in fixed and v != fixed[k])
        if changed:
            raise errors.BadRequest(f"{', '.join(changed)} of a credential cannot be changed;"
                                    " only its blob can.")
        if "blob" in data:
            cred = await self._credentials.update(cred, _blob(data))
        return json_body(request, {"credential": self._json(cred)})

    async def delete(self, request: Any, credential_id: str) -> bytes:
        await self._visible(request, credential_id, write=True)
        await self._credentials.delete(credential_id)
        request.setResponseCode(204)
        return b""
