"""SQL of projects, their applications and memberships (``*_txn`` only).

Tables: ``identity_projects``, ``identity_project_resources``,
``identity_project_applications``, ``identity_memberships``; the quota
limits they imply are written to ``identity_holdings``:

- a project holding, holder ``project:<id>`` and source ``''``, with limit
  ``project_capacity`` while the project is active and 0 otherwise;
- a member holding, holder ``user:<uuid>`` and source ``project:<id>``,
  with limit ``member_capacity`` while the project is active and the
  membership is accepted (or leave_requested), 0 otherwise.

Only the limit column is written here; usage is never touched (a holding
whose limit drops keeps its usage, and is then over quota).  A membership
that was ever accepted (``accepted`` is set) keeps its holdings, at 0 once
it is removed, as Synnefo keeps "initialized" memberships.  The
``*_holdings_txn`` functions recompute limits from the project tables, so
they can be called again at any time.

Every change that alters what a member's token says (the projects it may
scope to, their names and states, the member's and its groups' roles
there) sends the member's ``user:<uuid>`` notification in the same
transaction, so every node's token cache drops what it kept for them
(``snfd.identity.tokens``).

Identifiers given by clients are checked by the callers (the projects
domain module); functions here that take a user-supplied filter compare
text, so a malformed id matches nothing instead of failing a cast.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from snfd import errors
from snfd.db import prepared
from snfd.identity.quota_store import lock_holdings_txn
from snfd.identity.store import group_members_txn, is_uuid, notify_txn
from snfd.quota import Resource

# Project states in which a project has quota (Synnefo's INITIALIZED_STATES)
# and those in which it is "alive".
INITIALIZED_STATES = ("active", "suspended", "terminated")
ALIVE_STATES = ("active", "suspended")
# Membership states: counted against max_members, and actually holding quota.
ACCEPTED_STATES = ("accepted", "leave_requested", "suspended")
ACTUALLY_ACCEPTED = ("accepted", "leave_requested")
ASSOCIATED_STATES = ("requested", "accepted", "leave_requested", "suspended")

PENDING_APP_RESOURCE = "astakos.pending_app"
# Largest bigint; Synnefo's "practically infinite" number of members.
UNLIMITED = 2**63 - 1

# Transaction-scoped advisory lock serializing the name checks of approvals
# and reinstatements ("snfd" + "pr").
PROJECT_NAMES_LOCK = 0x736E6664_7072


@attrs.frozen
class Capacity:
    project_capacity: int
    member_capacity: int

    def as_json(self) -> dict[str, int]:
        return {"project_capacity": self.project_capacity,
                "member_capacity": self.member_capacity}


@attrs.frozen
class ProjectFields:
    """What an application asks for; the settable fields of a project."""

    name: str
    owner: str
    homepage: str = ""
    description: str = ""
    start_date: datetime.datetime | None = None
    end_date: datetime.datetime | None = None
    join_policy: str = "moderated"
    leave_policy: str = "auto"
    max_members: int = UNLIMITED
    private: bool = False


@attrs.frozen
class Project:
    id: str
    state: str
    name: str
    owner: str | None
    homepage: str
    description: str
    start_date: datetime.datetime | None
    end_date: datetime.datetime | None
    join_policy: str
    leave_policy: str
    max_members: int
    private: bool
    system_project: bool
    creation_date: datetime.datetime
    deactivation_date: datetime.datetime | None
    last_application: int | None
    # The project's grants of API-visible resources.
    resources: dict[str, Capacity] = attrs.field(factory=dict)
    # Keystone's tags of the project, in the order they were set.
    tags: tuple[str, ...] = ()


@attrs.frozen
class Application:
    id: int
    project: str
    state: str
    applicant: str
    owner: str
    name: str
    homepage: str
    description: str
    comments: str
    start_date: datetime.datetime | None
    end_date: datetime.datetime | None
    join_policy: str
    leave_policy: str
    max_members: int
    private: bool
    resources: dict[str, Capacity]
    issue_date: datetime.datetime
    response_date: datetime.datetime | None
    response: str
    response_actor: str | None

    @property
    def fields(self) -> ProjectFields:
        return ProjectFields(
            name=self.name, owner=self.owner, homepage=self.homepage,
            description=self.description, start_date=self.start_date,
            end_date=self.end_date, join_policy=self.join_policy,
            leave_policy=self.leave_policy, max_members=self.max_members,
            private=self.private)


@attrs.frozen
class Membership:
    id: int
    project: str
    user: str
    state: str
    requested: datetime.datetime | None
    accepted: datetime.datetime | None
    removed: datetime.datetime | None
    # The member's account state (``identity_users.state``).
    user_state: str


@attrs.frozen
class Person:
    uuid: str
    email: str
    state: str
    is_admin: bool


def project_ref(project_id: str) -> str:
    return f"project:{project_id}"


def user_ref(user_uuid: str) -> str:
    return f"user:{user_uuid}"


# -- projects -------------------------------------------------------------

_PROJECT_COLUMNS = (
    "p.id::text, p.state, p.name, p.owner::text, p.homepage, p.description, p.start_date,"
    " p.end_date, p.join_policy, p.leave_policy, p.max_members, p.private, p.system_project,"
    " p.creation_date, p.deactivation_date, p.last_application, p.tags")


def _project(row: Sequence[Any], resources: dict[str, Capacity]) -> Project:
    return Project(
        id=row[0], state=row[1], name=row[2], owner=row[3], homepage=row[4],
        description=row[5], start_date=row[6], end_date=row[7], join_policy=row[8],
        leave_policy=row[9], max_members=UNLIMITED if row[10] is None else row[10],
        private=row[11], system_project=row[12], creation_date=row[13],
        deactivation_date=row[14], last_application=row[15], resources=resources,
        tags=tuple(row[16]))


def _project_resources_txn(txn: Any, ids: Sequence[str]) -> dict[str, dict[str, Capacity]]:
    out: dict[str, dict[str, Capacity]] = {i: {} for i in ids}
    if not ids:
        return out
    txn.execute(
        """SELECT pr.project::text, pr.resource, pr.project_capacity, pr.member_capacity
           FROM identity_project_resources pr
           JOIN identity_resources r ON r.name = pr.resource
           WHERE pr.project = ANY(%s::uuid[]) AND r.api_visible
           ORDER BY pr.resource""", (list(ids),))
    for project, resource, pcap, mcap in txn.fetchall():
        out[project][resource] = Capacity(pcap, mcap)
    return out


def _projects_from_rows(txn: Any, rows: Sequence[Sequence[Any]]) -> list[Project]:
    grants = _project_resources_txn(txn, [r[0] for r in rows])
    return [_project(r, grants[r[0]]) for r in rows]


def project_txn(txn: Any, project_id: str, for_update: bool = False) -> Project | None:
    """The project, or ``None``; ``for_update`` locks its row, which is how
    every change to a project and its memberships is serialized."""
    if not is_uuid(project_id):
        return None
    txn.execute(
        f"SELECT {_PROJECT_COLUMNS} FROM identity_projects p WHERE p.id = %s"
        + (" FOR UPDATE" if for_update else ""), (project_id,))
    row = txn.fetchone()
    return None if row is None else _projects_from_rows(txn, [row])[0]


def projects_txn(txn: Any, *, ids: Sequence[str] | None = None,
                 states: Sequence[str] | None = None,
                 owners: Sequence[str] | None = None, names: Sequence[str] | None = None,
                 member: str | None = None, visible_to: str | None = None) -> list[Project]:
    """Projects matching every filter given, oldest first.

    ``ids``, ``states``, ``owners`` and ``names`` keep projects whose value
    is among those given.
    ``member``: only active projects where that user's membership is
    accepted (or leave_requested).  ``visible_to``: only projects that user
    owns, applied for (last application), is a member of (any accepted
    state), or that are active and not private.
    """
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if ids is not None:
        where.append("p.id::text = ANY(%s)")
        args.append([i.lower() for i in ids])
    if states is not None:
        where.append("p.state = ANY(%s)")
        args.append(list(states))
    if owners is not None:
        where.append("p.owner::text = ANY(%s)")
        args.append([o.lower() for o in owners])
    if names is not None:
        where.append("p.name = ANY(%s)")
        args.append(list(names))
    if member is not None:
        where.append(
            """p.state = 'active' AND EXISTS (
                   SELECT 1 FROM identity_memberships m
                   WHERE m.project = p.id AND m.user_uuid::text = %s
                     AND m.state = ANY(%s))""")
        args += [member, list(ACTUALLY_ACCEPTED)]
    if visible_to is not None:
        where.append(
            """(p.owner::text = %s
                OR (p.state = 'active' AND NOT p.private)
                OR EXISTS (SELECT 1 FROM identity_memberships m
                           WHERE m.project = p.id AND m.user_uuid::text = %s
                             AND m.state = ANY(%s))
                OR EXISTS (SELECT 1 FROM identity_project_applications a
                           WHERE a.id = p.last_application AND a.applicant::text = %s))""")
        args += [visible_to, visible_to, list(ACCEPTED_STATES), visible_to]
    txn.execute(
        f"""SELECT {_PROJECT_COLUMNS} FROM identity_projects p
            WHERE {" AND ".join(where)}
            ORDER BY p.creation_date, p.id""", args)
    return _projects_from_rows(txn, txn.fetchall())


def set_project_tags_txn(txn: Any, project_id: str, tags: Sequence[str]) -> None:
    txn.execute("UPDATE identity_projects SET tags = %s WHERE id = %s",
                (list(tags), project_id))

# The projects of ``projects_of_user_txn``: the user's uuid and the
# accepted membership states are its parameters.
_USER_PROJECTS = """FROM identity_projects p
    JOIN identity_memberships m ON m.project = p.id
    WHERE m.user_uuid = %s AND m.state = ANY(%s) AND p.state = 'active'"""


def projects_of_user_txn(txn: Any, user_uuid: str) -> list[Project]:
    """The active projects in which the user's membership is accepted (or
    leave_requested), the user's system project first."""
    if not is_uuid(user_uuid):
        return []
    txn.execute(
        f"""SELECT {_PROJECT_COLUMNS} {_USER_PROJECTS}
            ORDER BY p.system_project DESC, p.creation_date, p.id""",
        (user_uuid, list(ACTUALLY_ACCEPTED)))
    return _projects_from_rows(txn, txn.fetchall())


