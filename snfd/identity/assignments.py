"""Role assignments and groups: Keystone's grants mapped onto Synnefo's
project memberships and Astakos groups.

What a grant is, by role (``roles.py`` has the roles themselves):

- ``member``, ``reader``, ``service`` of a user on a project: stored on the
  user's membership of that Synnefo project.  Granting one enrolls the
  user (an accepted membership, with the project's member quota);
  revoking the last one removes the membership.
- ``admin`` of a user on a project: the user becomes an Astakos
  administrator, which is global, and is enrolled in the project (the
  grant is recorded on the membership).  So it is listed on every project
  the user is a member of.  Revoking it on a project where it was granted
  removes that grant; the administrator flag ends when no grant of it
  remains (or at once, revoked where it was never granted: an
  administrator made by ``snf-manage``).
- a role of a group on a project: every member of the group holds it
  there and is enrolled while it does; ``admin`` cannot be granted to a
  group.

Roles on the system (Keystone's system scope, ``/v3/system/users/<u>/roles``):
``reader`` and ``member`` are stored per user; ``admin`` on the system is
the administrator flag itself, so granting it makes an administrator and
revoking it ends one (as revoking ``admin`` on a project does).  A token
scoped to the system carries them; with ``reader`` it may read the whole
identity administration API (``keystone_admin.py``).  Groups get no roles
on the system.

The rule every change ends with (``_settle_txn``): an accepted membership
with no role of its own, none from a group, of a user who is not an
administrator, is removed.  A user's base project (``system:<uuid>``)
has its user as its one member: nobody else can be granted a role there
and its user cannot lose the last one.

Memberships states are Synnefo's; only accepted ones (``accepted``,
``leave_requested``) of active or suspended projects carry roles.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import attrs

from snfd import errors
from snfd.identity import project_store, roles, store
from snfd.identity.project_store import ACTUALLY_ACCEPTED, ALIVE_STATES, GroupRole, MemberRoles
from snfd.identity.store import Group
from snfd.identity.tokens import TokenCache

UTC = datetime.UTC


@attrs.frozen
class Assignment:
    """One role of a user or a group on a project (or, ``project`` being
    ``None``, of a user on the system), as Keystone lists it.

    ``group`` set and ``user`` set: the user holds it through the group
    (effective listings); ``prior`` set: the role is implied by ``prior``.
    """

    role: str
    project: str | None
    project_name: str | None
    user: str | None = None
    user_name: str | None = None
    group: str | None = None
    group_name: str | None = None
    prior: str | None = None


class Assignments:
    """Grants, their listings and groups, over the cluster database."""

    def __init__(self, db: Any, clock: Any, cache: TokenCache):
        self._db = db
        self._clock = clock
        self._cache = cache

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock.seconds(), UTC)

    # -- user grants --

    async def grant(self, project: str, user: str, role: str) -> None:
        """Grant ``role`` to the user on the project (idempotent)."""
        await self._db.run("identity.grant_role", _grant_txn, project, user, role, self.now())
        self._cache.invalidate(f"user:{user}")

    async def revoke(self, project: str, user: str, role: str) -> None:
        """Revoke the user's ``role`` on the project; ``NotFound`` when the
        user does not hold it there."""
        await self._db.run("identity.revoke_role", _revoke_txn, project, user, role, self.now())
        self._cache.invalidate(f"user:{user}")

    async def user_roles(self, project: str, user: str) -> list[str]:
        """The roles granted to the user itself on the project (no group's,
        none implied)."""
        return await self._db.run("identity.user_roles", _direct_roles_txn, project, user)

    async def token_roles(self, user: str, project: str) -> list[str]:
        """Every role the user holds on the project: its own, its groups',
        and the roles these imply."""
        return await self._db.run("identity.token_roles", token_roles_txn, user, project)

    # -- the system --

    async def grant_system(self, user: str, role: str) -> None:
        """Grant ``role`` (``admin``, ``member`` or ``reader``) to the user
        on the system (idempotent)."""
        await self._db.run("identity.grant_system_role", _grant_system_txn, user, role,
                           self.now())
        self._cache.invalidate(f"user:{user}")

    async def revoke_system(self, user: str, role: str) -> None:
        """Revoke the user's ``role`` on the system; ``NotFound`` when it
        does not hold it."""
        await self._db.run("identity.revoke_system_role", _revoke_system_txn, user, role,
                           self.now())
        self._cache.invalidate(f"user:{user}")

    async def system_roles(self, user: str) -> list[str]:
        """The roles granted to the user on the system (none implied)."""
        return await self._db.run("identity.system_roles", _direct_system_roles_txn, user)

    # -- group grants --

    async def grant_group(self, project: str, group: str, role: str) -> None:
        members = await self._db.run("identity.grant_group_role", _grant_group_txn, project,
                                     group, role, self.now())
        self._forget(members)

    async def revoke_group(self, project: str, group: str, role: str) -> None:
        members = await self._db.run("identity.revoke_group_role", _revoke_group_txn, project,
                                     group, role, self.now())
        self._forget(members)

    async def group_roles(self, project: str, group: str) -> list[str]:
        return await self._db.run("identity.group_roles", _group_direct_roles_txn, project,
                                  group)

    # -- listings --

    async def find(self, *, user: str | None = None, group: str | None = None,
                   project: str | None = None, role: str | None = None,
                   effective: bool = False) -> list[Assignment]:
        """Assignments matching every filter given.  ``effective``: group
        grants become their members' (a ``group`` filter is then refused,
        as Keystone does) and implied roles are listed too."""
        if effective and group is not None:
            raise errors.BadRequest("effective and group.id cannot be combined.")
        found = await self._db.run("identity.list_assignments", _list_txn, user, group,
                                   project, effective)
        if role is not None:
            found = [a for a in found if a.role == role]
        return found

    async def find_system(self, *, user: str | None = None, role: str | None = None,
                          effective: bool = False) -> list[Assignment]:
        """Roles of users on the system matching the filters given
        (``effective``: implied roles are listed too)."""
        found = await self._db.run("identity.list_system_assignments", _list_system_txn,
                                   user, effective)
        return [a for a in found if role is None or a.role == role]

    # -- groups --

    async def create_group(self, name: str, description: str = "") -> Group:
        return await self._db.run("identity.create_group", store.create_group_txn,
                                  _group_name(name), description)

    async def get_group(self, group_id: str) -> Group:
        return await self._db.run("identity.get_group", store.group_txn, group_id)

    async def groups(self, name: str | None = None, member: str | None = None) -> list[Group]:
        return await self._db.run("identity.groups", store.groups_txn, name, member)

    async def update_group(self, group_id: str, name: str | None = None,
                           description: str | None = None) -> Group:
        return await self._db.run("identity.update_group", store.update_group_txn, group_id,
                                  None if name is None else _group_name(name), description)

    async def delete_group(self, group_id: str) -> None:
        members = await self._db.run("identity.delete_group", _delete_group_txn, group_id,
                                     self.now())
        self._forget(members)

    async def group_members(self, group_id: str) -> list[str]:
        return await self._db.run("identity.group_members", _group_members_txn, group_id)

    async def set_group_member(self, group_id: str, user: str, member: bool) -> None:
        """Add the user to the group or take it out (``NotFound`` when it
        is not in it); its project access follows the group's grants."""
        await self._db.run("identity.set_group_member", _set_group_member_txn, group_id,
                           user, member, self.now())
        self._cache.invalidate(f"user:{user}")

    async def is_group_member(self, group_id: str, user: str) -> bool:
        return user in await self.group_members(group_id)

    def _forget(self, users: Sequence[str]) -> None:
        for user in users:
            self._cache.invalidate(f"user:{user}")


