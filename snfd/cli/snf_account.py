"""``snf`` commands of the account service (Astakos), as kamaki names
them: ``user`` (who am I, token renewal), ``quota``, ``resource``,
``project``, ``membership``, ``group`` (the account's sharing groups) and
``commission`` (for services, with a component token).

Everything but ``group`` talks to ``/identity/v3``, ``/account/v1.0`` and
``/ui/token`` through ``App.cloud`` (the stored token); ``group`` sets
``X-Account-Group-<name>`` on the user's object-store account (``POST
?update``), as the web UI does.  Byte amounts are given as ``10G``,
``512M`` (powers of 1024) and shown that way in tables; ``-o json`` prints
the API's numbers as they are.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import click

from snfd.cli.output import Column, exit_code, show, show_json
from snfd.cli.snf_app import App, Failed, SnfGroup, fail, pass_app
from snfd.client import config as cfg
from snfd.client.cloud import Cloud
from snfd.client.pithos import ClientError

__all__ = ["format_amount", "parse_amount", "register"]

#: The largest limit (PostgreSQL's bigint): "unlimited".
UNLIMITED = 2**63 - 1

_UNITS = ("K", "M", "G", "T", "P", "E")
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:I?B)?\s*$", re.IGNORECASE)
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
                   re.IGNORECASE)


# -- amounts ----------------------------------------------------------------------


def parse_amount(text: str, is_bytes: bool = True) -> int:
    """``10G`` -> 10 GiB in bytes; a plain number as it is; ``unlimited``
    or ``inf`` -> the largest limit.  Suffixes only for byte resources."""
    value = text.strip()
    if value.lower() in ("unlimited", "inf", "infinite"):
        return UNLIMITED
    found = _AMOUNT.match(value)
    if not found:
        raise ValueError(f"{text!r} is not an amount (like 100, 512M or 10G)")
    number, unit = found.group(1), found.group(2).upper()
    if not is_bytes and (unit or "." in number or value[-1:].lower() == "b"):
        raise ValueError(f"{text!r}: units (K, M, G ...) are only for byte resources")
    scale = 1024 ** (_UNITS.index(unit) + 1) if unit else 1
    if "." in number:
        whole, _, frac = number.partition(".")
        amount = int(whole) * scale + int(frac) * scale // (10 ** len(frac))
    else:
        amount = int(number) * scale
    if amount > UNLIMITED:
        raise ValueError(f"{text!r} is too large")
    return amount


def format_amount(value: Any, is_bytes: bool) -> str:
    """A limit or usage for a table: ``unlimited``, ``1.5G`` (bytes) or
    the number."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "" if value is None else str(value)
    if value >= UNLIMITED:
        return "unlimited"
    if not is_bytes or abs(value) < 1024:
        return str(value)
    shown = float(abs(value))
    index = 0
    while True:
        shown /= 1024
        if shown < 1024 or index == len(_UNITS) - 1:
            break
        index += 1
    text = f"{shown:.1f}".removesuffix(".0")
    return f"{'-' if value < 0 else ''}{text}{_UNITS[index]}"


# -- helpers ----------------------------------------------------------------------


def _failed(message: str, status: int) -> Failed:
    """A failure with the exit code of an HTTP ``status`` (3 for 404 ...)."""
    return Failed(message, exit_code(status))


def _resources(cloud: Cloud) -> dict[str, Any]:
    found = cloud.call("account", "GET", "/resources")
    return found if isinstance(found, dict) else {}


def _byte_resources(cloud: Cloud) -> set[str]:
    return {name for name, info in _resources(cloud).items()
            if isinstance(info, dict) and info.get("unit") == "bytes"}


def _is_uuid(value: str) -> bool:
    return bool(_UUID.match(value.strip()))


def _emails(cloud: Cloud, uuids: Iterable[str]) -> dict[str, str]:
    """``{uuid: email}`` of the users we can resolve (others left out)."""
    wanted = sorted({u for u in uuids if u and _is_uuid(u)})
    if not wanted:
        return {}
    try:
        found = cloud.call("account", "POST", "/user_catalogs", {"uuids": wanted})
    except ClientError:
        return {}
    catalog = (found or {}).get("uuid_catalog") or {}
    return {str(k): str(v) for k, v in catalog.items()}