def user_project_name_txn(txn: Any, user_uuid: str, project_id: str) -> str | None:
    """The name of the project when it is one of ``projects_of_user_txn``
    (active, the user's membership accepted); else ``None``."""
    if not is_uuid(user_uuid) or not is_uuid(project_id):
        return None
    prepared.execute(txn, f"SELECT p.name {_USER_PROJECTS} AND p.id = %s",
                     (user_uuid, list(ACTUALLY_ACCEPTED), project_id))
    row = txn.fetchone()
    return None if row is None else str(row[0])


def insert_project_txn(txn: Any, project_id: str, fields: ProjectFields,
                       now: datetime.datetime) -> None:
    """A new, uninitialized project (its first application is pending)."""
    txn.execute(
        """INSERT INTO identity_projects (id, state, name, owner, homepage, description,
               start_date, end_date, join_policy, leave_policy, max_members, private,
               system_project, creation_date)
           VALUES (%s, 'uninitialized', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, false, %s)""",
        (project_id, fields.name, fields.owner, fields.homepage, fields.description,
         fields.start_date, fields.end_date, fields.join_policy, fields.leave_policy,
         fields.max_members, fields.private, now))


def apply_fields_txn(txn: Any, project_id: str, fields: ProjectFields) -> None:
    """Copy an approved application's fields onto the project."""
    txn.execute(
        """UPDATE identity_projects SET name = %s, owner = %s, homepage = %s,
               description = %s, start_date = %s, end_date = %s, join_policy = %s,
               leave_policy = %s, max_members = %s, private = %s
           WHERE id = %s""",
        (fields.name, fields.owner, fields.homepage, fields.description, fields.start_date,
         fields.end_date, fields.join_policy, fields.leave_policy, fields.max_members,
         fields.private, project_id))
    _notify_members_txn(txn, project_id)