def _group_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64:
        raise errors.BadRequest("A group name has 1 to 64 characters.")
    return name


# -- transactions composed of store steps ----------------------------------------

def _project_txn(txn: Any, project_id: str) -> project_store.Project:
    """The alive project, locked (every change to its memberships is
    serialized on it); ``NotFound`` otherwise."""
    project = project_store.project_txn(txn, project_id.lower(), for_update=True)
    if project is None or project.state not in ALIVE_STATES:
        raise errors.NotFound(f"Could not find project: {project_id}.")
    return project


def _user_txn(txn: Any, user: str) -> store.User:
    try:
        return store.get_user_txn(txn, user)
    except errors.NotFound:
        raise errors.NotFound(f"Could not find user: {user}.") from None


def _project_role(role: str) -> None:
    if role not in roles.PROJECT_ROLES:
        raise errors.Forbidden(f"The role {role!r} cannot be granted to a group.")


def _enroll_txn(txn: Any, project: project_store.Project, user: str,
                stored: Sequence[str], now: datetime.datetime) -> None:
    """Make the user an accepted member holding (at least) the roles
    ``stored``."""
    if project.system_project and project.id != user:
        raise errors.Forbidden("A user's base project has its user as its only member.")
    existing = project_store.membership_of_txn(txn, project.id, user)
    if existing is None:
        membership = project_store.insert_membership_txn(txn, project.id, user, "accepted",
                                                         now)
        project_store.set_member_roles_txn(txn, membership.id, stored)
    else:
        had: tuple[str, ...] = ()
        if existing.state in ACTUALLY_ACCEPTED:
            had = project_store.stored_roles_txn(txn, existing.id)
        else:
            project_store.set_membership_state_txn(txn, existing.id, "accepted", now)
        project_store.set_member_roles_txn(txn, existing.id, [*had, *stored])
    project_store.sync_holdings_txn(txn, [project.id], user=user)