def _uuids_of(cloud: Cloud, members: Iterable[str]) -> list[str]:
    """Users given by uuid or email, as uuids (an unknown email: exit 3)."""
    members = [m.strip() for m in members if m.strip()]
    emails = [m for m in members if "@" in m]
    catalog: dict[str, str] = {}
    if emails:
        found = cloud.call("account", "POST", "/user_catalogs", {"displaynames": emails})
        catalog = {k.lower(): str(v) for k, v in
                   ((found or {}).get("displayname_catalog") or {}).items()}
    out = []
    for m in members:
        if "@" in m:
            if m.lower() not in catalog:
                raise _failed(f"no user with the email {m}", 404)
            out.append(catalog[m.lower()])
        else:
            out.append(m)
    return list(dict.fromkeys(out))


def _who(emails: Mapping[str, str], uuid: Any) -> str:
    text = str(uuid or "")
    return f"{emails[text]} ({text})" if text in emails else text


# -- user -------------------------------------------------------------------------


@click.group(cls=SnfGroup)
def user() -> None:
    """Who you are, and renewing your token."""


@user.command("info")
@pass_app
def user_info(app: App) -> None:
    """Show who the stored token is: uuid, name, project, roles, expiry.

    Example: snf user info
    """
    cloud = app.cloud
    found = cloud.call("identity", "GET", "/auth/tokens", params={"nocatalog": None},
                       headers={"X-Subject-Token": app.settings.token})
    token = (found or {}).get("token") or {}
    if app.json:
        show(True, token)
        return
    who = token.get("user") or {}
    project = token.get("project") or {}
    info = {
        "uuid": who.get("id"),
        "name": who.get("name"),
        "display name": who.get("SNF:display_name"),
        "administrator": "yes" if who.get("SNF:admin") else "no",
        "groups": who.get("SNF:groups") or [],
        "project": (f"{project.get('name')} ({project.get('id')})" if project
                    else ("the system" if token.get("system") else "")),
        "roles": [r.get("name") for r in token.get("roles") or [] if isinstance(r, dict)],
        "expires": token.get("expires_at"),
    }
    show(False, info, [Column(k, k) for k in info])


@user.command("token-renew")
@click.option("--yes", "-y", is_flag=True, help="do not ask (only asked on a terminal)")
@pass_app
def user_token_renew(app: App, yes: bool) -> None:
    """Get a new token and store it.  EVERY other token of yours stops
    working at once (other logins, scripts, the web UI must log in again).

    Example: snf user token-renew --yes
    """
    s = app.settings
    if not s.token or not s.url:
        fail("not logged in: run `snf login --url URL --user EMAIL` first")
    if not yes and sys.stdin.isatty() and not click.confirm(
            "Every other token of yours stops working. Renew?", err=True, default=True):
        raise Failed("not renewed")
    resp = app.transport.request(
        "POST", s.url.rstrip("/") + "/ui/token", data=b"{}", ok=(200, 201),
        headers={"X-Auth-Token": s.token, "Accept": "application/json",
                 "Content-Type": "application/json"}, idempotent=False)
    try:
        found = resp.json()
        new = str(found["token"])
    except (ValueError, KeyError, TypeError):
        fail("POST /ui/token: the answer has no token")
    s.token = new
    app.save()
    if app.json:
        show(True, found)
    else:
        click.echo(new)
        click.echo(f"stored; it expires {found.get('expires', '')}; every other token of"
                   " yours no longer works", err=True)


# -- quotas and resources -----------------------------------------------------------


@click.group(cls=SnfGroup)
def quota() -> None:
    """Your quotas per project (limits, usage)."""


@quota.command("list")
@click.option("--project", "-p", "project", help="only this project (id or name)")
@click.option("--resource", "-r", "resource", help="only this resource")
@pass_app
def quota_list(app: App, project: str | None, resource: str | None) -> None:
    """List your quotas: project, resource, usage, pending, limit.

    Byte amounts are shown as 1.5G in tables, exact in -o json.  The base
    project's id is your uuid.

    Example: snf quota list --project 0f5e...; snf -o json quota list
    """
    cloud = app.cloud
    found = cloud.call("account", "GET", "/quotas") or {}
    if project is not None:
        if project not in found and not _is_uuid(project):
            project = _project_id(cloud, project)
        if project not in found:
            raise _failed(f"you have no quota in project {project}", 404)
        found = {project: found[project]}
    if resource is not None:
        found = {p: {r: q for r, q in by_res.items() if r == resource}
                 for p, by_res in found.items()}
        found = {p: v for p, v in found.items() if v}
    if app.json:
        show(True, found)
        return
    units = _byte_resources(cloud)
    rows = []
    for proj, by_res in sorted(found.items()):
        for res, q in sorted(by_res.items()):
            b = res in units
            rows.append({"project": proj, "resource": res,
                         "usage": format_amount(q.get("usage"), b),
                         "pending": format_amount(q.get("pending"), b),
                         "limit": format_amount(q.get("limit"), b)})
    show(False, rows, [Column(k.capitalize(), k) for k in
                       ("project", "resource", "usage", "pending", "limit")],
         empty="no quotas")