def set_project_state_txn(txn: Any, project_id: str, state: str,
                          now: datetime.datetime) -> None:
    """Move the project to ``state``; suspension and termination record
    ``now`` as its deactivation date."""
    txn.execute(
        """UPDATE identity_projects SET state = %s,
               deactivation_date = CASE WHEN %s IN ('suspended', 'terminated')
                                        THEN %s ELSE deactivation_date END
           WHERE id = %s""", (state, state, now, project_id))
    _notify_members_txn(txn, project_id)


def _notify_members_txn(txn: Any, project_id: str) -> None:
    """Every node's token cache drops what it rendered for the project's
    members (its name or state changed: their tokens scoped to it read
    differently)."""
    txn.execute("SELECT DISTINCT user_uuid::text FROM identity_memberships WHERE project = %s",
                (project_id,))
    for (uuid,) in txn.fetchall():
        notify_txn(txn, f"user:{uuid}")


def _notify_member_txn(txn: Any, memb_id: int) -> None:
    """Every node's token cache drops what it rendered for the member
    (the projects it may scope to, or its roles there, changed)."""
    txn.execute("SELECT user_uuid::text FROM identity_memberships WHERE id = %s", (memb_id,))
    row = txn.fetchone()
    if row is not None:
        notify_txn(txn, f"user:{row[0]}")


def set_last_application_txn(txn: Any, project_id: str, app_id: int) -> None:
    txn.execute("UPDATE identity_projects SET last_application = %s WHERE id = %s",
                (app_id, project_id))


def set_project_resources_txn(txn: Any, project_id: str,
                              resources: dict[str, Capacity]) -> None:
    """Set (insert or replace) the project's grants of these resources."""
    for name, cap in sorted(resources.items()):
        txn.execute(
            """INSERT INTO identity_project_resources
                   (project, resource, project_capacity, member_capacity)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (project, resource) DO UPDATE SET
                   project_capacity = EXCLUDED.project_capacity,
                   member_capacity = EXCLUDED.member_capacity""",
            (project_id, name, cap.project_capacity, cap.member_capacity))


