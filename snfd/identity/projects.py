"""Projects: applications, their review, memberships and the quota they grant.

The behaviour is Synnefo's (``astakos/im/functions.py``):

- Anyone may apply for a project.  The project exists at once, in state
  ``uninitialized``, and becomes ``active`` when an administrator approves
  its first application.  A modification is a new application on an
  initialized project (by its owner or an administrator); it replaces any
  other pending application of that project.  Only the project's last
  application can be acted on: approve and deny (administrators), cancel
  (pending) and dismiss (denied) by the applicant or an administrator.
  Cancelling or dismissing the first application deletes the project.
- Pending applications count against the applicant's
  ``astakos.pending_app`` quota in the system project (administrators are
  not limited).
- Administrators suspend, unsuspend, terminate and reinstate projects;
  system projects cannot be terminated.  ``expire_projects`` terminates
  projects past their end date.
- Memberships follow the project's join and leave policies (``auto``,
  ``moderated``, ``closed``) and ``max_members``.  The owner (or an
  administrator) accepts, rejects, removes and enrolls; the member joins,
  cancels a request and leaves.
- Quota: an active project's holding has limit ``project_capacity``;
  each accepted member's holding ``member_capacity``.  Removal, leaving,
  suspension and termination set those limits to 0 (usage stays);
  unsuspension and reinstatement restore them.

Who may see what: a project is visible to administrators, its owner, the
applicant of its last application, its members (any accepted state), and
to everyone when it is active and not private; the last application and
the deactivation date only to the first three.  A membership is visible to
administrators, the project's owner and the member.

Every operation is one transaction that locks the project row first, so
concurrent changes to a project and its memberships are serialized.
"""

from __future__ import annotations

import datetime
import re
import uuid as uuid_module
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.logger import Logger

from snfd import errors
from snfd.identity import project_store as store
from snfd.identity import project_tags
from snfd.identity.project_store import (
    ACCEPTED_STATES,
    ALIVE_STATES,
    ASSOCIATED_STATES,
    INITIALIZED_STATES,
    UNLIMITED,
    Application,
    Capacity,
    Membership,
    Project,
    ProjectFields,
)
from snfd.web.auth import Principal

log = Logger(namespace="snfd.identity.projects")

UTC = datetime.UTC

POLICIES = ("auto", "moderated", "closed")
PROJECT_STATES = ("uninitialized", "active", "suspended", "terminated", "deleted")
PROJECT_ACTIONS = ("suspend", "unsuspend", "terminate", "reinstate")
APPLICATION_ACTIONS = ("approve", "deny", "dismiss", "cancel")
MEMBERSHIP_ACTIONS = ("leave", "cancel", "accept", "reject", "remove")
LIST_MODES = ("default", "member")

MAX_BIGINT = 2**63 - 1
MAX_NAME = 80
MAX_HOMEPAGE = 255
MAX_TEXT = 4096
# Project names are in domain form ("myproject.example.org"): dot-separated
# labels of letters, digits and inner hyphens, ending in a 2-6 letter label.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
NAME_FORMAT = re.compile(rf"^(?:{_LABEL}\.)+[A-Za-z]{{2,6}}$")

NOT_ALLOWED = "You are not allowed to do this."


@attrs.frozen
class ApplicationSpec:
    """A parsed application; ``None`` means "not given" (for a
    modification: keep the project's value)."""

    name: str | None = None
    owner: str | None = None
    homepage: str | None = None
    description: str | None = None
    comments: str | None = None
    start_date: datetime.datetime | None = None
    end_date: datetime.datetime | None = None
    join_policy: str | None = None
    leave_policy: str | None = None
    max_members: int | None = None
    private: bool | None = None
    resources: dict[str, Capacity] | None = None


@attrs.frozen
class ProjectDetails:
    """A project as a caller sees it: ``privileged`` callers
    (administrator, owner, applicant) also see the last application and
    the deactivation date."""

    project: Project
    last_application: Application | None
    privileged: bool


@attrs.frozen
class MembershipDetails:
    membership: Membership
    # What the caller may do now, among MEMBERSHIP_ACTIONS.
    allowed_actions: tuple[str, ...]


# -- parsing ------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_date(value: Any, key: str) -> datetime.datetime:
    """An ISO 8601 date; "Z" or an offset is honoured, no zone means UTC."""
    if not isinstance(value, str):
        raise errors.BadRequest(f"Invalid {key}: expected an ISO 8601 date string.")
    try:
        parsed = datetime.datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise errors.BadRequest(f"Invalid {key}: {value!r} is not an ISO 8601 date.") from None


def _opt_str(data: dict[str, Any], key: str, limit: int | None = None) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.BadRequest(f"{key} must be a string.")
    if "\x00" in value:
        raise errors.BadRequest(f"{key} must not contain NUL characters.")
    if limit is not None and len(value) > limit:
        raise errors.BadRequest(f"{key} is longer than {limit} characters.")
    return value


