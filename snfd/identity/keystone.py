"""The Keystone API of the identity service, mounted at ``/identity``.

Routes (relative to the mount):

- ``GET /`` (300) and ``GET /v3``, ``GET /v2.0``: version documents, as
  keystoneauth's discovery reads them.
- ``/v3``: ``POST/GET/HEAD/DELETE /auth/tokens`` (password and token
  methods; project scope by id or by name in the Default domain, or
  unscoped; ``?allow_expired`` for administrators and services),
  ``GET /auth/projects``, ``/auth/catalog``, ``/auth/domains``,
  ``/domains``, ``/domains/<id>``; the administration API (users,
  projects, roles and their grants, groups) is ``keystone_admin.py``'s.
  Errors are Keystone's ``{"error": {"code", "title", "message"}}``.
- ``/v2.0``: Synnefo's ``POST /tokens`` (the user's token in, the same token
  and the catalog out; an empty body gives the public catalog) and the
  classic ``passwordCredentials`` login with an email and a password, which
  issues a new token; ``GET /tenants``.  Errors are the usual faults.

There is one domain, ``Default`` (id ``default``).  A user's Keystone name
is its username, or its email when it has none (a password login by name
takes either); the user's base project has the user's uuid as id and is
named ``system:<uuid>``.  Authentication of the caller (``X-Auth-Token``)
happens in front, in ``snfd.web.auth.TokenAuth``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from klein import Klein
from twisted.web import resource

from snfd import errors
from snfd.identity import roles
from snfd.identity.accounts import Accounts
from snfd.identity.app_credentials import (
    AppCredentials,
    CredentialRoutes,
    SecretBox,
    credential_user,
    token_credential_json,
)
from snfd.identity.assignments import Assignments
from snfd.identity.catalog import Catalog, stable_id
from snfd.identity.credentials import CredentialsAPI, CredentialStore
from snfd.identity.domain import DOMAIN, DOMAIN_ID, DOMAIN_NAME
from snfd.identity.keystone_admin import KeystoneAdmin
from snfd.identity.projects import Projects
from snfd.identity.providers import Credentials
from snfd.identity.store import Token, User, is_uuid
from snfd.web.app import MAX_JSON_BODY, json_body, json_object, make_app, read_json
from snfd.web.auth import user_of

UTC = datetime.UTC

V3_ID = "v3.14"
V3_UPDATED = "2020-04-07T00:00:00Z"
V2_UPDATED = "2014-04-17T00:00:00Z"
V3_MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
V2_MEDIA = [{"base": "application/json",
             "type": "application/vnd.openstack.identity-v2.0+json"}]

MEMBER_ROLE = "member"
ADMIN_ROLE = "admin"

_METHODS = ("password", "token", "application_credential")


class _SystemScope:
    """What ``_scope`` answers for ``{"system": {"all": true}}``."""


SYSTEM = _SystemScope()


def isotime(value: datetime.datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``, as Keystone writes it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def role(name: str) -> dict[str, str]:
    return {"id": stable_id("role", name), "name": name}


def roles_of(user: User, granted: Sequence[str] = (MEMBER_ROLE,)) -> list[dict[str, str]]:
    """A scoped token's roles: those ``granted`` on its project, ``admin``
    for administrators, every role these imply (``snfd.identity.roles``),
    and one role per group of the user."""
    names = roles.closure([*granted, *([ADMIN_ROLE] if user.is_admin else [])])
    names += [g for g in user.groups if g not in names]
    return [role(n) for n in names]


def _text(container: dict[str, Any], key: str, what: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise errors.BadRequest(f"{what} must be a non-empty string.")
    return value


def _check_domain(value: Any, what: str) -> None:
    """The Default domain, by id or name; 401 for any other domain."""
    domain = json_object(value, what)
    if "id" in domain:
        if not isinstance(domain["id"], str):
            raise errors.BadRequest(f"{what}.id must be a string.")
        if domain["id"] != DOMAIN_ID:
            raise errors.Unauthorized(f"Unknown domain {domain['id']!r}.")
    elif "name" in domain:
        if not isinstance(domain["name"], str):
            raise errors.BadRequest(f"{what}.name must be a string.")
        if domain["name"].lower() != DOMAIN_NAME.lower():
            raise errors.Unauthorized(f"Unknown domain {domain['name']!r}.")
    else:
        raise errors.BadRequest(f"{what} needs an id or a name.")


def _headers(request: Any) -> dict[str, str]:
    return {name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders() if values}


def _source(request: Any) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")


def _flag(request: Any, name: bytes) -> bool:
    """A query flag such as ``?nocatalog``, with or without a value
    (``request.args`` leaves out names without ``=``)."""
    query = request.uri.partition(b"?")[2]
    return any(part.partition(b"=")[0] == name for part in query.split(b"&"))


class _KeystoneFaults(resource.Resource):
    """Marks every request under ``/v3`` for Keystone-style error bodies
    before the Klein app (and its routing errors) sees it."""

    isLeaf = True

    def __init__(self, wrapped: resource.IResource):
        super().__init__()
        self._wrapped = wrapped

    def render(self, request: Any) -> Any:
        if request.postpath[:1] == [b"v3"]:
            request.fault_style = "keystone"
        return self._wrapped.render(request)


class KeystoneAPI:
    """Keystone v3 and Synnefo's v2.0 over ``Accounts`` and the catalog."""

    def __init__(self, accounts: Accounts, catalog: Catalog, reactor: Any, public_url: str,
                 max_body: int = MAX_JSON_BODY, credential_box: SecretBox | None = None,
                 projects: Projects | None = None, assignments: Assignments | None = None):
        self._accounts = accounts
        self._catalog = catalog
        self._reactor = reactor
        self._base = f"{public_url.rstrip('/')}/identity"
        self._max_body = max_body
        self._projects = projects or Projects(accounts.db, reactor)
        self._assignments = assignments or Assignments(accounts.db, reactor, accounts.cache)
        self._admin = KeystoneAdmin(accounts, self._projects, self._assignments, self._base,
                                    max_body)
        # Application and EC2 credentials (snfd.identity.app_credentials).
        self._credentials = CredentialRoutes(
            accounts, AppCredentials(accounts, self._role_names, credential_box), self._base,
            self._role_names, max_body)
        # The generic credential store (snfd.identity.credentials).
        self._store = CredentialsAPI(CredentialStore(accounts, self._projects, credential_box),
                                     self._base, max_body)
        self.app = self._routes()

    def resource(self) -> resource.IResource:
        return _KeystoneFaults(self.app.resource())

    # -- documents ---------------------------------------------------------

    def _v3_version(self) -> dict[str, Any]:
        return {"id": V3_ID, "status": "stable", "updated": V3_UPDATED,
                "links": [{"rel": "self", "href": f"{self._base}/v3/"}],
                "media-types": V3_MEDIA}

    def _v2_version(self) -> dict[str, Any]:
        return {"id": "v2.0", "status": "deprecated", "updated": V2_UPDATED,
                "links": [{"rel": "self", "href": f"{self._base}/v2.0/"}],
                "media-types": V2_MEDIA}

    def _links(self, path: str) -> dict[str, Any]:
        return {"self": f"{self._base}/v3/{path}", "previous": None, "next": None}

    def _project_json(self, project: Any) -> dict[str, Any]:
        pid = str(project.id)
        return {"id": pid, "name": project.name, "domain_id": DOMAIN_ID,
                "description": project.description or "", "enabled": True,
                "parent_id": DOMAIN_ID, "is_domain": False, "tags": [], "options": {},
                "links": {"self": f"{self._base}/v3/projects/{pid}"}}

    def _domain_json(self) -> dict[str, Any]:
        return {"id": DOMAIN_ID, "name": DOMAIN_NAME, "description": "The only domain.",
                "enabled": True, "tags": [], "options": {},
                "links": {"self": f"{self._base}/v3/domains/{DOMAIN_ID}"}}

    async def _token_json(self, token: Token, catalog: bool,
                          projects: Sequence[Any] | None = None) -> dict[str, Any]:
        """The v3 token body; 404 when the token's project is no longer one
        of the user's."""
        user = token.user
        cred = token.app_credential
        is_admin, groups = ((user.is_admin, user.groups) if cred is None
                            else credential_user(user, cred))
        body: dict[str, Any] = {
            "methods": list(token.methods),
            # SNF:* are Synnefo extensions (ignored by OpenStack clients) so
            # that a node validating tokens over HTTP knows the same as one
            # validating them in process.
            "user": {"id": user.uuid, "name": user.login_name, "domain": dict(DOMAIN),
                     "password_expires_at": None, "SNF:display_name": user.name,
                     "SNF:admin": is_admin, "SNF:groups": list(groups)},
            "audit_ids": list(token.audit_ids),
            "expires_at": isotime(token.expires_at),
            "issued_at": isotime(token.issued_at),
            "is_domain": False,
        }
        if token.system:
            body["system"] = {"all": True}
            body["roles"] = [role(n) for n in token.roles]
            if catalog:
                body["catalog"] = await self._catalog.v3(user.uuid)
        elif token.project is not None:
            if token.project_name is not None:
                # Validation read the project and the roles with the token.
                project_id, name, granted = token.project, token.project_name, token.roles
            else:
                if projects is None:
                    projects = await self._accounts.user_projects(user.uuid)
                project = next((p for p in projects if str(p.id) == token.project), None)
                if project is None:
                    raise errors.NotFound("Could not find token: its project is gone.")
                project_id, name = str(project.id), project.name
                granted = tuple(await self._assignments.token_roles(user.uuid, project.id)) \
                    if cred is None else ()
            body["project"] = {"id": project_id, "name": name, "domain": dict(DOMAIN)}
            body["roles"] = (roles_of(user, granted) if cred is None
                             else [role(n) for n in cred.roles])
            if cred is not None:
                body["application_credential"] = token_credential_json(cred)
            if catalog:
                body["catalog"] = await self._catalog.v3(user.uuid)
        return {"token": body}

    # -- routes ------------------------------------------------------------

    def _routes(self) -> Klein:
        app = make_app()
        routes: list[tuple[str, str, Any]] = [
            ("GET", "/", self.versions),
            ("GET", "/v3", self.v3_version),
            ("GET", "/v2.0", self.v2_version),
            ("POST", "/v3/auth/tokens", self.issue),
            ("GET", "/v3/auth/tokens", self.check),
            ("DELETE", "/v3/auth/tokens", self.revoke),
            ("GET", "/v3/auth/projects", self.auth_projects),
            ("GET", "/v3/auth/catalog", self.auth_catalog),
            ("GET", "/v3/auth/domains", self.domains),
            ("GET", "/v3/domains", self.domains),
            ("GET", "/v3/domains/<domain_id>", self.domain),
            ("POST", "/v2.0/tokens", self.v2_tokens),
            ("GET", "/v2.0/tenants", self.v2_tenants),
        ]
        routes += self._credentials.routes()
        routes += self._store.routes()
        # Users, projects, roles, grants, groups (snfd.identity.keystone_admin).
        routes += self._admin.routes()
        for method, path, handler in routes:
            # GET routes answer HEAD too (werkzeug adds it).
            app.route(path, methods=[method], endpoint=f"keystone:{method}:{path}",
                      strict_slashes=False)(handler)
        return app

    def versions(self, request: Any) -> bytes:
        """``GET /identity``: every version (300 Multiple Choices)."""
        return json_body(request, {"versions": {"values": [
            self._v3_version(), self._v2_version()]}}, 300)

    def v3_version(self, request: Any) -> bytes:
        return json_body(request, {"version": self._v3_version()})

    def v2_version(self, request: Any) -> bytes:
        return json_body(request, {"version": self._v2_version()})

    # -- v3 tokens ---------------------------------------------------------

    async def issue(self, request: Any) -> bytes:
        """``POST /v3/auth/tokens``: 201, ``X-Subject-Token`` and the body."""
        body = json_object(read_json(request, self._max_body))
        auth = json_object(body.get("auth"), '"auth"')
        identity = json_object(auth.get("identity"), '"auth.identity"')
        methods = identity.get("methods")
        if (not isinstance(methods, list) or not methods
                or not all(isinstance(m, str) for m in methods)):
            raise errors.BadRequest('"auth.identity.methods" must be a non-empty list of'
                                    " method names.")
        unknown = [m for m in methods if m not in _METHODS]
        if unknown:
            raise errors.Unauthorized(f"Unsupported authentication method {unknown[0]!r}"
                                      f" (supported: {', '.join(_METHODS)}).")
        scope = auth.get("scope")
        if scope is not None and scope != "unscoped" and not isinstance(scope, dict):
            raise errors.BadRequest('"auth.scope" must be an object or "unscoped".')
        if "application_credential" in methods:
            return await self._issue_app_credential(request, identity, methods, scope)

        user: User | None = None
        previous: Token | None = None
        if "password" in methods:
            user = await self._password(request, identity.get("password"))
        if "token" in methods:
            data = json_object(identity.get("token"), '"auth.identity.token"')
            previous = await self._subject(_text(data, "id", '"auth.identity.token.id"'),
                                           for_auth=True)
            if previous.app_credential is not None:
                raise errors.Forbidden("A token from an application credential cannot be"
                                       " used to get another token.")
            if user is not None and user.uuid != previous.user.uuid:
                raise errors.Unauthorized("The methods identify different users.")
            user = previous.user
        assert user is not None

        projects = await self._accounts.user_projects(user.uuid)
        target = self._scope(scope, projects)
        system = target is SYSTEM
        project = target if isinstance(target, str) else None
        expires_at = audit_chain = None
        new_methods = list(dict.fromkeys(methods))
        if previous is not None:
            expires_at = previous.expires_at
            audit_chain = previous.audit_chain or previous.audit_id
            new_methods += [m for m in previous.methods if m not in new_methods]
        secret, token = await self._accounts.issue_token(
            user, project, new_methods, expires_at=expires_at, audit_chain=audit_chain,
            system=system)
        reply = await self._token_json(token, not _flag(request, b"nocatalog"), projects)
        request.setHeader(b"x-subject-token", secret.encode("ascii"))
        return json_body(request, reply, 201)

    async def _issue_app_credential(self, request: Any, identity: dict[str, Any],
                                    methods: list[str], scope: Any) -> bytes:
        """The ``application_credential`` method (alone): a token scoped to
        the credential's project; a scope naming another project is 401."""
        if len(set(methods)) != 1:
            raise errors.Unauthorized("The application_credential method cannot be combined"
                                      " with other methods.")
        secret, token = await self._credentials.issue(identity, _source(request))
        if isinstance(scope, dict):
            projects = await self._accounts.user_projects(token.user.uuid)
            if self._scope(scope, projects) != token.project:
                await self._accounts.revoke(secret)
                raise errors.Unauthorized("An application credential's token is scoped to"
                                          " its own project.")
        reply = await self._token_json(token, not _flag(request, b"nocatalog"))
        request.setHeader(b"x-subject-token", secret.encode("ascii"))
        return json_body(request, reply, 201)

    async def _role_names(self, user: User, project: str) -> list[str]:
        """The role names ``user`` holds on ``project`` (as its token
        scoped there carries them)."""
        granted = await self._assignments.token_roles(user.uuid, project)
        return [r["name"] for r in roles_of(user, granted)]

    async def _password(self, request: Any, value: Any) -> User:
        data = json_object(value, '"auth.identity.password"')
        spec = json_object(data.get("user"), '"auth.identity.password.user"')
        password = spec.get("password")
        if not isinstance(password, str):
            raise errors.BadRequest('"auth.identity.password.user.password" must be a'
                                    " string.")
        if "domain" in spec:
            _check_domain(spec["domain"], '"auth.identity.password.user.domain"')
        if "id" in spec:
            user_id = _text(spec, "id", '"auth.identity.password.user.id"')
            try:
                username = (await self._accounts.get_user(user_id)).login_name
            except errors.NotFound:
                username = user_id  # fails below, counted as a failed login
        elif "name" in spec:
            user_id = None
            username = _text(spec, "name", '"auth.identity.password.user.name"')
        else:
            raise errors.BadRequest('"auth.identity.password.user" needs an id or a name.')
        user = await self._accounts.login(Credentials(
            username=username, password=password, headers=_headers(request),
            source=_source(request)))
        if user_id is not None and user.uuid != user_id:
            raise errors.Unauthorized("Invalid credentials")
        return user

    def _scope(self, scope: Any, projects: Sequence[Any]) -> str | _SystemScope | None:
        """The project id a token is to be scoped to (``None``: unscoped;
        ``SYSTEM``: the system)."""
        if scope is None or scope == "unscoped":
            return None
        if "system" in scope:
            if scope["system"] != {"all": True}:
                raise errors.BadRequest('"auth.scope.system" must be {"all": true}.')
            return SYSTEM
        if "project" in scope:
            spec = json_object(scope["project"], '"auth.scope.project"')
            if "id" in spec:
                return _text(spec, "id", '"auth.scope.project.id"')
            name = _text(spec, "name", '"auth.scope.project.name"')
            if "domain" in spec:
                _check_domain(spec["domain"], '"auth.scope.project.domain"')
            for p in projects:
                if p.name == name:
                    return str(p.id)
            raise errors.Unauthorized(f"No project {name!r} for this user.")
        for kind in ("domain", "OS-TRUST:trust"):
            if kind in scope:
                raise errors.Unauthorized(f"Tokens scoped to a {kind.split(':')[-1]} are not"
                                          " supported; scope to a project or the system.")
        raise errors.BadRequest('"auth.scope" must name a project or the system.')

    async def _subject(self, secret: str, for_auth: bool = False,
                       allow_expired: bool = False) -> Token:
        """The valid token ``secret``; 404 (401 ``for_auth``)
        when it is unknown, expired (unless ``allow_expired``) or its user
        inactive."""
        try:
            return await self._accounts.validate(secret, allow_expired=allow_expired)
        except errors.Unauthorized as e:
            if for_auth:
                raise
            raise errors.NotFound(f"Could not find token: {e.message}.") from None

    async def _subject_of(self, request: Any,
                          allow_expired: bool = False) -> tuple[str, Token]:
        caller = request.principal
        if caller is None:
            raise errors.Unauthorized("The request you have made requires authentication"
                                      " (X-Auth-Token).")
        raw = request.getHeader(b"x-subject-token")
        secret = raw.decode("ascii", "replace").strip() if raw else ""
        if not secret:
            raise errors.BadRequest("The X-Subject-Token header is required.")
        if allow_expired and not (caller.is_component or caller.is_admin or (
                caller.project is not None and roles.SERVICE in
                await self._assignments.token_roles(caller.user or "", caller.project))):
            raise errors.Forbidden("Only administrators and services may see expired"
                                   " tokens (allow_expired).")
        token = await self._subject(secret, allow_expired=allow_expired)
        if not (caller.is_component or caller.is_admin or caller.user == token.user.uuid):
            raise errors.Forbidden("You may only check or revoke your own tokens.")
        return secret, token

    async def check(self, request: Any) -> bytes:
        """``GET``/``HEAD /v3/auth/tokens``: the subject token's body (200);
        with ``?allow_expired=true`` (administrators and services) also an
        expired one, until the sweep deletes it."""
        allowed = (request.args.get(b"allow_expired") or [b"false"])[-1].lower()
        expired_too = allowed in (b"1", b"true", b"yes", b"on")
        secret, token = await self._subject_of(request, allow_expired=expired_too)
        if expired_too:
            reply = await self._token_json(token, False)
        else:
            # Kept with the token in the cache: a repeated validation
            # touches no database.
            reply = await self._accounts.token_view(
                secret, token, b"keystone-v3", lambda: self._token_json(token, False))
        scoped = "project" in reply["token"] or "system" in reply["token"]
        if scoped and not _flag(request, b"nocatalog"):
            reply = {"token": {**reply["token"],
                               "catalog": await self._catalog.v3(token.user.uuid)}}
        request.setHeader(b"x-subject-token", secret.encode("ascii"))
        body = json_body(request, reply)
        return b"" if request.method == b"HEAD" else body

    async def revoke(self, request: Any) -> bytes:
        """``DELETE /v3/auth/tokens``: the subject token stops working (204)."""
        secret, _ = await self._subject_of(request)
        try:
            await self._accounts.revoke(secret)
        except errors.NotFound:
            raise errors.NotFound("Could not find token.") from None
        request.setResponseCode(204)
        return b""

    # -- v3 resources ----------------------------------------------------------

    async def auth_projects(self, request: Any) -> bytes:
        caller = user_of(request)
        projects = await self._accounts.user_projects(caller.user or "")
        return json_body(request, {"projects": [self._project_json(p) for p in projects],
                                   "links": self._links("auth/projects")})

    async def auth_catalog(self, request: Any) -> bytes:
        caller = user_of(request)
        return json_body(request, {"catalog": await self._catalog.v3(caller.user),
                                   "links": self._links("auth/catalog")})

    async def domains(self, request: Any) -> bytes:
        user_of(request)
        names = request.args.get(b"name")
        shown = [self._domain_json()]
        if names and names[-1].decode("utf-8", "replace") != DOMAIN_NAME:
            shown = []
        return json_body(request, {"domains": shown, "links": self._links("domains")})

    async def domain(self, request: Any, domain_id: str) -> bytes:
        user_of(request)
        if domain_id != DOMAIN_ID:
            raise errors.NotFound(f"Could not find domain: {domain_id}.")
        return json_body(request, {"domain": self._domain_json()})

    # -- v2.0 ----------------------------------------------------------------

    async def v2_tokens(self, request: Any) -> bytes:
        """Synnefo's authenticate call, and the classic password login."""
        body = read_json(request, self._max_body, required=False)
        if body is None:
            return json_body(request, {"access": {
                "serviceCatalog": await self._catalog.v2(None)}})
        auth = json_object(json_object(body).get("auth"), '"auth"')
        tenant = auth.get("tenantName")
        if tenant is not None and not isinstance(tenant, str):
            raise errors.BadRequest("tenantName must be a string.")
        if "token" in auth:
            data = json_object(auth["token"], '"auth.token"')
            secret = _text(data, "id", '"auth.token.id"')
            token = await self._accounts.validate(secret)
            return await self._v2_same_token(request, secret, token, tenant)
        if "passwordCredentials" not in auth:
            raise errors.BadRequest("Malformed request: missing credentials.")
        creds = json_object(auth["passwordCredentials"], '"auth.passwordCredentials"')
        username = _text(creds, "username", '"passwordCredentials.username"')
        password = _text(creds, "password", '"passwordCredentials.password"')
        if is_uuid(username):
            # Synnefo's form: the user's uuid and token.
            token = await self._accounts.validate(password)
            if token.user.uuid != username:
                raise errors.Unauthorized("Invalid credentials")
            return await self._v2_same_token(request, password, token, tenant)
        return await self._v2_login(request, username, password, auth)

    async def _v2_same_token(self, request: Any, secret: str, token: Token,
                             tenant: str | None) -> bytes:
        user = token.user
        if tenant and tenant != user.uuid:
            raise errors.BadRequest("Not conforming tenantName")
        return await self._v2_reply(request, secret, token, user.uuid, user.name)

    async def _v2_login(self, request: Any, username: str, password: str,
                        auth: dict[str, Any]) -> bytes:
        user = await self._accounts.login(Credentials(
            username=username, password=password, headers=_headers(request),
            source=_source(request)))
        projects = await self._accounts.user_projects(user.uuid)
        # The tenant asked for, by id or name (the user's uuid names the
        # base project, as in Synnefo's form); by default the base project.
        wanted_id, wanted_name = auth.get("tenantId"), auth.get("tenantName")
        if wanted_id is None and wanted_name in (None, user.uuid):
            wanted_id = user.uuid
        project = next((p for p in projects if (str(p.id) == wanted_id if wanted_id is not None
                                                else p.name == wanted_name)), None)
        if project is None:
            raise errors.Unauthorized("The user is not a member of that tenant.")
        secret, token = await self._accounts.issue_token(user, str(project.id), ("password",))
        name = user.name if str(project.id) == user.uuid else project.name
        return await self._v2_reply(request, secret, token, str(project.id), name, projects)

    async def _v2_reply(self, request: Any, secret: str, token: Token, tenant_id: str,
                        tenant_name: str, projects: Sequence[Any] | None = None) -> bytes:
        user = token.user
        if projects is None:
            projects = await self._accounts.user_projects(user.uuid)
        return json_body(request, {"access": {
            "token": {"id": secret, "expires": isotime(token.expires_at),
                      "issued_at": isotime(token.issued_at),
                      "tenant": {"id": tenant_id, "name": tenant_name}},
            "user": {"id": user.uuid, "name": user.name,
                     "roles": [role(g) for g in user.groups], "roles_links": [],
                     "projects": [str(p.id) for p in projects]},
            "serviceCatalog": await self._catalog.v2(user.uuid),
        }})

    async def v2_tenants(self, request: Any) -> bytes:
        caller = user_of(request)
        projects = await self._accounts.user_projects(caller.user or "")
        return json_body(request, {"tenants": [
            {"id": str(p.id), "name": p.name, "description": p.description or "",
             "enabled": True} for p in projects], "tenants_links": []})
