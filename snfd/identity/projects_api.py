"""The projects part of the account API (Synnefo's
``docs/project-api-guide.rst``), added to the account Klein app:

    GET  /projects[?state=&owner=&name=&mode=default|member]
    POST /projects                          apply for a project: 201 {"id", "application"}
    GET  /projects/<id>
    PUT  /projects/<id>                     apply for a modification: 201 {"id", "application"}
    POST /projects/<id>/action              {"<action>": {"reason", "app_id"}}: 200
    GET  /projects/memberships[?project=]
    POST /projects/memberships              {"join": {"project"}} | {"enroll": {"project", "user"}}
    GET  /projects/memberships/<id>
    POST /projects/memberships/<id>/action  {"<action>": "reason"}: 200

Every route needs a user token.  Dates are ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime
from typing import Any

from klein import Klein

from snfd import errors
from snfd.identity.project_store import Application, Membership, Project
from snfd.identity.projects import (
    APPLICATION_ACTIONS,
    MEMBERSHIP_ACTIONS,
    PROJECT_ACTIONS,
    MembershipDetails,
    ProjectDetails,
    Projects,
    parse_application,
)
from snfd.web.app import MAX_JSON_BODY, json_body, json_object, read_json
from snfd.web.auth import user_of

UTC = datetime.UTC
MEMBERSHIP_REQUESTS = ("join", "enroll")


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def application_json(app: Application) -> dict[str, Any]:
    return {
        "id": app.id,
        "state": app.state,
        "name": app.name,
        "owner": app.owner,
        "applicant": app.applicant,
        "homepage": app.homepage,
        "description": app.description,
        "start_date": _iso(app.start_date),
        "end_date": _iso(app.end_date),
        "comments": app.comments,
        "join_policy": app.join_policy,
        "leave_policy": app.leave_policy,
        "max_members": app.max_members,
        "private": app.private,
        "resources": {name: cap.as_json() for name, cap in app.resources.items()},
    }


def project_json(details: ProjectDetails) -> dict[str, Any]:
    p: Project = details.project
    out: dict[str, Any] = {
        "id": p.id,
        "state": p.state,
        "creation_date": _iso(p.creation_date),
        "name": p.name,
        "owner": p.owner,
        "homepage": p.homepage,
        "description": p.description,
        "end_date": _iso(p.end_date),
        "join_policy": p.join_policy,
        "leave_policy": p.leave_policy,
        "max_members": p.max_members,
        "private": p.private,
        "system_project": p.system_project,
        "resources": {name: cap.as_json() for name, cap in p.resources.items()},
    }
    if details.privileged:
        app = details.last_application
        out["last_application"] = application_json(app) if app is not None else None
        if p.deactivation_date is not None:
            out["deactivation_date"] = _iso(p.deactivation_date)
    return out


def membership_json(details: MembershipDetails) -> dict[str, Any]:
    m: Membership = details.membership
    return {
        "id": m.id,
        "user": m.user,
        "project": m.project,
        "state": m.state,
        "requested": _iso(m.requested),
        "accepted": _iso(m.accepted),
        "removed": _iso(m.removed),
        "allowed_actions": list(details.allowed_actions),
    }


def _query(request: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, values in (request.args or {}).items():
        try:
            name = key.decode("utf-8") if isinstance(key, bytes) else key
            out[name] = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
        except UnicodeDecodeError:
            raise errors.BadRequest("The query string is not valid UTF-8.") from None
        if any("\x00" in v for v in out[name]):
            raise errors.BadRequest(f"The query parameter {name} contains a NUL character.")
    return out


def _one_action(body: Any, actions: tuple[str, ...]) -> tuple[str, Any]:
    """The single recognized action of an action body, and its value."""
    body = json_object(body)
    found = [name for name in actions if name in body]
    if len(found) > 1:
        raise errors.BadRequest("Multiple actions not supported: give exactly one.")
    if not found:
        raise errors.BadRequest(f"No recognized action: expected one of {', '.join(actions)}.")
    return found[0], body[found[0]]


def _reason(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or "\x00" in value:
        raise errors.BadRequest("The reason must be a string (without NUL characters).")
    return value


def _app_id(value: Any, action: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if value is None:
        raise errors.BadRequest(f"The {action} action needs app_id (the last application).")
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.BadRequest("app_id must be an integer.")
    return value


def _project_ref(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise errors.BadRequest(f"Invalid project ID: {value!r}.")
    return str(value)


def add_project_routes(app: Klein, projects: Projects, max_body: int = MAX_JSON_BODY) -> None:
    """Add the project routes to ``app`` (the account API's Klein app,
    built with ``snfd.web.app.make_app``, behind ``TokenAuth``)."""

    def body_of(request: Any) -> Any:
        return read_json(request, max_bytes=max_body)

    @app.route("/projects", methods=["GET"], endpoint="snfd_projects_list")
    async def list_projects(request: Any) -> bytes:
        caller = user_of(request)
        query = _query(request)
        modes = query.get("mode") or ["default"]
        found = await projects.list_projects(
            caller, states=query.get("state"), owners=query.get("owner"),
            names=query.get("name"), mode=modes[-1])
        return json_body(request, [project_json(d) for d in found])

    @app.route("/projects", methods=["POST"], endpoint="snfd_projects_create")
    async def create_project(request: Any) -> bytes:
        caller = user_of(request)
        spec = parse_application(json_object(body_of(request)), new=True)
        project_id, app_id = await projects.submit_application(caller, spec)
        return json_body(request, {"id": project_id, "application": app_id}, 201)

    @app.route("/projects/memberships", methods=["GET"], endpoint="snfd_memberships_list")
    async def list_memberships(request: Any) -> bytes:
        caller = user_of(request)
        wanted = _query(request).get("project")
        found = await projects.list_memberships(caller, wanted[-1] if wanted else None)
        return json_body(request, [membership_json(d) for d in found])

    @app.route("/projects/memberships", methods=["POST"], endpoint="snfd_memberships_create")
    async def create_membership(request: Any) -> bytes:
        caller = user_of(request)
        action, value = _one_action(body_of(request), MEMBERSHIP_REQUESTS)
        value = json_object(value, f"The {action} request")
        project = _project_ref(value.get("project"))
        if action == "join":
            membership = await projects.join(caller, project)
        else:
            email = value.get("user")
            if not isinstance(email, str) or not email.strip() or "\x00" in email:
                raise errors.BadRequest("enroll needs the user's email as \"user\".")
            membership = await projects.enroll(caller, project, email.strip())
        return json_body(request, {"id": membership.id})

    @app.route("/projects/memberships/<int:memb_id>", methods=["GET"],
               endpoint="snfd_memberships_get")
    async def get_membership(request: Any, memb_id: int) -> bytes:
        caller = user_of(request)
        details = await projects.get_membership(caller, memb_id)
        return json_body(request, membership_json(details))

    @app.route("/projects/memberships/<int:memb_id>/action", methods=["POST"],
               endpoint="snfd_memberships_action")
    async def membership_action(request: Any, memb_id: int) -> bytes:
        caller = user_of(request)
        action, value = _one_action(body_of(request), MEMBERSHIP_ACTIONS)
        if isinstance(value, dict):
            value = value.get("reason")
        await projects.membership_action(caller, memb_id, action, _reason(value))
        request.setResponseCode(200)
        return b""

    @app.route("/projects/<project_id>", methods=["GET"], endpoint="snfd_projects_get")
    async def get_project(request: Any, project_id: str) -> bytes:
        caller = user_of(request)
        details = await projects.get_project(caller, project_id)
        return json_body(request, project_json(details))

    @app.route("/projects/<project_id>", methods=["PUT"], endpoint="snfd_projects_modify")
    async def modify_project(request: Any, project_id: str) -> bytes:
        if project_id == "memberships":
            # /projects/memberships is its own resource, which PUT is not for.
            raise errors.MethodNotAllowed("This method is not allowed on this resource.",
                                          headers={"Allow": "GET, POST"})
        caller = user_of(request)
        spec = parse_application(json_object(body_of(request)), new=False)
        pid, app_id = await projects.submit_application(caller, spec, project_id)
        return json_body(request, {"id": pid, "application": app_id}, 201)

    @app.route("/projects/<project_id>/action", methods=["POST"],
               endpoint="snfd_projects_action")
    async def project_action(request: Any, project_id: str) -> bytes:
        caller = user_of(request)
        action, value = _one_action(body_of(request), PROJECT_ACTIONS + APPLICATION_ACTIONS)
        if value is None:
            value = {}
        value = json_object(value, f"The {action} action")
        reason = _reason(value.get("reason"))
        if action in APPLICATION_ACTIONS:
            app_id = _app_id(value.get("app_id"), action)
            await projects.application_action(caller, project_id, action, app_id, reason)
        else:
            await projects.project_action(caller, project_id, action, reason)
        request.setResponseCode(200)
        return b""