def _parse_policy(data: dict[str, Any], key: str, what: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if value not in POLICIES:
        raise errors.BadRequest(
            f"Invalid {what} policy {value!r}: expected one of {', '.join(POLICIES)}.")
    return str(value)


def _parse_max_members(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not _is_int(value) or not 0 <= value <= MAX_BIGINT:
        raise errors.BadRequest(
            f"Invalid max_members: expected an integer from 0 to {MAX_BIGINT}.")
    return int(value)


def parse_resources(value: Any) -> dict[str, Capacity] | None:
    """``{"<resource>": {"project_capacity": n, "member_capacity": n}}``
    with non-negative integers and member <= project capacity."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.BadRequest(
            "resources must be an object mapping resource names to capacities.")
    out = {}
    for name, spec in value.items():
        if "\x00" in name:
            raise errors.BadRequest("Resource names must not contain NUL characters.")
        if not isinstance(spec, dict):
            raise errors.BadRequest(
                f"Resource {name!r} needs an object with project_capacity and member_capacity.")
        pcap: Any = spec.get("project_capacity")
        mcap: Any = spec.get("member_capacity")
        if not _is_int(pcap) or not _is_int(mcap):
            raise errors.BadRequest(
                f"Resource {name!r}: project_capacity and member_capacity must be integers.")
        if pcap < 0 or mcap < 0:
            raise errors.BadRequest(f"Resource {name!r}: a capacity cannot be negative.")
        if pcap > MAX_BIGINT or mcap > MAX_BIGINT:
            raise errors.BadRequest(f"Resource {name!r}: a capacity exceeds {MAX_BIGINT}.")
        if mcap > pcap:
            raise errors.BadRequest(
                f"Resource {name!r}: member_capacity is larger than project_capacity.")
        out[name] = Capacity(pcap, mcap)
    return out


def parse_application(data: Any, new: bool) -> ApplicationSpec:
    """Check the types and formats of a project application body (the
    JSON of ``POST /projects`` when ``new``, ``PUT /projects/<id>``
    otherwise).  Unknown keys are ignored, as Synnefo does.

    @raise errors.BadRequest: with a message naming the faulty field.
    """
    if not isinstance(data, dict):
        raise errors.BadRequest("The application must be a JSON object.")
    owner = _opt_str(data, "owner")
    if owner is not None:
        if not store.is_uuid(owner):
            raise errors.BadRequest(f"User {owner!r} does not exist.")
        owner = str(uuid_module.UUID(owner))
    name = _opt_str(data, "name")
    if name is None and new:
        raise errors.BadRequest("Name missing.")
    if name is not None:
        if len(name) > MAX_NAME:
            raise errors.BadRequest(f"name is longer than {MAX_NAME} characters.")
        if not NAME_FORMAT.match(name):
            raise errors.BadRequest(
                "The project name must be in domain format (like myproject.example.org).")
    join_policy = _parse_policy(data, "join_policy", "join")
    leave_policy = _parse_policy(data, "leave_policy", "leave")
    start = data.get("start_date")
    end = data.get("end_date")
    if end is None and new:
        raise errors.BadRequest("Missing end date (end_date).")
    private = data.get("private")
    if private is not None and not isinstance(private, bool):
        raise errors.BadRequest("private must be a boolean.")
    return ApplicationSpec(
        name=name, owner=owner,
        homepage=_opt_str(data, "homepage", MAX_HOMEPAGE),
        description=_opt_str(data, "description", MAX_TEXT),
        comments=_opt_str(data, "comments", MAX_TEXT),
        start_date=None if start is None else parse_date(start, "start_date"),
        end_date=None if end is None else parse_date(end, "end_date"),
        join_policy=join_policy if join_policy is not None else ("moderated" if new else None),
        leave_policy=leave_policy if leave_policy is not None else ("auto" if new else None),
        max_members=_parse_max_members(data.get("max_members")),
        private=private if private is not None else (False if new else None),
        resources=parse_resources(data.get("resources")),
    )


# -- permissions and checks -----------------------------------------------------

def _is_admin(caller: Principal | None) -> bool:
    """``None`` is the system itself (expiry), which may do anything."""
    return caller is None or caller.is_admin


def _uid(caller: Principal | None) -> str | None:
    return caller.user if caller is not None else None


def _require_admin(caller: Principal | None) -> None:
    if not _is_admin(caller):
        raise errors.Forbidden(NOT_ALLOWED)


def _require_owner(project: Project, caller: Principal | None) -> None:
    if not _is_admin(caller) and project.owner != _uid(caller):
        raise errors.Forbidden(NOT_ALLOWED)


def _require_alive(project: Project) -> None:
    if project.state not in ALIVE_STATES:
        raise errors.Conflict(f"Project {project.id} is not alive (it is {project.state}).")


def _has_room(project: Project, members: int) -> bool:
    return members + 1 <= project.max_members


@attrs.frozen
class _Context:
    """A membership with what its checks need, read under the project lock."""

    membership: Membership
    project: Project
    members: int


def _check_accept_project(project: Project, members: int, caller: Principal | None) -> None:
    _require_owner(project, caller)
    _require_alive(project)
    if project.join_policy == "closed":
        raise errors.Conflict("The project's join policy is closed.")
    if not _has_room(project, members):
        raise errors.Conflict("The project has reached its maximum number of members.")


def _check_accept(ctx: _Context, caller: Principal | None) -> None:
    if ctx.membership.state != "requested":
        raise errors.Conflict("This membership is not a pending join request.")
    if ctx.membership.user_state != "active":
        raise errors.Conflict("The user's account is not active.")
    _check_accept_project(ctx.project, ctx.members, caller)


def _check_reject(ctx: _Context, caller: Principal | None) -> None:
    if ctx.membership.state != "requested":
        raise errors.Conflict("This membership is not a pending join request.")
    _require_owner(ctx.project, caller)
    _require_alive(ctx.project)


def _check_cancel(ctx: _Context, caller: Principal | None) -> None:
    if ctx.membership.state != "requested":
        raise errors.Conflict("This membership is not a pending join request.")
    if not _is_admin(caller) and ctx.membership.user != _uid(caller):
        raise errors.Forbidden(NOT_ALLOWED)
    _require_alive(ctx.project)


def _check_remove(ctx: _Context, caller: Principal | None) -> None:
    if ctx.membership.state not in ACCEPTED_STATES:
        raise errors.Conflict("This is not an accepted membership.")
    _require_owner(ctx.project, caller)
    _require_alive(ctx.project)
    if ctx.project.leave_policy == "closed":
        raise errors.Conflict("The project's leave policy is closed.")


def _check_leave(ctx: _Context, caller: Principal | None) -> None:
    if ctx.membership.state not in ACCEPTED_STATES:
        raise errors.Conflict("This is not an accepted membership.")
    if not _is_admin(caller) and ctx.membership.user != _uid(caller):
        raise errors.Forbidden(NOT_ALLOWED)
    _require_alive(ctx.project)
    if ctx.project.leave_policy == "closed":
        raise errors.Conflict("The project's leave policy is closed.")


_MEMBERSHIP_CHECKS: dict[str, Callable[[_Context, Principal | None], None]] = {
    "leave": _check_leave,
    "cancel": _check_cancel,
    "accept": _check_accept,
    "reject": _check_reject,
    "remove": _check_remove,
}


def allowed_actions(ctx: _Context, caller: Principal | None) -> tuple[str, ...]:
    allowed = []
    for action in MEMBERSHIP_ACTIONS:
        try:
            _MEMBERSHIP_CHECKS[action](ctx, caller)
        except errors.Fault:
            continue
        allowed.append(action)
    return tuple(allowed)


# -- transactions (composed of store steps) -------------------------------------

def _lock_project(txn: Any, project_id: str) -> Project:
    project = store.project_txn(txn, project_id, for_update=True)
    if project is None:
        raise errors.NotFound(f"There is no project {project_id}.")
    return project


def _context_txn(txn: Any, memb_id: int) -> _Context:
    first = store.membership_txn(txn, memb_id)
    if first is None:
        raise errors.NotFound(f"There is no project membership {memb_id}.")
    project = _lock_project(txn, first.project)
    membership = store.membership_txn(txn, memb_id)
    assert membership is not None
    members = store.approved_member_counts_txn(txn, [project.id])[project.id]
    return _Context(membership, project, members)


def _remove_member_txn(txn: Any, ctx: _Context, now: datetime.datetime) -> Membership:
    membership = store.set_membership_state_txn(txn, ctx.membership.id, "removed", now)
    store.sync_holdings_txn(txn, [ctx.project.id], user=membership.user)
    store.reset_default_project_txn(txn, ctx.project.id, membership.user)
    return membership


def _membership_action_txn(txn: Any, caller: Principal | None, memb_id: int, action: str,
                           now: datetime.datetime) -> Membership:
    ctx = _context_txn(txn, memb_id)
    _MEMBERSHIP_CHECKS[action](ctx, caller)
    mid = ctx.membership.id
    if action == "accept":
        membership = store.set_membership_state_txn(txn, mid, "accepted", now)
        store.sync_holdings_txn(txn, [ctx.project.id], user=membership.user)
        return membership
    if action == "reject":
        return store.set_membership_state_txn(txn, mid, "rejected", now)
    if action == "cancel":
        return store.set_membership_state_txn(txn, mid, "cancelled", now)
    if action == "remove":
        return _remove_member_txn(txn, ctx, now)
    # leave: at once under an "auto" leave policy, else a request to the owner
    if ctx.project.leave_policy == "auto":
        return _remove_member_txn(txn, ctx, now)
    return store.set_membership_state_txn(txn, mid, "leave_requested", now)


def _join_txn(txn: Any, user: str, project_id: str, now: datetime.datetime) -> Membership:
    project = _lock_project(txn, project_id)
    _require_alive(project)
    if project.join_policy == "closed":
        raise errors.Conflict("The project's join policy is closed.")
    existing = store.membership_of_txn(txn, project.id, user)
    if existing is None:
        membership = store.insert_membership_txn(txn, project.id, user, "requested", now)
    elif existing.state in ASSOCIATED_STATES:
        raise errors.Conflict("A join request or membership exists already.")
    else:
        membership = store.set_membership_state_txn(txn, existing.id, "requested", now)
    if project.join_policy == "auto":
        members = store.approved_member_counts_txn(txn, [project.id])[project.id]
        if _has_room(project, members):
            membership = store.set_membership_state_txn(txn, membership.id, "accepted", now)
            store.sync_holdings_txn(txn, [project.id], user=user)
    return membership


def _enroll_txn(txn: Any, caller: Principal, project_id: str, email: str,
                now: datetime.datetime) -> Membership:
    person = store.person_by_email_txn(txn, email)
    if person is None or person.state not in ("active", "deactivated"):
        raise errors.Conflict(f"Unknown user: {email}")
    project = store.project_txn(txn, project_id, for_update=True)
    if project is None:
        raise errors.Conflict(f"There is no project {project_id}.")
    if person.state != "active":
        raise errors.Conflict("The user's account is not active.")
    members = store.approved_member_counts_txn(txn, [project.id])[project.id]
    _check_accept_project(project, members, caller)
    existing = store.membership_of_txn(txn, project.id, person.uuid)
    if existing is None:
        membership = store.insert_membership_txn(txn, project.id, person.uuid, "accepted", now)
    elif existing.state in ACCEPTED_STATES:
        raise errors.Conflict("The user is a member already.")
    else:
        membership = store.set_membership_state_txn(txn, existing.id, "accepted", now)
    store.sync_holdings_txn(txn, [project.id], user=person.uuid)
    return membership


def _check_resources_txn(txn: Any, resources: dict[str, Capacity]) -> None:
    known = store.resources_txn(txn, resources)
    for name in sorted(resources):
        r = known.get(name)
        if r is None or not r.api_visible:
            raise errors.BadRequest(f"Unknown resource {name!r}.")
        if not r.allow_in_projects:
            raise errors.BadRequest(f"Resource {name!r} cannot be granted by projects.")


def _submit_txn(txn: Any, caller: Principal, spec: ApplicationSpec, project_id: str | None,
                now: datetime.datetime) -> tuple[str, int]:
    applicant = caller.user
    assert applicant is not None
    if spec.owner is not None:
        owner = store.person_txn(txn, spec.owner)
        if owner is None or owner.state != "active":
            raise errors.BadRequest(f"User {spec.owner} does not exist.")
    project = None
    if project_id is not None:
        project = _lock_project(txn, project_id)
        _require_owner(project, caller)
        if project.state not in INITIALIZED_STATES:
            raise errors.Conflict("Cannot modify an uninitialized project.")
        if project.system_project and any(
                v is not None for v in (spec.owner, spec.name, spec.homepage, spec.description)):
            raise errors.Conflict(
                "The owner, name, homepage and description of a system project"
                " cannot be changed.")
    if spec.resources:
        _check_resources_txn(txn, spec.resources)
    if spec.end_date is not None and spec.end_date < now:
        raise errors.BadRequest("end_date must be in the future.")

    # The new application replaces the project's pending ones: it counts
    # for its applicant, theirs no longer count for theirs.
    changes: Counter[str] = Counter({applicant: 1})
    if project is not None:
        changes.subtract(store.pending_applicants_txn(txn, project.id))
    limit = store.charge_pending_apps_txn(txn, dict(changes), force=_is_admin(caller))
    if limit is not None:
        raise errors.Conflict(
            f"You have reached the maximum number of pending project applications ({limit}).")

    if project is None:
        assert spec.name is not None
        pid = str(uuid_module.uuid4())
        fields = ProjectFields(
            name=spec.name, owner=spec.owner or applicant, homepage=spec.homepage or "",
            description=spec.description or "", start_date=spec.start_date,
            end_date=spec.end_date, join_policy=spec.join_policy or "moderated",
            leave_policy=spec.leave_policy or "auto",
            max_members=UNLIMITED if spec.max_members is None else spec.max_members,
            private=bool(spec.private))
        store.insert_project_txn(txn, pid, fields, now)
        if spec.resources:
            store.set_project_resources_txn(txn, pid, spec.resources)
    else:
        pid = project.id

        def pick(given: Any, current: Any) -> Any:
            return current if given is None else given

        fields = ProjectFields(
            name=pick(spec.name, project.name),
            owner=pick(spec.owner, project.owner) or applicant,
            homepage=pick(spec.homepage, project.homepage),
            description=pick(spec.description, project.description),
            start_date=pick(spec.start_date, project.start_date),
            end_date=pick(spec.end_date, project.end_date),
            join_policy=pick(spec.join_policy, project.join_policy),
            leave_policy=pick(spec.leave_policy, project.leave_policy),
            max_members=pick(spec.max_members, project.max_members),
            private=pick(spec.private, project.private))
    app_id = store.insert_application_txn(txn, pid, applicant, fields, spec.comments or "",
                                          spec.resources or {}, now)
    store.set_last_application_txn(txn, pid, app_id)
    store.replace_pending_applications_txn(txn, pid, app_id)
    return pid, app_id


def _relevant_application_txn(txn: Any, project_id: str,
                              app_id: int) -> tuple[Application, Project]:
    """The application and its project (locked); it must be the last
    application of ``project_id``."""
    first = store.application_txn(txn, app_id)
    if first is None:
        raise errors.NotFound(f"There is no project application {app_id}.")
    project = _lock_project(txn, first.project)
    app = store.application_txn(txn, app_id)
    assert app is not None
    if project.id != project_id.lower() or project.last_application != app.id:
        raise errors.Conflict(
            f"Application {app_id} is not the last application of project {project_id}.")
    return app, project


def _check_name_free(txn: Any, project: Project, name: str) -> None:
    if project.system_project:
        return
    other = store.live_project_named_txn(txn, name, project.id)
    if other is not None:
        raise errors.Conflict(f"A project named {name!r} exists already (id {other}).")


def _application_action_txn(txn: Any, caller: Principal | None, project_id: str, app_id: int,
                            action: str, reason: str, now: datetime.datetime) -> None:
    if action == "approve":
        store.lock_project_names_txn(txn)
    app, project = _relevant_application_txn(txn, project_id, app_id)
    if action in ("approve", "deny"):
        _require_admin(caller)
    elif not _is_admin(caller) and app.applicant != _uid(caller):
        raise errors.Forbidden(NOT_ALLOWED)
    wanted = "denied" if action == "dismiss" else "pending"
    if app.state != wanted:
        raise errors.Conflict(f"Cannot {action} application {app.id} in state '{app.state}'.")

    if action == "approve":
        _check_name_free(txn, project, app.name)
        store.charge_pending_apps_txn(txn, {app.applicant: -1}, force=True)
        store.set_application_state_txn(txn, app.id, "approved", now, reason, _uid(caller))
        store.apply_fields_txn(txn, project.id, app.fields)
        store.set_project_resources_txn(txn, project.id, app.resources)
        store.fill_project_resources_txn(txn, project.id)
        if project.state != "active":
            store.set_project_state_txn(txn, project.id, "active", now)
        store.sync_holdings_txn(txn, [project.id])
    elif action == "deny":
        store.charge_pending_apps_txn(txn, {app.applicant: -1}, force=True)
        store.set_application_state_txn(txn, app.id, "denied", now, reason, _uid(caller))
    else:
        if action == "cancel":
            store.charge_pending_apps_txn(txn, {app.applicant: -1}, force=True)
        store.set_application_state_txn(
            txn, app.id, "cancelled" if action == "cancel" else "dismissed", now)
        if project.state == "uninitialized":
            store.set_project_state_txn(txn, project.id, "deleted", now)


def _project_action_txn(txn: Any, caller: Principal | None, project_id: str, action: str,
                        now: datetime.datetime, ended_before: datetime.datetime | None = None,
                        ) -> bool:
    """Suspend, unsuspend, terminate or reinstate.  With ``ended_before``
    (expiry) a project whose end date is not before it is left alone and
    ``False`` returned."""
    if action == "reinstate":
        store.lock_project_names_txn(txn)
    project = _lock_project(txn, project_id)
    if ended_before is not None and (
            project.end_date is None or project.end_date >= ended_before
            or project.state not in ALIVE_STATES or project.system_project):
        return False
    _require_admin(caller)
    if action == "terminate":
        _require_alive(project)
        if project.system_project:
            raise errors.Conflict(f"Cannot terminate {project.id}: it is a system project.")
        state = "terminated"
    elif action == "suspend":
        _require_alive(project)
        if project.state == "suspended":
            raise errors.Conflict(f"Project {project.id} is suspended already.")
        state = "suspended"
    elif action == "unsuspend":
        if project.state != "suspended":
            raise errors.Conflict(f"Project {project.id} is not suspended.")
        state = "active"
    else:
        if project.state != "terminated":
            raise errors.Conflict(f"Project {project.id} is not terminated.")
        _check_name_free(txn, project, project.name)
        state = "active"
    store.set_project_state_txn(txn, project.id, state, now)
    if state == "terminated":
        store.reset_default_project_txn(txn, project.id)
    store.sync_holdings_txn(txn, [project.id])
    return True


def _may_see(project: Project, caller: Principal, app: Application | None,
             membership: Membership | None) -> tuple[bool, bool]:
    """(visible, privileged) for this caller."""
    privileged = (_is_admin(caller) or project.owner == caller.user
                  or (app is not None and app.applicant == caller.user))
    visible = (privileged or (project.state == "active" and not project.private)
               or (membership is not None and membership.state in ACCEPTED_STATES))
    return visible, privileged


def _get_project_txn(txn: Any, caller: Principal, project_id: str) -> ProjectDetails:
    project = store.project_txn(txn, project_id)
    if project is None:
        raise errors.NotFound(f"There is no project {project_id}.")
    app = (store.application_txn(txn, project.last_application)
           if project.last_application is not None else None)
    membership = (store.membership_of_txn(txn, project.id, caller.user)
                  if caller.user is not None and store.is_uuid(caller.user) else None)
    visible, privileged = _may_see(project, caller, app, membership)
    if not visible:
        raise errors.Forbidden(NOT_ALLOWED)
    return ProjectDetails(project, app if privileged else None, privileged)


def _list_projects_txn(txn: Any, caller: Principal, states: Sequence[str] | None,
                       owners: Sequence[str] | None, names: Sequence[str] | None,
                       mode: str) -> list[ProjectDetails]:
    user = caller.user if store.is_uuid(caller.user) else None
    if mode == "member":
        if user is None:
            return []
        projects = store.projects_txn(txn, states=states, owners=owners, names=names,
                                      member=user)
    elif _is_admin(caller):
        projects = store.projects_txn(txn, states=states, owners=owners, names=names)
    else:
        if user is None:
            return []
        projects = store.projects_txn(txn, states=states, owners=owners, names=names,
                                      visible_to=user)
    apps = store.applications_txn(txn, [p.last_application for p in projects
                                        if p.last_application is not None])
    out = []
    for p in projects:
        app = apps.get(p.last_application) if p.last_application is not None else None
        privileged = (_is_admin(caller) or p.owner == caller.user
                      or (app is not None and app.applicant == caller.user))
        out.append(ProjectDetails(p, app if privileged else None, privileged))
    return out


def _membership_details_txn(txn: Any, caller: Principal,
                            memberships: list[Membership]) -> list[MembershipDetails]:
    ids = sorted({m.project for m in memberships})
    projects = {p.id: p for p in store.projects_txn(txn, ids=ids)} if ids else {}
    counts = store.approved_member_counts_txn(txn, ids)
    return [MembershipDetails(m, allowed_actions(
                _Context(m, projects[m.project], counts[m.project]), caller))
            for m in memberships]


def _list_memberships_txn(txn: Any, caller: Principal,
                          project: str | None) -> list[MembershipDetails]:
    if project is not None and not store.is_uuid(project):
        return []
    if _is_admin(caller):
        memberships = store.memberships_txn(txn, project)
    elif not store.is_uuid(caller.user):
        return []
    else:
        memberships = store.memberships_txn(txn, project, visible_to=caller.user)
    return _membership_details_txn(txn, caller, memberships)


def _get_membership_txn(txn: Any, caller: Principal, memb_id: int) -> MembershipDetails:
    membership = store.membership_txn(txn, memb_id)
    if membership is None:
        raise errors.NotFound(f"There is no project membership {memb_id}.")
    project = store.project_txn(txn, membership.project)
    assert project is not None
    if not (_is_admin(caller) or project.owner == caller.user
            or membership.user == caller.user):
        raise errors.Forbidden(NOT_ALLOWED)
    return _membership_details_txn(txn, caller, [membership])[0]


def _check_serial(value: int, what: str) -> None:
    """Ids of applications and memberships are positive bigints; anything
    else names nothing."""
    if not _is_int(value) or not 0 < value <= MAX_BIGINT:
        raise errors.NotFound(f"There is no {what} {value}.")


def _valid_project_id(project_id: Any) -> str:
    """A project id as stored (lower-case uuid), or 404."""
    if not store.is_uuid(project_id):
        raise errors.NotFound(f"There is no project {project_id}.")
    return str(uuid_module.UUID(project_id))


# -- the service's face ----------------------------------------------------------

class Projects:
    """Projects over the cluster database; see the module docstring.

    ``caller`` arguments are the authenticated user (``Principal``);
    expiry acts as the system.  Errors are ``snfd.errors`` faults:
    ``BadRequest`` (invalid input), ``Forbidden`` (not allowed),
    ``NotFound`` (no such project, application or membership) and
    ``Conflict`` (not possible in the current state).
    """

    def __init__(self, db: Any, clock: Any):
        self._db = db
        self._clock = clock

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock.seconds(), UTC)

    # -- system projects and quota upkeep --

    async def create_system_project(self, user_uuid: str) -> Project:
        """The user's base project (see ``create_system_project_txn``)."""
        return await self._db.run("identity.system_project", store.create_system_project_txn,
                                  user_uuid, f"system:{user_uuid}", self.now())

    async def ensure_resource_holdings(self, resource: str) -> None:
        """Grant a newly registered resource to every project with quota."""
        await self._db.run("identity.project_resource", store.ensure_resource_holdings_txn,
                           resource)

    async def projects_of_user(self, user_uuid: str) -> list[Project]:
        """Active projects in which the user is an accepted member."""
        return await self._db.run("identity.user_projects", store.projects_of_user_txn,
                                  user_uuid)

    async def expire_projects(self, now: datetime.datetime | None = None) -> int:
        """Terminate every project whose end date is before ``now``
        (default: the clock); returns how many were terminated.  A leader
        duty: run it periodically on one node."""
        now = now or self.now()
        ids = await self._db.run("identity.expired_projects", store.expired_projects_txn, now)
        ended = 0
        for project_id in ids:
            try:
                if await self._db.run("identity.expire_project", _project_action_txn, None,
                                      project_id, "terminate", now, now):
                    ended += 1
                    log.info("project {id} terminated: its end date passed", id=project_id)
            except errors.Fault as e:
                log.warn("could not terminate expired project {id}: {why}",
                         id=project_id, why=e.message)
        return ended

    # -- projects --

    async def list_projects(self, caller: Principal, *, states: Sequence[str] | None = None,
                            owners: Sequence[str] | None = None,
                            names: Sequence[str] | None = None,
                            mode: str = "default") -> list[ProjectDetails]:
        """Projects the caller may see (``mode="default"``) or the active
        ones the caller is an accepted member of (``mode="member"``),
        filtered by state, owner and name."""
        if mode not in LIST_MODES:
            raise errors.BadRequest(
                f"Unrecognized mode {mode!r}: expected one of {', '.join(LIST_MODES)}.")
        for s in states or ():
            if s not in PROJECT_STATES:
                raise errors.BadRequest(
                    f"Unrecognized state {s!r}: expected one of {', '.join(PROJECT_STATES)}.")
        return await self._db.run("identity.list_projects", _list_projects_txn, caller,
                                  states, owners, names, mode)

    async def get_project(self, caller: Principal, project_id: str) -> ProjectDetails:
        project_id = _valid_project_id(project_id)
        return await self._db.run("identity.get_project", _get_project_txn, caller,
                                  project_id)

    async def submit_application(self, caller: Principal, spec: ApplicationSpec,
                                 project_id: str | None = None) -> tuple[str, int]:
        """Apply for a new project (``project_id`` ``None``) or for a
        modification; returns ``(project id, application id)``."""
        if project_id is not None:
            project_id = _valid_project_id(project_id)
        return await self._db.run("identity.submit_application", _submit_txn, caller, spec,
                                  project_id, self.now())

    async def application_action(self, caller: Principal | None, project_id: str,
                                 action: str, app_id: int, reason: str = "") -> None:
        """approve, deny, dismiss or cancel the project's last application."""
        if action not in APPLICATION_ACTIONS:
            raise errors.BadRequest(f"Unknown application action {action!r}.")
        _check_serial(app_id, "project application")
        await self._db.run(f"identity.application_{action}", _application_action_txn,
                           caller, project_id, app_id, action, reason, self.now())

    async def project_action(self, caller: Principal | None, project_id: str,
                             action: str, reason: str = "") -> None:
        """suspend, unsuspend, terminate or reinstate (administrators).
        ``reason`` is accepted for the API's sake; there is no project log
        to keep it in."""
        if action not in PROJECT_ACTIONS:
            raise errors.BadRequest(f"Unknown project action {action!r}.")
        project_id = _valid_project_id(project_id)
        await self._db.run(f"identity.project_{action}", _project_action_txn, caller,
                           project_id, action, self.now())

    # -- memberships --

    async def list_memberships(self, caller: Principal,
                               project: str | None = None) -> list[MembershipDetails]:
        """Memberships the caller may see, optionally of one project."""
        return await self._db.run("identity.list_memberships", _list_memberships_txn,
                                  caller, project)

    async def get_membership(self, caller: Principal, memb_id: int) -> MembershipDetails:
        _check_serial(memb_id, "project membership")
        return await self._db.run("identity.get_membership", _get_membership_txn, caller,
                                  memb_id)

    async def join(self, caller: Principal, project_id: str) -> Membership:
        """Ask to join (accepted at once under an "auto" join policy while
        there is room)."""
        project_id = _valid_project_id(project_id)
        assert caller.user is not None
        return await self._db.run("identity.join_project", _join_txn, caller.user,
                                  project_id, self.now())

    async def enroll(self, caller: Principal, project_id: str, email: str) -> Membership:
        """Make the user with this email an accepted member (owner or
        administrator)."""
        if not store.is_uuid(project_id):
            raise errors.Conflict(f"There is no project {project_id}.")
        return await self._db.run("identity.enroll_member", _enroll_txn, caller,
                                  str(uuid_module.UUID(project_id)), email, self.now())

    async def membership_action(self, caller: Principal | None, memb_id: int,
                                action: str, reason: str = "") -> Membership:
        """leave, cancel, accept, reject or remove; returns the membership
        as it is afterwards.  ``reason`` is accepted but not stored (there
        is no membership log)."""
        if action not in MEMBERSHIP_ACTIONS:
            raise errors.BadRequest(f"Unknown membership action {action!r}.")
        _check_serial(memb_id, "project membership")
        return await self._db.run(f"identity.membership_{action}", _membership_action_txn,
                                  caller, memb_id, action, self.now())

    # -- projects as Keystone manages them --

    async def create_approved(self, caller: Principal, name: str, description: str = "",
                              enabled: bool = True) -> Project:
        """An administrator's project (Keystone's ``POST /v3/projects``):
        applied for and approved in one transaction, so it is active at once
        with each resource's ``project_default``; suspended when not
        ``enabled``.  Keystone's names are free text (not Synnefo's domain
        form); a live project with the same name is a ``Conflict``."""
        _require_admin(caller)
        return await self._db.run("identity.create_approved", _create_approved_txn, caller,
                                  _keystone_name(name), description, enabled, self.now())

    async def update_fields(self, caller: Principal, project_id: str, *,
                            name: str | None = None, description: str | None = None,
                            enabled: bool | None = None) -> Project:
        """An administrator changes the name or description at once (no
        application), or suspends (``enabled`` false) or unsuspends it.
        A system project keeps its name and description."""
        _require_admin(caller)
        project_id = _valid_project_id(project_id)
        if name is not None:
            name = _keystone_name(name)
        return await self._db.run("identity.update_fields", _update_fields_txn, caller,
                                  project_id, name, description, enabled, self.now())

    async def change_tags(self, caller: Principal, project_id: str,
                          replace: Sequence[str] | None = None, add: str | None = None,
                          remove: str | None = None) -> Project:
        """An administrator replaces the project's tags, adds or removes one
        (``project_tags.py``)."""
        _require_admin(caller)
        project_id = _valid_project_id(project_id)
        return await self._db.run("identity.project_tags", project_tags.change_txn,
                                  project_id, replace, add, remove)

    async def alive_projects(self, ids: Sequence[str] | None = None) -> list[Project]:
        """Active and suspended projects (optionally only these ids)."""
        return await self._db.run("identity.alive_projects", _alive_projects_txn, ids)


def _keystone_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise errors.BadRequest(f"A project name has 1 to {MAX_NAME} characters.")
    return name


def _alive_projects_txn(txn: Any, ids: Sequence[str] | None) -> list[Project]:
    if ids is not None:
        ids = [i for i in ids if store.is_uuid(i)]
    return store.projects_txn(txn, ids=ids, states=list(ALIVE_STATES))


def _create_approved_txn(txn: Any, caller: Principal, name: str, description: str,
                         enabled: bool, now: datetime.datetime) -> Project:
    spec = ApplicationSpec(name=name, description=description, join_policy="moderated",
                           leave_policy="auto", private=True)
    pid, app_id = _submit_txn(txn, caller, spec, None, now)
    _application_action_txn(txn, caller, pid, app_id, "approve", "Keystone: created by an"
                            " administrator", now)
    if not enabled:
        _project_action_txn(txn, caller, pid, "suspend", now)
    project = store.project_txn(txn, pid)
    assert project is not None
    return project


def _update_fields_txn(txn: Any, caller: Principal, project_id: str, name: str | None,
                       description: str | None, enabled: bool | None,
                       now: datetime.datetime) -> Project:
    if name is not None:
        store.lock_project_names_txn(txn)
    project = _lock_project(txn, project_id)
    if project.state not in ALIVE_STATES:
        raise errors.NotFound(f"There is no project {project_id}.")
    changed = ((name is not None and name != project.name)
               or (description is not None and description != project.description))
    if changed:
        if project.system_project:
            raise errors.Forbidden("A user's base project keeps its name and description.")
        if name is not None:
            _check_name_free(txn, project, name)
        fields = ProjectFields(
            name=project.name if name is None else name,
            owner=project.owner or caller.user or "",
            homepage=project.homepage,
            description=project.description if description is None else description,
            start_date=project.start_date, end_date=project.end_date,
            join_policy=project.join_policy, leave_policy=project.leave_policy,
            max_members=project.max_members, private=project.private)
        store.apply_fields_txn(txn, project.id, fields)
    if enabled is not None and enabled != (project.state == "active"):
        if project.system_project:
            raise errors.Forbidden("A user's base project is enabled with its user.")
        _project_action_txn(txn, caller, project.id, "unsuspend" if enabled else "suspend",
                            now)
    updated = store.project_txn(txn, project.id)
    assert updated is not None
    return updated
