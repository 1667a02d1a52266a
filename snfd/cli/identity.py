"""``snf-manage`` commands of the identity service: users, groups,
components, resources, projects, quotas and commission reconciliation.

They run the identity service the daemon's own factory builds (not
started: its accounts, quota holder and projects) under a reactor of the
command's own, with a small pool on the cluster database.  Every change a
daemon caches (tokens, groups) is announced with NOTIFY in the change's own
transaction, so running nodes see it at once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

from snfd import config as cfg
from snfd import errors
from snfd.cli import run_with_reactor, yes_no
from snfd.web.auth import Principal

Command = Callable[[argparse.Namespace, Any], Coroutine[Any, Any, int]]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn
    return register


def add_parsers(sub: Any) -> None:
    """Declare the identity commands on ``snf-manage``'s subparsers."""
    def user_ref(p: argparse.ArgumentParser) -> None:
        p.add_argument("user", help="uuid or email")

    def as_json(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("user-add", help="create a user")
    p.add_argument("--email", required=True)
    p.add_argument("--username", help="a login name apart from the email (the user's"
                   " Keystone name)")
    p.add_argument("--password", help="local password (none: no local login)")
    p.add_argument("--first-name", default="")
    p.add_argument("--last-name", default="")
    p.add_argument("--activate", action="store_true",
                   help="active at once (otherwise a verification mail is sent)")
    p.add_argument("--admin", action="store_true", help="an administrator")
    as_json(p)

    p = sub.add_parser("user-modify", help="change a user")
    user_ref(p)
    p.add_argument("--email")
    p.add_argument("--username", help="a login name apart from the email")
    p.add_argument("--first-name")
    p.add_argument("--last-name")
    p.add_argument("--password")
    p.add_argument("--no-password", action="store_true", help="remove the local password")
    p.add_argument("--admin", dest="admin", action="store_const", const=True)
    p.add_argument("--no-admin", dest="admin", action="store_const", const=False)
    p.add_argument("--verify", action="store_true", help="mark the email verified")
    p.add_argument("--accept", action="store_true", help="accept (moderation): activates")
    p.add_argument("--reject", action="store_true", help="reject (moderation)")
    p.add_argument("--activate", action="store_true")
    p.add_argument("--deactivate", action="store_true")
    p.add_argument("--reason", default="")
    p.add_argument("--renew-token", action="store_true")
    p.add_argument("--send-verification", action="store_true",
                   help="send a new verification mail")
    as_json(p)

    p = sub.add_parser("user-list", help="list users")
    p.add_argument("--state", choices=("pending_verification", "pending_moderation",
                                       "active", "rejected", "deactivated"))
    as_json(p)
    p = sub.add_parser("user-show", help="show one user")
    user_ref(p)
    as_json(p)
    p = sub.add_parser("user-activate", help="activate a user")
    user_ref(p)
    p = sub.add_parser("user-deactivate", help="deactivate a user (tokens stop at once)")
    user_ref(p)
    p.add_argument("--reason", default="")
    p = sub.add_parser("user-renew-token", help="replace a user's tokens with a new one")
    user_ref(p)
    as_json(p)

    p = sub.add_parser("group-add", help="create a user group")
    p.add_argument("name")
    p = sub.add_parser("group-remove", help="delete a user group")
    p.add_argument("name")
    p = sub.add_parser("group-list", help="list user groups")
    as_json(p)
    p = sub.add_parser("group-member-add", help="add a user to a group")
    p.add_argument("group")
    user_ref(p)
    p = sub.add_parser("group-member-remove", help="remove a user from a group")
    p.add_argument("group")
    user_ref(p)

    p = sub.add_parser("component-add",
                       help="register a component (or replace its token); prints the token")
    p.add_argument("name")
    p.add_argument("--base-url", default="")
    p.add_argument("--ui-url", default="")
    as_json(p)
    p = sub.add_parser("component-list", help="list components")
    as_json(p)
    p = sub.add_parser("component-remove", help="delete a component and its token")
    p.add_argument("name")

    p = sub.add_parser("resource-list", help="list resources and their defaults")
    as_json(p)
    p = sub.add_parser("resource-modify", help="change a resource's defaults")
    p.add_argument("resource")
    p.add_argument("--base-default", type=_quantity,
                   help="limit in each new user's base project (number, or 10G style)")
    p.add_argument("--project-default", type=_quantity,
                   help="member limit in projects that do not name the resource")
    p.add_argument("--api-visible", type=yes_no)
    p.add_argument("--ui-visible", type=yes_no)
    p.add_argument("--allow-in-projects", type=yes_no)
    as_json(p)
    p = sub.add_parser("quota-list", help="list holdings (limit, usage, pending)")
    p.add_argument("--user", help="uuid or email: that user's holdings")
    p.add_argument("--project", help="project uuid: that project's holdings")
    p.add_argument("--resource")
    as_json(p)
    p = sub.add_parser("project-list", help="list projects")
    p.add_argument("--state", action="append",
                   choices=("uninitialized", "active", "suspended", "terminated", "deleted"))
    p.add_argument("--system", action="store_true", help="include users' base projects")
    as_json(p)
    p = sub.add_parser("project-show", help="show one project and its last application")
    p.add_argument("project")
    as_json(p)
    p = sub.add_parser("project-control",
                       help="decide a project's last application or change its state")
    p.add_argument("project")
    group = p.add_mutually_exclusive_group(required=True)
    for action in ("approve", "deny", "dismiss", "cancel",
                   "suspend", "unsuspend", "terminate", "reinstate"):
        group.add_argument(f"--{action}", dest="action", action="store_const", const=action)
    p.add_argument("--app-id", type=int, help="the application (default: the last one)")
    p.add_argument("--reason", default="")

    p = sub.add_parser("reconcile-commissions",
                       help="settle commissions a crash left pending (accept what the"
                            " component committed, reject the rest)")
    p.add_argument("--component", action="append",
                   help="component name (default: every component with pending commissions)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be done")


def run(args: argparse.Namespace, config: Any, installed: dict[str, Any], dsn: str) -> int:
    """Run the identity command ``args.command`` against ``dsn``."""
    async def work(reactor: Any) -> int:
        from snfd.tap import assemble

        built = assemble(config, installed, reactor, dsn, ("identity",))
        svc = built.services["identity"]
        try:
            return await COMMANDS[args.command](
                args, Context(built.node.db, svc.accounts, svc.quota, svc.projects))
        except errors.Fault as e:
            raise CommandFailed(e.message) from None
        finally:
            await built.close()

    return run_with_reactor(work)


@attrs.frozen
class Context:
    """What a command works with."""

    db: Any
    accounts: Any
    quota: Any
    projects: Any


class CommandFailed(Exception):
    """An identity command refused (unknown user, taken email...)."""


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2) if getattr(args, "json", False) else text)