@click.group(cls=SnfGroup)
def resource() -> None:
    """The resources quotas are kept for."""


@resource.command("list")
@pass_app
def resource_list(app: App) -> None:
    """List the resources: name, unit, service, description.

    Example: snf resource list
    """
    found = _resources(app.cloud)
    if app.json:
        show(True, found)
        return
    rows = [{"name": name, **info} for name, info in sorted(found.items())]
    show(False, rows, [Column("Name", "name"), Column("Unit", "unit"),
                       Column("Service", "service_type"),
                       Column("In projects", lambda r: "yes" if r.get("allow_in_projects")
                              else "no"),
                       Column("Description", "description")], empty="no resources")


# -- projects ---------------------------------------------------------------------


def _project_id(cloud: Cloud, ref: str) -> str:
    """A project by uuid, or by its (unique) name."""
    if _is_uuid(ref):
        return ref
    found = cloud.call("account", "GET", "/projects", params={"name": ref}) or []
    if not found:
        raise _failed(f"no project named {ref}", 404)
    if len(found) > 1:
        fail(f"more than one project is named {ref}: give its id")
    return str(found[0]["id"])


def _project(cloud: Cloud, ref: str) -> dict[str, Any]:
    found = cloud.call("account", "GET", f"/projects/{_project_id(cloud, ref)}")
    return found if isinstance(found, dict) else {}


def _capacities(cloud: Cloud, specs: Iterable[str], max_members: int | None
                ) -> dict[str, dict[str, int]]:
    """``RES=MEMBER[,PROJECT]`` options as the API's resources object."""
    specs = list(specs)
    if not specs:
        return {}
    units = _byte_resources(cloud)
    out: dict[str, dict[str, int]] = {}
    for spec in specs:
        name, sep, amounts = spec.partition("=")
        name = name.strip()
        if not sep or not name or not amounts.strip():
            fail(f"--resource {spec!r}: expected RESOURCE=MEMBER[,PROJECT]")
        member_text, _, project_text = amounts.partition(",")
        try:
            member = parse_amount(member_text, name in units)
            if project_text.strip():
                project = parse_amount(project_text, name in units)
            elif max_members is not None:
                project = min(member * max_members, UNLIMITED)
            else:
                project = UNLIMITED
        except ValueError as e:
            raise Failed(f"--resource {spec!r}: {e}", exit_code(400)) from None
        out[name] = {"member_capacity": member, "project_capacity": project}
    return out


def _application(cloud: Cloud, name: str | None, end_date: str | None,
                 start_date: str | None, description: str | None, homepage: str | None,
                 join_policy: str | None, leave_policy: str | None,
                 max_members: int | None, private: bool | None, owner: str | None,
                 resources: Iterable[str], comments: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name, "end_date": end_date, "start_date": start_date,
        "description": description, "homepage": homepage, "join_policy": join_policy,
        "leave_policy": leave_policy, "max_members": max_members, "private": private,
        "comments": comments,
        "owner": _uuids_of(cloud, [owner])[0] if owner else None,
        "resources": _capacities(cloud, resources, max_members) or None,
    }
    return {k: v for k, v in body.items() if v is not None}


def _application_options(f: Any) -> Any:
    options = [
        click.option("--comments", help="a note for the administrators"),
        click.option("--owner", help="the owner (uuid or email; administrators)"),
        click.option("--private/--public", "private", default=None,
                     help="hidden from non-members (default: public)"),
        click.option("--resource", "-r", "resources", multiple=True,
                     metavar="RES=MEMBER[,PROJECT]",
                     help="a resource's capacity per member and for the whole project"
                          " (10G, 512M for bytes; PROJECT defaults to MEMBER x"
                          " --max-members, or unlimited); repeat for more"),
        click.option("--max-members", type=click.IntRange(0), help="at most this many members"),
        click.option("--leave-policy", type=click.Choice(["auto", "moderated", "closed"])),
        click.option("--join-policy", type=click.Choice(["auto", "moderated", "closed"])),
        click.option("--homepage"),
        click.option("--description"),
        click.option("--start-date", help="ISO 8601 (default: now)"),
    ]
    for option in options:
        f = option(f)
    return f