def fill_project_resources_txn(txn: Any, project_id: str) -> None:
    """Give the project every resource it has no grant for, at the
    resource's default: ``base_default`` for a system project,
    ``project_default`` otherwise (as both capacities)."""
    txn.execute(
        """INSERT INTO identity_project_resources
               (project, resource, project_capacity, member_capacity)
           SELECT p.id, r.name,
                  CASE WHEN p.system_project THEN r.base_default ELSE r.project_default END,
                  CASE WHEN p.system_project THEN r.base_default ELSE r.project_default END
           FROM identity_projects p CROSS JOIN identity_resources r
           WHERE p.id = %s
           ON CONFLICT (project, resource) DO NOTHING""", (project_id,))


def live_project_named_txn(txn: Any, name: str, exclude: str) -> str | None:
    """The id of another active or suspended (non-system) project called
    ``name``, if any."""
    txn.execute(
        """SELECT id::text FROM identity_projects
           WHERE name = %s AND id <> %s AND state = ANY(%s) AND NOT system_project
           LIMIT 1""", (name, exclude, list(ALIVE_STATES)))
    row = txn.fetchone()
    return row[0] if row else None


def lock_project_names_txn(txn: Any) -> None:
    """Serialize name checks until the transaction ends."""
    txn.execute("SELECT pg_advisory_xact_lock(%s)", (PROJECT_NAMES_LOCK,))


def expired_projects_txn(txn: Any, now: datetime.datetime) -> list[str]:
    """Active or suspended (non-system) projects whose end date is past,
    both at ``now`` (the sweeping node's clock) and by the database's
    clock: a leader whose clock runs ahead does not end projects early."""
    txn.execute(
        """SELECT id::text FROM identity_projects
           WHERE state = ANY(%s) AND end_date < LEAST(%s, now()) AND NOT system_project
           ORDER BY end_date, id""", (list(ALIVE_STATES), now))
    return [r[0] for r in txn.fetchall()]


def create_system_project_txn(txn: Any, user_uuid: str, name: str,
                              now: datetime.datetime) -> Project:
    """The user's base project: id = the user's uuid, called ``name``
    (``system:<uuid>``), active, private, closed to joining and leaving,
    owned by the user who is its one accepted member, granted every
    resource's ``base_default`` (as project and member capacity), with the
    holdings to match.  Also makes it the user's default project when the
    user has none.  Running it again changes nothing.
    """
    txn.execute(
        """INSERT INTO identity_projects (id, state, name, owner, homepage, description,
               join_policy, leave_policy, max_members, private, system_project, creation_date)
           VALUES (%s, 'active', %s, %s, '', %s, 'closed', 'closed', 1, true, true, %s)
           ON CONFLICT (id) DO NOTHING""",
        (user_uuid, name, user_uuid, f"System project of user {user_uuid}", now))
    txn.execute("SELECT system_project, owner::text FROM identity_projects WHERE id = %s",
                (user_uuid,))
    if txn.fetchone() != (True, user_uuid):
        raise errors.Conflict(f"Project {user_uuid} exists and is not the system project"
                              " of the user with that uuid.")
    fill_project_resources_txn(txn, user_uuid)
    txn.execute(
        """INSERT INTO identity_memberships (project, user_uuid, state, accepted)
           VALUES (%s, %s, 'accepted', %s)
           ON CONFLICT (project, user_uuid) DO NOTHING""", (user_uuid, user_uuid, now))
    sync_holdings_txn(txn, [user_uuid])
    txn.execute(
        "UPDATE identity_users SET default_project = uuid"
        " WHERE uuid = %s AND default_project IS NULL", (user_uuid,))
    project = project_txn(txn, user_uuid)
    assert project is not None
    return project


def ensure_resource_holdings_txn(txn: Any, resource_name: str) -> None:
    """Grant a (newly registered) resource to every project that has quota
    (active, suspended or terminated) and lacks it, and write the holdings.

    Synnefo's rule: a system project gets ``base_default``, any other
    project ``project_default``, each as both project and member capacity.
    Existing grants are kept.  Limits follow the usual rule (0 for
    inactive projects and memberships).
    """
    txn.execute(
        """INSERT INTO identity_project_resources
               (project, resource, project_capacity, member_capacity)
           SELECT p.id, r.name,
                  CASE WHEN p.system_project THEN r.base_default ELSE r.project_default END,
                  CASE WHEN p.system_project THEN r.base_default ELSE r.project_default END
           FROM identity_projects p CROSS JOIN identity_resources r
           WHERE r.name = %s AND p.state = ANY(%s)
           ON CONFLICT (project, resource) DO NOTHING""",
        (resource_name, list(INITIALIZED_STATES)))
    sync_holdings_txn(txn, None, resource=resource_name)


# -- holdings ---------------------------------------------------------------