def _settle_txn(txn: Any, project: project_store.Project, user: str,
                now: datetime.datetime) -> None:
    """Remove the user's membership of the project when nothing grants it
    a role there any more (see the module docstring)."""
    existing = project_store.membership_of_txn(txn, project.id, user)
    if existing is None or existing.state not in ACTUALLY_ACCEPTED:
        return
    if project_store.stored_roles_txn(txn, existing.id):
        return
    if project_store.group_roles_txn(txn, project=project.id, user=user):
        return
    if store.get_user_txn(txn, user).is_admin:
        return
    if project.system_project:
        raise errors.Forbidden("A user cannot lose its last role on its base project.")
    project_store.set_membership_state_txn(txn, existing.id, "removed", now)
    project_store.sync_holdings_txn(txn, [project.id], user=user)
    project_store.reset_default_project_txn(txn, project.id, user)


def _grant_txn(txn: Any, project_id: str, user: str, role: str,
               now: datetime.datetime) -> None:
    _user_txn(txn, user)
    project = _project_txn(txn, project_id)
    if role == roles.ADMIN:
        if project.system_project and project.id != user:
            raise errors.Forbidden("A user's base project has its user as its only member.")
        store.modify_user_txn(txn, user, now, is_admin=True)
        store.notify_txn(txn, f"user:{user}")
        _enroll_txn(txn, project, user, (roles.ADMIN,), now)
    else:
        _project_role(role)
        _enroll_txn(txn, project, user, (role,), now)


def _revoke_txn(txn: Any, project_id: str, user: str, role: str,
                now: datetime.datetime) -> None:
    person = _user_txn(txn, user)
    project = _project_txn(txn, project_id)
    missing = errors.NotFound(f"Could not find role assignment: {role} of user {user} on"
                              f" project {project_id}.")
    existing = project_store.membership_of_txn(txn, project.id, user)
    if existing is None or existing.state not in ACTUALLY_ACCEPTED:
        raise missing
    if role == roles.ADMIN:
        if not person.is_admin:
            raise missing
        had = project_store.stored_roles_txn(txn, existing.id)
        if roles.ADMIN in had:
            project_store.set_member_roles_txn(txn, existing.id,
                                               [r for r in had if r != roles.ADMIN])
            if any(roles.ADMIN in held.roles
                   for held in project_store.member_roles_txn(txn, user=user)):
                # granted on other projects too: still an administrator
                _settle_txn(txn, project, user, now)
                return
        _end_admin_txn(txn, user, now)
        return
    had = project_store.stored_roles_txn(txn, existing.id)
    if role not in had:
        raise missing
    project_store.set_member_roles_txn(txn, existing.id, [r for r in had if r != role])
    _settle_txn(txn, project, user, now)


def _system_role(role: str) -> None:
    if role not in roles.SYSTEM_ROLES:
        raise errors.Forbidden(f"Only {', '.join(roles.SYSTEM_ROLES)} can be granted on the"
                               f" system, not {role!r}.")