_PROJECT_COLUMNS = [Column("ID", "id"), Column("Name", "name"), Column("State", "state"),
                    Column("Owner", "owner"), Column("Ends", "end_date"),
                    Column("Join", "join_policy"), Column("Members", "max_members")]


@click.group(cls=SnfGroup)
def project() -> None:
    """Apply for, review, join and leave projects."""


@project.command("list")
@click.option("--state", multiple=True, help="only in this state (repeat for more)")
@click.option("--owner", help="only of this owner (uuid or email)")
@click.option("--name", help="only with this name")
@click.option("--mine", is_flag=True, help="only projects you are a member of")
@pass_app
def project_list(app: App, state: tuple[str, ...], owner: str | None, name: str | None,
                 mine: bool) -> None:
    """List the projects you may see.

    Example: snf project list --state active --mine
    """
    cloud = app.cloud
    params: list[tuple[str, str | None]] = [("state", s) for s in state]
    if owner:
        params.append(("owner", _uuids_of(cloud, [owner])[0]))
    if name:
        params.append(("name", name))
    if mine:
        params.append(("mode", "member"))
    found = cloud.call("account", "GET", "/projects", params=params) or []
    if app.json:
        show(True, found)
        return
    rows = [dict(p, max_members=format_amount(p.get("max_members"), False)) for p in found]
    show(False, rows, _PROJECT_COLUMNS, empty="no projects")


@project.command("info")
@click.argument("project_id", metavar="ID")
@pass_app
def project_info(app: App, project_id: str) -> None:
    """Show a project (its last application too, to its owner and admins).

    Example: snf project info 5f1c...  (or the project's name)
    """
    cloud = app.cloud
    found = _project(cloud, project_id)
    if app.json:
        show(True, found)
        return
    units = _byte_resources(cloud)
    shown = dict(found)
    shown["resources"] = [
        f"{res}: member {format_amount(cap.get('member_capacity'), res in units)},"
        f" project {format_amount(cap.get('project_capacity'), res in units)}"
        for res, cap in sorted((found.get("resources") or {}).items())]
    shown["max_members"] = format_amount(found.get("max_members"), False)
    last = found.get("last_application")
    if isinstance(last, dict):
        shown["last_application"] = f"{last.get('id')} ({last.get('state')})"
    show(False, shown)


@project.command("create")
@click.option("--name", required=True, help="domain form: myproject.example.org")
@click.option("--end-date", required=True, help="ISO 8601, e.g. 2030-12-31")
@_application_options
@pass_app
def project_create(app: App, name: str, end_date: str, **spec: Any) -> None:
    """Apply for a new project (an administrator approves it).

    Example: snf project create --name lab.example.org --end-date 2030-12-31
    --resource pithos.diskspace=10G,100G --max-members 10 --join-policy moderated
    """
    cloud = app.cloud
    body = _application(cloud, name=name, end_date=end_date, **spec)
    found = cloud.call("account", "POST", "/projects", body) or {}
    if app.json:
        show(True, found)
    else:
        click.echo(f"project {found.get('id')}: application {found.get('application')}"
                   " pending")


@project.command("modify")
@click.argument("project_id", metavar="ID")
@click.option("--name", help="a new name")
@click.option("--end-date", help="a new end date (ISO 8601)")
@_application_options
@pass_app
def project_modify(app: App, project_id: str, name: str | None, end_date: str | None,
                   **spec: Any) -> None:
    """Apply for changes to a project (an administrator approves them).

    Example: snf project modify lab.example.org --max-members 20
    --resource cyclades.vm=2,20
    """
    cloud = app.cloud
    pid = _project_id(cloud, project_id)
    body = _application(cloud, name=name, end_date=end_date, **spec)
    if not body:
        fail("nothing to change: give at least one option")
    found = cloud.call("account", "PUT", f"/projects/{pid}", body) or {}
    if app.json:
        show(True, found)
    else:
        click.echo(f"project {found.get('id')}: application {found.get('application')}"
                   " pending")