def sync_holdings_txn(txn: Any, projects: Sequence[str] | None, *,
                      resource: str | None = None, user: str | None = None) -> None:
    """Write the limits the project tables imply (see the module docstring)
    for these projects (``None``: every project), optionally only one
    resource or only one member's holdings (``user``: no project holding).

    Uninitialized and deleted projects are left alone.  Only changed
    limits are written, in key order.
    """
    where = ["p.state = ANY(%s)"]
    args: list[Any] = [list(INITIALIZED_STATES)]
    if projects is not None:
        where.append("p.id = ANY(%s::uuid[])")
        args.append(list(projects))
    if resource is not None:
        where.append("pr.resource = %s")
        args.append(resource)
    cond = " AND ".join(where)
    upsert = """ON CONFLICT (holder, source, resource) DO UPDATE SET "limit" = EXCLUDED."limit"
                WHERE identity_holdings."limit" <> EXCLUDED."limit" """
    if user is None:
        txn.execute(
            f"""INSERT INTO identity_holdings (holder, source, resource, "limit")
                SELECT 'project:' || p.id::text, '', pr.resource,
                       CASE WHEN p.state = 'active' THEN pr.project_capacity ELSE 0 END
                FROM identity_projects p
                JOIN identity_project_resources pr ON pr.project = p.id
                WHERE {cond}
                ORDER BY p.id::text COLLATE "C", pr.resource COLLATE "C"
                {upsert}""", args)
    member_args: list[Any] = [list(ACTUALLY_ACCEPTED), *args]
    member_cond = cond
    if user is not None:
        member_cond += " AND m.user_uuid = %s"
        member_args.append(user)
    txn.execute(
        f"""INSERT INTO identity_holdings (holder, source, resource, "limit")
            SELECT 'user:' || m.user_uuid::text, 'project:' || p.id::text, pr.resource,
                   CASE WHEN p.state = 'active' AND m.state = ANY(%s)
                        THEN pr.member_capacity ELSE 0 END
            FROM identity_projects p
            JOIN identity_project_resources pr ON pr.project = p.id
            JOIN identity_memberships m ON m.project = p.id
            WHERE {member_cond} AND m.accepted IS NOT NULL
            ORDER BY m.user_uuid::text COLLATE "C", p.id::text COLLATE "C",
                     pr.resource COLLATE "C"
            {upsert}""", member_args)


def set_holding_limit_txn(txn: Any, holder: str, source: str | None, resource: str,
                          limit: int) -> None:
    """Create the holding with ``limit`` or change an existing one's limit,
    keeping its usage."""
    txn.execute(
        """INSERT INTO identity_holdings (holder, source, resource, "limit")
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (holder, source, resource) DO UPDATE SET "limit" = EXCLUDED."limit"
        """, (holder, source or "", resource, limit))


def charge_pending_apps_txn(txn: Any, changes: dict[str, int], force: bool) -> int | None:
    """Count pending applications against each applicant's system project
    (resource ``astakos.pending_app``, on the user's holding in the system
    project and on that project's own holding), as an accepted commission.

    ``changes`` maps user uuids to +n (new pending applications) or -n
    (resolved ones).  Unless ``force``, a change that would take a usage
    over its limit changes nothing and the limit is returned; releases
    never go below zero.  Holdings that do not exist (the resource is not
    registered, the user has no system project) are skipped.  ``None``
    means done.
    """
    wanted: dict[tuple[str, str, str], int] = {}
    for user, delta in changes.items():
        if delta:
            wanted[(user_ref(user), project_ref(user), PENDING_APP_RESOURCE)] = delta
            wanted[(project_ref(user), "", PENDING_APP_RESOURCE)] = delta
    if not wanted:
        return None
    keys = sorted(wanted)
    found = lock_holdings_txn(txn, keys)
    updates = []
    for key in keys:
        if key not in found:
            continue
        limit, usage_min, usage_max = found[key]
        delta = wanted[key]
        if delta > 0:
            if not force and usage_max + delta > limit:
                return int(limit)
            updates.append((usage_min + delta, usage_max + delta, key))
        else:
            new_min = max(0, usage_min + delta)
            updates.append((new_min, max(new_min, usage_max + delta), key))
    for usage_min, usage_max, key in updates:
        txn.execute(
            """UPDATE identity_holdings SET usage_min = %s, usage_max = %s
               WHERE holder = %s AND source = %s AND resource = %s""",
            (usage_min, usage_max, *key))
    return None


# -- applications -------------------------------------------------------------

_APP_COLUMNS = (
    "id, project::text, state, applicant::text, owner::text, name, homepage, description,"
    " comments, start_date, end_date, join_policy, leave_policy, max_members, private,"
    " resources, issue_date, response_date, response, response_actor::text")


def _application(row: Sequence[Any]) -> Application:
    raw = row[15] if isinstance(row[15], dict) else json.loads(row[15] or "{}")
    resources = {name: Capacity(int(v["project_capacity"]), int(v["member_capacity"]))
                 for name, v in sorted(raw.items())}
    return Application(
        id=row[0], project=row[1], state=row[2], applicant=row[3], owner=row[4],
        name=row[5], homepage=row[6], description=row[7], comments=row[8],
        start_date=row[9], end_date=row[10], join_policy=row[11], leave_policy=row[12],
        max_members=UNLIMITED if row[13] is None else row[13], private=row[14],
        resources=resources, issue_date=row[16], response_date=row[17], response=row[18],
        response_actor=row[19])