def _grant_system_txn(txn: Any, user: str, role: str, now: datetime.datetime) -> None:
    _user_txn(txn, user)
    _system_role(role)
    if role == roles.ADMIN:
        store.modify_user_txn(txn, user, now, is_admin=True)
        store.notify_txn(txn, f"user:{user}")
    else:
        store.add_system_role_txn(txn, user, role)


def _revoke_system_txn(txn: Any, user: str, role: str, now: datetime.datetime) -> None:
    person = _user_txn(txn, user)
    _system_role(role)
    missing = errors.NotFound(f"Could not find role assignment: {role} of user {user} on"
                              " the system.")
    if role != roles.ADMIN:
        if not store.remove_system_role_txn(txn, user, role):
            raise missing
        return
    if not person.is_admin:
        raise missing
    _end_admin_txn(txn, user, now)


def _end_admin_txn(txn: Any, user: str, now: datetime.datetime) -> None:
    """The user stops being an administrator: every grant of ``admin``
    goes, and so does each membership only the flag held."""
    for held in project_store.member_roles_txn(txn, user=user):
        if roles.ADMIN in held.roles:
            membership = project_store.membership_of_txn(txn, held.project, user)
            if membership is not None:
                project_store.set_member_roles_txn(
                    txn, membership.id, [r for r in held.roles if r != roles.ADMIN])
    store.modify_user_txn(txn, user, now, is_admin=False)
    store.notify_txn(txn, f"user:{user}")
    # Global: every project where only the administrator flag held the
    # user in loses it.
    for held in project_store.member_roles_txn(txn, user=user):
        other = project_store.project_txn(txn, held.project, for_update=True)
        if other is not None:
            _settle_txn(txn, other, user, now)


def _direct_system_roles_txn(txn: Any, user: str) -> list[str]:
    person = _user_txn(txn, user)
    names = store.system_roles_txn(txn, user) + ([roles.ADMIN] if person.is_admin else [])
    return [n for n in roles.NAMES if n in names]


def system_token_roles_txn(txn: Any, user: str) -> list[str]:
    """Every role the user holds on the system, implied ones included."""
    return roles.closure(_direct_system_roles_txn(txn, user))


def _list_system_txn(txn: Any, user: str | None, effective: bool) -> list[Assignment]:
    found: list[Assignment] = []
    for uuid, name, role in store.system_role_holders_txn(txn, user):
        found.append(Assignment(role, None, None, user=uuid, user_name=name))
        if effective:
            found += [Assignment(r, None, None, user=uuid, user_name=name, prior=role)
                      for r in roles.implied_by(role)]
    return found


def _direct_roles_txn(txn: Any, project_id: str, user: str) -> list[str]:
    _user_txn(txn, user)
    project = project_store.project_txn(txn, project_id.lower())
    if project is None or project.state not in ALIVE_STATES:
        raise errors.NotFound(f"Could not find project: {project_id}.")
    held = project_store.member_roles_txn(txn, user=user, project=project.id)
    if not held:
        return []
    names = _held_names(held[0])
    return [n for n in roles.NAMES if n in names]


def _held_names(held: MemberRoles) -> list[str]:
    """The roles of a membership: those stored (``admin`` only while the
    user is an administrator) and ``admin`` for an administrator."""
    names = [r for r in held.roles if r != roles.ADMIN]
    return names + ([roles.ADMIN] if held.is_admin else [])


def token_roles_txn(txn: Any, user: str, project_id: str) -> list[str]:
    """Every role the user holds on the project (its own, its groups' and
    the roles these imply); none when it is not a member."""
    held = project_store.member_roles_txn(txn, user=user, project=project_id)
    if not held:
        return []
    names = _held_names(held[0])
    names += [g.role for g in project_store.group_roles_txn(txn, project=project_id,
                                                            user=user)]
    return roles.closure(names)


def _group_txn(txn: Any, group_id: str) -> Group:
    return store.group_txn(txn, group_id)


def _grant_group_txn(txn: Any, project_id: str, group_id: str, role: str,
                     now: datetime.datetime) -> list[str]:
    group = _group_txn(txn, group_id)
    _project_role(role)
    project = _project_txn(txn, project_id)
    members = store.group_members_txn(txn, group.id)
    if project.system_project and any(m != project.id for m in members):
        raise errors.Forbidden("A user's base project has its user as its only member.")
    project_store.grant_group_role_txn(txn, group.id, project.id, role)
    for user in members:
        _enroll_txn(txn, project, user, (), now)
    return members