def _application_action(app: App, project_id: str, action: str, reason: str) -> None:
    cloud = app.cloud
    found = _project(cloud, project_id)
    last = found.get("last_application")
    if not isinstance(last, dict) or last.get("id") is None:
        raise _failed(f"project {found.get('id', project_id)}: you may not see its"
                      " applications (only its owner and administrators)", 403)
    cloud.call("account", "POST", f"/projects/{found['id']}/action",
               {action: {"app_id": last["id"], "reason": reason}})
    if not app.quiet:
        click.echo(f"project {found['id']}: application {last['id']} {action}"
                   f"{'d' if action.endswith('e') else 'ed'}")


def _reason(f: Any) -> Any:
    return click.option("--reason", default="", help="a note kept with the decision")(f)


@project.command("approve")
@click.argument("project_id", metavar="ID")
@_reason
@pass_app
def project_approve(app: App, project_id: str, reason: str) -> None:
    """Approve a project's pending application (administrators).

    Example: snf project approve lab.example.org
    """
    _application_action(app, project_id, "approve", reason)


@project.command("deny")
@click.argument("project_id", metavar="ID")
@_reason
@pass_app
def project_deny(app: App, project_id: str, reason: str) -> None:
    """Deny a project's pending application (administrators).

    Example: snf project deny lab.example.org --reason "too large"
    """
    _application_action(app, project_id, "deny", reason)


@project.command("cancel")
@click.argument("project_id", metavar="ID")
@_reason
@pass_app
def project_cancel(app: App, project_id: str, reason: str) -> None:
    """Withdraw your pending application (a new project's goes away).

    Example: snf project cancel lab.example.org
    """
    _application_action(app, project_id, "cancel", reason)


@project.command("dismiss")
@click.argument("project_id", metavar="ID")
@pass_app
def project_dismiss(app: App, project_id: str) -> None:
    """Dismiss your denied application.

    Example: snf project dismiss lab.example.org
    """
    _application_action(app, project_id, "dismiss", "")


def _project_action(action: str, what: str) -> Any:
    @click.argument("project_id", metavar="ID")
    @_reason
    @pass_app
    def command(app: App, project_id: str, reason: str) -> None:
        cloud = app.cloud
        pid = _project_id(cloud, project_id)
        cloud.call("account", "POST", f"/projects/{pid}/action", {action: {"reason": reason}})

    command.__doc__ = f"""{what} (administrators).

    Example: snf project {action} lab.example.org
    """
    return project.command(action)(command)


for _action, _what in (("suspend", "Suspend a project: its quota is withheld"),
                       ("unsuspend", "Resume a suspended project"),
                       ("terminate", "End a project"),
                       ("reinstate", "Bring back a terminated project")):
    _project_action(_action, _what)


@project.command("join")
@click.argument("project_id", metavar="ID")
@pass_app
def project_join(app: App, project_id: str) -> None:
    """Join a project (or ask to, when its owner accepts members).

    Example: snf project join lab.example.org
    """
    cloud = app.cloud
    pid = _project_id(cloud, project_id)
    found = cloud.call("account", "POST", "/projects/memberships",
                       {"join": {"project": pid}}) or {}
    memb = cloud.call("account", "GET", f"/projects/memberships/{found.get('id')}") or {}
    if app.json:
        show(True, memb or found)
    else:
        click.echo(f"membership {found.get('id')}: {memb.get('state', 'requested')}")


def _my_membership(cloud: Cloud, pid: str) -> dict[str, Any]:
    found = cloud.call("account", "GET", "/projects/memberships",
                       params={"project": pid}) or []
    mine = [m for m in found if m.get("user") == cloud.user]
    if not mine:
        raise _failed(f"you are not a member of project {pid}", 404)
    return dict(mine[-1])


@project.command("leave")
@click.argument("project_id", metavar="ID")
@_reason
@pass_app
def project_leave(app: App, project_id: str, reason: str) -> None:
    """Leave a project (or ask to, when its owner must agree).

    Example: snf project leave lab.example.org
    """
    cloud = app.cloud
    memb = _my_membership(cloud, _project_id(cloud, project_id))
    cloud.call("account", "POST", f"/projects/memberships/{memb['id']}/action",
               {"leave": reason})