def insert_application_txn(txn: Any, project_id: str, applicant: str, fields: ProjectFields,
                           comments: str, resources: dict[str, Capacity],
                           now: datetime.datetime) -> int:
    """A new pending application; returns its id."""
    txn.execute(
        """INSERT INTO identity_project_applications (project, state, applicant, owner, name,
               homepage, description, comments, start_date, end_date, join_policy,
               leave_policy, max_members, private, resources, issue_date)
           VALUES (%s, 'pending', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           RETURNING id""",
        (project_id, applicant, fields.owner, fields.name, fields.homepage,
         fields.description, comments, fields.start_date, fields.end_date,
         fields.join_policy, fields.leave_policy, fields.max_members, fields.private,
         json.dumps({k: v.as_json() for k, v in resources.items()}), now))
    return int(txn.fetchone()[0])


def application_txn(txn: Any, app_id: int) -> Application | None:
    txn.execute(f"SELECT {_APP_COLUMNS} FROM identity_project_applications WHERE id = %s",
                (app_id,))
    row = txn.fetchone()
    return None if row is None else _application(row)


def applications_txn(txn: Any, ids: Iterable[int]) -> dict[int, Application]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    txn.execute(f"SELECT {_APP_COLUMNS} FROM identity_project_applications"
                " WHERE id = ANY(%s)", (wanted,))
    return {row[0]: _application(row) for row in txn.fetchall()}


def pending_applicants_txn(txn: Any, project_id: str) -> list[str]:
    """The applicant of each pending application of the project (once per
    application)."""
    txn.execute(
        """SELECT applicant::text FROM identity_project_applications
           WHERE project = %s AND state = 'pending' ORDER BY id""", (project_id,))
    return [r[0] for r in txn.fetchall()]


def replace_pending_applications_txn(txn: Any, project_id: str, keep: int) -> None:
    """Mark every other pending application of the project replaced."""
    txn.execute(
        """UPDATE identity_project_applications SET state = 'replaced'
           WHERE project = %s AND state = 'pending' AND id <> %s""", (project_id, keep))


def set_application_state_txn(txn: Any, app_id: int, state: str, now: datetime.datetime,
                              response: str | None = None, actor: str | None = None) -> None:
    """Change the application's state; with ``response`` (approval or
    denial) also record the response, its date and who gave it."""
    if response is None:
        txn.execute("UPDATE identity_project_applications SET state = %s WHERE id = %s",
                    (state, app_id))
    else:
        txn.execute(
            """UPDATE identity_project_applications SET state = %s, response = %s,
                   response_date = %s, response_actor = %s
               WHERE id = %s""", (state, response, now, actor, app_id))


# -- memberships --------------------------------------------------------------

_MEMBERSHIP_COLUMNS = (
    "m.id, m.project::text, m.user_uuid::text, m.state, m.requested, m.accepted, m.removed,"
    " u.state")
_MEMBERSHIP_FROM = ("identity_memberships m"
                    " JOIN identity_users u ON u.uuid = m.user_uuid")


def _membership(row: Sequence[Any]) -> Membership:
    return Membership(id=row[0], project=row[1], user=row[2], state=row[3],
                      requested=row[4], accepted=row[5], removed=row[6], user_state=row[7])


def membership_txn(txn: Any, memb_id: int) -> Membership | None:
    txn.execute(f"SELECT {_MEMBERSHIP_COLUMNS} FROM {_MEMBERSHIP_FROM} WHERE m.id = %s",
                (memb_id,))
    row = txn.fetchone()
    return None if row is None else _membership(row)


def membership_of_txn(txn: Any, project_id: str, user_uuid: str) -> Membership | None:
    txn.execute(
        f"""SELECT {_MEMBERSHIP_COLUMNS} FROM {_MEMBERSHIP_FROM}
            WHERE m.project = %s AND m.user_uuid = %s""", (project_id, user_uuid))
    row = txn.fetchone()
    return None if row is None else _membership(row)


def memberships_txn(txn: Any, project: str | None = None,
                    visible_to: str | None = None) -> list[Membership]:
    """Memberships, by id; ``project`` filters by project id,
    ``visible_to`` keeps those of that user and those in projects the user
    owns."""
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    if project is not None:
        where.append("m.project::text = %s")
        args.append(project.lower())
    if visible_to is not None:
        where.append(
            """(m.user_uuid::text = %s OR EXISTS (
                   SELECT 1 FROM identity_projects p
                   WHERE p.id = m.project AND p.owner::text = %s))""")
        args += [visible_to, visible_to]
    txn.execute(
        f"""SELECT {_MEMBERSHIP_COLUMNS} FROM {_MEMBERSHIP_FROM}
            WHERE {" AND ".join(where)} ORDER BY m.id""", args)
    return [_membership(r) for r in txn.fetchall()]


