"""Keystone v3's administration API over the Astakos model, registered
into ``KeystoneAPI``'s routes (under ``/identity/v3``).

- Users (``/users``): a user's name is its username, or its email when it
  has none (users made with a name that is an email address and no other
  email keep the old Astakos form: the name is the email); ``description`` is its
  display name (first and last name); ``enabled`` is the Astakos state
  (``active``; disabling deactivates, enabling activates); the default
  project is Synnefo's.  Deleting a user deletes its base project, which
  is refused while it holds resources.
- Projects (``/projects``): Synnefo projects.  An administrator's new
  project is applied for and approved at once, with each resource's
  ``project_default``; ``enabled`` is active versus suspended; deleting
  terminates it.  One flat tree in the one domain: ``parent_id`` is
  ``default``, ``is_domain`` false.  A user's base project
  (``system:<uuid>``) is listed as the user's own.
- Roles (``/roles``, ``/role_inferences``): the fixed roles of
  ``roles.py``; grants (``/projects/<p>/users|groups/<id>/roles``) and
  their listing (``/role_assignments``) are ``assignments.py``'s.
- Groups (``/groups``): Astakos groups.
- Domains: only ``Default`` exists; creating, changing or deleting one is
  403.

Who may do what is the table in ``docs/identity.md`` ("Keystone
administration"): administrators (Astakos admins) everything; a user
reads itself, its projects, groups and role assignments, and changes its
own password.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from snfd import errors
from snfd.identity import project_tags, roles
from snfd.identity.accounts import Accounts
from snfd.identity.assignments import Assignment, Assignments
from snfd.identity.domain import DOMAIN, DOMAIN_ID
from snfd.identity.project_store import Project
from snfd.identity.projects import Projects
from snfd.identity.providers import Credentials
from snfd.identity.store import Group, User, is_uuid
from snfd.web.app import MAX_JSON_BODY, json_body, json_object, read_json
from snfd.web.auth import Principal, user_of

Handler = Callable[..., Any]


def reads_all(caller: Principal) -> bool:
    """Whether the caller may read everything of the administration API:
    an administrator, or a token scoped to the system with ``reader``."""
    return caller.is_admin or (caller.system and roles.READER in caller.roles)

_FALSE = ("0", "false", "no", "off")
#: Keystone's limit on a project's name (Synnefo's own API allows 80).
PROJECT_NAME_LENGTH = 64
_NOT_ALLOWED = "You are not authorized to perform the requested action: {}."


def _args(request: Any, name: str) -> str | None:
    """The last value of the query parameter ``name``; ``""`` for a
    parameter given without ``=``; ``None`` when absent."""
    values = request.args.get(name.encode())
    if values:
        return str(values[-1].decode("utf-8", "replace"))
    query = request.uri.partition(b"?")[2]
    if any(part == name.encode() for part in query.split(b"&")):
        return ""
    return None


def _flag(request: Any, name: str) -> bool:
    value = _args(request, name)
    return value is not None and value.lower() not in _FALSE


def _bool_filter(request: Any, name: str) -> bool | None:
    value = _args(request, name)
    if value is None:
        return None
    return value.lower() not in _FALSE


def _body(request: Any, key: str, max_body: int) -> dict[str, Any]:
    return json_object(json_object(read_json(request, max_body)).get(key), f'"{key}"')


#: The user properties Keystone's API defines; any other is kept as given
#: (``User.extra``) and shown back, as Keystone does.
_USER_KEYS = frozenset({"id", "name", "email", "password", "enabled", "description",
                        "default_project_id", "domain_id", "options", "links", "federated",
                        "password_expires_at"})


def _user_extra(data: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, Any]:
    """The extra properties after a create (``before`` None) or an update
    (given keys replace, ``null`` removes)."""
    extra = dict(before or {})
    for key, value in data.items():
        if key in _USER_KEYS:
            continue
        if value is None:
            extra.pop(key, None)
        else:
            extra[key] = value
    return extra


def _opt_text(data: dict[str, Any], key: str, limit: int = 255) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.BadRequest(f"{key} must be a string of at most {limit} characters.")
    return value


def _opt_bool(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise errors.BadRequest(f"{key} must be true or false.")
    return value


def _check_domain_id(data: dict[str, Any]) -> None:
    """404 for a ``domain_id`` other than the one domain (Keystone's answer
    for a domain that does not exist)."""
    domain = data.get("domain_id")
    if domain is not None and domain != DOMAIN_ID:
        raise errors.NotFound(f"Could not find domain: {domain} (there is one domain,"
                              f" {DOMAIN_ID!r}).")


def _split_name(description: str) -> tuple[str, str]:
    """A display name as Astakos's first and last name."""
    first, _, last = description.strip().partition(" ")
    return first, last.strip()