@project.command("enroll")
@click.argument("project_id", metavar="ID")
@click.argument("email")
@pass_app
def project_enroll(app: App, project_id: str, email: str) -> None:
    """Make a user a member of your project at once (owners, admins).

    Example: snf project enroll lab.example.org bob@example.org
    """
    cloud = app.cloud
    pid = _project_id(cloud, project_id)
    found = cloud.call("account", "POST", "/projects/memberships",
                       {"enroll": {"project": pid, "user": email}}) or {}
    if app.json:
        show(True, found)
    else:
        click.echo(f"membership {found.get('id')}: {email} enrolled")


# -- memberships --------------------------------------------------------------------


@click.group(cls=SnfGroup)
def membership() -> None:
    """Project memberships: yours, and those of your projects."""


@membership.command("list")
@click.option("--project", "-p", "project_ref", help="only of this project (id or name)")
@pass_app
def membership_list(app: App, project_ref: str | None) -> None:
    """List memberships: yours, and the ones of projects you own.

    Example: snf membership list --project lab.example.org
    """
    cloud = app.cloud
    params = {"project": _project_id(cloud, project_ref)} if project_ref else None
    found = cloud.call("account", "GET", "/projects/memberships", params=params) or []
    if app.json:
        show(True, found)
        return
    emails = _emails(cloud, (m.get("user") for m in found))
    show(False, found, [Column("ID", "id"), Column("Project", "project"),
                        Column("User", lambda m: _who(emails, m.get("user"))),
                        Column("State", "state"), Column("Actions", "allowed_actions")],
         empty="no memberships")


def _membership_action(action: str, what: str) -> Any:
    @click.argument("membership_id", metavar="ID", type=click.IntRange(1))
    @_reason
    @pass_app
    def command(app: App, membership_id: int, reason: str) -> None:
        app.cloud.call("account", "POST", f"/projects/memberships/{membership_id}/action",
                       {action: reason})

    command.__doc__ = f"""{what}

    Example: snf membership {action} 12  (see snf membership list)
    """
    return membership.command(action)(command)


for _action, _what in (
        ("accept", "Accept a request to join your project (owners, admins)."),
        ("reject", "Reject a request to join your project (owners, admins)."),
        ("remove", "Remove a member from your project (owners, admins)."),
        ("leave", "Leave the project of one of your memberships."),
        ("cancel", "Withdraw your request to join a project.")):
    _membership_action(_action, _what)


# -- groups -------------------------------------------------------------------------

_GROUP_PREFIX = "x-account-group-"


def _groups(app: App) -> dict[str, list[str]]:
    headers = app.client.account_info()
    out: dict[str, list[str]] = {}
    for key in headers:
        if key.lower().startswith(_GROUP_PREFIX):
            members = [m for m in headers[key].replace(" ", "").split(",") if m]
            out[key[len(_GROUP_PREFIX):].lower()] = members
    return out


def _set_group(app: App, name: str, members: list[str]) -> None:
    client = app.client
    client.transport.request(
        "POST", client.storage_url, params={"update": None}, data=b"",
        headers={"X-Auth-Token": client.token, f"X-Account-Group-{name}": ",".join(members)},
        ok=(200, 202, 204))


@click.group(cls=SnfGroup)
def group() -> None:
    """Your account's groups of users, to share files with (owner:group)."""


@group.command("list")
@pass_app
def group_list(app: App) -> None:
    """List your groups and their members.

    Example: snf group list
    """
    found = _groups(app)
    if app.json:
        show(True, [{"name": n, "members": m} for n, m in sorted(found.items())])
        return
    emails = _emails(app.cloud, (u for m in found.values() for u in m)) if found else {}
    rows = [{"name": n, "members": [emails.get(u, u) for u in m]}
            for n, m in sorted(found.items())]
    show(False, rows, [Column("Name", "name"), Column("Members", "members")],
         empty="no groups")


@group.command("set")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@pass_app
def group_set(app: App, name: str, members: tuple[str, ...]) -> None:
    """Create or replace a group; members by email or uuid.  Share with it
    as <your uuid>:<name> (snf file share --read ...).

    Example: snf group set team alice@example.org 3f2a...
    """
    uuids = _uuids_of(app.cloud, members)
    _set_group(app, name, uuids)
    if not app.quiet:
        click.echo(f"group {name.lower()}: {len(uuids)} members; share with it as"
                   f" {app.settings.user}:{name.lower()}")