def insert_membership_txn(txn: Any, project_id: str, user_uuid: str, state: str,
                          now: datetime.datetime) -> Membership:
    """A new membership, requested or (enrolled) accepted."""
    txn.execute(
        """INSERT INTO identity_memberships (project, user_uuid, state, requested, accepted)
           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
        (project_id, user_uuid, state, now if state == "requested" else None,
         now if state == "accepted" else None))
    membership = membership_txn(txn, txn.fetchone()[0])
    notify_txn(txn, f"user:{user_uuid}")
    assert membership is not None
    return membership


def set_membership_state_txn(txn: Any, memb_id: int, state: str,
                             now: datetime.datetime) -> Membership:
    """Move the membership to ``state``, stamping ``requested``,
    ``accepted`` or ``removed`` with ``now`` when it enters that state."""
    txn.execute(
        """UPDATE identity_memberships SET state = %s,
               requested = CASE WHEN %s = 'requested' THEN %s ELSE requested END,
               accepted = CASE WHEN %s = 'accepted' THEN %s ELSE accepted END,
               removed = CASE WHEN %s = 'removed' THEN %s ELSE removed END
           WHERE id = %s""", (state, state, now, state, now, state, now, memb_id))
    _notify_member_txn(txn, memb_id)
    membership = membership_txn(txn, memb_id)
    assert membership is not None
    return membership


def approved_member_counts_txn(txn: Any, project_ids: Iterable[str]) -> dict[str, int]:
    """Members counted against ``max_members`` (accepted, leave_requested,
    suspended), per project."""
    ids = sorted(set(project_ids))
    counts = dict.fromkeys(ids, 0)
    if not ids:
        return counts
    txn.execute(
        """SELECT project::text, count(*) FROM identity_memberships
           WHERE project = ANY(%s::uuid[]) AND state = ANY(%s) GROUP BY project""",
        (ids, list(ACCEPTED_STATES)))
    counts.update({r[0]: int(r[1]) for r in txn.fetchall()})
    return counts


def reset_default_project_txn(txn: Any, project_id: str, user_uuid: str | None = None) -> None:
    """Users whose default project is this one (only ``user_uuid`` when
    given) get their system project back as default."""
    if user_uuid is None:
        txn.execute("UPDATE identity_users SET default_project = uuid"
                    " WHERE default_project = %s", (project_id,))
    else:
        txn.execute("UPDATE identity_users SET default_project = uuid"
                    " WHERE default_project = %s AND uuid = %s", (project_id, user_uuid))


# -- users and resources ------------------------------------------------------

def person_txn(txn: Any, user_uuid: str) -> Person | None:
    if not is_uuid(user_uuid):
        return None
    txn.execute("SELECT uuid::text, email, state, is_admin FROM identity_users"
                " WHERE uuid = %s", (user_uuid,))
    row = txn.fetchone()
    return None if row is None else Person(*row)


def person_by_email_txn(txn: Any, email: str) -> Person | None:
    txn.execute("SELECT uuid::text, email, state, is_admin FROM identity_users"
                " WHERE lower(email) = lower(%s)", (email,))
    row = txn.fetchone()
    return None if row is None else Person(*row)


def resources_txn(txn: Any, names: Iterable[str]) -> dict[str, Resource]:
    """The definitions of the named resources that exist."""
    txn.execute(
        """SELECT name, description, unit, service_type, service_origin, ui_visible,
                  api_visible, allow_in_projects, base_default, project_default
           FROM identity_resources WHERE name = ANY(%s)""", (sorted(set(names)),))
    return {r[0]: Resource(*r) for r in txn.fetchall()}


# -- Keystone role assignments (see schema 0004) ---------------------------------

@attrs.frozen
class MemberRoles:
    """A user's accepted membership of an alive project and the roles
    stored on it (``admin`` comes from ``is_admin``, not from here)."""

    user: str
    user_name: str
    is_admin: bool
    project: str
    project_name: str
    system_project: bool
    roles: tuple[str, ...]


@attrs.frozen
class GroupRole:
    """A role granted to a group on an alive project."""

    group: str
    group_name: str
    project: str
    project_name: str
    role: str


def member_roles_txn(txn: Any, *, user: str | None = None,
                     project: str | None = None) -> list[MemberRoles]:
    """Accepted memberships of alive projects (filtered by user and
    project id) with their stored roles, by project then user."""
    where = ["m.state = ANY(%s)", "p.state = ANY(%s)"]
    args: list[Any] = [list(ACTUALLY_ACCEPTED), list(ALIVE_STATES)]
    # Compared as uuids, so that the indexes serve (a text cast of the
    # column scans every membership); what is no uuid matches nothing.
    if user is not None:
        if not is_uuid(user.lower()):
            return []
        where.append("m.user_uuid = %s::uuid")
        args.append(user.lower())
    if project is not None:
        if not is_uuid(project.lower()):
            return []
        where.append("m.project = %s::uuid")
        args.append(project.lower())
    prepared.execute(txn,
        f"""SELECT m.user_uuid::text, coalesce(u.username, u.email), u.is_admin, p.id::text, p.name,
                   p.system_project, m.roles
            FROM identity_memberships m
            JOIN identity_users u ON u.uuid = m.user_uuid
            JOIN identity_projects p ON p.id = m.project
            WHERE {" AND ".join(where)}
            ORDER BY p.creation_date, p.id, u.email""", args)
    return [MemberRoles(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6] or ()))
            for r in txn.fetchall()]


def group_roles_txn(txn: Any, *, group: str | None = None, project: str | None = None,
                    user: str | None = None) -> list[GroupRole]:
    """Roles granted to groups on alive projects, filtered by group id,
    project id and (``user``) groups the user is in."""
    where = ["p.state = ANY(%s)"]
    args: list[Any] = [list(ALIVE_STATES)]
    # As uuids, as in ``member_roles_txn``.
    if any(v is not None and not is_uuid(v.lower()) for v in (group, project, user)):
        return []
    if group is not None:
        where.append("g.id = %s::uuid")
        args.append(group.lower())
    if project is not None:
        where.append("gr.project = %s::uuid")
        args.append(project.lower())
    if user is not None:
        where.append("""EXISTS (SELECT 1 FROM identity_user_groups ug
                                WHERE ug.group_name = g.name AND ug.user_uuid = %s::uuid)""")
        args.append(user.lower())
    prepared.execute(txn,
        f"""SELECT g.id::text, g.name, p.id::text, p.name, gr.role
            FROM identity_group_roles gr
            JOIN identity_groups g ON g.id = gr.group_id
            JOIN identity_projects p ON p.id = gr.project
            WHERE {" AND ".join(where)}
            ORDER BY p.creation_date, p.id, g.name, gr.role""", args)
    return [GroupRole(*r) for r in txn.fetchall()]


def set_member_roles_txn(txn: Any, memb_id: int, roles: Sequence[str]) -> None:
    txn.execute("UPDATE identity_memberships SET roles = %s WHERE id = %s",
                (sorted(set(roles)), memb_id))
    _notify_member_txn(txn, memb_id)


def stored_roles_txn(txn: Any, memb_id: int) -> tuple[str, ...]:
    txn.execute("SELECT roles FROM identity_memberships WHERE id = %s", (memb_id,))
    row = txn.fetchone()
    return tuple(row[0] or ()) if row else ()


def grant_group_role_txn(txn: Any, group_id: str, project_id: str, role: str) -> None:
    txn.execute("INSERT INTO identity_group_roles (group_id, project, role) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING", (group_id, project_id, role))
    for uuid in group_members_txn(txn, group_id):
        notify_txn(txn, f"user:{uuid}")


def revoke_group_role_txn(txn: Any, group_id: str, project_id: str, role: str) -> bool:
    """Remove the grant; whether there was one."""
    txn.execute("DELETE FROM identity_group_roles WHERE group_id = %s AND project = %s"
                " AND role = %s RETURNING 1", (group_id, project_id, role))
    if txn.fetchone() is None:
        return False
    for uuid in group_members_txn(txn, group_id):
        notify_txn(txn, f"user:{uuid}")
    return True


def group_projects_txn(txn: Any, group_id: str) -> list[str]:
    """Projects where the group holds some role."""
    txn.execute("SELECT DISTINCT project::text FROM identity_group_roles WHERE group_id = %s"
                " ORDER BY 1", (group_id,))
    return [r[0] for r in txn.fetchall()]


def user_quota_in_use_txn(txn: Any, user_uuid: str) -> bool:
    """Whether any holding of the user (or of its system project) has
    usage: settled usage left once its pending releases are done
    (``usage_min``), or a pending import.  A release still pending is
    counted as done: the service has already let the resource go (a
    container deleted just before the user is, whose commission the holder
    learns in the background, does not keep the user alive)."""
    refs = (user_ref(user_uuid), project_ref(user_uuid))
    txn.execute(
        """SELECT 1 FROM identity_holdings
           WHERE (holder = %s OR holder = %s) AND usage_min > 0
           UNION ALL
           SELECT 1 FROM identity_provisions
           WHERE (holder = %s OR holder = %s) AND quantity > 0
           LIMIT 1""", refs + refs)
    return txn.fetchone() is not None


def delete_user_projects_txn(txn: Any, user_uuid: str) -> None:
    """Forget the user's holdings and its system project (the caller has
    checked that nothing is in use)."""
    txn.execute("DELETE FROM identity_holdings WHERE holder = %s OR holder = %s",
                (user_ref(user_uuid), project_ref(user_uuid)))
    txn.execute("DELETE FROM identity_projects WHERE id = %s AND system_project", (user_uuid,))