def _revoke_group_txn(txn: Any, project_id: str, group_id: str, role: str,
                      now: datetime.datetime) -> list[str]:
    group = _group_txn(txn, group_id)
    project = _project_txn(txn, project_id)
    if not project_store.revoke_group_role_txn(txn, group.id, project.id, role):
        raise errors.NotFound(f"Could not find role assignment: {role} of group {group_id}"
                              f" on project {project_id}.")
    members = store.group_members_txn(txn, group.id)
    for user in members:
        _settle_txn(txn, project, user, now)
    return members


def _group_direct_roles_txn(txn: Any, project_id: str, group_id: str) -> list[str]:
    group = _group_txn(txn, group_id)
    return [g.role for g in project_store.group_roles_txn(txn, group=group.id,
                                                          project=project_id)]


def _delete_group_txn(txn: Any, group_id: str, now: datetime.datetime) -> list[str]:
    group = _group_txn(txn, group_id)
    members = store.group_members_txn(txn, group.id)
    projects = project_store.group_projects_txn(txn, group.id)
    store.remove_group_txn(txn, group.name)
    for pid in projects:
        project = project_store.project_txn(txn, pid, for_update=True)
        if project is not None and project.state in ALIVE_STATES:
            for user in members:
                _settle_txn(txn, project, user, now)
    for user in members:
        store.notify_txn(txn, f"user:{user}")
    return members


def _group_members_txn(txn: Any, group_id: str) -> list[str]:
    return store.group_members_txn(txn, _group_txn(txn, group_id).id)


def _set_group_member_txn(txn: Any, group_id: str, user: str, member: bool,
                          now: datetime.datetime) -> None:
    group = _group_txn(txn, group_id)
    _user_txn(txn, user)
    if not member and user not in store.group_members_txn(txn, group.id):
        raise errors.NotFound(f"User {user} is not in group {group_id}.")
    grants = project_store.group_roles_txn(txn, group=group.id)
    for pid in sorted({g.project for g in grants}):
        project = _project_txn(txn, pid)
        if member and project.system_project and project.id != user:
            raise errors.Forbidden("The group holds a role on another user's base project.")
    store.set_membership_txn(txn, user, group.name, member)
    for pid in sorted({g.project for g in grants}):
        project = _project_txn(txn, pid)
        if member:
            _enroll_txn(txn, project, user, (), now)
        else:
            _settle_txn(txn, project, user, now)


def _list_txn(txn: Any, user: str | None, group: str | None, project: str | None,
              effective: bool) -> list[Assignment]:
    out: list[Assignment] = []
    if group is None:
        for held in project_store.member_roles_txn(txn, user=user, project=project):
            out += _member_assignments(held, effective)
    grants = project_store.group_roles_txn(txn, group=group, project=project,
                                           user=user if effective else None)
    if user is not None and not effective:
        grants = []  # a user filter lists the user's own grants
    for g in grants:
        if not effective:
            out.append(Assignment(g.role, g.project, g.project_name, group=g.group,
                                  group_name=g.group_name))
            continue
        for member in store.group_members_txn(txn, g.group):
            if user is not None and member != user:
                continue
            person = store.get_user_txn(txn, member)
            out += _expanded(g, member, person.login_name)
    return out


def _member_assignments(held: MemberRoles, effective: bool) -> list[Assignment]:
    granted = _held_names(held)
    base = {"project": held.project, "project_name": held.project_name, "user": held.user,
            "user_name": held.user_name}
    out = [Assignment(r, **base) for r in roles.NAMES if r in granted]
    if effective:
        have = set(granted)
        for prior in [r for r in roles.NAMES if r in granted]:
            for implied in roles.implied_by(prior):
                if implied not in have:
                    have.add(implied)
                    out.append(Assignment(implied, prior=prior, **base))
    return out


def _expanded(grant: GroupRole, user: str, user_name: str) -> list[Assignment]:
    base = {"project": grant.project, "project_name": grant.project_name, "user": user,
            "user_name": user_name, "group": grant.group, "group_name": grant.group_name}
    out = [Assignment(grant.role, **base)]
    out += [Assignment(r, prior=grant.role, **base) for r in roles.implied_by(grant.role)]
    return out