def _user_line(u: Any) -> str:
    flags = " admin" if u.is_admin else ""
    return f"{u.uuid}  {u.login_name:<32} {u.state:<21}{flags}  {u.name}"


@command("user-add")
async def user_add(args: argparse.Namespace, ctx: Any) -> int:
    user, token = await ctx.accounts.create_user(
        args.email, args.first_name, args.last_name, password=args.password,
        activate=args.activate, admin=args.admin, username=args.username)
    out = user.as_json()
    out["token"] = token
    text = f"created {user.uuid} ({user.state})" + (f"\ntoken: {token}" if token else "")
    _print(args, out, text)
    return 0


@command("user-modify")
async def user_modify(args: argparse.Namespace, ctx: Any) -> int:
    user = await ctx.accounts.get_user(args.user)
    uuid = user.uuid
    if sum(bool(x) for x in (args.accept, args.reject, args.activate, args.deactivate)) > 1:
        raise CommandFailed("choose one of --accept, --reject, --activate, --deactivate")
    if args.password is not None and args.no_password:
        raise CommandFailed("--password and --no-password contradict each other")
    user = await ctx.accounts.modify_user(uuid, email=args.email, username=args.username,
                                          first_name=args.first_name,
                                          last_name=args.last_name, is_admin=args.admin)
    if args.password is not None or args.no_password:
        await ctx.accounts.set_password(uuid, None if args.no_password else args.password)
    if args.verify and user.state == "pending_verification":
        user = await ctx.accounts.mark_verified(uuid)
    if args.accept or args.activate:
        user = await ctx.accounts.activate(uuid)
    elif args.reject:
        user = await ctx.accounts.moderate(uuid, False, args.reason)
    elif args.deactivate:
        user = await ctx.accounts.deactivate(uuid, args.reason)
    if args.send_verification:
        await ctx.accounts.send_verification(user)
    token = await ctx.accounts.renew_token(uuid) if args.renew_token else None
    user = await ctx.accounts.get_user(uuid)
    out = user.as_json()
    if token:
        out["token"] = token
    _print(args, out, _user_line(user) + (f"\ntoken: {token}" if token else ""))
    return 0