def _role_name(ref: str) -> str:
    """The role a URL names, by id (or, for convenience, by name)."""
    name = roles.by_id(ref) or (ref if ref in roles.NAMES else None)
    if name is None:
        raise errors.NotFound(f"Could not find role: {ref}.")
    return name


class KeystoneAdmin:
    """The handlers; ``routes()`` is what ``KeystoneAPI`` registers."""

    def __init__(self, accounts: Accounts, projects: Projects, assignments: Assignments,
                 base: str, max_body: int = MAX_JSON_BODY):
        self._accounts = accounts
        self._projects = projects
        self._assignments = assignments
        self._base = base
        self._max_body = max_body

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v3/users", self.list_users),
            ("POST", "/v3/users", self.create_user),
            ("GET", "/v3/users/<user_id>", self.show_user),
            ("PATCH", "/v3/users/<user_id>", self.update_user),
            ("DELETE", "/v3/users/<user_id>", self.delete_user),
            ("GET", "/v3/users/<user_id>/projects", self.user_projects),
            ("GET", "/v3/users/<user_id>/groups", self.user_groups),
            ("POST", "/v3/users/<user_id>/password", self.change_password),
            ("GET", "/v3/projects", self.list_projects),
            ("POST", "/v3/projects", self.create_project),
            ("GET", "/v3/projects/<project_id>", self.show_project),
            ("PATCH", "/v3/projects/<project_id>", self.update_project),
            ("DELETE", "/v3/projects/<project_id>", self.delete_project),
            ("GET", "/v3/projects/<project_id>/tags", self.project_tags),
            ("PUT", "/v3/projects/<project_id>/tags", self.replace_tags),
            ("DELETE", "/v3/projects/<project_id>/tags", self.replace_tags),
            ("GET", "/v3/projects/<project_id>/tags/<tag>", self.check_tag),
            ("PUT", "/v3/projects/<project_id>/tags/<tag>", self.add_tag),
            ("DELETE", "/v3/projects/<project_id>/tags/<tag>", self.remove_tag),
            ("GET", "/v3/projects/<project_id>/users/<user_id>/roles", self.user_roles),
            ("GET", "/v3/projects/<project_id>/users/<user_id>/roles/<role_id>",
             self.check_user_role),
            ("PUT", "/v3/projects/<project_id>/users/<user_id>/roles/<role_id>",
             self.grant_user_role),
            ("DELETE", "/v3/projects/<project_id>/users/<user_id>/roles/<role_id>",
             self.revoke_user_role),
            ("GET", "/v3/projects/<project_id>/groups/<group_id>/roles", self.group_roles),
            ("GET", "/v3/projects/<project_id>/groups/<group_id>/roles/<role_id>",
             self.check_group_role),
            ("PUT", "/v3/projects/<project_id>/groups/<group_id>/roles/<role_id>",
             self.grant_group_role),
            ("DELETE", "/v3/projects/<project_id>/groups/<group_id>/roles/<role_id>",
             self.revoke_group_role),
            ("GET", "/v3/system/users/<user_id>/roles", self.system_roles),
            ("GET", "/v3/system/users/<user_id>/roles/<role_id>", self.check_system_role),
            ("PUT", "/v3/system/users/<user_id>/roles/<role_id>", self.grant_system_role),
            ("DELETE", "/v3/system/users/<user_id>/roles/<role_id>",
             self.revoke_system_role),
            ("GET", "/v3/roles", self.list_roles),
            ("POST", "/v3/roles", self.fixed_roles),
            ("GET", "/v3/roles/<role_id>", self.show_role),
            ("PATCH", "/v3/roles/<role_id>", self.fixed_roles),
            ("DELETE", "/v3/roles/<role_id>", self.fixed_roles),
            ("GET", "/v3/roles/<role_id>/implies", self.role_implies),
            ("GET", "/v3/roles/<role_id>/implies/<implied_id>", self.role_implies_one),
            ("PUT", "/v3/roles/<role_id>/implies/<implied_id>", self.fixed_roles),
            ("DELETE", "/v3/roles/<role_id>/implies/<implied_id>", self.fixed_roles),
            ("GET", "/v3/role_inferences", self.role_inferences),
            ("GET", "/v3/role_assignments", self.role_assignments),
            ("GET", "/v3/groups", self.list_groups),
            ("POST", "/v3/groups", self.create_group),
            ("GET", "/v3/groups/<group_id>", self.show_group),
            ("PATCH", "/v3/groups/<group_id>", self.update_group),
            ("DELETE", "/v3/groups/<group_id>", self.delete_group),
            ("GET", "/v3/groups/<group_id>/users", self.group_users),
            ("GET", "/v3/groups/<group_id>/users/<user_id>", self.check_group_user),
            ("PUT", "/v3/groups/<group_id>/users/<user_id>", self.add_group_user),
            ("DELETE", "/v3/groups/<group_id>/users/<user_id>", self.remove_group_user),
            ("POST", "/v3/domains", self.fixed_domains),
            ("PATCH", "/v3/domains/<domain_id>", self.fixed_domains),
            ("DELETE", "/v3/domains/<domain_id>", self.fixed_domains),
        ]

    # -- policy ------------------------------------------------------------

    @staticmethod
    def _admin(request: Any, action: str) -> Principal:
        caller = user_of(request)
        if not caller.is_admin:
            raise errors.Forbidden(_NOT_ALLOWED.format(action))
        return caller

    @staticmethod
    def _reader(request: Any, action: str) -> Principal:
        """An administrator, or a reader on the system (reads only)."""
        caller = user_of(request)
        if not reads_all(caller):
            raise errors.Forbidden(_NOT_ALLOWED.format(action))
        return caller

    @staticmethod
    def _self_or_reader(request: Any, user_id: str, action: str) -> Principal:
        caller = user_of(request)
        if not reads_all(caller) and caller.user != user_id:
            raise errors.Forbidden(_NOT_ALLOWED.format(action))
        return caller

    # -- documents ---------------------------------------------------------

    def _links(self, path: str) -> dict[str, Any]:
        return {"self": f"{self._base}/v3/{path}", "previous": None, "next": None}

    def _user_json(self, user: User) -> dict[str, Any]:
        out = dict(user.extra)
        out |= {"id": user.uuid, "name": user.login_name, "email": user.email,
               "domain_id": DOMAIN_ID, "enabled": user.is_active,
                "default_project_id": user.default_project or user.uuid,
                "description": f"{user.first_name} {user.last_name}".strip(),
                "password_expires_at": None, "options": {},
                "links": {"self": f"{self._base}/v3/users/{user.uuid}"}}
        if user.email is None:
            del out["email"]  # Keystone leaves out what a user does not have
        return out

    def _project_json(self, project: Project) -> dict[str, Any]:
        return {"id": project.id, "name": project.name, "domain_id": DOMAIN_ID,
                "description": project.description or "",
                "enabled": project.state == "active", "parent_id": DOMAIN_ID,
                "is_domain": False, "tags": list(project.tags), "options": {},
                "links": {"self": f"{self._base}/v3/projects/{project.id}"}}

    def _role_json(self, name: str) -> dict[str, Any]:
        rid = roles.role_id(name)
        return {"id": rid, "name": name, "domain_id": None,
                "description": roles.DESCRIPTIONS[name], "options": {},
                "links": {"self": f"{self._base}/v3/roles/{rid}"}}

    def _role_ref(self, name: str) -> dict[str, Any]:
        rid = roles.role_id(name)
        return {"id": rid, "name": name,
                "links": {"self": f"{self._base}/v3/roles/{rid}"}}

    def _group_json(self, group: Group) -> dict[str, Any]:
        return {"id": group.id, "name": group.name, "description": group.description,
                "domain_id": DOMAIN_ID,
                "links": {"self": f"{self._base}/v3/groups/{group.id}"}}

    async def _user(self, user_id: str) -> User:
        if not is_uuid(user_id):
            raise errors.NotFound(f"Could not find user: {user_id}.")
        try:
            return await self._accounts.get_user(user_id)
        except errors.NotFound:
            raise errors.NotFound(f"Could not find user: {user_id}.") from None

    # -- users -------------------------------------------------------------

    async def list_users(self, request: Any) -> bytes:
        """Administrators; filters ``name`` (the username, or the email of
        a user without one), ``domain_id``, ``enabled``."""
        self._reader(request, "identity:list_users")
        users = await self._accounts.list_users()
        name = _args(request, "name")
        if name is not None:
            users = [u for u in users if u.login_name.lower() == name.lower()]
        domain = _args(request, "domain_id")
        if domain is not None and domain != DOMAIN_ID:
            users = []
        enabled = _bool_filter(request, "enabled")
        if enabled is not None:
            users = [u for u in users if u.is_active == enabled]
        return json_body(request, {"users": [self._user_json(u) for u in users],
                                   "links": self._links("users")})

    async def create_user(self, request: Any) -> bytes:
        """201 with the new user: active at once when ``enabled`` (the
        default), deactivated otherwise; no verification mail."""
        self._admin(request, "identity:create_user")
        data = _body(request, "user", self._max_body)
        _check_domain_id(data)
        name = _opt_text(data, "name")
        email = _opt_text(data, "email")
        if name is None:
            raise errors.BadRequest("user.name is required.")
        username: str | None = name
        if "@" in name and (email is None or email.strip().lower() == name.strip().lower()):
            # Astakos's form: the name is the email.
            username, email = None, name
        password = data.get("password")
        if password is not None and not isinstance(password, str):
            raise errors.BadRequest("user.password must be a string.")
        enabled = _opt_bool(data, "enabled")
        first, last = _split_name(_opt_text(data, "description", 129) or "")
        default_project = await self._default_project(data)
        user, _ = await self._accounts.create_user(email, first, last, password=password,
                                                   activate=True, verify=False,
                                                   username=username)
        extra = _user_extra(data)
        if default_project is not None or extra:
            user = await self._accounts.modify_user(user.uuid, default_project=default_project,
                                                    extra=extra or None)
        if enabled is False:
            user = await self._accounts.deactivate(user.uuid, "disabled through Keystone")
        return json_body(request, {"user": self._user_json(user)}, 201)

    async def _default_project(self, data: dict[str, Any]) -> str | None:
        pid = data.get("default_project_id")
        if pid is None:
            return None
        if not isinstance(pid, str) or not (await self._projects.alive_projects([pid])):
            raise errors.BadRequest(f"default_project_id: there is no project {pid!r}.")
        return pid.lower()

    async def show_user(self, request: Any, user_id: str) -> bytes:
        self._self_or_reader(request, user_id, "identity:get_user")
        return json_body(request, {"user": self._user_json(await self._user(user_id))})

    async def update_user(self, request: Any, user_id: str) -> bytes:
        """``name``, ``email``, ``password`` (every token of the user ends),
        ``enabled``, ``default_project_id``, ``description``.  A new name
        of a user named by its email, that is an email address (and the
        same as ``email`` when given), is its new email; otherwise it is
        the username."""
        self._admin(request, "identity:update_user")
        user = await self._user(user_id)
        data = _body(request, "user", self._max_body)
        _check_domain_id(data)
        name, email = _opt_text(data, "name"), _opt_text(data, "email")
        fields: dict[str, Any] = {"email": email}
        if name is not None:
            if (user.username is None and "@" in name
                    and (email is None or email.lower() == name.lower())):
                fields["email"] = name
            elif name != user.login_name:
                fields["username"] = name
        description = _opt_text(data, "description", 129)
        if description is not None:
            fields["first_name"], fields["last_name"] = _split_name(description)
        fields["default_project"] = await self._default_project(data)
        extra = _user_extra(data, user.extra)
        if extra != user.extra:
            fields["extra"] = extra
        password = data.get("password")
        if password is not None and not isinstance(password, str):
            raise errors.BadRequest("user.password must be a string.")
        enabled = _opt_bool(data, "enabled")
        user = await self._accounts.modify_user(user.uuid, **fields)
        if password is not None:
            await self._accounts.change_password(user.uuid, password)
        if enabled is True and not user.is_active:
            user = await self._accounts.activate(user.uuid)
        elif enabled is False and user.is_active:
            user = await self._accounts.deactivate(user.uuid, "disabled through Keystone")
        return json_body(request, {"user": self._user_json(user)})

    async def delete_user(self, request: Any, user_id: str) -> bytes:
        self._admin(request, "identity:delete_user")
        await self._user(user_id)
        await self._accounts.delete_user(user_id)
        request.setResponseCode(204)
        return b""

    async def user_projects(self, request: Any, user_id: str) -> bytes:
        self._self_or_reader(request, user_id, "identity:list_user_projects")
        await self._user(user_id)
        projects = await self._accounts.user_projects(user_id)
        return json_body(request, {"projects": [self._project_json(p) for p in projects],
                                   "links": self._links(f"users/{user_id}/projects")})

    async def user_groups(self, request: Any, user_id: str) -> bytes:
        self._self_or_reader(request, user_id, "identity:list_groups_for_user")
        await self._user(user_id)
        groups = await self._assignments.groups(member=user_id)
        return json_body(request, {"groups": [self._group_json(g) for g in groups],
                                   "links": self._links(f"users/{user_id}/groups")})

    async def change_password(self, request: Any, user_id: str) -> bytes:
        """Whoever knows the user's ``original_password`` (no token needed, as
        in Keystone; the check is throttled as logins are) sets
        ``password``; 401 for a wrong original; 204, and every token of the
        user ends."""
        data = _body(request, "user", self._max_body)
        original, password = data.get("original_password"), data.get("password")
        if not isinstance(original, str) or not isinstance(password, str):
            raise errors.BadRequest("user.original_password and user.password are required.")
        user = await self._user(user_id)
        address = request.getClientAddress()
        try:
            # A login with the local provider: counted and throttled per
            # address and account like every password login.
            found = await self._accounts.login(Credentials(
                username=user.login_name, password=original,
                source=str(getattr(address, "host", "") or "")), only="local")
        except errors.Unauthorized:
            found = None
        if found is None or found.uuid != user.uuid:
            raise errors.Unauthorized("The original password is wrong.")
        await self._accounts.change_password(user.uuid, password)
        request.setResponseCode(204)
        return b""

    # -- projects ----------------------------------------------------------

    async def list_projects(self, request: Any) -> bytes:
        """Administrators: every active or suspended project (others list
        theirs with ``/auth/projects`` or ``/users/<id>/projects``: 403
        here, as in Keystone).  Filters ``name``, ``domain_id``,
        ``enabled``, ``parent_id``, ``is_domain``."""
        self._reader(request, "identity:list_projects")
        projects = await self._projects.alive_projects()
        name = _args(request, "name")
        if name is not None:
            projects = [p for p in projects if p.name == name]
        enabled = _bool_filter(request, "enabled")
        if enabled is not None:
            projects = [p for p in projects if (p.state == "active") == enabled]
        for key in ("domain_id", "parent_id"):
            value = _args(request, key)
            if value is not None and value != DOMAIN_ID:
                projects = []
        if _bool_filter(request, "is_domain"):
            projects = []
        query = {k: _args(request, k) for k in ("tags", "tags-any", "not-tags", "not-tags-any")}
        projects = [p for p in projects if project_tags.matches(p, query)]
        return json_body(request, {"projects": [self._project_json(p) for p in projects],
                                   "links": self._links("projects")})

    async def create_project(self, request: Any) -> bytes:
        caller = self._admin(request, "identity:create_project")
        data = _body(request, "project", self._max_body)
        _check_domain_id(data)
        if data.get("is_domain"):
            raise errors.Forbidden("There is one domain; projects cannot be domains.")
        parent = data.get("parent_id")
        if parent is not None and parent != DOMAIN_ID:
            raise errors.Forbidden("Projects form one flat tree: parent_id can only be"
                                   f" {DOMAIN_ID!r}.")
        name = _opt_text(data, "name", PROJECT_NAME_LENGTH)
        if name is None:
            raise errors.BadRequest("project.name is required.")
        enabled = _opt_bool(data, "enabled")
        tags = project_tags.check_tags(data["tags"]) if "tags" in data else None
        project = await self._projects.create_approved(
            caller, name, _opt_text(data, "description", 4096) or "", enabled is not False)
        if tags:
            project = await self._projects.change_tags(caller, project.id, replace=tags)
        return json_body(request, {"project": self._project_json(project)}, 201)

    async def _visible_project(self, caller: Principal, project_id: str) -> Project:
        """The alive project, for an administrator or one of its members."""
        found = await self._projects.alive_projects([project_id])
        if not found:
            raise errors.NotFound(f"Could not find project: {project_id}.")
        if not reads_all(caller):
            mine = await self._accounts.user_projects(caller.user or "")
            if found[0].id not in {p.id for p in mine}:
                raise errors.Forbidden(_NOT_ALLOWED.format("identity:get_project"))
        return found[0]

    async def show_project(self, request: Any, project_id: str) -> bytes:
        caller = user_of(request)
        project = await self._visible_project(caller, project_id)
        return json_body(request, {"project": self._project_json(project)})

    async def update_project(self, request: Any, project_id: str) -> bytes:
        caller = self._admin(request, "identity:update_project")
        data = _body(request, "project", self._max_body)
        _check_domain_id(data)
        for key in ("parent_id", "is_domain"):
            if key in data and data[key] != {"parent_id": DOMAIN_ID, "is_domain": False}[key]:
                raise errors.Forbidden(f"{key} cannot be changed.")
        await self._visible_project(caller, project_id)
        tags = project_tags.check_tags(data["tags"]) if "tags" in data else None
        project = await self._projects.update_fields(
            caller, project_id, name=_opt_text(data, "name", PROJECT_NAME_LENGTH),
            description=_opt_text(data, "description", 4096),
            enabled=_opt_bool(data, "enabled"))
        if tags is not None:
            project = await self._projects.change_tags(caller, project.id, replace=tags)
        return json_body(request, {"project": self._project_json(project)})

    # -- project tags --------------------------------------------------------

    async def project_tags(self, request: Any, project_id: str) -> bytes:
        project = await self._visible_project(user_of(request), project_id)
        return json_body(request, {"tags": list(project.tags)})

    async def replace_tags(self, request: Any, project_id: str) -> bytes:
        """``PUT`` with ``{"tags": [...]}`` replaces them (200 with the
        new list); ``DELETE`` removes them all (204)."""
        caller = self._admin(request, "identity:update_project_tags")
        if request.method == b"DELETE":
            await self._projects.change_tags(caller, project_id, replace=[])
            request.setResponseCode(204)
            return b""
        body = json_object(read_json(request, self._max_body))
        project = await self._projects.change_tags(
            caller, project_id, replace=project_tags.check_tags(body.get("tags")))
        return json_body(request, {"tags": list(project.tags)})

    async def check_tag(self, request: Any, project_id: str, tag: str) -> bytes:
        project = await self._visible_project(user_of(request), project_id)
        if tag not in project.tags:
            raise errors.NotFound(f"Could not find tag {tag!r} on project {project_id}.")
        request.setResponseCode(204)
        return b""

    async def add_tag(self, request: Any, project_id: str, tag: str) -> bytes:
        caller = self._admin(request, "identity:create_project_tag")
        await self._projects.change_tags(caller, project_id, add=project_tags.check_tag(tag))
        request.setHeader(b"location",
                          f"{self._base}/v3/projects/{project_id}/tags/{tag}".encode())
        request.setResponseCode(201)
        return b""

    async def remove_tag(self, request: Any, project_id: str, tag: str) -> bytes:
        caller = self._admin(request, "identity:delete_project_tag")
        await self._projects.change_tags(caller, project_id, remove=tag)
        request.setResponseCode(204)
        return b""

    async def delete_project(self, request: Any, project_id: str) -> bytes:
        """Terminates the Synnefo project (its quota ends); 403 for a base
        project."""
        caller = self._admin(request, "identity:delete_project")
        project = await self._visible_project(caller, project_id)
        if project.system_project:
            raise errors.Forbidden("A user's base project goes only with its user.")
        await self._projects.project_action(caller, project.id, "terminate",
                                            "deleted through Keystone")
        request.setResponseCode(204)
        return b""

    # -- grants --------------------------------------------------------------

    def _roles_body(self, request: Any, names: Sequence[str], path: str) -> bytes:
        return json_body(request, {"roles": [self._role_ref(n) for n in names],
                                   "links": self._links(path)})

    async def user_roles(self, request: Any, project_id: str, user_id: str) -> bytes:
        self._self_or_reader(request, user_id, "identity:list_grants")
        await self._user(user_id)
        names = await self._assignments.user_roles(project_id, user_id)
        return self._roles_body(request, names, f"projects/{project_id}/users/{user_id}/roles")

    async def check_user_role(self, request: Any, project_id: str, user_id: str,
                              role_id: str) -> bytes:
        """204 when the user itself holds the role there, else 404."""
        self._self_or_reader(request, user_id, "identity:check_grant")
        name = _role_name(role_id)
        await self._user(user_id)
        if name not in await self._assignments.user_roles(project_id, user_id):
            raise errors.NotFound(f"Could not find role assignment: {name} of user {user_id}"
                                  f" on project {project_id}.")
        request.setResponseCode(204)
        return b""

    async def grant_user_role(self, request: Any, project_id: str, user_id: str,
                              role_id: str) -> bytes:
        self._admin(request, "identity:create_grant")
        await self._assignments.grant(project_id, user_id, _role_name(role_id))
        request.setResponseCode(204)
        return b""

    async def revoke_user_role(self, request: Any, project_id: str, user_id: str,
                               role_id: str) -> bytes:
        self._admin(request, "identity:revoke_grant")
        await self._assignments.revoke(project_id, user_id, _role_name(role_id))
        request.setResponseCode(204)
        return b""

    async def group_roles(self, request: Any, project_id: str, group_id: str) -> bytes:
        self._reader(request, "identity:list_grants")
        names = await self._assignments.group_roles(project_id, group_id)
        return self._roles_body(request, names,
                                f"projects/{project_id}/groups/{group_id}/roles")

    async def check_group_role(self, request: Any, project_id: str, group_id: str,
                               role_id: str) -> bytes:
        self._reader(request, "identity:check_grant")
        name = _role_name(role_id)
        if name not in await self._assignments.group_roles(project_id, group_id):
            raise errors.NotFound(f"Could not find role assignment: {name} of group"
                                  f" {group_id} on project {project_id}.")
        request.setResponseCode(204)
        return b""

    async def grant_group_role(self, request: Any, project_id: str, group_id: str,
                               role_id: str) -> bytes:
        self._admin(request, "identity:create_grant")
        await self._assignments.grant_group(project_id, group_id, _role_name(role_id))
        request.setResponseCode(204)
        return b""

    async def revoke_group_role(self, request: Any, project_id: str, group_id: str,
                                role_id: str) -> bytes:
        self._admin(request, "identity:revoke_grant")
        await self._assignments.revoke_group(project_id, group_id, _role_name(role_id))
        request.setResponseCode(204)
        return b""

    async def system_roles(self, request: Any, user_id: str) -> bytes:
        self._self_or_reader(request, user_id, "identity:list_system_grants_for_user")
        await self._user(user_id)
        names = await self._assignments.system_roles(user_id)
        return self._roles_body(request, names, f"system/users/{user_id}/roles")

    async def check_system_role(self, request: Any, user_id: str, role_id: str) -> bytes:
        """204 when the user holds the role on the system, else 404."""
        self._self_or_reader(request, user_id, "identity:check_system_grant_for_user")
        name = _role_name(role_id)
        await self._user(user_id)
        if name not in await self._assignments.system_roles(user_id):
            raise errors.NotFound(f"Could not find role assignment: {name} of user {user_id}"
                                  " on the system.")
        request.setResponseCode(204)
        return b""

    async def grant_system_role(self, request: Any, user_id: str, role_id: str) -> bytes:
        self._admin(request, "identity:create_system_grant_for_user")
        await self._user(user_id)
        await self._assignments.grant_system(user_id, _role_name(role_id))
        request.setResponseCode(204)
        return b""

    async def revoke_system_role(self, request: Any, user_id: str, role_id: str) -> bytes:
        self._admin(request, "identity:revoke_system_grant_for_user")
        await self._user(user_id)
        await self._assignments.revoke_system(user_id, _role_name(role_id))
        request.setResponseCode(204)
        return b""

    async def role_assignments(self, request: Any) -> bytes:
        """Filters ``user.id``, ``group.id``, ``scope.project.id``,
        ``role.id``, ``effective``, ``include_names``; a user who is not an
        administrator must filter on itself."""
        caller = user_of(request)
        user = _args(request, "user.id")
        if not reads_all(caller) and (user is None or user != caller.user):
            raise errors.Forbidden(_NOT_ALLOWED.format(
                "identity:list_role_assignments (filter on user.id, your own id)"))
        role = _args(request, "role.id")
        role_name = None
        if role is not None:
            role_name = roles.by_id(role) or role
        group, project = _args(request, "group.id"), _args(request, "scope.project.id")
        effective = _flag(request, "effective")
        found: list[Assignment] = []
        if _args(request, "scope.domain.id") is not None:
            pass  # no grant is on a domain
        elif _args(request, "scope.system") is not None:
            if group is None:
                found = await self._assignments.find_system(user=user, role=role_name,
                                                            effective=effective)
        else:
            found = await self._assignments.find(user=user, group=group, project=project,
                                                 role=role_name, effective=effective)
            if project is None and group is None:
                found += await self._assignments.find_system(user=user, role=role_name,
                                                             effective=effective)
        names = _flag(request, "include_names")
        return json_body(request, {
            "role_assignments": [self._assignment_json(a, names) for a in found],
            "links": self._links("role_assignments")})

    def _assignment_json(self, a: Assignment, names: bool) -> dict[str, Any]:
        rid = roles.role_id(a.role)
        out: dict[str, Any] = {"role": {"id": rid}}
        if a.project is None:
            out["scope"] = {"system": {"all": True}}
            target = "system"
        else:
            out["scope"] = {"project": {"id": a.project}}
            target = f"projects/{a.project}"
        if names:
            out["role"]["name"] = a.role
            if a.project is not None:
                out["scope"]["project"].update(name=a.project_name, domain=dict(DOMAIN))
        grantee = (f"groups/{a.group}" if a.group is not None and a.user is None
                   else f"users/{a.user}")
        prior = a.prior or a.role
        links = {"assignment": f"{self._base}/v3/{target}/{grantee}/roles/"
                               f"{roles.role_id(prior)}"}
        if a.group is not None and a.user is not None:
            # effective, through a group: Keystone links the group's grant
            links["assignment"] = (f"{self._base}/v3/projects/{a.project}/groups/{a.group}"
                                   f"/roles/{roles.role_id(prior)}")
            links["membership"] = f"{self._base}/v3/groups/{a.group}/users/{a.user}"
        if a.prior is not None:
            links["prior_role"] = f"{self._base}/v3/roles/{roles.role_id(a.prior)}"
        out["links"] = links
        if a.user is not None:
            out["user"] = {"id": a.user}
            if names:
                out["user"].update(name=a.user_name, domain=dict(DOMAIN))
        else:
            out["group"] = {"id": a.group}
            if names:
                out["group"].update(name=a.group_name, domain=dict(DOMAIN))
        return out

    # -- roles ---------------------------------------------------------------

    async def list_roles(self, request: Any) -> bytes:
        user_of(request)
        names = list(roles.NAMES)
        wanted = _args(request, "name")
        if wanted is not None:
            names = [n for n in names if n == wanted]
        if _args(request, "domain_id") not in (None, ""):
            names = []  # no domain-specific roles
        return json_body(request, {"roles": [self._role_json(n) for n in names],
                                   "links": self._links("roles")})

    async def show_role(self, request: Any, role_id: str) -> bytes:
        user_of(request)
        return json_body(request, {"role": self._role_json(_role_name(role_id))})

    async def fixed_roles(self, request: Any, **_: Any) -> bytes:
        user_of(request)
        raise errors.Forbidden(f"The roles are fixed ({', '.join(roles.NAMES)}) and so"
                               " are their implications; they cannot be created, changed"
                               " or deleted.")

    def _inference(self, prior: str, implied: Sequence[str]) -> dict[str, Any]:
        return {"prior_role": self._role_ref(prior),
                "implies": [self._role_ref(n) for n in implied]}

    async def role_implies(self, request: Any, role_id: str) -> bytes:
        user_of(request)
        name = _role_name(role_id)
        return json_body(request, {
            "role_inference": self._inference(name, roles.IMPLIES.get(name, ())),
            "links": {"self": f"{self._base}/v3/roles/{role_id}/implies"}})

    async def role_implies_one(self, request: Any, role_id: str, implied_id: str) -> bytes:
        user_of(request)
        name, implied = _role_name(role_id), _role_name(implied_id)
        if implied not in roles.IMPLIES.get(name, ()):
            raise errors.NotFound(f"{name} does not imply {implied}.")
        body = {"role_inference": {"prior_role": self._role_ref(name),
                                   "implies": self._role_ref(implied)},
                "links": {"self": f"{self._base}/v3/roles/{role_id}/implies/{implied_id}"}}
        return json_body(request, body)

    async def role_inferences(self, request: Any) -> bytes:
        user_of(request)
        return json_body(request, {
            "role_inferences": [self._inference(p, i) for p, i in roles.IMPLIES.items()],
            "links": self._links("role_inferences")})

    # -- groups ----------------------------------------------------------------

    async def list_groups(self, request: Any) -> bytes:
        self._reader(request, "identity:list_groups")
        groups = await self._assignments.groups(name=_args(request, "name"))
        domain = _args(request, "domain_id")
        if domain is not None and domain != DOMAIN_ID:
            groups = []
        return json_body(request, {"groups": [self._group_json(g) for g in groups],
                                   "links": self._links("groups")})

    async def create_group(self, request: Any) -> bytes:
        self._admin(request, "identity:create_group")
        data = _body(request, "group", self._max_body)
        _check_domain_id(data)
        name = _opt_text(data, "name", 64)
        if name is None:
            raise errors.BadRequest("group.name is required.")
        group = await self._assignments.create_group(
            name, _opt_text(data, "description", 4096) or "")
        return json_body(request, {"group": self._group_json(group)}, 201)

    async def show_group(self, request: Any, group_id: str) -> bytes:
        self._reader(request, "identity:get_group")
        return json_body(request, {"group": self._group_json(
            await self._assignments.get_group(group_id))})

    async def update_group(self, request: Any, group_id: str) -> bytes:
        self._admin(request, "identity:update_group")
        data = _body(request, "group", self._max_body)
        _check_domain_id(data)
        group = await self._assignments.update_group(
            group_id, _opt_text(data, "name", 64), _opt_text(data, "description", 4096))
        return json_body(request, {"group": self._group_json(group)})

    async def delete_group(self, request: Any, group_id: str) -> bytes:
        self._admin(request, "identity:delete_group")
        await self._assignments.delete_group(group_id)
        request.setResponseCode(204)
        return b""

    async def group_users(self, request: Any, group_id: str) -> bytes:
        self._reader(request, "identity:list_users_in_group")
        members = set(await self._assignments.group_members(group_id))
        users = [u for u in await self._accounts.list_users() if u.uuid in members]
        enabled = _bool_filter(request, "enabled")
        if enabled is not None:
            users = [u for u in users if u.is_active == enabled]
        return json_body(request, {"users": [self._user_json(u) for u in users],
                                   "links": self._links(f"groups/{group_id}/users")})

    async def check_group_user(self, request: Any, group_id: str, user_id: str) -> bytes:
        self._self_or_reader(request, user_id, "identity:check_user_in_group")
        await self._user(user_id)
        if not await self._assignments.is_group_member(group_id, user_id):
            raise errors.NotFound(f"User {user_id} is not in group {group_id}.")
        request.setResponseCode(204)
        return b""

    async def add_group_user(self, request: Any, group_id: str, user_id: str) -> bytes:
        self._admin(request, "identity:add_user_to_group")
        await self._assignments.set_group_member(group_id, user_id, True)
        request.setResponseCode(204)
        return b""

    async def remove_group_user(self, request: Any, group_id: str, user_id: str) -> bytes:
        self._admin(request, "identity:remove_user_from_group")
        await self._assignments.set_group_member(group_id, user_id, False)
        request.setResponseCode(204)
        return b""

    # -- domains -----------------------------------------------------------------

    async def fixed_domains(self, request: Any, **_: Any) -> bytes:
        user_of(request)
        raise errors.Forbidden(f"There is one domain, {DOMAIN_ID!r} (Default); domains"
                               " cannot be created, changed or deleted.")