@group.command("delete")
@click.argument("name")
@pass_app
def group_delete(app: App, name: str) -> None:
    """Delete a group (what was shared with it no longer is).

    Example: snf group delete team
    """
    if name.lower() not in _groups(app):
        raise _failed(f"no group named {name}", 404)
    _set_group(app, name, [])


# -- commissions ----------------------------------------------------------------------


def _component(app: App, token: str, url: str | None) -> Cloud:
    """The account API with a component (service) token: at ``url`` or
    the logged-in cloud's."""
    s = app.settings
    base = (url or s.url).rstrip("/")
    if not base:
        fail("give the cloud's URL with --url (or log in first)")
    endpoints = {} if url else dict(s.endpoints)
    endpoints.setdefault("account", base + "/account/v1.0")
    return Cloud(app.transport, cfg.Settings(url=base, token=token, endpoints=endpoints))


@click.group(cls=SnfGroup)
@click.option("--token", envvar="SNF_COMPONENT_TOKEN",
              help="the component's token (snf-manage component-add; or"
                   " $SNF_COMPONENT_TOKEN)")
@click.option("--url", help="the cloud's base URL (default: the logged-in one)")
@click.pass_context
def commission(ctx: click.Context, token: str | None, url: str | None) -> None:
    """A service's quota commissions (needs a component token)."""
    ctx.meta["snf.commission"] = (token, url)


def _pass_component(f: Any) -> Any:
    """Pass the component's ``Cloud``, made when the command runs (so that
    ``--help`` needs no token)."""
    @click.pass_context
    def run(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        token, url = ctx.meta["snf.commission"]
        if not token:
            raise click.UsageError("a component token is needed: snf commission --token"
                                   " TOKEN, or $SNF_COMPONENT_TOKEN", ctx)
        app = ctx.find_object(App)
        assert app is not None
        return ctx.invoke(f, _component(app, token, url), *args, **kwargs)
    return functools.update_wrapper(run, f)


def _json_flag() -> bool:
    app = click.get_current_context().find_object(App)
    return bool(app and app.json)


@commission.command("pending")
@_pass_component
def commission_pending(component: Cloud) -> None:
    """List the serials of the component's pending commissions.

    Example: SNF_COMPONENT_TOKEN=... snf commission pending
    """
    found = component.call("account", "GET", "/commissions") or []
    if _json_flag():
        show_json(found)
    elif found:
        for serial in found:
            click.echo(serial)
    else:
        click.echo("no pending commissions")


@commission.command("info")
@click.argument("serial", type=click.IntRange(1))
@_pass_component
def commission_info(component: Cloud, serial: int) -> None:
    """Show a pending commission: name, time, provisions.

    Example: snf commission --token TOKEN info 42
    """
    found = component.call("account", "GET", f"/commissions/{serial}") or {}
    if _json_flag():
        show(True, found)
        return
    shown = dict(found)
    shown["provisions"] = [
        f"{p.get('holder')} <- {p.get('source')}: {p.get('resource')} {p.get('quantity'):+}"
        for p in found.get("provisions") or []]
    show(False, shown)


def _resolve(action: str) -> Any:
    @click.argument("serials", nargs=-1, required=True, type=click.IntRange(1))
    @_pass_component
    def command(component: Cloud, serials: tuple[int, ...]) -> None:
        if len(serials) == 1:
            component.call("account", "POST", f"/commissions/{serials[0]}/action", {action: ""})
            return
        found = component.call("account", "POST", "/commissions/action",
                               {action: list(serials)}) or {}
        failed = found.get("failed") or []
        codes = []
        for serial, fault in failed:
            inner: dict[str, Any] = {}
            if isinstance(fault, dict) and fault:
                inner = next(iter(fault.values())) or {}
            codes.append(int(inner.get("code") or 0))
            click.echo(f"snf: commission {serial}: {inner.get('message', fault)}", err=True)
        if failed:
            raise click.exceptions.Exit(exit_code(codes[0]))

    command.__doc__ = f"""{action.capitalize()} pending commissions (by serial).

    Example: snf commission {action} 42 43
    """
    return commission.command(action)(command)


_resolve("accept")
_resolve("reject")


def register(cli: click.Group) -> None:
    """Add the account groups to ``snf``."""
    for command in (user, quota, resource, project, membership, group, commission):
        cli.add_command(command)