@command("user-list")
async def user_list(args: argparse.Namespace, ctx: Any) -> int:
    users = await ctx.accounts.list_users(args.state)
    _print(args, [u.as_json() for u in users], "\n".join(_user_line(u) for u in users)
           or "no users")
    return 0


@command("user-show")
async def user_show(args: argparse.Namespace, ctx: Any) -> int:
    user = await ctx.accounts.get_user(args.user)
    out = user.as_json()
    out["providers"] = [f"{p}:{i}" for p, i in await ctx.accounts.links_of(user.uuid)]
    _print(args, out, "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


@command("user-activate")
async def user_activate(args: argparse.Namespace, ctx: Any) -> int:
    user = await ctx.accounts.activate((await ctx.accounts.get_user(args.user)).uuid)
    print(_user_line(user))
    return 0


@command("user-deactivate")
async def user_deactivate(args: argparse.Namespace, ctx: Any) -> int:
    user = await ctx.accounts.deactivate((await ctx.accounts.get_user(args.user)).uuid, args.reason)
    print(_user_line(user))
    return 0


@command("user-renew-token")
async def user_renew_token(args: argparse.Namespace, ctx: Any) -> int:
    user = await ctx.accounts.get_user(args.user)
    token = await ctx.accounts.renew_token(user.uuid)
    _print(args, {"uuid": user.uuid, "token": token}, token)
    return 0


@command("group-add")
async def group_add(args: argparse.Namespace, ctx: Any) -> int:
    await ctx.accounts.add_group(args.name)
    return 0


@command("group-remove")
async def group_remove(args: argparse.Namespace, ctx: Any) -> int:
    await ctx.accounts.remove_group(args.name)
    return 0


@command("group-list")
async def group_list(args: argparse.Namespace, ctx: Any) -> int:
    groups = await ctx.accounts.list_groups()
    _print(args, [{"name": n, "members": c} for n, c in groups],
           "\n".join(f"{n}  ({c} members)" for n, c in groups) or "no groups")
    return 0


@command("group-member-add")
async def group_member_add(args: argparse.Namespace, ctx: Any) -> int:
    user = await ctx.accounts.get_user(args.user)
    await ctx.accounts.set_group_member(user.uuid, args.group, True)
    return 0


@command("group-member-remove")
async def group_member_remove(args: argparse.Namespace, ctx: Any) -> int:
    user = await ctx.accounts.get_user(args.user)
    await ctx.accounts.set_group_member(user.uuid, args.group, False)
    return 0


@command("component-add")
async def component_add(args: argparse.Namespace, ctx: Any) -> int:
    token = await ctx.accounts.set_component(args.name, args.base_url, args.ui_url)
    _print(args, {"name": args.name, "token": token}, token)
    return 0


@command("component-list")
async def component_list(args: argparse.Namespace, ctx: Any) -> int:
    comps = await ctx.accounts.list_components()
    _print(args, [{"name": c.name, "base_url": c.base_url, "ui_url": c.ui_url} for c in comps],
           "\n".join(f"{c.name}  {c.base_url}" for c in comps) or "no components")
    return 0


@command("component-remove")
async def component_remove(args: argparse.Namespace, ctx: Any) -> int:
    await ctx.accounts.remove_component(args.name)
    return 0


def _quantity(text: str) -> int:
    try:
        return cfg.quantity(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _resource_json(r: Any) -> dict[str, Any]:
    return {"name": r.name, "description": r.description, "unit": r.unit,
            "service_type": r.service_type, "service_origin": r.service_origin,
            "base_default": r.base_default, "project_default": r.project_default,
            "api_visible": r.api_visible, "ui_visible": r.ui_visible,
            "allow_in_projects": r.allow_in_projects}


def _resource_line(r: Any) -> str:
    return (f"{r.name:<28} base {r.base_default:<14} project {r.project_default:<14}"
            f" {r.unit or ''}")


@command("resource-list")
async def resource_list(args: argparse.Namespace, ctx: Any) -> int:
    found = await ctx.quota.resources()
    _print(args, [_resource_json(r) for r in found],
           "\n".join(_resource_line(r) for r in found) or "no resources")
    return 0


@command("resource-modify")
async def resource_modify(args: argparse.Namespace, ctx: Any) -> int:
    r = await ctx.quota.modify_resource(
        args.resource, base_default=args.base_default, project_default=args.project_default,
        ui_visible=args.ui_visible, api_visible=args.api_visible,
        allow_in_projects=args.allow_in_projects)
    _print(args, _resource_json(r), _resource_line(r))
    return 0


@command("quota-list")
async def quota_list(args: argparse.Namespace, ctx: Any) -> int:
    holders: list[str] | None = None
    sources: list[str | None] | None = None
    if args.user:
        user = await ctx.accounts.get_user(args.user)
        holders = [f"user:{user.uuid}"]
    if args.project:
        if holders is None:
            holders = [f"project:{args.project}"]
            sources = [None]
        else:
            sources = [f"project:{args.project}"]
    found = await ctx.quota.quotas(holders, sources,
                                   [args.resource] if args.resource else None)
    rows = [{"holder": h.holder, "source": h.source, "resource": h.resource,
             "limit": h.limit, "usage": h.usage, "pending": h.pending} for h in found]
    _print(args, rows, "\n".join(
        f"{r['holder']:<46} {r['source'] or '-':<46} {r['resource']:<24}"
        f" limit {r['limit']:<14} usage {r['usage']:<14} pending {r['pending']}"
        for r in rows) or "no holdings")
    return 0


@command("reconcile-commissions")
async def reconcile_commissions(args: argparse.Namespace, ctx: Any) -> int:
    from snfd.quota.serials import Charger

    components = args.component or await ctx.quota.clientkeys()
    for name in components:
        charger = Charger(ctx.db, ctx.quota, name)
        if args.dry_run:
            pending = await ctx.quota.pending(name)
            print(f"{name}: {len(pending)} pending: {' '.join(map(str, pending)) or '-'}")
            continue
        accepted, rejected = await charger.reconcile()
        print(f"{name}: accepted {len(accepted)} {accepted or ''}"
              f" rejected {len(rejected)} {rejected or ''}".rstrip())
    if not components:
        print("no pending commissions")
    return 0


# The operator, as the projects service sees snf-manage: an administrator.
OPERATOR = Principal(name="snf-manage", is_admin=True)


@command("project-list")
async def project_list(args: argparse.Namespace, ctx: Any) -> int:
    from snfd.identity.projects_api import project_json

    found = await ctx.projects.list_projects(OPERATOR, states=args.state)
    rows = [project_json(d) for d in found if args.system or not d.project.system_project]
    _print(args, rows, "\n".join(
        f"{r['id']}  {r['state']:<13} {r['name']:<40} owner {r['owner']}" for r in rows)
        or "no projects")
    return 0


@command("project-show")
async def project_show(args: argparse.Namespace, ctx: Any) -> int:
    from snfd.identity.projects_api import project_json

    out = project_json(await ctx.projects.get_project(OPERATOR, args.project))
    _print(args, out, json.dumps(out, indent=2))
    return 0


@command("project-control")
async def project_control(args: argparse.Namespace, ctx: Any) -> int:
    from snfd.identity.projects import APPLICATION_ACTIONS

    if args.action in APPLICATION_ACTIONS:
        app_id = args.app_id
        if app_id is None:
            details = await ctx.projects.get_project(OPERATOR, args.project)
            if details.last_application is None:
                raise CommandFailed(f"project {args.project} has no application")
            app_id = details.last_application.id
        await ctx.projects.application_action(None, args.project, args.action, app_id,
                                              args.reason)
    else:
        await ctx.projects.project_action(None, args.project, args.action, args.reason)
    details = await ctx.projects.get_project(OPERATOR, args.project)
    print(f"{args.project}: {details.project.state}")
    return 0
